//! Unit tests of [`super`] (moved out of its file unchanged).

use super::*;
use crate::ledger::model::{PieceId, PieceState, RefundState};

fn c(v: u64) -> Cents {
    Cents::new(v).unwrap()
}

fn piece(serial: u64, amount: u64, state: PieceState, at_ms: u64) -> Piece {
    Piece {
        id: PieceId {
            account: AccountId(1),
            serial: PieceSerial(serial),
        },
        kind: ItemKind::Postage.code(),
        amount: c(amount),
        state,
        authorized_at_ms: at_ms,
        expires_at_ms: at_ms + 1,
        printed_at_ms: None,
        refund: None,
        refund_submitted_at_ms: None,
        scanned: false,
        scan_count: 0,
        scan_recorded_at_ms: None,
        signed: vec![],
        item: vec![],
        terminal: Some(TerminalId(3)),
    }
}

fn tender(basket: u128, kind: TenderKind, tendered: u64, change: u64, pieces: &[u64]) -> Tender {
    Tender {
        basket: RequestId(basket),
        account: AccountId(1),
        clerk: "alice".into(),
        terminal: TerminalId(3),
        kind,
        tendered: c(tendered),
        change: c(change),
        pieces: pieces.iter().map(|s| PieceSerial(*s)).collect(),
        total: Cents::ZERO,
        recorded_at_ms: 10,
    }
}

fn found(p: Piece) -> TenderPiece {
    TenderPiece {
        serial: p.id.serial,
        piece: Some(p),
        basket: None,
    }
}

#[test]
fn a_cash_tender_with_change_is_recorded_with_its_total() {
    let t = tender(1, TenderKind::Cash, 1000, 270, &[1, 2]);
    let f = [
        found(piece(1, 500, PieceState::Printed, 5)),
        found(piece(2, 230, PieceState::Reserved, 5)),
    ];
    let TenderDecision::Insert(stored) = decide_tender(&t, None, &f).unwrap() else {
        panic!()
    };
    assert_eq!(stored.total, c(730));
    assert_eq!(stored.received(), c(730));
    // The same basket again replays; another body under its id is refused.
    assert_eq!(
        decide_tender(&t, Some(&stored), &[]).unwrap(),
        TenderDecision::Replay(stored.clone())
    );
    let other = tender(1, TenderKind::Cash, 2000, 1270, &[1, 2]);
    assert_eq!(
        decide_tender(&other, Some(&stored), &[]),
        Err(TenderError::IdempotencyConflict)
    );
}

#[test]
fn bad_tenders_are_refused_with_the_reason() {
    let p1 = || found(piece(1, 500, PieceState::Printed, 5));
    let cases: Vec<(Tender, Vec<TenderPiece>, TenderError)> = vec![
        (
            tender(1, TenderKind::Cash, 0, 0, &[]),
            vec![],
            TenderError::Empty,
        ),
        (
            tender(1, TenderKind::Cash, 1000, 0, &[1, 1]),
            vec![],
            TenderError::DuplicatePiece(PieceNumber::new("FRK10000001", 1)),
        ),
        (
            tender(1, TenderKind::Card, 600, 100, &[1]),
            vec![p1()],
            TenderError::ChangeWithoutCash { kind: "card" },
        ),
        (
            tender(1, TenderKind::Cash, 100, 200, &[1]),
            vec![p1()],
            TenderError::ChangeAboveTendered {
                tendered: c(100),
                change: c(200),
            },
        ),
        (
            tender(1, TenderKind::Card, 400, 0, &[1]),
            vec![p1()],
            TenderError::AmountMismatch {
                received: c(400),
                total: c(500),
            },
        ),
        (
            tender(1, TenderKind::Card, 500, 0, &[7]),
            vec![TenderPiece {
                serial: PieceSerial(7),
                piece: None,
                basket: None,
            }],
            TenderError::UnknownPiece(PieceNumber::new("FRK10000001", 7)),
        ),
        (
            tender(1, TenderKind::Card, 500, 0, &[1]),
            vec![found(piece(1, 500, PieceState::Voided, 5))],
            TenderError::Voided(PieceNumber::new("FRK10000001", 1)),
        ),
        (
            tender(1, TenderKind::Card, 500, 0, &[1]),
            vec![TenderPiece {
                basket: Some(RequestId(9)),
                ..p1()
            }],
            TenderError::InOtherBasket(PieceNumber::new("FRK10000001", 1)),
        ),
    ];
    for (t, f, want) in cases {
        assert_eq!(decide_tender(&t, None, &f), Err(want.clone()), "{want}");
    }
    let mut other_account = piece(1, 500, PieceState::Printed, 5);
    other_account.id.account = AccountId(2);
    assert_eq!(
        decide_tender(
            &tender(1, TenderKind::Card, 500, 0, &[1]),
            None,
            &[found(other_account)]
        ),
        Err(TenderError::UnknownPiece(PieceNumber::new(
            "FRK10000001",
            1
        )))
    );
    let many: Vec<u64> = (1..=BASKET_PIECES_MAX as u64 + 1).collect();
    assert!(matches!(
        check_shape(&tender(1, TenderKind::Cash, 1, 0, &many)),
        Err(TenderError::TooManyPieces { .. })
    ));
}

