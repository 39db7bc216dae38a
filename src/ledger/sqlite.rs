//! The embedded SQLite backend: WAL, `synchronous=FULL`, one writer thread doing group commit.
//!
//! Requests queue (bounded by `queue_requests_max`) to a single writer thread. It takes the first
//! request, then gathers more until it holds `group_requests_max` or `group_wait_us_max` µs
//! passed, runs them all in one `BEGIN IMMEDIATE` transaction (each in its own savepoint, so a
//! database error in one does not undo the others), checks the register invariant of every
//! account the batch touched, commits (one fsync of the WAL), and only then answers each request.
//! Reads use a second connection (WAL lets it read while the writer writes).

use super::audit::{AuditRecord, StoredAuditRecord};
use super::model::*;
use super::ops::{self, IdempotencyRecord, Request, Snapshot};
use super::payment::BoxFuture;
use super::store::{self, AccountRow, LedgerStore, PieceRow, StoreError, corrupt, int};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeMap;
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
}

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            group_requests_max: 512,
            group_wait_us_max: 1000,
            queue_requests_max: 16_384,
            checkpoint_interval_ms: 200,
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

/// The SQLite ledger store.
pub struct SqliteStore {
    jobs: SyncSender<Job>,
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
}

impl Writer {
    fn run(mut self, rx: Receiver<Job>) {
        let group_max = self.config.group_requests_max.max(1);
        let wait = Duration::from_micros(self.config.group_wait_us_max);
        let mut batch: Vec<Job> = Vec::with_capacity(group_max);
        while let Ok(first) = rx.recv() {
            batch.push(first);
            let deadline = Instant::now() + wait;
            while batch.len() < group_max {
                match rx.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match rx.recv_timeout(left) {
                            Ok(job) => batch.push(job),
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => break,
                        }
                    }
                }
            }
            self.commit_group(&mut batch);
        }
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
            let _ = job.reply.send(result);
        }
    }

    fn run_group(&mut self, batch: &[Job]) -> Result<Vec<Result<Reply, StoreError>>, StoreError> {
        let mut tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut results = Vec::with_capacity(batch.len());
        let mut touched: BTreeMap<AccountId, Registers> = BTreeMap::new();
        for job in batch {
            let sp = tx.savepoint().map_err(db);
            let result = match sp {
                Ok(mut sp) => {
                    let r = execute_one(
                        &mut sp,
                        &job.request,
                        &job.fingerprint,
                        job.now_ms,
                        &self.limits,
                        &*self.signer,
                        &mut touched,
                    );
                    match r {
                        Ok(reply) => sp.commit().map_err(db).map(|_| reply),
                        Err(e) => Err(e), // savepoint rolls back on drop
                    }
                }
                Err(e) => Err(e),
            };
            results.push(result);
        }
        // The control sum of every account this batch touched, before anything is durable.
        for (id, registers) in &touched {
            if registers.check().is_err() {
                return Err(StoreError::InvariantBroken(format!("{id}: {registers:?}")));
            }
        }
        tx.commit().map_err(db)?;
        Ok(results)
    }
}

