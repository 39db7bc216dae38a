//! `GS v 0` raster commands, their bands (each within the receive buffer) and the stall-free
//! band rule for a symbol larger than the buffer; `GS L` margins.

use super::*;

/// `bmp` cut into raster bands of at most [`band_height_px`] rows, each with its first row.
pub(super) fn bands(profile: &Profile, bmp: &Bitmap) -> Vec<(u32, Bitmap)> {
    let band_h = band_height_px(profile, bmp.stride()).max(1);
    (0..bmp.height_px())
        .step_by(band_h as usize)
        .map(|y| (y, bmp.band(y, y + band_h)))
        .collect()
}

/// One `GS v 0 m` command for the whole of `bmp`.
pub fn raster_command(bmp: &Bitmap, mode: u8) -> Vec<u8> {
    // A bitmap's sides are at most BITMAP_SIDE_PX_MAX (8192) dots, so the stride (≤ 1024) and
    // the height (≤ 8192) each fit the two bytes xL xH / yL yH: the casts below keep the low and
    // high byte of a value below 65,536.
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

/// Share of the line's nominal rate (baud over the bits of a character) the band rule counts
/// on: the rest is the margin for a host that wakes late or a line that lags.
pub const BAND_RULE_LINE_PCT: u32 = 80;

/// How a raster indicium is cut into `GS v 0` commands ([`band_plan`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BandPlan {
    /// Image rows of each band, top first; each band's command (header included) is within
    /// the receive buffer.
    pub rows: Vec<u32>,
    /// Whether every band after the first arrives whole before the one above it has finished
    /// printing, at [`BAND_RULE_LINE_PCT`] % of the line's rate and the engine's full speed:
    /// then the engine never stops inside the image.
    pub stall_free: bool,
}

/// The stall-free band rule (docs/PRINTING.md §Limits). A printer prints a raster command once
/// all of it arrived; at a slow baud the line brings bytes far slower than the engine prints
/// them, so equal bands leave the engine waiting between them — inside the symbol. Instead:
/// one command when the image fits the receive buffer; else the first band as large as the
/// buffer allows, and each next band as large as can arrive whole (its header and
/// `between_bytes` — a process ID — included) before the bands above it finished printing,
/// counting from the moment the first band arrived with the engine idle (the worst case: an
/// engine still busy with what came before only adds time). Where that cannot be (an engine
/// too fast for the line), bands as large as the buffer takes, `stall_free` false. `stride`:
/// bytes per image row;
/// `dots_per_row`: printed dot rows per image row (2 in quadruple density).
pub fn band_plan(
    profile: &Profile,
    stride: usize,
    height: u32,
    dots_per_row: u32,
    between_bytes: usize,
) -> BandPlan {
    let stride = stride.max(1);
    let room = (profile.receive_buffer_bytes as usize).saturating_sub(RASTER_HEADER_BYTES);
    // At most RECEIVE_BUFFER_BYTES_MAX rows, far below u32::MAX.
    let cap = u32::try_from((room / stride).max(1)).unwrap_or(u32::MAX);
    let first = height.min(cap);
    let mut plan = BandPlan {
        rows: vec![first],
        stall_free: true,
    };
    let line = f64::from(profile.line_bytes_per_s()) * f64::from(BAND_RULE_LINE_PCT) / 100.0;
    let engine = profile.engine_rows_per_s().max(1.0);
    let print_s = |rows: u32| f64::from(rows) * f64::from(dots_per_row.max(1)) / engine;
    let overhead = (RASTER_HEADER_BYTES + between_bytes) as f64;
    // Seconds since the first band arrived whole: when the last band planned has arrived, and
    // when the bands planned so far have printed.
    let (mut arrived, mut printed) = (0.0, print_s(first));
    let mut left = height - first;
    while left > 0 {
        let bytes = (printed - arrived) * line - overhead;
        // `bytes / stride` is at most a few thousand rows; the cast saturates and the min
        // bounds it anyway.
        let fits = (bytes.max(0.0) / stride as f64).floor() as u32;
        let rows = fits.min(cap).min(left);
        if rows == 0 {
            // Nothing can arrive in time: the engine will wait somewhere whatever the bands.
            // Then bands as large as the buffer takes (the fewest stops), and say so.
            let mut rows = Vec::new();
            let mut left = height;
            while left > 0 {
                rows.push(cap.min(left));
                left -= cap.min(left);
            }
            return BandPlan {
                rows,
                stall_free: false,
            };
        }
        arrived += (f64::from(rows) * stride as f64 + overhead) / line;
        printed = printed.max(arrived) + print_s(rows);
        plan.rows.push(rows);
        left -= rows;
    }
    plan
}

/// Raster bands height limited by the profile, and by the receive buffer: a whole `GS v 0`
/// command, its 8-byte header included, fits `receive_bytes` (some printers garble images larger
/// than their buffer).
pub fn band_height_px(profile: &Profile, stride: usize) -> u32 {
    let room = (profile.receive_buffer_bytes as usize).saturating_sub(RASTER_HEADER_BYTES);
    let by_buffer = (room / stride.max(1)).max(1);
    // At most raster_band_height_px_max, a u32.
    (profile.raster_band_height_px_max as usize).min(by_buffer) as u32
}

/// The raster indicium: `bmp` in `GS v 0` m = `mode` commands cut by [`band_plan`]; with
/// `mark`, that process ID follows every band but the last (the caller puts it after the last),
/// so whatever part of the image prints is covered by an ID.
///
/// The image goes out as wide as it is (no padding bytes): `left_px` dots from the print
/// area's left edge are set with `GS L` (left margin, horizontal motion units = dots) and reset
/// to 0 after. An image that fits the receive buffer (header included) is one command, so the
/// printer never stops inside it; a taller one goes in the plan's bands.
pub(super) fn raster_marked(
    e: &mut Enc,
    profile: &Profile,
    bmp: &Bitmap,
    left_px: u32,
    mark: Option<ProcessId>,
    mode: u8,
) -> Result<(), CompileError> {
    if !profile.features.bit_image_raster {
        return Err(CompileError::Unsupported {
            profile: profile.name.clone(),
            what: "raster images (GS v 0)",
        });
    }
    let scale = if mode == RASTER_QUADRUPLE { 2 } else { 1 };
    if bmp.width_px() * scale > profile.media_width_px {
        return Err(CompileError::ImageTooWide {
            width_px: bmp.width_px() * scale,
            limit_px: profile.media_width_px,
            profile: profile.name.clone(),
        });
    }
    let left_px = left_px.min(profile.media_width_px - bmp.width_px() * scale);
    if left_px > 0 {
        e.raw(&left_margin(left_px));
    }
    let between = mark.map_or(0, |_| PROCESS_ID_COMMAND_BYTES);
    let plan = band_plan(profile, bmp.stride(), bmp.height_px(), scale, between);
    let mut y = 0;
    for rows in plan.rows {
        e.raw(&raster_command(&bmp.band(y, y + rows), mode));
        y += rows;
        if let Some(id) = mark.filter(|_| y < bmp.height_px()) {
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
    // Clamped to 0xffff: the casts keep its low and high byte.
    let d = dots.min(0xffff);
    [0x1d, 0x4c, d as u8, (d >> 8) as u8]
}
