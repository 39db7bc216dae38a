//! The vendor server: identity, data directory, directory database, and the QUIC front.

pub mod admission;
pub mod bundles;
pub mod directory;
#[cfg(feature = "postgres")]
pub mod directory_pg;
pub mod directory_sqlite;
pub mod fronts;
pub mod key_cli;
pub mod lockout;
pub mod login_gate;
pub mod metrics;
pub mod money;
pub mod monitor;
pub mod password_pool;
pub mod ratelimit;
pub mod server;
pub mod sessions;
pub mod signing;

// The QUIC front beside `server`: connections, sign-in, money and piece requests, scans.
mod accept;
mod cluster;
mod handlers;
mod scan;
mod signin;

// `vendor.toml`: the settings, their bounds and defaults.
mod config;
use config::load_config;
pub use config::*;

use crate::identity;
use crate::indicium::signer::{KeySigner, Signer};
use crate::link::guard::GuardConfig;
use crate::pkcs11::{Pkcs11Config, Pkcs11Signer, TokenKey};
use anyhow::{Context, bail};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const KEY_FILE: &str = "vendor-key.pem";
/// The vendor's public key as the raw public key it presents (an Ed25519 SubjectPublicKeyInfo,
/// DER): what `serve` loads and counters pin.
pub const PUBLIC_KEY_FILE: &str = "vendor-public.der";
/// The self-signed certificate of data directories from before raw public keys; `load`
/// replaces it by [`PUBLIC_KEY_FILE`].
pub const LEGACY_CERT_FILE: &str = "vendor-cert.der";
pub const DB_FILE: &str = "vendor.db";
pub const CONFIG_FILE: &str = "vendor.toml";
/// The ledger's SQLite database (the default; `--database postgres://…` replaces it).
pub const LEDGER_FILE: &str = "ledger.db";

/// The files of a vendor data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub path: PathBuf,
}

/// Everything `vendor serve` loads from the data directory. The signing key itself is opened
/// apart ([`DataDir::open_signer`]): it may be in a token that needs its PIN.
pub struct VendorFiles {
    /// The vendor key counters pin: the key in [`PUBLIC_KEY_FILE`].
    pub public_key: VerifyingKey,
    pub config: VendorConfig,
    pub db_path: PathBuf,
    /// The data directory's SQLite ledger.
    pub ledger_path: PathBuf,
}

