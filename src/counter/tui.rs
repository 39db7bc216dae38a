//! `frank counter`: the clerk's (or kiosk's) terminal UI wired to the vendor and the printer.
//!
//! Settings come from a TOML file (default `$XDG_CONFIG_HOME/frank/counter.toml`) and flags
//! (flags win). The file also carries the UI's `theme`, `[colors]` and `[keys]` sections
//! (see [`crate::ui::config`]):
//!
//! ```toml
//! vendor = "127.0.0.1:4433"       # or a list of the vendor's fronts: ["10.0.0.1:4433", "10.0.0.2:4433"]
//! pin = "…64 hex…"              # the vendor key fingerprint from `frank vendor init`
//! data = "/var/lib/frank/terminal"  # default: $XDG_DATA_HOME/frank/terminal
//! name = "counter-1"
//! origin_zip = "20500"
//! kiosk = false
//! idle_timeout_s = 90
//! supervisor_pin_argon2id = "$argon2id$v=19$…"  # kiosk: the PIN that may quit (`frank kiosk-pin`)
//! theme = "dark"
//! accessibility = "plain"       # one plain line per change for screen readers (or --plain)
//! [printer]
//! device = "/dev/ttyUSB0"
//! profile = "epson-tm-t88vi"    # a shipped id or a profile file
//! [receipt_printer]               # optional: receipts and close-outs print here
//! device = "/dev/ttyUSB1"
//! profile = "generic-80mm"
//! ```
//!
//! A `supervisor_pin_sha256 = "…64 hex…"` (the unsalted SHA-256 of the PIN, from before) is
//! still read once: it is replaced in the file by its `supervisor_pin_argon2id` upgrade
//! (argon2id with a salt over that SHA-256, see [`crate::ui::app::PinHash`]).
//!
//! The first run enrolls the terminal (the enrollment code comes from `--enroll-code`, the
//! file's `enroll_code`, or a prompt); then the UI opens on the clerk sign-in. Logs go to a
//! daily-rotated file in `$XDG_STATE_HOME/frank/` (seven kept), never to the screen.

use super::backend::{self, BackendConfig, PrinterSetup};
use super::client;
use super::terminal::TerminalDir;
use crate::printer::cli::load_profile;
use crate::ui::app::PinHash;
use crate::ui::event::{COMMANDS_QUEUE_MAX, EVENTS_QUEUE_MAX};
use crate::ui::{App, AppConfig};
use anyhow::{Context, bail};
use ed25519_dalek::VerifyingKey;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use tokio::sync::mpsc;

/// Log files kept in the state directory.
pub const LOG_FILES_MAX: usize = 7;

/// The non-UI part of the config file. Unknown keys are refused so typos show.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    pub vendor: Option<VendorAddrs>,
    pub pin: Option<String>,
    pub data: Option<PathBuf>,
    pub name: Option<String>,
    pub enroll_code: Option<String>,
    pub origin_zip: Option<String>,
    pub kiosk: Option<bool>,
    pub idle_timeout_s: Option<u64>,
    /// The kiosk supervisor PIN: an argon2id PHC string ([`crate::ui::app::PinHash`]).
    pub supervisor_pin_argon2id: Option<String>,
    /// The unsalted SHA-256 of the PIN written before argon2id: read once and upgraded.
    pub supervisor_pin_sha256: Option<String>,
    /// `"plain"`: the screen-reader-friendly mode (see [`crate::ui::plain`]); `"normal"`: the
    /// full screen (the default).
    pub accessibility: Option<String>,
    /// Kiosk: the clerk account the kiosk signs in as (password: FRANK_PASSWORD or a prompt
    /// before the screen opens).
    pub kiosk_clerk: Option<String>,
    pub printer: Option<PrinterFile>,
    /// The release key's fingerprint (`frank vendor release-key init`): with it the counter
    /// takes signed bundles after each sign-in (issue 17); without it, none.
    pub release_pin: Option<String>,
    /// Bundle downloads at most this fast (default 1 MiB/s).
    pub bundle_download_bytes_per_s: Option<u64>,
    /// Bundles above this size (all their files) are refused (default 128 MiB).
    pub bundle_bytes_max: Option<u64>,
    /// A second printer for receipts and close-outs (text only, never value).
    pub receipt_printer: Option<PrinterFile>,
    // UI sections, parsed by `ui::config::load`.
    pub theme: Option<String>,
    pub colors: Option<toml::Table>,
    pub keys: Option<toml::Table>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrinterFile {
    pub device: Option<PathBuf>,
    pub profile: Option<String>,
}

