//! Shell: this front's side of several fronts on one PostgreSQL database ([`super::fronts`]).
//! Binds sessions across fronts on login and resume, adopts sessions other fronts bound, closes
//! this front's connection of a terminal another front bound since, publishes this front's
//! terminal views and takes in the others'. Every function is a no-op on one front (SQLite).

use super::accept::ActiveSession;
use super::directory::Revocations;
use super::fronts::{
    FrontEvent, Holder, PublishedView, SESSIONS_RECONCILE_MS, SharedSession, VIEW_HEARTBEAT_MS,
    VIEW_PUBLISH_MS_MIN, ViewPublisher, ViewsMessage,
};
use super::server::{CLOSE_SUPERSEDED, Shared, lock};
use super::sessions::{Binding, SessionRecord};
use crate::wire::{ErrorBody, ErrorCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Every this many heartbeats a front publishes all its views (drift: RTT, age, loss);
/// significant changes go at once.
pub const VIEW_DRIFT_HEARTBEATS: u32 = 10;
/// The wait a login or resume refused for an unreachable database suggests.
const DATABASE_RETRY_AFTER_MS: u64 = 1_000;

fn unreachable_database(e: &anyhow::Error) -> ErrorBody {
    tracing::warn!(error = %e, "fronts: the shared session table is unreachable");
    ErrorBody::new(
        ErrorCode::Busy,
        "the vendor cannot reach its database just now; try again",
    )
    .with_retry_after_ms(DATABASE_RETRY_AFTER_MS)
}

/// Records `s` as bound to this front (every other front's connection of the terminal is
/// closed); its epoch, 0 on one front. Refused (`busy`) while the database is unreachable, so a
/// terminal is never live on two fronts.
pub(super) async fn bind(shared: &Shared, s: SharedSession) -> Result<u64, ErrorBody> {
    match &shared.fronts {
        None => Ok(0),
        Some(f) => f.bind(&s).await.map_err(|e| unreachable_database(&e)),
    }
}

/// After the local bind of a session bound across fronts: if it failed, let it go there too;
/// if another front bound the terminal since (its notice came before this link existed), this
/// front's new connection is superseded at once.
pub(super) fn bound_or_release(
    shared: &Shared,
    active: &ActiveSession,
    local: Result<(), ErrorBody>,
) -> Result<(), ErrorBody> {
    let Some(f) = &shared.fronts else {
        return local;
    };
    if local.is_err() {
        f.detach(active.session_id, active.epoch, crate::clock::unix_ms());
    } else if f.bound_elsewhere_since(active.terminal_id, active.epoch) {
        close_older(shared, active.terminal_id, u64::MAX);
    }
    local
}

/// Brings a session another front bound into this front's table, so it can be resumed here.
pub(super) async fn adopt(
    shared: &Shared,
    session_id: u64,
    terminal_id: u64,
) -> Result<(), ErrorBody> {
    let Some(f) = &shared.fronts else {
        return Ok(());
    };
    if lock(&shared.sessions)
        .get(session_id)
        .is_some_and(|r| r.terminal_id == terminal_id)
    {
        return Ok(());
    }
    let window = Duration::from_millis(shared.config.session_resume_ms_max);
    let found = f
        .get(session_id, terminal_id, crate::clock::unix_ms(), window)
        .await
        .map_err(|e| unreachable_database(&e))?;
    if let Some(s) = found {
        lock(&shared.sessions).adopt(
            session_id,
            SessionRecord {
                terminal_id: s.terminal_id,
                account_id: s.account_id,
                clerk: s.clerk,
                ledger_account: s.ledger_account,
                resume_key: s.resume_key,
                binding: Binding::Detached { at: Instant::now() },
            },
            Instant::now(),
        );
    }
    Ok(())
}

/// Revoked terminals' and disabled clerks' sessions leave the shared table too.
pub(super) fn forget_revoked(shared: &Shared, r: &Revocations) {
    let Some(f) = shared.fronts.clone() else {
        return;
    };
    let terminals: Vec<u64> = r.terminals.iter().copied().collect();
    let clerks: Vec<String> = r.clerks.iter().cloned().collect();
    tokio::spawn(async move {
        if let Err(e) = f.forget(terminals, clerks, 0).await {
            tracing::warn!(error = %e, "fronts: revoked sessions not forgotten");
        }
    });
}

/// Another front bound `h`: this front's connection of the terminal, if older, is closed, and
/// this front forgets the terminal's sessions (the table is the authority; a resume here reads
/// it again).
fn supersede(shared: &Shared, h: Holder) {
    if let Some(f) = &shared.fronts {
        f.note_bind(h);
    }
    close_older(shared, h.terminal_id, h.epoch);
}

/// Closes this front's connection of `terminal_id` if its epoch is below `epoch`, and forgets
/// the terminal's sessions here unless a newer link of it stays.
fn close_older(shared: &Shared, terminal_id: u64, epoch: u64) {
    let mut links = lock(&shared.links);
    let older = links.get(&terminal_id).is_some_and(|l| l.epoch < epoch);
    let ended = if older {
        links.remove(&terminal_id)
    } else {
        None
    };
    drop(links);
    if older || !lock(&shared.links).contains_key(&terminal_id) {
        lock(&shared.sessions).forget(|r| r.terminal_id == terminal_id);
    }
    if let Some(l) = ended {
        tracing::info!(
            terminal = terminal_id,
            "closing the terminal's connection: another front bound it"
        );
        l.link.stop();
        l.conn.close(
            quinn::VarInt::from_u32(CLOSE_SUPERSEDED),
            b"superseded by a newer connection",
        );
        shared.monitor.touch();
    }
}

/// This front's live terminals as it publishes them.
fn local_views(shared: &Shared) -> Vec<PublishedView> {
    let links: Vec<_> = lock(&shared.links).values().cloned().collect();
    links
        .into_iter()
        .map(|l| {
            let status = l.link.status.borrow().clone();
            let printer = shared.monitor.printer(l.terminal_id);
            PublishedView {
                terminal_id: l.terminal_id,
                account_id: l.account_id,
                epoch: l.epoch,
                clerk: l.clerk,
                link: status.state.as_str().to_string(),
                rtt_ms: status
                    .rtt
                    .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                keepalive_age_ms: status
                    .last_fresh
                    .map(|t| u64::try_from(t.elapsed().as_millis()).unwrap_or(u64::MAX)),
                loss_bp: (status.loss_pct * 100.0).round().clamp(0.0, 10_000.0) as u32,
                printer: printer
                    .as_ref()
                    .map_or("unknown", |p| p.state.as_str())
                    .to_string(),
                printer_detail: printer.and_then(|p| p.detail),
            }
        })
        .collect()
}

/// Starts the event loop, the view publisher and the reconcile for `shared` (which must have
/// fronts); each ends with the server.
pub(super) fn spawn(shared: &Arc<Shared>, events: mpsc::Receiver<FrontEvent>) {
    let resend = Arc::new(AtomicBool::new(true));
    tokio::spawn(run_events(Arc::downgrade(shared), events, resend.clone()));
    tokio::spawn(run_publisher(Arc::downgrade(shared), resend));
    tokio::spawn(run_reconcile(Arc::downgrade(shared)));
}

async fn run_events(
    shared: Weak<Shared>,
    mut events: mpsc::Receiver<FrontEvent>,
    resend: Arc<AtomicBool>,
) {
    while let Some(ev) = events.recv().await {
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Some(fronts) = shared.fronts.clone() else {
            return;
        };
        match ev {
            FrontEvent::Bound(h) => supersede(&shared, h),
            FrontEvent::Views(m) => {
                if m.resend {
                    resend.store(true, Ordering::Release);
                }
                shared.monitor.apply_remote(&m, Instant::now());
            }
            FrontEvent::Listening => {
                // Missed views while not listening: ask every front for all of them.
                let ask = vec![ViewsMessage {
                    front: fronts.id(),
                    resend: true,
                    ..Default::default()
                }];
                tokio::spawn(async move {
                    if let Err(e) = fronts.publish(ask).await {
                        tracing::warn!(error = %e, "fronts: asking for views failed");
                    }
                });
                reconcile(&shared).await;
            }
        }
    }
}

async fn run_publisher(shared: Weak<Shared>, resend: Arc<AtomicBool>) {
    let Some(mut changes) = shared.upgrade().map(|s| s.monitor.changes()) else {
        return;
    };
    let mut heartbeat = tokio::time::interval(Duration::from_millis(VIEW_HEARTBEAT_MS));
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut publisher = ViewPublisher::default();
    let mut beats: u32 = 0;
    loop {
        let beat = tokio::select! {
            c = changes.changed() => {
                if c.is_err() {
                    return;
                }
                false
            }
            _ = heartbeat.tick() => true,
        };
        // A burst of changes goes out as one message.
        tokio::time::sleep(Duration::from_millis(VIEW_PUBLISH_MS_MIN)).await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let Some(fronts) = shared.fronts.clone() else {
            return;
        };
        if beat {
            beats = beats.wrapping_add(1);
            shared.monitor.expire_remote(Instant::now());
        }
        let all = resend.swap(false, Ordering::AcqRel)
            || (beat && beats.is_multiple_of(VIEW_DRIFT_HEARTBEATS));
        let mut messages = publisher.next(fronts.id(), local_views(&shared), all);
        if messages.is_empty() && beat {
            messages.push(ViewsMessage {
                front: fronts.id(),
                ..Default::default()
            });
        }
        drop(shared);
        if !messages.is_empty()
            && let Err(e) = fronts.publish(messages).await
        {
            tracing::warn!(error = %e, "fronts: publishing views failed");
            // Publish everything once the database answers again.
            resend.store(true, Ordering::Release);
        }
    }
}

async fn run_reconcile(shared: Weak<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(SESSIONS_RECONCILE_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        reconcile(&shared).await;
    }
}

/// Asks the table who holds this front's live terminals and closes the ones bound elsewhere
/// since (a notification lost while listening was down); drops sessions past the resume window.
async fn reconcile(shared: &Shared) {
    let Some(fronts) = shared.fronts.clone() else {
        return;
    };
    let terminals: Vec<u64> = lock(&shared.links).keys().copied().collect();
    match fronts.holders(terminals).await {
        Ok(holders) => {
            for h in holders.into_iter().filter(|h| h.front != fronts.id()) {
                supersede(shared, h);
            }
        }
        Err(e) => tracing::warn!(error = %e, "fronts: reconcile failed"),
    }
    let oldest = crate::clock::unix_ms().saturating_sub(shared.config.session_resume_ms_max);
    if let Err(e) = fronts.forget(Vec::new(), Vec::new(), oldest).await {
        tracing::warn!(error = %e, "fronts: pruning old sessions failed");
    }
}
