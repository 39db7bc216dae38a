//! The ledger over the real QUIC link on loopback: fund, quote, authorize (signed indicium),
//! commit, void, idempotency, refusals before the ledger, races between terminals.

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod pg;
mod support;

use frank::counter::client::Session;
use frank::indicium::{VendorKeys, verify_payload};
use frank::link::driver::LinkHandle;
use frank::link::guard::LinkState;
use frank::wire::{self, ErrorCode, FundMethod, PostageItem, Request, WireItem};
use std::collections::BTreeSet;
use std::time::Duration;
use support::*;

const LONG: Duration = Duration::from_secs(10);
const ORIGIN: &str = "10001";

fn postage() -> PostageItem {
    PostageItem {
        class: "first-class".into(),
        weight_oz: 2,
        zip: "20500-0003".into(),
    }
}

fn coupon(cents: u64) -> WireItem {
    WireItem::Coupon(wire::ValueItem {
        text: "10% off".into(),
        value_cents: cents,
        expiry: "2040-01-31".into(),
    })
}

use support::{refusal as refused, refusal_code as code};

fn rid() -> [u8; 16] {
    rand::random()
}

/// A logged-in counter whose link the vendor sees as Up.
struct Terminal {
    c: Counter,
    s: Session,
    link: LinkHandle,
}

async fn terminal(v: &Vendor) -> Terminal {
    let (c, s, link) = linked_counter(v).await;
    Terminal { c, s, link }
}

#[tokio::test]
async fn fund_quote_authorize_commit_with_registers_and_a_verifying_indicium() {
    let v = vendor().await;
    let t = terminal(&v).await;
    let b = t.s.balance().await.unwrap();
    assert_eq!(b.status, "active");
    assert_eq!(b.registers, wire::WireRegisters::default());

    let funded =
        t.s.fund(rid(), 5_000, FundMethod::simulator_test_card())
            .await
            .unwrap();
    assert_eq!(funded.registers.descending_cents, 5_000);
    assert_eq!(funded.registers.control_cents, 5_000);

    let q = t.s.quote(postage(), ORIGIN).await.unwrap();
    assert!(q.amount_cents > 0);
    assert!(q.sample);

    // A wrong amount is refused with the vendor's quote, and nothing is reserved.
    let e =
        t.s.authorize(
            rid(),
            q.amount_cents + 1,
            WireItem::Postage(postage()),
            ORIGIN,
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::QuoteMismatch);
    assert_eq!(refused(&e).amount_cents, Some(q.amount_cents));
    assert_eq!(t.s.balance().await.unwrap().registers.pending_cents, 0);

    let a =
        t.s.authorize(rid(), q.amount_cents, WireItem::Postage(postage()), ORIGIN)
            .await
            .unwrap();
    assert_eq!(a.piece_serial, 1);
    assert_eq!(a.registers.pending_cents, q.amount_cents);
    assert_eq!(a.registers.descending_cents, 5_000 - q.amount_cents);

    let mut keys = VendorKeys::new();
    keys.add(v.key.as_bytes()).unwrap();
    let verified = verify_payload(&a.indicium, &keys).unwrap();
    assert_eq!(verified.indicium.body.amount.get(), q.amount_cents);
    assert_eq!(verified.indicium.body.piece_serial.get(), 1);
    assert_eq!(verified.indicium.body.meter_serial.as_str(), a.meter);

    let done = t.s.commit(rid(), a.piece_serial).await.unwrap();
    assert_eq!(done.result, "printed");
    assert_eq!(
        done.registers,
        wire::WireRegisters {
            descending_cents: 5_000 - q.amount_cents,
            pending_cents: 0,
            ascending_cents: q.amount_cents,
            control_cents: 5_000,
        }
    );
    let p = t.s.piece(a.piece_serial).await.unwrap();
    assert_eq!(p.item_state, "printed");

    // A second commit is a typed error; a void that never reached the printer releases.
    let e = t.s.commit(rid(), a.piece_serial).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::AlreadyCommitted);
    let a2 =
        t.s.authorize(rid(), 250, coupon(250), ORIGIN)
            .await
            .unwrap();
    let v2 = t.s.void(rid(), a2.piece_serial, false).await.unwrap();
    assert_eq!(v2.result, "voided");
    assert_eq!(v2.registers.descending_cents, 5_000 - q.amount_cents);

    // A printed piece can be refunded once.
    let r = t.s.request_refund(rid(), a.piece_serial).await.unwrap();
    assert_eq!(r.result, "refund_requested");
    let e = t.s.request_refund(rid(), a.piece_serial).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::RefundAlreadyRequested);

    let st = t.s.statement(0, u64::MAX).await.unwrap();
    assert_eq!(st.credits_cents, 5_000);
    assert_eq!(st.printed_cents, q.amount_cents);
    assert_eq!(st.ending_cents, 5_000 - q.amount_cents);

    // A void whose item fully reached the printer counts as printed and files a refund request.
    let a3 =
        t.s.authorize(rid(), 250, coupon(250), ORIGIN)
            .await
            .unwrap();
    let v3 = t.s.void(rid(), a3.piece_serial, true).await.unwrap();
    assert_eq!(v3.result, "refund_requested");
    assert_eq!(v3.registers.ascending_cents, q.amount_cents + 250);
    assert_eq!(
        t.s.piece(a3.piece_serial).await.unwrap().item_state,
        "refund_requested"
    );
    let e = t.s.commit(rid(), a3.piece_serial).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::AlreadyCommitted);
    drop(t.link);
}

