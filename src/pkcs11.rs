//! The vendor key in a PKCS#11 token: [`Pkcs11Signer`] behind the [`Signer`] seam, key
//! generation inside a token and the one-time import of a key file (docs/DEPLOY.md §The signing
//! key).
//!
//! The module (a shared library such as SoftHSM2's `libsofthsm2.so` or an HSM vendor's) is
//! loaded at run time and initialised once per process; it is never finalised while the process
//! runs, so two signers on one module (a test, `vendor init` then `serve`) never end each other's
//! sessions. The key is Ed25519 (`CKK_EC_EDWARDS`, curve OID 1.3.101.112) signed through
//! `CKM_EDDSA` (pure Ed25519, RFC 8032), so its signatures verify with the same public key the
//! counters pin, byte for byte as a key file's would.
//!
//! Opening a signer checks, in order, and names what is wrong: the module loads, a token with
//! the label is present, it offers `CKM_EDDSA` for signing, the PIN (read from its source, never
//! from the command line or the config) logs in, exactly one Ed25519 private key and its public
//! key carry the key label, they belong together (a probe signature verifies), and the public key
//! is the fingerprint the vendor's config pins. Signing takes one of a fixed pool of sessions
//! (`sessions_max`, at most what the token allows): each signature holds a session for its own
//! duration only, and callers (the ledger's signing threads, blocking tasks) wait for a free one.

use crate::identity;
use crate::indicium::layout::KeyId;
use crate::indicium::signer::{Signer, SignerError};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Limit, Slot};
use cryptoki::types::AuthPin;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

/// The key label `frank vendor init --pkcs11` and `frank vendor key import` use by default.
pub const KEY_LABEL_DEFAULT: &str = "frank-vendor";
/// Most sessions one signer keeps open (`sessions_max` in vendor.toml is 1..=this).
pub const SESSIONS_MAX_LIMIT: usize = 64;
/// `CKA_EC_PARAMS` of an Ed25519 key: the DER of the curve OID 1.3.101.112 (RFC 8410).
pub const ED25519_EC_PARAMS: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// Longest PIN file read (PKCS#11 PINs are short; a larger file is not a PIN).
const PIN_FILE_BYTES_MAX: u64 = 4096;
/// What the signer signs at start to prove the private key belongs to the public key (never a
/// valid indicium, transcript or TLS content: those start otherwise).
const PROBE_MESSAGE: &[u8] = b"frank/1 token-probe";

/// `[pkcs11]` in vendor.toml: where the vendor key lives when it is in a token. Exactly one
/// PIN source is set; the PIN itself is never in this file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pkcs11Config {
    /// The PKCS#11 module (shared library) path.
    pub module: PathBuf,
    /// The token's label.
    pub token: String,
    /// The key's label (`CKA_LABEL` of its private and public key objects).
    pub key: String,
    /// The vendor fingerprint counters pin (64 hex characters): the token's key must be it.
    pub fingerprint: String,
    /// The PIN is in this file (mode 0600 or stricter; a trailing newline is ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_file: Option<PathBuf>,
    /// The PIN is in this environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_env: Option<String>,
    /// The PIN is the systemd credential of this name (`$CREDENTIALS_DIRECTORY/NAME`, from
    /// `LoadCredential=` or `LoadCredentialEncrypted=`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_credential: Option<String>,
    /// Sessions kept open for signing (1..=64; default: the core count). Each is one signature
    /// in flight; the token's own session limit caps it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions_max: Option<usize>,
}

/// Where the token's PIN comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file readable by its owner only.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A systemd credential: `$CREDENTIALS_DIRECTORY/NAME`.
    Credential(String),
}

impl Pkcs11Config {
    /// The PIN source; exactly one of `pin_file`, `pin_env`, `pin_credential` must be set.
    pub fn pin_source(&self) -> Result<PinSource, TokenError> {
        match (&self.pin_file, &self.pin_env, &self.pin_credential) {
            (Some(f), None, None) => Ok(PinSource::File(f.clone())),
            (None, Some(v), None) => Ok(PinSource::Env(v.clone())),
            (None, None, Some(c)) => Ok(PinSource::Credential(c.clone())),
            (None, None, None) => Err(TokenError::Pin(
                "[pkcs11] names no PIN source; set one of pin_file, pin_env, pin_credential".into(),
            )),
            _ => Err(TokenError::Pin(
                "[pkcs11] names more than one PIN source; keep one of pin_file, pin_env, pin_credential".into(),
            )),
        }
    }

