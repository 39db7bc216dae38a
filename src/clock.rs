//! Shell: the process's wall clock and randomness — the one place the cores' time and random
//! inputs come from. Cores take milliseconds, `Instant`s and random bytes as arguments; shells
//! call these.

use std::sync::atomic::{AtomicU64, Ordering};

use rand::TryRng;

use crate::ledger::RequestId;

/// Milliseconds since the Unix epoch (the wire's `*_time_ms`, records, requests). A clock set
/// before 1970 reads 0; one past year 584,556,019 reads `u64::MAX`.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// A fresh request id for a client request: [`RequestId::from_time_and_random`] over now and
/// 128 random bits.
pub fn fresh_request_id() -> RequestId {
    RequestId::from_time_and_random(unix_ms(), rand::random())
}

/// A fresh random request id (for callers that do not retry, like the reaper).
pub fn random_request_id() -> RequestId {
    RequestId(rand::random())
}

/// Fills `buf` straight from the operating system's random source (`getrandom(2)` on Linux,
/// through rand's stateless `SysRng`) — for key material, password salts, enrollment codes and
/// shredding. On purpose not `rand::rng()`: no userspace generator state sits between the
/// kernel and a secret. A failing source is an error passed on, never bytes made up.
pub fn fill_from_os(buf: &mut [u8]) -> std::io::Result<()> {
    rand::rngs::SysRng
        .try_fill_bytes(buf)
        .map_err(std::io::Error::from)
}

/// Where a service gets the time from.
pub trait Clock: Send + Sync {
    fn now_ms(&self) -> u64;
}

/// Wall-clock time ([`unix_ms`]).
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        unix_ms()
    }
}

/// A clock that moves only when told (tests, simulations, replays).
pub struct ManualClock(AtomicU64);

impl ManualClock {
    pub fn new(now_ms: u64) -> ManualClock {
        ManualClock(AtomicU64::new(now_ms))
    }
    pub fn set(&self, now_ms: u64) {
        self.0.store(now_ms, Ordering::SeqCst);
    }
    pub fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_request_ids_carry_now_and_do_not_repeat() {
        let now = unix_ms();
        let first = fresh_request_id();
        let stamp = u64::try_from(first.0 >> 80).unwrap();
        assert!(
            stamp + 1000 >= now && stamp <= now + 1000,
            "{stamp} vs {now}"
        );
        let same_ms: std::collections::HashSet<RequestId> =
            (0..1000).map(|_| fresh_request_id()).collect();
        assert_eq!(same_ms.len(), 1000);
        std::thread::sleep(std::time::Duration::from_millis(3));
        assert!(fresh_request_id().to_bytes() > first.to_bytes());
    }

    #[test]
    fn os_random_bytes_fill_the_buffer_and_do_not_repeat() {
        let mut a = [0u8; 32];
        let mut b = [0u8; 32];
        fill_from_os(&mut a).unwrap();
        fill_from_os(&mut b).unwrap();
        assert_ne!(a, [0u8; 32]);
        assert_ne!(a, b);
        let mut long = vec![0u8; 1 << 16];
        fill_from_os(&mut long).unwrap();
        assert!(
            long[long.len() - 32..] != [0u8; 32],
            "the whole buffer is filled"
        );
    }
}
