use super::{event, merchant};
use crate::clock;
use crate::idempotency::{self, Claim, Completion, Hold, IdempotencyKey, StoredReply};
use crate::ids::SessionId;
use crate::ports::{Backend, StoreError};

pub fn key(m: &crate::merchant::Merchant) -> IdempotencyKey {
    IdempotencyKey {
        merchant_id: m.id.clone(),
        method: "POST".to_owned(),
        path: "/checkout_sessions".to_owned(),
        key: ulid::Ulid::new().to_string(),
    }
}

fn completion(key: &IdempotencyKey, hold: &Hold, fingerprint: &str, status: u16) -> Completion {
    Completion {
        key: key.clone(),
        hold: hold.clone(),
        fingerprint: fingerprint.to_owned(),
        reply: StoredReply::Body {
            status,
            body: format!("{{\"status\":{status}}}"),
        },
        expires_at: clock::now() + idempotency::RETENTION,
    }
}

async fn acquire(backend: &Backend, key: &IdempotencyKey, fingerprint: &str, now: clock::Timestamp) -> Hold {
    match backend.idempotency.claim(key, fingerprint, now).await.unwrap() {
        Claim::Acquired(hold) => hold,
        other => panic!("expected to acquire, got {other:?}"),
    }
}

pub async fn claim_then_in_flight_then_mismatch(backend: &Backend) {
    let k = key(&merchant());
    let now = clock::now();
    acquire(backend, &k, "fp", now).await;
    assert_eq!(backend.idempotency.claim(&k, "fp", now).await.unwrap(), Claim::InFlight);
    assert_eq!(
        backend.idempotency.claim(&k, "other", now).await.unwrap(),
        Claim::Mismatch
    );
    let other_merchant = IdempotencyKey {
        merchant_id: merchant().id,
        ..k.clone()
    };
    acquire(backend, &other_merchant, "fp", now).await;
}

pub async fn committed_append_replays_its_reply(backend: &Backend) {
    let m = merchant();
    let k = key(&m);
    let hold = acquire(backend, &k, "fp", clock::now()).await;
    let e = event(&m, None, 1);
    // A committed change's reply names its event rather than copying the session.
    let done = created(&k, &hold, &e);
    backend.events.append(&e, Some(&done)).await.unwrap();
    assert_eq!(
        backend.idempotency.claim(&k, "fp", clock::now()).await.unwrap(),
        Claim::Replay(done.reply.clone())
    );
    assert_eq!(
        backend.idempotency.claim(&k, "other", clock::now()).await.unwrap(),
        Claim::Mismatch
    );
}

pub async fn released_claim_can_be_claimed_again(backend: &Backend) {
    let k = key(&merchant());
    let hold = acquire(backend, &k, "fp", clock::now()).await;
    backend.idempotency.release(&k, &hold.token).await.unwrap();
    acquire(backend, &k, "fp", clock::now()).await;
}

pub async fn reply_without_event_replays(backend: &Backend) {
    let k = key(&merchant());
    let hold = acquire(backend, &k, "fp", clock::now()).await;
    let done = completion(&k, &hold, "fp", 200);
    backend.idempotency.complete(&done).await.unwrap();
    assert_eq!(
        backend.idempotency.claim(&k, "fp", clock::now()).await.unwrap(),
        Claim::Replay(done.reply)
    );
}

/// A request that crashed holds its key only for the lease; after it, a retry takes over, and
/// the crashed request (if it wakes up) can no longer commit anything.
pub async fn stale_claim_is_taken_over_and_old_owner_cannot_commit(backend: &Backend) {
    let m = merchant();
    let k = key(&m);
    let start = clock::now();
    let old = acquire(backend, &k, "fp", start).await;
    let new = acquire(
        backend,
        &k,
        "fp",
        start + idempotency::LEASE + chrono::Duration::seconds(1),
    )
    .await;
    assert_ne!(old.token, new.token);

    let late = event(&m, None, 1);
    let err = backend
        .events
        .append(&late, Some(&completion(&k, &old, "fp", 201)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ClaimLost), "{err:?}");
    assert!(
        backend.events.latest(&late.session_id).await.unwrap().is_none(),
        "nothing was appended"
    );
    assert!(
        backend
            .idempotency
            .complete(&completion(&k, &old, "fp", 200))
            .await
            .is_err()
    );
}

/// The completion of a create that appended `e`: its reply names the event.
pub fn created(key: &IdempotencyKey, hold: &Hold, e: &crate::event::Event) -> Completion {
    Completion {
        reply: StoredReply::Session {
            status: 201,
            session_id: e.session_id.clone(),
            version: e.version,
        },
        ..completion(key, hold, "fp", 201)
    }
}