    /// Sets `source` as the only PIN source.
    pub fn set_pin_source(&mut self, source: PinSource) {
        self.pin_file = None;
        self.pin_env = None;
        self.pin_credential = None;
        match source {
            PinSource::File(f) => self.pin_file = Some(f),
            PinSource::Env(v) => self.pin_env = Some(v),
            PinSource::Credential(c) => self.pin_credential = Some(c),
        }
    }

    /// Checks what can be checked without the token.
    pub fn validate(&self) -> Result<(), TokenError> {
        self.pin_source()?;
        if self.token.is_empty() || self.key.is_empty() {
            return Err(TokenError::Config(
                "[pkcs11] token and key labels must not be empty".into(),
            ));
        }
        identity::parse_fingerprint(&self.fingerprint)
            .map_err(|e| TokenError::Config(format!("[pkcs11] fingerprint: {e}")))?;
        if let Some(n) = self.sessions_max
            && !(1..=SESSIONS_MAX_LIMIT).contains(&n)
        {
            return Err(TokenError::Config(format!(
                "[pkcs11] sessions_max must be 1..={SESSIONS_MAX_LIMIT}, got {n}"
            )));
        }
        Ok(())
    }
}

impl PinSource {
    /// Reads the PIN. A file must be readable by its owner only (like a key file).
    pub fn read(&self) -> Result<AuthPin, TokenError> {
        Ok(AuthPin::from(self.read_text()?.to_string()))
    }

    /// The PIN as text, its trailing newline dropped.
    fn read_text(&self) -> Result<zeroize::Zeroizing<String>, TokenError> {
        let text = zeroize::Zeroizing::new(match self {
            PinSource::Env(name) => std::env::var(name).map_err(|_| {
                TokenError::Pin(format!(
                    "the PIN's environment variable {name} is not set (or not UTF-8)"
                ))
            })?,
            PinSource::File(path) => read_pin_file(path)?,
            PinSource::Credential(name) => {
                if name.is_empty() || name.contains('/') || name == "." || name == ".." {
                    return Err(TokenError::Pin(format!(
                        "systemd credential name {name:?} is not a plain name"
                    )));
                }
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    TokenError::Pin(format!(
                        "the PIN is the systemd credential {name}, but CREDENTIALS_DIRECTORY is not set; run the vendor as a systemd service with LoadCredential={name}:…"
                    ))
                })?;
                read_pin_file(&Path::new(&dir).join(name))?
            }
        });
        let pin = text.strip_suffix('\n').unwrap_or(&text);
        let pin = pin.strip_suffix('\r').unwrap_or(pin);
        if pin.is_empty() {
            return Err(TokenError::Pin(format!("{self} holds an empty PIN")));
        }
        Ok(zeroize::Zeroizing::new(pin.to_string()))
    }
}

impl fmt::Display for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PinSource::File(p) => write!(f, "the PIN file {}", p.display()),
            PinSource::Env(v) => write!(f, "the environment variable {v}"),
            PinSource::Credential(c) => write!(f, "the systemd credential {c}"),
        }
    }
}

fn read_pin_file(path: &Path) -> Result<String, TokenError> {
    let io = |e: std::io::Error| TokenError::Pin(format!("PIN file {}: {e}", path.display()));
    let meta = std::fs::metadata(path).map_err(io)?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TokenError::Pin(format!(
            "PIN file {} has mode {mode:o}; it must be readable by its owner only (chmod 600)",
            path.display()
        )));
    }
    if meta.len() > PIN_FILE_BYTES_MAX {
        return Err(TokenError::Pin(format!(
            "PIN file {} is {} bytes; a PIN file holds the PIN only",
            path.display(),
            meta.len()
        )));
    }
    let bytes = zeroize::Zeroizing::new(std::fs::read(path).map_err(io)?);
    std::str::from_utf8(&bytes)
        .map(str::to_string)
        .map_err(|_| TokenError::Pin(format!("PIN file {} is not UTF-8", path.display())))
}

/// What is wrong with the token setup, named so an operator can fix it. Never holds the PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    #[error("PKCS#11 config: {0}")]
    Config(String),
    #[error("PKCS#11 module {path}: {detail}")]
    Module { path: PathBuf, detail: String },
    #[error("PKCS#11 token {label:?}: {detail}")]
    Token { label: String, detail: String },
    #[error("PKCS#11 token {token:?} does not offer Ed25519 signing: {detail}")]
    Mechanism { token: String, detail: String },
    #[error("PKCS#11 PIN: {0}")]
    Pin(String),
    #[error("PKCS#11 key {key:?} in token {token:?}: {detail}")]
    Key {
        token: String,
        key: String,
        detail: String,
    },
    #[error(
        "PKCS#11 key {key:?} in token {token:?} is {found}, not the pinned vendor key {pinned}; counters would refuse it (wrong token or key label?)"
    )]
    Mismatch {
        token: String,
        key: String,
        found: String,
        pinned: String,
    },
    #[error("PKCS#11 token {token:?}: {detail}")]
    Device { token: String, detail: String },
}

