//! What a run costs on AWS at on-demand list prices: the requests counted on the wire (see
//! [`crate::meter`]), the functions' invocations and billed time, the API requests and the log
//! bytes, priced in one place.

use crate::meter::Counts;
use crate::runtime_api::Invocations;

/// us-east-1 on-demand list prices (USD), from the AWS pricing pages of each service
/// (aws.amazon.com/{api-gateway,lambda,dynamodb,sns,sqs,cloudwatch}/pricing), as of 2026.
pub mod price {
    /// HTTP API, per request (first 300 million a month).
    pub const API_REQUEST: f64 = 1.00 / 1e6;
    /// Lambda on arm64: per request, and per GB-second.
    pub const LAMBDA_REQUEST: f64 = 0.20 / 1e6;
    pub const LAMBDA_GB_SECOND: f64 = 0.000_013_333_4;
    /// DynamoDB on demand: per write request unit, per read request unit.
    pub const WRITE_UNIT: f64 = 0.625 / 1e6;
    pub const READ_UNIT: f64 = 0.125 / 1e6;
    /// SNS standard: per publish (64 KB chunk); delivery to SQS is free.
    pub const SNS_PUBLISH: f64 = 0.50 / 1e6;
    /// SQS standard: per request (64 KB chunk).
    pub const SQS_REQUEST: f64 = 0.40 / 1e6;
    /// CloudWatch Logs: per GB ingested.
    pub const LOG_GB: f64 = 0.50;
}

/// One line of the bill, per event.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    pub component: String,
    pub per_event: f64,
    pub unit: &'static str,
    /// USD per million events.
    pub per_million: f64,
}

/// What one function did during a run.
pub struct FunctionUsage<'a> {
    pub name: &'a str,
    pub invocations: Invocations,
    pub memory_mb: i64,
    /// Its AWS requests, counted on the wire.
    pub calls: &'a Counts,
    /// Bytes it logged.
    pub log_bytes: u64,
}

/// The bill of `events` events: API requests (if any), then each function.
pub fn lines(events: u64, api_requests: u64, functions: &[FunctionUsage<'_>], queue_requests: u64) -> Vec<Line> {
    let per = |n: f64| n / events.max(1) as f64;
    let mut lines = Vec::new();
    let mut push = |component: String, quantity: f64, unit: &'static str, price: f64| {
        if quantity > 0.0 {
            lines.push(Line {
                component,
                per_event: per(quantity),
                unit,
                per_million: per(quantity) * price * 1e6,
            });
        }
    };
    push(
        "API Gateway HTTP API".into(),
        api_requests as f64,
        "requests",
        price::API_REQUEST,
    );
    for f in functions {
        push(
            format!("{} invocations", f.name),
            f.invocations.count as f64,
            "requests",
            price::LAMBDA_REQUEST,
        );
        let gb_seconds = f.invocations.billed.as_secs_f64() * f.memory_mb as f64 / 1024.0;
        push(
            format!("{} duration", f.name),
            gb_seconds,
            "GB-s",
            price::LAMBDA_GB_SECOND,
        );
        for ((service, operation), usage) in f.calls {
            let what = format!("{}: {service} {operation}", f.name);
            match service.as_str() {
                "DynamoDB" => {
                    push(format!("{what} (writes)"), usage.write_units, "WRU", price::WRITE_UNIT);
                    push(format!("{what} (reads)"), usage.read_units, "RRU", price::READ_UNIT);
                }
                "SNS" => push(what, usage.billed as f64, "publishes", price::SNS_PUBLISH),
                "SQS" => push(what, usage.billed as f64, "requests", price::SQS_REQUEST),
                // Stream reads by a Lambda trigger are free.
                _ => {}
            }
        }
        push(
            format!("{} logs", f.name),
            f.log_bytes as f64 / 1e9,
            "GB",
            price::LOG_GB,
        );
    }
    push(
        "SQS event source (receive + delete)".into(),
        queue_requests as f64,
        "requests",
        price::SQS_REQUEST,
    );
    lines
}

pub fn total(lines: &[Line]) -> f64 {
    lines.iter().map(|l| l.per_million).sum()
}

/// The bill as a Markdown table.
pub fn table(lines: &[Line]) -> String {
    let mut text = String::from("| component | per event | unit | $ per million events |\n|---|---:|---|---:|\n");
    for line in lines {
        text.push_str(&format!(
            "| {} | {:.3} | {} | {:.3} |\n",
            line.component, line.per_event, line.unit, line.per_million
        ));
    }
    text.push_str(&format!("| **total** | | | **{:.2}** |\n", total(lines)));
    text
}
