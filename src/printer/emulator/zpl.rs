//! The virtual ZPL printer (a profile with `language = "zpl"`): the same pty, line speed,
//! receive buffer, fault injection, pages and control socket as the ESC/POS emulator, with a
//! ZPL engine behind them.
//!
//! - **At receive time** (as the tilde commands of a Zebra act at once): `~HS` is answered with
//!   the manual's three strings, `~JA` cancels every format not yet printing (the open one and
//!   those waiting); `^XA` and `^XZ` are counted, so `~HS` tells formats held and a partial
//!   format exactly.
//! - **Parser**: a tokenizer on `^`/`~` takes bytes out of the receive buffer at
//!   `throughput_bytes_per_s`; each command goes through [`COMMANDS`], a dispatch table, into
//!   the open format. Only `^XZ` closes a format; an unclosed one never prints.
//! - **Engine**: closed formats print one after another, `^LL` rows each at
//!   `[engine] speed_mm_per_s`; paper out or an open head stops it where it is. A page (PNG) is
//!   written when its label has printed whole: text (font8x8), `^BX` Data Matrix drawn with the
//!   indicium's own encoder, `^GF` graphics, `^GB` boxes, `^BC` CODE128.

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::render::{CutKind, RenderedJob, encode_rxing, glyph_rows};
use super::{Clock, Engine, READ_BYTES_MAX, TICK_MS, lock};
use crate::indicium::render::symbol_modules;
use crate::printer::bitmap::{BITMAP_SIDE_PX_MAX, Bitmap};
use crate::printer::profile::{CutCommand, Profile};
use crate::printer::zpl::{HostStatus, decode_field_data};

/// Longest command (prefix, code and parameters) the parser keeps; a longer one is dropped.
/// A `^GF` of a whole 4 × 6 in label at 300 dpi in hex is under 600 KB.
pub const COMMAND_BYTES_MAX: usize = 1 << 20;
/// Most fields in one format; later ones are dropped.
pub const FIELDS_PER_FORMAT_MAX: usize = 1024;
/// Closed formats waiting to print; beyond this the receive side stops taking bytes.
pub const FORMATS_QUEUED_MAX: usize = 64;

/// One ZPL command: `^` or `~`, a two-character code, its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub prefix: u8,
    pub code: [u8; 2],
    pub params: Vec<u8>,
}

/// Commands with no parameters: complete as soon as their code is read.
const BARE: &[&[u8; 2]] = &[b"XA", b"XZ", b"FS"];

/// Splits a byte stream into [`Token`]s at `^` and `~`.
#[derive(Debug, Default)]
pub struct Tokenizer {
    cur: Option<Token>,
    code_len: usize,
    /// Commands dropped for being longer than [`COMMAND_BYTES_MAX`].
    pub dropped: u64,
}

impl Tokenizer {
    pub fn reset(&mut self) {
        self.cur = None;
        self.code_len = 0;
    }

    /// Feed one byte; a command that this byte completes comes out.
    pub fn push(&mut self, b: u8, out: &mut Vec<Token>) {
        if b == b'^' || b == b'~' {
            if let Some(t) = self.cur.take()
                && self.code_len == 2
            {
                out.push(t);
            }
            self.cur = Some(Token {
                prefix: b,
                code: [0; 2],
                params: Vec::new(),
            });
            self.code_len = 0;
            return;
        }
        let Some(t) = self.cur.as_mut() else {
            return; // Bytes outside a command (line ends between commands).
        };
        if self.code_len < 2 {
            if matches!(b, b'\r' | b'\n') {
                return;
            }
            t.code[self.code_len] = b.to_ascii_uppercase();
            self.code_len += 1;
            if self.code_len == 2 && BARE.contains(&&t.code) {
                if let Some(t) = self.cur.take() {
                    out.push(t);
                }
                self.code_len = 0;
            }
            return;
        }
        if t.params.len() >= COMMAND_BYTES_MAX {
            self.dropped += 1;
            self.cur = None;
            return;
        }
        t.params.push(b);
    }
}

