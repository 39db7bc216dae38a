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
            batch_writers: 4,
            batch_requests_max: 64,
            batch_queue_requests_max: 4096,
        }
    }
}

const MIGRATIONS: &[&str] = &[
    // 1: accounts, pieces, idempotency, audit
    "CREATE TABLE accounts (
        id BIGINT PRIMARY KEY,
        license BIGINT,
        status TEXT NOT NULL,
        descending BIGINT NOT NULL CHECK (descending >= 0),
        pending BIGINT NOT NULL CHECK (pending >= 0),
        ascending BIGINT NOT NULL CHECK (ascending >= 0),
        control BIGINT NOT NULL CHECK (control = descending + pending + ascending),
        last_piece BIGINT NOT NULL,
        audit_seq BIGINT NOT NULL,
        audit_head BYTEA NOT NULL
    );
    CREATE TABLE pieces (
        account BIGINT NOT NULL REFERENCES accounts(id),
        serial BIGINT NOT NULL,
        kind BIGINT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        state TEXT NOT NULL,
        authorized_at_ms BIGINT NOT NULL,
        expires_at_ms BIGINT NOT NULL,
        printed_at_ms BIGINT,
        refund TEXT,
        refund_submitted_at_ms BIGINT,
        scanned BOOLEAN NOT NULL,
        signed BYTEA NOT NULL,
        PRIMARY KEY (account, serial)
    );
    CREATE INDEX pieces_due ON pieces(expires_at_ms) WHERE state = 'reserved';
    CREATE TABLE idempotency (
        request_id BYTEA PRIMARY KEY,
        fingerprint BYTEA NOT NULL,
        reply TEXT NOT NULL,
        at_ms BIGINT NOT NULL
    );
    CREATE TABLE audit (
        id BIGSERIAL PRIMARY KEY,
        account BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        at_ms BIGINT NOT NULL,
        body TEXT NOT NULL,
        hash BYTEA NOT NULL,
        UNIQUE (account, seq)
    );",
    // 2: the item description of each piece (for listings); the primary key (account,
    //    serial) already lists one account's pieces in order.
    "ALTER TABLE pieces ADD COLUMN item BYTEA NOT NULL DEFAULT ''::bytea;",
    // 3: idempotency records are pruned after a retention period, except account openings
    "ALTER TABLE idempotency ADD COLUMN permanent BOOLEAN NOT NULL DEFAULT false;
    UPDATE idempotency SET permanent = true WHERE reply LIKE '{\"Ok\":{\"Opened\":%';
    CREATE INDEX idempotency_age ON idempotency(at_ms) WHERE NOT permanent;",
    // 4: payment intents: a top-up is recorded before its charge and resolved after it, so
    //    the reaper can reconcile a charge that was never credited nor reversed.
    "CREATE TABLE payment_intents (
        request_id BYTEA PRIMARY KEY,
        account BIGINT NOT NULL,
        amount BIGINT NOT NULL CHECK (amount > 0),
        method TEXT NOT NULL,
        started_at_ms BIGINT NOT NULL,
        resolved_at_ms BIGINT,
        resolution TEXT
    );
    CREATE INDEX payment_intents_open ON payment_intents(started_at_ms)
        WHERE resolved_at_ms IS NULL;",
    // 5: the refund requests awaiting a supervisor's decision, oldest first.
    "CREATE INDEX pieces_refunds_awaiting ON pieces(refund_submitted_at_ms)
        WHERE refund = 'submitted';",
    // 6: issue 12 — the terminal that authorized a piece (only it may void the piece once
    //    unsettled), and the unsettled pieces of an account (the index holds only those few).
    "ALTER TABLE pieces ADD COLUMN terminal BIGINT;
    CREATE INDEX pieces_unsettled ON pieces(account, serial) WHERE state = 'unsettled';",
    // 7: issue 13 — a repeated scan of a piece within the scan record window only counts on
    //    the piece (`scan_count`) instead of adding an audit record; the window runs from the
    //    last recorded scan (`scan_recorded_at_ms`; none for scans recorded before).
    "ALTER TABLE pieces ADD COLUMN scan_count BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE pieces ADD COLUMN scan_recorded_at_ms BIGINT;
    UPDATE pieces SET scan_count = 1 WHERE scanned;",
    // 8: issue 13 — statements and the admin monitor read an account's records by time, not
    //    its whole history.
    "CREATE INDEX audit_time ON audit(account, at_ms);",
    // 9: issue 14 — meter licenses from the database, so every vendor front on it issues
    //    distinct ones: a sequence that continues after the largest license the ledger holds,
    //    and one row per meter (the authority's record; asking again returns it).
    "CREATE SEQUENCE meter_license_seq;
    SELECT setval('meter_license_seq', GREATEST(COALESCE(MAX(license), 0), 1),
        COALESCE(MAX(license), 0) > 0) FROM accounts;
    CREATE TABLE meter_licenses (
        meter BIGINT PRIMARY KEY,
        license BIGINT NOT NULL UNIQUE
    );",
    // 10: issue 14 — the vendor's directory lives here too, so every front on this database
    //    shares it (`vendor_server::directory_pg`; SQLite keeps it in `vendor.db`). Account
    //    ids are the database's (the ledger account of directory account N is opened for N);
    //    `directory_revision` moves with every revocation, so fronts re-read them only then.
    "CREATE TABLE directory_accounts (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        name TEXT NOT NULL,
        created_ms BIGINT NOT NULL
    );
    CREATE TABLE clerks (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES directory_accounts(id),
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('clerk', 'supervisor')),
        created_ms BIGINT NOT NULL,
        disabled_ms BIGINT
    );
    CREATE TABLE terminals (
        id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES directory_accounts(id),
        name TEXT NOT NULL,
        device_key BYTEA NOT NULL UNIQUE CHECK (length(device_key) = 32),
        enrolled_ms BIGINT NOT NULL,
        revoked_ms BIGINT
    );
    CREATE INDEX terminals_account ON terminals(account_id);
    CREATE TABLE enrollment_codes (
        code_sha256 BYTEA PRIMARY KEY,
        account_id BIGINT NOT NULL REFERENCES directory_accounts(id),
        created_ms BIGINT NOT NULL,
        expires_ms BIGINT NOT NULL,
        uses_left BIGINT NOT NULL CHECK (uses_left >= 0)
    );
    CREATE INDEX enrollment_codes_account ON enrollment_codes(account_id);
    CREATE TABLE login_failures (
        username TEXT NOT NULL,
        terminal_id BIGINT NOT NULL,
        failures BIGINT NOT NULL,
        locked_until_ms BIGINT NOT NULL,
        PRIMARY KEY (username, terminal_id)
    );
    CREATE TABLE directory_revision (
        one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
        revocations BIGINT NOT NULL
    );
    INSERT INTO directory_revision (one, revocations) VALUES (true, 0);",
    // 11: issue 14 — sessions every front can resume (`vendor_server::fronts`): one row per
    //    terminal, the front holding it live and the epoch of its latest bind; the resume key
    //    sealed under a key derived from the vendor key.
    "CREATE SEQUENCE session_epoch_seq;
    CREATE TABLE sessions (
        session_id BIGINT PRIMARY KEY,
        terminal_id BIGINT NOT NULL UNIQUE,
        account_id BIGINT NOT NULL,
        clerk TEXT NOT NULL,
        ledger_account BIGINT NOT NULL,
        resume_sealed BYTEA NOT NULL CHECK (length(resume_sealed) = 32),
        front BIGINT NOT NULL,
        epoch BIGINT NOT NULL,
        detached_at_ms BIGINT
    );
    CREATE INDEX sessions_detached ON sessions(detached_at_ms) WHERE detached_at_ms IS NOT NULL;",
    // 12: issue 15 — a basket's tender (how the customer paid) with its pieces, each piece in
    //     at most one basket (the primary key of `tender_pieces`); the day report reads the
    //     pieces authorized and the tenders recorded in a day by time.
    "CREATE TABLE tenders (
        basket BYTEA PRIMARY KEY,
        account BIGINT NOT NULL,
        clerk TEXT NOT NULL,
        terminal BIGINT NOT NULL,
        kind TEXT NOT NULL,
        tendered BIGINT NOT NULL CHECK (tendered > 0),
        change_given BIGINT NOT NULL CHECK (change_given >= 0 AND change_given <= tendered),
        total BIGINT NOT NULL CHECK (total = tendered - change_given),
        recorded_at_ms BIGINT NOT NULL
    );
    CREATE INDEX tenders_recorded ON tenders(recorded_at_ms);
    CREATE TABLE tender_pieces (
        account BIGINT NOT NULL,
        serial BIGINT NOT NULL,
        basket BYTEA NOT NULL,
        position BIGINT NOT NULL,
        PRIMARY KEY (account, serial)
    );
    CREATE INDEX tender_pieces_basket ON tender_pieces(basket, position);
    CREATE INDEX pieces_authorized ON pieces(authorized_at_ms);",
    // 13: issue 14 — an audit record is keyed by its place in its account's chain
    //    (account, seq), which every record already had uniquely; the table-wide `id` (a
    //    sequence and a third index written with every record) goes. Chains are read in
    //    (account, seq) order.
    "ALTER TABLE audit DROP CONSTRAINT audit_pkey;
    ALTER TABLE audit DROP COLUMN id;
    ALTER TABLE audit DROP CONSTRAINT audit_account_seq_key;
    ALTER TABLE audit ADD PRIMARY KEY (account, seq);",
];

