//! Home: balance, what to do next, recent items.

use super::framed;
use crate::ui::app::HOME_MENU;
use crate::ui::theme::Role;
use crate::ui::{App, text};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Recent items shown on the home screen.
pub const RECENT_ROWS_MAX: usize = 8;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let inner = framed(frame, area, app, "Home");
    let theme = &app.config.theme;
    let [menu_area, recent_area] =
        Layout::horizontal([Constraint::Length(24), Constraint::Min(0)]).areas(inner);
    let mut menu = vec![Line::from(Span::styled(
        format!(
            "Balance {}",
            app.balance
                .map(|b| b.to_string())
                .unwrap_or_else(|| "–".into())
        ),
        theme.style(Role::Title),
    ))];
    menu.push(Line::raw(""));
    for (i, (label, _)) in HOME_MENU.iter().enumerate() {
        let sel = i == app.home_selected;
        menu.push(Line::from(vec![
            Span::styled(if sel { "▶ " } else { "  " }, theme.style(Role::Title)),
            Span::styled(
                *label,
                if sel {
                    theme.style(Role::Selection)
                } else {
                    theme.style(Role::Text)
                },
            ),
        ]));
    }
    frame.render_widget(Paragraph::new(menu), menu_area);
    let mut recent = vec![Line::from(Span::styled(
        "Recent items",
        theme.style(Role::Title),
    ))];
    if app.history.is_empty() {
        recent.push(Line::from(Span::styled(
            "none yet",
            theme.style(Role::Muted),
        )));
    }
    let w = recent_area.width as usize;
    // The history is kept newest first.
    for e in app.history.iter().take(RECENT_ROWS_MAX) {
        let row = format!("{} {} {} {}", e.job, e.summary, e.amount, e.state.label());
        recent.push(Line::from(Span::styled(
            text::fit(&row, w),
            theme.style(Role::Text),
        )));
    }
    frame.render_widget(Paragraph::new(recent), recent_area);
}
