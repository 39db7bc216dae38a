//! The PostgreSQL backend (tokio-postgres), chosen by `--database postgres://...`.
//!
//! Most requests go through the batch writers ([`super::pg_batch`]): many requests per READ
//! COMMITTED transaction. Opening an account, expiring due pieces, and every request when
//! `batch_writers` is 0 run here, one transaction each, which first locks the rows it will
//! change (`SELECT ... FOR UPDATE`: accounts in id order, then pieces — the reaper too: it
//! finds its due pieces without a lock and locks them after their accounts), then reads its
//! idempotency record, decides with the same pure [`ops::decide`] as SQLite, and writes the
//! effect, the audit records and the idempotency record before committing. Concurrent updates
//! of one account serialize on its row lock and each reads the other's committed result (the
//! safe READ COMMITTED pattern); the account UPDATE is additionally conditional on the version
//! read (`WHERE audit_seq = $old`). A transaction that loses a race (0 rows updated, SQLSTATE
//! 40001, 40P01, or a duplicate request id / account id, 23505) is rolled back and retried, up
//! to `serialization_retries_max` times, and then reads the winner's effect — including the
//! winner's idempotency record, so a duplicated request replays instead of applying twice.

use super::audit::{AuditRecord, StoredAuditRecord};
use super::model::*;
use super::ops::{self, IdempotencyRecord, Request, Snapshot};
use super::payment::BoxFuture;
use super::pg_batch;
use super::pg_conn::{self, Reconnect, Target};
use super::report;
use super::store::{self, AccountRow, LedgerStore, PieceRow, StoreError, corrupt, int};
use std::sync::Arc;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, IsolationLevel, Statement};

mod licensing;
mod rows;
mod schema;
mod session;

pub use licensing::PostgresLicensing;
pub(super) use rows::*;
pub(crate) use schema::migrate_url;
use schema::*;
pub(super) use session::*;

/// Tuning of the PostgreSQL backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
    /// Connections kept open for reads and one-transaction requests (opening accounts,
    /// expiring due pieces, and every request when `batch_writers` is 0).
    pub connections_max: usize,
    /// Most attempts of one request (or batch) when it loses serialization races.
    pub serialization_retries_max: u32,
    /// Writer connections, each applying one batch of requests per transaction
    /// (`pg_batch`); 0: one transaction per request (the baseline).
    pub batch_writers: usize,
    /// Most requests one batch transaction applies.
    pub batch_requests_max: usize,
    /// Requests waiting for a writer; a request beyond waits for room.
    pub batch_queue_requests_max: usize,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            connections_max: 16,
            serialization_retries_max: 64,
            batch_writers: 3,
            batch_requests_max: 96,
            batch_queue_requests_max: 4096,
        }
    }
}

/// The transaction-scoped advisory lock a reaper pass holds (`pg_try_advisory_xact_lock`), so
/// at most one front's reaper works at a time; the key is arbitrary but fixed for Frank.
pub const REAPER_LOCK_KEY: i64 = 7_346_529;

/// The PostgreSQL ledger store: a fixed pool of connections.
pub struct PostgresStore {
    target: Target,
    /// Spaces out connection attempts while the database is unreachable; shared with the
    /// batch writers.
    reconnect: Arc<Reconnect>,
    pool: Mutex<Vec<Conn>>,
    permits: Semaphore,
    config: PostgresConfig,
    signer: Arc<dyn ItemSigner>,
    limits: LedgerLimits,
    /// The batch writers' queue (`None` when `batch_writers` is 0).
    batches: Option<mpsc::Sender<pg_batch::Job>>,
    counts: Arc<pg_batch::Counts>,
}

