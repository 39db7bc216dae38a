//! The vendor's bundles (issue 17 item 1): where published bundles live in the data directory,
//! `frank vendor release-key init` and `frank vendor bundle add|list|retire` (blocking, for the
//! CLI), and the front's side — the shelf of current signed manifests (reloaded when a bundle
//! is added or retired) and the `bundles` and `bundle_file` answers.
//!
//! Layout in the data directory:
//!
//! ```text
//! release-key.pub                    the release key's fingerprint (pinned at the first add)
//! bundles/generation                 rewritten by every add and retire (the front reloads)
//! bundles/NAME/VERSION/manifest.cbor the signed manifest as counters receive it
//! bundles/NAME/VERSION/files/FILE    the files it lists
//! bundles/NAME/VERSION/retired       present once retired: no longer offered
//! ```
//!
//! The vendor process needs only the release key's public half and the signed manifests: the
//! private key signs in `bundle add` (a key file that may live on an offline machine and be
//! brought for the add), never in `vendor serve`.

use super::DataDir;
use super::accept::{ConnState, require_session, write_within};
use crate::bundle::{self, Kind, Verified, Version};
use crate::wire::{self, ErrorBody, ErrorCode};
use anyhow::{Context, bail};
use ed25519_dalek::VerifyingKey;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::AsyncReadExt;

/// The release key's fingerprint in the vendor data directory.
pub const RELEASE_KEY_PUB_FILE: &str = "release-key.pub";
/// The bundles' folder in the vendor data directory.
pub const BUNDLES_DIR: &str = "bundles";
const GENERATION_FILE: &str = "generation";
const MANIFEST_FILE: &str = "manifest.cbor";
const FILES_DIR: &str = "files";
const RETIRED_FILE: &str = "retired";
/// How often the front looks whether bundles were added or retired.
pub const BUNDLE_RESCAN_MS: u64 = 1_000;
/// `bundle_file` answers being written at once, vendor-wide; beyond, `busy`.
pub const BUNDLE_DOWNLOADS_IN_FLIGHT_MAX: usize = 256;
/// Bytes of a file read and written per step of a `bundle_file` answer.
pub const BUNDLE_CHUNK_BYTES: usize = 64 * 1024;
/// All bundle bytes this front sends per second, every download together: a rollout to many
/// counters at once never takes the CPU and the uplink the keepalives need (the counters' own
/// `bundle_download_bytes_per_s` bounds each one).
pub const BUNDLE_SEND_BYTES_PER_S_MAX: u64 = 16 * 1024 * 1024;
/// Versions of one bundle name kept in the data directory (retired ones included).
pub const VERSIONS_PER_NAME_MAX: usize = 1_000;

fn bundles_dir(data: &DataDir) -> PathBuf {
    data.path.join(BUNDLES_DIR)
}

/// `frank vendor release-key init --out FILE`: a new release key file (0600; refuses to
/// overwrite) and its fingerprint, which counters pin as `release_pin`.
pub fn release_key_init(out: &Path) -> anyhow::Result<String> {
    let key = crate::identity::create_key_file(out)?;
    Ok(crate::identity::fingerprint(&key.verifying_key()))
}

