//! The job compiler: a [`Label`] and a [`Profile`] in, ESC/POS bytes out. No I/O.
//!
//! Output is a [`Job`]: the bytes, the offsets where each command starts (the streamer may only
//! put a `DLE EOT` status query at a command boundary), chunks of at most `chunk_bytes_max`, and
//! the byte range of the indicium so an aborted job can say whether the indicium got through.
//!
//! Text styling, init and line feeds are encoded by the `escpos` crate through a capture driver;
//! cuts, raster bands, native 2-D codes and 1-D barcodes are Frank's own bytes (escpos 0.20's
//! `partial_cut` sends `GS V 'A'`, which is feed + *full* cut; docs/PRINTING.md §Limits).

//!
//! The files of this folder, one concern each (docs/PRINTING.md §Job and markers):
//! - this file: the label and job types, the constants, `compile_with` (the element walk) and
//!   chunking;
//! - [`enc`]: the command accumulator (`Enc`) and text lines (justification, size, code pages),
//!   CODE128 barcodes;
//! - [`symbol`]: the indicium as a standard-mode element (native `GS ( k`, one raster command,
//!   quadruple density in stall-free bands);
//! - [`raster`]: `GS v 0` commands, their bands and the stall-free band rule, `GS L`;
//! - [`page`]: the postage top band in page mode;
//! - [`paper`]: feeds, cuts, label positioning (`FS ( L`), the cancel sequence;
//! - [`void`]: the VOID label printed after an abort.

use std::ops::Range;

use super::bitmap::Bitmap;
use super::profile::{ClearBuffer, CutCommand, LabelCommands, Language, Profile};

mod enc;
mod page;
mod paper;
mod raster;
mod symbol;
mod void;

pub use self::enc::*;
pub use self::page::*;
pub use self::paper::*;
pub use self::raster::*;
pub use self::symbol::*;
pub use self::void::*;

/// Default largest chunk the streamer writes between link checks.
pub const CHUNK_BYTES_MAX_DEFAULT: usize = 256;
/// Smallest chunk allowed (a command header must fit).
pub const CHUNK_BYTES_MIN: usize = 16;
/// Longest text line accepted, in characters, before the per-profile column check.
pub const TEXT_LINE_CHARS_MAX: usize = 400;
/// Largest native 2-D payload (GS ( k store takes pL pH, minus 3 header bytes).
pub const NATIVE_2D_DATA_BYTES_MAX: usize = 65_532;
/// Most elements in one label.
pub const LABEL_ELEMENTS_MAX: usize = 256;
/// Modules of quiet zone on every side of a Data Matrix (docs/INDICIUM.md §Symbol; ISO/IEC
/// 16022 asks for at least one).
pub use crate::indicium::render::QUIET_MODULES as QUIET_ZONE_MODULES;
/// `GS v 0 m xL xH yL yH`: the header before a raster band's data.
pub const RASTER_HEADER_BYTES: usize = 8;
/// Dots between the text block and the symbol's quiet zone in a top band (about 1 mm).
pub const BLOCK_GAP_PX: u32 = 8;
/// Dot rows of a font A character cell (Epson: 12 × 24) and of the space below a text line.
pub const CELL_HEIGHT_PX: u32 = 24;
pub const LINE_GAP_PX: u32 = 6;
/// `GS v 0` m: normal density; quadruple (each image dot printed 2 × 2 dots).
pub const RASTER_NORMAL: u8 = 0;
pub const RASTER_QUADRUPLE: u8 = 3;
/// Width of each bar crossing a VOID label's symbol, in modules.
pub const VOID_BAR_MODULES: u32 = 4;
/// Largest image on a VOID label, in raster bytes (it is written after an abort without
/// pacing, so it stays far below any receive buffer).
pub const VOID_IMAGE_BYTES_MAX: u32 = 512;
/// ESC L: select page mode. FF (in page mode): print the page and return to standard mode.
pub const PAGE_MODE_ON: [u8; 2] = [0x1b, 0x4c];
pub const PAGE_PRINT: [u8; 1] = [0x0c];

