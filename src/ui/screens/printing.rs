//! Printing: the progress gauge (% sent to the printer), then the outcome — the item in flight from
//! Authorized to its settlement (one Print per job, ever), and what may be done after.

use super::{Binding, framed, key, quiet};
use crate::counter::jobbook::Settlement;
use crate::indicium::ItemKind;
use crate::money::Cents;
use crate::printer::streamer::{JobOutcome, Progress};
use crate::ui::app::{App, HISTORY_ROWS_MAX, Screen, Severity};
use crate::ui::event::{Command, ItemState, JobId, PieceNumber, RefundState, SettlePhase};
use crate::ui::hits::Hits;
use crate::ui::keys::Action;
use crate::ui::panels::notice::role_of;
use crate::ui::screens::history::{HistoryRow, ItemRef};
use crate::ui::theme::Role;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Gauge, Paragraph, Wrap};

#[derive(Debug, Clone, PartialEq)]
pub enum JobPhase {
    /// Authorize sent; waiting for the vendor.
    Authorizing,
    Printing(Progress),
    Done {
        severity: Severity,
        message: String,
    },
}

/// The one item in flight (or just finished).
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub kind: ItemKind,
    pub title: String,
    pub amount: Cents,
    pub phase: JobPhase,
    /// Why the print stopped, in words (None: it completed).
    pub cause: Option<String>,
    /// The printer could not say whether the indicium printed; it counts as printed.
    pub assumed_on_paper: bool,
    /// The vendor's number for it, as its label prints it (from `Backend::Numbered`).
    pub number: Option<PieceNumber>,
}

impl Job {
    /// Its number as shown: the label's once known, the job's until then.
    pub fn number_text(&self) -> String {
        match &self.number {
            Some(n) => n.to_string(),
            None => self.id.to_string(),
        }
    }
}

pub fn title_of(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Postage => "Postage label",
        ItemKind::Ticket => "Ticket",
        ItemKind::Check => "Check",
        ItemKind::Coupon => "Coupon",
        _ => "Gift certificate",
    }
}

/// Nothing acts while the item prints; after, a new item, a refund request, or back.
pub fn keys(app: &App) -> Vec<Binding> {
    let done = app
        .job
        .as_ref()
        .is_some_and(|j| matches!(j.phase, JobPhase::Done { .. }));
    if !done {
        return vec![];
    }
    if app.config.kiosk {
        return vec![
            key(Action::Submit, "finish", finish),
            quiet(Action::NewItem, finish),
            quiet(Action::Back, finish),
        ];
    }
    vec![
        key(Action::NewItem, "new item", |app, _, _| {
            app.notice = None;
            app.screen = Screen::Postage;
        }),
        key(Action::RequestRefund, "refund", refund),
        key(Action::Back, "home", |app, _, _| app.back_to_start()),
        quiet(Action::Submit, |app, _, _| app.back_to_start()),
    ]
}

fn finish(app: &mut App, _: Action, _: &mut Vec<Command>) {
    app.job = None;
    app.reset_kiosk();
}

fn refund(app: &mut App, _: Action, _: &mut Vec<Command>) {
    let Some(id) = app.job.as_ref().map(|j| j.id) else {
        return;
    };
    if app.refundable(&ItemRef::Job(id)) {
        app.ask_refund(ItemRef::Job(id));
    } else {
        app.notice(Severity::Warn, "No refund to request for this item.");
    }
}

impl App {
    pub(crate) fn on_authorize_failed(&mut self, job: JobId, reason: String) {
        let kiosk = self.config.kiosk;
        if let Some(j) = self.job.as_mut().filter(|j| j.id == job) {
            j.phase = JobPhase::Done {
                severity: Severity::Error,
                message: if kiosk {
                    // The card payment came first and stays on the account. The
                    // vendor's reason is office data (e.g. the account's balance).
                    "Your item could not be issued. Your payment is kept; please ask staff for a refund.".to_string()
                } else {
                    format!("Not issued: {reason}. Nothing was charged.")
                },
            };
        }
    }

