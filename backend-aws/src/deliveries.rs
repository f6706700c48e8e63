//! The attempt log in DynamoDB, partition key the target (an endpoint id or the order webhook).
//!
//! - Later attempts, and replays, are one item each: sort key `{event_id}#{attempt}` — event ids
//!   are ULIDs, so a target's attempts sort by event time and one event's attempts are a key
//!   prefix. Written conditionally, so two copies of a message cannot both record an attempt.
//! - First attempts — almost every delivery — are kept together: one item per target and second
//!   of event time for a queue batch, sort key `g#{second}#{ulid}`, the records a JSON array
//!   compressed with DEFLATE in the binary attribute `records`. A first attempt alone is a
//!   ~400-byte item, one write unit; a batch's together cost one for all (~70 bytes each). They
//!   are written unconditionally; readers merge copies ([`attempt_log::merge`]).
//!
//! Every item expires after the log's retention. Readers of one event's attempts query both
//! places: its key prefix and its second's groups (a few KB even at a hundred events a second).

use crate::dynamo::{DynamoStore, Item, conditional_put, doc, get_s, n, s, to_doc};
use crate::error::{corrupt, failed_call, unavailable};
use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use checkout::attempt_log::{self, AttemptQuery, AttemptRecord, event_second, second_of_sort_key};
use checkout::deflate;
use checkout::ids::EventId;
use checkout::ports::{DeliveryLog, StoreError};
use futures_util::future::try_join_all;
use std::collections::{BTreeMap, HashMap, HashSet};

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

/// The attribute of a group item holding its records.
const RECORDS: &str = "records";
/// `records` is codec byte 1 then raw DEFLATE of the JSON array.
const GROUP_DEFLATE: u8 = 1;
/// Records per group item: 16 with the largest answer snippet each (4 KiB of control bytes, six
/// JSON bytes apiece: 24 KiB) stay under the 400 KB item limit even uncompressed.
const GROUP_MAX: usize = 16;
/// More than any group decompresses to.
const GROUP_MAX_DECODED: usize = 1024 * 1024;
/// Items per `BatchWriteItem` (the DynamoDB limit).
const BATCH_WRITE_MAX: usize = 25;
/// Items per page when paging through groups: a page stops early when it has enough.
const GROUP_PAGE: i32 = 16;
/// Rounds of `BatchWriteItem` for items DynamoDB leaves unprocessed before giving up: a table
/// that keeps throttling is unavailable, and the messages come back.
const WRITE_ROUNDS: u32 = 6;

/// The sort-key prefix of the groups of one second; seconds are zero-padded to the 12 digits of
/// the last second a ULID can name, so they sort.
fn group_prefix(second: i64) -> String {
    format!("g#{second:012}#")
}

/// The second a group's sort key names.
fn group_second(sk: &str) -> Option<i64> {
    sk.strip_prefix("g#")?.get(..12)?.parse().ok()
}

fn group_item(target: &str, second: i64, records: &[&AttemptRecord]) -> Result<Item, StoreError> {
    let json = serde_json::to_vec(records).map_err(|e| corrupt(&format!("attempt records: {e}")))?;
    let bytes = deflate::compress(&json, None, &[GROUP_DEFLATE], deflate::Effort::Smallest).map_err(unavailable)?;
    let newest = records.iter().map(|r| r.at).max().unwrap_or_else(checkout::clock::now);
    Ok(HashMap::from([
        ("target".to_owned(), s(target)),
        (
            "sk".to_owned(),
            s(&format!("{}{}", group_prefix(second), ulid::Ulid::new())),
        ),
        (RECORDS.to_owned(), AttributeValue::B(bytes.into())),
        (
            "expires_at".to_owned(),
            n((newest + attempt_log::RETENTION).timestamp()),
        ),
    ]))
}

/// One item per target and second of event time, at most [`GROUP_MAX`] records each; and the
/// records whose event id names no second (not a ULID), which keep an item each.
fn group_items(records: &[AttemptRecord]) -> Result<(Vec<Item>, Vec<&AttemptRecord>), StoreError> {
    let mut groups: BTreeMap<(&str, i64), Vec<&AttemptRecord>> = BTreeMap::new();
    let mut alone = Vec::new();
    for record in records {
        match event_second(&record.event_id) {
            Some(second) => groups.entry((record.target.as_str(), second)).or_default().push(record),
            None => alone.push(record),
        }
    }
    let mut items = Vec::new();
    for ((target, second), records) in groups {
        for chunk in records.chunks(GROUP_MAX) {
            items.push(group_item(target, second, chunk)?);
        }
    }
    Ok((items, alone))
}

