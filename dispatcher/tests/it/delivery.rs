//! The dispatcher end to end, on the in-process queue, the durable one and SQS (moto): a real queue, real
//! storage, a real HTTP receiver. The test schedule is the standard one in hundredths, so "5 s"
//! is 50 ms and "at least 60 s after a 429" is 600 ms.

use crate::common::{Answer, Kind, Rig, test_config};
use checkout::attempt_log::{AttemptStatus, FinalCode, LogTarget};
use checkout::delivery_outcome::ErrorClass;
use checkout::delivery_task::DeadLetter;
use checkout::ports::DeliveryLog;
use dispatcher::Disposition;
use dispatcher::lambda::{Queues, SlowLane};
use std::sync::atomic::Ordering;
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(30);

async fn success(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "one delivery", |r| r.receiver.seen().len() == 1)
        .await;
    let seen = &rig.receiver.seen()[0];
    assert_eq!(seen.header("webhook-id"), e.id.as_str());
    assert_eq!(seen.header("webhook-attempt"), "1");
    assert_eq!(seen.header("webhook-sequence"), "1");
    assert_eq!(
        seen.body,
        serde_json::to_vec(&e).unwrap(),
        "the event's bytes, as published"
    );
    assert!(seen.verifies_with(&rig.secret()));
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, AttemptStatus::Succeeded);
    assert_eq!(log[0].http_status, Some(200));
    assert_eq!(log[0].remote_ip, Some("127.0.0.1".parse().unwrap()));
    assert_eq!(log[0].next_attempt_at, None);
    rig.run_for(Duration::from_millis(500)).await;
    assert_eq!(rig.receiver.seen().len(), 1, "delivered once");
}

async fn server_error_then_success(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    rig.receiver.script(&[Answer::Status(500)]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "the retry", |r| r.receiver.seen().len() == 2)
        .await;
    let seen = rig.receiver.seen();
    assert_eq!(seen[0].header("webhook-id"), seen[1].header("webhook-id"));
    assert_eq!(seen[0].body, seen[1].body, "every attempt sends the same bytes");
    assert_eq!(seen[1].header("webhook-attempt"), "2");
    assert!(seen[1].verifies_with(&rig.secret()));
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    let summary: Vec<_> = log.iter().map(|r| (r.attempt, r.status, r.http_status)).collect();
    assert_eq!(
        summary,
        vec![
            (1, AttemptStatus::Failed, Some(500)),
            (2, AttemptStatus::Succeeded, Some(200))
        ]
    );
    assert_eq!(log[0].error_class, Some(ErrorClass::Http));
    assert!(log[0].next_attempt_at.is_some_and(|t| t > log[0].at));
}

async fn too_many_requests_honours_retry_after(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    // 2 s is more than the 600 ms floor and the 50 ms schedule step.
    rig.receiver.script(&[Answer::RetryAfter(429, 2)]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "the retry", |r| r.receiver.seen().len() == 2)
        .await;
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log[0].http_status, Some(429));
    let wait = log[0].next_attempt_at.unwrap() - log[0].at;
    assert!(wait >= chrono::Duration::milliseconds(2000), "waited {wait}");
    let seen = rig.receiver.seen();
    assert!(
        seen[1].at - seen[0].at >= Duration::from_millis(2000),
        "not sent before Retry-After"
    );
    assert_eq!(log[1].status, AttemptStatus::Succeeded);
}

/// The dispatcher reads the time from its clock: a retry waits until that clock reaches the
/// time the log gave it, however long the wall clock runs, and every record carries that
/// clock's time.
async fn a_retry_comes_due_by_the_dispatchers_clock(kind: Kind) {
    let start = checkout::clock::now();
    let clock = checkout::testkit::ManualClock::starting_at(start);
    let rig = Rig::with_clock(kind, test_config(), clock.clone()).await;
    rig.receiver.script(&[Answer::Status(500)]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "the first attempt", |r| r.receiver.seen().len() == 1)
        .await;
    // Many times the 50 ms wait on the wall clock; none on the dispatcher's.
    rig.run_for(Duration::from_millis(800)).await;
    assert_eq!(rig.receiver.seen().len(), 1, "not retried before its clock says so");
    clock.advance(Duration::from_secs(1));
    rig.run_until(PATIENCE, "the retry", |r| r.receiver.seen().len() == 2)
        .await;
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].at, start);
    let due = log[0].next_attempt_at.unwrap() - start;
    assert!(
        due >= chrono::Duration::milliseconds(40) && due <= chrono::Duration::milliseconds(60),
        "the first wait is the schedule's 50 ms ± 20 %: {due}"
    );
    assert_eq!(log[1].at, start + chrono::Duration::seconds(1));
    assert_eq!(log[1].status, AttemptStatus::Succeeded);
}

