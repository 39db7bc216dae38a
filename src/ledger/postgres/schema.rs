//! The PostgreSQL ledger's schema: the versioned migrations and how they run (`migrate_url`).

use super::*;

pub(super) const MIGRATIONS: &[&str] = &[
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
    // 14: issue 14 — pieces keep no foreign key to accounts: its check (a key-share lock of
    //     the account row per piece written) cost 2.5% of the server's CPU in the ledger
    //     bench, and what it guards holds by construction — a piece is written only by a
    //     transaction that locked its account row first, and accounts are never deleted.
    "ALTER TABLE pieces DROP CONSTRAINT IF EXISTS pieces_account_fkey;",
];

/// Creates and upgrades the schema (ledger, directory, sessions) at `url`; concurrent callers
/// serialize. The directory (`vendor_server::directory_pg`) calls it when it opens.
pub(crate) async fn migrate_url(url: &str) -> Result<(), StoreError> {
    migrate(&Target::parse(url)?).await
}

pub(super) async fn migrate(target: &Target) -> Result<(), StoreError> {
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
