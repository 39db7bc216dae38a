//! A byte-at-a-time ESC/POS parser with a dispatch table (the escpos-tools shape). No I/O.
//!
//! [`Parser::push`] takes one byte and returns a [`Command`] when one is complete. The table
//! maps a prefix byte (ESC, GS, DLE, FS) and a command byte to the shape of its parameters.
//! Real-time commands are spotted separately, at receive time, by
//! [`crate::printer::realtime::RealtimeMatcher`].

use crate::printer::compiler::CLEAR_BUFFERS;

const ESC: u8 = 0x1b;
const GS: u8 = 0x1d;
const DLE: u8 = 0x10;
const FS: u8 = 0x1c;

/// Largest parameter block accepted (GS ( k, raster band); bigger is treated as data loss.
pub const COMMAND_BYTES_MAX: usize = 1 << 20;

/// A parsed command.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// A printable byte.
    Text(u8),
    /// LF: print the line and feed one line.
    LineFeed,
    /// ESC @.
    Init,
    /// ESC a n.
    Justify(u8),
    /// ESC E n.
    Bold(bool),
    /// GS ! n.
    Size(u8),
    /// ESC d n: print and feed n lines.
    FeedLines(u8),
    /// GS v 0 m xL xH yL yH data (m: 0 normal, 1 double width, 2 double height, 3 quadruple).
    Raster {
        mode: u8,
        width_bytes: usize,
        height: usize,
        data: Vec<u8>,
    },
    /// GS ( k pL pH cn fn params.
    Symbol2d { cn: u8, func: u8, params: Vec<u8> },
    /// GS h n.
    BarcodeHeight(u8),
    /// GS k m ... (function A or B).
    Barcode { system: u8, data: Vec<u8> },
    /// GS V m [n].
    Cut { mode: u8, feed: u8 },
    /// DLE EOT n (also answered at receive time).
    StatusQuery(u8),
    /// DLE DC4 fn 8 (also acted on at receive time).
    ClearBuffers,
    /// GS ( H fn 48: answer `37 22 d1..d4 00` once everything before it has printed.
    ProcessId([u8; 4]),
    /// ESC { n: upside-down printing on/off.
    UpsideDown(bool),
    /// ESC J n: print and feed n dots.
    FeedDots(u8),
    /// GS L nL nH: left margin in dots.
    LeftMargin(u16),
    /// GS a n: automatic status back for the items in n (0: off).
    AutoStatusBack(u8),
    /// ESC t n: character code table n.
    CodePage(u8),
    /// FS ( L pL pH fn m: label positioning (fn 65 feed to the peeling position, 66 to the
    /// cutting position, 67 to the print starting position); `fn` and `m`.
    LabelFeed { func: u8, m: u8 },
    /// GS ( E pL pH fn ...: customize settings (fn 5: memory switch values); `fn` and the rest.
    Customize { func: u8, params: Vec<u8> },
    /// ESC L: select page mode.
    PageMode,
    /// ESC S: select standard mode (page data is discarded).
    StandardMode,
    /// ESC T n: print direction in page mode (0 from the top left; 2 from the bottom right,
    /// the page turned by 180°).
    PageDirection(u8),
    /// ESC W xL xH yL yH dxL dxH dyL dyH: the page-mode print area.
    PageArea {
        x: u16,
        y: u16,
        width: u16,
        height: u16,
    },
    /// ESC $ nL nH: absolute horizontal print position.
    PositionX(u16),
    /// GS $ nL nH: absolute vertical print position (page mode).
    PositionY(u16),
    /// FF: in page mode, print the page and return to standard mode.
    FormFeed,
    /// CAN: in page mode, delete the page's data.
    Cancel,
    /// Any other recognised command, whole.
    Other(Vec<u8>),
}

/// How a command's parameters are framed after its two command bytes.
#[derive(Debug, Clone, Copy)]
enum Shape {
    /// A fixed count of parameter bytes.
    Fixed(usize),
    /// GS v 0: m xL xH yL yH, then xL+xH*256 × yL+yH*256 bytes.
    Raster,
    /// pL pH then that many bytes (GS ( k, GS ( L, GS ( D, ...).
    Len16,
    /// GS k m: m ≤ 6 NUL-terminated, else n then n bytes.
    Barcode,
    /// GS V m: m 65/66 take one more byte.
    Cut,
    /// DLE DC4 fn: fn 8 takes 7 more bytes (a fixed pattern), fn 1/2 take 2.
    DleDc4,
}

