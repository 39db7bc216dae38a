//! The counter's backend: carries the UI's [`Command`]s to the vendor (over the supervised
//! session) and to the printer (through the abortable streamer), and reports back as
//! [`Backend`] events. The UI core never touches a socket or a port; this task does.
//!
//! It is a pump around the job book ([`super::jobbook`]), which alone decides each job's
//! state and how its money is settled. Every record the book produces is appended to the
//! settlement journal and fsynced ([`super::journal`]) *before* its effect: before the
//! authorize request, before the first printer byte, before the indicium's first byte that can mark paper
//! (from the streaming thread, through [`JournalMilestones`]), before each settlement request.
//! On start the backend folds the journal, resyncs the printer when the last run stopped in
//! the middle of a job, and settles every job the last run left, with the job's original
//! request ids, before it lets a new item be authorized.
//!
//! - An authorized item is printed at most once (the book refuses a second `PrintStarting`).
//! - Settlement requests are retried with the same request id while the link is down (the
//!   vendor applies each once), in this run for `money_retry_ms_max` at a time and again at the
//!   next start; the vendor never returns issued value on its own (docs/LEDGER.md).
//! - Card numbers, CVCs and passwords are passed through, never logged.

use super::client::{self, ClientError, Session};
use super::headless::{self, HeadlessOptions};
use super::jobbook::{
    self, Answer, JobBook, JobKey, PaperVerdict, Record, Refusal, RequestIds, Resync, Send,
    Settlement, Stage,
};
use super::journal::{Journal, JournalError};
use super::printouts::{self, KeptReceipt, ReceiptBook};
use super::supervisor::{Phase, SupervisorHandle};
use crate::indicium::layout::Indicium as SignedIndicium;
use crate::indicium::layout::PieceNumber;
use crate::indicium::{ItemKind, MailClass};
use crate::link::guard::LinkState;
use crate::money::Cents;
use crate::printer::compiler::{self, Label};
use crate::printer::profile::Profile;
use crate::printer::streamer::{
    self, IndiciumPaper, JobOutcome, Milestones, PrinterFault, PrinterPort, Progress, StreamConfig,
};
use crate::ui::event::{
    Backend, BasketId, Command, DayScope, FundMethod, IssuedItem, ItemState, JobId, LabelText,
    PrinterStatus, PrintoutKind, RefundAwaiting, RefundState, Secret, SettlePhase, Tender,
};
use crate::wire::{self, ErrorCode, Request};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Bound of the backend's internal completion queue, in messages.
const DONE_QUEUE_MAX: usize = 64;
/// Most jobs of this run remembered for the UI (label text, indicium) before the oldest
/// settled ones are dropped.
const JOBS_MAX: usize = 1024;
/// History rows asked of the vendor.
const HISTORY_ROWS: u32 = 100;
/// Baskets whose tender request id is remembered (a repeated `RecordTender` reuses it).
const BASKETS_REMEMBERED_MAX: usize = 64;
/// What a clerk reads when the vendor refuses a supervisor's request to a plain clerk.
const NOT_SUPERVISOR_WORDS: &str =
    "Only a supervisor can see and decide refund requests. Ask a supervisor to sign in.";
/// Pause between retries of a request the vendor could not take yet, in ms.
const RETRY_PAUSE_MS: u64 = 250;
/// Link status reports to the UI are sent at most this often (state changes go at once).
const LINK_REPORT_INTERVAL_MS: u64 = 250;
/// Wait for one printer status reply, in ms.
const PRINTER_STATUS_REPLY_MS: u64 = 300;
/// JobIds for pieces the vendor lists that this run did not issue: this bit set + the serial.
const VENDOR_JOB_BIT: u64 = 1 << 62;
/// JobIds for jobs an earlier run left unsettled: this bit set + a counter.
const LAST_RUN_JOB_BIT: u64 = 1 << 61;
/// Settlements that ran out of retries are tried again this often while signed in, in ms.
const SETTLE_RETRY_INTERVAL_MS: u64 = 2_000;
/// On quit: how long a print in progress may take to stop, in ms.
const QUIT_PRINT_STOP_MS_MAX: u64 = 10_000;
/// On quit: how long settlements in flight may take before the journal keeps them, in ms.
const QUIT_SETTLE_MS_MAX: u64 = 3_000;
/// While signed in, the balance is asked of the vendor this often, in ms: refunds are decided
/// at the vendor (a supervisor, the reaper) and nothing tells the counter, so an idle counter
/// shows a refund's money back within this time. One small request per terminal every 30 s is
/// nothing beside its 20 keepalives a second.
const BALANCE_REFRESH_MS: u64 = 30_000;
/// What a clerk reads when the vendor no longer knows the session and signing in again by
/// itself did not work (the technical reason goes to the log).
const SESSION_ENDED_WORDS: &str = "The vendor no longer knows this counter's session, and \
     signing in again did not work. Sign in again; if that fails too, call your supervisor.";

/// Where the printer is and how it behaves.
#[derive(Debug, Clone)]
pub struct PrinterSetup {
    pub device: PathBuf,
    pub profile: Profile,
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    /// The vendor's fronts (at least one), tried in order.
    pub vendors: Vec<SocketAddr>,
    pub pinned: VerifyingKey,
    /// The terminal's data directory: device key, enrollment, settlement journal.
    pub terminal_dir: PathBuf,
    pub terminal_name: String,
    /// Needed once, on the first run, to enroll this terminal.
    pub enroll_code: Option<String>,
    /// The counter's own ZIP: origin of items whose form gives none.
    pub origin_zip: String,
    pub printer: Option<PrinterSetup>,
    /// A second printer for receipts and close-outs (`None`: they print on `printer`).
    pub receipt_printer: Option<PrinterSetup>,
    pub stream: StreamConfig,
    /// Idle printer status is asked this often.
    pub printer_poll_interval_ms: u64,
    /// How long authorize keeps retrying while the link is down before it gives up.
    pub authorize_retry_ms_max: u64,
    /// How long one round of commit / void / refund retries lasts while the link is down;
    /// a settlement is tried again after it, for as long as the counter runs, and at the
    /// next start.
    pub money_retry_ms_max: u64,
    /// Signed bundles (issue 17): taken after each sign-in when a release key is pinned.
    pub bundles: Option<super::bundles::BundleConfig>,
}

impl BackendConfig {
    pub fn new(vendors: Vec<SocketAddr>, pinned: VerifyingKey, terminal_dir: PathBuf) -> Self {
        BackendConfig {
            vendors,
            pinned,
            terminal_dir,
            terminal_name: "counter".into(),
            enroll_code: None,
            origin_zip: "00000".into(),
            printer: None,
            receipt_printer: None,
            stream: StreamConfig::default(),
            printer_poll_interval_ms: 2_000,
            authorize_retry_ms_max: 15_000,
            money_retry_ms_max: 110_000,
            bundles: None,
        }
    }
}

/// The body of an `authorize` request as the journal keeps it (CBOR, hex), so a restarted
/// counter sends the very same request again.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct AuthorizeBody {
    amount_cents: u64,
    item: wire::WireItem,
    origin_zip: String,
}

impl AuthorizeBody {
    fn to_hex(&self) -> String {
        let mut buf = Vec::new();
        // CBOR of plain data into a Vec cannot fail.
        let _ = ciborium::into_writer(self, &mut buf);
        hex::encode(buf)
    }

    fn from_hex(s: &str) -> Option<AuthorizeBody> {
        let bytes = hex::decode(s).ok()?;
        ciborium::from_reader(bytes.as_slice()).ok()
    }
}

/// Sends `authorize` (retried with the same id while the vendor cannot take it) and reports
/// the answer for job `key`.
fn spawn_authorize(
    sessions: watch::Receiver<Session>,
    retry_ms_max: u64,
    key: JobKey,
    request_id: [u8; 16],
    body: AuthorizeBody,
    done: mpsc::Sender<Done>,
) {
    tokio::spawn(async move {
        let result = send_retrying(sessions, retry_ms_max, |s| {
            s.authorize_request(
                request_id,
                crate::clock::unix_ms(),
                body.amount_cents,
                body.item.clone(),
                &body.origin_zip,
            )
        })
        .await;
        let _ = done.send(Done::Authorized { key, result }).await;
    });
}

/// The job book and its journal. Shared with the streaming thread, which journals the
/// indicium milestones before their effect.
#[derive(Debug)]
struct Books {
    book: JobBook,
    journal: Journal,
}

#[derive(Debug, thiserror::Error)]
enum BookError {
    #[error("{0}")]
    Refused(Refusal),
    #[error(transparent)]
    Journal(JournalError),
}

impl Books {
    /// Journals what the book decided (durably), then applies it.
    fn record(&mut self, decided: Result<Vec<Record>, Refusal>) -> Result<Vec<Record>, BookError> {
        let recs = decided.map_err(BookError::Refused)?;
        self.journal.append(&recs).map_err(BookError::Journal)?;
        for r in &recs {
            self.book.apply(r);
        }
        if let Err(e) = self.journal.compact_if_due(&self.book) {
            tracing::warn!(error = %e, "settlement journal not compacted; it keeps growing");
        }
        Ok(recs)
    }
}

type SharedBooks = Arc<Mutex<Books>>;

/// The streamer's milestones, journaled through the job book from the streaming thread.
struct JournalMilestones {
    books: SharedBooks,
    key: JobKey,
}

impl Milestones for JournalMilestones {
    fn reached(&mut self, m: streamer::Milestone) -> Result<(), String> {
        let m = match m {
            streamer::Milestone::IndiciumSending => jobbook::Milestone::IndiciumSending,
            streamer::Milestone::IndiciumSent => jobbook::Milestone::IndiciumSent,
            streamer::Milestone::IndiciumPrinted => jobbook::Milestone::IndiciumPrinted,
            streamer::Milestone::EndPrinted => jobbook::Milestone::EndPrinted,
        };
        let mut books = self
            .books
            .lock()
            .map_err(|_| "settlement journal unavailable".to_string())?;
        let decided = books.book.decide_milestone(self.key, m);
        match books.record(decided) {
            Ok(_) => Ok(()),
            Err(e) => {
                tracing::error!(error = %e, milestone = m.as_str(), "milestone not journaled");
                Err(e.to_string())
            }
        }
    }
}

