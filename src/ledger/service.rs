//! The ledger service: owns the store, the payment processor and the licensing authority, and
//! answers typed commands arriving over a bounded channel. The QUIC front holds only a
//! [`LedgerHandle`]; it never touches the database, so the ledger could run as its own process
//! behind the same interface.
//!
//! The service reads the clock (the shell); every operation below it gets `now_ms` passed in.

use super::audit::{AuditBreak, AuditReport};
use super::licensing::LicensingAuthority;
use super::model::*;
use super::ops::{self, External, Op, Request};
use super::payment::{PaymentMethod, PaymentProcessor};
use super::report::{DayRows, Tender, TenderError};
use super::store::{self, LedgerStore, ReplySender, StoreError};
use crate::money::Cents;
use std::sync::Arc;
use tokio::sync::{Semaphore, mpsc, oneshot, watch};

pub use crate::clock::{Clock, ManualClock, SystemClock};

/// Bounds and policy of the service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerConfig {
    /// Capacity of the command channel from the front.
    pub ledger_requests_max: usize,
    /// Most commands being worked on at once, each on a task of its own that waits on the
    /// store (reads, top-ups, licensing; and every command when the store cannot take
    /// submissions). Ledger operations a store takes by `LedgerStore::submit` (SQLite) need
    /// no task: its bounded queue holds them.
    pub ledger_inflight_max: usize,
    /// How often the reaper commits expired reservations as unsettled, polls returned
    /// payments, prunes old idempotency records and reconciles open payment intents
    /// (0 = never; `vendor.toml` may set it). The reservation lifetime and the late-void
    /// window are `limits.authorization_expiry_ms` and `limits.late_void_window_ms`.
    pub reaper_interval_ms: u64,
    /// How long a request id is remembered (default 24 h). A retry with the same id must come
    /// sooner; after this it runs as a new request. Account openings are kept for good.
    pub idempotency_retention_ms: u64,
    /// Most idempotency records one reaper pass deletes.
    pub idempotency_prune_max: u32,
    /// How old an unresolved payment intent must be before the reaper reconciles it with the
    /// processor (default 5 min: far longer than a top-up takes, so the reaper never races
    /// one still running). Must stay well below `idempotency_retention_ms`; records of open
    /// intents are not pruned meanwhile.
    pub payment_intent_grace_ms: u64,
    /// Most payment intents one reaper pass reconciles.
    pub payment_intents_reconcile_max: u32,
    /// Longest the service waits for one call to the payment processor (charge, reversal,
    /// lookup). A charge that takes longer counts as `PaymentError::Timeout` (it may still
    /// have gone through: its payment intent stays open and the reaper settles it), and a
    /// processor that hangs cannot stall the reaper.
    pub payment_call_timeout_ms: u64,
    pub limits: LedgerLimits,
    /// Pool and batch limits of the PostgreSQL store (unused on SQLite).
    #[cfg(feature = "postgres")]
    pub postgres: super::postgres::PostgresConfig,
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            ledger_requests_max: 4096,
            ledger_inflight_max: 2048,
            reaper_interval_ms: 1000,
            idempotency_retention_ms: 24 * 3600 * 1000,
            idempotency_prune_max: 10_000,
            payment_intent_grace_ms: 5 * 60 * 1000,
            payment_intents_reconcile_max: 64,
            payment_call_timeout_ms: 30_000,
            limits: LedgerLimits::default(),
            #[cfg(feature = "postgres")]
            postgres: super::postgres::PostgresConfig::default(),
        }
    }
}

/// Why a call through the handle did not produce an outcome.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CallError {
    /// The ledger refused the operation (remembered under the request id).
    #[error(transparent)]
    Refused(#[from] LedgerError),
    /// The ledger could not be reached or could not store; retry with the same request id.
    #[error("ledger unavailable: {0}")]
    Unavailable(#[from] StoreError),
}

type Answer<T> = oneshot::Sender<Result<T, CallError>>;

enum Command {
    /// A ledger operation the store answers itself (see [`LedgerStore::submit`]).
    Submit(Request, ReplySender),
    /// A meter license for a pending account: the authority's answer is fetched first (on a
    /// task of its own), then recorded under request `id`.
    License {
        id: RequestId,
        account: AccountId,
        answer: Answer<Outcome>,
    },
    Open(RequestId, Answer<Outcome>),
    Fund {
        id: RequestId,
        account: AccountId,
        amount: Cents,
        method: PaymentMethod,
        answer: Answer<Outcome>,
    },
    Account(AccountId, Answer<Account>),
    Piece(PieceId, Answer<Piece>),
    Pieces(AccountId, Option<PieceSerial>, u32, Answer<Vec<Piece>>),
    Unsettled(AccountId, u32, Answer<Vec<Piece>>),
    RefundsAwaiting(AccountId, u32, Answer<Vec<Piece>>),
    Tender(Box<Tender>, Answer<Result<Tender, TenderError>>),
    DayRows(Option<AccountId>, u64, u64, Answer<DayRows>),
    Statement(AccountId, u64, u64, Answer<Statement>),
    Verify(oneshot::Sender<Result<AuditReport, AuditBreak>>),
    Reap(Answer<Vec<PieceId>>),
}

/// The front's typed, cloneable connection to the ledger service.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::Sender<Command>,
    /// Bumped after each reaper pass that committed reservations as unsettled.
    expirations: watch::Receiver<u64>,
}

