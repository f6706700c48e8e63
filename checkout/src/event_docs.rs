//! The event types as a merchant reads about them (the portal's event types page): what each
//! means, an example built by the domain itself (so it cannot drift from what is sent) and the
//! JSON Schema of its envelope, whose `data` is the ACP checkout session.

use crate::acp::ApiVersion;
use crate::acp::{CompleteSessionRequest, CreateSessionRequest, RequestItem, UpdateSessionRequest};
use crate::clock::Timestamp;
use crate::delivery_task::test_event;
use crate::event::{Event, EventType};
use crate::ids::{MerchantId, SessionId};
use crate::merchant::Merchant;
use crate::payment::ChargeOutcome;
use crate::session::{self, CommandContext};
use serde_json::{Value, json};

/// Every type a merchant can receive: the four it subscribes to, then the test event.
pub const DOCUMENTED: [EventType; 5] = [
    EventType::Created,
    EventType::Updated,
    EventType::Completed,
    EventType::Cancelled,
    EventType::Test,
];

/// The name the ACP checkout JSON Schema bundle is served under, beside the event schemas.
pub const ACP_SCHEMA_FILE: &str = "acp-checkout.schema.json";

/// What an event of `kind` means.
pub fn meaning(kind: EventType) -> &'static str {
    match kind {
        EventType::Created => "An agent opened a checkout session. `data` is the session as created, priced.",
        EventType::Updated => {
            "The session changed: items, address, fulfillment option, or a payment that needs \
             authentication. `data` is the whole session after the change."
        }
        EventType::Completed => {
            "The buyer paid: the session is completed and `data.order` is the order. Fulfil from here."
        }
        EventType::Cancelled => "The session was cancelled before payment: nothing will be charged.",
        EventType::Test => {
            "Sent only when you ask for it (\"Send a test event\" or `POST /webhook_endpoints/{id}/test`), \
             to one endpoint, signed like any other. Never stored, never subscribed to."
        }
    }
}

/// The file name of `kind`'s schema.
pub fn schema_file(kind: EventType) -> String {
    format!("{}.schema.json", kind.as_str())
}

/// An example event of `kind` for `merchant_id`, made at `now` by the same domain code that
/// makes real ones (the demo catalog's items).
pub fn example(kind: EventType, merchant_id: &MerchantId, now: Timestamp) -> Option<Value> {
    if kind == EventType::Test {
        return Some(test_event(merchant_id, ApiVersion::CURRENT.as_str(), now));
    }
    let merchant = Merchant::demo(merchant_id.clone(), "");
    let ctx = CommandContext {
        merchant: &merchant,
        api_version: ApiVersion::CURRENT,
        now,
    };
    let create = CreateSessionRequest {
        currency: merchant.catalog.currency.clone(),
        line_items: Some(vec![RequestItem {
            id: merchant.catalog.items.first()?.id.clone(),
            name: None,
            unit_amount: None,
            quantity: Some(1),
        }]),
        ..Default::default()
    };
    let created = session::create(&ctx, SessionId::generate(), &create).ok()?;
    let ready: UpdateSessionRequest = serde_json::from_value(json!({
        "fulfillment_details": {"name": "Jane Doe", "email": "jane@example.com", "address": {
            "name": "Jane Doe", "line_one": "1 Main St", "city": "Springfield", "state": "IL",
            "country": "US", "postal_code": "62701"}},
    }))
    .ok()?;
    let (version, data) = match kind {
        EventType::Created => (1, created),
        EventType::Updated => (2, session::update(&ctx, &created, &ready).ok()?),
        EventType::Cancelled => (2, session::cancel(&ctx, &created).ok()?),
        EventType::Completed => {
            let updated = session::update(&ctx, &created, &ready).ok()?;
            let pay: CompleteSessionRequest = serde_json::from_value(json!({"payment_data": {
                "handler_id": "card_tokenized",
                "instrument": {"type": "card", "credential": {"type": "spt", "token": "spt_test_approve"}}}}))
            .ok()?;
            let approved = ChargeOutcome::Approved {
                payment_id: "pay_example".to_owned(),
            };
            (3, session::apply_charge(&ctx, &updated, &pay, &approved).session)
        }
        EventType::Test => return None,
    };
    let event = Event::new(
        kind,
        merchant_id.clone(),
        version,
        ApiVersion::CURRENT.as_str(),
        data,
        now,
    );
    serde_json::to_value(event).ok()
}

/// The JSON Schema (2020-12) of `kind`'s events: the envelope, with `data` referring to the ACP
/// bundle served beside it as [`ACP_SCHEMA_FILE`].
pub fn schema(kind: EventType) -> Value {
    let data = match kind {
        EventType::Test => json!({
            "type": "object",
            "required": ["message"],
            "properties": {"message": {"type": "string"}},
        }),
        EventType::Completed => json!({"$ref": format!("{ACP_SCHEMA_FILE}#/$defs/CheckoutSessionWithOrder")}),
        _ => json!({"$ref": format!("{ACP_SCHEMA_FILE}#/$defs/CheckoutSession")}),
    };
    let version = if kind == EventType::Test {
        json!({"const": 0})
    } else {
        json!({"type": "integer", "minimum": 1,
               "description": "The session's version after the change: 1 for created, then +1 per change, no gaps."})
    };
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": schema_file(kind),
        "title": kind.as_str(),
        "description": meaning(kind),
        "type": "object",
        "additionalProperties": false,
        "required": ["id", "type", "created_at", "merchant_id", "session_id", "version", "api_version", "data"],
        "properties": {
            "id": {"type": "string", "pattern": "^evt_[0-9A-HJKMNP-TV-Z]{26}$",
                   "description": "The event's id, also sent as webhook-id: the same on every retry and replay."},
            "type": {"const": kind.as_str()},
            "created_at": {"type": "string", "format": "date-time"},
            "merchant_id": {"type": "string", "description": "Yours: check it when you trust a whole key set."},
            "session_id": {"type": "string"},
            "version": version,
            "api_version": {"type": "string"},
            "data": data,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock;

    #[test]
    fn every_type_has_an_example_of_its_own_type() {
        let merchant = MerchantId::generate();
        for kind in DOCUMENTED {
            let example = example(kind, &merchant, clock::now()).unwrap_or_else(|| panic!("{kind:?}"));
            assert_eq!(example["type"], kind.as_str());
            assert_eq!(example["merchant_id"], merchant.as_str());
            assert_eq!(schema(kind)["properties"]["type"]["const"], kind.as_str());
        }
        let completed = example(EventType::Completed, &merchant, clock::now()).unwrap();
        assert_eq!(completed["data"]["status"], "completed");
        assert!(completed["data"]["order"]["id"].is_string());
        let cancelled = example(EventType::Cancelled, &merchant, clock::now()).unwrap();
        assert_eq!(cancelled["data"]["status"], "canceled");
    }
}
