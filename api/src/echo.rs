//! What every response echoes of its request, refused or not: the `Request-Id` (the client's,
//! or one made here) and the `Idempotency-Key`.

use crate::headers;
use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use checkout::idempotency;

/// The request's id, for logs (put in the request's extensions by [`echo`]).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

/// Longest client `Request-Id` used as given; a longer one is replaced.
const MAX_REQUEST_ID: usize = 200;

pub async fn echo(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    let request_id = headers
        .get(headers::REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| id.len() <= MAX_REQUEST_ID)
        .map_or_else(|| format!("req_{}", ulid::Ulid::new()), str::to_owned);
    // Echoed only when it is one a request may carry: a refused 100 KB key, or one that is not
    // printable ASCII, is not sent back.
    let key = headers
        .get(headers::IDEMPOTENCY_KEY)
        .filter(|k| idempotency::valid_key(k.as_bytes()).is_some())
        .cloned();
    request.extensions_mut().insert(RequestId(request_id.clone()));
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        headers.insert(headers::REQUEST_ID, id);
    }
    if let Some(key) = key {
        headers.insert(headers::IDEMPOTENCY_KEY, key);
    }
    response
}
