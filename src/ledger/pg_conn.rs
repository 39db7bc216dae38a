//! How the PostgreSQL ledger reaches its server (**shell**): the URL parsed once into a
//! [`Target`] with bounded connect times, a shared [`Reconnect`] gate that spaces out attempts
//! after a failure (backoff from `RECONNECT_PAUSE_MS_MIN` doubling to `RECONNECT_PAUSE_MS_MAX`),
//! a session that never commits with less than `synchronous_commit = on`, and the check that
//! decides whether a connection that failed a statement may go back to its pool.
//!
//! Failover: the URL may list several hosts with `target_session_attrs=read-write`
//! (`postgresql://127.0.0.1:5432,127.0.0.1:5433/frank?target_session_attrs=read-write`);
//! tokio-postgres tries them in order and keeps the first that accepts writes. A pooled
//! connection whose server went away (closed), or that now refuses writes, is dropped after the
//! statement that failed on it, and the next use opens a new one — on the promoted standby once
//! it is promoted. Until then every attempt fails fast (refused, or read-only) and the request
//! fails with a [`StoreError`] its client retries under the same request id.

use super::store::StoreError;
use std::str::FromStr;
use std::time::Duration;
use tokio_postgres::{Client, NoTls};

/// Socket-level limit of one connection attempt to one host, when the URL sets no
/// `connect_timeout` of its own.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// Limit of opening one session in full (every host tried, authentication, the session's
/// settings and its prepared statements).
pub const SESSION_OPEN_TIMEOUT_MS: u64 = 10_000;
/// First pause after a failed connection attempt; each further failure doubles it.
pub const RECONNECT_PAUSE_MS_MIN: u64 = 25;
/// Longest pause between connection attempts while the database is unreachable.
pub const RECONNECT_PAUSE_MS_MAX: u64 = 500;
/// Limit of the check a connection passes before it goes back to its pool after an error.
pub const PROBE_TIMEOUT_MS: u64 = 1_000;
/// TCP keepalive idle time, so a connection to a host that vanished without a reset is found
/// dead (when the URL sets none).
const KEEPALIVES_IDLE_MS: u64 = 10_000;

/// The database to connect to: the parsed URL with its bounds.
#[derive(Clone)]
pub struct Target {
    config: tokio_postgres::Config,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config may hold a password: show only where it points.
        f.debug_struct("Target")
            .field("hosts", &self.config.get_hosts().len())
            .field("dbname", &self.config.get_dbname())
            .finish()
    }
}

impl Target {
    /// Parses `url` (`postgres://…`, `postgresql://…`, several `host:port` pairs allowed) and
    /// bounds its connect time.
    pub fn parse(url: &str) -> Result<Target, StoreError> {
        let mut config = tokio_postgres::Config::from_str(url)
            .map_err(|e| StoreError::Database(format!("bad database URL: {e}")))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS));
        }
        if config.get_keepalives() && config.get_keepalives_idle() == Duration::from_secs(7200) {
            config.keepalives_idle(Duration::from_millis(KEEPALIVES_IDLE_MS));
        }
        Ok(Target { config })
    }

    /// [`Self::parse`] then [`Self::open`]: one session at `url`.
    pub async fn open_url(url: &str) -> Result<Client, StoreError> {
        Target::parse(url)?.open().await
    }

    /// The parsed URL with its bounds (for a connection whose messages the caller polls
    /// itself, such as a `LISTEN`er).
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }

    /// A new session: connected within `SESSION_OPEN_TIMEOUT_MS`, its connection driven by a
    /// task of its own, committing with at least `synchronous_commit = on`.
    pub async fn open(&self) -> Result<Client, StoreError> {
        tokio::time::timeout(
            Duration::from_millis(SESSION_OPEN_TIMEOUT_MS),
            self.open_unbounded(),
        )
        .await
        .map_err(|_| {
            StoreError::Database(format!(
                "no database session within {SESSION_OPEN_TIMEOUT_MS} ms"
            ))
        })?
    }

    async fn open_unbounded(&self) -> Result<Client, StoreError> {
        let (client, connection) = self
            .config
            .connect(NoTls)
            .await
            .map_err(|e| StoreError::Database(e.to_string()))?;
        tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; errors surface on the
            // client (`is_closed`, and every later statement fails).
            let _ = connection.await;
        });
        require_synchronous_commit(&client).await?;
        Ok(client)
    }
}

