//! The backend's job book and settlement journal (see [`super`]): every record the book
//! decides is journaled and fsynced before its effect ([`Books::record`]), the streamer's
//! milestones are journaled from the streaming thread ([`JournalMilestones`]), jobs an earlier
//! run left are settled first ([`Actor::recover`]), and settlements are sent and re-sent with
//! their original request ids ([`Actor::kick_sends`]) until the vendor answers.

use super::*;

/// The body of an `authorize` request as the journal keeps it (CBOR, hex), so a restarted
/// counter sends the very same request again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct AuthorizeBody {
    pub(super) amount_cents: u64,
    pub(super) item: wire::WireItem,
    pub(super) origin_zip: String,
}

impl AuthorizeBody {
    pub(super) fn to_hex(&self) -> String {
        let mut buf = Vec::new();
        // CBOR of plain data into a Vec cannot fail.
        let _ = ciborium::into_writer(self, &mut buf);
        hex::encode(buf)
    }

    pub(super) fn from_hex(s: &str) -> Option<AuthorizeBody> {
        let bytes = hex::decode(s).ok()?;
        ciborium::from_reader(bytes.as_slice()).ok()
    }
}

/// The job book and its journal. Shared with the streaming thread, which journals the
/// indicium milestones before their effect.
#[derive(Debug)]
pub(super) struct Books {
    pub(super) book: JobBook,
    pub(super) journal: Journal,
}

#[derive(Debug, thiserror::Error)]
pub(super) enum BookError {
    #[error("{0}")]
    Refused(Refusal),
    #[error(transparent)]
    Journal(JournalError),
}

impl Books {
    /// Journals what the book decided (durably), then applies it.
    pub(super) fn record(
        &mut self,
        decided: Result<Vec<Record>, Refusal>,
    ) -> Result<Vec<Record>, BookError> {
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

pub(super) type SharedBooks = Arc<Mutex<Books>>;

/// The streamer's milestones, journaled through the job book from the streaming thread.
pub(super) struct JournalMilestones {
    pub(super) books: SharedBooks,
    pub(super) key: JobKey,
}

impl Milestones for JournalMilestones {
    fn reached(&mut self, m: streamer::Milestone) -> Result<(), String> {
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
pub(super) fn verdict(outcome: &JobOutcome) -> (PaperVerdict, bool) {
    let paper = match outcome.indicium() {
        IndiciumPaper::NotSent | IndiciumPaper::Cleared => PaperVerdict::NotOnPaper,
        IndiciumPaper::Printed => PaperVerdict::Printed,
        IndiciumPaper::AssumedPrinted => PaperVerdict::AssumedPrinted,
    };
    (paper, matches!(outcome, JobOutcome::Completed { .. }))
}

impl Actor {
    /// Journals what the book decides; refusals and journal failures come back as words.
    pub(super) fn record(
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

    pub(super) fn with_book<T>(&self, f: impl FnOnce(&JobBook) -> T) -> Option<T> {
        let books = self.books.as_ref()?;
        let b = books.lock().ok()?;
        Some(f(&b.book))
    }

    /// The UI's id for a job, giving one to a job an earlier run left.
    pub(super) fn job_id(&mut self, key: JobKey) -> JobId {
        if let Some(j) = self.by_key.get(&key) {
            return *j;
        }
        self.next_last_run_job += 1;
        let j = JobId(LAST_RUN_JOB_BIT | self.next_last_run_job);
        self.by_key.insert(key, j);
        j
    }

    pub(super) fn amount_of(&self, key: &JobKey) -> Cents {
        self.with_book(|b| b.get(key).map(|e| e.amount_cents))
            .flatten()
            .and_then(|c| Cents::new(c).ok())
            .unwrap_or(Cents::ZERO)
    }

    pub(super) fn piece_of(&self, key: &JobKey) -> Option<u64> {
        self.with_book(|b| b.get(key).and_then(|e| e.piece_serial))
            .flatten()
    }

    /// Tells the UI what the recorded records mean for each job, then sends what is due.
    pub(super) async fn after(&mut self, recs: &[Record]) {
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
    pub(super) async fn numbered(&self, job: JobId, piece: Option<u64>) {
        if let (Some(serial), Some(meter)) = (piece, &self.meter) {
            self.emit(Backend::Numbered {
                job,
                number: PieceNumber::new(meter.clone(), serial),
            })
            .await;
        }
    }

    pub(super) async fn report_open(&mut self) {
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
    pub(super) fn kick_sends(&mut self) {
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

    /// Settles what the last run left: jobs that never printed are voided at once; a job
    /// the last run left on the printer waits for the printer's resync.
    pub(super) async fn recover(&mut self) {
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

    /// Keeps what the UI needs of a job of this run, bounded: at [`JOBS_MAX`] the oldest job
    /// the book no longer holds open makes room.
    pub(super) fn remember(&mut self, job: JobId, rec: UiJob) -> bool {
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

    pub(super) async fn on_settled(
        &mut self,
        key: JobKey,
        result: Result<wire::PieceDone, Failure>,
    ) {
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
}