/// The release key this vendor data directory pins, if a bundle was ever added.
pub fn pinned_release_key(data: &DataDir) -> anyhow::Result<Option<VerifyingKey>> {
    let path = data.path.join(RELEASE_KEY_PUB_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(
            crate::identity::parse_fingerprint(text.trim())
                .with_context(|| format!("{}", path.display()))?,
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// What `bundle add` publishes.
#[derive(Debug, Clone)]
pub struct AddBundle {
    pub name: String,
    pub kind: Kind,
    pub version: String,
    pub min_counter_version: String,
    /// Releases: the target (default: this machine's).
    pub target: Option<String>,
    pub files: Vec<PathBuf>,
    pub release_key: PathBuf,
}

/// `frank vendor bundle add`: reads the files, checks their content for the kind, signs the
/// manifest with the release key file, and publishes it as the name's current version. Refuses
/// (changing nothing) a version not above every published one of the name, another kind under
/// the name, or a release key other than the one the data directory pins.
pub fn add(data: &DataDir, a: &AddBundle) -> anyhow::Result<Verified> {
    let key = crate::identity::load_key_file(&a.release_key)?;
    let public = key.verifying_key();
    match pinned_release_key(data)? {
        Some(pinned) if pinned != public => bail!(
            "this vendor pins release key {}; {} holds {}",
            crate::identity::fingerprint(&pinned),
            a.release_key.display(),
            crate::identity::fingerprint(&public)
        ),
        _ => {}
    }
    let mut contents = Vec::new();
    let mut total = 0u64;
    for path in &a.files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .with_context(|| format!("{} has no file name", path.display()))?
            .to_string();
        let len = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .len();
        total = total.saturating_add(len);
        if total > bundle::BUNDLE_BYTES_MAX {
            bail!("the files are above {} bytes", bundle::BUNDLE_BYTES_MAX);
        }
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        contents.push((name, bytes));
    }
    let target = match a.kind {
        Kind::Release => Some(
            a.target
                .clone()
                .unwrap_or_else(crate::counter::bundles::this_target),
        ),
        _ => a.target.clone(),
    };
    let manifest = bundle::Manifest {
        name: a.name.clone(),
        kind: a.kind.as_str().to_string(),
        version: a.version.clone(),
        min_counter_version: a.min_counter_version.clone(),
        target,
        created_ms: crate::clock::unix_ms(),
        files: contents
            .iter()
            .map(|(n, b)| bundle::entry_for(n, b))
            .collect(),
    };
    let verified = bundle::sign(&manifest, &key)?;
    let refs: Vec<(&str, &[u8])> = contents
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    bundle::check_content(a.kind, &refs)?;
    let name_dir = bundles_dir(data).join(&a.name);
    for listed in list(data)?.iter().filter(|l| l.name == a.name) {
        if listed.kind != a.kind {
            bail!(
                "{} is a {} bundle; use another name for {}",
                a.name,
                listed.kind,
                a.kind
            );
        }
        if listed.version >= verified.version {
            bail!(
                "{} {} is published already; publish a version above {} (counters take only a newer one)",
                a.name,
                listed.version,
                listed.version
            );
        }
    }
    crate::datafiles::private_dir(&data.path)?;
    crate::datafiles::private_dir(&bundles_dir(data))?;
    crate::datafiles::private_dir(&name_dir)?;
    let final_dir = name_dir.join(verified.version.to_string());
    let staging = name_dir.join(format!(".adding-{}", verified.version));
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    crate::datafiles::private_dir(&staging)?;
    crate::datafiles::private_dir(&staging.join(FILES_DIR))?;
    for (n, b) in &contents {
        crate::datafiles::write_private(&staging.join(FILES_DIR).join(n), b)?;
    }
    crate::datafiles::write_private(&staging.join(MANIFEST_FILE), &verified.signed.to_cbor())?;
    if pinned_release_key(data)?.is_none() {
        crate::datafiles::write_private(
            &data.path.join(RELEASE_KEY_PUB_FILE),
            format!("{}\n", crate::identity::fingerprint(&public)).as_bytes(),
        )?;
    }
    std::fs::rename(&staging, &final_dir)
        .with_context(|| format!("publishing {}", final_dir.display()))?;
    bump_generation(data)?;
    Ok(verified)
}

fn bump_generation(data: &DataDir) -> anyhow::Result<()> {
    let path = bundles_dir(data).join(GENERATION_FILE);
    let now = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| t.trim().parse::<u64>().ok())
        .unwrap_or(0);
    crate::datafiles::write_private(&path, format!("{}\n", now + 1).as_bytes())
}

/// A published bundle version, as `bundle list` shows it.
#[derive(Debug, Clone)]
pub struct Listed {
    pub name: String,
    pub kind: Kind,
    pub version: Version,
    pub files: usize,
    pub bytes: u64,
    pub created_ms: u64,
    pub retired: bool,
    /// The version counters are offered now (the highest not retired of its name).
    pub current: bool,
    pub target: Option<String>,
}

/// Every published version, by name then version; each manifest is checked against the pinned
/// release key (a version that does not verify is an error naming it).
pub fn list(data: &DataDir) -> anyhow::Result<Vec<Listed>> {
    let dir = bundles_dir(data);
    let Some(key) = pinned_release_key(data)? else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    let names = match std::fs::read_dir(&dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for name in names {
        let name = name?;
        if !name.file_type()?.is_dir() {
            continue;
        }
        let name_text = name.file_name().to_string_lossy().to_string();
        if !bundle::valid_name(&name_text, true) {
            continue;
        }
        let mut versions = Vec::new();
        for v in std::fs::read_dir(name.path())?.take(VERSIONS_PER_NAME_MAX) {
            let v = v?;
            let vname = v.file_name().to_string_lossy().to_string();
            if vname.starts_with('.') || !v.file_type()?.is_dir() {
                continue;
            }
            let bytes = std::fs::read(v.path().join(MANIFEST_FILE))
                .with_context(|| format!("reading {}", v.path().display()))?;
            let signed = bundle::SignedManifest::from_cbor(&bytes)?;
            let verified =
                bundle::verify(&signed, &key).with_context(|| format!("{}", v.path().display()))?;
            versions.push(Listed {
                name: name_text.clone(),
                kind: verified.kind,
                version: verified.version.clone(),
                files: verified.manifest.files.len(),
                bytes: verified.total_bytes(),
                created_ms: verified.manifest.created_ms,
                retired: v.path().join(RETIRED_FILE).exists(),
                current: false,
                target: verified.manifest.target.clone(),
            });
        }
        versions.sort_by(|a, b| a.version.cmp(&b.version));
        if let Some(cur) = versions.iter_mut().rev().find(|l| !l.retired) {
            cur.current = true;
        }
        out.extend(versions);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.version.cmp(&b.version)));
    Ok(out)
}

/// `frank vendor bundle retire NAME [VERSION]`: stops offering that version (default: every
/// version of the name). Counters keep what they have; one never goes back to an older
/// version, so to replace a bad bundle publish a higher version.
pub fn retire(data: &DataDir, name: &str, version: Option<&str>) -> anyhow::Result<usize> {
    let wanted = match version {
        Some(v) => Some(Version::parse(v).context("VERSION must be 1 to 4 dot-separated numbers")?),
        None => None,
    };
    let mut retired = 0;
    for l in list(data)?.iter().filter(|l| l.name == name) {
        if wanted.as_ref().is_some_and(|w| *w != l.version) || l.retired {
            continue;
        }
        let path = bundles_dir(data)
            .join(name)
            .join(l.version.to_string())
            .join(RETIRED_FILE);
        crate::datafiles::write_private(
            &path,
            format!("{}\n", crate::clock::unix_ms()).as_bytes(),
        )?;
        retired += 1;
    }
    if retired == 0 {
        bail!(
            "no published, unretired bundle {name}{}",
            version.map(|v| format!(" {v}")).unwrap_or_default()
        );
    }
    bump_generation(data)?;
    Ok(retired)
}

/// One offered bundle: its verified manifest and where its files are.
#[derive(Debug, Clone)]
pub struct Offered {
    pub verified: Verified,
    pub files_dir: PathBuf,
}

/// What the front offers now: the current version of each name (at most
/// [`bundle::BUNDLES_OFFERED_MAX`]), each verified with the pinned release key and each file's
/// length and hash checked when the shelf was loaded.
#[derive(Debug, Clone, Default)]
pub struct Shelf {
    pub generation: Option<String>,
    pub offered: BTreeMap<String, Offered>,
}

impl Shelf {
    /// Loads the shelf (blocking). A version that fails its checks is left out and logged.
    pub fn load(data: &DataDir) -> Shelf {
        let generation = std::fs::read_to_string(bundles_dir(data).join(GENERATION_FILE)).ok();
        let mut shelf = Shelf {
            generation,
            offered: BTreeMap::new(),
        };
        let (key, listed) = match (pinned_release_key(data), list(data)) {
            (Ok(Some(k)), Ok(l)) => (k, l),
            (Ok(None), _) => return shelf,
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(error = %format!("{e:#}"), "bundles not offered: the bundle folder cannot be read");
                return shelf;
            }
        };
        for l in listed.iter().filter(|l| l.current) {
            if shelf.offered.len() >= bundle::BUNDLES_OFFERED_MAX {
                tracing::warn!(name = %l.name, "more bundle names than BUNDLES_OFFERED_MAX; not offered");
                continue;
            }
            let dir = bundles_dir(data).join(&l.name).join(l.version.to_string());
            match load_offered(&dir, &key) {
                Ok(o) => {
                    shelf.offered.insert(l.name.clone(), o);
                }
                Err(e) => {
                    tracing::error!(name = %l.name, version = %l.version, error = %format!("{e:#}"), "bundle not offered")
                }
            }
        }
        shelf
    }

    /// The rate table of the current `rates` bundle, if there is one.
    pub fn rates(&self) -> Option<(String, PathBuf)> {
        self.offered
            .values()
            .find(|o| o.verified.kind == Kind::Rates)
            .map(|o| {
                (
                    format!("{} {}", o.verified.name(), o.verified.version),
                    o.files_dir.join(bundle::RATES_FILE),
                )
            })
    }
}

