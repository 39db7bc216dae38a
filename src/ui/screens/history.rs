//! History: search, filter by date and kind, refund states; request a refund (asked first).

use super::{Binding, framed, key, quiet};
use crate::indicium::ItemKind;
use crate::ui::app::{App, Confirm, HISTORY_ROWS_MAX, Severity};
use crate::ui::event::{Command, HistoryEntry, ItemState, JobId, RefundState};
use crate::ui::form::{Field, Form};
use crate::ui::hits::{Hits, Target};
use crate::ui::keys::Action;
use crate::ui::panels::form;
use crate::ui::text;
use crate::ui::theme::Role;
use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryField {
    Search,
    Date,
    Kind,
}

#[derive(Debug, Clone)]
pub struct HistoryScreen {
    pub filter: Form<HistoryField>,
    /// Index into the filtered rows.
    pub selected: usize,
}

impl HistoryScreen {
    pub fn new() -> HistoryScreen {
        let mut kinds = vec!["all"];
        kinds.extend(ItemKind::ALL.iter().map(|k| k.name()));
        HistoryScreen {
            filter: Form::new(vec![
                Field::text(HistoryField::Search, "Search", 32),
                Field::text(HistoryField::Date, "Date (prefix)", 10),
                Field::choice(HistoryField::Kind, "Kind", kinds),
            ]),
            selected: 0,
        }
    }
}

impl Default for HistoryScreen {
    fn default() -> Self {
        HistoryScreen::new()
    }
}

impl App {
    /// History rows that pass the search, date and kind filters.
    pub fn filtered_history(&self) -> Vec<&HistoryEntry> {
        let f = &self.history_view.filter;
        let q = f.text(HistoryField::Search).to_lowercase();
        let date = f.text(HistoryField::Date).trim().to_string();
        let kind = f.text(HistoryField::Kind);
        self.history
            .iter()
            .filter(|e| q.is_empty() || e.summary.to_lowercase().contains(&q))
            .filter(|e| e.date.starts_with(&date))
            .filter(|e| kind == "all" || e.kind.name() == kind)
            .collect()
    }

    /// The vendor's list (newest first). Local rows it does not know yet are newer than any it
    /// lists: they go in front, still newest first.
    pub(crate) fn on_history_rows(&mut self, rows: Vec<HistoryEntry>) {
        let mut merged: Vec<HistoryEntry> = self
            .history
            .iter()
            .filter(|local| !rows.iter().any(|r| r.job == local.job))
            .cloned()
            .collect();
        merged.extend(rows);
        merged.truncate(HISTORY_ROWS_MAX);
        self.history = merged;
        self.history_view.selected = 0;
    }

    /// Whether a refund can be requested for `job` (printed, or unsettled and so charged).
    pub(crate) fn refundable(&self, job: JobId) -> bool {
        matches!(
            self.item_state(job),
            Some(ItemState::Printed | ItemState::Unsettled)
        )
    }

    /// Asks before a refund request: it cannot be taken back.
    pub(crate) fn ask_refund(&mut self, job: JobId) {
        let Some(e) = self.history.iter().find(|e| e.job == job) else {
            return;
        };
        let text = format!(
            "Request a refund for {job} ({}, {})? y sends the request; any other key keeps the item.",
            e.summary, e.amount
        );
        self.confirm = Some(Confirm::Refund(job));
        self.notice(Severity::Warn, text);
    }

    pub(crate) fn send_refund(&mut self, job: JobId, out: &mut Vec<Command>) {
        if !self.refundable(job) {
            self.notice(Severity::Warn, format!("{job}: no refund to request."));
            return;
        }
        out.push(Command::RequestRefund { job });
        self.set_item_state(job, ItemState::Refund(RefundState::Requested));
        self.notice(Severity::Info, format!("Refund requested for {job}."));
    }
}

pub fn keys(_app: &App) -> Vec<Binding> {
    vec![
        key(Action::RequestRefund, "request refund", refund),
        key(Action::NextField, "filter", filter_nav),
        key(Action::Back, "back", |app, _, _| app.back_to_start()),
        quiet(Action::RowDown, rows),
        quiet(Action::RowUp, rows),
        quiet(Action::PrevField, filter_nav),
        quiet(Action::ChoiceNext, filter_nav),
        quiet(Action::ChoicePrev, filter_nav),
    ]
}

fn rows(app: &mut App, action: Action, _: &mut Vec<Command>) {
    let n = app.filtered_history().len();
    if n == 0 {
        return;
    }
    let s = &mut app.history_view.selected;
    *s = if action == Action::RowDown {
        (*s + 1) % n
    } else {
        (*s + n - 1) % n
    };
}

fn filter_nav(app: &mut App, action: Action, _: &mut Vec<Command>) {
    if super::nav(&mut app.history_view.filter, action) {
        app.history_view.selected = 0;
    }
}

fn refund(app: &mut App, _: Action, _: &mut Vec<Command>) {
    let Some((job, state)) = app
        .filtered_history()
        .get(app.history_view.selected)
        .map(|e| (e.job, e.state))
    else {
        return;
    };
    match state {
        ItemState::Printed | ItemState::Unsettled => app.ask_refund(job),
        s => app.notice(
            Severity::Warn,
            format!("{job} is {}, so there is no refund to request.", s.label()),
        ),
    }
}

pub fn type_key(app: &mut App, code: KeyCode) -> bool {
    let Some(field) = app.history_view.filter.focused_mut() else {
        return false;
    };
    let changed = match code {
        KeyCode::Char(c) => field.type_char(c),
        KeyCode::Backspace => field.backspace(),
        _ => false,
    };
    if changed {
        app.history_view.selected = 0;
    }
    changed
}

/// A click on a row chooses it.
pub fn click_row(app: &mut App, n: usize) {
    if n < app.filtered_history().len() {
        app.history_view.selected = n;
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let inner = framed(frame, area, app, "History");
    let theme = &app.config.theme;
    let [filters, _, table] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    form::draw(
        frame,
        filters,
        &app.history_view.filter,
        &[0, 1, 2],
        theme,
        true,
        hits,
    );
    let rows = app.filtered_history();
    let w = table.width as usize;
    let mut lines = vec![Line::from(Span::styled(
        text::fit(
            &format!(
                "  {:<6} {:<16} {:<10} {:>10}  {:<18} {}",
                "job", "kind", "date", "amount", "state", "item"
            ),
            w,
        ),
        theme.style(Role::Muted),
    ))];
    if rows.is_empty() {
        lines.push(Line::from(Span::styled(
            "  no items match",
            theme.style(Role::Muted),
        )));
    }
    let height = table.height.saturating_sub(1) as usize;
    let first = app
        .history_view
        .selected
        .saturating_sub(height.saturating_sub(1));
    for (i, e) in rows.iter().enumerate().skip(first).take(height) {
        let sel = i == app.history_view.selected;
        super::row_hit(hits, table, lines.len(), Target::Row(i));
        let row = format!(
            "{:<6} {:<16} {:<10} {:>10}  {:<18} {}",
            e.job.to_string(),
            e.kind.name(),
            e.date,
            e.amount.to_string(),
            e.state.label(),
            e.summary
        );
        let style = if sel {
            theme.style(Role::Selection)
        } else {
            theme.style(Role::Text)
        };
        lines.push(Line::from(vec![
            Span::styled(if sel { "▶ " } else { "  " }, theme.style(Role::Title)),
            Span::styled(text::fit(&row, w.saturating_sub(2)), style),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), table);
}
