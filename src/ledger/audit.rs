//! The hash-chained audit log.
//!
//! Every ledger event is appended to its account's chain: record `n` of an account stores
//! `hash = SHA-256(hash of record n−1 ‖ body)` where `body` is the canonical JSON of
//! [`AuditBody`] (the exact bytes stored). Each body carries the registers after the event, so
//! [`verify_records`] can recompute both the chain and the registers and name the first break.

use super::model::{
    Account, AccountId, LicenseId, MeterSerial, MethodSummary, PaymentId, PieceSerial, Registers,
};
use crate::money::Cents;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// One ledger event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    Opened {
        meter: MeterSerial,
    },
    Licensed {
        license: LicenseId,
    },
    Funded {
        amount: Cents,
        payment: PaymentId,
        method: MethodSummary,
    },
    /// A returned ACH payment: the account is locked.
    PaymentReturned {
        payment: PaymentId,
    },
    Authorized {
        piece: PieceSerial,
        kind: u8,
        amount: Cents,
        expires_at_ms: u64,
    },
    Committed {
        piece: PieceSerial,
        amount: Cents,
    },
    Voided {
        piece: PieceSerial,
        amount: Cents,
        expired: bool,
    },
    /// The reaper committed a reservation nobody settled by its expiry as printed
    /// (pending → ascending, like `Committed`); the piece is unsettled.
    CommittedUnsettled {
        piece: PieceSerial,
        amount: Cents,
    },
    /// The terminal settled an unsettled piece: it printed (a commit, or a void that reached
    /// the printer). No register moves: its value is already in ascending.
    Settled {
        piece: PieceSerial,
    },
    /// The authorizing terminal reported an unsettled piece not on paper within the late-void
    /// window: voided, and its value credited back like an approved refund (descending +=,
    /// control +=; ascending never decreases).
    LateVoid {
        piece: PieceSerial,
        amount: Cents,
    },
    RefundRequested {
        piece: PieceSerial,
        amount: Cents,
    },
    RefundApproved {
        piece: PieceSerial,
        amount: Cents,
    },
    RefundRejected {
        piece: PieceSerial,
        amount: Cents,
        scanned: bool,
    },
    Scanned {
        piece: PieceSerial,
    },
    /// A supervisor unlocked the (locked) account.
    Unlocked {
        supervisor: String,
    },
    /// A charge the processor approved but the ledger refused to credit (the account changed
    /// between the check and the transaction) was reversed. Registers do not move: the money
    /// never entered them.
    PaymentReversed {
        payment: PaymentId,
        amount: Cents,
        reason: String,
    },
}

impl AuditEvent {
    /// The registers after this event, given the registers before it.
    pub fn apply(&self, r: Registers) -> Option<Registers> {
        let mut r = r;
        match self {
            AuditEvent::Funded { amount, .. }
            | AuditEvent::RefundApproved { amount, .. }
            | AuditEvent::LateVoid { amount, .. } => {
                r.descending = r.descending.checked_add(*amount).ok()?;
                r.control = r.control.checked_add(*amount).ok()?;
            }
            AuditEvent::Authorized { amount, .. } => {
                r.descending = r.descending.checked_sub(*amount).ok()?;
                r.pending = r.pending.checked_add(*amount).ok()?;
            }
            AuditEvent::Committed { amount, .. }
            | AuditEvent::CommittedUnsettled { amount, .. } => {
                r.pending = r.pending.checked_sub(*amount).ok()?;
                r.ascending = r.ascending.checked_add(*amount).ok()?;
            }
            AuditEvent::Voided { amount, .. } => {
                r.pending = r.pending.checked_sub(*amount).ok()?;
                r.descending = r.descending.checked_add(*amount).ok()?;
            }
            AuditEvent::Opened { .. }
            | AuditEvent::Licensed { .. }
            | AuditEvent::PaymentReturned { .. }
            | AuditEvent::RefundRequested { .. }
            | AuditEvent::RefundRejected { .. }
            | AuditEvent::Scanned { .. }
            | AuditEvent::Settled { .. }
            | AuditEvent::Unlocked { .. }
            | AuditEvent::PaymentReversed { .. } => {}
        }
        Some(r)
    }
}