async fn timeout_waits_at_least_a_minute(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    rig.receiver.script(&[Answer::Slow(Duration::from_secs(3))]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "the retry", |r| r.receiver.seen().len() == 2)
        .await;
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log[0].error_class, Some(ErrorClass::Timeout));
    assert_eq!(log[0].http_status, None);
    let wait = log[0].next_attempt_at.unwrap() - log[0].at;
    assert!(wait >= chrono::Duration::milliseconds(600), "waited {wait}");
    assert_eq!(log[1].status, AttemptStatus::Succeeded);
}

/// `webhook-delivery: abort-message` on a failure: this event is not tried again (the test
/// schedule would retry it within 50 ms), the endpoint stays enabled, and the next event goes.
async fn a_receiver_can_abort_an_events_retries(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    rig.receiver
        .script(&[Answer::Headers(503, vec![("webhook-delivery", "abort-message")])]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "the failed attempt", |r| r.receiver.seen().len() == 1)
        .await;
    rig.run_for(Duration::from_millis(500)).await;
    assert_eq!(rig.receiver.seen().len(), 1, "no retry");
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log.len(), 1);
    assert_eq!(
        (log[0].final_code, log[0].next_attempt_at),
        (Some(FinalCode::Aborted), None)
    );
    assert!(log[0].final_reason.as_deref().unwrap().contains("abort-message"));
    assert!(rig.stored_endpoint().await.enabled);
    rig.publish().await;
    rig.run_until(PATIENCE, "the next event", |r| r.receiver.seen().len() == 2)
        .await;
}

/// `webhook-delivery: disable` on a success: delivered and recorded (with the receiver's
/// `Server-Timing` and our time to its headers), then the endpoint is disabled, saying why.
async fn a_receiver_can_disable_its_endpoint_after_a_success(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    rig.receiver.script(&[Answer::Headers(
        200,
        vec![("webhook-delivery", "disable"), ("server-timing", "acp;dur=12.5")],
    )]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "the delivery", |r| r.receiver.seen().len() == 1)
        .await;
    rig.run_for(Duration::from_millis(300)).await;
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, AttemptStatus::Succeeded);
    assert_eq!(log[0].server_timing.as_deref(), Some("acp;dur=12.5"));
    assert!(
        log[0].answer_headers.contains("server-timing: acp;dur=12.5\n"),
        "the answer's headers, stored: {:?}",
        log[0]
    );
    assert!(
        log[0].headers_ms.is_some_and(|h| h <= log[0].latency_ms),
        "{:?}",
        log[0]
    );
    let endpoint = rig.stored_endpoint().await;
    assert!(!endpoint.enabled);
    assert!(endpoint.disabled_reason.unwrap().contains("webhook-delivery: disable"));
    rig.publish().await;
    rig.run_for(Duration::from_millis(500)).await;
    assert_eq!(rig.receiver.seen().len(), 1, "nothing goes to a disabled endpoint");
}

/// `webhook-delivery: disable` on a failure ends the event's retries too.
async fn a_failure_asking_to_disable_disables_without_retrying(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    rig.receiver.script(&[Answer::Headers(
        400,
        vec![("webhook-delivery", "abort-message, disable")],
    )]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "the failed attempt", |r| r.receiver.seen().len() == 1)
        .await;
    rig.run_for(Duration::from_millis(500)).await;
    assert_eq!(rig.receiver.seen().len(), 1, "no retry");
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log[0].final_code, Some(FinalCode::DisableRequested));
    assert!(!rig.stored_endpoint().await.enabled);
}

