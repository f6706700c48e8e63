//! Runs one checkout API call through the ports: claim the idempotency key, load the session,
//! let the aggregate decide, append the event together with the stored reply, and retry from
//! the top when a concurrent writer got there first. Every outcome becomes a [`Reply`].

use crate::acp::{
    AcpError, ApiVersion, CancelSessionRequest, CompleteSessionRequest, CreateSessionRequest, ErrorCode,
    UpdateSessionRequest,
};
use crate::clock;
use crate::event::{Event, EventType};
use crate::idempotency::{self, Claim, Completion, Hold, IdempotencyKey, StoredReply};
use crate::ids::SessionId;
use crate::merchant::Merchant;
use crate::payment::{ChargeOutcome, ChargeRequest, PaymentProcessor};
use crate::ports::{Backend, StoreError};
use crate::session::{self, CommandContext, CommandError, PaymentPlan};
use backon::{ExponentialBuilder, Retryable};
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, error, warn};

/// A write command of the checkout API, parsed and typed.
#[derive(Debug, Clone)]
pub enum Command {
    Create(Box<CreateSessionRequest>),
    Update(SessionId, Box<UpdateSessionRequest>),
    Complete(SessionId, Box<CompleteSessionRequest>),
    Cancel(SessionId, CancelSessionRequest),
}

impl Command {
    /// The session a command changes; `None` for create.
    pub fn session_id(&self) -> Option<&SessionId> {
        match self {
            Command::Create(_) => None,
            Command::Update(id, _) | Command::Complete(id, _) | Command::Cancel(id, _) => Some(id),
        }
    }
}

/// Who calls, in which version, under which idempotency key.
pub struct Call<'a> {
    pub merchant: &'a Merchant,
    pub api_version: ApiVersion,
    pub idempotency_key: IdempotencyKey,
    pub fingerprint: String,
}

/// An HTTP-shaped answer: status and JSON body, plus what the edge turns into headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
    pub retry_after_secs: Option<u64>,
}

impl Reply {
    fn json(status: u16, body: String) -> Self {
        Self {
            status,
            body,
            replayed: false,
            retry_after_secs: None,
        }
    }

    pub fn json_value(status: u16, value: &serde_json::Value) -> Self {
        Self::json(status, value.to_string())
    }

    /// 204: nothing to say.
    pub fn no_content() -> Self {
        Self::json(204, String::new())
    }

    pub fn error(status: u16, error: &AcpError) -> Self {
        Self::json(status, serde_json::to_string(error).unwrap_or_default())
    }

    fn session(status: u16, session: &crate::acp::CheckoutSession) -> Self {
        match serde_json::to_string(session) {
            Ok(body) => Self::json(status, body),
            Err(err) => internal(&err),
        }
    }

    fn stored(&self) -> StoredReply {
        StoredReply::Body {
            status: self.status,
            body: self.body.clone(),
        }
    }
}

/// How a call ended, which decides what happens to its idempotency claim.
enum Outcome {
    /// Event and reply stored together.
    Committed(Reply),
    /// A success that changed no session (a declined payment): store the reply alone.
    Unchanged(Reply),
    /// Refused or failed: nothing stored, the claim is released so a retry runs again.
    NotStored(Reply),
    /// Our claim was taken over; the request that holds it answers.
    ClaimLost(Reply),
}

enum AttemptError {
    Conflict,
}

pub struct CheckoutService {
    backend: Backend,
    payments: Arc<dyn PaymentProcessor>,
}

/// Racing writers back off briefly with jitter; 50 writers on one session all get through.
fn conflict_backoff() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(1))
        .with_max_delay(Duration::from_millis(100))
        .with_factor(1.5)
        .with_jitter()
        .with_max_times(200)
}

impl CheckoutService {
    pub fn new(backend: Backend, payments: Arc<dyn PaymentProcessor>) -> Self {
        Self { backend, payments }
    }

