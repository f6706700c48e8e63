//! The in-process checkout-events topic: every event goes to each subscribed queue, as raw
//! JSON with `merchant_id` and `event_type` attributes (SNS raw message delivery).

use crate::EmbeddedQueue;
use async_trait::async_trait;
use checkout::event::Event;
use checkout::ports::{PipelineError, Publisher};
use std::sync::Arc;
use std::time::Duration;

pub struct EmbeddedTopic {
    subscribers: Vec<Arc<EmbeddedQueue>>,
}

impl EmbeddedTopic {
    pub fn new(subscribers: Vec<Arc<EmbeddedQueue>>) -> Self {
        Self { subscribers }
    }
}

impl EmbeddedTopic {
    async fn publish_one(&self, event: &Event) -> Result<(), PipelineError> {
        let body = serde_json::to_string(event).map_err(|e| PipelineError(e.to_string()))?;
        let attributes = vec![
            ("merchant_id".to_owned(), event.merchant_id.to_string()),
            ("event_type".to_owned(), event.kind.to_string()),
        ];
        for queue in &self.subscribers {
            queue.push(body.clone(), attributes.clone(), Duration::ZERO).await?;
        }
        Ok(())
    }
}

#[async_trait]
impl Publisher for EmbeddedTopic {
    async fn publish(&self, events: &[&Event]) -> Vec<Result<(), PipelineError>> {
        let mut results = Vec::with_capacity(events.len());
        for event in events {
            results.push(self.publish_one(event).await);
        }
        results
    }
}
