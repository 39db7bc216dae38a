//! The admin monitor on the vendor: the last printer report of every terminal, change
//! notifications, and the subscriptions that push terminal rows to supervisors.
//!
//! The core ([`row`], [`Coalescer`]) is sans-I/O. [`run_subscription`] is the shell: one task
//! per subscription computes rows from the vendor's in-memory view (links, printer reports)
//! plus the account's ledger figures, and hands frames to a writer task through a queue of
//! `monitor_queue_max` frames. It never waits on the writer: when the queue is full the
//! changed rows stay pending and go out, current, in a later frame (coalesced).

use super::directory::{DirectoryHandle, Terminal};
use super::fronts::{RemoteViews, ViewsMessage};
use super::server::TerminalLink;
use crate::ledger::{AccountId, LedgerHandle};
use crate::link::driver::LinkStatus;
use crate::link::guard::LinkState;
use crate::wire::monitor::{self as wm, MONITOR_ROWS_MAX, PrinterState};
use crate::wire::{ErrorBody, ErrorCode, MonitorFrame, TerminalRow};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// The soonest the ledger figures (balance, items today) are read again after a change; more
/// changes inside this window are picked up by the next push interval.
/// Shared by every subscription of the account: one read per account per window, however many
/// supervisors watch it.
pub const MONITOR_LEDGER_REFRESH_MS_MIN: u64 = 500;
/// The ledger figures are read at least this often even without a change seen by this
/// vendor (refund decisions are made by the admin CLI on the data directory).
pub const MONITOR_LEDGER_REFRESH_MS_MAX: u64 = 10_000;

/// The last printer report of a terminal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrinterView {
    pub state: PrinterState,
    pub detail: Option<String>,
}

/// Change notifications and printer reports, shared by the front and the subscriptions.
#[derive(Debug)]
pub struct MonitorHub {
    /// Bumped on every change any subscriber might show.
    changes: watch::Sender<u64>,
    /// Per directory account: bumped when its ledger figures or its terminal list changed.
    accounts: Mutex<HashMap<u64, AccountGen>>,
    printers: Mutex<HashMap<u64, PrinterView>>,
    subscribers: AtomicUsize,
    /// Live subscriptions per directory account (entries removed at 0).
    per_account: Mutex<HashMap<u64, usize>>,
    /// The latest ledger figures read per directory account, and when: subscriptions of one
    /// account share them (entries go with the account's last subscription).
    figures: Mutex<HashMap<u64, (Instant, AccountFigures)>>,
    /// Terminals live on other fronts of the same database (`fronts`; empty on one front).
    remote: Mutex<RemoteViews>,
}

