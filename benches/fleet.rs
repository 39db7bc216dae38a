//! `cargo bench --bench fleet [-- --quick]`: what a fleet of idle counters costs one vendor
//! process (issue 17 item 3; it began as issue 14's keepalive bench).
//!
//! One `frank vendor serve --worker-threads 1` child process (the release binary, its own data
//! directory, SQLite ledger, default `vendor.toml`: keepalives every 50 ms both ways) on
//! loopback, so its CPU is measured alone: one runtime thread, as a front process per core is
//! deployed (docs/DEPLOY.md §2); `--vendor-threads N` runs it with N. This process simulates the counters: it enrolls and logs in terminals
//! through the library's client API — each a real QUIC connection on its own endpoint bound to
//! its own loopback address (127.1.x.y), as each counter is its own host — starts each one's
//! keepalive link and leaves it idle: no requests, only keepalives both ways and what QUIC sends
//! for them. The fleet grows in steps (0 first: the vendor's own baseline, its reaper and
//! revocation poll); at each step, once every link is Up, the vendor's CPU time (`utime +
//! stime` of `/proc/<pid>/stat`) is read at the start and end of a fixed window.
//!
//! Per step: `vendor_cpu_us_per_s` (CPU µs the vendor used per wall second),
//! `vendor_cpu_pct_core`, `ratio_vs_idle` (that over the 0-terminal step's, same run),
//! `cpu_us_per_terminal_per_s` ((step − baseline) ÷ terminals), `vendor_rss_kb_per_terminal`
//! (VmRSS over the step before's, ÷ the terminals added; none for the first: the first logins
//! bring the password pool's memory), `keepalives_per_terminal_per_s` (fresh
//! vendor keepalives each terminal received: about 22 when the vendor kept its pace),
//! `false_lapses` (links that lapsed during the window with nothing cut, counted on the
//! terminals' side: > 0 means the machine could not keep the pace), `keepalive_gap_p99_ms`
//! (the 99th percentile of the gaps between consecutive fresh vendor keepalives at the
//! terminals, in 1 ms buckets; the lapse comes at 150).
//!
//! Summary: `vendor_cpu_us_per_terminal_per_s` (least-squares slope of vendor CPU over
//! terminals, all steps), `…_at_max`, `…_marginal_at_max`, `terminals_per_core_at_50pct`,
//! `vendor_rss_kb_per_terminal`, `client_cpu_us_per_terminal_per_s` (this process's slope), and
//! `max_terminals_per_core`: the largest N at which the vendor used at most one core with 0
//! false lapses — `max_terminals_per_core_basis` says `measured` when a clean step reached a
//! core, else `extrapolated linearly from N=…` (the largest clean step plus what a core has left
//! over the clean steps' slope), or `no clean step`. The goal is 2,000 at 50 ms keepalives. The
//! last stdout line is JSON.
//!
//! Then the bundle phase (issue 17 item 1): the fleet is cut to 100 terminals (the others'
//! connections closed, so they are gone at the vendor too), a 1 MB release bundle is published
//! with the real `frank vendor release-key init` and `bundle add`, and all 100 sync at once
//! through the counter's library side (download at the default rate, verify, install in a
//! folder each): `bundle_1mb_100_counters_s` (wall time until the last installed it; goal
//! ≤ 10 s), `bundle_first_done_s`, `bundle_counters_ok`, `bundle_lapses` (lapses among the 100
//! seen by the terminals meanwhile; goal 0) with `bundle_lapse_times_s` (when, in s from the
//! phase's start, and how many so far), `bundle_vendor_lapses` (the same seen by the vendor,
//! from its metrics endpoint), `bundle_tick_gap_ms_max` (the longest this process took to run a
//! 10 ms timer: the simulated counters' own starvation), `bundle_error` when it could not run.
//!
//! `--quick`: steps 0, 250, 500 with 6 s windows (under two minutes). Full: 0, 250, 500, 1000,
//! 2000 with 20 s windows. Both ends share this machine's cores and the terminals' side does
//! about the same work as the vendor's, so the larger steps lapse links on a 2-core machine
//! whatever the vendor does: their figures are reported, and only clean steps count. When a
//! step's terminals cannot all come up (logins time out while the machine keeps the links it
//! has), the run stops growing and reports the steps it measured with `stopped` saying why.

