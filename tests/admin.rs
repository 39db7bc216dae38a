//! The admin monitor over real QUIC on loopback: a supervisor subscribes to the account's
//! terminals and the vendor pushes rows — printer reports, money, a cut link — without any
//! polling request; non-supervisors are refused with a typed error; subscriptions are
//! bounded; `frank admin --once` prints the snapshot; the screen is snapshot-tested.

mod support;

use frank::admin::state::Monitor;
use frank::admin::view;
use frank::counter::client::{ClientError, MonitorStream, Session};
use frank::counter::terminal::TerminalDir;
use frank::faultproxy::FaultProxy;
use frank::link::driver::LinkHandle;
use frank::link::guard::LinkState;
use frank::ui::theme::{Role, Theme};
use frank::vendor_server::server::VendorOptions;
use frank::vendor_server::{CONFIG_FILE, VendorConfig};
use frank::wire::{
    self, ErrorCode, FundMethod, MonitorFrame, PrinterReport, PrinterState, Request, TerminalRow,
    WireItem,
};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;

const LONG: Duration = Duration::from_secs(10);
const BOSS: &str = "boss";
const BOSS_PASSWORD: &str = "supervisor password 1";

/// A vendor on 127.0.0.1 with `config`, one account, clerk `alice` and supervisor `boss`.
async fn vendor_with_supervisor(config: Option<VendorConfig>) -> Vendor {
    vendor_setup(VendorOptions::default(), |data, d, account| {
        if let Some(c) = config {
            std::fs::write(data.file(CONFIG_FILE), toml::to_string(&c).unwrap()).unwrap();
        }
        d.add_clerk(account, BOSS, BOSS_PASSWORD, true, 1).unwrap();
    })
    .await
}

struct Term {
    c: Counter,
    s: Session,
    _link: LinkHandle,
}

/// Enrolls a terminal named `name` through `addr`, signs `clerk` in and brings its link up
/// (as the vendor sees it).
async fn term(v: &Vendor, addr: SocketAddr, name: &str, clerk: &str, password: &str) -> Term {
    let endpoint = endpoint();
    let conn = frank::counter::client::connect(&endpoint, addr, v.key)
        .await
        .unwrap();
    let device_key = frank::identity::new_signing_key().unwrap();
    let e = conn
        .enroll(&v.code, name, &device_key, &v.key)
        .await
        .unwrap();
    let s = conn
        .login(e.terminal_id, &device_key, clerk, password)
        .await
        .unwrap();
    let link = s.start_link().unwrap();
    let view = v.server.terminal_link(e.terminal_id).unwrap();
    let mut theirs = view.link.state.clone();
    wait_for(&mut theirs, LONG, "vendor sees the link up", |s| {
        *s == LinkState::Up
    })
    .await;
    Term {
        c: Counter {
            endpoint,
            device_key,
            terminal_id: e.terminal_id,
            conn,
        },
        s,
        _link: link,
    }
}

