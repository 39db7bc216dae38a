//! One conformance suite, run on the SQLite and the PostgreSQL store, plus the reliability
//! tests: duplicate retries, double spend, audit tampering.
//!
//! Long on purpose: the one conformance suite both stores must pass; shared steps live in
//! `tests/support/ledger.rs`.

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod pg;
#[path = "support/softhsm.rs"]
mod softhsm;
#[path = "support/ledger.rs"]
mod support;

use frank::ledger::audit::BreakKind;
use frank::ledger::ops::{External, Op, Request};
#[cfg(feature = "postgres")]
use frank::ledger::postgres::{PostgresConfig, PostgresStore};
use frank::ledger::report;
use frank::ledger::sqlite::{SqliteConfig, SqliteStore};
use frank::ledger::*;
use std::sync::Arc;
use support::*;

const T0: u64 = 1_780_000_000_000;
const DAY_MS: u64 = 24 * 3600 * 1000;

fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn LedgerStore> {
    sqlite_store_with(dir, signer())
}

fn sqlite_store_with(dir: &tempfile::TempDir, signer: Arc<dyn ItemSigner>) -> Arc<dyn LedgerStore> {
    Arc::new(
        SqliteStore::open(
            &dir.path().join("ledger.db"),
            SqliteConfig::default(),
            signer,
            LedgerLimits::default(),
        )
        .unwrap(),
    )
}

#[cfg(feature = "postgres")]
async fn postgres_store() -> (Arc<dyn LedgerStore>, String) {
    let url = pg::database().await;
    let store = PostgresStore::connect(
        &url,
        PostgresConfig::default(),
        signer(),
        LedgerLimits::default(),
    )
    .await
    .unwrap();
    (Arc::new(store), url)
}

/// [`Ed25519Signer`]'s key (seed 7) imported into a throwaway SoftHSM2 token (issue 20): the
/// same signed bytes (Ed25519 is deterministic), each signature made inside the token through
/// its session pool, which also sizes the store's signing threads.
struct TokenItemSigner {
    signer: frank::pkcs11::Pkcs11Signer,
    _token: softhsm::Token,
}

impl ItemSigner for TokenItemSigner {
    fn sign(&self, facts: &PieceFacts, item: &[u8]) -> Result<Vec<u8>, String> {
        use frank::indicium::signer::Signer;
        let mut m = message(facts, item);
        let sig = self.signer.sign(&m).map_err(|e| e.to_string())?;
        m.extend_from_slice(&sig);
        Ok(m)
    }

    fn parallel_signatures_max(&self) -> Option<usize> {
        Some(self.signer.sessions())
    }
}

fn token_signer() -> Arc<dyn ItemSigner> {
    let token = softhsm::token();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let public = token.token_key().import(&key).unwrap();
    assert_eq!(public, Ed25519Signer::new(7).verifying_key().to_bytes());
    let signer = frank::pkcs11::Pkcs11Signer::open(&token.config(&public)).unwrap();
    Arc::new(TokenItemSigner {
        signer,
        _token: token,
    })
}

/// Asserts that `reply` is the error `want` and that the account's registers did not move.
async fn refused(store: &dyn LedgerStore, account: AccountId, reply: Reply, want: LedgerError) {
    let before = registers(store, account).await;
    assert_eq!(reply, Err(want));
    assert_eq!(registers(store, account).await, before);
}

async fn suite(store: Arc<dyn LedgerStore>) {
    let s = &*store;
    accounts_and_licensing(s).await;
    funding_rules(s).await;
    authorize_commit_void(s).await;
    expiry(s).await;
    refunds(s).await;
    idempotency(s).await;
    locked_accounts(s).await;
    statements(s).await;
    listing(s).await;
    repeated_scans(s).await;
    idempotency_pruning(s).await;
    payment_intents(s).await;
    tenders_and_day_rows(s).await;
    let report = verify_audit(s).await.expect("audit verifies");
    assert!(report.records > 10);
}

fn tender(
    basket: u128,
    account: AccountId,
    kind: report::TenderKind,
    tendered: u64,
    change: u64,
    pieces: &[PieceId],
    at_ms: u64,
) -> report::Tender {
    report::Tender {
        basket: RequestId(basket),
        account,
        clerk: "alice".into(),
        terminal: TerminalId(3),
        kind,
        tendered: c(tendered),
        change: c(change),
        pieces: pieces.iter().map(|p| p.serial).collect(),
        total: c(0),
        recorded_at_ms: at_ms,
    }
}