#[tokio::test]
async fn retries_return_the_first_result_and_a_changed_body_conflicts() {
    let v = vendor().await;
    let t = terminal(&v).await;
    let fund =
        t.s.fund_request(
            rid(),
            frank::clock::unix_ms(),
            2_000,
            FundMethod::simulator_test_card(),
        )
        .unwrap();
    let first: wire::Funded = t.s.send(&fund).await.unwrap();
    let again: wire::Funded = t.s.send(&fund).await.unwrap();
    assert_eq!(first, again);
    assert_eq!(t.s.balance().await.unwrap().registers.control_cents, 2_000);

    let id = rid();
    let auth =
        t.s.authorize_request(id, frank::clock::unix_ms(), 300, coupon(300), ORIGIN)
            .unwrap();
    let (x, y, z) = tokio::join!(
        t.s.send::<wire::Authorized>(&auth),
        t.s.send::<wire::Authorized>(&auth),
        t.s.send::<wire::Authorized>(&auth)
    );
    let (x, y, z) = (x.unwrap(), y.unwrap(), z.unwrap());
    assert_eq!(x, y);
    assert_eq!(y, z);
    let b = t.s.balance().await.unwrap();
    assert_eq!(b.registers.pending_cents, 300);

    // Same id, different body.
    let other =
        t.s.authorize_request(id, frank::clock::unix_ms(), 400, coupon(400), ORIGIN)
            .unwrap();
    let e = t.s.send::<wire::Authorized>(&other).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::IdempotencyConflict);
    assert_eq!(t.s.balance().await.unwrap(), b);

    // A refusal is remembered too: the same commit id after a void answers the first result.
    let commit =
        t.s.commit_request(rid(), frank::clock::unix_ms(), x.piece_serial)
            .unwrap();
    let c1: wire::PieceDone = t.s.send(&commit).await.unwrap();
    let c2: wire::PieceDone = t.s.send(&commit).await.unwrap();
    assert_eq!(c1, c2);
    assert_eq!(t.s.balance().await.unwrap().registers.ascending_cents, 300);
}

