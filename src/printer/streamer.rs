//! The streamer: writes a compiled [`Job`] to a serial printer, chunk by chunk, only while the
//! link allows printing, and stops it cleanly when the link lapses or the printer faults.
//!
//! Rules (docs/PRINTING.md §Streamer):
//! - The port is opened exclusively (TIOCEXCL + flock); no spool file is written.
//! - Before every chunk (≤ `chunk_bytes_max`) the link is checked; if it does not allow printing,
//!   no further job byte is written.
//! - Chunks are paced by the [`Pacer`] so the printer's receive buffer is never overrun.
//! - On lapse: the profile's cancel sequence (DLE DC4 fn 8 and its 37 25 00 reply, or NUL flush +
//!   ESC @), then feed, cut and "VOID" when the profile allows. `bytes_sent` counts job bytes only.
//! - Status (`DLE EOT`) is polled only at command boundaries.
//!
//! The decisions ([`Pacer`], [`decode_status`]) are plain functions over bytes and `Instant`s;
//! the blocking shell ([`stream_job`]) runs on its own thread.

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use tokio::sync::watch;

use super::compiler::{
    CLEAR_BUFFERS, INIT, Job, PROCESS_ID_COMMAND_BYTES, ProcessId, RESYNC_PROCESS_ID,
    band_height_px, cancel_bytes,
};
use super::profile::{ClearBuffer, FlowControl, Language, Parity, Profile};
use super::realtime::{Realtime, RealtimeMatcher};
use super::replies::{Reply, ReplyReader};
use super::zpl::{self, HostStatus, HostStatusReader};
use crate::link::LinkState;

/// Streamer limits. Units are in the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamConfig {
    /// Largest write between two link checks (chunks come from the compiler; this is checked).
    pub chunk_bytes_max: usize,
    /// A write that makes no progress for this long fails the job.
    pub write_timeout_ms: u64,
    /// Wait for a status reply beyond the time the printer needs to drain what is in flight.
    pub status_reply_timeout_ms: u64,
    /// Wait for 37 25 00 beyond the drain time.
    pub clear_reply_timeout_ms: u64,
    /// Poll `DLE EOT` after at least this many job bytes (at the next command boundary).
    pub status_poll_interval_bytes: usize,
    /// Most bytes in flight (written, not yet consumed by the printer); also capped by half the
    /// profile's receive buffer.
    pub lead_bytes_max: usize,
    /// While DSR is low (dtrdsr profiles), wait at most this long.
    pub dsr_wait_ms: u64,
    /// Wait for a process ID beyond the job's estimated print time (process-ID profiles).
    pub print_reply_timeout_ms: u64,
    /// While waiting for the end process ID, poll `DLE EOT` this often (paper out mid-print).
    pub print_status_poll_ms: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        StreamConfig {
            chunk_bytes_max: super::compiler::CHUNK_BYTES_MAX_DEFAULT,
            write_timeout_ms: 2000,
            status_reply_timeout_ms: 500,
            clear_reply_timeout_ms: 1000,
            status_poll_interval_bytes: 2048,
            lead_bytes_max: 512,
            dsr_wait_ms: 5000,
            print_reply_timeout_ms: 5000,
            print_status_poll_ms: 250,
        }
    }
}

/// Progress for the UI's bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Progress {
    pub bytes_sent: usize,
    pub bytes_total: usize,
}

impl Progress {
    /// Whole percent, 0..=100.
    pub fn percent(&self) -> u8 {
        if self.bytes_total == 0 {
            return 100;
        }
        (self.bytes_sent.min(self.bytes_total) * 100 / self.bytes_total) as u8
    }
}

/// What the printer reported or did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PrinterFault {
    PaperOut,
    CoverOpen,
    /// Offline for another reason (error, feed button).
    Offline,
    /// The device disappeared (unplugged, pty closed).
    PortVanished,
    /// A write made no progress within `write_timeout_ms`.
    WriteTimeout,
    /// No answer to `DLE EOT` within the timeout.
    StatusTimeout,
    /// DSR stayed low (dtrdsr) longer than `dsr_wait_ms`.
    DsrLow,
    /// A process-ID printer did not report the job printed within its print time plus
    /// `print_reply_timeout_ms`.
    PrintTimeout,
}

impl std::fmt::Display for PrinterFault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PrinterFault::PaperOut => "paper out",
            PrinterFault::CoverOpen => "cover open",
            PrinterFault::Offline => "printer offline",
            PrinterFault::PortVanished => "printer port vanished",
            PrinterFault::WriteTimeout => "write to printer timed out",
            PrinterFault::StatusTimeout => "printer did not answer a status query",
            PrinterFault::DsrLow => "printer not ready (DSR low)",
            PrinterFault::PrintTimeout => "printer did not report the label printed",
        })
    }
}

/// Whether the indicium is on paper, as far as the printer can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndiciumPaper {
    /// No indicium byte reached the port.
    NotSent,
    /// The process ID after the indicium's last row came back: it is on paper.
    Printed,
    /// Its bytes were accepted but the printer cannot say (no process-ID profile, or the clear
    /// was not confirmed): counted as on paper.
    AssumedPrinted,
    /// Its bytes were sent, its ID never came back and the printer confirmed the clear: not on
    /// paper.
    Cleared,
}

impl IndiciumPaper {
    /// Whether the indicium counts as printed (the counter charges for it).
    pub fn on_paper(self) -> bool {
        matches!(self, IndiciumPaper::Printed | IndiciumPaper::AssumedPrinted)
    }
}

/// A point in a job the counter's journal must hear of, in this order (some may be skipped:
/// a job without indicium has no indicium milestones; a stopped job ends early).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Milestone {
    /// The indicium's first byte that can put marks on paper is about to be written
    /// ([`super::compiler::Job::indicium_marks_at`]: a native symbol's print command, a raster
    /// indicium's first band). An `Err` from the observer stops the job before it: the
    /// indicium stays [`IndiciumPaper::NotSent`].
    IndiciumSending,
    /// The port accepted the indicium's last byte.
    IndiciumSent,
    /// The process ID after the indicium came back: it is on paper. (A raster indicium has the
    /// same ID after each band, so this comes once any of it printed: on paper either way.)
    IndiciumPrinted,
    /// The job's end process ID came back: all of it printed.
    EndPrinted,
}

/// A synchronous observer, called on the streaming thread; the streamer waits for it. The
/// counter fsyncs a journal record in it before the indicium's first byte goes out.
/// An `Err` from any call stops the job as a link lapse does (cancel, then the outcome says
/// where the indicium is); see [`AbortCause::Milestone`].
pub trait Milestones: Send {
    fn reached(&mut self, m: Milestone) -> Result<(), String>;
}

/// Observes nothing (tests, benches, tools).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMilestones;

impl Milestones for NoMilestones {
    fn reached(&mut self, _: Milestone) -> Result<(), String> {
        Ok(())
    }
}

/// Records every milestone (tests).
#[derive(Debug, Clone, Default)]
pub struct RecordMilestones(pub std::sync::Arc<std::sync::Mutex<Vec<Milestone>>>);

impl Milestones for RecordMilestones {
    fn reached(&mut self, m: Milestone) -> Result<(), String> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(m);
        Ok(())
    }
}

/// Why a job was stopped on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AbortCause {
    /// The link stopped allowing printing (lapse, closed, quit).
    Link,
    /// The milestone observer returned an error (e.g. the journal could not be written).
    Milestone,
}

/// How a job ended. `bytes_sent` is the exact count of job bytes written to the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobOutcome {
    /// Process-ID profiles: the end ID came back (everything printed). Others: every byte was
    /// accepted and the last status poll was clean.
    Completed {
        bytes_sent: usize,
        indicium: IndiciumPaper,
    },
    /// Stopped on purpose (link, milestone observer); the cancel was sent.
    Aborted {
        bytes_sent: usize,
        indicium: IndiciumPaper,
        /// The printer confirmed its buffers were cleared (37 25 00), or the NUL flush went out.
        cancel_confirmed: bool,
        void_printed: bool,
        cause: AbortCause,
    },
    /// The printer or port failed.
    Faulted {
        fault: PrinterFault,
        bytes_sent: usize,
        indicium: IndiciumPaper,
    },
}

