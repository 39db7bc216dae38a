//! Indicia over the real QUIC link on loopback: every non-postage kind authorized by a real
//! vendor, rendered, scanned back with rxing and verified; and `scan` / `frank verify --vendor`
//! (the postal verifier's online check): voided and refunded pieces flagged as fraud, a scan
//! rejecting a pending refund request, forged payloads refused before any lookup, the
//! per-connection scan budget.

mod support;

use frank::counter::client::{self, Session};
use frank::indicium::layout::{Indicium, Subject};
use frank::indicium::render::render_label;
use frank::indicium::signer::Signer;
use frank::indicium::verify::payload_from_png;
use frank::indicium::{VendorKeys, verify_payload};
use frank::wire::{self, ErrorCode, FundMethod, Request, WireItem};
use std::process::Output;
use support::*;

const ORIGIN: &str = "10001";

use support::{refusal as refused, refusal_code as code};

fn rid() -> [u8; 16] {
    rand::random()
}

/// A funded, logged-in counter whose link the vendor sees as Up.
async fn terminal(v: &Vendor) -> (Counter, Session, frank::link::driver::LinkHandle) {
    let (c, s, link) = linked_counter(v).await;
    s.fund(rid(), 50_000, FundMethod::simulator_test_card())
        .await
        .unwrap();
    (c, s, link)
}

fn coupon(cents: u64) -> WireItem {
    WireItem::Coupon(wire::ValueItem {
        text: "2 for 1".into(),
        value_cents: cents,
        expiry: "2040-01-31".into(),
    })
}

fn keys(v: &Vendor) -> VendorKeys {
    let mut k = VendorKeys::new();
    k.add(v.key.as_bytes()).unwrap();
    k
}

fn fingerprint(v: &Vendor) -> String {
    hex::encode(v.key.as_bytes())
}

/// Runs the `frank` binary off the runtime (the vendor keeps serving meanwhile).
async fn frank(args: Vec<String>) -> (Output, String) {
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_frank"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out, text)
}

async fn verify_online(v: &Vendor, input: &str) -> (Output, String) {
    frank(vec![
        "verify".into(),
        input.into(),
        "--vendor-key".into(),
        fingerprint(v),
        "--vendor".into(),
        v.addr.to_string(),
    ])
    .await
}

/// The label as a PNG file: the indicium rendered at 203 dpi.
fn label_png(dir: &std::path::Path, indicium: &[u8]) -> String {
    let ind = Indicium::decode(indicium).unwrap();
    let path = dir.join(format!("label-{}.png", ind.body.piece_serial.get()));
    std::fs::write(&path, render_label(&ind, 203).unwrap().to_png().unwrap()).unwrap();
    path.to_string_lossy().into_owned()
}

async fn scanned(v: &Vendor, serial: u64) -> bool {
    let ledger = v.server.ledger();
    let account = frank::vendor_server::money::ledger_account_of(&ledger, v.account_id)
        .await
        .unwrap();
    ledger
        .piece(frank::vendor_server::money::piece_id(account, serial))
        .await
        .unwrap()
        .scanned
}

#[tokio::test]
async fn ticket_check_and_gift_certificate_authorize_render_scan_and_verify() {
    let v = vendor().await;
    let (_c, s, _link) = terminal(&v).await;
    let items = [
        (
            WireItem::Ticket(wire::TicketItem {
                event: "Tosca".into(),
                venue: "Lyric Opera".into(),
                seat: "Row K 12".into(),
                event_day: "2040-03-14".into(),
                price_cents: 8_950,
            }),
            8_950,
        ),
        (
            WireItem::Check(wire::CheckItem {
                payee: "Ada Lovelace".into(),
                amount_cents: 12_345,
                number: 1001,
                memo: Some("rent".into()),
            }),
            12_345,
        ),
        (
            WireItem::GiftCertificate(wire::ValueItem {
                text: "Grace Hopper".into(),
                value_cents: 2_500,
                expiry: "2041-12-31".into(),
            }),
            2_500,
        ),
    ];
    let keys = keys(&v);
    for (item, amount) in items {
        let typed = item.to_item().unwrap();
        // The face value is the price: another amount is refused with the right one.
        let e = s
            .authorize(rid(), amount - 1, item.clone(), ORIGIN)
            .await
            .unwrap_err();
        assert_eq!(code(&e), ErrorCode::QuoteMismatch, "{}", typed.kind());
        assert_eq!(refused(&e).amount_cents, Some(amount));
        let a = s.authorize(rid(), amount, item, ORIGIN).await.unwrap();
        let ind = Indicium::decode(&a.indicium).unwrap();
        let png = render_label(&ind, 203).unwrap().to_png().unwrap();
        let scanned = payload_from_png(&png).unwrap();
        assert_eq!(scanned, a.indicium, "{}", typed.kind());
        let verified = verify_payload(&scanned, &keys).unwrap();
        let body = verified.indicium.body;
        assert_eq!(body.piece_serial.get(), a.piece_serial);
        assert_eq!(body.amount.get(), amount);
        assert_eq!(body.meter_serial.as_str(), a.meter);
        assert_eq!(body.origin.to_string(), ORIGIN);
        match body.subject {
            Subject::Item(d) => {
                assert_eq!(d.kind(), typed.kind());
                assert_eq!(d.digest(), &typed.digest());
            }
            other => panic!("{} signed as {other:?}", typed.kind()),
        }
        // One flipped bit in the scanned payload fails with the check named.
        let mut bad = scanned.clone();
        bad[frank::indicium::layout::BODY_BYTES_ITEM - 1] ^= 1; // the kind digest
        assert_eq!(
            verify_payload(&bad, &keys).unwrap_err().check(),
            "bad signature"
        );
        s.commit(rid(), a.piece_serial).await.unwrap();
    }
}

