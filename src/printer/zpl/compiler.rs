//! The ZPL compiler: the same [`Label`] descriptions the ESC/POS compiler takes (the postage
//! label, the item faces, VOID) → one `^XA … ^XZ` format per label. No I/O.
//!
//! The job starts with `~JA` (nothing an earlier, stopped job left open can join this format);
//! the format sets the label up (`^CI28` UTF-8, `^PW` print width, `^LL` label length, `^MN`
//! media tracking, `^MM` tear-off or cutter, `^LH0,0`), places every element with `^FO` from the
//! top of the label down, and ends with the indicium — native `^BX` Data Matrix (ECC 200) or a
//! `^GF` graphic, as the profile says — right before the closing `^XZ`. Nothing prints until
//! `^XZ` arrives, so the job's markers are: `indicium` from the symbol's `^FO` to the end of
//! `^XZ`, `indicium_marks_at` at `^XZ` (the one command that can put marks on paper).

use std::ops::Range;

use super::{FORMAT_END, FORMAT_START, field_text, symbol_field_data};
use crate::indicium::render::{QUIET_MODULES, module_dots, symbol_modules};
use crate::printer::codepage;
use crate::printer::compiler::{
    Align, BLOCK_GAP_PX, CHUNK_BYTES_MIN, CompileError, CompileOptions, Element, Indicium, Job,
    LABEL_ELEMENTS_MAX, Label, Layout, TextLine, check_line_length, chunk, render_data_matrix,
    text_columns,
};
use crate::printer::profile::{CutCommand, MediaKind, Profile, ZplIndicium};

/// Character cell of `^A0` at 203 dpi, in dots (the size Frank asks for; the ESC/POS font A
/// cell, so the profile's `columns` mean the same on both languages). Scaled with the dpi.
pub const CELL_WIDTH_DOTS_AT_203: u32 = 12;
pub const CELL_HEIGHT_DOTS_AT_203: u32 = 24;
/// Space between text lines at 203 dpi, in dots.
pub const LINE_GAP_DOTS_AT_203: u32 = 6;
/// `^BX` quality: ECC 200.
pub const BX_QUALITY: u32 = 200;
/// `^BY` module width of a CODE128 barcode, in dots.
pub const BARCODE_MODULE_DOTS: u32 = 2;
/// Escape character Frank names in `^BX` (`g`) and hex indicator in `^FH`.
pub const ESCAPE: u8 = b'_';

/// Text geometry at a profile's dpi.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextGeometry {
    pub cell_width_dots: u32,
    pub cell_height_dots: u32,
    pub line_gap_dots: u32,
}

impl TextGeometry {
    pub fn of(profile: &Profile) -> Self {
        let scale = |d: u32| (d * profile.dpi).div_ceil(203).max(1);
        TextGeometry {
            cell_width_dots: scale(CELL_WIDTH_DOTS_AT_203),
            cell_height_dots: scale(CELL_HEIGHT_DOTS_AT_203),
            line_gap_dots: scale(LINE_GAP_DOTS_AT_203),
        }
    }

    /// Dot rows one text line takes at height ×`height_mul`.
    pub fn line_rows(&self, height_mul: u8) -> u32 {
        self.cell_height_dots * u32::from(height_mul) + self.line_gap_dots
    }
}

/// `^MN` media tracking letter: N continuous, Y web (gap), M mark (ZPL II Programming Guide,
/// ^MN).
pub fn media_tracking(profile: &Profile) -> char {
    match profile.media_kind {
        MediaKind::Gap => 'Y',
        MediaKind::BlackMark => 'M',
        _ => 'N',
    }
}

/// `^MM` print mode letter: T tear-off, C cutter (ZPL II Programming Guide, ^MM).
pub fn print_mode(profile: &Profile) -> char {
    if profile.cut == CutCommand::None {
        'T'
    } else {
        'C'
    }
}

/// Commands with the offset each starts at.
#[derive(Default)]
struct Enc {
    bytes: Vec<u8>,
    boundaries: Vec<usize>,
}

impl Enc {
    /// One command (`^XX…` or `~XX…`).
    fn cmd(&mut self, c: &[u8]) {
        self.boundaries.push(self.bytes.len());
        self.bytes.extend_from_slice(c);
    }

    fn text(&mut self, c: String) {
        self.cmd(c.as_bytes());
    }
}

/// The `^XA` header up to the fields: UTF-8, width, length, media, print mode, home.
fn header(e: &mut Enc, profile: &Profile, label_rows: u32) {
    e.cmd(FORMAT_START);
    e.cmd(b"^CI28");
    e.text(format!("^PW{}", profile.media_width_px));
    e.text(format!("^LL{label_rows}"));
    e.text(format!("^MN{}", media_tracking(profile)));
    e.text(format!("^MM{}", print_mode(profile)));
    e.cmd(b"^LH0,0");
}

