//! The job book: the one place that decides what state a counter's job is in and how its money
//! is settled. A **core**: events and records in, records and decisions out — no clock, no
//! file, no socket.
//!
//! Every job is a fold over its [`Record`]s. The shell ([`super::journal`]) appends each record
//! to the terminal's journal and fsyncs it *before* the effect the record announces (before the
//! authorize request, before the first printer byte, before the indicium's first byte that can mark paper (a
//! native symbol's print command, a raster indicium's first band), before
//! each settlement request), then [`JobBook::apply`]s it. A counter that restarts folds the
//! journal again and finishes every job the last run left unsettled, with the job's original
//! request ids, before it allows a new print (docs/PRINTING.md §Settlement journal).
//!
//! The settlement rule (docs/LEDGER.md, docs/PRINTING.md):
//! - the indicium is on paper and the job printed to its end → `commit`;
//! - the indicium is on paper but the rest was lost → `void` with `reached_printer`, which
//!   the vendor records as printed with a refund request;
//! - the indicium is not on paper → `void` (the amount goes back).
//!
//! "On paper" is the printer's word where it answers process IDs (the indicium's ID came
//! back); otherwise, and whenever the printer cannot say, indicium bytes the port accepted
//! that can mark paper count as on paper. A job the last run left between the indicium's first
//! such byte and its ID is counted as on paper: the conservative side, settled through a
//! refund request. A native symbol makes that window one short print command.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A job's identity in the journal: its authorize request id (random, 128 bits), so jobs of
/// different runs never collide. The UI's `JobId` lives only in memory.
pub type JobKey = [u8; 16];

/// How a job's money ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Settlement {
    /// The item printed: the reservation becomes printed value.
    Commit,
    /// The indicium is not on paper: the amount goes back.
    Void,
    /// The indicium is on paper but the job did not finish: charged, refund requested.
    VoidReachedPrinter,
}

impl Settlement {
    /// Which request id of the job this settlement uses.
    fn request_id(self, ids: &RequestIds) -> [u8; 16] {
        match self {
            Settlement::Commit => ids.commit,
            Settlement::Void | Settlement::VoidReachedPrinter => ids.void,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::Commit => "commit",
            Settlement::Void => "void",
            Settlement::VoidReachedPrinter => "void_reached_printer",
        }
    }
}

/// Request ids chosen when the job is created, so every retry — in this run or the next —
/// sends the same id and the vendor applies each step once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestIds {
    #[serde(with = "hex_16")]
    pub authorize: [u8; 16],
    #[serde(with = "hex_16")]
    pub commit: [u8; 16],
    #[serde(with = "hex_16")]
    pub void: [u8; 16],
}

/// What the printer said about the indicium when a print ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaperVerdict {
    /// On paper, by the printer's own word (its process ID came back).
    Printed,
    /// Counted as on paper: its bytes were accepted and the printer cannot say otherwise.
    AssumedPrinted,
    /// Not on paper: no byte of it was sent, or it was sent and the printer confirmed it
    /// cleared the data before printing it.
    NotOnPaper,
}

impl PaperVerdict {
    pub fn on_paper(self) -> bool {
        !matches!(self, PaperVerdict::NotOnPaper)
    }
}

