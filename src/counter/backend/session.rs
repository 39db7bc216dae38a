//! The backend's sign-in and session (see [`super`]): the clerk's sign-in and the backend's own
//! one sign-in again when the vendor forgot the session, what follows a sign-in (link reports,
//! bundle sync, printer report, resync), sign-out.

use super::*;

pub(super) async fn sign_in(
    cfg: &BackendConfig,
    endpoint: quinn::Endpoint,
    clerk: &str,
    password: &str,
) -> anyhow::Result<(SupervisorHandle, Session, Cents, Option<String>)> {
    let opts = HeadlessOptions {
        vendors: cfg.vendors.clone(),
        pinned: cfg.pinned,
        data_dir: cfg.terminal_dir.clone(),
        enroll_code: cfg.enroll_code.clone(),
        terminal_name: cfg.terminal_name.clone(),
        clerk: clerk.to_string(),
        report_interval_ms: 0,
    };
    let (sup, session) = headless::sign_in(endpoint, &opts, password).await?;
    let (balance, meter) = match session.balance().await {
        Ok(b) => (
            Cents::new(b.registers.descending_cents).unwrap_or(Cents::ZERO),
            Some(b.meter),
        ),
        Err(_) => (Cents::ZERO, None),
    };
    Ok((sup, session, balance, meter))
}

/// Forwards the supervisor's link status to the UI: state changes at once, figures at most
/// every [`LINK_REPORT_INTERVAL_MS`]. A resumed session goes to `current` (for requests in
/// flight) and to the backend; a session the vendor no longer knows, or a supervisor that
/// stopped by itself, goes to the backend, which signs in again.
pub(super) fn spawn_link_reports(
    sup: SupervisorHandle,
    generation: u64,
    events: mpsc::Sender<Backend>,
    done: mpsc::Sender<Done>,
    current: watch::Sender<Session>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut status = sup.status.clone();
        let mut phase = sup.phase.clone();
        let mut sessions = sup.session.clone();
        let mut last_state: Option<LinkState> = None;
        let mut last_sent = Instant::now() - Duration::from_secs(1);
        loop {
            tokio::select! {
                r = status.changed() => {
                    if r.is_err() { break; }
                    let s = status.borrow_and_update().clone();
                    let due = last_sent.elapsed() >= Duration::from_millis(LINK_REPORT_INTERVAL_MS);
                    if Some(s.state) != last_state || due {
                        last_state = Some(s.state);
                        last_sent = Instant::now();
                        if events.send(Backend::LinkChanged(s)).await.is_err() { return; }
                    }
                }
                r = sessions.changed() => {
                    if r.is_err() { break; }
                    let s = sessions.borrow_and_update().clone();
                    current.send_replace(s);
                    if done.send(Done::Resumed { generation }).await.is_err() { return; }
                }
                r = phase.changed() => {
                    if r.is_err() { break; }
                    if session_lost(&phase.borrow_and_update()).is_some() { break; }
                }
            }
        }
        // The supervisor ended (its channels close when it does, in whatever order the select
        // sees them): its last phase says whether the session was lost.
        let last = phase.borrow().clone();
        if let Some(reason) = session_lost(&last) {
            let _ = done.send(Done::SessionLost { generation, reason }).await;
        }
    })
}

/// Why the supervisor gave its session up by itself, if it did (not when it was stopped).
pub(super) fn session_lost(p: &Phase) -> Option<String> {
    match p {
        Phase::LoginRequired { reason } => Some(reason.clone()),
        Phase::Stopped { reason } if reason != "stopped" => Some(reason.clone()),
        _ => None,
    }
}

impl Actor {
    /// Signs the kept credentials in (`again`: by itself, after the vendor forgot the session).
    pub(super) async fn start_sign_in(&mut self, again: bool) {
        let Some(creds) = self.credentials.clone() else {
            return;
        };
        let cfg = self.cfg.clone();
        let tx = self.done_tx.clone();
        let generation = self.generation;
        let endpoint = match self.endpoint.clone() {
            Some(e) => e,
            None => match client::endpoint_for_fronts(&cfg.vendors) {
                Ok(e) => {
                    self.endpoint = Some(e.clone());
                    e
                }
                Err(e) => {
                    let _ = tx
                        .send(Done::SignedIn {
                            generation,
                            again,
                            result: Err(e.to_string()),
                        })
                        .await;
                    return;
                }
            },
        };
        tokio::spawn(async move {
            let r = sign_in(&cfg, endpoint, &creds.clerk, creds.password.expose()).await;
            // The copy of the password is zeroized here, whatever the answer.
            drop(creds);
            let _ = tx
                .send(Done::SignedIn {
                    generation,
                    again,
                    result: r.map_err(|e| format!("{e:#}")),
                })
                .await;
        });
    }

