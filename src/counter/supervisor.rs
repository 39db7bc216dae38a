//! Keeps a counter's session alive across lapses and lost connections.
//!
//! After a lapse that lasts `lapse_reconnect_ms`, or when the connection is lost, the
//! supervisor drops the connection and reconnects with capped exponential backoff and jitter;
//! the session continues only after a fresh proof on the new connection (`resume`: the device
//! key signs the new exporter and the session's resume key MACs it). If the vendor no longer
//! knows the session the supervisor ends in [`Phase::LoginRequired`]: the counter's backend
//! logs in again (once, with the clerk's credentials), else the clerk must.
//!
//! **Several fronts.** With more than one vendor address, each reconnect attempt tries them in
//! turn, beginning with the front of the lost connection, and stays on the one that answered:
//! a front that is down costs one attempt (its connect timeout), not the session.

use super::backoff::{Backoff, BackoffConfig};
use super::client::{self, ClientError, Session};
use crate::link::driver::LinkStatus;
use crate::link::guard::LinkState;
use crate::wire::ErrorCode;
use ed25519_dalek::{SigningKey, VerifyingKey};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::sync::watch;

#[derive(Debug, Clone)]
pub struct SupervisorConfig {
    /// The vendor's fronts, in the order to try them.
    pub vendors: Vec<SocketAddr>,
    /// Index in `vendors` of the front the session was made on (reconnects try it first).
    pub first_front: usize,
    pub pinned: VerifyingKey,
    /// A lapse longer than this drops the connection and reconnects.
    pub lapse_reconnect_ms: u64,
    pub backoff: BackoffConfig,
}

impl SupervisorConfig {
    pub fn new(vendors: Vec<SocketAddr>, pinned: VerifyingKey) -> Self {
        SupervisorConfig {
            vendors,
            first_front: 0,
            pinned,
            lapse_reconnect_ms: 1_000,
            backoff: BackoffConfig::default(),
        }
    }
}

/// Where the supervisor is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// A session is on a live connection (its link may still be Down/Up/Lapsed).
    Connected { session_id: u64, connection: u64 },
    /// Reconnecting: attempt number and the last error.
    Reconnecting { attempt: u32, last_error: String },
    /// The vendor no longer accepts this session: a clerk must sign in again.
    LoginRequired { reason: String },
    /// Gave up after `attempts_max`, or stopped.
    Stopped { reason: String },
}

#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    /// Up only while fresh keepalives arrive on the current connection.
    pub state: watch::Receiver<LinkState>,
    pub status: watch::Receiver<LinkStatus>,
    pub phase: watch::Receiver<Phase>,
    pub session: watch::Receiver<Session>,
    stop: watch::Sender<bool>,
}

