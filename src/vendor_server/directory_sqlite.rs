//! The directory in SQLite: `vendor.db` in the data directory (the embedded default).
//!
//! WAL, `synchronous = FULL`, foreign keys on. The admin CLI writes through its own connection;
//! the serving vendor notices its commits by `PRAGMA data_version`.

use super::directory::{
    Account, Clerk, ClerkInsert, CodeRow, DirectoryStore, EnrollOutcome, EnrollStep, NewClerk,
    Revocations, StoredCode, Terminal, enroll_step, i64_of, u64_of,
};
use super::lockout;
use anyhow::{Context, bail};
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;

/// Versioned migrations: entry `i` moves `user_version` from `i` to `i + 1`.
/// A new failure record of a name that is no clerk's: past
/// [`super::directory::UNKNOWN_NAME_FAILURES_PER_TERMINAL_MAX`] such records on the terminal, its
/// unlocked ones of unknown names (but this attempt's) go.
const PRUNE_UNKNOWN_NAME_FAILURES_SQL: &str = "DELETE FROM login_failures
     WHERE terminal_id = ?2 AND username <> ?1 AND locked_until_ms <= ?3
       AND username NOT IN (SELECT username FROM clerks)
       AND (SELECT COUNT(*) FROM login_failures
            WHERE terminal_id = ?2 AND username NOT IN (SELECT username FROM clerks)) > ?4";

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

const TERMINAL_COLS: &str = "id, account_id, name, device_key, revoked_ms";

/// The SQLite directory. Owned by one thread.
pub struct SqliteDirectory {
    db: Connection,
    /// `PRAGMA data_version` at the last [`DirectoryStore::revocations_if_changed`]: it moves
    /// when another connection (the admin CLI) commits.
    seen_data_version: Option<i64>,
}

impl SqliteDirectory {
    /// Opens (creating if needed) and migrates the database at `path`.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        // Created 0600 before SQLite opens it (password hashes): -wal and -shm take its mode.
        crate::datafiles::private_file(path)?;
        let db = Connection::open(path).with_context(|| format!("opening {}", path.display()))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        db.pragma_update(None, "foreign_keys", "ON")?;
        db.busy_timeout(std::time::Duration::from_secs(5))?;
        let mut d = SqliteDirectory {
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

    fn terminal_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Terminal> {
        let key: Vec<u8> = r.get(3)?;
        let device_key = <[u8; 32]>::try_from(key.as_slice()).unwrap_or([0; 32]);
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

    fn account_exists(db: &Connection, id: u64) -> anyhow::Result<bool> {
        Ok(db
            .query_row("SELECT 1 FROM accounts WHERE id = ?1", [i64_of(id)], |r| {
                r.get::<_, i64>(0)
            })
            .optional()?
            .is_some())
    }

    fn store_code(
        tx: &rusqlite::Transaction<'_>,
        account_id: u64,
        code: &StoredCode,
        now_ms: u64,
    ) -> anyhow::Result<()> {
        tx.execute(
            "INSERT INTO enrollment_codes (code_sha256, account_id, created_ms, expires_ms, uses_left)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                code.sha256.to_vec(),
                i64_of(account_id),
                i64_of(now_ms),
                i64_of(code.expires_ms),
                i64::from(code.uses)
            ],
        )?;
        Ok(())
    }
}

impl DirectoryStore for SqliteDirectory {
    fn schema_version(&mut self) -> anyhow::Result<i64> {
        Ok(self.db.query_row("PRAGMA user_version", [], |r| r.get(0))?)
    }

    fn insert_account(
        &mut self,
        name: &str,
        code: &StoredCode,
        now_ms: u64,
    ) -> anyhow::Result<u64> {
        let tx = self.db.transaction()?;
        // The column predates enrollment_codes (migration 2); it holds no usable code.
        tx.execute(
            "INSERT INTO accounts (name, enrollment_code_sha256, created_ms) VALUES (?1, ?2, ?3)",
            params![name, vec![0u8; 32], i64_of(now_ms)],
        )?;
        let id = u64_of(tx.last_insert_rowid());
        Self::store_code(&tx, id, code, now_ms)?;
        tx.commit()?;
        Ok(id)
    }

    fn replace_codes(
        &mut self,
        account_id: u64,
        code: &StoredCode,
        now_ms: u64,
    ) -> anyhow::Result<bool> {
        let tx = self.db.transaction()?;
        if !Self::account_exists(&tx, account_id)? {
            return Ok(false);
        }
        tx.execute(
            "DELETE FROM enrollment_codes WHERE account_id = ?1",
            [i64_of(account_id)],
        )?;
        Self::store_code(&tx, account_id, code, now_ms)?;
        tx.commit()?;
        Ok(true)
    }

