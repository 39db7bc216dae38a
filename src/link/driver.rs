//! The tokio shell around the keepalive endpoint and the LinkGuard, used by both ends of a
//! logged-in connection: sends a datagram every `keepalive_interval_ms`, judges incoming ones,
//! runs the guard's timer, and publishes [`LinkStatus`] on a `watch`.

use super::guard::{GuardConfig, LinkGuard, LinkState};
use super::keepalive::{KeepaliveCounters, KeepaliveEndpoint, Reject};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What a subscriber (printer streamer, status bar, admin monitor) sees of a link.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkStatus {
    pub state: LinkState,
    pub session_id: u64,
    /// Smoothed round-trip time from keepalive echoes.
    pub rtt: Option<Duration>,
    /// Share of the peer's keepalives that never arrived valid.
    pub loss_pct: f64,
    pub counters: KeepaliveCounters,
    /// Highest keepalive sequence number received from the peer.
    pub peer_highest_seq: u64,
    /// When the last fresh keepalive arrived.
    pub last_fresh: Option<Instant>,
    pub lapses: u64,
    /// When the state last changed.
    pub since: Instant,
}

impl LinkStatus {
    pub fn down(session_id: u64, now: Instant) -> Self {
        LinkStatus {
            state: LinkState::Down,
            session_id,
            rtt: None,
            loss_pct: 0.0,
            counters: KeepaliveCounters::default(),
            peer_highest_seq: 0,
            last_fresh: None,
            lapses: 0,
            since: now,
        }
    }
}

/// What every link of this process did, summed (the vendor's metrics, the counter's exit log).
/// Process-wide: a process runs one vendor or one counter (the demo runs both and sums both).
#[derive(Debug)]
pub struct LinkTotals {
    pub sent: AtomicU64,
    pub fresh: AtomicU64,
    pub late: AtomicU64,
    pub malformed: AtomicU64,
    pub wrong_session: AtomicU64,
    pub replayed: AtomicU64,
    pub stale: AtomicU64,
    pub bad_mac: AtomicU64,
    /// Up → Lapsed transitions.
    pub lapses: AtomicU64,
    /// Gaps between consecutive fresh keepalives of a link, in 1 ms buckets: bucket `i` counts
    /// gaps of `i` ms (the last one, `FRESH_GAP_BUCKETS - 1` ms and more).
    pub fresh_gap_ms: [AtomicU64; FRESH_GAP_BUCKETS],
}

/// Buckets of [`LinkTotals::fresh_gap_ms`]: 0..=999 ms, and 1 s or more.
pub const FRESH_GAP_BUCKETS: usize = 1001;

/// This process's link totals.
pub static LINK_TOTALS: LinkTotals = LinkTotals {
    sent: AtomicU64::new(0),
    fresh: AtomicU64::new(0),
    late: AtomicU64::new(0),
    malformed: AtomicU64::new(0),
    wrong_session: AtomicU64::new(0),
    replayed: AtomicU64::new(0),
    stale: AtomicU64::new(0),
    bad_mac: AtomicU64::new(0),
    lapses: AtomicU64::new(0),
    fresh_gap_ms: [const { AtomicU64::new(0) }; FRESH_GAP_BUCKETS],
};

impl LinkTotals {
    /// The totals as keepalive counters (`sent`, and each verdict) and the lapses.
    pub fn snapshot(&self) -> (KeepaliveCounters, u64) {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        (
            KeepaliveCounters {
                sent: get(&self.sent),
                fresh: get(&self.fresh),
                late: get(&self.late),
                malformed: get(&self.malformed),
                wrong_session: get(&self.wrong_session),
                replayed: get(&self.replayed),
                stale: get(&self.stale),
                bad_mac: get(&self.bad_mac),
            },
            get(&self.lapses),
        )
    }

    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// The fresh-keepalive gap histogram so far (subtract two snapshots for a window).
    pub fn fresh_gaps(&self) -> Vec<u64> {
        self.fresh_gap_ms
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }
}

/// The gap (ms) below which `quantile` (0..=1) of the gaps in `histogram` fall; `None` when it
/// holds none.
pub fn gap_quantile_ms(histogram: &[u64], quantile: f64) -> Option<u64> {
    let total: u64 = histogram.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((total as f64) * quantile.clamp(0.0, 1.0)).ceil().max(1.0) as u64;
    let mut seen = 0;
    for (ms, n) in histogram.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(ms as u64);
        }
    }
    Some(histogram.len().saturating_sub(1) as u64)
}

