//! The session aggregate. Each command takes the current session (the `data` of its latest
//! event) and returns the next one; the caller stores it as a new event. No I/O here.

use crate::acp::{
    AgentCapabilities, ApiVersion, CheckoutSession, CompleteSessionRequest, CreateSessionRequest, FulfillmentDetails,
    Message, Order, OrderConfirmation, PaymentCapabilities, PaymentHandler, Protocol, RequestItem,
    SelectedFulfillmentOption, SellerCapabilities, SellerInterventions, SessionStatus, UpdateSessionRequest,
    grand_total,
};
use crate::catalog::{Catalog, MAX_QUANTITY};
use crate::clock::{Timestamp, rfc3339};
use crate::event::EventType;
use crate::ids::{OrderId, SessionId};
use crate::merchant::Merchant;
use crate::payment::ChargeOutcome;
use crate::pricing::{CartLine, price};

/// Why a command was refused. Nothing is stored when a command fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    #[error("at least one item is required")]
    EmptyCart { param: String },
    #[error("the item id '{id}' does not exist")]
    UnknownItem { param: String, id: String },
    #[error("quantity must be between 1 and {MAX_QUANTITY}")]
    InvalidQuantity { param: String },
    #[error("currency '{given}' is not supported; this merchant sells in '{expected}'")]
    UnsupportedCurrency { given: String, expected: String },
    #[error("fulfillment option '{id}' is not offered for this cart")]
    UnknownFulfillmentOption { param: String, id: String },
    #[error("the update changes nothing: give at least one field to change")]
    NothingToUpdate,
    #[error("the session is {status} and can no longer be changed")]
    NotModifiable { status: SessionStatus },
    #[error("the session is {status} and cannot be canceled")]
    NotCancelable { status: SessionStatus },
    #[error("the session is not ready for payment: {}", missing.join(" "))]
    NotReadyForPayment { missing: Vec<String> },
    #[error("payment_data needs an instrument with a credential token")]
    PaymentMissing,
    #[error("this checkout session requires issuer authentication; include 'authentication_result'")]
    RequiresAuthentication,
}

/// What a command needs to know besides the session.
pub struct CommandContext<'a> {
    pub merchant: &'a Merchant,
    pub api_version: ApiVersion,
    pub now: Timestamp,
}

const INTERVENTIONS_OFFERED: [&str; 1] = ["3ds"];

pub fn create(
    ctx: &CommandContext<'_>,
    id: SessionId,
    req: &CreateSessionRequest,
) -> Result<CheckoutSession, CommandError> {
    let catalog = &ctx.merchant.catalog;
    let currency = req.currency.to_ascii_lowercase();
    if currency != catalog.currency {
        return Err(CommandError::UnsupportedCurrency {
            given: req.currency.clone(),
            expected: catalog.currency.clone(),
        });
    }
    let (field, items) = requested_items(req.line_items.as_ref(), req.items.as_ref());
    let cart = resolve_cart(catalog, items.unwrap_or(&[]), field)?;
    let mut fulfillment_details = req.fulfillment_details.clone();
    if let Some(address) = &req.fulfillment_address {
        fulfillment_details
            .get_or_insert_with(FulfillmentDetails::default)
            .address = Some(address.clone());
    }
    let stamp = rfc3339(&ctx.now);
    let mut session = CheckoutSession {
        id,
        protocol: Protocol {
            version: ApiVersion::CURRENT.as_str().to_owned(),
        },
        capabilities: seller_capabilities(req.capabilities.as_ref()),
        buyer: req.buyer.clone(),
        status: SessionStatus::NotReadyForPayment,
        currency,
        locale: req.locale.clone(),
        line_items: vec![],
        fulfillment_details,
        fulfillment_options: vec![],
        selected_fulfillment_options: vec![],
        totals: vec![],
        messages: vec![],
        links: ctx.merchant.links.clone(),
        authentication_metadata: None,
        created_at: stamp.clone(),
        updated_at: stamp,
        metadata: req.metadata.clone(),
        order: None,
    };
    reprice(&mut session, catalog, &cart, &[]);
    Ok(session)
}

