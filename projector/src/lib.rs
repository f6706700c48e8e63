//! The projector: for each record of the event store's stream, fold the event into the read
//! model (by version, so duplicates and late records are harmless) and publish it to the
//! checkout-events topic. The Lambda and `acp-local` both call [`Projector::project`].

pub mod lambda;

use checkout::event::{Event, StreamRecord};
use checkout::ids::SessionId;
use checkout::ports::{Publisher, ReadModel};
use checkout::read_model::SessionView;
use futures_util::future::join_all;
use std::collections::{HashMap, HashSet};
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

        let failed = self.fold_views(&events).await;
        let done = events
            .iter()
            .position(|e| failed.contains(&e.session_id))
            .unwrap_or(events.len());
        if done < events.len() {
            retry_from = Some(records[done].sequence.clone());
        }
        let events = &events[..done];

        let results = self.publisher.publish(events).await;
        let mut published = 0;
        for (i, result) in results.iter().enumerate() {
            if let Err(err) = result {
                warn!(event_id = %events[i].id, session_id = %events[i].session_id, error = %err, "publish failed");
                retry_from = Some(records[i].sequence.clone());
                break;
            }
            published += 1;
        }
        Projection { published, retry_from }
    }

    /// Folds the newest event of each session into the read model, all sessions at once (the
    /// writes are conditional on version, so order does not matter and older versions in the
    /// batch would change nothing). Returns the sessions whose view could not be written.
    async fn fold_views<'a>(&self, events: &[&'a Event]) -> HashSet<&'a SessionId> {
        let mut newest: HashMap<&SessionId, &Event> = HashMap::new();
        for event in events {
            let slot = newest.entry(&event.session_id).or_insert(event);
            if event.version > slot.version {
                *slot = event;
            }
        }
        let writes = newest.into_values().map(|event| async move {
            let result = self.views.apply(&SessionView::of(event)).await;
            (event, result)
        });
        let mut failed = HashSet::new();
        for (event, result) in join_all(writes).await {
            if let Err(err) = result {
                warn!(session_id = %event.session_id, error = %err, "read model not updated");
                failed.insert(&event.session_id);
            }
        }
        failed
    }
}