/// DLE DC4 fn 8: clear the receive and print buffers (real-time). Replies 37 25 00.
pub const CLEAR_BUFFERS: [u8; 10] = [0x10, 0x14, 0x08, 0x01, 0x03, 0x14, 0x01, 0x06, 0x02, 0x08];
/// `DLE EOT n`: real-time status, n = 1 printer, 2 offline cause, 3 error cause, 4 paper.
pub const fn status_query(n: u8) -> [u8; 3] {
    [0x10, 0x04, n]
}
/// The reply to [`CLEAR_BUFFERS`].
pub const CLEAR_BUFFERS_REPLY: [u8; 3] = [0x37, 0x25, 0x00];
/// `GS a n` with n = 0x0E: automatic status back for online/offline (bit 1), errors (bit 2)
/// and the roll paper sensor (bit 3); the printer then sends four status bytes at once and on
/// every change (docs/PRINTING.md §Commands).
pub const ASB_ENABLE: [u8; 3] = [0x1d, 0x61, 0x0e];
/// ESC @: initialise the printer.
pub const INIT: [u8; 2] = [0x1b, 0x40];
/// `GS ( H` fn 48 header: `1D 28 48 06 00 30 30`, then the four ID bytes.
pub const PROCESS_ID_HEADER: [u8; 7] = [0x1d, 0x28, 0x48, 0x06, 0x00, 0x30, 0x30];
/// Length of a whole `GS ( H` fn 48 command.
pub const PROCESS_ID_COMMAND_BYTES: usize = PROCESS_ID_HEADER.len() + 4;
/// Process IDs a job takes from its sequence number (indicium, end); the IDs of job `seq` are
/// `2 × (seq mod PROCESS_ID_JOBS_MAX)` and that plus one, so 0..=9997.
pub const PROCESS_ID_JOBS_MAX: u32 = 4999;
/// The process ID [`crate::printer::streamer::resync`] uses; no job uses it.
pub const RESYNC_PROCESS_ID: ProcessId = ProcessId(*b"9999");
/// ESC { n: upside-down printing on (1) / off (0).
pub const UPSIDE_DOWN_ON: [u8; 3] = [0x1b, 0x7b, 1];
pub const UPSIDE_DOWN_OFF: [u8; 3] = [0x1b, 0x7b, 0];
/// Dot rows a text line takes at height ×1 (Epson font A: 24 dots + 6 dots of line spacing);
/// used only for the print-time estimate.
pub const TEXT_LINE_ROWS: u32 = 30;

/// The four ID bytes of a `GS ( H` fn 48 process ID. Frank's IDs are four ASCII digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProcessId(pub [u8; 4]);

impl ProcessId {
    /// Four decimal digits of `n mod 10000`.
    pub fn from_number(n: u32) -> ProcessId {
        let n = n % 10_000;
        // Each quotient below is a digit (< 10): the casts are exact.
        ProcessId([
            b'0' + (n / 1000) as u8,
            b'0' + (n / 100 % 10) as u8,
            b'0' + (n / 10 % 10) as u8,
            b'0' + (n % 10) as u8,
        ])
    }

    /// The whole `GS ( H` fn 48 command: `1D 28 48 06 00 30 30 d1 d2 d3 d4`.
    pub fn command(self) -> [u8; PROCESS_ID_COMMAND_BYTES] {
        let mut c = [0u8; PROCESS_ID_COMMAND_BYTES];
        c[..PROCESS_ID_HEADER.len()].copy_from_slice(&PROCESS_ID_HEADER);
        c[PROCESS_ID_HEADER.len()..].copy_from_slice(&self.0);
        c
    }