#[tokio::test]
async fn bad_mac_skewed_clock_and_lapsed_link_change_nothing() {
    let v = vendor().await;
    let t = terminal(&v).await;
    t.s.fund(rid(), 1_000, FundMethod::simulator_test_card())
        .await
        .unwrap();
    let before = t.s.balance().await.unwrap();

    // Bad MAC.
    let Request::Fund(mut f) =
        t.s.fund_request(
            rid(),
            frank::clock::unix_ms(),
            1_000,
            FundMethod::simulator_test_card(),
        )
        .unwrap()
    else {
        unreachable!()
    };
    f.mac[0] ^= 1;
    let e =
        t.s.send::<wire::Funded>(&Request::Fund(f.clone()))
            .await
            .unwrap_err();
    assert_eq!(code(&e), ErrorCode::BadMac);
    // The amount is covered by the MAC.
    f.mac[0] ^= 1;
    f.amount_cents = 9_000;
    let e =
        t.s.send::<wire::Funded>(&Request::Fund(f))
            .await
            .unwrap_err();
    assert_eq!(code(&e), ErrorCode::BadMac);

    // Skewed clock.
    let stale = frank::clock::unix_ms() - t.s.request_clock_skew_ms_max - 5_000;
    let r =
        t.s.authorize_request(rid(), stale, 100, coupon(100), ORIGIN)
            .unwrap();
    let e = t.s.send::<wire::Authorized>(&r).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::ClockSkew);
    assert_eq!(refused(&e).limit, Some(t.s.request_clock_skew_ms_max));
    assert_eq!(t.s.balance().await.unwrap(), before);

    // The vendor sees the link lapse (the counter stops sending keepalives).
    t.link.set_muted(true);
    let view = v.server.terminal_link(t.c.terminal_id).unwrap();
    let mut theirs = view.link.state.clone();
    wait_for(&mut theirs, LONG, "vendor sees a lapse", |s| {
        *s != LinkState::Up
    })
    .await;
    let id = rid();
    let e =
        t.s.fund(id, 1_000, FundMethod::simulator_test_card())
            .await
            .unwrap_err();
    assert_eq!(code(&e), ErrorCode::LinkLapsed);
    let e =
        t.s.authorize(rid(), 100, coupon(100), ORIGIN)
            .await
            .unwrap_err();
    assert_eq!(code(&e), ErrorCode::LinkLapsed);
    assert_eq!(t.s.balance().await.unwrap(), before);

    // Back up: the refused request id was never used, so it works now.
    t.link.set_muted(false);
    wait_for(&mut theirs, LONG, "vendor sees up", |s| *s == LinkState::Up).await;
    let ok =
        t.s.fund(id, 1_000, FundMethod::simulator_test_card())
            .await
            .unwrap();
    assert_eq!(ok.registers.control_cents, 2_000);
}

#[tokio::test]
async fn two_terminals_race_for_more_than_the_balance_and_exactly_one_wins() {
    let v = vendor().await;
    let t1 = terminal(&v).await;
    let t2 = terminal(&v).await;
    t1.s.fund(rid(), 1_000, FundMethod::simulator_test_card())
        .await
        .unwrap();
    let (a, b) = tokio::join!(
        t1.s.authorize(rid(), 600, coupon(600), ORIGIN),
        t2.s.authorize(rid(), 600, coupon(600), ORIGIN)
    );
    let results = [a, b];
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1, "{results:?}");
    let loser = results.iter().find_map(|r| r.as_ref().err()).unwrap();
    assert_eq!(code(loser), ErrorCode::InsufficientFunds);
    assert_eq!(refused(loser).amount_cents, Some(400));
    let bal = t2.s.balance().await.unwrap().registers;
    assert_eq!(bal.pending_cents, 600);
    assert_eq!(bal.descending_cents, 400);
}

#[tokio::test]
async fn concurrent_authorizations_never_repeat_a_piece_serial() {
    let v = vendor().await;
    let t1 = terminal(&v).await;
    let t2 = terminal(&v).await;
    t1.s.fund(rid(), 10_000, FundMethod::simulator_test_card())
        .await
        .unwrap();
    let per_terminal = 12;
    let run = |s: Session| async move {
        let mut tasks = Vec::new();
        for _ in 0..per_terminal {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                s.authorize(rid(), 100, coupon(100), ORIGIN).await.unwrap()
            }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    };
    let (a, b) = tokio::join!(run(t1.s.clone()), run(t2.s.clone()));
    let serials: BTreeSet<u64> = a.iter().chain(b.iter()).map(|x| x.piece_serial).collect();
    assert_eq!(serials.len(), 2 * per_terminal);
    assert_eq!(
        serials,
        (1..=2 * per_terminal as u64).collect::<BTreeSet<_>>()
    );
    let mut keys = VendorKeys::new();
    keys.add(v.key.as_bytes()).unwrap();
    for x in a.iter().chain(b.iter()) {
        let ind = verify_payload(&x.indicium, &keys).unwrap();
        assert_eq!(ind.indicium.body.piece_serial.get(), x.piece_serial);
    }
    let bal = t1.s.balance().await.unwrap().registers;
    assert_eq!(bal.pending_cents, 2_400);
}

