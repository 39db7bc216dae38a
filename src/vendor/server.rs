//! The vendor's QUIC front: accepts connections, answers requests (one per bidirectional
//! stream), and after login runs a link driver per terminal. It holds no database connection:
//! the directory is behind [`DirectoryHandle`], the ledger behind [`LedgerHandle`].

use super::directory::{self, Directory, DirectoryHandle, EnrollOutcome, LockState};
use super::money::{self as front, Caller};
use super::monitor::{self, MonitorHub, PrinterView};
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
use crate::link::keys::{self, Exporter, MacKey, SessionKeys};
use crate::logtext::escaped;
use crate::wire::reqmac::MacInput;
use crate::wire::{self, ErrorBody, ErrorCode, Request};
use anyhow::Context;
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// Application close codes on the QUIC connection.
pub const CLOSE_SUPERSEDED: u32 = 1;
pub const CLOSE_SHUTDOWN: u32 = 2;

struct SessionRecord {
    terminal_id: u64,
    account_id: u64,
    clerk: String,
    ledger_account: AccountId,
    resume_key: MacKey,
    /// Set when the session's connection ended; resumable until then + session_resume_ms_max.
    detached_at: Option<Instant>,
}

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
    sessions: Mutex<HashMap<u64, SessionRecord>>,
    links: Mutex<HashMap<u64, TerminalLink>>,
    monitor: Arc<MonitorHub>,
}

/// A running vendor server.
pub struct VendorServer {
    endpoint: quinn::Endpoint,
    shared: Arc<Shared>,
    accept_task: tokio::task::JoinHandle<()>,
}

/// The QUIC transport settings both ends use.
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

pub const STREAMS_PER_CONNECTION_MAX: u32 = 16;
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
        server_config.transport_config(Arc::new(transport_config(files.config.idle_timeout_ms)));
        let endpoint = quinn::Endpoint::server(server_config, listen)
            .with_context(|| format!("listening on {listen}"))?;
        // A hash to verify against when the clerk does not exist, so timing does not tell.
        let dummy_hash =
            tokio::task::spawn_blocking(|| directory::hash_password("not a real password"))
                .await??;
        let mut own_keys = VendorKeys::new();
        own_keys
            .add(files.key.verifying_key().as_bytes())
            .map_err(|e| anyhow::anyhow!("the vendor key: {e}"))?;
        let shared = Arc::new(Shared {
            own_keys,
            config: files.config,
            key: files.key,
            directory,
            ledger,
            rates,
            dummy_hash,
            sessions: Mutex::new(HashMap::new()),
            links: Mutex::new(HashMap::new()),
            monitor: Arc::new(MonitorHub::default()),
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

    /// Live admin monitor subscriptions.
    pub fn monitor_subscribers(&self) -> usize {
        self.shared.monitor.subscribers()
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

async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
    while let Some(incoming) = endpoint.accept().await {
        if endpoint.open_connections() >= shared.config.connections_max {
            tracing::warn!(
                limit = shared.config.connections_max,
                "refusing connection: connections_max reached"
            );
            incoming.refuse();
            continue;
        }
        let shared = shared.clone();
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            // Await the full handshake: nothing is read before it completes (no 0-RTT).
            match incoming.accept() {
                Ok(connecting) => match connecting.await {
                    Ok(conn) => serve_connection(conn, shared).await,
                    Err(e) => tracing::info!(%remote, error = %e, "handshake failed"),
                },
                Err(e) => tracing::info!(%remote, error = %e, "could not accept"),
            }
        });
    }
}

/// Per-connection state shared by its request streams.
struct ConnState {
    shared: Arc<Shared>,
    conn: quinn::Connection,
    exporter: Exporter,
    session: Mutex<Option<ActiveSession>>,
    /// `scan` requests made on this connection (bounded by `scans_per_connection_max`).
    scans: AtomicU32,
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

async fn serve_connection(conn: quinn::Connection, shared: Arc<Shared>) {
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
        session: Mutex::new(None),
        scans: AtomicU32::new(0),
    });
    while let Ok((send, recv)) = conn.accept_bi().await {
        let state = state.clone();
        tokio::spawn(async move { serve_stream(state, send, recv).await });
    }
    detach(&state);
}

/// The connection ended: the session becomes resumable for a while, the link view goes away.
fn detach(state: &ConnState) {
    let Some(active) = lock(&state.session).clone() else {
        return;
    };
    if let Some(rec) = lock(&state.shared.sessions).get_mut(&active.session_id) {
        rec.detached_at = Some(Instant::now());
    }
    let mut links = lock(&state.shared.links);
    if links.get(&active.terminal_id).is_some_and(|l| {
        l.session_id == active.session_id && l.conn.stable_id() == state.conn.stable_id()
    }) {
        links.remove(&active.terminal_id);
    }
    drop(links);
    state.shared.monitor.touch();
}

