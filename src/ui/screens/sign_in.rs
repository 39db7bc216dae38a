//! Clerk sign-in.

use super::framed;
use crate::ui::panels::form;
use crate::ui::theme::Role;
use crate::ui::{App, centered, line_widget};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let inner = framed(frame, area, app, "Sign in");
    let theme = &app.config.theme;
    let info = app.config.info_lines.len() as u16;
    let info_cols = app
        .config
        .info_lines
        .iter()
        .map(|l| crate::ui::text::width(l) as u16)
        .max()
        .unwrap_or(0);
    let rect = centered(
        inner,
        info_cols.max(60),
        5 + if info > 0 { info + 1 } else { 0 },
    );
    let [head, _, fields] = ratatui::layout::Layout::vertical([
        ratatui::layout::Constraint::Length(1),
        ratatui::layout::Constraint::Length(1),
        ratatui::layout::Constraint::Min(0),
    ])
    .areas(rect);
    let msg = if app.signing_in {
        "Signing in…"
    } else {
        "Clerk name and password"
    };
    frame.render_widget(
        line_widget(Span::styled(msg, theme.style(Role::Muted))),
        head,
    );
    let [fields, info_area] = ratatui::layout::Layout::vertical([
        ratatui::layout::Constraint::Length(3),
        ratatui::layout::Constraint::Min(0),
    ])
    .areas(fields);
    form::draw(frame, fields, &app.sign_in, &[0, 1], theme, true);
    if info > 0 {
        let lines: Vec<ratatui::text::Line> = std::iter::once(ratatui::text::Line::raw(""))
            .chain(app.config.info_lines.iter().map(|l| {
                ratatui::text::Line::from(Span::styled(
                    crate::ui::text::fit(l, info_area.width as usize),
                    theme.style(Role::Muted),
                ))
            }))
            .collect();
        frame.render_widget(ratatui::widgets::Paragraph::new(lines), info_area);
    }
}
