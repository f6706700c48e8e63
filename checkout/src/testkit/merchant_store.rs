use super::merchant;
use crate::merchant::hash_api_key;
use crate::ports::{Backend, StoreError};
use crate::webhook_endpoint::WebhookEndpoint;

pub async fn merchants_are_found_by_id_and_key_hash(backend: &Backend) {
    let mut m = merchant();
    backend.merchants.put_merchant(&m).await.unwrap();
    m.revision = 1;
    assert_eq!(backend.merchants.merchant(&m.id).await.unwrap(), Some(m.clone()));
    assert_eq!(
        backend
            .merchants
            .merchant_by_api_key_hash(&m.api_key_hash)
            .await
            .unwrap(),
        Some(m.clone())
    );
    assert_eq!(
        backend
            .merchants
            .merchant_by_api_key_hash(&hash_api_key("nobody's key"))
            .await
            .unwrap(),
        None
    );
    assert_eq!(backend.merchants.merchant(&merchant().id).await.unwrap(), None);
}

pub async fn replacing_a_merchant_key_retires_the_old_one(backend: &Backend) {
    let first = merchant();
    backend.merchants.put_merchant(&first).await.unwrap();
    let mut m = backend.merchants.merchant(&first.id).await.unwrap().unwrap();
    let old_hash = m.api_key_hash.clone();
    m.api_key_hash = hash_api_key("rotated key");
    m.name = "Renamed".to_owned();
    backend.merchants.put_merchant(&m).await.unwrap();
    assert_eq!(
        backend.merchants.merchant_by_api_key_hash(&old_hash).await.unwrap(),
        None
    );
    let found = backend
        .merchants
        .merchant_by_api_key_hash(&m.api_key_hash)
        .await
        .unwrap();
    assert_eq!(found.map(|f| f.name), Some("Renamed".to_owned()));
}

/// A write of a copy read before another writer stored the item is refused and changes nothing;
/// so is creating what exists.
pub async fn a_stale_copy_is_refused_and_changes_nothing(backend: &Backend) {
    let m = merchant();
    backend.merchants.put_merchant(&m).await.unwrap();
    let read = backend.merchants.merchant(&m.id).await.unwrap().unwrap();
    let mut first = read.clone();
    first.name = "First".to_owned();
    backend.merchants.put_merchant(&first).await.unwrap();
    let mut stale = read;
    stale.api_key_hash = hash_api_key("a key from an old copy");
    assert!(matches!(
        backend.merchants.put_merchant(&stale).await,
        Err(StoreError::Changed { .. })
    ));
    assert!(
        matches!(
            backend.merchants.put_merchant(&m).await,
            Err(StoreError::Changed { .. })
        ),
        "creating it again"
    );
    let stored = backend.merchants.merchant(&m.id).await.unwrap().unwrap();
    assert_eq!(stored.name, "First");
    assert_eq!(stored.api_key_hash, m.api_key_hash);
    assert_eq!(stored.revision, 2);
    assert_eq!(
        backend
            .merchants
            .merchant_by_api_key_hash(&stale.api_key_hash)
            .await
            .unwrap(),
        None,
        "the refused key does not work"
    );

    let e = WebhookEndpoint::new(m.id.clone(), "https://hooks.example.com/a".into(), crate::clock::now()).unwrap();
    backend.endpoints.put_endpoint(&e).await.unwrap();
    let read = backend.endpoints.endpoint(&m.id, &e.id).await.unwrap().unwrap();
    let mut rotated = read.clone();
    rotated.rotate(crate::clock::now(), chrono::Duration::hours(1)).unwrap();
    backend.endpoints.put_endpoint(&rotated).await.unwrap();
    let mut stale = read;
    stale.description = Some("an edit from an old copy".into());
    assert!(matches!(
        backend.endpoints.put_endpoint(&stale).await,
        Err(StoreError::Changed { .. })
    ));
    assert!(
        matches!(
            backend.endpoints.put_endpoint(&e).await,
            Err(StoreError::Changed { .. })
        ),
        "creating it again"
    );
    let stored = backend.endpoints.endpoint(&m.id, &e.id).await.unwrap().unwrap();
    assert_eq!(stored.secrets, rotated.secrets, "the rotation stands");
    assert_eq!(stored.description, None);
}