/// A field's content.
#[derive(Debug, Clone)]
enum Content {
    Text {
        height: u32,
        width: u32,
        block: Option<(u32, u8)>,
        text: String,
    },
    DataMatrix {
        module: u32,
        payload: Vec<u8>,
    },
    Graphic(Bitmap),
    Box {
        width: u32,
        height: u32,
        thickness: u32,
    },
    Code128 {
        height: u32,
        module: u32,
        data: String,
    },
}

#[derive(Debug, Clone)]
struct Field {
    x: u32,
    y: u32,
    content: Content,
}

/// What the field being built has been told so far (`^FO` … `^FS`).
#[derive(Debug, Clone, Default)]
struct Pending {
    x: u32,
    y: u32,
    font: Option<(u32, u32)>,
    block: Option<(u32, u8)>,
    hex: Option<u8>,
    symbol: Option<Symbol>,
    data: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy)]
enum Symbol {
    DataMatrix { module: u32, escape: Option<u8> },
    Code128 { height: u32 },
}

/// A format between `^XA` and `^XZ`.
#[derive(Debug, Clone, Default)]
pub struct Format {
    width: u32,
    length: u32,
    cutter: bool,
    fields: Vec<Field>,
    pending: Pending,
    barcode_module: u32,
}

type Handler = fn(&mut Format, &[u8]);

/// The dispatch table: each command Frank's compiler sends (and a few more that are harmless)
/// and what it does to the open format. Commands not listed are ignored.
pub const COMMANDS: &[(&[u8; 2], Handler)] = &[
    (b"PW", |f, p| f.width = num(p, 0).unwrap_or(f.width)),
    (b"LL", |f, p| f.length = num(p, 0).unwrap_or(f.length)),
    (b"MM", |f, p| f.cutter = p.first() == Some(&b'C')),
    (b"FO", |f, p| {
        f.pending.x = num(p, 0).unwrap_or(0);
        f.pending.y = num(p, 1).unwrap_or(0);
    }),
    (b"A0", |f, p| {
        // `^A0N,h,w` (the code's second character is the font name, then the orientation).
        let h = num(p, 1).unwrap_or(24).max(1);
        f.pending.font = Some((h, num(p, 2).unwrap_or(h / 2).max(1)));
    }),
    (b"FB", |f, p| {
        let j = param(p, 3).and_then(|j| j.first().copied()).unwrap_or(b'L');
        f.pending.block = Some((num(p, 0).unwrap_or(0), j));
    }),
    (b"FH", |f, p| {
        f.pending.hex = Some(p.first().copied().unwrap_or(b'_'))
    }),
    (b"BY", |f, p| {
        f.barcode_module = num(p, 0).unwrap_or(2).max(1)
    }),
    (b"BX", |f, p| {
        f.pending.symbol = Some(Symbol::DataMatrix {
            module: num(p, 1).unwrap_or(1).max(1),
            escape: param(p, 6).and_then(|g| g.first().copied()),
        });
    }),
    (b"BC", |f, p| {
        f.pending.symbol = Some(Symbol::Code128 {
            height: num(p, 1).unwrap_or(10).max(1),
        });
    }),
    (b"FD", |f, p| f.pending.data = Some(p.to_vec())),
    (b"GB", |f, p| {
        let thickness = num(p, 2).unwrap_or(1).max(1);
        f.push(Content::Box {
            width: num(p, 0).unwrap_or(thickness),
            height: num(p, 1).unwrap_or(thickness),
            thickness,
        });
    }),
    (b"GF", |f, p| {
        if let Some(b) = graphic(p) {
            f.push(Content::Graphic(b));
        }
    }),
    (b"FS", |f, _| f.end_field()),
];

fn param(p: &[u8], i: usize) -> Option<&[u8]> {
    p.split(|b| *b == b',').nth(i).filter(|s| !s.is_empty())
}

fn num(p: &[u8], i: usize) -> Option<u32> {
    std::str::from_utf8(param(p, i)?).ok()?.trim().parse().ok()
}

