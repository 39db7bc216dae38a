//! The front's ledger requests: checks that need no database (session, request MAC, clock,
//! the vendor's own view of the terminal's link, quote) and then one typed call through the
//! [`LedgerHandle`]. Nothing here opens a database.
//!
//! **Directory account → ledger account.** Each directory account owns the ledger account
//! opened under the request id [`ledger_open_request`]`(directory account id)`. The ledger's
//! idempotency makes that mapping stable without storing it: `frank vendor account add` opens
//! (and licenses) it eagerly, and every login repeats the call, which only replays the first
//! result.

use crate::ledger::payment::{BankAccount, Card, PaymentMethod};
use crate::ledger::{
    AccountId, CallError, LedgerError, LedgerHandle, Outcome, PaymentError, PieceId, PieceSerial,
    Registers, RequestId, StoreError,
};
use crate::link::guard::LinkState;
use crate::link::keys::MacKey;
use crate::wire::reqmac::{MacInput, RequestMacError};
use crate::wire::{self, ErrorBody, ErrorCode, MoneyRequest};
use sha2::{Digest, Sha256};

/// The ledger request id that opens the ledger account of directory account `id`.
pub fn ledger_open_request(directory_account: u64) -> RequestId {
    let mut h = Sha256::new();
    h.update(b"frank directory account");
    h.update(directory_account.to_be_bytes());
    let d: [u8; 32] = h.finalize().into();
    let (b, _) = d.split_first_chunk::<16>().unwrap_or((&[0; 16], &[]));
    RequestId::from_bytes(*b)
}

/// Opens (or finds again) the ledger account of a directory account.
pub async fn ledger_account_of(
    ledger: &LedgerHandle,
    directory_account: u64,
) -> Result<AccountId, CallError> {
    match ledger
        .open_account(ledger_open_request(directory_account))
        .await?
    {
        Outcome::Opened { account, .. } => Ok(account),
        other => Err(CallError::Unavailable(StoreError::Corrupt(format!(
            "opening an account answered {other:?}"
        )))),
    }
}

pub fn registers(r: &Registers) -> wire::WireRegisters {
    wire::WireRegisters {
        descending_cents: r.descending.get(),
        pending_cents: r.pending.get(),
        ascending_cents: r.ascending.get(),
        control_cents: r.control.get(),
    }
}

/// The session facts a money request is checked against.
pub struct Caller<'a> {
    pub clerk: &'a str,
    pub mac_key: &'a MacKey,
    pub link_state: Option<LinkState>,
    pub vendor_time_ms: u64,
    pub skew_ms_max: u64,
}

/// MAC, then clock, then link — all before the ledger is touched.
pub fn check_money_request<R: MoneyRequest>(
    caller: &Caller<'_>,
    request: &R,
    amount_cents: u64,
    destination: &str,
) -> Result<RequestId, ErrorBody> {
    // The decoder checked the length (`wire::field_len`); a wrong one is refused, never a panic.
    let request_id: [u8; 16] = request.request_id().try_into().map_err(|_| {
        ErrorBody::malformed(format!("{}.request_id must be 16 bytes", R::OPERATION))
    })?;
    MacInput {
        operation: R::OPERATION,
        request_id,
        amount_cents,
        client_time_ms: request.client_time_ms(),
        clerk: caller.clerk,
        destination,
    }
    .verify(
        caller.mac_key,
        request.mac(),
        caller.vendor_time_ms,
        caller.skew_ms_max,
    )
    .map_err(mac_error)?;
    match caller.link_state {
        Some(LinkState::Up) => Ok(RequestId::from_bytes(request_id)),
        state => Err(ErrorBody::new(
            ErrorCode::LinkLapsed,
            format!(
                "the vendor sees this terminal's link as {}; wait for it to come back up and retry with the same request id",
                state.map_or("absent".to_string(), |s| format!("{s:?}"))
            ),
        )),
    }
}

pub fn mac_error(e: RequestMacError) -> ErrorBody {
    match e {
        RequestMacError::ClockSkew { limit_ms, .. } => {
            ErrorBody::new(ErrorCode::ClockSkew, e.to_string()).with_limit(limit_ms)
        }
        RequestMacError::BadMac => ErrorBody::new(ErrorCode::BadMac, e.to_string()),
        other => ErrorBody::malformed(other.to_string()),
    }
}

/// Maps a ledger call's failure to a typed wire error.
pub fn call_error(e: CallError) -> ErrorBody {
    match e {
        CallError::Refused(l) => ledger_error(l),
        CallError::Unavailable(StoreError::Busy { .. } | StoreError::Contention { .. }) => {
            ErrorBody::new(
                ErrorCode::Busy,
                format!("{e}; retry with the same request id"),
            )
            .with_retry_after_ms(100)
        }
        CallError::Unavailable(s) => {
            tracing::error!(error = %s, "ledger unavailable");
            ErrorBody::new(
                ErrorCode::Internal,
                "the ledger is unavailable; retry with the same request id",
            )
        }
    }
}

