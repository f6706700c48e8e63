//! One SQLite database with group commit. Every write runs on a single writer thread: the
//! writes that arrive while a commit is under way are run together in the next transaction and
//! share its fsync, and each caller hears back only once its write is on disk. Reads run on a
//! small pool of connections and see committed data only (WAL mode). A thread of its own
//! checkpoints the write-ahead log into the database file, so the writer never waits for that.
//!
//! A write says what it must survive ([`Durability`]): a commit holding only writes that a
//! power failure may undo (settling deliveries) is not fsynced; the next synced commit or
//! checkpoint syncs it with everything before it.

use super::write_queue::WriteQueue;
use checkout::ports::StoreError;
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags};
use std::fs::{File, TryLockError};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tracing::{debug, error, warn};

/// Most writes in one transaction; bounds the wait of the first one in a burst.
const MAX_BATCH: usize = 1024;
const READERS: usize = 4;
/// Least time between two checkpoints: each copies what the write-ahead log gathered since the
/// last one into the database file and syncs it, so fewer, larger ones cost less.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);
/// The write-ahead log file is cut back to this size when it starts over.
const WAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;
/// Pages in the write-ahead log past which the writer starts it over. Under steady load the
/// writer adds pages while every checkpoint runs, so the log is never found fully copied at the
/// start of a write, the one moment SQLite can start it over by itself: it grew by a gigabyte in
/// 25 s. Starting over takes the writer a checkpoint of what the last passive one left (≤ 100 ms
/// of commits) and waits for readers to leave the log: a few milliseconds, every 16 MB.
const RESTART_AFTER_PAGES: i64 = 4096;
/// How long the writer waits for readers to leave the log when it starts it over (their queries
/// take microseconds); a reader that stays longer (a backup, a shell) only postpones it.
const RESTART_WAIT: Duration = Duration::from_millis(20);
/// After a start-over found a reader in the log: when to try again, unless the log has grown
/// by another [`RESTART_AFTER_PAGES`] before (so its growth stays bounded by pages, not by how
/// fast the writes come in the meantime).
const RESTART_RETRY: Duration = Duration::from_secs(1);
/// How long writes that nobody waits for (see [`Database::write_detached`]) wait for a write
/// that somebody does, to share its commit: at low rates, settling each delivery (its attempt
/// record, its queue entry's delete) would otherwise cost a commit of its own.
pub(crate) const DETACHED_LINGER: Duration = Duration::from_millis(100);
/// How long a connection waits for a lock another one holds.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs inside the batch's transaction; the returned callback runs after the commit (with
/// whether it succeeded), on the writer thread, in commit order.
/// Given no connection, the job fails without running (its batch could not begin, or an
/// earlier write of the batch ended the transaction).
type RunJob = Box<dyn FnOnce(Option<&Connection>) -> AfterCommit + Send>;

struct Job {
    run: RunJob,
    durability: Durability,
}

/// What a write must survive once its caller hears back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Durability {
    /// A power failure or a crash of the machine: its commit is fsynced.
    PowerLoss,
    /// A crash of the process (`kill -9`, a panic): its commit is written to the log but not
    /// fsynced, so it is in the operating system's hands. A power failure may undo it, and
    /// every later commit not synced yet with it (the log is replayed up to its first missing
    /// frame, so what survives is always a prefix of the commits); the next synced commit or
    /// checkpoint makes it durable. For writes whose loss only repeats work that is safe to
    /// repeat: an attempt record lost makes the event be sent again with the same `webhook-id`.
    ProcessCrash,
}

/// Commits made so far, by whether they were fsynced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Commits {
    pub synced: u64,
    pub unsynced: u64,
}
type AfterCommit = Box<dyn FnOnce(bool) + Send>;

/// When a write waited for is committed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Wake {
    /// At once: it wakes the writer.
    Now,
    /// With the next write that wakes the writer, as a detached write is.
    WithNext,
}

