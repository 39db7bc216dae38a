//! The customer's basket: several reviewed items of any kinds (each priced — postage quoted
//! live — before it is added), one list with the total, one confirmation. Items are then
//! authorized and printed in order, each with its own outcome: one that fails is not issued
//! or is voided and flagged, and the rest go on. Then the customer's payment (cash with the
//! change due, card, check, other) is recorded with the vendor (`RecordTender`) for the items
//! that were charged, and the receipt is shown.
//!
//! States ([`BasketPhase`]): `Building` (adding and removing) → `Running` (one item at a time
//! through the printing machinery) → `Paying` (the tender form) → `Receipt`. A basket with
//! nothing charged goes back to `Building` empty.

use super::review::Draft;
use super::{Binding, form_nav, framed, key, quiet};
use crate::counter::jobbook::Settlement;
use crate::ledger::report::BASKET_PIECES_MAX;
use crate::money::Cents;
use crate::ui::app::{App, Screen, Severity};
use crate::ui::event::{BasketId, Command, JobId, PieceNumber, Tender, TenderKind};
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
use ratatui::widgets::{Paragraph, Wrap};

/// Width of a receipt line, in characters (fits a 58 mm roll's 32 and an 80 mm roll's 42
/// when the amounts are right-aligned to it).
pub const RECEIPT_COLS: usize = 40;

/// Most items in one basket: what one tender may name at the vendor.
pub const BASKET_ITEMS_MAX: usize = BASKET_PIECES_MAX;

/// Where one basket item is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Not started.
    Waiting,
    Authorizing,
    Printing,
    /// The print ended; the job book's decision is on its way.
    Ended,
    /// Printed and charged.
    Charged,
    /// The vendor did not issue it; nothing charged. The words say why.
    NotIssued(String),
    /// Not on paper: voided, amount returned. The words say why.
    Voided(String),
    /// It stopped after the indicium printed: charged to the office, refund requested; not
    /// charged to the customer.
    Flagged(String),
}

impl ItemOutcome {
    /// Whether it is over (nothing more to wait for before the payment).
    pub fn is_final(&self) -> bool {
        !matches!(
            self,
            ItemOutcome::Waiting
                | ItemOutcome::Authorizing
                | ItemOutcome::Printing
                | ItemOutcome::Ended
        )
    }

