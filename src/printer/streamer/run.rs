//! The job loop (`stream_job`): chunks under the link check and the pacer, status at command
//! boundaries, milestones for the journal, the wait for the end process ID; the abort (the
//! indicium's marker, the clear, the VOID label) and the fault path.

use super::*;

pub(super) struct Run<'a> {
    pub(super) port: &'a mut PrinterPort,
    pub(super) job: &'a Job,
    pub(super) cfg: StreamConfig,
    pub(super) pacer: Pacer,
    pub(super) owed: Owed,
    pub(super) inbox: Inbox,
    pub(super) sent: usize,
    pub(super) progress: &'a watch::Sender<Progress>,
    pub(super) milestones: &'a mut dyn Milestones,
    /// The indicium's process ID came back (or the end ID did, which implies it).
    pub(super) indicium_printed: bool,
    pub(super) end_printed: bool,
    /// The indicium's process ID went out whole (its own command, or the marker sent before a
    /// cancel), so its absence after a confirmed clear means "not printed".
    pub(super) indicium_pid_sent: bool,
    /// The command cut off at `sent` was NUL-finished (before the marker).
    pub(super) command_finished: bool,
    /// At the abort, every printable indicium byte sent was followed by an ID that went out.
    pub(super) indicium_covered: bool,
    pub(super) milestone_failed: bool,
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
        // Status between commands only (docs/PRINTING.md §Printer facts: never inside another
        // command), and not between an indicium's commands: the wait for the reply would hold
        // back the next raster band while the one before it prints (§Limits).
        let inside_indicium = job
            .indicium
            .as_ref()
            .is_some_and(|r| r.start < run.sent && run.sent < r.end);
        if has_status_query(&profile)
            && since_poll >= cfg.status_poll_interval_bytes
            && job.is_boundary(run.sent)
            && !inside_indicium
        {
            since_poll = 0;
            if let Some(fault) = run.poll_status() {
                return run.fault(fault);
            }
        }
        let bytes = &job.bytes[chunk.start..chunk.end];
        debug_assert!(bytes.len() <= cfg.chunk_bytes_max.max(1));
        // ESC/POS: a command longer than the lead (a raster band, at most `receive_bytes`)
        // starts only once nothing is in flight, so all of it fits the printer's receive
        // buffer (ZPL printers take a format into memory as it comes).
        let turn = if profile.language != Language::Zpl
            && job.command_len_at(chunk.start).is_some_and(|n| n > lead)
        {
            lead
        } else {
            bytes.len()
        };
        if let Some(fault) = run.wait_turn(turn, link) {
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
    pub(super) fn publish(&self) {
        self.progress.send_replace(Progress {
            bytes_sent: self.sent,
            bytes_total: self.job.bytes.len(),
        });
    }

    pub(super) fn notify(&mut self, m: Milestone) {
        if let Err(e) = self.milestones.reached(m) {
            tracing::warn!(error = %e, milestone = ?m, "milestone observer failed; stopping the job");
            self.milestone_failed = true;
        }
    }

    /// Read what the printer sent and act on process IDs; a fault pushed by automatic status
    /// back (paper end, cover open) comes out as an error, as a vanished port does.
    pub(super) fn pump(&mut self) -> Result<(), PrinterFault> {
        self.pump_replies()?;
        match self.inbox.asb_fault {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Read what the printer sent and act on process IDs (the clear and status waits: an ASB
    /// fault is already being handled there).
    pub(super) fn pump_replies(&mut self) -> Result<(), PrinterFault> {
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
    pub(super) fn wait_replies(
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
    pub(super) fn print_deadline(&mut self) -> (Instant, Instant, Duration) {
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
    pub(super) fn await_end(&mut self, link: &watch::Receiver<LinkState>) -> JobOutcome {
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
    pub(super) fn indicium_paper(&self, clear_confirmed: bool) -> IndiciumPaper {
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
    pub(super) fn wait_turn(
        &mut self,
        len: usize,
        link: &watch::Receiver<LinkState>,
    ) -> Option<PrinterFault> {
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
    pub(super) fn poll_status(&mut self) -> Option<PrinterFault> {
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

    pub(super) fn query(&mut self, n: u8) -> Result<u8, PrinterFault> {
        let q = status_query(n);
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
    pub(super) fn mark_indicium(&mut self) -> Result<(), PrinterFault> {
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
    pub(super) fn cancel(&mut self) -> Result<(bool, bool), PrinterFault> {
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

    pub(super) fn abort(&mut self, cause: AbortCause) -> JobOutcome {
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

    pub(super) fn fault(&mut self, fault: PrinterFault) -> JobOutcome {
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

/// Whether the profile can be asked how it is mid-job: `DLE EOT` (ESC/POS) or `~HS` (ZPL).
pub(super) fn has_status_query(profile: &Profile) -> bool {
    profile.status.dle_eot || profile.language == Language::Zpl
}
