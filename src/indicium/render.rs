//! Rendering (sans-I/O): indicium payload -> Data Matrix ECC 200 -> 1-bit image with quiet zone
//! and a human-readable block. Printers that encode Data Matrix themselves get
//! [`native_payload`] instead.

use super::layout::{Indicium, Subject};
use datamatrix::{DataMatrixBuilder, EncodationType, SymbolList};

/// Module (cell) size at 203 dpi, in dots. Scales with dpi: `ceil(3 * dpi / 203)`.
pub const MODULE_DOTS_AT_203: u32 = 3;
/// Quiet zone around the symbol, in modules (the standard asks for at least 1).
pub const QUIET_MODULES: u32 = 2;
/// Accepted printer resolutions, in dots per inch.
pub const DPI_MIN: u32 = 100;
pub const DPI_MAX: u32 = 1200;
/// Human-readable lines at most this many characters (longer lines are cut).
pub const TEXT_CHARS_MAX: usize = 32;

/// The 1-bit image type shared with the printer (rows packed MSB-first, dark = 1).
pub use crate::printer::bitmap::Bitmap as MonoImage;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RenderError {
    #[error("printer resolution {0} dpi is outside {DPI_MIN}..={DPI_MAX} dpi")]
    Dpi(u32),
    #[error("payload of {0} bytes does not fit a Data Matrix symbol")]
    TooLong(usize),
}

/// Module size in dots for `dpi`: at least 3 dots at 203 dpi, scaled.
pub fn module_dots(dpi: u32) -> u32 {
    (MODULE_DOTS_AT_203 * dpi).div_ceil(203)
}

/// Text scale (each font pixel becomes `scale x scale` dots): 2 at 203 dpi.
fn text_scale(dpi: u32) -> u32 {
    (2 * dpi).div_ceil(203).max(1)
}

/// The bytes for printers that encode Data Matrix natively (e.g. ESC/POS `GS ( k` cn=54).
pub fn native_payload(indicium: &Indicium) -> Vec<u8> {
    indicium.to_bytes()
}

fn check_dpi(dpi: u32) -> Result<(), RenderError> {
    if (DPI_MIN..=DPI_MAX).contains(&dpi) {
        Ok(())
    } else {
        Err(RenderError::Dpi(dpi))
    }
}

/// The Data Matrix module grid for `payload` (row-major, `true` = dark) and its side length.
/// The payload is one Base 256 segment so decoders return the bytes verbatim.
pub fn symbol_modules(payload: &[u8]) -> Result<(Vec<bool>, usize, usize), RenderError> {
    let code = DataMatrixBuilder::new()
        .with_encodation_types(EncodationType::Base256)
        .with_symbol_list(SymbolList::default().enforce_square())
        .encode(payload)
        .map_err(|_| RenderError::TooLong(payload.len()))?;
    let bitmap = code.bitmap();
    Ok((bitmap.bits().to_vec(), bitmap.width(), bitmap.height()))
}

/// The symbol alone with its quiet zone, at `dpi`.
pub fn render_symbol(payload: &[u8], dpi: u32) -> Result<MonoImage, RenderError> {
    check_dpi(dpi)?;
    symbol_image(payload, module_dots(dpi))
}

/// The symbol with its [`QUIET_MODULES`]-module quiet zone, `m` dots a module (at least 1).
pub fn symbol_image(payload: &[u8], m: u32) -> Result<MonoImage, RenderError> {
    symbol_image_quiet(payload, m, QUIET_MODULES)
}

/// The symbol with `quiet` modules of quiet zone (0: the modules only, for a printer that
/// leaves the quiet zone blank by feeding and margins), `m` dots a module (at least 1).
pub fn symbol_image_quiet(payload: &[u8], m: u32, quiet: u32) -> Result<MonoImage, RenderError> {
    let (bits, w, h) = symbol_modules(payload)?;
    let m = m.max(1);
    // Symbol sizes are at most 144 modules, so these products stay small.
    let (w, h) = (w as u32, h as u32);
    let mut img = MonoImage::new((w + 2 * quiet) * m, (h + 2 * quiet) * m);
    draw_modules(&mut img, &bits, w, m, quiet * m, quiet * m);
    Ok(img)
}

/// Two bars `bar_modules` wide from corner to corner across the symbol of `img` (drawn with
/// `quiet` modules of quiet zone at `m` dots a module): the crossed symbol of a VOID label.
/// The bars cover the finder and timing patterns at all four corners and about a quarter of
/// the modules, more than ECC 200 corrects, so the symbol no longer decodes (tested by
/// decoding, `tests/indicium_faces.rs`).
pub fn cross_out(img: &mut MonoImage, m: u32, quiet: u32, bar_modules: u32) {
    let q = quiet * m;
    let side = img.width_px().min(img.height_px()).saturating_sub(2 * q);
    let bar = (bar_modules * m).max(1);
    for t in 0..side {
        let (x, y, z) = (q + t, q + t, q + side - 1 - t);
        let from = |c: u32| c.saturating_sub(bar / 2).max(q);
        img.fill_rect(x, from(y), 1, bar, true);
        img.fill_rect(x, from(z), 1, bar, true);
    }
    // Keep the bars inside the symbol's square (its quiet zone stays white).
    let (w, h) = (img.width_px(), img.height_px());
    img.fill_rect(0, h.saturating_sub(q), w, q, false);
    img.fill_rect(w.saturating_sub(q), 0, q, h, false);
}

