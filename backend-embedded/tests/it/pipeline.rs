//! The topic and queue contract suite on the in-process topic and queues.

use checkout::testkit::{MAX_RECEIVES, Pipeline, VISIBILITY};
use embedded_backend::{EmbeddedQueue, EmbeddedTopic, QueueConfig};
use std::sync::Arc;

async fn fresh() -> Pipeline {
    let config = QueueConfig {
        visibility_timeout: VISIBILITY,
        max_receive_count: MAX_RECEIVES,
    };
    let dead_letters = Arc::new(EmbeddedQueue::new(config, None));
    let queue = Arc::new(EmbeddedQueue::new(config, Some(dead_letters.clone())));
    Pipeline {
        publisher: Arc::new(EmbeddedTopic::new(vec![queue.clone()])),
        queue,
        dead_letters,
    }
}

checkout::pipeline_contract_tests!(fresh());

/// A message sent wakes a receiver waiting for one (one, not all of them: the others would only
/// find the queue empty again), and no message is left waiting for a receiver that was not
/// woken: four receivers waiting a minute each on an empty queue, four messages sent one after
/// another, every message is received before the minute is out. The clock is paused, so a
/// message nobody was woken for would come out only at the minute, when its receiver's wait
/// ends.
#[tokio::test(start_paused = true)]
async fn every_message_sent_to_waiting_receivers_is_received_at_once() {
    use checkout::ports::DeliveryQueue;
    use std::time::Duration;
    use tokio::time::Instant;
    const WAIT: Duration = Duration::from_secs(60);
    let queue = Arc::new(EmbeddedQueue::new(
        QueueConfig {
            visibility_timeout: VISIBILITY,
            max_receive_count: MAX_RECEIVES,
        },
        None,
    ));
    let receivers: Vec<_> = (0..4)
        .map(|_| {
            let queue = queue.clone();
            tokio::spawn(async move {
                let start = Instant::now();
                let got = queue.receive(10, WAIT).await.unwrap();
                (got.len(), start.elapsed())
            })
        })
        .collect();
    // Every receiver is waiting before the first message.
    tokio::task::yield_now().await;
    for i in 0..4 {
        queue.send(&format!("message {i}"), Duration::ZERO).await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut received = 0;
    for receiver in receivers {
        let (got, waited) = receiver.await.unwrap();
        if got > 0 {
            assert!(waited < WAIT, "{got} message(s) came out only when the wait ended");
        }
        received += got;
    }
    assert_eq!(received, 4);
}

/// A message sent with a delay is received when it becomes visible, even when the receiver
/// woken for it stops waiting before then: one receiver waits two seconds, another twenty, and
/// a message sent with a three-second delay comes out at three seconds, not at twenty (the
/// clock is paused).
#[tokio::test(start_paused = true)]
async fn a_delayed_message_is_received_when_it_becomes_visible() {
    use checkout::ports::DeliveryQueue;
    use std::time::Duration;
    use tokio::time::Instant;
    let queue = Arc::new(EmbeddedQueue::new(
        QueueConfig {
            visibility_timeout: VISIBILITY,
            max_receive_count: MAX_RECEIVES,
        },
        None,
    ));
    let start = Instant::now();
    let receiver = |wait: u64| {
        let queue = queue.clone();
        tokio::spawn(async move { queue.receive(10, Duration::from_secs(wait)).await.unwrap().len() })
    };
    // The first to wait is the first woken.
    let short = receiver(2);
    tokio::task::yield_now().await;
    let long = receiver(20);
    tokio::task::yield_now().await;
    queue.send("later", Duration::from_secs(3)).await.unwrap();
    assert_eq!(short.await.unwrap(), 0, "not visible within two seconds");
    assert_eq!(long.await.unwrap(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "received at {:?}, when the wait ended",
        start.elapsed()
    );
}
