//! The attempt log in DynamoDB: partition key the target (an endpoint id or the order
//! webhook), sort key `{event_id}#{attempt}` — event ids are ULIDs, so a target's attempts sort
//! by event time, and one event's attempts are a key prefix. One item per attempt, expiring after
//! the log's retention: usually under 1 KB (one write unit); the receiver's answer snippet, up to
//! 4 KiB, can make it several.

use crate::dynamo::{DynamoStore, Item, conditional_put, doc, get_s, n, s, to_doc};
use crate::error::{failed_call, unavailable};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};
use checkout::attempt_log::{self, AttemptQuery, AttemptRecord};
use checkout::ids::EventId;
use checkout::ports::{DeliveryLog, StoreError};
use std::collections::{HashMap, HashSet};

fn record_item(record: &AttemptRecord) -> Result<Item, StoreError> {
    let expires = record.at + attempt_log::RETENTION;
    Ok(HashMap::from([
        ("target".to_owned(), s(&record.target)),
        ("sk".to_owned(), s(&record.sort_key())),
        ("doc".to_owned(), to_doc(record)?),
        ("expires_at".to_owned(), n(expires.timestamp())),
    ]))
    .map(|mut item| {
        if record.delivered() {
            item.insert(DELIVERED.to_owned(), AttributeValue::Bool(true));
        }
        item
    })
}

/// Set on the item of a delivered attempt, so a conditional put can tell it from a failure.
const DELIVERED: &str = "delivered";

/// Keys per `BatchGetItem` (the DynamoDB limit).
const BATCH_GET_MAX: usize = 100;

impl DynamoStore {
    /// Which of these (target, sk) keys exist, by `BatchGetItem` (consistent, keys only),
    /// asking again for keys DynamoDB leaves unprocessed.
    async fn existing_keys(&self, keys: Vec<Item>) -> Result<Vec<(String, String)>, StoreError> {
        let mut found = Vec::new();
        let mut pending = Some(keys);
        let mut round = 0u32;
        while let Some(keys) = pending.take().filter(|k| !k.is_empty()) {
            if round > 0 {
                // Unprocessed keys mean the table is throttling us: back off a little.
                tokio::time::sleep(std::time::Duration::from_millis(20 << round.min(5))).await;
            }
            round += 1;
            let request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .projection_expression("#t, sk")
                .expression_attribute_names("#t", "target")
                .build()
                .map_err(unavailable)?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&self.tables.deliveries, request)
                .send()
                .await
                .map_err(failed_call)?;
            for item in out
                .responses
                .unwrap_or_default()
                .remove(&self.tables.deliveries)
                .unwrap_or_default()
            {
                found.push((get_s(&item, "target")?.to_owned(), get_s(&item, "sk")?.to_owned()));
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut left| left.remove(&self.tables.deliveries))
                .map(|left| left.keys);
        }
        Ok(found)
    }

    async fn query_attempts(
        &self,
        target: &str,
        condition: &str,
        values: &[(&str, String)],
        newest_first: bool,
        limit: Option<usize>,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut records = Vec::new();
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.tables.deliveries)
                .key_condition_expression(condition)
                .expression_attribute_values(":t", s(target))
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                .set_exclusive_start_key(start);
            for (name, value) in values {
                query = query.expression_attribute_values(*name, s(value));
            }
            if let Some(limit) = limit {
                let left = limit.saturating_sub(records.len()).max(1);
                query = query.limit(i32::try_from(left).unwrap_or(i32::MAX));
            }
            let out = query.send().await.map_err(failed_call)?;
            for item in out.items() {
                records.push(doc(item, "attempt")?);
            }
            start = out.last_evaluated_key;
            let full = limit.is_some_and(|l| records.len() >= l);
            if full || start.is_none() {
                return Ok(records);
            }
        }
    }
}

#[async_trait]
impl DeliveryLog for DynamoStore {
    async fn record(&self, record: &AttemptRecord) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.deliveries)
            .set_item(Some(record_item(record)?))
            // A delivered attempt replaces a failed record of the same attempt (see the port).
            .condition_expression(if record.delivered() {
                "attribute_not_exists(sk) OR attribute_not_exists(delivered)"
            } else {
                "attribute_not_exists(sk)"
            })
            .send()
            .await;
        conditional_put(result)
    }

    async fn started(&self, pairs: &[(&str, &EventId)]) -> Result<Vec<bool>, StoreError> {
        let mut found = HashSet::new();
        for chunk in pairs.chunks(BATCH_GET_MAX) {
            let keys = chunk
                .iter()
                .map(|(target, event)| {
                    HashMap::from([
                        ("target".to_owned(), s(target)),
                        ("sk".to_owned(), s(&attempt_log::sort_key(event, 1))),
                    ])
                })
                .collect();
            found.extend(self.existing_keys(keys).await?);
        }
        Ok(pairs
            .iter()
            .map(|(target, event)| found.contains(&((*target).to_owned(), attempt_log::sort_key(event, 1))))
            .collect())
    }

    async fn latest(&self, target: &str, event: &EventId) -> Result<Option<AttemptRecord>, StoreError> {
        let prefix = [(":p", attempt_log::event_prefix(event))];
        let found = self
            .query_attempts(target, "target = :t AND begins_with(sk, :p)", &prefix, true, Some(1))
            .await?;
        Ok(found.into_iter().next())
    }

    async fn attempts_of(&self, target: &str, event: &EventId) -> Result<Vec<AttemptRecord>, StoreError> {
        let prefix = [(":p", attempt_log::event_prefix(event))];
        self.query_attempts(target, "target = :t AND begins_with(sk, :p)", &prefix, false, None)
            .await
    }

    async fn attempts(&self, target: &str, query: &AttemptQuery) -> Result<Vec<AttemptRecord>, StoreError> {
        let from = query.from.clone().unwrap_or_default();
        let limit = Some(query.limit);
        match &query.before {
            Some(before) if *before <= from => Ok(Vec::new()),
            Some(before) if from.is_empty() => {
                let bound = [(":before", before.clone())];
                self.query_attempts(target, "target = :t AND sk < :before", &bound, true, limit)
                    .await
            }
            Some(before) => {
                // BETWEEN is inclusive; the cursor's own record was on the previous page.
                let bounds = [(":from", from), (":before", before.clone())];
                let mut page = self
                    .query_attempts(
                        target,
                        "target = :t AND sk BETWEEN :from AND :before",
                        &bounds,
                        true,
                        limit.map(|l| l + 1),
                    )
                    .await?;
                page.retain(|r| r.sort_key() < *before);
                page.truncate(query.limit);
                Ok(page)
            }
            None if from.is_empty() => self.query_attempts(target, "target = :t", &[], true, limit).await,
            None => {
                self.query_attempts(target, "target = :t AND sk >= :from", &[(":from", from)], true, limit)
                    .await
            }
        }
    }
}
