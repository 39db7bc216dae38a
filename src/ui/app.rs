//! The counter app's state machine: sans-I/O. [`App::handle`] takes one [`Event`] and returns
//! the [`Command`]s to send; drawing reads the state (see [`super::draw`]).

use super::event::{
    Backend, Command, Event, FundMethod, HistoryEntry, ItemState, JobId, LabelText, PrinterStatus,
    RefundState, Secret, SettlePhase,
};
use super::form::{Field, Form};
use super::keys::{Action, KeyBindings};
use super::theme::{BUILTIN, Theme};
use crate::counter::jobbook::Settlement;
use crate::indicium::address::{AddressInput, AddressValidator, FormatValidator};
use crate::indicium::kinds::{
    Check, CheckNumber, Coupon, Day, Destination, GiftCertificate, Postage, Text, Ticket, WeightOz,
};
use crate::indicium::{Item, ItemKind, MailClass};
use crate::link::LinkState;
use crate::link::driver::LinkStatus;
use crate::money::Cents;
use crate::printer::streamer::{JobOutcome, Progress};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use sha2::{Digest, Sha256};

/// Most history rows kept in memory.
pub const HISTORY_ROWS_MAX: usize = 1000;
/// Wrong supervisor PINs before quitting a kiosk locks for [`PIN_LOCK_MS`].
pub const PIN_ATTEMPTS_MAX: u32 = 5;
/// How long quitting a kiosk stays locked after [`PIN_ATTEMPTS_MAX`] wrong PINs; then the
/// count starts again.
pub const PIN_LOCK_MS: u64 = 300_000;
/// Kiosk: the last part of the idle timeout, during which a countdown is on screen.
pub const IDLE_WARNING_MS: u64 = 15_000;
/// Default kiosk idle timeout.
pub const IDLE_TIMEOUT_MS_DEFAULT: u64 = 120_000;

/// How the app is set up; everything from outside is passed in here.
#[derive(Debug, Clone)]
pub struct AppConfig {
    /// Guided public flow: welcome → postage → review → card → print; no other screens.
    pub kiosk: bool,
    /// Kiosk only: idle time after which all input is cleared and the welcome screen returns.
    pub idle_timeout_ms: u64,
    /// The supervisor PIN's salted argon2id hash; without it a kiosk cannot be quit from the
    /// keyboard.
    pub supervisor_pin: Option<PinHash>,
    pub keys: KeyBindings,
    pub theme: Theme,
    /// Device or name of the printer, for the settings screen.
    pub printer_name: String,
    /// Lines shown under the sign-in form (e.g. the demo's credentials and label folder).
    pub info_lines: Vec<String>,
    /// The printer's profile: text a form takes must be in its code pages.
    pub printer_profile: Option<crate::printer::profile::Profile>,
}

impl Default for AppConfig {
    fn default() -> Self {
        AppConfig {
            kiosk: false,
            idle_timeout_ms: IDLE_TIMEOUT_MS_DEFAULT,
            supervisor_pin: None,
            keys: KeyBindings::default(),
            theme: Theme::default(),
            printer_name: "(none)".into(),
            info_lines: Vec::new(),
            printer_profile: None,
        }
    }
}

/// The supervisor PIN's hash: argon2id (the crate's defaults: m = 19 MiB, t = 2, p = 1) with a
/// random salt, over the PIN's SHA-256, as a PHC string (`$argon2id$v=19$…`). Hashing the
/// SHA-256 rather than the PIN lets a `supervisor_pin_sha256` from before be upgraded without
/// knowing the PIN ([`PinHash::from_sha256`]); every guess still costs an argon2id. `Debug`
/// hides it: a short PIN is found quickly from any hash.
#[derive(Clone, PartialEq, Eq)]
pub struct PinHash(String);

impl std::fmt::Debug for PinHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PinHash(<redacted>)")
    }
}

impl PinHash {
    /// A stored hash: an argon2id PHC string.
    pub fn parse(phc: &str) -> Result<PinHash, String> {
        let parsed = argon2::PasswordHash::new(phc.trim())
            .map_err(|_| "must be an argon2id hash ($argon2id$v=19$...)".to_string())?;
        if parsed.algorithm != argon2::Algorithm::Argon2id.ident() {
            return Err("must be an argon2id hash ($argon2id$v=19$...)".into());
        }
        Ok(PinHash(phc.trim().to_string()))
    }

    /// Upgrades an unsalted SHA-256 of the PIN: argon2id over it with a fresh salt.
    pub fn from_sha256(digest: &[u8; 32]) -> Result<PinHash, String> {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::generate(&mut rand::rngs::OsRng);
        argon2::Argon2::default()
            .hash_password(digest, &salt)
            .map(|h| PinHash(h.to_string()))
            .map_err(|e| format!("hashing the PIN: {e}"))
    }

    /// The PHC string, for the config file.
    pub fn as_phc(&self) -> &str {
        &self.0
    }

    /// Whether `pin` is the PIN (argon2's constant-time comparison).
    pub fn verify(&self, pin: &str) -> bool {
        use argon2::password_hash::PasswordVerifier;
        let digest: [u8; 32] = Sha256::digest(pin.as_bytes()).into();
        argon2::PasswordHash::new(&self.0)
            .map(|h| {
                argon2::Argon2::default()
                    .verify_password(&digest, &h)
                    .is_ok()
            })
            .unwrap_or(false)
    }
}

/// The hash of a PIN, for [`AppConfig::supervisor_pin`] (and `frank counter` tests).
pub fn pin_hash(pin: &str) -> Result<PinHash, String> {
    PinHash::from_sha256(&Sha256::digest(pin.as_bytes()).into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// Kiosk start.
    Welcome,
    SignIn,
    Home,
    Postage,
    /// Ticket, check, coupon or gift-certificate form.
    ItemForm(ItemKind),
    Review,
    Printing,
    History,
    Funds,
    Settings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Info,
    Ok,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub severity: Severity,
    pub text: String,
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
}

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
}

/// A question on the notice line waiting for the next key: `y` (or the same key again)
/// answers yes, any other key no.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    /// Quit the counter.
    Quit,
    /// Send a refund request for this item.
    Refund(JobId),
}

/// Home menu rows.
pub const HOME_MENU: [(&str, Screen); 9] = [
    ("Postage label", Screen::Postage),
    ("Ticket", Screen::ItemForm(ItemKind::Ticket)),
    ("Check", Screen::ItemForm(ItemKind::Check)),
    ("Coupon", Screen::ItemForm(ItemKind::Coupon)),
    (
        "Gift certificate",
        Screen::ItemForm(ItemKind::GiftCertificate),
    ),
    ("History", Screen::History),
    ("Add funds", Screen::Funds),
    ("Settings", Screen::Settings),
    ("Sign out", Screen::SignIn),
];

/// The whole UI state.
#[derive(Debug, Clone)]
pub struct App {
    pub config: AppConfig,
    pub screen: Screen,
    pub show_help: bool,
    pub notice: Option<Notice>,
    pub link: Option<LinkStatus>,
    pub printer: PrinterStatus,
    pub clerk: Option<String>,
    pub balance: Option<Cents>,
    pub size: (u16, u16),

