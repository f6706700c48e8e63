//! SNS and SQS: the checkout-events topic, the order-updates queue and its dead-letter queue.

use async_trait::async_trait;
use aws_sdk_sns::types::{MessageAttributeValue, PublishBatchRequestEntry};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use checkout::event::Event;
use checkout::ports::{DeliveryQueue, MAX_MESSAGE_BYTES, PipelineError, Publisher, QueuedMessage};
use std::collections::HashMap;
use std::time::Duration;

use crate::error::pipeline_error;

/// Most entries SNS takes in one `PublishBatch`.
const PUBLISH_BATCH: usize = 10;

pub struct SnsPublisher {
    client: aws_sdk_sns::Client,
    topic_arn: String,
}

impl SnsPublisher {
    pub fn new(client: aws_sdk_sns::Client, topic_arn: String) -> Self {
        Self { client, topic_arn }
    }

    /// The batch entry of an event, and its size as SNS counts it (body and attributes).
    fn entry(index: usize, event: &Event) -> Result<(PublishBatchRequestEntry, usize), PipelineError> {
        let attribute = |value: &str| {
            MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| PipelineError::invalid(e.to_string()))
        };
        let body = serde_json::to_string(event).map_err(PipelineError::unavailable)?;
        let attributes = [
            ("merchant_id", event.merchant_id.as_str()),
            ("event_type", event.kind.as_str()),
        ];
        let size = body.len()
            + attributes
                .iter()
                .map(|(k, v)| k.len() + "String".len() + v.len())
                .sum::<usize>();
        let mut entry = PublishBatchRequestEntry::builder().id(index.to_string()).message(body);
        for (name, value) in attributes {
            entry = entry.message_attributes(name, attribute(value)?);
        }
        Ok((entry.build().map_err(|e| PipelineError::invalid(e.to_string()))?, size))
    }

    /// Sends one `PublishBatch` of (index, entry) and records each entry's result.
    async fn send_batch(
        &self,
        batch: Vec<(usize, PublishBatchRequestEntry)>,
        results: &mut [Result<(), PipelineError>],
    ) {
        let indexes: Vec<usize> = batch.iter().map(|(i, _)| *i).collect();
        let response = self
            .client
            .publish_batch()
            .topic_arn(&self.topic_arn)
            .set_publish_batch_request_entries(Some(batch.into_iter().map(|(_, e)| e).collect()))
            .send()
            .await;
        match response {
            Ok(out) => {
                for failed in out.failed() {
                    if let Some(i) = failed.id().parse::<usize>().ok().filter(|i| indexes.contains(i)) {
                        let reason = failed.message().unwrap_or(failed.code());
                        results[i] = Err(PipelineError::invalid(reason));
                    }
                }
            }
            Err(err) => {
                let failed = pipeline_error(err);
                for i in indexes {
                    results[i] = Err(failed.clone());
                }
            }
        }
    }
}

#[async_trait]
impl Publisher for SnsPublisher {
    /// Batches of at most 10 entries and 256 KiB in all (SNS refuses more; moto does not, so the
    /// limits are kept here); an event over 256 KiB on its own is refused without a call.
    async fn publish(&self, events: &[&Event]) -> Vec<Result<(), PipelineError>> {
        let mut results: Vec<Result<(), PipelineError>> = events.iter().map(|_| Ok(())).collect();
        let mut batch = Vec::with_capacity(PUBLISH_BATCH);
        let mut batch_bytes = 0;
        for (i, event) in events.iter().enumerate() {
            let (entry, size) = match Self::entry(i, event) {
                Ok(entry) => entry,
                Err(err) => {
                    results[i] = Err(err);
                    continue;
                }
            };
            if size > MAX_MESSAGE_BYTES {
                results[i] = Err(PipelineError::TooLarge {
                    what: "event",
                    size,
                    limit: MAX_MESSAGE_BYTES,
                });
                continue;
            }
            if batch.len() == PUBLISH_BATCH || batch_bytes + size > MAX_MESSAGE_BYTES {
                self.send_batch(std::mem::take(&mut batch), &mut results).await;
                batch_bytes = 0;
            }
            batch.push((i, entry));
            batch_bytes += size;
        }
        if !batch.is_empty() {
            self.send_batch(batch, &mut results).await;
        }
        results
    }
}

/// SQS limits: a send delay of at most 15 minutes, a visibility timeout of at most 12 hours,
/// 10 messages and 20 seconds of waiting per receive.
const MAX_DELAY: Duration = Duration::from_secs(900);
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
const MAX_RECEIVE: usize = 10;
const MAX_WAIT: Duration = Duration::from_secs(20);

pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: String) -> Self {
        Self { client, url }
    }
}

/// Whole seconds, rounded up: a message must not come back before it was asked to.
fn secs(d: Duration, max: Duration) -> i32 {
    let d = d.min(max);
    let whole = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    i32::try_from(whole.min(max.as_secs())).unwrap_or(i32::MAX)
}

#[async_trait]
impl DeliveryQueue for SqsQueue {
    async fn send(&self, body: &str, delay: Duration) -> Result<(), PipelineError> {
        if body.len() > MAX_MESSAGE_BYTES {
            // SQS refuses it; moto does not.
            return Err(PipelineError::TooLarge {
                what: "message",
                size: body.len(),
                limit: MAX_MESSAGE_BYTES,
            });
        }
        self.client
            .send_message()
            .queue_url(&self.url)
            .message_body(body)
            .delay_seconds(secs(delay, MAX_DELAY))
            .send()
            .await
            .map_err(pipeline_error)?;
        Ok(())
    }

