//! `GET /.well-known/acp.json`: the ACP discovery document (the 2026-04-17 JSON Schema's
//! `DiscoveryResponse`). Public and the same for every merchant of the deployment — it never
//! names one — so it may be cached for an hour.

use crate::AppState;
use crate::error::ApiError;
use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use checkout::acp::{ApiVersion, SUPPORTED_VERSIONS};
use serde_json::json;

/// Where clients reach the API, as the front that served this request names it (the Lambda
/// adapter sets it from API Gateway's request context: domain and stage).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicBaseUrl(pub String);

pub async fn acp_json(State(state): State<AppState>, from_front: Option<Extension<PublicBaseUrl>>) -> Response {
    // A configured address wins: behind a custom domain the front's own names are not the one
    // clients use.
    let Some(api_base_url) = state
        .public_base_url
        .clone()
        .or(from_front.map(|Extension(PublicBaseUrl(url))| url))
    else {
        tracing::warn!("no public base URL: /.well-known/acp.json cannot be served");
        return ApiError::NotFound.into_response();
    };
    // Oldest first: the last is the latest (the schema's order).
    let mut versions = SUPPORTED_VERSIONS.to_vec();
    versions.sort_unstable();
    let document = json!({
        "protocol": {
            "name": "acp",
            "version": ApiVersion::CURRENT.as_str(),
            "supported_versions": versions,
        },
        "api_base_url": api_base_url,
        "transports": ["rest"],
        "capabilities": {
            "services": ["checkout"],
            "supported_currencies": state.supported_currencies,
        },
    });
    let mut response = axum::Json(document).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    response
}
