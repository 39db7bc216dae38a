//! `vendor.toml`: [`VendorConfig`], every setting with its
//! default and its bounds (`*_RANGE`, `*_MAX`, `*_LIMIT`), validated before use and applied to
//! the ledger's configuration (`apply_to`); [`load_config`] reads the file.

use super::*;

/// Bounds of the admin monitor's settings in `vendor.toml`.
pub const MONITOR_PUSH_INTERVAL_MS_MIN: u64 = 50;
pub const MONITOR_PUSH_INTERVAL_MS_MAX: u64 = 60_000;
pub const MONITOR_QUEUE_MAX_LIMIT: usize = 4096;
pub const MONITOR_SUBSCRIBERS_MAX_LIMIT: usize = 1024;
/// Largest `statements_in_flight_max`.
pub const STATEMENTS_IN_FLIGHT_MAX_LIMIT: usize = 64;
/// Bounds of the ledger timings `vendor.toml` may set.
pub const AUTHORIZATION_EXPIRY_MS_RANGE: std::ops::RangeInclusive<u64> = 1_000..=86_400_000;
pub const REAPER_INTERVAL_MS_RANGE: std::ops::RangeInclusive<u64> = 10..=60_000;
pub const LATE_VOID_WINDOW_MS_MAX: u64 = 30 * 24 * 3600 * 1000;
/// Bounds of the login settings `vendor.toml` may set.
pub use super::password_pool::{
    PASSWORD_HASH_QUEUE_MAX_LIMIT, PASSWORD_HASHES_IN_FLIGHT_MAX_LIMIT,
};
pub const TERMINAL_LOGIN_BURST_MAX_LIMIT: u32 = 1000;
pub const TERMINAL_LOGIN_INTERVAL_MS_RANGE: std::ops::RangeInclusive<u64> = 1..=3_600_000;
pub const SCAN_RECORD_WINDOW_MS_MAX: u64 = 30 * 24 * 3600 * 1000;
/// Bounds of the connection limits `vendor.toml` may set.
pub const LOGIN_DEADLINE_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=600_000;
pub const REQUEST_READ_TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=600_000;
pub const RESPONSE_WRITE_TIMEOUT_MS_RANGE: std::ops::RangeInclusive<u64> = 100..=600_000;
pub const STREAMS_PER_CONNECTION_MAX_RANGE: std::ops::RangeInclusive<u32> = 1..=1024;
pub const SCANS_PER_MINUTE_RANGE: std::ops::RangeInclusive<u32> = 1..=1_000_000;

