//! The help overlay, generated from the key-binding table (only the keys acting on the screen
//! shown when all do not fit).

use crate::ui::theme::Role;
use crate::ui::{App, centered, text};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let theme = &app.config.theme;
    let mut rows = app.config.keys.help_rows();
    if rows.len() + 2 > area.height as usize {
        // Too many for the terminal: the keys that act on this screen (and quit).
        let acting: Vec<&'static str> = app
            .key_table()
            .iter()
            .map(|b| b.action.describe())
            .chain([crate::ui::keys::Action::Quit.describe()])
            .collect();
        rows.retain(|(_, d)| acting.contains(d));
    }
    let keys_cols = rows
        .iter()
        .map(|(k, _)| text::width(k))
        .max()
        .unwrap_or(0)
        .min(24);
    let inner_w = (keys_cols + 2 + 44) as u16;
    let rect = centered(area, inner_w + 2, rows.len() as u16 + 2);
    let lines: Vec<Line> = rows
        .iter()
        .map(|(k, d)| {
            Line::from(vec![
                Span::styled(text::pad(k, keys_cols), theme.style(Role::Title)),
                Span::raw("  "),
                Span::styled(*d, theme.style(Role::Text)),
            ])
        })
        .collect();
    frame.render_widget(Clear, rect);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::bordered()
                .title(" Keys ")
                .border_style(theme.style(Role::Border)),
        ),
        rect,
    );
}
