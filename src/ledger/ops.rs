//! Operations and the pure transition function.
//!
//! A store executes a [`Request`] in four steps, inside one transaction:
//! 1. look up the request id ([`replay`]): same body → the stored reply, other body →
//!    `IdempotencyConflict`;
//! 2. load the rows [`Op::keys`] names into a [`Snapshot`];
//! 3. call [`decide`] — pure: snapshot, op, time and signer in; reply and [`Changes`] out;
//! 4. write the changes, the audit records and the idempotency record, then commit.

use super::audit::{self, AuditEvent, AuditRecord};
use super::model::*;
use crate::money::Cents;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The body of a request: what the client asked for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Op {
    /// Open an account (status pending until licensed).
    OpenAccount,
    /// Record the licensing authority's answer for a pending account.
    License { account: AccountId },
    /// Credit a top-up the payment processor approved (or record its refusal).
    Fund {
        account: AccountId,
        amount: Cents,
        method: MethodSummary,
    },
    /// The processor reports an ACH payment as returned: lock the account.
    PaymentReturned {
        account: AccountId,
        payment: PaymentId,
    },
    /// Reserve `amount` for one item of `kind`, described by the opaque `item` bytes.
    Authorize {
        account: AccountId,
        kind: u8,
        amount: Cents,
        #[serde(with = "serde_bytes")]
        item: Vec<u8>,
        /// The terminal asking, recorded on the piece. Left out of the body when `None`, so a
        /// request naming none keeps the fingerprint it had before terminals were recorded.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        terminal: Option<TerminalId>,
    },
    /// The item printed. On an unsettled piece: it becomes plainly printed (settled).
    Commit { authorization: AuthorizationId },
    /// The print was aborted. `reached_printer`: did the item reach the paper? If not, the
    /// reservation is released (an unsettled piece: a late void, see [`decide`]); if so, the
    /// piece is committed and a refund requested.
    Void {
        authorization: AuthorizationId,
        reached_printer: bool,
        /// The terminal reporting (a late void must come from the authorizing terminal).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        terminal: Option<TerminalId>,
    },
    /// Reaper: commit up to `max` reservations past their expiry as printed and unsettled.
    ExpireDue { max: u32 },
    /// Ask for a refund of a printed piece (within the refund window, once).
    RequestRefund { piece: PieceId },
    /// A supervisor approves or rejects a submitted refund.
    DecideRefund { piece: PieceId, approve: bool },
    /// The piece was seen in the mail stream; a pending refund for it is rejected.
    RecordScan { piece: PieceId },
    /// A supervisor unlocks a locked account (named in the audit log).
    Unlock {
        account: AccountId,
        supervisor: String,
    },
    /// Records that an approved charge the ledger refused to credit was reversed at the
    /// processor (`reason`: the refusal). Changes no register; allowed on any account status.
    PaymentReversed {
        account: AccountId,
        payment: PaymentId,
        amount: Cents,
        reason: String,
    },
}

/// The answer of an outside party, obtained by the service before the ledger transaction.
/// It is not part of the request body (not in the fingerprint).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum External {
    None,
    Payment(Result<PaymentReceipt, PaymentError>),
    License(Result<LicenseId, String>),
}

/// One request to the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: RequestId,
    pub op: Op,
    pub external: External,
}

impl Request {
    pub fn new(id: RequestId, op: Op) -> Request {
        Request {
            id,
            op,
            external: External::None,
        }
    }
}

/// SHA-256 of the canonical JSON of the body. Card data never reaches an `Op` (only the
/// redacted [`MethodSummary`]), so the fingerprint holds no secret.
pub fn fingerprint(op: &Op) -> [u8; 32] {
    // Serializing a plain enum of integers, strings and bytes to JSON cannot fail.
    let bytes = serde_json::to_vec(op).unwrap_or_default();
    Sha256::digest(&bytes).into()
}

/// A stored idempotency record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyRecord {
    pub fingerprint: [u8; 32],
    pub reply: Reply,
}

/// Encodes a reply for the idempotency table.
pub fn encode_reply(reply: &Reply) -> String {
    // Plain data; cannot fail.
    serde_json::to_string(reply).unwrap_or_default()
}

