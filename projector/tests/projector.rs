//! The projector on both backends: embedded (the in-process feed) and AWS (a real DynamoDB
//! stream, read from moto, published through SNS to SQS).

use aws_backend::{DynamoStore, SnsPublisher, SqsQueue, StreamReader};
use checkout::event::{Event, StreamRecord};
use checkout::ports::{Backend, DeliveryQueue};
use checkout::testkit::{event, merchant};
use embedded_backend::{EmbeddedQueue, EmbeddedStore, EmbeddedTopic, QueueConfig};
use projector::Projector;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

enum Source {
    Feed(mpsc::UnboundedReceiver<Event>),
    Stream(StreamReader, aws_backend::DynamoClient, String),
}

struct Harness {
    backend: Backend,
    projector: Projector,
    queue: Arc<dyn DeliveryQueue>,
    source: Source,
}

impl Harness {
    async fn embedded() -> Self {
        let (store, feed) = EmbeddedStore::with_feed();
        let backend = Backend::from_one(Arc::new(store));
        let config = QueueConfig {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: 5,
        };
        let queue = Arc::new(EmbeddedQueue::new(config, None));
        let topic = Arc::new(EmbeddedTopic::new(vec![queue.clone()]));
        Self {
            projector: Projector::new(topic),
            backend,
            queue,
            source: Source::Feed(feed),
        }
    }

    async fn aws() -> Self {
        let (client, tables) = aws_backend::testkit::fresh_tables().await;
        let (_, resources) = aws_backend::testkit::fresh_pipeline().await;
        let sdk = aws_backend::local_sdk_config(&aws_backend::testkit::endpoint());
        let reader = StreamReader::open(
            &client,
            aws_backend::StreamsClient::new(&sdk),
            &tables.sessions,
            &tables.stream_positions,
        )
        .await
        .unwrap();
        let sessions = tables.sessions.clone();
        let backend = Backend::from_one(Arc::new(DynamoStore::new(client.clone(), tables)));
        let publisher = Arc::new(SnsPublisher::new(
            aws_backend::SnsClient::new(&sdk),
            resources.topic_arn,
        ));
        Self {
            projector: Projector::new(publisher),
            backend,
            queue: Arc::new(SqsQueue::new(aws_backend::SqsClient::new(&sdk), resources.queue_url)),
            source: Source::Stream(reader, client, sessions),
        }
    }

    /// Appends versions 1..=n of a new session.
    async fn append_session(&self, n: u64) -> Vec<Event> {
        let m = merchant();
        let first = event(&m, None, 1);
        let mut events = vec![first.clone()];
        for version in 2..=n {
            events.push(event(&m, Some(&first.session_id), version));
        }
        for e in &events {
            self.backend.events.append(e, None).await.unwrap();
        }
        events
    }

    /// A record that cannot be read, at the next position of the stream.
    async fn poison(&mut self) -> Option<StreamRecord> {
        match &self.source {
            Source::Feed(_) => Some(StreamRecord::from_json("poison#1".to_owned(), Some("{not json"))),
            Source::Stream(_, client, table) => {
                client
                    .put_item()
                    .table_name(table)
                    .item(
                        "session_id",
                        aws_sdk_dynamodb::types::AttributeValue::S("cs_poison".into()),
                    )
                    .item("version", aws_sdk_dynamodb::types::AttributeValue::N("1".into()))
                    .item("event", aws_sdk_dynamodb::types::AttributeValue::S("{not json".into()))
                    .send()
                    .await
                    .unwrap();
                None
            }
        }
    }

