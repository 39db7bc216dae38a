//! One conformance suite for the vendor's directory, run on both backends: SQLite (a
//! `vendor.db` file) and PostgreSQL (a throwaway server the tests start). Each scenario opens
//! its connections through [`Backend::open`]; a second `open` is a second process — the admin
//! CLI, or another vendor front on the same database.

#[cfg(feature = "postgres")]
#[path = "support/postgres.rs"]
mod pg;

use frank::vendor_server::directory::*;
use frank::vendor_server::lockout;
use std::sync::{Arc, Barrier};

enum Backend {
    Sqlite(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Postgres(String),
}

impl Backend {
    fn sqlite() -> Backend {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    #[cfg(feature = "postgres")]
    fn postgres() -> Backend {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        Backend::Postgres(rt.block_on(pg::database()))
    }

    /// A new connection to the same directory.
    fn open(&self) -> Directory {
        match self {
            Backend::Sqlite(t) => Directory::open(&t.path().join("vendor.db")).unwrap(),
            #[cfg(feature = "postgres")]
            Backend::Postgres(url) => Directory::open_postgres(url).unwrap(),
        }
    }
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[test] fn $name() { super::$name(&super::Backend::sqlite()) })*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(#[test] fn $name() { super::$name(&super::Backend::postgres()) })*
        }
    };
}

on_both!(
    migrations_are_versioned_and_idempotent,
    enrollment_needs_the_code_and_is_idempotent_per_key,
    codes_expire_run_out_and_rotate,
    another_accounts_key_and_revoked_keys_look_like_a_bad_code,
    revocations_are_seen_when_another_connection_commits,
    clerks_hash_passwords_and_reject_bad_names,
    attempts_count_before_the_check_and_lock_at_the_fifth,
    two_fronts_share_one_directory_issue_14,
    two_fronts_racing_for_a_codes_last_use_enroll_one_terminal_issue_14,
    two_fronts_counting_one_clerks_failures_both_count_issue_14,
    failures_of_unknown_names_are_bounded_per_terminal_issue_19,
);

fn migrations_are_versioned_and_idempotent(b: &Backend) {
    let v = b.open().schema_version().unwrap();
    assert!(v > 0);
    assert_eq!(
        b.open().schema_version().unwrap(),
        v,
        "reopening migrates nothing"
    );
}

fn enrollment_needs_the_code_and_is_idempotent_per_key(b: &Backend) {
    let mut d = b.open();
    let (acct, code) = d.add_account("Main St", 1).unwrap();
    assert_eq!(
        d.enroll("nope", "t", [1; 32], 2).unwrap(),
        EnrollOutcome::BadCode
    );
    let EnrollOutcome::Enrolled(t1) = d.enroll(&code, "t", [1; 32], 2).unwrap() else {
        panic!()
    };
    assert_eq!(t1.account_id, acct.id);
    let EnrollOutcome::Enrolled(again) = d.enroll(&code, "t", [1; 32], 3).unwrap() else {
        panic!()
    };
    assert_eq!(again.id, t1.id);
    assert_eq!(d.terminal(t1.id).unwrap().unwrap().device_key, [1; 32]);
    // The first code enrolls one terminal.
    assert_eq!(
        d.enroll(&code, "t2", [2; 32], 4).unwrap(),
        EnrollOutcome::BadCode
    );
}

