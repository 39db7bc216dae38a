//! Password lockout policy (sans-I/O): after `FAILURES_FREE_MAX` wrong passwords for one
//! clerk on one terminal, lock for a delay that doubles with every further failure.

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

#[cfg(test)]
mod tests {
    use super::*;

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
