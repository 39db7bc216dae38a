//! The closed set of messages between the counter UI and the outside world.
//!
//! [`Event`]s flow in (keys, resize, ticks and [`Backend`] reports); [`Command`]s flow out. The
//! UI core never touches a socket, serial port or clock: the runner (or a test) feeds events and
//! carries commands to the vendor link and printer tasks over bounded channels.

use crate::counter::jobbook::Settlement;
pub use crate::indicium::kinds::Day;
pub use crate::indicium::layout::PieceNumber;
use crate::indicium::{Item, ItemKind, MailClass};
pub use crate::ledger::report::{
    DayReport, ReportLine, ReportScope, TenderKind, TenderLine, Totals,
};
use crate::link::driver::LinkStatus;
use crate::money::Cents;
use crate::printer::streamer::{JobOutcome, PrinterFault, Progress};
use crossterm::event::{KeyEvent, MouseEvent};
use std::fmt;

/// Bound of the event channel into the UI, in events.
pub const EVENTS_QUEUE_MAX: usize = 256;
/// Bound of the command channel out of the UI, in commands.
pub const COMMANDS_QUEUE_MAX: usize = 64;

/// Identifies one item from authorization to outcome; issued by the UI, unique per app run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A secret typed by a person (password, card number, CVC, PIN, account number).
///
/// `Debug` never shows it; [`Secret::masked`] shows at most the last four characters.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    pub fn new(text: impl Into<String>) -> Secret {
        Secret(text.into())
    }
    /// The secret itself, for the one place that must send it (the vendor request).
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn len_chars(&self) -> usize {
        self.0.chars().count()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// `•` for every character but the last `shown` (use 0 for passwords and CVCs).
    pub fn masked(&self, shown: usize) -> String {
        let n = self.len_chars();
        let keep = shown.min(n);
        let tail: String = self.0.chars().skip(n - keep).collect();
        "•".repeat(n - keep) + &tail
    }
    pub(crate) fn push(&mut self, c: char) {
        self.0.push(c);
    }
    pub(crate) fn pop(&mut self) {
        self.0.pop();
    }
    pub(crate) fn clear(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret(<{} chars redacted>)", self.len_chars())
    }
}

/// Everything that can happen to the UI.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// A key; only `KeyEventKind::Press` is acted upon.
    Key(KeyEvent),
    /// A mouse event (normal mode captures the mouse): a left click on a button, list row or
    /// field acts on it, by where the last frame drew it ([`super::App::set_hits`]).
    Mouse(MouseEvent),
    /// The terminal changed size (columns, rows).
    Resize(u16, u16),
    /// Time passed: the runner sends one per tick with the milliseconds since the previous tick.
    Tick { elapsed_ms: u64 },
    /// Today's date on the counter's clock: the runner sends it at start and when the date
    /// changes (event dates and expiries before it are refused).
    Today(crate::indicium::kinds::Day),
    /// A report from the vendor link or the printer.
    Backend(Backend),
}

/// What the printer last reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PrinterStatus {
    /// No report yet.
    #[default]
    Unknown,
    Ready,
    /// A fault such as paper out, cover open or offline.
    Fault(PrinterFault),
}

/// Refund state of an issued item, as the vendor reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RefundState {
    Requested,
    Approved,
    Denied,
    /// The amount was returned to the balance.
    Refunded,
}

impl RefundState {
    pub fn label(self) -> &'static str {
        match self {
            RefundState::Requested => "refund requested",
            RefundState::Approved => "refund approved",
            RefundState::Denied => "refund denied",
            RefundState::Refunded => "refunded",
        }
    }
}

/// Where an issued item is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ItemState {
    /// Authorized, printing.
    Printing,
    Printed,
    /// The print ended; its settlement is on its way to the vendor (kept in the journal).
    Settling,
    /// The vendor committed it at its reservation's expiry without hearing from the counter:
    /// charged; a refund can be requested.
    Unsettled,
    /// Voided: the indicium is not on paper; amount returned.
    Voided,
    Refund(RefundState),
}