impl JobOutcome {
    pub fn bytes_sent(&self) -> usize {
        match *self {
            JobOutcome::Completed { bytes_sent, .. }
            | JobOutcome::Aborted { bytes_sent, .. }
            | JobOutcome::Faulted { bytes_sent, .. } => bytes_sent,
        }
    }

    /// Where the indicium is.
    pub fn indicium(&self) -> IndiciumPaper {
        match *self {
            JobOutcome::Completed { indicium, .. }
            | JobOutcome::Aborted { indicium, .. }
            | JobOutcome::Faulted { indicium, .. } => indicium,
        }
    }
}

/// Errors before any job byte is written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    #[error("{path}: in use by another program (opened exclusively)")]
    Busy { path: String },
    #[error("{path}: cannot open: {message}")]
    Open { path: String, message: String },
    #[error(
        "{path}: profile {profile} wants DTR/DSR flow control but the port has no modem lines ({message}); use a profile with flow_control = \"none\" or a real serial port"
    )]
    NoModemLines {
        path: String,
        profile: String,
        message: String,
    },
}

/// Models how many bytes are in flight to the printer and when the next chunk may go.
/// Pure: time is passed in.
#[derive(Debug, Clone)]
pub struct Pacer {
    drain_bytes_per_s: f64,
    lead_bytes_max: usize,
    backlog: f64,
    at: Instant,
}

impl Pacer {
    pub fn new(drain_bytes_per_s: u32, lead_bytes_max: usize, now: Instant) -> Self {
        Pacer {
            drain_bytes_per_s: f64::from(drain_bytes_per_s.max(1)),
            lead_bytes_max: lead_bytes_max.max(1),
            backlog: 0.0,
            at: now,
        }
    }

    fn drain(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.backlog = (self.backlog - dt * self.drain_bytes_per_s).max(0.0);
        self.at = self.at.max(now);
    }

    /// Bytes written but not yet consumed, estimated.
    pub fn backlog_bytes(&mut self, now: Instant) -> usize {
        self.drain(now);
        self.backlog.ceil() as usize
    }

    /// When `len` more bytes can be written without exceeding the lead.
    pub fn ready_at(&mut self, now: Instant, len: usize) -> Instant {
        self.drain(now);
        let excess = self.backlog + len as f64 - self.lead_bytes_max as f64;
        if excess <= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(excess / self.drain_bytes_per_s)
        }
    }

    /// Time for everything in flight to be consumed.
    pub fn drain_time(&mut self, now: Instant) -> Duration {
        self.drain(now);
        Duration::from_secs_f64(self.backlog / self.drain_bytes_per_s)
    }

    pub fn on_sent(&mut self, now: Instant, len: usize) {
        self.drain(now);
        self.backlog += len as f64;
    }
}

/// What a status reply says, for `DLE EOT n`. `None`: not a status byte (shape 0xx1xx10).
/// What an automatic status back block (`GS a`, four bytes) says, if it stops printing:
/// cover open (1st byte bit 5), roll paper end (3rd byte bits 2–3), an unrecoverable error (2nd
/// byte bit 5). Offline alone (1st byte bit 3: paper fed by the button, an auto-recoverable
/// error such as a hot head) is not a fault: the printer carries on by itself.
/// docs/PRINTING.md §Replies.
pub fn decode_asb(block: [u8; 4]) -> Option<PrinterFault> {
    if block[0] & 0x20 != 0 {
        Some(PrinterFault::CoverOpen)
    } else if block[2] & 0x0c == 0x0c {
        Some(PrinterFault::PaperOut)
    } else if block[1] & 0x20 != 0 {
        Some(PrinterFault::Offline)
    } else {
        None
    }
}

pub fn decode_status(n: u8, reply: u8) -> Option<Option<PrinterFault>> {
    if reply & 0x93 != 0x12 {
        return None;
    }
    Some(match n {
        1 if reply & 0x08 != 0 => Some(PrinterFault::Offline),
        2 if reply & 0x04 != 0 => Some(PrinterFault::CoverOpen),
        2 if reply & 0x20 != 0 => Some(PrinterFault::PaperOut),
        2 if reply & 0x40 != 0 => Some(PrinterFault::Offline),
        4 if reply & 0x60 == 0x60 => Some(PrinterFault::PaperOut),
        _ => None,
    })
}

/// An open printer port.
pub struct PrinterPort {
    port: TTYPort,
    profile: Profile,
    path: String,
    /// Process IDs that arrived outside a job's own reading: held in the port's input while no
    /// counter had it open (a counter killed mid-job), or late after a job ended. Kept for the
    /// next [`resync`], at most [`PROCESS_IDS_KEPT_MAX`] (the newest win).
    heard_ids: Vec<ProcessId>,
}

impl std::fmt::Debug for PrinterPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrinterPort({}, {})", self.path, self.profile.id)
    }
}

