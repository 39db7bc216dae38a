//! The vendor's directory: accounts, clerks, enrolled terminals and login failures, in SQLite.
//!
//! The QUIC front never holds a database connection: it talks to [`DirectoryHandle`], which
//! forwards each call over a bounded channel to one thread that owns the connection.

use super::lockout;
use anyhow::{Context, bail};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rusqlite::{Connection, OptionalExtension, params};
use sha2::{Digest, Sha256};
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

/// Pending directory calls the front may queue before it gets `busy`.
pub const DIRECTORY_REQUESTS_MAX: usize = 1024;
pub const ENROLLMENT_CODE_BYTES: usize = 16;
pub const CLERK_NAME_BYTES_MAX: usize = 64;
pub const PASSWORD_BYTES_MIN: usize = 8;

/// Versioned migrations: entry `i` moves `user_version` from `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: the directory
    "CREATE TABLE accounts (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        enrollment_code_sha256 BLOB NOT NULL,
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE clerks (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        username TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL CHECK (role IN ('clerk', 'supervisor')),
        created_ms INTEGER NOT NULL
    );
    CREATE TABLE terminals (
        id INTEGER PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        name TEXT NOT NULL,
        device_key BLOB NOT NULL UNIQUE,
        enrolled_ms INTEGER NOT NULL
    );
    CREATE TABLE login_failures (
        username TEXT NOT NULL,
        terminal_id INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        locked_until_ms INTEGER NOT NULL,
        PRIMARY KEY (username, terminal_id)
    );",
    // 2: issue 13 — enrollment codes with an expiry and a use count (an account's earlier
    //    code keeps working for 7 days after the upgrade, at most 100 more terminals; rotate
    //    it with `frank vendor account code`); revoked terminals and disabled clerks.
    "CREATE TABLE enrollment_codes (
        code_sha256 BLOB PRIMARY KEY,
        account_id INTEGER NOT NULL REFERENCES accounts(id),
        created_ms INTEGER NOT NULL,
        expires_ms INTEGER NOT NULL,
        uses_left INTEGER NOT NULL CHECK (uses_left >= 0)
    ) WITHOUT ROWID;
    INSERT INTO enrollment_codes (code_sha256, account_id, created_ms, expires_ms, uses_left)
        SELECT enrollment_code_sha256, id, created_ms,
            CAST(strftime('%s', 'now') AS INTEGER) * 1000 + 7 * 86400000, 100
        FROM accounts;
    ALTER TABLE terminals ADD COLUMN revoked_ms INTEGER;
    ALTER TABLE clerks ADD COLUMN disabled_ms INTEGER;",
];

/// How long a new enrollment code works (`frank vendor account add`, `account code`).
pub const ENROLLMENT_CODE_VALID_MS_DEFAULT: u64 = 72 * 3600 * 1000;
/// Longest validity an operator may give a code.
pub const ENROLLMENT_CODE_VALID_MS_MAX: u64 = 90 * 24 * 3600 * 1000;
/// How many terminals a new code enrolls (default: one).
pub const ENROLLMENT_CODE_USES_DEFAULT: u32 = 1;
/// Most terminals one code may enroll.
pub const ENROLLMENT_CODE_USES_MAX: u32 = 10_000;

/// What a new enrollment code allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodePolicy {
    pub uses: u32,
    pub valid_ms: u64,
}

impl Default for CodePolicy {
    fn default() -> Self {
        CodePolicy {
            uses: ENROLLMENT_CODE_USES_DEFAULT,
            valid_ms: ENROLLMENT_CODE_VALID_MS_DEFAULT,
        }
    }
}

/// An issued enrollment code (shown once; stored as its SHA-256).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedCode {
    pub code: String,
    pub expires_ms: u64,
    pub uses: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub id: u64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminal {
    pub id: u64,
    pub account_id: u64,
    pub name: String,
    pub device_key: [u8; 32],
    /// When `frank vendor terminal revoke` revoked it: it can no longer log in, resume or
    /// enroll its key again.
    pub revoked_ms: Option<u64>,
}