#[tokio::test]
async fn bad_fields_are_named_and_payment_problems_are_typed() {
    let v = vendor().await;
    let t = terminal(&v).await;
    let e =
        t.s.fund(
            rid(),
            1_000,
            FundMethod::Card {
                number: "4242424242424241".into(),
                exp_month: 12,
                exp_year: 2040,
                cvc: "123".into(),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::PaymentInvalid);
    assert!(!e.to_string().contains("4242424242424241"), "{e}");
    let declined = FundMethod::Card {
        number: "4000000000000002".into(),
        exp_month: 12,
        exp_year: 2040,
        cvc: "123".into(),
    };
    let e = t.s.fund(rid(), 1_000, declined).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::PaymentDeclined);
    let e =
        t.s.fund(rid(), 100, FundMethod::simulator_test_card())
            .await
            .unwrap_err();
    assert_eq!(code(&e), ErrorCode::TopUpOutOfRange);
    let e =
        t.s.authorize(rid(), 100, coupon(100), ORIGIN)
            .await
            .unwrap_err();
    assert_eq!(code(&e), ErrorCode::InsufficientFunds);
    assert_eq!(refused(&e).amount_cents, Some(0));
    // A bad ZIP is refused by the codec, naming the field.
    let r =
        t.s.authorize_request(rid(), frank::clock::unix_ms(), 100, coupon(100), "1234")
            .unwrap();
    let e = t.s.send::<wire::Authorized>(&r).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::Malformed);
    assert!(refused(&e).message.contains("origin_zip"), "{e}");
}