#[path = "../tests/support/mod.rs"]
mod support;

use frank::counter::client::{self, Session};
use frank::link::LinkState;
use frank::link::driver::{LINK_TOTALS, LinkHandle, gap_quantile_ms};
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
const TERMINALS_MAX: usize = 2_000;

/// An idle, linked terminal: kept alive for the whole run.
struct Held {
    _endpoint: quinn::Endpoint,
    session: Session,
    link: LinkHandle,
}

/// The `i`-th terminal's own loopback source address: 127.1.x.y.
fn source(i: usize) -> SocketAddr {
    let ip = Ipv4Addr::new(127, 1, (i / 250) as u8, 1 + (i % 250) as u8);
    SocketAddr::new(IpAddr::V4(ip), 0)
}

use support::procstat::{clock_ticks_per_s, cpu_s};

/// One core's worth of CPU time per second, in µs.
const CORE_US_PER_S: f64 = 1e6;

/// The largest fleet the vendor keeps on one core with no false lapse, and how it was found.
fn max_terminals_per_core(steps: &[Step]) -> (f64, String) {
    let clean: Vec<&Step> = steps
        .iter()
        .filter(|s| s.terminals > 0 && s.false_lapses == 0 && s.links_up == s.terminals)
        .collect();
    if let Some(s) = clean
        .iter()
        .filter(|s| s.vendor_cpu_us_per_s >= CORE_US_PER_S)
        .min_by_key(|s| s.terminals)
    {
        // A clean step reached a core: the largest clean step within one is the measure.
        let within = clean
            .iter()
            .filter(|c| c.vendor_cpu_us_per_s <= CORE_US_PER_S)
            .map(|c| c.terminals)
            .max()
            .unwrap_or(0);
        return (
            within as f64,
            format!("measured (N={} used a core)", s.terminals),
        );
    }
    let Some(largest) = clean.iter().max_by_key(|s| s.terminals) else {
        return (0.0, "no clean step".to_string());
    };
    let mut points: Vec<(f64, f64)> = clean
        .iter()
        .map(|s| (s.terminals as f64, s.vendor_cpu_us_per_s))
        .collect();
    if let Some(idle) = steps.iter().find(|s| s.terminals == 0) {
        points.push((0.0, idle.vendor_cpu_us_per_s));
    }
    let per_terminal = slope(&points);
    if per_terminal <= 0.0 {
        return (0.0, "no clean slope".to_string());
    }
    let n = largest.terminals as f64 + (CORE_US_PER_S - largest.vendor_cpu_us_per_s) / per_terminal;
    (
        n.floor(),
        format!(
            "extrapolated linearly from N={} ({:.0} µs/s per terminal over the clean steps)",
            largest.terminals, per_terminal
        ),
    )
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx) * (p.0 - mx)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

/// The vendor child process and its metrics endpoint (scraped only around the bundle phase,
/// so the steps' CPU figures hold no scrape).
struct Rig {
    vendor: support::ChildVendor,
    metrics: SocketAddr,
}

impl std::ops::Deref for Rig {
    type Target = support::ChildVendor;
    fn deref(&self) -> &support::ChildVendor {
        &self.vendor
    }
}

/// Threads of the vendor's runtime (`frank vendor serve --worker-threads`): one, as a front
/// process per core is deployed (docs/DEPLOY.md §2); `--vendor-threads N` to compare.
fn vendor_threads() -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == "--vendor-threads")
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| "1".to_string())
}

async fn rig() -> Rig {
    let threads = vendor_threads();
    let metrics = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port");
    let vendor = support::child_vendor_with(
        "Fleet Bench Post Office",
        &[
            "--worker-threads",
            &threads,
            "--metrics",
            &metrics.to_string(),
        ],
        |_, _| {},
    )
    .await;
    Rig { vendor, metrics }
}

/// Enrolls terminal `i` from its own address, logs in on the same connection, starts its link
/// and waits for it to be Up.
async fn terminal(r: &Rig, i: usize) -> anyhow::Result<Held> {
    let endpoint = client::client_endpoint(source(i))?;
    let conn = client::connect(&endpoint, r.addr, r.key).await?;
    let device_key = frank::identity::new_signing_key().unwrap();
    let e = conn
        .enroll(&r.code, &format!("fleet-{i}"), &device_key, &r.key)
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
        session,
        link,
    })
}

