//! The read model: a compact summary of each session's latest state. It is kept small on
//! purpose (one write unit per event in DynamoDB): the full session is the `data` of the latest
//! event, which is where `GET /checkout_sessions/{id}` reads it.

use crate::acp::{SessionStatus, grand_total};
use crate::event::Event;
use crate::ids::{MerchantId, OrderId, SessionId};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub session_id: SessionId,
    pub merchant_id: MerchantId,
    pub version: u64,
    pub status: SessionStatus,
    pub currency: String,
    pub total: i64,
    pub order_id: Option<OrderId>,
    pub updated_at: String,
}

impl SessionView {
    pub fn of(event: &Event) -> Self {
        Self {
            session_id: event.session_id.clone(),
            merchant_id: event.merchant_id.clone(),
            version: event.version,
            status: event.data.status,
            currency: event.data.currency.clone(),
            total: grand_total(&event.data.totals),
            order_id: event.data.order.as_ref().map(|o| o.id.clone()),
            updated_at: event.data.updated_at.clone(),
        }
    }
}
