//! Issue 17 item 1 from outside: a child `frank vendor serve`, bundles published with the real
//! `frank vendor release-key init` and `frank vendor bundle add|retire`, and real
//! `frank counter --headless` processes that download, verify and apply them over QUIC; every
//! tampering case refused with its reason and nothing changed; a counter release staged,
//! applied at the next start, and rolled back when it does not start.

mod support;

use frank::counter::client;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt};

/// Longest wait for a counter process to finish its bundle check, in ms.
const COUNTER_WAIT_MS_MAX: u64 = 60_000;
/// Longest wait for a counter to exit after Ctrl-C, in ms.
const EXIT_WAIT_MS_MAX: u64 = 10_000;

const RATES: &str = include_str!("../rates/sample-rates.toml");

fn frank(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .unwrap()
}

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A vendor with a release key, and a session to watch what it offers.
struct Setup {
    v: support::ChildVendor,
    metrics: std::net::SocketAddr,
    work: tempfile::TempDir,
    release_key: PathBuf,
    release_fp: String,
    watcher: client::Session,
    _link: frank::link::driver::LinkHandle,
}

impl Setup {
    async fn new() -> Setup {
        let metrics = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let v = support::child_vendor_with(
            "Bundle PO",
            &["--metrics", &metrics.to_string()],
            |_, _| {},
        )
        .await;
        let work = tempfile::tempdir().unwrap();
        let release_key = work.path().join("release-key.pem");
        let out = ok(frank(&[
            "vendor",
            "release-key",
            "init",
            "--out",
            release_key.to_str().unwrap(),
        ]));
        let release_fp = out
            .lines()
            .find_map(|l| {
                l.strip_prefix("release fingerprint (pin this on every counter as release_pin): ")
            })
            .expect("the fingerprint line")
            .to_string();
        let (watcher, link) = support::session_on(
            v.addr,
            v.key,
            &v.code,
            "watcher",
            support::CLERK,
            support::PASSWORD,
        )
        .await;
        Setup {
            v,
            metrics,
            work,
            release_key,
            release_fp,
            watcher,
            _link: link,
        }
    }

    fn data(&self) -> PathBuf {
        self.v.dir.path().join("vendor")
    }

