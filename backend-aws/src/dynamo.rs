//! [`DynamoStore`]: the event store, idempotency records and merchants in DynamoDB.

use crate::error::{corrupt, failed_call, unavailable};
use crate::tables::TableNames;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, TransactWriteItem};
use checkout::clock::Timestamp;
use checkout::event::Event;
use checkout::idempotency::{self, Claim, Completion, IdempotencyKey, IdempotencyRecord, RecordState, StoredReply};
use checkout::ids::{EndpointId, MerchantId, SessionId};
use checkout::merchant::Merchant;
use checkout::ports::{EndpointStore, EventStore, IdempotencyStore, MerchantStore, StoreError};
use checkout::webhook_endpoint::WebhookEndpoint;
use chrono::{DateTime, Utc};
use std::collections::HashMap;

pub(crate) type Item = HashMap<String, AttributeValue>;

#[derive(Clone)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) tables: TableNames,
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self { client, tables }
    }

    pub fn from_sdk_config(config: &aws_config::SdkConfig, tables: TableNames) -> Self {
        Self::new(Client::new(config), tables)
    }

    fn event_put(&self, event: &Event) -> Result<Put, StoreError> {
        let json = serde_json::to_string(event).map_err(|e| corrupt(&e.to_string()))?;
        Put::builder()
            .table_name(&self.tables.sessions)
            .set_item(Some(event_item(event, json)))
            .condition_expression("attribute_not_exists(session_id)")
            .build()
            .map_err(unavailable)
    }

    fn completion_put(&self, done: &Completion) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.tables.idempotency)
            .set_item(Some(record_item(&done.key.storage_key(), &done.record())))
            .condition_expression("#st = :in_flight AND #tok = :token")
            .expression_attribute_names("#st", "state")
            .expression_attribute_names("#tok", "token")
            .expression_attribute_values(":in_flight", s("in_flight"))
            .expression_attribute_values(":token", s(&done.token))
            .build()
            .map_err(unavailable)
    }

    /// A conditional put built for a transaction, sent on its own.
    async fn put_alone(&self, put: Put) -> Result<(), SdkError<PutItemError, HttpResponse>> {
        self.client
            .put_item()
            .table_name(put.table_name())
            .set_item(Some(put.item().clone()))
            .set_condition_expression(put.condition_expression().map(str::to_owned))
            .set_expression_attribute_names(put.expression_attribute_names().cloned())
            .set_expression_attribute_values(put.expression_attribute_values().cloned())
            .send()
            .await
            .map(|_| ())
    }

    async fn get(&self, table: &str, key: Item) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(failed_call)?;
        Ok(out.item)
    }

    async fn query_events(&self, session_id: &SessionId, newest_only: bool) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.sessions)
                .key_condition_expression("session_id = :sid")
                .expression_attribute_values(":sid", s(session_id.as_str()))
                .consistent_read(true)
                .scan_index_forward(!newest_only)
                .set_limit(newest_only.then_some(1))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(failed_call)?;
            for item in out.items() {
                events.push(parse_event(item)?);
            }
            start = out.last_evaluated_key;
            if newest_only || start.is_none() {
                return Ok(events);
            }
        }
    }
}

pub(crate) fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub(crate) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| corrupt(&format!("attribute {name} missing or not a string")))
}

fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(&format!("attribute {name} missing or not a number")))
}

/// The envelope is stored whole in `event`; the other attributes are for streams, filters and
/// operators reading the table.
fn event_item(event: &Event, json: String) -> Item {
    HashMap::from([
        ("session_id".to_owned(), s(event.session_id.as_str())),
        ("version".to_owned(), n(event.version as i64)),
        ("event_id".to_owned(), s(event.id.as_str())),
        ("event_type".to_owned(), s(event.kind.as_str())),
        ("merchant_id".to_owned(), s(event.merchant_id.as_str())),
        ("created_at".to_owned(), s(&checkout::clock::rfc3339(&event.created_at))),
        ("event".to_owned(), AttributeValue::S(json)),
    ])
}

