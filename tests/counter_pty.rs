//! End to end in a real pseudo-terminal: the `frank counter` binary (ratatui UI + backend) in a
//! pty read back through a vt100 parser, against a real vendor on loopback (behind a fault
//! proxy) and the virtual printer on another pty.
//! 1. sign in, buy a postage label, print it, decode the saved PNG's Data Matrix, verify it;
//! 2. cut the link mid-print: the screen says the label was voided and the balance returns.

mod support;

use frank::faultproxy::FaultProxy;
use frank::indicium::verify::{VendorKeys, payload_from_png, verify_payload};
use frank::link::LinkState;
use frank::printer::emulator::{Emulator, EmulatorHandle, EmulatorOptions};
use frank::wire::FundMethod;
use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::*;

const ROWS: u16 = 40;
const COLS: u16 = 120;
const LONG: Duration = Duration::from_secs(30);
const FUNDS_CENTS: u64 = 5_000;

/// The counter process in a pty, its screen parsed by vt100.
struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
}

impl Screen {
    fn spawn(args: &[String], home: &Path) -> Screen {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_frank"));
        cmd.args(args);
        cmd.env("HOME", home);
        cmd.env("XDG_CONFIG_HOME", home.join("config"));
        cmd.env("XDG_STATE_HOME", home.join("state"));
        cmd.env("XDG_DATA_HOME", home.join("data"));
        cmd.env("TERM", "xterm-256color");
        cmd.env("RUST_LOG", "info");
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let parser = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let p = parser.clone();
        std::thread::spawn(move || {
            let _keep_master = pair.master;
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p.lock().unwrap().process(&buf[..n]);
            }
        });
        Screen {
            parser,
            writer,
            child,
        }
    }

    fn text(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    fn send(&mut self, bytes: &str) {
        self.writer.write_all(bytes.as_bytes()).unwrap();
        self.writer.flush().unwrap();
        // Let the UI take keys one burst at a time, as a person would type them.
        std::thread::sleep(Duration::from_millis(30));
    }

    fn typ(&mut self, text: &str) {
        for c in text.chars() {
            self.send(&c.to_string());
        }
    }

    /// Waits until the screen satisfies `pred`; on timeout fails with the screen.
    fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + LONG;
        loop {
            let t = self.text();
            if pred(&t) {
                return t;
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {what}; screen:\n{t}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_for(&self, needle: &str) -> String {
        self.wait(needle, |t| t.contains(needle))
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Rig {
    _home: tempfile::TempDir,
    labels: tempfile::TempDir,
    vendor: Vendor,
    proxy: FaultProxy,
    printer: EmulatorHandle,
    /// A second terminal of the same account: funds it and reads its balance.
    watcher: frank::counter::client::Session,
    _watcher_link: frank::link::driver::LinkHandle,
    screen: Screen,
}

/// A vendor with a funded account, a proxy, a virtual printer with `profile_toml`, and the
/// counter UI signed in and on its home screen with the link up.
async fn rig(profile_toml: Option<&str>) -> Rig {
    let vendor = vendor().await;
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), vendor.addr)
        .await
        .unwrap();
    let (_c, watcher) = logged_in(&vendor, vendor.addr).await;
    let watcher_link = watcher.start_link().unwrap();
    let mut up = watcher_link.state.clone();
    wait_for(&mut up, LONG, "watcher up", |s| *s == LinkState::Up).await;
    let mut funded = false;
    for _ in 0..50 {
        if watcher
            .fund(
                rand::random(),
                FUNDS_CENTS,
                FundMethod::simulator_test_card(),
            )
            .await
            .is_ok()
        {
            funded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(funded, "the account could not be funded");

    let home = tempfile::tempdir().unwrap();
    let labels = tempfile::tempdir().unwrap();
    let (profile, profile_arg) = match profile_toml {
        Some(text) => {
            let path = home.path().join("slow-printer.toml");
            std::fs::write(&path, text).unwrap();
            (
                frank::printer::cli::load_profile(path.to_str().unwrap()).unwrap(),
                path.display().to_string(),
            )
        }
        None => (
            frank::printer::profile::shipped("virtual").unwrap(),
            "virtual".to_string(),
        ),
    };
    let printer = Emulator::spawn(
        &profile,
        EmulatorOptions {
            baud: None,
            out_dir: Some(labels.path().to_path_buf()),
            control_socket: None,
        },
    )
    .unwrap();
    let fingerprint = frank::identity::fingerprint(&vendor.key);
    let args: Vec<String> = vec![
        "counter".into(),
        "--vendor".into(),
        proxy.local_addr().to_string(),
        "--pin".into(),
        fingerprint,
        "--data".into(),
        home.path().join("terminal").display().to_string(),
        "--enroll-code".into(),
        vendor.code.clone(),
        "--name".into(),
        "pty-counter".into(),
        "--printer".into(),
        printer.device_path().display().to_string(),
        "--profile".into(),
        profile_arg,
        "--origin-zip".into(),
        "94105".into(),
    ];
    let mut screen = Screen::spawn(&args, home.path());
    screen.wait_for("Sign in");
    screen.typ(CLERK);
    screen.send("\t");
    screen.typ(PASSWORD);
    screen.send("\r");
    screen.wait_for("Recent items");
    screen.wait_for("LINK UP");
    screen.wait_for("printer ready");
    Rig {
        _home: home,
        labels,
        vendor,
        proxy,
        printer,
        watcher,
        _watcher_link: watcher_link,
        screen,
    }
}

/// Ctrl-N, the postage form filled, the live quote awaited; returns the quote text.
fn postage_to_review(s: &mut Screen) {
    s.send("\x0e"); // Ctrl-N: new item (postage)
    s.wait_for("Weight");
    for v in [
        "Ada Lovelace",
        "12 Analytical Way",
        "",
        "San Francisco",
        "CA",
        "94105",
        "Charles Babbage",
        "1 Difference Rd",
        "Apt 2",
        "Boston",
        "MA",
        "02108-1234",
        "3",
    ] {
        s.typ(v);
        s.send("\t");
    }
    // The vendor's live quote for first-class, 3 oz.
    s.wait("a quote", |t| t.contains("Quote: $"));
    s.send("\r");
    s.wait_for("Review");
}

fn balance_cents(w: &frank::counter::client::Session) -> u64 {
    let rt = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| rt.block_on(w.balance()))
        .unwrap()
        .registers
        .descending_cents
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_buy_print_and_verify_a_postage_label() {
    let mut r = rig(None).await;
    postage_to_review(&mut r.screen);
    r.screen.send("\r"); // confirm: authorize, then print
    let done = r.screen.wait("the outcome", |t| {
        t.contains("Printed postage") || t.contains("voided") || t.contains("Not issued")
    });
    assert!(done.contains("charged"), "{done}");
    // The label went to the virtual printer and was saved as a PNG.
    let deadline = Instant::now() + LONG;
    let png = loop {
        let found: Vec<_> = std::fs::read_dir(r.labels.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "png"))
            .collect();
        if let Some(p) = found.first() {
            break p.clone();
        }
        assert!(Instant::now() < deadline, "no label PNG was saved");
        std::thread::sleep(Duration::from_millis(50));
    };
    let payload =
        payload_from_png(&std::fs::read(&png).unwrap()).expect("the PNG's Data Matrix decodes");
    let mut keys = VendorKeys::new();
    keys.add(&r.vendor.key.to_bytes()).unwrap();
    let ind = verify_payload(&payload, &keys).expect("the printed indicium verifies");
    assert_eq!(
        ind.indicium.body.amount.get() + balance_cents(&r.watcher),
        FUNDS_CENTS
    );
    // The one-time rule on screen: no way to print it again.
    assert!(done.contains("cannot be printed again"), "{done}");
    // The balance in the status bar follows the vendor's.
    let b = balance_cents(&r.watcher);
    r.screen
        .wait_for(&format!("balance {}", frank::money::Cents::new(b).unwrap()));
    drop(r.printer);
}

/// The virtual printer without native Data Matrix (the indicium goes as a raster image) at
/// 4800 baud, so a label takes seconds to print and the link can be cut in the middle.
fn slow_raster_profile() -> String {
    let base = frank::printer::profile::shipped_source("virtual").unwrap();
    base.lines()
        .filter(|l| !l.starts_with("data_matrix_cn"))
        .map(|l| {
            if l.starts_with("baud") {
                "baud = 4800".to_string()
            } else if l.starts_with("throughput_bytes_per_s") {
                "throughput_bytes_per_s = 480".to_string()
            } else if l.starts_with("name") {
                "name = \"Slow raster test printer\"".to_string()
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_link_cut_mid_print_voids_the_label_and_restores_the_balance() {
    let mut r = rig(Some(&slow_raster_profile())).await;
    postage_to_review(&mut r.screen);
    r.screen.send("\r");
    // Cut once the gauge shows the label is under way but the raster indicium is not done.
    let percent = |t: &str| -> Option<u32> {
        let i = t.find("bytes  ")?;
        let rest = &t[i + 7..];
        let end = rest.find('%')?;
        rest[..end].trim().parse().ok()
    };
    r.screen.wait("printing under way", |t| {
        percent(t).is_some_and(|p| (20..60).contains(&p))
    });
    r.proxy.handle.cut();
    let shown = r.screen.wait_for("label voided");
    assert!(shown.contains("returned to balance"), "{shown}");
    // Heal: the counter reconnects and resumes; its void reaches the vendor.
    r.proxy.handle.heal();
    r.screen.wait_for("voided;");
    let deadline = Instant::now() + LONG;
    while balance_cents(&r.watcher) != FUNDS_CENTS {
        assert!(
            Instant::now() < deadline,
            "balance not restored: {}",
            balance_cents(&r.watcher)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    r.screen.wait_for(&format!(
        "balance {}",
        frank::money::Cents::new(FUNDS_CENTS).unwrap()
    ));
    // The printer was told to drop what it held, and no label completed.
    let stats = r.printer.stats();
    assert!(stats.clears >= 1, "{stats:?}");
}
