//! `frank printer probe PORT`: find out how to talk to an unknown printer.
//!
//! Tries common baud rates with `DLE EOT 1`, reports which status queries answer and whether
//! `DLE DC4 fn 8` is confirmed and whether `GS ( H` process IDs come back, prints a calibration
//! page (width rulers, font columns, a raster
//! band, native QR and Data Matrix tests for each candidate `cn`), measures throughput, and
//! drafts a profile for the technician to confirm against the printed page.

use std::path::Path;
use std::time::{Duration, Instant};

use super::bitmap::Bitmap;
use super::compiler::{
    CLEAR_BUFFERS, CLEAR_BUFFERS_REPLY, INIT, RASTER_NORMAL, RESYNC_PROCESS_ID, cut_bytes,
    data_matrix_native, qr_native, raster_command, status_query,
};
use super::profile::{ClearBuffer, FlowControl, Language, Profile};
use super::replies::{Reply, ReplyReader};
use super::streamer::{OpenError, PrinterPort};
use super::zpl::HostStatus;
use super::zpl::probe as zpl_probe;

/// Baud rates tried, most common first.
pub const PROBE_BAUDS: &[u32] = &[9600, 38400, 115200, 19200, 57600];
/// Wait for one status reply at a candidate baud.
pub const PROBE_REPLY_TIMEOUT_MS: u64 = 400;
/// Bytes sent to measure throughput.
pub const THROUGHPUT_SAMPLE_BYTES: usize = 8192;
/// Data Matrix `cn` numbers printed on the calibration page (Epson 54, Bixolon/Zebra 51, 55).
pub const DATA_MATRIX_CN_CANDIDATES: &[u8] = &[54, 51, 55];
/// Longest wait for the throughput sample to drain.
pub const THROUGHPUT_WAIT_MS_MAX: u64 = 30_000;

/// What the probe found.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    pub baud: u32,
    /// `DLE EOT n` for n = 1..=4: the reply byte, if any.
    pub status_replies: [Option<u8>; 4],
    /// `DLE DC4 fn 8` answered 37 25 00.
    pub clear_buffers_confirmed: bool,
    /// A `GS ( H` fn 48 process ID came back (`[status] process_id`).
    pub process_id_answered: bool,
    pub throughput_bytes_per_s: Option<u32>,
    /// The printer's language: ESC/POS (it answered `DLE EOT`) or ZPL (it answered `~HS`).
    pub language: Language,
    /// ZPL: its `~HS` answer.
    pub host_status: Option<HostStatus>,
    /// The draft profile (TOML).
    pub draft_toml: String,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error(
        "no answer to DLE EOT (ESC/POS) or ~HS (ZPL) at any of {tried:?} baud: check the cable, power, and the printer's language setting"
    )]
    NoAnswer { tried: Vec<u32> },
    #[error("printer stopped answering during the probe ({0})")]
    Lost(String),
}