impl PrinterPort {
    /// Open `path` exclusively with the profile's line settings.
    pub fn open(
        path: &Path,
        profile: &Profile,
        baud_override: Option<u32>,
    ) -> Result<Self, OpenError> {
        let p = path.display().to_string();
        let flow = match profile.serial.flow_control {
            FlowControl::XonXoff => serialport::FlowControl::Software,
            FlowControl::RtsCts => serialport::FlowControl::Hardware,
            // DTR/DSR is done by hand below.
            _ => serialport::FlowControl::None,
        };
        let builder = serialport::new(&p, baud_override.unwrap_or(profile.serial.baud))
            .data_bits(if profile.serial.data_bits == 7 {
                serialport::DataBits::Seven
            } else {
                serialport::DataBits::Eight
            })
            .parity(match profile.serial.parity {
                Parity::Odd => serialport::Parity::Odd,
                Parity::Even => serialport::Parity::Even,
                _ => serialport::Parity::None,
            })
            .stop_bits(if profile.serial.stop_bits == 2 {
                serialport::StopBits::Two
            } else {
                serialport::StopBits::One
            })
            .flow_control(flow)
            .timeout(Duration::from_millis(50));
        let mut port = TTYPort::open(&builder).map_err(|e| {
            let busy = matches!(e.kind(), serialport::ErrorKind::NoDevice)
                || e.description.contains("EWOULDBLOCK")
                || e.description.contains("EBUSY")
                || e.description.contains("EAGAIN")
                || e.description.to_lowercase().contains("busy")
                || e.description.to_lowercase().contains("would block");
            if busy {
                OpenError::Busy { path: p.clone() }
            } else {
                OpenError::Open {
                    path: p.clone(),
                    message: e.to_string(),
                }
            }
        })?;
        if profile.serial.flow_control == FlowControl::DtrDsr {
            port.write_data_terminal_ready(true)
                .and_then(|_| port.read_data_set_ready())
                .map_err(|e| OpenError::NoModemLines {
                    path: p.clone(),
                    profile: profile.id.clone(),
                    message: e.to_string(),
                })?;
        }
        let mut port = PrinterPort {
            port,
            profile: profile.clone(),
            path: p,
            heard_ids: Vec::new(),
        };
        // What waited in the input is not thrown away: a process ID among it may be the only
        // word that a dead counter's indicium printed (docs/PRINTING.md §Resync).
        let _ = port.keep_stray_replies();
        Ok(port)
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn raw_fd(&self) -> i32 {
        self.port.as_raw_fd()
    }

    /// Asks an idle printer how it is (`DLE EOT 1`, then `2` and `4`). `Ok(true)`: ready;
    /// `Ok(false)`: the profile has no real-time status, so nothing is known; `Err`: the fault.
    /// Call only between jobs: replies are read straight off the port.
    pub fn status_now(&mut self, reply_timeout: Duration) -> Result<bool, PrinterFault> {
        if self.profile.language == Language::Zpl {
            let (_, fault) = self.write_counted(zpl::HOST_STATUS, reply_timeout);
            if let Some(f) = fault {
                return Err(f);
            }
            return match self.read_host_status(Instant::now() + reply_timeout)? {
                Some(h) => h.fault().map_or(Ok(true), Err),
                None => Err(PrinterFault::StatusTimeout),
            };
        }
        if !self.profile.status.dle_eot {
            return Ok(false);
        }
        self.keep_stray_replies()?;
        // Ask all three, then report the most specific cause: cover/paper before "offline".
        let mut faults = Vec::with_capacity(3);
        for n in [2u8, 4, 1] {
            let (_, fault) = self.write_counted(&[0x10, 0x04, n], reply_timeout);
            if let Some(f) = fault {
                return Err(f);
            }
            let Some(reply) = self.read_status_reply(Instant::now() + reply_timeout)? else {
                return Err(PrinterFault::StatusTimeout);
            };
            match decode_status(n, reply) {
                Some(None) => {}
                Some(Some(f)) => faults.push(f),
                None => return Err(PrinterFault::StatusTimeout),
            }
        }
        match faults.first() {
            Some(f) => Err(*f),
            None => Ok(true),
        }
    }

    /// Read what waits in the input (bounded: [`STRAY_READ_BYTES_MAX`]) and keep the process
    /// IDs among it; status bytes and anything else there are stale and dropped.
    fn keep_stray_replies(&mut self) -> Result<(), PrinterFault> {
        let mut reader = ReplyReader::new();
        let mut buf = [0u8; READ_BYTES_MAX];
        let mut read = 0usize;
        while read < STRAY_READ_BYTES_MAX {
            let n = self.read_available(&mut buf)?;
            if n == 0 {
                break;
            }
            read += n;
            let mut replies = Vec::new();
            reader.push_all(&buf[..n], &mut replies);
            for r in replies {
                if let Reply::ProcessId(id) = r {
                    self.hear_id(id);
                }
            }
        }
        Ok(())
    }

    fn hear_id(&mut self, id: ProcessId) {
        if self.heard_ids.len() >= PROCESS_IDS_KEPT_MAX {
            self.heard_ids.remove(0);
        }
        self.heard_ids.push(id);
    }

    /// The next `DLE EOT` reply byte, keeping process IDs that arrive before it; `None` at
    /// the deadline.
    fn read_status_reply(&mut self, deadline: Instant) -> Result<Option<u8>, PrinterFault> {
        let mut reader = ReplyReader::new();
        loop {
            let got = self.read_until(1, deadline)?;
            let Some(&b) = got.first() else {
                return Ok(None);
            };
            let mut replies = Vec::new();
            reader.push(b, &mut replies);
            for r in replies {
                match r {
                    Reply::Status(s) => return Ok(Some(s)),
                    Reply::ProcessId(id) => self.hear_id(id),
                    _ => {}
                }
            }
        }
    }

    /// ZPL: the next whole `~HS` answer; `None` at the deadline.
    fn read_host_status(&mut self, deadline: Instant) -> Result<Option<HostStatus>, PrinterFault> {
        let mut reader = HostStatusReader::new();
        let mut got = Vec::new();
        loop {
            let bytes = self.read_until(1, deadline)?;
            if bytes.is_empty() {
                return Ok(None);
            }
            reader.push_all(&bytes, &mut got);
            if let Some(h) = got.pop() {
                return Ok(Some(h));
            }
        }
    }

    /// Process IDs heard outside a job since the last call (oldest first).
    pub fn take_heard_ids(&mut self) -> Vec<ProcessId> {
        std::mem::take(&mut self.heard_ids)
    }

    /// Write everything or fail; returns bytes written before a failure too.
    pub(crate) fn write_counted(
        &mut self,
        bytes: &[u8],
        timeout: Duration,
    ) -> (usize, Option<PrinterFault>) {
        let mut done = 0;
        let mut last_progress = Instant::now();
        while done < bytes.len() {
            match self.port.write(&bytes[done..]) {
                Ok(0) => return (done, Some(PrinterFault::PortVanished)),
                Ok(n) => {
                    done += n;
                    last_progress = Instant::now();
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted =>
                {
                    if last_progress.elapsed() >= timeout {
                        return (done, Some(PrinterFault::WriteTimeout));
                    }
                }
                Err(_) => return (done, Some(PrinterFault::PortVanished)),
            }
        }
        (done, None)
    }

    /// Read until `want` bytes arrived or the deadline passed.
    pub(crate) fn read_until(
        &mut self,
        want: usize,
        deadline: Instant,
    ) -> Result<Vec<u8>, PrinterFault> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while out.len() < want && Instant::now() < deadline {
            match self.port.read(&mut buf[..(want - out.len()).min(64)]) {
                Ok(0) => return Err(PrinterFault::PortVanished),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(PrinterFault::PortVanished),
            }
        }
        Ok(out)
    }

    /// Read what has already arrived, without waiting (at most `buf.len()` bytes).
    pub(crate) fn read_available(&mut self, buf: &mut [u8]) -> Result<usize, PrinterFault> {
        let ready = match self.port.bytes_to_read() {
            Ok(n) => n as usize,
            Err(_) => return Err(PrinterFault::PortVanished),
        };
        if ready == 0 {
            return Ok(0);
        }
        let want = ready.min(buf.len());
        match self.port.read(&mut buf[..want]) {
            Ok(0) => Err(PrinterFault::PortVanished),
            Ok(n) => Ok(n),
            Err(e)
                if e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted =>
            {
                Ok(0)
            }
            Err(_) => Err(PrinterFault::PortVanished),
        }
    }

    /// Read until `pattern` appears (other bytes are stray status replies) or the deadline.
    pub(crate) fn read_pattern(
        &mut self,
        pattern: &[u8],
        deadline: Instant,
    ) -> Result<bool, PrinterFault> {
        let mut seen: Vec<u8> = Vec::new();
        loop {
            let got = self.read_until(1, deadline)?;
            if got.is_empty() {
                return Ok(false);
            }
            seen.extend_from_slice(&got);
            if seen.ends_with(pattern) {
                return Ok(true);
            }
            if seen.len() > 64 {
                seen.drain(..seen.len() - pattern.len());
            }
        }
    }
}

/// Status replies kept until a query takes them; beyond this the oldest are dropped.
pub const STATUS_REPLIES_KEPT_MAX: usize = 64;
/// Process IDs remembered per job or resync (ours and strays), in arrival order.
pub const PROCESS_IDS_KEPT_MAX: usize = 64;
/// Most bytes read from the port in one pump.
const READ_BYTES_MAX: usize = 256;
/// Most bytes read when looking through what waited in the port's input between jobs.
const STRAY_READ_BYTES_MAX: usize = 4096;
/// How long a wait sleeps when nothing has arrived; also the link-check period while waiting.
const IDLE_POLL_MS: u64 = 2;

/// Replies the printer owes for what was sent: job data can contain `DLE EOT n` or the clear
/// pattern by accident, and the printer answers those too (they are real-time).
#[derive(Debug, Default)]
struct Owed {
    matcher: RealtimeMatcher,
    status: usize,
    clears: usize,
}

impl Owed {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match self.matcher.push(b) {
                Some(Realtime::Status(_)) => self.status += 1,
                Some(Realtime::ClearBuffers) => self.clears += 1,
                None => {}
            }
        }
    }
}

