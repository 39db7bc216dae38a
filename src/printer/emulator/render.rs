//! Turns parsed commands into paper. No I/O, no clock: time comes in as rows to print.
//!
//! The renderer has two sides, like a print engine behind its buffer. [`Renderer::apply`]
//! develops a command into dot rows on a tape (the print buffer); [`Renderer::advance`] prints
//! rows off the tape at whatever pace the caller gives. Things that happen at a place on the
//! paper — a cut, a process ID, a symbol or text line finished — are events on the tape and take
//! effect only when the print position passes them: a process ID is answered once everything
//! before it printed, a page exists once its cut printed, and a page lists only what printed in
//! full. [`Renderer::clear_unprinted`] (DLE DC4 fn 8) drops everything not yet printed.
//!
//! Over 800 lines on purpose: one print engine, the command set of docs/PRINTING.md developed
//! into dots (text, raster, native 2-D symbols, page mode, cuts and marks) on one tape; the
//! parser and the fault model already live beside it.

use font8x8::UnicodeFonts;

use std::collections::VecDeque;

use super::parser::Command;
use crate::printer::bitmap::{BITMAP_SIDE_PX_MAX, Bitmap};
use crate::printer::compiler::{ProcessId, render_data_matrix};
use crate::printer::profile::Profile;

/// Character cell of font A, in dots (Epson: 12 × 24).
pub const CELL_WIDTH_PX: u32 = 12;
pub const CELL_HEIGHT_PX: u32 = 24;
/// Line spacing added below each text line (Epson default 1/6 in ≈ 30 dots at 180 dpi).
pub const LINE_GAP_PX: u32 = 6;
/// Longest page before it is cut by force (a job without cut never ends otherwise).
pub const PAGE_HEIGHT_PX_MAX: u32 = BITMAP_SIDE_PX_MAX;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutKind {
    Full,
    Partial,
    /// The page reached [`PAGE_HEIGHT_PX_MAX`] without a cut.
    Forced,
    /// Torn off by hand ([`Renderer::tear_off`]): what printed of an uncut page.
    Torn,
}

/// Events on the tape, at the row where they take effect.
#[derive(Debug, Clone)]
enum TapeEvent {
    Cut(CutKind, Option<LabelFit>),
    ProcessId(ProcessId),
    Text(String),
    DataMatrix(Vec<u8>),
    Other2d(u8, Vec<u8>),
    Barcode(String),
    RasterBand,
    /// The engine ran out of rows between two raster bands with nothing between them.
    RasterStall,
}

/// Most events waiting on the tape (each command makes at most two).
pub const TAPE_EVENTS_MAX: usize = 1 << 16;

/// One piece of paper between cuts.
#[derive(Debug, Clone)]
pub struct RenderedJob {
    pub image: Bitmap,
    /// Text lines as printed.
    pub text: Vec<String>,
    /// Payloads of native Data Matrix symbols drawn on this page.
    pub data_matrix: Vec<Vec<u8>>,
    /// Payloads of other native 2-D symbols by `cn` (QR is drawn; others are only recorded).
    pub other_2d: Vec<(u8, Vec<u8>)>,
    /// CODE128 payloads (drawn as bars with the text under them).
    pub barcodes: Vec<String>,
    /// Raster bands received.
    pub raster_bands: usize,
    /// Stops inside an image: times the engine ran out of rows at the end of a raster band
    /// while the next band of the same image (nothing developed between them) had not yet
    /// arrived whole — where a thermal head that stops may leave a faint line.
    pub raster_stalls: usize,
    pub cut: CutKind,
    /// On gap and black-mark media: where the page sits on the label stock.
    pub label: Option<LabelFit>,
}

/// Where a cut page sits on label stock (label length L, gap G, pitch L + G, rows).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LabelFit {
    /// Rows from a label's top to where printing began (0: at a label's top).
    pub start_offset_rows: u32,
    /// Rows from a label's top to the cut (in the gap: L ..< L + G).
    pub cut_offset_rows: u32,
    /// Rows printed from the start to the end of the content.
    pub content_rows: u32,
    /// The label did not start at a label's top, the content ran past its label, or the cut
    /// missed the gap.
    pub misaligned: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Style {
    justify: u8,
    bold: bool,
    width_mul: u32,
    height_mul: u32,
}

impl Style {
    fn reset() -> Self {
        Style {
            justify: 0,
            bold: false,
            width_mul: 1,
            height_mul: 1,
        }
    }
}