/// Probe `path`. `like` gives geometry and fonts for the draft (read them off the printed
/// page and correct the draft). `baud`: try only this rate.
pub fn probe(path: &Path, like: &Profile, baud: Option<u32>) -> Result<ProbeReport, ProbeError> {
    let tried: Vec<u32> = baud.map_or_else(|| PROBE_BAUDS.to_vec(), |b| vec![b]);
    let mut base = like.clone();
    base.serial.flow_control = FlowControl::None;
    let mut found = None;
    for &b in &tried {
        let mut port = PrinterPort::open(path, &base, Some(b))?;
        if query(&mut port, 1).is_some() {
            found = Some((b, port));
            break;
        }
        // No ESC/POS status: a ZPL printer answers `~HS` (docs/PRINTING.md §ZPL).
        let timeout = Duration::from_millis(PROBE_REPLY_TIMEOUT_MS);
        if let Some(status) = zpl_probe::host_status(&mut port, timeout) {
            let (_, fault) =
                port.write_counted(&zpl_probe::calibration_format(like), Duration::from_secs(5));
            if let Some(f) = fault {
                return Err(ProbeError::Lost(f.to_string()));
            }
            let draft = zpl_probe::draft(like, b, &status);
            return Ok(ProbeReport {
                baud: b,
                status_replies: [None; 4],
                clear_buffers_confirmed: false,
                process_id_answered: false,
                throughput_bytes_per_s: None,
                language: Language::Zpl,
                host_status: Some(status),
                draft_toml: draft.to_toml(),
            });
        }
    }
    let Some((baud, mut port)) = found else {
        return Err(ProbeError::NoAnswer { tried });
    };
    let status_replies = [1, 2, 3, 4].map(|n| query(&mut port, n));
    let clear_buffers_confirmed = clear_buffers(&mut port);
    let process_id_answered = process_id(&mut port);
    print_calibration(&mut port, like).map_err(|e| ProbeError::Lost(e.to_string()))?;
    let throughput = measure_throughput(&mut port);
    let mut draft = like.clone();
    draft.id = "draft".into();
    draft.name = format!("Draft from probe ({})", like.name);
    draft.notes = format!(
        "Drafted by `frank printer probe` at {baud} baud from {}. Confirm width, dpi, fonts and \
         native cn against the calibration page before use.",
        like.id
    );
    draft.serial.baud = baud;
    draft.status.dle_eot = status_replies[0].is_some();
    draft.status.process_id = process_id_answered;
    draft.clear_buffer = if clear_buffers_confirmed {
        ClearBuffer::DleDc4
    } else {
        ClearBuffer::NulInit
    };
    if let Some(t) = throughput {
        draft.throughput_bytes_per_s = t.max(10);
    }
    Ok(ProbeReport {
        baud,
        status_replies,
        clear_buffers_confirmed,
        process_id_answered,
        throughput_bytes_per_s: throughput,
        language: Language::EscPos,
        host_status: None,
        draft_toml: draft.to_toml(),
    })
}

fn query(port: &mut PrinterPort, n: u8) -> Option<u8> {
    let timeout = Duration::from_millis(PROBE_REPLY_TIMEOUT_MS);
    let (_, fault) = port.write_counted(&status_query(n), timeout);
    if fault.is_some() {
        return None;
    }
    let got = port.read_until(1, Instant::now() + timeout).ok()?;
    got.first().copied().filter(|b| b & 0x93 == 0x12)
}

fn clear_buffers(port: &mut PrinterPort) -> bool {
    let timeout = Duration::from_millis(PROBE_REPLY_TIMEOUT_MS);
    let (_, fault) = port.write_counted(&CLEAR_BUFFERS, timeout);
    fault.is_none()
        && port
            .read_pattern(&CLEAR_BUFFERS_REPLY, Instant::now() + timeout)
            .unwrap_or(false)
}

/// Send a process ID with nothing before it and see whether `37 22 d1..d4 00` comes back
/// (read through the one reply reader, so a stray status byte is not mistaken for it).
fn process_id(port: &mut PrinterPort) -> bool {
    let timeout = Duration::from_millis(PROBE_REPLY_TIMEOUT_MS);
    let (_, fault) = port.write_counted(&RESYNC_PROCESS_ID.command(), timeout);
    if fault.is_some() {
        return false;
    }
    let deadline = Instant::now() + timeout;
    let mut reader = ReplyReader::new();
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let Ok(got) = port.read_until(1, deadline) else {
            return false;
        };
        reader.push_all(&got, &mut out);
        if out.contains(&Reply::ProcessId(RESYNC_PROCESS_ID)) {
            return true;
        }
    }
    false
}