/// Tries of one tender that met another transaction recording the same basket or piece.
const TENDER_TRIES_MAX: usize = 3;
const TENDER_COLS: &str =
    "basket, account, clerk, terminal, kind, tendered, change_given, total, recorded_at_ms";

/// The transaction-scoped advisory lock a reaper pass holds (`pg_try_advisory_xact_lock`), so
/// at most one front's reaper works at a time; the key is arbitrary but fixed for Frank.
pub const REAPER_LOCK_KEY: i64 = 7_346_529;

/// Tries of one license issue that met another front inserting the same meter.
const LICENSE_TRIES_MAX: usize = 3;

/// Meter licensing on the database (`LicensingAuthority`): every vendor front on one
/// PostgreSQL issues from one sequence, so no two meters get the same license, and a meter
/// asked for again gets the license it already has (its row in `meter_licenses`). Migration
/// 9; the embedded authority's numbering continues where the ledger's largest license left.
pub struct PostgresLicensing {
    url: String,
    conn: Mutex<Option<Client>>,
    reconnect: Reconnect,
    licenses_max: u64,
}

impl PostgresLicensing {
    /// For the database at `url` (migrated by [`PostgresStore::connect`]); licenses above
    /// `licenses_max` are refused.
    pub fn new(url: &str, licenses_max: u64) -> PostgresLicensing {
        PostgresLicensing {
            url: url.to_string(),
            conn: Mutex::new(None),
            reconnect: Reconnect::default(),
            licenses_max,
        }
    }

