//! What merchants see of webhook deliveries: the attempt log (per endpoint, per event) and the
//! replay of what an endpoint missed.

use crate::AppState;
use crate::endpoints::{load, once, reply};
use crate::error::ApiError;
use crate::extract::{Caller, Json, OptionalKey};
use crate::path_id::PathId;
use crate::reply::ApiReply;
use axum::extract::{Query, State};
use axum::http::Uri;
use checkout::acp::ErrorCode;
use checkout::attempt_log::{self, AttemptQuery, AttemptRecord, LogTarget};
use checkout::clock::{self, Timestamp};
use checkout::delivery_task::TaskMessage;
use checkout::ids::EventId;
use checkout::ports::StoreError;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use tracing::{error, info};

const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;
/// Most events one replay sends; a larger window is replayed in several calls.
pub const MAX_REPLAY: usize = 10_000;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

fn read_page(uri: &Uri) -> Result<AttemptQuery, ApiError> {
    let Query(page) = Query::<Page>::try_from_uri(uri).map_err(|_| {
        ApiError::invalid(
            ErrorCode::InvalidQuery,
            format!(
                "The query takes limit (a whole number from 1 to {MAX_PAGE}) and cursor (the next_cursor of the previous page), nothing else."
            ),
            "$",
        )
    })?;
    let limit = page.limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::invalid(
            ErrorCode::InvalidLimit,
            format!("limit is from 1 to {MAX_PAGE}"),
            "$.limit",
        ));
    }
    // A cursor is a sort key this API returned: an event id (a ULID) and an attempt number.
    if let Some(cursor) = &page.cursor
        && checkout::attempt_log::second_of_sort_key(cursor).is_none()
    {
        return Err(ApiError::invalid(
            ErrorCode::InvalidCursor,
            "cursor is not one this API returned: pass next_cursor of the previous page".to_owned(),
            "$.cursor",
        ));
    }
    Ok(AttemptQuery {
        before: page.cursor,
        from: None,
        limit,
    })
}

fn page_body(records: &[AttemptRecord], limit: usize) -> serde_json::Value {
    let has_more = records.len() == limit;
    let next_cursor = has_more.then(|| records.last().map(AttemptRecord::sort_key)).flatten();
    json!({ "data": records, "has_more": has_more, "next_cursor": next_cursor })
}

/// `GET /webhook_endpoints/{id}/attempts`: newest event first.
pub async fn by_endpoint(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    uri: Uri,
) -> Result<ApiReply, ApiError> {
    let query = read_page(&uri)?;
    let endpoint = load(&state, &caller.merchant, &id).await?;
    let records = state
        .backend
        .deliveries
        .attempts(endpoint.id.as_str(), &query)
        .await
        .map_err(ApiError::storage)?;
    Ok(reply(200, &page_body(&records, query.limit)))
}