    pub(super) async fn on_signed_in(
        &mut self,
        generation: u64,
        again: bool,
        result: Result<(SupervisorHandle, Session, Cents, Option<String>), String>,
    ) {
        if generation != self.generation {
            // Signed out (or in again) meanwhile: this session is not wanted.
            if let Ok((sup, ..)) = result {
                sup.stop();
            }
            return;
        }
        let (sup, session, balance, meter) = match result {
            Ok(r) => r,
            Err(reason) => {
                self.credentials = None;
                if again {
                    tracing::warn!(error = %reason, "signing in again after the vendor forgot the session failed");
                    self.emit(Backend::SessionEnded {
                        reason: SESSION_ENDED_WORDS.into(),
                    })
                    .await;
                } else {
                    self.emit(Backend::SignInFailed { reason }).await;
                }
                return;
            }
        };
        if again {
            tracing::info!("signed in again by itself after the vendor forgot the session");
        }
        if meter.is_some() {
            self.meter = meter;
        }
        let current = match &self.session_tx {
            Some(tx) => {
                // Requests still retrying on the old session go out on this one.
                tx.send_replace(session.clone());
                tx.clone()
            }
            None => {
                let (tx, _) = watch::channel(session.clone());
                self.session_tx = Some(tx.clone());
                tx
            }
        };
        self.link_task = Some(spawn_link_reports(
            sup.clone(),
            generation,
            self.events.clone(),
            self.done_tx.clone(),
            current,
        ));
        self.sup = Some(sup);
        if let Some(b) = &self.cfg.bundles {
            // Bundles newer than what the counter uses, fetched between prints (issue 17).
            let printing = self.print_busy.subscribe();
            let (session, b, done) = (session.clone(), b.clone(), self.done_tx.clone());
            tokio::spawn(async move {
                let report = crate::counter::bundles::sync_and_log(session, b, printing).await;
                if report.is_some_and(|r| !r.taken.is_empty()) {
                    let _ = done.send(Done::BundlesTaken).await;
                }
            });
        }
        self.emit(Backend::SignedIn {
            clerk: session.clerk.clone(),
            office: session.office.clone(),
            balance,
        })
        .await;
        // A new session: the vendor has no printer report on it yet.
        self.reported_printer = None;
        let s = self.printer_status;
        self.set_printer(s).await;
        self.report_open().await;
        self.maybe_resync();
        self.kick_sends();
    }

    /// The vendor no longer knows the session: sign in again by itself, once, with the
    /// clerk's credentials; without them, or if that fails, nobody is signed in any more.
    pub(super) async fn on_session_lost(&mut self, generation: u64, reason: String) {
        if generation != self.generation {
            return;
        }
        tracing::warn!(%reason, "the vendor no longer knows this session; signing in again");
        self.end_session();
        if self.credentials.is_some() {
            self.start_sign_in(true).await;
        } else {
            self.emit(Backend::SessionEnded {
                reason: SESSION_ENDED_WORDS.into(),
            })
            .await;
        }
    }

    /// The clerk signs out (or quits): the session ends and the credentials are dropped
    /// (the password zeroized).
    pub(super) fn sign_out(&mut self) {
        self.end_session();
        self.credentials = None;
    }

    /// Ends the current session (or a sign-in in progress) and its supervisor.
    pub(super) fn end_session(&mut self) {
        self.generation = self.generation.wrapping_add(1);
        if let Some(t) = self.link_task.take() {
            t.abort();
        }
        if let Some(s) = self.sup.take() {
            s.stop();
            // The status bar must not go on showing the old session's link as up.
            let down = crate::link::driver::LinkStatus::down(0, Instant::now());
            let _ = self.events.try_send(Backend::LinkChanged(down));
        }
        self.reported_printer = None;
    }
}
