//! The probe's ZPL side: a printer that ignores `DLE EOT` but answers `~HS` speaks ZPL. The
//! probe then prints a ZPL calibration format and drafts a ZPL profile.

use std::time::{Duration, Instant};

use super::{FORMAT_END, FORMAT_START, HOST_STATUS, HostStatus, HostStatusReader};
use crate::printer::profile::{Language, Profile, shipped};
use crate::printer::streamer::PrinterPort;

/// The profile a ZPL draft starts from when `--like` names an ESC/POS one.
pub const ZPL_DRAFT_BASE: &str = "zebra-zd421-203";

/// Ask `~HS` and wait up to `timeout` for the three strings.
pub fn host_status(port: &mut PrinterPort, timeout: Duration) -> Option<HostStatus> {
    let (_, fault) = port.write_counted(HOST_STATUS, timeout);
    if fault.is_some() {
        return None;
    }
    let deadline = Instant::now() + timeout;
    let mut reader = HostStatusReader::new();
    let mut out = Vec::new();
    while Instant::now() < deadline {
        let got = port.read_until(1, deadline).ok()?;
        reader.push_all(&got, &mut out);
        if let Some(h) = out.pop() {
            return Some(h);
        }
    }
    None
}

/// A ZPL calibration label: a width ruler (a tick every 8 dots, taller every 64), a digit row
/// per column of font 0 at Frank's cell, a `^BX` test symbol, the assumed geometry.
pub fn calibration_format(like: &Profile) -> Vec<u8> {
    let g = super::compiler::TextGeometry::of(like);
    let w = like.media_width_px;
    let mut v = FORMAT_START.to_vec();
    v.extend_from_slice(format!("^CI28^PW{w}^LH0,0").as_bytes());
    let text = |v: &mut Vec<u8>, y: u32, s: &str| {
        v.extend_from_slice(
            format!(
                "^FO0,{y}^A0N,{},{}^FD{s}^FS",
                g.cell_height_dots, g.cell_width_dots
            )
            .as_bytes(),
        );
    };
    text(&mut v, 10, "FRANK PRINTER CALIBRATION (ZPL)");
    text(
        &mut v,
        40,
        &format!("assumed: {w} dots at {} dpi", like.dpi),
    );
    v.extend_from_slice(format!("^FO0,70^GB{w},4,4^FS").as_bytes());
    for x in (0..w).step_by(8) {
        let h = if x % 64 == 0 { 36 } else { 16 };
        v.extend_from_slice(format!("^FO{x},74^GB1,{h},1^FS").as_bytes());
    }
    let cols = like.fonts.get(&0).map_or(32, |f| f.columns) as usize;
    let digits: String = (0..cols)
        .map(|i| char::from(b'0' + (i % 10) as u8))
        .collect();
    text(&mut v, 120, &format!("font 0 ({cols} columns):"));
    text(&mut v, 150, &digits);
    v.extend_from_slice(b"^FO10,190^BXN,4,200,,,,_^FDFRANK DM ZPL^FS");
    v.extend_from_slice(FORMAT_END);
    v
}

/// The draft for a ZPL printer found at `baud`: `like` if it is a ZPL profile, else the
/// [`ZPL_DRAFT_BASE`] profile with `like`'s geometry.
pub fn draft(like: &Profile, baud: u32, status: &HostStatus) -> Profile {
    let mut d = if like.language == Language::Zpl {
        like.clone()
    } else {
        // A shipped profile always loads (the shipped set is validated by tests).
        match shipped(ZPL_DRAFT_BASE) {
            Ok(mut base) => {
                base.media_width_px = like.media_width_px;
                base.media_width_mm = like.media_width_mm;
                base.dpi = like.dpi;
                base
            }
            Err(_) => like.clone(),
        }
    };
    d.language = Language::Zpl;
    d.id = "draft".into();
    d.name = format!("Draft from probe ({}, ZPL)", like.name);
    d.notes = format!(
        "Drafted by `frank printer probe` at {baud} baud: the printer answered ~HS (ZPL). \
         Label length reported: {} dots. Confirm width, dpi and fonts against the calibration \
         label before use.",
        status.label_length_dots
    );
    d.serial.baud = baud;
    d.status.dle_eot = false;
    d.status.asb = false;
    d.status.process_id = false;
    d
}