/// One line of the journal. Each announces a step *before* the step's effect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "r", rename_all = "snake_case")]
pub enum Record {
    /// About to send `authorize`. `body` is the request body (CBOR, hex), kept so that a
    /// restarted counter can send the very same request again and learn the piece.
    Authorizing {
        #[serde(with = "hex_16")]
        job: JobKey,
        amount_cents: u64,
        ids: RequestIds,
        body: String,
    },
    /// The vendor reserved the amount and signed the indicium.
    Authorized {
        #[serde(with = "hex_16")]
        job: JobKey,
        piece_serial: u64,
        /// SHA-256 of the signed indicium, hex: what would be on paper.
        indicium_sha256: String,
    },
    /// `authorize` got no answer before its retries ran out: the vendor may have reserved the
    /// amount. The job will never print; the request is sent again when the vendor can be
    /// reached, and the piece it names is voided.
    AuthorizeAbandoned {
        #[serde(with = "hex_16")]
        job: JobKey,
    },
    /// The vendor refused to authorize: no money moved, nothing to settle.
    AuthorizeRefused {
        #[serde(with = "hex_16")]
        job: JobKey,
    },
    /// About to write the job's first printer byte. `print_seq` numbers the job's process
    /// IDs (`printer::compiler::job_process_ids`), so a restarted counter knows them.
    PrintStarting {
        #[serde(with = "hex_16")]
        job: JobKey,
        print_seq: u32,
    },
    /// About to write the indicium's first byte that can put marks on paper: a native
    /// symbol's print command (its store before it prints nothing), a raster indicium's first
    /// band (`printer::compiler::Job::indicium_marks_at`).
    IndiciumSending {
        #[serde(with = "hex_16")]
        job: JobKey,
    },
    /// The port accepted the indicium's last byte.
    IndiciumSent {
        #[serde(with = "hex_16")]
        job: JobKey,
    },
    /// The printer's process ID after the indicium came back: it is on paper.
    IndiciumPrinted {
        #[serde(with = "hex_16")]
        job: JobKey,
    },
    /// The printer's process ID at the job's end came back: the whole job is on paper.
    EndPrinted {
        #[serde(with = "hex_16")]
        job: JobKey,
    },
    /// The print ended; what is on paper, and so how the money is settled.
    Outcome {
        #[serde(with = "hex_16")]
        job: JobKey,
        paper: PaperVerdict,
        complete: bool,
        settlement: Settlement,
    },
    /// The vendor acknowledged the settlement (or refused it for good: `refused`).
    Settled {
        #[serde(with = "hex_16")]
        job: JobKey,
        settlement: Settlement,
        /// The vendor's result word (`committed`, `voided`, `refund_requested`, …) or the
        /// refusal's code.
        result: String,
        refused: bool,
    },
}

impl Record {
    pub fn job(&self) -> JobKey {
        match self {
            Record::Authorizing { job, .. }
            | Record::Authorized { job, .. }
            | Record::AuthorizeRefused { job }
            | Record::AuthorizeAbandoned { job }
            | Record::PrintStarting { job, .. }
            | Record::IndiciumSending { job }
            | Record::IndiciumSent { job }
            | Record::IndiciumPrinted { job }
            | Record::EndPrinted { job }
            | Record::Outcome { job, .. }
            | Record::Settled { job, .. } => *job,
        }
    }
}

/// Where a job stands. Every state a job can be in; docs/PRINTING.md lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// `authorize` sent (or about to be); no answer yet.
    Authorizing,
    /// Reserved and signed; not printing yet.
    Authorized,
    /// Printer bytes are going out; none that can print the indicium yet (a native symbol's
    /// store may have gone: it prints nothing).
    Printing,
    /// The indicium's printing bytes are going out (the port has not accepted its last byte).
    IndiciumSending,
    /// The port accepted all of the indicium; the printer has not said it printed.
    IndiciumSent,
    /// The printer said the indicium printed; the job's end has not.
    IndiciumPrinted,
    /// The printer said the whole job printed; the streamer has not ended yet.
    EndPrinted,
    /// The print ended and the settlement is decided; the vendor has not acknowledged it.
    Settling(Settlement),
    /// The vendor acknowledged the settlement (or refused it for good).
    Settled {
        settlement: Settlement,
        refused: bool,
    },
    /// The vendor refused the authorization: nothing was reserved.
    NotIssued,
}

impl Stage {
    /// Whether the job still needs something from the vendor.
    pub fn open(self) -> bool {
        !matches!(self, Stage::Settled { .. } | Stage::NotIssued)
    }
}

/// One job as the book knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: JobKey,
    pub amount_cents: u64,
    pub ids: RequestIds,
    /// The authorize request body (CBOR, hex) for a replay after a restart.
    pub authorize_body: String,
    pub piece_serial: Option<u64>,
    pub indicium_sha256: Option<String>,
    pub stage: Stage,
    /// The vendor's last word on the settlement.
    pub result: Option<String>,
    /// Numbers the job's printer process IDs, once its print started.
    pub print_seq: Option<u32>,
    /// The job came from the journal of an earlier run.
    pub from_last_run: bool,
    /// Its `authorize` went unanswered: it will never print (replayed, then voided).
    pub abandoned: bool,
}

/// A request the shell must (re)send for a job, with the job's own request id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Send {
    /// Replay `authorize` (a job the last run left before its answer) to learn the piece.
    Authorize {
        job: JobKey,
        request_id: [u8; 16],
        body: String,
    },
    Settle {
        job: JobKey,
        settlement: Settlement,
        request_id: [u8; 16],
        piece_serial: u64,
    },
}

