//! Issue 14: two `frank vendor serve` processes ("fronts") on one PostgreSQL database, each with
//! a copy of one data directory (key, public key file, vendor.toml) and nothing else shared: the
//! directory, the sessions and the ledger are all in the database.
//!
//! A terminal enrolled on A signs in on B; a session moves from one front to the other by
//! `resume`; the front it left closes its connection (superseded), so a terminal is never live
//! on both; a supervisor on A sees the terminals live on B; loadgen on both at once leaves no
//! duplicate serial, a verifying audit chain and conserved money.

#[path = "support/postgres.rs"]
mod pg;
mod support;

use frank::counter::client::{self, Session, VendorConn};
use frank::counter::loadgen::{self, LoadgenConfig};
use frank::ledger::acks;
use frank::ledger::postgres::{PostgresConfig, PostgresStore};
use frank::ledger::{LedgerLimits, LedgerStore, verify_audit};
use frank::link::guard::LinkState;
use frank::vendor_server::directory::Directory;
use frank::vendor_server::server::CLOSE_SUPERSEDED;
use frank::vendor_server::{DB_FILE, DataDir, LEDGER_FILE};
use frank::wire::{MonitorFrame, TerminalRow};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const SUPERVISOR: &str = "sam";

struct Fronts {
    dir: tempfile::TempDir,
    url: String,
    a: SocketAddr,
    b: SocketAddr,
    key: ed25519_dalek::VerifyingKey,
    code: String,
    account: u64,
    _children: Vec<tokio::process::Child>,
}

fn free_addr() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Two fronts on a fresh database, one account with clerk `alice`, supervisor `sam` and a
/// code for many terminals.
async fn two_fronts() -> Fronts {
    let url = pg::database().await;
    let dir = tempfile::tempdir().unwrap();
    let (data_a, data_b) = (
        DataDir::new(dir.path().join("a")),
        DataDir::new(dir.path().join("b")),
    );
    let (init_url, init_dir) = (url.clone(), data_a.clone());
    let (account, code) = tokio::task::spawn_blocking(move || {
        init_dir.init_with(Some(&init_url)).unwrap();
        let mut d = Directory::open_postgres(&init_url).unwrap();
        let (acct, _) = d.add_account("Main Street PO", 1).unwrap();
        d.add_clerk(acct.id, support::CLERK, support::PASSWORD, false, 1)
            .unwrap();
        d.add_clerk(acct.id, SUPERVISOR, support::PASSWORD, true, 1)
            .unwrap();
        (acct.id, support::fleet_code(&mut d, acct.id))
    })
    .await
    .unwrap();
    for f in [DB_FILE, LEDGER_FILE] {
        assert!(!data_a.file(f).exists(), "{f} made in PostgreSQL mode");
    }
    support::copy_data_dir(&data_a.path, &data_b.path);
    let (a, b) = (free_addr(), free_addr());
    let args = ["--database", url.as_str()];
    let children = vec![
        support::spawn_vendor_serve(&data_a.path, a, &args).await,
        support::spawn_vendor_serve(&data_b.path, b, &args).await,
    ];
    let key = data_a.load().unwrap().public_key;
    Fronts {
        dir,
        url,
        a,
        b,
        key,
        code,
        account,
        _children: children,
    }
}

async fn connect(f: &Fronts, front: SocketAddr) -> (quinn::Endpoint, VendorConn) {
    let endpoint = support::endpoint();
    let conn = client::connect(&endpoint, front, f.key).await.unwrap();
    (endpoint, conn)
}

async fn enroll(f: &Fronts, front: SocketAddr, name: &str) -> (u64, ed25519_dalek::SigningKey) {
    let (_e, conn) = connect(f, front).await;
    let device_key = frank::identity::new_signing_key().unwrap();
    let e = conn
        .enroll(&f.code, name, &device_key, &f.key)
        .await
        .unwrap();
    (e.terminal_id, device_key)
}

async fn wait_up(s: &Session) -> frank::link::driver::LinkHandle {
    let link = s.start_link().unwrap();
    let mut st = link.state.clone();
    support::wait_for(&mut st, Duration::from_secs(10), "link up", |s| {
        *s == LinkState::Up
    })
    .await;
    link
}