fn unexpected(o: Outcome) -> CallError {
    CallError::Unavailable(StoreError::Corrupt(format!("unexpected outcome {o:?}")))
}

impl LedgerHandle {
    /// Changes after every reaper pass that committed reservations as `unsettled` (so an
    /// account's figures must be read again: the admin monitor listens).
    pub fn expirations(&self) -> watch::Receiver<u64> {
        self.expirations.clone()
    }

    async fn call<T>(&self, make: impl FnOnce(Answer<T>) -> Command) -> Result<T, CallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Runs any operation that needs no outside party (authorize, commit, void, refunds,
    /// scans, ...). For `Fund` and `OpenAccount` use [`Self::fund`] / [`Self::open_account`].
    pub async fn execute(&self, id: RequestId, op: Op) -> Result<Outcome, CallError> {
        if let Op::License { account } = op {
            return self
                .call(|answer| Command::License {
                    id,
                    account,
                    answer,
                })
                .await;
        }
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Submit(Request::new(id, op), tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        outcome(rx.await.map_err(|_| StoreError::Closed)?)
    }

    /// Opens an account and asks the licensing authority for its meter license. A refused
    /// license leaves the account pending (`Outcome::Opened { status: Pending, .. }`); retry
    /// with [`Self::license`].
    pub async fn open_account(&self, id: RequestId) -> Result<Outcome, CallError> {
        self.call(|a| Command::Open(id, a)).await
    }

    /// Asks the licensing authority again for a pending account.
    pub async fn license(&self, id: RequestId, account: AccountId) -> Result<LicenseId, CallError> {
        match self.execute(id, Op::License { account }).await? {
            Outcome::Licensed { license, .. } => Ok(license),
            o => Err(unexpected(o)),
        }
    }

    /// Charges `method` and credits the account. Validation errors, declines and limits are
    /// refusals; a processor timeout is not remembered, so retry with the same id.
    pub async fn fund(
        &self,
        id: RequestId,
        account: AccountId,
        amount: Cents,
        method: PaymentMethod,
    ) -> Result<Registers, CallError> {
        let o = self
            .call(|answer| Command::Fund {
                id,
                account,
                amount,
                method,
                answer,
            })
            .await?;
        match o {
            Outcome::Funded { registers, .. } => Ok(registers),
            o => Err(unexpected(o)),
        }
    }

    /// [`Self::fund`], also returning the processor's payment id.
    pub async fn fund_receipt(
        &self,
        id: RequestId,
        account: AccountId,
        amount: Cents,
        method: PaymentMethod,
    ) -> Result<(PaymentId, Registers), CallError> {
        let o = self
            .call(|answer| Command::Fund {
                id,
                account,
                amount,
                method,
                answer,
            })
            .await?;
        match o {
            Outcome::Funded {
                payment, registers, ..
            } => Ok((payment, registers)),
            o => Err(unexpected(o)),
        }
    }

    pub async fn authorize(
        &self,
        id: RequestId,
        account: AccountId,
        kind: u8,
        amount: Cents,
        item: Vec<u8>,
    ) -> Result<Authorization, CallError> {
        self.authorize_by(None, id, account, kind, amount, item)
            .await
    }

    /// [`Self::authorize`] for `terminal`, recorded on the piece: only that terminal may void
    /// the piece once it is unsettled.
    pub async fn authorize_by(
        &self,
        terminal: Option<TerminalId>,
        id: RequestId,
        account: AccountId,
        kind: u8,
        amount: Cents,
        item: Vec<u8>,
    ) -> Result<Authorization, CallError> {
        let op = Op::Authorize {
            account,
            kind,
            amount,
            item,
            terminal,
        };
        match self.execute(id, op).await? {
            Outcome::Authorized(a) => Ok(a),
            o => Err(unexpected(o)),
        }
    }

    pub async fn commit(
        &self,
        id: RequestId,
        authorization: AuthorizationId,
    ) -> Result<Registers, CallError> {
        match self.execute(id, Op::Commit { authorization }).await? {
            Outcome::Committed { registers, .. } => Ok(registers),
            o => Err(unexpected(o)),
        }
    }

    /// Ends an aborted print: `Outcome::Voided` if it never fully reached the printer,
    /// otherwise `Outcome::RefundRequested`.
    pub async fn void(
        &self,
        id: RequestId,
        authorization: AuthorizationId,
        reached_printer: bool,
    ) -> Result<Outcome, CallError> {
        self.void_by(None, id, authorization, reached_printer).await
    }

    /// [`Self::void`] reported by `terminal`. On an unsettled piece a void that did not reach
    /// the printer is a late void: only the authorizing terminal, within
    /// `LedgerLimits::late_void_window_ms` of the expiry (`WrongTerminal`, `VoidWindowClosed`).
    pub async fn void_by(
        &self,
        terminal: Option<TerminalId>,
        id: RequestId,
        authorization: AuthorizationId,
        reached_printer: bool,
    ) -> Result<Outcome, CallError> {
        let op = Op::Void {
            authorization,
            reached_printer,
            terminal,
        };
        self.execute(id, op).await
    }

    /// Up to `limit` unsettled pieces of `account`, oldest first (committed as printed at
    /// their expiry; charged until a late void).
    pub async fn unsettled(&self, account: AccountId, limit: u32) -> Result<Vec<Piece>, CallError> {
        self.call(|a| Command::Unsettled(account, limit, a)).await
    }

    /// Up to `limit` refund requests of `account` awaiting a supervisor, oldest first.
    pub async fn refunds_awaiting(
        &self,
        account: AccountId,
        limit: u32,
    ) -> Result<Vec<Piece>, CallError> {
        self.call(|a| Command::RefundsAwaiting(account, limit, a))
            .await
    }

    /// Records a basket's tender (its `recorded_at_ms` is the service's clock): the tender
    /// as stored (a retry of the same basket answers the first), or why it was refused.
    pub async fn record_tender(
        &self,
        tender: Tender,
    ) -> Result<Result<Tender, TenderError>, CallError> {
        self.call(|a| Command::Tender(Box::new(tender), a)).await
    }

    /// The pieces authorized and tenders recorded in `[from_ms, to_ms)` (for a day report).
    pub async fn day_rows(
        &self,
        account: Option<AccountId>,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<DayRows, CallError> {
        self.call(|a| Command::DayRows(account, from_ms, to_ms, a))
            .await
    }

    pub async fn request_refund(
        &self,
        id: RequestId,
        piece: PieceId,
    ) -> Result<Outcome, CallError> {
        self.execute(id, Op::RequestRefund { piece }).await
    }

    /// A supervisor's decision.
    pub async fn decide_refund(
        &self,
        id: RequestId,
        piece: PieceId,
        approve: bool,
    ) -> Result<Outcome, CallError> {
        self.execute(id, Op::DecideRefund { piece, approve }).await
    }

    /// A supervisor unlocks a locked account (`NotLocked` otherwise); the audit log names them.
    pub async fn unlock(
        &self,
        id: RequestId,
        account: AccountId,
        supervisor: &str,
    ) -> Result<Outcome, CallError> {
        let op = Op::Unlock {
            account,
            supervisor: supervisor.to_string(),
        };
        self.execute(id, op).await
    }

    /// A verifier saw the piece in the mail stream.
    pub async fn record_scan(&self, id: RequestId, piece: PieceId) -> Result<Outcome, CallError> {
        self.execute(id, Op::RecordScan { piece }).await
    }

    pub async fn account(&self, account: AccountId) -> Result<Account, CallError> {
        self.call(|a| Command::Account(account, a)).await
    }

    /// An issued piece (authorization, item state, refund state, signed bytes).
    pub async fn piece(&self, piece: PieceId) -> Result<Piece, CallError> {
        self.call(|a| Command::Piece(piece, a)).await
    }

    /// Up to `limit` pieces of `account` with a serial below `before` (all when `None`),
    /// newest first. The caller bounds `limit`.
    pub async fn pieces(
        &self,
        account: AccountId,
        before: Option<PieceSerial>,
        limit: u32,
    ) -> Result<Vec<Piece>, CallError> {
        self.call(|a| Command::Pieces(account, before, limit, a))
            .await
    }

    pub async fn statement(
        &self,
        account: AccountId,
        from_ms: u64,
        to_ms: u64,
    ) -> Result<Statement, CallError> {
        self.call(|a| Command::Statement(account, from_ms, to_ms, a))
            .await
    }

    /// Runs the reaper now (commits due reservations as printed and unsettled — their ids are
    /// returned —, applies returned payments, prunes, reconciles payment intents).
    pub async fn reap(&self) -> Result<Vec<PieceId>, CallError> {
        self.call(Command::Reap).await
    }

    /// Recomputes the audit chain and registers (`Ok(Err(break))` names the first break).
    pub async fn verify_audit(&self) -> Result<Result<AuditReport, AuditBreak>, CallError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Command::Verify(tx))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(rx.await.map_err(|_| StoreError::Closed)?)
    }
}

/// Everything the service owns.
struct Service {
    store: Arc<dyn LedgerStore>,
    payments: Arc<dyn PaymentProcessor>,
    licensing: Arc<dyn LicensingAuthority>,
    clock: Arc<dyn Clock>,
    config: LedgerConfig,
}

fn outcome(r: Result<Reply, StoreError>) -> Result<Outcome, CallError> {
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
