//! One delivery attempt: the URL checked again, the request sent, at most 64 KiB of the answer
//! read, and the result classified for the attempt log and the retry decision.

use crate::pinned_dns::{Blocked, NameNotResolved};
use crate::request::WebhookRequest;
use checkout::delivery_outcome::DeliveryControl;
use checkout::delivery_outcome::{self, ErrorClass, Outcome};
use checkout::url_safety::{self, UrlPolicy};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Most of a receiver's answer we read (and keep, as a snippet, at most 4 KiB of it).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024;
pub const MAX_SNIPPET_BYTES: usize = 4 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttemptResult {
    pub outcome: Outcome,
    pub status: Option<u16>,
    pub latency: Duration,
    /// The address actually connected to.
    pub remote_ip: Option<IpAddr>,
    /// The start of the answer (or the error), for the attempt log.
    pub snippet: String,
    /// From sending the request to the answer's headers.
    pub headers_after: Option<Duration>,
    /// The receiver's `Server-Timing` header, cut to [`MAX_SERVER_TIMING_BYTES`].
    pub server_timing: Option<String>,
    /// The answer's headers, `name: value` lines, at most [`MAX_ANSWER_HEADERS_BYTES`].
    pub answer_headers: String,
    /// What the receiver asked with `webhook-delivery`.
    pub control: DeliveryControl,
}

/// The most of a receiver's `Server-Timing` header the attempt log keeps.
pub const MAX_SERVER_TIMING_BYTES: usize = 256;
/// The most of an answer's headers the attempt log keeps. They come out of the snippet's
/// [`MAX_SNIPPET_BYTES`]: headers and snippet together are never more than a snippet was, so an
/// attempt record (and a DynamoDB group of them) is no larger than its bound.
pub const MAX_ANSWER_HEADERS_BYTES: usize = 1024;

fn failed(class: ErrorClass, started: Instant, detail: String) -> AttemptResult {
    AttemptResult {
        outcome: delivery_outcome::of_error(class),
        status: None,
        latency: started.elapsed(),
        remote_ip: None,
        snippet: truncate(detail.into_bytes()),
        headers_after: None,
        server_timing: None,
        answer_headers: String::new(),
        control: DeliveryControl::default(),
    }
}

fn truncate(bytes: Vec<u8>) -> String {
    truncate_to(bytes, MAX_SNIPPET_BYTES)
}

/// At most `max` bytes of `bytes` as text (invalid UTF-8 replaced, then cut on a character).
fn truncate_to(mut bytes: Vec<u8>, max: usize) -> String {
    bytes.truncate(max);
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    while text.len() > max {
        text.pop();
    }
    text
}

/// The answer's headers as `name: value` lines (printable ASCII only), whole lines up to
/// [`MAX_ANSWER_HEADERS_BYTES`].
fn answer_headers(headers: &http::HeaderMap) -> String {
    let mut kept = String::new();
    for (name, value) in headers {
        let value: String = String::from_utf8_lossy(value.as_bytes())
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .collect();
        let line = format!("{name}: {value}\n");
        if kept.len() + line.len() > MAX_ANSWER_HEADERS_BYTES {
            break;
        }
        kept.push_str(&line);
    }
    kept
}

/// The error and its causes. An `io::Error` is looked through: it hides the error it wraps
/// from `source()` (TLS and resolver errors reach us wrapped in one).
fn chain(err: &reqwest::Error) -> Vec<&(dyn std::error::Error + 'static)> {
    let mut causes = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(err);
    // Bounded, should some error's source() ever lead back to itself.
    while let Some(e) = next.filter(|_| causes.len() < 32) {
        causes.push(e);
        next = match e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => e.source(),
        };
    }
    causes
}

/// What kind of failure `err` is, from the types of its causes (not their wording).
fn classify(err: &reqwest::Error) -> ErrorClass {
    let causes = chain(err);
    let any = |test: fn(&(dyn std::error::Error + 'static)) -> bool| causes.iter().any(|e| test(*e));
    if any(|e| e.is::<Blocked>()) {
        ErrorClass::Blocked
    } else if any(|e| e.is::<NameNotResolved>()) {
        ErrorClass::Dns
    } else if any(|e| e.is::<rustls::Error>()) {
        ErrorClass::Tls
    } else if err.is_timeout() {
        ErrorClass::Timeout
    } else if err.is_connect() {
        ErrorClass::Connect
    } else {
        ErrorClass::Http
    }
}

pub async fn attempt(client: &reqwest::Client, request: WebhookRequest, policy: UrlPolicy, now: i64) -> AttemptResult {
    let started = Instant::now();
    let checked = match url_safety::parse_webhook_url(&request.url, policy) {
        Ok(checked) => checked,
        Err(err) => return failed(ErrorClass::Blocked, started, err.to_string()),
    };
    let builder = client.post(checked.url).headers(request.headers).body(request.body);
    let mut response = match builder.send().await {
        Ok(response) => response,
        Err(err) => return failed(classify(&err), started, err.to_string()),
    };
    let headers_after = started.elapsed();
    let status = response.status().as_u16();
    let remote_ip = response.remote_addr().map(|a| a.ip());
    let headers = response.headers();
    let retry_after = headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| delivery_outcome::parse_retry_after(v, now));
    let control = DeliveryControl::parse(
        headers
            .get_all(DeliveryControl::HEADER)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let server_timing = server_timing(headers);
    let answer_headers = answer_headers(headers);
    let mut body = Vec::new();
    let read = async {
        while body.len() < MAX_RESPONSE_BYTES {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    };
    if let Err(err) = read.await {
        // The status is in; a body cut short changes nothing about the outcome but the note.
        body.extend_from_slice(format!(" [body unreadable: {err}]").as_bytes());
    }
    AttemptResult {
        outcome: delivery_outcome::of_answer(status, retry_after, control),
        status: Some(status),
        latency: started.elapsed(),
        remote_ip,
        snippet: truncate_to(body, MAX_SNIPPET_BYTES - answer_headers.len()),
        headers_after: Some(headers_after),
        server_timing,
        answer_headers,
        control,
    }
}

/// The `Server-Timing` header's values joined (a receiver may send several), printable ASCII
/// only, cut at [`MAX_SERVER_TIMING_BYTES`].
fn server_timing(headers: &http::HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all("server-timing")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if values.is_empty() {
        return None;
    }
    let mut joined: String = values
        .join(", ")
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect();
    joined.truncate(MAX_SERVER_TIMING_BYTES);
    Some(joined)
}