/// The print engine of the emulator.
pub struct Renderer {
    width_px: u32,
    data_matrix_cn: Option<u8>,
    qr_cn: Option<u8>,
    /// The tape: rows from the current page's top; `rows[..printed]` are on paper.
    rows: Vec<Vec<u8>>,
    printed: usize,
    /// Tape events in row order.
    events: VecDeque<(usize, TapeEvent)>,
    /// Row of the last cut developed (for the forced cut of an endless page).
    last_cut_row: usize,
    line: Vec<(char, Style)>,
    /// The profile's code pages by `ESC t` index, and the one selected (0 after `ESC @`).
    code_pages: Vec<(u8, &'static str)>,
    code_page: u8,
    style: Style,
    upside_down: bool,
    /// GS L, in dots: where raster images start.
    left_margin_px: u32,
    /// Label stock: (label rows, gap rows), `None` on a roll.
    label_rows: Option<(u32, u32)>,
    /// Paper rows (from the roll's start) before the current page's first row.
    page_start_pos: u64,
    /// Where this page's label began (after `FS ( L` fn 67), and where its content ended
    /// (before fn 66).
    label_start: Option<u64>,
    content_end: Option<u64>,
    module_px: u8,
    store: Vec<(u8, Vec<u8>)>,
    barcode_height: u32,
    /// Notes of what printed on the current page.
    job: JobNotes,
    done: Vec<RenderedJob>,
    answered: Vec<ProcessId>,
    /// Page mode (`ESC L` … `FF`): the page being composed, `None` in standard mode.
    page: Option<Page>,
    /// Tape row where the last raster band developed ends, while nothing was developed after it.
    raster_end_row: Option<usize>,
    /// Tape row where the engine last ran out of rows to print with time to print more.
    dry_at_row: Option<usize>,
}

/// Default page-mode area height when no `ESC W` came, in dots.
pub const PAGE_AREA_HEIGHT_PX_DEFAULT: u32 = 512;

/// A page in page mode: a canvas the size of the print area, the print position, and what was
/// drawn (each text run with where it started, symbols), all printed together at `FF`.
struct Page {
    canvas: Bitmap,
    /// `ESC T`: 0 from the top left; 2 from the bottom right (the page printed turned by 180°).
    direction: u8,
    x: u32,
    /// The bottom row of what is drawn next (characters, images and symbols alike).
    y: u32,
    /// (y, x, text) of each run of characters; a position command ends a run.
    runs: Vec<(u32, u32, String)>,
    run_open: bool,
    data_matrix: Vec<Vec<u8>>,
    other_2d: Vec<(u8, Vec<u8>)>,
    raster_bands: usize,
}

impl Page {
    fn new(width: u32, height: u32, direction: u8) -> Page {
        Page {
            canvas: Bitmap::new(width, height),
            direction,
            x: 0,
            y: 0,
            runs: Vec::new(),
            run_open: false,
            data_matrix: Vec::new(),
            other_2d: Vec::new(),
            raster_bands: 0,
        }
    }

    /// Draw `bmp` with its bottom row at the print position's row and its left at its column
    /// (`sx` × `sy` dots per image dot).
    fn draw(&mut self, bmp: &Bitmap, sx: u32, sy: u32) {
        let h = bmp.height_px() * sy;
        let top = (self.y + 1).saturating_sub(h);
        for y in 0..bmp.height_px() {
            for x in 0..bmp.width_px() {
                if bmp.get(x, y) {
                    self.canvas
                        .fill_rect(self.x + x * sx, top + y * sy, sx, sy, true);
                }
            }
        }
    }
}

#[derive(Default)]
struct JobNotes {
    text: Vec<String>,
    data_matrix: Vec<Vec<u8>>,
    other_2d: Vec<(u8, Vec<u8>)>,
    barcodes: Vec<String>,
    raster_bands: usize,
    raster_stalls: usize,
}

impl Renderer {
    pub fn new(profile: &Profile) -> Self {
        Renderer {
            width_px: profile.media_width_px,
            data_matrix_cn: profile.native_2d.data_matrix_cn,
            qr_cn: profile.native_2d.qr_cn,
            rows: Vec::new(),
            printed: 0,
            events: VecDeque::new(),
            last_cut_row: 0,
            line: Vec::new(),
            code_pages: crate::printer::codepage::profile_tables(profile),
            code_page: 0,
            style: Style::reset(),
            upside_down: false,
            left_margin_px: 0,
            label_rows: profile.label_rows(),
            page_start_pos: 0,
            label_start: None,
            content_end: None,
            module_px: 3,
            store: Vec::new(),
            barcode_height: 162,
            job: JobNotes::default(),
            done: Vec::new(),
            answered: Vec::new(),
            page: None,
            raster_end_row: None,
            dry_at_row: None,
        }
    }