fn load_offered(dir: &Path, key: &VerifyingKey) -> anyhow::Result<Offered> {
    let signed = bundle::SignedManifest::from_cbor(&std::fs::read(dir.join(MANIFEST_FILE))?)?;
    let verified = bundle::verify(&signed, key)?;
    let files_dir = dir.join(FILES_DIR);
    for f in &verified.manifest.files {
        let bytes = std::fs::read(files_dir.join(&f.name))
            .with_context(|| format!("reading {}", f.name))?;
        bundle::check_file(f, &bytes)?;
    }
    Ok(Offered {
        verified,
        files_dir,
    })
}

/// Bundle downloads since the front started (`--metrics`).
#[derive(Debug, Default)]
pub struct BundleCounters {
    /// `bundles` answers.
    pub lists: AtomicU64,
    /// `bundle_file` answers written whole.
    pub files_complete: AtomicU64,
    /// `bundle_file` refused (unknown bundle, busy, no session).
    pub files_refused: AtomicU64,
    /// `bundle_file` answers cut short (the counter went away or stopped reading).
    pub files_cut: AtomicU64,
    /// File bytes written.
    pub bytes_sent: AtomicU64,
}

/// The front's bundle desk: the shelf, the download slots, the figures.
#[derive(Debug)]
pub struct BundleDesk {
    shelf: Mutex<Arc<Shelf>>,
    pub(super) downloads: tokio::sync::Semaphore,
    /// When the vendor-wide send budget ([`BUNDLE_SEND_BYTES_PER_S_MAX`]) is next free.
    send_free_at: Mutex<tokio::time::Instant>,
    pub counters: BundleCounters,
}

