//! **Core**: which new QUIC connections the vendor admits. Facts in (the source, whether QUIC
//! validated its address, how many connections the endpoint holds), a verdict out; the accept
//! loop (the shell) carries it out with quinn's `accept`, `retry` or `refuse`, and releases the
//! source's slot when the connection ends. No clock, no I/O.
//!
//! The rule, in order:
//! 1. the vendor holds `connections_max` connections → refuse;
//! 2. the address is not validated, and the vendor holds `address_validation_above_connections`
//!    or more connections or the source already holds one → a QUIC Retry (the client proves
//!    it receives at that address with one more round trip; the vendor keeps no state);
//! 3. the source holds `connections_per_source_max` connections → refuse;
//! 4. accept, and count the connection against its source until [`Admission::release`].
//!
//! Rule 2 means a spoofed source address can hold at most one handshake slot of its victim at
//! a time: any further attempt from it must answer a Retry, which a spoofer never receives.

use core::net::IpAddr;
use std::collections::HashMap;

/// Where connections come from, for per-source limits: an IPv4 address, or the /64 prefix of
/// an IPv6 address (one subscriber's usual allocation; an IPv4-mapped IPv6 address counts as
/// its IPv4 address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKey {
    V4([u8; 4]),
    V6Prefix64([u8; 8]),
}

impl SourceKey {
    pub fn of(ip: IpAddr) -> SourceKey {
        match ip {
            IpAddr::V4(v4) => SourceKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => SourceKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    SourceKey::V6Prefix64([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

impl std::fmt::Display for SourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceKey::V4(o) => write!(f, "{}", core::net::Ipv4Addr::from(*o)),
            SourceKey::V6Prefix64(p) => write!(
                f,
                "{}/64",
                core::net::Ipv6Addr::from_bits(u128::from(u64::from_be_bytes(*p)) << 64)
            ),
        }
    }
}

/// The limits of `vendor.toml` that admission applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionLimits {
    pub connections_max: usize,
    pub connections_per_source_max: usize,
    /// From this many open connections on, every unvalidated address gets a Retry (0: always).
    pub address_validation_above_connections: usize,
}

/// Why a connection attempt was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// `connections_max` connections are open.
    VendorFull,
    /// The source holds `connections_per_source_max` connections.
    SourceFull,
}

/// What to do with one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted and counted against its source: call [`Admission::release`] when it ends.
    Accept,
    /// Answer with a QUIC Retry (address validation).
    Retry,
    Refuse(Refusal),
}

/// Per-source connection counts. Holds one entry per source with at least one connection, so
/// at most `connections_max` entries.
#[derive(Debug)]
pub struct Admission {
    limits: AdmissionLimits,
    per_source: HashMap<SourceKey, usize>,
}

impl Admission {
    pub fn new(limits: AdmissionLimits) -> Admission {
        Admission {
            limits,
            per_source: HashMap::new(),
        }
    }

    /// Decides one attempt. `open_connections` is what the endpoint holds now (handshakes
    /// included).
    pub fn decide(
        &mut self,
        source: SourceKey,
        validated: bool,
        open_connections: usize,
    ) -> Verdict {
        let l = &self.limits;
        if open_connections >= l.connections_max {
            return Verdict::Refuse(Refusal::VendorFull);
        }
        let held = self.held(source);
        if !validated && (open_connections >= l.address_validation_above_connections || held > 0) {
            return Verdict::Retry;
        }
        if held >= l.connections_per_source_max {
            return Verdict::Refuse(Refusal::SourceFull);
        }
        *self.per_source.entry(source).or_insert(0) += 1;
        Verdict::Accept
    }

    /// A connection [`Self::decide`] accepted has ended (or never completed its handshake).
    pub fn release(&mut self, source: SourceKey) {
        if let Some(n) = self.per_source.get_mut(&source) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&source);
            }
        }
    }

    /// Connections the source holds.
    pub fn held(&self, source: SourceKey) -> usize {
        self.per_source.get(&source).copied().unwrap_or(0)
    }

    /// Sources holding at least one connection.
    pub fn sources(&self) -> usize {
        self.per_source.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: SourceKey = SourceKey::V4([192, 0, 2, 1]);
    const B: SourceKey = SourceKey::V4([192, 0, 2, 2]);

    fn admission(per_source: usize, validate_above: usize) -> Admission {
        Admission::new(AdmissionLimits {
            connections_max: 10,
            connections_per_source_max: per_source,
            address_validation_above_connections: validate_above,
        })
    }

    #[test]
    fn a_source_is_refused_beyond_its_limit_and_others_are_not() {
        let mut a = admission(2, 100);
        assert_eq!(a.decide(A, true, 0), Verdict::Accept);
        assert_eq!(a.decide(A, true, 1), Verdict::Accept);
        assert_eq!(a.decide(A, true, 2), Verdict::Refuse(Refusal::SourceFull));
        assert_eq!(a.decide(B, true, 2), Verdict::Accept);
        assert_eq!(a.held(A), 2);
        a.release(A);
        assert_eq!(a.decide(A, true, 2), Verdict::Accept);
        for _ in 0..5 {
            a.release(A);
        }
        assert_eq!(a.held(A), 0);
        assert_eq!(a.sources(), 1, "an empty source leaves no entry");
    }

    #[test]
    fn the_vendor_limit_comes_first() {
        let mut a = admission(5, 0);
        assert_eq!(a.decide(A, true, 10), Verdict::Refuse(Refusal::VendorFull));
        assert_eq!(a.decide(A, false, 10), Verdict::Refuse(Refusal::VendorFull));
        assert_eq!(a.held(A), 0);
    }

    #[test]
    fn unvalidated_addresses_get_a_retry_under_load_or_once_the_source_holds_one() {
        // (validate_above, open, held before, validated) → verdict
        let cases = [
            (4, 0, 0, false, Verdict::Accept),
            (4, 3, 0, false, Verdict::Accept),
            (4, 4, 0, false, Verdict::Retry),
            (4, 4, 0, true, Verdict::Accept),
            (4, 1, 1, false, Verdict::Retry),
            (4, 1, 1, true, Verdict::Accept),
            (0, 0, 0, false, Verdict::Retry),
            (0, 0, 0, true, Verdict::Accept),
        ];
        for (above, open, held, validated, want) in cases {
            let mut a = admission(5, above);
            for _ in 0..held {
                assert_eq!(a.decide(A, true, 0), Verdict::Accept);
            }
            assert_eq!(
                a.decide(A, validated, open),
                want,
                "above {above} open {open} held {held} validated {validated}"
            );
        }
    }

    #[test]
    fn ipv6_sources_are_their_64_prefix_and_mapped_ipv4_is_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(SourceKey::of(a), SourceKey::of(b));
        assert_ne!(SourceKey::of(a), SourceKey::of(c));
        assert_eq!(SourceKey::of(a).to_string(), "2001:db8:1:2::/64");
        let mapped: IpAddr = "::ffff:192.0.2.1".parse().unwrap();
        assert_eq!(SourceKey::of(mapped), A);
        assert_eq!(A.to_string(), "192.0.2.1");
    }
}
