//! Refunds to decide (supervisors): the refund requests awaiting a decision, oldest first,
//! each by its number as printed on its label; approve or reject, asked first.

use super::{Binding, framed, key, quiet};
use crate::ui::app::{App, Confirm, Severity};
use crate::ui::event::{Command, ItemState, PieceNumber, RefundAwaiting, RefundState};
use crate::ui::hits::{Hits, Target};
use crate::ui::keys::Action;
use crate::ui::text;
use crate::ui::theme::Role;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RefundsScreen {
    pub rows: Vec<RefundAwaiting>,
    pub selected: usize,
    pub loading: bool,
}

impl App {
    pub(crate) fn load_refunds(&mut self, out: &mut Vec<Command>) {
        self.refunds.loading = true;
        out.push(Command::LoadRefundsAwaiting);
    }

    pub(crate) fn on_refunds_awaiting(&mut self, rows: Vec<RefundAwaiting>) {
        self.refunds.loading = false;
        self.refunds.rows = rows;
        self.refunds.selected = self
            .refunds
            .selected
            .min(self.refunds.rows.len().saturating_sub(1));
    }

    /// Asks before a decision: it moves money and cannot be taken back.
    fn ask_decision(&mut self, approve: bool) {
        let Some(r) = self.refunds.rows.get(self.refunds.selected) else {
            return;
        };
        let what = if approve { "Approve" } else { "Reject" };
        let text = format!(
            "{what} the refund of {} ({}, {})? y {}; any other key leaves it waiting.",
            r.number,
            r.summary,
            r.amount,
            if approve {
                "approves it and returns the amount to the balance"
            } else {
                "rejects it"
            }
        );
        let number = r.number.clone();
        self.confirm = Some(Confirm::Decide { number, approve });
        self.notice(Severity::Warn, text);
    }

    pub(crate) fn send_decision(
        &mut self,
        number: PieceNumber,
        approve: bool,
        out: &mut Vec<Command>,
    ) {
        self.notice(
            Severity::Info,
            format!(
                "{} the refund of {number}…",
                if approve { "Approving" } else { "Rejecting" }
            ),
        );
        out.push(Command::DecideRefund { number, approve });
    }

    pub(crate) fn on_refund_decided(&mut self, number: PieceNumber, approved: bool) {
        self.refunds.rows.retain(|r| r.number != number);
        self.refunds.selected = self
            .refunds
            .selected
            .min(self.refunds.rows.len().saturating_sub(1));
        let state = if approved {
            RefundState::Approved
        } else {
            RefundState::Denied
        };
        if let Some(e) = self
            .history
            .iter_mut()
            .find(|e| e.number.as_ref() == Some(&number))
        {
            e.state = ItemState::Refund(state);
        }
        self.notice(
            Severity::Ok,
            if approved {
                format!("Refund of {number} approved; the amount is back on the balance.")
            } else {
                format!("Refund of {number} rejected.")
            },
        );
    }
}

pub fn keys(app: &App) -> Vec<Binding> {
    let mut v = Vec::new();
    if !app.refunds.rows.is_empty() {
        v.push(key(Action::Approve, "approve", |app, _, _| {
            app.ask_decision(true)
        }));
        v.push(key(Action::Reject, "reject", |app, _, _| {
            app.ask_decision(false)
        }));
    }
    v.push(key(Action::Submit, "refresh", |app, _, out| {
        app.load_refunds(out)
    }));
    v.push(key(Action::Back, "back", |app, _, _| app.back_to_start()));
    v.push(quiet(Action::RowDown, rows));
    v.push(quiet(Action::RowUp, rows));
    v
}

fn rows(app: &mut App, action: Action, _: &mut Vec<Command>) {
    let n = app.refunds.rows.len();
    if n == 0 {
        return;
    }
    let s = &mut app.refunds.selected;
    *s = if action == Action::RowDown {
        (*s + 1) % n
    } else {
        (*s + n - 1) % n
    };
}

/// A click on a row chooses it.
pub fn click_row(app: &mut App, n: usize) {
    if n < app.refunds.rows.len() {
        app.refunds.selected = n;
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let inner = framed(frame, area, app, "Refunds to decide");
    let theme = &app.config.theme;
    let w = inner.width as usize;
    let mut lines = vec![Line::from(Span::styled(
        text::fit(
            &format!(
                "  {:<17} {:>9}  {:<10} {}",
                "number", "amount", "clerk", "item"
            ),
            w,
        ),
        theme.style(Role::Muted),
    ))];
    if app.refunds.rows.is_empty() {
        lines.push(Line::from(Span::styled(
            if app.refunds.loading {
                "  asking the vendor…"
            } else {
                "  no refund requests are waiting"
            },
            theme.style(Role::Muted),
        )));
    }
    let height = inner.height.saturating_sub(1) as usize;
    let first = app
        .refunds
        .selected
        .saturating_sub(height.saturating_sub(1));
    for (i, r) in app.refunds.rows.iter().enumerate().skip(first).take(height) {
        let sel = i == app.refunds.selected;
        super::row_hit(hits, inner, lines.len(), Target::Row(i));
        let row = format!(
            "{:<17} {:>9}  {:<10} {} {}",
            r.number.to_string(),
            r.amount.to_string(),
            r.clerk.as_deref().unwrap_or("-"),
            super::printing::title_of(r.kind),
            r.summary
        );
        lines.push(Line::from(vec![
            Span::styled(if sel { "▶ " } else { "  " }, theme.style(Role::Title)),
            Span::styled(
                text::fit(&row, w.saturating_sub(2)),
                theme.style(if sel { Role::Selection } else { Role::Text }),
            ),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), inner);
}