    /// Finished (cut and printed) pages since the last call.
    pub fn take_jobs(&mut self) -> Vec<RenderedJob> {
        std::mem::take(&mut self.done)
    }

    /// Process IDs whose data has printed, in order, since the last call.
    pub fn take_process_ids(&mut self) -> Vec<ProcessId> {
        std::mem::take(&mut self.answered)
    }

    /// DLE DC4 fn 8: everything developed but not printed is thrown away (rows, events — so
    /// their process IDs are never answered — and the unprinted line).
    pub fn clear_unprinted(&mut self) {
        self.line.clear();
        // A page being composed is data not printed: gone, and the printer back in standard
        // mode (Frank follows every clear with ESC @ anyway).
        self.page = None;
        self.rows.truncate(self.printed);
        self.raster_end_row = None;
        self.dry_at_row = None;
        while self.events.back().is_some_and(|(r, _)| *r > self.printed) {
            self.events.pop_back();
        }
        // Events at the print position have not been acted on yet only if they were added
        // after the last advance; they belong to data not printed: drop them too.
        while self.events.back().is_some_and(|(r, _)| *r == self.printed) {
            self.events.pop_back();
        }
        self.last_cut_row = self.last_cut_row.min(self.printed);
    }

    /// Rows developed and waiting to print.
    pub fn unprinted_rows(&self) -> usize {
        self.rows.len() - self.printed
    }

    /// Whether nothing waits to print (no rows, no events).
    pub fn idle(&self) -> bool {
        self.unprinted_rows() == 0 && self.events.is_empty()
    }

    /// Whether anything is on the current page.
    pub fn page_is_empty(&self) -> bool {
        self.rows.is_empty() && self.line.is_empty()
    }

    /// Print up to `rows` more rows, acting on the events passed (events at the print position
    /// are acted on even with `rows` = 0). Returns the rows printed.
    pub fn advance(&mut self, rows: usize) -> usize {
        let mut left = rows;
        let mut done = 0;
        loop {
            while self.events.front().is_some_and(|(r, _)| *r <= self.printed) {
                if let Some((_, e)) = self.events.pop_front() {
                    self.event(e);
                }
            }
            if left == 0 || self.printed >= self.rows.len() {
                if left > 0 {
                    // The engine could print more and has nothing: it stops here.
                    self.dry_at_row = Some(self.printed);
                }
                return done;
            }
            let next_event = self.events.front().map_or(usize::MAX, |(r, _)| *r);
            let stop = self
                .rows
                .len()
                .min(next_event)
                .min(self.printed.saturating_add(left));
            let step = stop - self.printed;
            self.printed = stop;
            left -= step;
            done += step;
        }
    }

    /// Act on an event at the print position.
    fn event(&mut self, e: TapeEvent) {
        match e {
            TapeEvent::Cut(kind, fit) => self.emit_page(kind, fit),
            TapeEvent::ProcessId(id) => self.answered.push(id),
            TapeEvent::Text(t) => self.job.text.push(t),
            TapeEvent::DataMatrix(d) => self.job.data_matrix.push(d),
            TapeEvent::Other2d(cn, d) => self.job.other_2d.push((cn, d)),
            TapeEvent::Barcode(b) => self.job.barcodes.push(b),
            TapeEvent::RasterBand => self.job.raster_bands += 1,
            TapeEvent::RasterStall => self.job.raster_stalls += 1,
        }
    }

    /// The printed rows become a page; the tape and its events move up.
    fn emit_page(&mut self, kind: CutKind, label: Option<LabelFit>) {
        let n = self.printed;
        self.page_start_pos += n as u64;
        let h = n as u32;
        let rows: Vec<u8> = self.rows.drain(..n).flatten().collect();
        self.printed = 0;
        self.raster_end_row = self.raster_end_row.and_then(|r| r.checked_sub(n));
        self.dry_at_row = self.dry_at_row.and_then(|r| r.checked_sub(n));
        for (r, _) in self.events.iter_mut() {
            *r -= n.min(*r);
        }
        self.last_cut_row = self.last_cut_row.saturating_sub(n);
        let image = Bitmap::from_rows(self.width_px, h, rows)
            .unwrap_or_else(|| Bitmap::new(self.width_px, 0));
        let notes = std::mem::take(&mut self.job);
        self.done.push(RenderedJob {
            image,
            text: notes.text,
            data_matrix: notes.data_matrix,
            other_2d: notes.other_2d,
            barcodes: notes.barcodes,
            raster_bands: notes.raster_bands,
            raster_stalls: notes.raster_stalls,
            cut: kind,
            label,
        });
    }

