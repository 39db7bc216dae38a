//! The `frank` binary in a real pseudo-terminal, its screen parsed by vt100: shared by the
//! pty end-to-end tests and the counter benchmark.
#![allow(dead_code)]

// ui_support has it too: a target that includes both (the counter bench) gets two copies of
// one constant, which is harmless.
#[allow(clippy::duplicate_mod)]
#[path = "../ui_support/postage_values.rs"]
mod postage_values;

use portable_pty::{CommandBuilder, PtySize, native_pty_system};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const ROWS: u16 = 40;
pub const COLS: u16 = 120;
/// Longest wait for something to show on screen.
pub const LONG: Duration = Duration::from_secs(30);
/// How much of the process's log a timeout shows.
const LOG_TAIL_LINES: usize = 80;

/// A `frank` process in a pty, its screen parsed by vt100.
pub struct Screen {
    parser: Arc<Mutex<vt100::Parser>>,
    writer: Box<dyn Write + Send>,
    child: Box<dyn portable_pty::Child + Send + Sync>,
    /// The pty's master side, kept to resize the terminal ([`Screen::resize`]).
    master: Box<dyn portable_pty::MasterPty + Send>,
    /// Pause after each key burst (tests type like a person; the bench faster).
    pub key_pause: Duration,
    /// Where the process writes its log (`$XDG_STATE_HOME/frank`): a timeout shows its tail.
    log_dir: std::path::PathBuf,
}

impl Screen {
    /// Spawns `frank ARGS` with HOME and the XDG dirs under `home`.
    pub fn spawn(args: &[String], home: &Path) -> Screen {
        Self::spawn_env(args, home, &[])
    }

    /// [`Screen::spawn`] with extra environment variables.
    /// A counter spawned with `args` and signed in as `clerk`: past the sign-in screen, the link
    /// up and the printer ready.
    pub fn spawn_signed_in(args: &[String], home: &Path, clerk: &str, password: &str) -> Screen {
        let mut screen = Screen::spawn(args, home);
        screen.sign_in(clerk, password);
        screen
    }

    /// Signs in on the sign-in screen; returns once past it, the link up and the printer ready.
    pub fn sign_in(&mut self, clerk: &str, password: &str) {
        self.wait_for("Sign in");
        self.typ(clerk);
        self.send("\t");
        self.typ(password);
        self.send("\r");
        self.wait_for("Recent items");
        self.wait_for("LINK UP");
        self.wait_for("printer ready");
    }

    pub fn spawn_env(args: &[String], home: &Path, env: &[(&str, &str)]) -> Screen {
        let pair = native_pty_system()
            .openpty(PtySize {
                rows: ROWS,
                cols: COLS,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        let mut cmd = CommandBuilder::new(env!("CARGO_BIN_EXE_frank"));
        cmd.args(args);
        cmd.env("HOME", home);
        cmd.env("XDG_CONFIG_HOME", home.join("config"));
        cmd.env("XDG_STATE_HOME", home.join("state"));
        cmd.env("XDG_DATA_HOME", home.join("data"));
        cmd.env("TERM", "xterm-256color");
        cmd.env("RUST_LOG", "info");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = pair.slave.spawn_command(cmd).unwrap();
        drop(pair.slave);
        let mut reader = pair.master.try_clone_reader().unwrap();
        let writer = pair.master.take_writer().unwrap();
        let parser = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let p = parser.clone();
        let master = pair.master;
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                p.lock().unwrap().process(&buf[..n]);
            }
        });
        Screen {
            parser,
            writer,
            child,
            master,
            key_pause: Duration::from_millis(30),
            log_dir: home.join("state").join("frank"),
        }
    }

    /// Resizes the terminal to `rows`×`cols` (the process gets SIGWINCH), and the parsed
    /// screen with it.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.master
            .resize(PtySize {
                rows,
                cols,
                pixel_width: 0,
                pixel_height: 0,
            })
            .unwrap();
        self.parser.lock().unwrap().set_size(rows, cols);
    }

    pub fn text(&self) -> String {
        self.parser.lock().unwrap().screen().contents()
    }

    /// Writes `bytes` as one burst of keys, then pauses [`Screen::key_pause`].
    pub fn send(&mut self, bytes: &str) {
        self.send_now(bytes);
        std::thread::sleep(self.key_pause);
    }

    /// Writes `bytes` without the pause.
    pub fn send_now(&mut self, bytes: &str) {
        self.writer.write_all(bytes.as_bytes()).unwrap();
        self.writer.flush().unwrap();
    }

    pub fn typ(&mut self, text: &str) {
        for c in text.chars() {
            self.send(&c.to_string());
        }
    }

    /// Waits until the screen satisfies `pred`; on timeout fails with the screen.
    pub fn wait(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        self.wait_within(LONG, what, pred)
    }

    pub fn wait_within(&self, limit: Duration, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let t = self.text();
            if pred(&t) {
                return t;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; screen:\n{t}\nthe log's last lines:\n{}",
                    self.log_tail(LOG_TAIL_LINES)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last `lines` lines of the process's log files (oldest file first), for a failure
    /// message: what the screen cannot show of why it is stuck.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut files: Vec<_> = std::fs::read_dir(&self.log_dir)
            .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default();
        files.sort();
        let text: String = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .collect();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub fn wait_for(&self, needle: &str) -> String {
        self.wait(needle, |t| t.contains(needle))
    }

    /// Polls every millisecond until `needle` shows; returns when it was first seen.
    pub fn seen_at(&self, needle: &str, limit: Duration) -> Instant {
        let deadline = Instant::now() + limit;
        loop {
            if self.text().contains(needle) {
                return Instant::now();
            }
            if Instant::now() > deadline {
                panic!("timed out waiting for {needle}; screen:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.process_id()
    }

    /// Whether the process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Waits up to `limit` for the process to exit; its success, or `None` if still running.
    pub fn exited_within(&mut self, limit: Duration) -> Option<bool> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status.success());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// VmRSS of process `pid` in MiB, from /proc.
pub fn rss_mb(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

/// Fills the postage form (Ctrl-N first) and waits for the vendor's live quote, then Enter:
/// the review screen.
pub fn postage_to_review(s: &mut Screen) {
    s.send("\x0e"); // Ctrl-N: new item (postage)
    fill_postage_to_review(s);
}

/// On the postage form: fills it, waits for the vendor's live quote, then Enter: the review.
pub fn fill_postage_to_review(s: &mut Screen) {
    fill_postage(s);
    s.send("\r");
    s.wait_for("Review");
}

/// The first `*.png` the virtual printer saved in `dir` (waits up to [`LONG`]).
pub fn wait_for_png(dir: &Path) -> std::path::PathBuf {
    let deadline = Instant::now() + LONG;
    loop {
        let found = std::fs::read_dir(dir).ok().and_then(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "png"))
        });
        if let Some(p) = found {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no label PNG in {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// On the postage form: fills it and waits for the vendor's live quote; returns that screen.
pub fn fill_postage(s: &mut Screen) -> String {
    s.wait_for("Weight");
    for v in postage_values::POSTAGE_FORM_VALUES {
        s.typ(v);
        s.send("\t");
    }
    // The vendor's live quote for first-class, 3 oz.
    s.wait("a quote", |t| t.contains("Quote: $"))
}

/// The printing gauge's percentage on screen (`NN% sent to the printer`), if the gauge is up.
pub fn gauge_percent(t: &str) -> Option<u32> {
    let end = t.find("% sent to the printer")?;
    let digits = t[..end]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .count();
    t[end - digits..end].parse().ok()
}
