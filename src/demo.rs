//! `frank demo`: an embedded vendor (temporary data directory, a demo account funded with
//! test money, a demo clerk), a fault proxy in front of it, a virtual printer on a pty that
//! saves every label as a PNG, and the counter UI pointed at them.
//!
//! `--headless` instead runs a screenless counter and has the proxy cut the link now and then
//! — a short cut the link rides out, a long one that forces a reconnect and a session resume.

use crate::counter::backend::{BackendConfig, PrinterSetup};
use crate::counter::headless::{self, HeadlessOptions};
use crate::counter::{client, tui};
use crate::faultproxy::FaultProxy;
use crate::printer::emulator::{Emulator, EmulatorOptions};
use crate::vendor_server::directory::Directory;
use crate::vendor_server::server::VendorServer;
use crate::vendor_server::{DB_FILE, DataDir};
use std::path::Path;
use std::time::Duration;

pub const DEMO_CLERK: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-password";
/// Test money loaded onto the demo account with the payment simulator's test card.
pub const DEMO_FUNDS_CENTS: u64 = 10_000;
/// The demo counter's ZIP.
pub const DEMO_ORIGIN_ZIP: &str = "20500";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after this many seconds (None: until Ctrl-C).
    pub duration_s: Option<u64>,
    /// Cut the link on a schedule to show detection and recovery (headless only).
    pub faults: bool,
    /// No screen: the link-status demo.
    pub headless: bool,
    /// Where labels are saved (default: a new folder in the temp dir, kept after the demo).
    pub labels_dir: Option<std::path::PathBuf>,
    /// The virtual printer's profile (a shipped id or a file): `virtual` (ESC/POS) or
    /// `zebra-virtual` (ZPL) — [`printer_profile_for`].
    pub printer_profile: String,
}

/// The demo's virtual printer profile for `--printer-language`: `zpl` → `zebra-virtual`,
/// anything else → `virtual` (ESC/POS).
pub fn printer_profile_for(language: &str) -> &'static str {
    match language {
        "zpl" => "zebra-virtual",
        _ => "virtual",
    }
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    if opts.headless {
        return run_headless(opts).await;
    }
    run_tui(opts).await
}

/// The counter UI against an embedded vendor and a virtual printer.
async fn run_tui(opts: DemoOptions) -> anyhow::Result<()> {
    // Before anything starts: without a terminal there is nothing to show the counter on.
    crate::ui::runner::require_terminal_for("frank demo", "frank demo --headless")?;
    let tmp = tempfile::Builder::new().prefix("frank-demo-").tempdir()?;
    let labels = match opts.labels_dir.clone() {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "frank-demo-labels-{}",
            time::OffsetDateTime::now_utc().unix_timestamp()
        )),
    };
    std::fs::create_dir_all(&labels)?;
    let _log = tui::init_file_logging(&tmp.path().join("logs"), "demo")?;
    let DemoVendor {
        code,
        server,
        proxy,
        ..
    } = start_vendor(tmp.path()).await?;
    let profile = crate::printer::cli::load_profile(&opts.printer_profile)?;
    let printer = Emulator::spawn(
        &profile,
        EmulatorOptions {
            baud: None,
            out_dir: Some(labels.clone()),
            control_socket: Some(tmp.path().join("printer.sock")),
        },
    )?;
    let mut backend = BackendConfig::new(
        vec![proxy.local_addr()],
        server.public_key(),
        tmp.path().join("terminal"),
    );
    backend.terminal_name = "demo-counter".into();
    backend.enroll_code = Some(code);
    backend.origin_zip = DEMO_ORIGIN_ZIP.into();
    backend.printer = Some(PrinterSetup {
        device: printer.device_path().to_path_buf(),
        profile: profile.clone(),
    });
    tui::ensure_enrolled(&backend, || anyhow::bail!("no code")).await?;
    // The key beside the labels, so the verify command on screen is short enough to copy.
    let fingerprint = crate::identity::fingerprint(&server.public_key());
    std::fs::write(labels.join(VENDOR_KEY_FILE), format!("{fingerprint}\n"))?;
    fund_demo_account(&backend).await?;
    let settings = tui::CounterSettings {
        app: crate::ui::AppConfig {
            printer_name: format!("virtual printer {}", printer.device_path().display()),
            info_lines: info_lines(&labels, &fingerprint),
            printer_profile: Some(profile.clone()),
            ..demo_app_config()?
        },
        backend,
        log_dir: None,
        kiosk_clerk: None,
        config_path: None,
        plain: false,
    };
    let ui = tui::run(settings, None);
    let result = match opts.duration_s {
        Some(s) => tokio::time::timeout(Duration::from_secs(s), ui)
            .await
            .unwrap_or(Ok(())),
        None => ui.await,
    };
    drop(printer);
    server.shutdown().await;
    println!("Frank demo ended. Labels printed: {}", labels.display());
    result
}

