//! The shell of `frank admin`: sign in as a supervisor on an enrolled terminal, keep the
//! session alive (the counter's supervisor: reconnect and resume), subscribe to the account's
//! terminals and feed the pushed frames to the screen — or print them as JSON lines.

use super::state::Monitor;
use super::view;
use crate::counter::client::{ClientError, Session};
use crate::counter::supervisor::{Phase as SupPhase, SupervisorHandle};
use crate::ui::runner::FullScreen;
use crate::ui::theme::Theme;
use crate::wire::{ErrorCode, MonitorFrame};
use ed25519_dalek::VerifyingKey;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::mpsc;

/// Events from the subscription to the screen.
#[derive(Debug, Clone)]
pub enum Feed {
    Frame(MonitorFrame),
    /// The subscription ended; reconnecting.
    Lost(String),
    /// The vendor refused for good.
    Refused(String),
}

/// Frames buffered between the subscription and the screen; the subscription waits when it
/// is full (the vendor coalesces behind it).
pub const FEED_QUEUE_MAX: usize = 256;
/// Wait before subscribing again when the session itself did not change.
pub const RESUBSCRIBE_DELAY_MS: u64 = 500;
/// Longest wait before subscribing again, whatever the vendor's `retry_after_ms` says; the
/// wait doubles from [`RESUBSCRIBE_DELAY_MS`] after each failed subscription in a row.
pub const RESUBSCRIBE_DELAY_MS_MAX: u64 = 30_000;
/// Subscriptions in a row that end without a single frame before the monitor stops and says
/// so (about 9 minutes of trying at the capped wait).
pub const RESUBSCRIBE_FAILURES_MAX: u32 = 24;
/// Screen refresh when nothing arrives (ages in the title stay honest).
pub const ADMIN_TICK_MS: u64 = 250;

#[derive(Debug, Clone)]
pub struct AdminOptions {
    pub vendor: SocketAddr,
    pub pinned: VerifyingKey,
    /// Data directory of an enrolled terminal (device key, enrollment).
    pub data_dir: PathBuf,
    pub clerk: String,
    pub theme: String,
    /// `Some(n)`: print n frames (0: until interrupted) as JSON lines instead of the screen.
    pub json_frames: Option<u64>,
}

/// Signs in on the enrolled terminal of `data_dir` and starts the session supervisor: the
/// counter's one sign-in ([`crate::counter::headless::start`]), never enrolling.
pub async fn sign_in(
    opts: &AdminOptions,
    password: &str,
) -> anyhow::Result<(SupervisorHandle, Session)> {
    let counter = crate::counter::headless::HeadlessOptions {
        vendors: vec![opts.vendor],
        pinned: opts.pinned,
        data_dir: opts.data_dir.clone(),
        enroll_code: None,
        terminal_name: String::new(),
        clerk: opts.clerk.clone(),
        report_interval_ms: 0,
    };
    crate::counter::headless::start(&counter, password).await
}

fn final_refusal(e: &ClientError) -> bool {
    matches!(
        e.code(),
        Some(ErrorCode::Forbidden | ErrorCode::UnknownType)
    ) || matches!(e, ClientError::WrongVendorKey { .. })
}

/// The wait before subscribing again after `failures` failed subscriptions in a row:
/// [`RESUBSCRIBE_DELAY_MS`] doubled each time, at most [`RESUBSCRIBE_DELAY_MS_MAX`].
pub fn resubscribe_pause_ms(failures: u32) -> u64 {
    RESUBSCRIBE_DELAY_MS
        .saturating_mul(1u64 << failures.min(16))
        .min(RESUBSCRIBE_DELAY_MS_MAX)
}

