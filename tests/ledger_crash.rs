//! Crash test: a child `frank vendor serve` under load from several terminals is killed with
//! SIGKILL at random moments and restarted, `FRANK_CRASH_CYCLES` times (default 20). Requests
//! in flight at a kill are retried after the restart with the same request id. Then: every
//! acknowledged operation is present, none applied twice, the registers equal the audit log's
//! sums and the control total holds. It runs against both ledger backends: the embedded SQLite
//! database and PostgreSQL (`frank vendor serve --database postgres://…` on the throwaway server
//! the tests start; fewer operations per cycle there). `scripts/crash-soak.sh CYCLES` runs it
//! longer.

#[path = "support/postgres.rs"]
mod pg;
#[path = "support/softhsm.rs"]
mod softhsm;
mod support;

use frank::counter::client::{self, ClientError, Session};
use frank::ledger::postgres::{PostgresConfig, PostgresStore};
use frank::ledger::sqlite::{SqliteConfig, SqliteStore};
use frank::ledger::{
    AccountId, LedgerLimits, LedgerStore, PieceId, PieceSerial, PieceState, verify_audit,
};
use frank::link::guard::LinkState;
use frank::vendor_server::directory::Directory;
use frank::vendor_server::{DB_FILE, DataDir, LEDGER_FILE};
use frank::wire::{self, ErrorCode, FundMethod, WireItem};
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TERMINALS: usize = 3;
const PIECE_CENTS: u64 = 100;
const FUND_CENTS: u64 = 500;
const ORIGIN: &str = "10001";

fn item() -> WireItem {
    WireItem::Coupon(wire::ValueItem {
        text: "crash".into(),
        value_cents: PIECE_CENTS,
        expiry: "2040-01-01".into(),
    })
}

/// The operation a worker is on; kept (with its request id) until acknowledged.
#[derive(Debug, Clone, Copy)]
enum Step {
    Fund([u8; 16]),
    Authorize([u8; 16]),
    Commit([u8; 16], u64),
}

#[derive(Default)]
struct Acked {
    funds: BTreeSet<[u8; 16]>,
    authorized: BTreeMap<[u8; 16], u64>,
    committed: BTreeMap<[u8; 16], u64>,
}

struct Worker {
    device_key: ed25519_dalek::SigningKey,
    terminal_id: u64,
    step: Step,
}

enum Sent {
    Done,
    /// Connection gone (the vendor was killed): retry the same step later.
    Lost,
}

/// Retries of one step refused as `link_lapsed`, `busy` or `internal` (20 ms apart).
const STEP_RETRIES_MAX: u32 = 500;

async fn do_step(s: &Session, w: &mut Worker, acked: &std::sync::Mutex<Acked>) -> Sent {
    for _ in 0..STEP_RETRIES_MAX {
        let r: Result<(), ClientError> = match w.step {
            Step::Fund(id) => s
                .fund(id, FUND_CENTS, FundMethod::simulator_test_card())
                .await
                .map(|_| {
                    acked.lock().unwrap().funds.insert(id);
                    w.step = Step::Authorize(rand::random());
                }),
            Step::Authorize(id) => match s.authorize(id, PIECE_CENTS, item(), ORIGIN).await {
                Ok(a) => {
                    let prev = acked.lock().unwrap().authorized.insert(id, a.piece_serial);
                    assert!(prev.is_none_or(|p| p == a.piece_serial));
                    w.step = Step::Commit(rand::random(), a.piece_serial);
                    Ok(())
                }
                Err(e) if e.code() == Some(ErrorCode::InsufficientFunds) => {
                    // Nothing was reserved; this id is abandoned (its refusal is remembered).
                    w.step = Step::Fund(rand::random());
                    Ok(())
                }
                Err(e) => Err(e),
            },
            Step::Commit(id, serial) => s.commit(id, serial).await.map(|_| {
                acked.lock().unwrap().committed.insert(id, serial);
                w.step = Step::Authorize(rand::random());
            }),
        };
        match r {
            Ok(()) => return Sent::Done,
            Err(e)
                if matches!(
                    e.code(),
                    Some(ErrorCode::LinkLapsed | ErrorCode::Busy | ErrorCode::Internal)
                ) =>
            {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) if e.code().is_some() => panic!("unexpected refusal in {:?}: {e}", w.step),
            Err(_) => return Sent::Lost,
        }
    }
    panic!(
        "step {:?} still refused after {STEP_RETRIES_MAX} retries",
        w.step
    );
}

struct Child {
    child: tokio::process::Child,
}

/// Which ledger the vendor runs on.
#[derive(Clone)]
enum Backend {
    /// `ledger.db` in the data directory (the default).
    Sqlite,
    /// `--database URL`.
    Postgres(String),
}