/// Issue 15: a basket's tender is stored with its pieces once (a retry answers the first; the
/// same basket with another body, a piece of another basket, a voided or unknown piece are
/// refused and store nothing; two baskets racing for one piece: one wins), and a day's rows
/// are the pieces authorized and the tenders recorded in it.
async fn tenders_and_day_rows(s: &dyn LedgerStore) {
    use report::{TenderError, TenderKind};
    let day = T0 + 100 * DAY_MS;
    let day_start = day - day % DAY_MS;
    let a = open_active(s, 900, day).await;
    let b = open_active(s, 901, day).await;
    fund(s, a, 5000, day).await;
    fund(s, b, 5000, day).await;
    let p1 = authorize_and_commit(s, a, 500, day + 1).await;
    let p2 = authorization(authorize(s, a, 230, day + 2).await).id;
    let p3 = authorization(authorize(s, a, 70, day + 3).await).id;
    exec(s, void_op(p3, false, None), day + 4).await.unwrap();
    let p4 = authorize_and_commit(s, a, 100, day + 5).await;
    let q1 = authorize_and_commit(s, b, 300, day + 6).await;
    let basket = 0x7E4D_E401;
    let asked = tender(basket, a, TenderKind::Cash, 1000, 270, &[p1, p2], day + 10);
    let stored = s.record_tender(asked.clone()).await.unwrap().unwrap();
    assert_eq!(stored.total, c(730));
    assert_eq!(stored.pieces, vec![p1.serial, p2.serial]);
    // A retry (later, after a new sign-in) answers the first.
    let retry = report::Tender {
        clerk: "bob".into(),
        recorded_at_ms: day + 99,
        ..asked.clone()
    };
    assert_eq!(s.record_tender(retry).await.unwrap(), Ok(stored.clone()));
    let other_body = tender(basket, a, TenderKind::Cash, 2000, 1270, &[p1, p2], day + 11);
    assert_eq!(
        s.record_tender(other_body).await.unwrap(),
        Err(TenderError::IdempotencyConflict)
    );
    for (t, want) in [
        (
            tender(2, a, TenderKind::Card, 500, 0, &[p1], day + 12),
            TenderError::InOtherBasket(p1.number()),
        ),
        (
            tender(3, a, TenderKind::Card, 70, 0, &[p3], day + 12),
            TenderError::Voided(p3.number()),
        ),
        (
            tender(
                4,
                a,
                TenderKind::Card,
                100,
                0,
                &[PieceId {
                    account: a,
                    serial: PieceSerial(999),
                }],
                day + 12,
            ),
            TenderError::UnknownPiece(
                PieceId {
                    account: a,
                    serial: PieceSerial(999),
                }
                .number(),
            ),
        ),
        (
            tender(5, a, TenderKind::Card, 99, 0, &[p4], day + 12),
            TenderError::AmountMismatch {
                received: c(99),
                total: c(100),
            },
        ),
    ] {
        assert_eq!(s.record_tender(t).await.unwrap(), Err(want));
    }
    // Two baskets racing for one piece: exactly one records it.
    let (x, y) = tokio::join!(
        s.record_tender(tender(6, a, TenderKind::Check, 100, 0, &[p4], day + 13)),
        s.record_tender(tender(7, a, TenderKind::Other, 100, 0, &[p4], day + 13)),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert!(x.is_ok() != y.is_ok(), "{x:?} {y:?}");
    assert_eq!(
        x.clone().err().or(y.clone().err()),
        Some(TenderError::InOtherBasket(p4.number()))
    );
    let rows = s
        .day_rows(Some(a), day_start, day_start + DAY_MS)
        .await
        .unwrap();
    let serials: Vec<u64> = rows.pieces.iter().map(|p| p.id.serial.0).collect();
    assert_eq!(serials, vec![1, 2, 3, 4]);
    assert_eq!(rows.tenders.len(), 2, "{:?}", rows.tenders);
    assert_eq!(rows.tenders[0], stored);
    let all = s
        .day_rows(None, day_start, day_start + DAY_MS)
        .await
        .unwrap();
    assert!(
        all.pieces.iter().any(|p| p.id == q1),
        "b's piece is in the day"
    );
    let next = s
        .day_rows(Some(a), day_start + DAY_MS, day_start + 2 * DAY_MS)
        .await
        .unwrap();
    assert!(next.pieces.is_empty() && next.tenders.is_empty());
    // Refunds awaiting per account.
    exec(s, Op::RequestRefund { piece: p1 }, day + 20)
        .await
        .unwrap();
    let awaiting = s.refunds_awaiting(Some(a), 10).await.unwrap();
    assert_eq!(awaiting.iter().map(|p| p.id).collect::<Vec<_>>(), vec![p1]);
    assert!(s.refunds_awaiting(Some(b), 10).await.unwrap().is_empty());
    exec(
        s,
        Op::DecideRefund {
            piece: p1,
            approve: false,
        },
        day + 21,
    )
    .await
    .unwrap();
}

/// Records older than the cut-off are deleted (at most `max` per call); account openings stay.
/// Runs last: it prunes what the earlier parts of the suite left.
async fn idempotency_pruning(s: &dyn LedgerStore) {
    let later = T0 + 30 * DAY_MS;
    let open = Request {
        id: rid(),
        op: Op::OpenAccount,
        external: External::License(Ok(LicenseId(700))),
    };
    let opened = s.execute(open.clone(), later).await.unwrap();
    let Ok(Outcome::Opened { account: a, .. }) = opened else {
        panic!("{opened:?}")
    };
    fund(s, a, 1000, later).await;
    let auth = |amount| Request {
        op: Op::Authorize {
            account: a,
            kind: 1,
            amount: c(amount),
            item: b"old".to_vec(),
            terminal: None,
        },
        ..Request::new(RequestId(0xD1CE), Op::OpenAccount)
    };
    let first = s.execute(auth(100), later).await.unwrap();
    assert!(matches!(first, Ok(Outcome::Authorized(_))));
    // Everything older than `later` goes (the earlier suite left plenty), in rounds of 5.
    let mut pruned = 0;
    loop {
        let n = s.prune_idempotency(later, 5).await.unwrap();
        assert!(n <= 5);
        pruned += n;
        if n == 0 {
            break;
        }
    }
    assert!(pruned > 20, "pruned only {pruned}");
    // Not older than the cut-off: still remembered.
    assert_eq!(s.execute(auth(100), later + 1).await.unwrap(), first);
    assert_eq!(
        s.execute(auth(200), later + 1).await.unwrap(),
        Err(LedgerError::IdempotencyConflict {
            request: RequestId(0xD1CE)
        })
    );
    assert_eq!(s.prune_idempotency(later + 1, 100).await.unwrap(), 2); // the fund, the authorize
    // Forgotten: the same id now runs as a new request.
    let again = authorization(s.execute(auth(200), later + 2).await.unwrap());
    assert_eq!(again.id.serial, PieceSerial(2));
    // The opening is permanent: replaying it still names the same account.
    assert_eq!(s.execute(open, later + 3).await.unwrap(), opened);
}

/// Payment intents: recorded once, listed while open and old enough, resolved once; pruning
/// keeps the idempotency record of a top-up whose intent is open (the reaper replays it).
/// Runs after `idempotency_pruning`, at later times.
async fn payment_intents(s: &dyn LedgerStore) {
    let t = T0 + 40 * DAY_MS;
    let a = open_active(s, 710, t).await;
    let top_up = fund_request(a, 500, "pay-intent-1");
    let intent = PaymentIntent {
        request: top_up.id,
        account: a,
        amount: c(500),
        method: card_summary(),
        started_at_ms: t,
    };
    s.record_intent(intent.clone()).await.unwrap();
    // Recording it again keeps the first record.
    s.record_intent(PaymentIntent {
        amount: c(999),
        started_at_ms: t + 5,
        ..intent.clone()
    })
    .await
    .unwrap();
    assert_eq!(s.open_intents(t, 10).await.unwrap(), vec![]);
    assert_eq!(
        s.open_intents(t + 1, 10).await.unwrap(),
        vec![intent.clone()]
    );
    let credited = s.execute(top_up.clone(), t).await.unwrap();
    assert!(
        matches!(credited, Ok(Outcome::Funded { .. })),
        "{credited:?}"
    );
    // A resolved intent is not listed.
    let declined = PaymentIntent {
        request: rid(),
        ..intent.clone()
    };
    s.record_intent(declined.clone()).await.unwrap();
    s.resolve_intent(declined.request, IntentResolution::NotCharged, t + 2)
        .await
        .unwrap();
    assert_eq!(
        s.open_intents(t + 10, 10).await.unwrap(),
        vec![intent.clone()]
    );
    // Pruning keeps the top-up's record while its intent is open: replaying it answers the
    // first result and credits nothing more.
    s.prune_idempotency(t + 100, 10_000).await.unwrap();
    assert_eq!(s.execute(top_up.clone(), t + 101).await.unwrap(), credited);
    assert_eq!(registers(s, a).await.control, c(500));
    s.resolve_intent(intent.request, IntentResolution::Credited, t + 102)
        .await
        .unwrap();
    s.resolve_intent(intent.request, IntentResolution::Reversed, t + 103)
        .await
        .unwrap();
    assert_eq!(s.open_intents(t + 1000, 10).await.unwrap(), vec![]);
    // Resolved: its record can go now.
    assert_eq!(s.prune_idempotency(t + 200, 10_000).await.unwrap(), 1);
}

async fn accounts_and_licensing(s: &dyn LedgerStore) {
    let a = open_active(s, 100, T0).await;
    let acct = s.account(a).await.unwrap().unwrap();
    assert_eq!(acct.license, Some(LicenseId(100)));
    assert_eq!(acct.meter, MeterSerial::for_account(a));
    // No license: pending, cannot fund or print.
    let pending = match exec(s, Op::OpenAccount, T0).await {
        Ok(Outcome::Opened {
            account,
            status: AccountStatus::Pending,
            ..
        }) => account,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        s.execute(fund_request(pending, 1000, "x"), T0)
            .await
            .unwrap(),
        Err(LedgerError::AccountPending { account: pending })
    );
    let refusal = Request {
        id: rid(),
        op: Op::License { account: pending },
        external: External::License(Err("not approved".into())),
    };
    assert_eq!(
        s.execute(refusal, T0).await.unwrap(),
        Err(LedgerError::LicenseRefused {
            reason: "not approved".into()
        })
    );
    assert_eq!(
        s.account(pending).await.unwrap().unwrap().status,
        AccountStatus::Pending
    );
    let grant = Request {
        id: rid(),
        op: Op::License { account: pending },
        external: External::License(Ok(LicenseId(101))),
    };
    assert!(matches!(
        s.execute(grant, T0).await.unwrap(),
        Ok(Outcome::Licensed { .. })
    ));
    assert_eq!(
        s.account(pending).await.unwrap().unwrap().status,
        AccountStatus::Active
    );
    assert_eq!(s.max_license().await.unwrap(), 101);
}

async fn funding_rules(s: &dyn LedgerStore) {
    let a = open_active(s, 200, T0).await;
    let limits = LedgerLimits::default();
    let mut req = fund_request(a, 0, "z");
    let r = s.execute(req.clone(), T0).await.unwrap();
    refused(s, a, r, LedgerError::ZeroAmount).await;
    req = fund_request(a, 100, "small");
    let r = s.execute(req, T0).await.unwrap();
    refused(
        s,
        a,
        r,
        LedgerError::TopUpBelowMinimum {
            amount: c(100),
            min: limits.top_up_min,
        },
    )
    .await;
    let r = s
        .execute(fund_request(a, 2_000_000, "big"), T0)
        .await
        .unwrap();
    refused(
        s,
        a,
        r,
        LedgerError::TopUpAboveMaximum {
            amount: c(2_000_000),
            max: limits.top_up_max,
        },
    )
    .await;
    let declined = Request {
        external: External::Payment(Err(PaymentError::Declined)),
        ..fund_request(a, 1000, "d")
    };
    let r = s.execute(declined, T0).await.unwrap();
    refused(s, a, r, LedgerError::Payment(PaymentError::Declined)).await;
    let regs = fund(s, a, 5000, T0).await;
    assert_eq!(
        regs,
        Registers {
            descending: c(5000),
            pending: c(0),
            ascending: c(0),
            control: c(5000)
        }
    );
    let r = s
        .execute(fund_request(AccountId(999_999), 1000, "u"), T0)
        .await
        .unwrap();
    assert_eq!(r, Err(LedgerError::UnknownAccount(AccountId(999_999))));
}

async fn authorize_commit_void(s: &dyn LedgerStore) {
    let key = Ed25519Signer::new(7).verifying_key();
    let a = open_active(s, 300, T0).await;
    let r = authorize(s, a, 500, T0).await;
    refused(
        s,
        a,
        r,
        LedgerError::InsufficientFunds {
            available: c(0),
            requested: c(500),
        },
    )
    .await;
    fund(s, a, 1000, T0).await;
    let r = authorize(s, a, 0, T0).await;
    refused(s, a, r, LedgerError::ZeroAmount).await;
    let r = authorize(s, a, 100_001, T0).await;
    refused(
        s,
        a,
        r,
        LedgerError::AmountTooLarge {
            amount: c(100_001),
            max: c(100_000),
        },
    )
    .await;
    let r = authorize(s, a, 1001, T0).await;
    refused(
        s,
        a,
        r,
        LedgerError::InsufficientFunds {
            available: c(1000),
            requested: c(1001),
        },
    )
    .await;

    let first = authorization(authorize(s, a, 300, T0).await);
    assert_eq!(
        first.id,
        PieceId {
            account: a,
            serial: PieceSerial(1)
        }
    );
    assert_eq!(first.expires_at_ms, T0 + 120_000);
    assert_eq!(
        first.registers,
        Registers {
            descending: c(700),
            pending: c(300),
            ascending: c(0),
            control: c(1000)
        }
    );
    let facts = verify_signed(&key, &first.signed);
    assert_eq!(facts.piece, PieceSerial(1));
    assert_eq!(facts.amount, c(300));
    assert_eq!(facts.descending_after, c(700));
    assert_eq!(facts.license, LicenseId(300));
    let stored = s.piece(first.id).await.unwrap().unwrap();
    assert_eq!(stored.signed, first.signed);
    assert_eq!(stored.item_state(), ItemState::Reserved);

    let second = authorization(authorize(s, a, 200, T0).await);
    assert_eq!(second.id.serial, PieceSerial(2));

    let r = exec(
        s,
        Op::Commit {
            authorization: first.id,
        },
        T0 + 1,
    )
    .await;
    assert!(matches!(r, Ok(Outcome::Committed { registers, .. }) if registers.ascending == c(300)));
    let r = exec(
        s,
        Op::Commit {
            authorization: first.id,
        },
        T0 + 2,
    )
    .await;
    refused(s, a, r, LedgerError::AlreadyCommitted(first.id)).await;
    let r = exec(
        s,
        Op::Void {
            authorization: first.id,
            reached_printer: false,
            terminal: None,
        },
        T0 + 2,
    )
    .await;
    refused(s, a, r, LedgerError::AlreadyCommitted(first.id)).await;
    assert_eq!(
        s.piece(first.id).await.unwrap().unwrap().item_state(),
        ItemState::Printed
    );

    let r = exec(
        s,
        Op::Void {
            authorization: second.id,
            reached_printer: false,
            terminal: None,
        },
        T0 + 3,
    )
    .await;
    assert!(matches!(r, Ok(Outcome::Voided { .. })), "{r:?}");
    let r = exec(
        s,
        Op::Commit {
            authorization: second.id,
        },
        T0 + 4,
    )
    .await;
    refused(s, a, r, LedgerError::AlreadyVoided(second.id)).await;
    assert_eq!(
        registers(s, a).await,
        Registers {
            descending: c(700),
            pending: c(0),
            ascending: c(300),
            control: c(1000)
        }
    );
    let ghost = PieceId {
        account: a,
        serial: PieceSerial(99),
    };
    let r = exec(
        s,
        Op::Commit {
            authorization: ghost,
        },
        T0,
    )
    .await;
    refused(s, a, r, LedgerError::UnknownPiece(ghost)).await;
    // The piece counter never reuses a serial, even after a void.
    assert_eq!(
        authorization(authorize(s, a, 100, T0).await).id.serial,
        PieceSerial(3)
    );
}

/// Issue 12: issued value is spent until its terminal shows it unprinted. A reservation nobody
/// settles by its expiry is committed as printed and marked unsettled (never given back); a
/// commit afterwards settles it as printed; a late void from the authorizing terminal within
/// the window turns it voided and credits it back like a refund; after the window, or from
/// another terminal, the void is refused and nothing changes; a void that reached the printer
/// is a refund request. Registers keep the control sum at every step.
async fn expiry(s: &dyn LedgerStore) {
    let limits = LedgerLimits::default();
    let (t1, t2) = (Some(TerminalId(1)), Some(TerminalId(2)));
    let a = open_active(s, 400, T0).await;
    fund(s, a, 10_000, T0).await;
    let p = authorize_by(s, a, 400, T0, t1).await;
    let late = p.expires_at_ms;
    assert_eq!(late, T0 + limits.authorization_expiry_ms);
    // Not yet due: the reaper leaves it.
    match exec(s, Op::ExpireDue { max: 1000 }, late - 1).await {
        Ok(Outcome::Expired { ids }) => assert!(!ids.contains(&p.id)),
        other => panic!("{other:?}"),
    }
    assert_eq!(piece(s, p.id).await.state, PieceState::Reserved);
    // Due: committed as printed and unsettled — pending → ascending, nothing back.
    let before = registers(s, a).await;
    match exec(s, Op::ExpireDue { max: 1000 }, late).await {
        Ok(Outcome::Expired { ids }) => assert!(ids.contains(&p.id)),
        other => panic!("{other:?}"),
    }
    let after = registers(s, a).await;
    after.check().unwrap();
    assert_eq!(
        after.descending, before.descending,
        "expiry gives nothing back"
    );
    assert_eq!(after.pending, before.pending.checked_sub(c(400)).unwrap());
    assert_eq!(
        after.ascending,
        before.ascending.checked_add(c(400)).unwrap()
    );
    assert_eq!(after.control, before.control);
    let got = piece(s, p.id).await;
    assert_eq!(got.state, PieceState::Unsettled);
    assert_eq!(got.item_state(), ItemState::Unsettled);
    assert_eq!(got.printed_at_ms, Some(late));
    assert_eq!(got.terminal, t1, "the authorizing terminal is recorded");
    assert_eq!(s.unsettled(a, 10).await.unwrap(), vec![got.clone()]);
    // A later pass does not touch it again.
    match exec(s, Op::ExpireDue { max: 1000 }, late + 1).await {
        Ok(Outcome::Expired { ids }) => assert!(!ids.contains(&p.id)),
        other => panic!("{other:?}"),
    }
    // The honest terminal's commit three minutes later settles it: printed, no money moves.
    let commit = Request::new(
        rid(),
        Op::Commit {
            authorization: p.id,
        },
    );
    let first = s.execute(commit.clone(), late + 180_000).await.unwrap();
    assert_eq!(
        first,
        Ok(Outcome::Committed {
            id: p.id,
            registers: after
        })
    );
    assert_eq!(registers(s, a).await, after);
    assert_eq!(piece(s, p.id).await.state, PieceState::Printed);
    assert_eq!(piece(s, p.id).await.item_state(), ItemState::Printed);
    assert_eq!(s.unsettled(a, 10).await.unwrap(), vec![]);
    // Its replay gives the first reply; a new commit is refused.
    assert_eq!(s.execute(commit, late + 200_000).await.unwrap(), first);
    let r = exec(
        s,
        Op::Commit {
            authorization: p.id,
        },
        late + 200_000,
    )
    .await;
    refused(s, a, r, LedgerError::AlreadyCommitted(p.id)).await;

    // A late void from the authorizing terminal, within the window.
    let q = authorize_by(s, a, 300, T0, t1).await;
    exec(s, Op::ExpireDue { max: 1000 }, late).await.unwrap();
    assert_eq!(piece(s, q.id).await.state, PieceState::Unsettled);
    let when = late + limits.late_void_window_ms - 1;
    for other in [t2, None] {
        let r = exec(s, void_op(q.id, false, other), when).await;
        refused(s, a, r, LedgerError::WrongTerminal { id: q.id }).await;
        assert_eq!(piece(s, q.id).await.state, PieceState::Unsettled);
    }
    let before = registers(s, a).await;
    let void = Request::new(rid(), void_op(q.id, false, t1));
    let first = s.execute(void.clone(), when).await.unwrap();
    let after = registers(s, a).await;
    assert_eq!(
        first,
        Ok(Outcome::Voided {
            id: q.id,
            registers: after
        })
    );
    after.check().unwrap();
    assert_eq!(
        after.descending,
        before.descending.checked_add(c(300)).unwrap()
    );
    assert_eq!(after.control, before.control.checked_add(c(300)).unwrap());
    assert_eq!(
        after.ascending, before.ascending,
        "ascending never decreases"
    );
    assert_eq!(after.pending, before.pending);
    assert_eq!(piece(s, q.id).await.state, PieceState::Voided);
    assert_eq!(piece(s, q.id).await.item_state(), ItemState::Voided);
    let audit = s.account_audit(a).await.unwrap();
    let last = &audit.last().unwrap().body;
    assert!(last.contains("\"late_void\""), "{last}");
    assert_eq!(s.execute(void, when + 5).await.unwrap(), first, "replay");
    let r = exec(
        s,
        Op::Commit {
            authorization: q.id,
        },
        when,
    )
    .await;
    refused(s, a, r, LedgerError::AlreadyVoided(q.id)).await;

    // After the window: refused, nothing changes; it stays charged and refundable.
    let v = authorize_by(s, a, 200, T0, t1).await;
    exec(s, Op::ExpireDue { max: 1000 }, late).await.unwrap();
    let deadline_ms = late + limits.late_void_window_ms;
    let r = exec(s, void_op(v.id, false, t1), deadline_ms + 1).await;
    refused(
        s,
        a,
        r,
        LedgerError::VoidWindowClosed {
            id: v.id,
            deadline_ms,
        },
    )
    .await;
    assert_eq!(piece(s, v.id).await.state, PieceState::Unsettled);
    // The normal refund path, which a scan can reject.
    let r = exec(s, Op::RequestRefund { piece: v.id }, deadline_ms + 2).await;
    assert!(matches!(r, Ok(Outcome::RefundRequested { .. })), "{r:?}");
    assert_eq!(
        piece(s, v.id).await.item_state(),
        ItemState::RefundRequested
    );
    let r = exec(s, Op::RecordScan { piece: v.id }, deadline_ms + 3).await;
    assert_eq!(
        r,
        Ok(Outcome::ScanRecorded {
            id: v.id,
            refund_rejected: true,
            recorded: true,
        })
    );
    assert_eq!(piece(s, v.id).await.item_state(), ItemState::RefundRejected);

    // A void that reached the printer: settled as printed, a refund requested; no money moves.
    let w = authorize_by(s, a, 100, T0, t1).await;
    exec(s, Op::ExpireDue { max: 1000 }, late).await.unwrap();
    let before = registers(s, a).await;
    let r = exec(s, void_op(w.id, true, t1), late + 10).await;
    assert_eq!(
        r,
        Ok(Outcome::RefundRequested {
            id: w.id,
            registers: before
        })
    );
    assert_eq!(registers(s, a).await, before);
    let got = piece(s, w.id).await;
    assert_eq!(got.state, PieceState::Printed);
    assert_eq!(got.item_state(), ItemState::RefundRequested);

    // The statement: everything above was committed unsettled (printed includes it); the
    // late void is a credit, in `refunded`.
    let st = store_statement(s, a).await;
    assert_eq!(st.unsettled, c(400 + 300 + 200 + 100));
    assert_eq!(st.late_voided, c(300));
    assert_eq!(st.refunded, c(300));
    assert_eq!(st.voided, c(0));
    assert_eq!(st.printed, c(1000));
    assert_eq!(st.printed_count, 4);
    assert_eq!(
        st.ending.get(),
        st.beginning.get() + st.credits.get() + st.refunded.get() - st.printed.get()
    );

    // A locked account's reservation is committed unsettled all the same; its late void waits
    // for an unlock (refused: nothing moves while locked).
    let b = open_active(s, 401, T0).await;
    fund(s, b, 1000, T0).await;
    let x = authorize_by(s, b, 500, T0, t1).await;
    let lock = Op::PaymentReturned {
        account: b,
        payment: PaymentId("ach-back".into()),
    };
    exec(s, lock, T0 + 1).await.unwrap();
    exec(s, Op::ExpireDue { max: 1000 }, late).await.unwrap();
    assert_eq!(piece(s, x.id).await.state, PieceState::Unsettled);
    assert_eq!(registers(s, b).await.ascending, c(500));
    let r = exec(s, void_op(x.id, false, t1), late + 1).await;
    refused(s, b, r, LedgerError::AccountLocked { account: b }).await;
    // A commit moves no money, so a lock does not stop it.
    let r = exec(
        s,
        Op::Commit {
            authorization: x.id,
        },
        late + 2,
    )
    .await;
    assert!(matches!(r, Ok(Outcome::Committed { .. })), "{r:?}");
    assert_eq!(piece(s, x.id).await.state, PieceState::Printed);

    // A reservation past its expiry that the reaper has not reached yet still settles
    // normally: a void gives it back, a commit prints it.
    let y = authorize_by(s, a, 50, late, t1).await;
    let r = exec(s, void_op(y.id, false, t2), y.expires_at_ms + 10).await;
    assert!(matches!(r, Ok(Outcome::Voided { .. })), "{r:?}");
    assert_eq!(piece(s, y.id).await.state, PieceState::Voided);
}

async fn piece(s: &dyn LedgerStore, id: PieceId) -> Piece {
    s.piece(id).await.unwrap().expect("piece exists")
}

async fn store_statement(s: &dyn LedgerStore, a: AccountId) -> Statement {
    frank::ledger::store::statement(s, a, 0, u64::MAX)
        .await
        .unwrap()
        .unwrap()
}

async fn refunds(s: &dyn LedgerStore) {
    let a = open_active(s, 500, T0).await;
    fund(s, a, 2000, T0).await;
    // A void after the item reached the printer becomes a refund request.
    let p1 = authorization(authorize(s, a, 300, T0).await).id;
    let r = exec(
        s,
        Op::Void {
            authorization: p1,
            reached_printer: true,
            terminal: None,
        },
        T0 + 1,
    )
    .await;
    assert!(matches!(r, Ok(Outcome::RefundRequested { .. })), "{r:?}");
    assert_eq!(
        s.piece(p1).await.unwrap().unwrap().item_state(),
        ItemState::RefundRequested
    );
    assert_eq!(registers(s, a).await.ascending, c(300));
    // The supervisor's list: this account's requests, oldest first, until each is decided.
    let p0 = authorize_and_commit(s, a, 50, T0).await;
    let r = exec(s, Op::RequestRefund { piece: p0 }, T0 + 5).await;
    assert!(matches!(r, Ok(Outcome::RefundRequested { .. })), "{r:?}");
    let awaiting_here = async || -> Vec<PieceId> {
        let all = s.refunds_awaiting(None, 1_000).await.unwrap();
        assert!(
            all.windows(2)
                .all(|w| w[0].refund_submitted_at_ms <= w[1].refund_submitted_at_ms),
            "oldest first: {all:?}"
        );
        assert!(
            all.iter()
                .all(|p| p.item_state() == ItemState::RefundRequested)
        );
        all.into_iter()
            .filter(|p| p.id.account == a)
            .map(|p| p.id)
            .collect()
    };
    assert_eq!(awaiting_here().await, vec![p1, p0]);
    assert!(
        s.refunds_awaiting(None, 1).await.unwrap().len() == 1,
        "the limit holds"
    );
    let r = exec(s, Op::RequestRefund { piece: p1 }, T0 + 2).await;
    refused(s, a, r, LedgerError::RefundAlreadyRequested(p1)).await;
    // Approval credits descending and the control total; ascending never falls.
    let r = exec(
        s,
        Op::DecideRefund {
            piece: p1,
            approve: true,
        },
        T0 + 3,
    )
    .await;
    assert!(
        matches!(r, Ok(Outcome::RefundDecided { approved: true, .. })),
        "{r:?}"
    );
    assert_eq!(
        registers(s, a).await,
        Registers {
            // 2000 funded − 300 (p1) − 50 (p0) + 300 refunded
            descending: c(1950),
            pending: c(0),
            ascending: c(350),
            control: c(2300)
        }
    );
    assert_eq!(
        s.piece(p1).await.unwrap().unwrap().item_state(),
        ItemState::Refunded
    );
    let r = exec(
        s,
        Op::DecideRefund {
            piece: p1,
            approve: true,
        },
        T0 + 4,
    )
    .await;
    refused(s, a, r, LedgerError::NoRefundPending(p1)).await;
    assert_eq!(
        awaiting_here().await,
        vec![p0],
        "a decided request leaves the list"
    );
    let r = exec(
        s,
        Op::DecideRefund {
            piece: p0,
            approve: false,
        },
        T0 + 6,
    )
    .await;
    assert!(
        matches!(
            r,
            Ok(Outcome::RefundDecided {
                approved: false,
                ..
            })
        ),
        "{r:?}"
    );
    assert_eq!(awaiting_here().await, Vec::<PieceId>::new());

    // Window: 28 days after printing.
    let p2 = authorization(authorize(s, a, 200, T0).await).id;
    exec(s, Op::Commit { authorization: p2 }, T0).await.unwrap();
    let deadline = T0 + 28 * DAY_MS;
    let r = exec(s, Op::RequestRefund { piece: p2 }, deadline + 1).await;
    refused(
        s,
        a,
        r,
        LedgerError::RefundWindowClosed {
            id: p2,
            deadline_ms: deadline,
        },
    )
    .await;
    // A refund on an unprinted piece.
    let p3 = authorization(authorize(s, a, 100, T0).await).id;
    let r = exec(s, Op::RequestRefund { piece: p3 }, T0).await;
    refused(s, a, r, LedgerError::NotPrinted(p3)).await;
    exec(s, Op::Commit { authorization: p3 }, T0).await.unwrap();
    // A scan rejects a pending refund.
    let r = exec(s, Op::RequestRefund { piece: p3 }, T0 + DAY_MS).await;
    assert!(r.is_ok(), "{r:?}");
    let r = exec(s, Op::RecordScan { piece: p3 }, T0 + DAY_MS).await;
    assert_eq!(
        r,
        Ok(Outcome::ScanRecorded {
            id: p3,
            refund_rejected: true,
            recorded: true,
        })
    );
    assert_eq!(
        s.piece(p3).await.unwrap().unwrap().item_state(),
        ItemState::RefundRejected
    );
    let r = exec(
        s,
        Op::DecideRefund {
            piece: p3,
            approve: true,
        },
        T0 + DAY_MS,
    )
    .await;
    refused(s, a, r, LedgerError::NoRefundPending(p3)).await;
    // A scanned piece cannot be refunded later.
    let r = exec(s, Op::RequestRefund { piece: p2 }, T0 + 1).await;
    assert!(r.is_ok());
    exec(
        s,
        Op::DecideRefund {
            piece: p2,
            approve: false,
        },
        T0 + 2,
    )
    .await
    .unwrap();
    assert_eq!(
        s.piece(p2).await.unwrap().unwrap().item_state(),
        ItemState::RefundRejected
    );
}

/// The audit records of one account that record a scan.
async fn scan_records(s: &dyn LedgerStore, a: AccountId) -> usize {
    s.account_audit(a)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.body.contains("\"event\":\"scanned\""))
        .count()
}

