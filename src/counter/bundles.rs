//! The counter's bundles (issue 17 item 1), shell: after each sign-in ask the vendor which
//! signed bundles are current (`bundles`), take what is newer (`bundle_file`, one file per
//! stream, at most `download_bytes_per_s`, never while a job prints), check everything
//! ([`crate::bundle`]: signature, version, lengths, hashes, content) before it is used, and keep
//! the last good version of each name. A counter release is staged; [`start_release`] applies
//! it at the next start — the binary replaced atomically, the old one kept as
//! `frank.previous`, rolled back when the new one fails its `--version` check or exits
//! non-zero within [`RELEASE_TRIAL_MS`] of its first start ([`run_release_trial`]).
//!
//! Layout in the terminal's data directory:
//!
//! ```text
//! bundles/NAME/good              the version in use (written atomically, last)
//! bundles/NAME/VERSION/manifest.cbor, VERSION/files/FILE
//! bundles/NAME/.incoming/        a download in progress (removed when refused)
//! bundles/releases.json          releases applied and refused at start
//! ```
//!
//! What is on disk is checked again before use ([`Store::installed`] re-verifies the signature
//! with the pinned release key; [`Store::use_file`] the file's hash).
//!
//! Over 800 lines on purpose: one concern, the counter's end of docs/PROTOCOL.md §4.9 — sync,
//! download, check, keep the last good, stage and try a release. The pure checks already live in
//! `crate::bundle`; the rest is the order of file operations that makes a swap atomic, which
//! reads best in one place.

use super::client::{ClientError, REQUEST_TIMEOUT_MS, Session};
use crate::bundle::{self, BundleError, Kind, Offer, Verified, Version};
use crate::wire::{self, ErrorCode, Request, ResponseError};
use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Default download rate, bytes per second per counter: a 1 MB bundle in about a second, and
/// a release of tens of MB in under a minute, without crowding the keepalives.
pub const DOWNLOAD_BYTES_PER_S_DEFAULT: u64 = 1024 * 1024;
/// Default largest bundle a counter takes, in bytes (all its files).
pub const BUNDLE_BYTES_MAX_DEFAULT: u64 = bundle::BUNDLE_BYTES_MAX;
/// Longest wait for the next bytes of a file.
pub const READ_TIMEOUT_MS: u64 = 10_000;
/// Bytes read from a file's stream per step (the pacing and the print check run per step).
pub const READ_CHUNK_BYTES: usize = 64 * 1024;
/// Tries of one file (a print interrupting it, a `busy` vendor) before the bundle waits for
/// the next sign-in.
pub const FILE_ATTEMPTS_MAX: u32 = 5;
/// Pause between tries of a file, in ms.
pub const FILE_RETRY_PAUSE_MS: u64 = 1_000;
/// Longest wait for a print to finish before a download, in ms (then the sync gives up until
/// the next sign-in).
pub const PRINT_WAIT_MS_MAX: u64 = 600_000;
/// Largest header frame of a `bundle_file` answer.
const HEADER_BYTES_MAX: usize = 64 * 1024;
/// Longest a new release may take to answer `--version` at start.
pub const RELEASE_CHECK_MS_MAX: u64 = 10_000;
/// Refused releases remembered (so one is not applied again).
pub const RELEASES_REFUSED_MAX: usize = 32;
/// A newly applied release must not exit non-zero within this long of its first start, in
/// ms; if it does, the previous binary is put back ([`run_release_trial`]).
pub const RELEASE_TRIAL_MS: u64 = 5_000;
/// How often the release's first run is looked at (its exit, signals to pass on), in ms.
const RELEASE_TRIAL_POLL_MS: u64 = 20;

/// This process's bundle figures, for the counter's exit log line ([`exit_figures`]).
#[derive(Debug)]
pub struct BundleTotals {
    /// Bundle files downloaded whole (a file downloaded again after a print paused it counts
    /// again).
    pub files: AtomicU64,
    /// Their bytes.
    pub bytes: AtomicU64,
    /// Bundles taken (a release: staged).
    pub taken: AtomicU64,
    /// Bundles refused (bad signature, hash, older version, ...), nothing of them used.
    pub refused: AtomicU64,
}

/// This process's bundle totals.
pub static BUNDLE_TOTALS: BundleTotals = BundleTotals {
    files: AtomicU64::new(0),
    bytes: AtomicU64::new(0),
    taken: AtomicU64::new(0),
    refused: AtomicU64::new(0),
};