    /// `frank vendor bundle add` with files written into the work folder.
    fn add(
        &self,
        name: &str,
        kind: &str,
        version: &str,
        files: &[(&str, &[u8])],
    ) -> std::process::Output {
        let dir = self.work.path().join(format!("src-{name}-{version}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = ["vendor", "bundle", "add", "--data"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.push(self.data().to_string_lossy().into());
        args.extend(
            [name, "--kind", kind, "--version", version, "--release-key"].map(String::from),
        );
        args.push(self.release_key.to_string_lossy().into());
        for (n, b) in files {
            let p = dir.join(n);
            std::fs::write(&p, b).unwrap();
            args.push(p.to_string_lossy().into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        frank(&refs)
    }

    /// One sample of the vendor's metrics (`name{labels}` as exposed), 0 when absent.
    fn metric(&self, series: &str) -> f64 {
        support::metric(self.metrics, series)
    }

    /// Waits until the vendor offers `name` at `version` (None: does not offer `name`).
    async fn offered(&self, name: &str, version: Option<&str>) {
        support::wait_offered(&self.watcher, name, version).await;
    }
}

/// One run of a headless counter until its bundle check ends: its stdout and stderr lines.
struct Run {
    stdout: Vec<String>,
    stderr: String,
}

impl Run {
    fn has(&self, text: &str) -> bool {
        self.stdout.iter().any(|l| l.contains(text))
    }

    /// Fails with both outputs unless a stdout line contains `text`.
    fn expect(&self, text: &str) {
        assert!(
            self.has(text),
            "no line with {text:?}: {:?} {}",
            self.stdout,
            self.stderr
        );
    }

    /// Fails with stderr unless stderr contains `text`.
    fn expect_err(&self, text: &str) {
        assert!(
            self.stderr.contains(text),
            "stderr without {text:?}: {}",
            self.stderr
        );
    }
}

/// Runs `bin counter --headless` on the terminal folder `home` until it printed its bundle
/// check (or, with `until` set, a line containing it), then stops it.
async fn run_counter(s: &Setup, bin: &Path, home: &Path, release_fp: &str, until: &str) -> Run {
    std::fs::create_dir_all(home).unwrap();
    let mut child = tokio::process::Command::new(bin)
        .args([
            "counter",
            "--headless",
            "--clerk",
            support::CLERK,
            "--vendor",
        ])
        .arg(s.v.addr.to_string())
        .args(["--pin", &frank::identity::fingerprint(&s.v.key)])
        .args(["--release-pin", release_fp])
        .args([
            "--enroll-code",
            &s.v.code,
            "--name",
            "bundle-counter",
            "--data",
        ])
        .arg(home.join("terminal"))
        .env("FRANK_PASSWORD", support::PASSWORD)
        .env("XDG_CONFIG_HOME", home.join("config"))
        .env("XDG_STATE_HOME", home.join("state"))
        .env("XDG_DATA_HOME", home.join("share"))
        .env("MARKER", home.join("marker"))
        // The bundle module's info lines: what was taken, and the figures at exit.
        .env("RUST_LOG", "error,frank::counter::bundles=info")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = Vec::new();
    let _ = tokio::time::timeout(Duration::from_millis(COUNTER_WAIT_MS_MAX), async {
        while let Ok(Some(l)) = lines.next_line().await {
            let done = l.contains(until);
            stdout.push(l);
            if done {
                return;
            }
        }
    })
    .await;
    // Ctrl-C, as a person stops it: the counter logs its figures and exits.
    if let Some(pid) = child.id() {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid as i32),
            nix::sys::signal::Signal::SIGINT,
        );
    }
    if tokio::time::timeout(Duration::from_millis(EXIT_WAIT_MS_MAX), child.wait())
        .await
        .is_err()
    {
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut stderr).await;
    }
    Run {
        stdout,
        stderr: plain(&stderr),
    }
}

/// `text` without the terminal colour sequences (`ESC [ … m`) the log writer puts around
/// field names.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d == 'm' {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

const CHECKED: &str = "** bundles checked";

fn good(home: &Path, name: &str) -> Option<String> {
    std::fs::read_to_string(home.join("terminal/bundles").join(name).join("good")).ok()
}

fn installed_file(home: &Path, name: &str, file: &str) -> Vec<u8> {
    let v = good(home, name).unwrap();
    std::fs::read(
        home.join("terminal/bundles")
            .join(name)
            .join(v)
            .join("files")
            .join(file),
    )
    .unwrap()
}

fn rates_v(label: &str) -> String {
    RATES.replace("SAMPLE RATES - not USPS prices", label)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_bundles_are_downloaded_verified_and_applied_by_a_real_counter() {
    let s = Setup::new().await;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_frank"));
    let home = s.work.path().join("counter");
    // Before any bundle: the counter checks, takes nothing, and goes on.
    let run = s.check(&bin, &home).await;
    run.expect("** bundles checked: 0 taken, 0 refused, 0 current");

    let rates = rates_v("Bundle rates 2");
    ok(s.add("rates", "rates", "2", &[("rates.toml", rates.as_bytes())]));
    ok(s.add(
        "night",
        "theme",
        "1",
        &[("theme.toml", b"title = \"bold magenta\"\n")],
    ));
    let profile = b"inherits = \"generic-80mm\"\nname = \"Shop printer\"\n";
    ok(s.add(
        "shop-profiles",
        "profiles",
        "1.0.1",
        &[("shop-80.toml", profile)],
    ));
    let listed = ok(frank(&[
        "vendor",
        "bundle",
        "list",
        "--data",
        s.data().to_str().unwrap(),
    ]));
    assert!(
        listed.contains("rates") && listed.contains("current"),
        "{listed}"
    );
    s.offered("rates", Some("2")).await;
    s.offered("night", Some("1")).await;
    s.offered("shop-profiles", Some("1.0.1")).await;

    let run = s.check(&bin, &home).await;
    for line in [
        "** bundle rates 2 taken",
        "** bundle night 1 taken",
        "** bundle shop-profiles 1.0.1 taken",
        "** bundles checked: 3 taken, 0 refused, 0 current",
    ] {
        run.expect(line);
    }
    assert_eq!(good(&home, "rates").as_deref(), Some("2"));
    // Its exit log line has the bundle figures: downloads, bytes, refusals, versions in use.
    let exit = run
        .stderr
        .lines()
        .find(|l| l.contains("figures at exit"))
        .unwrap_or_else(|| panic!("no exit figures: {}", run.stderr));
    let bytes = rates.len() + profile.len() + "title = \"bold magenta\"\n".len();
    for field in [
        "bundle_files_downloaded=3".to_string(),
        format!("bundle_bytes_downloaded={bytes}"),
        "bundles_taken=3".into(),
        "bundles_refused=0".into(),
        "bundles_in_use=night 1, rates 2, shop-profiles 1.0.1".into(),
        "lapses=0".into(),
    ] {
        assert!(exit.contains(&field), "{field}: {exit}");
    }
    // The vendor's metrics count the downloads.
    assert_eq!(
        s.metric("frank_bundle_downloads_total{outcome=\"complete\"}"),
        3.0
    );
    let bytes = (rates.len() + profile.len() + "title = \"bold magenta\"\n".len()) as f64;
    assert_eq!(s.metric("frank_bundle_bytes_sent_total"), bytes);
    assert!(s.metric("frank_bundle_lists_total") >= 2.0);
    assert_eq!(
        installed_file(&home, "rates", "rates.toml"),
        rates.as_bytes()
    );
    assert_eq!(
        installed_file(&home, "shop-profiles", "shop-80.toml"),
        profile
    );

    // What the counter uses comes from them: the rate table, the theme, the profile.
    let store = frank::counter::bundles::Store::new(
        &home.join("terminal"),
        frank::identity::parse_fingerprint(&s.release_fp).unwrap(),
    );
    let (label, table) = frank::counter::bundles::installed_rates(&store).unwrap();
    assert_eq!(label, "rates 2");
    assert_eq!(table.label(), "Bundle rates 2");
    assert!(frank::counter::bundles::installed_theme(&store, "night").is_some());
    assert!(frank::counter::bundles::installed_profile(&store, "shop-80").is_some());

    // The next start: everything current, nothing downloaded again.
    let run = s.check(&bin, &home).await;
    run.expect("bundle rates 2 (rates) in use");
    run.expect("** bundles checked: 0 taken, 0 refused, 3 current");

    // The vendor has none any more: the counter keeps the last good ones.
    for name in ["rates", "night", "shop-profiles"] {
        s.retire(name, None);
        s.offered(name, None).await;
    }
    let run = s.check(&bin, &home).await;
    run.expect("** bundles checked: 0 taken, 0 refused, 0 current");
    run.expect("bundle rates 2 (rates) in use");
    assert_eq!(
        installed_file(&home, "rates", "rates.toml"),
        rates.as_bytes()
    );
}

/// Everything under the counter's bundles folder: paths and bytes.
fn snapshot(home: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(p: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(rd) = std::fs::read_dir(p) else { return };
        for e in rd.flatten() {
            if e.file_type().unwrap().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&home.join("terminal/bundles"), &mut out);
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_bundles_are_refused_with_the_reason_and_change_nothing() {
    let s = Setup::new().await;
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_frank"));
    let home = s.work.path().join("counter");
    let rates1 = rates_v("Rates one");
    ok(s.add("rates", "rates", "1", &[("rates.toml", rates1.as_bytes())]));
    s.offered("rates", Some("1")).await;
    let run = s.check(&bin, &home).await;
    run.expect("** bundle rates 1 taken");
    let before = snapshot(&home);

    // One flipped byte in a file, after the vendor checked it (on its disk, on the way).
    let rates2 = rates_v("Rates two");
    ok(s.add("rates", "rates", "2", &[("rates.toml", rates2.as_bytes())]));
    s.offered("rates", Some("2")).await;
    let served = s.data().join("bundles/rates/2/files/rates.toml");
    let mut bytes = std::fs::read(&served).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(&served, &bytes).unwrap();
    let run = s.check(&bin, &home).await;
    run.expect("** bundle rates refused: file rates.toml: its SHA-256 is not the manifest's (the file was changed)");
    run.expect("0 taken, 1 refused");
    assert!(
        run.stderr.lines().any(|l| l.contains("figures at exit")
            && l.contains("bundles_refused=1")
            && l.contains("bundles_in_use=rates 1")),
        "the refusal is in the exit figures: {}",
        run.stderr
    );
    assert_eq!(snapshot(&home), before, "a refused bundle changed nothing");

    // A counter pinning another release key: the manifest does not verify.
    let other = s.work.path().join("other-key.pem");
    let out = ok(frank(&[
        "vendor",
        "release-key",
        "init",
        "--out",
        other.to_str().unwrap(),
    ]));
    let other_fp = out.rsplit(": ").next().unwrap().trim().to_string();
    let home2 = s.work.path().join("counter-2");
    let run = run_counter(&s, &bin, &home2, &other_fp, CHECKED).await;
    run.expect(
        "** bundle (unverified) refused: the manifest is not signed by the pinned release key",
    );
    assert!(
        snapshot(&home2).is_empty(),
        "nothing of an unverified bundle was kept"
    );
    // And a vendor never publishes under a key other than the one it pins.
    let refused = s.add_with_key(&other);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("this vendor pins release key"));

    // A replayed older manifest: the counter has 3, the vendor offers 1 again.
    std::fs::write(&served, rates2.as_bytes()).unwrap();
    let rates3 = rates_v("Rates three");
    ok(s.add("rates", "rates", "3", &[("rates.toml", rates3.as_bytes())]));
    s.offered("rates", Some("3")).await;
    let run = s.check(&bin, &home).await;
    run.expect("** bundle rates 3 taken");
    let before = snapshot(&home);
    for v in ["3", "2"] {
        s.retire("rates", Some(v));
    }
    s.offered("rates", Some("1")).await;
    let run = s.check(&bin, &home).await;
    run.expect("** bundle rates refused: version 1 of rates is not newer than the version 3 in use (a replayed or older manifest)");
    assert_eq!(
        snapshot(&home),
        before,
        "a replayed manifest changed nothing"
    );
    assert_eq!(
        installed_file(&home, "rates", "rates.toml"),
        rates3.as_bytes()
    );
}

impl Setup {
    /// `frank vendor bundle retire NAME [VERSION]` (fails the test if it fails).
    fn retire(&self, name: &str, version: Option<&str>) {
        let data = self.data();
        let mut args = vec![
            "vendor",
            "bundle",
            "retire",
            "--data",
            data.to_str().unwrap(),
            name,
        ];
        args.extend(version);
        ok(frank(&args));
    }

    /// A headless counter on `home` run until its bundle check ends, pinning this release key.
    async fn check(&self, bin: &Path, home: &Path) -> Run {
        run_counter(self, bin, home, &self.release_fp, CHECKED).await
    }

    fn add_with_key(&self, key: &Path) -> std::process::Output {
        let f = self.work.path().join("rates.toml");
        std::fs::write(&f, RATES).unwrap();
        frank(&[
            "vendor",
            "bundle",
            "add",
            "--data",
            self.data().to_str().unwrap(),
            "rates",
            "--kind",
            "rates",
            "--version",
            "9",
            "--release-key",
            key.to_str().unwrap(),
            f.to_str().unwrap(),
        ])
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counter_release_is_staged_applied_at_the_next_start_and_rolled_back_when_bad() {
    let s = Setup::new().await;
    // The counter runs from its own copy of the binary: that copy is what a release replaces.
    let bin_dir = s.work.path().join("bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    let bin = bin_dir.join("frank");
    std::fs::copy(env!("CARGO_BIN_EXE_frank"), &bin).unwrap();
    let original = std::fs::read(&bin).unwrap();
    let home = s.work.path().join("counter");
    let name = format!("frank-{}", frank::counter::bundles::this_target());

    // A bad release: a binary that exits non-zero at start.
    let bad = b"#!/bin/sh\nexit 3\n";
    ok(s.add(&name, "release", "0.2.0", &[("frank", bad)]));
    s.offered(&name, Some("0.2.0")).await;
    let run = s.check(&bin, &home).await;
    run.expect(&format!("** bundle {name} 0.2.0 taken"));
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        original,
        "staged, not applied while running"
    );
    // The next start applies it, sees it fail, and rolls back; this counter goes on.
    let run = s.check(&bin, &home).await;
    run.expect_err("release 0.2.0 refused: it exited with status 3 at start; rolled back to the previous binary");
    run.expect("** bundles checked");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        original,
        "the previous binary is back"
    );
    // It is not tried again.
    let run = s.check(&bin, &home).await;
    assert!(!run.stderr.contains("release 0.2.0"), "{}", run.stderr);

    // A release that passes its --version check but exits non-zero when it really starts.
    let crashes = b"#!/bin/sh\nif [ \"$1\" = --version ]; then echo \"frank 0.2.1\"; exit 0; fi\necho \"release 0.2.1 ran: $*\" >> \"$MARKER\"\nexit 5\n";
    ok(s.add(&name, "release", "0.2.1", &[("frank", crashes)]));
    s.offered(&name, Some("0.2.1")).await;
    let run = s.check(&bin, &home).await;
    run.expect(&format!("** bundle {name} 0.2.1 taken"));
    let run = s.check(&bin, &home).await;
    run.expect_err("release 0.2.1 applied; starting it");
    run.expect_err("release 0.2.1 refused: it exited with status 5 at start; rolled back to the previous binary");
    assert!(
        std::fs::read_to_string(home.join("marker"))
            .unwrap()
            .contains("release 0.2.1 ran: counter --headless"),
        "the new binary really ran"
    );
    // The previous binary is back and goes on with this start.
    assert_eq!(std::fs::read(&bin).unwrap(), original);
    run.expect("** bundles checked");
    assert_eq!(
        frank::counter::bundles::refused_release(&home.join("terminal"), "0.2.1").as_deref(),
        Some("it exited with status 5 at start")
    );
    // Remembered: the next start runs the previous binary without trying it again.
    let run = s.check(&bin, &home).await;
    assert!(!run.stderr.contains("release 0.2.1"), "{}", run.stderr);
    run.expect("** bundles checked");
    std::fs::remove_file(home.join("marker")).unwrap();

    // A good release: answers --version with its version, then runs with the same arguments.
    let good_bin = b"#!/bin/sh\nif [ \"$1\" = --version ]; then echo \"frank 0.3.0\"; exit 0; fi\necho \"release 0.3.0 started: $*\" > \"$MARKER\"\necho \"** bundles checked: by the new release\"\n";
    ok(s.add(&name, "release", "0.3.0", &[("frank", good_bin)]));
    s.offered(&name, Some("0.3.0")).await;
    let run = s.check(&bin, &home).await;
    run.expect(&format!("** bundle {name} 0.3.0 taken"));
    assert_eq!(std::fs::read(&bin).unwrap(), original);
    let run = s.check(&bin, &home).await;
    run.expect_err("release 0.3.0 applied; starting it");
    run.expect("by the new release");
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        good_bin,
        "the binary was replaced"
    );
    assert_eq!(
        std::fs::read(bin_dir.join("frank.previous")).unwrap(),
        original,
        "the old one is kept"
    );
    let marker = std::fs::read_to_string(home.join("marker")).unwrap();
    assert!(
        marker.contains("counter --headless --clerk alice"),
        "{marker}"
    );
}
