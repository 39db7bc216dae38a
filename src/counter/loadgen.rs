//! `frank loadgen`: enrolls N simulated terminals on one account and drives
//! authorize → commit (with some voids and top-ups) over real QUIC for capacity planning.
//! Several fronts of one vendor may be given: terminal n talks to front n % count. Prints
//! throughput and latency percentiles (pairs per front too), then one JSON line.
//!
//! It rides through a vendor whose database fails over: a request answered `link_lapsed`,
//! `busy` or `internal`, or not answered in time, is sent again with the same request id (so
//! the ledger applies it at most once), pausing `RETRY_PAUSE_MS_MIN` doubling to
//! `RETRY_PAUSE_MS_MAX`, at most `RETRIES_MAX` times. With an acknowledgement log
//! (`--acks FILE`, [`crate::ledger::acks`]) every finished request appends one line as it is
//! answered: what was acknowledged (funded, authorized, committed, voided), refused, or left
//! unanswered after every retry.

use super::client::{self, ClientError, Session};
use crate::ledger::acks::{Ack, AckAnswer, AckLog, AckOp};
use crate::link::guard::LinkState;
use crate::wire::{self, ErrorCode, FundMethod, WireItem};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct LoadgenConfig {
    /// The vendor's fronts; terminal n talks to `vendors[n % vendors.len()]`.
    pub vendors: Vec<SocketAddr>,
    pub pinned: ed25519_dalek::VerifyingKey,
    pub code: String,
    pub clerk: String,
    pub password: String,
    pub terminals: usize,
    pub duration_s: u64,
    /// Every n-th piece is voided instead of committed.
    pub void_every: u64,
    /// Append one line per finished request here ([`crate::ledger::acks`]).
    pub acks: Option<PathBuf>,
}

/// What one run measured.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LoadgenReport {
    pub terminals: usize,
    pub duration_s: f64,
    pub pairs: u64,
    /// Pairs through each front, in `--vendor` order.
    pub pairs_per_front: Vec<u64>,
    pub voids: u64,
    pub funds: u64,
    pub errors: u64,
    /// Requests refused as `link_lapsed`/`busy`/`internal` (or not answered in time) and sent
    /// again.
    pub retries: u64,
    /// Requests left without an answer after every retry (or when the connection was lost).
    pub unanswered: u64,
    pub pairs_per_s: f64,
    pub pair_p50_ms: f64,
    pub pair_p90_ms: f64,
    pub pair_p99_ms: f64,
    pub pair_max_ms: f64,
}

/// Most terminals one run simulates.
pub const TERMINALS_MAX: usize = 1024;
/// Most fronts one run spreads its terminals over.
pub const FRONTS_MAX: usize = 64;
/// Largest run.
pub const DURATION_S_MAX: u64 = 24 * 3600;
/// Each top-up (the ledger's default maximum).
const TOP_UP_CENTS: u64 = 1_000_000;
const PIECE_CENTS: u64 = 100;
/// Sends of one request again after a retryable answer, and the pauses between them (doubling
/// from the first to the last): together about a minute, longer than a database failover.
const RETRIES_MAX: u32 = 200;
const RETRY_PAUSE_MS_MIN: u64 = 20;
const RETRY_PAUSE_MS_MAX: u64 = 320;

