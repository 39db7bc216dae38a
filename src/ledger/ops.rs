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

// The transition of each operation, one function each.
mod transitions;
pub use transitions::check_fund;
use transitions::*;

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