/// Twenty writers each add their own secret by read-modify-write, retrying on conflicts: every
/// change is there at the end.
pub async fn racing_endpoint_writers_lose_nothing(backend: &Backend) {
    let m = merchant();
    let e = WebhookEndpoint::new(m.id.clone(), "https://hooks.example.com/a".into(), crate::clock::now()).unwrap();
    backend.endpoints.put_endpoint(&e).await.unwrap();
    let writers = (0..20).map(|i| {
        let (backend, m, e) = (backend.clone(), m.id.clone(), e.id.clone());
        tokio::spawn(async move {
            loop {
                let mut fresh = backend.endpoints.endpoint(&m, &e).await.unwrap().unwrap();
                fresh.secrets.push(crate::webhook_endpoint::SigningSecret {
                    secret: format!("whsec_writer_{i}"),
                    expires_at: None,
                });
                match backend.endpoints.put_endpoint(&fresh).await {
                    Ok(()) => return,
                    Err(StoreError::Changed { .. }) => continue,
                    Err(err) => panic!("{err}"),
                }
            }
        })
    });
    for writer in writers.collect::<Vec<_>>() {
        writer.await.unwrap();
    }
    let stored = backend.endpoints.endpoint(&m.id, &e.id).await.unwrap().unwrap();
    for i in 0..20 {
        let secret = format!("whsec_writer_{i}");
        assert!(stored.secrets.iter().any(|s| s.secret == secret), "{secret} lost");
    }
    assert_eq!(stored.revision, 21);
}

/// A merchant's endpoints list oldest first (by creation time, then id) on every backend, an
/// edit does not move one, a delete removes exactly one (once), and another merchant's
/// endpoints are neither listed nor deletable.
pub async fn endpoints_list_oldest_first_and_delete_once(backend: &Backend) {
    let (m, other) = (merchant(), merchant());
    let start = crate::clock::now();
    let at = |seconds: i64| start + chrono::Duration::seconds(seconds);
    let new = |created: i64| {
        WebhookEndpoint::new(
            m.id.clone(),
            format!("https://hooks.example.com/{created}"),
            at(created),
        )
        .unwrap()
    };
    // Stored out of creation order: the listing is by creation time, not by write.
    let (second, first, third) = (new(1), new(0), new(2));
    // Created in the same instant: the id decides.
    let mut twins = [new(3), new(3)];
    twins.sort_by(|a, b| b.id.cmp(&a.id));
    for e in [&second, &twins[0], &first, &twins[1], &third] {
        backend.endpoints.put_endpoint(e).await.unwrap();
    }
    let foreign = WebhookEndpoint::new(other.id.clone(), "https://hooks.example.com/x".into(), at(0)).unwrap();
    backend.endpoints.put_endpoint(&foreign).await.unwrap();
    let ids = |list: Vec<WebhookEndpoint>| list.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let listed = ids(backend.endpoints.endpoints(&m.id).await.unwrap());
    let (low, high) = (twins[1].id.clone(), twins[0].id.clone());
    assert_eq!(
        listed,
        vec![
            first.id.clone(),
            second.id.clone(),
            third.id.clone(),
            low.clone(),
            high.clone()
        ]
    );
    for twin in &twins {
        assert!(backend.endpoints.delete_endpoint(&m.id, &twin.id).await.unwrap());
    }

    let mut edited = backend.endpoints.endpoint(&m.id, &first.id).await.unwrap().unwrap();
    edited.description = Some("edited".into());
    backend.endpoints.put_endpoint(&edited).await.unwrap();
    let listed = ids(backend.endpoints.endpoints(&m.id).await.unwrap());
    assert_eq!(
        listed,
        vec![first.id.clone(), second.id.clone(), third.id.clone()],
        "an edit keeps its place"
    );

    assert!(
        !backend.endpoints.delete_endpoint(&m.id, &foreign.id).await.unwrap(),
        "not this merchant's"
    );
    assert!(backend.endpoints.delete_endpoint(&m.id, &second.id).await.unwrap());
    assert!(
        !backend.endpoints.delete_endpoint(&m.id, &second.id).await.unwrap(),
        "already gone"
    );
    let listed = ids(backend.endpoints.endpoints(&m.id).await.unwrap());
    assert_eq!(listed, vec![first.id.clone(), third.id.clone()]);
    assert_eq!(backend.endpoints.endpoint(&m.id, &second.id).await.unwrap(), None);
    assert_eq!(
        ids(backend.endpoints.endpoints(&other.id).await.unwrap()),
        vec![foreign.id.clone()]
    );
}

