//! `frank loadgen`: enrolls N simulated terminals on one account and drives
//! authorize → commit (with some voids and top-ups) over real QUIC for capacity planning.
//! Prints throughput and latency percentiles, then one JSON line.

use super::client::{self, ClientError, Session};
use crate::link::guard::LinkState;
use crate::wire::{self, ErrorCode, FundMethod, WireItem};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LoadgenConfig {
    pub vendor: SocketAddr,
    pub pinned: ed25519_dalek::VerifyingKey,
    pub code: String,
    pub clerk: String,
    pub password: String,
    pub terminals: usize,
    pub duration_s: u64,
    /// Every n-th piece is voided instead of committed.
    pub void_every: u64,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadgenReport {
    pub terminals: usize,
    pub duration_s: f64,
    pub pairs: u64,
    pub voids: u64,
    pub funds: u64,
    pub errors: u64,
    /// Requests refused as `link_lapsed`/`busy`/`internal` and retried.
    pub retries: u64,
    pub pairs_per_s: f64,
    pub pair_p50_ms: f64,
    pub pair_p90_ms: f64,
    pub pair_p99_ms: f64,
    pub pair_max_ms: f64,
}

/// Most terminals one run simulates.
pub const TERMINALS_MAX: usize = 1024;
/// Largest run.
pub const DURATION_S_MAX: u64 = 24 * 3600;
/// Each top-up (the ledger's default maximum).
const TOP_UP_CENTS: u64 = 1_000_000;
const PIECE_CENTS: u64 = 100;
/// Retries of one commit refused as `link_lapsed`, `busy` or `internal`, and the pause between them.
const RETRIES_MAX: u32 = 100;
const RETRY_PAUSE_MS: u64 = 20;

fn retryable(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(ErrorCode::LinkLapsed | ErrorCode::Busy | ErrorCode::Internal)
    )
}

fn item() -> WireItem {
    WireItem::Coupon(wire::ValueItem {
        text: "loadgen".into(),
        value_cents: PIECE_CENTS,
        expiry: "2040-01-01".into(),
    })
}

struct Tally {
    latencies_us: Vec<u64>,
    voids: u64,
    funds: u64,
    errors: u64,
    retries: u64,
}

async fn start_terminal(
    cfg: &LoadgenConfig,
    n: usize,
) -> anyhow::Result<(quinn::Endpoint, Session, crate::link::driver::LinkHandle)> {
    let endpoint = client::endpoint_for(cfg.vendor)?;
    let conn = client::connect(&endpoint, cfg.vendor, cfg.pinned).await?;
    let device_key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
    let e = conn
        .enroll(&cfg.code, &format!("loadgen-{n}"), &device_key, &cfg.pinned)
        .await?;
    let s = conn
        .login(e.terminal_id, &device_key, &cfg.clerk, &cfg.password)
        .await?;
    let link = s.start_link()?;
    let mut state = link.state.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| *s == LinkState::Up),
    )
    .await
    .map_err(|_| anyhow::anyhow!("terminal {n}: link not up within 10 s"))??;
    // The vendor's view comes up a keepalive or two after ours.
    tokio::time::sleep(Duration::from_millis(
        u64::from(s.guard.keepalive_interval_ms) * 4,
    ))
    .await;
    Ok((endpoint, s, link))
}

async fn fund(s: &Session, t: &mut Tally) {
    match s
        .fund(
            crate::ledger::RequestId::fresh().to_bytes(),
            TOP_UP_CENTS,
            FundMethod::simulator_test_card(),
        )
        .await
    {
        Ok(_) => t.funds += 1,
        Err(_) => t.errors += 1,
    }
}

