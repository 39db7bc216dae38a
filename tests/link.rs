//! Issue 2: enrollment, login, pinning, keepalives and liveness over real QUIC on loopback.

mod support;

use frank::counter::client::{self, ClientError};
use frank::counter::supervisor::{self, Phase, SupervisorConfig};
use frank::faultproxy::FaultProxy;
use frank::link::LinkState;
use frank::link::keepalive::KeepaliveEndpoint;
use frank::link::keys::MacKey;
use frank::wire::{self, ErrorCode, Request};
use std::time::{Duration, Instant};
use support::*;

const LONG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn enrollment_login_and_keepalives_both_ways() {
    let v = vendor().await;
    let (c, s) = logged_in(&v, v.addr).await;
    assert_eq!(s.account_id, v.account_id);
    assert_eq!(s.clerk, CLERK);
    let link = s.start_link().unwrap();

    let mut counter_view = link.status.clone();
    let up = wait_for(&mut counter_view, LONG, "counter link up", |st| {
        st.state == LinkState::Up && st.rtt.is_some()
    })
    .await;
    assert!(up.counters.fresh >= 2);
    let vendor_link = v
        .server
        .terminal_link(c.terminal_id)
        .expect("vendor tracks the terminal");
    assert_eq!(vendor_link.session_id, s.session_id);
    let mut vendor_view = vendor_link.link.status.clone();
    let vup = wait_for(&mut vendor_view, LONG, "vendor link up", |st| {
        st.state == LinkState::Up && st.counters.fresh >= 5
    })
    .await;
    assert_eq!(vup.counters.rejected(), 0);

    // Requests work on the logged-in session; the MAC'd clock check agrees.
    assert!(s.ping().await.unwrap().vendor_time_ms > 0);
    let checked = s.clock_check(frank::clock::unix_ms()).await.unwrap();
    assert!(checked.skew_ms.abs() < 5_000, "{checked:?}");
}

#[tokio::test]
async fn a_vendor_with_another_key_is_refused() {
    let real = vendor().await;
    let impostor = vendor().await;
    let endpoint = endpoint();
    let err = client::connect(&endpoint, impostor.addr, real.key)
        .await
        .unwrap_err();
    match &err {
        ClientError::WrongVendorKey {
            presented, pinned, ..
        } => {
            assert_eq!(presented, &frank::identity::fingerprint(&impostor.key));
            assert_eq!(pinned, &frank::identity::fingerprint(&real.key));
        }
        other => panic!("expected WrongVendorKey, got {other:?}"),
    }
    assert!(err.to_string().contains("pins"), "{err}");
}

#[tokio::test]
async fn enrollment_and_login_refusals_are_typed() {
    let v = vendor().await;
    let endpoint = endpoint();
    let conn = client::connect(&endpoint, v.addr, v.key).await.unwrap();
    let key = frank::identity::new_signing_key().unwrap();

    let err = conn
        .enroll("not-the-code", "t", &key, &v.key)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadEnrollmentCode));

    let err = conn.login(999, &key, CLERK, PASSWORD).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTerminal));

    let e = conn.enroll(&v.code, "t", &key, &v.key).await.unwrap();
    let other_key = frank::identity::new_signing_key().unwrap();
    let err = conn
        .login(e.terminal_id, &other_key, CLERK, PASSWORD)
        .await
        .unwrap_err();
    // A bad device proof looks exactly like an unknown terminal (ids cannot be enumerated).
    assert_eq!(err.code(), Some(ErrorCode::UnknownTerminal));

    let err = conn
        .login(e.terminal_id, &key, "mallory", PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadCredentials));

    // Before login, session requests are refused; afterwards they work.
    let err = conn
        .request::<wire::Pong>(&Request::Ping(wire::Ping {}))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::NotLoggedIn));
    let s = conn
        .login(e.terminal_id, &key, CLERK, PASSWORD)
        .await
        .unwrap();
    s.ping().await.unwrap();
    // Issue 13: a second login on the connection replaces the first session (one per
    // connection); the first session's keys no longer verify.
    let second = conn
        .login(e.terminal_id, &key, CLERK, PASSWORD)
        .await
        .unwrap();
    assert_ne!(second.session_id, s.session_id);
    assert_eq!(v.server.sessions_live(), 1);
    second.clock_check(frank::clock::unix_ms()).await.unwrap();
    let err = s.clock_check(frank::clock::unix_ms()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadMac));
}

