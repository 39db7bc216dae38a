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

mod committer;
mod decider;
mod rows;
mod schema;
mod signing;
#[cfg(test)]
mod tests;

use committer::*;
use decider::*;
use rows::*;
use schema::*;
use signing::*;

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
