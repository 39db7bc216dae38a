//! Shared fixtures for integration tests: a real vendor on loopback with a real data directory.
#![allow(dead_code)]

pub mod backend;
pub mod procstat;

use frank::counter::client::{self, Session, VendorConn};
use frank::vendor_server::directory::Directory;
use frank::vendor_server::server::{VendorOptions, VendorServer};
use frank::vendor_server::{DB_FILE, DataDir};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::watch;

pub const CLERK: &str = "alice";
pub const PASSWORD: &str = "correct horse battery";

pub struct Vendor {
    pub dir: tempfile::TempDir,
    pub server: VendorServer,
    pub code: String,
    pub account_id: u64,
    pub addr: SocketAddr,
    pub key: ed25519_dalek::VerifyingKey,
}

/// A virtual printer (real pty) with `profile`, writing each label's PNG into `labels` when
/// given.
pub fn virtual_printer(
    profile: &frank::printer::profile::Profile,
    labels: Option<&std::path::Path>,
) -> frank::printer::emulator::EmulatorHandle {
    frank::printer::emulator::Emulator::spawn(
        profile,
        frank::printer::emulator::EmulatorOptions {
            baud: None,
            out_dir: labels.map(std::path::Path::to_path_buf),
            control_socket: None,
        },
    )
    .unwrap()
}

/// A vendor with one account and one clerk, listening on 127.0.0.1 (data-dir SQLite ledger).
pub async fn vendor() -> Vendor {
    vendor_with(VendorOptions::default()).await
}

/// [`vendor`] with a chosen ledger database and tuning.
pub async fn vendor_with(options: VendorOptions) -> Vendor {
    vendor_setup(options, |_, _, _| {}).await
}

/// [`vendor_with`], with `setup` run on the data directory, its directory database and the
/// account id before the server starts (more clerks, a vendor.toml, ...).
pub async fn vendor_setup(
    options: VendorOptions,
    setup: impl FnOnce(&DataDir, &mut Directory, u64) + Send,
) -> Vendor {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("vendor"));
    // On PostgreSQL the directory is in the database, and its calls block: set up on a thread
    // of its own, off the test's runtime.
    let database = options.database.clone();
    let (account_id, code) = std::thread::scope(|s| {
        s.spawn(|| {
            data.init_with(database.as_deref()).unwrap();
            let mut d =
                Directory::open_for(database.as_deref().unwrap_or_default(), &data.file(DB_FILE))
                    .unwrap();
            let (acct, _) = d.add_account("Test Post Office", 1).unwrap();
            let code = fleet_code(&mut d, acct.id);
            d.add_clerk(acct.id, CLERK, PASSWORD, false, 1).unwrap();
            setup(&data, &mut d, acct.id);
            (acct.id, code)
        })
        .join()
        .unwrap()
    });
    let server = VendorServer::start_with(&data, Some("127.0.0.1:0".parse().unwrap()), options)
        .await
        .unwrap();
    let addr = server.local_addr().unwrap();
    let key = server.public_key();
    Vendor {
        dir,
        server,
        code,
        account_id,
        addr,
        key,
    }
}

/// A fresh enrollment code of `account` that many terminals may use within a day (the code an
/// account starts with enrolls one); earlier codes stop working.
pub fn fleet_code(d: &mut Directory, account: u64) -> String {
    d.rotate_enrollment_code(
        account,
        frank::vendor_server::directory::CodePolicy {
            uses: 10_000,
            valid_ms: 24 * 3_600_000,
        },
        frank::clock::unix_ms(),
    )
    .unwrap()
    .code
}

/// Copies a vendor data directory (key, public key file, vendor.toml) for a second front on the
/// same database, without its `lock` (one front's own); the copy is 0700 like the original.
pub fn copy_data_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() == "lock" || !entry.file_type().unwrap().is_file() {
            continue;
        }
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
}

/// A process's resident memory (VmRSS) in MiB, 0 when it cannot be read.
pub fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

/// A loopback UDP address free a moment ago (for a child vendor to listen on).
pub fn free_udp_port() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