/// The key registry follows its endpoints: a key is published as it is stored, with its end
/// once rotated out or retired; a write refused as stale publishes nothing; a deleted endpoint's
/// keys are gone or ended; an endpoint that signs with HMAC only publishes nothing.
pub async fn endpoints_publish_their_keys_until_they_stop_signing(backend: &Backend) {
    use crate::webhook_endpoint::SignatureScheme;
    let m = merchant();
    let now = crate::clock::now();
    let published = || async {
        let keys = backend.keys.published_keys().await.unwrap();
        keys.into_iter()
            .map(|k| (k.kid.clone(), k))
            .collect::<std::collections::HashMap<_, _>>()
    };
    let load = |id| {
        let m = m.id.clone();
        async move { backend.endpoints.endpoint(&m, &id).await.unwrap().unwrap() }
    };

    let hmac_only = WebhookEndpoint::new(m.id.clone(), "https://hooks.example.com/hmac".into(), now).unwrap();
    backend.endpoints.put_endpoint(&hmac_only).await.unwrap();
    let before = published().await.len();

    let mut e = WebhookEndpoint::new(m.id.clone(), "https://hooks.example.com/ed".into(), now).unwrap();
    e.set_signature_scheme(SignatureScheme::Ed25519, now).unwrap();
    backend.endpoints.put_endpoint(&e).await.unwrap();
    let first = e.signing_keys[0].clone();
    let keys = published().await;
    assert_eq!(
        keys.len(),
        before + 1,
        "one key for the ed25519 endpoint, none for the other"
    );
    assert_eq!(keys[&first.kid].public, first.public);
    assert!(keys[&first.kid].active(now));

    let mut e = load(e.id.clone()).await;
    e.rotate(now, chrono::Duration::hours(1)).unwrap();
    backend.endpoints.put_endpoint(&e).await.unwrap();
    let second = e.signing_keys[0].clone();
    let keys = published().await;
    assert!(
        keys[&second.kid].active(now) && keys[&first.kid].active(now),
        "both sign in the grace"
    );
    assert!(
        !keys[&first.kid].active(now + chrono::Duration::hours(2)),
        "the old one's end is published"
    );

    // A stale copy (the revision before the rotation) with a key of its own is refused whole.
    let mut stale = e.clone();
    stale.revision -= 1;
    stale.rotate(now, chrono::Duration::hours(1)).unwrap();
    assert!(matches!(
        backend.endpoints.put_endpoint(&stale).await,
        Err(StoreError::Changed { .. })
    ));
    assert!(
        !published().await.contains_key(&stale.signing_keys[0].kid),
        "a refused write publishes nothing"
    );

    let mut e = load(e.id.clone()).await;
    e.set_signature_scheme(SignatureScheme::Hmac, now).unwrap();
    backend.endpoints.put_endpoint(&e).await.unwrap();
    let keys = published().await;
    assert!(
        keys.get(&second.kid).is_none_or(|k| !k.active(now)),
        "retired with the scheme: ended, or gone"
    );

    let mut e = load(e.id.clone()).await;
    e.set_signature_scheme(SignatureScheme::Both, now).unwrap();
    backend.endpoints.put_endpoint(&e).await.unwrap();
    let third = e.signing_keys[0].clone();
    assert!(published().await[&third.kid].active(now));
    assert!(backend.endpoints.delete_endpoint(&m.id, &e.id).await.unwrap());
    let keys = published().await;
    for kid in [&first.kid, &second.kid, &third.kid] {
        assert!(
            keys.get(kid).is_none_or(|k| !k.active(now)),
            "a deleted endpoint's key {kid} signs no more"
        );
    }
}

