//! Capped exponential backoff with jitter (sans-I/O: the caller supplies the randomness).

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    pub base_ms: u64,
    pub cap_ms: u64,
    /// Attempts before giving up (bounds the reconnect loop).
    pub attempts_max: u32,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig {
            base_ms: 100,
            cap_ms: 5_000,
            attempts_max: 10_000,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Backoff {
    config: BackoffConfig,
    attempt: u32,
}

impl Backoff {
    pub fn new(config: BackoffConfig) -> Self {
        Backoff { config, attempt: 0 }
    }

    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt, or `None` once `attempts_max` is used up.
    /// "Equal jitter": half the exponential step, plus a random part of the other half, so
    /// retries from many counters spread out yet never come back at once.
    /// `unit` is a random number in `[0, 1)`.
    pub fn next_delay(&mut self, unit: f64) -> Option<Duration> {
        if self.attempt >= self.config.attempts_max {
            return None;
        }
        let exp = self
            .config
            .base_ms
            .saturating_mul(1u64.checked_shl(self.attempt.min(40)).unwrap_or(u64::MAX))
            .min(self.config.cap_ms);
        self.attempt += 1;
        let half = exp / 2;
        let jitter = ((exp - half) as f64 * unit.clamp(0.0, 1.0)) as u64;
        Some(Duration::from_millis(half + jitter))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_jitters_and_ends() {
        let mut b = Backoff::new(BackoffConfig {
            base_ms: 100,
            cap_ms: 1000,
            attempts_max: 7,
        });
        let lows: Vec<u64> = (0..7)
            .map(|_| b.next_delay(0.0).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(lows, [50, 100, 200, 400, 500, 500, 500]);
        assert_eq!(b.next_delay(0.5), None);
        b.reset();
        assert_eq!(b.next_delay(0.999_999).unwrap().as_millis(), 99);
    }
}
