//! A counter without a screen: connects, enrolls on first run, signs a clerk in, keeps the
//! supervised link, and reports link state changes and figures. Used by `frank counter
//! --headless` and by `frank demo` until the ratatui app (issue 6) takes over.

use super::client::{self, Session};
use super::supervisor::{self, Phase, SupervisorConfig, SupervisorHandle};
use super::terminal::TerminalDir;
use crate::link::driver::LinkStatus;
use crate::link::guard::LinkState;
use ed25519_dalek::VerifyingKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct HeadlessOptions {
    /// The vendor's fronts, tried in order.
    pub vendors: Vec<SocketAddr>,
    pub pinned: VerifyingKey,
    pub data_dir: PathBuf,
    pub enroll_code: Option<String>,
    pub terminal_name: String,
    pub clerk: String,
    /// How often to print a status line.
    pub report_interval_ms: u64,
}

/// Connects, enrolls if needed, logs in, and starts the supervisor.
pub async fn start(
    opts: &HeadlessOptions,
    password: &str,
) -> anyhow::Result<(SupervisorHandle, Session)> {
    sign_in(client::endpoint_for_fronts(&opts.vendors)?, opts, password).await
}

/// [`start`] on a given endpoint (the counter UI's backend keeps one across sign-ins).
/// `report_interval_ms` is not used here. A refused login reads as the vendor's message.
pub async fn sign_in(
    endpoint: quinn::Endpoint,
    opts: &HeadlessOptions,
    password: &str,
) -> anyhow::Result<(SupervisorHandle, Session)> {
    let (conn, front) = client::connect_first(&endpoint, &opts.vendors, opts.pinned).await?;
    let dir = TerminalDir::new(&opts.data_dir);
    let device_key = dir.device_key()?;
    let enrollment = dir
        .ensure_enrolled(
            &conn,
            &opts.pinned,
            opts.enroll_code.as_deref(),
            &opts.terminal_name,
        )
        .await?;
    let session = conn
        .login(enrollment.terminal_id, &device_key, &opts.clerk, password)
        .await
        .map_err(|e| match e {
            client::ClientError::Response(crate::wire::ResponseError::Refused(b)) => {
                anyhow::anyhow!("{}", b.message)
            }
            other => anyhow::Error::new(other),
        })?;
    let mut config = SupervisorConfig::new(opts.vendors.clone(), opts.pinned);
    config.first_front = front;
    let sup = supervisor::spawn(config, endpoint, device_key, session.clone());
    Ok((sup, session))
}

/// One status line: state, RTT, loss, counters.
pub fn status_line(s: &LinkStatus) -> String {
    let rtt = s
        .rtt
        .map(|d| format!("{:.1} ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|| "—".into());
    format!(
        "link {:<7} rtt {:>8}  loss {:>5.2}%  keepalives sent {} fresh {} late {} rejected {}  lapses {}",
        s.state.as_str(),
        rtt,
        s.loss_pct,
        s.counters.sent,
        s.counters.fresh,
        s.counters.late,
        s.counters.rejected(),
        s.lapses
    )
}

/// Prints state changes as they happen and a status line every `report_interval_ms`, until
/// `until` resolves or the supervisor stops.
pub async fn report(
    sup: &SupervisorHandle,
    report_interval_ms: u64,
    until: impl std::future::Future<Output = ()>,
) -> Phase {
    let mut state = sup.state.clone();
    let mut phase = sup.phase.clone();
    let mut tick = tokio::time::interval(Duration::from_millis(report_interval_ms.max(100)));
    let started = Instant::now();
    tokio::pin!(until);
    loop {
        tokio::select! {
            _ = &mut until => return phase.borrow().clone(),
            _ = tick.tick() => println!("{:>7.1}s  {}", started.elapsed().as_secs_f64(), status_line(&sup.status.borrow())),
            r = state.changed() => {
                if r.is_err() { return phase.borrow().clone(); }
                let s = *state.borrow_and_update();
                let note = match s {
                    LinkState::Up => "printing allowed",
                    LinkState::Lapsed => "keepalives stopped: printing stops within one chunk",
                    LinkState::Down => "reconnecting: printing disabled",
                    LinkState::Closed => "link closed",
                };
                println!("{:>7.1}s  ** link {} — {note}", started.elapsed().as_secs_f64(), s.as_str());
            }
            r = phase.changed() => {
                if r.is_err() { return phase.borrow().clone(); }
                let p = phase.borrow_and_update().clone();
                println!("{:>7.1}s  ** {}", started.elapsed().as_secs_f64(), describe(&p));
                if matches!(p, Phase::LoginRequired { .. } | Phase::Stopped { .. }) {
                    return p;
                }
            }
        }
    }
}

pub fn describe(p: &Phase) -> String {
    match p {
        Phase::Connected {
            session_id,
            connection,
        } => {
            format!("session {session_id:016x} on connection #{connection}")
        }
        Phase::Reconnecting {
            attempt,
            last_error,
        } => {
            format!("reconnecting (attempt {attempt}; last error: {last_error})")
        }
        Phase::LoginRequired { reason } => format!("clerk must sign in again: {reason}"),
        Phase::Stopped { reason } => format!("stopped: {reason}"),
    }
}
