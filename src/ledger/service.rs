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

// The task behind the handle: the commands, the reaper, the payment reconciliation.
mod task;
use task::outcome;
pub use task::spawn;

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
