//! Paper and ledger always agree (issue 12), judged from outside: a child `frank vendor serve`
//! process, the real `frank counter` binary in a pseudo-terminal behind a fault proxy, and the
//! virtual printer on a real pty. Each trial prints one postage label and meets one fault at a
//! random moment — the link cut while bytes stream, the link cut while the printer drains its
//! buffer, the counter SIGKILLed mid-job and started again, paper out mid-job. Afterwards every
//! PNG the printer saved is decoded: a Data Matrix that verifies with the vendor's key is on
//! paper **if and only if** the vendor charged that piece, and no piece is left reserved or
//! unsettled once the (restarted) counter settled.
//!
//! Two printers: the virtual ESC/POS printer with a raster indicium (a label of tens of KB
//! streams for about a second, so cuts and kills land while bytes go out), and the virtual ZPL
//! printer with its native `^BX` symbol (a label of a few KB is sent at once, so faults land
//! while it prints).
//!
//! `FRANK_PAPER_TRIALS` sets the number of trials (default 8); `FRANK_PAPER_SEED` the seed (it
//! picks the same faults only under the same `rand` version: a seed noted before the move to
//! rand 0.10 picks other ones now);
//! `FRANK_PAPER_KINDS=kill,drain` takes only those kinds in turn (`cut`, `drain`, `kill`,
//! `paper`, `clean`); `FRANK_PAPER_KEEP=DIR` copies a run
//! with a mismatch (its pages and the counter's home: journal, log) into DIR.
//! `scripts/paper-soak.sh N` runs N and prints the summary line.
//!
//! Also: an honest counter whose vendor is unreachable for longer than the reservation lives
//! after printing commits when the link returns — charged once, never called fraud.

mod pty_support;
mod support;

use frank::counter::backend::PrinterSetup;
use frank::counter::client::Session;
use frank::counter::jobbook::{Record, Settlement};
use frank::counter::journal::Journal;
use frank::faultproxy::FaultProxy;
use frank::indicium::verify::{VendorKeys, payload_from_png, payloads_from_png, verify_payload};
use frank::printer::emulator::{EmulatorHandle, Fault};
use frank::ui::event::{Backend, Command, JobId, SettlePhase};
use frank::vendor_server::directory::Directory;
use frank::vendor_server::{DB_FILE, DataDir};
use pty_support::*;
use rand::{Rng, RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use support::backend::*;

const FUNDS_CENTS: u64 = 50_000;
/// Longest wait for a trial's job to be settled with the vendor.
const SETTLE: Duration = Duration::from_secs(60);

/// `frank vendor serve` as a child process, with its data directory.
struct VendorProc {
    _dir: tempfile::TempDir,
    child: tokio::process::Child,
    addr: SocketAddr,
    key: ed25519_dalek::VerifyingKey,
    code: String,
}

impl Drop for VendorProc {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A data directory with one account and clerk, `toml` appended to its vendor.toml, served by
/// a child `frank vendor serve` on loopback.
async fn vendor_proc(toml: &str) -> VendorProc {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("vendor"));
    data.init().unwrap();
    let code = {
        let mut d = Directory::open(&data.file(DB_FILE)).unwrap();
        let (acct, _) = d.add_account("Paper Test Post Office", 1).unwrap();
        let code = support::fleet_code(&mut d, acct.id);
        d.add_clerk(acct.id, support::CLERK, support::PASSWORD, false, 1)
            .unwrap();
        code
    };
    if !toml.is_empty() {
        let path = data.file(frank::vendor_server::CONFIG_FILE);
        let mut text = std::fs::read_to_string(&path).unwrap_or_default();
        text.push('\n');
        text.push_str(toml);
        text.push('\n');
        std::fs::write(&path, text).unwrap();
    }
    let key = data.load().unwrap().public_key;
    let addr = support::free_udp_port();
    let child = support::spawn_vendor_serve(&dir.path().join("vendor"), addr, &[]).await;
    VendorProc {
        _dir: dir,
        child,
        addr,
        key,
        code,
    }
}

/// A second terminal of the same account: funds it and reads pieces and balances.
async fn watcher(v: &VendorProc) -> (Session, frank::link::driver::LinkHandle) {
    let (endpoint, s, link) =
        support::funded_terminal((v.addr, v.key, &v.code), "watcher", FUNDS_CENTS, LONG).await;
    std::mem::forget(endpoint);
    (s, link)
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| rt.block_on(f))
}