/// Everything the printer said, sorted by the one [`ReplyReader`].
#[derive(Debug, Default)]
struct Inbox {
    reader: ReplyReader,
    statuses: std::collections::VecDeque<u8>,
    clears: usize,
    ids: Vec<ProcessId>,
    asb_last: Option<[u8; 4]>,
    /// The first fault an automatic status back block reported (paper end, cover open), noticed
    /// without a query; the run stops at its next pump.
    asb_fault: Option<PrinterFault>,
    garbled_bytes: u64,
    /// ZPL: `~HS` answers (oldest first, at most [`STATUS_REPLIES_KEPT_MAX`]).
    host_reader: HostStatusReader,
    host_statuses: std::collections::VecDeque<HostStatus>,
}

impl Inbox {
    /// Read what has arrived; returns the process IDs among it, in order.
    fn pump(&mut self, port: &mut PrinterPort) -> Result<Vec<ProcessId>, PrinterFault> {
        let mut buf = [0u8; READ_BYTES_MAX];
        let n = port.read_available(&mut buf)?;
        if port.profile.language == Language::Zpl {
            // A ZPL printer answers only `~HS`; nothing it sends is a process ID.
            let mut got = Vec::new();
            self.host_reader.push_all(&buf[..n], &mut got);
            for h in got {
                if self.host_statuses.len() >= STATUS_REPLIES_KEPT_MAX {
                    self.host_statuses.pop_front();
                }
                self.host_statuses.push_back(h);
            }
            return Ok(Vec::new());
        }
        let mut replies = Vec::new();
        self.reader.push_all(&buf[..n], &mut replies);
        let mut ids = Vec::new();
        for r in replies {
            match r {
                Reply::Status(b) => {
                    if self.statuses.len() >= STATUS_REPLIES_KEPT_MAX {
                        self.statuses.pop_front();
                    }
                    self.statuses.push_back(b);
                }
                Reply::ClearConfirmed => self.clears += 1,
                Reply::ProcessId(id) => {
                    if self.ids.len() < PROCESS_IDS_KEPT_MAX {
                        self.ids.push(id);
                    }
                    ids.push(id);
                }
                Reply::Asb(a) => {
                    self.asb_last = Some(a);
                    if self.asb_fault.is_none() {
                        self.asb_fault = decode_asb(a);
                    }
                }
                Reply::Garbled(_) => self.garbled_bytes += 1,
                #[allow(unreachable_patterns)]
                _ => self.garbled_bytes += 1,
            }
        }
        Ok(ids)
    }
}

struct Run<'a> {
    port: &'a mut PrinterPort,
    job: &'a Job,
    cfg: StreamConfig,
    pacer: Pacer,
    owed: Owed,
    inbox: Inbox,
    sent: usize,
    progress: &'a watch::Sender<Progress>,
    milestones: &'a mut dyn Milestones,
    /// The indicium's process ID came back (or the end ID did, which implies it).
    indicium_printed: bool,
    end_printed: bool,
    /// The indicium's process ID went out whole (its own command, or the marker sent before a
    /// cancel), so its absence after a confirmed clear means "not printed".
    indicium_pid_sent: bool,
    /// The command cut off at `sent` was NUL-finished (before the marker).
    command_finished: bool,
    /// At the abort, every printable indicium byte sent was followed by an ID that went out.
    indicium_covered: bool,
    milestone_failed: bool,
}

/// Stream `job` to `port`. Blocking; run it on its own thread (see [`spawn_job`]).
///
/// `milestones` hears [`Milestone`]s on this thread, synchronously.
pub fn stream_job(
    port: &mut PrinterPort,
    job: &Job,
    link: &watch::Receiver<LinkState>,
    progress: &watch::Sender<Progress>,
    cfg: &StreamConfig,
    milestones: &mut dyn Milestones,
) -> JobOutcome {
    let profile = port.profile.clone();
    let lead = cfg
        .lead_bytes_max
        .min(profile.receive_buffer_bytes as usize / 2)
        .max(cfg.chunk_bytes_max);
    let mut run = Run {
        pacer: Pacer::new(profile.sustained_bytes_per_s(), lead, Instant::now()),
        port,
        job,
        cfg: *cfg,
        owed: Owed::default(),
        inbox: Inbox::default(),
        sent: 0,
        progress,
        milestones,
        indicium_printed: false,
        end_printed: false,
        indicium_pid_sent: false,
        command_finished: false,
        indicium_covered: false,
        milestone_failed: false,
    };
    run.publish();
    if profile.language == Language::Zpl
        && let Some(fault) = run.await_no_label_held()
    {
        // Nothing of this job was sent; a label the printer still holds is left alone.
        return JobOutcome::Faulted {
            fault,
            bytes_sent: 0,
            indicium: IndiciumPaper::NotSent,
        };
    }
    let mut since_poll = 0usize;
    for chunk in &job.chunks {
        if let Err(f) = run.pump() {
            return run.fault(f);
        }
        if run.milestone_failed {
            return run.abort(AbortCause::Milestone);
        }
        if !link.borrow().allows_printing() {
            return run.abort(AbortCause::Link);
        }
        // Status between commands only (docs/PRINTING.md §Printer facts: never inside another command).
        if has_status_query(&profile)
            && since_poll >= cfg.status_poll_interval_bytes
            && job.is_boundary(run.sent)
        {
            since_poll = 0;
            if let Some(fault) = run.poll_status() {
                return run.fault(fault);
            }
        }
        let bytes = &job.bytes[chunk.start..chunk.end];
        debug_assert!(bytes.len() <= cfg.chunk_bytes_max.max(1));
        if let Some(fault) = run.wait_turn(bytes.len(), link) {
            return run.fault(fault);
        }
        if !link.borrow().allows_printing() {
            return run.abort(AbortCause::Link);
        }
        // The journal hears of the indicium right before its first byte that can mark paper
        // (after the pacer's wait, so a counter killed while waiting is known to have sent
        // none of it), and may refuse it.
        if job.indicium_marks_at == Some(chunk.start) {
            // ZPL: `^XZ` is what prints; a printer out of paper or open would hold the closed
            // label and print it later, unsupervised. Ask first; a fault cancels the format.
            if profile.language == Language::Zpl
                && let Some(fault) = run.poll_status()
            {
                return run.fault(fault);
            }
            if let Err(e) = run.milestones.reached(Milestone::IndiciumSending) {
                tracing::warn!(error = %e, "milestone observer refused the indicium");
                return run.abort(AbortCause::Milestone);
            }
            // The journal's fsync took time: a lapse meanwhile still keeps the indicium back.
            if !link.borrow().allows_printing() {
                return run.abort(AbortCause::Link);
            }
        }
        let (n, fault) = run
            .port
            .write_counted(bytes, Duration::from_millis(cfg.write_timeout_ms));
        run.owed.feed(&bytes[..n]);
        run.pacer.on_sent(Instant::now(), n);
        run.sent += n;
        since_poll += n;
        run.publish();
        if let Some(f) = fault {
            return run.fault(f);
        }
        // A banded raster indicium's first bands may be on paper (their process IDs back,
        // `IndiciumPrinted`) before its last byte is sent: printed already says more than
        // sent, and the journal takes milestones only in order.
        if job.indicium.as_ref().is_some_and(|r| r.end == run.sent) && !run.indicium_printed {
            run.notify(Milestone::IndiciumSent);
        }
        if job
            .indicium_pid
            .is_some_and(|m| run.sent >= m.offset + PROCESS_ID_COMMAND_BYTES)
        {
            run.indicium_pid_sent = true;
        }
    }
    if profile.language == Language::Zpl {
        // The format is closed: it prints whatever the link does now (docs/PRINTING.md §ZPL).
        return run.await_format();
    }
    // A last status check so a paper-out at the end is not reported as success.
    if profile.status.dle_eot
        && let Some(fault) = run.poll_status()
    {
        return run.fault(fault);
    }
    if job.end_pid.is_some() {
        return run.await_end(link);
    }
    JobOutcome::Completed {
        bytes_sent: run.sent,
        indicium: run.indicium_paper(false),
    }
}

