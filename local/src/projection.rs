//! Runs the projector in-process: committed events in stream order, the same handler as the
//! EventProjectorFunction, and a retry of whatever it could not finish. When told to stop, it
//! first projects every event already committed, so the dispatcher can deliver them.

use crate::adapters::EventSource;
use checkout::event::{Event, StreamRecord};
use projector::Projector;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
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
        EventSource::Durable { mut stream, store } => {
            while let Some(batch) = next_batch(&mut stream, &mut stop).await {
                let last = batch.last().map(|c| c.position);
                project_all(&projector, batch.into_iter().map(|c| record(c.event)).collect()).await;
                if let Some(position) = last
                    && let Err(err) = store.checkpoint(position).await
                {
                    // Only costs a second projection of these events after a restart.
                    warn!(error = %err, "could not store the projector's checkpoint");
                }
            }
        }
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