    /// The printer's answer once the data before the ID printed: `37 22 d1 d2 d3 d4 00`.
    pub fn reply(self) -> [u8; 7] {
        [0x37, 0x22, self.0[0], self.0[1], self.0[2], self.0[3], 0x00]
    }
}

impl std::fmt::Display for ProcessId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(&self.0))
    }
}

/// A process ID placed in a job: where its command starts and its ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessIdMark {
    /// Offset of the `GS ( H` command in [`Job::bytes`].
    pub offset: usize,
    pub id: ProcessId,
}

/// How the label is laid out on paper.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Layout {
    /// Top of the label first, elements in the given order.
    #[default]
    AsGiven,
    /// The label printed rotated 180° (as label printers commonly do): the elements go out
    /// last to first under `ESC { 1`, raster images rotated by Frank, so the top of the label,
    /// where the indicium sits, prints last. Turn the paper round to read it.
    Rotated180,
}

/// Options for [`compile_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompileOptions {
    pub chunk_bytes_max: usize,
    /// Picks this job's process IDs (see [`PROCESS_ID_JOBS_MAX`]); give each job a new one.
    pub job_seq: u32,
    pub layout: Layout,
}

impl Default for CompileOptions {
    fn default() -> Self {
        CompileOptions {
            chunk_bytes_max: CHUNK_BYTES_MAX_DEFAULT,
            job_seq: 0,
            layout: Layout::AsGiven,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Align {
    #[default]
    Left,
    Center,
    Right,
}

/// One styled line of text, encoded to the profile's code pages (a character none of them has
/// is refused: [`CompileError::Unprintable`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextLine {
    pub text: String,
    pub bold: bool,
    /// Character width multiplier 1..=8.
    pub width_mul: u8,
    /// Character height multiplier 1..=8.
    pub height_mul: u8,
    pub align: Align,
}

impl TextLine {
    pub fn plain(text: &str) -> Self {
        TextLine {
            text: text.to_string(),
            bold: false,
            width_mul: 1,
            height_mul: 1,
            align: Align::Left,
        }
    }
}

/// The indicium: a ready 1-bit image, or Data Matrix data for the printer to draw natively
/// (rasterised by Frank when the profile has no native Data Matrix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Indicium {
    Image(Bitmap),
    DataMatrix {
        data: Vec<u8>,
        /// Dots per module, 1..=16.
        module_px: u8,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Element {
    Text(TextLine),
    /// An address: optional bold heading, then plain lines.
    Address {
        heading: Option<String>,
        lines: Vec<String>,
    },
    /// The indicium. At most one per label.
    Indicium(Indicium),
    /// The indicium with its human-readable block beside it: a postage label's top band
    /// (DMM 604: the indicium in the upper right). Counts as the label's one indicium.
    ///
    /// Placement, for any compiler of labels: the symbol at the label's top right with its
    /// 2-module quiet zone; the `lines` as a block at its left, top-aligned, left-aligned
    /// with each other, the block's right edge [`BLOCK_GAP_PX`] left of the quiet zone; nothing
    /// else on the band's rows (the clear zone). The first line is the legend ("US POSTAGE").
    /// Lines must fit [`block_columns`] characters (the face wraps them).
    ///
    /// ESC/POS: on `page_mode` profiles the band is composed in page mode and printed at once
    /// (`FF`); elsewhere the fallback is the symbol at the right with the lines right-aligned
    /// under it (docs/PRINTING.md §Top band). ZPL places the same band in its one format (the
    /// gap scaled with the dpi: `zpl::compiler::block_gap_dots`). The VOID label prints the
    /// lines after the legend under the crossed symbol.
    IndiciumBlock {
        symbol: Indicium,
        lines: Vec<TextLine>,
    },
    /// A CODE128 barcode (code set B) with human-readable text below.
    Barcode {
        data: String,
        height_dots: u8,
    },
    /// Feed n lines.
    Feed(u8),
}

/// What to print on one label.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Label {
    pub elements: Vec<Element>,
    /// Cut after the label (with the profile's cut command).
    pub cut: bool,
}

/// A run of job bytes the streamer writes in one go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Chunk {
    pub start: usize,
    pub end: usize,
    /// The chunk ends where a command ends, so a status query may follow it.
    pub at_command_boundary: bool,
}

/// A compiled label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub bytes: Vec<u8>,
    /// Start offsets of every command, ascending, beginning with 0.
    pub boundaries: Vec<usize>,
    pub chunks: Vec<Chunk>,
    /// Where the indicium's bytes are; `None` when the label has none.
    pub indicium: Option<Range<usize>>,
    /// Whether the indicium went out as a native 2-D command (else raster).
    pub indicium_native: bool,
    /// Where the first indicium command that can put marks on paper starts (inside
    /// `indicium`): a native symbol's print command (`GS ( k` fn 81; the commands before it
    /// only set up and store, and print nothing), a raster indicium's first band (its start).
    /// A chunk starts here, and [`super::streamer::Milestone::IndiciumSending`] is announced
    /// just before it, so a journal without that record proves nothing of the indicium printed.
    pub indicium_marks_at: Option<usize>,
    /// The process ID right after the indicium's last row (process-ID profiles with an indicium).
    /// A raster indicium also has the same ID after each of its bands (inside `indicium`), so
    /// any part of it that prints is answered for.
    pub indicium_pid: Option<ProcessIdMark>,
    /// The process ID at the job's very end (process-ID profiles): its reply means the whole
    /// job printed.
    pub end_pid: Option<ProcessIdMark>,
    /// Dot rows of paper the job advances, estimated (text lines at [`TEXT_LINE_ROWS`]); the
    /// streamer bounds its wait for the end ID with it.
    pub paper_rows_estimate: u32,
    pub layout: Layout,
    /// What the streamer prints after an abort on `void_on_abort` profiles: a fresh label with
    /// "VOID", the indicium's symbol crossed by two bars so that it cannot be decoded, and the
    /// top band's lines after its legend ([`void_label`]). The printer cannot go back over
    /// paper already printed, so this never touches the aborted label itself.
    pub void_label: Vec<u8>,
}

