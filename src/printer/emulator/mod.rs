//! The virtual printer: a pty pair that behaves like an ESC/POS printer, or — on a profile with
//! `language = "zpl"` — like a Zebra ZPL printer ([`zpl`]: the same line, buffer, faults, pages
//! and control socket, a ZPL engine behind them).
//!
//! The emulator reads from the pty master only as fast as the baud rate allows, into a finite
//! receive buffer. Bytes wait there until the engine takes them: the [`parser`] takes them at the
//! profile's `throughput_bytes_per_s` while the print buffer (rows developed, not yet printed)
//! holds fewer than [`PRINT_AHEAD_ROWS_MAX`] rows; a command is developed by the [`render`]er
//! only once complete (a raster band or a Data Matrix prints only when all its bytes are in),
//! and its rows print at the engine's speed (`[engine] speed_mm_per_s` × dpi / 25.4 rows/s).
//! Process IDs (`GS ( H` fn 48) are answered when the print position passes them; a page's PNG
//! is written when its cut prints and holds exactly what printed. Real-time commands are
//! answered at receive time with Epson's reply bytes; a clear (DLE DC4 fn 8) drops the receive
//! buffer and everything not yet printed, so a cleared process ID is never answered. Paper out
//! or an open cover stops the engine where it is. Faults are injected in-process
//! ([`EmulatorHandle::inject`]) or over a Unix control socket with one-line text commands
//! (docs/PRINTING.md §Emulator control protocol).

pub mod parser;
pub mod render;
pub mod zpl;

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};

use self::parser::Parser;
use self::render::{RenderedJob, Renderer, png_bytes};
use crate::printer::compiler::{CLEAR_BUFFERS_REPLY, ProcessId};
use crate::printer::profile::{FlowControl, Language, Profile};
use crate::printer::realtime::{Realtime, RealtimeMatcher};

/// Bytes of received data kept for inspection; later bytes are counted, not kept.
pub const RECEIVED_BYTES_MAX: usize = 64 << 20;
/// Rendered jobs kept for inspection.
pub const JOBS_MAX: usize = 4096;
/// How long the I/O loop sleeps when idle.
pub const TICK_MS: u64 = 1;
/// Read chunks whose arrival time is kept (for [`EmulatorHandle::received_at`]).
pub const ARRIVALS_MAX: usize = 65_536;
/// Longest control-socket line.
pub const CONTROL_LINE_BYTES_MAX: usize = 256;
/// Most bytes read from the pty in one go.
const READ_BYTES_MAX: usize = 4096;
/// Most time an engine tick may catch up on after a late wake-up.
pub const ENGINE_CREDIT_MS: u64 = 50;
/// The print buffer: the parser takes no more bytes while this many rows wait to print.
pub const PRINT_AHEAD_ROWS_MAX: usize = 256;
/// Process IDs held while the emulator is `silent` (then sent on `resume`).
const HELD_IDS_MAX: usize = 64;
/// Process IDs answered, kept for inspection.
pub const ANSWERED_IDS_MAX: usize = 4096;

/// Emulator settings beyond the profile.
#[derive(Debug, Clone, Default)]
pub struct EmulatorOptions {
    /// Line speed; defaults to the profile's baud.
    pub baud: Option<u32>,
    /// Where to write `job-NNNN.png` for each cut page.
    pub out_dir: Option<PathBuf>,
    /// Path of the Unix control socket; none if unset.
    pub control_socket: Option<PathBuf>,
}

/// A fault to inject.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// Paper runs out once this many bytes have been received in total.
    PaperOutAfter(u64),
    PaperOut,
    PaperIn,
    CoverOpen,
    CoverClosed,
    /// Stop reading and answering (a hung printer).
    Silent,
    /// Undo `Silent`.
    Resume,
    /// Close the pty: the device disappears.
    Vanish,
}

