//! One delivery attempt against a real local receiver: outcomes, signatures, limits.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use checkout::delivery_outcome::{ErrorClass, Outcome};
use checkout::retry_schedule::Pushback;
use checkout::signature;
use checkout::testkit::{event, merchant};
use checkout::url_safety::UrlPolicy;
use checkout::webhook_endpoint::WebhookEndpoint;
use dispatcher::client::{self, ClientSettings};
use dispatcher::send::{self, AttemptResult, MAX_ANSWER_HEADERS_BYTES, MAX_SNIPPET_BYTES};
use std::sync::{Arc, Mutex};
use std::time::Duration;

type Seen = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let record = seen.clone();
    let app = Router::new()
        .route(
            "/ok",
            post(move |headers: HeaderMap, body: Bytes| {
                let record = record.clone();
                async move {
                    record.lock().unwrap().push((headers, body));
                    StatusCode::OK
                }
            }),
        )
        .route("/fail", post(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .route("/gone", post(|| async { StatusCode::GONE }))
        .route(
            "/busy",
            post(|| async { (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")]).into_response() }),
        )
        .route(
            "/moved",
            post(|| async { (StatusCode::FOUND, [("location", "/ok")]).into_response() }),
        )
        .route(
            "/slow",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                StatusCode::OK
            }),
        )
        .route(
            "/chatty",
            post(|| async { Response::new(axum::body::Body::from("x".repeat(200_000))) }),
        )
        .route(
            "/headers",
            post(|| async {
                let mut response = Response::new(axum::body::Body::from("y".repeat(10_000)));
                let headers = response.headers_mut();
                headers.insert("x-request-id", "req-1".parse().unwrap());
                for i in 0..40 {
                    let name = http::HeaderName::from_bytes(format!("x-padding-{i:02}").as_bytes()).unwrap();
                    headers.insert(name, "p".repeat(60).parse().unwrap());
                }
                response
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://127.0.0.1:{}", addr.port()), seen)
}

const LOCAL: UrlPolicy = UrlPolicy { allow_loopback: true };

async fn deliver_to(url: &str, policy: UrlPolicy, total_timeout: Duration) -> (AttemptResult, WebhookEndpoint) {
    let m = merchant();
    let e = event(&m, None, 1);
    let endpoint = WebhookEndpoint::new(m.id.clone(), url.to_owned(), checkout::clock::now()).unwrap();
    let now = checkout::clock::now().timestamp();
    let body = serde_json::to_vec(&e).unwrap().into();
    let request = dispatcher::request::standard(&(&e).into(), body, &endpoint, 1, checkout::clock::now()).unwrap();
    let client = client::build(ClientSettings {
        total_timeout,
        policy,
        ..ClientSettings::default()
    })
    .unwrap();
    (send::attempt(&client, request, policy, now).await, endpoint)
}

#[tokio::test]
async fn success_is_signed_verifiably_and_records_the_address() {
    let (base, seen) = receiver().await;
    let (result, endpoint) = deliver_to(&format!("{base}/ok"), LOCAL, Duration::from_secs(15)).await;
    assert_eq!(result.outcome, Outcome::Delivered);
    assert_eq!(result.status, Some(200));
    assert_eq!(result.remote_ip, Some("127.0.0.1".parse().unwrap()));
    let seen = seen.lock().unwrap();
    let (headers, body) = &seen[0];
    let header = |name: &str| headers[name].to_str().unwrap().to_owned();
    let verdict = signature::verify(
        endpoint.current_secret().unwrap(),
        &header("webhook-id"),
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        body,
        checkout::clock::now().timestamp(),
    );
    assert_eq!(verdict, Ok(()));
    assert_eq!(header("webhook-attempt"), "1");
    assert_eq!(header("content-type"), "application/json");
}

#[tokio::test]
async fn receiver_answers_map_to_outcomes() {
    let (base, seen) = receiver().await;
    let retry = |pushback| Outcome::Retry {
        class: ErrorClass::Http,
        pushback,
    };
    let cases = [
        ("/fail", retry(Pushback::default()), 500),
        ("/gone", Outcome::Gone, 410),
        (
            "/busy",
            retry(Pushback {
                retry_after: Some(Duration::from_secs(7)),
                overloaded: true,
            }),
            429,
        ),
        ("/moved", retry(Pushback::default()), 302),
    ];
    for (path, outcome, status) in cases {
        let (result, _) = deliver_to(&format!("{base}{path}"), LOCAL, Duration::from_secs(15)).await;
        assert_eq!((result.outcome, result.status), (outcome, Some(status)), "{path}");
    }
    assert!(seen.lock().unwrap().is_empty(), "the redirect was not followed");
}

#[tokio::test]
async fn a_slow_receiver_times_out() {
    let (base, _) = receiver().await;
    let (result, _) = deliver_to(&format!("{base}/slow"), LOCAL, Duration::from_millis(300)).await;
    assert_eq!(result.status, None);
    assert!(
        matches!(result.outcome, Outcome::Retry { class: ErrorClass::Timeout, pushback } if pushback.overloaded),
        "{result:?}"
    );
}

#[tokio::test]
async fn only_the_start_of_a_long_answer_is_kept() {
    let (base, _) = receiver().await;
    let (result, _) = deliver_to(&format!("{base}/chatty"), LOCAL, Duration::from_secs(15)).await;
    assert_eq!(result.outcome, Outcome::Delivered);
    assert_eq!(result.snippet.len() + result.answer_headers.len(), MAX_SNIPPET_BYTES);
    assert!(
        result.snippet.len() > 3 * 1024,
        "most of it is the body: {}",
        result.snippet.len()
    );
}

/// The answer's headers are kept beside the start of its body, within the snippet's 4 KiB (so
/// an attempt record is no larger than before), cut at a whole header.
#[tokio::test]
async fn the_answers_headers_are_kept_within_the_snippets_budget() {
    let (base, _) = receiver().await;
    let (result, _) = deliver_to(&format!("{base}/headers"), LOCAL, Duration::from_secs(15)).await;
    assert_eq!(result.outcome, Outcome::Delivered);
    let headers = &result.answer_headers;
    assert!(headers.contains("x-request-id: req-1\n"), "{headers}");
    assert!(headers.len() <= MAX_ANSWER_HEADERS_BYTES, "{}", headers.len());
    assert!(
        headers.len() > MAX_ANSWER_HEADERS_BYTES / 2,
        "as many as fit: {}",
        headers.len()
    );
    assert!(
        headers.ends_with('\n') && headers.lines().all(|l| l.contains(": ")),
        "{headers}"
    );
    assert_eq!(
        result.snippet.len() + headers.len(),
        MAX_SNIPPET_BYTES,
        "the rest of the budget"
    );
    let (plain, _) = deliver_to(&format!("{base}/ok"), LOCAL, Duration::from_secs(15)).await;
    assert!(plain.answer_headers.contains("content-length: 0\n"), "{plain:?}");
}

#[tokio::test]
async fn unsafe_targets_are_blocked_at_delivery_time() {
    let (base, seen) = receiver().await;
    let port = base.rsplit(':').next().unwrap().to_owned();
    let strict = UrlPolicy::default();
    let (literal, _) = deliver_to(&format!("{base}/ok"), strict, Duration::from_secs(15)).await;
    assert!(
        matches!(
            literal.outcome,
            Outcome::Retry {
                class: ErrorClass::Blocked,
                ..
            }
        ),
        "{literal:?}"
    );
    // A name that resolves to loopback is caught by the resolver the client connects through.
    let (named, _) = deliver_to(&format!("https://localhost:{port}/ok"), strict, Duration::from_secs(15)).await;
    assert!(
        matches!(
            named.outcome,
            Outcome::Retry {
                class: ErrorClass::Blocked,
                ..
            }
        ),
        "{named:?}"
    );
    assert!(seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_closed_port_is_a_connect_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let (result, _) = deliver_to(&format!("http://127.0.0.1:{port}/ok"), LOCAL, Duration::from_secs(15)).await;
    assert!(
        matches!(
            result.outcome,
            Outcome::Retry {
                class: ErrorClass::Connect,
                ..
            }
        ),
        "{result:?}"
    );
}

/// A receiver that does not speak TLS on an https:// URL: the handshake fails, a TLS error
/// (the receiver's setup), not a connection error.
#[tokio::test]
async fn a_failed_handshake_is_a_tls_error() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let mut hello = [0u8; 512];
            let _ = socket.read(&mut hello).await;
            let _ = socket
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let (result, _) = deliver_to(&format!("https://127.0.0.1:{port}/ok"), LOCAL, Duration::from_secs(15)).await;
    assert!(
        matches!(
            result.outcome,
            Outcome::Retry {
                class: ErrorClass::Tls,
                ..
            }
        ),
        "{result:?}"
    );
}

/// A name that does not resolve is a DNS error.
#[tokio::test]
async fn a_name_that_does_not_resolve_is_a_dns_error() {
    let (result, _) = deliver_to("https://nothing-here.invalid/ok", LOCAL, Duration::from_secs(15)).await;
    assert!(
        matches!(
            result.outcome,
            Outcome::Retry {
                class: ErrorClass::Dns,
                ..
            }
        ),
        "{result:?}"
    );
}
