//! The counter app's state machine: sans-I/O. [`App::handle`] takes one [`Event`] and returns
//! the [`Command`]s to send; drawing reads the state (see [`super::draw`]).
//!
//! This module holds what every screen shares (who is signed in, the link and printer, the
//! notice line, questions, the kiosk's PIN and idle rules) and routes keys, clicks and backend
//! reports; each screen's own state, key table, handlers and drawing live in its module under
//! [`super::screens`].
//!
//! Over 800 lines on purpose: this is the one router every screen shares (the rules that hold
//! across screens: questions, the notice line, the kiosk's PIN and idle clock, link and printer
//! state). Each screen's own rules already live in `screens/`; what is left here would be the
//! same router spread over files that each need all of it.

use super::event::{
    Backend, BasketId, Command, Event, ItemState, JobId, PieceNumber, PrinterStatus, Secret,
};
use super::form::{AnyForm, Field};
use super::hits::{Hits, Target};
use super::keys::{Action, KeyBindings};
use super::screens::{self, Binding, key, quiet};
use super::theme::Theme;
use crate::indicium::ItemKind;
use crate::indicium::kinds::Day;
use crate::link::LinkState;
use crate::link::driver::LinkStatus;
use crate::money::Cents;
use crossterm::event::{
    KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseButton, MouseEventKind,
};
use sha2::{Digest, Sha256};

pub use super::screens::basket::{BasketItem, BasketPhase, BasketScreen, ItemOutcome, TenderField};
pub use super::screens::day::DayScreen;
pub use super::screens::funds::{FundsField, FundsScreen};
pub use super::screens::history::{HistoryField, HistoryRow, HistoryScreen, ItemRef};
pub use super::screens::home::{HOME_MENU, HomeScreen};
pub use super::screens::item_form::{ItemField, ItemFormScreen};
pub use super::screens::postage::{PostageField, PostageScreen, PriceNote, QuoteState};
pub use super::screens::printing::{Job, JobPhase};
pub use super::screens::refunds::RefundsScreen;
pub use super::screens::review::{Draft, ReviewScreen};
pub use super::screens::settings::SettingsScreen;
pub use super::screens::sign_in::{SignInField, SignInScreen};

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

