//! Runs the projector in-process: committed events in stream order, the same handler as the
//! EventProjectorFunction, and a retry of whatever it could not finish. When told to stop, it
//! first projects every event already committed, so the dispatcher can deliver them. The
//! durable store needs none: it queues each event in the event's own commit.

use crate::adapters::EventSource;
use checkout::event::{Event, StreamRecord};
use projector::Projector;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{error, warn};

/// Most records handed to the projector at once (the Lambda event source's batch size).
const BATCH: usize = 100;
/// Retries of one record before it is set aside (`MaximumRetryAttempts` in the template).
const MAX_RETRIES: u32 = 10;
/// Pause before retrying records the projector could not finish, and between stream polls.
const PAUSE: Duration = Duration::from_millis(100);

fn record(event: Event) -> StreamRecord {
    StreamRecord {
        sequence: format!("{}#{}", event.session_id, event.version),
        event: Ok(event),
    }
}

/// Projects `pending` until every record is done; failed records are retried from the first
/// one not done, as the stream source would — at most [`MAX_RETRIES`] times for the same record,
/// as the template's event source mapping does, so one record that can never be published
/// (or read) does not hold up those behind it.
async fn project_all(projector: &Projector, mut pending: Vec<StreamRecord>) {
    let mut retries = 0;
    let mut failing: Option<String> = None;
    while !pending.is_empty() {
        let Some(from) = projector.project(&pending).await.retry_from else {
            return;
        };
        let start = pending.iter().position(|r| r.sequence == from).unwrap_or(0);
        if failing.as_deref() == Some(from.as_str()) {
            retries += 1;
        } else {
            (failing, retries) = (Some(from.clone()), 0);
        }
        if pending[start].event.is_err() || retries >= MAX_RETRIES {
            // Logged by the projector; set aside here (the Lambda sends it to the on-failure
            // destination, `projector-failures`).
            error!(sequence = %from, retries, "a stream record is set aside: it could not be projected");
            pending.drain(..=start);
            continue;
        }
        pending.drain(..start);
        tokio::time::sleep(PAUSE).await;
    }
}

/// The next batch from an in-process feed: waits for the first item unless stopping, then
/// takes what is already there. `None` once stopping and nothing is left.
async fn next_batch<T>(feed: &mut mpsc::UnboundedReceiver<T>, stop: &mut watch::Receiver<bool>) -> Option<Vec<T>> {
    let first = if *stop.borrow() {
        feed.try_recv().ok()?
    } else {
        tokio::select! {
            item = feed.recv() => item?,
            _ = stop.changed() => feed.try_recv().ok()?,
        }
    };
    let mut batch = vec![first];
    while batch.len() < BATCH {
        match feed.try_recv() {
            Ok(item) => batch.push(item),
            Err(_) => break,
        }
    }
    Some(batch)
}

pub async fn run(projector: Projector, source: EventSource, mut stop: watch::Receiver<bool>) {
    match source {
        EventSource::Feed(mut feed) => {
            while let Some(batch) = next_batch(&mut feed, &mut stop).await {
                project_all(&projector, batch.into_iter().map(record).collect()).await;
            }
        }
        EventSource::Outbox => {}
        EventSource::Stream(mut reader) => {
            while !*stop.borrow() {
                match reader.poll().await {
                    Ok(records) if !records.is_empty() => {
                        project_all(&projector, records).await;
                        if let Err(err) = reader.checkpoint().await {
                            // Only costs a second projection of these events after a restart.
                            warn!(error = %err, "could not store the stream checkpoint");
                        }
                    }
                    Ok(_) => tokio::time::sleep(PAUSE).await,
                    Err(err) => {
                        warn!(error = %err, "reading the event stream failed; retrying");
                        tokio::time::sleep(PAUSE * 10).await;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use async_trait::async_trait;
    use checkout::ids::EventId;
    use checkout::ports::{PipelineError, Publisher};
    use std::sync::{Arc, Mutex};

    /// A topic that refuses one event every time (as SNS refuses one over its size limit).
    struct RefusesOne {
        refused: EventId,
        published: Mutex<Vec<EventId>>,
    }

    #[async_trait]
    impl Publisher for RefusesOne {
        async fn publish(&self, events: &[&Event]) -> Vec<Result<(), PipelineError>> {
            events
                .iter()
                .map(|e| {
                    if e.id == self.refused {
                        Err(PipelineError::TooLarge {
                            what: "event",
                            size: 300_000,
                            limit: 262_144,
                        })
                    } else {
                        self.published.lock().unwrap().push(e.id.clone());
                        Ok(())
                    }
                })
                .collect()
        }
    }

    #[tokio::test]
    async fn a_record_that_can_never_be_published_does_not_hold_up_those_behind_it() {
        let merchant = checkout::testkit::merchant();
        let events: Vec<Event> = (0..3).map(|_| checkout::testkit::event(&merchant, None, 1)).collect();
        let topic = Arc::new(RefusesOne {
            refused: events[1].id.clone(),
            published: Mutex::default(),
        });
        let projector = Projector::new(topic.clone());
        let done = tokio::time::timeout(
            Duration::from_secs(30),
            project_all(&projector, events.iter().cloned().map(record).collect()),
        )
        .await;
        assert!(done.is_ok(), "projection returned");
        // Records after a failed one are handed over again with each retry (at least once, as
        // the stream source does); the dispatcher delivers copies once.
        let mut published = topic.published.lock().unwrap().clone();
        published.dedup();
        assert_eq!(published, vec![events[0].id.clone(), events[2].id.clone()]);
    }

    #[test]
    fn retries_match_the_templates_event_source_mapping() {
        let template = include_str!("../../infra/template.yaml");
        assert!(template.contains(&format!("MaximumRetryAttempts: {MAX_RETRIES}")));
    }
}
