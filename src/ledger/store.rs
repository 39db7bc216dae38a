//! The storage interface every backend implements, and helpers they share.

use super::audit::{self, AuditBreak, AuditRecord, AuditReport, BreakKind, StoredAuditRecord};
use super::model::*;
use super::ops::{IdempotencyRecord, Op, Request};
use super::payment::BoxFuture;
use super::report::{DayRows, Tender, TenderError, TenderKind};
use crate::money::Cents;

/// What [`LedgerStore::record_tender`] answers: the tender as stored, or why not.
pub type TenderAnswer = Result<Tender, TenderError>;

/// A tender from its stored columns (both stores keep the same ones); `pieces` in order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn tender_from_columns(
    basket: &[u8],
    account: i64,
    clerk: String,
    terminal: i64,
    kind: &str,
    tendered: i64,
    change: i64,
    total: i64,
    recorded_at_ms: i64,
    pieces: Vec<i64>,
) -> Result<Tender, StoreError> {
    let basket: [u8; 16] = basket.try_into().map_err(|_| corrupt("tender basket id"))?;
    Ok(Tender {
        basket: RequestId::from_bytes(basket),
        account: AccountId(uint(account)?),
        clerk,
        terminal: TerminalId(uint(terminal)?),
        kind: TenderKind::parse(kind).ok_or_else(|| corrupt(format!("tender kind {kind:?}")))?,
        tendered: cents(tendered)?,
        change: cents(change)?,
        total: cents(total)?,
        recorded_at_ms: uint(recorded_at_ms)?,
        pieces: pieces
            .into_iter()
            .map(|s| uint(s).map(PieceSerial))
            .collect::<Result<_, _>>()?,
    })
}

/// A storage failure. Unlike a [`LedgerError`], nothing is remembered under the request id:
/// the client may retry with the same id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("the ledger queue is full ({queue_requests_max} requests); retry shortly")]
    Busy { queue_requests_max: usize },
    #[error("the ledger store is shut down")]
    Closed,
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("a batch would break the register invariant; it was rolled back: {0}")]
    InvariantBroken(String),
    #[error("gave up after {attempts} attempts on conflicting concurrent updates")]
    Contention { attempts: u32 },
}

/// Where a store sends the answer to a submitted request.
pub type ReplySender = tokio::sync::oneshot::Sender<Result<Reply, StoreError>>;
/// A request a store cannot take by [`LedgerStore::submit`], given back.
pub type Unsubmitted = Box<(Request, ReplySender)>;

/// All accounts and the whole audit log, read together.
pub type AuditSnapshot = (Vec<Account>, Vec<StoredAuditRecord>);

