//! Postage: sender and recipient side by side (stacked when narrow), weight and class, and
//! the live quote — the form, its checks as typed, the quote requests, the review draft.

use super::{Binding, form_nav, framed, key};
use crate::indicium::address::{Address, AddressInput, AddressValidator, FormatValidator};
use crate::indicium::kinds::{Destination, Postage, WeightOz};
use crate::indicium::{Item, MailClass};
use crate::money::Cents;
use crate::ui::app::{App, Draft, Screen, Severity};
use crate::ui::event::{Command, LabelText};
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
use ratatui::text::{Line, Span};

/// Whose address a field is part of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Party {
    Sender,
    Recipient,
}

/// One line of an address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressPart {
    Name,
    Line1,
    Line2,
    City,
    State,
    Zip,
}

impl AddressPart {
    pub const ALL: [AddressPart; 6] = [
        AddressPart::Name,
        AddressPart::Line1,
        AddressPart::Line2,
        AddressPart::City,
        AddressPart::State,
        AddressPart::Zip,
    ];

    /// The address validator's name for it.
    fn name(self) -> &'static str {
        match self {
            AddressPart::Name => "name",
            AddressPart::Line1 => "line1",
            AddressPart::Line2 => "line2",
            AddressPart::City => "city",
            AddressPart::State => "state",
            AddressPart::Zip => "zip",
        }
    }

    fn label(self) -> &'static str {
        match self {
            AddressPart::Name => "Name",
            AddressPart::Line1 => "Street",
            AddressPart::Line2 => "Line 2",
            AddressPart::City => "City",
            AddressPart::State => "State",
            AddressPart::Zip => "ZIP",
        }
    }

    fn chars_max(self) -> usize {
        match self {
            AddressPart::City => 28,
            AddressPart::State => 2,
            AddressPart::Zip => 10,
            _ => 40,
        }
    }
}

/// The postage form's fields, in screen order: the sender's address, the recipient's, weight
/// and class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostageField {
    Address(Party, AddressPart),
    Weight,
    Class,
}

#[derive(Debug, Clone, PartialEq)]
pub enum QuoteState {
    /// Not all of class, weight and both ZIPs are valid yet.
    Incomplete,
    Pending {
        request: u64,
    },
    Ready {
        request: u64,
        amount: Cents,
    },
    Failed {
        reason: String,
    },
    /// The live price from this counter's signed rate table (the last good rates bundle,
    /// issue 17), while the vendor's own price — the one the authorization carries — is asked;
    /// `vendor_failed`: why it could not be had (asked again when the link is back).
    Table {
        request: u64,
        amount: Cents,
        /// The rates bundle's name and version (`rates 2`).
        table: String,
        vendor_failed: Option<String>,
    },
}

/// Where the price shown came from, once the vendor's own price is in and a signed rate table
/// priced the piece first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceNote {
    /// Words for the clerk, beside the price.
    pub words: String,
    /// The vendor's price is not the table's: the vendor's is the one charged, and the
    /// review says so before the clerk confirms.
    pub differs: bool,
}

/// What a quote was asked for: class, ounces, from ZIP, to ZIP.
type QuoteInputs = (MailClass, u16, String, String);

#[derive(Debug, Clone)]
pub struct PostageScreen {
    pub form: Form<PostageField>,
    pub quote: QuoteState,
    quote_inputs: Option<QuoteInputs>,
    /// Set when the vendor's price replaced a signed rate table's ([`QuoteState::Table`]).
    pub price_note: Option<PriceNote>,
}

impl PostageScreen {
    pub fn new() -> PostageScreen {
        let mut fields = Vec::new();
        for party in [Party::Sender, Party::Recipient] {
            for part in AddressPart::ALL {
                fields.push(Field::text(
                    PostageField::Address(party, part),
                    part.label(),
                    part.chars_max(),
                ));
            }
        }
        // Ounces with decimals, or pounds and ounces ("1 lb 4 oz"): see `input::weight_oz`.
        fields.push(Field::text(PostageField::Weight, "Weight oz", 12));
        fields.push(Field::choice(
            PostageField::Class,
            "Class",
            MailClass::ALL
                .iter()
                .map(|c| input::class_words(*c))
                .collect(),
        ));
        PostageScreen {
            form: Form::new(fields),
            quote: QuoteState::Incomplete,
            quote_inputs: None,
            price_note: None,
        }
    }

    /// Empties the form and forgets the quote.
    pub fn clear(&mut self) {
        self.form.clear();
        self.quote = QuoteState::Incomplete;
        self.quote_inputs = None;
        self.price_note = None;
    }

