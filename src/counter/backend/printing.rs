//! The backend's printers (see [`super`]): status polls and reports to the vendor, the resync
//! after a run that stopped mid-print, printing an authorized item once (the port lent to the
//! streamer, downloads of bundles paused while it prints), its outcome, and text printouts
//! (receipts, close-outs) one at a time.

use super::*;

pub(super) fn printer_report(s: PrinterStatus) -> wire::PrinterReport {
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
    /// The last run stopped mid-print and the link is up: resync the printer now.
    pub(super) fn maybe_resync(&mut self) {
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
    pub(super) fn resync(&mut self) {
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

    pub(super) async fn on_resynced(&mut self, report: Option<streamer::ResyncReport>) {
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
                    .map(|e| (e.key, e.print_seq, e.stage))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        let mut recs = Vec::new();
        for (key, seq, stage) in mid {
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
            tracing::info!(
                ?stage,
                resynced = report.is_some(),
                printer_settled = report.as_ref().is_some_and(|r| r.settled),
                indicium_seen = resync.indicium_id_seen,
                end_seen = resync.end_id_seen,
                "the last run's job, as its printer tells it"
            );
            match self.record(|b| b.decide_recovered(key, resync)) {
                Ok(r) => recs.extend(r),
                Err(e) => tracing::error!(%e, "last run's job not settled"),
            }
        }
        self.after(&recs).await;
    }

    pub(super) async fn set_printer(&mut self, s: PrinterStatus) {
        if self.printer_status != s || self.reported_printer.is_none() {
            self.printer_status = s;
            self.emit(Backend::PrinterStatus(s)).await;
        }
        self.report_printer();
    }

    /// Sends the vendor the printer's status unless it already has it on this session. One
    /// report at a time; a lost one is sent again at the next status poll, resume or sign-in.
    pub(super) fn report_printer(&mut self) {
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

    pub(super) fn on_printer_reported(&mut self, status: PrinterStatus, ok: bool) {
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

    /// The port is free again (`port` is what the task that used it hands back): a due
    /// resync takes it first, then a print waiting for it, then the next printout. (A resync
    /// that waited for a timer of its own to find the port free could wait for good: the poll
    /// timer, same period, kept taking the port first while the two ticked in step.)
    pub(super) async fn port_freed(&mut self, port: Option<PrinterPort>) {
        self.port_busy = false;
        if self.port.is_none() {
            self.port = port;
        }
        self.maybe_resync();
        if let Some(next) = self.queued_print.take() {
            Box::pin(self.print(next)).await;
        }
        Box::pin(self.next_printout()).await;
    }

    /// A status poll, unless the port is busy — or a resync is due and can run: it reads the
    /// printer's state anyway, and must not wait behind the polls.
    pub(super) fn poll_printer(&mut self) {
        self.maybe_resync();
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

    pub(super) async fn print(&mut self, job: JobId) {
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

    pub(super) async fn on_printed(
        &mut self,
        job: JobId,
        key: JobKey,
        port: Option<PrinterPort>,
        outcome: JobOutcome,
    ) {
        self.printing = None;
        self.print_busy.send_replace(false);
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
        self.port_freed(port).await;
    }

    /// Queues a text printout (not value: see [`printouts`]) and starts it when its printer is
    /// free.
    pub(super) async fn printout(&mut self, kind: PrintoutKind, lines: Vec<String>) {
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
    pub(super) async fn next_printout(&mut self) {
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
