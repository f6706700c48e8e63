//! The projector: for each record of the event store's stream, fold the event into the read
//! model (by version, so duplicates and late records are harmless) and publish it to the
//! checkout-events topic. The Lambda and `acp-local` both call [`Projector::project`].

pub mod lambda;

use checkout::event::{Event, StreamRecord};
use checkout::ports::{Publisher, ReadModel};
use checkout::read_model::SessionView;
use std::sync::Arc;
use tracing::{error, warn};

pub struct Projector {
    views: Arc<dyn ReadModel>,
    publisher: Arc<dyn Publisher>,
}

/// What became of a batch of records.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Projection {
    pub published: usize,
    /// The sequence number of the first record not fully handled. The stream source retries
    /// from there (DynamoDB Streams' partial batch response); everything before it is done.
    pub retry_from: Option<String>,
}

impl Projector {
    pub fn new(views: Arc<dyn ReadModel>, publisher: Arc<dyn Publisher>) -> Self {
        Self { views, publisher }
    }

    /// Handles the records in stream order and stops at the first one that fails: the
    /// source redelivers from it, so nothing after it may be skipped.
    pub async fn project(&self, records: &[StreamRecord]) -> Projection {
        let mut events: Vec<&Event> = Vec::with_capacity(records.len());
        let mut retry_from = None;
        for record in records {
            match &record.event {
                Ok(event) => match self.views.apply(&SessionView::of(event)).await {
                    Ok(_) => events.push(event),
                    Err(err) => {
                        warn!(sequence = %record.sequence, session_id = %event.session_id, error = %err, "read model not updated");
                        retry_from = Some(record.sequence.clone());
                        break;
                    }
                },
                Err(reason) => {
                    error!(sequence = %record.sequence, %reason, "poison record");
                    retry_from = Some(record.sequence.clone());
                    break;
                }
            }
        }
        let owned: Vec<Event> = events.iter().map(|e| (*e).clone()).collect();
        let results = self.publisher.publish(&owned).await;
        let mut published = 0;
        for (i, result) in results.iter().enumerate() {
            match result {
                Ok(()) => published += 1,
                Err(err) => {
                    warn!(event_id = %owned[i].id, session_id = %owned[i].session_id, error = %err, "publish failed");
                    retry_from = Some(records[i].sequence.clone());
                    break;
                }
            }
        }
        Projection { published, retry_from }
    }
}