/// `^GFA,total,total,row_bytes,HEX` → a bitmap (`A`: ASCII hex, uncompressed).
fn graphic(p: &[u8]) -> Option<Bitmap> {
    let mut parts = p.splitn(5, |b| *b == b',');
    if parts.next()? != b"A" {
        return None;
    }
    let total: usize = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let _ = parts.next()?;
    let stride: usize = std::str::from_utf8(parts.next()?).ok()?.parse().ok()?;
    let data = hex::decode(parts.next()?.trim_ascii()).ok()?;
    if stride == 0 || data.len() != total || !total.is_multiple_of(stride) {
        return None;
    }
    let rows = (total / stride) as u32;
    let width = (stride * 8) as u32;
    if width > BITMAP_SIDE_PX_MAX || rows > BITMAP_SIDE_PX_MAX {
        return None;
    }
    Bitmap::from_rows(width, rows, data)
}

impl Format {
    fn push(&mut self, content: Content) {
        if self.fields.len() < FIELDS_PER_FORMAT_MAX {
            self.fields.push(Field {
                x: self.pending.x,
                y: self.pending.y,
                content,
            });
        }
    }

    /// `^FS`: the field's data becomes text, a symbol or nothing; the next field starts clean.
    fn end_field(&mut self) {
        let p = std::mem::take(&mut self.pending);
        let Some(raw) = p.data.as_deref() else {
            return;
        };
        let content = match p.symbol {
            Some(Symbol::DataMatrix { module, escape }) => Content::DataMatrix {
                module,
                payload: decode_field_data(raw, p.hex, escape),
            },
            Some(Symbol::Code128 { height }) => Content::Code128 {
                height,
                module: self.barcode_module.max(1),
                data: String::from_utf8_lossy(&decode_field_data(raw, p.hex, None))
                    .replace("><", ">"),
            },
            None => {
                let (height, width) = p.font.unwrap_or((24, 12));
                Content::Text {
                    height,
                    width,
                    block: p.block,
                    text: String::from_utf8_lossy(&decode_field_data(raw, p.hex, None))
                        .into_owned(),
                }
            }
        };
        let keep = Pending {
            x: p.x,
            y: p.y,
            ..Pending::default()
        };
        self.pending = keep;
        self.push(content);
    }

    fn apply(&mut self, t: &Token) {
        if let Some((_, h)) = COMMANDS.iter().find(|(c, _)| **c == t.code) {
            h(self, &t.params);
        }
    }

    /// The label as it prints: a page of `^PW` × `^LL` dots (`^LL` 0: as long as its content).
    fn render(&self, profile: &Profile) -> RenderedJob {
        let width = if self.width == 0 {
            profile.media_width_px
        } else {
            self.width
        }
        .min(BITMAP_SIDE_PX_MAX);
        let content_end = self.fields.iter().map(|f| f.y + 64).max().unwrap_or(1);
        let length = if self.length == 0 {
            content_end
        } else {
            self.length
        }
        .clamp(1, BITMAP_SIDE_PX_MAX);
        let mut page = RenderedJob {
            image: Bitmap::new(width, length),
            text: Vec::new(),
            data_matrix: Vec::new(),
            other_2d: Vec::new(),
            barcodes: Vec::new(),
            raster_bands: 0,
            raster_stalls: 0,
            cut: if self.cutter {
                CutKind::Full
            } else {
                CutKind::Torn
            },
            label: None,
        };
        for f in &self.fields {
            match &f.content {
                Content::Text {
                    height,
                    width: cw,
                    block,
                    text,
                } => {
                    let line = text.chars().count() as u32 * cw;
                    let x = match block {
                        Some((w, b'C')) => f.x + w.saturating_sub(line) / 2,
                        Some((w, b'R')) => f.x + w.saturating_sub(line),
                        _ => f.x,
                    };
                    for (i, c) in text.chars().enumerate() {
                        draw_glyph(&mut page.image, c, x + i as u32 * cw, f.y, *cw, *height);
                    }
                    page.text.push(text.clone());
                }
                Content::DataMatrix { module, payload } => {
                    // The printer's own encoder; the emulator uses the indicium's.
                    if let Ok((bits, side, _)) = symbol_modules(payload) {
                        let side = side as u32;
                        for (i, dark) in bits.iter().enumerate() {
                            if *dark {
                                let i = i as u32;
                                page.image.fill_rect(
                                    f.x + (i % side) * module,
                                    f.y + (i / side) * module,
                                    *module,
                                    *module,
                                    true,
                                );
                            }
                        }
                        page.data_matrix.push(payload.clone());
                    }
                }
                Content::Graphic(b) => {
                    page.image.blit(b, f.x, f.y);
                    page.raster_bands += 1;
                }
                Content::Box {
                    width: w,
                    height: h,
                    thickness: t,
                } => {
                    let img = &mut page.image;
                    img.fill_rect(f.x, f.y, *w, *t, true);
                    img.fill_rect(f.x, f.y + h.saturating_sub(*t), *w, *t, true);
                    img.fill_rect(f.x, f.y, *t, *h, true);
                    img.fill_rect(f.x + w.saturating_sub(*t), f.y, *t, *h, true);
                }
                Content::Code128 {
                    height,
                    module,
                    data,
                } => {
                    if let Some(b) =
                        encode_rxing(data, rxing::BarcodeFormat::CODE_128, *module, *height)
                    {
                        page.image.blit(&b, f.x, f.y);
                        for (i, c) in data.chars().enumerate() {
                            draw_glyph(
                                &mut page.image,
                                c,
                                f.x + i as u32 * 12,
                                f.y + height + 2,
                                12,
                                24,
                            );
                        }
                        page.barcodes.push(data.clone());
                    }
                }
            }
        }
        page
    }
}

