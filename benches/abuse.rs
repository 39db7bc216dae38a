//! `cargo bench --bench abuse [-- --quick]`: the vendor under hostile clients (issue 13).
//!
//! One `frank vendor serve` child process (the release binary, its own data directory) on
//! loopback. Beside every attack run, for the same fixed time:
//! - a **legitimate counter**, connected and logged in all along: its link lapses are counted
//!   (`legit_lapses`) and it pings the vendor every 50 ms (`legit_p99_ms`, the p99 ping time);
//! - a **4-terminal loadgen** (authorize → commit pairs): `loadgen_ratio` = its pairs/s during
//!   the attack ÷ its pairs/s in a quiet run before the attacks, same run;
//! - the vendor's VmRSS, sampled every 100 ms (`vendor_rss_mb`: the highest seen; the process
//!   keeps what it once held, so it only grows from phase to phase; `vendor_rss_mb_after_baseline`
//!   is what the quiet loadgen run alone left).
//!
//! Attacks (each bounded in count and time; every one loopback only, each from its own address
//! 127.0.0.10, .11, … — another source than the counter's and the loadgen's 127.0.0.1, as
//! another host would be; an attacker the vendor refuses outright makes 0 `attack_requests`):
//! - `concurrent_logins`: one enrolled terminal, 64 wrong-password logins at once, again and
//!   again (Why 1);
//! - `session_leak`: 16 concurrent right-password logins on one connection, then close it,
//!   again and again (Why 2);
//! - `random_clerks`: one enrolled terminal, 48 logins in flight with random clerk names (Why 3);
//! - `connection_flood`: one source opens up to 400 connections, each with 16 streams holding
//!   an unfinished 65 KB request (Why 4);
//! - `scan_replay`: one printed indicium scanned over fresh connections by 8 workers (Why 5);
//! - `statement_flood`: an authenticated clerk asks for whole-history statements, 16 at once
//!   (Why 6);
//! - `monitor_flood`: a supervisor opens up to 28 monitor subscriptions and reads them (Why 6).
//!
//! Goals: `legit_lapses` = 0 and `loadgen_ratio` ≥ 0.5 for every attack; `vendor_rss_mb` ≤ 512
//! throughout. The last stdout line is JSON. `--quick` runs 5 s per phase (under 2 minutes).

#[path = "../tests/support/mod.rs"]
mod support;

use frank::counter::client::{self, Session};
use frank::counter::loadgen::{self, LoadgenConfig};
use frank::link::LinkState;
use frank::wire::{self, WireItem};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SUPERVISOR: &str = "boss";
const SUPERVISOR_PASSWORD: &str = "supervisor password";
/// Attack sizes (the measurements).
const WRONG_LOGINS_AT_ONCE: usize = 64;
const SESSION_LEAK_LOGINS: usize = 16;
const RANDOM_CLERKS_IN_FLIGHT: usize = 48;
const FLOOD_CONNECTIONS_MAX: usize = 400;
const FLOOD_STREAMS_PER_CONNECTION: usize = 16;
const FLOOD_STREAM_BYTES: usize = 65_000;
const SCAN_WORKERS: usize = 8;
const SCANS_PER_CONNECTION: usize = 64;
const STATEMENTS_IN_FLIGHT: usize = 16;
const MONITOR_SUBSCRIPTIONS: usize = 28;
/// Each attack task stops by its deadline; one request waits at most this long.
const REQUEST_WAIT_MS_MAX: u64 = 3_000;
/// An attack task pauses this long after the vendor refused it, so the attacker — in this
/// process, on the vendor's machine — does not spin on the cores the vendor and the loadgen
/// share (an attacker elsewhere would not take them); still hundreds of attempts a second.
const REFUSED_PAUSE_MS: u64 = 5;

