//! [`DynamoStore`]: the event store and idempotency records in DynamoDB (merchants, their
//! endpoints and replays: [`crate::merchants`]; the attempt log: [`crate::deliveries`]).

use crate::error::{corrupt, failed_call, unavailable};
use crate::stored_event;
use crate::tables::TableNames;
use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::http::HttpResponse;
use aws_sdk_dynamodb::error::SdkError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, TransactWriteItem};
use checkout::clock::Timestamp;
use checkout::event::Event;
use checkout::idempotency::{self, Claim, Completion, IdempotencyKey, IdempotencyRecord, RecordState, StoredReply};
use checkout::ids::SessionId;
use checkout::ports::{EventStore, IdempotencyStore, StoreError};
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
        Put::builder()
            .table_name(&self.tables.sessions)
            .set_item(Some(event_item(event)?))
            .condition_expression("attribute_not_exists(session_id)")
            .build()
            .map_err(unavailable)
    }

    fn completion_put(&self, done: &Completion) -> Result<Put, StoreError> {
        Put::builder()
            .table_name(&self.tables.idempotency)
            .set_item(Some(record_item(&done.key.storage_key(), &done.record())))
            .condition_expression("#st IN (:in_flight, :in_flight_subject) AND #tok = :token")
            .expression_attribute_names("#st", "state")
            .expression_attribute_names("#tok", "token")
            .expression_attribute_values(":in_flight", s("in_flight"))
            .expression_attribute_values(":in_flight_subject", s(IN_FLIGHT_FOR_SUBJECT))
            .expression_attribute_values(":token", s(&done.hold.token))
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

    /// Claims `key`: a fresh record, or one that may be replaced (expired, or a claim whose
    /// lease ran out and whose call committed nothing). A claim naming its `subject` lets the
    /// call commit with one write (see [`DynamoStore::append_under_claim`]); its reply is then
    /// found from the committed event, by the claim's token.
    async fn claim_with(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        subject: Option<&SessionId>,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        let pk = key.storage_key();
        let mut held = String::new();
        for _ in 0..CLAIM_ATTEMPTS {
            let (hold, record) = idempotency::new_claim(fingerprint, subject, now);
            let mut item = record_item(&pk, &record);
            if let Some(subject) = subject {
                item.insert(SUBJECT.to_owned(), s(subject.as_str()));
                // A state earlier versions do not know: they refuse such a key (a 500) instead
                // of taking it over, since they would not look for its committed event.
                item.insert("state".to_owned(), s(IN_FLIGHT_FOR_SUBJECT));
            }
            let result = self
                .client
                .put_item()
                .table_name(&self.tables.idempotency)
                .set_item(Some(item))
                .condition_expression(
                    "attribute_not_exists(pk) OR expires_at <= :now_s \
                     OR (#st IN (:in_flight, :in_flight_subject) AND #tok = :held AND lease_until <= :now_ms)",
                )
                .expression_attribute_names("#st", "state")
                .expression_attribute_names("#tok", "token")
                .expression_attribute_values(":in_flight", s("in_flight"))
                .expression_attribute_values(":in_flight_subject", s(IN_FLIGHT_FOR_SUBJECT))
                .expression_attribute_values(":held", s(&held))
                .expression_attribute_values(":now_s", n(now.timestamp()))
                .expression_attribute_values(":now_ms", n(now.timestamp_millis()))
                .send()
                .await;
            match result {
                Ok(_) => return Ok(Claim::Acquired(hold)),
                Err(err) if is_condition_failure(&err) => {}
                Err(err) => return Err(failed_call(err)),
            }
            let Some(item) = self.get(&self.tables.idempotency, pk_key(&pk)).await? else {
                continue;
            };
            let existing = parse_record(&item)?;
            if let RecordState::InFlight { token: running, .. } = &existing.state
                && *running == hold.token
            {
                // Our own write: it was applied, and the SDK's retry of it met its condition.
                return Ok(Claim::Acquired(hold));
            }
            if existing.expires_at > now
                && let RecordState::InFlight { token: running, .. } = &existing.state
            {
                // A claim whose call committed its event keeps the key: its reply, or 422.
                if let Some(reply) = self.committed(&item, running).await? {
                    return Ok(if existing.fingerprint == fingerprint {
                        Claim::Replay(reply)
                    } else {
                        Claim::Mismatch
                    });
                }
                held.clone_from(running);
            }
            if let Some(verdict) = idempotency::judge(&existing, fingerprint, now) {
                return Ok(verdict);
            }
        }
        Err(StoreError::Corrupt(format!("idempotency record {pk} keeps changing")))
    }

    /// The reply of the call that holds claim `token`, if it committed its event: the event of
    /// the claim's subject that carries the token.
    async fn committed(&self, claim: &Item, token: &str) -> Result<Option<StoredReply>, StoreError> {
        let Some(subject) = claim.get(SUBJECT).and_then(|v| v.as_s().ok()) else {
            return Ok(None);
        };
        let session_id = SessionId::parse(subject).ok_or_else(|| corrupt("idempotency subject"))?;
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.tables.sessions)
                .key_condition_expression("session_id = :sid")
                .filter_expression("#claim = :token")
                .projection_expression("version, reply_status")
                .expression_attribute_names("#claim", CLAIM)
                .expression_attribute_values(":sid", s(session_id.as_str()))
                .expression_attribute_values(":token", s(token))
                .consistent_read(true)
                .scan_index_forward(false)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(failed_call)?;
            if let Some(item) = out.items().first() {
                let status = u16::try_from(get_n(item, "reply_status")?).map_err(|_| corrupt("reply_status"))?;
                let version = u64::try_from(get_n(item, "version")?).map_err(|_| corrupt("version"))?;
                return Ok(Some(StoredReply::Session {
                    status,
                    session_id,
                    version,
                }));
            }
            start = out.last_evaluated_key;
            if start.is_none() {
                return Ok(None);
            }
        }
    }

    /// Commits a claimed call's event with one write instead of a transaction with its reply:
    /// the event carries the claim's token (and the reply's status), which is how a repeat of
    /// the call finds its reply. `None` when the claim names no subject or another session (an
    /// older claim, or another caller): then the transaction does it.
    ///
    /// Only the claim's holder may commit, and only well inside its lease: the write must start
    /// at least [`COMMIT_MARGIN`] before the lease ends, with a bounded time in flight. A request
    /// that took the claim over after the lease therefore never races a late commit of the
    /// first. The lease is the one the holder wrote (its
    /// [`Hold`](checkout::idempotency::Hold)), not read back: nobody but the holder releases a
    /// claim, and nobody takes it over before its lease ends, so a read (a read unit per call)
    /// could only confirm it. This needs the instances' clocks to agree within the margin less
    /// the write's bound (7 s); Lambda keeps them in sync to well under a millisecond.
    async fn append_under_claim(
        &self,
        event: &Event,
        put: &Put,
        done: &Completion,
    ) -> Result<Option<Result<(), StoreError>>, StoreError> {
        let StoredReply::Session { status, .. } = &done.reply else {
            return Ok(None);
        };
        if done.hold.subject.as_ref() != Some(&event.session_id) {
            return Ok(None);
        }
        if checkout::clock::now() + COMMIT_MARGIN >= done.hold.lease_until {
            return Ok(Some(Err(StoreError::OutOfTime)));
        }
        let mut item = put.item().clone();
        item.insert(CLAIM.to_owned(), s(&done.hold.token));
        item.insert("reply_status".to_owned(), n(i64::from(*status)));
        let result = self
            .client
            .put_item()
            .table_name(put.table_name())
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(session_id)")
            .customize()
            .config_override(
                aws_sdk_dynamodb::config::Config::builder().timeout_config(
                    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
                        .operation_timeout(COMMIT_TIMEOUT)
                        .build(),
                ),
            )
            .send()
            .await;
        Ok(Some(match result {
            Ok(_) => Ok(()),
            // The SDK retries a write whose answer was lost: if the first try was applied, the
            // retry meets our own event.
            Err(err) if is_condition_failure(&err) => match self.event_claim(event).await? {
                Some(claim) if claim == done.hold.token => Ok(()),
                _ => Err(StoreError::VersionConflict {
                    session_id: event.session_id.clone(),
                    version: event.version,
                }),
            },
            Err(err) => Err(failed_call(err)),
        }))
    }

    /// The claim token carried by the stored event at `event`'s version, if any.
    async fn event_claim(&self, event: &Event) -> Result<Option<String>, StoreError> {
        let key = HashMap::from([
            ("session_id".to_owned(), s(event.session_id.as_str())),
            ("version".to_owned(), n(event.version as i64)),
        ]);
        let stored = self.get(&self.tables.sessions, key).await?;
        Ok(stored.and_then(|item| item.get(CLAIM).and_then(|v| v.as_s().ok()).cloned()))
    }

    pub(crate) async fn get(&self, table: &str, key: Item) -> Result<Option<Item>, StoreError> {
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

pub(crate) fn get_n(item: &Item, name: &str) -> Result<i64, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| corrupt(&format!("attribute {name} missing or not a number")))
}

