//! The streamer against the virtual printer on real ptys: full print, link lapse at random
//! offsets, paper out, a vanishing device, a hung printer, exclusive open.
//!
//! Long on purpose: one scenario per test; shared steps live in `tests/printer_support`.

mod printer_support;
use printer_support::{spawn_emulator, wait_until as wait_for};

use std::time::Duration;

use frank::link::LinkState;
use frank::printer::bitmap::Bitmap;
use std::sync::{Arc, Mutex};

use frank::printer::compiler::{
    CLEAR_BUFFERS, CompileOptions, Element, Indicium, Job, Label, Layout, PROCESS_ID_COMMAND_BYTES,
    TextLine, compile, compile_with,
};
use frank::printer::emulator::{Emulator, EmulatorHandle, EmulatorOptions, Fault};
use frank::printer::profile::{Profile, shipped};
use frank::printer::streamer::{
    AbortCause, IndiciumPaper, JobOutcome, Milestone, Milestones, NoMilestones, OpenError,
    PrinterFault, PrinterPort, ResyncMode, StreamConfig, resync, resync_nul_bytes, spawn_job,
};
use tokio::sync::watch;

/// Fast line so tests stay quick; pacing scales with it.
const TEST_BAUD: u32 = 921_600;

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
    let (h, progress, _tx) = printer_support::start_job(&emu, &p, &job, StreamConfig::default());
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
    let (outcome, at_flip) = printer_support::stream_until_lapse(&emu, p, job, target);
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
    // Inside the indicium, before its process ID went out: NULs finish the command cut off
    // and the indicium's ID marks what was sent, then the clear.
    let mut at = bytes_sent;
    let r = job.indicium.clone().unwrap();
    let pid = job.indicium_pid.unwrap();
    let pad = job.remaining_in_command(bytes_sent);
    if bytes_sent > r.start
        && bytes_sent < pid.offset + PROCESS_ID_COMMAND_BYTES
        && (pad <= 256 || bytes_sent >= r.end)
    {
        assert!(got[at..at + pad].iter().all(|b| *b == 0));
        at += pad;
        assert_eq!(&got[at..at + PROCESS_ID_COMMAND_BYTES], &pid.id.command());
        at += PROCESS_ID_COMMAND_BYTES;
    }
    assert_eq!(&got[at..at + CLEAR_BUFFERS.len()], &CLEAR_BUFFERS);
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
    // On paper exactly when the printer answered the indicium's process ID.
    let pid = job.indicium_pid.unwrap().id;
    assert_eq!(outcome_complete(outcome), emu.answered_ids().contains(&pid));
    // At the end of the indicium: all of it sent; on paper iff its ID came back.
    let (outcome, at_flip, emu) = lapse_at(&p, &job, r.end);
    let sent = check_abort(&job, outcome, at_flip, &emu);
    assert!(sent >= r.end);
    assert_eq!(outcome_complete(outcome), emu.answered_ids().contains(&pid));
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
    let outcome = printer_support::print_job(&emu, &p, &job);
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
fn paper_out_arrives_by_automatic_status_back_without_polling() {
    // No DLE EOT at all: only the printer's own GS a blocks can tell the streamer.
    let mut p = profile();
    p.status.dle_eot = false;
    assert!(p.status.asb);
    let job = compile(&raster_label(), &p, 256).unwrap();
    assert!(job.bytes.len() > 12_000);
    let emu = spawn_emulator(&p, None);
    emu.inject(Fault::PaperOutAfter(3000));
    let port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    let (_tx, link) = watch::channel(LinkState::Up);
    let cfg = StreamConfig {
        status_poll_interval_bytes: usize::MAX,
        ..StreamConfig::default()
    };
    let (h, _) = spawn_job(port, job.clone(), link, cfg, Box::new(NoMilestones));
    let (_port, outcome) = h.join().unwrap();
    let JobOutcome::Faulted {
        fault, bytes_sent, ..
    } = outcome
    else {
        panic!("expected Faulted, got {outcome:?}");
    };
    assert_eq!(fault, PrinterFault::PaperOut);
    // Seen within the pacer's lead of the paper end, not at the job's end.
    let lead = p.receive_buffer_bytes as usize / 2 + 2 * 256;
    assert!(
        bytes_sent >= 3000 && bytes_sent <= 3000 + lead,
        "paper out seen after {bytes_sent} bytes"
    );
    assert_eq!(emu.stats().status_queries, 0);
    // One block when enabled, one when the paper ran out.
    assert!(emu.stats().asb_blocks >= 2, "{:?}", emu.stats());
}

