//! The `frank` binary: CLI definition and glue. The work lives in the library.
//!
//! Over 800 lines on purpose: this is the whole command line as one table — every
//! subcommand's arguments (clap derive, their help text is the CLI's documentation) and the few
//! lines handing each to the library. Split by subcommand it would be the same glue in more
//! files, and `frank --help`'s order would no longer read top to bottom here.

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use frank::counter::headless::{self, HeadlessOptions};
use frank::vendor_server::directory::Directory;
use frank::vendor_server::server::VendorServer;
use frank::vendor_server::{DB_FILE, DataDir};
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "frank",
    version,
    about = "Print postage and other value-bearing items, only while the vendor link holds"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run everything on this machine: a vendor, a fault proxy and a counter.
    Demo(DemoArgs),
    /// The vendor server and its administration.
    #[command(subcommand)]
    Vendor(VendorCommand),
    /// The counter: the clerk or kiosk terminal UI (or `--headless`).
    Counter(CounterArgs),
    /// Printers: list ports, manage profiles, emulate, probe.
    #[command(subcommand)]
    Printer(frank::printer::cli::PrinterCommand),
    /// Check a printed indicium independently.
    Verify(frank::indicium::cli::VerifyArgs),
    /// A loopback UDP relay that injects faults; commands are read from standard input.
    Faultproxy(FaultproxyArgs),
    /// Capacity planning: N simulated terminals drive authorize→commit over real QUIC.
    Loadgen(LoadgenArgs),
    /// The supervisor's live monitor of the account's terminals, pushed by the vendor.
    Admin(AdminArgs),
    /// Print the counter.toml line for a kiosk supervisor PIN (salted argon2id); the PIN comes
    /// from FRANK_PASSWORD or a prompt.
    KioskPin,
}

#[derive(Debug, Args)]
struct AdminArgs {
    /// Vendor address, e.g. 127.0.0.1:4433.
    #[arg(long)]
    vendor: SocketAddr,
    /// The vendor key fingerprint to pin (64 hex characters).
    #[arg(long)]
    fingerprint: String,
    /// Data directory of an enrolled terminal to sign in on (its other connection is
    /// superseded while the monitor runs).
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// A supervisor clerk of the terminal's account; the password comes from FRANK_PASSWORD
    /// or a prompt without echo.
    #[arg(long)]
    clerk: String,
    /// Colour theme: dark, light, high-contrast, monochrome (NO_COLOR is honoured).
    #[arg(long, default_value = "dark")]
    theme: String,
    /// Print the snapshot as one JSON line and exit.
    #[arg(long, conflicts_with = "json")]
    once: bool,
    /// Print frames as JSON lines instead of the screen (until Ctrl-C, or --frames).
    #[arg(long)]
    json: bool,
    /// With --json: exit after this many frames (the snapshot counts).
    #[arg(long, requires = "json")]
    frames: Option<u64>,
}

#[derive(Debug, Args)]
struct LoadgenArgs {
    /// Vendor address, e.g. 127.0.0.1:4433; several fronts of one vendor as a comma-separated
    /// list (or repeated): terminal n talks to front n % count.
    #[arg(long, value_delimiter = ',', required = true)]
    vendor: Vec<SocketAddr>,
    /// The vendor key fingerprint to pin.
    #[arg(long)]
    pin: String,
    /// The account's enrollment code (each simulated terminal enrolls with it).
    #[arg(long)]
    code: String,
    /// A clerk of that account.
    #[arg(long, default_value = "loadgen")]
    clerk: String,
    #[arg(long, default_value_t = 16)]
    terminals: usize,
    #[arg(long, default_value_t = 10)]
    duration_s: u64,
    /// Void every n-th piece instead of committing it (0: never).
    #[arg(long, default_value_t = 10)]
    void_every: u64,
    /// Append one JSON line per finished request to FILE, as it is answered (what was
    /// acknowledged: funded, authorized, committed, voided); `frank vendor check-acks` checks
    /// it against the ledger.
    #[arg(long, value_name = "FILE")]
    acks: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    duration_s: Option<u64>,
    /// No screen: a headless counter prints its link state while the link is cut now and then.
    #[arg(long)]
    headless: bool,
    /// Headless: do not cut the link on a schedule.
    #[arg(long)]
    no_faults: bool,
    /// Where printed labels are saved as PNGs (default: a new folder in the temp dir).
    #[arg(long, value_name = "DIR")]
    labels: Option<PathBuf>,
    /// The virtual printer's language: escpos (the `virtual` profile) or zpl (`zebra-virtual`).
    #[arg(long, value_name = "LANGUAGE", default_value = "escpos", value_parser = ["escpos", "zpl"])]
    printer_language: String,
    /// The virtual printer's profile by name (overrides --printer-language).
    #[arg(long, value_name = "PROFILE")]
    printer_profile: Option<String>,
}