/// `vendor.toml`. Every field has a default; units are in the names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VendorConfig {
    pub listen: String,
    pub keepalive_interval_ms: u32,
    pub detect_multiplier: u32,
    pub up_after_keepalives: u32,
    /// QUIC idle timeout: only the backstop behind the keepalive watchdog.
    pub idle_timeout_ms: u32,
    pub request_clock_skew_ms_max: u64,
    pub connections_max: usize,
    /// Connections one source may hold at once (an IPv4 address or an IPv6 /64; ≥ 1, at most
    /// `connections_max` in effect).
    pub connections_per_source_max: usize,
    /// From this many open connections on, a connection attempt from an address QUIC has not
    /// validated gets a Retry first (0: always; from `connections_max` on: never for that
    /// reason). A source already holding a connection always does.
    pub address_validation_above_connections: usize,
    /// A connection with no session (`login` or `resume`) this long after its handshake is
    /// closed (application close code 3). Verifiers' `scan` connections included.
    pub login_deadline_ms: u64,
    /// A request stream whose request has not fully arrived this long after the stream opened
    /// is reset (stream error code 1).
    pub request_read_timeout_ms: u64,
    /// A response (or monitor frame) the client does not take (QUIC flow control) within
    /// this resets its stream (stream error code 2); a monitor subscription then ends.
    pub response_write_timeout_ms: u64,
    /// Concurrent bidirectional streams a client may open on one connection (QUIC
    /// `initial_max_streams_bidi`); a client opening more waits for one to end.
    pub streams_per_connection_max: u32,
    pub sessions_max: usize,
    /// How long a session may be resumed on a new connection after its last one ended.
    pub session_resume_ms_max: u64,
    /// Admin monitor: the longest a subscriber waits for fresh RTT and keepalive ages; state
    /// changes are pushed at once.
    pub monitor_push_interval_ms: u64,
    /// Admin monitor: frames queued per subscriber before further changes are coalesced.
    pub monitor_queue_max: usize,
    /// Admin monitor: concurrent subscriptions per vendor.
    pub monitor_subscribers_max: usize,
    /// Admin monitor: concurrent subscriptions per directory account, so one account's
    /// supervisors cannot take every slot.
    pub monitor_subscribers_per_account_max: usize,
    /// `statement` requests the vendor prepares at once (each reads an account's records since
    /// its period start); beyond them `busy`.
    pub statements_in_flight_max: usize,
    /// Most `scan` requests (postal verifiers' lookups) one connection may make, valid or not.
    pub scans_per_connection_max: u32,
    /// Threads checking passwords (argon2id, 19 MiB each) at once; default: the core count.
    /// The vendor's argon2 memory is at most this × 19 MiB whatever the login rate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password_hashes_in_flight_max: Option<usize>,
    /// Logins waiting for a password thread; beyond this a login answers `busy`.
    pub password_hash_queue_max: usize,
    /// Logins one terminal may start back to back before `terminal_login_interval_ms` applies.
    pub terminal_login_burst_max: u32,
    /// After its burst, a terminal may start one login per this interval (`busy` otherwise).
    pub terminal_login_interval_ms: u64,
    /// `scan` requests one source (any number of connections) may make per minute, valid or
    /// not; a minute's budget may be spent at once.
    pub scans_per_source_per_minute: u32,
    /// `scan` requests of one piece (any source) answered per minute.
    pub scans_per_piece_per_minute: u32,
    /// New connections (QUIC handshakes) one source may make per minute, a tenth of it at
    /// once; beyond it the source is asked to prove its address (Retry), then refused. Only
    /// proven addresses are charged.
    pub handshakes_per_source_per_minute: u32,
    /// Repeated scans of one piece within this window after a recorded scan only count on the
    /// piece (`scan_count`); no further audit record (default: the ledger's 3,600,000 ms;
    /// 0 ..= 30 days).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scan_record_window_ms: Option<u64>,
    /// Smallest single top-up in cents (default: the ledger's $5.00). A vendor selling through
    /// kiosks, which charge the card exactly the item's price, sets this to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_up_min_cents: Option<u64>,
    /// Largest single top-up in cents (default: the ledger's $10,000.00).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub top_up_max_cents: Option<u64>,
    /// How long an authorization holds its reservation before the reaper commits it as
    /// printed and unsettled (default: the ledger's 120,000 ms; 1 s ..= 24 h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorization_expiry_ms: Option<u64>,
    /// How long after its expiry the authorizing terminal may still void an unsettled piece
    /// (default: the ledger's 24 h; at most 30 days).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub late_void_window_ms: Option<u64>,
    /// How often the ledger's reaper runs (default: 1,000 ms; 10 ..= 60,000).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reaper_interval_ms: Option<u64>,
    /// PostgreSQL only (`--database postgres://…`): connections for reads and
    /// one-transaction requests (default 16; 1 ..= 256).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_connections_max: Option<usize>,
    /// PostgreSQL only: writer connections, each applying one batch of requests per
    /// transaction (default 3; 0 = one transaction per request; at most 64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_batch_writers: Option<usize>,
    /// PostgreSQL only: most requests in one batch transaction (default 96; 1 ..= 1024).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_batch_requests_max: Option<usize>,
    /// PostgreSQL only: requests waiting for a writer (default 4096; 1 ..= 65 536).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_batch_queue_requests_max: Option<usize>,
    /// The vendor key in a PKCS#11 token instead of `vendor-key.pem` (`frank vendor init
    /// --pkcs11`, `frank vendor key import`): module, token and key labels, the pinned
    /// fingerprint, the PIN's source. Last: a TOML table follows the plain settings.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pkcs11: Option<Pkcs11Config>,
}