/// From a review: an answer to a request sent before the merchant changed the endpoint (here
/// an edit while the receiver takes 400 ms) must not disable it: the merchant's change wins.
async fn a_disable_answered_after_the_merchant_changed_the_endpoint_changes_nothing(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    rig.receiver.script(&[Answer::SlowHeaders(
        Duration::from_millis(400),
        200,
        vec![("webhook-delivery", "disable")],
    )]);
    rig.publish().await;
    let endpoints = rig.backend.endpoints.clone();
    let (merchant, id) = (rig.merchant.id.clone(), rig.endpoint.id.clone());
    let edit = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let mut stored = endpoints.endpoint(&merchant, &id).await.unwrap().unwrap();
        stored.description = Some("edited while the request was out".into());
        stored.updated_at = checkout::clock::now();
        endpoints.put_endpoint(&stored).await.unwrap();
    });
    rig.run_until(PATIENCE, "the delivery", |r| r.receiver.seen().len() == 1)
        .await;
    edit.await.unwrap();
    rig.run_for(Duration::from_millis(600)).await;
    let endpoint = rig.stored_endpoint().await;
    assert!(endpoint.enabled, "{:?}", endpoint.disabled_reason);
    assert_eq!(
        endpoint.description.as_deref(),
        Some("edited while the request was out")
    );
}

/// An order webhook is the merchant's to change: its receiver asking to be disabled ends that
/// event's retries, and the hook stays configured.
async fn an_order_webhook_asking_to_be_disabled_is_not_retried_and_stays(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let merchant = with_order_webhook(&rig).await;
    let e = checkout::testkit::completed_event(&merchant);
    // The order webhook alone gets the event: the receiver's script is one queue for all paths.
    rig.backend
        .endpoints
        .delete_endpoint(&merchant.id, &rig.endpoint.id)
        .await
        .unwrap();
    rig.receiver
        .script(&[Answer::Headers(503, vec![("webhook-delivery", "disable")])]);
    rig.publish_event(&e).await;
    rig.run_until(PATIENCE, "the order webhook", |r| {
        !r.receiver.seen_at("/orders").is_empty()
    })
    .await;
    rig.run_for(Duration::from_millis(500)).await;
    assert_eq!(rig.receiver.seen_at("/orders").len(), 1, "not retried");
    let own = LogTarget::OrderWebhook(merchant.id.clone()).name();
    let log = rig.attempts(&own, &e).await;
    assert_eq!(log.last().unwrap().final_code, Some(FinalCode::Aborted));
    assert!(
        log.last()
            .unwrap()
            .final_reason
            .as_deref()
            .unwrap()
            .contains("only its merchant")
    );
    let stored = rig.backend.merchants.merchant(&merchant.id).await.unwrap().unwrap();
    assert!(stored.order_webhook.is_some(), "still configured");
}

/// A test event that fails is not retried (nor dead-lettered), and says nothing of the
/// endpoint's health.
async fn a_test_event_is_tried_once_and_leaves_the_endpoints_health_alone(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    rig.receiver.script(&[Answer::Status(500)]);
    let event = checkout::delivery_task::test_event(&rig.merchant.id, "2026-04-17", checkout::clock::now());
    let raw = serde_json::value::to_raw_value(&event).unwrap();
    let task = checkout::delivery_task::TaskMessage::new(rig.endpoint.id.as_str(), 1, false, &raw);
    rig.queue.send(&task.to_body(), Duration::ZERO).await.unwrap();
    rig.run_until(PATIENCE, "the test", |r| r.receiver.seen().len() == 1)
        .await;
    rig.run_for(Duration::from_millis(500)).await;
    assert_eq!(rig.receiver.seen().len(), 1, "tried once");
    let id = checkout::ids::EventId::parse(event["id"].as_str().unwrap()).unwrap();
    let log = rig.log.attempts_of(rig.endpoint.id.as_str(), &id).await.unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].final_code, Some(FinalCode::TestNotRetried));
    assert!(!log[0].dead_lettered);
    assert_eq!(
        rig.stored_endpoint().await.failing_since,
        None,
        "a test is no sign of health"
    );
    assert!(
        rig.dead_letters
            .receive(10, Duration::from_millis(50))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn gone_disables_the_endpoint(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    rig.receiver.script(&[Answer::Status(410)]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "the 410", |r| r.receiver.seen().len() == 1)
        .await;
    rig.run_for(Duration::from_millis(300)).await;
    let endpoint = rig.stored_endpoint().await;
    assert!(!endpoint.enabled);
    assert!(endpoint.disabled_reason.unwrap().contains("410"));
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].next_attempt_at, None);
    assert_eq!(log[0].final_code, Some(FinalCode::Gone));
    assert!(
        log[0].final_reason.as_deref().unwrap().contains("410"),
        "and says so to people"
    );

    let later = rig.publish().await;
    rig.run_for(Duration::from_millis(500)).await;
    assert_eq!(rig.receiver.seen().len(), 1, "nothing goes to a disabled endpoint");
    let skipped = rig.attempts(rig.endpoint.id.as_str(), &later).await;
    assert_eq!(skipped.len(), 1, "but the log says it was skipped");
    assert_eq!(skipped[0].status, AttemptStatus::Skipped);
}

