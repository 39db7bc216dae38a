//! The indicium as a standard-mode element: a native `GS ( k` Data Matrix, one raster command
//! within the receive buffer, or quadruple density in bands the printer is never starved
//! between (docs/PRINTING.md §Limits); its marks, process ID and the symbol memory's erase.

use super::*;

/// Width and height in dots of `symbol` as printed with its quiet zone, and whether it goes out
/// natively (`GS ( k`).
pub(super) fn symbol_size(
    profile: &Profile,
    symbol: &Indicium,
) -> Result<(u32, u32, bool), CompileError> {
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
pub(super) fn close_indicium(
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

/// What [`emit_indicium`] wrote.
pub(super) struct Emitted {
    /// Sent as a native 2-D command (else raster bands).
    pub(super) native: bool,
    /// Where the first command that can put marks on paper starts ([`Job::indicium_marks_at`]).
    pub(super) marks_at: usize,
    /// Dot rows it takes.
    pub(super) rows: u32,
}

/// Emits the indicium.
pub(super) fn emit_indicium(
    e: &mut Enc,
    profile: &Profile,
    ind: &Indicium,
    rotated: bool,
    pid: Option<ProcessId>,
) -> Result<Emitted, CompileError> {
    let turn = |b: Bitmap| if rotated { b.rotated_180() } else { b };
    let marks_at = e.offset();
    // The symbol as one raster image at the right edge, in bands the printer never starves on.
    let raster = |e: &mut _, bmp: &Bitmap| -> Result<Emitted, CompileError> {
        raster_marked(
            e,
            profile,
            bmp,
            right_px(profile, bmp, rotated),
            pid,
            RASTER_NORMAL,
        )?;
        Ok(Emitted {
            native: false,
            marks_at,
            rows: bmp.height_px(),
        })
    };
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
                    // Symbols are at most 144 modules a side: the cast is exact.
                    rows: h as u32 * u32::from(*module_px) + 2 * quiet_px,
                });
            }
            let bmp = turn(render_data_matrix(data, u32::from(*module_px))?);
            if !fits_one_command(profile, &bmp)
                && let Some(rows) = quadruple_symbol(e, profile, data, *module_px, rotated, pid)?
            {
                return Ok(Emitted {
                    native: false,
                    marks_at,
                    rows,
                });
            }
            raster(e, &bmp)
        }
        Indicium::Image(bmp) => raster(e, &turn(bmp.clone())),
    }
}

/// Whether `bmp` goes out as one `GS v 0` command within the receive buffer (header included).
pub(super) fn fits_one_command(profile: &Profile, bmp: &Bitmap) -> bool {
    RASTER_HEADER_BYTES + bmp.stride() * bmp.height_px() as usize
        <= profile.receive_buffer_bytes as usize
}

/// A raster symbol too big for one command at normal density, sent in quadruple density
/// (`GS v 0` m = 3: each image dot printed 2 × 2 dots) at `ceil(module_px / 2)` image dots a
/// module — 4 dots at 203 dpi instead of 3 —, in the bands of [`band_plan`]: one command when
/// that fits the receive buffer (a 44 × 44 postage symbol is 968 bytes: it fits 1 KB), else
/// bands sized so that each arrives before the one above it finished printing (a 52 × 52 symbol,
/// 1,352 bytes, on a 1 KB printer at 9,600 baud: 78, 22 and 4 rows). The quiet zone is fed
/// (`ESC J`) above and below and left blank beside by `GS L`. `None` when the symbol is too wide
/// for the paper this way (nothing emitted; the caller sends normal density).
pub(super) fn quadruple_symbol(
    e: &mut Enc,
    profile: &Profile,
    data: &[u8],
    module_px: u8,
    rotated: bool,
    pid: Option<ProcessId>,
) -> Result<Option<u32>, CompileError> {
    let px = u32::from(module_px).div_ceil(2);
    let bare = crate::indicium::render::symbol_image_quiet(data, px, 0)
        .map_err(|e| CompileError::DataMatrix(e.to_string()))?;
    let bare = if rotated { bare.rotated_180() } else { bare };
    let (w, h) = (2 * bare.width_px(), 2 * bare.height_px());
    let quiet = QUIET_ZONE_MODULES * 2 * px;
    if !profile.features.bit_image_raster || w + 2 * quiet > profile.media_width_px {
        return Ok(None);
    }
    let left = if rotated {
        quiet
    } else {
        profile.media_width_px - w - quiet
    };
    feed_dots_into(e, quiet);
    raster_marked(e, profile, &bare, left, pid, RASTER_QUADRUPLE)?;
    feed_dots_into(e, quiet);
    Ok(Some(h + 2 * quiet))
}

