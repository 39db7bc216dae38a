//! **Core**: what a `DLE EOT n` status byte and an automatic status back block say.

use super::*;

/// What a status reply says, for `DLE EOT n`. `None`: not a status byte (shape 0xx1xx10).
/// What an automatic status back block (`GS a`, four bytes) says, if it stops printing:
/// cover open (1st byte bit 5), roll paper end (3rd byte bits 2–3), an unrecoverable error (2nd
/// byte bit 5). Offline alone (1st byte bit 3: paper fed by the button, an auto-recoverable
/// error such as a hot head) is not a fault: the printer carries on by itself.
/// docs/PRINTING.md §Replies.
pub fn decode_asb(block: [u8; 4]) -> Option<PrinterFault> {
    if block[0] & 0x20 != 0 {
        Some(PrinterFault::CoverOpen)
    } else if block[2] & 0x0c == 0x0c {
        Some(PrinterFault::PaperOut)
    } else if block[1] & 0x20 != 0 {
        Some(PrinterFault::Offline)
    } else {
        None
    }
}

pub fn decode_status(n: u8, reply: u8) -> Option<Option<PrinterFault>> {
    if reply & 0x93 != 0x12 {
        return None;
    }
    Some(match n {
        1 if reply & 0x08 != 0 => Some(PrinterFault::Offline),
        2 if reply & 0x04 != 0 => Some(PrinterFault::CoverOpen),
        2 if reply & 0x20 != 0 => Some(PrinterFault::PaperOut),
        2 if reply & 0x40 != 0 => Some(PrinterFault::Offline),
        4 if reply & 0x60 == 0x60 => Some(PrinterFault::PaperOut),
        _ => None,
    })
}