/// What the streamer's outcome says about the indicium, in the book's words.
fn verdict(outcome: &JobOutcome) -> (PaperVerdict, bool) {
    let paper = match outcome.indicium() {
        IndiciumPaper::NotSent | IndiciumPaper::Cleared => PaperVerdict::NotOnPaper,
        IndiciumPaper::Printed => PaperVerdict::Printed,
        IndiciumPaper::AssumedPrinted => PaperVerdict::AssumedPrinted,
    };
    (paper, matches!(outcome, JobOutcome::Completed { .. }))
}

/// What this run knows of a job beyond the book: the UI's id, the label text, the indicium.
#[derive(Debug)]
struct UiJob {
    key: JobKey,
    /// The item authorized, for its printed face.
    item: crate::indicium::Item,
    label: LabelText,
    indicium: Option<Vec<u8>>,
}

/// A request failed: words for a person, and whether the same request may yet succeed.
#[derive(Debug, Clone)]
struct Failure {
    words: String,
    retryable: bool,
    /// The vendor answered `payment_declined`: another card may do.
    declined: bool,
}

/// The signed-in clerk, kept for the session so that the backend can sign in again by itself,
/// once, when the vendor no longer knows the session (a vendor restarted on SQLite forgets its
/// sessions). The password is a [`Secret`]: never logged, redacted in `Debug`, zeroized when
/// dropped — on sign-out, on a failed sign-in, on quit.
#[derive(Debug, Clone)]
struct Credentials {
    clerk: String,
    password: Secret,
}

enum Done {
    /// A sign-in ended: the clerk's (`again` false) or the backend's own after the vendor
    /// forgot the session (`again` true). `generation` names the sign-in it answers.
    SignedIn {
        generation: u64,
        again: bool,
        result: Result<(SupervisorHandle, Session, Cents, Option<String>), String>,
    },
    /// The supervisor of sign-in `generation` gave up its session: the vendor no longer knows
    /// it (or the link stopped for good). `reason` is for the log.
    SessionLost { generation: u64, reason: String },
    /// The supervisor of sign-in `generation` resumed the session on a new connection.
    Resumed { generation: u64 },
    /// A printer status report went to the vendor (`ok`) or was lost.
    PrinterReported { status: PrinterStatus, ok: bool },
    Authorized {
        key: JobKey,
        result: Result<wire::Authorized, Failure>,
    },
    Printed {
        job: JobId,
        key: JobKey,
        port: Option<PrinterPort>,
        outcome: JobOutcome,
    },
    Settled {
        key: JobKey,
        result: Result<wire::PieceDone, Failure>,
    },
    Refund {
        job: JobId,
        /// The item's printed number, for the words.
        label: String,
        result: Result<wire::PieceDone, Failure>,
    },
    Polled {
        port: Option<PrinterPort>,
        status: PrinterStatus,
    },
    Resynced {
        port: Option<PrinterPort>,
        report: Option<streamer::ResyncReport>,
    },
    /// A bundle sync after a sign-in took new bundles: the rate table in use may have changed.
    BundlesTaken,
    /// A text printout ended; `port` is the label printer's port when it printed there.
    Printout {
        kind: PrintoutKind,
        shared: bool,
        port: Option<PrinterPort>,
        result: Result<(), String>,
    },
}

/// Runs the backend until `Quit` or until the UI drops its command sender.
pub fn spawn(
    cfg: BackendConfig,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Backend>,
) -> JoinHandle<()> {
    let (done_tx, done_rx) = mpsc::channel(DONE_QUEUE_MAX);
    let (quit_tx, _) = watch::channel(false);
    let b = Actor {
        cfg,
        events,
        done_tx,
        sup: None,
        link_task: None,
        books: None,
        ui: HashMap::new(),
        ui_order: Vec::new(),
        by_key: HashMap::new(),
        in_flight: HashSet::new(),
        next_last_run_job: 0,
        print_seq: rand::random::<u32>() % 4096,
        printing: None,
        print_busy: watch::channel(false).0,
        port: None,
        port_busy: false,
        queued_print: None,
        printer_status: PrinterStatus::Unknown,
        reported_printer: None,
        printer_report_in_flight: false,
        endpoint: None,
        credentials: None,
        generation: 0,
        session_tx: None,
        quit: quit_tx,
        resync_due: false,
        reported_open: None,
        meter: None,
        baskets: Vec::new(),
        receipts: ReceiptBook::in_memory(),
        printouts: std::collections::VecDeque::new(),
        printout_running: false,
        rates: None,
    };
    tokio::spawn(b.run(commands, done_rx))
}

struct Actor {
    cfg: BackendConfig,
    events: mpsc::Sender<Backend>,
    done_tx: mpsc::Sender<Done>,
    sup: Option<SupervisorHandle>,
    link_task: Option<JoinHandle<()>>,
    /// None when the journal cannot be opened: then nothing is authorized.
    books: Option<SharedBooks>,
    ui: HashMap<JobId, UiJob>,
    ui_order: Vec<JobId>,
    by_key: HashMap<JobKey, JobId>,
    /// Jobs with a request on its way to the vendor.
    in_flight: HashSet<JobKey>,
    next_last_run_job: u64,
    /// Numbers the printer's process IDs of each job (docs/PRINTING.md).
    print_seq: u32,
    /// The job on the printer now.
    printing: Option<JobKey>,
    /// True while a job prints: bundle downloads wait for it (issue 17).
    print_busy: watch::Sender<bool>,
    /// The open printer, when not lent to a job or a status poll.
    port: Option<PrinterPort>,
    /// The port is out on a job, a poll or a resync.
    port_busy: bool,
    /// A Print that came while the port was out on a status poll.
    queued_print: Option<JobId>,
    printer_status: PrinterStatus,
    /// What the vendor was last sent of the printer on this session (None: send it again).
    reported_printer: Option<PrinterStatus>,
    /// A printer report is on its way: the next waits for its answer.
    printer_report_in_flight: bool,
    endpoint: Option<quinn::Endpoint>,
    /// The signed-in clerk (or the one signing in), for the one sign-in of the backend's own.
    credentials: Option<Credentials>,
    /// Moves with every sign-in and sign-out: answers and reports of an older one are dropped.
    generation: u64,
    /// The current session, for every request in flight: resumes and sign-ins replace it, so
    /// a settlement retrying across a new sign-in goes out on the new session.
    session_tx: Option<watch::Sender<Session>>,
    /// Set on quit: a print in progress stops as on a lapse.
    quit: watch::Sender<bool>,
    /// The last run stopped mid-print: the printer is resynced once the link is up.
    resync_due: bool,
    reported_open: Option<(usize, usize)>,
    /// The session account's meter serial, once an answer named it (authorize, history):
    /// with a piece serial, an item's one number.
    meter: Option<String>,
    /// The request id of each basket's tender, so a basket recorded again is the same
    /// request (at most [`BASKETS_REMEMBERED_MAX`], oldest forgotten first).
    baskets: Vec<(BasketId, [u8; 16])>,
    /// The receipts this counter printed, for reprinting (issue 15).
    receipts: ReceiptBook,
    /// Text printouts waiting for their printer (at most [`printouts::PRINTOUTS_QUEUED_MAX`]).
    printouts: std::collections::VecDeque<(PrintoutKind, Vec<String>)>,
    /// A printout is on its printer now (one at a time).
    printout_running: bool,
    /// The last good signed rate table (issue 17) and its bundle's name and version: the
    /// live price of a postage piece comes from it; the vendor's quote is still asked, and is
    /// the price an authorization carries. `None`: no rates bundle received yet.
    rates: Option<Arc<SignedRates>>,
}

/// A rates bundle in use: its name and version (`rates 2`) and its table.
#[derive(Debug)]
struct SignedRates {
    label: String,
    table: crate::indicium::rates::RateTable,
}

fn pause() -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS))
}

/// Whether a failed request may succeed later with the same request id.
fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Timeout | ClientError::ConnectionLost(_) | ClientError::Unreachable { .. } => {
            true
        }
        _ => matches!(
            e.code(),
            Some(
                ErrorCode::LinkLapsed
                    | ErrorCode::Busy
                    | ErrorCode::Internal
                    | ErrorCode::NotLoggedIn
                    | ErrorCode::UnknownSession
                    // The processor charges at most once per request id.
                    | ErrorCode::PaymentTimeout
            )
        ),
    }
}

/// Words for a person, from a failed request.
fn reason(e: &ClientError) -> String {
    if e.code() == Some(ErrorCode::PaymentTimeout) {
        // Trying again by hand would be a new top-up: the first may yet go through.
        return "the card or bank processor did not answer. If the payment went through, the \
                vendor adds it to the balance within a few minutes; check the balance before \
                trying again"
            .into();
    }
    match e {
        ClientError::Response(wire::ResponseError::Refused(b)) => b.message.clone(),
        other => other.to_string(),
    }
}

/// Sends a request built afresh on each attempt (new client time, same request id) on the
/// supervisor's current session, retrying while the vendor cannot take it yet.
async fn send_retrying<T, F>(
    sessions: watch::Receiver<Session>,
    retry_ms_max: u64,
    build: F,
) -> Result<T, Failure>
where
    T: serde::de::DeserializeOwned,
    F: Fn(&Session) -> Result<Request, ClientError>,
{
    let deadline = Instant::now() + Duration::from_millis(retry_ms_max);
    loop {
        let session = sessions.borrow().clone();
        let result = match build(&session) {
            Ok(r) => session.send::<T>(&r).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && Instant::now() < deadline => {
                tracing::debug!(error = %e, "request not taken yet; retrying with the same id");
                pause().await;
            }
            Err(e) => {
                return Err(Failure {
                    words: reason(&e),
                    retryable: retryable(&e),
                    declined: e.code() == Some(ErrorCode::PaymentDeclined),
                });
            }
        }
    }
}

fn history_state(s: &str) -> ItemState {
    match s {
        "reserved" => ItemState::Printing,
        "unsettled" => ItemState::Unsettled,
        "voided" => ItemState::Voided,
        "refund_requested" => ItemState::Refund(RefundState::Requested),
        "refunded" => ItemState::Refund(RefundState::Refunded),
        "refund_rejected" => ItemState::Refund(RefundState::Denied),
        "refund_approved" => ItemState::Refund(RefundState::Approved),
        _ => ItemState::Printed,
    }
}