/// How many monitor subscriptions may run: on the whole vendor and per directory account (so
/// one account's supervisors cannot take every slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SubscriberLimits {
    pub subscribers_max: usize,
    pub subscribers_per_account_max: usize,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct AccountGen {
    ledger: u64,
    directory: u64,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain maps: a panic elsewhere leaves them usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Default for MonitorHub {
    fn default() -> Self {
        MonitorHub {
            changes: watch::channel(0).0,
            accounts: Mutex::new(HashMap::new()),
            printers: Mutex::new(HashMap::new()),
            subscribers: AtomicUsize::new(0),
            per_account: Mutex::new(HashMap::new()),
            figures: Mutex::new(HashMap::new()),
            remote: Mutex::new(RemoteViews::default()),
        }
    }
}

impl MonitorHub {
    /// Something changed (a link state, a connection, a printer): wake the subscribers.
    pub fn touch(&self) {
        self.changes.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// Money moved on a directory account: its balance and items today must be read again.
    pub fn ledger_changed(&self, account_id: u64) {
        let mut accounts = lock(&self.accounts);
        let g = accounts.entry(account_id).or_default();
        g.ledger = g.ledger.wrapping_add(1);
        drop(accounts);
        self.touch();
    }

    /// The reaper committed reservations as `unsettled` (it does not say whose): every
    /// account's figures are read again, at most once per `MONITOR_LEDGER_REFRESH_MS_MIN`.
    pub fn all_ledgers_changed(&self) {
        let mut accounts = lock(&self.accounts);
        for g in accounts.values_mut() {
            g.ledger = g.ledger.wrapping_add(1);
        }
        drop(accounts);
        self.touch();
    }

    /// A terminal enrolled into a directory account.
    pub fn terminals_changed(&self, account_id: u64) {
        let mut accounts = lock(&self.accounts);
        let g = accounts.entry(account_id).or_default();
        g.directory = g.directory.wrapping_add(1);
        drop(accounts);
        self.touch();
    }

    fn generation(&self, account_id: u64) -> AccountGen {
        lock(&self.accounts)
            .get(&account_id)
            .copied()
            .unwrap_or_default()
    }

    /// Records a terminal's printer report; wakes subscribers only if it changed.
    pub fn set_printer(&self, terminal_id: u64, view: PrinterView) {
        let changed = lock(&self.printers).insert(terminal_id, view.clone()) != Some(view);
        if changed {
            self.touch();
        }
    }

    /// Another front's views: wakes subscribers if one changed.
    pub fn apply_remote(&self, msg: &ViewsMessage, now: Instant) {
        if lock(&self.remote).apply(msg, now) {
            self.touch();
        }
    }

    /// Drops the views of fronts gone silent.
    pub fn expire_remote(&self, now: Instant) {
        if lock(&self.remote).expire(now) {
            self.touch();
        }
    }

    /// A terminal's view on another front, as the row of a live link.
    fn remote(&self, terminal_id: u64) -> Option<(LiveView, PrinterView)> {
        let r = lock(&self.remote).get(terminal_id)?;
        let v = r.view;
        let mut status = LinkStatus::down(0, r.received);
        status.state = LinkState::parse(&v.link)?;
        status.rtt = v.rtt_ms.map(Duration::from_millis);
        status.last_fresh = v
            .keepalive_age_ms
            .and_then(|age| r.received.checked_sub(Duration::from_millis(age)));
        status.loss_pct = f64::from(v.loss_bp) / 100.0;
        let printer = PrinterView {
            state: PrinterState::parse(&v.printer).unwrap_or(PrinterState::Unknown),
            detail: v.printer_detail,
        };
        Some((
            LiveView {
                clerk: v.clerk,
                status,
            },
            printer,
        ))
    }

    /// The change counter subscribers and the view publisher wait on.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    pub fn printer(&self, terminal_id: u64) -> Option<PrinterView> {
        lock(&self.printers).get(&terminal_id).cloned()
    }

    /// Takes one of the account's and one of the vendor's subscription slots, or says why not.
    pub fn admit(
        self: &std::sync::Arc<Self>,
        account_id: u64,
        limits: SubscriberLimits,
    ) -> Result<Permit, ErrorBody> {
        let per_account = limits.subscribers_per_account_max;
        {
            let mut accounts = lock(&self.per_account);
            let n = accounts.entry(account_id).or_default();
            if *n >= per_account {
                let n = *n;
                if n == 0 {
                    accounts.remove(&account_id);
                }
                return Err(ErrorBody::new(
                    ErrorCode::Busy,
                    format!("this account already runs monitor_subscribers_per_account_max = {per_account} monitor subscriptions; close one or try again later"),
                )
                .with_limit(per_account as u64)
                .with_retry_after_ms(5_000));
            }
            *n += 1;
        }
        // From here the account slot is held: the permit (or its failure) gives it back.
        let permit = Permit {
            hub: self.clone(),
            account_id,
            vendor_slot: false,
        };
        let max = limits.subscribers_max;
        self.subscribers
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| {
                ErrorBody::new(
                    ErrorCode::Busy,
                    format!("the vendor serves monitor_subscribers_max = {max} monitor subscriptions; try again later"),
                )
                .with_limit(max as u64)
                .with_retry_after_ms(5_000)
            })?;
        let mut permit = permit;
        permit.vendor_slot = true;
        Ok(permit)
    }

    /// Live subscriptions.
    pub fn subscribers(&self) -> usize {
        self.subscribers.load(Ordering::Acquire)
    }
}

/// A subscription slot (the account's, and the vendor's once `vendor_slot`); released on drop.
#[derive(Debug)]
pub struct Permit {
    hub: std::sync::Arc<MonitorHub>,
    account_id: u64,
    vendor_slot: bool,
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.vendor_slot {
            self.hub.subscribers.fetch_sub(1, Ordering::AcqRel);
        }
        let mut accounts = lock(&self.hub.per_account);
        if let Some(n) = accounts.get_mut(&self.account_id) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                accounts.remove(&self.account_id);
                lock(&self.hub.figures).remove(&self.account_id);
            }
        }
    }
}

