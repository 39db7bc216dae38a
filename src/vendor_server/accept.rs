//! Shell: the vendor's accept loop and its connections. It carries out `admission`'s verdicts
//! and the per-source handshake budget (charged only to addresses proven by a Retry), holds a
//! `SourceSlot` per connection, closes a connection that did not log in by
//! `login_deadline_ms`, reads each request within `request_read_timeout_ms`, writes each
//! response and monitor frame within `response_write_timeout_ms` through [`write_within`],
//! and dispatches each request to `signin.rs`, `handlers.rs` or `scan.rs`. It also holds a
//! connection's session (`ConnState`) and admits supervisors to the admin monitor.
//!
//! It never reads a request or writes a response without a deadline, never logs a client
//! string unescaped, and never opens a database.

use super::admission::{Refusal, SourceKey, Verdict};
use super::directory;
use super::handlers::{
    authorize, balance, commit, day_report, fund, piece, pieces, refund_decide, refund_request,
    refunds_awaiting, statement, tender, void,
};
use super::money as front;
use super::monitor::{self, PrinterView};
use super::ratelimit::Take;
use super::scan::scan;
use super::server::{
    CLOSE_LOGIN_DEADLINE, LimitCounters, STREAM_READ_TIMEOUT, STREAM_WRITE_TIMEOUT, Shared, lock,
};
use super::signin::{clock_check, enroll, login, resume};
use crate::ledger::AccountId;
use crate::link::keys::{self, Exporter, SessionKeys};
use crate::logtext::escaped;
use crate::wire::{self, ErrorBody, ErrorCode, Request};
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

