//! One reader for everything an ESC/POS printer sends back. No I/O: bytes in, [`Reply`]s out.
//!
//! What arrives on the line (docs/PRINTING.md §Replies Frank reads), told apart by shape:
//!
//! | reply | bytes | first byte |
//! |---|---|---|
//! | `DLE EOT n` status | one byte `0xx1xx10` | `b & 0x93 == 0x12` |
//! | automatic status back (`GS a`) | four bytes, the first `0xx1xx00`, the rest `0xx0xxxx` | `b & 0x93 == 0x10` |
//! | `GS ( H` fn 48 process ID | `37 22 d1 d2 d3 d4 00` | `0x37` |
//! | `DLE DC4` fn 8 clear confirmed | `37 25 00` | `0x37` |
//!
//! `0x37` (`0011 0111`) fits neither status shape, so the first byte decides the kind and the
//! kind decides the length: a status byte is never taken for part of a process ID and the other
//! way round. The printer sends each reply whole (Epson queues replies by priority: process ID,
//! offline response, clear response), so replies never interleave byte by byte. A byte that fits
//! no reply, or a `37` reply that breaks its shape, comes out as [`Reply::Garbled`] and the
//! reader starts again at the next byte that can begin a reply.

use super::compiler::ProcessId;

/// Longest reply, in bytes (`37 22 d1 d2 d3 d4 00`).
pub const REPLY_BYTES_MAX: usize = 7;

/// A whole reply from the printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A `DLE EOT n` reply byte (which `n` it answers is the asker's bookkeeping).
    Status(u8),
    /// An automatic status back block (`GS a n`).
    Asb([u8; 4]),
    /// `37 22 d1 d2 d3 d4 00`: the data before this process ID has printed.
    ProcessId(ProcessId),
    /// `37 25 00`: the buffers were cleared (`DLE DC4 fn 8`).
    ClearConfirmed,
    /// Bytes that fit no reply (line noise, a wrong baud rate, an unknown reply).
    Garbled(u8),
}

/// The reader: push bytes, take replies.
#[derive(Debug, Default, Clone)]
pub struct ReplyReader {
    /// The bytes of the reply being read (at most [`REPLY_BYTES_MAX`]).
    partial: Vec<u8>,
}

fn is_status(b: u8) -> bool {
    b & 0x93 == 0x12
}

fn is_asb_first(b: u8) -> bool {
    b & 0x93 == 0x10
}

fn is_asb_rest(b: u8) -> bool {
    b & 0x90 == 0x00
}

