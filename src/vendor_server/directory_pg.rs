//! The directory in PostgreSQL: the ledger's database and schema (migration 10 of
//! [`crate::ledger::postgres`]), so every vendor front on one database shares accounts,
//! clerks, terminals, enrollment codes and login failures. No `vendor.db` in this mode.
//!
//! The directory thread owns one connection and a current-thread runtime to drive it; each
//! call is one READ COMMITTED transaction that locks what it will change (`FOR UPDATE`), so two
//! fronts racing for a code's last use, or counting a clerk's failures at once, serialize on the
//! row. A connection that broke is dropped and a new one made on the next call (the call that met
//! the break fails; the front answers it `internal`, and the client retries). A transaction that
//! loses a uniqueness race (two fronts enrolling one device key) is retried once the winner
//! committed, and then reads the winner's terminal.

use super::directory::{
    Account, Clerk, ClerkInsert, CodeRow, DirectoryStore, EnrollOutcome, EnrollStep, NewClerk,
    Revocations, StoredCode, Terminal, enroll_step, i64_of, u64_of,
};
use super::lockout;
use anyhow::Context;
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, Row};

/// Most attempts of one transaction that lost a uniqueness or serialization race.
const RACE_ATTEMPTS_MAX: u32 = 3;

const TERMINAL_COLS: &str = "id, account_id, name, device_key, revoked_ms";

/// The PostgreSQL directory. Owned by the directory thread (or a CLI command).
pub struct PgDirectory {
    rt: tokio::runtime::Runtime,
    url: String,
    client: Option<Client>,
    /// `directory_revision.revocations` at the last look: every revocation bumps it.
    seen_revision: Option<i64>,
}

/// A session as the ledger's connections get it: bounded connect time, `synchronous_commit`
/// at least `on`, several hosts (`target_session_attrs=read-write` picks the primary).
async fn connect(url: &str) -> anyhow::Result<Client> {
    crate::ledger::pg_conn::Target::open_url(url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the directory database: {e}"))
}

/// A race another front won: retry the transaction.
fn lost_race(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|c| {
            *c == SqlState::UNIQUE_VIOLATION
                || *c == SqlState::T_R_SERIALIZATION_FAILURE
                || *c == SqlState::T_R_DEADLOCK_DETECTED
        })
}

fn terminal_of(r: &Row) -> Terminal {
    let key: Vec<u8> = r.get(3);
    Terminal {
        id: u64_of(r.get(0)),
        account_id: u64_of(r.get(1)),
        name: r.get(2),
        // The column is CHECKed to 32 bytes.
        device_key: <[u8; 32]>::try_from(key.as_slice()).unwrap_or([0; 32]),
        revoked_ms: r.get::<_, Option<i64>>(4).map(u64_of),
    }
}

async fn terminal_by_key(
    c: &impl GenericClient,
    key: &[u8; 32],
) -> anyhow::Result<Option<Terminal>> {
    let key = key.to_vec();
    Ok(c.query_opt(
        &format!("SELECT {TERMINAL_COLS} FROM terminals WHERE device_key = $1"),
        &[&key],
    )
    .await?
    .as_ref()
    .map(terminal_of))
}

async fn account_exists(c: &impl GenericClient, id: u64) -> anyhow::Result<bool> {
    // FOR SHARE: the account cannot go away under the caller's insert.
    Ok(c.query_opt(
        "SELECT 1 FROM directory_accounts WHERE id = $1 FOR SHARE",
        &[&i64_of(id)],
    )
    .await?
    .is_some())
}

async fn store_code(
    c: &impl GenericClient,
    account_id: u64,
    code: &StoredCode,
    now_ms: u64,
) -> anyhow::Result<()> {
    c.execute(
        "INSERT INTO enrollment_codes (code_sha256, account_id, created_ms, expires_ms, uses_left)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            &code.sha256.to_vec(),
            &i64_of(account_id),
            &i64_of(now_ms),
            &i64_of(code.expires_ms),
            &i64::from(code.uses),
        ],
    )
    .await?;
    Ok(())
}

async fn bump_revision(c: &impl GenericClient) -> anyhow::Result<()> {
    c.execute(
        "UPDATE directory_revision SET revocations = revocations + 1",
        &[],
    )
    .await?;
    Ok(())
}