impl ItemState {
    pub fn label(self) -> &'static str {
        match self {
            ItemState::Printing => "printing",
            ItemState::Printed => "printed",
            ItemState::Settling => "settling",
            ItemState::Unsettled => "unsettled — charged",
            ItemState::Voided => "voided",
            ItemState::Refund(r) => r.label(),
        }
    }
}

/// Identifies one customer's basket; issued by the UI, unique per app run (like [`JobId`]).
/// The backend gives each basket's tender its own vendor request id, so recording it again
/// (a retry) never records it twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BasketId(pub u64);

/// How the customer paid for a basket. The vendor checks
/// `amount_tendered − change == the sum of the basket's items` and that only cash gives
/// change; it refuses anything else with words a clerk can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tender {
    pub kind: TenderKind,
    /// What the customer handed over (cash), or the amount charged (card, check, other).
    pub amount_tendered: Cents,
    /// Cash given back; zero for every other kind.
    pub change: Cents,
}

/// Whose end of day [`Command::LoadDayReport`] asks for: the signed-in clerk's, this
/// terminal's (every clerk who worked on it), or the whole office's (supervisors only; a plain
/// clerk gets [`Backend::DayReportFailed`] saying so).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayScope {
    Clerk,
    Terminal,
    Office,
}

/// One issued item as the vendor reports it (history rows), numbered as its label prints it.
#[derive(Debug, Clone, PartialEq)]
pub struct IssuedItem {
    /// The item's one number, `FRK10000001 #9` (show it with `to_string()`; search with
    /// [`PieceNumber::matches`]).
    pub number: PieceNumber,
    /// The UI's job, for an item this run issued (`None`: an earlier run or another terminal;
    /// use the number, e.g. [`Command::RequestRefundByNumber`]).
    pub job: Option<JobId>,
    pub kind: ItemKind,
    /// `YYYY-MM-DD` (UTC), the day the vendor authorized it.
    pub date: String,
    /// When the vendor authorized it, ms since the epoch.
    pub authorized_at_ms: u64,
    pub summary: String,
    pub amount: Cents,
    pub state: ItemState,
}

/// A refund request awaiting a supervisor's decision (one row of the supervisor's screen).
#[derive(Debug, Clone, PartialEq)]
pub struct RefundAwaiting {
    pub number: PieceNumber,
    pub kind: ItemKind,
    pub summary: String,
    pub amount: Cents,
    /// When the item was authorized, ms since the epoch.
    pub authorized_at_ms: u64,
    /// The clerk who issued the item, when the vendor knows it.
    pub clerk: Option<String>,
    /// The terminal that issued it, when the vendor knows it.
    pub terminal: Option<u64>,
}

/// A text printout: not value (no indicium; nothing reserved, settled or sent to the vendor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrintoutKind {
    /// A basket's receipt, printed after its payment was recorded.
    Receipt,
    /// A receipt printed again from history (it says COPY at the top).
    ReceiptCopy,
    /// The end-of-day close-out.
    DayReport,
}

impl PrintoutKind {
    /// What a clerk calls it: "The receipt", "The receipt copy", "The end-of-day report".
    pub fn words(self) -> &'static str {
        match self {
            PrintoutKind::Receipt => "The receipt",
            PrintoutKind::ReceiptCopy => "The receipt copy",
            PrintoutKind::DayReport => "The end-of-day report",
        }
    }
}

