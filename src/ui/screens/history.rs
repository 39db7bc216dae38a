//! History: search, filter by date and kind, refund states; request a refund (asked first).

use super::{Binding, framed, key, quiet};
use crate::indicium::ItemKind;
use crate::ui::app::{App, Confirm, HISTORY_ROWS_MAX, Severity};
use crate::ui::event::{Command, IssuedItem, ItemState, JobId, PieceNumber, RefundState};
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

/// One issued item in the history: numbered as its label prints it once the vendor said the
/// number ([`Backend::Numbered`](crate::ui::event::Backend::Numbered), [`IssuedItem`]).
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// The item's one number, `FRK10000001 #9` (`None`: not heard from the vendor yet).
    pub number: Option<PieceNumber>,
    /// This run's job for it (`None`: an earlier run or another terminal).
    pub job: Option<JobId>,
    pub kind: ItemKind,
    /// `YYYY-MM-DD`, as the vendor recorded it.
    pub date: String,
    pub summary: String,
    pub amount: crate::money::Cents,
    pub state: ItemState,
}

impl HistoryRow {
    /// The number shown for it: the label's, or "(numbering)" until the vendor said it.
    pub fn number_text(&self) -> String {
        match &self.number {
            Some(n) => n.to_string(),
            None => match self.job {
                Some(j) => format!("{j}"),
                None => "(numbering)".into(),
            },
        }
    }

    /// Whether it is the item `r` names.
    pub fn is(&self, r: &ItemRef) -> bool {
        match r {
            ItemRef::Job(j) => self.job == Some(*j),
            ItemRef::Number(n) => self.number.as_ref() == Some(n),
        }
    }

    fn same_item(&self, other: &HistoryRow) -> bool {
        (self.job.is_some() && self.job == other.job)
            || (self.number.is_some() && self.number == other.number)
    }
}

impl From<IssuedItem> for HistoryRow {
    fn from(i: IssuedItem) -> HistoryRow {
        HistoryRow {
            number: Some(i.number),
            job: i.job,
            kind: i.kind,
            date: i.date,
            summary: i.summary,
            amount: i.amount,
            state: i.state,
        }
    }
}

