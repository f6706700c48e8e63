//! The merchant API for webhook endpoints and the ACP order webhook. Same bearer auth as the
//! checkout API; a merchant only ever sees its own endpoints (anyone else's is a 404).

use crate::AppState;
use crate::error::ApiError;
use crate::extract::{Caller, Json, JsonOrEmpty, KeyScope, OptionalKey};
use crate::path_id::PathId;
use crate::reply::ApiReply;
use axum::extract::State;
use checkout::acp::ErrorCode;
use checkout::clock;
use checkout::delivery_task::{TaskMessage, test_event};
use checkout::endpoint_settings::{self as settings, EndpointChange};
use checkout::event::EventType;
use checkout::ids::EndpointId;
use checkout::merchant::{Merchant, OrderWebhook};
use checkout::ports::StoreError;
use checkout::service::Reply;
use checkout::url_safety::{self, UrlError};
use checkout::webhook_endpoint::{EndpointState, MAX_ENDPOINTS_PER_MERCHANT, SignatureScheme, WebhookEndpoint};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::info;

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    pub(crate) url: String,
    #[serde(default)]
    pub(crate) event_types: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    #[serde(default)]
    pub(crate) rate_limit: Option<u32>,
    #[serde(default)]
    pub(crate) signature_scheme: Option<SignatureScheme>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateEndpoint {
    #[serde(default)]
    pub(crate) url: Option<String>,
    #[serde(default)]
    pub(crate) event_types: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    #[serde(default)]
    pub(crate) enabled: Option<bool>,
    /// `null` removes the endpoint's own limit.
    #[serde(default, with = "double_option")]
    pub(crate) rate_limit: Option<Option<u32>>,
    #[serde(default)]
    pub(crate) signature_scheme: Option<SignatureScheme>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateSecret {
    #[serde(default)]
    pub(crate) grace_period_seconds: Option<i64>,
}

/// `POST /webhook_endpoints/{id}/test` takes no fields.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendTest {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetOrderWebhook {
    url: String,
    secret: String,
    /// How long a replaced secret keeps signing `webhook-signature` beside the new one.
    #[serde(default)]
    grace_period_seconds: Option<i64>,
}

/// An endpoint as the API shows it; the secret only at creation and rotation.
#[derive(Serialize)]
struct EndpointBody<'a> {
    id: &'a EndpointId,
    url: &'a str,
    event_types: Vec<&'static str>,
    description: Option<&'a str>,
    enabled: bool,
    /// `enabled`, `paused` or `disabled`.
    state: &'static str,
    /// Since when its deliveries are held (while paused).
    paused_at: Option<String>,
    rate_limit: Option<u32>,
    disabled_reason: Option<&'a str>,
    created_at: String,
    updated_at: String,
    signature_scheme: &'static str,
    /// The public keys that sign its `v1a` signatures now, current first: never a private key.
    signing_keys: Vec<KeyBody<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

#[derive(Serialize)]
struct KeyBody<'a> {
    kid: &'a str,
    public_key: &'a str,
    created_at: String,
    expires_at: Option<String>,
}

pub(crate) fn body(endpoint: &WebhookEndpoint, with_secret: bool) -> serde_json::Value {
    let keys = endpoint.signing_keys(clock::now()).map(|k| KeyBody {
        kid: &k.kid,
        public_key: &k.public,
        created_at: clock::rfc3339(&k.created_at),
        expires_at: k.expires_at.as_ref().map(clock::rfc3339),
    });
    let view = EndpointBody {
        id: &endpoint.id,
        url: &endpoint.url,
        event_types: endpoint.event_types.iter().map(|t| t.as_str()).collect(),
        description: endpoint.description.as_deref(),
        enabled: endpoint.enabled,
        state: endpoint.state().as_str(),
        paused_at: endpoint.paused_at.as_ref().map(clock::rfc3339),
        rate_limit: endpoint.rate_limit,
        disabled_reason: endpoint.disabled_reason.as_deref(),
        created_at: clock::rfc3339(&endpoint.created_at),
        updated_at: clock::rfc3339(&endpoint.updated_at),
        signature_scheme: endpoint.signature_scheme.as_str(),
        signing_keys: keys.collect(),
        secret: with_secret.then(|| endpoint.current_secret()).flatten(),
    };
    serde_json::to_value(view).unwrap_or_default()
}

pub(crate) fn reply(status: u16, value: &serde_json::Value) -> ApiReply {
    ApiReply(Reply::json_value(status, value))
}