/// What the vendor answered a settlement or authorization, as the book needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Done; `result` is the vendor's word for it.
    Ok { result: String },
    /// Refused for good: retrying with the same id would get the same answer.
    Refused { code: String },
}

/// Why the book will not take an event. The words are for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("this item is already known; it is issued once")]
    Duplicate,
    #[error("this item is unknown on this counter")]
    Unknown,
    #[error("this item was already sent to the printer; an issued item never prints twice")]
    AlreadyPrinted,
    #[error("this item is not authorized yet")]
    NotAuthorized,
    #[error(
        "{0} item(s) from the last run are still being settled with the vendor; new items can be printed once they are"
    )]
    SettlingLastRun(usize),
    #[error("{0} items are waiting to be settled with the vendor; reconnect before printing more")]
    TooManyOpen(usize),
    #[error("that step does not fit this item's state ({0})")]
    OutOfOrder(&'static str),
}

/// What a restarted counter learned from resyncing its printer, for a job the last run left
/// while printing (docs/PRINTING.md §Resync). The resync clears what the printer had not
/// printed (nothing prints unsupervised); process IDs that come back before its own were
/// printed before the clear.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resync {
    /// The job's indicium process ID came back during the resync.
    pub indicium_id_seen: bool,
    /// The job's end process ID came back during the resync.
    pub end_id_seen: bool,
}

/// The book. Bounded: at most `open_jobs_max` jobs awaiting the vendor, and at most
/// `settled_kept_max` settled ones remembered (for the one-time print rule within a run).
#[derive(Debug, Clone)]
pub struct JobBook {
    entries: BTreeMap<JobKey, Entry>,
    /// Settled keys, oldest first, for trimming.
    settled_order: std::collections::VecDeque<JobKey>,
    open_jobs_max: usize,
    settled_kept_max: usize,
}

/// Jobs awaiting the vendor before new authorizations are refused.
pub const OPEN_JOBS_MAX: usize = 64;
/// Settled jobs remembered in memory.
pub const SETTLED_KEPT_MAX: usize = 1024;

impl Default for JobBook {
    fn default() -> Self {
        JobBook::new(OPEN_JOBS_MAX, SETTLED_KEPT_MAX)
    }
}

impl JobBook {
    pub fn new(open_jobs_max: usize, settled_kept_max: usize) -> Self {
        JobBook {
            entries: BTreeMap::new(),
            settled_order: std::collections::VecDeque::new(),
            open_jobs_max: open_jobs_max.max(1),
            settled_kept_max,
        }
    }