impl SupervisorHandle {
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// Starts supervising an already logged-in `session`.
pub fn spawn(
    config: SupervisorConfig,
    endpoint: quinn::Endpoint,
    device_key: SigningKey,
    session: Session,
) -> SupervisorHandle {
    let now = Instant::now();
    let (state_tx, state_rx) = watch::channel(LinkState::Down);
    let (status_tx, status_rx) = watch::channel(LinkStatus::down(session.session_id, now));
    let (phase_tx, phase_rx) = watch::channel(Phase::Connected {
        session_id: session.session_id,
        connection: 1,
    });
    let (session_tx, session_rx) = watch::channel(session.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let sup = Supervisor {
        endpoint,
        device_key,
        state_tx,
        status_tx,
        phase_tx,
        session_tx,
        stop: stop_rx,
        front: config.first_front,
        config,
    };
    tokio::spawn(sup.run(session));
    SupervisorHandle {
        state: state_rx,
        status: status_rx,
        phase: phase_rx,
        session: session_rx,
        stop: stop_tx,
    }
}

struct Supervisor {
    config: SupervisorConfig,
    endpoint: quinn::Endpoint,
    device_key: SigningKey,
    state_tx: watch::Sender<LinkState>,
    status_tx: watch::Sender<LinkStatus>,
    phase_tx: watch::Sender<Phase>,
    session_tx: watch::Sender<Session>,
    stop: watch::Receiver<bool>,
    /// Index in `config.vendors` of the front the session is on.
    front: usize,
}

enum Ended {
    Reconnect(String),
    Stopped,
}

impl Supervisor {
    async fn run(mut self, mut session: Session) {
        let mut backoff = Backoff::new(self.config.backoff);
        let mut connection = 1u64;
        loop {
            match self.watch_link(&session).await {
                Ended::Stopped => {
                    session
                        .conn
                        .conn
                        .close(quinn::VarInt::from_u32(0), b"counter stopping");
                    self.finish("stopped".into());
                    return;
                }
                Ended::Reconnect(why) => {
                    tracing::info!(session = session.session_id, reason = %why, "reconnecting");
                    session
                        .conn
                        .conn
                        .close(quinn::VarInt::from_u32(0), b"reconnecting");
                    self.state_tx.send_replace(LinkState::Down);
                    self.status_tx.send_modify(|s| {
                        s.state = LinkState::Down;
                        s.since = Instant::now();
                    });
                }
            }
            match self.reconnect(&session, &mut backoff).await {
                Ok(next) => {
                    connection += 1;
                    backoff.reset();
                    session = next;
                    self.session_tx.send_replace(session.clone());
                    self.phase_tx.send_replace(Phase::Connected {
                        session_id: session.session_id,
                        connection,
                    });
                }
                Err(phase) => {
                    self.state_tx.send_replace(LinkState::Closed);
                    self.phase_tx.send_replace(phase);
                    return;
                }
            }
        }
    }

    fn finish(&self, reason: String) {
        self.state_tx.send_replace(LinkState::Closed);
        self.phase_tx.send_replace(Phase::Stopped { reason });
    }

    /// Runs the link of `session` until it must be replaced.
    async fn watch_link(&mut self, session: &Session) -> Ended {
        let link = match session.start_link() {
            Ok(l) => l,
            Err(e) => return Ended::Reconnect(e.to_string()),
        };
        let mut status = link.status.clone();
        let lapse_max = Duration::from_millis(self.config.lapse_reconnect_ms);
        loop {
            let current = status.borrow_and_update().clone();
            let state = current.state;
            self.status_tx.send_replace(current.clone());
            self.state_tx.send_if_modified(|s| {
                let changed = *s != state;
                *s = state;
                changed
            });
            let reconnect_at = match state {
                LinkState::Closed => return Ended::Reconnect("connection closed".into()),
                LinkState::Lapsed => Some(current.since + lapse_max),
                _ => None,
            };
            let timer = async {
                match reconnect_at {
                    Some(t) => tokio::time::sleep_until(t.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                changed = status.changed() => if changed.is_err() {
                    return Ended::Reconnect("link driver ended".into());
                },
                _ = timer => return Ended::Reconnect(format!("link lapsed for {} ms", lapse_max.as_millis())),
                _ = self.stop.changed() => return Ended::Stopped,
            }
        }
    }

    async fn reconnect(
        &mut self,
        previous: &Session,
        backoff: &mut Backoff,
    ) -> Result<Session, Phase> {
        let mut last_error = String::from("link lost");
        loop {
            let Some(delay) = backoff.next_delay(rand::random::<f64>()) else {
                return Err(Phase::Stopped {
                    reason: format!("gave up after {} attempts: {last_error}", backoff.attempt()),
                });
            };
            self.phase_tx.send_replace(Phase::Reconnecting {
                attempt: backoff.attempt(),
                last_error: last_error.clone(),
            });
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = self.stop.changed() => return Err(Phase::Stopped { reason: "stopped".into() }),
            }
            match self.try_resume(previous, backoff.attempt()).await {
                Ok(s) => {
                    tracing::info!(
                        session = s.session_id,
                        attempt = backoff.attempt(),
                        "session resumed on a new connection"
                    );
                    return Ok(s);
                }
                Err(e) => {
                    if matches!(
                        e.code(),
                        Some(
                            ErrorCode::UnknownSession
                                | ErrorCode::BadMac
                                | ErrorCode::BadDeviceSignature
                                | ErrorCode::UnknownTerminal
                        )
                    ) {
                        return Err(Phase::LoginRequired {
                            reason: e.to_string(),
                        });
                    }
                    if matches!(e, ClientError::WrongVendorKey { .. }) {
                        return Err(Phase::Stopped {
                            reason: e.to_string(),
                        });
                    }
                    last_error = e.to_string();
                }
            }
        }
    }

    /// One attempt: the next front in turn (the current one first), resumed there.
    async fn try_resume(
        &mut self,
        previous: &Session,
        attempt: u32,
    ) -> Result<Session, ClientError> {
        let n = self.config.vendors.len().max(1);
        let i = (self.front + attempt.saturating_sub(1) as usize) % n;
        let Some(&addr) = self.config.vendors.get(i) else {
            return Err(ClientError::Other("no vendor address configured".into()));
        };
        let conn = client::connect(&self.endpoint, addr, self.config.pinned).await?;
        let session = conn.resume(previous, &self.device_key).await?;
        if i != self.front {
            tracing::info!(front = %addr, "session moved to another vendor front");
        }
        self.front = i;
        Ok(session)
    }
}
