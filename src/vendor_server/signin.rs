//! Shell: sign-in on the vendor — `enroll`, `login` (in the order docs/PROTOCOL.md §4.2
//! gives: the device proof, the terminal's login rate, the password pool, the attempt counted,
//! one password check in flight per terminal, argon2), `resume`, `clock_check`; binding a
//! session to its connection and starting its keepalive link (the per-terminal link view);
//! `terminal_by_proof`; `watch_revocations` (every `REVOCATION_POLL_MS`, ends and forgets the
//! sessions of revoked terminals and disabled clerks).
//!
//! It never runs argon2 outside the password pool, never tells an unknown or revoked terminal
//! from a bad proof (same answer after the same work), and never logs a client string
//! unescaped.

use super::VendorConfig;
use super::accept::{ActiveSession, ConnState, directory_error, internal, require_session};
use super::directory::{EnrollOutcome, Terminal};
use super::fronts::SharedSession;
use super::lockout::Attempt;
use super::login_gate::RateVerdict;
use super::money as front;
use super::password_pool::PoolSlot;
use super::server::{
    CLOSE_REVOKED, CLOSE_SUPERSEDED, REVOCATION_POLL_MS, Shared, TerminalLink, lock,
};
use super::sessions::{BindError, Binding, SessionRecord};
use crate::link::driver;
use crate::link::keepalive::KeepaliveEndpoint;
use crate::link::keys;
use crate::logtext::escaped;
use crate::wire::reqmac::MacInput;
use crate::wire::{self, ErrorBody, ErrorCode};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

