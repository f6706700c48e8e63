//! The portal's pages: server-rendered HTML (maud: checked at compile time, every value
//! escaped unless marked otherwise — nothing here is), no script, one stylesheet of our own.

use super::chart::{self, Hour};
use super::health::{Health, Period};
use checkout::attempt_log::{AttemptRecord, AttemptStatus};
use checkout::clock::{self, Timestamp};
use checkout::delivery_outcome::ErrorClass;
use checkout::replay::{ReplayJob, ReplayKind, ReplayStatus};
use checkout::webhook_endpoint::{EndpointState, WebhookEndpoint};
use maud::{DOCTYPE, Markup, html};

/// A whole page. Links are relative to `/portal/` (`root`: the way back to it from the page),
/// so the portal works behind any prefix (an API Gateway stage).
pub fn page(title: &str, root: &str, content: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Webhooks" }
                link rel="stylesheet" href={ (root) "portal.css" };
            }
            body {
                header {
                    a.home href=(root) { "Webhooks" }
                    nav { a href=(root) { "Endpoints" } a href={ (root) "event-types" } { "Event types" } }
                }
                main { (content) }
            }
        }
    }
}

/// A portal link's page: whose portal it opens, and a button to sign in to it.
pub fn sign_in(merchant_name: &str, token: &str, nonce: &str) -> Markup {
    page(
        "Sign in",
        "./",
        html! {
            h1 { "Sign in to the webhooks of " (merchant_name) "?" }
            p { "This link opens the webhook portal of " strong { (merchant_name) } " for 4 hours in this browser." }
            form method="post" action="login" {
                input type="hidden" name="token" value=(token);
                input type="hidden" name="nonce" value=(nonce);
                button type="submit" { "Sign in" }
            }
            p { small { "Not the account you expected, or you did not ask for a link? Close this page: nothing has happened." } }
        },
    )
}

pub fn refused(root: &str, message: &str) -> Markup {
    page(
        "Not signed in",
        root,
        html! {
            h1 { "Not signed in" }
            p { (message) }
            p { "Ask for a new portal link: " code { "POST /portal_links" } " with your API key." }
        },
    )
}

pub fn not_found(root: &str) -> Markup {
    page(
        "Not found",
        root,
        html! { h1 { "Not found" } p { "There is nothing here, or it is not yours." } },
    )
}

pub fn failed(root: &str, message: &str) -> Markup {
    page(
        "Could not do that",
        root,
        html! { h1 { "Could not do that" } p.failure { (message) } },
    )
}

/// "3 min ago", with the exact time on hover.
pub fn when(at: &Timestamp, now: Timestamp) -> Markup {
    let ago = now - *at;
    let text = match ago.num_seconds() {
        s if s < -3600 => format!("in {} h", -s / 3600),
        s if s < -60 => format!("in {} min", -s / 60),
        s if s < 0 => format!("in {} s", -s),
        s if s < 60 => format!("{s} s ago"),
        s if s < 3600 => format!("{} min ago", s / 60),
        s if s < 86_400 => format!("{} h ago", s / 3600),
        s => format!("{} days ago", s / 86_400),
    };
    html! { time datetime=(clock::rfc3339_millis(at)) title=(clock::rfc3339_millis(at)) { (text) } }
}

/// Milliseconds as people read them.
fn duration(ms: u32) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else {
        format!("{:.1} s", f64::from(ms) / 1000.0)
    }
}

fn state(endpoint: &WebhookEndpoint) -> Markup {
    let state = endpoint.state();
    html! {
        span class={ "state " (state.as_str()) } { (state.as_str()) }
        @if let (EndpointState::Disabled, Some(reason)) = (state, &endpoint.disabled_reason) {
            " " small { "(" (reason) ")" }
        }
    }
}

fn period_cells(period: &Period) -> Markup {
    html! {
        @match period.success_rate() {
            Some(rate) => {
                td class=[(rate < 99.0).then_some("failure")] { (format!("{rate:.1} %")) " of " (period.attempts) }
            }
            None => td { "—" }
        }
        td { (period.p50_ms.map_or("—".to_owned(), duration)) " / " (period.p99_ms.map_or("—".to_owned(), duration)) }
    }
}

