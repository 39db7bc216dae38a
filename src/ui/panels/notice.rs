//! The notice line above the key hints: the last thing the person needs to know.

use crate::ui::App;
use crate::ui::app::Severity;
use crate::ui::theme::Role;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::Span;

pub fn role_of(s: Severity) -> Role {
    match s {
        Severity::Info => Role::Text,
        Severity::Ok => Role::Ok,
        Severity::Warn => Role::AlertWarn,
        Severity::Error => Role::AlertError,
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App) {
    // Kiosk, idle: the countdown before the form is cleared comes first.
    if let Some(left) = app.idle_countdown_s() {
        let text = crate::ui::text::fit(
            &format!("! Still there? The form clears in {left} s — press any key to keep it."),
            area.width as usize,
        );
        let style = app.config.theme.style(Role::AlertWarn);
        frame.render_widget(crate::ui::line_widget(Span::styled(text, style)), area);
        return;
    }
    let Some(n) = &app.notice else {
        // Otherwise the focused field's error, in full (the form row may cut it).
        if let Some(f) = app.focused_field()
            && let Some(e) = f.shown_error()
        {
            let text = crate::ui::text::fit(&format!("✗ {}: {e}", f.label), area.width as usize);
            let style = app.config.theme.style(Role::AlertError);
            frame.render_widget(crate::ui::line_widget(Span::styled(text, style)), area);
        }
        return;
    };
    let mark = match n.severity {
        Severity::Info => "i ",
        Severity::Ok => "✓ ",
        Severity::Warn => "! ",
        Severity::Error => "✗ ",
    };
    let text = crate::ui::text::fit(&format!("{mark}{}", n.text), area.width as usize);
    frame.render_widget(
        crate::ui::line_widget(Span::styled(
            text,
            app.config.theme.style(role_of(n.severity)),
        )),
        area,
    );
}
