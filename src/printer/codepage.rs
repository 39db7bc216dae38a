//! Code pages (sans-I/O): text → the bytes of the profile's character code tables, switching
//! tables with `ESC t n` where a character needs another one; a character no table of the
//! profile has is refused, never printed as `?` (docs/PRINTING.md §Code pages).
//!
//! The tables are the upper halves (0x80–0xFF) of the IBM/Microsoft code pages as published by
//! Unicode (`MAPPINGS/VENDORS/MICSFT/PC/CP437.TXT`, `CP850.TXT`, `CP852.TXT`, `WINDOWS/CP1252.TXT`;
//! CP858 is CP850 with € at 0xD5). The lower half is ASCII in all of them; Frank prints only
//! 0x20–0x7E of it.

use super::profile::Profile;

/// Upper half of CP437.
const CP437: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u{a0}";
/// Upper half of CP850.
const CP850: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜø£Ø×ƒáíóúñÑªº¿®¬½¼¡«»░▒▓│┤ÁÂÀ©╣║╗╝¢¥┐└┴┬├─┼ãÃ╚╔╩╦╠═╬¤ðÐÊËÈıÍÎÏ┘┌█▄¦Ì▀ÓßÔÒõÕµþÞÚÛÙýÝ¯´\u{ad}±‗¾¶§÷¸°¨·¹³²■\u{a0}";
/// Upper half of CP858 (CP850 with the euro sign at 0xD5).
const CP858: &str = "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜø£Ø×ƒáíóúñÑªº¿®¬½¼¡«»░▒▓│┤ÁÂÀ©╣║╗╝¢¥┐└┴┬├─┼ãÃ╚╔╩╦╠═╬¤ðÐÊËÈ€ÍÎÏ┘┌█▄¦Ì▀ÓßÔÒõÕµþÞÚÛÙýÝ¯´\u{ad}±‗¾¶§÷¸°¨·¹³²■\u{a0}";
/// Upper half of CP852 (Latin-2: Polish, Czech, Hungarian …).
const CP852: &str = "ÇüéâäůćçłëŐőîŹÄĆÉĹĺôöĽľŚśÖÜŤťŁ×čáíóúĄąŽžĘę¬źČş«»░▒▓│┤ÁÂĚŞ╣║╗╝Żż┐└┴┬├─┼Ăă╚╔╩╦╠═╬¤đĐĎËďŇÍÎě┘┌█▄ŢŮ▀ÓßÔŃńňŠšŔÚŕŰýÝţ´\u{ad}˝˛ˇ˘§÷¸°¨˙űŘř■\u{a0}";
/// Upper half of Windows-1252 (`\0`: unassigned).
const CP1252: &str = "€\0‚ƒ„…†‡ˆ‰Š‹Œ\0Ž\0\0‘’“”•–—˜™š›œ\0žŸ\u{a0}¡¢£¤¥¦§¨©ª«¬\u{ad}®¯°±²³´µ¶·¸¹º»¼½¾¿ÀÁÂÃÄÅÆÇÈÉÊËÌÍÎÏÐÑÒÓÔÕÖ×ØÙÚÛÜÝÞßàáâãäåæçèéêëìíîïðñòóôõö÷øùúûüýþÿ";

/// A code page Frank knows, by the names escpos-printer-db and profiles use.
pub fn table(name: &str) -> Option<&'static str> {
    let n: String = name
        .to_ascii_uppercase()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    let digits = n.trim_start_matches(|c: char| c.is_ascii_alphabetic());
    let prefix = &n[..n.len() - digits.len()];
    if !matches!(prefix, "CP" | "PC" | "IBM" | "WPC" | "WINDOWS") {
        return None;
    }
    match digits {
        "437" => Some(CP437),
        "850" => Some(CP850),
        "858" => Some(CP858),
        "852" => Some(CP852),
        "1252" => Some(CP1252),
        _ => None,
    }
}

/// The byte for `c` in `table`, if it has one (printable ASCII is the same in every table).
pub fn byte_of(table: &str, c: char) -> Option<u8> {
    if (' '..='~').contains(&c) {
        return Some(c as u8);
    }
    if c == '\0' {
        return None;
    }
    table.chars().position(|t| t == c).map(|i| 0x80 + i as u8)
}

/// The character `b` stands for in `table` (`None`: a control byte or unassigned).
pub fn char_of(table: &str, b: u8) -> Option<char> {
    match b {
        0x20..=0x7e => Some(char::from(b)),
        0x80..=0xff => table
            .chars()
            .nth(usize::from(b - 0x80))
            .filter(|c| *c != '\0'),
        _ => None,
    }
}