/// `GET /events/{id}/attempts`: every attempt of the event, to each of the merchant's targets.
pub async fn by_event(State(state): State<AppState>, caller: Caller, PathId(id): PathId) -> Result<ApiReply, ApiError> {
    let event_id = EventId::parse(&id).ok_or(ApiError::NotFound)?;
    let merchant = &caller.merchant;
    let endpoints = state
        .backend
        .endpoints
        .endpoints(&merchant.id)
        .await
        .map_err(ApiError::storage)?;
    let targets = endpoints.iter().map(|e| e.id.to_string()).chain([
        LogTarget::OrderWebhook(merchant.id.clone()).name(),
        LogTarget::LegacyOrderWebhook.name(),
    ]);
    let mut records = Vec::new();
    for target in targets {
        let found = state
            .backend
            .deliveries
            .attempts_of(&target, &event_id)
            .await
            .map_err(ApiError::storage)?;
        // The order webhook's former name was shared; keep only this merchant's records.
        records.extend(found.into_iter().filter(|r| r.merchant_id == merchant.id));
    }
    records.sort_by(|a, b| a.at.cmp(&b.at).then(a.attempt.cmp(&b.attempt)));
    Ok(reply(200, &json!({ "data": records })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    #[serde(with = "clock::rfc3339_serde")]
    since: Timestamp,
    #[serde(default, with = "clock::optional_rfc3339_serde")]
    until: Option<Timestamp>,
    /// Also send events the endpoint already received (default: only those it missed).
    #[serde(default)]
    include_delivered: bool,
}

/// `POST /webhook_endpoints/{id}/replay`: every event of the window that the endpoint did not
/// receive (failed, exhausted, skipped while disabled) goes out again, through the same rate
/// limits, with the same `webhook-id`.
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    OptionalKey(key): OptionalKey,
    body: Json<ReplayRequest>,
) -> ApiReply {
    let Json { value: req, raw } = body;
    once(&state, &caller, key, &raw, || async {
        let merchant = &caller.merchant;
        let until = req.until.unwrap_or_else(clock::now);
        if req.since >= until {
            return Err(ApiError::invalid(
                ErrorCode::InvalidWindow,
                "since must be before until",
                "$.since",
            ));
        }
        if until - req.since > attempt_log::RETENTION {
            let days = attempt_log::RETENTION.num_days();
            return Err(ApiError::invalid(
                ErrorCode::InvalidWindow,
                format!("the window is at most {days} days (the attempt log's retention)"),
                "$.since",
            ));
        }
        let queue = state.delivery_queue.clone().ok_or(ApiError::ReplayUnavailable)?;
        let endpoint = load(&state, merchant, &id).await?;
        let newest = newest_per_event(&state, endpoint.id.as_str(), req.since, until).await?;
        let chosen: Vec<&AttemptRecord> = newest
            .values()
            .filter(|r| req.include_delivered || !r.delivered())
            .collect();
        let (mut replayed, mut set_aside) = (0, 0);
        for record in &chosen {
            match enqueue(&state, queue.as_ref(), record, req.include_delivered).await? {
                Enqueued::Queued => replayed += 1,
                Enqueued::Gone => {}
                Enqueued::Unreadable => set_aside += 1,
            }
        }
        info!(merchant_id = %merchant.id, endpoint_id = %endpoint.id, replayed, set_aside, "replay queued");
        let truncated = newest.len() >= MAX_REPLAY;
        Ok(reply(
            202,
            &json!({
                "replayed": replayed,
                "set_aside": set_aside,
                "truncated": truncated,
                "since": clock::rfc3339(&req.since),
                "until": clock::rfc3339(&until),
            }),
        ))
    })
    .await
}

/// The newest record of each event in the window (at most [`MAX_REPLAY`] events).
async fn newest_per_event(
    state: &AppState,
    target: &str,
    since: Timestamp,
    until: Timestamp,
) -> Result<BTreeMap<EventId, AttemptRecord>, ApiError> {
    let mut newest: BTreeMap<EventId, AttemptRecord> = BTreeMap::new();
    let mut query = AttemptQuery {
        before: Some(attempt_log::time_bound(until)),
        from: Some(attempt_log::time_bound(since)),
        limit: MAX_PAGE,
    };
    loop {
        let page = state
            .backend
            .deliveries
            .attempts(target, &query)
            .await
            .map_err(ApiError::storage)?;
        let full = page.len() == query.limit;
        query.before = page.last().map(AttemptRecord::sort_key);
        for record in page {
            // Pages run newest first, so the first record seen of an event is its newest.
            if newest.len() >= MAX_REPLAY && !newest.contains_key(&record.event_id) {
                return Ok(newest);
            }
            newest.entry(record.event_id.clone()).or_insert(record);
        }
        if !full {
            return Ok(newest);
        }
    }
}

enum Enqueued {
    Queued,
    /// The event is no longer in the store.
    Gone,
    /// The event cannot be read back: skipped and logged, the rest of the window goes on.
    Unreadable,
}

/// Queues one replay. Unless `even_if_delivered`, the replay sends nothing when the endpoint got
/// the event meanwhile (a delivery in hand when the replay was asked for finishes first).
async fn enqueue(
    state: &AppState,
    queue: &dyn checkout::ports::DeliveryQueue,
    record: &AttemptRecord,
    even_if_delivered: bool,
) -> Result<Enqueued, ApiError> {
    // One read of the event's own version, not the session's whole history.
    let found = match state.backend.events.event_at(&record.session_id, record.version).await {
        Ok(found) => found,
        Err(StoreError::Corrupt(reason)) => {
            error!(session_id = %record.session_id, event_id = %record.event_id, %reason, "replay skips an unreadable event");
            return Ok(Enqueued::Unreadable);
        }
        Err(err) => return Err(ApiError::storage(err)),
    };
    let Some(event) = found.filter(|e| e.id == record.event_id) else {
        return Ok(Enqueued::Gone);
    };
    let json = serde_json::to_string(&event).map_err(ApiError::storage)?;
    let raw = serde_json::value::RawValue::from_string(json).map_err(ApiError::storage)?;
    let task = TaskMessage::new(&record.target, record.attempt + 1, even_if_delivered, &raw);
    queue
        .send(&task.to_body(), Duration::ZERO)
        .await
        .map_err(ApiError::storage)?;
    Ok(Enqueued::Queued)
}
