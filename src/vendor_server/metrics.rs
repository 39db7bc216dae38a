//! Prometheus metrics of a vendor front (issue 17): `frank vendor serve --metrics ADDR` serves
//! them at `GET /metrics` in the Prometheus text exposition format (version 0.0.4), encoded by
//! `prometheus-client`. docs/OPERATIONS.md lists every metric and what to alert on.
//!
//! Two kinds of figure: instruments updated where the work happens (requests by operation and
//! answer code, their latency) and figures read from the front's own state at each scrape
//! ([`FrontCollector`]: connections, sessions, links by state, keepalive verdicts and lapses,
//! monitor subscribers, limits that acted, reaper passes). A scrape takes a few locks briefly
//! and does no database work, so scraping cannot load the ledger.
//!
//! The HTTP side is deliberately small (one `GET`, a bounded request head, a deadline, at most
//! `METRICS_CONNECTIONS_MAX` connections at once): bind it to loopback or a management network;
//! it carries no secret but tells how busy the front is.

use super::server::Shared;
use crate::link::LinkState;
use crate::link::driver::LINK_TOTALS;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Scrapes served at once; a further connection is closed unanswered.
pub const METRICS_CONNECTIONS_MAX: usize = 8;
/// The most bytes of a request head read before it is refused.
pub const METRICS_REQUEST_BYTES_MAX: usize = 4096;
/// How long one scrape connection may take, reading and writing.
pub const METRICS_REQUEST_TIMEOUT_MS: u64 = 5_000;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The request's type as on the wire (`authorize`, `login`, …).
    op: &'static str,
    /// `ok`, or the error code answered (`insufficient_funds`, `bad_mac`, …).
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OpLabel {
    op: &'static str,
}

/// Latency buckets: 0.5 ms doubling to about 8 s.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// The instruments the request path updates.
#[derive(Debug)]
pub struct RequestMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<OpLabel, Histogram, fn() -> Histogram>,
}

