//! The vendor's QUIC front: accepts connections, answers requests (one per bidirectional
//! stream), and after login runs a link driver per terminal. It holds no database connection:
//! the directory is behind [`DirectoryHandle`], the ledger behind [`LedgerHandle`].

use super::admission::{Admission, Refusal, SourceKey, Verdict};
use super::directory::{self, Directory, DirectoryHandle, EnrollOutcome, Terminal};
use super::lockout::Attempt;
use super::login_gate::{LoginGate, RateVerdict};
use super::money::{self as front, Caller};
use super::monitor::{self, MonitorHub, PrinterView};
use super::password_pool::{PasswordPool, PasswordPoolStats, PoolSlot};
use super::ratelimit::{RateLimiter, Take};
use super::sessions::{BindError, Binding, SessionRecord, SessionTable};
use super::signing::{SignItem, VendorItemSigner};
use super::{DataDir, VendorConfig, now_ms};
use crate::indicium::rates::RateTable;
use crate::indicium::{VendorKeys, verify_payload};
use crate::ledger::licensing::EmbeddedLicensing;
use crate::ledger::payment::SimulatedProcessor;
use crate::ledger::service::{self, SystemClock};
use crate::ledger::{AccountId, LedgerConfig, LedgerHandle, LedgerStore, Outcome, TerminalId};
use crate::link::driver::{self, LinkHandle};
use crate::link::guard::LinkState;
use crate::link::keepalive::KeepaliveEndpoint;
use crate::link::keys::{self, Exporter, SessionKeys};
use crate::logtext::escaped;
use crate::wire::reqmac::MacInput;
use crate::wire::{self, ErrorBody, ErrorCode, Request};
use anyhow::Context;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

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
/// Sources whose scan budget is tracked at once (a source with an unspent budget is
/// forgotten first; beyond this a new source's `scan` is `busy`).
pub const SCAN_SOURCES_TRACKED_MAX: usize = 65_536;
/// Pieces whose scan budget is tracked at once (likewise).
pub const SCAN_PIECES_TRACKED_MAX: usize = 65_536;

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
    pub session_id: u64,
    pub clerk: String,
    pub link: LinkHandle,
    conn: quinn::Connection,
}

struct Shared {
    config: VendorConfig,
    key: SigningKey,
    directory: DirectoryHandle,
    ledger: LedgerHandle,
    rates: RateTable,
    /// The vendor's own key as the only key `scan` accepts indicia from.
    own_keys: VendorKeys,
    dummy_hash: String,
    /// Lock order: a connection's `ConnState::session`, then `sessions`, then `links`.
    sessions: Mutex<SessionTable>,
    links: Mutex<HashMap<u64, TerminalLink>>,
    /// Per-terminal login rate and the one password check in flight per terminal.
    login_gate: Mutex<LoginGate>,
    /// The argon2 threads and their bounded queue.
    passwords: PasswordPool,
    monitor: Arc<MonitorHub>,
    /// `statement` requests running at once (`statements_in_flight_max`): a statement reads an
    /// account's records since its period start, so a caller asking for whole-history
    /// statements in a loop takes at most this many ledger reads.
    statements: tokio::sync::Semaphore,
    /// Connections per source (`connections_per_source_max`) and the Retry rule.
    admission: Mutex<Admission>,
    /// `scan` budgets that outlive connections: per source, per piece.
    scan_sources: Mutex<RateLimiter<SourceKey>>,
    scan_pieces: Mutex<RateLimiter<crate::ledger::PieceId>>,
    /// New connections a source may make (`handshakes_per_source_per_minute`): each handshake
    /// costs the vendor a signature and a key exchange.
    handshakes: Mutex<RateLimiter<SourceKey>>,
    limits_hit: LimitCounters,
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
struct LimitCounters {
    retries_sent: AtomicU64,
    refused_connections_max: AtomicU64,
    refused_per_source: AtomicU64,
    refused_handshake_rate: AtomicU64,
    closed_at_login_deadline: AtomicU64,
    streams_reset_read_timeout: AtomicU64,
    streams_reset_write_timeout: AtomicU64,
    scans_limited: AtomicU64,
}

impl LimitCounters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> LimitCounts {
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
        let files = data.load()?;
        let rates = RateTable::load_or_sample(&data.path)
            .map_err(|e| anyhow::anyhow!("rate table in {}: {e}", data.path.display()))?;
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
        let ledger = spawn_ledger(&database, &files.key, ledger_config)
            .await
            .with_context(|| format!("opening the ledger {database}"))?;
        let listen = match listen {
            Some(a) => a,
            None => files.config.listen.parse().with_context(|| {
                format!("listen address {:?} in vendor.toml", files.config.listen)
            })?,
        };
        let directory = DirectoryHandle::spawn(Directory::open(&files.db_path)?)?;
        let mut server_config = crate::tls::server_config(files.cert_der.clone(), &files.key)?;
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
            .add(files.key.verifying_key().as_bytes())
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
            key: files.key,
            directory,
            ledger,
            rates,
            dummy_hash,
            sessions: Mutex::new(sessions),
            links: Mutex::new(HashMap::new()),
            login_gate: Mutex::new(login_gate),
            passwords,
            monitor: Arc::new(MonitorHub::default()),
            statements,
            admission: Mutex::new(admission),
            scan_sources: Mutex::new(scan_sources),
            scan_pieces: Mutex::new(scan_pieces),
            handshakes: Mutex::new(handshakes),
            limits_hit: LimitCounters::default(),
        });
        // The reaper's unsettled commits move account figures the monitor shows.
        let mut expirations = shared.ledger.expirations();
        let hub = Arc::downgrade(&shared.monitor);
        tokio::spawn(async move {
            while expirations.changed().await.is_ok() {
                let Some(hub) = hub.upgrade() else { break };
                hub.all_ledgers_changed();
            }
        });
        tokio::spawn(watch_revocations(Arc::downgrade(&shared)));
        let accept_task = tokio::spawn(accept_loop(endpoint.clone(), shared.clone()));
        tracing::info!(%listen, fingerprint = %crate::identity::fingerprint(&shared.key.verifying_key()), "vendor serving");
        Ok(VendorServer {
            endpoint,
            shared,
            accept_task,
        })
    }

    pub fn local_addr(&self) -> anyhow::Result<SocketAddr> {
        Ok(self.endpoint.local_addr()?)
    }

    pub fn fingerprint(&self) -> String {
        crate::identity::fingerprint(&self.shared.key.verifying_key())
    }

    pub fn public_key(&self) -> VerifyingKey {
        self.shared.key.verifying_key()
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
        self.endpoint.wait_idle().await;
    }

    /// Serves until the endpoint closes.
    pub async fn wait(self) {
        let _ = self.accept_task.await;
    }
}