    /// Issues on the connection kept for licensing (opened again, through the reconnect gate,
    /// when it is gone); a connection on which the issue failed and that no longer serves
    /// writes (its server went away or became a standby) is dropped.
    async fn issue_now(&self, meter: MeterSerial) -> Result<u64, String> {
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            let target = Target::parse(&self.url).map_err(|e| e.to_string())?;
            let client = self
                .reconnect
                .attempt(target.open())
                .await
                .map_err(|e| format!("licensing database unreachable: {e}"))?;
            *guard = Some(client);
        }
        let Some(client) = guard.as_ref() else {
            return Err("licensing database unreachable".into());
        };
        let r = Self::issue_on(client, meter, self.licenses_max).await;
        if r.is_err() && !pg_conn::usable(client).await {
            *guard = None;
        }
        r
    }

    async fn issue_on(
        client: &Client,
        meter: MeterSerial,
        licenses_max: u64,
    ) -> Result<u64, String> {
        let meter =
            i64::try_from(meter.number()).map_err(|_| "meter number out of range".to_string())?;
        // A front that inserted the meter's row at the same moment wins; its row is not in
        // this statement's snapshot, so the next try reads it.
        let mut license: Option<i64> = None;
        for _ in 0..LICENSE_TRIES_MAX {
            let row = client
                .query_opt(
                    "WITH new AS (INSERT INTO meter_licenses (meter, license) \
                     SELECT $1, nextval('meter_license_seq') \
                     WHERE NOT EXISTS (SELECT 1 FROM meter_licenses WHERE meter = $1) \
                     ON CONFLICT (meter) DO NOTHING RETURNING license) \
                     SELECT license FROM new UNION ALL \
                     SELECT license FROM meter_licenses WHERE meter = $1 LIMIT 1",
                    &[&meter],
                )
                .await
                .map_err(|e| format!("licensing database: {e}"))?;
            if let Some(row) = row {
                license = Some(row.get(0));
                break;
            }
        }
        let license = license
            .ok_or_else(|| "licensing database: the meter's row did not settle".to_string())?;
        let license = u64::try_from(license).map_err(|_| "negative license".to_string())?;
        if license > licenses_max {
            return Err(format!(
                "all {licenses_max} licenses of this authority are issued"
            ));
        }
        Ok(license)
    }
}