pub fn decode_reply(text: &str) -> Result<Reply, String> {
    serde_json::from_str(text).map_err(|e| format!("stored reply does not decode: {e}"))
}

/// Step 1: `Some(reply)` when the request was seen before (its first reply, or a conflict).
pub fn replay(existing: Option<IdempotencyRecord>, request: &Request) -> Option<Reply> {
    let record = existing?;
    replay_with(Some(record), request, &fingerprint(&request.op))
}

/// [`replay`] with the body's fingerprint already computed.
pub fn replay_with(
    existing: Option<IdempotencyRecord>,
    request: &Request,
    fingerprint: &[u8; 32],
) -> Option<Reply> {
    let record = existing?;
    if record.fingerprint == *fingerprint {
        Some(record.reply)
    } else {
        Some(Err(LedgerError::IdempotencyConflict {
            request: request.id,
        }))
    }
}

/// The rows an operation reads and may write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Keys {
    pub accounts: Vec<AccountId>,
    pub pieces: Vec<PieceId>,
    /// Load up to this many reserved pieces with `expires_at_ms <= now` (and their accounts).
    pub due_max: Option<u32>,
    /// Load the next free account id.
    pub next_account: bool,
}

impl Op {
    pub fn keys(&self) -> Keys {
        let mut k = Keys::default();
        match self {
            Op::OpenAccount => k.next_account = true,
            Op::License { account }
            | Op::Fund { account, .. }
            | Op::PaymentReturned { account, .. }
            | Op::Unlock { account, .. }
            | Op::PaymentReversed { account, .. }
            | Op::Authorize { account, .. } => k.accounts.push(*account),
            Op::Commit { authorization: p }
            | Op::Void {
                authorization: p, ..
            }
            | Op::RequestRefund { piece: p }
            | Op::DecideRefund { piece: p, .. }
            | Op::RecordScan { piece: p } => {
                k.accounts.push(p.account);
                k.pieces.push(*p);
            }
            Op::ExpireDue { max } => k.due_max = Some(*max),
        }
        k
    }
}

/// The rows loaded for one operation.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Snapshot {
    pub accounts: BTreeMap<AccountId, Account>,
    pub pieces: BTreeMap<PieceId, Piece>,
    /// The next free account id (only when `Keys::next_account`).
    pub next_account: AccountId,
}

/// What one operation writes. Accounts and pieces are full new rows (insert or replace).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Changes {
    pub accounts: Vec<Account>,
    pub pieces: Vec<Piece>,
    pub audit: Vec<AuditRecord>,
}

/// The state of one decision in progress.
struct Work<'a> {
    snap: &'a Snapshot,
    now_ms: u64,
    accounts: BTreeMap<AccountId, Account>,
    pieces: BTreeMap<PieceId, Piece>,
    audit: Vec<AuditRecord>,
}

impl<'a> Work<'a> {
    fn account(&mut self, id: AccountId) -> Result<Account, LedgerError> {
        if let Some(a) = self.accounts.get(&id) {
            return Ok(a.clone());
        }
        self.snap
            .accounts
            .get(&id)
            .cloned()
            .ok_or(LedgerError::UnknownAccount(id))
    }
    fn piece(&self, id: PieceId) -> Result<Piece, LedgerError> {
        self.pieces
            .get(&id)
            .or_else(|| self.snap.pieces.get(&id))
            .cloned()
            .ok_or(LedgerError::UnknownPiece(id))
    }
    /// Stores the account (registers already updated) and appends `event` to its chain.
    fn emit(&mut self, mut account: Account, event: AuditEvent) {
        let record = audit::append(&mut account, self.now_ms, event);
        self.audit.push(record);
        self.accounts.insert(account.id, account);
    }
    fn put_piece(&mut self, piece: Piece) {
        self.pieces.insert(piece.id, piece);
    }
    fn finish(self) -> Result<Changes, LedgerError> {
        for a in self.accounts.values() {
            a.registers.check()?;
        }
        Ok(Changes {
            accounts: self.accounts.into_values().collect(),
            pieces: self.pieces.into_values().collect(),
            audit: self.audit,
        })
    }
}

