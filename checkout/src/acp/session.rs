//! The checkout session as the API returns it — and as every event carries it.

use crate::ids::{OrderId, SessionId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    NotReadyForPayment,
    ReadyForPayment,
    AuthenticationRequired,
    Completed,
    Canceled,
}

impl SessionStatus {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Canceled)
    }

    /// The status as the wire names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotReadyForPayment => "not_ready_for_payment",
            Self::ReadyForPayment => "ready_for_payment",
            Self::AuthenticationRequired => "authentication_required",
            Self::Completed => "completed",
            Self::Canceled => "canceled",
        }
    }
}

impl std::fmt::Display for SessionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Address {
    pub name: String,
    pub line_one: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_two: Option<String>,
    pub city: String,
    pub state: String,
    pub country: String,
    pub postal_code: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Buyer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_name: Option<String>,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loyalty: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tax_exemption: Option<Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FulfillmentDetails {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FulfillmentType {
    Shipping,
    Digital,
    Pickup,
    LocalDelivery,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectedFulfillmentOption {
    #[serde(rename = "type")]
    pub kind: FulfillmentType,
    pub option_id: String,
    #[serde(default)]
    pub item_ids: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TotalType {
    ItemsBaseAmount,
    ItemsDiscount,
    Subtotal,
    Discount,
    Fulfillment,
    Tax,
    Fee,
    Total,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Total {
    #[serde(rename = "type")]
    pub kind: TotalType,
    pub display_text: String,
    pub amount: i64,
}

impl Total {
    pub fn new(kind: TotalType, display_text: &str, amount: i64) -> Self {
        Self {
            kind,
            display_text: display_text.to_owned(),
            amount,
        }
    }
}

/// Amount of the `total` entry of a totals list (0 when absent).
pub fn grand_total(totals: &[Total]) -> i64 {
    totals
        .iter()
        .find(|t| t.kind == TotalType::Total)
        .map_or(0, |t| t.amount)
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRef {
    pub id: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    pub id: String,
    pub item: ItemRef,
    pub quantity: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub unit_amount: i64,
    pub totals: Vec<Total>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentOption {
    #[serde(rename = "type")]
    pub kind: FulfillmentType,
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carrier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_delivery_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_delivery_time: Option<String>,
    pub totals: Vec<Total>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageType {
    Info,
    Warning,
    Error,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    #[serde(rename = "type")]
    pub kind: MessageType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolution: Option<String>,
    pub content_type: String,
    pub content: String,
}

impl Message {
    /// A problem the buyer has to fix before paying (ACP `MessageError`).
    pub fn error(code: &str, param: Option<&str>, resolution: &str, content: impl Into<String>) -> Self {
        Self {
            kind: MessageType::Error,
            code: Some(code.to_owned()),
            param: param.map(str::to_owned),
            resolution: Some(resolution.to_owned()),
            content_type: "plain".to_owned(),
            content: content.into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    #[serde(rename = "type")]
    pub kind: String,
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Protocol {
    pub version: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentHandler {
    pub id: String,
    pub name: String,
    pub display_name: String,
    pub version: String,
    pub spec: String,
    pub requires_delegate_payment: bool,
    pub requires_pci_compliance: bool,
    pub psp: String,
    pub config_schema: String,
    pub instrument_schemas: Vec<String>,
    pub config: Value,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PaymentCapabilities {
    pub handlers: Vec<PaymentHandler>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SellerInterventions {
    pub supported: Vec<String>,
    pub required: Vec<String>,
    pub enforcement: String,
}

/// The seller's side of the negotiated capabilities.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SellerCapabilities {
    pub payment: PaymentCapabilities,
    pub interventions: SellerInterventions,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderConfirmation {
    pub confirmation_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_notes: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    #[serde(rename = "type")]
    pub kind: String,
    pub id: OrderId,
    pub checkout_session_id: SessionId,
    pub permalink_url: String,
    pub status: String,
    pub confirmation: OrderConfirmation,
    pub totals: Vec<Total>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckoutSession {
    pub id: SessionId,
    pub protocol: Protocol,
    pub capabilities: SellerCapabilities,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buyer: Option<Buyer>,
    pub status: SessionStatus,
    pub currency: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locale: Option<String>,
    pub line_items: Vec<LineItem>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fulfillment_details: Option<FulfillmentDetails>,
    pub fulfillment_options: Vec<FulfillmentOption>,
    #[serde(default)]
    pub selected_fulfillment_options: Vec<SelectedFulfillmentOption>,
    pub totals: Vec<Total>,
    pub messages: Vec<Message>,
    pub links: Vec<Link>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_metadata: Option<Value>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<serde_json::Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order: Option<Order>,
}
