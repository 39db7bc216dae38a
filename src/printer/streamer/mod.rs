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
//!
//! Files, one concern each: this one — the limits, the outcome types, `spawn_job`; `pacer` and
//! `status` (cores); `port` (the serial port); `inbox` (replies owed and read); `run` (the job
//! loop, abort and faults); `resync`; `zpl_job` (the ZPL side).

use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serialport::{SerialPort, TTYPort};
use tokio::sync::watch;

use super::compiler::{
    CLEAR_BUFFERS, INIT, Job, PROCESS_ID_COMMAND_BYTES, ProcessId, RESYNC_PROCESS_ID,
    band_height_px, cancel_bytes, status_query,
};
use super::profile::{ClearBuffer, FlowControl, Language, Parity, Profile};
use super::realtime::{Realtime, RealtimeMatcher};
use super::replies::{Reply, ReplyReader};
use super::zpl::{self, HostStatus, HostStatusReader};
use crate::link::LinkState;

mod inbox;
mod pacer;
mod port;
mod resync;
mod run;
mod status;
mod zpl_job;

pub use self::inbox::*;
pub use self::pacer::*;
pub use self::port::*;
pub use self::resync::*;
pub use self::run::*;
pub use self::status::*;
use self::zpl_job::*;

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

impl Milestone {
    /// Its name in the counter's journal and log.
    pub fn as_str(self) -> &'static str {
        match self {
            Milestone::IndiciumSending => "indicium_sending",
            Milestone::IndiciumSent => "indicium_sent",
            Milestone::IndiciumPrinted => "indicium_printed",
            Milestone::EndPrinted => "end_printed",
        }
    }
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

#[cfg(test)]
mod tests;
