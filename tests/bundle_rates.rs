//! Issue 17 item 1, the counter's side of signed bundles, through its real backend
//! (`Command`s in, `Backend` events out) against a child `frank vendor serve` over QUIC on
//! loopback, bundles published with the real `frank vendor bundle add`:
//! - rates on the counter come from the vendor's signed table: with no rates bundle the vendor's
//!   quote alone prices; once one is taken the table's price comes first, the vendor's own
//!   price follows and is the one an authorization carries (the table's is refused);
//! - downloads never while a job prints: a download under way is stopped when a label starts
//!   printing on the virtual printer, nothing is downloaded until the print ends, and it is
//!   downloaded whole after.

mod support;

use frank::counter::backend::{self, BackendConfig, PrinterSetup};
use frank::counter::bundles::BundleConfig;
use frank::indicium::address::{Zip4, Zip5};
use frank::indicium::kinds::{self, Day, Destination, Postage, Text, WeightOz};
use frank::indicium::{Item, MailClass};
use frank::link::guard::LinkState;
use frank::money::Cents;
use frank::printer::emulator::{Emulator, EmulatorOptions};
use frank::ui::event::{self, Backend, Command, JobId};
use std::path::Path;
use std::time::Duration;
use support::*;

/// Longest wait for one backend event, in ms.
const EVENT_WAIT_MS_MAX: u64 = 30_000;
/// Longest wait for a vendor figure to move or a bundle to be taken, in ms.
const FIGURE_WAIT_MS_MAX: u64 = 60_000;
/// Quotes asked before a rates bundle just taken prices one.
const REQUOTES_MAX: u64 = 100;
const ORIGIN: &str = "94105";
const RATES: &str = include_str!("../rates/sample-rates.toml");
/// The vendor's (sample) price of a first-class 1 oz piece, in cents, in every zone.
const VENDOR_CENTS: u64 = 73;
/// The signed table's price of the same piece.
const TABLE_CENTS: u64 = 80;

/// A vendor with its metrics on, a release key, and a session of the same account (funded)
/// to watch what the vendor offers.
struct Setup {
    v: ChildVendor,
    metrics: std::net::SocketAddr,
    work: tempfile::TempDir,
    release_key: std::path::PathBuf,
    release_pin: ed25519_dalek::VerifyingKey,
    watcher: frank::counter::client::Session,
    _link: frank::link::driver::LinkHandle,
}

impl Setup {
    async fn new() -> Setup {
        let (v, metrics) = child_vendor_with_metrics("Rates PO").await;
        let work = tempfile::tempdir().unwrap();
        let release_key = work.path().join("release-key.pem");
        let fp = release_key_init(&release_key);
        let (watcher, link) = session_on(v.addr, v.key, &v.code, "watcher", CLERK, PASSWORD).await;
        fund_until_ok(&watcher, 10_000).await;
        Setup {
            v,
            metrics,
            work,
            release_key,
            release_pin: frank::identity::parse_fingerprint(&fp).unwrap(),
            watcher,
            _link: link,
        }
    }

