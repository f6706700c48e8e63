//! Pausing and resuming a webhook endpoint.
//!
//! While an endpoint is paused the dispatcher sends it nothing: each delivery is recorded as
//! `paused` in its attempt log (no attempt spent, no retry, no queue message kept waiting) and
//! the message is done with. A resume starts a job of the replay runner that walks the
//! endpoint's log oldest event first and queues each held delivery again, in event order,
//! through the endpoint's rate limit (see [`checkout::replay`]).

use crate::AppState;
use crate::deliveries::start_job;
use crate::endpoints::{body, change_endpoint, load, once};
use crate::error::ApiError;
use crate::extract::{Caller, Json, JsonOrEmpty, OptionalKey};
use crate::path_id::PathId;
use crate::reply::ApiReply;
use axum::extract::State;
use checkout::clock;
use checkout::merchant::Merchant;
use checkout::replay::ReplayJob;
use checkout::service::Reply;
use checkout::webhook_endpoint::{EndpointState, Pause, PauseError, WebhookEndpoint};
use serde::Deserialize;
use std::sync::Mutex;
use tracing::{info, warn};

/// `POST /webhook_endpoints/{id}/pause` and `…/resume` take no fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoFields {}

impl From<PauseError> for ApiError {
    fn from(err: PauseError) -> Self {
        match err {
            PauseError::Disabled => ApiError::EndpointDisabled,
        }
    }
}

/// `POST /webhook_endpoints/{id}/pause`: holds the endpoint's deliveries until it is resumed.
/// Pausing a paused endpoint changes nothing. 409 for a disabled one; 503 where nothing could
/// resume it (no replay runner).
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    OptionalKey(key): OptionalKey,
    JsonOrEmpty(request): JsonOrEmpty<NoFields>,
) -> ApiReply {
    let Json { raw, .. } = request;
    once(&state, &caller, key, &raw, || async {
        let paused = pause_endpoint(&state, &caller.merchant, &id).await?;
        Ok(ApiReply(Reply::json_value(200, &body(&paused, false))))
    })
    .await
}

/// Pauses the merchant's endpoint `id` (the API's and the portal's).
pub(crate) async fn pause_endpoint(
    state: &AppState,
    merchant: &Merchant,
    id: &str,
) -> Result<WebhookEndpoint, ApiError> {
    state.replay_steps.as_ref().ok_or(ApiError::ReplayUnavailable)?;
    let now = clock::now();
    let paused = change_endpoint(state, merchant, id, |endpoint| {
        endpoint.pause(now)?;
        Ok(())
    })
    .await?;
    info!(merchant_id = %paused.merchant_id, endpoint_id = %paused.id, "webhook endpoint paused");
    Ok(paused)
}

/// `POST /webhook_endpoints/{id}/resume`: sends again from now on, and queues what the pause
/// held, oldest event first. The reply is the endpoint with `resume`: the job sending the held
/// deliveries (its progress at `GET /webhook_endpoints/{id}/replays/{replay_id}`), or `null`
/// when there was nothing to resume. 409 for a disabled endpoint, or while a replay of the
/// endpoint runs (an endpoint runs one at a time).
///
/// Two writes: the first ends the pause and keeps it as the endpoint's `resuming`; once the job
/// is queued the second clears that. A resume that stops between them (a crash, a queue that is
/// down) leaves `resuming`, and the next resume — answered 200 whether or not the endpoint is
/// paused by then — queues its job: what a pause held is never left without one.
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    OptionalKey(key): OptionalKey,
    JsonOrEmpty(request): JsonOrEmpty<NoFields>,
) -> ApiReply {
    let Json { raw, .. } = request;
    once(&state, &caller, key, &raw, || async {
        let (resumed, job) = resume_endpoint(&state, &caller.merchant, &id).await?;
        let mut reply = body(&resumed, false);
        reply["resume"] = job.map_or(serde_json::Value::Null, |job| job.view());
        Ok(ApiReply(Reply::json_value(200, &reply)))
    })
    .await
}

/// Resumes the merchant's endpoint `id` (the API's and the portal's): the endpoint as stored,
/// and the job sending what its pause held, if there was any.
pub(crate) async fn resume_endpoint(
    state: &AppState,
    merchant: &Merchant,
    id: &str,
) -> Result<(WebhookEndpoint, Option<ReplayJob>), ApiError> {
    let steps = state.replay_steps.clone().ok_or(ApiError::ReplayUnavailable)?;
    let endpoint = load(state, merchant, id).await?;
    if endpoint.state() == EndpointState::Paused || endpoint.resuming.is_some() {
        // Checked before the endpoint changes, so a refusal changes nothing.
        if let Some(running) = state
            .backend
            .replays
            .replay(&merchant.id, &endpoint.id)
            .await
            .map_err(ApiError::storage)?
            .filter(|job| !job.replaceable(clock::now()))
        {
            return Err(ApiError::ReplayInProgress(running.id.to_string()));
        }
    }
    let now = clock::now();
    let to_resume: Mutex<Option<Pause>> = Mutex::new(None);
    let resumed = change_endpoint(state, merchant, id, |endpoint| {
        let pause = endpoint.resume(now)?;
        *to_resume.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = pause;
        Ok(())
    })
    .await?;
    let Some(pause) = to_resume.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner()) else {
        return Ok((resumed, None));
    };
    let job = ReplayJob::resume(merchant.id.clone(), resumed.id.clone(), pause.held_since(), now);
    let job = start_job(state, steps.as_ref(), job, now).await?;
    // The job is queued: the resume is done with. Should this write fail, the next resume
    // queues the window again, and its tasks send only what is still held.
    let done = change_endpoint(state, merchant, id, |endpoint| {
        endpoint.resumed(pause, clock::now());
        Ok(())
    })
    .await;
    if let Err(err) = done {
        warn!(merchant_id = %merchant.id, endpoint_id = %resumed.id, error = %err, "a resume's job is queued but the endpoint still says it is resuming");
    }
    info!(merchant_id = %resumed.merchant_id, endpoint_id = %resumed.id, replay_id = %job.id, "webhook endpoint resumed");
    Ok((resumed, Some(job)))
}
