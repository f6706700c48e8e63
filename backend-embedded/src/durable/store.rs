//! Every storage port on one SQLite database, with the semantics of the DynamoDB adapters:
//! conditional appends, event + idempotency reply in one transaction, conditional attempt
//! records. The store is its own outbox: each event's entry on the order-updates queue is
//! written in the event's transaction (a reference to its row), so an event is queued exactly
//! when it is stored, with no projector between them and no second copy of its bytes.

use super::database::{Database, corrupt};
use super::directory::Directory;
use super::event_row;
use super::generations::Generations;
use super::stored_keys::StoredKeys;
use crate::queue::{EmbeddedQueue, Staged};
use crate::topic;
use async_trait::async_trait;
use checkout::attempt_log::{self, AttemptQuery, AttemptRecord};
use checkout::clock::Timestamp;
use checkout::event::Event;
use checkout::idempotency::{self, Claim, Completion, IdempotencyKey, IdempotencyRecord, RecordState};
use checkout::ids::{EndpointId, EventId, MerchantId, SessionId};
use checkout::merchant::Merchant;
use checkout::ports::{
    DeliveryLog, EndpointStore, EventStore, IdempotencyStore, KeyRegistry, MerchantStore, ReplayStore, StoreError,
};
use checkout::replay::ReplayJob;
use checkout::signing_key::PublishedKey;
use checkout::webhook_endpoint::WebhookEndpoint;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, params, params_from_iter};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The checkpoint of the projector of earlier versions (the events it had published).
const PROJECTOR: &str = "projector";
/// Present once every stored event has its queue entry: from then on each append writes its own.
const OUTBOX: &str = "outbox";

pub struct DurableStore {
    db: Arc<Database>,
    /// The queue every appended event is put on, in the event's own transaction.
    outbox: Arc<EmbeddedQueue>,
    /// Claims of requests in progress, by key. Only finished requests' replies are stored:
    /// the database belongs to this one process, and a claim that dies with the process was
    /// never finished (its event and reply commit together), so a retry after a restart may
    /// simply run again. This spares every API call one commit.
    claims: Arc<Claims>,
    /// The newest event of recently changed sessions, kept as each append commits (in commit
    /// order, on the writer thread), so a change to a session does not read its last event back
    /// from disk.
    recent: Arc<Recent>,
    /// Every merchant and endpoint, kept exactly as committed (see [`Directory`]).
    directory: Arc<Directory>,
    /// Which targets have begun each event appended lately (see [`DeliveryLog::started`]).
    fresh: Arc<Fresh>,
    /// Which idempotency keys may have a stored reply (see [`StoredKeys`]).
    stored_keys: Arc<StoredKeys>,
}

/// The newest event of recently changed sessions (see [`Generations`]). A session not found
/// here is read from disk: the cache only spares reads, it never answers stale (an event
/// enters it after its commit, and a newer one replaces it).
type Recent = parking_lot::Mutex<Generations<SessionId, Event>>;

/// Sessions per generation of the recent events.
const RECENT_SESSIONS: usize = 4_096;
/// The age at which a generation of recent events (or of fresh ones) is retired.
const RECENT_AGE: Duration = Duration::from_secs(60);

/// Events appended by this process, with the targets whose first attempt of each has been
/// recorded (or handed to the writer) since; see [`DeliveryLog::started`].
type Fresh = parking_lot::Mutex<Generations<EventId, Vec<String>>>;

/// Events per generation of the fresh ones: their messages are received within moments, so a
/// minute's worth at hundreds per second.
const FRESH_EVENTS: usize = 32_768;

/// After a write of first attempts failed: what the database holds of their events is read
/// from it from now on by [`DeliveryLog::started`].
fn forget_fresh(fresh: &Fresh, events: &[EventId]) {
    let mut fresh = fresh.lock();
    for event in events {
        fresh.remove(event);
    }
}

type Claims = parking_lot::Mutex<HashMap<String, IdempotencyRecord>>;

fn to_json(value: &impl Serialize) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(corrupt)
}

fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(corrupt)
}

fn sql(err: rusqlite::Error) -> StoreError {
    StoreError::unavailable(err)
}

