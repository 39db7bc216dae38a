//! Text printouts (issue 15): the customer's receipt after a basket, a copy of it reprinted
//! from history, the clerk's printed close-out.
//!
//! A printout is not value. It goes to the printer as a text-only job
//! ([`crate::printer::textjob`]): no indicium, no reservation, no job book, no settlement
//! journal, no request to the vendor. Its print is gated only by the counter quitting (not by
//! the link: a receipt prints while the link is down), and its outcome is still reported
//! honestly — printed only when the streamer says the job completed.
//!
//! - [`ReceiptBook`]: the receipts this counter printed, kept in the terminal's data directory
//!   (`receipts.json`, 0600, at most [`RECEIPTS_KEPT_MAX`], oldest dropped first) so one can be
//!   reprinted from history by any of its items' numbers, after a restart too.
//! - [`print_labels`]: streams a printout's jobs on a port, one after another (blocking).

use crate::datafiles;
use crate::indicium::layout::PieceNumber;
use crate::link::guard::LinkState;
use crate::printer::compiler::{self, CompileOptions, Label, Layout};
use crate::printer::streamer::{
    self, JobOutcome, NoMilestones, PrinterPort, Progress, StreamConfig,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use tokio::sync::watch;

/// Receipts kept for reprinting, newest last; the oldest is dropped beyond it.
pub const RECEIPTS_KEPT_MAX: usize = 200;
/// Printouts waiting for a printer busy with a label (more are refused in words).
pub const PRINTOUTS_QUEUED_MAX: usize = 4;
/// The receipts file in the terminal's data directory.
pub const RECEIPTS_FILE: &str = "receipts.json";
/// Largest receipts file read, in bytes (a bigger one is not ours: it is ignored).
const RECEIPTS_FILE_BYTES_MAX: u64 = 8 * 1024 * 1024;
/// First line of a receipt reprinted from history.
pub const COPY_LINE: &str = "*** COPY - REPRINTED ***";

/// One receipt as printed: the numbers of the items it names and its lines.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeptReceipt {
    pub pieces: Vec<PieceNumber>,
    pub lines: Vec<String>,
}

/// The receipts this counter printed (see the module docs).
#[derive(Debug)]
pub struct ReceiptBook {
    path: Option<PathBuf>,
    kept: VecDeque<KeptReceipt>,
}

impl ReceiptBook {
    /// The book in `dir`; an unreadable or damaged file starts an empty book (logged): losing
    /// a reprint is not losing value.
    pub fn open(dir: &Path) -> ReceiptBook {
        let path = dir.join(RECEIPTS_FILE);
        let kept = match std::fs::metadata(&path) {
            Err(_) => VecDeque::new(),
            Ok(m) if m.len() > RECEIPTS_FILE_BYTES_MAX => {
                tracing::warn!(bytes = m.len(), "receipts file too large; not read");
                VecDeque::new()
            }
            Ok(_) => match std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|b| {
                    serde_json::from_slice::<VecDeque<KeptReceipt>>(&b).map_err(|e| e.to_string())
                }) {
                Ok(mut k) => {
                    while k.len() > RECEIPTS_KEPT_MAX {
                        k.pop_front();
                    }
                    k
                }
                Err(e) => {
                    tracing::warn!(error = %e, "receipts file unreadable; starting empty");
                    VecDeque::new()
                }
            },
        };
        ReceiptBook {
            path: Some(path),
            kept,
        }
    }

    /// A book that keeps receipts in memory only (tests, a counter without a data directory).
    pub fn in_memory() -> ReceiptBook {
        ReceiptBook {
            path: None,
            kept: VecDeque::new(),
        }
    }

    /// Keeps a receipt (the file rewritten: temp file, fsync, rename). `Err` (words for the log)
    /// when the file could not be written; the receipt is kept in memory anyway.
    pub fn keep(&mut self, receipt: KeptReceipt) -> Result<(), String> {
        if self.kept.back() == Some(&receipt) {
            return Ok(()); // printed again from its screen: kept once
        }
        self.kept.push_back(receipt);
        while self.kept.len() > RECEIPTS_KEPT_MAX {
            self.kept.pop_front();
        }
        let Some(path) = &self.path else {
            return Ok(());
        };
        let bytes = serde_json::to_vec(&self.kept).map_err(|e| e.to_string())?;
        datafiles::write_private(path, &bytes).map_err(|e| format!("{e:#}"))
    }

    /// The newest receipt naming `number`.
    pub fn find(&self, number: &PieceNumber) -> Option<&KeptReceipt> {
        self.kept.iter().rev().find(|r| r.pieces.contains(number))
    }

    pub fn len(&self) -> usize {
        self.kept.len()
    }

    pub fn is_empty(&self) -> bool {
        self.kept.is_empty()
    }
}

