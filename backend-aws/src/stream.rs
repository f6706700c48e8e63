//! Reads the event store's DynamoDB stream the way the Lambda event source does, for
//! `acp-local --backend aws` and the tests: every shard from its start, polled in order.

use aws_sdk_dynamodbstreams::types::ShardIteratorType;
use checkout::event::StreamRecord;
use checkout::ports::PipelineError;
use std::collections::HashMap;

fn stream_error<E: std::error::Error>(err: E) -> PipelineError {
    PipelineError(aws_sdk_dynamodbstreams::error::DisplayErrorContext(err).to_string())
}

pub struct StreamReader {
    client: aws_sdk_dynamodbstreams::Client,
    stream_arn: String,
    /// Next iterator per shard; `None` once a closed shard is read to its end.
    iterators: HashMap<String, Option<String>>,
}

impl StreamReader {
    /// Opens the stream of `table`, positioned at the oldest record still held.
    pub async fn open(
        dynamodb: &aws_sdk_dynamodb::Client,
        client: aws_sdk_dynamodbstreams::Client,
        table: &str,
    ) -> Result<Self, PipelineError> {
        let description = dynamodb
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| PipelineError(aws_sdk_dynamodb::error::DisplayErrorContext(e).to_string()))?;
        let stream_arn = description
            .table
            .and_then(|t| t.latest_stream_arn)
            .ok_or_else(|| PipelineError(format!("table {table} has no stream")))?;
        let mut reader = Self {
            client,
            stream_arn,
            iterators: HashMap::new(),
        };
        reader.discover_shards().await?;
        Ok(reader)
    }

    async fn discover_shards(&mut self) -> Result<(), PipelineError> {
        let description = self
            .client
            .describe_stream()
            .stream_arn(&self.stream_arn)
            .send()
            .await
            .map_err(stream_error)?;
        let shards = description
            .stream_description
            .map(|d| d.shards.unwrap_or_default())
            .unwrap_or_default();
        for shard in shards {
            let Some(id) = shard.shard_id else { continue };
            if self.iterators.contains_key(&id) {
                continue;
            }
            let iterator = self
                .client
                .get_shard_iterator()
                .stream_arn(&self.stream_arn)
                .shard_id(&id)
                .shard_iterator_type(ShardIteratorType::TrimHorizon)
                .send()
                .await
                .map_err(stream_error)?
                .shard_iterator;
            self.iterators.insert(id, iterator);
        }
        Ok(())
    }

    /// The records that arrived since the last poll, per shard in stream order.
    pub async fn poll(&mut self) -> Result<Vec<StreamRecord>, PipelineError> {
        self.discover_shards().await?;
        let mut records = Vec::new();
        for next in self.iterators.values_mut() {
            let Some(iterator) = next.clone() else { continue };
            let out = self
                .client
                .get_records()
                .shard_iterator(iterator)
                .send()
                .await
                .map_err(stream_error)?;
            for record in out.records.unwrap_or_default() {
                let Some(change) = record.dynamodb else { continue };
                let sequence = change.sequence_number.unwrap_or_default();
                let json = change
                    .new_image
                    .as_ref()
                    .and_then(|image| image.get("event"))
                    .and_then(|value| value.as_s().ok());
                records.push(StreamRecord::from_json(sequence, json.map(String::as_str)));
            }
            *next = out.next_shard_iterator;
        }
        Ok(records)
    }
}
