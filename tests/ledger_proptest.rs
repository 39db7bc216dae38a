//! Random operation sequences against an independent in-memory reference model and the real
//! stores — SQLite, and PostgreSQL with its batch writers on a throwaway server
//! (proptest-state-machine). After every step: the reply equals the model's, the registers
//! equal the model's, the control sum holds, and the audit log verifies.

#[path = "support/postgres.rs"]
mod pg;
#[path = "support/ledger.rs"]
mod support;

use frank::ledger::ops::{External, Op, Request};
use frank::ledger::postgres::{PostgresConfig, PostgresStore};
use frank::ledger::sqlite::{SqliteConfig, SqliteStore};
use frank::ledger::*;
use proptest::prelude::*;
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};
use std::collections::BTreeMap;
use std::sync::Arc;
use support::*;

const T0: u64 = 1_780_000_000_000;
const ACCOUNTS: usize = 2;
const EXPIRY_MS: u64 = 120_000;
const WINDOW_MS: u64 = 28 * 24 * 3600 * 1000;
const LATE_VOID_WINDOW_MS: u64 = 24 * 3600 * 1000;
const TOP_UP_MIN: u64 = 500;

#[derive(Clone, Debug)]
enum Step {
    Fund {
        a: usize,
        amount: u64,
    },
    Authorize {
        a: usize,
        amount: u64,
    },
    Commit {
        a: usize,
        s: u64,
    },
    Void {
        a: usize,
        s: u64,
        reached: bool,
    },
    Expire,
    Advance {
        ms: u64,
    },
    RequestRefund {
        a: usize,
        s: u64,
    },
    DecideRefund {
        a: usize,
        s: u64,
        approve: bool,
    },
    Scan {
        a: usize,
        s: u64,
    },
    Lock {
        a: usize,
    },
    /// Re-send an earlier request (same id, same body): its first reply again.
    Retry {
        back: usize,
    },
    /// Re-use an earlier request id with another body: a conflict.
    Conflict {
        back: usize,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum St {
    Reserved,
    Printed,
    Voided,
    /// Committed as printed by the reaper at its expiry (issue 12).
    Unsettled,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Rf {
    Submitted,
    Approved,
    Rejected,
}

#[derive(Clone, Debug)]
struct RefPiece {
    amount: u64,
    state: St,
    expires: u64,
    printed_at: u64,
    refund: Option<Rf>,
    scanned: bool,
}

#[derive(Clone, Debug, Default)]
struct RefAccount {
    desc: u64,
    pend: u64,
    asc: u64,
    control: u64,
    locked: bool,
    last: u64,
}

#[derive(Clone, Debug, PartialEq)]
enum Expect {
    Ok,
    Err(LedgerError),
    /// The reply of the `back`-th most recent request, again.
    Replay(usize),
    Conflict(usize),
    Nothing,
}

#[derive(Clone, Debug)]
struct Model {
    now: u64,
    accounts: Vec<RefAccount>,
    pieces: BTreeMap<(usize, u64), RefPiece>,
    requests: usize,
    expect: Expect,
}

fn aid(a: usize) -> AccountId {
    AccountId(a as u64 + 1)
}

fn pid(a: usize, s: u64) -> PieceId {
    PieceId {
        account: aid(a),
        serial: PieceSerial(s),
    }
}

impl Model {
    fn err(&mut self, e: LedgerError) {
        self.expect = Expect::Err(e);
    }

    /// The piece checks shared by commit and void.
    fn reservation(&self, a: usize, s: u64) -> Result<RefPiece, LedgerError> {
        let id = pid(a, s);
        let p = self
            .pieces
            .get(&(a, s))
            .ok_or(LedgerError::UnknownPiece(id))?;
        match p.state {
            St::Printed => Err(LedgerError::AlreadyCommitted(id)),
            St::Voided => Err(LedgerError::AlreadyVoided(id)),
            St::Reserved | St::Unsettled => Ok(p.clone()),
        }
    }

    /// The checks of a refund request (also of a reached-printer void of an unsettled piece).
    fn refundable(&self, a: usize, s: u64, p: &RefPiece) -> Result<(), LedgerError> {
        let id = pid(a, s);
        if self.accounts[a].locked {
            return Err(LedgerError::AccountLocked { account: aid(a) });
        }
        if !matches!(p.state, St::Printed | St::Unsettled) {
            return Err(LedgerError::NotPrinted(id));
        }
        if p.refund.is_some() {
            return Err(LedgerError::RefundAlreadyRequested(id));
        }
        if p.scanned {
            return Err(LedgerError::PieceScanned(id));
        }
        if self.now > p.printed_at + WINDOW_MS {
            return Err(LedgerError::RefundWindowClosed {
                id,
                deadline_ms: p.printed_at + WINDOW_MS,
            });
        }
        Ok(())
    }

    /// A void (not reached) of an unsettled piece: the late void.
    fn late_void(&mut self, a: usize, s: u64, p: &RefPiece) -> Result<(), LedgerError> {
        let id = pid(a, s);
        let deadline_ms = p.expires + LATE_VOID_WINDOW_MS;
        if self.now > deadline_ms {
            return Err(LedgerError::VoidWindowClosed { id, deadline_ms });
        }
        if p.refund.is_some() {
            return Err(LedgerError::RefundAlreadyRequested(id));
        }
        if p.scanned {
            return Err(LedgerError::PieceScanned(id));
        }
        if self.accounts[a].locked {
            return Err(LedgerError::AccountLocked { account: aid(a) });
        }
        self.accounts[a].desc += p.amount;
        self.accounts[a].control += p.amount;
        self.pieces.get_mut(&(a, s)).unwrap().state = St::Voided;
        Ok(())
    }

    fn step(&mut self, step: &Step) {
        self.expect = Expect::Ok;
        match *step {
            Step::Advance { ms } => {
                self.now += ms;
                self.expect = Expect::Nothing;
                return;
            }
            Step::Retry { back } => {
                self.expect = if self.requests == 0 {
                    Expect::Nothing
                } else {
                    Expect::Replay(back)
                };
                return;
            }
            Step::Conflict { back } => {
                self.expect = if self.requests == 0 {
                    Expect::Nothing
                } else {
                    Expect::Conflict(back)
                };
                return;
            }
            _ => {}
        }
        self.requests += 1;
        let now = self.now;
        match *step {
            Step::Fund { a, amount } => {
                let acct = &self.accounts[a];
                if acct.locked {
                    return self.err(LedgerError::AccountLocked { account: aid(a) });
                }
                if amount == 0 {
                    return self.err(LedgerError::ZeroAmount);
                }
                if amount < TOP_UP_MIN {
                    return self.err(LedgerError::TopUpBelowMinimum {
                        amount: c(amount),
                        min: c(TOP_UP_MIN),
                    });
                }
                let acct = &mut self.accounts[a];
                acct.desc += amount;
                acct.control += amount;
            }
            Step::Authorize { a, amount } => {
                let acct = &self.accounts[a];
                if acct.locked {
                    return self.err(LedgerError::AccountLocked { account: aid(a) });
                }
                if amount == 0 {
                    return self.err(LedgerError::ZeroAmount);
                }
                if acct.desc < amount {
                    let available = c(acct.desc);
                    return self.err(LedgerError::InsufficientFunds {
                        available,
                        requested: c(amount),
                    });
                }
                let acct = &mut self.accounts[a];
                acct.desc -= amount;
                acct.pend += amount;
                acct.last += 1;
                let p = RefPiece {
                    amount,
                    state: St::Reserved,
                    expires: now + EXPIRY_MS,
                    printed_at: 0,
                    refund: None,
                    scanned: false,
                };
                self.pieces.insert((a, acct.last), p);
            }
            Step::Commit { a, s } => {
                let p = match self.reservation(a, s) {
                    Ok(p) => p,
                    Err(e) => return self.err(e),
                };
                if p.state == St::Unsettled {
                    // Settled: printed, no money moves (so a lock does not stop it).
                    self.pieces.get_mut(&(a, s)).unwrap().state = St::Printed;
                    return;
                }
                if self.accounts[a].locked {
                    return self.err(LedgerError::AccountLocked { account: aid(a) });
                }
                self.print(a, s, p.amount);
            }
            Step::Void { a, s, reached } => {
                let p = match self.reservation(a, s) {
                    Ok(p) => p,
                    Err(e) => return self.err(e),
                };
                if p.state == St::Unsettled {
                    let r = if reached {
                        self.refundable(a, s, &p).map(|()| {
                            let q = self.pieces.get_mut(&(a, s)).unwrap();
                            q.state = St::Printed;
                            q.refund = Some(Rf::Submitted);
                        })
                    } else {
                        self.late_void(a, s, &p)
                    };
                    if let Err(e) = r {
                        self.err(e);
                    }
                    return;
                }
                if reached {
                    if self.accounts[a].locked {
                        return self.err(LedgerError::AccountLocked { account: aid(a) });
                    }
                    self.print(a, s, p.amount);
                    self.pieces.get_mut(&(a, s)).unwrap().refund = Some(Rf::Submitted);
                } else {
                    self.release(a, s, St::Voided);
                }
            }
            Step::Expire => {
                let due: Vec<(usize, u64)> = self
                    .pieces
                    .iter()
                    .filter(|(_, p)| p.state == St::Reserved && p.expires <= now)
                    .map(|(k, _)| *k)
                    .collect();
                for (a, s) in due {
                    let amount = self.pieces[&(a, s)].amount;
                    self.print(a, s, amount);
                    self.pieces.get_mut(&(a, s)).unwrap().state = St::Unsettled;
                }
            }
            Step::RequestRefund { a, s } => {
                let id = pid(a, s);
                let Some(p) = self.pieces.get(&(a, s)).cloned() else {
                    return self.err(LedgerError::UnknownPiece(id));
                };
                if let Err(e) = self.refundable(a, s, &p) {
                    return self.err(e);
                }
                self.pieces.get_mut(&(a, s)).unwrap().refund = Some(Rf::Submitted);
            }
            Step::DecideRefund { a, s, approve } => {
                let id = pid(a, s);
                let Some(p) = self.pieces.get(&(a, s)).cloned() else {
                    return self.err(LedgerError::UnknownPiece(id));
                };
                if p.refund != Some(Rf::Submitted) {
                    return self.err(LedgerError::NoRefundPending(id));
                }
                // A piece seen in the mail stream is never refunded (a refund request filed
                // by a void that reached the printer after the scan can only be rejected).
                if approve && p.scanned {
                    return self.err(LedgerError::PieceScanned(id));
                }
                if approve {
                    self.accounts[a].desc += p.amount;
                    self.accounts[a].control += p.amount;
                }
                self.pieces.get_mut(&(a, s)).unwrap().refund =
                    Some(if approve { Rf::Approved } else { Rf::Rejected });
            }
            Step::Scan { a, s } => {
                let Some(p) = self.pieces.get_mut(&(a, s)) else {
                    return self.err(LedgerError::UnknownPiece(pid(a, s)));
                };
                p.scanned = true;
                if p.refund == Some(Rf::Submitted) {
                    p.refund = Some(Rf::Rejected);
                }
            }
            Step::Lock { a } => self.accounts[a].locked = true,
            Step::Advance { .. } | Step::Retry { .. } | Step::Conflict { .. } => {}
        }
    }

    fn print(&mut self, a: usize, s: u64, amount: u64) {
        self.accounts[a].pend -= amount;
        self.accounts[a].asc += amount;
        let p = self.pieces.get_mut(&(a, s)).unwrap();
        p.state = St::Printed;
        p.printed_at = self.now;
    }

    fn release(&mut self, a: usize, s: u64, state: St) {
        let p = self.pieces.get_mut(&(a, s)).unwrap();
        p.state = state;
        let amount = p.amount;
        self.accounts[a].pend -= amount;
        self.accounts[a].desc += amount;
    }
}

struct LedgerMachine;

impl ReferenceStateMachine for LedgerMachine {
    type State = Model;
    type Transition = Step;

    fn init_state() -> BoxedStrategy<Model> {
        Just(Model {
            now: T0,
            accounts: vec![RefAccount::default(); ACCOUNTS],
            pieces: BTreeMap::new(),
            requests: 0,
            expect: Expect::Nothing,
        })
        .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Step> {
        let a = 0..ACCOUNTS;
        let top = state.accounts.iter().map(|x| x.last).max().unwrap_or(0) + 2;
        let s = 1..top;
        prop_oneof![
            3 => (a.clone(), prop_oneof![Just(0u64), 1..TOP_UP_MIN, TOP_UP_MIN..5_000]).prop_map(|(a, amount)| Step::Fund { a, amount }),
            6 => (a.clone(), 0..1_500u64).prop_map(|(a, amount)| Step::Authorize { a, amount }),
            5 => (a.clone(), s.clone()).prop_map(|(a, s)| Step::Commit { a, s }),
            3 => (a.clone(), s.clone(), any::<bool>()).prop_map(|(a, s, reached)| Step::Void { a, s, reached }),
            1 => Just(Step::Expire),
            2 => prop_oneof![0..200_000u64, Just(10 * 24 * 3600 * 1000u64)].prop_map(|ms| Step::Advance { ms }),
            2 => (a.clone(), s.clone()).prop_map(|(a, s)| Step::RequestRefund { a, s }),
            2 => (a.clone(), s.clone(), any::<bool>()).prop_map(|(a, s, approve)| Step::DecideRefund { a, s, approve }),
            1 => (a.clone(), s).prop_map(|(a, s)| Step::Scan { a, s }),
            1 => prop_oneof![20 => Just(None::<usize>), 1 => a.prop_map(Some)].prop_filter_map("rare lock", |x| x).prop_map(|a| Step::Lock { a }),
            2 => (0..8usize).prop_map(|back| Step::Retry { back }),
            1 => (0..8usize).prop_map(|back| Step::Conflict { back }),
        ]
        .boxed()
    }

    fn apply(mut state: Model, step: &Step) -> Model {
        state.step(step);
        state
    }
}

struct Sut {
    rt: tokio::runtime::Runtime,
    store: Arc<dyn LedgerStore>,
    now: u64,
    history: Vec<(Request, Reply)>,
    _dir: tempfile::TempDir,
}

impl Sut {
    fn run(&mut self, req: Request) -> Reply {
        self.rt
            .block_on(self.store.execute(req, self.now))
            .expect("store works")
    }
    fn pick(&self, back: usize) -> (Request, Reply) {
        let n = self.history.len();
        self.history[n - 1 - (back % n)].clone()
    }
}

fn to_op(step: &Step) -> (Op, External) {
    match *step {
        Step::Fund { a, amount } => (
            Op::Fund {
                account: aid(a),
                amount: c(amount),
                method: card_summary(),
            },
            External::Payment(Ok(PaymentReceipt {
                id: PaymentId(format!("p{}", rid().0)),
                amount: c(amount),
            })),
        ),
        Step::Authorize { a, amount } => (
            Op::Authorize {
                account: aid(a),
                kind: 1,
                amount: c(amount),
                item: vec![1; 16],
                terminal: None,
            },
            External::None,
        ),
        Step::Commit { a, s } => (
            Op::Commit {
                authorization: pid(a, s),
            },
            External::None,
        ),
        Step::Void { a, s, reached } => (
            Op::Void {
                authorization: pid(a, s),
                reached_printer: reached,
                terminal: None,
            },
            External::None,
        ),
        Step::Expire => (Op::ExpireDue { max: 256 }, External::None),
        Step::RequestRefund { a, s } => (Op::RequestRefund { piece: pid(a, s) }, External::None),
        Step::DecideRefund { a, s, approve } => (
            Op::DecideRefund {
                piece: pid(a, s),
                approve,
            },
            External::None,
        ),
        Step::Scan { a, s } => (Op::RecordScan { piece: pid(a, s) }, External::None),
        Step::Lock { a } => (
            Op::PaymentReturned {
                account: aid(a),
                payment: PaymentId("ach".into()),
            },
            External::None,
        ),
        Step::Advance { .. } | Step::Retry { .. } | Step::Conflict { .. } => unreachable!(),
    }
}

impl StateMachineTest for Sut {
    type SystemUnderTest = Sut;
    type Reference = LedgerMachine;

    fn init_test(_: &Model) -> Sut {
        Sut::new(false)
    }

    fn apply(sut: Sut, model: &Model, step: Step) -> Sut {
        sut.step(model, step)
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        sut.check(model)
    }
}

/// The same machine on PostgreSQL (the batch writers; a fresh database per case).
struct PgSut;

impl StateMachineTest for PgSut {
    type SystemUnderTest = Sut;
    type Reference = LedgerMachine;

    fn init_test(_: &Model) -> Sut {
        Sut::new(true)
    }

    fn apply(sut: Sut, model: &Model, step: Step) -> Sut {
        sut.step(model, step)
    }

    fn check_invariants(sut: &Sut, model: &Model) {
        sut.check(model)
    }
}

impl Sut {
    fn new(postgres: bool) -> Sut {
        let dir = tempfile::tempdir().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let store: Arc<dyn LedgerStore> = if postgres {
            rt.block_on(async {
                let url = pg::database().await;
                Arc::new(
                    PostgresStore::connect(
                        &url,
                        PostgresConfig::default(),
                        signer(),
                        LedgerLimits::default(),
                    )
                    .await
                    .unwrap(),
                )
            })
        } else {
            Arc::new(
                SqliteStore::open(
                    &dir.path().join("l.db"),
                    SqliteConfig::default(),
                    signer(),
                    LedgerLimits::default(),
                )
                .unwrap(),
            )
        };
        let mut sut = Sut {
            rt,
            store,
            now: T0,
            history: Vec::new(),
            _dir: dir,
        };
        for i in 0..ACCOUNTS {
            let req = Request {
                id: rid(),
                op: Op::OpenAccount,
                external: External::License(Ok(LicenseId(i as u64 + 1))),
            };
            let r = sut.run(req);
            assert!(
                matches!(r, Ok(Outcome::Opened { account, .. }) if account == aid(i)),
                "{r:?}"
            );
        }
        sut
    }

    fn step(self, model: &Model, step: Step) -> Sut {
        let mut sut = self;
        sut.now = model.now;
        match (&model.expect, &step) {
            (Expect::Nothing, _) => {}
            (Expect::Replay(_) | Expect::Conflict(_), _) if sut.history.is_empty() => {}
            (Expect::Replay(back), _) => {
                let (req, first) = sut.pick(*back);
                assert_eq!(sut.run(req), first, "a retry must return the first reply");
            }
            (Expect::Conflict(back), _) => {
                let (req, _) = sut.pick(*back);
                let id = req.id;
                let changed = Request {
                    op: Op::ExpireDue { max: 7 },
                    ..req
                };
                assert_eq!(
                    sut.run(changed),
                    Err(LedgerError::IdempotencyConflict { request: id })
                );
            }
            (expect, step) => {
                let (op, external) = to_op(step);
                let req = Request {
                    id: rid(),
                    op,
                    external,
                };
                let reply = sut.run(req.clone());
                match expect {
                    Expect::Ok => {
                        assert!(reply.is_ok(), "{step:?}: expected success, got {reply:?}")
                    }
                    Expect::Err(e) => assert_eq!(reply.as_ref().err(), Some(e), "{step:?}"),
                    _ => unreachable!(),
                }
                // Only remembered replies replay (not an empty reaper pass).
                if frank::ledger::store::remember(&reply) {
                    sut.history.push((req, reply));
                }
            }
        }
        sut
    }

    fn check(&self, model: &Model) {
        let sut = self;
        for (i, want) in model.accounts.iter().enumerate() {
            let got = sut.rt.block_on(sut.store.account(aid(i))).unwrap().unwrap();
            let r = got.registers;
            r.check().expect("control sum");
            assert_eq!(
                (
                    r.descending.get(),
                    r.pending.get(),
                    r.ascending.get(),
                    r.control.get()
                ),
                (want.desc, want.pend, want.asc, want.control),
                "registers of account {i}"
            );
            assert_eq!(got.last_piece.0, want.last);
            assert_eq!(got.status == AccountStatus::Locked, want.locked);
        }
        sut.rt
            .block_on(verify_audit(&*sut.store))
            .expect("audit verifies");
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 48, max_shrink_iters: 2000, ..ProptestConfig::default() })]
    #[test]
    fn ledger_matches_reference_model(sequential 1..60 => Sut);
}

prop_state_machine! {
    #![proptest_config(ProptestConfig { cases: 24, max_shrink_iters: 500, ..ProptestConfig::default() })]
    #[test]
    fn postgres_ledger_matches_reference_model(sequential 1..60 => PgSut);
}
