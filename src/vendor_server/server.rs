//! The vendor's QUIC front: accepts connections, answers requests (one per bidirectional
//! stream), and after login runs a link driver per terminal. It holds no database connection:
//! the directory is behind [`DirectoryHandle`], the ledger behind [`LedgerHandle`].
//!
//! Shell. This file starts and stops the front: [`VendorServer`] (the directory thread, the
//! ledger service, the password pool, the limiters), the state its connections share, the
//! transport settings, the limit counters, and the close and stream codes. Connections are
//! served in `accept.rs`, sign-in in `signin.rs`, money and piece requests in `handlers.rs`,
//! the verifiers' `scan` in `scan.rs`. It never opens a database itself.

use super::admission::{Admission, SourceKey};
use super::directory::{self, Directory, DirectoryHandle};
use super::login_gate::LoginGate;
use super::monitor::{MonitorHub, PrinterView};
use super::password_pool::{PasswordPool, PasswordPoolStats};
use super::ratelimit::RateLimiter;
use super::sessions::SessionTable;
use super::signing::VendorItemSigner;
use super::{DataDir, VendorConfig, accept, signin};
use crate::indicium::VendorKeys;
use crate::indicium::rates::RateTable;
use crate::indicium::signer::Signer;
use crate::ledger::licensing::EmbeddedLicensing;
use crate::ledger::payment::SimulatedProcessor;
use crate::ledger::service::{self, SystemClock};
use crate::ledger::{LedgerConfig, LedgerHandle, LedgerStore};
use crate::link::driver::LinkHandle;
use anyhow::Context;
use ed25519_dalek::VerifyingKey;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Application close codes on the QUIC connection.
pub const CLOSE_SUPERSEDED: u32 = 1;
pub const CLOSE_SHUTDOWN: u32 = 2;
/// No `login` or `resume` succeeded within `login_deadline_ms` of the handshake.
pub const CLOSE_LOGIN_DEADLINE: u32 = 3;
/// Application error code of a request stream the vendor stops and resets because its request
/// did not fully arrive within `request_read_timeout_ms`.
pub const STREAM_READ_TIMEOUT: u32 = 1;
/// Application error code of a stream reset because the client did not take its response (or
/// a monitor frame) within `response_write_timeout_ms`.
pub const STREAM_WRITE_TIMEOUT: u32 = 2;
// The scan budgets' table sizes, kept here under their old path.
pub use super::scan::{SCAN_PIECES_TRACKED_MAX, SCAN_SOURCES_TRACKED_MAX};

/// The terminal was revoked or the session's clerk disabled (`frank vendor terminal revoke`,
/// `frank vendor clerk disable`).
pub const CLOSE_REVOKED: u32 = 4;
/// How often the vendor looks for terminals revoked and clerks disabled by the admin CLI: a
/// live session of either ends within this (plus a close's flight).
pub const REVOCATION_POLL_MS: u64 = 250;

/// A terminal's live link as the vendor sees it.
#[derive(Debug, Clone)]
pub struct TerminalLink {
    pub terminal_id: u64,
    /// The terminal's directory account.
    pub account_id: u64,
    pub session_id: u64,
    /// The session's bind epoch across fronts (`fronts::Fronts::bind`; 0 with one front):
    /// another front's bind of the terminal with a higher epoch supersedes this link.
    pub epoch: u64,
    pub clerk: String,
    pub link: LinkHandle,
    pub(super) conn: quinn::Connection,
}

