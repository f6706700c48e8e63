//! A DynamoDB Streams event source mapping, as the template configures it: records from the
//! starting position, in batches of up to `BatchSize` (waiting up to the batching window), each
//! shard in order. With `ReportBatchItemFailures`, an answer naming a failed record sends the
//! batch again from that record; a failed invocation is bisected (`BisectBatchOnFunctionError`)
//! down to the one record at fault. A record that has failed `MaximumRetryAttempts` times is
//! skipped, and the batch's details go to the on-failure queue, as Lambda does.

use crate::runtime_api::{Function, Invocation};
use crate::template::StreamSource as Settings;
use aws_sdk_dynamodbstreams::types::{AttributeValue, Record, ShardIteratorType};
use base64::Engine;
use serde_json::{Map, Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub struct StreamSource {
    reader: JoinHandle<()>,
}

impl Drop for StreamSource {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

/// Where records the function gave up on are reported.
pub struct OnFailure {
    pub sqs: aws_sdk_sqs::Client,
    pub queue_url: String,
}

impl StreamSource {
    pub fn start(
        streams: aws_sdk_dynamodbstreams::Client,
        stream_arn: String,
        settings: Settings,
        function: Arc<Function>,
        on_failure: Option<OnFailure>,
    ) -> StreamSource {
        let mapping = Mapping {
            streams,
            stream_arn,
            settings,
            function,
            on_failure,
        };
        StreamSource {
            reader: tokio::spawn(async move { mapping.run().await }),
        }
    }
}

struct Mapping {
    streams: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    settings: Settings,
    function: Arc<Function>,
    on_failure: Option<OnFailure>,
}

impl Mapping {
    async fn run(&self) {
        // moto's tables have one shard; a shard that ends is followed by its children.
        let mut iterators = Vec::new();
        while iterators.is_empty() {
            iterators = self.first_iterators().await;
            if iterators.is_empty() {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        let mut pending: Vec<Record> = Vec::new();
        loop {
            let mut next_round = Vec::new();
            for iterator in iterators {
                match self
                    .streams
                    .get_records()
                    .shard_iterator(&iterator)
                    .limit(self.settings.batch_size.min(1000) as i32)
                    .send()
                    .await
                {
                    Ok(out) => {
                        pending.extend(out.records.unwrap_or_default());
                        if let Some(next) = out.next_shard_iterator {
                            next_round.push(next);
                        }
                    }
                    Err(_) => next_round.push(iterator),
                }
            }
            iterators = next_round;
            if !pending.is_empty() {
                // The batching window: a little longer for more records, unless the batch is full.
                if pending.len() < self.settings.batch_size && !self.settings.window.is_zero() {
                    tokio::time::sleep(self.settings.window.min(Duration::from_millis(200))).await;
                }
                let batch: Vec<Record> = pending.drain(..pending.len().min(self.settings.batch_size)).collect();
                self.deliver(batch).await;
            } else {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn first_iterators(&self) -> Vec<String> {
        let Ok(described) = self.streams.describe_stream().stream_arn(&self.stream_arn).send().await else {
            return Vec::new();
        };
        let shards = described.stream_description.and_then(|d| d.shards).unwrap_or_default();
        let kind = if self.settings.trim_horizon {
            ShardIteratorType::TrimHorizon
        } else {
            ShardIteratorType::Latest
        };
        let mut iterators = Vec::new();
        for shard in shards {
            if let Ok(out) = self
                .streams
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(shard.shard_id().unwrap_or_default())
                .shard_iterator_type(kind.clone())
                .send()
                .await
                && let Some(iterator) = out.shard_iterator
            {
                iterators.push(iterator);
            }
        }
        iterators
    }

    /// Hands `batch` to the function until every record is done or given up on.
    async fn deliver(&self, batch: Vec<Record>) {
        let mut queue: Vec<Vec<Record>> = vec![batch];
        let mut failures = 0u32;
        while let Some(batch) = queue.pop() {
            if batch.is_empty() {
                continue;
            }
            let event = json!({ "Records": batch.iter().map(|r| self.record(r)).collect::<Vec<_>>() });
            let retry_from = match self.function.invoke(&event).await {
                Invocation::Response(answer) if self.settings.report_item_failures => retry_position(&answer, &batch),
                Invocation::Response(_) => None,
                Invocation::Error(_) => Some(0),
            };
            let Some(from) = retry_from else {
                failures = 0;
                continue;
            };
            failures += 1;
            let mut rest: Vec<Record> = batch.into_iter().skip(from).collect();
            if failures > self.settings.max_retries {
                // Given up: the first record at fault is skipped and reported.
                let skipped = rest.remove(0);
                self.report(&skipped).await;
                failures = 0;
            } else if self.settings.bisect_on_error && rest.len() > 1 && from == 0 {
                let second = rest.split_off(rest.len() / 2);
                queue.push(second);
            }
            queue.push(rest);
        }
    }

    async fn report(&self, record: &Record) {
        let Some(on_failure) = &self.on_failure else { return };
        let sequence = sequence_of(record);
        let body = json!({
            "requestContext": { "condition": "RetryAttemptsExhausted", "approximateInvokeCount": self.settings.max_retries + 1 },
            "responseContext": { "statusCode": 200, "executedVersion": "$LATEST" },
            "version": "1.0",
            "DDBStreamBatchInfo": {
                "startSequenceNumber": sequence,
                "endSequenceNumber": sequence,
                "streamArn": self.stream_arn,
                "batchSize": 1,
            },
        });
        let _ = on_failure
            .sqs
            .send_message()
            .queue_url(&on_failure.queue_url)
            .message_body(body.to_string())
            .send()
            .await;
    }

    /// A stream record as the DynamoDB event carries it.
    fn record(&self, r: &Record) -> Value {
        let change = r.dynamodb();
        let image = |map: Option<&std::collections::HashMap<String, AttributeValue>>| -> Value {
            Value::Object(
                map.into_iter()
                    .flatten()
                    .map(|(k, v)| (k.clone(), attribute(v)))
                    .collect(),
            )
        };
        json!({
            "eventID": r.event_id(),
            "eventName": r.event_name().map(|n| n.as_str()),
            "eventVersion": r.event_version().unwrap_or("1.1"),
            "eventSource": "aws:dynamodb",
            "awsRegion": r.aws_region().unwrap_or("us-east-1"),
            "eventSourceARN": self.stream_arn,
            "dynamodb": {
                "ApproximateCreationDateTime": change.and_then(|c| c.approximate_creation_date_time()).map(|t| t.secs()),
                "Keys": image(change.and_then(|c| c.keys.as_ref())),
                "NewImage": image(change.and_then(|c| c.new_image.as_ref())),
                "SequenceNumber": change.and_then(|c| c.sequence_number()),
                "SizeBytes": change.and_then(|c| c.size_bytes()),
                "StreamViewType": change.and_then(|c| c.stream_view_type()).map(|t| t.as_str()),
            },
        })
    }
}

/// Where a partial batch response says to retry from: the earliest failed record. An entry
/// without an identifier, or naming a record not in the batch, fails the whole batch (as Lambda
/// treats an invalid response).
fn retry_position(answer: &Value, batch: &[Record]) -> Option<usize> {
    let entries = answer.get("batchItemFailures")?;
    let Some(entries) = entries.as_array() else {
        return Some(0);
    };
    let mut earliest: Option<usize> = None;
    for entry in entries {
        let position = entry["itemIdentifier"]
            .as_str()
            .and_then(|sequence| batch.iter().position(|r| sequence_of(r) == sequence));
        let Some(position) = position else { return Some(0) };
        earliest = Some(earliest.map_or(position, |e| e.min(position)));
    }
    earliest
}

fn sequence_of(record: &Record) -> &str {
    record.dynamodb().and_then(|c| c.sequence_number()).unwrap_or_default()
}

/// An attribute value in DynamoDB's JSON form (`{"S": "…"}`).
fn attribute(value: &AttributeValue) -> Value {
    let b64 =
        |b: &aws_sdk_dynamodbstreams::primitives::Blob| base64::engine::general_purpose::STANDARD.encode(b.as_ref());
    match value {
        AttributeValue::S(s) => json!({ "S": s }),
        AttributeValue::N(n) => json!({ "N": n }),
        AttributeValue::Bool(b) => json!({ "BOOL": b }),
        AttributeValue::Null(_) => json!({ "NULL": true }),
        AttributeValue::B(b) => json!({ "B": b64(b) }),
        AttributeValue::Ss(v) => json!({ "SS": v }),
        AttributeValue::Ns(v) => json!({ "NS": v }),
        AttributeValue::Bs(v) => json!({ "BS": v.iter().map(b64).collect::<Vec<_>>() }),
        AttributeValue::L(v) => json!({ "L": v.iter().map(attribute).collect::<Vec<_>>() }),
        AttributeValue::M(m) => {
            let map: Map<String, Value> = m.iter().map(|(k, v)| (k.clone(), attribute(v))).collect();
            json!({ "M": map })
        }
        _ => json!({ "NULL": true }),
    }
}