    /// The signed rate table's price for quote `request`: shown at once, while the vendor's
    /// own price is on its way (a stale answer is dropped).
    pub fn on_table_price(&mut self, request: u64, amount: Cents, table: String) {
        if self.quote == (QuoteState::Pending { request }) {
            self.quote = QuoteState::Table {
                request,
                amount,
                table,
                vendor_failed: None,
            };
        }
    }

    /// The vendor's answer to quote `request` (a stale answer is dropped). After a table's
    /// price, the vendor's replaces it — it is the one charged — and [`Self::price_note`]
    /// says whether the two agree.
    pub fn on_quote(&mut self, request: u64, answer: Result<Cents, String>) {
        match self.quote.clone() {
            QuoteState::Pending { request: r } if r == request => {
                self.quote = match answer {
                    Ok(amount) => QuoteState::Ready { request, amount },
                    Err(reason) => QuoteState::Failed { reason },
                };
            }
            QuoteState::Table {
                request: r,
                amount: listed,
                table,
                ..
            } if r == request => match answer {
                Ok(amount) => {
                    self.price_note = Some(if listed == amount {
                        PriceNote {
                            words: format!(
                                "the vendor's price, as in this counter's rate table ({table})"
                            ),
                            differs: false,
                        }
                    } else {
                        PriceNote {
                            words: format!(
                                "the vendor's price; this counter's rate table ({table}) says {listed}. The vendor's price is charged."
                            ),
                            differs: true,
                        }
                    });
                    self.quote = QuoteState::Ready { request, amount };
                }
                Err(reason) => {
                    self.quote = QuoteState::Table {
                        request,
                        amount: listed,
                        table,
                        vendor_failed: Some(reason),
                    };
                }
            },
            _ => {}
        }
    }

    fn address(&self, party: Party) -> AddressInput {
        let g = |part| {
            self.form
                .text(PostageField::Address(party, part))
                .to_string()
        };
        AddressInput {
            name: g(AddressPart::Name),
            line1: g(AddressPart::Line1),
            line2: g(AddressPart::Line2),
            city: g(AddressPart::City),
            state: g(AddressPart::State),
            zip: g(AddressPart::Zip),
        }
    }

    /// Per-field checks of the whole form, as typed; `profile`: the printer's, whose code pages
    /// every character of an address must be in.
    fn validate(&mut self, profile: Option<&crate::printer::profile::Profile>) {
        for party in [Party::Sender, Party::Recipient] {
            let errors = FormatValidator.validate(&self.address(party)).err();
            for part in AddressPart::ALL {
                let field = PostageField::Address(party, part);
                let e = errors
                    .as_ref()
                    .and_then(|es| es.field(part.name()))
                    .map(|e| e.reason.clone())
                    .or_else(|| super::super::app::unprintable(profile, self.form.text(field)));
                self.form.set_error(field, e);
            }
        }
        let w = self.form.text(PostageField::Weight).trim().to_string();
        let (e, note) = match input::weight_oz(&w) {
            Ok((oz, true)) => (None, Some(format!("rounded up to {oz} oz"))),
            Ok((oz, false)) if w != oz.to_string() => (None, Some(format!("= {oz} oz"))),
            Ok(_) => (None, None),
            Err(e) => (Some(e), None),
        };
        self.form.set_error(PostageField::Weight, e);
        self.form.set_note(PostageField::Weight, note);
    }

    fn class(&self) -> MailClass {
        self.form
            .chosen(PostageField::Class, &MailClass::ALL, MailClass::FirstClass)
    }

    /// Asks for a quote when class, weight and both ZIPs are valid and differ from the last
    /// request's.
    fn maybe_quote(&mut self, next_request: &mut u64, out: &mut Vec<Command>) {
        let ok = |k| self.form.get(k).is_some_and(|f| f.error.is_none());
        let zip = |party| PostageField::Address(party, AddressPart::Zip);
        if !(ok(PostageField::Weight) && ok(zip(Party::Sender)) && ok(zip(Party::Recipient))) {
            self.quote = QuoteState::Incomplete;
            self.quote_inputs = None;
            return;
        }
        let Ok((weight, _)) = input::weight_oz(self.form.text(PostageField::Weight)) else {
            return;
        };
        let inputs = (
            self.class(),
            weight,
            self.form.text(zip(Party::Sender)).trim().to_string(),
            self.form.text(zip(Party::Recipient)).trim().to_string(),
        );
        if self.quote_inputs.as_ref() == Some(&inputs) {
            return;
        }
        let request = *next_request;
        *next_request += 1;
        self.price_note = None;
        out.push(Command::RequestQuote {
            request,
            class: inputs.0,
            weight_oz: inputs.1,
            from_zip: inputs.2.clone(),
            to_zip: inputs.3.clone(),
        });
        self.quote_inputs = Some(inputs);
        self.quote = QuoteState::Pending { request };
    }
}

