//! `GET /.well-known/webhook-keys`: the JWK Set (RFC 7517, keys as RFC 8037 OKP JWKs named by
//! their RFC 7638 thumbprint) of every ed25519 key that signs `v1a` webhooks now: current keys
//! and rotated-out ones still in their grace period. Receivers look up the `webhook-key-id` of a
//! delivery here instead of configuring a secret.
//!
//! Public, with no merchant or endpoint in it: a kid is a hash of a random public key, and the
//! set is listed in kid order, which says nothing of who or when. Because every merchant's keys
//! are in one set, a receiver that trusts the set must also check the event is its merchant's
//! (`merchant_id` in the body), or keep to the kids its endpoint shows: a key in this set proves
//! the delivery came from this deployment, not for whom.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use checkout::clock;
use serde_json::json;

/// How long a receiver (or a cache between) may keep the set. A new key signs at once, so a
/// receiver that meets an unknown kid fetches the set again; a key whose grace ended may be
/// accepted by a cached set for this long after.
pub const MAX_AGE_SECS: u32 = 300;

pub async fn jwks(State(state): State<AppState>) -> Result<Response, ApiError> {
    let now = clock::now();
    let published = state.backend.keys.published_keys().await.map_err(ApiError::storage)?;
    let mut active: Vec<_> = published.into_iter().filter(|k| k.active(now)).collect();
    active.sort_by(|a, b| a.kid.cmp(&b.kid));
    let keys: Vec<serde_json::Value> = active
        .iter()
        .filter_map(|k| {
            k.jwk()
                .inspect_err(|err| tracing::error!(kid = %k.kid, error = %err, "a published key is unreadable"))
                .ok()
        })
        .collect();
    let mut response = axum::Json(json!({ "keys": keys })).into_response();
    let cache = format!("public, max-age={MAX_AGE_SECS}");
    if let Ok(value) = HeaderValue::from_str(&cache) {
        response.headers_mut().insert(header::CACHE_CONTROL, value);
    }
    Ok(response)
}