/// Reads pushed frames (never sending a request) until one carries a row for `terminal`
/// that satisfies `pred`; returns that row.
async fn until_row(
    stream: &mut MonitorStream,
    terminal: u64,
    what: &str,
    pred: impl Fn(&TerminalRow) -> bool,
) -> TerminalRow {
    let found = tokio::time::timeout(LONG, async {
        loop {
            let f = stream
                .next()
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("stream ended waiting for {what}"));
            assert_eq!(f.kind, "update", "only the first frame is a snapshot");
            if let Some(r) = f.rows.iter().find(|r| r.terminal_id == terminal && pred(r)) {
                return r.clone();
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no pushed frame showed {what} within {LONG:?}"))
}

fn row_of(f: &MonitorFrame, terminal: u64) -> &TerminalRow {
    f.rows
        .iter()
        .find(|r| r.terminal_id == terminal)
        .unwrap_or_else(|| panic!("terminal {terminal} not in {f:?}"))
}

fn coupon(cents: u64) -> WireItem {
    WireItem::Coupon(wire::ValueItem {
        text: "10% off".into(),
        value_cents: cents,
        expiry: "2040-01-31".into(),
    })
}

#[tokio::test]
async fn a_supervisor_gets_a_snapshot_then_pushed_printer_money_and_link_changes() {
    let v = vendor_with_supervisor(None).await;
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), v.addr)
        .await
        .unwrap();
    let t1 = term(&v, v.addr, "counter-1", CLERK, PASSWORD).await;
    let t2 = term(&v, proxy.local_addr(), "counter-2", CLERK, PASSWORD).await;
    let desk = term(&v, v.addr, "desk", BOSS, BOSS_PASSWORD).await;
    t1.s.fund(rand::random(), 10_000, FundMethod::simulator_test_card())
        .await
        .unwrap();

    let (mut stream, snap) = desk.s.subscribe_terminals().await.unwrap();
    assert!(snap.is_snapshot());
    assert_eq!(snap.seq, 0);
    assert_eq!(snap.account_id, v.account_id);
    let mut names: Vec<&str> = snap.rows.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["counter-1", "counter-2", "desk"]);
    for t in [&t1, &t2] {
        let r = row_of(&snap, t.c.terminal_id);
        assert_eq!(r.link, "up");
        assert!(r.connected);
        assert_eq!(r.clerk.as_deref(), Some(CLERK));
        assert!(r.rtt_ms.is_some() && r.keepalive_age_ms.is_some(), "{r:?}");
        assert_eq!(r.printer, "unknown", "no report yet");
        assert_eq!((r.items_today, r.balance_cents), (0, 10_000));
    }
    assert_eq!(v.server.monitor_subscribers(), 1);

    // The second terminal reports paper out: a pushed update shows it.
    t2.s.report_printer_status(PrinterReport::new(
        PrinterState::PaperOut,
        Some("roll empty".into()),
    ))
    .await
    .unwrap();
    let r = until_row(&mut stream, t2.c.terminal_id, "paper_out", |r| {
        r.printer == "paper_out"
    })
    .await;
    assert_eq!(r.printer_detail.as_deref(), Some("roll empty"));
    assert_eq!(
        v.server.printer_report(t2.c.terminal_id).unwrap().state,
        PrinterState::PaperOut
    );

    // An authorize + commit on the first terminal: items today and the balance move.
    let a =
        t1.s.authorize(rand::random(), 250, coupon(250), "10001")
            .await
            .unwrap();
    t1.s.commit(rand::random(), a.piece_serial).await.unwrap();
    let r = until_row(&mut stream, t1.c.terminal_id, "the committed item", |r| {
        r.items_today == 1
    })
    .await;
    assert_eq!(r.balance_cents, 10_000 - 250);

    // Cut the second terminal's link at the proxy: the vendor's view lapses and says so.
    proxy.handle.cut();
    let r = until_row(&mut stream, t2.c.terminal_id, "the lapse", |r| {
        r.link == "lapsed"
    })
    .await;
    assert!(r.connected, "lapsed, not yet closed");
    assert_eq!(
        r.printer, "paper_out",
        "the last report stays with the terminal"
    );
}

#[tokio::test]
async fn non_supervisors_are_forbidden_and_bad_reports_are_malformed() {
    let v = vendor_with_supervisor(None).await;
    let t = term(&v, v.addr, "counter-1", CLERK, PASSWORD).await;
    let e = t.s.subscribe_terminals().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Forbidden), "{e}");
    assert_eq!(v.server.monitor_subscribers(), 0);

    // The vendor validates reports itself (sent raw, past the client's own check).
    let bad = |state: &str, detail: Option<String>| {
        Request::PrinterStatus(PrinterReport {
            state: state.into(),
            detail,
        })
    };
    for (req, field) in [
        (bad("on_fire", None), "state"),
        (bad("offline", Some("x".repeat(129))), "detail"),
    ] {
        let e = t.s.send::<wire::PrinterRecorded>(&req).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::Malformed), "{e}");
        assert!(e.to_string().contains(field), "{e}");
    }
    assert_eq!(v.server.printer_report(t.c.terminal_id), None);
    // And the client refuses to send one.
    let e =
        t.s.report_printer_status(PrinterReport {
            state: "jammed".into(),
            detail: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Response(_)), "{e}");
}

