//! Printing benchmark: label sizes native vs raster, print time against the line limit, and
//! how fast and how cleanly a link lapse stops a job. Runs the real streamer against the
//! virtual printer on ptys. `-- --quick` keeps it under two minutes.
//!
//! Final stdout line is JSON: native_label_bytes, raster_label_bytes, time_vs_limit_ratio,
//! lapse_stop_p99_ms, bytes_after_lapse_max (goals: ≤ 2048, -, ≤ 1.1, -, ≤ 256), and for the
//! 4 × 6 in label on the process-ID virtual printer at 115200 baud: clean_void_pct (lapses at
//! uniform random moments between the job's first byte and its end ID that end with the
//! indicium Cleared and no decodable indicium in the PNGs; goal ≥ 80) for the 180° layout,
//! clean_void_pct_before for the layout as given (indicium near the top, printed early),
//! clean_void_pct_top_band for the same label with the postage top band (indicium and block
//! side by side, composed in page mode and printed at its FF; 180° layout), and
//! paper_ledger_mismatches over all three (a decodable indicium the outcome calls not on paper,
//! or an indicium counted on paper that no PNG holds; goal 0). A clean void: the indicium ends
//! Cleared and no PNG holds it (for the top band also NotSent: stopped before its FF).
//!
//! ZPL (issue 18), the same 4 × 6 in label on the virtual Zebra (`zebra-virtual`, 152 mm/s)
//! at 9600 baud, the Zebras' serial default: zpl_label_bytes (native `^BX`; goal ≤ 2048),
//! zpl_time_vs_limit_ratio (first byte to `^XZ` accepted against the line's own time for the
//! job's bytes; goal ≤ 1.1), zpl_clean_void_pct (lapses at uniform random moments between the
//! first byte and `^XZ` that end with the indicium off paper, no label in the PNGs; goal 100)
//! and zpl_commit_ms (from `^XZ` accepted to the printer reporting by `~HS` that it holds no
//! format — the label printed — median).

use std::time::{Duration, Instant};

#[path = "../tests/printer_support/mod.rs"]
mod printer_support;

use frank::link::LinkState;
use frank::printer::bitmap::Bitmap;
use frank::printer::compiler::{
    Align, CompileOptions, Element, Indicium, Job, Label, Layout, TextLine, compile, compile_with,
};
use frank::printer::emulator::EmulatorHandle;
use frank::printer::emulator::parser::Parser;
use frank::printer::emulator::render::Renderer;
use frank::printer::emulator::{Emulator, EmulatorOptions};
use frank::printer::profile::{Profile, shipped};
use frank::printer::streamer::{
    IndiciumPaper, JobOutcome, NoMilestones, PrinterPort, StreamConfig, spawn_job,
};
use tokio::sync::watch;

const BAUD: u32 = 115_200;
/// 4 × 6 in at 203 dpi.
const LABEL_W_PX: u32 = 812;
const LABEL_H_PX: u32 = 1218;

fn text(s: &str, w: u8, h: u8, bold: bool, align: Align) -> Element {
    Element::Text(TextLine {
        text: s.into(),
        bold,
        width_mul: w,
        height_mul: h,
        align,
    })
}

/// A 4 × 6 in postage label with a Data Matrix indicium of a realistic payload size.
fn postage_label() -> Label {
    let payload: Vec<u8> = (0..120u32).map(|i| (i * 37 % 251) as u8).collect();
    Label {
        elements: vec![
            text("P", 4, 4, true, Align::Left),
            text("USPS PRIORITY MAIL", 2, 2, true, Align::Center),
            Element::Indicium(Indicium::DataMatrix {
                data: payload,
                module_px: 6,
            }),
            text(
                "$9.85  US POSTAGE  FRANK COUNTER 7",
                1,
                1,
                false,
                Align::Left,
            ),
            text(
                "03/14/2026  FROM 20001  2 LB 4 OZ",
                1,
                1,
                false,
                Align::Left,
            ),
            Element::Feed(1),
            Element::Address {
                heading: Some("FRANK POST OFFICE".into()),
                lines: vec!["12 POST RD".into(), "WASHINGTON DC 20001-0001".into()],
            },
            Element::Feed(2),
            text("SHIP TO:", 1, 1, true, Align::Left),
            text("JANE DOE", 2, 2, false, Align::Left),
            text("1 MAIN ST APT 4", 2, 2, false, Align::Left),
            text("SPRINGFIELD IL 62701-1234", 2, 2, false, Align::Left),
            Element::Feed(2),
            text("USPS TRACKING # EP", 1, 1, true, Align::Center),
            Element::Barcode {
                data: "9405511899223197428490".into(),
                height_dots: 120,
            },
            Element::Feed(1),
        ],
        cut: true,
    }
}