impl Fault {
    /// Parse a control-socket line.
    pub fn parse(line: &str) -> Option<Fault> {
        let mut it = line.split_whitespace();
        let f = match (it.next()?, it.next()) {
            ("paper_out_after", Some(n)) => Fault::PaperOutAfter(n.parse().ok()?),
            ("paper_out", None) => Fault::PaperOut,
            ("paper_in", None) => Fault::PaperIn,
            ("cover_open", None) => Fault::CoverOpen,
            ("cover_closed", None) => Fault::CoverClosed,
            ("silent", None) => Fault::Silent,
            ("resume", None) => Fault::Resume,
            ("vanish", None) => Fault::Vanish,
            _ => return None,
        };
        it.next().is_none().then_some(f)
    }
}

#[derive(Debug, Default)]
struct Shared {
    received: Vec<u8>,
    received_total: u64,
    /// (offset of the chunk's first byte, when it was read), oldest first.
    arrivals: VecDeque<(u64, Instant)>,
    jobs: Vec<RenderedJob>,
    pngs: Vec<PathBuf>,
    paper_out_after: Option<u64>,
    paper_out: bool,
    cover_open: bool,
    silent: bool,
    vanish: bool,
    vanished: bool,
    overrun_bytes: u64,
    status_queries: u64,
    clears: u64,
    rx_high_water_bytes: usize,
    error: Option<String>,
    /// Process IDs answered, in order (up to [`ANSWERED_IDS_MAX`]).
    answered: Vec<ProcessId>,
    tear_off: bool,
    /// Automatic status back blocks sent.
    asb_blocks: u64,
    /// Pages on label stock that did not start at a label's top, ran past it, or were cut
    /// outside the gap.
    misaligned_labels: u64,
}

/// A snapshot of the emulator's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EmulatorStats {
    pub received_total: u64,
    pub status_queries: u64,
    pub clears: u64,
    /// Bytes dropped because the receive buffer was full (flow control none).
    pub overrun_bytes: u64,
    pub rx_high_water_bytes: usize,
    pub paper_out: bool,
    pub vanished: bool,
    pub process_ids_answered: usize,
    /// Automatic status back blocks sent (`GS a` on an ASB profile).
    pub asb_blocks: u64,
    /// Pages on label stock that were misaligned ([`render::LabelFit::misaligned`]).
    pub misaligned_labels: u64,
}

/// A running virtual printer.
pub struct EmulatorHandle {
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    device: PathBuf,
    control: Option<PathBuf>,
    threads: Vec<JoinHandle<()>>,
}

