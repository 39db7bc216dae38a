//! Helpers shared by the ledger tests: a real Ed25519 item signer and request shorthands.

#![allow(dead_code)]

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use frank::ledger::ops::{External, Op, Request};
use frank::ledger::*;
use frank::money::Cents;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Signs `canonical(facts) ‖ item` with Ed25519; the signed bytes are `message ‖ signature`.
pub struct Ed25519Signer {
    key: SigningKey,
}

impl Ed25519Signer {
    pub fn new(seed: u8) -> Ed25519Signer {
        Ed25519Signer {
            key: SigningKey::from_bytes(&[seed; 32]),
        }
    }
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }
}

pub fn message(facts: &PieceFacts, item: &[u8]) -> Vec<u8> {
    let mut m = serde_json::to_vec(facts).expect("facts encode");
    m.push(0);
    m.extend_from_slice(item);
    m
}

impl ItemSigner for Ed25519Signer {
    fn sign(&self, facts: &PieceFacts, item: &[u8]) -> Result<Vec<u8>, String> {
        let mut m = message(facts, item);
        let sig = self.key.sign(&m);
        m.extend_from_slice(&sig.to_bytes());
        Ok(m)
    }
}

/// Checks signed bytes and returns the facts they carry.
pub fn verify_signed(key: &VerifyingKey, signed: &[u8]) -> PieceFacts {
    assert!(signed.len() > 64, "signed item too short");
    let (m, sig) = signed.split_at(signed.len() - 64);
    let sig = Signature::from_bytes(sig.try_into().unwrap());
    key.verify(m, &sig).expect("signature verifies");
    let end = m.iter().position(|b| *b == 0).unwrap();
    serde_json::from_slice(&m[..end]).unwrap()
}

pub fn signer() -> Arc<dyn ItemSigner> {
    Arc::new(Ed25519Signer::new(7))
}

static NEXT: AtomicU64 = AtomicU64::new(1);

/// A SQLite store at `path` with the default configuration, signing with [`signer`].
pub fn sqlite_at(path: &std::path::Path) -> frank::ledger::sqlite::SqliteStore {
    sqlite_with(path, frank::ledger::sqlite::SqliteConfig::default())
}

/// A SQLite store at `path` with `config`, signing with [`signer`].
pub fn sqlite_with(
    path: &std::path::Path,
    config: frank::ledger::sqlite::SqliteConfig,
) -> frank::ledger::sqlite::SqliteStore {
    frank::ledger::sqlite::SqliteStore::open(path, config, signer(), LedgerLimits::default())
        .unwrap()
}

/// A fresh request id (unique within the process).
pub fn rid() -> RequestId {
    RequestId(
        (u128::from(std::process::id()) << 64) | u128::from(NEXT.fetch_add(1, Ordering::SeqCst)),
    )
}

pub fn c(cents: u64) -> Cents {
    Cents::new(cents).unwrap()
}

pub async fn exec(store: &dyn LedgerStore, op: Op, now_ms: u64) -> Reply {
    store
        .execute(Request::new(rid(), op), now_ms)
        .await
        .expect("store works")
}

/// Opens an account with a license granted and returns its id.
pub async fn open_active(store: &dyn LedgerStore, license: u64, now_ms: u64) -> AccountId {
    let req = Request {
        id: rid(),
        op: Op::OpenAccount,
        external: External::License(Ok(LicenseId(license))),
    };
    match store.execute(req, now_ms).await.unwrap() {
        Ok(Outcome::Opened {
            account,
            status: AccountStatus::Active,
            ..
        }) => account,
        other => panic!("open failed: {other:?}"),
    }
}

pub fn card_summary() -> MethodSummary {
    MethodSummary::Card {
        last4: "4242".into(),
        exp_month: 12,
        exp_year: 2030,
    }
}

/// Funds through an approved (already charged) payment.
pub fn fund_request(account: AccountId, amount: u64, payment: &str) -> Request {
    Request {
        id: rid(),
        op: Op::Fund {
            account,
            amount: c(amount),
            method: card_summary(),
        },
        external: External::Payment(Ok(PaymentReceipt {
            id: PaymentId(payment.into()),
            amount: c(amount),
        })),
    }
}

pub async fn fund(
    store: &dyn LedgerStore,
    account: AccountId,
    amount: u64,
    now_ms: u64,
) -> Registers {
    match store
        .execute(
            fund_request(account, amount, &format!("p{}", rid().0)),
            now_ms,
        )
        .await
        .unwrap()
    {
        Ok(Outcome::Funded { registers, .. }) => registers,
        other => panic!("fund failed: {other:?}"),
    }
}

pub async fn authorize(
    store: &dyn LedgerStore,
    account: AccountId,
    amount: u64,
    now_ms: u64,
) -> Reply {
    exec(
        store,
        Op::Authorize {
            account,
            kind: 1,
            amount: c(amount),
            item: vec![0xAB; 100],
            terminal: None,
        },
        now_ms,
    )
    .await
}

/// Authorizes `amount` on `account` and commits it (the item printed); returns the piece.
pub async fn authorize_and_commit(
    store: &dyn LedgerStore,
    account: AccountId,
    amount: u64,
    now_ms: u64,
) -> PieceId {
    let id = authorization(authorize(store, account, amount, now_ms).await).id;
    let reply = exec(store, Op::Commit { authorization: id }, now_ms).await;
    assert!(matches!(reply, Ok(Outcome::Committed { .. })), "{reply:?}");
    id
}

pub fn authorization(reply: Reply) -> Authorization {
    match reply {
        Ok(Outcome::Authorized(a)) => a,
        other => panic!("expected an authorization, got {other:?}"),
    }
}

pub async fn registers(store: &dyn LedgerStore, account: AccountId) -> Registers {
    store.account(account).await.unwrap().unwrap().registers
}

/// Authorizes `amount` on `account` for `terminal` (recorded on the piece).
pub async fn authorize_by(
    store: &dyn LedgerStore,
    account: AccountId,
    amount: u64,
    now_ms: u64,
    terminal: Option<TerminalId>,
) -> Authorization {
    let op = Op::Authorize {
        account,
        kind: 1,
        amount: c(amount),
        item: vec![0xAB; 100],
        terminal,
    };
    authorization(exec(store, op, now_ms).await)
}

/// A void as `terminal` reports it.
pub fn void_op(piece: PieceId, reached_printer: bool, terminal: Option<TerminalId>) -> Op {
    Op::Void {
        authorization: piece,
        reached_printer,
        terminal,
    }
}