/// The vendor key's file in the labels folder (`frank verify --vendor-key` reads a file).
pub const VENDOR_KEY_FILE: &str = "vendor-key.txt";

/// The lines under the demo's sign-in form: credentials, the labels folder, the vendor key,
/// and the command that verifies a label. The command is short (the key is read from
/// [`VENDOR_KEY_FILE`] beside the labels) so it fits whole at 80 columns and can be copied.
pub fn info_lines(labels: &Path, fingerprint: &str) -> Vec<String> {
    vec![
        format!("Demo clerk: {DEMO_CLERK}   password: {DEMO_PASSWORD}"),
        format!("Labels are saved as PNGs in {}", labels.display()),
        format!("Vendor key: {fingerprint}"),
        "To verify a label, in that folder run:".into(),
        format!("  frank verify --vendor-key {VENDOR_KEY_FILE} FILE.png"),
    ]
}

/// The theme and keys from the user's config file, if any (NO_COLOR honoured).
fn demo_app_config() -> anyhow::Result<crate::ui::AppConfig> {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let text = tui::default_config_path()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default();
    let (theme, keys) = crate::ui::config::load(&text, no_color).unwrap_or_else(|_| {
        (
            crate::ui::theme::Theme::default(),
            crate::ui::keys::KeyBindings::default(),
        )
    });
    Ok(crate::ui::AppConfig {
        theme,
        keys,
        ..crate::ui::AppConfig::default()
    })
}

