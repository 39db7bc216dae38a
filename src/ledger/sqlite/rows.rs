//! Row mapping and reads of the SQLite ledger: the SQL text, rows to model values, the reads the
//! decider and the store's other methods make, tenders and the day's pieces.

use super::*;

pub(super) const ACCOUNT_COLS: &str = "id, license, status, descending, pending, ascending, control, last_piece, audit_seq, audit_head";
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
pub(super) const PIECE_BY_ID_SQL: &str =
    concat!(piece_select!(), "WHERE p.account = ?1 AND p.serial = ?2");
/// Refund requests awaiting a decision, oldest first (ties by piece, as PostgreSQL orders them;
/// found through `pieces_refunds_awaiting`).
pub(super) const REFUNDS_AWAITING_SQL: &str = concat!(
    piece_select!(),
    "WHERE p.refund = 'submitted' ORDER BY p.refund_submitted_at_ms, p.account, p.serial LIMIT ?1"
);
/// One account's (`?2`) refund requests awaiting a decision, oldest first.
pub(super) const ACCOUNT_REFUNDS_AWAITING_SQL: &str = concat!(
    piece_select!(),
    "WHERE p.refund = 'submitted' AND p.account = ?2 \
     ORDER BY p.refund_submitted_at_ms, p.account, p.serial LIMIT ?1"
);
/// The pieces authorized in `[?1, ?2)`, in time order (through `pieces_authorized`).
pub(super) const DAY_PIECES_SQL: &str = concat!(
    piece_select!(),
    "WHERE p.authorized_at_ms >= ?1 AND p.authorized_at_ms < ?2 \
     AND (?3 IS NULL OR p.account = ?3) \
     ORDER BY p.authorized_at_ms, p.account, p.serial LIMIT ?4"
);
pub(super) const TENDER_SQL: &str = "SELECT basket, account, clerk, terminal, kind, tendered, \
     change_given, total, recorded_at_ms FROM tenders WHERE basket = ?1";
/// The tenders recorded in `[?1, ?2)`, in time order (through `tenders_recorded`).
pub(super) const DAY_TENDERS_SQL: &str = "SELECT basket, account, clerk, terminal, kind, tendered, \
     change_given, total, recorded_at_ms FROM tenders \
     WHERE recorded_at_ms >= ?1 AND recorded_at_ms < ?2 AND (?3 IS NULL OR account = ?3) \
     ORDER BY recorded_at_ms, basket LIMIT ?4";
pub(super) const TENDER_PIECES_SQL: &str =
    "SELECT serial FROM tender_pieces WHERE basket = ?1 ORDER BY position";
pub(super) const TENDER_PIECE_SQL: &str =
    "SELECT basket FROM tender_pieces WHERE account = ?1 AND serial = ?2";
pub(super) const TENDER_INSERT_SQL: &str = "INSERT INTO tenders (basket, account, clerk, terminal, kind, \
     tendered, change_given, total, recorded_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";
pub(super) const TENDER_PIECE_INSERT_SQL: &str =
    "INSERT INTO tender_pieces (account, serial, basket, position) VALUES (?1, ?2, ?3, ?4)";

pub(super) type TenderCols = (Vec<u8>, i64, String, i64, String, i64, i64, i64, i64);