impl Job {
    /// Whether the first `bytes_sent` bytes include any of the indicium's that can put marks
    /// on paper ([`Self::indicium_marks_at`]).
    pub fn indicium_started(&self, bytes_sent: usize) -> bool {
        self.indicium_marks_at.is_some_and(|at| bytes_sent > at)
    }

    /// Whether `bytes_sent` bytes include the whole indicium.
    pub fn indicium_complete(&self, bytes_sent: usize) -> bool {
        self.indicium.as_ref().is_some_and(|r| bytes_sent >= r.end)
    }

    /// Whether `offset` is where a command starts (or the end of the job).
    pub fn is_boundary(&self, offset: usize) -> bool {
        offset == self.bytes.len() || self.boundaries.binary_search(&offset).is_ok()
    }

    /// Length of the command that starts at `offset` (`None` when no command starts there).
    pub fn command_len_at(&self, offset: usize) -> Option<usize> {
        let i = self.boundaries.binary_search(&offset).ok()?;
        let next = self
            .boundaries
            .get(i + 1)
            .copied()
            .unwrap_or(self.bytes.len());
        Some(next - offset)
    }

    /// Bytes left of the command that `offset` falls inside (0 at a boundary).
    pub fn remaining_in_command(&self, offset: usize) -> usize {
        if self.is_boundary(offset) {
            return 0;
        }
        let next = match self.boundaries.binary_search(&offset) {
            Ok(i) | Err(i) => self.boundaries.get(i).copied().unwrap_or(self.bytes.len()),
        };
        next.saturating_sub(offset)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    #[error("label has {0} elements, more than {LABEL_ELEMENTS_MAX}")]
    TooManyElements(usize),
    #[error("label has more than one indicium")]
    TwoIndicia,
    #[error(
        "text line {line}: {chars} characters, the {profile} fits {limit} at width x{width_mul}"
    )]
    LineTooLong {
        line: usize,
        chars: usize,
        limit: usize,
        width_mul: u8,
        profile: String,
    },
    #[error("text line {line}: size multipliers must be 1..=8, got {width_mul}x{height_mul}")]
    BadTextSize {
        line: usize,
        width_mul: u8,
        height_mul: u8,
    },
    #[error("indicium image is {width_px} px wide; {profile} prints at most {limit_px} px")]
    ImageTooWide {
        width_px: u32,
        limit_px: u32,
        profile: String,
    },
    #[error("Data Matrix: {0}")]
    DataMatrix(String),
    #[error("a GS ( k command body of {0} bytes; at most 65,535")]
    Native2dTooLong(usize),
    #[error("Data Matrix module size {0} is outside 1..=16 dots")]
    BadModuleSize(u8),
    #[error("barcode: {0}")]
    Barcode(String),
    #[error("{profile} cannot print {what}")]
    Unsupported { profile: String, what: &'static str },
    #[error("text line {line}: {ch} is in no code page of the {profile}")]
    Unprintable {
        line: usize,
        ch: char,
        profile: String,
    },
    #[error("chunk_bytes_max {0} is below the minimum {CHUNK_BYTES_MIN}")]
    ChunkTooSmall(usize),
    #[error("escpos encoder: {0}")]
    Encoder(String),
}