/// Loads test money with the payment simulator's approved test card.
async fn fund_demo_account(cfg: &BackendConfig) -> anyhow::Result<()> {
    let endpoint = client::endpoint_for_fronts(&cfg.vendors)?;
    let (conn, _) = client::connect_first(&endpoint, &cfg.vendors, cfg.pinned).await?;
    let dir = crate::counter::terminal::TerminalDir::new(&cfg.terminal_dir);
    let enrollment = dir
        .enrollment(&cfg.pinned)?
        .ok_or_else(|| anyhow::anyhow!("demo terminal not enrolled"))?;
    let session = conn
        .login(
            enrollment.terminal_id,
            &dir.device_key()?,
            DEMO_CLERK,
            DEMO_PASSWORD,
        )
        .await?;
    let link = session.start_link()?;
    // Money moves only while the vendor sees the link up.
    let mut state = link.state.clone();
    tokio::time::timeout(
        Duration::from_secs(5),
        state.wait_for(|s| *s == crate::link::LinkState::Up),
    )
    .await
    .map_err(|_| anyhow::anyhow!("demo link did not come up"))??;
    let mut last = None;
    for _ in 0..20 {
        match session
            .fund(
                rand::random(),
                DEMO_FUNDS_CENTS,
                crate::wire::FundMethod::simulator_test_card(),
            )
            .await
        {
            Ok(_) => {
                last = None;
                break;
            }
            Err(e) => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    session
        .conn
        .conn
        .close(quinn::VarInt::from_u32(0), b"demo funded");
    endpoint.wait_idle().await;
    match last {
        Some(e) => Err(anyhow::anyhow!("funding the demo account: {e}")),
        None => Ok(()),
    }
}

/// The demo's vendor: a data directory under `dir`, the demo account and supervisor clerk,
/// the server on loopback and a fault proxy in front of it.
struct DemoVendor {
    data: DataDir,
    fingerprint: String,
    /// The account's enrollment code.
    code: String,
    server: VendorServer,
    proxy: FaultProxy,
}

async fn start_vendor(dir: &std::path::Path) -> anyhow::Result<DemoVendor> {
    let data = DataDir::new(dir.join("vendor"));
    let fingerprint = data.init()?;
    let code = {
        let mut d = Directory::open(&data.file(DB_FILE))?;
        let (acct, code) = d.add_account("Demo Post Office", crate::clock::unix_ms())?;
        d.add_clerk(
            acct.id,
            DEMO_CLERK,
            DEMO_PASSWORD,
            true,
            crate::clock::unix_ms(),
        )?;
        code
    };
    let server = VendorServer::start(&data, Some("127.0.0.1:0".parse()?)).await?;
    let proxy = FaultProxy::start("127.0.0.1:0".parse()?, server.local_addr()?).await?;
    Ok(DemoVendor {
        data,
        fingerprint,
        code,
        server,
        proxy,
    })
}

async fn run_headless(opts: DemoOptions) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("frank-demo-").tempdir()?;
    let DemoVendor {
        data,
        fingerprint,
        code,
        server,
        proxy,
    } = start_vendor(tmp.path()).await?;

    println!("Frank demo — everything runs on this machine (loopback only).");
    println!(
        "  vendor      {} (data in {})",
        server.local_addr()?,
        data.path.display()
    );
    println!("  fingerprint {fingerprint}");
    println!("  fault proxy {} → vendor", proxy.local_addr());
    println!("  clerk       {DEMO_CLERK} / {DEMO_PASSWORD}");
    println!(
        "  keepalives  every 50 ms both ways; lapse after 3 missed (150 ms); reconnect after 1 s lapsed"
    );
    println!();

    let opts_h = HeadlessOptions {
        vendors: vec![proxy.local_addr()],
        pinned: server.public_key(),
        data_dir: tmp.path().join("terminal"),
        enroll_code: Some(code),
        terminal_name: "demo-counter".into(),
        clerk: DEMO_CLERK.into(),
        report_interval_ms: 1_000,
    };
    let (sup, session) = headless::start(&opts_h, DEMO_PASSWORD).await?;
    println!(
        "counter enrolled as terminal {} and signed in (session {:016x})",
        session.terminal_id, session.session_id
    );

    let handle = proxy.handle.clone();
    let faults = opts.faults;
    let schedule = tokio::spawn(async move {
        if !faults {
            return std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(Duration::from_secs(4)).await;
            println!("          >> proxy: cutting the link for 400 ms");
            handle.cut();
            tokio::time::sleep(Duration::from_millis(400)).await;
            handle.heal();
            println!("          >> proxy: healed");
            tokio::time::sleep(Duration::from_secs(4)).await;
            println!("          >> proxy: cutting the link for 3 s");
            handle.cut();
            tokio::time::sleep(Duration::from_secs(3)).await;
            handle.heal();
            println!("          >> proxy: healed");
        }
    });
    let until = async move {
        match opts.duration_s {
            Some(s) => tokio::time::sleep(Duration::from_secs(s)).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    let end = headless::report(&sup, 1_000, until).await;
    schedule.abort();
    sup.stop();
    println!("demo ends: {}", headless::describe(&end));
    server.shutdown().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 15: at 80×24 the sign-in screen shows the verify command whole (it was cut in
    /// the middle of the vendor key), and the key whole on its own line.
    #[test]
    fn the_verify_command_fits_whole_at_80_columns() {
        let fingerprint = "191ec428".repeat(8);
        let labels = Path::new("/tmp/frank-demo-labels-1795485312");
        let app = crate::ui::App::new(crate::ui::AppConfig {
            info_lines: info_lines(labels, &fingerprint),
            ..crate::ui::AppConfig::default()
        });
        let mut t = ratatui::Terminal::new(ratatui::backend::TestBackend::new(80, 24)).unwrap();
        t.draw(|f| crate::ui::draw(f, &app)).unwrap();
        let buf = t.backend().buffer();
        let rows: Vec<String> = (0..buf.area.height)
            .map(|y| (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect())
            .collect();
        let screen = rows.join("\n");
        let command = format!("frank verify --vendor-key {VENDOR_KEY_FILE} FILE.png");
        assert!(
            rows.iter().any(|r| r.contains(&command)),
            "the command is not whole on one row:\n{screen}"
        );
        assert!(
            rows.iter()
                .any(|r| r.contains(&format!("Vendor key: {fingerprint}"))),
            "{screen}"
        );
        assert!(screen.contains(&labels.display().to_string()), "{screen}");
        assert!(!screen.contains('…'), "something is cut:\n{screen}");
    }
}
