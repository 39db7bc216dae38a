//! The backend's money requests to the vendor (see [`super`]): a request retried under the
//! same request id while the vendor cannot take it yet ([`send_retrying`]), failures in words
//! for a person ([`reason`]), and the item requests — authorize (journaled first), its answer,
//! abandon, refund.

use super::*;

/// Sends `authorize` (retried with the same id while the vendor cannot take it) and reports
/// the answer for job `key`.
pub(super) fn spawn_authorize(
    sessions: watch::Receiver<Session>,
    retry_ms_max: u64,
    key: JobKey,
    request_id: [u8; 16],
    body: AuthorizeBody,
    done: mpsc::Sender<Done>,
) {
    tokio::spawn(async move {
        let result = send_retrying(sessions, retry_ms_max, |s| {
            s.authorize_request(
                request_id,
                crate::clock::unix_ms(),
                body.amount_cents,
                body.item.clone(),
                &body.origin_zip,
            )
        })
        .await;
        let _ = done.send(Done::Authorized { key, result }).await;
    });
}

pub(super) fn pause() -> tokio::time::Sleep {
    tokio::time::sleep(Duration::from_millis(RETRY_PAUSE_MS))
}

/// Whether a failed request may succeed later with the same request id.
pub(super) fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Timeout | ClientError::ConnectionLost(_) | ClientError::Unreachable { .. } => {
            true
        }
        _ => matches!(
            e.code(),
            Some(
                ErrorCode::LinkLapsed
                    | ErrorCode::Busy
                    | ErrorCode::Internal
                    | ErrorCode::NotLoggedIn
                    | ErrorCode::UnknownSession
                    // The processor charges at most once per request id.
                    | ErrorCode::PaymentTimeout
            )
        ),
    }
}

/// Words for a person, from a failed request.
pub(super) fn reason(e: &ClientError) -> String {
    if e.code() == Some(ErrorCode::PaymentTimeout) {
        // Trying again by hand would be a new top-up: the first may yet go through.
        return "the card or bank processor did not answer. If the payment went through, the \
                vendor adds it to the balance within a few minutes; check the balance before \
                trying again"
            .into();
    }
    match e {
        // The vendor's words name wire fields; the clerk needs what changed and what to do.
        ClientError::Response(wire::ResponseError::Refused(b))
            if b.code == ErrorCode::QuoteMismatch =>
        {
            let now = b
                .amount_cents
                .and_then(|c| crate::money::Cents::new(c).ok())
                .map(|c| format!(" (now {c})"))
                .unwrap_or_default();
            format!(
                "the vendor's price changed since this item was priced{now}. Nothing was \
                 charged; go back, check the price and confirm again"
            )
        }
        ClientError::Response(wire::ResponseError::Refused(b)) => b.message.clone(),
        other => other.to_string(),
    }
}

/// Sends a request built afresh on each attempt (new client time, same request id) on the
/// supervisor's current session, retrying while the vendor cannot take it yet.
pub(super) async fn send_retrying<T, F>(
    sessions: watch::Receiver<Session>,
    retry_ms_max: u64,
    build: F,
) -> Result<T, Failure>
where
    T: serde::de::DeserializeOwned,
    F: Fn(&Session) -> Result<Request, ClientError>,
{
    let deadline = Instant::now() + Duration::from_millis(retry_ms_max);
    loop {
        let session = sessions.borrow().clone();
        let result = match build(&session) {
            Ok(r) => session.send::<T>(&r).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(v) => return Ok(v),
            Err(e) if retryable(&e) && Instant::now() < deadline => {
                tracing::debug!(error = %e, "request not taken yet; retrying with the same id");
                pause().await;
            }
            Err(e) => {
                return Err(Failure {
                    words: reason(&e),
                    retryable: retryable(&e),
                    declined: e.code() == Some(ErrorCode::PaymentDeclined),
                });
            }
        }
    }
}