impl Default for PostageScreen {
    fn default() -> Self {
        PostageScreen::new()
    }
}

impl App {
    /// While the link is down no quote can come: what to tell the person instead of "waiting
    /// for the vendor" (the quote is asked again when the link is back).
    pub fn quote_waiting_for_link(&self) -> Option<&'static str> {
        let waiting = matches!(
            self.postage.quote,
            QuoteState::Pending { .. } | QuoteState::Failed { .. }
        );
        if !waiting || self.link_state().allows_printing() {
            return None;
        }
        Some(if self.config.kiosk {
            "The kiosk is reconnecting; the price will show when it is back."
        } else {
            "The link to the vendor is down; the quote will come when it is back."
        })
    }

    /// The link came back: a quote asked for (or refused) while it was down is asked again,
    /// and so is the vendor's price of a piece only the rate table priced.
    pub(crate) fn requote_after_link(&mut self, out: &mut Vec<Command>) {
        if matches!(
            self.postage.quote,
            QuoteState::Pending { .. } | QuoteState::Failed { .. } | QuoteState::Table { .. }
        ) {
            self.postage.quote_inputs = None;
            self.postage.maybe_quote(&mut self.next_request, out);
        }
    }

    /// Checks the form and asks for a quote if the inputs for one changed.
    fn postage_changed(&mut self, out: &mut Vec<Command>) {
        self.postage.validate(self.config.printer_profile.as_ref());
        self.postage.maybe_quote(&mut self.next_request, out);
    }
}

pub fn keys(_app: &App) -> Vec<Binding> {
    let mut v = vec![
        key(Action::Submit, "review", submit),
        key(Action::NextField, "next", nav),
        key(Action::Back, "back", back),
    ];
    v.extend(form_nav(nav).filter(|b| b.action != Action::NextField));
    v
}

fn nav(app: &mut App, action: Action, out: &mut Vec<Command>) {
    if super::nav(&mut app.postage.form, action) {
        app.postage_changed(out);
    }
}

fn back(app: &mut App, _: Action, _: &mut Vec<Command>) {
    if app.config.kiosk {
        app.reset_kiosk();
    } else {
        app.back_to_start();
    }
}

pub fn type_key(app: &mut App, code: KeyCode, out: &mut Vec<Command>) -> bool {
    let changed = super::type_into(&mut app.postage.form, code);
    if changed {
        app.postage_changed(out);
    }
    changed
}

/// How the "Fix …" notice names a field.
fn fix_name(field: PostageField, label: &str) -> String {
    match field {
        PostageField::Address(Party::Sender, _) => format!("the sender's {label}"),
        PostageField::Address(Party::Recipient, _) => format!("the recipient's {label}"),
        _ => label.to_string(),
    }
}

/// A printed address block.
fn block(a: &Address, zip: String) -> Vec<String> {
    let mut lines = vec![a.name.clone(), a.line1.clone()];
    if !a.line2.is_empty() {
        lines.push(a.line2.clone());
    }
    lines.push(format!("{} {} {}", a.city, a.state, zip));
    lines
}

fn submit(app: &mut App, _: Action, _: &mut Vec<Command>) {
    let p = &mut app.postage;
    p.validate(app.config.printer_profile.as_ref());
    p.form.touch_all();
    if let Some(f) = p.form.first_error() {
        let i = p
            .form
            .fields
            .iter()
            .position(|g| g.key == f.key)
            .unwrap_or(0);
        let name = fix_name(f.key, f.label);
        app.fix_notice(Screen::Postage, i, &name);
        return;
    }
    let QuoteState::Ready { amount, .. } = p.quote else {
        let listed = match &p.quote {
            QuoteState::Table { amount, .. } => Some(*amount),
            _ => None,
        };
        let text = match (listed, app.quote_waiting_for_link()) {
            (_, Some(words)) => format!("{words} Enter again when it shows."),
            (Some(amount), None) => format!(
                "This counter's rate table says {amount}; the vendor's own price is charged and \
                 is not in yet (the link must be up). Enter again when it shows."
            ),
            (_, None) => "Waiting for the vendor's quote; Enter again when it shows.".into(),
        };
        app.notice(Severity::Warn, text);
        return;
    };
    let Ok(to) = FormatValidator.validate(&p.address(Party::Recipient)) else {
        return;
    };
    let Ok(from) = FormatValidator.validate(&p.address(Party::Sender)) else {
        return;
    };
    let typed_weight = p.form.text(PostageField::Weight).trim().to_string();
    let Ok((weight, rounded)) = input::weight_oz(&typed_weight) else {
        return;
    };
    let Ok(weight) = WeightOz::new(weight) else {
        return;
    };
    let Ok(destination) = Destination::new(to.zip5, to.zip4, None) else {
        return;
    };
    let class = p.class();
    let mut summary = vec![
        (
            "From".into(),
            format!("{}, {}, {} {}", from.name, from.city, from.state, from.zip5),
        ),
        (
            "To".into(),
            format!("{}, {}, {} {}", to.name, to.city, to.state, destination),
        ),
        ("Class".into(), input::class_words(class).to_string()),
        (
            "Weight".into(),
            if rounded {
                format!("{} oz (rounded up from {typed_weight})", weight.get())
            } else {
                format!("{} oz", weight.get())
            },
        ),
        ("Postage".into(), amount.to_string()),
    ];
    if let Some(note) = p.price_note.as_ref().filter(|n| n.differs) {
        // The clerk confirms the vendor's amount knowing the table said otherwise.
        summary.push(("Price".into(), note.words.clone()));
    }
    let label = LabelText {
        origin_zip: Some(from.zip5.to_string()),
        from: block(&from, from.zip5.to_string()),
        to: block(&to, destination.to_string()),
    };
    app.review.draft = Some(Draft {
        item: Item::Postage(Postage {
            class,
            weight,
            destination,
        }),
        amount,
        label,
        summary,
    });
    app.review.from = Screen::Postage;
    app.notice = None;
    app.screen = Screen::Review;
}

