//! Operator commands for the webhook dispatcher's dead-letter queue:
//!
//! ```text
//! dispatcher dlq list    [--max N]   # what is there, why, after how many attempts (JSON lines)
//! dispatcher dlq redrive [--max N]   # move it back to the order-updates queue
//! ```
//!
//! Queue URLs from `--queue-url` / `ORDER_UPDATES_QUEUE_URL` and `--dead-letter-queue-url` /
//! `ORDER_UPDATES_DLQ_URL`; AWS credentials, region and `AWS_ENDPOINT_URL` as usual.

use anyhow::Context;
use aws_backend::SqsQueue;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "dispatcher", version, about = "Webhook dispatcher operations")]
struct Cli {
    #[arg(long, env = "ORDER_UPDATES_QUEUE_URL")]
    queue_url: Option<String>,
    #[arg(long, env = "ORDER_UPDATES_DLQ_URL")]
    dead_letter_queue_url: String,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let sdk = aws_backend::sdk_config().await;
    let sqs = aws_backend::SqsClient::new(&sdk);
    let dead_letters = SqsQueue::new(sqs.clone(), cli.dead_letter_queue_url);
    let Command::Dlq { action } = cli.command;
    match action {
        DlqAction::List { max } => {
            for letter in dispatcher::dead_letters::list(&dead_letters, max).await? {
                println!("{}", letter.to_body());
            }
        }
        DlqAction::Redrive { max } => {
            let queue_url = cli
                .queue_url
                .context("--queue-url (or ORDER_UPDATES_QUEUE_URL) is required to redrive")?;
            let queue = SqsQueue::new(sqs, queue_url);
            let moved = dispatcher::dead_letters::redrive(&dead_letters, &queue, max).await?;
            println!("moved {moved} dead letters back to the queue");
        }
    }
    Ok(())
}
