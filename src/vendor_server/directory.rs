//! The vendor's directory: accounts, clerks, enrolled terminals, enrollment codes and login
//! failures.
//!
//! Two backends behind one [`DirectoryStore`] interface: SQLite (`vendor.db` in the data
//! directory, the embedded default; [`super::directory_sqlite`]) and PostgreSQL (the ledger's
//! database and schema when `--database postgres://…` is given, so every vendor front on it
//! shares one directory; [`super::directory_pg`]). [`Directory`] holds the rules both share —
//! name checks, password hashing, code issuing, the enrollment decision — and the backends only
//! store.
//!
//! The QUIC front never holds a database connection: it talks to [`DirectoryHandle`], which
//! forwards each call over a bounded channel to one thread that owns the connection.

use super::lockout;
use anyhow::{Context, bail};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, Salt, SaltString};
use sha2::{Digest, Sha256};
use std::path::Path;
use tokio::sync::{mpsc, oneshot};

/// Pending directory calls the front may queue before it gets `busy`.
pub const DIRECTORY_REQUESTS_MAX: usize = 1024;
pub const ENROLLMENT_CODE_BYTES: usize = 16;
pub const CLERK_NAME_BYTES_MAX: usize = 64;
pub const PASSWORD_BYTES_MIN: usize = 8;
/// Failure records of names that are not clerks kept per terminal: beyond this many, a new one
/// clears that terminal's unlocked records of unknown names (a name sprayer cannot grow the
/// table; clerks' records are never pruned this way, so their counts and locks hold).
pub const UNKNOWN_NAME_FAILURES_PER_TERMINAL_MAX: i64 = 64;

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

/// A count or time as the databases store it (they have no unsigned 64-bit integer).
pub(super) fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored count or time back (a negative one, which no writer stores, reads as 0).
pub(super) fn u64_of(v: i64) -> u64 {
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
    // What `SaltString::generate` does (16 bytes, B64), with the bytes from the operating
    // system: password-hash 0.5 takes a rand_core 0.6 generator, which rand 0.10 is not.
    let mut salt_bytes = [0u8; Salt::RECOMMENDED_LENGTH];
    crate::clock::fill_from_os(&mut salt_bytes).context("reading random bytes for a salt")?;
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| anyhow::anyhow!("encoding the password's salt: {e}"))?;
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

/// An enrollment code as stored: its SHA-256, never the code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredCode {
    pub sha256: [u8; 32],
    pub expires_ms: u64,
    pub uses: u32,
}

/// A clerk to add (the password already hashed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewClerk<'a> {
    pub account_id: u64,
    pub username: &'a str,
    pub password_hash: &'a str,
    pub role: &'a str,
}

/// What storing a new clerk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClerkInsert {
    Added { id: u64 },
    NoAccount,
    UsernameTaken,
}

/// An enrollment code's row, as the enrollment decision reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodeRow {
    pub account_id: u64,
    pub expires_ms: u64,
    pub uses_left: u64,
}

/// What an enrollment does, decided from what the store read inside its transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollStep {
    /// No such code, an expired or used-up code, or a key enrolled elsewhere or revoked.
    Refuse,
    /// The key is already this account's live terminal: answer it, use nothing.
    Existing(Terminal),
    /// Enroll a new terminal under the account and use one of the code's uses.
    Insert { account_id: u64 },
}

/// The enrollment rule both backends apply: enrolling the same device key again under the
/// code's account returns its terminal and uses nothing (a retry whose answer was lost), even
/// once the code is used up or expired. A key enrolled under another account, or revoked, is
/// refused like a bad code: an enrollment never reveals another account's ids.
pub fn enroll_step(code: Option<CodeRow>, by_key: Option<Terminal>, now_ms: u64) -> EnrollStep {
    let Some(code) = code else {
        return EnrollStep::Refuse;
    };
    if let Some(t) = by_key {
        return if t.account_id == code.account_id && t.revoked_ms.is_none() {
            EnrollStep::Existing(t)
        } else {
            EnrollStep::Refuse
        };
    }
    if code.expires_ms <= now_ms || code.uses_left == 0 {
        return EnrollStep::Refuse;
    }
    EnrollStep::Insert {
        account_id: code.account_id,
    }
}