/// An 8 × 8 glyph scaled to a `w` × `h` cell at (`x`, `y`).
fn draw_glyph(img: &mut Bitmap, c: char, x: u32, y: u32, w: u32, h: u32) {
    let Some(g) = glyph_rows(c) else {
        return;
    };
    for py in 0..h {
        let row = g[(py * 8 / h.max(1)).min(7) as usize];
        for px in 0..w {
            if row & (1 << (px * 8 / w.max(1)).min(7)) != 0 {
                img.set(x + px, y + py, true);
            }
        }
    }
}

/// The printer side of a ZPL emulator: formats, the engine and the `~HS` answer. No I/O.
#[derive(Debug, Default)]
pub struct ZplPrinter {
    tokenizer: Tokenizer,
    open: Option<Format>,
    /// Closed formats waiting to print (parsed).
    ready: VecDeque<Format>,
    /// The label printing: its page and rows left.
    printing: Option<(RenderedJob, u32)>,
    /// Receive-time counts: an `^XA` received without its `^XZ`; formats whose `^XZ` arrived
    /// and that have not finished printing.
    rx_open: bool,
    rx_closed: u32,
    /// The last two bytes received (to see `^XA`, `^XZ`, `~HS`, `~JA` as they arrive).
    rx_tail: [u8; 2],
    last_length: u32,
    pub status_queries: u64,
    pub cancels: u64,
}

/// What a received byte asks of the I/O side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Immediate {
    /// Keep the byte in the receive buffer.
    Keep,
    /// `~HS` arrived: answer now.
    HostStatus,
    /// `~JA` arrived: the receive buffer is to be emptied.
    CancelAll,
}

impl ZplPrinter {
    pub fn new() -> Self {
        Self::default()
    }

    /// A byte off the line, at receive time.
    pub fn receive(&mut self, b: u8) -> Immediate {
        let tri = [self.rx_tail[0], self.rx_tail[1], b.to_ascii_uppercase()];
        self.rx_tail = [tri[1], tri[2]];
        match &tri {
            b"^XA" => self.rx_open = true,
            b"^XZ" if self.rx_open => {
                self.rx_open = false;
                self.rx_closed += 1;
            }
            b"~HS" => {
                self.status_queries += 1;
                return Immediate::HostStatus;
            }
            b"~JA" => {
                self.cancel_all();
                return Immediate::CancelAll;
            }
            _ => {}
        }
        Immediate::Keep
    }

    /// `~JA`: the open format and every closed one not yet printing are gone; the label
    /// printing finishes.
    fn cancel_all(&mut self) {
        self.cancels += 1;
        self.tokenizer.reset();
        self.open = None;
        self.ready.clear();
        self.rx_open = false;
        self.rx_closed = u32::from(self.printing.is_some());
    }

