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
    let rect = centered(inner, 60, 5);
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
    form::draw(frame, fields, &app.sign_in, &[0, 1], theme, true);
}
