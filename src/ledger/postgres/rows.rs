//! Row mapping and shared steps of the PostgreSQL store: rows to model values, error mapping and
//! retry rules (`TxError`, `race_backoff`), tenders, restoring a signature, audit records.

use super::*;

/// Tries of one tender that met another transaction recording the same basket or piece.
pub(super) const TENDER_TRIES_MAX: usize = 3;
pub(super) const TENDER_COLS: &str =
    "basket, account, clerk, terminal, kind, tendered, change_given, total, recorded_at_ms";

pub(super) const ACCOUNT_COLS: &str = "id, license, status, descending, pending, ascending, control, last_piece, audit_seq, audit_head";
pub(super) const PIECE_COLS: &str = "account, serial, kind, amount, state, authorized_at_ms, expires_at_ms, printed_at_ms, refund, refund_submitted_at_ms, scanned, signed, item, terminal, scan_count, scan_recorded_at_ms";

pub(in crate::ledger) fn db(e: tokio_postgres::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

pub(super) fn retryable(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE
            || *c == SqlState::T_R_DEADLOCK_DETECTED
            || *c == SqlState::UNIQUE_VIOLATION
    )
}

/// The pause before retrying a transaction that lost a race: a little, more each time, so
/// racers spread out (50 µs doubling, at most ~51 ms).
pub(in crate::ledger) async fn race_backoff(attempt: u32) {
    let us = 50u64 << attempt.min(10);
    tokio::time::sleep(std::time::Duration::from_micros(us)).await;
}

/// A transaction's failure: retry, or give up with this error.
pub(in crate::ledger) enum TxError {
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
pub(super) async fn tender_row(
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
pub(super) async fn tender_attempt(
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

pub(in crate::ledger) fn account_row(r: &tokio_postgres::Row) -> AccountRow {
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

pub(in crate::ledger) fn piece_row(r: &tokio_postgres::Row) -> PieceRow {
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
pub(in crate::ledger) async fn restore_signature(
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

pub(in crate::ledger) fn idempotency_row(
    row: &tokio_postgres::Row,
) -> Result<IdempotencyRecord, StoreError> {
    let fp: Vec<u8> = row.get(0);
    let reply: String = row.get(1);
    Ok(IdempotencyRecord {
        fingerprint: store::hash32(&fp)?,
        reply: ops::decode_reply(&reply).map_err(corrupt)?,
    })
}

pub(super) fn audit_record(r: &tokio_postgres::Row) -> Result<StoredAuditRecord, StoreError> {
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