/// Durable ledger storage. `execute` runs one request in a transaction that also writes its
/// idempotency record and audit records, and resolves only after that transaction committed.
pub trait LedgerStore: Send + Sync + 'static {
    fn execute(&self, request: Request, now_ms: u64) -> BoxFuture<'_, Result<Reply, StoreError>>;
    /// Like `execute`, but the store sends the answer to `reply` itself once the transaction
    /// committed (or fails), so no task of the caller's waits for it. A store without such a
    /// path gives both back (the default) and the caller runs `execute` on a task instead.
    fn submit(&self, request: Request, now_ms: u64, reply: ReplySender) -> Result<(), Unsubmitted> {
        let _ = now_ms;
        Err(Box::new((request, reply)))
    }
    fn account(&self, id: AccountId) -> BoxFuture<'_, Result<Option<Account>, StoreError>>;
    fn piece(&self, id: PieceId) -> BoxFuture<'_, Result<Option<Piece>, StoreError>>;
    /// Up to `limit` pieces of `account` with a serial below `before` (all when `None`),
    /// newest (highest serial) first.
    fn pieces(
        &self,
        account: AccountId,
        before: Option<PieceSerial>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Piece>, StoreError>>;
    /// Up to `limit` refund requests awaiting a supervisor's decision (pieces whose refund is
    /// submitted) of `account` (every account when `None`), oldest request first.
    fn refunds_awaiting(
        &self,
        account: Option<AccountId>,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Piece>, StoreError>>;
    /// Records a basket's tender (docs/LEDGER.md §Tenders) in one transaction of its own: reads
    /// the tender stored under its basket id and each named piece with the basket holding it,
    /// lets [`super::report::decide_tender`] decide, and writes what it allows. Answers the tender as
    /// stored (a replay answers the first one) or the refusal; a refusal writes nothing.
    fn record_tender(&self, tender: Tender) -> BoxFuture<'_, Result<TenderAnswer, StoreError>>;
    /// The pieces authorized and the tenders recorded in `[from_ms, to_ms)`, of `account`
    /// (every account when `None`), in time order, at most [`super::report::REPORT_PIECES_MAX`] + 1
    /// and [`super::report::REPORT_TENDERS_MAX`] + 1 (one more tells the report it was cut short).
    fn day_rows(
        &self,
        account: Option<AccountId>,
        from_ms: u64,
        to_ms: u64,
    ) -> BoxFuture<'_, Result<DayRows, StoreError>>;
    /// Up to `limit` unsettled pieces of `account` (committed as printed at their expiry and
    /// not settled by their terminal since), oldest serial first.
    fn unsettled(
        &self,
        account: AccountId,
        limit: u32,
    ) -> BoxFuture<'_, Result<Vec<Piece>, StoreError>>;
    /// One account's audit records in chain order (audits, tests).
    fn account_audit(&self, id: AccountId) -> BoxFuture<'_, Result<Vec<AuditRecord>, StoreError>>;
    /// One account's statement of `[from_ms, to_ms)`, folded ([`super::audit::StatementFold`])
    /// from the last record before `from_ms` (its balance begins the period) and the period's
    /// records, streamed: memory stays constant. Never the whole history: the cost grows with
    /// the records since `from_ms` (SQLite walks the account's chain back from its newest
    /// record and stops there) or in the period (PostgreSQL, an index by time).
    fn account_statement(
        &self,
        id: AccountId,
        from_ms: u64,
        to_ms: u64,
    ) -> BoxFuture<'_, Result<Statement, StoreError>>;
    /// All accounts and the whole audit log (row-id order), read in one consistent snapshot.
    fn audit_snapshot(&self) -> BoxFuture<'_, Result<AuditSnapshot, StoreError>>;
    /// The committed idempotency record of `request`, if any (read only; nothing is decided).
    /// An authorization's reply may come without its signed item (SQLite keeps that in the
    /// piece). The service reads it before it charges a top-up, so a reused request id never
    /// reaches the payment processor.
    fn idempotency_record(
        &self,
        request: RequestId,
    ) -> BoxFuture<'_, Result<Option<IdempotencyRecord>, StoreError>>;
    /// The largest license id recorded (to restart sequential licensing).
    fn max_license(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Deletes up to `max` idempotency records stored before `before_ms` (a request retried
    /// after its record was pruned runs again as a new request), except permanent ones (see
    /// [`permanent`]) and those of top-ups whose payment intent is still open (the
    /// reconciliation replays them under the same id); returns how many it deleted.
    fn prune_idempotency(&self, before_ms: u64, max: u32)
    -> BoxFuture<'_, Result<u64, StoreError>>;
    /// Records a payment intent before its charge (durably). Recording the same request again
    /// keeps the first record.
    fn record_intent(&self, intent: PaymentIntent) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Resolves the payment intent of `request` (the first resolution stays; an unknown
    /// request changes nothing).
    fn resolve_intent(
        &self,
        request: RequestId,
        resolution: IntentResolution,
        now_ms: u64,
    ) -> BoxFuture<'_, Result<(), StoreError>>;
    /// Up to `max` unresolved payment intents started before `before_ms`, oldest first.
    fn open_intents(
        &self,
        before_ms: u64,
        max: u32,
    ) -> BoxFuture<'_, Result<Vec<PaymentIntent>, StoreError>>;
}

/// A stored payment method summary (JSON; it holds no secret).
pub(crate) fn encode_method(method: &MethodSummary) -> String {
    // A plain enum of strings and integers; serializing it cannot fail.
    serde_json::to_string(method).unwrap_or_default()
}

fn decode_method(text: &str) -> Result<MethodSummary, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(format!("payment intent method: {e}")))
}

/// A payment intent from its stored columns (both stores keep the same ones).
pub(crate) fn intent_from_columns(
    request: &[u8],
    account: i64,
    amount: i64,
    method: &str,
    started_at_ms: i64,
) -> Result<PaymentIntent, StoreError> {
    let request: [u8; 16] = request
        .try_into()
        .map_err(|_| corrupt("payment intent request id"))?;
    Ok(PaymentIntent {
        request: RequestId::from_bytes(request),
        account: AccountId(uint(account)?),
        amount: cents(amount)?,
        method: decode_method(method)?,
        started_at_ms: uint(started_at_ms)?,
    })
}

/// Idempotency records that are never pruned: account openings. The vendor maps a directory
/// account to its ledger account by replaying the opening under a derived request id, so that
/// record is the mapping (one per account).
pub fn permanent(op: &Op) -> bool {
    matches!(op, Op::OpenAccount)
}

/// Recomputes the hash chains and registers from the log and compares with the accounts.
/// A store that cannot be read is reported as a break at row 0.
pub async fn verify_audit(store: &dyn LedgerStore) -> Result<AuditReport, AuditBreak> {
    let (accounts, records) = store.audit_snapshot().await.map_err(|e| AuditBreak {
        row_id: 0,
        account: AccountId(0),
        kind: BreakKind::BadBody(format!("store unreadable: {e}")),
    })?;
    audit::verify_records(&records, &accounts)
}

/// A statement for `[from_ms, to_ms)`.
pub async fn statement(
    store: &dyn LedgerStore,
    account: AccountId,
    from_ms: u64,
    to_ms: u64,
) -> Result<Result<Statement, LedgerError>, StoreError> {
    if store.account(account).await?.is_none() {
        return Ok(Err(LedgerError::UnknownAccount(account)));
    }
    Ok(Ok(store.account_statement(account, from_ms, to_ms).await?))
}

/// Whether a reply is remembered under its request id. Not remembered: a processor timeout
/// (the charge may be retried with the same key), a reaper pass that expired nothing (the
/// reaper runs every second; its empty passes would only grow the table), and a scan only
/// counted on its piece (a repeat within the scan record window: it must not grow a table).
pub fn remember(reply: &Reply) -> bool {
    match reply {
        Err(LedgerError::Payment(PaymentError::Timeout)) => false,
        Ok(Outcome::Expired { ids }) => !ids.is_empty(),
        Ok(Outcome::ScanRecorded { recorded, .. }) => *recorded,
        _ => true,
    }
}

/// The reply as the idempotency table stores it. An authorization's signed item is already in
/// its piece row, so the stored reply leaves it out (`signed` empty); a replay puts it back
/// (each store's `restore_signature`). Replies stored before this carry it and are used as they are.
pub(crate) fn encode_stored_reply(reply: &Reply) -> String {
    match reply {
        Ok(super::model::Outcome::Authorized(a)) => {
            let without = super::model::Authorization {
                signed: Vec::new(),
                ..a.clone()
            };
            super::ops::encode_reply(&Ok(super::model::Outcome::Authorized(without)))
        }
        other => super::ops::encode_reply(other),
    }
}

/// What a batching store has committed since it opened: how well it groups
/// (`requests / batches` requests share each commit, one WAL flush each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CommitCounts {
    /// Transactions of requests committed.
    pub batches: u64,
    /// Requests acknowledged by those transactions.
    pub requests: u64,
}

pub(crate) fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

pub(crate) fn cents(v: i64) -> Result<Cents, StoreError> {
    u64::try_from(v)
        .ok()
        .and_then(|v| Cents::new(v).ok())
        .ok_or_else(|| corrupt(format!("amount {v} out of range")))
}

pub(crate) fn int(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| corrupt(format!("value {v} does not fit BIGINT")))
}

