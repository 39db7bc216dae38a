//! The counter's backend: carries the UI's [`Command`]s to the vendor (over the supervised
//! session) and to the printer (through the abortable streamer), and reports back as
//! [`Backend`] events. The UI core never touches a socket or a port; this task does.
//!
//! Money rules it enforces on its own, whatever the UI asks:
//! - An authorized item is printed at most once (`Print` for a job already printed is refused).
//! - The job's outcome decides the money, here, the moment the streamer returns: completed →
//!   `commit`; stopped before the indicium was complete → `void` (reached_printer = false, the
//!   amount goes back); stopped after it → `void` with reached_printer = true, which the vendor
//!   turns into a refund request. The UI's own `Void`/`RequestRefund` for such a job are then
//!   no-ops. Each of these requests keeps one request id per job and is retried (with the same
//!   id, so the vendor applies it once) while the link is down, up to `money_retry_ms_max`;
//!   after that the vendor's reaper voids the reservation at its expiry.
//! - Card numbers, CVCs and passwords are passed through, never logged.

use super::client::{self, ClientError, Session};
use super::headless::{self, HeadlessOptions};
use super::supervisor::{Phase, SupervisorHandle};
use crate::indicium::layout::Indicium as SignedIndicium;
use crate::indicium::render::{human_lines, module_dots, native_payload};
use crate::indicium::{ItemKind, MailClass};
use crate::link::guard::LinkState;
use crate::money::Cents;
use crate::printer::compiler::{self, Element, Indicium, Label, TextLine};
use crate::printer::profile::Profile;
use crate::printer::streamer::{
    self, IndiciumPaper, JobOutcome, PrinterFault, PrinterPort, Progress, StreamConfig,
};
use crate::ui::event::{
    Backend, Command, FundMethod, HistoryEntry, ItemState, JobId, LabelText, PrinterStatus,
    RefundState,
};
use crate::wire::{self, ErrorCode, Request};
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

/// Bound of the backend's internal completion queue, in messages.
const DONE_QUEUE_MAX: usize = 64;
/// Most jobs remembered (for dedup and refunds) before the oldest finished ones are dropped.
const JOBS_MAX: usize = 1024;
/// History rows asked of the vendor.
const HISTORY_ROWS: u32 = 100;
/// Pause between retries of a request the vendor could not take yet, in ms.
const RETRY_PAUSE_MS: u64 = 250;
/// Link status reports to the UI are sent at most this often (state changes go at once).
const LINK_REPORT_INTERVAL_MS: u64 = 250;
/// Wait for one printer status reply, in ms.
const PRINTER_STATUS_REPLY_MS: u64 = 300;
/// JobIds for pieces the vendor lists that this run did not issue: this bit set + the serial.
const VENDOR_JOB_BIT: u64 = 1 << 63;

/// Where the printer is and how it behaves.
#[derive(Debug, Clone)]
pub struct PrinterSetup {
    pub device: PathBuf,
    pub profile: Profile,
}

#[derive(Debug, Clone)]
pub struct BackendConfig {
    pub vendor: SocketAddr,
    pub pinned: VerifyingKey,
    pub terminal_dir: PathBuf,
    pub terminal_name: String,
    /// Needed once, on the first run, to enroll this terminal.
    pub enroll_code: Option<String>,
    /// The counter's own ZIP: origin of items whose form gives none.
    pub origin_zip: String,
    pub printer: Option<PrinterSetup>,
    pub stream: StreamConfig,
    /// Idle printer status is asked this often.
    pub printer_poll_interval_ms: u64,
    /// How long authorize keeps retrying while the link is down before it gives up.
    pub authorize_retry_ms_max: u64,
    /// How long commit / void / refund requests keep retrying while the link is down.
    pub money_retry_ms_max: u64,
}

impl BackendConfig {
    pub fn new(vendor: SocketAddr, pinned: VerifyingKey, terminal_dir: PathBuf) -> Self {
        BackendConfig {
            vendor,
            pinned,
            terminal_dir,
            terminal_name: "counter".into(),
            enroll_code: None,
            origin_zip: "00000".into(),
            printer: None,
            stream: StreamConfig::default(),
            printer_poll_interval_ms: 2_000,
            authorize_retry_ms_max: 15_000,
            money_retry_ms_max: 110_000,
        }
    }
}

