//! End of day: the close-out for a chosen day, for the signed-in clerk, this terminal or (a
//! supervisor) the whole office —
//! items by kind and class, voids, refunds, unsettled items, payments by type against what was
//! issued, the cash expected in the drawer. The figures are the vendor's [`DayReport`] (the
//! same as `frank vendor report --day`); the screen only lays them out, and prints them
//! (Ctrl-P) under the office's name and the clerk's ([`printout_lines`]).

use super::{Binding, framed, key, quiet};
use crate::indicium::kinds::Day;
use crate::ui::app::{App, Severity};
use crate::ui::event::{Command, DayReport, DayScope};
use crate::ui::hits::Hits;
use crate::ui::keys::Action;
use crate::ui::text;
use crate::ui::theme::Role;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

#[derive(Debug, Clone, PartialEq)]
pub struct DayScreen {
    /// The day shown (`None`: today, once the runner told it).
    pub day: Option<Day>,
    pub scope: DayScope,
    pub report: Option<Box<DayReport>>,
    /// Asked; waiting for the vendor.
    pub loading: bool,
    /// First line shown (scrolling).
    pub scroll: usize,
}

impl Default for DayScreen {
    fn default() -> Self {
        DayScreen {
            day: None,
            scope: DayScope::Clerk,
            report: None,
            loading: false,
            scroll: 0,
        }
    }
}

impl App {
    /// Asks the vendor for the chosen day's report.
    pub(crate) fn load_day(&mut self, out: &mut Vec<Command>) {
        let Some(day) = self.day.day.or(self.today) else {
            self.notice(
                Severity::Warn,
                "The date is not known yet; try again in a moment.",
            );
            return;
        };
        self.day.day = Some(day);
        self.day.loading = true;
        self.day.scroll = 0;
        out.push(Command::LoadDayReport {
            day,
            scope: self.day.scope,
        });
    }

    pub(crate) fn on_day_report(&mut self, report: Box<DayReport>) {
        self.day.loading = false;
        self.day.report = Some(report);
    }
}

pub fn keys(_app: &App) -> Vec<Binding> {
    vec![
        key(Action::ChoicePrev, "day before", shift_day),
        key(Action::ChoiceNext, "day after", shift_day),
        key(Action::NextField, "whose day", |app, _, out| {
            // The whole office is for supervisors; the vendor refuses it in words otherwise.
            app.day.scope = match app.day.scope {
                DayScope::Clerk => DayScope::Terminal,
                DayScope::Terminal => DayScope::Office,
                _ => DayScope::Clerk,
            };
            app.load_day(out);
        }),
        key(Action::Print, "print", print),
        key(Action::Back, "back", |app, _, _| app.back_to_start()),
        quiet(Action::Submit, |app, _, out| app.load_day(out)),
        quiet(Action::RowDown, |app, _, _| app.day.scroll += 1),
        quiet(Action::RowUp, |app, _, _| {
            app.day.scroll = app.day.scroll.saturating_sub(1)
        }),
    ]
}

fn shift_day(app: &mut App, action: Action, out: &mut Vec<Command>) {
    let Some(day) = app.day.day.or(app.today) else {
        return;
    };
    let d = if action == Action::ChoiceNext {
        day.days().saturating_add(1)
    } else {
        day.days().saturating_sub(1)
    };
    if action == Action::ChoiceNext && app.today.is_some_and(|t| d > t.days()) {
        app.notice(
            Severity::Info,
            "That is the last day there is a report for.",
        );
        return;
    }
    app.day.day = Some(Day::from_days(d));
    app.load_day(out);
}

/// The close-out printed: the office and who printed it, then the vendor's report as shown.
fn print(app: &mut App, _: Action, out: &mut Vec<Command>) {
    let Some(report) = app.day.report.as_ref().filter(|_| !app.day.loading) else {
        app.notice(
            Severity::Warn,
            "There is no report to print yet; wait for the vendor's answer.",
        );
        return;
    };
    let lines = printout_lines(app.office.as_deref(), app.clerk.as_deref(), report);
    app.notice(Severity::Info, "Printing the end-of-day report…");
    out.push(Command::PrintDayReport { lines });
}

/// What the close-out printout says: the office's name as the vendor knows it, the clerk who
/// printed it, then the report's own lines (the same as the screen and `frank vendor report`).
pub fn printout_lines(
    office: Option<&str>,
    clerk: Option<&str>,
    report: &DayReport,
) -> Vec<String> {
    let mut lines = vec![
        office.unwrap_or("Post office (name not known)").to_string(),
        format!("Printed by clerk {}", clerk.unwrap_or("-")),
        String::new(),
    ];
    lines.extend(report.text_lines());
    lines
}

/// The lines shown (and printed): the vendor's report as text.
pub fn lines(app: &App) -> Vec<String> {
    match &app.day.report {
        Some(r) => r.text_lines(),
        None if app.day.loading => vec!["Asking the vendor for the report…".into()],
        None => vec!["No report yet.".into()],
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, _hits: &mut Hits) {
    let inner = framed(frame, area, app, "End of day");
    let theme = &app.config.theme;
    let [head, body] = Layout::vertical([Constraint::Length(2), Constraint::Min(0)]).areas(inner);
    let who = match app.day.scope {
        DayScope::Clerk => format!("clerk {}", app.clerk.as_deref().unwrap_or("-")),
        DayScope::Terminal => "this terminal".to_string(),
        _ => "the whole office".to_string(),
    };
    let day = app
        .day
        .day
        .map(|d| format!("{d} ({})", crate::ui::input::day_words(d)))
        .unwrap_or_else(|| "today".into());
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(format!("{day}, "), theme.style(Role::Title)),
            Span::styled(who, theme.style(Role::Title)),
            Span::styled(
                if app.day.loading {
                    "  (loading…)"
                } else {
                    ""
                },
                theme.style(Role::Muted),
            ),
        ])),
        head,
    );
    let w = body.width as usize;
    let shown: Vec<Line> = lines(app)
        .iter()
        .skip(app.day.scroll)
        .take(body.height as usize)
        .map(|l| {
            let role = if l.starts_with("  ") {
                Role::Text
            } else {
                Role::Title
            };
            Line::from(Span::styled(text::fit(l, w), theme.style(role)))
        })
        .collect();
    frame.render_widget(Paragraph::new(shown), body);
}
