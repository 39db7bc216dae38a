//! One connection of the PostgreSQL store: its client and its prepared statements, opened
//! through `pg_conn`'s bounded connects.

use super::*;

/// Prepared statements of one connection.
pub(super) struct Stmts {
    pub(super) idem_get: Statement,
    pub(super) idem_put: Statement,
    pub(super) account_lock: Statement,
    pub(super) piece_lock: Statement,
    pub(super) due: Statement,
    pub(super) next_account: Statement,
    pub(super) account_insert: Statement,
    pub(super) account_update: Statement,
    pub(super) piece_put: Statement,
    pub(super) audit_put: Statement,
}

pub(in crate::ledger) struct Conn {
    pub(in crate::ledger) client: Client,
    pub(super) stmts: Stmts,
    pub(in crate::ledger) batch: pg_batch::BatchStmts,
}

/// A new connection with its prepared statements, opened through `reconnect` (which spaces
/// out attempts while the database is unreachable).
pub(in crate::ledger) async fn connect(
    target: &Target,
    reconnect: &Reconnect,
) -> Result<Conn, StoreError> {
    reconnect.attempt(open_conn(target)).await
}

pub(super) async fn open_conn(target: &Target) -> Result<Conn, StoreError> {
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