/// The URL rules of [`url_safety`], with the host resolved here.
async fn check_url(state: &AppState, raw: &str) -> Result<(), ApiError> {
    let refuse = |err: UrlError| {
        ApiError::invalid(
            ErrorCode::InvalidUrl,
            format!("The webhook URL is not allowed: {err}"),
            "$.url",
        )
    };
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

/// Runs a merchant-API POST; retried with the same `Idempotency-Key` (a second endpoint, a
/// second replay), it runs once and every try gets the first answer.
pub(crate) async fn once<F, Fut>(
    state: &AppState,
    caller: &Caller,
    key: Option<KeyScope>,
    raw: &[u8],
    run: F,
) -> ApiReply
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<ApiReply, ApiError>>,
{
    let run = || async { run().await.map_or_else(ApiError::reply, |r| r.0) };
    match key {
        Some(key) => ApiReply(state.service.once(&caller.call(key, raw), run).await),
        None => ApiReply(run().await),
    }
}

pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    OptionalKey(key): OptionalKey,
    body: Json<CreateEndpoint>,
) -> ApiReply {
    let Json { value: req, raw } = body;
    once(&state, &caller, key, &raw, || async {
        let endpoint = create_endpoint(&state, &caller.merchant, req).await?;
        Ok(respond(&endpoint, 201, true, "webhook endpoint created"))
    })
    .await
}

/// Registers an endpoint of the merchant (the API's and the portal's): it as stored, with its
/// secret.
pub(crate) async fn create_endpoint(
    state: &AppState,
    merchant: &Merchant,
    req: CreateEndpoint,
) -> Result<WebhookEndpoint, ApiError> {
    check_url(state, &req.url).await?;
    // Counted before the write, so registrations racing each other may pass the cap by a
    // few: it bounds what a merchant can add, it is not a quota anyone is billed by.
    let existing = state
        .backend
        .endpoints
        .endpoints(&merchant.id)
        .await
        .map_err(ApiError::storage)?;
    if existing.len() >= MAX_ENDPOINTS_PER_MERCHANT {
        return Err(ApiError::TooManyEndpoints(MAX_ENDPOINTS_PER_MERCHANT));
    }
    let rate_limit = settings::rate_limit(req.rate_limit)?;
    let description = settings::description(req.description)?;
    let event_types = settings::event_types(req.event_types.as_deref().unwrap_or_default())?;
    let mut endpoint =
        WebhookEndpoint::new(merchant.id.clone(), req.url, clock::now()).map_err(ApiError::no_randomness)?;
    endpoint.event_types = event_types;
    endpoint.description = description;
    endpoint.enabled = req.enabled.unwrap_or(true);
    endpoint.rate_limit = rate_limit;
    if let Some(scheme) = req.signature_scheme {
        endpoint
            .set_signature_scheme(scheme, endpoint.created_at)
            .map_err(ApiError::no_randomness)?;
    }
    state
        .backend
        .endpoints
        .put_endpoint(&endpoint)
        .await
        .map_err(ApiError::storage)?;
    Ok(endpoint)
}

pub async fn list(State(state): State<AppState>, caller: Caller) -> Result<ApiReply, ApiError> {
    let endpoints = state
        .backend
        .endpoints
        .endpoints(&caller.merchant.id)
        .await
        .map_err(ApiError::storage)?;
    let data: Vec<_> = endpoints.iter().map(|e| body(e, false)).collect();
    Ok(reply(200, &json!({ "data": data })))
}

/// Loads the merchant's endpoint named in the path, or answers 404.
pub(crate) async fn load(state: &AppState, merchant: &Merchant, id: &str) -> Result<WebhookEndpoint, ApiError> {
    let id = EndpointId::parse(id).ok_or(ApiError::NotFound)?;
    match state.backend.endpoints.endpoint(&merchant.id, &id).await {
        Ok(Some(endpoint)) => Ok(endpoint),
        Ok(None) => Err(ApiError::NotFound),
        Err(err) => Err(ApiError::storage(err)),
    }
}

pub async fn retrieve(State(state): State<AppState>, caller: Caller, PathId(id): PathId) -> Result<ApiReply, ApiError> {
    let endpoint = load(&state, &caller.merchant, &id).await?;
    Ok(reply(200, &body(&endpoint, false)))
}

pub async fn update(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    body: Json<UpdateEndpoint>,
) -> Result<ApiReply, ApiError> {
    let before = load(&state, &caller.merchant, &id).await?;
    let changed = update_endpoint(&state, &caller.merchant, &id, body.value).await?;
    // Turning v1 signatures on makes a fresh secret: the answer is where it is shown.
    let fresh_secret = changed.signature_scheme.signs_hmac() && !before.signature_scheme.signs_hmac();
    Ok(respond(&changed, 200, fresh_secret, "webhook endpoint updated"))
}

