//! The bottom line: the keys that act on this screen, from the same key table the handlers
//! run ([`App::hints`]); each hint is a button for the mouse.

use crate::ui::hits::{Hits, Target};
use crate::ui::theme::Role;
use crate::ui::{App, text};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let theme = &app.config.theme;
    let mut spans = Vec::new();
    let mut used = 0usize;
    for (a, what) in app.hints() {
        let key = app.config.keys.hint(a);
        let w = text::width(&key) + text::width(what) + 3;
        if used + w > area.width as usize {
            break;
        }
        hits.add(
            Rect {
                x: area.x + used as u16,
                width: (w - 2) as u16,
                ..area
            },
            Target::Key(a),
        );
        used += w;
        spans.push(Span::styled(key, theme.style(Role::Title)));
        spans.push(Span::styled(format!(" {what}  "), theme.style(Role::Muted)));
    }
    frame.render_widget(crate::ui::line_widget(Line::from(spans)), area);
}
