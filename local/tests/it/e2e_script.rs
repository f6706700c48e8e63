//! `infra/test/e2e-test.sh`, the check an operator runs against a deployment, passes against
//! acp-local: every call, and each event of its session delivered to its endpoint, read from the
//! attempt log (it takes nothing off a queue).

use local::Stack;
use local::config::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_end_to_end_script_passes_against_acp_local() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::start(&Config::ephemeral("sk_e2e", dir.path().to_owned()))
        .await
        .unwrap();
    // A receiver that answers 200: the script then checks each event was delivered.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let receiver = axum::Router::new().fallback(|| async { "ok" });
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/test/e2e-test.sh");
    let base_url = stack.base_url();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new("bash")
            .arg(script)
            .arg(base_url)
            .env("ACP_API_KEY", "sk_e2e")
            .env("E2E_WEBHOOK_URL", hook)
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("all checks passed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
    for kind in ["created", "updated", "completed"] {
        assert!(
            stdout.contains(&format!("checkout.session.{kind} was delivered")),
            "{stdout}"
        );
    }
    stack.shutdown().await.unwrap();
}
