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
use subtle::ConstantTimeEq;
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
];

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
}

#[derive(Clone, PartialEq, Eq)]
pub struct Clerk {
    pub id: u64,
    pub account_id: u64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
}

impl std::fmt::Debug for Clerk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clerk")
            .field("id", &self.id)
            .field("account_id", &self.account_id)
            .field("username", &self.username)
            .field("role", &self.role)
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

/// Synchronous access to the directory database. Owned by one thread.
pub struct Directory {
    db: Connection,
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
        let mut d = Directory { db };
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

    /// Creates an account; returns it and its enrollment code (shown once, stored hashed).
    pub fn add_account(&mut self, name: &str, now_ms: u64) -> anyhow::Result<(Account, String)> {
        let name = name.trim();
        if name.is_empty() || name.len() > CLERK_NAME_BYTES_MAX {
            bail!("account name must be 1..={CLERK_NAME_BYTES_MAX} characters");
        }
        if crate::logtext::has_control(name) {
            bail!("account name must not contain control characters (newline, tab, escape codes)");
        }
        let mut raw = [0u8; ENROLLMENT_CODE_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let code = hex::encode(raw);
        self.db.execute(
            "INSERT INTO accounts (name, enrollment_code_sha256, created_ms) VALUES (?1, ?2, ?3)",
            params![name, code_digest(&code).to_vec(), i64_of(now_ms)],
        )?;
        let id = u64_of(self.db.last_insert_rowid());
        Ok((
            Account {
                id,
                name: name.to_string(),
            },
            code,
        ))
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
        })
    }

    pub fn clerk(&self, username: &str) -> anyhow::Result<Option<Clerk>> {
        Ok(self
            .db
            .query_row(
                "SELECT id, account_id, username, password_hash, role FROM clerks WHERE username = ?1",
                [username],
                |r| {
                    Ok(Clerk {
                        id: u64_of(r.get(0)?),
                        account_id: u64_of(r.get(1)?),
                        username: r.get(2)?,
                        password_hash: r.get(3)?,
                        role: r.get(4)?,
                    })
                },
            )
            .optional()?)
    }

    /// Enrolls a terminal if `code` is some account's enrollment code (compared in constant
    /// time against each account's stored digest).
    pub fn enroll(
        &mut self,
        code: &str,
        name: &str,
        device_key: [u8; 32],
        now_ms: u64,
    ) -> anyhow::Result<EnrollOutcome> {
        let digest = code_digest(code);
        let mut account = None;
        {
            let mut st = self
                .db
                .prepare("SELECT id, enrollment_code_sha256 FROM accounts")?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let stored: Vec<u8> = r.get(1)?;
                if bool::from(stored.ct_eq(&digest)) {
                    account = Some(u64_of(r.get(0)?));
                }
            }
        }
        let Some(account_id) = account else {
            return Ok(EnrollOutcome::BadCode);
        };
        if let Some(t) = self.terminal_by_key(&device_key)? {
            // Re-enrolling the same device key is idempotent.
            return Ok(EnrollOutcome::Enrolled(t));
        }
        self.db.execute(
            "INSERT INTO terminals (account_id, name, device_key, enrolled_ms) VALUES (?1, ?2, ?3, ?4)",
            params![i64_of(account_id), name, device_key.to_vec(), i64_of(now_ms)],
        )?;
        Ok(EnrollOutcome::Enrolled(Terminal {
            id: u64_of(self.db.last_insert_rowid()),
            account_id,
            name: name.to_string(),
            device_key,
        }))
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
        })
    }

    fn terminal_by_key(&self, key: &[u8; 32]) -> anyhow::Result<Option<Terminal>> {
        Ok(self
            .db
            .query_row(
                "SELECT id, account_id, name, device_key FROM terminals WHERE device_key = ?1",
                [key.to_vec()],
                Self::terminal_from_row,
            )
            .optional()?)
    }

    pub fn terminal(&self, id: u64) -> anyhow::Result<Option<Terminal>> {
        Ok(self
            .db
            .query_row(
                "SELECT id, account_id, name, device_key FROM terminals WHERE id = ?1",
                [i64_of(id)],
                Self::terminal_from_row,
            )
            .optional()?)
    }

    pub fn terminals(&self) -> anyhow::Result<Vec<Terminal>> {
        let mut st = self
            .db
            .prepare("SELECT id, account_id, name, device_key FROM terminals ORDER BY id")?;
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

    /// Records a failed password; returns the failure count and the lock it now causes.
    pub fn record_failure(
        &mut self,
        username: &str,
        terminal_id: u64,
        now_ms: u64,
    ) -> anyhow::Result<(u32, LockState)> {
        let tx = self.db.transaction()?;
        let failures: i64 = tx
            .query_row(
                "SELECT failures FROM login_failures WHERE username = ?1 AND terminal_id = ?2",
                params![username, i64_of(terminal_id)],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let failures = u32::try_from(failures)
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        let lock_ms = lockout::lock_ms(failures);
        let until = lock_ms.map(|ms| now_ms.saturating_add(ms)).unwrap_or(0);
        tx.execute(
            "INSERT INTO login_failures (username, terminal_id, failures, locked_until_ms)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (username, terminal_id)
             DO UPDATE SET failures = excluded.failures, locked_until_ms = excluded.locked_until_ms",
            params![username, i64_of(terminal_id), i64::from(failures), i64_of(until)],
        )?;
        tx.commit()?;
        let state = match lock_ms {
            Some(ms) => LockState::LockedFor { retry_after_ms: ms },
            None => LockState::Open,
        };
        Ok((failures, state))
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
        assert_eq!(Directory::open(&p).unwrap().schema_version().unwrap(), 1);
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
    fn failures_lock_after_five() {
        let (_t, mut d) = dir();
        for i in 1..=4 {
            assert_eq!(
                d.record_failure("alice", 1, 1000).unwrap(),
                (i, LockState::Open)
            );
        }
        let (n, lock) = d.record_failure("alice", 1, 1000).unwrap();
        assert_eq!(n, 5);
        assert!(matches!(lock, LockState::LockedFor { .. }));
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
    }
}