    /// The next `n` stream records, waiting for them.
    async fn take(&mut self, n: usize) -> Vec<StreamRecord> {
        let mut records = Vec::new();
        for _ in 0..100 {
            match &mut self.source {
                Source::Feed(feed) => {
                    while records.len() < n {
                        let e = feed.recv().await.unwrap();
                        records.push(StreamRecord {
                            sequence: format!("{}#{}", e.session_id, e.version),
                            event: Ok(e),
                        });
                    }
                }
                Source::Stream(reader, ..) => records.extend(reader.poll().await.unwrap()),
            }
            if records.len() >= n {
                assert_eq!(records.len(), n, "no more records than written");
                return records;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("only {} of {n} stream records arrived", records.len());
    }

    async fn drain(&self) -> Vec<Event> {
        let mut events = Vec::new();
        loop {
            let batch = self.queue.receive(10, Duration::from_millis(500)).await.unwrap();
            if batch.is_empty() {
                return events;
            }
            for message in batch {
                events.push(serde_json::from_str(&message.body).unwrap());
                self.queue.delete(&message.receipt).await.unwrap();
            }
        }
    }
}

macro_rules! on_every_backend {
    ($($case:ident),+ $(,)?) => {
        $(
            mod $case {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    super::$case(super::Harness::embedded().await).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn dynamodb() {
                    super::$case(super::Harness::aws().await).await;
                }
            }
        )+
    };
}

on_every_backend!(
    every_event_is_published_once_in_order,
    records_out_of_order_or_twice_are_each_published,
    a_poison_record_is_reported_and_stops_the_batch,
);

async fn every_event_is_published_once_in_order(mut h: Harness) {
    let events = h.append_session(3).await;
    let records = h.take(3).await;
    let projection = h.projector.project(&records).await;
    assert_eq!(projection.published, 3);
    assert_eq!(projection.retry_from, None);
    let delivered = h.drain().await;
    assert_eq!(
        delivered, events,
        "one message per event, in order, each the stored envelope"
    );
}

/// A source that redelivers (a retried batch) or hands records over late: each record is
/// published as it comes; the dispatcher's duplicate check is what keeps a webhook single.
async fn records_out_of_order_or_twice_are_each_published(mut h: Harness) {
    let events = h.append_session(2).await;
    let records = h.take(2).await;
    let late: Vec<StreamRecord> = records.iter().rev().cloned().collect();
    for batch in [late, records] {
        let projection = h.projector.project(&batch).await;
        assert_eq!((projection.published, projection.retry_from), (2, None));
    }
    let mut delivered = h.drain().await;
    delivered.sort_by_key(|e| e.version);
    let expected = vec![
        events[0].clone(),
        events[0].clone(),
        events[1].clone(),
        events[1].clone(),
    ];
    assert_eq!(delivered, expected);
}

async fn a_poison_record_is_reported_and_stops_the_batch(mut h: Harness) {
    let first = h.append_session(1).await;
    let mut records = h.take(1).await;
    let synthetic = h.poison().await;
    match synthetic {
        Some(poison) => records.push(poison),
        None => records.extend(h.take(1).await),
    }
    let after = h.append_session(1).await;
    records.extend(h.take(1).await);
    assert!(records[1].event.is_err(), "the middle record is unreadable");

    let projection = h.projector.project(&records).await;
    assert_eq!(projection.retry_from.as_deref(), Some(records[1].sequence.as_str()));
    assert_eq!(projection.published, 1, "records after the poison wait for the retry");
    assert_eq!(h.drain().await, first);
    assert!(!h.drain().await.contains(&after[0]));
}

/// A reader that restarts goes on after the last checkpoint instead of reading the stream from
/// its start again (which re-published every event at each start of `acp-local --backend aws`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_stream_reader_goes_on_from_its_checkpoint() {
    let (client, tables) = aws_backend::testkit::fresh_tables().await;
    let sdk = aws_backend::local_sdk_config(&aws_backend::testkit::endpoint());
    let open = || {
        StreamReader::open(
            &client,
            aws_backend::StreamsClient::new(&sdk),
            &tables.sessions,
            &tables.stream_positions,
        )
    };
    let backend = Backend::from_one(Arc::new(DynamoStore::new(client.clone(), tables.clone())));
    let m = merchant();
    let append = |e: Event| {
        let backend = backend.clone();
        async move { backend.events.append(&e, None).await.unwrap() }
    };
    let first = event(&m, None, 1);
    append(first.clone()).await;
    let mut reader = open().await.unwrap();
    let read = poll_until(&mut reader, 1).await;
    assert_eq!(read[0].event.as_ref().unwrap().id, first.id);
    reader.checkpoint().await.unwrap();

    let second = event(&m, None, 1);
    append(second.clone()).await;
    let mut restarted = open().await.unwrap();
    let read = poll_until(&mut restarted, 1).await;
    assert_eq!(
        read[0].event.as_ref().unwrap().id,
        second.id,
        "only what came after the checkpoint"
    );
    // Not checkpointed: a reader opened now reads it again (at least once).
    let mut again = open().await.unwrap();
    let read = poll_until(&mut again, 1).await;
    assert_eq!(read[0].event.as_ref().unwrap().id, second.id);
}

/// Polls until `n` records came, and a little longer to see that no more do.
async fn poll_until(reader: &mut StreamReader, n: usize) -> Vec<StreamRecord> {
    let mut records = Vec::new();
    for _ in 0..100 {
        records.extend(reader.poll().await.unwrap());
        if records.len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    records.extend(reader.poll().await.unwrap());
    assert_eq!(records.len(), n, "{records:?}");
    records
}

#[test]
fn the_bootstrap_answers_help_and_refuses_to_run_outside_lambda() {
    aws_backend::testkit::check_bootstrap_outside_lambda(
        env!("CARGO_BIN_EXE_event-projector"),
        &projector::lambda::USAGE,
    );
}