impl DurableStore {
    /// The store on `db`, putting each event it appends on `outbox` in the event's own commit.
    /// A database of an earlier version (which published events through a projector) first
    /// gets the entries of the events that projector had not published. The outbox must keep
    /// its messages in `db`: an entry kept anywhere else could not commit with its event.
    pub async fn open(db: Arc<Database>, outbox: Arc<EmbeddedQueue>) -> Result<Self, StoreError> {
        if !outbox.is_kept_in(&db) {
            return Err(StoreError::Unavailable(
                "the outbox queue must be durable in the store's own database".into(),
            ));
        }
        queue_unpublished(&db, &outbox).await?;
        let directory = load_directory(&db).await?;
        let stored_keys = load_stored_keys(&db).await?;
        Ok(Self {
            db,
            outbox,
            claims: Arc::default(),
            recent: Arc::new(parking_lot::Mutex::new(Generations::new(RECENT_SESSIONS, RECENT_AGE))),
            directory: Arc::new(directory),
            fresh: Arc::new(parking_lot::Mutex::new(Generations::new(FRESH_EVENTS, RECENT_AGE))),
            stored_keys,
        })
    }

    /// Deletes up to `limit` expired idempotency replies and up to `limit` attempt records past
    /// the attempt log's retention (by event time, as replay windows are). Each call is one
    /// short write, so the purge never holds the writer for long: call it again while it
    /// reports a full batch.
    pub async fn purge_expired(&self, now: Timestamp, limit: usize) -> Result<Purged, StoreError> {
        let (now_s, limit) = (now.timestamp(), i64::try_from(limit).unwrap_or(i64::MAX));
        let attempts_before = attempt_log::time_bound(now - attempt_log::RETENTION);
        // The purge's tick also retires the idle store's recent and fresh events.
        self.recent.lock().rotate_if_due(Instant::now());
        self.fresh.lock().rotate_if_due(Instant::now());
        let stored_keys = self.stored_keys.clone();
        let (purged, attempts) = self
            .db
            .write_then(
                move |conn| {
                    let replies: Vec<String> = conn
                        .prepare_cached(
                            "DELETE FROM idempotency WHERE key IN \
                             (SELECT key FROM idempotency WHERE expires_at < ?1 ORDER BY expires_at LIMIT ?2) \
                             RETURNING key",
                        )
                        .and_then(|mut s| s.query_map(params![now_s, limit], |r| r.get(0))?.collect())
                        .map_err(sql)?;
                    let attempts = purge_attempts(conn, &attempts_before, limit).map_err(sql)?;
                    Ok((replies, attempts))
                },
                // Once they are gone from disk, not before: until then a claim must read them.
                move |(replies, _)| replies.iter().for_each(|key| stored_keys.remove(key)),
            )
            .await?;
        Ok(Purged {
            replies: purged.len(),
            attempts,
        })
    }

    async fn read_one<T: DeserializeOwned>(
        &self,
        query: &'static str,
        key: Vec<Value>,
    ) -> Result<Option<T>, StoreError> {
        let body: Option<String> = self
            .db
            .read(move |conn| {
                conn.prepare_cached(query)?
                    .query_row(params_from_iter(key), |row| row.get(0))
                    .optional()
            })
            .await?;
        body.map(|b| from_json(&b)).transpose()
    }

