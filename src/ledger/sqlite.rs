//! The embedded SQLite backend: WAL, `synchronous=FULL`, one writer thread doing group commit.
//!
//! Requests queue (bounded by `queue_requests_max`) to a single writer thread. It takes the first
//! request, then gathers more until it holds `group_requests_max` or `group_wait_us_max` µs
//! passed, and runs them all in one `BEGIN IMMEDIATE` transaction:
//! 1. decide every request in order against the batch's in-memory overlay (rows read once,
//!    each request seeing the effects of those before it; new authorizations get their serial
//!    and registers but are not signed yet);
//! 2. sign the batch's authorizations at once on a small pool of signing threads;
//! 3. write every changed row once in its final state, the audit records and the idempotency
//!    records; check the register invariant of every touched account;
//! 4. commit (one fsync of the WAL), and only then answer each request.
//!
//! A database error fails the whole batch (nothing is written; each request may be retried with
//! its id). A refused signature makes the batch decide again with each authorization signed as
//! it is decided, so the refused request changes nothing. Reads use a second connection (WAL
//! lets it read while the writer writes).

use super::audit::{AuditRecord, StoredAuditRecord};
use super::model::*;
use super::ops::{self, IdempotencyRecord, Request, Snapshot};
use super::payment::BoxFuture;
use super::store::{self, AccountRow, LedgerStore, PieceRow, StoreError, corrupt, int};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Tuning of the SQLite backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    /// Most requests in one transaction (1 = one transaction per request).
    pub group_requests_max: usize,
    /// Longest the writer waits for more requests before committing a group.
    pub group_wait_us_max: u64,
    /// Most requests waiting for the writer; more are refused with `StoreError::Busy`.
    pub queue_requests_max: usize,
    /// How often a background thread checkpoints the WAL into the database file (the writer
    /// itself never checkpoints, so commits pay only for the WAL fsync).
    pub checkpoint_interval_ms: u64,
    /// Threads that sign a batch's authorizations (the writer itself is one of them).
    pub sign_threads_max: usize,
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            group_requests_max: 512,
            group_wait_us_max: 1000,
            queue_requests_max: 16_384,
            checkpoint_interval_ms: 200,
            sign_threads_max: 2,
        }
    }
}

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
    /// Delete old idempotency records (between batches, in a transaction of its own).
    Prune {
        before_ms: u64,
        max: u32,
        reply: oneshot::Sender<Result<u64, StoreError>>,
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
        let mut writer = Connection::open(path).map_err(db)?;
        configure(&writer)?;
        migrate(&mut writer)?;
        // Checkpoints move to a background thread (below).
        writer
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(db)?;
        let reader = Connection::open(path).map_err(db)?;
        configure(&reader)?;
        let checkpointer = Connection::open(path).map_err(db)?;
        configure(&checkpointer)?;
        let (stop_checkpoints, stopped) = std::sync::mpsc::sync_channel::<()>(1);
        let interval = Duration::from_millis(config.checkpoint_interval_ms.max(1));
        std::thread::Builder::new()
            .name("ledger-sqlite-checkpoint".into())
            .spawn(move || {
                // Runs until the store is dropped (the channel disconnects).
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let r =
                        checkpointer.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
                    if let Err(e) = r {
                        tracing::warn!(error = %e, "ledger WAL checkpoint failed; will retry");
                    }
                }
                let _ = checkpointer.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
            })
            .map_err(|e| {
                StoreError::Database(format!("cannot start the checkpoint thread: {e}"))
            })?;
        let pool = SignPool::start(config.sign_threads_max, &signer)?;
        let (jobs, rx) = std::sync::mpsc::sync_channel(config.queue_requests_max.max(1));
        let queue_requests_max = config.queue_requests_max;
        std::thread::Builder::new()
            .name("ledger-sqlite-writer".into())
            .spawn(move || {
                Writer {
                    conn: writer,
                    config,
                    signer,
                    limits,
                    pool,
                }
                .run(rx)
            })
            .map_err(|e| StoreError::Database(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            jobs,
            _checkpointer: stop_checkpoints,
            reader: Arc::new(Mutex::new(reader)),
            queue_requests_max,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
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

struct Writer {
    conn: Connection,
    config: SqliteConfig,
    signer: Arc<dyn ItemSigner>,
    limits: LedgerLimits,
    pool: SignPool,
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
            self.pieces.insert(p.id, p);
        }
        self.audit.extend(changes.audit);
    }
}