fn codes_expire_run_out_and_rotate(b: &Backend) {
    let mut d = b.open();
    let (acct, first) = d.add_account("Main St", 1).unwrap();
    let policy = CodePolicy {
        uses: 2,
        valid_ms: 1_000,
    };
    let issued = d.rotate_enrollment_code(acct.id, policy, 10).unwrap();
    assert_eq!((issued.uses, issued.expires_ms), (2, 1_010));
    // Rotation ends the earlier code.
    assert_eq!(
        d.enroll(&first, "a", [1; 32], 11).unwrap(),
        EnrollOutcome::BadCode
    );
    assert!(matches!(
        d.enroll(&issued.code, "a", [1; 32], 11).unwrap(),
        EnrollOutcome::Enrolled(_)
    ));
    // Expired: no new terminal, but the enrolled key's retry still learns its terminal.
    assert_eq!(
        d.enroll(&issued.code, "b", [2; 32], 1_010).unwrap(),
        EnrollOutcome::BadCode
    );
    assert!(matches!(
        d.enroll(&issued.code, "a", [1; 32], 5_000).unwrap(),
        EnrollOutcome::Enrolled(_)
    ));
    let again = d.rotate_enrollment_code(acct.id, policy, 20).unwrap();
    assert!(matches!(
        d.enroll(&again.code, "b", [2; 32], 21).unwrap(),
        EnrollOutcome::Enrolled(_)
    ));
    assert!(matches!(
        d.enroll(&again.code, "c", [3; 32], 22).unwrap(),
        EnrollOutcome::Enrolled(_)
    ));
    assert_eq!(
        d.enroll(&again.code, "d", [4; 32], 23).unwrap(),
        EnrollOutcome::BadCode,
        "two uses"
    );
    assert!(
        d.rotate_enrollment_code(
            acct.id,
            CodePolicy {
                uses: 0,
                valid_ms: 1
            },
            1
        )
        .is_err()
    );
    assert!(d.rotate_enrollment_code(99, policy, 1).is_err());
}

fn another_accounts_key_and_revoked_keys_look_like_a_bad_code(b: &Backend) {
    let mut d = b.open();
    let (a, code_a) = d.add_account("A", 1).unwrap();
    let (_b, code_b) = d.add_account("B", 1).unwrap();
    let EnrollOutcome::Enrolled(t) = d.enroll(&code_a, "t", [7; 32], 2).unwrap() else {
        panic!()
    };
    assert_eq!(t.account_id, a.id);
    assert_eq!(
        d.enroll(&code_b, "t", [7; 32], 3).unwrap(),
        EnrollOutcome::BadCode
    );
    assert!(d.revoke_terminal(t.id, 4).unwrap());
    assert!(!d.revoke_terminal(999, 4).unwrap());
    assert_eq!(d.terminal(t.id).unwrap().unwrap().revoked_ms, Some(4));
    let fresh = d
        .rotate_enrollment_code(a.id, CodePolicy::default(), 5)
        .unwrap();
    assert_eq!(
        d.enroll(&fresh.code, "t", [7; 32], 6).unwrap(),
        EnrollOutcome::BadCode
    );
}

fn revocations_are_seen_when_another_connection_commits(b: &Backend) {
    let mut front = b.open();
    let (acct, code) = front.add_account("A", 1).unwrap();
    front
        .add_clerk(acct.id, "alice", "correct horse", false, 1)
        .unwrap();
    let EnrollOutcome::Enrolled(term) = front.enroll(&code, "t", [1; 32], 2).unwrap() else {
        panic!()
    };
    assert_eq!(
        front.revocations_if_changed().unwrap(),
        Some(Revocations::default())
    );
    assert_eq!(front.revocations_if_changed().unwrap(), None);
    let mut cli = b.open();
    assert!(cli.revoke_terminal(term.id, 3).unwrap());
    assert!(cli.disable_clerk("alice", 3).unwrap());
    assert!(!cli.disable_clerk("nobody", 3).unwrap());
    let r = front.revocations_if_changed().unwrap().unwrap();
    assert!(r.terminals.contains(&term.id));
    assert!(r.clerks.contains("alice"));
    assert_eq!(front.clerk("alice").unwrap().unwrap().disabled_ms, Some(3));
}

