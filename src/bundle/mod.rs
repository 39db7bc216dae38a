//! Signed bundles (issue 17 item 1), the **core**: no I/O. A bundle is a set of files the vendor
//! hands to its counters — printer profiles, a rate table, a theme, or a counter release (the
//! `frank` binary for one target) — described by a [`Manifest`] (name, kind, version, the
//! size and SHA-256 of every file, the lowest counter version that may use it) and signed with
//! the vendor's **release key** (Ed25519, a key of its own, never the indicium key).
//!
//! What is signed is the manifest's CBOR bytes exactly as they travel (`SignedManifest`): the
//! signature is Ed25519(release key, [`MANIFEST_SIGNING_TAG`] ‖ manifest bytes), so no
//! canonical re-encoding is needed to check it. A counter checks, in this order, before it
//! uses anything: the signature with the pinned release key ([`verify`]), the manifest's
//! fields, the version against what it has ([`decide`]: an older or equal version is never
//! taken — a replayed manifest changes nothing), then every file's length and SHA-256
//! ([`check_file`]) and finally that the files mean something of their kind
//! ([`check_content`]). docs/PROTOCOL.md §4.9 is the specification.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::cmp::Ordering;
use std::fmt;

/// Domain separation in front of the manifest bytes the release key signs.
pub const MANIFEST_SIGNING_TAG: &[u8] = b"frank/1 bundle-manifest";
/// Largest manifest (its CBOR bytes): 64 files take about 8 KiB, and 64 manifests of this
/// size fit in one response (1 MiB).
pub const MANIFEST_BYTES_MAX: usize = 12 * 1024;
/// Most files in one bundle.
pub const BUNDLE_FILES_MAX: usize = 64;
/// Longest bundle name and file name, in bytes.
pub const NAME_BYTES_MAX: usize = 64;
/// Largest file of a bundle and largest bundle (all its files), in bytes: a release build of
/// `frank` fits with room to spare.
pub const BUNDLE_BYTES_MAX: u64 = 128 * 1024 * 1024;
/// Most bundles a vendor offers at once (the `bundles` answer).
pub const BUNDLES_OFFERED_MAX: usize = 64;
/// Most dotted parts of a version (`1.2.3.4`).
pub const VERSION_PARTS_MAX: usize = 4;
/// The one file of a counter release.
pub const RELEASE_FILE: &str = "frank";
/// The one file of a rates bundle.
pub const RATES_FILE: &str = "rates.toml";
/// The one file of a theme bundle.
pub const THEME_FILE: &str = "theme.toml";

/// What a bundle holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// Printer profiles: `ID.toml` files (docs/PRINTING.md).
    Profiles,
    /// A rate table: `rates.toml` (the counter shows prices from it; the vendor still quotes).
    Rates,
    /// A colour theme: `theme.toml` (roles → styles, as the built-in themes).
    Theme,
    /// A counter release: the `frank` binary for `target`, applied at the counter's next start.
    Release,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Profiles, Kind::Rates, Kind::Theme, Kind::Release];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Profiles => "profiles",
            Kind::Rates => "rates",
            Kind::Theme => "theme",
            Kind::Release => "release",
        }
    }

    pub fn parse(text: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == text)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// This build's version (the crate's), as manifests compare it.
pub fn this_version() -> Version {
    // The crate version is digits and dots (Cargo.toml); a pre-release suffix is cut off.
    let base = env!("CARGO_PKG_VERSION")
        .split(['-', '+'])
        .next()
        .unwrap_or("0");
    Version::parse(base).unwrap_or(Version(vec![0]))
}

/// A version: 1 to [`VERSION_PARTS_MAX`] dot-separated decimal numbers, compared part by
/// part, missing parts counting as 0 (`1.2` = `1.2.0` < `1.10`).
#[derive(Debug, Clone)]
pub struct Version(Vec<u32>);