/// The event held in an item of the sessions table (also what the stream's NEW_IMAGE carries).
pub fn parse_event(item: &Item) -> Result<Event, StoreError> {
    serde_json::from_str(get_s(item, "event")?).map_err(|e| corrupt(&format!("event: {e}")))
}

fn record_item(pk: &str, record: &IdempotencyRecord) -> Item {
    let mut item = HashMap::from([
        ("pk".to_owned(), s(pk)),
        ("fingerprint".to_owned(), s(&record.fingerprint)),
        ("expires_at".to_owned(), n(record.expires_at.timestamp())),
    ]);
    match &record.state {
        RecordState::InFlight { token, lease_until } => {
            item.insert("state".to_owned(), s("in_flight"));
            item.insert("token".to_owned(), s(token));
            item.insert("lease_until".to_owned(), n(lease_until.timestamp_millis()));
        }
        RecordState::Done { reply } => {
            item.insert("state".to_owned(), s("done"));
            item.insert("reply_status".to_owned(), n(i64::from(reply.status())));
            match reply {
                StoredReply::Session {
                    session_id, version, ..
                } => {
                    item.insert("reply_session".to_owned(), s(session_id.as_str()));
                    item.insert("reply_version".to_owned(), n(*version as i64));
                }
                StoredReply::Body { body, .. } => {
                    item.insert("reply_body".to_owned(), s(body));
                }
            }
        }
    }
    item
}

fn parse_record(item: &Item) -> Result<IdempotencyRecord, StoreError> {
    let time = |secs: Option<i64>, millis: Option<i64>| -> Result<Timestamp, StoreError> {
        secs.and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
            .or_else(|| millis.and_then(DateTime::<Utc>::from_timestamp_millis))
            .ok_or_else(|| corrupt("idempotency timestamp"))
    };
    let state = match get_s(item, "state")? {
        "in_flight" => RecordState::InFlight {
            token: get_s(item, "token")?.to_owned(),
            lease_until: time(None, Some(get_n(item, "lease_until")?))?,
        },
        "done" => {
            let status = u16::try_from(get_n(item, "reply_status")?).map_err(|_| corrupt("reply_status"))?;
            let reply = match item.get("reply_session") {
                Some(_) => StoredReply::Session {
                    status,
                    session_id: SessionId::parse(get_s(item, "reply_session")?)
                        .ok_or_else(|| corrupt("reply_session"))?,
                    version: u64::try_from(get_n(item, "reply_version")?).map_err(|_| corrupt("reply_version"))?,
                },
                // Replies stored before they named their event.
                None => StoredReply::Body {
                    status,
                    body: get_s(item, "reply_body")?.to_owned(),
                },
            };
            RecordState::Done { reply }
        }
        other => return Err(corrupt(&format!("idempotency state {other}"))),
    };
    Ok(IdempotencyRecord {
        fingerprint: get_s(item, "fingerprint")?.to_owned(),
        state,
        expires_at: time(Some(get_n(item, "expires_at")?), None)?,
    })
}

/// A conditional put's result: `Ok(false)` when the condition kept it from writing.
pub(crate) fn conditional_put<T>(result: Result<T, SdkError<PutItemError, HttpResponse>>) -> Result<bool, StoreError> {
    match result {
        Ok(_) => Ok(true),
        Err(err) if is_condition_failure(&err) => Ok(false),
        Err(err) => Err(failed_call(err)),
    }
}

/// The condition that the stored item is still at `revision`: 0 is an item never stored (or
/// stored before items had revisions).
fn revision_condition(revision: u64) -> (&'static str, Option<HashMap<String, AttributeValue>>) {
    if revision == 0 {
        ("attribute_not_exists(#revision)", None)
    } else {
        (
            "#revision = :revision",
            Some(HashMap::from([(":revision".to_owned(), n(revision as i64))])),
        )
    }
}

/// The transaction was cancelled because its first item's condition failed.
fn first_condition_failed(err: &SdkError<TransactWriteItemsError, HttpResponse>) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
            canceled.cancellation_reasons().first().and_then(|r| r.code()) == Some("ConditionalCheckFailed")
        }
        _ => false,
    }
}

