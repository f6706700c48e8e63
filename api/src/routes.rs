//! The API's routes: the ACP checkout endpoints (create, update, retrieve, complete, cancel)
//! and the merchant's webhook endpoints, attempt log and replay.

use crate::AppState;
use crate::edge::{Echo, Edge, KeyRule};
use crate::error::EdgeError;
use crate::path_id::PathId;
use crate::{deliveries, endpoints};
use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post, put};
use checkout::acp::{AcpError, CancelSessionRequest, parse_body};
use checkout::ids::SessionId;
use checkout::service::Command;
use serde::de::DeserializeOwned;
use tracing::{Instrument, info_span};

pub fn router(state: AppState) -> Router {
    Router::new()
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
        .route("/webhook_endpoints/{id}/attempts", get(deliveries::by_endpoint))
        .route("/webhook_endpoints/{id}/replay", post(deliveries::replay))
        .route("/events/{id}/attempts", get(deliveries::by_event))
        .route(
            "/order_webhook",
            put(endpoints::set_order_webhook)
                .get(endpoints::get_order_webhook)
                .delete(endpoints::delete_order_webhook),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

async fn not_found(request: Request) -> Response {
    echo(&request).refuse(EdgeError::NotFound)
}

async fn method_not_allowed(request: Request) -> Response {
    echo(&request).refuse(EdgeError::MethodNotAllowed)
}

fn echo(request: &Request) -> Echo {
    Echo::of(request.headers())
}

type Parse<T> = fn(&[u8]) -> Result<T, AcpError>;

/// Edge checks, then the body parsed as `T`.
async fn read<T>(state: &AppState, request: Request, parse: Parse<T>) -> Result<(Edge, Echo, T), Response> {
    let (edge, echo) = Edge::read(state, request, KeyRule::Required).await?;
    match parse(&edge.body) {
        Ok(body) => Ok((edge, echo, body)),
        Err(error) => Err(echo.refuse(EdgeError::InvalidBody(error))),
    }
}

/// The cancel body is optional: an empty one means "no intent trace".
fn parse_optional<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, AcpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_body(body)
    }
}

async fn run(state: &AppState, edge: Edge, echo: Echo, command: Command) -> Response {
    let span = info_span!(
        "checkout_write",
        merchant_id = %edge.merchant.id,
        session_id = command.session_id().map_or("", |id| id.as_str()),
        request_id = edge.request_id(),
    );
    let reply = state.service.execute(&edge.call(), command).instrument(span).await;
    echo.respond(reply)
}

/// Runs a command on the session named in the path; an id we could never have issued is a 404.
async fn on_session<T>(
    state: AppState,
    request: Request,
    id: &str,
    parse: Parse<T>,
    command: impl FnOnce(SessionId, T) -> Command,
) -> Response {
    let (edge, echo, body) = match read(&state, request, parse).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    match SessionId::parse(id) {
        Some(id) => run(&state, edge, echo, command(id, body)).await,
        None => echo.refuse(EdgeError::NotFound),
    }
}

async fn create(State(state): State<AppState>, request: Request) -> Response {
    match read(&state, request, parse_body).await {
        Ok((edge, echo, body)) => run(&state, edge, echo, Command::Create(Box::new(body))).await,
        Err(response) => response,
    }
}

async fn update(State(state): State<AppState>, PathId(id): PathId, request: Request) -> Response {
    on_session(state, request, &id, parse_body, |id, body| {
        Command::Update(id, Box::new(body))
    })
    .await
}

async fn complete(State(state): State<AppState>, PathId(id): PathId, request: Request) -> Response {
    on_session(state, request, &id, parse_body, |id, body| {
        Command::Complete(id, Box::new(body))
    })
    .await
}

async fn cancel(State(state): State<AppState>, PathId(id): PathId, request: Request) -> Response {
    on_session(
        state,
        request,
        &id,
        parse_optional::<CancelSessionRequest>,
        Command::Cancel,
    )
    .await
}

async fn retrieve(State(state): State<AppState>, PathId(id): PathId, request: Request) -> Response {
    let (edge, echo) = match Edge::read(&state, request, KeyRule::Optional).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let Some(session_id) = SessionId::parse(&id) else {
        return echo.refuse(EdgeError::NotFound);
    };
    echo.respond(state.service.get(&edge.merchant, &session_id).await)
}