fn clerks_hash_passwords_and_reject_bad_names(b: &Backend) {
    let mut d = b.open();
    let (acct, _) = d.add_account("A", 1).unwrap();
    let c = d
        .add_clerk(acct.id, "alice", "correct horse", false, 1)
        .unwrap();
    assert!(c.password_hash.starts_with("$argon2id$"));
    assert!(!format!("{c:?}").contains("argon2"));
    assert!(verify_password("correct horse", &c.password_hash));
    assert!(!verify_password("wrong horse", &c.password_hash));
    // `$argon2id$v=19$m=…,t=…,p=…$SALT$HASH`: a 16-byte salt (22 B64 characters), fresh per hash.
    let salt = |hash: &str| hash.split('$').nth(4).unwrap().to_string();
    assert_eq!(salt(&c.password_hash).len(), 22, "{}", c.password_hash);
    let same_password = d
        .add_clerk(acct.id, "dave", "correct horse", false, 1)
        .unwrap();
    assert_ne!(salt(&same_password.password_hash), salt(&c.password_hash));
    assert!(verify_password(
        "correct horse",
        &same_password.password_hash
    ));
    assert!(
        d.add_clerk(acct.id, "alice", "correct horse", false, 1)
            .unwrap_err()
            .to_string()
            .contains("already exists")
    );
    assert!(
        d.add_clerk(acct.id, "bad name", "correct horse", false, 1)
            .is_err()
    );
    assert!(
        d.add_clerk(acct.id, "bob", "short", false, 1)
            .unwrap_err()
            .to_string()
            .contains("at least")
    );
    assert!(
        d.add_clerk(99, "carol", "correct horse", false, 1)
            .unwrap_err()
            .to_string()
            .contains("no account")
    );
}

fn attempts_count_before_the_check_and_lock_at_the_fifth(b: &Backend) {
    let mut d = b.open();
    for i in 1..=4 {
        assert_eq!(
            d.begin_attempt("alice", 1, 1000).unwrap(),
            lockout::Attempt::Counted {
                failures: i,
                locked_until_ms: None
            }
        );
    }
    let fifth = d.begin_attempt("alice", 1, 1000).unwrap();
    assert_eq!(
        fifth,
        lockout::Attempt::Counted {
            failures: 5,
            locked_until_ms: Some(1000 + lockout::LOCK_MS_BASE)
        }
    );
    // Locked from the fifth attempt's start, before its password is known.
    assert!(matches!(
        d.begin_attempt("alice", 1, 1001).unwrap(),
        lockout::Attempt::Locked { .. }
    ));
    assert_eq!(
        d.failures("alice", 1).unwrap(),
        5,
        "a locked attempt is not counted"
    );
    assert!(matches!(
        d.lock_state("alice", 1, 1001).unwrap(),
        LockState::LockedFor { .. }
    ));
    assert_eq!(
        d.lock_state("alice", 2, 1001).unwrap(),
        LockState::Open,
        "per terminal"
    );
    d.clear_failures("alice", 1).unwrap();
    assert_eq!(d.lock_state("alice", 1, 1001).unwrap(), LockState::Open);
    assert_eq!(d.failures("alice", 1).unwrap(), 0);
}

/// Issue 14: accounts opened on two fronts get distinct database-assigned ids; a terminal
/// enrolled on one signs in on the other (its clerk, terminal and lock state are there).
/// Issue 19: a name sprayer cannot grow `login_failures` without bound, and pruning never
/// forgets a clerk's failures or a lock.
fn failures_of_unknown_names_are_bounded_per_terminal_issue_19(b: &Backend) {
    use frank::vendor_server::directory::UNKNOWN_NAME_FAILURES_PER_TERMINAL_MAX as MAX;
    let mut d = b.open();
    let (acct, _) = d.add_account("Spray PO", 1).unwrap();
    d.add_clerk(acct.id, "alice", "correct horse", false, 1)
        .unwrap();
    for _ in 0..4 {
        d.begin_attempt("alice", 1, 1000).unwrap();
    }
    // An unknown name locked on this terminal stays locked through the spray.
    for _ in 0..5 {
        d.begin_attempt("mallory-locked", 1, 1000).unwrap();
    }
    let sprayed = usize::try_from(MAX).unwrap() * 3;
    for i in 0..sprayed {
        d.begin_attempt(&format!("nobody-{i}"), 1, 2000).unwrap();
    }
    let kept = (0..sprayed)
        .filter(|i| d.failures(&format!("nobody-{i}"), 1).unwrap() > 0)
        .count();
    assert!(
        kept <= usize::try_from(MAX).unwrap() + 1,
        "{kept} records of unknown names kept on one terminal"
    );
    assert!(
        d.failures(&format!("nobody-{}", sprayed - 1), 1).unwrap() == 1,
        "the newest attempt keeps its record"
    );
    assert_eq!(
        d.failures("alice", 1).unwrap(),
        4,
        "a clerk's failures are kept"
    );
    assert!(matches!(
        d.lock_state("mallory-locked", 1, 2000).unwrap(),
        LockState::LockedFor { .. }
    ));
    // Another terminal's records are its own.
    d.begin_attempt("nobody-elsewhere", 2, 2000).unwrap();
    assert_eq!(d.failures("nobody-elsewhere", 2).unwrap(), 1);
}