/// Events are never deleted, so a plain rowid (the largest + 1) never reuses a position:
/// without AUTOINCREMENT, an append does not also rewrite the `sqlite_sequence` page. (Databases
/// created by earlier versions keep it.)
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    position INTEGER PRIMARY KEY,
    session_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (session_id, version)
);
CREATE TABLE IF NOT EXISTS idempotency (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    expires_at INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS merchants (
    id TEXT PRIMARY KEY,
    api_key_hash TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS endpoints (
    merchant_id TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (merchant_id, id)
);
CREATE TABLE IF NOT EXISTS deliveries (
    target TEXT NOT NULL,
    sk TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (target, sk)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    queue TEXT NOT NULL,
    seq INTEGER NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    attributes TEXT NOT NULL,
    visible_at_ms INTEGER NOT NULL,
    receive_count INTEGER NOT NULL,
    event_position INTEGER,
    PRIMARY KEY (queue, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS replays (
    merchant_id TEXT NOT NULL,
    endpoint_id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (merchant_id, endpoint_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS webhook_keys (
    kid TEXT PRIMARY KEY,
    endpoint_id TEXT NOT NULL,
    body TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS webhook_keys_by_endpoint ON webhook_keys (endpoint_id);
CREATE TABLE IF NOT EXISTS cursors (name TEXT PRIMARY KEY, position INTEGER NOT NULL) WITHOUT ROWID;
";

pub struct Database {
    /// Hands writes to the writer thread, which holds the file's lock (one process per database:
    /// its queues live in memory) until it has committed every write handed to it.
    writer: Arc<WriteQueue<Job>>,
    writer_thread: Option<std::thread::JoinHandle<()>>,
    readers: Arc<Readers>,
    commits: Arc<CommitCounter>,
    /// Detached writes handed over and not committed (or failed) yet.
    detached: Arc<AtomicUsize>,
}

#[derive(Default)]
struct CommitCounter {
    synced: AtomicU64,
    unsynced: AtomicU64,
}

/// The read connections, shared with the blocking threads that run reads.
struct Readers {
    connections: Vec<Mutex<Connection>>,
    next: AtomicUsize,
}

impl Readers {
    fn read<R>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let conn = (0..READERS)
            .find_map(|i| self.connections[(start + i) % READERS].try_lock())
            .unwrap_or_else(|| self.connections[start % READERS].lock());
        read(&conn).map_err(StoreError::unavailable)
    }
}

pub(crate) fn corrupt(err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(err.to_string())
}

fn connect(path: &Path, flags: OpenFlags) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, flags)?;
    // Room for every statement the store runs, so none is parsed twice.
    conn.set_prepared_statement_cache_capacity(64);
    // WAL: readers never block the writer; synchronous=FULL: commits are fsynced (the writer
    // lowers it for batches that need not be, see `Durability`). The page
    // cache keeps SQLite's default size (2 MB): with 64 MB, truncating the cache showed in
    // profiles of the writer (`pcache1TruncateUnsafe`, ~4 % of all samples) and a commit probe
    // ran ~8 % slower.
    conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;")?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    Ok(conn)
}

/// The writer's connection: it never checkpoints itself (a checkpoint on the writer stops
/// every commit while it copies and syncs the database file); [`checkpoint_loop`] does it
/// beside it, and the writer only starts a long log over ([`restart_long_log`]).
///
/// `log_pages` follows the log's length after each commit (SQLite's WAL hook), so the writer
/// learns it without a statement: every `PRAGMA` is prepared anew each time it runs, and
/// asking with one after each commit showed as SQLite's parser in the writer's profile.
fn connect_writer(path: &Path, log_pages: Arc<AtomicI64>) -> rusqlite::Result<Connection> {
    // Set before the hook: `wal_autocheckpoint` replaces the connection's WAL hook.
    let mut conn = connect(path, OpenFlags::default())?;
    conn.execute_batch(&format!(
        "PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = {WAL_SIZE_LIMIT};"
    ))?;
    conn.wal_hook(Some(move |_: &mut rusqlite::hooks::Wal, pages| {
        log_pages.store(i64::from(pages), Ordering::Relaxed);
        Ok(())
    }))?;
    Ok(conn)
}

/// What the file holds, in its `user_version`: 1 since queue messages may be stored compressed
/// (earlier versions, which leave it 0, read such a message as empty and bury it as unreadable).
/// A version never opens a file a later one has written: it would misread what it does not know.
const FILE_VERSION: i64 = 1;

/// Read on a plain connection, before the writer's sets the file's journal mode: a file refused
/// is left exactly as it was.
fn refuse_a_newer_file(path: &Path) -> Result<(), StoreError> {
    let conn = Connection::open(path).map_err(StoreError::unavailable)?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(StoreError::unavailable)?;
    drop(conn);
    if version > FILE_VERSION {
        let message = format!(
            "{} was written by a later version of ACP Checkout Manager (file version {version}; this one \
             reads up to {FILE_VERSION}): run that version, or start on an empty --data-dir",
            path.display()
        );
        return Err(StoreError::Unavailable(message.into()));
    }
    Ok(())
}

/// Brings a database written by an earlier version up to [`SCHEMA`].
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    let idempotency_expires = conn
        .prepare("SELECT 1 FROM pragma_table_info('idempotency') WHERE name = 'expires_at'")?
        .exists([])?;
    if !idempotency_expires {
        // Replies stored before the purge existed: their expiry is read from the record (an
        // unreadable one expires at once).
        conn.execute_batch(
            "ALTER TABLE idempotency ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
             UPDATE idempotency SET expires_at = COALESCE(unixepoch(json_extract(record, '$.expires_at')), 0)
             WHERE json_valid(record);",
        )?;
    }
    let message_references = conn
        .prepare("SELECT 1 FROM pragma_table_info('messages') WHERE name = 'event_position'")?
        .exists([])?;
    if !message_references {
        // Queues of earlier versions held copies of the events' bytes: they keep them.
        conn.execute_batch("ALTER TABLE messages ADD COLUMN event_position INTEGER;")?;
    }
    // The purge finds expired replies by this index, a bounded number per pass. The read model
    // of earlier versions (never read: `GET` reads the latest event) is dropped.
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS idempotency_by_expiry ON idempotency (expires_at);
         DROP TABLE IF EXISTS views;",
    )
}

impl Database {
    /// Opens (or creates) the database file at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_with_linger(path, DETACHED_LINGER)
    }

    /// [`Database::open`], with detached writes waiting up to `linger` for company (tests make
    /// the wait long, so what it does is seen without timing anything).
    pub fn open_with_linger(path: &Path, linger: Duration) -> Result<Self, StoreError> {
        let lock = File::create(path.with_extension("lock")).map_err(StoreError::unavailable)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let message = format!("{} is in use by another process", path.display());
                return Err(StoreError::Unavailable(message.into()));
            }
            Err(TryLockError::Error(err)) => return Err(StoreError::unavailable(err)),
        }
        let log_pages = Arc::new(AtomicI64::new(0));
        refuse_a_newer_file(path)?;
        let writer = connect_writer(path, log_pages.clone()).map_err(StoreError::unavailable)?;
        writer.execute_batch(SCHEMA).map_err(StoreError::unavailable)?;
        migrate(&writer).map_err(StoreError::unavailable)?;
        writer
            .execute_batch(&format!("PRAGMA user_version = {FILE_VERSION};"))
            .map_err(StoreError::unavailable)?;
        let checkpointer = connect(path, OpenFlags::default()).map_err(StoreError::unavailable)?;
        let (checkpoint, commits) = mpsc::sync_channel::<()>(1);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".to_owned())
            .spawn(move || checkpoint_loop(checkpointer, commits))
            .map_err(StoreError::unavailable)?;
        let connections = (0..READERS)
            .map(|_| {
                // No memory map (SQLite's default): the database file grows with every
                // checkpoint, and a mapped reader remaps it at the next read transaction after
                // each growth — an munmap whose TLB shoot-down interrupts every core. Profiled
                // at 500 events/s, that was 8.6 % of the async workers' samples; reading pages
                // with pread instead took 13 % less CPU per event (medians of three runs).
                let reader = connect(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
                Ok(Mutex::new(reader))
            })
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(StoreError::unavailable)?;
        let queue = Arc::new(WriteQueue::new());
        let jobs = queue.clone();
        let commits = Arc::new(CommitCounter::default());
        let counting = commits.clone();
        let writer_thread = std::thread::Builder::new()
            .name("sqlite-writer".to_owned())
            .spawn(move || {
                let _closing = FailWhatIsLeft(jobs.clone());
                write_loop(writer, &jobs, checkpoint, linger, &counting, &log_pages);
                drop(lock);
            })
            .map_err(StoreError::unavailable)?;
        Ok(Self {
            writer: queue,
            writer_thread: Some(writer_thread),
            readers: Arc::new(Readers {
                connections,
                next: AtomicUsize::new(0),
            }),
            commits,
            detached: Arc::default(),
        })
    }

    /// Runs `op` in a transaction of its own (a savepoint inside the batch's), returns its
    /// result once the batch is committed. An `op` error rolls back only that op.
    pub async fn write<R, F>(&self, op: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.write_then(op, |_| {}).await
    }

    /// [`Database::write`] for a write that need only survive a crash of the process (see
    /// [`Durability::ProcessCrash`]): readable once it returns, fsynced with the next commit
    /// that is.
    pub async fn write_unsynced<R, F>(&self, op: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(Durability::ProcessCrash, op, |_| {}, Wake::Now).await
    }

    /// [`Database::write_unsynced`] that does not wake the writer: it joins the next commit
    /// (the next write that is waited for, or [`DETACHED_LINGER`] after it was handed over at
    /// most), and returns once that is made. For a caller that can wait a moment: a message
    /// sent on from the one being handled (a deferral), which cost a commit of its own for each
    /// event to a stuck endpoint.
    pub async fn write_unsynced_with_next<R, F>(&self, op: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.submit(Durability::ProcessCrash, op, |_| {}, Wake::WithNext).await
    }

    /// [`Database::write`], and `after` with the result once it is committed, on the writer
    /// thread: so `after`s run in commit order.
    pub async fn write_then<R, F, A>(&self, op: F, after: A) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        A: FnOnce(&R) + Send + 'static,
    {
        self.submit(Durability::PowerLoss, op, after, Wake::Now).await
    }

    /// Commits made so far, synced and not.
    pub fn commits(&self) -> Commits {
        Commits {
            synced: self.commits.synced.load(Ordering::Relaxed),
            unsynced: self.commits.unsynced.load(Ordering::Relaxed),
        }
    }

    async fn submit<R, F, A>(&self, durability: Durability, op: F, after: A, wake: Wake) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
        A: FnOnce(&R) + Send + 'static,
    {
        let (reply, replied) = oneshot::channel();
        let job = Job::waited(durability, move |conn| {
            let result = in_batch(conn, op);
            Box::new(move |committed| {
                let result = match result {
                    Ok(value) if committed => {
                        after(&value);
                        Ok(value)
                    }
                    Ok(_) => Err(StoreError::Unavailable("the commit failed".into())),
                    Err(err) => Err(err),
                };
                let _ = reply.send(result);
            })
        });
        self.writer
            .push(job, wake == Wake::Now)
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?;
        replied
            .await
            .map_err(|_| StoreError::Unavailable("the database writer has stopped".into()))?
    }

    /// [`Database::write`] without waiting for the commit, for a write whose loss in a crash
    /// only repeats work that is safe to repeat (deleting a queue entry whose delivery is
    /// recorded: after a crash it is received again and found done). It still commits in
    /// order with every write handed over before it, no later than the next write that is
    /// waited for, and before the database is dropped; a failure is logged as `what`. It does
    /// not wake the writer (see [`WriteQueue`]): with no waited write coming, it commits about
    /// [`DETACHED_LINGER`] after it was handed over, at most. [`Database::commit_detached`]
    /// commits it at once.
    pub fn write_detached<F>(&self, what: &'static str, op: F)
    where
        F: FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
    {
        self.write_detached_then(what, op, |_| {});
    }

    /// [`Database::write_detached`], and `after` with whether it committed, on the writer
    /// thread after its batch's commit (or failure).
    pub fn write_detached_then<F, A>(&self, what: &'static str, op: F, after: A)
    where
        F: FnOnce(&Connection) -> Result<(), StoreError> + Send + 'static,
        A: FnOnce(bool) + Send + 'static,
    {
        let detached = self.detached.clone();
        detached.fetch_add(1, Ordering::AcqRel);
        let job = Job::detached(move |conn| {
            let result = in_batch(conn, op);
            Box::new(move |committed| {
                match &result {
                    Ok(()) if committed => {}
                    Ok(()) => error!(what, "the commit failed"),
                    Err(err) => error!(what, error = %err, "a write failed"),
                }
                detached.fetch_sub(1, Ordering::AcqRel);
                after(committed && result.is_ok());
            })
        });
        // Not waited for: it does not wake the writer.
        if self.writer.push(job, false).is_err() {
            self.detached.fetch_sub(1, Ordering::AcqRel);
            error!(what, "the database writer has stopped");
        }
    }

    /// Commits the detached writes handed over so far, if any, and returns once they are: a
    /// read made after it sees them.
    pub async fn commit_detached(&self) -> Result<(), StoreError> {
        if self.detached.load(Ordering::Acquire) == 0 {
            return Ok(());
        }
        self.write_unsynced(|_| Ok(())).await
    }

    /// Runs `read` on one of the read connections (committed data only), on a blocking thread:
    /// a read can wait for the disk, and must not hold up the tasks of an async worker.
    pub async fn read<R, F>(&self, read: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> rusqlite::Result<R> + Send + 'static,
    {
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || readers.read(read))
            .await
            .map_err(|err| StoreError::Unavailable(format!("a read stopped: {err}").into()))?
    }

    /// [`Database::read`] on the calling thread: for startup, before anything else runs.
    pub fn read_blocking<R>(&self, read: impl FnOnce(&Connection) -> rusqlite::Result<R>) -> Result<R, StoreError> {
        self.readers.read(read)
    }
}

impl Drop for Database {
    /// Hands the writer no more work and waits until it has committed what it holds (detached
    /// writes too) and let go of the file's lock, so the file can be opened again at once. Not
    /// on the writer thread itself (an after-commit callback holding the last handle): the
    /// writer then finishes, and only then lets go of the lock, without being waited for.
    fn drop(&mut self) {
        self.writer.close();
        if let Some(thread) = self.writer_thread.take()
            && thread.thread().id() != std::thread::current().id()
            && thread.join().is_err()
        {
            error!("the database writer panicked");
        }
    }
}

impl Job {
    fn waited(durability: Durability, run: impl FnOnce(Option<&Connection>) -> AfterCommit + Send + 'static) -> Self {
        Self {
            run: Box::new(run),
            durability,
        }
    }

    /// A detached write's loss only repeats safe work: it need not survive a power failure.
    fn detached(run: impl FnOnce(Option<&Connection>) -> AfterCommit + Send + 'static) -> Self {
        Self {
            run: Box::new(run),
            durability: Durability::ProcessCrash,
        }
    }
}

/// Runs `op` in the batch's transaction, or fails it when there is none (the batch could not
/// begin, or an earlier write of it ended the transaction).
fn in_batch<R>(
    conn: Option<&Connection>,
    op: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    match conn {
        Some(conn) => in_savepoint(conn, op),
        None => Err(StoreError::Unavailable(
            "the batch's transaction could not begin or had ended".into(),
        )),
    }
}

/// Runs `op` in a savepoint: an error undoes only `op`. Should the savepoint itself fail to
/// roll back or release, the whole transaction is rolled back, so nothing of `op` can commit
/// with the batch (the writer sees the transaction gone and fails the batch).
fn in_savepoint<R>(conn: &Connection, op: impl FnOnce(&Connection) -> Result<R, StoreError>) -> Result<R, StoreError> {
    let run = |sql: &str| conn.prepare_cached(sql).and_then(|mut s| s.execute([]));
    run("SAVEPOINT op").map_err(StoreError::unavailable)?;
    let result = op(conn);
    let ended = match &result {
        Ok(_) => run("RELEASE op"),
        Err(_) => run("ROLLBACK TO op").and_then(|_| run("RELEASE op")),
    };
    if let Err(err) = ended {
        if !conn.is_autocommit() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        // An op that failed says why (a full disk, say), not that its savepoint was gone with
        // the transaction SQLite rolled back.
        return match result {
            Err(failed) => {
                error!(error = %err, "the failed write's savepoint could not be undone; the batch is rolled back");
                Err(failed)
            }
            Ok(_) => Err(StoreError::unavailable(err)),
        };
    }
    result
}

/// Checkpoints the write-ahead log after commits, at most every [`CHECKPOINT_EVERY`]. Passive:
/// it copies what no reader still needs and never waits for the writer or a reader, so neither
/// waits for it. Ends when the writer does.
fn checkpoint_loop(conn: Connection, commits: mpsc::Receiver<()>) {
    while commits.recv().is_ok() {
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(0)) {
            Ok(0) => {}
            // Another checkpoint ran (the writer starting the log over): the next one goes on.
            Ok(_) => debug!("checkpoint skipped: another one is running"),
            Err(err) => error!(error = %err, "checkpoint failed; the next commit tries again"),
        }
        std::thread::sleep(CHECKPOINT_EVERY);
    }
}

/// A start-over that a reader (or the checkpointer's own pass) kept from happening: the next
/// try is after [`RESTART_RETRY`], or once the log holds `pages`, whichever comes first.
#[derive(Clone, Copy)]
struct Postponed {
    until: Instant,
    pages: i64,
}

/// Starts the write-ahead log over once it holds [`RESTART_AFTER_PAGES`] (see there); from
/// the writer, between two commits, so no commit adds to the log meanwhile. `pages` is the
/// log's length after the last commit. Returns the postponement if it could not.
fn restart_long_log(conn: &Connection, pages: i64, postponed: Option<Postponed>) -> Option<Postponed> {
    let postponed = postponed.filter(|p| Instant::now() < p.until);
    let due_after = postponed.map_or(RESTART_AFTER_PAGES, |p| p.pages);
    if pages <= due_after {
        return postponed;
    }
    // (busy, pages in the log, pages copied): rare, so a `PRAGMA` prepared anew is no cost.
    let checkpoint = |sql: &str| -> rusqlite::Result<(i64, i64)> {
        conn.prepare_cached(sql)?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))
    };
    let restarted = conn
        .busy_timeout(RESTART_WAIT)
        .and_then(|()| checkpoint("PRAGMA wal_checkpoint(RESTART)"));
    if let Err(err) = conn.busy_timeout(BUSY_TIMEOUT) {
        error!(error = %err, "could not set the writer's busy timeout back");
    }
    let retry = Postponed {
        until: Instant::now() + RESTART_RETRY,
        pages: pages + RESTART_AFTER_PAGES,
    };
    match restarted {
        Ok((0, _)) => None,
        // The checkpointer's own pass holds the checkpoint lock (SQLite takes it without
        // waiting): it ends within its pass, so the next commit tries again, not a second later.
        Ok((_, -1)) => postponed,
        Ok(_) => {
            warn!(
                pages,
                "the write-ahead log could not start over: a reader is still in it; trying again later"
            );
            Some(retry)
        }
        Err(err) => {
            error!(error = %err, pages, "could not start the write-ahead log over; trying again later");
            Some(retry)
        }
    }
}

