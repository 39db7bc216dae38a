//! The streamer against the virtual printer on real ptys: full print, link lapse at random
//! offsets, paper out, a vanishing device, a hung printer, exclusive open.

use std::time::{Duration, Instant};

use frank::link::LinkState;
use frank::printer::bitmap::Bitmap;
use frank::printer::compiler::{CLEAR_BUFFERS, Element, Indicium, Job, Label, TextLine, compile};
use frank::printer::emulator::{Emulator, EmulatorHandle, EmulatorOptions, Fault};
use frank::printer::profile::{Profile, shipped};
use frank::printer::streamer::{
    IndiciumPaper, JobOutcome, NoMilestones, OpenError, PrinterFault, PrinterPort, StreamConfig,
    spawn_job,
};
use tokio::sync::watch;

/// Fast line so tests stay quick; pacing scales with it.
const TEST_BAUD: u32 = 921_600;
const WAIT_MAX: Duration = Duration::from_secs(10);

fn profile() -> Profile {
    let mut p = shipped("virtual").unwrap();
    p.serial.baud = TEST_BAUD;
    p
}

fn checker(w: u32, h: u32) -> Bitmap {
    let mut b = Bitmap::new(w, h);
    for y in 0..h {
        for x in 0..w {
            b.set(x, y, (x / 4 + y / 4) % 2 == 0);
        }
    }
    b
}

/// A label whose indicium is a raster image of ~13 KB, so there are many chunks.
fn raster_label() -> Label {
    Label {
        elements: vec![
            Element::Text(TextLine::plain("FRANK TEST LABEL")),
            Element::Indicium(Indicium::Image(checker(320, 320))),
            Element::Address {
                heading: Some("TO:".into()),
                lines: vec!["JANE DOE".into(), "1 MAIN ST".into()],
            },
        ],
        cut: true,
    }
}