    /// A byte from the receive buffer, at the parser's pace.
    pub fn parse(&mut self, b: u8) {
        let mut toks = Vec::new();
        self.tokenizer.push(b, &mut toks);
        for t in toks {
            match (&t.prefix, &t.code) {
                (b'^', b"XA") => {
                    if self.open.is_none() {
                        self.open = Some(Format::default());
                    }
                }
                (b'^', b"XZ") => {
                    if let Some(f) = self.open.take() {
                        self.ready.push_back(f);
                    }
                }
                (b'~', _) => {} // Acted on at receive time.
                _ => {
                    if let Some(f) = self.open.as_mut() {
                        f.apply(&t);
                    }
                }
            }
        }
    }

    /// Whether the parser should wait (the engine has enough closed formats queued).
    pub fn busy(&self) -> bool {
        self.ready.len() >= FORMATS_QUEUED_MAX
    }

    /// Print up to `rows` rows; returns (rows used, a label that finished).
    pub fn advance(&mut self, profile: &Profile, rows: u32) -> (u32, Option<RenderedJob>) {
        if self.printing.is_none()
            && let Some(f) = self.ready.pop_front()
        {
            let page = f.render(profile);
            let len = page.image.height_px();
            self.last_length = len;
            self.printing = Some((page, len));
        }
        let Some((_, left)) = self.printing.as_mut() else {
            return (0, None);
        };
        let used = rows.min(*left);
        *left -= used;
        if *left > 0 {
            return (used, None);
        }
        let done = self.printing.take().map(|(p, _)| p);
        self.rx_closed = self.rx_closed.saturating_sub(1);
        (used, done)
    }

    /// Whether nothing is printing or waiting.
    pub fn idle(&self) -> bool {
        self.printing.is_none() && self.ready.is_empty()
    }

    /// The `~HS` answer now.
    pub fn host_status(
        &self,
        paper_out: bool,
        head_up: bool,
        buffer_full: bool,
        cutter: bool,
    ) -> Vec<u8> {
        HostStatus {
            paper_out,
            paused: false,
            label_length_dots: self.last_length,
            formats_in_buffer: self.rx_closed,
            buffer_full,
            partial_format: self.rx_open,
            head_up,
            ribbon_out: false,
            labels_remaining: self.rx_closed,
        }
        .to_bytes(if cutter { 3 } else { 2 })
    }
}