/// `vendor` in the config file: one address, or the vendor's fronts in the order to try them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum VendorAddrs {
    One(SocketAddr),
    Fronts(Vec<SocketAddr>),
}

impl VendorAddrs {
    pub fn into_vec(self) -> Vec<SocketAddr> {
        match self {
            VendorAddrs::One(a) => vec![a],
            VendorAddrs::Fronts(v) => v,
        }
    }
}

/// What flags may override.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config: Option<PathBuf>,
    /// The vendor's fronts (empty: the file's).
    pub vendor: Vec<SocketAddr>,
    pub pin: Option<String>,
    pub data: Option<PathBuf>,
    pub name: Option<String>,
    pub enroll_code: Option<String>,
    pub origin_zip: Option<String>,
    pub printer: Option<PathBuf>,
    pub profile: Option<String>,
    pub receipt_printer: Option<PathBuf>,
    pub receipt_profile: Option<String>,
    pub theme: Option<String>,
    pub kiosk: bool,
    pub kiosk_clerk: Option<String>,
    /// `--plain`: the screen-reader-friendly mode whatever the file says.
    pub plain: bool,
    /// `--release-pin`: the release key's fingerprint.
    pub release_pin: Option<String>,
}

/// Everything `frank counter` needs, resolved.
#[derive(Debug, Clone)]
pub struct CounterSettings {
    pub backend: BackendConfig,
    pub app: AppConfig,
    pub log_dir: Option<PathBuf>,
    /// Kiosk: the clerk it signs in as by itself.
    pub kiosk_clerk: Option<String>,
    /// The config file the theme chosen on the settings screen is saved in (`None`: not
    /// saved, e.g. the demo).
    pub config_path: Option<PathBuf>,
    /// One plain line per change instead of the full screen ([`crate::ui::plain`]).
    pub plain: bool,
}

/// The hash of a supervisor PIN with a fresh random salt (`frank counter pin-hash`, tests).
pub fn new_pin_hash(pin: &str) -> Result<PinHash, String> {
    crate::ui::app::pin_hash(pin, &rand::random())
}

fn dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", "frank")
}

/// `$XDG_CONFIG_HOME/frank/counter.toml`.
pub fn default_config_path() -> Option<PathBuf> {
    dirs().map(|d| d.config_dir().join("counter.toml"))
}

/// `$XDG_STATE_HOME/frank` (falls back to the data dir where there is no state dir).
pub fn default_state_dir() -> Option<PathBuf> {
    dirs().map(|d| {
        d.state_dir()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| d.data_local_dir().to_path_buf())
    })
}

fn parse_sha256(hex_text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = hex::decode(hex_text.trim()).context("supervisor_pin_sha256 must be hex")?;
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("supervisor_pin_sha256 must be 32 bytes (64 hex digits)"))
}

/// The kiosk PIN hash the config file holds. A `supervisor_pin_sha256` from before is upgraded
/// once: its argon2id replaces it in the file (`path`, whose text is `text`); if the file
/// cannot be rewritten the upgrade still holds for this run and a warning is logged.
fn supervisor_pin(
    file: &FileSettings,
    path: Option<&Path>,
    text: &str,
) -> anyhow::Result<Option<PinHash>> {
    match (&file.supervisor_pin_argon2id, &file.supervisor_pin_sha256) {
        (Some(_), Some(_)) => bail!(
            "the config file sets both supervisor_pin_argon2id and supervisor_pin_sha256; remove supervisor_pin_sha256"
        ),
        (Some(phc), None) => PinHash::parse(phc)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("supervisor_pin_argon2id {e}")),
        (None, Some(hex_text)) => {
            let hash = PinHash::from_sha256(&parse_sha256(hex_text)?, &rand::random())
                .map_err(anyhow::Error::msg)?;
            if let Some(p) = path {
                match upgrade_pin_in_file(p, text, &hash) {
                    Ok(()) => tracing::info!(
                        file = %p.display(),
                        "supervisor_pin_sha256 upgraded to supervisor_pin_argon2id"
                    ),
                    Err(e) => tracing::warn!(
                        file = %p.display(),
                        error = %format!("{e:#}"),
                        "supervisor_pin_sha256 could not be upgraded in the file"
                    ),
                }
            }
            Ok(Some(hash))
        }
        (None, None) => Ok(None),
    }
}