/// The 4 × 6 in label with a postage top band (docs/PRINTING.md §Top band): the same payload,
/// the indicium in the top right with its block beside it, composed in page mode.
fn top_band_label() -> Label {
    let mut label = postage_label();
    let payload = match &label.elements[2] {
        Element::Indicium(Indicium::DataMatrix { data, .. }) => data.clone(),
        _ => Vec::new(),
    };
    let lines = [
        "US POSTAGE",
        "$9.85",
        "2026-03-14",
        "FROM ZIP 20001",
        "PRIORITY MAIL",
        "2 LB 4 OZ",
        "FRK10000001 #7",
    ]
    .into_iter()
    .map(TextLine::plain)
    .collect();
    label.elements.splice(
        0..3,
        [Element::IndiciumBlock {
            symbol: Indicium::DataMatrix {
                data: payload,
                module_px: 6,
            },
            lines,
        }],
    );
    label
}

/// The same label as one raster image: render the native job and rasterise the 4 × 6 page.
fn raster_version(native: &Job, p: &Profile) -> Label {
    let mut parser = Parser::new();
    let mut r = Renderer::new(p);
    for b in &native.bytes {
        if let Some(c) = parser.push(*b) {
            r.apply_and_print(c);
        }
    }
    let page = r.take_jobs().remove(0).image;
    let mut img = Bitmap::new(LABEL_W_PX, LABEL_H_PX);
    for y in 0..LABEL_H_PX.min(page.height_px()) {
        for x in 0..LABEL_W_PX {
            if page.get(x + (page.width_px() - LABEL_W_PX) / 2, y) {
                img.set(x, y, true);
            }
        }
    }
    Label {
        elements: vec![Element::Indicium(Indicium::Image(img))],
        cut: true,
    }
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

fn print_time(p: &Profile, job: &Job) -> Duration {
    let emu = Emulator::spawn(p, EmulatorOptions::default()).expect("emulator");
    let port = PrinterPort::open(emu.device_path(), p, None).expect("open");
    let (_tx, link) = watch::channel(LinkState::Up);
    let t0 = Instant::now();
    let (h, _) = spawn_job(
        port,
        job.clone(),
        link,
        StreamConfig::default(),
        Box::new(NoMilestones),
    );
    let (_, outcome) = h.join().expect("streamer thread");
    let dt = t0.elapsed();
    assert!(
        matches!(outcome, JobOutcome::Completed { .. }),
        "{outcome:?}"
    );
    dt
}

/// One lapse: returns (ms from lapse to the streamer returning, job bytes completed after).
fn lapse_trial(p: &Profile, job: &Job, target: usize) -> (f64, usize) {
    let emu = printer_support::spawn_emulator(p, None);
    let (h, progress, tx) = printer_support::start_job(&emu, p, job, StreamConfig::default());
    while progress.borrow().bytes_sent < target && !h.is_finished() {
        std::thread::sleep(Duration::from_micros(50));
    }
    let t0 = Instant::now();
    tx.send_replace(LinkState::Lapsed);
    let at_lapse = progress.borrow().bytes_sent;
    let (_, outcome) = h.join().expect("streamer thread");
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    (ms, outcome.bytes_sent().saturating_sub(at_lapse))
}

/// Time from the first byte to the end ID (Completed), for one print of `job`.
fn time_to_end(p: &Profile, job: &Job) -> Duration {
    let t = print_time(p, job);
    eprintln!(
        "{:?} layout: first byte to end ID {:.3} s",
        job.layout,
        t.as_secs_f64()
    );
    t
}

/// Whether any PNG the emulator wrote holds a Data Matrix decoding to `payload`.
fn png_holds(emu: &EmulatorHandle, payload: &[u8]) -> bool {
    emu.pngs().iter().any(|path| {
        std::fs::read(path)
            .ok()
            .and_then(|png| frank::indicium::verify::payload_from_png(&png).ok())
            .is_some_and(|got| got == payload)
    })
}

#[derive(Default)]
struct VoidStats {
    trials: usize,
    clean_voids: usize,
    /// Lapses before any printable indicium byte went out (not counted in `clean_voids`).
    not_sent: usize,
    mismatches: usize,
}

/// A fresh virtual printer (its pages in a temp folder) streaming `job`; the link lapses `at`
/// after the start, or not at all when the job ends first. The printer, its folder (kept
/// while the caller reads the pages) and the outcome.
fn lapse_after(
    p: &Profile,
    job: &Job,
    at: Duration,
) -> (EmulatorHandle, tempfile::TempDir, JobOutcome) {
    let dir = tempfile::tempdir().expect("tempdir");
    let emu = printer_support::spawn_emulator(p, Some(dir.path()));
    let (h, _, tx) = printer_support::start_job(&emu, p, job, StreamConfig::default());
    let t0 = Instant::now();
    while t0.elapsed() < at && !h.is_finished() {
        std::thread::sleep(Duration::from_micros(200));
    }
    tx.send_replace(LinkState::Lapsed);
    let (_, outcome) = h.join().expect("streamer thread");
    (emu, dir, outcome)
}

/// Lapses at uniform random moments in [0, end): clean voids and paper/ledger mismatches.
fn clean_void_trials(
    p: &Profile,
    job: &Job,
    payload: &[u8],
    end: Duration,
    trials: usize,
    rng: &mut Lcg,
) -> VoidStats {
    let mut st = VoidStats::default();
    for _ in 0..trials {
        let at = end.mul_f64((rng.next() % 10_000) as f64 / 10_000.0);
        let (emu, _dir, outcome) = lapse_after(p, job, at);
        // The VOID page (or the completed label) is cut; wait for its PNG, then let the engine
        // finish anything still printing.
        let t1 = Instant::now();
        while emu.pngs().is_empty() && t1.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(100));
        let on_png = png_holds(&emu, payload);
        let paper = outcome.indicium();
        st.trials += 1;
        if paper == IndiciumPaper::Cleared && !on_png {
            st.clean_voids += 1;
        }
        if paper == IndiciumPaper::NotSent && !on_png {
            st.not_sent += 1;
        }
        if on_png != paper.on_paper() {
            st.mismatches += 1;
            eprintln!("mismatch: lapse at {at:?}: {outcome:?}, PNG holds indicium: {on_png}");
        }
    }
    st
}