    pub sign_in: Form,
    pub signing_in: bool,
    /// Kiosk: not signed in (its sign-in failed, or the vendor ended the session and signing
    /// in again did not work): the kiosk shows it is out of service and starts nothing.
    pub out_of_service: bool,
    pub home_selected: usize,
    pub postage: Form,
    pub quote: QuoteState,
    quote_inputs: Option<(MailClass, u16, String, String)>,
    pub item_form: Form,
    pub draft: Option<Draft>,
    /// Where review's Back returns to.
    pub draft_from: Screen,
    pub job: Option<Job>,
    /// Newest first.
    pub history: Vec<HistoryEntry>,
    pub history_filter: Form,
    pub history_selected: usize,
    pub funds: Form,
    /// Kiosk card payment for the draft (amount fixed).
    pub paying: bool,
    /// Kiosk: the card payment was sent; the item is authorized only once it is approved.
    pub pay_pending: bool,
    pub settings_selected: usize,
    pub theme_index: usize,
    pub pin_prompt: Option<Field>,
    pin_attempts: u32,
    /// Time left before quitting unlocks after too many wrong PINs (0: not locked).
    pin_lock_ms: u64,
    pub idle_ms: u64,
    pub quit: bool,
    next_job: u64,
    next_request: u64,
    /// Jobs for which Print was ever sent: never again.
    printed: Vec<JobId>,
    /// Jobs the backend's job book has not settled with the vendor yet.
    pub open_jobs: usize,
    /// Of those, left by an earlier run: no new item until they are settled.
    pub last_run_jobs: usize,
    /// The question waiting for an answer (quit, refund), if any.
    pub confirm: Option<Confirm>,
    /// The form field the notice asks to fix ("Fix …"): once it is valid the notice goes.
    fix_field: Option<(Screen, &'static str)>,
    /// Today's date, from [`Event::Today`] (the runner reads the clock, the app never does);
    /// event dates and expiries before it are refused. `None` until the first one.
    pub today: Option<Day>,
    /// The theme chosen on the settings screen, for the shell to save in the config file
    /// ([`App::take_theme_to_save`]).
    theme_to_save: Option<String>,
}

/// The most one item may be worth: the vendor's limit (`LedgerLimits::authorize_max`, which
/// it refuses above at authorize), checked here as the amount is typed so a clerk learns it
/// before confirming.
pub fn item_value_max() -> Cents {
    crate::ledger::LedgerLimits::default().authorize_max
}

/// A time span for the screen, rounded up to whole seconds: "5 min", "4 min 12 s", "12 s".
fn duration_words(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match (s / 60, s % 60) {
        (0, sec) => format!("{sec} s"),
        (min, 0) => format!("{min} min"),
        (min, sec) => format!("{min} min {sec} s"),
    }
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

/// "1 item" / "3 items".
fn items_word(n: usize) -> String {
    if n == 1 {
        "1 item".into()
    } else {
        format!("{n} items")
    }
}

fn postage_form() -> Form {
    let mut fields = Vec::new();
    for (p, who) in [("s_", "From"), ("r_", "To")] {
        let _ = who;
        let k = |s: &'static str| -> &'static str {
            match (p, s) {
                ("s_", "name") => "s_name",
                ("s_", "line1") => "s_line1",
                ("s_", "line2") => "s_line2",
                ("s_", "city") => "s_city",
                ("s_", "state") => "s_state",
                ("s_", "zip") => "s_zip",
                ("r_", "name") => "r_name",
                ("r_", "line1") => "r_line1",
                ("r_", "line2") => "r_line2",
                ("r_", "city") => "r_city",
                ("r_", "state") => "r_state",
                _ => "r_zip",
            }
        };
        fields.push(Field::text(k("name"), "Name", 40));
        fields.push(Field::text(k("line1"), "Street", 40));
        fields.push(Field::text(k("line2"), "Line 2", 40));
        fields.push(Field::text(k("city"), "City", 28));
        fields.push(Field::text(k("state"), "State", 2));
        fields.push(Field::text(k("zip"), "ZIP", 10));
    }
    // Ounces with decimals, or pounds and ounces ("1 lb 4 oz"): see `input::weight_oz`.
    fields.push(Field::text("weight", "Weight oz", 12));
    fields.push(Field::choice(
        "class",
        "Class",
        MailClass::ALL
            .iter()
            .map(|c| super::input::class_words(*c))
            .collect(),
    ));
    Form::new(fields)
}

fn item_form(kind: ItemKind) -> Form {
    let f = Field::text;
    Form::new(match kind {
        ItemKind::Ticket => vec![
            f("event", "Event", 64),
            f("venue", "Venue", 64),
            f("seat", "Seat", 64),
            f("event_day", "Date", 10),
            f("price", "Price $", 12),
        ],
        ItemKind::Check => vec![
            f("payee", "Payee", 64),
            f("amount", "Amount $", 12),
            f("number", "Check no.", 9),
            f("memo", "Memo", 64),
        ],
        ItemKind::Coupon => vec![
            f("offer", "Offer", 64),
            f("value", "Value $", 12),
            f("expiry", "Expires", 10),
        ],
        _ => vec![
            f("recipient", "Recipient", 64),
            f("value", "Value $", 12),
            f("expiry", "Expires", 10),
        ],
    })
}

fn funds_form(kiosk: bool) -> Form {
    let methods = if kiosk {
        vec!["card"]
    } else {
        vec!["card", "eft"]
    };
    let mut form = Form::new(vec![
        Field::choice("method", "Method", methods),
        Field::text("amount", "Amount $", 12),
        // 19 digits in groups of four with spaces or dashes.
        Field::secret("card", "Card number", 23, 4),
        Field::text("expiry", "Expiry MM/YY", 5),
        Field::secret("cvc", "CVC", 4, 0),
        Field::secret("routing", "Routing no.", 9, 4),
        Field::secret("account", "Account no.", 17, 4),
    ]);
    set_funds_visibility(&mut form);
    form
}

fn set_funds_visibility(form: &mut Form) {
    let card = form.text("method") == "card";
    for f in &mut form.fields {
        f.hidden = match f.key {
            "card" | "expiry" | "cvc" => !card,
            "routing" | "account" => card,
            _ => false,
        };
    }
}

fn kind_filter_options() -> Vec<&'static str> {
    let mut v = vec!["all"];
    v.extend(ItemKind::ALL.iter().map(|k| k.name()));
    v
}

fn luhn_ok(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in digits.chars().rev().enumerate() {
        let Some(mut d) = c.to_digit(10) else {
            return false;
        };
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

fn title_of(kind: ItemKind) -> &'static str {
    match kind {
        ItemKind::Postage => "Postage label",
        ItemKind::Ticket => "Ticket",
        ItemKind::Check => "Check",
        ItemKind::Coupon => "Coupon",
        _ => "Gift certificate",
    }
}

impl App {
    pub fn new(config: AppConfig) -> App {
        let theme_index = BUILTIN
            .iter()
            .position(|n| *n == config.theme.name)
            .unwrap_or(0);
        let kiosk = config.kiosk;
        App {
            screen: if kiosk {
                Screen::Welcome
            } else {
                Screen::SignIn
            },
            show_help: false,
            notice: None,
            link: None,
            printer: PrinterStatus::Unknown,
            clerk: None,
            balance: None,
            size: (0, 0),
            sign_in: Form::new(vec![
                Field::text("clerk", "Clerk", 32),
                Field::secret("password", "Password", 64, 0),
            ]),
            signing_in: false,
            out_of_service: false,
            home_selected: 0,
            postage: postage_form(),
            quote: QuoteState::Incomplete,
            quote_inputs: None,
            item_form: item_form(ItemKind::Ticket),
            draft: None,
            draft_from: Screen::Home,
            job: None,
            history: Vec::new(),
            history_filter: Form::new(vec![
                Field::text("search", "Search", 32),
                Field::text("date", "Date (prefix)", 10),
                Field::choice("kind", "Kind", kind_filter_options()),
            ]),
            history_selected: 0,
            funds: funds_form(kiosk),
            paying: false,
            pay_pending: false,
            settings_selected: 0,
            theme_index,
            pin_prompt: None,
            pin_attempts: 0,
            pin_lock_ms: 0,
            idle_ms: 0,
            quit: false,
            next_job: 1,
            next_request: 1,
            printed: Vec::new(),
            open_jobs: 0,
            last_run_jobs: 0,
            confirm: None,
            fix_field: None,
            today: None,
            theme_to_save: None,
            config,
        }
    }

    pub fn link_state(&self) -> LinkState {
        self.link
            .as_ref()
            .map(|l| l.state)
            .unwrap_or(LinkState::Down)
    }

    /// Why printing is not possible right now, in words for the screen; `None` when it is.
    pub fn print_block_reason(&self) -> Option<String> {
        let state = self.link_state();
        if self.config.kiosk {
            // A customer is told what to do, not why in office words.
            if self.out_of_service {
                return Some("This kiosk is out of service. Please ask staff for help.".into());
            }
            if !state.allows_printing() {
                return Some(
                    "Printing is paused while the kiosk reconnects; please wait a moment.".into(),
                );
            }
            if let PrinterStatus::Fault(_) = self.printer {
                return Some("The printer needs attention; please ask staff.".into());
            }
            return None;
        }
        if !state.allows_printing() {
            return Some(match state {
                LinkState::Lapsed => "Printing disabled: the link to the vendor lapsed (no keepalives). Wait for it to come back up.".into(),
                LinkState::Closed => "Printing disabled: the connection to the vendor closed. Reconnecting…".into(),
                _ => "Printing disabled: the link to the vendor is not up yet.".into(),
            });
        }
        if let PrinterStatus::Fault(f) = self.printer {
            return Some(format!(
                "Printing disabled: {f}. Fix the printer, then confirm again."
            ));
        }
        None
    }

    /// The focused field of the current screen's form, if it has one.
    pub fn focused_field(&self) -> Option<&Field> {
        if let Some(p) = &self.pin_prompt {
            return Some(p);
        }
        match self.screen {
            Screen::SignIn => self.sign_in.focused(),
            Screen::Postage => self.postage.focused(),
            Screen::ItemForm(_) => self.item_form.focused(),
            Screen::History => self.history_filter.focused(),
            Screen::Funds => self.funds.focused(),
            _ => None,
        }
    }

    /// History rows that pass the search, date and kind filters.
    pub fn filtered_history(&self) -> Vec<&HistoryEntry> {
        let q = self.history_filter.text("search").to_lowercase();
        let date = self.history_filter.text("date").trim().to_string();
        let kind = self.history_filter.text("kind");
        self.history
            .iter()
            .filter(|e| q.is_empty() || e.summary.to_lowercase().contains(&q))
            .filter(|e| e.date.starts_with(&date))
            .filter(|e| kind == "all" || e.kind.name() == kind)
            .collect()
    }

    fn notice(&mut self, severity: Severity, text: impl Into<String>) {
        self.fix_field = None;
        self.notice = Some(Notice {
            severity,
            text: text.into(),
        });
    }

    /// "Fix …" for the first field of `screen`'s form with an error; the notice goes once that
    /// field is valid ([`App::drop_fixed_notice`]).
    fn fix_notice(&mut self, screen: Screen, field: &Field) {
        let name = match field.key.split_at_checked(2) {
            Some(("s_", _)) => format!("the sender's {}", field.label),
            Some(("r_", _)) => format!("the recipient's {}", field.label),
            _ => field.label.trim_end_matches(" $").to_string(),
        };
        let text = format!("Fix {name}: {}", field.error.clone().unwrap_or_default());
        let key = field.key;
        self.notice(Severity::Error, text);
        self.fix_field = Some((screen, key));
    }

    /// Drops a "Fix …" notice whose field has become valid.
    fn drop_fixed_notice(&mut self) {
        let Some((screen, key)) = self.fix_field else {
            return;
        };
        let form = match screen {
            Screen::Postage => &self.postage,
            Screen::ItemForm(_) => &self.item_form,
            Screen::Funds => &self.funds,
            _ => return,
        };
        let fixed = form.get(key).is_none_or(|f| f.error.is_none());
        if fixed || self.screen != screen {
            self.notice = None;
            self.fix_field = None;
        }
    }

    /// Handles one event and returns the commands to send, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Command> {
        let mut out = Vec::new();
        match event {
            Event::Key(key) => {
                if key.kind == KeyEventKind::Press {
                    let warned = self.idle_countdown_s().is_some();
                    self.idle_ms = 0;
                    if warned {
                        return out; // "press any key": this key only keeps the form
                    }
                    if self.terminal_too_small() && !self.acts_while_too_small(&key) {
                        return out; // the screen it would act on is not shown
                    }
                    self.on_key(key, &mut out);
                }
            }
            Event::Resize(w, h) => self.size = (w, h),
            Event::Tick { elapsed_ms } => self.on_tick(elapsed_ms),
            Event::Today(day) => {
                self.today = Some(day);
                if let Screen::ItemForm(kind) = self.screen {
                    self.validate_item_form(kind);
                }
            }
            Event::Backend(b) => self.on_backend(b, &mut out),
        }
        out
    }

    /// Whether the terminal is known to be too small to draw the screens: only the "enlarge
    /// the terminal" message is on it. Before the first [`Event::Resize`] the size is unknown.
    pub fn terminal_too_small(&self) -> bool {
        self.size != (0, 0) && super::too_small(self.size.0, self.size.1)
    }

    /// Keys that still act while the terminal is too small: quit and help (not inside the
    /// hidden PIN prompt).
    fn acts_while_too_small(&self, key: &KeyEvent) -> bool {
        self.pin_prompt.is_none()
            && matches!(
                self.config.keys.action(key),
                Some(Action::Quit | Action::Help)
            )
    }

    fn on_tick(&mut self, elapsed_ms: u64) {
        if self.pin_lock_ms > 0 {
            self.pin_lock_ms = self.pin_lock_ms.saturating_sub(elapsed_ms);
            if self.pin_lock_ms == 0 {
                self.pin_attempts = 0;
            }
        }
        self.idle_ms = self.idle_ms.saturating_add(elapsed_ms);
        if !self.idle_reset_applies() || self.idle_ms < self.config.idle_timeout_ms {
            return;
        }
        self.reset_kiosk();
        self.notice(
            Severity::Info,
            "Timed out — everything entered was cleared.",
        );
    }

    /// Kiosk: whether being idle would clear anything now (not while an item prints or a
    /// card is charged, nor on a clear welcome screen).
    fn idle_reset_applies(&self) -> bool {
        let welcome_clear = self.screen == Screen::Welcome && self.is_clear();
        self.config.kiosk && !self.job_in_flight() && !self.pay_pending && !welcome_clear
    }

    /// Kiosk: whole seconds left before the idle timeout clears the form, during its last
    /// [`IDLE_WARNING_MS`] (its second half when it is shorter); `None` otherwise.
    pub fn idle_countdown_s(&self) -> Option<u64> {
        if !self.idle_reset_applies() {
            return None;
        }
        let timeout = self.config.idle_timeout_ms;
        let left = timeout.saturating_sub(self.idle_ms);
        let window = IDLE_WARNING_MS.min(timeout / 2);
        (left > 0 && left <= window).then(|| left.div_ceil(1000))
    }

    fn is_clear(&self) -> bool {
        self.postage.fields.iter().all(|f| !f.touched)
            && self.draft.is_none()
            && self.pin_prompt.is_none()
            && self.funds.fields.iter().all(|f| !f.touched)
    }

    /// Kiosk: clear every input and return to the welcome screen.
    pub fn reset_kiosk(&mut self) {
        self.postage.clear();
        self.quote = QuoteState::Incomplete;
        self.quote_inputs = None;
        self.item_form.clear();
        self.draft = None;
        self.funds.clear();
        set_funds_visibility(&mut self.funds);
        self.paying = false;
        self.pin_prompt = None;
        self.show_help = false;
        self.notice = None;
        if self
            .job
            .as_ref()
            .is_some_and(|j| matches!(j.phase, JobPhase::Done { .. }))
        {
            self.job = None;
        }
        self.screen = Screen::Welcome;
        self.idle_ms = 0;
    }

    fn on_key(&mut self, key: KeyEvent, out: &mut Vec<Command>) {
        if self.pin_prompt.is_some() {
            self.on_pin_key(key, out);
            return;
        }
        let action = self.config.keys.action(&key);
        if let Some(question) = self.confirm.take() {
            self.on_confirm_key(question, &key, action, out);
            return;
        }
        if self.show_help {
            if matches!(action, Some(Action::Help | Action::Back)) {
                self.show_help = false;
            }
            return;
        }
        match action {
            Some(Action::Help) => self.show_help = true,
            Some(Action::Quit) => self.on_quit(),
            Some(a) => self.on_action(a, out),
            None => self.on_text_key(key, out),
        }
        self.drop_fixed_notice();
    }

    fn on_quit(&mut self) {
        if self.config.kiosk {
            if self.pin_lock_ms > 0 {
                self.notice(
                    Severity::Error,
                    format!(
                        "Quitting is locked after too many wrong PINs; try again in {}.",
                        duration_words(self.pin_lock_ms)
                    ),
                );
                return;
            }
            self.pin_prompt = Some(Field::secret("pin", "Supervisor PIN", 12, 0));
            return;
        }
        if matches!(
            self.job.as_ref().map(|j| &j.phase),
            Some(JobPhase::Authorizing | JobPhase::Printing(_))
        ) {
            self.notice(
                Severity::Warn,
                "An item is printing; wait for its outcome before quitting.",
            );
            return;
        }
        let again = self.config.keys.hint(Action::Quit);
        let ask = format!("{again} again quits (or y); any other key stays.");
        self.confirm = Some(Confirm::Quit);
        if self.open_jobs > 0 {
            let n = self.open_jobs;
            self.notice(
                Severity::Warn,
                format!(
                    "{} not settled with the vendor yet; kept and settled at the next start. {ask}",
                    items_word(n)
                ),
            );
        } else {
            self.notice(Severity::Warn, format!("Quit the counter? {ask}"));
        }
    }

    /// The key after a question: `y` or the question's own key again is yes, anything else no.
    fn on_confirm_key(
        &mut self,
        question: Confirm,
        key: &KeyEvent,
        action: Option<Action>,
        out: &mut Vec<Command>,
    ) {
        let plain = !key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT);
        let yes = (plain && matches!(key.code, KeyCode::Char('y' | 'Y')))
            || match question {
                Confirm::Quit => action == Some(Action::Quit),
                Confirm::Refund(_) => action == Some(Action::RequestRefund),
            };
        match (question, yes) {
            (Confirm::Quit, true) => {
                self.quit = true;
                out.push(Command::Quit);
            }
            (Confirm::Quit, false) => self.notice(Severity::Info, "Not quitting."),
            (Confirm::Refund(job), true) => self.send_refund(job, out),
            (Confirm::Refund(job), false) => {
                self.notice(Severity::Info, format!("No refund requested for {job}."))
            }
        }
    }

