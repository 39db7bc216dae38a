//! Issue 18, Zebra ZPL end to end: golden ZPL per shipped ZPL profile; every kind printed through
//! the streamer on the virtual ZPL printer (a real pty), the PNG decoded and verified; link
//! lapses at random byte offsets leave a label on paper exactly when `^XZ` was sent; paper out
//! and head open reported through `~HS`.

mod indicium_support;
mod printer_support;

use std::time::Duration;

use frank::indicium::face::{Addresses, face};
use frank::indicium::signer::{KeySigner, Signer, build_and_sign};
use frank::indicium::verify::{VendorKeys, payload_from_png, verify_payload};
use frank::link::LinkState;
use frank::printer::compiler::{CompileOptions, Layout, compile, compile_with};
use frank::printer::emulator::{EmulatorHandle, Fault};
use frank::printer::profile::{Profile, shipped, shipped_zpl_ids};
use frank::printer::streamer::{
    IndiciumPaper, JobOutcome, Milestone, PrinterFault, PrinterPort, RecordMilestones, ResyncMode,
    StreamConfig, resync, spawn_job,
};
use indicium_support::*;
use printer_support::{
    reference_label, spawn_emulator as spawn, stream_until_lapse as stream, wait_until as wait_for,
};
use tokio::sync::watch;

const TEST_BAUD: u32 = 230_400;

fn profile() -> Profile {
    let mut p = shipped("zebra-virtual").unwrap();
    p.serial.baud = TEST_BAUD;
    p
}

#[test]
fn golden_zpl_per_profile() {
    for id in shipped_zpl_ids() {
        let profile = shipped(id).unwrap();
        let job = compile(&reference_label(), &profile, 256).unwrap();
        let r = job.indicium.clone().unwrap();
        let xz = job.indicium_marks_at.unwrap();
        // One format; ^XZ is the last command; the indicium runs from its ^FO to ^XZ's end.
        assert!(job.bytes.starts_with(b"~JA^XA^CI28^PW"), "{id}");
        assert!(job.bytes.ends_with(b"^XZ"), "{id}");
        assert_eq!((r.end, xz + 3), (job.bytes.len(), job.bytes.len()));
        assert_eq!(job.bytes.windows(3).filter(|w| w == b"^XA").count(), 1);
        assert!(job.is_boundary(xz) && job.chunks.iter().any(|c| c.start == xz));
        assert!(job.indicium_native);
        let head = format!(
            "profile: {id}\nbytes: {}\nchunks: {}\nindicium: {}..{} native={} marks_at={}\n",
            job.bytes.len(),
            job.chunks.len(),
            r.start,
            r.end,
            job.indicium_native,
            xz
        );
        // ZPL is text: one command a line for reading.
        let text = String::from_utf8(job.bytes.clone())
            .unwrap()
            .replace('^', "\n^")
            .replace('~', "\n~");
        insta::assert_snapshot!(format!("zpl_{id}"), head + &text);
    }
}

#[test]
fn graphic_indicium_where_the_profile_says_so() {
    let mut p = profile();
    p.zpl_indicium = frank::printer::profile::ZplIndicium::Graphic;
    let job = compile(&reference_label(), &p, 256).unwrap();
    let r = job.indicium.clone().unwrap();
    assert!(!job.indicium_native);
    assert!(job.bytes[r.clone()].starts_with(b"^FO"));
    assert!(job.bytes[r].windows(5).any(|w| w == b"^GFA,"));
    let emu = spawn(&p, None);
    let (outcome, _) = stream(&emu, &p, &job, usize::MAX);
    assert!(
        matches!(outcome, JobOutcome::Completed { .. }),
        "{outcome:?}"
    );
    wait_pages(&emu, 1);
    let png = emu.jobs()[0].image.to_png().unwrap();
    assert_eq!(payload_from_png(&png).unwrap(), b"FRANK-IBI-0001");
}

fn wait_pages(emu: &EmulatorHandle, n: usize) {
    wait_for("pages", || emu.jobs().len() >= n);
}

fn keys(signer: &KeySigner) -> VendorKeys {
    let mut k = VendorKeys::new();
    k.add(&signer.public_key()).unwrap();
    k
}