impl PgDirectory {
    /// Connects and migrates (the ledger's migrations: one schema). Blocks.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the directory's runtime")?;
        let mut d = PgDirectory {
            rt,
            url: url.to_string(),
            client: None,
            seen_revision: None,
        };
        d.rt.block_on(crate::ledger::postgres::migrate_url(url))
            .map_err(|e| anyhow::anyhow!("migrating the database: {e}"))?;
        d.run(async |_| Ok(()))?;
        Ok(d)
    }

    /// Runs `f` on the connection, connecting first if there is none or it broke.
    fn run<T>(
        &mut self,
        f: impl AsyncFnOnce(&mut Client) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let PgDirectory {
            rt, url, client, ..
        } = self;
        rt.block_on(async {
            if client.as_ref().is_none_or(Client::is_closed) {
                *client = None;
                *client = Some(connect(url).await?);
            }
            let Some(c) = client.as_mut() else {
                // Set just above.
                anyhow::bail!("no directory connection");
            };
            let out = f(c).await;
            if c.is_closed() {
                *client = None;
            }
            out
        })
    }

    /// [`Self::run`] for a transaction that may lose a race to another front: retried up to
    /// [`RACE_ATTEMPTS_MAX`] times.
    fn run_raced<T>(
        &mut self,
        f: impl AsyncFn(&mut Client) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        let mut attempt = 1;
        loop {
            match self.run(async |c| f(c).await) {
                Err(e) if attempt < RACE_ATTEMPTS_MAX && lost_race(&e) => attempt += 1,
                other => return other,
            }
        }
    }
}

impl DirectoryStore for PgDirectory {
    fn schema_version(&mut self) -> anyhow::Result<i64> {
        self.run(async |c| {
            Ok(
                c.query_one("SELECT COALESCE(MAX(version), 0) FROM schema_version", &[])
                    .await?
                    .get(0),
            )
        })
    }