async fn serve_stream(
    state: Arc<ConnState>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
) {
    let response = match recv.read_to_end(wire::REQUEST_BYTES_MAX).await {
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
    let _ = send.write_all(&response).await;
    let _ = send.finish();
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
            let _ = send.write_all(&frame).await;
            let _ = send.finish();
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
    let permit = shared
        .monitor
        .admit(shared.config.monitor_subscribers_max)?;
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
        conn: state.conn.clone(),
        permit,
    })
}

fn require_session(state: &ConnState) -> Result<ActiveSession, ErrorBody> {
    lock(&state.session).clone().ok_or_else(|| {
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

fn verify_device_proof(
    device_key: &[u8; 32],
    exporter: &Exporter,
    terminal_id: u64,
    clerk: &str,
    proof: &[u8],
) -> Result<(), ErrorBody> {
    let bad = || {
        ErrorBody::new(
            ErrorCode::BadDeviceSignature,
            "device proof does not verify for this terminal and connection",
        )
    };
    let key = VerifyingKey::from_bytes(device_key).map_err(|_| bad())?;
    let sig = Signature::from_slice(proof).map_err(|_| bad())?;
    key.verify(&keys::login_transcript(exporter, terminal_id, clerk), &sig)
        .map_err(|_| bad())
}

async fn login(state: &Arc<ConnState>, r: wire::Login) -> Result<Vec<u8>, ErrorBody> {
    if lock(&state.session).is_some() {
        return Err(ErrorBody::new(
            ErrorCode::AlreadyLoggedIn,
            "this connection already has a session",
        ));
    }
    let shared = &state.shared;
    let terminal_id = r.terminal_id;
    let terminal = shared
        .directory
        .call(move |d| d.terminal(terminal_id))
        .await
        .map_err(directory_error)?
        .ok_or_else(|| {
            tracing::warn!(terminal = terminal_id, "login from unknown terminal");
            ErrorBody::new(
                ErrorCode::UnknownTerminal,
                format!("terminal {terminal_id} is not enrolled; enroll it again"),
            )
        })?;
    verify_device_proof(
        &terminal.device_key,
        &state.exporter,
        terminal.id,
        &r.clerk,
        &r.proof,
    )?;
    let clerk_name = r.clerk.clone();
    let lock_state = shared
        .directory
        .call(move |d| d.lock_state(&clerk_name, terminal_id, now_ms()))
        .await
        .map_err(directory_error)?;
    if let LockState::LockedFor { retry_after_ms } = lock_state {
        tracing::warn!(clerk = %escaped(&r.clerk), terminal = terminal_id, retry_after_ms, "login refused: locked out");
        return Err(locked_out(retry_after_ms));
    }
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
    let password = r.password.clone();
    let password_ok =
        tokio::task::spawn_blocking(move || directory::verify_password(&password, &hash))
            .await
            .map_err(internal)?;
    let Some(clerk) = clerk.filter(|_| password_ok) else {
        let clerk_name = r.clerk.clone();
        let (failures, lock_state) = shared
            .directory
            .call(move |d| d.record_failure(&clerk_name, terminal_id, now_ms()))
            .await
            .map_err(directory_error)?;
        tracing::warn!(clerk = %escaped(&r.clerk), terminal = terminal_id, failures, "login failed: bad credentials");
        return Err(match lock_state {
            LockState::LockedFor { retry_after_ms } => locked_out(retry_after_ms),
            LockState::Open => {
                ErrorBody::new(ErrorCode::BadCredentials, "clerk name or password is wrong")
            }
        });
    };
    let clerk_name = clerk.username.clone();
    shared
        .directory
        .call(move |d| d.clear_failures(&clerk_name, terminal_id))
        .await
        .map_err(directory_error)?;
    let ledger_account = front::ledger_account_of(&shared.ledger, terminal.account_id)
        .await
        .map_err(front::call_error)?;
    let session_id = new_session_id();
    let keys = keys::derive_session_keys(&state.exporter, session_id, terminal.id, &clerk.username);
    {
        let mut sessions = lock(&shared.sessions);
        prune_sessions(&mut sessions, &shared.config);
        if sessions.len() >= shared.config.sessions_max {
            return Err(ErrorBody::new(
                ErrorCode::Busy,
                format!(
                    "vendor holds sessions_max = {} sessions",
                    shared.config.sessions_max
                ),
            )
            .with_retry_after_ms(1000));
        }
        sessions.insert(
            session_id,
            SessionRecord {
                terminal_id: terminal.id,
                account_id: terminal.account_id,
                clerk: clerk.username.clone(),
                ledger_account,
                resume_key: keys.resume.clone(),
                detached_at: None,
            },
        );
    }
    tracing::info!(clerk = %escaped(&clerk.username), terminal = terminal.id, session = session_id, "clerk logged in");
    let reply = logged_in(
        &shared.config,
        session_id,
        terminal.account_id,
        &clerk.username,
    );
    activate(
        state,
        ActiveSession {
            session_id,
            terminal_id: terminal.id,
            account_id: terminal.account_id,
            clerk: clerk.username,
            ledger_account,
            keys,
        },
    );
    Ok(reply)
}

async fn resume(state: &Arc<ConnState>, r: wire::Resume) -> Result<Vec<u8>, ErrorBody> {
    if lock(&state.session).is_some() {
        return Err(ErrorBody::new(
            ErrorCode::AlreadyLoggedIn,
            "this connection already has a session",
        ));
    }
    let shared = &state.shared;
    let unknown = || {
        ErrorBody::new(
            ErrorCode::UnknownSession,
            "no resumable session with that id; log in again",
        )
    };
    let (clerk, account_id, ledger_account, resume_key) = {
        let mut sessions = lock(&shared.sessions);
        prune_sessions(&mut sessions, &shared.config);
        let rec = sessions.get(&r.session_id).ok_or_else(unknown)?;
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
    let terminal = shared
        .directory
        .call(move |d| d.terminal(terminal_id))
        .await
        .map_err(directory_error)?
        .ok_or_else(|| {
            ErrorBody::new(
                ErrorCode::UnknownTerminal,
                format!("terminal {terminal_id} is not enrolled"),
            )
        })?;
    verify_device_proof(
        &terminal.device_key,
        &state.exporter,
        terminal.id,
        &clerk,
        &r.proof,
    )?;
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
    if let Some(rec) = lock(&shared.sessions).get_mut(&r.session_id) {
        rec.detached_at = None;
    }
    let mut keys = keys::derive_session_keys(&state.exporter, r.session_id, terminal.id, &clerk);
    // The resume key stays the one from the original login.
    keys.resume = resume_key;
    tracing::info!(clerk = %escaped(&clerk), terminal = terminal.id, session = r.session_id, "session resumed");
    let reply = logged_in(&shared.config, r.session_id, account_id, &clerk);
    activate(
        state,
        ActiveSession {
            session_id: r.session_id,
            terminal_id: terminal.id,
            account_id,
            clerk,
            ledger_account,
            keys,
        },
    );
    Ok(reply)
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

/// Drops sessions detached for longer than `session_resume_ms_max`.
fn prune_sessions(sessions: &mut HashMap<u64, SessionRecord>, config: &VendorConfig) {
    let max = Duration::from_millis(config.session_resume_ms_max);
    sessions.retain(|_, s| s.detached_at.is_none_or(|t| t.elapsed() < max));
}

/// Binds the session to this connection, supersedes the terminal's previous connection, and
/// starts the keepalive link.
fn activate(state: &Arc<ConnState>, active: ActiveSession) {
    let shared = &state.shared;
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
    *lock(&state.session) = Some(active.clone());
    let previous = lock(&shared.links).insert(active.terminal_id, entry);
    shared.monitor.touch();
    if let Some(old) = previous.filter(|old| old.conn.stable_id() != state.conn.stable_id()) {
        tracing::info!(
            terminal = active.terminal_id,
            "closing the terminal's previous connection"
        );
        old.conn.close(
            quinn::VarInt::from_u32(CLOSE_SUPERSEDED),
            b"superseded by a newer connection",
        );
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

/// `scan`: a postal verifier presents an indicium. Order: the connection's scan budget, then
/// the signature with the vendor's own key (a forged or foreign payload is refused before any
/// lookup, so serials cannot be enumerated), then the piece, then the ledger records the scan
/// (which rejects a pending refund request for it).
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
    let verified = verify_payload(&r.payload, &state.shared.own_keys)
        .map_err(|e| ErrorBody::new(ErrorCode::InvalidIndicium, e.to_string()))?;
    let body = verified.indicium.body;
    let meter = body.meter_serial.to_string();
    let piece_serial = body.piece_serial.get();
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