/// Reads monitor frames until `want` holds for the row of `terminal` (bounded).
async fn row_until(
    stream: &mut client::MonitorStream,
    snapshot: &MonitorFrame,
    terminal: u64,
    what: &str,
    want: impl Fn(&TerminalRow) -> bool,
) -> TerminalRow {
    let mut last = snapshot
        .rows
        .iter()
        .find(|r| r.terminal_id == terminal)
        .cloned();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !last.as_ref().is_some_and(&want) {
        let left = deadline.saturating_duration_since(Instant::now());
        let frame = tokio::time::timeout(left, stream.next())
            .await
            .unwrap_or_else(|_| panic!("{what}: last row {last:?}"))
            .unwrap()
            .expect("the monitor stream ended");
        if let Some(r) = frame.rows.into_iter().find(|r| r.terminal_id == terminal) {
            last = Some(r);
        }
    }
    last.unwrap()
}

/// Waits for `conn` to be closed by the vendor as superseded; returns how long it took.
async fn superseded(conn: &VendorConn, started: Instant) -> Duration {
    let reason = tokio::time::timeout(Duration::from_secs(5), conn.conn.closed())
        .await
        .expect("the superseded connection was not closed within 5 s");
    match reason {
        quinn::ConnectionError::ApplicationClosed(c) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(CLOSE_SUPERSEDED))
        }
        other => panic!("closed for another reason: {other:?}"),
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_terminal_moves_between_fronts_and_is_live_on_one_only_issue_14() {
    let f = two_fronts().await;
    // Enrolled on A, signs in on B.
    let (t1, key1) = enroll(&f, f.a, "window 1").await;
    let (_eb, conn_b) = connect(&f, f.b).await;
    let on_b = conn_b
        .login(t1, &key1, support::CLERK, support::PASSWORD)
        .await
        .expect("a terminal enrolled on A signs in on B");
    assert_eq!(on_b.account_id, f.account);
    let _link_b = wait_up(&on_b).await;
    support::fund_until_ok(&on_b, 1_000).await;

    // A supervisor on A sees the terminal live on B: link up, the clerk signed in.
    let (t_sup, key_sup) = enroll(&f, f.a, "back office").await;
    let (_ea, conn_sup) = connect(&f, f.a).await;
    let sup = conn_sup
        .login(t_sup, &key_sup, SUPERVISOR, support::PASSWORD)
        .await
        .unwrap();
    let _link_sup = wait_up(&sup).await;
    let (mut stream, snapshot) = sup.subscribe_terminals().await.unwrap();
    let row = row_until(&mut stream, &snapshot, t1, "A shows B's terminal up", |r| {
        r.connected && r.link == "up"
    })
    .await;
    assert_eq!(row.clerk.as_deref(), Some(support::CLERK));

    // The session moves to A by resume; B closes its connection as superseded.
    let (_ea2, conn_a) = connect(&f, f.a).await;
    let started = Instant::now();
    let on_a = conn_a
        .resume(&on_b, &key1)
        .await
        .expect("a session bound on B resumes on A");
    assert_eq!(on_a.session_id, on_b.session_id);
    let took = superseded(&conn_b, started).await;
    println!("supersede_ms={}", took.as_millis());
    let _link_a = wait_up(&on_a).await;
    // The moved session moves money on A.
    let balance = on_a.balance().await.unwrap();
    assert_eq!(balance.registers.descending_cents, 1_000);
    // B no longer knows the session as live: a resume of the old connection's session on B
    // takes it back (it is the same session), superseding A — never both live.
    let (_eb2, conn_b2) = connect(&f, f.b).await;
    let started = Instant::now();
    let back_on_b = conn_b2.resume(&on_a, &key1).await.unwrap();
    superseded(&conn_a, started).await;
    let _link_b2 = wait_up(&back_on_b).await;
    // A fresh login on A supersedes B's connection too.
    let (_ea3, conn_a3) = connect(&f, f.a).await;
    let started = Instant::now();
    let fresh = conn_a3
        .login(t1, &key1, support::CLERK, support::PASSWORD)
        .await
        .unwrap();
    assert_ne!(fresh.session_id, on_b.session_id);
    superseded(&conn_b2, started).await;
    // The supervisor's row follows the terminal to A and stays up.
    let _link_fresh = wait_up(&fresh).await;
    row_until(&mut stream, &snapshot, t1, "the terminal up on A", |r| {
        r.connected && r.link == "up"
    })
    .await;
    // The old session is gone everywhere: its resume is refused on both fronts.
    for front in [f.a, f.b] {
        let (_e, c) = connect(&f, front).await;
        assert!(c.resume(&on_b, &key1).await.is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loadgen_on_both_fronts_keeps_one_ledger_whole_issue_14() {
    let f = two_fronts().await;
    let acks_file = f.dir.path().join("acks.jsonl");
    let r = loadgen::run(LoadgenConfig {
        vendors: vec![f.a, f.b],
        pinned: f.key,
        code: f.code.clone(),
        clerk: support::CLERK.into(),
        password: support::PASSWORD.into(),
        terminals: 6,
        duration_s: 2,
        void_every: 5,
        acks: Some(acks_file.clone()),
    })
    .await
    .unwrap();
    println!("{r:?}");
    assert_eq!(r.errors, 0);
    assert!(
        r.pairs_per_front.iter().all(|&n| n > 0),
        "both fronts carried load: {:?}",
        r.pairs_per_front
    );
    let store = PostgresStore::connect(
        &f.url,
        PostgresConfig::default(),
        Arc::new(frank::ledger::cli::NoSigning),
        LedgerLimits::default(),
    )
    .await
    .unwrap();
    // Every acknowledged request is in the ledger once, nothing else is, the audit verifies.
    let log = acks::read(&acks_file).unwrap();
    let check = acks::check(&store as &dyn LedgerStore, &log, None)
        .await
        .unwrap();
    println!("{check}");
    assert!(check.problems.is_empty(), "{:#?}", check.problems);
    assert_eq!((check.lost, check.duplicated), (0, 0), "{check}");
    assert!(check.ok(), "{check}");
    let report = verify_audit(&store)
        .await
        .expect("the audit chain verifies");
    let (client, conn) = tokio_postgres::connect(&f.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let row = client
        .query_one(
            "SELECT last_piece, descending, pending, ascending, control FROM accounts",
            &[],
        )
        .await
        .unwrap();
    let (last_piece, descending, pending, ascending, control): (i64, i64, i64, i64, i64) =
        (row.get(0), row.get(1), row.get(2), row.get(3), row.get(4));
    let count = |state: &'static str| {
        let client = &client;
        async move {
            let n: i64 = client
                .query_one("SELECT count(*) FROM pieces WHERE state = $1", &[&state])
                .await
                .unwrap()
                .get(0);
            n as u64
        }
    };
    let (printed, voided) = (count("printed").await, count("voided").await);
    // Every acknowledged commit and void is there once; no serial beyond them.
    assert_eq!(printed, r.pairs);
    assert_eq!(voided, r.voids);
    assert_eq!(
        last_piece as u64,
        r.pairs + r.voids,
        "no piece issued twice"
    );
    // Money conserved: every top-up is in the control total, spent as the printed pieces.
    assert_eq!(pending, 0);
    assert_eq!(ascending as u64, 100 * printed);
    assert_eq!(control, descending + pending + ascending);
    assert_eq!(control as u64, 1_000_000 * r.funds);
    assert_eq!(report.control_total.get(), control as u64);
}

/// Accounts opened at once through both fronts' data directories (`frank vendor account add`
/// as separate processes) get distinct directory ids, distinct meters and distinct licenses.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_opened_at_once_on_two_fronts_get_distinct_licenses_issue_14() {
    let f = two_fronts().await;
    const EACH: usize = 3;
    let adds: Vec<_> = ["a", "b"]
        .into_iter()
        .flat_map(|front| (0..EACH).map(move |i| (front, i)))
        .map(|(front, i)| {
            tokio::process::Command::new(env!("CARGO_BIN_EXE_frank"))
                .args(["vendor", "account", "add", "--data"])
                .arg(f.dir.path().join(front))
                .args(["--database", &f.url, "--name", &format!("PO {front}{i}")])
                .env("RUST_LOG", "error")
                .output()
        })
        .collect();
    for out in futures_util::future::join_all(adds).await {
        let out = out.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let (client, conn) = tokio_postgres::connect(&f.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let count = |sql: &'static str| {
        let client = &client;
        async move {
            let n: i64 = client.query_one(sql, &[]).await.unwrap().get(0);
            n
        }
    };
    // The setup's account has no ledger account yet (it opens at the first sign-in).
    let opened = 2 * EACH as i64;
    assert_eq!(
        count("SELECT count(DISTINCT id) FROM directory_accounts").await,
        1 + opened
    );
    assert_eq!(count("SELECT count(*) FROM accounts").await, opened);
    assert_eq!(
        count("SELECT count(DISTINCT license) FROM accounts WHERE license IS NOT NULL").await,
        opened,
        "every account licensed, no license twice"
    );
    assert_eq!(count("SELECT count(*) FROM meter_licenses").await, opened);
}