fn retryable(e: &ClientError) -> bool {
    matches!(e, ClientError::Timeout)
        || matches!(
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

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    voids: u64,
    funds: u64,
    errors: u64,
    retries: u64,
    unanswered: u64,
}

/// One terminal's place: its front, its ids, where it records what was acknowledged.
struct Terminal {
    front: usize,
    terminal: u64,
    account: u64,
    acks: Option<Arc<AckLog>>,
}

impl Terminal {
    /// Appends the request's line to the acknowledgement log (if any).
    fn record(
        &self,
        op: AckOp,
        answer: AckAnswer,
        request: [u8; 16],
        serial: Option<u64>,
        sent_ms: u64,
    ) -> std::io::Result<()> {
        let Some(log) = &self.acks else {
            return Ok(());
        };
        log.append(&Ack {
            op,
            answer,
            request: hex::encode(request),
            account: self.account,
            serial,
            front: self.front,
            terminal: self.terminal,
            sent_ms,
            at_ms: crate::clock::unix_ms(),
        })
    }
}

/// How a request ended: its answer, and when the attempt that got it was sent.
struct Sent<T> {
    result: Result<T, ClientError>,
    sent_ms: u64,
}

/// Sends a request (`attempt` builds and sends it, always under the same request id) and
/// sends it again while the answer is retryable, at most `RETRIES_MAX` times.
async fn send_retrying<T, Fut: Future<Output = Result<T, ClientError>>>(
    t: &mut Tally,
    mut attempt: impl FnMut() -> Fut,
) -> Sent<T> {
    let mut pause_ms = RETRY_PAUSE_MS_MIN;
    let mut sent_ms = crate::clock::unix_ms();
    let mut result = attempt().await;
    for _ in 0..RETRIES_MAX {
        match &result {
            Err(e) if retryable(e) => {}
            _ => break,
        }
        t.retries += 1;
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
        pause_ms = (pause_ms * 2).min(RETRY_PAUSE_MS_MAX);
        sent_ms = crate::clock::unix_ms();
        result = attempt().await;
    }
    Sent { result, sent_ms }
}

/// The answer recorded for a request that was not acknowledged.
fn not_acknowledged(e: &ClientError) -> AckAnswer {
    if e.code().is_some() && !retryable(e) {
        AckAnswer::Refused
    } else {
        AckAnswer::Unanswered
    }
}

/// Why a terminal stopped early.
enum Stop {
    /// The connection to its front is gone.
    ConnectionLost,
    /// The acknowledgement log could not be written: going on would acknowledge unrecorded.
    AckLog(std::io::Error),
}

async fn start_terminal(
    cfg: &LoadgenConfig,
    n: usize,
    acks: &Option<Arc<AckLog>>,
) -> anyhow::Result<(
    quinn::Endpoint,
    Session,
    crate::link::driver::LinkHandle,
    Terminal,
)> {
    let front = n
        .checked_rem(cfg.vendors.len())
        .ok_or_else(|| anyhow::anyhow!("no vendor front given"))?;
    // In range: a remainder of the list's length.
    let vendor = cfg.vendors[front];
    let endpoint = client::endpoint_for(vendor)?;
    let conn = client::connect(&endpoint, vendor, cfg.pinned).await?;
    let device_key = crate::identity::new_signing_key()?;
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
    let account = s.balance().await?.ledger_account;
    let terminal = Terminal {
        front,
        terminal: e.terminal_id,
        account,
        acks: acks.clone(),
    };
    Ok((endpoint, s, link, terminal))
}

async fn fund(s: &Session, me: &Terminal, t: &mut Tally) -> Result<(), Stop> {
    let id = crate::clock::fresh_request_id().to_bytes();
    let sent = send_retrying(t, move || {
        s.fund(id, TOP_UP_CENTS, FundMethod::simulator_test_card())
    })
    .await;
    let answer = match &sent.result {
        Ok(_) => {
            t.funds += 1;
            AckAnswer::Funded
        }
        Err(e) => {
            t.errors += 1;
            not_acknowledged(e)
        }
    };
    if answer == AckAnswer::Unanswered {
        t.unanswered += 1;
    }
    me.record(AckOp::Fund, answer, id, None, sent.sent_ms)
        .map_err(Stop::AckLog)?;
    match sent.result {
        Err(ClientError::ConnectionLost(_)) => Err(Stop::ConnectionLost),
        _ => Ok(()),
    }
}

/// Records a settlement (commit or void) of `serial`; false when the connection is lost.
fn settled(
    me: &Terminal,
    t: &mut Tally,
    op: AckOp,
    id: [u8; 16],
    serial: u64,
    sent: &Sent<wire::PieceDone>,
) -> Result<bool, Stop> {
    let answer = match (&sent.result, op) {
        (Ok(_), AckOp::Void) => {
            t.voids += 1;
            AckAnswer::Voided
        }
        (Ok(_), _) => AckAnswer::Committed,
        (Err(e), _) => {
            t.errors += 1;
            not_acknowledged(e)
        }
    };
    if answer == AckAnswer::Unanswered {
        t.unanswered += 1;
    }
    me.record(op, answer, id, Some(serial), sent.sent_ms)
        .map_err(Stop::AckLog)?;
    Ok(!matches!(sent.result, Err(ClientError::ConnectionLost(_))))
}

async fn drive(s: Session, me: Terminal, until: Instant, void_every: u64) -> Tally {
    let mut t = Tally::default();
    let stop = drive_until(&s, &me, until, void_every, &mut t).await;
    match stop {
        Ok(()) | Err(Stop::ConnectionLost) => {}
        Err(Stop::AckLog(e)) => {
            t.errors += 1;
            tracing::error!(error = %e, "cannot write the acknowledgement log; terminal stopped");
        }
    }
    t
}

async fn drive_until(
    s: &Session,
    me: &Terminal,
    until: Instant,
    void_every: u64,
    t: &mut Tally,
) -> Result<(), Stop> {
    let mut n: u64 = 0;
    while Instant::now() < until {
        n += 1;
        let started = Instant::now();
        let auth_id = crate::clock::fresh_request_id().to_bytes();
        let sent = send_retrying(t, move || {
            s.authorize(auth_id, PIECE_CENTS, item(), "10001")
        })
        .await;
        let a = match sent.result {
            Ok(a) => {
                me.record(
                    AckOp::Authorize,
                    AckAnswer::Authorized,
                    auth_id,
                    Some(a.piece_serial),
                    sent.sent_ms,
                )
                .map_err(Stop::AckLog)?;
                a
            }
            Err(e) => {
                let answer = if e.code() == Some(ErrorCode::InsufficientFunds) {
                    AckAnswer::Refused
                } else {
                    t.errors += 1;
                    not_acknowledged(&e)
                };
                if answer == AckAnswer::Unanswered {
                    t.unanswered += 1;
                }
                me.record(AckOp::Authorize, answer, auth_id, None, sent.sent_ms)
                    .map_err(Stop::AckLog)?;
                if matches!(e, ClientError::ConnectionLost(_)) {
                    return Err(Stop::ConnectionLost);
                }
                if e.code() == Some(ErrorCode::InsufficientFunds) {
                    fund(s, me, t).await?;
                }
                continue;
            }
        };
        let serial = a.piece_serial;
        let id = crate::clock::fresh_request_id().to_bytes();
        if void_every > 0 && n.is_multiple_of(void_every) {
            let sent = send_retrying(t, move || s.void(id, serial, false)).await;
            if !settled(me, t, AckOp::Void, id, serial, &sent)? {
                return Err(Stop::ConnectionLost);
            }
            continue;
        }
        let sent = send_retrying(t, move || s.commit(id, serial)).await;
        if sent.result.is_ok() {
            let us = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
            t.latencies_us.push(us);
        }
        if !settled(me, t, AckOp::Commit, id, serial, &sent)? {
            return Err(Stop::ConnectionLost);
        }
    }
    Ok(())
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
    if cfg.vendors.is_empty() || cfg.vendors.len() > FRONTS_MAX {
        anyhow::bail!("--vendor must name 1..={FRONTS_MAX} fronts");
    }
    let acks = match &cfg.acks {
        Some(path) => Some(Arc::new(AckLog::open(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot open the acknowledgement log {}: {e}",
                path.display()
            )
        })?)),
        None => None,
    };
    let mut terms = Vec::with_capacity(cfg.terminals);
    for n in 0..cfg.terminals {
        terms.push(start_terminal(&cfg, n, &acks).await?);
    }
    let mut all = Tally::default();
    if let Some((_, s, _, me)) = terms.first()
        && let Err(Stop::AckLog(e)) = fund(s, me, &mut all).await
    {
        anyhow::bail!("cannot write the acknowledgement log: {e}");
    }
    let started = Instant::now();
    let until = started + Duration::from_secs(cfg.duration_s);
    let mut tasks = Vec::with_capacity(terms.len());
    let mut fronts = Vec::with_capacity(terms.len());
    for (_, s, _, me) in terms.iter_mut() {
        let me = Terminal {
            front: me.front,
            terminal: me.terminal,
            account: me.account,
            acks: me.acks.take(),
        };
        fronts.push(me.front);
        tasks.push(tokio::spawn(drive(s.clone(), me, until, cfg.void_every)));
    }
    let mut pairs_per_front = vec![0u64; cfg.vendors.len()];
    for (task, front) in tasks.into_iter().zip(fronts) {
        let t = task.await?;
        // `front` indexes `vendors` (start_terminal), the same length.
        pairs_per_front[front] += t.latencies_us.len() as u64;
        all.latencies_us.extend(t.latencies_us);
        all.voids += t.voids;
        all.funds += t.funds;
        all.errors += t.errors;
        all.retries += t.retries;
        all.unanswered += t.unanswered;
    }
    let elapsed = started.elapsed().as_secs_f64();
    for (endpoint, s, _link, _) in &terms {
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
        pairs_per_front,
        voids: all.voids,
        funds: all.funds,
        errors: all.errors,
        retries: all.retries,
        unanswered: all.unanswered,
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
