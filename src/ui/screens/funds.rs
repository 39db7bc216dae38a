//! Funds: card or EFT; numbers masked as typed (last four shown), CVC fully hidden.

use super::framed;
use crate::ui::panels::form;
use crate::ui::theme::Role;
use crate::ui::{App, line_widget};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Span;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let title = if app.paying {
        "Pay by card"
    } else {
        "Add funds"
    };
    let inner = framed(frame, area, app, title);
    let theme = &app.config.theme;
    let [head, _, body] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    let msg = if app.paying {
        "Insert the card details; the amount is the item's price."
    } else {
        "Card numbers and account numbers are never shown in full or logged."
    };
    frame.render_widget(
        line_widget(Span::styled(msg, theme.style(Role::Muted))),
        head,
    );
    let idx: Vec<usize> = (0..app.funds.fields.len()).collect();
    form::draw(frame, body, &app.funds, &idx, theme, true);
}