/// The account-wide figures every row carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountFigures {
    pub items_today: u64,
    pub balance_cents: u64,
    /// Pieces committed `unsettled` at expiry (bounded count).
    pub unsettled: u64,
}

/// What the vendor's link view says of a connected terminal.
#[derive(Debug, Clone)]
pub struct LiveView {
    pub clerk: String,
    pub status: LinkStatus,
}

fn clamp_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One row (pure).
pub fn row(
    terminal: &Terminal,
    live: Option<&LiveView>,
    printer: Option<&PrinterView>,
    figures: AccountFigures,
    now: Instant,
) -> TerminalRow {
    let (link, clerk, rtt_ms, age_ms, loss_bp) = match live {
        Some(l) => (
            l.status.state,
            Some(l.clerk.clone()),
            l.status.rtt.map(clamp_ms),
            l.status
                .last_fresh
                .map(|t| clamp_ms(now.saturating_duration_since(t))),
            (l.status.loss_pct * 100.0).round().clamp(0.0, 10_000.0) as u32,
        ),
        None => (LinkState::Down, None, None, None, 0),
    };
    TerminalRow {
        terminal_id: terminal.id,
        name: terminal.name.clone(),
        link: link.as_str().to_string(),
        connected: live.is_some(),
        clerk,
        rtt_ms,
        keepalive_age_ms: age_ms,
        keepalive_loss_bp: loss_bp,
        printer: printer
            .map(|p| p.state)
            .unwrap_or(PrinterState::Unknown)
            .as_str()
            .to_string(),
        printer_detail: printer.and_then(|p| p.detail.clone()),
        items_today: figures.items_today,
        balance_cents: figures.balance_cents,
        unsettled: figures.unsettled,
    }
}

/// The row without the fields that drift every keepalive (RTT, age, loss): a change here is
/// pushed at once; drift waits for the push interval.
fn significant(r: &TerminalRow) -> TerminalRow {
    TerminalRow {
        rtt_ms: None,
        keepalive_age_ms: None,
        keepalive_loss_bp: 0,
        ..r.clone()
    }
}

/// Decides which rows go into the next frame (pure). Rows are compared with what was last
/// *queued*, so a frame that could not be queued leaves its rows pending.
#[derive(Debug, Default)]
pub struct Coalescer {
    account_id: u64,
    queued: BTreeMap<u64, TerminalRow>,
    seq: u64,
    coalesced: u64,
    snapshot_sent: bool,
}

impl Coalescer {
    pub fn new(account_id: u64) -> Coalescer {
        Coalescer {
            account_id,
            ..Default::default()
        }
    }

    /// The next frame for `rows` (all rows of the account, by id), or `None` if nothing worth
    /// sending changed. `fresh` (the push interval elapsed) also sends RTT/age/loss drift.
    pub fn frame(
        &self,
        rows: &[TerminalRow],
        truncated: bool,
        fresh: bool,
        vendor_time_ms: u64,
    ) -> Option<MonitorFrame> {
        let changed: Vec<TerminalRow> = if self.snapshot_sent {
            rows.iter()
                .filter(|r| match self.queued.get(&r.terminal_id) {
                    None => true,
                    Some(q) if fresh => q != *r,
                    Some(q) => significant(q) != significant(r),
                })
                .cloned()
                .collect()
        } else {
            rows.to_vec()
        };
        if self.snapshot_sent && changed.is_empty() {
            return None;
        }
        Some(MonitorFrame {
            kind: if self.snapshot_sent {
                "update"
            } else {
                "snapshot"
            }
            .into(),
            seq: self.seq,
            vendor_time_ms,
            account_id: self.account_id,
            coalesced_frames: self.coalesced,
            truncated,
            rows: changed,
        })
    }

    /// `frame` was queued.
    pub fn queued(&mut self, frame: &MonitorFrame) {
        self.snapshot_sent = true;
        self.seq += 1;
        for r in &frame.rows {
            self.queued.insert(r.terminal_id, r.clone());
        }
    }