/// Opens the ledger store with the vendor key as its item signer and starts the ledger service
/// (simulated payment processor, embedded licensing continuing after the largest license held).
pub async fn spawn_ledger(
    database: &str,
    key: &SigningKey,
    config: LedgerConfig,
) -> anyhow::Result<LedgerHandle> {
    let signer = Arc::new(VendorItemSigner::new(key));
    let store: Arc<dyn LedgerStore> =
        crate::ledger::open_store(database, signer, config.limits.clone())
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
    let last_license = store
        .max_license()
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(service::spawn(
        store,
        Arc::new(SimulatedProcessor::new()),
        Arc::new(EmbeddedLicensing::new(last_license, u64::from(u32::MAX))),
        Arc::new(SystemClock),
        config,
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding these maps leaves plain data behind; keep serving.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A source's connection slot, given back when the connection's task ends.
struct SourceSlot {
    shared: Arc<Shared>,
    source: SourceKey,
}

impl Drop for SourceSlot {
    fn drop(&mut self) {
        lock(&self.shared.admission).release(self.source);
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        let source = SourceKey::of(incoming.remote_address().ip());
        let verdict = lock(&shared.admission).decide(
            source,
            incoming.remote_address_validated(),
            endpoint.open_connections(),
        );
        match verdict {
            Verdict::Accept => {
                // The source's handshake budget: only an address proven by a Retry is charged
                // (a spoofed one cannot spend its victim's budget); one whose budget is spent
                // is asked to prove its address, then refused.
                let now = Instant::now();
                let mut budget = lock(&shared.handshakes);
                if incoming.remote_address_validated() {
                    if !matches!(budget.take(source, now), Take::Allowed) {
                        drop(budget);
                        LimitCounters::bump(&shared.limits_hit.refused_handshake_rate);
                        tracing::debug!(%source, "refusing connection: handshakes_per_source_per_minute spent");
                        incoming.refuse();
                        continue;
                    }
                } else if !budget.has_budget(source, now) {
                    drop(budget);
                    LimitCounters::bump(&shared.limits_hit.retries_sent);
                    if let Err(e) = incoming.retry() {
                        e.into_incoming().refuse();
                    }
                    continue;
                }
            }
            Verdict::Retry => {
                tracing::debug!(%source, "validating the address with a Retry");
                LimitCounters::bump(&shared.limits_hit.retries_sent);
                if let Err(e) = incoming.retry() {
                    e.into_incoming().refuse();
                }
                continue;
            }
            Verdict::Refuse(why) => {
                LimitCounters::bump(match why {
                    Refusal::VendorFull => &shared.limits_hit.refused_connections_max,
                    Refusal::SourceFull => &shared.limits_hit.refused_per_source,
                });
                match why {
                    Refusal::VendorFull => tracing::warn!(
                        limit = shared.config.connections_max,
                        "refusing connection: connections_max reached"
                    ),
                    Refusal::SourceFull => tracing::debug!(
                        %source,
                        limit = shared.config.connections_per_source_max,
                        "refusing connection: connections_per_source_max reached"
                    ),
                }
                incoming.refuse();
                continue;
            }
        }
        let slot = SourceSlot {
            shared: shared.clone(),
            source,
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            // Await the full handshake: nothing is read before it completes (no 0-RTT).
            match incoming.accept() {
                Ok(connecting) => match connecting.await {
                    Ok(conn) => serve_connection(conn, shared, source).await,
                    Err(e) => tracing::info!(%remote, error = %e, "handshake failed"),
                },
                Err(e) => tracing::info!(%remote, error = %e, "could not accept"),
            }
            drop(slot);
        });
    }
}

/// Per-connection state shared by its request streams.
struct ConnState {
    shared: Arc<Shared>,
    conn: quinn::Connection,
    exporter: Exporter,
    session: Mutex<ConnSession>,
    /// `scan` requests made on this connection (bounded by `scans_per_connection_max`).
    scans: AtomicU32,
    /// Where the connection comes from (per-source budgets).
    source: SourceKey,
}

/// The one session of a connection.
#[derive(Default)]
struct ConnSession {
    active: Option<ActiveSession>,
    /// The connection ended: nothing binds to it any more.
    closed: bool,
}

#[derive(Clone)]
struct ActiveSession {
    session_id: u64,
    terminal_id: u64,
    /// The directory account of the terminal.
    account_id: u64,
    clerk: String,
    ledger_account: AccountId,
    keys: SessionKeys,
}

fn exporter_of(conn: &quinn::Connection) -> anyhow::Result<Exporter> {
    let mut out = [0u8; keys::EXPORTER_BYTES];
    conn.export_keying_material(&mut out, keys::EXPORTER_LABEL, keys::EXPORTER_CONTEXT)
        .map_err(|_| anyhow::anyhow!("TLS exporter unavailable"))?;
    Ok(Exporter(out))
}

async fn serve_connection(conn: quinn::Connection, shared: Arc<Shared>, source: SourceKey) {
    let exporter = match exporter_of(&conn) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(error = %e, "closing connection");
            conn.close(quinn::VarInt::from_u32(0), b"exporter unavailable");
            return;
        }
    };
    let state = Arc::new(ConnState {
        shared,
        conn: conn.clone(),
        exporter,
        session: Mutex::new(ConnSession::default()),
        scans: AtomicU32::new(0),
        source,
    });
    let deadline = tokio::time::sleep(Duration::from_millis(state.shared.config.login_deadline_ms));
    tokio::pin!(deadline);
    let mut deadline_armed = true;
    loop {
        tokio::select! {
            accepted = conn.accept_bi() => {
                let Ok((send, recv)) = accepted else { break };
                let state = state.clone();
                tokio::spawn(async move { serve_stream(state, send, recv).await });
            }
            () = &mut deadline, if deadline_armed => {
                deadline_armed = false;
                if lock(&state.session).active.is_none() {
                    LimitCounters::bump(&state.shared.limits_hit.closed_at_login_deadline);
                    tracing::info!(%source, "closing a connection that did not log in in time");
                    conn.close(
                        quinn::VarInt::from_u32(CLOSE_LOGIN_DEADLINE),
                        b"no login before login_deadline_ms",
                    );
                }
            }
        }
    }
    detach(&state);
}

/// The connection ended: its session becomes resumable for a while (and stops counting
/// against `sessions_max`), the link view goes away, and no login still in flight on it can
/// bind a session to it.
fn detach(state: &ConnState) {
    let mut conn_session = lock(&state.session);
    conn_session.closed = true;
    lock(&state.shared.sessions).detach(state.conn.stable_id(), Instant::now());
    let Some(active) = conn_session.active.clone() else {
        return;
    };
    let mut links = lock(&state.shared.links);
    if links.get(&active.terminal_id).is_some_and(|l| {
        l.session_id == active.session_id && l.conn.stable_id() == state.conn.stable_id()
    }) {
        links.remove(&active.terminal_id);
    }
    drop(links);
    drop(conn_session);
    state.shared.monitor.touch();
}