async fn redirects_are_failures_and_not_followed(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    rig.receiver.script(&[Answer::Redirect]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "the retry", |r| r.receiver.seen().len() == 2)
        .await;
    assert!(
        rig.receiver.seen_at("/elsewhere").is_empty(),
        "the redirect was not followed"
    );
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log[0].http_status, Some(302));
    assert_eq!(log[0].status, AttemptStatus::Failed);
    assert_eq!(log[1].status, AttemptStatus::Succeeded);
}

async fn a_slow_endpoint_within_the_timeout_is_delivered(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    rig.receiver.script(&[Answer::Slow(Duration::from_millis(300))]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "the delivery", |r| r.receiver.seen().len() == 1)
        .await;
    rig.run_for(Duration::from_millis(300)).await;
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, AttemptStatus::Succeeded);
    assert!(log[0].latency_ms >= 300, "latency {} ms", log[0].latency_ms);
}

async fn rate_limited_deliveries_are_deferred_without_spending_attempts(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let mut endpoint = rig.stored_endpoint().await;
    endpoint.rate_limit = Some(1);
    rig.backend.endpoints.put_endpoint(&endpoint).await.unwrap();
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(rig.publish().await);
    }
    rig.run_until(PATIENCE, "three deliveries", |r| r.receiver.seen().len() == 3)
        .await;
    let seen = rig.receiver.seen();
    assert!(
        seen.iter().all(|s| s.header("webhook-attempt") == "1"),
        "no attempt spent"
    );
    let mut times: Vec<_> = seen.iter().map(|s| s.at).collect();
    times.sort();
    assert!(
        times[2] - times[0] >= Duration::from_millis(1900),
        "one per second: {:?}",
        times[2] - times[0]
    );
    for e in &events {
        let log = rig.attempts(rig.endpoint.id.as_str(), e).await;
        let summary: Vec<_> = log.iter().map(|r| (r.attempt, r.status)).collect();
        assert_eq!(summary, vec![(1, AttemptStatus::Succeeded)]);
    }
}

async fn exhausted_goes_to_the_dead_letter_queue_and_redrive_delivers(kind: Kind) {
    let mut config = test_config();
    config.max_attempts = 3;
    let rig = Rig::new(kind, config).await;
    rig.receiver
        .script(&[Answer::Status(500), Answer::Status(503), Answer::Status(500)]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "three attempts", |r| r.receiver.seen().len() == 3)
        .await;
    rig.run_for(Duration::from_millis(500)).await;
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log.len(), 3);
    assert!(log[2].dead_lettered);
    assert_eq!(log[2].next_attempt_at, None);
    assert_eq!(log[2].final_code, Some(FinalCode::Exhausted));
    assert_eq!(log[2].final_reason.as_deref(), Some("exhausted after 3 attempts"));

    let letters = dispatcher::dead_letters::list(rig.dead_letters.as_ref(), 10)
        .await
        .unwrap();
    assert_eq!(letters.len(), 1);
    let letter: &DeadLetter = &letters[0];
    assert_eq!(letter.attempts, 3);
    assert_eq!(letter.code, Some(FinalCode::Exhausted));
    assert_eq!(letter.event_id.as_ref(), Some(&e.id));
    assert_eq!(letter.target.as_deref(), Some(rig.endpoint.id.as_str()));

    let moved = dispatcher::dead_letters::redrive(rig.dead_letters.as_ref(), rig.queue.as_ref(), 10)
        .await
        .unwrap();
    assert_eq!(moved, 1);
    rig.run_until(PATIENCE, "the redriven delivery", |r| r.receiver.seen().len() == 4)
        .await;
    let fourth = &rig.receiver.seen()[3];
    assert_eq!(fourth.header("webhook-id"), e.id.as_str());
    assert_eq!(fourth.header("webhook-attempt"), "4");
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log.len(), 4);
    assert_eq!(log[3].status, AttemptStatus::Succeeded);
    assert!(log[3].replay);
    assert!(
        dispatcher::dead_letters::list(rig.dead_letters.as_ref(), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

async fn a_crash_before_the_acknowledgement_redelivers_with_the_same_id(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let e = rig.publish().await;
    // The POST goes out, then the process dies before anything is written or acknowledged.
    rig.log.fail_records.store(1, Ordering::SeqCst);
    let dispositions = rig.handle_without_settling().await;
    assert!(
        matches!(dispositions[..], [Disposition::RetryIn(_)]),
        "{dispositions:?}"
    );
    assert_eq!(rig.receiver.seen().len(), 1);
    // (Nothing settled: the message comes back after its visibility timeout.)
    rig.run_until(PATIENCE, "the redelivery", |r| r.receiver.seen().len() == 2)
        .await;
    let seen = rig.receiver.seen();
    assert_eq!(seen[0].header("webhook-id"), seen[1].header("webhook-id"));
    assert_eq!(seen[1].header("webhook-id"), e.id.as_str());
    assert_eq!(seen[0].body, seen[1].body);
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].status, AttemptStatus::Succeeded);

    // A crash after the attempt is recorded: the message comes back, nothing is sent again.
    let again = rig.publish().await;
    assert_eq!(rig.handle_without_settling().await, vec![Disposition::Done]);
    rig.run_for(crate::common::VISIBILITY + Duration::from_secs(1)).await;
    let for_again = rig
        .receiver
        .seen()
        .iter()
        .filter(|s| s.header("webhook-id") == again.id.as_str())
        .count();
    assert_eq!(for_again, 1, "a recorded delivery is not repeated");
}

