//! **Core**: the per-terminal login gate (sans-I/O; time is passed in).
//!
//! Two rules, both keyed by a terminal whose device proof already verified:
//! - a rate limit (GCRA, a token bucket without a timer): a terminal may start
//!   `burst_max` logins at once and one more every `interval`;
//! - at most one login of a terminal past the lockout count at a time (`begin` / `end`).
//!
//! The gate holds an entry only for terminals that are rate-limited or have a login in flight;
//! idle entries are dropped once the map reaches [`GATE_TERMINALS_PRUNE_LEN`], so its size is
//! bounded by the terminals active within the last `burst_max × interval`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// Entries held before idle ones are dropped.
pub const GATE_TERMINALS_PRUNE_LEN: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateConfig {
    /// Logins a terminal may start back to back.
    pub burst_max: u32,
    /// After the burst, one more login per this interval.
    pub interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TerminalGate {
    /// GCRA theoretical arrival time: when the bucket is full again.
    full_at: Instant,
    in_flight: bool,
}

/// The gate's verdict on a login's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    Allowed,
    /// Too many logins from this terminal; the next is allowed after `retry_after`.
    Limited {
        retry_after: Duration,
    },
}

#[derive(Debug)]
pub struct LoginGate {
    config: GateConfig,
    terminals: HashMap<u64, TerminalGate>,
}

impl LoginGate {
    pub fn new(config: GateConfig) -> Self {
        LoginGate {
            config,
            terminals: HashMap::new(),
        }
    }

    /// Counts a login start of `terminal` at `now` against its rate, if the rate allows it.
    pub fn admit(&mut self, terminal: u64, now: Instant) -> RateVerdict {
        self.prune(now);
        let interval = self.config.interval;
        let tolerance = interval.saturating_mul(self.config.burst_max.saturating_sub(1));
        let gate = self.terminals.entry(terminal).or_insert(TerminalGate {
            full_at: now,
            in_flight: false,
        });
        let full_at = gate.full_at.max(now);
        let ahead = full_at - now;
        if ahead > tolerance {
            return RateVerdict::Limited {
                retry_after: ahead - tolerance,
            };
        }
        gate.full_at = full_at + interval;
        RateVerdict::Allowed
    }

    /// Marks a password check of `terminal` in flight; false if one already is.
    pub fn begin(&mut self, terminal: u64, now: Instant) -> bool {
        let gate = self.terminals.entry(terminal).or_insert(TerminalGate {
            full_at: now,
            in_flight: false,
        });
        !std::mem::replace(&mut gate.in_flight, true)
    }

    /// Ends the password check `begin` allowed.
    pub fn end(&mut self, terminal: u64) {
        if let Some(gate) = self.terminals.get_mut(&terminal) {
            gate.in_flight = false;
        }
    }

    /// Entries held (for tests and the bound).
    pub fn len(&self) -> usize {
        self.terminals.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terminals.is_empty()
    }

    fn prune(&mut self, now: Instant) {
        if self.terminals.len() >= GATE_TERMINALS_PRUNE_LEN {
            self.terminals.retain(|_, g| g.in_flight || g.full_at > now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gate(burst_max: u32, interval_ms: u64) -> LoginGate {
        LoginGate::new(GateConfig {
            burst_max,
            interval: Duration::from_millis(interval_ms),
        })
    }

    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn a_burst_then_one_per_interval() {
        let t0 = Instant::now();
        let mut g = gate(3, 1000);
        // (offset ms, expected)
        let cases = [
            (0, RateVerdict::Allowed),
            (0, RateVerdict::Allowed),
            (0, RateVerdict::Allowed),
            (
                0,
                RateVerdict::Limited {
                    retry_after: ms(1000),
                },
            ),
            (
                400,
                RateVerdict::Limited {
                    retry_after: ms(600),
                },
            ),
            (1000, RateVerdict::Allowed),
            (
                1000,
                RateVerdict::Limited {
                    retry_after: ms(1000),
                },
            ),
            (2000, RateVerdict::Allowed),
            // A long pause refills the whole burst, not more.
            (60_000, RateVerdict::Allowed),
            (60_000, RateVerdict::Allowed),
            (60_000, RateVerdict::Allowed),
            (
                60_000,
                RateVerdict::Limited {
                    retry_after: ms(1000),
                },
            ),
        ];
        for (i, (at, expected)) in cases.into_iter().enumerate() {
            assert_eq!(g.admit(7, t0 + ms(at)), expected, "case {i} at {at} ms");
        }
        // Another terminal has its own bucket.
        assert_eq!(g.admit(8, t0 + ms(60_000)), RateVerdict::Allowed);
    }

    #[test]
    fn a_burst_of_one_is_a_plain_interval() {
        let t0 = Instant::now();
        let mut g = gate(1, 500);
        assert_eq!(g.admit(1, t0), RateVerdict::Allowed);
        assert_eq!(
            g.admit(1, t0 + ms(100)),
            RateVerdict::Limited {
                retry_after: ms(400)
            }
        );
        assert_eq!(g.admit(1, t0 + ms(500)), RateVerdict::Allowed);
    }

    #[test]
    fn one_password_check_in_flight_per_terminal() {
        let t0 = Instant::now();
        let mut g = gate(10, 1000);
        assert!(g.begin(1, t0));
        assert!(!g.begin(1, t0), "second while the first runs");
        assert!(g.begin(2, t0), "other terminals are independent");
        g.end(1);
        assert!(g.begin(1, t0));
        g.end(1);
        g.end(1);
        g.end(99);
        assert!(g.begin(1, t0));
    }

    #[test]
    fn idle_entries_are_dropped_and_busy_ones_kept() {
        let t0 = Instant::now();
        let mut g = gate(2, 1000);
        let n = GATE_TERMINALS_PRUNE_LEN as u64;
        for id in 0..n {
            assert_eq!(g.admit(id, t0), RateVerdict::Allowed);
        }
        assert!(g.begin(0, t0));
        assert_eq!(g.len(), GATE_TERMINALS_PRUNE_LEN);
        // Long after, every bucket is full again: only the one in flight stays.
        assert_eq!(g.admit(n, t0 + ms(10_000)), RateVerdict::Allowed);
        assert_eq!(g.len(), 2);
        assert!(!g.begin(0, t0 + ms(10_000)), "still in flight");
    }
}
