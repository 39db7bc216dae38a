//! Issue 17 item 1: a counter keeps printing with the last good bundle when the vendor has
//! none. A profiles bundle is published with the real CLI and taken by the `frank counter`
//! binary (headless); the vendor then retires it, and the counter UI in a real pty, its printer
//! profile found only in that bundle, prints a postage label on the virtual printer that
//! decodes and verifies.

mod pty_support;
mod support;

use frank::indicium::verify::{VendorKeys, payload_from_png, verify_payload};
use frank::link::LinkState;

use pty_support::*;
use std::time::Duration;
use support::*;

const FUNDS_CENTS: u64 = 5_000;
/// Longest wait for the vendor to offer (or stop offering) a bundle, and for the headless
/// counter to take it, in ms.
const WAIT_MS_MAX: u64 = 60_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_prints_with_the_last_good_bundle_when_the_vendor_has_none() {
    let vendor = vendor().await;
    let data = vendor.dir.path().join("vendor");
    let (_c, watcher) = logged_in(&vendor, vendor.addr).await;
    let watcher_link = watcher.start_link().unwrap();
    let mut up = watcher_link.state.clone();
    wait_for(&mut up, LONG, "watcher up", |s| *s == LinkState::Up).await;
    fund_until_ok(&watcher, FUNDS_CENTS).await;

    // A profile that exists only in a bundle.
    let home = tempfile::tempdir().unwrap();
    let key = home.path().join("release-key.pem");
    let release_fp = release_key_init(&key);
    let profile = home.path().join("shop-virtual.toml");
    std::fs::write(
        &profile,
        "inherits = \"virtual\"\nname = \"Shop virtual printer\"\n",
    )
    .unwrap();
    frank_ok(&[
        "vendor",
        "bundle",
        "add",
        "--data",
        data.to_str().unwrap(),
        "shop-profiles",
        "--kind",
        "profiles",
        "--version",
        "1",
        "--release-key",
        key.to_str().unwrap(),
        profile.to_str().unwrap(),
    ]);
    wait_offered(&watcher, "shop-profiles", Some("1")).await;
    std::fs::remove_file(&profile).unwrap();

    // The counter takes it (the headless run of the same terminal folder).
    let terminal = home.path().join("terminal");
    let mut headless = tokio::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(["counter", "--headless", "--clerk", CLERK, "--vendor"])
        .arg(vendor.addr.to_string())
        .args(["--pin", &frank::identity::fingerprint(&vendor.key)])
        .args(["--release-pin", &release_fp, "--enroll-code", &vendor.code])
        .arg("--data")
        .arg(&terminal)
        .env("FRANK_PASSWORD", PASSWORD)
        .env("XDG_CONFIG_HOME", home.path().join("config"))
        .env("XDG_STATE_HOME", home.path().join("state"))
        .env("XDG_DATA_HOME", home.path().join("data"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(headless.stdout.take().unwrap()).lines();
        let taken = tokio::time::timeout(Duration::from_millis(WAIT_MS_MAX), async {
            while let Ok(Some(l)) = lines.next_line().await {
                if l.contains("** bundle shop-profiles 1 taken") {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(taken, Ok(true), "the counter took the profiles bundle");
    }
    let _ = headless.start_kill();
    let _ = headless.wait().await;

    // The vendor has none any more.
    frank_ok(&[
        "vendor",
        "bundle",
        "retire",
        "--data",
        data.to_str().unwrap(),
        "shop-profiles",
    ]);
    wait_offered(&watcher, "shop-profiles", None).await;

    // The counter UI with that profile prints and its label verifies.
    let labels = tempfile::tempdir().unwrap();
    let printer = virtual_printer(
        &frank::printer::profile::shipped("virtual").unwrap(),
        Some(labels.path()),
    );
    let args: Vec<String> = [
        "counter",
        "--vendor",
        &vendor.addr.to_string(),
        "--pin",
        &frank::identity::fingerprint(&vendor.key),
        "--data",
        terminal.to_str().unwrap(),
        "--origin-zip",
        "94105",
        "--printer",
        &printer.device_path().display().to_string(),
        "--profile",
        "shop-virtual",
        "--release-pin",
        &release_fp,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut screen = Screen::spawn_signed_in(&args, home.path(), CLERK, PASSWORD);
    postage_to_review(&mut screen);
    screen.send("\r");
    let done = screen.wait("the outcome", |t| {
        t.contains("charged.") || t.contains("returned to balance") || t.contains("Not issued")
    });
    assert!(done.contains("charged"), "{done}");
    let png = wait_for_png(labels.path());
    let payload = payload_from_png(&std::fs::read(&png).unwrap()).expect("the Data Matrix decodes");
    let mut keys = VendorKeys::new();
    keys.add(&vendor.key.to_bytes()).unwrap();
    verify_payload(&payload, &keys).expect("the printed item verifies");
    drop(printer);
}