/// The virtual printer at label speed: a 4 × 6 in label takes a few seconds to print, so
/// faults land while bytes stream and while the engine drains its buffer.
fn printer_profile(home: &Path, base_id: &str) -> (frank::printer::profile::Profile, String) {
    // `virtual-raster`: the virtual ESC/POS printer without its native Data Matrix, so the
    // indicium goes as raster bands and a label is tens of KB: it streams for about a second
    // at this speed, and a cut or a kill lands while bytes still go out.
    let (base_id, raster) = match base_id {
        "virtual-raster" => ("virtual", true),
        other => (other, false),
    };
    let base = frank::printer::profile::shipped_source(base_id).unwrap();
    let mut text: String = base
        .lines()
        .map(|l| {
            if l.starts_with("name") {
                "name = \"Paper test printer\"".to_string()
            } else if l.starts_with("speed_mm_per_s") {
                "speed_mm_per_s = 40".to_string()
            } else if l.starts_with("data_matrix_cn") && raster {
                String::new()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    if !text.contains("speed_mm_per_s") {
        // A profile that inherits its engine (zebra-virtual): slow it down here.
        text.push_str("\n[engine]\nspeed_mm_per_s = 40\n");
    }
    let path = home.join("paper-printer.toml");
    std::fs::write(&path, text).unwrap();
    (
        frank::printer::cli::load_profile(path.to_str().unwrap()).unwrap(),
        path.display().to_string(),
    )
}

struct Rig {
    home: tempfile::TempDir,
    labels: tempfile::TempDir,
    vendor: VendorProc,
    proxy: FaultProxy,
    printer: EmulatorHandle,
    watcher: Session,
    _watcher_link: frank::link::driver::LinkHandle,
    args: Vec<String>,
    screen: Screen,
}

async fn rig(vendor_toml: &str) -> Rig {
    rig_on(vendor_toml, "virtual").await
}

/// [`rig`] with the virtual printer of profile `base_id` (`virtual`: ESC/POS, `zebra-virtual`:
/// ZPL).
async fn rig_on(vendor_toml: &str, base_id: &str) -> Rig {
    let vendor = vendor_proc(vendor_toml).await;
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), vendor.addr)
        .await
        .unwrap();
    let (watcher, watcher_link) = watcher(&vendor).await;
    let home = tempfile::tempdir().unwrap();
    let labels = tempfile::tempdir().unwrap();
    let (profile, profile_arg) = printer_profile(home.path(), base_id);
    let printer = support::virtual_printer(&profile, Some(labels.path()));
    let args: Vec<String> = [
        "counter",
        "--vendor",
        &proxy.local_addr().to_string(),
        "--pin",
        &frank::identity::fingerprint(&vendor.key),
        "--data",
        &home.path().join("terminal").display().to_string(),
        "--enroll-code",
        &vendor.code,
        "--origin-zip",
        "94105",
        "--name",
        "paper-counter",
        "--printer",
        &printer.device_path().display().to_string(),
        "--profile",
        &profile_arg,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let screen = start_counter(&args, home.path());
    Rig {
        home,
        labels,
        vendor,
        proxy,
        printer,
        watcher,
        _watcher_link: watcher_link,
        args,
        screen,
    }
}

/// Starts `frank counter`, signs the clerk in, waits for the link and the printer.
fn start_counter(args: &[String], home: &Path) -> Screen {
    Screen::spawn_signed_in(args, home, support::CLERK, support::PASSWORD)
}

/// The progress gauge's percentage, when the printing screen shows one.
/// The job's final words: the vendor acknowledged its settlement.
fn settled(t: &str) -> bool {
    t.contains("charged.")
        || t.contains("returned to balance")
        || t.contains("refund requested")
        || t.contains("Not issued")
}

#[derive(Debug, Clone, Copy)]
enum Trial {
    /// Cut the link once the gauge passes this percentage.
    CutWhileSending(u32),
    /// Cut the link once every byte is sent: the printer is still printing its buffer.
    CutWhileDraining,
    /// SIGKILL the counter once the gauge passes this percentage, then start it again. A
    /// label with a native symbol (a few KB) is all sent long before the printer finishes, so
    /// there the kill lands while the printer prints; a raster one is killed mid-stream (the
    /// log says at what percentage).
    Kill(u32),
    /// The paper ends this many bytes into the job.
    PaperOut(u64),
    /// No fault: the label prints whole.
    Clean,
}

fn pick(rng: &mut impl Rng) -> Trial {
    match rng.random_range(0..9) {
        0 | 1 => Trial::CutWhileSending(rng.random_range(1..99)),
        2 | 3 => Trial::CutWhileDraining,
        4 | 5 => Trial::Kill(rng.random_range(1..100)),
        6 | 7 => Trial::PaperOut(rng.random_range(200..6000)),
        _ => Trial::Clean,
    }
}

/// Waits (up to 10 s) until the vendor says piece `serial` is in state `want`; fails at once
/// if it shows `never` on the way.
fn wait_piece_state(w: &Session, serial: u64, want: &str, never: Option<&str>) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let state = block(w.piece(serial)).unwrap().item_state;
        if state == want {
            return;
        }
        if let Some(n) = never {
            assert_ne!(state, n, "piece {serial} went {n}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "piece {serial} still {state}, not {want}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every serial printed on paper as an indicium that verifies with the vendor's key.
fn serials_on_paper(dir: &Path, key: &ed25519_dalek::VerifyingKey) -> BTreeMap<u64, PathBuf> {
    let mut keys = VendorKeys::new();
    keys.add(&key.to_bytes()).unwrap();
    let mut out = BTreeMap::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "png"))
        .collect();
    files.sort();
    for png in files {
        let Ok(bytes) = std::fs::read(&png) else {
            continue;
        };
        // A page can hold more than one item (a partial label a crash left, then the next).
        let mut payloads = payloads_from_png(&bytes).unwrap_or_default();
        if let Ok(p) = payload_from_png(&bytes)
            && !payloads.contains(&p)
        {
            payloads.push(p);
        }
        for payload in payloads {
            if let Ok(v) = verify_payload(&payload, &keys) {
                let serial = v.indicium.body.piece_serial.get();
                assert!(
                    out.insert(serial, png.clone()).is_none(),
                    "piece {serial} is on paper twice"
                );
            }
        }
    }
    out
}

#[derive(Debug, Default)]
struct Tally {
    trials: usize,
    mismatches: usize,
    unsettled: usize,
    clean_voids: usize,
    refund_requested: usize,
}

async fn run_trials(trials: usize, seed: u64, base_id: &str) -> Tally {
    let mut r = rig_on("", base_id).await;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut kinds = Vec::new();
    for n in 0..trials {
        // FRANK_PAPER_KINDS=kill,drain,… takes only those kinds, in turn, to study them
        // (scripts/paper-soak.sh takes every kind).
        let trial = match std::env::var("FRANK_PAPER_KINDS") {
            Ok(kinds) => {
                let kinds: Vec<&str> = kinds.split(',').collect();
                match kinds[n % kinds.len()] {
                    "cut" => Trial::CutWhileSending(rng.random_range(1..99)),
                    "drain" => Trial::CutWhileDraining,
                    "kill" => Trial::Kill(rng.random_range(1..100)),
                    "paper" => Trial::PaperOut(rng.random_range(200..6000)),
                    "clean" => Trial::Clean,
                    other => panic!(
                        "FRANK_PAPER_KINDS: no kind {other:?} (cut, drain, kill, paper, clean)"
                    ),
                }
            }
            Err(_) => pick(&mut rng),
        };
        kinds.push(trial);
        eprintln!("trial {n}: {trial:?}");
        // From the home screen: a postage label to review, then confirm.
        r.screen.send("\x1b");
        r.screen.wait_for("Recent items");
        postage_to_review(&mut r.screen);
        if let Trial::PaperOut(bytes) = trial {
            let at = r.printer.stats().received_total + bytes;
            r.printer.inject(Fault::PaperOutAfter(at));
        }
        r.screen.send("\r");
        match trial {
            Trial::CutWhileSending(p) => {
                let t = r.screen.wait("the gauge", |t| {
                    gauge_percent(t).is_some_and(|q| q >= p) || settled(t)
                });
                r.proxy.handle.cut();
                if !settled(&t) {
                    std::thread::sleep(Duration::from_millis(1500));
                }
                r.proxy.handle.heal();
            }
            Trial::CutWhileDraining => {
                let t = r.screen.wait("all bytes sent", |t| {
                    gauge_percent(t) == Some(100) || settled(t)
                });
                r.proxy.handle.cut();
                if !settled(&t) {
                    std::thread::sleep(Duration::from_millis(1500));
                }
                r.proxy.handle.heal();
            }
            Trial::Kill(p) => {
                let t = r.screen.wait("the gauge", |t| {
                    gauge_percent(t).is_some_and(|q| q >= p) || settled(t)
                });
                let at = gauge_percent(&t).map_or("settled".into(), |q| format!("{q}% sent"));
                eprintln!("  killed at {at}");
                let pid = r.screen.pid().expect("counter running");
                nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid as i32),
                    nix::sys::signal::Signal::SIGKILL,
                )
                .unwrap();
                assert_eq!(r.screen.exited_within(Duration::from_secs(5)), Some(false));
                r.screen = start_counter(&r.args, r.home.path());
                r.screen.wait_within(SETTLE, "the last run settled", |t| {
                    !t.contains("⧗") && !t.contains("settling")
                });
            }
            Trial::PaperOut(_) | Trial::Clean => {}
        }
        if !matches!(trial, Trial::Kill(_)) {
            r.screen.wait_within(SETTLE, "the settlement", settled);
        }
        if matches!(trial, Trial::PaperOut(_)) {
            r.printer.inject(Fault::PaperIn);
            r.screen.wait_for("printer ready");
        }
        r.screen
            .wait_within(SETTLE, "nothing left to settle", |t| !t.contains("⧗"));
    }

    // The paper against the vendor's ledger.
    let on_paper = serials_on_paper(r.labels.path(), &r.vendor.key);
    let mut pieces = Vec::new();
    let mut before = None;
    loop {
        let page = block(r.watcher.pieces(200, before)).unwrap().pieces;
        let Some(last) = page.last().map(|p| p.piece_serial) else {
            break;
        };
        pieces.extend(page);
        before = Some(last);
    }
    let mut t = Tally {
        trials,
        ..Tally::default()
    };
    let mut seen = BTreeSet::new();
    for p in &pieces {
        seen.insert(p.piece_serial);
        let state = p.item_state.as_str();
        let charged = matches!(
            state,
            "printed" | "unsettled" | "refund_requested" | "refunded" | "refund_rejected"
        );
        let paper = on_paper.contains_key(&p.piece_serial);
        eprintln!(
            "piece {}: vendor {state}, paper {}",
            p.piece_serial,
            if paper { "has it" } else { "has none" }
        );
        if state == "unsettled" || state == "reserved" {
            t.unsettled += 1;
        }
        if state == "voided" && !paper {
            t.clean_voids += 1;
        }
        if state == "refund_requested" {
            t.refund_requested += 1;
        }
        if charged != paper {
            eprintln!(
                "MISMATCH piece {}: vendor says {state}, paper {}",
                p.piece_serial,
                on_paper
                    .get(&p.piece_serial)
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "has no indicium".into())
            );
            t.mismatches += 1;
        }
    }
    for serial in on_paper.keys() {
        if !seen.contains(serial) {
            eprintln!("MISMATCH piece {serial} is on paper but the vendor has no such piece");
            t.mismatches += 1;
        }
    }
    // Registers: what the account holds plus what was printed is what was loaded.
    let b = block(r.watcher.balance()).unwrap().registers;
    assert_eq!(
        b.ascending_cents + b.pending_cents + b.descending_cents,
        b.control_cents,
        "{b:?}"
    );
    assert_eq!(b.pending_cents, 0, "a reservation is still open: {b:?}");
    eprintln!("trials: {kinds:?}");
    // FRANK_PAPER_KEEP=DIR keeps the pages, the counter's home (journal, log) and the vendor's
    // data of a run with a mismatch, to study it.
    if let Ok(keep) = std::env::var("FRANK_PAPER_KEEP")
        && t.mismatches > 0
    {
        for (from, name) in [(r.labels.path(), "labels"), (r.home.path(), "home")] {
            let to = Path::new(&keep).join(name);
            let _ = std::process::Command::new("cp")
                .arg("-a")
                .arg(from)
                .arg(&to)
                .status();
        }
    }
    drop(r.printer);
    t
}