#[tokio::test]
async fn a_voided_piece_scans_as_fraud_and_verify_exits_non_zero() {
    let v = vendor().await;
    let (_c, s, _link) = terminal(&v).await;
    let a = s.authorize(rid(), 300, coupon(300), ORIGIN).await.unwrap();
    let done = s.void(rid(), a.piece_serial, false).await.unwrap();
    assert_eq!(done.result, "voided");
    assert!(!scanned(&v, a.piece_serial).await);
    let dir = tempfile::tempdir().unwrap();
    // From a PNG of the label, as a verifier's camera would give it.
    let png = label_png(dir.path(), &a.indicium);
    let (out, t) = verify_online(&v, &png).await;
    assert!(!out.status.success(), "{t}");
    let want = format!("fraud: piece {} was voided", a.piece_serial);
    assert!(t.contains(&want), "{want:?} missing in\n{t}");
    eprintln!("{t}");
    assert!(t.contains("vendor_state: voided"), "{t}");
    assert!(t.contains("fraud: yes"), "{t}");
    assert!(!t.contains("result: VALID"), "{t}");
    assert!(scanned(&v, a.piece_serial).await, "the scan is recorded");
}

#[tokio::test]
async fn a_scan_rejects_a_pending_refund_and_a_refunded_piece_is_fraud() {
    let v = vendor().await;
    let (_c, s, _link) = terminal(&v).await;
    let ledger = v.server.ledger();

    // Printed, then a refund requested; the piece turns up in the mail stream.
    let a = s.authorize(rid(), 400, coupon(400), ORIGIN).await.unwrap();
    s.commit(rid(), a.piece_serial).await.unwrap();
    s.request_refund(rid(), a.piece_serial).await.unwrap();
    let (out, t) = verify_online(&v, &hex::encode(&a.indicium)).await;
    assert!(out.status.success(), "{t}");
    assert!(t.contains("vendor_state: refund_requested"), "{t}");
    assert!(t.contains("refund_request: rejected by this scan"), "{t}");
    assert!(t.contains("fraud: no"), "{t}");
    assert!(t.contains("result: VALID"), "{t}");
    let p = s.piece(a.piece_serial).await.unwrap();
    assert_eq!(p.item_state, "refund_rejected");
    assert_eq!(p.refund_state.as_deref(), Some("rejected"));
    // The supervisor can no longer approve it, and the counter cannot ask again.
    let account = frank::vendor_server::money::ledger_account_of(&ledger, v.account_id)
        .await
        .unwrap();
    let id = frank::vendor_server::money::piece_id(account, a.piece_serial);
    let e = ledger
        .decide_refund(frank::clock::random_request_id(), id, true)
        .await
        .unwrap_err();
    assert!(
        matches!(
            e,
            frank::ledger::CallError::Refused(frank::ledger::LedgerError::NoRefundPending(_))
        ),
        "{e:?}"
    );
    let e = s.request_refund(rid(), a.piece_serial).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::RefundAlreadyRequested);
    assert_eq!(
        s.balance().await.unwrap().registers.descending_cents,
        50_000 - 400,
        "no refund was credited"
    );

    // A piece refunded before it was scanned is fraud.
    let b = s.authorize(rid(), 500, coupon(500), ORIGIN).await.unwrap();
    s.commit(rid(), b.piece_serial).await.unwrap();
    s.request_refund(rid(), b.piece_serial).await.unwrap();
    let bid = frank::vendor_server::money::piece_id(account, b.piece_serial);
    ledger
        .decide_refund(frank::clock::random_request_id(), bid, true)
        .await
        .unwrap();
    let (out, t) = verify_online(&v, &hex::encode(&b.indicium)).await;
    assert!(!out.status.success(), "{t}");
    let want = format!("fraud: piece {} was refunded", b.piece_serial);
    assert!(t.contains(&want), "{want:?} missing in\n{t}");
}

