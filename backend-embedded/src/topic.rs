//! The in-process checkout-events topic: every event goes to each subscribed queue, as raw
//! JSON with `merchant_id` and `event_type` attributes (SNS raw message delivery).

use crate::EmbeddedQueue;
use async_trait::async_trait;
use checkout::event::Event;
use checkout::ports::{MAX_MESSAGE_BYTES, PipelineError, Publisher};
use std::sync::Arc;
use std::time::Duration;

/// An event as a queue message: raw JSON with its filter attributes.
fn message(event: &Event) -> Result<(String, Vec<(String, String)>), PipelineError> {
    let body = serde_json::to_string(event).map_err(PipelineError::unavailable)?;
    Ok((body, attributes(event)))
}

/// The message attributes subscribers filter an event by.
pub(crate) fn attributes(event: &Event) -> Vec<(String, String)> {
    vec![
        ("merchant_id".to_owned(), event.merchant_id.to_string()),
        ("event_type".to_owned(), event.kind.to_string()),
    ]
}

/// A message's size as SNS counts it: body, attribute names, types and values.
fn size((body, attributes): &(String, Vec<(String, String)>)) -> usize {
    body.len()
        + attributes
            .iter()
            .map(|(k, v)| k.len() + "String".len() + v.len())
            .sum::<usize>()
}

fn too_large(size: usize) -> PipelineError {
    PipelineError::TooLarge {
        what: "message",
        size,
        limit: MAX_MESSAGE_BYTES,
    }
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
        // What SNS would refuse is refused here too, alone; the rest goes on.
        let mut results: Vec<Result<(), PipelineError>> = Vec::with_capacity(events.len());
        let mut messages = Vec::with_capacity(events.len());
        for event in events {
            match message(event) {
                Ok(message) if size(&message) > MAX_MESSAGE_BYTES => results.push(Err(too_large(size(&message)))),
                Ok(message) => {
                    messages.push(message);
                    results.push(Ok(()));
                }
                Err(err) => results.push(Err(err)),
            }
        }
        // One commit per subscriber for the whole batch: all of it is queued or none of it.
        for queue in &self.subscribers {
            if let Err(err) = queue.push_all(messages.clone(), Duration::ZERO).await {
                for result in results.iter_mut().filter(|r| r.is_ok()) {
                    *result = Err(err.clone());
                }
                return results;
            }
        }
        results
    }
}