/// The keys and the envelope, compressed (see [`stored_event`]): nothing else, since every
/// attribute is billed by its bytes on each write and `GET` and the stream need only the event.
fn event_item(event: &Event) -> Result<Item, StoreError> {
    let encoded = stored_event::encode(event).map_err(|e| corrupt(&e.to_string()))?;
    Ok(HashMap::from([
        ("session_id".to_owned(), s(event.session_id.as_str())),
        ("version".to_owned(), n(event.version as i64)),
        (
            stored_event::ATTRIBUTE.to_owned(),
            AttributeValue::B(aws_sdk_dynamodb::primitives::Blob::new(encoded)),
        ),
    ]))
}

/// The event held in an item of the sessions table (also what the stream's NEW_IMAGE carries):
/// compressed, or as JSON in items written before the codec.
pub fn parse_event(item: &Item) -> Result<Event, StoreError> {
    let decoded = match item.get(stored_event::ATTRIBUTE) {
        Some(AttributeValue::B(bytes)) => stored_event::decode(bytes.as_ref()),
        Some(AttributeValue::S(json)) => stored_event::decode_json(json),
        _ => return Err(corrupt("attribute event missing")),
    };
    decoded.map_err(|e| corrupt(&e.to_string()))
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
        "in_flight" | IN_FLIGHT_FOR_SUBJECT => RecordState::InFlight {
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
pub(crate) fn revision_condition(revision: u64) -> (&'static str, Option<HashMap<String, AttributeValue>>) {
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
pub(crate) fn first_condition_failed(err: &SdkError<TransactWriteItemsError, HttpResponse>) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
            canceled.cancellation_reasons().first().and_then(|r| r.code()) == Some("ConditionalCheckFailed")
        }
        _ => false,
    }
}