/// A PKCS#11 return value in a few words (cryptoki's own texts run to paragraphs).
fn rv_text(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(rv, function) => format!("{function:?} returned {rv:?}"),
        CkError::LibraryLoading(e) => format!("cannot load it: {e}"),
        other => other.to_string(),
    }
}

/// The process's loaded modules, each initialised once and never finalised (see the module
/// documentation); at most one entry per module path.
static MODULES: Mutex<Vec<(PathBuf, Pkcs11)>> = Mutex::new(Vec::new());

/// The module at `path`, loaded and initialised on first use.
pub fn module(path: &Path) -> Result<Pkcs11, TokenError> {
    let mut modules = MODULES.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, m)) = modules.iter().find(|(p, _)| p == path) {
        return Ok(m.clone());
    }
    let err = |detail: String| TokenError::Module {
        path: path.to_path_buf(),
        detail,
    };
    if !path.exists() {
        return Err(err(
            "no such file; install the token's PKCS#11 library or fix `module`".into(),
        ));
    }
    let m = Pkcs11::new(path).map_err(|e| err(rv_text(&e)))?;
    match m.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
        Err(e) => return Err(err(format!("initialising it: {}", rv_text(&e)))),
    }
    modules.push((path.to_path_buf(), m.clone()));
    Ok(m)
}