pub fn update(
    ctx: &CommandContext<'_>,
    current: &CheckoutSession,
    req: &UpdateSessionRequest,
) -> Result<CheckoutSession, CommandError> {
    if current.status.is_terminal() {
        return Err(CommandError::NotModifiable { status: current.status });
    }
    // An empty update would append an event (and send a webhook) that says nothing.
    if *req == UpdateSessionRequest::default() {
        return Err(CommandError::NothingToUpdate);
    }
    let catalog = &ctx.merchant.catalog;
    let mut next = current.clone();
    let (field, items) = requested_items(req.line_items.as_ref(), req.items.as_ref());
    let cart = match items {
        Some(items) => resolve_cart(catalog, items, field)?,
        None => current_cart(catalog, current)?,
    };
    if let Some(buyer) = &req.buyer {
        next.buyer = Some(buyer.clone());
    }
    if let Some(details) = &req.fulfillment_details {
        next.fulfillment_details = Some(details.clone());
    }
    if let Some(address) = &req.fulfillment_address {
        next.fulfillment_details
            .get_or_insert_with(FulfillmentDetails::default)
            .address = Some(address.clone());
    }
    let (selection_field, selection) = requested_selection(current, req);
    reprice(&mut next, catalog, &cart, &selection);
    if let Some(wanted) = selection.first()
        && !next
            .selected_fulfillment_options
            .iter()
            .any(|s| s.option_id == wanted.option_id)
    {
        return Err(CommandError::UnknownFulfillmentOption {
            param: selection_field.to_owned(),
            id: wanted.option_id.clone(),
        });
    }
    next.authentication_metadata = None;
    next.updated_at = rfc3339(&ctx.now);
    Ok(next)
}

pub fn cancel(ctx: &CommandContext<'_>, current: &CheckoutSession) -> Result<CheckoutSession, CommandError> {
    if current.status.is_terminal() {
        return Err(CommandError::NotCancelable { status: current.status });
    }
    let mut next = current.clone();
    next.status = SessionStatus::Canceled;
    next.messages.clear();
    next.authentication_metadata = None;
    next.updated_at = rfc3339(&ctx.now);
    Ok(next)
}

/// What `/complete` asks the payment processor for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentPlan {
    Charge {
        token: String,
        amount: i64,
        currency: String,
        authenticated: bool,
    },
    /// The issuer refused authentication: nothing to charge, the payment is declined.
    AuthenticationFailed,
}

pub fn payment_plan(current: &CheckoutSession, req: &CompleteSessionRequest) -> Result<PaymentPlan, CommandError> {
    match current.status {
        SessionStatus::Completed | SessionStatus::Canceled => {
            return Err(CommandError::NotModifiable { status: current.status });
        }
        SessionStatus::NotReadyForPayment => {
            return Err(CommandError::NotReadyForPayment {
                missing: current.messages.iter().map(|m| m.content.clone()).collect(),
            });
        }
        SessionStatus::AuthenticationRequired if req.authentication_result.is_none() => {
            return Err(CommandError::RequiresAuthentication);
        }
        SessionStatus::AuthenticationRequired | SessionStatus::ReadyForPayment => {}
    }
    let token = req.payment_data.token().ok_or(CommandError::PaymentMissing)?;
    let authenticated = match &req.authentication_result {
        Some(result) if !result.is_success() => return Ok(PaymentPlan::AuthenticationFailed),
        Some(_) => true,
        None => false,
    };
    Ok(PaymentPlan::Charge {
        token: token.to_owned(),
        amount: grand_total(&current.totals),
        currency: current.currency.clone(),
        authenticated,
    })
}

/// The session after a charge attempt, the event it warrants (none when nothing changed), and
/// messages meant for this reply only.
pub struct ChargeResult {
    pub session: CheckoutSession,
    pub event: Option<EventType>,
}

