//! Kiosk out of service: drawn instead of the welcome screen while the kiosk is not signed in
//! (its sign-in failed, or the vendor ended its session and signing in again did not work), so
//! no customer is invited to start what the kiosk cannot finish — also while the link is not up
//! or the printer is not ready ([`App::kiosk_unavailable`]). The reason, in the office's words,
//! shows only after the supervisor PIN ([`App::staff_view`]).

use crate::ui::theme::Role;
use crate::ui::{App, centered};
use ratatui::Frame;
use ratatui::layout::{Alignment, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Wrap};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.config.theme;
    let block = Block::bordered()
        .title(Span::styled(" Out of service ", theme.style(Role::Title)))
        .border_style(theme.style(Role::Border));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let mut lines = vec![
        Line::from(Span::styled(
            "OUT OF SERVICE",
            theme.style(Role::AlertError),
        )),
        Line::raw(""),
        Line::from(Span::styled(
            "This kiosk cannot sell postage right now.",
            theme.style(Role::Text),
        )),
        Line::from(Span::styled(
            "Please ask staff for help.",
            theme.style(Role::Text),
        )),
    ];
    let quit = app.config.keys.hint(crate::ui::keys::Action::Quit);
    match app.staff_reason().filter(|_| app.staff_view) {
        Some(reason) => {
            let back = app.config.keys.hint(crate::ui::keys::Action::Back);
            lines.extend([
                Line::raw(""),
                Line::from(Span::styled(
                    format!("For staff: {reason}"),
                    theme.style(Role::AlertWarn),
                )),
                Line::from(Span::styled(
                    format!("{quit} quits the kiosk; {back} hides this."),
                    theme.style(Role::Muted),
                )),
            ]);
        }
        None => lines.extend([
            Line::raw(""),
            Line::from(Span::styled(
                format!("Staff: {quit} and the supervisor PIN show why."),
                theme.style(Role::Muted),
            )),
        ]),
    }
    let rect = centered(inner, inner.width, lines.len() as u16 + 2);
    frame.render_widget(
        Paragraph::new(lines)
            .alignment(Alignment::Center)
            .wrap(Wrap { trim: true }),
        rect,
    );
}