    pub fn words(&self) -> String {
        match self {
            ItemOutcome::Waiting => "waiting".into(),
            ItemOutcome::Authorizing => "asking the vendor".into(),
            ItemOutcome::Printing => "printing".into(),
            ItemOutcome::Ended => "settling".into(),
            ItemOutcome::Charged => "printed".into(),
            ItemOutcome::NotIssued(w) => w.clone(),
            ItemOutcome::Voided(w) => format!("voided: {w}"),
            ItemOutcome::Flagged(w) => format!("flagged: {w}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BasketItem {
    pub draft: Draft,
    pub job: Option<JobId>,
    pub number: Option<PieceNumber>,
    pub outcome: ItemOutcome,
    /// Why its print stopped, in words (kept from the printing job for the outcome).
    pub cause: Option<String>,
}

impl BasketItem {
    pub fn title(&self) -> &'static str {
        super::printing::title_of(self.draft.item.kind())
    }

    /// A line describing it: the draft's main line ("To" for postage, else the first).
    pub fn summary(&self) -> String {
        let s = &self.draft.summary;
        s.iter()
            .find(|(k, _)| k == "To")
            .or_else(|| s.first())
            .map(|(k, v)| format!("{k} {v}"))
            .unwrap_or_default()
    }
}

/// The receipt of a paid basket: its lines, as shown and as printed, and the numbers of the
/// items it charged (it is reprinted from history by any of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub lines: Vec<String>,
    pub pieces: Vec<PieceNumber>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BasketPhase {
    Building,
    Running,
    Paying,
    Receipt(Receipt),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenderField {
    Kind,
    Tendered,
}

#[derive(Debug, Clone)]
pub struct BasketScreen {
    pub id: BasketId,
    pub items: Vec<BasketItem>,
    pub selected: usize,
    pub phase: BasketPhase,
    pub tender: Form<TenderField>,
    /// RecordTender sent; waiting for the vendor.
    pub recording: bool,
}

fn tender_form() -> Form<TenderField> {
    Form::new(vec![
        Field::choice(
            TenderField::Kind,
            "Paid by",
            TenderKind::ALL.iter().map(|k| k.as_str()).collect(),
        ),
        Field::text(TenderField::Tendered, "Cash given $", 12),
    ])
}

impl BasketScreen {
    pub fn new(id: BasketId) -> BasketScreen {
        BasketScreen {
            id,
            items: Vec::new(),
            selected: 0,
            phase: BasketPhase::Building,
            tender: tender_form(),
            recording: false,
        }
    }

    /// The sum of the items as listed (before they print).
    pub fn listed_total(&self) -> Cents {
        sum(self.items.iter().map(|i| i.draft.amount))
    }

    /// The sum of the items charged: what the customer pays.
    pub fn charged_total(&self) -> Cents {
        sum(self
            .items
            .iter()
            .filter(|i| i.outcome == ItemOutcome::Charged)
            .map(|i| i.draft.amount))
    }

    pub fn tender_kind(&self) -> TenderKind {
        self.tender
            .chosen(TenderField::Kind, &TenderKind::ALL, TenderKind::Cash)
    }

    /// The tender as typed: cash given and the change due, or the total for the other kinds.
    pub fn tender_now(&self) -> Result<Tender, String> {
        let total = self.charged_total();
        let kind = self.tender_kind();
        if kind != TenderKind::Cash {
            return Ok(Tender {
                kind,
                amount_tendered: total,
                change: Cents::ZERO,
            });
        }
        let given = Cents::parse_dollars(self.tender.text(TenderField::Tendered))
            .map_err(|e| e.to_string())?;
        let change = given
            .get()
            .checked_sub(total.get())
            .and_then(|c| Cents::new(c).ok())
            .ok_or_else(|| format!("is less than the total, {total}"))?;
        Ok(Tender {
            kind,
            amount_tendered: given,
            change,
        })
    }

    fn set_visibility(&mut self) {
        let cash = self.tender_kind() == TenderKind::Cash;
        if let Some(f) = self.tender.get_mut(TenderField::Tendered) {
            f.hidden = !cash;
        }
        let e = if cash { self.tender_now().err() } else { None };
        self.tender.set_error(TenderField::Tendered, e);
    }
}

fn sum(amounts: impl Iterator<Item = Cents>) -> Cents {
    Cents::new(amounts.map(Cents::get).sum()).unwrap_or(Cents::ZERO)
}

impl App {
    /// Review → basket: the draft joins the customer's basket (its form is spent).
    pub(crate) fn add_to_basket(&mut self) {
        if self.basket.phase != BasketPhase::Building {
            self.notice(
                Severity::Warn,
                "This basket is being printed or paid; finish it before adding items.",
            );
            return;
        }
        if self.basket.items.len() >= BASKET_ITEMS_MAX {
            self.notice(
                Severity::Error,
                format!("A basket holds at most {BASKET_ITEMS_MAX} items; confirm this one first."),
            );
            return;
        }
        let Some(draft) = self.review.draft.take() else {
            return;
        };
        self.spend_form();
        self.basket.items.push(BasketItem {
            draft,
            job: None,
            number: None,
            outcome: ItemOutcome::Waiting,
            cause: None,
        });
        self.basket.selected = self.basket.items.len() - 1;
        self.notice = None;
        self.screen = Screen::Basket;
    }

    /// Starts the next waiting item, or moves on to the payment once every item is over.
    fn basket_next(&mut self, out: &mut Vec<Command>) {
        if self.basket.phase != BasketPhase::Running || self.job_in_flight() {
            return;
        }
        if let Some(i) = self
            .basket
            .items
            .iter()
            .position(|i| i.outcome == ItemOutcome::Waiting)
        {
            let draft = self.basket.items[i].draft.clone();
            let job = self.issue(draft, out);
            let item = &mut self.basket.items[i];
            item.job = Some(job);
            item.outcome = ItemOutcome::Authorizing;
            self.basket.selected = i;
            return;
        }
        if !self.basket.items.iter().all(|i| i.outcome.is_final()) {
            return; // a settlement decision is still on its way
        }
        self.job = None;
        if self.basket.charged_total().is_zero() {
            self.notice(
                Severity::Warn,
                "Nothing in the basket was issued, so there is nothing to pay.",
            );
            self.basket = BasketScreen::new(BasketId(self.basket.id.0 + 1));
            return;
        }
        self.basket.phase = BasketPhase::Paying;
        self.basket.tender = tender_form();
        self.basket.set_visibility();
        let failed = self
            .basket
            .items
            .iter()
            .filter(|i| i.outcome != ItemOutcome::Charged)
            .count();
        let text = if failed == 0 {
            format!(
                "All items printed. Take the payment of {}.",
                self.basket.charged_total()
            )
        } else {
            format!(
                "{} not charged (see the list); take the payment of {} for the rest.",
                crate::ui::app::items_word(failed),
                self.basket.charged_total()
            )
        };
        self.notice(Severity::Ok, text);
    }

    /// Keeps the basket's items in step with what the printing machinery reports.
    pub(crate) fn basket_update(&mut self, out: &mut Vec<Command>) {
        if self.basket.phase != BasketPhase::Running {
            return;
        }
        if let Some(j) = &self.job
            && let Some(item) = self.basket.items.iter_mut().find(|i| i.job == Some(j.id))
        {
            use crate::ui::app::JobPhase;
            match (&j.phase, &item.outcome) {
                (JobPhase::Printing(_), ItemOutcome::Authorizing) => {
                    item.outcome = ItemOutcome::Printing
                }
                (JobPhase::Done { message, .. }, ItemOutcome::Authorizing) => {
                    // Not authorized (or the link went before printing: then a settlement
                    // follows and says voided).
                    item.cause = j.cause.clone();
                    item.outcome = if j.cause.is_some() {
                        ItemOutcome::Ended
                    } else {
                        ItemOutcome::NotIssued(message.clone())
                    };
                }
                (JobPhase::Done { .. }, ItemOutcome::Printing) => {
                    item.cause = j.cause.clone();
                    item.outcome = ItemOutcome::Ended
                }
                _ => {}
            }
        }
        self.basket_next(out);
    }

    /// The job book's decision for a basket item's money.
    pub(crate) fn basket_settled(&mut self, job: JobId, settlement: Settlement) {
        let current = self
            .job
            .as_ref()
            .filter(|j| j.id == job)
            .and_then(|j| j.cause.clone());
        let Some(item) = self.basket.items.iter_mut().find(|i| i.job == Some(job)) else {
            return;
        };
        let cause = current
            .or_else(|| item.cause.clone())
            .unwrap_or_else(|| "the print stopped".into())
            .to_lowercase();
        item.outcome = match settlement {
            Settlement::Commit => ItemOutcome::Charged,
            Settlement::Void => ItemOutcome::Voided(cause),
            _ => ItemOutcome::Flagged(format!("{cause} after the indicium printed")),
        };
    }

    /// The vendor's number of a basket item.
    pub(crate) fn basket_numbered(&mut self, job: JobId, number: &PieceNumber) {
        if let Some(item) = self.basket.items.iter_mut().find(|i| i.job == Some(job)) {
            item.number = Some(number.clone());
        }
    }

    /// The vendor stored the payment: the receipt is shown and printed (not value; the
    /// outcome comes back as `PrintoutDone`).
    pub(crate) fn on_tender_recorded(
        &mut self,
        basket: BasketId,
        pieces: Vec<PieceNumber>,
        tender: Tender,
        total: Cents,
        recorded_at_ms: u64,
        out: &mut Vec<Command>,
    ) {
        if basket != self.basket.id || !self.basket.recording {
            return;
        }
        self.basket.recording = false;
        let receipt = self.receipt(&pieces, &tender, total, recorded_at_ms);
        out.push(Command::PrintReceipt {
            basket,
            pieces: receipt.pieces.clone(),
            lines: receipt.lines.clone(),
        });
        self.basket.phase = BasketPhase::Receipt(receipt);
        let text = match tender.kind {
            TenderKind::Cash => {
                format!("Paid. Change due: {}. Printing the receipt…", tender.change)
            }
            _ => "Paid. Printing the receipt…".to_string(),
        };
        self.notice(Severity::Ok, text);
    }

    pub(crate) fn on_tender_failed(&mut self, basket: BasketId, reason: String) {
        if basket != self.basket.id {
            return;
        }
        self.basket.recording = false;
        self.notice(
            Severity::Error,
            format!("The payment was not recorded: {reason}"),
        );
    }

    /// The customer's receipt: office, clerk, time, the items with their numbers and amounts,
    /// those not charged, the total, the payment and change, and how to ask for a refund.
    fn receipt(
        &self,
        pieces: &[PieceNumber],
        tender: &Tender,
        total: Cents,
        recorded_at_ms: u64,
    ) -> Receipt {
        let money = |label: &str, c: Cents| {
            let c = c.to_string();
            format!(
                "{label}{c:>w$}",
                w = RECEIPT_COLS.saturating_sub(label.chars().count())
            )
        };
        let mut lines = vec![
            self.office
                .clone()
                .unwrap_or_else(|| "Post office (name not known)".into()),
            format!(
                "Clerk {}, {}",
                self.clerk.as_deref().unwrap_or("-"),
                time_words(recorded_at_ms)
            ),
            String::new(),
        ];
        for item in &self.basket.items {
            let number = item
                .number
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "(no number)".into());
            let charged = item.number.as_ref().is_some_and(|n| pieces.contains(n));
            let head = format!("{number}  {}", item.title());
            if charged {
                lines.push(money(&head, item.draft.amount));
                lines.push(format!("  {}", item.summary()));
            } else {
                lines.push(format!("{head}  not charged"));
                lines.push(format!("  {}", item.outcome.words()));
            }
        }
        lines.push(String::new());
        lines.push(money("Total", total));
        lines.push(money(
            &format!("Paid by {}", tender.kind.title().to_lowercase()),
            tender.amount_tendered,
        ));
        if tender.kind == TenderKind::Cash {
            lines.push(money("Change", tender.change));
        }
        lines.push(String::new());
        lines.push("For a refund, bring this receipt to a counter".into());
        lines.push("and give the item's number (FRK... #N).".into());
        Receipt {
            lines,
            pieces: pieces.to_vec(),
        }
    }
}

/// A UTC time for the receipt: `2026-12-05 14:03 UTC`.
fn time_words(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    chrono::DateTime::from_timestamp(secs, 0)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_else(|| "-".into())
}

pub fn keys(app: &App) -> Vec<Binding> {
    match app.basket.phase {
        BasketPhase::Building => {
            let mut v = Vec::new();
            if !app.basket.items.is_empty() {
                v.push(key(Action::Submit, "confirm & print all", confirm));
                v.push(key(Action::RemoveItem, "remove", remove));
            }
            v.push(key(Action::NewItem, "add postage", |app, _, _| {
                app.notice = None;
                app.screen = Screen::Postage;
            }));
            v.push(key(Action::Back, "home", |app, _, _| app.back_to_start()));
            v.push(quiet(Action::RowDown, rows));
            v.push(quiet(Action::RowUp, rows));
            v
        }
        BasketPhase::Running => vec![],
        BasketPhase::Paying if app.basket.recording => vec![],
        BasketPhase::Paying => {
            let mut v = vec![key(Action::Submit, "record payment", pay)];
            v.push(key(Action::ChoiceNext, "cash/card/check/other", tender_nav));
            v.extend(form_nav(tender_nav).filter(|b| b.action != Action::ChoiceNext));
            v
        }
        BasketPhase::Receipt(_) => vec![
            key(Action::Submit, "next customer", done),
            key(Action::Print, "print again", print_again),
            quiet(Action::Back, done),
        ],
    }
}

fn rows(app: &mut App, action: Action, _: &mut Vec<Command>) {
    let n = app.basket.items.len();
    if n == 0 {
        return;
    }
    let s = &mut app.basket.selected;
    *s = if action == Action::RowDown {
        (*s + 1) % n
    } else {
        (*s + n - 1) % n
    };
}

fn remove(app: &mut App, _: Action, _: &mut Vec<Command>) {
    let b = &mut app.basket;
    if b.selected < b.items.len() {
        let gone = b.items.remove(b.selected);
        b.selected = b.selected.min(b.items.len().saturating_sub(1));
        let text = format!("Removed {} ({}).", gone.title(), gone.draft.amount);
        app.notice(Severity::Info, text);
    }
}

fn confirm(app: &mut App, _: Action, out: &mut Vec<Command>) {
    if let Some(reason) = app.print_block_reason() {
        app.notice(Severity::Error, reason);
        return;
    }
    app.notice = None;
    app.basket.phase = BasketPhase::Running;
    app.basket_next(out);
}

fn tender_nav(app: &mut App, action: Action, _: &mut Vec<Command>) {
    if super::nav(&mut app.basket.tender, action) {
        app.basket.set_visibility();
    }
}

pub fn type_key(app: &mut App, code: KeyCode) -> bool {
    if app.basket.phase != BasketPhase::Paying || app.basket.recording {
        return false;
    }
    let changed = super::type_into(&mut app.basket.tender, code);
    if changed {
        app.basket.set_visibility();
    }
    changed
}

fn pay(app: &mut App, _: Action, out: &mut Vec<Command>) {
    let tender = match app.basket.tender_now() {
        Ok(t) => t,
        Err(e) => {
            app.basket.tender.touch_all();
            app.notice(Severity::Error, format!("Fix the cash given: {e}"));
            return;
        }
    };
    let charged: Vec<&BasketItem> = app
        .basket
        .items
        .iter()
        .filter(|i| i.outcome == ItemOutcome::Charged)
        .collect();
    let pieces: Option<Vec<PieceNumber>> = charged.iter().map(|i| i.number.clone()).collect();
    let Some(pieces) = pieces else {
        app.notice(
            Severity::Warn,
            "Waiting for the vendor's item numbers; Enter again in a moment.",
        );
        return;
    };
    app.basket.recording = true;
    app.notice(Severity::Info, "Recording the payment with the vendor…");
    out.push(Command::RecordTender {
        basket: app.basket.id,
        pieces,
        tender,
    });
}

/// The receipt printed again (a paper jam, a second copy): it is not value.
fn print_again(app: &mut App, _: Action, out: &mut Vec<Command>) {
    if let BasketPhase::Receipt(r) = &app.basket.phase {
        out.push(Command::PrintReceipt {
            basket: app.basket.id,
            pieces: r.pieces.clone(),
            lines: r.lines.clone(),
        });
        app.notice(Severity::Info, "Printing the receipt again…");
    }
}

fn done(app: &mut App, _: Action, _: &mut Vec<Command>) {
    app.basket = BasketScreen::new(BasketId(app.basket.id.0 + 1));
    app.back_to_start();
}

/// A click on a row chooses it.
pub fn click_row(app: &mut App, n: usize) {
    if n < app.basket.items.len() && app.basket.phase == BasketPhase::Building {
        app.basket.selected = n;
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let title = match app.basket.phase {
        BasketPhase::Receipt(_) => "Receipt",
        BasketPhase::Paying => "Payment",
        _ => "Basket",
    };
    let inner = framed(frame, area, app, title);
    let theme = &app.config.theme;
    if let BasketPhase::Receipt(r) = &app.basket.phase {
        let lines: Vec<Line> = r
            .lines
            .iter()
            .map(|l| Line::from(Span::styled(l.clone(), theme.style(Role::Text))))
            .collect();
        frame.render_widget(Paragraph::new(lines), inner);
        return;
    }
    let b = &app.basket;
    let tender_rows = if b.phase == BasketPhase::Paying { 4 } else { 0 };
    let [list, foot, tender] = Layout::vertical([
        Constraint::Min(1),
        Constraint::Length(2),
        Constraint::Length(tender_rows),
    ])
    .areas(inner);
    let w = list.width as usize;
    let mut lines = Vec::new();
    if b.items.is_empty() {
        lines.push(Line::from(Span::styled(
            "The basket is empty: review an item and press Ctrl-B to add it.",
            theme.style(Role::Muted),
        )));
    }
    let height = list.height as usize;
    let first = b.selected.saturating_sub(height.saturating_sub(1));
    for (i, item) in b.items.iter().enumerate().skip(first).take(height) {
        let sel = i == b.selected && b.phase == BasketPhase::Building;
        super::row_hit(hits, list, lines.len(), Target::Row(i));
        let number = item
            .number
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default();
        let row = format!(
            "{:<17} {:<16} {:>9}  {}",
            number,
            item.title(),
            item.draft.amount.to_string(),
            item.summary()
        );
        let role = match &item.outcome {
            ItemOutcome::Charged => Role::Ok,
            ItemOutcome::NotIssued(_) | ItemOutcome::Voided(_) | ItemOutcome::Flagged(_) => {
                Role::AlertError
            }
            _ if sel => Role::Selection,
            _ => Role::Text,
        };
        let state = if b.phase == BasketPhase::Building {
            String::new()
        } else {
            format!("  [{}]", item.outcome.words())
        };
        let row = text::fit(&format!("{row}{state}"), w.saturating_sub(2));
        lines.push(Line::from(vec![
            Span::styled(if sel { "▶ " } else { "  " }, theme.style(Role::Title)),
            Span::styled(row, theme.style(role)),
        ]));
    }
    frame.render_widget(Paragraph::new(lines), list);
    let total = if b.phase == BasketPhase::Building {
        format!(
            "Total {} for {}",
            b.listed_total(),
            crate::ui::app::items_word(b.items.len())
        )
    } else {
        format!("To pay {}", b.charged_total())
    };
    let mut foot_lines = vec![Line::from(Span::styled(total, theme.style(Role::Title)))];
    if b.phase == BasketPhase::Building && !b.items.is_empty() {
        let line = match app.print_block_reason() {
            Some(reason) => Span::styled(format!("✗ {reason}"), theme.style(Role::AlertError)),
            None => {
                super::row_hit(hits, foot, 1, Target::Key(Action::Submit));
                Span::styled(
                    format!(
                        "Press {} to charge and print every item once, in order.",
                        app.config.keys.hint(Action::Submit)
                    ),
                    theme.style(Role::InputFocus),
                )
            }
        };
        foot_lines.push(Line::from(line));
    }
    frame.render_widget(Paragraph::new(foot_lines).wrap(Wrap { trim: false }), foot);
    if b.phase == BasketPhase::Paying {
        let [fields, change] =
            Layout::vertical([Constraint::Length(2), Constraint::Length(1)]).areas(tender);
        form::draw(frame, fields, &b.tender, &[0, 1], theme, true, hits);
        let words = match b.tender_now() {
            Ok(t) if t.kind == TenderKind::Cash => format!("Change due {}", t.change),
            Ok(t) => format!("{} for {}", t.kind.title(), t.amount_tendered),
            Err(_) => String::new(),
        };
        frame.render_widget(
            Paragraph::new(Span::styled(words, theme.style(Role::Title))),
            change,
        );
    }
}