pub fn endpoint() -> quinn::Endpoint {
    client::client_endpoint("127.0.0.1:0".parse().unwrap()).unwrap()
}

pub struct Counter {
    pub endpoint: quinn::Endpoint,
    pub device_key: ed25519_dalek::SigningKey,
    pub terminal_id: u64,
    pub conn: VendorConn,
}

/// Enrolls a fresh terminal through `addr` (the vendor or a proxy in front of it).
pub async fn enrolled_counter(v: &Vendor, addr: SocketAddr) -> Counter {
    let endpoint = endpoint();
    let conn = client::connect(&endpoint, addr, v.key).await.unwrap();
    let device_key = frank::identity::new_signing_key().unwrap();
    let e = conn
        .enroll(&v.code, "counter-1", &device_key, &v.key)
        .await
        .unwrap();
    Counter {
        endpoint,
        device_key,
        terminal_id: e.terminal_id,
        conn,
    }
}

pub async fn logged_in(v: &Vendor, addr: SocketAddr) -> (Counter, Session) {
    let c = enrolled_counter(v, addr).await;
    let s = c
        .conn
        .login(c.terminal_id, &c.device_key, CLERK, PASSWORD)
        .await
        .unwrap();
    (c, s)
}

/// Longest wait for a fresh counter's link to come up, in ms.
pub const LINK_UP_MS_MAX: u64 = 10_000;

/// A logged-in counter whose link is Up on both ends: its own guard and the vendor's view.
pub async fn linked_counter(v: &Vendor) -> (Counter, Session, frank::link::driver::LinkHandle) {
    use frank::link::guard::LinkState;
    let limit = Duration::from_millis(LINK_UP_MS_MAX);
    let (c, s) = logged_in(v, v.addr).await;
    let link = s.start_link().unwrap();
    let mut mine = link.state.clone();
    wait_for(&mut mine, limit, "counter up", |s| *s == LinkState::Up).await;
    let view = v.server.terminal_link(c.terminal_id).unwrap();
    let mut theirs = view.link.state.clone();
    wait_for(&mut theirs, limit, "vendor up", |s| *s == LinkState::Up).await;
    (c, s, link)
}

/// Waits until `pred` holds for the watched value, or fails after `limit`.
pub async fn wait_for<T: Clone + std::fmt::Debug>(
    rx: &mut watch::Receiver<T>,
    limit: Duration,
    what: &str,
    pred: impl Fn(&T) -> bool,
) -> T {
    let r = tokio::time::timeout(limit, async {
        loop {
            let v = rx.borrow_and_update().clone();
            if pred(&v) {
                return v;
            }
            if rx.changed().await.is_err() {
                let v = rx.borrow().clone();
                if pred(&v) {
                    return v;
                }
                panic!("watch closed while waiting for {what}; last {v:?}");
            }
        }
    })
    .await;
    match r {
        Ok(v) => v,
        Err(_) => panic!(
            "timed out after {limit:?} waiting for {what}; last {:?}",
            rx.borrow()
        ),
    }
}

/// Longest wait for a child `frank vendor serve` to listen, in ms.
pub const VENDOR_START_MS_MAX: u64 = 20_000;

/// `frank vendor serve --data DATA --listen ADDR ARGS…` as a child process (killed on drop),
/// returned once it says it listens; its stdout keeps being drained.
pub async fn spawn_vendor_serve(
    data: &std::path::Path,
    addr: SocketAddr,
    args: &[&str],
) -> tokio::process::Child {
    vendor_serve_child(data, addr, args, "error", std::process::Stdio::null()).await
}

/// [`spawn_vendor_serve`] logging at info, without colours, to the file `log`.
pub async fn spawn_vendor_serve_logging(
    data: &std::path::Path,
    addr: SocketAddr,
    args: &[&str],
    log: &std::path::Path,
) -> tokio::process::Child {
    let file = std::fs::File::create(log).expect("the vendor's log file");
    vendor_serve_child(data, addr, args, "info", file.into()).await
}