#[tokio::test]
async fn wrong_passwords_lock_the_clerk_on_that_terminal() {
    let v = vendor().await;
    let c = enrolled_counter(&v, v.addr).await;
    for attempt in 1..=4 {
        let err = c
            .conn
            .login(c.terminal_id, &c.device_key, CLERK, "wrong password")
            .await
            .unwrap_err();
        assert_eq!(
            err.code(),
            Some(ErrorCode::BadCredentials),
            "attempt {attempt}"
        );
    }
    let err = c
        .conn
        .login(c.terminal_id, &c.device_key, CLERK, "wrong password")
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LockedOut));
    // Now even the right password is refused, with a time to wait.
    let err = c
        .conn
        .login(c.terminal_id, &c.device_key, CLERK, PASSWORD)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::LockedOut));
    match err {
        ClientError::Response(wire::ResponseError::Refused(body)) => {
            assert!(body.retry_after_ms.unwrap() > 20_000, "{body:?}");
        }
        other => panic!("{other:?}"),
    }
    // Another terminal of the same account is not locked.
    let other = enrolled_counter(&v, v.addr).await;
    other
        .conn
        .login(other.terminal_id, &other.device_key, CLERK, PASSWORD)
        .await
        .unwrap();
}

#[tokio::test]
async fn malformed_oversized_unknown_and_wrong_version_requests_get_typed_errors() {
    let v = vendor().await;
    let (_c, s) = logged_in(&v, v.addr).await;
    let conn = &s.conn;
    let code_of = |bytes: Vec<u8>| async move {
        match wire::decode_response::<wire::Pong>(&bytes) {
            Err(wire::ResponseError::Refused(b)) => b.code,
            other => panic!("expected a typed refusal, got {other:?}"),
        }
    };
    let mut wrong_version = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            (
                ciborium::Value::Text("v".into()),
                ciborium::Value::Integer(9.into()),
            ),
            (
                ciborium::Value::Text("type".into()),
                ciborium::Value::Text("ping".into()),
            ),
            (
                ciborium::Value::Text("body".into()),
                ciborium::Value::Map(vec![]),
            ),
        ]),
        &mut wrong_version,
    )
    .unwrap();
    let mut unknown = Vec::new();
    ciborium::into_writer(
        &ciborium::Value::Map(vec![
            (
                ciborium::Value::Text("v".into()),
                ciborium::Value::Integer(1.into()),
            ),
            (
                ciborium::Value::Text("type".into()),
                ciborium::Value::Text("print_money".into()),
            ),
            (
                ciborium::Value::Text("body".into()),
                ciborium::Value::Map(vec![]),
            ),
        ]),
        &mut unknown,
    )
    .unwrap();
    let cases = [
        (vec![0xde, 0xad, 0xbe, 0xef], ErrorCode::Malformed),
        (
            vec![0u8; wire::REQUEST_BYTES_MAX + 10],
            ErrorCode::Oversized,
        ),
        (wrong_version, ErrorCode::UnsupportedVersion),
        (unknown, ErrorCode::UnknownType),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            code_of(conn.request_raw(&bytes).await.unwrap()).await,
            expected
        );
    }
    // Nothing changed: the session still works.
    s.ping().await.unwrap();
}