    /// Tear off what has printed of the current page (paper out, inspection); what is still
    /// to print stays on the tape.
    pub fn tear_off(&mut self) {
        if self.printed > 0 {
            self.emit_page(CutKind::Torn, None);
        }
    }

    fn push_event(&mut self, e: TapeEvent) {
        if self.events.len() < TAPE_EVENTS_MAX {
            self.events.push_back((self.rows.len(), e));
        }
    }

    /// Develop everything with no paper to wait for (tests, benches, tools): apply then print.
    pub fn apply_and_print(&mut self, cmd: Command) {
        self.apply(cmd);
        self.advance(usize::MAX / 2);
    }

    pub fn apply(&mut self, cmd: Command) {
        if self.page.is_some() {
            self.apply_page(cmd);
            return;
        }
        match cmd {
            Command::Text(b) => {
                let c = self.char_of(b);
                self.line.push((c, self.style));
            }
            Command::CodePage(n) => self.code_page = n,
            Command::LineFeed => self.print_line(1),
            Command::FeedLines(n) => self.print_line(u32::from(n)),
            Command::Init => {
                self.style = Style::reset();
                self.upside_down = false;
                self.line.clear();
                self.left_margin_px = 0;
                self.code_page = 0;
            }
            Command::UpsideDown(on) => self.upside_down = on,
            Command::ProcessId(d) => {
                self.print_line(0);
                self.push_event(TapeEvent::ProcessId(ProcessId(d)));
            }
            Command::Justify(j) => self.style.justify = j.min(2),
            Command::Bold(b) => self.style.bold = b,
            Command::Size(n) => {
                self.style.width_mul = u32::from(n >> 4) + 1;
                self.style.height_mul = u32::from(n & 7) + 1;
            }
            Command::Raster {
                mode,
                width_bytes,
                height,
                data,
            } => self.raster(mode, width_bytes, height, &data),
            Command::PageMode => {
                self.print_line(0);
                self.page = Some(Page::new(self.width_px, PAGE_AREA_HEIGHT_PX_DEFAULT, 0));
            }
            Command::Symbol2d { cn, func, params } => self.symbol(cn, func, params),
            Command::BarcodeHeight(h) => self.barcode_height = u32::from(h.max(1)),
            Command::Barcode { data, .. } => self.barcode(&data),
            Command::FeedDots(n) => {
                self.print_line(0);
                self.feed_px(u32::from(n));
            }
            Command::LeftMargin(d) => self.left_margin_px = u32::from(d),
            Command::LabelFeed { func, .. } => self.label_feed(func),
            Command::Cut { mode, feed } => {
                self.print_line(0);
                // GS V 65/66 n: feed n vertical motion units (dots), then cut.
                self.feed_px(u32::from(feed));
                let kind = if matches!(mode, 1 | 49 | 66) {
                    CutKind::Partial
                } else {
                    CutKind::Full
                };
                let fit = self.label_fit();
                self.cut_with(kind, fit);
            }
            Command::StatusQuery(_) | Command::ClearBuffers | Command::Other(_) => {}
            #[allow(unreachable_patterns)]
            _ => {}
        }
        if (self.rows.len() - self.last_cut_row) as u32 >= PAGE_HEIGHT_PX_MAX {
            self.cut(CutKind::Forced);
        }
    }

    /// Turn rows `start..` by 180° (upside-down printing of a line).
    fn rotate_from(&mut self, start: usize) {
        let block = &mut self.rows[start..];
        block.reverse();
        for row in block.iter_mut() {
            row.reverse();
            for b in row.iter_mut() {
                *b = b.reverse_bits();
            }
        }
    }

    fn blank_row(&self) -> Vec<u8> {
        vec![0; self.width_px.div_ceil(8) as usize]
    }

    fn feed_px(&mut self, px: u32) {
        for _ in 0..px {
            let r = self.blank_row();
            self.rows.push(r);
        }
    }

    fn set(&mut self, x: u32, y: usize, black: bool) {
        if x < self.width_px
            && black
            && let Some(row) = self.rows.get_mut(y)
        {
            row[x as usize / 8] |= 0x80 >> (x % 8);
        }
    }

    /// Print the pending line (if any) and feed `lines` lines in total.
    fn print_line(&mut self, lines: u32) {
        let start = self.rows.len();
        let text = self.develop_line(lines);
        if self.upside_down {
            self.rotate_from(start);
        }
        if !text.is_empty() {
            self.push_event(TapeEvent::Text(text));
        }
    }