pub(crate) fn is_condition_failure(err: &SdkError<PutItemError, HttpResponse>) -> bool {
    matches!(
        err.as_service_error(),
        Some(PutItemError::ConditionalCheckFailedException(_))
    )
}

/// Why the append's transaction (the event, then the idempotency reply) was cancelled.
#[derive(Debug, PartialEq, Eq)]
enum Cancelled {
    /// The version exists, or another transaction holds the item right now
    /// (`TransactionConflict`): the caller reloads and tries again.
    VersionTaken,
    /// Our idempotency claim was taken over.
    ClaimLost,
    /// An item the service refuses (over 400 KB, say): permanent, never "retry later".
    Invalid,
    Other,
}

fn cancellation(reasons: &[Option<String>]) -> Cancelled {
    let code = |i: usize| reasons.get(i).and_then(|c| c.as_deref());
    if reasons.iter().flatten().any(|c| c == "ValidationError") {
        Cancelled::Invalid
    } else if matches!(code(0), Some("ConditionalCheckFailed" | "TransactionConflict")) {
        Cancelled::VersionTaken
    } else if code(1) == Some("ConditionalCheckFailed") {
        Cancelled::ClaimLost
    } else if reasons.iter().flatten().any(|c| c == "TransactionConflict") {
        Cancelled::VersionTaken
    } else {
        Cancelled::Other
    }
}

#[async_trait]
impl EventStore for DynamoStore {
    async fn append(&self, event: &Event, completes: Option<&Completion>) -> Result<(), StoreError> {
        let conflict = || StoreError::VersionConflict {
            session_id: event.session_id.clone(),
            version: event.version,
        };
        let put = self.event_put(event)?;
        let Some(done) = completes else {
            return match self.put_alone(put).await {
                Ok(_) => Ok(()),
                Err(err) if is_condition_failure(&err) => Err(conflict()),
                Err(err) => Err(failed_call(err)),
            };
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().put(self.completion_put(done)?).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(err) => {
                let reasons: Vec<Option<String>> = match err.as_service_error() {
                    Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => canceled
                        .cancellation_reasons()
                        .iter()
                        .map(|r| r.code().map(str::to_owned))
                        .collect(),
                    _ => return Err(failed_call(err)),
                };
                match cancellation(&reasons) {
                    Cancelled::VersionTaken => Err(conflict()),
                    Cancelled::ClaimLost => Err(StoreError::ClaimLost),
                    Cancelled::Invalid => Err(StoreError::Refused(
                        aws_sdk_dynamodb::error::DisplayErrorContext(err).to_string(),
                    )),
                    Cancelled::Other => Err(failed_call(err)),
                }
            }
        }
    }

    async fn latest(&self, session_id: &SessionId) -> Result<Option<Event>, StoreError> {
        Ok(self.query_events(session_id, true).await?.pop())
    }

    async fn history(&self, session_id: &SessionId) -> Result<Vec<Event>, StoreError> {
        self.query_events(session_id, false).await
    }
}