    /// Runs a write command exactly once per idempotency key.
    pub async fn execute(&self, call: &Call<'_>, command: Command) -> Reply {
        let key = &call.idempotency_key;
        // The session the call changes; for a create, the id it will have, named in the claim.
        let subject = command.session_id().cloned().unwrap_or_else(SessionId::generate);
        let hold = match self.claim(call, Some(&subject)).await {
            Ok(hold) => hold,
            Err(reply) => return reply,
        };
        let run = || self.attempt(call, &command, &hold, &subject);
        let outcome = match run.retry(conflict_backoff()).await {
            Ok(outcome) => outcome,
            Err(AttemptError::Conflict) => {
                warn!(merchant_id = %call.merchant.id, "gave up after repeated version conflicts");
                Outcome::NotStored(Reply::error(
                    409,
                    &AcpError::invalid(
                        ErrorCode::ConcurrentModification,
                        "The session is being changed by other requests; retry.",
                    ),
                ))
            }
        };
        match outcome {
            Outcome::Committed(reply) | Outcome::ClaimLost(reply) => reply,
            Outcome::Unchanged(reply) => {
                let completion = self.completion(call, &hold, &reply);
                if let Err(err) = self.backend.idempotency.complete(&completion).await {
                    warn!(error = %err, "could not store the idempotent reply; a retry will run again");
                }
                reply
            }
            Outcome::NotStored(reply) => {
                if let Err(err) = self.backend.idempotency.release(key, &hold.token).await {
                    warn!(error = %err, "could not release the idempotency claim; it expires with its lease");
                }
                reply
            }
        }
    }

