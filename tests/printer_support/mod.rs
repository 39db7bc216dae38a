//! Shared fixtures for the printer tests (ESC/POS and ZPL): the reference label every golden
//! file is made from, and streaming a job while the link lapses at a chosen byte.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use frank::link::LinkState;
use frank::printer::compiler::{Align, Element, Indicium, Job, Label, TextLine};
use frank::printer::emulator::EmulatorHandle;
use frank::printer::profile::Profile;
use frank::printer::streamer::{JobOutcome, NoMilestones, PrinterPort, StreamConfig, spawn_job};
use tokio::sync::watch;

/// Longest a streamed job may take before the test fails.
pub const STREAM_WAIT_MAX: Duration = Duration::from_secs(20);

/// The label of the golden files: a heading, two addresses, an indicium, a barcode.
pub fn reference_label() -> Label {
    Label {
        elements: vec![
            Element::Text(TextLine {
                text: "USPS PRIORITY MAIL".into(),
                bold: true,
                width_mul: 1,
                height_mul: 2,
                align: Align::Center,
            }),
            Element::Address {
                heading: Some("FROM:".into()),
                lines: vec!["FRANK COUNTER 7".into(), "12 POST RD".into()],
            },
            Element::Indicium(Indicium::DataMatrix {
                data: b"FRANK-IBI-0001".to_vec(),
                module_px: 3,
            }),
            Element::Address {
                heading: Some("TO:".into()),
                lines: vec![
                    "JANE DOE".into(),
                    "1 MAIN ST".into(),
                    "SPRINGFIELD IL 62701".into(),
                ],
            },
            Element::Barcode {
                data: "9400100000000000000000".into(),
                height_dots: 80,
            },
            Element::Feed(1),
        ],
        cut: true,
    }
}

/// Streams `job` to `emu`; the link lapses once `lapse_at` bytes were sent (0: already lapsed
/// at the start; `usize::MAX`: never). Returns the outcome and the bytes sent at the lapse.
pub fn stream_until_lapse(
    emu: &EmulatorHandle,
    p: &Profile,
    job: &Job,
    lapse_at: usize,
) -> (JobOutcome, usize) {
    let port = PrinterPort::open(emu.device_path(), p, None).unwrap();
    let first = if lapse_at == 0 {
        LinkState::Lapsed
    } else {
        LinkState::Up
    };
    let (tx, link) = watch::channel(first);
    let (h, progress) = spawn_job(
        port,
        job.clone(),
        link,
        StreamConfig::default(),
        Box::new(NoMilestones),
    );
    let t0 = Instant::now();
    while progress.borrow().bytes_sent < lapse_at && !h.is_finished() {
        assert!(t0.elapsed() < STREAM_WAIT_MAX);
        std::thread::sleep(Duration::from_micros(50));
    }
    tx.send_replace(LinkState::Lapsed);
    let at_flip = progress.borrow().bytes_sent;
    let (_port, outcome) = h.join().unwrap();
    (outcome, at_flip)
}
