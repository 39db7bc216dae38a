//! Snapshots of every counter screen at 80×24 and 120×40 (TestBackend + insta), style checks
//! of the cells that carry meaning (snapshots do not capture style), and a no-panic sweep
//! over terminal sizes.

mod ui_support;

use crossterm::event::KeyCode;
use frank::counter::jobbook::Settlement;
use frank::indicium::ItemKind;
use frank::link::LinkState;
use frank::printer::streamer::{AbortCause, IndiciumPaper, JobOutcome, PrinterFault, Progress};
use frank::ui::App;
use frank::ui::event::{
    Backend, IssuedItem, ItemState, JobId, PieceNumber, PrinterStatus, RefundState, SettlePhase,
};
use frank::ui::theme::Role;
use ratatui::style::{Color, Modifier};
use ui_support::*;

const SIZES: [(u16, u16); 2] = [(80, 24), (120, 40)];

fn snap(name: &str, app: &App) {
    for (w, h) in SIZES {
        let t = render(app, w, h);
        insta::assert_snapshot!(format!("ui_{name}_{w}x{h}"), t.backend());
    }
}

fn quoted() -> App {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    quoted_postage(&mut app, 540);
    app
}

fn printing() -> (App, JobId) {
    let mut app = quoted();
    press(&mut app, KeyCode::Enter);
    let cmds = press(&mut app, KeyCode::Enter);
    let job = match &cmds[..] {
        [frank::ui::Command::Authorize { job, .. }] => *job,
        other => panic!("{other:?}"),
    };
    backend(&mut app, Backend::Authorized { job });
    backend(
        &mut app,
        Backend::PrintProgress {
            job,
            progress: Progress {
                bytes_sent: 1536,
                bytes_total: 4096,
            },
        },
    );
    (app, job)
}

fn with_history(app: &mut App) {
    // As the vendor lists them after a restart: newest first, numbered as their labels.
    let e = |serial, kind, date: &str, summary: &str, amount, state| IssuedItem {
        number: PieceNumber::new("FRK10000001", serial),
        job: None,
        kind,
        date: date.into(),
        authorized_at_ms: 0,
        summary: summary.into(),
        amount: cents(amount),
        state,
    };
    backend(
        app,
        Backend::Items(vec![
            e(
                14,
                ItemKind::Postage,
                "2026-11-23",
                "to Austin TX 78701",
                995,
                ItemState::Refund(RefundState::Refunded),
            ),
            e(
                13,
                ItemKind::GiftCertificate,
                "2026-11-22",
                "for 山田 太郎",
                2500,
                ItemState::Voided,
            ),
            e(
                12,
                ItemKind::Ticket,
                "2026-11-21",
                "Tosca, row F seat 12",
                8500,
                ItemState::Refund(RefundState::Requested),
            ),
            e(
                11,
                ItemKind::Postage,
                "2026-11-20",
                "to Boston MA 02108",
                540,
                ItemState::Printed,
            ),
        ]),
    );
}

#[test]
fn welcome_kiosk() {
    let mut app = kiosk_app();
    link(&mut app, LinkState::Up);
    snap("welcome", &app);
    link(&mut app, LinkState::Lapsed);
    snap("welcome_lapsed", &app);
}

#[test]
fn sign_in() {
    let mut app = clerk_app();
    typ(&mut app, "alice");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "secret");
    snap("sign_in", &app);
}

#[test]
fn home() {
    let mut app = signed_in();
    with_history(&mut app);
    press(&mut app, KeyCode::Down);
    snap("home", &app);
}

#[test]
fn postage_filled_with_quote() {
    snap("postage_quoted", &quoted());
}

#[test]
fn postage_with_field_errors() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    for v in ["Ada", "", "", "San Francisco", "XX", "9410"] {
        typ(&mut app, v);
        press(&mut app, KeyCode::Tab);
    }
    snap("postage_errors", &app);
}

