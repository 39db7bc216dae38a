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

use super::compiler::{CLEAR_BUFFERS, CLEAR_BUFFERS_REPLY, Job, cancel_bytes, void_bytes};
use super::profile::{ClearBuffer, FlowControl, Parity, Profile};
use super::realtime::{Realtime, RealtimeMatcher};
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
        })
    }
}

/// How a job ended. `bytes_sent` is the exact count of job bytes written to the port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JobOutcome {
    Completed {
        bytes_sent: usize,
    },
    /// The link stopped allowing printing.
    Aborted {
        bytes_sent: usize,
        indicium_complete: bool,
        /// The printer confirmed its buffers were cleared (37 25 00), or the NUL flush went out.
        cancel_confirmed: bool,
        void_printed: bool,
    },
    /// The printer or port failed.
    Faulted {
        fault: PrinterFault,
        bytes_sent: usize,
        indicium_complete: bool,
    },
}

impl JobOutcome {
    pub fn bytes_sent(&self) -> usize {
        match *self {
            JobOutcome::Completed { bytes_sent }
            | JobOutcome::Aborted { bytes_sent, .. }
            | JobOutcome::Faulted { bytes_sent, .. } => bytes_sent,
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
        let _ = port.clear(serialport::ClearBuffer::Input);
        Ok(PrinterPort {
            port,
            profile: profile.clone(),
            path: p,
        })
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
        if !self.profile.status.dle_eot {
            return Ok(false);
        }
        let _ = self.port.clear(serialport::ClearBuffer::Input);
        // Ask all three, then report the most specific cause: cover/paper before "offline".
        let mut faults = Vec::with_capacity(3);
        for n in [2u8, 4, 1] {
            let (_, fault) = self.write_counted(&[0x10, 0x04, n], reply_timeout);
            if let Some(f) = fault {
                return Err(f);
            }
            let got = self.read_until(1, Instant::now() + reply_timeout)?;
            let Some(&reply) = got.first() else {
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

/// Bookkeeping for status queries: how many replies are owed (job data can contain
/// `DLE EOT n` by accident, and the printer answers those too).
struct Replies {
    matcher: RealtimeMatcher,
    owed: usize,
}

impl Replies {
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match self.matcher.push(b) {
                Some(Realtime::Status(_)) => self.owed += 1,
                Some(Realtime::ClearBuffers) => self.owed += CLEAR_BUFFERS_REPLY.len(),
                None => {}
            }
        }
    }
}

struct Run<'a> {
    port: &'a mut PrinterPort,
    job: &'a Job,
    cfg: StreamConfig,
    pacer: Pacer,
    replies: Replies,
    sent: usize,
    progress: &'a watch::Sender<Progress>,
}

/// Stream `job` to `port`. Blocking; run it on its own thread (see [`spawn_job`]).
pub fn stream_job(
    port: &mut PrinterPort,
    job: &Job,
    link: &watch::Receiver<LinkState>,
    progress: &watch::Sender<Progress>,
    cfg: &StreamConfig,
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
        replies: Replies {
            matcher: RealtimeMatcher::default(),
            owed: 0,
        },
        sent: 0,
        progress,
    };
    run.publish();
    let mut since_poll = 0usize;
    for chunk in &job.chunks {
        if !link.borrow().allows_printing() {
            return run.abort();
        }
        // Status between commands only (DOMAIN.md §5: never inside another command).
        if profile.status.dle_eot
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
            return run.abort();
        }
        let (n, fault) = run
            .port
            .write_counted(bytes, Duration::from_millis(cfg.write_timeout_ms));
        run.replies.feed(&bytes[..n]);
        run.pacer.on_sent(Instant::now(), n);
        run.sent += n;
        since_poll += n;
        run.publish();
        if let Some(f) = fault {
            return run.fault(f);
        }
    }
    // A last status check so a paper-out at the end is not reported as success.
    if profile.status.dle_eot
        && let Some(fault) = run.poll_status()
    {
        return run.fault(fault);
    }
    JobOutcome::Completed {
        bytes_sent: run.sent,
    }
}