async fn serve_stream(
    state: Arc<ConnState>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let read_timeout = Duration::from_millis(state.shared.config.request_read_timeout_ms);
    let read = tokio::time::timeout(read_timeout, recv.read_to_end(wire::REQUEST_BYTES_MAX)).await;
    let Ok(read) = read else {
        tracing::debug!(source = %state.source, "resetting a request stream: request_read_timeout_ms passed");
        LimitCounters::bump(&state.shared.limits_hit.streams_reset_read_timeout);
        let code = quinn::VarInt::from_u32(STREAM_READ_TIMEOUT);
        let _ = recv.stop(code);
        let _ = send.reset(code);
        return;
    };
    let response = match read {
        Ok(bytes) => match wire::decode_request(&bytes) {
            Ok(Request::SubscribeTerminals(_)) => {
                subscribe(&state, send).await;
                return;
            }
            Ok(request) => {
                let kind = request.kind();
                match handle(&state, request).await {
                    Ok(body) => body,
                    Err(err) => {
                        tracing::info!(request = kind, code = ?err.code, message = %escaped(&err.message), "request refused");
                        wire::encode_error(&err)
                    }
                }
            }
            Err(err) => {
                tracing::info!(code = ?err.code, message = %escaped(&err.message), "bad request");
                wire::encode_error(&err)
            }
        },
        Err(quinn::ReadToEndError::TooLong) => {
            wire::encode_error(&wire::oversized(wire::REQUEST_BYTES_MAX + 1))
        }
        Err(_) => return,
    };
    match write_within(&mut send, &response, write_timeout(&state)).await {
        Ok(()) => {
            let _ = send.finish();
        }
        Err(WriteEnd::TimedOut) => {
            LimitCounters::bump(&state.shared.limits_hit.streams_reset_write_timeout);
        }
        Err(WriteEnd::Closed) => {}
    }
}

fn write_timeout(state: &ConnState) -> Duration {
    Duration::from_millis(state.shared.config.response_write_timeout_ms)
}

/// Why [`write_within`] did not write everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteEnd {
    /// The stream or connection went away.
    Closed,
    /// The client took nothing for `response_write_timeout_ms`; the stream was reset.
    TimedOut,
}

/// Writes `bytes` unless the client stops taking them (QUIC flow control) for `timeout`; then
/// resets the stream with [`STREAM_WRITE_TIMEOUT`], so a client that never reads holds no
/// task, buffer or slot.
pub(crate) async fn write_within(
    send: &mut quinn::SendStream,
    bytes: &[u8],
    timeout: Duration,
) -> Result<(), WriteEnd> {
    match tokio::time::timeout(timeout, send.write_all(bytes)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(WriteEnd::Closed),
        Err(_) => {
            tracing::debug!("resetting a stream: response_write_timeout_ms passed");
            let _ = send.reset(quinn::VarInt::from_u32(STREAM_WRITE_TIMEOUT));
            Err(WriteEnd::TimedOut)
        }
    }
}

fn internal(e: impl std::fmt::Display) -> ErrorBody {
    tracing::error!(error = %e, "internal error");
    ErrorBody::new(ErrorCode::Internal, "internal vendor error; try again")
}

fn directory_error(e: directory::DirectoryError) -> ErrorBody {
    match e {
        directory::DirectoryError::Busy => {
            ErrorBody::new(ErrorCode::Busy, e.to_string()).with_retry_after_ms(100)
        }
        other => internal(other),
    }
}

async fn handle(state: &Arc<ConnState>, request: Request) -> Result<Vec<u8>, ErrorBody> {
    let moves_money = matches!(
        request,
        Request::Fund(_)
            | Request::Authorize(_)
            | Request::Commit(_)
            | Request::Void(_)
            | Request::RefundRequest(_)
    );
    let answer = dispatch(state, request).await;
    if let (true, Ok(_), Ok(active)) = (moves_money, &answer, require_session(state)) {
        state.shared.monitor.ledger_changed(active.account_id);
    }
    answer
}

async fn dispatch(state: &Arc<ConnState>, request: Request) -> Result<Vec<u8>, ErrorBody> {
    match request {
        Request::Enroll(r) => enroll(state, r).await,
        Request::Login(r) => login(state, r).await,
        Request::Resume(r) => resume(state, r).await,
        Request::Ping(_) => {
            require_session(state)?;
            Ok(wire::encode_ok(&wire::Pong {
                vendor_time_ms: now_ms(),
            }))
        }
        Request::ClockCheck(r) => clock_check(state, r),
        Request::Balance(_) => balance(state).await,
        Request::Quote(q) => {
            require_session(state)?;
            Ok(wire::encode_ok(&front::quote(&state.shared.rates, &q)?))
        }
        Request::Fund(r) => fund(state, r).await,
        Request::Authorize(r) => authorize(state, r).await,
        Request::Commit(r) => commit(state, r).await,
        Request::Void(r) => void(state, r).await,
        Request::RefundRequest(r) => refund_request(state, r).await,
        Request::Statement(r) => statement(state, r).await,
        Request::Piece(r) => piece(state, r).await,
        Request::Pieces(r) => pieces(state, r).await,
        Request::PrinterStatus(r) => printer_status(state, r),
        Request::SubscribeTerminals(_) => Err(ErrorBody::malformed(
            "subscribe_terminals is answered with a frame stream, not here",
        )),
        Request::Scan(r) => scan(state, r).await,
    }
}

/// `printer_status`: keep the counter's printer report with its terminal's live view.
fn printer_status(state: &Arc<ConnState>, r: wire::PrinterReport) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let printer = r.validate()?;
    tracing::debug!(terminal = active.terminal_id, %printer, "printer status");
    state.shared.monitor.set_printer(
        active.terminal_id,
        PrinterView {
            state: printer,
            detail: r.detail,
        },
    );
    Ok(wire::encode_ok(&wire::PrinterRecorded {
        vendor_time_ms: now_ms(),
    }))
}

/// `subscribe_terminals`: checks the session is a supervisor's, then streams frames on this
/// stream until the subscriber or the connection goes away. Refusals are one framed error.
async fn subscribe(state: &Arc<ConnState>, mut send: quinn::SendStream) {
    match admit_subscriber(state).await {
        Ok(ctx) => monitor::run_subscription(ctx, send).await,
        Err(err) => {
            tracing::info!(request = "subscribe_terminals", code = ?err.code, message = %escaped(&err.message), "request refused");
            let frame = wire::monitor::encode_frame(&wire::encode_error(&err));
            match write_within(&mut send, &frame, write_timeout(state)).await {
                Ok(()) => {
                    let _ = send.finish();
                }
                Err(WriteEnd::TimedOut) => {
                    LimitCounters::bump(&state.shared.limits_hit.streams_reset_write_timeout);
                }
                Err(WriteEnd::Closed) => {}
            }
        }
    }
}

