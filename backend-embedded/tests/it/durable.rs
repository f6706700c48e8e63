//! The durable embedded backend: the same contract suites as every backend, and what a restart
//! must keep.

use checkout::ports::{Backend, DeliveryQueue, EventStore, IdempotencyStore};
use checkout::testkit::{MAX_RECEIVES, Pipeline, VISIBILITY};
use embedded_backend::{Database, DurableStore, EmbeddedQueue, EmbeddedTopic, QueueConfig};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const CONFIG: QueueConfig = QueueConfig {
    visibility_timeout: VISIBILITY,
    max_receive_count: MAX_RECEIVES,
};

/// A database file in a fresh folder that outlives the test (the suites' factories return only
/// the adapters); the folder is under the system's temporary directory.
fn fresh_path() -> PathBuf {
    tempfile::tempdir().unwrap().keep().join("acp.db")
}

fn key_of(key: &str, merchant: &checkout::merchant::Merchant) -> checkout::idempotency::IdempotencyKey {
    checkout::idempotency::IdempotencyKey {
        merchant_id: merchant.id.clone(),
        method: "POST".to_owned(),
        path: "/checkout_sessions".to_owned(),
        key: key.to_owned(),
    }
}

fn open(path: &Path) -> Arc<Database> {
    Arc::new(Database::open(path).unwrap())
}

fn queues(db: &Arc<Database>) -> (Arc<EmbeddedQueue>, Arc<EmbeddedQueue>) {
    let dead_letters = Arc::new(EmbeddedQueue::durable(CONFIG, None, db.clone(), "dlq").unwrap());
    let queue = Arc::new(EmbeddedQueue::durable(CONFIG, Some(dead_letters.clone()), db.clone(), "queue").unwrap());
    (queue, dead_letters)
}

