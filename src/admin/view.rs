//! Drawing the monitor (pure): a title line, the live table of terminals, a state line and a
//! help line. Meaning never rests on colour alone: link and printer states are words.

use super::state::{Monitor, Phase};
use crate::money::Cents;
use crate::ui::text::fit;
use crate::ui::theme::{Role, Theme};
use crate::ui::{MIN_COLS, MIN_ROWS, centered};
use crate::wire::TerminalRow;
use crate::wire::monitor::PrinterState;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Table, Wrap};

/// The help line's text.
pub const HELP: &str = "q quit  s sort column  r reverse  ↑↓ PgUp PgDn scroll";

const HEADERS: [&str; 11] = [
    "ID",
    "Name",
    "Link",
    "RTT",
    "Age",
    "Loss",
    "Printer",
    "Clerk",
    "Today",
    "Balance",
    "Unsettled",
];
const WIDTHS: [u16; 11] = [6, 15, 7, 7, 8, 7, 22, 10, 6, 11, 9];

fn link_style(theme: &Theme, link: &str) -> Style {
    match link {
        "up" => theme.style(Role::Ok),
        "lapsed" | "closed" => theme.style(Role::AlertError),
        _ => theme.style(Role::Muted),
    }
}

fn printer_style(theme: &Theme, printer: &str) -> Style {
    match printer {
        "ready" => theme.style(Role::Ok),
        "paper_out" | "cover_open" | "offline" | "vanished" => theme.style(Role::AlertWarn),
        _ => theme.style(Role::Muted),
    }
}

fn ms(v: Option<u64>) -> String {
    match v {
        None => "—".into(),
        Some(v) if v < 10_000 => format!("{v} ms"),
        Some(v) => format!("{} s", v / 1000),
    }
}

fn loss(bp: u32) -> String {
    format!("{}.{:02}%", bp / 100, bp % 100)
}

fn money(cents: u64) -> String {
    Cents::new(cents)
        .map(|c| c.to_string())
        .unwrap_or_else(|_| format!("{cents}¢"))
}

fn table_row<'a>(r: &'a TerminalRow, theme: &Theme, stale: bool) -> Row<'a> {
    let text = theme.style(if stale { Role::Muted } else { Role::Text });
    let (ls, ps) = if stale {
        (text, text)
    } else {
        (link_style(theme, &r.link), printer_style(theme, &r.printer))
    };
    // In words; the detail only when it says more than the state.
    let state: String = match PrinterState::parse(&r.printer) {
        Some(p) => p.words().to_string(),
        None => r.printer.clone(),
    };
    let printer = match &r.printer_detail {
        Some(d) if !d.eq_ignore_ascii_case(&state) => format!("{state}: {d}"),
        _ => state,
    };
    Row::new(vec![
        Cell::from(r.terminal_id.to_string()).style(text),
        Cell::from(fit(&r.name, WIDTHS[1] as usize)).style(text),
        Cell::from(r.link.clone()).style(ls),
        Cell::from(ms(r.rtt_ms)).style(text),
        Cell::from(ms(r.keepalive_age_ms)).style(text),
        Cell::from(if r.connected {
            loss(r.keepalive_loss_bp)
        } else {
            "—".into()
        })
        .style(text),
        Cell::from(fit(&printer, WIDTHS[6] as usize)).style(ps),
        Cell::from(r.clerk.clone().unwrap_or_else(|| "—".into())).style(text),
        Cell::from(r.items_today.to_string()).style(text),
        Cell::from(money(r.balance_cents)).style(text),
        // Charged at expiry with no settlement from a terminal: worth a supervisor's look.
        Cell::from(if r.unsettled == 0 {
            "—".to_string()
        } else {
            r.unsettled.to_string()
        })
        .style(if r.unsettled == 0 || stale {
            text
        } else {
            theme.style(Role::AlertWarn)
        }),
    ])
}