impl Default for VendorConfig {
    fn default() -> Self {
        let g = GuardConfig::default();
        VendorConfig {
            listen: "127.0.0.1:4433".into(),
            keepalive_interval_ms: g.keepalive_interval_ms,
            detect_multiplier: g.detect_multiplier,
            up_after_keepalives: g.up_after_keepalives,
            idle_timeout_ms: 2_000,
            request_clock_skew_ms_max: crate::wire::reqmac::REQUEST_CLOCK_SKEW_MS_MAX,
            connections_max: 10_000,
            connections_per_source_max: 64,
            address_validation_above_connections: 1_000,
            login_deadline_ms: 10_000,
            request_read_timeout_ms: 5_000,
            response_write_timeout_ms: 5_000,
            streams_per_connection_max: 16,
            sessions_max: 10_000,
            session_resume_ms_max: 10 * 60 * 1000,
            monitor_push_interval_ms: 500,
            monitor_queue_max: 64,
            monitor_subscribers_max: 32,
            monitor_subscribers_per_account_max: 4,
            statements_in_flight_max: 2,
            scans_per_connection_max: 64,
            password_hashes_in_flight_max: None,
            password_hash_queue_max: 32,
            terminal_login_burst_max: 10,
            terminal_login_interval_ms: 2_000,
            scans_per_source_per_minute: 600,
            scans_per_piece_per_minute: 6,
            handshakes_per_source_per_minute: 300,
            scan_record_window_ms: None,
            top_up_min_cents: None,
            top_up_max_cents: None,
            authorization_expiry_ms: None,
            late_void_window_ms: None,
            reaper_interval_ms: None,
            postgres_connections_max: None,
            postgres_batch_writers: None,
            postgres_batch_requests_max: None,
            postgres_batch_queue_requests_max: None,
            pkcs11: None,
        }
    }
}

impl VendorConfig {
    pub fn guard(&self) -> GuardConfig {
        GuardConfig {
            keepalive_interval_ms: self.keepalive_interval_ms,
            detect_multiplier: self.detect_multiplier,
            up_after_keepalives: self.up_after_keepalives,
        }
    }