impl Default for RequestMetrics {
    fn default() -> Self {
        RequestMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

impl RequestMetrics {
    /// One request of type `op` answered with `code` (`None`: success) after `elapsed`.
    pub fn observe(
        &self,
        op: crate::wire::Operation,
        code: Option<crate::wire::ErrorCode>,
        elapsed: Duration,
    ) {
        let code = match code {
            None => "ok".to_string(),
            Some(c) => code_name(c),
        };
        self.requests
            .get_or_create(&RequestLabels {
                op: op.as_str(),
                code,
            })
            .inc();
        self.latency
            .get_or_create(&OpLabel { op: op.as_str() })
            .observe(elapsed.as_secs_f64());
    }
}

/// An error code's wire name (`insufficient_funds`).
fn code_name(code: crate::wire::ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_string(),
    }
}

/// Figures read from the front's state at each scrape.
#[derive(Debug)]
struct FrontCollector {
    shared: Weak<Shared>,
    endpoint: quinn::Endpoint,
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: i64) -> std::fmt::Result {
    let g = ConstGauge::new(value);
    g.encode(e.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> std::fmt::Result {
    let c = ConstCounter::new(value);
    c.encode(e.encode_descriptor(name, help, None, c.metric_type())?)
}

/// A family of one label over `rows`, of counters or gauges.
fn family<M: EncodeMetric + Default>(
    e: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    label: &'static str,
    rows: &[(&'static str, M)],
) -> std::fmt::Result {
    let metric_type = M::default().metric_type();
    let mut fe = e.encode_descriptor(name, help, None, metric_type)?;
    for (value, m) in rows {
        let labels = [(label, *value)];
        m.encode(fe.encode_family(&labels)?)?;
    }
    Ok(())
}

fn signed(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Collector for FrontCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Some(shared) = self.shared.upgrade() else {
            return Ok(());
        };
        gauge(
            &mut e,
            "frank_connections",
            "QUIC connections open on this front.",
            signed(self.endpoint.open_connections()),
        )?;
        let (live, resumable) = {
            let sessions = super::server::lock(&shared.sessions);
            (
                sessions.live(),
                sessions.len().saturating_sub(sessions.live()),
            )
        };
        gauge(
            &mut e,
            "frank_sessions_live",
            "Sessions bound to a connection.",
            signed(live),
        )?;
        gauge(
            &mut e,
            "frank_sessions_resumable",
            "Sessions whose connection ended, resumable until session_resume_ms_max.",
            signed(resumable),
        )?;
        let (mut up, mut lapsed, mut down) = (0i64, 0i64, 0i64);
        for link in super::server::lock(&shared.links).values() {
            match link.link.status.borrow().state {
                LinkState::Up => up += 1,
                LinkState::Lapsed => lapsed += 1,
                _ => down += 1,
            }
        }
        family(
            &mut e,
            "frank_links",
            "Terminal links on this front by keepalive state.",
            "state",
            &[
                ("up", ConstGauge::new(up)),
                ("lapsed", ConstGauge::new(lapsed)),
                ("down", ConstGauge::new(down)),
            ],
        )?;
        let (k, lapses) = LINK_TOTALS.snapshot();
        counter(
            &mut e,
            "frank_link_lapses",
            "Links that went from up to lapsed (three keepalive intervals without a fresh one).",
            lapses,
        )?;
        counter(
            &mut e,
            "frank_keepalives_sent",
            "Keepalive datagrams this front sent.",
            k.sent,
        )?;
        family(
            &mut e,
            "frank_keepalives_received",
            "Keepalive datagrams received, by verdict (fresh and late verified; the rest rejected).",
            "verdict",
            &[
                ("fresh", ConstCounter::new(k.fresh)),
                ("late", ConstCounter::new(k.late)),
                ("malformed", ConstCounter::new(k.malformed)),
                ("wrong_session", ConstCounter::new(k.wrong_session)),
                ("replayed", ConstCounter::new(k.replayed)),
                ("stale", ConstCounter::new(k.stale)),
                ("bad_mac", ConstCounter::new(k.bad_mac)),
            ],
        )?;
        gauge(
            &mut e,
            "frank_monitor_subscribers",
            "Admin monitor subscriptions open.",
            signed(shared.monitor.subscribers()),
        )?;
        let l = shared.limits_hit.snapshot();
        family(
            &mut e,
            "frank_limits_acted",
            "Times a connection or request limit acted, by limit.",
            "limit",
            &[
                ("retry_sent", ConstCounter::new(l.retries_sent)),
                (
                    "connections_max",
                    ConstCounter::new(l.refused_connections_max),
                ),
                (
                    "connections_per_source_max",
                    ConstCounter::new(l.refused_per_source),
                ),
                (
                    "handshakes_per_source_per_minute",
                    ConstCounter::new(l.refused_handshake_rate),
                ),
                (
                    "login_deadline_ms",
                    ConstCounter::new(l.closed_at_login_deadline),
                ),
                (
                    "request_read_timeout_ms",
                    ConstCounter::new(l.streams_reset_read_timeout),
                ),
                (
                    "response_write_timeout_ms",
                    ConstCounter::new(l.streams_reset_write_timeout),
                ),
                ("scan_budget", ConstCounter::new(l.scans_limited)),
            ],
        )?;
        let b = &shared.bundles.counters;
        counter(
            &mut e,
            "frank_bundle_lists",
            "`bundles` answers: counters asking which signed bundles are current.",
            b.lists.load(std::sync::atomic::Ordering::Relaxed),
        )?;
        family(
            &mut e,
            "frank_bundle_downloads",
            "`bundle_file` answers by outcome (complete, refused, cut short).",
            "outcome",
            &[
                (
                    "complete",
                    ConstCounter::new(b.files_complete.load(std::sync::atomic::Ordering::Relaxed)),
                ),
                (
                    "refused",
                    ConstCounter::new(b.files_refused.load(std::sync::atomic::Ordering::Relaxed)),
                ),
                (
                    "cut",
                    ConstCounter::new(b.files_cut.load(std::sync::atomic::Ordering::Relaxed)),
                ),
            ],
        )?;
        counter(
            &mut e,
            "frank_bundle_bytes_sent",
            "Bundle file bytes written to counters.",
            b.bytes_sent.load(std::sync::atomic::Ordering::Relaxed),
        )?;
        gauge(
            &mut e,
            "frank_bundle_downloads_in_flight",
            "`bundle_file` answers being written now (at most BUNDLE_DOWNLOADS_IN_FLIGHT_MAX).",
            signed(shared.bundles.downloads_in_flight()),
        )?;
        counter(
            &mut e,
            "frank_reaper_expiry_passes",
            "Reaper passes that committed expired reservations as unsettled.",
            *shared.ledger.expirations().borrow(),
        )?;
        Ok(())
    }
}

/// The registry a front serves: its request instruments and its state collector.
pub(super) fn registry(shared: &Arc<Shared>, endpoint: quinn::Endpoint) -> Registry {
    let mut r = Registry::default();
    r.register(
        "frank_requests",
        "Requests answered, by type and answer code.",
        shared.request_metrics.requests.clone(),
    );
    r.register(
        "frank_request_duration_seconds",
        "Time from a request read to its answer ready, by type.",
        shared.request_metrics.latency.clone(),
    );
    r.register_collector(Box::new(FrontCollector {
        shared: Arc::downgrade(shared),
        endpoint,
    }));
    r
}

/// What a scrape connection asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Route {
    Metrics,
    NotFound,
    MethodNotAllowed,
    BadRequest,
}

/// **Core**: the route of a complete request head (`GET /metrics HTTP/1.1` …).
pub fn route(head: &[u8]) -> Route {
    let Some(line) = head.split(|&b| b == b'\r' || b == b'\n').next() else {
        return Route::BadRequest;
    };
    let mut parts = line.split(|&b| b == b' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with(b"HTTP/1.") {
        return Route::BadRequest;
    }
    if method != b"GET" {
        return Route::MethodNotAllowed;
    }
    let path = target.split(|&b| b == b'?').next().unwrap_or_default();
    if path == b"/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// Serves `registry` on `listener` until the task is aborted.
pub async fn serve(listener: tokio::net::TcpListener, registry: Arc<Registry>) {
    let slots = Arc::new(tokio::sync::Semaphore::new(METRICS_CONNECTIONS_MAX));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of descriptors and the like: wait rather than spin.
                tracing::warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let deadline = Duration::from_millis(METRICS_REQUEST_TIMEOUT_MS);
            let _ = tokio::time::timeout(deadline, answer(stream, &registry)).await;
        });
    }
}

async fn answer(mut stream: tokio::net::TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    let route = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") || head.windows(2).any(|w| w == b"\n\n") {
            break route(&head);
        }
        if head.len() > METRICS_REQUEST_BYTES_MAX {
            break Route::BadRequest;
        }
    };
    let (status, body) = match route {
        Route::Metrics => {
            let mut text = String::new();
            match prometheus_client::encoding::text::encode(&mut text, registry) {
                Ok(()) => ("200 OK", text),
                Err(_) => ("500 Internal Server Error", "encoding failed\n".to_string()),
            }
        }
        Route::NotFound => (
            "404 Not Found",
            "only /metrics is served here\n".to_string(),
        ),
        Route::MethodNotAllowed => ("405 Method Not Allowed", "use GET\n".to_string()),
        Route::BadRequest => ("400 Bad Request", "bad request\n".to_string()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Operation;

    #[test]
    fn routes_only_get_metrics() {
        assert_eq!(
            route(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics
        );
        assert_eq!(route(b"GET /metrics?x=1 HTTP/1.0\r\n\r\n"), Route::Metrics);
        assert_eq!(route(b"GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(
            route(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Route::MethodNotAllowed
        );
        assert_eq!(route(b"GET /metrics\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"\r\n\r\n"), Route::BadRequest);
        assert_eq!(route(b"GET /metrics SSH-2.0\r\n\r\n"), Route::BadRequest);
    }

    #[test]
    fn a_request_is_counted_under_its_type_and_code() {
        let m = RequestMetrics::default();
        m.observe(Operation::Authorize, None, Duration::from_millis(3));
        m.observe(
            Operation::Authorize,
            Some(crate::wire::ErrorCode::InsufficientFunds),
            Duration::from_millis(1),
        );
        let mut r = Registry::default();
        r.register("frank_requests", "x", m.requests.clone());
        r.register("frank_request_duration_seconds", "x", m.latency.clone());
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(
            text.contains("frank_requests_total{op=\"authorize\",code=\"ok\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("frank_requests_total{op=\"authorize\",code=\"insufficient_funds\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("frank_request_duration_seconds_count{op=\"authorize\"} 2"),
            "{text}"
        );
    }
}
