//! The status bar, always on the top row: link state, RTT, keepalive loss, printer, clerk,
//! balance, the office's name when it fits (a kiosk shows no clerk, balance or office to the
//! public). Meaning is carried by words and symbols as well as style.

use crate::link::LinkState;
use crate::ui::App;
use crate::ui::event::PrinterStatus;
use crate::ui::theme::Role;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Words and role for the link state.
pub fn link_label(state: LinkState) -> (&'static str, Role) {
    match state {
        LinkState::Up => ("● LINK UP", Role::Ok),
        LinkState::Down => ("○ LINK DOWN", Role::AlertWarn),
        LinkState::Lapsed => ("✗ LINK LAPSED", Role::AlertError),
        LinkState::Closed => ("✗ LINK CLOSED", Role::AlertError),
    }
}

pub fn printer_label(status: PrinterStatus) -> (String, Role) {
    match status {
        PrinterStatus::Unknown => ("printer ?".into(), Role::Muted),
        PrinterStatus::Ready => ("printer ready".into(), Role::Ok),
        PrinterStatus::Fault(f) => (format!("✗ {f}"), Role::AlertError),
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let full = spans(app, false);
    let width: usize = full
        .iter()
        .map(|s| crate::ui::text::width(&s.content))
        .sum();
    let compact = width > area.width as usize;
    let mut spans = if compact { spans(app, true) } else { full };
    // The office's name as the vendor knows it, when it fits after everything else (never on
    // a kiosk: the public sees no office data).
    if let Some(office) = app.office.as_deref().filter(|_| !app.config.kiosk) {
        let used: usize = spans
            .iter()
            .map(|s| crate::ui::text::width(&s.content))
            .sum();
        let text = format!("{}{office}", if compact { "│" } else { " │ " });
        if used + crate::ui::text::width(&text) <= area.width as usize {
            spans.push(Span::styled(text, app.config.theme.style(Role::StatusBar)));
        }
    }
    let bar = app.config.theme.style(Role::StatusBar);
    frame.render_widget(Paragraph::new(Line::from(spans)).style(bar), area);
}

/// The bar's pieces; `compact` drops the words that only label the values.
fn spans(app: &App, compact: bool) -> Vec<Span<'static>> {
    let theme = &app.config.theme;
    let bar = theme.style(Role::StatusBar);
    let (link, link_role) = link_label(app.link_state());
    let sep = Span::styled(if compact { "│" } else { " │ " }, bar);
    let mut spans = vec![
        Span::styled(" ", bar),
        Span::styled(link, theme.style(link_role)),
    ];
    if let Some(l) = &app.link {
        let rtt = l
            .rtt
            .map(|d| format!("RTT {} ms", d.as_millis()))
            .unwrap_or_else(|| "RTT –".into());
        let rtt = if compact {
            rtt.replace(" ms", "ms")
        } else {
            rtt
        };
        spans.push(sep.clone());
        spans.push(Span::styled(rtt, bar));
        spans.push(sep.clone());
        let loss_role = if l.loss_pct >= 5.0 {
            Role::AlertWarn
        } else {
            Role::StatusBar
        };
        spans.push(Span::styled(
            format!("loss {:.1}%", l.loss_pct),
            theme.style(loss_role),
        ));
    }
    let (printer, printer_role) = printer_label(app.printer);
    spans.push(sep.clone());
    spans.push(Span::styled(printer, theme.style(printer_role)));
    if app.open_jobs > 0 {
        spans.push(sep.clone());
        spans.push(Span::styled(
            if compact {
                format!("⧗{}", app.open_jobs)
            } else {
                format!("⧗ {} settling", app.open_jobs)
            },
            theme.style(Role::AlertWarn),
        ));
    }
    if app.config.kiosk {
        // The public sees no office data: no clerk, no balance.
        spans.push(Span::styled("  KIOSK", bar));
        return spans;
    }
    spans.push(sep.clone());
    spans.push(Span::styled(
        format!(
            "{}{}",
            if compact { "" } else { "clerk " },
            app.clerk.as_deref().unwrap_or("–")
        ),
        bar,
    ));
    spans.push(sep);
    spans.push(Span::styled(
        app.balance
            .map(|b| {
                if compact {
                    b.to_string()
                } else {
                    format!("balance {b}")
                }
            })
            .unwrap_or_else(|| "balance –".into()),
        bar,
    ));
    spans
}
