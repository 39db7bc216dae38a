//! Issue 17 item 2, from outside: a child `frank vendor serve --metrics ADDR` scraped over
//! HTTP like Prometheus would; the text parsed (names, types, samples); figures that move when
//! a terminal enrolls, logs in, keeps its link up and is refused a request.

mod support;

use frank::counter::client;
use frank::link::LinkState;
use frank::wire;
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Longest wait for a figure to move, in ms.
const FIGURE_WAIT_MS_MAX: u64 = 10_000;

fn free_tcp_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// One HTTP/1.1 exchange: the status line and the body.
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").expect("a complete response");
    (
        head.lines().next().unwrap_or_default().to_string(),
        body.to_string(),
    )
}

/// A scrape: metric family types (`# TYPE name type`) and samples (`name{labels}` → value).
struct Scrape {
    types: HashMap<String, String>,
    samples: HashMap<String, f64>,
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, body) = http(addr, "GET /metrics HTTP/1.1\r\nHost: test\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK");
    let mut types = HashMap::new();
    let mut samples = HashMap::new();
    for line in body.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, ty) = rest.split_once(' ').expect("# TYPE name type");
            types.insert(name.to_string(), ty.to_string());
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').expect("a sample has a value");
            let value: f64 = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}"));
            samples.insert(series.to_string(), value);
        }
    }
    assert!(
        body.trim_end().ends_with("# EOF"),
        "the exposition ends with # EOF"
    );
    Scrape { types, samples }
}

impl Scrape {
    fn get(&self, series: &str) -> f64 {
        self.samples.get(series).copied().unwrap_or(0.0)
    }
}