fn two_fronts_share_one_directory_issue_14(b: &Backend) {
    let (mut a, mut bb) = (b.open(), b.open());
    let (alice_po, code) = a.add_account("Alice PO", 1).unwrap();
    let (bob_po, _) = bb.add_account("Bob PO", 1).unwrap();
    assert_ne!(alice_po.id, bob_po.id);
    a.add_clerk(alice_po.id, "alice", "correct horse", false, 1)
        .unwrap();
    let EnrollOutcome::Enrolled(t) = a.enroll(&code, "t", [9; 32], 2).unwrap() else {
        panic!()
    };
    assert_eq!(bb.terminal(t.id).unwrap().unwrap().account_id, alice_po.id);
    assert_eq!(bb.clerk("alice").unwrap().unwrap().account_id, alice_po.id);
    assert_eq!(bb.account_terminals(alice_po.id).unwrap(), vec![t.clone()]);
    assert!(bb.account_terminals(bob_po.id).unwrap().is_empty());
    let names: Vec<String> = bb.accounts().unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["Alice PO", "Bob PO"]);
    assert!(
        bb.add_clerk(bob_po.id, "alice", "correct horse", false, 1)
            .unwrap_err()
            .to_string()
            .contains("already exists"),
        "usernames are unique across fronts"
    );
}

/// Issue 14: a code with one use left, presented on two fronts at once with two device keys,
/// enrolls exactly one terminal.
fn two_fronts_racing_for_a_codes_last_use_enroll_one_terminal_issue_14(b: &Backend) {
    let mut setup = b.open();
    let (acct, _) = setup.add_account("A", 1).unwrap();
    const FRONTS: usize = 4;
    for round in 0..4u8 {
        let code = setup
            .rotate_enrollment_code(
                acct.id,
                CodePolicy {
                    uses: 1,
                    valid_ms: 60_000,
                },
                1,
            )
            .unwrap()
            .code;
        let barrier = Arc::new(Barrier::new(FRONTS));
        let outcomes: Vec<EnrollOutcome> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..FRONTS)
                .map(|i| {
                    let mut d = b.open();
                    let (code, barrier) = (code.clone(), barrier.clone());
                    s.spawn(move || {
                        barrier.wait();
                        let key = [round * 16 + u8::try_from(i).unwrap() + 1; 32];
                        d.enroll(&code, "t", key, 2).unwrap()
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let enrolled = outcomes
            .iter()
            .filter(|o| matches!(o, EnrollOutcome::Enrolled(_)))
            .count();
        assert_eq!(enrolled, 1, "round {round}: {outcomes:?}");
    }
    assert_eq!(setup.account_terminals(acct.id).unwrap().len(), 4);
}

/// Issue 14: wrong passwords tried on two fronts at once all count; the fifth locks.
fn two_fronts_counting_one_clerks_failures_both_count_issue_14(b: &Backend) {
    const FRONTS: usize = 5;
    let barrier = Arc::new(Barrier::new(FRONTS));
    let attempts: Vec<lockout::Attempt> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..FRONTS)
            .map(|_| {
                let mut d = b.open();
                let barrier = barrier.clone();
                s.spawn(move || {
                    barrier.wait();
                    d.begin_attempt("alice", 7, 1_000).unwrap()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut counted: Vec<u32> = attempts
        .iter()
        .map(|a| match a {
            lockout::Attempt::Counted { failures, .. } => *failures,
            other => panic!("{other:?}"),
        })
        .collect();
    counted.sort();
    assert_eq!(counted, [1, 2, 3, 4, 5]);
    assert_eq!(b.open().failures("alice", 7).unwrap(), 5);
    assert!(matches!(
        b.open().lock_state("alice", 7, 1_001).unwrap(),
        LockState::LockedFor { .. }
    ));
}