async fn pause_after_refusal() {
    tokio::time::sleep(Duration::from_millis(REFUSED_PAUSE_MS)).await;
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

type Rig = support::ChildVendor;

async fn rig() -> Rig {
    support::child_vendor("Abuse Bench Post Office", |d, account| {
        d.add_clerk(account, SUPERVISOR, SUPERVISOR_PASSWORD, true, 1)
            .expect("supervisor");
    })
    .await
}

/// An enrolled terminal: its own endpoint (its own source port), device key and id.
struct Terminal {
    endpoint: quinn::Endpoint,
    device_key: ed25519_dalek::SigningKey,
    terminal_id: u64,
}

/// Where an attack comes from: its own loopback address (127.0.0.10, .11, … one per attack),
/// not the legitimate counter's and the loadgen's 127.0.0.1 — as each attacker would be
/// another host, with budgets of its own.
fn attacker_endpoint(attack: Attack) -> quinn::Endpoint {
    let ip = format!("127.0.0.{}:0", 10 + attack as u8);
    client::client_endpoint(ip.parse().expect("an address")).expect("attacker endpoint")
}

async fn enroll(r: &Rig, name: &str) -> Terminal {
    enroll_from(r, name, client::endpoint_for(r.addr).expect("endpoint")).await
}

/// An attacker's terminal, if the vendor lets the attacker connect and enroll at all.
async fn try_enroll_from(r: &Rig, name: &str, endpoint: quinn::Endpoint) -> Option<Terminal> {
    let conn = with_deadline(client::connect(&endpoint, r.addr, r.key))
        .await?
        .ok()?;
    let device_key = frank::identity::new_signing_key().unwrap();
    let e = with_deadline(conn.enroll(&r.code, name, &device_key, &r.key))
        .await?
        .ok()?;
    conn.conn.close(0u32.into(), b"enrolled");
    Some(Terminal {
        endpoint,
        device_key,
        terminal_id: e.terminal_id,
    })
}

/// An attacker's signed-in session on its own enrolled terminal, if the vendor lets it that far.
async fn attacker_session(
    r: &Rig,
    name: &str,
    attack: Attack,
    clerk: &str,
    password: &str,
) -> Option<Session> {
    let t = try_enroll_from(r, name, attacker_endpoint(attack)).await?;
    let conn = with_deadline(client::connect(&t.endpoint, r.addr, r.key))
        .await?
        .ok()?;
    with_deadline(conn.login(t.terminal_id, &t.device_key, clerk, password))
        .await?
        .ok()
}

async fn enroll_from(r: &Rig, name: &str, endpoint: quinn::Endpoint) -> Terminal {
    let conn = client::connect(&endpoint, r.addr, r.key)
        .await
        .expect("connect");
    let device_key = frank::identity::new_signing_key().unwrap();
    let e = conn
        .enroll(&r.code, name, &device_key, &r.key)
        .await
        .expect("enroll");
    conn.conn.close(0u32.into(), b"enrolled");
    Terminal {
        endpoint,
        device_key,
        terminal_id: e.terminal_id,
    }
}

async fn login(r: &Rig, t: &Terminal, clerk: &str, password: &str) -> Session {
    let conn = client::connect(&t.endpoint, r.addr, r.key)
        .await
        .expect("connect");
    conn.login(t.terminal_id, &t.device_key, clerk, password)
        .await
        .expect("login")
}

/// The legitimate counter: lapses and ping times while `on`.
struct Legit {
    lapses: Arc<AtomicU64>,
    pings_ms: Arc<std::sync::Mutex<Vec<f64>>>,
    _link: frank::link::driver::LinkHandle,
}

async fn legit(r: &Rig) -> Legit {
    let t = enroll(r, "legit").await;
    let s = login(r, &t, support::CLERK, support::PASSWORD).await;
    let link = s.start_link().expect("link");
    let mut state = link.state.clone();
    tokio::time::timeout(
        Duration::from_secs(10),
        state.wait_for(|s| *s == LinkState::Up),
    )
    .await
    .expect("legit link up")
    .expect("link watch");
    let lapses = Arc::new(AtomicU64::new(0));
    let l = lapses.clone();
    tokio::spawn(async move {
        while state.changed().await.is_ok() {
            if *state.borrow_and_update() == LinkState::Lapsed {
                l.fetch_add(1, Ordering::Relaxed);
            }
        }
    });
    let pings_ms = Arc::new(std::sync::Mutex::new(Vec::new()));
    let p = pings_ms.clone();
    tokio::spawn(async move {
        let _keep = t;
        loop {
            let started = Instant::now();
            let ok = tokio::time::timeout(Duration::from_millis(REQUEST_WAIT_MS_MAX), s.ping())
                .await
                .is_ok_and(|r| r.is_ok());
            let ms = if ok {
                started.elapsed().as_secs_f64() * 1000.0
            } else {
                REQUEST_WAIT_MS_MAX as f64
            };
            p.lock().unwrap_or_else(|e| e.into_inner()).push(ms);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    Legit {
        lapses,
        pings_ms,
        _link: link,
    }
}

async fn loadgen_pairs_per_s(r: &Rig, seconds: u64) -> f64 {
    loadgen::run(LoadgenConfig {
        vendors: vec![r.addr],
        pinned: r.key,
        code: r.code.clone(),
        clerk: support::CLERK.into(),
        password: support::PASSWORD.into(),
        terminals: 4,
        duration_s: seconds,
        void_every: 10,
        acks: None,
    })
    .await
    .map_or(0.0, |rep| rep.pairs_per_s)
}

#[derive(Debug, Clone, Copy)]
enum Attack {
    ConcurrentLogins,
    SessionLeak,
    RandomClerks,
    ConnectionFlood,
    ScanReplay,
    StatementFlood,
    MonitorFlood,
}

impl Attack {
    const ALL: [Attack; 7] = [
        Attack::ConcurrentLogins,
        Attack::SessionLeak,
        Attack::RandomClerks,
        Attack::ConnectionFlood,
        Attack::ScanReplay,
        Attack::StatementFlood,
        Attack::MonitorFlood,
    ];

    fn name(self) -> &'static str {
        match self {
            Attack::ConcurrentLogins => "concurrent_logins",
            Attack::SessionLeak => "session_leak",
            Attack::RandomClerks => "random_clerks",
            Attack::ConnectionFlood => "connection_flood",
            Attack::ScanReplay => "scan_replay",
            Attack::StatementFlood => "statement_flood",
            Attack::MonitorFlood => "monitor_flood",
        }
    }
}

/// Bounded by `until`: every loop checks it, every request waits at most
/// `REQUEST_WAIT_MS_MAX`.
async fn with_deadline<T>(f: impl std::future::Future<Output = T>) -> Option<T> {
    tokio::time::timeout(Duration::from_millis(REQUEST_WAIT_MS_MAX), f)
        .await
        .ok()
}

/// Runs `attack` until `until`; returns how many attack requests it made.
async fn run_attack(attack: Attack, r: Arc<Rig>, until: Instant, scan_payload: Vec<u8>) -> u64 {
    let sent = Arc::new(AtomicU64::new(0));
    match attack {
        Attack::ConcurrentLogins => {
            let Some(t) = try_enroll_from(&r, "attacker-logins", attacker_endpoint(attack)).await
            else {
                return 0;
            };
            let t = Arc::new(t);
            while Instant::now() < until {
                let mut tasks = Vec::new();
                for _ in 0..WRONG_LOGINS_AT_ONCE {
                    let (r, t, sent) = (r.clone(), t.clone(), sent.clone());
                    tasks.push(tokio::spawn(async move {
                        let Some(Ok(conn)) =
                            with_deadline(client::connect(&t.endpoint, r.addr, r.key)).await
                        else {
                            pause_after_refusal().await;
                            return;
                        };
                        sent.fetch_add(1, Ordering::Relaxed);
                        let _ = with_deadline(conn.login(
                            t.terminal_id,
                            &t.device_key,
                            support::CLERK,
                            "not the password",
                        ))
                        .await;
                        pause_after_refusal().await;
                        conn.conn.close(0u32.into(), b"done");
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
            }
        }
        Attack::SessionLeak => {
            let Some(t) = try_enroll_from(&r, "attacker-sessions", attacker_endpoint(attack)).await
            else {
                return 0;
            };
            let t = Arc::new(t);
            while Instant::now() < until {
                let Some(Ok(conn)) =
                    with_deadline(client::connect(&t.endpoint, r.addr, r.key)).await
                else {
                    pause_after_refusal().await;
                    continue;
                };
                let mut tasks = Vec::new();
                for _ in 0..SESSION_LEAK_LOGINS {
                    let (conn, t, sent) = (conn.clone(), t.clone(), sent.clone());
                    tasks.push(tokio::spawn(async move {
                        sent.fetch_add(1, Ordering::Relaxed);
                        let _ = with_deadline(conn.login(
                            t.terminal_id,
                            &t.device_key,
                            support::CLERK,
                            support::PASSWORD,
                        ))
                        .await;
                    }));
                }
                for task in tasks {
                    let _ = task.await;
                }
                conn.conn.close(0u32.into(), b"done");
            }
        }
        Attack::RandomClerks => {
            let Some(t) = try_enroll_from(&r, "attacker-clerks", attacker_endpoint(attack)).await
            else {
                return 0;
            };
            let t = Arc::new(t);
            let stop = Arc::new(AtomicBool::new(false));
            let mut tasks = Vec::new();
            for _ in 0..RANDOM_CLERKS_IN_FLIGHT {
                let (r, t, sent, stop) = (r.clone(), t.clone(), sent.clone(), stop.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < until && !stop.load(Ordering::Relaxed) {
                        let Some(Ok(conn)) =
                            with_deadline(client::connect(&t.endpoint, r.addr, r.key)).await
                        else {
                            pause_after_refusal().await;
                            continue;
                        };
                        let clerk = format!("c{:016x}", rand::random::<u64>());
                        sent.fetch_add(1, Ordering::Relaxed);
                        let _ = with_deadline(conn.login(
                            t.terminal_id,
                            &t.device_key,
                            &clerk,
                            "password guess",
                        ))
                        .await;
                        conn.conn.close(0u32.into(), b"done");
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
            stop.store(true, Ordering::Relaxed);
        }
        Attack::ConnectionFlood => {
            let endpoint = attacker_endpoint(attack);
            let mut held = Vec::new();
            let payload = vec![0xa3u8; FLOOD_STREAM_BYTES];
            for _ in 0..FLOOD_CONNECTIONS_MAX {
                if Instant::now() >= until {
                    break;
                }
                let Some(Ok(conn)) = with_deadline(client::connect(&endpoint, r.addr, r.key)).await
                else {
                    continue;
                };
                sent.fetch_add(1, Ordering::Relaxed);
                for _ in 0..FLOOD_STREAMS_PER_CONNECTION {
                    let c = conn.conn.clone();
                    let payload = payload.clone();
                    held.push(tokio::spawn(async move {
                        if let Some(Ok((mut send, _recv))) = with_deadline(c.open_bi()).await {
                            let _ = with_deadline(send.write_all(&payload)).await;
                            // Never finished: hold the stream open until the deadline.
                            tokio::time::sleep_until(until.into()).await;
                        }
                    }));
                }
                held.push(tokio::spawn(async move {
                    tokio::time::sleep_until(until.into()).await;
                    conn.conn.close(0u32.into(), b"done");
                }));
            }
            for h in held {
                let _ = h.await;
            }
        }
        Attack::ScanReplay => {
            let mut tasks = Vec::new();
            for _ in 0..SCAN_WORKERS {
                let (r, sent, payload) = (r.clone(), sent.clone(), scan_payload.clone());
                tasks.push(tokio::spawn(async move {
                    let endpoint = attacker_endpoint(attack);
                    while Instant::now() < until {
                        let Some(Ok(conn)) =
                            with_deadline(client::connect(&endpoint, r.addr, r.key)).await
                        else {
                            pause_after_refusal().await;
                            continue;
                        };
                        for _ in 0..SCANS_PER_CONNECTION {
                            if Instant::now() >= until {
                                break;
                            }
                            sent.fetch_add(1, Ordering::Relaxed);
                            if !matches!(with_deadline(conn.scan(&payload)).await, Some(Ok(_))) {
                                break;
                            }
                        }
                        conn.conn.close(0u32.into(), b"done");
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        }
        Attack::StatementFlood => {
            let Some(s) = attacker_session(
                &r,
                "attacker-statements",
                attack,
                support::CLERK,
                support::PASSWORD,
            )
            .await
            else {
                return 0;
            };
            let mut tasks = Vec::new();
            for _ in 0..STATEMENTS_IN_FLIGHT {
                let (s, sent) = (s.clone(), sent.clone());
                tasks.push(tokio::spawn(async move {
                    while Instant::now() < until {
                        sent.fetch_add(1, Ordering::Relaxed);
                        if !matches!(
                            with_deadline(s.statement(0, u64::MAX / 2)).await,
                            Some(Ok(_))
                        ) {
                            pause_after_refusal().await;
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        }
        Attack::MonitorFlood => {
            let Some(s) = attacker_session(
                &r,
                "attacker-monitor",
                attack,
                SUPERVISOR,
                SUPERVISOR_PASSWORD,
            )
            .await
            else {
                return 0;
            };
            let mut tasks = Vec::new();
            for _ in 0..MONITOR_SUBSCRIPTIONS {
                let (s, sent) = (s.clone(), sent.clone());
                tasks.push(tokio::spawn(async move {
                    sent.fetch_add(1, Ordering::Relaxed);
                    let Some(Ok((mut stream, _))) = with_deadline(s.subscribe_terminals()).await
                    else {
                        return;
                    };
                    while Instant::now() < until {
                        if tokio::time::timeout_at(until.into(), stream.next())
                            .await
                            .is_err()
                        {
                            break;
                        }
                    }
                }));
            }
            for task in tasks {
                let _ = task.await;
            }
        }
    }
    sent.load(Ordering::Relaxed)
}

#[derive(serde::Serialize)]
struct AttackFigures {
    legit_lapses: u64,
    legit_p99_ms: f64,
    loadgen_ratio: f64,
    vendor_rss_mb: f64,
    attack_requests: u64,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let phase_s: u64 = if quick { 5 } else { 15 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let r = Arc::new(rig().await);
        let pid = r.child.id().expect("vendor pid");
        let legit = legit(&r).await;
        // A printed piece for the scan replay (its indicium is what a photo of a label holds).
        let scan_payload = {
            let t = enroll(&r, "label-printer").await;
            let s = login(&r, &t, support::CLERK, support::PASSWORD).await;
            // Money moves only while the link is up (the vendor's own view follows ours).
            let link = s.start_link().expect("link");
            let mut st = link.state.clone();
            let _ = tokio::time::timeout(
                Duration::from_secs(10),
                st.wait_for(|s| *s == LinkState::Up),
            )
            .await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            support::fund_until_ok(&s, 10_000).await;
            let a = s
                .authorize(
                    rand::random(),
                    250,
                    WireItem::Coupon(wire::ValueItem {
                        text: "abuse bench".into(),
                        value_cents: 250,
                        expiry: "2040-01-01".into(),
                    }),
                    "10001",
                )
                .await
                .expect("authorize");
            a.indicium
        };
        let rss_before = support::rss_mb(pid);
        let baseline = loadgen_pairs_per_s(&r, phase_s).await;
        let rss_quiet = support::rss_mb(pid);
        println!(
            "baseline: {baseline:.0} pairs/s, vendor {rss_before:.0} MB before it, {rss_quiet:.0} MB after it"
        );
        let mut results = serde_json::Map::new();
        let mut worst_ratio = f64::INFINITY;
        let mut max_lapses = 0;
        let mut max_rss = rss_before;
        for attack in Attack::ALL {
            legit.lapses.store(0, Ordering::Relaxed);
            legit
                .pings_ms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clear();
            let peak = Arc::new(std::sync::Mutex::new(support::rss_mb(pid)));
            let sampler = {
                let peak = peak.clone();
                tokio::spawn(async move {
                    loop {
                        let now = support::rss_mb(pid);
                        {
                            let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                            *p = p.max(now);
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                })
            };
            let until = Instant::now() + Duration::from_secs(phase_s);
            let attack_task =
                tokio::spawn(run_attack(attack, r.clone(), until, scan_payload.clone()));
            let pairs = loadgen_pairs_per_s(&r, phase_s).await;
            let requests = attack_task.await.unwrap_or(0);
            sampler.abort();
            let mut pings = legit
                .pings_ms
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            pings.sort_by(f64::total_cmp);
            let f = AttackFigures {
                legit_lapses: legit.lapses.load(Ordering::Relaxed),
                legit_p99_ms: (percentile(&pings, 0.99) * 100.0).round() / 100.0,
                loadgen_ratio: if baseline > 0.0 {
                    ((pairs / baseline) * 1000.0).round() / 1000.0
                } else {
                    0.0
                },
                vendor_rss_mb: (*peak.lock().unwrap_or_else(|e| e.into_inner()) * 10.0).round()
                    / 10.0,
                attack_requests: requests,
            };
            println!(
                "{}: lapses {} p99 {:.1} ms loadgen ×{:.2} rss {:.0} MB ({} attack requests)",
                attack.name(),
                f.legit_lapses,
                f.legit_p99_ms,
                f.loadgen_ratio,
                f.vendor_rss_mb,
                f.attack_requests
            );
            worst_ratio = worst_ratio.min(f.loadgen_ratio);
            max_lapses = max_lapses.max(f.legit_lapses);
            max_rss = max_rss.max(f.vendor_rss_mb);
            results.insert(
                attack.name().into(),
                serde_json::to_value(&f).expect("figures serialize"),
            );
            // Let the vendor settle before the next attack.
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let out = serde_json::json!({
            "attacks": results,
            "baseline_pairs_per_s": (baseline * 10.0).round() / 10.0,
            "vendor_rss_mb_after_baseline": (rss_quiet * 10.0).round() / 10.0,
            "worst_loadgen_ratio": worst_ratio,
            "max_legit_lapses": max_lapses,
            "max_vendor_rss_mb": max_rss,
            "phase_s": phase_s,
            "quick": quick,
        });
        println!("{out}");
    });
}
