//! End to end in a real pseudo-terminal: the `frank counter` binary (ratatui UI + backend) in a
//! pty read back through a vt100 parser, against a real vendor on loopback (behind a fault
//! proxy) and the virtual printer on another pty.
//! 1. sign in, buy a postage label, print it, decode the saved PNG's Data Matrix, verify it;
//! 2. cut the link mid-print: the screen says the label was voided and the balance returns.

mod pty_support;
mod support;

use frank::faultproxy::FaultProxy;
use frank::indicium::verify::{VendorKeys, payload_from_png, verify_payload};
use frank::link::LinkState;
use frank::printer::emulator::{Emulator, EmulatorHandle, EmulatorOptions};
use frank::wire::FundMethod;
use pty_support::*;
use std::time::{Duration, Instant};
use support::*;

const FUNDS_CENTS: u64 = 5_000;

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