    /// Whether a refund can be requested for `job` (printed, or unsettled and so charged).
    fn refundable(&self, job: JobId) -> bool {
        matches!(
            self.item_state(job),
            Some(ItemState::Printed | ItemState::Unsettled)
        )
    }

    /// Asks before a refund request: it cannot be taken back.
    fn ask_refund(&mut self, job: JobId) {
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

    fn send_refund(&mut self, job: JobId, out: &mut Vec<Command>) {
        if !self.refundable(job) {
            self.notice(Severity::Warn, format!("{job}: no refund to request."));
            return;
        }
        out.push(Command::RequestRefund { job });
        self.set_item_state(job, ItemState::Refund(RefundState::Requested));
        self.notice(Severity::Info, format!("Refund requested for {job}."));
    }

    fn on_pin_key(&mut self, key: KeyEvent, out: &mut Vec<Command>) {
        let action = self.config.keys.action(&key);
        let Some(field) = self.pin_prompt.as_mut() else {
            return;
        };
        match action {
            Some(Action::Back) => self.pin_prompt = None,
            Some(Action::Submit) => {
                let ok = match (field.secret_value(), &self.config.supervisor_pin) {
                    (Some(entered), Some(hash)) => hash.verify(entered.expose()),
                    _ => false,
                };
                field.clear();
                if ok {
                    self.pin_prompt = None;
                    self.quit = true;
                    out.push(Command::Quit);
                } else {
                    self.pin_attempts += 1;
                    field.error = Some(format!(
                        "wrong PIN ({} of {PIN_ATTEMPTS_MAX} attempts)",
                        self.pin_attempts
                    ));
                    field.touched = true;
                    if self.pin_attempts >= PIN_ATTEMPTS_MAX {
                        self.pin_prompt = None;
                        self.pin_lock_ms = PIN_LOCK_MS;
                        self.notice(
                            Severity::Error,
                            format!(
                                "Too many wrong PINs: quitting is locked for {}.",
                                duration_words(PIN_LOCK_MS)
                            ),
                        );
                    }
                }
            }
            _ => {
                if let KeyCode::Char(c) = key.code {
                    if c.is_ascii_digit() && !key.modifiers.contains(KeyModifiers::CONTROL) {
                        field.type_char(c);
                    }
                } else if key.code == KeyCode::Backspace {
                    field.backspace();
                }
            }
        }
    }

    /// Whether an item is being authorized or printed right now.
    pub fn job_in_flight(&self) -> bool {
        matches!(
            self.job.as_ref().map(|j| &j.phase),
            Some(JobPhase::Authorizing | JobPhase::Printing(_))
        )
    }

    fn go(&mut self, screen: Screen, out: &mut Vec<Command>) {
        if self.config.kiosk {
            return; // kiosk: no free navigation
        }
        if self.job_in_flight() {
            self.notice(
                Severity::Warn,
                "An item is printing; wait for its outcome on this screen.",
            );
            return;
        }
        if self.clerk.is_none() {
            self.notice(Severity::Warn, "Sign in first.");
            return;
        }
        self.notice = None;
        match screen {
            Screen::ItemForm(kind) => {
                self.item_form = item_form(kind);
                self.validate_item_form(kind);
            }
            Screen::History => out.push(Command::LoadHistory),
            Screen::Funds => {
                self.funds = funds_form(false);
                self.paying = false;
            }
            Screen::SignIn => {
                self.clerk = None;
                self.balance = None;
                self.sign_in.clear();
                out.push(Command::SignOut);
            }
            _ => {}
        }
        self.screen = screen;
    }

    fn on_action(&mut self, action: Action, out: &mut Vec<Command>) {
        match action {
            Action::Home => return self.go(Screen::Home, out),
            Action::History => return self.go(Screen::History, out),
            Action::Funds => return self.go(Screen::Funds, out),
            Action::Settings => return self.go(Screen::Settings, out),
            Action::SignOut => return self.go(Screen::SignIn, out),
            _ => {}
        }
        match self.screen {
            Screen::Welcome => {
                if action == Action::Submit && !self.out_of_service {
                    self.notice = None;
                    self.screen = Screen::Postage;
                }
            }
            Screen::SignIn => self.on_sign_in(action, out),
            Screen::Home => self.on_home(action, out),
            Screen::Postage => self.on_postage(action, out),
            Screen::ItemForm(kind) => self.on_item_form(kind, action),
            Screen::Review => self.on_review(action, out),
            Screen::Printing => self.on_printing(action),
            Screen::History => self.on_history(action),
            Screen::Funds => self.on_funds(action, out),
            Screen::Settings => self.on_settings(action, out),
        }
    }

    fn on_text_key(&mut self, key: KeyEvent, out: &mut Vec<Command>) {
        if key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            return; // unbound chords (kiosk: Ctrl-Z, Ctrl-\) are swallowed
        }
        let screen = self.screen;
        if screen == Screen::Funds
            && self.paying
            && self.funds.focused().is_some_and(|f| f.key == "amount")
        {
            return; // the price of the item being paid for is not editable
        }
        let form = match screen {
            Screen::SignIn => &mut self.sign_in,
            Screen::Postage => &mut self.postage,
            Screen::ItemForm(_) => &mut self.item_form,
            Screen::History => &mut self.history_filter,
            Screen::Funds => &mut self.funds,
            _ => return,
        };
        let Some(field) = form.focused_mut() else {
            return;
        };
        let changed = match key.code {
            KeyCode::Char(c) => field.type_char(c),
            KeyCode::Backspace => field.backspace(),
            _ => false,
        };
        if changed {
            self.after_edit(screen, out);
        }
    }