impl Backend {
    fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

async fn start_vendor(data: &std::path::Path, addr: SocketAddr, backend: &Backend) -> Child {
    let args: Vec<&str> = match backend {
        Backend::Postgres(url) => vec!["--database", url],
        Backend::Sqlite => vec![],
    };
    Child {
        child: support::spawn_vendor_serve(data, addr, &args).await,
    }
}

async fn login(
    addr: SocketAddr,
    key: ed25519_dalek::VerifyingKey,
    w: &Worker,
) -> (quinn::Endpoint, Session, frank::link::driver::LinkHandle) {
    let endpoint = support::endpoint();
    let conn = client::connect(&endpoint, addr, key).await.unwrap();
    let s = conn
        .login(
            w.terminal_id,
            &w.device_key,
            support::CLERK,
            support::PASSWORD,
        )
        .await
        .unwrap();
    let link = s.start_link().unwrap();
    let mut st = link.state.clone();
    support::wait_for(&mut st, Duration::from_secs(10), "link up", |s| {
        *s == LinkState::Up
    })
    .await;
    (endpoint, s, link)
}

fn cycles() -> usize {
    std::env::var("FRANK_CRASH_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(20)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_vendor_on_sqlite_loses_nothing_and_repeats_nothing() {
    // 100–500 ms of load per cycle.
    crash_cycles(Backend::Sqlite, VendorKey::File, cycles(), 100, 400).await;
}

/// Issue 20: the same with the vendor key in a SoftHSM2 token (every indicium signed there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_vendor_with_its_key_in_a_token_loses_nothing_and_repeats_nothing() {
    let token = softhsm::token();
    crash_cycles(
        Backend::Sqlite,
        VendorKey::Token(&token),
        cycles(),
        100,
        400,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkilled_vendor_on_postgres_loses_nothing_and_repeats_nothing() {
    // Shorter cycles (50–250 ms of load) keep the suite's time in bounds; still every cycle
    // kills the vendor with requests in flight.
    let url = pg::database().await;
    crash_cycles(Backend::Postgres(url), VendorKey::File, cycles(), 50, 200).await;
}

/// Where the vendor key is.
enum VendorKey<'a> {
    /// `vendor-key.pem` (the default).
    File,
    /// Generated in this token (`frank vendor init --pkcs11`).
    Token(&'a softhsm::Token),
}

async fn crash_cycles(
    backend: Backend,
    key: VendorKey<'_>,
    cycles: usize,
    run_ms_min: u64,
    run_ms_spread: u64,
) {
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("vendor"));
    let url = match &backend {
        Backend::Postgres(url) => Some(url.clone()),
        Backend::Sqlite => None,
    };
    let init = data.clone();
    let token = match key {
        VendorKey::File => None,
        VendorKey::Token(t) => Some(t.token_key()),
    };
    tokio::task::spawn_blocking(move || match token {
        Some(t) => init.init_in_token(url.as_deref(), &t, None).unwrap(),
        None => init.init_with(url.as_deref()).unwrap(),
    })
    .await
    .unwrap();
    // On PostgreSQL the vendor's directory is in the database too (and blocks: off the runtime).
    let code = {
        let (backend, db_file) = (backend.clone(), data.file(DB_FILE));
        tokio::task::spawn_blocking(move || {
            let mut d = match &backend {
                Backend::Sqlite => Directory::open(&db_file).unwrap(),
                Backend::Postgres(url) => Directory::open_postgres(url).unwrap(),
            };
            let (acct, _) = d.add_account("Crash Test PO", 1).unwrap();
            let code = support::fleet_code(&mut d, acct.id);
            d.add_clerk(acct.id, support::CLERK, support::PASSWORD, false, 1)
                .unwrap();
            code
        })
        .await
        .unwrap()
    };
    let key = data.load().unwrap().public_key;
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let addr: SocketAddr = port;

    // Enroll the terminals once.
    let mut vendor = start_vendor(&data.path, addr, &backend).await;
    let mut workers = Vec::new();
    for n in 0..TERMINALS {
        let endpoint = support::endpoint();
        let conn = client::connect(&endpoint, addr, key).await.unwrap();
        let device_key = frank::identity::new_signing_key().unwrap();
        let e = conn
            .enroll(&code, &format!("crash-{n}"), &device_key, &key)
            .await
            .unwrap();
        workers.push(Worker {
            device_key,
            terminal_id: e.terminal_id,
            step: Step::Fund(rand::random()),
        });
    }
    let acked = Arc::new(std::sync::Mutex::new(Acked::default()));
    let mut ledger_account = None;

    for cycle in 0..=cycles {
        if cycle > 0 {
            vendor = start_vendor(&data.path, addr, &backend).await;
        }
        let mut sessions = Vec::new();
        for w in &workers {
            sessions.push(login(addr, key, w).await);
        }
        if ledger_account.is_none() {
            let b = sessions[0].1.balance().await.unwrap();
            ledger_account = Some(AccountId(b.ledger_account));
        }
        let last = cycle == cycles;
        let run_ms = run_ms_min + rand::random::<u64>() % run_ms_spread.max(1);
        let until = Instant::now() + Duration::from_millis(run_ms);
        let mut tasks = Vec::new();
        for (mut w, (_, s, _)) in std::mem::take(&mut workers).into_iter().zip(&sessions) {
            let s = s.clone();
            let acked = acked.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    match do_step(&s, &mut w, &acked).await {
                        Sent::Lost => break,
                        Sent::Done if last && Instant::now() >= until => break,
                        Sent::Done => {}
                    }
                }
                w
            }));
        }
        if !last {
            tokio::time::sleep(Duration::from_millis(run_ms)).await;
            // SIGKILL at a random moment, requests in flight.
            vendor.child.start_kill().unwrap();
            vendor.child.wait().await.unwrap();
            for (_, s, _) in &sessions {
                s.conn
                    .conn
                    .close(quinn::VarInt::from_u32(0), b"vendor killed");
            }
        }
        for t in tasks {
            workers.push(t.await.unwrap());
        }
        if last {
            // Stop cleanly enough: the final state is read from the database below.
            vendor.child.start_kill().unwrap();
            vendor.child.wait().await.unwrap();
        }
        drop(sessions);
    }

    // Every worker's outstanding step was either never applied or is retried above; a step
    // still outstanding now (the final round ends after a completed step) is none.
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let account = ledger_account.unwrap();
    let store: Box<dyn LedgerStore> = match &backend {
        Backend::Sqlite => Box::new(
            SqliteStore::open(
                &data.file(LEDGER_FILE),
                SqliteConfig::default(),
                Arc::new(frank::ledger::cli::NoSigning),
                LedgerLimits::default(),
            )
            .unwrap(),
        ),
        Backend::Postgres(url) => Box::new(
            PostgresStore::connect(
                url,
                PostgresConfig::default(),
                Arc::new(frank::ledger::cli::NoSigning),
                LedgerLimits::default(),
            )
            .await
            .unwrap(),
        ),
    };
    let store = &*store;
    let a = store.account(account).await.unwrap().unwrap();
    let mut lost = 0u64;
    let serials: BTreeSet<u64> = acked.authorized.values().copied().collect();
    // Distinct authorize ids never share a serial.
    let duplicated_serials = (acked.authorized.len() - serials.len()) as u64;
    for &serial in &serials {
        let p = store
            .piece(PieceId {
                account,
                serial: PieceSerial(serial),
            })
            .await
            .unwrap();
        match p {
            Some(p) => assert_eq!(p.amount.get(), PIECE_CENTS),
            None => lost += 1,
        }
    }
    let mut printed = 0u64;
    for serial in 1..=a.last_piece.0 {
        let p = store
            .piece(PieceId {
                account,
                serial: PieceSerial(serial),
            })
            .await
            .unwrap()
            .unwrap();
        if p.state == PieceState::Printed {
            printed += 1;
        }
    }
    for serial in acked.committed.values() {
        let p = store
            .piece(PieceId {
                account,
                serial: PieceSerial(*serial),
            })
            .await
            .unwrap();
        if p.is_none_or(|p| p.state != PieceState::Printed) {
            lost += 1;
        }
    }
    // Pieces the ledger issued beyond the acknowledged authorizations would be repeats.
    let duplicated = duplicated_serials
        + a.last_piece.0.saturating_sub(acked.authorized.len() as u64)
        + printed.saturating_sub(acked.committed.len() as u64);
    let control_expected = FUND_CENTS * acked.funds.len() as u64;
    let report = verify_audit(store).await;
    let control_total_ok = a.registers.check().is_ok()
        && a.registers.control.get() == control_expected
        && a.registers.ascending.get() == PIECE_CENTS * printed
        && report
            .as_ref()
            .is_ok_and(|r| r.control_total.get() == control_expected);
    let acknowledged = acked.funds.len() + acked.authorized.len() + acked.committed.len();
    println!(
        "cycles={cycles} acknowledged={acknowledged} lost={lost} duplicated={duplicated} control_total_ok={control_total_ok} backend={}",
        backend.name()
    );
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(lost, 0);
    assert_eq!(duplicated, 0);
    assert!(
        control_total_ok,
        "{a:?} expected control {control_expected}"
    );
    assert!(acknowledged > cycles, "too little load: {acknowledged}");
    // Issue 14: on PostgreSQL everything is in the database; the data directory holds no
    // SQLite directory or ledger.
    if let Backend::Postgres(_) = backend {
        for file in [DB_FILE, LEDGER_FILE] {
            assert!(!data.file(file).exists(), "{file} in the data directory");
        }
    }
}
