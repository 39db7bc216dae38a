//! Review & confirm: what will be issued and charged; the reason when printing is disabled.

use super::framed;
use crate::ui::keys::Action;
use crate::ui::theme::Role;
use crate::ui::{App, text};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let inner = framed(frame, area, app, "Review & confirm");
    let theme = &app.config.theme;
    let mut lines = Vec::new();
    let Some(d) = &app.draft else {
        lines.push(Line::from(Span::styled(
            "Nothing to review.",
            theme.style(Role::Muted),
        )));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    };
    let label_cols = d
        .summary
        .iter()
        .map(|(k, _)| text::width(k))
        .max()
        .unwrap_or(0);
    for (k, v) in &d.summary {
        lines.push(Line::from(vec![
            Span::styled(text::pad(k, label_cols), theme.style(Role::Muted)),
            Span::raw("  "),
            Span::styled(v.clone(), theme.style(Role::Text)),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled("Total  ", theme.style(Role::Text)),
        Span::styled(d.amount.to_string(), theme.style(Role::Title)),
    ]));
    lines.push(Line::raw(""));
    match app.print_block_reason() {
        Some(reason) => lines.push(Line::from(Span::styled(
            format!("✗ {reason}"),
            theme.style(Role::AlertError),
        ))),
        None => {
            let key = app.config.keys.hint(Action::Submit);
            let what = if app.config.kiosk {
                "pay by card"
            } else {
                "charge the balance and print once"
            };
            lines.push(Line::from(Span::styled(
                format!("Press {key} to {what}. An issued item is never printed twice."),
                theme.style(Role::InputFocus),
            )));
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
