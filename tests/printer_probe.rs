//! The technician's probe against the virtual printer on a real pty.

use frank::printer::emulator::{Emulator, EmulatorOptions};
use frank::printer::probe::probe;
use frank::printer::profile::{ClearBuffer, Profile, shipped};

#[test]
fn probe_finds_status_clear_and_drafts_a_profile() {
    let mut p = shipped("virtual").unwrap();
    p.serial.baud = 921_600;
    let emu = Emulator::spawn(&p, EmulatorOptions::default()).unwrap();
    let like = shipped("generic-80mm").unwrap();
    let r = probe(emu.device_path(), &like, None).unwrap();
    assert!(
        r.status_replies.iter().all(|s| *s == Some(0x12)),
        "{:?}",
        r.status_replies
    );
    assert!(r.clear_buffers_confirmed);
    assert!(r.throughput_bytes_per_s.is_some_and(|t| t > 0));
    let draft = Profile::from_toml("draft", &r.draft_toml).unwrap();
    assert_eq!(draft.serial.baud, r.baud);
    assert_eq!(draft.clear_buffer, ClearBuffer::DleDc4);
    assert!(draft.status.dle_eot);
    // The virtual printer answers process IDs; the draft says so.
    assert!(r.process_id_answered && draft.status.process_id);
    assert_eq!(draft.media_width_px, like.media_width_px);
    // The calibration page came out, with the Data Matrix test for the emulator's cn drawn
    // and the QR test received.
    let t0 = std::time::Instant::now();
    while emu.jobs().is_empty() {
        assert!(t0.elapsed().as_secs() < 10, "no calibration page");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let page = &emu.jobs()[0];
    assert_eq!(page.data_matrix, vec![b"FRANK DM 54".to_vec()]);
    assert!(
        page.other_2d
            .iter()
            .any(|(cn, d)| *cn == 49 && d == b"FRANK QR TEST")
    );
    assert!(page.text.iter().any(|t| t == "FRANK PRINTER CALIBRATION"));
    assert!(page.raster_bands >= 1);
}

#[test]
fn probe_of_a_silent_device_says_what_to_check() {
    let p = shipped("virtual").unwrap();
    let emu = Emulator::spawn(&p, EmulatorOptions::default()).unwrap();
    emu.inject(frank::printer::emulator::Fault::Silent);
    let err = probe(emu.device_path(), &p, Some(9600)).unwrap_err();
    assert!(err.to_string().contains("cable"), "{err}");
}

#[test]
fn probe_recognises_a_zpl_printer_and_drafts_a_zpl_profile() {
    let mut p = shipped("zebra-virtual").unwrap();
    p.serial.baud = 921_600;
    let emu = Emulator::spawn(&p, EmulatorOptions::default()).unwrap();
    let like = shipped("generic-80mm").unwrap();
    let r = probe(emu.device_path(), &like, None).unwrap();
    assert_eq!(r.language, frank::printer::profile::Language::Zpl);
    let hs = r.host_status.unwrap();
    assert!(hs.fault().is_none() && hs.holds_nothing());
    let draft = Profile::from_toml("draft", &r.draft_toml).unwrap();
    assert_eq!(draft.language, frank::printer::profile::Language::Zpl);
    assert_eq!(draft.serial.baud, r.baud);
    assert_eq!(draft.media_width_px, like.media_width_px);
    // The ZPL calibration label printed, its ^BX test symbol drawn.
    let t0 = std::time::Instant::now();
    while emu.jobs().is_empty() {
        assert!(t0.elapsed().as_secs() < 10, "no calibration label");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let page = &emu.jobs()[0];
    assert_eq!(page.data_matrix, vec![b"FRANK DM ZPL".to_vec()]);
    assert!(
        page.text
            .iter()
            .any(|t| t == "FRANK PRINTER CALIBRATION (ZPL)")
    );
}