/// Subscribes on the supervisor's current session and forwards frames; after a loss, waits
/// for the next session (or a short delay) and subscribes again. Ends when the feed closes
/// or the vendor refuses for good.
pub async fn follow(sup: SupervisorHandle, feed: mpsc::Sender<Feed>) {
    let mut sessions = sup.session.clone();
    let mut phase = sup.phase.clone();
    let mut failures: u32 = 0;
    loop {
        let session = sessions.borrow_and_update().clone();
        let mut pause_ms = resubscribe_pause_ms(failures);
        let reason = match session.subscribe_terminals().await {
            Ok((mut stream, snapshot)) => {
                failures = 0;
                if feed.send(Feed::Frame(snapshot)).await.is_err() {
                    return;
                }
                loop {
                    match stream.next().await {
                        Ok(Some(f)) => {
                            if feed.send(Feed::Frame(f)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break "the vendor ended the subscription".to_string(),
                        Err(e) => break e.to_string(),
                    }
                }
            }
            Err(e) if final_refusal(&e) => {
                let _ = feed.send(Feed::Refused(e.to_string())).await;
                return;
            }
            Err(e) => {
                // `busy` (every subscription slot taken) says when to try again.
                if let ClientError::Response(crate::wire::ResponseError::Refused(b)) = &e {
                    pause_ms = b
                        .retry_after_ms
                        .unwrap_or(pause_ms)
                        .min(RESUBSCRIBE_DELAY_MS_MAX);
                }
                e.to_string()
            }
        };
        failures = failures.saturating_add(1);
        if failures >= RESUBSCRIBE_FAILURES_MAX {
            let _ = feed
                .send(Feed::Refused(format!(
                    "{reason}; the vendor did not take the subscription {failures} times in a row — start frank admin again"
                )))
                .await;
            return;
        }
        if feed.send(Feed::Lost(reason)).await.is_err() {
            return;
        }
        // Wait for a new session on a new connection, or retry on this one after a pause.
        loop {
            let p = phase.borrow_and_update().clone();
            if let SupPhase::LoginRequired { reason } | SupPhase::Stopped { reason } = p {
                let _ = feed
                    .send(Feed::Refused(format!(
                        "{reason}; start frank admin again to sign in"
                    )))
                    .await;
                return;
            }
            tokio::select! {
                c = sessions.changed() => {
                    if c.is_err() {
                        return;
                    }
                    break;
                }
                c = phase.changed() => {
                    if c.is_err() {
                        return;
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(pause_ms)) => {
                    if matches!(*phase.borrow(), SupPhase::Connected { .. }) {
                        break;
                    }
                }
            }
        }
    }
}

/// `frank admin`: the screen, or JSON lines with `json_frames`.
pub async fn run(opts: AdminOptions, password: String) -> anyhow::Result<()> {
    let theme = Theme::builtin(&opts.theme, std::env::var_os("NO_COLOR").is_some())
        .map_err(anyhow::Error::msg)?;
    let (sup, session) = sign_in(&opts, &password).await?;
    drop(password);
    let (tx, rx) = mpsc::channel(FEED_QUEUE_MAX);
    let follower = tokio::spawn(follow(sup.clone(), tx));
    let result = match opts.json_frames {
        Some(n) => json_lines(rx, n).await,
        None => {
            let monitor = Monitor::new(opts.vendor.to_string(), session.clerk.clone());
            screen(monitor, theme, rx).await
        }
    };
    follower.abort();
    sup.stop();
    result
}

/// Prints frames as JSON lines: `n` of them (0: until interrupted). A refusal is an error.
pub async fn json_lines(mut rx: mpsc::Receiver<Feed>, n: u64) -> anyhow::Result<()> {
    use std::io::Write;
    let mut printed = 0u64;
    loop {
        let feed = tokio::select! {
            f = rx.recv() => f,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        match feed {
            Some(Feed::Frame(f)) => {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{}", serde_json::to_string(&f)?)?;
                out.flush()?;
                printed += 1;
                if n != 0 && printed >= n {
                    return Ok(());
                }
            }
            Some(Feed::Lost(reason)) => eprintln!("subscription lost — reconnecting: {reason}"),
            Some(Feed::Refused(reason)) => anyhow::bail!("the vendor refused: {reason}"),
            None => anyhow::bail!("the subscription ended"),
        }
    }
}

/// Keys waiting for the monitor's screen loop.
const KEYS_QUEUE_MAX: usize = 64;

fn key_event(ev: crossterm::event::Event) -> Option<crossterm::event::KeyEvent> {
    match ev {
        crossterm::event::Event::Key(k) => Some(k),
        _ => None,
    }
}

/// The full-screen monitor; the terminal is restored however it ends (ratatui's panic hook
/// covers panics, [`FullScreen`] returns and errors, SIGTERM/SIGHUP end the loop).
async fn screen(monitor: Monitor, theme: Theme, rx: mpsc::Receiver<Feed>) -> anyhow::Result<()> {
    let (screen, terminal, keys, signalled) = FullScreen::enter(KEYS_QUEUE_MAX, key_event)?;
    let result = drive(terminal, monitor, &theme, keys, rx, signalled).await;
    drop(screen);
    result.map(|_| ())
}

/// The screen loop over any backend (tests use a `TestBackend`): redraw, then wait for a
/// key, a feed event, a tick or `stop`. Returns the final state.
pub async fn drive<B: ratatui::backend::Backend<Error: Send + Sync + 'static>>(
    mut terminal: ratatui::Terminal<B>,
    mut monitor: Monitor,
    theme: &Theme,
    mut keys: mpsc::Receiver<crossterm::event::KeyEvent>,
    mut feed: mpsc::Receiver<Feed>,
    stop: impl std::future::Future<Output = ()>,
) -> anyhow::Result<Monitor> {
    let mut tick = tokio::time::interval(Duration::from_millis(ADMIN_TICK_MS));
    tokio::pin!(stop);
    let mut feed_open = true;
    loop {
        terminal.draw(|f| view::draw(f, &monitor, theme))?;
        tokio::select! {
            biased;
            Some(k) = keys.recv() => monitor.key(k),
            f = feed.recv(), if feed_open => match f {
                Some(Feed::Frame(frame)) => monitor.apply(frame),
                Some(Feed::Lost(reason)) => monitor.lost(reason),
                Some(Feed::Refused(reason)) => monitor.refused(reason),
                None => {
                    feed_open = false;
                    monitor.lost("the subscription task ended");
                }
            },
            _ = tick.tick() => {}
            _ = &mut stop => break,
        }
        if monitor.quit {
            break;
        }
    }
    terminal.draw(|f| view::draw(f, &monitor, theme))?;
    Ok(monitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resubscribing_backs_off_to_its_cap() {
        assert_eq!(resubscribe_pause_ms(0), RESUBSCRIBE_DELAY_MS);
        assert_eq!(resubscribe_pause_ms(1), 2 * RESUBSCRIBE_DELAY_MS);
        assert_eq!(resubscribe_pause_ms(6), RESUBSCRIBE_DELAY_MS_MAX);
        assert_eq!(resubscribe_pause_ms(u32::MAX), RESUBSCRIBE_DELAY_MS_MAX);
    }
}