/// A commit answers only once it is durable where the server's configuration says: with a
/// synchronous standby named in `synchronous_standby_names`, `on` waits until the standby has
/// flushed it. A server (or role, or database) configured weaker (`off`, `local`,
/// `remote_write`) is raised to `on` for this session; `remote_apply` is kept.
async fn require_synchronous_commit(client: &Client) -> Result<(), StoreError> {
    let db = |e: tokio_postgres::Error| StoreError::Database(e.to_string());
    let row = client
        .query_one("SELECT current_setting('synchronous_commit')", &[])
        .await
        .map_err(db)?;
    let level: String = row.get(0);
    if matches!(level.as_str(), "off" | "local" | "remote_write") {
        client
            .batch_execute("SET synchronous_commit = on")
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Whether a connection on which a statement failed may serve again: it is open and its
/// server still accepts writes (a server that became a standby, or went read-only, does not),
/// checked within `PROBE_TIMEOUT_MS`.
pub async fn usable(client: &Client) -> bool {
    if client.is_closed() {
        return false;
    }
    let probe = client.query_one("SELECT current_setting('transaction_read_only')", &[]);
    match tokio::time::timeout(Duration::from_millis(PROBE_TIMEOUT_MS), probe).await {
        Ok(Ok(row)) => row.get::<_, String>(0) == "off",
        _ => false,
    }
}

/// Spaces out connection attempts after failures, shared by every connection of one store:
/// after a failed attempt the next waits `pause_ms` (from `RECONNECT_PAUSE_MS_MIN`, doubling to
/// `RECONNECT_PAUSE_MS_MAX`); a success resets it. So an unreachable database costs each
/// caller at most one pause and one bounded attempt, and the server is not hammered.
#[derive(Debug, Default)]
pub struct Reconnect {
    state: std::sync::Mutex<GateState>,
}

#[derive(Debug, Default)]
struct GateState {
    pause_ms: u64,
    not_before: Option<tokio::time::Instant>,
}

impl GateState {
    /// Records an attempt's result at `now`: a failure pushes the next attempt back by the
    /// doubled pause, a success clears it.
    fn record(&mut self, ok: bool, now: tokio::time::Instant) {
        if ok {
            *self = GateState::default();
        } else {
            self.pause_ms = next_pause_ms(self.pause_ms);
            self.not_before = Some(now + Duration::from_millis(self.pause_ms));
        }
    }
}

impl Reconnect {
    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // The state is two plain values, consistent after any panic: take it as it is.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `attempt` after the pause the last failures asked for, and records its result.
    pub async fn attempt<T>(
        &self,
        attempt: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let not_before = self.lock().not_before;
        if let Some(at) = not_before {
            tokio::time::sleep_until(at).await;
        }
        let r = attempt.await;
        self.lock().record(r.is_ok(), tokio::time::Instant::now());
        r
    }
}

/// The pause after one more failure, given the pause before it (0: none yet).
pub fn next_pause_ms(pause_ms: u64) -> u64 {
    pause_ms
        .saturating_mul(2)
        .clamp(RECONNECT_PAUSE_MS_MIN, RECONNECT_PAUSE_MS_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_from_its_minimum_to_its_maximum() {
        let mut p = 0;
        let mut seen = Vec::new();
        for _ in 0..8 {
            p = next_pause_ms(p);
            seen.push(p);
        }
        assert_eq!(seen, [25, 50, 100, 200, 400, 500, 500, 500]);
    }

    #[test]
    fn a_multi_host_url_parses_with_its_bounds() {
        let t = Target::parse(
            "postgresql://postgres@127.0.0.1:5432,127.0.0.1:5433/frank?target_session_attrs=read-write",
        )
        .unwrap();
        assert_eq!(t.config.get_hosts().len(), 2);
        assert_eq!(t.config.get_ports(), [5432, 5433]);
        assert_eq!(
            t.config.get_target_session_attrs(),
            tokio_postgres::config::TargetSessionAttrs::ReadWrite
        );
        assert_eq!(
            t.config.get_connect_timeout(),
            Some(&Duration::from_millis(CONNECT_TIMEOUT_MS))
        );
        let own = Target::parse("postgres://u@h/db?connect_timeout=7").unwrap();
        assert_eq!(
            own.config.get_connect_timeout(),
            Some(&Duration::from_secs(7)),
            "the URL's own timeout wins"
        );
        assert!(Target::parse("postgres://u@h/db?target_session_attrs=nonsense").is_err());
    }

    #[test]
    fn failures_push_the_next_attempt_back_and_a_success_clears_the_gate() {
        let now = tokio::time::Instant::now();
        let mut g = GateState::default();
        assert_eq!(g.not_before, None, "the first attempt does not wait");
        g.record(false, now);
        assert_eq!(g.not_before, Some(now + Duration::from_millis(25)));
        g.record(false, now);
        assert_eq!(g.not_before, Some(now + Duration::from_millis(50)));
        g.record(true, now);
        assert_eq!(g.not_before, None);
        g.record(false, now);
        assert_eq!(
            g.not_before,
            Some(now + Duration::from_millis(25)),
            "a success reset the backoff"
        );
    }
}