impl Version {
    pub fn parse(text: &str) -> Option<Version> {
        let parts: Vec<&str> = text.split('.').collect();
        if parts.is_empty() || parts.len() > VERSION_PARTS_MAX {
            return None;
        }
        let mut out = Vec::with_capacity(parts.len());
        for p in parts {
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            out.push(p.parse().ok()?);
        }
        Some(Version(out))
    }

    fn part(&self, i: usize) -> u32 {
        self.0.get(i).copied().unwrap_or(0)
    }
}

impl PartialEq for Version {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Version {}
impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        (0..VERSION_PARTS_MAX)
            .map(|i| self.part(i).cmp(&other.part(i)))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// One file of a bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    /// A plain file name: `[A-Za-z0-9._-]`, not starting with a dot, 1..=64 bytes.
    pub name: String,
    /// Its length in bytes.
    pub bytes: u64,
    /// SHA-256 of its bytes (32 bytes).
    #[serde(with = "serde_bytes")]
    pub sha256: Vec<u8>,
}

/// What the release key signs (its CBOR bytes). docs/PROTOCOL.md §4.9 lists the fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// `[a-z0-9._-]`, not starting with a dot, 1..=64 bytes; one kind per name.
    pub name: String,
    /// `profiles`, `rates`, `theme` or `release`.
    pub kind: String,
    /// The bundle's version ([`Version`]); a counter takes only a higher one than it has.
    pub version: String,
    /// The lowest counter version that may use it.
    pub min_counter_version: String,
    /// Releases only: the target the binary runs on (`x86_64-linux`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// When it was signed (ms since the epoch), for people.
    pub created_ms: u64,
    pub files: Vec<FileEntry>,
}

/// A manifest as it travels and is stored: its CBOR bytes and the release key's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedManifest {
    #[serde(with = "serde_bytes")]
    pub manifest: Vec<u8>,
    /// Ed25519(release key, [`MANIFEST_SIGNING_TAG`] ‖ manifest), 64 bytes.
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

impl SignedManifest {
    pub fn to_cbor(&self) -> Vec<u8> {
        cbor(self)
    }

    pub fn from_cbor(bytes: &[u8]) -> Result<SignedManifest, BundleError> {
        if bytes.len() > MANIFEST_BYTES_MAX + 256 {
            return Err(BundleError::Malformed(format!(
                "a signed manifest of {} bytes; the limit is {MANIFEST_BYTES_MAX}",
                bytes.len()
            )));
        }
        ciborium::from_reader(bytes).map_err(|_| {
            BundleError::Malformed("the signed manifest is not CBOR of its form".into())
        })
    }
}

fn cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing CBOR into a Vec cannot fail for these plain structs (string keys only).
    ciborium::into_writer(value, &mut out).expect("CBOR of a plain struct");
    out
}

/// Why a bundle was refused. Each says what is wrong in words a person reads; none changes
/// anything (the caller keeps what it had).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BundleError {
    #[error("the manifest is not signed by the pinned release key")]
    BadSignature,
    #[error("the manifest is malformed: {0}")]
    Malformed(String),
    #[error(
        "version {offered} of {name} is not newer than the version {installed} in use (a replayed or older manifest)"
    )]
    NotNewer {
        name: String,
        offered: String,
        installed: String,
    },
    #[error("{name} {version} needs counter version {needs} or later; this counter is {have}")]
    NeedsNewerCounter {
        name: String,
        version: String,
        needs: String,
        have: String,
    },
    #[error("file {file}: {got} bytes, the manifest says {want}")]
    WrongLength { file: String, got: u64, want: u64 },
    #[error("file {file}: its SHA-256 is not the manifest's (the file was changed)")]
    WrongHash { file: String },
    #[error("file {file} cannot be used: {reason}")]
    BadContent { file: String, reason: String },
}

