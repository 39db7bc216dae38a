//! Enrollment codes, revocation and what an outsider can learn (issue 13), against a real
//! vendor over QUIC on loopback; revocations are made by the `frank` binary, a separate
//! process working on the vendor's data directory, as an operator would.

mod support;

use frank::counter::client::{self, ClientError};
use frank::vendor_server::directory::{CodePolicy, Directory};
use frank::vendor_server::server::CLOSE_REVOKED;
use frank::vendor_server::{DB_FILE, DataDir};
use frank::wire::ErrorCode;
use std::time::Duration;
use support::*;

const LONG: Duration = Duration::from_secs(10);

fn data_dir(v: &Vendor) -> std::path::PathBuf {
    v.dir.path().join("vendor")
}

fn key() -> ed25519_dalek::SigningKey {
    frank::identity::new_signing_key().unwrap()
}

#[tokio::test]
async fn a_code_enrolls_as_many_terminals_as_it_says_and_rotation_ends_it() {
    let v = vendor().await;
    let dir = data_dir(&v);
    let d = dir.to_str().unwrap();
    let out = frank_ok(&[
        "vendor",
        "account",
        "code",
        "--data",
        d,
        &v.account_id.to_string(),
        "--uses",
        "2",
    ]);
    let code = out
        .lines()
        .find_map(|l| l.strip_prefix("enrollment code (give it to the account's terminals): "))
        .unwrap()
        .to_string();
    assert!(out.contains("enrolls 2 terminals"), "{out}");
    let endpoint = endpoint();
    let conn = client::connect(&endpoint, v.addr, v.key).await.unwrap();
    // The code the fixture used before the rotation no longer works.
    let err = conn
        .enroll(&v.code, "t0", &key(), &v.key)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadEnrollmentCode));
    let first = key();
    let a = conn.enroll(&code, "t1", &first, &v.key).await.unwrap();
    // A retry of the same enrollment (its answer lost) learns the same terminal, uses nothing.
    let again = conn.enroll(&code, "t1", &first, &v.key).await.unwrap();
    assert_eq!(again.terminal_id, a.terminal_id);
    conn.enroll(&code, "t2", &key(), &v.key).await.unwrap();
    let err = conn.enroll(&code, "t3", &key(), &v.key).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadEnrollmentCode));
}

#[tokio::test]
async fn an_enrollment_never_reveals_another_accounts_ids() {
    let v = vendor().await;
    let other_code = {
        let mut dir = Directory::open(&DataDir::new(data_dir(&v)).file(DB_FILE)).unwrap();
        let (b, _) = dir.add_account("Other Post Office", 1).unwrap();
        dir.rotate_enrollment_code(b.id, CodePolicy::default(), frank::clock::unix_ms())
            .unwrap()
            .code
    };
    let c = enrolled_counter(&v, v.addr).await;
    let err = c
        .conn
        .enroll(&other_code, "stolen", &c.device_key, &v.key)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadEnrollmentCode), "{err}");
    assert!(
        !err.to_string().contains(&c.terminal_id.to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_terminals_and_bad_proofs_look_the_same() {
    let v = vendor().await;
    let c = enrolled_counter(&v, v.addr).await;
    let unknown = c
        .conn
        .login(c.terminal_id + 1000, &c.device_key, CLERK, PASSWORD)
        .await
        .unwrap_err();
    let forged = c
        .conn
        .login(c.terminal_id, &key(), CLERK, PASSWORD)
        .await
        .unwrap_err();
    let (ClientError::Response(a), ClientError::Response(b)) = (&unknown, &forged) else {
        panic!("{unknown} / {forged}");
    };
    assert_eq!(unknown.code(), Some(ErrorCode::UnknownTerminal));
    assert_eq!(a.to_string(), b.to_string());
}

async fn closed_with(conn: &quinn::Connection) -> quinn::ConnectionError {
    tokio::time::timeout(LONG, conn.closed())
        .await
        .expect("the vendor ends the session")
}

fn revoked(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ApplicationClosed(c) if c.error_code == quinn::VarInt::from_u32(CLOSE_REVOKED))
}

#[tokio::test]
async fn a_revoked_terminal_is_cut_off_and_stays_out() {
    let v = vendor().await;
    let (c, s) = logged_in(&v, v.addr).await;
    let _link = s.start_link().unwrap();
    let dir = data_dir(&v);
    let out = frank_ok(&[
        "vendor",
        "terminal",
        "revoke",
        "--data",
        dir.to_str().unwrap(),
        &c.terminal_id.to_string(),
    ]);
    assert!(out.contains("revoked"), "{out}");
    let t0 = std::time::Instant::now();
    let e = closed_with(&s.conn.conn).await;
    eprintln!(
        "revoked terminal's session ended {} ms after the CLI returned",
        t0.elapsed().as_millis()
    );
    assert!(revoked(&e), "{e:?}");
    // It cannot come back: not by resume, not by login, not by enrolling its key again.
    let conn = client::connect(&c.endpoint, v.addr, v.key).await.unwrap();
    let err = conn.resume(&s, &c.device_key).await.unwrap_err();
    assert!(
        matches!(
            err.code(),
            Some(ErrorCode::UnknownSession | ErrorCode::UnknownTerminal)
        ),
        "{err}"
    );
    let err = conn
        .login(c.terminal_id, &c.device_key, CLERK, PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTerminal));
    let err = conn
        .enroll(&v.code, "again", &c.device_key, &v.key)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadEnrollmentCode));
    // Other terminals are untouched.
    let (_c2, s2) = logged_in(&v, v.addr).await;
    s2.ping().await.unwrap();
}

#[tokio::test]
async fn a_disabled_clerk_is_signed_out_and_cannot_sign_in() {
    let v = vendor().await;
    let (c, s) = logged_in(&v, v.addr).await;
    let dir = data_dir(&v);
    let out = frank_ok(&[
        "vendor",
        "clerk",
        "disable",
        "--data",
        dir.to_str().unwrap(),
        CLERK,
    ]);
    assert!(out.contains("disabled"), "{out}");
    let e = closed_with(&s.conn.conn).await;
    assert!(revoked(&e), "{e:?}");
    let conn = client::connect(&c.endpoint, v.addr, v.key).await.unwrap();
    let err = conn
        .login(c.terminal_id, &c.device_key, CLERK, PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Forbidden), "{err}");
    assert!(err.to_string().contains("disabled"), "{err}");
    let err = conn.resume(&s, &c.device_key).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownSession), "{err}");
}
