//! The transition of each ledger operation ([`super::decide`] dispatches to them): pure, on the
//! [`super::Work`] overlay of the snapshot; `Err` leaves nothing written.

use super::*;

pub(super) fn open(w: &mut Work, external: &External) -> Result<Outcome, LedgerError> {
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

pub(super) fn license(
    w: &mut Work,
    id: AccountId,
    external: &External,
) -> Result<Outcome, LedgerError> {
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

pub(super) fn fund(
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
pub(super) struct Item<'a> {
    pub(super) kind: u8,
    pub(super) amount: Cents,
    pub(super) bytes: &'a [u8],
    pub(super) terminal: Option<TerminalId>,
}

pub(super) fn authorize(
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
pub(super) fn settleable(w: &Work, id: PieceId) -> Result<Piece, LedgerError> {
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
pub(super) fn do_commit(w: &mut Work, mut p: Piece) -> Result<Registers, LedgerError> {
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
pub(super) fn settle(w: &mut Work, mut p: Piece) -> Result<Registers, LedgerError> {
    debug_assert_eq!(p.state, PieceState::Unsettled);
    let a = w.account(p.id.account)?;
    let registers = a.registers;
    p.state = PieceState::Printed;
    w.emit(a, AuditEvent::Settled { piece: p.id.serial });
    w.put_piece(p);
    Ok(registers)
}

pub(super) fn commit(w: &mut Work, id: PieceId) -> Result<Outcome, LedgerError> {
    let p = settleable(w, id)?;
    let registers = match p.state {
        PieceState::Unsettled => settle(w, p)?,
        _ => do_commit(w, p)?,
    };
    Ok(Outcome::Committed { id, registers })
}

/// Releases a reservation back to descending (a void before the reaper committed it).
pub(super) fn release(w: &mut Work, mut p: Piece) -> Result<Registers, LedgerError> {
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
pub(super) struct VoidReport {
    pub(super) reached_printer: bool,
    pub(super) terminal: Option<TerminalId>,
}

pub(super) fn void(
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
pub(super) fn late_void(
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
pub(super) fn expire(w: &mut Work, max: u32) -> Result<Outcome, LedgerError> {
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

pub(super) fn submit_refund(w: &mut Work, p: &mut Piece) -> Result<(), LedgerError> {
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
pub(super) fn refundable(
    w: &mut Work,
    p: &Piece,
    limits: &LedgerLimits,
) -> Result<(), LedgerError> {
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

pub(super) fn request_refund(
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
pub(super) fn decide_refund(
    w: &mut Work,
    id: PieceId,
    approve: bool,
) -> Result<Outcome, LedgerError> {
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
pub(super) fn record_scan(
    w: &mut Work,
    id: PieceId,
    limits: &LedgerLimits,
) -> Result<Outcome, LedgerError> {
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