impl BundleTotals {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// (files, bytes, taken, refused) so far.
    pub fn snapshot(&self) -> (u64, u64, u64, u64) {
        (
            self.files.load(Ordering::Relaxed),
            self.bytes.load(Ordering::Relaxed),
            self.taken.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

/// The figures of this run the counter writes to its log as it exits: its links' (what the
/// vendor's metrics count for all its terminals, here for this one) and its bundles'
/// (downloads, bytes, refusals, the versions in use). `store`: the terminal's bundles, when a
/// release key is pinned. One log line, for the counter UI and the headless counter alike.
pub fn exit_figures(store: Option<&Store>) {
    let (k, lapses) = crate::link::driver::LINK_TOTALS.snapshot();
    let (files, bytes, taken, refused) = BUNDLE_TOTALS.snapshot();
    let in_use = store
        .map(|s| {
            s.all_installed()
                .iter()
                .map(|i| format!("{} {}", i.verified.name(), i.verified.version))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_else(|| "(no release key pinned)".into());
    tracing::info!(
        keepalives_sent = k.sent,
        keepalives_fresh = k.fresh,
        keepalives_late = k.late,
        keepalives_rejected = k.rejected(),
        keepalives_bad_mac = k.bad_mac,
        lapses,
        bundle_files_downloaded = files,
        bundle_bytes_downloaded = bytes,
        bundles_taken = taken,
        bundles_refused = refused,
        bundles_in_use = %crate::logtext::escaped(&in_use),
        "figures at exit"
    );
}

const BUNDLES_DIR: &str = "bundles";
const GOOD_FILE: &str = "good";
const MANIFEST_FILE: &str = "manifest.cbor";
const FILES_DIR: &str = "files";
const INCOMING_DIR: &str = ".incoming";
const RELEASES_FILE: &str = "releases.json";

/// This build's target as release manifests name it: `ARCH-OS` (`x86_64-linux`).
pub fn this_target() -> String {
    format!("{}-{}", std::env::consts::ARCH, std::env::consts::OS)
}

/// How a counter takes bundles (`release_pin` and friends in counter.toml).
#[derive(Debug, Clone)]
pub struct BundleConfig {
    /// The release key's fingerprint pinned next to the vendor key.
    pub release_key: VerifyingKey,
    /// The terminal's data directory (bundles live in its `bundles/`).
    pub data_dir: PathBuf,
    pub download_bytes_per_s: u64,
    pub bundle_bytes_max: u64,
}

impl BundleConfig {
    pub fn new(release_key: VerifyingKey, data_dir: PathBuf) -> BundleConfig {
        BundleConfig {
            release_key,
            data_dir,
            download_bytes_per_s: DOWNLOAD_BYTES_PER_S_DEFAULT,
            bundle_bytes_max: BUNDLE_BYTES_MAX_DEFAULT,
        }
    }

    pub fn store(&self) -> Store {
        Store::new(&self.data_dir, self.release_key)
    }
}

/// A bundle version in use, checked.
#[derive(Debug, Clone)]
pub struct Installed {
    pub verified: Verified,
    pub dir: PathBuf,
}

impl Installed {
    pub fn file_path(&self, name: &str) -> PathBuf {
        self.dir.join(FILES_DIR).join(name)
    }
}

/// The bundles on this terminal.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
    key: VerifyingKey,
}

impl Store {
    pub fn new(data_dir: &Path, key: VerifyingKey) -> Store {
        Store {
            root: data_dir.join(BUNDLES_DIR),
            key,
        }
    }

    /// The version of `name` in use, its manifest verified again with the pinned key; `None`
    /// when there is none (or what is there does not verify: it is not used).
    pub fn installed(&self, name: &str) -> Option<Installed> {
        let dir = self.root.join(name);
        let version = std::fs::read_to_string(dir.join(GOOD_FILE)).ok()?;
        // Only a version names a folder here (never a path).
        let version = Version::parse(version.trim())?;
        let vdir = dir.join(version.to_string());
        let bytes = std::fs::read(vdir.join(MANIFEST_FILE)).ok()?;
        let checked =
            bundle::SignedManifest::from_cbor(&bytes).and_then(|s| bundle::verify(&s, &self.key));
        match checked {
            Ok(verified) if verified.name() == name => Some(Installed {
                verified,
                dir: vdir,
            }),
            Ok(_) | Err(_) => {
                tracing::error!(name, "the bundle in use does not verify any more; not used");
                None
            }
        }
    }

    /// Every bundle in use.
    pub fn all_installed(&self) -> Vec<Installed> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut out: Vec<Installed> = rd
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().to_string();
                bundle::valid_name(&n, true)
                    .then(|| self.installed(&n))
                    .flatten()
            })
            .collect();
        out.sort_by(|a, b| a.verified.name().cmp(b.verified.name()));
        out
    }

    /// The installed bundle of `kind` (the first by name) — the counter's rates, say.
    pub fn of_kind(&self, kind: Kind) -> Option<Installed> {
        self.all_installed()
            .into_iter()
            .find(|i| i.verified.kind == kind)
    }

    /// A file of a bundle in use, its hash checked now: what the counter reads is what was
    /// signed.
    pub fn use_file(&self, installed: &Installed, name: &str) -> Result<Vec<u8>, BundleError> {
        let entry = installed
            .verified
            .manifest
            .files
            .iter()
            .find(|f| f.name == name)
            .ok_or_else(|| BundleError::Malformed(format!("no file {name} in the bundle")))?;
        let bytes =
            std::fs::read(installed.file_path(name)).map_err(|e| BundleError::BadContent {
                file: name.to_string(),
                reason: e.to_string(),
            })?;
        bundle::check_file(entry, &bytes)?;
        Ok(bytes)
    }

    /// Makes `verified` with these checked files the version in use: written under
    /// `.incoming`, content checked, moved into place, and only then `good` switched (a crash
    /// leaves the old version in use). Older versions but the previous one are removed.
    fn install(&self, verified: &Verified, files: &[(String, Vec<u8>)]) -> Result<(), String> {
        let refs: Vec<(&str, &[u8])> = files
            .iter()
            .map(|(n, b)| (n.as_str(), b.as_slice()))
            .collect();
        bundle::check_content(verified.kind, &refs).map_err(|e| e.to_string())?;
        let name_dir = self.root.join(verified.name());
        let io = |e: anyhow::Error| format!("{e:#}");
        crate::datafiles::private_dir(&self.root).map_err(io)?;
        crate::datafiles::private_dir(&name_dir).map_err(io)?;
        let incoming = name_dir.join(INCOMING_DIR);
        let _ = std::fs::remove_dir_all(&incoming);
        crate::datafiles::private_dir(&incoming).map_err(io)?;
        crate::datafiles::private_dir(&incoming.join(FILES_DIR)).map_err(io)?;
        let written = (|| -> anyhow::Result<()> {
            for (n, b) in files {
                crate::datafiles::write_private(&incoming.join(FILES_DIR).join(n), b)?;
            }
            crate::datafiles::write_private(
                &incoming.join(MANIFEST_FILE),
                &verified.signed.to_cbor(),
            )?;
            let final_dir = name_dir.join(verified.version.to_string());
            if final_dir.exists() {
                std::fs::remove_dir_all(&final_dir)?;
            }
            std::fs::rename(&incoming, &final_dir)?;
            let previous = std::fs::read_to_string(name_dir.join(GOOD_FILE)).ok();
            crate::datafiles::write_private(
                &name_dir.join(GOOD_FILE),
                verified.version.to_string().as_bytes(),
            )?;
            // Keep the version in use and the one before it.
            let keep = [
                Some(verified.version.to_string()),
                previous.map(|p| p.trim().to_string()),
            ];
            for e in std::fs::read_dir(&name_dir)?.filter_map(Result::ok) {
                let n = e.file_name().to_string_lossy().to_string();
                if e.file_type()?.is_dir() && !keep.contains(&Some(n)) {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
            Ok(())
        })();
        if let Err(e) = written {
            let _ = std::fs::remove_dir_all(&incoming);
            return Err(format!("{e:#}"));
        }
        Ok(())
    }
}

/// What one sync did, bundle by bundle.
#[derive(Debug, Clone, Default)]
pub struct SyncReport {
    /// Bundles taken: name and version, now in use (a release: staged for the next start).
    pub taken: Vec<(String, String)>,
    /// Bundles refused, with the reason; nothing of theirs was used.
    pub refused: Vec<(String, String)>,
    /// Offered bundles already in use.
    pub current: usize,
    /// File bytes downloaded.
    pub bytes: u64,
}

/// Asks the vendor which bundles are current and takes the newer ones. `printing` is true
/// while a job prints: no download starts or continues then.
pub async fn sync(
    session: &Session,
    cfg: &BundleConfig,
    printing: watch::Receiver<bool>,
) -> Result<SyncReport, ClientError> {
    let list: wire::BundleList = session
        .send(&Request::Bundles(wire::BundlesRequest {}))
        .await?;
    let store = cfg.store();
    let mut report = SyncReport::default();
    let counter = bundle::this_version();
    let target = this_target();
    for signed in list.manifests.iter().take(bundle::BUNDLES_OFFERED_MAX) {
        let verified = match bundle::verify(signed, &cfg.release_key) {
            Ok(v) => v,
            Err(e) => {
                tracing::warn!(reason = %e, "bundle refused");
                report.refused.push(("(unverified)".into(), e.to_string()));
                continue;
            }
        };
        let name = verified.name().to_string();
        let installed = store.installed(&name);
        if let Some(i) = installed
            .as_ref()
            .filter(|i| i.verified.kind != verified.kind)
        {
            let reason = format!(
                "{name} is a {} bundle here, not {}",
                i.verified.kind, verified.kind
            );
            tracing::warn!(bundle = %name, %reason, "bundle refused");
            report.refused.push((name, reason));
            continue;
        }
        match bundle::decide(
            &verified,
            installed.as_ref().map(|i| &i.verified.version),
            &counter,
            &target,
        ) {
            Offer::Have => report.current += 1,
            Offer::OtherTarget => {}
            Offer::Refuse(e) => {
                tracing::warn!(bundle = %name, version = %verified.version, reason = %e, "bundle refused");
                report.refused.push((name, e.to_string()));
            }
            Offer::Take => match take(session, cfg, &store, &verified, printing.clone()).await {
                Ok(bytes) => {
                    report.bytes += bytes;
                    tracing::info!(bundle = %name, version = %verified.version, kind = %verified.kind, "bundle taken");
                    report.taken.push((name, verified.version.to_string()));
                }
                Err(Taken::Refused(reason)) => {
                    tracing::warn!(bundle = %name, version = %verified.version, %reason, "bundle refused");
                    report.refused.push((name, reason));
                }
                Err(Taken::Link(e)) => return Err(e),
            },
        }
    }
    BundleTotals::add(&BUNDLE_TOTALS.taken, report.taken.len() as u64);
    BundleTotals::add(&BUNDLE_TOTALS.refused, report.refused.len() as u64);
    Ok(report)
}

enum Taken {
    /// The bundle is not used; the reason in words.
    Refused(String),
    /// The session went away: try at the next sign-in.
    Link(ClientError),
}

async fn take(
    session: &Session,
    cfg: &BundleConfig,
    store: &Store,
    verified: &Verified,
    printing: watch::Receiver<bool>,
) -> Result<u64, Taken> {
    if verified.total_bytes() > cfg.bundle_bytes_max {
        return Err(Taken::Refused(format!(
            "{} bytes is above this counter's bundle_bytes_max ({})",
            verified.total_bytes(),
            cfg.bundle_bytes_max
        )));
    }
    let mut files = Vec::new();
    let mut bytes = 0;
    for entry in &verified.manifest.files {
        // Length and hash were checked chunk by chunk as it arrived (`fetch_file`).
        let got = fetch_with_retries(session, cfg, verified, entry, printing.clone()).await?;
        bytes += got.len() as u64;
        files.push((entry.name.clone(), got));
    }
    let store = store.clone();
    let v = verified.clone();
    tokio::task::spawn_blocking(move || store.install(&v, &files))
        .await
        .map_err(|e| Taken::Refused(e.to_string()))?
        .map_err(Taken::Refused)?;
    Ok(bytes)
}

async fn fetch_with_retries(
    session: &Session,
    cfg: &BundleConfig,
    verified: &Verified,
    entry: &bundle::FileEntry,
    mut printing: watch::Receiver<bool>,
) -> Result<Vec<u8>, Taken> {
    let mut last = String::new();
    for _ in 0..FILE_ATTEMPTS_MAX {
        // Never while a job prints: wait for it to end.
        let idle = tokio::time::timeout(
            Duration::from_millis(PRINT_WAIT_MS_MAX),
            printing.wait_for(|p| !*p),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if !idle {
            return Err(Taken::Link(ClientError::Other(
                "a print kept the printer busy".into(),
            )));
        }
        match fetch_file(session, cfg, verified, entry, &printing).await {
            Ok(bytes) => return Ok(bytes),
            Err(Fetch::Printing) => last = "a print started".into(),
            Err(Fetch::Busy(ms)) => {
                last = "the vendor was busy".into();
                tokio::time::sleep(Duration::from_millis(ms.min(10_000))).await;
                continue;
            }
            Err(Fetch::Refused(r)) => return Err(Taken::Refused(r)),
            Err(Fetch::Link(e)) => return Err(Taken::Link(e)),
        }
        tokio::time::sleep(Duration::from_millis(FILE_RETRY_PAUSE_MS)).await;
    }
    Err(Taken::Link(ClientError::Other(format!(
        "file {} not downloaded after {FILE_ATTEMPTS_MAX} tries ({last})",
        entry.name
    ))))
}

enum Fetch {
    Printing,
    Busy(u64),
    Refused(String),
    Link(ClientError),
}

fn lost(e: impl std::fmt::Display) -> Fetch {
    Fetch::Link(ClientError::ConnectionLost(e.to_string()))
}

/// One `bundle_file` exchange: the header frame, exactly the manifest's length of bytes at
/// most `download_bytes_per_s`, then the end of the stream; the bytes are checked against the
/// manifest entry (length, SHA-256) chunk by chunk as they arrive.
async fn fetch_file(
    session: &Session,
    cfg: &BundleConfig,
    verified: &Verified,
    entry: &bundle::FileEntry,
    printing: &watch::Receiver<bool>,
) -> Result<Vec<u8>, Fetch> {
    let read_timeout = Duration::from_millis(READ_TIMEOUT_MS);
    let (mut send, mut recv) = session.conn.conn.open_bi().await.map_err(lost)?;
    let request = wire::encode_request(&Request::BundleFile(wire::BundleFileRequest {
        name: verified.name().to_string(),
        version: verified.version.to_string(),
        file: entry.name.clone(),
    }));
    send.write_all(&request).await.map_err(lost)?;
    let _ = send.finish();
    let mut prefix = [0u8; 4];
    tokio::time::timeout(read_timeout, recv.read_exact(&mut prefix))
        .await
        .map_err(|_| Fetch::Link(ClientError::Timeout))?
        .map_err(lost)?;
    if prefix[0] & 0xe0 == 0xa0 {
        // An unframed refusal (the request was not understood).
        let rest = tokio::time::timeout(read_timeout, recv.read_to_end(wire::RESPONSE_BYTES_MAX))
            .await
            .map_err(|_| Fetch::Link(ClientError::Timeout))?
            .map_err(lost)?;
        let whole = [prefix.as_slice(), rest.as_slice()].concat();
        let e = wire::decode_response::<wire::BundleFileHeader>(&whole)
            .err()
            .map_or("an unframed answer".to_string(), |e| e.to_string());
        return Err(Fetch::Refused(format!(
            "the vendor refused the download: {e}"
        )));
    }
    let len = u32::from_be_bytes(prefix) as usize;
    if len > HEADER_BYTES_MAX {
        return Err(Fetch::Refused(
            "the vendor's header frame is too long".into(),
        ));
    }
    let mut head = vec![0u8; len];
    tokio::time::timeout(read_timeout, recv.read_exact(&mut head))
        .await
        .map_err(|_| Fetch::Link(ClientError::Timeout))?
        .map_err(lost)?;
    let header: wire::BundleFileHeader = match wire::decode_response(&head) {
        Ok(h) => h,
        Err(ResponseError::Refused(b)) if b.code == ErrorCode::Busy => {
            return Err(Fetch::Busy(b.retry_after_ms.unwrap_or(1_000)));
        }
        Err(ResponseError::Refused(b)) => {
            return Err(Fetch::Refused(format!(
                "the vendor refused the download: {}",
                b.message
            )));
        }
        Err(e) => return Err(Fetch::Refused(e.to_string())),
    };
    if header.bytes != entry.bytes {
        return Err(Fetch::Refused(
            bundle::BundleError::WrongLength {
                file: entry.name.clone(),
                got: header.bytes,
                want: entry.bytes,
            }
            .to_string(),
        ));
    }
    let want = usize::try_from(entry.bytes).map_err(|_| Fetch::Refused("file too large".into()))?;
    let mut out = Vec::with_capacity(want);
    let mut check = bundle::FileCheck::new(entry);
    let started = Instant::now();
    let rate = cfg.download_bytes_per_s.max(1);
    while out.len() < want {
        if *printing.borrow() {
            let _ = recv.stop(quinn::VarInt::from_u32(0));
            return Err(Fetch::Printing);
        }
        let chunk = tokio::time::timeout(
            read_timeout,
            recv.read_chunk(READ_CHUNK_BYTES.min(want - out.len()), true),
        )
        .await
        .map_err(|_| Fetch::Link(ClientError::Timeout))?
        .map_err(lost)?;
        let Some(chunk) = chunk else {
            return Err(Fetch::Refused(
                bundle::BundleError::WrongLength {
                    file: entry.name.clone(),
                    got: out.len() as u64,
                    want: entry.bytes,
                }
                .to_string(),
            ));
        };
        out.extend_from_slice(&chunk.bytes);
        check.update(&chunk.bytes);
        // Pace: never ahead of `download_bytes_per_s`.
        let due = Duration::from_secs_f64(out.len() as f64 / rate as f64);
        let spent = started.elapsed();
        if due > spent {
            tokio::time::sleep(due - spent).await;
        }
    }
    // Nothing may follow the announced length.
    match tokio::time::timeout(read_timeout, recv.read_chunk(1, true)).await {
        Ok(Ok(None)) => {
            check.finish().map_err(|e| Fetch::Refused(e.to_string()))?;
            BundleTotals::add(&BUNDLE_TOTALS.files, 1);
            BundleTotals::add(&BUNDLE_TOTALS.bytes, out.len() as u64);
            Ok(out)
        }
        Ok(Ok(Some(_))) => Err(Fetch::Refused(format!(
            "file {}: more bytes than the manifest says",
            entry.name
        ))),
        Ok(Err(e)) => Err(lost(e)),
        Err(_) => Err(Fetch::Link(ClientError::Timeout)),
    }
}

/// Runs [`sync`] after a sign-in and logs what it did; a lost link is logged and left for
/// the next sign-in. For the counter UI's backend and the headless counter.
pub async fn sync_and_log(
    session: Session,
    cfg: BundleConfig,
    printing: watch::Receiver<bool>,
) -> Option<SyncReport> {
    match tokio::time::timeout(
        Duration::from_millis(REQUEST_TIMEOUT_MS.saturating_mul(60)),
        sync(&session, &cfg, printing),
    )
    .await
    {
        Ok(Ok(r)) => {
            tracing::info!(
                taken = r.taken.len(),
                refused = r.refused.len(),
                current = r.current,
                bytes = r.bytes,
                "bundles checked"
            );
            Some(r)
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "bundles not checked; again at the next sign-in");
            None
        }
        Err(_) => {
            tracing::warn!("bundles not checked in time; again at the next sign-in");
            None
        }
    }
}

/// What happened to releases at start (`bundles/releases.json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Releases {
    /// The versions applied, newest last (at most a few).
    applied: Vec<String>,
    /// Versions refused at start and why.
    refused: Vec<(String, String)>,
}

impl Releases {
    fn path(data_dir: &Path) -> PathBuf {
        data_dir.join(BUNDLES_DIR).join(RELEASES_FILE)
    }

    /// The file's state (empty when there is none or it does not read).
    fn load(data_dir: &Path) -> Releases {
        std::fs::read(Releases::path(data_dir))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes it, the oldest entries beyond [`RELEASES_REFUSED_MAX`] dropped.
    fn save(&mut self, data_dir: &Path) -> anyhow::Result<()> {
        let skip = self.refused.len().saturating_sub(RELEASES_REFUSED_MAX);
        self.refused.drain(..skip);
        let skip = self.applied.len().saturating_sub(RELEASES_REFUSED_MAX);
        self.applied.drain(..skip);
        crate::datafiles::write_private(&Releases::path(data_dir), &serde_json::to_vec(self)?)
    }

    /// `version` did not start: refused from now on, no longer counted as applied.
    fn refuse(&mut self, version: &str, reason: &str) {
        self.applied.retain(|v| v != version);
        self.refused.push((version.to_string(), reason.to_string()));
    }
}

/// What [`start_release`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseStart {
    /// No staged release to apply.
    Nothing,
    /// The binary at `exe` is now release `version` and answered its check: start it with
    /// the same arguments and watch its first run ([`run_release_trial`]).
    Applied { version: String, exe: PathBuf },
    /// Release `version` was applied, did not start, and the previous binary is back.
    RolledBack { version: String, reason: String },
    /// Release `version` is staged but was not applied (its files do not check).
    Refused { version: String, reason: String },
}

/// At the counter's start: applies a staged release of this target newer than the running
/// version and not applied or refused before. The binary at `exe` is replaced atomically
/// (the new file written next to it, the old one linked as `frank.previous`, then renamed
/// over), and the new binary is run with `--version`: it must exit 0 within
/// [`RELEASE_CHECK_MS_MAX`] and name the release's version, or the previous binary is renamed
/// back and the release is remembered as refused (not tried again). Its first real run is
/// then watched by [`run_release_trial`].
pub fn start_release(
    data_dir: &Path,
    key: VerifyingKey,
    exe: &Path,
) -> anyhow::Result<ReleaseStart> {
    let store = Store::new(data_dir, key);
    let target = this_target();
    let running = bundle::this_version();
    let mut state = Releases::load(data_dir);
    let Some(staged) = store
        .all_installed()
        .into_iter()
        .filter(|i| {
            i.verified.kind == Kind::Release
                && i.verified.manifest.target.as_deref() == Some(&target)
        })
        .max_by(|a, b| a.verified.version.cmp(&b.verified.version))
    else {
        return Ok(ReleaseStart::Nothing);
    };
    let version = staged.verified.version.to_string();
    let seen = state.applied.contains(&version) || state.refused.iter().any(|(v, _)| *v == version);
    if seen || staged.verified.version <= running {
        return Ok(ReleaseStart::Nothing);
    }
    let bytes = match store.use_file(&staged, bundle::RELEASE_FILE) {
        Ok(b) => b,
        Err(e) => {
            state.refuse(&version, &e.to_string());
            state.save(data_dir)?;
            return Ok(ReleaseStart::Refused {
                version,
                reason: e.to_string(),
            });
        }
    };
    let (dir, previous) = previous_of(exe)?;
    let file = exe.file_name().context("the running binary has no name")?;
    let new = dir.join(format!(".{}.new", file.to_string_lossy()));
    {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::remove_file(&new);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o755)
            .open(&new)
            .with_context(|| format!("writing {}", new.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
    }
    let _ = std::fs::remove_file(&previous);
    std::fs::hard_link(exe, &previous)
        .with_context(|| format!("keeping {} as {}", exe.display(), previous.display()))?;
    std::fs::rename(&new, exe).with_context(|| format!("replacing {}", exe.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    match check_release(exe, &version) {
        Ok(()) => {
            state.applied.push(version.clone());
            state.save(data_dir)?;
            Ok(ReleaseStart::Applied {
                version,
                exe: exe.to_path_buf(),
            })
        }
        Err(reason) => {
            std::fs::rename(&previous, exe)
                .with_context(|| format!("rolling back to {}", previous.display()))?;
            std::fs::File::open(dir)?.sync_all()?;
            state.refuse(&version, &reason);
            state.save(data_dir)?;
            Ok(ReleaseStart::RolledBack { version, reason })
        }
    }
}

/// How the first run of a newly applied release ended ([`run_release_trial`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrialEnd {
    /// It ran: it exited 0, or ran past [`RELEASE_TRIAL_MS`] and then exited, or was stopped by
    /// a signal passed on to it. The watching process exits with `code`.
    Exited { code: i32 },
    /// It exited non-zero (or died) within [`RELEASE_TRIAL_MS`] of its start by itself: the
    /// previous binary is back at `exe`, the version is remembered as refused (never applied
    /// again), and the watching process — the previous binary — starts afresh (exec) and goes on.
    RolledBack { reason: String },
}

/// The first start of a release [`start_release`] applied: the new binary at `exe` runs as a
/// child of this process (the previous binary, still in memory) with `args` and this
/// process's terminal and streams. Ctrl-C, SIGTERM, SIGHUP and SIGQUIT that reach this process
/// are passed on to it. If it exits non-zero within [`RELEASE_TRIAL_MS`] without having been
/// sent one of them, `frank.previous` is renamed back over `exe` and the release is refused
/// for good (`bundles/releases.json`); a release that ran longer is the counter from then on
/// (later starts run it directly). Call it before any thread or runtime starts: signal
/// handlers are installed for the process (and stay: after a rollback the caller starts the
/// previous binary afresh with exec, which restores the default handling).
pub fn run_release_trial(
    data_dir: &Path,
    exe: &Path,
    version: &str,
    args: &[std::ffi::OsString],
) -> anyhow::Result<TrialEnd> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP, SIGQUIT])
        .context("watching signals for the release's first run")?;
    let started = Instant::now();
    let mut child = std::process::Command::new(exe)
        .args(args)
        .spawn()
        .with_context(|| format!("starting release {version}"))?;
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).unwrap_or(i32::MAX));
    let mut passed_on = false;
    let status = loop {
        for sig in signals.pending() {
            if let Ok(s) = nix::sys::signal::Signal::try_from(sig) {
                let _ = nix::sys::signal::kill(pid, s);
                passed_on = true;
            }
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => std::thread::sleep(Duration::from_millis(RELEASE_TRIAL_POLL_MS)),
            Err(e) => return Err(e).context("waiting for the release's first run"),
        }
    };
    signals.handle().close();
    let in_trial = started.elapsed() < Duration::from_millis(RELEASE_TRIAL_MS);
    if status.success() || passed_on || !in_trial {
        use std::os::unix::process::ExitStatusExt;
        let code = status
            .code()
            .or_else(|| status.signal().map(|s| 128 + s))
            .unwrap_or(1);
        return Ok(TrialEnd::Exited { code });
    }
    let reason = match status.code() {
        Some(c) => format!("it exited with status {c} at start"),
        None => "it was killed by a signal at start".into(),
    };
    let (dir, previous) = previous_of(exe)?;
    std::fs::rename(&previous, exe)
        .with_context(|| format!("rolling back to {}", previous.display()))?;
    std::fs::File::open(dir)?.sync_all()?;
    let mut state = Releases::load(data_dir);
    state.refuse(version, &reason);
    state.save(data_dir)?;
    Ok(TrialEnd::RolledBack { reason })
}

