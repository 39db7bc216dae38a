//! Keepalive datagrams (RFC 9221 QUIC datagrams): byte layout, MAC, and the sans-I/O endpoint
//! that builds outgoing ones and judges incoming ones.
//!
//! Layout (56 bytes, big-endian), docs/PROTOCOL.md §Keepalive:
//!
//! | off | len | field                                                   |
//! |-----|-----|---------------------------------------------------------|
//! | 0   | 1   | version = 1                                             |
//! | 1   | 1   | kind = 0x4B ('K')                                       |
//! | 2   | 2   | flags = 0 (reserved; non-zero is malformed)             |
//! | 4   | 8   | session id                                              |
//! | 12  | 8   | sequence number (starts at 1, +1 per datagram)          |
//! | 20  | 8   | sender time, µs since the sender's session start        |
//! | 28  | 8   | echo: highest sequence received from the peer (0: none) |
//! | 36  | 4   | echo delay, µs between receiving that echo and sending  |
//! | 40  | 16  | MAC: HMAC-SHA256(direction key, bytes 0..40)[..16]      |

use super::keys::MacKey;
use super::replay::{ReplayCheck, ReplayWindow};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub const KEEPALIVE_VERSION: u8 = 1;
pub const KEEPALIVE_KIND: u8 = 0x4B;
pub const KEEPALIVE_BYTES: usize = 56;
pub const KEEPALIVE_MAC_BYTES: usize = 16;
const MAC_OFFSET: usize = KEEPALIVE_BYTES - KEEPALIVE_MAC_BYTES;
/// Outstanding sent keepalives remembered for RTT measurement.
const SENT_RING_ENTRIES_MAX: usize = 64;

/// The fields of one keepalive, before the MAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub session_id: u64,
    pub seq: u64,
    pub sender_time_us: u64,
    pub echo_seq: u64,
    pub echo_delay_us: u32,
}

impl Keepalive {
    /// Encodes and MACs.
    pub fn seal(&self, key: &MacKey) -> [u8; KEEPALIVE_BYTES] {
        let mut b = [0u8; KEEPALIVE_BYTES];
        b[0] = KEEPALIVE_VERSION;
        b[1] = KEEPALIVE_KIND;
        b[4..12].copy_from_slice(&self.session_id.to_be_bytes());
        b[12..20].copy_from_slice(&self.seq.to_be_bytes());
        b[20..28].copy_from_slice(&self.sender_time_us.to_be_bytes());
        b[28..36].copy_from_slice(&self.echo_seq.to_be_bytes());
        b[36..40].copy_from_slice(&self.echo_delay_us.to_be_bytes());
        let tag = mac(key, &b[..MAC_OFFSET]);
        b[MAC_OFFSET..].copy_from_slice(&tag);
        b
    }

    /// Parses the layout without checking the MAC.
    pub fn parse(bytes: &[u8]) -> Result<Keepalive, Reject> {
        if bytes.len() != KEEPALIVE_BYTES {
            return Err(Reject::Malformed("length"));
        }
        if bytes[0] != KEEPALIVE_VERSION {
            return Err(Reject::Malformed("version"));
        }
        if bytes[1] != KEEPALIVE_KIND {
            return Err(Reject::Malformed("kind"));
        }
        if bytes[2..4] != [0, 0] {
            return Err(Reject::Malformed("flags"));
        }
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&bytes[o..o + 8]);
            u64::from_be_bytes(a)
        };
        let mut d = [0u8; 4];
        d.copy_from_slice(&bytes[36..40]);
        Ok(Keepalive {
            session_id: u64_at(4),
            seq: u64_at(12),
            sender_time_us: u64_at(20),
            echo_seq: u64_at(28),
            echo_delay_us: u32::from_be_bytes(d),
        })
    }
}

fn mac(key: &MacKey, data: &[u8]) -> [u8; KEEPALIVE_MAC_BYTES] {
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length");
    m.update(data);
    let full = m.finalize().into_bytes();
    let mut out = [0u8; KEEPALIVE_MAC_BYTES];
    out.copy_from_slice(&full[..KEEPALIVE_MAC_BYTES]);
    out
}

