//! Shared fixtures for the printer tests (ESC/POS and ZPL): the reference label every golden
//! file is made from, and streaming a job while the link lapses at a chosen byte.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use frank::link::LinkState;
use frank::printer::compiler::{Align, Element, Indicium, Job, Label, TextLine};
use frank::printer::emulator::{Emulator, EmulatorHandle, EmulatorOptions};
use frank::printer::profile::Profile;
use frank::printer::streamer::{
    JobOutcome, NoMilestones, PrinterPort, Progress, StreamConfig, spawn_job,
};
use std::thread::JoinHandle;
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

/// Streams `job` on an open `port` with the link up; returns the port and the outcome.
pub fn print_on(port: PrinterPort, job: &Job) -> (PrinterPort, JobOutcome) {
    let (_tx, link) = watch::channel(LinkState::Up);
    let (h, _) = spawn_job(
        port,
        job.clone(),
        link,
        StreamConfig::default(),
        Box::new(NoMilestones),
    );
    h.join().unwrap()
}

/// Opens `emu`'s port with `p` and starts streaming `job` with the link up: the job's thread,
/// its progress and the link's sender (the link stays up while it is held).
pub fn start_job(
    emu: &EmulatorHandle,
    p: &Profile,
    job: &Job,
    cfg: StreamConfig,
) -> (
    JoinHandle<(PrinterPort, JobOutcome)>,
    watch::Receiver<Progress>,
    watch::Sender<LinkState>,
) {
    let port = PrinterPort::open(emu.device_path(), p, None).unwrap();
    let (tx, link) = watch::channel(LinkState::Up);
    let (h, progress) = spawn_job(port, job.clone(), link, cfg, Box::new(NoMilestones));
    (h, progress, tx)
}

/// Opens `emu`'s port with `p` and streams `job` with the link up.
pub fn print_job(emu: &EmulatorHandle, p: &Profile, job: &Job) -> JobOutcome {
    print_on(PrinterPort::open(emu.device_path(), p, None).unwrap(), job).1
}

/// A virtual printer for `p` on a new pty, its pages written to `out` when given.
pub fn spawn_emulator(p: &Profile, out: Option<&std::path::Path>) -> EmulatorHandle {
    Emulator::spawn(
        p,
        EmulatorOptions {
            baud: None,
            out_dir: out.map(|d| d.to_path_buf()),
            control_socket: None,
        },
    )
    .unwrap()
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

/// Waits until `f` holds, at most [`STREAM_WAIT_MAX`]; `what` names it in the failure.
pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(
            t0.elapsed() < STREAM_WAIT_MAX,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The Data Matrix payload decoded from a PNG the virtual printer wrote, if one decodes.
pub fn decode_data_matrix_png(png: &std::path::Path) -> Option<String> {
    let luma = image::open(png).ok()?.into_luma8();
    let (w, h) = luma.dimensions();
    rxing::helpers::detect_in_luma_with_hints(
        luma.into_raw(),
        w,
        h,
        Some(rxing::BarcodeFormat::DATA_MATRIX),
        &mut rxing::DecodeHints::default(),
    )
    .ok()
    .map(|r| r.getText().to_string())
}