impl DataDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        DataDir { path: path.into() }
    }

    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// `frank vendor init`: creates the directory (0700), key, public key file, databases and
    /// config (each 0600). Refuses to touch a directory that already holds a vendor key.
    /// Returns the fingerprint to pin.
    pub fn init(&self) -> anyhow::Result<String> {
        self.init_with(None)
    }

    /// [`Self::init`] with the directory and ledger in `database` when it is a PostgreSQL URL
    /// (migrated there; no `vendor.db` or `ledger.db` in the data directory).
    pub fn init_with(&self, database: Option<&str>) -> anyhow::Result<String> {
        self.refuse_existing()?;
        crate::datafiles::private_dir(&self.path)?;
        let key = identity::create_key_file(&self.file(KEY_FILE))?;
        self.init_rest(database, Arc::new(KeySigner::from_key(key)), None)
    }

    /// `frank vendor init --pkcs11`: [`Self::init_with`], the key generated inside the token
    /// (sensitive, not extractable; a key already there under the label is refused) and
    /// `[pkcs11]` written to vendor.toml; no key file.
    pub fn init_in_token(
        &self,
        database: Option<&str>,
        token: &TokenKey,
        sessions_max: Option<usize>,
    ) -> anyhow::Result<String> {
        self.refuse_existing()?;
        crate::datafiles::private_dir(&self.path)?;
        let public = token.generate()?;
        let config = pkcs11_config(token, &public, sessions_max);
        let done = Pkcs11Signer::open(&config)
            .map_err(anyhow::Error::from)
            .and_then(|signer| self.init_rest(database, Arc::new(signer), Some(config)));
        // A key nobody has pinned yet: a failed init takes it out of the token again, so it
        // can be run again under the same label.
        if done.is_err() {
            token.remove_new(&public);
        }
        done
    }

    fn refuse_existing(&self) -> anyhow::Result<()> {
        if [KEY_FILE, PUBLIC_KEY_FILE, LEGACY_CERT_FILE]
            .iter()
            .any(|f| self.file(f).exists())
        {
            bail!(
                "{} already holds a vendor key; refusing to overwrite it",
                self.path.display()
            );
        }
        Ok(())
    }

    /// The public key file, the databases and the config, for the key `signer` holds.
    fn init_rest(
        &self,
        database: Option<&str>,
        signer: Arc<dyn Signer>,
        pkcs11: Option<Pkcs11Config>,
    ) -> anyhow::Result<String> {
        crate::datafiles::write_private(
            &self.file(PUBLIC_KEY_FILE),
            &crate::tls::ed25519_spki(&signer.public_key()),
        )?;
        match database.filter(|d| crate::ledger::is_postgres(d)) {
            // Migrates the one schema the directory and the ledger share.
            Some(url) => drop(directory::Directory::open_postgres(url)?),
            None => self.create_sqlite_databases(database)?,
        }
        let config = toml::to_string_pretty(&VendorConfig {
            pkcs11,
            ..VendorConfig::default()
        })?;
        crate::datafiles::write_private(
            &self.file(CONFIG_FILE),
            format!(
                "# Frank vendor configuration. Units are in the names.\n\
                 # password_hashes_in_flight_max = N: argon2 checks at once (default: the core\n\
                 # count); the vendor's password-checking memory is at most N x 19 MiB.\n{config}"
            )
            .as_bytes(),
        )?;
        Ok(hex::encode(signer.public_key()))
    }

    /// `frank vendor key import`: moves `vendor-key.pem` into the token once — imported as a
    /// sensitive, non-extractable key, checked by signing with it, `[pkcs11]` appended to
    /// vendor.toml (the rest of the file untouched). With `shred` the key file is then
    /// overwritten and deleted; without, it stays and the vendor warns at every start.
    /// Returns the fingerprint (unchanged: the same key).
    pub fn import_key(
        &self,
        token: &TokenKey,
        sessions_max: Option<usize>,
        shred: bool,
    ) -> anyhow::Result<String> {
        let files = self.load()?;
        if let Some(p) = &files.config.pkcs11 {
            bail!(
                "the vendor key is already in token {:?} (key {:?}); it is imported once",
                p.token,
                p.key
            );
        }
        let key_path = self.file(KEY_FILE);
        if !key_path.exists() {
            bail!("{} holds no {KEY_FILE} to import", self.path.display());
        }
        let key = identity::load_key_file(&key_path)?;
        if key.verifying_key() != files.public_key {
            bail!(
                "{KEY_FILE} is not the key in {PUBLIC_KEY_FILE}; the data directory is inconsistent"
            );
        }
        let public = token.import(&key)?;
        drop(key);
        // The key file stays until vendor.toml names the token: a failure on the way takes the
        // copy out of the token again, so the import can be run again.
        let done = self.name_token(token, &public, sessions_max);
        if done.is_err() {
            token.remove_new(&public);
        }
        done?;
        if shred {
            crate::datafiles::shred(&key_path)?;
        }
        Ok(hex::encode(public))
    }

    /// Opens the imported key as `serve` will (the token signs with it, it is the pinned key)
    /// and appends `[pkcs11]` to vendor.toml.
    fn name_token(
        &self,
        token: &TokenKey,
        public: &[u8; 32],
        sessions_max: Option<usize>,
    ) -> anyhow::Result<()> {
        let config = pkcs11_config(token, public, sessions_max);
        drop(Pkcs11Signer::open(&config)?);
        let path = self.file(CONFIG_FILE);
        let mut text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        #[derive(Serialize)]
        struct Table<'a> {
            pkcs11: &'a Pkcs11Config,
        }
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("\n# The vendor key is in this PKCS#11 token (`frank vendor key import`).\n");
        text.push_str(&toml::to_string(&Table { pkcs11: &config })?);
        toml::from_str::<VendorConfig>(&text)
            .with_context(|| format!("{} with [pkcs11] added", path.display()))?;
        crate::datafiles::write_private(&path, text.as_bytes())
    }

    /// The embedded default: the directory in `vendor.db`, the ledger in `ledger.db` (or the
    /// SQLite path given).
    fn create_sqlite_databases(&self, ledger: Option<&str>) -> anyhow::Result<()> {
        directory::Directory::open(&self.file(DB_FILE))?;
        let ledger = ledger.map_or_else(|| self.file(LEDGER_FILE), PathBuf::from);
        crate::datafiles::private_file(&ledger)?;
        // Create and migrate the ledger database; its writer thread ends when it is dropped.
        crate::ledger::sqlite::SqliteStore::open(
            &ledger,
            crate::ledger::sqlite::SqliteConfig::default(),
            std::sync::Arc::new(crate::ledger::cli::NoSigning),
            crate::ledger::LedgerLimits::default(),
        )
        .map_err(|e| anyhow::anyhow!("creating the ledger {}: {e}", ledger.display()))?;
        Ok(())
    }

    pub fn load(&self) -> anyhow::Result<VendorFiles> {
        let public = self.file(PUBLIC_KEY_FILE);
        if !public.exists() && !self.file(LEGACY_CERT_FILE).exists() {
            bail!(
                "{} is not a vendor data directory (no {PUBLIC_KEY_FILE}); run `frank vendor init --data {}` first",
                self.path.display(),
                self.path.display()
            );
        }
        self.make_private()?;
        if !public.exists() {
            self.upgrade_certificate()?;
        }
        let spki = std::fs::read(&public).with_context(|| format!("reading {PUBLIC_KEY_FILE}"))?;
        let presented = crate::tls::ed25519_key_of(&spki).map_err(anyhow::Error::msg)?;
        let public_key = VerifyingKey::from_bytes(&presented)
            .map_err(|_| anyhow::anyhow!("{PUBLIC_KEY_FILE} carries no valid Ed25519 key"))?;
        let config = load_config(&self.file(CONFIG_FILE))?;
        Ok(VendorFiles {
            public_key,
            config,
            db_path: self.file(DB_FILE),
            ledger_path: self.file(LEDGER_FILE),
        })
    }

    /// A data directory from before raw public keys: its certificate's key becomes
    /// [`PUBLIC_KEY_FILE`] (written first, then the certificate removed — a crash between the
    /// two leaves both, and the next start uses the new file).
    fn upgrade_certificate(&self) -> anyhow::Result<()> {
        let cert = self.file(LEGACY_CERT_FILE);
        let der = std::fs::read(&cert).with_context(|| format!("reading {LEGACY_CERT_FILE}"))?;
        let key = crate::tls::ed25519_key_in_certificate(&der).map_err(anyhow::Error::msg)?;
        crate::datafiles::write_private(
            &self.file(PUBLIC_KEY_FILE),
            &crate::tls::ed25519_spki(&key),
        )?;
        std::fs::remove_file(&cert).with_context(|| format!("removing {LEGACY_CERT_FILE}"))?;
        tracing::info!(
            "{LEGACY_CERT_FILE} replaced by {PUBLIC_KEY_FILE}: the vendor now presents its key as a raw public key (RFC 7250)"
        );
        Ok(())
    }

    /// The vendor's signing key: the token `[pkcs11]` names (PIN read from its source), or
    /// `vendor-key.pem`. Either must be the key in [`PUBLIC_KEY_FILE`] (what counters pin). Blocks
    /// (a token's login): call it off async runtime threads.
    pub fn open_signer(&self, files: &VendorFiles) -> anyhow::Result<Arc<dyn Signer>> {
        let signer: Arc<dyn Signer> = match &files.config.pkcs11 {
            Some(p) => {
                if identity::parse_fingerprint(&p.fingerprint)? != files.public_key {
                    bail!(
                        "[pkcs11] fingerprint in {CONFIG_FILE} is not the key in {PUBLIC_KEY_FILE}; the data directory is inconsistent"
                    );
                }
                if self.file(KEY_FILE).exists() {
                    tracing::warn!(
                        "{KEY_FILE} is still in the data directory though the vendor key is in token {:?}; remove it (`frank vendor key import --shred` does) once the token is backed up",
                        p.token
                    );
                }
                Arc::new(Pkcs11Signer::open(p)?)
            }
            None => Arc::new(KeySigner::from_key(identity::load_key_file(
                &self.file(KEY_FILE),
            )?)),
        };
        if signer.public_key() != files.public_key.to_bytes() {
            bail!(
                "{PUBLIC_KEY_FILE} does not carry the vendor's signing key; the data directory is inconsistent"
            );
        }
        Ok(signer)
    }

    /// The fingerprint counters pin, read from where the key is (the token, or the key file —
    /// rewritten in the standard form if it is an older one), checked against [`PUBLIC_KEY_FILE`].
    pub fn fingerprint(&self) -> anyhow::Result<String> {
        let files = self.load()?;
        let cert = identity::fingerprint(&files.public_key);
        let (key, place) = match &files.config.pkcs11 {
            Some(p) => (
                hex::encode(TokenKey::of(p)?.public_key()?),
                format!("token {:?} (key {:?})", p.token, p.key),
            ),
            None => (
                identity::fingerprint(
                    &identity::load_key_file(&self.file(KEY_FILE))?.verifying_key(),
                ),
                KEY_FILE.to_string(),
            ),
        };
        if key != cert {
            bail!("{place} holds key {key}, but {PUBLIC_KEY_FILE} carries {cert}");
        }
        Ok(key)
    }
}