/// The money step that ends a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finish {
    Commit,
    /// The amount goes back (the indicium never completed).
    Void,
    /// The indicium printed but the job did not finish: the vendor files a refund request.
    VoidReachedPrinter,
    Refund,
}

#[derive(Debug)]
struct JobRec {
    amount: Cents,
    label: LabelText,
    piece_serial: Option<u64>,
    indicium: Option<Vec<u8>>,
    printed: bool,
    /// One request id per money step, kept for retries.
    request_ids: HashMap<&'static str, [u8; 16]>,
    /// Money steps already sent (or done): never send a second, different one.
    finished: Option<Finish>,
}

enum Done {
    SignedIn(Result<(SupervisorHandle, Session, Cents), String>),
    Authorized {
        job: JobId,
        result: Result<wire::Authorized, String>,
    },
    Printed {
        job: JobId,
        port: Option<PrinterPort>,
        outcome: JobOutcome,
    },
    Money {
        job: JobId,
        finish: Finish,
        result: Result<wire::PieceDone, String>,
    },
    Polled {
        port: Option<PrinterPort>,
        status: PrinterStatus,
    },
}

/// Runs the backend until `Quit` or until the UI drops its command sender.
pub fn spawn(
    cfg: BackendConfig,
    commands: mpsc::Receiver<Command>,
    events: mpsc::Sender<Backend>,
) -> JoinHandle<()> {
    let (done_tx, done_rx) = mpsc::channel(DONE_QUEUE_MAX);
    let b = Actor {
        cfg,
        events,
        done_tx,
        sup: None,
        link_task: None,
        jobs: HashMap::new(),
        job_order: Vec::new(),
        port: None,
        port_busy: false,
        queued_print: None,
        printer_status: PrinterStatus::Unknown,
        reported_printer: None,
        endpoint: None,
    };
    tokio::spawn(b.run(commands, done_rx))
}

struct Actor {
    cfg: BackendConfig,
    events: mpsc::Sender<Backend>,
    done_tx: mpsc::Sender<Done>,
    sup: Option<SupervisorHandle>,
    link_task: Option<JoinHandle<()>>,
    jobs: HashMap<JobId, JobRec>,
    job_order: Vec<JobId>,
    /// The open printer, when not lent to a job or a status poll.
    port: Option<PrinterPort>,
    /// The port is out on a job or a poll.
    port_busy: bool,
    /// A Print that came while the port was out on a status poll.
    queued_print: Option<JobId>,
    printer_status: PrinterStatus,
    reported_printer: Option<PrinterStatus>,
    endpoint: Option<quinn::Endpoint>,
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
) -> Result<T, String>
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
            Err(e) => return Err(reason(&e)),
        }
    }
}

