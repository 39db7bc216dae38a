//! The job compiler: a [`Label`] and a [`Profile`] in, ESC/POS bytes out. No I/O.
//!
//! Output is a [`Job`]: the bytes, the offsets where each command starts (the streamer may only
//! put a `DLE EOT` status query at a command boundary), chunks of at most `chunk_bytes_max`, and
//! the byte range of the indicium so an aborted job can say whether the indicium got through.
//!
//! Text styling, init and line feeds are encoded by the `escpos` crate through a capture driver;
//! cuts, raster bands, native 2-D codes and 1-D barcodes are Frank's own bytes (escpos 0.20's
//! `partial_cut` sends `GS V 'A'`, which is feed + *full* cut; docs/PRINTING.md §Limits).

use std::cell::RefCell;
use std::ops::Range;
use std::rc::Rc;

use escpos::driver::Driver;
use escpos::printer::Printer;
use escpos::utils::{JustifyMode, Protocol};

use super::bitmap::Bitmap;
use super::profile::{ClearBuffer, CutCommand, LabelCommands, Language, Profile};

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
    /// under it (docs/PRINTING.md §Top band). The VOID label prints the lines after the legend
    /// under the crossed symbol.
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

/// Collects bytes from the escpos crate's `Printer::print()`.
#[derive(Clone, Default)]
struct Capture(Rc<RefCell<Vec<u8>>>);

impl Driver for Capture {
    fn name(&self) -> String {
        "frank-capture".into()
    }
    fn write(&self, data: &[u8]) -> escpos::errors::Result<()> {
        self.0.borrow_mut().extend_from_slice(data);
        Ok(())
    }
    fn read(&self, _buf: &mut [u8]) -> escpos::errors::Result<usize> {
        Ok(0)
    }
    fn flush(&self) -> escpos::errors::Result<()> {
        Ok(())
    }
}

/// Accumulates commands, recording where each starts.
struct Enc {
    /// The `ESC t` table the printer is in (0 after `ESC @`).
    page: u8,
    bytes: Vec<u8>,
    boundaries: Vec<usize>,
    capture: Capture,
    esc: Printer<Capture>,
}

type EscResult<'a> = escpos::errors::Result<&'a mut Printer<Capture>>;

impl Enc {
    fn new() -> Self {
        let capture = Capture::default();
        let esc = Printer::new(capture.clone(), Protocol::default(), None);
        Enc {
            page: 0,
            bytes: Vec::new(),
            boundaries: Vec::new(),
            capture,
            esc,
        }
    }

    /// One command from Frank's own bytes.
    fn raw(&mut self, cmd: &[u8]) {
        if !cmd.is_empty() {
            self.boundaries.push(self.bytes.len());
            self.bytes.extend_from_slice(cmd);
        }
    }

    /// One command encoded by the escpos crate.
    fn esc(
        &mut self,
        f: impl FnOnce(&mut Printer<Capture>) -> EscResult<'_>,
    ) -> Result<(), CompileError> {
        f(&mut self.esc)
            .and_then(|p| p.print())
            .map_err(|e| CompileError::Encoder(e.to_string()))?;
        let out = std::mem::take(&mut *self.capture.0.borrow_mut());
        self.raw(&out);
        Ok(())
    }

    fn offset(&self) -> usize {
        self.bytes.len()
    }
}