/// The trials on the virtual ESC/POS printer with a raster indicium: faults mid-stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paper_matches_the_ledger_under_random_faults() {
    let trials: usize = std::env::var("FRANK_PAPER_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("FRANK_PAPER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed}");
    let t = run_trials(trials, seed, "virtual-raster").await;
    println!(
        "trials={} mismatches={} unsettled={} clean_voids={} refund_requested={}",
        t.trials, t.mismatches, t.unsettled, t.clean_voids, t.refund_requested
    );
    assert_eq!(t.mismatches, 0, "seed {seed}: {t:?}");
    assert_eq!(t.unsettled, 0, "seed {seed}: {t:?}");
}

/// The same trials with a ZPL printer (issue 18): a label is on paper exactly when its `^XZ`
/// went out; the vendor's ledger must say the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_paper_matches_the_ledger_under_random_faults_on_zpl() {
    let trials: usize = std::env::var("FRANK_PAPER_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let seed: u64 = std::env::var("FRANK_PAPER_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("seed {seed}");
    let t = run_trials(trials, seed, "zebra-virtual").await;
    println!(
        "zpl trials={} mismatches={} unsettled={} clean_voids={} refund_requested={}",
        t.trials, t.mismatches, t.unsettled, t.clean_voids, t.refund_requested
    );
    assert_eq!(t.mismatches, 0, "seed {seed}: {t:?}");
    assert_eq!(t.unsettled, 0, "seed {seed}: {t:?}");
}