#[test]
fn names_in_any_code_page_of_the_profile_round_trip_through_the_printer() {
    let p = profile();
    let lines = [
        "José Müller",
        "Zoë Ñandú",
        "Øre 5 € → no",
        "Straße 12, Café Ø€",
    ];
    // The arrow is in none of the virtual printer's pages: refused, never printed as '?'.
    let refused = Label {
        elements: vec![Element::Text(TextLine::plain(lines[2]))],
        cut: true,
    };
    assert!(matches!(
        compile(&refused, &p, 256),
        Err(frank::printer::compiler::CompileError::Unprintable { ch: '→', .. })
    ));
    assert_eq!(frank::printer::codepage::printable(&p, "Łukasz"), Err('Ł'));
    let printed = [lines[0], lines[1], "Øre 5 €", lines[3]];
    let label = Label {
        elements: vec![
            Element::Address {
                heading: Some("FROM:".into()),
                lines: vec![printed[0].into(), printed[2].into()],
            },
            Element::Address {
                heading: Some("TO:".into()),
                lines: vec![printed[1].into(), printed[3].into()],
            },
        ],
        cut: true,
    };
    let job = compile(&label, &p, 256).unwrap();
    assert!(!job.bytes.contains(&b'?'));
    // CP437 has é ü ë Ñ ú ß; Ø and € need another table: CP1252 (ESC t 16), the lowest.
    assert!(job.bytes.windows(3).any(|w| w == [0x1b, 0x74, 16]));
    let emu = spawn_emulator(&p, None);
    let outcome = printer_support::print_job(&emu, &p, &job);
    assert!(
        matches!(outcome, JobOutcome::Completed { .. }),
        "{outcome:?}"
    );
    wait_for("the page", || !emu.jobs().is_empty());
    let text = emu.jobs()[0].text.clone();
    assert_eq!(
        text,
        vec![
            "FROM:", printed[0], printed[2], "TO:", printed[1], printed[3]
        ]
    );
    // Drawn, not blank: every line's glyphs put dots on the page.
    assert!(emu.jobs()[0].image.black_count() > 600);
}