#[derive(Debug, Args)]
struct DataArg {
    /// The vendor's data directory.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
}

/// A vendor data directory and the database its directory and ledger live in.
#[derive(Debug, Args)]
struct StoreArgs {
    #[command(flatten)]
    data: DataArg,
    /// The database: postgres://user@host:port/db (directory and ledger, shared by every
    /// vendor front on it) or a SQLite ledger path (default: vendor.db and ledger.db in the
    /// data directory).
    #[arg(long, env = "FRANK_DATABASE")]
    database: Option<String>,
}

#[derive(Debug, Subcommand)]
enum VendorCommand {
    /// Create the vendor identity, its public key file, directory and ledger databases and config;
    /// print the fingerprint. With `--database postgres://…` the directory and ledger are
    /// created there instead of in the data directory. With `--pkcs11 MODULE --token LABEL`
    /// the key is generated inside that PKCS#11 token (no key file).
    Init {
        #[command(flatten)]
        store: StoreArgs,
        #[command(flatten)]
        token: frank::vendor_server::key_cli::TokenArgs,
    },
    /// Serve counters over QUIC.
    Serve {
        #[command(flatten)]
        store: StoreArgs,
        /// Address to listen on (default: `listen` in vendor.toml).
        #[arg(long)]
        listen: Option<SocketAddr>,
        /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464; bind it to
        /// loopback or a management network). docs/OPERATIONS.md lists them.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<SocketAddr>,
        /// Threads of the front's async runtime (QUIC, keepalives, request handling; signing,
        /// password checks and the ledger's writer have threads of their own). Default: one per
        /// core. With a front process per core (docs/DEPLOY.md §2), 1.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
        worker_threads: Option<u16>,
    },
    /// Print the fingerprint counters must pin (read from the token when the key is in one).
    Fingerprint(DataArg),
    /// The vendor key: `import` moves a key file into a PKCS#11 token.
    #[command(subcommand)]
    Key(frank::vendor_server::key_cli::KeyCommand),
    /// Accounts.
    #[command(subcommand)]
    Account(AccountCommand),
    /// Clerks.
    #[command(subcommand)]
    Clerk(ClerkCommand),
    /// Enrolled terminals.
    Terminals(StoreArgs),
    /// One terminal.
    #[command(subcommand)]
    Terminal(TerminalCommand),
    #[command(flatten)]
    Ledger(frank::ledger::cli::LedgerCommand),
    /// The release key that signs bundles (separate from the vendor key).
    #[command(subcommand)]
    ReleaseKey(ReleaseKeyCommand),
    /// Signed bundles counters download: printer profiles, rate tables, themes, releases.
    #[command(subcommand)]
    Bundle(BundleCommand),
}

