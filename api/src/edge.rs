//! Turns an HTTP request into a checked call (who, which version, which idempotency key, which
//! body), and a [`Reply`] back into an HTTP response with the ACP headers.

use crate::auth::bearer_key;
use crate::error::EdgeError;
use crate::headers;
use crate::{AppState, MAX_BODY_BYTES};
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use checkout::acp::ApiVersion;
use checkout::idempotency::{self, IdempotencyKey};
use checkout::merchant::Merchant;
use checkout::service::{Call, Reply};
use http_body_util::LengthLimitError;
use std::sync::Arc;
use tracing::warn;

/// A request that passed the edge checks.
pub struct Edge {
    pub merchant: Arc<Merchant>,
    pub api_version: ApiVersion,
    pub body: Bytes,
    idempotency_key: Option<String>,
    request_id: String,
    method: String,
    path: String,
}

/// Request-Id and Idempotency-Key to echo, known even when the request is refused.
pub struct Echo {
    request_id: String,
    idempotency_key: Option<HeaderValue>,
}

impl Echo {
    pub fn of(headers: &HeaderMap) -> Self {
        let request_id = header_str(headers, headers::REQUEST_ID)
            .filter(|id| id.len() <= 200)
            .map_or_else(|| format!("req_{}", ulid::Ulid::new()), str::to_owned);
        Self {
            request_id,
            // Echoed only when it is one a request may carry: a refused 100 KB key is not sent back.
            idempotency_key: headers
                .get(headers::IDEMPOTENCY_KEY)
                .filter(|k| !k.is_empty() && k.len() <= idempotency::MAX_KEY_LEN)
                .cloned(),
        }
    }

    pub fn respond(&self, reply: Reply) -> Response {
        let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(Body::from(reply.body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if status != StatusCode::NO_CONTENT {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Ok(id) = HeaderValue::from_str(&self.request_id) {
            headers.insert(headers::REQUEST_ID, id);
        }
        if let Some(key) = &self.idempotency_key {
            headers.insert(headers::IDEMPOTENCY_KEY, key.clone());
        }
        if reply.replayed {
            headers.insert(headers::IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
        }
        if let Some(secs) = reply.retry_after_secs {
            headers.insert(headers::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }

    pub fn refuse(&self, error: EdgeError) -> Response {
        self.respond(error.reply())
    }
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Whether a request must carry an `Idempotency-Key`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyRule {
    /// The checkout API's writes.
    Required,
    /// Reads, and the merchant API (whose POSTs honour a key when one is sent).
    Optional,
}

/// How long a client may take to send a request body, unless the state says otherwise (a slow
/// sender holds a connection).
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

impl Edge {
    /// Checks, in order: API key (401), API version (400), the idempotency key as `keys` says
    /// (400), body size (413). A refused request changes nothing.
    pub async fn read(state: &AppState, request: Request, keys: KeyRule) -> Result<(Edge, Echo), Response> {
        let (parts, body) = request.into_parts();
        let echo = Echo::of(&parts.headers);
        let refuse = |error: EdgeError| echo.refuse(error);

        let Some(api_key) = bearer_key(header_str(&parts.headers, header::AUTHORIZATION.as_str())) else {
            return Err(refuse(EdgeError::MissingApiKey));
        };
        let merchant = match state.merchants.by_api_key(api_key).await {
            Ok(Some(merchant)) => merchant,
            Ok(None) => return Err(refuse(EdgeError::InvalidApiKey)),
            Err(err) => {
                warn!(error = %err, "merchant lookup failed");
                return Err(refuse(EdgeError::Unavailable));
            }
        };
        let api_version = match header_str(&parts.headers, headers::API_VERSION) {
            None => merchant.pinned_version(),
            // Echoed in the message: only its start, whatever a client sent.
            Some(raw) => ApiVersion::parse(raw)
                .ok_or_else(|| refuse(EdgeError::UnsupportedVersion(raw.chars().take(40).collect())))?,
        };
        let idempotency_key = match (parts.headers.get(headers::IDEMPOTENCY_KEY), keys) {
            (None, KeyRule::Required) => return Err(refuse(EdgeError::IdempotencyKeyRequired)),
            (None, KeyRule::Optional) => None,
            (Some(raw), _) => {
                let key = raw
                    .to_str()
                    .ok()
                    .filter(|k| !k.is_empty() && k.len() <= idempotency::MAX_KEY_LEN)
                    .ok_or_else(|| refuse(EdgeError::IdempotencyKeyInvalid))?;
                Some(key.to_owned())
            }
        };
        let read = tokio::time::timeout(state.body_read_timeout, axum::body::to_bytes(body, MAX_BODY_BYTES));
        let Ok(read) = read.await else {
            return Err(refuse(EdgeError::BodyTimeout(state.body_read_timeout.as_secs())));
        };
        let body = match read {
            Ok(body) => body,
            Err(err) if is_length_limit(&err) => return Err(refuse(EdgeError::BodyTooLarge(MAX_BODY_BYTES))),
            Err(_) => return Err(refuse(EdgeError::BodyUnreadable)),
        };
        let edge = Edge {
            merchant,
            api_version,
            body,
            idempotency_key,
            request_id: echo.request_id.clone(),
            method: parts.method.to_string(),
            path: decoded_path(parts.uri.path()),
        };
        Ok((edge, echo))
    }

    /// Whether the request carries an idempotency key.
    pub fn has_idempotency_key(&self) -> bool {
        self.idempotency_key.is_some()
    }

    /// The idempotent call this request makes (writes only).
    pub fn call(&self) -> Call<'_> {
        Call {
            merchant: &self.merchant,
            api_version: self.api_version,
            idempotency_key: IdempotencyKey {
                merchant_id: self.merchant.id.clone(),
                method: self.method.clone(),
                path: self.path.clone(),
                key: self.idempotency_key.clone().unwrap_or_default(),
            },
            fingerprint: idempotency::fingerprint(&self.body),
        }
    }

    pub fn request_id(&self) -> &str {
        &self.request_id
    }
}

/// The path as the router reads it: `/checkout_sessions/%63s_1` names the same session as
/// `/checkout_sessions/cs_1`, so an idempotency key must be scoped to the same path for both.
fn decoded_path(raw: &str) -> String {
    percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_or_else(|_| raw.to_owned(), |path| path.into_owned())
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
