//! Large text for kiosk prompts: font8x8 glyphs drawn with half blocks (8×8 pixels → 8 columns
//! × 4 rows per character).

use font8x8::{BASIC_FONTS, UnicodeFonts};

/// Rows of one banner line.
pub const BANNER_ROWS: usize = 4;
/// Columns per character.
pub const BANNER_COLS_PER_CHAR: usize = 8;

/// The banner for `text`, or `None` if it would not fit in `cols` columns or has a character
/// the font lacks.
pub fn lines(text: &str, cols: usize) -> Option<Vec<String>> {
    let n = text.chars().count();
    if n * BANNER_COLS_PER_CHAR > cols {
        return None;
    }
    let glyphs: Vec<[u8; 8]> = text
        .chars()
        .map(|c| BASIC_FONTS.get(c))
        .collect::<Option<_>>()?;
    let mut out = Vec::with_capacity(BANNER_ROWS);
    for pair in 0..BANNER_ROWS {
        let mut line = String::with_capacity(n * BANNER_COLS_PER_CHAR * 3);
        for g in &glyphs {
            let (top, bottom) = (g[pair * 2], g[pair * 2 + 1]);
            for bit in 0..8 {
                let t = top >> bit & 1 == 1;
                let b = bottom >> bit & 1 == 1;
                line.push(match (t, b) {
                    (true, true) => '█',
                    (true, false) => '▀',
                    (false, true) => '▄',
                    (false, false) => ' ',
                });
            }
        }
        out.push(line);
    }
    Some(out)
}