    /// `frame` could not be queued (the subscriber is slow): its rows stay pending.
    pub fn dropped(&mut self) {
        self.coalesced += 1;
    }

    pub fn coalesced(&self) -> u64 {
        self.coalesced
    }
}

/// Looks up the vendor's live links of the given terminals.
pub type LiveLinks = Box<dyn Fn(&[u64]) -> HashMap<u64, TerminalLink> + Send + Sync>;

/// Everything a subscription reads.
pub struct SubscriptionCtx {
    pub hub: std::sync::Arc<MonitorHub>,
    pub directory: DirectoryHandle,
    pub ledger: LedgerHandle,
    pub account_id: u64,
    pub ledger_account: AccountId,
    /// The vendor's live links of this account's terminals.
    pub live: LiveLinks,
    pub push_interval: Duration,
    pub queue_max: usize,
    /// A frame the subscriber does not take within this resets the stream and ends the
    /// subscription (`response_write_timeout_ms`), freeing its slot.
    pub write_timeout: Duration,
    pub conn: quinn::Connection,
    pub permit: Permit,
}

/// Midnight UTC of the day holding `now_ms`.
pub fn day_start_ms(now_ms: u64) -> u64 {
    now_ms - now_ms % 86_400_000
}

async fn account_terminals(ctx: &SubscriptionCtx) -> Result<Vec<Terminal>, String> {
    let account = ctx.account_id;
    ctx.directory
        .call(move |d| d.account_terminals(account))
        .await
        .map_err(|e| e.to_string())
}

async fn figures(ctx: &SubscriptionCtx) -> Result<AccountFigures, String> {
    let now = crate::clock::unix_ms();
    let a = ctx
        .ledger
        .account(ctx.ledger_account)
        .await
        .map_err(|e| e.to_string())?;
    let s = ctx
        .ledger
        .statement(ctx.ledger_account, day_start_ms(now), now.saturating_add(1))
        .await
        .map_err(|e| e.to_string())?;
    let unsettled = ctx
        .ledger
        .unsettled(
            ctx.ledger_account,
            crate::wire::monitor::UNSETTLED_COUNTED_MAX,
        )
        .await
        .map_err(|e| e.to_string())?
        .len() as u64;
    Ok(AccountFigures {
        items_today: s.printed_count,
        balance_cents: a.registers.descending.get(),
        unsettled,
    })
}