/// Compile a label for a profile: layout as given, job sequence 0 (see [`compile_with`]).
pub fn compile(
    label: &Label,
    profile: &Profile,
    chunk_bytes_max: usize,
) -> Result<Job, CompileError> {
    compile_with(
        label,
        profile,
        &CompileOptions {
            chunk_bytes_max,
            ..CompileOptions::default()
        },
    )
}

/// What the element walk gathers besides bytes.
#[derive(Default)]
struct Marks {
    indicium: Option<Range<usize>>,
    indicium_native: bool,
    indicium_marks_at: Option<usize>,
    indicium_pid: Option<ProcessIdMark>,
    rows: u32,
}

/// The process IDs of job `seq`: (after the indicium, at the end).
pub fn job_process_ids(seq: u32) -> (ProcessId, ProcessId) {
    let base = 2 * (seq % PROCESS_ID_JOBS_MAX);
    (
        ProcessId::from_number(base),
        ProcessId::from_number(base + 1),
    )
}

/// Compile a label for a profile.
///
/// On profiles with `[status] process_id`, a `GS ( H` fn 48 process ID follows the indicium's
/// last command and another ends the job (after the cut); [`Job::indicium_pid`] and
/// [`Job::end_pid`] say where and which.
pub fn compile_with(
    label: &Label,
    profile: &Profile,
    opts: &CompileOptions,
) -> Result<Job, CompileError> {
    if profile.language == Language::Zpl {
        return super::zpl::compiler::compile(label, profile, opts);
    }
    if opts.chunk_bytes_max < CHUNK_BYTES_MIN {
        return Err(CompileError::ChunkTooSmall(opts.chunk_bytes_max));
    }
    if label.elements.len() > LABEL_ELEMENTS_MAX {
        return Err(CompileError::TooManyElements(label.elements.len()));
    }
    let mut e = Enc::new();
    let mut m = Marks::default();
    let (indicium_id, end_id) = job_process_ids(opts.job_seq);
    let pid = profile.status.process_id.then_some(indicium_id);
    // Line numbers (for errors) count in the label's own order whatever the layout.
    let mut first_line = Vec::with_capacity(label.elements.len());
    let mut line_no = 0;
    for el in &label.elements {
        first_line.push(line_no);
        line_no += match el {
            Element::Text(_) => 1,
            Element::IndiciumBlock { lines, .. } => lines.len(),
            Element::Address { heading, lines } => usize::from(heading.is_some()) + lines.len(),
            _ => 0,
        };
    }
    e.esc(|p| p.init())?;
    if profile.status.asb {
        // Paper end, cover open and errors are pushed by the printer as they happen.
        e.raw(&ASB_ENABLE);
    }
    let labels = label_positioning(profile);
    if labels {
        // The label starts at a label's top, wherever the last job left the paper.
        e.raw(&LABEL_TO_PRINT_START);
    }
    match opts.layout {
        Layout::AsGiven => {
            for (el, &line) in label.elements.iter().zip(&first_line) {
                element(&mut e, profile, el, line, false, pid, &mut m)?;
            }
        }
        Layout::Rotated180 => {
            e.raw(&UPSIDE_DOWN_ON);
            for (el, &line) in label.elements.iter().zip(&first_line).rev() {
                element(&mut e, profile, el, line, true, pid, &mut m)?;
            }
            e.raw(&UPSIDE_DOWN_OFF);
        }
    }
    if labels {
        // To the cutting position (in the gap after this label), then cut there.
        e.raw(&LABEL_TO_CUT);
        if label.cut {
            e.raw(&cut_here_bytes(profile));
        }
        m.rows += profile.label_rows().map_or(0, |(l, g)| l + g);
    } else if label.cut {
        e.raw(&cut_bytes(profile));
        m.rows += u32::from(profile.cut_feed_lines) * TEXT_LINE_ROWS;
    }
    let end_pid = profile.status.process_id.then(|| {
        let mark = ProcessIdMark {
            offset: e.offset(),
            id: end_id,
        };
        e.raw(&end_id.command());
        mark
    });
    // Chunks never straddle the indicium's edges, so a stop between chunks is clearly before,
    // inside or after it.
    let edges: Vec<usize> = m
        .indicium
        .iter()
        .flat_map(|r| [r.start, r.end])
        .chain(m.indicium_marks_at)
        .collect();
    let chunks = chunk(&e.bytes, &e.boundaries, &edges, opts.chunk_bytes_max);
    let void_label = void_label(profile, label);
    Ok(Job {
        bytes: e.bytes,
        boundaries: e.boundaries,
        chunks,
        indicium: m.indicium,
        indicium_native: m.indicium_native,
        indicium_marks_at: m.indicium_marks_at,
        indicium_pid: m.indicium_pid,
        end_pid,
        paper_rows_estimate: m.rows,
        layout: opts.layout,
        void_label,
    })
}