/// A receipt's lines reprinted: [`COPY_LINE`] first.
pub fn copy_lines(lines: &[String]) -> Vec<String> {
    std::iter::once(COPY_LINE.to_string())
        .chain(lines.iter().cloned())
        .collect()
}

/// Streams `labels` on `port` one job after another (blocking; run it off the async threads),
/// process IDs from `first_seq` on. `gate` is the printout's only gate: `Closed` (the counter
/// quits) stops it. `Ok` when every job completed; else the words saying why it did not.
pub fn print_labels(
    port: &mut PrinterPort,
    labels: &[Label],
    first_seq: u32,
    gate: &watch::Receiver<LinkState>,
    cfg: &StreamConfig,
) -> Result<(), String> {
    let profile = port.profile().clone();
    for (i, label) in labels.iter().enumerate() {
        let seq = first_seq.wrapping_add(i as u32) % compiler::PROCESS_ID_JOBS_MAX;
        let job = compiler::compile_with(
            label,
            &profile,
            &CompileOptions {
                chunk_bytes_max: cfg.chunk_bytes_max,
                job_seq: seq,
                layout: Layout::AsGiven,
            },
        )
        .map_err(|e| format!("it cannot be printed on this printer ({e})"))?;
        debug_assert!(job.indicium.is_none(), "a printout carries no indicium");
        let (progress, _) = watch::channel(Progress {
            bytes_sent: 0,
            bytes_total: job.bytes.len(),
        });
        match streamer::stream_job(port, &job, gate, &progress, cfg, &mut NoMilestones) {
            JobOutcome::Completed { .. } => {}
            JobOutcome::Faulted { fault, .. } => return Err(format!("printer: {fault}")),
            JobOutcome::Aborted { .. } => return Err("the counter stopped printing".into()),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receipt(serials: &[u64], first: &str) -> KeptReceipt {
        KeptReceipt {
            pieces: serials
                .iter()
                .map(|s| PieceNumber::new("FRK10000001", *s))
                .collect(),
            lines: vec![first.to_string(), "Total $1.00".into()],
        }
    }

    #[test]
    fn receipts_survive_a_restart_and_are_found_by_any_item() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = ReceiptBook::open(dir.path());
        assert!(book.is_empty());
        book.keep(receipt(&[1, 2, 3], "first")).unwrap();
        book.keep(receipt(&[4], "second")).unwrap();
        let again = ReceiptBook::open(dir.path());
        assert_eq!(again.len(), 2);
        let n2 = PieceNumber::new("FRK10000001", 2);
        assert_eq!(again.find(&n2).unwrap().lines[0], "first");
        assert!(again.find(&PieceNumber::new("FRK10000002", 2)).is_none());
        assert!(again.find(&PieceNumber::new("FRK10000001", 9)).is_none());
    }

    #[test]
    fn the_book_is_bounded_and_a_damaged_file_starts_empty() {
        let dir = tempfile::tempdir().unwrap();
        let mut book = ReceiptBook::open(dir.path());
        for s in 1..=(RECEIPTS_KEPT_MAX as u64 + 5) {
            book.keep(receipt(&[s], "r")).unwrap();
        }
        assert_eq!(book.len(), RECEIPTS_KEPT_MAX);
        assert!(book.find(&PieceNumber::new("FRK10000001", 1)).is_none());
        std::fs::write(dir.path().join(RECEIPTS_FILE), b"{not json").unwrap();
        assert!(ReceiptBook::open(dir.path()).is_empty());
    }

    #[test]
    fn a_copy_says_so_first() {
        let lines = copy_lines(&["Main Street office".to_string()]);
        assert_eq!(
            lines,
            vec![COPY_LINE.to_string(), "Main Street office".into()]
        );
    }
}