/// Receives `queue`'s one message, without deleting it, until the queue moves it to
/// `dead_letters`.
async fn receive_until_dead_lettered(queue: &EmbeddedQueue, dead_letters: &EmbeddedQueue) {
    for _ in 0..MAX_RECEIVES {
        let got = queue.receive(1, VISIBILITY * 3).await.unwrap();
        assert_eq!(got.len(), 1);
        queue.set_visibility(&got[0].receipt, Duration::ZERO).await.unwrap();
    }
    assert!(queue.receive(1, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(dead_letters.len(), 1);
}

/// The bodies of the messages `queue` has visible now (received, not deleted).
async fn visible_bodies(queue: &EmbeddedQueue) -> Vec<String> {
    let received = queue.receive(10, Duration::ZERO).await.unwrap();
    received.into_iter().map(|m| m.body).collect()
}

/// The store on the database at `path`, and the queue its events go on.
async fn store_at(path: &Path) -> (DurableStore, Arc<EmbeddedQueue>) {
    let db = open(path);
    let (queue, _) = queues(&db);
    (DurableStore::open(db, queue.clone()).await.unwrap(), queue)
}

mod contract {
    use super::*;

    checkout::backend_contract_tests!(async { Backend::from_one(Arc::new(store_at(&fresh_path()).await.0)) });
}

mod pipeline {
    use super::*;

    async fn fresh() -> Pipeline {
        let (queue, dead_letters) = queues(&open(&fresh_path()));
        Pipeline {
            publisher: Arc::new(EmbeddedTopic::new(vec![queue.clone()])),
            queue,
            dead_letters,
        }
    }

    checkout::pipeline_contract_tests!(fresh());
}

mod restart {
    use super::*;
    use checkout::idempotency::{Claim, Completion, Hold, IdempotencyKey, StoredReply};
    use checkout::ports::DeliveryLog;
    use checkout::testkit::{event, merchant};

    #[tokio::test]
    async fn events_idempotency_replies_and_undelivered_events_survive_a_restart() {
        let path = fresh_path();
        let now = checkout::clock::now();
        let merchant = merchant();
        let first = event(&merchant, None, 1);
        let second = event(&merchant, Some(&first.session_id), 2);
        let key = IdempotencyKey {
            merchant_id: first.merchant_id.clone(),
            method: "POST".to_owned(),
            path: "/checkout_sessions".to_owned(),
            key: "k1".to_owned(),
        };
        {
            let (store, queue) = store_at(&path).await;
            let Claim::Acquired(hold) = store.claim(&key, "fp", now).await.unwrap() else {
                panic!("a fresh key is acquired");
            };
            let completion = Completion {
                key: key.clone(),
                hold,
                fingerprint: "fp".to_owned(),
                reply: StoredReply::Body {
                    status: 201,
                    body: "{}".to_owned(),
                },
                expires_at: now + chrono::Duration::hours(24),
            };
            store.append(&first, Some(&completion)).await.unwrap();
            store.append(&second, None).await.unwrap();
            let delivered = queue.receive(1, Duration::ZERO).await.unwrap();
            assert_eq!(delivered.len(), 1);
            queue.delete(&delivered[0].receipt).await.unwrap();
        }
        let (store, queue) = store_at(&path).await;
        assert_eq!(
            store.history(&first.session_id).await.unwrap(),
            vec![first.clone(), second.clone()]
        );
        assert!(matches!(store.claim(&key, "fp", now).await.unwrap(), Claim::Replay(reply) if reply.status() == 201));
        let again = queue.receive(10, Duration::ZERO).await.unwrap();
        let again: Vec<checkout::event::Event> = again.iter().map(|m| serde_json::from_str(&m.body).unwrap()).collect();
        assert_eq!(
            again,
            vec![second.clone()],
            "only the event not delivered is queued again"
        );
        assert!(
            store.append(&second, None).await.is_err(),
            "the stored version is still taken after the restart"
        );
    }

    #[tokio::test]
    async fn queued_messages_survive_a_restart_with_their_delays_and_deletions() {
        let path = fresh_path();
        {
            let db = open(&path);
            let (queue, _) = queues(&db);
            queue.send("kept", Duration::ZERO).await.unwrap();
            queue.send("deleted", Duration::ZERO).await.unwrap();
            queue.send("delayed", Duration::from_secs(3600)).await.unwrap();
            let received = queue.receive(10, Duration::ZERO).await.unwrap();
            assert_eq!(received.len(), 2, "the delayed one is not visible");
            let deleted = received.iter().find(|m| m.body == "deleted").unwrap();
            queue.delete(&deleted.receipt).await.unwrap();
            // "kept" was received and not deleted: after a restart it comes back at once.
        }
        let db = open(&path);
        let (queue, _) = queues(&db);
        assert_eq!(queue.len(), 2);
        let received = queue.receive(10, Duration::from_millis(100)).await.unwrap();
        let bodies: Vec<&str> = received.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, vec!["kept"], "the delayed message still waits");
        // Its receive before the restart counts (it was not stored): so it is not taken for a
        // first receive, which the dispatcher answers from whether a delivery began instead of
        // from the log (a failed first attempt whose retry died with the process was dropped).
        assert_eq!(received[0].receive_count, 2);
    }

    #[tokio::test]
    async fn a_message_moved_to_the_dead_letter_queue_stays_there_after_a_restart() {
        let path = fresh_path();
        {
            let db = open(&path);
            let (queue, dead_letters) = queues(&db);
            queue.send("poison", Duration::ZERO).await.unwrap();
            receive_until_dead_lettered(&queue, &dead_letters).await;
        }
        let db = open(&path);
        let (queue, dead_letters) = queues(&db);
        assert!(queue.is_empty());
        let letters = dead_letters.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(letters.len(), 1);
        assert_eq!(letters[0].body, "poison");
    }

    /// One record that cannot be read back (damaged on disk, or written by an older version)
    /// must not keep the store or its queues from starting: the damaged session reads as
    /// damaged, the events after it stay queued as they were, and a message with unreadable
    /// attributes is still delivered (the dispatcher sets an unreadable body aside, as it does a
    /// message whose compressed body is damaged).
    #[tokio::test]
    async fn an_unreadable_record_does_not_stop_startup() {
        let path = fresh_path();
        let merchant = merchant();
        let first = event(&merchant, None, 1);
        let second = event(&merchant, None, 1);
        {
            let (store, queue) = store_at(&path).await;
            store.append(&first, None).await.unwrap();
            store.append(&second, None).await.unwrap();
            queue.send("still delivered", Duration::ZERO).await.unwrap();
            queue.send(&"x".repeat(1_000), Duration::ZERO).await.unwrap();
        }
        let raw = rusqlite::Connection::open(&path).unwrap();
        let damaged = raw
            .execute(
                "UPDATE events SET body = '[[[[' WHERE session_id = ?1",
                [first.session_id.as_str()],
            )
            .unwrap();
        assert_eq!(damaged, 1);
        raw.execute("UPDATE messages SET attributes = '{oops'", []).unwrap();
        let compressed = raw
            .execute("UPDATE messages SET body = x'0102' WHERE typeof(body) = 'blob'", [])
            .unwrap();
        assert_eq!(compressed, 1, "the long message is stored compressed");
        drop(raw);

        let (store, queue) = store_at(&path).await;
        assert_eq!(store.history(&second.session_id).await.unwrap(), vec![second.clone()]);
        assert!(
            matches!(
                store.history(&first.session_id).await,
                Err(checkout::ports::StoreError::Corrupt(_))
            ),
            "the damaged session reads as damaged, not as empty"
        );
        let received = queue.receive(10, Duration::from_millis(100)).await.unwrap();
        let bodies: Vec<&str> = received.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(
            bodies[..3],
            ["[[[[", &serde_json::to_string(&second).unwrap(), "still delivered"]
        );
        assert!(
            bodies[3].contains("unreadable_message"),
            "a damaged compressed body comes out unreadable, for the dead-letter queue: {}",
            bodies[3]
        );
        assert!(received.iter().all(|m| m.attributes.is_empty()));
    }

    async fn endpoint_ids(
        store: &DurableStore,
        merchant: &checkout::merchant::Merchant,
    ) -> Vec<checkout::ids::EndpointId> {
        use checkout::ports::EndpointStore;
        let listed = store.endpoints(&merchant.id).await.unwrap();
        listed.into_iter().map(|e| e.id).collect()
    }

    /// Merchants and endpoints are answered from memory: each write is seen by the next read
    /// (a new endpoint, a changed key, a deletion), a refused write changes nothing, a restart
    /// reads them back from the file, and a damaged row reads as damaged, for that row only.
    #[tokio::test]
    async fn merchants_and_endpoints_read_back_exactly_as_committed() {
        use checkout::ports::{EndpointStore, MerchantStore, StoreError};
        use checkout::webhook_endpoint::WebhookEndpoint;
        let path = fresh_path();
        let (mut merchant, other) = (merchant(), merchant());
        let now = checkout::clock::now();
        let (first_id, second_id);
        {
            let (store, _) = store_at(&path).await;
            store.put_merchant(&merchant).await.unwrap();
            store.put_merchant(&other).await.unwrap();
            let first = WebhookEndpoint::new(merchant.id.clone(), "https://a.example/hook".into(), now).unwrap();
            store.put_endpoint(&first).await.unwrap();
            assert_eq!(
                store.endpoints(&merchant.id).await.unwrap().len(),
                1,
                "a new endpoint is listed at once"
            );
            let mut changed = store.endpoint(&merchant.id, &first.id).await.unwrap().unwrap();
            changed.url = "https://b.example/hook".into();
            store.put_endpoint(&changed).await.unwrap();
            let stale = WebhookEndpoint {
                url: "https://stale.example/".into(),
                ..first.clone()
            };
            assert!(matches!(
                store.put_endpoint(&stale).await,
                Err(StoreError::Changed { .. })
            ));
            let read = store.endpoint(&merchant.id, &first.id).await.unwrap().unwrap();
            assert_eq!((read.url.as_str(), read.revision), ("https://b.example/hook", 2));
            assert!(
                store.endpoints(&other.id).await.unwrap().is_empty(),
                "another merchant's list is its own"
            );

            let second = WebhookEndpoint::new(merchant.id.clone(), "https://c.example/hook".into(), now).unwrap();
            store.put_endpoint(&second).await.unwrap();
            assert!(store.delete_endpoint(&merchant.id, &first.id).await.unwrap());
            assert!(store.endpoint(&merchant.id, &first.id).await.unwrap().is_none());
            assert_eq!(endpoint_ids(&store, &merchant).await, vec![second.id.clone()]);
            (first_id, second_id) = (first.id, second.id);

            let old_hash = merchant.api_key_hash.clone();
            merchant = store.merchant(&merchant.id).await.unwrap().unwrap();
            merchant.api_key_hash = checkout::merchant::hash_api_key("sk_test_rotated");
            store.put_merchant(&merchant).await.unwrap();
            assert!(
                store.merchant_by_api_key_hash(&old_hash).await.unwrap().is_none(),
                "the old key stops at once"
            );
            let found = store
                .merchant_by_api_key_hash(&merchant.api_key_hash)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(found.id, merchant.id);
        }

        let (store, _) = store_at(&path).await;
        let found = store
            .merchant_by_api_key_hash(&merchant.api_key_hash)
            .await
            .unwrap()
            .unwrap();
        assert_eq!((found.id, found.revision), (merchant.id.clone(), merchant.revision + 1));
        assert_eq!(store.merchant(&other.id).await.unwrap().unwrap().id, other.id);
        assert!(store.endpoint(&merchant.id, &first_id).await.unwrap().is_none());
        assert_eq!(endpoint_ids(&store, &merchant).await, vec![second_id.clone()]);
        drop(store);

        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute("UPDATE endpoints SET body = '{oops'", []).unwrap();
        raw.execute(
            "UPDATE merchants SET body = '{oops' WHERE id = ?1",
            [merchant.id.as_str()],
        )
        .unwrap();
        drop(raw);
        let (store, _) = store_at(&path).await;
        assert!(matches!(
            store.endpoint(&merchant.id, &second_id).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            store.endpoints(&merchant.id).await,
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            store.merchant_by_api_key_hash(&merchant.api_key_hash).await,
            Err(StoreError::Corrupt(_))
        ));
        assert_eq!(
            store.merchant(&other.id).await.unwrap().unwrap().id,
            other.id,
            "only the damaged row"
        );
    }

    fn reply_to(
        key: &str,
        merchant: &checkout::merchant::Merchant,
        expires_at: checkout::clock::Timestamp,
        hold: Hold,
    ) -> Completion {
        Completion {
            key: key_of(key, merchant),
            hold,
            fingerprint: "fp".to_owned(),
            reply: StoredReply::Body {
                status: 201,
                body: "{}".to_owned(),
            },
            expires_at,
        }
    }

    /// An event created `days_ago`, for attempt records of that age.
    fn event_of_age(merchant: &checkout::merchant::Merchant, days_ago: i64) -> checkout::event::Event {
        let mut e = event(merchant, None, 1);
        let at = checkout::clock::now() - chrono::Duration::days(days_ago);
        let ulid = ulid::Ulid::from_parts(at.timestamp_millis() as u64, ulid::Ulid::new().random());
        e.id = checkout::ids::EventId::parse(&format!("evt_{ulid}")).unwrap();
        e
    }

    /// The data directory must not grow without bound: replies past their 48 h and attempt
    /// records past the log's 30 days are deleted, a bounded number per pass, and what is
    /// still within its time is kept.
    #[tokio::test]
    async fn expired_replies_and_old_attempts_are_purged_in_bounded_passes() {
        let (store, _queue) = store_at(&fresh_path()).await;
        let merchant = merchant();
        let now = checkout::clock::now();
        for (i, hours) in [-1i64, -2, -3, 5].into_iter().enumerate() {
            let key = format!("k{i}");
            let Claim::Acquired(hold) = store.claim(&key_of(&key, &merchant), "fp", now).await.unwrap() else {
                panic!("fresh key");
            };
            let done = reply_to(&key, &merchant, now + chrono::Duration::hours(hours), hold);
            store.complete(&done).await.unwrap();
        }
        let old: Vec<_> = (0..3).map(|_| event_of_age(&merchant, 31)).collect();
        let recent = event_of_age(&merchant, 29);
        for (target, e) in [
            ("we_a", &old[0]),
            ("we_b", &old[1]),
            ("order_webhook", &old[2]),
            ("we_a", &recent),
        ] {
            for attempt in 1..=2 {
                store
                    .record(&checkout::testkit::attempt_record(target, e, attempt))
                    .await
                    .unwrap();
            }
        }

        let first = store.purge_expired(now, 2).await.unwrap();
        assert_eq!((first.replies, first.attempts), (2, 2), "at most the limit per pass");
        let mut total = first;
        loop {
            let pass = store.purge_expired(now, 2).await.unwrap();
            total.replies += pass.replies;
            total.attempts += pass.attempts;
            if pass.replies < 2 && pass.attempts < 2 {
                break;
            }
        }
        assert_eq!((total.replies, total.attempts), (3, 6));
        assert_eq!(
            store.purge_expired(now, 100).await.unwrap(),
            Default::default(),
            "nothing left to purge"
        );

        let kept = key_of("k3", &merchant);
        assert!(
            matches!(store.claim(&kept, "fp", now).await.unwrap(), Claim::Replay(_)),
            "a live reply is kept"
        );
        let gone = key_of("k0", &merchant);
        assert!(
            matches!(store.claim(&gone, "fp", now).await.unwrap(), Claim::Acquired { .. }),
            "an expired one is gone"
        );
        assert_eq!(
            store.attempts_of("we_a", &recent.id).await.unwrap().len(),
            2,
            "29 days old: kept"
        );
        for (target, e) in [("we_a", &old[0]), ("we_b", &old[1]), ("order_webhook", &old[2])] {
            assert!(
                store.attempts_of(target, &e.id).await.unwrap().is_empty(),
                "{target}: purged"
            );
        }
    }

    /// A claim reads the stored replies only for a key that may have one: with the replies'
    /// table moved away, so that any read of it fails, new keys and purged ones are still
    /// claimed, and a key with a reply (counted when the store opened) still reads.
    #[tokio::test]
    async fn only_keys_that_may_have_a_reply_read_the_stored_replies() {
        let path = fresh_path();
        let merchant = merchant();
        let now = checkout::clock::now();
        for (key, hours) in [("kept", 5i64), ("expired", -1)] {
            let (store, _) = store_at(&path).await;
            let Claim::Acquired(hold) = store.claim(&key_of(key, &merchant), "fp", now).await.unwrap() else {
                panic!("fresh key");
            };
            store
                .complete(&reply_to(key, &merchant, now + chrono::Duration::hours(hours), hold))
                .await
                .unwrap();
        }
        let (store, _) = store_at(&path).await;
        assert_eq!(store.purge_expired(now, 10).await.unwrap().replies, 1);
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch("ALTER TABLE idempotency RENAME TO moved_away")
            .unwrap();

        for key in ["new", "expired"] {
            assert!(
                matches!(
                    store.claim(&key_of(key, &merchant), "fp", now).await,
                    Ok(Claim::Acquired(_))
                ),
                "{key}: claimed without a read"
            );
        }
        assert!(
            store.claim(&key_of("kept", &merchant), "fp", now).await.is_err(),
            "a key with a stored reply reads it"
        );
    }

    /// A data directory written before replies had an expiry column: opened, its replies get
    /// their expiry from the stored record, and the purge finds them.
    #[tokio::test]
    async fn a_database_from_before_the_purge_is_migrated() {
        let path = fresh_path();
        let merchant = merchant();
        let now = checkout::clock::now();
        let unused = || Hold {
            token: String::new(),
            lease_until: now,
            subject: None,
        };
        let old = reply_to("old", &merchant, now - chrono::Duration::hours(1), unused());
        let live = reply_to("live", &merchant, now + chrono::Duration::hours(1), unused());
        {
            let raw = rusqlite::Connection::open(&path).unwrap();
            raw.execute_batch("CREATE TABLE idempotency (key TEXT PRIMARY KEY, record TEXT NOT NULL) WITHOUT ROWID;")
                .unwrap();
            for done in [&old, &live] {
                let record = checkout::idempotency::IdempotencyRecord {
                    fingerprint: "fp".to_owned(),
                    state: checkout::idempotency::RecordState::Done {
                        reply: done.reply.clone(),
                    },
                    expires_at: done.expires_at,
                };
                raw.execute(
                    "INSERT INTO idempotency (key, record) VALUES (?1, ?2)",
                    [done.key.storage_key(), serde_json::to_string(&record).unwrap()],
                )
                .unwrap();
            }
        }
        let (store, _queue) = store_at(&path).await;
        assert!(matches!(
            store.claim(&live.key, "fp", now).await.unwrap(),
            Claim::Replay(_)
        ));
        assert_eq!(store.purge_expired(now, 10).await.unwrap().replies, 1);
        assert!(
            matches!(store.claim(&live.key, "fp", now).await.unwrap(), Claim::Replay(_)),
            "the live one stays"
        );
        assert!(matches!(
            store.claim(&old.key, "fp", now).await.unwrap(),
            Claim::Acquired { .. }
        ));
    }
}

mod write_ahead_log {
    use super::*;
    use checkout::testkit::{event, merchant};

    /// The write-ahead log is checkpointed soon after commits, beside the writer, not by the
    /// writer once the log holds 1,000 pages (a checkpoint on the writer stopped every commit
    /// while it copied and synced the database file): a few small commits reach the database
    /// file while the store stays open.
    #[tokio::test]
    async fn commits_reach_the_database_file_while_the_store_is_open() {
        let path = fresh_path();
        let (store, _queue) = store_at(&path).await;
        let size = || std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        let before = size();
        let merchant = merchant();
        for _ in 0..20 {
            store.append(&event(&merchant, None, 1), None).await.unwrap();
        }
        let mut waited = 0;
        while size() <= before && waited < 300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            waited += 1;
        }
        assert!(size() > before, "the database file stayed at {before} bytes");
    }

    /// The write-ahead log starts over once long, though the writer keeps writing while every
    /// checkpoint runs (then SQLite never finds it fully copied and would only append): 128 MB
    /// written by four callers at once leave a log file under 48 MB.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn the_log_file_stays_bounded_under_continuous_writes() {
        let path = fresh_path();
        let db = open(&path);
        db.write(|conn| {
            conn.execute_batch("CREATE TABLE filler (body BLOB)")
                .map_err(checkout::ports::StoreError::unavailable)
        })
        .await
        .unwrap();
        // 128 MB in 256 KB commits from four writers at once, as fast as they go; a reader
        // now and then (as the API's are) may keep one start-over from happening.
        let writers = (0..4).map(|_| {
            let db = db.clone();
            tokio::spawn(async move {
                for i in 0..128 {
                    db.write(|conn| {
                        conn.execute("INSERT INTO filler VALUES (zeroblob(256 * 1024))", [])
                            .map(|_| ())
                            .map_err(checkout::ports::StoreError::unavailable)
                    })
                    .await
                    .unwrap();
                    if i % 16 == 0 {
                        db.read(|conn| conn.query_row("SELECT count(*) FROM filler", [], |r| r.get::<_, i64>(0)))
                            .await
                            .unwrap();
                    }
                }
            })
        });
        for writer in writers.collect::<Vec<_>>() {
            writer.await.unwrap();
        }
        let log = std::fs::metadata(path.with_extension("db-wal")).unwrap().len();
        // Started over past 16 MB; even with two start-overs kept from happening by a reader,
        // under 48 MB (without any, the log holds all 128 MB).
        assert!(log < 48 * 1024 * 1024, "the log file grew to {log} bytes");
    }
}

