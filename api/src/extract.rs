//! What a handler takes from a request, each checked where it is taken: who calls (API key →
//! merchant, and the API version), the idempotency key, and the JSON body. axum runs them in
//! the order a handler names them, so a refusal comes in this order: 401 (key), 400 (version),
//! 400 (idempotency key), then the body: 408, 413, 400. A refused request changes nothing.

use crate::auth::bearer_key;
use crate::echo::RequestId;
use crate::error::ApiError;
use crate::{AppState, MAX_BODY_BYTES, headers};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use checkout::acp::{ApiVersion, parse_body};
use checkout::idempotency::{self, IdempotencyKey};
use checkout::merchant::Merchant;
use checkout::service::Call;
use http_body_util::LengthLimitError;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use tracing::warn;

/// The merchant whose API key the request carries, and the API version it speaks.
pub struct Caller {
    pub merchant: Arc<Merchant>,
    pub api_version: ApiVersion,
    pub request_id: String,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let api_key =
            bearer_key(header_str(&parts.headers, header::AUTHORIZATION.as_str())).ok_or(ApiError::MissingApiKey)?;
        let merchant = match state.merchants.by_api_key(api_key).await {
            Ok(Some(merchant)) => merchant,
            Ok(None) => return Err(ApiError::InvalidApiKey),
            Err(err) => {
                warn!(error = %err, "merchant lookup failed");
                return Err(ApiError::Unavailable);
            }
        };
        let api_version = match parts.headers.get(headers::API_VERSION).map(|v| v.to_str()) {
            None => merchant.pinned_version(),
            // Echoed in the message: only its start, whatever a client sent.
            Some(Ok(raw)) => {
                ApiVersion::parse(raw).ok_or_else(|| ApiError::UnsupportedVersion(raw.chars().take(40).collect()))?
            }
            Some(Err(_)) => return Err(ApiError::UnsupportedVersion("(not ASCII text)".to_owned())),
        };
        let request_id = parts
            .extensions
            .get::<RequestId>()
            .map_or_else(|| format!("req_{}", ulid::Ulid::new()), |id| id.0.clone());
        Ok(Caller {
            merchant,
            api_version,
            request_id,
        })
    }
}

impl Caller {
    /// The idempotent call a write makes with `key` and the body `raw`.
    pub fn call(&self, key: KeyScope, raw: &[u8]) -> Call<'_> {
        Call {
            merchant: &self.merchant,
            api_version: self.api_version,
            idempotency_key: IdempotencyKey {
                merchant_id: self.merchant.id.clone(),
                method: key.method,
                path: key.path,
                key: key.key,
            },
            fingerprint: idempotency::fingerprint(raw),
        }
    }
}

/// An `Idempotency-Key` and what it is scoped to: the method and the path as the router reads
/// it (`/checkout_sessions/%63s_1` names the same session as `/checkout_sessions/cs_1`).
#[derive(Clone)]
pub struct KeyScope {
    key: String,
    method: String,
    path: String,
}

impl KeyScope {
    /// The key of a portal form (`form_id`, made with the page), posted to `path`: posting the
    /// form again (a reload) runs its work once and answers the first answer.
    pub(crate) fn portal_form(form_id: &str, path: &str) -> Option<Self> {
        Some(Self {
            key: idempotency::valid_key(form_id.as_bytes())?.to_owned(),
            method: "PORTAL".to_owned(),
            path: path.to_owned(),
        })
    }
}

/// The key of a write that must carry one (the checkout API's).
pub struct RequiredKey(pub KeyScope);

/// The key of a write that may carry one (the merchant API's: a retried POST with the same key
/// runs once).
pub struct OptionalKey(pub Option<KeyScope>);

fn key_scope(parts: &Parts) -> Result<Option<KeyScope>, ApiError> {
    let Some(raw) = parts.headers.get(headers::IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = idempotency::valid_key(raw.as_bytes()).ok_or(ApiError::IdempotencyKeyInvalid)?;
    let path = percent_encoding::percent_decode_str(parts.uri.path())
        .decode_utf8()
        .map_or_else(|_| parts.uri.path().to_owned(), |path| path.into_owned());
    Ok(Some(KeyScope {
        key: key.to_owned(),
        method: parts.method.to_string(),
        path,
    }))
}

impl<S: Sync> FromRequestParts<S> for RequiredKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        key_scope(parts)?
            .map(RequiredKey)
            .ok_or(ApiError::IdempotencyKeyRequired)
    }
}

impl<S: Sync> FromRequestParts<S> for OptionalKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        key_scope(parts).map(OptionalKey)
    }
}

/// A JSON object body, parsed strictly (see [`parse_body`]), with the bytes it came as (an
/// idempotency key is bound to them).
pub struct Json<T> {
    pub value: T,
    pub raw: Bytes,
}

/// As [`Json`], where an empty body means `{}`, and `{}` is fingerprinted as an empty body
/// (`cancel`, `rotate_secret`).
pub struct JsonOrEmpty<T>(pub Json<T>);

impl<T: DeserializeOwned> FromRequest<AppState> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let raw = read_body(request, state).await?;
        let value = parse_body(&raw).map_err(ApiError::Invalid)?;
        Ok(Json { value, raw })
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonOrEmpty<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, ApiError> {
        let raw = read_body(request, state).await?;
        let empty = raw.iter().all(u8::is_ascii_whitespace);
        let value = parse_body(if empty { b"{}" } else { &raw[..] }).map_err(ApiError::Invalid)?;
        // `{}` and nothing are the same request, under the fingerprint an empty body always had
        // (so keys stored before still match).
        let is_empty_object = raw.iter().filter(|b| !b.is_ascii_whitespace()).eq(b"{}".iter());
        let raw = if empty || is_empty_object { Bytes::new() } else { raw };
        Ok(JsonOrEmpty(Json { value, raw }))
    }
}

/// The whole body, within [`MAX_BODY_BYTES`] and the state's read timeout (a slow sender holds
/// a connection).
async fn read_body(request: Request, state: &AppState) -> Result<Bytes, ApiError> {
    // A body announced as too large is refused at once, not after it failed to arrive.
    let announced = header_str(request.headers(), header::CONTENT_LENGTH.as_str()).and_then(|n| n.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(ApiError::BodyTooLarge(MAX_BODY_BYTES));
    }
    let read = tokio::time::timeout(
        state.body_read_timeout,
        axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES),
    );
    match read.await {
        Err(_) => Err(ApiError::BodyTimeout(state.body_read_timeout.as_secs())),
        Ok(Ok(body)) => Ok(body),
        Ok(Err(err)) if is_length_limit(&err) => Err(ApiError::BodyTooLarge(MAX_BODY_BYTES)),
        Ok(Err(_)) => Err(ApiError::BodyUnreadable),
    }
}

/// axum's `to_bytes` reports an oversized body as http-body-util's `LengthLimitError`, wrapped.
fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if e.is::<LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