async fn a_rotation_window_signs_with_both_secrets(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let mut endpoint = rig.stored_endpoint().await;
    let old = endpoint.current_secret().unwrap().to_owned();
    endpoint
        .rotate(checkout::clock::now(), chrono::Duration::hours(1))
        .unwrap();
    let new = endpoint.current_secret().unwrap().to_owned();
    rig.backend.endpoints.put_endpoint(&endpoint).await.unwrap();
    rig.publish().await;
    rig.run_until(PATIENCE, "the delivery", |r| r.receiver.seen().len() == 1)
        .await;
    let seen = &rig.receiver.seen()[0];
    assert_eq!(seen.header("webhook-signature").split(' ').count(), 2);
    assert!(seen.verifies_with(&old), "receivers still on the old secret verify");
    assert!(seen.verifies_with(&new), "receivers on the new secret verify");
}

async fn each_endpoint_is_retried_on_its_own(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let second = checkout::webhook_endpoint::WebhookEndpoint::new(
        rig.merchant.id.clone(),
        format!("{}/second", rig.base_url),
        checkout::clock::now(),
    )
    .unwrap();
    rig.backend.endpoints.put_endpoint(&second).await.unwrap();
    rig.receiver.script(&[Answer::Status(500)]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "both endpoints delivered", |r| r.receiver.seen().len() == 3)
        .await;
    rig.run_for(Duration::from_millis(500)).await;
    let delivered = |path: &str| {
        rig.receiver
            .seen_at(path)
            .iter()
            .filter(|s| s.header("webhook-id") == e.id.as_str())
            .count()
    };
    // Whichever endpoint got the 500 was tried again; the other got the event exactly once.
    assert_eq!(delivered("/hook") + delivered("/second"), 3);
    assert!(delivered("/hook") >= 1 && delivered("/second") >= 1);
    let first_log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    let second_log = rig.attempts(second.id.as_str(), &e).await;
    assert_eq!(first_log.len() + second_log.len(), 3);
    assert!(first_log.last().unwrap().delivered() && second_log.last().unwrap().delivered());
}

/// Gives the rig's merchant an order webhook at the receiver's `/orders`; the merchant as stored.
async fn with_order_webhook(rig: &Rig) -> checkout::merchant::Merchant {
    let mut merchant = rig.backend.merchants.merchant(&rig.merchant.id).await.unwrap().unwrap();
    merchant.order_webhook = Some(checkout::merchant::OrderWebhook {
        url: format!("{}/orders", rig.base_url),
        secret: "whsec_test_secret".into(),
        previous_secrets: Vec::new(),
    });
    rig.backend.merchants.put_merchant(&merchant).await.unwrap();
    merchant
}