#[tokio::test]
async fn subscriptions_are_bounded_and_a_dropped_subscriber_frees_its_slot() {
    let config = VendorConfig {
        monitor_subscribers_max: 1,
        monitor_push_interval_ms: 100,
        ..VendorConfig::default()
    };
    let v = vendor_with_supervisor(Some(config)).await;
    let desk = term(&v, v.addr, "desk", BOSS, BOSS_PASSWORD).await;
    let (first, _) = desk.s.subscribe_terminals().await.unwrap();
    let e = desk.s.subscribe_terminals().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Busy), "{e}");
    match &e {
        ClientError::Response(wire::ResponseError::Refused(b)) => assert_eq!(b.limit, Some(1)),
        other => panic!("{other}"),
    }
    drop(first);
    tokio::time::timeout(LONG, async {
        while v.server.monitor_subscribers() != 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the vendor frees the slot of a subscriber that went away");
    let (_again, snap) = desk.s.subscribe_terminals().await.unwrap();
    assert_eq!(snap.rows.len(), 1);
}

#[tokio::test]
async fn one_account_holds_at_most_its_share_of_monitor_slots() {
    let config = VendorConfig {
        monitor_subscribers_max: 32,
        monitor_subscribers_per_account_max: 1,
        ..VendorConfig::default()
    };
    let v = vendor_with_supervisor(Some(config)).await;
    let desk = term(&v, v.addr, "desk", BOSS, BOSS_PASSWORD).await;
    let (_first, _) = desk.s.subscribe_terminals().await.unwrap();
    let e = desk.s.subscribe_terminals().await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Busy), "{e}");
    match &e {
        ClientError::Response(wire::ResponseError::Refused(b)) => {
            assert_eq!(b.limit, Some(1));
            assert!(b.message.contains("account"), "{}", b.message);
        }
        other => panic!("{other}"),
    }
    assert_eq!(v.server.monitor_subscribers(), 1);
}

