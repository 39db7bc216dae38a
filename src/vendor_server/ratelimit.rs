//! **Core**: token buckets per key (a source address, a piece) in a table of bounded size.
//! Time is passed in as `Instant`s; no clock, no I/O.
//!
//! Each key's bucket holds up to `burst` tokens (by default `per_minute`: a minute's budget may
//! be spent at once) and refills at `per_minute` tokens a minute; a request takes one token. A key whose bucket
//! is full again is the same as a key never seen, so it may be forgotten: when the table holds
//! `keys_max` keys and a new one arrives, the full buckets are dropped; if none is, the new key
//! is refused ([`Take::TableFull`]) rather than let the table grow.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Instant;

/// One minute in milliseconds: a token is `MINUTE_MS` units, and a bucket gains `per_minute`
/// units each millisecond.
const MINUTE_MS: u64 = 60_000;

/// The answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    Allowed,
    /// The key spent its budget: the next token is there in `retry_after_ms`.
    Limited {
        retry_after_ms: u64,
    },
    /// The table holds `keys_max` keys with budget in use; nothing was recorded.
    TableFull,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Tokens × `MINUTE_MS`.
    units: u64,
    at: Instant,
}

/// Token buckets keyed by `K`.
#[derive(Debug)]
pub struct RateLimiter<K> {
    per_minute: u64,
    /// Tokens a full bucket holds (1..=`per_minute`).
    burst: u64,
    keys_max: usize,
    buckets: HashMap<K, Bucket>,
}

impl<K: Eq + Hash + Copy> RateLimiter<K> {
    /// `per_minute` ≥ 1 tokens a minute per key; at most `keys_max` ≥ 1 keys tracked.
    pub fn new(per_minute: u32, keys_max: usize) -> RateLimiter<K> {
        RateLimiter::with_burst(per_minute, per_minute, keys_max)
    }

    /// [`Self::new`] whose buckets hold only `burst` tokens (clamped to 1..=`per_minute`): at
    /// most `burst` requests at once, then `per_minute` a minute.
    pub fn with_burst(per_minute: u32, burst: u32, keys_max: usize) -> RateLimiter<K> {
        let per_minute = u64::from(per_minute.max(1));
        RateLimiter {
            per_minute,
            burst: u64::from(burst).clamp(1, per_minute),
            keys_max: keys_max.max(1),
            buckets: HashMap::new(),
        }
    }

    fn capacity(&self) -> u64 {
        self.burst * MINUTE_MS
    }

    /// The bucket's units at `now` (refilled since it was last touched).
    fn refilled(&self, b: &Bucket, now: Instant) -> u64 {
        let elapsed_ms = u64::try_from(now.saturating_duration_since(b.at).as_millis())
            .unwrap_or(u64::MAX)
            .min(MINUTE_MS);
        b.units
            .saturating_add(elapsed_ms * self.per_minute)
            .min(self.capacity())
    }

    /// Takes one token of `key`'s budget at `now`.
    pub fn take(&mut self, key: K, now: Instant) -> Take {
        if !self.buckets.contains_key(&key) && self.buckets.len() >= self.keys_max {
            self.forget_full(now);
            if self.buckets.len() >= self.keys_max {
                return Take::TableFull;
            }
        }
        let full = Bucket {
            units: self.capacity(),
            at: now,
        };
        let bucket = self.buckets.get(&key).copied().unwrap_or(full);
        let units = self.refilled(&bucket, now);
        // A clock read earlier than the bucket's (another task's `now`) refills nothing.
        let at = now.max(bucket.at);
        if units < MINUTE_MS {
            self.buckets.insert(key, Bucket { units, at });
            return Take::Limited {
                retry_after_ms: (MINUTE_MS - units).div_ceil(self.per_minute),
            };
        }
        self.buckets.insert(
            key,
            Bucket {
                units: units - MINUTE_MS,
                at,
            },
        );
        Take::Allowed
    }

    /// Whether `key` has a token at `now`, taking nothing (an unknown key has a full bucket).
    pub fn has_budget(&self, key: K, now: Instant) -> bool {
        self.buckets
            .get(&key)
            .is_none_or(|b| self.refilled(b, now) >= MINUTE_MS)
    }