    async fn read_all<T: DeserializeOwned>(&self, query: &'static str, key: Vec<Value>) -> Result<Vec<T>, StoreError> {
        let bodies: Vec<String> = self
            .db
            .read(move |conn| {
                let mut statement = conn.prepare_cached(query)?;
                let rows = statement.query_map(params_from_iter(key), |row| row.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.iter().map(|b| from_json(b)).collect()
    }
}

/// Every merchant and endpoint row, read once when the store opens.
async fn load_directory(db: &Database) -> Result<Directory, StoreError> {
    type Rows = (Vec<(String, String, String)>, Vec<(String, String, String)>);
    let (merchants, endpoints): Rows = db
        .read(|conn| {
            let rows = |sql: &str| -> rusqlite::Result<Vec<(String, String, String)>> {
                conn.prepare(sql)?
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect()
            };
            Ok((
                rows("SELECT id, api_key_hash, body FROM merchants")?,
                rows("SELECT merchant_id, id, body FROM endpoints")?,
            ))
        })
        .await?;
    let directory = Directory::default();
    for (id, hash, body) in merchants {
        directory.load_merchant(id, hash, &body);
    }
    for (merchant, id, body) in endpoints {
        directory.load_endpoint(merchant, id, &body);
    }
    Ok(directory)
}

/// Every stored reply's key, counted once when the store opens.
async fn load_stored_keys(db: &Database) -> Result<Arc<StoredKeys>, StoreError> {
    let stored_keys = Arc::new(StoredKeys::default());
    let counting = stored_keys.clone();
    db.read(move |conn| {
        let mut statement = conn.prepare("SELECT key FROM idempotency")?;
        let mut rows = statement.query([])?;
        while let Some(row) = rows.next()? {
            counting.add(&row.get::<_, String>(0)?);
        }
        Ok(())
    })
    .await?;
    Ok(stored_keys)
}

/// A text parameter of a read.
fn text(value: &str) -> Value {
    Value::Text(value.to_owned())
}

/// Queues the events stored after the projector checkpoint of an earlier version, once: one
/// transaction writes their entries and marks the database as its own outbox. An event that
/// cannot be read is queued all the same, without attributes: the dispatcher sets it aside.
async fn queue_unpublished(db: &Database, outbox: &Arc<EmbeddedQueue>) -> Result<(), StoreError> {
    let (staging, admitting) = (outbox.clone(), outbox.clone());
    db.write_then(
        move |conn| {
            let migrated = conn
                .prepare_cached("SELECT 1 FROM cursors WHERE name = ?1")
                .and_then(|mut s| s.exists([OUTBOX]))
                .map_err(sql)?;
            if migrated {
                return Ok(Vec::new());
            }
            let unpublished: Vec<(i64, Value)> = conn
                .prepare(
                    "SELECT position, body FROM events WHERE position > \
                     COALESCE((SELECT position FROM cursors WHERE name = ?1), 0) ORDER BY position",
                )
                .and_then(|mut s| s.query_map([PROJECTOR], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
                .map_err(sql)?;
            let mut staged = Vec::with_capacity(unpublished.len());
            for (position, stored) in unpublished {
                let body = event_row::json(stored).unwrap_or_default();
                let attributes = from_json::<Event>(&body)
                    .map(|event| topic::attributes(&event))
                    .unwrap_or_default();
                staged.push((staging.stage_event(conn, position as u64, attributes)?, body));
            }
            conn.execute("DELETE FROM cursors WHERE name = ?1", [PROJECTOR])
                .and_then(|_| conn.execute("INSERT INTO cursors (name, position) VALUES (?1, 0)", [OUTBOX]))
                .map_err(sql)?;
            Ok(staged)
        },
        move |staged| {
            for (entry, body) in staged {
                entry.admit(&admitting, body.clone());
            }
        },
    )
    .await
    .map(|_| ())
}

fn put_idempotency_record(conn: &Connection, key: &str, record: &IdempotencyRecord) -> Result<(), StoreError> {
    let expires_at = record.expires_at.timestamp();
    let record = to_json(record)?;
    conn.prepare_cached("INSERT OR REPLACE INTO idempotency (key, record, expires_at) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![key, record, expires_at]))
        .map_err(sql)?;
    Ok(())
}

/// The claim `token` still holds `key` (it may have been taken over after its lease).
fn holds_claim(claims: &HashMap<String, IdempotencyRecord>, key: &str, token: &str) -> bool {
    matches!(
        claims.get(key),
        Some(IdempotencyRecord { state: RecordState::InFlight { token: held, .. }, .. }) if held == token
    )
}

/// Stores the reply of a claim still held by its token (on the writer thread, so no other
/// completion of that key can come between the check and the write).
fn finish_claim(conn: &Connection, claims: &Claims, done: &Completion) -> Result<(), StoreError> {
    let key = done.key.storage_key();
    if !holds_claim(&claims.lock(), &key, &done.hold.token) {
        return Err(StoreError::ClaimLost);
    }
    put_idempotency_record(conn, &key, &done.record())
}

/// A claim taken in memory and not yet handed to its caller: dropped, it lets go of the claim.
struct PendingClaim<'a> {
    claims: &'a Claims,
    claim: Option<(String, String)>,
}

impl PendingClaim<'_> {
    fn keep(mut self) {
        self.claim = None;
    }
}

impl Drop for PendingClaim<'_> {
    fn drop(&mut self) {
        if let Some(claim) = &self.claim {
            forget_claim(self.claims, claim);
        }
    }
}

/// After the reply is on disk, the claim is no longer needed: a new request with the key now
/// finds the reply.
fn forget_claim(claims: &Claims, (key, token): &(String, String)) {
    let mut claims = claims.lock();
    if holds_claim(&claims, key, token) {
        claims.remove(key);
    }
}

/// After its reply is committed: the key counts as stored before its claim is let go of, so
/// a request with the key sees one or the other.
fn settle_claim(claims: &Claims, stored_keys: &StoredKeys, claim: &(String, String)) {
    stored_keys.add(&claim.0);
    forget_claim(claims, claim);
}

/// What [`forget_claim`] needs of a completion (not its reply).
fn claim_of(done: &Completion) -> (String, String) {
    (done.key.storage_key(), done.hold.token.clone())
}

#[async_trait]
impl EventStore for DurableStore {
    async fn append(&self, event: &Event, completes: Option<&Completion>) -> Result<(), StoreError> {
        let queued = to_json(event)?;
        // Compressed here, on the caller's thread: the writer, which every commit waits for,
        // only copies the bytes.
        let body = event_row::encode(&queued)?;
        let attributes = topic::attributes(event);
        let (session, version) = (event.session_id.clone(), event.version);
        let finished = completes.map(claim_of);
        let completes = completes.cloned();
        let (claims, finishing, stored_keys) = (self.claims.clone(), self.claims.clone(), self.stored_keys.clone());
        let (outbox, admitting, recent) = (self.outbox.clone(), self.outbox.clone(), self.recent.clone());
        let committed = event.clone();
        // Before the event can commit, so every attempt of it finds it here.
        self.fresh.lock().insert(event.id.clone(), Vec::new(), Instant::now());
        self.db
            .write_then(
                move |conn| {
                    let latest: Option<i64> = conn
                        .prepare_cached("SELECT max(version) FROM events WHERE session_id = ?1")
                        .and_then(|mut s| s.query_row([session.as_str()], |row| row.get(0)))
                        .map_err(sql)?;
                    if version != latest.unwrap_or(0) as u64 + 1 {
                        return Err(StoreError::VersionConflict {
                            session_id: session,
                            version,
                        });
                    }
                    if let Some(done) = &completes {
                        finish_claim(conn, &claims, done)?;
                    }
                    conn.prepare_cached("INSERT INTO events (session_id, version, body) VALUES (?1, ?2, ?3)")
                        .and_then(|mut s| s.execute(params![session.as_str(), version as i64, body]))
                        .map_err(sql)?;
                    outbox.stage_event(conn, conn.last_insert_rowid() as u64, attributes)
                },
                // On the writer thread, after the commit: the queue's order is the commit order.
                move |entry: &Staged| {
                    if let Some(done) = &finished {
                        settle_claim(&finishing, &stored_keys, done);
                    }
                    recent
                        .lock()
                        .insert(committed.session_id.clone(), committed, Instant::now());
                    entry.admit(&admitting, queued);
                },
            )
            .await?;
        Ok(())
    }

    async fn latest(&self, session_id: &SessionId) -> Result<Option<Event>, StoreError> {
        if let Some(event) = self.recent.lock().get(session_id) {
            return Ok(Some(event.clone()));
        }
        let session = session_id.as_str().to_owned();
        let body: Option<Value> = self
            .db
            .read(move |conn| {
                conn.prepare_cached("SELECT body FROM events WHERE session_id = ?1 ORDER BY version DESC LIMIT 1")?
                    .query_row([session], |row| row.get(0))
                    .optional()
            })
            .await?;
        body.map(event_row::decode).transpose()
    }

    async fn history(&self, session_id: &SessionId) -> Result<Vec<Event>, StoreError> {
        let session = session_id.as_str().to_owned();
        let bodies: Vec<Value> = self
            .db
            .read(move |conn| {
                let mut statement =
                    conn.prepare_cached("SELECT body FROM events WHERE session_id = ?1 ORDER BY version")?;
                let rows = statement.query_map([session], |row| row.get(0))?;
                rows.collect()
            })
            .await?;
        bodies.into_iter().map(event_row::decode).collect()
    }

    async fn event_at(&self, session_id: &SessionId, version: u64) -> Result<Option<Event>, StoreError> {
        let session = session_id.as_str().to_owned();
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        let body: Option<Value> = self
            .db
            .read(move |conn| {
                conn.prepare_cached("SELECT body FROM events WHERE session_id = ?1 AND version = ?2")?
                    .query_row(params![session, version], |row| row.get(0))
                    .optional()
            })
            .await?;
        body.map(event_row::decode).transpose()
    }
}

#[async_trait]
impl IdempotencyStore for DurableStore {
    async fn claim(&self, key: &IdempotencyKey, fingerprint: &str, now: Timestamp) -> Result<Claim, StoreError> {
        let key = key.storage_key();
        // The claim is taken before the stored reply is read: a request finishing meanwhile
        // stores its reply before it lets go of its claim, so one of the two is always seen.
        let hold = {
            let mut claims = self.claims.lock();
            if let Some(verdict) = claims
                .get(&key)
                .and_then(|existing| idempotency::judge(existing, fingerprint, now))
            {
                return Ok(verdict);
            }
            let (hold, record) = idempotency::new_claim(fingerprint, None, now);
            claims.insert(key.clone(), record);
            hold
        };
        // Until the stored reply is read, the claim is let go of should the read fail or the
        // caller stop waiting: left behind, it would answer "in progress" until its lease ran out.
        let pending = PendingClaim {
            claims: &self.claims,
            claim: Some((key.clone(), hold.token.clone())),
        };
        if !self.stored_keys.may_hold(&key) {
            pending.keep();
            return Ok(Claim::Acquired(hold));
        }
        let stored: Option<IdempotencyRecord> = self
            .read_one("SELECT record FROM idempotency WHERE key = ?1", vec![text(&key)])
            .await?;
        match stored.and_then(|done| idempotency::judge(&done, fingerprint, now)) {
            Some(verdict) => Ok(verdict),
            None => {
                pending.keep();
                Ok(Claim::Acquired(hold))
            }
        }
    }

    async fn complete(&self, completion: &Completion) -> Result<(), StoreError> {
        let (done, finished) = (completion.clone(), claim_of(completion));
        let (claims, finishing, stored_keys) = (self.claims.clone(), self.claims.clone(), self.stored_keys.clone());
        self.db
            .write_then(
                move |conn| finish_claim(conn, &claims, &done),
                move |_| settle_claim(&finishing, &stored_keys, &finished),
            )
            .await
    }

    async fn release(&self, key: &IdempotencyKey, token: &str) -> Result<(), StoreError> {
        let key = key.storage_key();
        let mut claims = self.claims.lock();
        if holds_claim(&claims, &key, token) {
            claims.remove(&key);
        }
        Ok(())
    }
}

#[async_trait]
impl MerchantStore for DurableStore {
    async fn put_merchant(&self, merchant: &Merchant) -> Result<(), StoreError> {
        let mut next = merchant.clone();
        next.revision += 1;
        let (id, hash, body, revision) = (
            merchant.id.to_string(),
            merchant.api_key_hash.clone(),
            to_json(&next)?,
            merchant.revision,
        );
        let directory = self.directory.clone();
        self.db
            .write_then(
                move |conn| {
                    // The writer thread runs one write at a time: read, check and write are atomic.
                    let stored: Option<String> = conn
                        .prepare_cached("SELECT body FROM merchants WHERE id = ?1")
                        .and_then(|mut s| s.query_row(params![id], |r| r.get(0)).optional())
                        .map_err(sql)?;
                    let stored: Option<Merchant> = stored.map(|b| from_json(&b)).transpose()?;
                    if stored.map_or(0, |m| m.revision) != revision {
                        return Err(StoreError::Changed { what: "merchant", id });
                    }
                    conn.prepare_cached(
                        "INSERT INTO merchants (id, api_key_hash, body) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (id) DO UPDATE SET api_key_hash = excluded.api_key_hash, body = excluded.body",
                    )
                    .and_then(|mut s| s.execute(params![id, hash, body]))
                    .map_err(sql)?;
                    Ok(())
                },
                move |_| directory.put_merchant(next),
            )
            .await
    }

    async fn merchant(&self, id: &MerchantId) -> Result<Option<Merchant>, StoreError> {
        self.directory.merchant(id)
    }

    async fn merchant_by_api_key_hash(&self, api_key_hash: &str) -> Result<Option<Merchant>, StoreError> {
        self.directory.merchant_by_api_key_hash(api_key_hash)
    }
}

#[async_trait]
impl ReplayStore for DurableStore {
    async fn start_replay(&self, job: &ReplayJob, now: Timestamp) -> Result<(), StoreError> {
        let stored = ReplayJob {
            revision: 1,
            ..job.clone()
        };
        let fresh = job.revision == 0;
        self.write_replay(stored, move |current| {
            fresh && current.is_none_or(|c| c.replaceable(now))
        })
        .await
    }

    async fn put_replay(&self, job: &ReplayJob) -> Result<(), StoreError> {
        let stored = ReplayJob {
            revision: job.revision + 1,
            ..job.clone()
        };
        let (id, revision) = (job.id.clone(), job.revision);
        self.write_replay(stored, move |current| {
            current.is_some_and(|c| c.id == id && c.revision == revision)
        })
        .await
    }

    async fn replay(&self, merchant: &MerchantId, endpoint: &EndpointId) -> Result<Option<ReplayJob>, StoreError> {
        self.read_one(
            "SELECT body FROM replays WHERE merchant_id = ?1 AND endpoint_id = ?2",
            vec![text(merchant.as_str()), text(endpoint.as_str())],
        )
        .await
    }
}

impl DurableStore {
    /// Writes the endpoint's replay if `allowed` says so of the one stored, in one transaction.
    async fn write_replay(
        &self,
        job: ReplayJob,
        allowed: impl FnOnce(Option<&ReplayJob>) -> bool + Send + 'static,
    ) -> Result<(), StoreError> {
        let (merchant, endpoint, body) = (job.merchant_id.to_string(), job.endpoint_id.to_string(), to_json(&job)?);
        let id = job.id.to_string();
        self.db
            .write(move |conn| {
                let current: Option<String> = conn
                    .prepare_cached("SELECT body FROM replays WHERE merchant_id = ?1 AND endpoint_id = ?2")
                    .and_then(|mut s| s.query_row(params![merchant, endpoint], |r| r.get(0)).optional())
                    .map_err(sql)?;
                let current: Option<ReplayJob> = current.map(|b| from_json(&b)).transpose()?;
                if !allowed(current.as_ref()) {
                    return Err(StoreError::Changed { what: "replay", id });
                }
                conn.prepare_cached(
                    "INSERT OR REPLACE INTO replays (merchant_id, endpoint_id, body) VALUES (?1, ?2, ?3)",
                )
                .and_then(|mut s| s.execute(params![merchant, endpoint, body]))
                .map_err(sql)?;
                Ok(())
            })
            .await
    }
}

#[async_trait]
impl EndpointStore for DurableStore {
    async fn put_endpoint(&self, endpoint: &WebhookEndpoint) -> Result<(), StoreError> {
        let mut next = endpoint.clone();
        next.revision += 1;
        let (merchant, id, body, revision) = (
            endpoint.merchant_id.to_string(),
            endpoint.id.to_string(),
            to_json(&next)?,
            endpoint.revision,
        );
        let keys: Vec<(String, String)> = endpoint
            .signing_keys
            .iter()
            .map(|k| Ok((k.kid.clone(), to_json(&k.published())?)))
            .collect::<Result<_, StoreError>>()?;
        let directory = self.directory.clone();
        self.db
            .write_then(
                move |conn| {
                    let stored: Option<String> = conn
                        .prepare_cached("SELECT body FROM endpoints WHERE merchant_id = ?1 AND id = ?2")
                        .and_then(|mut s| s.query_row(params![merchant, id], |r| r.get(0)).optional())
                        .map_err(sql)?;
                    let stored: Option<WebhookEndpoint> = stored.map(|b| from_json(&b)).transpose()?;
                    if stored.map_or(0, |e| e.revision) != revision {
                        return Err(StoreError::Changed { what: "endpoint", id });
                    }
                    // An update keeps the row (and so its place in the merchant's list).
                    conn.prepare_cached(
                        "INSERT INTO endpoints (merchant_id, id, body) VALUES (?1, ?2, ?3) \
                     ON CONFLICT (merchant_id, id) DO UPDATE SET body = excluded.body",
                    )
                    .and_then(|mut s| s.execute(params![merchant, id, body]))
                    .map_err(sql)?;
                    publish_keys(conn, &id, &keys).map_err(sql)
                },
                move |_| directory.put_endpoint(next),
            )
            .await
    }

    async fn endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<Option<WebhookEndpoint>, StoreError> {
        self.directory.endpoint(merchant, id)
    }

    async fn endpoints(&self, merchant: &MerchantId) -> Result<Vec<WebhookEndpoint>, StoreError> {
        self.directory.endpoints(merchant)
    }

    async fn delete_endpoint(&self, merchant: &MerchantId, id: &EndpointId) -> Result<bool, StoreError> {
        let (merchant, id) = (merchant.to_string(), id.to_string());
        let (directory, deleting) = (self.directory.clone(), (merchant.clone(), id.clone()));
        self.db
            .write_then(
                move |conn| {
                    let deleted = conn
                        .prepare_cached("DELETE FROM endpoints WHERE merchant_id = ?1 AND id = ?2")
                        .and_then(|mut s| s.execute(params![merchant, id]))
                        .map_err(sql)?;
                    if deleted > 0 {
                        publish_keys(conn, &id, &[]).map_err(sql)?;
                    }
                    Ok(deleted > 0)
                },
                move |&deleted| {
                    if deleted {
                        directory.delete_endpoint(&deleting.0, &deleting.1);
                    }
                },
            )
            .await
    }
}

#[async_trait]
impl KeyRegistry for DurableStore {
    async fn published_keys(&self) -> Result<Vec<PublishedKey>, StoreError> {
        self.read_all("SELECT body FROM webhook_keys", vec![]).await
    }
}

/// The endpoint's rows of the key registry become exactly `keys` (kid, published key as JSON),
/// in the caller's transaction.
fn publish_keys(conn: &rusqlite::Connection, endpoint: &str, keys: &[(String, String)]) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM webhook_keys WHERE endpoint_id = ?1")?
        .execute(params![endpoint])?;
    let mut insert =
        conn.prepare_cached("INSERT OR REPLACE INTO webhook_keys (kid, endpoint_id, body) VALUES (?1, ?2, ?3)")?;
    for (kid, body) in keys {
        insert.execute(params![kid, endpoint, body])?;
    }
    Ok(())
}

#[async_trait]
impl DeliveryLog for DurableStore {
    /// Not fsynced (see [`Durability::ProcessCrash`]): a record a power failure undoes makes
    /// the event be sent again, with the same `webhook-id`. Readable as soon as this returns.
    ///
    /// [`Durability::ProcessCrash`]: super::Durability::ProcessCrash
    async fn record(&self, record: &AttemptRecord) -> Result<bool, StoreError> {
        let row = AttemptRow::of(record)?;
        let inserted = self
            .db
            .write_unsynced(move |conn| row.upsert(conn).map_err(sql))
            .await?;
        self.mark_begun(std::slice::from_ref(record));
        Ok(inserted)
    }

    /// Records of deliveries made are detached ([`Database::write_detached`]): they commit
    /// with the next write that is waited for (the next accepted event, at most
    /// [`DETACHED_LINGER`] later when none comes), so a delivery costs no commit of its own.
    /// Until then [`Self::started`] finds them in memory (a fresh event's) and every read of
    /// the log commits them first, so no read misses them. What this may lose: a crash before that
    /// commit loses the records and their messages' deletes (handed over after them, so
    /// committed with or after them); the messages come back and their events are sent again,
    /// with the same `webhook-id`. A failed write (a full disk) is logged; the event reached
    /// its endpoint, unrecorded.
    ///
    /// A batch holding any other record (held while paused, skipped while disabled, failed) is
    /// waited for: such a record may be all that later finds its event (a resume, a replay, the
    /// retry), so a write that fails must bring the message back.
    ///
    /// [`DETACHED_LINGER`]: super::database::DETACHED_LINGER
    async fn record_first_attempts(&self, records: &[AttemptRecord]) -> Result<(), StoreError> {
        let rows = records.iter().map(AttemptRow::of).collect::<Result<Vec<_>, _>>()?;
        let events: Vec<EventId> = records.iter().map(|r| r.event_id.clone()).collect();
        self.mark_begun(records);
        let write = move |conn: &Connection| {
            for row in &rows {
                row.upsert(conn).map_err(sql)?;
            }
            Ok(())
        };
        if records.iter().all(AttemptRecord::delivered) {
            let fresh = self.fresh.clone();
            self.db
                .write_detached_then("recording delivered first attempts", write, move |committed| {
                    if !committed {
                        forget_fresh(&fresh, &events);
                    }
                });
            return Ok(());
        }
        let written = self.db.write_unsynced(write).await;
        if written.is_err() {
            forget_fresh(&self.fresh, &events);
        }
        written
    }

    async fn started(&self, pairs: &[(&str, &EventId)]) -> Result<Vec<bool>, StoreError> {
        // Events appended lately are answered from memory: every first attempt of one was
        // recorded by this process, and marked as it was handed over.
        let mut answers: Vec<Option<bool>> = {
            let fresh = self.fresh.lock();
            pairs
                .iter()
                .map(|(target, event)| fresh.get(event).map(|begun| begun.iter().any(|t| t == target)))
                .collect()
        };
        let keys: Vec<(String, String)> = pairs
            .iter()
            .zip(&answers)
            .filter(|(_, answer)| answer.is_none())
            .map(|((target, event), _)| ((*target).to_owned(), attempt_log::sort_key(event, 1)))
            .collect();
        if keys.is_empty() {
            return Ok(answers.into_iter().map(|a| a.unwrap_or(false)).collect());
        }
        self.db.commit_detached().await?;
        let stored: Vec<bool> = self
            .db
            .read(move |conn| {
                let mut statement = conn.prepare_cached("SELECT 1 FROM deliveries WHERE target = ?1 AND sk = ?2")?;
                keys.iter()
                    .map(|(target, sk)| statement.exists(params![target, sk]))
                    .collect()
            })
            .await?;
        let mut read = stored.into_iter();
        for answer in answers.iter_mut().filter(|a| a.is_none()) {
            *answer = read.next();
        }
        Ok(answers.into_iter().map(|a| a.unwrap_or(false)).collect())
    }

    async fn latest(&self, target: &str, event: &EventId) -> Result<Option<AttemptRecord>, StoreError> {
        self.db.commit_detached().await?;
        let (low, high) = event_range(event);
        self.read_one(
            "SELECT body FROM deliveries WHERE target = ?1 AND sk >= ?2 AND sk < ?3 ORDER BY sk DESC LIMIT 1",
            vec![text(target), Value::Text(low), Value::Text(high)],
        )
        .await
    }

    async fn attempts_of(&self, target: &str, event: &EventId) -> Result<Vec<AttemptRecord>, StoreError> {
        self.db.commit_detached().await?;
        let (low, high) = event_range(event);
        self.read_all(
            "SELECT body FROM deliveries WHERE target = ?1 AND sk >= ?2 AND sk < ?3 ORDER BY sk",
            vec![text(target), Value::Text(low), Value::Text(high)],
        )
        .await
    }

    async fn attempts(&self, target: &str, query: &AttemptQuery) -> Result<Vec<AttemptRecord>, StoreError> {
        self.db.commit_detached().await?;
        // One lower bound, the tighter of `from` (inclusive) and `after` (exclusive), so the
        // index range starts there; an absent upper bound as one no key passes (every sort key
        // starts with `evt_`).
        let (low, exclusive) = match (&query.from, &query.after) {
            (Some(from), Some(after)) if from > after => (from.clone(), false),
            (_, Some(after)) => (after.clone(), true),
            (Some(from), None) => (from.clone(), false),
            (None, None) => (String::new(), false),
        };
        let before = query.before.clone().unwrap_or_else(|| "~".to_owned());
        let limit = i64::try_from(query.limit).unwrap_or(i64::MAX);
        let sql = match (exclusive, query.oldest_first) {
            (false, false) => {
                "SELECT body FROM deliveries WHERE target = ?1 AND sk >= ?2 AND sk < ?3 ORDER BY sk DESC LIMIT ?4"
            }
            (true, false) => {
                "SELECT body FROM deliveries WHERE target = ?1 AND sk > ?2 AND sk < ?3 ORDER BY sk DESC LIMIT ?4"
            }
            (false, true) => {
                "SELECT body FROM deliveries WHERE target = ?1 AND sk >= ?2 AND sk < ?3 ORDER BY sk LIMIT ?4"
            }
            (true, true) => {
                "SELECT body FROM deliveries WHERE target = ?1 AND sk > ?2 AND sk < ?3 ORDER BY sk LIMIT ?4"
            }
        };
        let params = vec![
            text(target),
            Value::Text(low),
            Value::Text(before),
            Value::Integer(limit),
        ];
        self.read_all(sql, params).await
    }
}

impl DurableStore {
    /// Marks the targets whose first attempt of a fresh event `records` hold.
    fn mark_begun(&self, records: &[AttemptRecord]) {
        let mut fresh = self.fresh.lock();
        // Attempt 1 of any series: its row is the one `started` looks for.
        for record in records.iter().filter(|r| r.attempt == 1) {
            if let Some(targets) = fresh.get_mut(&record.event_id)
                && !targets.contains(&record.target)
            {
                targets.push(record.target.clone());
            }
        }
    }
}

/// An attempt record as its row.
struct AttemptRow {
    target: String,
    sk: String,
    body: String,
    delivered: bool,
}

impl AttemptRow {
    fn of(record: &AttemptRecord) -> Result<Self, StoreError> {
        Ok(Self {
            target: record.target.clone(),
            sk: record.sort_key(),
            body: to_json(record)?,
            delivered: record.delivered(),
        })
    }

    /// Inserts the row unless that attempt is recorded; `false` when nothing changed.
    fn upsert(&self, conn: &Connection) -> rusqlite::Result<bool> {
        // A delivered attempt replaces a failed record of the same attempt (see the port).
        conn.prepare_cached(
            "INSERT INTO deliveries (target, sk, body) VALUES (?1, ?2, ?3) \
             ON CONFLICT (target, sk) DO UPDATE SET body = excluded.body \
             WHERE ?4 AND json_extract(deliveries.body, '$.status') <> 'succeeded'",
        )
        .and_then(|mut s| s.execute(params![self.target, self.sk, self.body, self.delivered]))
        .map(|inserted| inserted > 0)
    }
}

/// How much one [`DurableStore::purge_expired`] call deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Purged {
    pub replies: usize,
    pub attempts: usize,
}

/// Deletes up to `limit` attempt records whose sort key (event time first) is below `before`,
/// target by target: the table is keyed by (target, sk), so each target's old records are one
/// key range, and the next target is found by one index seek.
fn purge_attempts(conn: &Connection, before: &str, limit: i64) -> rusqlite::Result<usize> {
    let mut next_target = conn.prepare_cached("SELECT min(target) FROM deliveries WHERE target > ?1")?;
    let mut delete = conn.prepare_cached(
        "DELETE FROM deliveries WHERE target = ?1 AND sk IN \
         (SELECT sk FROM deliveries WHERE target = ?1 AND sk < ?2 LIMIT ?3)",
    )?;
    let (mut deleted, mut target) = (0usize, String::new());
    while (deleted as i64) < limit {
        match next_target.query_row([&target], |row| row.get::<_, Option<String>>(0))? {
            Some(next) => target = next,
            None => break,
        }
        deleted += delete.execute(params![target, before, limit - deleted as i64])?;
    }
    Ok(deleted)
}

/// The sort keys of one event's attempts: `[event#, event$)` (`$` follows `#`).
fn event_range(event: &EventId) -> (String, String) {
    let prefix = attempt_log::event_prefix(event);
    let high = format!("{}$", prefix.trim_end_matches('#'));
    (prefix, high)
}