#[test]
fn every_kind_prints_on_the_zpl_printer_decodes_and_verifies() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let p = profile();
    let dir = tempfile::tempdir().unwrap();
    let emu = spawn(&p, Some(dir.path()));
    let from = vec!["FRANK COUNTER 7".to_string(), "12 POST RD".to_string()];
    let to = vec!["JANE DOE".to_string(), "1 MAIN ST".to_string()];
    let kinds = every_kind();
    for (n, (item, amount)) in kinds.iter().enumerate() {
        let ind = build_and_sign(&facts(item.clone(), *amount, 100 + n as u64), &signer).unwrap();
        let label = face(
            &ind,
            Some(item),
            &Addresses {
                from: &from,
                to: &to,
            },
            &p,
        );
        let job = compile_with(
            &label,
            &p,
            &CompileOptions {
                // The counter asks for 180°; a ZPL format prints whole or not at all.
                layout: Layout::Rotated180,
                ..CompileOptions::default()
            },
        )
        .unwrap();
        let port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
        let (_tx, link) = watch::channel(LinkState::Up);
        let seen = RecordMilestones::default();
        let (h, _) = spawn_job(
            port,
            job.clone(),
            link,
            StreamConfig::default(),
            Box::new(seen.clone()),
        );
        let (_port, outcome) = h.join().unwrap();
        assert_eq!(
            outcome,
            JobOutcome::Completed {
                bytes_sent: job.bytes.len(),
                indicium: IndiciumPaper::Printed
            },
            "{}",
            item.kind()
        );
        assert_eq!(
            *seen.0.lock().unwrap(),
            vec![
                Milestone::IndiciumSending,
                Milestone::IndiciumSent,
                Milestone::IndiciumPrinted,
                Milestone::EndPrinted
            ]
        );
        // Printed means printed: the page is there when the printer says it holds nothing.
        assert_eq!(emu.jobs().len(), n + 1);
        let page = &emu.jobs()[n];
        let png = std::fs::read(&emu.pngs()[n]).unwrap();
        let payload = payload_from_png(&png).unwrap_or_else(|e| panic!("{}: {e}", item.kind()));
        assert_eq!(page.data_matrix, vec![payload.clone()]);
        let v = verify_payload(&payload, &keys(&signer)).unwrap();
        assert_eq!(v.indicium.body.number(), ind.body.number());
        let number = ind.body.number().to_string();
        assert!(
            page.text.iter().any(|t| t.contains(&number)),
            "{:?}",
            page.text
        );
    }
}

#[test]
fn lapses_at_random_offsets_leave_a_label_exactly_when_xz_was_sent() {
    let p = profile();
    let job = compile(&reference_label(), &p, 64).unwrap();
    let r = job.indicium.clone().unwrap();
    let xz = job.indicium_marks_at.unwrap();
    let mut targets = vec![0, r.start, xz, xz + 1, r.end];
    let mut seed: u64 = 0x2b1d_f00d;
    for _ in 0..8 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        targets.push((seed >> 33) as usize % (job.bytes.len() + 1));
    }
    for target in targets {
        let emu = spawn(&p, None);
        let (outcome, at_flip) = stream(&emu, &p, &job, target);
        let sent = outcome.bytes_sent();
        let closed = sent >= r.end;
        // Within one chunk of the lapse (the chunk being written finishes).
        assert!(sent <= at_flip + 64, "{target}: {sent} after {at_flip}");
        // Give the printer time to print anything it would.
        std::thread::sleep(Duration::from_millis(50));
        if closed {
            wait_pages(&emu, 1);
            assert!(
                matches!(
                    outcome,
                    JobOutcome::Completed {
                        indicium: IndiciumPaper::Printed,
                        ..
                    }
                ),
                "{target}: {outcome:?}"
            );
        } else {
            let JobOutcome::Aborted {
                indicium,
                cancel_confirmed,
                ..
            } = outcome
            else {
                panic!("{target}: {outcome:?}");
            };
            assert!(!indicium.on_paper(), "{target}: {indicium:?}");
            assert!(cancel_confirmed);
            // ~JA was sent and taken: the printer holds nothing, and never prints the label.
            assert!(emu.stats().clears >= 1);
            std::thread::sleep(Duration::from_millis(300));
            assert!(emu.jobs().is_empty(), "{target}: a label printed");
        }
        // The settlement follows the outcome: on paper (charged) exactly when a label exists.
        assert_eq!(
            outcome.indicium().on_paper(),
            !emu.jobs().is_empty(),
            "{target}"
        );
    }
}

