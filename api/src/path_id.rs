//! The id a route's path names, as a handler takes it.

use crate::error::ApiError;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

/// The `{id}` of a route. An id that is not valid percent-encoded UTF-8 (`%ff`) names nothing
/// we could have issued: a 404 in the ACP error shape, where axum's own rejection is plain text.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(PathId(id)),
            Err(_) => Err(ApiError::NotFound),
        }
    }
}

/// The `{id}` and `{sub_id}` of a route such as `/webhook_endpoints/{id}/replays/{sub_id}`.
pub struct PathIds(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathIds {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Path::<(String, String)>::from_request_parts(parts, state).await {
            Ok(Path((id, sub_id))) => Ok(PathIds(id, sub_id)),
            Err(_) => Err(ApiError::NotFound),
        }
    }
}
