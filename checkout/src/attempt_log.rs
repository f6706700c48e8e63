//! The attempt log: one compact record per delivery attempt of an event to a target (a webhook
//! endpoint, or the merchant's ACP order webhook). The newest record of a pair is also the
//! pair's delivery state — how many attempts were made, whether it arrived, when the next one is
//! due — so a delivery costs one write, not an attempt plus a state update.

use crate::clock::Timestamp;
use crate::delivery_outcome::ErrorClass;
use crate::event::EventType;
use crate::ids::{EndpointId, EventId, MerchantId, SessionId};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Where a delivery goes, as its attempts are logged (the log is partitioned by this name: on
/// DynamoDB, the deliveries table's partition key).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LogTarget {
    /// A webhook endpoint: named by its id.
    Endpoint(EndpointId),
    /// A merchant's ACP order webhook: `order_webhook#{merchant id}`, a partition per merchant.
    OrderWebhook(MerchantId),
    /// `order_webhook`: the one name every merchant's order webhook had before. Still read, and
    /// a delivery begun under it goes on under it, so nothing in flight at an upgrade is sent
    /// twice.
    LegacyOrderWebhook,
}

const ORDER_WEBHOOK: &str = "order_webhook";
const ORDER_WEBHOOK_PREFIX: &str = "order_webhook#";

impl LogTarget {
    /// The name the log and task messages carry.
    pub fn name(&self) -> String {
        match self {
            Self::Endpoint(id) => id.to_string(),
            Self::OrderWebhook(merchant) => format!("{ORDER_WEBHOOK_PREFIX}{merchant}"),
            Self::LegacyOrderWebhook => ORDER_WEBHOOK.to_owned(),
        }
    }

    /// The target a name denotes; `None` for a name no target has.
    pub fn parse(name: &str) -> Option<Self> {
        if name == ORDER_WEBHOOK {
            return Some(Self::LegacyOrderWebhook);
        }
        if let Some(merchant) = name.strip_prefix(ORDER_WEBHOOK_PREFIX) {
            return MerchantId::parse(merchant).map(Self::OrderWebhook);
        }
        EndpointId::parse(name).map(Self::Endpoint)
    }

    pub fn is_order_webhook(&self) -> bool {
        matches!(self, Self::OrderWebhook(_) | Self::LegacyOrderWebhook)
    }
}

/// How long attempt records are kept.
pub const RETENTION: chrono::Duration = chrono::Duration::days(30);

/// Why a delivery ends without being delivered: stable codes stored with the attempt record
/// and the dead letter, beside a message for people.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalCode {
    /// The endpoint answered 410 Gone and was disabled.
    Gone,
    /// The retry schedule ran out.
    Exhausted,
    /// The endpoint failed without a success for too long and was disabled.
    DisabledAfterFailures,
    /// The endpoint is disabled: nothing was sent.
    EndpointDisabled,
    /// The request could not be built (the endpoint's secret or the event cannot be signed
    /// or sent as they are).
    Unsendable,
    /// The queue message could not be read.
    Unreadable,
    /// The queue itself moved the message after too many receives.
    MovedByQueue,
    /// The receiver asked not to retry this event (`webhook-delivery: abort-message`).
    Aborted,
    /// The receiver asked to disable the endpoint (`webhook-delivery: disable`).
    DisableRequested,
    /// A test event (`webhook.test`) failed: tests are tried once.
    TestNotRetried,
    /// The endpoint is paused: nothing was sent; resuming it sends the event.
    EndpointPaused,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptStatus {
    Succeeded,
    Failed,
    /// Not sent: the endpoint was disabled. Kept so a later replay finds the event.
    Skipped,
    /// Not sent: the endpoint is paused. Its resume sends the event (so may a replay).
    Paused,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// Where it went, by [`LogTarget::name`].
    pub target: String,
    pub event_id: EventId,
    /// 1, 2, 3… per (event, target), counted across retries, replays and redrives.
    pub attempt: u32,
    pub merchant_id: MerchantId,
    pub session_id: SessionId,
    pub version: u64,
    #[serde(rename = "type")]
    pub event_type: EventType,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub at: Timestamp,
    pub status: AttemptStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    pub latency_ms: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_class: Option<ErrorClass>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_ip: Option<IpAddr>,
    /// The start of the receiver's answer or of the error, at most 4 KiB.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub snippet: String,
    /// Milliseconds from sending the request to the answer's headers (`latency_ms` also counts
    /// reading the body). Connection set-up is not split out: connections are pooled, and the
    /// HTTP client does not report DNS, connect and TLS times of the one it used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_ms: Option<u32>,
    /// The receiver's own `Server-Timing` header (e.g. `acp;dur=12.5`), at most 256 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_timing: Option<String>,
    /// The answer's headers, `name: value` lines; they and `snippet` share its 4 KiB.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub answer_headers: String,
    /// When the next attempt is due; `None` when there will be none (delivered, exhausted,
    /// endpoint gone or disabled).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::clock::optional_rfc3339_serde"
    )]
    pub next_attempt_at: Option<Timestamp>,
    /// Why there will be no further attempt after a failure, for people (e.g. "exhausted after
    /// 8 attempts").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_reason: Option<String>,
    /// The same as a stable code, for code (records written before the codes have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_code: Option<FinalCode>,
    /// This was the last attempt and the delivery went to the dead-letter queue.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dead_lettered: bool,
    /// Sent by a replay or a dead-letter redrive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

