//! The one-process stack as a user meets it: demo merchant, API, graceful stop.

use local::Stack;
use local::config::Config;
use serde_json::json;
use tempfile::TempDir;

/// A stack configuration storing in a fresh folder (removed when the folder handle drops).
fn ephemeral(demo_api_key: &str) -> (Config, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (Config::ephemeral(demo_api_key, dir.path().to_owned()), dir)
}

#[tokio::test]
async fn demo_merchant_can_check_out_and_the_stack_stops_cleanly() {
    let (config, _dir) = ephemeral("sk_demo_test");
    let stack = Stack::start(&config).await.unwrap();
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/checkout_sessions", stack.base_url()))
        .bearer_auth("sk_demo_test")
        .header("Idempotency-Key", "demo-1")
        .json(&json!({"currency": "usd", "items": [{"id": "test_1", "quantity": 1}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let session: serde_json::Value = response.json().await.unwrap();
    assert_eq!(session["line_items"][0]["item"]["id"], "test_1");

    let addr = stack.addr;
    stack.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer listening"
    );
}

#[tokio::test]
async fn without_a_configured_key_a_random_one_is_made() {
    let (mut config, _dir) = ephemeral("unused");
    config.demo_api_key = None;
    let a = Stack::start(&config).await.unwrap();
    let (mut other, _other_dir) = ephemeral("unused");
    other.demo_api_key = None;
    let b = Stack::start(&other).await.unwrap();
    assert!(a.demo_api_key.starts_with("sk_acp_"));
    assert_ne!(a.demo_api_key, b.demo_api_key);
}

/// A restart used to store the demo merchant afresh, dropping what the merchant had set since
/// (its ACP order webhook: orders stopped getting `order_create`).
#[tokio::test]
async fn a_restart_keeps_what_the_demo_merchant_configured() {
    let (config, dir) = ephemeral("sk_demo_keep");
    let stack = Stack::start(&config).await.unwrap();
    let client = reqwest::Client::new();
    let set = client
        .put(format!("{}/order_webhook", stack.base_url()))
        .bearer_auth("sk_demo_keep")
        .json(&json!({"url": "http://127.0.0.1:9/acp/orders", "secret": "whsec_platform_secret"}))
        .send()
        .await
        .unwrap();
    assert!(set.status().is_success(), "{}", set.status());
    stack.shutdown().await.unwrap();

    let again = Config::ephemeral("sk_demo_new_key", dir.path().to_owned());
    let stack = Stack::start(&again).await.unwrap();
    let got = client
        .get(format!("{}/order_webhook", stack.base_url()))
        .bearer_auth("sk_demo_new_key")
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "the configured key is the key now");
    let hook: serde_json::Value = got.json().await.unwrap();
    assert_eq!(hook["url"], "http://127.0.0.1:9/acp/orders");
    let old = client
        .get(format!("{}/order_webhook", stack.base_url()))
        .bearer_auth("sk_demo_keep")
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401, "the old key was replaced");
    stack.shutdown().await.unwrap();
}

/// Slowloris: clients that open connections and dribble (or never finish) their headers. A
/// normal client is still served beside them, and the server closes them once the header
/// timeout passes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_finish_their_headers_are_closed_and_block_no_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (config, _dir) = ephemeral("sk_demo_slow");
    let stack = Stack::start(&config).await.unwrap();
    let mut idle = Vec::new();
    for _ in 0..200 {
        let mut stream = tokio::net::TcpStream::connect(stack.addr).await.unwrap();
        stream
            .write_all(b"POST /checkout_sessions HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .await
            .unwrap();
        idle.push(stream);
    }
    let served = reqwest::Client::new()
        .get(format!("{}/checkout_sessions/cs_none", stack.base_url()))
        .bearer_auth("sk_demo_slow")
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .expect("a normal client is served beside 200 unfinished requests");
    assert_eq!(served.status(), 404);

    // The first unfinished request is closed by the server (EOF or reset), not left open.
    let mut buf = [0u8; 256];
    let wait = local::server::HEADER_READ_TIMEOUT + std::time::Duration::from_secs(5);
    let read = tokio::time::timeout(wait, idle[0].read(&mut buf))
        .await
        .expect("the server closed the connection within its header timeout");
    match read {
        Ok(n) => assert!(
            n == 0 || buf[..n].starts_with(b"HTTP/1.1 408"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        ),
        Err(err) => assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset),
    }
    drop(idle);
    stack.shutdown().await.unwrap();
}

/// HTTP/1.1 without a Host header is refused in the ACP error shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_host_is_refused() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (config, _dir) = ephemeral("sk_demo_host");
    let stack = Stack::start(&config).await.unwrap();
    let mut stream = tokio::net::TcpStream::connect(stack.addr).await.unwrap();
    stream
        .write_all(b"GET /checkout_sessions/cs_none HTTP/1.1\r\nAuthorization: Bearer sk_demo_host\r\nRequest-Id: req_no_host\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(answer.contains("\"code\":\"missing_host\""), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("request-id: req_no_host"),
        "{answer}"
    );
    stack.shutdown().await.unwrap();
}