async fn admit_subscriber(state: &Arc<ConnState>) -> Result<monitor::SubscriptionCtx, ErrorBody> {
    let active = require_session(state)?;
    let shared = &state.shared;
    let name = active.clerk.clone();
    let clerk = shared
        .directory
        .call(move |d| d.clerk(&name))
        .await
        .map_err(directory_error)?;
    let supervisor = clerk
        .as_ref()
        .is_some_and(|c| c.role == "supervisor" && c.account_id == active.account_id);
    if !supervisor {
        tracing::warn!(clerk = %escaped(&active.clerk), terminal = active.terminal_id, "monitor refused: not a supervisor");
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            "only a supervisor of this account may watch its terminals; sign in as one",
        ));
    }
    let permit = shared.monitor.admit(
        active.account_id,
        monitor::SubscriberLimits {
            subscribers_max: shared.config.monitor_subscribers_max,
            subscribers_per_account_max: shared.config.monitor_subscribers_per_account_max,
        },
    )?;
    tracing::info!(clerk = %escaped(&active.clerk), account = active.account_id, "monitor subscription started");
    let links = shared.clone();
    Ok(monitor::SubscriptionCtx {
        hub: shared.monitor.clone(),
        directory: shared.directory.clone(),
        ledger: shared.ledger.clone(),
        account_id: active.account_id,
        ledger_account: active.ledger_account,
        live: Box::new(move |ids| {
            let map = lock(&links.links);
            ids.iter()
                .filter_map(|id| map.get(id).map(|l| (*id, l.clone())))
                .collect()
        }),
        push_interval: Duration::from_millis(shared.config.monitor_push_interval_ms),
        queue_max: shared.config.monitor_queue_max,
        write_timeout: write_timeout(state),
        write_timeouts: Arc::new({
            let shared = shared.clone();
            move || LimitCounters::bump(&shared.limits_hit.streams_reset_write_timeout)
        }),
        conn: state.conn.clone(),
        permit,
    })
}

fn require_session(state: &ConnState) -> Result<ActiveSession, ErrorBody> {
    lock(&state.session).active.clone().ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::NotLoggedIn,
            "log in (or resume) on this connection first",
        )
    })
}

async fn enroll(state: &Arc<ConnState>, r: wire::Enroll) -> Result<Vec<u8>, ErrorBody> {
    let mut device_key = [0u8; 32];
    device_key.copy_from_slice(&r.device_key);
    VerifyingKey::from_bytes(&device_key)
        .map_err(|_| ErrorBody::malformed("enroll.device_key is not an Ed25519 public key"))?;
    let mut challenge = [0u8; 8];
    challenge.copy_from_slice(&r.challenge);
    let name = r.name.clone();
    let outcome = state
        .shared
        .directory
        .call(move |d| d.enroll(&r.code, &r.name, device_key, now_ms()))
        .await
        .map_err(directory_error)?;
    let terminal = match outcome {
        EnrollOutcome::Enrolled(t) => t,
        EnrollOutcome::BadCode => {
            tracing::warn!(name = %escaped(&name), "enrollment refused: bad enrollment code");
            return Err(ErrorBody::new(
                ErrorCode::BadEnrollmentCode,
                "enrollment code is not valid; ask the vendor for the account's code",
            ));
        }
    };
    let vendor_time_ms = now_ms();
    let transcript = keys::enroll_transcript(&challenge, &state.exporter, vendor_time_ms);
    let signature = state.shared.key.sign(&transcript);
    tracing::info!(terminal = terminal.id, account = terminal.account_id, name = %escaped(&terminal.name), "terminal enrolled");
    state.shared.monitor.terminals_changed(terminal.account_id);
    Ok(wire::encode_ok(&wire::Enrolled {
        terminal_id: terminal.id,
        account_id: terminal.account_id,
        vendor_time_ms,
        signature: signature.to_bytes().to_vec(),
    }))
}

/// The terminal a login or resume names, if it is enrolled, not revoked, and `proof` verifies
/// with its device key. An unknown terminal, a revoked one and a bad proof answer the same
/// `unknown_terminal` after the same work (a signature check against a stand-in key), so
/// terminal ids cannot be enumerated from outside.
async fn terminal_by_proof(
    state: &ConnState,
    terminal_id: u64,
    clerk: &str,
    proof: &[u8],
) -> Result<Terminal, ErrorBody> {
    let found = state
        .shared
        .directory
        .call(move |d| d.terminal(terminal_id))
        .await
        .map_err(directory_error)?
        .filter(|t| t.revoked_ms.is_none());
    // A stand-in key (the vendor's own public key) keeps the work the same when there is no
    // terminal: the proof is checked either way.
    let device_key = found.as_ref().map_or_else(
        || state.shared.key.verifying_key().to_bytes(),
        |t| t.device_key,
    );
    let verified = VerifyingKey::from_bytes(&device_key)
        .ok()
        .zip(Signature::from_slice(proof).ok())
        .is_some_and(|(key, sig)| {
            key.verify(
                &keys::login_transcript(&state.exporter, terminal_id, clerk),
                &sig,
            )
            .is_ok()
        });
    match found {
        Some(t) if verified => Ok(t),
        _ => {
            tracing::warn!(
                terminal = terminal_id,
                "device refused: unknown, revoked or bad proof"
            );
            Err(ErrorBody::new(
                ErrorCode::UnknownTerminal,
                "this terminal is not enrolled with this vendor, was revoked, or its device key does not match; enroll it again",
            ))
        }
    }
}

/// Ends every live session of a revoked terminal or a disabled clerk, and forgets them so
/// they cannot be resumed; looks every [`REVOCATION_POLL_MS`] (the directory is read only
/// when another process committed to it). Stops with the server.
async fn watch_revocations(shared: std::sync::Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(REVOCATION_POLL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let changed = match shared.directory.call(|d| d.revocations_if_changed()).await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "revocations not read");
                continue;
            }
        };
        let Some(r) = changed else { continue };
        let ended: Vec<TerminalLink> = lock(&shared.links)
            .values()
            .filter(|l| r.terminals.contains(&l.terminal_id) || r.clerks.contains(&l.clerk))
            .cloned()
            .collect();
        lock(&shared.sessions)
            .forget(|s| r.terminals.contains(&s.terminal_id) || r.clerks.contains(&s.clerk));
        for l in ended {
            tracing::info!(
                terminal = l.terminal_id,
                "ending a revoked terminal's or disabled clerk's session"
            );
            l.conn.close(
                quinn::VarInt::from_u32(CLOSE_REVOKED),
                b"terminal revoked or clerk disabled",
            );
        }
    }
}