/// Changes the merchant's endpoint `id` (the API's and the portal's): it as stored.
pub(crate) async fn update_endpoint(
    state: &AppState,
    merchant: &Merchant,
    id: &str,
    req: UpdateEndpoint,
) -> Result<WebhookEndpoint, ApiError> {
    // A missing endpoint is a 404 whatever the body says, before any of it is checked (and its
    // URL resolved).
    load(state, merchant, id).await?;
    let update = validate_update(state, req).await?;
    change_endpoint(state, merchant, id, |endpoint| {
        update.apply(endpoint, clock::now()).map_err(ApiError::no_randomness)
    })
    .await
}

/// A PATCH's fields checked, its URL resolved.
async fn validate_update(state: &AppState, req: UpdateEndpoint) -> Result<EndpointChange, ApiError> {
    if let Some(url) = &req.url {
        check_url(state, url).await?;
    }
    Ok(EndpointChange::new(
        req.url,
        req.event_types.as_deref(),
        req.description,
        req.rate_limit,
        req.enabled,
        req.signature_scheme,
    )?)
}

/// How often a read-modify-write is tried again when another writer changed the item between
/// its read and its write.
const CHANGE_TRIES: usize = 20;

/// Reads the endpoint, changes it and stores it, conditional on nobody having stored it since
/// the read; on a conflict, again from a fresh read. Returns the endpoint as stored.
pub(crate) async fn change_endpoint(
    state: &AppState,
    merchant: &Merchant,
    id: &str,
    change: impl Fn(&mut WebhookEndpoint) -> Result<(), ApiError>,
) -> Result<WebhookEndpoint, ApiError> {
    for _ in 0..CHANGE_TRIES {
        let mut endpoint = load(state, merchant, id).await?;
        change(&mut endpoint)?;
        match state.backend.endpoints.put_endpoint(&endpoint).await {
            Ok(()) => return Ok(endpoint),
            Err(StoreError::Changed { .. }) => continue,
            Err(err) => return Err(ApiError::storage(err)),
        }
    }
    Err(ApiError::storage(StoreError::Changed {
        what: "endpoint",
        id: id.to_owned(),
    }))
}

/// The endpoint as stored, logged as `what`; its current secret too when `with_secret`.
fn respond(endpoint: &WebhookEndpoint, status: u16, with_secret: bool, what: &str) -> ApiReply {
    info!(merchant_id = %endpoint.merchant_id, endpoint_id = %endpoint.id, "{what}");
    reply(status, &body(endpoint, with_secret))
}

pub async fn delete(State(state): State<AppState>, caller: Caller, PathId(id): PathId) -> Result<ApiReply, ApiError> {
    delete_endpoint(&state, &caller.merchant, &id).await?;
    Ok(ApiReply(Reply::no_content()))
}

/// Deletes the merchant's endpoint `id` (the API's and the portal's).
pub(crate) async fn delete_endpoint(state: &AppState, merchant: &Merchant, id: &str) -> Result<(), ApiError> {
    let id = EndpointId::parse(id).ok_or(ApiError::NotFound)?;
    match state.backend.endpoints.delete_endpoint(&merchant.id, &id).await {
        Ok(true) => {
            info!(merchant_id = %merchant.id, endpoint_id = %id, "webhook endpoint deleted");
            Ok(())
        }
        Ok(false) => Err(ApiError::NotFound),
        Err(err) => Err(ApiError::storage(err)),
    }
}

pub async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    OptionalKey(key): OptionalKey,
    JsonOrEmpty(body): JsonOrEmpty<RotateSecret>,
) -> ApiReply {
    let Json { value: req, raw } = body;
    once(&state, &caller, key, &raw, || async {
        let changed = rotate_endpoint_secret(&state, &caller.merchant, &id, req.grace_period_seconds).await?;
        Ok(respond(&changed, 200, true, "webhook secret rotated"))
    })
    .await
}

/// Rotates the secret (and key) of the merchant's endpoint `id`, the older ones signing on for
/// the grace given (the API's and the portal's): it as stored, with its new secret.
pub(crate) async fn rotate_endpoint_secret(
    state: &AppState,
    merchant: &Merchant,
    id: &str,
    grace_period_seconds: Option<i64>,
) -> Result<WebhookEndpoint, ApiError> {
    let grace = settings::rotation_grace(grace_period_seconds)?;
    change_endpoint(state, merchant, id, |endpoint| {
        endpoint
            .rotate(clock::now(), grace)
            .map(|_| ())
            .map_err(ApiError::no_randomness)
    })
    .await
}

