//! Zebra ZPL II: the language facts Frank relies on (docs/PRINTING.md §ZPL), the host status
//! reader (`~HS`) and the compiler ([`compiler`]). No I/O.
//!
//! A ZPL label is one format, `^XA … ^XZ`; the printer prints it only once the closing `^XZ`
//! arrived, so a job stopped before its `^XZ` leaves nothing on paper, and `~JA` (cancel all)
//! throws away what the printer holds of it. Status comes back as the three `~HS` strings,
//! parsed here into the same [`PrinterFault`]s as ESC/POS status.

pub mod compiler;
pub mod probe;

use crate::printer::streamer::PrinterFault;

/// `~HS` host status: the printer answers with three strings (ZPL II Programming Guide, ~HS).
pub const HOST_STATUS: &[u8] = b"~HS";
/// `~JA` cancel all: every format in the receive buffer is cancelled (ZPL II Programming Guide,
/// ~JA), the one that is only partly received too.
pub const CANCEL_ALL: &[u8] = b"~JA";
/// Opens a format.
pub const FORMAT_START: &[u8] = b"^XA";
/// Closes a format: the printer prints it now, not before.
pub const FORMAT_END: &[u8] = b"^XZ";
/// STX and ETX frame each `~HS` string; CR LF follows each.
pub const STX: u8 = 0x02;
pub const ETX: u8 = 0x03;
/// Longest `~HS` string Frank accepts between STX and ETX (the manual's are under 40 bytes).
pub const HOST_STATUS_STRING_BYTES_MAX: usize = 64;

/// What the printer said in one `~HS` answer (the fields Frank reads; ZPL II Programming Guide,
/// ~HS: string 1 `aaa,b,c,dddd,eee,f,g,h,iii,j,k,l`, string 2
/// `mmm,n,o,p,q,r,s,t,uuuuuuuu,v,www`, string 3 `xxxx,y`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostStatus {
    /// String 1 `b`: paper out.
    pub paper_out: bool,
    /// String 1 `c`: paused.
    pub paused: bool,
    /// String 1 `dddd`: label length in dots.
    pub label_length_dots: u32,
    /// String 1 `eee`: formats in the receive buffer.
    pub formats_in_buffer: u32,
    /// String 1 `f`: receive buffer full.
    pub buffer_full: bool,
    /// String 1 `h`: a partial format (an `^XA` without its `^XZ`) is in progress.
    pub partial_format: bool,
    /// String 2 `o`: head up (open).
    pub head_up: bool,
    /// String 2 `p`: ribbon out.
    pub ribbon_out: bool,
    /// String 2 `uuuuuuuu`: labels remaining in the batch.
    pub labels_remaining: u32,
}

impl HostStatus {
    /// The fault that stops printing, most specific first: head open, paper out, ribbon out,
    /// paused (offline). `None`: fit to print.
    pub fn fault(&self) -> Option<PrinterFault> {
        if self.head_up {
            Some(PrinterFault::CoverOpen)
        } else if self.paper_out {
            Some(PrinterFault::PaperOut)
        } else if self.ribbon_out || self.paused {
            Some(PrinterFault::Offline)
        } else {
            None
        }
    }

    /// The printer no longer holds any format: nothing received is waiting to print, none is
    /// being printed, none is half received. After a job's `^XZ` went out this is Frank's
    /// "printed" (docs/PRINTING.md §ZPL).
    pub fn holds_nothing(&self) -> bool {
        self.formats_in_buffer == 0 && self.labels_remaining == 0 && !self.partial_format
    }

    /// The three strings, as the printer sends them (the emulator's answer; tests);
    /// `print_mode` is string 2's `r` (0 rewind, 1 peel-off, 2 tear-off, 3 cutter).
    pub fn to_bytes(&self, print_mode: u8) -> Vec<u8> {
        let b = |x: bool| u8::from(x);
        let one = format!(
            "030,{},{},{:04},{:03},{},0,{},000,0,0,0",
            b(self.paper_out),
            b(self.paused),
            self.label_length_dots.min(9999),
            self.formats_in_buffer.min(999),
            b(self.buffer_full),
            b(self.partial_format),
        );
        let two = format!(
            "001,0,{},{},0,{},6,0,{:08},1,000",
            b(self.head_up),
            b(self.ribbon_out),
            print_mode,
            self.labels_remaining.min(99_999_999),
        );
        let three = "1234,0";
        let mut out = Vec::new();
        for s in [one.as_str(), two.as_str(), three] {
            out.push(STX);
            out.extend_from_slice(s.as_bytes());
            out.push(ETX);
            out.extend_from_slice(b"\r\n");
        }
        out
    }
}