pub async fn acquire_for(
    backend: &Backend,
    key: &IdempotencyKey,
    fingerprint: &str,
    subject: &SessionId,
    now: clock::Timestamp,
) -> Hold {
    match backend
        .idempotency
        .claim_for(key, fingerprint, subject, now)
        .await
        .unwrap()
    {
        Claim::Acquired(hold) => hold,
        other => panic!("expected to acquire, got {other:?}"),
    }
}

/// A call that committed its event keeps its key long after its lease (a store may keep no
/// reply record, only the event): a repeat replays the reply, another body is refused, and the
/// call never runs twice.
pub async fn a_committed_call_keeps_its_key_after_its_lease(backend: &Backend) {
    let m = merchant();
    let k = key(&m);
    let e = event(&m, None, 1);
    let start = clock::now();
    let hold = acquire_for(backend, &k, "fp", &e.session_id, start).await;
    let done = created(&k, &hold, &e);
    backend.events.append(&e, Some(&done)).await.unwrap();
    let claim = |fingerprint: &'static str, now: clock::Timestamp| {
        let k = k.clone();
        // A repeated create names a new session of its own: the stored claim's counts.
        async move {
            backend
                .idempotency
                .claim_for(&k, fingerprint, &SessionId::generate(), now)
                .await
                .unwrap()
        }
    };
    assert_eq!(claim("fp", start).await, Claim::Replay(done.reply.clone()));
    let later = start + idempotency::LEASE + chrono::Duration::seconds(1);
    assert_eq!(claim("fp", later).await, Claim::Replay(done.reply.clone()));
    assert_eq!(claim("other", later).await, Claim::Mismatch);
    assert_eq!(backend.events.history(&e.session_id).await.unwrap(), vec![e]);
}

/// A call whose commit looked failed (an error or a timeout after the write was applied) is
/// released by the service; the key must stay with the committed event, or a retry would run
/// the call a second time.
pub async fn a_call_released_after_its_commit_keeps_its_key(backend: &Backend) {
    let m = merchant();
    let k = key(&m);
    let e = event(&m, None, 1);
    let hold = acquire_for(backend, &k, "fp", &e.session_id, clock::now()).await;
    let done = created(&k, &hold, &e);
    backend.events.append(&e, Some(&done)).await.unwrap();
    backend.idempotency.release(&k, &hold.token).await.unwrap();
    assert_eq!(
        backend
            .idempotency
            .claim_for(&k, "fp", &SessionId::generate(), clock::now())
            .await
            .unwrap(),
        Claim::Replay(done.reply)
    );
}

/// A call that claimed a session's key and stalled past its lease cannot commit once a retry
/// took the key over, whether or not the retry has committed yet. (A store that commits the
/// event and the reply apart refuses by the lease, `OutOfTime`; one that commits them together
/// by the claim, `ClaimLost`.)
pub async fn a_claim_for_a_session_taken_over_cannot_commit(backend: &Backend) {
    let m = merchant();
    let k = key(&m);
    let e = event(&m, None, 1);
    let now = clock::now();
    let stalled_since = now - idempotency::LEASE - chrono::Duration::seconds(1);
    let old = acquire_for(backend, &k, "fp", &e.session_id, stalled_since).await;
    let new = acquire_for(backend, &k, "fp", &e.session_id, now).await;
    assert_ne!(old.token, new.token);
    let err = backend
        .events
        .append(&e, Some(&created(&k, &old, &e)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::ClaimLost | StoreError::OutOfTime), "{err:?}");
    assert!(backend.events.latest(&e.session_id).await.unwrap().is_none());
    // The stalled call's release cannot free the key the retry holds.
    backend.idempotency.release(&k, &old.token).await.unwrap();
    assert_eq!(
        backend
            .idempotency
            .claim_for(&k, "fp", &e.session_id, now)
            .await
            .unwrap(),
        Claim::InFlight
    );
    backend.events.append(&e, Some(&created(&k, &new, &e))).await.unwrap();
}

pub async fn expired_record_is_replaced(backend: &Backend) {
    let k = key(&merchant());
    let hold = acquire(backend, &k, "fp", clock::now()).await;
    backend
        .idempotency
        .complete(&completion(&k, &hold, "fp", 200))
        .await
        .unwrap();
    let later = clock::now() + idempotency::RETENTION + chrono::Duration::seconds(1);
    acquire(backend, &k, "different body", later).await;
}

/// The event and the reply commit together: when the append loses, no reply is stored.
pub async fn failed_append_leaves_no_reply(backend: &Backend) {
    let m = merchant();
    let first = event(&m, None, 1);
    backend.events.append(&first, None).await.unwrap();
    let k = key(&m);
    let hold = acquire(backend, &k, "fp", clock::now()).await;
    let rival = event(&m, Some(&first.session_id), 1);
    let err = backend
        .events
        .append(&rival, Some(&completion(&k, &hold, "fp", 200)))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::VersionConflict { .. }), "{err:?}");
    assert_eq!(
        backend.idempotency.claim(&k, "fp", clock::now()).await.unwrap(),
        Claim::InFlight
    );
}
