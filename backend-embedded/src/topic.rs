//! The in-process checkout-events topic: every event goes to each subscribed queue, as raw
//! JSON with `merchant_id` and `event_type` attributes (SNS raw message delivery).

use crate::EmbeddedQueue;
use async_trait::async_trait;
use checkout::event::Event;
use checkout::ports::{PipelineError, Publisher};
use std::sync::Arc;
use std::time::Duration;

/// An event as a queue message: raw JSON with its filter attributes.
fn message(event: &Event) -> Result<(String, Vec<(String, String)>), PipelineError> {
    let body = serde_json::to_string(event).map_err(|e| PipelineError(e.to_string()))?;
    let attributes = vec![
        ("merchant_id".to_owned(), event.merchant_id.to_string()),
        ("event_type".to_owned(), event.kind.to_string()),
    ];
    Ok((body, attributes))
}

pub struct EmbeddedTopic {
    subscribers: Vec<Arc<EmbeddedQueue>>,
}

impl EmbeddedTopic {
    pub fn new(subscribers: Vec<Arc<EmbeddedQueue>>) -> Self {
        Self { subscribers }
    }
}

#[async_trait]
impl Publisher for EmbeddedTopic {
    async fn publish(&self, events: &[&Event]) -> Vec<Result<(), PipelineError>> {
        // One commit per subscriber for the whole batch: all of it is queued or none of it.
        let messages = match events.iter().map(|e| message(e)).collect::<Result<Vec<_>, _>>() {
            Ok(messages) => messages,
            Err(err) => return events.iter().map(|_| Err(err.clone())).collect(),
        };
        for queue in &self.subscribers {
            if let Err(err) = queue.push_all(messages.clone(), Duration::ZERO).await {
                return events.iter().map(|_| Err(err.clone())).collect();
            }
        }
        events.iter().map(|_| Ok(())).collect()
    }
}
