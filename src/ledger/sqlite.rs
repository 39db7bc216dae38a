//! The embedded SQLite backend: WAL, `synchronous=FULL`, group commit through a two-stage
//! pipeline.
//!
//! Requests queue (bounded by `queue_requests_max`) to the **decider** thread. It keeps one
//! *open* batch. When nothing is open it takes the first request and gathers more until it holds
//! `group_requests_max` or `group_wait_us_max` µs passed; then, on its own read connection, it
//! 1. decides the new requests in order onto the open batch's in-memory overlay (each row read
//!    once; each request sees the effects of those before it and of the batches still being
//!    committed; new authorizations get their serial and registers but no signature yet);
//! 2. signs their authorizations at once on a small pool of signing threads
//!    (`sign_threads_max`).
//!
//! The batch stays open while the committer is busy: requests arriving meanwhile are decided
//! and signed onto it in the same way. It is handed over — the register invariant of every
//! touched account checked and the write set sealed (each changed row once in its final state,
//! the audit records, the idempotency records) — as soon as the committer has begun the WAL
//! fsync of the last batch handed to it (or is idle), or when it is full (`group_requests_max`
//! requests or `OPEN_ITEM_BYTES_MAX` bytes of items). So a request that arrives while batch n
//! commits lands in batch n+1, not n+2.
//!
//! The **committer** thread owns the writing connection. For each sealed batch, in order, it
//! runs one `BEGIN IMMEDIATE` transaction, writes the rows, commits (one fsync of the WAL) and
//! only then answers the batch's requests. At most one sealed batch waits for it (a bounded
//! pipeline; with `group_requests_max = 1` every batch is full at once, so that is the plain
//! one-transaction-per-request path with deciding overlapped).
//!
//! A database error fails the batch and every later batch decided on top of it (nothing of
//! them is written; each request may be retried with its id); the decider waits for the
//! committer to finish those, forgets its pending rows and starts again from the database.
//! If another process committed to the file meanwhile (`PRAGMA data_version` moved), the
//! committer decides the affected batches again itself, under the write lock, from the
//! database alone. A refused signature makes the decider decide its batch again with each
//! authorization signed as it is decided, so the refused request changes nothing (for the open
//! batch: every request decided onto it so far is decided again; nothing of it was written).
//! Reads for the store's other methods use a third connection.

use super::audit::{AuditRecord, StoredAuditRecord};
use super::model::*;
use super::ops::{self, IdempotencyRecord, Request, Snapshot};
use super::payment::BoxFuture;
use super::report;
use super::store::{
    self, AccountRow, CommitCounts, LedgerStore, PieceRow, StoreError, corrupt, int,
};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Tuning of the SQLite backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// Most requests in one transaction (1 = one transaction per request).
    pub group_requests_max: usize,
    /// Longest the decider waits for more requests before deciding a new batch's first
    /// requests (the batch then stays open for more while the committer is busy). Short: the
    /// clients answered by the last commit send their next requests within a few hundred µs
    /// (measured with 256 clients: 1000 µs made the decider late and cost ~10% throughput
    /// and ~2 ms of p99 against 200 µs; 2000 µs cost 25%).
    pub group_wait_us_max: u64,
    /// Most requests waiting for the writer; more are refused with `StoreError::Busy`.
    pub queue_requests_max: usize,
    /// How often a background thread checkpoints the WAL into the database file (a PASSIVE
    /// checkpoint: it copies what was committed since its last pass, beside the commits, then
    /// syncs the database file). Small passes: a pass's writes and sync slow the commits'
    /// WAL fsyncs beside it (measured with 256 clients, p99 of a pair: 21 ms with 50 ms
    /// passes, 27 ms with 100, 56 ms with 500).
    pub checkpoint_interval_ms: u64,
    /// Most WAL frames (pages) before the WAL starts over from its beginning. Under sustained
    /// load a checkpoint running beside the commits never catches up with the last one, and
    /// SQLite restarts the WAL only when it has: the file grew without bound (1.2 GB in 15 s of
    /// the benchmark). Past this many frames the background thread asks the committer to
    /// checkpoint the short tail itself between two batches; its next transaction then
    /// rewrites the WAL from the start. Rewriting blocks the file already has also makes each
    /// commit's fsync cheaper than growing the file (measured on this project's machine for
    /// 128 KiB: 0.22 ms against 0.55 ms).
    pub wal_frames_max: u64,
    /// Threads that sign a batch's authorizations (the writer itself is one of them), when the
    /// signer does not say how many signatures it makes at once (a token does: its sessions).
    pub sign_threads_max: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            group_requests_max: 512,
            group_wait_us_max: 200,
            queue_requests_max: 16_384,
            checkpoint_interval_ms: 50,
            wal_frames_max: 8_192,
            sign_threads_max: 2,
        }
    }
}

/// The writer's page cache, in KiB as SQLite's negative `cache_size` (16 MiB).
const WRITER_CACHE_KIB_NEG: i64 = -16_384;
/// The reader's page cache (8 MiB). It serves statements, listings and scans; SQLite also
/// caps a sort's memory at the cache size before spilling to a temporary file, so a statement
/// of a long, busy period costs the vendor at most this much heap, not its size.
const READER_CACHE_KIB_NEG: i64 = -8_192;
/// The checkpointer's page cache (2 MiB, SQLite's default): a checkpoint copies WAL frames
/// without going through it.
const CHECKPOINTER_CACHE_KIB_NEG: i64 = -2_048;

/// Versioned migrations; `schema_version` holds the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: accounts, pieces, idempotency, audit
    "CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        license INTEGER,
        status TEXT NOT NULL,
        descending INTEGER NOT NULL CHECK (descending >= 0),
        pending INTEGER NOT NULL CHECK (pending >= 0),
        ascending INTEGER NOT NULL CHECK (ascending >= 0),
        control INTEGER NOT NULL CHECK (control = descending + pending + ascending),
        last_piece INTEGER NOT NULL,
        audit_seq INTEGER NOT NULL,
        audit_head BLOB NOT NULL
    );
    CREATE TABLE pieces (
        account INTEGER NOT NULL REFERENCES accounts(id),
        serial INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        state TEXT NOT NULL,
        authorized_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        printed_at_ms INTEGER,
        refund TEXT,
        refund_submitted_at_ms INTEGER,
        scanned INTEGER NOT NULL,
        signed BLOB NOT NULL,
        -- serial first: the pieces one batch creates (one per busy meter, with similar
        -- serials) land on few pages instead of one page per account.
        PRIMARY KEY (serial, account)
    ) WITHOUT ROWID;
    CREATE INDEX pieces_due ON pieces(expires_at_ms) WHERE state = 'reserved';
    CREATE TABLE idempotency (
        request_id BLOB PRIMARY KEY,
        fingerprint BLOB NOT NULL,
        reply TEXT NOT NULL,
        at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        body TEXT NOT NULL,
        hash BLOB NOT NULL,
        UNIQUE (account, seq)
    );",
    // 2: the item description of each piece (for listings) and an index to list one
    //    account's pieces newest first.
    "ALTER TABLE pieces ADD COLUMN item BLOB NOT NULL DEFAULT x'';
    CREATE INDEX pieces_account ON pieces(account, serial);",
    // 3: idempotency records are pruned after a retention period, except account openings
    "ALTER TABLE idempotency ADD COLUMN permanent INTEGER NOT NULL DEFAULT 0;
    UPDATE idempotency SET permanent = 1 WHERE reply LIKE '{\"Ok\":{\"Opened\":%';
    CREATE INDEX idempotency_age ON idempotency(at_ms) WHERE permanent = 0;",
    // 4: the audit log drops its (account, seq) index, which made every batch dirty one index
    //    page per busy account. Each record points to the account's previous record instead,
    //    and the account row to its last one; a statement walks that chain.
    "ALTER TABLE accounts ADD COLUMN audit_last INTEGER;
    UPDATE accounts SET audit_last =
        (SELECT id FROM audit WHERE audit.account = accounts.id AND audit.seq = accounts.audit_seq);
    CREATE TABLE audit_chained (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        account INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        at_ms INTEGER NOT NULL,
        body TEXT NOT NULL,
        hash BLOB NOT NULL,
        prev INTEGER
    );
    INSERT INTO audit_chained (id, account, seq, at_ms, body, hash, prev)
        SELECT a.id, a.account, a.seq, a.at_ms, a.body, a.hash,
            (SELECT p.id FROM audit p WHERE p.account = a.account AND p.seq = a.seq - 1)
        FROM audit a ORDER BY a.id;
    DROP TABLE audit;
    ALTER TABLE audit_chained RENAME TO audit;",
    // 5: the pieces_account index goes for the same reason (one dirty index page per busy
    //    account per batch). An account's serials run 1..=last_piece without gaps, so its
    //    pieces, newest first, are primary-key lookups counting down from last_piece.
    "DROP INDEX pieces_account;",
    // 6: a piece's signed item and description (about 350 bytes, written once) move to
    //    piece_data, appended in issue order; the pieces rows left are ~60 bytes, so the
    //    inserts and state changes of one batch (one piece per busy meter, keyed by serial)
    //    dirty a few pages instead of one page per piece.
    "CREATE TABLE piece_data (
        id INTEGER PRIMARY KEY,
        signed BLOB NOT NULL,
        item BLOB NOT NULL
    );
    CREATE TEMP TABLE piece_ids AS
        SELECT account, serial,
            row_number() OVER (ORDER BY authorized_at_ms, account, serial) AS id
        FROM pieces;
    INSERT INTO piece_data (id, signed, item)
        SELECT i.id, p.signed, p.item FROM pieces p JOIN temp.piece_ids i USING (account, serial)
        ORDER BY i.id;
    CREATE TABLE pieces_slim (
        account INTEGER NOT NULL REFERENCES accounts(id),
        serial INTEGER NOT NULL,
        kind INTEGER NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        state TEXT NOT NULL,
        authorized_at_ms INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL,
        printed_at_ms INTEGER,
        refund TEXT,
        refund_submitted_at_ms INTEGER,
        scanned INTEGER NOT NULL,
        data INTEGER NOT NULL,
        PRIMARY KEY (serial, account)
    ) WITHOUT ROWID;
    INSERT INTO pieces_slim
        SELECT p.account, p.serial, p.kind, p.amount, p.state, p.authorized_at_ms,
            p.expires_at_ms, p.printed_at_ms, p.refund, p.refund_submitted_at_ms, p.scanned, i.id
        FROM pieces p JOIN temp.piece_ids i USING (account, serial);
    DROP TABLE temp.piece_ids;
    DROP TABLE pieces;
    ALTER TABLE pieces_slim RENAME TO pieces;
    CREATE INDEX pieces_due ON pieces(expires_at_ms) WHERE state = 'reserved';",
    // 7: idempotency records become a log appended in commit order (the committer assigns the
    //    ids) with a unique index on the request id: the rows no longer land wherever their
    //    request id sorts, and the age index goes (pruning walks the log from its oldest end).
    "CREATE TABLE idempotency_log (
        id INTEGER PRIMARY KEY,
        request_id BLOB NOT NULL,
        fingerprint BLOB NOT NULL,
        reply TEXT NOT NULL,
        at_ms INTEGER NOT NULL,
        permanent INTEGER NOT NULL DEFAULT 0
    );
    INSERT INTO idempotency_log (request_id, fingerprint, reply, at_ms, permanent)
        SELECT request_id, fingerprint, reply, at_ms, permanent FROM idempotency
        ORDER BY at_ms, request_id;
    DROP TABLE idempotency;
    ALTER TABLE idempotency_log RENAME TO idempotency;
    CREATE UNIQUE INDEX idempotency_request ON idempotency(request_id);",
    // 8: payment intents: a top-up is recorded before its charge and resolved after it, so
    //    the reaper can reconcile a charge that was never credited nor reversed.
    "CREATE TABLE payment_intents (
        request_id BLOB PRIMARY KEY,
        account INTEGER NOT NULL,
        amount INTEGER NOT NULL CHECK (amount > 0),
        method TEXT NOT NULL,
        started_at_ms INTEGER NOT NULL,
        resolved_at_ms INTEGER,
        resolution TEXT
    ) WITHOUT ROWID;
    CREATE INDEX payment_intents_open ON payment_intents(started_at_ms)
        WHERE resolved_at_ms IS NULL;",
    // 9: the refund requests awaiting a supervisor's decision, oldest first, without reading
    //    every piece (the index holds only the few pieces whose refund is submitted).
    "CREATE INDEX pieces_refunds_awaiting ON pieces(refund_submitted_at_ms)
        WHERE refund = 'submitted';",
    // 10: issue 12 — the terminal that authorized a piece (only it may void the piece once
    //     unsettled; written once, with the row), and the unsettled pieces of an account (the
    //     index holds only those few).
    "ALTER TABLE pieces ADD COLUMN terminal INTEGER;
    CREATE INDEX pieces_unsettled ON pieces(account, serial) WHERE state = 'unsettled';",
    // 11: issue 13 — a repeated scan of a piece within the scan record window only counts on
    //     the piece (`scan_count`) instead of adding an audit record; the window runs from the
    //     last recorded scan (`scan_recorded_at_ms`; none for scans recorded before).
    "ALTER TABLE pieces ADD COLUMN scan_count INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE pieces ADD COLUMN scan_recorded_at_ms INTEGER;
    UPDATE pieces SET scan_count = 1 WHERE scanned = 1;",
    // 12: issue 13 — where each account's UTC days begin in its audit chain: the account's
    //     last record before its first record of the day (NULL: none). A statement of an
    //     old period starts its walk back there instead of at the account's newest record,
    //     so its cost no longer grows with the history since. One row per account and active
    //     day (an index on (account, at_ms) instead dirtied a page per busy account in every
    //     batch and cost group commit a third of its rate).
    "CREATE TABLE audit_days (
        account INTEGER NOT NULL,
        day INTEGER NOT NULL,
        last_id_before INTEGER,
        PRIMARY KEY (account, day)
    ) WITHOUT ROWID;
    INSERT OR IGNORE INTO audit_days (account, day, last_id_before)
        SELECT a.account, a.at_ms / 86400000, a.prev FROM audit a
        LEFT JOIN audit p ON p.id = a.prev
        WHERE p.id IS NULL OR p.at_ms / 86400000 < a.at_ms / 86400000
        ORDER BY a.id;",
    // 13: issue 15 — a basket's tender (how the customer paid) with its pieces, each piece in
    //     at most one basket (the primary key of `tender_pieces`); the day report reads the
    //     pieces authorized and the tenders recorded in a day by time.
    "CREATE TABLE tenders (
        basket BLOB PRIMARY KEY,
        account INTEGER NOT NULL,
        clerk TEXT NOT NULL,
        terminal INTEGER NOT NULL,
        kind TEXT NOT NULL,
        tendered INTEGER NOT NULL CHECK (tendered > 0),
        change_given INTEGER NOT NULL CHECK (change_given >= 0 AND change_given <= tendered),
        total INTEGER NOT NULL CHECK (total = tendered - change_given),
        recorded_at_ms INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE INDEX tenders_recorded ON tenders(recorded_at_ms);
    CREATE TABLE tender_pieces (
        account INTEGER NOT NULL,
        serial INTEGER NOT NULL,
        basket BLOB NOT NULL,
        position INTEGER NOT NULL,
        PRIMARY KEY (account, serial)
    ) WITHOUT ROWID;
    CREATE INDEX tender_pieces_basket ON tender_pieces(basket, position);
    CREATE INDEX pieces_authorized ON pieces(authorized_at_ms);",
];

