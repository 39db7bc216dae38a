//! Ledger benchmark: durable authorize+commit pairs, each authorization signing a 100-byte item
//! with Ed25519 before its transaction commits, from 256 concurrent clients through the ledger
//! service.
//!
//! Four runs: SQLite with group commit, SQLite with one transaction per request (the naive
//! baseline, same run), PostgreSQL with its batch writers, and PostgreSQL with one
//! transaction per request (its baseline) — a throwaway local server, fsync on. The last
//! stdout line is JSON: group_per_s, naive_per_s, group_vs_naive, group_p99_ms,
//! postgres_per_s, postgres_p99_ms, postgres_naive_per_s, postgres_vs_sqlite (batched
//! PostgreSQL ÷ SQLite group commit; goal ≥ 0.5), postgres_vs_naive, and fsync_4k_ms (what
//! one durable commit costs this disk at least, which bounds the baseline). Pair latency is
//! authorize-sent → commit-acknowledged.
//!
//! Beside them, what explains the ratio: `*_requests_per_commit` (requests sharing one WAL
//! fsync), `*_cpu_us_per_pair` (the whole process's CPU time per pair, the in-process clients
//! included), `cores`, and `group_cpu_ceiling_per_s` = cores × 10⁶ / group_cpu_us_per_pair —
//! the most pairs per second this CPU allows group commit if every core worked on pairs all
//! the time — with `ceiling_vs_naive`, the highest ratio this machine could show.
//!
//! PostgreSQL is the tests' throwaway server on this host, reached over its Unix-domain
//! socket as a front beside its database would (`--pg-tcp`: over loopback TCP);
//! `postgres_server_cpu_us_per_pair` is the server processes' CPU time per pair (from `/proc`),
//! beside `postgres_cpu_us_per_pair`, this process's.
//!
//! `group_pkcs11_per_s` (issue 20): SQLite group commit with the item signer's key in a
//! throwaway SoftHSM2 token (the same key, imported), the store's signing threads sized to the
//! token's session pool (`pkcs11_sessions`); goal ≥ 5,000; `group_pkcs11_vs_group` against the
//! key in memory, same run.
//!
//! `cargo bench --bench ledger -- --quick` runs 4 s per backend (well under 2 minutes);
//! `--only group|naive|postgres|postgres_naive|group_pkcs11` runs one backend (the others
//! report 0); `--pg-writers N` and `--pg-batch N` set the PostgreSQL batch writers and their
//! batch limit (the store's defaults otherwise).

#[path = "../tests/support/postgres.rs"]
mod pg;
#[path = "../tests/support/procstat.rs"]
mod procstat;
#[path = "../tests/support/softhsm.rs"]
mod softhsm;

use ed25519_dalek::{Signer, SigningKey};
use frank::ledger::licensing::EmbeddedLicensing;
use frank::ledger::payment::{Card, PaymentMethod, SimulatedProcessor};
use frank::ledger::postgres::{PostgresConfig, PostgresStore};
use frank::ledger::service::{self, SystemClock};
use frank::ledger::sqlite::{SqliteConfig, SqliteStore};
use frank::ledger::store::CommitCounts;
use frank::ledger::*;
use frank::money::Cents;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const CLIENTS: usize = 256;
const ITEM_BYTES: usize = 100;

/// The bench's item key: in memory, or imported into a SoftHSM2 token.
enum BenchKey {
    Memory(SigningKey),
    /// The token's PIN file lives as long as the signer.
    Token(
        frank::pkcs11::Pkcs11Signer,
        #[allow(dead_code)] softhsm::Token,
    ),
}

struct BenchSigner(BenchKey);

impl ItemSigner for BenchSigner {
    fn parallel_signatures_max(&self) -> Option<usize> {
        match &self.0 {
            BenchKey::Memory(_) => None,
            BenchKey::Token(t, _) => Some(t.sessions()),
        }
    }