    /// Develop the pending line into rows (not rotated, no event); returns its text.
    fn develop_line(&mut self, lines: u32) -> String {
        let text: String = self.line.iter().map(|(c, _)| *c).collect();
        let height_mul = self
            .line
            .iter()
            .map(|(_, s)| s.height_mul)
            .max()
            .unwrap_or(1);
        if !self.line.is_empty() {
            let width: u32 = self
                .line
                .iter()
                .map(|(_, s)| CELL_WIDTH_PX * s.width_mul)
                .sum();
            let justify = self.line[0].1.justify;
            let mut x = match justify {
                1 => self.width_px.saturating_sub(width) / 2,
                2 => self.width_px.saturating_sub(width),
                _ => 0,
            };
            let top = self.rows.len();
            self.feed_px(CELL_HEIGHT_PX * height_mul);
            let line = std::mem::take(&mut self.line);
            for (b, s) in &line {
                self.glyph(
                    *b,
                    *s,
                    x,
                    top + ((height_mul - s.height_mul) * CELL_HEIGHT_PX) as usize,
                );
                x += CELL_WIDTH_PX * s.width_mul;
            }
            self.feed_px(LINE_GAP_PX);
        }
        let fed = u32::from(!text.is_empty());
        let more = lines.saturating_sub(fed);
        self.feed_px(more * (CELL_HEIGHT_PX + LINE_GAP_PX));
        text
    }

    fn glyph(&mut self, c: char, s: Style, x0: u32, top: usize) {
        let cell = glyph_bitmap(c, s);
        for y in 0..cell.height_px() {
            for x in 0..cell.width_px() {
                if cell.get(x, y) {
                    self.set(x0 + x, top + y as usize, true);
                }
            }
        }
    }

    fn raster(&mut self, mode: u8, width_bytes: usize, height: usize, data: &[u8]) {
        self.print_line(0);
        let left = self.left_margin_px.min(self.width_px);
        let Some(bmp) = raster_bitmap(width_bytes, height, data) else {
            return;
        };
        let (sx, sy) = raster_scale(mode);
        let top = self.rows.len();
        if self.raster_end_row == Some(top) && self.dry_at_row == Some(top) {
            // The band above this one printed to its end and the engine waited for this one.
            self.push_event(TapeEvent::RasterStall);
        }
        self.feed_px(bmp.height_px() * sy);
        for y in 0..bmp.height_px() {
            for x in 0..bmp.width_px() {
                if bmp.get(x, y) {
                    for dy in 0..sy {
                        for dx in 0..sx {
                            self.set(left + x * sx + dx, top + (y * sy + dy) as usize, true);
                        }
                    }
                }
            }
        }
        self.push_event(TapeEvent::RasterBand);
        self.raster_end_row = Some(self.rows.len());
    }

    /// A command in page mode: drawn on the page at the print position, printed at `FF`.
    fn apply_page(&mut self, cmd: Command) {
        let style = self.style;
        let ch = match cmd {
            Command::Text(b) => Some(self.char_of(b)),
            _ => None,
        };
        let stored = match &cmd {
            Command::Symbol2d { cn, func: 81, .. } => self.stored(*cn),
            _ => None,
        };
        let Some(page) = self.page.as_mut() else {
            return;
        };
        match cmd {
            Command::Text(_) => {
                let c = ch.unwrap_or('\u{fffd}');
                match page.runs.last_mut() {
                    Some((_, _, t)) if page.run_open => t.push(c),
                    _ => page.runs.push((page.y, page.x, c.to_string())),
                }
                page.run_open = true;
                let cell = glyph_bitmap(c, style);
                page.draw(&cell, 1, 1);
                page.x += cell.width_px();
            }
            Command::CodePage(n) => self.code_page = n,
            Command::Bold(b) => self.style.bold = b,
            Command::Size(n) => {
                self.style.width_mul = u32::from(n >> 4) + 1;
                self.style.height_mul = u32::from(n & 7) + 1;
            }
            Command::PageDirection(d) => page.direction = d,
            Command::PageArea { width, height, .. } => {
                let w = u32::from(width).min(self.width_px);
                *page = Page::new(w, u32::from(height), page.direction);
            }
            Command::PositionX(x) => {
                page.x = u32::from(x);
                page.run_open = false;
            }
            Command::PositionY(y) => {
                page.y = u32::from(y);
                page.run_open = false;
            }
            Command::LineFeed => {
                page.run_open = false;
                page.x = 0;
                page.y += CELL_HEIGHT_PX + LINE_GAP_PX;
            }
            Command::Raster {
                mode,
                width_bytes,
                height,
                data,
            } => {
                if let Some(b) = raster_bitmap(width_bytes, height, &data) {
                    let (sx, sy) = raster_scale(mode);
                    page.draw(&b, sx, sy);
                    page.raster_bands += 1;
                }
            }
            Command::Symbol2d { cn, func, params } => match func {
                67 | 80 => self.symbol_setting(cn, func, &params),
                81 => {
                    let Some(data) = stored else {
                        return;
                    };
                    if Some(cn) == self.data_matrix_cn {
                        let m = u32::from(self.module_px);
                        if let Ok(b) = crate::indicium::render::symbol_image_quiet(&data, m, 0) {
                            page.draw(&b, 1, 1);
                        }
                        page.data_matrix.push(data);
                    } else {
                        page.other_2d.push((cn, data));
                    }
                }
                _ => {}
            },
            Command::Cancel => {
                let (w, h, d) = (
                    page.canvas.width_px(),
                    page.canvas.height_px(),
                    page.direction,
                );
                *page = Page::new(w, h, d);
            }
            Command::FormFeed => self.print_page(),
            Command::StandardMode => self.page = None,
            Command::Init => {
                self.page = None;
                self.apply(Command::Init);
            }
            // Process IDs, cuts, feeds, margins: not used inside a page by Frank; ignored.
            _ => {}
        }
    }

