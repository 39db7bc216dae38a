//! Password lockout policy (sans-I/O): after `FAILURES_FREE_MAX` wrong passwords for one
//! clerk on one terminal, lock for a delay that doubles with every further failure.
//!
//! An attempt is counted when it *starts* ([`begin`]), before any password is checked, so
//! concurrent attempts cannot check more than `FAILURES_FREE_MAX + 1` passwords between two
//! locks: the attempt that reaches the count locks the pair at once, and a success clears it.

/// Wrong passwords allowed before the first lock.
pub const FAILURES_FREE_MAX: u32 = 4;
/// First lock, after the fifth failure.
pub const LOCK_MS_BASE: u64 = 30_000;
/// Longest lock.
pub const LOCK_MS_MAX: u64 = 60 * 60 * 1000;

/// How long to lock after the `failures`-th consecutive failure, if at all.
pub fn lock_ms(failures: u32) -> Option<u64> {
    let over = failures.checked_sub(FAILURES_FREE_MAX + 1)?;
    let factor = 1u64.checked_shl(over.min(32)).unwrap_or(u64::MAX);
    Some(LOCK_MS_BASE.saturating_mul(factor).min(LOCK_MS_MAX))
}

/// What a login attempt's start does to the (clerk, terminal) pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// The pair is locked: refuse without counting (a lock is not extended by waiting clients).
    Locked { retry_after_ms: u64 },
    /// Counted as the `failures`-th consecutive unresolved or failed attempt; if
    /// `locked_until_ms` is set the pair is locked from now until then unless this attempt
    /// succeeds (a success clears the count and the lock).
    Counted {
        failures: u32,
        locked_until_ms: Option<u64>,
    },
}

impl Attempt {
    /// The lock left for a wrong password of this attempt, in ms, if any.
    pub fn lock_ms_after_failure(&self, now_ms: u64) -> Option<u64> {
        match *self {
            Attempt::Locked { retry_after_ms } => Some(retry_after_ms),
            Attempt::Counted {
                locked_until_ms, ..
            } => locked_until_ms.map(|u| u.saturating_sub(now_ms).max(1)),
        }
    }
}

/// Starts an attempt on a pair with `failures` counted so far and a lock until
/// `locked_until_ms` (0: none).
pub fn begin(failures: u32, locked_until_ms: u64, now_ms: u64) -> Attempt {
    if locked_until_ms > now_ms {
        return Attempt::Locked {
            retry_after_ms: locked_until_ms - now_ms,
        };
    }
    let failures = failures.saturating_add(1);
    Attempt::Counted {
        failures,
        locked_until_ms: lock_ms(failures).map(|ms| now_ms.saturating_add(ms)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_count_before_the_check_and_lock_at_the_fifth() {
        let cases = [
            // (failures, locked_until_ms, now_ms, expected)
            (
                0,
                0,
                1000,
                Attempt::Counted {
                    failures: 1,
                    locked_until_ms: None,
                },
            ),
            (
                3,
                0,
                1000,
                Attempt::Counted {
                    failures: 4,
                    locked_until_ms: None,
                },
            ),
            (
                4,
                0,
                1000,
                Attempt::Counted {
                    failures: 5,
                    locked_until_ms: Some(31_000),
                },
            ),
            (
                5,
                31_000,
                1000,
                Attempt::Locked {
                    retry_after_ms: 30_000,
                },
            ),
            // The lock ran out: the next attempt counts and locks for twice as long.
            (
                5,
                31_000,
                31_000,
                Attempt::Counted {
                    failures: 6,
                    locked_until_ms: Some(91_000),
                },
            ),
            (
                u32::MAX,
                0,
                5,
                Attempt::Counted {
                    failures: u32::MAX,
                    locked_until_ms: Some(5 + LOCK_MS_MAX),
                },
            ),
        ];
        for (i, (failures, until, now, expected)) in cases.into_iter().enumerate() {
            assert_eq!(begin(failures, until, now), expected, "case {i}");
        }
    }

    #[test]
    fn the_lock_after_a_wrong_password() {
        assert_eq!(begin(0, 0, 10).lock_ms_after_failure(10), None);
        assert_eq!(begin(4, 0, 10).lock_ms_after_failure(10), Some(30_000));
        assert_eq!(begin(4, 0, 10).lock_ms_after_failure(20), Some(29_990));
        assert_eq!(begin(4, 0, 10).lock_ms_after_failure(99_999), Some(1));
        assert_eq!(begin(5, 50, 10).lock_ms_after_failure(10), Some(40));
    }

    #[test]
    fn grows_and_caps() {
        let cases = [
            (0, None),
            (4, None),
            (5, Some(30_000)),
            (6, Some(60_000)),
            (7, Some(120_000)),
            (12, Some(LOCK_MS_MAX)),
            (u32::MAX, Some(LOCK_MS_MAX)),
        ];
        for (failures, expected) in cases {
            assert_eq!(lock_ms(failures), expected, "{failures}");
        }
    }
}