    fn sign(&self, f: &PieceFacts, item: &[u8]) -> Result<Vec<u8>, String> {
        let mut m = Vec::with_capacity(64 + item.len() + 64);
        for v in [
            f.account.0,
            f.meter.number(),
            f.license.0,
            f.piece.0,
            f.amount.get(),
        ] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        m.push(f.kind);
        m.extend_from_slice(&f.ascending_after.get().to_be_bytes());
        m.extend_from_slice(&f.descending_after.get().to_be_bytes());
        m.extend_from_slice(item);
        let sig = match &self.0 {
            BenchKey::Memory(k) => k.sign(&m).to_bytes(),
            BenchKey::Token(t, _) => {
                frank::indicium::signer::Signer::sign(t, &m).map_err(|e| e.to_string())?
            }
        };
        m.extend_from_slice(&sig);
        Ok(m)
    }
}

fn signer() -> Arc<dyn ItemSigner> {
    Arc::new(BenchSigner(BenchKey::Memory(SigningKey::from_bytes(
        &[9; 32],
    ))))
}

/// [`signer`]'s key in a fresh SoftHSM2 token; its session count.
fn token_signer() -> (Arc<dyn ItemSigner>, usize) {
    let token = softhsm::token();
    let key = SigningKey::from_bytes(&[9; 32]);
    let public = token
        .token_key()
        .import(&key)
        .expect("import into the token");
    let t = frank::pkcs11::Pkcs11Signer::open(&token.config(&public)).expect("the token key");
    let sessions = t.sessions();
    (Arc::new(BenchSigner(BenchKey::Token(t, token))), sessions)
}

static RANDOM_IDS: AtomicBool = AtomicBool::new(false);
fn rid() -> RequestId {
    // Made the way the counters make theirs (time-ordered); `--random-ids` for purely random.
    if RANDOM_IDS.load(Ordering::Relaxed) {
        return RequestId(rand::random());
    }
    frank::clock::fresh_request_id()
}

#[derive(Clone, Copy)]
struct Result_ {
    per_s: f64,
    p99_ms: f64,
    /// CPU time of the whole process (ledger threads and the in-process clients) per pair.
    cpu_us_per_pair: f64,
    /// Requests each SQLite transaction (one WAL fsync) carried, on average.
    requests_per_commit: f64,
    /// CPU time of the PostgreSQL server's processes per pair (0 for SQLite).
    server_cpu_us_per_pair: f64,
}

/// The throwaway PostgreSQL server's CPU so far (µs), or 0 when none runs.
fn server_cpu_us(postgres: bool) -> f64 {
    if !postgres {
        return 0.0;
    }
    match pg::server().postmaster_pid() {
        Some(pid) => procstat::tree_cpu_s(pid, procstat::clock_ticks_per_s()) * 1e6,
        None => 0.0,
    }
}

/// CPU time (user + system) this process has used so far, in µs.
fn process_cpu_us() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_SELF).expect("getrusage");
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 * 1e6 + t.tv_usec() as f64;
    us(u.user_time()) + us(u.system_time())
}

