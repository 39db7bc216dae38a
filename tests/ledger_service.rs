//! The ledger service through its handle: licensing, payments through the simulator, ACH
//! returns, the reaper, statements and audit verification.
//!
//! Long on purpose: one scenario per test; shared steps live in `tests/support/ledger.rs`.

#[path = "support/ledger.rs"]
mod support;

use frank::ledger::licensing::EmbeddedLicensing;
use frank::ledger::ops;
use frank::ledger::payment::{self, BankAccount, Card, PaymentMethod, SimulatedProcessor};
use frank::ledger::service::{self, ManualClock};
use frank::ledger::*;
use frank::money::Cents;
use std::sync::Arc;
use support::*;

const T0: u64 = 1_780_000_000_000;

struct Rig {
    handle: LedgerHandle,
    clock: Arc<ManualClock>,
    licensing: Arc<EmbeddedLicensing>,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_at(&dir.path().join("ledger.db"));
    let clock = Arc::new(ManualClock::new(T0));
    let licensing = Arc::new(EmbeddedLicensing::new(0, 1000));
    let handle = service::spawn(
        Arc::new(store),
        Arc::new(SimulatedProcessor::new()),
        licensing.clone(),
        clock.clone(),
        LedgerConfig {
            reaper_interval_ms: 0, // reaped explicitly below
            ..LedgerConfig::default()
        },
    );
    Rig {
        handle,
        clock,
        licensing,
        _dir: dir,
    }
}

fn card(number: &str) -> PaymentMethod {
    PaymentMethod::Card(Card::parse(number, 12, 2030, "123", T0).unwrap())
}

async fn active(r: &Rig) -> AccountId {
    match r.handle.open_account(rid()).await.unwrap() {
        Outcome::Opened {
            account,
            status: AccountStatus::Active,
            ..
        } => account,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn licensing_refusal_leaves_the_account_pending() {
    let r = rig();
    let first = active(&r).await;
    assert_eq!(
        r.handle.account(first).await.unwrap().license,
        Some(LicenseId(1))
    );
    let next = AccountId(first.0 + 1);
    r.licensing.refuse(MeterSerial::for_account(next));
    let open_id = rid();
    match r.handle.open_account(open_id).await.unwrap() {
        Outcome::Opened {
            account, status, ..
        } => {
            assert_eq!((account, status), (next, AccountStatus::Pending))
        }
        other => panic!("{other:?}"),
    }
    let err = r
        .handle
        .fund(rid(), next, c(1000), card("4242424242424242"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Refused(LedgerError::AccountPending { account: next })
    );
    r.licensing.allow(MeterSerial::for_account(next));
    assert_eq!(r.handle.license(rid(), next).await.unwrap(), LicenseId(2));
    assert_eq!(
        r.handle.account(next).await.unwrap().status,
        AccountStatus::Active
    );
    assert_eq!(r.licensing.issued().len(), 2);
}

#[tokio::test]
async fn payments_through_the_simulator() {
    let r = rig();
    let a = active(&r).await;
    let h = &r.handle;
    let regs = h
        .fund(rid(), a, c(2500), card("4242424242424242"))
        .await
        .unwrap();
    assert_eq!(regs.descending, c(2500));
    for (number, want) in [
        ("4000000000000002", PaymentError::Declined),
        ("4000000000009995", PaymentError::InsufficientFunds),
        ("4000000000000119", PaymentError::Timeout),
    ] {
        let err = h.fund(rid(), a, c(1000), card(number)).await.unwrap_err();
        assert_eq!(
            err,
            CallError::Refused(LedgerError::Payment(want)),
            "{number}"
        );
    }
    let err = h
        .fund(rid(), a, c(1), card("4242424242424242"))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        CallError::Refused(LedgerError::TopUpBelowMinimum { .. })
    ));
    // A retried top-up (same request id) charges and credits once.
    let id = rid();
    h.fund(id, a, c(1000), card("4242424242424242"))
        .await
        .unwrap();
    h.fund(id, a, c(1000), card("4242424242424242"))
        .await
        .unwrap();
    assert_eq!(h.account(a).await.unwrap().registers.control, c(3500));
    let bank = PaymentMethod::Ach(BankAccount::parse("110000000", "000123456789").unwrap());
    h.fund(rid(), a, c(500), bank).await.unwrap();
    assert_eq!(h.account(a).await.unwrap().registers.control, c(4000));
}

#[tokio::test]
async fn a_returned_ach_payment_locks_the_account() {
    let r = rig();
    let a = active(&r).await;
    let bank = PaymentMethod::Ach(BankAccount::parse("110000000", "000111111113").unwrap());
    r.handle.fund(rid(), a, c(5000), bank).await.unwrap();
    r.handle.reap().await.unwrap();
    assert_eq!(
        r.handle.account(a).await.unwrap().status,
        AccountStatus::Locked
    );
    let err = r
        .handle
        .authorize(rid(), a, 1, c(100), vec![])
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Refused(LedgerError::AccountLocked { account: a })
    );
}