/// `login`, in the order docs/PROTOCOL.md §4.2 gives: the terminal and its device proof,
/// the terminal's login rate, a place in the password pool, the attempt counted against the
/// clerk on this terminal (refused while locked), one password check in flight per terminal,
/// then argon2 on the pool. Only then a session, replacing this connection's previous one.
async fn login(state: &Arc<ConnState>, r: wire::Login) -> Result<Vec<u8>, ErrorBody> {
    let shared = &state.shared;
    let terminal_id = r.terminal_id;
    let terminal = terminal_by_proof(state, terminal_id, &r.clerk, &r.proof).await?;
    let slot = admit_login(shared, terminal_id)?;
    let clerk_name = r.clerk.clone();
    let attempt = shared
        .directory
        .call(move |d| d.begin_attempt(&clerk_name, terminal_id, now_ms()))
        .await
        .map_err(directory_error)?;
    if let Attempt::Locked { retry_after_ms } = attempt {
        tracing::warn!(clerk = %escaped(&r.clerk), terminal = terminal_id, retry_after_ms, "login refused: locked out");
        return Err(locked_out(retry_after_ms));
    }
    let Some(checking) = PasswordCheck::begin(shared, terminal_id) else {
        tracing::warn!(clerk = %escaped(&r.clerk), terminal = terminal_id, "login refused: another login of this terminal is being checked");
        return Err(match attempt.lock_ms_after_failure(now_ms()) {
            Some(ms) => locked_out(ms),
            None => ErrorBody::new(
                ErrorCode::Busy,
                "another login of this terminal is being checked; wait for its answer",
            )
            .with_retry_after_ms(LOGIN_BUSY_RETRY_AFTER_MS),
        });
    };
    let clerk_name = r.clerk.clone();
    let clerk = shared
        .directory
        .call(move |d| d.clerk(&clerk_name))
        .await
        .map_err(directory_error)?
        .filter(|c| c.account_id == terminal.account_id);
    let hash = clerk
        .as_ref()
        .map(|c| c.password_hash.clone())
        .unwrap_or_else(|| shared.dummy_hash.clone());
    let password_ok = slot
        .verify(r.password.clone(), hash)
        .await
        .ok_or_else(|| internal("the password pool stopped"))?;
    drop(checking);
    let Some(clerk) = clerk.filter(|_| password_ok) else {
        let failures = match attempt {
            Attempt::Counted { failures, .. } => failures,
            Attempt::Locked { .. } => 0,
        };
        tracing::warn!(clerk = %escaped(&r.clerk), terminal = terminal_id, failures, "login failed: bad credentials");
        return Err(match attempt.lock_ms_after_failure(now_ms()) {
            Some(ms) => locked_out(ms),
            None => ErrorBody::new(ErrorCode::BadCredentials, "clerk name or password is wrong"),
        });
    };
    let clerk_name = clerk.username.clone();
    shared
        .directory
        .call(move |d| d.clear_failures(&clerk_name, terminal_id))
        .await
        .map_err(directory_error)?;
    if clerk.disabled_ms.is_some() {
        tracing::warn!(clerk = %escaped(&clerk.username), terminal = terminal_id, "login refused: clerk disabled");
        return Err(ErrorBody::new(
            ErrorCode::Forbidden,
            "this clerk is disabled; ask a supervisor",
        ));
    }
    let ledger_account = front::ledger_account_of(&shared.ledger, terminal.account_id)
        .await
        .map_err(front::call_error)?;
    let session_id = new_session_id();
    let keys = keys::derive_session_keys(&state.exporter, session_id, terminal.id, &clerk.username);
    let active = ActiveSession {
        session_id,
        terminal_id: terminal.id,
        account_id: terminal.account_id,
        clerk: clerk.username.clone(),
        ledger_account,
        keys,
    };
    let record = SessionRecord {
        terminal_id: terminal.id,
        account_id: terminal.account_id,
        clerk: clerk.username.clone(),
        ledger_account,
        resume_key: active.keys.resume.clone(),
        binding: Binding::Live {
            connection: state.conn.stable_id(),
        },
    };
    bind_session(state, active, Some(record))?;
    tracing::info!(clerk = %escaped(&clerk.username), terminal = terminal.id, session = session_id, "clerk logged in");
    Ok(logged_in(
        &shared.config,
        session_id,
        terminal.account_id,
        &clerk.username,
    ))
}

/// A login refused for the vendor's load answers `busy` with this wait.
const LOGIN_BUSY_RETRY_AFTER_MS: u64 = 1000;

/// The terminal's login rate, then a place in the password pool; neither is counted against
/// the clerk (no password was looked at).
fn admit_login(shared: &Shared, terminal_id: u64) -> Result<PoolSlot, ErrorBody> {
    let verdict = lock(&shared.login_gate).admit(terminal_id, Instant::now());
    if let RateVerdict::Limited { retry_after } = verdict {
        let ms = u64::try_from(retry_after.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        tracing::warn!(
            terminal = terminal_id,
            retry_after_ms = ms,
            "login refused: terminal_login rate"
        );
        return Err(ErrorBody::new(
            ErrorCode::Busy,
            format!(
                "this terminal started more than terminal_login_burst_max = {} logins in a row; one more every {} ms",
                shared.config.terminal_login_burst_max, shared.config.terminal_login_interval_ms
            ),
        )
        .with_limit(u64::from(shared.config.terminal_login_burst_max))
        .with_retry_after_ms(ms));
    }
    shared.passwords.admit().map_err(|busy| {
        tracing::warn!(terminal = terminal_id, "login refused: password pool full");
        ErrorBody::new(ErrorCode::Busy, format!("{busy}; try again shortly"))
            .with_limit(u64::try_from(busy.in_flight_max + busy.queue_max).unwrap_or(u64::MAX))
            .with_retry_after_ms(LOGIN_BUSY_RETRY_AFTER_MS)
    })
}

/// The one password check of a terminal in flight; ended on drop (also when the login's task
/// is dropped with its connection).
struct PasswordCheck<'a> {
    shared: &'a Shared,
    terminal_id: u64,
}

impl<'a> PasswordCheck<'a> {
    fn begin(shared: &'a Shared, terminal_id: u64) -> Option<Self> {
        // Not `then_some(PasswordCheck { .. })`: that would build (and, refused, drop) a
        // check that ends the other login's while the gate's lock is still held.
        let begun = lock(&shared.login_gate).begin(terminal_id, Instant::now());
        if !begun {
            return None;
        }
        Some(PasswordCheck {
            shared,
            terminal_id,
        })
    }
}

impl Drop for PasswordCheck<'_> {
    fn drop(&mut self) {
        lock(&self.shared.login_gate).end(self.terminal_id);
    }
}