/// Why an incoming datagram was dropped. None of these feed liveness.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Wrong length, version, kind or flags; names the field.
    Malformed(&'static str),
    /// Session id is not this session's.
    WrongSession,
    /// Sequence already seen.
    Replayed,
    /// Sequence too far behind the window, or sender time older than the detection window
    /// behind the newest seen.
    Stale,
    /// MAC does not verify.
    BadMac,
}

/// Accepted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Accepted {
    /// The newest sequence from the peer so far: this one feeds the LinkGuard.
    /// A verified but reordered (older) datagram is `fresh: false` and only counted.
    pub fresh: bool,
    /// Round-trip time measured from the echo, when the echo named one of ours.
    pub rtt: Option<Duration>,
}

/// Counters of everything received and sent, for the status bar, the admin monitor and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeepaliveCounters {
    pub sent: u64,
    pub fresh: u64,
    pub late: u64,
    pub malformed: u64,
    pub wrong_session: u64,
    pub replayed: u64,
    pub stale: u64,
    pub bad_mac: u64,
}

impl KeepaliveCounters {
    pub fn rejected(&self) -> u64 {
        self.malformed + self.wrong_session + self.replayed + self.stale + self.bad_mac
    }
}

/// One side of the keepalive exchange. Sans-I/O: bytes and instants in, bytes and verdicts out.
#[derive(Debug)]
pub struct KeepaliveEndpoint {
    session_id: u64,
    send_key: MacKey,
    recv_key: MacKey,
    epoch: Instant,
    stale_after: Duration,
    next_seq: u64,
    window: ReplayWindow,
    newest_sender_time_us: u64,
    newest_received_at: Option<Instant>,
    sent_ring: [(u64, Option<Instant>); SENT_RING_ENTRIES_MAX],
    counters: KeepaliveCounters,
    rtt: Option<Duration>,
}

impl KeepaliveEndpoint {
    /// `stale_after`: a datagram whose sender time is this much older than the newest seen is
    /// stale (use the LinkGuard's detection window).
    pub fn new(
        session_id: u64,
        send_key: MacKey,
        recv_key: MacKey,
        epoch: Instant,
        stale_after: Duration,
    ) -> Self {
        KeepaliveEndpoint {
            session_id,
            send_key,
            recv_key,
            epoch,
            stale_after,
            next_seq: 1,
            window: ReplayWindow::new(),
            newest_sender_time_us: 0,
            newest_received_at: None,
            sent_ring: [(0, None); SENT_RING_ENTRIES_MAX],
            counters: KeepaliveCounters::default(),
            rtt: None,
        }
    }

    pub fn counters(&self) -> KeepaliveCounters {
        self.counters
    }

    /// Smoothed round-trip time (RFC 6298 style, α = 1/8).
    pub fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Highest sequence received from the peer.
    pub fn peer_highest_seq(&self) -> u64 {
        self.window.highest()
    }

    /// Share of the peer's keepalives (up to its highest sequence) that never arrived valid.
    pub fn loss_pct(&self) -> f64 {
        let highest = self.window.highest();
        if highest == 0 {
            return 0.0;
        }
        let got = self.counters.fresh + self.counters.late;
        100.0 * (highest.saturating_sub(got)) as f64 / highest as f64
    }

    /// Moves the next outgoing sequence number forward (never back). For protocol tests that
    /// take over a session's sending.
    pub fn advance_next_seq(&mut self, seq: u64) {
        self.next_seq = self.next_seq.max(seq);
    }

    /// Builds the next outgoing datagram.
    pub fn build(&mut self, now: Instant) -> [u8; KEEPALIVE_BYTES] {
        let seq = self.next_seq;
        self.next_seq += 1;
        let echo_delay_us = self
            .newest_received_at
            .map(|t| micros(now.saturating_duration_since(t)).min(u64::from(u32::MAX)) as u32)
            .unwrap_or(0);
        let k = Keepalive {
            session_id: self.session_id,
            seq,
            sender_time_us: micros(now.saturating_duration_since(self.epoch)),
            echo_seq: self.window.highest(),
            echo_delay_us,
        };
        self.sent_ring[(seq as usize) % SENT_RING_ENTRIES_MAX] = (seq, Some(now));
        self.counters.sent += 1;
        k.seal(&self.send_key)
    }

