//! Settings: theme (kept in the config file by the shell) and printer status.

use super::{Binding, framed, key, quiet};
use crate::ui::app::{App, Severity};
use crate::ui::event::{Command, PrinterStatus};
use crate::ui::hits::{Hits, Target};
use crate::ui::keys::Action;
use crate::ui::theme::{BUILTIN, Role, Theme};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

/// Rows: the theme, the printer.
const ROWS: usize = 2;

#[derive(Debug, Clone)]
pub struct SettingsScreen {
    /// 0: theme, 1: printer.
    pub selected: usize,
    /// Index into [`BUILTIN`] of the theme in use.
    pub theme_index: usize,
}

impl SettingsScreen {
    pub fn new(theme: &Theme) -> SettingsScreen {
        SettingsScreen {
            selected: 0,
            theme_index: BUILTIN.iter().position(|n| *n == theme.name).unwrap_or(0),
        }
    }
}

pub fn keys(_app: &App) -> Vec<Binding> {
    vec![
        key(Action::ChoiceNext, "theme", choice),
        key(Action::Back, "back", |app, _, _| app.back_to_start()),
        quiet(Action::ChoicePrev, choice),
        quiet(Action::RowDown, row),
        quiet(Action::NextField, row),
        quiet(Action::RowUp, row),
        quiet(Action::PrevField, row),
        quiet(Action::Submit, submit),
    ]
}

fn row(app: &mut App, _: Action, _: &mut Vec<Command>) {
    app.settings.selected = (app.settings.selected + 1) % ROWS;
}

fn choice(app: &mut App, action: Action, _: &mut Vec<Command>) {
    if app.settings.selected != 0 {
        return;
    }
    let n = BUILTIN.len();
    let s = &mut app.settings;
    s.theme_index = if action == Action::ChoiceNext {
        (s.theme_index + 1) % n
    } else {
        (s.theme_index + n - 1) % n
    };
    let no_color = app.config.theme.no_color;
    match Theme::builtin(BUILTIN[app.settings.theme_index], no_color) {
        Ok(t) => {
            app.theme_to_save = Some(t.name.clone());
            app.config.theme = t;
        }
        Err(e) => app.notice(Severity::Error, e),
    }
}

fn submit(app: &mut App, _: Action, out: &mut Vec<Command>) {
    if app.settings.selected == 1 {
        out.push(Command::ProbePrinter);
        app.notice(Severity::Info, "Asking the printer for its status…");
    }
}

/// A click on a row chooses it; on the theme row it moves to the next theme, on the printer
/// row it asks the printer again.
pub fn click_row(app: &mut App, n: usize, out: &mut Vec<Command>) {
    if n >= ROWS {
        return;
    }
    app.settings.selected = n;
    if n == 0 {
        choice(app, Action::ChoiceNext, out);
    } else {
        submit(app, Action::Submit, out);
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
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
                BUILTIN
                    .get(app.settings.theme_index)
                    .copied()
                    .unwrap_or("dark")
            ),
        ),
        (
            "Printer",
            format!("{} — {status} (Enter: ask again)", app.config.printer_name),
        ),
    ];
    let mut lines = Vec::new();
    for (i, (k, v)) in rows.iter().enumerate() {
        let sel = i == app.settings.selected;
        super::row_hit(hits, inner, i, Target::Row(i));
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