async fn completed_checkouts_reach_the_order_webhook(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let merchant = with_order_webhook(&rig).await;
    let e = checkout::testkit::completed_event(&merchant);
    rig.publish_event(&e).await;
    rig.run_until(PATIENCE, "the order webhook", |r| {
        !r.receiver.seen_at("/orders").is_empty()
    })
    .await;
    let seen = &rig.receiver.seen_at("/orders")[0];
    let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(body["type"], "order_create");
    assert_eq!(body["data"]["type"], "order");
    assert_eq!(body["data"]["checkout_session_id"], e.session_id.as_str());
    let verdict = checkout::signature::verify_merchant_signature(
        b"whsec_test_secret",
        &seen.header("merchant-signature"),
        &seen.body,
        checkout::clock::now().timestamp(),
    );
    assert_eq!(verdict, Ok(()));
    // Logged in the merchant's own partition, not one shared by every merchant.
    let own = LogTarget::OrderWebhook(merchant.id.clone()).name();
    assert_eq!(rig.attempts(&own, &e).await.len(), 1);
    assert!(rig.attempts(&LogTarget::LegacyOrderWebhook.name(), &e).await.is_empty());
}

/// A delivery to the order webhook begun under its former, shared name goes on under it: a
/// retry of one already delivered there is not sent again. A task naming another merchant's
/// order webhook sends nothing to this merchant's.
async fn order_webhook_tasks_keep_the_name_their_delivery_began_under(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let merchant = with_order_webhook(&rig).await;
    let task = |target: &str, e: &checkout::event::Event| {
        let raw = serde_json::value::RawValue::from_string(serde_json::to_string(e).unwrap()).unwrap();
        checkout::delivery_task::TaskMessage::new(target, 2, false, &raw).to_body()
    };
    let legacy = LogTarget::LegacyOrderWebhook.name();
    let delivered = checkout::testkit::completed_event(&merchant);
    let mut record = checkout::testkit::attempt_record(&legacy, &delivered, 1);
    record.status = checkout::attempt_log::AttemptStatus::Succeeded;
    record.http_status = Some(200);
    record.next_attempt_at = None;
    // As a first attempt is stored (together with its batch's), as the former build did.
    rig.backend.deliveries.record_first_attempts(&[record]).await.unwrap();
    let pending = checkout::testkit::completed_event(&merchant);
    let elsewhere = LogTarget::OrderWebhook(checkout::ids::MerchantId::generate()).name();
    for body in [
        task(&legacy, &delivered),
        task(&elsewhere, &pending),
        task(&legacy, &pending),
    ] {
        rig.queue.send(&body, Duration::ZERO).await.unwrap();
    }
    // A copy of the delivered event itself, fresh from the topic: its delivery began under the
    // former name, so it is not begun again under the merchant's own.
    rig.publish_event(&delivered).await;
    rig.run_until(PATIENCE, "the pending order webhook", |r| {
        !r.receiver.seen_at("/orders").is_empty()
    })
    .await;
    rig.run_for(Duration::from_millis(300)).await;
    let seen = rig.receiver.seen_at("/orders");
    assert_eq!(seen.len(), 1, "only the pending one is sent, once");
    let body: serde_json::Value = serde_json::from_slice(&seen[0].body).unwrap();
    assert_eq!(body["data"]["checkout_session_id"], pending.session_id.as_str());
    let logged = rig.attempts(&legacy, &pending).await;
    assert_eq!(logged.len(), 1, "logged under the name its delivery began under");
    assert!(logged[0].delivered());
}

/// A copy of the event's message on its second receive (as after a crash before its
/// acknowledgement).
fn received_again(e: &checkout::event::Event) -> dispatcher::Incoming {
    dispatcher::Incoming {
        message_id: "copy".to_owned(),
        body: serde_json::to_string(e).unwrap(),
        receive_count: 2,
        lane: dispatcher::Lane::Main,
    }
}

/// An event copy received again whose order-webhook delivery began under the former shared name
/// (its first attempt failed there, before an upgrade) goes on under that name: its second
/// attempt is made and logged there, not a first attempt under the merchant's own name.
async fn a_copy_received_again_goes_on_under_the_former_name(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let merchant = with_order_webhook(&rig).await;
    let legacy = LogTarget::LegacyOrderWebhook.name();
    let completed = checkout::testkit::completed_event(&merchant);
    let mut failed = checkout::testkit::attempt_record(&legacy, &completed, 1);
    failed.http_status = Some(500);
    failed.next_attempt_at = Some(checkout::clock::now() - chrono::Duration::seconds(1));
    rig.backend.deliveries.record_first_attempts(&[failed]).await.unwrap();
    let again = received_again(&completed);
    assert_eq!(rig.dispatcher.handle(&[again]).await, vec![Disposition::Done]);
    assert_eq!(rig.receiver.seen_at("/orders").len(), 1);
    let logged = rig.attempts(&legacy, &completed).await;
    assert_eq!(logged.len(), 2, "{logged:?}");
    assert_eq!((logged[1].attempt, logged[1].delivered()), (2, true));
    let own = LogTarget::OrderWebhook(merchant.id.clone()).name();
    assert!(
        rig.attempts(&own, &completed).await.is_empty(),
        "nothing begun under the new name"
    );
}