fn require_active(account: &Account) -> Result<(), LedgerError> {
    match account.status {
        AccountStatus::Active => Ok(()),
        AccountStatus::Locked => Err(LedgerError::AccountLocked {
            account: account.id,
        }),
        _ => Err(LedgerError::AccountPending {
            account: account.id,
        }),
    }
}

fn add(a: Cents, b: Cents, register: Register) -> Result<Cents, LedgerError> {
    a.checked_add(b)
        .map_err(|_| LedgerError::RegisterOverflow { register })
}

fn sub(a: Cents, b: Cents, register: Register) -> Result<Cents, LedgerError> {
    a.checked_sub(b)
        .map_err(|_| LedgerError::RegisterOverflow { register })
}

/// Step 3: the pure transition. On `Err` nothing is written except the idempotency record.
pub fn decide(
    snap: &Snapshot,
    request: &Request,
    now_ms: u64,
    limits: &LedgerLimits,
    signer: &dyn ItemSigner,
) -> Result<(Outcome, Changes), LedgerError> {
    let mut w = Work {
        snap,
        now_ms,
        accounts: BTreeMap::new(),
        pieces: BTreeMap::new(),
        audit: Vec::new(),
    };
    let outcome = match &request.op {
        Op::OpenAccount => open(&mut w, &request.external)?,
        Op::License { account } => license(&mut w, *account, &request.external)?,
        Op::Fund {
            account,
            amount,
            method,
        } => fund(&mut w, *account, *amount, method, &request.external, limits)?,
        Op::PaymentReturned { account, payment } => {
            let mut a = w.account(*account)?;
            a.status = AccountStatus::Locked;
            w.emit(
                a,
                AuditEvent::PaymentReturned {
                    payment: payment.clone(),
                },
            );
            Outcome::Locked { account: *account }
        }
        Op::Authorize {
            account,
            kind,
            amount,
            item,
            terminal,
        } => {
            let item = Item {
                kind: *kind,
                amount: *amount,
                bytes: item,
                terminal: *terminal,
            };
            authorize(&mut w, *account, item, limits, signer)?
        }
        Op::Commit { authorization } => commit(&mut w, *authorization)?,
        Op::Void {
            authorization,
            reached_printer,
            terminal,
        } => {
            let report = VoidReport {
                reached_printer: *reached_printer,
                terminal: *terminal,
            };
            void(&mut w, *authorization, report, limits)?
        }
        Op::ExpireDue { max } => expire(&mut w, *max)?,
        Op::RequestRefund { piece } => request_refund(&mut w, *piece, limits)?,
        Op::DecideRefund { piece, approve } => decide_refund(&mut w, *piece, *approve)?,
        Op::RecordScan { piece } => record_scan(&mut w, *piece, limits)?,
        Op::Unlock {
            account,
            supervisor,
        } => {
            let mut a = w.account(*account)?;
            if a.status != AccountStatus::Locked {
                return Err(LedgerError::NotLocked { account: *account });
            }
            a.status = AccountStatus::Active;
            w.emit(
                a,
                AuditEvent::Unlocked {
                    supervisor: supervisor.clone(),
                },
            );
            Outcome::Unlocked { account: *account }
        }
        Op::PaymentReversed {
            account,
            payment,
            amount,
            reason,
        } => {
            let a = w.account(*account)?;
            w.emit(
                a,
                AuditEvent::PaymentReversed {
                    payment: payment.clone(),
                    amount: *amount,
                    reason: reason.clone(),
                },
            );
            Outcome::PaymentReversed {
                account: *account,
                payment: payment.clone(),
            }
        }
    };
    Ok((outcome, w.finish()?))
}

fn open(w: &mut Work, external: &External) -> Result<Outcome, LedgerError> {
    let mut a = Account::new(w.snap.next_account);
    let meter = a.meter;
    if let External::License(Ok(license)) = external {
        a.license = Some(*license);
        a.status = AccountStatus::Active;
    }
    let status = a.status;
    let license = a.license;
    w.emit(a, AuditEvent::Opened { meter });
    if let Some(license) = license {
        let a = w.account(w.snap.next_account)?;
        w.emit(a, AuditEvent::Licensed { license });
    }
    Ok(Outcome::Opened {
        account: w.snap.next_account,
        meter,
        status,
    })
}

