//! Helpers for the counter UI tests: drive an App with keys and backend reports.
#![allow(dead_code)]

mod postage_values;
pub use postage_values::POSTAGE_FORM_VALUES;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyEventState, KeyModifiers};
use frank::link::LinkState;
use frank::link::driver::LinkStatus;
use frank::money::Cents;
use frank::ui::app::{App, AppConfig, pin_hash};

/// A fixed salt: screens under test are deterministic.
const PIN_SALT: [u8; 16] = [7; 16];
use frank::ui::event::{Backend, Command, Event, PrinterStatus};
use frank::ui::theme::Theme;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use std::time::{Duration, Instant};

pub fn key_ev(code: KeyCode, modifiers: KeyModifiers) -> Event {
    Event::Key(KeyEvent {
        code,
        modifiers,
        kind: KeyEventKind::Press,
        state: KeyEventState::NONE,
    })
}

pub fn press(app: &mut App, code: KeyCode) -> Vec<Command> {
    app.handle(key_ev(code, KeyModifiers::NONE))
}

pub fn ctrl(app: &mut App, c: char) -> Vec<Command> {
    app.handle(key_ev(KeyCode::Char(c), KeyModifiers::CONTROL))
}

pub fn typ(app: &mut App, text: &str) -> Vec<Command> {
    let mut out = Vec::new();
    for c in text.chars() {
        out.extend(press(app, KeyCode::Char(c)));
    }
    out
}

pub fn backend(app: &mut App, b: Backend) -> Vec<Command> {
    app.handle(Event::Backend(b))
}

pub fn link(app: &mut App, state: LinkState) {
    let mut s = LinkStatus::down(7, Instant::now());
    s.state = state;
    s.rtt = Some(Duration::from_millis(12));
    s.loss_pct = 1.5;
    backend(app, Backend::LinkChanged(s));
}

pub fn cents(c: u64) -> Cents {
    Cents::new(c).unwrap()
}

pub fn clerk_app() -> App {
    App::new(AppConfig {
        printer_name: "/dev/ttyUSB0".into(),
        ..AppConfig::default()
    })
}

pub fn kiosk_app() -> App {
    App::new(AppConfig {
        kiosk: true,
        idle_timeout_ms: 60_000,
        supervisor_pin: Some(pin_hash("2468", &PIN_SALT).unwrap()),
        printer_name: "/dev/ttyUSB0".into(),
        ..AppConfig::default()
    })
}

/// Signs in as alice with $100.00, link up, printer ready.
pub fn signed_in() -> App {
    let mut app = clerk_app();
    typ(&mut app, "alice");
    press(&mut app, KeyCode::Tab);
    typ(&mut app, "correct horse");
    let cmds = press(&mut app, KeyCode::Enter);
    assert!(matches!(&cmds[..], [Command::SignIn { clerk, .. }] if clerk == "alice"));
    backend(
        &mut app,
        Backend::SignedIn {
            office: "Main Street office".into(),
            clerk: "alice".into(),
            balance: cents(10_000),
        },
    );
    link(&mut app, LinkState::Up);
    backend(&mut app, Backend::PrinterStatus(PrinterStatus::Ready));
    app
}

/// Fills the postage form (focus must be on its first field); returns the commands emitted.
pub fn fill_postage(app: &mut App) -> Vec<Command> {
    let mut out = Vec::new();
    for v in POSTAGE_FORM_VALUES {
        out.extend(typ(app, v));
        out.extend(press(app, KeyCode::Tab));
    }
    out
}

/// On the postage screen: fills the form and answers its quote with `amount` cents; returns
/// the quote's request id.
pub fn quoted_postage(app: &mut App, amount: u64) -> u64 {
    let cmds = fill_postage(app);
    let request = quote_request(&cmds).expect("a quote request");
    answer_quote(app, request, amount);
    request
}

/// The vendor's answer to quote `request`: `amount` cents.
pub fn answer_quote(app: &mut App, request: u64, amount: u64) -> Vec<Command> {
    backend(
        app,
        Backend::Quote {
            request,
            amount: cents(amount),
        },
    )
}

/// The printer's report that `job` printed whole (10 bytes, the indicium on paper).
pub fn print_completed(app: &mut App, job: frank::ui::event::JobId) -> Vec<Command> {
    backend(
        app,
        Backend::PrintOutcome {
            job,
            outcome: frank::printer::streamer::JobOutcome::Completed {
                bytes_sent: 10,
                indicium: frank::printer::streamer::IndiciumPaper::Printed,
            },
        },
    )
}

/// On the card payment screen (focus on the card number): the approved test card, its expiry
/// and CVC typed, then Enter; returns the commands Enter emitted.
pub fn pay_by_test_card(app: &mut App) -> Vec<Command> {
    typ(app, "4242424242424242");
    press(app, KeyCode::Tab);
    typ(app, "04/29");
    press(app, KeyCode::Tab);
    typ(app, "123");
    press(app, KeyCode::Enter)
}

/// The vendor's answer that the $5.40 top-up went through.
pub fn funded_540(app: &mut App) -> Vec<Command> {
    backend(
        app,
        Backend::FundResult {
            declined: false,
            ok: true,
            message: "Added $5.40 (payment 7).".into(),
        },
    )
}

/// A new $5.40 postage item through review and confirmation, authorized by the vendor.
pub fn authorized_postage(app: &mut App) -> frank::ui::event::JobId {
    ctrl(app, 'n');
    quoted_postage(app, 540);
    press(app, KeyCode::Enter);
    let job = match &press(app, KeyCode::Enter)[..] {
        [Command::Authorize { job, .. }] => *job,
        other => panic!("{other:?}"),
    };
    backend(app, Backend::Authorized { job });
    job
}

pub fn quote_request(cmds: &[Command]) -> Option<u64> {
    cmds.iter().rev().find_map(|c| match c {
        Command::RequestQuote { request, .. } => Some(*request),
        _ => None,
    })
}

pub fn render(app: &App, w: u16, h: u16) -> Terminal<TestBackend> {
    let mut t = Terminal::new(TestBackend::new(w, h)).unwrap();
    t.draw(|f| frank::ui::draw(f, app)).unwrap();
    t
}

pub fn with_theme(app: &mut App, name: &str, no_color: bool) {
    app.config.theme = Theme::builtin(name, no_color).unwrap();
}

/// All text of a rendered terminal, rows joined with newlines.
pub fn screen_text(t: &Terminal<TestBackend>) -> String {
    let buf = t.backend().buffer();
    let mut s = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            s.push_str(buf[(x, y)].symbol());
        }
        s.push('\n');
    }
    s
}