/// Issue 13: a repeated scan within `scan_record_window_ms` of the last recorded one only
/// counts on the piece — no audit record, no idempotency record; after the window the next
/// scan is recorded again.
async fn repeated_scans(s: &dyn LedgerStore) {
    let window = LedgerLimits::default().scan_record_window_ms;
    let a = open_active(s, 1300, T0).await;
    fund(s, a, 1000, T0).await;
    let p = authorization(authorize(s, a, 100, T0).await).id;
    exec(s, Op::Commit { authorization: p }, T0).await.unwrap();
    let scan = |n: u64| async move {
        let req = Request::new(rid(), Op::RecordScan { piece: p });
        let id = req.id;
        let reply = s.execute(req, n).await.expect("store works");
        (id, reply)
    };
    let (first, r) = scan(T0 + 10).await;
    assert_eq!(
        r,
        Ok(Outcome::ScanRecorded {
            id: p,
            refund_rejected: false,
            recorded: true,
        })
    );
    assert!(s.idempotency_record(first).await.unwrap().is_some());
    assert_eq!(scan_records(s, a).await, 1);
    let before = s.account(a).await.unwrap().unwrap();
    for n in 1..=5u64 {
        let (id, r) = scan(T0 + 10 + n * (window / 10)).await;
        assert_eq!(
            r,
            Ok(Outcome::ScanRecorded {
                id: p,
                refund_rejected: false,
                recorded: false,
            })
        );
        assert_eq!(s.idempotency_record(id).await.unwrap(), None, "not kept");
    }
    let got = piece(s, p).await;
    assert_eq!((got.scanned, got.scan_count), (true, 6));
    assert_eq!(got.scan_recorded_at_ms, Some(T0 + 10));
    assert_eq!(
        scan_records(s, a).await,
        1,
        "one audit record in the window"
    );
    assert_eq!(
        s.account(a).await.unwrap().unwrap(),
        before,
        "account untouched"
    );
    // The window ends: the next scan is recorded again.
    let (_, r) = scan(T0 + 10 + window).await;
    assert!(
        matches!(r, Ok(Outcome::ScanRecorded { recorded: true, .. })),
        "{r:?}"
    );
    let got = piece(s, p).await;
    assert_eq!(got.scan_count, 7);
    assert_eq!(got.scan_recorded_at_ms, Some(T0 + 10 + window));
    assert_eq!(scan_records(s, a).await, 2);
    // A scanned piece still cannot be refunded.
    let r = exec(s, Op::RequestRefund { piece: p }, T0 + 20 + window).await;
    refused(s, a, r, LedgerError::PieceScanned(p)).await;
}