/// The running binary's folder and where its previous version is kept (`NAME.previous`).
fn previous_of(exe: &Path) -> anyhow::Result<(&Path, PathBuf)> {
    let dir = exe.parent().context("the running binary has no folder")?;
    let file = exe.file_name().context("the running binary has no name")?;
    Ok((
        dir,
        dir.join(format!("{}.previous", file.to_string_lossy())),
    ))
}

/// Runs `exe --version`: exit 0 within [`RELEASE_CHECK_MS_MAX`], naming `version`.
fn check_release(exe: &Path, version: &str) -> Result<(), String> {
    let mut child = std::process::Command::new(exe)
        .arg("--version")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("it could not be started: {e}"))?;
    let deadline = Instant::now() + Duration::from_millis(RELEASE_CHECK_MS_MAX);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "it did not answer --version within {RELEASE_CHECK_MS_MAX} ms"
                ));
            }
            Err(e) => return Err(format!("waiting for it failed: {e}")),
        }
    };
    if !status.success() {
        return Err(match status.code() {
            Some(c) => format!("it exited with status {c} at start"),
            None => "it was killed by a signal at start".into(),
        });
    }
    let mut out = String::new();
    if let Some(mut o) = child.stdout.take() {
        use std::io::Read;
        let _ = o.by_ref().take(4096).read_to_string(&mut out);
    }
    if !out.split_whitespace().any(|w| w == version) {
        return Err(format!("it does not say it is version {version}"));
    }
    Ok(())
}