    fn accounts(&mut self) -> anyhow::Result<Vec<Account>> {
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

    fn insert_clerk(&mut self, c: &NewClerk<'_>, now_ms: u64) -> anyhow::Result<ClerkInsert> {
        let tx = self.db.transaction()?;
        if !Self::account_exists(&tx, c.account_id)? {
            return Ok(ClerkInsert::NoAccount);
        }
        let inserted = tx.execute(
            "INSERT INTO clerks (account_id, username, password_hash, role, created_ms)
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (username) DO NOTHING",
            params![
                i64_of(c.account_id),
                c.username,
                c.password_hash,
                c.role,
                i64_of(now_ms)
            ],
        )?;
        if inserted == 0 {
            return Ok(ClerkInsert::UsernameTaken);
        }
        let id = u64_of(tx.last_insert_rowid());
        tx.commit()?;
        Ok(ClerkInsert::Added { id })
    }

    fn clerk(&mut self, username: &str) -> anyhow::Result<Option<Clerk>> {
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

    fn enroll(
        &mut self,
        code_sha256: &[u8; 32],
        name: &str,
        device_key: [u8; 32],
        now_ms: u64,
    ) -> anyhow::Result<EnrollOutcome> {
        // IMMEDIATE: the write lock from the first read, so two enrollments cannot both read
        // a code's last use.
        let tx = self
            .db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let code: Option<CodeRow> = tx
            .query_row(
                "SELECT account_id, expires_ms, uses_left FROM enrollment_codes WHERE code_sha256 = ?1",
                [code_sha256.to_vec()],
                |r| {
                    Ok(CodeRow {
                        account_id: u64_of(r.get(0)?),
                        expires_ms: u64_of(r.get(1)?),
                        uses_left: u64_of(r.get(2)?),
                    })
                },
            )
            .optional()?;
        let by_key = Self::terminal_by_key_in(&tx, &device_key)?;
        match enroll_step(code, by_key, now_ms) {
            EnrollStep::Refuse => Ok(EnrollOutcome::BadCode),
            EnrollStep::Existing(t) => Ok(EnrollOutcome::Enrolled(t)),
            EnrollStep::Insert { account_id } => {
                tx.execute(
                    "INSERT INTO terminals (account_id, name, device_key, enrolled_ms) VALUES (?1, ?2, ?3, ?4)",
                    params![i64_of(account_id), name, device_key.to_vec(), i64_of(now_ms)],
                )?;
                let id = u64_of(tx.last_insert_rowid());
                tx.execute(
                    "UPDATE enrollment_codes SET uses_left = uses_left - 1 WHERE code_sha256 = ?1",
                    [code_sha256.to_vec()],
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
        }
    }

    fn revoke_terminal(&mut self, id: u64, now_ms: u64) -> anyhow::Result<bool> {
        let exists = self.terminal(id)?.is_some();
        self.db.execute(
            "UPDATE terminals SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
            params![i64_of(id), i64_of(now_ms)],
        )?;
        Ok(exists)
    }

    fn disable_clerk(&mut self, username: &str, now_ms: u64) -> anyhow::Result<bool> {
        let exists = self.clerk(username)?.is_some();
        self.db.execute(
            "UPDATE clerks SET disabled_ms = ?2 WHERE username = ?1 AND disabled_ms IS NULL",
            params![username, i64_of(now_ms)],
        )?;
        Ok(exists)
    }

    fn revocations(&mut self) -> anyhow::Result<Revocations> {
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

    fn revocations_if_changed(&mut self) -> anyhow::Result<Option<Revocations>> {
        let v: i64 = self.db.query_row("PRAGMA data_version", [], |r| r.get(0))?;
        if self.seen_data_version == Some(v) {
            return Ok(None);
        }
        self.seen_data_version = Some(v);
        self.revocations().map(Some)
    }

    fn terminal(&mut self, id: u64) -> anyhow::Result<Option<Terminal>> {
        Ok(self
            .db
            .query_row(
                &format!("SELECT {TERMINAL_COLS} FROM terminals WHERE id = ?1"),
                [i64_of(id)],
                Self::terminal_from_row,
            )
            .optional()?)
    }

    fn terminals(&mut self, account_id: Option<u64>) -> anyhow::Result<Vec<Terminal>> {
        let mut st = self.db.prepare(&format!(
            "SELECT {TERMINAL_COLS} FROM terminals WHERE ?1 IS NULL OR account_id = ?1 ORDER BY id"
        ))?;
        let rows = st.query_map([account_id.map(i64_of)], Self::terminal_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn login_record(
        &mut self,
        username: &str,
        terminal_id: u64,
    ) -> anyhow::Result<Option<(u32, u64)>> {
        Ok(self
            .db
            .query_row(
                "SELECT failures, locked_until_ms FROM login_failures
                 WHERE username = ?1 AND terminal_id = ?2",
                params![username, i64_of(terminal_id)],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()?
            .map(|(n, until)| (u32::try_from(n).unwrap_or(u32::MAX), u64_of(until))))
    }

    fn begin_attempt(
        &mut self,
        username: &str,
        terminal_id: u64,
        now_ms: u64,
    ) -> anyhow::Result<lockout::Attempt> {
        let tx = self
            .db
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
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
        if failures == 0 {
            tx.execute(
                PRUNE_UNKNOWN_NAME_FAILURES_SQL,
                params![
                    username,
                    i64_of(terminal_id),
                    i64_of(now_ms),
                    super::directory::UNKNOWN_NAME_FAILURES_PER_TERMINAL_MAX
                ],
            )?;
        }
        tx.commit()?;
        Ok(attempt)
    }

    fn clear_failures(&mut self, username: &str, terminal_id: u64) -> anyhow::Result<()> {
        self.db.execute(
            "DELETE FROM login_failures WHERE username = ?1 AND terminal_id = ?2",
            params![username, i64_of(terminal_id)],
        )?;
        Ok(())
    }
}