fn spawn_emulator(p: &Profile, out: Option<&std::path::Path>) -> EmulatorHandle {
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

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !f() {
        assert!(t0.elapsed() < WAIT_MAX, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// The received stream with the streamer's `DLE EOT n` polls (sent only at command boundaries)
/// taken out, so it can be compared with the job bytes.
fn strip_polls(received: &[u8], job: &Job) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < received.len() {
        let is_poll = received[i..].len() >= 3
            && received[i] == 0x10
            && received[i + 1] == 0x04
            && (1..=4).contains(&received[i + 2])
            && (j >= job.bytes.len()
                || job.is_boundary(j) && job.bytes[j..].get(..3) != Some(&received[i..i + 3]));
        if is_poll {
            i += 3;
            continue;
        }
        out.push(received[i]);
        i += 1;
        j += 1;
    }
    out
}

#[test]
fn full_print_renders_label() {
    let p = profile();
    let dir = tempfile::tempdir().unwrap();
    let emu = spawn_emulator(&p, Some(dir.path()));
    let mut label = raster_label();
    label.elements[1] = Element::Indicium(Indicium::DataMatrix {
        data: b"FRANK-IBI-0001".to_vec(),
        module_px: 4,
    });
    label.elements.push(Element::Barcode {
        data: "9400100000000000000001".into(),
        height_dots: 80,
    });
    let job = compile(&label, &p, 256).unwrap();
    assert!(job.indicium_native);
    let port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    let (_tx, link) = watch::channel(LinkState::Up);
    let (h, progress) = spawn_job(
        port,
        job.clone(),
        link,
        StreamConfig::default(),
        Box::new(NoMilestones),
    );
    let (_port, outcome) = h.join().unwrap();
    assert_eq!(
        outcome,
        JobOutcome::Completed {
            bytes_sent: job.bytes.len(),
            indicium: IndiciumPaper::Printed,
        }
    );
    assert_eq!(progress.borrow().percent(), 100);
    wait_for("the page", || !emu.jobs().is_empty());
    let page = &emu.jobs()[0];
    assert_eq!(
        page.text,
        vec!["FRANK TEST LABEL", "TO:", "JANE DOE", "1 MAIN ST"]
    );
    assert_eq!(page.data_matrix, vec![b"FRANK-IBI-0001".to_vec()]);
    assert_eq!(emu.pngs().len(), 1);
    let png = std::fs::read(&emu.pngs()[0]).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // The Data Matrix drawn in the PNG decodes back to the payload.
    let luma = image::open(&emu.pngs()[0]).unwrap().into_luma8();
    let (w, h) = luma.dimensions();
    let pixels = luma.into_raw();
    // `detect_in_luma` swaps width and height (rxing 0.7.1); the `_with_hints` form does not.
    let detect = |format| {
        rxing::helpers::detect_in_luma_with_hints(
            pixels.clone(),
            w,
            h,
            Some(format),
            &mut rxing::DecodeHints::default(),
        )
    };
    let decoded = detect(rxing::BarcodeFormat::DATA_MATRIX).unwrap();
    assert_eq!(decoded.getText(), "FRANK-IBI-0001");
    assert_eq!(page.barcodes, vec!["9400100000000000000001"]);
    let bars = detect(rxing::BarcodeFormat::CODE_128).unwrap();
    assert_eq!(bars.getText(), "9400100000000000000001");
    // The printer got exactly the job (plus status polls).
    assert_eq!(strip_polls(&emu.received_bytes(), &job), job.bytes);
    assert_eq!(emu.stats().overrun_bytes, 0);
}

/// Start a job, lapse the link once progress reaches `target`, return what happened.
fn lapse_at(p: &Profile, job: &Job, target: usize) -> (JobOutcome, usize, EmulatorHandle) {
    let emu = spawn_emulator(p, None);
    let port = PrinterPort::open(emu.device_path(), p, None).unwrap();
    // target 0: the link is already lapsed when the job starts.
    let first = if target == 0 {
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
    while progress.borrow().bytes_sent < target && !h.is_finished() {
        assert!(t0.elapsed() < WAIT_MAX);
        std::thread::sleep(Duration::from_micros(50));
    }
    tx.send_replace(LinkState::Lapsed);
    let at_flip = progress.borrow().bytes_sent;
    let (_port, outcome) = h.join().unwrap();
    (outcome, at_flip, emu)
}

fn check_abort(job: &Job, outcome: JobOutcome, at_flip: usize, emu: &EmulatorHandle) -> usize {
    let JobOutcome::Aborted {
        bytes_sent,
        indicium,
        cancel_confirmed,
        void_printed,
        ..
    } = outcome
    else {
        panic!("expected Aborted, got {outcome:?}");
    };
    assert!(bytes_sent < job.bytes.len());
    assert!(
        bytes_sent <= at_flip + 256,
        "stopped {} bytes after the lapse",
        bytes_sent - at_flip
    );
    if bytes_sent <= job.indicium.clone().unwrap().start {
        assert_eq!(indicium, IndiciumPaper::NotSent);
    } else {
        assert!(
            matches!(indicium, IndiciumPaper::Printed | IndiciumPaper::Cleared),
            "{indicium:?}"
        );
    }
    assert!(cancel_confirmed && void_printed);
    wait_for("the VOID page", || {
        emu.jobs()
            .iter()
            .any(|j| j.text.iter().any(|t| t == "VOID"))
    });
    let got = strip_polls(&emu.received_bytes(), job);
    assert_eq!(
        &got[..bytes_sent],
        &job.bytes[..bytes_sent],
        "bytes_sent is exact"
    );
    assert_eq!(
        &got[bytes_sent..bytes_sent + CLEAR_BUFFERS.len()],
        &CLEAR_BUFFERS
    );
    assert!(emu.stats().clears >= 1);
    bytes_sent
}

#[test]
fn lapse_at_random_offsets_stops_within_one_chunk() {
    let p = profile();
    let job = compile(&raster_label(), &p, 256).unwrap();
    let mut seed: u64 = 0x5eed_f00d;
    for _ in 0..6 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let target = (seed >> 33) as usize % (job.bytes.len() - 300);
        let (outcome, at_flip, emu) = lapse_at(&p, &job, target);
        check_abort(&job, outcome, at_flip, &emu);
    }
}

#[test]
fn lapse_at_both_edges_of_the_indicium() {
    // 115200 baud: a chunk takes ~22 ms, so the lapse lands before the next chunk even on a
    // busy machine.
    let mut p = profile();
    p.serial.baud = 115_200;
    let job = compile(&raster_label(), &p, 256).unwrap();
    let r = job.indicium.clone().unwrap();
    let last_inside = job.chunks.iter().find(|c| c.end == r.end).unwrap().start;
    // Just before the indicium's last chunk: incomplete, unless the streamer raced one chunk on.
    let (outcome, at_flip, emu) = lapse_at(&p, &job, last_inside);
    let sent = check_abort(&job, outcome, at_flip, &emu);
    assert!(sent == last_inside || sent == r.end, "{sent}");
    assert_eq!(outcome_complete(outcome), sent == r.end);
    // Exactly at the end of the indicium: complete.
    let (outcome, at_flip, emu) = lapse_at(&p, &job, r.end);
    let sent = check_abort(&job, outcome, at_flip, &emu);
    assert!(sent >= r.end);
    assert!(outcome_complete(outcome));
    // Lapsed before the job starts: nothing but the cancel reaches the printer.
    let (outcome, at_flip, emu) = lapse_at(&p, &job, 0);
    assert_eq!(check_abort(&job, outcome, at_flip, &emu), 0);
}

fn outcome_complete(o: JobOutcome) -> bool {
    o.indicium().on_paper()
}

#[test]
fn paper_out_mid_job_is_reported() {
    let p = profile();
    let job = compile(&raster_label(), &p, 256).unwrap();
    let emu = spawn_emulator(&p, None);
    emu.inject(Fault::PaperOutAfter(3000));
    let port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    let (_tx, link) = watch::channel(LinkState::Up);
    let (h, _) = spawn_job(
        port,
        job.clone(),
        link,
        StreamConfig::default(),
        Box::new(NoMilestones),
    );
    let (_port, outcome) = h.join().unwrap();
    let JobOutcome::Faulted {
        fault, bytes_sent, ..
    } = outcome
    else {
        panic!("expected Faulted, got {outcome:?}");
    };
    assert_eq!(fault, PrinterFault::PaperOut);
    assert!(bytes_sent >= 3000 && bytes_sent < job.bytes.len());
    assert!(emu.stats().paper_out);
}

#[test]
fn vanishing_device_is_reported() {
    let p = profile();
    let job = compile(&raster_label(), &p, 256).unwrap();
    let emu = spawn_emulator(&p, None);
    let port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    let (_tx, link) = watch::channel(LinkState::Up);
    let (h, progress) = spawn_job(
        port,
        job.clone(),
        link,
        StreamConfig::default(),
        Box::new(NoMilestones),
    );
    wait_for("progress", || {
        progress.borrow().bytes_sent >= 2000 || h.is_finished()
    });
    emu.inject(Fault::Vanish);
    let (_port, outcome) = h.join().unwrap();
    assert!(
        matches!(
            outcome,
            JobOutcome::Faulted {
                fault: PrinterFault::PortVanished | PrinterFault::StatusTimeout,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(outcome.bytes_sent() < job.bytes.len());
    assert!(emu.stats().vanished);
}

#[test]
fn silent_printer_times_out() {
    let p = profile();
    let job = compile(&raster_label(), &p, 256).unwrap();
    let emu = spawn_emulator(&p, None);
    emu.inject(Fault::Silent);
    let port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    let (_tx, link) = watch::channel(LinkState::Up);
    let cfg = StreamConfig {
        status_reply_timeout_ms: 200,
        clear_reply_timeout_ms: 200,
        write_timeout_ms: 500,
        ..StreamConfig::default()
    };
    let (h, _) = spawn_job(port, job, link, cfg, Box::new(NoMilestones));
    let (_port, outcome) = h.join().unwrap();
    assert!(
        matches!(
            outcome,
            JobOutcome::Faulted {
                fault: PrinterFault::StatusTimeout | PrinterFault::WriteTimeout,
                ..
            }
        ),
        "{outcome:?}"
    );
}

#[test]
fn second_open_fails_while_a_job_runs() {
    let p = profile();
    let job = compile(&raster_label(), &p, 256).unwrap();
    let emu = spawn_emulator(&p, None);
    let port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    let (tx, link) = watch::channel(LinkState::Up);
    let (h, progress) = spawn_job(
        port,
        job,
        link,
        StreamConfig::default(),
        Box::new(NoMilestones),
    );
    wait_for("progress", || progress.borrow().bytes_sent > 0);
    let second = PrinterPort::open(emu.device_path(), &p, None);
    assert!(matches!(second, Err(OpenError::Busy { .. })), "{second:?}");
    tx.send_replace(LinkState::Closed);
    let _ = h.join().unwrap();
    // Once the job is done and the port closed, it opens again.
    assert!(PrinterPort::open(emu.device_path(), &p, None).is_ok());
}

#[test]
fn nul_init_profile_finishes_the_command_then_resets() {
    let mut p = shipped("generic-80mm").unwrap();
    p.serial.baud = 115_200;
    let job = compile(&raster_label(), &p, 256).unwrap();
    let r = job.indicium.clone().unwrap();
    // Lapse inside the raster indicium: the cancel must NUL-finish the band, then ESC @.
    let (outcome, _, emu) = lapse_at(&p, &job, r.start + 1000);
    let JobOutcome::Aborted {
        bytes_sent,
        indicium,
        cancel_confirmed,
        void_printed,
        ..
    } = outcome
    else {
        panic!("expected Aborted, got {outcome:?}");
    };
    // No process IDs: indicium bytes accepted by the port count as printed.
    assert_eq!(indicium, IndiciumPaper::AssumedPrinted);
    assert!(cancel_confirmed && void_printed);
    let pad = job.remaining_in_command(bytes_sent);
    wait_for("the VOID page", || {
        emu.jobs()
            .iter()
            .any(|j| j.text.iter().any(|t| t == "VOID"))
    });
    let got = strip_polls(&emu.received_bytes(), &job);
    assert_eq!(&got[..bytes_sent], &job.bytes[..bytes_sent]);
    assert!(got[bytes_sent..bytes_sent + pad].iter().all(|b| *b == 0));
    assert_eq!(&got[bytes_sent + pad..bytes_sent + pad + 2], &[0x1b, 0x40]);
}

#[test]
fn dtr_dsr_profile_refuses_a_port_without_modem_lines() {
    let p = shipped("epson-tm-t88v").unwrap();
    let emu = spawn_emulator(&profile(), None);
    let r = PrinterPort::open(emu.device_path(), &p, None);
    assert!(matches!(r, Err(OpenError::NoModemLines { .. })), "{r:?}");
}

#[test]
fn cover_open_over_the_control_socket() {
    use std::io::{BufRead, BufReader, Write};
    let p = profile();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("ctl.sock");
    let emu = Emulator::spawn(
        &p,
        EmulatorOptions {
            control_socket: Some(sock.clone()),
            ..EmulatorOptions::default()
        },
    )
    .unwrap();
    let mut s = std::os::unix::net::UnixStream::connect(&sock).unwrap();
    s.write_all(b"cover_open\nbogus\n").unwrap();
    let mut lines = BufReader::new(s.try_clone().unwrap()).lines();
    assert_eq!(lines.next().unwrap().unwrap(), "ok");
    assert!(lines.next().unwrap().unwrap().starts_with("error"));
    let job = compile(&raster_label(), &p, 256).unwrap();
    let port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    let (_tx, link) = watch::channel(LinkState::Up);
    let (h, _) = spawn_job(
        port,
        job,
        link,
        StreamConfig::default(),
        Box::new(NoMilestones),
    );
    let (_port, outcome) = h.join().unwrap();
    assert!(
        matches!(
            outcome,
            JobOutcome::Faulted {
                fault: PrinterFault::CoverOpen,
                ..
            }
        ),
        "{outcome:?}"
    );
    s.write_all(b"status\n").unwrap();
    let status = lines.next().unwrap().unwrap();
    assert!(status.contains("cover_open=true"), "{status}");
}
