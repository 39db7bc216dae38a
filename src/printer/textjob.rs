//! **Core** (no I/O): text-only printouts — a customer's receipt, a clerk's close-out — as
//! labels the compiler turns into jobs (issue 15).
//!
//! A printout is plain lines. Each line is fitted to the paper's width ([`fit_line`]): a line
//! too long first has its padding narrowed (runs of two or more spaces, widest first, down to
//! one space), then is wrapped at spaces. The lines go out in labels of at most
//! [`LABEL_ELEMENTS_MAX`] lines, in order, the paper cut after the last one only.
//!
//! A printout holds no indicium, so it is not value: printing it reserves nothing and settles
//! nothing, it never enters the job book or the settlement journal, and printing it twice is
//! harmless (a receipt is reprinted from history on purpose).

use super::compiler::{Element, LABEL_ELEMENTS_MAX, Label, TextLine, text_columns};
use super::profile::Profile;

/// Most lines one printout may have after fitting (longer ones are refused before any byte
/// goes out: [`labels`] returns `Err`).
pub const PRINTOUT_LINES_MAX: usize = 4 * LABEL_ELEMENTS_MAX;

/// The printout for `profile`: its lines fitted to the paper, in labels of at most
/// [`LABEL_ELEMENTS_MAX`] lines, the last one cut. `Err` (words) when it would be longer than
/// [`PRINTOUT_LINES_MAX`] lines.
pub fn labels(lines: &[String], profile: &Profile) -> Result<Vec<Label>, String> {
    let columns = text_columns(profile);
    let fitted: Vec<String> = lines.iter().flat_map(|l| fit_line(l, columns)).collect();
    if fitted.len() > PRINTOUT_LINES_MAX {
        return Err(format!(
            "the printout has {} lines at this printer's width; at most {PRINTOUT_LINES_MAX} print",
            fitted.len()
        ));
    }
    let parts: Vec<&[String]> = fitted.chunks(LABEL_ELEMENTS_MAX).collect();
    let n = parts.len();
    Ok(parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| Label {
            elements: part
                .iter()
                .map(|l| Element::Text(TextLine::plain(l)))
                .collect(),
            cut: i + 1 == n,
        })
        .chain((n == 0).then(|| Label {
            elements: Vec::new(),
            cut: true,
        }))
        .collect())
}

/// `line` fitted to `columns` characters: as it is when it fits; else its padding narrowed
/// (the widest run of 2+ spaces loses one space at a time, down to one); then, if still too
/// long, what follows its last run of 2+ spaces goes on a line of its own, right-aligned (an
/// amount stays at the right edge); a line without such a run is wrapped at spaces (a word
/// longer than a line is cut), each part indented as the line was. Never an empty result.
pub fn fit_line(line: &str, columns: usize) -> Vec<String> {
    fit(line, columns, true)
}