impl PostgresStore {
    /// Connects to `url` (e.g. `postgres://user@127.0.0.1:5432/frank`), migrates the schema and
    /// opens `connections_max` connections.
    pub async fn connect(
        url: &str,
        config: PostgresConfig,
        signer: Arc<dyn ItemSigner>,
        limits: LedgerLimits,
    ) -> Result<PostgresStore, StoreError> {
        let target = Target::parse(url)?;
        migrate(&target).await?;
        let reconnect = Arc::new(Reconnect::default());
        let n = config.connections_max.max(1);
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(connect(&target, &reconnect).await?);
        }
        let counts = Arc::new(pg_batch::Counts::default());
        let batches = if config.batch_writers > 0 {
            let (tx, rx) = mpsc::channel(config.batch_queue_requests_max.max(1));
            let ctx = Arc::new(pg_batch::WriterCtx {
                target: target.clone(),
                reconnect: reconnect.clone(),
                signer: signer.clone(),
                limits: limits.clone(),
                retries_max: config.serialization_retries_max,
                batch_requests_max: config.batch_requests_max.max(1),
                counts: counts.clone(),
                queue: Mutex::new(rx),
            });
            for _ in 0..config.batch_writers {
                tokio::spawn(pg_batch::run_writer(ctx.clone()));
            }
            Some(tx)
        } else {
            None
        };
        Ok(PostgresStore {
            target,
            reconnect,
            pool: Mutex::new(conns),
            permits: Semaphore::new(n),
            config,
            signer,
            limits,
            batches,
            counts,
        })
    }

    /// The batch writers' queue when they take `request`: every request but opening an account
    /// and expiring due pieces, when there are writers.
    fn batch_queue(&self, request: &Request) -> Option<&mpsc::Sender<pg_batch::Job>> {
        let keys = request.op.keys();
        self.batches
            .as_ref()
            .filter(|_| keys.due_max.is_none() && !keys.next_account)
    }

    /// Batches and requests the batch writers committed so far.
    pub fn commit_counts(&self) -> store::CommitCounts {
        store::CommitCounts {
            batches: self
                .counts
                .batches
                .load(std::sync::atomic::Ordering::Relaxed),
            requests: self
                .counts
                .requests
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    async fn with_conn<T>(
        &self,
        f: impl AsyncFnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        let conn = self.pool.lock().await.pop();
        let mut conn = match conn {
            Some(c) if !c.client.is_closed() => c,
            // Gone (its server went away) or never opened: a new one, through the gate.
            _ => connect(&self.target, &self.reconnect).await?,
        };
        let r = f(&mut conn).await;
        // A connection that failed a statement goes back only if it still serves writes;
        // otherwise it is dropped here and the next use opens a new one (after a failover, on
        // the promoted server).
        if r.is_ok() || pg_conn::usable(&conn.client).await {
            self.pool.lock().await.push(conn);
        }
        r
    }

    async fn attempt(
        &self,
        conn: &mut Conn,
        request: &Request,
        now_ms: u64,
    ) -> Result<Reply, TxError> {
        let s = &conn.stmts;
        let tx = conn
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()
            .await?;
        // 1. Lock what the operation touches: accounts first (in id order, so concurrent
        //    multi-account transactions cannot deadlock), then pieces. Under READ COMMITTED
        //    each statement sees the latest committed rows, so after waiting for a lock we read
        //    the winner's effect.
        let keys = request.op.keys();
        // One reaper at a time on the database, whatever the number of fronts: a pass that
        // finds another front's pass running does nothing (the next tick tries again).
        if keys.due_max.is_some() {
            let mine: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&REAPER_LOCK_KEY])
                .await?
                .get(0);
            if !mine {
                tx.commit().await?;
                return Ok(Ok(Outcome::Expired { ids: Vec::new() }));
            }
        }
        let mut snap = Snapshot::default();
        if keys.next_account {
            let next: i64 = tx.query_one(&s.next_account, &[]).await?.get(0);
            snap.next_account = AccountId(store::uint(next)?);
        }
        // The reaper finds its due pieces without locking them: it locks their accounts first
        // and the pieces after, in the one order every request uses (a piece locked before its
        // account would deadlock against a request on that account). A piece settled while we
        // waited is read again under its lock below, and `expire` skips it.
        let mut due = Vec::new();
        if let Some(max) = keys.due_max {
            for row in tx.query(&s.due, &[&int(now_ms)?, &i64::from(max)]).await? {
                due.push(piece_row(&row).into_piece()?.id);
            }
        }
        let mut accounts = keys.accounts.clone();
        accounts.extend(due.iter().map(|p| p.account));
        accounts.sort();
        accounts.dedup();
        for id in accounts {
            if let Some(row) = tx.query_opt(&s.account_lock, &[&int(id.0)?]).await? {
                snap.accounts.insert(id, account_row(&row).into_account()?);
            }
        }
        for id in due.into_iter().chain(keys.pieces) {
            let args = [int(id.account.0)?, int(id.serial.0)?];
            if let Some(row) = tx.query_opt(&s.piece_lock, &[&args[0], &args[1]]).await? {
                snap.pieces.insert(id, piece_row(&row).into_piece()?);
            }
        }
        // 2. Seen before? (Read after the locks: a duplicate that waited sees the winner's
        //    record. Duplicates with no account to lock meet on the primary key: 23505, retry.)
        let key = request.id.to_bytes();
        let existing = match tx.query_opt(&s.idem_get, &[&&key[..]]).await? {
            Some(row) => {
                let mut record = idempotency_row(&row)?;
                restore_signature(&tx, &mut record.reply).await?;
                Some(record)
            }
            None => None,
        };
        if let Some(reply) = ops::replay(existing, request) {
            tx.commit().await?;
            return Ok(reply);
        }
        // 3. Decide and write. Account updates are conditional on the version read (the audit
        //    sequence number, which every change advances): a lost race retries.
        let reply = match ops::decide(&snap, request, now_ms, &self.limits, &*self.signer) {
            Ok((outcome, changes)) => {
                for a in &changes.accounts {
                    a.registers
                        .check()
                        .map_err(|e| StoreError::InvariantBroken(e.to_string()))?;
                    let r = AccountRow::from_account(a)?;
                    let (stmt, version) = match snap.accounts.get(&a.id) {
                        Some(before) => (&s.account_update, int(before.audit_seq)?),
                        None => (&s.account_insert, 0),
                    };
                    let n = tx
                        .execute(
                            stmt,
                            &[
                                &r.id,
                                &r.license,
                                &r.status,
                                &r.descending,
                                &r.pending,
                                &r.ascending,
                                &r.control,
                                &r.last_piece,
                                &r.audit_seq,
                                &r.audit_head,
                                &version,
                            ],
                        )
                        .await?;
                    if n != 1 {
                        return Err(TxError::Retry);
                    }
                }
                for p in &changes.pieces {
                    let r = PieceRow::from_piece(p)?;
                    tx.execute(
                        &s.piece_put,
                        &[
                            &r.account,
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
                            &r.signed,
                            &r.item,
                            &r.terminal,
                            &r.scan_count,
                            &r.scan_recorded_at_ms,
                        ],
                    )
                    .await?;
                }
                for rec in &changes.audit {
                    tx.execute(
                        &s.audit_put,
                        &[
                            &int(rec.account.0)?,
                            &int(rec.seq)?,
                            &int(rec.at_ms)?,
                            &rec.body,
                            &&rec.hash[..],
                        ],
                    )
                    .await?;
                }
                Ok(outcome)
            }
            Err(e) => Err(e),
        };
        if store::remember(&reply) {
            let fp = ops::fingerprint(&request.op);
            tx.execute(
                &s.idem_put,
                &[
                    &&key[..],
                    &&fp[..],
                    &store::encode_stored_reply(&reply),
                    &int(now_ms)?,
                    &store::permanent(&request.op),
                ],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(reply)
    }
}

impl LedgerStore for PostgresStore {
    fn execute(&self, request: Request, now_ms: u64) -> BoxFuture<'_, Result<Reply, StoreError>> {
        Box::pin(async move {
            if let Some(queue) = self.batch_queue(&request) {
                let (reply, answer) = tokio::sync::oneshot::channel();
                queue
                    .send(pg_batch::Job {
                        request,
                        now_ms,
                        reply,
                    })
                    .await
                    .map_err(|_| StoreError::Closed)?;
                return answer.await.map_err(|_| StoreError::Closed)?;
            }
            let attempts = self.config.serialization_retries_max.max(1);
            self.with_conn(async |conn| {
                for attempt in 0..attempts {
                    match self.attempt(conn, &request, now_ms).await {
                        Ok(reply) => return Ok(reply),
                        Err(TxError::Fail(e)) => return Err(e),
                        Err(TxError::Retry) => race_backoff(attempt).await,
                    }
                }
                Err(StoreError::Contention { attempts })
            })
            .await
        })
    }

    /// Queues a request the batch writers take for them, which answer `reply` after its batch
    /// committed (no task of the caller's waits for it). Other requests, and any when the
    /// queue is full, go back to the caller, who runs `execute` on a task (which waits for room).
    fn submit(
        &self,
        request: Request,
        now_ms: u64,
        reply: store::ReplySender,
    ) -> Result<(), store::Unsubmitted> {
        let Some(queue) = self.batch_queue(&request) else {
            return Err(Box::new((request, reply)));
        };
        queue
            .try_send(pg_batch::Job {
                request,
                now_ms,
                reply,
            })
            .map_err(|e| {
                let job = match e {
                    mpsc::error::TrySendError::Full(j) | mpsc::error::TrySendError::Closed(j) => j,
                };
                Box::new((job.request, job.reply))
            })
    }

    fn account(&self, id: AccountId) -> BoxFuture<'_, Result<Option<Account>, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let sql = format!("SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1");
            c.client
                .query_opt(&sql, &[&int(id.0)?])
                .await
                .map_err(db)?
                .map(|r| account_row(&r).into_account())
                .transpose()
        }))
    }

    fn piece(&self, id: PieceId) -> BoxFuture<'_, Result<Option<Piece>, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let sql = format!("SELECT {PIECE_COLS} FROM pieces WHERE account = $1 AND serial = $2");
            c.client
                .query_opt(&sql, &[&int(id.account.0)?, &int(id.serial.0)?])
                .await
                .map_err(db)?
                .map(|r| piece_row(&r).into_piece())
                .transpose()
        }))
    }

    fn pieces(
        &self,
        account: AccountId,
        before: Option<PieceSerial>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Piece>, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let before = match before {
                Some(s) => int(s.0)?,
                None => i64::MAX,
            };
            let sql = format!(
                "SELECT {PIECE_COLS} FROM pieces WHERE account = $1 AND serial < $2 \
                 ORDER BY serial DESC LIMIT $3"
            );
            c.client
                .query(&sql, &[&int(account.0)?, &before, &i64::from(limit)])
                .await
                .map_err(db)?
                .iter()
                .map(|r| piece_row(r).into_piece())
                .collect()
        }))
    }

    fn refunds_awaiting(
        &self,
        account: Option<AccountId>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Piece>, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let sql = format!(
                "SELECT {PIECE_COLS} FROM pieces WHERE refund = 'submitted' \
                 AND ($2::BIGINT IS NULL OR account = $2) \
                 ORDER BY refund_submitted_at_ms, account, serial LIMIT $1"
            );
            let account = account.map(|a| int(a.0)).transpose()?;
            c.client
                .query(&sql, &[&i64::from(limit), &account])
                .await
                .map_err(db)?
                .iter()
                .map(|r| piece_row(r).into_piece())
                .collect()
        }))
    }

    fn record_tender(
        &self,
        tender: report::Tender,
    ) -> BoxFuture<'_, Result<store::TenderAnswer, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let mut tries = 0;
            loop {
                tries += 1;
                match tender_attempt(&mut c.client, &tender).await {
                    Err(e) if retryable(&e) && tries < TENDER_TRIES_MAX => continue,
                    r => return r.map_err(db)?,
                }
            }
        }))
    }

    fn day_rows(
        &self,
        account: Option<AccountId>,
        from_ms: u64,
        to_ms: u64,
    ) -> BoxFuture<'_, Result<report::DayRows, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let account = account.map(|a| int(a.0)).transpose()?;
            let (from, to) = (store::cutoff(from_ms), store::cutoff(to_ms));
            let tx = c
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(db)?;
            let sql = format!(
                "SELECT {PIECE_COLS} FROM pieces WHERE authorized_at_ms >= $1 \
                 AND authorized_at_ms < $2 AND ($3::BIGINT IS NULL OR account = $3) \
                 ORDER BY authorized_at_ms, account, serial LIMIT $4"
            );
            let pieces = tx
                .query(
                    &sql,
                    &[
                        &from,
                        &to,
                        &account,
                        &(i64::from(report::REPORT_PIECES_MAX) + 1),
                    ],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| piece_row(r).into_piece())
                .collect::<Result<Vec<_>, _>>()?;
            let sql = format!(
                "SELECT {TENDER_COLS} FROM tenders WHERE recorded_at_ms >= $1 \
                 AND recorded_at_ms < $2 AND ($3::BIGINT IS NULL OR account = $3) \
                 ORDER BY recorded_at_ms, basket LIMIT $4"
            );
            let rows = tx
                .query(
                    &sql,
                    &[
                        &from,
                        &to,
                        &account,
                        &(i64::from(report::REPORT_TENDERS_MAX) + 1),
                    ],
                )
                .await
                .map_err(db)?;
            let mut tenders = Vec::with_capacity(rows.len());
            for r in &rows {
                tenders.push(tender_row(&tx, r).await?);
            }
            tx.commit().await.map_err(db)?;
            Ok(report::DayRows { pieces, tenders })
        }))
    }

    fn unsettled(
        &self,
        account: AccountId,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Piece>, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let sql = format!(
                "SELECT {PIECE_COLS} FROM pieces WHERE state = 'unsettled' AND account = $1 \
                 ORDER BY serial LIMIT $2"
            );
            c.client
                .query(&sql, &[&int(account.0)?, &i64::from(limit)])
                .await
                .map_err(db)?
                .iter()
                .map(|r| piece_row(r).into_piece())
                .collect()
        }))
    }

    fn account_audit(&self, id: AccountId) -> BoxFuture<'_, Result<Vec<AuditRecord>, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let rows = c
                .client
                .query(
                    "SELECT seq AS row_id, account, seq, at_ms, body, hash FROM audit WHERE account = $1 ORDER BY seq",
                    &[&int(id.0)?],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| audit_record(r).map(|s| s.record))
                .collect()
        }))
    }

    fn account_statement(
        &self,
        id: AccountId,
        from_ms: u64,
        to_ms: u64,
    ) -> BoxFuture<'_, Result<super::model::Statement, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let (account, from, to) = (int(id.0)?, store::cutoff(from_ms), store::cutoff(to_ms));
            let rows = c
                .client
                .query(
                    "(SELECT seq AS row_id, account, seq, at_ms, body, hash FROM audit \
                      WHERE account = $1 AND at_ms < $2 ORDER BY at_ms DESC, seq DESC LIMIT 1) \
                     UNION ALL \
                     (SELECT seq AS row_id, account, seq, at_ms, body, hash FROM audit \
                      WHERE account = $1 AND at_ms >= $2 AND at_ms < $3) \
                     ORDER BY seq",
                    &[&account, &from, &to],
                )
                .await
                .map_err(db)?;
            let mut fold = super::audit::StatementFold::new(id, from_ms, to_ms);
            for r in &rows {
                if !fold.push(&audit_record(r)?.record) {
                    break;
                }
            }
            Ok(fold.finish())
        }))
    }

    fn audit_snapshot(&self) -> BoxFuture<'_, Result<store::AuditSnapshot, StoreError>> {
        Box::pin(self.with_conn(async |c| {
            let tx = c
                .client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(db)?;
            let accounts = tx
                .query(
                    &format!("SELECT {ACCOUNT_COLS} FROM accounts ORDER BY id"),
                    &[],
                )
                .await
                .map_err(db)?
                .iter()
                .map(|r| account_row(r).into_account())
                .collect::<Result<Vec<_>, _>>()?;
            let records = tx
                .query(
                    "SELECT seq AS row_id, account, seq, at_ms, body, hash FROM audit ORDER BY account, seq",
                    &[],
                )
                .await
                .map_err(db)?
                .iter()
                .map(audit_record)
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit().await.map_err(db)?;
            Ok((accounts, records))
        }))
    }

    fn prune_idempotency(
        &self,
        before_ms: u64,
        max: u32,
    ) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let n = c
                .client
                .execute(
                    "DELETE FROM idempotency WHERE request_id IN \
                     (SELECT i.request_id FROM idempotency i WHERE NOT i.permanent \
                     AND i.at_ms < $1 AND NOT EXISTS (SELECT 1 FROM payment_intents p \
                     WHERE p.request_id = i.request_id AND p.resolved_at_ms IS NULL) \
                     LIMIT $2)",
                    &[&int(before_ms)?, &i64::from(max)],
                )
                .await
                .map_err(db)?;
            Ok(n)
        }))
    }

    fn record_intent(&self, intent: PaymentIntent) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            c.client
                .execute(
                    "INSERT INTO payment_intents \
                     (request_id, account, amount, method, started_at_ms) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id) DO NOTHING",
                    &[
                        &intent.request.to_bytes().as_slice(),
                        &int(intent.account.0)?,
                        &int(intent.amount.get())?,
                        &store::encode_method(&intent.method),
                        &int(intent.started_at_ms)?,
                    ],
                )
                .await
                .map_err(db)?;
            Ok(())
        }))
    }

    fn resolve_intent(
        &self,
        request: RequestId,
        resolution: IntentResolution,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            c.client
                .execute(
                    "UPDATE payment_intents SET resolved_at_ms = $2, resolution = $3 \
                     WHERE request_id = $1 AND resolved_at_ms IS NULL",
                    &[
                        &request.to_bytes().as_slice(),
                        &int(now_ms)?,
                        &resolution.as_str(),
                    ],
                )
                .await
                .map_err(db)?;
            Ok(())
        }))
    }

    fn open_intents(
        &self,
        before_ms: u64,
        max: u32,
    ) -> BoxFuture<'_, Result<Vec<PaymentIntent>, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let rows = c
                .client
                .query(
                    "SELECT request_id, account, amount, method, started_at_ms \
                     FROM payment_intents WHERE resolved_at_ms IS NULL AND started_at_ms < $1 \
                     ORDER BY started_at_ms LIMIT $2",
                    &[&store::cutoff(before_ms), &i64::from(max)],
                )
                .await
                .map_err(db)?;
            rows.iter()
                .map(|r| {
                    store::intent_from_columns(r.get(0), r.get(1), r.get(2), r.get(3), r.get(4))
                })
                .collect()
        }))
    }

    fn idempotency_record(
        &self,
        request: RequestId,
    ) -> BoxFuture<'_, Result<Option<IdempotencyRecord>, StoreError>> {
        Box::pin(self.with_conn(async move |c| {
            let key = request.to_bytes();
            let row = c
                .client
                .query_opt(&c.stmts.idem_get, &[&&key[..]])
                .await
                .map_err(db)?;
            let Some(row) = row else {
                return Ok(None);
            };
            let mut record = idempotency_row(&row)?;
            restore_signature(&c.client, &mut record.reply).await?;
            Ok(Some(record))
        }))
    }

    fn max_license(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(self.with_conn(async |c| {
            let v: i64 = c
                .client
                .query_one("SELECT COALESCE(MAX(license), 0) FROM accounts", &[])
                .await
                .map_err(db)?
                .get(0);
            store::uint(v)
        }))
    }
}