/// Width in dots of `ind` as placed, its quiet zone included (its height too: symbols are
/// square).
fn symbol_width(profile: &Profile, ind: &Indicium) -> Result<u32, CompileError> {
    match ind {
        Indicium::DataMatrix { data, module_px } => {
            let m = u32::from(*module_px).max(module_dots(profile.dpi));
            let (_, side, _) =
                symbol_modules(data).map_err(|err| CompileError::DataMatrix(err.to_string()))?;
            // Symbols are at most 144 modules a side: the cast is exact.
            Ok((side as u32 + 2 * QUIET_MODULES) * m)
        }
        Indicium::Image(b) => Ok(b.width_px()),
    }
}

/// Dots between a top band's block and the symbol's quiet zone: [`BLOCK_GAP_PX`] at 203 dpi,
/// scaled with the dpi.
pub fn block_gap_dots(profile: &Profile) -> u32 {
    (BLOCK_GAP_PX * profile.dpi).div_ceil(203)
}

/// Characters a line of an [`Element::IndiciumBlock`] may have on a ZPL profile: the font 0
/// cells left of the symbol's quiet zone and the block gap.
pub fn block_columns(profile: &Profile, symbol: &Indicium) -> usize {
    let Ok(w) = symbol_width(profile, symbol) else {
        return text_columns(profile);
    };
    let room = profile
        .media_width_px
        .saturating_sub(w + block_gap_dots(profile));
    // A print width is at most a few thousand dots: the quotient fits any usize.
    (room / TextGeometry::of(profile).cell_width_dots) as usize
}

/// One text field at (`x`, `y`), at most `columns` characters at width ×1.
#[allow(clippy::too_many_arguments)]
fn text_field(
    e: &mut Enc,
    profile: &Profile,
    g: &TextGeometry,
    t: &TextLine,
    line: usize,
    x: u32,
    y: u32,
    columns: usize,
) -> Result<u32, CompileError> {
    if !(1..=8).contains(&t.width_mul) || !(1..=8).contains(&t.height_mul) {
        return Err(CompileError::BadTextSize {
            line,
            width_mul: t.width_mul,
            height_mul: t.height_mul,
        });
    }
    codepage::printable(profile, &t.text).map_err(|ch| CompileError::Unprintable {
        line,
        ch,
        profile: profile.name.clone(),
    })?;
    check_line_length(profile, t, line, columns)?;
    let h = g.cell_height_dots * u32::from(t.height_mul);
    let w = g.cell_width_dots * u32::from(t.width_mul);
    e.text(format!("^FO{x},{y}"));
    e.text(format!("^A0N,{h},{w}"));
    let just = match t.align {
        Align::Left => None,
        Align::Center => Some('C'),
        Align::Right => Some('R'),
    };
    if let Some(j) = just {
        e.text(format!("^FB{},1,0,{j}", profile.media_width_px));
    }
    let (data, hex) = field_text(&t.text);
    if hex {
        e.cmd(b"^FH_");
    }
    let mut fd = b"^FD".to_vec();
    fd.extend_from_slice(&data);
    e.cmd(&fd);
    e.cmd(b"^FS");
    Ok(g.line_rows(t.height_mul))
}

/// CODE128 field data: `>` starts an invocation code in `^BC` data, so a `>` is `><`
/// (ZPL II Programming Guide, ^BC).
fn barcode_data(data: &str) -> Vec<u8> {
    let (escaped, _) = field_text(data);
    let mut out = Vec::with_capacity(escaped.len());
    for b in escaped {
        out.push(b);
        if b == b'>' {
            out.push(b'<');
        }
    }
    out
}

