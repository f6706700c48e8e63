//! Request bodies of the checkout endpoints, and their strict parsing.

use super::session::{Address, Buyer, FulfillmentDetails, SelectedFulfillmentOption};
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