/// The durable store is its own outbox: an event's entry on the order-updates queue commits in
/// the event's transaction, as a reference to the event's row.
mod outbox {
    use super::*;
    use checkout::event::Event;
    use checkout::testkit::{event, merchant};

    fn queued_events(received: &[checkout::ports::QueuedMessage]) -> Vec<Event> {
        received
            .iter()
            .map(|m| serde_json::from_str(&m.body).unwrap())
            .collect()
    }

    /// A message sent on from the one being handled (a delivery deferred, the next try) is not
    /// fsynced: the handled message's deletion commits after it, so a power failure cannot keep
    /// the deletion and lose the message. Nor does it wake the writer for a commit of its own:
    /// it joins the next commit (a deferral can wait a moment; one for each event to a stuck
    /// endpoint was a second commit per event). A message sent otherwise (a test event) is
    /// fsynced. Both are kept across a restart.
    #[tokio::test]
    async fn messages_sent_onward_are_not_fsynced_and_join_the_next_commit() {
        use checkout::ports::DeliveryQueue;
        let path = fresh_path();
        {
            let db = Arc::new(Database::open_with_linger(&path, Duration::from_secs(3600)).unwrap());
            let (queue, _) = queues(&db);
            let before = db.commits();
            let onward = {
                let queue = queue.clone();
                tokio::spawn(async move { queue.send_onward("sent onward", Duration::ZERO).await })
            };
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(!onward.is_finished(), "it waits for the next commit");
            assert_eq!(db.commits(), before, "and made none of its own");
            queue.send("sent", Duration::ZERO).await.unwrap();
            onward.await.unwrap().unwrap();
            let sent = db.commits();
            assert_eq!(sent.synced, before.synced + 1, "a message sent is fsynced");
            assert_eq!(sent.unsynced, before.unsynced, "the one sent onward shared its commit");
        }
        {
            // With no other write coming, it commits on its own once the writer stops waiting
            // for company, without an fsync.
            let db = Arc::new(Database::open_with_linger(&path, Duration::from_millis(20)).unwrap());
            let (queue, _) = queues(&db);
            let before = db.commits();
            queue.send_onward("sent onward alone", Duration::ZERO).await.unwrap();
            let after = db.commits();
            assert_eq!(after.synced, before.synced);
            assert_eq!(after.unsynced, before.unsynced + 1);
        }
        let db = Arc::new(Database::open(&path).unwrap());
        let (queue, _) = queues(&db);
        let mut bodies = visible_bodies(&queue).await;
        bodies.sort();
        assert_eq!(bodies, vec!["sent", "sent onward", "sent onward alone"]);
    }