    /// `frank vendor bundle add NAME --kind rates --version VERSION` with `rates` as its file;
    /// returns once the vendor offers it.
    async fn publish_rates(&self, version: &str, rates: &str) {
        let file = self.work.path().join("rates.toml");
        std::fs::write(&file, rates).unwrap();
        let data = self.v.dir.path().join("vendor");
        frank_ok(&[
            "vendor",
            "bundle",
            "add",
            "--data",
            data.to_str().unwrap(),
            "rates",
            "--kind",
            "rates",
            "--version",
            version,
            "--release-key",
            self.release_key.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        wait_offered(&self.watcher, "rates", Some(version)).await;
    }

    /// One sample of the vendor's metrics, 0 when absent.
    fn metric(&self, series: &str) -> f64 {
        metric(self.metrics, series)
    }

    fn backend_config(&self, dir: &Path) -> BackendConfig {
        let mut cfg = BackendConfig::new(vec![self.v.addr], self.v.key, dir.to_path_buf());
        cfg.enroll_code = Some(self.v.code.clone());
        cfg.terminal_name = "rates-counter".into();
        cfg.origin_zip = ORIGIN.into();
        cfg.authorize_retry_ms_max = 5_000;
        cfg.money_retry_ms_max = 5_000;
        cfg.bundles = Some(BundleConfig::new(self.release_pin, dir.to_path_buf()));
        cfg
    }
}

/// The sample table with the first-class 1 oz row at [`TABLE_CENTS`] in every zone.
fn table_rates() -> String {
    let row = "[73, 73, 73, 73, 73, 73, 73, 73, 73]";
    assert!(RATES.contains(row));
    RATES
        .replace(
            row,
            &format!("[{}]", vec![TABLE_CENTS.to_string(); 9].join(", ")),
        )
        .replace("SAMPLE RATES - not USPS prices", "Signed test rates")
}

async fn next_event(
    rx: &mut tokio::sync::mpsc::Receiver<Backend>,
    what: &str,
    pick: impl FnMut(&Backend) -> bool,
) -> Backend {
    support::backend::next_event_within(rx, Duration::from_millis(EVENT_WAIT_MS_MAX), what, pick)
        .await
}

type Channels = (
    tokio::sync::mpsc::Sender<Command>,
    tokio::sync::mpsc::Receiver<Backend>,
);

async fn sign_in(
    ctx: &tokio::sync::mpsc::Sender<Command>,
    erx: &mut tokio::sync::mpsc::Receiver<Backend>,
) {
    ctx.send(Command::SignIn {
        clerk: CLERK.into(),
        password: event::Secret::new(PASSWORD),
    })
    .await
    .unwrap();
    next_event(erx, "SignedIn", |e| matches!(e, Backend::SignedIn { .. })).await;
}

fn start(cfg: BackendConfig) -> (Channels, tokio::task::JoinHandle<()>) {
    let (ctx, crx) = tokio::sync::mpsc::channel(event::COMMANDS_QUEUE_MAX);
    let (etx, erx) = tokio::sync::mpsc::channel(event::EVENTS_QUEUE_MAX);
    let task = backend::spawn(cfg, crx, etx);
    ((ctx, erx), task)
}

/// Asks the backend for the price of a first-class 1 oz piece to 02108.
async fn request_quote(ctx: &tokio::sync::mpsc::Sender<Command>, request: u64) {
    ctx.send(Command::RequestQuote {
        request,
        class: MailClass::FirstClass,
        weight_oz: 1,
        from_zip: ORIGIN.into(),
        to_zip: "02108".into(),
    })
    .await
    .unwrap();
}

/// A first-class 1 oz quote: the events answering it, up to the vendor's (`Quote` or
/// `QuoteFailed`), in order.
async fn quote(
    ctx: &tokio::sync::mpsc::Sender<Command>,
    erx: &mut tokio::sync::mpsc::Receiver<Backend>,
    request: u64,
) -> Vec<Backend> {
    request_quote(ctx, request).await;
    let mut got = Vec::new();
    loop {
        let e = next_event(erx, "an answer to the quote", |e| {
            matches!(e,
                Backend::TablePrice { request: r, .. }
                | Backend::Quote { request: r, .. }
                | Backend::QuoteFailed { request: r, .. } if *r == request)
        })
        .await;
        let last = !matches!(e, Backend::TablePrice { .. });
        got.push(e);
        if last {
            return got;
        }
    }
}

fn postage() -> Item {
    Item::Postage(Postage {
        class: MailClass::FirstClass,
        weight: WeightOz::new(1).unwrap(),
        destination: Destination::new(
            Zip5::parse("02108").unwrap(),
            Some(Zip4::parse("1234").unwrap()),
            None,
        )
        .unwrap(),
    })
}

/// Authorizes `item` at `cents`: Ok on `Authorized`, the words on `AuthorizeFailed`.
async fn authorize(
    ctx: &tokio::sync::mpsc::Sender<Command>,
    erx: &mut tokio::sync::mpsc::Receiver<Backend>,
    job: JobId,
    item: Item,
    cents: u64,
) -> Result<(), String> {
    ctx.send(Command::Authorize {
        job,
        item: Box::new(item),
        amount: Cents::new(cents).unwrap(),
        label: Box::default(),
    })
    .await
    .unwrap();
    match next_event(erx, "the authorization's answer", |e| {
        matches!(e, Backend::Authorized { job: j } | Backend::AuthorizeFailed { job: j, .. } if *j == job)
    })
    .await
    {
        Backend::Authorized { .. } => Ok(()),
        Backend::AuthorizeFailed { reason, .. } => Err(reason),
        _ => unreachable!(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counter_prices_from_the_signed_table_and_authorizes_at_the_vendors_price() {
    let s = Setup::new().await;
    let home = tempfile::tempdir().unwrap();
    let ((ctx, mut erx), task) = start(s.backend_config(home.path()));
    sign_in(&ctx, &mut erx).await;

    // No rates bundle yet: the vendor's quote alone prices.
    let answers = quote(&ctx, &mut erx, 1).await;
    assert!(
        matches!(&answers[..], [Backend::Quote { amount, .. }] if amount.get() == VENDOR_CENTS),
        "{answers:?}"
    );

    // A signed table is published and taken at the next sign-in.
    s.publish_rates("2", &table_rates()).await;
    ctx.send(Command::SignOut).await.unwrap();
    sign_in(&ctx, &mut erx).await;
    let mut request = 2;
    let answers = loop {
        let answers = quote(&ctx, &mut erx, request).await;
        if answers.len() > 1 {
            break answers;
        }
        request += 1;
        assert!(
            request < REQUOTES_MAX,
            "the rates bundle never priced a quote"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // The table's price first, then the vendor's own.
    match &answers[..] {
        [
            Backend::TablePrice { amount, table, .. },
            Backend::Quote { amount: vendor, .. },
        ] => {
            assert_eq!(amount.get(), TABLE_CENTS);
            assert_eq!(table, "rates 2");
            assert_eq!(vendor.get(), VENDOR_CENTS);
        }
        other => panic!("{other:?}"),
    }

    // The vendor authorizes at its own price, not the table's.
    let refused = authorize(&ctx, &mut erx, JobId(1), postage(), TABLE_CENTS).await;
    assert!(
        refused
            .as_ref()
            .is_err_and(|r| r.contains("vendor's price")),
        "{refused:?}"
    );
    authorize(&ctx, &mut erx, JobId(2), postage(), VENDOR_CENTS)
        .await
        .expect("authorized at the vendor's price");
    ctx.send(Command::Void { job: JobId(2) }).await.unwrap();

    // A restarted counter prices from the table it kept, before any sign-in.
    ctx.send(Command::Quit).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(EVENT_WAIT_MS_MAX), task).await;
    let ((ctx, mut erx), task) = start(s.backend_config(home.path()));
    request_quote(&ctx, 1).await;
    let e = next_event(&mut erx, "the table's price", |e| {
        matches!(e, Backend::TablePrice { .. })
    })
    .await;
    assert!(
        matches!(&e, Backend::TablePrice { amount, .. } if amount.get() == TABLE_CENTS),
        "{e:?}"
    );
    ctx.send(Command::Quit).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(EVENT_WAIT_MS_MAX), task).await;
}

/// Waits until `pred` holds of the vendor's metrics or `stop` has an event; returns whether
/// `pred` held first.
async fn figure_or_event(
    s: &Setup,
    erx: &mut tokio::sync::mpsc::Receiver<Backend>,
    pred: impl Fn(&Setup) -> bool,
    mut stop: impl FnMut(&Backend) -> bool,
) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FIGURE_WAIT_MS_MAX);
    loop {
        if pred(s) {
            return true;
        }
        while let Ok(e) = erx.try_recv() {
            if stop(&e) {
                return false;
            }
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bundle_download_stops_while_a_job_prints_and_runs_after() {
    let s = Setup::new().await;
    // A rates bundle of about 256 KiB (the table and comment lines), downloaded at 32 KiB/s:
    // about eight seconds on the wire.
    let mut big = table_rates();
    while big.len() < 256 * 1024 {
        big.push_str("# padding: this line makes the bundle big enough to watch it download\n");
    }
    s.publish_rates("2", &big).await;
    // A slow line (1200 baud, the streamer pacing to it too): a label takes seconds.
    let mut profile = frank::printer::profile::shipped("virtual").unwrap();
    profile.serial.baud = 1200;
    let printer = Emulator::spawn(
        &profile,
        EmulatorOptions {
            baud: None,
            out_dir: None,
            control_socket: None,
        },
    )
    .unwrap();
    let home = tempfile::tempdir().unwrap();
    let mut cfg = s.backend_config(home.path());
    cfg.printer = Some(PrinterSetup {
        device: printer.device_path().to_path_buf(),
        profile,
    });
    if let Some(b) = cfg.bundles.as_mut() {
        b.download_bytes_per_s = 32 * 1024;
    }
    let ((ctx, mut erx), task) = start(cfg);
    sign_in(&ctx, &mut erx).await;
    next_event(
        &mut erx,
        "link up",
        |e| matches!(e, Backend::LinkChanged(l) if l.state == LinkState::Up),
    )
    .await;
    let good = home.path().join("bundles/rates/good");

    // The download is under way: the vendor has sent bytes (all of them may already sit in
    // the counter's receive window; the counter reads them at its own pace).
    let served = |s: &Setup| s.metric("frank_requests_total{op=\"bundle_file\",code=\"ok\"}");
    assert!(
        figure_or_event(
            &s,
            &mut erx,
            |s| s.metric("frank_bundle_bytes_sent_total") > 0.0,
            |_| false
        )
        .await
    );
    assert!(!good.exists());

    // A label prints: the download in progress is dropped, none starts while it prints.
    let job = JobId(1);
    let coupon = Item::Coupon(kinds::Coupon {
        offer: Text::new("offer", "Free stamp").unwrap(),
        value: Cents::new(150).unwrap(),
        expiry: Day::parse("expiry", "2040-01-31").unwrap(),
    });
    authorize(&ctx, &mut erx, job, coupon, 150).await.unwrap();
    ctx.send(Command::Print { job }).await.unwrap();
    let started = std::time::Instant::now();
    let outcome = next_event(
        &mut erx,
        "the print's outcome",
        |e| matches!(e, Backend::PrintOutcome { job: j, .. } if *j == job),
    )
    .await;
    let printed_ms = started.elapsed().as_millis();
    assert!(
        matches!(
            &outcome,
            Backend::PrintOutcome {
                outcome: frank::printer::streamer::JobOutcome::Completed { .. },
                ..
            }
        ),
        "{outcome:?}"
    );
    // The print outlasted the pause between tries of a file: a download that did not wait
    // for it would have been asked again while it printed.
    assert!(
        printed_ms > u128::from(frank::counter::bundles::FILE_RETRY_PAUSE_MS) * 2,
        "the label printed in {printed_ms} ms: too fast to show anything"
    );
    // Not taken while it printed, and the file was asked once: the one dropped.
    assert!(!good.exists(), "a bundle was taken while a job printed");
    assert!(
        served(&s) <= 1.0,
        "a download ran while the job printed ({} answers)",
        served(&s)
    );

    // After it, the file is asked again and the bundle taken whole.
    let deadline = tokio::time::Instant::now() + Duration::from_millis(FIGURE_WAIT_MS_MAX);
    while std::fs::read_to_string(&good).ok().as_deref() != Some("2") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the bundle was not taken after the print"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        served(&s),
        2.0,
        "the file was downloaded again after the print"
    );
    assert!(s.metric("frank_bundle_bytes_sent_total") > big.len() as f64);
    let store = frank::counter::bundles::Store::new(home.path(), s.release_pin);
    let (label, _) = frank::counter::bundles::installed_rates(&store).unwrap();
    assert_eq!(label, "rates 2");
    ctx.send(Command::Quit).await.unwrap();
    let _ = tokio::time::timeout(Duration::from_millis(EVENT_WAIT_MS_MAX), task).await;
    drop(printer);
}
