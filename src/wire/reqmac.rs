//! The per-request MAC (the seeds' "dynamic password") every money-moving request carries.
//!
//! `mac = HMAC-SHA256(request_mac_key, canonical)` with, all integers big-endian:
//!
//! ```text
//! canonical = "frank/1 request" ‖ u8 len ‖ operation (ASCII)
//!           ‖ request_id (16) ‖ amount_cents (u64) ‖ client_time_ms (u64)
//!           ‖ u16 len ‖ clerk (UTF-8) ‖ u16 len ‖ destination (UTF-8)
//! ```
//!
//! The vendor recomputes it with its copy of the session's request-MAC key, compares in
//! constant time, and refuses a client time further than `request_clock_skew_ms_max` from its
//! own clock. docs/PROTOCOL.md §Request MAC has test vectors.

use crate::link::keys::MacKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const REQUEST_MAC_TAG: &[u8] = b"frank/1 request";
pub const REQUEST_MAC_BYTES: usize = 32;
/// Default largest allowed difference between the client's and the vendor's clock.
pub const REQUEST_CLOCK_SKEW_MS_MAX: u64 = 30_000;
pub const OPERATION_BYTES_MAX: usize = 32;
pub const CLERK_BYTES_MAX: usize = 64;
pub const DESTINATION_BYTES_MAX: usize = 1024;

/// The fields a request MAC covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MacInput<'a> {
    /// The request's type; its wire name is what the MAC covers.
    pub operation: super::Operation,
    pub request_id: [u8; 16],
    pub amount_cents: u64,
    pub client_time_ms: u64,
    pub clerk: &'a str,
    pub destination: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestMacError {
    #[error("request MAC does not verify")]
    BadMac,
    #[error(
        "client clock is {skew_ms} ms from the vendor's; the limit is {limit_ms} ms — check the terminal's clock"
    )]
    ClockSkew { skew_ms: i64, limit_ms: u64 },
    #[error("{field} is {len} bytes; the limit is {max}")]
    FieldTooLong {
        field: &'static str,
        len: usize,
        max: usize,
    },
}

impl MacInput<'_> {
    /// The canonical byte string the MAC covers.
    pub fn canonical(&self) -> Result<Vec<u8>, RequestMacError> {
        let operation = self.operation.as_str();
        check_len("operation", operation, OPERATION_BYTES_MAX)?;
        check_len("clerk", self.clerk, CLERK_BYTES_MAX)?;
        check_len("destination", self.destination, DESTINATION_BYTES_MAX)?;
        let mut m = Vec::with_capacity(
            REQUEST_MAC_TAG.len()
                + 1
                + operation.len()
                + 32
                + 4
                + self.clerk.len()
                + self.destination.len(),
        );
        m.extend_from_slice(REQUEST_MAC_TAG);
        // lengths are bounded by the checks above, so the casts cannot truncate
        m.push(operation.len() as u8);
        m.extend_from_slice(operation.as_bytes());
        m.extend_from_slice(&self.request_id);
        m.extend_from_slice(&self.amount_cents.to_be_bytes());
        m.extend_from_slice(&self.client_time_ms.to_be_bytes());
        m.extend_from_slice(&(self.clerk.len() as u16).to_be_bytes());
        m.extend_from_slice(self.clerk.as_bytes());
        m.extend_from_slice(&(self.destination.len() as u16).to_be_bytes());
        m.extend_from_slice(self.destination.as_bytes());
        Ok(m)
    }

    pub fn sign(&self, key: &MacKey) -> Result<[u8; REQUEST_MAC_BYTES], RequestMacError> {
        let canonical = self.canonical()?;
        let mut m = hmac_with(key);
        m.update(&canonical);
        Ok(m.finalize().into_bytes().into())
    }

    /// Verifies the MAC (constant time) and then the clock skew against `vendor_time_ms`.
    pub fn verify(
        &self,
        key: &MacKey,
        mac: &[u8],
        vendor_time_ms: u64,
        skew_ms_max: u64,
    ) -> Result<(), RequestMacError> {
        let expected = self.sign(key)?;
        if mac.len() != REQUEST_MAC_BYTES || !bool::from(expected.ct_eq(mac)) {
            return Err(RequestMacError::BadMac);
        }
        let skew_ms = self.client_time_ms as i128 - vendor_time_ms as i128;
        if skew_ms.unsigned_abs() > u128::from(skew_ms_max) {
            return Err(RequestMacError::ClockSkew {
                skew_ms: skew_ms.clamp(i64::MIN as i128, i64::MAX as i128) as i64,
                limit_ms: skew_ms_max,
            });
        }
        Ok(())
    }
}

fn check_len(field: &'static str, value: &str, max: usize) -> Result<(), RequestMacError> {
    if value.len() > max {
        return Err(RequestMacError::FieldTooLong {
            field,
            len: value.len(),
            max,
        });
    }
    Ok(())
}

fn hmac_with(key: &MacKey) -> Hmac<Sha256> {
    // HMAC accepts keys of any length, so construction cannot fail.
    <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes any key length")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> MacInput<'static> {
        MacInput {
            operation: super::super::Operation::Authorize,
            request_id: [0x11; 16],
            amount_cents: 73,
            client_time_ms: 1_700_000_000_000,
            clerk: "alice",
            destination: "20500-0003",
        }
    }

    #[test]
    fn verify_accepts_and_names_failures() {
        let key = MacKey([3; 32]);
        let i = input();
        let mac = i.sign(&key).unwrap();
        assert_eq!(
            i.verify(&key, &mac, i.client_time_ms + 29_999, 30_000),
            Ok(())
        );
        let mut bad = mac;
        bad[0] ^= 1;
        assert_eq!(
            i.verify(&key, &bad, i.client_time_ms, 30_000),
            Err(RequestMacError::BadMac)
        );
        assert_eq!(
            i.verify(&key, &mac[..31], i.client_time_ms, 30_000),
            Err(RequestMacError::BadMac)
        );
        assert_eq!(
            i.verify(&key, &mac, i.client_time_ms - 30_001, 30_000),
            Err(RequestMacError::ClockSkew {
                skew_ms: 30_001,
                limit_ms: 30_000
            })
        );
        for changed in [
            MacInput {
                amount_cents: 74,
                ..input()
            },
            MacInput {
                destination: "20500-0004",
                ..input()
            },
            MacInput {
                clerk: "bob",
                ..input()
            },
            MacInput {
                operation: super::super::Operation::Fund,
                ..input()
            },
            MacInput {
                client_time_ms: i.client_time_ms + 1,
                ..input()
            },
            MacInput {
                request_id: [0x12; 16],
                ..input()
            },
        ] {
            assert_eq!(
                changed.verify(&key, &mac, changed.client_time_ms, 30_000),
                Err(RequestMacError::BadMac)
            );
        }
    }

    #[test]
    fn over_long_fields_are_named() {
        let long = "x".repeat(65);
        let i = MacInput {
            clerk: &long,
            ..input()
        };
        assert!(matches!(
            i.sign(&MacKey([0; 32])),
            Err(RequestMacError::FieldTooLong { field: "clerk", .. })
        ));
    }
}
