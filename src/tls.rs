//! TLS 1.3 for the QUIC link: the vendor's server config (no 0-RTT) and the counter's client
//! config that pins the vendor's Ed25519 key instead of trusting any CA.
//!
//! The vendor presents its key as an RFC 7250 raw public key (an Ed25519 SubjectPublicKeyInfo,
//! RFC 8410), not a certificate: the pinned key is the identity, so there is nothing for a
//! certificate to add. Every handshake is signed through the [`Signer`] seam (rustls's
//! `SigningKey`), so a key in a PKCS#11 token signs it inside the token, and the key counters
//! pin is the one that signs indicia (docs/PROTOCOL.md §Transport).

use crate::identity;
use crate::indicium::signer::Signer;
use crate::wire::ALPN;
use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, SubjectPublicKeyInfoDer, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// The server name a counter asks for (SNI). Nothing checks it: the pinned key is the identity.
pub const VENDOR_CERT_NAME: &str = "frank-vendor";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// DER of an Ed25519 SubjectPublicKeyInfo up to its key (RFC 8410 §4): SEQUENCE { SEQUENCE {
/// OID 1.3.101.112 }, BIT STRING with 0 unused bits }; the 32-byte key follows.
pub const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
/// Length of an Ed25519 SubjectPublicKeyInfo: the prefix and the key.
pub const ED25519_SPKI_BYTES: usize = ED25519_SPKI_PREFIX.len() + 32;

/// The raw public key the vendor presents: the Ed25519 SubjectPublicKeyInfo of `public`.
pub fn ed25519_spki(public: &[u8; 32]) -> Vec<u8> {
    let mut spki = Vec::with_capacity(ED25519_SPKI_BYTES);
    spki.extend_from_slice(&ED25519_SPKI_PREFIX);
    spki.extend_from_slice(public);
    spki
}

/// The Ed25519 key of a SubjectPublicKeyInfo, refused unless it is exactly one.
pub fn ed25519_key_of(spki: &[u8]) -> Result<[u8; 32], String> {
    if spki.len() != ED25519_SPKI_BYTES {
        return Err(format!(
            "vendor public key is {} bytes, not an Ed25519 SubjectPublicKeyInfo ({ED25519_SPKI_BYTES} bytes)",
            spki.len()
        ));
    }
    let (prefix, key) = spki.split_at(ED25519_SPKI_PREFIX.len());
    if prefix != ED25519_SPKI_PREFIX {
        return Err("vendor public key is not an Ed25519 SubjectPublicKeyInfo".into());
    }
    key.try_into()
        .map_err(|_| "vendor Ed25519 key is not 32 bytes".to_string())
}

/// The key in an X.509 certificate of a data directory from before raw public keys (a
/// self-signed Ed25519 certificate holds exactly one Ed25519 SubjectPublicKeyInfo).
pub fn ed25519_key_in_certificate(cert: &[u8]) -> Result<[u8; 32], String> {
    let mut found = cert
        .windows(ED25519_SPKI_BYTES)
        .filter(|w| w.starts_with(&ED25519_SPKI_PREFIX));
    match (found.next(), found.next()) {
        (Some(spki), None) => ed25519_key_of(spki),
        _ => Err("the vendor certificate does not hold exactly one Ed25519 key".into()),
    }
}

/// The vendor key as rustls's handshake signing key: the TLS 1.3 `CertificateVerify` is
/// signed through the [`Signer`] seam, so with a token the handshake proves possession of the
/// very key the counters pin and that signs indicia — no second key.
#[derive(Clone)]
struct HandshakeKey(Arc<dyn Signer>);

impl std::fmt::Debug for HandshakeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeKey")
            .field("key_id", &self.0.key_id())
            .finish_non_exhaustive()
    }
}

impl rustls::sign::SigningKey for HandshakeKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ED25519)
            .then(|| Box::new(self.clone()) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> rustls::SignatureAlgorithm {
        rustls::SignatureAlgorithm::ED25519
    }
}