/// The dispatch table: (prefix, command byte, shape).
const TABLE: &[(u8, u8, Shape)] = &[
    (ESC, b'@', Shape::Fixed(0)),
    (ESC, b'a', Shape::Fixed(1)),
    (ESC, b'E', Shape::Fixed(1)),
    (ESC, b'G', Shape::Fixed(1)),
    (ESC, b'-', Shape::Fixed(1)),
    (ESC, b'!', Shape::Fixed(1)),
    (ESC, b'd', Shape::Fixed(1)),
    (ESC, b'J', Shape::Fixed(1)),
    (ESC, b'2', Shape::Fixed(0)),
    (ESC, b'3', Shape::Fixed(1)),
    (ESC, b'M', Shape::Fixed(1)),
    (ESC, b't', Shape::Fixed(1)),
    (ESC, b'R', Shape::Fixed(1)),
    (ESC, b'{', Shape::Fixed(1)),
    (ESC, b'p', Shape::Fixed(3)),
    (ESC, b'L', Shape::Fixed(0)),
    (ESC, b'S', Shape::Fixed(0)),
    (ESC, b'T', Shape::Fixed(1)),
    (ESC, b'W', Shape::Fixed(8)),
    (ESC, b'$', Shape::Fixed(2)),
    (GS, b'$', Shape::Fixed(2)),
    (GS, b'!', Shape::Fixed(1)),
    (GS, b'B', Shape::Fixed(1)),
    (GS, b'h', Shape::Fixed(1)),
    (GS, b'w', Shape::Fixed(1)),
    (GS, b'H', Shape::Fixed(1)),
    (GS, b'f', Shape::Fixed(1)),
    (GS, b'a', Shape::Fixed(1)),
    (GS, b'r', Shape::Fixed(1)),
    (GS, b'L', Shape::Fixed(2)),
    (GS, b'W', Shape::Fixed(2)),
    (GS, b'v', Shape::Raster),
    (GS, b'(', Shape::Len16),
    (GS, b'k', Shape::Barcode),
    (GS, b'V', Shape::Cut),
    (DLE, 0x04, Shape::Fixed(1)),
    (DLE, 0x05, Shape::Fixed(1)),
    (DLE, 0x14, Shape::DleDc4),
    (FS, b'(', Shape::Len16),
    (FS, b'.', Shape::Fixed(0)),
    (FS, b'&', Shape::Fixed(0)),
];

fn lookup(prefix: u8, code: u8) -> Option<Shape> {
    TABLE
        .iter()
        .find(|(p, c, _)| *p == prefix && *c == code)
        .map(|(_, _, s)| *s)
}

#[derive(Debug, Default)]
enum State {
    #[default]
    Idle,
    /// Saw a prefix byte.
    Prefix(u8),
    /// Collecting parameters: the bytes so far, and how many in total the command has
    /// (`None` while the length is not yet known).
    Params {
        shape: ShapeState,
        buf: Vec<u8>,
        total: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy)]
struct ShapeState(Shape);

/// The parser. Feed bytes with [`Parser::push`].
#[derive(Debug, Default)]
pub struct Parser {
    state: State,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drop a half-received command (DLE DC4 fn 8 clears the buffer).
    pub fn reset(&mut self) {
        self.state = State::Idle;
    }

    /// Whether the parser sits between commands.
    pub fn idle(&self) -> bool {
        matches!(self.state, State::Idle)
    }

    pub fn push(&mut self, b: u8) -> Option<Command> {
        match std::mem::take(&mut self.state) {
            State::Idle => match b {
                ESC | GS | DLE | FS => {
                    self.state = State::Prefix(b);
                    None
                }
                b'\n' => Some(Command::LineFeed),
                0x0c => Some(Command::FormFeed),
                0x18 => Some(Command::Cancel),
                // 0x80..=0xFF are characters of the selected code page (ESC t).
                0x20..=0x7e | 0x80..=0xff => Some(Command::Text(b)),
                _ => None, // NUL, CR and other controls: nothing to print
            },
            State::Prefix(p) => match lookup(p, b) {
                Some(shape) => {
                    let buf = vec![p, b];
                    let total = match shape {
                        Shape::Fixed(n) => Some(2 + n),
                        _ => None,
                    };
                    self.params(ShapeState(shape), buf, total)
                }
                None => Some(Command::Other(vec![p, b])),
            },
            State::Params {
                shape,
                mut buf,
                total,
            } => {
                buf.push(b);
                let total = total.or_else(|| frame_len(shape.0, &buf));
                self.params(shape, buf, total)
            }
        }
    }

