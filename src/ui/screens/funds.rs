//! Funds: card or EFT; numbers masked as typed (last four shown), CVC fully hidden. A kiosk
//! pays for its one item here (the amount fixed); the item is authorized only once the
//! payment is approved.

use super::{Binding, form_nav, framed, key};
use crate::ledger::payment::luhn_valid;
use crate::money::Cents;
use crate::ui::app::{App, Screen, Severity};
use crate::ui::event::{Command, FundMethod, Secret};
use crate::ui::form::{Field, Form};
use crate::ui::hits::Hits;
use crate::ui::input;
use crate::ui::keys::Action;
use crate::ui::line_widget;
use crate::ui::panels::form;
use crate::ui::theme::Role;
use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Span;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FundsField {
    Method,
    Amount,
    Card,
    Expiry,
    Cvc,
    Routing,
    Account,
}

#[derive(Debug, Clone)]
pub struct FundsScreen {
    pub form: Form<FundsField>,
    /// Kiosk card payment for the draft (amount fixed).
    pub paying: bool,
    /// Kiosk: the card payment was sent; the item is authorized only once it is approved.
    pub pay_pending: bool,
}

/// Kiosk: what a customer is told when a card payment did not go through. The backend's
/// words are for the office (limits, registers); the customer needs only what to do. A decline
/// (the vendor answered `payment_declined`) can be fixed with another card.
fn kiosk_payment_words(declined: bool) -> &'static str {
    if declined {
        "Your card was declined. Please try another card."
    } else {
        "This kiosk cannot take that payment; please ask at the counter."
    }
}

impl FundsScreen {
    pub fn new(kiosk: bool) -> FundsScreen {
        let methods = if kiosk {
            vec!["card"]
        } else {
            vec!["card", "eft"]
        };
        use FundsField as F;
        let mut screen = FundsScreen {
            form: Form::new(vec![
                Field::choice(F::Method, "Method", methods),
                Field::text(F::Amount, "Amount $", 12),
                // 19 digits in groups of four with spaces or dashes.
                Field::secret(F::Card, "Card number", 23, 4),
                Field::text(F::Expiry, "Expiry MM/YY", 5),
                Field::secret(F::Cvc, "CVC", 4, 0),
                Field::secret(F::Routing, "Routing no.", 9, 4),
                Field::secret(F::Account, "Account no.", 17, 4),
            ]),
            paying: false,
            pay_pending: false,
        };
        screen.set_visibility();
        screen
    }

    /// Empties the form (not a payment in flight).
    pub fn reset(&mut self) {
        self.form.clear();
        self.set_visibility();
        self.paying = false;
    }

    fn card(&self) -> bool {
        self.form.text(FundsField::Method) == "card"
    }

    fn set_visibility(&mut self) {
        let card = self.card();
        for f in &mut self.form.fields {
            f.hidden = match f.key {
                FundsField::Card | FundsField::Expiry | FundsField::Cvc => !card,
                FundsField::Routing | FundsField::Account => card,
                _ => false,
            };
        }
    }

    fn secret(&self, k: FundsField) -> Secret {
        self.form
            .get(k)
            .and_then(Field::secret_value)
            .cloned()
            .unwrap_or_default()
    }

    fn validate(&mut self) {
        use FundsField as F;
        let card = self.card();
        let e = match Cents::parse_dollars(self.form.text(F::Amount)) {
            Ok(c) if c.is_zero() => Some("must be more than $0.00".into()),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        self.form.set_error(F::Amount, e);
        let card_text = self.secret(F::Card).expose().to_string();
        let num = input::card_digits(&card_text);
        let e = match &num {
            _ if !card => None,
            Err(e) => Some(e.clone()),
            Ok(num) if !(13..=19).contains(&num.len()) => {
                Some(format!("has {} digits; cards have 13 to 19", num.len()))
            }
            Ok(num) if !luhn_valid(num) => {
                Some("check digit does not match; retype the number".into())
            }
            Ok(_) => None,
        };
        self.form.set_error(F::Card, e);
        let exp = self.form.text(F::Expiry).to_string();
        let valid_exp = exp.len() == 5
            && exp.as_bytes()[2] == b'/'
            && exp[..2].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
            && exp[3..].chars().all(|c| c.is_ascii_digit());
        self.form.set_error(
            F::Expiry,
            (card && !valid_exp).then(|| "use MM/YY, e.g. 04/29".into()),
        );
        let cvc = self.secret(F::Cvc).expose().to_string();
        let ok = (3..=4).contains(&cvc.len()) && cvc.chars().all(|c| c.is_ascii_digit());
        self.form.set_error(
            F::Cvc,
            (card && !ok).then(|| "3 or 4 digits from the card's back".into()),
        );
        let routing = self.secret(F::Routing).expose().to_string();
        let ok = routing.len() == 9 && routing.chars().all(|c| c.is_ascii_digit());
        self.form
            .set_error(F::Routing, (!card && !ok).then(|| "9 digits".into()));
        let account = self.secret(F::Account).expose().to_string();
        let ok = (4..=17).contains(&account.len()) && account.chars().all(|c| c.is_ascii_digit());
        self.form
            .set_error(F::Account, (!card && !ok).then(|| "4 to 17 digits".into()));
    }

    fn changed(&mut self) {
        self.set_visibility();
        self.validate();
    }
}

impl App {
    /// Kiosk: the card form for exactly the draft's amount.
    pub(crate) fn start_card_payment(&mut self, amount: Cents) {
        self.funds = FundsScreen::new(true);
        if let Some(f) = self.funds.form.get_mut(FundsField::Amount) {
            let text = format!("{}.{:02}", amount.get() / 100, amount.get() % 100);
            for c in text.chars() {
                f.type_char(c);
            }
        }
        self.funds.validate();
        self.funds.form.focus = self.funds.form.index_of(FundsField::Card).unwrap_or(0);
        self.funds.paying = true;
        self.notice = None;
        self.screen = Screen::Funds;
    }