async fn drive(s: Session, until: Instant, void_every: u64) -> Tally {
    let mut t = Tally {
        latencies_us: Vec::new(),
        voids: 0,
        funds: 0,
        errors: 0,
        retries: 0,
    };
    let mut n: u64 = 0;
    while Instant::now() < until {
        n += 1;
        let started = Instant::now();
        let a = match s
            .authorize(
                crate::ledger::RequestId::fresh().to_bytes(),
                PIECE_CENTS,
                item(),
                "10001",
            )
            .await
        {
            Ok(a) => a,
            Err(e) if e.code() == Some(ErrorCode::InsufficientFunds) => {
                fund(&s, &mut t).await;
                continue;
            }
            Err(e) if retryable(&e) => {
                t.retries += 1;
                tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
                continue;
            }
            Err(ClientError::ConnectionLost(_)) => {
                t.errors += 1;
                break;
            }
            Err(_) => {
                t.errors += 1;
                continue;
            }
        };
        if void_every > 0 && n.is_multiple_of(void_every) {
            match s
                .void(
                    crate::ledger::RequestId::fresh().to_bytes(),
                    a.piece_serial,
                    false,
                )
                .await
            {
                Ok(_) => t.voids += 1,
                Err(_) => t.errors += 1,
            }
            continue;
        }
        let commit_id = crate::ledger::RequestId::fresh().to_bytes();
        let mut committed = s.commit(commit_id, a.piece_serial).await;
        for _ in 0..RETRIES_MAX {
            match &committed {
                Err(e) if retryable(e) => {
                    t.retries += 1;
                    tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS)).await;
                    // Same request id: the ledger applies it at most once.
                    committed = s.commit(commit_id, a.piece_serial).await;
                }
                _ => break,
            }
        }
        match committed {
            Ok(_) => {
                let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
                t.latencies_us.push(us);
            }
            Err(_) => t.errors += 1,
        }
    }
    t
}

fn percentile_ms(sorted_us: &[u64], p: f64) -> f64 {
    if sorted_us.is_empty() {
        return 0.0;
    }
    let i = ((sorted_us.len() as f64 - 1.0) * p).round() as usize;
    sorted_us[i.min(sorted_us.len() - 1)] as f64 / 1000.0
}

/// Runs the load and returns the report.
pub async fn run(cfg: LoadgenConfig) -> anyhow::Result<LoadgenReport> {
    if cfg.terminals == 0 || cfg.terminals > TERMINALS_MAX {
        anyhow::bail!("--terminals must be 1..={TERMINALS_MAX}");
    }
    if cfg.duration_s == 0 || cfg.duration_s > DURATION_S_MAX {
        anyhow::bail!("--duration-s must be 1..={DURATION_S_MAX}");
    }
    let mut terms = Vec::with_capacity(cfg.terminals);
    for n in 0..cfg.terminals {
        terms.push(start_terminal(&cfg, n).await?);
    }
    let mut seed = Tally {
        latencies_us: Vec::new(),
        voids: 0,
        funds: 0,
        errors: 0,
        retries: 0,
    };
    fund(&terms[0].1, &mut seed).await;
    let started = Instant::now();
    let until = started + Duration::from_secs(cfg.duration_s);
    let tasks: Vec<_> = terms
        .iter()
        .map(|(_, s, _)| tokio::spawn(drive(s.clone(), until, cfg.void_every)))
        .collect();
    let mut all = seed;
    for task in tasks {
        let t = task.await?;
        all.latencies_us.extend(t.latencies_us);
        all.voids += t.voids;
        all.funds += t.funds;
        all.errors += t.errors;
        all.retries += t.retries;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for (endpoint, s, _link) in &terms {
        s.conn
            .conn
            .close(quinn::VarInt::from_u32(0), b"loadgen done");
        endpoint.wait_idle().await;
    }
    all.latencies_us.sort_unstable();
    let pairs = all.latencies_us.len() as u64;
    Ok(LoadgenReport {
        terminals: cfg.terminals,
        duration_s: elapsed,
        pairs,
        voids: all.voids,
        funds: all.funds,
        errors: all.errors,
        retries: all.retries,
        pairs_per_s: if elapsed > 0.0 {
            pairs as f64 / elapsed
        } else {
            0.0
        },
        pair_p50_ms: percentile_ms(&all.latencies_us, 0.50),
        pair_p90_ms: percentile_ms(&all.latencies_us, 0.90),
        pair_p99_ms: percentile_ms(&all.latencies_us, 0.99),
        pair_max_ms: percentile_ms(&all.latencies_us, 1.0),
    })
}