fn draw_modules(img: &mut MonoImage, bits: &[bool], w: u32, m: u32, x0: u32, y0: u32) {
    for (i, &dark) in bits.iter().enumerate() {
        if dark {
            let i = i as u32;
            img.fill_rect(x0 + (i % w) * m, y0 + (i / w) * m, m, m, true);
        }
    }
}

/// The human-readable lines printed under the symbol.
pub fn human_lines(indicium: &Indicium) -> Vec<String> {
    let b = &indicium.body;
    let mut lines = Vec::with_capacity(4);
    match &b.subject {
        Subject::Postage { class, destination } => {
            lines.push(format!(
                "{} {}",
                b.amount,
                class.name().to_ascii_uppercase()
            ));
            lines.push(format!("MAILED {}", b.date));
            let mut to = destination.zip5().to_string();
            if let Some(z4) = destination.zip4() {
                to = format!("{to}-{z4}");
            }
            lines.push(format!("FROM {} TO {to}", b.origin));
        }
        Subject::Item(d) => {
            lines.push(format!(
                "{} {}",
                b.amount,
                d.kind().name().to_ascii_uppercase()
            ));
            lines.push(format!("ISSUED {}", b.date));
            lines.push(format!("AT {}", b.origin));
        }
    }
    lines.push(b.number().to_string());
    lines
}

fn draw_text(img: &mut MonoImage, text: &str, x0: u32, y0: u32, scale: u32) {
    for (ci, ch) in text.chars().take(TEXT_CHARS_MAX).enumerate() {
        let code = if ch.is_ascii() {
            ch as usize
        } else {
            b'?' as usize
        };
        let glyph = font8x8::legacy::BASIC_LEGACY[code];
        // ci < TEXT_CHARS_MAX (32), so the cast is exact.
        let cx = x0 + ci as u32 * 8 * scale;
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8u32 {
                // font8x8: bit 0 is the leftmost pixel.
                if bits & (1 << col) != 0 {
                    img.fill_rect(
                        cx + col * scale,
                        y0 + row as u32 * scale,
                        scale,
                        scale,
                        true,
                    );
                }
            }
        }
    }
}

/// The full indicium graphic at `dpi`: Data Matrix with quiet zone, human-readable block below.
pub fn render_label(indicium: &Indicium, dpi: u32) -> Result<MonoImage, RenderError> {
    check_dpi(dpi)?;
    let payload = indicium.to_bytes();
    let (bits, w, h) = symbol_modules(&payload)?;
    let (w, h) = (w as u32, h as u32);
    let m = module_dots(dpi);
    let quiet = QUIET_MODULES * m;
    let scale = text_scale(dpi);
    let lines = human_lines(indicium);
    let line_dots = 10 * scale;
    let text_w = lines
        .iter()
        .map(|l| l.chars().count().min(TEXT_CHARS_MAX) as u32 * 8 * scale)
        .max()
        .unwrap_or(0);
    let symbol_side = w * m + 2 * quiet;
    let width = symbol_side.max(text_w + 2 * quiet);
    let height = h * m + 2 * quiet + lines.len() as u32 * line_dots + quiet;
    let mut img = MonoImage::new(width, height);
    draw_modules(&mut img, &bits, w, m, quiet, quiet);
    let text_y = h * m + 2 * quiet;
    for (i, line) in lines.iter().enumerate() {
        draw_text(&mut img, line, quiet, text_y + i as u32 * line_dots, scale);
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_size_scales_with_dpi() {
        assert_eq!(module_dots(203), 3);
        assert_eq!(module_dots(180), 3);
        assert_eq!(module_dots(300), 5);
        assert_eq!(module_dots(600), 9);
    }

    #[test]
    fn image_packing_is_msb_first() {
        let mut img = MonoImage::new(10, 2);
        img.fill_rect(0, 0, 1, 1, true);
        img.fill_rect(9, 1, 1, 1, true);
        assert_eq!(img.stride(), 2);
        assert_eq!(img.rows(), vec![0x80, 0x00, 0x00, 0x40]);
        assert!(img.get(9, 1) && !img.get(8, 1));
    }

    #[test]
    fn symbol_has_quiet_zone_and_finder() {
        let img = render_symbol(b"hello", 203).unwrap();
        let q = QUIET_MODULES * 3;
        for x in 0..img.width_px() {
            for y in 0..q {
                assert!(!img.get(x, y), "quiet zone dark at {x},{y}");
            }
        }
        // Left edge of the L finder pattern is solid.
        for y in q..img.height_px() - q {
            assert!(img.get(q, y));
        }
        assert!(matches!(render_symbol(b"x", 50), Err(RenderError::Dpi(50))));
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use crate::indicium::layout::{BODY_BYTES_ITEM, BODY_BYTES_POSTAGE, SIGNATURE_BYTES};

    #[test]
    fn payloads_fit_the_documented_symbol_sizes() {
        for (len, side) in [
            (BODY_BYTES_POSTAGE + SIGNATURE_BYTES, 44),
            (BODY_BYTES_ITEM + SIGNATURE_BYTES, 52),
        ] {
            let (_, w, h) = symbol_modules(&vec![0xA5; len]).unwrap();
            assert_eq!((w, h), (side, side), "{len} bytes");
        }
    }
}