pub fn ledger_error(e: LedgerError) -> ErrorBody {
    let msg = e.to_string();
    let b = |code| ErrorBody::new(code, msg.clone());
    match &e {
        LedgerError::IdempotencyConflict { .. } => b(ErrorCode::IdempotencyConflict),
        LedgerError::UnknownPiece(_) => b(ErrorCode::UnknownPiece),
        LedgerError::AccountLocked { .. } => b(ErrorCode::AccountLocked),
        LedgerError::AccountPending { .. } | LedgerError::LicenseRefused { .. } => {
            b(ErrorCode::AccountPending)
        }
        LedgerError::ZeroAmount | LedgerError::RegisterOverflow { .. } => {
            b(ErrorCode::AmountOutOfRange)
        }
        LedgerError::AmountTooLarge { max, .. } => {
            b(ErrorCode::AmountOutOfRange).with_limit(max.get())
        }
        LedgerError::TopUpBelowMinimum { min, .. } => {
            b(ErrorCode::TopUpOutOfRange).with_limit(min.get())
        }
        LedgerError::TopUpAboveMaximum { max, .. } => {
            b(ErrorCode::TopUpOutOfRange).with_limit(max.get())
        }
        LedgerError::InsufficientFunds { available, .. } => {
            b(ErrorCode::InsufficientFunds).with_amount_cents(available.get())
        }
        LedgerError::ItemTooLarge { max, .. } => b(ErrorCode::InvalidItem).with_limit(*max as u64),
        LedgerError::AlreadyCommitted(_) => b(ErrorCode::AlreadyCommitted),
        LedgerError::AlreadyVoided(_) => b(ErrorCode::AlreadyVoided),
        LedgerError::AuthorizationExpired { .. } => b(ErrorCode::AuthorizationExpired),
        LedgerError::VoidWindowClosed { .. } => b(ErrorCode::VoidWindowClosed),
        LedgerError::WrongTerminal { .. } => b(ErrorCode::WrongTerminal),
        LedgerError::NotPrinted(_) => b(ErrorCode::NotPrinted),
        LedgerError::RefundWindowClosed { .. } => b(ErrorCode::RefundWindowClosed),
        LedgerError::RefundAlreadyRequested(_) | LedgerError::NoRefundPending(_) => {
            b(ErrorCode::RefundAlreadyRequested)
        }
        LedgerError::PieceScanned(_) => b(ErrorCode::PieceScanned),
        LedgerError::Payment(PaymentError::Invalid(_)) => b(ErrorCode::PaymentInvalid),
        LedgerError::Payment(PaymentError::Timeout) => {
            b(ErrorCode::PaymentTimeout).with_retry_after_ms(1000)
        }
        LedgerError::Payment(_) => b(ErrorCode::PaymentDeclined),
        LedgerError::SignerFailed { .. } => b(ErrorCode::SignerFailed),
        // Terminals cannot unlock accounts, so `NotLocked` never answers one.
        LedgerError::UnknownAccount(_)
        | LedgerError::NotLocked { .. }
        | LedgerError::AlreadyLicensed { .. }
        | LedgerError::InvariantBroken { .. } => {
            tracing::error!(error = %e, "unexpected ledger refusal");
            b(ErrorCode::Internal)
        }
    }
}

/// Validates the card or bank fields (never logged) into a payment method.
pub fn payment_method(m: &wire::FundMethod, now_ms: u64) -> Result<PaymentMethod, ErrorBody> {
    let r = match m {
        wire::FundMethod::Card {
            number,
            exp_month,
            exp_year,
            cvc,
        } => Card::parse(number, *exp_month, *exp_year, cvc, now_ms).map(PaymentMethod::Card),
        wire::FundMethod::Ach { routing, account } => {
            BankAccount::parse(routing, account).map(PaymentMethod::Ach)
        }
    };
    r.map_err(|e| {
        tracing::info!(field = "fund.method", error = %e, "payment method refused");
        ErrorBody::new(
            ErrorCode::PaymentInvalid,
            format!("{e}; check the details and try again"),
        )
    })
}

// The price of an item (the vendor's quote and what an authorization must carry) lives in
// the core `wire::price`: the counter prices from a signed rate table with the same code.
pub use crate::wire::price::{quote, required_amount};

/// The piece of the session's account with this serial.
pub fn piece_id(account: AccountId, serial: u64) -> PieceId {
    PieceId {
        account,
        serial: PieceSerial(serial),
    }
}

