//! Picks every adapter from the configuration: the one factory of the local stack.

use crate::config::{BackendKind, Config};
use anyhow::Context;
use aws_backend::{DynamoStore, QueueSettings, SnsPublisher, SqsQueue, StreamReader, TableNames};
use checkout::event::Event;
use checkout::ports::{Backend, DeliveryQueue, Publisher};
use embedded_backend::{Database, DurableStore, EmbeddedQueue, EmbeddedStore, EmbeddedTopic, QueueConfig};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Order-updates queue settings: a message not acknowledged within the visibility timeout is
/// delivered again; after `MAX_RECEIVES` receives it goes to the dead-letter queue.
pub const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);
pub const MAX_RECEIVES: u32 = 50;

/// Where the projector reads committed events from.
pub enum EventSource {
    /// The in-memory store's in-process feed.
    Feed(mpsc::UnboundedReceiver<Event>),
    /// None: the durable store queues each event in the event's own commit (its outbox).
    Outbox,
    /// The sessions table's DynamoDB stream.
    Stream(StreamReader),
}

pub struct Adapters {
    pub backend: Backend,
    pub publisher: Arc<dyn Publisher>,
    pub queue: Arc<dyn DeliveryQueue>,
    /// Deliveries to failing or slow endpoints (see the dispatcher's slow lane).
    pub slow_queue: Arc<dyn DeliveryQueue>,
    pub dead_letters: Arc<dyn DeliveryQueue>,
    /// Steps of running replays (a step that fails comes back until it succeeds).
    pub replay_steps: Arc<dyn DeliveryQueue>,
    pub source: EventSource,
    /// The durable store, whose expired records the stack purges.
    pub purge: Option<Arc<DurableStore>>,
}

pub async fn build(config: &Config) -> anyhow::Result<Adapters> {
    match config.backend {
        BackendKind::Embedded => durable(config).await,
        BackendKind::Memory => Ok(in_memory()),
        BackendKind::Aws => aws(config).await,
    }
}

const QUEUE: QueueConfig = QueueConfig {
    visibility_timeout: VISIBILITY_TIMEOUT,
    max_receive_count: MAX_RECEIVES,
};

pub use embedded_backend::DATABASE_FILE;
use embedded_backend::queue_names;

async fn durable(config: &Config) -> anyhow::Result<Adapters> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating the data directory {}", config.data_dir.display()))?;
    let path = config.data_dir.join(DATABASE_FILE);
    let db = Arc::new(Database::open(&path).with_context(|| format!("opening {}", path.display()))?);
    let dead_letters = Arc::new(EmbeddedQueue::durable(
        QUEUE,
        None,
        db.clone(),
        queue_names::DEAD_LETTERS,
    )?);
    let queue = Arc::new(EmbeddedQueue::durable(
        QUEUE,
        Some(dead_letters.clone()),
        db.clone(),
        queue_names::ORDER_UPDATES,
    )?);
    let slow_queue = Arc::new(EmbeddedQueue::durable(
        QUEUE,
        Some(dead_letters.clone()),
        db.clone(),
        queue_names::SLOW_DELIVERIES,
    )?);
    let replay_steps = Arc::new(EmbeddedQueue::durable(
        QUEUE,
        None,
        db.clone(),
        queue_names::REPLAY_STEPS,
    )?);
    let store = Arc::new(
        DurableStore::open(db, queue.clone())
            .await
            .context("queueing the events an earlier version had not published")?,
    );
    Ok(Adapters {
        backend: Backend::from_one(store.clone()),
        publisher: Arc::new(EmbeddedTopic::new(vec![queue.clone()])),
        queue,
        slow_queue,
        dead_letters,
        replay_steps,
        source: EventSource::Outbox,
        purge: Some(store),
    })
}

fn in_memory() -> Adapters {
    let (store, feed) = EmbeddedStore::with_feed();
    let settings = QUEUE;
    let dead_letters = Arc::new(EmbeddedQueue::new(settings, None));
    let queue = Arc::new(EmbeddedQueue::new(settings, Some(dead_letters.clone())));
    let slow_queue = Arc::new(EmbeddedQueue::new(settings, Some(dead_letters.clone())));
    Adapters {
        backend: Backend::from_one(Arc::new(store)),
        publisher: Arc::new(EmbeddedTopic::new(vec![queue.clone()])),
        queue,
        slow_queue,
        dead_letters,
        replay_steps: Arc::new(EmbeddedQueue::new(settings, None)),
        source: EventSource::Feed(feed),
        purge: None,
    }
}

async fn aws(config: &Config) -> anyhow::Result<Adapters> {
    let sdk = aws_backend::sdk_config_at(config.aws_endpoint_url.as_deref()).await;
    let dynamodb = aws_backend::DynamoClient::new(&sdk);
    let (sns, sqs) = (aws_backend::SnsClient::new(&sdk), aws_backend::SqsClient::new(&sdk));
    let tables = TableNames::for_environment(&config.environment);
    let (topic_arn, queue_url, slow_queue_url, dead_letter_queue_url, replay_steps_url) = if config.create_resources {
        aws_backend::create_tables(&dynamodb, &tables)
            .await
            .context("creating the DynamoDB tables")?;
        let settings = QueueSettings {
            visibility_timeout: VISIBILITY_TIMEOUT,
            max_receive_count: MAX_RECEIVES,
        };
        let created = aws_backend::create_pipeline(&sns, &sqs, &config.environment, settings)
            .await
            .context("creating the topic and queues")?;
        (
            created.topic_arn,
            created.queue_url,
            created.slow_queue_url,
            created.dead_letter_queue_url,
            created.replay_steps_queue_url,
        )
    } else {
        let need = |value: &Option<String>, name: &str| {
            value
                .clone()
                .with_context(|| format!("{name} is required with --backend aws unless --create-resources is given"))
        };
        (
            need(&config.topic_arn, "ACP_TOPIC_ARN")?,
            need(&config.queue_url, "ACP_QUEUE_URL")?,
            need(&config.slow_queue_url, "ACP_SLOW_QUEUE_URL")?,
            need(&config.dead_letter_queue_url, "ACP_DEAD_LETTER_QUEUE_URL")?,
            need(&config.replay_steps_queue_url, "ACP_REPLAY_STEPS_QUEUE_URL")?,
        )
    };
    let reader = StreamReader::open(
        &dynamodb,
        aws_backend::StreamsClient::new(&sdk),
        &tables.sessions,
        &tables.stream_positions,
    )
    .await
    .context("opening the sessions table's stream")?;
    Ok(Adapters {
        backend: Backend::from_one(Arc::new(DynamoStore::new(dynamodb, tables))),
        publisher: Arc::new(SnsPublisher::new(sns, topic_arn)),
        queue: Arc::new(SqsQueue::new(sqs.clone(), queue_url)),
        slow_queue: Arc::new(SqsQueue::new(sqs.clone(), slow_queue_url)),
        dead_letters: Arc::new(SqsQueue::new(sqs.clone(), dead_letter_queue_url)),
        replay_steps: Arc::new(SqsQueue::new(sqs, replay_steps_url)),
        source: EventSource::Stream(reader),
        purge: None,
    })
}