    /// A delivery deferred or retried goes on as a message carrying its event's JSON (a 2.6 KB
    /// session): kept as text, each such row spilled onto overflow pages, and every deferral to
    /// a stuck endpoint wrote and freed several pages. Its row is compressed with the events'
    /// codec, and reads back byte for byte after a restart; a short body stays as it is.
    #[tokio::test]
    async fn a_message_carrying_an_event_is_stored_compressed_and_reads_back_exactly() {
        use checkout::delivery_task::TaskMessage;
        let path = fresh_path();
        let raw = serde_json::value::to_raw_value(&event(&merchant(), None, 1)).unwrap();
        let task = TaskMessage::new("we_01JABCDEFGHJKMNPQRSTVWXYZ0", 2, false, &raw).to_body();
        {
            let db = open(&path);
            let (queue, _) = queues(&db);
            queue.send_onward(&task, Duration::ZERO).await.unwrap();
            queue.send("short", Duration::ZERO).await.unwrap();
        }
        let raw_db = rusqlite::Connection::open(&path).unwrap();
        let stored: Vec<(String, i64)> = raw_db
            .prepare("SELECT typeof(body), length(body) FROM messages ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        drop(raw_db);
        assert_eq!(stored[0].0, "blob", "{stored:?}");
        assert!(
            stored[0].1 * 4 < task.len() as i64,
            "{} bytes stored for {} of JSON",
            stored[0].1,
            task.len()
        );
        assert_eq!(stored[1], ("text".to_owned(), 5));

        let db = open(&path);
        let (queue, _) = queues(&db);
        assert_eq!(visible_bodies(&queue).await, vec![task, "short".to_owned()]);
    }

    /// A file written by a later version is refused with a message saying so, untouched: this
    /// version would misread what it does not know (as the versions before compressed messages
    /// read each as empty). A file of this version says which it is.
    #[tokio::test]
    async fn a_file_written_by_a_later_version_is_refused_untouched() {
        let path = fresh_path();
        drop(open(&path));
        let raw = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 1);
        raw.execute_batch("PRAGMA user_version = 2;").unwrap();
        drop(raw);
        let refused = Database::open(&path).err().expect("refused");
        let message = refused.to_string();
        assert!(message.contains("later version"), "{message}");
        let raw = rusqlite::Connection::open(&path).unwrap();
        let version: i64 = raw.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, 2, "untouched");
        drop(raw);