pub(super) async fn accept_loop(endpoint: quinn::Endpoint, shared: Arc<Shared>) {
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
pub(super) struct ConnState {
    pub(super) shared: Arc<Shared>,
    pub(super) conn: quinn::Connection,
    pub(super) exporter: Exporter,
    pub(super) session: Mutex<ConnSession>,
    /// `scan` requests made on this connection (bounded by `scans_per_connection_max`).
    pub(super) scans: AtomicU32,
    /// Where the connection comes from (per-source budgets).
    pub(super) source: SourceKey,
}

/// The one session of a connection.
#[derive(Default)]
pub(super) struct ConnSession {
    pub(super) active: Option<ActiveSession>,
    /// The connection ended: nothing binds to it any more.
    pub(super) closed: bool,
}

#[derive(Clone)]
pub(super) struct ActiveSession {
    pub(super) session_id: u64,
    pub(super) terminal_id: u64,
    /// The directory account of the terminal.
    pub(super) account_id: u64,
    pub(super) clerk: String,
    pub(super) ledger_account: AccountId,
    pub(super) keys: SessionKeys,
    /// The bind epoch across fronts (0 with one front).
    pub(super) epoch: u64,
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
    // Resumable on any front now (a bind elsewhere since has a higher epoch and stays).
    if let Some(fronts) = &state.shared.fronts {
        fronts.detach(active.session_id, active.epoch, crate::clock::unix_ms());
    }
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
            Ok(Request::BundleFile(r)) => {
                let started = Instant::now();
                let served = super::bundles::serve_file(&state, r, send).await;
                // Refusals are counted by their code (`unknown_bundle`, `busy`, ...).
                state.shared.request_metrics.observe(
                    wire::Operation::BundleFile,
                    served.code(),
                    started.elapsed(),
                );
                return;
            }
            Ok(request) => {
                let kind = request.operation();
                let started = Instant::now();
                let answered = handle(&state, request).await;
                let code = answered.as_ref().err().map(|e| e.code);
                state
                    .shared
                    .request_metrics
                    .observe(kind, code, started.elapsed());
                match answered {
                    Ok(body) => body,
                    Err(err) => {
                        tracing::info!(request = kind.as_str(), code = ?err.code, message = %escaped(&err.message), "request refused");
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
    answer(&state, &mut send, &response).await;
}

/// Writes a whole answer and finishes the stream; a client that does not take it within
/// `response_write_timeout_ms` has the stream reset, and that is counted.
async fn answer(state: &ConnState, send: &mut quinn::SendStream, bytes: &[u8]) {
    let written = write_within(send, bytes, write_timeout(state)).await;
    if written.is_ok() {
        let _ = send.finish();
    }
    count_write_timeout(state, written);
}

fn count_write_timeout(state: &ConnState, written: Result<(), WriteEnd>) {
    if written == Err(WriteEnd::TimedOut) {
        LimitCounters::bump(&state.shared.limits_hit.streams_reset_write_timeout);
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

pub(super) fn internal(e: impl std::fmt::Display) -> ErrorBody {
    tracing::error!(error = %e, "internal error");
    ErrorBody::new(ErrorCode::Internal, "internal vendor error; try again")
}

pub(super) fn directory_error(e: directory::DirectoryError) -> ErrorBody {
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
            | Request::RefundDecide(_)
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
                vendor_time_ms: crate::clock::unix_ms(),
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
        Request::Tender(r) => tender(state, r).await,
        Request::DayReport(r) => day_report(state, r).await,
        Request::RefundsAwaiting(r) => refunds_awaiting(state, r).await,
        Request::RefundDecide(r) => refund_decide(state, r).await,
        Request::Bundles(_) => super::bundles::list_answer(state),
        Request::BundleFile(_) => Err(ErrorBody::malformed(
            "bundle_file is answered with a header frame and the file, not here",
        )),
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
        vendor_time_ms: crate::clock::unix_ms(),
    }))
}

/// `subscribe_terminals`: checks the session is a supervisor's, then streams frames on this
/// stream until the subscriber or the connection goes away. Refusals are one framed error.
async fn subscribe(state: &Arc<ConnState>, mut send: quinn::SendStream) {
    match admit_subscriber(state).await {
        Ok(ctx) => count_write_timeout(state, monitor::run_subscription(ctx, send).await),
        Err(err) => {
            tracing::info!(request = wire::Operation::SubscribeTerminals.as_str(), code = ?err.code, message = %escaped(&err.message), "request refused");
            let frame = wire::monitor::encode_frame(&wire::encode_error(&err));
            answer(state, &mut send, &frame).await;
        }
    }
}

/// Refuses (`forbidden`, with `refusal` as the words) unless the session's clerk is a
/// supervisor of the session's account, as the directory says now.
pub(super) async fn require_supervisor(
    state: &Arc<ConnState>,
    active: &ActiveSession,
    operation: wire::Operation,
    refusal: &str,
) -> Result<(), ErrorBody> {
    let name = active.clerk.clone();
    let clerk = state
        .shared
        .directory
        .call(move |d| d.clerk(&name))
        .await
        .map_err(directory_error)?;
    let supervisor = clerk
        .as_ref()
        .is_some_and(|c| c.role == "supervisor" && c.account_id == active.account_id);
    if !supervisor {
        tracing::warn!(clerk = %escaped(&active.clerk), terminal = active.terminal_id, operation = operation.as_str(), "refused: not a supervisor");
        return Err(ErrorBody::new(ErrorCode::Forbidden, refusal));
    }
    Ok(())
}

async fn admit_subscriber(state: &Arc<ConnState>) -> Result<monitor::SubscriptionCtx, ErrorBody> {
    let active = require_session(state)?;
    let shared = &state.shared;
    require_supervisor(
        state,
        &active,
        wire::Operation::SubscribeTerminals,
        "only a supervisor of this account may watch its terminals; sign in as one",
    )
    .await?;
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
        conn: state.conn.clone(),
        permit,
    })
}

pub(super) fn require_session(state: &ConnState) -> Result<ActiveSession, ErrorBody> {
    lock(&state.session).active.clone().ok_or_else(|| {
        ErrorBody::new(
            ErrorCode::NotLoggedIn,
            "log in (or resume) on this connection first",
        )
    })
}