fn license(w: &mut Work, id: AccountId, external: &External) -> Result<Outcome, LedgerError> {
    let mut a = w.account(id)?;
    if let Some(license) = a.license {
        return Err(LedgerError::AlreadyLicensed {
            account: id,
            license,
        });
    }
    let license = match external {
        External::License(Ok(l)) => *l,
        External::License(Err(reason)) => {
            return Err(LedgerError::LicenseRefused {
                reason: reason.clone(),
            });
        }
        _ => {
            return Err(LedgerError::LicenseRefused {
                reason: "no answer from the licensing authority".into(),
            });
        }
    };
    a.license = Some(license);
    if a.status == AccountStatus::Pending {
        a.status = AccountStatus::Active;
    }
    w.emit(a, AuditEvent::Licensed { license });
    Ok(Outcome::Licensed {
        account: id,
        license,
    })
}

/// Checks a top-up before any money moves (used by the service before charging, and again
/// inside the transaction).
pub fn check_fund(
    account: &Account,
    amount: Cents,
    limits: &LedgerLimits,
) -> Result<(), LedgerError> {
    require_active(account)?;
    if amount.is_zero() {
        return Err(LedgerError::ZeroAmount);
    }
    if amount < limits.top_up_min {
        return Err(LedgerError::TopUpBelowMinimum {
            amount,
            min: limits.top_up_min,
        });
    }
    if amount > limits.top_up_max {
        return Err(LedgerError::TopUpAboveMaximum {
            amount,
            max: limits.top_up_max,
        });
    }
    add(account.registers.control, amount, Register::Control)?;
    Ok(())
}

fn fund(
    w: &mut Work,
    id: AccountId,
    amount: Cents,
    method: &MethodSummary,
    external: &External,
    limits: &LedgerLimits,
) -> Result<Outcome, LedgerError> {
    let mut a = w.account(id)?;
    check_fund(&a, amount, limits)?;
    let receipt = match external {
        External::Payment(Ok(r)) => r.clone(),
        External::Payment(Err(e)) => return Err(LedgerError::Payment(e.clone())),
        _ => return Err(LedgerError::Payment(PaymentError::Timeout)),
    };
    if receipt.amount != amount {
        return Err(LedgerError::Payment(PaymentError::Declined));
    }
    a.registers.descending = add(a.registers.descending, amount, Register::Descending)?;
    a.registers.control = add(a.registers.control, amount, Register::Control)?;
    let registers = a.registers;
    w.emit(
        a,
        AuditEvent::Funded {
            amount,
            payment: receipt.id.clone(),
            method: method.clone(),
        },
    );
    Ok(Outcome::Funded {
        account: id,
        payment: receipt.id,
        registers,
    })
}

/// What an authorization asks to issue.
struct Item<'a> {
    kind: u8,
    amount: Cents,
    bytes: &'a [u8],
    terminal: Option<TerminalId>,
}

fn authorize(
    w: &mut Work,
    id: AccountId,
    item: Item<'_>,
    limits: &LedgerLimits,
    signer: &dyn ItemSigner,
) -> Result<Outcome, LedgerError> {
    let Item {
        kind,
        amount,
        bytes: item,
        terminal,
    } = item;
    let mut a = w.account(id)?;
    require_active(&a)?;
    if amount.is_zero() {
        return Err(LedgerError::ZeroAmount);
    }
    if amount > limits.authorize_max {
        return Err(LedgerError::AmountTooLarge {
            amount,
            max: limits.authorize_max,
        });
    }
    if item.len() > limits.item_bytes_max {
        return Err(LedgerError::ItemTooLarge {
            bytes: item.len(),
            max: limits.item_bytes_max,
        });
    }
    if a.registers.descending < amount {
        return Err(LedgerError::InsufficientFunds {
            available: a.registers.descending,
            requested: amount,
        });
    }
    let license = a
        .license
        .ok_or(LedgerError::AccountPending { account: id })?;
    a.registers.descending = sub(a.registers.descending, amount, Register::Descending)?;
    a.registers.pending = add(a.registers.pending, amount, Register::Pending)?;
    let serial = PieceSerial(a.last_piece.0.checked_add(1).ok_or(
        LedgerError::RegisterOverflow {
            register: Register::Ascending,
        },
    )?);
    a.last_piece = serial;
    let facts = PieceFacts {
        account: id,
        meter: a.meter,
        license,
        piece: serial,
        amount,
        kind,
        ascending_after: a.registers.ascending,
        descending_after: a.registers.descending,
    };
    let signed = signer
        .sign(&facts, item)
        .map_err(|reason| LedgerError::SignerFailed { reason })?;
    let expires_at_ms = w.now_ms.saturating_add(limits.authorization_expiry_ms);
    let piece_id = PieceId {
        account: id,
        serial,
    };
    let registers = a.registers;
    let meter = a.meter;
    w.put_piece(Piece {
        id: piece_id,
        kind,
        amount,
        state: PieceState::Reserved,
        authorized_at_ms: w.now_ms,
        expires_at_ms,
        printed_at_ms: None,
        refund: None,
        refund_submitted_at_ms: None,
        scanned: false,
        scan_count: 0,
        scan_recorded_at_ms: None,
        signed: signed.clone(),
        item: item.to_vec(),
        terminal,
    });
    w.emit(
        a,
        AuditEvent::Authorized {
            piece: serial,
            kind,
            amount,
            expires_at_ms,
        },
    );
    Ok(Outcome::Authorized(Authorization {
        id: piece_id,
        meter,
        amount,
        kind,
        expires_at_ms,
        registers,
        signed,
    }))
}