/// `[pkcs11]` for `token`'s key `public`.
fn pkcs11_config(token: &TokenKey, public: &[u8; 32], sessions_max: Option<usize>) -> Pkcs11Config {
    let mut c = Pkcs11Config {
        module: token.module.clone(),
        token: token.token.clone(),
        key: token.key.clone(),
        fingerprint: hex::encode(public),
        pin_file: None,
        pin_env: None,
        pin_credential: None,
        sessions_max,
    };
    c.set_pin_source(token.pin.clone());
    c
}

impl DataDir {
    /// Makes the directory 0700 and its files 0600 (a directory made before that rule had
    /// 0755 and 0644).
    fn make_private(&self) -> anyhow::Result<()> {
        crate::datafiles::private_dir(&self.path)?;
        let mut files = vec![
            self.file(KEY_FILE),
            self.file(PUBLIC_KEY_FILE),
            self.file(LEGACY_CERT_FILE),
            self.file(CONFIG_FILE),
            self.file(crate::datafiles::LOCK_FILE),
        ];
        for db in [DB_FILE, LEDGER_FILE] {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                files.push(self.file(&format!("{db}{suffix}")));
            }
        }
        crate::datafiles::tighten_files(files.iter().map(PathBuf::as_path))
    }

    /// Locks the directory for one `frank vendor serve`: a second one on the same directory
    /// is refused with the first one's pid. Held until the returned lock is dropped.
    pub fn lock(&self) -> anyhow::Result<crate::datafiles::DirLock> {
        crate::datafiles::DirLock::acquire(&self.path, "`frank vendor serve`")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_then_load() {
        let t = tempfile::tempdir().unwrap();
        let d = DataDir::new(t.path().join("v"));
        let fp = d.init().unwrap();
        let files = d.load().unwrap();
        assert_eq!(identity::fingerprint(&files.public_key), fp);
        assert_eq!(d.fingerprint().unwrap(), fp);
        assert_eq!(hex::encode(d.open_signer(&files).unwrap().public_key()), fp);
        assert!(
            files.ledger_path.exists(),
            "init creates the ledger database"
        );
        assert_eq!(files.config, VendorConfig::default());
        assert!(d.init().unwrap_err().to_string().contains("refusing"));
    }

    /// Issue 13: the directory is 0700 and every file in it 0600, also for a directory
    /// created before (0755 / 0644), which loading tightens.
    #[test]
    fn data_directory_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let check = |d: &DataDir| {
            assert_eq!(mode(&d.path), 0o700);
            for entry in std::fs::read_dir(&d.path).unwrap() {
                let p = entry.unwrap().path();
                // SQLite removes its -wal and -shm files when the last connection closes,
                // which may happen between the listing and this look.
                match std::fs::metadata(&p) {
                    Ok(m) => assert_eq!(m.permissions().mode() & 0o777, 0o600, "{}", p.display()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => panic!("{}: {e}", p.display()),
                }
            }
        };
        let t = tempfile::tempdir().unwrap();
        let d = DataDir::new(t.path().join("v"));
        d.init().unwrap();
        check(&d);
        std::fs::set_permissions(&d.path, std::fs::Permissions::from_mode(0o755)).unwrap();
        for name in [DB_FILE, LEDGER_FILE, CONFIG_FILE, PUBLIC_KEY_FILE] {
            std::fs::set_permissions(d.file(name), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        d.load().unwrap();
        check(&d);
    }

    #[test]
    fn an_older_directorys_certificate_becomes_the_public_key_file() {
        let t = tempfile::tempdir().unwrap();
        let d = DataDir::new(t.path().join("v"));
        let fingerprint = d.init().unwrap();
        let spki = std::fs::read(d.file(PUBLIC_KEY_FILE)).unwrap();
        // An X.509 certificate holds the SubjectPublicKeyInfo among its other fields.
        let mut cert = vec![
            0x30, 0x82, 0x01, 0x10, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70,
        ];
        cert.extend_from_slice(&spki);
        cert.extend_from_slice(&[0xa3, 0x10, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70]);
        std::fs::write(d.file(LEGACY_CERT_FILE), &cert).unwrap();
        std::fs::remove_file(d.file(PUBLIC_KEY_FILE)).unwrap();
        let files = d.load().unwrap();
        assert_eq!(hex::encode(files.public_key.to_bytes()), fingerprint);
        assert_eq!(std::fs::read(d.file(PUBLIC_KEY_FILE)).unwrap(), spki);
        assert!(!d.file(LEGACY_CERT_FILE).exists());
        assert_eq!(d.fingerprint().unwrap(), fingerprint);
    }

    #[test]
    fn config_errors_name_the_field() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("c.toml");
        std::fs::write(&p, "keepalive_interval_ms = 1\n").unwrap();
        assert!(format!("{:#}", load_config(&p).unwrap_err()).contains("keepalive_interval_ms"));
        std::fs::write(&p, "idle_timeout_ms = 100\n").unwrap();
        assert!(format!("{:#}", load_config(&p).unwrap_err()).contains("idle_timeout_ms"));
        std::fs::write(&p, "bogus = 1\n").unwrap();
        assert!(format!("{:#}", load_config(&p).unwrap_err()).contains("bogus"));
        std::fs::write(&p, "top_up_min_cents = 0\n").unwrap();
        assert!(format!("{:#}", load_config(&p).unwrap_err()).contains("top_up_min_cents"));
        std::fs::write(&p, "top_up_min_cents = 900\ntop_up_max_cents = 800\n").unwrap();
        assert!(format!("{:#}", load_config(&p).unwrap_err()).contains("above"));
        std::fs::write(&p, "top_up_min_cents = 1\n").unwrap();
        assert_eq!(load_config(&p).unwrap().top_up_min_cents, Some(1));
        for bad in [
            "password_hashes_in_flight_max = 0\n",
            "password_hashes_in_flight_max = 65\n",
            "password_hash_queue_max = 4097\n",
            "terminal_login_burst_max = 0\n",
            "terminal_login_interval_ms = 0\n",
            "authorization_expiry_ms = 999\n",
            "reaper_interval_ms = 0\n",
            "late_void_window_ms = 2592000001\n",
            "scan_record_window_ms = 2592000001\n",
            "connections_per_source_max = 0\n",
            "login_deadline_ms = 99\n",
            "request_read_timeout_ms = 600001\n",
            "response_write_timeout_ms = 99\n",
            "postgres_batch_writers = 65\n",
            "postgres_batch_requests_max = 0\n",
            "streams_per_connection_max = 0\n",
            "scans_per_source_per_minute = 0\n",
            "scans_per_piece_per_minute = 0\n",
        ] {
            std::fs::write(&p, bad).unwrap();
            let name = bad.split(' ').next().unwrap();
            assert!(
                format!("{:#}", load_config(&p).unwrap_err()).contains(name),
                "{bad}"
            );
        }
        // Lowering connections_max alone keeps the per-source default valid.
        std::fs::write(&p, "connections_max = 30\n").unwrap();
        let c = load_config(&p).unwrap();
        assert_eq!(c.admission_limits().connections_per_source_max, 64);
        std::fs::write(
            &p,
            "authorization_expiry_ms = 3000\nreaper_interval_ms = 100\nlate_void_window_ms = 60000\nscan_record_window_ms = 5000\n",
        )
        .unwrap();
        let mut ledger = crate::ledger::LedgerConfig::default();
        load_config(&p).unwrap().apply_to(&mut ledger).unwrap();
        assert_eq!(ledger.limits.authorization_expiry_ms, 3000);
        assert_eq!(ledger.reaper_interval_ms, 100);
        assert_eq!(ledger.limits.late_void_window_ms, 60_000);
        assert_eq!(ledger.limits.scan_record_window_ms, 5_000);
        // PostgreSQL's pool and batch limits.
        #[cfg(feature = "postgres")]
        {
            std::fs::write(
            &p,
            "postgres_connections_max = 8\npostgres_batch_writers = 0\npostgres_batch_requests_max = 128\npostgres_batch_queue_requests_max = 512\n",
        )
        .unwrap();
            let mut ledger = crate::ledger::LedgerConfig::default();
            load_config(&p).unwrap().apply_to(&mut ledger).unwrap();
            let pg = &ledger.postgres;
            assert_eq!(
                (
                    pg.connections_max,
                    pg.batch_writers,
                    pg.batch_requests_max,
                    pg.batch_queue_requests_max
                ),
                (8, 0, 128, 512)
            );
        }
    }
}