async fn vendor_serve_child(
    data: &std::path::Path,
    addr: SocketAddr,
    args: &[&str],
    rust_log: &str,
    stderr: std::process::Stdio,
) -> tokio::process::Child {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(["vendor", "serve", "--data"])
        .arg(data)
        .args(["--listen", &addr.to_string()])
        .args(args)
        .env("RUST_LOG", rust_log)
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .expect("frank vendor serve starts");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    tokio::time::timeout(Duration::from_millis(VENDOR_START_MS_MAX), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if line.contains("vendor listening") {
                return;
            }
        }
        panic!("vendor exited before listening");
    })
    .await
    .expect("vendor did not start");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    child
}

/// A refusal's typed code; panics (the test fails) on any other error.
pub fn refusal_code(e: &client::ClientError) -> frank::wire::ErrorCode {
    e.code()
        .unwrap_or_else(|| panic!("expected a typed refusal, got {e}"))
}

/// A refusal's body; panics (the test fails) on any other error.
pub fn refusal(e: &client::ClientError) -> &frank::wire::ErrorBody {
    match e {
        client::ClientError::Response(frank::wire::ResponseError::Refused(b)) => b,
        other => panic!("expected a refusal, got {other}"),
    }
}

/// A child `frank vendor serve` (killed on drop) on a fresh data directory with one account,
/// its clerk [`CLERK`] and a code many terminals may use.
pub struct ChildVendor {
    pub dir: tempfile::TempDir,
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub key: ed25519_dalek::VerifyingKey,
    pub code: String,
}

/// Starts a [`ChildVendor`] whose account is named `account`; `setup` adds what else the
/// caller needs to the directory (a supervisor, say) before the vendor starts.
pub async fn child_vendor(account: &str, setup: impl FnOnce(&mut Directory, u64)) -> ChildVendor {
    child_vendor_with(account, &[], setup).await
}

/// [`child_vendor`] with more `frank vendor serve` arguments.
pub async fn child_vendor_with(
    account: &str,
    args: &[&str],
    setup: impl FnOnce(&mut Directory, u64),
) -> ChildVendor {
    let dir = tempfile::tempdir().expect("a temp dir");
    let data = DataDir::new(dir.path().join("vendor"));
    data.init().expect("vendor data dir");
    let code = {
        let mut d = Directory::open(&data.file(DB_FILE)).expect("directory");
        let (acct, _) = d.add_account(account, 1).expect("account");
        let code = fleet_code(&mut d, acct.id);
        d.add_clerk(acct.id, CLERK, PASSWORD, false, 1)
            .expect("clerk");
        setup(&mut d, acct.id);
        code
    };
    let key = data.load().expect("vendor key").public_key;
    let addr = free_udp_port();
    let child = spawn_vendor_serve(&data.path, addr, args).await;
    ChildVendor {
        dir,
        child,
        addr,
        key,
        code,
    }
}

/// A fresh terminal enrolled at the vendor on `addr` (pinned to `key`) with `code`, signed in
/// as [`CLERK`], its link Up on its side within `limit`, its account funded with `cents`.
pub async fn funded_terminal(
    (addr, key, code): (SocketAddr, ed25519_dalek::VerifyingKey, &str),
    name: &str,
    cents: u64,
    limit: Duration,
) -> (quinn::Endpoint, Session, frank::link::driver::LinkHandle) {
    use frank::link::guard::LinkState;
    let endpoint = endpoint();
    let conn = client::connect(&endpoint, addr, key).await.unwrap();
    let device_key = frank::identity::new_signing_key().unwrap();
    let e = conn.enroll(code, name, &device_key, &key).await.unwrap();
    let s = conn
        .login(e.terminal_id, &device_key, CLERK, PASSWORD)
        .await
        .unwrap();
    let link = s.start_link().unwrap();
    let mut up = link.state.clone();
    wait_for(&mut up, limit, "link up", |s| *s == LinkState::Up).await;
    fund_until_ok(&s, cents).await;
    (endpoint, s, link)
}