#[derive(Debug, Subcommand)]
enum ReleaseKeyCommand {
    /// Create a release key file (0600; kept offline if you like: only `bundle add` needs it)
    /// and print the fingerprint counters pin as `release_pin`.
    Init {
        /// Where to write the key file (it must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BundleCommand {
    /// Sign and publish a bundle version; counters take it after their next sign-in.
    Add {
        #[command(flatten)]
        data: DataArg,
        /// The bundle's name (a-z 0-9 . _ -); one kind per name.
        name: String,
        /// profiles, rates, theme or release.
        #[arg(long)]
        kind: String,
        /// Its version (dotted numbers), above every published version of the name. For a
        /// release: the version the binary says it is (`frank --version`).
        #[arg(long)]
        version: String,
        /// The oldest counter version that may use it.
        #[arg(long, default_value = "0.1.0")]
        min_counter_version: String,
        /// Releases: the target the binary runs on (default: this machine's, like x86_64-linux).
        #[arg(long)]
        target: Option<String>,
        /// The release key file (`frank vendor release-key init`).
        #[arg(long, value_name = "FILE")]
        release_key: PathBuf,
        /// The files: ID.toml profiles, one rates.toml, one theme.toml, or one binary named frank.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Every published version, the current one of each name marked.
    List(DataArg),
    /// Stop offering a version (default: every version of the name). Counters keep what they
    /// have; publish a higher version to replace a bad one.
    Retire {
        #[command(flatten)]
        data: DataArg,
        name: String,
        version: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AccountCommand {
    /// Create an account and its licensed ledger account (meter); prints its id, meter and
    /// the enrollment code terminals need.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        name: String,
    },
    List(StoreArgs),
    /// Issue a new enrollment code for an account; every earlier code of the account stops
    /// working. Default: one terminal, within 72 hours.
    Code {
        #[command(flatten)]
        store: StoreArgs,
        /// The account id (`frank vendor account list`).
        account: u64,
        /// How many terminals the code may enroll (1..=10000).
        #[arg(long, default_value_t = frank::vendor_server::directory::ENROLLMENT_CODE_USES_DEFAULT)]
        uses: u32,
        /// How many hours the code works (1..=2160).
        #[arg(long, default_value_t = 72)]
        valid_hours: u64,
    },
}

#[derive(Debug, Subcommand)]
enum TerminalCommand {
    /// Revoke a terminal: its live session ends within a second, and it can no longer log in,
    /// resume or enroll its device key again.
    Revoke {
        #[command(flatten)]
        store: StoreArgs,
        /// The terminal id (`frank vendor terminals`).
        id: u64,
    },
}

#[derive(Debug, Subcommand)]
enum ClerkCommand {
    /// Add a clerk; the password comes from FRANK_PASSWORD or a prompt.
    Add {
        #[command(flatten)]
        store: StoreArgs,
        #[arg(long)]
        account: u64,
        #[arg(long)]
        username: String,
        /// May approve refunds and see the admin monitor.
        #[arg(long)]
        supervisor: bool,
    },
    /// Disable a clerk: their live sessions end within a second, and they can no longer log in.
    Disable {
        #[command(flatten)]
        store: StoreArgs,
        username: String,
    },
}

#[derive(Debug, Args)]
struct CounterArgs {
    /// Config file (default: $XDG_CONFIG_HOME/frank/counter.toml).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Vendor address, e.g. 127.0.0.1:4433; several fronts of one vendor as a comma-separated
    /// list (or repeated): the counter fails over between them.
    #[arg(long, value_delimiter = ',')]
    vendor: Vec<SocketAddr>,
    /// The vendor key fingerprint to pin (64 hex characters, from `frank vendor init`).
    #[arg(long)]
    pin: Option<String>,
    /// This terminal's data directory (device key, enrollment);
    /// default $XDG_DATA_HOME/frank/terminal.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// The account's enrollment code (first run only; asked for when missing).
    #[arg(long)]
    enroll_code: Option<String>,
    /// The terminal's name, shown to supervisors.
    #[arg(long)]
    name: Option<String>,
    /// The counter's ZIP code: the origin ZIP of tickets, checks, coupons and gift certificates,
    /// whose forms have none (postage carries the sender's ZIP from its form).
    #[arg(long)]
    origin_zip: Option<String>,
    /// The printer's serial device, e.g. /dev/ttyUSB0 or a virtual printer's pty.
    #[arg(long, value_name = "DEVICE")]
    printer: Option<PathBuf>,
    /// Printer profile: a shipped id (`frank printer profiles list`) or a file.
    #[arg(long)]
    profile: Option<String>,
    /// A second printer for receipts and close-outs (default: they print on --printer).
    #[arg(long, value_name = "DEVICE")]
    receipt_printer: Option<PathBuf>,
    /// The receipt printer's profile (default: generic-80mm).
    #[arg(long)]
    receipt_profile: Option<String>,
    /// Theme: dark, light, high-contrast, monochrome.
    #[arg(long)]
    theme: Option<String>,
    /// Guided full-screen kiosk for the public (needs --kiosk-clerk or `kiosk_clerk`).
    #[arg(long)]
    kiosk: bool,
    /// Kiosk: the clerk account it signs in as (password from FRANK_PASSWORD or a prompt).
    #[arg(long)]
    kiosk_clerk: Option<String>,
    /// Screen-reader-friendly: each change and prompt as one plain line, no drawing
    /// (also `accessibility = "plain"` in the config file).
    #[arg(long)]
    plain: bool,
    /// No screen: sign `--clerk` in and print link status lines (for scripts and servers).
    #[arg(long)]
    headless: bool,
    /// Headless: the clerk to sign in; the password comes from FRANK_PASSWORD or a prompt.
    #[arg(long, required_if_eq("headless", "true"))]
    clerk: Option<String>,
    /// The release key fingerprint (`frank vendor release-key init`): take signed bundles.
    #[arg(long)]
    release_pin: Option<String>,
}

#[derive(Debug, Args)]
struct FaultproxyArgs {
    #[arg(long, default_value = "127.0.0.1:4434")]
    listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:4433")]
    upstream: SocketAddr,
}

fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo(a) => {
            if a.headless {
                init_logging("warn");
            }
            runtime()?.block_on(frank::demo::run(frank::demo::DemoOptions {
                duration_s: a.duration_s,
                faults: !a.no_faults,
                headless: a.headless,
                labels_dir: a.labels,
                printer_profile: a.printer_profile.unwrap_or_else(|| {
                    frank::demo::printer_profile_for(&a.printer_language).to_string()
                }),
            }))
        }
        Command::Vendor(cmd) => {
            init_logging("info");
            vendor(cmd)
        }
        // The TUI logs to a file (`counter` sets that up; `--headless` logs to stderr): a
        // stderr subscriber installed here would take the global slot and draw over the UI.
        Command::Counter(a) => counter(a),
        Command::KioskPin => {
            let pin = frank::secret::read_password("supervisor PIN: ")?;
            if pin.is_empty() || !pin.chars().all(|c| c.is_ascii_digit()) {
                anyhow::bail!(
                    "a supervisor PIN is digits only (the kiosk's PIN prompt takes digits)"
                );
            }
            let hash = frank::counter::tui::new_pin_hash(&pin).map_err(anyhow::Error::msg)?;
            println!("supervisor_pin_argon2id = \"{}\"", hash.as_phc());
            Ok(())
        }
        Command::Loadgen(a) => {
            init_logging("warn");
            let password =
                frank::secret::read_password(&format!("password for clerk {}: ", a.clerk))?;
            let cfg = frank::counter::loadgen::LoadgenConfig {
                vendors: a.vendor,
                pinned: frank::identity::parse_fingerprint(&a.pin)?,
                code: a.code,
                clerk: a.clerk,
                password,
                terminals: a.terminals,
                duration_s: a.duration_s,
                void_every: a.void_every,
                acks: a.acks,
            };
            let r = runtime()?.block_on(frank::counter::loadgen::run(cfg))?;
            println!(
                "{} terminals, {:.1} s: {} authorize+commit pairs ({:.0}/s), {} voids, {} top-ups, {} errors",
                r.terminals, r.duration_s, r.pairs, r.pairs_per_s, r.voids, r.funds, r.errors
            );
            println!(
                "pair latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
                r.pair_p50_ms, r.pair_p90_ms, r.pair_p99_ms, r.pair_max_ms
            );
            if r.pairs_per_front.len() > 1 {
                let per: Vec<String> = r
                    .pairs_per_front
                    .iter()
                    .enumerate()
                    .map(|(i, n)| format!("front {i}: {n}"))
                    .collect();
                println!("pairs per front: {}", per.join("  "));
            }
            println!("{}", serde_json::to_string(&r)?);
            Ok(())
        }
        Command::Admin(a) => {
            // Logs to stderr would tear the full screen; only the JSON modes log.
            if a.once || a.json {
                init_logging("warn");
            }
            let pinned =
                frank::identity::parse_fingerprint(&a.fingerprint).context("--fingerprint")?;
            let password =
                frank::secret::read_password(&format!("password for supervisor {}: ", a.clerk))?;
            let json_frames = if a.once {
                Some(1)
            } else if a.json {
                Some(a.frames.unwrap_or(0))
            } else {
                None
            };
            let opts = frank::admin::AdminOptions {
                vendor: a.vendor,
                pinned,
                data_dir: a.data,
                clerk: a.clerk,
                theme: a.theme,
                json_frames,
            };
            runtime()?.block_on(frank::admin::run::run(opts, password))
        }
        Command::Printer(cmd) => frank::printer::cli::run(cmd),
        Command::Verify(args) => frank::indicium::cli::run(args),
        Command::Faultproxy(a) => {
            init_logging("info");
            runtime()?.block_on(faultproxy(a))
        }
    }
}

/// The database the vendor's directory and ledger are in: `--database` / FRANK_DATABASE, or
/// the data directory's SQLite ledger.
fn database_of(store: &StoreArgs) -> anyhow::Result<String> {
    let files = DataDir::new(&store.data.data).load()?;
    Ok(database_arg(&store.database)?
        .unwrap_or_else(|| files.ledger_path.to_string_lossy().into_owned()))
}

/// `--database` checked against this build (a PostgreSQL URL needs the `postgres` feature).
fn database_arg(database: &Option<String>) -> anyhow::Result<Option<String>> {
    database
        .as_deref()
        .map(frank::ledger::database_arg)
        .transpose()
        .map_err(anyhow::Error::msg)
}

fn open_directory(store: &StoreArgs) -> anyhow::Result<Directory> {
    let database = database_of(store)?;
    Directory::open_for(&database, &DataDir::new(&store.data.data).file(DB_FILE))
}

fn vendor(cmd: VendorCommand) -> anyhow::Result<()> {
    match cmd {
        VendorCommand::Init { store, token } => {
            let fp = frank::vendor_server::key_cli::init(
                &DataDir::new(&store.data.data),
                database_arg(&store.database)?.as_deref(),
                &token,
            )?;
            println!("vendor initialised in {}", store.data.data.display());
            println!("fingerprint (pin this on every counter): {fp}");
        }
        VendorCommand::Serve {
            store: StoreArgs { data, database },
            listen,
            metrics,
            worker_threads,
        } => {
            let database = database_arg(&database)?;
            let dir = DataDir::new(&data.data);
            // One vendor per data directory, until this process ends.
            let _lock = dir.lock()?;
            let mut rt = tokio::runtime::Builder::new_multi_thread();
            if let Some(n) = worker_threads {
                rt.worker_threads(usize::from(n));
            }
            rt.enable_all().build()?.block_on(async {
                let options = frank::vendor_server::server::VendorOptions {
                    database,
                    metrics,
                    ..Default::default()
                };
                let server = VendorServer::start_with(&dir, listen, options).await?;
                println!(
                    "vendor listening on {} — fingerprint {}",
                    server.local_addr()?,
                    server.fingerprint()
                );
                if let Some(addr) = server.metrics_addr() {
                    println!("metrics at http://{addr}/metrics");
                }
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = terminate() => {}
                }
                server.shutdown().await;
                anyhow::Ok(())
            })?;
        }
        VendorCommand::Fingerprint(d) => println!("{}", DataDir::new(&d.data).fingerprint()?),
        VendorCommand::Key(cmd) => frank::vendor_server::key_cli::run(cmd)?,
        VendorCommand::ReleaseKey(ReleaseKeyCommand::Init { out }) => {
            let fp = frank::vendor_server::bundles::release_key_init(&out)?;
            println!("release key written to {}", out.display());
            println!("release fingerprint (pin this on every counter as release_pin): {fp}");
        }
        VendorCommand::Bundle(cmd) => bundle(cmd)?,
        VendorCommand::Account(AccountCommand::Add { store, name }) => {
            let mut dir = open_directory(&store)?;
            let (acct, code) = dir.add_account(&name, frank::clock::unix_ms())?;
            drop(dir);
            println!("account {} created: {}", acct.id, acct.name);
            let database = database_of(&store)?;
            let ledger_line = runtime()?.block_on(async {
                // Opening an account signs nothing: the vendor key stays where it is.
                let ledger = frank::vendor_server::server::spawn_ledger(
                    &database,
                    std::sync::Arc::new(frank::ledger::cli::NoSigning),
                    frank::ledger::LedgerConfig {
                        reaper_interval_ms: 0,
                        ..Default::default()
                    },
                )
                .await?;
                let id = frank::vendor_server::money::ledger_account_of(&ledger, acct.id)
                    .await
                    .map_err(|e| anyhow::anyhow!("opening the ledger account: {e}"))?;
                let a = ledger
                    .account(id)
                    .await
                    .map_err(|e| anyhow::anyhow!("reading the ledger account: {e}"))?;
                anyhow::Ok(format!(
                    "ledger account {} meter {} ({})",
                    a.id.0,
                    a.meter,
                    a.status.as_str()
                ))
            })?;
            println!("{ledger_line}");
            println!("enrollment code (give it to the account's terminals): {code}");
            println!(
                "it enrolls one terminal within 72 hours; for more, `frank vendor account code {} --uses N`",
                acct.id
            );
        }
        VendorCommand::Account(AccountCommand::List(store)) => {
            for a in open_directory(&store)?.accounts()? {
                println!("{:>6}  {}", a.id, a.name);
            }
        }
        VendorCommand::Account(AccountCommand::Code {
            store,
            account,
            uses,
            valid_hours,
        }) => {
            let policy = frank::vendor_server::directory::CodePolicy {
                uses,
                valid_ms: valid_hours.saturating_mul(3_600_000),
            };
            let issued = open_directory(&store)?.rotate_enrollment_code(
                account,
                policy,
                frank::clock::unix_ms(),
            )?;
            println!(
                "enrollment code (give it to the account's terminals): {}",
                issued.code
            );
            println!(
                "it enrolls {} terminal{} within {valid_hours} hours; the account's earlier codes no longer work",
                issued.uses,
                if issued.uses == 1 { "" } else { "s" }
            );
        }
        VendorCommand::Terminal(TerminalCommand::Revoke { store, id }) => {
            let mut dir = open_directory(&store)?;
            if !dir.revoke_terminal(id, frank::clock::unix_ms())? {
                anyhow::bail!("no terminal {id}; see `frank vendor terminals`");
            }
            println!(
                "terminal {id} revoked: a running vendor ends its session within a second; it cannot log in or enroll its key again"
            );
        }
        VendorCommand::Clerk(ClerkCommand::Disable { store, username }) => {
            let mut dir = open_directory(&store)?;
            if !dir.disable_clerk(&username, frank::clock::unix_ms())? {
                anyhow::bail!("no clerk {username:?}");
            }
            println!(
                "clerk {username} disabled: a running vendor ends their sessions within a second; they cannot log in"
            );
        }
        VendorCommand::Clerk(ClerkCommand::Add {
            store,
            account,
            username,
            supervisor,
        }) => {
            let mut dir = open_directory(&store)?;
            let password = frank::secret::read_password(&format!("password for {username}: "))?;
            let c = dir.add_clerk(
                account,
                &username,
                &password,
                supervisor,
                frank::clock::unix_ms(),
            )?;
            println!(
                "clerk {} ({}) added to account {}",
                c.username, c.role, c.account_id
            );
        }
        VendorCommand::Ledger(cmd) => frank::ledger::cli::run(cmd)?,
        VendorCommand::Terminals(store) => {
            for t in open_directory(&store)?.terminals()? {
                println!(
                    "{:>6}  account {:>6}  {}  key {}{}",
                    t.id,
                    t.account_id,
                    t.name,
                    hex::encode(t.device_key),
                    if t.revoked_ms.is_some() {
                        "  REVOKED"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    Ok(())
}

async fn terminate() {
    #[cfg(unix)]
    {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
            return;
        }
    }
    std::future::pending::<()>().await
}

fn counter(a: CounterArgs) -> anyhow::Result<()> {
    use frank::counter::tui;
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let o = tui::Overrides {
        config: a.config,
        vendor: a.vendor,
        pin: a.pin,
        data: a.data,
        name: a.name,
        enroll_code: a.enroll_code,
        origin_zip: a.origin_zip,
        printer: a.printer,
        profile: a.profile,
        receipt_printer: a.receipt_printer,
        receipt_profile: a.receipt_profile,
        theme: a.theme,
        kiosk: a.kiosk,
        kiosk_clerk: a.kiosk_clerk,
        plain: a.plain,
        release_pin: a.release_pin,
    };
    let settings = tui::resolve(&o, no_color)?;
    if let Some(b) = &settings.backend.bundles {
        start_release(b)?;
    }
    if a.headless {
        init_logging("warn");
        let clerk = a.clerk.context("--headless needs --clerk")?;
        let password = frank::secret::read_password(&format!("password for {clerk}: "))?;
        let b = &settings.backend;
        let opts = HeadlessOptions {
            vendors: b.vendors.clone(),
            pinned: b.pinned,
            data_dir: b.terminal_dir.clone(),
            enroll_code: b.enroll_code.clone(),
            terminal_name: b.terminal_name.clone(),
            clerk,
            report_interval_ms: 1_000,
        };
        return runtime()?.block_on(async {
            let (sup, session) = headless::start(&opts, &password).await?;
            drop(password);
            println!(
                "signed in as {} on terminal {} (session {:016x})",
                session.clerk, session.terminal_id, session.session_id
            );
            if let Some(b) = settings.backend.bundles.clone() {
                for line in frank::counter::bundles::describe_installed(&b.store()) {
                    println!("{line}");
                }
                let session = session.clone();
                tokio::spawn(async move {
                    // A headless counter never prints: downloads never wait.
                    let (_idle, printing) = tokio::sync::watch::channel(false);
                    if let Some(r) =
                        frank::counter::bundles::sync_and_log(session, b, printing).await
                    {
                        for (name, version) in &r.taken {
                            println!("** bundle {name} {version} taken");
                        }
                        for (name, reason) in &r.refused {
                            println!("** bundle {name} refused: {reason}");
                        }
                        println!(
                            "** bundles checked: {} taken, {} refused, {} current",
                            r.taken.len(),
                            r.refused.len(),
                            r.current
                        );
                    }
                });
            }
            let end = headless::report(&sup, opts.report_interval_ms, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await;
            sup.stop();
            println!("{}", headless::describe(&end));
            let store = settings.backend.bundles.as_ref().map(|b| b.store());
            frank::counter::bundles::exit_figures(store.as_ref());
            anyhow::Ok(())
        });
    }
    // The screen needs a terminal: say so before asking for an enrollment code or a password.
    frank::ui::runner::require_terminal_for(
        "frank counter",
        "frank counter --headless --clerk NAME",
    )?;
    let _log = match &settings.log_dir {
        Some(dir) => Some(tui::init_file_logging(dir, "counter")?),
        None => None,
    };
    let rt = runtime()?;
    if let Some(id) = rt.block_on(tui::ensure_enrolled(&settings.backend, || {
        frank::secret::read_line("first run: the account's enrollment code: ")
    }))? {
        eprintln!("enrolled as terminal {id}");
    }
    let kiosk_password = match (&settings.app.kiosk, &settings.kiosk_clerk) {
        (true, Some(c)) => Some(frank::ui::event::Secret::new(frank::secret::read_password(
            &format!("password for kiosk clerk {c}: "),
        )?)),
        _ => None,
    };
    rt.block_on(tui::run(settings, kiosk_password))
}

/// A staged counter release is applied before anything else runs (no thread, no runtime yet):
/// the new binary runs with the same arguments as this process's child for its first run, and
/// this process exits with its status; a release that fails its `--version` check or exits
/// non-zero at start is rolled back and this binary goes on.
fn start_release(b: &frank::counter::bundles::BundleConfig) -> anyhow::Result<()> {
    use frank::counter::bundles::{ReleaseStart, start_release};
    let exe = std::env::current_exe().context("the running binary's path")?;
    match start_release(&b.data_dir, b.release_key, &exe)? {
        ReleaseStart::Nothing => Ok(()),
        ReleaseStart::Applied { version, exe } => {
            use frank::counter::bundles::{TrialEnd, run_release_trial};
            eprintln!("release {version} applied; starting it");
            let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
            match run_release_trial(&b.data_dir, &exe, &version, &args)? {
                TrialEnd::Exited { code } => std::process::exit(code),
                TrialEnd::RolledBack { reason } => {
                    eprintln!(
                        "release {version} refused: {reason}; rolled back to the previous binary"
                    );
                    // Start afresh as the previous binary (back at `exe`): exec gives it the
                    // default signal handling the watch replaced; it does not try the release
                    // again (remembered as refused).
                    use std::os::unix::process::CommandExt;
                    let err = std::process::Command::new(&exe).args(&args).exec();
                    Err(anyhow::anyhow!("starting the previous binary again: {err}"))
                }
            }
        }
        ReleaseStart::RolledBack { version, reason } => {
            eprintln!("release {version} refused: {reason}; rolled back to the previous binary");
            Ok(())
        }
        ReleaseStart::Refused { version, reason } => {
            eprintln!("release {version} refused: {reason}; this binary goes on");
            Ok(())
        }
    }
}

fn bundle(cmd: BundleCommand) -> anyhow::Result<()> {
    use frank::vendor_server::bundles;
    match cmd {
        BundleCommand::Add {
            data,
            name,
            kind,
            version,
            min_counter_version,
            target,
            release_key,
            files,
        } => {
            let kind = frank::bundle::Kind::parse(&kind)
                .context("--kind must be profiles, rates, theme or release")?;
            let v = bundles::add(
                &DataDir::new(&data.data),
                &bundles::AddBundle {
                    name,
                    kind,
                    version,
                    min_counter_version,
                    target,
                    files,
                    release_key,
                },
            )?;
            println!(
                "published {} {} ({}, {} files, {} bytes); counters take it after their next sign-in",
                v.name(),
                v.version,
                v.kind,
                v.manifest.files.len(),
                v.total_bytes()
            );
        }
        BundleCommand::List(data) => {
            let listed = bundles::list(&DataDir::new(&data.data))?;
            if listed.is_empty() {
                println!("no bundles published");
            }
            for l in listed {
                println!(
                    "{:<24} {:<10} {:<9} {:>3} files {:>11} bytes  {}{}",
                    l.name,
                    l.version.to_string(),
                    l.kind.as_str(),
                    l.files,
                    l.bytes,
                    if l.retired {
                        "retired"
                    } else if l.current {
                        "current"
                    } else {
                        "superseded"
                    },
                    l.target.map(|t| format!("  {t}")).unwrap_or_default()
                );
            }
        }
        BundleCommand::Retire {
            data,
            name,
            version,
        } => {
            let n = bundles::retire(&DataDir::new(&data.data), &name, version.as_deref())?;
            println!("{n} version(s) of {name} retired: no longer offered to counters");
        }
    }
    Ok(())
}

async fn faultproxy(a: FaultproxyArgs) -> anyhow::Result<()> {
    use tokio::io::AsyncBufReadExt;
    let proxy = frank::faultproxy::FaultProxy::start(a.listen, a.upstream).await?;
    println!(
        "relaying {} → {}; commands: cut, heal, drop RATE, delay MS, duplicate RATE, reorder RATE MS, corrupt RATE",
        proxy.local_addr(),
        a.upstream
    );
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await? {
        if line.trim().is_empty() {
            continue;
        }
        match proxy.handle.command(&line) {
            Ok(f) => println!("now: {f:?}"),
            Err(e) => println!("error: {e}"),
        }
    }
    Ok(())
}
