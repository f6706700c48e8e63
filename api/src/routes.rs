//! The API's routes: the ACP checkout endpoints (create, update, retrieve, complete, cancel)
//! the merchant's webhook endpoints, attempt log and replay, and the ACP discovery document.

use crate::AppState;
use crate::echo::echo;
use crate::error::ApiError;
use crate::extract::{Caller, Json, JsonOrEmpty, KeyScope, RequiredKey};
use crate::path_id::PathId;
use crate::reply::ApiReply;
use crate::{deliveries, discovery, endpoints, pause, portal, webhook_keys};
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post, put};
use checkout::acp::{CancelSessionRequest, CompleteSessionRequest, CreateSessionRequest, UpdateSessionRequest};
use checkout::ids::SessionId;
use checkout::service::Command;
use tracing::{Instrument, info_span};

pub fn router(state: AppState) -> Router {
    portal::routes(Router::new())
        .route("/checkout_sessions", post(create))
        .route("/checkout_sessions/{id}", post(update).get(retrieve))
        .route("/checkout_sessions/{id}/complete", post(complete))
        .route("/checkout_sessions/{id}/cancel", post(cancel))
        .route("/webhook_endpoints", post(endpoints::create).get(endpoints::list))
        .route(
            "/webhook_endpoints/{id}",
            get(endpoints::retrieve)
                .patch(endpoints::update)
                .delete(endpoints::delete),
        )
        .route("/webhook_endpoints/{id}/rotate_secret", post(endpoints::rotate_secret))
        .route("/webhook_endpoints/{id}/test", post(endpoints::send_test))
        .route("/webhook_endpoints/{id}/pause", post(pause::pause))
        .route("/webhook_endpoints/{id}/resume", post(pause::resume))
        .route("/webhook_endpoints/{id}/attempts", get(deliveries::by_endpoint))
        .route("/webhook_endpoints/{id}/replay", post(deliveries::replay))
        .route(
            "/webhook_endpoints/{id}/replays/{replay_id}",
            get(deliveries::replay_progress),
        )
        .route("/events/{id}/attempts", get(deliveries::by_event))
        .route("/.well-known/acp.json", get(discovery::acp_json))
        .route("/.well-known/webhook-keys", get(webhook_keys::jwks))
        .route(
            "/order_webhook",
            put(endpoints::set_order_webhook)
                .get(endpoints::get_order_webhook)
                .delete(endpoints::delete_order_webhook),
        )
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(axum::middleware::from_fn(crate::portal::guard))
        .layer(axum::middleware::from_fn(echo))
        .with_state(state)
}

/// Runs a checkout command with its idempotency key.
async fn run(state: &AppState, caller: &Caller, key: KeyScope, raw: &[u8], command: Command) -> ApiReply {
    let span = info_span!(
        "checkout_write",
        merchant_id = %caller.merchant.id,
        session_id = command.session_id().map_or("", |id| id.as_str()),
        request_id = caller.request_id,
    );
    ApiReply(
        state
            .service
            .execute(&caller.call(key, raw), command)
            .instrument(span)
            .await,
    )
}

/// The session named in the path; an id we could never have issued is a 404.
fn session_id(id: &str) -> Result<SessionId, ApiError> {
    SessionId::parse(id).ok_or(ApiError::NotFound)
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    RequiredKey(key): RequiredKey,
    body: Json<CreateSessionRequest>,
) -> ApiReply {
    run(&state, &caller, key, &body.raw, Command::Create(Box::new(body.value))).await
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    RequiredKey(key): RequiredKey,
    body: Json<UpdateSessionRequest>,
) -> Result<ApiReply, ApiError> {
    let command = Command::Update(session_id(&id)?, Box::new(body.value));
    Ok(run(&state, &caller, key, &body.raw, command).await)
}

async fn complete(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    RequiredKey(key): RequiredKey,
    body: Json<CompleteSessionRequest>,
) -> Result<ApiReply, ApiError> {
    let command = Command::Complete(session_id(&id)?, Box::new(body.value));
    Ok(run(&state, &caller, key, &body.raw, command).await)
}

/// The cancel body is optional: an empty one means "no intent trace".
async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    RequiredKey(key): RequiredKey,
    JsonOrEmpty(body): JsonOrEmpty<CancelSessionRequest>,
) -> Result<ApiReply, ApiError> {
    let command = Command::Cancel(session_id(&id)?, body.value);
    Ok(run(&state, &caller, key, &body.raw, command).await)
}

async fn retrieve(State(state): State<AppState>, caller: Caller, PathId(id): PathId) -> Result<ApiReply, ApiError> {
    let id = session_id(&id)?;
    Ok(ApiReply(state.service.get(&caller.merchant, &id).await))
}