/// Closes the writer's queue when the writer ends, however it ends (a panic unwinds through
/// it too), and fails the writes still queued: none waits forever, and every later write is
/// told the writer has stopped.
struct FailWhatIsLeft(Arc<WriteQueue<Job>>);

impl Drop for FailWhatIsLeft {
    fn drop(&mut self) {
        self.0.close();
        while let Some(batch) = self.0.next_batch(MAX_BATCH, Duration::ZERO) {
            batch.into_iter().for_each(|job| (job.run)(None)(false));
        }
    }
}

/// Runs the batch's writes in the open transaction, in order; once one has ended the
/// transaction, the rest fail without running (each would otherwise commit on its own).
fn run_batch(conn: &Connection, batch: Vec<Job>) -> Vec<AfterCommit> {
    batch
        .into_iter()
        .map(|job| {
            if conn.is_autocommit() {
                (job.run)(None)
            } else {
                (job.run)(Some(conn))
            }
        })
        .collect()
}

/// Runs a statement prepared once per connection: the writer begins and commits every batch,
/// and parsing the SQL each time showed in its profile.
fn run_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Sets whether the connection's commits are fsynced (`synchronous` is the connection's own
/// setting, not the file's), when it changes.
fn set_synced(conn: &Connection, synced: bool, current: &mut Option<bool>) -> rusqlite::Result<()> {
    if *current != Some(synced) {
        *current = None;
        // Not through `run_cached`: SQLite prepares a PRAGMA anew each time it runs anyway.
        conn.execute_batch(if synced {
            "PRAGMA synchronous = FULL"
        } else {
            "PRAGMA synchronous = NORMAL"
        })?;
        *current = Some(synced);
    }
    Ok(())
}

