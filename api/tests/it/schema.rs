//! Responses checked against the ACP JSON Schema (2026-04-17, shipped in spec/).

use serde_json::Value;
use std::sync::OnceLock;

const SCHEMA: &str = include_str!("../../../spec/acp-2026-04-17/json-schema/schema.agentic_checkout.json");

fn schema() -> &'static Value {
    static PARSED: OnceLock<Value> = OnceLock::new();
    PARSED.get_or_init(|| serde_json::from_str(SCHEMA).expect("the shipped schema is JSON"))
}

/// Panics with every violation when `instance` is not a valid `$defs/{definition}`.
pub fn assert_valid(definition: &str, instance: &Value) {
    let mut root = schema().clone();
    root["$ref"] = Value::String(format!("#/$defs/{definition}"));
    let validator = jsonschema::validator_for(&root).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not a valid {definition}:\n{}\n{instance:#}",
        errors.join("\n")
    );
}

/// A checkout session response: with an order once completed.
pub fn assert_session(instance: &Value) {
    let definition = if instance.get("order").is_some() {
        "CheckoutSessionWithOrder"
    } else {
        "CheckoutSession"
    };
    assert_valid(definition, instance);
}

pub fn assert_error(instance: &Value, code: &str) {
    assert_valid("Error", instance);
    assert_eq!(instance["code"], code, "{instance}");
}

#[test]
fn the_validator_rejects_what_the_schema_forbids() {
    let bad = serde_json::json!({"type": "invalid_request", "code": "x", "message": "m", "extra": 1});
    let mut root = schema().clone();
    root["$ref"] = Value::String("#/$defs/Error".to_owned());
    assert!(!jsonschema::validator_for(&root).unwrap().is_valid(&bad));
}

#[test]
fn a_session_missing_required_fields_is_rejected() {
    let mut root = schema().clone();
    root["$ref"] = Value::String("#/$defs/CheckoutSession".to_owned());
    let validator = jsonschema::validator_for(&root).unwrap();
    let session = serde_json::json!({"id": "cs_1", "status": "ready_for_payment", "currency": "usd",
        "line_items": [], "fulfillment_options": [], "messages": [], "links": [], "capabilities": {}});
    assert!(!validator.is_valid(&session), "totals is required");
    let mut complete = session.clone();
    complete["totals"] = serde_json::json!([]);
    assert!(validator.is_valid(&complete));
    complete["status"] = serde_json::json!("paid");
    assert!(!validator.is_valid(&complete), "status is an enum");
}