/// `pieces`: one account's pieces newest first, paged by serial, each with its stored item
/// description; other accounts' pieces never show.
async fn listing(s: &dyn LedgerStore) {
    let a = open_active(s, 800, T0).await;
    let other = open_active(s, 801, T0).await;
    assert_eq!(s.pieces(a, None, 10).await.unwrap(), vec![]);
    fund(s, a, 5000, T0).await;
    fund(s, other, 5000, T0).await;
    let mut ids = Vec::new();
    for i in 0..5u8 {
        let r = exec(
            s,
            Op::Authorize {
                account: a,
                kind: 2,
                amount: c(100 + u64::from(i)),
                item: vec![i; 3 + usize::from(i)],
                terminal: None,
            },
            T0 + u64::from(i),
        )
        .await;
        ids.push(authorization(r).id);
        authorization(authorize(s, other, 50, T0).await);
    }
    exec(
        s,
        Op::Commit {
            authorization: ids[1],
        },
        T0 + 10,
    )
    .await
    .unwrap();
    let all = s.pieces(a, None, 10).await.unwrap();
    let serials: Vec<u64> = all.iter().map(|p| p.id.serial.0).collect();
    assert_eq!(serials, vec![5, 4, 3, 2, 1]);
    for p in &all {
        assert_eq!(p.id.account, a);
        let i = (p.id.serial.0 - 1) as u8;
        assert_eq!(p.item, vec![i; 3 + usize::from(i)], "item of {}", p.id);
        assert_eq!(p.amount, c(100 + u64::from(i)));
        assert_eq!(Some(p), s.piece(p.id).await.unwrap().as_ref());
    }
    assert_eq!(all[3].state, PieceState::Printed);
    let page1 = s.pieces(a, None, 2).await.unwrap();
    assert_eq!(page1, all[..2].to_vec());
    let page2 = s.pieces(a, Some(page1[1].id.serial), 2).await.unwrap();
    assert_eq!(page2, all[2..4].to_vec());
    let page3 = s.pieces(a, Some(page2[1].id.serial), 2).await.unwrap();
    assert_eq!(page3, all[4..].to_vec());
    assert_eq!(s.pieces(a, Some(PieceSerial(1)), 2).await.unwrap(), vec![]);
}

