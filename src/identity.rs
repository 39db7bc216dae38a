//! Ed25519 identities on disk: the vendor's key and each terminal's device key.
//!
//! Keys are PKCS#8 PEM files created with mode 0600; loading refuses a key file that group or
//! others can read. The vendor key fingerprint is the lowercase hex of the raw 32-byte public
//! key (64 characters): it is what counters pin and what `frank verify --vendor-key` takes.

use anyhow::{Context, bail};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
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

/// Creates a new key file (fails if it exists), mode 0600.
pub fn create_key_file(path: &Path) -> anyhow::Result<SigningKey> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    let pem = key
        .to_pkcs8_pem(Default::default())
        .context("encoding the key as PKCS#8")?;
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

/// Loads a key file, refusing one that group or others may read.
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
    let pem = fs::read_to_string(path)?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|e| {
        anyhow::anyhow!(
            "key file {} is not an Ed25519 PKCS#8 key: {e}",
            path.display()
        )
    })
}

/// PKCS#8 DER of a key, for rustls/rcgen.
pub fn pkcs8_der(key: &SigningKey) -> anyhow::Result<Vec<u8>> {
    Ok(key
        .to_pkcs8_der()
        .context("encoding the key as PKCS#8")?
        .as_bytes()
        .to_vec())
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