impl Writer {
    fn run(mut self, rx: Receiver<Task>) {
        let group_max = self.config.group_requests_max.max(1);
        let wait = Duration::from_micros(self.config.group_wait_us_max);
        let mut batch: Vec<Job> = Vec::with_capacity(group_max);
        while let Ok(first) = rx.recv() {
            let mut prune = None;
            match first {
                Task::Request(job) => batch.push(job),
                other => prune = Some(other),
            }
            let deadline = Instant::now() + wait;
            while prune.is_none() && !batch.is_empty() && batch.len() < group_max {
                let next = match rx.try_recv() {
                    Ok(task) => task,
                    Err(_) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match rx.recv_timeout(left) {
                            Ok(task) => task,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                };
                match next {
                    Task::Request(job) => batch.push(job),
                    other => prune = Some(other),
                }
            }
            if !batch.is_empty() {
                self.commit_group(&mut batch);
            }
            if let Some(Task::Prune {
                before_ms,
                max,
                reply,
            }) = prune
            {
                let _ = reply.send(self.prune(before_ms, max));
            }
        }
    }

    fn prune(&mut self, before_ms: u64, max: u32) -> Result<u64, StoreError> {
        let n = self
            .conn
            .prepare_cached(IDEMPOTENCY_PRUNE_SQL)
            .map_err(db)?
            .execute(params![int(before_ms)?, i64::from(max)])
            .map_err(db)?;
        Ok(n as u64)
    }

    fn commit_group(&mut self, batch: &mut Vec<Job>) {
        let t0 = Instant::now();
        let n = batch.len();
        let r = self.run_group(batch);

        tracing::trace!(
            requests = n,
            took_us = t0.elapsed().as_micros() as u64,
            "ledger group committed"
        );
        let results = match r {
            Ok(results) => results,
            Err(e) => {
                for job in batch.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        for (job, result) in batch.drain(..).zip(results) {
            // The client may have gone away; its effect is durable either way.
            let _ = job.reply.send(Ok(result));
        }
    }

    /// One batch, one transaction: decide every request against the batch's overlay, sign
    /// the new authorizations (in parallel), write every changed row once, check the control
    /// sum of every touched account, commit — and only then answer. A database error fails
    /// the whole batch (nothing is written; every request may be retried with its id).
    fn run_group(&mut self, batch: &[Job]) -> Result<Vec<Reply>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let deferred = DeferredSigner::default();
        let (mut overlay, mut replies) = decide_batch(&tx, batch, &self.limits, &deferred)?;
        let tasks = std::mem::take(&mut *deferred.0.lock().unwrap_or_else(|p| p.into_inner()));
        if !tasks.is_empty() {
            let signed = self.pool.sign(&*self.signer, tasks);
            if signed.iter().any(|(_, r)| r.is_err()) {
                // A refused signature must leave its request without effect, and later
                // requests of the batch may have decided on top of it: decide the batch
                // again, signing each authorization as it is decided (nothing was written).
                let (o, r) = decide_batch(&tx, batch, &self.limits, &*self.signer)?;
                overlay = o;
                replies = r;
            } else {
                let signed: HashMap<PieceId, Vec<u8>> = signed
                    .into_iter()
                    .filter_map(|(id, r)| r.ok().map(|s| (id, s)))
                    .collect();
                patch_signatures(&mut overlay, &mut replies, &signed);
            }
        }
        write_overlay(&tx, &overlay, batch, &replies)?;
        // The control sum of every account this batch touched, before anything is durable.
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
        tx.commit().map_err(db)?;
        Ok(replies)
    }
}

/// Decides every request of the batch in order, each seeing the effects of those before it.
fn decide_batch(
    conn: &Connection,
    batch: &[Job],
    limits: &LedgerLimits,
    signer: &dyn ItemSigner,
) -> Result<(Overlay, Vec<Reply>), StoreError> {
    let mut overlay = Overlay::default();
    let mut replies = Vec::with_capacity(batch.len());
    for (i, job) in batch.iter().enumerate() {
        let reply = decide_one(conn, &mut overlay, job, i, limits, signer)?;
        replies.push(reply);
    }
    Ok((overlay, replies))
}

fn decide_one(
    conn: &Connection,
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
        None => read_idempotency(conn, request.id)?,
    };
    if let Some(reply) = ops::replay_with(existing, request, &job.fingerprint) {
        return Ok(reply);
    }
    let snap = load(conn, overlay, &request.op, job.now_ms)?;
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
    for reply in replies.iter_mut() {
        if let Ok(Outcome::Authorized(a)) = reply
            && let Some(sig) = signed.get(&a.id)
        {
            a.signed = sig.clone();
        }
    }
}

const ACCOUNT_COLS: &str = "id, license, status, descending, pending, ascending, control, last_piece, audit_seq, audit_head";
const PIECE_COLS: &str = "account, serial, kind, amount, state, authorized_at_ms, expires_at_ms, printed_at_ms, refund, refund_submitted_at_ms, scanned, signed, item";

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
    conn.prepare_cached(&format!(
        "SELECT {PIECE_COLS} FROM pieces WHERE account = ?1 AND serial = ?2"
    ))
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
        if let Some(max) = overlay.accounts.keys().max()
            && max.0 >= next.0
        {
            next = AccountId(max.0 + 1);
        }
        snap.next_account = next;
    }
    let mut accounts = keys.accounts;
    for id in keys.pieces {
        if let Some(p) = overlay_piece(conn, overlay, id)? {
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
                // The batch may already have ended this reservation.
                match overlay.pieces.get(&p.id) {
                    Some(mine) => due.push(mine.clone()),
                    None => due.push(p),
                }
            }
        }
        // Reservations made earlier in this batch are not in the database yet.
        for p in overlay.pieces.values() {
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
        if let Some(a) = overlay_account(conn, overlay, id)? {
            snap.accounts.insert(id, a.clone());
        }
    }
    Ok(snap)
}

