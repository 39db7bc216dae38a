//! A throwaway PostgreSQL server for tests and benchmarks.
//!
//! One server per test binary (started on first use, shared through a `OnceLock`), a fresh
//! database per test. The server runs as the `postgres` user (`initdb` and `pg_ctl` through
//! `runuser`) from a temporary directory, listening on 127.0.0.1 at a free port with trust auth.
//! A small shell watchdog keeps it alive while this process holds the watchdog's stdin; when the
//! process exits, the pipe closes and the watchdog stops the server and removes the directory.
//!
//! If the server cannot start, [`database`] panics with the reason: tests fail, never skip.
//!
//! [`cluster`] starts, for a failover test, a pair of its own: a primary and a synchronous
//! standby cloned from it (`pg_basebackup -R`, named `STANDBY_NAME` through its
//! `cluster_name`, which the primary lists in `synchronous_standby_names`), which the test
//! can stop ([`PgCluster::stop_primary`]) and promote ([`PgCluster::promote_standby`]).

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

pub struct PgServer {
    pub port: u16,
    pub dir: PathBuf,
    /// Dropping this (process exit) tells the watchdog to stop the server.
    _watchdog: Mutex<ChildStdin>,
}

static SERVER: OnceLock<Result<PgServer, String>> = OnceLock::new();
static NEXT_DB: AtomicU64 = AtomicU64::new(1);

fn bin_dir() -> Result<PathBuf, String> {
    if let Ok(dir) = std::env::var("FRANK_PG_BIN") {
        return Ok(PathBuf::from(dir));
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|e| {
            format!("no /usr/lib/postgresql ({e}); install PostgreSQL or set FRANK_PG_BIN")
        })?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .ok_or_else(|| "no /usr/lib/postgresql/*/bin/initdb found; set FRANK_PG_BIN".to_string())
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let out = cmd
        .output()
        .map_err(|e| format!("{what}: cannot run: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// A fresh directory owned by `postgres` for one server (or a pair).
fn server_dir(prefix: &str) -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    run(
        Command::new("chown").arg("postgres:postgres").arg(&dir),
        "chown of the data directory to postgres",
    )?;
    Ok(dir)
}

/// `tool` of the PostgreSQL binaries in `bin`, run as the `postgres` user.
fn as_pg(bin: &Path, tool: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
    c
}

fn initdb(bin: &Path, data: &Path) -> Result<(), String> {
    run(
        as_pg(bin, "initdb").arg("-D").arg(data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]),
        "initdb",
    )
}

/// Runs `script` (as `postgres`, with `args` as $1…) as a watchdog: it starts its servers and
/// prints READY, then waits on its stdin; the returned pipe's end (this process exiting) makes
/// it stop them and remove their directory.
fn spawn_watchdog(script: &str, args: &[&std::ffi::OsStr]) -> Result<ChildStdin, String> {
    let mut child = Command::new("runuser")
        .args(["-u", "postgres", "--", "sh", "-c", script, "sh"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run runuser: {e}"))?;
    let stdin = child.stdin.take().ok_or("no stdin pipe")?;
    let stdout = child.stdout.take().ok_or("no stdout pipe")?;
    let mut lines = BufReader::new(stdout).lines();
    match lines.next() {
        Some(Ok(line)) if line == "READY" => {}
        other => {
            let rest: Vec<String> = lines.map_while(Result::ok).collect();
            return Err(format!(
                "pg_ctl start failed: {:?}\n{}",
                other.map(|r| r.ok()),
                rest.join("\n")
            ));
        }
    }
    // Reap the watchdog in the background when it ends.
    std::thread::spawn(move || {
        let _ = child.wait();
    });
    Ok(stdin)
}

fn start() -> Result<PgServer, String> {
    let bin = bin_dir()?;
    let dir = server_dir("frank-pg")?;
    let data = dir.join("data");
    initdb(&bin, &data)?;
    let port = free_port()?;
    let script = r#"
        "$1/pg_ctl" -D "$2" -l "$3/server.log" -w -t 60 \
            -o "-p $4 -k $3 -c listen_addresses=127.0.0.1 -c max_connections=300" start >/dev/null \
            || { echo "FAILED"; cat "$3/server.log"; exit 1; }
        echo READY
        read _ignored
        "$1/pg_ctl" -D "$2" -m immediate stop >/dev/null 2>&1
        rm -rf "$3"
    "#;
    let port_text = port.to_string();
    let stdin = spawn_watchdog(
        script,
        &[
            bin.as_os_str(),
            data.as_os_str(),
            dir.as_os_str(),
            port_text.as_ref(),
        ],
    )?;
    Ok(PgServer {
        port,
        dir,
        _watchdog: Mutex::new(stdin),
    })
}

/// The shared server; panics (failing the test) when PostgreSQL cannot start.
pub fn server() -> &'static PgServer {
    match SERVER.get_or_init(start) {
        Ok(s) => s,
        Err(e) => panic!("PostgreSQL test server could not start: {e}"),
    }
}

impl PgServer {
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }
    /// The postmaster's pid (its `postmaster.pid` file), for reading its CPU time.
    pub fn postmaster_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.dir.join("data/postmaster.pid"))
            .ok()?
            .lines()
            .next()?
            .trim()
            .parse()
            .ok()
    }

    /// The same database through the server's Unix-domain socket (in its directory), as a
    /// front on the database's own host connects.
    pub fn socket_url(&self, database: &str) -> String {
        format!(
            "host={} port={} user=postgres dbname={database}",
            self.dir.display(),
            self.port
        )
    }
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