#[tokio::test]
async fn loadgen_drives_pairs_and_the_registers_add_up() {
    let v = vendor().await;
    let cfg = frank::counter::loadgen::LoadgenConfig {
        vendors: vec![v.addr],
        pinned: v.key,
        code: v.code.clone(),
        clerk: CLERK.into(),
        password: PASSWORD.into(),
        terminals: 2,
        duration_s: 1,
        void_every: 5,
        acks: None,
    };
    let r = frank::counter::loadgen::run(cfg).await.unwrap();
    assert!(r.pairs > 0, "{r:?}");
    assert_eq!(r.errors, 0, "{r:?}");
    assert!(r.pair_p50_ms <= r.pair_p99_ms);
    let ledger = v.server.ledger();
    let account = frank::vendor_server::money::ledger_account_of(&ledger, v.account_id)
        .await
        .unwrap();
    let a = ledger.account(account).await.unwrap();
    assert_eq!(a.registers.ascending.get(), 100 * r.pairs);
    assert_eq!(a.registers.pending.get(), 0);
    assert_eq!(a.registers.control.get(), 1_000_000 * r.funds);
    let audit = ledger.verify_audit().await.unwrap().unwrap();
    assert_eq!(audit.control_total.get(), 1_000_000 * r.funds);
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn the_vendor_runs_its_ledger_on_postgres_too() {
    let url = pg::database().await;
    let v = vendor_with(frank::vendor_server::server::VendorOptions {
        database: Some(url),
        ..Default::default()
    })
    .await;
    let t1 = terminal(&v).await;
    let t2 = terminal(&v).await;
    let fund =
        t1.s.fund_request(
            rid(),
            frank::clock::unix_ms(),
            1_000,
            FundMethod::simulator_test_card(),
        )
        .unwrap();
    let f1: wire::Funded = t1.s.send(&fund).await.unwrap();
    let f2: wire::Funded = t1.s.send(&fund).await.unwrap();
    assert_eq!(f1, f2);
    let (a, b) = tokio::join!(
        t1.s.authorize(rid(), 600, coupon(600), ORIGIN),
        t2.s.authorize(rid(), 600, coupon(600), ORIGIN)
    );
    let results = [a, b];
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    let won = results.iter().find_map(|r| r.as_ref().ok()).unwrap();
    let mut keys = VendorKeys::new();
    keys.add(v.key.as_bytes()).unwrap();
    verify_payload(&won.indicium, &keys).unwrap();
    let done = t2.s.commit(rid(), won.piece_serial).await.unwrap();
    assert_eq!(
        done.registers,
        wire::WireRegisters {
            descending_cents: 400,
            pending_cents: 0,
            ascending_cents: 600,
            control_cents: 1_000,
        }
    );
}

#[tokio::test]
async fn pieces_lists_the_accounts_history_newest_first_with_states_and_summaries() {
    let v = vendor().await;
    // Not before login.
    let c = enrolled_counter(&v, v.addr).await;
    let e = c
        .conn
        .request::<wire::PieceList>(&Request::Pieces(wire::PiecesRequest {
            limit: 10,
            before_serial: None,
        }))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::NotLoggedIn);

    let t = terminal(&v).await;
    assert_eq!(t.s.pieces(10, None).await.unwrap().pieces, vec![]);
    t.s.fund(rid(), 10_000, FundMethod::simulator_test_card())
        .await
        .unwrap();
    let postage3 = PostageItem {
        class: "first-class".into(),
        weight_oz: 3,
        zip: "20500".into(),
    };
    let q = t.s.quote(postage3.clone(), ORIGIN).await.unwrap();
    let p1 =
        t.s.authorize(rid(), q.amount_cents, WireItem::Postage(postage3), ORIGIN)
            .await
            .unwrap();
    t.s.commit(rid(), p1.piece_serial).await.unwrap();
    let ticket = WireItem::Ticket(wire::TicketItem {
        event: "Opera".into(),
        venue: "Met".into(),
        seat: "12A".into(),
        event_day: "2040-05-01".into(),
        price_cents: 4_500,
    });
    let p2 = t.s.authorize(rid(), 4_500, ticket, ORIGIN).await.unwrap();
    t.s.void(rid(), p2.piece_serial, false).await.unwrap();
    let p3 =
        t.s.authorize(rid(), 250, coupon(250), ORIGIN)
            .await
            .unwrap();
    t.s.commit(rid(), p3.piece_serial).await.unwrap();
    t.s.request_refund(rid(), p3.piece_serial).await.unwrap();
    let check = WireItem::Check(wire::CheckItem {
        payee: "Acme".into(),
        amount_cents: 999,
        number: 7,
        memo: None,
    });
    let p4 = t.s.authorize(rid(), 999, check, ORIGIN).await.unwrap();

    let all = t.s.pieces(10, None).await.unwrap().pieces;
    let got: Vec<(u64, &str, Option<&str>, &str)> = all
        .iter()
        .map(|p| {
            (
                p.piece_serial,
                p.item_state.as_str(),
                p.refund_state.as_deref(),
                p.summary.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            (p4.piece_serial, "reserved", None, "Check #7 to Acme"),
            (
                p3.piece_serial,
                "refund_requested",
                Some("requested"),
                "Coupon: 10% off"
            ),
            (p2.piece_serial, "voided", None, "Ticket: Opera, seat 12A"),
            (p1.piece_serial, "printed", None, "First-Class 3 oz → 20500"),
        ]
    );
    assert_eq!(all[3].amount_cents, q.amount_cents);
    assert!(all[3].printed_at_ms.is_some());
    // Each entry is what `piece` answers for that serial.
    for p in &all {
        assert_eq!(&t.s.piece(p.piece_serial).await.unwrap(), p);
    }

    // Pages: two, then the rest below the last serial seen.
    let page1 = t.s.pieces(2, None).await.unwrap().pieces;
    assert_eq!(page1, all[..2].to_vec());
    let page2 =
        t.s.pieces(2, Some(page1[1].piece_serial))
            .await
            .unwrap()
            .pieces;
    assert_eq!(page2, all[2..].to_vec());
    assert_eq!(
        t.s.pieces(2, Some(p1.piece_serial)).await.unwrap().pieces,
        vec![]
    );

    // A limit over PIECES_LIST_MAX (or zero) is refused, naming the field and the limit.
    for limit in [0, wire::PIECES_LIST_MAX + 1] {
        let e = t.s.pieces(limit, None).await.unwrap_err();
        assert_eq!(code(&e), ErrorCode::Malformed);
        assert!(refused(&e).message.contains("pieces.limit"), "{e}");
        assert_eq!(refused(&e).limit, Some(u64::from(wire::PIECES_LIST_MAX)));
    }
    let most = t.s.pieces(wire::PIECES_LIST_MAX, None).await.unwrap();
    assert_eq!(most.pieces.len(), 4);
}

/// The piece's item state as the vendor lists it, polled until `want` (the reaper runs on its
/// own, every `reaper_interval_ms`).
async fn wait_state(s: &Session, serial: u64, want: &str) {
    let deadline = std::time::Instant::now() + LONG;
    loop {
        let p = s.piece(serial).await.unwrap();
        if p.item_state == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "piece {serial} stayed {} (want {want})",
            p.item_state
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Issue 12 over QUIC, with a 1.5 s reservation and a 50 ms reaper: authorizations nobody
/// settles are committed as printed and marked `unsettled` (charged, nothing given back); the
/// honest counter's commit after the expiry answers `printed` and `scan` does not call the
/// piece fraud; a late void from the authorizing terminal answers `voided` and credits it
/// back, from another terminal `wrong_terminal`, after the window `void_window_closed`.
#[tokio::test]
async fn a_commit_after_expiry_settles_the_piece_and_scan_is_not_fraud_issue_12() {
    let mut ledger = frank::ledger::LedgerConfig {
        reaper_interval_ms: 50,
        ..Default::default()
    };
    ledger.limits.authorization_expiry_ms = 1_500;
    ledger.limits.late_void_window_ms = 2_000;
    let v = vendor_with(frank::vendor_server::server::VendorOptions {
        ledger,
        ..Default::default()
    })
    .await;
    let t = terminal(&v).await;
    let other = terminal(&v).await;
    t.s.fund(rid(), 5_000, FundMethod::simulator_test_card())
        .await
        .unwrap();
    let mut issued = Vec::new();
    for cents in [600, 300, 200, 100] {
        issued.push(
            t.s.authorize(rid(), cents, coupon(cents), ORIGIN)
                .await
                .unwrap(),
        );
    }
    let [a, b, c, d] = &issued[..] else {
        unreachable!()
    };
    for p in &issued {
        wait_state(&t.s, p.piece_serial, "unsettled").await;
    }
    let regs = t.s.balance().await.unwrap().registers;
    assert_eq!(
        regs,
        wire::WireRegisters {
            descending_cents: 3_800,
            pending_cents: 0,
            ascending_cents: 1_200,
            control_cents: 5_000,
        },
        "expiry charged them and gave nothing back"
    );
    let listed = t.s.pieces(10, None).await.unwrap();
    assert!(
        listed.pieces.iter().all(|p| p.item_state == "unsettled"),
        "{listed:?}"
    );

    // The honest counter is back: its commit settles the piece, and replays answer the same.
    let commit =
        t.s.commit_request(rid(), frank::clock::unix_ms(), a.piece_serial)
            .unwrap();
    let done: wire::PieceDone = t.s.send(&commit).await.unwrap();
    assert_eq!(done.result, "printed");
    assert_eq!(done.registers, regs, "no money moves");
    let again: wire::PieceDone = t.s.send(&commit).await.unwrap();
    assert_eq!(again, done);
    assert_eq!(
        t.s.piece(a.piece_serial).await.unwrap().item_state,
        "printed"
    );

    // A postal verifier's scan: neither the settled nor an unsettled piece is fraud.
    let conn = frank::counter::client::connect(&endpoint(), v.addr, v.key)
        .await
        .unwrap();
    let scanned = conn.scan(&a.indicium).await.unwrap();
    assert_eq!((scanned.state.as_str(), scanned.fraud), ("printed", false));
    let scanned = conn.scan(&c.indicium).await.unwrap();
    assert_eq!(
        (scanned.state.as_str(), scanned.fraud),
        ("unsettled", false)
    );

    // A late void: only from the terminal that authorized it.
    let e = other
        .s
        .void(rid(), b.piece_serial, false)
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::WrongTerminal);
    let done = t.s.void(rid(), b.piece_serial, false).await.unwrap();
    assert_eq!(done.result, "voided");
    assert_eq!(done.registers.descending_cents, 4_100);
    assert_eq!(done.registers.control_cents, 5_300);
    assert_eq!(done.registers.ascending_cents, 1_200);
    assert_eq!(
        t.s.piece(b.piece_serial).await.unwrap().item_state,
        "voided"
    );

    // After the window: refused, nothing changes.
    let closes = d.expires_at_ms + 2_000;
    while frank::clock::unix_ms() <= closes + 50 {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let e = t.s.void(rid(), d.piece_serial, false).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::VoidWindowClosed);
    assert_eq!(t.s.balance().await.unwrap().registers, done.registers);
    assert_eq!(
        t.s.piece(d.piece_serial).await.unwrap().item_state,
        "unsettled"
    );
    let audit = v.server.ledger().verify_audit().await.unwrap();
    assert!(audit.is_ok(), "{audit:?}");
}