/// The records of an item: a group's, or the one record of an attempt's own item.
fn records_of(item: &Item) -> Result<Vec<AttemptRecord>, StoreError> {
    let Some(group) = item.get(RECORDS) else {
        return Ok(vec![doc(item, "attempt")?]);
    };
    let bytes = group
        .as_b()
        .map_err(|_| corrupt("attempt group: records not binary"))?
        .as_ref();
    match bytes.split_first() {
        Some((&GROUP_DEFLATE, compressed)) => {
            let json = deflate::decompress(compressed, None, GROUP_MAX_DECODED)
                .map_err(|e| corrupt(&format!("attempt group: {e}")))?;
            serde_json::from_slice(&json).map_err(|e| corrupt(&format!("attempt group: {e}")))
        }
        _ => Err(corrupt("attempt group: unknown codec")),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("DynamoDB kept leaving attempt records unprocessed (the table is throttling)")]
struct Throttled;

/// A key condition and its values.
struct KeyCondition<'a> {
    expression: &'a str,
    values: Vec<(&'a str, String)>,
}

impl DynamoStore {
    /// Pages through a target's items newest (or oldest) first, handing each to `take` until it
    /// answers `false`.
    async fn query_items(
        &self,
        target: &str,
        condition: KeyCondition<'_>,
        newest_first: bool,
        page: Option<i32>,
        mut take: impl FnMut(&Item) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut start = None;
        loop {
            let mut query = self
                .client
                .query()
                .table_name(&self.tables.deliveries)
                .key_condition_expression(condition.expression)
                .expression_attribute_values(":t", s(target))
                .consistent_read(true)
                .scan_index_forward(!newest_first)
                .set_limit(page)
                .set_exclusive_start_key(start);
            for (name, value) in &condition.values {
                query = query.expression_attribute_values(*name, s(value));
            }
            let out = query.send().await.map_err(failed_call)?;
            for item in out.items() {
                if !take(item)? {
                    return Ok(());
                }
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(());
            }
        }
    }

    /// Every record in the target's items that match the condition.
    async fn query_records(
        &self,
        target: &str,
        condition: KeyCondition<'_>,
        newest_first: bool,
        limit: Option<usize>,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let mut records = Vec::new();
        let page = limit.map(|l| i32::try_from(l).unwrap_or(i32::MAX));
        self.query_items(target, condition, newest_first, page, |item| {
            records.extend(records_of(item)?);
            Ok(limit.is_none_or(|l| records.len() < l))
        })
        .await?;
        Ok(records)
    }

    /// The first attempts kept in the target's groups of one second.
    async fn grouped_in(&self, target: &str, second: i64) -> Result<Vec<AttemptRecord>, StoreError> {
        let condition = KeyCondition {
            expression: "target = :t AND begins_with(sk, :g)",
            values: vec![(":g", group_prefix(second))],
        };
        self.query_records(target, condition, false, None).await
    }

    /// Every record of one event to one target, from its own items and its second's groups.
    async fn records_of_event(&self, target: &str, event: &EventId) -> Result<Vec<AttemptRecord>, StoreError> {
        let own = KeyCondition {
            expression: "target = :t AND begins_with(sk, :p)",
            values: vec![(":p", attempt_log::event_prefix(event))],
        };
        let grouped = async {
            match event_second(event) {
                Some(second) => self.grouped_in(target, second).await,
                None => Ok(Vec::new()),
            }
        };
        let (own, grouped) =
            futures_util::future::try_join(self.query_records(target, own, false, None), grouped).await?;
        let grouped = grouped.into_iter().filter(|r| r.event_id == *event);
        Ok(attempt_log::merge(own.into_iter().chain(grouped)))
    }

    /// Up to `limit` of the records in groups whose sort keys fall in [from, before), newest
    /// first. Groups are read second by second, newest first, and whole: a second's records are
    /// in no particular order among its groups, but all sort after every earlier second's.
    async fn grouped_page(&self, target: &str, query: &AttemptQuery) -> Result<Vec<AttemptRecord>, StoreError> {
        let low = [&query.from, &query.after]
            .into_iter()
            .filter_map(|bound| bound.as_deref().and_then(second_of_sort_key))
            .max()
            .unwrap_or(0);
        let high = query
            .before
            .as_deref()
            .and_then(second_of_sort_key)
            .unwrap_or(99_999_999_999);
        let condition = KeyCondition {
            expression: "target = :t AND sk BETWEEN :low AND :high",
            values: vec![
                (":low", group_prefix(low)),
                (":high", format!("{}~", group_prefix(high))),
            ],
        };
        let mut records = Vec::new();
        // Two copies may have recorded one attempt: count attempts, not records.
        let mut distinct = HashSet::new();
        let mut second = None;
        self.query_items(target, condition, !query.oldest_first, Some(GROUP_PAGE), |item| {
            let this = group_second(get_s(item, "sk")?);
            if second != this && distinct.len() >= query.limit {
                return Ok(false);
            }
            second = this;
            for record in records_of(item)? {
                let key = record.sort_key();
                if query.contains(&key) {
                    distinct.insert(key);
                    records.push(record);
                }
            }
            Ok(true)
        })
        .await?;
        Ok(records)
    }

    /// Up to `limit` of the attempts' own items in the query's window, in its order.
    async fn own_page(&self, target: &str, query: &AttemptQuery) -> Result<Vec<AttemptRecord>, StoreError> {
        // Own items' keys start with the event prefix; groups' (`g#…`) sort after them all.
        let low = [&query.from, &query.after]
            .into_iter()
            .flatten()
            .max()
            .cloned()
            .unwrap_or_else(|| EventId::PREFIX.to_owned());
        let high = query.before.clone().unwrap_or_else(|| format!("{}~", EventId::PREFIX));
        if high <= low {
            return Ok(Vec::new());
        }
        let condition = KeyCondition {
            expression: "target = :t AND sk BETWEEN :low AND :high",
            values: vec![(":low", low), (":high", high)],
        };
        // BETWEEN is inclusive; the cursors' own records were on the previous page.
        let mut page = self
            .query_records(target, condition, !query.oldest_first, Some(query.limit + 2))
            .await?;
        page.retain(|r| query.contains(&r.sort_key()));
        page.truncate(query.limit);
        Ok(page)
    }

    /// Writes the items, asking again for those DynamoDB leaves unprocessed.
    async fn write_all(&self, items: Vec<Item>) -> Result<(), StoreError> {
        for chunk in items.chunks(BATCH_WRITE_MAX) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    let put = PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map_err(unavailable)?;
                    Ok(WriteRequest::builder().put_request(put).build())
                })
                .collect::<Result<_, StoreError>>()?;
            let mut round = 0u32;
            while !pending.is_empty() {
                if round == WRITE_ROUNDS {
                    return Err(unavailable(Throttled));
                }
                if round > 0 {
                    // Unprocessed items mean the table is throttling us: back off a little.
                    tokio::time::sleep(std::time::Duration::from_millis(20 << round.min(5))).await;
                }
                round += 1;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.tables.deliveries, pending)
                    .send()
                    .await
                    .map_err(failed_call)?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut left| left.remove(&self.tables.deliveries))
                    .unwrap_or_default();
            }
        }
        Ok(())
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

    async fn record_first_attempts(&self, records: &[AttemptRecord]) -> Result<(), StoreError> {
        let (mut items, alone) = group_items(records)?;
        for record in alone {
            self.record(record).await?;
        }
        if items.len() > 1 {
            return self.write_all(items).await;
        }
        let Some(item) = items.pop() else {
            return Ok(());
        };
        self.client
            .put_item()
            .table_name(&self.tables.deliveries)
            .set_item(Some(item))
            .send()
            .await
            .map_err(failed_call)?;
        Ok(())
    }

    async fn started(&self, pairs: &[(&str, &EventId)]) -> Result<Vec<bool>, StoreError> {
        let mut groups = HashSet::new();
        let mut alone = Vec::new();
        for &(target, event) in pairs {
            match event_second(event) {
                Some(second) => groups.insert((target, second)),
                None => {
                    alone.push((target, event));
                    true
                }
            };
        }
        let grouped = try_join_all(groups.iter().map(|&(target, second)| self.grouped_in(target, second)));
        let own = try_join_all(
            alone
                .iter()
                .map(|&(target, event)| self.records_of_event(target, event)),
        );
        let (grouped, own) = futures_util::future::try_join(grouped, own).await?;
        let begun: HashSet<(String, EventId)> = grouped
            .into_iter()
            .chain(own)
            .flatten()
            .filter(AttemptRecord::is_first)
            .map(|r| (r.target, r.event_id))
            .collect();
        Ok(pairs
            .iter()
            .map(|(target, event)| begun.contains(&((*target).to_owned(), (*event).clone())))
            .collect())
    }

    async fn latest(&self, target: &str, event: &EventId) -> Result<Option<AttemptRecord>, StoreError> {
        Ok(self.records_of_event(target, event).await?.pop())
    }

    async fn attempts_of(&self, target: &str, event: &EventId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.records_of_event(target, event).await
    }

    async fn attempts(&self, target: &str, query: &AttemptQuery) -> Result<Vec<AttemptRecord>, StoreError> {
        let (own, grouped) =
            futures_util::future::try_join(self.own_page(target, query), self.grouped_page(target, query)).await?;
        let mut page = attempt_log::merge(own.into_iter().chain(grouped));
        if !query.oldest_first {
            page.reverse();
        }
        page.truncate(query.limit);
        Ok(page)
    }
}
