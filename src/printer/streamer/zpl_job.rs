//! The ZPL side of a job and a resync: `~HS` host status, `~JA` cancel, the wait for a closed
//! format to print (docs/PRINTING.md §ZPL).

use super::*;

/// ZPL (docs/PRINTING.md §ZPL): `~HS` for status and for "printed", `~JA` to cancel.
impl Run<'_> {
    /// Send `~HS` and wait for its three strings (within the drain time plus
    /// `status_reply_timeout_ms`).
    pub(super) fn host_status(&mut self) -> Result<HostStatus, PrinterFault> {
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
    pub(super) fn cancel_zpl(&mut self) -> Result<(bool, bool), PrinterFault> {
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
    pub(super) fn await_no_label_held(&mut self) -> Option<PrinterFault> {
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
    pub(super) fn await_format(&mut self) -> JobOutcome {
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
pub(super) fn resync_zpl(
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
