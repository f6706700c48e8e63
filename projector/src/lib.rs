//! The projector: each record of the event store's stream is published to the checkout-events
//! topic, in stream order. The Lambda and `acp-local` both call [`Projector::project`].
//!
//! There is no read model: `GET /checkout_sessions/{id}` reads the latest event, strongly
//! consistent, so a second copy of each session written per event would be paid for and never
//! read.

pub mod lambda;

use checkout::event::{Event, StreamRecord};
use checkout::ports::Publisher;
use std::sync::Arc;
use tracing::{error, warn};

pub struct Projector {
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
    pub fn new(publisher: Arc<dyn Publisher>) -> Self {
        Self { publisher }
    }

    /// Handles the records in stream order and stops at the first one that fails: the
    /// source redelivers from it, so nothing after it may be skipped.
    pub async fn project(&self, records: &[StreamRecord]) -> Projection {
        let mut retry_from = None;
        let readable = records.iter().position(|r| r.event.is_err()).unwrap_or(records.len());
        if let Some(poison) = records.get(readable) {
            let reason = poison.event.as_ref().err().map_or("", String::as_str);
            error!(sequence = %poison.sequence, %reason, "poison record");
            retry_from = Some(poison.sequence.clone());
        }
        let events: Vec<&Event> = records[..readable]
            .iter()
            .filter_map(|r| r.event.as_ref().ok())
            .collect();
        let results = self.publisher.publish(&events).await;
        let mut published = 0;
        for (i, result) in results.iter().enumerate() {
            if let Err(err) = result {
                if err.is_retryable() {
                    warn!(event_id = %events[i].id, session_id = %events[i].session_id, error = %err, "publish failed");
                } else {
                    // Too large or refused: every retry fails alike, until the stream's retries
                    // run out and the record is set aside (see the template's on-failure
                    // destination); said once here, loudly.
                    error!(event_id = %events[i].id, session_id = %events[i].session_id, error = %err, "the event can never be published");
                }
                retry_from = Some(records[i].sequence.clone());
                break;
            }
            published += 1;
        }
        Projection { published, retry_from }
    }
}