/// ZPL figures: (first byte → `^XZ` accepted, `^XZ` accepted → Completed) for one print.
fn zpl_print(p: &Profile, job: &Job) -> (Duration, Duration) {
    let emu = Emulator::spawn(p, EmulatorOptions::default()).expect("emulator");
    let port = PrinterPort::open(emu.device_path(), p, None).expect("open");
    let (_tx, link) = watch::channel(LinkState::Up);
    let t0 = Instant::now();
    let (h, progress) = spawn_job(
        port,
        job.clone(),
        link,
        StreamConfig::default(),
        Box::new(NoMilestones),
    );
    while progress.borrow().bytes_sent < job.bytes.len() && !h.is_finished() {
        std::thread::sleep(Duration::from_micros(100));
    }
    let sent = t0.elapsed();
    let (_, outcome) = h.join().expect("streamer thread");
    let done = t0.elapsed();
    assert!(
        matches!(
            outcome,
            JobOutcome::Completed {
                indicium: IndiciumPaper::Printed,
                ..
            }
        ),
        "{outcome:?}"
    );
    assert_eq!(emu.jobs().len(), 1);
    (sent, done - sent)
}

/// ZPL lapses at uniform moments in [0, `xz_at`): (lapses before `^XZ`, of them clean voids,
/// lapses that landed after `^XZ`, paper/outcome mismatches).
fn zpl_void_trials(
    p: &Profile,
    job: &Job,
    payload: &[u8],
    xz_at: Duration,
    trials: usize,
    rng: &mut Lcg,
) -> (usize, usize, usize, usize) {
    let (mut before, mut clean, mut after, mut mismatches) = (0, 0, 0, 0);
    for _ in 0..trials {
        let at = xz_at.mul_f64((rng.next() % 10_000) as f64 / 10_000.0);
        let (emu, _dir, outcome) = lapse_after(p, job, at);
        // Anything the printer would print has had a label's time to do so.
        std::thread::sleep(Duration::from_millis(1500));
        let on_png = png_holds(&emu, payload);
        let paper = outcome.indicium().on_paper();
        if outcome.bytes_sent() < job.bytes.len() {
            before += 1;
            if !paper && !on_png {
                clean += 1;
            }
        } else {
            after += 1;
        }
        if on_png != paper {
            mismatches += 1;
            eprintln!("zpl mismatch: lapse at {at:?}: {outcome:?}, PNG holds indicium: {on_png}");
        }
    }
    (before, clean, after, mismatches)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let mut p = shipped("virtual").expect("virtual profile");
    p.serial.baud = BAUD;

    let native = compile(&postage_label(), &p, 256).expect("native label");
    assert!(native.indicium_native);
    let raster = compile(&raster_version(&native, &p), &p, 256).expect("raster label");
    eprintln!(
        "native label {} bytes, raster label {} bytes",
        native.bytes.len(),
        raster.bytes.len()
    );

    // Print time through the emulator at 115200 baud vs the line's own limit.
    let timed = if quick {
        // A third of the raster label keeps --quick short.
        let mut j = raster.clone();
        let cut = j.chunks.len() / 3;
        let end = j.chunks[cut].end;
        j.chunks.truncate(cut + 1);
        j.bytes.truncate(end);
        // The cut-off job has no end process ID to wait for.
        j.end_pid = None;
        j.indicium_pid = j.indicium_pid.filter(|m| m.offset < end);
        j
    } else {
        raster.clone()
    };
    let dt = print_time(&p, &timed);
    let limit = timed.bytes.len() as f64 * 10.0 / f64::from(BAUD);
    let ratio = dt.as_secs_f64() / limit;
    eprintln!(
        "printed {} bytes in {:.3} s; line limit {:.3} s",
        timed.bytes.len(),
        dt.as_secs_f64(),
        limit
    );

    // Lapses at random offsets of a job with a raster indicium.
    let trials = if quick { 200 } else { 400 };
    let span = 4096.min(raster.bytes.len() - 1);
    let mut rng = Lcg(0xf4a2_c0de);
    let mut stops = Vec::with_capacity(trials);
    let mut after_max = 0;
    for _ in 0..trials {
        let target = rng.next() as usize % span;
        let (ms, after) = lapse_trial(&p, &raster, target);
        stops.push(ms);
        after_max = after_max.max(after);
    }
    stops.sort_by(f64::total_cmp);

    // Clean voids: the 4 × 6 label on the process-ID virtual printer, old layout and 180°.
    assert!(p.status.process_id);
    let payload: Vec<u8> = match &postage_label().elements[2] {
        Element::Indicium(Indicium::DataMatrix { data, .. }) => data.clone(),
        _ => Vec::new(),
    };
    let void_trials = if quick { 12 } else { 50 };
    let mut by_layout = Vec::new();
    for layout in [Layout::AsGiven, Layout::Rotated180] {
        let job = compile_with(
            &postage_label(),
            &p,
            &CompileOptions {
                chunk_bytes_max: 256,
                job_seq: 1,
                layout,
            },
        )
        .expect("postage label");
        let end = time_to_end(&p, &job);
        let st = clean_void_trials(&p, &job, &payload, end, void_trials, &mut rng);
        eprintln!(
            "{layout:?}: {} of {} lapses were clean voids, {} mismatches",
            st.clean_voids, st.trials, st.mismatches
        );
        by_layout.push(st);
    }
    // The top band on the page-mode virtual printer, rotated as the counter prints it.
    assert!(p.page_mode);
    let band_job = compile_with(
        &top_band_label(),
        &p,
        &CompileOptions {
            chunk_bytes_max: 256,
            job_seq: 2,
            layout: Layout::Rotated180,
        },
    )
    .expect("top band label");
    let band_end = time_to_end(&p, &band_job);
    let band = clean_void_trials(&p, &band_job, &payload, band_end, void_trials, &mut rng);
    eprintln!(
        "top band: {} cleared and {} before FF of {} lapses, {} mismatches",
        band.clean_voids, band.not_sent, band.trials, band.mismatches
    );
    let pct = |s: &VoidStats| 100.0 * s.clean_voids as f64 / s.trials.max(1) as f64;
    // Here a lapse before the band's FF is clean too: none of the band was printable.
    let clean_void_pct_top_band =
        100.0 * (band.clean_voids + band.not_sent) as f64 / band.trials.max(1) as f64;
    let clean_void_pct_before = pct(&by_layout[0]);
    let clean_void_pct = pct(&by_layout[1]);
    let mismatches: usize = by_layout.iter().map(|s| s.mismatches).sum::<usize>() + band.mismatches;
    let p99 = stops[(stops.len() * 99).div_ceil(100).saturating_sub(1)];
    eprintln!(
        "{trials} lapses: stop p50 {:.1} ms, p99 {p99:.1} ms, max {after_max} bytes after",
        stops[stops.len() / 2]
    );
    // ZPL: the same label on the virtual Zebra at its serial default.
    let mut z = shipped("zebra-virtual").expect("zebra-virtual profile");
    z.serial.baud = 9600;
    let zjob = compile(&postage_label(), &z, 256).expect("ZPL label");
    assert!(zjob.indicium_native);
    let runs = if quick { 3 } else { 7 };
    let mut sends = Vec::new();
    let mut commits = Vec::new();
    for _ in 0..runs {
        let (sent, commit) = zpl_print(&z, &zjob);
        sends.push(sent.as_secs_f64());
        commits.push(commit.as_secs_f64() * 1000.0);
    }
    sends.sort_by(f64::total_cmp);
    commits.sort_by(f64::total_cmp);
    let zpl_limit = zjob.bytes.len() as f64 * 10.0 / 9600.0;
    let zpl_ratio = sends[sends.len() / 2] / zpl_limit;
    let zpl_commit_ms = commits[commits.len() / 2];
    eprintln!(
        "ZPL label {} bytes: ^XZ accepted after {:.3} s (line {:.3} s), printed {:.0} ms later",
        zjob.bytes.len(),
        sends[sends.len() / 2],
        zpl_limit,
        zpl_commit_ms
    );
    let zpl_trials = if quick { 12 } else { 40 };
    let (z_before, z_clean, z_after, z_mismatch) = zpl_void_trials(
        &z,
        &zjob,
        &payload,
        Duration::from_secs_f64(sends[0]),
        zpl_trials,
        &mut rng,
    );
    eprintln!(
        "ZPL: {z_clean} of {z_before} lapses before ^XZ were clean voids; {z_after} landed after ^XZ; {z_mismatch} mismatches"
    );
    let zpl_clean_void_pct = 100.0 * z_clean as f64 / z_before.max(1) as f64;
    let zpl_fields = format!(
        "\"zpl_label_bytes\":{},\"zpl_time_vs_limit_ratio\":{:.4},\"zpl_clean_void_pct\":{:.1},\"zpl_commit_ms\":{:.0},\"zpl_void_trials_before_xz\":{},\"zpl_lapses_after_xz\":{},\"zpl_paper_ledger_mismatches\":{},\"zpl_baud\":9600,\"zpl_speed_mm_per_s\":{}",
        zjob.bytes.len(),
        zpl_ratio,
        zpl_clean_void_pct,
        zpl_commit_ms,
        z_before,
        z_after,
        z_mismatch,
        z.engine_speed_mm_per_s
    );
    println!(
        "{{\"native_label_bytes\":{},\"raster_label_bytes\":{},\"time_vs_limit_ratio\":{:.4},\"lapse_stop_p99_ms\":{:.2},\"bytes_after_lapse_max\":{},\"lapse_trials\":{},\"clean_void_pct\":{:.1},\"clean_void_pct_before\":{:.1},\"clean_void_pct_top_band\":{:.1},\"paper_ledger_mismatches\":{},\"clean_void_trials\":{},\"baud\":{},\"quick\":{},{}}}",
        native.bytes.len(),
        raster.bytes.len(),
        ratio,
        p99,
        after_max,
        trials,
        clean_void_pct,
        clean_void_pct_before,
        clean_void_pct_top_band,
        mismatches,
        void_trials,
        BAUD,
        quick,
        zpl_fields
    );
}
