//! The supervisor PIN prompt (kiosk quit).

use crate::ui::theme::Role;
use crate::ui::{App, centered};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let Some(field) = &app.pin_prompt else {
        return;
    };
    let theme = &app.config.theme;
    let rect = centered(area, 40, 5);
    let mut lines = vec![Line::from(vec![
        Span::styled("PIN: ", theme.style(Role::Text)),
        Span::styled(field.display(), theme.style(Role::InputFocus)),
        Span::styled("▏", theme.style(Role::InputFocus)),
    ])];
    if let Some(e) = field.shown_error() {
        lines.push(Line::from(Span::styled(
            format!("✗ {e}"),
            theme.style(Role::AlertError),
        )));
    }
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" Supervisor PIN to quit (Esc cancels) ")
                .border_style(theme.style(Role::Border)),
        ),
        rect,
    );
}