/// The slot holding the token labelled `label`.
fn find_token(m: &Pkcs11, module_path: &Path, label: &str) -> Result<Slot, TokenError> {
    let slots = m
        .get_slots_with_initialized_token()
        .map_err(|e| TokenError::Module {
            path: module_path.to_path_buf(),
            detail: format!("listing its tokens: {}", rv_text(&e)),
        })?;
    let mut labels = Vec::new();
    let mut found = Vec::new();
    for slot in slots {
        let Ok(info) = m.get_token_info(slot) else {
            continue;
        };
        let l = info.label().trim_end().to_string();
        if l == label {
            found.push(slot);
        }
        labels.push(l);
    }
    match found.as_slice() {
        [slot] => Ok(*slot),
        [] => Err(TokenError::Token {
            label: label.to_string(),
            detail: format!(
                "no token with this label in {} (tokens there: {})",
                module_path.display(),
                if labels.is_empty() {
                    "none".to_string()
                } else {
                    labels
                        .iter()
                        .map(|l| format!("{l:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ),
        }),
        more => Err(TokenError::Token {
            label: label.to_string(),
            detail: format!(
                "{} tokens carry this label; give the vendor's token a label of its own",
                more.len()
            ),
        }),
    }
}

/// Checks the token signs with `CKM_EDDSA` (asked directly: listing every mechanism makes
/// cryptoki log each one it does not know).
fn check_mechanism(m: &Pkcs11, slot: Slot, token: &str) -> Result<(), TokenError> {
    let err = |detail: String| TokenError::Mechanism {
        token: token.to_string(),
        detail,
    };
    match m.get_mechanism_info(slot, MechanismType::EDDSA) {
        Ok(info) if info.sign() => Ok(()),
        Ok(_) => Err(err("CKM_EDDSA is offered, but not for signing".into())),
        Err(CkError::Pkcs11(RvError::MechanismInvalid, _)) => Err(err(
            "CKM_EDDSA is not among its mechanisms (SoftHSM2 needs 2.6 built with EdDSA; an HSM may need a firmware or licence for it)".into(),
        )),
        Err(e) => Err(err(rv_text(&e))),
    }
}

/// Logs the token in as its user (the login covers every session of this process on it).
fn login(session: &Session, token: &str, pin: &AuthPin) -> Result<(), TokenError> {
    match session.login(UserType::User, Some(pin)) {
        Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(()),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => Err(TokenError::Pin(format!(
            "token {token:?} refused the PIN (wrong PIN); each wrong try counts towards the token locking it"
        ))),
        Err(CkError::Pkcs11(RvError::PinLocked, _)) => Err(TokenError::Pin(format!(
            "token {token:?} has locked its user PIN after too many wrong tries; its security officer must reset it"
        ))),
        Err(CkError::Pkcs11(RvError::PinExpired, _)) => Err(TokenError::Pin(format!(
            "token {token:?} says the PIN expired; set a new one with the token's tools"
        ))),
        Err(CkError::Pkcs11(RvError::UserPinNotInitialized, _)) => Err(TokenError::Pin(format!(
            "token {token:?} has no user PIN yet; initialise it with the token's tools"
        ))),
        Err(e) => Err(TokenError::Pin(format!(
            "logging in to token {token:?}: {}",
            rv_text(&e)
        ))),
    }
}

/// The raw public key in a `CKA_EC_POINT`: 32 bytes, or a DER OCTET STRING around them
/// (PKCS#11 3.0 asks for the DER form; some tokens give the raw bytes).
pub fn ec_point_key(point: &[u8]) -> Option<[u8; 32]> {
    match point {
        [0x04, 0x20, rest @ ..] if rest.len() == 32 => rest.try_into().ok(),
        raw if raw.len() == 32 => raw.try_into().ok(),
        _ => None,
    }
}

/// `CKA_EC_POINT` of `public`: the DER OCTET STRING form.
fn ec_point_of(public: &[u8; 32]) -> Vec<u8> {
    let mut v = vec![0x04, 0x20];
    v.extend_from_slice(public);
    v
}

/// The token objects (never session objects: a signer's copies) of `class` labelled `key`.
fn label_template(class: ObjectClass, key: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Class(class),
        Attribute::KeyType(KeyType::EC_EDWARDS),
        Attribute::Label(key.as_bytes().to_vec()),
    ]
}

/// The one object of `class` labelled `key`, if any; more than one is an error.
fn find_one(
    session: &Session,
    class: ObjectClass,
    token: &str,
    key: &str,
) -> Result<Option<ObjectHandle>, TokenError> {
    let err = |detail: String| TokenError::Key {
        token: token.to_string(),
        key: key.to_string(),
        detail,
    };
    let found = session
        .find_objects(&label_template(class, key))
        .map_err(|e| err(format!("searching: {}", rv_text(&e))))?;
    match found.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(*one)),
        more => Err(err(format!(
            "{} {class} objects carry this label; keep one",
            more.len()
        ))),
    }
}

/// The public key object's key.
fn read_public(
    session: &Session,
    handle: ObjectHandle,
    token: &str,
    key: &str,
) -> Result<[u8; 32], TokenError> {
    let err = |detail: String| TokenError::Key {
        token: token.to_string(),
        key: key.to_string(),
        detail,
    };
    let attrs = session
        .get_attributes(handle, &[AttributeType::EcPoint])
        .map_err(|e| err(format!("reading its public key: {}", rv_text(&e))))?;
    let point = attrs
        .iter()
        .find_map(|a| match a {
            Attribute::EcPoint(p) => Some(p.clone()),
            _ => None,
        })
        .ok_or_else(|| err("its public key object has no CKA_EC_POINT".into()))?;
    ec_point_key(&point).ok_or_else(|| {
        err(format!(
            "its public key is {} bytes, not an Ed25519 point",
            point.len()
        ))
    })
}

/// Which token and key, and how to log in: what every operation here needs.
#[derive(Debug, Clone)]
pub struct TokenKey {
    pub module: PathBuf,
    pub token: String,
    pub key: String,
    pub pin: PinSource,
}

impl TokenKey {
    pub fn of(config: &Pkcs11Config) -> Result<TokenKey, TokenError> {
        Ok(TokenKey {
            module: config.module.clone(),
            token: config.token.clone(),
            key: config.key.clone(),
            pin: config.pin_source()?,
        })
    }

    /// The module, the token's slot (checked for `CKM_EDDSA`) and a logged-in session.
    fn open(&self, read_write: bool) -> Result<(Pkcs11, Slot, Session), TokenError> {
        let m = module(&self.module)?;
        let slot = find_token(&m, &self.module, &self.token)?;
        check_mechanism(&m, slot, &self.token)?;
        let pin = self.pin.read()?;
        let session = self.session(&m, slot, read_write)?;
        login(&session, &self.token, &pin)?;
        Ok((m, slot, session))
    }

    fn session(&self, m: &Pkcs11, slot: Slot, read_write: bool) -> Result<Session, TokenError> {
        let s = if read_write {
            m.open_rw_session(slot)
        } else {
            m.open_ro_session(slot)
        };
        s.map_err(|e| TokenError::Device {
            token: self.token.clone(),
            detail: format!("opening a session: {}", rv_text(&e)),
        })
    }

    fn key_err(&self, detail: String) -> TokenError {
        TokenError::Key {
            token: self.token.clone(),
            key: self.key.clone(),
            detail,
        }
    }

    /// Refuses when the token already holds a key object with this label.
    fn refuse_existing(&self, session: &Session) -> Result<(), TokenError> {
        for class in [ObjectClass::PRIVATE_KEY, ObjectClass::PUBLIC_KEY] {
            if find_one(session, class, &self.token, &self.key)?.is_some() {
                return Err(self.key_err(
                    "the token already holds a key with this label; refusing to add another (choose another --key-label, or use the key that is there)".into(),
                ));
            }
        }
        Ok(())
    }

    fn common_private(&self, id: &[u8]) -> Vec<Attribute> {
        vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(self.key.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ]
    }

    fn common_public(&self, id: &[u8]) -> Vec<Attribute> {
        vec![
            Attribute::Token(true),
            Attribute::Private(false),
            Attribute::Verify(true),
            Attribute::EcParams(ED25519_EC_PARAMS.to_vec()),
            Attribute::Label(self.key.as_bytes().to_vec()),
            Attribute::Id(id.to_vec()),
        ]
    }

    /// Generates a new Ed25519 key pair inside the token (private key sensitive and not
    /// extractable); refuses when a key with the label exists. Returns the public key.
    pub fn generate(&self) -> Result<[u8; 32], TokenError> {
        let (_m, _slot, session) = self.open(true)?;
        self.refuse_existing(&session)?;
        let id = rand::random::<[u8; 8]>();
        let (public, _private) = session
            .generate_key_pair(
                &Mechanism::EccEdwardsKeyPairGen,
                &self.common_public(&id),
                &self.common_private(&id),
            )
            .map_err(|e| self.key_err(format!("generating it: {}", rv_text(&e))))?;
        read_public(&session, public, &self.token, &self.key)
    }

    /// Puts `key` into the token as a sensitive, non-extractable private key and its public
    /// key; refuses when a key with the label exists. Returns the public key.
    pub fn import(&self, key: &ed25519_dalek::SigningKey) -> Result<[u8; 32], TokenError> {
        let (_m, _slot, session) = self.open(true)?;
        self.refuse_existing(&session)?;
        let public = key.verifying_key().to_bytes();
        let id = rand::random::<[u8; 8]>();
        let mut private = self.common_private(&id);
        private.extend([
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::EcParams(ED25519_EC_PARAMS.to_vec()),
            // RFC 8032's 32-byte private key, as PKCS#11 3.0 defines CKA_VALUE for it.
            Attribute::Value(key.to_bytes().to_vec()),
        ]);
        let mut public_t = self.common_public(&id);
        public_t.extend([
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC_EDWARDS),
            Attribute::EcPoint(ec_point_of(&public)),
        ]);
        let private_h = session
            .create_object(&private)
            .map_err(|e| self.key_err(format!("importing the private key: {}", rv_text(&e))))?;
        if let Err(e) = session.create_object(&public_t) {
            // Leave nothing half-imported behind.
            let _ = session.destroy_object(private_h);
            return Err(self.key_err(format!("importing the public key: {}", rv_text(&e))));
        }
        Ok(public)
    }

    /// Takes the key objects under the label out of the token again, if their public key is
    /// `public` — only for a key this process just put there and nobody has pinned (a failed
    /// `init` or `import`). Best effort: what fails is logged.
    pub fn remove_new(&self, public: &[u8; 32]) {
        let removed = self.open(true).and_then(|(_m, _slot, session)| {
            let public_h = find_one(&session, ObjectClass::PUBLIC_KEY, &self.token, &self.key)?;
            if let Some(h) = public_h
                && read_public(&session, h, &self.token, &self.key)? != *public
            {
                return Err(self.key_err("holds another key now; left alone".into()));
            }
            let private_h = find_one(&session, ObjectClass::PRIVATE_KEY, &self.token, &self.key)?;
            for h in [private_h, public_h].into_iter().flatten() {
                session
                    .destroy_object(h)
                    .map_err(|e| self.key_err(format!("removing it: {}", rv_text(&e))))?;
            }
            Ok(())
        });
        if let Err(e) = removed {
            tracing::warn!(error = %e, "PKCS#11: the new key could not be taken out of the token again");
        }
    }

    /// The key's public key, read from the token (logs in: some tokens hide even public
    /// objects until then).
    pub fn public_key(&self) -> Result<[u8; 32], TokenError> {
        let (_m, _slot, session) = self.open(false)?;
        let handle = find_one(&session, ObjectClass::PUBLIC_KEY, &self.token, &self.key)?
            .ok_or_else(|| {
                self.key_err("the token holds no Ed25519 public key with this label".into())
            })?;
        read_public(&session, handle, &self.token, &self.key)
    }
}

// The signer on a token's sessions.
mod signer;
pub use signer::Pkcs11Signer;
#[cfg(test)]
use signer::sessions_for;

#[cfg(test)]
mod tests;