/// How many times a claim is retried when the record changes between the write and the read.
const CLAIM_ATTEMPTS: usize = 5;

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(&self, key: &IdempotencyKey, fingerprint: &str, now: Timestamp) -> Result<Claim, StoreError> {
        let pk = key.storage_key();
        for _ in 0..CLAIM_ATTEMPTS {
            let (token, record) = idempotency::new_claim(fingerprint, now);
            let result = self
                .client
                .put_item()
                .table_name(&self.tables.idempotency)
                .set_item(Some(record_item(&pk, &record)))
                .condition_expression(
                    "attribute_not_exists(pk) OR expires_at <= :now_s OR (#st = :in_flight AND lease_until <= :now_ms)",
                )
                .expression_attribute_names("#st", "state")
                .expression_attribute_values(":in_flight", s("in_flight"))
                .expression_attribute_values(":now_s", n(now.timestamp()))
                .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Claim::Acquired { token }),
                Err(err) if is_condition_failure(&err) => {}
                Err(err) => return Err(failed_call(err)),
            }
            let Some(item) = self.get(&self.tables.idempotency, pk_key(&pk)).await? else {
                continue;
            };
            if let Some(verdict) = idempotency::judge(&parse_record(&item)?, fingerprint, now) {
                return Ok(verdict);
            }
        }
        Err(StoreError::Corrupt(format!("idempotency record {pk} keeps changing")))
    }

    async fn complete(&self, completion: &Completion) -> Result<(), StoreError> {
        match self.put_alone(self.completion_put(completion)?).await {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Err(StoreError::ClaimLost),
            Err(err) => Err(failed_call(err)),
        }
    }

    async fn release(&self, key: &IdempotencyKey, token: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.tables.idempotency)
            .key("pk", s(&key.storage_key()))
            .condition_expression("#tok = :token")
            .expression_attribute_names("#tok", "token")
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else holds the key now: theirs to finish.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(())
            }
            Err(err) => Err(failed_call(err)),
        }
    }
}

fn pk_key(pk: &str) -> Item {
    HashMap::from([("pk".to_owned(), s(pk))])
}

// The merchants table holds, under partition `merchant#{id}`, the profile (sort key `profile`)
// and the webhook endpoints (`endpoint#{id}`); under `apikey#{hash}`, the key's merchant.
const PROFILE: &str = "profile";
const API_KEY: &str = "apikey";

fn merchant_key(id: &MerchantId, sk: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(&format!("merchant#{id}"))),
        ("sk".to_owned(), s(sk)),
    ])
}

fn api_key_key(hash: &str) -> Item {
    HashMap::from([
        ("pk".to_owned(), s(&format!("apikey#{hash}"))),
        ("sk".to_owned(), s(API_KEY)),
    ])
}

fn endpoint_sk(id: &EndpointId) -> String {
    format!("endpoint#{id}")
}

fn with(mut item: Item, name: &str, value: AttributeValue) -> Item {
    item.insert(name.to_owned(), value);
    item
}

pub(crate) fn doc<T: serde::de::DeserializeOwned>(item: &Item, what: &str) -> Result<T, StoreError> {
    serde_json::from_str(get_s(item, "doc")?).map_err(|e| corrupt(&format!("{what}: {e}")))
}

pub(crate) fn to_doc<T: serde::Serialize>(value: &T) -> Result<AttributeValue, StoreError> {
    serde_json::to_string(value)
        .map(AttributeValue::S)
        .map_err(|e| corrupt(&e.to_string()))
}

#[async_trait]
impl MerchantStore for DynamoStore {
    async fn put_merchant(&self, merchant: &Merchant) -> Result<(), StoreError> {
        let table = &self.tables.merchants;
        let changed = || StoreError::Changed {
            what: "merchant",
            id: merchant.id.to_string(),
        };
        let previous = self.merchant(&merchant.id).await?;
        if previous.as_ref().map_or(0, |m| m.revision) != merchant.revision {
            return Err(changed());
        }
        let mut next = merchant.clone();
        next.revision += 1;
        let mut profile = with(merchant_key(&merchant.id, PROFILE), "doc", to_doc(&next)?);
        profile.insert("revision".to_owned(), n(next.revision as i64));
        let (condition, values) = revision_condition(merchant.revision);
        let profile = Put::builder()
            .table_name(table)
            .set_item(Some(profile))
            .condition_expression(condition)
            .expression_attribute_names("#revision", "revision")
            .set_expression_attribute_values(values)
            .build()
            .map_err(unavailable)?;
        let api_key = Put::builder()
            .table_name(table)
            .set_item(Some(with(
                api_key_key(&merchant.api_key_hash),
                "merchant_id",
                s(merchant.id.as_str()),
            )))
            .build()
            .map_err(unavailable)?;
        let mut request = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(profile).build())
            .transact_items(TransactWriteItem::builder().put(api_key).build());
        if let Some(old) = previous.filter(|old| old.api_key_hash != merchant.api_key_hash) {
            let delete = Delete::builder()
                .table_name(table)
                .set_key(Some(api_key_key(&old.api_key_hash)))
                .build()
                .map_err(unavailable)?;
            request = request.transact_items(TransactWriteItem::builder().delete(delete).build());
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(err) if first_condition_failed(&err) => Err(changed()),
            Err(err) => Err(failed_call(err)),
        }
    }

    async fn merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        let item = self.get(&self.tables.merchants, merchant_key(id, PROFILE)).await?;
        item.map(|item| doc(&item, "merchant")).transpose()
    }

    async fn merchant_by_api_key_hash(&self, api_key_hash: &str) -> Result<Option<Merchant>, StoreError> {
        let Some(item) = self.get(&self.tables.merchants, api_key_key(api_key_hash)).await? else {
            return Ok(None);
        };
        let id = MerchantId::parse(get_s(&item, "merchant_id")?).ok_or_else(|| corrupt("merchant_id"))?;
        self.merchant(&id).await
    }
}