/// Issue 12, through the service with its clock injected: the reaper commits a reservation
/// nobody settled as printed and unsettled (charged, never given back); the terminal's commit
/// three minutes later settles it as printed; a late void from the authorizing terminal within
/// `late_void_window_ms` credits it back, after the window it is refused and nothing changes.
#[tokio::test]
async fn the_reaper_commits_unsettled_reservations_and_late_voids_follow_the_window_issue_12() {
    let r = rig();
    let a = active(&r).await;
    let terminal = Some(TerminalId(9));
    r.handle
        .fund(rid(), a, c(1000), card("4242424242424242"))
        .await
        .unwrap();
    let auth = |amount| {
        r.handle
            .authorize_by(terminal, rid(), a, 1, c(amount), b"label".to_vec())
    };
    let (p, q, v) = (
        auth(300).await.unwrap(),
        auth(200).await.unwrap(),
        auth(100).await.unwrap(),
    );
    assert!(r.handle.reap().await.unwrap().is_empty());
    r.clock
        .advance(LedgerLimits::default().authorization_expiry_ms);
    assert_eq!(r.handle.reap().await.unwrap(), vec![p.id, q.id, v.id]);
    let regs = r.handle.account(a).await.unwrap().registers;
    assert_eq!(
        (regs.descending, regs.pending, regs.ascending),
        (c(400), c(0), c(600)),
        "charged, nothing given back"
    );
    let listed = r.handle.unsettled(a, 10).await.unwrap();
    assert_eq!(
        listed.iter().map(|p| p.id).collect::<Vec<_>>(),
        vec![p.id, q.id, v.id]
    );
    assert!(listed.iter().all(|p| p.state == PieceState::Unsettled));
    // The honest counter back after three minutes: its commit settles the piece as printed.
    r.clock.advance(180_000);
    assert_eq!(r.handle.commit(rid(), p.id).await.unwrap(), regs);
    assert_eq!(
        r.handle.piece(p.id).await.unwrap().state,
        PieceState::Printed
    );
    // A late void from the authorizing terminal: voided, credited back like a refund.
    let back = r
        .handle
        .void_by(terminal, rid(), q.id, false)
        .await
        .unwrap();
    let Outcome::Voided { registers, .. } = back else {
        panic!("{back:?}")
    };
    assert_eq!(registers.descending, c(600));
    assert_eq!(registers.control, c(1200));
    assert_eq!(registers.ascending, c(600), "ascending never decreases");
    // After the window: refused, nothing changes.
    r.clock.advance(LedgerLimits::default().late_void_window_ms);
    let err = r
        .handle
        .void_by(terminal, rid(), v.id, false)
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CallError::Refused(LedgerError::VoidWindowClosed { id, .. }) if id == v.id
        ),
        "{err:?}"
    );
    assert_eq!(r.handle.account(a).await.unwrap().registers, registers);
    assert_eq!(
        r.handle.piece(v.id).await.unwrap().state,
        PieceState::Unsettled
    );
    let st = r.handle.statement(a, 0, u64::MAX).await.unwrap();
    assert_eq!((st.unsettled, st.late_voided), (c(600), c(200)));
    assert!(r.handle.verify_audit().await.unwrap().is_ok());
}

