//! The terminal's own data directory: its device key (0600) and its enrollment record.

use super::client::{ClientError, Enrollment, VendorConn};
use crate::identity;
use anyhow::{Context, bail};
use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEVICE_KEY_FILE: &str = "device-key.pem";
pub const ENROLLMENT_FILE: &str = "terminal.toml";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollmentFile {
    terminal_id: u64,
    account_id: u64,
    vendor_fingerprint: String,
    enrolled_ms: u64,
}

#[derive(Debug, Clone)]
pub struct TerminalDir {
    pub path: PathBuf,
}

impl TerminalDir {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        TerminalDir { path: path.into() }
    }

    /// Loads the device key, creating it (0600) on first use; the directory is made 0700.
    pub fn device_key(&self) -> anyhow::Result<SigningKey> {
        crate::datafiles::private_dir(&self.path)?;
        let p = self.path.join(DEVICE_KEY_FILE);
        if p.exists() {
            identity::load_key_file(&p)
        } else {
            identity::create_key_file(&p)
        }
    }

    /// The stored enrollment, if it was made with the vendor key `pinned`.
    pub fn enrollment(&self, pinned: &VerifyingKey) -> anyhow::Result<Option<Enrollment>> {
        let p = self.path.join(ENROLLMENT_FILE);
        let text = match std::fs::read_to_string(&p) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", p.display())),
        };
        let f: EnrollmentFile =
            toml::from_str(&text).with_context(|| format!("in {}", p.display()))?;
        if f.vendor_fingerprint != identity::fingerprint(pinned) {
            bail!(
                "{} was enrolled with vendor {}, not the pinned {}; use another data directory to enroll with this vendor",
                self.path.display(),
                f.vendor_fingerprint,
                identity::fingerprint(pinned)
            );
        }
        Ok(Some(Enrollment {
            terminal_id: f.terminal_id,
            account_id: f.account_id,
            vendor_time_ms: f.enrolled_ms,
        }))
    }

    fn save(&self, e: &Enrollment, pinned: &VerifyingKey) -> anyhow::Result<()> {
        let f = EnrollmentFile {
            terminal_id: e.terminal_id,
            account_id: e.account_id,
            vendor_fingerprint: identity::fingerprint(pinned),
            enrolled_ms: e.vendor_time_ms,
        };
        let p = self.path.join(ENROLLMENT_FILE);
        crate::datafiles::write_private(&p, toml::to_string_pretty(&f)?.as_bytes())
    }

    /// Returns the stored enrollment or enrolls now with `code` (first run).
    pub async fn ensure_enrolled(
        &self,
        conn: &VendorConn,
        pinned: &VerifyingKey,
        code: Option<&str>,
        name: &str,
    ) -> anyhow::Result<Enrollment> {
        if let Some(e) = self.enrollment(pinned)? {
            return Ok(e);
        }
        let Some(code) = code else {
            bail!(
                "{} holds no enrolled terminal yet; enroll it with the account's enrollment code (frank counter --enroll-code CODE)",
                self.path.display()
            );
        };
        let key = self.device_key()?;
        let e = conn
            .enroll(code, name, &key, pinned)
            .await
            .map_err(|e: ClientError| anyhow::anyhow!(e))?;
        self.save(&e, pinned)?;
        Ok(e)
    }
}

pub fn exists(path: &Path) -> bool {
    path.join(ENROLLMENT_FILE).exists()
}
