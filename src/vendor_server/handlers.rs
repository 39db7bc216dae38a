//! Shell: the money and piece requests of a logged-in session — `balance`, `fund`,
//! `authorize`, `commit`, `void`, `refund_request`, `statement` (at most
//! `statements_in_flight_max` at once), `piece`, `pieces`. A request that moves money passes
//! the front's checks first (`money::check_money_request`: request MAC, clock skew, the
//! vendor's own view of the terminal's link; for `authorize` also the vendor's price), then
//! makes one `LedgerHandle` call.
//!
//! It never moves money before those checks pass, and never opens a database.

use super::accept::{ActiveSession, ConnState, internal, require_session, require_supervisor};
use super::money::{self as front, Caller};
use super::server::lock;
use super::signing::SignItem;
use crate::ledger::{Outcome, TerminalId};
use crate::link::guard::LinkState;
use crate::logtext::escaped;
use crate::wire::{self, ErrorBody, ErrorCode};
use std::sync::Arc;

/// The MAC/clock/link facts of the session on this connection.
fn caller_link(state: &ConnState, active: &ActiveSession) -> Option<LinkState> {
    lock(&state.shared.links)
        .get(&active.terminal_id)
        .filter(|l| {
            l.session_id == active.session_id && l.conn.stable_id() == state.conn.stable_id()
        })
        .map(|l| *l.link.state.borrow())
}

fn check_money<R: wire::MoneyRequest>(
    state: &ConnState,
    active: &ActiveSession,
    request: &R,
    amount_cents: u64,
    destination: &str,
) -> Result<crate::ledger::RequestId, ErrorBody> {
    let caller = Caller {
        clerk: &active.clerk,
        mac_key: &active.keys.request_mac,
        link_state: caller_link(state, active),
        vendor_time_ms: crate::clock::unix_ms(),
        skew_ms_max: state.shared.config.request_clock_skew_ms_max,
    };
    let r = front::check_money_request(&caller, request, amount_cents, destination);
    if let Err(e) = &r {
        tracing::warn!(terminal = active.terminal_id, clerk = %escaped(&active.clerk), operation = R::OPERATION.as_str(), code = ?e.code, "money request refused before the ledger");
    }
    r
}

pub(super) async fn balance(state: &Arc<ConnState>) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let a = state
        .shared
        .ledger
        .account(active.ledger_account)
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::Balance {
        ledger_account: a.id.0,
        meter: a.meter.to_string(),
        status: a.status.as_str().to_string(),
        registers: front::registers(&a.registers),
    }))
}

pub(super) async fn fund(state: &Arc<ConnState>, r: wire::Fund) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let id = check_money(state, &active, &r, r.amount_cents, &r.method.destination())?;
    let method = front::payment_method(&r.method, crate::clock::unix_ms())?;
    let amount = crate::money::Cents::new(r.amount_cents)
        .map_err(|e| ErrorBody::malformed(format!("fund.amount_cents: {e}")))?;
    let (payment, registers) = state
        .shared
        .ledger
        .fund_receipt(id, active.ledger_account, amount, method)
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::Funded {
        payment_id: payment.0,
        registers: front::registers(&registers),
    }))
}

