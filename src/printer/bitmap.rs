//! A 1-bit image: what the indicium renderer produces and the job compiler rasterises.

/// Largest side of a bitmap, in pixels (a 4x6 in label at 600 dpi fits).
pub const BITMAP_SIDE_PX_MAX: u32 = 8192;

/// Black-and-white pixels, packed MSB-first; row stride is `ceil(width_px / 8)` bytes.
/// A set bit is a black (printed) dot. Exactly the layout of ESC/POS `GS v 0` raster data.
#[derive(Clone, PartialEq, Eq)]
pub struct Bitmap {
    width_px: u32,
    height_px: u32,
    rows: Vec<u8>,
}

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitmap({}x{})", self.width_px, self.height_px)
    }
}

impl Bitmap {
    /// PNG, 8-bit grayscale, black dots on white. A 0-pixel image becomes 1×1 white.
    pub fn to_png(&self) -> Result<Vec<u8>, image::ImageError> {
        let mut img = image::GrayImage::new(self.width_px().max(1), self.height_px().max(1));
        for (x, y, p) in img.enumerate_pixels_mut() {
            *p = image::Luma([if self.get(x, y) { 0 } else { 255 }]);
        }
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)?;
        Ok(out.into_inner())
    }

    /// An all-white bitmap. Sides are clamped to [`BITMAP_SIDE_PX_MAX`].
    pub fn new(width_px: u32, height_px: u32) -> Self {
        let width_px = width_px.min(BITMAP_SIDE_PX_MAX);
        let height_px = height_px.min(BITMAP_SIDE_PX_MAX);
        let stride = width_px.div_ceil(8) as usize;
        Bitmap {
            width_px,
            height_px,
            rows: vec![0; stride * height_px as usize],
        }
    }

    /// Wrap packed rows; `None` if `rows` is not exactly `stride * height` bytes.
    pub fn from_rows(width_px: u32, height_px: u32, rows: Vec<u8>) -> Option<Self> {
        let ok = width_px <= BITMAP_SIDE_PX_MAX
            && height_px <= BITMAP_SIDE_PX_MAX
            && rows.len() == width_px.div_ceil(8) as usize * height_px as usize;
        ok.then_some(Bitmap {
            width_px,
            height_px,
            rows,
        })
    }

    pub fn width_px(&self) -> u32 {
        self.width_px
    }

    pub fn height_px(&self) -> u32 {
        self.height_px
    }

    /// Bytes per row.
    pub fn stride(&self) -> usize {
        self.width_px.div_ceil(8) as usize
    }

    /// The packed rows, `stride()` bytes each.
    pub fn rows(&self) -> &[u8] {
        &self.rows
    }

    fn index(&self, x: u32, y: u32) -> Option<(usize, u8)> {
        (x < self.width_px && y < self.height_px)
            .then(|| (y as usize * self.stride() + x as usize / 8, 0x80 >> (x % 8)))
    }

    /// Set one pixel; outside the bitmap does nothing.
    pub fn set(&mut self, x: u32, y: u32, black: bool) {
        if let Some((i, mask)) = self.index(x, y) {
            if black {
                self.rows[i] |= mask;
            } else {
                self.rows[i] &= !mask;
            }
        }
    }

    /// One pixel; outside the bitmap is white.
    pub fn get(&self, x: u32, y: u32) -> bool {
        self.index(x, y)
            .is_some_and(|(i, mask)| self.rows[i] & mask != 0)
    }

    /// Fill a rectangle (clipped).
    pub fn fill_rect(&mut self, x: u32, y: u32, w: u32, h: u32, black: bool) {
        for yy in y..y.saturating_add(h).min(self.height_px) {
            for xx in x..x.saturating_add(w).min(self.width_px) {
                self.set(xx, yy, black);
            }
        }
    }

    /// Copy `src` in at (x, y), OR-ing black pixels (clipped).
    pub fn blit(&mut self, src: &Bitmap, x: u32, y: u32) {
        for sy in 0..src.height_px {
            for sx in 0..src.width_px {
                if src.get(sx, sy) {
                    self.set(x.saturating_add(sx), y.saturating_add(sy), true);
                }
            }
        }
    }

    /// Rows `y0..y1` as their own bitmap (clipped).
    pub fn band(&self, y0: u32, y1: u32) -> Bitmap {
        let y1 = y1.min(self.height_px);
        let y0 = y0.min(y1);
        let s = self.stride();
        Bitmap {
            width_px: self.width_px,
            height_px: y1 - y0,
            rows: self.rows[y0 as usize * s..y1 as usize * s].to_vec(),
        }
    }

    /// The bitmap turned by 180° (last row first, each row mirrored).
    pub fn rotated_180(&self) -> Bitmap {
        let mut out = Bitmap::new(self.width_px, self.height_px);
        for y in 0..self.height_px {
            for x in 0..self.width_px {
                if self.get(x, y) {
                    out.set(self.width_px - 1 - x, self.height_px - 1 - y, true);
                }
            }
        }
        out
    }

    /// Count of black pixels.
    pub fn black_count(&self) -> u64 {
        self.rows.iter().map(|b| u64::from(b.count_ones())).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_msb_first() {
        let mut b = Bitmap::new(10, 2);
        assert_eq!(b.stride(), 2);
        b.set(0, 0, true);
        b.set(9, 1, true);
        assert_eq!(b.rows(), &[0x80, 0, 0, 0x40]);
        assert!(b.get(0, 0) && b.get(9, 1) && !b.get(1, 0));
        assert!(!b.get(10, 0));
        b.set(0, 0, false);
        assert_eq!(b.black_count(), 1);
    }

    #[test]
    fn band_and_from_rows() {
        let mut b = Bitmap::new(8, 4);
        b.fill_rect(0, 2, 8, 1, true);
        let band = b.band(2, 9);
        assert_eq!(band.height_px(), 2);
        assert_eq!(band.rows(), &[0xff, 0]);
        assert!(Bitmap::from_rows(8, 2, vec![0; 3]).is_none());
    }

    #[test]
    fn rotation_by_180_maps_corners_and_undoes_itself() {
        let mut b = Bitmap::new(10, 3);
        b.set(0, 0, true);
        b.set(3, 1, true);
        let r = b.rotated_180();
        assert!(r.get(9, 2) && r.get(6, 1) && !r.get(0, 0));
        assert_eq!(r.black_count(), 2);
        assert_eq!(r.rotated_180(), b);
    }
}
