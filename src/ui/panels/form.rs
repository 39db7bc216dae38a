//! A form: one row per visible field — selection marker, label, value, and its error.
//! The focused row is shown by a `▶` marker and the selection style (reverse video), so it is
//! visible without colour.

use crate::ui::form::{FieldKey, Form};
use crate::ui::hits::{Hits, Target};
use crate::ui::text;
use crate::ui::theme::{Role, Theme};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};

/// Draws `fields` (indices into `form.fields`) in `area`; `focused` says whether the form has
/// focus at all. Each row drawn is recorded in `hits` (a click focuses its field).
pub fn draw<K: FieldKey>(
    frame: &mut Frame,
    area: Rect,
    form: &Form<K>,
    indices: &[usize],
    theme: &Theme,
    focused: bool,
    hits: &mut Hits,
) {
    let label_cols = indices
        .iter()
        .filter_map(|i| form.fields.get(*i))
        .map(|f| text::width(f.label))
        .max()
        .unwrap_or(0)
        .min(14);
    let total = area.width as usize;
    let longest = indices
        .iter()
        .filter_map(|i| form.fields.get(*i))
        .map(|f| f.chars_max + 1)
        .max()
        .unwrap_or(8)
        .max(14);
    let value_cols = longest.min(total.saturating_sub(label_cols + 4) / 2).max(4);
    let visible: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|i| form.fields.get(*i).is_some_and(|f| !f.hidden))
        .collect();
    // Scroll so the focused field stays in view (bounded by the area height).
    let rows = area.height as usize;
    let focus_pos = visible.iter().position(|i| *i == form.focus).unwrap_or(0);
    let first = focus_pos.saturating_sub(rows.saturating_sub(1));
    let mut lines = Vec::with_capacity(rows);
    for (row, &i) in visible.iter().skip(first).take(rows).enumerate() {
        let f = &form.fields[i];
        hits.add(
            Rect {
                y: area.y + row as u16,
                height: 1,
                ..area
            },
            Target::Field(i),
        );
        let is_focus = focused && i == form.focus;
        let marker = if is_focus { "▶ " } else { "  " };
        let value = text::fit_tail(&f.display(), value_cols);
        let value = text::pad(&value, value_cols);
        let value_style = if is_focus {
            theme.style(Role::Selection)
        } else {
            theme.style(Role::Input)
        };
        let mut spans = vec![
            Span::styled(marker, theme.style(Role::Title)),
            Span::styled(text::pad(f.label, label_cols), theme.style(Role::Text)),
            Span::raw(" "),
            Span::styled(value, value_style),
        ];
        let rest = total.saturating_sub(label_cols + value_cols + 3);
        if let Some(e) = f.shown_error() {
            spans.push(Span::styled(
                text::fit(&format!(" ✗ {e}"), rest),
                theme.style(Role::AlertError),
            ));
        } else if f.touched && !f.display().is_empty() {
            let ok = match &f.note {
                Some(note) => format!(" ✓ {note}"),
                None => " ✓".to_string(),
            };
            spans.push(Span::styled(text::fit(&ok, rest), theme.style(Role::Ok)));
        }
        lines.push(Line::from(spans));
    }
    super::rows(frame, area, &lines);
}
