//! What travels on the order-updates queue.
//!
//! - Straight from the topic: the event envelope itself, to be delivered to every target the
//!   merchant has for it.
//! - For one target (a retry, a rate-limit deferral, a replay, a dead-letter redrive): a task
//!   naming the target, carrying the event's exact bytes so every attempt sends and signs the
//!   same body.
//!
//! The dead-letter queue holds [`DeadLetter`]s: why and after how many attempts, and the message
//! that a redrive puts back on the queue.

use crate::attempt_log::FinalCode;
use crate::clock::Timestamp;
use crate::event::EventType;
use crate::ids::{EventId, MerchantId, SessionId};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The part of an event envelope that routing needs; the session inside is left unparsed.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct EventHead {
    pub id: EventId,
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub created_at: Timestamp,
    pub merchant_id: MerchantId,
    pub session_id: SessionId,
    pub version: u64,
}

impl From<&crate::event::Event> for EventHead {
    fn from(e: &crate::event::Event) -> Self {
        Self {
            id: e.id.clone(),
            kind: e.kind,
            created_at: e.created_at,
            merchant_id: e.merchant_id.clone(),
            session_id: e.session_id.clone(),
            version: e.version,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTask {
    /// Where it goes, by [`crate::attempt_log::LogTarget::name`].
    pub target: String,
    /// The attempt number this series of attempts starts at: 1, or one past the attempts made
    /// before a replay or redrive. The retry schedule counts from here.
    pub first_attempt: u32,
    /// Send even if the target already has the event.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub replay: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct TaskMessage<'a> {
    pub delivery: DeliveryTask,
    #[serde(borrow)]
    pub event: &'a RawValue,
}

/// A `webhook.test` event for `merchant`, shaped like every event (`id`, `type`, `created_at`,
/// `merchant_id`, `session_id`, `version`, `api_version`, `data`) so a receiver's code path is
/// the real one. It names a session that does not exist, at version 0 (real ones start at 1),
/// and is never stored: a replay finds it in the attempt log and sends nothing.
pub fn test_event(merchant: &MerchantId, api_version: &str, now: Timestamp) -> serde_json::Value {
    serde_json::json!({
        "id": EventId::generate(),
        "type": EventType::Test.as_str(),
        "created_at": crate::clock::rfc3339(&now),
        "merchant_id": merchant,
        "session_id": SessionId::generate(),
        "version": 0,
        "api_version": api_version,
        "data": {"message": "A test event from ACP Checkout Manager: your endpoint is reachable and verifies our signature."},
    })
}

impl<'a> TaskMessage<'a> {
    /// The delivery of `event` to `target`, its series starting at attempt `first_attempt`.
    pub fn new(target: &str, first_attempt: u32, replay: bool, event: &'a RawValue) -> Self {
        Self {
            delivery: DeliveryTask {
                target: target.to_owned(),
                first_attempt,
                replay,
            },
            event,
        }
    }

    pub fn to_body(&self) -> String {
        // Serializing a task (a struct of strings and numbers around raw JSON) cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A message taken from the queue.
#[derive(Debug)]
pub enum QueueMessage<'a> {
    Event { head: EventHead, raw: &'a RawValue },
    Task { head: EventHead, message: TaskMessage<'a> },
}

#[derive(Debug, thiserror::Error)]
#[error("neither a checkout event nor a delivery task: {0}")]
pub struct UnreadableMessage(pub String);

impl<'a> QueueMessage<'a> {
    /// Events (the common case) are tried first; a task is read only when that fails.
    pub fn parse(body: &'a str) -> Result<Self, UnreadableMessage> {
        let raw: &RawValue = serde_json::from_str(body).map_err(|e| UnreadableMessage(e.to_string()))?;
        match serde_json::from_str::<EventHead>(body) {
            Ok(head) => Ok(Self::Event { head, raw }),
            Err(event_err) => {
                let message: TaskMessage = serde_json::from_str(body).map_err(|task_err| {
                    UnreadableMessage(format!("as an event: {event_err}; as a task: {task_err}"))
                })?;
                let head = serde_json::from_str(message.event.get()).map_err(|e| UnreadableMessage(e.to_string()))?;
                Ok(Self::Task { head, message })
            }
        }
    }

    pub fn head(&self) -> &EventHead {
        match self {
            Self::Event { head, .. } | Self::Task { head, .. } => head,
        }
    }
}

/// A message the dispatcher gave up on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why, for people.
    pub reason: String,
    /// Why, as a stable code (letters written before the codes have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<FinalCode>,
    pub attempts: u32,
    #[serde(with = "crate::clock::rfc3339_serde")]
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<EventId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<EventType>,
    /// What a redrive puts back on the queue (for an exhausted delivery: a task whose next
    /// series of attempts starts after the ones already made).
    pub message: String,
}

impl DeadLetter {
    /// A dead letter as stored, or (for a message that SQS itself moved after too many receives)
    /// the raw message wrapped as one.
    pub fn read(body: &str, at: Timestamp) -> Self {
        serde_json::from_str(body).unwrap_or_else(|_| Self {
            reason: "moved by the queue after too many receives".to_owned(),
            code: Some(FinalCode::MovedByQueue),
            attempts: 0,
            at,
            target: None,
            event_id: None,
            event_type: None,
            message: body.to_owned(),
        })
    }

    pub fn to_body(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    /// A test event reads like any event on the queue: a task to one endpoint whose head says
    /// `webhook.test`, version 0.
    #[test]
    fn a_test_event_is_a_task_like_any_other() {
        let merchant = MerchantId::generate();
        let event = test_event(&merchant, "2026-04-17", crate::clock::now());
        let raw = serde_json::value::to_raw_value(&event).unwrap();
        let body = TaskMessage::new("we_1", 1, false, &raw).to_body();
        match QueueMessage::parse(&body).unwrap() {
            QueueMessage::Task { head, message } => {
                assert_eq!(
                    (head.kind, head.version, &head.merchant_id),
                    (EventType::Test, 0, &merchant)
                );
                assert_eq!(message.delivery.target, "we_1");
            }
            QueueMessage::Event { .. } => panic!("a test event is only ever a task"),
        }
        assert_eq!(EventType::parse("webhook.test"), None, "not something to subscribe to");
    }

    use super::*;
    use crate::testkit::{event, merchant};

    #[test]
    fn an_event_and_a_task_for_it_carry_the_same_bytes() {
        let e = event(&merchant(), None, 1);
        let body = serde_json::to_string(&e).unwrap();
        let parsed = QueueMessage::parse(&body).unwrap();
        assert_eq!(parsed.head().id, e.id);
        match parsed {
            QueueMessage::Event { raw, .. } => assert_eq!(raw.get(), body, "the event's exact bytes"),
            other => panic!("not an event: {other:?}"),
        }

        let task = TaskMessage::new("we_1", 4, true, serde_json::from_str(&body).unwrap()).to_body();
        match QueueMessage::parse(&task).unwrap() {
            QueueMessage::Task { head, message } => {
                assert_eq!(head.version, 1);
                assert_eq!(message.delivery.first_attempt, 4);
                assert!(message.delivery.replay);
                assert_eq!(message.event.get(), body, "the event's bytes are kept exactly");
            }
            other => panic!("not a task: {other:?}"),
        }
    }

    #[test]
    fn unreadable_messages_say_why() {
        for body in ["", "not json", "{}", r#"{"delivery":{"target":"we_1"}}"#] {
            assert!(QueueMessage::parse(body).is_err(), "{body}");
        }
    }

    #[test]
    fn foreign_dead_letters_are_wrapped_for_redrive() {
        let now = crate::clock::now();
        let letter = DeadLetter::read("raw body", now);
        assert_eq!(letter.message, "raw body");
        assert_eq!(letter.code, Some(FinalCode::MovedByQueue));
        let ours = DeadLetter {
            reason: "exhausted".into(),
            code: Some(FinalCode::Exhausted),
            attempts: 10,
            at: now,
            target: Some("we_1".into()),
            event_id: None,
            event_type: None,
            message: "{}".into(),
        };
        assert_eq!(DeadLetter::read(&ours.to_body(), now), ours);
        assert!(ours.to_body().contains(r#""code":"exhausted""#), "{}", ours.to_body());
        // A letter written before the codes reads back without one.
        let mut old: serde_json::Value = serde_json::from_str(&ours.to_body()).unwrap();
        old.as_object_mut().unwrap().remove("code");
        let read = DeadLetter::read(&old.to_string(), now);
        assert_eq!((read.code, read.reason.as_str()), (None, "exhausted"));
    }
}