/// A piece whose reservation can still be settled: reserved (even past its expiry, until the
/// reaper got to it) or unsettled.
fn settleable(w: &Work, id: PieceId) -> Result<Piece, LedgerError> {
    let p = w.piece(id)?;
    match p.state {
        PieceState::Printed => Err(LedgerError::AlreadyCommitted(id)),
        PieceState::Voided => Err(LedgerError::AlreadyVoided(id)),
        PieceState::Expired => Err(LedgerError::AuthorizationExpired {
            id,
            expired_at_ms: p.expires_at_ms,
        }),
        PieceState::Reserved | PieceState::Unsettled => Ok(p),
    }
}

/// Moves a reservation to ascending (printed).
fn do_commit(w: &mut Work, mut p: Piece) -> Result<Registers, LedgerError> {
    let mut a = w.account(p.id.account)?;
    if a.status == AccountStatus::Locked {
        return Err(LedgerError::AccountLocked { account: a.id });
    }
    a.registers.pending = sub(a.registers.pending, p.amount, Register::Pending)?;
    a.registers.ascending = add(a.registers.ascending, p.amount, Register::Ascending)?;
    let registers = a.registers;
    p.state = PieceState::Printed;
    p.printed_at_ms = Some(w.now_ms);
    w.emit(
        a,
        AuditEvent::Committed {
            piece: p.id.serial,
            amount: p.amount,
        },
    );
    w.put_piece(p);
    Ok(registers)
}

/// The terminal reports an unsettled piece on paper: it becomes plainly printed. No register
/// moves (its value is in ascending since the reaper committed it), so a locked account does
/// not stop it.
fn settle(w: &mut Work, mut p: Piece) -> Result<Registers, LedgerError> {
    debug_assert_eq!(p.state, PieceState::Unsettled);
    let a = w.account(p.id.account)?;
    let registers = a.registers;
    p.state = PieceState::Printed;
    w.emit(a, AuditEvent::Settled { piece: p.id.serial });
    w.put_piece(p);
    Ok(registers)
}

fn commit(w: &mut Work, id: PieceId) -> Result<Outcome, LedgerError> {
    let p = settleable(w, id)?;
    let registers = match p.state {
        PieceState::Unsettled => settle(w, p)?,
        _ => do_commit(w, p)?,
    };
    Ok(Outcome::Committed { id, registers })
}

/// Releases a reservation back to descending (a void before the reaper committed it).
fn release(w: &mut Work, mut p: Piece) -> Result<Registers, LedgerError> {
    let mut a = w.account(p.id.account)?;
    a.registers.pending = sub(a.registers.pending, p.amount, Register::Pending)?;
    a.registers.descending = add(a.registers.descending, p.amount, Register::Descending)?;
    let registers = a.registers;
    p.state = PieceState::Voided;
    w.emit(
        a,
        AuditEvent::Voided {
            piece: p.id.serial,
            amount: p.amount,
            expired: false,
        },
    );
    w.put_piece(p);
    Ok(registers)
}