fn printer_report(s: PrinterStatus) -> wire::PrinterReport {
    let (state, detail) = match s {
        PrinterStatus::Unknown => ("unknown", None),
        PrinterStatus::Ready => ("ready", None),
        PrinterStatus::Fault(f) => (
            match f {
                PrinterFault::PaperOut => "paper_out",
                PrinterFault::CoverOpen => "cover_open",
                PrinterFault::PortVanished => "vanished",
                _ => "offline",
            },
            Some(f.to_string()),
        ),
    };
    wire::PrinterReport {
        state: state.into(),
        detail,
    }
}

/// The label for a signed item: its printed face (`indicium::face`): the indicium with its
/// human-readable block, the item's fields or the address blocks, a cut.
pub fn label_for(
    indicium: &SignedIndicium,
    item: Option<&crate::indicium::Item>,
    text: &LabelText,
    profile: &Profile,
) -> Label {
    let addresses = crate::indicium::face::Addresses {
        from: &text.from,
        to: &text.to,
    };
    crate::indicium::face::face(indicium, item, &addresses, profile)
}

impl Actor {
    async fn emit(&self, b: Backend) {
        let _ = self.events.send(b).await;
    }

    /// The current session while signed in; the receiver follows resumes and sign-ins.
    fn sessions(&self) -> Option<watch::Receiver<Session>> {
        self.sup.as_ref()?;
        self.session_tx.as_ref().map(|t| t.subscribe())
    }

    /// Journals what the book decides; refusals and journal failures come back as words.
    fn record(
        &self,
        decide: impl FnOnce(&JobBook) -> Result<Vec<Record>, Refusal>,
    ) -> Result<Vec<Record>, String> {
        let Some(books) = &self.books else {
            return Err(
                "the settlement journal could not be opened, so nothing can be issued; see the log"
                    .into(),
            );
        };
        let mut b = books
            .lock()
            .map_err(|_| "the settlement journal is unavailable".to_string())?;
        let decided = decide(&b.book);
        b.record(decided).map_err(|e| match e {
            BookError::Refused(r) => r.to_string(),
            BookError::Journal(e) => {
                tracing::error!(error = %e, "settlement journal write failed");
                "the settlement journal cannot be written (disk full or failing?); nothing was sent"
                    .into()
            }
        })
    }

    fn with_book<T>(&self, f: impl FnOnce(&JobBook) -> T) -> Option<T> {
        let books = self.books.as_ref()?;
        let b = books.lock().ok()?;
        Some(f(&b.book))
    }

    /// The UI's id for a job, giving one to a job an earlier run left.
    fn job_id(&mut self, key: JobKey) -> JobId {
        if let Some(j) = self.by_key.get(&key) {
            return *j;
        }
        self.next_last_run_job += 1;
        let j = JobId(LAST_RUN_JOB_BIT | self.next_last_run_job);
        self.by_key.insert(key, j);
        j
    }

    fn amount_of(&self, key: &JobKey) -> Cents {
        self.with_book(|b| b.get(key).map(|e| e.amount_cents))
            .flatten()
            .and_then(|c| Cents::new(c).ok())
            .unwrap_or(Cents::ZERO)
    }

    fn piece_of(&self, key: &JobKey) -> Option<u64> {
        self.with_book(|b| b.get(key).and_then(|e| e.piece_serial))
            .flatten()
    }

    /// Tells the UI what the recorded records mean for each job, then sends what is due.
    async fn after(&mut self, recs: &[Record]) {
        for r in recs {
            match r {
                Record::Outcome {
                    job: key,
                    settlement,
                    paper,
                    ..
                } => {
                    let job = self.job_id(*key);
                    let amount = self.amount_of(key);
                    let piece = self.piece_of(key);
                    self.numbered(job, piece).await;
                    self.emit(Backend::Settlement {
                        job,
                        piece,
                        assumed_on_paper: *paper == PaperVerdict::AssumedPrinted,
                        amount,
                        settlement: *settlement,
                        phase: SettlePhase::Sending,
                    })
                    .await;
                }
                Record::Settled {
                    job: key,
                    settlement,
                    result,
                    refused,
                } => {
                    let job = self.job_id(*key);
                    let amount = self.amount_of(key);
                    let piece = self.piece_of(key);
                    let phase = if *refused {
                        SettlePhase::Refused(result.clone())
                    } else {
                        SettlePhase::Done
                    };
                    self.emit(Backend::Settlement {
                        job,
                        piece,
                        assumed_on_paper: false,
                        amount,
                        settlement: *settlement,
                        phase,
                    })
                    .await;
                }
                _ => {}
            }
        }
        self.report_open().await;
        self.kick_sends();
    }

    /// Tells the UI a job's number, when its piece serial and the meter are known.
    async fn numbered(&self, job: JobId, piece: Option<u64>) {
        if let (Some(serial), Some(meter)) = (piece, &self.meter) {
            self.emit(Backend::Numbered {
                job,
                number: PieceNumber::new(meter.clone(), serial),
            })
            .await;
        }
    }

    async fn report_open(&mut self) {
        let counts = self
            .with_book(|b| (b.open_count(), b.last_run_open()))
            .unwrap_or((0, 0));
        if self.reported_open != Some(counts) {
            self.reported_open = Some(counts);
            self.emit(Backend::OpenJobs {
                open: counts.0,
                from_last_run: counts.1,
            })
            .await;
        }
    }