/// The reaper's interval can be short (tests and operators): with `reaper_interval_ms = 20` and
/// a 1 s reservation on the wall clock, an unsettled piece appears on its own.
#[tokio::test]
async fn a_short_reaper_interval_and_expiry_commit_unsettled_on_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let limits = LedgerLimits {
        authorization_expiry_ms: 1_000,
        ..LedgerLimits::default()
    };
    let store = frank::ledger::sqlite::SqliteStore::open(
        &dir.path().join("ledger.db"),
        frank::ledger::sqlite::SqliteConfig::default(),
        signer(),
        limits.clone(),
    )
    .unwrap();
    let h = service::spawn(
        Arc::new(store),
        Arc::new(SimulatedProcessor::new()),
        Arc::new(EmbeddedLicensing::new(0, 1000)),
        Arc::new(service::SystemClock),
        LedgerConfig {
            reaper_interval_ms: 20,
            limits,
            ..LedgerConfig::default()
        },
    );
    let Outcome::Opened { account: a, .. } = h.open_account(rid()).await.unwrap() else {
        panic!("open")
    };
    h.fund(rid(), a, c(1000), card("4242424242424242"))
        .await
        .unwrap();
    let p = h
        .authorize(rid(), a, 1, c(300), b"label".to_vec())
        .await
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while h.piece(p.id).await.unwrap().state != PieceState::Unsettled {
        assert!(std::time::Instant::now() < deadline, "never reaped");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(h.account(a).await.unwrap().registers.ascending, c(300));
}

#[tokio::test]
async fn statement_and_audit_through_the_handle() {
    let r = rig();
    let a = active(&r).await;
    let h = &r.handle;
    h.fund(rid(), a, c(1000), card("4242424242424242"))
        .await
        .unwrap();
    let auth = h
        .authorize(rid(), a, 3, c(250), b"letter".to_vec())
        .await
        .unwrap();
    r.clock.advance(10);
    h.commit(rid(), auth.id).await.unwrap();
    let v = h
        .authorize(rid(), a, 3, c(100), b"letter".to_vec())
        .await
        .unwrap();
    assert!(matches!(
        h.void(rid(), v.id, false).await.unwrap(),
        Outcome::Voided { .. }
    ));
    let st = h.statement(a, T0, T0 + 1000).await.unwrap();
    assert_eq!(
        (st.beginning, st.credits, st.printed, st.voided, st.ending),
        (c(0), c(1000), c(250), c(100), c(750))
    );
    let report = h.verify_audit().await.unwrap().unwrap();
    assert_eq!(report.control_total, c(1000));
    let err = h.statement(AccountId(77), T0, T0 + 1).await.unwrap_err();
    assert_eq!(
        err,
        CallError::Refused(LedgerError::UnknownAccount(AccountId(77)))
    );
}

/// The reaper forgets request ids after 24 h (the clock is injected): before that a retry
/// replays, after it the same id runs as a new request. Account openings are never forgotten.
#[tokio::test]
async fn the_reaper_prunes_idempotency_records_after_24_hours() {
    const DAY_MS: u64 = 24 * 3600 * 1000;
    let r = rig();
    let h = &r.handle;
    let open_id = rid();
    let Outcome::Opened { account: a, .. } = h.open_account(open_id).await.unwrap() else {
        panic!("open")
    };
    h.fund(rid(), a, c(1000), card("4242424242424242"))
        .await
        .unwrap();
    let id = rid();
    let first = h.authorize(id, a, 1, c(100), b"x".to_vec()).await.unwrap();
    r.clock.advance(DAY_MS - 1);
    h.reap().await.unwrap();
    // Still within 24 h: the retry replays the same authorization, nothing new reserved.
    assert_eq!(
        h.authorize(id, a, 1, c(100), b"x".to_vec()).await.unwrap(),
        first
    );
    assert_eq!(h.account(a).await.unwrap().last_piece, PieceSerial(1));
    r.clock.advance(2);
    h.reap().await.unwrap();
    // Forgotten: the same id is a new request (a second piece).
    let again = h.authorize(id, a, 1, c(100), b"x".to_vec()).await.unwrap();
    assert_eq!(again.id.serial, PieceSerial(2));
    // The opening replays for good.
    r.clock.advance(30 * DAY_MS);
    h.reap().await.unwrap();
    match h.open_account(open_id).await.unwrap() {
        Outcome::Opened { account, .. } => assert_eq!(account, a),
        o => panic!("{o:?}"),
    }
    assert!(h.verify_audit().await.unwrap().is_ok());
}

