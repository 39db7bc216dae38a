//! Signing: the `Signer` seam (the seeds' cryptographic device), the in-memory and file-backed
//! Ed25519 signers, and [`build_and_sign`], which turns ledger facts into a signed indicium.
//!
//! `build_and_sign` is pure apart from the signer call: the ledger calls it inside the
//! reservation transaction, so the piece serial and registers it signs are exactly the ones it
//! commits. A key in a PKCS#11 token (`crate::pkcs11::Pkcs11Signer`) is the other [`Signer`].

use super::FieldError;
use super::address::Zip5;
use super::kinds::{Day, Item};
use super::layout::{
    Indicium, IndiciumBody, KeyId, LicenseId, MeterSerial, PieceSerial, SoftwareId, Subject,
};
use crate::money::Cents;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signer as _, SigningKey};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignerError {
    #[error("signing device failed: {0}")]
    Device(String),
}

/// The cryptographic device that signs indicia. Implementations never expose key material.
pub trait Signer: Send + Sync {
    /// First 4 bytes of SHA-256(public key).
    fn key_id(&self) -> KeyId;
    /// Raw Ed25519 public key.
    fn public_key(&self) -> [u8; 32];
    /// Ed25519 signature over `msg`. May block (a hardware token): never call it on an async
    /// runtime's thread.
    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignerError>;
    /// How many signatures the device makes at once, when it is a device with such a limit (a
    /// PKCS#11 token's session pool); `None` for a key in memory. The ledger sizes its signing
    /// pool to it.
    fn parallel_signatures_max(&self) -> Option<usize> {
        None
    }
}

/// An Ed25519 key held in memory. The building block of [`FileSigner`]; also used for test
/// vectors (fixed seed).
pub struct KeySigner {
    key: SigningKey,
    public: [u8; 32],
    key_id: KeyId,
}

impl KeySigner {
    pub fn from_seed(seed: &[u8; 32]) -> KeySigner {
        KeySigner::from_key(SigningKey::from_bytes(seed))
    }

    /// A new key ([`crate::identity::new_signing_key`]: its secret from the operating system).
    pub fn generate() -> std::io::Result<KeySigner> {
        Ok(KeySigner::from_key(crate::identity::new_signing_key()?))
    }

    pub fn from_key(key: SigningKey) -> KeySigner {
        let public = key.verifying_key().to_bytes();
        KeySigner {
            key,
            public,
            key_id: KeyId::of_public_key(&public),
        }
    }

    /// The vendor key fingerprint: lowercase hex of the raw public key.
    pub fn fingerprint(&self) -> String {
        hex::encode(self.public)
    }
}

impl fmt::Debug for KeySigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySigner")
            .field("key_id", &self.key_id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Signer for KeySigner {
    fn key_id(&self) -> KeyId {
        self.key_id
    }

    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignerError> {
        Ok(self.key.sign(msg).to_bytes())
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    #[error(
        "key file {path} is readable or writable by group/other (mode {mode:o}); run `chmod 600 {path}` and check who could have read it"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("key file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("key file {path} is not an Ed25519 PKCS#8 PEM private key")]
    NotAKey { path: PathBuf },
}

/// An Ed25519 key in a PKCS#8 PEM file with mode 0600. Refuses to load a file that group or
/// other can access. Its Debug shows the path and key id only.
pub struct FileSigner {
    path: PathBuf,
    inner: KeySigner,
}

impl fmt::Debug for FileSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSigner")
            .field("path", &self.path)
            .field("key_id", &self.inner.key_id)
            .finish_non_exhaustive()
    }
}

impl FileSigner {
    /// Loads the key at `path`.
    pub fn load(path: &Path) -> Result<FileSigner, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyFileError::TooOpen {
                path: path.to_path_buf(),
                mode,
            });
        }
        let pem = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(io)?);
        let key = SigningKey::from_pkcs8_pem(&pem).map_err(|_| KeyFileError::NotAKey {
            path: path.to_path_buf(),
        })?;
        Ok(FileSigner {
            path: path.to_path_buf(),
            inner: KeySigner::from_key(key),
        })
    }

    /// Creates a new key at `path` (mode 0600, never overwriting an existing file).
    pub fn create(path: &Path) -> Result<FileSigner, KeyFileError> {
        let io = |source| KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        };
        let inner = KeySigner::generate().map_err(io)?;
        let pem = inner
            .key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| io(std::io::Error::other(e.to_string())))?;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(io)?;
        file.write_all(pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(FileSigner {
            path: path.to_path_buf(),
            inner,
        })
    }

    /// Loads the key at `path`, creating it first if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<FileSigner, KeyFileError> {
        if path.exists() {
            FileSigner::load(path)
        } else {
            FileSigner::create(path)
        }
    }

    pub fn fingerprint(&self) -> String {
        self.inner.fingerprint()
    }
}

impl Signer for FileSigner {
    fn key_id(&self) -> KeyId {
        self.inner.key_id()
    }

    fn public_key(&self) -> [u8; 32] {
        self.inner.public_key()
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignerError> {
        self.inner.sign(msg)
    }
}

/// The ledger's facts about one piece, plus the item. The ledger fills this inside the
/// reservation transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PieceFacts {
    pub meter_serial: MeterSerial,
    pub license_id: LicenseId,
    pub piece_serial: PieceSerial,
    /// Ascending register after this piece.
    pub ascending_after: Cents,
    /// Descending register after this piece.
    pub descending_after: Cents,
    /// Amount charged for this piece (postage: the vendor's quote; others: the face value).
    pub amount: Cents,
    pub date: Day,
    /// ZIP of the counter (origin of a mail piece).
    pub origin: Zip5,
    pub software_id: SoftwareId,
    pub item: Item,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    #[error("cannot build indicium: {0}")]
    Facts(#[from] FieldError),
    #[error(transparent)]
    Signer(#[from] SignerError),
}

/// Checks the facts agree with each other: the amount equals the item's face value (if it has
/// one), and the ascending register already includes the amount.
pub fn check_facts(facts: &PieceFacts) -> Result<(), FieldError> {
    if let Some(face) = facts.item.face_value()
        && face != facts.amount
    {
        return Err(FieldError::new(
            "amount",
            format!(
                "{} differs from the {}'s face value {face}",
                facts.amount,
                facts.item.kind()
            ),
        ));
    }
    if facts.ascending_after < facts.amount {
        return Err(FieldError::new(
            "ascending_after",
            format!(
                "{} is less than the amount {}; pass the register after this piece",
                facts.ascending_after, facts.amount
            ),
        ));
    }
    Ok(())
}

/// Builds the indicium body from `facts` and signs it with `signer`.
pub fn build_and_sign(facts: &PieceFacts, signer: &dyn Signer) -> Result<Indicium, BuildError> {
    check_facts(facts)?;
    let body = IndiciumBody {
        key_id: signer.key_id(),
        meter_serial: facts.meter_serial,
        license_id: facts.license_id,
        piece_serial: facts.piece_serial,
        ascending: facts.ascending_after,
        descending: facts.descending_after,
        amount: facts.amount,
        date: facts.date,
        origin: facts.origin,
        software_id: facts.software_id,
        subject: Subject::of(&facts.item),
    };
    let signature = signer.sign(&body.to_bytes())?;
    Ok(Indicium { body, signature })
}