#[derive(Clone, PartialEq, Eq)]
pub struct Clerk {
    pub id: u64,
    pub account_id: u64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
    /// When `frank vendor clerk disable` disabled the clerk: no login, no resume.
    pub disabled_ms: Option<u64>,
}

impl std::fmt::Debug for Clerk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clerk")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("username", &self.username)
            .field("role", &self.role)
            .field("disabled_ms", &self.disabled_ms)
            .finish_non_exhaustive()
    }
}

/// Result of an enrollment attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollOutcome {
    Enrolled(Terminal),
    BadCode,
}

/// Whether a clerk may try a password now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockState {
    Open,
    LockedFor { retry_after_ms: u64 },
}

/// Terminals revoked and clerks disabled, as of the last look.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    pub terminals: std::collections::BTreeSet<u64>,
    pub clerks: std::collections::BTreeSet<String>,
}

/// Synchronous access to the directory database. Owned by one thread.
pub struct Directory {
    db: Connection,
    /// `PRAGMA data_version` at the last [`Directory::revocations_if_changed`]: it moves when
    /// another connection (the admin CLI) commits.
    seen_data_version: Option<i64>,
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u64_of(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

pub fn code_digest(code: &str) -> [u8; 32] {
    Sha256::digest(code.as_bytes()).into()
}

const TERMINAL_COLS: &str = "id, account_id, name, device_key, revoked_ms";

/// A fresh random code for `account_id`, stored as its SHA-256 (inside the caller's
/// transaction).
fn issue_code(
    tx: &rusqlite::Transaction<'_>,
    account_id: u64,
    policy: CodePolicy,
    now_ms: u64,
) -> anyhow::Result<IssuedCode> {
    let mut raw = [0u8; ENROLLMENT_CODE_BYTES];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
    let code = hex::encode(raw);
    let expires_ms = now_ms.saturating_add(policy.valid_ms);
    tx.execute(
        "INSERT INTO enrollment_codes (code_sha256, account_id, created_ms, expires_ms, uses_left)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            code_digest(&code).to_vec(),
            i64_of(account_id),
            i64_of(now_ms),
            i64_of(expires_ms),
            i64::from(policy.uses)
        ],
    )?;
    Ok(IssuedCode {
        code,
        expires_ms,
        uses: policy.uses,
    })
}

/// argon2id with the crate's defaults (m = 19 MiB, t = 2, p = 1).
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    if password.len() < PASSWORD_BYTES_MIN {
        bail!("password must be at least {PASSWORD_BYTES_MIN} characters");
    }
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    Ok(Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| anyhow::anyhow!("hashing password: {e}"))?
        .to_string())
}

/// Constant-time argon2 verification. A malformed stored hash verifies as false.
pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