/// A processor that approves like the simulator, but while the charge is in flight the
/// account gets locked (a returned ACH payment lands between the service's check and the
/// ledger transaction).
struct LockDuringCharge {
    inner: SimulatedProcessor,
    store: Arc<dyn LedgerStore>,
    /// Reversals refused before the processor accepts them.
    reversals_refused: std::sync::atomic::AtomicU32,
}

impl LockDuringCharge {
    fn new(store: Arc<dyn LedgerStore>, reversals_refused: u32) -> Arc<LockDuringCharge> {
        Arc::new(LockDuringCharge {
            inner: SimulatedProcessor::new(),
            store,
            reversals_refused: reversals_refused.into(),
        })
    }
}

impl payment::PaymentProcessor for LockDuringCharge {
    fn charge<'a>(
        &'a self,
        key: RequestId,
        account: AccountId,
        method: &'a PaymentMethod,
        amount: frank::money::Cents,
    ) -> payment::BoxFuture<'a, Result<PaymentReceipt, PaymentError>> {
        Box::pin(async move {
            let lock = ops::Request::new(
                rid(),
                ops::Op::PaymentReturned {
                    account,
                    payment: PaymentId("ach-returned".into()),
                },
            );
            self.store.execute(lock, T0).await.unwrap().unwrap();
            self.inner.charge(key, account, method, amount).await
        })
    }
    fn returns(&self) -> payment::BoxFuture<'_, Vec<payment::PaymentReturn>> {
        self.inner.returns()
    }
    fn reverse<'a>(
        &'a self,
        payment: &'a PaymentId,
        amount: frank::money::Cents,
    ) -> payment::BoxFuture<'a, Result<(), PaymentError>> {
        use std::sync::atomic::Ordering;
        let refuse = self
            .reversals_refused
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refuse {
            return Box::pin(async { Err(PaymentError::Timeout) });
        }
        self.inner.reverse(payment, amount)
    }
    fn charged(
        &self,
        key: RequestId,
    ) -> payment::BoxFuture<'_, Result<Option<PaymentReceipt>, PaymentError>> {
        self.inner.charged(key)
    }
}

/// An approved charge the ledger then refuses (the account locked in between) is reversed at
/// the processor and the reversal is audited; the client gets `AccountLocked`; a retry with the
/// same id changes nothing more. A supervisor can then unlock the account.
#[tokio::test]
async fn a_charge_refused_by_a_lock_in_between_is_reversed_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LedgerStore> = Arc::new(sqlite_at(&dir.path().join("ledger.db")));
    let processor = LockDuringCharge::new(store.clone(), 0);
    let (h, _clock) = reaped_by_hand(store.clone(), processor.clone(), LedgerConfig::default());
    let Outcome::Opened { account: a, .. } = h.open_account(rid()).await.unwrap() else {
        panic!("open")
    };
    let id = rid();
    let err = h
        .fund(id, a, c(1000), card("4242424242424242"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Refused(LedgerError::AccountLocked { account: a })
    );
    let reversed = processor.inner.reversed();
    assert_eq!(reversed.len(), 1, "the charge was reversed");
    let acct = h.account(a).await.unwrap();
    assert_eq!(acct.status, AccountStatus::Locked);
    assert_eq!(acct.registers.control, c(0), "nothing credited");
    let audit = store.account_audit(a).await.unwrap();
    let last = &audit.last().unwrap().body;
    assert!(
        last.contains("payment_reversed") && last.contains(&reversed[0].0),
        "{last}"
    );
    // The retry replays the refusal; no second charge, no second reversal record.
    let again = h
        .fund(id, a, c(1000), card("4242424242424242"))
        .await
        .unwrap_err();
    assert_eq!(again, err);
    assert_eq!(processor.inner.reversed(), reversed);
    assert_eq!(store.account_audit(a).await.unwrap().len(), audit.len());
    h.unlock(rid(), a, "supervisor").await.unwrap();
    assert_eq!(h.account(a).await.unwrap().status, AccountStatus::Active);
    assert!(h.verify_audit().await.unwrap().is_ok());
}