#[tokio::test]
async fn a_printed_piece_scans_valid_and_a_second_sighting_is_reported() {
    let v = vendor().await;
    let (_c, s, _link) = terminal(&v).await;
    let a = s.authorize(rid(), 600, coupon(600), ORIGIN).await.unwrap();
    s.commit(rid(), a.piece_serial).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let png = label_png(dir.path(), &a.indicium);
    let (out, t) = verify_online(&v, &png).await;
    assert!(out.status.success(), "{t}");
    for needle in [
        "vendor_state: printed",
        "scanned_before: no",
        "fraud: no",
        "result: VALID",
    ] {
        assert!(t.contains(needle), "{needle:?} missing in\n{t}");
    }
    // A verifier needs no terminal enrollment and no login: a bare pinned connection.
    let endpoint = endpoint();
    let conn = client::connect(&endpoint, v.addr, v.key).await.unwrap();
    let again = conn.scan(&a.indicium).await.unwrap();
    assert_eq!(
        again,
        wire::Scanned {
            meter: a.meter.clone(),
            piece_serial: a.piece_serial,
            state: "printed".into(),
            fraud: false,
            refund_rejected: false,
            scanned_before: true,
        }
    );
    // A printed piece that was scanned cannot be refunded.
    let e = s.request_refund(rid(), a.piece_serial).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::PieceScanned);
}

#[tokio::test]
async fn forged_payloads_are_refused_before_any_lookup_and_scans_are_bounded() {
    let v = vendor().await;
    let (_c, s, _link) = terminal(&v).await;
    let a = s.authorize(rid(), 700, coupon(700), ORIGIN).await.unwrap();
    s.commit(rid(), a.piece_serial).await.unwrap();
    let mut forged = a.indicium.clone();
    // Claim a different amount: the signature no longer covers the body.
    forged[53] ^= 0x10;

    // The CLI refuses it offline, naming the check, and never asks the vendor.
    let (out, t) = verify_online(&v, &hex::encode(&forged)).await;
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("result: INVALID (bad signature)"), "{t}");
    assert!(!t.contains("vendor_state"), "{t}");

    // The vendor refuses it too, on a bare connection, and records nothing.
    let endpoint = endpoint();
    let conn = client::connect(&endpoint, v.addr, v.key).await.unwrap();
    let e = conn.scan(&forged).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidIndicium);
    assert!(refused(&e).message.starts_with("bad signature"), "{e}");
    // Signed by another key: unknown key. Not an indicium at all: malformed layout.
    let other = frank::indicium::signer::KeySigner::from_seed(&[9u8; 32]);
    let foreign = frank::indicium::build_and_sign(&indicium_facts(&a.indicium), &other)
        .unwrap()
        .to_bytes();
    let e = conn.scan(&foreign).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidIndicium);
    assert!(refused(&e).message.starts_with("unknown key"), "{e}");
    // The CLI pins the key that signed the indicium: a vendor with another key is refused.
    let (out, t) = frank(vec![
        "verify".into(),
        hex::encode(&foreign),
        "--vendor-key".into(),
        hex::encode(other.public_key()),
        "--vendor".into(),
        v.addr.to_string(),
    ])
    .await;
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(&format!("presented key {}", fingerprint(&v))),
        "{t}"
    );
    assert!(!t.contains("result: VALID"), "{t}");
    let e = conn.scan(&[1, 1, 0, 0]).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::InvalidIndicium);
    assert!(refused(&e).message.starts_with("malformed layout"), "{e}");
    assert!(
        !scanned(&v, a.piece_serial).await,
        "no forged scan recorded"
    );

    // Payload size is bounded by the codec.
    let e = conn
        .request::<wire::Scanned>(&Request::Scan(wire::ScanRequest {
            payload: vec![0; wire::SCAN_PAYLOAD_BYTES_MAX + 1],
        }))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::Malformed);
    assert!(refused(&e).message.contains("scan.payload"), "{e}");
    assert_eq!(refused(&e).limit, Some(wire::SCAN_PAYLOAD_BYTES_MAX as u64));

    // Every scan counts against the connection's budget, valid or not.
    let max = frank::vendor_server::VendorConfig::default().scans_per_connection_max;
    for _ in 3..max {
        assert_eq!(
            code(&conn.scan(&forged).await.unwrap_err()),
            ErrorCode::InvalidIndicium
        );
    }
    let e = conn.scan(&a.indicium).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::ScanLimit);
    assert_eq!(refused(&e).limit, Some(u64::from(max)));
    assert!(!scanned(&v, a.piece_serial).await);
    // A new connection gets a new budget.
    let fresh = client::connect(&endpoint, v.addr, v.key).await.unwrap();
    let ok = fresh.scan(&a.indicium).await.unwrap();
    assert_eq!(ok.state, "printed");
    assert!(scanned(&v, a.piece_serial).await);
}

/// The facts of a vendor-signed indicium, to re-sign the same piece with another key.
fn indicium_facts(payload: &[u8]) -> frank::indicium::PieceFacts {
    let b = Indicium::decode(payload).unwrap().body;
    let item = match b.subject {
        Subject::Item(_) => frank::wire::ValueItem {
            text: "2 for 1".into(),
            value_cents: b.amount.get(),
            expiry: "2040-01-31".into(),
        },
        other => panic!("not a coupon: {other:?}"),
    };
    frank::indicium::PieceFacts {
        meter_serial: b.meter_serial,
        license_id: b.license_id,
        piece_serial: b.piece_serial,
        ascending_after: b.ascending,
        descending_after: b.descending,
        amount: b.amount,
        date: b.date,
        origin: b.origin,
        software_id: b.software_id,
        item: WireItem::Coupon(item).to_item().unwrap(),
    }
}