    /// `FF`: the page goes onto the tape (turned by 180° for direction 2) and the printer
    /// returns to standard mode; what it holds is recorded once it has printed, text runs in
    /// the order the paper meets them.
    fn print_page(&mut self) {
        let Some(page) = self.page.take() else {
            return;
        };
        let canvas = if page.direction == 2 {
            page.canvas.rotated_180()
        } else {
            page.canvas
        };
        let top = self.rows.len();
        self.feed_px(canvas.height_px());
        for y in 0..canvas.height_px() {
            for x in 0..canvas.width_px() {
                if canvas.get(x, y) {
                    self.set(x, top + y as usize, true);
                }
            }
        }
        let mut runs = page.runs;
        runs.sort_by_key(|(y, x, _)| (*y, *x));
        if page.direction == 2 {
            runs.reverse();
        }
        for (_, _, t) in runs {
            self.push_event(TapeEvent::Text(t));
        }
        for d in page.data_matrix {
            self.push_event(TapeEvent::DataMatrix(d));
        }
        for (cn, d) in page.other_2d {
            self.push_event(TapeEvent::Other2d(cn, d));
        }
        for _ in 0..page.raster_bands {
            self.push_event(TapeEvent::RasterBand);
        }
    }

    fn place(&mut self, bmp: &Bitmap) {
        let x0 = match self.style.justify {
            1 => self.width_px.saturating_sub(bmp.width_px()) / 2,
            2 => self.width_px.saturating_sub(bmp.width_px()),
            _ => 0,
        };
        let top = self.rows.len();
        self.feed_px(bmp.height_px());
        for y in 0..bmp.height_px() {
            for x in 0..bmp.width_px() {
                if bmp.get(x, y) {
                    self.set(x0 + x, top + y as usize, true);
                }
            }
        }
    }

    /// The character a text byte is in the selected code page; one the emulator has no table
    /// for (or an unassigned one) prints as a blank cell and is recorded as U+FFFD.
    fn char_of(&self, b: u8) -> char {
        self.code_pages
            .iter()
            .find(|(i, _)| *i == self.code_page)
            .and_then(|(_, t)| crate::printer::codepage::char_of(t, b))
            .or_else(|| (b < 0x80).then(|| char::from(b)))
            .unwrap_or('\u{fffd}')
    }

    /// `GS ( k` fn 67 (module size) and fn 80 (store: m = 48 then the data; no data empties
    /// the symbol's memory, so a later print prints nothing).
    fn symbol_setting(&mut self, cn: u8, func: u8, params: &[u8]) {
        match func {
            67 => self.module_px = params.first().copied().unwrap_or(3).clamp(1, 16),
            80 => {
                let data = params.get(1..).unwrap_or_default().to_vec();
                self.store.retain(|(c, _)| *c != cn);
                if !data.is_empty() {
                    self.store.push((cn, data));
                }
            }
            _ => {}
        }
    }

    /// The data stored for symbol `cn`, if any.
    fn stored(&self, cn: u8) -> Option<Vec<u8>> {
        self.store
            .iter()
            .find(|(c, _)| *c == cn)
            .map(|(_, d)| d.clone())
    }