/// Creates a fresh empty database and returns its URL over the server's Unix-domain socket.
pub async fn socket_database() -> String {
    let url = database().await;
    let name = url.rsplit('/').next().unwrap_or_default().to_string();
    server().socket_url(&name)
}

/// Creates a fresh empty database and returns its URL.
pub async fn database() -> String {
    let server = server();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    create_database_at(&server.url("postgres"), &name).await;
    server.url(&name)
}

/// `CREATE DATABASE name` through the server at `admin_url`; panics (failing the test) if it
/// cannot.
async fn create_database_at(admin_url: &str, name: &str) {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}"));
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
    drop(client);
    let _ = task.await;
}

/// The `cluster_name` of a [`cluster`]'s standby, which its primary names in
/// `synchronous_standby_names`.
pub const STANDBY_NAME: &str = "frank_standby";
/// Longest wait for a new standby to be the primary's synchronous one, in ms.
pub const STANDBY_SYNC_MS_MAX: u64 = 30_000;

/// A primary and its synchronous standby on loopback, stopped and removed when this process
/// exits (or when dropped).
pub struct PgCluster {
    pub primary_port: u16,
    pub standby_port: u16,
    pub dir: PathBuf,
    bin: PathBuf,
    _watchdog: Mutex<ChildStdin>,
}