async fn resume(state: &Arc<ConnState>, r: wire::Resume) -> Result<Vec<u8>, ErrorBody> {
    let shared = &state.shared;
    let unknown = || {
        ErrorBody::new(
            ErrorCode::UnknownSession,
            "no resumable session with that id; log in again",
        )
    };
    let (clerk, account_id, ledger_account, resume_key) = {
        let mut sessions = lock(&shared.sessions);
        sessions.prune(Instant::now());
        let rec = sessions.get(r.session_id).ok_or_else(unknown)?;
        if rec.terminal_id != r.terminal_id {
            return Err(unknown());
        }
        (
            rec.clerk.clone(),
            rec.account_id,
            rec.ledger_account,
            rec.resume_key.clone(),
        )
    };
    let terminal_id = r.terminal_id;
    let terminal = terminal_by_proof(state, terminal_id, &clerk, &r.proof).await?;
    let clerk_name = clerk.clone();
    let disabled = shared
        .directory
        .call(move |d| d.clerk(&clerk_name))
        .await
        .map_err(directory_error)?
        .is_none_or(|c| c.disabled_ms.is_some());
    if disabled {
        lock(&shared.sessions).remove(r.session_id);
        return Err(unknown());
    }
    let expected = keys::resume_mac(&resume_key, &state.exporter);
    if !bool::from(expected.ct_eq(r.resume_mac.as_slice())) {
        tracing::warn!(
            terminal = terminal_id,
            session = r.session_id,
            "resume refused: bad resume MAC"
        );
        return Err(ErrorBody::new(
            ErrorCode::BadMac,
            "resume MAC does not verify",
        ));
    }
    let mut keys = keys::derive_session_keys(&state.exporter, r.session_id, terminal.id, &clerk);
    // The resume key stays the one from the original login.
    keys.resume = resume_key;
    bind_session(
        state,
        ActiveSession {
            session_id: r.session_id,
            terminal_id: terminal.id,
            account_id,
            clerk: clerk.clone(),
            ledger_account,
            keys,
        },
        None,
    )?;
    tracing::info!(clerk = %escaped(&clerk), terminal = terminal.id, session = r.session_id, "session resumed");
    Ok(logged_in(&shared.config, r.session_id, account_id, &clerk))
}

fn locked_out(retry_after_ms: u64) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::LockedOut,
        format!(
            "too many wrong passwords; try again in {} s",
            retry_after_ms.div_ceil(1000)
        ),
    )
    .with_retry_after_ms(retry_after_ms)
}

fn logged_in(config: &VendorConfig, session_id: u64, account_id: u64, clerk: &str) -> Vec<u8> {
    wire::encode_ok(&wire::LoggedIn {
        session_id,
        account_id,
        clerk: clerk.to_string(),
        keepalive_interval_ms: config.keepalive_interval_ms,
        detect_multiplier: config.detect_multiplier,
        up_after_keepalives: config.up_after_keepalives,
        request_clock_skew_ms_max: config.request_clock_skew_ms_max,
        vendor_time_ms: now_ms(),
    })
}

fn new_session_id() -> u64 {
    loop {
        let id = rand::random::<u64>();
        if id != 0 {
            return id;
        }
    }
}

/// Binds `active` to this connection: a login's new `record`, or (`None`) the resumed session
/// already in the table. Under the connection's lock, so a connection that ended meanwhile
/// gets nothing bound and a concurrent login on it cannot leave a second session: the table
/// drops the session this connection held and the terminal's other sessions, this
/// connection's previous link stops, and the terminal's previous connection is closed.
fn bind_session(
    state: &Arc<ConnState>,
    active: ActiveSession,
    record: Option<SessionRecord>,
) -> Result<(), ErrorBody> {
    let shared = &state.shared;
    let connection = state.conn.stable_id();
    let mut conn_session = lock(&state.session);
    if conn_session.closed {
        return Err(ErrorBody::new(
            ErrorCode::NotLoggedIn,
            "the connection ended before the session started",
        ));
    }
    {
        let mut sessions = lock(&shared.sessions);
        let now = Instant::now();
        match record {
            Some(record) => sessions.insert(active.session_id, record, connection, now),
            None => sessions
                .resume(active.session_id, active.terminal_id, connection, now)
                .map(|_| ()),
        }
        .map_err(|e| match e {
            BindError::Full { live_max } => ErrorBody::new(
                ErrorCode::Busy,
                format!("the vendor holds sessions_max = {live_max} live sessions"),
            )
            .with_limit(u64::try_from(live_max).unwrap_or(u64::MAX))
            .with_retry_after_ms(1000),
            BindError::Unknown => ErrorBody::new(
                ErrorCode::UnknownSession,
                "no resumable session with that id; log in again",
            ),
        })?;
    }
    let previous = conn_session.active.replace(active.clone());
    start_link(state, &active, previous.as_ref());
    drop(conn_session);
    shared.monitor.touch();
    Ok(())
}

/// Starts the keepalive link of `active` (the caller holds this connection's session lock):
/// stops the link of the session it replaced on this connection and closes the terminal's
/// previous connection.
fn start_link(state: &Arc<ConnState>, active: &ActiveSession, previous: Option<&ActiveSession>) {
    let shared = &state.shared;
    let this_conn = state.conn.stable_id();
    let mut links = lock(&shared.links);
    if let Some(prev) = previous
        && links
            .get(&prev.terminal_id)
            .is_some_and(|l| l.session_id == prev.session_id && l.conn.stable_id() == this_conn)
        && let Some(old) = links.remove(&prev.terminal_id)
    {
        old.link.stop();
    }
    let guard = shared.config.guard();
    let endpoint = KeepaliveEndpoint::new(
        active.session_id,
        active.keys.keepalive_vendor_to_counter.clone(),
        active.keys.keepalive_counter_to_vendor.clone(),
        Instant::now(),
        guard.detect_window(),
    );
    let link = driver::spawn(state.conn.clone(), endpoint, guard, active.session_id);
    // Push every link state change to monitor subscribers; ends with the driver.
    let mut link_state = link.state.clone();
    let hub = shared.monitor.clone();
    tokio::spawn(async move {
        while link_state.changed().await.is_ok() {
            hub.touch();
        }
        hub.touch();
    });
    let entry = TerminalLink {
        terminal_id: active.terminal_id,
        session_id: active.session_id,
        clerk: active.clerk.clone(),
        link,
        conn: state.conn.clone(),
    };
    let displaced = links.insert(active.terminal_id, entry);
    drop(links);
    match displaced {
        Some(old) if old.conn.stable_id() != this_conn => {
            tracing::info!(
                terminal = active.terminal_id,
                "closing the terminal's previous connection"
            );
            old.conn.close(
                quinn::VarInt::from_u32(CLOSE_SUPERSEDED),
                b"superseded by a newer connection",
            );
        }
        Some(old) => old.link.stop(),
        None => {}
    }
}

