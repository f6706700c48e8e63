//! Reads the event store's DynamoDB stream the way the Lambda event source does, for
//! `acp-local --backend aws` and the tests: every shard in order, from where the last reader
//! left off.
//!
//! The position of each shard (the last record projected) is a checkpoint item in the
//! stream positions table, written after the records are projected, so a restart
//! goes on from there instead of re-publishing the whole stream. The shard list is described
//! once at start, when a shard is read to its end (DynamoDB then opens its child), and at
//! most once a minute otherwise: `DescribeStream` is limited to 10 calls per second per account.

use crate::dynamo::{Item, get_s, s};
use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use checkout::event::StreamRecord;
use checkout::ports::PipelineError;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How often the shard list is described when no shard has ended.
const DESCRIBE_EVERY: Duration = Duration::from_secs(60);

use crate::error::pipeline_error;

/// Whether the shard list must be described again.
fn must_describe(last: Option<Instant>, a_shard_ended: bool, now: Instant) -> bool {
    a_shard_ended || last.is_none_or(|at| now.duration_since(at) >= DESCRIBE_EVERY)
}

struct Shard {
    /// The next iterator; `None` once a closed shard is read to its end.
    iterator: Option<String>,
    /// The last record read and not yet checkpointed.
    unsaved: Option<String>,
}

pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    dynamodb: aws_sdk_dynamodb::Client,
    stream_arn: String,
    /// Where the checkpoints are kept.
    checkpoint_table: String,
    shards: HashMap<String, Shard>,
    described_at: Option<Instant>,
    a_shard_ended: bool,
}

impl StreamReader {
    /// Opens the stream of `table`, each shard positioned after its checkpoint in
    /// `checkpoint_table` (or at the oldest record still held).
    pub async fn open(
        dynamodb: &aws_sdk_dynamodb::Client,
        client: aws_sdk_dynamodbstreams::Client,
        table: &str,
        checkpoint_table: &str,
    ) -> Result<Self, PipelineError> {
        let description = dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(pipeline_error)?;
        let stream_arn =
            description
                .table
                .and_then(|t| t.latest_stream_arn)
                .ok_or_else(|| PipelineError::NotFound {
                    what: format!("the stream of table {table}"),
                })?;
        let mut reader = Self {
            client,
            dynamodb: dynamodb.clone(),
            stream_arn,
            checkpoint_table: checkpoint_table.to_owned(),
            shards: HashMap::new(),
            described_at: None,
            a_shard_ended: false,
        };
        reader.discover_shards().await?;
        Ok(reader)
    }

    fn checkpoint_key(&self, shard: &str) -> Item {
        HashMap::from([(
            "session_id".to_owned(),
            s(&format!("stream-checkpoint#{}#{shard}", self.stream_arn)),
        )])
    }

    async fn saved_position(&self, shard: &str) -> Result<Option<String>, PipelineError> {
        let out = self
            .dynamodb
            .get_item()
            .table_name(&self.checkpoint_table)
            .set_key(Some(self.checkpoint_key(shard)))
            .consistent_read(true)
            .send()
            .await
            .map_err(pipeline_error)?;
        Ok(out
            .item
            .and_then(|item| get_s(&item, "sequence").ok().map(str::to_owned)))
    }

    async fn discover_shards(&mut self) -> Result<(), PipelineError> {
        let description = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .map_err(pipeline_error)?;
        self.described_at = Some(Instant::now());
        self.a_shard_ended = false;
        let shards = description
            .stream_description
            .map(|d| d.shards.unwrap_or_default())
            .unwrap_or_default();
        for shard in shards {
            let Some(id) = shard.shard_id else { continue };
            if self.shards.contains_key(&id) {
                continue;
            }
            let request = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(&id);
            let request = match self.saved_position(&id).await? {
                Some(sequence) => request
                    .shard_iterator_type(ShardIteratorType::AfterSequenceNumber)
                    .sequence_number(sequence),
                None => request.shard_iterator_type(ShardIteratorType::TrimHorizon),
            };
            let iterator = request.send().await.map_err(pipeline_error)?.shard_iterator;
            self.shards.insert(
                id,
                Shard {
                    iterator,
                    unsaved: None,
                },
            );
        }
        Ok(())
    }

    /// The records that arrived since the last poll, per shard in stream order.
    pub async fn poll(&mut self) -> Result<Vec<StreamRecord>, PipelineError> {
        if must_describe(self.described_at, self.a_shard_ended, Instant::now()) {
            self.discover_shards().await?;
        }
        let mut records = Vec::new();
        for shard in self.shards.values_mut() {
            let Some(iterator) = shard.iterator.clone() else {
                continue;
            };
            let out = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .send()
                .await
                .map_err(pipeline_error)?;
            for record in out.records.unwrap_or_default() {
                let Some(change) = record.dynamodb else { continue };
                let sequence = change.sequence_number.unwrap_or_default();
                shard.unsaved = Some(sequence.clone());
                let stored = change
                    .new_image
                    .as_ref()
                    .and_then(|image| image.get(crate::stored_event::ATTRIBUTE));
                records.push(StreamRecord {
                    sequence,
                    event: event_of(stored),
                });
            }
            shard.iterator = out.next_shard_iterator;
            self.a_shard_ended |= shard.iterator.is_none();
        }
        Ok(records)
    }

    /// Records the position of everything polled so far: call it once those records are
    /// projected. A restart then reads on from here.
    pub async fn checkpoint(&mut self) -> Result<(), PipelineError> {
        let unsaved: Vec<(String, String)> = self
            .shards
            .iter()
            .filter_map(|(id, shard)| Some((id.clone(), shard.unsaved.clone()?)))
            .collect();
        for (id, sequence) in unsaved {
            let mut item = self.checkpoint_key(&id);
            item.insert("sequence".to_owned(), s(&sequence));
            self.dynamodb
                .put_item()
                .table_name(&self.checkpoint_table)
                .set_item(Some(item))
                .send()
                .await
                .map_err(pipeline_error)?;
            if let Some(shard) = self.shards.get_mut(&id)
                && shard.unsaved.as_deref() == Some(sequence.as_str())
            {
                shard.unsaved = None;
            }
        }
        Ok(())
    }
}

/// The event a stream image's `event` attribute holds, or why there is none.
fn event_of(value: Option<&aws_sdk_dynamodbstreams::types::AttributeValue>) -> Result<checkout::event::Event, String> {
    use aws_sdk_dynamodbstreams::types::AttributeValue;
    let decoded = match value {
        Some(AttributeValue::B(bytes)) => crate::stored_event::decode(bytes.as_ref()),
        Some(AttributeValue::S(json)) => crate::stored_event::decode_json(json),
        _ => return Err("record carries no event".to_owned()),
    };
    decoded.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shard_list_is_described_at_start_when_a_shard_ends_and_once_a_minute() {
        let now = Instant::now();
        assert!(must_describe(None, false, now), "at start");
        assert!(!must_describe(Some(now), false, now), "not on every poll");
        assert!(must_describe(Some(now), true, now), "a shard ended: its child is new");
        assert!(must_describe(Some(now), false, now + DESCRIBE_EVERY));
    }
}