/// A supervisor whose desk subscribes and then never reads (its stream window a few hundred
/// bytes) holds its account's one monitor slot only until a frame waits
/// `response_write_timeout_ms`: the vendor resets the stream, the slot comes back, and another
/// desk of the account subscribes. Issue 13.
#[tokio::test]
async fn a_monitor_subscriber_that_never_reads_loses_its_slot_at_the_write_timeout_issue_13() {
    let config = VendorConfig {
        monitor_subscribers_per_account_max: 1,
        monitor_push_interval_ms: 50,
        response_write_timeout_ms: 400,
        ..VendorConfig::default()
    };
    let v = vendor_with_supervisor(Some(config)).await;
    let counter = term(&v, v.addr, "counter-1", CLERK, PASSWORD).await;
    // The stalled desk: a stream window too small for more than a couple of frames.
    let endpoint = endpoint();
    let mut transport =
        frank::vendor_server::server::transport_config(frank::counter::client::IDLE_TIMEOUT_MS);
    transport.stream_receive_window(quinn::VarInt::from_u32(512));
    let conn = frank::counter::client::connect_with_transport(&endpoint, v.addr, v.key, transport)
        .await
        .unwrap();
    let device_key = frank::identity::new_signing_key().unwrap();
    let e = conn
        .enroll(&v.code, "stalled-desk", &device_key, &v.key)
        .await
        .unwrap();
    let stalled = conn
        .login(e.terminal_id, &device_key, BOSS, BOSS_PASSWORD)
        .await
        .unwrap();
    let (_never_read, _) = stalled.subscribe_terminals().await.unwrap();
    assert_eq!(v.server.monitor_subscribers(), 1);
    // Rows keep changing (the counter's printer reports), so frames keep coming.
    let desk = term(&v, v.addr, "desk", BOSS, BOSS_PASSWORD).await;
    let deadline = std::time::Instant::now() + LONG;
    let mut flip = false;
    let (mut stream, _) = loop {
        flip = !flip;
        let state = if flip { "offline" } else { "ready" };
        let _ = counter
            .s
            .report_printer_status(PrinterReport {
                state: state.into(),
                detail: None,
            })
            .await;
        match desk.s.subscribe_terminals().await {
            Ok(sub) => break sub,
            Err(e) => {
                assert_eq!(e.code(), Some(ErrorCode::Busy), "{e}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the slot never came back"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(v.server.limit_counts().streams_reset_write_timeout >= 1);
    assert_eq!(v.server.monitor_subscribers(), 1);
    // The new subscriber is served.
    tokio::time::timeout(LONG, stream.next())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn frank_admin_once_prints_the_snapshot_as_json() {
    let v = vendor_with_supervisor(None).await;
    let _t = term(&v, v.addr, "counter-1", CLERK, PASSWORD).await;
    // The supervisor's desk: an enrolled terminal data directory, as `frank counter` leaves it.
    let desk_dir = v.dir.path().join("desk");
    let td = TerminalDir::new(&desk_dir);
    td.device_key().unwrap();
    let endpoint = endpoint();
    let conn = frank::counter::client::connect(&endpoint, v.addr, v.key)
        .await
        .unwrap();
    td.ensure_enrolled(&conn, &v.key, Some(&v.code), "desk")
        .await
        .unwrap();
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(["admin", "--once", "--vendor"])
        .arg(v.addr.to_string())
        .arg("--fingerprint")
        .arg(v.server.fingerprint())
        .arg("--data")
        .arg(&desk_dir)
        .args(["--clerk", BOSS])
        .env("FRANK_PASSWORD", BOSS_PASSWORD)
        .output();
    let out = tokio::time::timeout(LONG, out).await.unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    let f: MonitorFrame = serde_json::from_str(lines[0]).unwrap();
    assert!(f.is_snapshot());
    let mut names: Vec<&str> = f.rows.iter().map(|r| r.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["counter-1", "desk"]);
    assert!(!stdout.contains(BOSS_PASSWORD));

    // A clerk who is not a supervisor: a clear refusal and a failing exit.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(["admin", "--once", "--vendor"])
        .arg(v.addr.to_string())
        .arg("--fingerprint")
        .arg(v.server.fingerprint())
        .arg("--data")
        .arg(&desk_dir)
        .args(["--clerk", CLERK])
        .env("FRANK_PASSWORD", PASSWORD)
        .output();
    let out = tokio::time::timeout(LONG, out).await.unwrap().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("Forbidden"), "{stderr}");
}

// ---- the screen ----

fn fixed_row(
    id: u64,
    name: &str,
    link: &str,
    printer: &str,
    rtt: Option<u64>,
    age: Option<u64>,
) -> TerminalRow {
    TerminalRow {
        terminal_id: id,
        name: name.into(),
        link: link.into(),
        connected: link != "down",
        clerk: (link != "down").then(|| "alice".to_string()),
        rtt_ms: rtt,
        keepalive_age_ms: age,
        keepalive_loss_bp: match link {
            "lapsed" => 1250,
            "down" => 0,
            _ => 3,
        },
        printer: printer.into(),
        printer_detail: (printer == "paper_out").then(|| "roll empty".to_string()),
        items_today: 17,
        unsettled: 2,
        balance_cents: 123_456,
    }
}

fn fixed_monitor() -> Monitor {
    let mut m = Monitor::new("127.0.0.1:4433", "boss");
    m.apply(MonitorFrame {
        kind: "snapshot".into(),
        seq: 0,
        vendor_time_ms: 1_700_000_000_000,
        account_id: 1,
        coalesced_frames: 0,
        truncated: false,
        rows: vec![
            fixed_row(1, "Main St counter", "up", "ready", Some(1), Some(20)),
            fixed_row(2, "Kiosk lobby", "lapsed", "paper_out", Some(3), Some(480)),
            fixed_row(3, "Back office", "down", "unknown", None, None),
            fixed_row(4, "desk", "up", "none", Some(2), Some(35)),
        ],
    });
    m.apply(MonitorFrame {
        kind: "update".into(),
        seq: 7,
        vendor_time_ms: 1_700_000_003_500,
        account_id: 1,
        coalesced_frames: 2,
        truncated: false,
        rows: vec![fixed_row(
            1,
            "Main St counter",
            "up",
            "ready",
            Some(1),
            Some(12),
        )],
    });
    m
}

fn render(m: &Monitor, theme: &Theme, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| view::draw(f, m, theme)).unwrap();
    t
}

fn find(t: &Terminal<TestBackend>, text: &str) -> (u16, u16) {
    let buf = t.backend().buffer();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width)
            .map(|x| buf[(x, y)].symbol().to_string())
            .collect();
        if let Some(i) = line.find(text) {
            let x = line[..i].chars().count() as u16;
            return (x, y);
        }
    }
    panic!("{text:?} not on screen:\n{:?}", t.backend());
}

#[test]
fn the_admin_screen_at_120x40() {
    let theme = Theme::builtin("dark", false).unwrap();
    let m = fixed_monitor();
    let t = render(&m, &theme, 120, 40);
    insta::assert_snapshot!("admin_live_120x40", t.backend());
    // Meaning carried by style, on top of the words.
    let buf = t.backend().buffer();
    let (x, y) = find(&t, "lapsed");
    assert_eq!(buf[(x, y)].style().fg, theme.style(Role::AlertError).fg);
    // Issue 15: the printer's state in words, not its wire name.
    let (x, y) = find(&t, "paper out: roll empty");
    assert_eq!(buf[(x, y)].style().fg, theme.style(Role::AlertWarn).fg);
    let all: String = buf.content().iter().map(|c| c.symbol()).collect();
    assert!(!all.contains("paper_out"), "the wire name on screen");

    let mut lost = fixed_monitor();
    lost.lost("connection lost: timed out");
    let t = render(&lost, &theme, 120, 40);
    insta::assert_snapshot!("admin_lost_120x40", t.backend());
    find(&t, "Subscription lost — reconnecting");

    let mut empty = Monitor::new("127.0.0.1:4433", "boss");
    empty.apply(MonitorFrame {
        kind: "snapshot".into(),
        seq: 0,
        vendor_time_ms: 1,
        account_id: 1,
        coalesced_frames: 0,
        truncated: false,
        rows: vec![],
    });
    let t = render(&empty, &theme, 120, 40);
    insta::assert_snapshot!("admin_empty_120x40", t.backend());
    find(&t, "No terminals");
}

#[test]
fn the_admin_screen_never_panics_at_any_size() {
    let theme = Theme::builtin("monochrome", true).unwrap();
    let m = fixed_monitor();
    for w in (1..=130).step_by(7) {
        for h in (1..=45).step_by(4) {
            render(&m, &theme, w, h);
        }
    }
}

#[tokio::test]
async fn the_screen_loop_applies_the_feed_and_quits_on_q() {
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use frank::admin::{Feed, Phase};
    let theme = Theme::builtin("dark", false).unwrap();
    let terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let (key_tx, keys) = tokio::sync::mpsc::channel(8);
    let (feed_tx, feed) = tokio::sync::mpsc::channel(8);
    let frame = fixed_monitor().rows.into_values().collect::<Vec<_>>();
    feed_tx
        .send(Feed::Frame(MonitorFrame {
            kind: "snapshot".into(),
            seq: 0,
            vendor_time_ms: 1,
            account_id: 1,
            coalesced_frames: 0,
            truncated: false,
            rows: frame,
        }))
        .await
        .unwrap();
    feed_tx
        .send(Feed::Lost("connection lost".into()))
        .await
        .unwrap();
    let run = tokio::spawn(async move {
        frank::admin::run::drive(
            terminal,
            Monitor::new("v", "boss"),
            &theme,
            keys,
            feed,
            std::future::pending(),
        )
        .await
        .unwrap()
    });
    // Let the loop take both feed events, then quit.
    while feed_tx.capacity() < 8 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    key_tx
        .send(KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE))
        .await
        .unwrap();
    let m = tokio::time::timeout(LONG, run).await.unwrap().unwrap();
    assert!(m.quit);
    assert_eq!(m.rows.len(), 4);
    assert_eq!(
        m.phase,
        Phase::Lost {
            reason: "connection lost".into()
        }
    );
}