#[allow(clippy::too_many_arguments)]
fn execute_one(
    tx: &mut rusqlite::Savepoint<'_>,
    request: &Request,
    fingerprint: &[u8; 32],
    now_ms: u64,
    limits: &LedgerLimits,
    signer: &dyn ItemSigner,
    touched: &mut BTreeMap<AccountId, Registers>,
) -> Result<Reply, StoreError> {
    let request_key = request.id.to_bytes();
    let existing = tx
        .prepare_cached("SELECT fingerprint, reply FROM idempotency WHERE request_id = ?1")
        .map_err(db)?
        .query_row([&request_key[..]], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })
        .optional()
        .map_err(db)?;
    let existing = match existing {
        Some((fp, reply)) => Some(IdempotencyRecord {
            fingerprint: store::hash32(&fp)?,
            reply: ops::decode_reply(&reply).map_err(corrupt)?,
        }),
        None => None,
    };
    if let Some(reply) = ops::replay_with(existing, request, fingerprint) {
        return Ok(reply);
    }
    let snap = load(tx, &request.op, now_ms)?;
    let reply = match ops::decide(&snap, request, now_ms, limits, signer) {
        Ok((outcome, changes)) => {
            write_changes(tx, &changes)?;
            for a in &changes.accounts {
                touched.insert(a.id, a.registers);
            }
            Ok(outcome)
        }
        Err(e) => Err(e),
    };
    if store::remember(&reply) {
        tx.prepare_cached(
            "INSERT INTO idempotency (request_id, fingerprint, reply, at_ms) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(db)?
        .execute(params![
            &request_key[..],
            &fingerprint[..],
            ops::encode_reply(&reply),
            int(now_ms)?
        ])
        .map_err(db)?;
    }
    Ok(reply)
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
    conn.prepare_cached(&format!(
        "SELECT {ACCOUNT_COLS} FROM accounts WHERE id = ?1"
    ))
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

fn load(conn: &Connection, op: &ops::Op, now_ms: u64) -> Result<Snapshot, StoreError> {
    let keys = op.keys();
    let mut snap = Snapshot::default();
    if keys.next_account {
        let next: i64 = conn
            .query_row("SELECT COALESCE(MAX(id), 0) + 1 FROM accounts", [], |r| {
                r.get(0)
            })
            .map_err(db)?;
        snap.next_account = AccountId(store::uint(next)?);
    }
    let mut accounts = keys.accounts;
    for id in keys.pieces {
        if let Some(p) = get_piece(conn, id)? {
            snap.pieces.insert(id, p);
        }
    }
    if let Some(max) = keys.due_max {
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {PIECE_COLS} FROM pieces WHERE state = 'reserved' AND expires_at_ms <= ?1 \
                 ORDER BY expires_at_ms LIMIT ?2"
            ))
            .map_err(db)?;
        let rows = stmt
            .query_map(params![int(now_ms)?, i64::from(max)], piece_row)
            .map_err(db)?;
        for row in rows {
            let p = row.map_err(db)?.into_piece()?;
            accounts.push(p.id.account);
            snap.pieces.insert(p.id, p);
        }
    }
    for id in accounts {
        if let Some(a) = get_account(conn, id)? {
            snap.accounts.insert(id, a);
        }
    }
    Ok(snap)
}

fn write_changes(conn: &Connection, changes: &ops::Changes) -> Result<(), StoreError> {
    for a in &changes.accounts {
        let r = AccountRow::from_account(a)?;
        conn.prepare_cached(&format!(
            "INSERT INTO accounts ({ACCOUNT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) \
             ON CONFLICT(id) DO UPDATE SET license = excluded.license, status = excluded.status, \
             descending = excluded.descending, pending = excluded.pending, \
             ascending = excluded.ascending, control = excluded.control, \
             last_piece = excluded.last_piece, audit_seq = excluded.audit_seq, \
             audit_head = excluded.audit_head"
        ))
        .map_err(db)?
        .execute(params![
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
    for p in &changes.pieces {
        let r = PieceRow::from_piece(p)?;
        conn.prepare_cached(&format!(
            "INSERT INTO pieces ({PIECE_COLS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13) \
             ON CONFLICT(account, serial) DO UPDATE SET state = excluded.state, \
             printed_at_ms = excluded.printed_at_ms, refund = excluded.refund, \
             refund_submitted_at_ms = excluded.refund_submitted_at_ms, scanned = excluded.scanned"
        ))
        .map_err(db)?
        .execute(params![
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
    for rec in &changes.audit {
        conn.prepare_cached(
            "INSERT INTO audit (account, seq, at_ms, body, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db)?
        .execute(params![
            int(rec.account.0)?,
            int(rec.seq)?,
            int(rec.at_ms)?,
            rec.body,
            &rec.hash[..]
        ])
        .map_err(db)?;
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
        let sent = self.jobs.try_send(Job {
            fingerprint,
            request,
            now_ms,
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
}
