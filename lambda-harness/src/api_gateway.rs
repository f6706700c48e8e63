//! An API Gateway HTTP API in front of a function, as the template configures it: one
//! `ANY /{proxy+}` route, payload format 2.0, on a named stage (the URL and the event's
//! `rawPath` start with `/{stage}`) or on `$default` (they do not). Each HTTP request becomes the
//! event API Gateway would send; the function's answer becomes the HTTP response.

use crate::runtime_api::{Function, Invocation};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Map, Value, json};
use std::net::SocketAddr;
use std::sync::Arc;

/// The most API Gateway takes in a request body (10 MB); its own limits answer before Lambda.
const MAX_BODY: usize = 10 * 1024 * 1024;
/// An HTTP API waits at most 30 s for its integration, whatever the function's own timeout,
/// then answers 503 itself.
const INTEGRATION_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone)]
struct Front {
    function: Arc<Function>,
    stage: String,
}

/// The front's address; it serves until the runtime drops it.
pub async fn serve(function: Arc<Function>, stage: &str) -> std::io::Result<SocketAddr> {
    let app = Router::new().fallback(handle).with_state(Front {
        function,
        stage: stage.to_owned(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "application/json")],
        r#"{"message":"Not Found"}"#,
    )
        .into_response()
}

async fn handle(State(front): State<Front>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_BODY).await else {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            r#"{"message":"Request Entity Too Large"}"#,
        )
            .into_response();
    };
    let path = parts.uri.path().to_owned();
    // On a named stage, only URLs under /{stage} reach the API.
    let named = front.stage != "$default";
    let prefix = format!("/{}", front.stage);
    if named && !(path == prefix || path.starts_with(&format!("{prefix}/"))) {
        return not_found();
    }
    let route_path = if named { &path[prefix.len()..] } else { path.as_str() };
    if route_path.is_empty() || route_path == "/" {
        // `/{proxy+}` needs at least one segment.
        return not_found();
    }
    let event = event(&front.stage, &parts, &path, route_path, &body);
    let Ok(answer) = tokio::time::timeout(INTEGRATION_TIMEOUT, front.function.invoke(&event)).await else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [("content-type", "application/json")],
            r#"{"message":"Service Unavailable"}"#,
        )
            .into_response();
    };
    match answer {
        Invocation::Response(answer) => response(&answer),
        Invocation::Error(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            [("content-type", "application/json")],
            r#"{"message":"Internal Server Error"}"#,
        )
            .into_response(),
    }
}

/// The payload format 2.0 event of a request.
fn event(stage: &str, parts: &axum::http::request::Parts, raw_path: &str, route_path: &str, body: &Bytes) -> Value {
    let mut headers = Map::new();
    let mut cookies = Vec::new();
    for (name, value) in &parts.headers {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        if name == "cookie" {
            cookies.extend(value.split(';').map(|c| c.trim().to_owned()));
            continue;
        }
        // Repeated headers are joined with commas.
        match headers.get_mut(name.as_str()) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(&value);
            }
            _ => {
                headers.insert(name.as_str().to_owned(), Value::String(value));
            }
        }
    }
    let query = parts.uri.query().unwrap_or_default();
    let mut parameters = Map::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match parameters.get_mut(k) {
            Some(Value::String(existing)) => {
                existing.push(',');
                existing.push_str(v);
            }
            _ => {
                parameters.insert(k.to_owned(), Value::String(v.to_owned()));
            }
        }
    }
    let (body, base64) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (STANDARD.encode(body), true),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let request_id = ulid::Ulid::new().to_string();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "ANY /{proxy+}",
        "rawPath": raw_path,
        "rawQueryString": query,
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "harness",
            "domainName": "harness.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "harness",
            "http": {
                "method": parts.method.as_str(),
                "path": raw_path,
                "protocol": "HTTP/1.1",
                "sourceIp": "127.0.0.1",
                "userAgent": parts.headers.get("user-agent").and_then(|v| v.to_str().ok()).unwrap_or_default(),
            },
            "requestId": request_id,
            "routeKey": "ANY /{proxy+}",
            "stage": stage,
            "time": "02/Dec/2026:00:00:00 +0000",
            "timeEpoch": now,
        },
        "pathParameters": { "proxy": route_path.trim_start_matches('/') },
        "isBase64Encoded": base64,
    });
    if !cookies.is_empty() {
        event["cookies"] = json!(cookies);
    }
    if !parameters.is_empty() {
        event["queryStringParameters"] = Value::Object(parameters);
    }
    if !body.is_empty() {
        event["body"] = Value::String(body);
    }
    event
}

/// The HTTP response of a function's payload 2.0 answer.
fn response(answer: &Value) -> Response {
    // An answer without `statusCode` is a 200 with the answer as its JSON body.
    let Some(status) = answer.get("statusCode").and_then(Value::as_u64) else {
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            answer.to_string(),
        )
            .into_response();
    };
    let body = answer.get("body").and_then(Value::as_str).unwrap_or_default();
    let body = if answer.get("isBase64Encoded").and_then(Value::as_bool) == Some(true) {
        STANDARD.decode(body).unwrap_or_default()
    } else {
        body.as_bytes().to_vec()
    };
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    if let Some(Value::Object(map)) = answer.get("headers") {
        for (name, value) in map {
            if let (Ok(name), Some(Ok(value))) = (
                HeaderName::from_bytes(name.as_bytes()),
                value.as_str().map(HeaderValue::from_str),
            ) {
                headers.append(name, value);
            }
        }
    }
    if let Some(Value::Array(cookies)) = answer.get("cookies") {
        for cookie in cookies.iter().filter_map(Value::as_str) {
            if let Ok(value) = HeaderValue::from_str(cookie) {
                headers.append("set-cookie", value);
            }
        }
    }
    response
}
