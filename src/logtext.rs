//! Client-supplied text in logs: every string a client (or a file) chose is logged through
//! [`escaped`], so it can never start a new log line or send a terminal escape code.
//!
//! Control characters (`char::is_control`: C0, DEL, C1) are written as Rust-style escapes
//! (`\n`, `\r`, `\t`, `\u{1b}`); a backslash is doubled so an escape in the log is always one
//! Frank wrote. Everything else, including non-ASCII letters, is written as is.

use std::fmt;

/// Longest client-supplied string written to a log, in characters; longer ones end in `…`.
pub const LOGGED_CHARS_MAX: usize = 128;

/// `text` ready for a log line: control characters escaped, at most [`LOGGED_CHARS_MAX`]
/// characters.
pub fn escaped(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// Whether `text` holds a control character (newline, tab, escape, DEL, C1 ...): names that
/// reach logs and screens must not.
pub fn has_control(text: &str) -> bool {
    text.chars().any(char::is_control)
}

/// See [`escaped`].
#[derive(Clone, Copy)]
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for (i, c) in self.0.chars().enumerate() {
            if i == LOGGED_CHARS_MAX {
                return f.write_char('…');
            }
            match c {
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() => write!(f, "{}", c.escape_default())?,
                c => f.write_char(c)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: &str) {
        assert_eq!(escaped(input).to_string(), expected, "{input:?}");
    }

    #[test]
    fn control_characters_are_escaped() {
        check("alice", "alice");
        check("", "");
        check(
            "x\nFAKE INFO clerk logged in clerk=root",
            "x\\nFAKE INFO clerk logged in clerk=root",
        );
        check("a\r\tb", "a\\r\\tb");
        check("\u{1b}[31mred", "\\u{1b}[31mred");
        check("del\u{7f}", "del\\u{7f}");
        check("c1\u{85}", "c1\\u{85}");
        check("back\\nslash", "back\\\\nslash");
        check("Zoë 郵便", "Zoë 郵便");
    }

    #[test]
    fn long_text_is_cut() {
        let long = "a".repeat(LOGGED_CHARS_MAX + 10);
        let out = escaped(&long).to_string();
        assert_eq!(out.chars().count(), LOGGED_CHARS_MAX + 1);
        assert!(out.ends_with('…'));
        check(&"b".repeat(LOGGED_CHARS_MAX), &"b".repeat(LOGGED_CHARS_MAX));
    }

    #[test]
    fn escaped_text_never_holds_a_control_character() {
        let all: String = (0u32..0x200).filter_map(char::from_u32).collect();
        for chunk in all.chars().collect::<Vec<_>>().chunks(64) {
            let s: String = chunk.iter().collect();
            assert!(!has_control(&escaped(&s).to_string()), "{s:?}");
        }
        assert!(has_control("a\nb"));
        assert!(!has_control("a b"));
    }
}