async fn idempotency(s: &dyn LedgerStore) {
    let a = open_active(s, 600, T0).await;
    // The first result is replayed, even an error, even after the state changed.
    let auth = Request::new(
        rid(),
        Op::Authorize {
            account: a,
            kind: 2,
            amount: c(700),
            item: b"parcel".to_vec(),
            terminal: None,
        },
    );
    let first = s.execute(auth.clone(), T0).await.unwrap();
    assert_eq!(
        first,
        Err(LedgerError::InsufficientFunds {
            available: c(0),
            requested: c(700)
        })
    );
    fund(s, a, 1000, T0).await;
    assert_eq!(s.execute(auth.clone(), T0).await.unwrap(), first);
    // Same id, different body.
    let other = Request {
        op: Op::Authorize {
            account: a,
            kind: 2,
            amount: c(701),
            item: b"parcel".to_vec(),
            terminal: None,
        },
        ..auth.clone()
    };
    assert_eq!(
        s.execute(other, T0).await.unwrap(),
        Err(LedgerError::IdempotencyConflict { request: auth.id })
    );
    // A success replays the same authorization (same serial, same signature) with no new effect.
    let ok = Request::new(
        rid(),
        Op::Authorize {
            account: a,
            kind: 2,
            amount: c(400),
            item: b"x".to_vec(),
            terminal: None,
        },
    );
    let r1 = s.execute(ok.clone(), T0).await.unwrap();
    let after = registers(s, a).await;
    let r2 = s.execute(ok.clone(), T0 + 5).await.unwrap();
    assert_eq!(r1, r2);
    assert_eq!(registers(s, a).await, after);
    let fund_req = fund_request(a, 1000, "once");
    let f1 = s.execute(fund_req.clone(), T0).await.unwrap();
    let f2 = s.execute(fund_req.clone(), T0).await.unwrap();
    assert_eq!(f1, f2);
    assert_eq!(registers(s, a).await.control, c(2000));
    // The committed record reads back as it is (what the service consults before charging).
    let record = s.idempotency_record(fund_req.id).await.unwrap().unwrap();
    assert_eq!(record.reply, f1);
    assert_eq!(
        record.fingerprint,
        frank::ledger::ops::fingerprint(&fund_req.op)
    );
    assert_eq!(s.idempotency_record(rid()).await.unwrap(), None);
    // A body naming no terminal keeps the fingerprint it had before terminals were recorded.
    let body = serde_json::to_string(&auth.op).unwrap();
    assert!(!body.contains("terminal"), "{body}");
}

async fn locked_accounts(s: &dyn LedgerStore) {
    let a = open_active(s, 700, T0).await;
    fund(s, a, 1000, T0).await;
    let p = authorization(authorize(s, a, 100, T0).await).id;
    let r = exec(
        s,
        Op::PaymentReturned {
            account: a,
            payment: PaymentId("ach-1".into()),
        },
        T0,
    )
    .await;
    assert_eq!(r, Ok(Outcome::Locked { account: a }));
    let r = authorize(s, a, 100, T0).await;
    refused(s, a, r, LedgerError::AccountLocked { account: a }).await;
    let r = s.execute(fund_request(a, 1000, "l"), T0).await.unwrap();
    refused(s, a, r, LedgerError::AccountLocked { account: a }).await;
    let r = exec(s, Op::Commit { authorization: p }, T0).await;
    refused(s, a, r, LedgerError::AccountLocked { account: a }).await;
    // The reservation can still be released (no value leaves a locked account).
    let r = exec(
        s,
        Op::Void {
            authorization: p,
            reached_printer: false,
            terminal: None,
        },
        T0,
    )
    .await;
    assert!(r.is_ok(), "{r:?}");
    // A supervisor unlocks it (audited); then it works again. Unlocking twice is refused.
    let unlock = |who: &str| Op::Unlock {
        account: a,
        supervisor: who.into(),
    };
    assert_eq!(
        exec(s, unlock("sam"), T0 + 1).await,
        Ok(Outcome::Unlocked { account: a })
    );
    let r = exec(s, unlock("sam"), T0 + 2).await;
    refused(s, a, r, LedgerError::NotLocked { account: a }).await;
    let b = open_active(s, 701, T0).await;
    let r2 = exec(
        s,
        Op::Unlock {
            account: b,
            supervisor: "sam".into(),
        },
        T0,
    )
    .await;
    refused(s, b, r2, LedgerError::NotLocked { account: b }).await;
    assert_eq!(
        s.account(a).await.unwrap().unwrap().status,
        AccountStatus::Active
    );
    fund(s, a, 1000, T0 + 3).await;
    let p = authorization(authorize(s, a, 100, T0 + 3).await).id;
    exec(s, Op::Commit { authorization: p }, T0 + 3)
        .await
        .unwrap();
    let unlocked = s
        .account_audit(a)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.body.contains("\"unlocked\"") && r.body.contains("\"sam\""))
        .count();
    assert_eq!(unlocked, 1, "one audited unlock");
}

async fn statements(s: &dyn LedgerStore) {
    let a = open_active(s, 800, T0).await;
    fund(s, a, 5000, T0).await;
    let p1 = authorization(authorize(s, a, 1000, T0 + 10).await).id;
    exec(s, Op::Commit { authorization: p1 }, T0 + 11)
        .await
        .unwrap();
    // period starts here
    fund(s, a, 2000, T0 + 100).await;
    let p2 = authorization(authorize(s, a, 300, T0 + 101).await).id;
    exec(s, Op::Commit { authorization: p2 }, T0 + 102)
        .await
        .unwrap();
    let p3 = authorization(authorize(s, a, 200, T0 + 103).await).id;
    exec(
        s,
        Op::Void {
            authorization: p3,
            reached_printer: false,
            terminal: None,
        },
        T0 + 104,
    )
    .await
    .unwrap();
    exec(s, Op::RequestRefund { piece: p1 }, T0 + 105)
        .await
        .unwrap();
    exec(
        s,
        Op::DecideRefund {
            piece: p1,
            approve: true,
        },
        T0 + 106,
    )
    .await
    .unwrap();
    let _open = authorization(authorize(s, a, 50, T0 + 107).await);
    // after the period
    fund(s, a, 500, T0 + 200).await;
    let records = s.account_audit(a).await.unwrap();
    let st = frank::ledger::audit::statement(a, &records, T0 + 100, T0 + 200);
    assert_eq!(st.beginning, c(4000));
    assert_eq!(st.credits, c(2000));
    assert_eq!(st.printed, c(300));
    assert_eq!(st.voided, c(200));
    assert_eq!(st.refunded, c(1000));
    assert_eq!(st.ending, c(6700));
    assert_eq!(
        st.ending.get(),
        st.beginning.get() + st.credits.get() + st.refunded.get() - st.printed.get()
    );
    let via_store = frank::ledger::store::statement(s, a, T0 + 100, T0 + 200)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(via_store, st);
    // Every period, edges included, agrees with the fold over the whole history.
    for from in [
        0,
        T0,
        T0 + 10,
        T0 + 11,
        T0 + 100,
        T0 + 104,
        T0 + 107,
        T0 + 200,
        T0 + 300,
    ] {
        for to in [T0 + 1, T0 + 100, T0 + 105, T0 + 200, T0 + 201, u64::MAX] {
            let want = frank::ledger::audit::statement(a, &records, from, to);
            let got = frank::ledger::store::statement(s, a, from, to)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, want, "period [{from}, {to})");
        }
    }

    // Over several UTC days, with a quiet day between (a store may start an old period's walk
    // at the day after it): every period, day edges included, agrees with the fold.
    const DAY: u64 = 86_400_000;
    let d0 = T0 - T0 % DAY;
    let b = open_active(s, 801, d0 + 5).await;
    for day in [0u64, 2, 3] {
        let t = d0 + day * DAY;
        fund(s, b, 1000 + day, t + 1_000).await;
        let p = authorization(authorize(s, b, 100 + day, t + 2_000).await).id;
        exec(s, Op::Commit { authorization: p }, t + 3_000)
            .await
            .unwrap();
        fund(s, b, 700, t + DAY - 1).await;
    }
    let records = s.account_audit(b).await.unwrap();
    let edges = [
        0,
        d0,
        d0 + 1_500,
        d0 + DAY - 1,
        d0 + DAY,
        d0 + 2 * DAY,
        d0 + 2 * DAY + 2_500,
        d0 + 3 * DAY,
        d0 + 3 * DAY + 3_000,
        d0 + 4 * DAY,
        u64::MAX,
    ];
    for from in edges {
        for to in edges {
            let want = frank::ledger::audit::statement(b, &records, from, to);
            let got = frank::ledger::store::statement(s, b, from, to)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(got, want, "account {b:?}, period [{from}, {to})");
        }
    }
}

/// Each of `n` authorize→commit pairs is sent 1–5 times concurrently: exactly one effect each.
async fn duplicate_retries(s: Arc<dyn LedgerStore>) {
    let a = open_active(&*s, 900, T0).await;
    fund(&*s, a, 100_000, T0).await;
    let n = 40u64;
    let mut tasks = Vec::new();
    for i in 0..n {
        let copies = 1 + (i % 5);
        let req = Request::new(
            rid(),
            Op::Authorize {
                account: a,
                kind: 1,
                amount: c(100 + i),
                item: vec![i as u8; 10],
                terminal: None,
            },
        );
        for _ in 0..copies {
            let s = s.clone();
            let req = req.clone();
            tasks.push(tokio::spawn(async move {
                (req.id, s.execute(req, T0).await.unwrap())
            }));
        }
    }
    let mut by_request: std::collections::HashMap<RequestId, Vec<Reply>> = Default::default();
    for t in tasks {
        let (id, r) = t.await.unwrap();
        by_request.entry(id).or_default().push(r);
    }
    let mut pieces = Vec::new();
    for replies in by_request.values() {
        assert!(
            replies.windows(2).all(|w| w[0] == w[1]),
            "copies disagree: {replies:?}"
        );
        pieces.push(authorization(replies[0].clone()).id);
    }
    pieces.sort();
    pieces.dedup();
    assert_eq!(pieces.len() as u64, n);
    let acct = s.account(a).await.unwrap().unwrap();
    assert_eq!(acct.last_piece, PieceSerial(n));
    let reserved: u64 = (0..n).map(|i| 100 + i).sum();
    assert_eq!(acct.registers.pending, c(reserved));
    // Commit each 1–5 times concurrently.
    let mut tasks = Vec::new();
    for (i, p) in pieces.iter().enumerate() {
        let req = Request::new(rid(), Op::Commit { authorization: *p });
        for _ in 0..(1 + i % 5) {
            let s = s.clone();
            let req = req.clone();
            tasks.push(tokio::spawn(async move {
                s.execute(req, T0 + 1).await.unwrap()
            }));
        }
    }
    for t in tasks {
        assert!(matches!(t.await.unwrap(), Ok(Outcome::Committed { .. })));
    }
    let r = registers(&*s, a).await;
    assert_eq!(r.ascending, c(reserved));
    assert_eq!(r.pending, c(0));
    assert_eq!(r.descending, c(100_000 - reserved));
    verify_audit(&*s).await.expect("audit verifies");
}