fn clock_check(state: &Arc<ConnState>, r: wire::ClockCheck) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let mut request_id = [0u8; 16];
    request_id.copy_from_slice(&r.request_id);
    let input = MacInput {
        operation: "clock_check",
        request_id,
        amount_cents: 0,
        client_time_ms: r.client_time_ms,
        clerk: &active.clerk,
        destination: "",
    };
    let vendor_time_ms = now_ms();
    input
        .verify(
            &active.keys.request_mac,
            &r.mac,
            vendor_time_ms,
            state.shared.config.request_clock_skew_ms_max,
        )
        .map_err(|e| match e {
            crate::wire::reqmac::RequestMacError::ClockSkew { limit_ms, .. } => {
                ErrorBody::new(ErrorCode::ClockSkew, e.to_string()).with_limit(limit_ms)
            }
            crate::wire::reqmac::RequestMacError::BadMac => {
                ErrorBody::new(ErrorCode::BadMac, e.to_string())
            }
            other => ErrorBody::malformed(other.to_string()),
        })?;
    let skew_ms =
        i64::try_from(r.client_time_ms as i128 - vendor_time_ms as i128).unwrap_or(i64::MAX);
    Ok(wire::encode_ok(&wire::ClockChecked {
        vendor_time_ms,
        skew_ms,
    }))
}

/// The MAC/clock/link facts of the session on this connection.
fn caller_link(state: &ConnState, active: &ActiveSession) -> Option<LinkState> {
    lock(&state.shared.links)
        .get(&active.terminal_id)
        .filter(|l| {
            l.session_id == active.session_id && l.conn.stable_id() == state.conn.stable_id()
        })
        .map(|l| *l.link.state.borrow())
}

fn check_money(
    state: &ConnState,
    active: &ActiveSession,
    operation: &str,
    request: &impl wire::MoneyRequest,
    amount_cents: u64,
    destination: &str,
) -> Result<crate::ledger::RequestId, ErrorBody> {
    let caller = Caller {
        clerk: &active.clerk,
        mac_key: &active.keys.request_mac,
        link_state: caller_link(state, active),
        vendor_time_ms: now_ms(),
        skew_ms_max: state.shared.config.request_clock_skew_ms_max,
    };
    let r = front::check_money_request(&caller, operation, request, amount_cents, destination);
    if let Err(e) = &r {
        tracing::warn!(terminal = active.terminal_id, clerk = %escaped(&active.clerk), operation, code = ?e.code, "money request refused before the ledger");
    }
    r
}

async fn balance(state: &Arc<ConnState>) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let a = state
        .shared
        .ledger
        .account(active.ledger_account)
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::Balance {
        ledger_account: a.id.0,
        meter: a.meter.to_string(),
        status: a.status.as_str().to_string(),
        registers: front::registers(&a.registers),
    }))
}

async fn fund(state: &Arc<ConnState>, r: wire::Fund) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let id = check_money(
        state,
        &active,
        "fund",
        &r,
        r.amount_cents,
        &r.method.destination(),
    )?;
    let method = front::payment_method(&r.method, now_ms())?;
    let amount = crate::money::Cents::new(r.amount_cents)
        .map_err(|e| ErrorBody::malformed(format!("fund.amount_cents: {e}")))?;
    let (payment, registers) = state
        .shared
        .ledger
        .fund_receipt(id, active.ledger_account, amount, method)
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::Funded {
        payment_id: payment.0,
        registers: front::registers(&registers),
    }))
}

async fn authorize(state: &Arc<ConnState>, r: wire::Authorize) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let item = r
        .item
        .to_item()
        .map_err(|e| ErrorBody::malformed(format!("authorize.item.{}: {}", e.field, e.reason)))?;
    let destination = wire::Authorize::destination(&item, &r.origin_zip);
    let id = check_money(
        state,
        &active,
        "authorize",
        &r,
        r.amount_cents,
        &destination,
    )?;
    let origin = wire::origin_zip(&r.origin_zip)
        .map_err(|e| ErrorBody::malformed(format!("authorize.{}: {}", e.field, e.reason)))?;
    let required = front::required_amount(&state.shared.rates, &item, origin)?;
    if required.get() != r.amount_cents {
        return Err(ErrorBody::new(
            ErrorCode::QuoteMismatch,
            format!(
                "authorize.amount_cents is {} but the vendor's price for this {} is {required}; authorize {}",
                r.amount_cents,
                item.kind(),
                required.get()
            ),
        )
        .with_amount_cents(required.get()));
    }
    let day = wire::day_of_ms(now_ms())
        .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
    let description = SignItem {
        item: r.item.clone(),
        origin_zip: r.origin_zip.clone(),
        day: day.days(),
    }
    .to_bytes();
    let a = state
        .shared
        .ledger
        .authorize_by(
            Some(TerminalId(active.terminal_id)),
            id,
            active.ledger_account,
            item.kind().code(),
            required,
            description,
        )
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::Authorized {
        piece_serial: a.id.serial.0,
        meter: a.meter.to_string(),
        amount_cents: a.amount.get(),
        expires_at_ms: a.expires_at_ms,
        registers: front::registers(&a.registers),
        indicium: a.signed,
    }))
}

fn piece_done(outcome: Outcome) -> Result<Vec<u8>, ErrorBody> {
    let (id, result, registers) = match outcome {
        Outcome::Committed { id, registers } => (id, "printed", registers),
        Outcome::Voided { id, registers } => (id, "voided", registers),
        Outcome::RefundRequested { id, registers } => (id, "refund_requested", registers),
        other => return Err(internal(format!("unexpected ledger outcome {other:?}"))),
    };
    Ok(wire::encode_ok(&wire::PieceDone {
        piece_serial: id.serial.0,
        result: result.to_string(),
        registers: front::registers(&registers),
    }))
}

async fn commit(state: &Arc<ConnState>, r: wire::Commit) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let dest = wire::piece_destination(r.piece_serial);
    let id = check_money(state, &active, "commit", &r, 0, &dest)?;
    let piece = front::piece_id(active.ledger_account, r.piece_serial);
    let registers = state
        .shared
        .ledger
        .commit(id, piece)
        .await
        .map_err(front::call_error)?;
    piece_done(Outcome::Committed {
        id: piece,
        registers,
    })
}

async fn void(state: &Arc<ConnState>, r: wire::Void) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let dest = wire::void_destination(r.piece_serial, r.reached_printer);
    let id = check_money(state, &active, "void", &r, 0, &dest)?;
    let piece = front::piece_id(active.ledger_account, r.piece_serial);
    let o = state
        .shared
        .ledger
        .void_by(
            Some(TerminalId(active.terminal_id)),
            id,
            piece,
            r.reached_printer,
        )
        .await
        .map_err(front::call_error)?;
    piece_done(o)
}