impl AttemptRecord {
    /// Marks this as the last attempt of its delivery, for `code`, explained by `message`.
    pub fn end(&mut self, code: FinalCode, message: impl Into<String>) {
        self.final_code = Some(code);
        self.final_reason = Some(message.into());
    }

    pub fn delivered(&self) -> bool {
        self.status == AttemptStatus::Succeeded
    }

    /// Failed and no further attempt will follow: exhausted, gone, or skipped.
    pub fn abandoned(&self) -> bool {
        !self.delivered() && self.next_attempt_at.is_none()
    }

    /// The sort key within a target: event ids are ULIDs, so this orders by event time, then
    /// attempt number.
    pub fn sort_key(&self) -> String {
        sort_key(&self.event_id, self.attempt)
    }

    /// The first attempt of the event's first series: a store may keep these together (see
    /// [`crate::ports::DeliveryLog::record_first_attempts`]).
    pub fn is_first(&self) -> bool {
        self.attempt == 1 && !self.replay
    }
}

/// The second (Unix time) the event was created in, read from its id (a ULID; `None` for an id
/// that is not one). Stores that keep first attempts together group them by it.
pub fn event_second(event: &EventId) -> Option<i64> {
    second_of_sort_key(event.as_str())
}

/// The second of the event a sort key (or a [`time_bound`]) starts with.
pub fn second_of_sort_key(key: &str) -> Option<i64> {
    let ulid = key.strip_prefix(EventId::PREFIX)?.get(..26)?;
    let millis = ulid::Ulid::from_string(ulid).ok()?.timestamp_ms();
    i64::try_from(millis / 1000).ok()
}

/// Records of the same pairs read from several places (a store that keeps first attempts
/// together, and copies of one message that each recorded the attempt they made): one per
/// attempt, a delivered one winning (the receiver got the event if either copy delivered it),
/// ordered by sort key.
pub fn merge(records: impl IntoIterator<Item = AttemptRecord>) -> Vec<AttemptRecord> {
    let mut by_key: std::collections::BTreeMap<(String, String), AttemptRecord> = Default::default();
    for record in records {
        let key = (record.target.clone(), record.sort_key());
        match by_key.get(&key) {
            Some(kept) if kept.delivered() || !record.delivered() => {}
            _ => {
                by_key.insert(key, record);
            }
        }
    }
    by_key.into_values().collect()
}

pub fn sort_key(event_id: &EventId, attempt: u32) -> String {
    format!("{event_id}#{attempt:04}")
}

/// The event a sort key names.
pub fn event_of_sort_key(key: &str) -> Option<EventId> {
    EventId::parse(key.split_once('#')?.0)
}

