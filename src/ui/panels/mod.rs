//! Panels drawn around and over the screens.

pub mod banner;
pub mod form;
pub mod help;
pub mod hints;
pub mod notice;
pub mod out_of_service;
pub mod pin;
pub mod status_bar;

/// Lines drawn one per row from the top of `area`, each cut at its width, nothing wrapped:
/// what `Paragraph::new(lines)` draws, without its reflow pass. Printable ASCII (every
/// history row, most text) goes straight into the cells: each byte is one grapheme one
/// column wide, so the grapheme and width passes ratatui makes per character are skipped
/// (a full screen of history rows costs about a third of what the paragraph did).
pub fn rows(
    frame: &mut ratatui::Frame,
    area: ratatui::layout::Rect,
    lines: &[ratatui::text::Line],
) {
    let buf = frame.buffer_mut();
    let area = area.intersection(buf.area);
    for (y, line) in (area.y..area.bottom()).zip(lines) {
        let mut x = area.x;
        for span in &line.spans {
            if x >= area.right() {
                break;
            }
            let style = line.style.patch(span.style);
            let text = span.content.as_bytes();
            if text.iter().all(|b| (0x20..0x7f).contains(b)) {
                for &b in text.iter().take(usize::from(area.right() - x)) {
                    buf[(x, y)].set_char(char::from(b)).set_style(style);
                    x += 1;
                }
            } else {
                let (end, _) =
                    buf.set_stringn(x, y, &span.content, usize::from(area.right() - x), style);
                x = end;
            }
        }
    }
}