fn history_state(s: &str) -> ItemState {
    match s {
        "reserved" => ItemState::Printing,
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

/// The label for a signed item: address blocks, the indicium (native Data Matrix where the
/// profile has it, else rastered by the compiler), its human-readable lines, a cut.
pub fn label_for(indicium: &SignedIndicium, text: &LabelText, profile: &Profile) -> Label {
    let mut elements = Vec::new();
    if !text.from.is_empty() {
        elements.push(Element::Address {
            heading: None,
            lines: text.from.clone(),
        });
        elements.push(Element::Feed(1));
    }
    let module_px = module_dots(profile.dpi).clamp(1, 16) as u8;
    elements.push(Element::Indicium(Indicium::DataMatrix {
        data: native_payload(indicium),
        module_px,
    }));
    for line in human_lines(indicium) {
        elements.push(Element::Text(TextLine::plain(&line)));
    }
    if !text.to.is_empty() {
        elements.push(Element::Feed(1));
        elements.push(Element::Address {
            heading: Some("TO:".into()),
            lines: text.to.clone(),
        });
    }
    Label {
        elements,
        cut: true,
    }
}

impl Actor {
    async fn emit(&self, b: Backend) {
        let _ = self.events.send(b).await;
    }

    fn sessions(&self) -> Option<watch::Receiver<Session>> {
        self.sup.as_ref().map(|s| s.session.clone())
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>, mut done: mpsc::Receiver<Done>) {
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
        let mut poll = tokio::time::interval(Duration::from_millis(
            self.cfg.printer_poll_interval_ms.max(100),
        ));
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                c = commands.recv() => match c {
                    Some(Command::Quit) | None => break,
                    Some(c) => self.on_command(c).await,
                },
                Some(d) = done.recv() => self.on_done(d).await,
                _ = poll.tick() => self.poll_printer(),
            }
        }
        self.sign_out();
    }

    async fn set_printer(&mut self, s: PrinterStatus) {
        if self.printer_status != s || self.reported_printer.is_none() {
            self.printer_status = s;
            self.emit(Backend::PrinterStatus(s)).await;
        }
        if self.reported_printer != Some(s)
            && let Some(sessions) = self.sessions()
        {
            self.reported_printer = Some(s);
            let report = printer_report(s);
            tokio::spawn(async move {
                let session = sessions.borrow().clone();
                if let Err(e) = session.report_printer_status(report).await {
                    tracing::debug!(error = %e, "printer status not reported");
                }
            });
        }
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

    /// Keeps `rec` for `job`. At [`JOBS_MAX`] the oldest settled job makes room; when none is
    /// settled the job is refused (returns false) rather than growing without bound.
    fn remember(&mut self, job: JobId, rec: JobRec) -> bool {
        if self.jobs.len() >= JOBS_MAX {
            let Some(pos) = self
                .job_order
                .iter()
                .position(|j| self.jobs.get(j).is_some_and(|r| r.finished.is_some()))
            else {
                return false;
            };
            let old = self.job_order.remove(pos);
            self.jobs.remove(&old);
        }
        self.job_order.push(job);
        self.jobs.insert(job, rec);
        true
    }

    async fn on_command(&mut self, c: Command) {
        match c {
            Command::SignIn { clerk, password } => {
                self.sign_out();
                let cfg = self.cfg.clone();
                let tx = self.done_tx.clone();
                let endpoint = match self.endpoint.clone() {
                    Some(e) => e,
                    None => match client::endpoint_for(cfg.vendor) {
                        Ok(e) => {
                            self.endpoint = Some(e.clone());
                            e
                        }
                        Err(e) => {
                            self.emit(Backend::SignInFailed {
                                reason: format!("cannot open a network endpoint: {e}"),
                            })
                            .await;
                            return;
                        }
                    },
                };
                tokio::spawn(async move {
                    let r = sign_in(&cfg, endpoint, &clerk, password.expose()).await;
                    let _ = tx
                        .send(Done::SignedIn(r.map_err(|e| format!("{e:#}"))))
                        .await;
                });
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
            } => {
                if self.jobs.contains_key(&job) {
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
                let request_id = crate::ledger::RequestId::fresh().to_bytes();
                let origin = label
                    .origin_zip
                    .clone()
                    .unwrap_or_else(|| self.cfg.origin_zip.clone());
                let wire_item = wire::WireItem::from_item(&item);
                let mut rec = JobRec {
                    amount,
                    label: *label,
                    piece_serial: None,
                    indicium: None,
                    printed: false,
                    request_ids: HashMap::new(),
                    finished: None,
                };
                rec.request_ids.insert("authorize", request_id);
                if !self.remember(job, rec) {
                    self.emit(Backend::AuthorizeFailed {
                        job,
                        reason: format!(
                            "{JOBS_MAX} items are still waiting for the vendor to settle them"
                        ),
                    })
                    .await;
                    return;
                }
                let tx = self.done_tx.clone();
                let retry = self.cfg.authorize_retry_ms_max;
                tokio::spawn(async move {
                    let result = send_retrying(sessions, retry, |s| {
                        s.authorize_request(
                            request_id,
                            client::wall_ms(),
                            amount.get(),
                            wire_item.clone(),
                            &origin,
                        )
                    })
                    .await;
                    let _ = tx.send(Done::Authorized { job, result }).await;
                });
            }
            Command::Print { job } => self.print(job).await,
            Command::Void { job } => self.finish(job, Finish::Void).await,
            Command::RequestRefund { job } => self.finish(job, Finish::Refund).await,
            Command::Fund { method, amount } => self.fund(method, amount).await,
            Command::LoadHistory => self.history(),
            Command::ProbePrinter => self.poll_printer(),
            // `run` ends the loop on Quit before it gets here.
            Command::Quit => {}
        }
    }

    fn sign_out(&mut self) {
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

    fn quote(&mut self, request: u64, class: MailClass, weight_oz: u16, from: String, to: String) {
        let Some(sessions) = self.sessions() else {
            return;
        };
        let events = self.events.clone();
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            let item = wire::PostageItem {
                class: class.name().to_string(),
                weight_oz,
                zip: to,
            };
            let b = match session.quote(item, &from).await {
                Ok(q) => match Cents::new(q.amount_cents) {
                    Ok(amount) => Backend::Quote { request, amount },
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
        let request_id = crate::ledger::RequestId::fresh().to_bytes();
        let events = self.events.clone();
        let retry = self.cfg.authorize_retry_ms_max;
        tokio::spawn(async move {
            let r: Result<wire::Funded, String> = send_retrying(sessions, retry, |s| {
                s.fund_request(
                    request_id,
                    client::wall_ms(),
                    amount.get(),
                    wire_method.clone(),
                )
            })
            .await;
            let msgs = match r {
                Ok(f) => vec![
                    Backend::FundResult {
                        ok: true,
                        message: format!("Added {amount} (payment {}).", f.payment_id),
                    },
                    Backend::Balance(
                        Cents::new(f.registers.descending_cents).unwrap_or(Cents::ZERO),
                    ),
                ],
                Err(e) => vec![Backend::FundResult {
                    ok: false,
                    message: format!("Not added: {e}"),
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
        // Pieces this run issued keep the UI's job ids.
        let known: HashMap<u64, JobId> = self
            .jobs
            .iter()
            .filter_map(|(j, r)| r.piece_serial.map(|s| (s, *j)))
            .collect();
        let events = self.events.clone();
        tokio::spawn(async move {
            let session = sessions.borrow().clone();
            match session.pieces(HISTORY_ROWS, None).await {
                Ok(list) => {
                    let rows = list
                        .pieces
                        .into_iter()
                        .map(|p| HistoryEntry {
                            job: known
                                .get(&p.piece_serial)
                                .copied()
                                .unwrap_or(JobId(VENDOR_JOB_BIT | p.piece_serial)),
                            kind: ItemKind::from_code(p.kind).unwrap_or(ItemKind::Postage),
                            date: day_of(p.authorized_at_ms),
                            summary: if p.summary.is_empty() {
                                format!("piece {}", p.piece_serial)
                            } else {
                                p.summary.clone()
                            },
                            amount: Cents::new(p.amount_cents).unwrap_or(Cents::ZERO),
                            state: history_state(&p.item_state),
                        })
                        .collect();
                    let _ = events.send(Backend::History(rows)).await;
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

    async fn print(&mut self, job: JobId) {
        let Some(rec) = self.jobs.get_mut(&job) else {
            self.emit(Backend::Error(format!(
                "{job} is not authorized; nothing printed."
            )))
            .await;
            return;
        };
        if rec.printed || rec.finished.is_some() {
            // One-time rule: an issued item never prints twice.
            self.emit(Backend::Error(format!(
                "{job} was already issued; it cannot be printed again."
            )))
            .await;
            return;
        }
        let Some(setup) = self.cfg.printer.clone() else {
            self.emit(Backend::Error("No printer is configured.".into()))
                .await;
            return;
        };
        if self.port_busy {
            self.queued_print = Some(job);
            return;
        }
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
            self.finish(job, Finish::Void).await;
            return;
        };
        let Some(rec) = self.jobs.get_mut(&job) else {
            return;
        };
        let Some(bytes) = rec.indicium.clone() else {
            self.port = Some(port);
            return;
        };
        rec.printed = true;
        let label = match SignedIndicium::decode(&bytes) {
            Ok(ind) => label_for(&ind, &rec.label, &setup.profile),
            Err(e) => {
                self.port = Some(port);
                self.emit(Backend::Error(format!(
                    "Vendor's indicium is malformed: {e}"
                )))
                .await;
                self.finish(job, Finish::Void).await;
                return;
            }
        };
        // Printed rotated 180°: the indicium, at the label's top, prints last (docs/PRINTING.md).
        let opts = compiler::CompileOptions {
            chunk_bytes_max: self.cfg.stream.chunk_bytes_max,
            job_seq: job.0 as u32, // any value works; it only picks the job's process IDs
            layout: compiler::Layout::Rotated180,
        };
        let compiled = match compiler::compile_with(&label, &setup.profile, &opts) {
            Ok(j) => j,
            Err(e) => {
                self.port = Some(port);
                self.emit(Backend::Error(format!("Label does not compile: {e}")))
                    .await;
                self.finish(job, Finish::Void).await;
                return;
            }
        };
        let Some(sup) = &self.sup else {
            self.port = Some(port);
            return;
        };
        let link = sup.state.clone();
        self.port_busy = true;
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
        tokio::spawn(async move {
            let r = streamer::stream_job_async(
                port,
                compiled,
                link,
                ptx,
                cfg,
                Box::new(streamer::NoMilestones),
            )
            .await;
            forward.abort();
            let (port, outcome) = match r {
                Ok((port, outcome)) => (Some(port), outcome),
                Err(e) => {
                    tracing::error!(error = %e, "print task failed");
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
            let _ = tx.send(Done::Printed { job, port, outcome }).await;
        });
    }

    /// Sends the money step that ends `job`, once; later different asks are refused.
    async fn finish(&mut self, job: JobId, want: Finish) {
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::Error("Not signed in; nothing sent.".into()))
                .await;
            return;
        };
        let serial = if job.0 & VENDOR_JOB_BIT != 0 && !self.jobs.contains_key(&job) {
            // A piece from the vendor's history: only a refund can be asked for it.
            if want != Finish::Refund {
                return;
            }
            job.0 & !VENDOR_JOB_BIT
        } else {
            let Some(rec) = self.jobs.get_mut(&job) else {
                self.emit(Backend::Error(format!(
                    "{job} is unknown here; nothing sent."
                )))
                .await;
                return;
            };
            match rec.finished {
                // Already settled (the backend acts on the outcome itself): a no-op.
                Some(Finish::Commit) if want == Finish::Refund => {}
                Some(_) => return,
                None => {}
            }
            let Some(serial) = rec.piece_serial else {
                return; // never authorized: nothing to void
            };
            rec.finished = Some(want);
            serial
        };
        let (op, request_id) = {
            let name = match want {
                Finish::Commit => "commit",
                Finish::Void | Finish::VoidReachedPrinter => "void",
                Finish::Refund => "refund_request",
            };
            let id = match self.jobs.get_mut(&job) {
                Some(r) => *r.request_ids.entry(name).or_insert_with(rand::random),
                None => rand::random(),
            };
            (want, id)
        };
        let tx = self.done_tx.clone();
        let retry = self.cfg.money_retry_ms_max;
        tokio::spawn(async move {
            let result = send_retrying(sessions, retry, |s| {
                let now = client::wall_ms();
                match op {
                    Finish::Commit => s.commit_request(request_id, now, serial),
                    Finish::Void => s.void_request(request_id, now, serial, false),
                    Finish::VoidReachedPrinter => s.void_request(request_id, now, serial, true),
                    Finish::Refund => s.refund_request(request_id, now, serial),
                }
            })
            .await;
            let _ = tx
                .send(Done::Money {
                    job,
                    finish: op,
                    result,
                })
                .await;
        });
    }

    async fn on_done(&mut self, d: Done) {
        match d {
            Done::SignedIn(Ok((sup, session, balance))) => {
                self.link_task = Some(spawn_link_reports(sup.clone(), self.events.clone()));
                self.sup = Some(sup);
                self.emit(Backend::SignedIn {
                    clerk: session.clerk.clone(),
                    balance,
                })
                .await;
                self.reported_printer = None;
                let s = self.printer_status;
                self.set_printer(s).await;
            }
            Done::SignedIn(Err(reason)) => self.emit(Backend::SignInFailed { reason }).await,
            Done::Authorized { job, result } => match result {
                Ok(a) => {
                    if let Some(rec) = self.jobs.get_mut(&job) {
                        rec.piece_serial = Some(a.piece_serial);
                        rec.indicium = Some(a.indicium.clone());
                    }
                    self.emit(Backend::Balance(
                        Cents::new(a.registers.descending_cents).unwrap_or(Cents::ZERO),
                    ))
                    .await;
                    self.emit(Backend::Authorized { job }).await;
                }
                Err(reason) => {
                    if let Some(rec) = self.jobs.get_mut(&job) {
                        rec.finished = Some(Finish::Void);
                    }
                    self.emit(Backend::AuthorizeFailed { job, reason }).await;
                }
            },
            Done::Printed { job, port, outcome } => {
                self.port_busy = false;
                self.port = port;
                tracing::info!(%job, ?outcome, "print ended");
                self.emit(Backend::PrintOutcome { job, outcome }).await;
                let finish = match outcome {
                    JobOutcome::Completed { .. } => Finish::Commit,
                    _ if !outcome.indicium().on_paper() => Finish::Void,
                    _ => Finish::VoidReachedPrinter,
                };
                self.finish(job, finish).await;
                let status = match outcome {
                    JobOutcome::Faulted { fault, .. } => PrinterStatus::Fault(fault),
                    _ => PrinterStatus::Ready,
                };
                self.set_printer(status).await;
                if let Some(next) = self.queued_print.take() {
                    Box::pin(self.print(next)).await;
                }
            }
            Done::Money {
                job,
                finish,
                result,
            } => self.on_money(job, finish, result).await,
            Done::Polled { port, status } => {
                self.port_busy = false;
                if self.port.is_none() {
                    self.port = port;
                }
                self.set_printer(status).await;
                if let Some(next) = self.queued_print.take() {
                    self.print(next).await;
                }
            }
        }
    }

    async fn on_money(
        &mut self,
        job: JobId,
        finish: Finish,
        result: Result<wire::PieceDone, String>,
    ) {
        let amount = self.jobs.get(&job).map(|r| r.amount);
        match result {
            Ok(done) => {
                let balance = Cents::new(done.registers.descending_cents).unwrap_or(Cents::ZERO);
                tracing::info!(%job, piece = done.piece_serial, result = %done.result, "money step done");
                match (finish, done.result.as_str()) {
                    (Finish::Void, _) | (_, "voided") => {
                        self.emit(Backend::Voided {
                            job,
                            amount: amount.unwrap_or(Cents::ZERO),
                        })
                        .await
                    }
                    (Finish::VoidReachedPrinter | Finish::Refund, _) => {
                        self.emit(Backend::RefundChanged {
                            job,
                            state: RefundState::Requested,
                        })
                        .await
                    }
                    _ => {}
                }
                self.emit(Backend::Balance(balance)).await;
            }
            Err(reason) => {
                tracing::warn!(%job, ?finish, %reason, "money step failed");
                let what = match finish {
                    Finish::Commit => "recording the printed item",
                    Finish::Void | Finish::VoidReachedPrinter => "voiding the item",
                    Finish::Refund => "requesting the refund",
                };
                self.emit(Backend::Error(format!(
                    "{job}: {what} failed: {reason}. The vendor settles unfinished items when their authorization expires."
                )))
                .await;
            }
        }
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
) -> anyhow::Result<(SupervisorHandle, Session, Cents)> {
    let opts = HeadlessOptions {
        vendor: cfg.vendor,
        pinned: cfg.pinned,
        data_dir: cfg.terminal_dir.clone(),
        enroll_code: cfg.enroll_code.clone(),
        terminal_name: cfg.terminal_name.clone(),
        clerk: clerk.to_string(),
        report_interval_ms: 0,
    };
    let (sup, session) = headless::sign_in(endpoint, &opts, password).await?;
    let balance = session
        .balance()
        .await
        .map(|b| Cents::new(b.registers.descending_cents).unwrap_or(Cents::ZERO))
        .unwrap_or(Cents::ZERO);
    Ok((sup, session, balance))
}

/// Forwards the supervisor's link status to the UI: state changes at once, figures at most
/// every [`LINK_REPORT_INTERVAL_MS`]; a lost session is said in words.
fn spawn_link_reports(sup: SupervisorHandle, events: mpsc::Sender<Backend>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut status = sup.status.clone();
        let mut phase = sup.phase.clone();
        let mut last_state: Option<LinkState> = None;
        let mut last_sent = Instant::now() - Duration::from_secs(1);
        loop {
            tokio::select! {
                r = status.changed() => {
                    if r.is_err() { return; }
                    let s = status.borrow_and_update().clone();
                    let due = last_sent.elapsed() >= Duration::from_millis(LINK_REPORT_INTERVAL_MS);
                    if Some(s.state) != last_state || due {
                        last_state = Some(s.state);
                        last_sent = Instant::now();
                        if events.send(Backend::LinkChanged(s)).await.is_err() { return; }
                    }
                }
                r = phase.changed() => {
                    if r.is_err() { return; }
                    let p = phase.borrow_and_update().clone();
                    let msg = match p {
                        Phase::LoginRequired { reason } => Some(format!("The vendor ended this session ({reason}); sign in again.")),
                        Phase::Stopped { reason } if reason != "stopped" => Some(format!("Link to the vendor stopped: {reason}")),
                        _ => None,
                    };
                    if let Some(m) = msg
                        && events.send(Backend::Error(m)).await.is_err() {
                        return;
                    }
                }
            }
        }
    })
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