/// The canonical content of one audit record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditBody {
    pub account: AccountId,
    /// 1, 2, 3, ... within the account's chain.
    pub seq: u64,
    pub at_ms: u64,
    pub event: AuditEvent,
    pub after: Registers,
}

/// One stored audit record (before the store gives it a row id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub account: AccountId,
    pub seq: u64,
    pub at_ms: u64,
    /// Canonical JSON of [`AuditBody`]; the hash covers exactly these bytes.
    pub body: String,
    pub hash: [u8; 32],
}

/// A record as read back from a store, with its row id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAuditRecord {
    /// Where the store keeps the record: SQLite's row id; on PostgreSQL, whose audit table is
    /// keyed by (account, seq), the record's `seq` (the break also names the account).
    pub row_id: u64,
    pub record: AuditRecord,
}

pub fn chain_hash(prev: &[u8; 32], body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(body);
    h.finalize().into()
}

/// Appends `event` to `account`'s chain (updating its head) and returns the record to store.
/// The account's registers must already be the registers after the event.
pub fn append(account: &mut Account, at_ms: u64, event: AuditEvent) -> AuditRecord {
    let seq = account.audit_seq + 1;
    let body = AuditBody {
        account: account.id,
        seq,
        at_ms,
        event,
        after: account.registers,
    };
    // Serializing plain structs and enums of integers and strings to JSON cannot fail.
    let body = serde_json::to_string(&body).unwrap_or_default();
    let hash = chain_hash(&account.audit_head, body.as_bytes());
    account.audit_seq = seq;
    account.audit_head = hash;
    AuditRecord {
        account: account.id,
        seq,
        at_ms,
        body,
        hash,
    }
}

/// A verified log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    pub records: u64,
    pub accounts: u64,
    /// Sum over accounts of the control totals recomputed from the log.
    pub control_total: Cents,
}

/// What mismatched at the first break.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum BreakKind {
    /// The stored hash is not SHA-256(previous hash ‖ body).
    HashMismatch,
    /// The body does not parse, or names another account or sequence number.
    BadBody(String),
    /// A record is missing or out of order in the account's chain.
    SequenceGap { expected: u64, found: u64 },
    /// The registers in the body are not what replaying the events gives.
    RegistersMismatch {
        replayed: Registers,
        recorded: Registers,
    },
    /// An event would drive a register negative or over the limit.
    RegisterOutOfRange,
    /// The account row disagrees with the end of its chain.
    AccountMismatch {
        replayed: Registers,
        stored: Registers,
    },
    /// The account row's chain head is not the last record's hash (records removed at the end).
    HeadMismatch { chain_seq: u64, account_seq: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("audit log broken at row {row_id} ({account}): {kind:?}")]
pub struct AuditBreak {
    /// The row id of the first bad record (0 when an account row has no bad record but
    /// disagrees with its chain).
    pub row_id: u64,
    pub account: AccountId,
    pub kind: BreakKind,
}

#[derive(Default)]
struct ChainState {
    seq: u64,
    head: [u8; 32],
    registers: Registers,
}