/// The reservation lives 2 s here (vendor.toml), the reaper runs every 100 ms: the counter
/// below is cut off from its vendor for 6 s — three times the reservation's life — right after
/// the label printed whole. The vendor commits the piece as `unsettled` at expiry (never
/// voided: the value was issued); when the link returns the counter's journaled commit, with
/// its original request id, settles it as printed. Charged once; `frank verify --vendor` calls
/// the paper label valid, not fraud.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_counter_cut_off_after_printing_commits_when_the_link_returns() {
    let mut r = rig("authorization_expiry_ms = 2000\nreaper_interval_ms = 100").await;
    let before = block(r.watcher.balance()).unwrap().registers;
    // Every datagram takes 400 ms through the proxy: the commit is still on its way when the
    // screen says the label printed, and the cut below catches it.
    r.proxy.handle.update(|f| f.delay_ms = 400);
    postage_to_review(&mut r.screen);
    r.screen.send("\r");
    r.screen.wait_within(SETTLE, "printed, settling", |t| {
        t.contains("settling with the vendor") && t.contains("Printed postage")
    });
    r.proxy.handle.cut();
    // The label is on paper and verifies offline.
    let on_paper = serials_on_paper(r.labels.path(), &r.vendor.key);
    assert_eq!(on_paper.len(), 1, "{on_paper:?}");
    let (&serial, png) = on_paper.iter().next().unwrap();
    // The reservation expires while the counter cannot reach the vendor: committed, unsettled.
    wait_piece_state(&r.watcher, serial, "unsettled", Some("voided"));
    let mid = block(r.watcher.balance()).unwrap().registers;
    assert_eq!(mid.pending_cents, 0);
    assert!(mid.ascending_cents > before.ascending_cents, "{mid:?}");
    assert!(
        !r.screen.text().contains("charged."),
        "the screen said charged before the vendor acknowledged"
    );
    std::thread::sleep(Duration::from_secs(4));
    r.proxy.handle.update(|f| f.delay_ms = 0);
    r.proxy.handle.heal();
    // The counter's commit goes through when the link returns.
    let t = r
        .screen
        .wait_within(SETTLE, "charged", |t| t.contains("charged."));
    assert!(t.contains("Printed postage"), "{t}");
    let piece = block(r.watcher.piece(serial)).unwrap();
    assert_eq!(piece.item_state, "printed");
    let after = block(r.watcher.balance()).unwrap().registers;
    assert_eq!(
        after.descending_cents + piece.amount_cents,
        before.descending_cents,
        "charged once: {before:?} → {after:?}"
    );
    assert_eq!(after.ascending_cents, mid.ascending_cents);
    // The postal verifier's online check: valid, not fraud.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(["verify"])
        .arg(png)
        .args([
            "--vendor-key",
            &frank::identity::fingerprint(&r.vendor.key),
            "--vendor",
            &r.vendor.addr.to_string(),
        ])
        .output()
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("result: VALID"), "{text}");
    assert!(text.contains("fraud: no"), "{text}");
}

