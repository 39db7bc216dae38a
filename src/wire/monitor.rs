//! The admin monitor's messages (sans-I/O): a counter's printer report (`printer_status`) and a
//! supervisor's live subscription to the account's terminals (`subscribe_terminals`), whose
//! answer is a stream of length-prefixed CBOR frames. docs/PROTOCOL.md §4.8 is the
//! specification.

use super::{ErrorBody, ResponseError};
use serde::{Deserialize, Serialize};

/// Largest `printer_status.detail`, in UTF-8 bytes.
pub const PRINTER_DETAIL_BYTES_MAX: usize = 128;
/// Largest monitor frame (the CBOR after the 4-byte length prefix).
pub const MONITOR_FRAME_BYTES_MAX: usize = 1024 * 1024;
/// Most rows one frame carries; an account with more terminals shows its first ones by id
/// and the snapshot says `truncated`.
pub const MONITOR_ROWS_MAX: usize = 1024;
/// Bytes of the length prefix in front of every frame.
pub const FRAME_PREFIX_BYTES: usize = 4;

/// What a counter knows of its printer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PrinterState {
    Ready,
    PaperOut,
    CoverOpen,
    Offline,
    /// The device disappeared (unplugged, USB-serial adapter gone).
    Vanished,
    /// The counter cannot tell (no status reply yet).
    Unknown,
    /// No printer is configured on this terminal.
    None,
}

impl PrinterState {
    pub const ALL: [PrinterState; 7] = [
        PrinterState::Ready,
        PrinterState::PaperOut,
        PrinterState::CoverOpen,
        PrinterState::Offline,
        PrinterState::Vanished,
        PrinterState::Unknown,
        PrinterState::None,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PrinterState::Ready => "ready",
            PrinterState::PaperOut => "paper_out",
            PrinterState::CoverOpen => "cover_open",
            PrinterState::Offline => "offline",
            PrinterState::Vanished => "vanished",
            PrinterState::Unknown => "unknown",
            PrinterState::None => "none",
        }
    }

    pub fn parse(text: &str) -> Option<PrinterState> {
        PrinterState::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// The state in words for a person ("paper out", not `paper_out`).
    pub fn words(self) -> &'static str {
        match self {
            PrinterState::Ready => "ready",
            PrinterState::PaperOut => "paper out",
            PrinterState::CoverOpen => "cover open",
            PrinterState::Offline => "offline",
            PrinterState::Vanished => "disconnected",
            PrinterState::Unknown => "not reported",
            PrinterState::None => "no printer",
        }
    }
}