/// Scrapes until `pred` holds, or fails after [`FIGURE_WAIT_MS_MAX`].
async fn scrape_until(addr: SocketAddr, what: &str, pred: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FIGURE_WAIT_MS_MAX);
    loop {
        let s = tokio::task::spawn_blocking(move || scrape(addr))
            .await
            .unwrap();
        if pred(&s) {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One `bundle_file` request for a bundle nobody published: the vendor's framed refusal code.
async fn bundle_file_refusal(conn: &quinn::Connection) -> wire::ErrorCode {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    let request = wire::encode_request(&wire::Request::BundleFile(wire::BundleFileRequest {
        name: "nothing".into(),
        version: "1".into(),
        file: "rates.toml".into(),
    }));
    send.write_all(&request).await.unwrap();
    send.finish().unwrap();
    let answer = tokio::time::timeout(
        Duration::from_millis(FIGURE_WAIT_MS_MAX),
        recv.read_to_end(wire::RESPONSE_BYTES_MAX),
    )
    .await
    .unwrap()
    .unwrap();
    // A header frame: a 4-byte big-endian length, then the response.
    let (len, body) = answer.split_at(4);
    assert_eq!(
        u32::from_be_bytes(len.try_into().unwrap()) as usize,
        body.len()
    );
    match wire::decode_response::<wire::BundleFileHeader>(body) {
        Err(wire::ResponseError::Refused(b)) => b.code,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_endpoint_is_scraped_parsed_and_moves_with_the_work() {
    let metrics = free_tcp_port();
    let v = support::child_vendor_with(
        "Metrics PO",
        &["--metrics", &metrics.to_string()],
        |_, _| {},
    )
    .await;

    // Before any terminal: every family is there with its type.
    let before = tokio::task::spawn_blocking(move || scrape(metrics))
        .await
        .unwrap();
    // (The request families appear with their first request.)
    for (name, ty) in [
        ("frank_connections", "gauge"),
        ("frank_sessions_live", "gauge"),
        ("frank_sessions_resumable", "gauge"),
        ("frank_links", "gauge"),
        ("frank_link_lapses", "counter"),
        ("frank_keepalives_sent", "counter"),
        ("frank_keepalives_received", "counter"),
        ("frank_monitor_subscribers", "gauge"),
        ("frank_limits_acted", "counter"),
        ("frank_reaper_expiry_passes", "counter"),
    ] {
        assert_eq!(
            before.types.get(name).map(String::as_str),
            Some(ty),
            "{name}"
        );
    }
    assert_eq!(before.get("frank_links{state=\"up\"}"), 0.0);
    assert_eq!(before.get("frank_connections"), 0.0);

    // A terminal enrolls, is refused once, logs in and keeps its link up.
    let endpoint = support::endpoint();
    let conn = client::connect(&endpoint, v.addr, v.key).await.unwrap();
    let device = frank::identity::new_signing_key().unwrap();
    let enrolled = conn
        .enroll(&v.code, "counter-1", &device, &v.key)
        .await
        .unwrap();
    let refused = conn
        .login(
            enrolled.terminal_id,
            &device,
            support::CLERK,
            "not the password",
        )
        .await;
    assert!(refused.is_err());
    let session = conn
        .login(
            enrolled.terminal_id,
            &device,
            support::CLERK,
            support::PASSWORD,
        )
        .await
        .unwrap();
    let link = session.start_link().unwrap();
    let mut state = link.state.clone();
    support::wait_for(
        &mut state,
        Duration::from_millis(FIGURE_WAIT_MS_MAX),
        "link up",
        |s| *s == LinkState::Up,
    )
    .await;

    let during = scrape_until(metrics, "the link up with keepalives counted", |s| {
        s.get("frank_links{state=\"up\"}") == 1.0
            && s.get("frank_keepalives_received_total{verdict=\"fresh\"}") >= 3.0
    })
    .await;
    assert_eq!(during.types["frank_requests"], "counter");
    assert_eq!(during.types["frank_request_duration_seconds"], "histogram");
    assert_eq!(
        during.get("frank_requests_total{op=\"enroll\",code=\"ok\"}"),
        1.0
    );
    assert_eq!(
        during.get("frank_requests_total{op=\"login\",code=\"ok\"}"),
        1.0
    );
    assert_eq!(
        during.get("frank_requests_total{op=\"login\",code=\"bad_credentials\"}"),
        1.0
    );
    assert_eq!(
        during.get("frank_request_duration_seconds_count{op=\"login\"}"),
        2.0
    );
    assert_eq!(during.get("frank_connections"), 1.0);
    assert_eq!(during.get("frank_sessions_live"), 1.0);
    assert!(during.get("frank_keepalives_sent_total") >= 3.0);
    assert_eq!(
        during.get("frank_keepalives_received_total{verdict=\"bad_mac\"}"),
        0.0
    );
    assert_eq!(during.get("frank_link_lapses_total"), 0.0);

    // Bundle-file refusals are counted by their reason code: a file the vendor does not
    // offer, and one asked on a connection with no session.
    assert_eq!(
        bundle_file_refusal(&session.conn.conn).await,
        wire::ErrorCode::UnknownBundle
    );
    let stranger = client::connect(&endpoint, v.addr, v.key).await.unwrap();
    assert_eq!(
        bundle_file_refusal(&stranger.conn).await,
        wire::ErrorCode::NotLoggedIn
    );
    let refusals = scrape_until(metrics, "bundle_file refusals counted", |s| {
        s.get("frank_requests_total{op=\"bundle_file\",code=\"not_logged_in\"}") == 1.0
    })
    .await;
    assert_eq!(
        refusals.get("frank_requests_total{op=\"bundle_file\",code=\"unknown_bundle\"}"),
        1.0
    );
    assert_eq!(
        refusals.get("frank_requests_total{op=\"bundle_file\",code=\"ok\"}"),
        0.0
    );
    assert_eq!(
        refusals.get("frank_bundle_downloads_total{outcome=\"refused\"}"),
        2.0
    );

    // Keepalives keep being counted (a counter that moves on its own).
    let fresh = during.get("frank_keepalives_received_total{verdict=\"fresh\"}");
    scrape_until(metrics, "more fresh keepalives", |s| {
        s.get("frank_keepalives_received_total{verdict=\"fresh\"}") > fresh
    })
    .await;

    // Only GET /metrics is served.
    let (status, _) = tokio::task::spawn_blocking(move || {
        http(
            metrics,
            "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        )
    })
    .await
    .unwrap();
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed");
    let (status, _) = tokio::task::spawn_blocking(move || http(metrics, "GET / HTTP/1.1\r\n\r\n"))
        .await
        .unwrap();
    assert_eq!(status, "HTTP/1.1 404 Not Found");
    drop(link);
}