fn lock(m: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic in the I/O thread poisons the lock; the data is still the best we have.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

pub struct Emulator;

impl Emulator {
    /// Open a pty pair and start emulating `profile` on it.
    pub fn spawn(profile: &Profile, opts: EmulatorOptions) -> std::io::Result<EmulatorHandle> {
        let pty = nix::pty::openpty(None, None)?;
        for fd in [pty.master.as_fd(), pty.slave.as_fd()] {
            let mut t = tcgetattr(fd)?;
            cfmakeraw(&mut t);
            tcsetattr(fd, SetArg::TCSANOW, &t)?;
        }
        let flags = OFlag::from_bits_truncate(fcntl(pty.master.as_raw_fd(), FcntlArg::F_GETFL)?);
        fcntl(
            pty.master.as_raw_fd(),
            FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK),
        )?;
        let device = nix::unistd::ttyname(pty.slave.as_fd())?;
        if let Some(dir) = &opts.out_dir {
            std::fs::create_dir_all(dir)?;
        }
        let shared = Arc::new(Mutex::new(Shared::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let control = match &opts.control_socket {
            Some(path) => {
                let _ = std::fs::remove_file(path);
                let listener = UnixListener::bind(path)?;
                listener.set_nonblocking(true)?;
                let (sh, st) = (shared.clone(), stop.clone());
                threads.push(std::thread::spawn(move || control_loop(listener, sh, st)));
                Some(path.clone())
            }
            None => None,
        };
        let engine = Engine {
            profile: profile.clone(),
            baud: opts.baud.unwrap_or(profile.serial.baud),
            out_dir: opts.out_dir.clone(),
            master: Some(File::from(pty.master)),
            slave: Some(pty.slave),
            shared: shared.clone(),
            stop: stop.clone(),
        };
        threads.push(std::thread::spawn(move || engine.run()));
        Ok(EmulatorHandle {
            shared,
            stop,
            device,
            control,
            threads,
        })
    }
}

impl EmulatorHandle {
    /// The slave side: what a streamer opens.
    pub fn device_path(&self) -> &Path {
        &self.device
    }

    pub fn control_socket(&self) -> Option<&Path> {
        self.control.as_deref()
    }

    /// Every byte received so far (up to [`RECEIVED_BYTES_MAX`]).
    pub fn received_bytes(&self) -> Vec<u8> {
        lock(&self.shared).received.clone()
    }

    /// When the byte at `offset` (counting every byte received, from 0) was read off the line,
    /// to within the emulator's tick; `None` if it has not arrived or its chunk has left the
    /// arrival log ([`ARRIVALS_MAX`] chunks).
    pub fn received_at(&self, offset: u64) -> Option<Instant> {
        let s = lock(&self.shared);
        if offset >= s.received_total {
            return None;
        }
        let i = s.arrivals.partition_point(|(start, _)| *start <= offset);
        (i > 0).then(|| s.arrivals[i - 1].1)
    }

    /// Pages cut so far.
    pub fn jobs(&self) -> Vec<RenderedJob> {
        lock(&self.shared).jobs.clone()
    }

    /// PNG files written so far.
    pub fn pngs(&self) -> Vec<PathBuf> {
        lock(&self.shared).pngs.clone()
    }

    pub fn stats(&self) -> EmulatorStats {
        let s = lock(&self.shared);
        EmulatorStats {
            received_total: s.received_total,
            status_queries: s.status_queries,
            clears: s.clears,
            overrun_bytes: s.overrun_bytes,
            rx_high_water_bytes: s.rx_high_water_bytes,
            paper_out: s.paper_out,
            vanished: s.vanished,
            process_ids_answered: s.answered.len(),
            asb_blocks: s.asb_blocks,
            misaligned_labels: s.misaligned_labels,
        }
    }

    /// Process IDs answered so far, in order.
    pub fn answered_ids(&self) -> Vec<ProcessId> {
        lock(&self.shared).answered.clone()
    }

    /// Tear off what has printed of the current, uncut page: it becomes a page (and a PNG)
    /// with [`render::CutKind::Torn`]. Acted on by the engine within a tick.
    pub fn tear_off(&self) {
        lock(&self.shared).tear_off = true;
    }

    /// An I/O error that stopped the emulator, if any.
    pub fn error(&self) -> Option<String> {
        lock(&self.shared).error.clone()
    }

    pub fn inject(&self, fault: Fault) {
        apply_fault(&mut lock(&self.shared), fault);
    }

    /// Whether the emulator has stopped (vanished or failed).
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Stop the threads, close the pty and remove the control socket.
    pub fn shutdown(mut self) {
        self.stop_now();
    }

    fn stop_now(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        if let Some(p) = &self.control {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for EmulatorHandle {
    fn drop(&mut self) {
        self.stop_now();
    }
}

fn apply_fault(s: &mut Shared, f: Fault) {
    match f {
        Fault::PaperOutAfter(n) => s.paper_out_after = Some(n),
        Fault::PaperOut => s.paper_out = true,
        Fault::PaperIn => {
            s.paper_out = false;
            s.paper_out_after = None;
        }
        Fault::CoverOpen => s.cover_open = true,
        Fault::CoverClosed => s.cover_open = false,
        Fault::Silent => s.silent = true,
        Fault::Resume => s.silent = false,
        Fault::Vanish => s.vanish = true,
    }
}

/// Epson real-time status replies (docs/PRINTING.md §Replies Frank reads): one byte shaped 0xx1xx10.
pub fn status_reply(n: u8, paper_out: bool, cover_open: bool) -> u8 {
    let base = 0x12;
    match n {
        1 if paper_out || cover_open => base | 0x08,
        2 => {
            base | if cover_open { 0x04 } else { 0 }
                | if paper_out { 0x20 } else { 0 }
                | if paper_out || cover_open { 0x40 } else { 0 }
        }
        4 if paper_out => base | 0x60,
        _ => base,
    }
}

/// The four automatic status back bytes (Epson `GS a`): 1st byte 0x10 fixed, bit 3 offline,
/// bit 5 cover open; 2nd byte 0; 3rd byte bits 2–3 roll paper end; 4th byte 0.
pub fn asb_block(paper_out: bool, cover_open: bool) -> [u8; 4] {
    let offline = paper_out || cover_open;
    [
        0x10 | if offline { 0x08 } else { 0 } | if cover_open { 0x20 } else { 0 },
        0x00,
        if paper_out { 0x0c } else { 0 },
        0x00,
    ]
}

/// The emulator's time budgets, as credits refilled by elapsed time: bytes the line carries
/// (baud / 10 a second), bytes the parser takes out of the receive buffer
/// (`throughput_bytes_per_s`), rows the engine prints (`speed_mm_per_s` × dpi / 25.4). Line
/// credit never banks more than a few ms: an idle line does not store speed. The engine's
/// credits bank up to [`ENGINE_CREDIT_MS`] so a late tick on a busy machine does not make it
/// slower than the profile says (the host paces by that speed).
struct Clock {
    line_bytes_per_s: f64,
    process_bytes_per_s: f64,
    rows_per_s: f64,
    line_credit_max: f64,
    process_credit_max: f64,
    row_credit_max: f64,
    line_credit: f64,
    process_credit: f64,
    row_credit: f64,
    last: Instant,
}

impl Clock {
    fn new(profile: &Profile, baud: u32) -> Self {
        let line_bytes_per_s = f64::from(baud) / 10.0;
        let process_bytes_per_s = f64::from(profile.throughput_bytes_per_s);
        let rows_per_s = profile.engine_rows_per_s();
        let engine_s = ENGINE_CREDIT_MS as f64 / 1000.0;
        Clock {
            line_bytes_per_s,
            process_bytes_per_s,
            rows_per_s,
            line_credit_max: (line_bytes_per_s * 0.004).max(16.0),
            process_credit_max: (process_bytes_per_s * engine_s).max(16.0),
            row_credit_max: (rows_per_s * engine_s).max(1.0),
            line_credit: 0.0,
            process_credit: 0.0,
            row_credit: 0.0,
            last: Instant::now(),
        }
    }

    /// Refill the credits for the time since the last tick.
    fn tick(&mut self) {
        let now = Instant::now();
        let dt = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.line_credit =
            (self.line_credit + dt * self.line_bytes_per_s).min(self.line_credit_max);
        self.process_credit =
            (self.process_credit + dt * self.process_bytes_per_s).min(self.process_credit_max);
        self.row_credit = (self.row_credit + dt * self.rows_per_s).min(self.row_credit_max);
    }
}

struct Engine {
    profile: Profile,
    baud: u32,
    out_dir: Option<PathBuf>,
    master: Option<File>,
    slave: Option<OwnedFd>,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl Engine {
    fn run(mut self) {
        let pumped = match self.profile.language {
            Language::Zpl => self.pump_zpl(),
            _ => self.pump(),
        };
        if let Err(e) = pumped {
            lock(&self.shared).error = Some(e.to_string());
        }
        // Closing both ends makes the device vanish for anyone holding it.
        self.master = None;
        self.slave = None;
    }

    fn pump(&mut self) -> std::io::Result<()> {
        let rx_cap = self.profile.receive_buffer_bytes as usize;
        let mut rx: VecDeque<u8> = VecDeque::with_capacity(rx_cap);
        let mut realtime = RealtimeMatcher::default();
        let mut parser = Parser::new();
        let mut renderer = Renderer::new(&self.profile);
        let mut clock = Clock::new(&self.profile, self.baud);
        let mut held: Vec<ProcessId> = Vec::new();
        let mut buf = vec![0u8; READ_BYTES_MAX];
        let mut page_no = 0usize;
        // Automatic status back: enabled by GS a, and the (paper out, cover open) last sent.
        let mut asb_on = false;
        let mut asb_sent: Option<(bool, bool)> = None;
        while !self.stop.load(Ordering::SeqCst) {
            clock.tick();
            let (silent, vanish, halted, tear) = {
                let mut s = lock(&self.shared);
                (
                    s.silent,
                    s.vanish,
                    s.paper_out || s.cover_open,
                    std::mem::take(&mut s.tear_off),
                )
            };
            if vanish {
                lock(&self.shared).vanished = true;
                return Ok(());
            }
            let n = self.read_line(&mut clock, silent, rx.len(), &mut buf)?;
            for &b in &buf[..n] {
                self.receive(
                    b,
                    &mut realtime,
                    &mut rx,
                    &mut parser,
                    &mut renderer,
                    rx_cap,
                )?;
            }
            if asb_on && !silent {
                let now_state = {
                    let s = lock(&self.shared);
                    (s.paper_out, s.cover_open)
                };
                if asb_sent != Some(now_state) {
                    asb_sent = Some(now_state);
                    self.reply(&asb_block(now_state.0, now_state.1));
                    lock(&self.shared).asb_blocks += 1;
                }
            }
            let mut worked = 0;
            if !halted {
                // Processing: complete commands are developed while the print buffer has room.
                while clock.process_credit >= 1.0
                    && renderer.unprinted_rows() < PRINT_AHEAD_ROWS_MAX
                {
                    let Some(b) = rx.pop_front() else { break };
                    clock.process_credit -= 1.0;
                    worked += 1;
                    if let Some(cmd) = parser.push(b) {
                        if let parser::Command::AutoStatusBack(n) = cmd {
                            // GS a n: on profiles that claim ASB, the status now and on every
                            // change; n = 0 turns it off.
                            asb_on = self.profile.status.asb && n != 0;
                            asb_sent = None;
                        }
                        renderer.apply(cmd);
                        // Zero-row events (a process ID with nothing before it) act at once.
                        renderer.advance(0);
                    }
                }
                // Printing: rows at the engine's speed.
                let rows = renderer.advance(clock.row_credit.floor() as usize);
                clock.row_credit -= rows as f64;
                if renderer.unprinted_rows() == 0 {
                    clock.row_credit = clock.row_credit.min(1.0);
                }
                if rx.is_empty() {
                    clock.process_credit = clock.process_credit.min(16.0);
                }
                worked += rows;
            }
            if tear {
                renderer.tear_off();
            }
            // Pages first: once a process ID is answered, the paper before it is there to see.
            for job in renderer.take_jobs() {
                page_no += 1;
                self.finish_page(job, page_no)?;
            }
            held.extend(renderer.take_process_ids());
            if !held.is_empty() && !silent {
                for id in std::mem::take(&mut held) {
                    self.reply(&id.reply());
                    let mut s = lock(&self.shared);
                    if s.answered.len() < ANSWERED_IDS_MAX {
                        s.answered.push(id);
                    }
                }
            }
            if held.len() > HELD_IDS_MAX {
                // Epson: a printer that cannot send keeps only the latest ID.
                held.drain(..held.len() - 1);
            }
            if n == 0 && worked == 0 {
                std::thread::sleep(Duration::from_millis(TICK_MS));
            }
        }
        Ok(())
    }

    fn read_master(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let Some(m) = self.master.as_mut() else {
            return Ok(0);
        };
        match m.read(buf) {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(0),
            Err(e) if e.raw_os_error() == Some(nix::libc::EIO) => Ok(0),
            Err(e) => Err(e),
        }
    }

    fn reply(&mut self, bytes: &[u8]) {
        if let Some(m) = self.master.as_mut() {
            // Replies are a few bytes; a full pty output buffer means nobody is listening.
            let _ = m.write_all(bytes);
        }
    }

    fn receive(
        &mut self,
        b: u8,
        realtime: &mut RealtimeMatcher,
        rx: &mut VecDeque<u8>,
        parser: &mut Parser,
        renderer: &mut Renderer,
        rx_cap: usize,
    ) -> std::io::Result<()> {
        let hit = realtime.push(b);
        let (paper_out, cover_open) = self.take_in(b);
        match hit {
            Some(Realtime::Status(_)) => lock(&self.shared).status_queries += 1,
            Some(Realtime::ClearBuffers) => lock(&self.shared).clears += 1,
            None => {}
        }
        match hit {
            Some(Realtime::Status(n)) => {
                self.reply(&[status_reply(n, paper_out, cover_open)]);
            }
            Some(Realtime::ClearBuffers) => {
                rx.clear();
                parser.reset();
                renderer.clear_unprinted();
                self.reply(&CLEAR_BUFFERS_REPLY);
                return Ok(());
            }
            None => {}
        }
        self.keep(b, rx, rx_cap);
        Ok(())
    }

    /// A byte off the line is counted (and kept for inspection); paper runs out here when
    /// `paper_out_after` says so. Returns (paper out, cover open) as they now are.
    fn take_in(&self, b: u8) -> (bool, bool) {
        let mut s = lock(&self.shared);
        s.received_total += 1;
        if s.received.len() < RECEIVED_BYTES_MAX {
            s.received.push(b);
        }
        if s.paper_out_after.is_some_and(|n| s.received_total > n) {
            s.paper_out = true;
        }
        (s.paper_out, s.cover_open)
    }

    /// Into the receive buffer, or counted as overrun when it is full.
    fn keep(&self, b: u8, rx: &mut VecDeque<u8>, rx_cap: usize) {
        if rx.len() >= rx_cap {
            lock(&self.shared).overrun_bytes += 1;
        } else {
            rx.push_back(b);
            let mut s = lock(&self.shared);
            s.rx_high_water_bytes = s.rx_high_water_bytes.max(rx.len());
        }
    }

    /// Read what the line's speed allows into `buf` (with handshaking, no more than the
    /// receive buffer has room for; nothing while `silent`), and log the chunk's arrival.
    fn read_line(
        &mut self,
        clock: &mut Clock,
        silent: bool,
        rx_len: usize,
        buf: &mut [u8],
    ) -> std::io::Result<usize> {
        let mut want = clock.line_credit.floor() as usize;
        if self.profile.serial.flow_control != FlowControl::None {
            // Busy: with handshaking the host stops when the buffer is full.
            want = want.min((self.profile.receive_buffer_bytes as usize).saturating_sub(rx_len));
        }
        let n = if silent || want == 0 {
            0
        } else {
            let cap = want.min(buf.len());
            self.read_master(&mut buf[..cap])?
        };
        clock.line_credit -= n as f64;
        if n > 0 {
            let mut s = lock(&self.shared);
            if s.arrivals.len() >= ARRIVALS_MAX {
                s.arrivals.pop_front();
            }
            let start = s.received_total;
            s.arrivals.push_back((start, Instant::now()));
        }
        Ok(n)
    }

    fn finish_page(&mut self, job: RenderedJob, page_no: usize) -> std::io::Result<()> {
        let png = match &self.out_dir {
            Some(dir) => {
                let path = dir.join(format!("job-{page_no:04}.png"));
                let bytes = png_bytes(&job.image).map_err(std::io::Error::other)?;
                std::fs::write(&path, bytes)?;
                Some(path)
            }
            None => None,
        };
        let mut s = lock(&self.shared);
        if job.label.is_some_and(|l| l.misaligned) {
            s.misaligned_labels += 1;
        }
        if s.jobs.len() < JOBS_MAX {
            s.jobs.push(job);
        }
        if let Some(p) = png {
            s.pngs.push(p);
        }
        Ok(())
    }
}

fn control_loop(listener: UnixListener, shared: Arc<Mutex<Shared>>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let _ = stream.set_nonblocking(false);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut out = match stream.try_clone() {
                    Ok(s) => s,
                    Err(_) => continue,
                };
                let mut reader = BufReader::new(stream).take(CONTROL_LINE_BYTES_MAX as u64 * 64);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                    let answer = control_command(&shared, line.trim());
                    if out.write_all(answer.as_bytes()).is_err() {
                        break;
                    }
                    line.clear();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// One control-socket command → one reply line.
fn control_command(shared: &Mutex<Shared>, line: &str) -> String {
    if line.len() > CONTROL_LINE_BYTES_MAX {
        return format!("error line longer than {CONTROL_LINE_BYTES_MAX} bytes\n");
    }
    if line == "tear_off" {
        lock(shared).tear_off = true;
        return "ok\n".into();
    }
    if line == "status" {
        let s = lock(shared);
        return format!(
            "ok received={} jobs={} paper_out={} cover_open={} silent={} status_queries={} clears={} overrun_bytes={} asb_blocks={} misaligned_labels={}\n",
            s.received_total,
            s.jobs.len(),
            s.paper_out,
            s.cover_open,
            s.silent,
            s.status_queries,
            s.clears,
            s.overrun_bytes,
            s.asb_blocks,
            s.misaligned_labels
        );
    }
    match Fault::parse(line) {
        Some(f) => {
            apply_fault(&mut lock(shared), f);
            "ok\n".into()
        }
        None => "error unknown command (paper_out_after N | paper_out | paper_in | cover_open | cover_closed | silent | resume | vanish | tear_off | status)\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_bytes_have_epson_shape() {
        for n in 1..=4 {
            for (p, c) in [(false, false), (true, false), (false, true)] {
                assert_eq!(status_reply(n, p, c) & 0x93, 0x12);
            }
        }
        assert_eq!(status_reply(4, true, false), 0x72);
        assert_eq!(status_reply(1, false, false), 0x12);
        assert_eq!(status_reply(2, false, true) & 0x04, 0x04);
    }

    #[test]
    fn arrival_times_are_logged_per_read() {
        let profile = crate::printer::profile::shipped("virtual").unwrap();
        let h = Emulator::spawn(&profile, EmulatorOptions::default()).unwrap();
        assert_eq!(h.received_at(0), None);
        let before = Instant::now();
        let mut dev = std::fs::OpenOptions::new()
            .write(true)
            .open(h.device_path())
            .unwrap();
        dev.write_all(b"\x1b@ab").unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while h.stats().received_total < 4 {
            assert!(Instant::now() < deadline, "bytes not received");
            std::thread::sleep(Duration::from_millis(1));
        }
        let first = h.received_at(0).unwrap();
        assert!(first >= before);
        assert!(h.received_at(3).unwrap() >= first);
        assert_eq!(h.received_at(4), None);
    }

    #[test]
    fn control_lines() {
        assert_eq!(
            Fault::parse("paper_out_after 100"),
            Some(Fault::PaperOutAfter(100))
        );
        assert_eq!(Fault::parse("vanish"), Some(Fault::Vanish));
        assert_eq!(Fault::parse("vanish now"), None);
        assert_eq!(Fault::parse("paper_out_after x"), None);
    }
}
