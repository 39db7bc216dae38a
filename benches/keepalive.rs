//! `cargo bench --bench keepalive [-- --quick]`: what idle terminals cost a vendor front (issue 14).
//!
//! One `frank vendor serve` child process (the release binary, its own data directory, SQLite
//! ledger, default `vendor.toml`: keepalives every 50 ms both ways) on loopback. This process
//! enrolls and logs in terminals through the library's client API — each on its own QUIC
//! endpoint bound to its own loopback address (127.1.x.y), as each counter is its own host —
//! starts each one's keepalive link and leaves it idle: no requests, only keepalives and what
//! QUIC sends for them. The fleet grows in steps (0 first: the vendor's own baseline, its reaper
//! and revocation poll); at each step, once every link is Up, the vendor's CPU time
//! (`utime + stime` of `/proc/<pid>/stat`) is read at the start and end of a fixed window.
//!
//! Per step: `vendor_cpu_us_per_s` (CPU µs the vendor used per wall second), `ratio_vs_idle`
//! (that over the 0-terminal step's, same run), `cpu_us_per_terminal_per_s` ((step − baseline) ÷
//! terminals), `keepalives_per_terminal_per_s` (fresh vendor keepalives each terminal received:
//! 20 when the vendor kept its pace), `lapses` (links that lapsed during the window, counted on
//! the terminals' side: > 0 means the machine could not keep the pace), `vendor_rss_mb`.
//! Summary: `vendor_cpu_us_per_terminal_per_s` (the least-squares slope of vendor CPU over
//! terminals, all steps), `…_at_max` (the largest step's per-terminal figure) and
//! `…_marginal_at_max` (what each terminal of the last step added over the step before: the
//! cost per packet falls as the vendor batches more of them per wake-up),
//! `terminals_per_core_at_50pct` (half a core ÷ the slope), `vendor_rss_kb_per_terminal` (slope
//! of VmRSS over the steps with terminals: the first logins bring the argon2 pool's memory) and `client_cpu_us_per_terminal_per_s` (this
//! process's slope: the terminals' side, for comparison). The last stdout line is JSON.
//!
//! `--quick`: steps 0, 50, 200, 500, 8 s windows (under two minutes). Full: 0, 100, 250, 500,
//! 1000, 30 s windows. Both ends share this machine's cores; the terminals' side does about
//! the same work as the vendor's, so the largest step is bounded to keep the vendor unstarved.

#[path = "../tests/support/mod.rs"]
mod support;