impl BundleError {
    /// A short fixed name for logs and metrics (`bad_signature`, `not_newer`, …).
    pub fn code(&self) -> &'static str {
        match self {
            BundleError::BadSignature => "bad_signature",
            BundleError::Malformed(_) => "malformed",
            BundleError::NotNewer { .. } => "not_newer",
            BundleError::NeedsNewerCounter { .. } => "needs_newer_counter",
            BundleError::WrongLength { .. } => "wrong_length",
            BundleError::WrongHash { .. } => "wrong_hash",
            BundleError::BadContent { .. } => "bad_content",
        }
    }
}

/// A manifest whose signature verified and whose fields are valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub manifest: Manifest,
    pub kind: Kind,
    pub version: Version,
    pub min_counter_version: Version,
    /// The bytes and signature as received (stored as they are).
    pub signed: SignedManifest,
}

impl Verified {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    /// All files' bytes together.
    pub fn total_bytes(&self) -> u64 {
        self.manifest.files.iter().map(|f| f.bytes).sum()
    }
}

/// Signs `manifest` with the release key (after checking its fields as [`verify`] would).
pub fn sign(manifest: &Manifest, key: &SigningKey) -> Result<Verified, BundleError> {
    let bytes = cbor(manifest);
    let signature = key.sign(&signing_input(&bytes));
    let signed = SignedManifest {
        manifest: bytes,
        signature: signature.to_bytes().to_vec(),
    };
    verify(&signed, &key.verifying_key())
}

fn signing_input(manifest: &[u8]) -> Vec<u8> {
    let mut input = Vec::with_capacity(MANIFEST_SIGNING_TAG.len() + manifest.len());
    input.extend_from_slice(MANIFEST_SIGNING_TAG);
    input.extend_from_slice(manifest);
    input
}

/// Checks the signature with the pinned release key, then decodes and validates the fields.
/// Nothing of an unverified manifest is decoded.
pub fn verify(
    signed: &SignedManifest,
    release_key: &VerifyingKey,
) -> Result<Verified, BundleError> {
    if signed.manifest.len() > MANIFEST_BYTES_MAX {
        return Err(BundleError::Malformed(format!(
            "{} bytes; the limit is {MANIFEST_BYTES_MAX}",
            signed.manifest.len()
        )));
    }
    let signature = <[u8; 64]>::try_from(signed.signature.as_slice())
        .map(|b| Signature::from_bytes(&b))
        .map_err(|_| BundleError::BadSignature)?;
    release_key
        .verify_strict(&signing_input(&signed.manifest), &signature)
        .map_err(|_| BundleError::BadSignature)?;
    let manifest: Manifest = ciborium::from_reader(signed.manifest.as_slice())
        .map_err(|_| BundleError::Malformed("the signed bytes are not a manifest map".into()))?;
    let (kind, version, min_counter_version) = validate(&manifest)?;
    Ok(Verified {
        manifest,
        kind,
        version,
        min_counter_version,
        signed: signed.clone(),
    })
}

/// A bundle or file name: `[A-Za-z0-9._-]` (bundle names lowercase), 1..=64 bytes, not
/// starting with a dot, so it is one path component everywhere.
pub fn valid_name(text: &str, lowercase: bool) -> bool {
    !text.is_empty()
        && text.len() <= NAME_BYTES_MAX
        && !text.starts_with('.')
        && text.bytes().all(|b| {
            b.is_ascii_digit()
                || b.is_ascii_lowercase()
                || (!lowercase && b.is_ascii_uppercase())
                || matches!(b, b'.' | b'_' | b'-')
        })
}