fn overlay_account<'o>(
    conn: &Connection,
    overlay: &'o mut Overlay,
    id: AccountId,
) -> Result<Option<&'o Account>, StoreError> {
    if !overlay.accounts.contains_key(&id) {
        match get_account(conn, id)? {
            Some(a) => {
                overlay.accounts.insert(id, a);
            }
            None => return Ok(None),
        }
    }
    Ok(overlay.accounts.get(&id))
}

fn overlay_piece<'o>(
    conn: &Connection,
    overlay: &'o mut Overlay,
    id: PieceId,
) -> Result<Option<&'o Piece>, StoreError> {
    if !overlay.pieces.contains_key(&id) {
        match get_piece(conn, id)? {
            Some(p) => {
                overlay.pieces.insert(id, p);
            }
            None => return Ok(None),
        }
    }
    Ok(overlay.pieces.get(&id))
}

const DUE_SQL: &str = "SELECT account, serial, kind, amount, state, authorized_at_ms, \
    expires_at_ms, printed_at_ms, refund, refund_submitted_at_ms, scanned, signed, item \
    FROM pieces WHERE state = 'reserved' AND expires_at_ms <= ?1 \
    ORDER BY expires_at_ms LIMIT ?2";
const ACCOUNT_UPSERT_SQL: &str = "INSERT INTO accounts (id, license, status, descending, \
    pending, ascending, control, last_piece, audit_seq, audit_head) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
    ON CONFLICT(id) DO UPDATE SET license = excluded.license, status = excluded.status, \
    descending = excluded.descending, pending = excluded.pending, \
    ascending = excluded.ascending, control = excluded.control, \
    last_piece = excluded.last_piece, audit_seq = excluded.audit_seq, \
    audit_head = excluded.audit_head";
const PIECE_UPSERT_SQL: &str = "INSERT INTO pieces (account, serial, kind, amount, state, \
    authorized_at_ms, expires_at_ms, printed_at_ms, refund, refund_submitted_at_ms, scanned, \
    signed, item) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
    ON CONFLICT(account, serial) DO UPDATE SET state = excluded.state, \
    printed_at_ms = excluded.printed_at_ms, refund = excluded.refund, \
    refund_submitted_at_ms = excluded.refund_submitted_at_ms, scanned = excluded.scanned";
const AUDIT_INSERT_SQL: &str =
    "INSERT INTO audit (account, seq, at_ms, body, hash) VALUES (?1, ?2, ?3, ?4, ?5)";
const IDEMPOTENCY_INSERT_SQL: &str = "INSERT INTO idempotency \
    (request_id, fingerprint, reply, at_ms, permanent) VALUES (?1, ?2, ?3, ?4, ?5)";
const IDEMPOTENCY_PRUNE_SQL: &str = "DELETE FROM idempotency WHERE request_id IN \
    (SELECT request_id FROM idempotency WHERE permanent = 0 AND at_ms < ?1 LIMIT ?2)";

