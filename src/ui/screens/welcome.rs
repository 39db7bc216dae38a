//! Kiosk welcome: large, plain prompts; Enter starts a postage label.

use super::{Binding, framed, key};
use crate::ui::App;
use crate::ui::app::Screen;
use crate::ui::centered;
use crate::ui::hits::{Hits, Target};
use crate::ui::keys::Action;
use crate::ui::panels::banner;
use crate::ui::theme::Role;
use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

pub fn keys(app: &App) -> Vec<Binding> {
    if app.kiosk_unavailable() {
        // Out of service: nothing to start; staff who gave the PIN may hide the reason.
        if app.staff_view {
            return vec![key(Action::Back, "hide", |app, _, _| {
                app.staff_view = false
            })];
        }
        return vec![];
    }
    vec![key(Action::Submit, "start", |app, _, _| {
        app.notice = None;
        app.screen = Screen::Postage;
    })]
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let inner = framed(frame, area, app, "Welcome");
    let theme = &app.config.theme;
    let enter = app.config.keys.hint(crate::ui::keys::Action::Submit);
    let mut lines = Vec::new();
    match banner::lines("POSTAGE", inner.width as usize) {
        Some(big) if inner.height >= 14 => {
            lines.extend(
                big.into_iter()
                    .map(|l| Line::from(Span::styled(l, theme.style(Role::Title)))),
            );
        }
        _ => lines.push(Line::from(Span::styled(
            "BUY POSTAGE HERE",
            theme.style(Role::Title),
        ))),
    }
    lines.extend([
        Line::raw(""),
        Line::from(Span::styled(
            format!("Press {enter} to start"),
            theme.style(Role::InputFocus),
        )),
        Line::raw(""),
        Line::from(Span::styled("Card payment only", theme.style(Role::Muted))),
    ]);
    // While the kiosk cannot sell, the out-of-service panel is drawn instead (ui::draw).
    let rect = centered(inner, inner.width, lines.len() as u16 + 2);
    // The whole welcome text is the start button.
    hits.add(rect, Target::Key(Action::Submit));
    frame.render_widget(
        Paragraph::new(lines)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        rect,
    );
}