        // Not even its journal mode is changed.
        let other = fresh_path();
        let raw = rusqlite::Connection::open(&other).unwrap();
        raw.execute_batch("PRAGMA journal_mode = DELETE; PRAGMA user_version = 2; CREATE TABLE t (x);")
            .unwrap();
        drop(raw);
        let before = std::fs::read(&other).unwrap();
        assert!(Database::open(&other).is_err());
        let after = std::fs::read(&other).unwrap();
        assert!(after == before, "the file is byte for byte as it was");
    }

    /// An accepted event (the API has answered for it) and its idempotency reply survive a
    /// power failure: their commit is fsynced. Settling its delivery need only survive a crash
    /// of the process (a record lost sends the event again): those commits are not. A
    /// delivered first attempt costs no commit of its own: it commits with the next write
    /// waited for (the wait for one is an hour here), yet every read of the log sees it at once.
    #[tokio::test]
    async fn accepted_events_are_fsynced_and_settling_a_delivery_is_not() {
        use checkout::ports::DeliveryLog;
        use checkout::testkit::attempt_record;
        let path = fresh_path();
        let db = Arc::new(Database::open_with_linger(&path, Duration::from_secs(3600)).unwrap());
        let (queue, _) = queues(&db);
        let store = DurableStore::open(db.clone(), queue.clone()).await.unwrap();
        let merchant = merchant();
        let (e, other) = (event(&merchant, None, 1), event(&merchant, None, 1));

        let before = db.commits();
        store.append(&e, None).await.unwrap();
        let appended = db.commits();
        assert_eq!(appended.synced, before.synced + 1, "the event is fsynced");

        let mut first = attempt_record("we_1", &e, 1);
        first.status = checkout::attempt_log::AttemptStatus::Succeeded;
        first.next_attempt_at = None;
        store.record_first_attempts(std::slice::from_ref(&first)).await.unwrap();
        assert_eq!(db.commits(), appended, "a delivered first attempt waits for company");
        let stored = || {
            let raw = rusqlite::Connection::open(&path).unwrap();
            raw.query_row("SELECT count(*) FROM deliveries", [], |r| r.get::<_, i64>(0))
                .unwrap()
        };
        assert_eq!(stored(), 0);
        assert_eq!(
            store.started(&[("we_1", &e.id), ("we_1", &other.id)]).await.unwrap(),
            vec![true, false],
            "seen before it is committed"
        );
        assert_eq!(store.attempts_of("we_1", &e.id).await.unwrap(), vec![first.clone()]);
        assert_eq!(stored(), 1, "a read of the log commits it first");
        let read = db.commits();
        assert_eq!(read.synced, appended.synced, "without an fsync");

        let second = attempt_record("we_1", &e, 2);
        assert!(store.record(&second).await.unwrap());
        let received = queue.receive(1, Duration::ZERO).await.unwrap();
        queue.set_visibility(&received[0].receipt, VISIBILITY).await.unwrap();
        let settled = db.commits();
        assert_eq!(settled.synced, appended.synced, "no fsync to settle a delivery");
        assert_eq!(settled.unsynced, read.unsynced + 2);
        assert_eq!(store.attempts_of("we_1", &e.id).await.unwrap(), vec![first, second]);
        assert_eq!(
            store.started(&[("we_1", &e.id), ("we_1", &other.id)]).await.unwrap(),
            vec![true, false],
            "and after"
        );
    }

    /// Whether a delivery began is answered from memory for events this process appended, and
    /// from disk for the others (after a restart, all of them): both answers agree, whichever
    /// way the first attempt was recorded, and a record a failed write did not store is not
    /// taken as begun.
    #[tokio::test]
    async fn whether_a_delivery_began_reads_the_same_from_memory_and_from_disk() {
        use checkout::ports::DeliveryLog;
        use checkout::testkit::attempt_record;
        let path = fresh_path();
        let merchant = merchant();
        let (e, older) = (event(&merchant, None, 1), event(&merchant, None, 1));
        let asked = [
            ("we_batch", &e.id),
            ("we_single", &e.id),
            ("we_none", &e.id),
            ("we_refused", &e.id),
            ("we_batch", &older.id),
            ("we_refused_delivered", &e.id),
        ];
        {
            let (store, _) = store_at(&path).await;
            store.append(&older, None).await.unwrap();
            store
                .record_first_attempts(&[attempt_record("we_batch", &older, 1)])
                .await
                .unwrap();
        }
        let (store, _) = store_at(&path).await;
        store.append(&e, None).await.unwrap();
        assert_eq!(
            store.started(&asked).await.unwrap(),
            vec![false, false, false, false, true, false]
        );
        store
            .record_first_attempts(&[attempt_record("we_batch", &e, 1), attempt_record("we_batch", &e, 2)])
            .await
            .unwrap();
        assert!(store.record(&attempt_record("we_single", &e, 1)).await.unwrap());
        let from_memory = store.started(&asked).await.unwrap();
        assert_eq!(from_memory, vec![true, true, false, false, true, false]);

        // Writes the database refuses (as a full disk would): not begun, and the event's other
        // answers, now read from disk, stay the same. A record of a delivery not made (failed,
        // held, skipped) may be all that finds its event later: its failure is reported, so the
        // message comes back. A delivered one is not waited for.
        rusqlite::Connection::open(&path)
            .unwrap()
            .execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON deliveries WHEN NEW.target LIKE 'we_refused%' \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
            .unwrap();
        assert!(
            store
                .record_first_attempts(&[attempt_record("we_refused", &e, 1)])
                .await
                .is_err()
        );
        let mut delivered = attempt_record("we_refused_delivered", &e, 1);
        delivered.status = checkout::attempt_log::AttemptStatus::Succeeded;
        delivered.next_attempt_at = None;
        store.record_first_attempts(&[delivered]).await.unwrap();
        assert!(
            store
                .attempts_of("we_refused_delivered", &e.id)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(store.attempts_of("we_refused", &e.id).await.unwrap().is_empty());
        assert_eq!(store.started(&asked).await.unwrap(), from_memory);
        drop(store);

        let (store, _) = store_at(&path).await;
        assert_eq!(store.started(&asked).await.unwrap(), from_memory, "the same from disk");
    }

    #[tokio::test]
    async fn an_appended_event_is_queued_in_its_own_commit_and_its_bytes_are_stored_once() {
        let path = fresh_path();
        let merchant = merchant();
        let first = event(&merchant, None, 1);
        let second = event(&merchant, Some(&first.session_id), 2);
        {
            let db = open(&path);
            let (queue, _) = queues(&db);
            let store = DurableStore::open(db.clone(), queue.clone()).await.unwrap();
            store.append(&first, None).await.unwrap();
            store.append(&second, None).await.unwrap();
            let received = queue.receive(10, Duration::ZERO).await.unwrap();
            assert_eq!(
                queued_events(&received),
                vec![first.clone(), second.clone()],
                "in commit order, at once"
            );
            let attributes = &received[0].attributes;
            assert!(attributes.contains(&("merchant_id".to_owned(), merchant.id.to_string())));
            assert!(attributes.contains(&("event_type".to_owned(), first.kind.to_string())));
        }
        let raw = rusqlite::Connection::open(&path).unwrap();
        let (entries, copied): (i64, i64) = raw
            .query_row("SELECT count(*), total(length(body)) FROM messages", [], |r| {
                Ok((r.get(0)?, r.get::<_, f64>(1)? as i64))
            })
            .unwrap();
        assert_eq!((entries, copied), (2, 0), "two entries, no copy of an event's bytes");
        let stored: f64 = raw
            .query_row("SELECT total(length(body)) FROM events", [], |r| r.get(0))
            .unwrap();
        let json = serde_json::to_string(&first).unwrap().len() + serde_json::to_string(&second).unwrap().len();
        assert!(
            stored * 4.0 < json as f64,
            "events kept compressed: {stored} bytes for {json} of JSON"
        );
        drop(raw);

        let db = open(&path);
        let (queue, _) = queues(&db);
        let _store = DurableStore::open(db.clone(), queue.clone()).await.unwrap();
        let received = queue.receive(10, Duration::from_millis(100)).await.unwrap();
        assert_eq!(
            queued_events(&received),
            vec![first, second],
            "received and not deleted: after a restart, both come back, read from the events"
        );
    }

    #[tokio::test]
    async fn a_refused_append_queues_nothing() {
        let db = open(&fresh_path());
        let (queue, _) = queues(&db);
        let store = DurableStore::open(db.clone(), queue.clone()).await.unwrap();
        let merchant = merchant();
        let first = event(&merchant, None, 1);
        store.append(&first, None).await.unwrap();
        let conflicting = event(&merchant, Some(&first.session_id), 1);
        assert!(store.append(&conflicting, None).await.is_err());
        let received = queue.receive(10, Duration::from_millis(50)).await.unwrap();
        assert_eq!(queued_events(&received), vec![first]);
    }

    /// The queue entry cannot be written (its place is taken): the append fails as a whole,
    /// so the event is neither stored nor queued, and the session can still be written.
    #[tokio::test]
    async fn an_append_whose_queue_entry_fails_stores_nothing() {
        let path = fresh_path();
        let db = open(&path);
        let (queue, _) = queues(&db);
        let store = DurableStore::open(db.clone(), queue.clone()).await.unwrap();
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute(
            "INSERT INTO messages (queue, seq, id, body, attributes, visible_at_ms, receive_count) \
             VALUES ('queue', 0, 'taken', '', '[]', 0, 0)",
            [],
        )
        .unwrap();
        let merchant = merchant();
        let first = event(&merchant, None, 1);
        assert!(store.append(&first, None).await.is_err());
        assert_eq!(store.history(&first.session_id).await.unwrap(), vec![]);
        let stored: i64 = raw.query_row("SELECT count(*) FROM events", [], |r| r.get(0)).unwrap();
        assert_eq!(stored, 0, "the event rolled back with its entry");
        assert!(queue.receive(10, Duration::from_millis(50)).await.unwrap().is_empty());

        store.append(&first, None).await.unwrap();
        let received = queue.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(queued_events(&received), vec![first]);
    }

    /// An entry whose event cannot be read after a restart (its row damaged, or gone) is still
    /// received, with a body that names the event's position, so the dead letter the
    /// dispatcher makes of it says which event it was.
    #[tokio::test]
    async fn an_entry_whose_event_is_damaged_or_gone_names_its_position() {
        let path = fresh_path();
        let merchant = merchant();
        let (damaged, gone) = (event(&merchant, None, 1), event(&merchant, None, 1));
        {
            let (store, _) = store_at(&path).await;
            store.append(&damaged, None).await.unwrap();
            store.append(&gone, None).await.unwrap();
        }
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute(
            "UPDATE events SET body = x'01deadbeef' WHERE session_id = ?1",
            [damaged.session_id.as_str()],
        )
        .unwrap();
        raw.execute("DELETE FROM events WHERE session_id = ?1", [gone.session_id.as_str()])
            .unwrap();
        drop(raw);
        let db = open(&path);
        let (queue, _) = queues(&db);
        let received = queue.receive(10, Duration::ZERO).await.unwrap();
        let bodies: Vec<serde_json::Value> = received
            .iter()
            .map(|m| serde_json::from_str(&m.body).unwrap())
            .collect();
        let positions: Vec<Option<i64>> = bodies
            .iter()
            .map(|b| b["unreadable_event"]["position"].as_i64())
            .collect();
        assert_eq!(positions, vec![Some(1), Some(2)], "{bodies:?}");
    }

    /// An event's entry moved to the dead-letter queue is still a reference to the event's
    /// row, and still reads as the event after a restart.
    #[tokio::test]
    async fn an_event_moved_to_the_dead_letter_queue_keeps_its_bytes_after_a_restart() {
        let path = fresh_path();
        let merchant = merchant();
        let first = event(&merchant, None, 1);
        {
            let db = open(&path);
            let (queue, dead_letters) = queues(&db);
            let store = DurableStore::open(db.clone(), queue.clone()).await.unwrap();
            store.append(&first, None).await.unwrap();
            receive_until_dead_lettered(&queue, &dead_letters).await;
        }
        let db = open(&path);
        let (queue, dead_letters) = queues(&db);
        let _store = DurableStore::open(db.clone(), queue.clone()).await.unwrap();
        assert!(queue.is_empty());
        let letters = dead_letters.receive(10, Duration::ZERO).await.unwrap();
        assert_eq!(queued_events(&letters), vec![first]);
    }

    /// The outbox must commit with the events: a queue kept in memory, or in another database,
    /// is refused rather than silently losing entries in a crash.
    #[tokio::test]
    async fn an_outbox_outside_the_store_database_is_refused() {
        let db = open(&fresh_path());
        let in_memory = Arc::new(EmbeddedQueue::new(CONFIG, None));
        assert!(DurableStore::open(db.clone(), in_memory).await.is_err());
        let other = open(&fresh_path());
        let (elsewhere, _) = queues(&other);
        assert!(DurableStore::open(db, elsewhere).await.is_err());
    }

    /// A file as an earlier version left it, schema and all: queue entries were copies of the
    /// events' bytes, and a projector checkpoint marked what had been published. The copies
    /// still deliver, the unpublished event is queued, nothing twice.
    #[tokio::test]
    async fn a_file_of_the_earlier_schema_is_upgraded_in_place() {
        let path = fresh_path();
        let merchant = merchant();
        let published = event(&merchant, None, 1);
        let unpublished = event(&merchant, None, 1);
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "CREATE TABLE events (position INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT NOT NULL, \
               version INTEGER NOT NULL, body TEXT NOT NULL, UNIQUE (session_id, version)); \
             CREATE TABLE messages (queue TEXT NOT NULL, seq INTEGER NOT NULL, id TEXT NOT NULL, \
               body TEXT NOT NULL, attributes TEXT NOT NULL, visible_at_ms INTEGER NOT NULL, \
               receive_count INTEGER NOT NULL, PRIMARY KEY (queue, seq)) WITHOUT ROWID; \
             CREATE TABLE cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;",
        )
        .unwrap();
        for (position, e) in [(1, &published), (2, &unpublished)] {
            raw.execute(
                "INSERT INTO events (position, session_id, version, body) VALUES (?1, ?2, 1, ?3)",
                rusqlite::params![position, e.session_id.as_str(), serde_json::to_string(e).unwrap()],
            )
            .unwrap();
        }
        raw.execute(
            "INSERT INTO messages VALUES ('queue', 0, 'copied', ?1, '[]', 0, 0)",
            [serde_json::to_string(&published).unwrap()],
        )
        .unwrap();
        raw.execute("INSERT INTO cursors VALUES ('projector', 1)", []).unwrap();
        drop(raw);
        for _ in 0..2 {
            let db = open(&path);
            let (queue, _) = queues(&db);
            let store = DurableStore::open(db.clone(), queue.clone()).await.unwrap();
            let received = queue.receive(10, Duration::ZERO).await.unwrap();
            assert_eq!(queued_events(&received), vec![published.clone(), unpublished.clone()]);
            assert_eq!(
                store.history(&unpublished.session_id).await.unwrap(),
                vec![unpublished.clone()]
            );
        }
    }

    /// A database written by a version with a projector: the events it had not yet published
    /// (after its checkpoint) are queued when the store opens, once.
    #[tokio::test]
    async fn events_an_earlier_version_had_not_published_are_queued_once_on_upgrade() {
        let path = fresh_path();
        let merchant = merchant();
        let first = event(&merchant, None, 1);
        let second = event(&merchant, None, 1);
        {
            let db = open(&path);
            let (queue, _) = queues(&db);
            let store = DurableStore::open(db, queue).await.unwrap();
            store.append(&first, None).await.unwrap();
            store.append(&second, None).await.unwrap();
        }
        // What the earlier version left: no entries of its own kind, a checkpoint after `first`.
        let raw = rusqlite::Connection::open(&path).unwrap();
        raw.execute_batch(
            "DELETE FROM messages; DELETE FROM cursors; \
             INSERT INTO cursors (name, position) SELECT 'projector', min(position) FROM events;",
        )
        .unwrap();
        drop(raw);
        for _ in 0..2 {
            let db = open(&path);
            let (queue, _) = queues(&db);
            let _store = DurableStore::open(db.clone(), queue.clone()).await.unwrap();
            assert_eq!(queue.len(), 1, "only the unpublished event, and only once");
            let received = queue.receive(10, Duration::ZERO).await.unwrap();
            assert_eq!(queued_events(&received), vec![second.clone()]);
        }
    }
}

