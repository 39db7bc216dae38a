//! Shell: the postal verifiers' `scan` — the connection's scan budget, the source's and the
//! piece's (per-source and per-piece `RateLimiter`s that outlive connections), the payload's
//! signature with the vendor's own key, then the piece and the ledger's scan record.
//!
//! It never looks up a scanned serial before its signature verified with the vendor key.

use super::accept::ConnState;
use super::money as front;
use super::ratelimit::{RateLimiter, Take};
use super::server::{LimitCounters, Shared, lock};
use crate::indicium::verify_payload;
use crate::ledger::Outcome;
use crate::wire::{self, ErrorBody, ErrorCode};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Sources whose scan budget is tracked at once (a source with an unspent budget is
/// forgotten first; beyond this a new source's `scan` is `busy`).
pub const SCAN_SOURCES_TRACKED_MAX: usize = 65_536;
/// Pieces whose scan budget is tracked at once (likewise).
pub const SCAN_PIECES_TRACKED_MAX: usize = 65_536;

/// Takes one token of a scan budget; `what` names it in the refusal.
fn scan_budget<K: Eq + std::hash::Hash + Copy>(
    shared: &Shared,
    limiter: &Mutex<RateLimiter<K>>,
    key: K,
    per_minute: u32,
    what: &str,
) -> Result<(), ErrorBody> {
    let take = lock(limiter).take(key, Instant::now());
    if take != Take::Allowed {
        LimitCounters::bump(&shared.limits_hit.scans_limited);
    }
    match take {
        Take::Allowed => Ok(()),
        Take::Limited { retry_after_ms } => Err(ErrorBody::new(
            ErrorCode::ScanLimit,
            format!("{what} is limited to {per_minute} scans a minute; try again later"),
        )
        .with_limit(u64::from(per_minute))
        .with_retry_after_ms(retry_after_ms)),
        Take::TableFull => Err(ErrorBody::new(
            ErrorCode::Busy,
            "the vendor is tracking too many scan budgets; try again later",
        )
        .with_retry_after_ms(1000)),
    }
}

/// `scan`: a postal verifier presents an indicium. Order: the connection's scan budget, the
/// source's (it survives reconnects), then the signature with the vendor's own key (a forged
/// or foreign payload is refused before any lookup, so serials cannot be enumerated), then the
/// piece's budget, then the piece, then the ledger records the scan (which rejects a pending
/// refund request for it; a repeat within `scan_record_window_ms` only counts on the piece).
pub(super) async fn scan(
    state: &Arc<ConnState>,
    r: wire::ScanRequest,
) -> Result<Vec<u8>, ErrorBody> {
    let limit = state.shared.config.scans_per_connection_max;
    let n = state
        .scans
        .fetch_add(1, Ordering::Relaxed)
        .saturating_add(1);
    if n > limit {
        return Err(ErrorBody::new(
            ErrorCode::ScanLimit,
            format!("this connection made {limit} scans, the most one connection may make"),
        )
        .with_limit(u64::from(limit)));
    }
    let config = &state.shared.config;
    scan_budget(
        &state.shared,
        &state.shared.scan_sources,
        state.source,
        config.scans_per_source_per_minute,
        "this source address",
    )?;
    let verified = verify_payload(&r.payload, &state.shared.own_keys)
        .map_err(|e| ErrorBody::new(ErrorCode::InvalidIndicium, e.to_string()))?;
    let body = verified.indicium.body;
    let meter = body.meter_serial.to_string();
    let piece_serial = body.piece_serial.get();
    if let Some(m) = crate::ledger::MeterSerial::parse(&meter) {
        scan_budget(
            &state.shared,
            &state.shared.scan_pieces,
            front::piece_id(m.account(), piece_serial),
            config.scans_per_piece_per_minute,
            "one piece",
        )?;
    }
    let answer = |state: &str, fraud: bool, refund_rejected: bool, scanned_before: bool| {
        wire::encode_ok(&wire::Scanned {
            meter: meter.clone(),
            piece_serial,
            state: state.to_string(),
            fraud,
            refund_rejected,
            scanned_before,
        })
    };
    // The vendor signed it, so the meter is one of its own; a serial it never issued is
    // still answered (as unknown) rather than trusted.
    let Some(m) = crate::ledger::MeterSerial::parse(&meter) else {
        return Ok(answer("unknown", false, false, false));
    };
    let id = front::piece_id(m.account(), piece_serial);
    let ledger = &state.shared.ledger;
    let piece = match ledger.piece(id).await {
        Ok(p) => p,
        Err(crate::ledger::CallError::Refused(crate::ledger::LedgerError::UnknownPiece(_))) => {
            return Ok(answer("unknown", false, false, false));
        }
        Err(e) => return Err(front::call_error(e)),
    };
    let outcome = ledger
        .record_scan(crate::clock::random_request_id(), id)
        .await
        .map_err(front::call_error)?;
    let refund_rejected = matches!(
        outcome,
        Outcome::ScanRecorded {
            refund_rejected: true,
            ..
        }
    );
    let item_state = piece.item_state();
    let (name, fraud) = if piece.signed != r.payload {
        ("not_as_issued", true)
    } else {
        use crate::ledger::ItemState;
        let fraud = matches!(item_state, ItemState::Voided | ItemState::Refunded);
        (front::item_state_name(item_state), fraud)
    };
    if fraud {
        tracing::warn!(meter = %meter, piece = piece_serial, state = name, "scan of a piece that must not be in the mail stream");
    }
    Ok(answer(name, fraud, refund_rejected, piece.scanned))
}