/// Reports from the backend tasks (vendor link, printer streamer).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Backend {
    LinkChanged(LinkStatus),
    PrinterStatus(PrinterStatus),
    SignedIn {
        clerk: String,
        /// The office's name as the vendor knows it (its account's name): the receipt's first
        /// line and the status bar (never on a kiosk's screen).
        office: String,
        balance: Cents,
    },
    SignInFailed {
        reason: String,
    },
    /// The vendor no longer knows the session (a restarted vendor, say) and the backend's one
    /// sign-in of its own with the clerk's credentials did not work: nobody is signed in now.
    /// `reason` is in words a clerk can act on.
    SessionEnded {
        reason: String,
    },
    /// The live price of [`Command::RequestQuote`] `request` from this counter's signed rate
    /// table (the last good rates bundle, issue 17), sent before the vendor's [`Backend::Quote`]
    /// — which is the price an authorization carries and the one shown once it is in. Not sent
    /// when the counter has no rate table (then the vendor's quote alone prices).
    TablePrice {
        request: u64,
        amount: Cents,
        /// The rates bundle's name and version (`rates 2`).
        table: String,
    },
    /// Answer to [`Command::RequestQuote`] with the same `request`: the vendor's own price.
    Quote {
        request: u64,
        amount: Cents,
    },
    QuoteFailed {
        request: u64,
        reason: String,
    },
    Balance(Cents),
    /// The vendor debited the balance and signed the item; the UI may now print it once.
    Authorized {
        job: JobId,
    },
    AuthorizeFailed {
        job: JobId,
        reason: String,
    },
    PrintProgress {
        job: JobId,
        progress: Progress,
    },
    PrintOutcome {
        job: JobId,
        outcome: JobOutcome,
    },
    /// The counter's job book decided how a job's money is settled (`Sending`: the request is
    /// on its way, or waiting for the link; kept in the settlement journal), and later the
    /// vendor's answer (`Done`, `Refused`). The screen says "charged" only on `Done`.
    Settlement {
        job: JobId,
        /// The vendor's piece serial, once known (names a job that is no longer on screen).
        piece: Option<u64>,
        /// The printer cannot say what it printed (no process IDs, or its clear went
        /// unconfirmed): the indicium's bytes were accepted, so it counts as on paper.
        assumed_on_paper: bool,
        amount: Cents,
        settlement: Settlement,
        phase: SettlePhase,
    },
    /// Jobs waiting for the vendor to settle them (`from_last_run` of them left by an earlier
    /// run: no new item is printed until those are settled).
    OpenJobs {
        open: usize,
        from_last_run: usize,
    },
    RefundChanged {
        job: JobId,
        state: RefundState,
    },
    FundResult {
        ok: bool,
        /// The card or account was declined by its issuer (another may do), as opposed to a
        /// payment the vendor cannot take at all.
        declined: bool,
        message: String,
    },
    /// Anything else worth telling the person, in words they can act on.
    Error(String),
    /// The vendor's number of a job this run authorized (sent with [`Backend::Authorized`],
    /// and for jobs an earlier run left, once known): show it instead of the [`JobId`].
    Numbered {
        job: JobId,
        number: PieceNumber,
    },
    /// The answer to [`Command::LoadHistory`]: the vendor's items, newest first, each with
    /// its number (the history screen's one source of rows).
    Items(Vec<IssuedItem>),
    /// The vendor stored the basket's tender with its items.
    TenderRecorded {
        basket: BasketId,
        /// The basket's items as the vendor stored them.
        pieces: Vec<PieceNumber>,
        tender: Tender,
        /// Sum of the items: `amount_tendered − change`.
        total: Cents,
        /// When the vendor recorded it, ms since the epoch.
        recorded_at_ms: u64,
    },
    /// The tender was not recorded; `reason` says why and what to do (a basket already paid,
    /// an amount that does not match the items, ...).
    TenderFailed {
        basket: BasketId,
        reason: String,
    },
    /// The answer to [`Command::LoadDayReport`].
    DayReport(Box<DayReport>),
    DayReportFailed {
        reason: String,
    },
    /// The answer to [`Command::LoadRefundsAwaiting`]: oldest request first.
    RefundsAwaiting(Vec<RefundAwaiting>),
    /// [`Command::LoadRefundsAwaiting`] failed; a clerk who is not a supervisor reads
    /// "Only a supervisor ..." here.
    RefundsAwaitingFailed {
        reason: String,
    },
    /// A supervisor's decision was recorded (a [`Backend::Balance`] follows).
    RefundDecided {
        number: PieceNumber,
        approved: bool,
    },
    /// The decision was not recorded (not a supervisor, already decided, unknown item, ...).
    RefundDecisionFailed {
        number: PieceNumber,
        reason: String,
    },
    /// A printout ([`Command::PrintReceipt`], [`Command::ReprintReceipt`],
    /// [`Command::PrintDayReport`]) printed (`Ok`: the printer said the whole job printed), or
    /// did not (`Err`: why, in words a clerk can act on).
    PrintoutDone {
        kind: PrintoutKind,
        result: Result<(), String>,
    },
}