impl Actor {
    pub(super) async fn authorize(
        &mut self,
        job: JobId,
        item: &crate::indicium::Item,
        amount: Cents,
        label: LabelText,
    ) {
        if self.ui.contains_key(&job) {
            return; // sent once per job; a repeat is ignored
        }
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::AuthorizeFailed {
                job,
                reason: "not signed in".into(),
            })
            .await;
            return;
        };
        let ids = RequestIds {
            authorize: crate::clock::fresh_request_id().to_bytes(),
            commit: crate::clock::fresh_request_id().to_bytes(),
            void: crate::clock::fresh_request_id().to_bytes(),
        };
        let key = ids.authorize;
        let body = AuthorizeBody {
            amount_cents: amount.get(),
            item: wire::WireItem::from_item(item),
            origin_zip: label
                .origin_zip
                .clone()
                .unwrap_or_else(|| self.cfg.origin_zip.clone()),
        };
        let rec = UiJob {
            key,
            item: item.clone(),
            label,
            indicium: None,
        };
        if !self.remember(job, rec) {
            self.emit(Backend::AuthorizeFailed {
                job,
                reason: format!("{JOBS_MAX} items are still waiting for the vendor to settle them"),
            })
            .await;
            return;
        }
        let hex = body.to_hex();
        if let Err(reason) = self.record(|b| b.decide_authorize(key, amount.get(), ids, hex)) {
            self.emit(Backend::AuthorizeFailed { job, reason }).await;
            return;
        }
        self.report_open().await;
        self.in_flight.insert(key);
        let tx = self.done_tx.clone();
        let retry = self.cfg.authorize_retry_ms_max;
        spawn_authorize(sessions, retry, key, ids.authorize, body, tx);
    }

    pub(super) async fn on_authorized(
        &mut self,
        key: JobKey,
        result: Result<wire::Authorized, Failure>,
    ) {
        self.in_flight.remove(&key);
        let job = self.by_key.get(&key).copied();
        match result {
            Ok(a) => {
                self.meter = Some(a.meter.clone());
                let sha = hex::encode(Sha256::digest(&a.indicium));
                let recs =
                    match self.record(|b| b.decide_authorized(key, Ok((a.piece_serial, sha)))) {
                        Ok(r) => r,
                        Err(e) => {
                            tracing::error!(%e, "authorization not journaled");
                            Vec::new()
                        }
                    };
                self.emit(Backend::Balance(
                    Cents::new(a.registers.descending_cents).unwrap_or(Cents::ZERO),
                ))
                .await;
                let printable = self
                    .with_book(|b| b.get(&key).map(|e| e.stage == Stage::Authorized))
                    .flatten()
                    .unwrap_or(false);
                if let Some(job) = job
                    && printable
                {
                    if let Some(rec) = self.ui.get_mut(&job) {
                        rec.indicium = Some(a.indicium);
                    }
                    self.emit(Backend::Numbered {
                        job,
                        number: PieceNumber::new(a.meter.clone(), a.piece_serial),
                    })
                    .await;
                    self.emit(Backend::Authorized { job }).await;
                }
                self.after(&recs).await;
            }
            Err(f) if f.retryable => {
                // The vendor may have reserved it: never print it; replay and void later.
                let recs = self
                    .record(|b| b.decide_authorize_abandoned(key))
                    .unwrap_or_default();
                if let Some(job) = job {
                    self.emit(Backend::AuthorizeFailed {
                        job,
                        reason: format!(
                            "{} — if the vendor reserved the amount, this counter gives it back once the link returns",
                            f.words
                        ),
                    })
                    .await;
                }
                self.after(&recs).await;
            }
            Err(f) => {
                let recs = self
                    .record(|b| {
                        b.decide_authorized(
                            key,
                            Err(Answer::Refused {
                                code: f.words.clone(),
                            }),
                        )
                    })
                    .unwrap_or_default();
                if let Some(job) = job {
                    self.emit(Backend::AuthorizeFailed {
                        job,
                        reason: f.words,
                    })
                    .await;
                }
                self.after(&recs).await;
            }
        }
    }

    /// The UI gives up a job before printing it (the link went down, say): void it.
    pub(super) async fn abandon(&mut self, job: JobId) {
        let Some(key) = self.ui.get(&job).map(|r| r.key) else {
            return;
        };
        match self.record(|b| b.decide_abandon(key)) {
            Ok(recs) => self.after(&recs).await,
            Err(e) => tracing::debug!(%job, %e, "abandon refused"),
        }
    }

    /// A refund request for a printed piece: the clerk's own ask, the vendor decides.
    pub(super) async fn refund(&mut self, job: JobId) {
        let Some(sessions) = self.sessions() else {
            self.emit(Backend::Error("Not signed in; nothing sent.".into()))
                .await;
            return;
        };
        let serial = if job.0 & VENDOR_JOB_BIT != 0 {
            Some(job.0 & !VENDOR_JOB_BIT)
        } else {
            self.ui.get(&job).and_then(|r| {
                self.with_book(|b| b.get(&r.key).and_then(|e| e.piece_serial))
                    .flatten()
            })
        };
        let Some(serial) = serial else {
            self.emit(Backend::Error(
                "That item is not known here; nothing was sent. Load the history and try again."
                    .into(),
            ))
            .await;
            return;
        };
        // The clerk reads the item's printed number, never the UI's job id.
        let label = match &self.meter {
            Some(m) => PieceNumber::new(m.clone(), serial).to_string(),
            None => format!("Item #{serial}"),
        };
        let request_id = crate::clock::fresh_request_id().to_bytes();
        let tx = self.done_tx.clone();
        let retry = self.cfg.money_retry_ms_max;
        tokio::spawn(async move {
            let result = send_retrying(sessions, retry, |s| {
                s.refund_request(request_id, crate::clock::unix_ms(), serial)
            })
            .await;
            let _ = tx.send(Done::Refund { job, label, result }).await;
        });
    }
}