fn justify(a: Align) -> JustifyMode {
    match a {
        Align::Left => JustifyMode::LEFT,
        Align::Center => JustifyMode::CENTER,
        Align::Right => JustifyMode::RIGHT,
    }
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

/// Characters of one text line at width ×1 (the profile's font A; 32 when it names none).
pub fn text_columns(profile: &Profile) -> usize {
    profile.fonts.get(&0).map_or(32, |f| f.columns) as usize
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

fn text_line(
    e: &mut Enc,
    profile: &Profile,
    t: &TextLine,
    line: usize,
) -> Result<(), CompileError> {
    text_run(e, profile, t, line, text_columns(profile), true)
}

/// Columns of font A across the print area (the profile's font 0, else 32).
/// Dots a font A character takes across: the print width over the profile's columns.
pub fn cell_width_px(profile: &Profile) -> u32 {
    (profile.media_width_px / text_columns(profile).max(1) as u32).max(1)
}

/// One text line of at most `columns` characters at width ×1. `standard`: a line in standard
/// mode (justification, then LF); otherwise a run of characters in page mode at the position
/// already set (no justification, no feed).
fn text_run(
    e: &mut Enc,
    profile: &Profile,
    t: &TextLine,
    line: usize,
    columns: usize,
    standard: bool,
) -> Result<(), CompileError> {
    if !(1..=8).contains(&t.width_mul) || !(1..=8).contains(&t.height_mul) {
        return Err(CompileError::BadTextSize {
            line,
            width_mul: t.width_mul,
            height_mul: t.height_mul,
        });
    }
    let pieces = super::codepage::encode(profile, &t.text, &mut e.page).map_err(|ch| {
        CompileError::Unprintable {
            line,
            ch,
            profile: profile.name.clone(),
        }
    })?;
    check_line_length(profile, t, line, columns)?;
    let align = if standard { t.align } else { Align::Left };
    if align != Align::Left {
        e.esc(|p| p.justify(justify(align)))?;
    }
    if t.bold {
        e.esc(|p| p.bold(true))?;
    }
    if (t.width_mul, t.height_mul) != (1, 1) {
        e.esc(|p| p.size(t.width_mul, t.height_mul))?;
    }
    for piece in pieces {
        match piece {
            super::codepage::Piece::Select(n) => e.raw(&super::codepage::select_bytes(n)),
            super::codepage::Piece::Bytes(b) => e.raw(&b),
        }
    }
    if standard {
        e.esc(|p| p.feed())?;
    }
    if align != Align::Left {
        e.esc(|p| p.justify(JustifyMode::LEFT))?;
    }
    if t.bold {
        e.esc(|p| p.bold(false))?;
    }
    if (t.width_mul, t.height_mul) != (1, 1) {
        e.esc(|p| p.reset_size())?;
    }
    Ok(())
}

/// Width and height in dots of `symbol` as printed with its quiet zone, and whether it goes out
/// natively (`GS ( k`).
fn symbol_size(profile: &Profile, symbol: &Indicium) -> Result<(u32, u32, bool), CompileError> {
    match symbol {
        Indicium::DataMatrix { data, module_px } => {
            if !(1..=16).contains(module_px) {
                return Err(CompileError::BadModuleSize(*module_px));
            }
            let (_, w, h) = crate::indicium::render::symbol_modules(data)
                .map_err(|e| CompileError::DataMatrix(e.to_string()))?;
            let m = u32::from(*module_px);
            // Symbols are at most 144 modules a side.
            let (w, h) = (w as u32, h as u32);
            Ok((
                (w + 2 * QUIET_ZONE_MODULES) * m,
                (h + 2 * QUIET_ZONE_MODULES) * m,
                profile.native_2d.data_matrix_cn.is_some(),
            ))
        }
        Indicium::Image(b) => Ok((b.width_px(), b.height_px(), false)),
    }
}

/// After the indicium's last command (from `start`): its marks, its process ID, and on a
/// native symbol the erase of the printer's symbol memory.
fn close_indicium(
    e: &mut Enc,
    profile: &Profile,
    m: &mut Marks,
    start: usize,
    emitted: &Emitted,
    pid: Option<ProcessId>,
) {
    m.indicium_native = emitted.native;
    m.indicium_marks_at = Some(emitted.marks_at);
    m.indicium = Some(start..e.offset());
    m.rows += emitted.rows;
    if let Some(id) = pid {
        m.indicium_pid = Some(ProcessIdMark {
            offset: e.offset(),
            id,
        });
        e.raw(&id.command());
    }
    if let Some(cn) = profile.native_2d.data_matrix_cn.filter(|_| emitted.native) {
        // The signed payload does not stay in the printer's symbol memory, where a stray
        // print command could print it again.
        e.raw(&symbol_store_erase(cn));
    }
}

/// Characters a line of an [`Element::IndiciumBlock`] may have on `profile`: beside the symbol
/// on page-mode profiles, the full width in the fallback layout (lines under the symbol).
pub fn block_columns(profile: &Profile, symbol: &Indicium) -> usize {
    if !profile.page_mode {
        return text_columns(profile);
    }
    let Ok((w, _, _)) = symbol_size(profile, symbol) else {
        return text_columns(profile);
    };
    let room = profile.media_width_px.saturating_sub(w + BLOCK_GAP_PX);
    (room / cell_width_px(profile)) as usize
}

/// `ESC W`: the page-mode print area, `width` × `height` dots from the paper's top left.
fn page_area(width: u32, height: u32) -> [u8; 10] {
    let (w, h) = (width.min(0xffff), height.min(0xffff));
    [
        0x1b,
        0x57,
        0,
        0,
        0,
        0,
        w as u8,
        (w >> 8) as u8,
        h as u8,
        (h >> 8) as u8,
    ]
}

/// `ESC $ nL nH` / `GS $ nL nH`: the absolute horizontal / vertical print position (page mode:
/// from the print area's start as `ESC T` sets it), in motion units (a dot).
fn position_x(dots: u32) -> [u8; 4] {
    let d = dots.min(0xffff);
    [0x1b, 0x24, d as u8, (d >> 8) as u8]
}
fn position_y(dots: u32) -> [u8; 4] {
    let d = dots.min(0xffff);
    [0x1d, 0x24, d as u8, (d >> 8) as u8]
}

/// A top band in page mode: `ESC L`, `ESC T` (0; 2 — turned by 180° — in a rotated job),
/// `ESC W` (the full width × the band's height), each line placed by `GS $` (its bottom row)
/// and `ESC $` (its left), the symbol likewise (native `GS ( k`, or `GS v 0` bands each within
/// the receive buffer), then `FF`, which prints the band at once: nothing of it reaches paper
/// before the last byte, so the printer never stops inside the symbol at any baud, and a job
/// stopped before `FF` leaves none of it on paper once cleared.
#[allow(clippy::too_many_arguments)]
fn page_band(
    e: &mut Enc,
    profile: &Profile,
    symbol: &Indicium,
    lines: &[TextLine],
    first_line: usize,
    rotated: bool,
    pid: Option<ProcessId>,
    m: &mut Marks,
) -> Result<(), CompileError> {
    if m.indicium.is_some() {
        return Err(CompileError::TwoIndicia);
    }
    let width = profile.media_width_px;
    let (sym_w, sym_h, native) = symbol_size(profile, symbol)?;
    if sym_w > width {
        return Err(CompileError::ImageTooWide {
            width_px: sym_w,
            limit_px: width,
            profile: profile.name.clone(),
        });
    }
    let cols = block_columns(profile, symbol);
    let cell = cell_width_px(profile);
    let block_w = lines
        .iter()
        .map(|l| l.text.chars().count() as u32 * cell * u32::from(l.width_mul.max(1)))
        .max()
        .unwrap_or(0);
    let sym_x = width - sym_w;
    let block_x = sym_x.saturating_sub(BLOCK_GAP_PX + block_w);
    let text_h: u32 = lines
        .iter()
        .map(|l| CELL_HEIGHT_PX * u32::from(l.height_mul.max(1)) + LINE_GAP_PX)
        .sum();
    let band_h = sym_h.max(text_h);
    if rotated {
        e.raw(&UPSIDE_DOWN_OFF);
    }
    let start = e.offset();
    e.raw(&PAGE_MODE_ON);
    e.raw(&[0x1b, 0x54, if rotated { 2 } else { 0 }]);
    e.raw(&page_area(width, band_h));
    let mut y = 0;
    for (i, l) in lines.iter().enumerate() {
        let h = CELL_HEIGHT_PX * u32::from(l.height_mul.max(1));
        e.raw(&position_y(y + h - 1));
        e.raw(&position_x(block_x));
        text_run(e, profile, l, first_line + i + 1, cols, false)?;
        y += h + LINE_GAP_PX;
    }
    match (symbol, profile.native_2d.data_matrix_cn) {
        (Indicium::DataMatrix { data, module_px }, Some(cn)) => {
            let q = QUIET_ZONE_MODULES * u32::from(*module_px);
            e.raw(&position_y(sym_h - q - 1));
            e.raw(&position_x(sym_x + q));
            for cmd in data_matrix_native(cn, data, *module_px)? {
                e.raw(&cmd);
            }
        }
        (Indicium::DataMatrix { data, module_px }, None) => {
            let bmp = render_data_matrix(data, u32::from(*module_px))?;
            page_raster(e, profile, &bmp, sym_x)?;
        }
        (Indicium::Image(bmp), _) => page_raster(e, profile, bmp, sym_x)?,
    }
    let marks_at = e.offset();
    e.raw(&PAGE_PRINT);
    let emitted = Emitted {
        native,
        marks_at,
        rows: band_h,
    };
    close_indicium(e, profile, m, start, &emitted, pid);
    if rotated {
        e.raw(&UPSIDE_DOWN_ON);
    }
    Ok(())
}

/// A raster image in a page-mode band at `x`, top at the band's top: `GS v 0` bands each
/// within the receive buffer, each placed by `GS $` (its bottom row) and `ESC $`.
fn page_raster(e: &mut Enc, profile: &Profile, bmp: &Bitmap, x: u32) -> Result<(), CompileError> {
    if !profile.features.bit_image_raster {
        return Err(CompileError::Unsupported {
            profile: profile.name.clone(),
            what: "raster images (GS v 0)",
        });
    }
    for (y, band) in bands(profile, bmp) {
        e.raw(&position_y(y + band.height_px() - 1));
        e.raw(&position_x(x));
        e.raw(&raster_command(&band, RASTER_NORMAL));
    }
    Ok(())
}

/// `bmp` cut into raster bands of at most [`band_height_px`] rows, each with its first row.
fn bands(profile: &Profile, bmp: &Bitmap) -> Vec<(u32, Bitmap)> {
    let band_h = band_height_px(profile, bmp.stride()).max(1);
    (0..bmp.height_px())
        .step_by(band_h as usize)
        .map(|y| (y, bmp.band(y, y + band_h)))
        .collect()
}

/// One `GS v 0 m` command for the whole of `bmp`.
pub fn raster_command(bmp: &Bitmap, mode: u8) -> Vec<u8> {
    let (stride, h) = (bmp.stride(), bmp.height_px() as usize);
    let mut cmd = Vec::with_capacity(RASTER_HEADER_BYTES + stride * h);
    cmd.extend_from_slice(&[
        0x1d,
        0x76,
        0x30,
        mode,
        stride as u8,
        (stride >> 8) as u8,
        h as u8,
        (h >> 8) as u8,
    ]);
    cmd.extend_from_slice(bmp.rows());
    cmd
}

/// A line longer than `columns` (font 0's [`text_columns`], or the room beside a symbol;
/// divided by its width multiplier, at most [`TEXT_LINE_CHARS_MAX`]) is refused, the same on
/// every printer language.
pub(crate) fn check_line_length(
    profile: &Profile,
    t: &TextLine,
    line: usize,
    columns: usize,
) -> Result<(), CompileError> {
    let limit = (columns / usize::from(t.width_mul)).min(TEXT_LINE_CHARS_MAX);
    let chars = t.text.chars().count();
    if chars > limit {
        return Err(CompileError::LineTooLong {
            line,
            chars,
            limit,
            width_mul: t.width_mul,
            profile: profile.name.clone(),
        });
    }
    Ok(())
}

/// What [`emit_indicium`] wrote.
struct Emitted {
    /// Sent as a native 2-D command (else raster bands).
    native: bool,
    /// Where the first command that can put marks on paper starts ([`Job::indicium_marks_at`]).
    marks_at: usize,
    /// Dot rows it takes.
    rows: u32,
}

/// Emits the indicium.
fn emit_indicium(
    e: &mut Enc,
    profile: &Profile,
    ind: &Indicium,
    rotated: bool,
    pid: Option<ProcessId>,
) -> Result<Emitted, CompileError> {
    let turn = |b: Bitmap| if rotated { b.rotated_180() } else { b };
    let marks_at = e.offset();
    match ind {
        Indicium::DataMatrix { data, module_px } => {
            if !(1..=16).contains(module_px) {
                return Err(CompileError::BadModuleSize(*module_px));
            }
            if let Some(cn) = profile.native_2d.data_matrix_cn {
                let (_, _, h) = crate::indicium::render::symbol_modules(data)
                    .map_err(|e| CompileError::DataMatrix(e.to_string()))?;
                let cmds = data_matrix_native(cn, data, *module_px)?;
                let quiet_px = QUIET_ZONE_MODULES * u32::from(*module_px);
                feed_dots_into(e, quiet_px);
                let mut marks_at = e.offset();
                for (i, cmd) in cmds.iter().enumerate() {
                    // The last command prints; the ones before only set up and store.
                    if i + 1 == cmds.len() {
                        marks_at = e.offset();
                    }
                    e.raw(cmd);
                }
                // The printer draws the modules only: the quiet zone above and below is fed
                // (ESC J, dots; the one below by the caller, after the indicium's process ID);
                // beside it, the symbol stands alone on its rows.
                return Ok(Emitted {
                    native: true,
                    marks_at,
                    // Symbols are at most 144 modules a side.
                    rows: h as u32 * u32::from(*module_px) + 2 * quiet_px,
                });
            }
            let bmp = turn(render_data_matrix(data, u32::from(*module_px))?);
            if !fits_one_command(profile, &bmp)
                && let Some(rows) = quadruple_symbol(e, profile, data, *module_px, rotated)?
            {
                return Ok(Emitted {
                    native: false,
                    marks_at,
                    rows,
                });
            }
            raster_marked(e, profile, &bmp, right_px(profile, &bmp, rotated), pid)?;
            Ok(Emitted {
                native: false,
                marks_at,
                rows: bmp.height_px(),
            })
        }
        Indicium::Image(bmp) => {
            let bmp = turn(bmp.clone());
            raster_marked(e, profile, &bmp, right_px(profile, &bmp, rotated), pid)?;
            Ok(Emitted {
                native: false,
                marks_at,
                rows: bmp.height_px(),
            })
        }
    }
}

/// Whether `bmp` goes out as one `GS v 0` command within the receive buffer (header included).
fn fits_one_command(profile: &Profile, bmp: &Bitmap) -> bool {
    RASTER_HEADER_BYTES + bmp.stride() * bmp.height_px() as usize
        <= profile.receive_buffer_bytes as usize
}

/// A raster symbol too big for one command at normal density, sent as one command in
/// quadruple density (`GS v 0` m = 3: each image dot printed 2 × 2 dots) at
/// `ceil(module_px / 2)` image dots a module — 4 dots at 203 dpi instead of 3 — when that fits
/// the receive buffer: the printer then holds all of the symbol before it prints a row of it,
/// whatever the baud (a 44 × 44 postage symbol is 968 bytes: it fits 1 KB). The quiet zone is
/// fed (`ESC J`) above and below and left blank beside by `GS L`. `None` when it does not fit
/// either (nothing emitted; the caller sends bands).
fn quadruple_symbol(
    e: &mut Enc,
    profile: &Profile,
    data: &[u8],
    module_px: u8,
    rotated: bool,
) -> Result<Option<u32>, CompileError> {
    let px = u32::from(module_px).div_ceil(2);
    let bare = crate::indicium::render::symbol_image_quiet(data, px, 0)
        .map_err(|e| CompileError::DataMatrix(e.to_string()))?;
    let bare = if rotated { bare.rotated_180() } else { bare };
    let (w, h) = (2 * bare.width_px(), 2 * bare.height_px());
    let quiet = QUIET_ZONE_MODULES * 2 * px;
    if !fits_one_command(profile, &bare)
        || !profile.features.bit_image_raster
        || w + 2 * quiet > profile.media_width_px
    {
        return Ok(None);
    }
    let left = if rotated {
        quiet
    } else {
        profile.media_width_px - w - quiet
    };
    feed_dots_into(e, quiet);
    e.raw(&left_margin(left));
    e.raw(&raster_command(&bare, RASTER_QUADRUPLE));
    e.raw(&left_margin(0));
    feed_dots_into(e, quiet);
    Ok(Some(h + 2 * quiet))
}

/// Left margin that puts `bmp` at the label's right: flush right as given, flush left (the
/// turned label's right) when rotated.
fn right_px(profile: &Profile, bmp: &Bitmap, rotated: bool) -> u32 {
    if rotated {
        0
    } else {
        profile.media_width_px.saturating_sub(bmp.width_px())
    }
}

/// `GS ( k` fn 80 with no data for symbol `cn`: empties the printer's symbol memory, so a
/// signed payload stored there cannot be printed by a later print command (a job's own, after
/// its symbol printed; [`super::streamer::resync`], for a job a crash cut off between store and
/// print).
pub fn symbol_store_erase(cn: u8) -> Vec<u8> {
    vec![0x1d, 0x28, 0x6b, 3, 0, cn, 80, 48]
}

/// Encode Data Matrix data as a symbol bitmap, `module_px` dots per module, with a
/// [`QUIET_ZONE_MODULES`]-module quiet zone on each side (docs/INDICIUM.md §Symbol).
///
/// The data is one Base 256 segment in a square symbol (as the indicium renderer does), so a
/// decoder returns binary payloads byte for byte.
pub fn render_data_matrix(data: &[u8], module_px: u32) -> Result<Bitmap, CompileError> {
    crate::indicium::render::symbol_image(data, module_px)
        .map_err(|e| CompileError::DataMatrix(e.to_string()))
}

/// `GS ( k` for Data Matrix with the profile's `cn`: select type (fn 66: square, automatic
/// size), module size (fn 67), store data (fn 80), print (fn 81). docs/PRINTING.md §Commands.
pub fn data_matrix_native(
    cn: u8,
    data: &[u8],
    module_px: u8,
) -> Result<Vec<Vec<u8>>, CompileError> {
    if data.is_empty() || data.len() > NATIVE_2D_DATA_BYTES_MAX {
        return Err(CompileError::DataMatrix(format!(
            "{} bytes of data; native 2-D takes 1..={NATIVE_2D_DATA_BYTES_MAX}",
            data.len()
        )));
    }
    let gs_k = |body: &[u8]| {
        let len = body.len() as u16; // body ≤ NATIVE_2D_DATA_BYTES_MAX + 3, checked above
        let mut c = vec![0x1d, 0x28, 0x6b, len as u8, (len >> 8) as u8];
        c.extend_from_slice(body);
        c
    };
    let mut store = vec![cn, 80, 48];
    store.extend_from_slice(data);
    Ok(vec![
        // fn 66 (Epson "Function 166"): m = 0 square ECC 200, d1 = d2 = 0 automatic size.
        gs_k(&[cn, 66, 0, 0, 0]),
        gs_k(&[cn, 67, module_px]),
        gs_k(&store),
        gs_k(&[cn, 81, 48]),
    ])
}

/// Raster bands height limited by the profile, and by the receive buffer: a whole `GS v 0`
/// command, its 8-byte header included, fits `receive_bytes` (some printers garble images larger
/// than their buffer).
pub fn band_height_px(profile: &Profile, stride: usize) -> u32 {
    let room = (profile.receive_buffer_bytes as usize).saturating_sub(RASTER_HEADER_BYTES);
    let by_buffer = (room / stride.max(1)).max(1);
    (profile.raster_band_height_px_max as usize).min(by_buffer) as u32
}

/// Raster bands; with `mark`, that process ID follows every band but the last (the caller puts
/// it after the last), so whatever part of the image prints is covered by an ID.
///
/// The image goes out as wide as it is (no padding bytes): `left_px` dots from the print
/// area's left edge are set with `GS L` (left margin, horizontal motion units = dots) and reset
/// to 0 after. An image that fits the receive buffer (header included) is one command, so the
/// printer never stops inside it; a taller one goes in bands each filling the buffer.
fn raster_marked(
    e: &mut Enc,
    profile: &Profile,
    bmp: &Bitmap,
    left_px: u32,
    mark: Option<ProcessId>,
) -> Result<(), CompileError> {
    if !profile.features.bit_image_raster {
        return Err(CompileError::Unsupported {
            profile: profile.name.clone(),
            what: "raster images (GS v 0)",
        });
    }
    if bmp.width_px() > profile.media_width_px {
        return Err(CompileError::ImageTooWide {
            width_px: bmp.width_px(),
            limit_px: profile.media_width_px,
            profile: profile.name.clone(),
        });
    }
    let left_px = left_px.min(profile.media_width_px - bmp.width_px());
    if left_px > 0 {
        e.raw(&left_margin(left_px));
    }
    for (y, band) in bands(profile, bmp) {
        e.raw(&raster_command(&band, RASTER_NORMAL));
        if let Some(id) = mark.filter(|_| y + band.height_px() < bmp.height_px()) {
            e.raw(&id.command());
        }
    }
    if left_px > 0 {
        e.raw(&left_margin(0));
    }
    Ok(())
}

/// `GS L nL nH`: the left margin, in horizontal motion units (a dot at the default unit).
pub fn left_margin(dots: u32) -> [u8; 4] {
    let d = dots.min(0xffff);
    [0x1d, 0x4c, d as u8, (d >> 8) as u8]
}

/// [`feed_dots`], one boundary per `ESC J`.
fn feed_dots_into(e: &mut Enc, dots: u32) {
    for c in feed_dots(dots).chunks(3) {
        e.raw(c);
    }
}

fn barcode(
    e: &mut Enc,
    profile: &Profile,
    data: &str,
    height_dots: u8,
) -> Result<(), CompileError> {
    if !profile.features.barcode_b {
        return Err(CompileError::Unsupported {
            profile: profile.name.clone(),
            what: "CODE128 barcodes (GS k m=73)",
        });
    }
    if data.is_empty() || data.len() > 60 || !data.chars().all(|c| (' '..='~').contains(&c)) {
        return Err(CompileError::Barcode(
            "CODE128-B takes 1..=60 printable ASCII characters".into(),
        ));
    }
    e.raw(&[0x1d, 0x68, height_dots.max(1)]); // GS h: height
    e.raw(&[0x1d, 0x77, 2]); // GS w: module width
    e.raw(&[0x1d, 0x48, 2]); // GS H: HRI below
    let mut cmd = vec![0x1d, 0x6b, 73, (data.len() + 2) as u8, b'{', b'B'];
    cmd.extend_from_slice(data.as_bytes());
    e.raw(&cmd);
    Ok(())
}

/// The profile's cut, with its feed of `cut.feed_lines` lines (docs/PRINTING.md §Commands):
/// `ESC d n` counts lines; `GS V 65 n` / `GS V 66 n` feed n vertical motion units (dots), so
/// the lines are turned into dots there ([`line_pitch_dots`] each, at most 255).
pub fn cut_bytes(profile: &Profile) -> Vec<u8> {
    let n = profile.cut_feed_lines;
    let dots = (u32::from(n) * line_pitch_dots(profile.dpi)).min(255) as u8;
    match profile.cut {
        CutCommand::None => vec![0x1b, 0x64, n],
        CutCommand::Full => vec![0x1b, 0x64, n, 0x1d, 0x56, 0],
        CutCommand::Partial => vec![0x1b, 0x64, n, 0x1d, 0x56, 1],
        CutCommand::FeedFull => vec![0x1d, 0x56, 65, dots],
        CutCommand::FeedPartial => vec![0x1d, 0x56, 66, dots],
    }
}

/// `FS ( L` fn 67, m = 48: feed to the print starting position of the label (Epson, label and
/// black mark control).
pub const LABEL_TO_PRINT_START: [u8; 7] = [0x1c, 0x28, 0x4c, 2, 0, 67, 48];
/// `FS ( L` fn 66, m = 48: feed the label to the cutting position (the gap after it).
pub const LABEL_TO_CUT: [u8; 7] = [0x1c, 0x28, 0x4c, 2, 0, 66, 48];

/// Whether jobs position labels with `FS ( L` (gap or black-mark media whose profile says so).
pub fn label_positioning(profile: &Profile) -> bool {
    profile.label_commands == LabelCommands::EpsonFsL && profile.label_rows().is_some()
}

/// The cut at the current position, no feed (`GS V 0` / `GS V 1`), after [`LABEL_TO_CUT`].
pub fn cut_here_bytes(profile: &Profile) -> Vec<u8> {
    match profile.cut {
        CutCommand::None => Vec::new(),
        CutCommand::Full | CutCommand::FeedFull => vec![0x1d, 0x56, 0],
        CutCommand::Partial | CutCommand::FeedPartial => vec![0x1d, 0x56, 1],
    }
}

/// Dots one text line advances at the default line spacing, 1/6 inch (Epson `ESC 2`), with
/// the vertical motion unit at the printer's dot pitch.
pub fn line_pitch_dots(dpi: u32) -> u32 {
    dpi.div_ceil(6)
}

/// `ESC J n`: print and feed n dots (vertical motion units), in as many commands as needed.
pub fn feed_dots(dots: u32) -> Vec<u8> {
    let mut v = Vec::new();
    let mut left = dots;
    while left > 0 {
        let n = left.min(255);
        v.extend_from_slice(&[0x1b, 0x4a, n as u8]);
        left -= n;
    }
    v
}

/// What to send after the last job byte when a job is aborted at `bytes_sent` to throw away
/// what the printer holds. With `DleDc4` the caller waits for [`CLEAR_BUFFERS_REPLY`].
pub fn cancel_bytes(profile: &Profile, job: &Job, bytes_sent: usize) -> Vec<u8> {
    match profile.clear_buffer {
        ClearBuffer::DleDc4 => CLEAR_BUFFERS.to_vec(),
        ClearBuffer::NulInit => {
            let mut v = vec![0u8; job.remaining_in_command(bytes_sent)];
            v.extend_from_slice(&INIT);
            v
        }
    }
}

/// Feed, a large "VOID" and the cut: printed after an abort when the profile allows.
pub fn void_bytes(profile: &Profile) -> Vec<u8> {
    let mut v = INIT.to_vec();
    v.extend_from_slice(&[0x1b, 0x64, 2, 0x1b, 0x61, 1, 0x1d, 0x21, 0x33]);
    v.extend_from_slice(b"VOID\n");
    v.extend_from_slice(&[0x1d, 0x21, 0x00, 0x1b, 0x61, 0]);
    v.extend_from_slice(&cut_bytes(profile));
    v
}

/// The VOID label for `label` on `profile` ([`Job::void_label`]): `ESC @`, a feed, "VOID" at
/// 4 × 4 size, centred; the indicium's symbol crossed by two bars [`VOID_BAR_MODULES`] modules
/// wide (`render::cross_out`), small — one `GS v 0` command in quadruple density at one image
/// dot a module (2 dots a module), well within any receive buffer — so that it does not decode;
/// then the top band's lines after its legend (amount, date, class, number: which piece this
/// was), centred; the profile's cut. A label without an indicium gets [`void_bytes`].
pub fn void_label(profile: &Profile, label: &Label) -> Vec<u8> {
    let found = label.elements.iter().find_map(|el| match el {
        Element::Indicium(i) => Some((i, &[][..])),
        Element::IndiciumBlock { symbol, lines } => Some((symbol, lines.get(1..).unwrap_or(&[]))),
        _ => None,
    });
    let Some((symbol, lines)) = found else {
        return void_bytes(profile);
    };
    let mut e = Enc::new();
    e.raw(&INIT);
    e.raw(&[0x1b, 0x64, 2, 0x1b, 0x61, 1, 0x1d, 0x21, 0x33]);
    e.raw(b"VOID\n");
    // Normal size, left-justified: the image is placed by GS L (ESC a would move it too).
    e.raw(&[0x1d, 0x21, 0x00, 0x1b, 0x61, 0]);
    let crossed = match symbol {
        Indicium::DataMatrix { data, .. } => crate::indicium::render::symbol_image(data, 1)
            .ok()
            .map(|mut b| {
                crate::indicium::render::cross_out(&mut b, 1, QUIET_ZONE_MODULES, VOID_BAR_MODULES);
                (b, RASTER_QUADRUPLE, 2)
            }),
        Indicium::Image(b) => {
            // A ready image: every k-th dot, so that it stays small like a symbol's.
            let k = (1..=64)
                .find(|k| {
                    (b.width_px() / k).div_ceil(8) * (b.height_px() / k) <= VOID_IMAGE_BYTES_MAX
                })
                .unwrap_or(64);
            let mut small = Bitmap::new(b.width_px() / k, b.height_px() / k);
            for y in 0..small.height_px() {
                for x in 0..small.width_px() {
                    small.set(x, y, b.get(x * k, y * k));
                }
            }
            let m = (small.width_px() / 48).max(1);
            crate::indicium::render::cross_out(&mut small, m, 0, VOID_BAR_MODULES);
            Some((small, RASTER_QUADRUPLE, 2))
        }
    };
    if let Some((b, mode, scale)) = crossed.filter(|_| profile.features.bit_image_raster) {
        let w = b.width_px() * scale;
        e.raw(&left_margin(profile.media_width_px.saturating_sub(w) / 2));
        for (_, band) in bands(profile, &b) {
            e.raw(&raster_command(&band, mode));
        }
        e.raw(&left_margin(0));
    }
    for (i, l) in lines.iter().enumerate() {
        let t = TextLine {
            align: Align::Center,
            ..l.clone()
        };
        // Lines the job itself printed; one that cannot be encoded is left out.
        let _ = text_run(&mut e, profile, &t, i + 1, text_columns(profile), true);
    }
    e.raw(&cut_bytes(profile));
    e.bytes
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
mod tests {
    use super::*;
    use crate::printer::profile::shipped;

    fn label() -> Label {
        Label {
            elements: vec![
                Element::Text(TextLine {
                    text: "PRIORITY".into(),
                    bold: true,
                    width_mul: 2,
                    height_mul: 2,
                    align: Align::Center,
                }),
                Element::Indicium(Indicium::DataMatrix {
                    data: b"FRANK-TEST-0001".to_vec(),
                    module_px: 4,
                }),
                Element::Address {
                    heading: Some("TO:".into()),
                    lines: vec!["JANE DOE".into(), "1 MAIN ST".into()],
                },
            ],
            cut: true,
        }
    }

    #[test]
    fn only_the_print_command_of_a_native_symbol_marks_paper() {
        for id in crate::printer::profile::shipped_ids() {
            let p = shipped(id).unwrap();
            let job = compile(&label(), &p, 64).unwrap();
            let r = job.indicium.clone().unwrap();
            let at = job.indicium_marks_at.unwrap();
            assert!(
                job.chunks.iter().any(|c| c.start == at),
                "{id}: a chunk starts at marks_at"
            );
            match p.native_2d.data_matrix_cn {
                Some(cn) => {
                    // The 8-byte print command ends the indicium; the store before it prints
                    // nothing; the symbol memory is emptied after it.
                    assert_eq!(&job.bytes[at..r.end], &[0x1d, 0x28, 0x6b, 3, 0, cn, 81, 48]);
                    assert_eq!(r.end - at, 8);
                    assert!(job.chunks.iter().any(|c| c.start == at && c.end == r.end));
                    let erase = symbol_store_erase(cn);
                    let tail = &job.bytes[r.end..];
                    assert!(
                        tail.windows(erase.len()).any(|w| w == erase.as_slice()),
                        "{id}: symbol memory emptied after the print"
                    );
                    assert!(!job.indicium_started(at) && job.indicium_started(at + 1));
                }
                None => assert_eq!(at, r.start, "{id}: a raster band marks paper at once"),
            }
        }
    }

    #[test]
    fn partial_cut_is_feed_partial_not_escpos_full() {
        let p = shipped("virtual").unwrap();
        // 3 lines at 203 dpi: GS V 66 n feeds n dots, 3 × 34.
        assert_eq!(cut_bytes(&p), vec![0x1d, 0x56, 66, 102]);
        let g = shipped("generic-58mm").unwrap();
        // ESC d n counts lines.
        assert_eq!(cut_bytes(&g), vec![0x1b, 0x64, 4]);
    }

    #[test]
    fn data_matrix_type_is_fn_66() {
        let cmds = data_matrix_native(54, b"X", 3).unwrap();
        assert_eq!(cmds[0], vec![0x1d, 0x28, 0x6b, 5, 0, 54, 66, 0, 0, 0]);
        assert_eq!(cmds[1], vec![0x1d, 0x28, 0x6b, 3, 0, 54, 67, 3]);
        assert_eq!(&cmds[2][5..8], &[54, 80, 48]);
        assert_eq!(cmds[3], vec![0x1d, 0x28, 0x6b, 3, 0, 54, 81, 48]);
    }

    #[test]
    fn quiet_zone_is_two_modules() {
        let (_, w, h) = crate::indicium::render::symbol_modules(b"FRANK").unwrap();
        let b = render_data_matrix(b"FRANK", 3).unwrap();
        assert_eq!(
            (b.width_px(), b.height_px()),
            ((w as u32 + 4) * 3, (h as u32 + 4) * 3)
        );
        for y in 0..b.height_px() {
            for x in 0..b.width_px() {
                let inside =
                    (6..b.width_px() - 6).contains(&x) && (6..b.height_px() - 6).contains(&y);
                assert!(
                    inside || !b.get(x, y),
                    "dark dot at {x},{y} in the quiet zone"
                );
            }
        }
        // Natively, two modules are fed above and below the symbol.
        let p = shipped("virtual").unwrap();
        let job = compile(&label(), &p, 256).unwrap();
        let r = job.indicium.clone().unwrap();
        assert_eq!(&job.bytes[r.start..r.start + 3], &[0x1b, 0x4a, 8]);
        let after = job.indicium_pid.unwrap().offset + PROCESS_ID_COMMAND_BYTES + 8;
        assert_eq!(&job.bytes[after..after + 3], &[0x1b, 0x4a, 8]);
    }

    #[test]
    fn no_command_exceeds_the_receive_buffer() {
        let big = Label {
            elements: vec![
                Element::Text(TextLine::plain("X")),
                Element::Indicium(Indicium::Image(Bitmap::new(576, 900))),
            ],
            cut: true,
        };
        for id in crate::printer::profile::shipped_ids() {
            let p = shipped(id).unwrap();
            let mut l = big.clone();
            if let Element::Indicium(Indicium::Image(b)) = &mut l.elements[1] {
                *b = Bitmap::new(p.media_width_px, 900);
            }
            for label in [l, label()] {
                let job = compile(&label, &p, 256).unwrap();
                let mut ends = job.boundaries.clone();
                ends.push(job.bytes.len());
                for w in ends.windows(2) {
                    assert!(
                        w[1] - w[0] <= p.receive_buffer_bytes as usize,
                        "{id}: a {}-byte command",
                        w[1] - w[0]
                    );
                }
            }
        }
    }

    #[test]
    fn a_symbol_that_fits_the_buffer_is_one_raster_command() {
        // The largest indicium (174 bytes, 52 × 52 modules + quiet zone) at 3 dots a module.
        let p = shipped("epson-tm-l90").unwrap();
        let l = Label {
            elements: vec![Element::Indicium(Indicium::DataMatrix {
                data: vec![0xa5; 174],
                module_px: 3,
            })],
            cut: false,
        };
        let job = compile(&l, &p, 256).unwrap();
        let r = job.indicium.clone().unwrap();
        let bands = job.bytes[r.clone()]
            .windows(4)
            .filter(|w| *w == [0x1d, 0x76, 0x30, 0])
            .count();
        assert_eq!(bands, 1);
        // Flush right with GS L, no padding bytes.
        assert_eq!(&job.bytes[r.start..r.start + 4], &left_margin(576 - 168));
    }

    #[test]
    fn label_stock_is_positioned_with_fs_l() {
        let p = shipped("epson-tm-l90").unwrap();
        assert!(label_positioning(&p));
        let job = compile(&label(), &p, 256).unwrap();
        assert_eq!(&job.bytes[5..12], &LABEL_TO_PRINT_START);
        let at = job
            .bytes
            .windows(7)
            .position(|w| w == LABEL_TO_CUT)
            .unwrap();
        assert_eq!(&job.bytes[at + 7..at + 10], &[0x1d, 0x56, 0]);
        // Continuous media: no label commands.
        let v = shipped("virtual").unwrap();
        let job = compile(&label(), &v, 256).unwrap();
        assert!(!job.bytes.windows(3).any(|w| w == [0x1c, 0x28, 0x4c]));
    }

    #[test]
    fn asb_is_enabled_where_the_profile_has_it() {
        for id in crate::printer::profile::shipped_ids() {
            let p = shipped(id).unwrap();
            let job = compile(&label(), &p, 256).unwrap();
            let has = job.bytes.windows(3).any(|w| w == ASB_ENABLE);
            assert_eq!(has, p.status.asb, "{id}");
            if has {
                assert_eq!(&job.bytes[2..5], &ASB_ENABLE, "{id}: right after ESC @");
            }
        }
    }

    #[test]
    fn chunks_cover_job_and_respect_max() {
        for id in crate::printer::profile::shipped_ids() {
            let p = shipped(id).unwrap();
            let job = compile(&label(), &p, 64).unwrap();
            let mut at = 0;
            for c in &job.chunks {
                assert_eq!(c.start, at);
                assert!(c.end - c.start <= 64 && c.end > c.start);
                assert_eq!(c.at_command_boundary, job.is_boundary(c.end), "{id}");
                at = c.end;
            }
            assert_eq!(at, job.bytes.len());
            let r = job.indicium.clone().unwrap();
            assert!(job.is_boundary(r.start) && job.is_boundary(r.end));
            assert!(job.chunks.iter().any(|c| c.end == r.end));
            assert!(job.chunks.iter().any(|c| c.start == r.start));
            assert!(!job.indicium_complete(r.end - 1) && job.indicium_complete(r.end));
            assert_eq!(job.indicium_native, p.native_2d.data_matrix_cn.is_some());
        }
    }

    #[test]
    fn native_data_matrix_uses_profile_cn() {
        let p = shipped("bixolon-srp-350iii").unwrap();
        let job = compile(&label(), &p, 256).unwrap();
        let r = job.indicium.unwrap();
        // The quiet zone's feed (ESC J, 2 modules of 4 dots), then fn 66 with cn 51.
        assert_eq!(
            &job.bytes[r.start..r.start + 10],
            &[0x1b, 0x4a, 8, 0x1d, 0x28, 0x6b, 5, 0, 51, 66]
        );
    }

    #[test]
    fn raster_bands_within_limits() {
        let p = shipped("generic-80mm").unwrap();
        let big = Bitmap::new(576, 300);
        let l = Label {
            elements: vec![Element::Indicium(Indicium::Image(big))],
            cut: false,
        };
        let job = compile(&l, &p, 256).unwrap();
        let r = job.indicium.unwrap();
        let mut at = r.start;
        let mut rows = 0;
        while at < r.end {
            let b = &job.bytes[at..];
            assert_eq!(&b[..4], &[0x1d, 0x76, 0x30, 0]);
            let x = usize::from(b[4]) | usize::from(b[5]) << 8;
            let y = usize::from(b[6]) | usize::from(b[7]) << 8;
            assert!(
                y as u32 <= p.raster_band_height_px_max
                    && 8 + x * y <= p.receive_buffer_bytes as usize
            );
            rows += y;
            at += 8 + x * y;
        }
        assert_eq!(rows, 300);
    }

    #[test]
    fn too_long_line_names_the_limit() {
        let p = shipped("generic-58mm").unwrap();
        let l = Label {
            elements: vec![Element::Text(TextLine::plain(&"x".repeat(40)))],
            cut: false,
        };
        let err = compile(&l, &p, 256).unwrap_err();
        assert!(
            matches!(err, CompileError::LineTooLong { limit: 32, .. }),
            "{err}"
        );
    }

    #[test]
    fn process_ids_follow_the_indicium_and_end_the_job() {
        for id in crate::printer::profile::shipped_ids() {
            let p = shipped(id).unwrap();
            let opts = CompileOptions {
                job_seq: 21,
                ..CompileOptions::default()
            };
            let job = compile_with(&label(), &p, &opts).unwrap();
            let has = |id: ProcessId| job.bytes.windows(11).any(|w| w == id.command());
            let (ind_id, end_id) = job_process_ids(21);
            assert_eq!(
                (ind_id.to_string(), end_id.to_string()),
                ("0042".into(), "0043".into())
            );
            if !p.status.process_id {
                assert!(job.indicium_pid.is_none() && job.end_pid.is_none(), "{id}");
                assert!(
                    !job.bytes.windows(3).any(|w| w == [0x1d, 0x28, 0x48]),
                    "{id}"
                );
                continue;
            }
            let r = job.indicium.clone().unwrap();
            let ind = job.indicium_pid.unwrap();
            assert_eq!((ind.offset, ind.id), (r.end, ind_id), "{id}");
            assert_eq!(&job.bytes[ind.offset..ind.offset + 11], &ind_id.command());
            let end = job.end_pid.unwrap();
            assert_eq!(end.id, end_id);
            assert_eq!(
                end.offset + PROCESS_ID_COMMAND_BYTES,
                job.bytes.len(),
                "{id}"
            );
            assert!(job.is_boundary(ind.offset) && job.is_boundary(end.offset));
            assert!(has(ind_id) && has(end_id));
            // The end ID comes after the cut (on label stock: after FS ( L to the cutting
            // position and a cut there).
            let cut = if label_positioning(&p) {
                [LABEL_TO_CUT.to_vec(), cut_here_bytes(&p)].concat()
            } else {
                cut_bytes(&p)
            };
            assert_eq!(&job.bytes[end.offset - cut.len()..end.offset], &cut[..]);
        }
    }

    #[test]
    fn raster_indicium_has_its_id_after_every_band() {
        let p = shipped("epson-tm-l90").unwrap(); // process IDs, no native Data Matrix
        let l = Label {
            elements: vec![Element::Indicium(Indicium::Image(Bitmap::new(320, 600)))],
            cut: true,
        };
        let job = compile(&l, &p, 256).unwrap();
        let r = job.indicium.clone().unwrap();
        let id = job.indicium_pid.unwrap().id;
        let bands = job.bytes[r.clone()]
            .windows(4)
            .filter(|w| *w == [0x1d, 0x76, 0x30, 0])
            .count();
        let marks = job.bytes[r.start..r.end + PROCESS_ID_COMMAND_BYTES]
            .windows(11)
            .filter(|w| *w == id.command())
            .count();
        assert!(bands > 1);
        assert_eq!(marks, bands);
    }

    #[test]
    fn rotated_layout_prints_last_element_first() {
        let p = shipped("virtual").unwrap();
        let opts = CompileOptions {
            layout: Layout::Rotated180,
            ..CompileOptions::default()
        };
        let job = compile_with(&label(), &p, &opts).unwrap();
        assert_eq!(&job.bytes[..2], &[0x1b, 0x40]);
        assert_eq!(&job.bytes[5..8], &[0x1b, 0x7b, 1]);
        let at = |s: &[u8]| job.bytes.windows(s.len()).position(|w| w == s).unwrap();
        // Address last line first, then the indicium, then the heading text.
        assert!(at(b"1 MAIN ST") < at(b"JANE DOE") && at(b"JANE DOE") < at(b"TO:"));
        let r = job.indicium.clone().unwrap();
        assert!(at(b"TO:") < r.start && r.end < at(b"PRIORITY"));
        // At the print area's left, the turned label's right: no justification.
        assert_ne!(&job.bytes[r.start - 3..r.start], &[0x1b, 0x61, 2]);
        assert_eq!(&job.bytes[r.start..r.start + 3], &[0x1b, 0x4a, 8]);
        assert_eq!(job.indicium_pid.unwrap().offset, r.end);
        // A raster indicium is turned by 180°.
        let img = {
            let mut b = Bitmap::new(64, 8);
            b.set(0, 0, true);
            b
        };
        let l = Label {
            elements: vec![Element::Indicium(Indicium::Image(img))],
            cut: false,
        };
        let g = shipped("generic-80mm").unwrap();
        let job = compile_with(&l, &g, &opts).unwrap();
        let r = job.indicium.unwrap();
        let data = &job.bytes[r.start + 8..r.end];
        let stride = data.len() / 8;
        assert_eq!(
            data[..data.len() - 1].iter().filter(|b| **b != 0).count(),
            0
        );
        assert_eq!(data[data.len() - 1], 0x01, "stride {stride}");
    }

    #[test]
    fn nul_init_cancel_finishes_the_command() {
        let p = shipped("generic-80mm").unwrap();
        let job = compile(&label(), &p, 256).unwrap();
        let r = job.indicium.clone().unwrap();
        let c = cancel_bytes(&p, &job, r.start + 20);
        assert_eq!(c.len(), job.remaining_in_command(r.start + 20) + 2);
        assert!(c.len() > 2);
        assert_eq!(&c[c.len() - 2..], &INIT);
    }
}