mod batches {
    use super::*;
    use std::future::Future;
    use std::sync::mpsc;

    /// A write that ends the batch's transaction (as SQLite does by itself on some I/O and
    /// memory errors) takes the whole batch with it: the writes after it in the batch must not
    /// each commit alone, and none of the batch is on disk.
    #[tokio::test]
    async fn a_write_that_ends_the_transaction_fails_the_rest_of_its_batch() {
        let path = fresh_path();
        let db = open(&path);
        db.write(|conn| {
            conn.execute_batch("CREATE TABLE marks (name TEXT)")
                .map_err(checkout::ports::StoreError::unavailable)
        })
        .await
        .unwrap();
        // Hold the writer inside a batch so the next two writes are gathered into one batch.
        let (started, writer_busy) = mpsc::channel();
        let (release, released) = mpsc::channel::<()>();
        db.write_detached("gate", move |_| {
            started.send(()).unwrap();
            released.recv().unwrap();
            Ok(())
        });
        writer_busy.recv().unwrap();
        db.write_detached("rollback", |conn| {
            conn.execute_batch("ROLLBACK")
                .map_err(checkout::ports::StoreError::unavailable)
        });
        let mut written = std::pin::pin!(db.write(|conn| {
            conn.execute_batch("INSERT INTO marks VALUES ('after')")
                .map_err(checkout::ports::StoreError::unavailable)
        }));
        // Polled once, the write is handed to the writer (behind the rollback), then the
        // writer is let go: both are gathered into its next batch.
        std::future::poll_fn(|cx| {
            assert!(written.as_mut().poll(cx).is_pending());
            std::task::Poll::Ready(())
        })
        .await;
        release.send(()).unwrap();
        assert!(written.await.is_err(), "reported as not written");
        db.write(|_| Ok(())).await.unwrap();
        let raw = rusqlite::Connection::open(&path).unwrap();
        let marks: i64 = raw.query_row("SELECT count(*) FROM marks", [], |r| r.get(0)).unwrap();
        assert_eq!(marks, 0, "and not written");
    }
}

