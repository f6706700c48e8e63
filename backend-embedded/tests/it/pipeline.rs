//! The topic and queue contract suite on the in-process topic and queues.

use checkout::testkit::{MAX_RECEIVES, Pipeline, VISIBILITY};
use embedded_backend::{EmbeddedQueue, EmbeddedTopic, QueueConfig};
use std::sync::Arc;

async fn fresh() -> Pipeline {
    let config = QueueConfig {
        visibility_timeout: VISIBILITY,
        max_receive_count: MAX_RECEIVES,
    };
    let dead_letters = Arc::new(EmbeddedQueue::new(config, None));
    let queue = Arc::new(EmbeddedQueue::new(config, Some(dead_letters.clone())));
    Pipeline {
        publisher: Arc::new(EmbeddedTopic::new(vec![queue.clone()])),
        queue,
        dead_letters,
    }
}

checkout::pipeline_contract_tests!(fresh());
