//! Contract suite for the topic and queue ports: what the projector and the dispatcher rely on.

use super::{event, merchant};
use crate::event::Event;
use crate::ports::{DeliveryQueue, Publisher, QueuedMessage};
use std::sync::Arc;
use std::time::Duration;

/// A topic subscribed to a queue with a dead-letter queue: visibility timeout 1 s, redrive
/// after 2 receives.
pub struct Pipeline {
    pub publisher: Arc<dyn Publisher>,
    pub queue: Arc<dyn DeliveryQueue>,
    pub dead_letters: Arc<dyn DeliveryQueue>,
}

pub const VISIBILITY: Duration = Duration::from_secs(1);
pub const MAX_RECEIVES: u32 = 2;

async fn receive_one(queue: &dyn DeliveryQueue, wait: Duration) -> Option<QueuedMessage> {
    let mut got = queue.receive(1, wait).await.unwrap();
    assert!(got.len() <= 1);
    got.pop()
}

pub async fn published_events_arrive_once_each_with_attributes(p: &Pipeline) {
    let m = merchant();
    let events: Vec<Event> = (1..=3).map(|_| event(&m, None, 1)).collect();
    let refs: Vec<&Event> = events.iter().collect();
    let results = p.publisher.publish(&refs).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let mut received = Vec::new();
    while received.len() < 3 {
        let batch = p.queue.receive(10, Duration::from_secs(2)).await.unwrap();
        assert!(!batch.is_empty(), "only {} of 3 messages arrived", received.len());
        received.extend(batch);
    }
    for message in &received {
        let body: Event = serde_json::from_str(&message.body).expect("raw delivery: the body is the event");
        let attribute = |name: &str| {
            message
                .attributes
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(attribute("merchant_id").as_deref(), Some(m.id.as_str()));
        assert_eq!(attribute("event_type").as_deref(), Some(body.kind.as_str()));
        assert!(events.iter().any(|e| e.id == body.id));
        p.queue.delete(&message.receipt).await.unwrap();
    }
    assert!(
        p.queue
            .receive(10, Duration::from_millis(1200))
            .await
            .unwrap()
            .is_empty()
    );
}

/// An event padded to about `bytes` of JSON.
fn event_of_size(m: &crate::merchant::Merchant, bytes: usize) -> Event {
    let mut e = event(m, None, 1);
    let base = e.encoded_len();
    let mut metadata = serde_json::Map::new();
    metadata.insert("pad".to_owned(), "x".repeat(bytes.saturating_sub(base + 20)).into());
    e.data.metadata = Some(metadata);
    e
}

/// Ten events of the largest size the API accepts go out (SNS batches hold 256 KiB in all, so
/// they cannot share one); an event over 256 KiB is refused on its own and the others still go;
/// a queue refuses a message over 256 KiB.
pub async fn the_largest_events_are_published_and_a_larger_one_is_refused_alone(p: &Pipeline) {
    let m = merchant();
    let mut events: Vec<Event> = (0..10)
        .map(|_| event_of_size(&m, crate::event::MAX_EVENT_BYTES))
        .collect();
    events.insert(4, event_of_size(&m, crate::ports::MAX_MESSAGE_BYTES + 1));
    let refs: Vec<&Event> = events.iter().collect();
    let results = p.publisher.publish(&refs).await;
    for (i, result) in results.iter().enumerate() {
        assert_eq!(result.is_ok(), i != 4, "event {i}: {result:?}");
    }
    let mut arrived = std::collections::HashSet::new();
    while arrived.len() < 10 {
        let batch = p.queue.receive(10, Duration::from_secs(2)).await.unwrap();
        assert!(!batch.is_empty(), "only {} of 10 arrived", arrived.len());
        for message in batch {
            let body: Event = serde_json::from_str(&message.body).unwrap();
            arrived.insert(body.id);
            p.queue.delete(&message.receipt).await.unwrap();
        }
    }
    assert!(!arrived.contains(&events[4].id));
    let too_big = "x".repeat(crate::ports::MAX_MESSAGE_BYTES + 1);
    assert!(p.queue.send(&too_big, Duration::ZERO).await.is_err());
}

pub async fn unacknowledged_message_comes_back_after_its_visibility_timeout(p: &Pipeline) {
    p.queue.send("hello", Duration::ZERO).await.unwrap();
    let first = receive_one(p.queue.as_ref(), Duration::from_secs(2))
        .await
        .expect("message");
    assert_eq!((first.body.as_str(), first.receive_count), ("hello", 1));
    assert!(
        receive_one(p.queue.as_ref(), Duration::ZERO).await.is_none(),
        "invisible while held"
    );
    let again = receive_one(p.queue.as_ref(), VISIBILITY * 3)
        .await
        .expect("redelivered");
    assert_eq!(
        (again.message_id.as_str(), again.receive_count),
        (first.message_id.as_str(), 2)
    );
    p.queue.delete(&again.receipt).await.unwrap();
}

pub async fn visibility_can_be_shortened_and_extended(p: &Pipeline) {
    p.queue.send("later", Duration::ZERO).await.unwrap();
    let held = receive_one(p.queue.as_ref(), Duration::from_secs(2))
        .await
        .expect("message");
    p.queue.set_visibility(&held.receipt, Duration::ZERO).await.unwrap();
    let back = receive_one(p.queue.as_ref(), Duration::from_secs(2))
        .await
        .expect("visible at once");
    p.queue
        .set_visibility(&back.receipt, Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        receive_one(p.queue.as_ref(), VISIBILITY * 2).await.is_none(),
        "extended past its default timeout"
    );
}

pub async fn delayed_message_waits(p: &Pipeline) {
    p.queue.send("delayed", Duration::from_secs(1)).await.unwrap();
    assert!(receive_one(p.queue.as_ref(), Duration::ZERO).await.is_none());
    let message = receive_one(p.queue.as_ref(), Duration::from_secs(4))
        .await
        .expect("after the delay");
    assert_eq!(message.body, "delayed");
}

pub async fn too_many_receives_move_a_message_to_the_dead_letter_queue(p: &Pipeline) {
    p.queue.send("poison", Duration::ZERO).await.unwrap();
    for n in 1..=MAX_RECEIVES {
        let message = receive_one(p.queue.as_ref(), VISIBILITY * 3).await.expect("received");
        assert_eq!(message.receive_count, n);
        p.queue.set_visibility(&message.receipt, Duration::ZERO).await.unwrap();
    }
    assert!(
        receive_one(p.queue.as_ref(), VISIBILITY).await.is_none(),
        "redriven, not redelivered"
    );
    let dead = receive_one(p.dead_letters.as_ref(), Duration::from_secs(2))
        .await
        .expect("in the DLQ");
    assert_eq!(dead.body, "poison");
}

/// Expands to one `#[tokio::test]` per pipeline contract case, each on a fresh pipeline.
#[macro_export]
macro_rules! pipeline_contract_tests {
    ($factory:expr) => {
        $crate::backend_contract_tests!(@cases $factory;
            published_events_arrive_once_each_with_attributes,
            the_largest_events_are_published_and_a_larger_one_is_refused_alone,
            unacknowledged_message_comes_back_after_its_visibility_timeout,
            visibility_can_be_shortened_and_extended,
            delayed_message_waits,
            too_many_receives_move_a_message_to_the_dead_letter_queue,
        );
    };
}
