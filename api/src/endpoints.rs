//! The merchant API for webhook endpoints and the ACP order webhook. Same bearer auth as the
//! checkout API; a merchant only ever sees its own endpoints (anyone else's is a 404).

use crate::AppState;
use crate::edge::{Echo, Edge, KeyRule};
use crate::error::EdgeError;
use crate::path_id::PathId;
use axum::extract::{Request, State};
use axum::response::Response;
use checkout::acp::{AcpError, parse_body};
use checkout::clock;
use checkout::event::EventType;
use checkout::ids::EndpointId;
use checkout::merchant::{Merchant, OrderWebhook};
use checkout::ports::StoreError;
use checkout::service::Reply;
use checkout::url_safety::{self, UrlError};
use checkout::webhook_endpoint::{
    DEFAULT_ROTATION_GRACE, MAX_DESCRIPTION_LEN, MAX_RATE_LIMIT, MAX_ROTATION_GRACE, WebhookEndpoint,
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEndpoint {
    url: String,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    rate_limit: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateEndpoint {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    event_types: Option<Vec<String>>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    enabled: Option<bool>,
    /// `null` removes the endpoint's own limit.
    #[serde(default, with = "double_option")]
    rate_limit: Option<Option<u32>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateSecret {
    #[serde(default)]
    grace_period_seconds: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SetOrderWebhook {
    url: String,
    secret: String,
}

/// An endpoint as the API shows it; the secret only at creation and rotation.
#[derive(Serialize)]
struct EndpointBody<'a> {
    id: &'a EndpointId,
    url: &'a str,
    event_types: Vec<&'static str>,
    description: Option<&'a str>,
    enabled: bool,
    rate_limit: Option<u32>,
    disabled_reason: Option<&'a str>,
    created_at: String,
    updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

fn body(endpoint: &WebhookEndpoint, with_secret: bool) -> serde_json::Value {
    let view = EndpointBody {
        id: &endpoint.id,
        url: &endpoint.url,
        event_types: endpoint.event_types.iter().map(|t| t.as_str()).collect(),
        description: endpoint.description.as_deref(),
        enabled: endpoint.enabled,
        rate_limit: endpoint.rate_limit,
        disabled_reason: endpoint.disabled_reason.as_deref(),
        created_at: clock::rfc3339(&endpoint.created_at),
        updated_at: clock::rfc3339(&endpoint.updated_at),
        secret: with_secret.then(|| endpoint.current_secret()).flatten(),
    };
    serde_json::to_value(view).unwrap_or_default()
}

pub(crate) fn reply(status: u16, value: &serde_json::Value) -> Reply {
    Reply::json_value(status, value)
}

pub(crate) fn invalid(code: &str, message: impl Into<String>, param: &str) -> Reply {
    Reply::error(400, &AcpError::invalid(code, message).with_param(param))
}

pub(crate) fn unavailable(err: impl std::fmt::Display) -> Reply {
    tracing::warn!(error = %err, "endpoint storage failed");
    EdgeError::Unavailable.reply()
}

/// The system's random source failed: not a storage problem, though also worth a retry.
fn no_secret(err: getrandom::Error) -> Reply {
    tracing::error!(error = %err, "no random bytes for a signing secret");
    EdgeError::NoRandomness.reply()
}

pub(crate) fn not_found() -> Reply {
    EdgeError::NotFound.reply()
}

/// The URL rules of [`url_safety`], with the host resolved here.
async fn check_url(state: &AppState, raw: &str) -> Result<(), Reply> {
    let refuse = |err: UrlError| invalid("invalid_url", format!("The webhook URL is not allowed: {err}"), "$.url");
    let url = url_safety::parse_webhook_url(raw, state.url_policy).map_err(refuse)?;
    if url.literal.is_none() {
        let addresses = state
            .resolver
            .resolve(&url.host, url.port)
            .await
            .map_err(|_| refuse(UrlError::Unresolvable(url.host.clone())))?;
        url_safety::check_addresses(&url, &addresses, state.url_policy).map_err(refuse)?;
    }
    Ok(())
}

fn parse_event_types(raw: &[String]) -> Result<Vec<EventType>, Reply> {
    raw.iter()
        .enumerate()
        .map(|(i, name)| {
            EventType::parse(name).ok_or_else(|| {
                let known: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
                invalid(
                    "invalid_event_type",
                    format!("Unknown event type '{name}'; known: {}", known.join(", ")),
                    &format!("$.event_types[{i}]"),
                )
            })
        })
        .collect()
}

fn check_rate_limit(rate: Option<u32>) -> Result<(), Reply> {
    match rate {
        Some(r) if r == 0 || r > MAX_RATE_LIMIT => Err(invalid(
            "invalid_rate_limit",
            format!("rate_limit is deliveries per second, from 1 to {MAX_RATE_LIMIT}"),
            "$.rate_limit",
        )),
        _ => Ok(()),
    }
}

fn check_description(description: Option<&String>) -> Result<(), Reply> {
    match description {
        Some(d) if d.chars().count() > MAX_DESCRIPTION_LEN => Err(invalid(
            "invalid_description",
            format!("description is at most {MAX_DESCRIPTION_LEN} characters"),
            "$.description",
        )),
        _ => Ok(()),
    }
}

/// Edge checks and the merchant, then `run` with the parsed body.
pub(crate) async fn handle<T, F, Fut>(
    state: AppState,
    request: Request,
    parse: fn(&[u8]) -> Result<T, AcpError>,
    run: F,
) -> Response
where
    F: FnOnce(AppState, std::sync::Arc<Merchant>, T) -> Fut,
    Fut: Future<Output = Reply>,
{
    let is_post = request.method() == axum::http::Method::POST;
    let (edge, echo): (Edge, Echo) = match Edge::read(&state, request, KeyRule::Optional).await {
        Ok(read) => read,
        Err(response) => return response,
    };
    let parsed = match parse(&edge.body) {
        Ok(parsed) => parsed,
        Err(error) => return echo.refuse(EdgeError::InvalidBody(error)),
    };
    let merchant = edge.merchant.clone();
    if is_post && edge.has_idempotency_key() {
        // A retried POST with the same key (a second endpoint, a second replay) runs once.
        let service = state.service.clone();
        let reply = service.once(&edge.call(), || run(state, merchant, parsed)).await;
        return echo.respond(reply);
    }
    echo.respond(run(state, merchant, parsed).await)
}

pub(crate) fn no_body(_: &[u8]) -> Result<(), AcpError> {
    Ok(())
}

pub(crate) fn optional_body<T: serde::de::DeserializeOwned + Default>(body: &[u8]) -> Result<T, AcpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(T::default())
    } else {
        parse_body(body)
    }
}

pub async fn create(State(state): State<AppState>, request: Request) -> Response {
    handle(
        state,
        request,
        parse_body::<CreateEndpoint>,
        |state, merchant, req| async move {
            if let Err(reply) = validate_create(&state, &req).await {
                return reply;
            }
            let event_types = match req.event_types.as_deref().map(parse_event_types).transpose() {
                Ok(types) => types.unwrap_or_default(),
                Err(reply) => return reply,
            };
            let mut endpoint = match WebhookEndpoint::new(merchant.id.clone(), req.url, clock::now()) {
                Ok(endpoint) => endpoint,
                Err(err) => return no_secret(err),
            };
            endpoint.event_types = event_types;
            endpoint.description = req.description;
            endpoint.enabled = req.enabled.unwrap_or(true);
            endpoint.rate_limit = req.rate_limit;
            save(&state, &endpoint, 201, true, "webhook endpoint created").await
        },
    )
    .await
}

async fn validate_create(state: &AppState, req: &CreateEndpoint) -> Result<(), Reply> {
    check_url(state, &req.url).await?;
    check_rate_limit(req.rate_limit)?;
    check_description(req.description.as_ref())
}

pub async fn list(State(state): State<AppState>, request: Request) -> Response {
    handle(state, request, no_body, |state, merchant, ()| async move {
        match state.backend.endpoints.endpoints(&merchant.id).await {
            Ok(endpoints) => {
                let data: Vec<_> = endpoints.iter().map(|e| body(e, false)).collect();
                reply(200, &json!({ "data": data }))
            }
            Err(err) => unavailable(err),
        }
    })
    .await
}

/// Stores the endpoint and answers with it (and its current secret when `with_secret`).
async fn save(state: &AppState, endpoint: &WebhookEndpoint, status: u16, with_secret: bool, what: &str) -> Reply {
    let stored = state.backend.endpoints.put_endpoint(endpoint).await;
    respond(
        stored.map(|()| endpoint.clone()).map_err(unavailable),
        status,
        with_secret,
        what,
    )
}

/// Loads the merchant's endpoint named in the path, or answers 404.
pub(crate) async fn load(state: &AppState, merchant: &Merchant, id: &str) -> Result<WebhookEndpoint, Reply> {
    let id = EndpointId::parse(id).ok_or_else(not_found)?;
    match state.backend.endpoints.endpoint(&merchant.id, &id).await {
        Ok(Some(endpoint)) => Ok(endpoint),
        Ok(None) => Err(not_found()),
        Err(err) => Err(unavailable(err)),
    }
}

pub async fn retrieve(State(state): State<AppState>, PathId(id): PathId, request: Request) -> Response {
    handle(state, request, no_body, |state, merchant, ()| async move {
        match load(&state, &merchant, &id).await {
            Ok(endpoint) => reply(200, &body(&endpoint, false)),
            Err(reply) => reply,
        }
    })
    .await
}

pub async fn update(State(state): State<AppState>, PathId(id): PathId, request: Request) -> Response {
    handle(
        state,
        request,
        parse_body::<UpdateEndpoint>,
        |state, merchant, req| async move {
            let update = match validate_update(&state, req).await {
                Ok(update) => update,
                Err(reply) => return reply,
            };
            let changed = change_endpoint(&state, &merchant, &id, |endpoint| {
                update.apply(endpoint);
                endpoint.updated_at = clock::now();
                Ok(())
            })
            .await;
            respond(changed, 200, false, "webhook endpoint updated")
        },
    )
    .await
}

/// A PATCH whose fields are checked (the URL resolved), ready to apply to a fresh copy.
struct ValidUpdate {
    url: Option<String>,
    event_types: Option<Vec<EventType>>,
    description: Option<String>,
    rate_limit: Option<Option<u32>>,
    enabled: Option<bool>,
}

impl ValidUpdate {
    fn apply(&self, endpoint: &mut WebhookEndpoint) {
        if let Some(url) = &self.url {
            endpoint.url.clone_from(url);
        }
        if let Some(types) = &self.event_types {
            endpoint.event_types.clone_from(types);
        }
        if let Some(description) = &self.description {
            endpoint.description = Some(description.clone());
        }
        if let Some(rate) = self.rate_limit {
            endpoint.rate_limit = rate;
        }
        if let Some(enabled) = self.enabled {
            endpoint.enabled = enabled;
            if enabled {
                endpoint.disabled_reason = None;
            }
        }
    }
}

async fn validate_update(state: &AppState, req: UpdateEndpoint) -> Result<ValidUpdate, Reply> {
    if let Some(url) = &req.url {
        check_url(state, url).await?;
    }
    let event_types = req.event_types.as_deref().map(parse_event_types).transpose()?;
    if let Some(description) = &req.description {
        check_description(Some(description))?;
    }
    if let Some(rate) = req.rate_limit {
        check_rate_limit(rate)?;
    }
    let nothing = req.url.is_none()
        && event_types.is_none()
        && req.description.is_none()
        && req.rate_limit.is_none()
        && req.enabled.is_none();
    if nothing {
        return Err(invalid(
            "nothing_to_update",
            "the update changes nothing: give at least one field to change",
            "$",
        ));
    }
    Ok(ValidUpdate {
        url: req.url,
        event_types,
        description: req.description,
        rate_limit: req.rate_limit,
        enabled: req.enabled,
    })
}

/// How often a read-modify-write is tried again when another writer changed the item between
/// its read and its write.
const CHANGE_TRIES: usize = 20;

/// Reads the endpoint, changes it and stores it, conditional on nobody having stored it since
/// the read; on a conflict, again from a fresh read. Returns the endpoint as stored.
async fn change_endpoint(
    state: &AppState,
    merchant: &Merchant,
    id: &str,
    change: impl Fn(&mut WebhookEndpoint) -> Result<(), Reply>,
) -> Result<WebhookEndpoint, Reply> {
    for _ in 0..CHANGE_TRIES {
        let mut endpoint = load(state, merchant, id).await?;
        change(&mut endpoint)?;
        match state.backend.endpoints.put_endpoint(&endpoint).await {
            Ok(()) => return Ok(endpoint),
            Err(StoreError::Changed { .. }) => continue,
            Err(err) => return Err(unavailable(err)),
        }
    }
    Err(unavailable(StoreError::Changed {
        what: "endpoint",
        id: id.to_owned(),
    }))
}

fn respond(changed: Result<WebhookEndpoint, Reply>, status: u16, with_secret: bool, what: &str) -> Reply {
    match changed {
        Ok(endpoint) => {
            info!(merchant_id = %endpoint.merchant_id, endpoint_id = %endpoint.id, "{what}");
            reply(status, &body(&endpoint, with_secret))
        }
        Err(reply) => reply,
    }
}

pub async fn delete(State(state): State<AppState>, PathId(id): PathId, request: Request) -> Response {
    handle(state, request, no_body, |state, merchant, ()| async move {
        let Some(id) = EndpointId::parse(&id) else {
            return not_found();
        };
        match state.backend.endpoints.delete_endpoint(&merchant.id, &id).await {
            Ok(true) => Reply::no_content(),
            Ok(false) => not_found(),
            Err(err) => unavailable(err),
        }
    })
    .await
}

pub async fn rotate_secret(State(state): State<AppState>, PathId(id): PathId, request: Request) -> Response {
    handle(
        state,
        request,
        optional_body::<RotateSecret>,
        |state, merchant, req| async move {
            let grace = match req.grace_period_seconds {
                None => DEFAULT_ROTATION_GRACE,
                Some(secs) if (0..=MAX_ROTATION_GRACE.num_seconds()).contains(&secs) => chrono::Duration::seconds(secs),
                Some(_) => {
                    let max = MAX_ROTATION_GRACE.num_seconds();
                    return invalid(
                        "invalid_grace_period",
                        format!("grace_period_seconds is from 0 to {max}"),
                        "$.grace_period_seconds",
                    );
                }
            };
            let changed = change_endpoint(&state, &merchant, &id, |endpoint| {
                endpoint.rotate(clock::now(), grace).map(|_| ()).map_err(no_secret)
            })
            .await;
            respond(changed, 200, true, "webhook secret rotated")
        },
    )
    .await
}

pub async fn set_order_webhook(State(state): State<AppState>, request: Request) -> Response {
    handle(
        state,
        request,
        parse_body::<SetOrderWebhook>,
        |state, merchant, req| async move {
            if let Err(reply) = check_url(&state, &req.url).await {
                return reply;
            }
            if req.secret.is_empty() || req.secret.len() > 512 {
                return invalid("invalid_secret", "secret is 1 to 512 characters", "$.secret");
            }
            let hook = OrderWebhook {
                url: req.url,
                secret: req.secret,
            };
            match change_merchant(&state, &merchant, |m| {
                m.order_webhook = Some(hook.clone());
                Ok(())
            })
            .await
            {
                Ok(updated) => reply(200, &json!({ "url": updated.order_webhook.map(|h| h.url) })),
                Err(reply) => reply,
            }
        },
    )
    .await
}

pub async fn get_order_webhook(State(state): State<AppState>, request: Request) -> Response {
    handle(state, request, no_body, |state, merchant, ()| async move {
        match fresh_merchant(&state, &merchant).await {
            Ok(m) => match m.order_webhook {
                Some(hook) => reply(200, &json!({ "url": hook.url })),
                None => not_found(),
            },
            Err(reply) => reply,
        }
    })
    .await
}

pub async fn delete_order_webhook(State(state): State<AppState>, request: Request) -> Response {
    handle(state, request, no_body, |state, merchant, ()| async move {
        let removed = change_merchant(&state, &merchant, |m| match m.order_webhook.take() {
            Some(_) => Ok(()),
            None => Err(not_found()),
        })
        .await;
        match removed {
            Ok(_) => Reply::no_content(),
            Err(reply) => reply,
        }
    })
    .await
}

/// The merchant as stored now (the auth cache may be a few seconds old).
async fn fresh_merchant(state: &AppState, merchant: &Merchant) -> Result<Merchant, Reply> {
    match state.backend.merchants.merchant(&merchant.id).await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(not_found()),
        Err(err) => Err(unavailable(err)),
    }
}

/// Reads the merchant, changes it and stores it, conditional on nobody having stored it since
/// the read (an API key rotation running beside this keeps its new key); on a conflict, again
/// from a fresh read. Returns the merchant as stored.
async fn change_merchant(
    state: &AppState,
    merchant: &Merchant,
    change: impl Fn(&mut Merchant) -> Result<(), Reply>,
) -> Result<Merchant, Reply> {
    for _ in 0..CHANGE_TRIES {
        let mut fresh = fresh_merchant(state, merchant).await?;
        change(&mut fresh)?;
        match state.backend.merchants.put_merchant(&fresh).await {
            Ok(()) => {
                state.merchants.forget(&fresh.api_key_hash);
                return Ok(fresh);
            }
            Err(StoreError::Changed { .. }) => continue,
            Err(err) => return Err(unavailable(err)),
        }
    }
    Err(unavailable(StoreError::Changed {
        what: "merchant",
        id: merchant.id.to_string(),
    }))
}

/// `Option<Option<T>>` from JSON: absent → `None`, `null` → `Some(None)`.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}
