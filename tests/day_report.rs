//! Issue 15, the vendor side of a basket, the end of day and the supervisor's refunds, against
//! a real `frank vendor serve` process over real QUIC on loopback:
//! - the `tender`, `day_report`, `refunds_awaiting` and `refund_decide` requests, with hostile
//!   input (unknown piece, another meter's piece, a piece already paid in another basket, the
//!   same basket with another body, change on a card, a clerk who is not a supervisor): each
//!   refused with its typed code and nothing changed;
//! - a supervisor's refund decision over the wire shows in the clerk's balance and the report;
//! - the day's report from the wire equals `frank vendor report --day … --json` (and its text
//!   form says the same), per clerk and per terminal;
//! - the counter's backend (`Command`s in, `Backend` events out) records a basket's tender,
//!   loads the day and refuses a plain clerk the supervisor's list, and after a restart its
//!   history comes from the vendor with the items' printed numbers.
//!
//! Long on purpose: one scenario per test; shared steps live in `tests/support`.

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod pg;
mod support;

use frank::counter::backend;
use frank::counter::client::Session;
use frank::indicium::ItemKind;
use frank::indicium::kinds::Day;
use frank::indicium::layout::PieceNumber;
use frank::ledger::report::{BASKET_PIECES_MAX, DayReport, ReportScope, Totals};
use frank::link::driver::LinkHandle;
use frank::money::Cents;
use frank::ui::event::{self, Backend, BasketId, Command, DayScope, JobId, TenderKind};
use frank::wire::{self, ErrorCode, Request};
use std::time::Duration;
use support::backend::*;
use support::*;

const LONG: Duration = Duration::from_secs(15);
const BOSS: &str = "boss";
const BOSS_PASSWORD: &str = "supervisor password 1";
const ORIGIN: &str = "10001";

use support::refusal_code as code;

fn rid() -> [u8; 16] {
    rand::random()
}

fn coupon(cents: u64) -> wire::WireItem {
    wire::WireItem::Coupon(wire::ValueItem {
        text: "10% off".into(),
        value_cents: cents,
        expiry: "2040-01-31".into(),
    })
}

async fn vendor_with_boss() -> ChildVendor {
    child_vendor("Report Post Office", |d, account| {
        d.add_clerk(account, BOSS, BOSS_PASSWORD, true, 1).unwrap();
    })
    .await
}

async fn signed_in(
    v: &ChildVendor,
    name: &str,
    clerk: &str,
    password: &str,
) -> (Session, LinkHandle) {
    session_on(v.addr, v.key, &v.code, name, clerk, password).await
}

async fn authorize(s: &Session, cents: u64) -> wire::Authorized {
    s.authorize(rid(), cents, coupon(cents), ORIGIN)
        .await
        .unwrap()
}