/// Ctrl-Q while a printed label's commit cannot reach the vendor: the counter says the item is
/// kept and settled at the next start, and quits on a second Ctrl-Q. Started again (link back),
/// it settles that item from its journal before it lets a new one be issued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quitting_with_an_unsettled_item_settles_it_at_the_next_start() {
    let mut r = rig("").await;
    r.proxy.handle.update(|f| f.delay_ms = 400);
    postage_to_review(&mut r.screen);
    r.screen.send("\r");
    r.screen.wait_within(SETTLE, "printed, settling", |t| {
        t.contains("settling with the vendor") && t.contains("Printed postage")
    });
    r.proxy.handle.cut();
    let on_paper = serials_on_paper(r.labels.path(), &r.vendor.key);
    let (&serial, _) = on_paper.iter().next().expect("the label printed");
    r.screen.send("\x11"); // Ctrl-Q
    let t = r.screen.wait_for("Ctrl-Q again quits");
    assert!(t.contains("1 item not settled with the vendor yet"), "{t}");
    r.screen.send("\x11");
    assert_eq!(
        r.screen.exited_within(Duration::from_secs(15)),
        Some(true),
        "the counter did not quit"
    );
    assert_eq!(
        block(r.watcher.piece(serial)).unwrap().item_state,
        "reserved"
    );
    r.proxy.handle.update(|f| f.delay_ms = 0);
    r.proxy.handle.heal();
    r.screen = start_counter(&r.args, r.home.path());
    r.screen
        .wait_within(SETTLE, "settled", |t| !t.contains("⧗"));
    wait_piece_state(&r.watcher, serial, "printed", None);
    // A new item prints as usual afterwards.
    postage_to_review(&mut r.screen);
    r.screen.send("\r");
    r.screen
        .wait_within(SETTLE, "charged", |t| t.contains("charged."));
}