impl Directory {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        // Created 0600 before SQLite opens it (password hashes): -wal and -shm take its mode.
        crate::datafiles::private_file(path)?;
        let db = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut d = Directory {
            db,
            seen_data_version: None,
        };
        d.migrate()?;
        Ok(d)
    }

    fn migrate(&mut self) -> anyhow::Result<()> {
        let version: i64 = self.db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            bail!(
                "database schema version {version} is newer than this frank ({}); upgrade frank",
                MIGRATIONS.len()
            );
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.db.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(())
    }

    pub fn schema_version(&self) -> anyhow::Result<i64> {
        Ok(self.db.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    /// Creates an account; returns it and its first enrollment code (shown once, stored
    /// hashed): one terminal, within [`ENROLLMENT_CODE_VALID_MS_DEFAULT`].
    pub fn add_account(&mut self, name: &str, now_ms: u64) -> anyhow::Result<(Account, String)> {
        let name = name.trim();
        if name.is_empty() || name.len() > CLERK_NAME_BYTES_MAX {
            bail!("account name must be 1..={CLERK_NAME_BYTES_MAX} characters");
        }
        if crate::logtext::has_control(name) {
            bail!("account name must not contain control characters (newline, tab, escape codes)");
        }
        let tx = self.db.transaction()?;
        // The column predates enrollment_codes (migration 2); it holds no usable code.
        tx.execute(
            "INSERT INTO accounts (name, enrollment_code_sha256, created_ms) VALUES (?1, ?2, ?3)",
            params![name, vec![0u8; 32], i64_of(now_ms)],
        )?;
        let id = u64_of(tx.last_insert_rowid());
        let issued = issue_code(&tx, id, CodePolicy::default(), now_ms)?;
        tx.commit()?;
        Ok((
            Account {
                id,
                name: name.to_string(),
            },
            issued.code,
        ))
    }

    /// Issues a new enrollment code for `account_id` and ends every earlier one (rotation:
    /// `frank vendor account code`).
    pub fn rotate_enrollment_code(
        &mut self,
        account_id: u64,
        policy: CodePolicy,
        now_ms: u64,
    ) -> anyhow::Result<IssuedCode> {
        if policy.uses == 0 || policy.uses > ENROLLMENT_CODE_USES_MAX {
            bail!(
                "a code enrolls 1..={ENROLLMENT_CODE_USES_MAX} terminals, got {}",
                policy.uses
            );
        }
        if policy.valid_ms == 0 || policy.valid_ms > ENROLLMENT_CODE_VALID_MS_MAX {
            bail!(
                "a code is valid for 1 ms ..= {} days",
                ENROLLMENT_CODE_VALID_MS_MAX / 86_400_000
            );
        }
        let tx = self.db.transaction()?;
        let exists: Option<i64> = tx
            .query_row(
                "SELECT id FROM accounts WHERE id = ?1",
                [i64_of(account_id)],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            bail!("no account {account_id}; see `frank vendor account list`");
        }
        tx.execute(
            "DELETE FROM enrollment_codes WHERE account_id = ?1",
            [i64_of(account_id)],
        )?;
        let issued = issue_code(&tx, account_id, policy, now_ms)?;
        tx.commit()?;
        Ok(issued)
    }

    pub fn accounts(&self) -> anyhow::Result<Vec<Account>> {
        let mut st = self
            .db
            .prepare("SELECT id, name FROM accounts ORDER BY id")?;
        let rows = st.query_map([], |r| {
            Ok(Account {
                id: u64_of(r.get(0)?),
                name: r.get(1)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Adds a clerk with an argon2id password hash.
    pub fn add_clerk(
        &mut self,
        account_id: u64,
        username: &str,
        password: &str,
        supervisor: bool,
        now_ms: u64,
    ) -> anyhow::Result<Clerk> {
        if username.is_empty()
            || username.len() > CLERK_NAME_BYTES_MAX
            || !username
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        {
            bail!(
                "clerk username must be 1..={CLERK_NAME_BYTES_MAX} characters of a-z, 0-9, '.', '_', '-'"
            );
        }
        let exists: Option<i64> = self
            .db
            .query_row(
                "SELECT id FROM accounts WHERE id = ?1",
                [i64_of(account_id)],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_none() {
            bail!("no account {account_id}; create it with `frank vendor account add`");
        }
        let hash = hash_password(password)?;
        let role = if supervisor { "supervisor" } else { "clerk" };
        self.db
            .execute(
                "INSERT INTO clerks (account_id, username, password_hash, role, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![i64_of(account_id), username, hash, role, i64_of(now_ms)],
            )
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    anyhow::anyhow!("clerk {username:?} already exists")
                }
                other => other.into(),
            })?;
        Ok(Clerk {
            id: u64_of(self.db.last_insert_rowid()),
            account_id,
            username: username.to_string(),
            password_hash: hash,
            role: role.to_string(),
            disabled_ms: None,
        })
    }

    pub fn clerk(&self, username: &str) -> anyhow::Result<Option<Clerk>> {
        Ok(self
            .db
            .query_row(
                "SELECT id, account_id, username, password_hash, role, disabled_ms FROM clerks WHERE username = ?1",
                [username],
                |r| {
                    Ok(Clerk {
                        id: u64_of(r.get(0)?),
                        account_id: u64_of(r.get(1)?),
                        username: r.get(2)?,
                        password_hash: r.get(3)?,
                        role: r.get(4)?,
                        disabled_ms: r.get::<_, Option<i64>>(5)?.map(u64_of),
                    })
                },
            )
            .optional()?)
    }

    /// Enrolls a terminal if `code` is a live enrollment code (not expired, uses left; looked
    /// up by its SHA-256, so timing says nothing about the code). Enrolling the same device key
    /// again under the code's account returns its terminal and uses nothing (a retry whose
    /// answer was lost), even once the code is used up or expired. A key enrolled under
    /// another account, or revoked, is refused like a bad code: an enrollment never reveals
    /// another account's ids.
    pub fn enroll(
        &mut self,
        code: &str,
        name: &str,
        device_key: [u8; 32],
        now_ms: u64,
    ) -> anyhow::Result<EnrollOutcome> {
        let digest = code_digest(code);
        let tx = self.db.transaction()?;
        let found: Option<(i64, i64, i64)> = tx
            .query_row(
                "SELECT account_id, expires_ms, uses_left FROM enrollment_codes WHERE code_sha256 = ?1",
                [digest.to_vec()],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((account_id, expires_ms, uses_left)) = found else {
            return Ok(EnrollOutcome::BadCode);
        };
        let account_id = u64_of(account_id);
        if let Some(t) = Self::terminal_by_key_in(&tx, &device_key)? {
            if t.account_id == account_id && t.revoked_ms.is_none() {
                return Ok(EnrollOutcome::Enrolled(t));
            }
            return Ok(EnrollOutcome::BadCode);
        }
        if u64_of(expires_ms) <= now_ms || uses_left <= 0 {
            return Ok(EnrollOutcome::BadCode);
        }
        tx.execute(
            "INSERT INTO terminals (account_id, name, device_key, enrolled_ms) VALUES (?1, ?2, ?3, ?4)",
            params![i64_of(account_id), name, device_key.to_vec(), i64_of(now_ms)],
        )?;
        let id = u64_of(tx.last_insert_rowid());
        tx.execute(
            "UPDATE enrollment_codes SET uses_left = uses_left - 1 WHERE code_sha256 = ?1",
            [digest.to_vec()],
        )?;
        tx.commit()?;
        Ok(EnrollOutcome::Enrolled(Terminal {
            id,
            account_id,
            name: name.to_string(),
            device_key,
            revoked_ms: None,
        }))
    }

    /// Revokes a terminal: it can no longer log in, resume, or enroll its key again. `false`
    /// when there is no such terminal; revoking twice keeps the first time.
    pub fn revoke_terminal(&mut self, id: u64, now_ms: u64) -> anyhow::Result<bool> {
        let exists = self.terminal(id)?.is_some();
        self.db.execute(
            "UPDATE terminals SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![i64_of(id), i64_of(now_ms)],
        )?;
        Ok(exists)
    }

    /// Disables a clerk: no login, no resume. `false` when there is no such clerk.
    pub fn disable_clerk(&mut self, username: &str, now_ms: u64) -> anyhow::Result<bool> {
        let exists = self.clerk(username)?.is_some();
        self.db.execute(
            "UPDATE clerks SET disabled_ms = ?2 WHERE username = ?1 AND disabled_ms IS NULL",
            params![username, i64_of(now_ms)],
        )?;
        Ok(exists)
    }

    /// Every revoked terminal and disabled clerk.
    pub fn revocations(&self) -> anyhow::Result<Revocations> {
        let mut out = Revocations::default();
        let mut st = self
            .db
            .prepare("SELECT id FROM terminals WHERE revoked_ms IS NOT NULL")?;
        for id in st.query_map([], |r| r.get::<_, i64>(0))? {
            out.terminals.insert(u64_of(id?));
        }
        let mut st = self
            .db
            .prepare("SELECT username FROM clerks WHERE disabled_ms IS NOT NULL")?;
        for name in st.query_map([], |r| r.get::<_, String>(0))? {
            out.clerks.insert(name?);
        }
        Ok(out)
    }

    /// [`Self::revocations`], but only when another connection (the admin CLI) committed
    /// since the last call (`PRAGMA data_version`); the first call always reads.
    pub fn revocations_if_changed(&mut self) -> anyhow::Result<Option<Revocations>> {
        let v: i64 = self.db.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.seen_data_version == Some(v) {
            return Ok(None);
        }
        self.seen_data_version = Some(v);
        self.revocations().map(Some)
    }

    fn terminal_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Terminal> {
        let key: Vec<u8> = r.get(3)?;
        let mut device_key = [0u8; 32];
        if key.len() == 32 {
            device_key.copy_from_slice(&key);
        }
        Ok(Terminal {
            id: u64_of(r.get(0)?),
            account_id: u64_of(r.get(1)?),
            name: r.get(2)?,
            device_key,
            revoked_ms: r.get::<_, Option<i64>>(4)?.map(u64_of),
        })
    }

    fn terminal_by_key_in(db: &Connection, key: &[u8; 32]) -> anyhow::Result<Option<Terminal>> {
        Ok(db
            .query_row(
                &format!("SELECT {TERMINAL_COLS} FROM terminals WHERE device_key = ?1"),
                [key.to_vec()],
                Self::terminal_from_row,
            )
            .optional()?)
    }

    pub fn terminal(&self, id: u64) -> anyhow::Result<Option<Terminal>> {
        Ok(self
            .db
            .query_row(
                &format!("SELECT {TERMINAL_COLS} FROM terminals WHERE id = ?1"),
                [i64_of(id)],
                Self::terminal_from_row,
            )
            .optional()?)
    }

    pub fn terminals(&self) -> anyhow::Result<Vec<Terminal>> {
        let mut st = self.db.prepare(&format!(
            "SELECT {TERMINAL_COLS} FROM terminals ORDER BY id"
        ))?;
        let rows = st.query_map([], Self::terminal_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    pub fn lock_state(
        &self,
        username: &str,
        terminal_id: u64,
        now_ms: u64,
    ) -> anyhow::Result<LockState> {
        let until: Option<i64> = self
            .db
            .query_row(
                "SELECT locked_until_ms FROM login_failures WHERE username = ?1 AND terminal_id = ?2",
                params![username, i64_of(terminal_id)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(match until.map(u64_of) {
            Some(u) if u > now_ms => LockState::LockedFor {
                retry_after_ms: u - now_ms,
            },
            _ => LockState::Open,
        })
    }

    /// Starts a login attempt for `username` on `terminal_id` before its password is checked
    /// ([`lockout::begin`]): refused while the pair is locked, otherwise counted (and the pair
    /// locked at once when this attempt reaches the lockout count), in one transaction.
    pub fn begin_attempt(
        &mut self,
        username: &str,
        terminal_id: u64,
        now_ms: u64,
    ) -> anyhow::Result<lockout::Attempt> {
        let tx = self.db.transaction()?;
        let (failures, until): (i64, i64) = tx
            .query_row(
                "SELECT failures, locked_until_ms FROM login_failures
                 WHERE username = ?1 AND terminal_id = ?2",
                params![username, i64_of(terminal_id)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?
            .unwrap_or((0, 0));
        let failures = u32::try_from(failures).unwrap_or(u32::MAX);
        let attempt = lockout::begin(failures, u64_of(until), now_ms);
        if let lockout::Attempt::Counted {
            failures,
            locked_until_ms,
        } = attempt
        {
            tx.execute(
                "INSERT INTO login_failures (username, terminal_id, failures, locked_until_ms)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (username, terminal_id)
                 DO UPDATE SET failures = excluded.failures, locked_until_ms = excluded.locked_until_ms",
                params![
                    username,
                    i64_of(terminal_id),
                    i64::from(failures),
                    i64_of(locked_until_ms.unwrap_or(0))
                ],
            )?;
        }
        tx.commit()?;
        Ok(attempt)
    }

    /// Attempts counted for the pair since its last success.
    pub fn failures(&self, username: &str, terminal_id: u64) -> anyhow::Result<u32> {
        let n: Option<i64> = self
            .db
            .query_row(
                "SELECT failures FROM login_failures WHERE username = ?1 AND terminal_id = ?2",
                params![username, i64_of(terminal_id)],
                |r| r.get(0),
            )
            .optional()?;
        Ok(u32::try_from(n.unwrap_or(0)).unwrap_or(u32::MAX))
    }

    pub fn clear_failures(&mut self, username: &str, terminal_id: u64) -> anyhow::Result<()> {
        self.db.execute(
            "DELETE FROM login_failures WHERE username = ?1 AND terminal_id = ?2",
            params![username, i64_of(terminal_id)],
        )?;
        Ok(())
    }
}

type Job = Box<dyn FnOnce(&mut Directory) + Send>;

/// The front's way to the directory: a bounded queue to the one thread that owns it.
#[derive(Clone)]
pub struct DirectoryHandle {
    tx: mpsc::Sender<Job>,
}

/// The directory thread is gone or its queue is full.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("directory is busy ({DIRECTORY_REQUESTS_MAX} requests queued)")]
    Busy,
    #[error("directory stopped")]
    Stopped,
    #[error(transparent)]
    Db(#[from] anyhow::Error),
}

impl DirectoryHandle {
    /// Starts the directory thread on `dir`.
    pub fn spawn(dir: Directory) -> anyhow::Result<DirectoryHandle> {
        let (tx, mut rx) = mpsc::channel::<Job>(DIRECTORY_REQUESTS_MAX);
        std::thread::Builder::new()
            .name("frank-directory".into())
            .spawn(move || {
                let mut dir = dir;
                while let Some(job) = rx.blocking_recv() {
                    job(&mut dir);
                }
            })
            .context("starting the directory thread")?;
        Ok(DirectoryHandle { tx })
    }

    /// Runs `f` on the directory thread and returns its result.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Directory) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, DirectoryError> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let job: Job = Box::new(move |d| {
            let _ = reply_tx.send(f(d));
        });
        self.tx.try_send(job).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => DirectoryError::Busy,
            mpsc::error::TrySendError::Closed(_) => DirectoryError::Stopped,
        })?;
        Ok(reply_rx.await.map_err(|_| DirectoryError::Stopped)??)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> (tempfile::TempDir, Directory) {
        let t = tempfile::tempdir().unwrap();
        let d = Directory::open(&t.path().join("v.db")).unwrap();
        (t, d)
    }

    #[test]
    fn migrations_are_versioned_and_idempotent() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("v.db");
        let d = Directory::open(&p).unwrap();
        assert_eq!(d.schema_version().unwrap(), MIGRATIONS.len() as i64);
        drop(d);
        assert_eq!(
            Directory::open(&p).unwrap().schema_version().unwrap(),
            MIGRATIONS.len() as i64
        );
    }

    #[test]
    fn enrollment_needs_the_code_and_is_idempotent_per_key() {
        let (_t, mut d) = dir();
        let (acct, code) = d.add_account("Main St", 1).unwrap();
        assert_eq!(
            d.enroll("nope", "t", [1; 32], 2).unwrap(),
            EnrollOutcome::BadCode
        );
        let EnrollOutcome::Enrolled(t1) = d.enroll(&code, "t", [1; 32], 2).unwrap() else {
            panic!()
        };
        assert_eq!(t1.account_id, acct.id);
        let EnrollOutcome::Enrolled(again) = d.enroll(&code, "t", [1; 32], 3).unwrap() else {
            panic!()
        };
        assert_eq!(again.id, t1.id);
        assert_eq!(d.terminal(t1.id).unwrap().unwrap().device_key, [1; 32]);
        // The first code enrolls one terminal.
        assert_eq!(
            d.enroll(&code, "t2", [2; 32], 4).unwrap(),
            EnrollOutcome::BadCode
        );
    }

    #[test]
    fn codes_expire_run_out_and_rotate() {
        let (_t, mut d) = dir();
        let (acct, first) = d.add_account("Main St", 1).unwrap();
        let policy = CodePolicy {
            uses: 2,
            valid_ms: 1_000,
        };
        let issued = d.rotate_enrollment_code(acct.id, policy, 10).unwrap();
        assert_eq!((issued.uses, issued.expires_ms), (2, 1_010));
        // Rotation ends the earlier code.
        assert_eq!(
            d.enroll(&first, "a", [1; 32], 11).unwrap(),
            EnrollOutcome::BadCode
        );
        assert!(matches!(
            d.enroll(&issued.code, "a", [1; 32], 11).unwrap(),
            EnrollOutcome::Enrolled(_)
        ));
        // Expired: no new terminal, but the enrolled key's retry still learns its terminal.
        assert_eq!(
            d.enroll(&issued.code, "b", [2; 32], 1_010).unwrap(),
            EnrollOutcome::BadCode
        );
        assert!(matches!(
            d.enroll(&issued.code, "a", [1; 32], 5_000).unwrap(),
            EnrollOutcome::Enrolled(_)
        ));
        let again = d.rotate_enrollment_code(acct.id, policy, 20).unwrap();
        assert!(matches!(
            d.enroll(&again.code, "b", [2; 32], 21).unwrap(),
            EnrollOutcome::Enrolled(_)
        ));
        assert!(matches!(
            d.enroll(&again.code, "c", [3; 32], 22).unwrap(),
            EnrollOutcome::Enrolled(_)
        ));
        assert_eq!(
            d.enroll(&again.code, "d", [4; 32], 23).unwrap(),
            EnrollOutcome::BadCode,
            "two uses"
        );
        assert!(
            d.rotate_enrollment_code(
                acct.id,
                CodePolicy {
                    uses: 0,
                    valid_ms: 1
                },
                1
            )
            .is_err()
        );
        assert!(d.rotate_enrollment_code(99, policy, 1).is_err());
    }

    #[test]
    fn another_accounts_key_and_revoked_keys_look_like_a_bad_code() {
        let (_t, mut d) = dir();
        let (a, code_a) = d.add_account("A", 1).unwrap();
        let (_b, code_b) = d.add_account("B", 1).unwrap();
        let EnrollOutcome::Enrolled(t) = d.enroll(&code_a, "t", [7; 32], 2).unwrap() else {
            panic!()
        };
        assert_eq!(t.account_id, a.id);
        assert_eq!(
            d.enroll(&code_b, "t", [7; 32], 3).unwrap(),
            EnrollOutcome::BadCode
        );
        assert!(d.revoke_terminal(t.id, 4).unwrap());
        assert!(!d.revoke_terminal(999, 4).unwrap());
        assert_eq!(d.terminal(t.id).unwrap().unwrap().revoked_ms, Some(4));
        let fresh = d
            .rotate_enrollment_code(a.id, CodePolicy::default(), 5)
            .unwrap();
        assert_eq!(
            d.enroll(&fresh.code, "t", [7; 32], 6).unwrap(),
            EnrollOutcome::BadCode
        );
    }

    #[test]
    fn revocations_are_seen_when_another_connection_commits() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("v.db");
        let mut front = Directory::open(&p).unwrap();
        let (acct, code) = front.add_account("A", 1).unwrap();
        front
            .add_clerk(acct.id, "alice", "correct horse", false, 1)
            .unwrap();
        let EnrollOutcome::Enrolled(term) = front.enroll(&code, "t", [1; 32], 2).unwrap() else {
            panic!()
        };
        assert_eq!(
            front.revocations_if_changed().unwrap(),
            Some(Revocations::default())
        );
        assert_eq!(front.revocations_if_changed().unwrap(), None);
        let mut cli = Directory::open(&p).unwrap();
        assert!(cli.revoke_terminal(term.id, 3).unwrap());
        assert!(cli.disable_clerk("alice", 3).unwrap());
        assert!(!cli.disable_clerk("nobody", 3).unwrap());
        let r = front.revocations_if_changed().unwrap().unwrap();
        assert!(r.terminals.contains(&term.id));
        assert!(r.clerks.contains("alice"));
        assert_eq!(front.clerk("alice").unwrap().unwrap().disabled_ms, Some(3));
    }

    #[test]
    fn clerks_hash_passwords_and_reject_bad_names() {
        let (_t, mut d) = dir();
        let (acct, _) = d.add_account("A", 1).unwrap();
        let c = d
            .add_clerk(acct.id, "alice", "correct horse", false, 1)
            .unwrap();
        assert!(c.password_hash.starts_with("$argon2id$"));
        assert!(!format!("{c:?}").contains("argon2"));
        assert!(verify_password("correct horse", &c.password_hash));
        assert!(!verify_password("wrong horse", &c.password_hash));
        assert!(
            d.add_clerk(acct.id, "alice", "correct horse", false, 1)
                .unwrap_err()
                .to_string()
                .contains("already exists")
        );
        assert!(
            d.add_clerk(acct.id, "bad name", "correct horse", false, 1)
                .is_err()
        );
        assert!(
            d.add_clerk(acct.id, "bob", "short", false, 1)
                .unwrap_err()
                .to_string()
                .contains("at least")
        );
        assert!(
            d.add_clerk(99, "carol", "correct horse", false, 1)
                .unwrap_err()
                .to_string()
                .contains("no account")
        );
    }

    #[test]
    fn attempts_count_before_the_check_and_lock_at_the_fifth() {
        let (_t, mut d) = dir();
        for i in 1..=4 {
            assert_eq!(
                d.begin_attempt("alice", 1, 1000).unwrap(),
                lockout::Attempt::Counted {
                    failures: i,
                    locked_until_ms: None
                }
            );
        }
        let fifth = d.begin_attempt("alice", 1, 1000).unwrap();
        assert_eq!(
            fifth,
            lockout::Attempt::Counted {
                failures: 5,
                locked_until_ms: Some(1000 + lockout::LOCK_MS_BASE)
            }
        );
        // Locked from the fifth attempt's start, before its password is known.
        assert!(matches!(
            d.begin_attempt("alice", 1, 1001).unwrap(),
            lockout::Attempt::Locked { .. }
        ));
        assert_eq!(
            d.failures("alice", 1).unwrap(),
            5,
            "a locked attempt is not counted"
        );
        assert!(matches!(
            d.lock_state("alice", 1, 1001).unwrap(),
            LockState::LockedFor { .. }
        ));
        assert_eq!(
            d.lock_state("alice", 2, 1001).unwrap(),
            LockState::Open,
            "per terminal"
        );
        d.clear_failures("alice", 1).unwrap();
        assert_eq!(d.lock_state("alice", 1, 1001).unwrap(), LockState::Open);
        assert_eq!(d.failures("alice", 1).unwrap(), 0);
    }
}