    fn params(&mut self, shape: ShapeState, buf: Vec<u8>, total: Option<usize>) -> Option<Command> {
        match total {
            Some(t) if buf.len() >= t || t > COMMAND_BYTES_MAX => Some(decode(&buf)),
            _ => {
                self.state = State::Params { shape, buf, total };
                None
            }
        }
    }
}

/// The whole command's length once enough of it is known.
fn frame_len(shape: Shape, buf: &[u8]) -> Option<usize> {
    match shape {
        Shape::Fixed(n) => Some(2 + n),
        Shape::Raster if buf.len() >= 8 => {
            let x = usize::from(buf[4]) | usize::from(buf[5]) << 8;
            let y = usize::from(buf[6]) | usize::from(buf[7]) << 8;
            // Header GS v 0 m xL xH yL yH is 8 bytes.
            (buf.len() >= 8).then_some(8 + x * y)
        }
        // GS ( X pL pH ...
        Shape::Len16 if buf.len() >= 5 => {
            Some(5 + (usize::from(buf[3]) | usize::from(buf[4]) << 8))
        }
        Shape::Barcode if buf.len() >= 3 => {
            let m = buf[2];
            if m <= 6 {
                // NUL-terminated: complete when the last byte is NUL.
                (buf.len() > 3 && buf[buf.len() - 1] == 0).then_some(buf.len())
            } else if buf.len() >= 4 {
                Some(4 + usize::from(buf[3]))
            } else {
                None
            }
        }
        Shape::Cut if buf.len() >= 3 => Some(if matches!(buf[2], 65 | 66) { 4 } else { 3 }),
        Shape::DleDc4 if buf.len() >= 3 => Some(match buf[2] {
            8 => CLEAR_BUFFERS.len(),
            _ => 5,
        }),
        _ => None,
    }
}