mod detached_writes {
    use super::*;

    fn marks(path: &Path) -> Vec<String> {
        let raw = rusqlite::Connection::open(path).unwrap();
        let mut statement = raw.prepare("SELECT name FROM marks ORDER BY rowid").unwrap();
        statement
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    }

    fn mark(name: &'static str) -> impl FnOnce(&rusqlite::Connection) -> Result<(), checkout::ports::StoreError> {
        move |conn| {
            conn.execute("INSERT INTO marks VALUES (?1)", [name])
                .map(|_| ())
                .map_err(checkout::ports::StoreError::unavailable)
        }
    }

    /// A database with an empty `marks` table whose detached writes wait an hour for company,
    /// so what the tests see cannot depend on how fast the machine is.
    async fn marks_database() -> (PathBuf, Database) {
        let path = fresh_path();
        let db = Database::open_with_linger(&path, Duration::from_secs(3600)).unwrap();
        db.write(|conn| {
            conn.execute_batch("CREATE TABLE marks (name TEXT)")
                .map_err(checkout::ports::StoreError::unavailable)
        })
        .await
        .unwrap();
        (path, db)
    }

    /// A write nobody waits for (a queue entry's delete) does not commit alone: it waits for
    /// the next write somebody waits for and shares its commit, in the order they were handed
    /// over; when the database closes first, it commits then. The wait is made an hour long
    /// here, so what is seen cannot depend on how fast the machine is.
    #[tokio::test]
    async fn a_detached_write_shares_the_next_commit_or_the_close() {
        let (path, db) = marks_database().await;
        db.write_detached("first", mark("detached"));
        assert!(marks(&path).is_empty(), "not committed alone");
        db.write(mark("waited")).await.unwrap();
        assert_eq!(
            marks(&path),
            vec!["detached", "waited"],
            "committed with the next write, in order"
        );

        db.write_detached("second", mark("at close"));
        drop(db);
        assert_eq!(marks(&path), vec!["detached", "waited", "at close"]);
    }

