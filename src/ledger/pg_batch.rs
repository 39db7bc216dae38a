//! The PostgreSQL store's batch writer (**shell**): requests wait in one bounded queue, and a
//! few writer connections each take up to `batch_requests_max` of them and apply them in one
//! READ COMMITTED transaction, so many requests share one commit (one WAL flush) and a few
//! round trips, as the SQLite store's group commit does.
//!
//! One batch, two pipelined round trips (tokio-postgres sends every statement of a phase
//! before it reads any answer; the server runs them in order):
//! 1. `BEGIN`; lock the batch's accounts (`WHERE id = ANY(..) ORDER BY id FOR UPDATE`: the one
//!    lock order of every transaction on this database, the reaper's included); read its pieces
//!    (one join of the keys' arrays with the table) and the idempotency records of its request
//!    ids. Each statement runs after the one before, so the rows are read after the locks were
//!    won and show any racer's committed effect. Pieces are read, not locked: every transaction that
//!    writes a piece holds its account's row lock first (`Op::keys` names the piece's account;
//!    the reaper locks the accounts of its due pieces), so the account lock covers the piece —
//!    and a piece lock would cost a WAL record and a dirtied page per piece for nothing.
//! 2. Decide every request in order with the pure [`ops::decide`] on one snapshot that each
//!    decision updates (a later request in the batch sees an earlier one's effect; a request id
//!    seen earlier in the batch replays its reply); then, in one pipeline: the accounts'
//!    UPDATE fenced by the version read (`audit_seq`; a mismatch divides by zero, which aborts
//!    the transaction), the pieces' upsert, the audit records, the idempotency records (all
//!    multi-row, `unnest` of arrays), and `COMMIT`.
//!
//! A request's reply leaves only after its own batch committed. A batch that loses a race
//! (fence, 40001, 40P01, 23505) is rolled back and decided again from the database, up to
//! `serialization_retries_max` times; a batch that fails otherwise fails each of its requests
//! with the store error, and its client retries with the same request id (the idempotency
//! record makes a retry of a request whose commit did happen replay, not apply again).
//! Requests that open accounts or expire due pieces keep the one-transaction path
//! (`PostgresStore::attempt`).
//!
//! A batch costs the server and this process work whatever its size (the commit's WAL write
//! and flush, the statements' binds and executor starts, the messages and wake-ups): in the
//! ledger bench the server's CPU per pair fell from ~105 µs at 48 requests per commit to ~75 µs
//! at 129. So the defaults are two writers taking up to 128 requests each — one batch commits
//! while the other is read and decided — rather than more writers splitting what waits.

use super::model::*;
use super::ops::{self, IdempotencyRecord, Request, Snapshot};
use super::postgres::{
    TxError, account_row, connect, idempotency_row, piece_row, race_backoff, restore_signature,
};
use super::store::{self, AccountRow, PieceRow, StoreError, int};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, Statement};

type Param = dyn tokio_postgres::types::ToSql + Sync;

/// A batch writer's session settings: key lookups by index, never a scan or a hash or merge
/// join over a table (the planner still uses them when nothing else can run the statement).
const WRITER_SESSION: &str =
    "SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off";

/// One request waiting for a writer.
pub(super) struct Job {
    pub request: Request,
    pub now_ms: u64,
    pub reply: oneshot::Sender<Result<Reply, StoreError>>,
}

/// Batches and requests committed by the writers (requests per commit = ratio).
#[derive(Debug, Default)]
pub(super) struct Counts {
    pub batches: AtomicU64,
    pub requests: AtomicU64,
}

