//! A service [`Reply`] as an HTTP response: its status, JSON body and the ACP headers it
//! carries. (Request-Id and the Idempotency-Key echo are added to every response by
//! [`crate::echo`].)

use crate::headers;
use axum::body::Body;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use checkout::service::Reply;

pub struct ApiReply(pub Reply);

impl IntoResponse for ApiReply {
    fn into_response(self) -> Response {
        let reply = self.0;
        let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = Response::new(Body::from(reply.body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        if status != StatusCode::NO_CONTENT {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        // A merchant's own data, and secrets at creation and rotation: never kept by a cache
        // or a proxy between the caller and us.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
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
}
