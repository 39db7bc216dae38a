//! Unit tests of the streamer's cores (moved out of `mod.rs`).

use super::*;

#[test]
fn pacer_keeps_lead_and_drains() {
    let t0 = Instant::now();
    let mut p = Pacer::new(1000, 512, t0);
    assert_eq!(p.ready_at(t0, 256), t0);
    p.on_sent(t0, 256);
    p.on_sent(t0, 256);
    // Full: the next 256 bytes wait for 256 bytes to drain = 256 ms.
    let at = p.ready_at(t0, 256);
    assert_eq!(at - t0, Duration::from_millis(256));
    // After a long pause the backlog is empty, not negative: no burst beyond the lead.
    let later = t0 + Duration::from_secs(10);
    assert_eq!(p.backlog_bytes(later), 0);
    p.on_sent(later, 512);
    assert!(p.ready_at(later, 1) > later);
}

#[test]
fn status_decoding() {
    assert_eq!(decode_status(1, 0x12), Some(None));
    assert_eq!(decode_status(1, 0x1a), Some(Some(PrinterFault::Offline)));
    assert_eq!(decode_status(2, 0x72), Some(Some(PrinterFault::PaperOut)));
    assert_eq!(decode_status(2, 0x16), Some(Some(PrinterFault::CoverOpen)));
    assert_eq!(decode_status(4, 0x72), Some(Some(PrinterFault::PaperOut)));
    assert_eq!(decode_status(1, 0x37), None);
}

#[test]
fn progress_percent() {
    let p = Progress {
        bytes_sent: 50,
        bytes_total: 200,
    };
    assert_eq!(p.percent(), 25);
}