/// Two terminals of one account race for more than its balance: exactly one wins, each round.
async fn double_spend(s: Arc<dyn LedgerStore>) {
    for round in 0..20u64 {
        let a = open_active(&*s, 1000 + round, T0).await;
        fund(&*s, a, 1000, T0).await;
        let mut tasks = Vec::new();
        for _ in 0..2 {
            let s = s.clone();
            tasks.push(tokio::spawn(
                async move { authorize(&*s, a, 600, T0).await },
            ));
        }
        let mut wins = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(Outcome::Authorized(_)) => wins += 1,
                Err(LedgerError::InsufficientFunds {
                    available,
                    requested,
                }) => {
                    assert_eq!((available, requested), (c(400), c(600)));
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(wins, 1, "round {round}");
        let r = registers(&*s, a).await;
        assert_eq!((r.descending, r.pending), (c(400), c(600)));
    }
}

/// Some activity, then the caller tampers with the row id returned; verify must name it.
async fn activity_for_tamper(s: &dyn LedgerStore) -> u64 {
    let a = open_active(s, 2000, T0).await;
    fund(s, a, 5000, T0).await;
    for _ in 0..5 {
        let p = authorization(authorize(s, a, 100, T0).await).id;
        exec(s, Op::Commit { authorization: p }, T0).await.unwrap();
    }
    verify_audit(s).await.expect("verifies before tampering");
    let (_, records) = s.audit_snapshot().await.unwrap();
    // A committed event in the middle of the chain.
    records[records.len() / 2].row_id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    suite(sqlite_store(&dir)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_conformance_with_the_key_in_a_token() {
    let dir = tempfile::tempdir().unwrap();
    suite(sqlite_store_with(&dir, token_signer())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_duplicate_retries_and_double_spend_with_the_key_in_a_token() {
    let signer = token_signer();
    let dir = tempfile::tempdir().unwrap();
    duplicate_retries(sqlite_store_with(&dir, signer.clone())).await;
    let dir = tempfile::tempdir().unwrap();
    double_spend(sqlite_store_with(&dir, signer)).await;
}

#[cfg(feature = "postgres")]
/// PostgreSQL signs on its batch writers' tasks; with the key in a token too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conformance_with_the_key_in_a_token() {
    let url = pg::database().await;
    let store = PostgresStore::connect(
        &url,
        PostgresConfig::default(),
        token_signer(),
        LedgerLimits::default(),
    )
    .await
    .unwrap();
    suite(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_conformance() {
    let (store, _) = postgres_store().await;
    suite(store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_duplicate_retries_have_one_effect() {
    let dir = tempfile::tempdir().unwrap();
    duplicate_retries(sqlite_store(&dir)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_duplicate_retries_have_one_effect() {
    duplicate_retries(postgres_store().await.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_double_spend_has_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    double_spend(sqlite_store(&dir)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_double_spend_has_one_winner() {
    double_spend(postgres_store().await.0).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_audit_verify_detects_a_tampered_row() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir);
    let row = activity_for_tamper(&*store).await;
    let conn = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
    conn.execute(
        "UPDATE audit SET body = replace(body, '\"amount\":100', '\"amount\":1') WHERE id = ?1",
        [row as i64],
    )
    .unwrap();
    let brk = verify_audit(&*store).await.unwrap_err();
    assert_eq!(brk.row_id, row);
    assert_eq!(brk.kind, BreakKind::HashMismatch);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_audit_verify_detects_a_truncated_chain() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir);
    activity_for_tamper(&*store).await;
    let conn = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
    conn.execute(
        "DELETE FROM audit WHERE id = (SELECT MAX(id) FROM audit)",
        [],
    )
    .unwrap();
    let brk = verify_audit(&*store).await.unwrap_err();
    assert!(
        matches!(brk.kind, BreakKind::HeadMismatch { .. }),
        "{brk:?}"
    );
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_audit_verify_detects_a_tampered_row() {
    let (store, url) = postgres_store().await;
    let row = activity_for_tamper(&*store).await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE audit SET body = replace(body, '\"amount\":100', '\"amount\":1') WHERE seq = $1",
            &[&(row as i64)],
        )
        .await
        .unwrap();
    let brk = verify_audit(&*store).await.unwrap_err();
    assert_eq!(brk.row_id, row);
    assert_eq!(brk.kind, BreakKind::HashMismatch);
}

#[test]
fn cli_audit_verify_reports_a_tampered_row() {
    use frank::ledger::cli::{AuditCommand, DatabaseArg, LedgerCommand, run};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = sqlite_at(&path);
        activity_for_tamper(&store).await;
    });
    let verify = || {
        run(LedgerCommand::Audit(AuditCommand::Verify {
            db: DatabaseArg {
                data: None,
                database: Some(path.to_string_lossy().into_owned()),
            },
        }))
    };
    verify().expect("a clean log verifies");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE audit SET hash = zeroblob(32) WHERE id = 3", [])
        .unwrap();
    let err = verify().unwrap_err().to_string();
    assert!(err.contains("row 3"), "{err}");
}

/// `frank vendor unlock ACCOUNT --supervisor NAME`: unlocks a locked account, names the
/// supervisor in the audit log, refuses an account that is not locked and an empty name.
#[test]
fn cli_unlock_unlocks_a_locked_account() {
    use frank::ledger::cli::{DatabaseArg, LedgerCommand, run};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let a = rt.block_on(async {
        let store = sqlite_at(&path);
        let a = open_active(&store, 5000, T0).await;
        let op = Op::PaymentReturned {
            account: a,
            payment: PaymentId("ach-9".into()),
        };
        exec(&store, op, T0).await.unwrap();
        a
    });
    let unlock = |who: &str| {
        run(LedgerCommand::Unlock {
            account: a.0,
            supervisor: who.into(),
            db: DatabaseArg {
                data: None,
                database: Some(path.to_string_lossy().into_owned()),
            },
        })
    };
    let err = unlock(" ").unwrap_err().to_string();
    assert!(err.contains("--supervisor"), "{err}");
    unlock("Pat Supervisor").expect("unlocks");
    let err = unlock("Pat Supervisor").unwrap_err().to_string();
    assert!(err.contains("is not locked"), "{err}");
    rt.block_on(async {
        let store = sqlite_at(&path);
        let acct = store.account(a).await.unwrap().unwrap();
        assert_eq!(acct.status, AccountStatus::Active);
        let last = store.account_audit(a).await.unwrap().pop().unwrap();
        assert!(last.body.contains("Pat Supervisor"), "{}", last.body);
        verify_audit(&store).await.expect("audit verifies");
    });
}

/// Refuses to sign items that start with `0xFF`; signs the rest like [`Ed25519Signer`].
struct PickySigner(Ed25519Signer);

impl ItemSigner for PickySigner {
    fn sign(&self, facts: &PieceFacts, item: &[u8]) -> Result<Vec<u8>, String> {
        if item.first() == Some(&0xFF) {
            return Err("item refused".into());
        }
        self.0.sign(facts, item)
    }
}

/// One group-commit batch of authorizations on one account, some refused by the signer: the
/// refused ones change nothing, the others get consecutive serials, and each signature covers
/// exactly the serial and registers its reservation left.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_batch_signs_after_deciding_and_a_refused_signature_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let picky = PickySigner(Ed25519Signer::new(7));
    let key = picky.0.verifying_key();
    let s: Arc<dyn LedgerStore> = Arc::new(
        SqliteStore::open(
            &dir.path().join("ledger.db"),
            SqliteConfig {
                // Wide window: the requests below land in one or a few batches.
                group_wait_us_max: 200_000,
                ..SqliteConfig::default()
            },
            Arc::new(picky),
            LedgerLimits::default(),
        )
        .unwrap(),
    );
    for refuse_some in [false, true] {
        let a = open_active(&*s, 3000 + u64::from(refuse_some), T0).await;
        fund(&*s, a, 100_000, T0).await;
        let mut tasks = Vec::new();
        for i in 0..64u8 {
            let s = s.clone();
            let first = if refuse_some && i % 7 == 3 { 0xFF } else { i };
            tasks.push(tokio::spawn(async move {
                let op = Op::Authorize {
                    account: a,
                    kind: 1,
                    amount: c(100 + u64::from(i)),
                    item: vec![first, i, 0xAB],
                    terminal: None,
                };
                (first, s.execute(Request::new(rid(), op), T0).await.unwrap())
            }));
        }
        let mut granted = Vec::new();
        for t in tasks {
            match t.await.unwrap() {
                (0xFF, reply) => assert!(
                    matches!(reply, Err(LedgerError::SignerFailed { .. })),
                    "{reply:?}"
                ),
                (_, reply) => granted.push(authorization(reply)),
            }
        }
        let expect = if refuse_some { 64 - 9 } else { 64 };
        assert_eq!(granted.len(), expect);
        let acct = s.account(a).await.unwrap().unwrap();
        assert_eq!(acct.last_piece, PieceSerial(expect as u64));
        let reserved: u64 = granted.iter().map(|g| g.amount.get()).sum();
        assert_eq!(acct.registers.pending, c(reserved));
        granted.sort_by_key(|g| g.id.serial);
        for (n, g) in granted.iter().enumerate() {
            assert_eq!(g.id.serial, PieceSerial(n as u64 + 1));
            let facts = verify_signed(&key, &g.signed);
            assert_eq!(facts.piece, g.id.serial);
            assert_eq!(facts.descending_after, g.registers.descending);
            let stored = s.piece(g.id).await.unwrap().unwrap();
            assert_eq!(
                stored.signed, g.signed,
                "stored piece carries the signature"
            );
        }
        // Serials were taken in order, so the registers the signatures carry only fall.
        assert!(
            granted
                .windows(2)
                .all(|w| w[1].registers.descending < w[0].registers.descending)
        );
    }
    verify_audit(&*s).await.expect("audit verifies");
}

/// Two stores on one SQLite file (a supervisor tool writing while the vendor serves): the
/// serving store's pipeline notices the other writer and decides its affected batches again,
/// so no update is lost and every request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_another_writer_on_the_same_file_loses_no_update() {
    let dir = tempfile::tempdir().unwrap();
    let open = || -> Arc<dyn LedgerStore> {
        Arc::new(
            SqliteStore::open(
                &dir.path().join("ledger.db"),
                SqliteConfig::default(),
                signer(),
                LedgerLimits::default(),
            )
            .unwrap(),
        )
    };
    let serving = open();
    let other = open();
    let a = open_active(&*serving, 4000, T0).await;
    fund(&*serving, a, 1_000_000, T0).await;
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = serving.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..30 {
                let p = authorization(authorize(&*s, a, 100, T0).await).id;
                let r = exec(&*s, Op::Commit { authorization: p }, T0).await;
                assert!(matches!(r, Ok(Outcome::Committed { .. })), "{r:?}");
            }
        }));
    }
    let o = other.clone();
    tasks.push(tokio::spawn(async move {
        for _ in 0..20 {
            fund(&*o, a, 1000, T0).await;
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    }));
    for t in tasks {
        t.await.unwrap();
    }
    let acct = serving.account(a).await.unwrap().unwrap();
    assert_eq!(acct.last_piece, PieceSerial(240));
    assert_eq!(acct.registers.control, c(1_000_000 + 20 * 1000));
    assert_eq!(acct.registers.ascending, c(240 * 100));
    assert_eq!(acct.registers.pending, c(0));
    verify_audit(&*serving).await.expect("audit verifies");
}

/// Authorizes once and retries the same request: the retry replays the first authorization
/// byte for byte (signed item included). Returns the request and that authorization.
async fn authorize_and_replay(s: &dyn LedgerStore, license: u64) -> (Request, Authorization) {
    let a = open_active(s, license, T0).await;
    fund(s, a, 10_000, T0).await;
    let req = Request::new(
        rid(),
        Op::Authorize {
            account: a,
            kind: 1,
            amount: c(250),
            item: b"replay me".to_vec(),
            terminal: None,
        },
    );
    let first = authorization(s.execute(req.clone(), T0).await.unwrap());
    assert!(!first.signed.is_empty());
    let again = authorization(s.execute(req.clone(), T0 + 5).await.unwrap());
    assert_eq!(again, first);
    (req, first)
}

/// The idempotency record as stored does not hold the authorization's signature.
fn assert_signature_not_in(stored: &str, first: &Authorization) {
    let sig_hex = hex::encode(&first.signed[first.signed.len() - 64..]);
    assert!(
        !stored.contains(&sig_hex),
        "signature stored twice: {stored}"
    );
}

/// SQLite keeps an authorization's signed item once (in its piece): the idempotency record
/// leaves it out and a replay puts it back, byte for byte.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_replayed_authorization_carries_its_signature_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let s = sqlite_store(&dir);
    let (req, first) = authorize_and_replay(&*s, 6000).await;
    let conn = rusqlite::Connection::open(dir.path().join("ledger.db")).unwrap();
    let stored: String = conn
        .query_row(
            "SELECT reply FROM idempotency WHERE request_id = ?1",
            [&req.id.to_bytes()[..]],
            |r| r.get(0),
        )
        .unwrap();
    assert_signature_not_in(&stored, &first);
}

/// Two stores on one SQLite file (two vendor processes, say). Each decider keeps the rows it
/// wrote as a cache; when the other store spends the balance meanwhile, the committer sees
/// the file changed and decides again from the database: the second reservation is refused
/// with the real balance, and registers and audit chains stay exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_two_stores_on_one_file_never_spend_twice() {
    let dir = tempfile::tempdir().unwrap();
    let a_store = sqlite_store(&dir);
    let b_store = sqlite_store(&dir);
    let a = open_active(&*a_store, 7100, T0).await;
    fund(&*a_store, a, 1000, T0).await;
    // A reserves 100: its decider now holds the account (descending 900) in its cache.
    authorization(authorize(&*a_store, a, 100, T0 + 1).await);
    // B, knowing nothing of A's cache, reserves 800 (descending 100).
    authorization(authorize(&*b_store, a, 800, T0 + 2).await);
    // A's cached row says 900; the database says 100.
    assert_eq!(
        authorize(&*a_store, a, 200, T0 + 3).await,
        Err(LedgerError::InsufficientFunds {
            available: c(100),
            requested: c(200),
        })
    );
    // And what A does next starts from the database's row.
    let third = authorization(authorize(&*a_store, a, 50, T0 + 4).await);
    assert_eq!(third.registers.descending, c(50));
    for s in [&a_store, &b_store] {
        let r = registers(&**s, a).await;
        assert_eq!(r.descending, c(50));
        assert_eq!(r.pending, c(950));
        assert_eq!(r.control, c(1000));
        verify_audit(&**s).await.expect("audit verifies");
    }
}

/// Under load that never pauses, a checkpoint beside the commits never catches up with the
/// last commit, and SQLite starts the WAL over only when one has: the WAL used to grow without
/// bound (1.2 GB in 15 s of the benchmark). With `wal_frames_max` the committer finishes the
/// checkpoint between two batches and the WAL starts over, so its file stays small while many
/// times its size is written through it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_wal_stays_bounded_under_sustained_load() {
    const CLIENTS: u64 = 32;
    const PAIRS_PER_CLIENT: u64 = 250;
    /// 256 frames of 4 KiB: the WAL file may hold a little more (the frames committed until
    /// the next checkpoint pass notices), never the tens of MB the load writes.
    const WAL_FRAMES_MAX: u64 = 256;
    const WAL_FILE_BYTES_MAX: u64 = 8 << 20;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let s: Arc<dyn LedgerStore> = Arc::new(sqlite_with(
        &path,
        SqliteConfig {
            checkpoint_interval_ms: 10,
            wal_frames_max: WAL_FRAMES_MAX,
            ..SqliteConfig::default()
        },
    ));
    let wal = dir.path().join("ledger.db-wal");
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (wal, done) = (wal.clone(), done.clone());
        std::thread::spawn(move || {
            let mut largest = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let size = std::fs::metadata(&wal).map(|m| m.len()).unwrap_or(0);
                largest = largest.max(size);
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            largest
        })
    };
    let mut tasks = Vec::new();
    for i in 0..CLIENTS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let a = open_active(&*s, 8000 + i, T0).await;
            fund(&*s, a, 100_000, T0).await;
            for _ in 0..PAIRS_PER_CLIENT {
                authorize_and_commit(&*s, a, 1, T0).await;
            }
            a
        }));
    }
    let mut accounts = Vec::new();
    for t in tasks {
        accounts.push(t.await.unwrap());
    }
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let largest = sampler.join().unwrap();
    for a in accounts {
        let r = registers(&*s, a).await;
        assert_eq!(r.ascending, c(PAIRS_PER_CLIENT));
        assert_eq!(r.pending, c(0));
    }
    verify_audit(&*s).await.expect("audit verifies");
    // What went through the WAL: at least one page per batch, and the audit and idempotency
    // rows alone fill more than 1 KB per pair; the database file holds it all now.
    let db_bytes = std::fs::metadata(&path).unwrap().len();
    eprintln!("largest WAL file {largest} bytes; database {db_bytes} bytes");
    assert!(
        db_bytes > WAL_FILE_BYTES_MAX,
        "the load must write more than the WAL may hold: database {db_bytes} bytes"
    );
    assert!(
        largest <= WAL_FILE_BYTES_MAX,
        "WAL file reached {largest} bytes (bound {WAL_FILE_BYTES_MAX}); database {db_bytes} bytes"
    );
}