    /// Folds the records of an earlier run. Jobs it leaves open are marked `from_last_run`:
    /// they are settled before any new print.
    pub fn recover<'a>(records: impl IntoIterator<Item = &'a Record>) -> JobBook {
        let mut book = JobBook::default();
        for r in records {
            book.apply(r);
        }
        for e in book.entries.values_mut() {
            e.from_last_run = true;
        }
        book
    }

    pub fn get(&self, job: &JobKey) -> Option<&Entry> {
        self.entries.get(job)
    }

    /// Jobs still needing the vendor, oldest key order.
    pub fn open(&self) -> impl Iterator<Item = &Entry> {
        self.entries.values().filter(|e| e.stage.open())
    }

    pub fn open_count(&self) -> usize {
        self.open().count()
    }

    /// Open jobs of the last run: until this is 0 no new item is authorized.
    pub fn last_run_open(&self) -> usize {
        self.open().filter(|e| e.from_last_run).count()
    }

    /// The records that keep every open job alive: what a compacted journal holds.
    pub fn snapshot(&self) -> Vec<Record> {
        let mut out = Vec::new();
        for e in self.open() {
            out.push(Record::Authorizing {
                job: e.key,
                amount_cents: e.amount_cents,
                ids: e.ids,
                body: e.authorize_body.clone(),
            });
            if let (Some(piece_serial), Some(sha)) = (e.piece_serial, &e.indicium_sha256) {
                out.push(Record::Authorized {
                    job: e.key,
                    piece_serial,
                    indicium_sha256: sha.clone(),
                });
            }
            let job = e.key;
            let print_seq = e.print_seq.unwrap_or(0);
            if e.abandoned {
                out.push(Record::AuthorizeAbandoned { job });
            }
            match e.stage {
                Stage::Authorizing | Stage::Authorized => {}
                Stage::Printing => out.push(Record::PrintStarting { job, print_seq }),
                Stage::IndiciumSending => out.extend([
                    Record::PrintStarting { job, print_seq },
                    Record::IndiciumSending { job },
                ]),
                Stage::IndiciumSent => out.extend([
                    Record::PrintStarting { job, print_seq },
                    Record::IndiciumSending { job },
                    Record::IndiciumSent { job },
                ]),
                Stage::IndiciumPrinted => out.extend([
                    Record::PrintStarting { job, print_seq },
                    Record::IndiciumSending { job },
                    Record::IndiciumSent { job },
                    Record::IndiciumPrinted { job },
                ]),
                Stage::EndPrinted => out.extend([
                    Record::PrintStarting { job, print_seq },
                    Record::IndiciumSending { job },
                    Record::IndiciumSent { job },
                    Record::IndiciumPrinted { job },
                    Record::EndPrinted { job },
                ]),
                Stage::Settling(settlement) => out.push(Record::Outcome {
                    job,
                    paper: if settlement == Settlement::Void {
                        PaperVerdict::NotOnPaper
                    } else {
                        PaperVerdict::AssumedPrinted
                    },
                    complete: settlement == Settlement::Commit,
                    settlement,
                }),
                Stage::Settled { .. } | Stage::NotIssued => {}
            }
        }
        out
    }

    /// Applies one record (from the journal, or just appended to it). Records for unknown jobs
    /// or out of order are ignored: the journal is only ever written through [`Self::decide_*`].
    pub fn apply(&mut self, r: &Record) {
        let key = r.job();
        if let Record::Authorizing {
            amount_cents,
            ids,
            body,
            ..
        } = r
        {
            self.entries.entry(key).or_insert_with(|| Entry {
                key,
                amount_cents: *amount_cents,
                ids: *ids,
                authorize_body: body.clone(),
                piece_serial: None,
                indicium_sha256: None,
                stage: Stage::Authorizing,
                result: None,
                print_seq: None,
                from_last_run: false,
                abandoned: false,
            });
            return;
        }
        let Some(e) = self.entries.get_mut(&key) else {
            return;
        };
        match r {
            Record::Authorizing { .. } => {}
            Record::Authorized {
                piece_serial,
                indicium_sha256,
                ..
            } => {
                e.piece_serial = Some(*piece_serial);
                e.indicium_sha256 = Some(indicium_sha256.clone());
                if e.stage == Stage::Authorizing {
                    e.stage = Stage::Authorized;
                }
            }
            Record::AuthorizeRefused { .. } => e.stage = Stage::NotIssued,
            Record::AuthorizeAbandoned { .. } => e.abandoned = true,
            Record::PrintStarting { print_seq, .. } => {
                e.stage = Stage::Printing;
                e.print_seq = Some(*print_seq);
            }
            Record::IndiciumSending { .. } => e.stage = Stage::IndiciumSending,
            Record::IndiciumSent { .. } => e.stage = Stage::IndiciumSent,
            Record::IndiciumPrinted { .. } => e.stage = Stage::IndiciumPrinted,
            Record::EndPrinted { .. } => e.stage = Stage::EndPrinted,
            Record::Outcome { settlement, .. } => e.stage = Stage::Settling(*settlement),
            Record::Settled {
                settlement,
                result,
                refused,
                ..
            } => {
                e.stage = Stage::Settled {
                    settlement: *settlement,
                    refused: *refused,
                };
                e.result = Some(result.clone());
            }
        }
        if !e.stage.open() {
            self.settled_order.push_back(key);
            while self.settled_order.len() > self.settled_kept_max {
                if let Some(old) = self.settled_order.pop_front() {
                    self.entries.remove(&old);
                }
            }
        }
    }

    /// A new item: announce the authorize request before it is sent.
    pub fn decide_authorize(
        &self,
        job: JobKey,
        amount_cents: u64,
        ids: RequestIds,
        body: String,
    ) -> Result<Vec<Record>, Refusal> {
        if self.entries.contains_key(&job) {
            return Err(Refusal::Duplicate);
        }
        let last = self.last_run_open();
        if last > 0 {
            return Err(Refusal::SettlingLastRun(last));
        }
        let open = self.open_count();
        if open >= self.open_jobs_max {
            return Err(Refusal::TooManyOpen(open));
        }
        Ok(vec![Record::Authorizing {
            job,
            amount_cents,
            ids,
            body,
        }])
    }

    /// The vendor answered `authorize`. A job replayed after a restart never printed in this
    /// run (its print had not started, or `PrintStarting` would be in the journal), so it is
    /// voided at once.
    pub fn decide_authorized(
        &self,
        job: JobKey,
        answer: Result<(u64, String), Answer>,
    ) -> Result<Vec<Record>, Refusal> {
        let e = self.entries.get(&job).ok_or(Refusal::Unknown)?;
        if e.stage != Stage::Authorizing {
            return Ok(Vec::new()); // a late duplicate answer
        }
        Ok(match answer {
            Ok((piece_serial, indicium_sha256)) => {
                let mut out = vec![Record::Authorized {
                    job,
                    piece_serial,
                    indicium_sha256,
                }];
                if e.from_last_run || e.abandoned {
                    out.push(outcome(job, PaperVerdict::NotOnPaper, false));
                }
                out
            }
            Err(_) => vec![Record::AuthorizeRefused { job }],
        })
    }

    /// `authorize` went unanswered until its retries ran out: never print this job; replay the
    /// request when the vendor can be reached and void what it reserved.
    pub fn decide_authorize_abandoned(&self, job: JobKey) -> Result<Vec<Record>, Refusal> {
        let e = self.entries.get(&job).ok_or(Refusal::Unknown)?;
        if e.stage != Stage::Authorizing || e.abandoned {
            return Ok(Vec::new());
        }
        Ok(vec![Record::AuthorizeAbandoned { job }])
    }

    /// The one-time rule: a job prints once, only after its authorization, only in this run.
    pub fn decide_print(&self, job: JobKey, print_seq: u32) -> Result<Vec<Record>, Refusal> {
        let e = self.entries.get(&job).ok_or(Refusal::Unknown)?;
        match e.stage {
            Stage::Authorized if !e.from_last_run && !e.abandoned => {
                Ok(vec![Record::PrintStarting { job, print_seq }])
            }
            Stage::Authorizing | Stage::NotIssued => Err(Refusal::NotAuthorized),
            _ => Err(Refusal::AlreadyPrinted),
        }
    }

    /// A job that will never print (no printer, it does not compile, the clerk gave up):
    /// nothing reached the printer, so the amount goes back.
    pub fn decide_abandon(&self, job: JobKey) -> Result<Vec<Record>, Refusal> {
        let e = self.entries.get(&job).ok_or(Refusal::Unknown)?;
        match e.stage {
            Stage::Authorized => Ok(vec![outcome(job, PaperVerdict::NotOnPaper, false)]),
            Stage::Authorizing => Err(Refusal::NotAuthorized),
            Stage::NotIssued | Stage::Settling(_) | Stage::Settled { .. } => Ok(Vec::new()),
            _ => Err(Refusal::OutOfOrder("printing")),
        }
    }

    /// A streamer milestone (before its effect for `IndiciumSending`).
    pub fn decide_milestone(&self, job: JobKey, m: Milestone) -> Result<Vec<Record>, Refusal> {
        let e = self.entries.get(&job).ok_or(Refusal::Unknown)?;
        let (want, rec): (&[Stage], Record) = match m {
            Milestone::IndiciumSending => (&[Stage::Printing], Record::IndiciumSending { job }),
            Milestone::IndiciumSent => (&[Stage::IndiciumSending], Record::IndiciumSent { job }),
            Milestone::IndiciumPrinted => (
                &[Stage::IndiciumSent, Stage::IndiciumSending],
                Record::IndiciumPrinted { job },
            ),
            Milestone::EndPrinted => (
                &[Stage::IndiciumPrinted, Stage::IndiciumSent, Stage::Printing],
                Record::EndPrinted { job },
            ),
        };
        if want.contains(&e.stage) {
            Ok(vec![rec])
        } else {
            Err(Refusal::OutOfOrder(m.as_str()))
        }
    }

    /// The print ended in this run: `paper` is the streamer's verdict on the indicium,
    /// `complete` whether the whole job printed.
    pub fn decide_ended(
        &self,
        job: JobKey,
        paper: PaperVerdict,
        complete: bool,
    ) -> Result<Vec<Record>, Refusal> {
        let e = self.entries.get(&job).ok_or(Refusal::Unknown)?;
        match e.stage {
            Stage::Printing
            | Stage::IndiciumSending
            | Stage::IndiciumSent
            | Stage::IndiciumPrinted
            | Stage::EndPrinted => {}
            Stage::Settling(_) | Stage::Settled { .. } => return Ok(Vec::new()),
            _ => return Err(Refusal::OutOfOrder("not printing")),
        }
        // What the journal already knows outranks a weaker verdict: an indicium whose ID came
        // back is on paper whatever the streamer concluded after.
        // Likewise a job whose end ID came back is complete, and one whose indicium was never
        // announced (`indicium_sending` is journaled before its first byte that can mark paper) has
        // none on paper.
        let (paper, complete) = match e.stage {
            Stage::EndPrinted => (PaperVerdict::Printed, true),
            Stage::IndiciumPrinted => (PaperVerdict::Printed, complete),
            Stage::Printing => (PaperVerdict::NotOnPaper, false),
            _ => (paper, complete),
        };
        Ok(vec![outcome(job, paper, complete && paper.on_paper())])
    }

    /// A restarted counter resynced its printer; settle a job the last run left mid-print.
    pub fn decide_recovered(&self, job: JobKey, resync: Resync) -> Result<Vec<Record>, Refusal> {
        let e = self.entries.get(&job).ok_or(Refusal::Unknown)?;
        let (paper, complete) = match e.stage {
            // No indicium byte that can mark paper ever went out (a native symbol may have
            // been stored; its print command was not sent, and resync erased the store).
            Stage::Printing => (PaperVerdict::NotOnPaper, false),
            // Its bytes went out (all or some) and the printer never said it printed: it may
            // have printed while the counter was down, and its reply was lost. Conservative:
            // on paper, settled through a refund request that a scan can reject.
            Stage::IndiciumSending | Stage::IndiciumSent if !resync.indicium_id_seen => {
                (PaperVerdict::AssumedPrinted, false)
            }
            Stage::IndiciumSending | Stage::IndiciumSent | Stage::IndiciumPrinted => {
                (PaperVerdict::Printed, resync.end_id_seen)
            }
            Stage::EndPrinted => (PaperVerdict::Printed, true),
            _ => return Ok(Vec::new()),
        };
        Ok(vec![outcome(job, paper, complete)])
    }

    /// The vendor answered a settlement.
    pub fn decide_settled(&self, job: JobKey, answer: Answer) -> Result<Vec<Record>, Refusal> {
        let e = self.entries.get(&job).ok_or(Refusal::Unknown)?;
        let Stage::Settling(settlement) = e.stage else {
            return Ok(Vec::new());
        };
        let (result, refused) = match answer {
            Answer::Ok { result } => (result, false),
            Answer::Refused { code } => (code, true),
        };
        Ok(vec![Record::Settled {
            job,
            settlement,
            result,
            refused,
        }])
    }

    /// Every request that must go (again) to the vendor.
    pub fn sends(&self) -> Vec<Send> {
        self.open().filter_map(send_for).collect()
    }

    /// The request that must go (again) for one job, if any.
    pub fn send_for(&self, job: &JobKey) -> Option<Send> {
        self.entries.get(job).and_then(send_for)
    }
}

