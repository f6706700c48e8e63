//! Charging the buyer at `/complete`, behind a trait so a real processor can replace the test one.

use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRequest {
    /// Repeating a charge with the same key must not charge twice.
    pub idempotency_key: String,
    pub amount: i64,
    pub currency: String,
    pub token: String,
    /// The buyer passed issuer authentication (3-D Secure).
    pub authenticated: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChargeOutcome {
    Approved { payment_id: String },
    Declined { reason: String },
    AuthenticationRequired,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error("payment processor unavailable: {0}")]
    Unavailable(String),
}

#[async_trait]
pub trait PaymentProcessor: Send + Sync {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, PaymentError>;
}

/// Test tokens of the built-in processor (documented in the README).
pub mod test_tokens {
    pub const APPROVE: &str = "spt_test_approve";
    pub const DECLINE: &str = "spt_test_decline";
    pub const REQUIRES_3DS: &str = "spt_test_3ds";
    pub const PROCESSOR_DOWN: &str = "spt_test_processor_error";
}

/// Deterministic processor for local runs and tests: the token decides the outcome; any token
/// not listed in [`test_tokens`] is approved.
#[derive(Default)]
pub struct TestPaymentProcessor {
    approved: Mutex<HashMap<String, String>>,
}

impl TestPaymentProcessor {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PaymentProcessor for TestPaymentProcessor {
    async fn charge(&self, request: &ChargeRequest) -> Result<ChargeOutcome, PaymentError> {
        if let Some(payment_id) = self.approved.lock().get(&request.idempotency_key) {
            return Ok(ChargeOutcome::Approved {
                payment_id: payment_id.clone(),
            });
        }
        let outcome = match request.token.as_str() {
            test_tokens::DECLINE => ChargeOutcome::Declined {
                reason: "card_declined".to_owned(),
            },
            test_tokens::REQUIRES_3DS if !request.authenticated => ChargeOutcome::AuthenticationRequired,
            test_tokens::PROCESSOR_DOWN => {
                return Err(PaymentError::Unavailable(
                    "test processor refused the connection".to_owned(),
                ));
            }
            _ => ChargeOutcome::Approved {
                payment_id: format!("pay_{}", ulid::Ulid::new()),
            },
        };
        if let ChargeOutcome::Approved { payment_id } = &outcome {
            self.approved
                .lock()
                .insert(request.idempotency_key.clone(), payment_id.clone());
        }
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(token: &str, key: &str) -> ChargeRequest {
        ChargeRequest {
            idempotency_key: key.to_owned(),
            amount: 100,
            currency: "usd".to_owned(),
            token: token.to_owned(),
            authenticated: false,
        }
    }

    #[tokio::test]
    async fn tokens_decide_the_outcome() {
        let p = TestPaymentProcessor::new();
        assert!(matches!(
            p.charge(&request(test_tokens::APPROVE, "a")).await.unwrap(),
            ChargeOutcome::Approved { .. }
        ));
        assert!(matches!(
            p.charge(&request(test_tokens::DECLINE, "b")).await.unwrap(),
            ChargeOutcome::Declined { .. }
        ));
        assert_eq!(
            p.charge(&request(test_tokens::REQUIRES_3DS, "c")).await.unwrap(),
            ChargeOutcome::AuthenticationRequired
        );
        let mut authenticated = request(test_tokens::REQUIRES_3DS, "c");
        authenticated.authenticated = true;
        assert!(matches!(
            p.charge(&authenticated).await.unwrap(),
            ChargeOutcome::Approved { .. }
        ));
        assert!(p.charge(&request(test_tokens::PROCESSOR_DOWN, "d")).await.is_err());
    }

    #[tokio::test]
    async fn a_repeated_charge_is_not_charged_twice() {
        let p = TestPaymentProcessor::new();
        let first = p.charge(&request(test_tokens::APPROVE, "same")).await.unwrap();
        let second = p.charge(&request(test_tokens::APPROVE, "same")).await.unwrap();
        assert_eq!(first, second);
    }
}
