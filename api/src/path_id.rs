//! The id a route's path names, as a handler takes it.

use crate::edge::Echo;
use crate::error::EdgeError;
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::Response;

/// The `{id}` of a route. An id that is not valid percent-encoded UTF-8 (`%ff`) names nothing
/// we could have issued: a 404 in the ACP error shape, where axum's own rejection is plain text.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(PathId(id)),
            Err(_) => Err(Echo::of(&parts.headers).refuse(EdgeError::NotFound)),
        }
    }
}