/// A time bound as a column value: bounds past the column's range mean "any time".
pub(crate) fn cutoff(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

pub(crate) fn uint(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format!("negative value {v}")))
}

pub(crate) fn hash32(v: &[u8]) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| corrupt("hash is not 32 bytes"))
}

/// An account row as plain integers (shared by the SQL backends).
pub(crate) struct AccountRow {
    pub id: i64,
    pub license: Option<i64>,
    pub status: String,
    pub descending: i64,
    pub pending: i64,
    pub ascending: i64,
    pub control: i64,
    pub last_piece: i64,
    pub audit_seq: i64,
    pub audit_head: Vec<u8>,
}

impl AccountRow {
    pub fn from_account(a: &Account) -> Result<AccountRow, StoreError> {
        Ok(AccountRow {
            id: int(a.id.0)?,
            license: a.license.map(|l| int(l.0)).transpose()?,
            status: a.status.as_str().to_string(),
            descending: int(a.registers.descending.get())?,
            pending: int(a.registers.pending.get())?,
            ascending: int(a.registers.ascending.get())?,
            control: int(a.registers.control.get())?,
            last_piece: int(a.last_piece.0)?,
            audit_seq: int(a.audit_seq)?,
            audit_head: a.audit_head.to_vec(),
        })
    }
    pub fn into_account(self) -> Result<Account, StoreError> {
        let id = AccountId(uint(self.id)?);
        let mut a = Account::new(id);
        a.license = self.license.map(|l| uint(l).map(LicenseId)).transpose()?;
        a.status = AccountStatus::parse(&self.status)
            .ok_or_else(|| corrupt(format!("account status {:?}", self.status)))?;
        a.registers = Registers {
            descending: cents(self.descending)?,
            pending: cents(self.pending)?,
            ascending: cents(self.ascending)?,
            control: cents(self.control)?,
        };
        a.last_piece = PieceSerial(uint(self.last_piece)?);
        a.audit_seq = uint(self.audit_seq)?;
        a.audit_head = hash32(&self.audit_head)?;
        Ok(a)
    }
}

