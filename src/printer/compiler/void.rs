//! The VOID label printed after an abort: the symbol crossed so that it does not decode
//! (docs/PRINTING.md §VOID).

use super::*;

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