impl BundleDesk {
    pub fn new(shelf: Shelf) -> BundleDesk {
        BundleDesk {
            shelf: Mutex::new(Arc::new(shelf)),
            downloads: tokio::sync::Semaphore::new(BUNDLE_DOWNLOADS_IN_FLIGHT_MAX),
            send_free_at: Mutex::new(tokio::time::Instant::now()),
            counters: BundleCounters::default(),
        }
    }

    pub fn shelf(&self) -> Arc<Shelf> {
        super::server::lock(&self.shelf).clone()
    }

    /// Reserves `bytes` of the vendor-wide send budget; returns when they may go (a virtual
    /// clock: each reservation moves the next free moment on by its share of a second).
    async fn pace(&self, bytes: usize) {
        let due = {
            let mut free = super::server::lock(&self.send_free_at);
            let now = tokio::time::Instant::now();
            let start = (*free).max(now);
            *free =
                start + Duration::from_secs_f64(bytes as f64 / BUNDLE_SEND_BYTES_PER_S_MAX as f64);
            start
        };
        tokio::time::sleep_until(due).await;
    }

    pub fn downloads_in_flight(&self) -> usize {
        BUNDLE_DOWNLOADS_IN_FLIGHT_MAX - self.downloads.available_permits()
    }
}

/// Reloads the shelf every [`BUNDLE_RESCAN_MS`] when `bundles/generation` changed, until the
/// desk is dropped.
pub(super) fn spawn_rescan(data: DataDir, desk: std::sync::Weak<BundleDesk>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(BUNDLE_RESCAN_MS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(d) = desk.upgrade() else { break };
            let seen = d.shelf().generation.clone();
            let data = data.clone();
            let loaded = tokio::task::spawn_blocking(move || {
                let now = std::fs::read_to_string(bundles_dir(&data).join(GENERATION_FILE)).ok();
                (now != seen).then(|| Shelf::load(&data))
            })
            .await;
            if let Ok(Some(shelf)) = loaded {
                tracing::info!(offered = shelf.offered.len(), "bundles reloaded");
                *super::server::lock(&d.shelf) = Arc::new(shelf);
            }
        }
    });
}

/// `bundles`: the current signed manifests.
pub(super) fn list_answer(state: &ConnState) -> Result<Vec<u8>, ErrorBody> {
    require_session(state)?;
    let desk = &state.shared.bundles;
    desk.counters.lists.fetch_add(1, Ordering::Relaxed);
    let shelf = desk.shelf();
    Ok(wire::encode_ok(&wire::BundleList {
        manifests: shelf
            .offered
            .values()
            .map(|o| o.verified.signed.clone())
            .collect(),
        vendor_time_ms: crate::clock::unix_ms(),
    }))
}