/// The calibration page's bytes.
pub fn calibration_bytes(like: &Profile) -> Vec<u8> {
    let mut v = INIT.to_vec();
    let line = |v: &mut Vec<u8>, s: &str| {
        v.extend_from_slice(s.as_bytes());
        v.push(b'\n');
    };
    line(&mut v, "FRANK PRINTER CALIBRATION");
    line(
        &mut v,
        &format!("assumed: {} px at {} dpi", like.media_width_px, like.dpi),
    );
    // Width ruler: a tick every 8 dots, taller every 64, a full-width bar.
    let w = like.media_width_px;
    let mut ruler = Bitmap::new(w, 40);
    ruler.fill_rect(0, 0, w, 4, true);
    for x in (0..w).step_by(8) {
        let h = if x % 64 == 0 { 36 } else { 16 };
        ruler.fill_rect(x, 4, 1, h, true);
    }
    ruler.fill_rect(w.saturating_sub(2), 0, 2, 40, true);
    v.extend_from_slice(&raster_command(&ruler, RASTER_NORMAL));
    line(&mut v, "ruler: tick = 8 dots, long tick = 64 dots");
    for f in like.fonts.values() {
        let cols = f.columns as usize;
        let digits: String = (0..cols)
            // i % 10 < 10: the cast is exact.
            .map(|i| char::from(b'0' + (i % 10) as u8))
            .collect();
        line(&mut v, &format!("{} ({} columns):", f.name, cols));
        line(&mut v, &digits);
    }
    line(&mut v, "QR cn 49:");
    // Cannot fail: the payload is short and non-empty.
    if let Ok(cmds) = qr_native(49, b"FRANK QR TEST", 4) {
        for c in cmds {
            v.extend_from_slice(&c);
        }
    }
    v.push(b'\n');
    for &cn in DATA_MATRIX_CN_CANDIDATES {
        line(&mut v, &format!("Data Matrix cn {cn}:"));
        // Cannot fail: the payload is short and non-empty.
        if let Ok(cmds) = data_matrix_native(cn, format!("FRANK DM {cn}").as_bytes(), 4) {
            for c in cmds {
                v.extend_from_slice(&c);
            }
        }
        v.push(b'\n');
    }
    line(
        &mut v,
        "Mark which symbols printed; set native_2d in the draft.",
    );
    v.extend_from_slice(&cut_bytes(like));
    v
}

fn print_calibration(port: &mut PrinterPort, like: &Profile) -> Result<(), String> {
    let bytes = calibration_bytes(like);
    let (_, fault) = port.write_counted(&bytes, Duration::from_secs(5));
    match fault {
        Some(f) => Err(f.to_string()),
        None => Ok(()),
    }
}

/// Send a blank raster block, then time until the printer answers a status query behind it.
fn measure_throughput(port: &mut PrinterPort) -> Option<u32> {
    // Let the calibration page drain first.
    query_wait(port, Duration::from_millis(THROUGHPUT_WAIT_MS_MAX))?;
    // A blank image 512 dots (64 bytes) wide, THROUGHPUT_SAMPLE_BYTES in all.
    let rows = u32::try_from(THROUGHPUT_SAMPLE_BYTES / 64).unwrap_or(u32::MAX);
    let block = raster_command(&Bitmap::new(512, rows), RASTER_NORMAL);
    let t0 = Instant::now();
    let (n, fault) = port.write_counted(&block, Duration::from_secs(5));
    if fault.is_some() {
        return None;
    }
    query_wait(port, Duration::from_millis(THROUGHPUT_WAIT_MS_MAX))?;
    let secs = t0.elapsed().as_secs_f64().max(1e-3);
    // A rate of bytes a second through a serial line, far below u32::MAX (the cast saturates).
    Some((n as f64 / secs) as u32)
}

fn query_wait(port: &mut PrinterPort, max: Duration) -> Option<u8> {
    let (_, fault) = port.write_counted(&status_query(1), Duration::from_secs(5));
    if fault.is_some() {
        return None;
    }
    port.read_until(1, Instant::now() + max)
        .ok()?
        .first()
        .copied()
}