/// What a terminal reports when it voids.
#[derive(Clone, Copy)]
struct VoidReport {
    reached_printer: bool,
    terminal: Option<TerminalId>,
}

fn void(
    w: &mut Work,
    id: PieceId,
    report: VoidReport,
    limits: &LedgerLimits,
) -> Result<Outcome, LedgerError> {
    let p = settleable(w, id)?;
    let unsettled = p.state == PieceState::Unsettled;
    if !report.reached_printer {
        if unsettled {
            return late_void(w, p, report.terminal, limits);
        }
        let registers = release(w, p)?;
        return Ok(Outcome::Voided { id, registers });
    }
    if unsettled {
        // On paper after all: settled, and a refund requested as for a printed piece.
        refundable(w, &p, limits)?;
        settle(w, p)?;
    } else {
        do_commit(w, p)?;
    }
    let mut p = w.piece(id)?;
    submit_refund(w, &mut p)?;
    let registers = w.account(id.account)?.registers;
    Ok(Outcome::RefundRequested { id, registers })
}

/// The authorizing terminal reports an unsettled piece not on paper, within
/// `late_void_window_ms` of its expiry: it becomes voided. Ascending never decreases, so the
/// value comes back like an approved refund: descending += amount, control += amount.
fn late_void(
    w: &mut Work,
    mut p: Piece,
    terminal: Option<TerminalId>,
    limits: &LedgerLimits,
) -> Result<Outcome, LedgerError> {
    let id = p.id;
    if p.terminal.is_some() && p.terminal != terminal {
        return Err(LedgerError::WrongTerminal { id });
    }
    let deadline_ms = p.expires_at_ms.saturating_add(limits.late_void_window_ms);
    if w.now_ms > deadline_ms {
        return Err(LedgerError::VoidWindowClosed { id, deadline_ms });
    }
    if p.refund.is_some() {
        return Err(LedgerError::RefundAlreadyRequested(id));
    }
    if p.scanned {
        return Err(LedgerError::PieceScanned(id));
    }
    let mut a = w.account(id.account)?;
    if a.status == AccountStatus::Locked {
        return Err(LedgerError::AccountLocked { account: a.id });
    }
    a.registers.descending = add(a.registers.descending, p.amount, Register::Descending)?;
    a.registers.control = add(a.registers.control, p.amount, Register::Control)?;
    let registers = a.registers;
    p.state = PieceState::Voided;
    w.emit(
        a,
        AuditEvent::LateVoid {
            piece: id.serial,
            amount: p.amount,
        },
    );
    w.put_piece(p);
    Ok(Outcome::Voided { id, registers })
}

/// The reaper: reservations nobody settled by their expiry are committed as printed and
/// marked unsettled (pending → ascending). Issued value is never given back by expiry; a
/// locked account does not stop it (the value left the account when the item was signed).
fn expire(w: &mut Work, max: u32) -> Result<Outcome, LedgerError> {
    let due: Vec<Piece> = w
        .snap
        .pieces
        .values()
        .filter(|p| p.state == PieceState::Reserved && p.expires_at_ms <= w.now_ms)
        .take(max as usize)
        .cloned()
        .collect();
    let mut ids = Vec::with_capacity(due.len());
    for mut p in due {
        ids.push(p.id);
        let mut a = w.account(p.id.account)?;
        a.registers.pending = sub(a.registers.pending, p.amount, Register::Pending)?;
        a.registers.ascending = add(a.registers.ascending, p.amount, Register::Ascending)?;
        p.state = PieceState::Unsettled;
        p.printed_at_ms = Some(w.now_ms);
        w.emit(
            a,
            AuditEvent::CommittedUnsettled {
                piece: p.id.serial,
                amount: p.amount,
            },
        );
        w.put_piece(p);
    }
    Ok(Outcome::Expired { ids })
}

fn submit_refund(w: &mut Work, p: &mut Piece) -> Result<(), LedgerError> {
    let a = w.account(p.id.account)?;
    p.refund = Some(RefundState::Submitted);
    p.refund_submitted_at_ms = Some(w.now_ms);
    w.emit(
        a,
        AuditEvent::RefundRequested {
            piece: p.id.serial,
            amount: p.amount,
        },
    );
    w.put_piece(p.clone());
    Ok(())
}