impl Run<'_> {
    fn publish(&self) {
        self.progress.send_replace(Progress {
            bytes_sent: self.sent,
            bytes_total: self.job.bytes.len(),
        });
    }

    fn notify(&mut self, m: Milestone) {
        if let Err(e) = self.milestones.reached(m) {
            tracing::warn!(error = %e, milestone = ?m, "milestone observer failed; stopping the job");
            self.milestone_failed = true;
        }
    }

    /// Read what the printer sent and act on process IDs; a fault pushed by automatic status
    /// back (paper end, cover open) comes out as an error, as a vanished port does.
    fn pump(&mut self) -> Result<(), PrinterFault> {
        self.pump_replies()?;
        match self.inbox.asb_fault {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Read what the printer sent and act on process IDs (the clear and status waits: an ASB
    /// fault is already being handled there).
    fn pump_replies(&mut self) -> Result<(), PrinterFault> {
        for id in self.inbox.pump(self.port)? {
            let ind = self.job.indicium_pid.map(|m| m.id);
            let end = self.job.end_pid.map(|m| m.id);
            if Some(id) == ind && !self.indicium_printed {
                self.indicium_printed = true;
                self.notify(Milestone::IndiciumPrinted);
            }
            if Some(id) == end && !self.end_printed {
                // A printer that could not send keeps only its latest ID: the end implies the
                // indicium.
                if ind.is_some() && !self.indicium_printed {
                    self.indicium_printed = true;
                    self.notify(Milestone::IndiciumPrinted);
                }
                self.end_printed = true;
                self.notify(Milestone::EndPrinted);
            }
        }
        Ok(())
    }

    /// Pump until `done` or the deadline; `Ok(done)`.
    fn wait_replies(
        &mut self,
        deadline: Instant,
        done: impl Fn(&Self) -> bool,
    ) -> Result<bool, PrinterFault> {
        loop {
            self.pump_replies()?;
            if done(self) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(IDLE_POLL_MS)));
        }
    }

    /// (now, the deadline for the job to print — drain time + estimated print time × 1.5 +
    /// `print_reply_timeout_ms` —, the status poll period) once every byte is out.
    fn print_deadline(&mut self) -> (Instant, Instant, Duration) {
        let now = Instant::now();
        let print_s = f64::from(self.job.paper_rows_estimate)
            / self.port.profile.engine_rows_per_s().max(1.0);
        let deadline = now
            + self.pacer.drain_time(now)
            + Duration::from_secs_f64(print_s * 1.5)
            + Duration::from_millis(self.cfg.print_reply_timeout_ms);
        let poll_every = Duration::from_millis(self.cfg.print_status_poll_ms.max(IDLE_POLL_MS));
        (now, deadline, poll_every)
    }

    /// All bytes are out: wait for the end process ID while the printer prints, watching the
    /// link (a lapse cancels what has not printed) and polling status (paper out mid-print).
    fn await_end(&mut self, link: &watch::Receiver<LinkState>) -> JobOutcome {
        let (now, deadline, poll_every) = self.print_deadline();
        let mut next_poll = now + poll_every;
        loop {
            if let Err(f) = self.pump() {
                return self.fault(f);
            }
            if self.end_printed {
                return JobOutcome::Completed {
                    bytes_sent: self.sent,
                    indicium: self.indicium_paper(false),
                };
            }
            if self.milestone_failed {
                return self.abort(AbortCause::Milestone);
            }
            if !link.borrow().allows_printing() {
                return self.abort(AbortCause::Link);
            }
            let now = Instant::now();
            if now >= deadline {
                return self.fault(PrinterFault::PrintTimeout);
            }
            if self.port.profile.status.dle_eot && now >= next_poll {
                next_poll = now + poll_every;
                if let Some(f) = self.poll_status() {
                    return self.fault(f);
                }
                continue;
            }
            std::thread::sleep(Duration::from_millis(IDLE_POLL_MS));
        }
    }

    /// Where the indicium is, from what was sent, what came back and whether the printer
    /// confirmed clearing the rest (`clear_confirmed`: its 37 25 00 arrived).
    fn indicium_paper(&self, clear_confirmed: bool) -> IndiciumPaper {
        let (Some(r), Some(marks_at)) = (&self.job.indicium, self.job.indicium_marks_at) else {
            return IndiciumPaper::NotSent;
        };
        if self.port.profile.language == Language::Zpl {
            // `marks_at` is the format's `^XZ`: before all of it went out the format is not
            // closed, and an unclosed format never prints (the next job's `~JA` or the
            // abort's drops it).
            return if self.sent <= marks_at {
                IndiciumPaper::NotSent
            } else if self.sent < r.end {
                IndiciumPaper::Cleared
            } else if self.indicium_printed {
                IndiciumPaper::Printed
            } else {
                IndiciumPaper::AssumedPrinted
            };
        }
        // Before its printing command nothing of it can be on paper (a native symbol's store).
        if self.sent <= marks_at {
            return IndiciumPaper::NotSent;
        }
        if self.indicium_printed {
            return IndiciumPaper::Printed;
        }
        if clear_confirmed && self.port.profile.status.process_id {
            // Its ID went out after everything of it that could print, and never came back:
            // the clear took the indicium with it.
            if self.indicium_pid_sent || self.indicium_covered {
                return IndiciumPaper::Cleared;
            }
            // A native symbol prints on its last command; without it nothing of it printed.
            if self.job.indicium_native && self.sent < r.end {
                return IndiciumPaper::Cleared;
            }
        }
        IndiciumPaper::AssumedPrinted
    }

    /// Sleep until the pacer allows `len` bytes (and DSR is up on dtrdsr profiles), waking
    /// early when the link changes so a lapse is acted on at once.
    fn wait_turn(&mut self, len: usize, link: &watch::Receiver<LinkState>) -> Option<PrinterFault> {
        let dsr_deadline = Instant::now() + Duration::from_millis(self.cfg.dsr_wait_ms);
        loop {
            if !link.borrow().allows_printing() {
                return None;
            }
            if let Err(f) = self.pump() {
                return Some(f);
            }
            let now = Instant::now();
            let at = self.pacer.ready_at(now, len);
            if at > now {
                std::thread::sleep((at - now).min(Duration::from_millis(IDLE_POLL_MS)));
                continue;
            }
            if self.port.profile.serial.flow_control != FlowControl::DtrDsr {
                return None;
            }
            match self.port.port.read_data_set_ready() {
                Ok(true) => return None,
                Ok(false) if Instant::now() < dsr_deadline => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Ok(false) => return Some(PrinterFault::DsrLow),
                Err(_) => return Some(PrinterFault::PortVanished),
            }
        }
    }

    /// DLE EOT 1, then 2 when offline (ZPL: `~HS`). `Some(fault)` if the printer is not fit
    /// to go on.
    fn poll_status(&mut self) -> Option<PrinterFault> {
        if self.port.profile.language == Language::Zpl {
            return match self.host_status() {
                Ok(h) => h.fault(),
                Err(f) => Some(f),
            };
        }
        let first = match self.query(1) {
            Ok(r) => r,
            Err(f) => return Some(f),
        };
        match decode_status(1, first) {
            Some(None) => None,
            Some(Some(_)) | None => match self.query(2) {
                Ok(r) => Some(
                    decode_status(2, r)
                        .flatten()
                        .unwrap_or(PrinterFault::Offline),
                ),
                Err(f) => Some(f),
            },
        }
    }

    fn query(&mut self, n: u8) -> Result<u8, PrinterFault> {
        let q = [0x10, 0x04, n];
        let (w, fault) = self
            .port
            .write_counted(&q, Duration::from_millis(self.cfg.write_timeout_ms));
        if let Some(f) = fault {
            return Err(f);
        }
        self.owed.feed(&q[..w]);
        let now = Instant::now();
        self.pacer.on_sent(now, w);
        let deadline = now
            + self.pacer.drain_time(now)
            + Duration::from_millis(self.cfg.status_reply_timeout_ms);
        // Every status reply owed so far, ours last.
        let want = self.owed.status.max(1);
        if !self.wait_replies(deadline, |r| r.inbox.statuses.len() >= want)? {
            return Err(PrinterFault::StatusTimeout);
        }
        let answer = self.inbox.statuses[want - 1];
        self.inbox.statuses.drain(..want);
        self.owed.status = 0;
        Ok(answer)
    }

    /// Before a cancel: if the indicium went (partly) out but its process ID did not, send the
    /// ID now, so its reply — or its absence once the clear is confirmed — says whether what
    /// was sent printed. Stopped inside a command (a raster band) with at most
    /// `chunk_bytes_max` of it left, NULs finish it first (the rest of the band prints white).
    fn mark_indicium(&mut self) -> Result<(), PrinterFault> {
        let (Some(r), Some(mark)) = (self.job.indicium.as_ref(), self.job.indicium_pid) else {
            return Ok(());
        };
        let native_unfinished = self.job.indicium_native && self.sent < r.end;
        // Finishing a long band would delay the clear while the engine keeps printing: then
        // clear at once and count the indicium as printed (AssumedPrinted).
        let rest = self.job.remaining_in_command(self.sent);
        if self.job.indicium_marks_at.is_none_or(|at| self.sent <= at) || self.indicium_pid_sent {
            return Ok(());
        }
        if native_unfinished || rest > self.cfg.chunk_bytes_max && self.sent < r.end {
            // Nothing printable is unmarked: a native symbol prints on its last command; a
            // raster band cut off never completes, and every complete band before it has the
            // indicium's ID after it.
            self.indicium_covered = true;
            return Ok(());
        }
        let mut cmd = vec![0u8; self.job.remaining_in_command(self.sent)];
        self.command_finished = true;
        cmd.extend_from_slice(&mark.id.command());
        let (n, fault) = self
            .port
            .write_counted(&cmd, Duration::from_millis(self.cfg.write_timeout_ms));
        self.owed.feed(&cmd[..n]);
        self.pacer.on_sent(Instant::now(), n);
        match fault {
            Some(f) => Err(f),
            None => {
                self.indicium_pid_sent = true;
                Ok(())
            }
        }
    }

    /// Throw away what the printer holds. `Ok((cancel_done, printer_confirmed))`: the cancel
    /// went out as the profile says (confirmed, or the NUL flush written), and whether the
    /// printer itself confirmed the clear (37 25 00).
    fn cancel(&mut self) -> Result<(bool, bool), PrinterFault> {
        let profile = self.port.profile.clone();
        if profile.language == Language::Zpl {
            return self.cancel_zpl();
        }
        let timeout = Duration::from_millis(self.cfg.write_timeout_ms);
        self.mark_indicium()?;
        let bytes = cancel_bytes(&profile, self.job, self.sent);
        let (n, fault) = self.port.write_counted(&bytes, timeout);
        self.owed.feed(&bytes[..n]);
        if let Some(f) = fault {
            return Err(f);
        }
        self.pacer.on_sent(Instant::now(), bytes.len());
        if profile.clear_buffer != ClearBuffer::DleDc4 {
            return Ok((true, false));
        }
        let deadline = |s: &mut Self| {
            let now = Instant::now();
            now + s.pacer.drain_time(now) + Duration::from_millis(s.cfg.clear_reply_timeout_ms)
        };
        let want = self.owed.clears;
        let d = deadline(self);
        if self.wait_replies(d, |r| r.inbox.clears >= want)? {
            return Ok((true, true));
        }
        // Still silent: finish a half-received command with NULs, then ask again (receiptline).
        let nuls = if self.command_finished {
            0
        } else {
            self.job.remaining_in_command(self.sent)
        };
        let mut retry = vec![0u8; nuls];
        retry.extend_from_slice(&CLEAR_BUFFERS);
        let (n, fault) = self.port.write_counted(&retry, timeout);
        self.owed.feed(&retry[..n]);
        if let Some(f) = fault {
            return Err(f);
        }
        self.pacer.on_sent(Instant::now(), retry.len());
        let want = self.owed.clears;
        let d = deadline(self);
        let ok = self.wait_replies(d, |r| r.inbox.clears >= want)?;
        Ok((ok, ok))
    }

    fn abort(&mut self, cause: AbortCause) -> JobOutcome {
        let (cancel_confirmed, printer_confirmed) = match self.cancel() {
            Ok(c) => c,
            Err(fault) => {
                return JobOutcome::Faulted {
                    fault,
                    bytes_sent: self.sent,
                    indicium: self.indicium_paper(false),
                };
            }
        };
        let mut void_printed = false;
        if self.port.profile.void_on_abort && cancel_confirmed {
            let v = self.job.void_label.clone();
            let (n, fault) = self
                .port
                .write_counted(&v, Duration::from_millis(self.cfg.write_timeout_ms));
            void_printed = fault.is_none() && n == v.len();
        }
        // Replies that were on their way are read before deciding.
        let _ = self.pump();
        JobOutcome::Aborted {
            bytes_sent: self.sent,
            indicium: self.indicium_paper(printer_confirmed),
            cancel_confirmed,
            void_printed,
            cause,
        }
    }

    fn fault(&mut self, fault: PrinterFault) -> JobOutcome {
        // Best effort: a job that resumes when paper is reloaded would print value unsupervised.
        let mut printer_confirmed = false;
        if !matches!(
            fault,
            PrinterFault::PortVanished | PrinterFault::WriteTimeout
        ) && let Ok((_, confirmed)) = self.cancel()
        {
            printer_confirmed = confirmed;
        }
        JobOutcome::Faulted {
            fault,
            bytes_sent: self.sent,
            indicium: self.indicium_paper(printer_confirmed),
        }
    }
}