/// Where no attempt is logged under the order webhook's former shared name (a deployment that
/// never ran an earlier version, or once those records expired), a completed checkout's order
/// webhook — a first receive and a copy received again — is delivered without reading that
/// partition: every merchant's deliveries would otherwise read the same hot partition forever.
async fn order_webhooks_skip_the_former_name_once_it_holds_nothing(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    let merchant = with_order_webhook(&rig).await;
    let completed = checkout::testkit::completed_event(&merchant);
    rig.publish_event(&completed).await;
    rig.run_until(PATIENCE, "the order webhook", |r| {
        !r.receiver.seen_at("/orders").is_empty()
    })
    .await;
    // A copy received again (as after a crash before its acknowledgement) reads the log.
    let again = received_again(&completed);
    assert_eq!(rig.dispatcher.handle(&[again]).await, vec![Disposition::Done]);
    assert!(
        rig.log.latest_calls.load(std::sync::atomic::Ordering::SeqCst) > 0,
        "it read the log"
    );
    assert_eq!(rig.receiver.seen_at("/orders").len(), 1);
    assert_eq!(rig.log.legacy_reads.load(std::sync::atomic::Ordering::SeqCst), 0);
}

on_every_backend!(
    order_webhooks_skip_the_former_name_once_it_holds_nothing,
    a_copy_received_again_goes_on_under_the_former_name,
    success,
    server_error_then_success,
    too_many_requests_honours_retry_after,
    a_retry_comes_due_by_the_dispatchers_clock,
    timeout_waits_at_least_a_minute,
    gone_disables_the_endpoint,
    a_receiver_can_abort_an_events_retries,
    a_receiver_can_disable_its_endpoint_after_a_success,
    a_failure_asking_to_disable_disables_without_retrying,
    a_disable_answered_after_the_merchant_changed_the_endpoint_changes_nothing,
    an_order_webhook_asking_to_be_disabled_is_not_retried_and_stays,
    a_test_event_is_tried_once_and_leaves_the_endpoints_health_alone,
    redirects_are_failures_and_not_followed,
    a_slow_endpoint_within_the_timeout_is_delivered,
    rate_limited_deliveries_are_deferred_without_spending_attempts,
    exhausted_goes_to_the_dead_letter_queue_and_redrive_delivers,
    a_crash_before_the_acknowledgement_redelivers_with_the_same_id,
    a_rotation_window_signs_with_both_secrets,
    each_endpoint_is_retried_on_its_own,
    completed_checkouts_reach_the_order_webhook,
    order_webhook_tasks_keep_the_name_their_delivery_began_under,
);

async fn an_endpoint_failing_without_success_is_disabled(kind: Kind) {
    let mut config = test_config();
    // Disable on the first failure after the endpoint started failing (5 days in production).
    config.disable_after = chrono::Duration::zero();
    let rig = Rig::new(kind, config).await;
    rig.receiver.script(&[Answer::Status(500), Answer::Status(500)]);
    let e = rig.publish().await;
    rig.run_until(PATIENCE, "two failures", |r| r.receiver.seen().len() == 2)
        .await;
    rig.run_for(Duration::from_millis(500)).await;
    assert_eq!(
        rig.receiver.seen().len(),
        2,
        "no attempt after the endpoint was disabled"
    );
    let endpoint = rig.stored_endpoint().await;
    assert!(!endpoint.enabled);
    assert!(endpoint.disabled_reason.unwrap().contains("failing without a success"));
    let log = rig.attempts(rig.endpoint.id.as_str(), &e).await;
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].next_attempt_at, None);
    assert_eq!(log[1].final_code, Some(FinalCode::DisabledAfterFailures));
}

async fn a_success_clears_the_failing_streak(kind: Kind) {
    let rig = Rig::new(kind, test_config()).await;
    // 1 s until the retry: time to look at the endpoint in between.
    rig.receiver.script(&[Answer::RetryAfter(500, 1)]);
    rig.publish().await;
    rig.run_until(PATIENCE, "the first failure", |r| r.receiver.seen().len() == 1)
        .await;
    assert!(rig.stored_endpoint().await.failing_since.is_some());
    rig.run_until(PATIENCE, "the retry", |r| r.receiver.seen().len() == 2)
        .await;
    rig.run_for(Duration::from_millis(200)).await;
    let endpoint = rig.stored_endpoint().await;
    assert_eq!(endpoint.failing_since, None);
    assert!(endpoint.enabled);
}