/// The merchant's endpoints at a glance.
pub fn endpoints(
    listed: &[(WebhookEndpoint, Health, [Hour; chart::HOURS])],
    merchant_name: &str,
    csrf: &str,
    now: Timestamp,
) -> Markup {
    page(
        "Endpoints",
        "./",
        html! {
            h1 { "Endpoints of " (merchant_name) }
            div.actions {
                a.button href="endpoints/new" { "Add an endpoint" }
                (action("logout", "Sign out", csrf))
            }
            @if listed.is_empty() {
                p { "No endpoint yet: add one here, or with " code { "POST /webhook_endpoints" } "." }
            } @else {
                table {
                    thead { tr {
                        th { "Endpoint" } th { "State" }
                        th { "Success, last hour" } th { "p50 / p99, last hour" }
                        th { "Success, last day" } th { "p50 / p99, last day" }
                        th { "Last failure" } th { "Last 24 h" }
                    } }
                    tbody {
                        @for (endpoint, health, hours) in listed {
                            tr {
                                td {
                                    a href={ "endpoints/" (endpoint.id.as_str()) } { (endpoint.url) }
                                    @if let Some(description) = &endpoint.description { br; small { (description) } }
                                }
                                td { (state(endpoint)) }
                                (period_cells(&health.hour))
                                (period_cells(&health.day))
                                td {
                                    @match &health.last_failure {
                                        Some(failure) => span.failure { (when(&failure.at, now)) }
                                        None => "—"
                                    }
                                }
                                td { (chart::svg(hours, 120, 24)) }
                            }
                        }
                    }
                }
            }
        },
    )
}

fn status(record: &AttemptRecord) -> Markup {
    let text = match record.status {
        AttemptStatus::Succeeded => "succeeded",
        AttemptStatus::Failed => "failed",
        AttemptStatus::Skipped => "skipped",
        AttemptStatus::Paused => "paused",
    };
    html! { span class={ "status " (text) } { (text) } }
}

/// The session's CSRF token, as every form carries it.
pub fn csrf_field(csrf: &str) -> Markup {
    html! { input type="hidden" name="csrf" value=(csrf); }
}

/// A form posting to `action` (relative), with the session's CSRF token.
fn action(action: &str, label: &str, csrf: &str) -> Markup {
    html! {
        form method="post" action=(action) {
            (csrf_field(csrf))
            button type="submit" { (label) }
        }
    }
}

/// Which attempts the page lists.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Filter {
    #[default]
    All,
    Only(AttemptStatus),
}

impl Filter {
    pub fn keeps(self, record: &AttemptRecord) -> bool {
        match self {
            Self::All => true,
            Self::Only(status) => record.status == status,
        }
    }
}

/// One endpoint: its state and health, what can be done, and its attempts, newest first.
/// What an endpoint's page shows beside the endpoint itself.
pub struct EndpointView<'a> {
    pub health: &'a Health,
    pub hours: &'a [Hour; chart::HOURS],
    pub attempts: &'a [AttemptRecord],
    pub filter: Filter,
    /// The `before` time the attempts are listed from, as given.
    pub before: Option<&'a str>,
    pub replay: Option<&'a ReplayJob>,
    pub csrf: &'a str,
    /// The query of the next page of older attempts, when there may be one.
    pub older: Option<&'a str>,
}

