//! Issue 13, connections and scans: a real vendor on loopback against clients that hold
//! connection slots, never log in, stall half a request, open too many streams, or replay one
//! scanned label over fresh connections — while a legitimate counter, connected all along,
//! keeps its link without a lapse. The hostile clients use other loopback addresses
//! (127.0.0.2, 127.0.0.3) so they are other sources than the counter (127.0.0.1).

mod support;

use frank::counter::client::{self, ClientError, Session, VendorConn};
use frank::link::driver::LinkHandle;
use frank::link::guard::LinkState;
use frank::vendor_server::server::{CLOSE_LOGIN_DEADLINE, STREAM_READ_TIMEOUT, VendorOptions};
use frank::wire::{self, ErrorCode, Request, WireItem};
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use support::*;

const LONG: Duration = Duration::from_secs(10);
const ORIGIN: &str = "10001";

/// A vendor whose vendor.toml holds exactly `toml` (every other setting its default).
async fn vendor_toml(toml: &'static str) -> Vendor {
    vendor_setup(VendorOptions::default(), move |data, _, _| {
        std::fs::write(data.file(frank::vendor_server::CONFIG_FILE), toml).unwrap();
    })
    .await
}

/// A client endpoint on another loopback address: another source for the vendor.
fn endpoint_on(ip: &str) -> quinn::Endpoint {
    client::client_endpoint(format!("{ip}:0").parse::<SocketAddr>().unwrap()).unwrap()
}

/// The legitimate counter: logged in, its link Up on both ends, its account funded.
async fn legit_counter(v: &Vendor) -> (Counter, Session, LinkHandle) {
    let (c, s, link) = linked_counter(v).await;
    fund_until_ok(&s, 50_000).await;
    (c, s, link)
}

/// The counter's link never lapsed, on its own side nor as the vendor sees it.
fn assert_no_lapse(v: &Vendor, c: &Counter, link: &LinkHandle) {
    let mine = link.status.borrow().clone();
    assert_eq!(
        (mine.state, mine.lapses),
        (LinkState::Up, 0),
        "counter side"
    );
    let view = v.server.terminal_link(c.terminal_id).expect("still linked");
    let theirs = view.link.status.borrow().clone();
    assert_eq!(
        (theirs.state, theirs.lapses),
        (LinkState::Up, 0),
        "vendor side"
    );
}

fn refusal(e: &ClientError) -> &wire::ErrorBody {
    match e {
        ClientError::Response(wire::ResponseError::Refused(b)) => b,
        other => panic!("expected a refusal, got {other}"),
    }
}

