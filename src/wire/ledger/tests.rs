//! Unit tests of [`super`] (moved out of its file unchanged).

use super::super::{ErrorCode, Request, decode_request, encode_request};
use super::*;

fn card() -> FundMethod {
    FundMethod::Card {
        number: "4242424242424242".into(),
        exp_month: 12,
        exp_year: 2040,
        cvc: "987".into(),
    }
}

fn authorize(item: WireItem, zip: &str) -> Request {
    Request::Authorize(Authorize {
        request_id: vec![1; 16],
        client_time_ms: 5,
        amount_cents: 73,
        item,
        origin_zip: zip.into(),
        mac: vec![2; 32],
    })
}

fn postage() -> WireItem {
    WireItem::Postage(PostageItem {
        class: "priority".into(),
        weight_oz: 3,
        zip: "20500".into(),
    })
}

#[test]
fn ledger_requests_round_trip() {
    let reqs = [
        Request::Balance(BalanceRequest {}),
        Request::Quote(QuoteRequest {
            item: PostageItem {
                class: "media".into(),
                weight_oz: 16,
                zip: "20500-0003".into(),
            },
            origin_zip: "10001".into(),
        }),
        Request::Fund(Fund {
            request_id: vec![1; 16],
            client_time_ms: 5,
            amount_cents: 500,
            method: card(),
            mac: vec![2; 32],
        }),
        authorize(postage(), "10001"),
        authorize(
            WireItem::Check(CheckItem {
                payee: "Acme".into(),
                amount_cents: 73,
                number: 9,
                memo: None,
            }),
            "10001",
        ),
        Request::Commit(Commit {
            request_id: vec![1; 16],
            client_time_ms: 5,
            piece_serial: 3,
            mac: vec![2; 32],
        }),
        Request::Void(Void {
            request_id: vec![1; 16],
            client_time_ms: 5,
            piece_serial: 3,
            reached_printer: true,
            mac: vec![2; 32],
        }),
        Request::RefundRequest(RefundRequest {
            request_id: vec![1; 16],
            client_time_ms: 5,
            piece_serial: 3,
            mac: vec![2; 32],
        }),
        Request::Statement(StatementRequest {
            from_ms: 0,
            to_ms: 10,
        }),
        Request::Piece(PieceRequest { piece_serial: 1 }),
        Request::Pieces(PiecesRequest {
            limit: 50,
            before_serial: None,
        }),
        Request::Pieces(PiecesRequest {
            limit: PIECES_LIST_MAX,
            before_serial: Some(7),
        }),
        Request::Scan(ScanRequest {
            payload: vec![1; SCAN_PAYLOAD_BYTES_MAX],
        }),
    ];
    for r in reqs {
        assert_eq!(decode_request(&encode_request(&r)).unwrap(), r);
    }
}