    fn symbol(&mut self, cn: u8, func: u8, params: Vec<u8>) {
        match func {
            67 | 80 => self.symbol_setting(cn, func, &params),
            81 => {
                self.print_line(0);
                let Some(data) = self.stored(cn) else {
                    return;
                };
                if Some(cn) == self.data_matrix_cn {
                    if let Ok(bmp) = render_data_matrix(&data, u32::from(self.module_px)) {
                        self.place(&bmp);
                    }
                    self.push_event(TapeEvent::DataMatrix(data));
                } else {
                    if Some(cn) == self.qr_cn {
                        let text = String::from_utf8_lossy(&data).to_string();
                        let m = u32::from(self.module_px);
                        if let Some(bmp) = encode_rxing(&text, rxing::BarcodeFormat::QR_CODE, m, m)
                        {
                            self.place(&bmp);
                        }
                    }
                    self.push_event(TapeEvent::Other2d(cn, data));
                }
            }
            _ => {}
        }
    }

    fn barcode(&mut self, data: &[u8]) {
        self.print_line(0);
        let start = self.rows.len();
        let text: String = data
            .strip_prefix(b"{B")
            .unwrap_or(data)
            .iter()
            .map(|b| char::from(*b))
            .collect();
        let h = self.barcode_height;
        match encode_rxing(&text, rxing::BarcodeFormat::CODE_128, BARCODE_MODULE_PX, h) {
            Some(bars) => {
                let saved = self.style.justify;
                self.style.justify = 1;
                self.place(&bars);
                self.style.justify = saved;
            }
            None => self.feed_px(h),
        }
        let saved = std::mem::take(&mut self.line);
        let mut st = Style::reset();
        st.justify = 1;
        self.line = text.chars().map(|c| (c, st)).collect();
        let hri = self.develop_line(1);
        self.line = saved;
        // Upside-down printing turns a barcode with its HRI line (Epson: GS k is affected by
        // upside-down mode only).
        if self.upside_down {
            self.rotate_from(start);
        }
        self.push_event(TapeEvent::Barcode(hri));
    }

    fn cut(&mut self, kind: CutKind) {
        self.cut_with(kind, None);
    }

    fn cut_with(&mut self, kind: CutKind, fit: Option<LabelFit>) {
        self.print_line(0);
        self.push_event(TapeEvent::Cut(kind, fit));
        self.last_cut_row = self.rows.len();
        self.label_start = None;
        self.content_end = None;
    }

    /// Paper position (rows from the roll's start) of the next row to develop.
    fn paper_pos(&self) -> u64 {
        self.page_start_pos + self.rows.len() as u64
    }

    /// `FS ( L`: fn 67 feeds to the next label's print starting position (its top) unless the
    /// paper is at one; fn 66 (and 65, peeling, modelled alike) to the cutting position, the
    /// middle of the gap after the current label. On a roll they do nothing.
    fn label_feed(&mut self, func: u8) {
        self.print_line(0);
        let Some((l, g)) = self.label_rows else {
            return;
        };
        let pitch = u64::from(l + g);
        let pos = self.paper_pos();
        match func {
            67 => {
                let off = pos % pitch;
                if off != 0 {
                    self.feed_px((pitch - off) as u32);
                }
                self.label_start = Some(self.paper_pos());
            }
            65 | 66 => {
                self.content_end = Some(pos);
                let cut_at = u64::from(l) + u64::from(g) / 2;
                let mut target = pos / pitch * pitch + cut_at;
                if pos > target {
                    target += pitch;
                }
                self.feed_px((target - pos) as u32);
            }
            _ => {}
        }
    }