/// A ledger service on `store` and `processor` with `config` and a manual clock at `T0`,
/// whose reaper runs only when asked.
fn reaped_by_hand(
    store: Arc<dyn LedgerStore>,
    processor: Arc<dyn payment::PaymentProcessor>,
    config: LedgerConfig,
) -> (LedgerHandle, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(T0));
    let h = service::spawn(
        store,
        processor,
        Arc::new(EmbeddedLicensing::new(0, 1000)),
        clock.clone(),
        LedgerConfig {
            reaper_interval_ms: 0,
            ..config
        },
    );
    (h, clock)
}

/// A reversal the processor keeps refusing leaves the payment intent open; once past its grace
/// period the reaper asks the processor again, reverses the charge and records it — money the
/// ledger refused is never kept.
#[tokio::test]
async fn a_reversal_the_processor_refuses_is_retried_by_the_reaper() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LedgerStore> = Arc::new(sqlite_at(&dir.path().join("ledger.db")));
    // All of the top-up's own attempts.
    let processor = LockDuringCharge::new(store.clone(), 3);
    let (h, clock) = reaped_by_hand(store.clone(), processor.clone(), LedgerConfig::default());
    let grace_ms = LedgerConfig::default().payment_intent_grace_ms;
    let Outcome::Opened { account: a, .. } = h.open_account(rid()).await.unwrap() else {
        panic!("open")
    };
    let err = h
        .fund(rid(), a, c(1000), card("4242424242424242"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, CallError::Unavailable(e) if e.to_string().contains("must be reversed")),
        "{err:?}"
    );
    assert!(processor.inner.reversed().is_empty(), "not reversed yet");
    assert_eq!(store.open_intents(u64::MAX, 10).await.unwrap().len(), 1);
    // Within the grace period the reaper leaves it alone.
    h.reap().await.unwrap();
    assert!(processor.inner.reversed().is_empty());
    clock.advance(grace_ms + 1);
    h.reap().await.unwrap();
    let reversed = processor.inner.reversed();
    assert_eq!(reversed.len(), 1, "the reaper reversed the charge");
    assert_eq!(store.open_intents(u64::MAX, 10).await.unwrap(), vec![]);
    let acct = h.account(a).await.unwrap();
    assert_eq!(acct.registers.control, c(0), "nothing credited");
    let audit = store.account_audit(a).await.unwrap();
    let last = &audit.last().unwrap().body;
    assert!(
        last.contains("payment_reversed") && last.contains(&reversed[0].0),
        "{last}"
    );
    // Settled: later passes change nothing.
    clock.advance(grace_ms);
    h.reap().await.unwrap();
    assert_eq!(store.account_audit(a).await.unwrap().len(), audit.len());
    assert!(h.verify_audit().await.unwrap().is_ok());
}

