//! Issue 16: the whole symbol reaches the printer without a stop inside it, on every built-in
//! ESC/POS profile at its own baud. The virtual printer on a pty records each time its engine
//! ran out of rows between two bands of one image (`RenderedJob::raster_stalls`); a control
//! run with an engine faster than the profile says shows that the record is not blind.

mod printer_support;

use frank::printer::compiler::{
    Element, Indicium, Job, Label, RASTER_HEADER_BYTES, TextLine, band_plan, compile,
};
use frank::printer::emulator::EmulatorHandle;
use frank::printer::emulator::render::RenderedJob;
use frank::printer::profile::{CutCommand, FlowControl, Language, Profile, shipped, shipped_ids};
use frank::printer::streamer::JobOutcome;

use printer_support::{decode_data_matrix_png, print_job, spawn_emulator, wait_until};

/// 190 bytes: a 52 × 52 symbol, the size of the item kinds' indicia (the largest Frank prints).
fn item_payload() -> Vec<u8> {
    (0..190u32).map(|i| b'A' + (i % 26) as u8).collect()
}

fn item_label(payload: &[u8]) -> Label {
    Label {
        elements: vec![
            Element::Text(TextLine::plain("FRANK GIFT CERTIFICATE")),
            Element::Indicium(Indicium::DataMatrix {
                data: payload.to_vec(),
                module_px: 3,
            }),
            Element::Text(TextLine::plain("REDEEM AT ANY COUNTER")),
        ],
        cut: true,
    }
}

/// Every command of `job` (the raster bands included) within `receive_bytes`.
fn commands_within_buffer(job: &Job, p: &Profile) -> Result<(), String> {
    for (i, &at) in job.boundaries.iter().enumerate() {
        let end = job
            .boundaries
            .get(i + 1)
            .copied()
            .unwrap_or(job.bytes.len());
        if end - at > p.receive_buffer_bytes as usize {
            return Err(format!("a {}-byte command at {at}", end - at));
        }
    }
    Ok(())
}

/// Prints `job` on a virtual printer emulating `printer` and returns its one page.
fn print_one(printer: &Profile, sender: &Profile, job: &Job) -> (RenderedJob, EmulatorHandle) {
    let dir = tempfile::tempdir().unwrap();
    let emu = spawn_emulator(printer, Some(dir.path()));
    let outcome = print_job(&emu, sender, job);
    assert!(
        matches!(outcome, JobOutcome::Completed { .. }),
        "{}: {outcome:?}",
        sender.name
    );
    wait_until("the page", || !emu.pngs().is_empty());
    let page = emu.jobs().remove(0);
    let png = emu.pngs().remove(0);
    assert_eq!(
        decode_data_matrix_png(&png).map(String::into_bytes),
        Some(item_payload()),
        "{}: the printed symbol decodes",
        sender.name
    );
    // Keep the directory until the PNG was read.
    drop(dir);
    (page, emu)
}

#[test]
fn the_item_symbol_is_52_modules() {
    let (_, w, h) = frank::indicium::render::symbol_modules(&item_payload()).unwrap();
    assert_eq!((w, h), (52, 52));
}

#[test]
fn the_largest_symbol_prints_without_a_stop_on_every_builtin_profile_at_its_baud() {
    for id in shipped_ids() {
        let mut p = shipped(id).unwrap();
        if p.language != Language::EscPos {
            continue; // ZPL prints a format only once its ^XZ arrived: no bands at all.
        }
        // A pty has no modem lines (the Epson profiles ask for DTR/DSR); without flow control
        // the virtual printer drops what overruns its buffer, which the test counts.
        p.serial.flow_control = FlowControl::None;
        if p.cut == CutCommand::None {
            // A page is recorded when it is cut; the cutter does not change the bands.
            p.cut = CutCommand::Full;
        }
        let job = compile(&item_label(&item_payload()), &p, 256).unwrap();
        commands_within_buffer(&job, &p).unwrap_or_else(|e| panic!("{id}: {e}"));
        let (page, emu) = print_one(&p, &p, &job);
        assert_eq!(
            page.raster_stalls, 0,
            "{id}: the engine stopped inside the symbol"
        );
        assert_eq!(
            emu.stats().overrun_bytes,
            0,
            "{id}: the receive buffer overflowed"
        );
        if p.receive_buffer_bytes <= 1024 && !job.indicium_native {
            // The 1 KB, 9,600-baud generic printers: the symbol (1,352 bytes in quadruple
            // density) cannot be one command, so it goes in the rule's bands.
            assert!(page.raster_bands >= 2, "{id}: {} bands", page.raster_bands);
        }
    }
}

/// The control: the same job sent to a printer whose engine is four times faster than the
/// profile the job was planned for. The bands now arrive too late, and the record says so.
#[test]
fn an_engine_faster_than_planned_is_seen_stopping_between_bands() {
    let mut p = shipped("generic-80mm").unwrap();
    p.cut = CutCommand::Full;
    let job = compile(&item_label(&item_payload()), &p, 256).unwrap();
    let plan = band_plan(&p, 13, 104, 2, 0);
    assert!(plan.stall_free, "{plan:?}");
    assert_eq!(plan.rows.iter().sum::<u32>(), 104);
    assert!(13 * plan.rows[0] as usize + RASTER_HEADER_BYTES <= 1024);
    let mut fast = p.clone();
    fast.engine_speed_mm_per_s *= 4;
    assert!(!band_plan(&fast, 13, 104, 2, 0).stall_free);
    let (page, _emu) = print_one(&fast, &p, &job);
    assert!(page.raster_stalls >= 1, "{} bands", page.raster_bands);
}