    /// `password_hashes_in_flight_max`, or the core count when unset.
    pub fn password_hashes_in_flight(&self) -> usize {
        self.password_hashes_in_flight_max.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
                .min(PASSWORD_HASHES_IN_FLIGHT_MAX_LIMIT)
        })
    }

    /// The per-terminal login gate's settings.
    pub fn login_gate(&self) -> login_gate::GateConfig {
        login_gate::GateConfig {
            burst_max: self.terminal_login_burst_max,
            interval: std::time::Duration::from_millis(self.terminal_login_interval_ms),
        }
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        self.guard().validate().map_err(anyhow::Error::msg)?;
        let detect_ms = u64::from(self.keepalive_interval_ms) * u64::from(self.detect_multiplier);
        if u64::from(self.idle_timeout_ms) <= detect_ms {
            bail!(
                "idle_timeout_ms ({}) must exceed the keepalive detection window ({detect_ms} ms): it is only the backstop",
                self.idle_timeout_ms
            );
        }
        if self.connections_max == 0 || self.sessions_max == 0 {
            bail!("connections_max and sessions_max must be at least 1");
        }
        if !(MONITOR_PUSH_INTERVAL_MS_MIN..=MONITOR_PUSH_INTERVAL_MS_MAX)
            .contains(&self.monitor_push_interval_ms)
        {
            bail!(
                "monitor_push_interval_ms must be {MONITOR_PUSH_INTERVAL_MS_MIN}..={MONITOR_PUSH_INTERVAL_MS_MAX}, got {}",
                self.monitor_push_interval_ms
            );
        }
        if self.monitor_queue_max == 0 || self.monitor_queue_max > MONITOR_QUEUE_MAX_LIMIT {
            bail!(
                "monitor_queue_max must be 1..={MONITOR_QUEUE_MAX_LIMIT}, got {}",
                self.monitor_queue_max
            );
        }
        if self.monitor_subscribers_max > MONITOR_SUBSCRIBERS_MAX_LIMIT {
            bail!(
                "monitor_subscribers_max must be 0..={MONITOR_SUBSCRIBERS_MAX_LIMIT} (0 turns the monitor off), got {}",
                self.monitor_subscribers_max
            );
        }
        if self.monitor_subscribers_per_account_max == 0
            || self.monitor_subscribers_per_account_max > MONITOR_SUBSCRIBERS_MAX_LIMIT
        {
            bail!(
                "monitor_subscribers_per_account_max must be 1..={MONITOR_SUBSCRIBERS_MAX_LIMIT}, got {}",
                self.monitor_subscribers_per_account_max
            );
        }
        if !(1..=STATEMENTS_IN_FLIGHT_MAX_LIMIT).contains(&self.statements_in_flight_max) {
            bail!(
                "statements_in_flight_max must be 1..={STATEMENTS_IN_FLIGHT_MAX_LIMIT}, got {}",
                self.statements_in_flight_max
            );
        }
        if self.scans_per_connection_max == 0 {
            bail!("scans_per_connection_max must be at least 1");
        }
        self.validate_logins()?;
        self.validate_connection_limits()?;
        for (name, v) in [
            ("top_up_min_cents", self.top_up_min_cents),
            ("top_up_max_cents", self.top_up_max_cents),
        ] {
            if let Some(v) = v {
                crate::money::Cents::new(v).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                if v == 0 {
                    bail!("{name} must be at least 1");
                }
            }
        }
        if let (Some(min), Some(max)) = (self.top_up_min_cents, self.top_up_max_cents)
            && min > max
        {
            bail!("top_up_min_cents ({min}) is above top_up_max_cents ({max})");
        }
        if let Some(p) = &self.pkcs11 {
            p.validate()?;
        }
        self.validate_ledger_timings()
    }

    fn validate_logins(&self) -> anyhow::Result<()> {
        if let Some(n) = self.password_hashes_in_flight_max
            && !(1..=PASSWORD_HASHES_IN_FLIGHT_MAX_LIMIT).contains(&n)
        {
            bail!(
                "password_hashes_in_flight_max must be 1..={PASSWORD_HASHES_IN_FLIGHT_MAX_LIMIT}, got {n}"
            );
        }
        if self.password_hash_queue_max > PASSWORD_HASH_QUEUE_MAX_LIMIT {
            bail!(
                "password_hash_queue_max must be 0..={PASSWORD_HASH_QUEUE_MAX_LIMIT}, got {}",
                self.password_hash_queue_max
            );
        }
        if !(1..=TERMINAL_LOGIN_BURST_MAX_LIMIT).contains(&self.terminal_login_burst_max) {
            bail!(
                "terminal_login_burst_max must be 1..={TERMINAL_LOGIN_BURST_MAX_LIMIT}, got {}",
                self.terminal_login_burst_max
            );
        }
        if !TERMINAL_LOGIN_INTERVAL_MS_RANGE.contains(&self.terminal_login_interval_ms) {
            bail!(
                "terminal_login_interval_ms must be {}..={}, got {}",
                TERMINAL_LOGIN_INTERVAL_MS_RANGE.start(),
                TERMINAL_LOGIN_INTERVAL_MS_RANGE.end(),
                self.terminal_login_interval_ms
            );
        }
        Ok(())
    }

    /// The per-source, per-connection and per-stream limits (docs/PROTOCOL.md §1).
    fn validate_connection_limits(&self) -> anyhow::Result<()> {
        // Above connections_max either one means connections_max: a file that lowers
        // connections_max alone stays valid.
        if self.connections_per_source_max == 0 {
            bail!("connections_per_source_max must be at least 1");
        }
        for (name, v, range) in [
            (
                "login_deadline_ms",
                self.login_deadline_ms,
                LOGIN_DEADLINE_MS_RANGE,
            ),
            (
                "request_read_timeout_ms",
                self.request_read_timeout_ms,
                REQUEST_READ_TIMEOUT_MS_RANGE,
            ),
            (
                "response_write_timeout_ms",
                self.response_write_timeout_ms,
                RESPONSE_WRITE_TIMEOUT_MS_RANGE,
            ),
        ] {
            if !range.contains(&v) {
                bail!(
                    "{name} must be {}..={}, got {v}",
                    range.start(),
                    range.end()
                );
            }
        }
        if !STREAMS_PER_CONNECTION_MAX_RANGE.contains(&self.streams_per_connection_max) {
            bail!(
                "streams_per_connection_max must be {}..={}, got {}",
                STREAMS_PER_CONNECTION_MAX_RANGE.start(),
                STREAMS_PER_CONNECTION_MAX_RANGE.end(),
                self.streams_per_connection_max
            );
        }
        for (name, v) in [
            (
                "scans_per_source_per_minute",
                self.scans_per_source_per_minute,
            ),
            (
                "scans_per_piece_per_minute",
                self.scans_per_piece_per_minute,
            ),
            (
                "handshakes_per_source_per_minute",
                self.handshakes_per_source_per_minute,
            ),
        ] {
            if !SCANS_PER_MINUTE_RANGE.contains(&v) {
                bail!(
                    "{name} must be {}..={}, got {v}",
                    SCANS_PER_MINUTE_RANGE.start(),
                    SCANS_PER_MINUTE_RANGE.end()
                );
            }
        }
        Ok(())
    }

    /// The admission rule's limits ([`admission`]).
    pub fn admission_limits(&self) -> admission::AdmissionLimits {
        admission::AdmissionLimits {
            connections_max: self.connections_max,
            connections_per_source_max: self.connections_per_source_max,
            address_validation_above_connections: self.address_validation_above_connections,
        }
    }

    fn validate_ledger_timings(&self) -> anyhow::Result<()> {
        for (name, v, range) in [
            (
                "authorization_expiry_ms",
                self.authorization_expiry_ms,
                AUTHORIZATION_EXPIRY_MS_RANGE,
            ),
            (
                "reaper_interval_ms",
                self.reaper_interval_ms,
                REAPER_INTERVAL_MS_RANGE,
            ),
            (
                "late_void_window_ms",
                self.late_void_window_ms,
                0..=LATE_VOID_WINDOW_MS_MAX,
            ),
            (
                "scan_record_window_ms",
                self.scan_record_window_ms,
                0..=SCAN_RECORD_WINDOW_MS_MAX,
            ),
        ] {
            check_range(name, v, &range)?;
        }
        for (name, v, range) in [
            (
                "postgres_connections_max",
                self.postgres_connections_max,
                1..=256,
            ),
            (
                "postgres_batch_writers",
                self.postgres_batch_writers,
                0..=64,
            ),
            (
                "postgres_batch_requests_max",
                self.postgres_batch_requests_max,
                1..=1024,
            ),
            (
                "postgres_batch_queue_requests_max",
                self.postgres_batch_queue_requests_max,
                1..=65_536,
            ),
        ] {
            check_range(name, v, &range)?;
        }
        Ok(())
    }

    /// Applies the ledger settings this file sets (top-up limits, timings) over `config`:
    /// where set, they are the operator's word.
    pub fn apply_to(&self, config: &mut crate::ledger::LedgerConfig) -> anyhow::Result<()> {
        if let Some(v) = self.top_up_min_cents {
            config.limits.top_up_min = crate::money::Cents::new(v)?;
        }
        if let Some(v) = self.top_up_max_cents {
            config.limits.top_up_max = crate::money::Cents::new(v)?;
        }
        if let Some(v) = self.authorization_expiry_ms {
            config.limits.authorization_expiry_ms = v;
        }
        if let Some(v) = self.late_void_window_ms {
            config.limits.late_void_window_ms = v;
        }
        if let Some(v) = self.reaper_interval_ms {
            config.reaper_interval_ms = v;
        }
        if let Some(v) = self.scan_record_window_ms {
            config.limits.scan_record_window_ms = v;
        }
        // Without PostgreSQL these settings are checked (above) and have nothing to tune.
        #[cfg(feature = "postgres")]
        {
            let pg = &mut config.postgres;
            if let Some(v) = self.postgres_connections_max {
                pg.connections_max = v;
            }
            if let Some(v) = self.postgres_batch_writers {
                pg.batch_writers = v;
            }
            if let Some(v) = self.postgres_batch_requests_max {
                pg.batch_requests_max = v;
            }
            if let Some(v) = self.postgres_batch_queue_requests_max {
                pg.batch_queue_requests_max = v;
            }
        }
        Ok(())
    }
}

/// A setting the file may leave out: when set, it must lie in `range`.
fn check_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    v: Option<T>,
    range: &std::ops::RangeInclusive<T>,
) -> anyhow::Result<()> {
    if let Some(v) = v
        && !range.contains(&v)
    {
        bail!(
            "{name} must be {}..={}, got {v}",
            range.start(),
            range.end()
        );
    }
    Ok(())
}

pub(super) fn load_config(path: &Path) -> anyhow::Result<VendorConfig> {
    let config: VendorConfig = match std::fs::read_to_string(path) {
        Ok(text) => toml::from_str(&text).with_context(|| format!("in {}", path.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => VendorConfig::default(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    config
        .validate()
        .with_context(|| format!("in {}", path.display()))?;
    Ok(config)
}