pub(super) async fn authorize(
    state: &Arc<ConnState>,
    r: wire::Authorize,
) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let item = r
        .item
        .to_item()
        .map_err(|e| ErrorBody::malformed(format!("authorize.item.{}: {}", e.field, e.reason)))?;
    let destination = wire::Authorize::destination(&item, &r.origin_zip);
    let id = check_money(state, &active, &r, r.amount_cents, &destination)?;
    let origin = wire::origin_zip(&r.origin_zip)
        .map_err(|e| ErrorBody::malformed(format!("authorize.{}: {}", e.field, e.reason)))?;
    let required = front::required_amount(&state.shared.rates, &item, origin)?;
    if required.get() != r.amount_cents {
        return Err(ErrorBody::new(
            ErrorCode::QuoteMismatch,
            format!(
                "authorize.amount_cents is {} but the vendor's price for this {} is {required}; authorize {}",
                r.amount_cents,
                item.kind(),
                required.get()
            ),
        )
        .with_amount_cents(required.get()));
    }
    let day = wire::day_of_ms(crate::clock::unix_ms())
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    let description = SignItem {
        item: r.item.clone(),
        origin_zip: r.origin_zip.clone(),
        day: day.days(),
        clerk: Some(active.clerk.clone()),
    }
    .to_bytes();
    let a = state
        .shared
        .ledger
        .authorize_by(
            Some(TerminalId(active.terminal_id)),
            id,
            active.ledger_account,
            item.kind().code(),
            required,
            description,
        )
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::Authorized {
        piece_serial: a.id.serial.0,
        meter: a.meter.to_string(),
        amount_cents: a.amount.get(),
        expires_at_ms: a.expires_at_ms,
        registers: front::registers(&a.registers),
        indicium: a.signed,
    }))
}

fn piece_done(outcome: Outcome) -> Result<Vec<u8>, ErrorBody> {
    let (id, result, registers) = match outcome {
        Outcome::Committed { id, registers } => (id, "printed", registers),
        Outcome::Voided { id, registers } => (id, "voided", registers),
        Outcome::RefundRequested { id, registers } => (id, "refund_requested", registers),
        other => return Err(internal(format!("unexpected ledger outcome {other:?}"))),
    };
    Ok(wire::encode_ok(&wire::PieceDone {
        piece_serial: id.serial.0,
        result: result.to_string(),
        registers: front::registers(&registers),
    }))
}

pub(super) async fn commit(state: &Arc<ConnState>, r: wire::Commit) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let dest = wire::piece_destination(r.piece_serial);
    let id = check_money(state, &active, &r, 0, &dest)?;
    let piece = front::piece_id(active.ledger_account, r.piece_serial);
    let registers = state
        .shared
        .ledger
        .commit(id, piece)
        .await
        .map_err(front::call_error)?;
    piece_done(Outcome::Committed {
        id: piece,
        registers,
    })
}

pub(super) async fn void(state: &Arc<ConnState>, r: wire::Void) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let dest = wire::void_destination(r.piece_serial, r.reached_printer);
    let id = check_money(state, &active, &r, 0, &dest)?;
    let piece = front::piece_id(active.ledger_account, r.piece_serial);
    let o = state
        .shared
        .ledger
        .void_by(
            Some(TerminalId(active.terminal_id)),
            id,
            piece,
            r.reached_printer,
        )
        .await
        .map_err(front::call_error)?;
    piece_done(o)
}

pub(super) async fn refund_request(
    state: &Arc<ConnState>,
    r: wire::RefundRequest,
) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let dest = wire::piece_destination(r.piece_serial);
    let id = check_money(state, &active, &r, 0, &dest)?;
    let piece = front::piece_id(active.ledger_account, r.piece_serial);
    let o = state
        .shared
        .ledger
        .request_refund(id, piece)
        .await
        .map_err(front::call_error)?;
    piece_done(o)
}

/// One of the `statements_in_flight_max` permits statements and day reports share (`busy`
/// with the limit when all are taken).
fn statement_permit(state: &ConnState) -> Result<tokio::sync::SemaphorePermit<'_>, ErrorBody> {
    let max = state.shared.config.statements_in_flight_max;
    state.shared.statements.try_acquire().map_err(|_| {
        ErrorBody::new(
            ErrorCode::Busy,
            format!(
                "the vendor is preparing statements_in_flight_max = {max} statements and reports; try again shortly"
            ),
        )
        .with_limit(max as u64)
        .with_retry_after_ms(1_000)
    })
}

pub(super) async fn statement(
    state: &Arc<ConnState>,
    r: wire::StatementRequest,
) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let _running = statement_permit(state)?;
    let s = state
        .shared
        .ledger
        .statement(active.ledger_account, r.from_ms, r.to_ms)
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::StatementBody {
        from_ms: s.from_ms,
        to_ms: s.to_ms,
        beginning_cents: s.beginning.get(),
        credits_cents: s.credits.get(),
        printed_cents: s.printed.get(),
        voided_cents: s.voided.get(),
        refunded_cents: s.refunded.get(),
        ending_cents: s.ending.get(),
    }))
}