    fn insert_account(
        &mut self,
        name: &str,
        code: &StoredCode,
        now_ms: u64,
    ) -> anyhow::Result<u64> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            let id: i64 = tx
                .query_one(
                    "INSERT INTO directory_accounts (name, created_ms) VALUES ($1, $2) RETURNING id",
                    &[&name, &i64_of(now_ms)],
                )
                .await?
                .get(0);
            let id = u64_of(id);
            store_code(&tx, id, code, now_ms).await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    fn replace_codes(
        &mut self,
        account_id: u64,
        code: &StoredCode,
        now_ms: u64,
    ) -> anyhow::Result<bool> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            if !account_exists(&tx, account_id).await? {
                return Ok(false);
            }
            tx.execute(
                "DELETE FROM enrollment_codes WHERE account_id = $1",
                &[&i64_of(account_id)],
            )
            .await?;
            store_code(&tx, account_id, code, now_ms).await?;
            tx.commit().await?;
            Ok(true)
        })
    }

    fn accounts(&mut self) -> anyhow::Result<Vec<Account>> {
        self.run(async |c| {
            Ok(
                c.query("SELECT id, name FROM directory_accounts ORDER BY id", &[])
                    .await?
                    .iter()
                    .map(|r| Account {
                        id: u64_of(r.get(0)),
                        name: r.get(1),
                    })
                    .collect(),
            )
        })
    }

    fn insert_clerk(&mut self, n: &NewClerk<'_>, now_ms: u64) -> anyhow::Result<ClerkInsert> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            if !account_exists(&tx, n.account_id).await? {
                return Ok(ClerkInsert::NoAccount);
            }
            let row = tx
                .query_opt(
                    "INSERT INTO clerks (account_id, username, password_hash, role, created_ms)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (username) DO NOTHING RETURNING id",
                    &[
                        &i64_of(n.account_id),
                        &n.username,
                        &n.password_hash,
                        &n.role,
                        &i64_of(now_ms),
                    ],
                )
                .await?;
            let Some(row) = row else {
                return Ok(ClerkInsert::UsernameTaken);
            };
            tx.commit().await?;
            Ok(ClerkInsert::Added {
                id: u64_of(row.get(0)),
            })
        })
    }

    fn clerk(&mut self, username: &str) -> anyhow::Result<Option<Clerk>> {
        self.run(async |c| {
            Ok(c.query_opt(
                "SELECT id, account_id, username, password_hash, role, disabled_ms
                 FROM clerks WHERE username = $1",
                &[&username],
            )
            .await?
            .map(|r| Clerk {
                id: u64_of(r.get(0)),
                account_id: u64_of(r.get(1)),
                username: r.get(2),
                password_hash: r.get(3),
                role: r.get(4),
                disabled_ms: r.get::<_, Option<i64>>(5).map(u64_of),
            }))
        })
    }

    fn enroll(
        &mut self,
        code_sha256: &[u8; 32],
        name: &str,
        device_key: [u8; 32],
        now_ms: u64,
    ) -> anyhow::Result<EnrollOutcome> {
        let digest = code_sha256.to_vec();
        self.run_raced(async |c| {
            let tx = c.transaction().await?;
            // The code's row lock orders enrollments with one code; the device key's UNIQUE
            // orders two codes enrolling one key (the loser retries and finds the terminal).
            let code = tx
                .query_opt(
                    "SELECT account_id, expires_ms, uses_left FROM enrollment_codes
                     WHERE code_sha256 = $1 FOR UPDATE",
                    &[&digest],
                )
                .await?
                .map(|r| CodeRow {
                    account_id: u64_of(r.get(0)),
                    expires_ms: u64_of(r.get(1)),
                    uses_left: u64_of(r.get(2)),
                });
            let by_key = terminal_by_key(&tx, &device_key).await?;
            match enroll_step(code, by_key, now_ms) {
                EnrollStep::Refuse => Ok(EnrollOutcome::BadCode),
                EnrollStep::Existing(t) => Ok(EnrollOutcome::Enrolled(t)),
                EnrollStep::Insert { account_id } => {
                    let id: i64 = tx
                        .query_one(
                            "INSERT INTO terminals (account_id, name, device_key, enrolled_ms)
                             VALUES ($1, $2, $3, $4) RETURNING id",
                            &[
                                &i64_of(account_id),
                                &name,
                                &device_key.to_vec(),
                                &i64_of(now_ms),
                            ],
                        )
                        .await?
                        .get(0);
                    tx.execute(
                        "UPDATE enrollment_codes SET uses_left = uses_left - 1 WHERE code_sha256 = $1",
                        &[&digest],
                    )
                    .await?;
                    tx.commit().await?;
                    Ok(EnrollOutcome::Enrolled(Terminal {
                        id: u64_of(id),
                        account_id,
                        name: name.to_string(),
                        device_key,
                        revoked_ms: None,
                    }))
                }
            }
        })
    }

    fn revoke_terminal(&mut self, id: u64, now_ms: u64) -> anyhow::Result<bool> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT revoked_ms FROM terminals WHERE id = $1 FOR UPDATE",
                    &[&i64_of(id)],
                )
                .await?
            else {
                return Ok(false);
            };
            if row.get::<_, Option<i64>>(0).is_none() {
                tx.execute(
                    "UPDATE terminals SET revoked_ms = $2 WHERE id = $1",
                    &[&i64_of(id), &i64_of(now_ms)],
                )
                .await?;
                bump_revision(&tx).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    fn disable_clerk(&mut self, username: &str, now_ms: u64) -> anyhow::Result<bool> {
        self.run(async |c| {
            let tx = c.transaction().await?;
            let Some(row) = tx
                .query_opt(
                    "SELECT disabled_ms FROM clerks WHERE username = $1 FOR UPDATE",
                    &[&username],
                )
                .await?
            else {
                return Ok(false);
            };
            if row.get::<_, Option<i64>>(0).is_none() {
                tx.execute(
                    "UPDATE clerks SET disabled_ms = $2 WHERE username = $1",
                    &[&username, &i64_of(now_ms)],
                )
                .await?;
                bump_revision(&tx).await?;
            }
            tx.commit().await?;
            Ok(true)
        })
    }

    fn revocations(&mut self) -> anyhow::Result<Revocations> {
        self.run(async |c| {
            let mut out = Revocations::default();
            for r in c
                .query("SELECT id FROM terminals WHERE revoked_ms IS NOT NULL", &[])
                .await?
            {
                out.terminals.insert(u64_of(r.get(0)));
            }
            for r in c
                .query(
                    "SELECT username FROM clerks WHERE disabled_ms IS NOT NULL",
                    &[],
                )
                .await?
            {
                out.clerks.insert(r.get(0));
            }
            Ok(out)
        })
    }

    fn revocations_if_changed(&mut self) -> anyhow::Result<Option<Revocations>> {
        let now: i64 = self.run(async |c| {
            Ok(
                c.query_one("SELECT revocations FROM directory_revision", &[])
                    .await?
                    .get(0),
            )
        })?;
        if self.seen_revision == Some(now) {
            return Ok(None);
        }
        let r = self.revocations()?;
        self.seen_revision = Some(now);
        Ok(Some(r))
    }

    fn terminal(&mut self, id: u64) -> anyhow::Result<Option<Terminal>> {
        self.run(async |c| {
            Ok(c.query_opt(
                &format!("SELECT {TERMINAL_COLS} FROM terminals WHERE id = $1"),
                &[&i64_of(id)],
            )
            .await?
            .as_ref()
            .map(terminal_of))
        })
    }

    fn terminals(&mut self, account_id: Option<u64>) -> anyhow::Result<Vec<Terminal>> {
        let account = account_id.map(i64_of);
        self.run(async |c| {
            Ok(c.query(
                &format!(
                    "SELECT {TERMINAL_COLS} FROM terminals
                     WHERE $1::BIGINT IS NULL OR account_id = $1 ORDER BY id"
                ),
                &[&account],
            )
            .await?
            .iter()
            .map(terminal_of)
            .collect())
        })
    }

    fn login_record(
        &mut self,
        username: &str,
        terminal_id: u64,
    ) -> anyhow::Result<Option<(u32, u64)>> {
        self.run(async |c| {
            Ok(c.query_opt(
                "SELECT failures, locked_until_ms FROM login_failures
                 WHERE username = $1 AND terminal_id = $2",
                &[&username, &i64_of(terminal_id)],
            )
            .await?
            .map(|r| {
                (
                    u32::try_from(r.get::<_, i64>(0)).unwrap_or(u32::MAX),
                    u64_of(r.get(1)),
                )
            }))
        })
    }

    fn begin_attempt(
        &mut self,
        username: &str,
        terminal_id: u64,
        now_ms: u64,
    ) -> anyhow::Result<lockout::Attempt> {
        let terminal = i64_of(terminal_id);
        self.run(async |c| {
            let tx = c.transaction().await?;
            // The row exists before it is locked, so two fronts' first attempts both count.
            tx.execute(
                "INSERT INTO login_failures (username, terminal_id, failures, locked_until_ms)
                 VALUES ($1, $2, 0, 0) ON CONFLICT DO NOTHING",
                &[&username, &terminal],
            )
            .await?;
            let row = tx
                .query_one(
                    "SELECT failures, locked_until_ms FROM login_failures
                     WHERE username = $1 AND terminal_id = $2 FOR UPDATE",
                    &[&username, &terminal],
                )
                .await?;
            let failures = u32::try_from(row.get::<_, i64>(0)).unwrap_or(u32::MAX);
            let attempt = lockout::begin(failures, u64_of(row.get(1)), now_ms);
            if let lockout::Attempt::Counted {
                failures,
                locked_until_ms,
            } = attempt
            {
                tx.execute(
                    "UPDATE login_failures SET failures = $3, locked_until_ms = $4
                     WHERE username = $1 AND terminal_id = $2",
                    &[
                        &username,
                        &terminal,
                        &i64::from(failures),
                        &i64_of(locked_until_ms.unwrap_or(0)),
                    ],
                )
                .await?;
            }
            if failures == 0 {
                tx.execute(
                    "DELETE FROM login_failures
                     WHERE terminal_id = $2 AND username <> $1 AND locked_until_ms <= $3
                       AND username NOT IN (SELECT username FROM clerks)
                       AND (SELECT COUNT(*) FROM login_failures
                            WHERE terminal_id = $2
                              AND username NOT IN (SELECT username FROM clerks)) > $4",
                    &[
                        &username,
                        &terminal,
                        &i64_of(now_ms),
                        &super::directory::UNKNOWN_NAME_FAILURES_PER_TERMINAL_MAX,
                    ],
                )
                .await?;
            }
            tx.commit().await?;
            Ok(attempt)
        })
    }

    fn clear_failures(&mut self, username: &str, terminal_id: u64) -> anyhow::Result<()> {
        self.run(async |c| {
            c.execute(
                "DELETE FROM login_failures WHERE username = $1 AND terminal_id = $2",
                &[&username, &i64_of(terminal_id)],
            )
            .await?;
            Ok(())
        })
    }
}
