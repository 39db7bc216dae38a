//! History: search, filter by date and kind, refund states; request a refund.

use super::framed;
use crate::ui::panels::form;
use crate::ui::theme::Role;
use crate::ui::{App, text};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let inner = framed(frame, area, app, "History");
    let theme = &app.config.theme;
    let [filters, _, table] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    form::draw(frame, filters, &app.history_filter, &[0, 1, 2], theme, true);
    let rows = app.filtered_history();
    let w = table.width as usize;
    let mut lines = vec![Line::from(Span::styled(
        text::fit(
            &format!(
                "  {:<6} {:<16} {:<10} {:>10}  {:<18} {}",
                "job", "kind", "date", "amount", "state", "item"
            ),
            w,
        ),
        theme.style(Role::Muted),
    ))];
    if rows.is_empty() {
        lines.push(Line::from(Span::styled(
            "  no items match",
            theme.style(Role::Muted),
        )));
    }
    let height = table.height.saturating_sub(1) as usize;
    let first = app
        .history_selected
        .saturating_sub(height.saturating_sub(1));
    for (i, e) in rows.iter().enumerate().skip(first).take(height) {
        let sel = i == app.history_selected;
        let row = format!(
            "{:<6} {:<16} {:<10} {:>10}  {:<18} {}",
            e.job.to_string(),
            e.kind.name(),
            e.date,
            e.amount.to_string(),
            e.state.label(),
            e.summary
        );
        let style = if sel {
            theme.style(Role::Selection)
        } else {
            theme.style(Role::Text)
        };
        lines.push(Line::from(vec![
            Span::styled(if sel { "▶ " } else { "  " }, theme.style(Role::Title)),
            Span::styled(text::fit(&row, w.saturating_sub(2)), style),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), table);
}
