//! Review & confirm: what will be issued and charged; the reason when printing is disabled.
//! Confirming sends the one Authorize for the draft (a kiosk takes the card payment first).

use super::{Binding, framed, key};
use crate::indicium::Item;
use crate::money::Cents;
use crate::ui::app::{App, Job, JobPhase, Screen, Severity, item_value_max};
use crate::ui::event::{Command, JobId, LabelText};
use crate::ui::hits::{Hits, Target};
use crate::ui::keys::Action;
use crate::ui::text;
use crate::ui::theme::Role;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Wrap};

/// An item ready for review.
#[derive(Debug, Clone, PartialEq)]
pub struct Draft {
    pub item: Item,
    pub amount: Cents,
    /// Address blocks and origin ZIP for the label.
    pub label: LabelText,
    /// Lines for the review screen.
    pub summary: Vec<(String, String)>,
}

#[derive(Debug, Clone)]
pub struct ReviewScreen {
    pub draft: Option<Draft>,
    /// Where Back returns to.
    pub from: Screen,
}

impl Default for ReviewScreen {
    fn default() -> Self {
        ReviewScreen {
            draft: None,
            from: Screen::Home,
        }
    }
}

pub fn keys(app: &App) -> Vec<Binding> {
    let confirm = if app.config.kiosk {
        "pay by card"
    } else {
        "confirm & print"
    };
    let mut v = vec![key(Action::Submit, confirm, confirm_draft)];
    if !app.config.kiosk {
        v.push(key(Action::AddToBasket, "add to basket", |app, _, _| {
            app.add_to_basket()
        }));
    }
    v.push(key(Action::Back, "edit", |app, _, _| {
        app.notice = None;
        app.screen = app.review.from;
    }));
    v
}

fn confirm_draft(app: &mut App, _: Action, out: &mut Vec<Command>) {
    if let Some(d) = app
        .review
        .draft
        .as_ref()
        .filter(|d| d.amount > item_value_max())
    {
        let text = format!(
            "{} is over {}, the most one item may be worth; go back and lower it.",
            d.amount,
            item_value_max()
        );
        app.notice(Severity::Error, text);
        return;
    }
    if let Some(reason) = app.print_block_reason() {
        app.notice(Severity::Error, reason);
        return;
    }
    if app.config.kiosk {
        // Kiosk pays by card for exactly this item first.
        let amount = app
            .review
            .draft
            .as_ref()
            .map(|d| d.amount)
            .unwrap_or(Cents::ZERO);
        app.start_card_payment(amount);
        return;
    }
    app.authorize(out);
}

impl App {
    /// Sends Authorize for the draft, consuming it: the same draft can never be issued twice.
    pub(crate) fn authorize(&mut self, out: &mut Vec<Command>) {
        let Some(draft) = self.review.draft.take() else {
            return;
        };
        self.issue(draft, out);
        self.spend_form();
        self.notice = None;
        self.screen = Screen::Printing;
    }

    /// The form that made the draft is spent.
    pub(crate) fn spend_form(&mut self) {
        match self.review.from {
            Screen::Postage => self.postage.clear(),
            _ => self.item_form.form.clear(),
        }
    }

    /// A new job for `draft` and its one Authorize.
    pub(crate) fn issue(&mut self, draft: Draft, out: &mut Vec<Command>) -> JobId {
        let id = JobId(self.next_job);
        self.next_job += 1;
        let kind = draft.item.kind();
        self.job = Some(Job {
            id,
            kind,
            title: super::printing::title_of(kind).to_string(),
            amount: draft.amount,
            phase: JobPhase::Authorizing,
            cause: None,
            assumed_on_paper: false,
            number: None,
        });
        out.push(Command::Authorize {
            job: id,
            item: Box::new(draft.item),
            amount: draft.amount,
            label: Box::new(draft.label),
        });
        id
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let inner = framed(frame, area, app, "Review & confirm");
    let theme = &app.config.theme;
    let mut lines = Vec::new();
    let Some(d) = &app.review.draft else {
        lines.push(Line::from(Span::styled(
            "Nothing to review.",
            theme.style(Role::Muted),
        )));
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    };
    let label_cols = d
        .summary
        .iter()
        .map(|(k, _)| text::width(k))
        .max()
        .unwrap_or(0);
    for (k, v) in &d.summary {
        lines.push(Line::from(vec![
            Span::styled(text::pad(k, label_cols), theme.style(Role::Muted)),
            Span::raw("  "),
            Span::styled(v.clone(), theme.style(Role::Text)),
        ]));
    }
    lines.push(Line::raw(""));
    lines.push(Line::from(vec![
        Span::styled("Total  ", theme.style(Role::Text)),
        Span::styled(d.amount.to_string(), theme.style(Role::Title)),
    ]));
    lines.push(Line::raw(""));
    match app.print_block_reason() {
        Some(reason) => lines.push(Line::from(Span::styled(
            format!("✗ {reason}"),
            theme.style(Role::AlertError),
        ))),
        None => {
            let key = app.config.keys.hint(Action::Submit);
            let what = if app.config.kiosk {
                "pay by card"
            } else {
                "charge the balance and print once"
            };
            // The confirm line is a button.
            super::row_hit(hits, inner, lines.len(), Target::Key(Action::Submit));
            lines.push(Line::from(Span::styled(
                format!("Press {key} to {what}. An issued item is never printed twice."),
                theme.style(Role::InputFocus),
            )));
        }
    }
    frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: false }), inner);
}