/// Cuts the link while the label streams, before its indicium (printed last) went out, and
/// keeps it cut for 4 s — twice the reservation's life here. The job book decides `void`
/// (not on paper) and keeps it; the vendor commits the piece `unsettled` at expiry; when the
/// link returns the journaled void arrives late. Returns the piece and its final state.
async fn cut_before_the_indicium_past_expiry(r: &mut Rig) -> (u64, String) {
    r.proxy.handle.update(|f| f.delay_ms = 200);
    postage_to_review(&mut r.screen);
    r.screen.send("\r");
    r.screen.wait("the gauge", |t| gauge_percent(t).is_some());
    r.proxy.handle.cut();
    r.screen
        .wait_within(SETTLE, "the void decided", |t| t.contains("voiding it"));
    let pieces = block(r.watcher.pieces(10, None)).unwrap().pieces;
    let serial = pieces.first().expect("one piece").piece_serial;
    wait_piece_state(&r.watcher, serial, "unsettled", None);
    std::thread::sleep(Duration::from_secs(2));
    r.proxy.handle.update(|f| f.delay_ms = 0);
    r.proxy.handle.heal();
    let t = r.screen.wait_within(SETTLE, "the vendor's answer", |t| {
        t.contains("returned to balance") || t.contains("refused to settle")
    });
    assert!(
        serials_on_paper(r.labels.path(), &r.vendor.key).is_empty(),
        "no indicium may be on paper"
    );
    let state = block(r.watcher.piece(serial)).unwrap().item_state;
    eprintln!("{t}");
    (serial, state)
}

/// A void from the journal that reaches the vendor after the reservation expired, within the
/// late-void window, is a late void: the piece is voided and the amount comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_from_the_journal_after_expiry_is_a_late_void_within_the_window() {
    let mut r = rig("authorization_expiry_ms = 2000\nreaper_interval_ms = 100").await;
    let before = block(r.watcher.balance()).unwrap().registers;
    let (_, state) = cut_before_the_indicium_past_expiry(&mut r).await;
    assert_eq!(state, "voided");
    r.screen.wait_for("label voided");
    let after = block(r.watcher.balance()).unwrap().registers;
    assert_eq!(after.descending_cents, before.descending_cents, "{after:?}");
    assert_eq!(after.pending_cents, 0);
    // Ascending never falls: the late void comes back as a credit, like an approved refund.
    assert!(after.ascending_cents > before.ascending_cents, "{after:?}");
    assert_eq!(
        after.ascending_cents + after.descending_cents,
        after.control_cents
    );
}