    /// Drops every bucket that is full at `now` (indistinguishable from an unknown key).
    fn forget_full(&mut self, now: Instant) {
        let capacity = self.capacity();
        let per_minute = self.per_minute;
        self.buckets.retain(|_, b| {
            let elapsed_ms = u64::try_from(now.saturating_duration_since(b.at).as_millis())
                .unwrap_or(u64::MAX)
                .min(MINUTE_MS);
            b.units.saturating_add(elapsed_ms * per_minute) < capacity
        });
    }

    /// Keys tracked (at most `keys_max`).
    pub fn keys(&self) -> usize {
        self.buckets.len()
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut r = RateLimiter::with_burst(60, 3, 8);
        for _ in 0..3 {
            assert_eq!(r.take(1u8, t0), Take::Allowed);
        }
        assert!(matches!(
            r.take(1, t0),
            Take::Limited {
                retry_after_ms: 1000
            }
        ));
        // One a second after that, never more than three banked.
        assert_eq!(r.take(1, t0 + Duration::from_secs(1)), Take::Allowed);
        let later = t0 + Duration::from_secs(600);
        for _ in 0..3 {
            assert_eq!(r.take(1, later), Take::Allowed);
        }
        assert!(matches!(r.take(1, later), Take::Limited { .. }));
    }

    #[test]
    fn has_budget_looks_without_taking() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2, 8);
        assert!(r.has_budget(1u8, t0));
        assert!(r.has_budget(1u8, t0), "looking takes nothing");
        assert_eq!(r.take(1, t0), Take::Allowed);
        assert_eq!(r.take(1, t0), Take::Allowed);
        assert!(!r.has_budget(1, t0));
        assert!(r.has_budget(2, t0), "per key");
        assert!(r.has_budget(1, t0 + Duration::from_secs(30)), "refilled");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    #[test]
    fn a_key_spends_a_minute_of_budget_then_waits_for_refill() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(6, 16);
        for _ in 0..6 {
            assert_eq!(r.take(1u8, t0), Take::Allowed);
        }
        assert_eq!(
            r.take(1, t0),
            Take::Limited {
                retry_after_ms: 10_000
            }
        );
        // Another key is untouched.
        assert_eq!(r.take(2, t0), Take::Allowed);
        assert_eq!(
            r.take(1, ms(t0, 9_999)),
            Take::Limited { retry_after_ms: 1 }
        );
        assert_eq!(r.take(1, ms(t0, 10_000)), Take::Allowed);
        assert_eq!(
            r.take(1, ms(t0, 10_000)),
            Take::Limited {
                retry_after_ms: 10_000
            }
        );
        // A long pause refills to a full minute, never more.
        for _ in 0..6 {
            assert_eq!(r.take(1, ms(t0, 3_600_000)), Take::Allowed);
        }
        assert!(matches!(r.take(1, ms(t0, 3_600_000)), Take::Limited { .. }));
    }

    #[test]
    fn limited_requests_do_not_push_the_refill_back() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(60, 4);
        for _ in 0..60 {
            assert_eq!(r.take('a', t0), Take::Allowed);
        }
        for n in 0..999 {
            assert!(matches!(r.take('a', ms(t0, n)), Take::Limited { .. }));
        }
        assert_eq!(r.take('a', ms(t0, 1_000)), Take::Allowed);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_only_full_buckets() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(2, 3);
        for k in 0..3u32 {
            assert_eq!(r.take(k, t0), Take::Allowed);
        }
        assert_eq!(r.take(3, t0), Take::TableFull);
        assert_eq!(r.keys(), 3);
        // Key 0 spends more; keys 1 and 2 refill within 30 s and may be forgotten.
        assert_eq!(r.take(0, ms(t0, 1)), Take::Allowed);
        assert_eq!(r.take(3, ms(t0, 30_000)), Take::Allowed);
        assert_eq!(r.keys(), 2, "keys 1 and 2 were forgotten, key 3 added");
        // Key 0 was not forgotten: its budget is still in use.
        assert!(matches!(r.take(0, ms(t0, 30_000)), Take::Allowed));
        assert!(matches!(r.take(0, ms(t0, 30_000)), Take::Limited { .. }));
    }

    #[test]
    fn time_going_backwards_refills_nothing() {
        let t0 = Instant::now();
        let later = ms(t0, 5_000);
        let mut r = RateLimiter::new(1, 4);
        assert_eq!(r.take(7u8, later), Take::Allowed);
        assert!(matches!(r.take(7, t0), Take::Limited { .. }));
    }
}