/// The vendor stopped after the processor approved a top-up's charge and before the ledger
/// credited it (the client never retried). The intent recorded before the charge lets the
/// reaper find the charge and credit it, once; a completed top-up leaves no open intent.
#[tokio::test]
async fn a_charge_a_stopped_vendor_left_uncredited_is_credited_by_the_reaper() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LedgerStore> = Arc::new(sqlite_at(&dir.path().join("ledger.db")));
    let processor = Arc::new(SimulatedProcessor::new());
    let (h, clock) = reaped_by_hand(store.clone(), processor.clone(), LedgerConfig::default());
    let grace_ms = LedgerConfig::default().payment_intent_grace_ms;
    let open = |h: LedgerHandle| async move {
        match h.open_account(rid()).await.unwrap() {
            Outcome::Opened { account, .. } => account,
            other => panic!("{other:?}"),
        }
    };
    let (a, b) = (open(h.clone()).await, open(h.clone()).await);
    // A top-up that completes resolves its intent.
    h.fund(rid(), b, c(700), card("4242424242424242"))
        .await
        .unwrap();
    // What the stopped vendor had done for `a`: the intent, then the approved charge.
    let id = rid();
    let method = card("4242424242424242");
    store
        .record_intent(PaymentIntent {
            request: id,
            account: a,
            amount: c(1000),
            method: method.summary(),
            started_at_ms: T0,
        })
        .await
        .unwrap();
    let receipt = payment::PaymentProcessor::charge(&*processor, id, a, &method, c(1000))
        .await
        .unwrap();
    h.reap().await.unwrap();
    assert_eq!(
        h.account(a).await.unwrap().registers.control,
        c(0),
        "in grace"
    );
    clock.advance(grace_ms + 1);
    h.reap().await.unwrap();
    let acct = h.account(a).await.unwrap();
    assert_eq!(acct.registers.descending, c(1000), "credited");
    assert_eq!(acct.registers.control, c(1000));
    assert_eq!(store.open_intents(u64::MAX, 10).await.unwrap(), vec![]);
    let audit = store.account_audit(a).await.unwrap();
    assert!(
        audit.iter().any(|r| r.body.contains(&receipt.id.0)),
        "the credit names the payment"
    );
    // Once: another pass, and the client's late retry (a replay), credit nothing more.
    clock.advance(grace_ms);
    h.reap().await.unwrap();
    let again = h.fund(id, a, c(1000), method).await.unwrap();
    assert_eq!(
        again, acct.registers,
        "the replay answers the reaper's credit"
    );
    assert_eq!(h.account(a).await.unwrap().registers.control, c(1000));
    assert_eq!(store.account_audit(a).await.unwrap().len(), audit.len());
    assert_eq!(h.account(b).await.unwrap().registers.control, c(700));
    assert!(h.verify_audit().await.unwrap().is_ok());
}

/// A processor that stops answering (until told otherwise) while staying well-formed.
struct Hanging {
    inner: SimulatedProcessor,
    hang: std::sync::atomic::AtomicBool,
}

impl Hanging {
    fn hangs(&self) -> bool {
        self.hang.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl payment::PaymentProcessor for Hanging {
    fn charge<'a>(
        &'a self,
        key: RequestId,
        account: AccountId,
        method: &'a PaymentMethod,
        amount: frank::money::Cents,
    ) -> payment::BoxFuture<'a, Result<PaymentReceipt, PaymentError>> {
        if self.hangs() {
            return Box::pin(std::future::pending());
        }
        self.inner.charge(key, account, method, amount)
    }
    fn returns(&self) -> payment::BoxFuture<'_, Vec<payment::PaymentReturn>> {
        if self.hangs() {
            return Box::pin(std::future::pending());
        }
        self.inner.returns()
    }
    fn reverse<'a>(
        &'a self,
        payment: &'a PaymentId,
        amount: frank::money::Cents,
    ) -> payment::BoxFuture<'a, Result<(), PaymentError>> {
        if self.hangs() {
            return Box::pin(std::future::pending());
        }
        self.inner.reverse(payment, amount)
    }
    fn charged(
        &self,
        key: RequestId,
    ) -> payment::BoxFuture<'_, Result<Option<PaymentReceipt>, PaymentError>> {
        if self.hangs() {
            return Box::pin(std::future::pending());
        }
        self.inner.charged(key)
    }
}

