//! Money as integer cents. Never a float, never negative, never overflowing.

use serde::{Deserialize, Serialize};
use std::fmt;

/// An amount of money in cents (US). Non-negative by construction; arithmetic is checked.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Cents(u64);

/// The largest amount any single register may hold: $10^13 (keeps sums far from `u64::MAX`
/// and inside PostgreSQL's `BIGINT`).
pub const CENTS_MAX: u64 = 1_000_000_000_000_000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amount {0} cents is above the limit of {CENTS_MAX} cents")]
    TooLarge(u64),
    #[error("amount overflows: {0} + {1} cents")]
    Overflow(u64, u64),
    #[error("amount would go negative: {0} - {1} cents")]
    Underflow(u64, u64),
    #[error("not an amount: {0:?} (use dollars and cents, e.g. 12.34)")]
    Parse(String),
}

impl Cents {
    pub const ZERO: Cents = Cents(0);

    pub fn new(cents: u64) -> Result<Self, MoneyError> {
        if cents > CENTS_MAX {
            return Err(MoneyError::TooLarge(cents));
        }
        Ok(Cents(cents))
    }

    pub fn get(self) -> u64 {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0 == 0
    }

    pub fn checked_add(self, other: Cents) -> Result<Cents, MoneyError> {
        self.0
            .checked_add(other.0)
            .filter(|v| *v <= CENTS_MAX)
            .map(Cents)
            .ok_or(MoneyError::Overflow(self.0, other.0))
    }

    pub fn checked_sub(self, other: Cents) -> Result<Cents, MoneyError> {
        self.0
            .checked_sub(other.0)
            .map(Cents)
            .ok_or(MoneyError::Underflow(self.0, other.0))
    }

    /// Parses "12.34", "12", "$12.3" into cents.
    pub fn parse_dollars(text: &str) -> Result<Cents, MoneyError> {
        let err = || MoneyError::Parse(text.to_string());
        let t = text.trim().trim_start_matches('$');
        let (whole, frac) = match t.split_once('.') {
            Some((w, f)) => (w, f),
            None => (t, ""),
        };
        if whole.is_empty() && frac.is_empty() {
            return Err(err());
        }
        if !whole.chars().all(|c| c.is_ascii_digit())
            || !frac.chars().all(|c| c.is_ascii_digit())
            || frac.len() > 2
        {
            return Err(err());
        }
        let whole: u64 = if whole.is_empty() {
            0
        } else {
            whole.parse().map_err(|_| err())?
        };
        let frac: u64 = match frac.len() {
            0 => 0,
            1 => frac.parse::<u64>().map_err(|_| err())? * 10,
            _ => frac.parse().map_err(|_| err())?,
        };
        let cents = whole
            .checked_mul(100)
            .and_then(|w| w.checked_add(frac))
            .ok_or_else(err)?;
        Cents::new(cents)
    }
}

impl fmt::Display for Cents {
    /// `$12.34`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "${}.{:02}", self.0 / 100, self.0 % 100)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        for (text, cents) in [
            ("12.34", 1234),
            ("$0.5", 50),
            ("7", 700),
            (".05", 5),
            ("0.00", 0),
        ] {
            assert_eq!(Cents::parse_dollars(text).unwrap().get(), cents, "{text}");
        }
        for bad in ["", "-1", "1.234", "abc", "1.2.3", "$"] {
            assert!(Cents::parse_dollars(bad).is_err(), "{bad}");
        }
        assert_eq!(Cents::new(1234).unwrap().to_string(), "$12.34");
        assert_eq!(Cents::new(5).unwrap().to_string(), "$0.05");
    }

    #[test]
    fn arithmetic_is_checked() {
        let a = Cents::new(CENTS_MAX).unwrap();
        assert!(a.checked_add(Cents::new(1).unwrap()).is_err());
        assert!(Cents::ZERO.checked_sub(Cents::new(1).unwrap()).is_err());
        assert!(Cents::new(CENTS_MAX + 1).is_err());
    }
}
