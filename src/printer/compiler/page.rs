//! The postage top band in page mode (`ESC L` … `FF`): the block beside the symbol, printed at
//! once (docs/PRINTING.md §Top band).

use super::*;

/// Characters a line of an [`Element::IndiciumBlock`] may have on `profile`: beside the symbol
/// on page-mode profiles, the full width in the fallback layout (lines under the symbol).
pub fn block_columns(profile: &Profile, symbol: &Indicium) -> usize {
    if profile.language == Language::Zpl {
        return crate::printer::zpl::compiler::block_columns(profile, symbol);
    }
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
pub(super) fn page_area(width: u32, height: u32) -> [u8; 10] {
    // Clamped to 0xffff: the casts keep each value's low and high byte.
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
pub(super) fn position_x(dots: u32) -> [u8; 4] {
    // Clamped to 0xffff: the casts keep its low and high byte.
    let d = dots.min(0xffff);
    [0x1b, 0x24, d as u8, (d >> 8) as u8]
}

pub(super) fn position_y(dots: u32) -> [u8; 4] {
    // Clamped to 0xffff: the casts keep its low and high byte.
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
pub(super) fn page_band(
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
        .map(|l| {
            let chars = u32::try_from(l.text.chars().count()).unwrap_or(u32::MAX);
            chars
                .saturating_mul(cell)
                .saturating_mul(u32::from(l.width_mul.max(1)))
        })
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
pub(super) fn page_raster(
    e: &mut Enc,
    profile: &Profile,
    bmp: &Bitmap,
    x: u32,
) -> Result<(), CompileError> {
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
