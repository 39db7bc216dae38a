//! Session-bound secrets: the TLS exporter, HKDF-derived MAC keys, and the byte strings that
//! enrollment and login sign. Everything here is specified in docs/PROTOCOL.md §Keys.

use hkdf::Hkdf;
use sha2::Sha256;
use zeroize::Zeroize;

/// RFC 8446 §7.5 exporter label both ends use on the QUIC connection.
pub const EXPORTER_LABEL: &[u8] = b"EXPORTER-frank/1 session";
/// Exporter context (empty).
pub const EXPORTER_CONTEXT: &[u8] = b"";
/// Exporter output length.
pub const EXPORTER_BYTES: usize = 32;

pub const HKDF_SALT_TAG: &[u8] = b"frank/1 login";
pub const INFO_KEEPALIVE_C2V: &[u8] = b"frank/1 keepalive counter->vendor";
pub const INFO_KEEPALIVE_V2C: &[u8] = b"frank/1 keepalive vendor->counter";
pub const INFO_REQUEST_MAC: &[u8] = b"frank/1 request-mac";
pub const INFO_RESUME: &[u8] = b"frank/1 resume";
pub const RESUME_TAG: &[u8] = b"frank/1 resume-proof";

pub const ENROLL_TAG: &[u8] = b"frank/1 enroll";
/// What the vendor key signs (never sent anywhere) to derive the fronts' resume seal key
/// (`vendor_server::fronts::ResumeSeal`); no transcript, indicium or TLS content starts so.
pub const RESUME_SEAL_TAG: &[u8] = b"frank/1 resume-seal";
pub const LOGIN_TAG: &[u8] = b"frank/1 login-proof";

/// The exporter value of one QUIC connection.
#[derive(Clone)]
pub struct Exporter(pub [u8; EXPORTER_BYTES]);

impl Drop for Exporter {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Drop for MacKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Exporter(..)")
    }
}

/// A 32-byte MAC key. Debug never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct MacKey(pub [u8; 32]);

impl std::fmt::Debug for MacKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MacKey(..)")
    }
}

/// Keys of one logged-in session, bound to the connection (exporter) and the login.
#[derive(Debug, Clone)]
pub struct SessionKeys {
    pub keepalive_counter_to_vendor: MacKey,
    pub keepalive_vendor_to_counter: MacKey,
    pub request_mac: MacKey,
    /// Proves knowledge of this login when resuming on a later connection.
    pub resume: MacKey,
}

/// HKDF-SHA256 salt: tag ‖ session_id (u64 BE) ‖ terminal_id (u64 BE) ‖ clerk (UTF-8).
pub fn login_salt(session_id: u64, terminal_id: u64, clerk: &str) -> Vec<u8> {
    let mut salt = Vec::with_capacity(HKDF_SALT_TAG.len() + 16 + clerk.len());
    salt.extend_from_slice(HKDF_SALT_TAG);
    salt.extend_from_slice(&session_id.to_be_bytes());
    salt.extend_from_slice(&terminal_id.to_be_bytes());
    salt.extend_from_slice(clerk.as_bytes());
    salt
}

pub fn derive_session_keys(
    exporter: &Exporter,
    session_id: u64,
    terminal_id: u64,
    clerk: &str,
) -> SessionKeys {
    let salt = login_salt(session_id, terminal_id, clerk);
    let hk = Hkdf::<Sha256>::new(Some(&salt), &exporter.0);
    let expand = |info: &[u8]| {
        let mut okm = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 255 × 32 byte output limit.
        hk.expand(info, &mut okm)
            .expect("32-byte HKDF output is within the limit");
        MacKey(okm)
    };
    SessionKeys {
        keepalive_counter_to_vendor: expand(INFO_KEEPALIVE_C2V),
        keepalive_vendor_to_counter: expand(INFO_KEEPALIVE_V2C),
        request_mac: expand(INFO_REQUEST_MAC),
        resume: expand(INFO_RESUME),
    }
}

/// What the vendor signs to answer an enrollment challenge:
/// tag ‖ challenge (8) ‖ exporter (32) ‖ vendor_time_ms (u64 BE).
pub fn enroll_transcript(challenge: &[u8; 8], exporter: &Exporter, vendor_time_ms: u64) -> Vec<u8> {
    let mut m = Vec::with_capacity(ENROLL_TAG.len() + 8 + EXPORTER_BYTES + 8);
    m.extend_from_slice(ENROLL_TAG);
    m.extend_from_slice(challenge);
    m.extend_from_slice(&exporter.0);
    m.extend_from_slice(&vendor_time_ms.to_be_bytes());
    m
}

/// What the terminal's device key signs at login:
/// tag ‖ exporter (32) ‖ terminal_id (u64 BE) ‖ clerk length (u16 BE) ‖ clerk (UTF-8).
pub fn login_transcript(exporter: &Exporter, terminal_id: u64, clerk: &str) -> Vec<u8> {
    let clerk_len = u16::try_from(clerk.len()).unwrap_or(u16::MAX);
    let mut m = Vec::with_capacity(LOGIN_TAG.len() + EXPORTER_BYTES + 10 + clerk.len());
    m.extend_from_slice(LOGIN_TAG);
    m.extend_from_slice(&exporter.0);
    m.extend_from_slice(&terminal_id.to_be_bytes());
    m.extend_from_slice(&clerk_len.to_be_bytes());
    m.extend_from_slice(clerk.as_bytes());
    m
}

/// The resume MAC: HMAC-SHA256(resume key of the original login, tag ‖ new exporter (32)).
pub fn resume_mac(resume_key: &MacKey, new_exporter: &Exporter) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    // HMAC accepts keys of any length, so construction cannot fail.
    let mut m =
        <Hmac<Sha256> as Mac>::new_from_slice(&resume_key.0).expect("HMAC takes any key length");
    m.update(RESUME_TAG);
    m.update(&new_exporter.0);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions_and_purposes_get_distinct_keys() {
        let e = Exporter([7; 32]);
        let k = derive_session_keys(&e, 1, 2, "alice");
        assert_ne!(k.keepalive_counter_to_vendor, k.keepalive_vendor_to_counter);
        assert_ne!(k.keepalive_counter_to_vendor, k.request_mac);
        let other_session = derive_session_keys(&e, 9, 2, "alice");
        assert_ne!(k.request_mac, other_session.request_mac);
        let other_clerk = derive_session_keys(&e, 1, 2, "bob");
        assert_ne!(k.request_mac, other_clerk.request_mac);
        assert_eq!(format!("{:?}", k.request_mac), "MacKey(..)");
    }
}
