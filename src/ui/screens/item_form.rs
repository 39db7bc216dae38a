//! Ticket, check, coupon and gift-certificate forms (same layout, fields per kind): the
//! fields, their checks as typed (dates not in the past, amounts within the item limit), the
//! review draft.

use super::{Binding, form_nav, framed, key};
use crate::indicium::kinds::{Check, CheckNumber, Coupon, GiftCertificate, Text, Ticket};
use crate::indicium::{Item, ItemKind};
use crate::money::Cents;
use crate::ui::app::{App, Draft, Screen, item_value_max};
use crate::ui::event::{Command, LabelText};
use crate::ui::form::{Field, Form};
use crate::ui::hits::Hits;
use crate::ui::input;
use crate::ui::keys::Action;
use crate::ui::panels::form;
use crossterm::event::KeyCode;
use ratatui::Frame;
use ratatui::layout::Rect;

/// Every field an item form may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemField {
    Event,
    Venue,
    Seat,
    EventDay,
    Price,
    Payee,
    Amount,
    Number,
    Memo,
    Offer,
    Value,
    Expiry,
    Recipient,
}

impl ItemField {
    /// The item's own name for the field (what its checks call it).
    pub fn name(self) -> &'static str {
        match self {
            ItemField::Event => "event",
            ItemField::Venue => "venue",
            ItemField::Seat => "seat",
            ItemField::EventDay => "event_day",
            ItemField::Price => "price",
            ItemField::Payee => "payee",
            ItemField::Amount => "amount",
            ItemField::Number => "number",
            ItemField::Memo => "memo",
            ItemField::Offer => "offer",
            ItemField::Value => "value",
            ItemField::Expiry => "expiry",
            ItemField::Recipient => "recipient",
        }
    }

    fn is_money(self) -> bool {
        matches!(
            self,
            ItemField::Price | ItemField::Amount | ItemField::Value
        )
    }

    fn is_day(self) -> bool {
        matches!(self, ItemField::EventDay | ItemField::Expiry)
    }
}

#[derive(Debug, Clone)]
pub struct ItemFormScreen {
    pub kind: ItemKind,
    pub form: Form<ItemField>,
}

impl ItemFormScreen {
    pub fn new(kind: ItemKind) -> ItemFormScreen {
        use ItemField as F;
        let f = Field::text;
        let fields = match kind {
            ItemKind::Ticket => vec![
                f(F::Event, "Event", 64),
                f(F::Venue, "Venue", 64),
                f(F::Seat, "Seat", 64),
                f(F::EventDay, "Date", 10),
                f(F::Price, "Price $", 12),
            ],
            ItemKind::Check => vec![
                f(F::Payee, "Payee", 64),
                f(F::Amount, "Amount $", 12),
                f(F::Number, "Check no.", 9),
                f(F::Memo, "Memo", 64),
            ],
            ItemKind::Coupon => vec![
                f(F::Offer, "Offer", 64),
                f(F::Value, "Value $", 12),
                f(F::Expiry, "Expires", 10),
            ],
            _ => vec![
                f(F::Recipient, "Recipient", 64),
                f(F::Value, "Value $", 12),
                f(F::Expiry, "Expires", 10),
            ],
        };
        ItemFormScreen {
            kind,
            form: Form::new(fields),
        }
    }

    fn build_item(&self) -> Option<Item> {
        use ItemField as F;
        let f = &self.form;
        let text = |k: ItemField| Text::new(k.name(), f.text(k)).ok();
        let cents = |k: ItemField| Cents::parse_dollars(f.text(k)).ok();
        let day = |k: ItemField| input::date(k.name(), f.text(k)).ok();
        Some(match self.kind {
            ItemKind::Ticket => Item::Ticket(Ticket {
                event: text(F::Event)?,
                venue: text(F::Venue)?,
                seat: text(F::Seat)?,
                event_day: day(F::EventDay)?,
                price: cents(F::Price)?,
            }),
            ItemKind::Check => Item::Check(Check {
                payee: text(F::Payee)?,
                amount: cents(F::Amount)?,
                number: CheckNumber::new(f.text(F::Number).trim().parse().ok()?).ok()?,
                memo: if f.text(F::Memo).trim().is_empty() {
                    None
                } else {
                    Some(text(F::Memo)?)
                },
            }),
            ItemKind::Coupon => Item::Coupon(Coupon {
                offer: text(F::Offer)?,
                value: cents(F::Value)?,
                expiry: day(F::Expiry)?,
            }),
            ItemKind::GiftCertificate => Item::GiftCertificate(GiftCertificate {
                recipient: text(F::Recipient)?,
                value: cents(F::Value)?,
                expiry: day(F::Expiry)?,
            }),
            _ => return None,
        })
    }
}