#[tokio::test]
async fn request_macs_with_skewed_clocks_or_wrong_keys_are_refused() {
    let v = vendor().await;
    let (_c, s) = logged_in(&v, v.addr).await;
    let now = frank::clock::unix_ms();
    let err = s.clock_check(now - 60_000).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ClockSkew));
    let err = s.clock_check(now + 60_000).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::ClockSkew));
    let mut wrong = s.clone();
    wrong.keys.request_mac = MacKey([0x42; 32]);
    let err = wrong.clock_check(now).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadMac));
    s.clock_check(frank::clock::unix_ms()).await.unwrap();
}

/// Takes over the counter's keepalive sending, then injects forged, corrupted, foreign,
/// malformed, replayed, duplicated and reordered datagrams. Each is counted by the vendor, and
/// none of them keeps the vendor's link Up.
#[tokio::test]
async fn invalid_keepalives_are_counted_and_never_feed_liveness() {
    let v = vendor().await;
    let (c, s) = logged_in(&v, v.addr).await;
    let link = s.start_link().unwrap();
    let vendor_link = v.server.terminal_link(c.terminal_id).unwrap();
    let mut vview = vendor_link.link.status.clone();
    wait_for(&mut vview, LONG, "vendor up", |st| {
        st.state == LinkState::Up
    })
    .await;

    // The test becomes the counter's sender, with the session's real keys.
    link.set_muted(true);
    tokio::time::sleep(Duration::from_millis(60)).await;
    let highest = vview.borrow().peer_highest_seq;
    let window = s.guard.detect_window();
    let mut shadow = KeepaliveEndpoint::new(
        s.session_id,
        s.keys.keepalive_counter_to_vendor.clone(),
        s.keys.keepalive_vendor_to_counter.clone(),
        Instant::now(),
        window,
    );
    shadow.advance_next_seq(highest + 1);
    let send = |d: &[u8]| {
        s.conn
            .conn
            .send_datagram(bytes::Bytes::copy_from_slice(d))
            .unwrap()
    };

    // Valid ones keep it up; a duplicate and a reordered pair are counted.
    let mut last_valid = Vec::new();
    for _ in 0..6 {
        last_valid = shadow.build(Instant::now()).to_vec();
        send(&last_valid);
        tokio::time::sleep(Duration::from_millis(40)).await;
    }
    send(&last_valid); // duplicate
    let a = shadow.build(Instant::now());
    let b = shadow.build(Instant::now());
    send(&b);
    tokio::time::sleep(Duration::from_millis(5)).await;
    send(&a); // reordered: older than b
    tokio::time::sleep(Duration::from_millis(40)).await;
    let st = vview.borrow().clone();
    assert_eq!(st.state, LinkState::Up);
    assert!(st.counters.replayed >= 1, "{:?}", st.counters);
    assert!(st.counters.late >= 1, "{:?}", st.counters);

    // Now only garbage flows, faster than the keepalive interval.
    let mut forger = KeepaliveEndpoint::new(
        s.session_id,
        MacKey([7; 32]),
        MacKey([7; 32]),
        Instant::now(),
        window,
    );
    forger.advance_next_seq(highest + 100);
    let mut foreign = KeepaliveEndpoint::new(
        s.session_id ^ 1,
        s.keys.keepalive_counter_to_vendor.clone(),
        s.keys.keepalive_vendor_to_counter.clone(),
        Instant::now(),
        window,
    );
    foreign.advance_next_seq(highest + 100);
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < Duration::from_millis(600) {
        send(&forger.build(Instant::now())); // forged: wrong key
        let mut corrupted = shadow.build(Instant::now());
        corrupted[50] ^= 0x10;
        send(&corrupted); // corrupted MAC
        send(&foreign.build(Instant::now())); // another session's id
        send(&[0x01, 0x4B, 0, 0, 1, 2, 3]); // malformed
        send(&last_valid); // replay
        n += 1;
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let st = wait_for(
        &mut vview,
        LONG,
        "vendor lapsed despite the garbage",
        |st| st.state == LinkState::Lapsed,
    )
    .await;
    let k = st.counters;
    assert!(k.bad_mac >= n, "{k:?}");
    assert!(k.wrong_session >= n - 1, "{k:?}");
    assert!(k.malformed >= n - 1, "{k:?}");
    assert!(k.replayed >= n, "{k:?}");

    // Real keepalives resume: Up again.
    link.set_muted(false);
    wait_for(&mut vview, LONG, "vendor up again", |st| {
        st.state == LinkState::Up
    })
    .await;
}

#[tokio::test]
async fn a_proxy_cut_is_detected_and_the_link_recovers() {
    let v = vendor().await;
    let proxy = FaultProxy::start("127.0.0.1:0".parse().unwrap(), v.addr)
        .await
        .unwrap();
    let (c, s) = logged_in(&v, proxy.local_addr()).await;
    let session_id = s.session_id;
    let mut cfg = SupervisorConfig::new(vec![proxy.local_addr()], v.key);
    // Long enough that the short cut below is ridden out on the same connection even on a
    // busy machine; the long cut outlasts it.
    cfg.lapse_reconnect_ms = 2_000;
    let sup = supervisor::spawn(cfg, c.endpoint.clone(), c.device_key.clone(), s);
    let mut state = sup.state.clone();
    wait_for(&mut state, LONG, "up", |s| *s == LinkState::Up).await;
    let vendor_view = v.server.terminal_link(c.terminal_id).unwrap();
    let mut vview = vendor_view.link.status.clone();
    wait_for(&mut vview, LONG, "vendor up", |s| s.state == LinkState::Up).await;

    // A short cut: lapse, then Up again on the same connection.
    proxy.handle.cut();
    let cut_at = Instant::now();
    wait_for(&mut state, LONG, "lapsed", |s| *s == LinkState::Lapsed).await;
    let detected = cut_at.elapsed();
    assert!(detected < Duration::from_secs(1), "lapse took {detected:?}");
    wait_for(&mut vview, LONG, "vendor sees the lapse", |s| s.lapses >= 1).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    proxy.handle.heal();
    wait_for(&mut state, LONG, "up after heal", |s| *s == LinkState::Up).await;
    assert!(matches!(
        *sup.phase.borrow(),
        Phase::Connected { connection: 1, .. }
    ));

    // A long cut: the supervisor drops the connection and resumes the session on a new one.
    proxy.handle.cut();
    let mut phase = sup.phase.clone();
    wait_for(&mut phase, LONG, "reconnecting", |p| {
        matches!(p, Phase::Reconnecting { .. })
    })
    .await;
    assert_ne!(*state.borrow(), LinkState::Up);
    proxy.handle.heal();
    let p = wait_for(&mut phase, LONG, "resumed", |p| {
        matches!(p, Phase::Connected { connection: 2, .. })
    })
    .await;
    assert_eq!(
        p,
        Phase::Connected {
            session_id,
            connection: 2
        }
    );
    wait_for(&mut state, LONG, "up on the new connection", |s| {
        *s == LinkState::Up
    })
    .await;
    let resumed = sup.session.borrow().clone();
    assert_eq!(resumed.session_id, session_id);
    resumed.ping().await.unwrap();
    let vendor_view = v.server.terminal_link(c.terminal_id).unwrap();
    let mut vview = vendor_view.link.state.clone();
    wait_for(&mut vview, LONG, "vendor up on the new connection", |s| {
        *s == LinkState::Up
    })
    .await;
    sup.stop();
}

/// Two fronts (two addresses of the vendor, each behind its own fault proxy): the front the
/// session is on goes dark for good; the supervisor's next attempts try the other front and
/// resume the same session there, with the link Up on both ends. Issue 14, item 4.
#[tokio::test]
async fn the_supervisor_fails_over_to_the_next_front_and_resumes_the_session_issue_14() {
    let v = vendor().await;
    let a = FaultProxy::start("127.0.0.1:0".parse().unwrap(), v.addr)
        .await
        .unwrap();
    let b = FaultProxy::start("127.0.0.1:0".parse().unwrap(), v.addr)
        .await
        .unwrap();
    let (c, s) = logged_in(&v, a.local_addr()).await;
    let session_id = s.session_id;
    let mut cfg = SupervisorConfig::new(vec![a.local_addr(), b.local_addr()], v.key);
    cfg.lapse_reconnect_ms = 300;
    let sup = supervisor::spawn(cfg, c.endpoint.clone(), c.device_key.clone(), s);
    let mut state = sup.state.clone();
    wait_for(&mut state, LONG, "up through front A", |s| {
        *s == LinkState::Up
    })
    .await;
    // Front A goes dark and stays dark.
    a.handle.cut();
    let mut phase = sup.phase.clone();
    let p = wait_for(
        &mut phase,
        Duration::from_secs(30),
        "resumed on front B",
        |p| matches!(p, Phase::Connected { connection: 2, .. }),
    )
    .await;
    assert_eq!(
        p,
        Phase::Connected {
            session_id,
            connection: 2
        }
    );
    wait_for(&mut state, LONG, "up through front B", |s| {
        *s == LinkState::Up
    })
    .await;
    let resumed = sup.session.borrow().clone();
    assert_eq!(resumed.conn.addr, b.local_addr());
    resumed.ping().await.unwrap();
    let view = v.server.terminal_link(c.terminal_id).unwrap();
    let mut vview = view.link.state.clone();
    wait_for(&mut vview, LONG, "vendor up through front B", |s| {
        *s == LinkState::Up
    })
    .await;
    sup.stop();
}

#[tokio::test]
async fn resume_needs_the_session_secret_and_a_known_session() {
    let v = vendor().await;
    let (c, s) = logged_in(&v, v.addr).await;
    let conn2 = client::connect(&c.endpoint, v.addr, v.key).await.unwrap();
    let mut forged = s.clone();
    forged.keys.resume = MacKey([1; 32]);
    let err = conn2.resume(&forged, &c.device_key).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::BadMac));
    let mut unknown = s.clone();
    unknown.session_id ^= 0xffff;
    let err = conn2.resume(&unknown, &c.device_key).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownSession));
    let other_device = frank::identity::new_signing_key().unwrap();
    let err = conn2.resume(&s, &other_device).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::UnknownTerminal));
    let resumed = conn2.resume(&s, &c.device_key).await.unwrap();
    assert_eq!(resumed.session_id, s.session_id);
    resumed.ping().await.unwrap();
    // The old connection was superseded by the vendor.
    let closed = tokio::time::timeout(LONG, s.conn.conn.closed())
        .await
        .unwrap();
    assert!(closed.to_string().contains("superseded"), "{closed}");
}

/// A counter that lets go of its session and link handle closes the connection: the link's
/// driver ends with its last handle (it held a clone of the connection, and its keepalives
/// kept a forgotten connection alive at the vendor for good).
#[tokio::test]
async fn a_dropped_session_and_link_handle_close_their_connection() {
    let v = vendor().await;
    let (s, link) = session_on(v.addr, v.key, &v.code, "let-go", CLERK, PASSWORD).await;
    sessions_live_become(&v, 1, "the vendor never saw the session").await;
    // A clone held elsewhere keeps the driver going.
    let clone = link.clone();
    drop(link);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(clone.state.borrow().clone(), LinkState::Up);
    drop(clone);
    drop(s);
    sessions_live_become(
        &v,
        0,
        "the connection stayed open after its session and link handle were dropped",
    )
    .await;
}

/// Waits, at most [`LONG`], for the vendor to count `n` live sessions; fails with `why`.
async fn sessions_live_become(v: &Vendor, n: usize, why: &str) {
    let deadline = Instant::now() + LONG;
    while v.server.sessions_live() != n {
        assert!(Instant::now() < deadline, "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