pub(super) async fn piece(
    state: &Arc<ConnState>,
    r: wire::PieceRequest,
) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let p = state
        .shared
        .ledger
        .piece(front::piece_id(active.ledger_account, r.piece_serial))
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&front::piece_info(&p)))
}

pub(super) async fn pieces(
    state: &Arc<ConnState>,
    r: wire::PiecesRequest,
) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    // The codec bounds the limit; clamp again so the ledger never reads more.
    let limit = r.limit.clamp(1, wire::PIECES_LIST_MAX);
    let pieces = state
        .shared
        .ledger
        .pieces(
            active.ledger_account,
            r.before_serial.map(crate::ledger::PieceSerial),
            limit,
        )
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::PieceList {
        pieces: pieces.iter().map(front::piece_info).collect(),
    }))
}

/// What a plain clerk reads when asking for a supervisor's refund requests or decisions.
const NOT_SUPERVISOR: &str =
    "Only a supervisor can see and decide refund requests. Ask a supervisor to sign in.";

/// The session account's meter must be the one named: a piece number from another meter is
/// not this office's (answered like an unknown piece, nothing looked up).
fn own_meter(
    active: &ActiveSession,
    field: &str,
    meter: &str,
    serial: u64,
) -> Result<(), ErrorBody> {
    let own = front::meter_of(active.ledger_account);
    if meter != own {
        tracing::info!(
            terminal = active.terminal_id,
            field,
            "piece of another meter refused"
        );
        return Err(ErrorBody::new(
            ErrorCode::UnknownPiece,
            format!(
                "{} is not an item of this office (its meter is {own})",
                crate::indicium::layout::PieceNumber::new(meter, serial)
            ),
        ));
    }
    Ok(())
}

/// `tender`: checked like a money request (MAC, clock, link), then stored by the ledger with
/// its pieces in one transaction (`report::decide_tender` decides).
pub(super) async fn tender(
    state: &Arc<ConnState>,
    r: wire::TenderRequest,
) -> Result<Vec<u8>, ErrorBody> {
    use crate::ledger::report::{Tender, TenderKind};
    let active = require_session(state)?;
    let dest = wire::TenderRequest::destination(&r.kind, r.change_cents, &r.meter, &r.pieces);
    let id = check_money(state, &active, &r, r.amount_tendered_cents, &dest)?;
    let first = r.pieces.first().copied().unwrap_or(0);
    own_meter(&active, "tender.meter", &r.meter, first)?;
    // The codec checked the kind and both amounts.
    let kind = TenderKind::parse(&r.kind)
        .ok_or_else(|| ErrorBody::malformed("tender.kind must be cash, card, check or other"))?;
    let money = |field: &str, v: u64| {
        crate::money::Cents::new(v)
            .map_err(|_| ErrorBody::malformed(format!("{field} is out of range")))
    };
    let asked = Tender {
        basket: id,
        account: active.ledger_account,
        clerk: active.clerk.clone(),
        terminal: TerminalId(active.terminal_id),
        kind,
        tendered: money("tender.amount_tendered_cents", r.amount_tendered_cents)?,
        change: money("tender.change_cents", r.change_cents)?,
        pieces: r
            .pieces
            .iter()
            .map(|s| crate::ledger::PieceSerial(*s))
            .collect(),
        total: crate::money::Cents::ZERO,
        recorded_at_ms: 0,
    };
    let stored = state
        .shared
        .ledger
        .record_tender(asked)
        .await
        .map_err(front::call_error)?
        .map_err(|e| {
            tracing::info!(terminal = active.terminal_id, clerk = %escaped(&active.clerk), error = %e, "tender refused");
            front::tender_error(e)
        })?;
    Ok(wire::encode_ok(&wire::TenderDone {
        meter: stored.meter(),
        pieces: stored.pieces.iter().map(|s| s.0).collect(),
        kind: stored.kind.as_str().to_string(),
        amount_tendered_cents: stored.tendered.get(),
        change_cents: stored.change.get(),
        total_cents: stored.total.get(),
        recorded_at_ms: stored.recorded_at_ms,
    }))
}