/// Every call to the payment processor is bounded: a charge that hangs answers `Timeout` and
/// leaves its intent open, and a processor that hangs cannot stall the reaper (which also
/// expires reservations); once it answers again, the intent is settled.
#[tokio::test]
async fn a_hanging_processor_times_out_and_does_not_stall_the_reaper() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LedgerStore> = Arc::new(sqlite_at(&dir.path().join("ledger.db")));
    let processor = Arc::new(Hanging {
        inner: SimulatedProcessor::new(),
        hang: true.into(),
    });
    let config = LedgerConfig {
        payment_call_timeout_ms: 100,
        ..LedgerConfig::default()
    };
    let grace_ms = config.payment_intent_grace_ms;
    let (h, clock) = reaped_by_hand(store.clone(), processor.clone(), config);
    let Outcome::Opened { account: a, .. } = h.open_account(rid()).await.unwrap() else {
        panic!("open")
    };
    let bounded = std::time::Duration::from_secs(10);
    let err = tokio::time::timeout(bounded, h.fund(rid(), a, c(1000), card("4242424242424242")))
        .await
        .expect("the top-up answers although the processor hangs")
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Refused(LedgerError::Payment(PaymentError::Timeout))
    );
    assert_eq!(store.open_intents(u64::MAX, 10).await.unwrap().len(), 1);
    clock.advance(grace_ms + 1);
    tokio::time::timeout(bounded, h.reap())
        .await
        .expect("the reaper finishes its pass although the processor hangs")
        .unwrap();
    assert_eq!(
        store.open_intents(u64::MAX, 10).await.unwrap().len(),
        1,
        "cannot tell yet: still open"
    );
    processor
        .hang
        .store(false, std::sync::atomic::Ordering::SeqCst);
    h.reap().await.unwrap();
    assert_eq!(store.open_intents(u64::MAX, 10).await.unwrap(), vec![]);
    assert_eq!(h.account(a).await.unwrap().registers.control, c(0));
}

/// The simulator, counting the charges it is asked for; with `race_amount` set, a charge of
/// that amount first lets a top-up of `race_with` under the same key be charged and credited
/// (a request with another body under the same id that committed while this one was between
/// its check and its transaction).
struct Counting {
    inner: SimulatedProcessor,
    charges: std::sync::atomic::AtomicU32,
    race: Option<(Arc<dyn LedgerStore>, Cents, Cents)>,
}

impl Counting {
    fn new() -> Arc<Counting> {
        Arc::new(Counting {
            inner: SimulatedProcessor::new(),
            charges: 0.into(),
            race: None,
        })
    }
    fn charges(&self) -> u32 {
        self.charges.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl payment::PaymentProcessor for Counting {
    fn charge<'a>(
        &'a self,
        key: RequestId,
        account: AccountId,
        method: &'a PaymentMethod,
        amount: Cents,
    ) -> payment::BoxFuture<'a, Result<PaymentReceipt, PaymentError>> {
        self.charges
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move {
            if let Some((store, race_amount, race_with)) = &self.race
                && amount == *race_amount
            {
                let first = self.inner.charge(key, account, method, *race_with).await;
                let credit = ops::Request {
                    id: key,
                    op: ops::Op::Fund {
                        account,
                        amount: *race_with,
                        method: method.summary(),
                    },
                    external: ops::External::Payment(first),
                };
                store.execute(credit, T0).await.unwrap().unwrap();
            }
            self.inner.charge(key, account, method, amount).await
        })
    }
    fn returns(&self) -> payment::BoxFuture<'_, Vec<payment::PaymentReturn>> {
        self.inner.returns()
    }
    fn reverse<'a>(
        &'a self,
        payment: &'a PaymentId,
        amount: Cents,
    ) -> payment::BoxFuture<'a, Result<(), PaymentError>> {
        self.inner.reverse(payment, amount)
    }
    fn charged(
        &self,
        key: RequestId,
    ) -> payment::BoxFuture<'_, Result<Option<PaymentReceipt>, PaymentError>> {
        self.inner.charged(key)
    }
}