#[test]
fn paper_out_before_the_xz_keeps_the_label_off_paper() {
    let p = profile();
    let job = compile(&reference_label(), &p, 256).unwrap();
    let emu = spawn(&p, None);
    // Out of paper before the job: nothing is sent.
    emu.inject(Fault::PaperOut);
    let (outcome, _) = stream(&emu, &p, &job, usize::MAX);
    assert_eq!(
        outcome,
        JobOutcome::Faulted {
            fault: PrinterFault::PaperOut,
            bytes_sent: 0,
            indicium: IndiciumPaper::NotSent
        }
    );
    emu.inject(Fault::PaperIn);
    // The paper ends halfway through the job's bytes: the `~HS` asked before `^XZ` sees it.
    let xz = job.indicium_marks_at.unwrap() as u64;
    emu.inject(Fault::PaperOutAfter(
        emu.stats().received_total + 3 + xz / 2,
    ));
    let (outcome, _) = stream(&emu, &p, &job, usize::MAX);
    assert_eq!(
        outcome,
        JobOutcome::Faulted {
            fault: PrinterFault::PaperOut,
            bytes_sent: job.indicium_marks_at.unwrap(),
            indicium: IndiciumPaper::NotSent
        }
    );
    // Paper back: nothing prints (the format was never closed, and ~JA dropped it).
    emu.inject(Fault::PaperIn);
    std::thread::sleep(Duration::from_millis(300));
    assert!(emu.jobs().is_empty());
    assert!(emu.stats().status_queries >= 1 && emu.stats().clears >= 2);
}

#[test]
fn head_open_while_printing_is_a_fault_and_the_label_is_the_printers() {
    let p = profile();
    let job = compile(&reference_label(), &p, 256).unwrap();
    let emu = spawn(&p, None);
    // The head opens once every byte is in: the closed format is mid-print.
    let (h, progress, _tx) = printer_support::start_job(&emu, &p, &job, StreamConfig::default());
    wait_for("all bytes", || {
        progress.borrow().bytes_sent == job.bytes.len()
    });
    wait_for("the printer to receive them", || {
        emu.stats().received_total >= job.bytes.len() as u64
    });
    emu.inject(Fault::CoverOpen);
    let (port, outcome) = h.join().unwrap();
    drop(port);
    assert_eq!(
        outcome,
        JobOutcome::Faulted {
            fault: PrinterFault::CoverOpen,
            bytes_sent: job.bytes.len(),
            indicium: IndiciumPaper::AssumedPrinted
        }
    );
    // Counted as on paper: closing the head lets the closed label finish — and the next job
    // (which starts with ~JA) waits for it instead of cancelling it.
    emu.inject(Fault::CoverClosed);
    let (outcome, _) = stream(&emu, &p, &job, usize::MAX);
    assert!(
        matches!(outcome, JobOutcome::Completed { .. }),
        "{outcome:?}"
    );
    wait_pages(&emu, 2);
    assert!(emu.jobs().iter().all(|j| j.data_matrix.len() == 1));
}

#[test]
fn resync_drops_a_half_sent_format_and_lets_a_closed_one_print() {
    let p = profile();
    let job = compile(&reference_label(), &p, 256).unwrap();
    let xz = job.indicium_marks_at.unwrap();
    let emu = spawn(&p, None);
    // A counter that died mid-format: everything but the ^XZ went out.
    {
        let port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
        drop(port);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(emu.device_path())
            .unwrap();
        std::io::Write::write_all(&mut f, &job.bytes[..xz]).unwrap();
    }
    wait_for("the bytes", || emu.stats().received_total >= xz as u64);
    let mut port = PrinterPort::open(emu.device_path(), &p, None).unwrap();
    let report = resync(&mut port, &StreamConfig::default(), ResyncMode::Finish).unwrap();
    assert!(report.settled && report.clear_confirmed);
    std::thread::sleep(Duration::from_millis(300));
    assert!(emu.jobs().is_empty(), "an unclosed format never prints");
    // A whole format a dead counter sent prints under Finish.
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(emu.device_path())
            .unwrap();
        std::io::Write::write_all(&mut f, &job.bytes).unwrap();
    }
    let report = resync(&mut port, &StreamConfig::default(), ResyncMode::Finish).unwrap();
    assert!(report.settled);
    wait_pages(&emu, 1);
}