/// A request target longer than the server serves is a 414 in the ACP error shape, not an
/// empty body; one just under the limit reaches the router (a 404 for an unknown session).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_path_is_a_414_in_the_acp_shape() {
    let (config, _dir) = ephemeral("sk_demo_uri");
    let stack = Stack::start(&config).await.unwrap();
    let client = reqwest::Client::new();
    let prefix = "/checkout_sessions/cs_";
    let get = |len: usize| {
        let url = format!("{}{prefix}{}", stack.base_url(), "a".repeat(len - prefix.len()));
        client.get(url).bearer_auth("sk_demo_uri").send()
    };
    let too_long = get(local::server::MAX_URI_BYTES + 1).await.unwrap();
    assert_eq!(too_long.status(), 414);
    assert!(
        too_long.headers().contains_key("request-id"),
        "a refusal carries a Request-Id"
    );
    let body: serde_json::Value = too_long.json().await.unwrap();
    assert_eq!(body["code"], "uri_too_long", "{body}");
    assert_eq!(body["type"], "invalid_request");
    let at_limit = get(local::server::MAX_URI_BYTES).await.unwrap();
    assert_eq!(at_limit.status(), 404);
    stack.shutdown().await.unwrap();
}

/// One client holding connections open cannot take every place: past its share, its new
/// connections are closed at once, and another client is still served. A request head over
/// the limit is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_connection_or_buffer_huge_heads() {
    use local::server::{MAX_CONNECTIONS_PER_CLIENT, MAX_HEAD_BYTES};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (config, _dir) = ephemeral("sk_demo_hog");
    let stack = Stack::start(&config).await.unwrap();
    let connect_from = |source: &'static str| async move {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
        socket.connect(stack.addr).await.unwrap()
    };
    let mut held = Vec::new();
    for _ in 0..MAX_CONNECTIONS_PER_CLIENT {
        let mut stream = connect_from("127.0.0.2").await;
        stream
            .write_all(b"GET /checkout_sessions/x HTTP/1.1\r\nHo")
            .await
            .unwrap();
        held.push(stream);
    }
    let mut one_more = connect_from("127.0.0.2").await;
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), one_more.read(&mut buf))
        .await
        .expect("the connection past the client's share is closed at once");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let served = reqwest::Client::new()
        .get(format!("{}/checkout_sessions/cs_none", stack.base_url()))
        .bearer_auth("sk_demo_hog")
        .timeout(std::time::Duration::from_secs(5))
        .send()
        .await
        .expect("another client is served");
    assert_eq!(served.status(), 404);
    drop(held);

    let mut stream = tokio::net::TcpStream::connect(stack.addr).await.unwrap();
    let huge = format!(
        "GET /checkout_sessions/x HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(MAX_HEAD_BYTES * 2)
    );
    let _ = stream.write_all(huge.as_bytes()).await;
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer).await;
    assert!(
        answer.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&answer)
    );

    stack.shutdown().await.unwrap();
}