#[test]
fn the_report_counts_each_item_once_in_its_state() {
    let day = Day::parse("day", "2026-12-05").unwrap();
    let (from, to) = day_bounds(day);
    let mut refunded = piece(3, 100, PieceState::Printed, from + 3);
    refunded.refund = Some(RefundState::Approved);
    let mut awaiting = piece(4, 50, PieceState::Printed, from + 4);
    awaiting.refund = Some(RefundState::Submitted);
    let rows = DayRows {
        pieces: vec![
            piece(1, 500, PieceState::Printed, from + 1),
            piece(2, 230, PieceState::Unsettled, from + 2),
            refunded,
            awaiting,
            piece(5, 70, PieceState::Voided, from + 5),
            piece(6, 80, PieceState::Reserved, from + 6),
            piece(7, 999, PieceState::Printed, to),
        ],
        tenders: vec![tender(1, TenderKind::Cash, 1000, 270, &[1, 2])],
    };
    let r = DayReport::build(
        day,
        Some(AccountId(1)),
        &ReportScope::Terminal(3),
        &rows,
        |_| Described {
            clerk: Some("alice".into()),
            class: Some(MailClass::Priority),
            summary: "Priority".into(),
        },
        |_| "FRK10000001".into(),
    );
    assert_eq!(
        r.issued,
        Totals {
            count: 4,
            amount_cents: 880
        }
    );
    assert_eq!(r.lines.len(), 1);
    assert_eq!(r.lines[0].title, "Priority Mail");
    assert_eq!(
        r.voided,
        Totals {
            count: 1,
            amount_cents: 70
        }
    );
    assert_eq!(
        r.in_progress,
        Totals {
            count: 1,
            amount_cents: 80
        }
    );
    assert_eq!(
        r.unsettled,
        Totals {
            count: 1,
            amount_cents: 230
        }
    );
    assert_eq!(r.unsettled_items[0].number.to_string(), "FRK10000001 #2");
    assert_eq!(r.refunds_approved.amount_cents, 100);
    assert_eq!(r.refunds_awaiting.amount_cents, 50);
    assert_eq!(r.net_charged_cents, 780);
    assert_eq!(r.cash_expected_cents, 730);
    assert_eq!(r.received_cents, 730);
    assert_eq!(
        r.tendered_items,
        Totals {
            count: 2,
            amount_cents: 730
        }
    );
    assert_eq!(
        r.untendered_items,
        Totals {
            count: 2,
            amount_cents: 150
        }
    );
    // Another terminal's view of the same rows is empty.
    let other = DayReport::build(
        day,
        Some(AccountId(1)),
        &ReportScope::Terminal(4),
        &rows,
        |_| Described::default(),
        |_| String::new(),
    );
    assert_eq!(other.issued, Totals::default());
    assert_eq!(other.received_cents, 0);
    let text = r.text_lines().join("\n");
    assert!(
        text.contains("Cash expected in drawer") && text.contains("$7.30"),
        "{text}"
    );
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(serde_json::from_str::<DayReport>(&json).unwrap(), r);
}