async fn run(
    store: Arc<dyn LedgerStore>,
    counts: Option<&(dyn Fn() -> CommitCounts + Sync)>,
    seconds: u64,
    postgres: bool,
) -> Result_ {
    let handle = service::spawn(
        store,
        Arc::new(SimulatedProcessor::new()),
        Arc::new(EmbeddedLicensing::new(0, 1_000_000)),
        Arc::new(SystemClock),
        LedgerConfig {
            reaper_interval_ms: 0,
            ..LedgerConfig::default()
        },
    );
    let now_ms = SystemClock_now();
    let mut accounts = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        let Ok(Outcome::Opened { account, .. }) = handle.open_account(rid()).await else {
            panic!("open failed")
        };
        let card = Card::parse("4242424242424242", 12, 2040, "123", now_ms).unwrap();
        handle
            .fund(
                rid(),
                account,
                Cents::new(1_000_000).unwrap(),
                PaymentMethod::Card(card),
            )
            .await
            .unwrap();
        accounts.push(account);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let counts_before = counts.map(|c| c());
    let cpu_before = process_cpu_us();
    let server_before = server_cpu_us(postgres);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for account in accounts {
        let handle = handle.clone();
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat_us = Vec::new();
            let item = vec![0x5A; ITEM_BYTES];
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let auth = handle
                    .authorize(rid(), account, 1, Cents::new(1).unwrap(), item.clone())
                    .await
                    .expect("authorize");
                handle.commit(rid(), auth.id).await.expect("commit");
                lat_us.push(t.elapsed().as_micros() as u64);
            }
            lat_us
        }));
    }
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    stop.store(true, Ordering::Relaxed);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu_us = process_cpu_us() - cpu_before;
    let server_us = server_cpu_us(postgres) - server_before;
    let requests_per_commit = match (counts_before, counts.map(|c| c())) {
        (Some(a), Some(b)) if b.batches > a.batches => {
            (b.requests - a.requests) as f64 / (b.batches - a.batches) as f64
        }
        _ => 0.0,
    };
    all.sort_unstable();
    let p99 = all
        .get((all.len() * 99 / 100).min(all.len().saturating_sub(1)))
        .copied()
        .unwrap_or(0);
    let report = handle.verify_audit().await.unwrap();
    assert!(
        report.is_ok(),
        "audit must verify after the run: {report:?}"
    );
    Result_ {
        per_s: all.len() as f64 / elapsed,
        p99_ms: p99 as f64 / 1000.0,
        cpu_us_per_pair: cpu_us / (all.len().max(1) as f64),
        requests_per_commit,
        server_cpu_us_per_pair: server_us / (all.len().max(1) as f64),
    }
}

#[allow(non_snake_case)]
fn SystemClock_now() -> u64 {
    use frank::ledger::service::Clock;
    SystemClock.now_ms()
}

fn sqlite(dir: &tempfile::TempDir, name: &str, config: SqliteConfig) -> Arc<SqliteStore> {
    sqlite_signing(dir, name, config, signer())
}

fn sqlite_signing(
    dir: &tempfile::TempDir,
    name: &str,
    config: SqliteConfig,
    signer: Arc<dyn ItemSigner>,
) -> Arc<SqliteStore> {
    Arc::new(
        SqliteStore::open(
            &dir.path().join(name),
            config,
            signer,
            LedgerLimits::default(),
        )
        .unwrap(),
    )
}

async fn run_sqlite(store: Arc<SqliteStore>, seconds: u64) -> Result_ {
    let counted = store.clone();
    run(
        store,
        Some(&move || counted.commit_counts()),
        seconds,
        false,
    )
    .await
}