/// The sort-key prefix of every attempt of one event.
pub fn event_prefix(event_id: &EventId) -> String {
    format!("{event_id}#")
}

/// A page of a target's attempts in `[from, before)` (and above `after`): the newest `limit`,
/// newest event first — or, with `oldest_first`, the oldest `limit`, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AttemptQuery {
    /// Only sort keys below this one (exclusive): the cursor of the previous page.
    pub before: Option<String>,
    /// Only sort keys at or above this one: the start of a time window.
    pub from: Option<String>,
    pub limit: usize,
    /// Only sort keys above this one (exclusive): the cursor of the previous page read oldest
    /// first.
    pub after: Option<String>,
    pub oldest_first: bool,
}

impl AttemptQuery {
    /// Whether a sort key is in the query's window.
    pub fn contains(&self, key: &str) -> bool {
        self.from.as_deref().is_none_or(|from| key >= from)
            && self.after.as_deref().is_none_or(|after| key > after)
            && self.before.as_deref().is_none_or(|before| key < before)
    }
}

/// The sort key that every event created at or after `t` sorts at or above (ULIDs start with
/// their millisecond timestamp).
pub fn time_bound(t: Timestamp) -> String {
    let millis = u64::try_from(t.timestamp_millis()).unwrap_or(0);
    format!("evt_{}", ulid::Ulid::from_parts(millis, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_named_and_read_back_and_order_webhooks_have_a_partition_each() {
        let merchant = MerchantId::generate();
        let endpoint = EndpointId::generate();
        for target in [
            LogTarget::Endpoint(endpoint.clone()),
            LogTarget::OrderWebhook(merchant.clone()),
            LogTarget::LegacyOrderWebhook,
        ] {
            assert_eq!(LogTarget::parse(&target.name()), Some(target));
        }
        assert_ne!(
            LogTarget::OrderWebhook(merchant).name(),
            LogTarget::OrderWebhook(MerchantId::generate()).name()
        );
        assert_eq!(LogTarget::parse("order_webhook#"), None);
        assert_eq!(LogTarget::parse("nonsense"), None);
    }

    #[test]
    fn sort_keys_order_by_event_time_then_attempt() {
        let early = EventId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let late = EventId::generate();
        assert!(sort_key(&early, 10) < sort_key(&late, 1));
        assert!(sort_key(&late, 2) < sort_key(&late, 10));
        assert!(sort_key(&late, 1).starts_with(&event_prefix(&late)));
    }

    #[test]
    fn merged_records_keep_one_per_attempt_and_a_delivery_wins() {
        let e = crate::testkit::event(&crate::testkit::merchant(), None, 1);
        let failed = crate::testkit::attempt_record("we_1", &e, 1);
        let mut delivered = failed.clone();
        delivered.status = AttemptStatus::Succeeded;
        let second = crate::testkit::attempt_record("we_1", &e, 2);
        let other = crate::testkit::attempt_record("we_2", &e, 1);
        let merged = merge([second.clone(), failed.clone(), delivered.clone(), failed, other.clone()]);
        assert_eq!(merged, vec![delivered, second, other]);
    }

    #[test]
    fn an_events_second_is_read_from_its_id() {
        let before = crate::clock::now().timestamp();
        let id = EventId::generate();
        let after = crate::clock::now().timestamp();
        let second = event_second(&id).unwrap();
        assert!((before..=after).contains(&second), "{second} not in {before}..={after}");
        assert_eq!(second_of_sort_key(&sort_key(&id, 3)), Some(second));
        assert_eq!(event_second(&EventId::parse("evt_operator_made").unwrap()), None);
        assert_eq!(second_of_sort_key("evt_0"), None);
        let t = chrono::DateTime::from_timestamp(1_790_000_000, 999_000_000).unwrap();
        assert_eq!(second_of_sort_key(&time_bound(t)), Some(1_790_000_000));
    }

    #[test]
    fn time_bounds_split_events_by_creation_time() {
        let before = crate::clock::now();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let id = EventId::generate();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = crate::clock::now();
        let key = sort_key(&id, 1);
        assert!(time_bound(before) <= key);
        assert!(key < time_bound(after));
    }
}