/// Reads `~HS` answers out of what the printer sends: three STX … ETX strings make one
/// [`HostStatus`]. Bytes outside a frame (CR LF, noise) are skipped and counted; a string that
/// does not parse or is longer than [`HOST_STATUS_STRING_BYTES_MAX`] drops the answer it
/// belongs to, and reading starts again at the next STX.
#[derive(Debug, Default, Clone)]
pub struct HostStatusReader {
    in_frame: bool,
    current: Vec<u8>,
    strings: Vec<Vec<u8>>,
    /// Bytes that were not part of a good answer.
    pub skipped_bytes: u64,
}

impl HostStatusReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed bytes; complete answers are appended to `out`.
    pub fn push_all(&mut self, bytes: &[u8], out: &mut Vec<HostStatus>) {
        for &b in bytes {
            if let Some(s) = self.push(b) {
                out.push(s);
            }
        }
    }

    fn push(&mut self, b: u8) -> Option<HostStatus> {
        match (self.in_frame, b) {
            (_, STX) => {
                if self.in_frame {
                    self.skipped_bytes += self.current.len() as u64 + 1;
                }
                self.in_frame = true;
                self.current.clear();
                None
            }
            (true, ETX) => {
                self.in_frame = false;
                let s = std::mem::take(&mut self.current);
                self.strings.push(s);
                if self.strings.len() < 3 {
                    return None;
                }
                let strings = std::mem::take(&mut self.strings);
                let parsed = parse_host_status(&strings[0], &strings[1], &strings[2]);
                if parsed.is_none() {
                    self.skipped_bytes += strings.iter().map(|s| s.len() as u64 + 2).sum::<u64>();
                }
                parsed
            }
            (true, _) => {
                if self.current.len() >= HOST_STATUS_STRING_BYTES_MAX {
                    self.skipped_bytes += self.current.len() as u64 + 1;
                    self.in_frame = false;
                    self.current.clear();
                    self.strings.clear();
                } else {
                    self.current.push(b);
                }
                None
            }
            (false, b'\r' | b'\n') => None,
            (false, _) => {
                self.skipped_bytes += 1;
                None
            }
        }
    }
}

fn fields(s: &[u8]) -> Option<Vec<&str>> {
    let s = std::str::from_utf8(s).ok()?;
    Some(s.split(',').map(str::trim).collect())
}

fn flag(s: &str) -> Option<bool> {
    match s {
        "0" => Some(false),
        "1" => Some(true),
        _ => None,
    }
}

fn number(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// The three strings of one `~HS` answer (without STX/ETX); `None` when a field Frank reads is
/// missing or not a number.
pub fn parse_host_status(one: &[u8], two: &[u8], three: &[u8]) -> Option<HostStatus> {
    let a = fields(one)?;
    let b = fields(two)?;
    let _ = fields(three)?;
    if a.len() < 8 || b.len() < 9 {
        return None;
    }
    Some(HostStatus {
        paper_out: flag(a[1])?,
        paused: flag(a[2])?,
        label_length_dots: number(a[3])?,
        formats_in_buffer: number(a[4])?,
        buffer_full: flag(a[5])?,
        partial_format: flag(a[7])?,
        head_up: flag(b[2])?,
        ribbon_out: flag(b[3])?,
        labels_remaining: number(b[8])?,
    })
}

/// Field data as ZPL must receive it: `^`, `~` and `_` would end the field, start a command or
/// start a hex escape, so they go as `_5E`, `_7E`, `_5F` under `^FH_` (ZPL II Programming Guide,
/// ^FH); everything else as its UTF-8 bytes (`^CI28`). Returns the bytes and whether `^FH` is
/// needed.
pub fn field_text(text: &str) -> (Vec<u8>, bool) {
    let mut out = Vec::with_capacity(text.len());
    let mut hex = false;
    for &b in text.as_bytes() {
        if matches!(b, b'^' | b'~' | b'_') || b < 0x20 || b == 0x7f {
            out.extend_from_slice(format!("_{b:02X}").as_bytes());
            hex = true;
        } else {
            out.push(b);
        }
    }
    (out, hex)
}

/// A Data Matrix payload as `^BX` quality 200 field data under `^FH_` with `_` as the escape
/// character (`g`): hex processing comes first, then escape processing, where `__` is one
/// underscore (ZPL II Programming Guide, ^BX "Field Data (^FD) for ^BX", Quality 200). Printable
/// ASCII goes as itself; every other byte as `_XX`, an underscore as `_5F_5F`.
pub fn symbol_field_data(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() * 2);
    for &b in payload {
        match b {
            b'_' => out.extend_from_slice(b"_5F_5F"),
            b'^' | b'~' => out.extend_from_slice(format!("_{b:02X}").as_bytes()),
            0x20..=0x7e => out.push(b),
            _ => out.extend_from_slice(format!("_{b:02X}").as_bytes()),
        }
    }
    out
}