/// Runs one subscription until the subscriber goes away or the connection closes. The
/// snapshot goes out first; then a frame whenever a row changes significantly, and every
/// `push_interval` for drift. `Err` says why the writer stopped early (a subscriber that did
/// not take a frame within `write_timeout` had its stream reset).
pub(crate) async fn run_subscription(
    ctx: SubscriptionCtx,
    mut send: quinn::SendStream,
) -> Result<(), super::accept::WriteEnd> {
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(ctx.queue_max.max(1));
    let write_timeout = ctx.write_timeout;
    // The writer ends at a stalled or gone subscriber; the loop below sees its queue closed
    // and ends the subscription, freeing the slot.
    let writer = tokio::spawn(async move {
        while let Some(bytes) = rx.recv().await {
            super::accept::write_within(&mut send, &bytes, write_timeout).await?;
        }
        let _ = send.finish();
        Ok(())
    });
    let mut changes = ctx.hub.changes.subscribe();
    let mut tick = tokio::time::interval(ctx.push_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut coalescer = Coalescer::new(ctx.account_id);
    let mut seen = AccountGen {
        ledger: u64::MAX,
        directory: u64::MAX,
    };
    let mut terminals: Vec<Terminal> = Vec::new();
    let mut figs = AccountFigures::default();
    let mut figs_at: Option<Instant> = None;
    let mut fresh = true;
    loop {
        let generation = ctx.hub.generation(ctx.account_id);
        if generation.directory != seen.directory {
            match account_terminals(&ctx).await {
                Ok(t) => {
                    terminals = t;
                    seen.directory = generation.directory;
                }
                Err(e) => tracing::warn!(error = %e, "monitor: reading the terminals failed"),
            }
        }
        let figs_due = figs_at.is_none_or(|t| {
            let age = t.elapsed();
            age >= Duration::from_millis(MONITOR_LEDGER_REFRESH_MS_MAX)
                || (generation.ledger != seen.ledger
                    && age >= Duration::from_millis(MONITOR_LEDGER_REFRESH_MS_MIN))
        });
        if figs_due {
            // Another subscription of the account read them within the window: share them.
            let shared = lock(&ctx.hub.figures)
                .get(&ctx.account_id)
                .copied()
                .filter(|(at, _)| {
                    at.elapsed() < Duration::from_millis(MONITOR_LEDGER_REFRESH_MS_MIN)
                        && figs_at.is_none_or(|mine| *at > mine)
                });
            if let Some((at, f)) = shared {
                figs = f;
                seen.ledger = generation.ledger;
                figs_at = Some(at);
            } else {
                match figures(&ctx).await {
                    Ok(f) => {
                        let at = Instant::now();
                        figs = f;
                        seen.ledger = generation.ledger;
                        figs_at = Some(at);
                        lock(&ctx.hub.figures).insert(ctx.account_id, (at, f));
                    }
                    Err(e) => tracing::warn!(error = %e, "monitor: reading the ledger failed"),
                }
            }
        }
        let shown = &terminals[..terminals.len().min(MONITOR_ROWS_MAX)];
        let ids: Vec<u64> = shown.iter().map(|t| t.id).collect();
        let live = (ctx.live)(&ids);
        let now = Instant::now();
        let rows: Vec<TerminalRow> = shown
            .iter()
            .map(|t| {
                // Live here, else live on another front, else down (last printer known here).
                let (view, printer) = match live.get(&t.id) {
                    Some(l) => (
                        Some(LiveView {
                            clerk: l.clerk.clone(),
                            status: l.link.status.borrow().clone(),
                        }),
                        ctx.hub.printer(t.id),
                    ),
                    None => match ctx.hub.remote(t.id) {
                        Some((v, p)) => (Some(v), Some(p)),
                        None => (None, ctx.hub.printer(t.id)),
                    },
                };
                row(t, view.as_ref(), printer.as_ref(), figs, now)
            })
            .collect();
        if let Some(frame) = coalescer.frame(
            &rows,
            terminals.len() > MONITOR_ROWS_MAX,
            fresh,
            crate::clock::unix_ms(),
        ) {
            match tx.try_send(wm::encode_monitor_frame(&frame)) {
                Ok(()) => coalescer.queued(&frame),
                Err(mpsc::error::TrySendError::Full(_)) => coalescer.dropped(),
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
        tokio::select! {
            _ = ctx.conn.closed() => break,
            c = changes.changed() => {
                if c.is_err() {
                    break;
                }
                fresh = false;
            }
            _ = tick.tick() => fresh = true,
        }
        if tx.is_closed() {
            break;
        }
    }
    drop(tx);
    let ended = writer.await.unwrap_or(Err(super::accept::WriteEnd::Closed));
    tracing::info!(
        account = ctx.account_id,
        coalesced = coalescer.coalesced(),
        "monitor subscription ended"
    );
    drop(ctx.permit);
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terminal(id: u64) -> Terminal {
        Terminal {
            id,
            account_id: 1,
            name: format!("counter-{id}"),
            device_key: [0; 32],
            revoked_ms: None,
        }
    }

    fn live(state: LinkState, rtt_ms: u64, now: Instant) -> LiveView {
        let mut status = LinkStatus::down(9, now);
        status.state = state;
        status.rtt = Some(Duration::from_millis(rtt_ms));
        status.last_fresh = Some(now - Duration::from_millis(30));
        status.loss_pct = 1.234;
        LiveView {
            clerk: "alice".into(),
            status,
        }
    }

    #[test]
    fn rows_show_link_printer_and_figures() {
        let now = Instant::now();
        let f = AccountFigures {
            items_today: 4,
            balance_cents: 1_234,
            unsettled: 2,
        };
        let r = row(&terminal(3), None, None, f, now);
        assert_eq!(
            (r.link.as_str(), r.connected, r.printer.as_str(), r.rtt_ms),
            ("down", false, "unknown", None)
        );
        let p = PrinterView {
            state: PrinterState::PaperOut,
            detail: Some("roll empty".into()),
        };
        let r = row(
            &terminal(3),
            Some(&live(LinkState::Up, 2, now)),
            Some(&p),
            f,
            now,
        );
        assert_eq!(r.link, "up");
        assert_eq!(r.rtt_ms, Some(2));
        assert_eq!(r.keepalive_age_ms, Some(30));
        assert_eq!(r.keepalive_loss_bp, 123);
        assert_eq!(r.printer, "paper_out");
        assert_eq!(r.printer_detail.as_deref(), Some("roll empty"));
        assert_eq!((r.items_today, r.balance_cents, r.unsettled), (4, 1_234, 2));
    }

    #[test]
    fn coalescer_snapshot_then_significant_changes_then_drift_on_the_interval() {
        let now = Instant::now();
        let f = AccountFigures::default();
        let rows = |state, rtt| {
            vec![
                row(&terminal(1), Some(&live(state, rtt, now)), None, f, now),
                row(&terminal(2), None, None, f, now),
            ]
        };
        let mut c = Coalescer::new(1);
        let snap = c.frame(&rows(LinkState::Up, 1), false, false, 0).unwrap();
        assert!(snap.is_snapshot());
        assert_eq!(snap.rows.len(), 2);
        c.queued(&snap);
        // RTT drift alone waits for the interval.
        assert_eq!(c.frame(&rows(LinkState::Up, 5), false, false, 0), None);
        let drift = c.frame(&rows(LinkState::Up, 5), false, true, 0).unwrap();
        assert_eq!(drift.rows.len(), 1);
        assert_eq!(drift.seq, 1);
        c.queued(&drift);
        // A state change goes at once, only the changed row.
        let lapse = c
            .frame(&rows(LinkState::Lapsed, 5), false, false, 0)
            .unwrap();
        assert_eq!(lapse.kind, "update");
        assert_eq!(lapse.rows.len(), 1);
        assert_eq!(lapse.rows[0].link, "lapsed");
        // Not queued (slow subscriber): the change stays pending and is counted.
        c.dropped();
        let again = c
            .frame(&rows(LinkState::Lapsed, 5), false, false, 0)
            .unwrap();
        assert_eq!(again.rows[0].link, "lapsed");
        assert_eq!(again.coalesced_frames, 1);
        assert_eq!(again.seq, 2);
        c.queued(&again);
        assert_eq!(c.frame(&rows(LinkState::Lapsed, 5), false, true, 0), None);
    }

    fn limits(subscribers_max: usize, subscribers_per_account_max: usize) -> SubscriberLimits {
        SubscriberLimits {
            subscribers_max,
            subscribers_per_account_max,
        }
    }

    #[test]
    fn subscriptions_are_bounded_and_slots_come_back() {
        let hub = std::sync::Arc::new(MonitorHub::default());
        let a = hub.admit(1, limits(2, 8)).unwrap();
        let _b = hub.admit(2, limits(2, 8)).unwrap();
        let e = hub.admit(3, limits(2, 8)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Busy);
        assert_eq!(e.limit, Some(2));
        drop(a);
        assert_eq!(hub.subscribers(), 1);
        assert!(hub.admit(1, limits(2, 8)).is_ok());
        assert!(hub.admit(1, limits(0, 8)).is_err());
        // A refusal by the vendor-wide limit leaves no account slot behind.
        assert!(lock(&hub.per_account).get(&1).is_none());
    }

    #[test]
    fn one_account_cannot_take_every_slot() {
        let hub = std::sync::Arc::new(MonitorHub::default());
        let l = limits(4, 2);
        let a = hub.admit(7, l).unwrap();
        let _b = hub.admit(7, l).unwrap();
        let e = hub.admit(7, l).unwrap_err();
        assert_eq!((e.code, e.limit), (ErrorCode::Busy, Some(2)));
        assert!(e.message.contains("account"), "{}", e.message);
        // Other accounts still get slots.
        let _c = hub.admit(8, l).unwrap();
        let _d = hub.admit(9, l).unwrap();
        assert_eq!(hub.subscribers(), 4);
        drop(a);
        assert!(hub.admit(7, l).is_ok());
    }

    #[test]
    fn day_start_is_midnight_utc() {
        assert_eq!(day_start_ms(86_400_000 * 3 + 5), 86_400_000 * 3);
        assert_eq!(day_start_ms(0), 0);
    }
}