/// The multi-row statements of one connection.
pub(super) struct BatchStmts {
    lock_accounts: Statement,
    /// The batch's pieces by their primary keys, read under their accounts' locks: one join
    /// of `unnest` arrays with the table. The writer's session allows no hash or merge join
    /// and no sequential scan (`WRITER_SESSION`), so its plan is a nested loop of primary-key
    /// lookups whatever the table's statistics say (a hash join over the whole table, chosen
    /// from the lagging statistics of a fast-growing table, took 3.7 ms a batch).
    read_pieces: Statement,
    idem_get: Statement,
    accounts_update: Statement,
    /// The batch's new pieces (authorizations): a plain multi-row INSERT.
    pieces_insert: Statement,
    /// The batch's changed pieces (commits, voids, refunds, scans): a multi-row UPDATE of the
    /// columns that change after issue, joined on the primary key. Not an upsert: `INSERT … ON
    /// CONFLICT DO UPDATE` probes the index, locks the row (a WAL record) and then updates it,
    /// and confirms each speculative insert (another WAL record).
    pieces_update: Statement,
    audit_put: Statement,
    idem_put: Statement,
}

impl BatchStmts {
    pub(super) async fn prepare(
        client: &Client,
        account_cols: &str,
        piece_cols: &str,
    ) -> Result<BatchStmts, tokio_postgres::Error> {
        Ok(BatchStmts {
            lock_accounts: client
                .prepare(&format!(
                    "SELECT {account_cols} FROM accounts WHERE id = ANY($1::BIGINT[]) \
                     ORDER BY id FOR UPDATE"
                ))
                .await?,
            read_pieces: client
                .prepare(&format!(
                    "SELECT {} FROM unnest($1::BIGINT[], $2::BIGINT[]) AS k(account, serial) \
                     JOIN pieces AS p ON p.account = k.account AND p.serial = k.serial",
                    piece_cols
                        .split(", ")
                        .map(|c| format!("p.{c}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
                .await?,
            idem_get: client
                .prepare(
                    "SELECT fingerprint, reply, request_id FROM idempotency \
                     WHERE request_id = ANY($1::BYTEA[])",
                )
                .await?,
            accounts_update: client
                .prepare(
                    "WITH u AS (UPDATE accounts AS a SET license = v.license, status = v.status, \
                     descending = v.descending, pending = v.pending, ascending = v.ascending, \
                     control = v.control, last_piece = v.last_piece, audit_seq = v.audit_seq, \
                     audit_head = v.audit_head \
                     FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], \
                     $5::BIGINT[], $6::BIGINT[], $7::BIGINT[], $8::BIGINT[], $9::BIGINT[], \
                     $10::BYTEA[], $11::BIGINT[]) AS v(id, license, status, descending, pending, \
                     ascending, control, last_piece, audit_seq, audit_head, version) \
                     WHERE a.id = v.id AND a.audit_seq = v.version RETURNING 1) \
                     SELECT 1 / (count(*) = $12::BIGINT)::INT FROM u",
                )
                .await?,
            pieces_insert: client
                .prepare(&format!(
                    "INSERT INTO pieces ({piece_cols}) SELECT * FROM unnest($1::BIGINT[], \
                     $2::BIGINT[], $3::BIGINT[], $4::BIGINT[], $5::TEXT[], $6::BIGINT[], \
                     $7::BIGINT[], $8::BIGINT[], $9::TEXT[], $10::BIGINT[], $11::BOOL[], \
                     $12::BYTEA[], $13::BYTEA[], $14::BIGINT[], $15::BIGINT[], $16::BIGINT[])"
                ))
                .await?,
            pieces_update: client
                .prepare(
                    "UPDATE pieces AS p SET state = v.state, printed_at_ms = v.printed_at_ms, \
                     refund = v.refund, refund_submitted_at_ms = v.refund_submitted_at_ms, \
                     scanned = v.scanned, scan_count = v.scan_count, \
                     scan_recorded_at_ms = v.scan_recorded_at_ms \
                     FROM unnest($1::BIGINT[], $2::BIGINT[], $3::TEXT[], $4::BIGINT[], \
                     $5::TEXT[], $6::BIGINT[], $7::BOOL[], $8::BIGINT[], $9::BIGINT[]) \
                     AS v(account, serial, state, printed_at_ms, refund, refund_submitted_at_ms, \
                     scanned, scan_count, scan_recorded_at_ms) \
                     WHERE p.account = v.account AND p.serial = v.serial",
                )
                .await?,
            audit_put: client
                .prepare(
                    "INSERT INTO audit (account, seq, at_ms, body, hash) SELECT * FROM \
                     unnest($1::BIGINT[], $2::BIGINT[], $3::BIGINT[], $4::TEXT[], $5::BYTEA[])",
                )
                .await?,
            idem_put: client
                .prepare(
                    "INSERT INTO idempotency (request_id, fingerprint, reply, at_ms, permanent) \
                     SELECT * FROM unnest($1::BYTEA[], $2::BYTEA[], $3::TEXT[], $4::BIGINT[], \
                     $5::BOOL[])",
                )
                .await?,
        })
    }
}

/// What every writer shares.
pub(super) struct WriterCtx {
    pub target: super::pg_conn::Target,
    pub reconnect: Arc<super::pg_conn::Reconnect>,
    pub signer: Arc<dyn ItemSigner>,
    pub limits: LedgerLimits,
    pub retries_max: u32,
    pub batch_requests_max: usize,
    pub counts: Arc<Counts>,
    pub queue: Mutex<mpsc::Receiver<Job>>,
}

/// One writer: until the queue closes, take a batch (waiting for its first request, then
/// whatever else waits, up to `batch_requests_max`), apply it, answer each request.
pub(super) async fn run_writer(ctx: Arc<WriterCtx>) {
    let mut conn = None;
    let mut jobs: Vec<Job> = Vec::with_capacity(ctx.batch_requests_max);
    loop {
        {
            let mut queue = ctx.queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            jobs.push(first);
            while jobs.len() < ctx.batch_requests_max.max(1) {
                match queue.try_recv() {
                    Ok(j) => jobs.push(j),
                    Err(_) => break,
                }
            }
        }
        let result = apply(&ctx, &mut conn, &jobs).await;
        match result {
            Ok(replies) => {
                ctx.counts.batches.fetch_add(1, Ordering::Relaxed);
                ctx.counts
                    .requests
                    .fetch_add(jobs.len() as u64, Ordering::Relaxed);
                for (job, reply) in jobs.drain(..).zip(replies) {
                    let _ = job.reply.send(Ok(reply));
                }
            }
            Err(e) => {
                for job in jobs.drain(..) {
                    let _ = job.reply.send(Err(e.clone()));
                }
            }
        }
    }
}

/// Applies one batch, retrying lost races. A connection that went away is opened again
/// (through the store's reconnect gate); one that failed the batch and no longer serves writes
/// (its server went away or became a standby) is dropped, so the next batch opens a new one.
async fn apply(
    ctx: &WriterCtx,
    conn: &mut Option<super::postgres::Conn>,
    jobs: &[Job],
) -> Result<Vec<Reply>, StoreError> {
    let attempts = ctx.retries_max.max(1);
    for attempt in 0..attempts {
        let c = match conn.take() {
            Some(c) if !c.client.is_closed() => c,
            _ => {
                let c = connect(&ctx.target, &ctx.reconnect).await?;
                // Every statement of a batch finds its rows by primary key; a plan that scans
                // a whole table (chosen from the statistics of a table that was small when
                // they were last gathered) would hold the account locks for milliseconds.
                c.client
                    .batch_execute(WRITER_SESSION)
                    .await
                    .map_err(super::postgres::db)?;
                c
            }
        };
        let r = attempt_batch(ctx, &c.client, &c.batch, jobs).await;
        let keep = match &r {
            Err(TxError::Fail(_)) => super::pg_conn::usable(&c.client).await,
            _ => !c.client.is_closed(),
        };
        if keep {
            *conn = Some(c);
        }
        match r {
            Ok(replies) => return Ok(replies),
            Err(TxError::Fail(e)) => return Err(e),
            Err(TxError::Retry) => race_backoff(attempt).await,
        }
    }
    Err(StoreError::Contention { attempts })
}

fn batch_error(e: tokio_postgres::Error) -> TxError {
    // The version fence divides by zero when an account moved under us: a lost race.
    if e.code() == Some(&SqlState::DIVISION_BY_ZERO) {
        return TxError::Retry;
    }
    TxError::from(e)
}

/// One attempt: read and lock, decide, write and commit. On any error the transaction is
/// rolled back (a `COMMIT` after a failed statement is a rollback too).
async fn attempt_batch(
    ctx: &WriterCtx,
    client: &Client,
    s: &BatchStmts,
    jobs: &[Job],
) -> Result<Vec<Reply>, TxError> {
    let r = decide_and_write(ctx, client, s, jobs).await;
    if r.is_err() && !client.is_closed() {
        // Ends a transaction left open by a failed read phase; a no-op (a notice) otherwise.
        let _ = client.batch_execute("ROLLBACK").await;
    }
    r
}

async fn decide_and_write(
    ctx: &WriterCtx,
    client: &Client,
    s: &BatchStmts,
    jobs: &[Job],
) -> Result<Vec<Reply>, TxError> {
    // 1. Lock and read.
    let mut account_keys = BTreeSet::new();
    let mut piece_keys = BTreeSet::new();
    for j in jobs {
        let k = j.request.op.keys();
        account_keys.extend(k.accounts);
        piece_keys.extend(k.pieces);
    }
    let account_ids = account_keys
        .iter()
        .map(|a| int(a.0))
        .collect::<Result<Vec<i64>, _>>()?;
    let mut piece_accounts = Vec::with_capacity(piece_keys.len());
    let mut piece_serials = Vec::with_capacity(piece_keys.len());
    for p in &piece_keys {
        piece_accounts.push(int(p.account.0)?);
        piece_serials.push(int(p.serial.0)?);
    }
    let request_ids: Vec<Vec<u8>> = jobs
        .iter()
        .map(|j| j.request.id.to_bytes().to_vec())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let lock_accounts: [&Param; 1] = [&account_ids];
    let idem_get: [&Param; 1] = [&request_ids];
    let read_pieces: [&Param; 2] = [&piece_accounts, &piece_serials];
    let (_, account_rows, piece_rows, idem_rows) = tokio::try_join!(
        client.batch_execute("BEGIN ISOLATION LEVEL READ COMMITTED"),
        client.query(&s.lock_accounts, &lock_accounts),
        client.query(&s.read_pieces, &read_pieces),
        client.query(&s.idem_get, &idem_get),
    )
    .map_err(batch_error)?;
    let mut snap = Snapshot::default();
    let mut versions: HashMap<AccountId, i64> = HashMap::with_capacity(account_rows.len());
    for row in &account_rows {
        let r = account_row(row);
        let version = r.audit_seq;
        let a = r.into_account()?;
        versions.insert(a.id, version);
        snap.accounts.insert(a.id, a);
    }
    // The pieces the database holds: a change to one is an UPDATE, a piece the batch issued
    // an INSERT (with whatever later requests of the batch did to it).
    let mut stored_pieces = BTreeSet::new();
    for row in &piece_rows {
        let p = piece_row(row).into_piece()?;
        stored_pieces.insert(p.id);
        snap.pieces.insert(p.id, p);
    }
    let mut seen: HashMap<[u8; 16], IdempotencyRecord> = HashMap::with_capacity(jobs.len());
    for row in &idem_rows {
        let key: Vec<u8> = row.get(2);
        let key: [u8; 16] = key
            .try_into()
            .map_err(|_| store::corrupt("an idempotency key is not 16 bytes"))?;
        let mut record = idempotency_row(row)?;
        // A retry of an authorization (rare): its signed item comes from its piece.
        restore_signature(client, &mut record.reply).await?;
        seen.insert(key, record);
    }

    // 2. Decide, in order, each on the effect of those before it.
    let mut replies = Vec::with_capacity(jobs.len());
    let mut touched_accounts = BTreeSet::new();
    let mut touched_pieces = BTreeSet::new();
    let mut audit = Vec::new();
    let mut idem = IdemRows::default();
    for j in jobs {
        let key = j.request.id.to_bytes();
        let fp = ops::fingerprint(&j.request.op);
        if let Some(reply) = ops::replay_with(seen.get(&key).cloned(), &j.request, &fp) {
            replies.push(reply);
            continue;
        }
        let reply = match ops::decide(&snap, &j.request, j.now_ms, &ctx.limits, &*ctx.signer) {
            Ok((outcome, changes)) => {
                for a in changes.accounts {
                    a.registers
                        .check()
                        .map_err(|e| StoreError::InvariantBroken(e.to_string()))?;
                    touched_accounts.insert(a.id);
                    snap.accounts.insert(a.id, a);
                }
                for p in changes.pieces {
                    touched_pieces.insert(p.id);
                    snap.pieces.insert(p.id, p);
                }
                audit.extend(changes.audit);
                Ok(outcome)
            }
            Err(e) => Err(e),
        };
        if store::remember(&reply) {
            idem.push(
                key,
                fp,
                store::encode_stored_reply(&reply),
                int(j.now_ms)?,
                store::permanent(&j.request.op),
            );
            seen.insert(
                key,
                IdempotencyRecord {
                    fingerprint: fp,
                    reply: reply.clone(),
                },
            );
        }
        replies.push(reply);
    }

    // 3. Write and commit, in one pipeline.
    let mut accts = AccountArrays::default();
    for id in &touched_accounts {
        let (Some(a), Some(version)) = (snap.accounts.get(id), versions.get(id)) else {
            return Err(TxError::Fail(store::corrupt(
                "a batch changed an account it did not lock",
            )));
        };
        accts.push(AccountRow::from_account(a)?, *version);
    }
    let mut pieces = PieceArrays::default();
    let mut changed = PieceChanges::default();
    for id in &touched_pieces {
        if let Some(p) = snap.pieces.get(id) {
            let row = PieceRow::from_piece(p)?;
            if stored_pieces.contains(id) {
                changed.push(row);
            } else {
                pieces.push(row);
            }
        }
    }
    let mut rec = AuditArrays::default();
    for r in &audit {
        rec.account.push(int(r.account.0)?);
        rec.seq.push(int(r.seq)?);
        rec.at_ms.push(int(r.at_ms)?);
        rec.body.push(r.body.clone());
        rec.hash.push(r.hash.to_vec());
    }
    let n_accounts = accts.id.len() as i64;
    let a = &accts;
    let p = &pieces;
    let accounts_update: [&Param; 12] = [
        &a.id,
        &a.license,
        &a.status,
        &a.descending,
        &a.pending,
        &a.ascending,
        &a.control,
        &a.last_piece,
        &a.audit_seq,
        &a.audit_head,
        &a.version,
        &n_accounts,
    ];
    let pieces_insert: [&Param; 16] = [
        &p.account,
        &p.serial,
        &p.kind,
        &p.amount,
        &p.state,
        &p.authorized_at_ms,
        &p.expires_at_ms,
        &p.printed_at_ms,
        &p.refund,
        &p.refund_submitted_at_ms,
        &p.scanned,
        &p.signed,
        &p.item,
        &p.terminal,
        &p.scan_count,
        &p.scan_recorded_at_ms,
    ];
    let c = &changed;
    let pieces_update: [&Param; 9] = [
        &c.account,
        &c.serial,
        &c.state,
        &c.printed_at_ms,
        &c.refund,
        &c.refund_submitted_at_ms,
        &c.scanned,
        &c.scan_count,
        &c.scan_recorded_at_ms,
    ];
    let audit_put: [&Param; 5] = [&rec.account, &rec.seq, &rec.at_ms, &rec.body, &rec.hash];
    let idem_put: [&Param; 5] = [
        &idem.key,
        &idem.fp,
        &idem.reply,
        &idem.at_ms,
        &idem.permanent,
    ];
    tokio::try_join!(
        client.query_one(&s.accounts_update, &accounts_update),
        client.execute(&s.pieces_insert, &pieces_insert),
        client.execute(&s.pieces_update, &pieces_update),
        client.execute(&s.audit_put, &audit_put),
        client.execute(&s.idem_put, &idem_put),
        client.batch_execute("COMMIT"),
    )
    .map_err(batch_error)?;
    Ok(replies)
}

#[derive(Default)]
struct IdemRows {
    key: Vec<Vec<u8>>,
    fp: Vec<Vec<u8>>,
    reply: Vec<String>,
    at_ms: Vec<i64>,
    permanent: Vec<bool>,
}

impl IdemRows {
    fn push(&mut self, key: [u8; 16], fp: [u8; 32], reply: String, at_ms: i64, permanent: bool) {
        self.key.push(key.to_vec());
        self.fp.push(fp.to_vec());
        self.reply.push(reply);
        self.at_ms.push(at_ms);
        self.permanent.push(permanent);
    }
}

#[derive(Default)]
struct AccountArrays {
    id: Vec<i64>,
    license: Vec<Option<i64>>,
    status: Vec<String>,
    descending: Vec<i64>,
    pending: Vec<i64>,
    ascending: Vec<i64>,
    control: Vec<i64>,
    last_piece: Vec<i64>,
    audit_seq: Vec<i64>,
    audit_head: Vec<Vec<u8>>,
    version: Vec<i64>,
}

impl AccountArrays {
    fn push(&mut self, r: AccountRow, version: i64) {
        self.id.push(r.id);
        self.license.push(r.license);
        self.status.push(r.status);
        self.descending.push(r.descending);
        self.pending.push(r.pending);
        self.ascending.push(r.ascending);
        self.control.push(r.control);
        self.last_piece.push(r.last_piece);
        self.audit_seq.push(r.audit_seq);
        self.audit_head.push(r.audit_head);
        self.version.push(version);
    }
}

#[derive(Default)]
struct PieceArrays {
    account: Vec<i64>,
    serial: Vec<i64>,
    kind: Vec<i64>,
    amount: Vec<i64>,
    state: Vec<String>,
    authorized_at_ms: Vec<i64>,
    expires_at_ms: Vec<i64>,
    printed_at_ms: Vec<Option<i64>>,
    refund: Vec<Option<String>>,
    refund_submitted_at_ms: Vec<Option<i64>>,
    scanned: Vec<bool>,
    signed: Vec<Vec<u8>>,
    item: Vec<Vec<u8>>,
    terminal: Vec<Option<i64>>,
    scan_count: Vec<i64>,
    scan_recorded_at_ms: Vec<Option<i64>>,
}

impl PieceArrays {
    fn push(&mut self, r: PieceRow) {
        self.account.push(r.account);
        self.serial.push(r.serial);
        self.kind.push(r.kind);
        self.amount.push(r.amount);
        self.state.push(r.state);
        self.authorized_at_ms.push(r.authorized_at_ms);
        self.expires_at_ms.push(r.expires_at_ms);
        self.printed_at_ms.push(r.printed_at_ms);
        self.refund.push(r.refund);
        self.refund_submitted_at_ms.push(r.refund_submitted_at_ms);
        self.scanned.push(r.scanned);
        self.signed.push(r.signed);
        self.item.push(r.item);
        self.terminal.push(r.terminal);
        self.scan_count.push(r.scan_count);
        self.scan_recorded_at_ms.push(r.scan_recorded_at_ms);
    }
}

/// The columns of a stored piece that change after issue (`pieces_update`).
#[derive(Default)]
struct PieceChanges {
    account: Vec<i64>,
    serial: Vec<i64>,
    state: Vec<String>,
    printed_at_ms: Vec<Option<i64>>,
    refund: Vec<Option<String>>,
    refund_submitted_at_ms: Vec<Option<i64>>,
    scanned: Vec<bool>,
    scan_count: Vec<i64>,
    scan_recorded_at_ms: Vec<Option<i64>>,
}

impl PieceChanges {
    fn push(&mut self, r: PieceRow) {
        self.account.push(r.account);
        self.serial.push(r.serial);
        self.state.push(r.state);
        self.printed_at_ms.push(r.printed_at_ms);
        self.refund.push(r.refund);
        self.refund_submitted_at_ms.push(r.refund_submitted_at_ms);
        self.scanned.push(r.scanned);
        self.scan_count.push(r.scan_count);
        self.scan_recorded_at_ms.push(r.scan_recorded_at_ms);
    }
}

#[derive(Default)]
struct AuditArrays {
    account: Vec<i64>,
    seq: Vec<i64>,
    at_ms: Vec<i64>,
    body: Vec<String>,
    hash: Vec<Vec<u8>>,
}