/// The wire name of a piece's item state.
pub fn item_state_name(state: crate::ledger::ItemState) -> &'static str {
    use crate::ledger::ItemState;
    match state {
        ItemState::Reserved => "reserved",
        ItemState::Printed => "printed",
        ItemState::Unsettled => "unsettled",
        ItemState::Voided => "voided",
        ItemState::RefundRequested => "refund_requested",
        ItemState::Refunded => "refunded",
        ItemState::RefundRejected => "refund_rejected",
    }
}

/// The short human text of a piece: from its stored item description, or (for a piece
/// stored without one) its kind.
pub fn piece_summary(p: &crate::ledger::Piece) -> String {
    match super::signing::SignItem::from_bytes(&p.item) {
        Ok(s) if !p.item.is_empty() => s.item.summary(),
        _ => {
            let kind = crate::indicium::ItemKind::from_code(p.kind).map_or("item", |k| k.name());
            format!("{kind} {}", p.amount)
        }
    }
}

/// The meter serial of a ledger account, as labels print it (`FRK10000001`).
pub fn meter_of(account: AccountId) -> String {
    crate::ledger::MeterSerial::for_account(account).to_string()
}

/// What the day report needs of a piece beyond its row: its clerk, mail class and summary,
/// from its stored item description.
pub fn describe_piece(p: &crate::ledger::Piece) -> crate::ledger::report::Described {
    let stored = super::signing::SignItem::from_bytes(&p.item).ok();
    let class = match stored.as_ref().map(|s| &s.item) {
        Some(wire::WireItem::Postage(post)) => crate::indicium::MailClass::parse(&post.class).ok(),
        _ => None,
    };
    crate::ledger::report::Described {
        clerk: stored.and_then(|s| s.clerk),
        class,
        summary: piece_summary(p),
    }
}

/// The day report of `scope` from the day's rows: the one fold the vendor's `day_report`
/// answer and `frank vendor report` share.
pub fn build_day_report(
    day: crate::indicium::kinds::Day,
    account: Option<AccountId>,
    scope: &crate::ledger::report::ReportScope,
    rows: &crate::ledger::report::DayRows,
) -> crate::ledger::report::DayReport {
    crate::ledger::report::DayReport::build(day, account, scope, rows, describe_piece, meter_of)
}

/// A refused tender as a typed wire error (the words say what to do; nothing was stored).
pub fn tender_error(e: crate::ledger::report::TenderError) -> ErrorBody {
    use crate::ledger::report::TenderError;
    let code = match &e {
        TenderError::UnknownPiece(_) => ErrorCode::UnknownPiece,
        TenderError::InOtherBasket(_) => ErrorCode::AlreadyTendered,
        TenderError::IdempotencyConflict => ErrorCode::IdempotencyConflict,
        TenderError::TooManyPieces { max, .. } => {
            return ErrorBody::new(ErrorCode::InvalidTender, e.to_string()).with_limit(*max as u64);
        }
        _ => ErrorCode::InvalidTender,
    };
    ErrorBody::new(code, e.to_string())
}

/// A ledger piece as the wire shows it.
pub fn piece_info(p: &crate::ledger::Piece) -> wire::PieceInfo {
    use crate::ledger::RefundState;
    let described = describe_piece(p);
    wire::PieceInfo {
        meter: meter_of(p.id.account),
        piece_serial: p.id.serial.0,
        kind: p.kind,
        amount_cents: p.amount.get(),
        item_state: item_state_name(p.item_state()).to_string(),
        authorized_at_ms: p.authorized_at_ms,
        expires_at_ms: p.expires_at_ms,
        printed_at_ms: p.printed_at_ms,
        refund_state: p.refund.map(|r| {
            match r {
                RefundState::Submitted => "requested",
                RefundState::Approved => "refunded",
                RefundState::Rejected => "rejected",
            }
            .to_string()
        }),
        summary: described.summary,
        clerk: described.clerk,
        terminal_id: p.terminal.map(|t| t.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: what a clerk reads says what is wrong and what to do, with no field path.
    #[test]
    fn refusals_a_clerk_reads_carry_no_field_paths() {
        let card = wire::FundMethod::Card {
            number: "4242424242424241".into(),
            exp_month: 4,
            exp_year: 2040,
            cvc: "123".into(),
        };
        let Err(e) = payment_method(&card, 0) else {
            panic!("a bad check digit was accepted")
        };
        assert!(!e.message.contains("fund."), "{}", e.message);
        assert!(e.message.contains("card number"), "{}", e.message);
        assert!(e.message.contains("try again"), "{}", e.message);
    }
}
