//! Runs the projector in-process: committed events in stream order, the same handler as the
//! EventProjectorFunction, and a retry of whatever it could not finish.

use crate::adapters::EventSource;
use checkout::event::{Event, StreamRecord};
use projector::Projector;
use std::time::Duration;
use tracing::warn;

/// Most records handed to the projector at once (the Lambda event source's batch size).
const BATCH: usize = 100;
/// Pause before retrying records the projector could not finish, and between stream polls.
const PAUSE: Duration = Duration::from_millis(100);

fn record(event: Event) -> StreamRecord {
    StreamRecord {
        sequence: format!("{}#{}", event.session_id, event.version),
        event: Ok(event),
    }
}

/// Projects `pending` until every record is done; failed records are retried from the first
/// one not done, as the stream source would.
async fn project_all(projector: &Projector, mut pending: Vec<StreamRecord>) {
    while !pending.is_empty() {
        let Some(from) = projector.project(&pending).await.retry_from else {
            return;
        };
        let start = pending.iter().position(|r| r.sequence == from).unwrap_or(0);
        if pending[start].event.is_err() {
            // A record nobody can read would block everything behind it; it is logged by the
            // projector and skipped here (the Lambda sends it to the on-failure destination).
            warn!(sequence = %from, "skipping an unreadable stream record");
            pending.drain(..=start);
            continue;
        }
        pending.drain(..start);
        tokio::time::sleep(PAUSE).await;
    }
}

pub async fn run(projector: Projector, source: EventSource) {
    match source {
        EventSource::Feed(mut feed) => {
            while let Some(first) = feed.recv().await {
                let mut batch = vec![record(first)];
                while batch.len() < BATCH {
                    match feed.try_recv() {
                        Ok(event) => batch.push(record(event)),
                        Err(_) => break,
                    }
                }
                project_all(&projector, batch).await;
            }
        }
        EventSource::Stream(mut reader) => loop {
            match reader.poll().await {
                Ok(records) if !records.is_empty() => project_all(&projector, records).await,
                Ok(_) => tokio::time::sleep(PAUSE).await,
                Err(err) => {
                    warn!(error = %err, "reading the event stream failed; retrying");
                    tokio::time::sleep(PAUSE * 10).await;
                }
            }
        },
    }
}
