//! Issue 13 (lockout and sessions, the argon2 budget): hostile logins against a real vendor over
//! loopback QUIC. Every test is bounded in attempts and time.

mod support;

use frank::counter::client::{self, ClientError, VendorConn};
use frank::link::LinkState;
use frank::vendor_server::directory::Directory;
use frank::vendor_server::lockout::FAILURES_FREE_MAX;
use frank::vendor_server::server::VendorOptions;
use frank::vendor_server::{CONFIG_FILE, DB_FILE};
use frank::wire::ErrorCode;
use std::time::{Duration, Instant};
use support::*;

const LONG: Duration = Duration::from_secs(10);

/// A vendor whose vendor.toml holds `toml` (every other key at its default).
async fn vendor_with_config(toml: &'static str) -> Vendor {
    vendor_setup(VendorOptions::default(), move |data, _, _| {
        std::fs::write(data.file(CONFIG_FILE), toml).unwrap();
    })
    .await
}

fn failures(v: &Vendor, terminal_id: u64) -> u32 {
    Directory::open(&v.dir.path().join("vendor").join(DB_FILE))
        .unwrap()
        .failures(CLERK, terminal_id)
        .unwrap()
}

async fn connect(v: &Vendor, endpoint: &quinn::Endpoint) -> VendorConn {
    client::connect(endpoint, v.addr, v.key).await.unwrap()
}

fn code(r: &Result<client::Session, ClientError>) -> Option<ErrorCode> {
    match r {
        Ok(_) => None,
        Err(e) => Some(e.code().unwrap_or_else(|| panic!("untyped failure: {e}"))),
    }
}

/// Waits until the vendor holds no live session (its connections' ends were noticed).
async fn wait_no_live_sessions(v: &Vendor) {
    let deadline = Instant::now() + LONG;
    while v.server.sessions_live() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} sessions still live",
            v.server.sessions_live()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// 63 wrong passwords at once from one terminal (over 16 connections), then the right one:
/// the attempts were counted before any argon2 ran, so no more than the lockout allows were
/// checked and the right password is refused as locked out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_concurrent_wrong_passwords_all_count_and_the_lock_holds() {
    let v = vendor_with_config("terminal_login_burst_max = 100\nterminal_login_interval_ms = 10\n")
        .await;
    let c = enrolled_counter(&v, v.addr).await;
    let mut conns = Vec::new();
    for _ in 0..16 {
        conns.push(connect(&v, &c.endpoint).await);
    }
    let before = v.server.password_pool_stats();
    let mut tasks = Vec::new();
    for i in 0..63 {
        let conn = conns[i % conns.len()].clone();
        let key = c.device_key.clone();
        let terminal = c.terminal_id;
        tasks.push(tokio::spawn(async move {
            code(&conn.login(terminal, &key, CLERK, "wrong password").await)
        }));
    }
    let mut answers = Vec::new();
    for t in tasks {
        answers.push(t.await.unwrap());
    }
    let bad = answers
        .iter()
        .filter(|a| **a == Some(ErrorCode::BadCredentials))
        .count();
    for a in &answers {
        assert!(
            matches!(
                a,
                Some(ErrorCode::BadCredentials | ErrorCode::LockedOut | ErrorCode::Busy)
            ),
            "{a:?}"
        );
    }
    let after = v.server.password_pool_stats();
    let checked = after.verified_total - before.verified_total;
    assert!(
        bad <= FAILURES_FREE_MAX as usize,
        "{bad} plain wrong-password answers: {answers:?}"
    );
    assert!(
        checked <= u64::from(FAILURES_FREE_MAX) + 1,
        "{checked} passwords checked by argon2"
    );
    let counted = failures(&v, c.terminal_id);
    eprintln!("63 wrong at once: {counted} counted, {checked} checked, answers {answers:?}");
    assert!(
        counted > FAILURES_FREE_MAX && u64::from(counted) >= checked,
        "{counted} attempts counted, {checked} checked"
    );
    // The right password now: locked out, with a time to wait.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let right = c
        .conn
        .login(c.terminal_id, &c.device_key, CLERK, PASSWORD)
        .await;
    assert_eq!(code(&right), Some(ErrorCode::LockedOut), "{answers:?}");
    assert_eq!(
        v.server.password_pool_stats().verified_total,
        after.verified_total,
        "a locked attempt runs no argon2"
    );
    assert_eq!(v.server.sessions_live(), 0);
}

