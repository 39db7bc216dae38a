//! The notice line above the key hints: the last thing the person needs to know.

use crate::ui::App;
use crate::ui::app::Severity;
use crate::ui::theme::Role;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub fn role_of(s: Severity) -> Role {
    match s {
        Severity::Info => Role::Text,
        Severity::Ok => Role::Ok,
        Severity::Warn => Role::AlertWarn,
        Severity::Error => Role::AlertError,
    }
}

/// Most rows the notice takes; a longer text ends with `…` on the last one.
pub const NOTICE_ROWS_MAX: usize = 3;

/// What the notice line says now and in which role: the kiosk's idle countdown first, then
/// the notice, then the focused field's error in full (the form row may cut it).
fn message(app: &App) -> Option<(String, Role)> {
    if let Some(left) = app.idle_countdown_s() {
        return Some((
            format!("! Still there? The form clears in {left} s — press any key to keep it."),
            Role::AlertWarn,
        ));
    }
    let Some(n) = &app.notice else {
        let (label, e) = app.focused_field()?;
        return Some((format!("✗ {label}: {}", e?), Role::AlertError));
    };
    let mark = match n.severity {
        Severity::Info => "i ",
        Severity::Ok => "✓ ",
        Severity::Warn => "! ",
        Severity::Error => "✗ ",
    };
    Some((format!("{mark}{}", n.text), role_of(n.severity)))
}

/// The notice wrapped to `cols` columns, at most [`NOTICE_ROWS_MAX`] lines (none when there is
/// nothing to say).
pub fn lines(app: &App, cols: usize) -> Vec<String> {
    let Some((text, _)) = message(app) else {
        return Vec::new();
    };
    let mut lines = crate::ui::text::wrap(&text, cols);
    if lines.len() > NOTICE_ROWS_MAX {
        let rest = lines.split_off(NOTICE_ROWS_MAX - 1).join(" ");
        lines.push(crate::ui::text::fit(&rest, cols));
    }
    lines
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let Some((_, role)) = message(app) else {
        return;
    };
    let style = app.config.theme.style(role);
    let text: Vec<Line> = lines(app, area.width as usize)
        .into_iter()
        .map(|l| Line::from(Span::styled(l, style)))
        .collect();
    frame.render_widget(Paragraph::new(text), area);
}