pub(super) struct Shared {
    pub(super) config: VendorConfig,
    /// The vendor key (a file's or a token's): signs enrollment challenges off the runtime.
    pub(super) signer: Arc<dyn Signer>,
    /// Its public key, what counters pin.
    pub(super) public_key: VerifyingKey,
    pub(super) directory: DirectoryHandle,
    pub(super) ledger: LedgerHandle,
    pub(super) rates: RateTable,
    /// The vendor's own key as the only key `scan` accepts indicia from.
    pub(super) own_keys: VendorKeys,
    pub(super) dummy_hash: String,
    /// Lock order: a connection's `ConnState::session`, then `sessions`, then `links`.
    pub(super) sessions: Mutex<SessionTable>,
    pub(super) links: Mutex<HashMap<u64, TerminalLink>>,
    /// Per-terminal login rate and the one password check in flight per terminal.
    pub(super) login_gate: Mutex<LoginGate>,
    /// The argon2 threads and their bounded queue.
    pub(super) passwords: PasswordPool,
    pub(super) monitor: Arc<MonitorHub>,
    /// The other fronts on the same PostgreSQL database (`None` on SQLite: one front).
    pub(super) fronts: Option<super::fronts::Fronts>,
    /// `statement` requests running at once (`statements_in_flight_max`): a statement reads an
    /// account's records since its period start, so a caller asking for whole-history
    /// statements in a loop takes at most this many ledger reads.
    pub(super) statements: tokio::sync::Semaphore,
    /// Connections per source (`connections_per_source_max`) and the Retry rule.
    pub(super) admission: Mutex<Admission>,
    /// `scan` budgets that outlive connections: per source, per piece.
    pub(super) scan_sources: Mutex<RateLimiter<SourceKey>>,
    pub(super) scan_pieces: Mutex<RateLimiter<crate::ledger::PieceId>>,
    /// New connections a source may make (`handshakes_per_source_per_minute`): each handshake
    /// costs the vendor a signature and a key exchange.
    pub(super) handshakes: Mutex<RateLimiter<SourceKey>>,
    pub(super) limits_hit: LimitCounters,
    /// Requests by type and answer code, with their latency (`--metrics`).
    pub(super) request_metrics: super::metrics::RequestMetrics,
    /// The signed bundles offered to counters and their download slots (issue 17).
    pub(super) bundles: Arc<super::bundles::BundleDesk>,
}

/// How often each connection or scan limit acted since the vendor started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LimitCounts {
    /// QUIC Retry packets sent to validate an address.
    pub retries_sent: u64,
    /// Connection attempts refused at `connections_max`.
    pub refused_connections_max: u64,
    /// Connection attempts refused at `connections_per_source_max`.
    pub refused_per_source: u64,
    /// Connection attempts refused because their source spent `handshakes_per_source_per_minute`.
    pub refused_handshake_rate: u64,
    /// Connections closed at `login_deadline_ms`.
    pub closed_at_login_deadline: u64,
    /// Request streams reset at `request_read_timeout_ms`.
    pub streams_reset_read_timeout: u64,
    /// Streams reset at `response_write_timeout_ms` (responses and monitor frames).
    pub streams_reset_write_timeout: u64,
    /// `scan` requests refused by a per-source or per-piece budget.
    pub scans_limited: u64,
}

#[derive(Debug, Default)]
pub(super) struct LimitCounters {
    pub(super) retries_sent: AtomicU64,
    pub(super) refused_connections_max: AtomicU64,
    pub(super) refused_per_source: AtomicU64,
    pub(super) refused_handshake_rate: AtomicU64,
    pub(super) closed_at_login_deadline: AtomicU64,
    pub(super) streams_reset_read_timeout: AtomicU64,
    pub(super) streams_reset_write_timeout: AtomicU64,
    pub(super) scans_limited: AtomicU64,
}

impl LimitCounters {
    pub(super) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> LimitCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        LimitCounts {
            retries_sent: get(&self.retries_sent),
            refused_connections_max: get(&self.refused_connections_max),
            refused_per_source: get(&self.refused_per_source),
            refused_handshake_rate: get(&self.refused_handshake_rate),
            closed_at_login_deadline: get(&self.closed_at_login_deadline),
            streams_reset_read_timeout: get(&self.streams_reset_read_timeout),
            streams_reset_write_timeout: get(&self.streams_reset_write_timeout),
            scans_limited: get(&self.scans_limited),
        }
    }
}

/// A running vendor server.
pub struct VendorServer {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    accept_task: tokio::task::JoinHandle<()>,
    /// The metrics listener's address and task (`VendorOptions::metrics`).
    metrics: Option<(SocketAddr, tokio::task::JoinHandle<()>)>,
}

/// The QUIC transport settings both ends use (the vendor then sets its own
/// `streams_per_connection_max`, see [`server_transport_config`]).
pub fn transport_config(idle_timeout_ms: u32) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::VarInt::from_u32(idle_timeout_ms).into()));
    t.keep_alive_interval(None);
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(STREAMS_PER_CONNECTION_MAX));
    t.max_concurrent_uni_streams(quinn::VarInt::from_u32(0));
    t.datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER_BYTES_MAX));
    t.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER_BYTES_MAX);
    t
}