fn write_loop(
    conn: Connection,
    jobs: &WriteQueue<Job>,
    checkpoint: mpsc::SyncSender<()>,
    linger: Duration,
    commits: &CommitCounter,
    log_pages: &AtomicI64,
) {
    let mut postponed: Option<Postponed> = None;
    // The connection opens with FULL.
    let mut synced_now = Some(true);
    while let Some(batch) = jobs.next_batch(MAX_BATCH, linger) {
        // One write that must survive a power failure syncs the whole batch.
        let synced = batch.iter().any(|job| job.durability == Durability::PowerLoss);
        let begun = set_synced(&conn, synced, &mut synced_now).and_then(|()| run_cached(&conn, "BEGIN IMMEDIATE"));
        if let Err(err) = begun {
            error!(error = %err, "could not begin a transaction");
            batch.into_iter().for_each(|job| (job.run)(None)(false));
            continue;
        }
        let finish = run_batch(&conn, batch);
        // A write that ended the transaction (SQLite rolls it back by itself on some I/O and
        // memory errors) took every write of the batch with it, and those after it would each
        // have committed alone: none of the batch counts as committed.
        let committed = if conn.is_autocommit() {
            error!("a write ended the transaction; the batch is rolled back");
            false
        } else {
            match run_cached(&conn, "COMMIT") {
                Ok(()) => {
                    let counter = if synced { &commits.synced } else { &commits.unsynced };
                    counter.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(err) => {
                    error!(error = %err, "commit failed; the batch is rolled back");
                    let _ = conn.execute_batch("ROLLBACK");
                    false
                }
            }
        };
        for after in finish {
            after(committed);
        }
        postponed = restart_long_log(&conn, log_pages.load(Ordering::Relaxed), postponed);
        // Wakes the checkpointer; one wake-up pending is enough.
        let _ = checkpoint.try_send(());
    }
}