    /// Judges an incoming datagram: parse, session, replay window, MAC (constant time), then
    /// mark seen. Rejections are counted and change nothing else.
    pub fn receive(&mut self, bytes: &[u8], now: Instant) -> Result<Accepted, Reject> {
        let result = self.judge(bytes, now);
        if let Err(r) = result {
            let c = &mut self.counters;
            match r {
                Reject::Malformed(_) => c.malformed += 1,
                Reject::WrongSession => c.wrong_session += 1,
                Reject::Replayed => c.replayed += 1,
                Reject::Stale => c.stale += 1,
                Reject::BadMac => c.bad_mac += 1,
            }
        }
        result
    }

    fn judge(&mut self, bytes: &[u8], now: Instant) -> Result<Accepted, Reject> {
        let k = Keepalive::parse(bytes)?;
        if k.session_id != self.session_id {
            return Err(Reject::WrongSession);
        }
        match self.window.check(k.seq) {
            ReplayCheck::Fresh => {}
            ReplayCheck::Replayed => return Err(Reject::Replayed),
            ReplayCheck::TooOld => return Err(Reject::Stale),
        }
        let expected = mac(&self.recv_key, &bytes[..MAC_OFFSET]);
        if !bool::from(expected.ct_eq(&bytes[MAC_OFFSET..])) {
            return Err(Reject::BadMac);
        }
        let stale_us = micros(self.stale_after);
        if k.sender_time_us.saturating_add(stale_us) < self.newest_sender_time_us {
            return Err(Reject::Stale);
        }
        let fresh = self.window.mark(k.seq);
        if !fresh {
            self.counters.late += 1;
            return Ok(Accepted { fresh, rtt: None });
        }
        self.counters.fresh += 1;
        self.newest_sender_time_us = self.newest_sender_time_us.max(k.sender_time_us);
        self.newest_received_at = Some(now);
        let rtt = self.measure_rtt(&k, now);
        Ok(Accepted { fresh, rtt })
    }