/// Words for the first character of `text` the printer of `profile` cannot print (none of its
/// code pages has it); `None` when all can be, or with no printer.
pub(crate) fn unprintable(
    profile: Option<&crate::printer::profile::Profile>,
    text: &str,
) -> Option<String> {
    crate::printer::codepage::printable(profile?, text)
        .err()
        .map(crate::printer::codepage::refusal)
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

    /// Upgrades an unsalted SHA-256 of the PIN: argon2id over it with `salt` (fresh random bytes
    /// from the shell: [`crate::counter::tui::new_pin_hash`]).
    pub fn from_sha256(digest: &[u8; 32], salt: &[u8; 16]) -> Result<PinHash, String> {
        use argon2::password_hash::{PasswordHasher, SaltString};
        let salt = SaltString::encode_b64(salt).map_err(|e| format!("salting the PIN: {e}"))?;
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

/// The hash of a PIN with `salt`, for [`AppConfig::supervisor_pin`] (the shell's
/// [`crate::counter::tui::new_pin_hash`] gives a fresh salt).
pub fn pin_hash(pin: &str, salt: &[u8; 16]) -> Result<PinHash, String> {
    PinHash::from_sha256(&Sha256::digest(pin.as_bytes()).into(), salt)
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
    /// The customer's basket, its payment and receipt.
    Basket,
    /// End of day (close-out).
    Day,
    /// Refund requests awaiting a supervisor's decision.
    Refunds,
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

/// A question on the notice line waiting for the next key: `y` (or the same key again)
/// answers yes, any other key no.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confirm {
    /// Quit the counter.
    Quit,
    /// Send a refund request for this item.
    Refund(ItemRef),
    /// A supervisor's decision on a refund request.
    Decide { number: PieceNumber, approve: bool },
}

/// The supervisor PIN prompt's one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinField {
    Pin,
}

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
    /// The office's name as the vendor knows it (from the sign-in; `None` until then, or when
    /// the vendor has no name for it).
    pub office: Option<String>,
    pub balance: Option<Cents>,
    pub size: (u16, u16),
    /// Kiosk: not signed in (its sign-in failed, or the vendor ended the session and signing
    /// in again did not work): the kiosk shows it is out of service and starts nothing.
    pub out_of_service: bool,
    /// Kiosk: why it is not signed in, in the office's words, for staff behind the PIN.
    pub(crate) sign_in_trouble: Option<String>,
    /// Kiosk: the supervisor entered the PIN on the out-of-service screen, which now shows
    /// staff the reason ([`App::staff_reason`]); the quit key quits, Esc hides it.
    pub staff_view: bool,

    pub sign_in: SignInScreen,
    pub home: HomeScreen,
    pub postage: PostageScreen,
    pub item_form: ItemFormScreen,
    pub review: ReviewScreen,
    /// The one item in flight (or just finished): the printing screen's.
    pub job: Option<Job>,
    /// Issued items, newest first: the history screen lists them, home shows the first few.
    pub history: Vec<HistoryRow>,
    pub history_view: HistoryScreen,
    pub funds: FundsScreen,
    pub settings: SettingsScreen,
    pub basket: BasketScreen,
    pub day: DayScreen,
    pub refunds: RefundsScreen,

    pub pin_prompt: Option<Field<PinField>>,
    pub(crate) pin_attempts: u32,
    /// Time left before quitting unlocks after too many wrong PINs (0: not locked).
    pub(crate) pin_lock_ms: u64,
    pub idle_ms: u64,
    pub quit: bool,
    pub(crate) next_job: u64,
    pub(crate) next_request: u64,
    /// Jobs for which Print was ever sent: never again (bounded, `PRINTED_JOBS_KEPT_MAX`).
    pub(crate) printed: super::printed::PrintedJobs,
    /// Jobs the backend's job book has not settled with the vendor yet.
    pub open_jobs: usize,
    /// Of those, left by an earlier run: no new item until they are settled.
    pub last_run_jobs: usize,
    /// The question waiting for an answer (quit, refund), if any.
    pub confirm: Option<Confirm>,
    /// The form field (screen, index) the notice asks to fix ("Fix …"): once it is valid the
    /// notice goes.
    fix_field: Option<(Screen, usize)>,
    /// Today's date, from [`Event::Today`] (the runner reads the clock, the app never does);
    /// event dates and expiries before it are refused. `None` until the first one.
    pub today: Option<Day>,
    /// The theme chosen on the settings screen, for the shell to save in the config file
    /// ([`App::take_theme_to_save`]).
    pub(crate) theme_to_save: Option<String>,
    /// What the last frame drew where, for mouse clicks ([`App::set_hits`]).
    hits: Hits,
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

/// "1 item" / "3 items".
pub(crate) fn items_word(n: usize) -> String {
    if n == 1 {
        "1 item".into()
    } else {
        format!("{n} items")
    }
}

/// Keys that act on every screen, after the screen's own table: going to the main screens
/// and help. Quit is asked first ([`App::on_key`]), so it is not here.
fn global_keys(app: &App) -> Vec<Binding> {
    let go = |screen: Screen| -> screens::Run {
        match screen {
            Screen::Home => |app, _, out| app.go(Screen::Home, out),
            Screen::History => |app, _, out| app.go(Screen::History, out),
            Screen::Funds => |app, _, out| app.go(Screen::Funds, out),
            Screen::Settings => |app, _, out| app.go(Screen::Settings, out),
            _ => |app, _, out| app.go(Screen::SignIn, out),
        }
    };
    let mut v = Vec::new();
    if !app.config.kiosk {
        v.push(if app.clerk.is_some() {
            key(Action::Home, "home", go(Screen::Home))
        } else {
            quiet(Action::Home, go(Screen::Home))
        });
        v.push(quiet(Action::History, go(Screen::History)));
        v.push(quiet(Action::Funds, go(Screen::Funds)));
        v.push(quiet(Action::Settings, go(Screen::Settings)));
        v.push(quiet(Action::SignOut, go(Screen::SignIn)));
    }
    v.push(key(Action::Help, "help", |app, _, _| app.show_help = true));
    v
}

impl App {
    pub fn new(config: AppConfig) -> App {
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
            office: None,
            balance: None,
            size: (0, 0),
            out_of_service: false,
            sign_in_trouble: None,
            staff_view: false,
            sign_in: SignInScreen::new(),
            home: HomeScreen::default(),
            postage: PostageScreen::new(),
            item_form: ItemFormScreen::new(ItemKind::Ticket),
            review: ReviewScreen::default(),
            job: None,
            history: Vec::new(),
            history_view: HistoryScreen::new(),
            funds: FundsScreen::new(kiosk),
            settings: SettingsScreen::new(&config.theme),
            basket: BasketScreen::new(BasketId(1)),
            day: DayScreen::default(),
            refunds: RefundsScreen::default(),
            pin_prompt: None,
            pin_attempts: 0,
            pin_lock_ms: 0,
            idle_ms: 0,
            quit: false,
            next_job: 1,
            next_request: 1,
            printed: super::printed::PrintedJobs::default(),
            open_jobs: 0,
            last_run_jobs: 0,
            confirm: None,
            fix_field: None,
            today: None,
            theme_to_save: None,
            hits: Hits::default(),
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

    /// Kiosk: why it cannot sell right now, in the office's words for staff (shown only
    /// behind the supervisor PIN): not signed in, the link not up, or the printer at fault.
    /// `None` when the kiosk is in service (and always on a clerk's counter).
    pub fn staff_reason(&self) -> Option<String> {
        if !self.config.kiosk {
            return None;
        }
        if self.out_of_service {
            let why = self
                .sign_in_trouble
                .as_deref()
                .unwrap_or("the vendor ended its session");
            return Some(format!(
                "The kiosk is not signed in: {why}. Check the kiosk clerk's account and the link, then restart the kiosk."
            ));
        }
        let state = self.link_state();
        if !state.allows_printing() {
            return Some(match state {
                LinkState::Lapsed => "The link to the vendor lapsed (no keepalives); it comes back by itself once the network is back.".into(),
                LinkState::Closed => "The connection to the vendor closed; the kiosk is reconnecting.".into(),
                _ => "The link to the vendor is not up yet; the kiosk is connecting.".into(),
            });
        }
        if let PrinterStatus::Fault(f) = self.printer {
            return Some(format!(
                "The printer reports: {f}. Fix the printer; the kiosk is back in service once it is ready."
            ));
        }
        None
    }

    /// Kiosk: out of service — the welcome screen says so instead of inviting a customer,
    /// while it is not signed in, the link is not up or the printer is not ready.
    pub fn kiosk_unavailable(&self) -> bool {
        self.staff_reason().is_some()
    }

    /// The form of a screen, seen without its field type.
    pub fn form_of(&self, screen: Screen) -> Option<&dyn AnyForm> {
        Some(match screen {
            Screen::SignIn => &self.sign_in.form,
            Screen::Postage => &self.postage.form,
            Screen::ItemForm(_) => &self.item_form.form,
            Screen::History => &self.history_view.filter,
            Screen::Funds => &self.funds.form,
            Screen::Basket if self.basket.phase == BasketPhase::Paying => &self.basket.tender,
            _ => return None,
        })
    }

    fn form_of_mut(&mut self, screen: Screen) -> Option<&mut dyn AnyForm> {
        Some(match screen {
            Screen::SignIn => &mut self.sign_in.form,
            Screen::Postage => &mut self.postage.form,
            Screen::ItemForm(_) => &mut self.item_form.form,
            Screen::History => &mut self.history_view.filter,
            Screen::Funds => &mut self.funds.form,
            Screen::Basket if self.basket.phase == BasketPhase::Paying => &mut self.basket.tender,
            _ => return None,
        })
    }

    /// The focused field of what is on screen (the PIN prompt over anything else): its label
    /// and the error shown for it now.
    pub fn focused_field(&self) -> Option<(&'static str, Option<&str>)> {
        if let Some(p) = &self.pin_prompt {
            return Some((p.label, p.shown_error()));
        }
        let form = self.form_of(self.screen)?;
        let i = form.focus_index();
        Some((form.label(i)?, form.shown_error(i)))
    }

    /// The key table in force now: the screen's rows, then the keys every screen has. The
    /// handlers ([`App::handle`]), the hint line and the plain mode's prompt all read it.
    pub fn key_table(&self) -> Vec<Binding> {
        let mut v = screens::keys(self);
        v.extend(global_keys(self));
        v
    }

    /// The hinted rows of [`App::key_table`]: (action, words).
    pub fn hints(&self) -> Vec<(Action, &'static str)> {
        self.key_table()
            .into_iter()
            .filter_map(|b| b.hint.map(|h| (b.action, h)))
            .collect()
    }

    pub(crate) fn notice(&mut self, severity: Severity, text: impl Into<String>) {
        self.fix_field = None;
        self.notice = Some(Notice {
            severity,
            text: text.into(),
        });
    }

    /// "Fix {name}: {error}" for field `index` of `screen`'s form; the notice goes once that
    /// field is valid ([`App::drop_fixed_notice`]).
    pub(crate) fn fix_notice(&mut self, screen: Screen, index: usize, name: &str) {
        let error = self
            .form_of(screen)
            .and_then(|f| f.error(index))
            .unwrap_or_default()
            .to_string();
        self.notice(Severity::Error, format!("Fix {name}: {error}"));
        self.fix_field = Some((screen, index));
    }

    /// Drops a "Fix …" notice whose field has become valid.
    fn drop_fixed_notice(&mut self) {
        let Some((screen, index)) = self.fix_field else {
            return;
        };
        let fixed = self
            .form_of(screen)
            .is_none_or(|f| f.error(index).is_none());
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
            Event::Mouse(m) => {
                if let MouseEventKind::Down(MouseButton::Left) = m.kind {
                    let warned = self.idle_countdown_s().is_some();
                    self.idle_ms = 0;
                    if !warned && !self.terminal_too_small() {
                        self.on_click(m.column, m.row, &mut out);
                    }
                }
            }
            Event::Resize(w, h) => self.size = (w, h),
            Event::Tick { elapsed_ms } => self.on_tick(elapsed_ms),
            Event::Today(day) => {
                self.today = Some(day);
                if self.screen == Screen::ItemForm(self.item_form.kind) {
                    self.validate_item_form();
                }
            }
            Event::Backend(b) => self.on_backend(b, &mut out),
        }
        out
    }

    /// Keeps what the last frame drew where ([`super::draw_with_hits`]), for mouse clicks.
    pub fn set_hits(&mut self, hits: Hits) {
        self.hits = hits;
    }

    /// What the last frame drew where.
    pub fn hits(&self) -> &Hits {
        &self.hits
    }

    /// A left click at a cell: a button runs its key's handler, a row is chosen, a field
    /// focused. Nothing while a question, the help or the PIN prompt is up (they want a key).
    fn on_click(&mut self, x: u16, y: u16, out: &mut Vec<Command>) {
        if self.pin_prompt.is_some() || self.confirm.is_some() || self.show_help {
            return;
        }
        match self.hits.at(x, y) {
            Some(Target::Key(action)) => self.run_key(action, out),
            Some(Target::Row(n)) => screens::click_row(self, n, out),
            Some(Target::Field(n)) => {
                let screen = self.screen;
                if let Some(form) = self.form_of_mut(screen) {
                    form.focus_at(n);
                }
            }
            None => return,
        }
        self.drop_fixed_notice();
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
        if self.staff_view && !self.kiosk_unavailable() {
            self.staff_view = false; // back in service: the PIN is asked again
        }
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
        self.config.kiosk && !self.job_in_flight() && !self.funds.pay_pending && !welcome_clear
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
        self.postage.form.fields.iter().all(|f| !f.touched)
            && self.review.draft.is_none()
            && self.pin_prompt.is_none()
            && !self.staff_view
            && self.funds.form.fields.iter().all(|f| !f.touched)
    }

    /// Kiosk: clear every input and return to the welcome screen.
    pub fn reset_kiosk(&mut self) {
        self.postage.clear();
        self.item_form.form.clear();
        self.review.draft = None;
        self.funds.reset();
        self.pin_prompt = None;
        self.staff_view = false;
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
            Some(Action::Quit) => self.on_quit(out),
            Some(a) => self.run_key(a, out),
            None => self.on_text_key(key, out),
        }
        self.drop_fixed_notice();
    }

    /// Runs the row of the key table for `action`, if the screen has one.
    fn run_key(&mut self, action: Action, out: &mut Vec<Command>) {
        if action == Action::Quit {
            return self.on_quit(out);
        }
        if let Some(b) = self.key_table().into_iter().find(|b| b.action == action) {
            (b.run)(self, action, out);
        }
    }

    fn on_quit(&mut self, out: &mut Vec<Command>) {
        if self.config.kiosk {
            if self.staff_view && self.kiosk_unavailable() {
                // The supervisor already gave the PIN on this screen.
                self.quit = true;
                out.push(Command::Quit);
                return;
            }
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
            self.pin_prompt = Some(Field::secret(PinField::Pin, "Supervisor PIN", 12, 0));
            return;
        }
        if self.job_in_flight() {
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
            || match &question {
                Confirm::Quit => action == Some(Action::Quit),
                Confirm::Refund(_) => action == Some(Action::RequestRefund),
                Confirm::Decide { approve: true, .. } => action == Some(Action::Approve),
                Confirm::Decide { approve: false, .. } => action == Some(Action::Reject),
            };
        match (question, yes) {
            (Confirm::Quit, true) => {
                self.quit = true;
                out.push(Command::Quit);
            }
            (Confirm::Quit, false) => self.notice(Severity::Info, "Not quitting."),
            (Confirm::Refund(r), true) => self.send_refund(r, out),
            (Confirm::Refund(r), false) => {
                let name = self
                    .history_row(&r)
                    .map(HistoryRow::number_text)
                    .unwrap_or_default();
                self.notice(Severity::Info, format!("No refund requested for {name}."))
            }
            (Confirm::Decide { number, approve }, true) => self.send_decision(number, approve, out),
            (Confirm::Decide { number, .. }, false) => self.notice(
                Severity::Info,
                format!("No decision sent; the refund of {number} is still waiting."),
            ),
        }
    }

    fn on_pin_key(&mut self, key: KeyEvent, out: &mut Vec<Command>) {
        let action = self.config.keys.action(&key);
        let staff_look = self.screen == Screen::Welcome && self.kiosk_unavailable();
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
                if ok && staff_look {
                    // Out of service: the supervisor sees why; quitting is one key away.
                    self.pin_prompt = None;
                    self.pin_attempts = 0;
                    self.staff_view = true;
                } else if ok {
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

    pub(crate) fn go(&mut self, screen: Screen, out: &mut Vec<Command>) {
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
                self.item_form = ItemFormScreen::new(kind);
                self.screen = screen;
                self.validate_item_form();
            }
            Screen::History => out.push(Command::LoadHistory),
            Screen::Funds => self.funds = FundsScreen::new(false),
            Screen::Day => {
                self.day = DayScreen::default();
                self.screen = screen;
                self.load_day(out);
            }
            Screen::Refunds => self.load_refunds(out),
            Screen::SignIn => {
                self.clerk = None;
                self.office = None;
                self.balance = None;
                self.sign_in.form.clear();
                out.push(Command::SignOut);
            }
            _ => {}
        }
        self.screen = screen;
    }

    /// Where "back" leads from a first screen: home, or a kiosk's welcome.
    pub(crate) fn back_to_start(&mut self) {
        self.notice = None;
        self.screen = if self.config.kiosk {
            Screen::Welcome
        } else {
            Screen::Home
        };
    }

    fn on_text_key(&mut self, key: KeyEvent, out: &mut Vec<Command>) {
        if key
            .modifiers
            .intersects(KeyModifiers::CONTROL | KeyModifiers::ALT)
        {
            return; // unbound chords (kiosk: Ctrl-Z, Ctrl-\) are swallowed
        }
        let changed = match self.screen {
            Screen::SignIn => screens::sign_in::type_key(self, key.code),
            Screen::Postage => screens::postage::type_key(self, key.code, out),
            Screen::ItemForm(_) => screens::item_form::type_key(self, key.code),
            Screen::History => screens::history::type_key(self, key.code),
            Screen::Funds => screens::funds::type_key(self, key.code),
            Screen::Basket => screens::basket::type_key(self, key.code),
            _ => false,
        };
        let _ = changed;
    }

    fn on_backend(&mut self, b: Backend, out: &mut Vec<Command>) {
        self.on_report(b, out);
        // A basket being printed goes on when its current item is over.
        self.basket_update(out);
    }

    fn on_report(&mut self, b: Backend, out: &mut Vec<Command>) {
        match b {
            Backend::LinkChanged(status) => {
                let was_up = self.link_state().allows_printing();
                self.link = Some(status);
                if !was_up && self.link_state().allows_printing() {
                    self.requote_after_link(out);
                }
            }
            Backend::PrinterStatus(s) => self.printer = s,
            Backend::SignedIn {
                clerk,
                office,
                balance,
            } => {
                self.sign_in.busy = false;
                self.out_of_service = false;
                self.sign_in_trouble = None;
                self.clerk = Some(clerk);
                self.office = Some(office).filter(|o| !o.trim().is_empty());
                self.balance = Some(balance);
                self.notice = None;
                self.sign_in.form.clear();
                if !self.config.kiosk && self.screen == Screen::SignIn {
                    self.screen = Screen::Home;
                }
            }
            Backend::SignInFailed { reason } => {
                self.sign_in.busy = false;
                if self.config.kiosk {
                    // The reason is office data; the public is told the kiosk is out of use,
                    // staff read it behind the PIN.
                    self.go_out_of_service(reason);
                } else {
                    self.notice(Severity::Error, format!("Sign-in failed: {reason}"));
                }
            }
            Backend::SessionEnded { reason } => self.on_session_ended(reason),
            Backend::TablePrice {
                request,
                amount,
                table,
            } => self.postage.on_table_price(request, amount, table),
            Backend::Quote { request, amount } => self.postage.on_quote(request, Ok(amount)),
            Backend::QuoteFailed { request, reason } => self.postage.on_quote(request, Err(reason)),
            Backend::Balance(c) => self.balance = Some(c),
            Backend::Authorized { job } => self.on_authorized(job, out),
            Backend::AuthorizeFailed { job, reason } => self.on_authorize_failed(job, reason),
            Backend::PrintProgress { job, progress } => self.on_progress(job, progress),
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
                self.basket_settled(job, settlement);
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
            Backend::Items(items) => {
                self.on_history_rows(items.into_iter().map(HistoryRow::from).collect())
            }
            Backend::Numbered { job, number } => {
                self.basket_numbered(job, &number);
                self.on_numbered(job, number)
            }
            Backend::RefundChanged { job, state } => {
                self.set_item_state(job, ItemState::Refund(state));
            }
            Backend::FundResult {
                ok,
                declined,
                message,
            } => self.on_fund_result(ok, declined, message, out),
            Backend::Error(e) => self.notice(Severity::Error, e),
            // Issue 15's basket, close-out and supervisor events: the counter screens take
            // them up (one arm here so the backend can send them meanwhile).
            Backend::TenderRecorded {
                basket,
                pieces,
                tender,
                total,
                recorded_at_ms,
            } => self.on_tender_recorded(basket, pieces, tender, total, recorded_at_ms, out),
            Backend::TenderFailed { basket, reason } => self.on_tender_failed(basket, reason),
            Backend::DayReport(r) => self.on_day_report(r),
            Backend::DayReportFailed { reason } => {
                self.day.loading = false;
                self.notice(Severity::Error, format!("No end-of-day report: {reason}"));
            }
            Backend::RefundsAwaiting(rows) => self.on_refunds_awaiting(rows),
            Backend::RefundsAwaitingFailed { reason } => {
                self.refunds.loading = false;
                self.notice(Severity::Error, reason);
            }
            Backend::RefundDecided { number, approved } => self.on_refund_decided(number, approved),
            Backend::RefundDecisionFailed { number, reason } => self.notice(
                Severity::Error,
                format!("No decision recorded for {number}: {reason}"),
            ),
            Backend::PrintoutDone { kind, result } => match result {
                Ok(()) => self.notice(Severity::Ok, format!("{} printed.", kind.words())),
                Err(why) => {
                    let again = self.config.keys.hint(Action::Print);
                    self.notice(
                        Severity::Error,
                        format!(
                            "{} did not print: {why}. Press {again} to try again.",
                            kind.words()
                        ),
                    )
                }
            },
        }
    }

    /// Nobody is signed in any more: a counter goes to its sign-in screen with the reason; a
    /// kiosk goes out of service instead of inviting customers it cannot serve.
    fn on_session_ended(&mut self, reason: String) {
        self.sign_in.busy = false;
        self.clerk = None;
        self.office = None;
        self.balance = None;
        self.confirm = None;
        if self.config.kiosk {
            self.go_out_of_service(reason);
            return;
        }
        self.sign_in.form.clear();
        self.show_help = false;
        self.screen = Screen::SignIn;
        self.notice(Severity::Error, reason);
    }

    /// Kiosk: everything entered is cleared and the screen says the kiosk is out of service.
    fn go_out_of_service(&mut self, reason: String) {
        self.reset_kiosk();
        self.out_of_service = true;
        self.sign_in_trouble = Some(reason);
        self.notice(
            Severity::Error,
            "This kiosk is out of service. Please ask staff for help.",
        );
    }

    pub(crate) fn set_item_state(&mut self, job: JobId, state: ItemState) {
        if let Some(e) = self.history.iter_mut().find(|e| e.job == Some(job)) {
            e.state = state;
        }
    }

    /// The theme chosen since the last call, for the shell to keep in the config file (the app
    /// writes no file itself).
    pub fn take_theme_to_save(&mut self) -> Option<String> {
        self.theme_to_save.take()
    }

    /// The item's state in history, for tests and the printing screen.
    pub fn item_state(&self, job: JobId) -> Option<ItemState> {
        self.history
            .iter()
            .find(|e| e.job == Some(job))
            .map(|e| e.state)
    }

    /// How many Print commands were ever sent for `job` (0 or 1).
    pub fn print_count(&self, job: JobId) -> usize {
        usize::from(self.printed.contains(job))
    }

    /// Convenience for the runner and tests: a `Secret` built from typed text.
    pub fn secret(text: &str) -> Secret {
        Secret::new(text)
    }
}