    async fn receive(&self, max: usize, wait: Duration) -> Result<Vec<QueuedMessage>, PipelineError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max.clamp(1, MAX_RECEIVE) as i32)
            .wait_time_seconds(secs(wait, MAX_WAIT))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(pipeline_error)?;
        Ok(out
            .messages
            .unwrap_or_default()
            .into_iter()
            .map(|m| {
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|c| c.parse().ok())
                    .unwrap_or(1);
                let attributes = m
                    .message_attributes()
                    .map(|attrs| {
                        attrs
                            .iter()
                            .filter_map(|(k, v)| v.string_value().map(|s| (k.clone(), s.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                QueuedMessage {
                    message_id: m.message_id.unwrap_or_default(),
                    receipt: m.receipt_handle.unwrap_or_default(),
                    body: m.body.unwrap_or_default(),
                    receive_count,
                    attributes,
                }
            })
            .collect())
    }

    async fn delete(&self, receipt: &str) -> Result<(), PipelineError> {
        self.client
            .delete_message()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(pipeline_error)?;
        Ok(())
    }

    async fn set_visibility(&self, receipt: &str, timeout: Duration) -> Result<(), PipelineError> {
        // SQS refuses a visibility that ends more than 12 h after the receive; moto does not.
        // Refused here as SQS would, so a caller asking for it fails in every test, not only on
        // AWS (the dispatcher asks for at most 11 h at a time).
        if timeout > MAX_VISIBILITY {
            return Err(PipelineError::invalid(format!(
                "a visibility timeout of {} s is over SQS's limit of {} s",
                timeout.as_secs(),
                MAX_VISIBILITY.as_secs()
            )));
        }
        self.client
            .change_message_visibility()
            .queue_url(&self.url)
            .receipt_handle(receipt)
            .visibility_timeout(secs(timeout, MAX_VISIBILITY))
            .send()
            .await
            .map_err(pipeline_error)?;
        Ok(())
    }
}

/// Where the pipeline's topic and queues are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipelineResources {
    pub topic_arn: String,
    pub queue_url: String,
    /// The slow lane: deliveries to failing endpoints, so they never share a batch with healthy ones.
    pub slow_queue_url: String,
    pub dead_letter_queue_url: String,
    /// Steps of running replays, read by the replay runner.
    pub replay_steps_queue_url: String,
}

/// Settings of the order-updates queue.
#[derive(Clone, Copy, Debug)]
pub struct QueueSettings {
    pub visibility_timeout: Duration,
    pub max_receive_count: u32,
}

/// Creates (or finds: every call is idempotent) `{env}-checkout-events`, `{env}-order-updates`
/// and `{env}-slow-deliveries` with their redrive policy, `{env}-order-updates-dlq`,
/// `{env}-replay-steps`, and the raw-delivery subscription.
pub async fn create_pipeline(
    sns: &aws_sdk_sns::Client,
    sqs: &aws_sdk_sqs::Client,
    env: &str,
    settings: QueueSettings,
) -> Result<PipelineResources, PipelineError> {
    let topic_arn = sns
        .create_topic()
        .name(format!("{env}-checkout-events"))
        .send()
        .await
        .map_err(pipeline_error)?
        .topic_arn
        .ok_or_else(|| PipelineError::NotFound {
            what: "the created topic's ARN".to_owned(),
        })?;
    let dead_letter_queue_url = create_queue(sqs, &format!("{env}-order-updates-dlq"), HashMap::new()).await?;
    let dlq_arn = queue_arn(sqs, &dead_letter_queue_url).await?;
    let redrive = serde_json::json!({
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": settings.max_receive_count.to_string(),
    });
    let attributes = HashMap::from([
        (QueueAttributeName::RedrivePolicy, redrive.to_string()),
        (
            QueueAttributeName::VisibilityTimeout,
            settings.visibility_timeout.as_secs().to_string(),
        ),
    ]);
    let queue_url = create_queue(sqs, &format!("{env}-order-updates"), attributes.clone()).await?;
    let slow_queue_url = create_queue(sqs, &format!("{env}-slow-deliveries"), attributes).await?;
    let replay_steps_queue_url = create_queue(sqs, &format!("{env}-replay-steps"), HashMap::new()).await?;
    let queue_arn = queue_arn(sqs, &queue_url).await?;
    sns.subscribe()
        .topic_arn(&topic_arn)
        .protocol("sqs")
        .endpoint(queue_arn)
        .attributes("RawMessageDelivery", "true")
        .send()
        .await
        .map_err(pipeline_error)?;
    Ok(PipelineResources {
        topic_arn,
        queue_url,
        slow_queue_url,
        dead_letter_queue_url,
        replay_steps_queue_url,
    })
}

async fn create_queue(
    sqs: &aws_sdk_sqs::Client,
    name: &str,
    attributes: HashMap<QueueAttributeName, String>,
) -> Result<String, PipelineError> {
    sqs.create_queue()
        .queue_name(name)
        .set_attributes(Some(attributes))
        .send()
        .await
        .map_err(pipeline_error)?
        .queue_url
        .ok_or_else(|| PipelineError::NotFound {
            what: format!("the URL of queue {name}"),
        })
}

async fn queue_arn(sqs: &aws_sdk_sqs::Client, url: &str) -> Result<String, PipelineError> {
    sqs.get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(pipeline_error)?
        .attributes
        .and_then(|mut a| a.remove(&QueueAttributeName::QueueArn))
        .ok_or_else(|| PipelineError::NotFound {
            what: format!("the ARN of queue {url}"),
        })
}