/// The transaction was cancelled by its first item's condition, or by another transaction on one
/// of its items at the same moment (`TransactionConflict`): either way the caller reads again and
/// retries, as after a revision conflict.
pub(crate) fn changed_meanwhile(err: &SdkError<TransactWriteItemsError, HttpResponse>) -> bool {
    match err.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(canceled)) => {
            let reasons = canceled.cancellation_reasons();
            let first = reasons.first().and_then(|r| r.code());
            first == Some("ConditionalCheckFailed") || reasons.iter().any(|r| r.code() == Some("TransactionConflict"))
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
        if let Some(done) = completes
            && let Some(outcome) = self.append_under_claim(event, &put, done).await?
        {
            return outcome;
        }
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

    async fn event_at(&self, session_id: &SessionId, version: u64) -> Result<Option<Event>, StoreError> {
        let key = Item::from([
            ("session_id".to_owned(), s(session_id.as_str())),
            ("version".to_owned(), n(i64::try_from(version).unwrap_or(i64::MAX))),
        ]);
        let item = self.get(&self.tables.sessions, key).await?;
        item.as_ref().map(parse_event).transpose()
    }
}

/// How many times a claim is retried when the record changes between the write and the read.
const CLAIM_ATTEMPTS: usize = 5;
/// The claim's attribute naming the session its call appends to.
const SUBJECT: &str = "subject";
/// The state of a claim naming its subject, whose call commits without a reply record.
const IN_FLIGHT_FOR_SUBJECT: &str = "in_flight_for_subject";
/// The event item's attribute naming the claim (its token) whose call appended it.
const CLAIM: &str = "claim";
/// A claimed call commits no later than this before its lease ends (leaving 7 s for the clocks
/// of two instances to disagree, beyond the write's own time)...
const COMMIT_MARGIN: chrono::Duration = chrono::Duration::seconds(10);
/// ...and its write is given at most this long, retries included.
const COMMIT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);

#[async_trait]
impl IdempotencyStore for DynamoStore {
    async fn claim(&self, key: &IdempotencyKey, fingerprint: &str, now: Timestamp) -> Result<Claim, StoreError> {
        self.claim_with(key, fingerprint, None, now).await
    }

    async fn claim_for(
        &self,
        key: &IdempotencyKey,
        fingerprint: &str,
        subject: &SessionId,
        now: Timestamp,
    ) -> Result<Claim, StoreError> {
        self.claim_with(key, fingerprint, Some(subject), now).await
    }

    async fn complete(&self, completion: &Completion) -> Result<(), StoreError> {
        match self.put_alone(self.completion_put(completion)?).await {
            Ok(_) => Ok(()),
            Err(err) if is_condition_failure(&err) => Err(StoreError::ClaimLost),
            Err(err) => Err(failed_call(err)),
        }
    }

    async fn release(&self, key: &IdempotencyKey, token: &str) -> Result<(), StoreError> {
        let pk = key.storage_key();
        // A call released after an uncertain commit (its write may have been applied though the
        // answer was an error or a timeout) keeps its key if its event is there: forgetting the
        // claim would let a retry run the call again.
        if let Some(claim) = self.get(&self.tables.idempotency, pk_key(&pk)).await?
            && claim.contains_key(SUBJECT)
            && self.committed(&claim, token).await?.is_some()
        {
            return Ok(());
        }
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

pub(crate) fn with(mut item: Item, name: &str, value: AttributeValue) -> Item {
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
        let cases = [
            (["ValidationError", "None"], Cancelled::Invalid),
            (["None", "ValidationError"], Cancelled::Invalid),
            (["TransactionConflict", "None"], Cancelled::VersionTaken),
            (["ConditionalCheckFailed", "None"], Cancelled::VersionTaken),
            (["None", "ConditionalCheckFailed"], Cancelled::ClaimLost),
            (["None", "TransactionConflict"], Cancelled::VersionTaken),
            (["ProvisionedThroughputExceeded", "None"], Cancelled::Other),
        ];
        for (codes, why) in cases {
            assert_eq!(cancellation(&reasons(&codes)), why, "{codes:?}");
        }
    }
}