/// Queues a signed `webhook.test` event for the endpoint: the dispatcher sends it like any
/// other (signature scheme, rate limits, retries) and logs its attempts. 202 with its event id.
pub async fn send_test(
    State(state): State<AppState>,
    caller: Caller,
    PathId(id): PathId,
    OptionalKey(key): OptionalKey,
    JsonOrEmpty(body): JsonOrEmpty<SendTest>,
) -> ApiReply {
    let Json { raw, .. } = body;
    once(&state, &caller, key, &raw, || async {
        let (endpoint, event_id) = queue_test_event(&state, &caller.merchant, caller.api_version.as_str(), &id).await?;
        Ok(reply(
            202,
            &json!({"event_id": event_id, "endpoint_id": endpoint.id, "type": EventType::Test.as_str()}),
        ))
    })
    .await
}

/// Queues a `webhook.test` event for the merchant's endpoint `id` (the API's and the portal's):
/// the endpoint, and the event's id.
pub(crate) async fn queue_test_event(
    state: &AppState,
    merchant: &Merchant,
    api_version: &str,
    id: &str,
) -> Result<(WebhookEndpoint, serde_json::Value), ApiError> {
    let queue = state.deliveries.clone().ok_or(ApiError::TestEventsUnavailable)?;
    let endpoint = load(state, merchant, id).await?;
    match endpoint.state() {
        EndpointState::Disabled => return Err(ApiError::EndpointDisabled),
        EndpointState::Paused => return Err(ApiError::EndpointPaused),
        EndpointState::Enabled => {}
    }
    let event = test_event(&merchant.id, api_version, clock::now());
    let raw_event = serde_json::value::to_raw_value(&event).map_err(ApiError::storage)?;
    // Not a replay: the first attempt of a fresh event, which no copy can have begun.
    let task = TaskMessage::new(endpoint.id.as_str(), 1, false, &raw_event);
    queue
        .send(&task.to_body(), std::time::Duration::ZERO)
        .await
        .map_err(ApiError::storage)?;
    info!(merchant_id = %endpoint.merchant_id, endpoint_id = %endpoint.id, event_id = %event["id"], "test event queued");
    Ok((endpoint, event["id"].clone()))
}

pub async fn set_order_webhook(
    State(state): State<AppState>,
    caller: Caller,
    body: Json<SetOrderWebhook>,
) -> Result<ApiReply, ApiError> {
    let req = body.value;
    check_url(&state, &req.url).await?;
    settings::order_webhook_secret(&req.secret)?;
    let grace = settings::rotation_grace(req.grace_period_seconds)?;
    let updated = change_merchant(&state, &caller.merchant, |m| {
        let hook = OrderWebhook::replacing(
            m.order_webhook.as_ref(),
            req.url.clone(),
            req.secret.clone(),
            clock::now(),
            grace,
        );
        m.order_webhook = Some(hook);
        Ok(())
    })
    .await?;
    Ok(reply(200, &json!({ "url": updated.order_webhook.map(|h| h.url) })))
}

pub async fn get_order_webhook(State(state): State<AppState>, caller: Caller) -> Result<ApiReply, ApiError> {
    let merchant = fresh_merchant(&state, &caller.merchant).await?;
    let hook = merchant.order_webhook.ok_or(ApiError::NotFound)?;
    Ok(reply(200, &json!({ "url": hook.url })))
}

pub async fn delete_order_webhook(State(state): State<AppState>, caller: Caller) -> Result<ApiReply, ApiError> {
    change_merchant(&state, &caller.merchant, |m| match m.order_webhook.take() {
        Some(_) => Ok(()),
        None => Err(ApiError::NotFound),
    })
    .await?;
    Ok(ApiReply(Reply::no_content()))
}

/// The merchant as stored now (the auth cache may be a few seconds old).
async fn fresh_merchant(state: &AppState, merchant: &Merchant) -> Result<Merchant, ApiError> {
    match state.backend.merchants.merchant(&merchant.id).await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(ApiError::NotFound),
        Err(err) => Err(ApiError::storage(err)),
    }
}

/// Reads the merchant, changes it and stores it, conditional on nobody having stored it since
/// the read (an API key rotation running beside this keeps its new key); on a conflict, again
/// from a fresh read. Returns the merchant as stored.
pub(crate) async fn change_merchant(
    state: &AppState,
    merchant: &Merchant,
    change: impl Fn(&mut Merchant) -> Result<(), ApiError>,
) -> Result<Merchant, ApiError> {
    for _ in 0..CHANGE_TRIES {
        let mut fresh = fresh_merchant(state, merchant).await?;
        change(&mut fresh)?;
        match state.backend.merchants.put_merchant(&fresh).await {
            Ok(()) => {
                state.merchants.forget(&fresh.api_key_hash);
                return Ok(fresh);
            }
            Err(StoreError::Changed { .. }) => continue,
            Err(err) => return Err(ApiError::storage(err)),
        }
    }
    Err(ApiError::storage(StoreError::Changed {
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
