//! Ed25519 identities on disk: the vendor's key and each terminal's device key.
//!
//! Keys are PKCS#8 v1 PEM files (`-----BEGIN PRIVATE KEY-----`, RFC 8410: the private key
//! only, as OpenSSL writes and reads them: `openssl pkey -in vendor-key.pem -noout` accepts
//! one) created with mode 0600; loading refuses a key file that group or others can read.
//! Files written before this rule hold a PKCS#8 v2 document (with the public key), which
//! OpenSSL 3 cannot read: loading still accepts them and rewrites them as v1, atomically. The vendor key fingerprint is the lowercase hex of the raw 32-byte public
//! key (64 characters): it is what counters pin and what `frank verify --vendor-key` takes.

use anyhow::{Context, bail};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

pub const FINGERPRINT_HEX_CHARS: usize = 64;

/// Hex of the raw public key.
pub fn fingerprint(key: &VerifyingKey) -> String {
    hex::encode(key.as_bytes())
}

/// The 4-byte key id: the first 4 bytes of SHA-256(raw public key).
pub fn key_id(key: &VerifyingKey) -> [u8; 4] {
    let d = Sha256::digest(key.as_bytes());
    [d[0], d[1], d[2], d[3]]
}

/// Parses a pinned fingerprint: 64 hex characters, spaces and colons ignored.
pub fn parse_fingerprint(text: &str) -> anyhow::Result<VerifyingKey> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_whitespace() && *c != ':')
        .collect::<String>()
        .to_ascii_lowercase();
    if cleaned.len() != FINGERPRINT_HEX_CHARS {
        bail!(
            "vendor fingerprint must be {FINGERPRINT_HEX_CHARS} hex characters, got {}",
            cleaned.len()
        );
    }
    let mut raw = [0u8; 32];
    hex::decode_to_slice(&cleaned, &mut raw).context("vendor fingerprint is not hex")?;
    VerifyingKey::from_bytes(&raw).context("vendor fingerprint is not a valid Ed25519 public key")
}

/// The standard PEM of a key: PKCS#8 v1, the private key only (what OpenSSL writes).
fn standard_pem(key: &SigningKey) -> anyhow::Result<zeroize::Zeroizing<String>> {
    KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    }
    .to_pkcs8_pem(Default::default())
    .context("encoding the key as PKCS#8")
}

/// A new Ed25519 signing key: its 32 secret bytes straight from the operating system
/// ([`crate::clock::fill_from_os`], no userspace generator), the copy of them wiped after use.
pub fn new_signing_key() -> std::io::Result<SigningKey> {
    let mut secret = zeroize::Zeroizing::new([0u8; ed25519_dalek::SECRET_KEY_LENGTH]);
    crate::clock::fill_from_os(&mut secret[..])?;
    Ok(SigningKey::from_bytes(&secret))
}

/// Creates a new key file (fails if it exists), mode 0600.
pub fn create_key_file(path: &Path) -> anyhow::Result<SigningKey> {
    let key = new_signing_key().context("reading random bytes for a new key")?;
    let pem = standard_pem(&key)?;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating key file {}", path.display()))?;
    f.write_all(pem.as_bytes())?;
    f.sync_all()?;
    Ok(key)
}

/// Loads a key file, refusing one that group or others may read. A file in another PKCS#8
/// form (v2, from before) is rewritten in the standard form; if that fails the key still loads
/// and a warning is logged.
pub fn load_key_file(path: &Path) -> anyhow::Result<SigningKey> {
    let meta =
        fs::metadata(path).with_context(|| format!("reading key file {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "key file {} has mode {mode:o}; it must be readable by its owner only (chmod 600)",
            path.display()
        );
    }
    let pem = zeroize::Zeroizing::new(fs::read_to_string(path)?);
    let key = SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "key file {} is not an Ed25519 PKCS#8 key: {e}",
            path.display()
        )
    })?;
    let standard = standard_pem(&key)?;
    if pem.trim_end() != standard.trim_end() {
        match crate::datafiles::write_private(path, standard.as_bytes()) {
            Ok(()) => tracing::info!(
                file = %path.display(),
                "key file rewritten as standard PKCS#8 (v1)"
            ),
            Err(e) => tracing::warn!(
                file = %path.display(),
                error = %e,
                "key file is in an older PKCS#8 form and could not be rewritten"
            ),
        }
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_are_private_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        let k = create_key_file(&p).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_key_file(&p).unwrap().to_bytes(), k.to_bytes());
        assert!(create_key_file(&p).is_err(), "never overwrites a key");
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_key_file(&p).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    /// Issue 13: keys written before were PKCS#8 v2 (with the public key), which OpenSSL 3
    /// cannot read; they still load, and are rewritten as v1 with the same key and mode.
    #[test]
    fn old_v2_key_files_load_and_are_upgraded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k.pem");
        let k = SigningKey::from_bytes(&[9; 32]);
        let v2 = k.to_pkcs8_pem(Default::default()).unwrap();
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&p)
            .unwrap();
        f.write_all(v2.as_bytes()).unwrap();
        drop(f);
        assert_eq!(load_key_file(&p).unwrap().to_bytes(), k.to_bytes());
        let now = fs::read_to_string(&p).unwrap();
        assert_ne!(now.trim_end(), v2.trim_end(), "rewritten");
        assert_eq!(now.trim_end(), standard_pem(&k).unwrap().trim_end());
        let parsed = KeypairBytes::from_pkcs8_pem(&now).unwrap();
        assert!(parsed.public_key.is_none(), "v1: private key only");
        assert_eq!(parsed.secret_key, k.to_bytes());
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_key_file(&p).unwrap().to_bytes(), k.to_bytes());
    }

    #[test]
    fn new_keys_are_fresh_and_sign() {
        use ed25519_dalek::{Signer, Verifier};
        let a = new_signing_key().unwrap();
        let b = new_signing_key().unwrap();
        assert_ne!(a.to_bytes(), b.to_bytes());
        let sig = a.sign(b"postage");
        assert!(a.verifying_key().verify(b"postage", &sig).is_ok());
        assert!(b.verifying_key().verify(b"postage", &sig).is_err());
    }

    #[test]
    fn fingerprints_parse_back() {
        let k = SigningKey::from_bytes(&[5; 32]).verifying_key();
        let fp = fingerprint(&k);
        assert_eq!(fp.len(), 64);
        assert_eq!(parse_fingerprint(&fp.to_uppercase()).unwrap(), k);
        assert!(
            parse_fingerprint("abcd")
                .unwrap_err()
                .to_string()
                .contains("64 hex")
        );
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}