/// The profile's tables Frank knows, by `ESC t` index, lowest index first (index 0 is the one a
/// printer starts with after `ESC @`).
pub fn profile_tables(profile: &Profile) -> Vec<(u8, &'static str)> {
    profile
        .code_pages
        .iter()
        .filter_map(|(i, name)| table(name).map(|t| (*i, t)))
        .collect()
}

/// Whether every character of `text` can be printed on `profile`: `Err(c)` names the first
/// that no code page of the profile has. Forms call this as the clerk types.
pub fn printable(profile: &Profile, text: &str) -> Result<(), char> {
    let tables = profile_tables(profile);
    for c in text.chars() {
        let ascii = (' '..='~').contains(&c);
        if !ascii && !tables.iter().any(|(_, t)| byte_of(t, c).is_some()) {
            return Err(c);
        }
    }
    Ok(())
}

/// The words a clerk reads when a character cannot be printed.
pub fn refusal(c: char) -> String {
    format!("{c} cannot be printed on this printer; type it without the accent or mark")
}

/// One piece of encoded text: an `ESC t n` switch or bytes of the current table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Select(u8),
    Bytes(Vec<u8>),
}

/// Encodes `text` for `profile`, starting in table `*current` (updated): runs of bytes, with an
/// `ESC t` switch before a character the current table lacks (to the lowest-index table that
/// has it). `Err(c)`: no table has `c`.
pub fn encode(profile: &Profile, text: &str, current: &mut u8) -> Result<Vec<Piece>, char> {
    let tables = profile_tables(profile);
    let mut out: Vec<Piece> = Vec::new();
    let mut run = Vec::new();
    for c in text.chars() {
        let in_current = tables
            .iter()
            .find(|(i, _)| i == current)
            .and_then(|(_, t)| byte_of(t, c))
            .or_else(|| (' '..='~').contains(&c).then_some(c as u8));
        let b = match in_current {
            Some(b) => b,
            None => {
                let (i, b) = tables
                    .iter()
                    .find_map(|(i, t)| byte_of(t, c).map(|b| (*i, b)))
                    .ok_or(c)?;
                if !run.is_empty() {
                    out.push(Piece::Bytes(std::mem::take(&mut run)));
                }
                out.push(Piece::Select(i));
                *current = i;
                b
            }
        };
        run.push(b);
    }
    if !run.is_empty() {
        out.push(Piece::Bytes(run));
    }
    Ok(out)
}

/// `ESC t n`.
pub fn select_bytes(n: u8) -> [u8; 3] {
    [0x1b, 0x74, n]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::profile::shipped;

    #[test]
    fn tables_are_whole() {
        for (name, t) in [
            ("CP437", CP437),
            ("CP850", CP850),
            ("CP858", CP858),
            ("CP852", CP852),
            ("CP1252", CP1252),
        ] {
            assert_eq!(t.chars().count(), 128, "{name}");
            assert_eq!(table(name), Some(t));
        }
        assert_eq!(byte_of(CP437, 'é'), Some(0x82));
        assert_eq!(byte_of(CP858, '€'), Some(0xd5));
        assert_eq!(byte_of(CP1252, '€'), Some(0x80));
        assert_eq!(byte_of(CP850, 'Ò'), Some(0xe3));
        assert_eq!(byte_of(CP852, 'ł'), Some(0x88));
        assert_eq!(char_of(CP437, 0xa5), Some('Ñ'));
        assert_eq!(table("PC858"), Some(CP858));
        assert_eq!(table("WPC1252"), Some(CP1252));
        assert_eq!(table("Katakana"), None);
    }

    #[test]
    fn switches_mid_line_only_when_needed() {
        let p = shipped("epson-tm-t88v").unwrap(); // 0 CP437, 2 CP850, 16 CP1252
        let mut cur = 0;
        // é is in CP437; Ø is not (CP850 has it); € only in CP1252.
        let pieces = encode(&p, "José Ø €", &mut cur).unwrap();
        assert_eq!(
            pieces,
            vec![
                Piece::Bytes(vec![b'J', b'o', b's', 0x82, b' ']),
                Piece::Select(2),
                Piece::Bytes(vec![0x9d, b' ']),
                Piece::Select(16),
                Piece::Bytes(vec![0x80]),
            ]
        );
        assert_eq!(cur, 16);
        assert_eq!(printable(&p, "ł"), Err('ł'));
        assert_eq!(encode(&p, "Łódź", &mut cur), Err('Ł'));
        assert_eq!(printable(&p, "Zoë Ñandú"), Ok(()));
    }
}