/// `day_report`: the session account's day for its clerk or its terminal (bounded: at most
/// `REPORT_PIECES_MAX` pieces and `REPORT_TENDERS_MAX` tenders read; shares the
/// `statements_in_flight_max` permits with `statement`).
pub(super) async fn day_report(
    state: &Arc<ConnState>,
    r: wire::DayReportRequest,
) -> Result<Vec<u8>, ErrorBody> {
    use crate::ledger::report::{ReportScope, day_bounds};
    let active = require_session(state)?;
    let _running = statement_permit(state)?;
    let day = crate::indicium::kinds::Day::parse("day_report.day", &r.day).map_err(|_| {
        // The value is not repeated (this message is logged).
        ErrorBody::malformed("day_report.day must be a date YYYY-MM-DD from 1970-01-01 on")
    })?;
    let scope = match r.scope.as_str() {
        "clerk" => ReportScope::Clerk(active.clerk.clone()),
        "terminal" => ReportScope::Terminal(active.terminal_id),
        "office" => {
            require_supervisor(
                state,
                &active,
                wire::Operation::DayReport,
                "Only a supervisor can see the whole office's day. Ask a supervisor to sign in.",
            )
            .await?;
            ReportScope::Office
        }
        _ => {
            return Err(ErrorBody::malformed(
                "day_report.scope must be clerk, terminal or office",
            ));
        }
    };
    let (from, to) = day_bounds(day);
    let rows = state
        .shared
        .ledger
        .day_rows(Some(active.ledger_account), from, to)
        .await
        .map_err(front::call_error)?;
    let report = front::build_day_report(day, Some(active.ledger_account), &scope, &rows);
    Ok(wire::encode_ok(&report))
}

/// `refunds_awaiting`: supervisors of the session's account only.
pub(super) async fn refunds_awaiting(
    state: &Arc<ConnState>,
    r: wire::RefundsAwaitingRequest,
) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    require_supervisor(
        state,
        &active,
        wire::Operation::RefundsAwaiting,
        NOT_SUPERVISOR,
    )
    .await?;
    let limit = r.limit.clamp(1, wire::REFUNDS_AWAITING_MAX);
    let pieces = state
        .shared
        .ledger
        .refunds_awaiting(active.ledger_account, limit)
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::PieceList {
        pieces: pieces.iter().map(front::piece_info).collect(),
    }))
}

/// `refund_decide`: a supervisor of the session's account approves or rejects; MAC'd and
/// idempotent like every money request (the ledger's `decide_refund`).
pub(super) async fn refund_decide(
    state: &Arc<ConnState>,
    r: wire::RefundDecide,
) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let dest = wire::RefundDecide::destination(&r.meter, r.piece_serial, r.approve);
    let id = check_money(state, &active, &r, 0, &dest)?;
    require_supervisor(
        state,
        &active,
        wire::Operation::RefundDecide,
        NOT_SUPERVISOR,
    )
    .await?;
    own_meter(&active, "refund_decide.meter", &r.meter, r.piece_serial)?;
    let piece = front::piece_id(active.ledger_account, r.piece_serial);
    let o = state
        .shared
        .ledger
        .decide_refund(id, piece, r.approve)
        .await
        .map_err(front::call_error)?;
    let (approved, registers) = match o {
        Outcome::RefundDecided {
            approved,
            registers,
            ..
        } => (approved, registers),
        other => return Err(internal(format!("unexpected ledger outcome {other:?}"))),
    };
    tracing::info!(terminal = active.terminal_id, clerk = %escaped(&active.clerk), piece = %piece, approved, "refund decided");
    let p = state
        .shared
        .ledger
        .piece(piece)
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::RefundDecided {
        piece: front::piece_info(&p),
        approved,
        registers: front::registers(&registers),
    }))
}