    fn after_edit(&mut self, screen: Screen, out: &mut Vec<Command>) {
        match screen {
            Screen::Postage => {
                self.validate_postage();
                self.maybe_quote(out);
            }
            Screen::ItemForm(kind) => self.validate_item_form(kind),
            Screen::History => self.history_selected = 0,
            Screen::Funds => {
                set_funds_visibility(&mut self.funds);
                self.validate_funds();
            }
            _ => {}
        }
    }

    fn form_nav(form: &mut Form, action: Action) -> bool {
        match action {
            Action::NextField | Action::RowDown => form.next(),
            Action::PrevField | Action::RowUp => form.prev(),
            Action::ChoiceNext | Action::ChoicePrev => {
                return form
                    .focused_mut()
                    .is_some_and(|f| f.cycle(action == Action::ChoiceNext));
            }
            _ => {}
        }
        false
    }

    fn on_sign_in(&mut self, action: Action, out: &mut Vec<Command>) {
        Self::form_nav(&mut self.sign_in, action);
        if action != Action::Submit || self.signing_in {
            return;
        }
        let clerk = self.sign_in.text("clerk").trim().to_string();
        let password = self
            .sign_in
            .get("password")
            .and_then(Field::secret_value)
            .cloned()
            .unwrap_or_default();
        if clerk.is_empty() || password.is_empty() {
            self.notice(
                Severity::Warn,
                "Enter the clerk name and password, then Enter.",
            );
            return;
        }
        self.signing_in = true;
        self.notice(Severity::Info, format!("Signing in as {clerk}…"));
        out.push(Command::SignIn { clerk, password });
        if let Some(p) = self.sign_in.get_mut("password") {
            p.clear();
        }
    }