/// How a `bundle_file` answer ended (the request metrics count it under its code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FileServed {
    /// The whole file went out.
    Complete,
    /// Refused with this code (`not_logged_in`, `unknown_bundle`, `busy`): one framed error.
    Refused(ErrorCode),
    /// Cut short: the counter went away or stopped reading (a print started, say).
    Cut,
}

impl FileServed {
    /// The code the request metrics count it under (`None`: `ok`).
    pub(super) fn code(self) -> Option<ErrorCode> {
        match self {
            FileServed::Refused(c) => Some(c),
            FileServed::Complete | FileServed::Cut => None,
        }
    }
}

/// `bundle_file`: a header frame, then the file's bytes, then the end of the stream; a
/// refusal is one framed error.
pub(super) async fn serve_file(
    state: &ConnState,
    r: wire::BundleFileRequest,
    mut send: quinn::SendStream,
) -> FileServed {
    let desk = &state.shared.bundles;
    let timeout = Duration::from_millis(state.shared.config.response_write_timeout_ms);
    let refuse = |e: ErrorBody| {
        desk.counters.files_refused.fetch_add(1, Ordering::Relaxed);
        wire::monitor::encode_frame(&wire::encode_error(&e))
    };
    let found = require_session(state).and_then(|_| {
        let shelf = desk.shelf();
        let offered = shelf
            .offered
            .get(&r.name)
            .filter(|o| Version::parse(&r.version).is_some_and(|v| v == o.verified.version));
        let entry = offered.and_then(|o| {
            o.verified
                .manifest
                .files
                .iter()
                .find(|f| f.name == r.file)
                .map(|f| (o.files_dir.join(&f.name), f.bytes))
        });
        entry.ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::UnknownBundle,
                "the vendor does not offer this bundle version or file now; ask `bundles` again",
            )
        })
    });
    let (path, bytes) = match found {
        Ok(f) => f,
        Err(e) => {
            let code = e.code;
            if write_within(&mut send, &refuse(e), timeout).await.is_ok() {
                let _ = send.finish();
            }
            return FileServed::Refused(code);
        }
    };
    let Ok(_permit) = desk.downloads.try_acquire() else {
        let e = ErrorBody::new(
            ErrorCode::Busy,
            "too many bundle downloads at once; try again",
        )
        .with_limit(BUNDLE_DOWNLOADS_IN_FLIGHT_MAX as u64)
        .with_retry_after_ms(1_000);
        if write_within(&mut send, &refuse(e), timeout).await.is_ok() {
            let _ = send.finish();
        }
        return FileServed::Refused(ErrorCode::Busy);
    };
    let header = wire::monitor::encode_frame(&wire::encode_ok(&wire::BundleFileHeader { bytes }));
    let sent = async {
        let mut file = tokio::fs::File::open(&path).await.map_err(|_| ())?;
        write_within(&mut send, &header, timeout)
            .await
            .map_err(|_| ())?;
        let mut left = bytes;
        let mut buf = vec![0u8; BUNDLE_CHUNK_BYTES];
        while left > 0 {
            let want = usize::try_from(left)
                .unwrap_or(usize::MAX)
                .min(BUNDLE_CHUNK_BYTES);
            let n = file.read(&mut buf[..want]).await.map_err(|_| ())?;
            if n == 0 {
                // The file shrank under the vendor: cut the stream; the counter's length
                // check refuses what it got.
                return Err(());
            }
            desk.pace(n).await;
            write_within(&mut send, &buf[..n], timeout)
                .await
                .map_err(|_| ())?;
            desk.counters
                .bytes_sent
                .fetch_add(n as u64, Ordering::Relaxed);
            left -= n as u64;
        }
        let _ = send.finish();
        Ok::<(), ()>(())
    }
    .await;
    match sent {
        Ok(()) => {
            desk.counters.files_complete.fetch_add(1, Ordering::Relaxed);
            FileServed::Complete
        }
        Err(()) => {
            let _ = send.reset(quinn::VarInt::from_u32(0));
            desk.counters.files_cut.fetch_add(1, Ordering::Relaxed);
            FileServed::Cut
        }
    }
}