    pub(crate) fn on_progress(&mut self, job: JobId, progress: Progress) {
        if let Some(j) = self
            .job
            .as_mut()
            .filter(|j| j.id == job && matches!(j.phase, JobPhase::Printing(_)))
        {
            j.phase = JobPhase::Printing(progress);
        }
    }

    pub(crate) fn on_authorized(&mut self, job: JobId, out: &mut Vec<Command>) {
        let Some(j) = self.job.as_mut().filter(|j| j.id == job) else {
            return;
        };
        // One-time rule: Print is sent at most once per job, whatever the backend repeats.
        if self.printed.contains(job) || j.phase != JobPhase::Authorizing {
            return;
        }
        let entry = HistoryRow {
            number: j.number.clone(),
            job: Some(job),
            kind: j.kind,
            date: String::new(),
            summary: j.title.clone(),
            amount: j.amount,
            state: ItemState::Printing,
        };
        if !self
            .link
            .as_ref()
            .is_some_and(|l| l.state.allows_printing())
        {
            // Nothing reaches the printer: the backend's job book voids it.
            j.cause = Some("Link lost before printing".into());
            j.phase = JobPhase::Done {
                severity: Severity::Warn,
                message: "Link lost before printing — voiding the item…".into(),
            };
            out.push(Command::Void { job });
            self.push_history(HistoryRow {
                state: ItemState::Settling,
                ..entry
            });
            return;
        }
        j.phase = JobPhase::Printing(Progress::default());
        self.printed.insert(job);
        out.push(Command::Print { job });
        self.push_history(entry);
    }

    /// A new item goes first: the history is kept newest first.
    fn push_history(&mut self, e: HistoryRow) {
        self.history.truncate(HISTORY_ROWS_MAX - 1);
        self.history.insert(0, e);
    }

    /// The print ended. Display only: what it means for the money is the backend's job
    /// book's decision, which arrives as [`Backend::Settlement`].
    pub(crate) fn on_outcome(&mut self, job: JobId, outcome: JobOutcome) {
        let Some(j) = self.job.as_mut().filter(|j| j.id == job) else {
            return;
        };
        let cause = match outcome {
            JobOutcome::Completed { .. } => None,
            JobOutcome::Aborted { .. } => Some("Link lost".to_string()),
            JobOutcome::Faulted { fault, .. } => Some(format!("Printer: {fault}")),
            #[allow(unreachable_patterns)]
            _ => Some("Print stopped".to_string()),
        };
        j.cause = cause;
        if matches!(j.phase, JobPhase::Printing(_)) {
            j.phase = JobPhase::Done {
                severity: Severity::Info,
                message: "Print ended — settling with the vendor…".into(),
            };
        }
        self.set_item_state(job, ItemState::Settling);
    }