/// A piece row as plain integers (shared by the SQL backends).
pub(crate) struct PieceRow {
    pub account: i64,
    pub serial: i64,
    pub kind: i64,
    pub amount: i64,
    pub state: String,
    pub authorized_at_ms: i64,
    pub expires_at_ms: i64,
    pub printed_at_ms: Option<i64>,
    pub refund: Option<String>,
    pub refund_submitted_at_ms: Option<i64>,
    pub scanned: bool,
    pub signed: Vec<u8>,
    pub item: Vec<u8>,
    pub terminal: Option<i64>,
    pub scan_count: i64,
    pub scan_recorded_at_ms: Option<i64>,
}

impl PieceRow {
    pub fn from_piece(p: &Piece) -> Result<PieceRow, StoreError> {
        Ok(PieceRow {
            account: int(p.id.account.0)?,
            serial: int(p.id.serial.0)?,
            kind: i64::from(p.kind),
            amount: int(p.amount.get())?,
            state: p.state.as_str().to_string(),
            authorized_at_ms: int(p.authorized_at_ms)?,
            expires_at_ms: int(p.expires_at_ms)?,
            printed_at_ms: p.printed_at_ms.map(int).transpose()?,
            refund: p.refund.map(|r| r.as_str().to_string()),
            refund_submitted_at_ms: p.refund_submitted_at_ms.map(int).transpose()?,
            scanned: p.scanned,
            signed: p.signed.clone(),
            item: p.item.clone(),
            terminal: p.terminal.map(|t| int(t.0)).transpose()?,
            scan_count: int(p.scan_count)?,
            scan_recorded_at_ms: p.scan_recorded_at_ms.map(int).transpose()?,
        })
    }
    pub fn into_piece(self) -> Result<Piece, StoreError> {
        Ok(Piece {
            id: PieceId {
                account: AccountId(uint(self.account)?),
                serial: PieceSerial(uint(self.serial)?),
            },
            kind: u8::try_from(self.kind).map_err(|_| corrupt("piece kind"))?,
            amount: cents(self.amount)?,
            state: PieceState::parse(&self.state)
                .ok_or_else(|| corrupt(format!("piece state {:?}", self.state)))?,
            authorized_at_ms: uint(self.authorized_at_ms)?,
            expires_at_ms: uint(self.expires_at_ms)?,
            printed_at_ms: self.printed_at_ms.map(uint).transpose()?,
            refund: self
                .refund
                .map(|r| RefundState::parse(&r).ok_or_else(|| corrupt("refund state")))
                .transpose()?,
            refund_submitted_at_ms: self.refund_submitted_at_ms.map(uint).transpose()?,
            scanned: self.scanned,
            signed: self.signed,
            item: self.item,
            terminal: self.terminal.map(|t| uint(t).map(TerminalId)).transpose()?,
            scan_count: uint(self.scan_count)?,
            scan_recorded_at_ms: self.scan_recorded_at_ms.map(uint).transpose()?,
        })
    }
}
