//! `dispatcher dlq list|redrive` against SQS on moto.

use checkout::delivery_task::DeadLetter;
use checkout::ports::DeliveryQueue;
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

/// A delivery exhausted after ten attempts, with the task a redrive puts back.
fn exhausted_letter() -> DeadLetter {
    DeadLetter {
        reason: "exhausted after 10 attempts".into(),
        code: Some(checkout::attempt_log::FinalCode::Exhausted),
        attempts: 10,
        at: checkout::clock::now(),
        target: Some("we_1".into()),
        event_id: None,
        event_type: None,
        message: r#"{"redrive":"me"}"#.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_and_redrive_dead_letters() {
    let (pipeline, resources) = aws_backend::testkit::fresh_pipeline().await;
    let letter = exhausted_letter();
    pipeline
        .dead_letters
        .send(&letter.to_body(), Duration::ZERO)
        .await
        .unwrap();
    let (queue_url, dlq_url) = (&resources.queue_url, &resources.dead_letter_queue_url);

    let listed = run(&["dlq", "list"], queue_url, dlq_url);
    let read: DeadLetter = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(read.reason, letter.reason);
    assert_eq!(read.code, letter.code);
    assert_eq!(read.attempts, 10);

    let redriven = run(&["dlq", "redrive"], queue_url, dlq_url);
    assert!(redriven.contains("moved 1"), "{redriven}");
    let back = pipeline.queue.receive(10, Duration::from_secs(2)).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, letter.message);
    assert!(run(&["dlq", "list"], queue_url, dlq_url).trim().is_empty());
}

/// The same commands on `acp-local`'s durable database (stopped).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_list_and_redrive_dead_letters_of_the_local_stack() {
    use embedded_backend::{Database, EmbeddedQueue, QueueConfig, queue_names};
    let dir = tempfile::tempdir().unwrap();
    let config = QueueConfig {
        visibility_timeout: Duration::from_secs(60),
        max_receive_count: 50,
    };
    let letter = exhausted_letter();
    {
        let db = std::sync::Arc::new(Database::open(&dir.path().join(embedded_backend::DATABASE_FILE)).unwrap());
        let dlq = EmbeddedQueue::durable(config, None, db, queue_names::DEAD_LETTERS).unwrap();
        dlq.send(&letter.to_body(), Duration::ZERO).await.unwrap();
    }
    let data_dir = dir.path().to_str().unwrap();
    let local = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dispatcher"))
            .args(["--data-dir", data_dir])
            .args(args)
            .env_remove("ORDER_UPDATES_QUEUE_URL")
            .env_remove("ORDER_UPDATES_DLQ_URL")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = local(&["dlq", "list"]);
    let read: DeadLetter = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(read, letter);
    assert!(local(&["dlq", "redrive"]).contains("moved 1"));
    assert!(local(&["dlq", "list"]).trim().is_empty());
    let db = std::sync::Arc::new(Database::open(&dir.path().join(embedded_backend::DATABASE_FILE)).unwrap());
    let queue = EmbeddedQueue::durable(config, None, db, queue_names::ORDER_UPDATES).unwrap();
    let back = queue.receive(10, Duration::from_secs(1)).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, letter.message);
}

/// The Lambda bootstrap, run by hand.
#[test]
fn the_lambda_bootstrap_answers_help_and_refuses_to_run_outside_lambda() {
    aws_backend::testkit::check_bootstrap_outside_lambda(
        env!("CARGO_BIN_EXE_webhook-dispatcher"),
        &dispatcher::lambda::USAGE,
    );
}