    /// Sends (again) every request the book says is due and is not already on its way.
    fn kick_sends(&mut self) {
        let Some(sessions) = self.sessions() else {
            return;
        };
        let sends = self.with_book(JobBook::sends).unwrap_or_default();
        for s in sends {
            let key = match &s {
                Send::Authorize { job, .. } | Send::Settle { job, .. } => *job,
            };
            if !self.in_flight.insert(key) {
                continue;
            }
            let tx = self.done_tx.clone();
            let sessions = sessions.clone();
            let retry = self.cfg.money_retry_ms_max;
            match s {
                Send::Authorize {
                    request_id, body, ..
                } => {
                    let Some(body) = AuthorizeBody::from_hex(&body) else {
                        tracing::error!("journaled authorize body does not decode");
                        continue;
                    };
                    spawn_authorize(sessions, retry, key, request_id, body, tx);
                }
                Send::Settle {
                    settlement,
                    request_id,
                    piece_serial,
                    ..
                } => {
                    tracing::info!(
                        piece = piece_serial,
                        settlement = settlement.as_str(),
                        "settling"
                    );
                    tokio::spawn(async move {
                        let result = send_retrying(sessions, retry, |s| {
                            let now = crate::clock::unix_ms();
                            match settlement {
                                Settlement::Commit => {
                                    s.commit_request(request_id, now, piece_serial)
                                }
                                Settlement::Void => {
                                    s.void_request(request_id, now, piece_serial, false)
                                }
                                Settlement::VoidReachedPrinter => {
                                    s.void_request(request_id, now, piece_serial, true)
                                }
                            }
                        })
                        .await;
                        let _ = tx.send(Done::Settled { key, result }).await;
                    });
                }
            }
        }
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut done: mpsc::Receiver<Done>) {
        match Journal::open(&self.cfg.terminal_dir) {
            Ok((journal, book)) => {
                self.books = Some(Arc::new(Mutex::new(Books { book, journal })));
            }
            Err(e) => {
                tracing::error!(error = %e, "settlement journal cannot be opened");
                self.emit(Backend::Error(format!(
                    "This counter's settlement journal cannot be read ({e}). Nothing can be issued until a technician restores it."
                )))
                .await;
            }
        }
        self.receipts = ReceiptBook::open(&self.cfg.terminal_dir);
        self.load_rates();
        if let Some(p) = self.cfg.printer.clone() {
            match PrinterPort::open(&p.device, &p.profile, None) {
                Ok(port) => self.port = Some(port),
                Err(e) => {
                    self.emit(Backend::Error(format!("Printer: {e}"))).await;
                    self.set_printer(PrinterStatus::Fault(PrinterFault::Offline))
                        .await;
                }
            }
        }
        self.recover().await;
        let mut poll = tokio::time::interval(Duration::from_millis(
            self.cfg.printer_poll_interval_ms.max(100),
        ));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut settle_retry =
            tokio::time::interval(Duration::from_millis(SETTLE_RETRY_INTERVAL_MS));
        settle_retry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut balance_refresh = tokio::time::interval(Duration::from_millis(BALANCE_REFRESH_MS));
        balance_refresh.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                c = commands.recv() => match c {
                    Some(Command::Quit) | None => break,
                    Some(c) => self.on_command(c).await,
                },
                Some(d) = done.recv() => self.on_done(d).await,
                _ = poll.tick() => self.poll_printer(),
                _ = settle_retry.tick() => {
                    self.maybe_resync();
                    self.kick_sends();
                }
                _ = balance_refresh.tick() => self.refresh_balance(),
            }
        }
        self.quit(&mut done).await;
        self.sign_out();
    }

    /// Settles what the last run left: jobs that never printed are voided at once; a job
    /// the last run left on the printer waits for the printer's resync.
    async fn recover(&mut self) {
        let Some(open) = self.with_book(|b| {
            b.open()
                .filter(|e| e.from_last_run)
                .map(|e| (e.key, e.stage))
                .collect::<Vec<_>>()
        }) else {
            return;
        };
        if open.is_empty() {
            return;
        }
        tracing::info!(jobs = open.len(), "settling jobs the last run left");
        let mut recs = Vec::new();
        let mut mid_print = false;
        for (key, stage) in open {
            match stage {
                Stage::Authorized => match self.record(|b| b.decide_abandon(key)) {
                    Ok(r) => recs.extend(r),
                    Err(e) => tracing::error!(%e, "last run's job not settled"),
                },
                Stage::Printing
                | Stage::IndiciumSending
                | Stage::IndiciumSent
                | Stage::IndiciumPrinted
                | Stage::EndPrinted => mid_print = true,
                _ => {}
            }
        }
        self.after(&recs).await;
        // Its printer is resynced once the link is up again (`maybe_resync`).
        self.resync_due = mid_print;
    }

    /// The last run stopped mid-print and the link is up: resync the printer now.
    fn maybe_resync(&mut self) {
        let up = self
            .sup
            .as_ref()
            .is_some_and(|s| s.state.borrow().allows_printing());
        if self.resync_due && up && !self.port_busy {
            self.resync_due = false;
            self.resync();
        }
    }

    /// The last run stopped in the middle of a job: bring the printer back to a command
    /// boundary and, the link being up, let what it holds print, so the process IDs that come
    /// back say whether the job's indicium and its end reached paper; settle by that.
    fn resync(&mut self) {
        let Some(setup) = self.cfg.printer.clone() else {
            // No printer now: settle by the journal alone (conservative).
            let tx = self.done_tx.clone();
            tokio::spawn(async move {
                let _ = tx
                    .send(Done::Resynced {
                        port: None,
                        report: None,
                    })
                    .await;
            });
            return;
        };
        let port = self.port.take();
        self.port_busy = true;
        let tx = self.done_tx.clone();
        let cfg = self.cfg.stream;
        tokio::task::spawn_blocking(move || {
            let port = port.or_else(|| PrinterPort::open(&setup.device, &setup.profile, None).ok());
            let (port, report) = match port {
                Some(mut p) => {
                    let r = streamer::resync(&mut p, &cfg, streamer::ResyncMode::Finish);
                    match r {
                        Ok(report) => (Some(p), Some(report)),
                        Err(e) => {
                            tracing::warn!(error = %e, "printer resync failed");
                            (Some(p), None)
                        }
                    }
                }
                None => (None, None),
            };
            let _ = tx.blocking_send(Done::Resynced { port, report });
        });
    }

    async fn on_resynced(&mut self, report: Option<streamer::ResyncReport>) {
        let mid = self
            .with_book(|b| {
                b.open()
                    .filter(|e| e.from_last_run)
                    .filter(|e| {
                        matches!(
                            e.stage,
                            Stage::Printing
                                | Stage::IndiciumSending
                                | Stage::IndiciumSent
                                | Stage::IndiciumPrinted
                                | Stage::EndPrinted
                        )
                    })
                    .map(|e| (e.key, e.print_seq))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut recs = Vec::new();
        for (key, seq) in mid {
            let resync = match (&report, seq) {
                (Some(r), Some(seq)) => {
                    let (ind, end) = compiler::job_process_ids(seq);
                    Resync {
                        indicium_id_seen: r.earlier_ids.contains(&ind),
                        end_id_seen: r.earlier_ids.contains(&end),
                    }
                }
                _ => Resync::default(),
            };
            match self.record(|b| b.decide_recovered(key, resync)) {
                Ok(r) => recs.extend(r),
                Err(e) => tracing::error!(%e, "last run's job not settled"),
            }
        }
        self.after(&recs).await;
    }

    /// Quit: a print in progress stops as on a lapse and is settled by what is on paper;
    /// settlements get a moment to reach the vendor; whatever is left stays in the journal
    /// for the next start.
    async fn quit(&mut self, done: &mut mpsc::Receiver<Done>) {
        self.quit.send_replace(true);
        let deadline = tokio::time::Instant::now() + Duration::from_millis(QUIT_PRINT_STOP_MS_MAX);
        while self.printing.is_some() {
            match tokio::time::timeout_at(deadline, done.recv()).await {
                Ok(Some(d)) => self.on_done(d).await,
                _ => break,
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_millis(QUIT_SETTLE_MS_MAX);
        while !self.in_flight.is_empty() {
            match tokio::time::timeout_at(deadline, done.recv()).await {
                Ok(Some(d)) => self.on_done(d).await,
                _ => break,
            }
        }
        let open = self.with_book(JobBook::open_count).unwrap_or(0);
        if open > 0 {
            tracing::info!(
                open,
                "quitting with jobs unsettled; the journal keeps them for the next start"
            );
        }
    }

    async fn set_printer(&mut self, s: PrinterStatus) {
        if self.printer_status != s || self.reported_printer.is_none() {
            self.printer_status = s;
            self.emit(Backend::PrinterStatus(s)).await;
        }
        self.report_printer();
    }

    /// Sends the vendor the printer's status unless it already has it on this session. One
    /// report at a time; a lost one is sent again at the next status poll, resume or sign-in.
    fn report_printer(&mut self) {
        let s = self.printer_status;
        if self.printer_report_in_flight || self.reported_printer == Some(s) {
            return;
        }
        let Some(sessions) = self.sessions() else {
            return;
        };
        self.printer_report_in_flight = true;
        self.reported_printer = Some(s);
        let report = printer_report(s);
        let tx = self.done_tx.clone();
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            let ok = match session.report_printer_status(report).await {
                Ok(()) => true,
                Err(e) => {
                    tracing::debug!(error = %e, "printer status not reported; sent again later");
                    false
                }
            };
            let _ = tx.send(Done::PrinterReported { status: s, ok }).await;
        });
    }

    fn on_printer_reported(&mut self, status: PrinterStatus, ok: bool) {
        self.printer_report_in_flight = false;
        if !ok && self.reported_printer == Some(status) {
            // Lost: the next poll, resume or sign-in sends it again (not at once: the link
            // may be down for a while).
            self.reported_printer = None;
            return;
        }
        // The status changed, or a new session began, while it was on its way.
        self.report_printer();
    }

    /// Asks the vendor for the balance and shows it (a refund decided at the vendor, say).
    fn refresh_balance(&self) {
        let Some(sessions) = self.sessions() else {
            return;
        };
        let events = self.events.clone();
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            match session.balance().await {
                Ok(b) => {
                    let cents = Cents::new(b.registers.descending_cents).unwrap_or(Cents::ZERO);
                    let _ = events.send(Backend::Balance(cents)).await;
                }
                Err(e) => tracing::debug!(error = %e, "balance not refreshed"),
            }
        });
    }

    fn poll_printer(&mut self) {
        if self.port_busy || self.cfg.printer.is_none() {
            return;
        }
        let port = self.port.take();
        let setup = self.cfg.printer.clone();
        self.port_busy = true;
        let tx = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let timeout = Duration::from_millis(PRINTER_STATUS_REPLY_MS);
            // Reopen a printer that was gone or busy.
            let port = port.or_else(|| {
                setup.and_then(|s| PrinterPort::open(&s.device, &s.profile, None).ok())
            });
            let (port, status) = match port {
                None => (None, PrinterStatus::Fault(PrinterFault::Offline)),
                Some(mut p) => match p.status_now(timeout) {
                    Ok(true) => (Some(p), PrinterStatus::Ready),
                    Ok(false) => (Some(p), PrinterStatus::Unknown),
                    Err(PrinterFault::PortVanished) => {
                        (None, PrinterStatus::Fault(PrinterFault::PortVanished))
                    }
                    Err(f) => (Some(p), PrinterStatus::Fault(f)),
                },
            };
            let _ = tx.blocking_send(Done::Polled { port, status });
        });
    }

    /// Keeps what the UI needs of a job of this run, bounded: at [`JOBS_MAX`] the oldest job
    /// the book no longer holds open makes room.
    fn remember(&mut self, job: JobId, rec: UiJob) -> bool {
        if self.ui.len() >= JOBS_MAX {
            let open: HashSet<JobKey> = self
                .with_book(|b| b.open().map(|e| e.key).collect())
                .unwrap_or_default();
            let Some(pos) = self
                .ui_order
                .iter()
                .position(|j| self.ui.get(j).is_some_and(|r| !open.contains(&r.key)))
            else {
                return false;
            };
            let old = self.ui_order.remove(pos);
            if let Some(r) = self.ui.remove(&old) {
                self.by_key.remove(&r.key);
            }
        }
        self.by_key.insert(rec.key, job);
        self.ui_order.push(job);
        self.ui.insert(job, rec);
        true
    }

    async fn on_command(&mut self, c: Command) {
        match c {
            Command::SignIn { clerk, password } => {
                self.sign_out();
                self.credentials = Some(Credentials { clerk, password });
                self.start_sign_in(false).await;
            }
            Command::SignOut => self.sign_out(),
            Command::RequestQuote {
                request,
                class,
                weight_oz,
                from_zip,
                to_zip,
            } => self.quote(request, class, weight_oz, from_zip, to_zip),
            Command::Authorize {
                job,
                item,
                amount,
                label,
            } => self.authorize(job, &item, amount, *label).await,
            Command::Print { job } => self.print(job).await,
            Command::Void { job } => self.abandon(job).await,
            Command::RequestRefund { job } => self.refund(job).await,
            Command::Fund { method, amount } => self.fund(method, amount).await,
            Command::LoadHistory => self.history(),
            Command::RecordTender {
                basket,
                pieces,
                tender,
            } => self.tender(basket, pieces, tender).await,
            Command::LoadDayReport { day, scope } => self.day_report(day, scope),
            Command::LoadRefundsAwaiting => self.refunds_awaiting(),
            Command::DecideRefund { number, approve } => self.decide_refund(number, approve).await,
            Command::RequestRefundByNumber { number } => {
                if let Err(words) = self.own_meter(&number) {
                    self.emit(Backend::Error(words)).await;
                    return;
                }
                let job = self
                    .ui
                    .iter()
                    .find(|(_, r)| {
                        self.with_book(|b| b.get(&r.key).and_then(|e| e.piece_serial))
                            .flatten()
                            == Some(number.serial)
                    })
                    .map(|(j, _)| *j)
                    .unwrap_or(JobId(VENDOR_JOB_BIT | number.serial));
                self.refund(job).await
            }
            Command::PrintReceipt {
                basket,
                pieces,
                lines,
            } => {
                if let Err(e) = self.receipts.keep(KeptReceipt {
                    pieces,
                    lines: lines.clone(),
                }) {
                    tracing::warn!(?basket, error = %e, "receipt not kept for reprinting");
                }
                self.printout(PrintoutKind::Receipt, lines).await
            }
            Command::ReprintReceipt { number } => match self.receipts.find(&number) {
                Some(r) => {
                    let lines = printouts::copy_lines(&r.lines);
                    self.printout(PrintoutKind::ReceiptCopy, lines).await
                }
                None => {
                    self.emit(Backend::PrintoutDone {
                        kind: PrintoutKind::ReceiptCopy,
                        result: Err(format!(
                            "this counter keeps no receipt with {number} (paid on another counter, not in a basket, or one of the oldest)"
                        )),
                    })
                    .await
                }
            },
            Command::PrintDayReport { lines } => {
                self.printout(PrintoutKind::DayReport, lines).await
            }
            Command::ProbePrinter => self.poll_printer(),
            // `run` ends the loop on Quit before it gets here.
            Command::Quit => {}
        }
    }

    /// Signs the kept credentials in (`again`: by itself, after the vendor forgot the session).
    async fn start_sign_in(&mut self, again: bool) {
        let Some(creds) = self.credentials.clone() else {
            return;
        };
        let cfg = self.cfg.clone();
        let tx = self.done_tx.clone();
        let generation = self.generation;
        let endpoint = match self.endpoint.clone() {
            Some(e) => e,
            None => match client::endpoint_for_fronts(&cfg.vendors) {
                Ok(e) => {
                    self.endpoint = Some(e.clone());
                    e
                }
                Err(e) => {
                    let _ = tx
                        .send(Done::SignedIn {
                            generation,
                            again,
                            result: Err(e.to_string()),
                        })
                        .await;
                    return;
                }
            },
        };
        tokio::spawn(async move {
            let r = sign_in(&cfg, endpoint, &creds.clerk, creds.password.expose()).await;
            // The copy of the password is zeroized here, whatever the answer.
            drop(creds);
            let _ = tx
                .send(Done::SignedIn {
                    generation,
                    again,
                    result: r.map_err(|e| format!("{e:#}")),
                })
                .await;
        });
    }

    async fn on_signed_in(
        &mut self,
        generation: u64,
        again: bool,
        result: Result<(SupervisorHandle, Session, Cents, Option<String>), String>,
    ) {
        if generation != self.generation {
            // Signed out (or in again) meanwhile: this session is not wanted.
            if let Ok((sup, ..)) = result {
                sup.stop();
            }
            return;
        }
        let (sup, session, balance, meter) = match result {
            Ok(r) => r,
            Err(reason) => {
                self.credentials = None;
                if again {
                    tracing::warn!(error = %reason, "signing in again after the vendor forgot the session failed");
                    self.emit(Backend::SessionEnded {
                        reason: SESSION_ENDED_WORDS.into(),
                    })
                    .await;
                } else {
                    self.emit(Backend::SignInFailed { reason }).await;
                }
                return;
            }
        };
        if again {
            tracing::info!("signed in again by itself after the vendor forgot the session");
        }
        if meter.is_some() {
            self.meter = meter;
        }
        let current = match &self.session_tx {
            Some(tx) => {
                // Requests still retrying on the old session go out on this one.
                tx.send_replace(session.clone());
                tx.clone()
            }
            None => {
                let (tx, _) = watch::channel(session.clone());
                self.session_tx = Some(tx.clone());
                tx
            }
        };
        self.link_task = Some(spawn_link_reports(
            sup.clone(),
            generation,
            self.events.clone(),
            self.done_tx.clone(),
            current,
        ));
        self.sup = Some(sup);
        if let Some(b) = &self.cfg.bundles {
            // Bundles newer than what the counter uses, fetched between prints (issue 17).
            let printing = self.print_busy.subscribe();
            let (session, b, done) = (session.clone(), b.clone(), self.done_tx.clone());
            tokio::spawn(async move {
                let report = super::bundles::sync_and_log(session, b, printing).await;
                if report.is_some_and(|r| !r.taken.is_empty()) {
                    let _ = done.send(Done::BundlesTaken).await;
                }
            });
        }
        self.emit(Backend::SignedIn {
            clerk: session.clerk.clone(),
            office: session.office.clone(),
            balance,
        })
        .await;
        // A new session: the vendor has no printer report on it yet.
        self.reported_printer = None;
        let s = self.printer_status;
        self.set_printer(s).await;
        self.report_open().await;
        self.maybe_resync();
        self.kick_sends();
    }

    /// The vendor no longer knows the session: sign in again by itself, once, with the
    /// clerk's credentials; without them, or if that fails, nobody is signed in any more.
    async fn on_session_lost(&mut self, generation: u64, reason: String) {
        if generation != self.generation {
            return;
        }
        tracing::warn!(%reason, "the vendor no longer knows this session; signing in again");
        self.end_session();
        if self.credentials.is_some() {
            self.start_sign_in(true).await;
        } else {
            self.emit(Backend::SessionEnded {
                reason: SESSION_ENDED_WORDS.into(),
            })
            .await;
        }
    }

    async fn authorize(
        &mut self,
        job: JobId,
        item: &crate::indicium::Item,
        amount: Cents,
        label: LabelText,
    ) {
        if self.ui.contains_key(&job) {
            return; // sent once per job; a repeat is ignored
        }
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::AuthorizeFailed {
                job,
                reason: "not signed in".into(),
            })
            .await;
            return;
        };
        let ids = RequestIds {
            authorize: crate::clock::fresh_request_id().to_bytes(),
            commit: crate::clock::fresh_request_id().to_bytes(),
            void: crate::clock::fresh_request_id().to_bytes(),
        };
        let key = ids.authorize;
        let body = AuthorizeBody {
            amount_cents: amount.get(),
            item: wire::WireItem::from_item(item),
            origin_zip: label
                .origin_zip
                .clone()
                .unwrap_or_else(|| self.cfg.origin_zip.clone()),
        };
        let rec = UiJob {
            key,
            item: item.clone(),
            label,
            indicium: None,
        };
        if !self.remember(job, rec) {
            self.emit(Backend::AuthorizeFailed {
                job,
                reason: format!("{JOBS_MAX} items are still waiting for the vendor to settle them"),
            })
            .await;
            return;
        }
        let hex = body.to_hex();
        if let Err(reason) = self.record(|b| b.decide_authorize(key, amount.get(), ids, hex)) {
            self.emit(Backend::AuthorizeFailed { job, reason }).await;
            return;
        }
        self.report_open().await;
        self.in_flight.insert(key);
        let tx = self.done_tx.clone();
        let retry = self.cfg.authorize_retry_ms_max;
        spawn_authorize(sessions, retry, key, ids.authorize, body, tx);
    }

    async fn on_authorized(&mut self, key: JobKey, result: Result<wire::Authorized, Failure>) {
        self.in_flight.remove(&key);
        let job = self.by_key.get(&key).copied();
        match result {
            Ok(a) => {
                self.meter = Some(a.meter.clone());
                let sha = hex::encode(Sha256::digest(&a.indicium));
                let recs =
                    match self.record(|b| b.decide_authorized(key, Ok((a.piece_serial, sha)))) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(%e, "authorization not journaled");
                            Vec::new()
                        }
                    };
                self.emit(Backend::Balance(
                    Cents::new(a.registers.descending_cents).unwrap_or(Cents::ZERO),
                ))
                .await;
                let printable = self
                    .with_book(|b| b.get(&key).map(|e| e.stage == Stage::Authorized))
                    .flatten()
                    .unwrap_or(false);
                if let Some(job) = job
                    && printable
                {
                    if let Some(rec) = self.ui.get_mut(&job) {
                        rec.indicium = Some(a.indicium);
                    }
                    self.emit(Backend::Numbered {
                        job,
                        number: PieceNumber::new(a.meter.clone(), a.piece_serial),
                    })
                    .await;
                    self.emit(Backend::Authorized { job }).await;
                }
                self.after(&recs).await;
            }
            Err(f) if f.retryable => {
                // The vendor may have reserved it: never print it; replay and void later.
                let recs = self
                    .record(|b| b.decide_authorize_abandoned(key))
                    .unwrap_or_default();
                if let Some(job) = job {
                    self.emit(Backend::AuthorizeFailed {
                        job,
                        reason: format!(
                            "{} — if the vendor reserved the amount, this counter gives it back once the link returns",
                            f.words
                        ),
                    })
                    .await;
                }
                self.after(&recs).await;
            }
            Err(f) => {
                let recs = self
                    .record(|b| {
                        b.decide_authorized(
                            key,
                            Err(Answer::Refused {
                                code: f.words.clone(),
                            }),
                        )
                    })
                    .unwrap_or_default();
                if let Some(job) = job {
                    self.emit(Backend::AuthorizeFailed {
                        job,
                        reason: f.words,
                    })
                    .await;
                }
                self.after(&recs).await;
            }
        }
    }

    /// The UI gives up a job before printing it (the link went down, say): void it.
    async fn abandon(&mut self, job: JobId) {
        let Some(key) = self.ui.get(&job).map(|r| r.key) else {
            return;
        };
        match self.record(|b| b.decide_abandon(key)) {
            Ok(recs) => self.after(&recs).await,
            Err(e) => tracing::debug!(%job, %e, "abandon refused"),
        }
    }

    async fn print(&mut self, job: JobId) {
        let Some(rec) = self.ui.get(&job) else {
            self.emit(Backend::Error(format!(
                "{job} is not authorized; nothing printed."
            )))
            .await;
            return;
        };
        let key = rec.key;
        let Some(setup) = self.cfg.printer.clone() else {
            self.emit(Backend::Error("No printer is configured.".into()))
                .await;
            self.abandon(job).await;
            return;
        };
        if self.port_busy {
            self.queued_print = Some(job);
            return;
        }
        let Some(bytes) = rec.indicium.clone() else {
            self.emit(Backend::Error(format!(
                "{job} is not authorized; nothing printed."
            )))
            .await;
            return;
        };
        let label = match SignedIndicium::decode(&bytes) {
            Ok(ind) => label_for(&ind, Some(&rec.item), &rec.label, &setup.profile),
            Err(e) => {
                self.emit(Backend::Error(format!(
                    "Vendor's indicium is malformed: {e}"
                )))
                .await;
                self.abandon(job).await;
                return;
            }
        };
        let seq = self.print_seq;
        self.print_seq = self.print_seq.wrapping_add(1) % compiler::PROCESS_ID_JOBS_MAX;
        let compiled = match compiler::compile_with(
            &label,
            &setup.profile,
            &compiler::CompileOptions {
                chunk_bytes_max: self.cfg.stream.chunk_bytes_max,
                job_seq: seq,
                // The indicium sits at the top of the label and prints last, so a lapse during
                // most of the print leaves no indicium on paper (docs/PRINTING.md).
                layout: compiler::Layout::Rotated180,
            },
        ) {
            Ok(j) => j,
            Err(e) => {
                self.emit(Backend::Error(format!("Label does not compile: {e}")))
                    .await;
                self.abandon(job).await;
                return;
            }
        };
        let Some(port) = self.port.take() else {
            // No printer: nothing reached it, so the amount goes back.
            self.emit(Backend::PrintOutcome {
                job,
                outcome: JobOutcome::Faulted {
                    fault: PrinterFault::Offline,
                    bytes_sent: 0,
                    indicium: IndiciumPaper::NotSent,
                },
            })
            .await;
            self.abandon(job).await;
            return;
        };
        let Some(sup) = &self.sup else {
            self.port = Some(port);
            self.abandon(job).await;
            return;
        };
        // Announced (and durable) before the first printer byte; refused if it ever printed.
        if let Err(e) = self.record(|b| b.decide_print(key, seq)) {
            self.port = Some(port);
            self.emit(Backend::Error(format!("{job}: {e}"))).await;
            return;
        }
        let Some(books) = self.books.clone() else {
            self.port = Some(port);
            return;
        };
        // The streamer sees the link, or Closed once the counter quits.
        let (gate_tx, gate) = watch::channel(*sup.state.borrow());
        let mut link = sup.state.clone();
        let mut quit = self.quit.subscribe();
        let gate_task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = link.changed() => {
                        let s = if r.is_err() { LinkState::Closed } else { *link.borrow_and_update() };
                        if gate_tx.send(s).is_err() || r.is_err() { return; }
                    }
                    r = quit.changed() => {
                        if r.is_err() || *quit.borrow_and_update() {
                            let _ = gate_tx.send(LinkState::Closed);
                            return;
                        }
                    }
                }
            }
        });
        self.port_busy = true;
        self.printing = Some(key);
        self.print_busy.send_replace(true);
        let (ptx, mut prx) = watch::channel(Progress {
            bytes_sent: 0,
            bytes_total: compiled.bytes.len(),
        });
        let events = self.events.clone();
        let forward = tokio::spawn(async move {
            while prx.changed().await.is_ok() {
                let progress = *prx.borrow_and_update();
                // Progress is advisory: drop it rather than wait on a busy UI.
                let _ = events.try_send(Backend::PrintProgress { job, progress });
            }
        });
        let tx = self.done_tx.clone();
        let cfg = self.cfg.stream;
        let milestones: Box<dyn Milestones> = Box::new(JournalMilestones { books, key });
        tokio::spawn(async move {
            let r = streamer::stream_job_async(port, compiled, gate, ptx, cfg, milestones).await;
            forward.abort();
            gate_task.abort();
            let (port, outcome) = match r {
                Ok((port, outcome)) => (Some(port), outcome),
                Err(e) => {
                    tracing::error!(error = %e, "print task failed");
                    // The thread died: what reached the printer is unknown; the book keeps
                    // the strongest thing the journal knows (never less than on paper once
                    // the indicium's bytes went out).
                    (
                        None,
                        JobOutcome::Faulted {
                            fault: PrinterFault::PortVanished,
                            bytes_sent: 0,
                            indicium: IndiciumPaper::AssumedPrinted,
                        },
                    )
                }
            };
            let _ = tx
                .send(Done::Printed {
                    job,
                    key,
                    port,
                    outcome,
                })
                .await;
        });
    }

    async fn on_printed(
        &mut self,
        job: JobId,
        key: JobKey,
        port: Option<PrinterPort>,
        outcome: JobOutcome,
    ) {
        self.port_busy = false;
        self.printing = None;
        self.print_busy.send_replace(false);
        self.port = port;
        tracing::info!(%job, ?outcome, "print ended");
        self.emit(Backend::PrintOutcome { job, outcome }).await;
        let (paper, complete) = verdict(&outcome);
        match self.record(|b| b.decide_ended(key, paper, complete)) {
            Ok(recs) => self.after(&recs).await,
            Err(e) => {
                self.emit(Backend::Error(format!(
                    "{job}: the outcome could not be recorded ({e}); it is settled at the next start."
                )))
                .await
            }
        }
        let status = match outcome {
            JobOutcome::Faulted { fault, .. } => PrinterStatus::Fault(fault),
            _ => PrinterStatus::Ready,
        };
        self.set_printer(status).await;
        if let Some(next) = self.queued_print.take() {
            Box::pin(self.print(next)).await;
        }
        Box::pin(self.next_printout()).await;
    }

    async fn on_settled(&mut self, key: JobKey, result: Result<wire::PieceDone, Failure>) {
        self.in_flight.remove(&key);
        let answer = match result {
            Ok(done) => {
                tracing::info!(piece = done.piece_serial, result = %done.result, "settled");
                self.emit(Backend::Balance(
                    Cents::new(done.registers.descending_cents).unwrap_or(Cents::ZERO),
                ))
                .await;
                Answer::Ok {
                    result: done.result,
                }
            }
            Err(f) if f.retryable => {
                // Out of retries for now; the retry timer and the next start try again.
                tracing::info!(reason = %f.words, "settlement not acknowledged yet; kept");
                return;
            }
            Err(f) => {
                tracing::warn!(reason = %f.words, "settlement refused");
                Answer::Refused { code: f.words }
            }
        };
        match self.record(|b| b.decide_settled(key, answer)) {
            Ok(recs) => self.after(&recs).await,
            Err(e) => tracing::error!(%e, "settlement not journaled"),
        }
    }

    /// A refund request for a printed piece: the clerk's own ask, the vendor decides.
    async fn refund(&mut self, job: JobId) {
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::Error("Not signed in; nothing sent.".into()))
                .await;
            return;
        };
        let serial = if job.0 & VENDOR_JOB_BIT != 0 {
            Some(job.0 & !VENDOR_JOB_BIT)
        } else {
            self.ui.get(&job).and_then(|r| {
                self.with_book(|b| b.get(&r.key).and_then(|e| e.piece_serial))
                    .flatten()
            })
        };
        let Some(serial) = serial else {
            self.emit(Backend::Error(
                "That item is not known here; nothing was sent. Load the history and try again."
                    .into(),
            ))
            .await;
            return;
        };
        // The clerk reads the item's printed number, never the UI's job id.
        let label = match &self.meter {
            Some(m) => PieceNumber::new(m.clone(), serial).to_string(),
            None => format!("Item #{serial}"),
        };
        let request_id = crate::clock::fresh_request_id().to_bytes();
        let tx = self.done_tx.clone();
        let retry = self.cfg.money_retry_ms_max;
        tokio::spawn(async move {
            let result = send_retrying(sessions, retry, |s| {
                s.refund_request(request_id, crate::clock::unix_ms(), serial)
            })
            .await;
            let _ = tx.send(Done::Refund { job, label, result }).await;
        });
    }

    async fn on_done(&mut self, d: Done) {
        match d {
            Done::SignedIn {
                generation,
                again,
                result,
            } => self.on_signed_in(generation, again, result).await,
            Done::SessionLost { generation, reason } => {
                self.on_session_lost(generation, reason).await
            }
            Done::Resumed { generation } => {
                if generation == self.generation {
                    // A new connection: the vendor may have missed reports while the link was
                    // cut (a printer that ran out of paper meanwhile), and money may have moved.
                    self.reported_printer = None;
                    self.report_printer();
                    self.refresh_balance();
                    self.kick_sends();
                }
            }
            Done::PrinterReported { status, ok } => self.on_printer_reported(status, ok),
            Done::Authorized { key, result } => self.on_authorized(key, result).await,
            Done::Printed {
                job,
                key,
                port,
                outcome,
            } => self.on_printed(job, key, port, outcome).await,
            Done::Settled { key, result } => self.on_settled(key, result).await,
            Done::Refund { job, label, result } => match result {
                Ok(done) => {
                    self.emit(Backend::RefundChanged {
                        job,
                        state: RefundState::Requested,
                    })
                    .await;
                    self.emit(Backend::Balance(
                        Cents::new(done.registers.descending_cents).unwrap_or(Cents::ZERO),
                    ))
                    .await;
                }
                Err(f) => {
                    self.emit(Backend::Error(format!(
                        "{label}: requesting the refund failed: {}.",
                        f.words
                    )))
                    .await
                }
            },
            Done::Polled { port, status } => {
                self.port_busy = false;
                if self.port.is_none() {
                    self.port = port;
                }
                self.set_printer(status).await;
                if let Some(next) = self.queued_print.take() {
                    self.print(next).await;
                }
                self.next_printout().await;
            }
            Done::Resynced { port, report } => {
                self.port_busy = false;
                if self.port.is_none() {
                    self.port = port;
                }
                self.on_resynced(report).await;
                if let Some(next) = self.queued_print.take() {
                    self.print(next).await;
                }
                self.next_printout().await;
            }
            Done::BundlesTaken => self.load_rates(),
            Done::Printout {
                kind,
                shared,
                port,
                result,
            } => {
                self.printout_running = false;
                if shared {
                    self.port_busy = false;
                    if self.port.is_none() {
                        self.port = port;
                    }
                }
                match &result {
                    Ok(()) => tracing::info!(?kind, "printout printed"),
                    Err(e) => tracing::warn!(?kind, error = %e, "printout not printed"),
                }
                self.emit(Backend::PrintoutDone { kind, result }).await;
                if shared && let Some(next) = self.queued_print.take() {
                    self.print(next).await;
                }
                self.next_printout().await;
            }
        }
    }

    /// The clerk signs out (or quits): the session ends and the credentials are dropped
    /// (the password zeroized).
    fn sign_out(&mut self) {
        self.end_session();
        self.credentials = None;
    }

    /// Ends the current session (or a sign-in in progress) and its supervisor.
    fn end_session(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if let Some(t) = self.link_task.take() {
            t.abort();
        }
        if let Some(s) = self.sup.take() {
            s.stop();
            // The status bar must not go on showing the old session's link as up.
            let down = crate::link::driver::LinkStatus::down(0, Instant::now());
            let _ = self.events.try_send(Backend::LinkChanged(down));
        }
        self.reported_printer = None;
    }

    /// The rate table of the rates bundle in use (issue 17), read again (a rates bundle just
    /// taken is used from the next quote on). Said in the log either way: the counter's prices
    /// come from the signed table, or — with none received yet — from the vendor's quotes.
    fn load_rates(&mut self) {
        let Some(b) = &self.cfg.bundles else {
            tracing::info!("no release key pinned: prices are the vendor's quotes");
            return;
        };
        self.rates = super::bundles::installed_rates(&b.store())
            .map(|(label, table)| Arc::new(SignedRates { label, table }));
        match &self.rates {
            Some(r) => tracing::info!(
                rates = %r.label,
                "prices from the signed rate table; the vendor's price authorizes"
            ),
            None => {
                tracing::info!("no signed rate table received yet: prices are the vendor's quotes")
            }
        }
    }

    /// Prices a postage piece: the signed rate table's price at once (when there is one), then
    /// the vendor's own quote — the price the authorization carries, shown in its place. A
    /// difference is logged and the clerk reads both before confirming (the review says so).
    fn quote(&mut self, request: u64, class: MailClass, weight_oz: u16, from: String, to: String) {
        let item = wire::PostageItem {
            class: class.name().to_string(),
            weight_oz,
            zip: to,
        };
        let listed = self.rates.as_ref().and_then(|r| {
            let q = wire::QuoteRequest {
                item: item.clone(),
                origin_zip: from.clone(),
            };
            match wire::price::quote(&r.table, &q).map(|q| Cents::new(q.amount_cents)) {
                Ok(Ok(amount)) => Some((amount, r.label.clone())),
                Ok(Err(e)) => {
                    tracing::warn!(error = %e, rates = %r.label, "the signed rate table's price is out of range");
                    None
                }
                Err(e) => {
                    tracing::info!(error = %crate::logtext::escaped(&e.message), rates = %r.label, "no price in the signed rate table; the vendor's quote alone prices");
                    None
                }
            }
        });
        let sessions = self.sessions();
        let events = self.events.clone();
        tokio::spawn(async move {
            if let Some((amount, table)) = listed.clone() {
                let _ = events
                    .send(Backend::TablePrice {
                        request,
                        amount,
                        table,
                    })
                    .await;
            }
            let Some(sessions) = sessions else {
                return;
            };
            let session = sessions.borrow().clone();
            let b = match session.quote(item, &from).await {
                Ok(q) => match Cents::new(q.amount_cents) {
                    Ok(amount) => {
                        if let Some((listed, table)) = listed.filter(|(l, _)| *l != amount) {
                            tracing::warn!(
                                rates = %table,
                                table_price = %listed,
                                vendor_price = %amount,
                                "the vendor's price is not the signed rate table's; the vendor's is charged"
                            );
                        }
                        Backend::Quote { request, amount }
                    }
                    Err(e) => Backend::QuoteFailed {
                        request,
                        reason: e.to_string(),
                    },
                },
                Err(e) => Backend::QuoteFailed {
                    request,
                    reason: reason(&e),
                },
            };
            let _ = events.send(b).await;
        });
    }

    async fn fund(&mut self, method: FundMethod, amount: Cents) {
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::FundResult {
                ok: false,
                declined: false,
                message: "Not signed in.".into(),
            })
            .await;
            return;
        };
        let wire_method = match &method {
            FundMethod::Card {
                number,
                expiry,
                cvc,
            } => {
                let (m, y) = expiry.split_once('/').unwrap_or((expiry.as_str(), ""));
                let (Ok(m), Ok(y)) = (m.trim().parse::<u8>(), y.trim().parse::<u16>()) else {
                    self.emit(Backend::FundResult {
                        ok: false,
                        declined: false,
                        message: "Card expiry must be MM/YY.".into(),
                    })
                    .await;
                    return;
                };
                wire::FundMethod::Card {
                    number: number
                        .expose()
                        .chars()
                        .filter(|c| !c.is_whitespace())
                        .collect(),
                    exp_month: m,
                    exp_year: if y < 100 { 2000 + y } else { y },
                    cvc: cvc.expose().to_string(),
                }
            }
            FundMethod::Eft { routing, account } => wire::FundMethod::Ach {
                routing: routing.trim().to_string(),
                account: account.expose().trim().to_string(),
            },
        };
        drop(method);
        let request_id = crate::clock::fresh_request_id().to_bytes();
        let events = self.events.clone();
        let retry = self.cfg.authorize_retry_ms_max;
        tokio::spawn(async move {
            let r: Result<wire::Funded, Failure> = send_retrying(sessions, retry, |s| {
                s.fund_request(
                    request_id,
                    crate::clock::unix_ms(),
                    amount.get(),
                    wire_method.clone(),
                )
            })
            .await;
            let msgs = match r {
                Ok(f) => vec![
                    Backend::FundResult {
                        ok: true,
                        declined: false,
                        message: format!("Added {amount} (payment {}).", f.payment_id),
                    },
                    Backend::Balance(
                        Cents::new(f.registers.descending_cents).unwrap_or(Cents::ZERO),
                    ),
                ],
                Err(e) => vec![Backend::FundResult {
                    ok: false,
                    declined: e.declined,
                    message: format!("Not added: {}", e.words),
                }],
            };
            for m in msgs {
                let _ = events.send(m).await;
            }
        });
    }

    fn history(&mut self) {
        let Some(sessions) = self.sessions() else {
            return;
        };
        // The clerk reads refund states here: the balance shown goes with them.
        self.refresh_balance();
        // Pieces this run issued keep the UI's job ids.
        let known: HashMap<u64, JobId> = self
            .ui
            .iter()
            .filter_map(|(j, r)| {
                self.with_book(|b| b.get(&r.key).and_then(|e| e.piece_serial))
                    .flatten()
                    .map(|s| (s, *j))
            })
            .collect();
        let events = self.events.clone();
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            match session.pieces(HISTORY_ROWS, None).await {
                Ok(list) => {
                    let items: Vec<IssuedItem> = list
                        .pieces
                        .iter()
                        .map(|p| IssuedItem {
                            number: p.number(),
                            job: known.get(&p.piece_serial).copied(),
                            kind: ItemKind::from_code(p.kind).unwrap_or(ItemKind::Postage),
                            date: day_of(p.authorized_at_ms),
                            authorized_at_ms: p.authorized_at_ms,
                            summary: if p.summary.is_empty() {
                                format!("piece {}", p.piece_serial)
                            } else {
                                p.summary.clone()
                            },
                            amount: Cents::new(p.amount_cents).unwrap_or(Cents::ZERO),
                            state: history_state(&p.item_state),
                        })
                        .collect();
                    let _ = events.send(Backend::Items(items)).await;
                }
                Err(e) => {
                    let _ = events
                        .send(Backend::Error(format!(
                            "History not loaded: {}",
                            reason(&e)
                        )))
                        .await;
                }
            }
        });
    }

    /// Words when `number` is not of this account's meter (as far as this run knows it).
    fn own_meter(&self, number: &PieceNumber) -> Result<(), String> {
        match &self.meter {
            Some(m) if *m != number.meter => Err(format!(
                "{number} was not issued by this office's meter ({m}); nothing was sent."
            )),
            _ => Ok(()),
        }
    }

    /// Records a basket's tender at the vendor (retried with the basket's own request id).
    async fn tender(&mut self, basket: BasketId, pieces: Vec<PieceNumber>, tender: Tender) {
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::TenderFailed {
                basket,
                reason: "Not signed in; the payment was not recorded. Sign in and record it again."
                    .into(),
            })
            .await;
            return;
        };
        let Some(meter) = pieces.first().map(|p| p.meter.clone()) else {
            self.emit(Backend::TenderFailed {
                basket,
                reason: "The basket has no items; there is nothing to pay for.".into(),
            })
            .await;
            return;
        };
        if let Some(other) = pieces.iter().find(|p| p.meter != meter) {
            self.emit(Backend::TenderFailed {
                basket,
                reason: format!(
                    "{other} is from another meter than the rest of the basket; nothing was recorded."
                ),
            })
            .await;
            return;
        }
        let request_id = match self.baskets.iter().find(|(b, _)| *b == basket) {
            Some((_, id)) => *id,
            None => {
                let id = crate::clock::fresh_request_id().to_bytes();
                if self.baskets.len() >= BASKETS_REMEMBERED_MAX {
                    self.baskets.remove(0);
                }
                self.baskets.push((basket, id));
                id
            }
        };
        let serials: Vec<u64> = pieces.iter().map(|p| p.serial).collect();
        let events = self.events.clone();
        let retry = self.cfg.money_retry_ms_max;
        tokio::spawn(async move {
            let kind = tender.kind.as_str();
            let result = send_retrying::<wire::TenderDone, _>(sessions, retry, |s| {
                s.tender_request(
                    request_id,
                    crate::clock::unix_ms(),
                    &meter,
                    &serials,
                    kind,
                    tender.amount_tendered.get(),
                    tender.change.get(),
                )
            })
            .await;
            let b = match result {
                Ok(done) => Backend::TenderRecorded {
                    basket,
                    pieces: done
                        .pieces
                        .iter()
                        .map(|s| PieceNumber::new(done.meter.clone(), *s))
                        .collect(),
                    tender,
                    total: Cents::new(done.total_cents).unwrap_or(Cents::ZERO),
                    recorded_at_ms: done.recorded_at_ms,
                },
                Err(f) => Backend::TenderFailed {
                    basket,
                    reason: format!("The payment was not recorded: {}", f.words),
                },
            };
            let _ = events.send(b).await;
        });
    }

    fn day_report(&mut self, day: crate::indicium::kinds::Day, scope: DayScope) {
        let events = self.events.clone();
        let Some(sessions) = self.sessions() else {
            let _ = events.try_send(Backend::DayReportFailed {
                reason: "Not signed in; sign in to see the day's report.".into(),
            });
            return;
        };
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            let scope = match scope {
                DayScope::Clerk => "clerk",
                DayScope::Terminal => "terminal",
                DayScope::Office => "office",
            };
            let b = match session.day_report(&day.to_string(), scope).await {
                Ok(r) => Backend::DayReport(Box::new(r)),
                Err(e) => Backend::DayReportFailed {
                    reason: format!("The day's report did not load: {}", reason(&e)),
                },
            };
            let _ = events.send(b).await;
        });
    }

    fn refunds_awaiting(&mut self) {
        let events = self.events.clone();
        let Some(sessions) = self.sessions() else {
            let _ = events.try_send(Backend::RefundsAwaitingFailed {
                reason: "Not signed in; a supervisor must sign in to see refund requests.".into(),
            });
            return;
        };
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            let b = match session.refunds_awaiting(wire::REFUNDS_AWAITING_MAX).await {
                Ok(list) => Backend::RefundsAwaiting(
                    list.pieces
                        .into_iter()
                        .map(|p| RefundAwaiting {
                            number: p.number(),
                            kind: ItemKind::from_code(p.kind).unwrap_or(ItemKind::Postage),
                            amount: Cents::new(p.amount_cents).unwrap_or(Cents::ZERO),
                            authorized_at_ms: p.authorized_at_ms,
                            summary: p.summary,
                            clerk: p.clerk,
                            terminal: p.terminal_id,
                        })
                        .collect(),
                ),
                Err(e) if e.code() == Some(ErrorCode::Forbidden) => {
                    Backend::RefundsAwaitingFailed {
                        reason: NOT_SUPERVISOR_WORDS.into(),
                    }
                }
                Err(e) => Backend::RefundsAwaitingFailed {
                    reason: format!("Refund requests did not load: {}", reason(&e)),
                },
            };
            let _ = events.send(b).await;
        });
    }

    async fn decide_refund(&mut self, number: PieceNumber, approve: bool) {
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::RefundDecisionFailed {
                number,
                reason: "Not signed in; nothing was decided.".into(),
            })
            .await;
            return;
        };
        let request_id = crate::clock::fresh_request_id().to_bytes();
        let events = self.events.clone();
        let retry = self.cfg.money_retry_ms_max;
        tokio::spawn(async move {
            let result = send_retrying::<wire::RefundDecided, _>(sessions, retry, |s| {
                s.refund_decide_request(
                    request_id,
                    crate::clock::unix_ms(),
                    &number.meter,
                    number.serial,
                    approve,
                )
            })
            .await;
            match result {
                Ok(d) => {
                    let _ = events
                        .send(Backend::RefundDecided {
                            number,
                            approved: d.approved,
                        })
                        .await;
                    let _ = events
                        .send(Backend::Balance(
                            Cents::new(d.registers.descending_cents).unwrap_or(Cents::ZERO),
                        ))
                        .await;
                }
                Err(f) => {
                    let _ = events
                        .send(Backend::RefundDecisionFailed {
                            number,
                            reason: f.words,
                        })
                        .await;
                }
            }
        });
    }
}