/// An item a command names: by this run's job, or by its number (an earlier run's item).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemRef {
    Job(JobId),
    Number(PieceNumber),
}

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
    /// History rows that pass the search (its words, or the item's number as printed — the
    /// whole number or a part of it), date and kind filters.
    pub fn filtered_history(&self) -> Vec<&HistoryRow> {
        let f = &self.history_view.filter;
        let q = f.text(HistoryField::Search).to_lowercase();
        let date = f.text(HistoryField::Date).trim().to_string();
        let kind = f.text(HistoryField::Kind);
        self.history
            .iter()
            .filter(|e| {
                q.is_empty()
                    || e.summary.to_lowercase().contains(&q)
                    || e.number.as_ref().is_some_and(|n| n.matches(&q))
            })
            .filter(|e| e.date.starts_with(&date))
            .filter(|e| kind == "all" || e.kind.name() == kind)
            .collect()
    }

    /// The vendor's list (newest first). Local rows it does not know yet are newer than any it
    /// lists: they go in front, still newest first. A row the vendor lists without its number
    /// keeps the number this run already knows.
    pub(crate) fn on_history_rows(&mut self, rows: Vec<HistoryRow>) {
        let rows: Vec<HistoryRow> = rows
            .into_iter()
            .map(|mut r| {
                if r.number.is_none()
                    && let Some(known) = self.history.iter().find(|l| l.same_item(&r))
                {
                    r.number = known.number.clone();
                }
                r
            })
            .collect();
        let mut merged: Vec<HistoryRow> = self
            .history
            .iter()
            .filter(|local| !rows.iter().any(|r| r.same_item(local)))
            .cloned()
            .collect();
        merged.extend(rows);
        merged.truncate(HISTORY_ROWS_MAX);
        self.history = merged;
        self.history_view.selected = 0;
    }

    /// The vendor's number of a job this run issued.
    pub(crate) fn on_numbered(&mut self, job: JobId, number: PieceNumber) {
        if let Some(r) = self.history.iter_mut().find(|r| r.job == Some(job)) {
            r.number = Some(number.clone());
        }
        if let Some(j) = self.job.as_mut().filter(|j| j.id == job) {
            j.number = Some(number);
        }
    }

    /// The history row of an item.
    pub fn history_row(&self, r: &ItemRef) -> Option<&HistoryRow> {
        self.history.iter().find(|e| e.is(r))
    }

    /// Whether a refund can be requested for the item (printed, or unsettled and so charged).
    pub(crate) fn refundable(&self, r: &ItemRef) -> bool {
        matches!(
            self.history_row(r).map(|e| e.state),
            Some(ItemState::Printed | ItemState::Unsettled)
        )
    }

    /// Asks before a refund request: it cannot be taken back.
    pub(crate) fn ask_refund(&mut self, r: ItemRef) {
        let Some(e) = self.history_row(&r) else {
            return;
        };
        let text = format!(
            "Request a refund for {} ({}, {})? y sends the request; any other key keeps the item.",
            e.number_text(),
            e.summary,
            e.amount
        );
        self.confirm = Some(Confirm::Refund(r));
        self.notice(Severity::Warn, text);
    }

    pub(crate) fn send_refund(&mut self, r: ItemRef, out: &mut Vec<Command>) {
        let name = self
            .history_row(&r)
            .map(HistoryRow::number_text)
            .unwrap_or_default();
        if !self.refundable(&r) {
            self.notice(Severity::Warn, format!("{name}: no refund to request."));
            return;
        }
        out.push(match &r {
            ItemRef::Job(job) => Command::RequestRefund { job: *job },
            ItemRef::Number(number) => Command::RequestRefundByNumber {
                number: number.clone(),
            },
        });
        if let Some(e) = self.history.iter_mut().find(|e| e.is(&r)) {
            e.state = ItemState::Refund(RefundState::Requested);
        }
        self.notice(Severity::Info, format!("Refund requested for {name}."));
    }
}

pub fn keys(_app: &App) -> Vec<Binding> {
    vec![
        key(Action::RequestRefund, "request refund", refund),
        key(Action::Print, "reprint receipt", reprint),
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
    let Some((r, name, state)) = app
        .filtered_history()
        .get(app.history_view.selected)
        .and_then(|e| {
            let r = match (&e.number, e.job) {
                (_, Some(job)) => ItemRef::Job(job),
                (Some(n), None) => ItemRef::Number(n.clone()),
                (None, None) => return None,
            };
            Some((r, e.number_text(), e.state))
        })
    else {
        return;
    };
    match state {
        ItemState::Printed | ItemState::Unsettled => app.ask_refund(r),
        s => app.notice(
            Severity::Warn,
            format!("{name} is {}, so there is no refund to request.", s.label()),
        ),
    }
}

/// The chosen item's receipt printed again (the counter keeps the receipts it printed; a
/// receipt is not value, so a copy is harmless).
fn reprint(app: &mut App, _: Action, out: &mut Vec<Command>) {
    let Some(number) = app
        .filtered_history()
        .get(app.history_view.selected)
        .and_then(|e| e.number.clone())
    else {
        app.notice(
            Severity::Warn,
            "Choose an item with its number to reprint the receipt it was paid on.",
        );
        return;
    };
    app.notice(
        Severity::Info,
        format!("Printing a copy of the receipt with {number}…"),
    );
    out.push(Command::ReprintReceipt { number });
}

pub fn type_key(app: &mut App, code: KeyCode) -> bool {
    let changed = super::type_into(&mut app.history_view.filter, code);
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
                "  {:<17} {:<10} {:>9}  {:<19} {}",
                "number", "date", "amount", "state", "item"
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
            "{:<17} {:<10} {:>9}  {:<19} {} {}",
            e.number_text(),
            e.date,
            e.amount.to_string(),
            e.state.label(),
            super::printing::title_of(e.kind),
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
    crate::ui::panels::rows(frame, table, &lines);
}
