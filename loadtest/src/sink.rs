//! The webhook sink: receives the deliveries of the run, verifies each signature, and records
//! when each event first arrived. Optionally misbehaves (failures, 429 with Retry-After, slow
//! answers) to show retries under load.

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How the sink answers.
#[derive(Clone, Debug, Default)]
pub struct SinkFaults {
    /// Share of deliveries answered with a failure, 0.0–1.0.
    pub fail_rate: f64,
    /// The failure statuses, used in turn (429 comes with `Retry-After`).
    pub fail_statuses: Vec<u16>,
    /// Seconds in the `Retry-After` of a 429.
    pub retry_after_s: u64,
    /// Added to every answer.
    pub slow: Duration,
}

/// The path of the broken endpoint: its requests are held this long, then answered 503.
pub const BROKEN_PATH: &str = "/broken";

/// The part of an event the sink reads.
#[derive(Deserialize)]
struct EventHead {
    session_id: String,
    version: u64,
}

/// What arrived for one event.
#[derive(Clone, Copy, Debug)]
pub struct Arrival {
    pub first: Instant,
    /// Accepted deliveries of it (more than one: a duplicate).
    pub times: u32,
}

#[derive(Default)]
pub struct SinkCounters {
    pub requests: AtomicU64,
    pub invalid_signatures: AtomicU64,
    pub injected_failures: AtomicU64,
    pub unreadable: AtomicU64,
    /// Requests to the broken endpoint (held, then failed).
    pub broken: AtomicU64,
}

pub struct SinkState {
    /// How long requests to [`BROKEN_PATH`] are held before their 503.
    pub broken_hold: Duration,
    /// Set once the endpoint is registered; until then nothing verifies and all is refused.
    pub secret: OnceLock<String>,
    pub faults: SinkFaults,
    pub counters: SinkCounters,
    /// By (session, version).
    pub arrivals: Mutex<HashMap<(String, u64), Arrival>>,
}

pub struct Sink {
    pub addr: SocketAddr,
    pub state: Arc<SinkState>,
}

impl Sink {
    pub async fn start(listen: SocketAddr, faults: SinkFaults, broken_hold: Duration) -> anyhow::Result<Sink> {
        let state = Arc::new(SinkState {
            broken_hold,
            secret: OnceLock::new(),
            faults,
            counters: SinkCounters::default(),
            arrivals: Mutex::new(HashMap::new()),
        });
        let handler_state = state.clone();
        let app = axum::Router::new().fallback(axum::routing::post(
            move |uri: axum::http::Uri, headers: HeaderMap, body: Bytes| {
                let state = handler_state.clone();
                async move {
                    if uri.path() == BROKEN_PATH {
                        return hold_and_fail(&state).await;
                    }
                    receive(&state, &headers, &body).await
                }
            },
        ));
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok(Sink { addr, state })
    }

    pub fn delivered(&self) -> usize {
        self.state.arrivals.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

async fn receive(state: &SinkState, headers: &HeaderMap, body: &[u8]) -> Response {
    let arrived = Instant::now();
    let n = state.counters.requests.fetch_add(1, Ordering::Relaxed);
    if !state.faults.slow.is_zero() {
        tokio::time::sleep(state.faults.slow).await;
    }
    if let Some(failure) = injected_failure(&state.faults, n) {
        state.counters.injected_failures.fetch_add(1, Ordering::Relaxed);
        return failure;
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let verified = state.secret.get().is_some_and(|secret| {
        checkout::signature::verify(
            secret,
            header("webhook-id"),
            header("webhook-timestamp"),
            header("webhook-signature"),
            body,
            chrono::Utc::now().timestamp(),
        )
        .is_ok()
    });
    if !verified {
        state.counters.invalid_signatures.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Ok(event) = serde_json::from_slice::<EventHead>(body) else {
        state.counters.unreadable.fetch_add(1, Ordering::Relaxed);
        return StatusCode::BAD_REQUEST.into_response();
    };
    let mut arrivals = state.arrivals.lock().unwrap_or_else(|p| p.into_inner());
    arrivals
        .entry((event.session_id, event.version))
        .and_modify(|a| a.times += 1)
        .or_insert(Arrival {
            first: arrived,
            times: 1,
        });
    StatusCode::NO_CONTENT.into_response()
}

/// The broken endpoint: never a timely answer.
async fn hold_and_fail(state: &SinkState) -> Response {
    state.counters.broken.fetch_add(1, Ordering::Relaxed);
    tokio::time::sleep(state.broken_hold).await;
    StatusCode::SERVICE_UNAVAILABLE.into_response()
}

/// Every 1/fail_rate-th request fails (spread evenly, so a run is repeatable), with the
/// statuses in turn.
fn injected_failure(faults: &SinkFaults, n: u64) -> Option<Response> {
    if faults.fail_rate <= 0.0 || faults.fail_statuses.is_empty() {
        return None;
    }
    let before = (n as f64 * faults.fail_rate).floor();
    let after = ((n + 1) as f64 * faults.fail_rate).floor();
    if after <= before {
        return None;
    }
    let status = faults.fail_statuses[before as usize % faults.fail_statuses.len()];
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = status.into_response();
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert("retry-after", HeaderValue::from(faults.retry_after_s));
    }
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_spread_at_the_rate_with_statuses_in_turn() {
        let faults = SinkFaults {
            fail_rate: 0.25,
            fail_statuses: vec![500, 429],
            retry_after_s: 2,
            slow: Duration::ZERO,
        };
        let answers: Vec<Option<Response>> = (0..8).map(|n| injected_failure(&faults, n)).collect();
        let failed: Vec<u16> = answers.iter().flatten().map(|r| r.status().as_u16()).collect();
        assert_eq!(failed, vec![500, 429]);
        let throttled = answers.iter().flatten().find(|r| r.status() == 429).unwrap();
        assert_eq!(throttled.headers()["retry-after"], "2");
        let none = SinkFaults::default();
        assert!((0..100).all(|n| injected_failure(&none, n).is_none()));
    }
}