/// `text` with its `supervisor_pin_sha256 = …` line replaced by `supervisor_pin_argon2id`;
/// `None` if no such line (a key set another way is left alone).
pub fn pin_upgraded_text(text: &str, hash: &PinHash) -> Option<String> {
    const OLD_KEY: &str = "supervisor_pin_sha256";
    let mut found = false;
    let mut out = String::with_capacity(text.len() + 128);
    for line in text.lines() {
        let rest = line.trim_start().strip_prefix(OLD_KEY);
        if !found && rest.is_some_and(|r| r.trim_start().starts_with('=')) {
            found = true;
            out.push_str(&format!("supervisor_pin_argon2id = \"{}\"", hash.as_phc()));
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    found.then_some(out)
}

fn upgrade_pin_in_file(path: &Path, text: &str, hash: &PinHash) -> anyhow::Result<()> {
    let new_text = pin_upgraded_text(text, hash).context("no supervisor_pin_sha256 line")?;
    let check: FileSettings = toml::from_str(&new_text).context("the upgraded file")?;
    if check.supervisor_pin_sha256.is_some()
        || check.supervisor_pin_argon2id.as_deref() != Some(hash.as_phc())
    {
        bail!("the upgraded file does not read back as intended");
    }
    crate::datafiles::write_private(path, new_text.as_bytes())
}

/// `text` with its top-level `theme = …` line set to `name`; added as the first line when the
/// file has none. Comments and every other line stay as they are.
pub fn theme_set_text(text: &str, name: &str) -> String {
    let line = format!("theme = {}", toml::Value::String(name.to_string()));
    let mut found = false;
    let mut in_table = false;
    let mut out = String::with_capacity(text.len() + line.len() + 1);
    for l in text.lines() {
        let t = l.trim_start();
        in_table |= t.starts_with('[');
        let is_theme = t
            .strip_prefix("theme")
            .is_some_and(|r| r.trim_start().starts_with('='));
        if !found && !in_table && is_theme {
            found = true;
            out.push_str(&line);
        } else {
            out.push_str(l);
        }
        out.push('\n');
    }
    if found { out } else { format!("{line}\n{out}") }
}

/// Keeps `name` as the theme in the config file at `path` (made, 0600, if there is none),
/// checking that the file still reads back with every other setting unchanged.
pub fn save_theme(path: &Path, name: &str) -> anyhow::Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let new_text = theme_set_text(&text, name);
    let mut before: toml::Table = toml::from_str(&text).context("the config file")?;
    let after: toml::Table = toml::from_str(&new_text).context("the config file with the theme")?;
    before.insert("theme".into(), toml::Value::String(name.to_string()));
    if before != after {
        bail!("the config file would not read back as intended; set `theme` by hand");
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    crate::datafiles::write_private(path, new_text.as_bytes())
}

/// Reads the config file (if any) and applies the flags.
pub fn resolve(o: &Overrides, no_color: bool) -> anyhow::Result<CounterSettings> {
    let path = o.config.clone().or_else(default_config_path);
    let text = match &path {
        Some(p) if p.exists() => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        Some(p) if o.config.is_some() => bail!("config file {} does not exist", p.display()),
        _ => String::new(),
    };
    let file: FileSettings = toml::from_str(&text).with_context(|| match &path {
        Some(p) => format!("in {}", p.display()),
        None => "in the config".into(),
    })?;
    let supervisor_pin = supervisor_pin(&file, path.as_deref(), &text)?;
    // A theme that is not built in is a theme bundle, applied below once the bundles are known.
    let builtin = |n: &str| crate::ui::theme::BUILTIN.contains(&n);
    let load_text = match file.theme.as_deref() {
        Some(n) if !builtin(n) => theme_set_text(&text, "dark"),
        _ => text.clone(),
    };
    let (mut theme, keys) =
        crate::ui::config::load(&load_text, no_color).map_err(|e| anyhow::anyhow!("{e}"))?;
    if let Some(t) = o.theme.as_deref().filter(|t| builtin(t)) {
        theme = crate::ui::theme::Theme::with_overrides(t, None, no_color)
            .map_err(|e| anyhow::anyhow!("--theme: {e}"))?;
    }
    let vendors = if o.vendor.is_empty() {
        file.vendor.map(VendorAddrs::into_vec).unwrap_or_default()
    } else {
        o.vendor.clone()
    };
    anyhow::ensure!(
        !vendors.is_empty(),
        "no vendor address: pass --vendor or set `vendor` in the config file"
    );
    let pin = o
        .pin
        .clone()
        .or(file.pin)
        .context("no vendor fingerprint: pass --pin or set `pin` in the config file")?;
    let pinned: VerifyingKey = crate::identity::parse_fingerprint(&pin).context("pin")?;
    let data = o
        .data
        .clone()
        .or(file.data)
        .or_else(|| dirs().map(|d| d.data_dir().join("terminal")))
        .context("no terminal data directory: pass --data")?;
    let mut backend = BackendConfig::new(vendors, pinned, data);
    backend.terminal_name = o.name.clone().or(file.name).unwrap_or("counter".into());
    backend.enroll_code = o.enroll_code.clone().or(file.enroll_code);
    if let Some(z) = o.origin_zip.clone().or(file.origin_zip) {
        crate::wire::origin_zip(&z).map_err(|e| anyhow::anyhow!("origin_zip: {e}"))?;
        backend.origin_zip = z;
    }
    if let Some(pin) = o.release_pin.clone().or(file.release_pin) {
        let key = crate::identity::parse_fingerprint(&pin).context("release_pin")?;
        let mut b = super::bundles::BundleConfig::new(key, backend.terminal_dir.clone());
        if let Some(rate) = file.bundle_download_bytes_per_s {
            anyhow::ensure!(
                rate >= 1024,
                "bundle_download_bytes_per_s must be at least 1024"
            );
            b.download_bytes_per_s = rate;
        }
        if let Some(max) = file.bundle_bytes_max {
            b.bundle_bytes_max = max;
        }
        backend.bundles = Some(b);
    }
    let store = backend
        .bundles
        .as_ref()
        .map(super::bundles::BundleConfig::store);
    // A theme not built in may be a theme bundle in use (laid over `dark`).
    let theme_name = o.theme.clone().or(file.theme.clone());
    if let Some(name) = theme_name.as_ref().filter(|n| !builtin(n)) {
        let text = store
            .as_ref()
            .and_then(|s| super::bundles::installed_theme(s, name))
            .with_context(|| {
                format!(
                    "theme {name:?} is neither built in ({}) nor a theme bundle in use",
                    crate::ui::theme::BUILTIN.join(", ")
                )
            })?;
        theme = crate::ui::theme::Theme::with_overrides("dark", Some(&text), no_color)
            .map_err(|e| anyhow::anyhow!("theme bundle {name}: {e}"))?;
        theme.name = name.clone();
    }
    if let Some((label, _)) = store.as_ref().and_then(super::bundles::installed_rates) {
        tracing::info!(rates = %label, "rates from the signed rates bundle");
    }
    let pf = file.printer.unwrap_or_default();
    let device = o.printer.clone().or(pf.device);
    let profile_name = o.profile.clone().or(pf.profile);
    let mut printer_name = "(none)".to_string();
    let mut printer_profile = None;
    if let Some(device) = device {
        let wanted = profile_name.as_deref().unwrap_or("generic-80mm");
        // A profile of a profiles bundle in use comes before the shipped one of that id.
        let profile = match store
            .as_ref()
            .and_then(|s| super::bundles::installed_profile(s, wanted))
        {
            Some(path) => crate::printer::cli::load_file(&path)
                .map_err(|e| anyhow::anyhow!("profile {wanted} of a bundle: {e}"))?,
            None => load_profile(wanted)?,
        };
        printer_name = format!("{} ({})", device.display(), profile.name);
        printer_profile = Some(profile.clone());
        backend.printer = Some(PrinterSetup { device, profile });
    }
    let rf = file.receipt_printer.unwrap_or_default();
    if let Some(device) = o.receipt_printer.clone().or(rf.device) {
        let name = o.receipt_profile.clone().or(rf.profile);
        let profile =
            load_profile(name.as_deref().unwrap_or("generic-80mm")).context("receipt printer")?;
        backend.receipt_printer = Some(PrinterSetup { device, profile });
    }
    let mut app = AppConfig {
        kiosk: o.kiosk || file.kiosk.unwrap_or(false),
        keys,
        theme,
        printer_name,
        printer_profile,
        ..AppConfig::default()
    };
    if let Some(s) = file.idle_timeout_s {
        app.idle_timeout_ms = s.saturating_mul(1000);
    }
    app.supervisor_pin = supervisor_pin;
    let kiosk_clerk = o.kiosk_clerk.clone().or(file.kiosk_clerk);
    if app.kiosk && kiosk_clerk.is_none() {
        bail!("kiosk mode needs the clerk account it signs in as: --kiosk-clerk or `kiosk_clerk`");
    }
    let plain = o.plain
        || match file.accessibility.as_deref() {
            None | Some("normal") => false,
            Some("plain") => true,
            Some(other) => bail!(
                "accessibility = {other:?} is not known; use \"plain\" (one line per change, for screen readers) or \"normal\""
            ),
        };
    Ok(CounterSettings {
        backend,
        app,
        log_dir: default_state_dir(),
        kiosk_clerk,
        config_path: path,
        plain,
    })
}

/// Logs to a daily-rotated file in `dir` (never the terminal the UI draws on). Returns the
/// guard that flushes the writer; keep it alive for the run.
pub fn init_file_logging(
    dir: &Path,
    prefix: &str,
) -> anyhow::Result<tracing_appender::non_blocking::WorkerGuard> {
    crate::datafiles::private_dir(dir)?;
    let appender = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::DAILY)
        .filename_prefix(prefix)
        .filename_suffix("log")
        .max_log_files(LOG_FILES_MAX)
        .build(dir)
        .context("opening the log file")?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,quinn=warn,rustls=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_writer(writer)
        .try_init();
    Ok(guard)
}

/// First run: enrolls the terminal before the UI opens. `ask_code` is asked for the
/// enrollment code when none was configured.
pub async fn ensure_enrolled(
    cfg: &BackendConfig,
    ask_code: impl FnOnce() -> anyhow::Result<String>,
) -> anyhow::Result<Option<u64>> {
    let dir = TerminalDir::new(&cfg.terminal_dir);
    if dir.enrollment(&cfg.pinned)?.is_some() {
        return Ok(None);
    }
    let code = match &cfg.enroll_code {
        Some(c) => c.clone(),
        None => ask_code()?,
    };
    let endpoint = client::endpoint_for_fronts(&cfg.vendors)?;
    let (conn, _) = client::connect_first(&endpoint, &cfg.vendors, cfg.pinned).await?;
    let e = dir
        .ensure_enrolled(&conn, &cfg.pinned, Some(&code), &cfg.terminal_name)
        .await?;
    conn.conn.close(quinn::VarInt::from_u32(0), b"enrolled");
    endpoint.wait_idle().await;
    Ok(Some(e.terminal_id))
}

/// Runs the UI and its backend until the person quits. A kiosk signs in as its clerk with
/// `kiosk_password` before the first frame.
pub async fn run(
    settings: CounterSettings,
    kiosk_password: Option<crate::ui::event::Secret>,
) -> anyhow::Result<()> {
    let (cmd_tx, cmd_rx) = mpsc::channel(COMMANDS_QUEUE_MAX);
    let (ev_tx, ev_rx) = mpsc::channel(EVENTS_QUEUE_MAX);
    let store = settings
        .backend
        .bundles
        .as_ref()
        .map(super::bundles::BundleConfig::store);
    let backend = backend::spawn(settings.backend, cmd_rx, ev_tx);
    if let (true, Some(clerk), Some(password)) =
        (settings.app.kiosk, settings.kiosk_clerk, kiosk_password)
    {
        cmd_tx
            .send(crate::ui::Command::SignIn { clerk, password })
            .await
            .map_err(|_| anyhow::anyhow!("the backend stopped before sign-in"))?;
    }
    let app = App::new(settings.app);
    let save_theme = settings
        .config_path
        .map(|path| -> crate::ui::runner::SaveTheme {
            Box::new(move |name: &str| {
                save_theme(&path, name).map_err(|e| format!("{e:#}"))?;
                tracing::info!(theme = name, file = %path.display(), "theme saved");
                Ok(())
            })
        });
    let result = if settings.plain {
        crate::ui::runner::run_plain(app, ev_rx, cmd_tx, save_theme).await
    } else {
        crate::ui::run(app, ev_rx, cmd_tx, save_theme).await
    };
    // The UI dropped its command sender: the backend signs out and ends.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), backend).await;
    super::bundles::exit_figures(store.as_ref());
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accessibility_plain_is_read_from_the_file_and_a_typo_is_refused() {
        let f: FileSettings = toml::from_str("accessibility = \"plain\"\n").unwrap();
        assert_eq!(f.accessibility.as_deref(), Some("plain"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter.toml");
        let base = format!(
            "vendor = \"127.0.0.1:4433\"\npin = \"{}\"\ndata = \"{}\"\n",
            crate::identity::fingerprint(
                &ed25519_dalek::SigningKey::from_bytes(&[7; 32]).verifying_key()
            ),
            dir.path().display()
        );
        let o = Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        };
        std::fs::write(&path, format!("{base}accessibility = \"plain\"\n")).unwrap();
        assert!(resolve(&o, false).unwrap().plain);
        std::fs::write(&path, &base).unwrap();
        assert!(!resolve(&o, false).unwrap().plain);
        let flag = Overrides {
            plain: true,
            ..o.clone()
        };
        assert!(resolve(&flag, false).unwrap().plain);
        std::fs::write(&path, format!("{base}accessibility = \"plane\"\n")).unwrap();
        let e = resolve(&o, false).unwrap_err().to_string();
        assert!(e.contains("plain"), "{e}");
    }

    /// `release_pin` turns bundles on with their settings; a theme that is not built in must
    /// be a theme bundle in use.
    #[test]
    fn release_pin_and_bundle_settings_are_read_and_a_theme_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("counter.toml");
        let key = |seed: u8| {
            crate::identity::fingerprint(
                &ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key(),
            )
        };
        let base = format!(
            "vendor = \"127.0.0.1:4433\"\npin = \"{}\"\ndata = \"{}\"\n",
            key(7),
            dir.path().display()
        );
        let o = Overrides {
            config: Some(path.clone()),
            ..Overrides::default()
        };
        std::fs::write(&path, &base).unwrap();
        assert!(resolve(&o, false).unwrap().backend.bundles.is_none());
        std::fs::write(
            &path,
            format!(
                "{base}release_pin = \"{}\"\nbundle_download_bytes_per_s = 65536\nbundle_bytes_max = 1000000\n",
                key(8)
            ),
        )
        .unwrap();
        let b = resolve(&o, false).unwrap().backend.bundles.unwrap();
        assert_eq!(crate::identity::fingerprint(&b.release_key), key(8));
        assert_eq!(b.download_bytes_per_s, 65_536);
        assert_eq!(b.bundle_bytes_max, 1_000_000);
        std::fs::write(
            &path,
            format!("{base}release_pin = \"{}\"\ntheme = \"night\"\n", key(8)),
        )
        .unwrap();
        let e = resolve(&o, false).unwrap_err().to_string();
        assert!(e.contains("neither built in"), "{e}");
        std::fs::write(
            &path,
            format!(
                "{base}release_pin = \"{}\"\nbundle_download_bytes_per_s = 10\n",
                key(8)
            ),
        )
        .unwrap();
        let e = resolve(&o, false).unwrap_err().to_string();
        assert!(e.contains("bundle_download_bytes_per_s"), "{e}");
    }

    /// `vendor` is one address or the vendor's fronts in order; a flag list wins over it.
    #[test]
    fn vendor_is_one_address_or_a_list_of_fronts() {
        let one: FileSettings = toml::from_str("vendor = \"127.0.0.1:4433\"\n").unwrap();
        let one = one.vendor.unwrap().into_vec();
        assert_eq!(one, vec!["127.0.0.1:4433".parse::<SocketAddr>().unwrap()]);
        let many: FileSettings =
            toml::from_str("vendor = [\"10.0.0.1:4433\", \"10.0.0.2:4433\"]\n").unwrap();
        let many = many.vendor.unwrap().into_vec();
        assert_eq!(many.len(), 2);
        assert_eq!(many[1], "10.0.0.2:4433".parse::<SocketAddr>().unwrap());
        assert!(toml::from_str::<FileSettings>("vendor = [\"nowhere\"]\n").is_err());
    }

    /// Issue 13: an unsalted `supervisor_pin_sha256` is read once and replaced in the file by
    /// a salted argon2id that still accepts the same PIN.
    #[test]
    fn an_old_sha256_pin_is_upgraded_in_the_file() {
        use sha2::Digest;
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("counter.toml");
        let sha = hex::encode(sha2::Sha256::digest(b"2468"));
        let text = format!(
            "kiosk = true\n  supervisor_pin_sha256 = \"{sha}\" # old\nidle_timeout_s = 9\n[printer]\ndevice = \"/dev/null\"\n"
        );
        std::fs::write(&p, &text).unwrap();
        let file: FileSettings = toml::from_str(&text).unwrap();
        let hash = supervisor_pin(&file, Some(&p), &text).unwrap().unwrap();
        assert!(hash.verify("2468"));
        assert!(!hash.verify("1357"));

        let now = std::fs::read_to_string(&p).unwrap();
        assert!(!now.contains("supervisor_pin_sha256"), "{now}");
        assert!(!now.contains(&sha), "{now}");
        assert!(
            now.contains("supervisor_pin_argon2id = \"$argon2id$"),
            "{now}"
        );
        assert!(
            now.contains("idle_timeout_s = 9") && now.contains("[printer]"),
            "{now}"
        );
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let file: FileSettings = toml::from_str(&now).unwrap();
        let again = supervisor_pin(&file, Some(&p), &now).unwrap().unwrap();
        assert_eq!(again, hash, "read as is the second time");
        assert!(again.verify("2468"));
        assert_eq!(std::fs::read_to_string(&p).unwrap(), now);
    }

    /// Issue 15: the theme chosen on the settings screen is kept in the config file — its
    /// `theme` line replaced (not one in a table), or added — and read back at the next start.
    #[test]
    fn the_chosen_theme_is_saved_in_the_config_file() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("frank").join("counter.toml");
        save_theme(&p, "light").unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            crate::ui::config::load(&text, false).unwrap().0.name,
            "light"
        );

        let text = "# mine\nvendor = \"127.0.0.1:4433\"\ntheme = \"dark\" # was\n[colors]\ntext = \"white\"\n";
        std::fs::write(&p, text).unwrap();
        save_theme(&p, "high-contrast").unwrap();
        let now = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            now,
            "# mine\nvendor = \"127.0.0.1:4433\"\ntheme = \"high-contrast\"\n[colors]\ntext = \"white\"\n"
        );
        let file: FileSettings = toml::from_str(&now).unwrap();
        assert_eq!(file.theme.as_deref(), Some("high-contrast"));

        // A `theme` key only inside a table is not the top-level one: a line is added.
        let odd = "[keys]\ntheme = [\"f5\"]\n";
        assert_eq!(
            theme_set_text(odd, "light"),
            "theme = \"light\"\n[keys]\ntheme = [\"f5\"]\n"
        );
    }

    #[test]
    fn pin_settings_are_checked() {
        let both: FileSettings = toml::from_str(&format!(
            "supervisor_pin_sha256 = \"{}\"\nsupervisor_pin_argon2id = \"x\"\n",
            "00".repeat(32)
        ))
        .unwrap();
        assert!(supervisor_pin(&both, None, "").is_err());
        let bad: FileSettings = toml::from_str(
            "supervisor_pin_argon2id = \"$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA\"\n",
        )
        .unwrap();
        let err = supervisor_pin(&bad, None, "").unwrap_err().to_string();
        assert!(err.contains("argon2id"), "{err}");
        let none = FileSettings::default();
        assert!(supervisor_pin(&none, None, "").unwrap().is_none());
    }
}