impl super::licensing::LicensingAuthority for PostgresLicensing {
    fn issue(&self, meter: MeterSerial) -> BoxFuture<'_, Result<LicenseId, String>> {
        Box::pin(async move { self.issue_now(meter).await.map(LicenseId) })
    }
}

const ACCOUNT_COLS: &str = "id, license, status, descending, pending, ascending, control, last_piece, audit_seq, audit_head";
const PIECE_COLS: &str = "account, serial, kind, amount, state, authorized_at_ms, expires_at_ms, printed_at_ms, refund, refund_submitted_at_ms, scanned, signed, item, terminal, scan_count, scan_recorded_at_ms";

pub(super) fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    )
}

/// Prepared statements of one connection.
struct Stmts {
    idem_get: Statement,
    idem_put: Statement,
    account_lock: Statement,
    piece_lock: Statement,
    due: Statement,
    next_account: Statement,
    account_insert: Statement,
    account_update: Statement,
    piece_put: Statement,
    audit_put: Statement,
}

pub(super) struct Conn {
    pub(super) client: Client,
    stmts: Stmts,
    pub(super) batch: pg_batch::BatchStmts,
}

/// A new connection with its prepared statements, opened through `reconnect` (which spaces
/// out attempts while the database is unreachable).
pub(super) async fn connect(target: &Target, reconnect: &Reconnect) -> Result<Conn, StoreError> {
    reconnect.attempt(open_conn(target)).await
}

