//! Postage: sender and recipient side by side (stacked when narrow), weight and class, and
//! the live quote.

use super::framed;
use crate::ui::app::QuoteState;
use crate::ui::panels::form;
use crate::ui::theme::Role;
use crate::ui::{App, line_widget};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let inner = framed(frame, area, app, "Postage label");
    let theme = &app.config.theme;
    let f = &app.postage;
    let wide = inner.width >= 100;
    let addr_rows = if wide { 7 } else { 14 };
    let [addr, _, rest, _] = Layout::vertical([
        Constraint::Max(addr_rows),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(inner);
    let (from_area, to_area) = if wide {
        let [a, b] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(addr);
        (a, b)
    } else {
        let [a, b] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(addr);
        (a, b)
    };
    for (rect, title, range) in [(from_area, "From", 0..6), (to_area, "To", 6..12)] {
        let [head, body] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(rect);
        frame.render_widget(
            line_widget(Span::styled(title, theme.style(Role::Title))),
            head,
        );
        let idx: Vec<usize> = range.collect();
        let has_focus = idx.contains(&f.focus);
        form::draw(frame, body, f, &idx, theme, has_focus);
    }
    let [wc, quote] = Layout::vertical([Constraint::Length(2), Constraint::Length(1)]).areas(rest);
    form::draw(frame, wc, f, &[12, 13], theme, f.focus >= 12);
    let line = match &app.quote {
        _ if app.quote_waiting_for_link().is_some() => Line::from(Span::styled(
            app.quote_waiting_for_link().unwrap_or_default(),
            theme.style(Role::AlertWarn),
        )),
        QuoteState::Incomplete => Line::from(Span::styled(
            "Quote: fill weight and both ZIPs",
            theme.style(Role::Muted),
        )),
        QuoteState::Pending { .. } => Line::from(Span::styled(
            "Quote: asking the vendor…",
            theme.style(Role::Muted),
        )),
        QuoteState::Ready { amount, .. } => Line::from(vec![
            Span::styled("Quote: ", theme.style(Role::Text)),
            Span::styled(amount.to_string(), theme.style(Role::Title)),
        ]),
        QuoteState::Failed { reason } => Line::from(Span::styled(
            format!("✗ No quote: {reason}"),
            theme.style(Role::AlertError),
        )),
    };
    frame.render_widget(line_widget(line), quote);
}
