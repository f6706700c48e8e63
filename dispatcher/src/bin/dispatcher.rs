//! Operator commands for the webhook dispatcher's dead-letter queue:
//!
//! ```text
//! dispatcher dlq list    [--max N]   # what is there, why, after how many attempts (JSON lines)
//! dispatcher dlq redrive [--max N]   # move it back to the order-updates queue
//! ```
//!
//! On AWS: queue URLs from `--queue-url` / `ORDER_UPDATES_QUEUE_URL` and
//! `--dead-letter-queue-url` / `ORDER_UPDATES_DLQ_URL`; AWS credentials, region and
//! `AWS_ENDPOINT_URL` as usual. On `acp-local`'s durable store: `--data-dir DIR` (with
//! `acp-local` stopped: one process owns the database).

use anyhow::Context;
use aws_backend::SqsQueue;
use checkout::ports::DeliveryQueue;
use clap::{Parser, Subcommand};
use embedded_backend::{Database, EmbeddedQueue, QueueConfig, queue_names};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(Parser)]
#[command(name = "dispatcher", version, about = "Webhook dispatcher operations")]
struct Cli {
    /// The data directory of a stopped `acp-local` (durable embedded backend) instead of SQS.
    #[arg(long, conflicts_with_all = ["queue_url", "dead_letter_queue_url"])]
    data_dir: Option<PathBuf>,
    #[arg(long, env = "ORDER_UPDATES_QUEUE_URL")]
    queue_url: Option<String>,
    #[arg(long, env = "ORDER_UPDATES_DLQ_URL")]
    dead_letter_queue_url: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The dead-letter queue.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Print dead letters (they stay in the queue).
    List {
        #[arg(long, default_value = "100")]
        max: usize,
    },
    /// Move dead letters back to the order-updates queue for another series of attempts.
    Redrive {
        #[arg(long, default_value = "1000")]
        max: usize,
    },
}

/// The order-updates queue (if known) and its dead-letter queue.
type Queues = (Option<Arc<dyn DeliveryQueue>>, Arc<dyn DeliveryQueue>);

fn embedded_queues(dir: &std::path::Path) -> anyhow::Result<Queues> {
    let path = dir.join(embedded_backend::DATABASE_FILE);
    anyhow::ensure!(path.exists(), "no acp-local database at {}", path.display());
    let db = Arc::new(
        Database::open(&path).with_context(|| format!("opening {} (is acp-local still running?)", path.display()))?,
    );
    // Only these commands read the queues here: the settings matter for nothing but receives.
    let config = QueueConfig {
        visibility_timeout: Duration::from_secs(60),
        max_receive_count: 50,
    };
    let dead_letters = Arc::new(EmbeddedQueue::durable(
        config,
        None,
        db.clone(),
        queue_names::DEAD_LETTERS,
    )?);
    let queue = Arc::new(EmbeddedQueue::durable(config, None, db, queue_names::ORDER_UPDATES)?);
    Ok((Some(queue), dead_letters))
}

async fn sqs_queues(queue_url: Option<String>, dead_letter_queue_url: Option<String>) -> anyhow::Result<Queues> {
    let dead_letter_queue_url = dead_letter_queue_url
        .context("--dead-letter-queue-url (or ORDER_UPDATES_DLQ_URL), or --data-dir, is required")?;
    let sdk = aws_backend::sdk_config().await;
    let sqs = aws_backend::SqsClient::new(&sdk);
    let queue = queue_url.map(|url| Arc::new(SqsQueue::new(sqs.clone(), url)) as Arc<dyn DeliveryQueue>);
    Ok((queue, Arc::new(SqsQueue::new(sqs, dead_letter_queue_url))))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let (queue, dead_letters) = match &cli.data_dir {
        Some(dir) => embedded_queues(dir)?,
        None => sqs_queues(cli.queue_url, cli.dead_letter_queue_url).await?,
    };
    let Command::Dlq { action } = cli.command;
    match action {
        DlqAction::List { max } => {
            for letter in dispatcher::dead_letters::list(dead_letters.as_ref(), max).await? {
                println!("{}", letter.to_body());
            }
        }
        DlqAction::Redrive { max } => {
            let queue = queue.context("--queue-url (or ORDER_UPDATES_QUEUE_URL) is required to redrive")?;
            let moved = dispatcher::dead_letters::redrive(dead_letters.as_ref(), queue.as_ref(), max).await?;
            println!("moved {moved} dead letters back to the queue");
        }
    }
    Ok(())
}
