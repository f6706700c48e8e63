//! The run as one self-contained HTML page: the figures, a throughput-over-time chart and the
//! event → webhook latency histogram, drawn as inline SVG (no script, nothing fetched).

use crate::report::{LatencyStats, Report, WebhookStats};
use std::fmt::Write;

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 220.0;
const MARGIN: f64 = 40.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Events accepted and webhooks arriving, per second of the run.
fn throughput_chart(report: &Report) -> String {
    let peak = report
        .timeline
        .iter()
        .map(|s| s.events.max(s.webhooks))
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let seconds = report.timeline.len().max(2) as f64;
    let x = |i: usize| MARGIN + (i as f64) * (WIDTH - 2.0 * MARGIN) / (seconds - 1.0);
    let y = |v: u64| HEIGHT - MARGIN - (v as f64) * (HEIGHT - 2.0 * MARGIN) / peak;
    let line = |pick: fn(&crate::report::Second) -> u64| {
        report
            .timeline
            .iter()
            .enumerate()
            .map(|(i, s)| format!("{:.1},{:.1}", x(i), y(pick(s))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = format!(r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">"#);
    let _ = write!(
        svg,
        r##"<line x1="{MARGIN}" y1="{b}" x2="{r}" y2="{b}" stroke="#999"/><line x1="{MARGIN}" y1="{MARGIN}" x2="{MARGIN}" y2="{b}" stroke="#999"/>
<text x="4" y="{t}" font-size="11">{peak:.0}/s</text><text x="4" y="{b}" font-size="11">0</text>
<text x="{r}" y="{HEIGHT}" font-size="11" text-anchor="end">{last} s</text>
<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{events}"/>
<polyline fill="none" stroke="#d62728" stroke-width="2" stroke-dasharray="4 2" points="{webhooks}"/>
<text x="{lx}" y="14" font-size="12" fill="#1f77b4">events accepted/s</text>
<text x="{lx2}" y="14" font-size="12" fill="#d62728">webhooks delivered/s</text></svg>"##,
        b = HEIGHT - MARGIN,
        r = WIDTH - MARGIN,
        t = MARGIN + 4.0,
        last = report.timeline.len().saturating_sub(1),
        events = line(|s| s.events),
        webhooks = line(|s| s.webhooks),
        lx = MARGIN + 10.0,
        lx2 = MARGIN + 170.0,
    );
    svg
}

/// How many events took how long from API call to webhook.
fn latency_chart(report: &Report) -> String {
    let buckets = &report.latency_histogram;
    let peak = buckets.iter().map(|b| b.count).max().unwrap_or(0).max(1) as f64;
    let slot = (WIDTH - 2.0 * MARGIN) / buckets.len().max(1) as f64;
    let mut svg = format!(r#"<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img">"#);
    for (i, bucket) in buckets.iter().enumerate() {
        let h = bucket.count as f64 * (HEIGHT - 2.0 * MARGIN) / peak;
        let x = MARGIN + i as f64 * slot;
        let label = if bucket.le_ms.is_finite() {
            format!("≤{}", bucket.le_ms)
        } else {
            "more".to_owned()
        };
        let _ = write!(
            svg,
            r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="#2ca02c"><title>{label} ms: {count}</title></rect>
<text x="{cx:.1}" y="{ly}" font-size="10" text-anchor="middle">{label}</text>
<text x="{cx:.1}" y="{cy:.1}" font-size="10" text-anchor="middle">{count}</text>"##,
            y = HEIGHT - MARGIN - h,
            w = slot - 4.0,
            cx = x + slot / 2.0 - 2.0,
            ly = HEIGHT - MARGIN + 14.0,
            cy = HEIGHT - MARGIN - h - 3.0,
            count = bucket.count,
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{x}" y="{y}" font-size="11" text-anchor="middle">milliseconds, API call → verified webhook</text></svg>"#,
        x = WIDTH / 2.0,
        y = HEIGHT - 6.0
    );
    svg
}

fn latency_row(name: &str, s: &LatencyStats) -> String {
    format!(
        "<tr><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td><td>{:.2}</td></tr>",
        escape(name),
        s.count,
        s.p50_ms,
        s.p95_ms,
        s.p99_ms,
        s.max_ms
    )
}

fn webhook_rows(w: &WebhookStats) -> String {
    [
        ("expected (events accepted)", w.expected),
        ("delivered, signature verified", w.delivered),
        ("lost", w.lost),
        ("duplicates", w.duplicates),
        ("invalid signatures", w.invalid_signatures),
        ("injected failures (retried)", w.injected_failures),
        ("requests at the sink", w.sink_requests),
    ]
    .iter()
    .map(|(what, n)| format!("<tr><td>{what}</td><td>{n}</td></tr>"))
    .collect()
}

pub fn render(report: &Report) -> String {
    let mut rows: Vec<String> = report
        .operations
        .iter()
        .map(|(op, s)| latency_row(&format!("{op:?}").to_lowercase(), s))
        .collect();
    if let Some(s) = &report.webhooks.latency {
        rows.push(latency_row("API call → webhook", s));
    }
    let verdict = if report.failed() {
        r#"<p class="bad">FAILED: events lost or signatures invalid</p>"#
    } else {
        r#"<p class="good">Every accepted event was delivered with a valid signature.</p>"#
    };
    let errors: String = report
        .errors
        .iter()
        .map(|(what, n)| format!("<li>{n} × {}</li>", escape(what)))
        .collect();
    format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>ACP load test — {target}</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:right}}td:first-child,th:first-child{{text-align:left}}
.good{{color:#2a7a2a}}.bad{{color:#b00;font-weight:bold}}</style></head><body>
<h1>ACP load test</h1>
<p>Target <code>{target}</code>: {flows} checkout flows, {requests} API calls in {elapsed:.2} s —
<b>{rps:.0} calls/s, {eps:.0} events/s</b>; last webhook at {total:.2} s.</p>
{verdict}
<h2>Latency (ms)</h2>
<table><tr><th>operation</th><th>count</th><th>p50</th><th>p95</th><th>p99</th><th>max</th></tr>{rows}</table>
<h2>Webhooks</h2>
<table>{webhooks}</table>
<h2>Throughput over time</h2>
{throughput}
<h2>API call → webhook latency</h2>
{latency}
{errors_section}
</body></html>
"#,
        target = escape(&report.target),
        flows = report.flows_completed,
        requests = report.requests,
        elapsed = report.elapsed_s,
        rps = report.requests_per_s,
        eps = report.events_per_s,
        total = report.total_s,
        rows = rows.join(""),
        webhooks = webhook_rows(&report.webhooks),
        throughput = throughput_chart(report),
        latency = latency_chart(report),
        errors_section = if errors.is_empty() {
            String::new()
        } else {
            format!("<h2>Errors</h2><ul>{errors}</ul>")
        },
    )
}