/// After the late-void window the vendor refuses the void with a clear error and nothing
/// changes: the piece stays charged (`unsettled`), the screen says so and what to do, and the
/// journal does not send it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_void_from_the_journal_after_the_window_is_refused_and_changes_nothing() {
    let mut r =
        rig("authorization_expiry_ms = 2000\nreaper_interval_ms = 100\nlate_void_window_ms = 0")
            .await;
    let (serial, state) = cut_before_the_indicium_past_expiry(&mut r).await;
    assert_eq!(state, "unsettled");
    let t = r.screen.text();
    // The words may wrap anywhere in the box: read them as one line.
    let words = t
        .replace('│', " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(words.contains("refused to settle"), "{t}");
    assert!(words.contains("Ask a supervisor"), "{t}");
    r.screen
        .wait_within(SETTLE, "nothing left to settle", |t| !t.contains("⧗"));
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        block(r.watcher.piece(serial)).unwrap().item_state,
        "unsettled"
    );
}

/// A counter that stopped mid-print settles that job at its next start, even when status polls
/// keep its printer port busy: the resync takes the port before the next poll, never waiting
/// for a retry timer to find it free. Here the printer answers nothing, so every poll holds
/// the port for its whole reply timeout, and polls come every 100 ms; the job is settled by
/// the journal alone (its indicium was sent: assumed on paper, a refund requested). Before
/// the fix, a restarted counter whose poll timer ticked a millisecond ahead of its retry timer
/// left the job settling for good (a CI run: "⧗ 1 settling" for 60 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_last_run_left_mid_print_is_settled_though_polls_keep_the_port_busy() {
    let v = support::child_vendor("Paper Test Post Office", |_, _| {}).await;
    let (_endpoint, watcher, _watcher_link) =
        support::funded_terminal((v.addr, v.key, &v.code), "watcher", FUNDS_CENTS, LONG).await;
    let home = tempfile::tempdir().unwrap();

    // The last run: a coupon authorized, then (as the journal tells it) its indicium sent to
    // the printer before the counter stopped.
    let (ctx, mut erx, task) = signed_in_backend(backend_config(&v, home.path(), "94105")).await;
    let job = JobId(1);
    authorize_coupon(&ctx, job, 150).await;
    next_event(
        &mut erx,
        "Authorized",
        |e| matches!(e, Backend::Authorized { job: j } if *j == job),
    )
    .await;
    ctx.send(Command::Quit).await.unwrap();
    task.await.unwrap();
    {
        let (mut journal, book) = Journal::open(home.path()).unwrap();
        let key = book
            .open()
            .map(|e| e.key)
            .next()
            .expect("the authorized job");
        journal
            .append(&[
                Record::PrintStarting {
                    job: key,
                    print_seq: 7,
                },
                Record::IndiciumSending { job: key },
                Record::IndiciumSent { job: key },
            ])
            .unwrap();
    }

    // This run: a printer that answers nothing, polled every 100 ms.
    let profile = frank::printer::profile::shipped("virtual").unwrap();
    let printer = support::virtual_printer(&profile, None);
    printer.inject(Fault::Silent);
    let mut cfg = backend_config(&v, home.path(), "94105");
    cfg.printer = Some(PrinterSetup {
        device: printer.device_path().to_path_buf(),
        profile,
    });
    cfg.printer_poll_interval_ms = 100;
    let (ctx, mut erx, task) = signed_in_backend(cfg).await;
    let settled = next_event_within(&mut erx, SETTLE, "the last run's job settled", |e| {
        matches!(
            e,
            Backend::Settlement {
                phase: SettlePhase::Done,
                ..
            }
        )
    })
    .await;
    let Backend::Settlement {
        piece, settlement, ..
    } = settled
    else {
        unreachable!()
    };
    assert_eq!(settlement, Settlement::VoidReachedPrinter);
    let state = watcher.piece(piece.unwrap()).await.unwrap().item_state;
    assert_eq!(state, "refund_requested");
    ctx.send(Command::Quit).await.unwrap();
    task.await.unwrap();
}