/// The indicium field (placed at the label's right, `y` its quiet zone's top); returns the
/// rows it takes and whether it went native.
fn indicium_field(
    e: &mut Enc,
    profile: &Profile,
    ind: &Indicium,
    y: u32,
) -> Result<(u32, bool), CompileError> {
    let pw = profile.media_width_px;
    match ind {
        Indicium::DataMatrix { data, module_px } if profile.zpl_indicium == ZplIndicium::Native => {
            // The same ≥ 3 dots-a-module rule as everywhere (module_dots scales it with dpi).
            let m = u32::from(*module_px).max(module_dots(profile.dpi));
            let full = symbol_width(profile, ind)?;
            if full > pw {
                return Err(CompileError::ImageTooWide {
                    width_px: full,
                    limit_px: pw,
                    profile: profile.name.clone(),
                });
            }
            let q = QUIET_MODULES * m;
            e.text(format!("^FO{},{}", pw - full + q, y + q));
            e.text(format!("^BXN,{m},{BX_QUALITY},,,,{}", char::from(ESCAPE)));
            e.cmd(b"^FH_");
            let mut fd = b"^FD".to_vec();
            fd.extend_from_slice(&symbol_field_data(data));
            e.cmd(&fd);
            e.cmd(b"^FS");
            Ok((full, true))
        }
        other => {
            let img = match other {
                Indicium::Image(b) => b.clone(),
                Indicium::DataMatrix { data, module_px } => {
                    let m = u32::from(*module_px).max(module_dots(profile.dpi));
                    render_data_matrix(data, m)?
                }
            };
            if img.width_px() > pw {
                return Err(CompileError::ImageTooWide {
                    width_px: img.width_px(),
                    limit_px: pw,
                    profile: profile.name.clone(),
                });
            }
            e.text(format!("^FO{},{y}", pw - img.width_px()));
            let n = img.rows().len();
            let mut gf = format!("^GFA,{n},{n},{},", img.stride()).into_bytes();
            gf.extend_from_slice(hex::encode_upper(img.rows()).as_bytes());
            e.cmd(&gf);
            e.cmd(b"^FS");
            Ok((img.height_px(), false))
        }
    }
}