/// A script rotating an ed25519 endpoint (and switching its scheme back and forth) again and
/// again leaves a bounded set of published keys: ended keys leave with the record.
pub async fn rotations_in_a_loop_publish_a_bounded_set(backend: &Backend) {
    use crate::webhook_endpoint::{MAX_IN_GRACE, SignatureScheme};
    let m = merchant();
    let start = crate::clock::now();
    let mut e = WebhookEndpoint::new(m.id.clone(), "https://hooks.example.com/loop".into(), start).unwrap();
    e.set_signature_scheme(SignatureScheme::Ed25519, start).unwrap();
    backend.endpoints.put_endpoint(&e).await.unwrap();
    for i in 0..30 {
        let at = start + chrono::Duration::milliseconds(10 * (i + 1));
        let mut fresh = backend.endpoints.endpoint(&m.id, &e.id).await.unwrap().unwrap();
        match i % 3 {
            0 => fresh.rotate(at, chrono::Duration::zero()).unwrap(),
            1 => fresh.rotate(at, chrono::Duration::days(7)).unwrap(),
            _ => {
                fresh.set_signature_scheme(SignatureScheme::Hmac, at).unwrap();
                fresh.set_signature_scheme(SignatureScheme::Ed25519, at).unwrap();
                ""
            }
        };
        backend.endpoints.put_endpoint(&fresh).await.unwrap();
    }
    let mine: Vec<_> = backend
        .endpoints
        .endpoint(&m.id, &e.id)
        .await
        .unwrap()
        .unwrap()
        .signing_keys;
    let published = backend.keys.published_keys().await.unwrap();
    assert!(
        published.len() <= 2 + MAX_IN_GRACE,
        "{} published keys",
        published.len()
    );
    assert!(mine.len() <= 2 + MAX_IN_GRACE, "{} keys in the record", mine.len());
}

/// An endpoint runs one replay at a time: a second start is refused while the first runs, and
/// allowed once it completed or was abandoned (then the first's late steps are refused). A step
/// is stored only over the revision it read; a replay is found only under its own merchant.
pub async fn an_endpoint_runs_one_replay_at_a_time(backend: &Backend) {
    use crate::replay::{ABANDONED_AFTER, ReplayJob, ReplayStatus};
    let m = super::merchant();
    let endpoint = crate::ids::EndpointId::generate();
    let now = crate::clock::now();
    let new_job = || {
        ReplayJob::new(
            m.id.clone(),
            endpoint.clone(),
            now - chrono::Duration::hours(2),
            now,
            true,
            now,
        )
        .unwrap()
    };
    let replays = &backend.replays;
    assert_eq!(replays.replay(&m.id, &endpoint).await.unwrap(), None);
    let first = new_job();
    replays.start_replay(&first, now).await.unwrap();
    let stored = replays.replay(&m.id, &endpoint).await.unwrap().unwrap();
    assert_eq!(stored.revision, 1);
    assert_eq!(
        ReplayJob {
            revision: 0,
            ..stored.clone()
        },
        first,
        "reads back as stored"
    );

    let second = new_job();
    assert!(
        matches!(
            replays.start_replay(&second, now).await,
            Err(StoreError::Changed { .. })
        ),
        "one at a time"
    );
    let mut step = stored.clone();
    step.events_seen = 200;
    step.replayed = 150;
    step.cursor = Some("evt_01ABC#0002".into());
    replays.put_replay(&step).await.unwrap();
    assert!(
        matches!(replays.put_replay(&stored).await, Err(StoreError::Changed { .. })),
        "a stale copy of the step"
    );
    let after = replays.replay(&m.id, &endpoint).await.unwrap().unwrap();
    assert_eq!((after.revision, after.replayed), (2, 150));
    assert_eq!(after.cursor.as_deref(), Some("evt_01ABC#0002"));

    // Abandoned (no progress for ABANDONED_AFTER): another takes its place; its steps stop.
    replays.start_replay(&second, now + ABANDONED_AFTER).await.unwrap();
    assert!(matches!(
        replays.put_replay(&after).await,
        Err(StoreError::Changed { .. })
    ));
    let mut done = replays.replay(&m.id, &endpoint).await.unwrap().unwrap();
    assert_eq!((done.id.clone(), done.revision), (second.id.clone(), 1));
    done.status = ReplayStatus::Completed;
    replays.put_replay(&done).await.unwrap();
    // Completed: the next may start at once.
    let third = new_job();
    replays.start_replay(&third, now).await.unwrap();
    assert_eq!(replays.replay(&m.id, &endpoint).await.unwrap().unwrap().id, third.id);

    let other = super::merchant();
    assert_eq!(
        replays.replay(&other.id, &endpoint).await.unwrap(),
        None,
        "another merchant's replay is not found"
    );
}
