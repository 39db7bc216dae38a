//! `frank demo`: an embedded vendor (temporary data directory, a demo account and clerk), a
//! fault proxy in front of it, and a headless counter that shows its link state while the
//! proxy cuts the link now and then — a short cut the link rides out, a long one that forces
//! a reconnect and a session resume.

use crate::counter::headless::{self, HeadlessOptions};
use crate::faultproxy::FaultProxy;
use crate::vendor::directory::Directory;
use crate::vendor::server::VendorServer;
use crate::vendor::{DB_FILE, DataDir, now_ms};
use std::time::Duration;

pub const DEMO_CLERK: &str = "demo";
pub const DEMO_PASSWORD: &str = "demo-password";

#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Stop after this many seconds (None: until Ctrl-C).
    pub duration_s: Option<u64>,
    /// Cut the link on a schedule to show detection and recovery.
    pub faults: bool,
}

pub async fn run(opts: DemoOptions) -> anyhow::Result<()> {
    let tmp = tempfile::Builder::new().prefix("frank-demo-").tempdir()?;
    let data = DataDir::new(tmp.path().join("vendor"));
    let fingerprint = data.init()?;
    let code = {
        let mut d = Directory::open(&data.file(DB_FILE))?;
        let (acct, code) = d.add_account("Demo Post Office", now_ms())?;
        d.add_clerk(acct.id, DEMO_CLERK, DEMO_PASSWORD, true, now_ms())?;
        code
    };
    let server = VendorServer::start(&data, Some("127.0.0.1:0".parse()?)).await?;
    let proxy = FaultProxy::start("127.0.0.1:0".parse()?, server.local_addr()?).await?;

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
        vendor: proxy.local_addr(),
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