fn decode(buf: &[u8]) -> Command {
    let p = |i: usize| buf.get(i).copied().unwrap_or(0);
    match (buf[0], buf[1]) {
        (ESC, b'@') => Command::Init,
        (ESC, b'a') => Command::Justify(p(2) % 48),
        (ESC, b'E') => Command::Bold(p(2) & 1 == 1),
        (ESC, b'd') => Command::FeedLines(p(2)),
        (GS, b'!') => Command::Size(p(2)),
        (GS, b'h') => Command::BarcodeHeight(p(2)),
        (GS, b'v') if buf.len() >= 8 => Command::Raster {
            mode: p(3) % 48,
            width_bytes: usize::from(p(4)) | usize::from(p(5)) << 8,
            height: usize::from(p(6)) | usize::from(p(7)) << 8,
            data: buf[8..].to_vec(),
        },
        (GS, b'(') if p(2) == b'k' && buf.len() >= 7 => Command::Symbol2d {
            cn: p(5),
            func: p(6),
            params: buf[7..].to_vec(),
        },
        (GS, b'k') => {
            let m = p(2);
            let data = if m <= 6 {
                buf[3..buf.len().saturating_sub(1)].to_vec()
            } else {
                buf.get(4..).unwrap_or_default().to_vec()
            };
            Command::Barcode { system: m, data }
        }
        (GS, b'V') => Command::Cut {
            mode: p(2),
            feed: if matches!(p(2), 65 | 66) { p(3) } else { 0 },
        },
        (DLE, 0x04) => Command::StatusQuery(p(2)),
        (DLE, 0x14) if p(2) == 8 => Command::ClearBuffers,
        // GS ( H pL=6 pH=0 fn=48 m=48 d1 d2 d3 d4.
        (GS, b'(') if p(2) == b'H' && buf.len() == 11 && p(5) == 0x30 && p(6) == 0x30 => {
            Command::ProcessId([p(7), p(8), p(9), p(10)])
        }
        (ESC, b'{') => Command::UpsideDown(p(2) & 1 == 1),
        (ESC, b'L') => Command::PageMode,
        (ESC, b'S') => Command::StandardMode,
        (ESC, b'T') => Command::PageDirection(p(2) % 48),
        (ESC, b'W') => {
            let w = |i: usize| u16::from(p(i)) | u16::from(p(i + 1)) << 8;
            Command::PageArea {
                x: w(2),
                y: w(4),
                width: w(6),
                height: w(8),
            }
        }
        (ESC, b'$') => Command::PositionX(u16::from(p(2)) | u16::from(p(3)) << 8),
        (GS, b'$') => Command::PositionY(u16::from(p(2)) | u16::from(p(3)) << 8),
        (ESC, b'J') => Command::FeedDots(p(2)),
        (ESC, b't') => Command::CodePage(p(2)),
        (GS, b'L') => Command::LeftMargin(u16::from(p(2)) | u16::from(p(3)) << 8),
        (GS, b'a') => Command::AutoStatusBack(p(2)),
        // FS ( L pL pH fn m
        (FS, b'(') if p(2) == b'L' && buf.len() >= 7 => Command::LabelFeed {
            func: p(5),
            m: p(6),
        },
        // GS ( E pL pH fn ...
        (GS, b'(') if p(2) == b'E' && buf.len() >= 6 => Command::Customize {
            func: p(5),
            params: buf[6..].to_vec(),
        },
        _ => Command::Other(buf.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::printer::realtime::{Realtime, RealtimeMatcher};

    fn parse(bytes: &[u8]) -> Vec<Command> {
        let mut p = Parser::new();
        bytes.iter().filter_map(|b| p.push(*b)).collect()
    }

    #[test]
    fn check_table() {
        let cases: &[(&[u8], Command)] = &[
            (&[0x1b, 0x40], Command::Init),
            (&[0x1b, 0x61, 1], Command::Justify(1)),
            (&[0x1b, 0x45, 1], Command::Bold(true)),
            (&[0x1d, 0x21, 0x11], Command::Size(0x11)),
            (&[0x1b, 0x64, 3], Command::FeedLines(3)),
            (&[0x1d, 0x56, 66, 3], Command::Cut { mode: 66, feed: 3 }),
            (&[0x1d, 0x56, 1], Command::Cut { mode: 1, feed: 0 }),
            (&[0x10, 0x04, 4], Command::StatusQuery(4)),
            (&CLEAR_BUFFERS, Command::ClearBuffers),
            (
                &[0x1d, 0x28, 0x48, 6, 0, 0x30, 0x30, b'0', b'0', b'4', b'2'],
                Command::ProcessId(*b"0042"),
            ),
            (&[0x1b, 0x7b, 1], Command::UpsideDown(true)),
            (&[0x1b, 0x7b, 0], Command::UpsideDown(false)),
            (&[0x1b, 0x4a, 12], Command::FeedDots(12)),
            (&[0x1d, 0x4c, 0x98, 0x01], Command::LeftMargin(408)),
            (&[0x1d, 0x61, 0x0e], Command::AutoStatusBack(0x0e)),
            (&[0x1b, 0x74, 19], Command::CodePage(19)),
            (&[0xe9], Command::Text(0xe9)),
            (&[0x1b, 0x4c], Command::PageMode),
            (&[0x1b, 0x54, 2], Command::PageDirection(2)),
            (
                &[0x1b, 0x57, 0, 0, 0, 0, 0x80, 1, 200, 0],
                Command::PageArea {
                    x: 0,
                    y: 0,
                    width: 384,
                    height: 200,
                },
            ),
            (&[0x1b, 0x24, 0x10, 1], Command::PositionX(272)),
            (&[0x1d, 0x24, 23, 0], Command::PositionY(23)),
            (&[0x0c], Command::FormFeed),
            (&[0x18], Command::Cancel),
            (
                &[0x1c, 0x28, 0x4c, 2, 0, 65, 48],
                Command::LabelFeed { func: 65, m: 48 },
            ),
            (
                &[0x1d, 0x76, 0x30, 0, 1, 0, 2, 0, 0xaa, 0x55],
                Command::Raster {
                    mode: 0,
                    width_bytes: 1,
                    height: 2,
                    data: vec![0xaa, 0x55],
                },
            ),
            (
                &[0x1d, 0x6b, 73, 3, b'{', b'B', b'1'],
                Command::Barcode {
                    system: 73,
                    data: b"{B1".to_vec(),
                },
            ),
            (
                &[0x1d, 0x28, 0x6b, 3, 0, 54, 67, 4],
                Command::Symbol2d {
                    cn: 54,
                    func: 67,
                    params: vec![4],
                },
            ),
        ];
        for (bytes, want) in cases {
            assert_eq!(parse(bytes), vec![want.clone()], "{}", hex::encode(bytes));
        }
    }

    #[test]
    fn realtime_inside_raster_data() {
        let mut m = RealtimeMatcher::default();
        let data = [0x1d, 0x76, 0x30, 0, 3, 0, 1, 0, 0x10, 0x04, 0x01];
        let hits: Vec<_> = data.iter().filter_map(|b| m.push(*b)).collect();
        assert_eq!(hits, vec![Realtime::Status(1)]);
        // The print-stage parser still treats them as image data.
        assert!(matches!(parse(&data)[0], Command::Raster { .. }));
    }
}