/// The inverse of [`symbol_field_data`] and [`field_text`]'s hex step: `^FH` hex processing
/// (`_XX` → the byte), then, for `^BX` quality 200 (`escape = Some(g)`), escape processing
/// (`gg` → `g`; other escape sequences are not Frank's and are kept as they are).
pub fn decode_field_data(data: &[u8], hex_indicator: Option<u8>, escape: Option<u8>) -> Vec<u8> {
    let mut step = Vec::with_capacity(data.len());
    let mut i = 0;
    while i < data.len() {
        let b = data[i];
        if Some(b) == hex_indicator
            && let Some(v) = data
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            step.push(v);
            i += 3;
            continue;
        }
        step.push(b);
        i += 1;
    }
    let Some(g) = escape else {
        return step;
    };
    let mut out = Vec::with_capacity(step.len());
    let mut i = 0;
    while i < step.len() {
        if step[i] == g && step.get(i + 1) == Some(&g) {
            out.push(g);
            i += 2;
        } else {
            out.push(step[i]);
            i += 1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_status_round_trips_and_names_faults() {
        let s = HostStatus {
            paper_out: true,
            formats_in_buffer: 2,
            partial_format: true,
            labels_remaining: 1,
            label_length_dots: 1218,
            ..HostStatus::default()
        };
        let bytes = s.to_bytes(2);
        let mut r = HostStatusReader::new();
        let mut out = Vec::new();
        // Byte by byte, with noise before.
        r.push_all(b"xx", &mut out);
        for b in &bytes {
            r.push_all(&[*b], &mut out);
        }
        assert_eq!(out, vec![s]);
        assert_eq!(r.skipped_bytes, 2);
        assert_eq!(s.fault(), Some(PrinterFault::PaperOut));
        assert!(!s.holds_nothing());
        let head = HostStatus {
            head_up: true,
            paper_out: true,
            ..HostStatus::default()
        };
        assert_eq!(head.fault(), Some(PrinterFault::CoverOpen));
        assert!(HostStatus::default().holds_nothing());
        assert_eq!(HostStatus::default().fault(), None);
    }

    #[test]
    fn a_broken_answer_is_dropped_and_the_next_one_read() {
        let mut r = HostStatusReader::new();
        let mut out = Vec::new();
        r.push_all(
            b"\x02030,x,0\x03\r\n\x02001\x03\r\n\x021234,0\x03\r\n",
            &mut out,
        );
        assert!(out.is_empty());
        let good = HostStatus::default();
        r.push_all(&good.to_bytes(2), &mut out);
        assert_eq!(out, vec![good]);
    }

    #[test]
    fn field_data_escapes_round_trip() {
        let payload: Vec<u8> = (0..=255u8).collect();
        let enc = symbol_field_data(&payload);
        assert!(!enc.contains(&b'^') && !enc.contains(&b'~'));
        assert_eq!(decode_field_data(&enc, Some(b'_'), Some(b'_')), payload);
        let (t, hex) = field_text("A^B~C_D é");
        assert!(hex);
        assert_eq!(
            String::from_utf8(decode_field_data(&t, Some(b'_'), None)).unwrap(),
            "A^B~C_D é"
        );
        assert!(!field_text("PLAIN").1);
    }
}
