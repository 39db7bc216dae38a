//! `cargo bench --bench link [-- --quick]`
//!
//! Measures, over real QUIC on loopback through the fault proxy:
//! - lapse detection: proxy cut → the counter's LinkGuard says Lapsed (≥ 200 cuts in full mode),
//!   timed at the guard's own transition instant; `lapse_observed_p99_ms` adds the wake-up of a
//!   subscriber task;
//! - the baseline: quinn's own idle-timeout detection (idle timeout = the same 150 ms
//!   detection window, quinn keep-alive every 50 ms), same run, same proxy;
//! - false lapses in a soak at 1 % random loss each way (10 minutes in full mode);
//! - sans-I/O keepalive verification throughput on one core.
//!
//! The final stdout line is JSON.

use frank::counter::client;
use frank::faultproxy::FaultProxy;
use frank::link::LinkState;
use frank::link::keepalive::KeepaliveEndpoint;
use frank::link::keys::MacKey;
use frank::vendor_server::directory::Directory;
use frank::vendor_server::server::VendorServer;
use frank::vendor_server::{DB_FILE, DataDir};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

struct Mode {
    cuts: usize,
    quinn_cuts: usize,
    soak_s: u64,
    verify_datagrams: usize,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn wait_state(rx: &mut watch::Receiver<LinkState>, want: LinkState, limit: Duration) -> bool {
    tokio::time::timeout(limit, rx.wait_for(|s| *s == want))
        .await
        .is_ok_and(|r| r.is_ok())
}

fn main() -> anyhow::Result<()> {
    let quick = std::env::args().any(|a| a == "--quick");
    let mode = if quick {
        Mode {
            cuts: 200,
            quinn_cuts: 30,
            soak_s: 20,
            verify_datagrams: 200_000,
        }
    } else {
        Mode {
            cuts: 300,
            quinn_cuts: 100,
            soak_s: 600,
            verify_datagrams: 1_000_000,
        }
    };
    let verified_per_s = verify_throughput(mode.verify_datagrams);
    eprintln!("keepalives verified per second (one core): {verified_per_s:.0}");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async_main(mode, verified_per_s, quick))
}

