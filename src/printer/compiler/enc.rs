//! The command accumulator and the line-oriented elements: text lines (justification, bold,
//! size, the profile's code pages) and CODE128 barcodes.

use std::cell::RefCell;
use std::rc::Rc;

use escpos::driver::Driver;
use escpos::printer::Printer;
use escpos::utils::{JustifyMode, Protocol};

use super::*;

/// Collects bytes from the escpos crate's `Printer::print()`.
#[derive(Clone, Default)]
pub(super) struct Capture(Rc<RefCell<Vec<u8>>>);

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
pub(super) struct Enc {
    /// The `ESC t` table the printer is in (0 after `ESC @`).
    pub(super) page: u8,
    pub(super) bytes: Vec<u8>,
    pub(super) boundaries: Vec<usize>,
    capture: Capture,
    esc: Printer<Capture>,
}

pub(super) type EscResult<'a> = escpos::errors::Result<&'a mut Printer<Capture>>;

impl Enc {
    pub(super) fn new() -> Self {
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
    pub(super) fn raw(&mut self, cmd: &[u8]) {
        if !cmd.is_empty() {
            self.boundaries.push(self.bytes.len());
            self.bytes.extend_from_slice(cmd);
        }
    }

    /// One command encoded by the escpos crate.
    pub(super) fn esc(
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

    pub(super) fn offset(&self) -> usize {
        self.bytes.len()
    }
}

pub(super) fn justify(a: Align) -> JustifyMode {
    match a {
        Align::Left => JustifyMode::LEFT,
        Align::Center => JustifyMode::CENTER,
        Align::Right => JustifyMode::RIGHT,
    }
}

/// Characters of one text line at width ×1 (the profile's font A; 32 when it names none).
pub fn text_columns(profile: &Profile) -> usize {
    profile.fonts.get(&0).map_or(32, |f| f.columns) as usize
}

pub(super) fn text_line(
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
    // Columns come from a u32 (`fonts.N.columns`): the cast back is exact.
    (profile.media_width_px / text_columns(profile).max(1) as u32).max(1)
}

/// One text line of at most `columns` characters at width ×1. `standard`: a line in standard
/// mode (justification, then LF); otherwise a run of characters in page mode at the position
/// already set (no justification, no feed).
pub(super) fn text_run(
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
    let pieces = crate::printer::codepage::encode(profile, &t.text, &mut e.page).map_err(|ch| {
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
            crate::printer::codepage::Piece::Select(n) => {
                e.raw(&crate::printer::codepage::select_bytes(n))
            }
            crate::printer::codepage::Piece::Bytes(b) => e.raw(&b),
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

pub(super) fn barcode(
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
    // At most 60 characters (checked above) + 2: the cast is exact.
    let mut cmd = vec![0x1d, 0x6b, 73, (data.len() + 2) as u8, b'{', b'B'];
    cmd.extend_from_slice(data.as_bytes());
    e.raw(&cmd);
    Ok(())
}