#[async_trait]
impl EndpointStore for DynamoStore {
    async fn put_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let mut next = endpoint.clone();
        next.revision += 1;
        let mut item = with(
            merchant_key(&endpoint.merchant_id, &endpoint_sk(&endpoint.id)),
            "doc",
            to_doc(&next)?,
        );
        item.insert("revision".to_owned(), n(next.revision as i64));
        let (condition, values) = revision_condition(endpoint.revision);
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.merchants)
            .set_item(Some(item))
            .condition_expression(condition)
            .expression_attribute_names("#revision", "revision")
            .set_expression_attribute_values(values)
            .send()
            .await;
        match conditional_put(result)? {
            true => Ok(()),
            false => Err(StoreError::Changed {
                what: "endpoint",
                id: endpoint.id.to_string(),
            }),
        }
    }

    async fn endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        let item = self
            .get(&self.tables.merchants, merchant_key(merchant, &endpoint_sk(id)))
            .await?;
        item.map(|item| doc(&item, "endpoint")).transpose()
    }

    async fn endpoints(&self, merchant: &MerchantId) -> Result<Vec<WebhookEndpoint>, StoreError> {
        let mut endpoints: Vec<WebhookEndpoint> = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.merchants)
                .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                .expression_attribute_values(":pk", s(&format!("merchant#{merchant}")))
                .expression_attribute_values(":prefix", s("endpoint#"))
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(failed_call)?;
            for item in out.items() {
                endpoints.push(doc(item, "endpoint")?);
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                endpoints.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
                return Ok(endpoints);
            }
        }
    }

    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<bool, StoreError> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.tables.merchants)
            .set_key(Some(merchant_key(merchant, &endpoint_sk(id))))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(failed_call)?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(codes: &[&str]) -> Vec<Option<String>> {
        codes.iter().map(|c| (*c != "None").then(|| (*c).to_owned())).collect()
    }

    /// What AWS answers that moto does not: a transaction cancelled for an invalid item is a
    /// permanent refusal (it was a 503 "retry later"), one that met another transaction on the
    /// same item is a version race to retry.
    #[test]
    fn a_cancelled_append_says_why() {
        assert_eq!(cancellation(&reasons(&["ValidationError", "None"])), Cancelled::Invalid);
        assert_eq!(cancellation(&reasons(&["None", "ValidationError"])), Cancelled::Invalid);
        assert_eq!(
            cancellation(&reasons(&["TransactionConflict", "None"])),
            Cancelled::VersionTaken
        );
        assert_eq!(
            cancellation(&reasons(&["ConditionalCheckFailed", "None"])),
            Cancelled::VersionTaken
        );
        assert_eq!(
            cancellation(&reasons(&["None", "ConditionalCheckFailed"])),
            Cancelled::ClaimLost
        );
        assert_eq!(
            cancellation(&reasons(&["None", "TransactionConflict"])),
            Cancelled::VersionTaken
        );
        assert_eq!(
            cancellation(&reasons(&["ProvisionedThroughputExceeded", "None"])),
            Cancelled::Other
        );
    }
}