/// Issue 16 on ZPL: the postage top band as on ESC/POS — the indicium at the top right with its
/// quiet zone, the block ("US POSTAGE", amount, date, origin ZIP, class, weight, meter and
/// serial) beside it on the same rows, left-aligned, its right edge the block gap left of the
/// quiet zone, and nothing else on the band's rows. Golden ZPL per profile; printed on the
/// virtual ZPL printer, the PNG decoded and verified and the placement measured on the paper.
#[test]
fn the_postage_top_band_puts_the_block_beside_the_symbol() {
    use frank::indicium::render::{QUIET_MODULES, module_dots};
    use frank::printer::zpl::compiler::{TextGeometry, block_gap_dots};

    let signer = KeySigner::from_seed(&TEST_SEED);
    let (item, amount) = every_kind().remove(0);
    let ind = build_and_sign(&facts(item.clone(), amount, 77), &signer).unwrap();
    let from = vec!["FRANK COUNTER 7".to_string(), "12 POST RD".to_string()];
    let to = vec!["JANE DOE".to_string(), "1 MAIN ST".to_string()];
    let addresses = Addresses {
        from: &from,
        to: &to,
    };
    for id in shipped_zpl_ids() {
        let p = shipped(id).unwrap();
        let job = compile(&face(&ind, Some(&item), &addresses, &p), &p, 256).unwrap();
        let text = String::from_utf8(job.bytes.clone())
            .unwrap()
            .replace('^', "\n^")
            .replace('~', "\n~");
        insta::assert_snapshot!(format!("zpl_top_band_{id}"), text);
    }
    let p = profile();
    let label = face(&ind, Some(&item), &addresses, &p);
    let job = compile(&label, &p, 256).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let emu = spawn(&p, Some(dir.path()));
    let (outcome, _) = stream(&emu, &p, &job, usize::MAX);
    assert!(
        matches!(outcome, JobOutcome::Completed { .. }),
        "{outcome:?}"
    );
    wait_pages(&emu, 1);
    let page = emu.jobs().remove(0);
    let png = std::fs::read(&emu.pngs()[0]).unwrap();
    let payload = payload_from_png(&png).unwrap();
    verify_payload(&payload, &keys(&signer)).unwrap();
    let b = &ind.body;
    let block = [
        "US POSTAGE".to_string(),
        b.amount.to_string(),
        b.date.to_string(),
        format!("FROM ZIP {}", b.origin),
        "FIRST-CLASS MAIL".to_string(),
        "1 OZ".to_string(),
        b.number().to_string(),
    ];
    for line in &block {
        assert!(page.text.contains(line), "{line:?} not in {:?}", page.text);
    }
    // The paper: a ZPL format prints as laid out (no 180° turn).
    let paper = &page.image;
    let w = paper.width_px();
    let m = module_dots(p.dpi);
    let (quiet, symbol) = (QUIET_MODULES * m, 44 * m);
    let sym_x0 = w - quiet - symbol;
    let ink = |x0: u32, x1: u32, y: u32| (x0..x1).any(|x| paper.get(x, y));
    let sym_top = (0..paper.height_px()).find(|&y| ink(sym_x0, w, y)).unwrap();
    let band = sym_top..sym_top + symbol;
    let label_top = (0..paper.height_px()).find(|&y| ink(0, w, y)).unwrap();
    assert!(sym_top <= label_top + quiet, "the symbol is at the top");
    assert!(
        band.clone().any(|y| paper.get(w - quiet - 1, y)),
        "the symbol is flush with the right quiet zone"
    );
    // Beside it: rows of text on the symbol's rows, left of its quiet zone.
    let clear_x = sym_x0 - quiet - block_gap_dots(&p);
    let beside = band.clone().filter(|&y| ink(0, clear_x, y)).count() as u32;
    let cell_h = TextGeometry::of(&p).cell_height_dots;
    assert!(
        beside >= 4 * cell_h,
        "only {beside} rows of text beside the symbol"
    );
    // The clear zone: nothing between the block's right edge and the symbol.
    assert!(
        !band.clone().any(|y| ink(clear_x, sym_x0, y)),
        "ink in the symbol's clear zone"
    );
    // The block stands beside the symbol, not at the label's left edge: its left edge is where
    // its widest line ends at the block gap.
    let block_left = (0..clear_x)
        .find(|&x| band.clone().any(|y| paper.get(x, y)))
        .unwrap();
    let widest = block
        .iter()
        .map(|t| t.chars().count() as u32)
        .max()
        .unwrap();
    let cell_w = TextGeometry::of(&p).cell_width_dots;
    assert!(
        block_left + cell_w >= clear_x - widest * cell_w,
        "block at x = {block_left}, expected near {}",
        clear_x - widest * cell_w
    );
    assert!(block_left > w / 3, "block at the label's left edge");
}
