//! TLS 1.3 for the QUIC link: the vendor's server config (no 0-RTT) and the counter's client
//! config that pins the vendor's Ed25519 key instead of trusting any CA.
//!
//! The vendor's certificate and every handshake are signed through the [`Signer`] seam (rcgen's
//! remote key pair, rustls's `SigningKey`), so a key in a PKCS#11 token signs them inside the
//! token, and the key counters pin is the one that signs indicia.

use crate::identity;
use crate::indicium::signer::Signer;
use crate::wire::ALPN;
use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// The name in the vendor certificate. Clients do not check it: the pinned key is the identity.
pub const VENDOR_CERT_NAME: &str = "frank-vendor";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A self-signed certificate whose key is the vendor identity key itself, signed by `signer`
/// (a key in memory or in a token: rcgen asks the [`Signer`] for the one signature).
pub fn make_vendor_certificate(signer: &Arc<dyn Signer>) -> anyhow::Result<Vec<u8>> {
    let key_pair = rcgen::KeyPair::from_remote(Box::new(RemoteVendorKey {
        public: signer.public_key(),
        signer: signer.clone(),
    }))
    .context("the vendor key for rcgen")?;
    let params = rcgen::CertificateParams::new(vec![VENDOR_CERT_NAME.to_string()])
        .context("certificate parameters")?;
    let cert = params
        .self_signed(&key_pair)
        .context("signing the vendor certificate")?;
    Ok(cert.der().to_vec())
}

/// The vendor key as rcgen's remote key pair.
struct RemoteVendorKey {
    public: [u8; 32],
    signer: Arc<dyn Signer>,
}

impl rcgen::RemoteKeyPair for RemoteVendorKey {
    fn public_key(&self) -> &[u8] {
        &self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        self.signer
            .sign(msg)
            .map(|s| s.to_vec())
            .map_err(|_| rcgen::Error::RemoteKeyError)
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
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
/// the handshake signed by `signer`, whose key `cert_der` must carry.
pub fn server_config(
    cert_der: Vec<u8>,
    signer: Arc<dyn Signer>,
) -> anyhow::Result<quinn::ServerConfig> {
    let presented = ed25519_key_of(&cert_der).map_err(anyhow::Error::msg)?;
    if presented != signer.public_key() {
        anyhow::bail!("the vendor certificate does not carry the signing key");
    }
    let certified = rustls::sign::CertifiedKey::new(
        vec![CertificateDer::from(cert_der)],
        Arc::new(HandshakeKey(signer)),
    );
    let mut tls = rustls::ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .context("TLS 1.3")?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(certified)));
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

/// The raw Ed25519 public key in a certificate, if that is what it holds.
pub fn ed25519_key_of(cert: &[u8]) -> Result<[u8; 32], String> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert)
        .map_err(|e| format!("vendor certificate does not parse: {e}"))?;
    let spki = parsed.public_key();
    if spki.algorithm.algorithm != x509_parser::oid_registry::OID_SIG_ED25519 {
        return Err(format!(
            "vendor certificate key is not Ed25519 (algorithm {})",
            spki.algorithm.algorithm
        ));
    }
    let raw: &[u8] = &spki.subject_public_key.data;
    raw.try_into()
        .map_err(|_| format!("vendor Ed25519 key is {} bytes, not 32", raw.len()))
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
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
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
    fn certificate_carries_the_vendor_key() {
        let key: Arc<dyn Signer> =
            Arc::new(crate::indicium::signer::KeySigner::from_seed(&[8; 32]));
        let cert = make_vendor_certificate(&key).unwrap();
        assert_eq!(ed25519_key_of(&cert).unwrap(), key.public_key());
        assert!(ed25519_key_of(b"junk").is_err());
    }
}