impl Run<'_> {
    fn publish(&self) {
        self.progress.send_replace(Progress {
            bytes_sent: self.sent,
            bytes_total: self.job.bytes.len(),
        });
    }

    /// Sleep until the pacer allows `len` bytes (and DSR is up on dtrdsr profiles), waking
    /// early when the link changes so a lapse is acted on at once.
    fn wait_turn(&mut self, len: usize, link: &watch::Receiver<LinkState>) -> Option<PrinterFault> {
        let dsr_deadline = Instant::now() + Duration::from_millis(self.cfg.dsr_wait_ms);
        loop {
            if !link.borrow().allows_printing() {
                return None;
            }
            let now = Instant::now();
            let at = self.pacer.ready_at(now, len);
            if at > now {
                std::thread::sleep((at - now).min(Duration::from_millis(2)));
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

    /// DLE EOT 1, then 2 when offline. `Some(fault)` if the printer is not fit to go on.
    fn poll_status(&mut self) -> Option<PrinterFault> {
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
        self.replies.feed(&q[..w]);
        let now = Instant::now();
        self.pacer.on_sent(now, w);
        let deadline = now
            + self.pacer.drain_time(now)
            + Duration::from_millis(self.cfg.status_reply_timeout_ms);
        let owed = std::mem::take(&mut self.replies.owed);
        let got = self.port.read_until(owed.max(1), deadline)?;
        match got.last() {
            Some(&b) if got.len() == owed.max(1) => Ok(b),
            _ => Err(PrinterFault::StatusTimeout),
        }
    }

    /// Throw away what the printer holds. Returns whether that was confirmed.
    fn cancel(&mut self) -> Result<bool, PrinterFault> {
        let profile = self.port.profile.clone();
        let timeout = Duration::from_millis(self.cfg.write_timeout_ms);
        let bytes = cancel_bytes(&profile, self.job, self.sent);
        let (_, fault) = self.port.write_counted(&bytes, timeout);
        if let Some(f) = fault {
            return Err(f);
        }
        self.pacer.on_sent(Instant::now(), bytes.len());
        if profile.clear_buffer != ClearBuffer::DleDc4 {
            return Ok(true);
        }
        let wait = |s: &mut Self| {
            let now = Instant::now();
            now + s.pacer.drain_time(now) + Duration::from_millis(s.cfg.clear_reply_timeout_ms)
        };
        let deadline = wait(self);
        if self.port.read_pattern(&CLEAR_BUFFERS_REPLY, deadline)? {
            return Ok(true);
        }
        // Still silent: finish a half-received command with NULs, then ask again (receiptline).
        let mut retry = vec![0u8; self.job.remaining_in_command(self.sent)];
        retry.extend_from_slice(&CLEAR_BUFFERS);
        let (_, fault) = self.port.write_counted(&retry, timeout);
        if let Some(f) = fault {
            return Err(f);
        }
        self.pacer.on_sent(Instant::now(), retry.len());
        let deadline = wait(self);
        self.port.read_pattern(&CLEAR_BUFFERS_REPLY, deadline)
    }

    fn abort(&mut self) -> JobOutcome {
        let indicium_complete = self.job.indicium_complete(self.sent);
        let cancel_confirmed = match self.cancel() {
            Ok(c) => c,
            Err(fault) => {
                return JobOutcome::Faulted {
                    fault,
                    bytes_sent: self.sent,
                    indicium_complete,
                };
            }
        };
        let mut void_printed = false;
        if self.port.profile.void_on_abort && cancel_confirmed {
            let v = void_bytes(&self.port.profile);
            let (n, fault) = self
                .port
                .write_counted(&v, Duration::from_millis(self.cfg.write_timeout_ms));
            void_printed = fault.is_none() && n == v.len();
        }
        JobOutcome::Aborted {
            bytes_sent: self.sent,
            indicium_complete,
            cancel_confirmed,
            void_printed,
        }
    }

    fn fault(&mut self, fault: PrinterFault) -> JobOutcome {
        // Best effort: a job that resumes when paper is reloaded would print value unsupervised.
        if !matches!(
            fault,
            PrinterFault::PortVanished | PrinterFault::WriteTimeout
        ) {
            let _ = self.cancel();
        }
        JobOutcome::Faulted {
            fault,
            bytes_sent: self.sent,
            indicium_complete: self.job.indicium_complete(self.sent),
        }
    }
}

/// Run [`stream_job`] on its own thread; progress is published on the returned receiver.
pub fn spawn_job(
    mut port: PrinterPort,
    job: Job,
    link: watch::Receiver<LinkState>,
    cfg: StreamConfig,
) -> (
    JoinHandle<(PrinterPort, JobOutcome)>,
    watch::Receiver<Progress>,
) {
    let (tx, rx) = watch::channel(Progress {
        bytes_sent: 0,
        bytes_total: job.bytes.len(),
    });
    let handle = std::thread::spawn(move || {
        let outcome = stream_job(&mut port, &job, &link, &tx, &cfg);
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
) -> Result<(PrinterPort, JobOutcome), tokio::task::JoinError> {
    tokio::task::spawn_blocking(move || {
        let outcome = stream_job(&mut port, &job, &link, &progress, &cfg);
        (port, outcome)
    })
    .await
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