fn validate(m: &Manifest) -> Result<(Kind, Version, Version), BundleError> {
    let bad = |s: String| Err(BundleError::Malformed(s));
    if !valid_name(&m.name, true) {
        return bad("name must be 1..=64 bytes of a-z 0-9 . _ - not starting with a dot".into());
    }
    let Some(kind) = Kind::parse(&m.kind) else {
        return bad("kind must be profiles, rates, theme or release".into());
    };
    let Some(version) = Version::parse(&m.version) else {
        return bad("version must be 1 to 4 dot-separated numbers".into());
    };
    let Some(min) = Version::parse(&m.min_counter_version) else {
        return bad("min_counter_version must be 1 to 4 dot-separated numbers".into());
    };
    if m.files.is_empty() || m.files.len() > BUNDLE_FILES_MAX {
        return bad(format!(
            "a bundle has 1..={BUNDLE_FILES_MAX} files, this one {}",
            m.files.len()
        ));
    }
    let mut total = 0u64;
    let mut names = std::collections::BTreeSet::new();
    for f in &m.files {
        if !valid_name(&f.name, false) {
            return bad(
                "a file name must be 1..=64 bytes of A-Z a-z 0-9 . _ - not starting with a dot"
                    .into(),
            );
        }
        if !names.insert(f.name.as_str()) {
            return bad(format!("file {} is listed twice", f.name));
        }
        if f.sha256.len() != 32 {
            return bad(format!("file {}: sha256 must be 32 bytes", f.name));
        }
        total = total.saturating_add(f.bytes);
    }
    if total > BUNDLE_BYTES_MAX {
        return bad(format!(
            "{total} bytes of files; the limit is {BUNDLE_BYTES_MAX}"
        ));
    }
    let only = |file: &str| m.files.len() == 1 && m.files[0].name == file;
    match kind {
        Kind::Release => {
            if !only(RELEASE_FILE) {
                return bad(format!("a release holds exactly one file, {RELEASE_FILE}"));
            }
            match &m.target {
                Some(t) if valid_name(t, true) => {}
                _ => return bad("a release names its target (like x86_64-linux)".into()),
            }
        }
        Kind::Rates | Kind::Theme | Kind::Profiles => {
            if m.target.is_some() {
                return bad("only a release names a target".into());
            }
            if kind == Kind::Rates && !only(RATES_FILE) {
                return bad(format!(
                    "a rates bundle holds exactly one file, {RATES_FILE}"
                ));
            }
            if kind == Kind::Theme && !only(THEME_FILE) {
                return bad(format!(
                    "a theme bundle holds exactly one file, {THEME_FILE}"
                ));
            }
            if kind == Kind::Profiles && m.files.iter().any(|f| !f.name.ends_with(".toml")) {
                return bad("a profiles bundle holds ID.toml files only".into());
            }
        }
    }
    Ok((kind, version, min))
}

/// What a counter does with a verified manifest the vendor offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Offer {
    /// Newer than what it uses, and for it: download, check, apply.
    Take,
    /// The version it already uses.
    Have,
    /// A release for another target: not for this counter.
    OtherTarget,
    /// Refused, nothing changes (older than the version in use, or needs a newer counter).
    Refuse(BundleError),
}

/// The one decision whether to take an offered bundle: `installed` is the version in use of
/// the same name (None: none yet), `counter` this counter's version, `target` its target.
pub fn decide(
    offered: &Verified,
    installed: Option<&Version>,
    counter: &Version,
    target: &str,
) -> Offer {
    if offered.kind == Kind::Release && offered.manifest.target.as_deref() != Some(target) {
        return Offer::OtherTarget;
    }
    if let Some(have) = installed {
        match offered.version.cmp(have) {
            Ordering::Equal => return Offer::Have,
            Ordering::Less => {
                return Offer::Refuse(BundleError::NotNewer {
                    name: offered.name().to_string(),
                    offered: offered.version.to_string(),
                    installed: have.to_string(),
                });
            }
            Ordering::Greater => {}
        }
    }
    if offered.min_counter_version > *counter {
        return Offer::Refuse(BundleError::NeedsNewerCounter {
            name: offered.name().to_string(),
            version: offered.version.to_string(),
            needs: offered.min_counter_version.to_string(),
            have: counter.to_string(),
        });
    }
    Offer::Take
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// A file's length and SHA-256 against its manifest entry.
pub fn check_file(entry: &FileEntry, bytes: &[u8]) -> Result<(), BundleError> {
    let mut check = FileCheck::new(entry);
    check.update(bytes);
    check.finish()
}

/// [`check_file`] fed as the bytes arrive: a counter hashes each chunk of a download as it
/// reads it, so a large file (a release binary) is never hashed in one go after the last
/// chunk, and a rollout's counters do not all hash at the same moment either.
#[derive(Debug, Clone)]
pub struct FileCheck<'a> {
    entry: &'a FileEntry,
    bytes: u64,
    hasher: Sha256,
}