/// A piece nobody settled by its expiry is charged `unsettled` by the reaper, and the
/// supervisor's monitor shows the account's unsettled count (and its screen the column).
#[tokio::test]
async fn the_monitor_shows_pieces_committed_unsettled_at_expiry() {
    let config = VendorConfig {
        authorization_expiry_ms: Some(1_000),
        reaper_interval_ms: Some(50),
        ..VendorConfig::default()
    };
    let v = vendor_with_supervisor(Some(config)).await;
    let t1 = term(&v, v.addr, "counter-1", CLERK, PASSWORD).await;
    let desk = term(&v, v.addr, "desk", BOSS, BOSS_PASSWORD).await;
    t1.s.fund(rand::random(), 10_000, FundMethod::simulator_test_card())
        .await
        .unwrap();
    let (mut stream, snap) = desk.s.subscribe_terminals().await.unwrap();
    assert_eq!(row_of(&snap, t1.c.terminal_id).unsettled, 0);
    // Authorized, never settled.
    let a =
        t1.s.authorize(rand::random(), 250, coupon(250), "10001")
            .await
            .unwrap();
    let r = until_row(&mut stream, t1.c.terminal_id, "one unsettled piece", |r| {
        r.unsettled == 1
    })
    .await;
    assert_eq!(r.balance_cents, 10_000 - 250, "expiry gave no value back");
    assert_eq!(
        t1.s.piece(a.piece_serial).await.unwrap().item_state,
        "unsettled"
    );
    // The terminal's late commit settles it: the count goes back to 0.
    t1.s.commit(rand::random(), a.piece_serial).await.unwrap();
    until_row(&mut stream, t1.c.terminal_id, "settled", |r| {
        r.unsettled == 0
    })
    .await;
}