/// The counter's rate table: the rates bundle in use, its file checked, or `None`.
pub fn installed_rates(store: &Store) -> Option<(String, crate::indicium::rates::RateTable)> {
    let i = store.of_kind(Kind::Rates)?;
    let bytes = store.use_file(&i, bundle::RATES_FILE).ok()?;
    let table =
        crate::indicium::rates::RateTable::from_toml_str(std::str::from_utf8(&bytes).ok()?).ok()?;
    Some((
        format!("{} {}", i.verified.name(), i.verified.version),
        table,
    ))
}

/// A printer profile of a profiles bundle in use, by id: its file path (checked now).
pub fn installed_profile(store: &Store, id: &str) -> Option<PathBuf> {
    let file = format!("{id}.toml");
    store
        .all_installed()
        .into_iter()
        .filter(|i| i.verified.kind == Kind::Profiles)
        .find(|i| store.use_file(i, &file).is_ok())
        .map(|i| i.file_path(&file))
}

/// A theme bundle in use by name: its `theme.toml` text (checked now).
pub fn installed_theme(store: &Store, name: &str) -> Option<String> {
    let i = store
        .installed(name)
        .filter(|i| i.verified.kind == Kind::Theme)?;
    String::from_utf8(store.use_file(&i, bundle::THEME_FILE).ok()?).ok()
}

/// Prints the bundles in use, one line each (headless start).
pub fn describe_installed(store: &Store) -> Vec<String> {
    store
        .all_installed()
        .iter()
        .map(|i| {
            format!(
                "bundle {} {} ({}) in use",
                i.verified.name(),
                i.verified.version,
                i.verified.kind
            )
        })
        .collect()
}

/// The reason a release was refused at an earlier start, if it was.
pub fn refused_release(data_dir: &Path, version: &str) -> Option<String> {
    Releases::load(data_dir)
        .refused
        .into_iter()
        .find(|(v, _)| v == version)
        .map(|(_, r)| r)
}