impl Engine {
    /// The ZPL engine's I/O loop (see the module comment).
    pub(super) fn pump_zpl(&mut self) -> std::io::Result<()> {
        let rx_cap = self.profile.receive_buffer_bytes as usize;
        let cutter = self.profile.cut != CutCommand::None;
        let mut rx: VecDeque<u8> = VecDeque::with_capacity(rx_cap);
        let mut printer = ZplPrinter::new();
        let mut clock = Clock::new(&self.profile, self.baud);
        let mut buf = vec![0u8; READ_BYTES_MAX];
        let mut page_no = 0usize;
        while !self.stop.load(Ordering::SeqCst) {
            clock.tick();
            let (silent, vanish, halted) = {
                let s = lock(&self.shared);
                (s.silent, s.vanish, s.paper_out || s.cover_open)
            };
            if vanish {
                lock(&self.shared).vanished = true;
                return Ok(());
            }
            let n = self.read_line(&mut clock, silent, rx.len(), &mut buf)?;
            for &b in &buf[..n] {
                let (paper_out, cover_open) = self.take_in(b);
                match printer.receive(b) {
                    Immediate::HostStatus => {
                        // The "~H" before it is not a command the parser should see.
                        rx.truncate(rx.len().saturating_sub(2));
                        lock(&self.shared).status_queries += 1;
                        let answer =
                            printer.host_status(paper_out, cover_open, rx.len() >= rx_cap, cutter);
                        self.reply(&answer);
                    }
                    Immediate::CancelAll => {
                        rx.clear();
                        lock(&self.shared).clears += 1;
                    }
                    Immediate::Keep => self.keep(b, &mut rx, rx_cap),
                }
            }
            let mut worked = 0usize;
            while clock.process_credit >= 1.0 && !printer.busy() {
                let Some(b) = rx.pop_front() else { break };
                clock.process_credit -= 1.0;
                worked += 1;
                printer.parse(b);
            }
            if rx.is_empty() {
                clock.process_credit = clock.process_credit.min(16.0);
            }
            if !halted {
                let (rows, done) = printer.advance(&self.profile, clock.row_credit.floor() as u32);
                clock.row_credit -= f64::from(rows);
                if printer.idle() {
                    clock.row_credit = clock.row_credit.min(1.0);
                }
                worked += rows as usize;
                if let Some(page) = done {
                    page_no += 1;
                    self.finish_page(page, page_no)?;
                }
            }
            if n == 0 && worked == 0 {
                std::thread::sleep(Duration::from_millis(TICK_MS));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::compiler::{Element, Indicium, Label, TextLine, compile};
    use crate::printer::profile::shipped;

    fn label() -> Label {
        Label {
            elements: vec![
                Element::Text(TextLine::plain("HELLO ^~_ É")),
                Element::Indicium(Indicium::DataMatrix {
                    data: (0..=255u8).collect(),
                    module_px: 3,
                }),
                Element::Barcode {
                    data: "94001>2".into(),
                    height_dots: 40,
                },
            ],
            cut: true,
        }
    }

    fn run(p: &mut ZplPrinter, profile: &Profile, bytes: &[u8]) -> Vec<RenderedJob> {
        for &b in bytes {
            if p.receive(b) == Immediate::Keep {
                p.parse(b);
            }
        }
        let mut out = Vec::new();
        for _ in 0..10 {
            if let (_, Some(page)) = p.advance(profile, u32::MAX) {
                out.push(page);
            }
        }
        out
    }

    #[test]
    fn a_closed_format_prints_what_the_compiler_meant() {
        let profile = shipped("zebra-virtual").unwrap();
        let job = compile(&label(), &profile, 256).unwrap();
        let mut p = ZplPrinter::new();
        let pages = run(&mut p, &profile, &job.bytes);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].text, vec!["HELLO ^~_ É".to_string()]);
        assert_eq!(pages[0].data_matrix, vec![(0..=255u8).collect::<Vec<_>>()]);
        assert_eq!(pages[0].barcodes, vec!["94001>2".to_string()]);
        assert_eq!(pages[0].image.height_px(), profile.label_rows().unwrap().0);
        assert_eq!(pages[0].cut, CutKind::Full);
    }

    #[test]
    fn an_unclosed_format_prints_nothing_and_ja_drops_it() {
        let profile = shipped("zebra-virtual").unwrap();
        let job = compile(&label(), &profile, 256).unwrap();
        let xz = job.indicium_marks_at.unwrap();
        let mut p = ZplPrinter::new();
        assert!(run(&mut p, &profile, &job.bytes[..xz + 2]).is_empty());
        let hs = |p: &ZplPrinter| {
            let mut r = crate::printer::zpl::HostStatusReader::new();
            let mut out = Vec::new();
            r.push_all(&p.host_status(false, false, false, true), &mut out);
            out[0]
        };
        assert!(hs(&p).partial_format);
        assert!(run(&mut p, &profile, b"~JA").is_empty());
        assert!(hs(&p).holds_nothing());
        // The next whole job prints one label, the dropped one nowhere.
        let pages = run(&mut p, &profile, &job.bytes);
        assert_eq!(pages.len(), 1);
        assert_eq!(pages[0].data_matrix.len(), 1);
    }

    #[test]
    fn tokenizer_splits_on_prefixes() {
        let mut t = Tokenizer::default();
        let mut out = Vec::new();
        for b in b"^XA^FO1,2^FDa,b^FS~HS^XZ" {
            t.push(*b, &mut out);
        }
        let codes: Vec<&[u8; 2]> = out.iter().map(|t| &t.code).collect();
        assert_eq!(codes, vec![b"XA", b"FO", b"FD", b"FS", b"HS", b"XZ"]);
        assert_eq!(out[2].params, b"a,b");
    }
}