pub fn apply_charge(
    ctx: &CommandContext<'_>,
    current: &CheckoutSession,
    req: &CompleteSessionRequest,
    outcome: &ChargeOutcome,
) -> ChargeResult {
    let mut next = current.clone();
    if let Some(buyer) = &req.buyer {
        next.buyer = Some(buyer.clone());
    }
    next.updated_at = rfc3339(&ctx.now);
    match outcome {
        ChargeOutcome::Approved { .. } => {
            next.status = SessionStatus::Completed;
            next.messages.clear();
            next.authentication_metadata = None;
            next.order = Some(new_order(ctx, &next, req));
            ChargeResult {
                session: next,
                event: Some(EventType::Completed),
            }
        }
        ChargeOutcome::AuthenticationRequired => {
            next.status = SessionStatus::AuthenticationRequired;
            next.authentication_metadata = Some(test_authentication_metadata(ctx.merchant));
            ChargeResult {
                session: next,
                event: Some(EventType::Updated),
            }
        }
        ChargeOutcome::Declined { .. } => {
            let changed = next.status == SessionStatus::AuthenticationRequired;
            next.status = SessionStatus::ReadyForPayment;
            next.authentication_metadata = None;
            if !changed {
                next.updated_at = current.updated_at.clone();
            }
            next.messages.push(Message::error(
                "payment_declined",
                Some("$.payment_data"),
                "requires_buyer_input",
                "Your payment was declined. Please try a different payment method.",
            ));
            ChargeResult {
                session: next,
                event: changed.then_some(EventType::Updated),
            }
        }
    }
}

fn new_order(ctx: &CommandContext<'_>, session: &CheckoutSession, req: &CompleteSessionRequest) -> Order {
    let id = OrderId::generate();
    let number = id.as_str().chars().rev().take(8).collect::<String>();
    Order {
        kind: "order".to_owned(),
        permalink_url: format!("{}/{}", ctx.merchant.order_url_base.trim_end_matches('/'), id),
        checkout_session_id: session.id.clone(),
        status: "created".to_owned(),
        confirmation: OrderConfirmation {
            confirmation_number: number.chars().rev().collect::<String>().to_uppercase(),
            order_notes: req.order_notes.clone(),
        },
        totals: session.totals.clone(),
        id,
    }
}

fn test_authentication_metadata(merchant: &Merchant) -> serde_json::Value {
    serde_json::json!({
        "acquirer_details": {
            "acquirer_bin": "400000",
            "acquirer_country": "US",
            "acquirer_merchant_id": merchant.id.as_str().chars().take(35).collect::<String>(),
            "merchant_name": merchant.name.chars().take(40).collect::<String>(),
        },
        "directory_server": "visa",
    })
}

/// `line_items` (current) or `items` (2025-09-29), with the JSONPath prefix for errors.
fn requested_items<'a>(
    line_items: Option<&'a Vec<RequestItem>>,
    items: Option<&'a Vec<RequestItem>>,
) -> (&'static str, Option<&'a [RequestItem]>) {
    match (line_items, items) {
        (Some(l), _) => ("line_items", Some(l.as_slice())),
        (None, Some(i)) => ("items", Some(i.as_slice())),
        (None, None) => ("line_items", None),
    }
}

fn requested_selection(
    current: &CheckoutSession,
    req: &UpdateSessionRequest,
) -> (&'static str, Vec<SelectedFulfillmentOption>) {
    if let Some(selected) = &req.selected_fulfillment_options {
        return ("$.selected_fulfillment_options[0].option_id", selected.clone());
    }
    if let Some(option_id) = &req.fulfillment_option_id {
        let kind = current
            .fulfillment_options
            .iter()
            .find(|o| &o.id == option_id)
            .map_or(crate::acp::FulfillmentType::Shipping, |o| o.kind);
        let chosen = SelectedFulfillmentOption {
            kind,
            option_id: option_id.clone(),
            item_ids: vec![],
        };
        return ("$.fulfillment_option_id", vec![chosen]);
    }
    (
        "$.selected_fulfillment_options",
        current.selected_fulfillment_options.clone(),
    )
}