/// Recomputes every chain and the registers, then compares with the account rows.
/// `records` must be in row-id order.
pub fn verify_records(
    records: &[StoredAuditRecord],
    accounts: &[Account],
) -> Result<AuditReport, AuditBreak> {
    let mut chains: BTreeMap<AccountId, ChainState> = BTreeMap::new();
    for stored in records {
        let r = &stored.record;
        let brk = |kind| AuditBreak {
            row_id: stored.row_id,
            account: r.account,
            kind,
        };
        let chain = chains.entry(r.account).or_default();
        if r.seq != chain.seq + 1 {
            return Err(brk(BreakKind::SequenceGap {
                expected: chain.seq + 1,
                found: r.seq,
            }));
        }
        if chain_hash(&chain.head, r.body.as_bytes()) != r.hash {
            return Err(brk(BreakKind::HashMismatch));
        }
        let body: AuditBody =
            serde_json::from_str(&r.body).map_err(|e| brk(BreakKind::BadBody(e.to_string())))?;
        if body.account != r.account || body.seq != r.seq {
            return Err(brk(BreakKind::BadBody(
                "account or sequence differs from the row".into(),
            )));
        }
        let replayed = body
            .event
            .apply(chain.registers)
            .ok_or_else(|| brk(BreakKind::RegisterOutOfRange))?;
        if replayed != body.after || replayed.check().is_err() {
            return Err(brk(BreakKind::RegistersMismatch {
                replayed,
                recorded: body.after,
            }));
        }
        chain.seq = r.seq;
        chain.head = r.hash;
        chain.registers = replayed;
    }
    let mut control = 0u64;
    for account in accounts {
        let chain = chains.remove(&account.id).unwrap_or_default();
        let brk = |kind| AuditBreak {
            row_id: 0,
            account: account.id,
            kind,
        };
        if chain.seq != account.audit_seq || chain.head != account.audit_head {
            return Err(brk(BreakKind::HeadMismatch {
                chain_seq: chain.seq,
                account_seq: account.audit_seq,
            }));
        }
        if chain.registers != account.registers {
            return Err(brk(BreakKind::AccountMismatch {
                replayed: chain.registers,
                stored: account.registers,
            }));
        }
        control = control.saturating_add(chain.registers.control.get());
    }
    if let Some((account, _)) = chains.into_iter().next() {
        return Err(AuditBreak {
            row_id: 0,
            account,
            kind: BreakKind::BadBody("records for an account that does not exist".into()),
        });
    }
    Ok(AuditReport {
        records: records.len() as u64,
        accounts: accounts.len() as u64,
        control_total: Cents::new(control).unwrap_or(Cents::ZERO),
    })
}

/// Builds a statement for `[from_ms, to_ms)` from one account's records (in chain order).
pub fn statement(
    account: AccountId,
    records: &[AuditRecord],
    from_ms: u64,
    to_ms: u64,
) -> super::model::Statement {
    let mut fold = StatementFold::new(account, from_ms, to_ms);
    for r in records {
        if !fold.push(r) {
            break;
        }
    }
    fold.finish()
}

/// A statement built one record at a time (chain order), so a store can stream an account's
/// records through it without holding them: memory stays constant whatever the history.
#[derive(Debug, Clone)]
pub struct StatementFold {
    s: super::model::Statement,
    to_ms: u64,
    done: bool,
}

impl StatementFold {
    pub fn new(account: AccountId, from_ms: u64, to_ms: u64) -> Self {
        StatementFold {
            s: super::model::Statement {
                account,
                from_ms,
                to_ms,
                beginning: Cents::ZERO,
                credits: Cents::ZERO,
                printed: Cents::ZERO,
                voided: Cents::ZERO,
                refunded: Cents::ZERO,
                ending: Cents::ZERO,
                printed_count: 0,
                unsettled: Cents::ZERO,
                late_voided: Cents::ZERO,
            },
            to_ms,
            done: false,
        }
    }

    /// Takes the next record; `false` once the period is over (later records change nothing).
    pub fn push(&mut self, r: &AuditRecord) -> bool {
        if self.done {
            return false;
        }
        let Ok(body) = serde_json::from_str::<AuditBody>(&r.body) else {
            return true;
        };
        let s = &mut self.s;
        let add = |a: Cents, b: Cents| a.checked_add(b).unwrap_or(a);
        if body.at_ms < s.from_ms {
            s.beginning = body.after.balance();
            s.ending = s.beginning;
            return true;
        }
        if body.at_ms >= self.to_ms {
            self.done = true;
            return false;
        }
        match body.event {
            AuditEvent::Funded { amount, .. } => s.credits = add(s.credits, amount),
            AuditEvent::Committed { amount, .. } => {
                s.printed = add(s.printed, amount);
                s.printed_count = s.printed_count.saturating_add(1);
            }
            AuditEvent::CommittedUnsettled { amount, .. } => {
                s.printed = add(s.printed, amount);
                s.printed_count = s.printed_count.saturating_add(1);
                s.unsettled = add(s.unsettled, amount);
            }
            AuditEvent::Voided { amount, .. } => s.voided = add(s.voided, amount),
            AuditEvent::RefundApproved { amount, .. } => s.refunded = add(s.refunded, amount),
            AuditEvent::LateVoid { amount, .. } => {
                s.refunded = add(s.refunded, amount);
                s.late_voided = add(s.late_voided, amount);
            }
            _ => {}
        }
        s.ending = body.after.balance();
        true
    }

    pub fn finish(self) -> super::model::Statement {
        self.s
    }
}