fn send_for(e: &Entry) -> Option<Send> {
    match e.stage {
        Stage::Authorizing if e.from_last_run || e.abandoned => Some(Send::Authorize {
            job: e.key,
            request_id: e.ids.authorize,
            body: e.authorize_body.clone(),
        }),
        Stage::Settling(settlement) => Some(Send::Settle {
            job: e.key,
            settlement,
            request_id: settlement.request_id(&e.ids),
            piece_serial: e.piece_serial?,
        }),
        _ => None,
    }
}

fn outcome(job: JobKey, paper: PaperVerdict, complete: bool) -> Record {
    let settlement = match (paper.on_paper(), complete) {
        (true, true) => Settlement::Commit,
        (true, false) => Settlement::VoidReachedPrinter,
        (false, _) => Settlement::Void,
    };
    Record::Outcome {
        job,
        paper,
        complete,
        settlement,
    }
}

/// A streamer milestone: the book hears of each in the streamer's own terms.
pub use crate::printer::streamer::Milestone;

mod hex_16 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(v: &[u8; 16], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(v))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 16], D::Error> {
        let s = String::deserialize(d)?;
        let v = hex::decode(&s).map_err(D::Error::custom)?;
        v.try_into()
            .map_err(|_| D::Error::custom("expected 16 bytes of hex"))
    }
}

#[cfg(test)]
mod tests;