/// Left margin that puts `bmp` at the label's right: flush right as given, flush left (the
/// turned label's right) when rotated.
pub(super) fn right_px(profile: &Profile, bmp: &Bitmap, rotated: bool) -> u32 {
    if rotated {
        0
    } else {
        profile.media_width_px.saturating_sub(bmp.width_px())
    }
}

/// `GS ( k` fn 80 with no data for symbol `cn`: empties the printer's symbol memory, so a
/// signed payload stored there cannot be printed by a later print command (a job's own, after
/// its symbol printed; [`crate::printer::streamer::resync`], for a job a crash cut off between store and
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

/// One `GS ( k pL pH` command around `body` (cn, fn and its parameters): the one builder of
/// native 2-D commands (Data Matrix here, QR for the probe's calibration page).
pub fn gs_k(body: &[u8]) -> Result<Vec<u8>, CompileError> {
    let len = u16::try_from(body.len()).map_err(|_| CompileError::Native2dTooLong(body.len()))?;
    let [lo, hi] = len.to_le_bytes();
    let mut c = vec![0x1d, 0x28, 0x6b, lo, hi];
    c.extend_from_slice(body);
    Ok(c)
}

/// The store (fn 80, m = 48) of `data` for symbol `cn`, refused when empty or longer than
/// [`NATIVE_2D_DATA_BYTES_MAX`].
fn native_store(cn: u8, data: &[u8], what: &str) -> Result<Vec<u8>, CompileError> {
    if data.is_empty() || data.len() > NATIVE_2D_DATA_BYTES_MAX {
        return Err(CompileError::DataMatrix(format!(
            "{} bytes of {what} data; native 2-D takes 1..={NATIVE_2D_DATA_BYTES_MAX}",
            data.len()
        )));
    }
    let mut store = vec![cn, 80, 48];
    store.extend_from_slice(data);
    gs_k(&store)
}

/// `GS ( k` for Data Matrix with the profile's `cn`: select type (fn 66: square, automatic
/// size), module size (fn 67), store data (fn 80), print (fn 81). docs/PRINTING.md §Commands.
pub fn data_matrix_native(
    cn: u8,
    data: &[u8],
    module_px: u8,
) -> Result<Vec<Vec<u8>>, CompileError> {
    let store = native_store(cn, data, "Data Matrix")?;
    Ok(vec![
        // fn 66 (Epson "Function 166"): m = 0 square ECC 200, d1 = d2 = 0 automatic size.
        gs_k(&[cn, 66, 0, 0, 0])?,
        gs_k(&[cn, 67, module_px])?,
        store,
        gs_k(&[cn, 81, 48])?,
    ])
}

/// `GS ( k` for QR Code with symbol number `cn` (Epson 49): model 2 (fn 65), module size
/// (fn 67), error correction M (fn 69, 49), store (fn 80), print (fn 81). Epson ESC/POS
/// reference, GS ( k \<Function 165\>..\<Function 181\>.
pub fn qr_native(cn: u8, data: &[u8], module_px: u8) -> Result<Vec<Vec<u8>>, CompileError> {
    let store = native_store(cn, data, "QR")?;
    Ok(vec![
        gs_k(&[cn, 65, 50, 0])?,
        gs_k(&[cn, 67, module_px])?,
        gs_k(&[cn, 69, 49])?,
        store,
        gs_k(&[cn, 81, 48])?,
    ])
}