impl Actor {
    /// Queues a text printout (not value: see [`printouts`]) and starts it when its printer is
    /// free.
    async fn printout(&mut self, kind: PrintoutKind, lines: Vec<String>) {
        if self.printouts.len() >= printouts::PRINTOUTS_QUEUED_MAX {
            self.emit(Backend::PrintoutDone {
                kind,
                result: Err(
                    "the printer is still busy with earlier printouts; print it again in a moment"
                        .into(),
                ),
            })
            .await;
            return;
        }
        self.printouts.push_back((kind, lines));
        self.next_printout().await;
    }

    /// Starts the next printout: on the receipt printer when there is one, else on the label
    /// printer once no label is on it or waiting for it (labels go first) and no resync is due.
    async fn next_printout(&mut self) {
        if self.printout_running || self.printouts.is_empty() {
            return;
        }
        let shared = self.cfg.receipt_printer.is_none();
        let Some(setup) = self
            .cfg
            .receipt_printer
            .clone()
            .or_else(|| self.cfg.printer.clone())
        else {
            while let Some((kind, _)) = self.printouts.pop_front() {
                self.emit(Backend::PrintoutDone {
                    kind,
                    result: Err("no printer is configured".into()),
                })
                .await;
            }
            return;
        };
        if shared && (self.port_busy || self.queued_print.is_some() || self.resync_due) {
            return; // started again when the port comes back
        }
        let Some((kind, lines)) = self.printouts.pop_front() else {
            return;
        };
        let labels = match crate::printer::textjob::labels(&lines, &setup.profile) {
            Ok(l) => l,
            Err(e) => {
                self.emit(Backend::PrintoutDone {
                    kind,
                    result: Err(e),
                })
                .await;
                return;
            }
        };
        let port = if shared { self.port.take() } else { None };
        let seq = self.print_seq;
        self.print_seq =
            self.print_seq.wrapping_add(labels.len() as u32) % compiler::PROCESS_ID_JOBS_MAX;
        // A printout's only gate is the counter quitting: it is not value, so the link
        // does not hold it back.
        let (gate_tx, gate) = watch::channel(LinkState::Up);
        let mut quit = self.quit.subscribe();
        let gate_task = tokio::spawn(async move {
            while quit.changed().await.is_ok() {
                if *quit.borrow_and_update() {
                    break;
                }
            }
            let _ = gate_tx.send(LinkState::Closed);
        });
        self.printout_running = true;
        if shared {
            self.port_busy = true;
        }
        let cfg = self.cfg.stream;
        let tx = self.done_tx.clone();
        tokio::task::spawn_blocking(move || {
            let opened = port.map(Ok).unwrap_or_else(|| {
                PrinterPort::open(&setup.device, &setup.profile, None).map_err(|e| e.to_string())
            });
            let (port, result) = match opened {
                Ok(mut p) => {
                    let r = printouts::print_labels(&mut p, &labels, seq, &gate, &cfg);
                    (Some(p), r)
                }
                Err(e) => (None, Err(format!("the printer cannot be opened ({e})"))),
            };
            gate_task.abort();
            // The receipt printer's port is closed after each printout; the label printer's
            // goes back to the backend.
            let port = if shared { port } else { None };
            let _ = tx.blocking_send(Done::Printout {
                kind,
                shared,
                port,
                result,
            });
        });
    }
}