/// Emit one element. `rotated`: the job prints upside down (`ESC { 1` is on), so multi-line
/// elements go out last line first, raster images turned by 180° and native 2-D symbols
/// right-aligned (the printer rotates text and barcodes itself; Epson leaves raster images and
/// 2-D symbols as they are, and a symbol decodes either way).
fn element(
    e: &mut Enc,
    profile: &Profile,
    el: &Element,
    first_line: usize,
    rotated: bool,
    pid: Option<ProcessId>,
    m: &mut Marks,
) -> Result<(), CompileError> {
    match el {
        Element::Text(t) => {
            text_line(e, profile, t, first_line + 1)?;
            m.rows += TEXT_LINE_ROWS * u32::from(t.height_mul);
        }
        Element::Address { heading, lines } => {
            let mut all: Vec<(usize, TextLine)> = Vec::with_capacity(lines.len() + 1);
            if let Some(h) = heading {
                let mut t = TextLine::plain(h);
                t.bold = true;
                all.push((first_line + 1, t));
            }
            for l in lines {
                all.push((first_line + all.len() + 1, TextLine::plain(l)));
            }
            if rotated {
                all.reverse();
            }
            for (line, t) in &all {
                text_line(e, profile, t, *line)?;
                m.rows += TEXT_LINE_ROWS;
            }
        }
        Element::Indicium(ind) => indicium_element(e, profile, ind, rotated, pid, m)?,
        Element::IndiciumBlock { symbol, lines } if profile.page_mode => {
            page_band(e, profile, symbol, lines, first_line, rotated, pid, m)?;
        }
        Element::IndiciumBlock { symbol, lines } => {
            // The fallback: the symbol at the right, the block right-aligned under it.
            let mut parts: Vec<(usize, Element)> =
                vec![(first_line, Element::Indicium(symbol.clone()))];
            for (i, l) in lines.iter().enumerate() {
                let t = TextLine {
                    align: Align::Right,
                    ..l.clone()
                };
                parts.push((first_line + i, Element::Text(t)));
            }
            if rotated {
                parts.reverse();
            }
            for (line, part) in &parts {
                element(e, profile, part, *line, rotated, pid, m)?;
            }
        }
        Element::Barcode { data, height_dots } => {
            barcode(e, profile, data, *height_dots)?;
            m.rows += u32::from(*height_dots) + TEXT_LINE_ROWS;
        }
        Element::Feed(n) => {
            e.esc(|p| p.feeds(*n))?;
            m.rows += u32::from(*n) * TEXT_LINE_ROWS;
        }
    }
    Ok(())
}