#[test]
fn bad_ledger_requests_name_the_field() {
    let cases: Vec<(Request, &str)> = vec![
        (authorize(postage(), "1234"), "authorize.origin_zip"),
        (
            authorize(
                WireItem::Postage(PostageItem {
                    class: "carrier-pigeon".into(),
                    weight_oz: 1,
                    zip: "20500".into(),
                }),
                "10001",
            ),
            "authorize.item.class",
        ),
        (
            Request::Fund(Fund {
                request_id: vec![1; 15],
                client_time_ms: 5,
                amount_cents: 500,
                method: card(),
                mac: vec![2; 32],
            }),
            "fund.request_id",
        ),
        (
            Request::Fund(Fund {
                request_id: vec![1; 16],
                client_time_ms: 5,
                amount_cents: 0,
                method: card(),
                mac: vec![2; 32],
            }),
            "fund.amount_cents",
        ),
        (
            Request::Commit(Commit {
                request_id: vec![1; 16],
                client_time_ms: 5,
                piece_serial: 3,
                mac: vec![2; 31],
            }),
            "commit.mac",
        ),
    ];
    for limit in [0, PIECES_LIST_MAX + 1] {
        let r = Request::Pieces(PiecesRequest {
            limit,
            before_serial: None,
        });
        let e = decode_request(&encode_request(&r)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
        assert!(e.message.contains("pieces.limit"), "{}", e.message);
        assert_eq!(e.limit, Some(u64::from(PIECES_LIST_MAX)));
    }
    for len in [0, SCAN_PAYLOAD_BYTES_MAX + 1] {
        let r = Request::Scan(ScanRequest {
            payload: vec![1; len],
        });
        let e = decode_request(&encode_request(&r)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
        assert!(e.message.contains("scan.payload"), "{}", e.message);
        assert_eq!(e.limit, Some(SCAN_PAYLOAD_BYTES_MAX as u64));
    }
    for (r, field) in cases {
        let e = decode_request(&encode_request(&r)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed, "{field}");
        assert!(e.message.contains(field), "{field}: {}", e.message);
    }
}

fn tender(pieces: Vec<u64>, kind: &str, meter: &str) -> Request {
    Request::Tender(TenderRequest {
        request_id: vec![1; 16],
        client_time_ms: 5,
        meter: meter.into(),
        pieces,
        kind: kind.into(),
        amount_tendered_cents: 1000,
        change_cents: 270,
        mac: vec![2; 32],
    })
}

/// Issue 15's requests round-trip, and bad fields are named with their bounds.
#[test]
fn basket_report_and_refund_requests_round_trip_and_bad_fields_are_named() {
    let max = crate::ledger::report::BASKET_PIECES_MAX;
    let good = [
        tender(vec![1, 2], "cash", "FRK10000001"),
        tender((1..=max as u64).collect(), "other", "FRK10000001"),
        Request::DayReport(DayReportRequest {
            day: "2026-12-05".into(),
            scope: "terminal".into(),
        }),
        Request::RefundsAwaiting(RefundsAwaitingRequest {
            limit: REFUNDS_AWAITING_MAX,
        }),
        Request::RefundDecide(RefundDecide {
            request_id: vec![1; 16],
            client_time_ms: 5,
            meter: "FRK10000001".into(),
            piece_serial: 9,
            approve: true,
            mac: vec![2; 32],
        }),
    ];
    for r in good {
        assert_eq!(decode_request(&encode_request(&r)).unwrap(), r);
    }
    let bad: Vec<(Request, &str, Option<u64>)> = vec![
        (
            tender(vec![], "cash", "FRK10000001"),
            "tender.pieces",
            Some(max as u64),
        ),
        (
            tender((0..=max as u64).collect(), "cash", "FRK10000001"),
            "tender.pieces",
            Some(max as u64),
        ),
        (tender(vec![1], "iou", "FRK10000001"), "tender.kind", None),
        (tender(vec![1], "cash", "frk\n1"), "tender.meter", None),
        (
            Request::DayReport(DayReportRequest {
                day: "12/05/2026".into(),
                scope: "clerk".into(),
            }),
            "day_report.day",
            None,
        ),
        (
            Request::DayReport(DayReportRequest {
                day: "2026-12-05".into(),
                scope: "everyone".into(),
            }),
            "day_report.scope",
            None,
        ),
        (
            Request::RefundsAwaiting(RefundsAwaitingRequest { limit: 0 }),
            "refunds_awaiting.limit",
            Some(u64::from(REFUNDS_AWAITING_MAX)),
        ),
    ];
    for (r, field, limit) in bad {
        let e = decode_request(&encode_request(&r)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed, "{field}");
        assert!(e.message.starts_with(field), "{field}: {}", e.message);
        assert!(
            !e.message.contains("frk"),
            "the value is not repeated: {}",
            e.message
        );
        assert_eq!(e.limit, limit, "{field}");
    }
    assert_eq!(
        TenderRequest::destination("cash", 270, "FRK10000001", &[3, 1]),
        "cash:270:FRK10000001:3,1"
    );
    assert_eq!(
        RefundDecide::destination("FRK10000001", 9, false),
        "FRK10000001:9:reject"
    );
}

#[test]
fn summaries_are_short_human_texts() {
    let p = WireItem::Postage(PostageItem {
        class: "first-class".into(),
        weight_oz: 3,
        zip: "20500".into(),
    });
    assert_eq!(p.summary(), "First-Class 3 oz → 20500");
    let t = WireItem::Ticket(TicketItem {
        event: "Opera".into(),
        venue: "Met".into(),
        seat: "12A".into(),
        event_day: "2040-01-01".into(),
        price_cents: 100,
    });
    assert_eq!(t.summary(), "Ticket: Opera, seat 12A");
    let c = WireItem::Check(CheckItem {
        payee: "Acme".into(),
        amount_cents: 73,
        number: 9,
        memo: None,
    });
    assert_eq!(c.summary(), "Check #9 to Acme");
    let g = WireItem::GiftCertificate(ValueItem {
        text: "Jane Doe".into(),
        value_cents: 500,
        expiry: "2040-01-01".into(),
    });
    assert_eq!(g.summary(), "Gift certificate: Jane Doe");
}

#[test]
fn fund_debug_hides_card_data() {
    let f = format!("{:?}", card());
    assert!(!f.contains("4242424242424242") && !f.contains("987"), "{f}");
    assert!(f.contains("4242"));
    let a = format!(
        "{:?}",
        FundMethod::Ach {
            routing: "011000015".into(),
            account: "000123456789".into()
        }
    );
    assert!(!a.contains("000123456789"), "{a}");
    assert_eq!(card().destination(), "card:4242");
}