/// Issue 12 (Build 6), the exact scenario: `fund` with request id X ($1,000) is credited;
/// `fund` again with X and $999.99 is an `idempotency_conflict` that neither reaches the
/// processor nor reverses the first, credited charge. Three rounds: $3,000 credited, three
/// charges standing, none reversed — no credit without a charge. The reaper settles nothing
/// more afterwards.
#[tokio::test]
async fn a_fund_retried_under_its_id_with_another_amount_moves_no_money_issue_12() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LedgerStore> = Arc::new(sqlite_at(&dir.path().join("ledger.db")));
    let processor = Counting::new();
    let (h, clock) = reaped_by_hand(store.clone(), processor.clone(), LedgerConfig::default());
    let Outcome::Opened { account: a, .. } = h.open_account(rid()).await.unwrap() else {
        panic!("open")
    };
    let visa = || card("4242424242424242");
    for round in 1..=3u64 {
        let id = rid();
        let registers = h.fund(id, a, c(100_000), visa()).await.unwrap();
        assert_eq!(registers.control, c(100_000 * round));
        let charges = processor.charges();
        let err = h.fund(id, a, c(99_999), visa()).await.unwrap_err();
        assert_eq!(
            err,
            CallError::Refused(LedgerError::IdempotencyConflict { request: id })
        );
        assert_eq!(processor.charges(), charges, "the processor was not asked");
        let receipt = payment::PaymentProcessor::charged(&*processor, id)
            .await
            .unwrap()
            .expect("the first charge stands");
        assert_eq!(receipt.amount, c(100_000));
        assert_eq!(processor.inner.reversed(), vec![], "no charge reversed");
        let acct = h.account(a).await.unwrap();
        assert_eq!(acct.registers.control, c(100_000 * round));
        assert_eq!(acct.registers.descending, c(100_000 * round));
        // The honest retry of the first is a replay, also without the processor.
        assert_eq!(h.fund(id, a, c(100_000), visa()).await.unwrap(), registers);
        assert_eq!(processor.charges(), charges);
    }
    clock.advance(LedgerConfig::default().payment_intent_grace_ms + 1);
    h.reap().await.unwrap();
    assert_eq!(processor.inner.reversed(), vec![]);
    assert_eq!(store.open_intents(u64::MAX, 10).await.unwrap(), vec![]);
    assert_eq!(h.account(a).await.unwrap().registers.control, c(300_000));
    let audit = store.account_audit(a).await.unwrap();
    assert!(!audit.iter().any(|r| r.body.contains("payment_reversed")));
    assert!(h.verify_audit().await.unwrap().is_ok());
}

/// The race the up-front check cannot see: a top-up with another body under the same id is
/// charged and credited while this one is at the processor (which hands back the first
/// receipt). This one answers `idempotency_conflict` and the credited charge is not reversed.
#[tokio::test]
async fn a_conflicting_fund_racing_a_credited_one_does_not_reverse_it_issue_12() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LedgerStore> = Arc::new(sqlite_at(&dir.path().join("ledger.db")));
    let processor = Arc::new(Counting {
        inner: SimulatedProcessor::new(),
        charges: 0.into(),
        race: Some((store.clone(), c(99_999), c(100_000))),
    });
    let (h, clock) = reaped_by_hand(store.clone(), processor.clone(), LedgerConfig::default());
    let Outcome::Opened { account: a, .. } = h.open_account(rid()).await.unwrap() else {
        panic!("open")
    };
    let id = rid();
    let err = h
        .fund(id, a, c(99_999), card("4242424242424242"))
        .await
        .unwrap_err();
    assert_eq!(
        err,
        CallError::Refused(LedgerError::IdempotencyConflict { request: id })
    );
    assert_eq!(
        processor.inner.reversed(),
        vec![],
        "the credited charge stands"
    );
    assert_eq!(h.account(a).await.unwrap().registers.control, c(100_000));
    // The intent this request recorded is settled by the reaper as credited, not reversed.
    clock.advance(LedgerConfig::default().payment_intent_grace_ms + 1);
    h.reap().await.unwrap();
    assert_eq!(processor.inner.reversed(), vec![]);
    assert_eq!(store.open_intents(u64::MAX, 10).await.unwrap(), vec![]);
    assert_eq!(h.account(a).await.unwrap().registers.control, c(100_000));
    assert!(h.verify_audit().await.unwrap().is_ok());
}
