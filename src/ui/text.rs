//! Width-aware text fitting (display columns via unicode-width, not bytes or chars).

use unicode_width::{UnicodeWidthChar, UnicodeWidthStr};

pub fn width(s: &str) -> usize {
    UnicodeWidthStr::width(s)
}

/// The longest prefix of `s` that fits in `cols` columns, with `…` when cut.
pub fn fit(s: &str, cols: usize) -> String {
    if width(s) <= cols {
        return s.to_string();
    }
    if cols == 0 {
        return String::new();
    }
    let mut out = String::new();
    let mut used = 0;
    for c in s.chars() {
        let w = c.width().unwrap_or(0);
        if used + w > cols - 1 {
            break;
        }
        out.push(c);
        used += w;
    }
    out.push('…');
    out
}

/// The longest suffix of `s` that fits in `cols` columns, with `…` in front when cut (so the
/// end of what is being typed stays visible).
pub fn fit_tail(s: &str, cols: usize) -> String {
    if width(s) <= cols {
        return s.to_string();
    }
    if cols == 0 {
        return String::new();
    }
    let mut rev = Vec::new();
    let mut used = 0;
    for c in s.chars().rev() {
        let w = c.width().unwrap_or(0);
        if used + w > cols - 1 {
            break;
        }
        rev.push(c);
        used += w;
    }
    let mut out = String::from("…");
    out.extend(rev.into_iter().rev());
    out
}

/// `s` padded with spaces to `cols` columns (cut with `…` if longer).
pub fn pad(s: &str, cols: usize) -> String {
    let f = fit(s, cols);
    let w = width(&f);
    f + &" ".repeat(cols.saturating_sub(w))
}

/// `s` broken into lines of at most `cols` columns, at spaces where it can; a word longer than
/// a line is cut across lines. Always at least one line.
pub fn wrap(s: &str, cols: usize) -> Vec<String> {
    let cols = cols.max(1);
    let mut lines = Vec::new();
    let mut line = String::new();
    for word in s.split(' ') {
        if !line.is_empty() && width(&line) + 1 + width(word) > cols {
            lines.push(std::mem::take(&mut line));
        }
        if !line.is_empty() {
            line.push(' ');
        }
        line.push_str(word);
        while width(&line) > cols {
            let mut head = String::new();
            let mut used = 0;
            for c in line.chars() {
                let w = c.width().unwrap_or(0);
                // At least one character per line, so a character wider than `cols` still moves on.
                if used + w > cols && !head.is_empty() {
                    break;
                }
                head.push(c);
                used += w;
            }
            line = line[head.len()..].to_string();
            lines.push(head);
        }
    }
    if !line.is_empty() || lines.is_empty() {
        lines.push(line);
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_counts_display_columns() {
        assert_eq!(width("山田"), 4);
        assert_eq!(fit("山田太郎", 5), "山田…");
        assert_eq!(width(&fit("山田太郎", 5)), 5);
        assert_eq!(fit_tail("4242424242", 5), "…4242");
        assert_eq!(pad("ab", 4), "ab  ");
        assert_eq!(pad("山田太郎", 3), "山…");
        assert_eq!(pad("山田太郎", 4), "山… ");
        assert_eq!(fit("abc", 0), "");
    }

    #[test]
    fn wrapping_breaks_at_spaces_and_keeps_every_word() {
        assert_eq!(
            wrap("fix the ZIP code now", 8),
            vec!["fix the", "ZIP code", "now"]
        );
        assert_eq!(wrap("abcdefghij", 4), vec!["abcd", "efgh", "ij"]);
        assert_eq!(wrap("山田太郎", 3), vec!["山", "田", "太", "郎"]);
        assert_eq!(wrap("", 5), vec![""]);
        for line in wrap("a much longer line of words than fits", 7) {
            assert!(width(&line) <= 7, "{line}");
        }
    }
}