/// The bidirectional streams a vendor lets its peer open when nothing else is configured
/// (the vendor's own is `streams_per_connection_max` in vendor.toml).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 16;

/// The vendor's transport: [`transport_config`] with its clients' concurrent bidirectional
/// streams capped at `streams_per_connection_max`.
pub fn server_transport_config(config: &VendorConfig) -> quinn::TransportConfig {
    let mut t = transport_config(config.idle_timeout_ms);
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(config.streams_per_connection_max));
    t
}
pub const DATAGRAM_RECEIVE_BUFFER_BYTES_MAX: usize = 64 * 1024;
pub const DATAGRAM_SEND_BUFFER_BYTES_MAX: usize = 64 * 1024;

/// How `vendor serve` runs beyond the data directory.
#[derive(Debug, Clone, Default)]
pub struct VendorOptions {
    /// The ledger database (`postgres://…` or a SQLite path); `None`: the data directory's
    /// `ledger.db`.
    pub database: Option<String>,
    pub ledger: LedgerConfig,
    /// Serve Prometheus metrics on this TCP address (`frank vendor serve --metrics`).
    pub metrics: Option<SocketAddr>,
}

impl VendorServer {
    /// Loads the data directory and listens on `listen` (or the config's address), with the
    /// data directory's SQLite ledger.
    pub async fn start(data: &DataDir, listen: Option<SocketAddr>) -> anyhow::Result<VendorServer> {
        VendorServer::start_with(data, listen, VendorOptions::default()).await
    }