/// Sends a supervisor's `refund_decide`, again (same request id) while the vendor's view of
/// the new terminal's link is not up yet; at most 50 tries 100 ms apart.
async fn decide_once_up(boss: &Session, decide: &Request) -> wire::RefundDecided {
    for _ in 0..50 {
        match boss.send::<wire::RefundDecided>(decide).await {
            Ok(d) => return d,
            Err(e) if code(&e) == ErrorCode::LinkLapsed => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("the vendor never saw the supervisor's link up")
}

/// `frank vendor report --data DIR ARGS…`: (success, stdout, stderr).
fn report_cli(v: &ChildVendor, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(["vendor", "report", "--data"])
        .arg(v.dir.path().join("vendor"))
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_day_over_the_wire_equals_frank_vendor_report_and_hostile_tenders_change_nothing() {
    let v = vendor_with_boss().await;
    let (s, _link) = signed_in(&v, "window-1", CLERK, PASSWORD).await;
    fund_until_ok(&s, 10_000).await;
    let meter = s.balance().await.unwrap().meter;
    let ledger_account = s.balance().await.unwrap().ledger_account;

    // Four items: two printed for the basket, one voided, one printed and refunded later.
    let a1 = authorize(&s, 500).await;
    let a2 = authorize(&s, 230).await;
    let a3 = authorize(&s, 70).await;
    let a4 = authorize(&s, 125).await;
    s.commit(rid(), a1.piece_serial).await.unwrap();
    s.commit(rid(), a2.piece_serial).await.unwrap();
    s.void(rid(), a3.piece_serial, false).await.unwrap();
    s.commit(rid(), a4.piece_serial).await.unwrap();
    assert_eq!(a1.meter, meter);

    // The basket, paid in cash with change: stored once, a retry answers the first.
    let basket = rid();
    let pieces = [a1.piece_serial, a2.piece_serial];
    let cash = |id, kind: &str, tendered, change, serials: &[u64]| {
        s.tender_request(
            id,
            frank::clock::unix_ms(),
            &meter,
            serials,
            kind,
            tendered,
            change,
        )
        .unwrap()
    };
    let done: wire::TenderDone = s
        .send(&cash(basket, "cash", 1_000, 270, &pieces))
        .await
        .unwrap();
    assert_eq!(done.total_cents, 730);
    assert_eq!(done.pieces, pieces.to_vec());
    assert_eq!(done.meter, meter);
    let again: wire::TenderDone = s
        .send(&cash(basket, "cash", 1_000, 270, &pieces))
        .await
        .unwrap();
    assert_eq!(again, done);

    // Hostile tenders: each refused with its code, nothing stored or moved.
    let before = s.balance().await.unwrap().registers;
    let cases: Vec<(Request, ErrorCode)> = vec![
        (cash(rid(), "card", 125, 0, &[999]), ErrorCode::UnknownPiece),
        (
            cash(basket, "cash", 2_000, 1_270, &pieces),
            ErrorCode::IdempotencyConflict,
        ),
        (
            cash(rid(), "card", 500, 0, &[a1.piece_serial]),
            ErrorCode::AlreadyTendered,
        ),
        (
            cash(rid(), "card", 70, 0, &[a3.piece_serial]),
            ErrorCode::InvalidTender,
        ),
        (
            cash(rid(), "card", 200, 75, &[a4.piece_serial]),
            ErrorCode::InvalidTender,
        ),
        (
            cash(rid(), "cash", 100, 0, &[a4.piece_serial]),
            ErrorCode::InvalidTender,
        ),
        (
            s.tender_request(
                rid(),
                frank::clock::unix_ms(),
                "FRK10000099",
                &[a4.piece_serial],
                "card",
                125,
                0,
            )
            .unwrap(),
            ErrorCode::UnknownPiece,
        ),
        (
            cash(
                rid(),
                "cash",
                1_000,
                0,
                &(1..=BASKET_PIECES_MAX as u64 + 1).collect::<Vec<_>>(),
            ),
            ErrorCode::Malformed,
        ),
    ];
    for (r, want) in cases {
        let e = s.send::<wire::TenderDone>(&r).await.unwrap_err();
        assert_eq!(code(&e), want, "{e}");
    }
    // A tender with a MAC over other amounts is refused before the ledger.
    let Request::Tender(mut forged) = cash(rid(), "card", 125, 0, &[a4.piece_serial]) else {
        unreachable!()
    };
    forged.amount_tendered_cents = 126;
    let e = s
        .send::<wire::TenderDone>(&Request::Tender(forged))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::BadMac);
    assert_eq!(s.balance().await.unwrap().registers, before);

    // A refund request; a plain clerk may neither list nor decide it.
    s.request_refund(rid(), a4.piece_serial).await.unwrap();
    let e = s.refunds_awaiting(10).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::Forbidden);
    assert!(e.to_string().contains("Only a supervisor"), "{e}");
    let decide = |s: &Session, approve| {
        s.refund_decide_request(
            rid(),
            frank::clock::unix_ms(),
            &meter,
            a4.piece_serial,
            approve,
        )
        .unwrap()
    };
    let e = s
        .send::<wire::RefundDecided>(&decide(&s, true))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::Forbidden);
    assert_eq!(
        s.piece(a4.piece_serial).await.unwrap().item_state,
        "refund_requested"
    );

    // The supervisor on another terminal lists it (with its number and clerk) and approves.
    let (boss, _boss_link) = signed_in(&v, "back-office", BOSS, BOSS_PASSWORD).await;
    let awaiting = boss.refunds_awaiting(10).await.unwrap();
    assert_eq!(awaiting.pieces.len(), 1);
    let p = &awaiting.pieces[0];
    assert_eq!(p.number(), PieceNumber::new(meter.clone(), a4.piece_serial));
    assert_eq!(p.clerk.as_deref(), Some(CLERK));
    let before = s.balance().await.unwrap().registers.descending_cents;
    let decided = decide_once_up(&boss, &decide(&boss, true)).await;
    assert!(decided.approved);
    assert_eq!(decided.piece.item_state, "refunded");
    assert_eq!(decided.registers.descending_cents, before + 125);
    assert_eq!(
        s.balance().await.unwrap().registers.descending_cents,
        before + 125
    );
    // Decided once: a second decision is refused.
    let e = boss
        .send::<wire::RefundDecided>(&decide(&boss, false))
        .await
        .unwrap_err();
    assert_eq!(code(&e), ErrorCode::RefundAlreadyRequested);

    // The day's report over the wire, per clerk and per terminal.
    let day = wire::day_of_ms(a1.expires_at_ms - 120_000)
        .unwrap()
        .to_string();
    let by_clerk = s.day_report(&day, "clerk").await.unwrap();
    assert_eq!(by_clerk.scope, ReportScope::Clerk(CLERK.into()));
    assert_eq!(
        by_clerk.issued,
        Totals {
            count: 3,
            amount_cents: 855
        }
    );
    assert_eq!(
        by_clerk.voided,
        Totals {
            count: 1,
            amount_cents: 70
        }
    );
    assert_eq!(
        by_clerk.refunds_approved,
        Totals {
            count: 1,
            amount_cents: 125
        }
    );
    assert_eq!(by_clerk.net_charged_cents, 730);
    assert_eq!(by_clerk.cash_expected_cents, 730);
    assert_eq!(by_clerk.received_cents, 730);
    assert_eq!(
        by_clerk.tendered_items,
        Totals {
            count: 2,
            amount_cents: 730
        }
    );
    assert_eq!(by_clerk.lines.len(), 1);
    assert_eq!(by_clerk.lines[0].title, "Coupon");
    let by_terminal = s.day_report(&day, "terminal").await.unwrap();
    assert_eq!(by_terminal.issued, by_clerk.issued);
    // The supervisor issued nothing: their day is empty.
    let account = ledger_account.to_string();
    let boss_day = boss.day_report(&day, "clerk").await.unwrap();
    assert_eq!(boss_day.issued, Totals::default());
    assert_eq!(boss_day.cash_expected_cents, 0);
    // The whole office is the supervisor's to see, not a plain clerk's.
    let office = boss.day_report(&day, "office").await.unwrap();
    assert_eq!(office.scope, ReportScope::Office);
    assert_eq!(office.issued, by_clerk.issued);
    let e = s.day_report(&day, "office").await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::Forbidden);
    let (ok, out, err) = report_cli(&v, &["--day", &day, "--account", &account, "--json"]);
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<DayReport>(out.trim()).unwrap(),
        office
    );

    // The same day from `frank vendor report` equals the wire's, field for field.
    let (ok, out, err) = report_cli(
        &v,
        &[
            "--day",
            &day,
            "--clerk",
            CLERK,
            "--account",
            &account,
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let cli: DayReport = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(cli, by_clerk);
    let ReportScope::Terminal(terminal) = by_terminal.scope.clone() else {
        panic!("{:?}", by_terminal.scope)
    };
    let (ok, out, err) = report_cli(
        &v,
        &[
            "--day",
            &day,
            "--terminal",
            &terminal.to_string(),
            "--account",
            &account,
            "--json",
        ],
    );
    assert!(ok, "{err}");
    assert_eq!(
        serde_json::from_str::<DayReport>(out.trim()).unwrap(),
        by_terminal
    );
    let (ok, out, err) = report_cli(&v, &["--day", &day, "--clerk", CLERK]);
    assert!(ok, "{err}");
    for want in [
        "Cash expected in drawer",
        "$7.30",
        "Refunds approved",
        "Coupon",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    let (ok, _, err) = report_cli(&v, &["--day", "2026-13-01"]);
    assert!(
        !ok && err.contains("--day") && err.contains("month 13"),
        "{err}"
    );
}

/// The next answer to a printout command: what printed, and whether it did.
async fn printout_done(
    rx: &mut tokio::sync::mpsc::Receiver<Backend>,
) -> (event::PrintoutKind, Result<(), String>) {
    match next_event(rx, "PrintoutDone", |e| {
        matches!(e, Backend::PrintoutDone { .. })
    })
    .await
    {
        Backend::PrintoutDone { kind, result } => (kind, result),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_backend_numbers_items_records_a_basket_and_loads_the_day() {
    let v = vendor_with_boss().await;
    let (s, _link) = signed_in(&v, "window-2", CLERK, PASSWORD).await;
    fund_until_ok(&s, 5_000).await;
    let home = tempfile::tempdir().unwrap();
    let (ctx, mut erx, task) = signed_in_backend(backend_config(&v, home.path(), ORIGIN)).await;

    // An item the backend authorizes is numbered as its label prints it.
    let job = JobId(1);
    authorize_coupon(&ctx, job, 150).await;
    let Backend::Numbered { number, .. } = next_event(
        &mut erx,
        "Numbered",
        |e| matches!(e, Backend::Numbered { job: j, .. } if *j == job),
    )
    .await
    else {
        unreachable!()
    };
    let meter = s.balance().await.unwrap().meter;
    assert_eq!(number, PieceNumber::new(meter.clone(), 1));
    ctx.send(Command::Void { job }).await.unwrap();

    // Two items printed elsewhere on the account, paid as one basket by card.
    let p1 = authorize(&s, 300).await.piece_serial;
    let p2 = authorize(&s, 200).await.piece_serial;
    s.commit(rid(), p1).await.unwrap();
    s.commit(rid(), p2).await.unwrap();
    let numbers = vec![
        PieceNumber::new(meter.clone(), p1),
        PieceNumber::new(meter.clone(), p2),
    ];
    let tender = event::Tender {
        kind: TenderKind::Card,
        amount_tendered: Cents::new(500).unwrap(),
        change: Cents::ZERO,
    };
    ctx.send(Command::RecordTender {
        basket: BasketId(1),
        pieces: numbers.clone(),
        tender,
    })
    .await
    .unwrap();
    let e = next_event(&mut erx, "TenderRecorded", |e| {
        matches!(
            e,
            Backend::TenderRecorded { .. } | Backend::TenderFailed { .. }
        )
    })
    .await;
    let Backend::TenderRecorded {
        basket,
        pieces,
        total,
        ..
    } = e
    else {
        panic!("{e:?}")
    };
    assert_eq!(
        (basket, pieces, total),
        (BasketId(1), numbers.clone(), Cents::new(500).unwrap())
    );
    // The voided item cannot be paid for: the words say so, with its number.
    ctx.send(Command::RecordTender {
        basket: BasketId(2),
        pieces: vec![number.clone()],
        tender: event::Tender {
            kind: TenderKind::Cash,
            amount_tendered: Cents::new(150).unwrap(),
            change: Cents::ZERO,
        },
    })
    .await
    .unwrap();
    let e = next_event(&mut erx, "TenderFailed", |e| {
        matches!(e, Backend::TenderFailed { .. })
    })
    .await;
    let Backend::TenderFailed { basket, reason } = e else {
        unreachable!()
    };
    assert_eq!(basket, BasketId(2));
    assert!(
        reason.contains("voided") && reason.contains(&number.to_string()),
        "{reason}"
    );

    // The day per terminal: this terminal voided one item and recorded the card payment.
    let today = Day::parse(
        "day",
        &wire::day_of_ms(frank::clock::unix_ms())
            .unwrap()
            .to_string(),
    )
    .unwrap();
    ctx.send(Command::LoadDayReport {
        day: today,
        scope: DayScope::Terminal,
    })
    .await
    .unwrap();
    let e = next_event(&mut erx, "DayReport", |e| {
        matches!(e, Backend::DayReport(_) | Backend::DayReportFailed { .. })
    })
    .await;
    let Backend::DayReport(r) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        r.voided,
        Totals {
            count: 1,
            amount_cents: 150
        }
    );
    assert_eq!(r.received_cents, 500);
    assert_eq!(r.cash_expected_cents, 0);

    // A plain clerk is told in words that the refund list is a supervisor's.
    ctx.send(Command::LoadRefundsAwaiting).await.unwrap();
    let e = next_event(&mut erx, "RefundsAwaitingFailed", |e| {
        matches!(
            e,
            Backend::RefundsAwaiting(_) | Backend::RefundsAwaitingFailed { .. }
        )
    })
    .await;
    let Backend::RefundsAwaitingFailed { reason } = e else {
        panic!("{e:?}")
    };
    assert!(reason.starts_with("Only a supervisor"), "{reason}");

    // After a restart the history comes from the vendor, newest first, with the numbers.
    ctx.send(Command::Quit).await.unwrap();
    tokio::time::timeout(LONG, task).await.unwrap().unwrap();
    let (ctx, mut erx, _task) = signed_in_backend(backend_config(&v, home.path(), ORIGIN)).await;
    ctx.send(Command::LoadHistory).await.unwrap();
    let e = next_event(&mut erx, "Items", |e| matches!(e, Backend::Items(_))).await;
    let Backend::Items(items) = e else {
        unreachable!()
    };
    let shown: Vec<String> = items.iter().map(|i| i.number.to_string()).collect();
    assert_eq!(
        shown,
        vec![
            format!("{meter} #3"),
            format!("{meter} #2"),
            format!("{meter} #1"),
        ]
    );
    assert!(
        items
            .iter()
            .all(|i| i.job.is_none() && i.kind == ItemKind::Coupon)
    );
    assert!(items[2].number.matches(&format!("{meter} #1")));
    let _ = ctx.send(Command::Quit).await;
}

/// The same requests on a vendor whose ledger and directory are PostgreSQL: a basket stored
/// once, a supervisor's decision, the clerk's day — and the report from the database equals
/// the wire's.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tender_decision_and_day_on_a_postgres_vendor() {
    let url = pg::database().await;
    let v = vendor_setup(
        frank::vendor_server::server::VendorOptions {
            database: Some(url.clone()),
            ..Default::default()
        },
        |_, d, account| {
            d.add_clerk(account, BOSS, BOSS_PASSWORD, true, 1).unwrap();
        },
    )
    .await;
    let (s, _link) = session_on(v.addr, v.key, &v.code, "pg-window", CLERK, PASSWORD).await;
    fund_until_ok(&s, 2_000).await;
    let meter = s.balance().await.unwrap().meter;
    let a1 = authorize(&s, 400).await;
    let a2 = authorize(&s, 100).await;
    s.commit(rid(), a1.piece_serial).await.unwrap();
    s.commit(rid(), a2.piece_serial).await.unwrap();
    let basket = rid();
    let now = frank::clock::unix_ms();
    let r = s
        .tender_request(basket, now, &meter, &[a1.piece_serial], "cash", 500, 100)
        .unwrap();
    let done: wire::TenderDone = s.send(&r).await.unwrap();
    assert_eq!(done.total_cents, 400);
    assert_eq!(s.send::<wire::TenderDone>(&r).await.unwrap(), done);
    let other = s
        .tender_request(
            rid(),
            now,
            &meter,
            &[a1.piece_serial, a2.piece_serial],
            "card",
            500,
            0,
        )
        .unwrap();
    let e = s.send::<wire::TenderDone>(&other).await.unwrap_err();
    assert_eq!(code(&e), ErrorCode::AlreadyTendered);
    s.request_refund(rid(), a2.piece_serial).await.unwrap();
    let (boss, _boss_link) =
        session_on(v.addr, v.key, &v.code, "pg-office", BOSS, BOSS_PASSWORD).await;
    let listed = boss.refunds_awaiting(10).await.unwrap();
    assert_eq!(listed.pieces.len(), 1);
    let decide = boss
        .refund_decide_request(rid(), now, &meter, a2.piece_serial, false)
        .unwrap();
    let decided = decide_once_up(&boss, &decide).await;
    assert_eq!(decided.piece.item_state, "refund_rejected");
    let day = wire::day_of_ms(a1.expires_at_ms - 120_000)
        .unwrap()
        .to_string();
    let report = s.day_report(&day, "clerk").await.unwrap();
    assert_eq!(
        report.issued,
        Totals {
            count: 2,
            amount_cents: 500
        }
    );
    assert_eq!(
        report.refunds_rejected,
        Totals {
            count: 1,
            amount_cents: 100
        }
    );
    assert_eq!(report.cash_expected_cents, 400);
    assert_eq!(
        report.untendered_items,
        Totals {
            count: 1,
            amount_cents: 100
        }
    );
    let account = s.balance().await.unwrap().ledger_account.to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args([
            "vendor",
            "report",
            "--database",
            &url,
            "--day",
            &day,
            "--clerk",
            CLERK,
        ])
        .args(["--account", &account, "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli: DayReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli, report);
}

/// Issue 15's printouts through the counter's backend on a second, 58 mm receipt printer (the
/// virtual printer on a pty): the office's name comes from the vendor at sign-in; a receipt
/// prints as a text-only job (no symbol), fitted to 32 columns; a copy is reprinted by any of
/// its items' numbers after a restart, headed COPY; a number with no kept receipt is refused in
/// words; the close-out prints the day's figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_backend_prints_receipts_and_the_close_out_on_a_receipt_printer() {
    use frank::ui::event::PrintoutKind;
    let v = vendor_with_boss().await;
    // A 58 mm receipt printer (32 columns) with a cutter and real-time status.
    let profile = frank::printer::profile::Profile::from_toml(
        "receipt-58mm",
        "inherits = \"generic-58mm\"\nname = \"58 mm receipt printer\"\n\
         [features]\npaperPartCut = true\n[status]\ndle_eot = true\n\
         [cut]\ncommand = \"feed_partial\"\nfeed_lines = 4\n",
    )
    .unwrap();
    let printer = virtual_printer(&profile, None);
    let home = tempfile::tempdir().unwrap();
    let start = |home: std::path::PathBuf| {
        let mut cfg = backend_config(&v, &home, ORIGIN);
        cfg.receipt_printer = Some(backend::PrinterSetup {
            device: printer.device_path().to_path_buf(),
            profile: profile.clone(),
        });
        let (ctx, crx) = tokio::sync::mpsc::channel(event::COMMANDS_QUEUE_MAX);
        let (etx, erx) = tokio::sync::mpsc::channel(event::EVENTS_QUEUE_MAX);
        let task = backend::spawn(cfg, crx, etx);
        (ctx, erx, task)
    };
    let (ctx, mut erx, task) = start(home.path().to_path_buf());
    ctx.send(Command::SignIn {
        clerk: CLERK.into(),
        password: event::Secret::new(PASSWORD),
    })
    .await
    .unwrap();
    let e = next_event(&mut erx, "SignedIn", |e| {
        matches!(e, Backend::SignedIn { .. })
    })
    .await;
    let Backend::SignedIn { office, .. } = e else {
        unreachable!()
    };
    assert_eq!(
        office, "Report Post Office",
        "the vendor's name for the office"
    );

    let n = |s: u64| PieceNumber::new("FRK10000001", s);
    let lines: Vec<String> = vec![
        office.clone(),
        "Clerk alice, 2026-12-05 10:00 UTC".into(),
        format!("{:<30}{:>10}", "FRK10000001 #7  Postage label", "$5.40"),
        format!("{:<30}{:>10}", "Paid by cash", "$10.00"),
        format!("{:<30}{:>10}", "Change", "$4.60"),
    ];
    ctx.send(Command::PrintReceipt {
        basket: BasketId(1),
        pieces: vec![n(7), n(8)],
        lines: lines.clone(),
    })
    .await
    .unwrap();
    assert_eq!(
        printout_done(&mut erx).await,
        (PrintoutKind::Receipt, Ok(()))
    );
    let wait_jobs = |count: usize| {
        let deadline = std::time::Instant::now() + LONG;
        loop {
            let jobs = printer.jobs();
            if jobs.len() >= count || std::time::Instant::now() > deadline {
                return jobs;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let jobs = wait_jobs(1);
    assert_eq!(jobs.len(), 1);
    let job = &jobs[0];
    assert!(
        job.data_matrix.is_empty() && job.raster_bands == 0,
        "no value on a receipt"
    );
    assert!(
        job.text.iter().all(|l| l.chars().count() <= 32),
        "{:?}",
        job.text
    );
    assert_eq!(job.text[0].trim(), "Report Post Office");
    let item = job
        .text
        .iter()
        .position(|l| l.starts_with("FRK10000001 #7"))
        .expect("the item's number printed");
    // Too wide for 32 columns: the amount goes below it, right-aligned at the edge.
    assert_eq!(
        job.text[item + 1],
        format!("{:>32}", "$5.40"),
        "{:?}",
        job.text
    );
    assert!(
        job.text
            .iter()
            .any(|l| l.starts_with("Change") && l.ends_with("$4.60")),
        "a short line keeps its amount, narrowed: {:?}",
        job.text
    );

    // After a restart the receipt is reprinted by its second item's number, headed COPY.
    ctx.send(Command::Quit).await.unwrap();
    tokio::time::timeout(LONG, task).await.unwrap().unwrap();
    let (ctx, mut erx, _task) = start(home.path().to_path_buf());
    ctx.send(Command::ReprintReceipt { number: n(8) })
        .await
        .unwrap();
    assert_eq!(
        printout_done(&mut erx).await,
        (PrintoutKind::ReceiptCopy, Ok(()))
    );
    let jobs = wait_jobs(2);
    assert_eq!(jobs[1].text[0].trim(), frank::counter::printouts::COPY_LINE);
    assert_eq!(jobs[1].text[1..], jobs[0].text[..]);
    ctx.send(Command::ReprintReceipt { number: n(99) })
        .await
        .unwrap();
    let (_, result) = printout_done(&mut erx).await;
    let Err(why) = result else {
        panic!("a copy of an unknown receipt printed")
    };
    assert!(
        why.contains("keeps no receipt with FRK10000001 #99"),
        "{why}"
    );

    // The close-out prints (no sign-in needed: it is the report shown on screen).
    let report_lines = vec![
        "End of day 2026-12-05 (UTC), clerk alice".to_string(),
        format!("  {:<36}{:>12}", "Cash expected in drawer", "$10.80"),
    ];
    ctx.send(Command::PrintDayReport {
        lines: report_lines,
    })
    .await
    .unwrap();
    assert_eq!(
        printout_done(&mut erx).await,
        (PrintoutKind::DayReport, Ok(()))
    );
    let jobs = wait_jobs(3);
    let day = jobs[2].text.join("\n");
    assert!(
        day.contains("Cash expected in drawer") && day.contains("$10.80"),
        "{day}"
    );
    assert!(
        jobs.iter()
            .all(|j| j.text.iter().all(|l| l.chars().count() <= 32))
    );
    let _ = ctx.send(Command::Quit).await;
}