    /// Runs a call that appends no event (the merchant API's POSTs) once per idempotency key,
    /// under the same rules as the checkout writes: the same key and body replay the stored
    /// reply, another body is a 422, a call still running a 409. Only successes (2xx) are
    /// stored; a refusal or failure releases the key, so a retry runs again.
    pub async fn once<F, Fut>(&self, call: &Call<'_>, run: F) -> Reply
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Reply>,
    {
        let key = &call.idempotency_key;
        let hold = match self.claim(call, None).await {
            Ok(hold) => hold,
            Err(reply) => return reply,
        };
        let reply = run().await;
        let stored = if (200..300).contains(&reply.status) {
            self.backend
                .idempotency
                .complete(&self.completion(call, &hold, &reply))
                .await
        } else {
            self.backend.idempotency.release(key, &hold.token).await
        };
        if let Err(err) = stored {
            warn!(error = %err, "could not settle the idempotency key; a retry may run again");
        }
        reply
    }

    /// Claims the call's idempotency key: the hold to finish it with, or the answer to give
    /// instead (the stored reply, a conflict, a call still running).
    async fn claim(&self, call: &Call<'_>, subject: Option<&SessionId>) -> Result<Hold, Reply> {
        let (key, fingerprint, now) = (&call.idempotency_key, &call.fingerprint, clock::now());
        let claim = match subject {
            Some(subject) => self.backend.idempotency.claim_for(key, fingerprint, subject, now).await,
            None => self.backend.idempotency.claim(key, fingerprint, now).await,
        };
        match claim {
            Ok(Claim::Acquired(hold)) => Ok(hold),
            Ok(Claim::Replay(stored)) => Err(Reply {
                replayed: true,
                ..self.replay(stored).await
            }),
            Ok(Claim::Mismatch) => Err(idempotency_conflict()),
            Ok(Claim::InFlight) => Err(in_flight()),
            Err(err) => Err(unavailable(&err)),
        }
    }

    /// `GET /checkout_sessions/{id}`.
    pub async fn get(&self, merchant: &Merchant, session_id: &SessionId) -> Reply {
        match self.load(merchant, session_id).await {
            Ok(event) => Reply::session(200, &event.data),
            Err(reply) => reply,
        }
    }

    async fn attempt(
        &self,
        call: &Call<'_>,
        command: &Command,
        hold: &Hold,
        subject: &SessionId,
    ) -> Result<Outcome, AttemptError> {
        let ctx = CommandContext {
            merchant: call.merchant,
            api_version: call.api_version,
            now: clock::now(),
        };
        let current = match command.session_id() {
            None => None,
            Some(id) => match self.load(call.merchant, id).await {
                Ok(event) => Some(event),
                Err(reply) => return Ok(Outcome::NotStored(reply)),
            },
        };
        let decided = match (command, &current) {
            (Command::Create(req), _) => {
                session::create(&ctx, subject.clone(), req).map(|s| (EventType::Created, 1, s, 201))
            }
            (Command::Update(_, req), Some(cur)) => {
                session::update(&ctx, &cur.data, req).map(|s| (EventType::Updated, cur.version + 1, s, 200))
            }
            (Command::Cancel(..), Some(cur)) => {
                session::cancel(&ctx, &cur.data).map(|s| (EventType::Cancelled, cur.version + 1, s, 200))
            }
            (Command::Complete(_, req), Some(cur)) => {
                let outcome = match self.charge(&cur.data, cur.version, req).await {
                    Ok(outcome) => outcome,
                    Err(reply) => return Ok(Outcome::NotStored(reply)),
                };
                let result = session::apply_charge(&ctx, &cur.data, req, &outcome);
                match result.event {
                    Some(kind) => Ok((kind, cur.version + 1, result.session, 200)),
                    None => return Ok(Outcome::Unchanged(Reply::session(200, &result.session))),
                }
            }
            // Every command but create names a session, loaded above.
            (_, None) => {
                return Ok(Outcome::NotStored(Reply::error(
                    500,
                    &AcpError::processing(ErrorCode::InternalError, "Internal error."),
                )));
            }
        };
        let (kind, version, mut next, status) = match decided {
            Ok(decision) => decision,
            Err(err) => return Ok(Outcome::NotStored(refusal(&err))),
        };
        if let (EventType::Updated, Some(cur)) = (kind, &current)
            && unchanged(&mut next, &cur.data)
        {
            // An update that changes nothing (the values it sets are already there) is answered
            // with the session as it is: no event, no webhook.
            return Ok(Outcome::Unchanged(Reply::session(200, &cur.data)));
        }
        let event = Event::new(
            kind,
            call.merchant.id.clone(),
            version,
            call.api_version.as_str(),
            next,
            ctx.now,
        );
        self.commit(call, hold, &event, status).await
    }

    async fn commit(&self, call: &Call<'_>, hold: &Hold, event: &Event, status: u16) -> Result<Outcome, AttemptError> {
        let reply = Reply::session(status, &event.data);
        // The reply is the session's JSON: with room for the envelope, the event's size, without
        // serializing the event a second time here.
        let (size, limit) = (reply.body.len() + crate::event::ENVELOPE_BYTES, event.kind.size_limit());
        if size > limit {
            // Stored, it could never be published or delivered: refused, nothing changes.
            return Ok(Outcome::NotStored(too_large(size, limit)));
        }
        // The reply is the event's session: the record names the event instead of copying it.
        let stored = StoredReply::Session {
            status,
            session_id: event.session_id.clone(),
            version: event.version,
        };
        let completion = self.completion_with(call, hold, stored);
        match self.backend.events.append(event, Some(&completion)).await {
            Ok(()) => {
                // Debug, not info: a line per event is paid for on Lambda (CloudWatch Logs bills
                // each byte) and says nothing the access log and the attempt log do not.
                debug!(
                    merchant_id = %event.merchant_id,
                    session_id = %event.session_id,
                    event_id = %event.id,
                    version = event.version,
                    event_type = %event.kind,
                    "event appended"
                );
                Ok(Outcome::Committed(reply))
            }
            Err(StoreError::VersionConflict { .. }) => Err(AttemptError::Conflict),
            Err(StoreError::ClaimLost) => Ok(Outcome::ClaimLost(in_flight())),
            Err(err) => Ok(Outcome::NotStored(unavailable(&err))),
        }
    }

    /// Charges for the session as it stands at `version`. The processor's idempotency key names
    /// the session, that version and the payment details — not the client's Idempotency-Key —
    /// so concurrent completions of one session with the same payment are charged once (only
    /// one of them can store the next version; the others find the session completed).
    async fn charge(
        &self,
        current: &crate::acp::CheckoutSession,
        version: u64,
        req: &CompleteSessionRequest,
    ) -> Result<ChargeOutcome, Reply> {
        let plan = session::payment_plan(current, req).map_err(|err| refusal(&err))?;
        let PaymentPlan::Charge {
            token,
            amount,
            currency,
            authenticated,
        } = plan
        else {
            return Ok(ChargeOutcome::Declined {
                reason: "authentication_failed".to_owned(),
            });
        };
        let details = idempotency::fingerprint(format!("{token}|{amount}|{currency}|{authenticated}").as_bytes());
        let request = ChargeRequest {
            idempotency_key: format!("{}:v{version}:{}", current.id, &details[..16.min(details.len())]),
            amount,
            currency,
            token,
            authenticated,
        };
        self.payments.charge(&request).await.map_err(|err| {
            warn!(session_id = %current.id, error = %err, "payment processor failed");
            Reply::error(
                503,
                &AcpError::unavailable(
                    ErrorCode::PaymentProcessorUnavailable,
                    "The payment processor is unavailable; retry later.",
                ),
            )
        })
    }

    /// The latest event of a session this merchant owns; anyone else's session is a 404.
    async fn load(&self, merchant: &Merchant, id: &SessionId) -> Result<Event, Reply> {
        match self.backend.events.latest(id).await {
            Ok(Some(event)) if event.merchant_id == merchant.id => Ok(event),
            Ok(_) => Err(not_found(id)),
            Err(err) => Err(unavailable(&err)),
        }
    }

    fn completion(&self, call: &Call<'_>, hold: &Hold, reply: &Reply) -> Completion {
        self.completion_with(call, hold, reply.stored())
    }

    fn completion_with(&self, call: &Call<'_>, hold: &Hold, reply: StoredReply) -> Completion {
        Completion {
            key: call.idempotency_key.clone(),
            hold: hold.clone(),
            fingerprint: call.fingerprint.clone(),
            reply,
            expires_at: clock::now() + idempotency::RETENTION,
        }
    }

    /// The reply a stored one stands for: as it was kept, or the session its event left.
    async fn replay(&self, stored: StoredReply) -> Reply {
        let (status, session_id, version) = match stored {
            StoredReply::Body { status, body } => return Reply::json(status, body),
            StoredReply::Session {
                status,
                session_id,
                version,
            } => (status, session_id, version),
        };
        match self.backend.events.history(&session_id).await {
            Ok(history) => match history.into_iter().find(|e| e.version == version) {
                Some(event) => Reply::session(status, &event.data),
                // Stored in the same write as its reply: only a damaged store lacks it.
                None => unavailable(&StoreError::Corrupt(format!("{session_id} has no version {version}"))),
            },
            Err(err) => unavailable(&err),
        }
    }
}

/// The one place a refused command becomes an ACP error.
pub fn refusal(err: &CommandError) -> Reply {
    let message = err.to_string();
    let (status, error) = match err {
        CommandError::EmptyCart { param } => (400, AcpError::invalid(ErrorCode::Missing, message).with_param(param)),
        CommandError::UnknownItem { param, .. } => (
            400,
            AcpError::invalid(ErrorCode::InvalidItemId, message).with_param(param),
        ),
        CommandError::InvalidQuantity { param } => (
            400,
            AcpError::invalid(ErrorCode::InvalidQuantity, message).with_param(param),
        ),
        CommandError::UnsupportedCurrency { .. } => (
            400,
            AcpError::invalid(ErrorCode::UnsupportedCurrency, message).with_param("$.currency"),
        ),
        CommandError::UnknownFulfillmentOption { param, .. } => (
            400,
            AcpError::invalid(ErrorCode::InvalidFulfillmentOption, message).with_param(param),
        ),
        CommandError::NotModifiable { .. } => (400, AcpError::invalid(ErrorCode::SessionNotModifiable, message)),
        CommandError::NothingToUpdate => (400, AcpError::invalid(ErrorCode::InvalidRequest, message)),
        CommandError::NotCancelable { .. } => (405, AcpError::invalid(ErrorCode::SessionNotCancelable, message)),
        CommandError::NotReadyForPayment { .. } => (400, AcpError::invalid(ErrorCode::SessionNotReady, message)),
        CommandError::PaymentMissing => (
            400,
            AcpError::invalid(ErrorCode::InvalidPaymentData, message).with_param("$.payment_data"),
        ),
        CommandError::RequiresAuthentication => (
            400,
            AcpError::invalid(ErrorCode::Requires3ds, message).with_param("$.authentication_result"),
        ),
    };
    Reply::error(status, &error)
}

fn not_found(id: &SessionId) -> Reply {
    Reply::error(
        404,
        &AcpError::invalid(ErrorCode::NotFound, format!("Checkout session '{id}' was not found.")),
    )
}

fn idempotency_conflict() -> Reply {
    Reply::error(
        422,
        &AcpError::invalid(
            ErrorCode::IdempotencyConflict,
            "Idempotency-Key has already been used with a different request body",
        ),
    )
}

fn in_flight() -> Reply {
    Reply {
        retry_after_secs: Some(idempotency::RETRY_AFTER_SECS),
        ..Reply::error(
            409,
            &AcpError::invalid(
                ErrorCode::IdempotencyInFlight,
                "A request with this Idempotency-Key is currently being processed",
            ),
        )
    }
}

/// Whether `next` is `current` but for the time of the change.
fn unchanged(next: &mut crate::acp::CheckoutSession, current: &crate::acp::CheckoutSession) -> bool {
    let updated_at = std::mem::replace(&mut next.updated_at, current.updated_at.clone());
    let same = *next == *current;
    next.updated_at = updated_at;
    same
}

fn too_large(size: usize, limit: usize) -> Reply {
    let message = format!(
        "This change would make the checkout session {} KiB; a session can be at most {} KiB \
         (roughly 400 line items, less with long metadata).",
        size.div_ceil(1024),
        limit / 1024
    );
    Reply::error(400, &AcpError::invalid(ErrorCode::SessionTooLarge, message))
}

fn unavailable(err: &StoreError) -> Reply {
    if let StoreError::Refused(reason) = err {
        // Permanent: a 503 would have the client retry what can never be stored.
        error!(%reason, "storage refused a write");
        return Reply::error(
            500,
            &AcpError::processing(
                ErrorCode::StorageRefused,
                "This change cannot be stored; retrying will not help.",
            ),
        );
    }
    if let StoreError::Corrupt(reason) = err {
        // Retrying will not help: say so, rather than a 503 the client would retry forever.
        error!(%reason, "a stored record cannot be read back");
        return Reply::error(
            500,
            &AcpError::processing(
                ErrorCode::RecordUnreadable,
                "This checkout session's stored data cannot be read back; the operator has been told.",
            ),
        );
    }
    if let StoreError::OutOfTime = err {
        warn!("the call took too long to commit; nothing was stored");
        return Reply::error(
            503,
            &AcpError::unavailable(
                ErrorCode::CommitTimeout,
                "The request took too long and changed nothing; retry it with the same Idempotency-Key.",
            ),
        );
    }
    warn!(error = %err, "storage failed");
    Reply::error(
        503,
        &AcpError::unavailable(ErrorCode::StorageUnavailable, "Storage is unavailable; retry later."),
    )
}

fn internal(err: &dyn std::error::Error) -> Reply {
    warn!(error = %err, "could not render a reply");
    Reply::error(500, &AcpError::processing(ErrorCode::InternalError, "Internal error."))
}
