//! Resync after a counter restarted mid-job: finish or clear what the printer holds, and
//! learn which of the last run's process IDs came back (docs/PRINTING.md §Job states).

use super::*;

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
/// ([`crate::printer::compiler::symbol_store_erase`]); if the clear was not confirmed, ask for it once
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
        flush.extend_from_slice(&crate::printer::compiler::cut_bytes(&profile));
    }
    if let Some(cn) = profile.native_2d.data_matrix_cn {
        // A counter stopped between a symbol's store and its print left a signed payload in
        // the printer's symbol memory: erase it, so nothing can print it later.
        flush.extend_from_slice(&crate::printer::compiler::symbol_store_erase(cn));
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