fn is_id_byte(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

impl ReplyReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the reader is inside a reply (some of its bytes seen, not all).
    pub fn mid_reply(&self) -> bool {
        !self.partial.is_empty()
    }

    /// Feed bytes; replies complete in them are appended to `out`.
    pub fn push_all(&mut self, bytes: &[u8], out: &mut Vec<Reply>) {
        for &b in bytes {
            self.push(b, out);
        }
    }

    /// Feed one byte; zero, one or two replies come out (a broken reply, then the byte's own).
    pub fn push(&mut self, b: u8, out: &mut Vec<Reply>) {
        if self.partial.is_empty() {
            self.start(b, out);
            return;
        }
        let first = self.partial[0];
        let at = self.partial.len();
        let fits = match first {
            0x37 => match (self.partial.get(1).copied(), at) {
                (None, 1) => b == 0x22 || b == 0x25,
                (Some(0x22), 2..=5) => is_id_byte(b),
                (Some(0x22), 6) | (Some(0x25), 2) => b == 0x00,
                _ => false,
            },
            _ => is_asb_rest(b),
        };
        if !fits {
            // The reply broke off: report what was read and start over with this byte.
            for g in std::mem::take(&mut self.partial) {
                out.push(Reply::Garbled(g));
            }
            self.start(b, out);
            return;
        }
        self.partial.push(b);
        let p = &self.partial;
        let done = match (p[0], p.get(1)) {
            (0x37, Some(0x22)) if p.len() == 7 => {
                Some(Reply::ProcessId(ProcessId([p[2], p[3], p[4], p[5]])))
            }
            (0x37, Some(0x25)) if p.len() == 3 => Some(Reply::ClearConfirmed),
            (f, _) if f != 0x37 && p.len() == 4 => Some(Reply::Asb([p[0], p[1], p[2], p[3]])),
            _ => None,
        };
        if let Some(r) = done {
            self.partial.clear();
            out.push(r);
        }
        debug_assert!(self.partial.len() < REPLY_BYTES_MAX);
    }

    fn start(&mut self, b: u8, out: &mut Vec<Reply>) {
        if is_status(b) {
            out.push(Reply::Status(b));
        } else if b == 0x37 || is_asb_first(b) {
            self.partial.push(b);
        } else {
            out.push(Reply::Garbled(b));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(bytes: &[u8]) -> Vec<Reply> {
        let mut r = ReplyReader::new();
        let mut out = Vec::new();
        r.push_all(bytes, &mut out);
        out
    }

    fn id(s: &[u8; 4]) -> Reply {
        Reply::ProcessId(ProcessId(*s))
    }

    #[test]
    fn check_table() {
        let cases: &[(&[u8], &[Reply])] = &[
            (&[0x12], &[Reply::Status(0x12)]),
            (&[0x72], &[Reply::Status(0x72)]),
            (&[0x37, 0x25, 0x00], &[Reply::ClearConfirmed]),
            (&[0x37, 0x22, b'0', b'0', b'4', b'2', 0x00], &[id(b"0042")]),
            (
                &[0x10, 0x00, 0x00, 0x0f],
                &[Reply::Asb([0x10, 0x00, 0x00, 0x0f])],
            ),
            // Interleaved at reply boundaries: status, ID, status, clear, ASB, status.
            (
                &[
                    0x12, 0x37, 0x22, b'1', b'2', b'3', b'4', 0x00, 0x1a, 0x37, 0x25, 0x00, 0x14,
                    0x00, 0x00, 0x00, 0x12,
                ],
                &[
                    Reply::Status(0x12),
                    id(b"1234"),
                    Reply::Status(0x1a),
                    Reply::ClearConfirmed,
                    Reply::Asb([0x14, 0, 0, 0]),
                    Reply::Status(0x12),
                ],
            ),
            // ID digits that look like status bytes (0x32 = '2' & 0x93 == 0x12) stay digits.
            (
                &[0x37, 0x22, b'2', b'2', b'2', b'2', 0x00, 0x32],
                &[id(b"2222"), Reply::Status(0x32)],
            ),
            // A broken ID: the bytes read come out garbled, the status byte after them is read.
            (
                &[0x37, 0x22, b'1', 0x12],
                &[
                    Reply::Garbled(0x37),
                    Reply::Garbled(0x22),
                    Reply::Garbled(b'1'),
                    Reply::Status(0x12),
                ],
            ),
            // A broken clear reply followed by a good one.
            (
                &[0x37, 0x37, 0x25, 0x00],
                &[Reply::Garbled(0x37), Reply::ClearConfirmed],
            ),
            // Noise between replies.
            (
                &[0xff, 0x12, 0x00],
                &[
                    Reply::Garbled(0xff),
                    Reply::Status(0x12),
                    Reply::Garbled(0x00),
                ],
            ),
            // An ASB whose second byte breaks the shape (bit 4 set) restarts as a status byte.
            (&[0x10, 0x12], &[Reply::Garbled(0x10), Reply::Status(0x12)]),
        ];
        for (bytes, want) in cases {
            assert_eq!(read(bytes), want.to_vec(), "{}", hex::encode(bytes));
        }
    }

    #[test]
    fn byte_at_a_time_equals_all_at_once() {
        let stream = [
            0x37, 0x22, b'0', b'0', b'0', b'1', 0x00, 0x12, 0x37, 0x25, 0x00, 0x37, 0x22, b'0',
            b'0', b'0', b'2', 0x00,
        ];
        let whole = read(&stream);
        let mut r = ReplyReader::new();
        let mut out = Vec::new();
        for (i, b) in stream.iter().enumerate() {
            r.push(*b, &mut out);
            assert_eq!(
                r.mid_reply(),
                !matches!(i, 6 | 7 | 10 | 17),
                "after byte {i}"
            );
        }
        assert_eq!(out, whole);
        assert_eq!(
            whole,
            vec![
                id(b"0001"),
                Reply::Status(0x12),
                Reply::ClearConfirmed,
                id(b"0002")
            ]
        );
    }
}