async fn open_conn(target: &Target) -> Result<Conn, StoreError> {
    let client = target.open().await?;
    let p = |sql: String| {
        let client = &client;
        async move { client.prepare(&sql).await.map_err(db) }
    };
    let stmts = Stmts {
        idem_get: p("SELECT fingerprint, reply FROM idempotency WHERE request_id = $1".into())
            .await?,
        idem_put: p(
            "INSERT INTO idempotency (request_id, fingerprint, reply, at_ms, permanent) \
             VALUES ($1, $2, $3, $4, $5)"
                .into(),
        )
        .await?,
        account_lock: p(format!(
            "SELECT {ACCOUNT_COLS} FROM accounts WHERE id = $1 FOR UPDATE"
        ))
        .await?,
        piece_lock: p(format!(
            "SELECT {PIECE_COLS} FROM pieces WHERE account = $1 AND serial = $2 FOR UPDATE"
        ))
        .await?,
        due: p(format!(
            "SELECT {PIECE_COLS} FROM pieces WHERE state = 'reserved' AND expires_at_ms <= $1 \
             ORDER BY expires_at_ms LIMIT $2"
        ))
        .await?,
        next_account: p("SELECT COALESCE(MAX(id), 0) + 1 FROM accounts".into()).await?,
        account_insert: p(format!(
            "INSERT INTO accounts ({ACCOUNT_COLS}) \
             SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 WHERE $11::BIGINT = 0"
        ))
        .await?,
        account_update: p(
            "UPDATE accounts SET license = $2, status = $3, descending = $4, pending = $5, \
             ascending = $6, control = $7, last_piece = $8, audit_seq = $9, audit_head = $10 \
             WHERE id = $1 AND audit_seq = $11"
                .into(),
        )
        .await?,
        piece_put: p(format!(
            "INSERT INTO pieces ({PIECE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (account, serial) DO UPDATE SET state = EXCLUDED.state, \
             printed_at_ms = EXCLUDED.printed_at_ms, refund = EXCLUDED.refund, \
             refund_submitted_at_ms = EXCLUDED.refund_submitted_at_ms, scanned = EXCLUDED.scanned, \
             scan_count = EXCLUDED.scan_count, scan_recorded_at_ms = EXCLUDED.scan_recorded_at_ms"
        ))
        .await?,
        audit_put: p(
            "INSERT INTO audit (account, seq, at_ms, body, hash) VALUES ($1, $2, $3, $4, $5)"
                .into(),
        )
        .await?,
    };
    let batch = pg_batch::BatchStmts::prepare(&client, ACCOUNT_COLS, PIECE_COLS)
        .await
        .map_err(db)?;
    Ok(Conn {
        client,
        stmts,
        batch,
    })
}

/// Creates and upgrades the schema (ledger, directory, sessions) at `url`; concurrent callers
/// serialize. The directory (`vendor_server::directory_pg`) calls it when it opens.
pub(crate) async fn migrate_url(url: &str) -> Result<(), StoreError> {
    migrate(&Target::parse(url)?).await
}

async fn migrate(target: &Target) -> Result<(), StoreError> {
    let mut client = target.open().await?;
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .await
        .map_err(db)?;
    let tx = client.transaction().await.map_err(db)?;
    // Serializes concurrent migrators (the key is arbitrary but fixed for Frank's ledger).
    tx.execute("SELECT pg_advisory_xact_lock(7346528)", &[])
        .await
        .map_err(db)?;
    let version: i64 = tx
        .query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
        .await
        .map_err(db)?
        .get(0);
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let v = i as i64 + 1;
        if v > version {
            tx.batch_execute(sql).await.map_err(db)?;
            tx.execute("INSERT INTO schema_version (version) VALUES ($1)", &[&v])
                .await
                .map_err(db)?;
        }
    }
    tx.commit().await.map_err(db)?;
    Ok(())
}

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

/// The pause before retrying a transaction that lost a race: a little, more each time, so
/// racers spread out (50 µs doubling, at most ~51 ms).
pub(super) async fn race_backoff(attempt: u32) {
    let us = 50u64 << attempt.min(10);
    tokio::time::sleep(std::time::Duration::from_micros(us)).await;
}

/// A transaction's failure: retry, or give up with this error.
pub(super) enum TxError {
    Retry,
    Fail(StoreError),
}

impl From<tokio_postgres::Error> for TxError {
    fn from(e: tokio_postgres::Error) -> Self {
        if retryable(&e) {
            TxError::Retry
        } else {
            TxError::Fail(db(e))
        }
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        TxError::Fail(e)
    }
}