    fn measure_rtt(&mut self, k: &Keepalive, now: Instant) -> Option<Duration> {
        let (seq, sent_at) = self.sent_ring[(k.echo_seq as usize) % SENT_RING_ENTRIES_MAX];
        if k.echo_seq == 0 || seq != k.echo_seq {
            return None;
        }
        let sample = now
            .saturating_duration_since(sent_at?)
            .saturating_sub(Duration::from_micros(u64::from(k.echo_delay_us)));
        self.rtt = Some(match self.rtt {
            None => sample,
            Some(prev) => (prev * 7 + sample) / 8,
        });
        Some(sample)
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(t0: Instant) -> (KeepaliveEndpoint, KeepaliveEndpoint) {
        let c2v = MacKey([1; 32]);
        let v2c = MacKey([2; 32]);
        let stale = Duration::from_millis(150);
        let counter = KeepaliveEndpoint::new(42, c2v.clone(), v2c.clone(), t0, stale);
        let vendor = KeepaliveEndpoint::new(42, v2c, c2v, t0, stale);
        (counter, vendor)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn round_trip_and_rtt() {
        let t0 = Instant::now();
        let (mut c, mut v) = pair(t0);
        let d = c.build(t0);
        assert!(v.receive(&d, t0 + ms(5)).unwrap().fresh);
        // vendor answers 20 ms later; echo delay 20 ms is subtracted; one-way 5 ms back
        let back = v.build(t0 + ms(25));
        let acc = c.receive(&back, t0 + ms(30)).unwrap();
        assert_eq!(acc.rtt, Some(ms(10)));
        assert_eq!(c.rtt(), Some(ms(10)));
        assert_eq!(v.counters().fresh, 1);
    }

    /// Data-driven: each case mutates a valid datagram and names the verdict.
    #[test]
    fn rejections_are_named_and_counted() {
        let t0 = Instant::now();
        type Mutate = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Mutate, Reject)> = vec![
            (
                "short",
                Box::new(|b| b.truncate(55)),
                Reject::Malformed("length"),
            ),
            ("long", Box::new(|b| b.push(0)), Reject::Malformed("length")),
            (
                "version",
                Box::new(|b| b[0] = 2),
                Reject::Malformed("version"),
            ),
            ("kind", Box::new(|b| b[1] = 0), Reject::Malformed("kind")),
            ("flags", Box::new(|b| b[3] = 1), Reject::Malformed("flags")),
            ("session", Box::new(|b| b[11] ^= 1), Reject::WrongSession),
            ("seq bit", Box::new(|b| b[19] ^= 4), Reject::BadMac),
            ("time bit", Box::new(|b| b[27] ^= 1), Reject::BadMac),
            ("mac bit", Box::new(|b| b[55] ^= 0x80), Reject::BadMac),
            ("zero seq", Box::new(|b| b[12..20].fill(0)), Reject::Stale),
        ];
        for (name, mutate, expected) in cases {
            let (mut c, mut v) = pair(t0);
            let mut d = c.build(t0).to_vec();
            mutate(&mut d);
            assert_eq!(v.receive(&d, t0), Err(expected), "{name}");
            assert_eq!(v.counters().rejected(), 1, "{name}");
            assert_eq!(v.counters().fresh, 0, "{name}");
            assert_eq!(v.peer_highest_seq(), 0, "{name}: window must not move");
        }
    }

    #[test]
    fn forged_with_wrong_key_is_bad_mac() {
        let t0 = Instant::now();
        let (_, mut v) = pair(t0);
        let mut forger = KeepaliveEndpoint::new(42, MacKey([9; 32]), MacKey([9; 32]), t0, ms(150));
        let d = forger.build(t0);
        assert_eq!(v.receive(&d, t0), Err(Reject::BadMac));
        // A forged high sequence must not block the real one (window untouched).
        let (mut c, _) = pair(t0);
        assert!(v.receive(&c.build(t0), t0).unwrap().fresh);
    }

    #[test]
    fn replay_duplicate_and_reorder() {
        let t0 = Instant::now();
        let (mut c, mut v) = pair(t0);
        let d1 = c.build(t0);
        let d2 = c.build(t0 + ms(50));
        let d3 = c.build(t0 + ms(100));
        assert!(v.receive(&d1, t0).unwrap().fresh);
        assert_eq!(v.receive(&d1, t0), Err(Reject::Replayed));
        assert!(v.receive(&d3, t0 + ms(100)).unwrap().fresh);
        // d2 arrives after d3: verified, not fresh, does not feed liveness
        assert!(!v.receive(&d2, t0 + ms(101)).unwrap().fresh);
        assert_eq!(v.receive(&d2, t0 + ms(102)), Err(Reject::Replayed));
        let k = v.counters();
        assert_eq!((k.fresh, k.late, k.replayed), (2, 1, 2));
    }

    #[test]
    fn delayed_beyond_detection_window_is_stale() {
        let t0 = Instant::now();
        let (mut c, mut v) = pair(t0);
        let old = c.build(t0);
        let mut newest = c.build(t0);
        for i in 1..=10 {
            newest = c.build(t0 + ms(50 * i));
        }
        assert!(v.receive(&newest, t0 + ms(500)).unwrap().fresh);
        assert_eq!(v.receive(&old, t0 + ms(501)), Err(Reject::Stale));
    }

    #[test]
    fn loss_is_measured_from_gaps() {
        let t0 = Instant::now();
        let (mut c, mut v) = pair(t0);
        for i in 0..100u64 {
            let d = c.build(t0 + ms(i));
            if i % 10 != 0 {
                v.receive(&d, t0 + ms(i)).unwrap();
            }
        }
        assert!((v.loss_pct() - 10.0).abs() < 1e-9, "{}", v.loss_pct());
    }
}