/// Handle on a running driver. The driver runs while a clone of its handle is held: when the
/// last one is dropped it ends as on [`LinkHandle::stop`] (nobody watches the link any more),
/// and its clone of the connection goes with it — a dropped session and handle close their
/// connection instead of keeping it alive with keepalives nobody reads.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    pub status: watch::Receiver<LinkStatus>,
    /// Just the state, for subscribers that only gate on it (the printer streamer).
    pub state: watch::Receiver<LinkState>,
    mute: Arc<AtomicBool>,
    stop: Arc<tokio::sync::Notify>,
    _stop_when_dropped: Arc<StopOnDrop>,
}

/// Stops the driver when the last [`LinkHandle`] clone (the one owner of this) is dropped.
#[derive(Debug)]
struct StopOnDrop(Arc<tokio::sync::Notify>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

impl LinkHandle {
    /// Stops (or resumes) sending keepalives while receiving continues. A diagnostic for
    /// technicians and tests: the peer's guard must lapse while this one stays fed.
    pub fn set_muted(&self, muted: bool) {
        self.mute.store(muted, Ordering::Relaxed);
    }

    /// Ends the driver (its guard goes `Closed`) while the connection stays open: the session
    /// it watched was replaced by another on the same connection.
    pub fn stop(&self) {
        self.stop.notify_one();
    }
}

/// Spawns the driver for `conn`. It ends when the connection closes, on [`LinkHandle::stop`]
/// or when the last clone of the handle is dropped.
pub fn spawn(
    conn: quinn::Connection,
    endpoint: KeepaliveEndpoint,
    config: GuardConfig,
    session_id: u64,
) -> LinkHandle {
    let now = Instant::now();
    let (status_tx, status_rx) = watch::channel(LinkStatus::down(session_id, now));
    let (state_tx, state_rx) = watch::channel(LinkState::Down);
    let mute = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(tokio::sync::Notify::new());
    let driver = Driver {
        conn,
        endpoint,
        guard: LinkGuard::new(config),
        status_tx,
        state_tx,
        mute: mute.clone(),
        stop: stop.clone(),
        session_id,
        since: now,
    };
    tokio::spawn(driver.run());
    LinkHandle {
        status: status_rx,
        state: state_rx,
        mute,
        _stop_when_dropped: Arc::new(StopOnDrop(stop.clone())),
        stop,
    }
}

/// The gap before the next keepalive: 75–100 % of the interval, drawn per datagram
/// (RFC 5880 §6.8.7). Without it, two lost keepalives put the third exactly at the edge of the
/// detection window and timer jitter decides between alive and lapsed; with it, the third
/// arrives well inside, so only three losses in a row lapse a healthy link.
/// `unit` is a random number in `[0, 1)`.
pub fn jittered(interval: Duration, unit: f64) -> Duration {
    interval.mul_f64(1.0 - KEEPALIVE_JITTER_FRACTION_MAX * unit.clamp(0.0, 1.0))
}

/// Largest share of the interval a keepalive may come early by.
pub const KEEPALIVE_JITTER_FRACTION_MAX: f64 = 0.25;

/// How early the coarse timer wakes before a lapse deadline; the rest is waited by yielding.
pub const LAPSE_TIMER_EARLY_US: u64 = 2_000;

/// Resolves at `deadline`, not up to a tick late: tokio's timer has 1 ms granularity and fires
/// on the tick after the deadline, so it sleeps until shortly before and yields the last
/// stretch. This runs only when a lapse is imminent (no fresh keepalive for almost the whole
/// detection window); while keepalives flow the deadline keeps moving away.
async fn lapse_timer(deadline: Instant) {
    let early = deadline
        .checked_sub(Duration::from_micros(LAPSE_TIMER_EARLY_US))
        .unwrap_or(deadline);
    tokio::time::sleep_until(early.into()).await;
    while Instant::now() < deadline {
        tokio::task::yield_now().await;
    }
}

struct Driver {
    conn: quinn::Connection,
    endpoint: KeepaliveEndpoint,
    guard: LinkGuard,
    status_tx: watch::Sender<LinkStatus>,
    state_tx: watch::Sender<LinkState>,
    mute: Arc<AtomicBool>,
    stop: Arc<tokio::sync::Notify>,
    session_id: u64,
    since: Instant,
}

impl Driver {
    async fn run(mut self) {
        let interval = self.guard.config().keepalive_interval();
        let mut next_send = tokio::time::Instant::now();
        loop {
            let deadline = self.guard.deadline();
            let sleep = async {
                match deadline {
                    Some(d) => lapse_timer(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = self.conn.closed() => break,
                _ = self.stop.notified() => break,
                datagram = self.conn.read_datagram() => match datagram {
                    Ok(bytes) => self.on_datagram(&bytes),
                    Err(_) => break,
                },
                _ = sleep => {
                    let now = Instant::now();
                    if let Some(s) = self.guard.poll(now) {
                        self.publish(Some(s), now);
                    }
                }
                _ = tokio::time::sleep_until(next_send) => {
                    next_send = tokio::time::Instant::now() + jittered(interval, rand::random::<f64>());
                    if !self.mute.load(Ordering::Relaxed) {
                        let d = self.endpoint.build(Instant::now());
                        if self.conn.send_datagram(bytes::Bytes::copy_from_slice(&d)).is_err() {
                            break;
                        }
                        LinkTotals::bump(&LINK_TOTALS.sent);
                    }
                }
            }
        }
        let now = Instant::now();
        let change = self.guard.on_closed();
        self.publish(change, now);
    }

    fn on_datagram(&mut self, bytes: &[u8]) {
        let now = Instant::now();
        let t = &LINK_TOTALS;
        let change = match self.endpoint.receive(bytes, now) {
            Ok(acc) if acc.fresh => {
                LinkTotals::bump(&t.fresh);
                if let Some(last) = self.guard.last_fresh() {
                    let gap_ms = now.saturating_duration_since(last).as_millis();
                    let bucket = usize::try_from(gap_ms)
                        .unwrap_or(usize::MAX)
                        .min(FRESH_GAP_BUCKETS - 1);
                    LinkTotals::bump(&t.fresh_gap_ms[bucket]);
                }
                self.guard.on_fresh_keepalive(now)
            }
            Ok(_) => {
                LinkTotals::bump(&t.late);
                None
            }
            Err(reject) => {
                tracing::debug!(session = self.session_id, ?reject, "keepalive dropped");
                LinkTotals::bump(match reject {
                    Reject::Malformed(_) => &t.malformed,
                    Reject::WrongSession => &t.wrong_session,
                    Reject::Replayed => &t.replayed,
                    Reject::Stale => &t.stale,
                    Reject::BadMac => &t.bad_mac,
                });
                None
            }
        };
        self.publish(change, now);
    }

    fn publish(&mut self, change: Option<LinkState>, now: Instant) {
        if let Some(state) = change {
            if state == LinkState::Lapsed {
                LinkTotals::bump(&LINK_TOTALS.lapses);
            }
            self.since = now;
            tracing::info!(session = self.session_id, %state, "link state");
            self.state_tx.send_replace(state);
        }
        let status = LinkStatus {
            state: self.guard.state(),
            session_id: self.session_id,
            rtt: self.endpoint.rtt(),
            loss_pct: self.endpoint.loss_pct(),
            counters: self.endpoint.counters(),
            peer_highest_seq: self.endpoint.peer_highest_seq(),
            last_fresh: self.guard.last_fresh(),
            lapses: self.guard.lapses(),
            since: self.since,
        };
        self.status_tx.send_replace(status);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gap_quantiles_come_from_the_histogram() {
        let mut h = vec![0u64; FRESH_GAP_BUCKETS];
        assert_eq!(gap_quantile_ms(&h, 0.99), None);
        h[40] = 98;
        h[50] = 1;
        h[FRESH_GAP_BUCKETS - 1] = 1;
        assert_eq!(gap_quantile_ms(&h, 0.5), Some(40));
        assert_eq!(gap_quantile_ms(&h, 0.99), Some(50));
        assert_eq!(gap_quantile_ms(&h, 1.0), Some(1000));
    }

    #[test]
    fn jitter_stays_within_75_to_100_percent() {
        let i = Duration::from_millis(50);
        assert_eq!(jittered(i, 0.0), i);
        assert_eq!(jittered(i, 0.5), Duration::from_micros(43_750));
        assert!(jittered(i, 0.999_999) > Duration::from_micros(37_499));
        assert_eq!(jittered(i, 7.0), Duration::from_micros(37_500));
    }
}