/// Run [`stream_job`] on its own thread; progress is published on the returned receiver.
pub fn spawn_job(
    mut port: PrinterPort,
    job: Job,
    link: watch::Receiver<LinkState>,
    cfg: StreamConfig,
    mut milestones: Box<dyn Milestones>,
) -> (
    JoinHandle<(PrinterPort, JobOutcome)>,
    watch::Receiver<Progress>,
) {
    let (tx, rx) = watch::channel(Progress {
        bytes_sent: 0,
        bytes_total: job.bytes.len(),
    });
    let handle = std::thread::spawn(move || {
        let outcome = stream_job(&mut port, &job, &link, &tx, &cfg, milestones.as_mut());
        (port, outcome)
    });
    (handle, rx)
}

/// [`stream_job`] for async callers: runs on tokio's blocking pool; progress goes to `progress`.
pub async fn stream_job_async(
    mut port: PrinterPort,
    job: Job,
    link: watch::Receiver<LinkState>,
    progress: watch::Sender<Progress>,
    cfg: StreamConfig,
    mut milestones: Box<dyn Milestones>,
) -> Result<(PrinterPort, JobOutcome), tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let outcome = stream_job(&mut port, &job, &link, &progress, &cfg, milestones.as_mut());
        (port, outcome)
    })
    .await
}

/// What [`resync`] did and saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResyncReport {
    /// `DLE DC4 fn 8` was confirmed (37 25 00); false on `nul_init` profiles.
    pub clear_confirmed: bool,
    /// NULs sent to finish a half-received command.
    pub nul_bytes: usize,
    /// Process IDs that came back other than the resync's own, in arrival order: an earlier
    /// job's IDs whose data printed before the clear — first those the port heard before the
    /// resync, then those read during it (at most [`PROCESS_IDS_KEPT_MAX`] of each).
    pub earlier_ids: Vec<ProcessId>,
    /// Process-ID profiles: the resync's own ID ([`RESYNC_PROCESS_ID`]) came back, so nothing
    /// sent before it is still waiting to print. Always false on other profiles.
    pub settled: bool,
}

