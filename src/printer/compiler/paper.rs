//! Paper motion: `ESC J` feeds, the profile's cut, label positioning (`FS ( L`), and the
//! cancel sequence that throws away what the printer holds.

use super::*;

/// [`feed_dots`], one boundary per `ESC J`.
pub(super) fn feed_dots_into(e: &mut Enc, dots: u32) {
    for c in feed_dots(dots).chunks(3) {
        e.raw(c);
    }
}

/// The profile's cut, with its feed of `cut.feed_lines` lines (docs/PRINTING.md §Commands):
/// `ESC d n` counts lines; `GS V 65 n` / `GS V 66 n` feed n vertical motion units (dots), so
/// the lines are turned into dots there ([`line_pitch_dots`] each, at most 255).
pub fn cut_bytes(profile: &Profile) -> Vec<u8> {
    let n = profile.cut_feed_lines;
    // At most 255: the cast is exact.
    let dots = (u32::from(n) * line_pitch_dots(profile.dpi)).min(255) as u8;
    match profile.cut {
        CutCommand::None => vec![0x1b, 0x64, n],
        CutCommand::Full => vec![0x1b, 0x64, n, 0x1d, 0x56, 0],
        CutCommand::Partial => vec![0x1b, 0x64, n, 0x1d, 0x56, 1],
        CutCommand::FeedFull => vec![0x1d, 0x56, 65, dots],
        CutCommand::FeedPartial => vec![0x1d, 0x56, 66, dots],
    }
}

/// `FS ( L` fn 67, m = 48: feed to the print starting position of the label (Epson, label and
/// black mark control).
pub const LABEL_TO_PRINT_START: [u8; 7] = [0x1c, 0x28, 0x4c, 2, 0, 67, 48];

/// `FS ( L` fn 66, m = 48: feed the label to the cutting position (the gap after it).
pub const LABEL_TO_CUT: [u8; 7] = [0x1c, 0x28, 0x4c, 2, 0, 66, 48];

/// Whether jobs position labels with `FS ( L` (gap or black-mark media whose profile says so).
pub fn label_positioning(profile: &Profile) -> bool {
    profile.label_commands == LabelCommands::EpsonFsL && profile.label_rows().is_some()
}

/// The cut at the current position, no feed (`GS V 0` / `GS V 1`), after [`LABEL_TO_CUT`].
pub fn cut_here_bytes(profile: &Profile) -> Vec<u8> {
    match profile.cut {
        CutCommand::None => Vec::new(),
        CutCommand::Full | CutCommand::FeedFull => vec![0x1d, 0x56, 0],
        CutCommand::Partial | CutCommand::FeedPartial => vec![0x1d, 0x56, 1],
    }
}

/// Dots one text line advances at the default line spacing, 1/6 inch (Epson `ESC 2`), with
/// the vertical motion unit at the printer's dot pitch.
pub fn line_pitch_dots(dpi: u32) -> u32 {
    dpi.div_ceil(6)
}

/// `ESC J n`: print and feed n dots (vertical motion units), in as many commands as needed.
pub fn feed_dots(dots: u32) -> Vec<u8> {
    let mut v = Vec::new();
    let mut left = dots;
    while left > 0 {
        let n = left.min(255);
        // n ≤ 255: the cast is exact.
        v.extend_from_slice(&[0x1b, 0x4a, n as u8]);
        left -= n;
    }
    v
}

/// What to send after the last job byte when a job is aborted at `bytes_sent` to throw away
/// what the printer holds. With `DleDc4` the caller waits for [`CLEAR_BUFFERS_REPLY`].
pub fn cancel_bytes(profile: &Profile, job: &Job, bytes_sent: usize) -> Vec<u8> {
    match profile.clear_buffer {
        ClearBuffer::DleDc4 => CLEAR_BUFFERS.to_vec(),
        ClearBuffer::NulInit => {
            let mut v = vec![0u8; job.remaining_in_command(bytes_sent)];
            v.extend_from_slice(&INIT);
            v
        }
    }
}