/// Whether a refund may be requested for `p` now: committed (printed or unsettled), within
/// the refund window of its print, once, not scanned, account not locked.
fn refundable(w: &mut Work, p: &Piece, limits: &LedgerLimits) -> Result<(), LedgerError> {
    let id = p.id;
    let a = w.account(id.account)?;
    if a.status == AccountStatus::Locked {
        return Err(LedgerError::AccountLocked { account: a.id });
    }
    let printed_at = match (p.committed(), p.printed_at_ms) {
        (true, Some(t)) => t,
        _ => return Err(LedgerError::NotPrinted(id)),
    };
    if p.refund.is_some() {
        return Err(LedgerError::RefundAlreadyRequested(id));
    }
    if p.scanned {
        return Err(LedgerError::PieceScanned(id));
    }
    let deadline_ms = printed_at.saturating_add(limits.refund_window_ms);
    if w.now_ms > deadline_ms {
        return Err(LedgerError::RefundWindowClosed { id, deadline_ms });
    }
    Ok(())
}

fn request_refund(
    w: &mut Work,
    id: PieceId,
    limits: &LedgerLimits,
) -> Result<Outcome, LedgerError> {
    let mut p = w.piece(id)?;
    refundable(w, &p, limits)?;
    submit_refund(w, &mut p)?;
    let registers = w.account(id.account)?.registers;
    Ok(Outcome::RefundRequested { id, registers })
}

/// An approved refund is a credit, like a refill: descending and control total both rise by
/// the piece's value; ascending (value ever printed) never falls. The control sum holds.
fn decide_refund(w: &mut Work, id: PieceId, approve: bool) -> Result<Outcome, LedgerError> {
    let mut p = w.piece(id)?;
    if p.refund != Some(RefundState::Submitted) {
        return Err(LedgerError::NoRefundPending(id));
    }
    let mut a = w.account(id.account)?;
    if approve && p.scanned {
        return Err(LedgerError::PieceScanned(id));
    }
    let event = if approve {
        a.registers.descending = add(a.registers.descending, p.amount, Register::Descending)?;
        a.registers.control = add(a.registers.control, p.amount, Register::Control)?;
        p.refund = Some(RefundState::Approved);
        AuditEvent::RefundApproved {
            piece: id.serial,
            amount: p.amount,
        }
    } else {
        p.refund = Some(RefundState::Rejected);
        AuditEvent::RefundRejected {
            piece: id.serial,
            amount: p.amount,
            scanned: false,
        }
    };
    let registers = a.registers;
    w.emit(a, event);
    w.put_piece(p);
    Ok(Outcome::RefundDecided {
        id,
        approved: approve,
        registers,
    })
}

/// Records a sighting. Within `scan_record_window_ms` of the last recorded one (and with no
/// refund pending) it only counts on the piece: one row updated in place, no audit record.
fn record_scan(w: &mut Work, id: PieceId, limits: &LedgerLimits) -> Result<Outcome, LedgerError> {
    let mut p = w.piece(id)?;
    w.account(id.account)?;
    p.scanned = true;
    p.scan_count = p.scan_count.saturating_add(1);
    let refund_rejected = p.refund == Some(RefundState::Submitted);
    let within_window = p
        .scan_recorded_at_ms
        .is_some_and(|at| w.now_ms < at.saturating_add(limits.scan_record_window_ms));
    if within_window && !refund_rejected {
        w.put_piece(p);
        return Ok(Outcome::ScanRecorded {
            id,
            refund_rejected: false,
            recorded: false,
        });
    }
    p.scan_recorded_at_ms = Some(w.now_ms);
    let a = w.account(id.account)?;
    w.emit(a, AuditEvent::Scanned { piece: id.serial });
    if refund_rejected {
        p.refund = Some(RefundState::Rejected);
        let a = w.account(id.account)?;
        w.emit(
            a,
            AuditEvent::RefundRejected {
                piece: id.serial,
                amount: p.amount,
                scanned: true,
            },
        );
    }
    w.put_piece(p);
    Ok(Outcome::ScanRecorded {
        id,
        refund_rejected,
        recorded: true,
    })
}