impl std::fmt::Display for PrinterState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `printer_status` (session needed): the counter reports its printer. The vendor keeps the
/// latest report with the terminal's live view and pushes it to monitor subscribers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrinterReport {
    /// One of `ready|paper_out|cover_open|offline|vanished|unknown|none`.
    pub state: String,
    /// Free text for people (e.g. the device path or the fault), at most
    /// [`PRINTER_DETAIL_BYTES_MAX`] bytes, no control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl PrinterReport {
    pub fn new(state: PrinterState, detail: Option<String>) -> PrinterReport {
        PrinterReport {
            state: state.as_str().to_string(),
            detail,
        }
    }

    /// Checks the fields; the typed state on success.
    pub fn validate(&self) -> Result<PrinterState, ErrorBody> {
        let state = PrinterState::parse(&self.state).ok_or_else(|| {
            // The value sent is not repeated: it is client text and this message is logged.
            ErrorBody::malformed(format!(
                "printer_status.state is not one of {}",
                PrinterState::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        if let Some(d) = &self.detail {
            if d.len() > PRINTER_DETAIL_BYTES_MAX {
                return Err(ErrorBody::malformed(format!(
                    "printer_status.detail is {} bytes; the limit is {PRINTER_DETAIL_BYTES_MAX}",
                    d.len()
                ))
                .with_limit(PRINTER_DETAIL_BYTES_MAX as u64));
            }
            if d.chars().any(char::is_control) {
                return Err(ErrorBody::malformed(
                    "printer_status.detail must not contain control characters",
                ));
            }
        }
        Ok(state)
    }
}

/// OK body of `printer_status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrinterRecorded {
    pub vendor_time_ms: u64,
}

/// `subscribe_terminals` (session of a supervisor clerk): body `{}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct SubscribeTerminals {}

/// One terminal of the supervisor's account as the vendor sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TerminalRow {
    pub terminal_id: u64,
    pub name: String,
    /// The vendor's own view of the terminal's link: `up`, `lapsed`, `down` (logged in, no
    /// keepalive yet — or no connection at all), `closed`.
    pub link: String,
    /// Whether the terminal has a connection with a session now.
    pub connected: bool,
    /// The clerk signed in on it, if connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clerk: Option<String>,
    /// Smoothed keepalive round-trip time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<u64>,
    /// Time since the last fresh keepalive from the terminal arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keepalive_age_ms: Option<u64>,
    /// Share of the terminal's keepalives that never arrived valid, in basis points
    /// (1/100 of a percent).
    pub keepalive_loss_bp: u32,
    /// The last `printer_status` state (`unknown` if the terminal never reported).
    pub printer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printer_detail: Option<String>,
    /// Authorizations of the terminal's **account** committed (printed) since 00:00 UTC today.
    pub items_today: u64,
    /// The account's descending register (available to print), cents.
    pub balance_cents: u64,
    /// The **account's** pieces the vendor committed at their reservation's expiry because no
    /// terminal settled them (`unsettled`: charged, refundable), up to
    /// [`UNSETTLED_COUNTED_MAX`]. Left out when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unsettled: u64,
}

/// Unsettled pieces counted for a monitor row; more show as this many.
pub const UNSETTLED_COUNTED_MAX: u32 = 1000;

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One frame of a monitor subscription.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MonitorFrame {
    /// `snapshot` (the first frame: every terminal of the account) or `update` (only the
    /// rows that changed since the previous frame).
    pub kind: String,
    /// 0 for the snapshot, then +1 per frame sent.
    pub seq: u64,
    pub vendor_time_ms: u64,
    pub account_id: u64,
    /// Frames this subscription has coalesced away so far because its queue was full.
    pub coalesced_frames: u64,
    /// The account has more than [`MONITOR_ROWS_MAX`] terminals; only the first are shown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    pub rows: Vec<TerminalRow>,
}

impl MonitorFrame {
    pub fn is_snapshot(&self) -> bool {
        self.kind == "snapshot"
    }
}

/// A frame on the wire: `len (u32, big-endian) ‖ CBOR response envelope`.
pub fn encode_frame(envelope: &[u8]) -> Vec<u8> {
    let len = u32::try_from(envelope.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(FRAME_PREFIX_BYTES + envelope.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(envelope);
    out
}

/// The ok frame carrying `frame`.
pub fn encode_monitor_frame(frame: &MonitorFrame) -> Vec<u8> {
    encode_frame(&super::encode_ok(frame))
}

/// Why a monitor stream could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("monitor frame of {len} bytes exceeds {MONITOR_FRAME_BYTES_MAX}")]
    TooLong { len: usize },
    #[error("stream ended inside a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    #[error(transparent)]
    Response(#[from] ResponseError),
}

/// Sans-I/O reader of a monitor stream: push bytes as they arrive, pop whole frames.
///
/// A request refused before its type was known (`malformed`, `oversized`,
/// `unsupported_version`) is answered unframed, like any request: the first byte of a frame
/// is 0x00 (frames are below 2^24 bytes), an envelope starts with a CBOR map header
/// (0xa1..=0xa3). [`FrameReader::finish`] decodes such an answer.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    pub fn new() -> FrameReader {
        FrameReader::default()
    }

    pub fn push(&mut self, bytes: &[u8]) -> Result<(), FrameError> {
        self.buf.extend_from_slice(bytes);
        if self.unframed() {
            if self.buf.len() > super::RESPONSE_BYTES_MAX {
                return Err(FrameError::TooLong {
                    len: self.buf.len(),
                });
            }
        } else if let Some(len) = self.announced().filter(|l| *l > MONITOR_FRAME_BYTES_MAX) {
            return Err(FrameError::TooLong { len });
        }
        Ok(())
    }

    fn unframed(&self) -> bool {
        self.buf.first().is_some_and(|b| *b & 0xe0 == 0xa0)
    }

    fn announced(&self) -> Option<usize> {
        let prefix: [u8; FRAME_PREFIX_BYTES] =
            self.buf.get(..FRAME_PREFIX_BYTES)?.try_into().ok()?;
        Some(u32::from_be_bytes(prefix) as usize)
    }

    /// The next whole frame, decoded: `Ok(None)` when more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<MonitorFrame>, FrameError> {
        if self.unframed() {
            return Ok(None);
        }
        let Some(len) = self.announced() else {
            return Ok(None);
        };
        if len > MONITOR_FRAME_BYTES_MAX {
            return Err(FrameError::TooLong { len });
        }
        if self.buf.len() < FRAME_PREFIX_BYTES + len {
            return Ok(None);
        }
        let rest = self.buf.split_off(FRAME_PREFIX_BYTES + len);
        let frame = std::mem::replace(&mut self.buf, rest);
        Ok(Some(super::decode_response(&frame[FRAME_PREFIX_BYTES..])?))
    }

    /// The stream ended: an unframed refusal is decoded now; leftover bytes are an error.
    pub fn finish(&mut self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        if self.unframed() {
            let bytes = std::mem::take(&mut self.buf);
            super::decode_response::<MonitorFrame>(&bytes)?;
            return Err(FrameError::Response(ResponseError::Malformed(
                "unframed answer to subscribe_terminals".into(),
            )));
        }
        Err(FrameError::Truncated {
            buffered: self.buf.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{ErrorCode, encode_error};

    fn row(id: u64) -> TerminalRow {
        TerminalRow {
            terminal_id: id,
            name: format!("t{id}"),
            link: "up".into(),
            connected: true,
            clerk: Some("alice".into()),
            rtt_ms: Some(1),
            keepalive_age_ms: Some(20),
            keepalive_loss_bp: 0,
            printer: "ready".into(),
            printer_detail: None,
            items_today: 3,
            balance_cents: 4_000,
            unsettled: 0,
        }
    }

    fn frame(seq: u64, rows: Vec<TerminalRow>) -> MonitorFrame {
        MonitorFrame {
            kind: if seq == 0 { "snapshot" } else { "update" }.into(),
            seq,
            vendor_time_ms: 5,
            account_id: 1,
            coalesced_frames: 0,
            truncated: false,
            rows,
        }
    }

    #[test]
    fn printer_reports_validate() {
        for s in PrinterState::ALL {
            assert_eq!(PrinterReport::new(s, None).validate().unwrap(), s);
        }
        let bad = PrinterReport {
            state: "on_fire".into(),
            detail: None,
        };
        let e = bad.validate().unwrap_err();
        assert_eq!(e.code, ErrorCode::Malformed);
        assert!(e.message.contains("paper_out"), "{}", e.message);
        let long = PrinterReport::new(
            PrinterState::Offline,
            Some("x".repeat(PRINTER_DETAIL_BYTES_MAX + 1)),
        );
        assert_eq!(
            long.validate().unwrap_err().limit,
            Some(PRINTER_DETAIL_BYTES_MAX as u64)
        );
        let ctl = PrinterReport::new(PrinterState::Offline, Some("a\u{1b}[2J".into()));
        assert!(ctl.validate().is_err());
        let ok = PrinterReport::new(
            PrinterState::PaperOut,
            Some("x".repeat(PRINTER_DETAIL_BYTES_MAX)),
        );
        assert!(ok.validate().is_ok());
    }

    #[test]
    fn frames_split_anywhere_reassemble() {
        let frames = [frame(0, vec![row(1), row(2)]), frame(1, vec![row(2)])];
        let mut bytes = Vec::new();
        for f in &frames {
            bytes.extend(encode_monitor_frame(f));
        }
        for chunk in [1, 2, 3, 7, 64, bytes.len()] {
            let mut r = FrameReader::new();
            let mut got = Vec::new();
            for c in bytes.chunks(chunk) {
                r.push(c).unwrap();
                while let Some(f) = r.next_frame().unwrap() {
                    got.push(f);
                }
            }
            r.finish().unwrap();
            assert_eq!(got, frames, "chunk {chunk}");
        }
    }

    #[test]
    fn refusals_framed_and_unframed_surface_as_typed_errors() {
        let forbidden = ErrorBody::new(ErrorCode::Forbidden, "supervisors only");
        let mut r = FrameReader::new();
        r.push(&encode_frame(&encode_error(&forbidden))).unwrap();
        match r.next_frame() {
            Err(FrameError::Response(ResponseError::Refused(b))) => {
                assert_eq!(b.code, ErrorCode::Forbidden)
            }
            other => panic!("{other:?}"),
        }
        let mut r = FrameReader::new();
        r.push(&encode_error(&ErrorBody::malformed("bad"))).unwrap();
        assert_eq!(r.next_frame().unwrap(), None);
        match r.finish() {
            Err(FrameError::Response(ResponseError::Refused(b))) => {
                assert_eq!(b.code, ErrorCode::Malformed)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn oversized_and_truncated_frames_are_errors() {
        let mut r = FrameReader::new();
        let len = (MONITOR_FRAME_BYTES_MAX as u32 + 1).to_be_bytes();
        assert!(matches!(r.push(&len), Err(FrameError::TooLong { .. })));
        let mut r = FrameReader::new();
        let bytes = encode_monitor_frame(&frame(0, vec![row(1)]));
        r.push(&bytes[..bytes.len() - 1]).unwrap();
        assert_eq!(r.next_frame().unwrap(), None);
        assert!(matches!(r.finish(), Err(FrameError::Truncated { .. })));
    }
}
