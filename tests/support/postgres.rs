//! A throwaway PostgreSQL server for tests and benchmarks.
//!
//! One server per test binary (started on first use, shared through a `OnceLock`), a fresh
//! database per test. The server runs as the `postgres` user (`initdb` and `pg_ctl` through
//! `runuser`) from a temporary directory, listening on 127.0.0.1 at a free port with trust auth.
//! A small shell watchdog keeps it alive while this process holds the watchdog's stdin; when the
//! process exits, the pipe closes and the watchdog stops the server and removes the directory.
//!
//! If the server cannot start, [`database`] panics with the reason: tests fail, never skip.

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

fn start() -> Result<PgServer, String> {
    let bin = bin_dir()?;
    let dir = std::env::temp_dir().join(format!(
        "frank-pg-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    run(
        Command::new("chown").arg("postgres:postgres").arg(&dir),
        "chown of the data directory to postgres",
    )?;
    let data = dir.join("data");
    let as_pg = |tool: &str| {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin.join(tool));
        c
    };
    run(
        as_pg("initdb").arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]),
        "initdb",
    )?;
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
    let mut child = Command::new("runuser")
        .args(["-u", "postgres", "--", "sh", "-c", script, "sh"])
        .arg(&bin)
        .arg(&data)
        .arg(&dir)
        .arg(port.to_string())
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
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }
}

/// Creates a fresh empty database and returns its URL.
pub async fn database() -> String {
    let server = server();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        NEXT_DB.fetch_add(1, Ordering::SeqCst)
    );
    let (client, conn) = tokio_postgres::connect(&server.url("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the test PostgreSQL server: {e}"));
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name} failed: {e}"));
    drop(client);
    let _ = task.await;
    server.url(&name)
}
