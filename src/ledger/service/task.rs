//! The ledger service's task (shell): receives [`super::LedgerHandle`]'s commands over the
//! bounded channel and runs them on the store, the payment processor and the licensing
//! authority; the reaper (expiry, idempotency pruning, payment reconciliation) on its timer.

use super::*;

/// Everything the service owns.
struct Service {
    store: Arc<dyn LedgerStore>,
    payments: Arc<dyn PaymentProcessor>,
    licensing: Arc<dyn LicensingAuthority>,
    clock: Arc<dyn Clock>,
    config: LedgerConfig,
}

pub(super) fn outcome(r: Result<Reply, StoreError>) -> Result<Outcome, CallError> {
    Ok(r??)
}

impl Service {
    async fn execute(&self, request: Request) -> Result<Outcome, CallError> {
        let now = self.clock.now_ms();
        outcome(self.store.execute(request, now).await)
    }

    async fn open(&self, id: RequestId) -> Result<Outcome, CallError> {
        let opened = self.execute(Request::new(id, Op::OpenAccount)).await?;
        let Outcome::Opened {
            account,
            meter,
            status: AccountStatus::Pending,
        } = opened
        else {
            return Ok(opened);
        };
        let status = match self.license(id.derive("license"), account).await {
            Ok(_) | Err(CallError::Refused(LedgerError::AlreadyLicensed { .. })) => {
                AccountStatus::Active
            }
            Err(CallError::Refused(_)) => AccountStatus::Pending,
            Err(e) => return Err(e),
        };
        Ok(Outcome::Opened {
            account,
            meter,
            status,
        })
    }

    /// Asks the licensing authority for `account`'s meter license and records its answer.
    async fn license(&self, id: RequestId, account: AccountId) -> Result<Outcome, CallError> {
        let answer = self
            .licensing
            .issue(MeterSerial::for_account(account))
            .await;
        self.execute(Request {
            id,
            op: Op::License { account },
            external: External::License(answer),
        })
        .await
    }

    async fn fund(
        &self,
        id: RequestId,
        account: AccountId,
        amount: Cents,
        method: PaymentMethod,
    ) -> Result<Outcome, CallError> {
        let op = Op::Fund {
            account,
            amount,
            method: method.summary(),
        };
        // Seen before? A retry gets its first answer and a reused request id with another
        // body gets `IdempotencyConflict`: neither reaches the processor nor moves money (the
        // processor is idempotent by key and would hand back the first request's receipt).
        let seen = self.store.idempotency_record(id).await?;
        if let Some(reply) = ops::replay(seen, &Request::new(id, op.clone())) {
            return Ok(reply?);
        }
        // Check status and limits before charging. If they fail, nothing is charged and the
        // transaction refuses the top-up for the same reason (it checks them again). A
        // request racing one under the same id replays its result; its charge is idempotent
        // at the processor (same key).
        let precheck = match self.store.account(account).await? {
            None => Err(LedgerError::UnknownAccount(account)),
            Some(a) => ops::check_fund(&a, amount, &self.config.limits),
        };
        let external = match precheck {
            Ok(()) => {
                // Durable before the processor is asked: if this process stops between the
                // charge and the credit, the reaper finds the charge and settles it.
                self.store
                    .record_intent(PaymentIntent {
                        request: id,
                        account,
                        amount,
                        method: method.summary(),
                        started_at_ms: self.clock.now_ms(),
                    })
                    .await?;
                let charge = self.payments.charge(id, account, &method, amount);
                External::Payment(self.bounded(charge).await)
            }
            Err(_) => External::None,
        };
        let charged = match &external {
            External::Payment(Ok(receipt)) => Some(receipt.clone()),
            _ => None,
        };
        // A timeout may or may not have charged: the intent stays open for the reaper (or
        // the client's retry under the same id) to settle.
        let declined =
            matches!(&external, External::Payment(Err(e)) if *e != PaymentError::Timeout);
        let result = self.execute(Request { id, op, external }).await;
        match (charged, result) {
            // A request with another body under this id committed first (it raced the check
            // above): the receipt under this key is that request's, and that request settles
            // it. Nothing moves here.
            (
                Some(_),
                Err(CallError::Refused(conflict @ LedgerError::IdempotencyConflict { .. })),
            ) => Err(CallError::Refused(conflict)),
            // The processor took the money but the ledger refused to credit it: the account
            // changed between the check above and the transaction (locked by a returned
            // payment, say). Give the money back and record that; the client gets the refusal.
            (Some(receipt), Err(CallError::Refused(refusal))) => {
                let resolution = self
                    .reverse_uncredited(id, account, receipt, &refusal)
                    .await?;
                self.resolve(id, resolution).await;
                Err(CallError::Refused(refusal))
            }
            (Some(_), Ok(outcome)) => {
                self.resolve(id, IntentResolution::Credited).await;
                Ok(outcome)
            }
            (None, result) => {
                if declined {
                    self.resolve(id, IntentResolution::NotCharged).await;
                }
                result
            }
            // Charged, but the ledger could not be reached: the intent stays open.
            (Some(_), result) => result,
        }
    }

