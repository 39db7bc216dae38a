//! The `frank` binary end to end: vendor admin commands, a `vendor serve` child process, and
//! a headless counter against it.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn frank() -> Command {
    Command::new(env!("CARGO_BIN_EXE_frank"))
}

fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn after<'a>(text: &'a str, marker: &str) -> &'a str {
    let i = text
        .find(marker)
        .unwrap_or_else(|| panic!("{marker:?} not in {text:?}"));
    text[i + marker.len()..].split_whitespace().next().unwrap()
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn vendor_admin_serve_and_a_counter_process() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("vendor");
    let d = data.to_str().unwrap();

    let init = run_ok(frank().args(["vendor", "init", "--data", d]));
    let fingerprint = after(&init, "fingerprint (pin this on every counter): ").to_string();
    assert_eq!(fingerprint.len(), 64);
    let mode = std::fs::metadata(data.join("vendor-key.pem"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        run_ok(frank().args(["vendor", "fingerprint", "--data", d])).trim(),
        fingerprint
    );
    let again = frank()
        .args(["vendor", "init", "--data", d])
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("refusing to overwrite"));

    let acct = run_ok(frank().args(["vendor", "account", "add", "--data", d, "--name", "Main St"]));
    let code = after(
        &acct,
        "enrollment code (give it to the account's terminals): ",
    )
    .to_string();
    let clerk = run_ok(
        frank()
            .args([
                "vendor",
                "clerk",
                "add",
                "--data",
                d,
                "--account",
                "1",
                "--username",
                "alice",
            ])
            .env("FRANK_PASSWORD", support::PASSWORD),
    );
    assert!(
        clerk.contains("clerk alice (clerk) added to account 1"),
        "{clerk}"
    );
    let short = frank()
        .args([
            "vendor",
            "clerk",
            "add",
            "--data",
            d,
            "--account",
            "1",
            "--username",
            "bob",
        ])
        .env("FRANK_PASSWORD", "short")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&short.stderr).contains("at least 8"));

    // A vendor process on a free loopback port.
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let mut vendor = Child(
        frank()
            .args(["vendor", "serve", "--data", d, "--listen", &listen])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(vendor.0.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains(&fingerprint), "{line}");

    // A headless counter process enrolls, signs in and reports the link up.
    let term = tmp.path().join("terminal");
    let mut counter = Child(
        frank()
            .args([
                "counter",
                "--vendor",
                &listen,
                "--pin",
                &fingerprint,
                "--data",
                term.to_str().unwrap(),
            ])
            .args(["--headless", "--enroll-code", &code, "--clerk", "alice"])
            .env("FRANK_PASSWORD", support::PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = BufReader::new(counter.0.stdout.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut seen = Vec::new();
    let up = loop {
        match rx.recv_timeout(Duration::from_secs(15)) {
            Ok(l) if l.contains("** link up") => break true,
            Ok(l) => seen.push(l),
            Err(_) => break false,
        }
    };
    assert!(up, "counter never reported the link up: {seen:?}");
    assert!(
        seen.iter().any(|l| l.contains("signed in as alice")),
        "{seen:?}"
    );
    drop(counter);

    // The counter stored its enrollment: a wrong pin for that directory is refused clearly.
    let wrong = frank()
        .args([
            "counter",
            "--vendor",
            &listen,
            "--pin",
            &"ab".repeat(32),
            "--data",
            term.to_str().unwrap(),
        ])
        .args(["--headless", "--clerk", "alice"])
        .env("FRANK_PASSWORD", support::PASSWORD)
        .output()
        .unwrap();
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        err.contains("pins") || err.contains("not a valid Ed25519"),
        "{err}"
    );
    assert_eq!(
        run_ok(frank().args(["vendor", "terminals", "--data", d]))
            .lines()
            .count(),
        1
    );
}

/// Started without a terminal (from a script, a pipe or a service manager), the full-screen
/// commands say they need one and exit non-zero, instead of panicking while drawing; the
/// demo says so before it starts anything and names the screenless demo.
#[test]
fn full_screen_commands_without_a_terminal_say_so() {
    let tmp = tempfile::tempdir().unwrap();
    let out = frank()
        .args(["demo", "--duration-s", "5"])
        .env("TMPDIR", tmp.path())
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "demo without a terminal must fail");
    assert!(
        stderr.contains("needs a terminal") && stderr.contains("frank demo --headless"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    // Nothing was started: no demo vendor data and no labels folder.
    let left: Vec<_> = std::fs::read_dir(tmp.path()).unwrap().collect();
    assert!(left.is_empty(), "the demo left {left:?}");

    // The counter says so before it asks for an enrollment code.
    let pin = hex::encode(
        ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .as_bytes(),
    );
    let out = frank()
        .args(["counter", "--vendor", "127.0.0.1:9", "--pin", &pin])
        .arg("--data")
        .arg(tmp.path().join("terminal"))
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !out.status.success(),
        "counter without a terminal must fail"
    );
    assert!(
        stderr.contains("needs a terminal") && stderr.contains("--headless"),
        "{stderr}"
    );
    assert!(!stderr.contains("enrollment code") && !stdout.contains("enrollment code"));
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// An embedded-only frank (`--no-default-features`) refuses a PostgreSQL database before it
/// does anything, saying why; with PostgreSQL built in the same URL gets as far as connecting.
#[test]
fn a_postgres_database_in_a_build_without_postgres_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vendor");
    let url = "postgres://frank:secret@127.0.0.1:1/frank";
    for args in [
        vec![
            "vendor",
            "init",
            "--data",
            data.to_str().unwrap(),
            "--database",
            url,
        ],
        vec!["vendor", "audit", "verify", "--database", url],
    ] {
        let out = frank().args(&args).output().unwrap();
        assert!(!out.status.success(), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        if cfg!(feature = "postgres") {
            assert!(!err.contains("without PostgreSQL support"), "{err}");
        } else {
            assert!(err.contains("built without PostgreSQL support"), "{err}");
            assert!(!err.contains("secret"), "the URL is not repeated: {err}");
        }
        assert!(!data.join("vendor.toml").exists(), "nothing written");
    }
}