#[test]
fn vanishing_device_is_reported() {
    let p = profile();
    let job = compile(&raster_label(), &p, 256).unwrap();
    let emu = spawn_emulator(&p, None);
    let (h, progress, _tx) = printer_support::start_job(&emu, &p, &job, StreamConfig::default());
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
    let outcome = printer_support::print_job(&emu, &p, &job);
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

/// A 4 × 6 in postage-style label: the Data Matrix at the top, text below it.
fn postage_label(payload: &str) -> Label {
    let mut elements = vec![
        Element::Text(TextLine::plain("USPS PRIORITY MAIL")),
        Element::Indicium(Indicium::DataMatrix {
            data: payload.as_bytes().to_vec(),
            module_px: 6,
        }),
    ];
    for i in 0..12 {
        let mut t = TextLine::plain(&format!("LINE {i} OF THE ADDRESS BLOCK"));
        t.height_mul = 2;
        elements.push(Element::Text(t));
    }
    Label {
        elements,
        cut: true,
    }
}

fn rotated_job(p: &Profile, payload: &str) -> Job {
    compile_with(
        &postage_label(payload),
        p,
        &CompileOptions {
            chunk_bytes_max: 256,
            job_seq: 7,
            layout: Layout::Rotated180,
        },
    )
    .unwrap()
}

/// The Data Matrix payloads decodable in the emulator's PNGs.
fn decoded_indicia(emu: &EmulatorHandle) -> Vec<String> {
    emu.pngs()
        .iter()
        .filter_map(|png| printer_support::decode_data_matrix_png(png))
        .collect()
}

/// Flips the link when a milestone is reached, and records them all.
struct LapseOn {
    at: Option<Milestone>,
    link: watch::Sender<LinkState>,
    seen: Arc<Mutex<Vec<Milestone>>>,
    refuse: Option<Milestone>,
}

impl Milestones for LapseOn {
    fn reached(&mut self, m: Milestone) -> Result<(), String> {
        self.seen.lock().unwrap().push(m);
        if Some(m) == self.at {
            self.link.send_replace(LinkState::Lapsed);
        }
        if Some(m) == self.refuse {
            return Err("journal full".into());
        }
        Ok(())
    }
}

/// Run `job` with a lapse at milestone `at` (or a refusal at `refuse`).
fn run_with(
    p: &Profile,
    job: &Job,
    at: Option<Milestone>,
    refuse: Option<Milestone>,
    dir: &std::path::Path,
) -> (JobOutcome, Vec<Milestone>, EmulatorHandle) {
    let emu = spawn_emulator(p, Some(dir));
    let port = PrinterPort::open(emu.device_path(), p, None).unwrap();
    let (tx, link) = watch::channel(LinkState::Up);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let obs = LapseOn {
        at,
        link: tx,
        seen: seen.clone(),
        refuse,
    };
    let (h, _) = spawn_job(
        port,
        job.clone(),
        link,
        StreamConfig::default(),
        Box::new(obs),
    );
    let (_port, outcome) = h.join().unwrap();
    let seen = seen.lock().unwrap().clone();
    (outcome, seen, emu)
}

fn wait_pages(emu: &EmulatorHandle, n: usize) {
    wait_for("the pages", || emu.pngs().len() >= n);
}

#[test]
fn completed_only_when_the_end_id_arrives_with_all_milestones() {
    let mut p = profile();
    p.serial.baud = 115_200;
    let dir = tempfile::tempdir().unwrap();
    let job = rotated_job(&p, "FRANK-IBI-0007");
    let (outcome, seen, emu) = run_with(&p, &job, None, None, dir.path());
    assert_eq!(
        outcome,
        JobOutcome::Completed {
            bytes_sent: job.bytes.len(),
            indicium: IndiciumPaper::Printed
        }
    );
    assert_eq!(
        seen,
        vec![
            Milestone::IndiciumSending,
            Milestone::IndiciumSent,
            Milestone::IndiciumPrinted,
            Milestone::EndPrinted
        ]
    );
    // Completed means printed: the page is already cut.
    assert_eq!(emu.jobs().len(), 1);
    assert_eq!(
        emu.answered_ids(),
        vec![job.indicium_pid.unwrap().id, job.end_pid.unwrap().id]
    );
    wait_pages(&emu, 1);
    assert_eq!(decoded_indicia(&emu), vec!["FRANK-IBI-0007".to_string()]);
    // Rotated 180°: the text lines print last line first.
    let page = &emu.jobs()[0];
    assert_eq!(page.text.first().unwrap(), "LINE 11 OF THE ADDRESS BLOCK");
    assert_eq!(page.text.last().unwrap(), "USPS PRIORITY MAIL");
}

#[test]
fn lapse_before_the_indicium_id_clears_it_off_the_paper() {
    let mut p = profile();
    p.serial.baud = 115_200;
    let dir = tempfile::tempdir().unwrap();
    let job = rotated_job(&p, "FRANK-IBI-0008");
    // All indicium bytes are out, but the engine is still printing the lines before it.
    let (outcome, seen, emu) = run_with(&p, &job, Some(Milestone::IndiciumSent), None, dir.path());
    let JobOutcome::Aborted {
        indicium,
        cancel_confirmed,
        cause,
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(indicium, IndiciumPaper::Cleared);
    assert!(!indicium.on_paper() && cancel_confirmed);
    assert_eq!(cause, AbortCause::Link);
    assert!(!seen.contains(&Milestone::IndiciumPrinted));
    wait_pages(&emu, 1);
    let page = emu.jobs().into_iter().last().unwrap();
    assert!(page.text.iter().any(|t| t == "VOID"), "{:?}", page.text);
    assert!(page.data_matrix.is_empty());
    assert!(decoded_indicia(&emu).is_empty());
    // The cleared ID is never answered, even later.
    std::thread::sleep(Duration::from_millis(300));
    assert!(!emu.answered_ids().contains(&job.indicium_pid.unwrap().id));
}

#[test]
fn lapse_after_the_indicium_id_leaves_it_printed() {
    let mut p = profile();
    p.serial.baud = 115_200;
    let dir = tempfile::tempdir().unwrap();
    let job = rotated_job(&p, "FRANK-IBI-0009");
    let (outcome, seen, emu) =
        run_with(&p, &job, Some(Milestone::IndiciumPrinted), None, dir.path());
    assert!(
        matches!(
            outcome,
            JobOutcome::Aborted {
                indicium: IndiciumPaper::Printed,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert!(!seen.contains(&Milestone::EndPrinted));
    wait_pages(&emu, 1);
    assert_eq!(decoded_indicia(&emu), vec!["FRANK-IBI-0009".to_string()]);
}

#[test]
fn a_refusing_journal_keeps_the_indicium_off_the_line() {
    let mut p = profile();
    p.serial.baud = 115_200;
    let dir = tempfile::tempdir().unwrap();
    let job = rotated_job(&p, "FRANK-IBI-0010");
    let (outcome, seen, emu) =
        run_with(&p, &job, None, Some(Milestone::IndiciumSending), dir.path());
    let JobOutcome::Aborted {
        indicium,
        cause,
        bytes_sent,
        ..
    } = outcome
    else {
        panic!("{outcome:?}");
    };
    assert_eq!(
        (indicium, cause),
        (IndiciumPaper::NotSent, AbortCause::Milestone)
    );
    // Stopped just before the first indicium command that marks paper (a native symbol's
    // print command: its store before it prints nothing).
    assert_eq!(bytes_sent, job.indicium_marks_at.unwrap());
    assert_eq!(seen, vec![Milestone::IndiciumSending]);
    let got = strip_polls(&emu.received_bytes(), &job);
    assert_eq!(&got[..bytes_sent], &job.bytes[..bytes_sent]);
    assert!(
        !got[bytes_sent..]
            .windows(6)
            .any(|w| w == &job.bytes[bytes_sent..bytes_sent + 6])
    );
}

#[test]
fn paper_out_mid_print_stops_the_engine_and_clears_the_indicium() {
    let mut p = profile();
    p.serial.baud = 115_200;
    let dir = tempfile::tempdir().unwrap();
    let job = rotated_job(&p, "FRANK-IBI-0011");
    let emu = spawn_emulator(&p, Some(dir.path()));
    // Paper ends once the whole job is received: the engine stops a few lines in.
    emu.inject(Fault::PaperOutAfter(job.bytes.len() as u64));
    let outcome = printer_support::print_job(&emu, &p, &job);
    assert!(
        matches!(
            outcome,
            JobOutcome::Faulted {
                fault: PrinterFault::PaperOut,
                indicium: IndiciumPaper::Cleared,
                ..
            }
        ),
        "{outcome:?}"
    );
    // What printed stays printed, nothing after it: tear it off and look.
    emu.tear_off();
    wait_pages(&emu, 1);
    let page = &emu.jobs()[0];
    assert!(page.image.height_px() > 0);
    assert!(page.data_matrix.is_empty());
    assert!(decoded_indicia(&emu).is_empty());
    // Reloading paper prints nothing more: the buffer was cleared.
    emu.inject(Fault::PaperIn);
    std::thread::sleep(Duration::from_millis(300));
    assert!(emu.answered_ids().is_empty());
    assert_eq!(emu.jobs().len(), 1);
}

/// Write the first `n` bytes of `job` straight to the device, as a counter that died would.
fn abandon(emu: &EmulatorHandle, job: &Job, n: usize) {
    use std::io::Write;
    let mut dev = std::fs::OpenOptions::new()
        .write(true)
        .open(emu.device_path())
        .unwrap();
    dev.write_all(&job.bytes[..n]).unwrap();
    dev.flush().unwrap();
    let want = n as u64;
    wait_for("the abandoned bytes", || emu.stats().received_total >= want);
}

#[test]
fn resync_after_a_job_abandoned_mid_raster_band() {
    for (id, pids) in [("virtual", true), ("generic-80mm", false)] {
        let mut p = shipped(id).unwrap();
        p.serial.baud = 115_200;
        let dir = tempfile::tempdir().unwrap();
        let emu = spawn_emulator(&p, Some(dir.path()));
        let old = compile(&raster_label(), &p, 256).unwrap();
        let r = old.indicium.clone().unwrap();
        // Cut off inside the indicium's first raster band.
        abandon(&emu, &old, r.start + 500);
        let mut port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
        let report = resync(&mut port, &StreamConfig::default(), ResyncMode::Clear).unwrap();
        assert_eq!(report.settled, pids, "{id}: {report:?}");
        assert_eq!(report.clear_confirmed, pids, "{id}");
        assert_eq!(report.nul_bytes, resync_nul_bytes(&p));
        assert!(report.earlier_ids.is_empty(), "{id}: {report:?}");
        // The next job prints as itself.
        let mut label = raster_label();
        label.elements[0] = Element::Text(TextLine::plain("NEXT JOB"));
        let job = compile_with(
            &label,
            &p,
            &CompileOptions {
                job_seq: 1,
                ..CompileOptions::default()
            },
        )
        .unwrap();
        let (_port, outcome) = printer_support::print_on(port, &job);
        assert!(
            matches!(outcome, JobOutcome::Completed { .. }),
            "{id}: {outcome:?}"
        );
        wait_for(&format!("{id}: the page"), || !emu.jobs().is_empty());
        let page = emu.jobs().into_iter().last().unwrap();
        // What the dead job had complete may have printed before it (nul_init cannot clear);
        // the next job's lines come out whole and in order, none swallowed as image data.
        let want = ["NEXT JOB", "TO:", "JANE DOE", "1 MAIN ST"].map(String::from);
        assert!(page.text.ends_with(&want), "{id}: {:?}", page.text);
        assert_eq!(emu.stats().overrun_bytes, 0, "{id}");
    }
}

/// A counter killed after writing a whole job: the printer prints it and answers its process
/// IDs while no one has the port open. The restarted counter's port keeps those replies — its
/// open and its status polls read them instead of flushing the input — and its resync reports
/// them, so the dead job's indicium and end are known to have printed. Issue 12.
#[test]
fn process_ids_answered_while_no_one_listened_reach_the_next_resync() {
    let mut p = shipped("virtual").unwrap();
    p.serial.baud = 115_200;
    let dir = tempfile::tempdir().unwrap();
    let emu = spawn_emulator(&p, Some(dir.path()));
    let old = compile(&raster_label(), &p, 256).unwrap();
    let (ind, end) = (old.indicium_pid.unwrap().id, old.end_pid.unwrap().id);
    abandon(&emu, &old, old.bytes.len());
    wait_for("both IDs answered", || emu.answered_ids().len() >= 2);
    let mut port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    // A status poll before the resync does not lose them.
    assert!(port.status_now(Duration::from_millis(500)).unwrap());
    let report = resync(&mut port, &StreamConfig::default(), ResyncMode::Finish).unwrap();
    assert!(report.settled, "{report:?}");
    // Every ID the printer sent while no one listened, in order (a raster indicium's ID
    // follows each of its bands), the indicium's and the end's among them.
    let mut sent = emu.answered_ids();
    sent.retain(|id| *id != frank::printer::compiler::RESYNC_PROCESS_ID);
    assert_eq!(report.earlier_ids, sent, "{report:?}");
    assert!(report.earlier_ids.contains(&ind), "{report:?}");
    assert_eq!(report.earlier_ids.last(), Some(&end), "{report:?}");
}

/// More process IDs waiting than the port keeps (a long-idle port collects late ones): the
/// resync still hears its own ID come back, and reports the newest heard ones first.
#[test]
fn a_resync_settles_however_many_ids_the_port_heard_before_it() {
    let mut p = shipped("virtual").unwrap();
    p.serial.baud = 115_200;
    let emu = spawn_emulator(&p, None);
    let n = frank::printer::streamer::PROCESS_IDS_KEPT_MAX + 6;
    let ids: Vec<frank::printer::compiler::ProcessId> = (0..n)
        .map(|i| {
            let d = format!("{:04}", 1000 + i);
            frank::printer::compiler::ProcessId(d.as_bytes().try_into().unwrap())
        })
        .collect();
    {
        use std::io::Write;
        let mut dev = std::fs::OpenOptions::new()
            .write(true)
            .open(emu.device_path())
            .unwrap();
        for id in &ids {
            dev.write_all(&id.command()).unwrap();
        }
        dev.flush().unwrap();
    }
    wait_for("every ID answered", || emu.answered_ids().len() >= n);
    let mut port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    let report = resync(&mut port, &StreamConfig::default(), ResyncMode::Finish).unwrap();
    assert!(report.settled, "{report:?}");
    let kept = frank::printer::streamer::PROCESS_IDS_KEPT_MAX;
    assert_eq!(report.earlier_ids, ids[n - kept..], "{report:?}");
}

/// A raster indicium prints in bands, and on a process-ID profile each band's ID comes back
/// once that band is on paper — often before the streamer has sent the indicium's last byte.
/// "Printed" then already says the indicium is on paper; the streamer must not report "sent"
/// after it (the journal refuses a milestone out of order and the job would stop with the
/// label printing fine).
#[test]
fn a_banded_indicium_printed_before_its_last_byte_was_sent_stays_in_order() {
    let p = profile();
    let job = compile_with(
        &raster_label(),
        &p,
        &CompileOptions {
            chunk_bytes_max: 256,
            job_seq: 9,
            layout: Layout::AsGiven,
        },
    )
    .unwrap();
    assert!(job.indicium_pid.is_some(), "a process-ID profile");
    let dir = tempfile::tempdir().unwrap();
    let (outcome, seen, _emu) = run_with(&p, &job, None, None, dir.path());
    assert!(outcome_complete(outcome), "{outcome:?} {seen:?}");
    let at = |m: Milestone| seen.iter().position(|s| *s == m);
    let printed = at(Milestone::IndiciumPrinted).expect("the indicium's ID came back");
    if let Some(sent) = at(Milestone::IndiciumSent) {
        assert!(sent < printed, "sent after printed: {seen:?}");
    }
    assert_eq!(seen.first(), Some(&Milestone::IndiciumSending));
    assert_eq!(seen.last(), Some(&Milestone::EndPrinted));
}

/// The virtual printer on 120 mm die-cut labels with a 3 mm gap.
fn gap_profile(commands: frank::printer::profile::LabelCommands) -> Profile {
    let mut p = profile();
    p.media_kind = frank::printer::profile::MediaKind::Gap;
    p.label_length_mm = Some(120.0);
    p.gap_mm = 3.0;
    p.label_commands = commands;
    p
}

/// Prints `n` labels one after the other on one port; returns the pages.
fn print_labels(
    p: &Profile,
    n: usize,
) -> (
    Vec<frank::printer::emulator::render::RenderedJob>,
    EmulatorHandle,
) {
    let emu = spawn_emulator(p, None);
    let mut port = PrinterPort::open(emu.device_path(), p, None).unwrap();
    for i in 0..n {
        let label = postage_label(&format!("FRANK-LABEL-{i:02}"));
        let opts = CompileOptions {
            job_seq: i as u32,
            layout: Layout::Rotated180,
            ..CompileOptions::default()
        };
        let job = compile_with(&label, p, &opts).unwrap();
        let (back, outcome) = printer_support::print_on(port, &job);
        assert!(
            matches!(outcome, JobOutcome::Completed { .. }),
            "label {i}: {outcome:?}"
        );
        port = back;
    }
    wait_for("the pages", || emu.jobs().len() >= n);
    (emu.jobs(), emu)
}

#[test]
fn ten_gap_labels_in_a_row_all_start_at_a_label_top_and_are_cut_in_the_gap() {
    use frank::printer::profile::LabelCommands;
    let p = gap_profile(LabelCommands::EpsonFsL);
    let (l, g) = p.label_rows().unwrap();
    let (pages, emu) = print_labels(&p, 10);
    assert_eq!(pages.len(), 10);
    for (i, page) in pages.iter().enumerate() {
        let fit = page.label.unwrap();
        assert_eq!(fit.start_offset_rows, 0, "label {i}: {fit:?}");
        assert!(
            (l..l + g).contains(&fit.cut_offset_rows),
            "label {i}: {fit:?}"
        );
        assert!(!fit.misaligned, "label {i}: {fit:?}");
        assert_eq!(page.data_matrix.len(), 1, "label {i}");
    }
    assert_eq!(emu.stats().misaligned_labels, 0);

    // Without the label commands the same labels drift: the emulator reports it.
    let p = gap_profile(LabelCommands::None);
    let (pages, emu) = print_labels(&p, 10);
    assert_eq!(pages.len(), 10);
    assert!(emu.stats().misaligned_labels >= 9, "{:?}", emu.stats());
}

/// A postage top band ([`Element::IndiciumBlock`]) as the counter prints it (rotated 180°).
fn top_band_job(p: &Profile, payload: &str) -> Job {
    let label = Label {
        elements: vec![
            Element::IndiciumBlock {
                symbol: Indicium::DataMatrix {
                    data: payload.as_bytes().to_vec(),
                    module_px: 3,
                },
                lines: ["US POSTAGE", "$0.73", "2027-03-01", "FRK10000001 #9"]
                    .into_iter()
                    .map(TextLine::plain)
                    .collect(),
            },
            Element::Address {
                heading: Some("TO:".into()),
                lines: (0..10).map(|i| format!("ADDRESS LINE {i}")).collect(),
            },
        ],
        cut: true,
    };
    let opts = CompileOptions {
        chunk_bytes_max: 256,
        job_seq: 3,
        layout: Layout::Rotated180,
    };
    compile_with(&label, p, &opts).unwrap()
}

#[test]
fn a_page_mode_band_prints_whole_and_decodes() {
    let mut p = profile();
    p.serial.baud = 115_200;
    assert!(p.page_mode);
    let dir = tempfile::tempdir().unwrap();
    let job = top_band_job(&p, "FRANK-IBI-0020");
    let (outcome, seen, emu) = run_with(&p, &job, None, None, dir.path());
    assert!(outcome_complete(outcome), "{seen:?}");
    wait_pages(&emu, 1);
    assert_eq!(decoded_indicia(&emu), vec!["FRANK-IBI-0020".to_string()]);
    let page = emu.jobs().into_iter().last().unwrap();
    assert_eq!(page.data_matrix, vec![b"FRANK-IBI-0020".to_vec()]);
    // Printed turned by 180°: the paper meets the band's last line first.
    let mut text = page.text.clone();
    text.reverse();
    assert_eq!(
        &text[..4],
        &["US POSTAGE", "$0.73", "2027-03-01", "FRK10000001 #9"]
    );
}

#[test]
fn a_page_mode_band_stopped_before_its_ff_leaves_nothing_of_it_on_paper() {
    let mut p = profile();
    p.serial.baud = 115_200;
    let job = top_band_job(&p, "FRANK-IBI-0021");
    let r = job.indicium.clone().unwrap();
    assert_eq!(job.indicium_marks_at, Some(r.end - 1));
    // The lapse comes right before FF (the journal's `indicium_sending`): the whole band, symbol
    // included, is in the printer's page buffer, unprinted.
    let dir = tempfile::tempdir().unwrap();
    let (outcome, _, emu) = run_with(&p, &job, Some(Milestone::IndiciumSending), None, dir.path());
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
    assert_eq!(bytes_sent, r.end - 1, "all of the band but its FF");
    assert_eq!(indicium, IndiciumPaper::NotSent);
    assert!(cancel_confirmed && void_printed);
    wait_for("the VOID page", || {
        emu.jobs()
            .iter()
            .any(|j| j.text.first().is_some_and(|t| t == "VOID"))
    });
    for page in emu.jobs() {
        assert!(page.data_matrix.is_empty(), "{:?}", page.text);
        assert!(
            !page.text.iter().any(|t| t == "US POSTAGE"),
            "{:?}",
            page.text
        );
    }
    // Nothing on paper decodes: not the band (never printed), not the VOID label's symbol.
    for page in emu.jobs() {
        let png = page.image.to_png().unwrap();
        assert!(frank::indicium::verify::payload_from_png(&png).is_err());
    }
}
