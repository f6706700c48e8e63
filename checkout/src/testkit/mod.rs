//! Contract suites every backend runs against itself. An adapter's test binary calls
//! [`crate::backend_contract_tests!`] with an async expression that builds a fresh, empty backend;
//! each case below then becomes one test of that adapter.

mod delivery_log;
mod event_store;
mod idempotency_store;
mod merchant_store;
mod pipeline;
mod service;

pub use delivery_log::*;
pub use event_store::*;
pub use idempotency_store::*;
pub use merchant_store::*;
pub use pipeline::*;
pub use service::*;

use crate::acp::{CreateSessionRequest, RequestItem};
use crate::clock;
use crate::event::{Event, EventType};
use crate::ids::{MerchantId, SessionId};
use crate::merchant::Merchant;
use crate::session::{self, CommandContext};

/// A clock that stands still until a test moves it.
#[derive(Debug)]
pub struct ManualClock(parking_lot::Mutex<clock::Timestamp>);

impl ManualClock {
    pub fn starting_at(at: clock::Timestamp) -> std::sync::Arc<Self> {
        std::sync::Arc::new(Self(parking_lot::Mutex::new(at)))
    }

    pub fn advance(&self, by: std::time::Duration) {
        let mut now = self.0.lock();
        *now += chrono::Duration::from_std(by).expect("a test's step fits");
    }
}

impl clock::Clock for ManualClock {
    fn now(&self) -> clock::Timestamp {
        *self.0.lock()
    }
}

/// A demo merchant with a unique id and key.
pub fn merchant() -> Merchant {
    let id = MerchantId::generate();
    Merchant::demo(id.clone(), &format!("sk_test_{id}"))
}

/// An event of `version` for a fresh session of `merchant` (or of `session_id` when given).
pub fn event(merchant: &Merchant, session_id: Option<&SessionId>, version: u64) -> Event {
    let ctx = CommandContext {
        merchant,
        api_version: crate::acp::ApiVersion::CURRENT,
        now: clock::now(),
    };
    let req = CreateSessionRequest {
        currency: "usd".to_owned(),
        line_items: Some(vec![RequestItem {
            id: "test_1".to_owned(),
            name: None,
            unit_amount: None,
            quantity: Some(1),
        }]),
        ..Default::default()
    };
    let id = session_id.cloned().unwrap_or_else(SessionId::generate);
    let data = session::create(&ctx, id, &req).expect("demo cart is valid");
    let kind = if version == 1 {
        EventType::Created
    } else {
        EventType::Updated
    };
    Event::new(kind, merchant.id.clone(), version, "2026-04-17", data, ctx.now)
}

/// Expands to one `#[tokio::test]` per contract case, each on a fresh backend from `$factory`.
#[macro_export]
macro_rules! backend_contract_tests {
    ($factory:expr) => {
        $crate::backend_contract_tests!(@cases $factory;
            append_then_read_back,
            an_event_is_read_by_its_version,
            duplicate_version_is_a_conflict_and_changes_nothing,
            unknown_session_has_no_events,
            fifty_racing_writers_lose_nothing,
            claim_then_in_flight_then_mismatch,
            committed_append_replays_its_reply,
            released_claim_can_be_claimed_again,
            reply_without_event_replays,
            stale_claim_is_taken_over_and_old_owner_cannot_commit,
            a_committed_call_keeps_its_key_after_its_lease,
            a_call_released_after_its_commit_keeps_its_key,
            a_claim_for_a_session_taken_over_cannot_commit,
            expired_record_is_replaced,
            failed_append_leaves_no_reply,
            merchants_are_found_by_id_and_key_hash,
            replacing_a_merchant_key_retires_the_old_one,
            a_stale_copy_is_refused_and_changes_nothing,
            racing_endpoint_writers_lose_nothing,
            endpoints_list_oldest_first_and_delete_once,
            endpoints_publish_their_keys_until_they_stop_signing,
            rotations_in_a_loop_publish_a_bounded_set,
            an_endpoint_runs_one_replay_at_a_time,
            fifty_concurrent_api_updates_lose_nothing,
            idempotent_create_through_the_service,
            concurrent_completes_charge_once,
            attempts_are_recorded_once_and_the_newest_is_the_state,
            a_delivered_copy_of_an_attempt_wins_over_a_failed_one,
            a_targets_attempts_page_newest_first,
            a_targets_attempts_page_oldest_first,
            first_attempts_stored_together_read_like_any_other,
        );
    };
    (@cases $factory:expr; $($case:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let subject = $factory.await;
                $crate::testkit::$case(&subject).await;
            }
        )+
    };
}

/// The `completed` event of a fresh session of `merchant`, with its order.
pub fn completed_event(merchant: &Merchant) -> Event {
    use crate::acp::{Order, OrderConfirmation, SessionStatus};
    let mut e = event(merchant, None, 2);
    e.kind = EventType::Completed;
    e.data.status = SessionStatus::Completed;
    let id = crate::ids::OrderId::generate();
    e.data.order = Some(Order {
        kind: "order".to_owned(),
        permalink_url: format!("{}/{id}", merchant.order_url_base),
        checkout_session_id: e.session_id.clone(),
        status: "created".to_owned(),
        confirmation: OrderConfirmation {
            confirmation_number: "TEST0001".to_owned(),
            order_notes: None,
        },
        totals: e.data.totals.clone(),
        id,
    });
    e
}