#[tokio::test]
async fn one_source_beyond_connections_per_source_max_is_refused_and_a_counter_keeps_its_link_issue_13()
 {
    // Every new address is validated with a Retry as well (threshold 0).
    let v =
        vendor_toml("connections_per_source_max = 4\naddress_validation_above_connections = 0\n")
            .await;
    let (c, _s, link) = legit_counter(&v).await;
    let hostile = endpoint_on("127.0.0.2");
    let mut held: Vec<VendorConn> = Vec::new();
    for _ in 0..4 {
        held.push(client::connect(&hostile, v.addr, v.key).await.unwrap());
    }
    for _ in 0..6 {
        let e = client::connect(&hostile, v.addr, v.key).await.unwrap_err();
        assert!(e.to_string().to_lowercase().contains("refuse"), "{e}");
    }
    // Another source is not affected by that one's limit.
    let other = endpoint_on("127.0.0.3");
    let fine = client::connect(&other, v.addr, v.key).await.unwrap();
    drop(fine);
    // A slot comes back when its connection ends.
    held.pop()
        .unwrap()
        .conn
        .close(quinn::VarInt::from_u32(0), b"bye");
    let mut again = None;
    for _ in 0..50 {
        if let Ok(conn) = client::connect(&hostile, v.addr, v.key).await {
            again = Some(conn);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(again.is_some(), "the freed slot is taken again");
    let counts = v.server.limit_counts();
    assert_eq!(counts.refused_per_source, 6, "{counts:?}");
    // The counter's, the other source's and each hostile attempt's address was validated.
    assert!(counts.retries_sent >= 12, "{counts:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_no_lapse(&v, &c, &link);
}

#[tokio::test]
async fn a_connection_that_never_logs_in_is_closed_at_the_login_deadline_issue_13() {
    let v = vendor_toml("login_deadline_ms = 400\n").await;
    let (c, s, link) = legit_counter(&v).await;
    let hostile = endpoint_on("127.0.0.2");
    let t0 = Instant::now();
    let idle = client::connect(&hostile, v.addr, v.key).await.unwrap();
    // Enrolling is not logging in.
    let enrolled = client::connect(&hostile, v.addr, v.key).await.unwrap();
    let key = frank::identity::new_signing_key().unwrap();
    enrolled
        .enroll(&v.code, "never-logs-in", &key, &v.key)
        .await
        .unwrap();
    for conn in [&idle, &enrolled] {
        let closed = tokio::time::timeout(LONG, conn.conn.closed())
            .await
            .expect("closed by the vendor");
        match closed {
            quinn::ConnectionError::ApplicationClosed(close) => {
                assert_eq!(
                    close.error_code,
                    quinn::VarInt::from_u32(CLOSE_LOGIN_DEADLINE)
                );
                assert_eq!(&close.reason[..], b"no login before login_deadline_ms");
            }
            other => panic!("expected the login deadline's close, got {other}"),
        }
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(350),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(v.server.limit_counts().closed_at_login_deadline, 2);
    // The counter logged in in time and keeps its connection past the deadline.
    s.balance().await.unwrap();
    assert!(s.conn.conn.close_reason().is_none());
    assert_no_lapse(&v, &c, &link);
}

/// Address validation only under load: below `address_validation_above_connections` a new
/// source is let in without a Retry; at the threshold every new unproven address gets one (and
/// still connects, one round trip later).
#[tokio::test]
async fn a_retry_is_asked_only_once_the_vendor_holds_the_threshold_of_connections_issue_13() {
    let v = vendor_toml("address_validation_above_connections = 3\n").await;
    // The counter holds one connection.
    let (c, _s, link) = legit_counter(&v).await;
    let before = v.server.limit_counts().retries_sent;
    let mut held = Vec::new();
    for ip in ["127.0.0.2", "127.0.0.3"] {
        held.push(
            client::connect(&endpoint_on(ip), v.addr, v.key)
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        v.server.limit_counts().retries_sent,
        before,
        "under the threshold: no Retry"
    );
    // Three connections open: the next new source is validated first.
    for ip in ["127.0.0.4", "127.0.0.5"] {
        held.push(
            client::connect(&endpoint_on(ip), v.addr, v.key)
                .await
                .unwrap(),
        );
    }
    assert_eq!(v.server.limit_counts().retries_sent, before + 2);
    assert_no_lapse(&v, &c, &link);
}

#[tokio::test]
async fn a_stream_that_stalls_half_way_through_its_request_is_reset_after_the_read_timeout_issue_13()
 {
    let v = vendor_toml("request_read_timeout_ms = 300\n").await;
    let (c, _s, link) = legit_counter(&v).await;
    let hostile = endpoint_on("127.0.0.2");
    let conn = client::connect(&hostile, v.addr, v.key).await.unwrap();
    let request = wire::encode_request(&Request::Scan(wire::ScanRequest {
        payload: vec![7; 100],
    }));
    let (mut send, mut recv) = conn.conn.open_bi().await.unwrap();
    let t0 = Instant::now();
    send.write_all(&request[..request.len() / 2]).await.unwrap();
    let read = tokio::time::timeout(LONG, recv.read_to_end(4096))
        .await
        .expect("the vendor answers the stall");
    let code = quinn::VarInt::from_u32(STREAM_READ_TIMEOUT);
    match read {
        Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(c))) => assert_eq!(c, code),
        other => panic!("expected a reset, got {other:?}"),
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(v.server.limit_counts().streams_reset_read_timeout, 1);
    // The vendor stopped reading too: the rest of the request is refused.
    let stopped = tokio::time::timeout(LONG, send.stopped()).await.unwrap();
    assert_eq!(stopped.unwrap(), Some(code));
    // A whole request on the same connection is still answered.
    let answer = conn.request_raw(&request).await.unwrap();
    assert!(wire::decode_response::<wire::Scanned>(&answer).is_err());
    assert_no_lapse(&v, &c, &link);
}

#[tokio::test]
async fn streams_beyond_streams_per_connection_max_wait_for_one_to_end_issue_13() {
    let v = vendor_toml("streams_per_connection_max = 4\nrequest_read_timeout_ms = 1000\n").await;
    let (c, _s, link) = legit_counter(&v).await;
    let hostile = endpoint_on("127.0.0.2");
    let conn = client::connect(&hostile, v.addr, v.key).await.unwrap();
    let mut open = Vec::new();
    for _ in 0..4 {
        let (mut send, recv) = conn.conn.open_bi().await.unwrap();
        send.write_all(&[0xa3]).await.unwrap();
        open.push((send, recv));
    }
    // A fifth stream cannot be opened while four are.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), conn.conn.open_bi())
            .await
            .is_err(),
        "a fifth concurrent stream opened"
    );
    // The vendor resets the four stalled ones; once this side lets go of them too, a new
    // stream opens and is answered.
    for (send, recv) in &mut open {
        let r = tokio::time::timeout(LONG, recv.read_to_end(4096))
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Err(quinn::ReadToEndError::Read(quinn::ReadError::Reset(_)))
            ),
            "{r:?}"
        );
        let _ = send.reset(quinn::VarInt::from_u32(0));
    }
    let ping = wire::encode_request(&Request::Ping(wire::Ping {}));
    let answer = tokio::time::timeout(LONG, conn.request_raw(&ping))
        .await
        .expect("a stream opens again")
        .unwrap();
    match wire::decode_response::<wire::Pong>(&answer) {
        Err(wire::ResponseError::Refused(b)) => assert_eq!(b.code, ErrorCode::NotLoggedIn),
        other => panic!("expected not_logged_in, got {other:?}"),
    }
    assert_no_lapse(&v, &c, &link);
}

fn coupon(cents: u64) -> WireItem {
    WireItem::Coupon(wire::ValueItem {
        text: "2 for 1".into(),
        value_cents: cents,
        expiry: "2040-01-31".into(),
    })
}

/// The ledger's view of one of the test account's pieces, and the account's audit count.
async fn piece_and_audit(v: &Vendor, serial: u64) -> (frank::ledger::Piece, u64) {
    let ledger = v.server.ledger();
    let account = frank::vendor_server::money::ledger_account_of(&ledger, v.account_id)
        .await
        .unwrap();
    let piece = ledger
        .piece(frank::vendor_server::money::piece_id(account, serial))
        .await
        .unwrap();
    let a = ledger.account(account).await.unwrap();
    (piece, a.audit_seq)
}

/// One `scan` over a fresh connection from `endpoint`.
async fn scan_fresh(
    v: &Vendor,
    endpoint: &quinn::Endpoint,
    payload: &[u8],
) -> Result<wire::Scanned, ClientError> {
    let conn = client::connect(endpoint, v.addr, v.key).await.unwrap();
    let r = conn.scan(payload).await;
    conn.conn.close(quinn::VarInt::from_u32(0), b"done");
    r
}

#[tokio::test]
async fn a_scan_replayed_over_fresh_connections_is_throttled_and_recorded_once_per_window_issue_13()
{
    let v = vendor_toml("scans_per_source_per_minute = 12\nscans_per_piece_per_minute = 4\n").await;
    let (c, s, link) = legit_counter(&v).await;
    let rid = || rand::random::<[u8; 16]>();
    let a = s.authorize(rid(), 600, coupon(600), ORIGIN).await.unwrap();
    s.commit(rid(), a.piece_serial).await.unwrap();
    let b = s.authorize(rid(), 700, coupon(700), ORIGIN).await.unwrap();
    s.commit(rid(), b.piece_serial).await.unwrap();
    let (_, audit_before) = piece_and_audit(&v, a.piece_serial).await;

    // One photo of label A, replayed 16 times, each over a fresh connection.
    let hostile = endpoint_on("127.0.0.2");
    let mut answered = Vec::new();
    let mut limited = Vec::new();
    for _ in 0..16 {
        match scan_fresh(&v, &hostile, &a.indicium).await {
            Ok(ok) => answered.push(ok),
            Err(e) => limited.push(refusal(&e).clone()),
        }
    }
    assert_eq!(answered.len(), 4, "the piece's budget: {limited:?}");
    assert!(!answered[0].scanned_before);
    assert!(
        answered[1..]
            .iter()
            .all(|s| s.scanned_before && s.state == "printed")
    );
    assert_eq!(limited.len(), 12);
    for (n, e) in limited.iter().enumerate() {
        assert_eq!(e.code, ErrorCode::ScanLimit, "{e:?}");
        assert!(e.retry_after_ms.is_some_and(|ms| ms > 0), "{e:?}");
        // Attempts 5..=12 spend the piece's budget, 13..=16 the source's.
        let budget = if n < 8 {
            "one piece"
        } else {
            "this source address"
        };
        assert!(e.message.contains(budget), "{n}: {e:?}");
    }
    // The source's budget outlives its connections: another genuine label is refused too.
    let e = scan_fresh(&v, &hostile, &b.indicium).await.unwrap_err();
    assert!(refusal(&e).message.contains("this source address"), "{e}");
    // Another source may still scan label B, but label A's budget is spent for everyone.
    let other = endpoint_on("127.0.0.3");
    let ok = scan_fresh(&v, &other, &b.indicium).await.unwrap();
    assert_eq!((ok.state.as_str(), ok.scanned_before), ("printed", false));
    let e = scan_fresh(&v, &other, &a.indicium).await.unwrap_err();
    assert!(refusal(&e).message.contains("one piece"), "{e}");

    // The ledger: label A counted four times on its row, one audit record for A and one
    // for B.
    let (piece_a, audit_after) = piece_and_audit(&v, a.piece_serial).await;
    assert_eq!((piece_a.scanned, piece_a.scan_count), (true, 4));
    assert_eq!(audit_after, audit_before + 2, "one scan record per piece");
    let (piece_b, _) = piece_and_audit(&v, b.piece_serial).await;
    assert_eq!(piece_b.scan_count, 1);
    assert_eq!(v.server.limit_counts().scans_limited, 14);
    assert_no_lapse(&v, &c, &link);
}