/// Starts a [`PgCluster`] and waits until the standby streams synchronously; panics (failing
/// the test) when it cannot.
pub async fn cluster() -> PgCluster {
    let c = tokio::task::spawn_blocking(start_cluster)
        .await
        .expect("cluster start panicked")
        .unwrap_or_else(|e| panic!("PostgreSQL primary and standby could not start: {e}"));
    let deadline =
        std::time::Instant::now() + std::time::Duration::from_millis(STANDBY_SYNC_MS_MAX);
    loop {
        if c.sync_state().await.as_deref() == Some("sync") {
            return c;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the standby is not synchronous after {STANDBY_SYNC_MS_MAX} ms"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

fn start_cluster() -> Result<PgCluster, String> {
    let bin = bin_dir()?;
    let dir = server_dir("frank-pg-cluster")?;
    initdb(&bin, &dir.join("primary"))?;
    let (primary_port, standby_port) = (free_port()?, free_port()?);
    // The synchronous standby is named on the primary's command line, not in its files, so
    // the clone does not inherit it: once promoted it commits alone instead of waiting for a
    // standby it does not have.
    let script = r#"
        "$1/pg_ctl" -D "$2/primary" -l "$2/primary.log" -w -t 60 \
            -o "-p $3 -k $2 -c listen_addresses=127.0.0.1 -c max_connections=300 \
                -c wal_level=replica -c max_wal_senders=4 -c synchronous_commit=on \
                -c synchronous_standby_names=$5" start >/dev/null \
            || { echo "FAILED"; cat "$2/primary.log"; exit 1; }
        "$1/pg_basebackup" -h 127.0.0.1 -p "$3" -U postgres -D "$2/standby" -R \
            -X stream -c fast --no-sync >/dev/null 2>&1 \
            || { echo "FAILED: pg_basebackup"; exit 1; }
        "$1/pg_ctl" -D "$2/standby" -l "$2/standby.log" -w -t 60 \
            -o "-p $4 -k $2 -c listen_addresses=127.0.0.1 -c max_connections=300 \
                -c cluster_name=$5" start >/dev/null \
            || { echo "FAILED"; cat "$2/standby.log"; exit 1; }
        echo READY
        read _ignored
        "$1/pg_ctl" -D "$2/primary" -m immediate stop >/dev/null 2>&1
        "$1/pg_ctl" -D "$2/standby" -m immediate stop >/dev/null 2>&1
        rm -rf "$2"
    "#;
    let (p, s) = (primary_port.to_string(), standby_port.to_string());
    let stdin = spawn_watchdog(
        script,
        &[
            bin.as_os_str(),
            dir.as_os_str(),
            p.as_ref(),
            s.as_ref(),
            STANDBY_NAME.as_ref(),
        ],
    )?;
    Ok(PgCluster {
        primary_port,
        standby_port,
        dir,
        bin,
        _watchdog: Mutex::new(stdin),
    })
}

impl PgCluster {
    /// The libpq multi-host URL of `database`: the first of the two servers that accepts
    /// writes.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgresql://postgres@127.0.0.1:{},127.0.0.1:{}/{database}?target_session_attrs=read-write",
            self.primary_port, self.standby_port
        )
    }

    fn primary_url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}",
            self.primary_port
        )
    }

    /// The standby's `sync_state` as the primary reports it (`sync` once it is synchronous).
    pub async fn sync_state(&self) -> Option<String> {
        let (client, conn) =
            tokio_postgres::connect(&self.primary_url("postgres"), tokio_postgres::NoTls)
                .await
                .ok()?;
        let task = tokio::spawn(conn);
        let row = client
            .query_opt(
                "SELECT sync_state FROM pg_stat_replication WHERE application_name = $1",
                &[&STANDBY_NAME],
            )
            .await
            .ok()??;
        drop(client);
        let _ = task.await;
        Some(row.get(0))
    }

    /// Creates `name` on the primary (replicated to the standby) and returns its URL.
    pub async fn create_database(&self, name: &str) -> String {
        create_database_at(&self.primary_url("postgres"), name).await;
        self.url(name)
    }

    /// Stops the primary at once (`pg_ctl stop -m immediate`: no shutdown checkpoint, every
    /// session cut, as in a crash); returns when it is gone.
    pub fn stop_primary(&self) -> Result<(), String> {
        run(
            as_pg(&self.bin, "pg_ctl")
                .arg("-D")
                .arg(self.dir.join("primary"))
                .args(["-m", "immediate", "-w", "-t", "60", "stop"]),
            "pg_ctl stop (primary)",
        )
    }

    /// Promotes the standby (`pg_ctl promote`); returns once it accepts writes.
    pub fn promote_standby(&self) -> Result<(), String> {
        run(
            as_pg(&self.bin, "pg_ctl")
                .arg("-D")
                .arg(self.dir.join("standby"))
                .args(["-w", "-t", "60", "promote"]),
            "pg_ctl promote (standby)",
        )
    }
}