/// [`fit_line`]; `split_last` whether its last column may go on a line of its own (only the
/// whole line's: the part before it is narrowed and wrapped).
fn fit(line: &str, columns: usize, split_last: bool) -> Vec<String> {
    let columns = columns.max(1);
    let line = line.trim_end();
    let mut chars: Vec<char> = line.chars().collect();
    while chars.len() > columns {
        // The widest run of spaces of 2 or more after the first non-space (indentation kept).
        let lead = chars.iter().take_while(|c| **c == ' ').count();
        let mut best: Option<(usize, usize)> = None; // (start, len)
        let mut i = lead;
        while i < chars.len() {
            if chars[i] == ' ' {
                let start = i;
                while i < chars.len() && chars[i] == ' ' {
                    i += 1;
                }
                let len = i - start;
                if len >= 2 && best.is_none_or(|(_, l)| len > l) {
                    best = Some((start, len));
                }
            } else {
                i += 1;
            }
        }
        match best {
            Some((start, _)) => {
                chars.remove(start);
            }
            None => break,
        }
    }
    if chars.len() <= columns {
        return vec![chars.into_iter().collect()];
    }
    // Still too long with single spaces: a "label … amount" line puts its last column on a
    // line of its own, right-aligned, so amounts still line up at the right edge.
    let lead = line.chars().take_while(|c| *c == ' ').count();
    if let Some(at) = line[lead..]
        .rfind("  ")
        .map(|i| i + lead)
        .filter(|_| split_last)
    {
        let head = line[..at].trim_end();
        let tail = line[at..].trim_start();
        let mut out = fit(head, columns, false);
        if tail.chars().count() <= columns {
            out.push(format!("{tail:>columns$}"));
        } else {
            out.extend(fit(tail, columns, false));
        }
        return out;
    }
    // Wrapped lines keep the line's indentation (when it leaves room for text).
    let lead = chars.iter().take_while(|c| **c == ' ').count();
    let lead = if lead * 2 < columns { lead } else { 0 };
    let indent = " ".repeat(lead);
    let text: String = chars.into_iter().skip(lead).collect();
    let columns = columns - lead;
    let mut out = Vec::new();
    let mut cur = String::new();
    for word in text.split(' ') {
        let w = word.chars().count();
        let c = cur.chars().count();
        if c > 0 && c + 1 + w > columns {
            out.push(std::mem::take(&mut cur));
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(word);
        while cur.chars().count() > columns {
            let head: String = cur.chars().take(columns).collect();
            cur = cur.chars().skip(columns).collect();
            out.push(head);
        }
    }
    if !cur.is_empty() || out.is_empty() {
        out.push(cur);
    }
    out.into_iter().map(|l| format!("{indent}{l}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_amount_that_cannot_stay_on_its_line_goes_right_aligned_below() {
        let line = format!("{:<30}{:>10}", "FRK10000001 #7  Postage label", "$5.40");
        let fitted = fit_line(&line, 20);
        assert_eq!(
            fitted,
            vec![
                "FRK10000001 #7".to_string(),
                "Postage label".into(),
                format!("{:>20}", "$5.40")
            ]
        );
    }

    #[test]
    fn a_line_that_fits_is_left_alone() {
        assert_eq!(
            fit_line("Total        $5.40", 32),
            vec!["Total        $5.40"]
        );
        assert_eq!(fit_line("", 32), vec![""]);
    }

    #[test]
    fn padding_narrows_before_anything_wraps() {
        let line = format!("{:<30}{:>10}", "FRK10000001 #9  Postage", "$5.40");
        assert_eq!(line.chars().count(), 40);
        let fitted = fit_line(&line, 32);
        assert_eq!(fitted.len(), 1, "{fitted:?}");
        assert_eq!(fitted[0].chars().count(), 32);
        assert!(
            fitted[0].starts_with("FRK10000001 #9  Postage")
                || fitted[0].starts_with("FRK10000001 #9 Postage")
        );
        assert!(fitted[0].ends_with("$5.40"));
    }

    #[test]
    fn indentation_is_kept_and_words_wrap_when_padding_is_not_enough() {
        let fitted = fit_line(
            "  and give the item's number (FRK... #N) at any counter",
            20,
        );
        assert!(fitted.iter().all(|l| l.chars().count() <= 20), "{fitted:?}");
        assert!(fitted[0].starts_with("  and"));
        assert_eq!(
            fitted.join(" ").split_whitespace().collect::<Vec<_>>(),
            "and give the item's number (FRK... #N) at any counter"
                .split_whitespace()
                .collect::<Vec<_>>()
        );
        let long = fit_line(&"x".repeat(45), 20);
        assert_eq!(long, vec!["x".repeat(20), "x".repeat(20), "x".repeat(5)]);
    }

    #[test]
    fn printouts_go_in_labels_of_bounded_lines_cut_once_at_the_end() {
        let profile = crate::printer::profile::shipped("generic-58mm").unwrap();
        let lines: Vec<String> = (0..LABEL_ELEMENTS_MAX + 10)
            .map(|i| format!("line {i}"))
            .collect();
        let labels = labels(&lines, &profile).unwrap();
        assert_eq!(labels.len(), 2);
        assert_eq!(labels[0].elements.len(), LABEL_ELEMENTS_MAX);
        assert!(!labels[0].cut && labels[1].cut);
        assert!(
            labels
                .iter()
                .all(|l| !l.elements.iter().any(|e| matches!(e, Element::Indicium(_))))
        );
        let too_many: Vec<String> = (0..=PRINTOUT_LINES_MAX).map(|i| i.to_string()).collect();
        assert!(super::labels(&too_many, &profile).is_err());
    }
}