/// Draws the whole monitor from its state.
pub fn draw(frame: &mut Frame, m: &Monitor, theme: &Theme) {
    let area = frame.area();
    if area.width < MIN_COLS || area.height < MIN_ROWS {
        let p = Paragraph::new(format!(
            "Enlarge the terminal to at least {MIN_COLS}×{MIN_ROWS} (now {}×{}).",
            area.width, area.height
        ))
        .style(theme.style(Role::AlertWarn))
        .wrap(Wrap { trim: true });
        frame.render_widget(p, area);
        return;
    }
    let [title, body, state, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_title(frame, title, m, theme);
    draw_body(frame, body, m, theme);
    draw_state(frame, state, m, theme);
    let sort = format!(
        "   sorted by {} {}",
        m.sort.label(),
        if m.descending { "▼" } else { "▲" }
    );
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(HELP, theme.style(Role::Muted)),
            Span::styled(sort, theme.style(Role::Muted)),
        ])),
        help,
    );
}

fn draw_title(frame: &mut Frame, area: Rect, m: &Monitor, theme: &Theme) {
    let account = m
        .account_id
        .map(|a| format!("account {a}"))
        .unwrap_or_else(|| "account —".into());
    let text = format!(
        " Frank admin — {account} — {} terminal(s) — vendor {} — supervisor {}",
        m.rows.len(),
        m.vendor,
        m.clerk
    );
    frame.render_widget(
        Paragraph::new(fit(&text, area.width as usize)).style(theme.style(Role::StatusBar)),
        area,
    );
}

fn draw_body(frame: &mut Frame, area: Rect, m: &Monitor, theme: &Theme) {
    let block = Block::default()
        .borders(Borders::ALL)
        .border_style(theme.style(Role::Border))
        .title(Span::styled(" Terminals ", theme.style(Role::Title)));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if m.rows.is_empty() {
        let msg = match &m.phase {
            Phase::Connecting => "Connecting to the vendor…",
            Phase::Refused { .. } => "Nothing to show.",
            _ => "No terminals are enrolled in this account yet.",
        };
        let r = centered(inner, msg.chars().count() as u16 + 2, 1);
        frame.render_widget(Paragraph::new(msg).style(theme.style(Role::Muted)), r);
        return;
    }
    let stale = !matches!(m.phase, Phase::Live);
    let header = Row::new(HEADERS.iter().map(|h| Cell::from(*h))).style(theme.style(Role::Title));
    let rows: Vec<Row> = m
        .sorted()
        .into_iter()
        .skip(m.offset)
        .map(|r| table_row(r, theme, stale))
        .collect();
    let widths = WIDTHS.map(Constraint::Length);
    let table = Table::new(rows, widths).header(header).column_spacing(1);
    frame.render_widget(table, inner);
}

fn draw_state(frame: &mut Frame, area: Rect, m: &Monitor, theme: &Theme) {
    let (text, role) = match &m.phase {
        Phase::Connecting => (
            "Connecting — signing in and subscribing…".to_string(),
            Role::Muted,
        ),
        Phase::Live => {
            let mut s = format!(
                "Live — pushed by the vendor; {} frame(s), last #{}",
                m.frames,
                m.last_seq.unwrap_or(0)
            );
            if m.coalesced_frames > 0 {
                s.push_str(&format!(", {} coalesced", m.coalesced_frames));
            }
            if m.truncated {
                s.push_str("; only the first terminals are shown");
            }
            if let Some(rate) = m.lapse_rate_per_terminal_hour() {
                s.push_str(&format!(
                    "; lapses seen {} ({rate:.2} per terminal-hour up)",
                    m.lapses_seen
                ));
            }
            s.push_str(". \"Today\", \"Balance\" and \"Unsettled\" are the account's.");
            (s, Role::Ok)
        }
        Phase::Lost { reason } => (
            format!("Subscription lost — reconnecting ({reason}). Rows are the last known."),
            Role::AlertWarn,
        ),
        Phase::Refused { reason } => (format!("Refused: {reason}"), Role::AlertError),
    };
    frame.render_widget(
        Paragraph::new(fit(&text, area.width as usize)).style(theme.style(role)),
        area,
    );
}