/// What one durable commit costs this disk at least: the median of rewriting 4 KiB of an
/// existing file and `fdatasync`, as the baseline's commit does to the reused WAL. The
/// baseline's rate follows it; group commit amortises it (reported beside the ratio).
fn fsync_4k_ms(dir: &tempfile::TempDir) -> f64 {
    use std::io::{Seek, Write};
    const ROUNDS: usize = 200;
    let path = dir.path().join("fsync-probe");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = [0x5Au8; 4096];
    for _ in 0..ROUNDS {
        f.write_all(&block).unwrap();
    }
    f.sync_all().unwrap();
    let mut took = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        f.seek(std::io::SeekFrom::Start((i * block.len()) as u64))
            .unwrap();
        f.write_all(&block).unwrap();
        let t = Instant::now();
        f.sync_data().unwrap();
        took.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    std::fs::remove_file(&path).unwrap();
    took.sort_by(f64::total_cmp);
    took[ROUNDS / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    RANDOM_IDS.store(
        std::env::args().any(|a| a == "--random-ids"),
        Ordering::Relaxed,
    );
    // `--only group|naive|postgres` runs one backend (for profiling); the JSON then reports 0
    // for the others.
    let args: Vec<String> = std::env::args().collect();
    let only = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1).cloned());
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    // `--pg-writers N` and `--pg-batch N` try other batch writer settings than the store's
    // defaults (what `postgres_per_s` measures without them).
    let number = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map_or(default, |v| v.parse().expect("a number after the flag"))
    };
    let pg_writers = number("--pg-writers", PostgresConfig::default().batch_writers);
    let pg_batch = number("--pg-batch", PostgresConfig::default().batch_requests_max);
    let skipped = Result_ {
        per_s: 0.0,
        p99_ms: 0.0,
        cpu_us_per_pair: 0.0,
        requests_per_commit: 0.0,
        server_cpu_us_per_pair: 0.0,
    };
    let seconds = if quick { 4 } else { 15 };
    // PostgreSQL on this host is reached over its Unix-domain socket, as a front beside its
    // database would; `--pg-tcp` goes through loopback TCP instead.
    let tcp = std::env::args().any(|a| a == "--pg-tcp");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // On disk (not tmpfs) so fsync is real: the bench directory lives under target/.
    let base = std::env::var("CARGO_TARGET_TMPDIR").unwrap_or_else(|_| "target".into());
    std::fs::create_dir_all(&base).unwrap();
    let dir = tempfile::tempdir_in(&base).unwrap();
    let fsync_ms = fsync_4k_ms(&dir);
    eprintln!("this disk: rewriting 4 KiB + fdatasync, median {fsync_ms:.3} ms");
    rt.block_on(async {
        let group = if wanted("group") {
            run_sqlite(sqlite(&dir, "group.db", SqliteConfig::default()), seconds).await
        } else {
            skipped
        };
        eprintln!(
            "sqlite group commit: {:.0} pairs/s, p99 {:.2} ms, {:.1} µs CPU/pair, {:.1} requests/commit",
            group.per_s, group.p99_ms, group.cpu_us_per_pair, group.requests_per_commit
        );
        let naive_cfg = SqliteConfig {
            group_requests_max: 1,
            group_wait_us_max: 0,
            ..SqliteConfig::default()
        };
        let naive = if wanted("naive") {
            run_sqlite(sqlite(&dir, "naive.db", naive_cfg), seconds).await
        } else {
            skipped
        };
        eprintln!(
            "sqlite one tx/request: {:.0} pairs/s, p99 {:.2} ms, {:.1} µs CPU/pair, {:.1} requests/commit",
            naive.per_s, naive.p99_ms, naive.cpu_us_per_pair, naive.requests_per_commit
        );
        // PostgreSQL: the batch writers, then one transaction per request (the baseline),
        // each on a fresh database of the same throwaway server.
        let postgres_run = move |batch_writers: usize| async move {
            let url = if tcp {
                pg::database().await
            } else {
                pg::socket_database().await
            };
            let store = Arc::new(
                PostgresStore::connect(
                    &url,
                    PostgresConfig {
                        connections_max: 32,
                        batch_writers,
                        batch_requests_max: pg_batch,
                        ..PostgresConfig::default()
                    },
                    signer(),
                    LedgerLimits::default(),
                )
                .await
                .unwrap(),
            );
            let counted = store.clone();
            run(store, Some(&move || counted.commit_counts()), seconds, true).await
        };
        let postgres = if wanted("postgres") {
            postgres_run(pg_writers).await
        } else {
            skipped
        };
        eprintln!(
            "postgres batched: {:.0} pairs/s, p99 {:.2} ms, {:.1} µs CPU/pair, {:.1} µs server CPU/pair, {:.1} requests/commit",
            postgres.per_s, postgres.p99_ms, postgres.cpu_us_per_pair, postgres.server_cpu_us_per_pair, postgres.requests_per_commit
        );
        let postgres_naive = if wanted("postgres_naive") {
            postgres_run(0).await
        } else {
            skipped
        };
        eprintln!(
            "postgres one tx/request: {:.0} pairs/s, p99 {:.2} ms, {:.1} µs CPU/pair",
            postgres_naive.per_s, postgres_naive.p99_ms, postgres_naive.cpu_us_per_pair
        );
        let (group_pkcs11, pkcs11_sessions) = if wanted("group_pkcs11") {
            let (signer, sessions) = token_signer();
            let store = sqlite_signing(&dir, "pkcs11.db", SqliteConfig::default(), signer);
            (run_sqlite(store, seconds).await, sessions)
        } else {
            (skipped, 0)
        };
        eprintln!(
            "sqlite group commit, key in SoftHSM2 ({pkcs11_sessions} sessions): {:.0} pairs/s, p99 {:.2} ms, {:.1} µs CPU/pair, {:.1} requests/commit",
            group_pkcs11.per_s,
            group_pkcs11.p99_ms,
            group_pkcs11.cpu_us_per_pair,
            group_pkcs11.requests_per_commit
        );
        let round1 = |x: f64| (x * 10.0).round() / 10.0;
        // Ratios need both sides run (`--only` leaves one out: they read 0).
        let ratio = |a: f64, b: f64| if a > 0.0 && b > 0.0 { round1(a / b) } else { 0.0 };
        // What the process's CPU allows at most if every core were busy with pairs all the
        // time: group commit's ceiling on this machine, whatever the disk.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ceiling = if group.cpu_us_per_pair > 0.0 {
            (cores as f64 * 1e6 / group.cpu_us_per_pair).round()
        } else {
            0.0
        };
        println!(
            "{}",
            serde_json::json!({
                "group_per_s": group.per_s.round(),
                "naive_per_s": naive.per_s.round(),
                "group_vs_naive": ratio(group.per_s, naive.per_s),
                "group_p99_ms": (group.p99_ms * 100.0).round() / 100.0,
                "postgres_per_s": postgres.per_s.round(),
                "postgres_p99_ms": (postgres.p99_ms * 100.0).round() / 100.0,
                "postgres_naive_per_s": postgres_naive.per_s.round(),
                "postgres_naive_p99_ms": (postgres_naive.p99_ms * 100.0).round() / 100.0,
                "postgres_vs_sqlite": if group.per_s > 0.0 && postgres.per_s > 0.0 {
                    (postgres.per_s / group.per_s * 100.0).round() / 100.0
                } else {
                    0.0
                },
                "postgres_vs_naive": ratio(postgres.per_s, postgres_naive.per_s),
                "postgres_requests_per_commit": round1(postgres.requests_per_commit),
                "postgres_cpu_us_per_pair": round1(postgres.cpu_us_per_pair),
                "postgres_server_cpu_us_per_pair": round1(postgres.server_cpu_us_per_pair),
                "clients": CLIENTS,
                "seconds_per_run": seconds,
                "fsync_4k_ms": (fsync_ms * 1000.0).round() / 1000.0,
                "group_requests_per_commit": round1(group.requests_per_commit),
                "naive_requests_per_commit": round1(naive.requests_per_commit),
                "group_cpu_us_per_pair": round1(group.cpu_us_per_pair),
                "naive_cpu_us_per_pair": round1(naive.cpu_us_per_pair),
                "cores": cores,
                "group_cpu_ceiling_per_s": ceiling,
                "ceiling_vs_naive": ratio(ceiling, naive.per_s),
                "group_pkcs11_per_s": group_pkcs11.per_s.round(),
                "group_pkcs11_p99_ms": (group_pkcs11.p99_ms * 100.0).round() / 100.0,
                "group_pkcs11_vs_group": if group.per_s > 0.0 && group_pkcs11.per_s > 0.0 {
                    (group_pkcs11.per_s / group.per_s * 100.0).round() / 100.0
                } else {
                    0.0
                },
                "group_pkcs11_cpu_us_per_pair": round1(group_pkcs11.cpu_us_per_pair),
                "pkcs11_sessions": pkcs11_sessions,
            })
        );
    });
}