fn resolve_cart<'a>(
    catalog: &'a Catalog,
    items: &[RequestItem],
    field: &str,
) -> Result<Vec<CartLine<'a>>, CommandError> {
    if items.is_empty() {
        return Err(CommandError::EmptyCart {
            param: format!("$.{field}"),
        });
    }
    let mut cart: Vec<CartLine<'a>> = Vec::with_capacity(items.len());
    for (index, requested) in items.iter().enumerate() {
        let quantity_param = || format!("$.{field}[{index}].quantity");
        let item = catalog.item(&requested.id).ok_or_else(|| CommandError::UnknownItem {
            param: format!("$.{field}[{index}].id"),
            id: requested.id.clone(),
        })?;
        let quantity = requested.quantity.unwrap_or(1);
        let quantity = u32::try_from(quantity)
            .ok()
            .filter(|q| (1..=MAX_QUANTITY).contains(q))
            .ok_or_else(|| CommandError::InvalidQuantity {
                param: quantity_param(),
            })?;
        match cart.iter_mut().find(|line| line.item.id == item.id) {
            Some(line) if line.quantity + quantity > MAX_QUANTITY => {
                return Err(CommandError::InvalidQuantity {
                    param: quantity_param(),
                });
            }
            Some(line) => line.quantity += quantity,
            None => cart.push(CartLine { item, quantity }),
        }
    }
    Ok(cart)
}

fn current_cart<'a>(catalog: &'a Catalog, session: &CheckoutSession) -> Result<Vec<CartLine<'a>>, CommandError> {
    session
        .line_items
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let item = catalog.item(&line.item.id).ok_or_else(|| CommandError::UnknownItem {
                param: format!("$.line_items[{index}].id"),
                id: line.item.id.clone(),
            })?;
            Ok(CartLine {
                item,
                quantity: line.quantity,
            })
        })
        .collect()
}