impl App {
    /// Checks every field of the item form as typed.
    pub(crate) fn validate_item_form(&mut self) {
        let keys: Vec<ItemField> = self.item_form.form.fields.iter().map(|f| f.key).collect();
        for key in keys {
            let v = self.item_form.form.text(key).to_string();
            let e = match key {
                ItemField::Memo if v.trim().is_empty() => None,
                k if k.is_money() => match Cents::parse_dollars(&v) {
                    Ok(c) if c.is_zero() => Some("must be more than $0.00".into()),
                    Ok(c) if c > item_value_max() => Some(format!(
                        "is over {}, the most one item may be worth",
                        item_value_max()
                    )),
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                },
                ItemField::Number => match v.trim().parse::<u32>() {
                    Ok(n) => CheckNumber::new(n).err().map(|e| e.reason),
                    Err(_) => Some("is a whole number".into()),
                },
                k if k.is_day() => {
                    let (e, note) = self.check_day(k, &v);
                    self.item_form.form.set_note(k, note);
                    e
                }
                k => Text::new(k.name(), &v).err().map(|e| e.reason),
            };
            let e = e.or_else(|| {
                super::super::app::unprintable(self.config.printer_profile.as_ref(), &v)
            });
            self.item_form.form.set_error(key, e);
        }
    }

    /// A date field: its error (not a date, or before today), and the day in words.
    fn check_day(&self, key: ItemField, text: &str) -> (Option<String>, Option<String>) {
        let day = match input::date(key.name(), text) {
            Ok(day) => day,
            Err(e) => return (Some(e), None),
        };
        let words = input::day_words(day);
        match self.today {
            Some(today) if day < today => {
                let what = if key == ItemField::Expiry {
                    "an expiry must be today or later"
                } else {
                    "the event must be today or later"
                };
                (Some(format!("{words} is in the past; {what}")), None)
            }
            _ => (None, Some(words)),
        }
    }
}

pub fn keys(_app: &App) -> Vec<Binding> {
    let mut v = vec![
        key(Action::Submit, "review", submit),
        key(Action::NextField, "next", nav),
        key(Action::Back, "back", |app, _, _| app.back_to_start()),
    ];
    v.extend(form_nav(nav).filter(|b| b.action != Action::NextField));
    v
}

fn nav(app: &mut App, action: Action, _: &mut Vec<Command>) {
    super::nav(&mut app.item_form.form, action);
}

pub fn type_key(app: &mut App, code: KeyCode) -> bool {
    let changed = super::type_into(&mut app.item_form.form, code);
    if changed {
        app.validate_item_form();
    }
    changed
}

fn submit(app: &mut App, _: Action, _: &mut Vec<Command>) {
    app.validate_item_form();
    let screen = Screen::ItemForm(app.item_form.kind);
    let form = &mut app.item_form.form;
    form.touch_all();
    if let Some(f) = form.first_error() {
        let i = form.fields.iter().position(|g| g.key == f.key).unwrap_or(0);
        let name = f.label.trim_end_matches(" $").to_string();
        app.fix_notice(screen, i, &name);
        return;
    }
    let Some(item) = app.item_form.build_item() else {
        return;
    };
    let amount = item.face_value().unwrap_or(Cents::ZERO);
    let summary = app
        .item_form
        .form
        .fields
        .iter()
        .filter(|f| !f.text_value().trim().is_empty())
        .map(|f| {
            let typed = f.text_value().trim().to_string();
            // Dates as read, in both forms: no day/month order to misread.
            let shown = match input::date(f.key.name(), &typed) {
                Ok(d) if f.key.is_day() => format!("{d} ({})", input::day_words(d)),
                _ => typed,
            };
            (f.label.trim_end_matches(" $").to_string(), shown)
        })
        .collect();
    app.review.draft = Some(Draft {
        item,
        amount,
        label: LabelText::default(),
        summary,
    });
    app.review.from = screen;
    app.notice = None;
    app.screen = Screen::Review;
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, kind: ItemKind, hits: &mut Hits) {
    let title = match kind {
        ItemKind::Ticket => "Ticket",
        ItemKind::Check => "Check",
        ItemKind::Coupon => "Coupon",
        _ => "Gift certificate",
    };
    let inner = framed(frame, area, app, title);
    let form = &app.item_form.form;
    let idx: Vec<usize> = (0..form.fields.len()).collect();
    form::draw(frame, inner, form, &idx, &app.config.theme, true, hits);
}
