//! Printing: profiles, ESC/POS job compiler, serial streamer, virtual printer, probe. (issue 5)
//!
//! Codemap (docs/PRINTING.md has the details):
//! - [`profile`]: printer profiles (TOML), `inherits`, validation; the shipped set.
//! - [`import`]: escpos-printer-db capabilities.json → Frank profiles.
//! - [`bitmap`]: the 1-bit image type shared with the indicium renderer.
//! - [`compiler`]: sans-I/O label → ESC/POS bytes, chunks and indicium markers.
//! - [`textjob`]: sans-I/O text-only printouts (receipts, close-outs) → labels of plain lines
//!   fitted to the paper; no indicium, so nothing of value.
//! - [`codepage`]: sans-I/O text → the profile's code pages (`ESC t`), `printable` for forms.
//! - [`realtime`]: spotting real-time commands (DLE EOT, DLE DC4) in a byte stream.
//! - [`replies`]: sans-I/O reader of what the printer sends back (status, process IDs, clear
//!   confirmations, ASB), one reader that never mistakes one for another.
//! - [`emulator`]: the virtual printer on a pty (parser, renderer, fault injection).
//! - [`streamer`]: writes a job to a serial port under the link guard; pacing, status, abort,
//!   process IDs (a job is done when the printer says it printed), milestones, resync.
//! - [`probe`]: the technician's probe (baud, status, calibration page, throughput, draft).
//! - [`zpl`]: Zebra ZPL II — the sans-I/O compiler (one `^XA … ^XZ` format per label), the
//!   `~HS` status reader, field-data escaping; chosen by the profile's `language`.
//! - [`cli`]: `frank printer ...`.
//!
//! Invariant: the streamer never writes a job byte while the link guard does not allow printing.

pub mod bitmap;
pub mod cli;
pub mod codepage;
pub mod compiler;
pub mod emulator;
pub mod import;
pub mod probe;
pub mod profile;
pub mod realtime;
pub mod replies;
pub mod streamer;
pub mod textjob;
pub mod zpl;