pub fn endpoint(endpoint: &WebhookEndpoint, view: &EndpointView<'_>, now: Timestamp) -> Markup {
    let EndpointView {
        health,
        hours,
        attempts,
        filter,
        before,
        replay,
        csrf,
        older,
    } = *view;
    page(
        &endpoint.url,
        "../",
        html! {
            h1 { (endpoint.url) }
            p {
                (state(endpoint)) " · signs with " (endpoint.signature_scheme.as_str())
                @if let Some(description) = &endpoint.description { " · " (description) }
            }
            nav.links {
                a href={ (endpoint.id.as_str()) "/edit" } { "Edit" }
                a href={ (endpoint.id.as_str()) "/rotate" } { "Rotate the secret" }
                a href={ (endpoint.id.as_str()) "/replay" } { "Replay a window" }
                a href={ (endpoint.id.as_str()) "/verify" } { "Verify signatures" }
                a.danger href={ (endpoint.id.as_str()) "/delete" } { "Delete" }
            }
            div.actions {
                @match endpoint.state() {
                    EndpointState::Enabled => {
                        (action(&format!("{}/pause", endpoint.id), "Pause deliveries", csrf))
                        (action(&format!("{}/test", endpoint.id), "Send a test event", csrf))
                    }
                    EndpointState::Paused => (action(&format!("{}/resume", endpoint.id), "Resume and send what was held", csrf)),
                    EndpointState::Disabled => p { "Disabled: tick Enabled on its " a href={ (endpoint.id.as_str()) "/edit" } { "Edit" } " page to send again." },
                }
            }
            table {
                thead { tr { th { "" } th { "Success" } th { "p50 / p99" } } }
                tbody {
                    tr { th { "Last hour" } (period_cells(&health.hour)) }
                    tr { th { "Last day" } (period_cells(&health.day)) }
                }
            }
            figure {
                (chart::svg(hours, 480, 64))
                figcaption { "Attempts per hour over the last 24 hours (of the newest " (super::HEALTH_RECORDS) "): delivered in green, failed in red." }
            }
            @if let Some(job) = replay { (replay_progress(job, now)) }
            h2 { "Attempts" }
            @let current = match filter { Filter::All => "all", Filter::Only(s) => status_name(s) };
            form.filters method="get" action=(endpoint.id.as_str()) {
                label { "Status "
                    select name="status" {
                        @for label in ["all", "failed", "succeeded", "paused", "skipped"] {
                            option value=(label) selected[current == label] { (label) }
                        }
                    }
                }
                label { " Before (UTC) " input type="datetime-local" step="1" name="before" value=(before.unwrap_or_default()); }
                " " button type="submit" { "Show" }
                @if filter != Filter::All || before.is_some() { " " a href=(endpoint.id.as_str()) { "newest, all" } }
            }
            @if attempts.is_empty() {
                p { "No attempts" @if filter != Filter::All || before.is_some() { " match" } "." }
            } @else {
                table {
                    thead { tr { th { "Event" } th { "Type" } th { "Attempt" } th { "Status" } th { "HTTP" } th { "Took" } th { "When" } } }
                    tbody {
                        @for record in attempts {
                            tr class=[(record.status == AttemptStatus::Failed).then_some("failure")] {
                                td { a href={ (endpoint.id.as_str()) "/events/" (record.event_id.as_str()) } { code { (record.event_id.as_str()) } } }
                                td { (record.event_type.as_str()) }
                                td { (record.attempt) }
                                td { (status(record)) }
                                td { (record.http_status.map_or("—".to_owned(), |s| s.to_string())) }
                                td { (duration(record.latency_ms)) }
                                td { (when(&record.at, now)) }
                            }
                        }
                    }
                }
            }
            @if let Some(older) = older { p.older { a href={ (endpoint.id.as_str()) (older) } { "Older attempts →" } } }
        },
    )
}

/// The endpoint's latest replay or resume, as far as it has got.
fn replay_progress(job: &ReplayJob, now: Timestamp) -> Markup {
    let what = if job.kind == ReplayKind::Resume {
        "Resume"
    } else {
        "Replay"
    };
    let status = match job.status {
        ReplayStatus::Running => "running",
        ReplayStatus::Completed => "completed",
        ReplayStatus::Failed => "failed",
    };
    html! {
        p.replay {
            (what) " started " (when(&job.created_at, now)) ": " strong { (status) } ", "
            (job.replayed) " sent of " (job.events_seen) " events looked at"
            @if job.set_aside > 0 { ", " span.failure { (job.set_aside) " unreadable" } }
            "."
        }
    }
}

fn error_words(class: ErrorClass) -> &'static str {
    match class {
        ErrorClass::Dns => "the host name did not resolve",
        ErrorClass::Connect => "no connection (refused or unreachable)",
        ErrorClass::Tls => "the TLS handshake failed",
        ErrorClass::Timeout => "no answer in time",
        ErrorClass::Http => "the answer's status was not 2xx",
        ErrorClass::Blocked => "the URL now resolves to an address we do not send to",
    }
}

pub fn status_name(status: AttemptStatus) -> &'static str {
    match status {
        AttemptStatus::Succeeded => "succeeded",
        AttemptStatus::Failed => "failed",
        AttemptStatus::Skipped => "skipped",
        AttemptStatus::Paused => "paused",
    }
}