    fn on_home(&mut self, action: Action, out: &mut Vec<Command>) {
        let n = HOME_MENU.len();
        match action {
            Action::RowDown | Action::NextField => {
                self.home_selected = (self.home_selected + 1) % n
            }
            Action::RowUp | Action::PrevField => {
                self.home_selected = (self.home_selected + n - 1) % n
            }
            Action::Submit => {
                let (_, screen) = HOME_MENU[self.home_selected % n];
                self.go(screen, out);
            }
            Action::NewItem => self.go(Screen::Postage, out),
            _ => {}
        }
    }

    fn back_to_start(&mut self) {
        self.notice = None;
        self.screen = if self.config.kiosk {
            Screen::Welcome
        } else {
            Screen::Home
        };
    }

    fn on_postage(&mut self, action: Action, out: &mut Vec<Command>) {
        if Self::form_nav(&mut self.postage, action) {
            self.validate_postage();
            self.maybe_quote(out);
        }
        match action {
            Action::Back => {
                if self.config.kiosk {
                    self.reset_kiosk();
                } else {
                    self.back_to_start();
                }
            }
            Action::Submit => self.submit_postage(),
            _ => {}
        }
    }

    fn address(&self, p: &str) -> AddressInput {
        let g = |k: &str| self.postage.text(&format!("{p}{k}")).to_string();
        AddressInput {
            name: g("name"),
            line1: g("line1"),
            line2: g("line2"),
            city: g("city"),
            state: g("state"),
            zip: g("zip"),
        }
    }

    /// Per-field validation of the postage form; returns the recipient's valid ZIP etc.
    fn validate_postage(&mut self) {
        for p in ["s_", "r_"] {
            let errors = FormatValidator.validate(&self.address(p)).err();
            for k in ["name", "line1", "line2", "city", "state", "zip"] {
                let key = format!("{p}{k}");
                let e = errors
                    .as_ref()
                    .and_then(|es| es.field(k))
                    .map(|e| e.reason.clone())
                    .or_else(|| self.unprintable(self.postage.text(&key)));
                self.postage.set_error(&key, e);
            }
        }
        let w = self.postage.text("weight").trim().to_string();
        let (e, note) = match super::input::weight_oz(&w) {
            Ok((oz, true)) => (None, Some(format!("rounded up to {oz} oz"))),
            Ok((oz, false)) if w != oz.to_string() => (None, Some(format!("= {oz} oz"))),
            Ok(_) => (None, None),
            Err(e) => (Some(e), None),
        };
        self.postage.set_error("weight", e);
        self.postage.set_note("weight", note);
    }