    /// [`Self::start`] with a chosen ledger database and ledger tuning.
    pub async fn start_with(
        data: &DataDir,
        listen: Option<SocketAddr>,
        options: VendorOptions,
    ) -> anyhow::Result<VendorServer> {
        // Opening a token logs in and signs a probe: off the runtime's threads.
        let (files, signer) = {
            let data = data.clone();
            tokio::task::spawn_blocking(move || {
                let files = data.load()?;
                let signer = data.open_signer(&files)?;
                anyhow::Ok((files, signer))
            })
            .await
            .context("opening the vendor key")??
        };
        let shelf = {
            let data = data.clone();
            tokio::task::spawn_blocking(move || super::bundles::Shelf::load(&data)).await?
        };
        // The rates bundle counters are given is the table the vendor quotes from (as of this
        // start); without one, `rates.toml` or the SAMPLE table.
        let rates = match shelf.rates() {
            Some((label, path)) => {
                let text = std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let table = RateTable::from_toml_str(&text)
                    .map_err(|e| anyhow::anyhow!("rates bundle {label}: {e}"))?;
                tracing::info!(bundle = %label, "quoting from the current rates bundle");
                table
            }
            None => crate::indicium::rates_file::load_or_sample(&data.path)
                .map_err(|e| anyhow::anyhow!("rate table in {}: {e}", data.path.display()))?,
        };
        if rates.is_sample() {
            tracing::warn!(
                "no rates.toml in the data directory: quoting from the SAMPLE rate table"
            );
        }
        let database = options
            .database
            .clone()
            .unwrap_or_else(|| files.ledger_path.to_string_lossy().into_owned());
        let mut ledger_config = options.ledger.clone();
        // vendor.toml's ledger settings, where set, are the operator's word.
        files.config.apply_to(&mut ledger_config)?;
        let item_signer = Arc::new(VendorItemSigner::new(signer.clone()));
        let ledger = spawn_ledger(&database, item_signer, ledger_config)
            .await
            .with_context(|| format!("opening the ledger {database}"))?;
        let listen = match listen {
            Some(a) => a,
            None => files.config.listen.parse().with_context(|| {
                format!("listen address {:?} in vendor.toml", files.config.listen)
            })?,
        };
        // With a PostgreSQL ledger the directory is in the same database (no vendor.db).
        let directory = {
            let (database, db_path) = (database.clone(), files.db_path.clone());
            DirectoryHandle::start(move || Directory::open_for(&database, &db_path))
                .await
                .context("opening the directory")?
        };
        // Fronts sharing one PostgreSQL database share sessions, links and monitor views.
        let (front_events_tx, front_events) =
            tokio::sync::mpsc::channel(super::fronts::FRONTS_REQUESTS_MAX);
        #[cfg(feature = "postgres")]
        let fronts = if crate::ledger::is_postgres(&database) {
            let seal_signer = signer.clone();
            let seal =
                tokio::task::spawn_blocking(move || super::fronts::ResumeSeal::new(&*seal_signer))
                    .await
                    .context("the resume seal")??;
            Some(super::fronts::Fronts::start(&database, seal, front_events_tx).await?)
        } else {
            None
        };
        // Without PostgreSQL a front is alone (the ledger refused a postgres:// URL already).
        #[cfg(not(feature = "postgres"))]
        let fronts: Option<super::fronts::Fronts> = {
            drop(front_events_tx);
            None
        };
        let mut server_config = crate::tls::server_config(signer.clone())?;
        server_config.transport_config(Arc::new(server_transport_config(&files.config)));
        let endpoint = quinn::Endpoint::server(server_config, listen)
            .with_context(|| format!("listening on {listen}"))?;
        // A hash to verify against when the clerk does not exist, so timing does not tell.
        let dummy_hash =
            tokio::task::spawn_blocking(|| directory::hash_password("not a real password"))
                .await??;
        let passwords = PasswordPool::spawn(
            files.config.password_hashes_in_flight(),
            files.config.password_hash_queue_max,
        )?;
        tracing::info!(
            threads = files.config.password_hashes_in_flight(),
            queue_max = files.config.password_hash_queue_max,
            argon2_mib_max = passwords.memory_bytes_max() / (1024 * 1024),
            "password checks bounded"
        );
        let mut own_keys = VendorKeys::new();
        own_keys
            .add(files.public_key.as_bytes())
            .map_err(|e| anyhow::anyhow!("the vendor key: {e}"))?;
        let sessions = SessionTable::new(
            files.config.sessions_max,
            Duration::from_millis(files.config.session_resume_ms_max),
        );
        let login_gate = LoginGate::new(files.config.login_gate());
        let statements = tokio::sync::Semaphore::new(files.config.statements_in_flight_max);
        let admission = Admission::new(files.config.admission_limits());
        let scan_sources = RateLimiter::new(
            files.config.scans_per_source_per_minute,
            SCAN_SOURCES_TRACKED_MAX,
        );
        let scan_pieces = RateLimiter::new(
            files.config.scans_per_piece_per_minute,
            SCAN_PIECES_TRACKED_MAX,
        );
        // A tenth of the minute's handshakes at once, then the rate.
        let handshakes = RateLimiter::with_burst(
            files.config.handshakes_per_source_per_minute,
            files.config.handshakes_per_source_per_minute / 10,
            SCAN_SOURCES_TRACKED_MAX,
        );
        let shared = Arc::new(Shared {
            own_keys,
            config: files.config,
            signer,
            public_key: files.public_key,
            directory,
            ledger,
            rates,
            dummy_hash,
            sessions: Mutex::new(sessions),
            links: Mutex::new(HashMap::new()),
            login_gate: Mutex::new(login_gate),
            passwords,
            monitor: Arc::new(MonitorHub::default()),
            fronts,
            statements,
            admission: Mutex::new(admission),
            scan_sources: Mutex::new(scan_sources),
            scan_pieces: Mutex::new(scan_pieces),
            handshakes: Mutex::new(handshakes),
            limits_hit: LimitCounters::default(),
            request_metrics: super::metrics::RequestMetrics::default(),
            bundles: Arc::new(super::bundles::BundleDesk::new(shelf)),
        });
        super::bundles::spawn_rescan(data.clone(), Arc::downgrade(&shared.bundles));
        // The reaper's unsettled commits move account figures the monitor shows.
        let mut expirations = shared.ledger.expirations();
        let hub = Arc::downgrade(&shared.monitor);
        tokio::spawn(async move {
            while expirations.changed().await.is_ok() {
                let Some(hub) = hub.upgrade() else { break };
                hub.all_ledgers_changed();
            }
        });
        tokio::spawn(signin::watch_revocations(Arc::downgrade(&shared)));
        if shared.fronts.is_some() {
            super::cluster::spawn(&shared, front_events);
        }
        let metrics = match options.metrics {
            Some(addr) => {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("metrics: listening on {addr}"))?;
                let bound = listener.local_addr()?;
                let registry = Arc::new(super::metrics::registry(&shared, endpoint.clone()));
                tracing::info!(%bound, "metrics served at /metrics");
                Some((
                    bound,
                    tokio::spawn(super::metrics::serve(listener, registry)),
                ))
            }
            None => None,
        };
        let accept_task = tokio::spawn(accept::accept_loop(endpoint.clone(), shared.clone()));
        tracing::info!(%listen, fingerprint = %crate::identity::fingerprint(&shared.public_key), "vendor serving");
        Ok(VendorServer {
            endpoint,
            shared,
            accept_task,
            metrics,
        })
    }

    /// Where the metrics are served (`VendorOptions::metrics`), once bound.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(a, _)| *a)
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    pub fn fingerprint(&self) -> String {
        crate::identity::fingerprint(&self.shared.public_key)
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.shared.public_key
    }

    /// The ledger service the front talks to.
    pub fn ledger(&self) -> LedgerHandle {
        self.shared.ledger.clone()
    }

    /// The live link of a terminal, as the vendor sees it.
    pub fn terminal_link(&self, terminal_id: u64) -> Option<TerminalLink> {
        lock(&self.shared.links).get(&terminal_id).cloned()
    }

    /// All live terminal links.
    pub fn terminal_links(&self) -> Vec<TerminalLink> {
        let mut v: Vec<_> = lock(&self.shared.links).values().cloned().collect();
        v.sort_by_key(|t| t.terminal_id);
        v
    }

    /// The last printer report of a terminal (`printer_status`).
    pub fn printer_report(&self, terminal_id: u64) -> Option<PrinterView> {
        self.shared.monitor.printer(terminal_id)
    }

    /// How often the connection and scan limits acted (docs/PROTOCOL.md §1.1, §4.7).
    pub fn limit_counts(&self) -> LimitCounts {
        self.shared.limits_hit.snapshot()
    }

    /// Live admin monitor subscriptions.
    pub fn monitor_subscribers(&self) -> usize {
        self.shared.monitor.subscribers()
    }

    /// Sessions bound to a live connection (what `sessions_max` limits).
    pub fn sessions_live(&self) -> usize {
        lock(&self.shared.sessions).live()
    }

    /// Sessions held, live or resumable (at most one per terminal).
    pub fn sessions_held(&self) -> usize {
        lock(&self.shared.sessions).len()
    }

    /// The password pool's figures: checks running, their peak, totals.
    pub fn password_pool_stats(&self) -> PasswordPoolStats {
        self.shared.passwords.stats()
    }

    /// Closes every connection and stops listening.
    pub async fn shutdown(self) {
        self.endpoint.close(
            quinn::VarInt::from_u32(CLOSE_SHUTDOWN),
            b"vendor shutting down",
        );
        self.accept_task.abort();
        if let Some((_, task)) = &self.metrics {
            task.abort();
        }
        self.endpoint.wait_idle().await;
    }

    /// Serves until the endpoint closes.
    pub async fn wait(self) {
        let _ = self.accept_task.await;
    }
}