/// Writes every row the batch changed (each once, in its final state), the audit records in
/// order, and the idempotency records.
fn write_overlay(
    conn: &Connection,
    overlay: &Overlay,
    batch: &[Job],
    replies: &[Reply],
) -> Result<(), StoreError> {
    {
        let mut stmt = conn.prepare_cached(ACCOUNT_UPSERT_SQL).map_err(db)?;
        for id in &overlay.dirty_accounts {
            let Some(a) = overlay.accounts.get(id) else {
                continue;
            };
            let r = AccountRow::from_account(a)?;
            stmt.execute(params![
                r.id,
                r.license,
                r.status,
                r.descending,
                r.pending,
                r.ascending,
                r.control,
                r.last_piece,
                r.audit_seq,
                r.audit_head
            ])
            .map_err(db)?;
        }
    }
    {
        let mut stmt = conn.prepare_cached(PIECE_UPSERT_SQL).map_err(db)?;
        for id in &overlay.dirty_pieces {
            let Some(p) = overlay.pieces.get(id) else {
                continue;
            };
            let r = PieceRow::from_piece(p)?;
            stmt.execute(params![
                r.account,
                r.serial,
                r.kind,
                r.amount,
                r.state,
                r.authorized_at_ms,
                r.expires_at_ms,
                r.printed_at_ms,
                r.refund,
                r.refund_submitted_at_ms,
                r.scanned,
                r.signed,
                r.item
            ])
            .map_err(db)?;
        }
    }
    {
        let mut stmt = conn.prepare_cached(AUDIT_INSERT_SQL).map_err(db)?;
        for rec in &overlay.audit {
            stmt.execute(params![
                int(rec.account.0)?,
                int(rec.seq)?,
                int(rec.at_ms)?,
                rec.body,
                &rec.hash[..]
            ])
            .map_err(db)?;
        }
    }
    {
        let mut stmt = conn.prepare_cached(IDEMPOTENCY_INSERT_SQL).map_err(db)?;
        for (id, index) in &overlay.remember {
            let (Some(job), Some(reply)) = (batch.get(*index), replies.get(*index)) else {
                continue;
            };
            stmt.execute(params![
                &id.to_bytes()[..],
                &job.fingerprint[..],
                ops::encode_reply(reply),
                int(job.now_ms)?,
                store::permanent(&job.request.op)
            ])
            .map_err(db)?;
        }
    }
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
        let (tx, rx) = oneshot::channel();
        let fingerprint = ops::fingerprint(&request.op);
        let sent = self.jobs.try_send(Task::Request(Job {
            fingerprint,
            request,
            now_ms,
            reply: tx,
        }));
        let queue_requests_max = self.queue_requests_max;
        Box::pin(async move {
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(StoreError::Busy { queue_requests_max }),
                Err(TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
            }
            rx.await.map_err(|_| StoreError::Closed)?
        })
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
            let before = match before {
                Some(s) => int(s.0)?,
                None => i64::MAX,
            };
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {PIECE_COLS} FROM pieces INDEXED BY pieces_account \
                     WHERE account = ?1 AND serial < ?2 ORDER BY serial DESC LIMIT ?3"
                ))
                .map_err(db)?;
            let rows = stmt
                .query_map(
                    params![int(account.0)?, before, i64::from(limit)],
                    piece_row,
                )
                .map_err(db)?;
            rows.map(|r| r.map_err(db)?.into_piece()).collect()
        }))
    }

    fn account_audit(&self, id: AccountId) -> BoxFuture<'_, Result<Vec<AuditRecord>, StoreError>> {
        Box::pin(self.read(move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, account, seq, at_ms, body, hash FROM audit WHERE account = ?1 ORDER BY seq",
                )
                .map_err(db)?;
            let rows = stmt.query_map([int(id.0)?], audit_row).map_err(db)?;
            rows.map(|r| to_record(r.map_err(db)?).map(|s| s.record))
                .collect()
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
        let (tx, rx) = oneshot::channel();
        let sent = self.jobs.try_send(Task::Prune {
            before_ms,
            max,
            reply: tx,
        });
        let queue_requests_max = self.queue_requests_max;
        Box::pin(async move {
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => return Err(StoreError::Busy { queue_requests_max }),
                Err(TrySendError::Disconnected(_)) => return Err(StoreError::Closed),
            }
            rx.await.map_err(|_| StoreError::Closed)?
        })
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
                "INSERT INTO accounts VALUES (1, 5, 'active', 900, 0, 100, 1000, 2, 0, x'00');
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