#[test]
fn item_forms() {
    for (i, (kind, name)) in [
        (ItemKind::Ticket, "ticket"),
        (ItemKind::Check, "check"),
        (ItemKind::Coupon, "coupon"),
        (ItemKind::GiftCertificate, "gift_certificate"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut app = signed_in();
        for _ in 0..=i {
            press(&mut app, KeyCode::Down);
        }
        press(&mut app, KeyCode::Enter);
        assert_eq!(app.screen, frank::ui::Screen::ItemForm(kind));
        typ(&mut app, "Grand Opening");
        press(&mut app, KeyCode::Tab);
        typ(&mut app, "1x");
        snap(name, &app);
    }
}

#[test]
fn review() {
    let mut app = quoted();
    press(&mut app, KeyCode::Enter);
    snap("review", &app);
    link(&mut app, LinkState::Lapsed);
    press(&mut app, KeyCode::Enter);
    snap("review_lapsed", &app);
}

#[test]
fn printing_progress_and_outcomes() {
    let (mut app, job) = printing();
    snap("printing_progress", &app);
    link(&mut app, LinkState::Lapsed);
    backend(
        &mut app,
        Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Aborted {
                bytes_sent: 1536,
                indicium: IndiciumPaper::Cleared,
                cancel_confirmed: true,
                void_printed: true,
                cause: AbortCause::Link,
            },
        },
    );
    // The job book's decision, then the vendor's acknowledgement.
    settle(&mut app, job, Settlement::Void, SettlePhase::Sending);
    snap("printing_voiding", &app);
    settle(&mut app, job, Settlement::Void, SettlePhase::Done);
    snap("printing_voided", &app);
    let (mut app, job) = printing();
    backend(
        &mut app,
        Backend::PrintOutcome {
            job,
            outcome: JobOutcome::Aborted {
                bytes_sent: 4000,
                indicium: IndiciumPaper::AssumedPrinted,
                cancel_confirmed: false,
                void_printed: false,
                cause: AbortCause::Link,
            },
        },
    );
    settle(
        &mut app,
        job,
        Settlement::VoidReachedPrinter,
        SettlePhase::Done,
    );
    snap("printing_refund_requested", &app);
}

fn settle(app: &mut App, job: JobId, settlement: Settlement, phase: SettlePhase) {
    backend(
        app,
        Backend::Settlement {
            job,
            piece: Some(1),
            assumed_on_paper: false,
            amount: frank::money::Cents::new(540).unwrap(),
            settlement,
            phase,
        },
    );
}

#[test]
fn history() {
    let mut app = signed_in();
    press(&mut app, KeyCode::F(3));
    with_history(&mut app);
    press(&mut app, KeyCode::Down);
    snap("history", &app);
}

#[test]
fn funds_card_masked() {
    let mut app = signed_in();
    press(&mut app, KeyCode::F(4));
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "25.00");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "4242424242424242");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "04/29");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "12");
    snap("funds_card", &app);
}

#[test]
fn settings() {
    let mut app = signed_in();
    backend(
        &mut app,
        Backend::PrinterStatus(PrinterStatus::Fault(PrinterFault::PaperOut)),
    );
    press(&mut app, KeyCode::F(5));
    snap("settings", &app);
}

#[test]
fn help_overlay() {
    let mut app = signed_in();
    press(&mut app, KeyCode::F(1));
    assert!(app.show_help);
    snap("help", &app);
}

#[test]
fn kiosk_pin_prompt() {
    let mut app = kiosk_app();
    link(&mut app, LinkState::Up); // in service: the welcome screen under the prompt
    ctrl(&mut app, 'c');
    typ(&mut app, "12");
    snap("pin_prompt", &app);
}

#[test]
fn tiny_terminal_shows_enlarge_notice() {
    let app = signed_in();
    let t = render(&app, 39, 11);
    insta::assert_snapshot!("ui_tiny_39x11", t.backend());
    assert!(screen_text(&t).contains("Enlarge"));
}

/// Cells whose text contains `needle` on row `y`; returns the x of its first column.
fn find(t: &ratatui::Terminal<ratatui::backend::TestBackend>, y: u16, needle: &str) -> Option<u16> {
    let buf = t.backend().buffer();
    let row: Vec<String> = (0..buf.area.width)
        .map(|x| buf[(x, y)].symbol().to_string())
        .collect();
    (0..row.len())
        .find(|&i| row[i..].concat().starts_with(needle))
        .map(|i| i as u16)
}

fn find_anywhere(
    t: &ratatui::Terminal<ratatui::backend::TestBackend>,
    needle: &str,
) -> Option<(u16, u16)> {
    (0..t.backend().buffer().area.height).find_map(|y| find(t, y, needle).map(|x| (x, y)))
}

