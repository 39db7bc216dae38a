//! Settings: theme and printer.

use super::framed;
use crate::ui::App;
use crate::ui::event::PrinterStatus;
use crate::ui::theme::{BUILTIN, Role};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    let inner = framed(frame, area, app, "Settings");
    let theme = &app.config.theme;
    let status = match app.printer {
        PrinterStatus::Unknown => "status unknown".to_string(),
        PrinterStatus::Ready => "ready".to_string(),
        PrinterStatus::Fault(f) => f.to_string(),
    };
    let rows = [
        (
            "Theme",
            format!(
                "◀ {} ▶",
                BUILTIN.get(app.theme_index).copied().unwrap_or("dark")
            ),
        ),
        (
            "Printer",
            format!("{} — {status} (Enter: ask again)", app.config.printer_name),
        ),
    ];
    let mut lines = Vec::new();
    for (i, (k, v)) in rows.iter().enumerate() {
        let sel = i == app.settings_selected;
        lines.push(Line::from(vec![
            Span::styled(if sel { "▶ " } else { "  " }, theme.style(Role::Title)),
            Span::styled(format!("{k:<8} "), theme.style(Role::Text)),
            Span::styled(
                v.clone(),
                if sel {
                    theme.style(Role::Selection)
                } else {
                    theme.style(Role::Input)
                },
            ),
        ]));
    }
    if theme.no_color {
        lines.push(Line::raw(""));
        lines.push(Line::from(Span::styled(
            "NO_COLOR is set: colours are off.",
            theme.style(Role::Muted),
        )));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