/// Every attempt of one event to one endpoint: the request we sent, each answer, the timing.
pub fn event_attempts(
    endpoint: &WebhookEndpoint,
    attempts: &[AttemptRecord],
    body: Option<&str>,
    now: Timestamp,
) -> Markup {
    let event_id = attempts.first().map(|r| r.event_id.to_string()).unwrap_or_default();
    page(
        &event_id,
        "../../../",
        html! {
            p { a href={ "../../" (endpoint.id.as_str()) } { "← " (endpoint.url) } }
            h1 { code { (event_id) } }
            h2 { "Attempts" }
            @for (i, record) in attempts.iter().enumerate() {
                @let newest = i + 1 == attempts.len();
                section class=[(record.status == AttemptStatus::Failed).then_some("failure")] {
                    h3 { "Attempt " (record.attempt) " · " (status(record)) " · " (when(&record.at, now)) }
                    dl {
                        dt { "Answer" } dd { (record.http_status.map_or("none".to_owned(), |s| s.to_string())) }
                        @if let Some(class) = record.error_class { dt { "Error" } dd { (error_words(class)) } }
                        dt { "Took" } dd { (duration(record.latency_ms)) }
                        @if let Some(headers) = record.headers_ms { dt { "Until the answer's headers" } dd { (duration(headers)) } }
                        @if let Some(timing) = &record.server_timing { dt { "Server-Timing" } dd { code { (timing) } } }
                        @if let Some(ip) = record.remote_ip { dt { "Address" } dd { (ip.to_string()) } }
                        @if let Some(reason) = &record.final_reason { dt { "Outcome" } dd { (reason) } }
                        @if let Some(next) = record.next_attempt_at.as_ref().filter(|_| newest) { dt { "Next attempt" } dd { (when(next, now)) } }
                    }
                    @if !record.answer_headers.is_empty() { h4 { "The answer's headers" } pre.headers { (record.answer_headers) } }
                    @if !record.snippet.is_empty() { h4 { "What the receiver answered (its start)" } pre { (record.snippet) } }
                }
            }
            h2 { "The request" }
            pre {
                "POST " (endpoint.url) "\n"
                "content-type: application/json\n"
                "webhook-id: " (event_id) "\n"
                "webhook-timestamp: (the second of each attempt)\n"
                "webhook-signature: (made for each attempt with the credentials in force; not kept)\n"
                @if let Some(first) = attempts.first() { "webhook-sequence: " (first.version) "\n" }
                "webhook-attempt: (the attempt's number)\n"
            }
            @match body {
                Some(body) => pre.body { (body) }
                None => p { "The event is not stored (a test event), or can no longer be read." }
            }
        },
    )
}

/// The stylesheet, served as `portal.css`.
pub const STYLESHEET: &str = "\
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1d2433;background:#fafbfc}\
header{padding:.7em 1.5em;background:#1d2433}header a{color:#fff;text-decoration:none;font-weight:600}\
main{padding:1em 1.5em;max-width:75em}\
table{border-collapse:collapse;margin:.5em 0 1.5em}th,td{padding:.35em .8em;border-bottom:1px solid #e3e6eb;text-align:left;vertical-align:top}\
th{font-weight:600;color:#4a5468}\
.failure,.failure td,span.failure{color:#b42318}tr.failure td{background:#fff5f4}\
.state,.status{padding:.1em .5em;border-radius:.8em;font-size:.85em;background:#e3e6eb}\
.state.enabled,.status.succeeded{background:#dcfae6;color:#067647}\
.state.paused,.status.paused{background:#fef0c7;color:#93370d}\
.state.disabled,.status.failed{background:#fee4e2;color:#b42318}\
.actions{display:flex;gap:.6em;margin:.8em 0}button{font:inherit;padding:.35em .9em;cursor:pointer}\
pre{background:#f0f2f5;padding:.8em;overflow:auto;max-height:24em;white-space:pre-wrap;word-break:break-all}\
section{border-top:1px solid #e3e6eb;margin-top:1em}dl{display:grid;grid-template-columns:max-content 1fr;gap:.2em 1em}dt{color:#4a5468}\
header{display:flex;gap:2em;align-items:center}header nav{display:flex;gap:1.2em}header nav a{font-weight:400;color:#c9d1e0}\
nav.links{display:flex;gap:1.2em;margin:.6em 0}a{color:#175cd3}.danger,a.danger{color:#b42318}button.danger{border-color:#b42318}\
a.button{display:inline-block;padding:.35em .9em;border:1px solid #175cd3;border-radius:.3em;text-decoration:none}\
form.settings{display:grid;gap:.8em;max-width:40em}form.settings label{display:grid;gap:.2em}label.inline,form.settings label.inline{display:flex;gap:.5em;align-items:center}\
fieldset{border:1px solid #e3e6eb}input,select{font:inherit;padding:.25em}.problem{padding:.5em .8em;background:#fff5f4;border-left:3px solid #b42318}\
pre.secret{font-size:1.1em;background:#fef0c7}svg.chart{display:block;margin:.5em 0}figure{margin:.5em 0}figcaption{font-size:.85em;color:#4a5468}.preview{font-size:1.1em}form.filters{margin:.5em 0}\
";