/// NULs that finish any command Frank's compiler emits for `profile`: its longest is a raster
/// band (header + band rows × the widest row) or the native Data Matrix store command, whose
/// payload Frank keeps under [`RESYNC_NUL_BYTES_MIN`].
pub fn resync_nul_bytes(profile: &Profile) -> usize {
    let stride = profile.media_width_px.div_ceil(8) as usize;
    let band = 8 + band_height_px(profile, stride) as usize * stride;
    band.max(RESYNC_NUL_BYTES_MIN)
}

/// Floor of [`resync_nul_bytes`]: covers a `GS ( k` store of an indicium payload (Frank's are a
/// few hundred bytes) with its header.
pub const RESYNC_NUL_BYTES_MIN: usize = 1024;

/// What [`resync`] does with what the printer still holds from a counter that stopped mid-job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResyncMode {
    /// Clear it first (`dle_dc4` profiles): nothing a dead counter left prints unsupervised.
    /// An indicium that printed while the counter was down is then known only if its process
    /// ID reply survived in the port's input.
    Clear,
    /// Let it print — the counter uses this only while its link to the vendor is up again — so
    /// every process ID of the old job comes back in order: whether its indicium and its end
    /// reached paper is then known, not guessed.
    Finish,
}

/// Bring a printer left mid-command (a counter that crashed mid-job) back in step, before the
/// next job: on `dle_dc4` profiles clear its buffers first (what a dead counter left unprinted
/// must not print unsupervised) and wait for 37 25 00; then NUL-finish any half-received
/// command ([`resync_nul_bytes`]) and `ESC @`, and empty the printer's 2-D symbol memory
/// ([`super::compiler::symbol_store_erase`]); if the clear was not confirmed, ask for it once
/// more. On process-ID profiles, then send [`RESYNC_PROCESS_ID`] and wait for it: once it is
/// back, everything before it has printed or been cleared. IDs of earlier jobs that arrive
/// meanwhile are reported, so the caller can learn that an old job's indicium or end printed.
/// [`ResyncMode::Finish`] sends no clear: the held data prints (NUL-finished), and the wait
/// for the resync's own ID allows for printing a full receive buffer.
pub fn resync(
    port: &mut PrinterPort,
    cfg: &StreamConfig,
    mode: ResyncMode,
) -> Result<ResyncReport, PrinterFault> {
    if port.profile.language == Language::Zpl {
        return resync_zpl(port, cfg, mode);
    }
    let profile = port.profile.clone();
    let timeout = Duration::from_millis(cfg.write_timeout_ms);
    let line_time = |bytes: usize| {
        Duration::from_secs_f64(bytes as f64 / f64::from(profile.sustained_bytes_per_s()))
    };
    // IDs the port heard before the resync (while the counter was down or polling status)
    // come first in the report: they printed earlier than anything the resync brings back.
    // Kept apart from the inbox, whose bounded list must have room for the resync's own ID.
    let heard = port.take_heard_ids();
    let mut inbox = Inbox::default();
    let wait = |port: &mut PrinterPort,
                inbox: &mut Inbox,
                deadline: Instant,
                done: &dyn Fn(&Inbox) -> bool|
     -> Result<bool, PrinterFault> {
        loop {
            inbox.pump(port)?;
            if done(inbox) {
                return Ok(true);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            std::thread::sleep((deadline - now).min(Duration::from_millis(IDLE_POLL_MS)));
        }
    };
    // Paced like a job: a flush longer than the receive buffer must not overrun it.
    let lead = cfg
        .lead_bytes_max
        .min(profile.receive_buffer_bytes as usize / 2)
        .max(1);
    let mut pacer = Pacer::new(profile.sustained_bytes_per_s(), lead, Instant::now());
    // `settle`: wait until the printer has taken it all in, so the next job's pacer starts
    // from an empty receive buffer.
    let mut write =
        |port: &mut PrinterPort, bytes: &[u8], settle: bool| -> Result<(), PrinterFault> {
            for piece in bytes.chunks(lead.min(cfg.chunk_bytes_max).max(1)) {
                loop {
                    let now = Instant::now();
                    let at = pacer.ready_at(now, piece.len());
                    if at <= now {
                        break;
                    }
                    std::thread::sleep((at - now).min(Duration::from_millis(IDLE_POLL_MS)));
                }
                if let (_, Some(f)) = port.write_counted(piece, timeout) {
                    return Err(f);
                }
                pacer.on_sent(Instant::now(), piece.len());
            }
            if settle {
                std::thread::sleep(pacer.drain_time(Instant::now()));
            }
            Ok(())
        };
    let clear_wait = Duration::from_millis(cfg.clear_reply_timeout_ms);
    let dle_dc4 = profile.clear_buffer == ClearBuffer::DleDc4 && mode == ResyncMode::Clear;
    let mut clear_confirmed = false;
    if dle_dc4 {
        write(port, &CLEAR_BUFFERS, false)?;
        let deadline = Instant::now() + line_time(CLEAR_BUFFERS.len()) + clear_wait;
        clear_confirmed = wait(port, &mut inbox, deadline, &|i| i.clears >= 1)?;
    }
    let nul_bytes = resync_nul_bytes(&profile);
    let mut flush = vec![0u8; nul_bytes];
    flush.extend_from_slice(&INIT);
    if mode == ResyncMode::Finish {
        // What the dead counter left printed is a partial item: cut it off, so the next job
        // starts on fresh paper.
        flush.extend_from_slice(&super::compiler::cut_bytes(&profile));
    }
    if let Some(cn) = profile.native_2d.data_matrix_cn {
        // A counter stopped between a symbol's store and its print left a signed payload in
        // the printer's symbol memory: erase it, so nothing can print it later.
        flush.extend_from_slice(&super::compiler::symbol_store_erase(cn));
    }
    write(port, &flush, true)?;
    if dle_dc4 && !clear_confirmed {
        write(port, &CLEAR_BUFFERS, false)?;
        let deadline = Instant::now() + line_time(flush.len()) + clear_wait;
        clear_confirmed = wait(port, &mut inbox, deadline, &|i| i.clears >= 1)?;
    }
    let mut settled = false;
    if profile.status.process_id {
        write(port, &RESYNC_PROCESS_ID.command(), false)?;
        let held = match mode {
            ResyncMode::Clear => 0,
            ResyncMode::Finish => profile.receive_buffer_bytes as usize,
        };
        let deadline = Instant::now()
            + line_time(held + flush.len() + PROCESS_ID_COMMAND_BYTES)
            + Duration::from_millis(cfg.print_reply_timeout_ms);
        settled = wait(port, &mut inbox, deadline, &|i| {
            i.ids.contains(&RESYNC_PROCESS_ID)
        })?;
    }
    Ok(ResyncReport {
        clear_confirmed,
        nul_bytes,
        earlier_ids: heard
            .into_iter()
            .chain(inbox.ids.iter().copied())
            .filter(|id| *id != RESYNC_PROCESS_ID)
            .collect(),
        settled,
    })
}

/// Whether the profile can be asked how it is mid-job: `DLE EOT` (ESC/POS) or `~HS` (ZPL).
fn has_status_query(profile: &Profile) -> bool {
    profile.status.dle_eot || profile.language == Language::Zpl
}

/// ZPL (docs/PRINTING.md §ZPL): `~HS` for status and for "printed", `~JA` to cancel.
impl Run<'_> {
    /// Send `~HS` and wait for its three strings (within the drain time plus
    /// `status_reply_timeout_ms`).
    fn host_status(&mut self) -> Result<HostStatus, PrinterFault> {
        self.inbox.host_statuses.clear();
        let (w, fault) = self.port.write_counted(
            zpl::HOST_STATUS,
            Duration::from_millis(self.cfg.write_timeout_ms),
        );
        if let Some(f) = fault {
            return Err(f);
        }
        let now = Instant::now();
        self.pacer.on_sent(now, w);
        let deadline = now
            + self.pacer.drain_time(now)
            + Duration::from_millis(self.cfg.status_reply_timeout_ms);
        if !self.wait_replies(deadline, |r| !r.inbox.host_statuses.is_empty())? {
            return Err(PrinterFault::StatusTimeout);
        }
        self.inbox
            .host_statuses
            .pop_back()
            .ok_or(PrinterFault::StatusTimeout)
    }

    /// Before `^XZ` went out whole: `~JA` drops the open format (and anything else waiting);
    /// confirmed when `~HS` then says no format is held or half received. After `^XZ` nothing
    /// is sent: the closed format is the printer's to print (on paper → commit).
    fn cancel_zpl(&mut self) -> Result<(bool, bool), PrinterFault> {
        let closed = self
            .job
            .indicium
            .as_ref()
            .is_some_and(|r| self.sent >= r.end);
        if closed {
            return Ok((true, false));
        }
        let (n, fault) = self.port.write_counted(
            zpl::CANCEL_ALL,
            Duration::from_millis(self.cfg.write_timeout_ms),
        );
        self.pacer.on_sent(Instant::now(), n);
        if let Some(f) = fault {
            return Err(f);
        }
        let confirmed = match self.host_status() {
            Ok(h) => h.formats_in_buffer == 0 && !h.partial_format,
            Err(PrinterFault::StatusTimeout) => false,
            Err(f) => return Err(f),
        };
        Ok((true, confirmed))
    }

    /// Before a job's first byte (its `~JA` would cancel it): wait while the printer still holds
    /// a closed label — an earlier job's, left by a fault after its `^XZ` and counted as on
    /// paper — until it printed; `Some(fault)` if the printer is not fit or the label does not
    /// print within a label's print time × 1.5 + `print_reply_timeout_ms`. A format only half
    /// received is not waited for: it never prints, and the job's `~JA` drops it.
    fn await_no_label_held(&mut self) -> Option<PrinterFault> {
        let label_s = self.port.profile.label_rows().map_or(2.0, |(l, g)| {
            f64::from(l + g) / self.port.profile.engine_rows_per_s().max(1.0)
        });
        let deadline = Instant::now()
            + Duration::from_secs_f64(label_s * 1.5)
            + Duration::from_millis(self.cfg.print_reply_timeout_ms);
        let poll_every = Duration::from_millis(self.cfg.print_status_poll_ms.max(IDLE_POLL_MS));
        loop {
            let status = match self.host_status() {
                Ok(h) => h,
                Err(f) => return Some(f),
            };
            if let Some(f) = status.fault() {
                return Some(f);
            }
            if status.formats_in_buffer == 0 && status.labels_remaining == 0 {
                return None;
            }
            let now = Instant::now();
            if now >= deadline {
                return Some(PrinterFault::PrintTimeout);
            }
            std::thread::sleep(poll_every.min(deadline - now));
        }
    }

    /// Every byte is out and the format closed: poll `~HS` every `print_status_poll_ms` until
    /// the printer holds no format (printed), a fault, or the print time × 1.5 +
    /// `print_reply_timeout_ms`. The link is not consulted: nothing is written but `~HS`, and
    /// the closed label prints whatever the link does.
    fn await_format(&mut self) -> JobOutcome {
        let (_, deadline, poll_every) = self.print_deadline();
        loop {
            let status = match self.host_status() {
                Ok(h) => h,
                Err(f) => return self.fault(f),
            };
            if let Some(f) = status.fault() {
                return self.fault(f);
            }
            if status.holds_nothing() {
                if self.job.indicium.is_some() {
                    self.indicium_printed = true;
                    self.notify(Milestone::IndiciumPrinted);
                }
                self.end_printed = true;
                self.notify(Milestone::EndPrinted);
                return JobOutcome::Completed {
                    bytes_sent: self.sent,
                    indicium: self.indicium_paper(false),
                };
            }
            let now = Instant::now();
            if now >= deadline {
                return self.fault(PrinterFault::PrintTimeout);
            }
            std::thread::sleep(poll_every.min(deadline - now));
        }
    }
}