/// Compile a label for a ZPL profile (called by [`crate::printer::compiler::compile_with`]
/// when the profile's `language` is `zpl`). `opts.layout` is not used: a format prints whole
/// or not at all, so there is nothing to gain by printing the indicium last.
pub fn compile(
    label: &Label,
    profile: &Profile,
    opts: &CompileOptions,
) -> Result<Job, CompileError> {
    if opts.chunk_bytes_max < CHUNK_BYTES_MIN {
        return Err(CompileError::ChunkTooSmall(opts.chunk_bytes_max));
    }
    if label.elements.len() > LABEL_ELEMENTS_MAX {
        return Err(CompileError::TooManyElements(label.elements.len()));
    }
    let g = TextGeometry::of(profile);
    let mut fields = Enc::default();
    let mut symbol: Option<(Indicium, u32)> = None;
    let mut y = g.line_gap_dots;
    let mut line = 0usize;
    let cols = text_columns(profile);
    for el in &label.elements {
        match el {
            Element::Text(t) => {
                line += 1;
                y += text_field(&mut fields, profile, &g, t, line, 0, y, cols)?;
            }
            Element::Address { heading, lines } => {
                let mut all: Vec<TextLine> = Vec::with_capacity(lines.len() + 1);
                if let Some(h) = heading {
                    all.push(TextLine {
                        bold: true,
                        ..TextLine::plain(h)
                    });
                }
                all.extend(lines.iter().map(|l| TextLine::plain(l)));
                for t in &all {
                    line += 1;
                    y += text_field(&mut fields, profile, &g, t, line, 0, y, cols)?;
                }
            }
            Element::Indicium(ind) => {
                if symbol.is_some() {
                    return Err(CompileError::TwoIndicia);
                }
                // Placed now, emitted last (right before ^XZ): its rows are reserved here.
                let mut probe = Enc::default();
                let (rows, _) = indicium_field(&mut probe, profile, ind, y)?;
                symbol = Some((ind.clone(), y));
                y += rows;
            }
            Element::IndiciumBlock { symbol: ind, lines } => {
                if symbol.is_some() {
                    return Err(CompileError::TwoIndicia);
                }
                // The top band, placed as on ESC/POS (Element::IndiciumBlock): the symbol at
                // the top right with its quiet zone (emitted last, as above); beside it the
                // block, top-aligned, its lines left-aligned with each other, its right edge
                // the block gap left of the quiet zone. A ZPL format prints whole, so the band
                // needs no page mode.
                let mut probe = Enc::default();
                let (rows, _) = indicium_field(&mut probe, profile, ind, y)?;
                symbol = Some((ind.clone(), y));
                let block_cols = block_columns(profile, ind);
                let block_w = lines
                    .iter()
                    .map(|l| {
                        // At most TEXT_LINE_CHARS_MAX characters (checked per line below).
                        let chars = l.text.chars().count().min(usize::from(u16::MAX)) as u32;
                        chars * g.cell_width_dots * u32::from(l.width_mul.max(1))
                    })
                    .max()
                    .unwrap_or(0);
                let sym_x = profile
                    .media_width_px
                    .saturating_sub(symbol_width(profile, ind)?);
                let block_x = sym_x.saturating_sub(block_gap_dots(profile) + block_w);
                let mut ty = y;
                for t in lines {
                    line += 1;
                    let left = TextLine {
                        align: Align::Left,
                        ..t.clone()
                    };
                    ty += text_field(
                        &mut fields,
                        profile,
                        &g,
                        &left,
                        line,
                        block_x,
                        ty,
                        block_cols,
                    )?;
                }
                y += rows.max(ty - y);
            }
            Element::Barcode { data, height_dots } => {
                if !data.bytes().all(|b| (0x20..0x7f).contains(&b)) {
                    return Err(CompileError::Barcode(
                        "CODE128 code set B takes printable ASCII only".into(),
                    ));
                }
                fields.text(format!("^FO0,{y}"));
                fields.text(format!("^BY{BARCODE_MODULE_DOTS}"));
                fields.text(format!("^BCN,{height_dots},Y,N,N"));
                let mut fd = b"^FH_^FD".to_vec();
                fd.extend_from_slice(&barcode_data(data));
                // ^FH_ and ^FD are two commands.
                fields.cmd(&fd[..4]);
                fields.cmd(&fd[4..]);
                fields.cmd(b"^FS");
                y += u32::from(*height_dots) + g.line_rows(1);
            }
            Element::Feed(n) => y += u32::from(*n) * g.line_rows(1),
        }
    }
    y += g.line_gap_dots;
    let label_rows = match profile.label_rows() {
        Some((rows, _)) => {
            if y > rows {
                return Err(CompileError::Unsupported {
                    profile: profile.name.clone(),
                    what: "a label longer than its label stock",
                });
            }
            rows
        }
        None => y,
    };
    let mut e = Enc::default();
    // A format a stopped job left open (its `~JA` lost) must never be closed by this job's
    // `^XZ`: cancel everything first. The streamer sends it only once the printer holds no
    // closed label still to print (`~HS`), so nothing counted as on paper is cancelled.
    e.cmd(super::CANCEL_ALL);
    header(&mut e, profile, label_rows);
    let base = e.bytes.len();
    e.bytes.extend_from_slice(&fields.bytes);
    e.boundaries
        .extend(fields.boundaries.iter().map(|b| b + base));
    let mut indicium: Option<Range<usize>> = None;
    let mut native = false;
    if let Some((ind, at_y)) = &symbol {
        let start = e.bytes.len();
        native = indicium_field(&mut e, profile, ind, *at_y)?.1;
        indicium = Some(start..start);
    }
    let xz = e.bytes.len();
    e.cmd(FORMAT_END);
    let end = e.bytes.len();
    let indicium = indicium.map(|r| r.start..end);
    let marks_at = indicium.as_ref().map(|_| xz);
    let edges: Vec<usize> = indicium
        .iter()
        .flat_map(|r| [r.start, r.end])
        .chain(marks_at)
        .collect();
    let chunks = chunk(&e.bytes, &e.boundaries, &edges, opts.chunk_bytes_max);
    Ok(Job {
        bytes: e.bytes,
        boundaries: e.boundaries,
        chunks,
        indicium,
        indicium_native: native,
        indicium_marks_at: marks_at,
        indicium_pid: None,
        end_pid: None,
        paper_rows_estimate: label_rows,
        layout: Layout::AsGiven,
        // A ZPL abort leaves nothing on paper; a VOID, where a profile asks for one, is
        // [`void_format`].
        void_label: void_format(profile),
    })
}

/// The VOID label: a box round the label and a large "VOID", one format (printed after an
/// abort on profiles with `void_on_abort`).
pub fn void_format(profile: &Profile) -> Vec<u8> {
    let g = TextGeometry::of(profile);
    let rows = profile
        .label_rows()
        .map_or(g.line_rows(4) * 2, |(rows, _)| rows);
    let mut e = Enc::default();
    header(&mut e, profile, rows);
    let t = (g.line_gap_dots / 2).max(2);
    let pw = profile.media_width_px;
    e.text(format!("^FO{t},{t}"));
    e.text(format!(
        "^GB{},{},{t}",
        pw.saturating_sub(2 * t),
        rows.saturating_sub(2 * t)
    ));
    e.cmd(b"^FS");
    let h = g.cell_height_dots * 4;
    e.text(format!("^FO0,{}", rows.saturating_sub(h) / 2));
    e.text(format!("^A0N,{h},{}", g.cell_width_dots * 4));
    e.text(format!("^FB{pw},1,0,C"));
    e.cmd(b"^FDVOID");
    e.cmd(b"^FS");
    e.cmd(FORMAT_END);
    e.bytes
}