    /// What the job book decided for a job's money, and the vendor's answer.
    pub(crate) fn on_settlement(
        &mut self,
        job: JobId,
        piece: Option<u64>,
        amount: Cents,
        settlement: Settlement,
        phase: SettlePhase,
    ) {
        let current = self.job.as_ref().filter(|j| j.id == job);
        // A job no longer on screen (or left by the last run) is named by its piece.
        let known = self
            .history
            .iter()
            .find(|r| r.job == Some(job))
            .and_then(|r| r.number.clone());
        let title = match (current, known, piece) {
            (Some(j), _, _) => format!("{} {}", j.title.to_lowercase(), j.number_text()),
            (None, Some(n), _) => n.to_string(),
            (None, None, Some(p)) => format!("piece {p}"),
            (None, None, None) => "an item".to_string(),
        };
        let cause = current.and_then(|j| j.cause.clone());
        let assumed = current.is_some_and(|j| j.assumed_on_paper);
        let lead = cause.clone().unwrap_or_else(|| "Print stopped".into());
        let (severity, message, state) = match (settlement, &phase) {
            (Settlement::Commit, SettlePhase::Sending) => (
                Severity::Info,
                format!("Printed {title} — settling with the vendor…"),
                ItemState::Settling,
            ),
            (Settlement::Commit, SettlePhase::Done) => (
                Severity::Ok,
                format!("Printed {title} — {amount} charged."),
                ItemState::Printed,
            ),
            (Settlement::Void, SettlePhase::Sending) => (
                Severity::Warn,
                format!("{lead} — the label did not print its indicium; voiding it…"),
                ItemState::Settling,
            ),
            (Settlement::Void, SettlePhase::Done) => (
                if cause.as_deref().is_some_and(|c| c.starts_with("Printer")) {
                    Severity::Error
                } else {
                    Severity::Warn
                },
                format!("{lead} — label voided, {amount} returned to balance"),
                ItemState::Voided,
            ),
            (Settlement::VoidReachedPrinter, SettlePhase::Sending) => (
                Severity::Warn,
                format!("{lead} after the indicium printed — asking the vendor for a refund…"),
                ItemState::Settling,
            ),
            (Settlement::VoidReachedPrinter, SettlePhase::Done) if assumed => (
                Severity::Warn,
                format!(
                    "{lead} after the indicium was sent — this printer cannot confirm what it printed, so {amount} is charged and a refund requested"
                ),
                ItemState::Refund(RefundState::Requested),
            ),
            (Settlement::VoidReachedPrinter, SettlePhase::Done) => (
                Severity::Warn,
                format!("{lead} after the indicium printed — {amount} charged, refund requested"),
                ItemState::Refund(RefundState::Requested),
            ),
            (_, SettlePhase::Refused(why)) => (
                Severity::Error,
                format!(
                    "{title}: the vendor refused to settle it ({why}). Ask a supervisor to check it in the history."
                ),
                ItemState::Printed,
            ),
        };
        self.set_item_state(job, state);
        match self.job.as_mut().filter(|j| j.id == job) {
            Some(j) if !matches!(j.phase, JobPhase::Authorizing | JobPhase::Printing(_)) => {
                j.phase = JobPhase::Done { severity, message };
            }
            Some(_) => {}
            None if phase != SettlePhase::Sending => self.notice(severity, message),
            None => {}
        }
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, _hits: &mut Hits) {
    let inner = framed(frame, area, app, "Printing");
    let theme = &app.config.theme;
    let Some(job) = &app.job else {
        frame.render_widget(
            Paragraph::new(Span::styled(
                "No item in progress.",
                theme.style(Role::Muted),
            )),
            inner,
        );
        return;
    };
    let [head, gauge, _, msg] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    frame.render_widget(
        Paragraph::new(Span::styled(
            format!("{} {} — {}", job.title, job.number_text(), job.amount),
            theme.style(Role::Title),
        )),
        head,
    );
    match &job.phase {
        JobPhase::Authorizing => frame.render_widget(
            Paragraph::new(Span::styled(
                "Asking the vendor to sign the item…",
                theme.style(Role::Muted),
            )),
            gauge,
        ),
        JobPhase::Printing(p) => {
            // A percentage a clerk can read; bytes mean nothing at the counter.
            let label = format!("{}% sent to the printer", p.percent());
            frame.render_widget(
                Gauge::default()
                    .gauge_style(theme.style(Role::Gauge))
                    .percent(u16::from(p.percent().min(100)))
                    .label(label),
                gauge,
            );
        }
        JobPhase::Done { severity, message } => {
            let mut lines = vec![Line::from(Span::styled(
                message.clone(),
                theme.style(role_of(*severity)),
            ))];
            lines.push(Line::raw(""));
            let keys = &app.config.keys;
            let next = if app.config.kiosk {
                format!("Press {} to finish.", keys.hint(Action::Submit))
            } else {
                format!(
                    "{} new item · {} request refund · {} home. This item cannot be printed again.",
                    keys.hint(Action::NewItem),
                    keys.hint(Action::RequestRefund),
                    keys.hint(Action::Back)
                )
            };
            lines.push(Line::from(Span::styled(next, theme.style(Role::Muted))));
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), msg);
        }
    }
}