/// What a directory backend stores. Each method is one transaction; the rules live in
/// [`Directory`] and [`enroll_step`], so both backends behave alike (the conformance suite in
/// `tests/directory_conformance.rs` runs on both).
pub trait DirectoryStore: Send {
    /// The backend's schema version (its migration count).
    fn schema_version(&mut self) -> anyhow::Result<i64>;
    /// Stores a new account and its first code; returns the account's database-assigned id.
    fn insert_account(&mut self, name: &str, code: &StoredCode, now_ms: u64)
    -> anyhow::Result<u64>;
    /// Ends every code of the account and stores `code`; `false` when there is no account.
    fn replace_codes(
        &mut self,
        account_id: u64,
        code: &StoredCode,
        now_ms: u64,
    ) -> anyhow::Result<bool>;
    fn accounts(&mut self) -> anyhow::Result<Vec<Account>>;
    /// The account's name (the office's name on receipts and reports); `None`: no account.
    fn account_name(&mut self, account_id: u64) -> anyhow::Result<Option<String>>;
    fn insert_clerk(&mut self, clerk: &NewClerk<'_>, now_ms: u64) -> anyhow::Result<ClerkInsert>;
    fn clerk(&mut self, username: &str) -> anyhow::Result<Option<Clerk>>;
    /// Reads the code (by digest) and the key's terminal, applies [`enroll_step`], and on
    /// `Insert` stores the terminal and uses one of the code's uses — one transaction, so two
    /// enrollments racing for a code's last use cannot both win.
    fn enroll(
        &mut self,
        code_sha256: &[u8; 32],
        name: &str,
        device_key: [u8; 32],
        now_ms: u64,
    ) -> anyhow::Result<EnrollOutcome>;
    /// `false` when there is no such terminal; revoking twice keeps the first time.
    fn revoke_terminal(&mut self, id: u64, now_ms: u64) -> anyhow::Result<bool>;
    /// `false` when there is no such clerk; disabling twice keeps the first time.
    fn disable_clerk(&mut self, username: &str, now_ms: u64) -> anyhow::Result<bool>;
    fn revocations(&mut self) -> anyhow::Result<Revocations>;
    /// [`Self::revocations`], but only when they may have changed since the last call (another
    /// process committed); the first call always reads.
    fn revocations_if_changed(&mut self) -> anyhow::Result<Option<Revocations>>;
    fn terminal(&mut self, id: u64) -> anyhow::Result<Option<Terminal>>;
    /// Every terminal, or one account's, by id.
    fn terminals(&mut self, account_id: Option<u64>) -> anyhow::Result<Vec<Terminal>>;
    /// `(failures, locked_until_ms)` of the pair, if it has a record.
    fn login_record(
        &mut self,
        username: &str,
        terminal_id: u64,
    ) -> anyhow::Result<Option<(u32, u64)>>;
    /// Reads the pair's record, applies [`lockout::begin`] and stores a counted attempt — one
    /// transaction, so two fronts counting at once both count.
    fn begin_attempt(
        &mut self,
        username: &str,
        terminal_id: u64,
        now_ms: u64,
    ) -> anyhow::Result<lockout::Attempt>;
    fn clear_failures(&mut self, username: &str, terminal_id: u64) -> anyhow::Result<()>;
}

/// The directory: its rules over one backend. Owned by one thread (see [`DirectoryHandle`]).
pub struct Directory {
    store: Box<dyn DirectoryStore>,
}

/// A fresh random enrollment code: the code to show once and what the store keeps.
fn new_code(policy: CodePolicy, now_ms: u64) -> anyhow::Result<(IssuedCode, StoredCode)> {
    let mut raw = [0u8; ENROLLMENT_CODE_BYTES];
    crate::clock::fill_from_os(&mut raw).context("reading random bytes for an enrollment code")?;
    let code = hex::encode(raw);
    let expires_ms = now_ms.saturating_add(policy.valid_ms);
    let stored = StoredCode {
        sha256: code_digest(&code),
        expires_ms,
        uses: policy.uses,
    };
    Ok((
        IssuedCode {
            code,
            expires_ms,
            uses: policy.uses,
        },
        stored,
    ))
}

impl Directory {
    /// Opens (creating if needed) and migrates the SQLite directory at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        Ok(Self::with_store(Box::new(
            super::directory_sqlite::SqliteDirectory::open(path)?,
        )))
    }

    /// Connects to and migrates the PostgreSQL directory at `url` (the ledger's database and
    /// schema). Blocks: call it off any async runtime (the directory thread, a CLI).
    /// In a build without the `postgres` feature it refuses with [`crate::ledger::NO_POSTGRES`].
    pub fn open_postgres(url: &str) -> anyhow::Result<Self> {
        #[cfg(feature = "postgres")]
        return Ok(Self::with_store(Box::new(
            super::directory_pg::PgDirectory::open(url)?,
        )));
        #[cfg(not(feature = "postgres"))]
        {
            let _ = url;
            anyhow::bail!(crate::ledger::NO_POSTGRES)
        }
    }

    /// The directory that goes with the ledger `database`: PostgreSQL's own when it is a
    /// `postgres://` URL, otherwise the SQLite file `sqlite_path` (the data directory's
    /// `vendor.db`).
    pub fn open_for(database: &str, sqlite_path: &Path) -> anyhow::Result<Self> {
        if crate::ledger::is_postgres(database) {
            Self::open_postgres(database)
        } else {
            Self::open(sqlite_path)
        }
    }

    pub fn with_store(store: Box<dyn DirectoryStore>) -> Self {
        Directory { store }
    }

    pub fn schema_version(&mut self) -> anyhow::Result<i64> {
        self.store.schema_version()
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
        let (issued, stored) = new_code(CodePolicy::default(), now_ms)?;
        let id = self.store.insert_account(name, &stored, now_ms)?;
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
        let (issued, stored) = new_code(policy, now_ms)?;
        if !self.store.replace_codes(account_id, &stored, now_ms)? {
            bail!("no account {account_id}; see `frank vendor account list`");
        }
        Ok(issued)
    }

    pub fn accounts(&mut self) -> anyhow::Result<Vec<Account>> {
        self.store.accounts()
    }

    /// The account's name as `frank vendor account add` stored it (the office's name).
    pub fn account_name(&mut self, account_id: u64) -> anyhow::Result<Option<String>> {
        self.store.account_name(account_id)
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
        let hash = hash_password(password)?;
        let role = if supervisor { "supervisor" } else { "clerk" };
        let new = NewClerk {
            account_id,
            username,
            password_hash: &hash,
            role,
        };
        match self.store.insert_clerk(&new, now_ms)? {
            ClerkInsert::Added { id } => Ok(Clerk {
                id,
                account_id,
                username: username.to_string(),
                password_hash: hash,
                role: role.to_string(),
                disabled_ms: None,
            }),
            ClerkInsert::NoAccount => {
                bail!("no account {account_id}; create it with `frank vendor account add`")
            }
            ClerkInsert::UsernameTaken => bail!("clerk {username:?} already exists"),
        }
    }

    pub fn clerk(&mut self, username: &str) -> anyhow::Result<Option<Clerk>> {
        self.store.clerk(username)
    }

    /// Enrolls a terminal if `code` is a live enrollment code (not expired, uses left; looked
    /// up by its SHA-256, so timing says nothing about the code); see [`enroll_step`].
    pub fn enroll(
        &mut self,
        code: &str,
        name: &str,
        device_key: [u8; 32],
        now_ms: u64,
    ) -> anyhow::Result<EnrollOutcome> {
        self.store
            .enroll(&code_digest(code), name, device_key, now_ms)
    }

    /// Revokes a terminal: it can no longer log in, resume, or enroll its key again. `false`
    /// when there is no such terminal; revoking twice keeps the first time.
    pub fn revoke_terminal(&mut self, id: u64, now_ms: u64) -> anyhow::Result<bool> {
        self.store.revoke_terminal(id, now_ms)
    }

    /// Disables a clerk: no login, no resume. `false` when there is no such clerk.
    pub fn disable_clerk(&mut self, username: &str, now_ms: u64) -> anyhow::Result<bool> {
        self.store.disable_clerk(username, now_ms)
    }

    /// Every revoked terminal and disabled clerk.
    pub fn revocations(&mut self) -> anyhow::Result<Revocations> {
        self.store.revocations()
    }

    /// [`Self::revocations`], but only when another process (the admin CLI, another front)
    /// committed a revocation since the last call; the first call always reads.
    pub fn revocations_if_changed(&mut self) -> anyhow::Result<Option<Revocations>> {
        self.store.revocations_if_changed()
    }

    pub fn terminal(&mut self, id: u64) -> anyhow::Result<Option<Terminal>> {
        self.store.terminal(id)
    }

    pub fn terminals(&mut self) -> anyhow::Result<Vec<Terminal>> {
        self.store.terminals(None)
    }

    /// One account's terminals, by id.
    pub fn account_terminals(&mut self, account_id: u64) -> anyhow::Result<Vec<Terminal>> {
        self.store.terminals(Some(account_id))
    }

    pub fn lock_state(
        &mut self,
        username: &str,
        terminal_id: u64,
        now_ms: u64,
    ) -> anyhow::Result<LockState> {
        Ok(match self.store.login_record(username, terminal_id)? {
            Some((_, until)) if until > now_ms => LockState::LockedFor {
                retry_after_ms: until - now_ms,
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
        self.store.begin_attempt(username, terminal_id, now_ms)
    }

    /// Attempts counted for the pair since its last success.
    pub fn failures(&mut self, username: &str, terminal_id: u64) -> anyhow::Result<u32> {
        Ok(self
            .store
            .login_record(username, terminal_id)?
            .map_or(0, |(n, _)| n))
    }

    pub fn clear_failures(&mut self, username: &str, terminal_id: u64) -> anyhow::Result<()> {
        self.store.clear_failures(username, terminal_id)
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
    /// Starts the directory thread and opens the directory on it with `open` (a PostgreSQL
    /// directory blocks while it connects, so it must not open on an async runtime); answers
    /// once it is open, with `open`'s error if it failed.
    pub async fn start(
        open: impl FnOnce() -> anyhow::Result<Directory> + Send + 'static,
    ) -> anyhow::Result<DirectoryHandle> {
        let (tx, mut rx) = mpsc::channel::<Job>(DIRECTORY_REQUESTS_MAX);
        let (opened_tx, opened_rx) = oneshot::channel();
        std::thread::Builder::new()
            .name("frank-directory".into())
            .spawn(move || {
                let mut dir = match open() {
                    Ok(d) => {
                        let _ = opened_tx.send(Ok(()));
                        d
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                while let Some(job) = rx.blocking_recv() {
                    job(&mut dir);
                }
            })
            .context("starting the directory thread")?;
        opened_rx
            .await
            .map_err(|_| anyhow::anyhow!("the directory thread ended while opening"))??;
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