use frank::counter::client::{self, Session};
use frank::link::LinkState;
use frank::link::driver::LinkHandle;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Logins in flight at once while the fleet grows (the vendor's password pool takes the core
/// count at a time and queues 32).
const LOGINS_IN_FLIGHT_MAX: usize = 8;
/// After the last link of a step is Up: time for the vendor's view of each to come Up too and
/// for the logins' CPU to drain before the window opens.
const SETTLE_MS: u64 = 2_000;
/// Most terminals one run holds (file descriptors: one UDP socket each in this process).
const TERMINALS_MAX: usize = 1_000;

/// An idle, linked terminal: kept alive for the whole run.
struct Held {
    _endpoint: quinn::Endpoint,
    _session: Session,
    link: LinkHandle,
}

/// The `i`-th terminal's own loopback source address: 127.1.x.y.
fn source(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(127, 1, (i / 250) as u8, 1 + (i % 250) as u8);
    SocketAddr::new(IpAddr::V4(ip), 0)
}

use support::procstat::{clock_ticks_per_s, cpu_s};

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

type Rig = support::ChildVendor;

async fn rig() -> Rig {
    support::child_vendor("Keepalive Bench Post Office", |_, _| {}).await
}

/// Enrolls terminal `i` from its own address, logs in on the same connection, starts its link
/// and waits for it to be Up.
async fn terminal(r: &Rig, i: usize) -> anyhow::Result<Held> {
    let endpoint = client::client_endpoint(source(i))?;
    let conn = client::connect(&endpoint, r.addr, r.key).await?;
    let device_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let e = conn
        .enroll(&r.code, &format!("idle-{i}"), &device_key, &r.key)
        .await?;
    let session = conn
        .login(
            e.terminal_id,
            &device_key,
            support::CLERK,
            support::PASSWORD,
        )
        .await?;
    let link = session.start_link()?;
    let mut state = link.state.clone();
    tokio::time::timeout(
        Duration::from_millis(support::LINK_UP_MS_MAX),
        state.wait_for(|s| *s == LinkState::Up),
    )
    .await
    .map_err(|_| anyhow::anyhow!("terminal {i}: link not up"))??;
    Ok(Held {
        _endpoint: endpoint,
        _session: session,
        link,
    })
}

/// Grows `held` to `n` terminals, `LOGINS_IN_FLIGHT_MAX` at a time.
async fn grow(r: &Arc<Rig>, held: &mut Vec<Held>, n: usize) {
    let sem = Arc::new(tokio::sync::Semaphore::new(LOGINS_IN_FLIGHT_MAX));
    let mut tasks = Vec::new();
    for i in held.len()..n {
        let (r, sem) = (r.clone(), sem.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire_owned().await.expect("semaphore");
            let mut last = None;
            // A login refused as busy (the password pool full) is tried again.
            for _ in 0..5 {
                match terminal(&r, i).await {
                    Ok(h) => return h,
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            panic!("terminal {i}: {:?}", last);
        }));
    }
    for t in tasks {
        held.push(t.await.expect("terminal task"));
    }
}

struct Totals {
    lapses: u64,
    fresh: u64,
}

fn totals(held: &[Held]) -> Totals {
    let mut t = Totals {
        lapses: 0,
        fresh: 0,
    };
    for h in held {
        let s = h.link.status.borrow();
        t.lapses += s.lapses;
        t.fresh += s.counters.fresh;
    }
    t
}

#[derive(serde::Serialize)]
struct Step {
    terminals: usize,
    window_s: f64,
    vendor_cpu_us_per_s: f64,
    vendor_cpu_pct_core: f64,
    ratio_vs_idle: f64,
    cpu_us_per_terminal_per_s: f64,
    client_cpu_us_per_s: f64,
    keepalives_per_terminal_per_s: f64,
    lapses: u64,
    links_up: usize,
    vendor_rss_mb: f64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (steps, window_s): (&[usize], u64) = if quick {
        (&[0, 50, 200, 500], 8)
    } else {
        (&[0, 100, 250, 500, TERMINALS_MAX], 30)
    };
    // One UDP socket per terminal in this process.
    if let Ok((_, hard)) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
    {
        let _ =
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, hard, hard);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(quick, steps, window_s));
}

