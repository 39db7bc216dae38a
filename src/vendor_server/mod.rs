//! The vendor server: identity, data directory, directory database, and the QUIC front.

pub mod admission;
pub mod bundles;
pub mod directory;
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
pub use password_pool::{PASSWORD_HASH_QUEUE_MAX_LIMIT, PASSWORD_HASHES_IN_FLIGHT_MAX_LIMIT};
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
    /// transaction (default 2; 0 = one transaction per request; at most 64).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postgres_batch_writers: Option<usize>,
    /// PostgreSQL only: most requests in one batch transaction (default 128; 1 ..= 1024).
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

fn load_config(path: &Path) -> anyhow::Result<VendorConfig> {
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
