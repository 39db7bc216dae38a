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
    Answer, JobBook, JobKey, PaperVerdict, Record, Refusal, RequestIds, Resync, Send, Settlement,
    Stage,
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

mod books;
mod office;
mod printing;
mod requests;
mod session;
#[cfg(test)]
mod tests;

use books::*;
pub use printing::label_for;
use requests::*;

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

impl Actor {
    async fn emit(&self, b: Backend) {
        let _ = self.events.send(b).await;
    }

    /// The current session while signed in; the receiver follows resumes and sign-ins.
    fn sessions(&self) -> Option<watch::Receiver<Session>> {
        self.sup.as_ref()?;
        self.session_tx.as_ref().map(|t| t.subscribe())
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
                // A due resync starts here too (`poll_printer`), and when the port comes free.
                _ = poll.tick() => self.poll_printer(),
                _ = settle_retry.tick() => self.kick_sends(),
                _ = balance_refresh.tick() => self.refresh_balance(),
            }
        }
        self.quit(&mut done).await;
        self.sign_out();
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
                self.set_printer(status).await;
                self.port_freed(port).await;
            }
            Done::Resynced { port, report } => {
                self.on_resynced(report).await;
                self.port_freed(port).await;
            }
            Done::BundlesTaken => self.load_rates(),
            Done::Printout {
                kind,
                shared,
                port,
                result,
            } => {
                self.printout_running = false;
                match &result {
                    Ok(()) => tracing::info!(?kind, "printout printed"),
                    Err(e) => tracing::warn!(?kind, error = %e, "printout not printed"),
                }
                self.emit(Backend::PrintoutDone { kind, result }).await;
                if shared {
                    self.port_freed(port).await;
                } else {
                    self.next_printout().await;
                }
            }
        }
    }
}