async fn run(quick: bool, steps: &[usize], window_s: u64) {
    let ticks = clock_ticks_per_s();
    let r = Arc::new(rig().await);
    let pid = r.child.id().expect("vendor pid").to_string();
    let me = std::process::id().to_string();
    let mut held: Vec<Held> = Vec::new();
    let mut out: Vec<Step> = Vec::new();
    let started = Instant::now();
    for &n in steps {
        grow(&r, &mut held, n).await;
        tokio::time::sleep(Duration::from_millis(SETTLE_MS)).await;
        let before = totals(&held);
        let (v0, c0, t0) = (cpu_s(&pid, ticks), cpu_s(&me, ticks), Instant::now());
        tokio::time::sleep(Duration::from_secs(window_s)).await;
        let (v1, c1, t1) = (cpu_s(&pid, ticks), cpu_s(&me, ticks), Instant::now());
        let after = totals(&held);
        let wall = (t1 - t0).as_secs_f64();
        let vendor = (v1 - v0) * 1e6 / wall;
        let client = (c1 - c0) * 1e6 / wall;
        let baseline = out.first().map_or(vendor, |s| s.vendor_cpu_us_per_s);
        let links_up = held
            .iter()
            .filter(|h| *h.link.state.borrow() == LinkState::Up)
            .count();
        let step = Step {
            terminals: n,
            window_s: wall,
            vendor_cpu_us_per_s: vendor,
            vendor_cpu_pct_core: vendor / 1e4,
            ratio_vs_idle: if baseline > 0.0 {
                vendor / baseline
            } else {
                f64::NAN
            },
            cpu_us_per_terminal_per_s: if n == 0 {
                0.0
            } else {
                (vendor - baseline) / n as f64
            },
            client_cpu_us_per_s: client,
            keepalives_per_terminal_per_s: if n == 0 {
                0.0
            } else {
                (after.fresh - before.fresh) as f64 / n as f64 / wall
            },
            lapses: after.lapses - before.lapses,
            links_up,
            vendor_rss_mb: support::rss_mb(r.child.id().expect("vendor pid")),
        };
        eprintln!(
            "{:>5} terminals: vendor {:>8.0} µs/s ({:>5.1}% of a core, ×{:.1} idle), {:>6.1} µs/s per terminal, \
             keepalives {:.1}/s per terminal, lapses {}, links up {}, rss {:.1} MB; this process {:.0} µs/s",
            step.terminals,
            step.vendor_cpu_us_per_s,
            step.vendor_cpu_pct_core,
            step.ratio_vs_idle,
            step.cpu_us_per_terminal_per_s,
            step.keepalives_per_terminal_per_s,
            step.lapses,
            step.links_up,
            step.vendor_rss_mb,
            step.client_cpu_us_per_s,
        );
        out.push(step);
    }
    let per_terminal = slope(
        &out.iter()
            .map(|s| (s.terminals as f64, s.vendor_cpu_us_per_s))
            .collect::<Vec<_>>(),
    );
    let client_per_terminal = slope(
        &out.iter()
            .map(|s| (s.terminals as f64, s.client_cpu_us_per_s))
            .collect::<Vec<_>>(),
    );
    // Not from the 0 step: the first logins bring the password pool's argon2 memory (19 MiB a
    // thread), which the process keeps.
    let rss_kb_per_terminal = slope(
        &out.iter()
            .filter(|s| s.terminals > 0)
            .map(|s| (s.terminals as f64, s.vendor_rss_mb * 1024.0))
            .collect::<Vec<_>>(),
    );
    let last = out.last().expect("a step");
    // What the last step's terminals added over the step before, each: the cost at the margin.
    let marginal = match out.len() {
        n if n >= 2 => {
            let prev = &out[n - 2];
            (last.vendor_cpu_us_per_s - prev.vendor_cpu_us_per_s)
                / (last.terminals - prev.terminals) as f64
        }
        _ => f64::NAN,
    };
    let json = serde_json::json!({
        "bench": "keepalive",
        "quick": quick,
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "keepalive_interval_ms": frank::vendor_server::VendorConfig::default().keepalive_interval_ms,
        "window_s": window_s,
        "steps": out,
        "vendor_cpu_us_per_terminal_per_s": per_terminal,
        "vendor_cpu_us_per_terminal_per_s_at_max": last.cpu_us_per_terminal_per_s,
        "vendor_cpu_us_per_terminal_per_s_marginal_at_max": marginal,
        "vendor_cpu_ratio_at_max_vs_idle": last.ratio_vs_idle,
        "terminals_per_core_at_50pct": if per_terminal > 0.0 { 0.5e6 / per_terminal } else { f64::NAN },
        "vendor_rss_kb_per_terminal": rss_kb_per_terminal,
        "client_cpu_us_per_terminal_per_s": client_per_terminal,
        "lapses": out.iter().map(|s| s.lapses).sum::<u64>(),
        "run_s": started.elapsed().as_secs_f64(),
    });
    println!("{json}");
}