impl rustls::sign::Signer for HandshakeKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let sign = || self.0.sign(message);
        // rustls signs synchronously, on the task driving the connection. A device's
        // signature may take a while: on a multi-thread runtime the worker hands its other
        // tasks over first (`block_in_place`); a key in memory signs in microseconds.
        let on_workers = self.0.parallel_signatures_max().is_some()
            && tokio::runtime::Handle::try_current()
                .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let signature = if on_workers {
            tokio::task::block_in_place(sign)
        } else {
            sign()
        };
        signature
            .map(|s| s.to_vec())
            .map_err(|e| rustls::Error::General(format!("vendor handshake signature: {e}")))
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// QUIC server config: TLS 1.3 only, ALPN `frank/1`, 0-RTT disabled (`max_early_data_size = 0`);
/// the vendor's key presented as a raw public key (RFC 7250) and the handshake signed by
/// `signer`.
pub fn server_config(signer: Arc<dyn Signer>) -> anyhow::Result<quinn::ServerConfig> {
    let spki = ed25519_spki(&signer.public_key());
    let certified = rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(spki)],
        Arc::new(HandshakeKey(signer)),
    );
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(
            rustls::server::AlwaysResolvesServerRawPublicKeys::new(Arc::new(certified)),
        ));
    tls.alpn_protocols = vec![ALPN.to_vec()];
    // No request is ever accepted in 0-RTT: early data is refused outright.
    tls.max_early_data_size = 0;
    tls.send_half_rtt_data = false;
    let crypto =
        quinn::crypto::rustls::QuicServerConfig::try_from(tls).context("QUIC server TLS config")?;
    Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
}

/// Pins the vendor's Ed25519 key. Remembers a mismatching key so the caller can say which
/// key was presented.
#[derive(Debug)]
pub struct PinnedVendor {
    pinned: VerifyingKey,
    mismatch: Mutex<Option<String>>,
    provider: Arc<CryptoProvider>,
}

impl PinnedVendor {
    pub fn new(pinned: VerifyingKey) -> Arc<Self> {
        Arc::new(PinnedVendor {
            pinned,
            mismatch: Mutex::new(None),
            provider: provider(),
        })
    }

    /// The fingerprint a refused vendor presented, if the last handshake failed the pin.
    pub fn presented_mismatch(&self) -> Option<String> {
        self.mismatch.lock().ok().and_then(|m| m.clone())
    }
}

impl ServerCertVerifier for PinnedVendor {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = ed25519_key_of(end_entity).map_err(|e| {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(rustls::OtherError(
                Arc::new(PinError(e)),
            )))
        })?;
        if bool::from(presented.ct_eq(self.pinned.as_bytes())) {
            return Ok(ServerCertVerified::assertion());
        }
        let shown = hex::encode(presented);
        if let Ok(mut m) = self.mismatch.lock() {
            *m = Some(shown.clone());
        }
        Err(rustls::Error::InvalidCertificate(
            rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinError(format!(
                "vendor presented key {shown}, which is not the pinned key {}",
                identity::fingerprint(&self.pinned)
            ))))),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls13RequiredForQuic,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        // The pinned key must also have made the handshake signature.
        rustls::crypto::verify_tls13_signature_with_raw_key(
            message,
            &SubjectPublicKeyInfoDer::from(cert.as_ref()),
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }

    /// The vendor presents a raw public key (RFC 7250), never a certificate.
    fn requires_raw_public_keys(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct PinError(String);

impl std::fmt::Display for PinError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for PinError {}

/// QUIC client config pinning `verifier`'s key; TLS 1.3 only; early data (0-RTT) disabled.
pub fn client_config(verifier: Arc<PinnedVendor>) -> anyhow::Result<quinn::ClientConfig> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN.to_vec()];
    tls.enable_early_data = false;
    let crypto =
        quinn::crypto::rustls::QuicClientConfig::try_from(tls).context("QUIC client TLS config")?;
    Ok(quinn::ClientConfig::new(Arc::new(crypto)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_public_key_carries_the_vendor_key_and_nothing_else_passes() {
        let key = crate::indicium::signer::KeySigner::from_seed(&[8; 32]);
        let public = Signer::public_key(&key);
        let spki = ed25519_spki(&public);
        assert_eq!(spki.len(), ED25519_SPKI_BYTES);
        assert_eq!(ed25519_key_of(&spki).unwrap(), public);
        assert!(ed25519_key_of(b"junk").is_err());
        let mut other_algorithm = spki.clone();
        other_algorithm[8] = 0x71; // Ed448's OID
        assert!(ed25519_key_of(&other_algorithm).is_err());
        // As found inside an old data directory's certificate.
        let mut cert = b"certificate before".to_vec();
        cert.extend_from_slice(&spki);
        cert.extend_from_slice(b"and after");
        assert_eq!(ed25519_key_in_certificate(&cert).unwrap(), public);
        cert.extend_from_slice(&spki);
        assert!(ed25519_key_in_certificate(&cert).is_err(), "two keys");
    }
}
