//! `dispatcher dlq list|redrive` against SQS on moto.

use checkout::delivery_task::DeadLetter;
use std::process::Command;
use std::time::Duration;

fn run(args: &[&str], queue_url: &str, dlq_url: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_dispatcher"))
        .args(args)
        .env("AWS_ENDPOINT_URL", aws_backend::testkit::endpoint())
        .env("ORDER_UPDATES_QUEUE_URL", queue_url)
        .env("ORDER_UPDATES_DLQ_URL", dlq_url)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_and_redrive_dead_letters() {
    let (pipeline, resources) = aws_backend::testkit::fresh_pipeline().await;
    let letter = DeadLetter {
        reason: "exhausted after 10 attempts".into(),
        attempts: 10,
        at: checkout::clock::now(),
        target: Some("we_1".into()),
        event_id: None,
        event_type: None,
        message: r#"{"redrive":"me"}"#.into(),
    };
    pipeline
        .dead_letters
        .send(&letter.to_body(), Duration::ZERO)
        .await
        .unwrap();
    let (queue_url, dlq_url) = (&resources.queue_url, &resources.dead_letter_queue_url);

    let listed = run(&["dlq", "list"], queue_url, dlq_url);
    let read: DeadLetter = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(read.reason, letter.reason);
    assert_eq!(read.attempts, 10);

    let redriven = run(&["dlq", "redrive"], queue_url, dlq_url);
    assert!(redriven.contains("moved 1"), "{redriven}");
    let back = pipeline.queue.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, letter.message);
    assert!(run(&["dlq", "list"], queue_url, dlq_url).trim().is_empty());
}