/// [`resync`] on a ZPL printer: `Clear` sends `~JA` at once; `Finish` first lets every closed
/// format print (polls `~HS` until none is held but a partial one), then `~JA` drops the
/// partial one — an unclosed format never prints. `settled` and `clear_confirmed`: `~HS` then
/// says the printer holds nothing.
fn resync_zpl(
    port: &mut PrinterPort,
    cfg: &StreamConfig,
    mode: ResyncMode,
) -> Result<ResyncReport, PrinterFault> {
    let timeout = Duration::from_millis(cfg.write_timeout_ms);
    let ask = |port: &mut PrinterPort| -> Result<Option<HostStatus>, PrinterFault> {
        if let (_, Some(f)) = port.write_counted(zpl::HOST_STATUS, timeout) {
            return Err(f);
        }
        port.read_host_status(Instant::now() + Duration::from_millis(cfg.status_reply_timeout_ms))
    };
    if mode == ResyncMode::Finish {
        let profile = port.profile.clone();
        let label_s = profile.label_rows().map_or(2.0, |(l, g)| {
            f64::from(l + g) / profile.engine_rows_per_s().max(1.0)
        });
        let line_s =
            f64::from(profile.receive_buffer_bytes) / f64::from(profile.sustained_bytes_per_s());
        let deadline = Instant::now()
            + Duration::from_secs_f64(line_s + label_s * 2.0)
            + Duration::from_millis(cfg.print_reply_timeout_ms);
        while Instant::now() < deadline {
            match ask(port)? {
                Some(h) if h.formats_in_buffer == 0 && h.labels_remaining == 0 => break,
                Some(h) if h.fault().is_some() => break,
                _ => std::thread::sleep(Duration::from_millis(cfg.print_status_poll_ms.max(2))),
            }
        }
    }
    if let (_, Some(f)) = port.write_counted(zpl::CANCEL_ALL, timeout) {
        return Err(f);
    }
    let clear_confirmed = ask(port)?.is_some_and(|h| h.holds_nothing());
    Ok(ResyncReport {
        clear_confirmed,
        nul_bytes: 0,
        earlier_ids: Vec::new(),
        settled: clear_confirmed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacer_keeps_lead_and_drains() {
        let t0 = Instant::now();
        let mut p = Pacer::new(1000, 512, t0);
        assert_eq!(p.ready_at(t0, 256), t0);
        p.on_sent(t0, 256);
        p.on_sent(t0, 256);
        // Full: the next 256 bytes wait for 256 bytes to drain = 256 ms.
        let at = p.ready_at(t0, 256);
        assert_eq!(at - t0, Duration::from_millis(256));
        // After a long pause the backlog is empty, not negative: no burst beyond the lead.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(p.backlog_bytes(later), 0);
        p.on_sent(later, 512);
        assert!(p.ready_at(later, 1) > later);
    }

    #[test]
    fn status_decoding() {
        assert_eq!(decode_status(1, 0x12), Some(None));
        assert_eq!(decode_status(1, 0x1a), Some(Some(PrinterFault::Offline)));
        assert_eq!(decode_status(2, 0x72), Some(Some(PrinterFault::PaperOut)));
        assert_eq!(decode_status(2, 0x16), Some(Some(PrinterFault::CoverOpen)));
        assert_eq!(decode_status(4, 0x72), Some(Some(PrinterFault::PaperOut)));
        assert_eq!(decode_status(1, 0x37), None);
    }

    #[test]
    fn progress_percent() {
        let p = Progress {
            bytes_sent: 50,
            bytes_total: 200,
        };
        assert_eq!(p.percent(), 25);
    }
}