    fn payment_call_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.config.payment_call_timeout_ms)
    }

    /// One processor call, bounded by `payment_call_timeout_ms` (then `Timeout`).
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, PaymentError>>,
    ) -> Result<T, PaymentError> {
        tokio::time::timeout(self.payment_call_timeout(), call)
            .await
            .unwrap_or(Err(PaymentError::Timeout))
    }

    /// Marks a payment intent resolved. If that fails the intent stays open and the reaper
    /// settles it again later (replaying the same request id changes nothing more).
    async fn resolve(&self, id: RequestId, resolution: IntentResolution) {
        let now = self.clock.now_ms();
        if let Err(e) = self.store.resolve_intent(id, resolution, now).await {
            tracing::warn!(error = %e, "could not mark a payment intent resolved; the reaper will");
        }
    }

    /// Settles payment intents left open past the grace period: asks the processor what
    /// became of each charge; credits an approved one under its original request id (a
    /// replay if it was credited already), reverses it if the ledger refuses, and closes an
    /// intent the processor holds no charge for. One that cannot be settled now stays open.
    async fn reconcile_intents(&self) -> Result<(), CallError> {
        let before_ms = self
            .clock
            .now_ms()
            .saturating_sub(self.config.payment_intent_grace_ms);
        let open = self
            .store
            .open_intents(before_ms, self.config.payment_intents_reconcile_max)
            .await?;
        for intent in open {
            let receipt = match self.bounded(self.payments.charged(intent.request)).await {
                Ok(Some(receipt)) => receipt,
                Ok(None) => {
                    self.resolve(intent.request, IntentResolution::NotCharged)
                        .await;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(request = %intent.request, error = %e,
                        "payment processor cannot tell about an open payment intent yet");
                    continue;
                }
            };
            let op = Op::Fund {
                account: intent.account,
                amount: intent.amount,
                method: intent.method.clone(),
            };
            let request = Request {
                id: intent.request,
                op,
                external: External::Payment(Ok(receipt.clone())),
            };
            match self.execute(request).await {
                Ok(_) => {
                    tracing::warn!(account = %intent.account, payment = %receipt.id.0,
                        "credited a charge its top-up had left unsettled");
                    self.resolve(intent.request, IntentResolution::Credited)
                        .await;
                }
                Err(CallError::Refused(refusal)) => {
                    let settled = self
                        .reverse_uncredited(intent.request, intent.account, receipt, &refusal)
                        .await;
                    if let Ok(resolution) = settled {
                        self.resolve(intent.request, resolution).await;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Whether the ledger credited `receipt` under request `id` (its idempotency record is a
    /// `Funded` naming that payment).
    async fn credited(&self, id: RequestId, receipt: &PaymentReceipt) -> Result<bool, CallError> {
        let record = self.store.idempotency_record(id).await?;
        Ok(matches!(
            record.map(|r| r.reply),
            Some(Ok(Outcome::Funded { payment, .. })) if payment == receipt.id
        ))
    }

    /// Reverses a charge the ledger refused — unless a credited record holds that receipt
    /// (then the charge stands and the intent is `Credited`). The only way a charge is ever
    /// reversed: a receipt the ledger credited is never given back.
    async fn reverse_uncredited(
        &self,
        id: RequestId,
        account: AccountId,
        receipt: PaymentReceipt,
        refusal: &LedgerError,
    ) -> Result<IntentResolution, CallError> {
        if self.credited(id, &receipt).await? {
            tracing::warn!(%account, payment = %receipt.id.0, reason = %refusal,
                "a refused top-up's receipt is credited under its request id; not reversed");
            return Ok(IntentResolution::Credited);
        }
        self.reverse(id, account, receipt, refusal).await?;
        Ok(IntentResolution::Reversed)
    }

    /// Reverses an approved charge the ledger refused, then records the reversal in the
    /// account's audit chain (idempotent: derived request id; the processor's reversal is
    /// idempotent by payment). The processor is asked up to `REVERSE_ATTEMPTS_MAX` times; if
    /// it still refuses, the caller gets `Unavailable` and the payment intent stays open: the
    /// reaper tries again (see [`Self::reconcile_intents`]).
    async fn reverse(
        &self,
        id: RequestId,
        account: AccountId,
        receipt: PaymentReceipt,
        refusal: &LedgerError,
    ) -> Result<(), CallError> {
        const REVERSE_ATTEMPTS_MAX: u32 = 3;
        const REVERSE_BACKOFF_MS: u64 = 100;
        let mut attempt = 0;
        while let Err(e) = self
            .bounded(self.payments.reverse(&receipt.id, receipt.amount))
            .await
        {
            attempt += 1;
            if attempt >= REVERSE_ATTEMPTS_MAX {
                tracing::error!(
                    %account, payment = %receipt.id.0, error = %e,
                    "could not reverse a charge the ledger refused; the reaper will try again"
                );
                return Err(StoreError::Database(format!(
                    "payment {} must be reversed but the processor answered: {e}",
                    receipt.id.0
                ))
                .into());
            }
            let ms = REVERSE_BACKOFF_MS << attempt;
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        let op = Op::PaymentReversed {
            account,
            payment: receipt.id.clone(),
            amount: receipt.amount,
            reason: refusal.to_string(),
        };
        match self.execute(Request::new(id.derive("reverse"), op)).await {
            Ok(_) => {
                tracing::warn!(%account, payment = %receipt.id.0, reason = %refusal,
                    "reversed a charge the ledger refused");
                Ok(())
            }
            // The account vanished? Nothing to attach the record to; the money is back.
            Err(CallError::Refused(e)) => {
                tracing::error!(%account, error = %e, "reversal not recorded");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    async fn reap(&self) -> Result<Vec<PieceId>, CallError> {
        let returns = tokio::time::timeout(self.payment_call_timeout(), self.payments.returns());
        // A processor that does not answer in time: its returns come on a later pass.
        for r in returns.await.unwrap_or_default() {
            let op = Op::PaymentReturned {
                account: r.account,
                payment: r.payment.clone(),
            };
            let id =
                RequestId::from_bytes(ops::fingerprint(&op)[..16].try_into().unwrap_or([0; 16]));
            self.execute(Request::new(id, op)).await?;
        }
        let op = Op::ExpireDue {
            max: self.config.limits.expire_batch_max,
        };
        let ids = match self
            .execute(Request::new(crate::clock::random_request_id(), op))
            .await?
        {
            Outcome::Expired { ids } => ids,
            o => return Err(unexpected(o)),
        };
        let before_ms = self
            .clock
            .now_ms()
            .saturating_sub(self.config.idempotency_retention_ms);
        let pruned = self
            .store
            .prune_idempotency(before_ms, self.config.idempotency_prune_max)
            .await?;
        if pruned > 0 {
            tracing::debug!(pruned, "pruned old idempotency records");
        }
        self.reconcile_intents().await?;
        Ok(ids)
    }

    async fn handle(&self, cmd: Command) {
        match cmd {
            Command::Submit(request, reply) => {
                let now = self.clock.now_ms();
                let _ = reply.send(self.store.execute(request, now).await);
            }
            Command::License {
                id,
                account,
                answer,
            } => {
                let _ = answer.send(self.license(id, account).await);
            }
            Command::Open(id, a) => {
                let _ = a.send(self.open(id).await);
            }
            Command::Fund {
                id,
                account,
                amount,
                method,
                answer,
            } => {
                let _ = answer.send(self.fund(id, account, amount, method).await);
            }
            Command::Account(id, a) => {
                let r = match self.store.account(id).await {
                    Ok(Some(acct)) => Ok(acct),
                    Ok(None) => Err(LedgerError::UnknownAccount(id).into()),
                    Err(e) => Err(e.into()),
                };
                let _ = a.send(r);
            }
            Command::Piece(id, a) => {
                let r = match self.store.piece(id).await {
                    Ok(Some(p)) => Ok(p),
                    Ok(None) => Err(LedgerError::UnknownPiece(id).into()),
                    Err(e) => Err(e.into()),
                };
                let _ = a.send(r);
            }
            Command::Pieces(account, before, limit, a) => {
                let r = match self.store.account(account).await {
                    Ok(Some(_)) => self
                        .store
                        .pieces(account, before, limit)
                        .await
                        .map_err(CallError::from),
                    Ok(None) => Err(LedgerError::UnknownAccount(account).into()),
                    Err(e) => Err(e.into()),
                };
                let _ = a.send(r);
            }
            Command::Unsettled(account, limit, a) => {
                let r = self.store.unsettled(account, limit).await;
                let _ = a.send(r.map_err(CallError::from));
            }
            Command::RefundsAwaiting(account, limit, a) => {
                let r = self.store.refunds_awaiting(Some(account), limit).await;
                let _ = a.send(r.map_err(CallError::from));
            }
            Command::Tender(tender, a) => {
                let at = Tender {
                    recorded_at_ms: self.clock.now_ms(),
                    ..*tender
                };
                let r = self.store.record_tender(at).await;
                let _ = a.send(r.map_err(CallError::from));
            }
            Command::DayRows(account, from, to, a) => {
                let r = self.store.day_rows(account, from, to).await;
                let _ = a.send(r.map_err(CallError::from));
            }
            Command::Statement(id, from, to, a) => {
                let r = store::statement(&*self.store, id, from, to).await;
                let _ = a.send(match r {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => Err(e.into()),
                    Err(e) => Err(e.into()),
                });
            }
            Command::Verify(a) => {
                let _ = a.send(store::verify_audit(&*self.store).await);
            }
            Command::Reap(a) => {
                let _ = a.send(self.reap().await);
            }
        }
    }
}

/// Starts the ledger service on the current tokio runtime and returns its handle. The service
/// ends when every handle is dropped.
pub fn spawn(
    store: Arc<dyn LedgerStore>,
    payments: Arc<dyn PaymentProcessor>,
    licensing: Arc<dyn LicensingAuthority>,
    clock: Arc<dyn Clock>,
    config: LedgerConfig,
) -> LedgerHandle {
    let (tx, mut rx) = mpsc::channel::<Command>(config.ledger_requests_max.max(1));
    let reaper_interval_ms = config.reaper_interval_ms;
    let permits = Arc::new(Semaphore::new(config.ledger_inflight_max.max(1)));
    let service = Arc::new(Service {
        store,
        payments,
        licensing,
        clock,
        config,
    });
    let (expired_tx, expirations) = watch::channel(0u64);
    if reaper_interval_ms > 0 {
        let weak = tx.downgrade();
        tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(std::time::Duration::from_millis(reaper_interval_ms));
            loop {
                tick.tick().await;
                let Some(tx) = weak.upgrade() else { break };
                let (a, rx) = oneshot::channel();
                if tx.send(Command::Reap(a)).await.is_err() {
                    break;
                }
                drop(tx);
                if let Ok(Ok(ids)) = rx.await
                    && !ids.is_empty()
                {
                    expired_tx.send_modify(|g| *g = g.wrapping_add(1));
                }
            }
        });
    }
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            // Ledger operations go straight to a store that answers them itself: no task per
            // request (the store's own queue bounds them).
            let cmd = match cmd {
                Command::Submit(request, reply) => {
                    let now = service.clock.now_ms();
                    match service.store.submit(request, now, reply) {
                        Ok(()) => continue,
                        Err(back) => Command::Submit(back.0, back.1),
                    }
                }
                other => other,
            };
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let service = service.clone();
            tokio::spawn(async move {
                service.handle(cmd).await;
                drop(permit);
            });
        }
    });
    LedgerHandle { tx, expirations }
}
