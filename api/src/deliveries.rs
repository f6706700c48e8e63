//! What merchants see of webhook deliveries: the attempt log (per endpoint, per event) and
//! replays of what an endpoint missed (run in the background: see [`checkout::replay`]).

use crate::AppState;
use crate::endpoints::{load, once, reply};
use crate::error::ApiError;
use crate::extract::{Caller, Json, OptionalKey};
use crate::path_id::{PathId, PathIds};
use crate::reply::ApiReply;
use axum::extract::{Query, State};
use axum::http::Uri;
use checkout::acp::ErrorCode;
use checkout::attempt_log::{AttemptQuery, AttemptRecord, LogTarget};
use checkout::clock::{self, Timestamp};
use checkout::ids::{EndpointId, EventId, ReplayId};
use checkout::merchant::Merchant;
use checkout::ports::{DeliveryQueue, StoreError};
use checkout::replay::{self, ReplayError, ReplayJob};
use checkout::webhook_endpoint::EndpointState;
use serde::Deserialize;
use serde_json::json;

const DEFAULT_PAGE: usize = 20;
const MAX_PAGE: usize = 100;

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
        limit,
        ..AttemptQuery::default()
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
    pub(crate) since: Timestamp,
    #[serde(default, with = "clock::optional_rfc3339_serde")]
    pub(crate) until: Option<Timestamp>,
    /// Also send events the endpoint already received (default: only those it missed).
    #[serde(default)]
    pub(crate) include_delivered: bool,
}

/// `POST /webhook_endpoints/{id}/replay`: starts a replay of the window in the background. Every
/// event of the window that the endpoint did not receive (failed, exhausted, skipped while
/// disabled) goes out again, through the same rate limits, with the same `webhook-id`. The 202
/// is the job; `GET /webhook_endpoints/{id}/replays/{replay_id}` shows how far it has got.
pub async fn replay(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    OptionalKey(key): OptionalKey,
    body: Json<ReplayRequest>,
) -> ApiReply {
    let Json { value: req, raw } = body;
    once(&state, &caller, key, &raw, || async {
        let job = start_replay(&state, &caller.merchant, &id, &req).await?;
        Ok(reply(202, &job.view()))
    })
    .await
}

/// Starts a replay of the merchant's endpoint `id` (the API's and the portal's): the job.
pub(crate) async fn start_replay(
    state: &AppState,
    merchant: &Merchant,
    id: &str,
    req: &ReplayRequest,
) -> Result<ReplayJob, ApiError> {
    let now = clock::now();
    let until = req.until.unwrap_or(now);
    let steps = state.replay_steps.clone().ok_or(ApiError::ReplayUnavailable)?;
    let endpoint = load(state, merchant, id).await?;
    match endpoint.state() {
        EndpointState::Disabled => return Err(ApiError::EndpointDisabled),
        EndpointState::Paused => return Err(ApiError::EndpointPaused),
        EndpointState::Enabled => {}
    }
    let job = ReplayJob::new(
        merchant.id.clone(),
        endpoint.id.clone(),
        req.since,
        until,
        req.include_delivered,
        now,
    )
    .map_err(|err| ApiError::invalid(ErrorCode::InvalidWindow, err.to_string(), "$.since"))?;
    start_job(state, steps.as_ref(), job, now).await
}

/// Stores the job as its endpoint's replay and queues its first step; 409 while another replay
/// of the endpoint runs.
pub(crate) async fn start_job(
    state: &AppState,
    steps: &dyn DeliveryQueue,
    job: ReplayJob,
    now: Timestamp,
) -> Result<ReplayJob, ApiError> {
    let replays = state.backend.replays.as_ref();
    let mut tries = 0;
    loop {
        tries += 1;
        match replay::start(replays, steps, job.clone(), now).await {
            Ok(job) => return Ok(job),
            Err(ReplayError::Store(StoreError::Changed { .. })) => {
                let current = replays
                    .replay(&job.merchant_id, &job.endpoint_id)
                    .await
                    .map_err(ApiError::storage)?;
                match current {
                    Some(running) if !running.replaceable(clock::now()) => {
                        return Err(ApiError::ReplayInProgress(running.id.to_string()));
                    }
                    // It finished between the write and the read: once more.
                    _ if tries < 2 => continue,
                    _ => return Err(ApiError::storage("the endpoint's replay kept changing")),
                }
            }
            Err(err) => return Err(ApiError::storage(err)),
        }
    }
}

/// `GET /webhook_endpoints/{id}/replays/{replay_id}`: a replay's progress (an endpoint keeps its
/// latest replay: an earlier one is a 404 once another has started).
pub async fn replay_progress(
    State(state): State<AppState>,
    caller: Caller,
    PathIds(endpoint_id, replay_id): PathIds,
) -> Result<ApiReply, ApiError> {
    let (Some(endpoint_id), Some(replay_id)) = (EndpointId::parse(&endpoint_id), ReplayId::parse(&replay_id)) else {
        return Err(ApiError::NotFound);
    };
    let job = state
        .backend
        .replays
        .replay(&caller.merchant.id, &endpoint_id)
        .await
        .map_err(ApiError::storage)?
        .filter(|job| job.id == replay_id)
        .ok_or(ApiError::NotFound)?;
    Ok(reply(200, &job.view()))
}
