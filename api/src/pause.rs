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
use checkout::replay::ReplayJob;
use checkout::service::Reply;
use checkout::webhook_endpoint::{EndpointState, Pause, PauseError};
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
/// Pausing a paused endpoint changes nothing. 409 for a disabled one.
pub async fn pause(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    OptionalKey(key): OptionalKey,
    JsonOrEmpty(request): JsonOrEmpty<NoFields>,
) -> ApiReply {
    let Json { raw, .. } = request;
    once(&state, &caller, key, &raw, || async {
        let now = clock::now();
        let paused = change_endpoint(&state, &caller.merchant, &id, |endpoint| {
            endpoint.pause(now)?;
            Ok(())
        })
        .await?;
        info!(merchant_id = %paused.merchant_id, endpoint_id = %paused.id, "webhook endpoint paused");
        Ok(ApiReply(Reply::json_value(200, &body(&paused, false))))
    })
    .await
}

/// `POST /webhook_endpoints/{id}/resume`: sends again from now on, and queues what the pause
/// held, oldest event first. The reply is the endpoint with `resume`: the job sending the held
/// deliveries (its progress at `GET /webhook_endpoints/{id}/replays/{replay_id}`), or `null`
/// when the endpoint was not paused. 409 for a disabled endpoint, or while a replay of the
/// endpoint runs (an endpoint runs one at a time).
pub async fn resume(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    OptionalKey(key): OptionalKey,
    JsonOrEmpty(request): JsonOrEmpty<NoFields>,
) -> ApiReply {
    let Json { raw, .. } = request;
    once(&state, &caller, key, &raw, || async {
        let steps = state.replay_steps.clone().ok_or(ApiError::ReplayUnavailable)?;
        let merchant = &caller.merchant;
        let endpoint = load(&state, merchant, &id).await?;
        if endpoint.state() == EndpointState::Paused {
            // Checked before the endpoint changes: a resume whose held deliveries could not be
            // queued would leave them to a replay the merchant has to think of.
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
        let ended: Mutex<Option<Pause>> = Mutex::new(None);
        let resumed = change_endpoint(&state, merchant, &id, |endpoint| {
            let pause = endpoint.resume(now)?;
            *ended.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = pause;
            Ok(())
        })
        .await?;
        let ended = ended.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut reply = body(&resumed, false);
        reply["resume"] = serde_json::Value::Null;
        if let Some(pause) = ended {
            let job = ReplayJob::resume(merchant.id.clone(), resumed.id.clone(), pause.held_since(), now);
            let job = match start_job(&state, steps.as_ref(), job, now).await {
                Ok(job) => job,
                Err(err) => {
                    // The held deliveries were not queued: paused again, so the client's retry
                    // of the resume sends them.
                    let restored = change_endpoint(&state, merchant, &id, |endpoint| {
                        endpoint.restore(pause, clock::now());
                        Ok(())
                    })
                    .await;
                    if let Err(undo) = restored {
                        warn!(merchant_id = %merchant.id, endpoint_id = %resumed.id, error = %undo, "a resume whose held deliveries were not queued could not be undone: replay the window");
                    }
                    return Err(err);
                }
            };
            info!(merchant_id = %resumed.merchant_id, endpoint_id = %resumed.id, replay_id = %job.id, "webhook endpoint resumed");
            reply["resume"] = job.view();
        }
        Ok(ApiReply(Reply::json_value(200, &reply)))
    })
    .await
}