pub(super) fn tender_cols(r: &rusqlite::Row<'_>) -> rusqlite::Result<TenderCols> {
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
pub(super) fn tender_of(conn: &Connection, c: TenderCols) -> Result<report::Tender, StoreError> {
    let pieces: Vec<i64> = conn
        .prepare_cached(TENDER_PIECES_SQL)
        .map_err(db)?
        .query_map([c.0.as_slice()], |r| r.get(0))
        .map_err(db)?
        .collect::<Result<_, _>>()
        .map_err(db)?;
    store::tender_from_columns(&c.0, c.1, c.2, c.3, &c.4, c.5, c.6, c.7, c.8, pieces)
}

pub(super) fn read_tender(
    conn: &Connection,
    basket: &[u8],
) -> Result<Option<report::Tender>, StoreError> {
    let cols = conn
        .prepare_cached(TENDER_SQL)
        .map_err(db)?
        .query_row([basket], tender_cols)
        .optional()
        .map_err(db)?;
    cols.map(|c| tender_of(conn, c)).transpose()
}

/// One account's unsettled pieces, oldest first (through `pieces_unsettled`).
pub(super) const UNSETTLED_SQL: &str = concat!(
    piece_select!(),
    "WHERE p.state = 'unsettled' AND p.account = ?1 ORDER BY p.serial LIMIT ?2"
);
/// Reservations past their expiry, oldest first.
pub(super) const DUE_SQL: &str = concat!(
    piece_select!(),
    "WHERE p.state = 'reserved' AND p.expires_at_ms <= ?1 ORDER BY p.expires_at_ms LIMIT ?2"
);

pub(super) fn account_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AccountRow> {
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

pub(super) fn piece_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PieceRow> {
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

pub(super) fn get_account(conn: &Connection, id: AccountId) -> Result<Option<Account>, StoreError> {
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

pub(super) fn get_piece(conn: &Connection, id: PieceId) -> Result<Option<Piece>, StoreError> {
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
pub(super) fn load(
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

pub(super) fn overlay_account<'o>(
    conn: &Connection,
    pending: &Pending,
    overlay: &'o mut Overlay,
    id: AccountId,
) -> Result<Option<&'o Account>, StoreError> {
    through_overlay(&mut overlay.accounts, &pending.accounts, id, || {
        get_account(conn, id)
    })
}

pub(super) fn overlay_piece<'o>(
    conn: &Connection,
    pending: &Pending,
    overlay: &'o mut Overlay,
    id: PieceId,
) -> Result<Option<&'o Piece>, StoreError> {
    through_overlay(&mut overlay.pieces, &pending.pieces, id, || {
        get_piece(conn, id)
    })
}

/// A row as this batch sees it: the batch's own copy when it has one, else the newest from a
/// batch being committed (`pending`), else the database's (`load`) — copied into the batch's
/// overlay either way, so the batch reads and changes one copy.
fn through_overlay<'o, K, V>(
    overlay: &'o mut HashMap<K, V>,
    pending: &HashMap<K, (u64, V)>,
    id: K,
    load: impl FnOnce() -> Result<Option<V>, StoreError>,
) -> Result<Option<&'o V>, StoreError>
where
    K: std::hash::Hash + Eq,
    V: Clone,
{
    use std::collections::hash_map::Entry;
    match overlay.entry(id) {
        Entry::Occupied(e) => Ok(Some(e.into_mut())),
        Entry::Vacant(e) => {
            let found = match pending.get(e.key()) {
                Some((_, v)) => Some(v.clone()),
                None => load()?,
            };
            Ok(found.map(|v| &*e.insert(v)))
        }
    }
}

pub(super) const ACCOUNT_UPSERT_HEAD: &str = "INSERT INTO accounts (id, license, status, descending, \
    pending, ascending, control, last_piece, audit_seq, audit_head, audit_last) VALUES ";
pub(super) const ACCOUNT_UPSERT_TAIL: &str = " ON CONFLICT(id) DO UPDATE SET license = excluded.license, \
    status = excluded.status, descending = excluded.descending, pending = excluded.pending, \
    ascending = excluded.ascending, control = excluded.control, \
    last_piece = excluded.last_piece, audit_seq = excluded.audit_seq, \
    audit_head = excluded.audit_head, \
    audit_last = COALESCE(excluded.audit_last, accounts.audit_last)";
pub(super) const AUDIT_LAST_SQL: &str = "SELECT audit_last FROM accounts WHERE id = ?1";
/// An account's last audit record and when it was made.
pub(super) const AUDIT_LAST_DAY_SQL: &str = "SELECT a.audit_last, r.at_ms FROM accounts a \
    LEFT JOIN audit r ON r.id = a.audit_last WHERE a.id = ?1";
/// The next audit row id: above every id ever used (AUTOINCREMENT keeps the largest in
/// sqlite_sequence) and every id present.
pub(super) const AUDIT_NEXT_SQL: &str = "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence \
    WHERE name = 'audit'), 0), COALESCE((SELECT MAX(id) FROM audit), 0)) + 1";
pub(super) const PIECE_INSERT_HEAD: &str = "INSERT INTO pieces (account, serial, kind, amount, state, \
    authorized_at_ms, expires_at_ms, printed_at_ms, refund, refund_submitted_at_ms, scanned, \
    data, terminal, scan_count, scan_recorded_at_ms) VALUES ";
pub(super) const PIECE_DATA_INSERT_HEAD: &str = "INSERT INTO piece_data (id, signed, item) VALUES ";
pub(super) const PIECE_UPDATE_SQL: &str = "UPDATE pieces SET state = ?3, printed_at_ms = ?4, refund = ?5, \
    refund_submitted_at_ms = ?6, scanned = ?7, scan_count = ?8, scan_recorded_at_ms = ?9 \
    WHERE serial = ?2 AND account = ?1";
/// The next piece_data id.
pub(super) const PIECE_DATA_NEXT_SQL: &str = "SELECT COALESCE(MAX(id), 0) + 1 FROM piece_data";
pub(super) const AUDIT_INSERT_HEAD: &str =
    "INSERT INTO audit (id, account, seq, at_ms, body, hash, prev) VALUES ";
/// One account's audit records, walking back from its last one.
pub(super) const ACCOUNT_AUDIT_SQL: &str = "WITH RECURSIVE chain(id) AS ( \
        SELECT audit_last FROM accounts WHERE id = ?1 AND audit_last IS NOT NULL \
        UNION ALL \
        SELECT audit.prev FROM audit JOIN chain ON audit.id = chain.id \
        WHERE audit.prev IS NOT NULL) \
    SELECT audit.id, account, seq, at_ms, body, hash FROM audit JOIN chain \
    ON audit.id = chain.id ORDER BY seq";
/// Where a statement's walk back starts (`LedgerStore::account_statement`): the account's
/// last record before its first active day after the day holding the period's last instant
/// (?2); no row: the account's newest record.
pub(super) const STATEMENT_START_SQL: &str = "SELECT last_id_before FROM audit_days \
    WHERE account = ?1 AND day > ?2 ORDER BY day LIMIT 1";
/// A statement's audit records: walking back from ?1 through the first one before the period
/// start (?2, its balance begins the period), and no further.
pub(super) const ACCOUNT_AUDIT_FROM_SQL: &str = "WITH RECURSIVE chain(id, at_ms) AS ( \
        SELECT id, at_ms FROM audit WHERE id = ?1 \
        UNION ALL \
        SELECT p.id, p.at_ms FROM chain JOIN audit c ON c.id = chain.id \
        JOIN audit p ON p.id = c.prev WHERE chain.at_ms >= ?2) \
    SELECT audit.id, account, seq, audit.at_ms, body, hash FROM audit JOIN chain \
    ON audit.id = chain.id ORDER BY seq";
/// Marks the first record of an account's UTC day (migration 12).
pub(super) const AUDIT_DAY_INSERT_SQL: &str =
    "INSERT OR IGNORE INTO audit_days (account, day, last_id_before) VALUES (?1, ?2, ?3)";
/// Milliseconds in a UTC day (the unit of `audit_days.day`).
pub(super) const DAY_MS: i64 = 86_400_000;
pub(super) const IDEMPOTENCY_INSERT_HEAD: &str = "INSERT INTO idempotency \
    (id, request_id, fingerprint, reply, at_ms, permanent) VALUES ";
/// The next idempotency log id.
pub(super) const IDEMPOTENCY_NEXT_SQL: &str = "SELECT COALESCE(MAX(id), 0) + 1 FROM idempotency";
/// The log's oldest end: ids, ages and permanence, oldest first.
pub(super) const IDEMPOTENCY_OLDEST_SQL: &str = "SELECT i.id, i.at_ms, i.permanent, \
    EXISTS (SELECT 1 FROM payment_intents p WHERE p.request_id = i.request_id \
    AND p.resolved_at_ms IS NULL) FROM idempotency i WHERE i.id > ?1 ORDER BY i.id LIMIT ?2";
pub(super) const INTENT_INSERT_SQL: &str = "INSERT INTO payment_intents \
    (request_id, account, amount, method, started_at_ms) VALUES (?1, ?2, ?3, ?4, ?5) \
    ON CONFLICT (request_id) DO NOTHING";
pub(super) const INTENT_RESOLVE_SQL: &str = "UPDATE payment_intents SET resolved_at_ms = ?2, \
    resolution = ?3 WHERE request_id = ?1 AND resolved_at_ms IS NULL";
pub(super) const INTENT_OPEN_SQL: &str = "SELECT request_id, account, amount, method, started_at_ms \
    FROM payment_intents WHERE resolved_at_ms IS NULL AND started_at_ms < ?1 \
    ORDER BY started_at_ms LIMIT ?2";
pub(super) const IDEMPOTENCY_DELETE_SQL: &str = "DELETE FROM idempotency WHERE id = ?1";

pub(super) fn audit_row(
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<(i64, i64, i64, i64, String, Vec<u8>)> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

pub(super) fn to_record(
    row: (i64, i64, i64, i64, String, Vec<u8>),
) -> Result<StoredAuditRecord, StoreError> {
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