#[test]
fn lapsed_link_is_shown_in_alert_style_in_the_status_bar() {
    let mut app = signed_in();
    link(&mut app, LinkState::Lapsed);
    let t = render(&app, 80, 24);
    let x = find(&t, 0, "✗ LINK LAPSED").expect("status bar names the lapse");
    let alert = app.config.theme.style(Role::AlertError);
    let cell = &t.backend().buffer()[(x + 2, 0)];
    assert_eq!(cell.fg, alert.fg.unwrap());
    assert_eq!(cell.bg, alert.bg.unwrap());
    assert!(cell.modifier.contains(Modifier::BOLD));
    link(&mut app, LinkState::Up);
    let t = render(&app, 80, 24);
    let x = find(&t, 0, "● LINK UP").unwrap();
    assert_eq!(
        t.backend().buffer()[(x + 2, 0)].fg,
        app.config.theme.style(Role::Ok).fg.unwrap()
    );
}

#[test]
fn printing_disabled_reason_is_in_alert_style() {
    let mut app = quoted();
    press(&mut app, KeyCode::Enter);
    link(&mut app, LinkState::Lapsed);
    let t = render(&app, 120, 40);
    let (x, y) = find_anywhere(&t, "✗ Printing disabled").expect("reason on screen");
    let cell = &t.backend().buffer()[(x + 3, y)];
    assert_eq!(
        cell.bg,
        app.config.theme.style(Role::AlertError).bg.unwrap()
    );
}

#[test]
fn selection_is_visible_without_colour_under_monochrome_and_no_color() {
    for (theme, no_color) in [
        ("monochrome", false),
        ("dark", true),
        ("high-contrast", true),
    ] {
        let mut app = signed_in();
        with_theme(&mut app, theme, no_color);
        press(&mut app, KeyCode::Down);
        let t = render(&app, 80, 24);
        let (x, y) = find_anywhere(&t, "▶ Ticket").expect("marker on the selected row");
        let cell = &t.backend().buffer()[(x + 2, y)];
        assert!(
            cell.modifier.contains(Modifier::REVERSED),
            "{theme}: {cell:?}"
        );
        if no_color {
            assert!(
                matches!(cell.fg, Color::Reset) && matches!(cell.bg, Color::Reset),
                "{theme}: {cell:?}"
            );
        }
        // The unselected rows carry no marker.
        assert!(find_anywhere(&t, "▶ Postage").is_none());
    }
}

#[test]
fn field_errors_are_in_alert_style() {
    let mut app = signed_in();
    ctrl(&mut app, 'n');
    for _ in 0..4 {
        press(&mut app, KeyCode::Tab);
    }
    typ(&mut app, "XX");
    let t = render(&app, 120, 40);
    let (x, y) = find_anywhere(&t, " ✗ ").expect("state error shown");
    let cell = &t.backend().buffer()[(x + 1, y)];
    assert!(cell.modifier.contains(Modifier::BOLD));
    assert_eq!(
        cell.bg,
        app.config.theme.style(Role::AlertError).bg.unwrap()
    );
}

#[test]
fn no_panic_at_any_size() {
    let mut apps = vec![
        clerk_app(),
        signed_in(),
        quoted(),
        printing().0,
        kiosk_app(),
    ];
    let mut h = signed_in();
    press(&mut h, KeyCode::F(3));
    with_history(&mut h);
    apps.push(h);
    let mut help = signed_in();
    press(&mut help, KeyCode::F(1));
    apps.push(help);
    let mut pin = kiosk_app();
    ctrl(&mut pin, 'c');
    apps.push(pin);
    let mut f = signed_in();
    press(&mut f, KeyCode::F(4));
    apps.push(f);
    let mut s = signed_in();
    press(&mut s, KeyCode::F(5));
    apps.push(s);
    let mut r = quoted();
    press(&mut r, KeyCode::Enter);
    apps.push(r);
    let widths = [
        1, 2, 3, 5, 10, 20, 39, 40, 41, 50, 60, 79, 80, 81, 99, 100, 101, 120, 160, 200,
    ];
    let heights = [1, 2, 3, 5, 8, 11, 12, 13, 16, 20, 24, 30, 40, 60];
    for app in &apps {
        for w in widths {
            for h in heights {
                render(app, w, h);
            }
        }
    }
}
