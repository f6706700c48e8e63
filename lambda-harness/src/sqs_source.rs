//! An SQS event source mapping, as the template configures it: up to `MaximumConcurrency`
//! pollers, each taking batches of `BatchSize` (waiting up to the batching window to fill one),
//! invoking the function with the SQS event, and deleting what succeeded — every message but the
//! `batchItemFailures` of the answer when `ReportBatchItemFailures` is on; nothing when the
//! invocation failed. What is not deleted comes back after its visibility timeout (which the
//! function may have set), and the queue's redrive policy counts its receives.

use crate::runtime_api::{Function, Invocation};
use crate::template::QueueSource;
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// A running mapping; stops when dropped.
pub struct SqsSource {
    pollers: Vec<JoinHandle<()>>,
    requests: Arc<AtomicU64>,
}

impl Drop for SqsSource {
    fn drop(&mut self) {
        for poller in &self.pollers {
            poller.abort();
        }
    }
}

impl SqsSource {
    pub async fn start(
        sqs: aws_sdk_sqs::Client,
        queue_url: String,
        settings: QueueSource,
        function: Arc<Function>,
    ) -> Result<SqsSource, aws_sdk_sqs::Error> {
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&queue_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await?
            .attributes
            .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
            .unwrap_or_default();
        let requests = Arc::new(AtomicU64::new(0));
        let poller = Arc::new(Poller {
            requests: requests.clone(),
            sqs,
            queue_url,
            arn,
            settings,
            function,
        });
        let pollers = (0..poller.settings.max_concurrency.clamp(1, 4))
            .map(|_| {
                let poller = poller.clone();
                tokio::spawn(async move { poller.run().await })
            })
            .collect();
        Ok(SqsSource { pollers, requests })
    }

    /// Billable SQS requests the mapping made since the last call: each receive that brought
    /// messages, and one delete per batch (Lambda deletes a batch's successes in one request).
    /// Empty long polls are not counted: at a steady load they are a fixed monthly cost.
    pub fn take_requests(&self) -> u64 {
        self.requests.swap(0, Ordering::Relaxed)
    }
}

/// The messages an answer reports as failed, or `None` when the answer is not a valid partial
/// batch response — then Lambda treats the whole batch as failed (an entry without an
/// `itemIdentifier`, or naming a message that is not in the batch).
fn failures(answer: &Value, batch: &HashSet<&str>) -> Option<HashSet<String>> {
    let Some(entries) = answer.get("batchItemFailures") else {
        return Some(HashSet::new());
    };
    let entries = entries.as_array()?;
    entries
        .iter()
        .map(|f| {
            f["itemIdentifier"]
                .as_str()
                .filter(|id| !id.is_empty() && batch.contains(id))
                .map(str::to_owned)
        })
        .collect()
}

struct Poller {
    requests: Arc<AtomicU64>,
    sqs: aws_sdk_sqs::Client,
    queue_url: String,
    arn: String,
    settings: QueueSource,
    function: Arc<Function>,
}

impl Poller {
    async fn run(&self) {
        loop {
            let batch = self.batch().await;
            if batch.is_empty() {
                continue;
            }
            let event = json!({ "Records": batch.iter().map(|m| self.record(m)).collect::<Vec<_>>() });
            let ids: HashSet<&str> = batch.iter().filter_map(|m| m.message_id()).collect();
            let failed: Option<HashSet<String>> = match self.function.invoke(&event).await {
                Invocation::Response(answer) if self.settings.report_item_failures => failures(&answer, &ids),
                Invocation::Response(_) => Some(HashSet::new()),
                // The whole batch comes back after its visibility timeout.
                Invocation::Error(_) => None,
            };
            let Some(failed) = failed else { continue };
            if batch.len() > failed.len() {
                self.requests.fetch_add(1, Ordering::Relaxed);
            }
            for message in batch
                .iter()
                .filter(|m| !failed.contains(m.message_id().unwrap_or_default()))
            {
                let _ = self
                    .sqs
                    .delete_message()
                    .queue_url(&self.queue_url)
                    .receipt_handle(message.receipt_handle().unwrap_or_default())
                    .send()
                    .await;
            }
        }
    }

    /// Up to `BatchSize` messages: once one came, the mapping keeps polling until the batch is
    /// full or the batching window has passed, as Lambda does.
    async fn batch(&self) -> Vec<aws_sdk_sqs::types::Message> {
        let mut batch = Vec::new();
        let mut deadline = tokio::time::Instant::now() + self.settings.window;
        loop {
            let want = (self.settings.batch_size - batch.len()).clamp(1, 10);
            let wait = if batch.is_empty() { 1 } else { 0 };
            let received = self
                .sqs
                .receive_message()
                .queue_url(&self.queue_url)
                .max_number_of_messages(want as i32)
                .wait_time_seconds(wait)
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .message_attribute_names("All")
                .send()
                .await;
            let got = match received {
                Ok(out) => out.messages.unwrap_or_default(),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Vec::new()
                }
            };
            if !got.is_empty() {
                self.requests.fetch_add(1, Ordering::Relaxed);
                if batch.is_empty() {
                    // The window starts with the first message.
                    deadline = tokio::time::Instant::now() + self.settings.window;
                }
            }
            batch.extend(got);
            if batch.is_empty() || batch.len() >= self.settings.batch_size || tokio::time::Instant::now() >= deadline {
                return batch;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A message as the SQS event carries it.
    fn record(&self, m: &aws_sdk_sqs::types::Message) -> Value {
        let attributes: Map<String, Value> = m
            .attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                    .collect()
            })
            .unwrap_or_default();
        let message_attributes: Map<String, Value> = m
            .message_attributes()
            .map(|a| {
                a.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            json!({
                                "stringValue": v.string_value(),
                                "stringListValues": [],
                                "binaryListValues": [],
                                "dataType": v.data_type(),
                            }),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        json!({
            "messageId": m.message_id(),
            "receiptHandle": m.receipt_handle(),
            "body": m.body(),
            "attributes": attributes,
            "messageAttributes": message_attributes,
            "md5OfBody": m.md5_of_body(),
            "eventSource": "aws:sqs",
            "eventSourceARN": self.arn,
            "awsRegion": "us-east-1",
        })
    }
}