fn day_of(ms: u64) -> String {
    wire::day_of_ms(ms)
        .map(|d| d.to_string())
        .unwrap_or_default()
}

async fn sign_in(
    cfg: &BackendConfig,
    endpoint: quinn::Endpoint,
    clerk: &str,
    password: &str,
) -> anyhow::Result<(SupervisorHandle, Session, Cents, Option<String>)> {
    let opts = HeadlessOptions {
        vendors: cfg.vendors.clone(),
        pinned: cfg.pinned,
        data_dir: cfg.terminal_dir.clone(),
        enroll_code: cfg.enroll_code.clone(),
        terminal_name: cfg.terminal_name.clone(),
        clerk: clerk.to_string(),
        report_interval_ms: 0,
    };
    let (sup, session) = headless::sign_in(endpoint, &opts, password).await?;
    let (balance, meter) = match session.balance().await {
        Ok(b) => (
            Cents::new(b.registers.descending_cents).unwrap_or(Cents::ZERO),
            Some(b.meter),
        ),
        Err(_) => (Cents::ZERO, None),
    };
    Ok((sup, session, balance, meter))
}

/// Forwards the supervisor's link status to the UI: state changes at once, figures at most
/// every [`LINK_REPORT_INTERVAL_MS`]. A resumed session goes to `current` (for requests in
/// flight) and to the backend; a session the vendor no longer knows, or a supervisor that
/// stopped by itself, goes to the backend, which signs in again.
fn spawn_link_reports(
    sup: SupervisorHandle,
    generation: u64,
    events: mpsc::Sender<Backend>,
    done: mpsc::Sender<Done>,
    current: watch::Sender<Session>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut status = sup.status.clone();
        let mut phase = sup.phase.clone();
        let mut sessions = sup.session.clone();
        let mut last_state: Option<LinkState> = None;
        let mut last_sent = Instant::now() - Duration::from_secs(1);
        loop {
            tokio::select! {
                r = status.changed() => {
                    if r.is_err() { break; }
                    let s = status.borrow_and_update().clone();
                    let due = last_sent.elapsed() >= Duration::from_millis(LINK_REPORT_INTERVAL_MS);
                    if Some(s.state) != last_state || due {
                        last_state = Some(s.state);
                        last_sent = Instant::now();
                        if events.send(Backend::LinkChanged(s)).await.is_err() { return; }
                    }
                }
                r = sessions.changed() => {
                    if r.is_err() { break; }
                    let s = sessions.borrow_and_update().clone();
                    current.send_replace(s);
                    if done.send(Done::Resumed { generation }).await.is_err() { return; }
                }
                r = phase.changed() => {
                    if r.is_err() { break; }
                    if session_lost(&phase.borrow_and_update()).is_some() { break; }
                }
            }
        }
        // The supervisor ended (its channels close when it does, in whatever order the select
        // sees them): its last phase says whether the session was lost.
        let last = phase.borrow().clone();
        if let Some(reason) = session_lost(&last) {
            let _ = done.send(Done::SessionLost { generation, reason }).await;
        }
    })
}

/// Why the supervisor gave its session up by itself, if it did (not when it was stopped).
fn session_lost(p: &Phase) -> Option<String> {
    match p {
        Phase::LoginRequired { reason } => Some(reason.clone()),
        Phase::Stopped { reason } if reason != "stopped" => Some(reason.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: ErrorCode) -> ClientError {
        ClientError::Response(wire::ResponseError::Refused(wire::ErrorBody::new(
            code,
            "vendor words",
        )))
    }

    /// A processor timeout is retried under the same request id (charged at most once); once
    /// the retries run out the clerk is told not to top up again blindly.
    #[test]
    fn a_payment_timeout_is_retried_and_then_explained() {
        assert!(retryable(&refused(ErrorCode::PaymentTimeout)));
        assert!(!retryable(&refused(ErrorCode::PaymentDeclined)));
        let words = reason(&refused(ErrorCode::PaymentTimeout));
        assert!(
            words.contains("check the balance before trying again"),
            "{words}"
        );
        assert_eq!(reason(&refused(ErrorCode::PaymentDeclined)), "vendor words");
    }
}