    pub(crate) fn on_fund_result(
        &mut self,
        ok: bool,
        declined: bool,
        message: String,
        out: &mut Vec<Command>,
    ) {
        if self.funds.pay_pending {
            self.funds.pay_pending = false;
            if ok && self.funds.paying && self.screen == Screen::Funds {
                self.funds.reset();
                self.authorize(out);
                return;
            }
            // Declined or failed: the card form stays up for another card.
            self.funds.form.focus = self.funds.form.index_of(FundsField::Card).unwrap_or(0);
        }
        let message = if self.config.kiosk && !ok {
            kiosk_payment_words(declined).to_string()
        } else {
            message
        };
        self.notice(if ok { Severity::Ok } else { Severity::Error }, message)
    }
}

pub fn keys(app: &App) -> Vec<Binding> {
    if app.funds.pay_pending {
        return vec![]; // the card is being charged: wait for the answer
    }
    let submit = if app.funds.paying { "pay" } else { "add funds" };
    let mut v = vec![
        key(Action::Submit, submit, submit_funds),
        key(Action::Back, "back", back),
    ];
    v.extend(form_nav(nav));
    v
}

fn nav(app: &mut App, action: Action, _: &mut Vec<Command>) {
    if super::nav(&mut app.funds.form, action) {
        app.funds.changed();
    }
}

fn back(app: &mut App, _: Action, _: &mut Vec<Command>) {
    let paying = app.funds.paying;
    app.funds.reset();
    if paying {
        app.screen = Screen::Review;
    } else {
        app.back_to_start();
    }
}

pub fn type_key(app: &mut App, code: KeyCode) -> bool {
    let f = &mut app.funds;
    if f.pay_pending {
        return false;
    }
    if f.paying
        && f.form
            .focused()
            .is_some_and(|x| x.key == FundsField::Amount)
    {
        return false; // the price of the item being paid for is not editable
    }
    let changed = super::type_into(&mut f.form, code);
    if changed {
        f.changed();
    }
    changed
}

fn submit_funds(app: &mut App, _: Action, out: &mut Vec<Command>) {
    let f = &mut app.funds;
    f.validate();
    f.form.touch_all();
    if let Some(e) = f.form.first_error() {
        let i = f
            .form
            .fields
            .iter()
            .position(|g| g.key == e.key)
            .unwrap_or(0);
        let name = e.label.trim_end_matches(" $").to_string();
        app.fix_notice(Screen::Funds, i, &name);
        return;
    }
    let Ok(amount) = Cents::parse_dollars(f.form.text(FundsField::Amount)) else {
        return;
    };
    let method = if f.card() {
        // Spaces and dashes typed between the groups are not part of the number.
        let number = input::card_digits(f.secret(FundsField::Card).expose())
            .map(Secret::new)
            .unwrap_or_default();
        FundMethod::Card {
            number,
            expiry: f.form.text(FundsField::Expiry).to_string(),
            cvc: f.secret(FundsField::Cvc),
        }
    } else {
        FundMethod::Eft {
            routing: f.secret(FundsField::Routing).expose().to_string(),
            account: f.secret(FundsField::Account),
        }
    };
    out.push(Command::Fund { method, amount });
    if f.paying {
        // The item is authorized only once the payment is approved (FundResult): a declined
        // card must not issue it from the account's balance.
        f.pay_pending = true;
        for key in [FundsField::Card, FundsField::Expiry, FundsField::Cvc] {
            if let Some(x) = f.form.get_mut(key) {
                x.clear();
            }
        }
        app.notice(Severity::Info, format!("Charging {amount} to the card…"));
    } else {
        f.form.clear();
        f.set_visibility();
        app.notice(Severity::Info, format!("Adding {amount}…"));
    }
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let title = if app.funds.paying {
        "Pay by card"
    } else {
        "Add funds"
    };
    let inner = framed(frame, area, app, title);
    let theme = &app.config.theme;
    let [head, _, body] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(0),
    ])
    .areas(inner);
    let msg = if app.funds.paying {
        "Insert the card details; the amount is the item's price."
    } else {
        "Card numbers and account numbers are never shown in full or logged."
    };
    frame.render_widget(
        line_widget(Span::styled(msg, theme.style(Role::Muted))),
        head,
    );
    let idx: Vec<usize> = (0..app.funds.form.fields.len()).collect();
    form::draw(frame, body, &app.funds.form, &idx, theme, true, hits);
}