/// Group commit groups: concurrent requests share transactions (one WAL fsync each), and every
/// one of them is acknowledged by exactly one; `group_requests_max = 1` gives each request a
/// transaction of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_group_commit_shares_each_transaction() {
    const CLIENTS: u64 = 64;
    const PAIRS_PER_CLIENT: u64 = 20;
    for group_requests_max in [512, 1] {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(sqlite_with(
            &dir.path().join("ledger.db"),
            SqliteConfig {
                group_requests_max,
                ..SqliteConfig::default()
            },
        ));
        let s: Arc<dyn LedgerStore> = store.clone();
        let mut accounts = Vec::new();
        for i in 0..CLIENTS {
            let a = open_active(&*s, 9000 + i, T0).await;
            fund(&*s, a, 100_000, T0).await;
            accounts.push(a);
        }
        let before = store.commit_counts();
        let mut tasks = Vec::new();
        for a in accounts {
            let s = s.clone();
            tasks.push(tokio::spawn(async move {
                for _ in 0..PAIRS_PER_CLIENT {
                    authorize_and_commit(&*s, a, 1, T0).await;
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let after = store.commit_counts();
        let requests = after.requests - before.requests;
        let batches = after.batches - before.batches;
        eprintln!(
            "group_requests_max {group_requests_max}: {requests} requests in {batches} transactions"
        );
        assert_eq!(
            requests,
            CLIENTS * PAIRS_PER_CLIENT * 2,
            "each request committed once"
        );
        if group_requests_max == 1 {
            assert_eq!(batches, requests, "one transaction per request");
        } else {
            // 64 requests are outstanding all the time; a pipeline that commits them one by
            // one (or nearly) is not grouping.
            assert!(
                batches * 4 <= requests,
                "{requests} requests in {batches} transactions: group commit did not group"
            );
        }
        verify_audit(&*s).await.expect("audit verifies");
    }
}

/// A supervisor decides refund requests with the `frank vendor` binary: `refunds pending`
/// lists what awaits a decision (oldest first), `refunds show` tells the state, `approve` credits the account once (a second decision is refused and changes
/// nothing), `reject` leaves the registers alone; `registers` and `statement` show the result.
#[test]
fn cli_supervisor_decides_refunds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (a, p1, p2) = rt.block_on(async {
        let store = sqlite_at(&path);
        let a = open_active(&store, 5200, T0).await;
        fund(&store, a, 2000, T0).await;
        let mut pieces = Vec::new();
        for _ in 0..2 {
            let p = authorization(authorize(&store, a, 300, T0).await).id;
            let r = exec(
                &store,
                Op::Void {
                    authorization: p,
                    reached_printer: true,
                    terminal: None,
                },
                T0 + 1,
            )
            .await;
            assert!(matches!(r, Ok(Outcome::RefundRequested { .. })), "{r:?}");
            pieces.push(p);
        }
        (a, pieces[0], pieces[1])
    });
    let frank = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_frank"))
            .arg("vendor")
            .args(args)
            .arg("--database")
            .arg(&path)
            .env_remove("RUST_BACKTRACE")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (p1s, p2s) = (p1.to_string(), p2.to_string());
    let (ok, out, err) = frank(&["refunds", "pending"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(
        lines[0].starts_with(&format!("piece {p1s}: $3.00")),
        "{out}"
    );
    assert!(
        lines[1].starts_with(&format!("piece {p2s}: $3.00")),
        "{out}"
    );
    let (ok, out, _) = frank(&["refunds", "pending", "--limit", "1"]);
    assert!(ok && out.lines().count() == 2, "{out}");
    assert!(out.contains("the 1 oldest shown"), "{out}");
    let (ok, out, _) = frank(&["refunds", "show", &p1s]);
    assert!(
        ok && out.contains("$3.00") && out.contains("awaiting a decision"),
        "{out}"
    );
    let (ok, out, err) = frank(&["refunds", "approve", &p1s]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("refund for piece {p1s} approved")),
        "{out}"
    );
    assert!(out.contains("available $17.00"), "{out}");
    assert!(out.contains("approved: refunded"), "{out}");
    // Decided once: a second approval is refused and credits nothing.
    let (ok, _, err) = frank(&["refunds", "approve", &p1s]);
    assert!(!ok, "a second decision must be refused");
    assert!(err.contains(&p1s), "{err}");
    let (ok, out, err) = frank(&["refunds", "reject", &p2s]);
    assert!(ok, "{err}");
    assert!(
        out.contains("rejected") && out.contains("available $17.00"),
        "{out}"
    );
    let (ok, out, _) = frank(&["refunds", "pending"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "no refund requests awaiting a decision");
    let (ok, out, _) = frank(&["registers", &a.0.to_string()]);
    assert!(ok, "{out}");
    for want in [
        "descending $17.00",
        "ascending $6.00",
        "control $23.00",
        "license ",
    ] {
        assert!(out.contains(want), "{want:?} not in {out}");
    }
    assert!(!out.contains("Some("), "{out}");
    let (ok, out, _) = frank(&["statement", &a.0.to_string()]);
    assert!(ok, "{out}");
    for want in [
        "all history",
        "printed          −          $6.00  (2 items)",
        "refunded         +          $3.00",
    ] {
        assert!(out.contains(want), "{want:?} not in\n{out}");
    }
    rt.block_on(async {
        let store = sqlite_at(&path);
        verify_audit(&store).await.expect("audit verifies");
    });
}

/// `frank vendor payments open` lists what the reaper has yet to settle, with the request id
/// the processor knows the charge by, and nothing once it is settled.
#[test]
fn cli_lists_open_payment_intents() {
    use frank::ledger::cli::{
        DatabaseArg, LedgerCommand, PaymentsCommand, open_intents_report, run,
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let list = || {
        run(LedgerCommand::Payments(PaymentsCommand::Open {
            limit: 10,
            db: DatabaseArg {
                data: None,
                database: Some(path.to_string_lossy().into_owned()),
            },
        }))
    };
    let intent = rt.block_on(async {
        let store = sqlite_at(&path);
        let a = open_active(&store, 5100, T0).await;
        let intent = PaymentIntent {
            request: RequestId(0xFEED),
            account: a,
            amount: c(2_500),
            method: card_summary(),
            started_at_ms: T0,
        };
        store.record_intent(intent.clone()).await.unwrap();
        let open = store.open_intents(u64::MAX, 10).await.unwrap();
        assert_eq!(open, vec![intent.clone()]);
        let lines = open_intents_report(&open, T0 + 90_000);
        assert_eq!(lines.len(), 1);
        let line = &lines[0];
        for want in [
            "request 0000000000000000000000000000feed",
            &format!("account {}", a.0),
            "$25.00",
            "card ending 4242",
            "open for 90 s",
        ] {
            assert!(line.contains(want), "{want:?} missing from {line:?}");
        }
        intent
    });
    list().expect("lists");
    rt.block_on(async {
        let store = sqlite_at(&path);
        store
            .resolve_intent(intent.request, IntentResolution::NotCharged, T0 + 1)
            .await
            .unwrap();
        let open = store.open_intents(u64::MAX, 10).await.unwrap();
        assert_eq!(
            open_intents_report(&open, T0),
            vec!["no open payment intents"]
        );
    });
    list().expect("lists");
}

/// Issue 13: the reaper locks accounts before pieces like every request. Reaping while the
/// same account's pieces are voided ends each piece once, and no transaction fails (a store
/// error, such as giving up on contention, panics in `exec`).
async fn reaper_races_voids(store: Arc<dyn LedgerStore>) {
    const PIECES: usize = 16;
    const REAPERS: usize = 4;
    let s = &*store;
    let t1 = Some(TerminalId(1));
    let a = open_active(s, 401, T0).await;
    fund(s, a, 10_000, T0).await;
    let mut pieces = Vec::new();
    for _ in 0..PIECES {
        pieces.push(authorize_by(s, a, 100, T0, t1).await.id);
    }
    let late = piece(s, pieces[0]).await.expires_at_ms;
    let mut tasks = tokio::task::JoinSet::new();
    for (i, id) in pieces.iter().enumerate() {
        let (voider, id) = (store.clone(), *id);
        tasks.spawn(async move { exec(&*voider, void_op(id, false, t1), late + i as u64).await });
        if i % (PIECES / REAPERS) == 0 {
            let store = store.clone();
            tasks.spawn(async move {
                exec(&*store, Op::ExpireDue { max: 1000 }, late + i as u64).await
            });
        }
    }
    while let Some(reply) = tasks.join_next().await {
        let _ = reply.unwrap();
    }
    for id in pieces {
        let state = piece(s, id).await.state;
        assert!(
            matches!(state, PieceState::Voided | PieceState::Unsettled),
            "{id:?}: {state:?}"
        );
    }
    registers(s, a).await.check().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_reaper_races_voids() {
    let dir = tempfile::tempdir().unwrap();
    reaper_races_voids(sqlite_store(&dir)).await;
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_reaper_races_voids_in_one_lock_order() {
    // One attempt per request: with one lock order nothing needs a retry, and a deadlock
    // (SQLSTATE 40P01, the reaper once locked pieces before accounts) fails the test.
    let url = pg::database().await;
    let config = PostgresConfig {
        serialization_retries_max: 1,
        ..PostgresConfig::default()
    };
    let store = PostgresStore::connect(&url, config, signer(), LedgerLimits::default())
        .await
        .unwrap();
    reaper_races_voids(Arc::new(store)).await;
}

#[cfg(feature = "postgres")]
/// Two vendor fronts on one PostgreSQL license meters at once: every meter gets one license,
/// whichever front asked and however often, and no two meters share one. Issue 14, item 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_licenses_from_two_fronts_are_distinct_issue_14() {
    use frank::ledger::licensing::LicensingAuthority;
    use frank::ledger::postgres::PostgresLicensing;
    let (_store, url) = postgres_store().await;
    let a = Arc::new(PostgresLicensing::new(&url, u64::from(u32::MAX)));
    let b = Arc::new(PostgresLicensing::new(&url, u64::from(u32::MAX)));
    let mut tasks = Vec::new();
    for n in 1..=24u64 {
        for front in [a.clone(), b.clone(), a.clone()] {
            tasks.push(tokio::spawn(async move {
                let meter = MeterSerial::for_account(AccountId(n));
                (n, front.issue(meter).await.unwrap())
            }));
        }
    }
    let mut by_meter: std::collections::BTreeMap<u64, LicenseId> = Default::default();
    for t in tasks {
        let (n, license) = t.await.unwrap();
        let first = *by_meter.entry(n).or_insert(license);
        assert_eq!(first, license, "meter {n} got two licenses");
    }
    let distinct: std::collections::BTreeSet<LicenseId> = by_meter.values().copied().collect();
    assert_eq!(distinct.len(), 24, "{by_meter:?}");
    // A front that starts later continues the one numbering.
    let c = PostgresLicensing::new(&url, u64::from(u32::MAX));
    let next = c
        .issue(MeterSerial::for_account(AccountId(99)))
        .await
        .unwrap();
    assert!(!distinct.contains(&next));
    // The bound holds.
    let tight = PostgresLicensing::new(&url, 1);
    assert!(
        tight
            .issue(MeterSerial::for_account(AccountId(100)))
            .await
            .is_err()
    );
}

#[cfg(feature = "postgres")]
/// One reaper at a time on PostgreSQL: while another front's pass holds the reaper lock, a
/// pass does nothing; once it is free, the due piece expires. Issue 14, item 2.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_one_reaper_at_a_time_issue_14() {
    use frank::ledger::postgres::REAPER_LOCK_KEY;
    let (store, url) = postgres_store().await;
    let s = &*store;
    let a = open_active(s, 402, T0).await;
    fund(s, a, 10_000, T0).await;
    let id = authorize_by(s, a, 100, T0, Some(TerminalId(1))).await.id;
    let late = piece(s, id).await.expires_at_ms + 1;
    let (other, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    other
        .execute("SELECT pg_advisory_lock($1)", &[&REAPER_LOCK_KEY])
        .await
        .unwrap();
    let busy = exec(s, Op::ExpireDue { max: 10 }, late).await.unwrap();
    assert!(
        matches!(&busy, Outcome::Expired { ids } if ids.is_empty()),
        "{busy:?}"
    );
    assert_eq!(piece(s, id).await.state, PieceState::Reserved);
    other
        .execute("SELECT pg_advisory_unlock($1)", &[&REAPER_LOCK_KEY])
        .await
        .unwrap();
    let done = exec(s, Op::ExpireDue { max: 10 }, late).await.unwrap();
    assert!(
        matches!(&done, Outcome::Expired { ids } if ids == &vec![id]),
        "{done:?}"
    );
}

#[cfg(feature = "postgres")]
/// PostgreSQL stores an authorization's reply without its signed item (the piece row holds
/// it once); a retry, through the batch writers or the one-transaction path, and the
/// idempotency record both carry it whole. Issue 14 (the batch writers' write volume).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_replayed_authorization_carries_its_signature_stored_once() {
    let (s, url) = postgres_store().await;
    let (req, first) = authorize_and_replay(&*s, 6001).await;
    let record = s.idempotency_record(req.id).await.unwrap().unwrap();
    assert_eq!(authorization(record.reply), first);
    // The one-transaction path replays it whole too.
    let naive = PostgresStore::connect(
        &url,
        PostgresConfig {
            batch_writers: 0,
            ..PostgresConfig::default()
        },
        signer(),
        LedgerLimits::default(),
    )
    .await
    .unwrap();
    let third = authorization(naive.execute(req.clone(), T0 + 6).await.unwrap());
    assert_eq!(third, first);
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let stored: String = client
        .query_one(
            "SELECT reply FROM idempotency WHERE request_id = $1",
            &[&&req.id.to_bytes()[..]],
        )
        .await
        .unwrap()
        .get(0);
    assert_signature_not_in(&stored, &first);
}