/// Grows `held` to `n` terminals, `LOGINS_IN_FLIGHT_MAX` at a time. When some cannot come up
/// (the machine no longer keeps the links it has and also logs in more), says how many failed
/// and why; the run then ends with the steps it measured.
async fn grow(r: &Arc<Rig>, held: &mut Vec<Held>, n: usize) -> Result<(), String> {
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
                    Ok(h) => return Ok(h),
                    Err(e) => last = Some(e),
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            // The error's chain in words (Debug would add a backtrace to the JSON).
            Err(last.map_or_else(|| "no attempt".to_string(), |e| format!("{e:#}")))
        }));
    }
    let (mut failed, mut reason) = (0, String::new());
    for t in tasks {
        match t.await.expect("terminal task") {
            Ok(h) => held.push(h),
            Err(e) => {
                failed += 1;
                reason = e;
            }
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(format!(
            "{failed} terminal(s) could not come up, e.g. {reason}"
        ))
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
    false_lapses: u64,
    keepalive_gap_p99_ms: Option<u64>,
    links_up: usize,
    vendor_rss_mb: f64,
    vendor_rss_kb_per_terminal: f64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (steps, window_s): (&[usize], u64) = if quick {
        (&[0, 250, 500], 6)
    } else {
        (&[0, 250, 500, 1_000, TERMINALS_MAX], 20)
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
    let mut stopped = None;
    for &n in steps {
        if let Err(e) = grow(&r, &mut held, n).await {
            eprintln!("{n:>5} terminals: stopped growing — {e}");
            stopped = Some(format!("at N={n}: {e}"));
            break;
        }
        tokio::time::sleep(Duration::from_millis(SETTLE_MS)).await;
        let before = totals(&held);
        let gaps_before = LINK_TOTALS.fresh_gaps();
        let (v0, c0, t0) = (cpu_s(&pid, ticks), cpu_s(&me, ticks), Instant::now());
        tokio::time::sleep(Duration::from_secs(window_s)).await;
        let (v1, c1, t1) = (cpu_s(&pid, ticks), cpu_s(&me, ticks), Instant::now());
        let after = totals(&held);
        let gaps: Vec<u64> = LINK_TOTALS
            .fresh_gaps()
            .iter()
            .zip(&gaps_before)
            .map(|(a, b)| a - b)
            .collect();
        let rss_mb = support::rss_mb(r.child.id().expect("vendor pid"));
        // Against the step before with terminals: the first logins bring the password pool's
        // argon2 memory, which the process keeps.
        let rss_before = out
            .iter()
            .rev()
            .find(|s| s.terminals > 0)
            .map(|s| (s.terminals, s.vendor_rss_mb));
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
            false_lapses: after.lapses - before.lapses,
            keepalive_gap_p99_ms: gap_quantile_ms(&gaps, 0.99),
            links_up,
            vendor_rss_mb: rss_mb,
            vendor_rss_kb_per_terminal: match rss_before {
                Some((m, mb)) if n > m => (rss_mb - mb) * 1024.0 / (n - m) as f64,
                _ => f64::NAN,
            },
        };
        eprintln!(
            "{:>5} terminals: vendor {:>8.0} µs/s ({:>5.1}% of a core, ×{:.1} idle), {:>6.1} µs/s per terminal, \
             keepalives {:.1}/s per terminal (gap p99 {:?} ms), false lapses {}, links up {}, rss {:.1} MB; this process {:.0} µs/s",
            step.terminals,
            step.vendor_cpu_us_per_s,
            step.vendor_cpu_pct_core,
            step.ratio_vs_idle,
            step.cpu_us_per_terminal_per_s,
            step.keepalives_per_terminal_per_s,
            step.keepalive_gap_p99_ms,
            step.false_lapses,
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
    let (max_per_core, basis) = max_terminals_per_core(&out);
    let bundle = bundle_phase(&r, &mut held).await;
    let json = serde_json::json!({
        "bench": "fleet",
        "vendor_worker_threads": vendor_threads(),
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
        "false_lapses": out.iter().map(|s| s.false_lapses).sum::<u64>(),
        "max_terminals_per_core": max_per_core,
        "max_terminals_per_core_basis": basis,
        "stopped": stopped,
        "bundle_counters": bundle.counters,
        "bundle_bytes": BUNDLE_BYTES,
        "bundle_1mb_100_counters_s": bundle.seconds,
        "bundle_counters_ok": bundle.ok,
        "bundle_lapses": bundle.lapses,
        "bundle_lapse_times_s": bundle.lapse_times_s,
        "bundle_vendor_lapses": bundle.vendor_lapses,
        "bundle_tick_gap_ms_max": bundle.tick_gap_ms_max,
        "bundle_first_done_s": bundle.first_done_s.is_finite().then_some(bundle.first_done_s),
        "bundle_error": bundle.error,
        "run_s": started.elapsed().as_secs_f64(),
    });
    println!("{json}");
}

/// The bundle the fleet downloads at the end: 1 MB (issue 17's goal: 100 counters in ≤ 10 s
/// on loopback without a lapse).
const BUNDLE_BYTES: usize = 1_000_000;
/// Counters that download it.
const BUNDLE_COUNTERS: usize = 100;
/// Longest the bundle phase may take, in s.
const BUNDLE_PHASE_S_MAX: u64 = 120;

struct BundleFigures {
    counters: usize,
    seconds: Option<f64>,
    ok: usize,
    lapses: u64,
    /// (s from the phase's start, lapses so far) at each change, polled every 10 ms.
    lapse_times_s: Vec<(f64, u64)>,
    /// The longest this process's runtime took to run a 10 ms timer meanwhile, in ms: a long
    /// one means the simulated counters themselves were starved.
    tick_gap_ms_max: f64,
    /// Links the vendor saw lapse meanwhile (its `frank_link_lapses_total`).
    vendor_lapses: u64,
    /// When the first counter had installed it, in s from the phase's start.
    first_done_s: f64,
    error: Option<String>,
}

fn frank_cli(args: &[&str]) -> Result<String, String> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The fleet down to [`BUNDLE_COUNTERS`] terminals (links still Up); a 1 MB release bundle
/// published with the real CLI; every terminal syncs at once through the library's counter
/// side (download at the default rate, verify, install in its own folder); the wall time until
/// the last one installed it, and the lapses among them meanwhile.
async fn bundle_phase(r: &Rig, held: &mut Vec<Held>) -> BundleFigures {
    // Cut for real: a dropped handle leaves its link's driver (which holds the connection)
    // running, so the other terminals' connections are closed and go away at the vendor too.
    for h in held.drain(BUNDLE_COUNTERS.min(held.len())..) {
        h.link.stop();
        h.session
            .conn
            .conn
            .close(quinn::VarInt::from_u32(0), b"the bench cut the fleet");
    }
    let mut fig = BundleFigures {
        counters: held.len(),
        seconds: None,
        ok: 0,
        lapses: 0,
        lapse_times_s: Vec::new(),
        vendor_lapses: 0,
        tick_gap_ms_max: 0.0,
        first_done_s: f64::INFINITY,
        error: None,
    };
    if held.len() < BUNDLE_COUNTERS {
        fig.error = Some(format!("only {} terminals up", held.len()));
        return fig;
    }
    tokio::time::sleep(Duration::from_millis(SETTLE_MS)).await;
    let work = tempfile::tempdir().expect("temp dir");
    let key = work.path().join("release-key.pem");
    let published = (|| -> Result<String, String> {
        let out = frank_cli(&[
            "vendor",
            "release-key",
            "init",
            "--out",
            key.to_str().unwrap_or_default(),
        ])?;
        let fp = out
            .rsplit(": ")
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let file = work.path().join("frank");
        let bytes: Vec<u8> = (0..BUNDLE_BYTES).map(|i| (i * 7 + i / 251) as u8).collect();
        std::fs::write(&file, bytes).map_err(|e| e.to_string())?;
        let data = r.dir.path().join("vendor");
        // This machine's target, so each counter takes it (staged only: nothing applies it).
        let target = frank::counter::bundles::this_target();
        frank_cli(&[
            "vendor",
            "bundle",
            "add",
            "--data",
            data.to_str().unwrap_or_default(),
            "bench-release",
            "--kind",
            "release",
            "--version",
            "9.0.0",
            "--target",
            &target,
            "--release-key",
            key.to_str().unwrap_or_default(),
            file.to_str().unwrap_or_default(),
        ])?;
        Ok(fp)
    })();
    let fp = match published {
        Ok(fp) => fp,
        Err(e) => {
            fig.error = Some(e);
            return fig;
        }
    };
    let release_key = match frank::identity::parse_fingerprint(&fp) {
        Ok(k) => k,
        Err(e) => {
            fig.error = Some(e.to_string());
            return fig;
        }
    };
    // The vendor reloads its shelf within a second: wait until it offers the bundle.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let list: Result<frank::wire::BundleList, _> = held[0]
            .session
            .send(&frank::wire::Request::Bundles(
                frank::wire::BundlesRequest {},
            ))
            .await;
        if list.is_ok_and(|l| !l.manifests.is_empty()) {
            break;
        }
        if Instant::now() > deadline {
            fig.error = Some("the vendor did not offer the bundle".into());
            return fig;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let before = totals(held).lapses;
    let vendor_before = support::metric(r.metrics, "frank_link_lapses_total");
    let started = Instant::now();
    // When, in the phase, links lapse (s from its start, lapses so far): the lapses' timing
    // says what starved the keepalives (the downloads themselves, or the checks and installs
    // at their end).
    let watch_links: Vec<_> = held.iter().map(|h| h.link.status.clone()).collect();
    let (phase_over, over) = tokio::sync::watch::channel(false);
    let lapse_times = tokio::spawn(async move {
        let mut seen = 0;
        let mut at = Vec::new();
        let mut last_tick = Instant::now();
        let mut tick_gap_max = Duration::ZERO;
        while !*over.borrow() && started.elapsed() < Duration::from_secs(BUNDLE_PHASE_S_MAX) {
            tick_gap_max = tick_gap_max.max(last_tick.elapsed());
            last_tick = Instant::now();
            let n: u64 = watch_links.iter().map(|l| l.borrow().lapses).sum::<u64>() - before;
            if n != seen {
                seen = n;
                at.push((started.elapsed().as_secs_f64(), n));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (at, tick_gap_max.as_secs_f64() * 1e3)
    });
    let mut tasks = Vec::new();
    for (i, h) in held.iter().enumerate() {
        let session = h.session.clone();
        let dir = work.path().join(format!("counter-{i}"));
        let mut cfg = frank::counter::bundles::BundleConfig::new(release_key, dir);
        cfg.bundle_bytes_max = 2 * BUNDLE_BYTES as u64;
        tasks.push(tokio::spawn(async move {
            let (_idle, printing) = tokio::sync::watch::channel(false);
            let r = tokio::time::timeout(
                Duration::from_secs(BUNDLE_PHASE_S_MAX),
                frank::counter::bundles::sync(&session, &cfg, printing),
            )
            .await;
            (r, started.elapsed().as_secs_f64())
        }));
    }
    let mut errors = Vec::new();
    for t in tasks {
        let done_s = match t.await {
            Ok((r, done_s)) => {
                match r {
                    Ok(Ok(report)) if report.taken.len() == 1 => fig.ok += 1,
                    Ok(Ok(report)) => errors.push(format!("{:?}", report.refused)),
                    Ok(Err(e)) => errors.push(e.to_string()),
                    Err(_) => errors.push("timed out".into()),
                }
                done_s
            }
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        fig.first_done_s = fig.first_done_s.min(done_s);
    }
    let seconds = started.elapsed().as_secs_f64();
    fig.lapses = totals(held).lapses - before;
    // Scraped after a second, so a lapse the vendor saw at the end is counted.
    tokio::time::sleep(Duration::from_secs(1)).await;
    fig.vendor_lapses =
        (support::metric(r.metrics, "frank_link_lapses_total") - vendor_before) as u64;
    phase_over.send_replace(true);
    (fig.lapse_times_s, fig.tick_gap_ms_max) = lapse_times.await.unwrap_or_default();
    if fig.ok == held.len() {
        fig.seconds = Some(seconds);
    } else {
        fig.error = errors.into_iter().next();
    }
    eprintln!(
        "bundle: {} bytes to {} counters in {:.2} s ({} ok, the first after {:.2} s), lapses among them {} (s, lapses so far: {:?}), seen by the vendor {}; this process's 10 ms timer ran up to {:.0} ms apart",
        BUNDLE_BYTES,
        fig.counters,
        seconds,
        fig.ok,
        fig.first_done_s,
        fig.lapses,
        fig.lapse_times_s,
        fig.vendor_lapses,
        fig.tick_gap_ms_max
    );
    fig
}