impl<'a> FileCheck<'a> {
    pub fn new(entry: &'a FileEntry) -> Self {
        FileCheck {
            entry,
            bytes: 0,
            hasher: Sha256::new(),
        }
    }

    /// The next bytes of the file.
    pub fn update(&mut self, chunk: &[u8]) {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        self.hasher.update(chunk);
    }

    /// The file is whole: its length, then its hash, against the entry.
    pub fn finish(self) -> Result<(), BundleError> {
        if self.bytes != self.entry.bytes {
            return Err(BundleError::WrongLength {
                file: self.entry.name.clone(),
                got: self.bytes,
                want: self.entry.bytes,
            });
        }
        // Not secret: a plain compare is fine.
        if self.hasher.finalize().as_slice() != self.entry.sha256.as_slice() {
            return Err(BundleError::WrongHash {
                file: self.entry.name.clone(),
            });
        }
        Ok(())
    }
}

/// The entry a file gets in a manifest.
pub fn entry_for(name: &str, bytes: &[u8]) -> FileEntry {
    FileEntry {
        name: name.to_string(),
        bytes: bytes.len() as u64,
        sha256: sha256(bytes).to_vec(),
    }
}

/// Whether the files mean something of their kind: every profile parses and can print value,
/// the rate table validates, the theme's keys are roles with styles. A release's binary is
/// checked by running it at the counter's start (docs/PROTOCOL.md §4.9.3), not here.
/// `files` are (name, bytes) in the manifest's order.
pub fn check_content(kind: Kind, files: &[(&str, &[u8])]) -> Result<(), BundleError> {
    let text = |name: &str, bytes: &[u8]| -> Result<String, BundleError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| BundleError::BadContent {
            file: name.to_string(),
            reason: "not UTF-8 text".into(),
        })
    };
    let bad = |name: &str, reason: String| BundleError::BadContent {
        file: name.to_string(),
        reason,
    };
    match kind {
        Kind::Release => Ok(()),
        Kind::Rates => {
            for (name, bytes) in files {
                crate::indicium::rates::RateTable::from_toml_str(&text(name, bytes)?)
                    .map_err(|e| bad(name, e.to_string()))?;
            }
            Ok(())
        }
        Kind::Theme => {
            for (name, bytes) in files {
                crate::ui::theme::Theme::with_overrides("dark", Some(&text(name, bytes)?), false)
                    .map_err(|e| bad(name, e))?;
            }
            Ok(())
        }
        Kind::Profiles => {
            let texts: Vec<(String, String)> = files
                .iter()
                .map(|(n, b)| Ok((n.trim_end_matches(".toml").to_string(), text(n, b)?)))
                .collect::<Result<_, BundleError>>()?;
            for (id, src) in &texts {
                if !crate::printer::profile::is_profile_id(id) {
                    return Err(bad(
                        &format!("{id}.toml"),
                        "a profile file is named ID.toml, ID of letters, digits, - and _".into(),
                    ));
                }
                let lookup = |parent: &str| {
                    texts
                        .iter()
                        .find(|(i, _)| i == parent)
                        .map(|(_, s)| s.clone())
                        .or_else(|| {
                            crate::printer::profile::shipped_source(parent).map(str::to_string)
                        })
                };
                let raw = crate::printer::profile::RawProfile::parse(id, src, &lookup)
                    .map_err(|e| bad(&format!("{id}.toml"), e.to_string()))?;
                crate::printer::profile::Profile::from_raw(id, &raw).map_err(|errs| {
                    let words: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
                    bad(&format!("{id}.toml"), words.join("; "))
                })?;
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests;