    /// While the link is down no quote can come: what to tell the person instead of "waiting
    /// for the vendor" (the quote is asked again when the link is back).
    pub fn quote_waiting_for_link(&self) -> Option<&'static str> {
        let waiting = matches!(
            self.quote,
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

    fn postage_class(&self) -> MailClass {
        MailClass::ALL
            .get(
                self.postage
                    .get("class")
                    .map(Field::choice_index)
                    .unwrap_or(0),
            )
            .copied()
            .unwrap_or(MailClass::FirstClass)
    }

    fn maybe_quote(&mut self, out: &mut Vec<Command>) {
        let ok = |k: &str| self.postage.get(k).is_some_and(|f| f.error.is_none());
        if !(ok("weight") && ok("s_zip") && ok("r_zip")) {
            self.quote = QuoteState::Incomplete;
            self.quote_inputs = None;
            return;
        }
        let Ok((weight, _)) = super::input::weight_oz(self.postage.text("weight")) else {
            return;
        };
        let inputs = (
            self.postage_class(),
            weight,
            self.postage.text("s_zip").trim().to_string(),
            self.postage.text("r_zip").trim().to_string(),
        );
        if self.quote_inputs.as_ref() == Some(&inputs) {
            return;
        }
        let request = self.next_request;
        self.next_request += 1;
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

    fn submit_postage(&mut self) {
        self.validate_postage();
        self.postage.touch_all();
        if let Some(f) = self.postage.first_error().cloned() {
            self.fix_notice(Screen::Postage, &f);
            return;
        }
        let QuoteState::Ready { amount, .. } = self.quote else {
            let text = match self.quote_waiting_for_link() {
                Some(words) => format!("{words} Enter again when it shows."),
                None => "Waiting for the vendor's quote; Enter again when it shows.".into(),
            };
            self.notice(Severity::Warn, text);
            return;
        };
        let Ok(to) = FormatValidator.validate(&self.address("r_")) else {
            return;
        };
        let Ok(from) = FormatValidator.validate(&self.address("s_")) else {
            return;
        };
        let typed_weight = self.postage.text("weight").trim().to_string();
        let Ok((weight, rounded)) = super::input::weight_oz(&typed_weight) else {
            return;
        };
        let Ok(weight) = WeightOz::new(weight) else {
            return;
        };
        let Ok(destination) = Destination::new(to.zip5, to.zip4, None) else {
            return;
        };
        let class = self.postage_class();
        let summary = vec![
            (
                "From".into(),
                format!("{}, {}, {} {}", from.name, from.city, from.state, from.zip5),
            ),
            (
                "To".into(),
                format!("{}, {}, {} {}", to.name, to.city, to.state, destination),
            ),
            ("Class".into(), super::input::class_words(class).to_string()),
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
        let block = |a: &crate::indicium::address::Address, zip: String| {
            let mut lines = vec![a.name.clone(), a.line1.clone()];
            if !a.line2.is_empty() {
                lines.push(a.line2.clone());
            }
            lines.push(format!("{} {} {}", a.city, a.state, zip));
            lines
        };
        let label = LabelText {
            origin_zip: Some(from.zip5.to_string()),
            from: block(&from, from.zip5.to_string()),
            to: block(&to, destination.to_string()),
        };
        self.draft = Some(Draft {
            item: Item::Postage(Postage {
                class,
                weight,
                destination,
            }),
            amount,
            label,
            summary,
        });
        self.draft_from = Screen::Postage;
        self.notice = None;
        self.screen = Screen::Review;
    }

    /// Words for the first character of `text` the printer cannot print (its code pages).
    fn unprintable(&self, text: &str) -> Option<String> {
        let p = self.config.printer_profile.as_ref()?;
        crate::printer::codepage::printable(p, text)
            .err()
            .map(crate::printer::codepage::refusal)
    }

    fn validate_item_form(&mut self, kind: ItemKind) {
        let keys: Vec<&'static str> = self.item_form.fields.iter().map(|f| f.key).collect();
        for key in keys {
            let v = self.item_form.text(key).to_string();
            let e = match key {
                "event" | "venue" | "seat" | "payee" | "offer" | "recipient" => {
                    Text::new(key, &v).err().map(|e| e.reason)
                }
                "memo" if v.trim().is_empty() => None,
                "memo" => Text::new(key, &v).err().map(|e| e.reason),
                "price" | "amount" | "value" => match Cents::parse_dollars(&v) {
                    Ok(c) if c.is_zero() => Some("must be more than $0.00".into()),
                    Ok(c) if c > item_value_max() => Some(format!(
                        "is over {}, the most one item may be worth",
                        item_value_max()
                    )),
                    Ok(_) => None,
                    Err(e) => Some(e.to_string()),
                },
                "number" => match v.trim().parse::<u32>() {
                    Ok(n) => CheckNumber::new(n).err().map(|e| e.reason),
                    Err(_) => Some("is a whole number".into()),
                },
                "event_day" | "expiry" => {
                    let (e, note) = self.check_day(key, &v);
                    self.item_form.set_note(key, note);
                    e
                }
                _ => None,
            };
            let e = e.or_else(|| self.unprintable(&v));
            self.item_form.set_error(key, e);
        }
        let _ = kind;
    }

    /// A date field: its error (not a date, or before today), and the day in words.
    fn check_day(&self, key: &'static str, text: &str) -> (Option<String>, Option<String>) {
        let day = match super::input::date(key, text) {
            Ok(day) => day,
            Err(e) => return (Some(e), None),
        };
        let words = super::input::day_words(day);
        match self.today {
            Some(today) if day < today => {
                let what = if key == "expiry" {
                    "an expiry must be today or later"
                } else {
                    "the event must be today or later"
                };
                (Some(format!("{words} is in the past; {what}")), None)
            }
            _ => (None, Some(words)),
        }
    }

    fn build_item(&self, kind: ItemKind) -> Option<Item> {
        let f = &self.item_form;
        let text = |k: &'static str| Text::new(k, f.text(k)).ok();
        let cents = |k: &str| Cents::parse_dollars(f.text(k)).ok();
        let day = |k: &'static str| super::input::date(k, f.text(k)).ok();
        Some(match kind {
            ItemKind::Ticket => Item::Ticket(Ticket {
                event: text("event")?,
                venue: text("venue")?,
                seat: text("seat")?,
                event_day: day("event_day")?,
                price: cents("price")?,
            }),
            ItemKind::Check => Item::Check(Check {
                payee: text("payee")?,
                amount: cents("amount")?,
                number: CheckNumber::new(f.text("number").trim().parse().ok()?).ok()?,
                memo: if f.text("memo").trim().is_empty() {
                    None
                } else {
                    Some(text("memo")?)
                },
            }),
            ItemKind::Coupon => Item::Coupon(Coupon {
                offer: text("offer")?,
                value: cents("value")?,
                expiry: day("expiry")?,
            }),
            ItemKind::GiftCertificate => Item::GiftCertificate(GiftCertificate {
                recipient: text("recipient")?,
                value: cents("value")?,
                expiry: day("expiry")?,
            }),
            _ => return None,
        })
    }

    fn on_item_form(&mut self, kind: ItemKind, action: Action) {
        Self::form_nav(&mut self.item_form, action);
        match action {
            Action::Back => self.back_to_start(),
            Action::Submit => {
                self.validate_item_form(kind);
                self.item_form.touch_all();
                if let Some(f) = self.item_form.first_error().cloned() {
                    self.fix_notice(Screen::ItemForm(kind), &f);
                    return;
                }
                let Some(item) = self.build_item(kind) else {
                    return;
                };
                let amount = item.face_value().unwrap_or(Cents::ZERO);
                let summary = self
                    .item_form
                    .fields
                    .iter()
                    .filter(|f| !f.text_value().trim().is_empty())
                    .map(|f| {
                        let typed = f.text_value().trim().to_string();
                        // Dates as read, in both forms: no day/month order to misread.
                        let shown = match super::input::date(f.key, &typed) {
                            Ok(d) if matches!(f.key, "event_day" | "expiry") => {
                                format!("{d} ({})", super::input::day_words(d))
                            }
                            _ => typed,
                        };
                        (f.label.trim_end_matches(" $").to_string(), shown)
                    })
                    .collect();
                self.draft = Some(Draft {
                    item,
                    amount,
                    label: LabelText::default(),
                    summary,
                });
                self.draft_from = Screen::ItemForm(kind);
                self.notice = None;
                self.screen = Screen::Review;
            }
            _ => {}
        }
    }

    fn on_review(&mut self, action: Action, out: &mut Vec<Command>) {
        match action {
            Action::Back => {
                self.notice = None;
                self.screen = self.draft_from;
            }
            Action::Submit => {
                if let Some(d) = self.draft.as_ref().filter(|d| d.amount > item_value_max()) {
                    let text = format!(
                        "{} is over {}, the most one item may be worth; go back and lower it.",
                        d.amount,
                        item_value_max()
                    );
                    self.notice(Severity::Error, text);
                    return;
                }
                if let Some(reason) = self.print_block_reason() {
                    self.notice(Severity::Error, reason);
                    return;
                }
                if self.config.kiosk {
                    // Kiosk pays by card for exactly this item first.
                    let amount = self.draft.as_ref().map(|d| d.amount).unwrap_or(Cents::ZERO);
                    self.funds = funds_form(true);
                    if let Some(f) = self.funds.get_mut("amount") {
                        let text = format!("{}.{:02}", amount.get() / 100, amount.get() % 100);
                        for c in text.chars() {
                            f.type_char(c);
                        }
                    }
                    self.validate_funds();
                    self.funds.focus = 2;
                    self.paying = true;
                    self.notice = None;
                    self.screen = Screen::Funds;
                    return;
                }
                self.authorize(out);
            }
            _ => {}
        }
    }

    /// Sends Authorize for the draft, consuming it: the same draft can never be issued twice.
    fn authorize(&mut self, out: &mut Vec<Command>) {
        let Some(draft) = self.draft.take() else {
            return;
        };
        let id = JobId(self.next_job);
        self.next_job += 1;
        let kind = draft.item.kind();
        self.job = Some(Job {
            id,
            kind,
            title: title_of(kind).to_string(),
            amount: draft.amount,
            phase: JobPhase::Authorizing,
            cause: None,
            assumed_on_paper: false,
        });
        out.push(Command::Authorize {
            job: id,
            item: Box::new(draft.item),
            amount: draft.amount,
            label: Box::new(draft.label),
        });
        // The form that made it is spent.
        match self.draft_from {
            Screen::Postage => {
                self.postage.clear();
                self.quote = QuoteState::Incomplete;
                self.quote_inputs = None;
            }
            _ => self.item_form.clear(),
        }
        self.notice = None;
        self.screen = Screen::Printing;
    }

    fn on_printing(&mut self, action: Action) {
        let Some(job) = &self.job else {
            return;
        };
        let done = matches!(job.phase, JobPhase::Done { .. });
        let id = job.id;
        if !done {
            return; // nothing to do while the item prints
        }
        match action {
            Action::RequestRefund if !self.config.kiosk => {
                if self.refundable(id) {
                    self.ask_refund(id);
                } else {
                    self.notice(Severity::Warn, "No refund to request for this item.");
                }
            }
            Action::NewItem | Action::Submit | Action::Back => {
                if self.config.kiosk {
                    self.job = None;
                    self.reset_kiosk();
                } else if action == Action::NewItem {
                    self.notice = None;
                    self.screen = Screen::Postage;
                } else {
                    self.back_to_start();
                }
            }
            _ => {}
        }
    }

    fn on_history(&mut self, action: Action) {
        let rows = self.filtered_history().len();
        match action {
            Action::RowDown if rows > 0 => {
                self.history_selected = (self.history_selected + 1) % rows
            }
            Action::RowUp if rows > 0 => {
                self.history_selected = (self.history_selected + rows - 1) % rows
            }
            Action::NextField | Action::PrevField | Action::ChoiceNext | Action::ChoicePrev => {
                let changed = Self::form_nav(&mut self.history_filter, action);
                if changed {
                    self.history_selected = 0;
                }
            }
            Action::RequestRefund => {
                let Some(e) = self
                    .filtered_history()
                    .get(self.history_selected)
                    .map(|e| (e.job, e.state))
                else {
                    return;
                };
                match e.1 {
                    ItemState::Printed | ItemState::Unsettled => self.ask_refund(e.0),
                    s => self.notice(
                        Severity::Warn,
                        format!(
                            "{} is {}, so there is no refund to request.",
                            e.0,
                            s.label()
                        ),
                    ),
                }
            }
            Action::Back => self.back_to_start(),
            _ => {}
        }
    }

    fn set_item_state(&mut self, job: JobId, state: ItemState) {
        if let Some(e) = self.history.iter_mut().find(|e| e.job == job) {
            e.state = state;
        }
    }

    fn validate_funds(&mut self) {
        let card = self.funds.text("method") == "card";
        let amount = self.funds.text("amount").to_string();
        let e = match Cents::parse_dollars(&amount) {
            Ok(c) if c.is_zero() => Some("must be more than $0.00".into()),
            Ok(_) => None,
            Err(e) => Some(e.to_string()),
        };
        self.funds.set_error("amount", e);
        let digits = |k: &str, f: &Form| -> String {
            f.get(k)
                .and_then(Field::secret_value)
                .map(|s| s.expose().to_string())
                .unwrap_or_default()
        };
        let num = super::input::card_digits(&digits("card", &self.funds));
        let e = match &num {
            _ if !card => None,
            Err(e) => Some(e.clone()),
            Ok(num) if !(13..=19).contains(&num.len()) => {
                Some(format!("has {} digits; cards have 13 to 19", num.len()))
            }
            Ok(num) if !luhn_ok(num) => {
                Some("check digit does not match; retype the number".into())
            }
            Ok(_) => None,
        };
        self.funds.set_error("card", e);
        let exp = self.funds.text("expiry").to_string();
        let valid_exp = exp.len() == 5
            && exp.as_bytes()[2] == b'/'
            && exp[..2].parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
            && exp[3..].chars().all(|c| c.is_ascii_digit());
        self.funds.set_error(
            "expiry",
            (card && !valid_exp).then(|| "use MM/YY, e.g. 04/29".into()),
        );
        let cvc = digits("cvc", &self.funds);
        let ok = (3..=4).contains(&cvc.len()) && cvc.chars().all(|c| c.is_ascii_digit());
        self.funds.set_error(
            "cvc",
            (card && !ok).then(|| "3 or 4 digits from the card's back".into()),
        );
        let routing = digits("routing", &self.funds);
        let ok = routing.len() == 9 && routing.chars().all(|c| c.is_ascii_digit());
        self.funds
            .set_error("routing", (!card && !ok).then(|| "9 digits".into()));
        let account = digits("account", &self.funds);
        let ok = (4..=17).contains(&account.len()) && account.chars().all(|c| c.is_ascii_digit());
        self.funds
            .set_error("account", (!card && !ok).then(|| "4 to 17 digits".into()));
    }

    fn on_funds(&mut self, action: Action, out: &mut Vec<Command>) {
        if self.pay_pending {
            return; // the card is being charged: wait for the answer
        }
        if Self::form_nav(&mut self.funds, action) {
            set_funds_visibility(&mut self.funds);
            self.validate_funds();
        }
        match action {
            Action::Back => {
                self.funds.clear();
                set_funds_visibility(&mut self.funds);
                if self.paying {
                    self.paying = false;
                    self.screen = Screen::Review;
                } else {
                    self.back_to_start();
                }
            }
            Action::Submit => {
                self.validate_funds();
                self.funds.touch_all();
                if let Some(f) = self.funds.first_error().cloned() {
                    self.fix_notice(Screen::Funds, &f);
                    return;
                }
                let Ok(amount) = Cents::parse_dollars(self.funds.text("amount")) else {
                    return;
                };
                let secret = |k: &str| {
                    self.funds
                        .get(k)
                        .and_then(Field::secret_value)
                        .cloned()
                        .unwrap_or_default()
                };
                let method = if self.funds.text("method") == "card" {
                    // Spaces and dashes typed between the groups are not part of the number.
                    let number = super::input::card_digits(secret("card").expose())
                        .map(Secret::new)
                        .unwrap_or_default();
                    FundMethod::Card {
                        number,
                        expiry: self.funds.text("expiry").to_string(),
                        cvc: secret("cvc"),
                    }
                } else {
                    FundMethod::Eft {
                        routing: secret("routing").expose().to_string(),
                        account: secret("account"),
                    }
                };
                out.push(Command::Fund { method, amount });
                if self.paying {
                    // The item is authorized only once the payment is approved (FundResult):
                    // a declined card must not issue it from the account's balance.
                    self.pay_pending = true;
                    self.notice(Severity::Info, format!("Charging {amount} to the card…"));
                    for key in ["card", "expiry", "cvc"] {
                        if let Some(f) = self.funds.get_mut(key) {
                            f.clear();
                        }
                    }
                } else {
                    self.funds.clear();
                    set_funds_visibility(&mut self.funds);
                    self.notice(Severity::Info, format!("Adding {amount}…"));
                }
            }
            _ => {}
        }
    }

    fn on_settings(&mut self, action: Action, out: &mut Vec<Command>) {
        match action {
            Action::RowDown | Action::NextField | Action::RowUp | Action::PrevField => {
                self.settings_selected = 1 - self.settings_selected.min(1);
            }
            Action::ChoiceNext | Action::ChoicePrev if self.settings_selected == 0 => {
                let n = BUILTIN.len();
                self.theme_index = if action == Action::ChoiceNext {
                    (self.theme_index + 1) % n
                } else {
                    (self.theme_index + n - 1) % n
                };
                let no_color = self.config.theme.no_color;
                match Theme::builtin(BUILTIN[self.theme_index], no_color) {
                    Ok(t) => {
                        self.theme_to_save = Some(t.name.clone());
                        self.config.theme = t;
                    }
                    Err(e) => self.notice(Severity::Error, e),
                }
            }
            Action::Submit if self.settings_selected == 1 => {
                out.push(Command::ProbePrinter);
                self.notice(Severity::Info, "Asking the printer for its status…");
            }
            Action::Back => self.back_to_start(),
            _ => {}
        }
    }

    fn on_backend(&mut self, b: Backend, out: &mut Vec<Command>) {
        match b {
            Backend::LinkChanged(status) => {
                let was_up = self.link_state().allows_printing();
                self.link = Some(status);
                // A quote asked for (or refused) while the link was down is asked again now.
                if !was_up
                    && self.link_state().allows_printing()
                    && matches!(
                        self.quote,
                        QuoteState::Pending { .. } | QuoteState::Failed { .. }
                    )
                {
                    self.quote_inputs = None;
                    self.maybe_quote(out);
                }
            }
            Backend::PrinterStatus(s) => self.printer = s,
            Backend::SignedIn { clerk, balance } => {
                self.signing_in = false;
                self.out_of_service = false;
                self.clerk = Some(clerk);
                self.balance = Some(balance);
                self.notice = None;
                self.sign_in.clear();
                if !self.config.kiosk && self.screen == Screen::SignIn {
                    self.screen = Screen::Home;
                }
            }
            Backend::SignInFailed { reason } => {
                self.signing_in = false;
                if self.config.kiosk {
                    // The reason is office data; the public is told the kiosk is out of use.
                    self.go_out_of_service();
                } else {
                    self.notice(Severity::Error, format!("Sign-in failed: {reason}"));
                }
            }
            Backend::SessionEnded { reason } => self.on_session_ended(reason),
            Backend::Quote { request, amount } => {
                if self.quote == (QuoteState::Pending { request }) {
                    self.quote = QuoteState::Ready { request, amount };
                }
            }
            Backend::QuoteFailed { request, reason } => {
                if self.quote == (QuoteState::Pending { request }) {
                    self.quote = QuoteState::Failed { reason };
                }
            }
            Backend::Balance(c) => self.balance = Some(c),
            Backend::Authorized { job } => self.on_authorized(job, out),
            Backend::AuthorizeFailed { job, reason } => {
                if let Some(j) = self.job.as_mut().filter(|j| j.id == job) {
                    j.phase = JobPhase::Done {
                        severity: Severity::Error,
                        message: if self.config.kiosk {
                            // The card payment came first and stays on the account. The
                            // vendor's reason is office data (e.g. the account's balance).
                            "Your item could not be issued. Your payment is kept; please ask staff for a refund.".to_string()
                        } else {
                            format!("Not issued: {reason}. Nothing was charged.")
                        },
                    };
                }
            }
            Backend::PrintProgress { job, progress } => {
                if let Some(j) = self
                    .job
                    .as_mut()
                    .filter(|j| j.id == job && matches!(j.phase, JobPhase::Printing(_)))
                {
                    j.phase = JobPhase::Printing(progress);
                }
            }
            Backend::PrintOutcome { job, outcome } => self.on_outcome(job, outcome),
            Backend::Settlement {
                job,
                piece,
                assumed_on_paper,
                amount,
                settlement,
                phase,
            } => {
                if assumed_on_paper && let Some(j) = self.job.as_mut().filter(|j| j.id == job) {
                    j.assumed_on_paper = true;
                }
                self.on_settlement(job, piece, amount, settlement, phase)
            }
            Backend::OpenJobs {
                open,
                from_last_run,
            } => {
                if from_last_run > 0 && self.last_run_jobs == 0 && self.confirm.is_none() {
                    self.notice(
                        Severity::Info,
                        format!(
                            "Settling {} from the last run with the vendor; new items can be printed once they are.",
                            items_word(from_last_run)
                        ),
                    );
                } else if from_last_run == 0 && self.last_run_jobs > 0 && self.confirm.is_none() {
                    self.notice(
                        Severity::Ok,
                        "Items from the last run are settled; ready for new items.",
                    );
                }
                self.open_jobs = open;
                self.last_run_jobs = from_last_run;
            }
            Backend::History(rows) => {
                // The vendor lists newest first. Local rows it does not know yet are newer
                // than any it lists: they go in front, still newest first.
                let mut merged: Vec<HistoryEntry> = self
                    .history
                    .iter()
                    .filter(|local| !rows.iter().any(|r| r.job == local.job))
                    .cloned()
                    .collect();
                merged.extend(rows);
                merged.truncate(HISTORY_ROWS_MAX);
                self.history = merged;
                self.history_selected = 0;
            }
            Backend::RefundChanged { job, state } => {
                self.set_item_state(job, ItemState::Refund(state));
            }
            Backend::FundResult {
                ok,
                declined,
                message,
            } => {
                if self.pay_pending {
                    self.pay_pending = false;
                    if ok && self.paying && self.screen == Screen::Funds {
                        self.paying = false;
                        self.funds.clear();
                        set_funds_visibility(&mut self.funds);
                        self.authorize(out);
                        return;
                    }
                    // Declined or failed: the card form stays up for another card.
                    self.funds.focus = 2;
                }
                let message = if self.config.kiosk && !ok {
                    kiosk_payment_words(declined).to_string()
                } else {
                    message
                };
                self.notice(if ok { Severity::Ok } else { Severity::Error }, message)
            }
            Backend::Error(e) => self.notice(Severity::Error, e),
            // Issue 15's basket, close-out and supervisor events: the counter screens take
            // them up (one arm here so the backend can send them meanwhile).
            Backend::Numbered { .. }
            | Backend::Items(_)
            | Backend::TenderRecorded { .. }
            | Backend::TenderFailed { .. }
            | Backend::DayReport(_)
            | Backend::DayReportFailed { .. }
            | Backend::RefundsAwaiting(_)
            | Backend::RefundsAwaitingFailed { .. }
            | Backend::RefundDecided { .. }
            | Backend::RefundDecisionFailed { .. } => {}
        }
    }

    /// Nobody is signed in any more: a counter goes to its sign-in screen with the reason; a
    /// kiosk goes out of service instead of inviting customers it cannot serve.
    fn on_session_ended(&mut self, reason: String) {
        self.signing_in = false;
        self.clerk = None;
        self.balance = None;
        self.confirm = None;
        if self.config.kiosk {
            self.go_out_of_service();
            return;
        }
        self.sign_in.clear();
        self.show_help = false;
        self.screen = Screen::SignIn;
        self.notice(Severity::Error, reason);
    }

    /// Kiosk: everything entered is cleared and the screen says the kiosk is out of service.
    fn go_out_of_service(&mut self) {
        self.reset_kiosk();
        self.out_of_service = true;
        self.notice(
            Severity::Error,
            "This kiosk is out of service. Please ask staff for help.",
        );
    }

    fn on_authorized(&mut self, job: JobId, out: &mut Vec<Command>) {
        let Some(j) = self.job.as_mut().filter(|j| j.id == job) else {
            return;
        };
        // One-time rule: Print is sent at most once per job, whatever the backend repeats.
        if self.printed.contains(&job) || j.phase != JobPhase::Authorizing {
            return;
        }
        let entry = HistoryEntry {
            job,
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
            self.push_history(HistoryEntry {
                state: ItemState::Settling,
                ..entry
            });
            return;
        }
        j.phase = JobPhase::Printing(Progress::default());
        self.printed.push(job);
        out.push(Command::Print { job });
        self.push_history(entry);
    }

    /// A new item goes first: the history is kept newest first.
    fn push_history(&mut self, e: HistoryEntry) {
        self.history.truncate(HISTORY_ROWS_MAX - 1);
        self.history.insert(0, e);
    }

    /// The print ended. Display only: what it means for the money is the backend's job
    /// book's decision, which arrives as [`Backend::Settlement`].
    fn on_outcome(&mut self, job: JobId, outcome: JobOutcome) {
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
    fn on_settlement(
        &mut self,
        job: JobId,
        piece: Option<u64>,
        amount: Cents,
        settlement: Settlement,
        phase: SettlePhase,
    ) {
        let current = self.job.as_ref().filter(|j| j.id == job);
        // A job no longer on screen (or left by the last run) is named by its piece.
        let title = match (current, piece) {
            (Some(j), _) => format!("{} {job}", j.title.to_lowercase()),
            (None, Some(p)) => format!("piece {p}"),
            (None, None) => "an item".to_string(),
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

    /// The theme chosen since the last call, for the shell to keep in the config file (the app
    /// writes no file itself).
    pub fn take_theme_to_save(&mut self) -> Option<String> {
        self.theme_to_save.take()
    }

    /// The item's state in history, for tests and the printing screen.
    pub fn item_state(&self, job: JobId) -> Option<ItemState> {
        self.history.iter().find(|e| e.job == job).map(|e| e.state)
    }

    /// How many Print commands were ever sent for `job` (0 or 1).
    pub fn print_count(&self, job: JobId) -> usize {
        self.printed.iter().filter(|j| **j == job).count()
    }

    /// Convenience for the runner and tests: a `Secret` built from typed text.
    pub fn secret(text: &str) -> Secret {
        Secret::new(text)
    }
}