    /// Where a page cut here sits on the label stock.
    fn label_fit(&self) -> Option<LabelFit> {
        let (l, g) = self.label_rows?;
        let pitch = u64::from(l + g);
        let cut = self.paper_pos();
        let start = self.label_start.unwrap_or(self.page_start_pos);
        let end = self.content_end.unwrap_or(cut);
        let start_offset_rows = (start % pitch) as u32;
        let cut_offset_rows = (cut % pitch) as u32;
        let content_rows = end.saturating_sub(start) as u32;
        let misaligned =
            start_offset_rows != 0 || content_rows > l || !(l..l + g).contains(&cut_offset_rows);
        Some(LabelFit {
            start_offset_rows,
            cut_offset_rows,
            content_rows,
            misaligned,
        })
    }
}

/// `GS v 0` data as a bitmap (`None` when the data is short or the size absurd).
fn raster_bitmap(width_bytes: usize, height: usize, data: &[u8]) -> Option<Bitmap> {
    let w = u32::try_from(width_bytes.checked_mul(8)?).ok()?;
    let h = u32::try_from(height).ok()?;
    let need = width_bytes.checked_mul(height)?;
    let mut rows = data.get(..need.min(data.len()))?.to_vec();
    rows.resize(need, 0);
    Bitmap::from_rows(w, h, rows)
}

/// Dots per image dot across and down for `GS v 0` mode m.
fn raster_scale(mode: u8) -> (u32, u32) {
    match mode {
        1 => (2, 1),
        2 => (1, 2),
        3 => (2, 2),
        _ => (1, 1),
    }
}

/// One character cell as a bitmap (font A cell, 12 × 24 dots at ×1), as [`Renderer::glyph`]
/// draws it in standard mode.
fn glyph_bitmap(c: char, s: Style) -> Bitmap {
    let mut cell = Bitmap::new(CELL_WIDTH_PX * s.width_mul, CELL_HEIGHT_PX * s.height_mul);
    let Some(g) = font8x8::BASIC_FONTS
        .get(c)
        .or_else(|| font8x8::LATIN_FONTS.get(c))
        .or_else(|| font8x8::GREEK_FONTS.get(c))
        .or_else(|| font8x8::BOX_FONTS.get(c))
        .or_else(|| font8x8::BLOCK_FONTS.get(c))
        .or_else(|| font8x8::MISC_FONTS.get(c))
    else {
        return cell;
    };
    let (sx, sy) = (s.width_mul, 3 * s.height_mul);
    for (gy, bits) in g.iter().enumerate() {
        for gx in 0..8u32 {
            if bits & (1 << gx) != 0 {
                cell.fill_rect(
                    2 * s.width_mul + gx * sx,
                    gy as u32 * sy,
                    sx + u32::from(s.bold),
                    sy,
                    true,
                );
            }
        }
    }
    cell
}

/// Dots per CODE128 module (the compiler sends GS w 2).
const BARCODE_MODULE_PX: u32 = 2;

/// The 8 × 8 glyph of `c` (font8x8: Latin, Greek, box, block glyphs), rows top first, bit 0
/// the leftmost dot; the ESC/POS and the ZPL emulators draw text with it.
pub(crate) fn glyph_rows(c: char) -> Option<[u8; 8]> {
    font8x8::BASIC_FONTS
        .get(c)
        .or_else(|| font8x8::LATIN_FONTS.get(c))
        .or_else(|| font8x8::GREEK_FONTS.get(c))
        .or_else(|| font8x8::BOX_FONTS.get(c))
        .or_else(|| font8x8::BLOCK_FONTS.get(c))
        .or_else(|| font8x8::MISC_FONTS.get(c))
}

/// Draw a symbol with rxing's writers: each module `sx` × `sy` dots (for 1-D, `sy` is the height).
pub(crate) fn encode_rxing(
    text: &str,
    format: rxing::BarcodeFormat,
    sx: u32,
    sy: u32,
) -> Option<Bitmap> {
    use rxing::Writer;
    let m: rxing::common::BitMatrix = match format {
        rxing::BarcodeFormat::QR_CODE => rxing::qrcode::QRCodeWriter.encode(text, &format, 0, 0),
        _ => rxing::oned::Code128Writer.encode(text, &format, 0, 1),
    }
    .ok()?;
    let one_d = format != rxing::BarcodeFormat::QR_CODE;
    let (w, h) = (m.getWidth(), if one_d { 1 } else { m.getHeight() });
    let mut out = Bitmap::new(w * sx, if one_d { sy } else { h * sy });
    for y in 0..h {
        for x in 0..w {
            if m.get(x, y) {
                let (py, ph) = if one_d { (0, sy) } else { (y * sy, sy) };
                out.fill_rect(x * sx, py, sx, ph, true);
            }
        }
    }
    Some(out)
}

/// Encode a bitmap as PNG (black dots on white).
pub fn png_bytes(b: &Bitmap) -> Result<Vec<u8>, image::ImageError> {
    b.to_png()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::compiler::{Element, Indicium, Label, TextLine, compile};
    use crate::printer::emulator::parser::Parser;
    use crate::printer::profile::shipped;

    #[test]
    fn renders_text_datamatrix_and_cut() {
        let p = shipped("virtual").unwrap();
        let label = Label {
            elements: vec![
                Element::Text(TextLine::plain("HELLO")),
                Element::Indicium(Indicium::DataMatrix {
                    data: b"ABC123".to_vec(),
                    module_px: 4,
                }),
            ],
            cut: true,
        };
        let job = compile(&label, &p, 256).unwrap();
        let mut parser = Parser::new();
        let mut r = Renderer::new(&p);
        for b in &job.bytes {
            if let Some(c) = parser.push(*b) {
                r.apply_and_print(c);
            }
        }
        let jobs = r.take_jobs();
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].text, vec!["HELLO".to_string()]);
        assert_eq!(jobs[0].data_matrix, vec![b"ABC123".to_vec()]);
        assert_eq!(jobs[0].cut, CutKind::Partial);
        assert!(jobs[0].image.black_count() > 100);
    }
}