/// The label's one indicium (as given or rotated), its marks and, on a native symbol, the
/// erase and quiet-zone feed after it.
fn indicium_element(
    e: &mut Enc,
    profile: &Profile,
    ind: &Indicium,
    rotated: bool,
    pid: Option<ProcessId>,
    m: &mut Marks,
) -> Result<(), CompileError> {
    if m.indicium.is_some() {
        return Err(CompileError::TwoIndicia);
    }
    // The indicium sits at the label's right (top right on a postage label): as given,
    // right-aligned; rotated 180°, at the print area's left, which is the turned
    // label's right (the printer turns neither raster images nor 2-D symbols).
    let native = !rotated
        && matches!(ind, Indicium::DataMatrix { .. })
        && profile.native_2d.data_matrix_cn.is_some();
    if native {
        e.raw(&[0x1b, 0x61, 2]);
    }
    let start = e.offset();
    let emitted = emit_indicium(e, profile, ind, rotated, pid)?;
    close_indicium(e, profile, m, start, &emitted, pid);
    if let (true, Indicium::DataMatrix { module_px, .. }) = (emitted.native, ind) {
        feed_dots_into(e, QUIET_ZONE_MODULES * u32::from(*module_px));
    }
    if native {
        e.raw(&[0x1b, 0x61, 0]);
    }
    Ok(())
}

/// Split into chunks of at most `max` bytes, ending at command boundaries when one fits and
/// never crossing an offset in `edges`.
pub(crate) fn chunk(bytes: &[u8], boundaries: &[usize], edges: &[usize], max: usize) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < bytes.len() {
        let mut limit = (start + max).min(bytes.len());
        if let Some(&e) = edges.iter().filter(|&&e| e > start && e < limit).min() {
            limit = e;
        }
        let best = if limit == bytes.len() {
            Some(limit)
        } else {
            // Farthest command start in (start, limit].
            let i = boundaries.partition_point(|&b| b <= limit);
            boundaries[..i].last().copied().filter(|&b| b > start)
        };
        let (end, at_command_boundary) = match best {
            Some(b) => (b, true),
            None => (limit, boundaries.binary_search(&limit).is_ok()),
        };
        out.push(Chunk {
            start,
            end,
            at_command_boundary,
        });
        start = end;
    }
    out
}

/// Render bytes as hex, 32 per line with offsets (for golden snapshots).
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut s = String::new();
    for (i, line) in bytes.chunks(32).enumerate() {
        s.push_str(&format!("{:06x} {}\n", i * 32, hex::encode(line)));
    }
    s
}

#[cfg(test)]
mod tests;
