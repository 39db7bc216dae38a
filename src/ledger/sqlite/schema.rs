//! The SQLite ledger's schema: connection settings, the versioned migrations and the WAL checkpoint.

use super::*;

/// The writer's page cache, in KiB as SQLite's negative `cache_size` (16 MiB).
pub(super) const WRITER_CACHE_KIB_NEG: i64 = -16_384;
/// The reader's page cache (8 MiB). It serves statements, listings and scans; SQLite also
/// caps a sort's memory at the cache size before spilling to a temporary file, so a statement
/// of a long, busy period costs the vendor at most this much heap, not its size.
pub(super) const READER_CACHE_KIB_NEG: i64 = -8_192;
/// The checkpointer's page cache (2 MiB, SQLite's default): a checkpoint copies WAL frames
/// without going through it.
pub(super) const CHECKPOINTER_CACHE_KIB_NEG: i64 = -2_048;

/// Versioned migrations; `schema_version` holds the number applied.
pub(super) const MIGRATIONS: &[&str] = &[
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

pub(super) fn configure(conn: &Connection) -> Result<(), StoreError> {
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

pub(super) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
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

/// One PASSIVE checkpoint; returns the number of frames in the WAL, or `None` when another
/// checkpoint was running (SQLite runs one at a time; try again later).
pub(super) fn checkpoint(conn: &Connection) -> Result<Option<u64>, StoreError> {
    let (busy, log): (i64, i64) = conn
        .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(db)?;
    Ok((busy == 0).then(|| u64::try_from(log).unwrap_or(0)))
}