pub fn draw(frame: &mut Frame, area: Rect, app: &App, hits: &mut Hits) {
    let inner = framed(frame, area, app, "Postage label");
    let theme = &app.config.theme;
    let f = &app.postage.form;
    let wide = inner.width >= 100;
    let addr_rows = if wide { 7 } else { 14 };
    let [addr, _, rest, _] = Layout::vertical([
        Constraint::Max(addr_rows),
        Constraint::Length(1),
        Constraint::Length(3),
        Constraint::Min(0),
    ])
    .areas(inner);
    let (from_area, to_area) = if wide {
        let [a, b] = Layout::horizontal([Constraint::Percentage(50), Constraint::Percentage(50)])
            .areas(addr);
        (a, b)
    } else {
        let [a, b] =
            Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(addr);
        (a, b)
    };
    for (rect, title, range) in [(from_area, "From", 0..6), (to_area, "To", 6..12)] {
        let [head, body] =
            Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(rect);
        frame.render_widget(
            line_widget(Span::styled(title, theme.style(Role::Title))),
            head,
        );
        let idx: Vec<usize> = range.collect();
        let has_focus = idx.contains(&f.focus);
        form::draw(frame, body, f, &idx, theme, has_focus, hits);
    }
    let [wc, quote] = Layout::vertical([Constraint::Length(2), Constraint::Length(1)]).areas(rest);
    form::draw(frame, wc, f, &[12, 13], theme, f.focus >= 12, hits);
    let line = match &app.postage.quote {
        _ if app.quote_waiting_for_link().is_some() => Line::from(Span::styled(
            app.quote_waiting_for_link().unwrap_or_default(),
            theme.style(Role::AlertWarn),
        )),
        QuoteState::Incomplete => Line::from(Span::styled(
            "Quote: fill weight and both ZIPs",
            theme.style(Role::Muted),
        )),
        QuoteState::Pending { .. } => Line::from(Span::styled(
            "Quote: asking the vendor…",
            theme.style(Role::Muted),
        )),
        QuoteState::Ready { amount, .. } => {
            let mut spans = vec![
                Span::styled("Quote: ", theme.style(Role::Text)),
                Span::styled(amount.to_string(), theme.style(Role::Title)),
            ];
            if let Some(n) = &app.postage.price_note {
                let role = if n.differs {
                    Role::AlertWarn
                } else {
                    Role::Muted
                };
                spans.push(Span::styled(format!(" — {}", n.words), theme.style(role)));
            }
            Line::from(spans)
        }
        QuoteState::Table {
            amount,
            table,
            vendor_failed,
            ..
        } => Line::from(vec![
            Span::styled("Price: ", theme.style(Role::Text)),
            Span::styled(amount.to_string(), theme.style(Role::Title)),
            Span::styled(
                match vendor_failed {
                    None => format!(" (rate table {table}); asking the vendor to confirm…"),
                    Some(r) => format!(" (rate table {table}); the vendor's price is not in: {r}"),
                },
                theme.style(Role::Muted),
            ),
        ]),
        QuoteState::Failed { reason } => Line::from(Span::styled(
            format!("✗ No quote: {reason}"),
            theme.style(Role::AlertError),
        )),
    };
    frame.render_widget(line_widget(line), quote);
}