/// Where a settlement stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettlePhase {
    /// Decided and journaled; the vendor has not acknowledged it yet.
    Sending,
    /// The vendor acknowledged it.
    Done,
    /// The vendor refused it for good; the words say why.
    Refused(String),
}

/// The printed text around an indicium: sender and recipient blocks (postage) and the ZIP the
/// piece is mailed from (the vendor prices postage from it; `None`: the counter's own ZIP).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelText {
    pub origin_zip: Option<String>,
    pub from: Vec<String>,
    pub to: Vec<String>,
}

/// How funds are added.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FundMethod {
    Card {
        number: Secret,
        /// `MM/YY`
        expiry: String,
        cvc: Secret,
    },
    Eft {
        routing: String,
        account: Secret,
    },
}

impl fmt::Debug for FundMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FundMethod::Card { number, .. } => {
                write!(f, "Card(ending {})", number.masked(4).replace('•', ""))
            }
            FundMethod::Eft { .. } => f.write_str("Eft(<redacted>)"),
        }
    }
}

/// What the UI asks the backend to do.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Command {
    SignIn {
        clerk: String,
        password: Secret,
    },
    SignOut,
    RequestQuote {
        request: u64,
        class: MailClass,
        weight_oz: u16,
        from_zip: String,
        to_zip: String,
    },
    /// Debit the balance and sign the item. Sent once per [`JobId`].
    Authorize {
        job: JobId,
        item: Box<Item>,
        amount: Cents,
        /// What the label shows besides the indicium, and the origin ZIP the quote used.
        label: Box<LabelText>,
    },
    /// Print an authorized item. Sent at most once per [`JobId`]: an issued item is never
    /// printed again.
    Print {
        job: JobId,
    },
    /// Ask the vendor to void an authorized item that never started printing.
    Void {
        job: JobId,
    },
    Fund {
        method: FundMethod,
        amount: Cents,
    },
    RequestRefund {
        job: JobId,
    },
    LoadHistory,
    /// Record how the customer paid for a basket: its items (numbers from
    /// [`Backend::Numbered`]) and the tender. Answered by [`Backend::TenderRecorded`] or
    /// [`Backend::TenderFailed`]. Sending the same basket again is safe (recorded once).
    RecordTender {
        basket: BasketId,
        pieces: Vec<PieceNumber>,
        tender: Tender,
    },
    /// The end-of-day report for `day` (a UTC day). Answered by [`Backend::DayReport`] or
    /// [`Backend::DayReportFailed`].
    LoadDayReport {
        day: Day,
        scope: DayScope,
    },
    /// Supervisors: the refund requests awaiting a decision. Answered by
    /// [`Backend::RefundsAwaiting`] or [`Backend::RefundsAwaitingFailed`].
    LoadRefundsAwaiting,
    /// Supervisors: approve or reject a refund request. Answered by
    /// [`Backend::RefundDecided`] (then [`Backend::Balance`]) or
    /// [`Backend::RefundDecisionFailed`].
    DecideRefund {
        number: PieceNumber,
        approve: bool,
    },
    /// Ask for a refund of an item known only by its number (history rows of earlier runs).
    /// Answered like [`Command::RequestRefund`] for a job, with [`Backend::Error`] or
    /// [`Backend::Items`] reloaded.
    RequestRefundByNumber {
        number: PieceNumber,
    },
    /// Print a paid basket's receipt (on the receipt printer when the counter has one, else on
    /// the label printer) and keep it so it can be reprinted by any of `pieces`. Answered by
    /// [`Backend::PrintoutDone`]. Not value: printing it again is harmless.
    PrintReceipt {
        basket: BasketId,
        pieces: Vec<PieceNumber>,
        lines: Vec<String>,
    },
    /// Print again the kept receipt naming `number` (history). Answered by
    /// [`Backend::PrintoutDone`] (`Err` when this counter keeps no receipt with it).
    ReprintReceipt {
        number: PieceNumber,
    },
    /// Print the end-of-day close-out shown on screen. Answered by [`Backend::PrintoutDone`].
    PrintDayReport {
        lines: Vec<String>,
    },
    ProbePrinter,
    /// The person left (quit confirmed); the runner restores the terminal and exits.
    Quit,
}