pub(super) async fn enroll(state: &Arc<ConnState>, r: wire::Enroll) -> Result<Vec<u8>, ErrorBody> {
    // The decoder checked both lengths (`wire::field_len`); a wrong one is refused, never a panic.
    let device_key: [u8; 32] = r
        .device_key
        .as_slice()
        .try_into()
        .map_err(|_| ErrorBody::malformed("enroll.device_key must be 32 bytes"))?;
    VerifyingKey::from_bytes(&device_key)
        .map_err(|_| ErrorBody::malformed("enroll.device_key is not an Ed25519 public key"))?;
    let challenge: [u8; 8] = r
        .challenge
        .as_slice()
        .try_into()
        .map_err(|_| ErrorBody::malformed("enroll.challenge must be 8 bytes"))?;
    let name = r.name.clone();
    let outcome = state
        .shared
        .directory
        .call(move |d| d.enroll(&r.code, &r.name, device_key, crate::clock::unix_ms()))
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
    let vendor_time_ms = crate::clock::unix_ms();
    let transcript = keys::enroll_transcript(&challenge, &state.exporter, vendor_time_ms);
    // The vendor key may be in a token: it signs on a blocking thread, not the runtime's.
    let signer = state.shared.signer.clone();
    let signature = tokio::task::spawn_blocking(move || signer.sign(&transcript))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
        .map_err(|e| {
            tracing::error!(terminal = terminal.id, error = %e, "enrollment: the vendor key did not sign");
            ErrorBody::new(
                ErrorCode::Internal,
                "the vendor could not sign the enrollment; try again in a minute",
            )
        })?;
    tracing::info!(terminal = terminal.id, account = terminal.account_id, name = %escaped(&terminal.name), "terminal enrolled");
    state.shared.monitor.terminals_changed(terminal.account_id);
    Ok(wire::encode_ok(&wire::Enrolled {
        terminal_id: terminal.id,
        account_id: terminal.account_id,
        vendor_time_ms,
        signature: signature.to_vec(),
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
    let device_key = found
        .as_ref()
        .map_or_else(|| state.shared.public_key.to_bytes(), |t| t.device_key);
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
pub(super) async fn watch_revocations(shared: std::sync::Weak<Shared>) {
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
        super::cluster::forget_revoked(&shared, &r);
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
pub(super) async fn login(state: &Arc<ConnState>, r: wire::Login) -> Result<Vec<u8>, ErrorBody> {
    let shared = &state.shared;
    let terminal_id = r.terminal_id;
    let terminal = terminal_by_proof(state, terminal_id, &r.clerk, &r.proof).await?;
    let slot = admit_login(shared, terminal_id)?;
    let clerk_name = r.clerk.clone();
    let attempt = shared
        .directory
        .call(move |d| d.begin_attempt(&clerk_name, terminal_id, crate::clock::unix_ms()))
        .await
        .map_err(directory_error)?;
    if let Attempt::Locked { retry_after_ms } = attempt {
        tracing::warn!(clerk = %escaped(&r.clerk), terminal = terminal_id, retry_after_ms, "login refused: locked out");
        return Err(locked_out(retry_after_ms));
    }
    let Some(checking) = PasswordCheck::begin(shared, terminal_id) else {
        tracing::warn!(clerk = %escaped(&r.clerk), terminal = terminal_id, "login refused: another login of this terminal is being checked");
        return Err(
            match attempt.lock_ms_after_failure(crate::clock::unix_ms()) {
                Some(ms) => locked_out(ms),
                None => ErrorBody::new(
                    ErrorCode::Busy,
                    "another login of this terminal is being checked; wait for its answer",
                )
                .with_retry_after_ms(LOGIN_BUSY_RETRY_AFTER_MS),
            },
        );
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
        return Err(
            match attempt.lock_ms_after_failure(crate::clock::unix_ms()) {
                Some(ms) => locked_out(ms),
                None => {
                    ErrorBody::new(ErrorCode::BadCredentials, "clerk name or password is wrong")
                }
            },
        );
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
    let office = office_of(shared, terminal.account_id).await?;
    let session_id = new_session_id();
    let keys = keys::derive_session_keys(&state.exporter, session_id, terminal.id, &clerk.username);
    let epoch = super::cluster::bind(
        shared,
        SharedSession {
            session_id,
            terminal_id: terminal.id,
            account_id: terminal.account_id,
            clerk: clerk.username.clone(),
            ledger_account,
            resume_key: keys.resume.clone(),
        },
    )
    .await?;
    let active = ActiveSession {
        session_id,
        terminal_id: terminal.id,
        account_id: terminal.account_id,
        clerk: clerk.username.clone(),
        ledger_account,
        keys,
        epoch,
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
    super::cluster::bound_or_release(
        shared,
        &active,
        bind_session(state, active.clone(), Some(record)),
    )?;
    tracing::info!(clerk = %escaped(&clerk.username), terminal = terminal.id, session = session_id, "clerk logged in");
    Ok(logged_in(
        &shared.config,
        session_id,
        terminal.account_id,
        &clerk.username,
        office,
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

pub(super) async fn resume(state: &Arc<ConnState>, r: wire::Resume) -> Result<Vec<u8>, ErrorBody> {
    let shared = &state.shared;
    let unknown = || {
        ErrorBody::new(
            ErrorCode::UnknownSession,
            "no resumable session with that id; log in again",
        )
    };
    // A session bound on another front is brought into this front's table first.
    super::cluster::adopt(shared, r.session_id, r.terminal_id).await?;
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
    let office = office_of(shared, account_id).await?;
    let mut keys = keys::derive_session_keys(&state.exporter, r.session_id, terminal.id, &clerk);
    // The resume key stays the one from the original login.
    keys.resume = resume_key;
    let epoch = super::cluster::bind(
        shared,
        SharedSession {
            session_id: r.session_id,
            terminal_id: terminal.id,
            account_id,
            clerk: clerk.clone(),
            ledger_account,
            resume_key: keys.resume.clone(),
        },
    )
    .await?;
    let active = ActiveSession {
        session_id: r.session_id,
        terminal_id: terminal.id,
        account_id,
        clerk: clerk.clone(),
        ledger_account,
        keys,
        epoch,
    };
    super::cluster::bound_or_release(shared, &active, bind_session(state, active.clone(), None))?;
    tracing::info!(clerk = %escaped(&clerk), terminal = terminal.id, session = r.session_id, "session resumed");
    Ok(logged_in(
        &shared.config,
        r.session_id,
        account_id,
        &clerk,
        office,
    ))
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

/// The account's name for `LoggedIn::office` (empty when the directory has none).
async fn office_of(shared: &Shared, account_id: u64) -> Result<String, ErrorBody> {
    Ok(shared
        .directory
        .call(move |d| d.account_name(account_id))
        .await
        .map_err(directory_error)?
        .unwrap_or_default())
}

fn logged_in(
    config: &VendorConfig,
    session_id: u64,
    account_id: u64,
    clerk: &str,
    office: String,
) -> Vec<u8> {
    wire::encode_ok(&wire::LoggedIn {
        session_id,
        account_id,
        clerk: clerk.to_string(),
        office,
        keepalive_interval_ms: config.keepalive_interval_ms,
        detect_multiplier: config.detect_multiplier,
        up_after_keepalives: config.up_after_keepalives,
        request_clock_skew_ms_max: config.request_clock_skew_ms_max,
        vendor_time_ms: crate::clock::unix_ms(),
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
        account_id: active.account_id,
        session_id: active.session_id,
        epoch: active.epoch,
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

pub(super) fn clock_check(
    state: &Arc<ConnState>,
    r: wire::ClockCheck,
) -> Result<Vec<u8>, ErrorBody> {
    let active = require_session(state)?;
    let request_id: [u8; 16] = r
        .request_id
        .as_slice()
        .try_into()
        .map_err(|_| ErrorBody::malformed("clock_check.request_id must be 16 bytes"))?;
    let input = MacInput {
        operation: wire::Operation::ClockCheck,
        request_id,
        amount_cents: 0,
        client_time_ms: r.client_time_ms,
        clerk: &active.clerk,
        destination: "",
    };
    let vendor_time_ms = crate::clock::unix_ms();
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