mod health {
    use super::*;
    on_every_backend!(
        an_endpoint_failing_without_success_is_disabled,
        a_success_clears_the_failing_streak
    );
}

/// The Lambda adapter on SQS (moto), with receipts SQS gave: a delivered item is not reported;
/// one whose attempt could not be recorded is reported, and its visibility set to the short
/// transient retry (it comes back after 5 s, not after the queue's own 2 s timeout, and not
/// later); the batch's counts are taken for its metrics line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lambda_handler_reports_only_what_must_come_back() {
    let rig = Rig::new(Kind::Moto, test_config()).await;
    rig.receiver
        .script(&[Answer::Status(200), Answer::Status(200), Answer::Status(500)]);
    let queues = Queues {
        main: rig.queue.as_ref(),
        slow: Some(SlowLane {
            queue: rig.slow_queue.as_ref(),
            name: "slow-deliveries",
        }),
    };
    // Each event goes through the queue, so its record carries a receipt SQS knows.
    let received = |e: checkout::event::Event| {
        let queue = rig.queue.clone();
        async move {
            queue
                .send(&serde_json::to_string(&e).unwrap(), Duration::ZERO)
                .await
                .unwrap();
            let message = queue.receive(1, Duration::from_secs(5)).await.unwrap().remove(0);
            let batch: aws_lambda_events::event::sqs::SqsEvent = serde_json::from_value(serde_json::json!({
                "Records": [{
                    "messageId": message.message_id,
                    "receiptHandle": message.receipt,
                    "body": message.body,
                    "attributes": { "ApproximateReceiveCount": message.receive_count.to_string() },
                    "messageAttributes": {},
                    "eventSourceARN": "arn:aws:sqs:us-east-1:000000000000:order-updates",
                }]
            }))
            .unwrap();
            (message.message_id, message.receipt, batch)
        }
    };
    let (_, receipt, first) = received(checkout::testkit::event(&rig.merchant, None, 1)).await;
    let response = dispatcher::lambda::handle(&rig.dispatcher, &queues, first).await;
    assert!(response.batch_item_failures.is_empty());
    // What Lambda does with an item not reported.
    rig.queue.delete(&receipt).await.unwrap();

    // Storage down while recording: the item must come back, so it is reported.
    rig.log.fail_records.store(1, Ordering::SeqCst);
    let (second_id, _, second) = received(checkout::testkit::event(&rig.merchant, None, 1)).await;
    let reported_at = std::time::Instant::now();
    let response = dispatcher::lambda::handle(&rig.dispatcher, &queues, second).await;
    let reported: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(reported, vec![second_id.as_str()]);
    // Its visibility was set to the transient retry: past the queue's own 2 s, it is still away.
    while reported_at.elapsed() < Duration::from_millis(3_500) {
        let early = rig.queue.receive(1, Duration::from_millis(500)).await.unwrap();
        assert!(early.is_empty(), "back after {:?}", reported_at.elapsed());
    }
    let mut back = Vec::new();
    while back.is_empty() && reported_at.elapsed() < Duration::from_secs(30) {
        back = rig.queue.receive(1, Duration::from_secs(2)).await.unwrap();
    }
    assert_eq!(back.len(), 1, "the reported item comes back");
    assert_eq!(back[0].message_id, second_id);

    let (_, _, third) = received(checkout::testkit::event(&rig.merchant, None, 1)).await;
    let response = dispatcher::lambda::handle(&rig.dispatcher, &queues, third).await;
    // The attempt failed, and its retry went on as a task of its own: the event itself is done.
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(rig.receiver.seen().len(), 3);
    assert!(
        rig.dispatcher.take_metrics().is_empty(),
        "each batch's counts were taken"
    );
    // SQS delays in whole seconds: the retry's short wait is at least one.
    let mut queued = Vec::new();
    let asked = std::time::Instant::now();
    while queued.is_empty() && asked.elapsed() < Duration::from_secs(15) {
        queued = rig.slow_queue.receive(10, Duration::from_secs(2)).await.unwrap();
    }
    assert_eq!(queued.len(), 1, "the retry task, on the slow lane");
    assert!(queued[0].body.contains(rig.endpoint.id.as_str()));
}