fn db(e: rusqlite::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

struct Job {
    request: Request,
    /// The body's fingerprint, computed by the caller (off the writer thread).
    fingerprint: [u8; 32],
    now_ms: u64,
    reply: oneshot::Sender<Result<Reply, StoreError>>,
}

/// What the writer thread is asked to do.
enum Task {
    Request(Job),
    /// A write the committer runs between batches; the decider passes it on as it is.
    Side(Side),
}

/// A write between batches, in a transaction of its own.
enum Side {
    /// Delete old idempotency records.
    Prune {
        before_ms: u64,
        max: u32,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Record or resolve a payment intent.
    Intent(IntentWrite, oneshot::Sender<Result<(), StoreError>>),
    /// Record a basket's tender.
    Tender(
        Box<report::Tender>,
        oneshot::Sender<Result<store::TenderAnswer, StoreError>>,
    ),
}

impl Task {
    /// A ledger request, its body's fingerprint computed here (off the decider's thread).
    fn request(request: Request, now_ms: u64, reply: store::ReplySender) -> Task {
        Task::Request(Job {
            fingerprint: ops::fingerprint(&request.op),
            request,
            now_ms,
            reply,
        })
    }

    /// Answers the task with `error` instead of doing it (the caller may have gone away).
    fn fail(self, error: StoreError) {
        match self {
            Task::Request(job) => drop(job.reply.send(Err(error))),
            Task::Side(Side::Prune { reply, .. }) => drop(reply.send(Err(error))),
            Task::Side(Side::Intent(_, reply)) => drop(reply.send(Err(error))),
            Task::Side(Side::Tender(_, reply)) => drop(reply.send(Err(error))),
        }
    }
}

/// A write to the payment intents.
enum IntentWrite {
    Record(PaymentIntent),
    Resolve {
        request: RequestId,
        resolution: IntentResolution,
        at_ms: u64,
    },
}

/// The SQLite ledger store.
pub struct SqliteStore {
    jobs: SyncSender<Task>,
    /// Dropping this stops the checkpointer thread.
    _checkpointer: SyncSender<()>,
    reader: Arc<Mutex<Connection>>,
    queue_requests_max: usize,
    path: PathBuf,
    shared: Arc<Shared>,
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(db)?;
    // FULL: every commit syncs the WAL, so an acknowledged request survives power loss.
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(db)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(db)?;
    // 64 MiB page cache: batches touch index pages all over the tables.
    conn.pragma_update(None, "cache_size", -65_536)
        .map_err(db)?;
    conn.busy_timeout(Duration::from_secs(5)).map_err(db)?;
    Ok(())
}

fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        .map_err(db)?;
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(db)?;
    let version: i64 = tx
        .query_row(
            "SELECT COALESCE(MAX(version), 0) FROM schema_version",
            [],
            |r| r.get(0),
        )
        .map_err(db)?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let v = i as i64 + 1;
        if v > version {
            tx.execute_batch(sql).map_err(db)?;
            tx.execute("INSERT INTO schema_version (version) VALUES (?1)", [v])
                .map_err(db)?;
        }
    }
    tx.commit().map_err(db)
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path` and starts the writer.
    pub fn open(
        path: &Path,
        config: SqliteConfig,
        signer: Arc<dyn ItemSigner>,
        limits: LedgerLimits,
    ) -> Result<SqliteStore, StoreError> {
        // Created 0600 before SQLite opens it: its -wal and -shm files take the same mode.
        crate::datafiles::private_file(path).map_err(|e| StoreError::Database(format!("{e:#}")))?;
        let mut writer = Connection::open(path).map_err(db)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        // Checkpoints move to a background thread (below).
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(db)?;
        // A smaller page cache for the writer: at every commit SQLite scans the whole page
        // cache of the writing connection (`pcache1TruncateUnsafe` in `pager_end_transaction`),
        // which with 64 MiB took ~11% of the commit thread's CPU, on the path between the WAL
        // fsync and the replies. The writer touches mostly the tails of the tables; its misses
        // are served by the OS page cache.
        writer
            .pragma_update(None, "cache_size", WRITER_CACHE_KIB_NEG)
            .map_err(db)?;
        // Up to 7 multi-row statement shapes per written table, besides the single ones.
        writer.set_prepared_statement_cache_capacity(64);
        let reader = Connection::open(path).map_err(db)?;
        configure(&reader)?;
        reader
            .pragma_update(None, "cache_size", READER_CACHE_KIB_NEG)
            .map_err(db)?;
        let checkpointer = Connection::open(path).map_err(db)?;
        configure(&checkpointer)?;
        checkpointer
            .pragma_update(None, "cache_size", CHECKPOINTER_CACHE_KIB_NEG)
            .map_err(db)?;
        let decider = Connection::open(path).map_err(db)?;
        configure(&decider)?;
        // A signing device (a token's session pool) sets the pool's size; else the config.
        let sign_threads = signer
            .parallel_signatures_max()
            .unwrap_or(config.sign_threads_max);
        let pool = SignPool::start(sign_threads, &signer)?;
        let shared = Arc::new(Shared {
            committed_seq: AtomicU64::new(0),
            finished_seq: AtomicU64::new(0),
            syncing_seq: AtomicU64::new(0),
            failed_epoch: AtomicU64::new(u64::MAX),
            wal_restart_wanted: AtomicBool::new(false),
            read_gate: Mutex::new(()),
            batches_committed: AtomicU64::new(0),
            requests_committed: AtomicU64::new(0),
        });
        let (stop_checkpoints, stopped) = std::sync::mpsc::sync_channel::<()>(1);
        let interval = Duration::from_millis(config.checkpoint_interval_ms.max(1));
        let wal_frames_max = config.wal_frames_max;
        let asks = shared.clone();
        // The checkpoint thread syncs the pages it copied itself: SQLite syncs the database
        // file only at a checkpoint that copies the whole WAL, which under load is the
        // committer's, and that one would then flush every earlier pass's pages (35 ms
        // measured) while the next batch waits.
        let db_file = std::fs::File::open(path).map_err(|e| {
            StoreError::Database(format!("cannot open the database file to sync it: {e}"))
        })?;
        std::thread::Builder::new()
            .name("ledger-sqlite-checkpoint".into())
            .spawn(move || {
                // Runs until the store is dropped (the channel disconnects).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let r = checkpoint(&checkpointer).and_then(|frames| {
                        // A pass that met the committer's checkpoint copied nothing.
                        if frames.is_some() {
                            db_file.sync_data().map_err(|e| {
                                StoreError::Database(format!("cannot sync the database file: {e}"))
                            })?;
                        }
                        Ok(frames)
                    });
                    match r {
                        Ok(Some(frames)) if frames >= wal_frames_max => {
                            asks.wal_restart_wanted.store(true, Ordering::Release);
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "ledger WAL checkpoint failed; will retry")
                        }
                    }
                }
                let _ = checkpointer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(|e| {
                StoreError::Database(format!("cannot start the checkpoint thread: {e}"))
            })?;
        let committer = Committer {
            data_version: Committer::data_version(&writer)?,
            conn: writer,
            shared: shared.clone(),
            signer: signer.clone(),
            limits: limits.clone(),
            stale_epoch: None,
            cursor: None,
            prune_from: 0,
            restart_next: false,
        };
        // One batch waits while another commits: a bounded two-stage pipeline.
        let (to_commit, sealed) = std::sync::mpsc::sync_channel(1);
        let committer = std::thread::Builder::new()
            .name("ledger-commit".into())
            .spawn(move || committer.run(sealed))
            .map_err(|e| StoreError::Database(format!("cannot start the commit thread: {e}")))?;
        let (jobs, rx) = std::sync::mpsc::sync_channel(config.queue_requests_max.max(1));
        let queue_requests_max = config.queue_requests_max;
        let decider_shared = shared.clone();
        std::thread::Builder::new()
            .name("ledger-decide".into())
            .spawn(move || {
                Decider {
                    conn: decider,
                    config,
                    signer,
                    limits,
                    pool,
                    shared: decider_shared,
                    pending: Pending::default(),
                    next_seq: 1,
                    epoch: 0,
                    to_commit,
                    committer,
                }
                .run(rx)
            })
            .map_err(|e| StoreError::Database(format!("cannot start the decide thread: {e}")))?;
        Ok(SqliteStore {
            jobs,
            _checkpointer: stop_checkpoints,
            reader: Arc::new(Mutex::new(reader)),
            queue_requests_max,
            path: path.to_path_buf(),
            shared,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Batches and requests committed since the store opened.
    pub fn commit_counts(&self) -> CommitCounts {
        CommitCounts {
            batches: self.shared.batches_committed.load(Ordering::Acquire),
            requests: self.shared.requests_committed.load(Ordering::Acquire),
        }
    }

    /// Sends a payment-intent write to the committer and waits for its commit.
    fn write_intent(&self, write: IntentWrite) -> BoxFuture<'_, Result<(), StoreError>> {
        self.ask(|reply| Task::Side(Side::Intent(write, reply)))
    }

    /// Queues a task for the decider. A full queue (`Busy`) or a store shut down (`Closed`)
    /// answers the task at once.
    fn queue(&self, task: Task) {
        match self.jobs.try_send(task) {
            Ok(()) => {}
            Err(TrySendError::Full(task)) => task.fail(StoreError::Busy {
                queue_requests_max: self.queue_requests_max,
            }),
            Err(TrySendError::Disconnected(task)) => task.fail(StoreError::Closed),
        }
    }

    /// Queues a task that answers on a channel of its own, and waits for the answer.
    fn ask<T: Send + 'static>(
        &self,
        task: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Task,
    ) -> BoxFuture<'_, Result<T, StoreError>> {
        let (tx, rx) = oneshot::channel();
        self.queue(task(tx));
        Box::pin(async move { rx.await.map_err(|_| StoreError::Closed)? })
    }

    async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let reader = self.reader.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = reader.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut conn)
        })
        .await
        .map_err(|e| StoreError::Database(format!("reader task failed: {e}")))?
    }
}

/// The decider: gathers a batch, decides it on top of the committed database plus the rows of
/// batches still being committed, signs it, and hands the sealed write set to the committer.
struct Decider {
    /// A read connection (the committer holds the writing one).
    conn: Connection,
    config: SqliteConfig,
    signer: Arc<dyn ItemSigner>,
    limits: LedgerLimits,
    pool: SignPool,
    shared: Arc<Shared>,
    pending: Pending,
    /// Sequence number of the next batch (1, 2, ...).
    next_seq: u64,
    /// Batches decided since the last commit failure; see [`Shared::failed_epoch`].
    epoch: u64,
    to_commit: SyncSender<ToCommit>,
    /// To tell a committer that is gone (nothing commits then) from a slow one.
    committer: std::thread::JoinHandle<()>,
}

/// State the committer publishes to the decider.
struct Shared {
    /// Sequence number of the last batch committed (0: none yet).
    committed_seq: AtomicU64,
    /// Sequence number of the last batch the committer is done with, committed or failed.
    finished_seq: AtomicU64,
    /// Sequence number of the last batch whose rows are written and whose commit (the WAL
    /// fsync) has begun: the committer will be free once that fsync returns.
    syncing_seq: AtomicU64,
    /// Epoch of the last batch that failed to commit (`u64::MAX`: none). Later batches of that
    /// epoch were decided on top of it, so the committer fails them too; the decider then
    /// forgets its pending rows and starts a new epoch.
    failed_epoch: AtomicU64,
    /// Set by the checkpoint thread when the WAL holds `wal_frames_max` frames or more: the
    /// committer checkpoints the rest itself after its next commit, so the WAL starts over.
    wal_restart_wanted: AtomicBool,
    /// Held by the decider while its read snapshot is open, and by the committer through the
    /// one transaction that should start the WAL over: SQLite starts it over only if no
    /// reader holds a snapshot older than the checkpoint, and the decider, reading almost
    /// all the time under load, usually did (the WAL then grew on until a later try).
    read_gate: Mutex<()>,
    /// Counted after each batch's commit, for [`SqliteStore::commit_counts`].
    batches_committed: AtomicU64,
    requests_committed: AtomicU64,
}

/// Rows written by batches handed to the committer, each with the sequence number of the last
/// batch that wrote it. The decider reads them before the database. Until their batch commits
/// they exist only here; after that they equal the database's rows (the committer is the only
/// writer; another process's commit makes the committer decide again and the decider start
/// over with nothing pending), so the decider keeps accounts and pieces as a cache of hot rows
/// — every commit by another connection empties its SQLite page cache — until a map grows past
/// its bound, when the committed ones are dropped. Idempotency replies are dropped once
/// committed (pruning forgets them in the database).
#[derive(Default)]
struct Pending {
    accounts: HashMap<AccountId, (u64, Account)>,
    pieces: HashMap<PieceId, (u64, Piece)>,
    seen: HashMap<RequestId, (u64, [u8; 32], Reply)>,
}

impl Pending {
    fn forget_committed(&mut self, committed_seq: u64) {
        if self.accounts.len() > PENDING_ACCOUNTS_MAX {
            self.accounts.retain(|_, (seq, _)| *seq > committed_seq);
        }
        if self.pieces.len() > PENDING_PIECES_MAX {
            self.pieces.retain(|_, (seq, _)| *seq > committed_seq);
        }
        // Replies are not kept once committed: pruning must be able to forget them.
        self.seen.retain(|_, (seq, _, _)| *seq > committed_seq);
    }
}

/// Most accounts and pieces the decider keeps in [`Pending`] (committed ones are dropped
/// beyond these; rows not committed yet always stay).
const PENDING_ACCOUNTS_MAX: usize = 65_536;
const PENDING_PIECES_MAX: usize = 16_384;

/// One idempotency record to insert.
struct IdempotencyRow {
    key: [u8; 16],
    fingerprint: [u8; 32],
    reply: String,
    at_ms: i64,
    permanent: bool,
}

/// Everything one batch's transaction writes.
struct Rows {
    accounts: Vec<AccountRow>,
    /// Pieces to insert (with their piece_data row).
    new_pieces: Vec<PieceRow>,
    /// Pieces whose state changed.
    changed_pieces: Vec<PieceRow>,
    audit: Vec<AuditRecord>,
    idempotency: Vec<IdempotencyRow>,
}

/// A decided, signed batch: its rows, its requests and the replies to send after the commit.
struct Sealed {
    seq: u64,
    epoch: u64,
    rows: Rows,
    jobs: Vec<Job>,
    replies: Vec<Reply>,
}

enum ToCommit {
    Batch(Sealed),
    Side(Side),
}

/// The committer: owns the writing connection; writes each sealed batch in one
/// `BEGIN IMMEDIATE` transaction, commits, then answers its requests.
struct Committer {
    conn: Connection,
    shared: Arc<Shared>,
    /// For deciding a batch again when another process wrote meanwhile.
    signer: Arc<dyn ItemSigner>,
    limits: LedgerLimits,
    /// `PRAGMA data_version` after our last transaction: it changes only when another
    /// connection (another process) commits, and then the decider's view may be stale.
    data_version: i64,
    /// The epoch found stale: its remaining batches are decided again here.
    stale_epoch: Option<u64>,
    /// The ids of the rows appended next, after our last commit (`None`: read them again).
    cursor: Option<WriteCursor>,
    /// Every idempotency record at or below this id is permanent (see [`Self::prune`]).
    prune_from: i64,
    /// The WAL is fully checkpointed: the next transaction should start it over.
    restart_next: bool,
}

/// One authorization's signature, computed after the batch decided and before it is written.
struct SignTask {
    piece: PieceId,
    facts: PieceFacts,
    item: Vec<u8>,
}

/// Records what to sign instead of signing: [`ops::decide`] runs for the whole batch first (it
/// fixes every serial and register the signatures cover), then the batch is signed at once.
#[derive(Default)]
struct DeferredSigner(Mutex<Vec<SignTask>>);

impl ItemSigner for DeferredSigner {
    fn sign(&self, facts: &PieceFacts, item: &[u8]) -> Result<Vec<u8>, String> {
        let task = SignTask {
            piece: PieceId {
                account: facts.account,
                serial: facts.piece,
            },
            facts: facts.clone(),
            item: item.to_vec(),
        };
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        // A placeholder; the batch patches the real signature in before anything is written.
        Ok(Vec::new())
    }
}

type SignResults = Vec<(PieceId, Result<Vec<u8>, String>)>;
type SignChunk = (Vec<SignTask>, SyncSender<SignResults>);

/// A small fixed pool of signing threads (`sign_threads_max − 1` helpers; the writer signs a
/// share itself). Each helper takes one chunk at a time from its own bounded channel.
struct SignPool {
    helpers: Vec<SyncSender<SignChunk>>,
}

impl SignPool {
    fn start(threads_max: usize, signer: &Arc<dyn ItemSigner>) -> Result<SignPool, StoreError> {
        let mut helpers = Vec::new();
        for i in 1..threads_max.max(1) {
            let (tx, rx) = std::sync::mpsc::sync_channel::<SignChunk>(1);
            let signer = signer.clone();
            std::thread::Builder::new()
                .name(format!("ledger-sign-{i}"))
                .spawn(move || {
                    // Ends when the writer (the only sender) is gone.
                    while let Ok((tasks, back)) = rx.recv() {
                        let _ = back.send(sign_all(&*signer, tasks));
                    }
                })
                .map_err(|e| StoreError::Database(format!("cannot start a signing thread: {e}")))?;
            helpers.push(tx);
        }
        Ok(SignPool { helpers })
    }

    /// Signs every task, spread over the helpers and the calling thread.
    fn sign(&self, signer: &dyn ItemSigner, mut tasks: Vec<SignTask>) -> SignResults {
        // Below this many signatures a hand-off costs more than it saves.
        const CHUNK_MIN: usize = 8;
        let shares = (tasks.len() / CHUNK_MIN).clamp(1, self.helpers.len() + 1);
        if shares == 1 {
            return sign_all(signer, tasks);
        }
        let per = tasks.len().div_ceil(shares);
        let (back, results) = std::sync::mpsc::sync_channel(shares);
        let mut sent = 0;
        for helper in &self.helpers[..shares - 1] {
            let at = tasks.len().saturating_sub(per);
            let chunk = tasks.split_off(at);
            match helper.send((chunk, back.clone())) {
                Ok(()) => sent += 1,
                // A helper that died: sign its share here.
                Err(std::sync::mpsc::SendError((chunk, _))) => tasks.extend(chunk),
            }
        }
        drop(back);
        let mut out = sign_all(signer, tasks);
        for _ in 0..sent {
            match results.recv() {
                Ok(r) => out.extend(r),
                Err(_) => break,
            }
        }
        out
    }
}

fn sign_all(signer: &dyn ItemSigner, tasks: Vec<SignTask>) -> SignResults {
    tasks
        .into_iter()
        .map(|t| (t.piece, signer.sign(&t.facts, &t.item)))
        .collect()
}

/// A batch's view of the database: rows read so far, with the batch's own changes applied on
/// top. Nothing is written until the whole batch has decided and been signed; then every
/// changed row is written once.
#[derive(Default)]
struct Overlay {
    accounts: HashMap<AccountId, Account>,
    pieces: HashMap<PieceId, Piece>,
    /// Idempotency records read from the database or made by this batch.
    seen: HashMap<RequestId, (Arc<[u8; 32]>, Reply)>,
    dirty_accounts: Vec<AccountId>,
    dirty_pieces: Vec<PieceId>,
    /// Pieces this batch created (not in the database nor in a batch being committed).
    fresh_pieces: std::collections::HashSet<PieceId>,
    audit: Vec<AuditRecord>,
    /// Replies to remember: (request, index of the job in the batch).
    remember: Vec<(RequestId, usize)>,
}

impl Overlay {
    fn apply(&mut self, changes: ops::Changes) {
        for a in changes.accounts {
            if !self.dirty_accounts.contains(&a.id) {
                self.dirty_accounts.push(a.id);
            }
            self.accounts.insert(a.id, a);
        }
        for p in changes.pieces {
            if !self.dirty_pieces.contains(&p.id) {
                self.dirty_pieces.push(p.id);
            }
            // A piece the batch did not load (pieces are loaded before they change) is new.
            if !self.pieces.contains_key(&p.id) {
                self.fresh_pieces.insert(p.id);
            }
            self.pieces.insert(p.id, p);
        }
        self.audit.extend(changes.audit);
    }
}

/// The batch the decider is building: requests decided (and signed) on its overlay, not yet
/// handed to the committer.
#[derive(Default)]
struct Open {
    jobs: Vec<Job>,
    overlay: Overlay,
    replies: Vec<Reply>,
    /// Bytes of the requests' item descriptions, bounded by [`OPEN_ITEM_BYTES_MAX`].
    item_bytes: usize,
}

/// Most bytes of item descriptions one batch carries (besides `group_requests_max`): the
/// batch's signed items are written and kept in memory until it commits.
const OPEN_ITEM_BYTES_MAX: usize = 4 << 20;

/// Most requests the decider adds to an open batch between two looks at the committer
/// (deciding and signing 32 takes ~0.3 ms; a whole wave of replies at once took long enough
/// that the committer sat idle waiting for the hand-over).
const EXTEND_REQUESTS_MAX: usize = 32;

/// How long the decider sleeps between looks at the committer while it holds an open batch
/// and no request arrives.
const COMMITTER_POLL_US: u64 = 50;

fn item_bytes(job: &Job) -> usize {
    match &job.request.op {
        ops::Op::Authorize { item, .. } => item.len(),
        _ => 0,
    }
}

impl Decider {
    fn run(mut self, rx: Receiver<Task>) {
        let group_max = self.config.group_requests_max.max(1);
        let wait = Duration::from_micros(self.config.group_wait_us_max);
        let poll = Duration::from_micros(COMMITTER_POLL_US);
        let mut open = Open::default();
        let mut arrived: Vec<Job> = Vec::with_capacity(group_max);
        // A prune or intent write, sent to the committer after the open batch.
        let mut side: Option<Side> = None;
        let mut connected = true;
        loop {
            if open.jobs.is_empty() && arrived.is_empty() && side.is_none() {
                if !connected {
                    break;
                }
                // A new batch: wait for its first request, then gather more for at most
                // `group_wait_us_max` (as long as nothing else is open, the committer is idle).
                match rx.recv() {
                    Ok(Task::Request(job)) => arrived.push(job),
                    Ok(Task::Side(write)) => side = Some(write),
                    Err(_) => break,
                }
                let deadline = Instant::now() + wait;
                while side.is_none() && arrived.len() < group_max {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let next = match rx.try_recv() {
                        Ok(task) => task,
                        Err(_) if left.is_zero() => break,
                        Err(_) => match rx.recv_timeout(left) {
                            Ok(task) => task,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => {
                                connected = false;
                                break;
                            }
                        },
                    };
                    match next {
                        Task::Request(job) => arrived.push(job),
                        Task::Side(write) => side = Some(write),
                    }
                }
            }
            // Take whatever else is queued, up to the batch's bound — and while a batch is
            // open, at most EXTEND_REQUESTS_MAX at a time, so the decider looks at the
            // committer between chunks and hands the batch over as soon as it may.
            while connected
                && side.is_none()
                && !self.full(&open, &arrived, group_max)
                && (open.jobs.is_empty() || arrived.len() < EXTEND_REQUESTS_MAX)
            {
                match rx.try_recv() {
                    Ok(Task::Request(job)) => arrived.push(job),
                    Ok(Task::Side(write)) => side = Some(write),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => connected = false,
                }
            }
            if !arrived.is_empty() {
                self.extend(&mut open, &mut arrived);
            }
            // Hand the batch over once the committer is free to take it (or it is full, or a
            // prune, an intent write or shutdown must go after it); until then it stays open
            // for more.
            if !open.jobs.is_empty()
                && (side.is_some()
                    || !connected
                    || self.full(&open, &arrived, group_max)
                    || self.committer_free())
            {
                self.hand_over(&mut open);
            }
            if open.jobs.is_empty()
                && let Some(write) = side.take()
            {
                let _ = self.to_commit.send(ToCommit::Side(write));
            }
            if !open.jobs.is_empty() && connected {
                // The committer is busy: wait for a request to add, or look at it again soon.
                match rx.recv_timeout(poll) {
                    Ok(Task::Request(job)) => arrived.push(job),
                    Ok(Task::Side(write)) => side = Some(write),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => connected = false,
                }
            }
        }
    }

    fn full(&self, open: &Open, arrived: &[Job], group_max: usize) -> bool {
        open.jobs.len() + arrived.len() >= group_max
            || open.item_bytes + arrived.iter().map(item_bytes).sum::<usize>()
                >= OPEN_ITEM_BYTES_MAX
    }

    /// Every batch handed over is done (or the committer is gone: the hand-over then fails
    /// the batch's requests with `Closed`).
    fn committer_free(&self) -> bool {
        self.shared.syncing_seq.load(Ordering::Acquire) + 1 >= self.next_seq
            || self.shared.finished_seq.load(Ordering::Acquire) + 1 >= self.next_seq
            || self.committer.is_finished()
    }

    /// If a batch this view was built on did not commit as decided (a database error, or
    /// another process wrote meanwhile), lets the committer finish every batch already sent —
    /// it fails or re-decides them — then starts over from the database alone. Returns whether
    /// it started over.
    fn start_over_if_failed(&mut self) -> bool {
        if self.shared.failed_epoch.load(Ordering::Acquire) != self.epoch {
            return false;
        }
        let sent = self.next_seq - 1;
        while self.shared.finished_seq.load(Ordering::Acquire) < sent
            && !self.committer.is_finished()
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        self.pending = Pending::default();
        self.epoch += 1;
        true
    }

    /// Decides the `arrived` requests in order onto the open batch's overlay (each seeing the
    /// effects of the batch's earlier requests and of the batches still being committed) and
    /// signs their new authorizations at once. If the open batch's view went stale, or a
    /// signature was refused, the whole open batch is decided again (nothing of it was written
    /// or answered). A database error fails every request of the open batch.
    fn extend(&mut self, open: &mut Open, arrived: &mut Vec<Job>) {
        let redo_all = self.start_over_if_failed();
        // Read the committed sequence number before the database snapshot is taken, so every
        // batch forgotten here is in that snapshot.
        self.pending
            .forget_committed(self.shared.committed_seq.load(Ordering::Acquire));
        open.item_bytes += arrived.iter().map(item_bytes).sum::<usize>();
        let mut start = open.jobs.len();
        open.jobs.append(arrived);
        // Our read snapshot lives only while we hold the gate (see `Shared::read_gate`).
        let shared = self.shared.clone();
        let _gate = shared.read_gate.lock().unwrap_or_else(|p| p.into_inner());
        let r = (|| -> Result<(), StoreError> {
            let tx = self.conn.transaction().map_err(db)?;
            if redo_all {
                open.overlay = Overlay::default();
                open.replies.clear();
                start = 0;
            }
            let deferred = DeferredSigner::default();
            let mut refused = false;
            for i in start..open.jobs.len() {
                let reply = decide_one(
                    &tx,
                    &self.pending,
                    &mut open.overlay,
                    &open.jobs[i],
                    i,
                    &self.limits,
                    &deferred,
                )?;
                open.replies.push(reply);
            }
            let tasks = std::mem::take(&mut *deferred.0.lock().unwrap_or_else(|p| p.into_inner()));
            if !tasks.is_empty() {
                let signed = self.pool.sign(&*self.signer, tasks);
                if signed.iter().any(|(_, r)| r.is_err()) {
                    refused = true;
                } else {
                    let signed: HashMap<PieceId, Vec<u8>> = signed
                        .into_iter()
                        .filter_map(|(id, r)| r.ok().map(|s| (id, s)))
                        .collect();
                    patch_signatures(&mut open.overlay, &mut open.replies[start..], &signed);
                }
            }
            if refused {
                // A refused signature must leave its request without effect, and later
                // requests may have decided on top of it: decide the open batch again,
                // signing each authorization as it is decided (nothing was written).
                let (o, r) =
                    decide_batch(&tx, &self.pending, &open.jobs, &self.limits, &*self.signer)?;
                open.overlay = o;
                open.replies = r;
            }
            // The read transaction only pinned a snapshot.
            drop(tx);
            Ok(())
        })();
        if let Err(e) = r {
            for job in std::mem::take(open).jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }

    /// Checks the control sum of every account the open batch touched, seals its write set
    /// and hands it to the committer (blocking while one sealed batch already waits).
    fn hand_over(&mut self, open: &mut Open) {
        if self.start_over_if_failed() {
            // Decide the whole open batch again on the fresh view.
            let mut jobs = std::mem::take(&mut open.jobs);
            *open = Open::default();
            self.extend(open, &mut jobs);
            if open.jobs.is_empty() {
                return;
            }
        }
        let Open {
            jobs,
            overlay,
            replies,
            ..
        } = std::mem::take(open);
        let rows = check_invariant(&overlay).and_then(|()| build_rows(&overlay, &jobs, &replies));
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        let seq = self.next_seq;
        for (id, index) in &overlay.remember {
            if let (Some(job), Some(reply)) = (jobs.get(*index), replies.get(*index)) {
                self.pending
                    .seen
                    .insert(*id, (seq, job.fingerprint, reply.clone()));
            }
        }
        // Later batches see this one's rows until it is committed.
        let mut overlay = overlay;
        for id in std::mem::take(&mut overlay.dirty_accounts) {
            if let Some(a) = overlay.accounts.remove(&id) {
                self.pending.accounts.insert(id, (seq, a));
            }
        }
        for id in std::mem::take(&mut overlay.dirty_pieces) {
            if let Some(p) = overlay.pieces.remove(&id) {
                self.pending.pieces.insert(id, (seq, p));
            }
        }
        self.next_seq += 1;
        let sealed = Sealed {
            seq,
            epoch: self.epoch,
            rows,
            jobs,
            replies,
        };
        // Blocks while a full batch already waits for the committer (bounded pipeline).
        if let Err(std::sync::mpsc::SendError(ToCommit::Batch(sealed))) =
            self.to_commit.send(ToCommit::Batch(sealed))
        {
            for job in sealed.jobs {
                let _ = job.reply.send(Err(StoreError::Closed));
            }
        }
    }
}

/// One PASSIVE checkpoint; returns the number of frames in the WAL, or `None` when another
/// checkpoint was running (SQLite runs one at a time; try again later).
fn checkpoint(conn: &Connection) -> Result<Option<u64>, StoreError> {
    let (busy, log): (i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(db)?;
    Ok((busy == 0).then(|| u64::try_from(log).unwrap_or(0)))
}

/// The control sum of every account the batch touched, before anything is written.
fn check_invariant(overlay: &Overlay) -> Result<(), StoreError> {
    for id in &overlay.dirty_accounts {
        if let Some(a) = overlay.accounts.get(id)
            && a.registers.check().is_err()
        {
            return Err(StoreError::InvariantBroken(format!(
                "{id}: {:?}",
                a.registers
            )));
        }
    }
    Ok(())
}

/// The rows a decided batch writes: each changed row once in its final state, the audit
/// records in order, the idempotency records.
fn build_rows(overlay: &Overlay, batch: &[Job], replies: &[Reply]) -> Result<Rows, StoreError> {
    let mut rows = Rows {
        accounts: Vec::with_capacity(overlay.dirty_accounts.len()),
        new_pieces: Vec::with_capacity(overlay.fresh_pieces.len()),
        changed_pieces: Vec::with_capacity(overlay.dirty_pieces.len()),
        audit: overlay.audit.clone(),
        idempotency: Vec::with_capacity(overlay.remember.len()),
    };
    for id in &overlay.dirty_accounts {
        if let Some(a) = overlay.accounts.get(id) {
            rows.accounts.push(AccountRow::from_account(a)?);
        }
    }
    for id in &overlay.dirty_pieces {
        if let Some(p) = overlay.pieces.get(id) {
            let row = PieceRow::from_piece(p)?;
            if overlay.fresh_pieces.contains(id) {
                rows.new_pieces.push(row);
            } else {
                rows.changed_pieces.push(row);
            }
        }
    }
    for (id, index) in &overlay.remember {
        let (Some(job), Some(reply)) = (batch.get(*index), replies.get(*index)) else {
            continue;
        };
        rows.idempotency.push(IdempotencyRow {
            key: id.to_bytes(),
            fingerprint: job.fingerprint,
            reply: store::encode_stored_reply(reply),
            at_ms: int(job.now_ms)?,
            permanent: store::permanent(&job.request.op),
        });
    }
    Ok(rows)
}

impl Committer {
    fn run(mut self, rx: Receiver<ToCommit>) {
        let mut bad_epoch = None;
        while let Ok(item) = rx.recv() {
            match item {
                ToCommit::Batch(b) => {
                    let t0 = Instant::now();
                    let n = b.jobs.len();
                    let r = if bad_epoch == Some(b.epoch) {
                        Err(StoreError::Database(
                            "an earlier batch this one depends on failed; retry".into(),
                        ))
                    } else {
                        self.commit(b.seq, b.epoch, &b.rows, &b.jobs)
                    };
                    tracing::trace!(
                        requests = n,
                        took_us = t0.elapsed().as_micros() as u64,
                        "ledger group committed"
                    );
                    let done =
                        |shared: &Shared| shared.finished_seq.store(b.seq, Ordering::Release);
                    match r {
                        Ok(redone) => {
                            // Committed: readers (the decider among them) see it now.
                            self.shared.committed_seq.store(b.seq, Ordering::Release);
                            self.shared.batches_committed.fetch_add(1, Ordering::AcqRel);
                            self.shared
                                .requests_committed
                                .fetch_add(n as u64, Ordering::AcqRel);
                            done(&self.shared);
                            // The client may have gone away; its effect is durable either way.
                            let replies = redone.unwrap_or(b.replies);
                            for (job, reply) in b.jobs.into_iter().zip(replies) {
                                let _ = job.reply.send(Ok(reply));
                            }
                            self.restart_wal_if_wanted();
                        }
                        Err(e) => {
                            bad_epoch = Some(b.epoch);
                            self.shared.failed_epoch.store(b.epoch, Ordering::Release);
                            done(&self.shared);
                            for job in b.jobs {
                                let _ = job.reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
                ToCommit::Side(Side::Prune {
                    before_ms,
                    max,
                    reply,
                }) => {
                    let _ = reply.send(self.prune(before_ms, max));
                }
                ToCommit::Side(Side::Intent(write, reply)) => {
                    let _ = reply.send(self.write_intent(&write));
                }
                ToCommit::Side(Side::Tender(tender, reply)) => {
                    let _ = reply.send(self.write_tender(&tender));
                }
            }
        }
    }

    /// If the checkpoint thread found the WAL long, copies what it has not yet copied (the
    /// batches committed since its last pass) so that every frame is in the database file;
    /// the next transaction then writes the WAL from its start. Runs after the batch's
    /// answers; the next batch waits for it, but it comes once per `wal_frames_max` frames
    /// and copies only a short tail.
    fn restart_wal_if_wanted(&mut self) {
        if !self.shared.wal_restart_wanted.swap(false, Ordering::AcqRel) {
            return;
        }
        match checkpoint(&self.conn) {
            Ok(Some(_)) => self.restart_next = true,
            // The checkpoint thread's pass was running, or this one failed: try again after
            // the next batch.
            other => {
                if let Err(e) = other {
                    tracing::warn!(error = %e, "ledger WAL checkpoint failed; will retry");
                }
                self.shared
                    .wal_restart_wanted
                    .store(true, Ordering::Release);
            }
        }
    }

    fn data_version(conn: &Connection) -> Result<i64, StoreError> {
        conn.query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(db)
    }

    /// One transaction: every row of the batch, then commit (one fsync of the WAL).
    ///
    /// If another process committed since our last transaction, the decider may have decided
    /// on rows that changed: the batch is decided again here, under the write lock, from the
    /// database alone (signing inline), and `Some(replies)` replaces the decider's. Later
    /// batches of the same epoch come here too until the decider has dropped its pending rows.
    fn commit(
        &mut self,
        seq: u64,
        epoch: u64,
        rows: &Rows,
        jobs: &[Job],
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        // Starting the WAL over: no decider snapshot may be open meanwhile (the decider waits
        // at most this one transaction).
        let shared = self.shared.clone();
        let _gate = std::mem::take(&mut self.restart_next)
            .then(|| shared.read_gate.lock().unwrap_or_else(|p| p.into_inner()));
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let version = Self::data_version(&tx)?;
        let moved = version != self.data_version;
        let stale = moved || self.stale_epoch == Some(epoch);
        self.data_version = version;
        // Kept only across transactions that commit; another process's writes move it too.
        let mut cursor = match self.cursor.take() {
            Some(c) if !moved => c,
            _ => WriteCursor::load(&tx)?,
        };
        if !stale {
            write_rows(&tx, &mut cursor, rows)?;
            self.shared.syncing_seq.store(seq, Ordering::Release);
            tx.commit().map_err(db)?;
            self.cursor = Some(cursor);
            return Ok(None);
        }
        self.stale_epoch = Some(epoch);
        self.shared.failed_epoch.store(epoch, Ordering::Release);
        let (overlay, replies) =
            decide_batch(&tx, &Pending::default(), jobs, &self.limits, &*self.signer)?;
        check_invariant(&overlay)?;
        write_rows(&tx, &mut cursor, &build_rows(&overlay, jobs, &replies)?)?;
        tx.commit().map_err(db)?;
        self.cursor = Some(cursor);
        Ok(Some(replies))
    }

    /// Decides and records a tender in a transaction of its own (committed before the answer).
    fn write_tender(&mut self, asked: &report::Tender) -> Result<store::TenderAnswer, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let basket = asked.basket.to_bytes();
        let existing = read_tender(&tx, &basket)?;
        let mut found = Vec::with_capacity(asked.pieces.len());
        if existing.is_none() && report::check_shape(asked).is_ok() {
            for serial in &asked.pieces {
                let id = PieceId {
                    account: asked.account,
                    serial: *serial,
                };
                let holder: Option<Vec<u8>> = tx
                    .prepare_cached(TENDER_PIECE_SQL)
                    .map_err(db)?
                    .query_row(params![int(id.account.0)?, int(serial.0)?], |r| r.get(0))
                    .optional()
                    .map_err(db)?;
                found.push(report::TenderPiece {
                    serial: *serial,
                    piece: get_piece(&tx, id)?,
                    basket: holder
                        .map(|b| {
                            <[u8; 16]>::try_from(b.as_slice())
                                .map(RequestId::from_bytes)
                                .map_err(|_| corrupt("tender piece basket id"))
                        })
                        .transpose()?,
                });
            }
        }
        let stored = match report::decide_tender(asked, existing.as_ref(), &found) {
            Err(e) => return Ok(Err(e)),
            Ok(report::TenderDecision::Replay(t)) => return Ok(Ok(t)),
            Ok(report::TenderDecision::Insert(t)) => t,
        };
        tx.prepare_cached(TENDER_INSERT_SQL)
            .map_err(db)?
            .execute(params![
                basket.as_slice(),
                int(stored.account.0)?,
                stored.clerk,
                int(stored.terminal.0)?,
                stored.kind.as_str(),
                int(stored.tendered.get())?,
                int(stored.change.get())?,
                int(stored.total.get())?,
                int(stored.recorded_at_ms)?,
            ])
            .map_err(db)?;
        for (position, serial) in stored.pieces.iter().enumerate() {
            tx.prepare_cached(TENDER_PIECE_INSERT_SQL)
                .map_err(db)?
                .execute(params![
                    int(stored.account.0)?,
                    int(serial.0)?,
                    basket.as_slice(),
                    position as i64,
                ])
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(Ok(stored))
    }

    /// Records or resolves a payment intent in a transaction of its own (committed, so durable,
    /// before the answer).
    fn write_intent(&mut self, write: &IntentWrite) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        match write {
            IntentWrite::Record(i) => {
                tx.prepare_cached(INTENT_INSERT_SQL)
                    .map_err(db)?
                    .execute(params![
                        i.request.to_bytes().as_slice(),
                        int(i.account.0)?,
                        int(i.amount.get())?,
                        store::encode_method(&i.method),
                        int(i.started_at_ms)?,
                    ])
                    .map_err(db)?;
            }
            IntentWrite::Resolve {
                request,
                resolution,
                at_ms,
            } => {
                tx.prepare_cached(INTENT_RESOLVE_SQL)
                    .map_err(db)?
                    .execute(params![
                        request.to_bytes().as_slice(),
                        int(*at_ms)?,
                        resolution.as_str(),
                    ])
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    /// Deletes up to `max` records older than `before_ms`, walking the log from its oldest
    /// end (commit order) and stopping at the first younger record; account openings
    /// (`permanent`) and the records of top-ups whose payment intent is open stay. Records
    /// left below `prune_from` are all permanent.
    fn prune(&mut self, before_ms: u64, max: u32) -> Result<u64, StoreError> {
        /// Records read per step of the walk.
        const PRUNE_SCAN_ROWS: i64 = 256;
        let before = int(before_ms)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut deleted = 0u64;
        // The walk's position, and how far every record left is permanent (the next walk's
        // start): a record kept for an open intent holds that point back.
        let mut walked = self.prune_from;
        let mut last = self.prune_from;
        let mut held = false;
        'walk: loop {
            let rows: Vec<(i64, i64, bool, bool)> = tx
                .prepare_cached(IDEMPOTENCY_OLDEST_SQL)
                .map_err(db)?
                .query_map(params![walked, PRUNE_SCAN_ROWS], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            if rows.is_empty() {
                break;
            }
            for (id, at_ms, permanent, intent_open) in rows {
                if deleted >= u64::from(max) || at_ms >= before {
                    break 'walk;
                }
                walked = id;
                if intent_open {
                    held = true;
                    continue;
                }
                if !held {
                    last = id;
                }
                if !permanent {
                    tx.prepare_cached(IDEMPOTENCY_DELETE_SQL)
                        .map_err(db)?
                        .execute([id])
                        .map_err(db)?;
                    deleted += 1;
                }
            }
        }
        tx.commit().map_err(db)?;
        self.prune_from = last;
        Ok(deleted)
    }
}

/// Decides every request of the batch in order, each seeing the effects of those before it.
fn decide_batch(
    conn: &Connection,
    pending: &Pending,
    batch: &[Job],
    limits: &LedgerLimits,
    signer: &dyn ItemSigner,
) -> Result<(Overlay, Vec<Reply>), StoreError> {
    let mut overlay = Overlay::default();
    let mut replies = Vec::with_capacity(batch.len());
    for (i, job) in batch.iter().enumerate() {
        let reply = decide_one(conn, pending, &mut overlay, job, i, limits, signer)?;
        replies.push(reply);
    }
    Ok((overlay, replies))
}

#[allow(clippy::too_many_arguments)]
fn decide_one(
    conn: &Connection,
    pending: &Pending,
    overlay: &mut Overlay,
    job: &Job,
    index: usize,
    limits: &LedgerLimits,
    signer: &dyn ItemSigner,
) -> Result<Reply, StoreError> {
    let request = &job.request;
    let existing = match overlay.seen.get(&request.id) {
        Some((fp, reply)) => Some(IdempotencyRecord {
            fingerprint: **fp,
            reply: reply.clone(),
        }),
        None => match pending.seen.get(&request.id) {
            Some((_, fp, reply)) => Some(IdempotencyRecord {
                fingerprint: *fp,
                reply: reply.clone(),
            }),
            None => match read_idempotency(conn, request.id)? {
                Some(mut record) => {
                    restore_signature(conn, pending, overlay, &mut record.reply)?;
                    Some(record)
                }
                None => None,
            },
        },
    };
    if let Some(reply) = ops::replay_with(existing, request, &job.fingerprint) {
        return Ok(reply);
    }
    let snap = load(conn, pending, overlay, &request.op, job.now_ms)?;
    let reply = match ops::decide(&snap, request, job.now_ms, limits, signer) {
        Ok((outcome, changes)) => {
            overlay.apply(changes);
            Ok(outcome)
        }
        Err(e) => Err(e),
    };
    if store::remember(&reply) {
        overlay
            .seen
            .insert(request.id, (Arc::new(job.fingerprint), reply.clone()));
        overlay.remember.push((request.id, index));
    }
    Ok(reply)
}

/// Puts an authorization's signed item back into a stored reply from its piece.
fn restore_signature(
    conn: &Connection,
    pending: &Pending,
    overlay: &mut Overlay,
    reply: &mut Reply,
) -> Result<(), StoreError> {
    if let Ok(Outcome::Authorized(a)) = reply
        && a.signed.is_empty()
    {
        match overlay_piece(conn, pending, overlay, a.id)? {
            Some(p) => a.signed = p.signed.clone(),
            None => {
                return Err(corrupt(format!(
                    "stored authorization {} has no piece",
                    a.id
                )));
            }
        }
    }
    Ok(())
}

fn read_idempotency(
    conn: &Connection,
    id: RequestId,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let key = id.to_bytes();
    let existing = conn
        .prepare_cached("SELECT fingerprint, reply FROM idempotency WHERE request_id = ?1")
        .map_err(db)?
        .query_row([&key[..]], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })
        .optional()
        .map_err(db)?;
    match existing {
        Some((fp, reply)) => Ok(Some(IdempotencyRecord {
            fingerprint: store::hash32(&fp)?,
            reply: ops::decode_reply(&reply).map_err(corrupt)?,
        })),
        None => Ok(None),
    }
}

/// Puts the signatures into the batch's new pieces and into the replies that carry them.
fn patch_signatures(
    overlay: &mut Overlay,
    replies: &mut [Reply],
    signed: &HashMap<PieceId, Vec<u8>>,
) {
    for (id, sig) in signed {
        if let Some(p) = overlay.pieces.get_mut(id) {
            p.signed = sig.clone();
        }
    }
    // The remembered replies too: a retry decided onto the same open batch in a later chunk
    // replays the remembered reply, which must carry the signed item.
    let remembered = overlay.seen.values_mut().map(|(_, reply)| reply);
    for reply in replies.iter_mut().chain(remembered) {
        if let Ok(Outcome::Authorized(a)) = reply
            && let Some(sig) = signed.get(&a.id)
        {
            a.signed = sig.clone();
        }
    }
}

const ACCOUNT_COLS: &str = "id, license, status, descending, pending, ascending, control, last_piece, audit_seq, audit_head";
/// Selects a piece with its signed item and description, for [`piece_row`] (a macro so the
/// statements below are whole literals, not strings built on every lookup).
macro_rules! piece_select {
    () => {
        "SELECT p.account, p.serial, p.kind, p.amount, p.state, p.authorized_at_ms, \
         p.expires_at_ms, p.printed_at_ms, p.refund, p.refund_submitted_at_ms, p.scanned, \
         d.signed, d.item, p.terminal, p.scan_count, p.scan_recorded_at_ms \
         FROM pieces p JOIN piece_data d ON d.id = p.data "
    };
}
const PIECE_BY_ID_SQL: &str = concat!(piece_select!(), "WHERE p.account = ?1 AND p.serial = ?2");
/// Refund requests awaiting a decision, oldest first (ties by piece, as PostgreSQL orders them;
/// found through `pieces_refunds_awaiting`).
const REFUNDS_AWAITING_SQL: &str = concat!(
    piece_select!(),
    "WHERE p.refund = 'submitted' ORDER BY p.refund_submitted_at_ms, p.account, p.serial LIMIT ?1"
);
/// One account's (`?2`) refund requests awaiting a decision, oldest first.
const ACCOUNT_REFUNDS_AWAITING_SQL: &str = concat!(
    piece_select!(),
    "WHERE p.refund = 'submitted' AND p.account = ?2 \
     ORDER BY p.refund_submitted_at_ms, p.account, p.serial LIMIT ?1"
);
/// The pieces authorized in `[?1, ?2)`, in time order (through `pieces_authorized`).
const DAY_PIECES_SQL: &str = concat!(
    piece_select!(),
    "WHERE p.authorized_at_ms >= ?1 AND p.authorized_at_ms < ?2 \
     AND (?3 IS NULL OR p.account = ?3) \
     ORDER BY p.authorized_at_ms, p.account, p.serial LIMIT ?4"
);
const TENDER_SQL: &str = "SELECT basket, account, clerk, terminal, kind, tendered, \
     change_given, total, recorded_at_ms FROM tenders WHERE basket = ?1";
/// The tenders recorded in `[?1, ?2)`, in time order (through `tenders_recorded`).
const DAY_TENDERS_SQL: &str = "SELECT basket, account, clerk, terminal, kind, tendered, \
     change_given, total, recorded_at_ms FROM tenders \
     WHERE recorded_at_ms >= ?1 AND recorded_at_ms < ?2 AND (?3 IS NULL OR account = ?3) \
     ORDER BY recorded_at_ms, basket LIMIT ?4";
const TENDER_PIECES_SQL: &str =
    "SELECT serial FROM tender_pieces WHERE basket = ?1 ORDER BY position";
const TENDER_PIECE_SQL: &str =
    "SELECT basket FROM tender_pieces WHERE account = ?1 AND serial = ?2";
const TENDER_INSERT_SQL: &str = "INSERT INTO tenders (basket, account, clerk, terminal, kind, \
     tendered, change_given, total, recorded_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
const TENDER_PIECE_INSERT_SQL: &str =
    "INSERT INTO tender_pieces (account, serial, basket, position) VALUES (?1, ?2, ?3, ?4)";

type TenderCols = (Vec<u8>, i64, String, i64, String, i64, i64, i64, i64);

fn tender_cols(r: &rusqlite::Row<'_>) -> rusqlite::Result<TenderCols> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
        r.get(7)?,
        r.get(8)?,
    ))
}

/// A stored tender's columns with its pieces, in order.
fn tender_of(conn: &Connection, c: TenderCols) -> Result<report::Tender, StoreError> {
    let pieces: Vec<i64> = conn
        .prepare_cached(TENDER_PIECES_SQL)
        .map_err(db)?
        .query_map([c.0.as_slice()], |r| r.get(0))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    store::tender_from_columns(&c.0, c.1, c.2, c.3, &c.4, c.5, c.6, c.7, c.8, pieces)
}

fn read_tender(conn: &Connection, basket: &[u8]) -> Result<Option<report::Tender>, StoreError> {
    let cols = conn
        .prepare_cached(TENDER_SQL)
        .map_err(db)?
        .query_row([basket], tender_cols)
        .optional()
        .map_err(db)?;
    cols.map(|c| tender_of(conn, c)).transpose()
}

/// One account's unsettled pieces, oldest first (through `pieces_unsettled`).
const UNSETTLED_SQL: &str = concat!(
    piece_select!(),
    "WHERE p.state = 'unsettled' AND p.account = ?1 ORDER BY p.serial LIMIT ?2"
);
/// Reservations past their expiry, oldest first.
const DUE_SQL: &str = concat!(
    piece_select!(),
    "WHERE p.state = 'reserved' AND p.expires_at_ms <= ?1 ORDER BY p.expires_at_ms LIMIT ?2"
);

fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
    Ok(AccountRow {
        id: r.get(0)?,
        license: r.get(1)?,
        status: r.get(2)?,
        descending: r.get(3)?,
        pending: r.get(4)?,
        ascending: r.get(5)?,
        control: r.get(6)?,
        last_piece: r.get(7)?,
        audit_seq: r.get(8)?,
        audit_head: r.get(9)?,
    })
}

fn piece_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PieceRow> {
    Ok(PieceRow {
        account: r.get(0)?,
        serial: r.get(1)?,
        kind: r.get(2)?,
        amount: r.get(3)?,
        state: r.get(4)?,
        authorized_at_ms: r.get(5)?,
        expires_at_ms: r.get(6)?,
        printed_at_ms: r.get(7)?,
        refund: r.get(8)?,
        refund_submitted_at_ms: r.get(9)?,
        scanned: r.get(10)?,
        signed: r.get(11)?,
        item: r.get(12)?,
        terminal: r.get(13)?,
        scan_count: r.get(14)?,
        scan_recorded_at_ms: r.get(15)?,
    })
}

fn get_account(conn: &Connection, id: AccountId) -> Result<Option<Account>, StoreError> {
    conn.prepare_cached(
        "SELECT id, license, status, descending, pending, ascending, control, last_piece, \
         audit_seq, audit_head FROM accounts WHERE id = ?1",
    )
    .map_err(db)?
    .query_row([int(id.0)?], account_row)
    .optional()
    .map_err(db)?
    .map(AccountRow::into_account)
    .transpose()
}

fn get_piece(conn: &Connection, id: PieceId) -> Result<Option<Piece>, StoreError> {
    conn.prepare_cached(PIECE_BY_ID_SQL)
        .map_err(db)?
        .query_row([int(id.account.0)?, int(id.serial.0)?], piece_row)
        .optional()
        .map_err(db)?
        .map(PieceRow::into_piece)
        .transpose()
}

/// Loads the rows `op` names into a snapshot: the batch's version of a row if it has one,
/// otherwise the database's (then kept in the overlay for the rest of the batch).
fn load(
    conn: &Connection,
    pending: &Pending,
    overlay: &mut Overlay,
    op: &ops::Op,
    now_ms: u64,
) -> Result<Snapshot, StoreError> {
    let keys = op.keys();
    let mut snap = Snapshot::default();
    if keys.next_account {
        let next: i64 = conn
            .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM accounts", [], |r| {
                r.get(0)
            })
            .map_err(db)?;
        let mut next = AccountId(store::uint(next)?);
        let newest = overlay.accounts.keys().chain(pending.accounts.keys()).max();
        if let Some(max) = newest
            && max.0 >= next.0
        {
            next = AccountId(max.0 + 1);
        }
        snap.next_account = next;
    }
    let mut accounts = keys.accounts;
    for id in keys.pieces {
        if let Some(p) = overlay_piece(conn, pending, overlay, id)? {
            snap.pieces.insert(id, p.clone());
        }
    }
    if let Some(max) = keys.due_max {
        let mut due: Vec<Piece> = Vec::new();
        {
            let mut stmt = conn.prepare_cached(DUE_SQL).map_err(db)?;
            let rows = stmt
                .query_map(params![int(now_ms)?, i64::from(max)], piece_row)
                .map_err(db)?;
            for row in rows {
                let p = row.map_err(db)?.into_piece()?;
                // This batch or one being committed may already have ended it.
                match overlay.pieces.get(&p.id) {
                    Some(mine) => due.push(mine.clone()),
                    None => match pending.pieces.get(&p.id) {
                        Some((_, theirs)) => due.push(theirs.clone()),
                        None => due.push(p),
                    },
                }
            }
        }
        // Reservations made by this batch or one being committed are not in the database yet.
        for p in overlay
            .pieces
            .values()
            .chain(pending.pieces.values().map(|(_, p)| p))
            .filter(|p| p.state == PieceState::Reserved && p.expires_at_ms <= now_ms)
        {
            if !due.iter().any(|d| d.id == p.id) {
                due.push(p.clone());
            }
        }
        due.retain(|p| p.state == PieceState::Reserved && p.expires_at_ms <= now_ms);
        due.sort_by_key(|p| (p.expires_at_ms, p.id));
        due.truncate(max as usize);
        for p in due {
            accounts.push(p.id.account);
            overlay.pieces.entry(p.id).or_insert_with(|| p.clone());
            snap.pieces.insert(p.id, p);
        }
    }
    for id in accounts {
        if let Some(a) = overlay_account(conn, pending, overlay, id)? {
            snap.accounts.insert(id, a.clone());
        }
    }
    Ok(snap)
}

fn overlay_account<'o>(
    conn: &Connection,
    pending: &Pending,
    overlay: &'o mut Overlay,
    id: AccountId,
) -> Result<Option<&'o Account>, StoreError> {
    use std::collections::hash_map::Entry;
    match overlay.accounts.entry(id) {
        Entry::Occupied(e) => Ok(Some(e.into_mut())),
        Entry::Vacant(e) => {
            let found = match pending.accounts.get(&id) {
                Some((_, a)) => Some(a.clone()),
                None => get_account(conn, id)?,
            };
            Ok(found.map(|a| &*e.insert(a)))
        }
    }
}

fn overlay_piece<'o>(
    conn: &Connection,
    pending: &Pending,
    overlay: &'o mut Overlay,
    id: PieceId,
) -> Result<Option<&'o Piece>, StoreError> {
    use std::collections::hash_map::Entry;
    match overlay.pieces.entry(id) {
        Entry::Occupied(e) => Ok(Some(e.into_mut())),
        Entry::Vacant(e) => {
            let found = match pending.pieces.get(&id) {
                Some((_, p)) => Some(p.clone()),
                None => get_piece(conn, id)?,
            };
            Ok(found.map(|p| &*e.insert(p)))
        }
    }
}

const ACCOUNT_UPSERT_HEAD: &str = "INSERT INTO accounts (id, license, status, descending, \
    pending, ascending, control, last_piece, audit_seq, audit_head, audit_last) VALUES ";
const ACCOUNT_UPSERT_TAIL: &str = " ON CONFLICT(id) DO UPDATE SET license = excluded.license, \
    status = excluded.status, descending = excluded.descending, pending = excluded.pending, \
    ascending = excluded.ascending, control = excluded.control, \
    last_piece = excluded.last_piece, audit_seq = excluded.audit_seq, \
    audit_head = excluded.audit_head, \
    audit_last = COALESCE(excluded.audit_last, accounts.audit_last)";
const AUDIT_LAST_SQL: &str = "SELECT audit_last FROM accounts WHERE id = ?1";
/// An account's last audit record and when it was made.
const AUDIT_LAST_DAY_SQL: &str = "SELECT a.audit_last, r.at_ms FROM accounts a \
    LEFT JOIN audit r ON r.id = a.audit_last WHERE a.id = ?1";
/// The next audit row id: above every id ever used (AUTOINCREMENT keeps the largest in
/// sqlite_sequence) and every id present.
const AUDIT_NEXT_SQL: &str = "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence \
    WHERE name = 'audit'), 0), COALESCE((SELECT MAX(id) FROM audit), 0)) + 1";
const PIECE_INSERT_HEAD: &str = "INSERT INTO pieces (account, serial, kind, amount, state, \
    authorized_at_ms, expires_at_ms, printed_at_ms, refund, refund_submitted_at_ms, scanned, \
    data, terminal, scan_count, scan_recorded_at_ms) VALUES ";
const PIECE_DATA_INSERT_HEAD: &str = "INSERT INTO piece_data (id, signed, item) VALUES ";
const PIECE_UPDATE_SQL: &str = "UPDATE pieces SET state = ?3, printed_at_ms = ?4, refund = ?5, \
    refund_submitted_at_ms = ?6, scanned = ?7, scan_count = ?8, scan_recorded_at_ms = ?9 \
    WHERE serial = ?2 AND account = ?1";
/// The next piece_data id.
const PIECE_DATA_NEXT_SQL: &str = "SELECT COALESCE(MAX(id), 0) + 1 FROM piece_data";
const AUDIT_INSERT_HEAD: &str =
    "INSERT INTO audit (id, account, seq, at_ms, body, hash, prev) VALUES ";
/// One account's audit records, walking back from its last one.
const ACCOUNT_AUDIT_SQL: &str = "WITH RECURSIVE chain(id) AS ( \
        SELECT audit_last FROM accounts WHERE id = ?1 AND audit_last IS NOT NULL \
        UNION ALL \
        SELECT audit.prev FROM audit JOIN chain ON audit.id = chain.id \
        WHERE audit.prev IS NOT NULL) \
    SELECT audit.id, account, seq, at_ms, body, hash FROM audit JOIN chain \
    ON audit.id = chain.id ORDER BY seq";
/// Where a statement's walk back starts (`LedgerStore::account_statement`): the account's
/// last record before its first active day after the day holding the period's last instant
/// (?2); no row: the account's newest record.
const STATEMENT_START_SQL: &str = "SELECT last_id_before FROM audit_days \
    WHERE account = ?1 AND day > ?2 ORDER BY day LIMIT 1";
/// A statement's audit records: walking back from ?1 through the first one before the period
/// start (?2, its balance begins the period), and no further.
const ACCOUNT_AUDIT_FROM_SQL: &str = "WITH RECURSIVE chain(id, at_ms) AS ( \
        SELECT id, at_ms FROM audit WHERE id = ?1 \
        UNION ALL \
        SELECT p.id, p.at_ms FROM chain JOIN audit c ON c.id = chain.id \
        JOIN audit p ON p.id = c.prev WHERE chain.at_ms >= ?2) \
    SELECT audit.id, account, seq, audit.at_ms, body, hash FROM audit JOIN chain \
    ON audit.id = chain.id ORDER BY seq";
/// Marks the first record of an account's UTC day (migration 12).
const AUDIT_DAY_INSERT_SQL: &str =
    "INSERT OR IGNORE INTO audit_days (account, day, last_id_before) VALUES (?1, ?2, ?3)";
/// Milliseconds in a UTC day (the unit of `audit_days.day`).
const DAY_MS: i64 = 86_400_000;
const IDEMPOTENCY_INSERT_HEAD: &str = "INSERT INTO idempotency \
    (id, request_id, fingerprint, reply, at_ms, permanent) VALUES ";
/// The next idempotency log id.
const IDEMPOTENCY_NEXT_SQL: &str = "SELECT COALESCE(MAX(id), 0) + 1 FROM idempotency";
/// The log's oldest end: ids, ages and permanence, oldest first.
const IDEMPOTENCY_OLDEST_SQL: &str = "SELECT i.id, i.at_ms, i.permanent, \
    EXISTS (SELECT 1 FROM payment_intents p WHERE p.request_id = i.request_id \
    AND p.resolved_at_ms IS NULL) FROM idempotency i WHERE i.id > ?1 ORDER BY i.id LIMIT ?2";
const INTENT_INSERT_SQL: &str = "INSERT INTO payment_intents \
    (request_id, account, amount, method, started_at_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
    ON CONFLICT (request_id) DO NOTHING";
const INTENT_RESOLVE_SQL: &str = "UPDATE payment_intents SET resolved_at_ms = ?2, \
    resolution = ?3 WHERE request_id = ?1 AND resolved_at_ms IS NULL";
const INTENT_OPEN_SQL: &str = "SELECT request_id, account, amount, method, started_at_ms \
    FROM payment_intents WHERE resolved_at_ms IS NULL AND started_at_ms < ?1 \
    ORDER BY started_at_ms LIMIT ?2";
const IDEMPOTENCY_DELETE_SQL: &str = "DELETE FROM idempotency WHERE id = ?1";

/// The ids the committer gives the rows it appends — audit records, piece data, idempotency
/// records — and each account's last audit record. Only the committer writes, so it keeps
/// this in memory between batches; it is dropped (and read again) after a failed transaction
/// or when another process wrote.
struct WriteCursor {
    next_audit_id: i64,
    /// Each account's last audit record (id and UTC day), as committed (or written by the
    /// batch being written); at most [`AUDIT_LAST_CACHED_MAX`] between batches, read again
    /// from `accounts.audit_last` when missing.
    last: HashMap<AccountId, Option<(i64, i64)>>,
    /// The id the next piece_data row gets.
    next_data_id: i64,
    /// The id the next idempotency record gets.
    next_reply_id: i64,
}

/// Most accounts whose last audit record the committer keeps between batches.
const AUDIT_LAST_CACHED_MAX: usize = 65_536;

/// Takes the id `next` holds and moves it on.
fn take_id(next: &mut i64, what: &str) -> Result<i64, StoreError> {
    let id = *next;
    *next = id
        .checked_add(1)
        .ok_or_else(|| corrupt(format!("{what} ids exhausted")))?;
    Ok(id)
}

impl WriteCursor {
    fn load(conn: &Connection) -> Result<WriteCursor, StoreError> {
        Ok(WriteCursor {
            next_audit_id: conn
                .query_row(AUDIT_NEXT_SQL, [], |r| r.get(0))
                .map_err(db)?,
            last: HashMap::new(),
            next_data_id: conn
                .query_row(PIECE_DATA_NEXT_SQL, [], |r| r.get(0))
                .map_err(db)?,
            next_reply_id: conn
                .query_row(IDEMPOTENCY_NEXT_SQL, [], |r| r.get(0))
                .map_err(db)?,
        })
    }

    /// The id for the account's next record (made at `at_ms`), the id of its previous one,
    /// and whether it is the account's first record of a later UTC day than the previous one
    /// (or its first at all): then `audit_days` marks the day.
    fn take(
        &mut self,
        conn: &Connection,
        account: AccountId,
        at_ms: i64,
    ) -> Result<(i64, Option<i64>, bool), StoreError> {
        let prev = match self.last.get(&account) {
            Some(prev) => *prev,
            None => conn
                .prepare_cached(AUDIT_LAST_DAY_SQL)
                .map_err(db)?
                .query_row([int(account.0)?], |r| {
                    Ok(
                        match (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?) {
                            (Some(id), Some(at)) => Some((id, at / DAY_MS)),
                            _ => None,
                        },
                    )
                })
                .optional()
                .map_err(db)?
                .flatten(),
        };
        let id = take_id(&mut self.next_audit_id, "audit record")?;
        let day = at_ms / DAY_MS;
        let new_day = prev.is_none_or(|(_, d)| d < day);
        self.last.insert(account, Some((id, day)));
        Ok((id, prev.map(|(p, _)| p), new_day))
    }
}

/// Rows per multi-row INSERT (the last statements of a batch take the powers of two below it,
/// so each table has at most 7 statement shapes in the statement cache).
const ROWS_PER_STATEMENT_MAX: usize = 64;

/// Inserts `rows` with as few statements as it can: `head` + `(?, …), (?, …)` + `tail`, each
/// row binding `width` values through `bind`.
fn insert_many<T>(
    conn: &Connection,
    head: &str,
    tail: &str,
    width: usize,
    rows: &[T],
    bind: impl for<'r> Fn(&'r T, &mut Vec<&'r dyn rusqlite::ToSql>),
) -> Result<(), StoreError> {
    let mut rest = rows;
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::new();
    while !rest.is_empty() {
        // The largest power of two not above what is left (and the bound).
        let n = 1usize << rest.len().min(ROWS_PER_STATEMENT_MAX).ilog2();
        let (now, later) = rest.split_at(n);
        let mut sql = String::with_capacity(head.len() + tail.len() + n * (width * 2 + 3));
        sql.push_str(head);
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for j in 0..width {
                sql.push_str(if j == 0 { "?" } else { ",?" });
            }
            sql.push(')');
        }
        sql.push_str(tail);
        values.clear();
        for row in now {
            bind(row, &mut values);
        }
        conn.prepare_cached(&sql)
            .map_err(db)?
            .execute(rusqlite::params_from_iter(values.iter()))
            .map_err(db)?;
        rest = later;
    }
    Ok(())
}

/// One audit record as the committer inserts it: its id and its account's previous record
/// assigned.
struct AuditInsert<'a> {
    id: i64,
    account: i64,
    seq: i64,
    at_ms: i64,
    body: &'a str,
    hash: &'a [u8],
    prev: Option<i64>,
}

/// Writes every row the batch changed (each once, in its final state), the audit records in
/// order, and the idempotency records, a few multi-row statements per table.
fn write_rows(conn: &Connection, cursor: &mut WriteCursor, b: &Rows) -> Result<(), StoreError> {
    // Audit records first: each points to its account's previous record, and the account
    // row below records the last one. (What the cursor forgets here is committed in
    // `accounts.audit_last`.)
    if cursor.last.len() > AUDIT_LAST_CACHED_MAX {
        cursor.last.clear();
    }
    let mut audit = Vec::with_capacity(b.audit.len());
    let mut days = Vec::new();
    for rec in &b.audit {
        let at_ms = int(rec.at_ms)?;
        let (id, prev, new_day) = cursor.take(conn, rec.account, at_ms)?;
        if new_day {
            days.push((int(rec.account.0)?, at_ms / DAY_MS, prev));
        }
        audit.push(AuditInsert {
            id,
            account: int(rec.account.0)?,
            seq: int(rec.seq)?,
            at_ms: int(rec.at_ms)?,
            body: &rec.body,
            hash: &rec.hash[..],
            prev,
        });
    }
    insert_many(conn, AUDIT_INSERT_HEAD, "", 7, &audit, |r, v| {
        v.extend([
            &r.id as &dyn rusqlite::ToSql,
            &r.account,
            &r.seq,
            &r.at_ms,
            &r.body,
            &r.hash,
            &r.prev,
        ])
    })?;
    if !days.is_empty() {
        let mut mark = conn.prepare_cached(AUDIT_DAY_INSERT_SQL).map_err(db)?;
        for (account, day, before) in &days {
            mark.execute(rusqlite::params![account, day, before])
                .map_err(db)?;
        }
    }
    // (Inserting explicit ids keeps sqlite_sequence at the largest, as AUTOINCREMENT does.)
    let mut accounts = Vec::with_capacity(b.accounts.len());
    for r in &b.accounts {
        let id = AccountId(store::uint(r.id)?);
        accounts.push((
            r,
            cursor
                .last
                .get(&id)
                .copied()
                .flatten()
                .map(|(last, _)| last),
        ));
    }
    insert_many(
        conn,
        ACCOUNT_UPSERT_HEAD,
        ACCOUNT_UPSERT_TAIL,
        11,
        &accounts,
        |(r, last), v| {
            v.extend([
                &r.id as &dyn rusqlite::ToSql,
                &r.license,
                &r.status,
                &r.descending,
                &r.pending,
                &r.ascending,
                &r.control,
                &r.last_piece,
                &r.audit_seq,
                &r.audit_head,
                last,
            ])
        },
    )?;
    let mut new_pieces: Vec<(&PieceRow, i64)> = Vec::with_capacity(b.new_pieces.len());
    for r in &b.new_pieces {
        new_pieces.push((r, take_id(&mut cursor.next_data_id, "piece data")?));
    }
    insert_many(
        conn,
        PIECE_DATA_INSERT_HEAD,
        "",
        3,
        &new_pieces,
        |(r, id), v| v.extend([id as &dyn rusqlite::ToSql, &r.signed, &r.item]),
    )?;
    insert_many(
        conn,
        PIECE_INSERT_HEAD,
        "",
        15,
        &new_pieces,
        |(r, id), v| {
            v.extend([
                &r.account as &dyn rusqlite::ToSql,
                &r.serial,
                &r.kind,
                &r.amount,
                &r.state,
                &r.authorized_at_ms,
                &r.expires_at_ms,
                &r.printed_at_ms,
                &r.refund,
                &r.refund_submitted_at_ms,
                &r.scanned,
                id,
                &r.terminal,
                &r.scan_count,
                &r.scan_recorded_at_ms,
            ])
        },
    )?;
    {
        let mut stmt = conn.prepare_cached(PIECE_UPDATE_SQL).map_err(db)?;
        for r in &b.changed_pieces {
            let n = stmt
                .execute(params![
                    r.account,
                    r.serial,
                    r.state,
                    r.printed_at_ms,
                    r.refund,
                    r.refund_submitted_at_ms,
                    r.scanned,
                    r.scan_count,
                    r.scan_recorded_at_ms
                ])
                .map_err(db)?;
            if n != 1 {
                return Err(corrupt(format!(
                    "piece {}/{} to update is missing",
                    r.account, r.serial
                )));
            }
        }
    }
    let mut replies: Vec<(&IdempotencyRow, i64)> = Vec::with_capacity(b.idempotency.len());
    for r in &b.idempotency {
        replies.push((r, take_id(&mut cursor.next_reply_id, "idempotency")?));
    }
    insert_many(
        conn,
        IDEMPOTENCY_INSERT_HEAD,
        "",
        6,
        &replies,
        |(r, id), v| {
            v.extend([
                id as &dyn rusqlite::ToSql,
                &r.key,
                &r.fingerprint,
                &r.reply,
                &r.at_ms,
                &r.permanent,
            ])
        },
    )?;
    Ok(())
}

fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, i64, i64, i64, String, Vec<u8>)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn to_record(row: (i64, i64, i64, i64, String, Vec<u8>)) -> Result<StoredAuditRecord, StoreError> {
    let (id, account, seq, at_ms, body, hash) = row;
    Ok(StoredAuditRecord {
        row_id: store::uint(id)?,
        record: AuditRecord {
            account: AccountId(store::uint(account)?),
            seq: store::uint(seq)?,
            at_ms: store::uint(at_ms)?,
            body,
            hash: store::hash32(&hash)?,
        },
    })
}

impl LedgerStore for SqliteStore {
    fn execute(&self, request: Request, now_ms: u64) -> BoxFuture<'_, Result<Reply, StoreError>> {
        self.ask(|reply| Task::request(request, now_ms, reply))
    }

    /// Queues the request for the decider; the committer answers `reply` after the commit.
    /// A full queue or a store shut down is answered at once.
    fn submit(
        &self,
        request: Request,
        now_ms: u64,
        reply: store::ReplySender,
    ) -> Result<(), store::Unsubmitted> {
        self.queue(Task::request(request, now_ms, reply));
        Ok(())
    }

    fn account(&self, id: AccountId) -> BoxFuture<'_, Result<Option<Account>, StoreError>> {
        Box::pin(self.read(move |c| get_account(c, id)))
    }

    fn piece(&self, id: PieceId) -> BoxFuture<'_, Result<Option<Piece>, StoreError>> {
        Box::pin(self.read(move |c| get_piece(c, id)))
    }

    fn pieces(
        &self,
        account: AccountId,
        before: Option<PieceSerial>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Piece>, StoreError>> {
        Box::pin(self.read(move |c| {
            let tx = c.transaction().map_err(db)?;
            let Some(a) = get_account(&tx, account)? else {
                return Ok(Vec::new());
            };
            // Serials run 1..=last_piece without gaps (authorize takes last_piece + 1).
            let newest = match before {
                Some(s) => s.0.saturating_sub(1).min(a.last_piece.0),
                None => a.last_piece.0,
            };
            let mut out = Vec::with_capacity((limit as usize).min(newest as usize));
            for serial in (1..=newest).rev().take(limit as usize) {
                let id = PieceId {
                    account,
                    serial: PieceSerial(serial),
                };
                match get_piece(&tx, id)? {
                    Some(p) => out.push(p),
                    None => return Err(corrupt(format!("{id} is missing"))),
                }
            }
            Ok(out)
        }))
    }

    fn refunds_awaiting(
        &self,
        account: Option<AccountId>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Piece>, StoreError>> {
        Box::pin(self.read(move |c| {
            let rows: Vec<PieceRow> = match account {
                None => c
                    .prepare_cached(REFUNDS_AWAITING_SQL)
                    .map_err(db)?
                    .query_map([i64::from(limit)], piece_row)
                    .map_err(db)?
                    .collect::<Result<_, _>>()
                    .map_err(db)?,
                Some(a) => c
                    .prepare_cached(ACCOUNT_REFUNDS_AWAITING_SQL)
                    .map_err(db)?
                    .query_map(params![i64::from(limit), int(a.0)?], piece_row)
                    .map_err(db)?
                    .collect::<Result<_, _>>()
                    .map_err(db)?,
            };
            rows.into_iter().map(PieceRow::into_piece).collect()
        }))
    }

    fn record_tender(
        &self,
        tender: report::Tender,
    ) -> BoxFuture<'_, Result<store::TenderAnswer, StoreError>> {
        self.ask(|reply| Task::Side(Side::Tender(Box::new(tender), reply)))
    }

    fn day_rows(
        &self,
        account: Option<AccountId>,
        from_ms: u64,
        to_ms: u64,
    ) -> BoxFuture<'_, Result<report::DayRows, StoreError>> {
        Box::pin(self.read(move |c| {
            let tx = c.transaction().map_err(db)?;
            let account = account.map(|a| int(a.0)).transpose()?;
            let (from, to) = (store::cutoff(from_ms), store::cutoff(to_ms));
            let pieces = tx
                .prepare_cached(DAY_PIECES_SQL)
                .map_err(db)?
                .query_map(
                    params![from, to, account, i64::from(report::REPORT_PIECES_MAX) + 1],
                    piece_row,
                )
                .map_err(db)?
                .map(|r| r.map_err(db)?.into_piece())
                .collect::<Result<Vec<_>, _>>()?;
            let cols: Vec<TenderCols> = tx
                .prepare_cached(DAY_TENDERS_SQL)
                .map_err(db)?
                .query_map(
                    params![from, to, account, i64::from(report::REPORT_TENDERS_MAX) + 1],
                    tender_cols,
                )
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            let tenders = cols
                .into_iter()
                .map(|c| tender_of(&tx, c))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().map_err(db)?;
            Ok(report::DayRows { pieces, tenders })
        }))
    }

    fn unsettled(
        &self,
        account: AccountId,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Piece>, StoreError>> {
        Box::pin(self.read(move |c| {
            let mut stmt = c.prepare_cached(UNSETTLED_SQL).map_err(db)?;
            let rows = stmt
                .query_map(params![int(account.0)?, i64::from(limit)], piece_row)
                .map_err(db)?;
            rows.map(|r| r.map_err(db)?.into_piece()).collect()
        }))
    }

    fn account_audit(&self, id: AccountId) -> BoxFuture<'_, Result<Vec<AuditRecord>, StoreError>> {
        Box::pin(self.read(move |c| {
            let mut stmt = c.prepare_cached(ACCOUNT_AUDIT_SQL).map_err(db)?;
            let rows = stmt.query_map([int(id.0)?], audit_row).map_err(db)?;
            rows.map(|r| to_record(r.map_err(db)?).map(|s| s.record))
                .collect()
        }))
    }

    fn account_statement(
        &self,
        id: AccountId,
        from_ms: u64,
        to_ms: u64,
    ) -> BoxFuture<'_, Result<Statement, StoreError>> {
        Box::pin(self.read(move |c| {
            let account = int(id.0)?;
            // The walk must start after the period's last record and after the record that
            // opens it (a period given backwards opens and ends at `from`).
            let last_day = store::cutoff(to_ms.max(from_ms).saturating_sub(1)) / DAY_MS;
            let marked: Option<Option<i64>> = c
                .prepare_cached(STATEMENT_START_SQL)
                .map_err(db)?
                .query_row([account, last_day], |r| r.get(0))
                .optional()
                .map_err(db)?;
            let start = match marked {
                Some(before) => before,
                None => c
                    .prepare_cached(AUDIT_LAST_SQL)
                    .map_err(db)?
                    .query_row([account], |r| r.get::<_, Option<i64>>(0))
                    .optional()
                    .map_err(db)?
                    .flatten(),
            };
            let mut fold = super::audit::StatementFold::new(id, from_ms, to_ms);
            let Some(start) = start else {
                return Ok(fold.finish());
            };
            let mut stmt = c.prepare_cached(ACCOUNT_AUDIT_FROM_SQL).map_err(db)?;
            let rows = stmt
                .query_map([start, store::cutoff(from_ms)], audit_row)
                .map_err(db)?;
            for r in rows {
                if !fold.push(&to_record(r.map_err(db)?)?.record) {
                    break;
                }
            }
            Ok(fold.finish())
        }))
    }

    fn audit_snapshot(&self) -> BoxFuture<'_, Result<store::AuditSnapshot, StoreError>> {
        Box::pin(self.read(|c| {
            let tx = c.transaction().map_err(db)?;
            let accounts = {
                let mut stmt = tx
                    .prepare(&format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY id"))
                    .map_err(db)?;
                let rows = stmt.query_map([], account_row).map_err(db)?;
                rows.map(|r| r.map_err(db)?.into_account())
                    .collect::<Result<Vec<_>, _>>()?
            };
            let records = {
                let mut stmt = tx
                    .prepare("SELECT id, account, seq, at_ms, body, hash FROM audit ORDER BY id")
                    .map_err(db)?;
                let rows = stmt.query_map([], audit_row).map_err(db)?;
                rows.map(|r| to_record(r.map_err(db)?))
                    .collect::<Result<Vec<_>, _>>()?
            };
            tx.commit().map_err(db)?;
            Ok((accounts, records))
        }))
    }

    fn prune_idempotency(
        &self,
        before_ms: u64,
        max: u32,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.ask(|reply| {
            Task::Side(Side::Prune {
                before_ms,
                max,
                reply,
            })
        })
    }

    fn record_intent(&self, intent: PaymentIntent) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write_intent(IntentWrite::Record(intent))
    }

    fn resolve_intent(
        &self,
        request: RequestId,
        resolution: IntentResolution,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        self.write_intent(IntentWrite::Resolve {
            request,
            resolution,
            at_ms: now_ms,
        })
    }

    fn open_intents(
        &self,
        before_ms: u64,
        max: u32,
    ) -> BoxFuture<'_, Result<Vec<PaymentIntent>, StoreError>> {
        Box::pin(self.read(move |c| {
            let rows: Vec<(Vec<u8>, i64, i64, String, i64)> = c
                .prepare_cached(INTENT_OPEN_SQL)
                .map_err(db)?
                .query_map(params![store::cutoff(before_ms), i64::from(max)], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            rows.into_iter()
                .map(|(request, account, amount, method, started)| {
                    store::intent_from_columns(&request, account, amount, &method, started)
                })
                .collect()
        }))
    }

    fn idempotency_record(
        &self,
        request: RequestId,
    ) -> BoxFuture<'_, Result<Option<IdempotencyRecord>, StoreError>> {
        Box::pin(self.read(move |c| read_idempotency(c, request)))
    }

    fn max_license(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.read(|c| {
            let v: i64 = c
                .query_row("SELECT COALESCE(MAX(license), 0) FROM accounts", [], |r| {
                    r.get(0)
                })
                .map_err(db)?;
            store::uint(v)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoSigner;
    impl ItemSigner for NoSigner {
        fn sign(&self, _: &PieceFacts, _: &[u8]) -> Result<Vec<u8>, String> {
            Ok(vec![1])
        }
    }

    /// A task the queue cannot take is answered with the reason on its own channel, whatever
    /// its kind (a full queue must read `Busy` to the caller, not a vanished store).
    #[test]
    fn a_task_not_queued_is_answered_with_the_reason() {
        let busy = StoreError::Busy {
            queue_requests_max: 3,
        };
        let (tx, mut rx) = oneshot::channel();
        Task::request(Request::new(RequestId(1), ops::Op::OpenAccount), 0, tx).fail(busy.clone());
        assert_eq!(rx.try_recv().unwrap(), Err(busy.clone()));
        let (tx, mut rx) = oneshot::channel();
        Task::Side(Side::Prune {
            before_ms: 0,
            max: 1,
            reply: tx,
        })
        .fail(StoreError::Closed);
        assert_eq!(rx.try_recv().unwrap(), Err(StoreError::Closed));
        let (tx, mut rx) = oneshot::channel();
        let write = IntentWrite::Resolve {
            request: RequestId(2),
            resolution: IntentResolution::NotCharged,
            at_ms: 0,
        };
        Task::Side(Side::Intent(write, tx)).fail(busy.clone());
        assert_eq!(rx.try_recv().unwrap(), Err(busy));
    }

    /// A retry decided onto the open batch after its original's chunk was signed replays the
    /// remembered reply: that reply carries the signed item too.
    #[test]
    fn remembered_authorizations_get_their_signature() {
        let piece = PieceId {
            account: AccountId(1),
            serial: PieceSerial(1),
        };
        let auth = Authorization {
            id: piece,
            meter: MeterSerial::for_account(AccountId(1)),
            amount: crate::money::Cents::new(5).unwrap(),
            kind: 1,
            expires_at_ms: 10,
            registers: Registers::default(),
            signed: Vec::new(),
        };
        let mut overlay = Overlay::default();
        overlay.seen.insert(
            RequestId(7),
            (Arc::new([0; 32]), Ok(Outcome::Authorized(auth.clone()))),
        );
        let mut replies = vec![Ok(Outcome::Authorized(auth))];
        let signed = HashMap::from([(piece, vec![1, 2, 3])]);
        patch_signatures(&mut overlay, &mut replies, &signed);
        for reply in replies.iter().chain(overlay.seen.values().map(|(_, r)| r)) {
            let Ok(Outcome::Authorized(a)) = reply else {
                panic!("{reply:?}")
            };
            assert_eq!(a.signed, vec![1, 2, 3]);
        }
    }

    /// A ledger written by schema version 1 opens under the current one: its pieces read
    /// with an empty item description and list newest first.
    #[tokio::test]
    async fn a_version_1_database_migrates_and_keeps_its_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL);
                 INSERT INTO schema_version (version) VALUES (1);",
            )
            .unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO accounts VALUES (1, 5, 'active', 900, 0, 100, 1000, 2, 0, zeroblob(32));
                 INSERT INTO pieces VALUES (1, 1, 2, 60, 'printed', 10, 20, 15, NULL, NULL, 0, x'aa');
                 INSERT INTO pieces VALUES (1, 2, 2, 40, 'printed', 11, 21, 16, NULL, NULL, 0, x'bb');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(
            &path,
            SqliteConfig::default(),
            Arc::new(NoSigner),
            LedgerLimits::default(),
        )
        .unwrap();
        let list = store.pieces(AccountId(1), None, 10).await.unwrap();
        let serials: Vec<u64> = list.iter().map(|p| p.id.serial.0).collect();
        assert_eq!(serials, vec![2, 1]);
        assert!(list.iter().all(|p| p.item.is_empty()));
        assert_eq!(list[1].signed, vec![0xaa]);
    }

    /// Migration 3 marks the account openings of an existing database permanent (they map
    /// directory accounts to ledger accounts) and leaves every other record prunable.
    #[test]
    fn migration_3_keeps_existing_account_openings() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("ledger.db")).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (1);",
        )
        .unwrap();
        let opened: Reply = Ok(Outcome::Opened {
            account: AccountId(1),
            meter: MeterSerial::for_account(AccountId(1)),
            status: AccountStatus::Active,
        });
        let refused: Reply = Err(LedgerError::ZeroAmount);
        for (id, reply) in [(1u8, &opened), (2, &refused)] {
            conn.execute(
                "INSERT INTO idempotency (request_id, fingerprint, reply, at_ms) \
                 VALUES (?1, ?2, ?3, 0)",
                params![vec![id; 16], vec![0u8; 32], ops::encode_reply(reply)],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let flags: Vec<(Vec<u8>, i64)> = conn
            .prepare("SELECT request_id, permanent FROM idempotency ORDER BY request_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(flags, vec![(vec![1u8; 16], 1), (vec![2u8; 16], 0)]);
    }
}

#[cfg(test)]
mod migration_4_tests {
    use super::*;

    /// Migration 4 links each existing audit record to its account's previous one and each
    /// account to its last record, keeping row ids.
    #[test]
    fn migration_4_chains_existing_audit_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("ledger.db")).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (2);
             INSERT INTO accounts VALUES (1, NULL, 'pending', 0, 0, 0, 0, 0, 2, x'00');
             INSERT INTO accounts VALUES (2, NULL, 'pending', 0, 0, 0, 0, 0, 1, x'00');
             INSERT INTO audit (account, seq, at_ms, body, hash) VALUES (1, 1, 0, 'a', x'00');
             INSERT INTO audit (account, seq, at_ms, body, hash) VALUES (2, 1, 0, 'b', x'00');
             INSERT INTO audit (account, seq, at_ms, body, hash) VALUES (1, 2, 0, 'c', x'00');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows: Vec<(i64, Option<i64>)> = conn
            .prepare("SELECT id, prev FROM audit ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, vec![(1, None), (2, None), (3, Some(1))]);
        let last: Vec<Option<i64>> = conn
            .prepare("SELECT audit_last FROM accounts ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(last, vec![Some(3), Some(2)]);
        let chain: Vec<String> = conn
            .prepare(ACCOUNT_AUDIT_SQL)
            .unwrap()
            .query_map([1], |r| r.get(4))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(chain, vec!["a", "c"]);
    }
}