/// A stored tender from a row of [`TENDER_COLS`], with its pieces in order.
async fn tender_row(
    client: &impl tokio_postgres::GenericClient,
    r: &tokio_postgres::Row,
) -> Result<report::Tender, StoreError> {
    let basket: Vec<u8> = r.get(0);
    let pieces: Vec<i64> = client
        .query(
            "SELECT serial FROM tender_pieces WHERE basket = $1 ORDER BY position",
            &[&basket],
        )
        .await
        .map_err(db)?
        .iter()
        .map(|p| p.get(0))
        .collect();
    store::tender_from_columns(
        &basket,
        r.get(1),
        r.get(2),
        r.get(3),
        r.get::<_, String>(4).as_str(),
        r.get(5),
        r.get(6),
        r.get(7),
        r.get(8),
        pieces,
    )
}

/// One try of a tender: one transaction locking the named pieces (`FOR SHARE`: a void or
/// refund of one waits until the tender is in), deciding with [`report::decide_tender`] and
/// writing what it allows. A tender racing another for the same basket or piece fails on a
/// primary key (`unique_violation`) and is tried again: then it sees the winner's rows.
async fn tender_attempt(
    client: &mut Client,
    asked: &report::Tender,
) -> Result<Result<store::TenderAnswer, StoreError>, tokio_postgres::Error> {
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await?;
    let basket = asked.basket.to_bytes().to_vec();
    let existing = tx
        .query_opt(
            &format!("SELECT {TENDER_COLS} FROM tenders WHERE basket = $1"),
            &[&basket],
        )
        .await?;
    let existing = match existing {
        Some(r) => match tender_row(&tx, &r).await {
            Ok(t) => Some(t),
            Err(e) => return Ok(Err(e)),
        },
        None => None,
    };
    let account = match int(asked.account.0) {
        Ok(a) => a,
        Err(e) => return Ok(Err(e)),
    };
    let mut found = Vec::with_capacity(asked.pieces.len());
    if existing.is_none() && report::check_shape(asked).is_ok() {
        let sql =
            format!("SELECT {PIECE_COLS} FROM pieces WHERE account = $1 AND serial = $2 FOR SHARE");
        for serial in &asked.pieces {
            let Ok(s) = int(serial.0) else {
                found.push(report::TenderPiece {
                    serial: *serial,
                    piece: None,
                    basket: None,
                });
                continue;
            };
            let piece = match tx.query_opt(&sql, &[&account, &s]).await? {
                Some(r) => match piece_row(&r).into_piece() {
                    Ok(p) => Some(p),
                    Err(e) => return Ok(Err(e)),
                },
                None => None,
            };
            let holder = tx
                .query_opt(
                    "SELECT basket FROM tender_pieces WHERE account = $1 AND serial = $2",
                    &[&account, &s],
                )
                .await?
                .map(|r| r.get::<_, Vec<u8>>(0));
            let holder = match holder.map(|b| <[u8; 16]>::try_from(b.as_slice())) {
                None => None,
                Some(Ok(b)) => Some(RequestId::from_bytes(b)),
                Some(Err(_)) => return Ok(Err(corrupt("tender piece basket id"))),
            };
            found.push(report::TenderPiece {
                serial: *serial,
                piece,
                basket: holder,
            });
        }
    }
    let stored = match report::decide_tender(asked, existing.as_ref(), &found) {
        Err(e) => return Ok(Ok(Err(e))),
        Ok(report::TenderDecision::Replay(t)) => return Ok(Ok(Ok(t))),
        Ok(report::TenderDecision::Insert(t)) => t,
    };
    let cols = (|| -> Result<_, StoreError> {
        Ok((
            int(stored.terminal.0)?,
            int(stored.tendered.get())?,
            int(stored.change.get())?,
            int(stored.total.get())?,
            int(stored.recorded_at_ms)?,
        ))
    })();
    let (terminal, tendered, change, total, at) = match cols {
        Ok(c) => c,
        Err(e) => return Ok(Err(e)),
    };
    tx.execute(
        &format!("INSERT INTO tenders ({TENDER_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"),
        &[
            &basket,
            &account,
            &stored.clerk,
            &terminal,
            &stored.kind.as_str(),
            &tendered,
            &change,
            &total,
            &at,
        ],
    )
    .await?;
    for (position, serial) in stored.pieces.iter().enumerate() {
        let (Ok(s), Ok(pos)) = (int(serial.0), i64::try_from(position)) else {
            return Ok(Err(corrupt("tender piece out of range")));
        };
        tx.execute(
            "INSERT INTO tender_pieces (account, serial, basket, position) VALUES ($1, $2, $3, $4)",
            &[&account, &s, &basket, &pos],
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Ok(Ok(stored)))
}

pub(super) fn account_row(r: &tokio_postgres::Row) -> AccountRow {
    AccountRow {
        id: r.get(0),
        license: r.get(1),
        status: r.get(2),
        descending: r.get(3),
        pending: r.get(4),
        ascending: r.get(5),
        control: r.get(6),
        last_piece: r.get(7),
        audit_seq: r.get(8),
        audit_head: r.get(9),
    }
}

pub(super) fn piece_row(r: &tokio_postgres::Row) -> PieceRow {
    PieceRow {
        account: r.get(0),
        serial: r.get(1),
        kind: r.get(2),
        amount: r.get(3),
        state: r.get(4),
        authorized_at_ms: r.get(5),
        expires_at_ms: r.get(6),
        printed_at_ms: r.get(7),
        refund: r.get(8),
        refund_submitted_at_ms: r.get(9),
        scanned: r.get(10),
        signed: r.get(11),
        item: r.get(12),
        terminal: r.get(13),
        scan_count: r.get(14),
        scan_recorded_at_ms: r.get(15),
    }
}

/// Puts an authorization's signed item back into a stored reply from its piece (the stored
/// reply leaves it out: `store::encode_stored_reply`).
pub(super) async fn restore_signature(
    client: &impl tokio_postgres::GenericClient,
    reply: &mut Reply,
) -> Result<(), StoreError> {
    if let Ok(Outcome::Authorized(a)) = reply
        && a.signed.is_empty()
    {
        let row = client
            .query_opt(
                "SELECT signed FROM pieces WHERE account = $1 AND serial = $2",
                &[&int(a.id.account.0)?, &int(a.id.serial.0)?],
            )
            .await
            .map_err(db)?
            .ok_or_else(|| corrupt(format!("stored authorization {} has no piece", a.id)))?;
        a.signed = row.get(0);
    }
    Ok(())
}

pub(super) fn idempotency_row(row: &tokio_postgres::Row) -> Result<IdempotencyRecord, StoreError> {
    let fp: Vec<u8> = row.get(0);
    let reply: String = row.get(1);
    Ok(IdempotencyRecord {
        fingerprint: store::hash32(&fp)?,
        reply: ops::decode_reply(&reply).map_err(corrupt)?,
    })
}

fn audit_record(r: &tokio_postgres::Row) -> Result<StoredAuditRecord, StoreError> {
    let hash: Vec<u8> = r.get(5);
    Ok(StoredAuditRecord {
        row_id: store::uint(r.get(0))?,
        record: AuditRecord {
            account: AccountId(store::uint(r.get(1))?),
            seq: store::uint(r.get(2))?,
            at_ms: store::uint(r.get(3))?,
            body: r.get(4),
            hash: store::hash32(&hash)?,
        },
    })
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
            let keys = request.op.keys();
            if let Some(queue) = &self.batches
                && keys.due_max.is_none()
                && !keys.next_account
            {
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