fn verify_throughput(n: usize) -> f64 {
    let t0 = Instant::now();
    let (c2v, v2c) = (MacKey([1; 32]), MacKey([2; 32]));
    let mut sender =
        KeepaliveEndpoint::new(9, c2v.clone(), v2c.clone(), t0, Duration::from_secs(3600));
    let mut receiver = KeepaliveEndpoint::new(9, v2c, c2v, t0, Duration::from_secs(3600));
    let datagrams: Vec<_> = (0..n).map(|_| sender.build(t0)).collect();
    let start = Instant::now();
    let mut ok = 0usize;
    for d in &datagrams {
        if receiver.receive(d, t0).is_ok() {
            ok += 1;
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    assert_eq!(ok, n, "every datagram must verify");
    n as f64 / elapsed
}

async fn async_main(mode: Mode, verified_per_s: f64, quick: bool) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = DataDir::new(tmp.path().join("vendor"));
    data.init()?;
    let code = {
        let mut d = Directory::open(&data.file(DB_FILE))?;
        let (acct, _) = d.add_account("bench", 1)?;
        // Many terminals enroll with it (the first code enrolls one).
        let code = d
            .rotate_enrollment_code(
                acct.id,
                frank::vendor_server::directory::CodePolicy {
                    uses: 10_000,
                    valid_ms: 24 * 3_600_000,
                },
                frank::clock::unix_ms(),
            )?
            .code;
        d.add_clerk(acct.id, "bench", "bench-password", false, 1)?;
        code
    };
    let server = VendorServer::start(&data, Some("127.0.0.1:0".parse()?)).await?;
    let proxy = FaultProxy::start("127.0.0.1:0".parse()?, server.local_addr()?).await?;
    let endpoint = client::client_endpoint("127.0.0.1:0".parse()?)?;
    let conn = client::connect(&endpoint, proxy.local_addr(), server.public_key()).await?;
    let device = frank::identity::new_signing_key().unwrap();
    let e = conn
        .enroll(&code, "bench", &device, &server.public_key())
        .await?;
    let session = conn
        .login(e.terminal_id, &device, "bench", "bench-password")
        .await?;
    let link = session.start_link().map_err(|e| anyhow::anyhow!(e))?;
    let mut state = link.state.clone();
    anyhow::ensure!(
        wait_state(&mut state, LinkState::Up, Duration::from_secs(5)).await,
        "link never came up"
    );

    // 1. Lapse detection: from the cut to the instant the counter's LinkGuard declared the
    // lapse (`LinkStatus::since`), and, separately, to when a subscriber woke up to it.
    let mut status = link.status.clone();
    let mut lapse_ms = Vec::with_capacity(mode.cuts);
    let mut observed_ms = Vec::with_capacity(mode.cuts);
    for i in 0..mode.cuts {
        anyhow::ensure!(
            wait_state(&mut state, LinkState::Up, Duration::from_secs(5)).await,
            "no recovery before cut {i}"
        );
        // Cut at a random phase of the keepalive interval.
        tokio::time::sleep(Duration::from_millis(60 + rand::random::<u64>() % 50)).await;
        proxy.handle.cut();
        let t0 = Instant::now();
        let lapsed = tokio::time::timeout(
            Duration::from_secs(5),
            status.wait_for(|s| s.state == LinkState::Lapsed),
        )
        .await;
        let observed = t0.elapsed();
        let since = match lapsed {
            Ok(Ok(s)) => s.since,
            _ => anyhow::bail!("cut {i} not detected"),
        };
        lapse_ms.push(since.saturating_duration_since(t0).as_secs_f64() * 1000.0);
        observed_ms.push(observed.as_secs_f64() * 1000.0);
        proxy.handle.heal();
    }
    lapse_ms.sort_by(f64::total_cmp);
    observed_ms.sort_by(f64::total_cmp);
    eprintln!(
        "lapse detection over {} cuts: p50 {:.1} ms p99 {:.1} ms max {:.1} ms",
        lapse_ms.len(),
        percentile(&lapse_ms, 0.5),
        percentile(&lapse_ms, 0.99),
        lapse_ms.last().copied().unwrap_or(f64::NAN)
    );

    // 2. Baseline: quinn's idle timeout alone, same detection window, through the same proxy.
    let quinn_ms = quinn_idle_baseline(&data, mode.quinn_cuts).await?;

    // 3. Soak at 1 % random loss each way.
    anyhow::ensure!(
        wait_state(&mut state, LinkState::Up, Duration::from_secs(5)).await,
        "no recovery before soak"
    );
    let before = link.status.borrow().clone();
    proxy.handle.update(|f| f.drop_rate = 0.01);
    tokio::time::sleep(Duration::from_secs(mode.soak_s)).await;
    proxy.handle.heal();
    let after = link.status.borrow().clone();
    let false_lapses = after.lapses - before.lapses;
    let fresh = (after.counters.fresh + after.counters.late)
        - (before.counters.fresh + before.counters.late);
    let expected = after.peer_highest_seq - before.peer_highest_seq;
    let loss_pct = 100.0 * (expected.saturating_sub(fresh)) as f64 / expected.max(1) as f64;
    eprintln!(
        "soak {} s at 1 % loss each way: {false_lapses} false lapses, measured loss {loss_pct:.2} %",
        mode.soak_s
    );

    let json = serde_json::json!({
        "mode": if quick { "quick" } else { "full" },
        "cuts": lapse_ms.len(),
        "lapse_p50_ms": round1(percentile(&lapse_ms, 0.5)),
        "lapse_p99_ms": round1(percentile(&lapse_ms, 0.99)),
        "lapse_max_ms": round1(lapse_ms.last().copied().unwrap_or(f64::NAN)),
        "lapse_observed_p99_ms": round1(percentile(&observed_ms, 0.99)),
        "quinn_idle_cuts": quinn_ms.0,
        "quinn_idle_p99_ms": round1(quinn_ms.1),
        "lapse_p99_vs_quinn_idle_p99": round2(percentile(&lapse_ms, 0.99) / quinn_ms.1),
        "false_lapses": false_lapses,
        "loss_pct": round2(loss_pct),
        "soak_s": mode.soak_s,
        "keepalives_verified_per_s": verified_per_s.round(),
    });
    server.shutdown().await;
    println!("{json}");
    Ok(())
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// A plain quinn server (the vendor's key and certificate) and client whose idle timeout is the
/// same 150 ms detection window, quinn keep-alive every 50 ms; measures cut → connection closed.
async fn quinn_idle_baseline(data: &DataDir, cuts: usize) -> anyhow::Result<(usize, f64)> {
    let files = data.load()?;
    let detect = Duration::from_millis(150);
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(quinn::IdleTimeout::try_from(detect)?));
    transport.keep_alive_interval(Some(Duration::from_millis(50)));
    let transport = Arc::new(transport);
    let mut sc = frank::tls::server_config(data.open_signer(&files)?)?;
    sc.transport_config(transport.clone());
    let server = quinn::Endpoint::server(sc, "127.0.0.1:0".parse()?)?;
    let server_addr = server.local_addr()?;
    tokio::spawn({
        let server = server.clone();
        async move {
            while let Some(inc) = server.accept().await {
                tokio::spawn(async move {
                    if let Ok(connecting) = inc.accept()
                        && let Ok(c) = connecting.await
                    {
                        let _ = c.closed().await;
                    }
                });
            }
        }
    });
    let proxy = FaultProxy::start("127.0.0.1:0".parse()?, server_addr).await?;
    let endpoint = quinn::Endpoint::client("127.0.0.1:0".parse()?)?;
    let pinned = files.public_key;
    let mut samples = Vec::with_capacity(cuts);
    for i in 0..cuts {
        let mut cc = frank::tls::client_config(frank::tls::PinnedVendor::new(pinned))?;
        cc.transport_config(transport.clone());
        let conn = endpoint
            .connect_with(cc, proxy.local_addr(), frank::tls::VENDOR_CERT_NAME)?
            .await?;
        tokio::time::sleep(Duration::from_millis(200 + rand::random::<u64>() % 50)).await;
        proxy.handle.cut();
        let t0 = Instant::now();
        let reason = tokio::time::timeout(Duration::from_secs(10), conn.closed()).await;
        anyhow::ensure!(reason.is_ok(), "quinn never timed out on cut {i}");
        samples.push(t0.elapsed().as_secs_f64() * 1000.0);
        proxy.handle.heal();
    }
    samples.sort_by(f64::total_cmp);
    let p99 = percentile(&samples, 0.99);
    eprintln!(
        "quinn idle-timeout detection over {} cuts: p50 {:.1} ms p99 {:.1} ms",
        samples.len(),
        percentile(&samples, 0.5),
        p99
    );
    Ok((samples.len(), p99))
}
