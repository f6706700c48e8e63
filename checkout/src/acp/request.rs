//! Request bodies of the checkout endpoints, and their strict parsing.

use super::AcpError;
use super::session::{Address, Buyer, FulfillmentDetails, SelectedFulfillmentOption};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// An item as an agent sends it. `quantity` is not in the 2026-04-17 schema (an upstream
/// defect) but every agent sends it, so it is accepted: at least 1, default 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestItem {
    pub id: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Ignored: prices come from the merchant's catalog.
    #[serde(default)]
    pub unit_amount: Option<i64>,
    #[serde(default)]
    pub quantity: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentInterventions {
    #[serde(default)]
    pub supported: Vec<String>,
    #[serde(default)]
    pub display_context: Option<String>,
    #[serde(default)]
    pub redirect_context: Option<String>,
    #[serde(default)]
    pub max_redirects: Option<u32>,
    #[serde(default)]
    pub max_interaction_depth: Option<u32>,
}

/// What the agent says it can do.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentCapabilities {
    #[serde(default)]
    pub payment: Option<Value>,
    #[serde(default)]
    pub interventions: Option<AgentInterventions>,
    /// Extension identifiers; an empty array is accepted (upstream defect in the schema's `oneOf`).
    #[serde(default)]
    pub extensions: Option<Vec<Value>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSessionRequest {
    #[serde(default)]
    pub buyer: Option<Buyer>,
    #[serde(default)]
    pub line_items: Option<Vec<RequestItem>>,
    /// The 2025-09-29 name of `line_items`.
    #[serde(default)]
    pub items: Option<Vec<RequestItem>>,
    pub currency: String,
    #[serde(default)]
    pub fulfillment_details: Option<FulfillmentDetails>,
    /// The 2025-09-29 form of `fulfillment_details.address`.
    #[serde(default)]
    pub fulfillment_address: Option<Address>,
    #[serde(default)]
    pub capabilities: Option<AgentCapabilities>,
    #[serde(default)]
    pub fulfillment_groups: Option<Vec<Value>>,
    #[serde(default)]
    pub affiliate_attribution: Option<Value>,
    #[serde(default)]
    pub coupons: Option<Vec<String>>,
    #[serde(default)]
    pub discounts: Option<Value>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub quote_id: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default)]
    pub order_notes: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateSessionRequest {
    #[serde(default)]
    pub buyer: Option<Buyer>,
    #[serde(default)]
    pub line_items: Option<Vec<RequestItem>>,
    /// The 2025-09-29 name of `line_items`.
    #[serde(default)]
    pub items: Option<Vec<RequestItem>>,
    #[serde(default)]
    pub fulfillment_details: Option<FulfillmentDetails>,
    /// The 2025-09-29 form of `fulfillment_details.address`.
    #[serde(default)]
    pub fulfillment_address: Option<Address>,
    /// The 2025-09-29 form of `selected_fulfillment_options`.
    #[serde(default)]
    pub fulfillment_option_id: Option<String>,
    #[serde(default)]
    pub fulfillment_groups: Option<Vec<Value>>,
    #[serde(default)]
    pub selected_fulfillment_options: Option<Vec<SelectedFulfillmentOption>>,
    #[serde(default)]
    pub coupons: Option<Vec<String>>,
    #[serde(default)]
    pub discounts: Option<Value>,
    #[serde(default)]
    pub order_notes: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    #[serde(rename = "type")]
    pub kind: String,
    pub token: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Instrument {
    #[serde(rename = "type")]
    pub kind: String,
    pub credential: Credential,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaymentData {
    #[serde(default)]
    pub handler_id: Option<String>,
    #[serde(default)]
    pub instrument: Option<Instrument>,
    #[serde(default)]
    pub billing_address: Option<Address>,
    #[serde(default)]
    pub purchase_order_number: Option<String>,
    #[serde(default)]
    pub payment_terms: Option<String>,
    #[serde(default)]
    pub due_date: Option<String>,
    #[serde(default)]
    pub approval_required: Option<bool>,
    /// 2025-09-29: `{token, provider}` at the top level.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
}

impl PaymentData {
    /// The payment token, wherever the request's version put it.
    pub fn token(&self) -> Option<&str> {
        self.instrument
            .as_ref()
            .map(|i| i.credential.token.as_str())
            .or(self.token.as_deref())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthenticationResult {
    pub outcome: String,
    #[serde(default)]
    pub outcome_details: Option<Value>,
}

impl AuthenticationResult {
    /// Outcomes after which the issuer lets the charge go ahead.
    pub fn is_success(&self) -> bool {
        matches!(self.outcome.as_str(), "authenticated" | "attempt_acknowledged")
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompleteSessionRequest {
    #[serde(default)]
    pub buyer: Option<Buyer>,
    pub payment_data: PaymentData,
    #[serde(default)]
    pub authentication_result: Option<AuthenticationResult>,
    #[serde(default)]
    pub affiliate_attribution: Option<Value>,
    #[serde(default)]
    pub risk_signals: Option<Value>,
    #[serde(default)]
    pub marketing_consents: Option<Vec<Value>>,
    #[serde(default)]
    pub order_notes: Option<String>,
}

/// The schema leaves this object open, so unknown fields are kept, not refused.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CancelSessionRequest {
    #[serde(default)]
    pub intent_trace: Option<Value>,
}

/// How deeply a request body may nest objects and arrays. Free-form fields (`metadata`,
/// `intent_trace`, …) are stored inside the event envelope a few levels deeper, and the JSON
/// reader refuses 128 levels: a body nested deeper than this could be stored but never read back.
pub const MAX_JSON_DEPTH: usize = 32;

/// How deeply `body` nests objects and arrays (brackets inside strings do not count).
fn nesting_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Parses a request body, turning any failure into an ACP `invalid_request` that names the
/// offending field as a JSONPath in `param`. The body must be one JSON object, nested at most
/// [`MAX_JSON_DEPTH`] levels.
pub fn parse_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, AcpError> {
    if body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(AcpError::invalid(
            "invalid_request",
            "The request body must be a JSON object.",
        ));
    }
    let depth = nesting_depth(body);
    if depth > MAX_JSON_DEPTH {
        return Err(AcpError::invalid(
            "invalid_request",
            format!(
                "The request body nests {depth} levels of objects and arrays; at most {MAX_JSON_DEPTH} are accepted."
            ),
        ));
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = parsed.map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        let code = if inner.is_syntax() || inner.is_eof() {
            "invalid_json"
        } else {
            "invalid_request"
        };
        let error = AcpError::invalid(code, format!("Request body is not valid: {inner}"));
        if path == "." || code == "invalid_json" {
            error
        } else {
            error.with_param(format!("$.{path}"))
        }
    })?;
    de.end()
        .map_err(|e| AcpError::invalid("invalid_json", format!("Request body is not valid: {e}")))?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_top_level_field_is_named() {
        let err = parse_body::<CreateSessionRequest>(br#"{"currency":"usd","line_items":[{"id":"a"}],"bogus":1}"#)
            .unwrap_err();
        assert_eq!(err.code, "invalid_request");
        assert!(err.message.contains("bogus"), "{}", err.message);
    }

    #[test]
    fn wrong_type_points_at_the_field() {
        let err =
            parse_body::<CreateSessionRequest>(br#"{"currency":"usd","line_items":[{"id":"a","quantity":"two"}]}"#)
                .unwrap_err();
        assert_eq!(err.param.as_deref(), Some("$.line_items[0].quantity"));
    }

    #[test]
    fn malformed_json_is_invalid_json() {
        let err = parse_body::<CreateSessionRequest>(br#"{"currency":"#).unwrap_err();
        assert_eq!(err.code, "invalid_json");
        let err = parse_body::<CreateSessionRequest>(br#"{"currency":"usd"} trailing"#).unwrap_err();
        assert_eq!(err.code, "invalid_json");
    }

    #[test]
    fn only_objects_are_bodies() {
        for body in [
            &br#"[null,[{"id":"test_1","quantity":3}],null,"usd"]"#[..],
            b"[]",
            b"\"usd\"",
            b"1",
            b"",
        ] {
            let err = parse_body::<CancelSessionRequest>(body).unwrap_err();
            assert_eq!(err.code, "invalid_request", "{}", String::from_utf8_lossy(body));
            assert!(err.message.contains("JSON object"), "{}", err.message);
        }
        assert!(parse_body::<CancelSessionRequest>(b"  {}").is_ok());
    }

    #[test]
    fn deep_nesting_is_refused_with_the_limit_in_the_message() {
        let nested = |levels: usize| {
            format!(
                r#"{{"intent_trace":{{"x":{}1{}}}}}"#,
                "[".repeat(levels),
                "]".repeat(levels)
            )
        };
        // Two levels for the body and intent_trace, then the arrays.
        assert!(parse_body::<CancelSessionRequest>(nested(MAX_JSON_DEPTH - 2).as_bytes()).is_ok());
        let err = parse_body::<CancelSessionRequest>(nested(125).as_bytes()).unwrap_err();
        assert_eq!(err.code, "invalid_request");
        assert!(err.message.contains("at most 32"), "{}", err.message);
        // Brackets inside strings are text, not nesting.
        let text = format!(
            r#"{{"intent_trace":{{"x":"{}\"{}"}}}}"#,
            "[".repeat(200),
            "{".repeat(200)
        );
        assert!(parse_body::<CancelSessionRequest>(text.as_bytes()).is_ok());
    }

    #[test]
    fn seed_shape_parses() {
        let req: CreateSessionRequest =
            parse_body(br#"{"currency":"usd","items":[{"id":"test_1","quantity":1}]}"#).unwrap();
        assert_eq!(req.items.unwrap()[0].quantity, Some(1));
    }

    #[test]
    fn empty_extensions_array_is_accepted() {
        let req: CreateSessionRequest =
            parse_body(br#"{"currency":"usd","line_items":[{"id":"a"}],"capabilities":{"extensions":[]}}"#).unwrap();
        assert_eq!(req.capabilities.unwrap().extensions, Some(vec![]));
    }
}