/// Prices the cart into the session and sets its status and the messages that explain it.
fn reprice(
    session: &mut CheckoutSession,
    catalog: &Catalog,
    cart: &[CartLine<'_>],
    selected: &[SelectedFulfillmentOption],
) {
    let priced = price(catalog, cart, selected);
    let has_address = session
        .fulfillment_details
        .as_ref()
        .is_some_and(|d| d.address.is_some());
    let mut messages = Vec::new();
    if priced.needs_address && !has_address {
        messages.push(Message::error(
            "missing",
            Some("$.fulfillment_details.address"),
            "requires_buyer_input",
            "A shipping address is required.",
        ));
    }
    if priced.selected_fulfillment_options.is_empty() {
        messages.push(Message::error(
            "missing",
            Some("$.selected_fulfillment_options"),
            "requires_buyer_input",
            "Choose one of the fulfillment options.",
        ));
    }
    session.status = if messages.is_empty() {
        SessionStatus::ReadyForPayment
    } else {
        SessionStatus::NotReadyForPayment
    };
    session.messages = messages;
    session.line_items = priced.line_items;
    session.fulfillment_options = priced.fulfillment_options;
    session.selected_fulfillment_options = priced.selected_fulfillment_options;
    session.totals = priced.totals;
}

fn seller_capabilities(agent: Option<&AgentCapabilities>) -> SellerCapabilities {
    let agent_supports = |name: &str| {
        agent
            .and_then(|a| a.interventions.as_ref())
            .is_some_and(|i| i.supported.iter().any(|s| s == name))
    };
    SellerCapabilities {
        payment: PaymentCapabilities {
            handlers: vec![PaymentHandler {
                id: "card_tokenized".to_owned(),
                name: "dev.acp.tokenized.card".to_owned(),
                display_name: "Card".to_owned(),
                version: "2026-01-22".to_owned(),
                spec: "https://acp.dev/handlers/tokenized.card".to_owned(),
                requires_delegate_payment: true,
                requires_pci_compliance: false,
                psp: "acp_test_processor".to_owned(),
                config_schema: "https://acp.dev/schemas/handlers/tokenized.card/config.json".to_owned(),
                instrument_schemas: vec!["https://acp.dev/schemas/handlers/tokenized.card/instrument.json".to_owned()],
                config: serde_json::json!({ "test_mode": true, "supports_3ds": true }),
            }],
        },
        interventions: SellerInterventions {
            supported: INTERVENTIONS_OFFERED
                .iter()
                .filter(|i| agent_supports(i))
                .map(|i| (*i).to_owned())
                .collect(),
            required: vec![],
            enforcement: "conditional".to_owned(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::acp::{Address, PaymentData, parse_body};
    use crate::ids::MerchantId;
    use crate::payment::ChargeOutcome;

    fn merchant() -> Merchant {
        Merchant::demo(MerchantId::generate(), "sk_test")
    }

    fn ctx(merchant: &Merchant) -> CommandContext<'_> {
        CommandContext {
            merchant,
            api_version: ApiVersion::CURRENT,
            now: crate::clock::now(),
        }
    }

    fn create_with(merchant: &Merchant, body: &str) -> Result<CheckoutSession, CommandError> {
        let req: CreateSessionRequest = parse_body(body.as_bytes()).unwrap();
        create(&ctx(merchant), SessionId::generate(), &req)
    }

    fn address() -> Address {
        Address {
            name: "Jane".into(),
            line_one: "1 Main St".into(),
            line_two: None,
            city: "Springfield".into(),
            state: "IL".into(),
            country: "US".into(),
            postal_code: "62701".into(),
            company: None,
        }
    }

    fn ready(merchant: &Merchant) -> CheckoutSession {
        let s = create_with(
            merchant,
            r#"{"currency":"usd","line_items":[{"id":"test_1","quantity":2}]}"#,
        )
        .unwrap();
        let req = UpdateSessionRequest {
            fulfillment_details: Some(FulfillmentDetails {
                address: Some(address()),
                ..Default::default()
            }),
            selected_fulfillment_options: Some(vec![SelectedFulfillmentOption {
                kind: crate::acp::FulfillmentType::Shipping,
                option_id: "fulfillment_option_123".into(),
                item_ids: vec![],
            }]),
            ..Default::default()
        };
        update(&ctx(merchant), &s, &req).unwrap()
    }

    fn complete_req(token: &str) -> CompleteSessionRequest {
        CompleteSessionRequest {
            buyer: None,
            payment_data: PaymentData {
                token: Some(token.into()),
                ..Default::default()
            },
            authentication_result: None,
            affiliate_attribution: None,
            risk_signals: None,
            marketing_consents: None,
            order_notes: None,
        }
    }

    #[test]
    fn new_physical_session_asks_for_address_and_option() {
        let m = merchant();
        let s = create_with(&m, r#"{"currency":"USD","items":[{"id":"test_1","quantity":1}]}"#).unwrap();
        assert_eq!(s.status, SessionStatus::NotReadyForPayment);
        assert_eq!(s.currency, "usd");
        let params: Vec<_> = s.messages.iter().filter_map(|m| m.param.as_deref()).collect();
        assert_eq!(
            params,
            ["$.fulfillment_details.address", "$.selected_fulfillment_options"]
        );
    }

    #[test]
    fn address_and_option_make_it_ready() {
        let m = merchant();
        let s = ready(&m);
        assert_eq!(s.status, SessionStatus::ReadyForPayment);
        assert!(s.messages.is_empty());
        assert_eq!(grand_total(&s.totals), 5000 + 413 + 500);
    }

    #[test]
    fn client_prices_are_ignored() {
        let m = merchant();
        let s = create_with(
            &m,
            r#"{"currency":"usd","line_items":[{"id":"test_1","unit_amount":1}]}"#,
        )
        .unwrap();
        assert_eq!(s.line_items[0].unit_amount, 2500);
    }

    #[test]
    fn bad_carts_are_refused_with_the_field() {
        let m = merchant();
        let unknown = create_with(&m, r#"{"currency":"usd","line_items":[{"id":"test_1"},{"id":"nope"}]}"#);
        assert!(matches!(unknown, Err(CommandError::UnknownItem { param, .. }) if param == "$.line_items[1].id"));
        let zero = create_with(&m, r#"{"currency":"usd","line_items":[{"id":"test_1","quantity":0}]}"#);
        assert!(matches!(zero, Err(CommandError::InvalidQuantity { param }) if param == "$.line_items[0].quantity"));
        let empty = create_with(&m, r#"{"currency":"usd","line_items":[]}"#);
        assert!(matches!(empty, Err(CommandError::EmptyCart { .. })));
        let eur = create_with(&m, r#"{"currency":"eur","line_items":[{"id":"test_1"}]}"#);
        assert!(matches!(eur, Err(CommandError::UnsupportedCurrency { .. })));
        let huge = create_with(
            &m,
            r#"{"currency":"usd","line_items":[{"id":"test_1","quantity":9000},{"id":"test_1","quantity":9000}]}"#,
        );
        assert!(matches!(huge, Err(CommandError::InvalidQuantity { .. })));
    }

    #[test]
    fn unknown_fulfillment_option_is_refused() {
        let m = merchant();
        let s = ready(&m);
        let req = UpdateSessionRequest {
            selected_fulfillment_options: Some(vec![SelectedFulfillmentOption {
                kind: crate::acp::FulfillmentType::Shipping,
                option_id: "ship_teleport".into(),
                item_ids: vec![],
            }]),
            ..Default::default()
        };
        assert!(matches!(
            update(&ctx(&m), &s, &req),
            Err(CommandError::UnknownFulfillmentOption { .. })
        ));
    }

    #[test]
    fn approved_charge_completes_with_an_order() {
        let m = merchant();
        let s = ready(&m);
        let req = complete_req("spt_test_approve");
        let plan = payment_plan(&s, &req).unwrap();
        assert!(matches!(plan, PaymentPlan::Charge { amount: 5913, .. }));
        let done = apply_charge(&ctx(&m), &s, &req, &ChargeOutcome::Approved { payment_id: "p".into() });
        assert_eq!(done.event, Some(EventType::Completed));
        assert_eq!(done.session.status, SessionStatus::Completed);
        let order = done.session.order.unwrap();
        assert_eq!(order.checkout_session_id, s.id);
        assert!(order.permalink_url.ends_with(order.id.as_str()));
    }

    #[test]
    fn decline_changes_nothing_but_says_why() {
        let m = merchant();
        let s = ready(&m);
        let r = apply_charge(
            &ctx(&m),
            &s,
            &complete_req("x"),
            &ChargeOutcome::Declined { reason: "no".into() },
        );
        assert_eq!(r.event, None);
        assert_eq!(r.session.status, SessionStatus::ReadyForPayment);
        assert_eq!(r.session.messages[0].code.as_deref(), Some("payment_declined"));
    }

    #[test]
    fn three_ds_round_trip() {
        let m = merchant();
        let s = ready(&m);
        let req = complete_req("spt_test_3ds");
        let r = apply_charge(&ctx(&m), &s, &req, &ChargeOutcome::AuthenticationRequired);
        assert_eq!(r.session.status, SessionStatus::AuthenticationRequired);
        assert!(r.session.authentication_metadata.is_some());
        assert_eq!(
            payment_plan(&r.session, &req),
            Err(CommandError::RequiresAuthentication)
        );
        let mut with_result = req.clone();
        with_result.authentication_result = Some(crate::acp::AuthenticationResult {
            outcome: "authenticated".into(),
            outcome_details: None,
        });
        assert!(matches!(
            payment_plan(&r.session, &with_result),
            Ok(PaymentPlan::Charge {
                authenticated: true,
                ..
            })
        ));
        with_result.authentication_result.as_mut().unwrap().outcome = "denied".into();
        assert_eq!(
            payment_plan(&r.session, &with_result),
            Ok(PaymentPlan::AuthenticationFailed)
        );
    }

    #[test]
    fn terminal_sessions_refuse_changes() {
        let m = merchant();
        let s = ready(&m);
        let canceled = cancel(&ctx(&m), &s).unwrap();
        assert_eq!(canceled.status, SessionStatus::Canceled);
        assert!(matches!(
            cancel(&ctx(&m), &canceled),
            Err(CommandError::NotCancelable { .. })
        ));
        assert!(matches!(
            update(&ctx(&m), &canceled, &UpdateSessionRequest::default()),
            Err(CommandError::NotModifiable { .. })
        ));
        assert!(matches!(
            payment_plan(&canceled, &complete_req("x")),
            Err(CommandError::NotModifiable { .. })
        ));
    }

    #[test]
    fn not_ready_session_cannot_be_paid() {
        let m = merchant();
        let s = create_with(&m, r#"{"currency":"usd","line_items":[{"id":"test_1"}]}"#).unwrap();
        assert!(
            matches!(payment_plan(&s, &complete_req("x")), Err(CommandError::NotReadyForPayment { missing }) if missing.len() == 2)
        );
    }
}