    /// Writes that need only survive a crash of the process commit without an fsync, and are
    /// readable (by another connection, as by a restart) once they return; one write that must
    /// survive a power failure syncs its whole batch. The counts say which commits synced.
    #[tokio::test]
    async fn only_writes_that_must_survive_a_power_failure_are_fsynced() {
        let (path, db) = marks_database().await;
        let before = db.commits();

        db.write_unsynced(mark("unsynced")).await.unwrap();
        assert_eq!(marks(&path), vec!["unsynced"], "readable once it returns");
        let after_unsynced = db.commits();
        assert_eq!(after_unsynced.synced, before.synced, "no fsync");
        assert_eq!(after_unsynced.unsynced, before.unsynced + 1);

        db.write_detached("lingering", mark("detached"));
        db.write(mark("synced")).await.unwrap();
        let after_synced = db.commits();
        assert_eq!(after_synced.synced, before.synced + 1, "one fsync for the batch");
        assert_eq!(after_synced.unsynced, before.unsynced + 1);

        db.write_detached("at close", mark("closing"));
        drop(db);
        assert_eq!(marks(&path), vec!["unsynced", "detached", "synced", "closing"]);
    }
}

mod claims {
    use super::*;
    use checkout::idempotency::Claim;
    use checkout::testkit::merchant;
    use std::future::Future;

    /// A caller that stops waiting while its claim is being checked against the stored replies
    /// (a client gone, a request timed out) must not leave the key claimed: the retry runs.
    /// The keys have expired replies, still stored: a claim reads them (a new key would not).
    /// The replies are large (2 MB), so reading one takes long enough to be caught unfinished
    /// even when the test's thread is preempted by the one reading.
    #[tokio::test]
    async fn a_claim_abandoned_while_its_reply_is_read_is_let_go_of() {
        use checkout::idempotency::{Completion, StoredReply};
        let (store, _) = store_at(&fresh_path()).await;
        let merchant = merchant();
        let now = checkout::clock::now();
        let mut abandoned = 0;
        for attempt in 0..10 {
            let key = key_of(&format!("abandoned-{attempt}"), &merchant);
            let Claim::Acquired(hold) = store.claim(&key, "fp", now).await.unwrap() else {
                panic!("fresh key");
            };
            let expired = Completion {
                key: key.clone(),
                hold,
                fingerprint: "fp".to_owned(),
                reply: StoredReply::Body {
                    status: 201,
                    body: format!("{{\"padding\": \"{}\"}}", "x".repeat(2 << 20)),
                },
                expires_at: now - chrono::Duration::hours(1),
            };
            store.complete(&expired).await.unwrap();
            let mut claim = Box::pin(store.claim(&key, "fp", now));
            let pending = std::future::poll_fn(|cx| std::task::Poll::Ready(claim.as_mut().poll(cx).is_pending())).await;
            drop(claim);
            if pending {
                abandoned += 1;
                assert!(
                    matches!(store.claim(&key, "fp", now).await.unwrap(), Claim::Acquired(_)),
                    "the retry is not told the abandoned call is still in flight"
                );
            }
        }
        assert!(abandoned > 0, "the read of the stored reply never had to be waited for");
    }
}

mod savepoints {
    use super::*;
    use checkout::ports::StoreError;

    /// A write that panics (a bug) ends the writer thread: that write and every later one fail
    /// with "the database writer has stopped" instead of waiting forever. The minute's timeout
    /// only stops the test from hanging.
    #[tokio::test]
    async fn writes_fail_instead_of_waiting_once_the_writer_has_died() {
        let db = open(&fresh_path());
        let died = db
            .write(|_| -> Result<(), StoreError> { panic!("a bug in a write") })
            .await;
        assert!(matches!(died, Err(StoreError::Unavailable(_))), "{died:?}");
        for _ in 0..2 {
            let later = tokio::time::timeout(Duration::from_secs(60), db.write(|_| Ok(()))).await;
            assert!(matches!(later, Ok(Err(StoreError::Unavailable(_)))), "{later:?}");
        }
    }

    /// A write that fails after SQLite rolled the transaction back (as on a full disk) reports
    /// its own error, not that its savepoint was gone.
    #[tokio::test]
    async fn a_failed_write_reports_its_own_error() {
        let db = open(&fresh_path());
        let err = db
            .write(|conn| -> Result<(), StoreError> {
                conn.execute_batch("ROLLBACK").map_err(StoreError::unavailable)?;
                Err(StoreError::Refused("the disk is full".into()))
            })
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Refused(why) if why == "the disk is full"),
            "{err}"
        );
        db.write(|_| Ok(())).await.expect("the next write goes on");
    }
}