/// Funds the session's account with the simulator's test card, retrying while the vendor
/// cannot take it yet (a link just up, say).
pub async fn fund_until_ok(s: &Session, cents: u64) {
    for _ in 0..50 {
        if s.fund(
            rand::random(),
            cents,
            frank::wire::FundMethod::simulator_test_card(),
        )
        .await
        .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the account could not be funded");
}

/// A fresh terminal named `name` enrolled with `code` on the vendor at `addr` (pinned `key`),
/// `clerk` signed in and the counter's own link Up (the vendor's view follows within a few
/// keepalives: money requests answer `link_lapsed` until then).
pub async fn session_on(
    addr: SocketAddr,
    key: ed25519_dalek::VerifyingKey,
    code: &str,
    name: &str,
    clerk: &str,
    password: &str,
) -> (Session, frank::link::driver::LinkHandle) {
    use frank::link::guard::LinkState;
    let endpoint = endpoint();
    let conn = client::connect(&endpoint, addr, key).await.unwrap();
    let device_key = frank::identity::new_signing_key().unwrap();
    let e = conn.enroll(code, name, &device_key, &key).await.unwrap();
    let s = conn
        .login(e.terminal_id, &device_key, clerk, password)
        .await
        .unwrap();
    let link = s.start_link().unwrap();
    let mut up = link.state.clone();
    let limit = Duration::from_millis(LINK_UP_MS_MAX);
    wait_for(&mut up, limit, "link up", |s| *s == LinkState::Up).await;
    (s, link)
}

/// `frank ARGS…` run to its end: its stdout; fails the test with its stderr if it failed.
pub fn frank_ok(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("frank runs");
    assert!(
        out.status.success(),
        "frank {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// One sample of a vendor's metrics at `addr` (`name{labels}` as exposed), 0 when absent.
pub fn metric(addr: SocketAddr, series: &str) -> f64 {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(addr).expect("the metrics endpoint");
    c.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("a read timeout");
    c.write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n")
        .expect("the request");
    let mut text = String::new();
    c.read_to_string(&mut text).expect("the scrape");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// A [`ChildVendor`] serving its metrics (`--metrics`) on a free loopback port: the vendor and
/// that address.
pub async fn child_vendor_with_metrics(account: &str) -> (ChildVendor, SocketAddr) {
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port");
    let v = child_vendor_with(account, &["--metrics", &metrics.to_string()], |_, _| {}).await;
    (v, metrics)
}

/// `frank vendor release-key init --out PATH`: a new release key file; its fingerprint.
pub fn release_key_init(path: &std::path::Path) -> String {
    let out = frank_ok(&[
        "vendor",
        "release-key",
        "init",
        "--out",
        path.to_str().expect("a UTF-8 path"),
    ]);
    out.rsplit(": ")
        .next()
        .expect("the fingerprint line")
        .trim()
        .to_string()
}

/// Longest wait for the vendor to offer (or stop offering) a bundle it was given, in ms (it
/// reloads its shelf within a second; CI machines are slower).
pub const BUNDLE_OFFER_WAIT_MS_MAX: u64 = 60_000;

/// Waits until the vendor offers the bundle `name` at `version` to `s` (`None`: offers no
/// `name`); fails the test after [`BUNDLE_OFFER_WAIT_MS_MAX`].
pub async fn wait_offered(s: &Session, name: &str, version: Option<&str>) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(BUNDLE_OFFER_WAIT_MS_MAX);
    loop {
        let list: frank::wire::BundleList = s
            .send(&frank::wire::Request::Bundles(
                frank::wire::BundlesRequest {},
            ))
            .await
            .expect("the bundle list");
        let now = list.manifests.iter().find_map(|signed| {
            let m: frank::bundle::Manifest =
                ciborium::from_reader(signed.manifest.as_slice()).ok()?;
            (m.name == name).then_some(m.version)
        });
        if now.as_deref() == version {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the vendor never offered {name} {version:?} (offers {now:?})"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