/// 16 logins at once on one connection leave at most one session; a second login replaces
/// the first; when the connection closes no live session remains. Round after round, with
/// `sessions_max` = 4, a fresh legitimate login is never `busy`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_one_session_per_connection_and_none_after_it_ends() {
    let v = vendor_with_config("sessions_max = 4\n").await;
    for round in 0..6 {
        let c = enrolled_counter(&v, v.addr).await;
        let mut tasks = Vec::new();
        for _ in 0..16 {
            let conn = c.conn.clone();
            let key = c.device_key.clone();
            let terminal = c.terminal_id;
            tasks.push(tokio::spawn(async move {
                conn.login(terminal, &key, CLERK, PASSWORD).await
            }));
        }
        let mut ok = 0;
        for t in tasks {
            match t.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => assert!(
                    matches!(e.code(), Some(ErrorCode::Busy | ErrorCode::LockedOut)),
                    "round {round}: {e}"
                ),
            }
        }
        assert!(ok >= 1, "round {round}: no login succeeded");
        assert_eq!(v.server.sessions_live(), 1, "round {round}");
        // Sequential logins on the same connection replace the session.
        if let Ok(s) = c
            .conn
            .login(c.terminal_id, &c.device_key, CLERK, PASSWORD)
            .await
        {
            assert_eq!(v.server.sessions_live(), 1, "round {round}");
            s.clock_check(frank::clock::unix_ms()).await.unwrap();
        }
        c.conn.conn.close(0u32.into(), b"done");
        wait_no_live_sessions(&v).await;
        // Resumable sessions: at most one per terminal that signed in (this round's and the
        // earlier rounds' attacking and fresh terminals), more than `sessions_max` by now.
        assert!(
            v.server.sessions_held() <= 2 * round + 1,
            "{} sessions held in round {round}",
            v.server.sessions_held()
        );
        // A fresh counter signs in at once.
        let (fresh, s) = logged_in(&v, v.addr).await;
        s.ping().await.unwrap();
        assert_eq!(v.server.sessions_live(), 1);
        fresh.conn.conn.close(0u32.into(), b"done");
        wait_no_live_sessions(&v).await;
    }
}

/// The vendor's resident memory in bytes (Linux), for the memory bound.
fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Random clerk names at a high rate from enrolled terminals (each name its own lockout
/// pair): the terminals' login rate and the password pool answer `busy`, never more than the
/// pool's threads run argon2 at once, memory stays bounded, and a counter connected all along
/// keeps its link with no lapse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn issue13_random_clerk_names_are_throttled_and_argon2_stays_bounded() {
    const THREADS: usize = 1;
    const ATTACKERS: usize = 6;
    const TASKS_PER_ATTACKER: usize = 2;
    const PAUSE: Duration = Duration::from_millis(20);
    const ATTACK: Duration = Duration::from_secs(3);
    let v = vendor_with_config(
        "password_hashes_in_flight_max = 1\npassword_hash_queue_max = 2\n\
         terminal_login_burst_max = 4\nterminal_login_interval_ms = 500\n",
    )
    .await;
    let (legit, s) = logged_in(&v, v.addr).await;
    let link = s.start_link().unwrap();
    let mut counter_view = link.status.clone();
    wait_for(&mut counter_view, LONG, "counter link up", |st| {
        st.state == LinkState::Up
    })
    .await;
    let vendor_link = v.server.terminal_link(legit.terminal_id).unwrap();
    let mut vendor_view = vendor_link.link.status.clone();
    wait_for(&mut vendor_view, LONG, "vendor link up", |st| {
        st.state == LinkState::Up
    })
    .await;
    let rss_before = rss_bytes();

    let mut attackers = Vec::new();
    for _ in 0..ATTACKERS {
        attackers.push(enrolled_counter(&v, v.addr).await);
    }
    let until = Instant::now() + ATTACK;
    let mut tasks = Vec::new();
    for a in &attackers {
        for _ in 0..TASKS_PER_ATTACKER {
            let conn = a.conn.clone();
            let key = a.device_key.clone();
            let terminal = a.terminal_id;
            tasks.push(tokio::spawn(async move {
                let (mut busy, mut bad, mut other) = (0u32, 0u32, Vec::new());
                while Instant::now() < until {
                    let name = format!("x{:016x}", rand::random::<u64>());
                    match code(&conn.login(terminal, &key, &name, "guess guess").await) {
                        Some(ErrorCode::Busy) => busy += 1,
                        Some(ErrorCode::BadCredentials) => bad += 1,
                        c => other.push(c),
                    }
                    tokio::time::sleep(PAUSE).await;
                }
                (busy, bad, other)
            }));
        }
    }
    let (mut busy, mut bad) = (0, 0);
    for t in tasks {
        let (b, w, other) = t.await.unwrap();
        assert!(other.is_empty(), "unexpected answers {other:?}");
        busy += b;
        bad += w;
    }
    let stats = v.server.password_pool_stats();
    eprintln!("random names: {busy} busy, {bad} checked; pool {stats:?}");
    assert!(
        stats.in_flight_peak <= THREADS,
        "{} argon2 at once",
        stats.in_flight_peak
    );
    assert!(busy > 0, "no attempt was throttled ({bad} checked)");
    // Each attacker: its burst, then one per interval.
    let allowed = ATTACKERS as u64 * (4 + ATTACK.as_millis() as u64 / 500 + 1);
    assert!(
        u64::from(bad) <= allowed,
        "{bad} random-name attempts checked, the rate allows {allowed}"
    );
    if let (Some(before), Some(after)) = (rss_before, rss_bytes()) {
        assert!(
            after.saturating_sub(before) < 256 * 1024 * 1024,
            "RSS grew from {before} to {after} bytes"
        );
    }
    // The counter connected all along never lapsed and still works.
    assert_eq!(counter_view.borrow().lapses, 0, "counter-side lapses");
    assert_eq!(vendor_view.borrow().lapses, 0, "vendor-side lapses");
    assert_eq!(*link.state.borrow(), LinkState::Up);
    s.clock_check(frank::clock::unix_ms()).await.unwrap();
    // A fresh legitimate login goes through.
    let (_c2, s2) = logged_in(&v, v.addr).await;
    s2.ping().await.unwrap();
}