/// Opens the ledger store with `signer` as its item signer (the vendor key's
/// [`VendorItemSigner`]; tools that never authorize pass `ledger::cli::NoSigning`) and starts
/// the ledger service (simulated payment processor, embedded licensing continuing after the
/// largest license held).
pub async fn spawn_ledger(
    database: &str,
    signer: Arc<dyn crate::ledger::ItemSigner>,
    config: LedgerConfig,
) -> anyhow::Result<LedgerHandle> {
    let store: Arc<dyn LedgerStore> = crate::ledger::open_store(database, signer, &config)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // On PostgreSQL every front issues from the database's one sequence; embedded, numbering
    // continues after the largest license the ledger holds.
    let licensing: Arc<dyn crate::ledger::licensing::LicensingAuthority> =
        if crate::ledger::is_postgres(database) {
            #[cfg(feature = "postgres")]
            {
                Arc::new(crate::ledger::postgres::PostgresLicensing::new(
                    database,
                    u64::from(u32::MAX),
                ))
            }
            // open_store refused the URL already; this arm is never reached.
            #[cfg(not(feature = "postgres"))]
            anyhow::bail!(crate::ledger::NO_POSTGRES)
        } else {
            let last_license = store
                .max_license()
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            Arc::new(EmbeddedLicensing::new(last_license, u64::from(u32::MAX)))
        };
    Ok(service::spawn(
        store,
        Arc::new(SimulatedProcessor::new()),
        licensing,
        Arc::new(SystemClock),
        config,
    ))
}

pub(super) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}