async fn refund_request(
    state: &Arc<ConnState>,
    r: wire::RefundRequest,
) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let dest = wire::piece_destination(r.piece_serial);
    let id = check_money(state, &active, "refund_request", &r, 0, &dest)?;
    let piece = front::piece_id(active.ledger_account, r.piece_serial);
    let o = state
        .shared
        .ledger
        .request_refund(id, piece)
        .await
        .map_err(front::call_error)?;
    piece_done(o)
}

async fn statement(
    state: &Arc<ConnState>,
    r: wire::StatementRequest,
) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let max = state.shared.config.statements_in_flight_max;
    let _running = state.shared.statements.try_acquire().map_err(|_| {
        ErrorBody::new(
            ErrorCode::Busy,
            format!("the vendor is preparing statements_in_flight_max = {max} statements; try again shortly"),
        )
        .with_limit(max as u64)
        .with_retry_after_ms(1_000)
    })?;
    let s = state
        .shared
        .ledger
        .statement(active.ledger_account, r.from_ms, r.to_ms)
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::StatementBody {
        from_ms: s.from_ms,
        to_ms: s.to_ms,
        beginning_cents: s.beginning.get(),
        credits_cents: s.credits.get(),
        printed_cents: s.printed.get(),
        voided_cents: s.voided.get(),
        refunded_cents: s.refunded.get(),
        ending_cents: s.ending.get(),
    }))
}

async fn piece(state: &Arc<ConnState>, r: wire::PieceRequest) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let p = state
        .shared
        .ledger
        .piece(front::piece_id(active.ledger_account, r.piece_serial))
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&front::piece_info(&p)))
}

async fn pieces(state: &Arc<ConnState>, r: wire::PiecesRequest) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    // The codec bounds the limit; clamp again so the ledger never reads more.
    let limit = r.limit.clamp(1, wire::PIECES_LIST_MAX);
    let pieces = state
        .shared
        .ledger
        .pieces(
            active.ledger_account,
            r.before_serial.map(crate::ledger::PieceSerial),
            limit,
        )
        .await
        .map_err(front::call_error)?;
    Ok(wire::encode_ok(&wire::PieceList {
        pieces: pieces.iter().map(front::piece_info).collect(),
    }))
}

/// Takes one token of a scan budget; `what` names it in the refusal.
fn scan_budget<K: Eq + std::hash::Hash + Copy>(
    shared: &Shared,
    limiter: &Mutex<RateLimiter<K>>,
    key: K,
    per_minute: u32,
    what: &str,
) -> Result<(), ErrorBody> {
    let take = lock(limiter).take(key, Instant::now());
    if take != Take::Allowed {
        LimitCounters::bump(&shared.limits_hit.scans_limited);
    }
    match take {
        Take::Allowed => Ok(()),
        Take::Limited { retry_after_ms } => Err(ErrorBody::new(
            ErrorCode::ScanLimit,
            format!("{what} is limited to {per_minute} scans a minute; try again later"),
        )
        .with_limit(u64::from(per_minute))
        .with_retry_after_ms(retry_after_ms)),
        Take::TableFull => Err(ErrorBody::new(
            ErrorCode::Busy,
            "the vendor is tracking too many scan budgets; try again later",
        )
        .with_retry_after_ms(1000)),
    }
}

/// `scan`: a postal verifier presents an indicium. Order: the connection's scan budget, the
/// source's (it survives reconnects), then the signature with the vendor's own key (a forged
/// or foreign payload is refused before any lookup, so serials cannot be enumerated), then the
/// piece's budget, then the piece, then the ledger records the scan (which rejects a pending
/// refund request for it; a repeat within `scan_record_window_ms` only counts on the piece).
async fn scan(state: &Arc<ConnState>, r: wire::ScanRequest) -> Result<Vec<u8>, ErrorBody> {
    let limit = state.shared.config.scans_per_connection_max;
    let n = state
        .scans
        .fetch_add(1, Ordering::Relaxed)
        .saturating_add(1);
    if n > limit {
        return Err(ErrorBody::new(
            ErrorCode::ScanLimit,
            format!("this connection made {limit} scans, the most one connection may make"),
        )
        .with_limit(u64::from(limit)));
    }
    let config = &state.shared.config;
    scan_budget(
        &state.shared,
        &state.shared.scan_sources,
        state.source,
        config.scans_per_source_per_minute,
        "this source address",
    )?;
    let verified = verify_payload(&r.payload, &state.shared.own_keys)
        .map_err(|e| ErrorBody::new(ErrorCode::InvalidIndicium, e.to_string()))?;
    let body = verified.indicium.body;
    let meter = body.meter_serial.to_string();
    let piece_serial = body.piece_serial.get();
    if let Some(m) = crate::ledger::MeterSerial::parse(&meter) {
        scan_budget(
            &state.shared,
            &state.shared.scan_pieces,
            front::piece_id(m.account(), piece_serial),
            config.scans_per_piece_per_minute,
            "one piece",
        )?;
    }
    let answer = |state: &str, fraud: bool, refund_rejected: bool, scanned_before: bool| {
        wire::encode_ok(&wire::Scanned {
            meter: meter.clone(),
            piece_serial,
            state: state.to_string(),
            fraud,
            refund_rejected,
            scanned_before,
        })
    };
    // The vendor signed it, so the meter is one of its own; a serial it never issued is
    // still answered (as unknown) rather than trusted.
    let Some(m) = crate::ledger::MeterSerial::parse(&meter) else {
        return Ok(answer("unknown", false, false, false));
    };
    let id = front::piece_id(m.account(), piece_serial);
    let ledger = &state.shared.ledger;
    let piece = match ledger.piece(id).await {
        Ok(p) => p,
        Err(crate::ledger::CallError::Refused(crate::ledger::LedgerError::UnknownPiece(_))) => {
            return Ok(answer("unknown", false, false, false));
        }
        Err(e) => return Err(front::call_error(e)),
    };
    let outcome = ledger
        .record_scan(crate::ledger::RequestId::random(), id)
        .await
        .map_err(front::call_error)?;
    let refund_rejected = matches!(
        outcome,
        Outcome::ScanRecorded {
            refund_rejected: true,
            ..
        }
    );
    let item_state = piece.item_state();
    let (name, fraud) = if piece.signed != r.payload {
        ("not_as_issued", true)
    } else {
        use crate::ledger::ItemState;
        let fraud = matches!(item_state, ItemState::Voided | ItemState::Refunded);
        (front::item_state_name(item_state), fraud)
    };
    if fraud {
        tracing::warn!(meter = %meter, piece = piece_serial, state = name, "scan of a piece that must not be in the mail stream");
    }
    Ok(answer(name, fraud, refund_rejected, piece.scanned))
}
