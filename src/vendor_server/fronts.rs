//! Several vendor fronts on one PostgreSQL database (issue 14): a session and its resume work
//! on any front, one terminal holds one live connection across all of them, and every front's
//! admin monitor sees the terminals live on the others. Absent on SQLite (one front).
//!
//! - **Sessions** live in the table `sessions` (ledger migration 11): one row per terminal, with
//!   the front holding it live and an `epoch` from `session_epoch_seq` that grows with every
//!   bind (a login, or a resume on any front). The resume key is stored sealed: XORed with
//!   `HMAC-SHA256(seal key, session id)`, the seal key derived (HKDF) from the vendor key every
//!   front holds; a database reader alone cannot resume a session (and a resume also needs the
//!   terminal's device-key proof).
//! - **One live connection per terminal**: a bind sends `NOTIFY frank_sessions` with
//!   `terminal epoch front`; the front holding an older epoch of that terminal closes its
//!   connection (`CLOSE_SUPERSEDED`) when the notification arrives, within milliseconds. Every
//!   [`SESSIONS_RECONCILE_MS`] each front also asks the table who holds its live terminals, so a
//!   notification lost while its listening connection was down is made good.
//! - **Monitor views**: each front publishes its live terminals' views (`NOTIFY frank_views`,
//!   JSON): a changed link state, clerk or printer at once, drift (RTT, keepalive age, loss)
//!   with a heartbeat every [`VIEW_HEARTBEAT_MS`]. A front that starts or reconnects asks the
//!   others to publish everything again. The views of a front not heard for
//!   [`VIEW_FRONT_SILENT_MS`] are dropped (it died). [`RemoteViews`] is the sans-I/O core.
//!
//! The front reaches the database only through this module's task (a bounded queue of
//! [`FRONTS_REQUESTS_MAX`]) and its listening task.

use super::directory::i64_of;
use crate::ledger::AccountId;
use crate::link::keys::MacKey;
use anyhow::Context;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// Requests queued to the fronts task before a caller gets `busy`.
pub const FRONTS_REQUESTS_MAX: usize = 1024;
/// How often a front publishes its views' drift and says it is alive.
pub const VIEW_HEARTBEAT_MS: u64 = 1_000;
/// A front not heard for this long is taken for dead: its views are dropped.
pub const VIEW_FRONT_SILENT_MS: u64 = 5 * VIEW_HEARTBEAT_MS;
/// Significant view changes are published at most this often (a burst is one message).
pub const VIEW_PUBLISH_MS_MIN: u64 = 50;
/// How often each front checks who holds its live terminals.
pub const SESSIONS_RECONCILE_MS: u64 = 5_000;
/// Most remote terminal views a front keeps (all fronts together).
pub const REMOTE_VIEWS_MAX: usize = 200_000;
/// A NOTIFY payload stays under PostgreSQL's 8000-byte limit.
const NOTIFY_PAYLOAD_BYTES_MAX: usize = 7_000;
/// Longest printer detail published (characters).
const VIEW_DETAIL_CHARS_MAX: usize = 120;
/// The pause before reconnecting a broken connection doubles up to this.
const RECONNECT_PAUSE_MS_MAX: u64 = 5_000;
const RECONNECT_PAUSE_MS_MIN: u64 = 100;
/// How long one database call may take before the caller is answered with an error.
const CALL_TIMEOUT_MS: u64 = 10_000;
const SESSIONS_CHANNEL: &str = "frank_sessions";
const VIEWS_CHANNEL: &str = "frank_views";

/// A session as every front can resume it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedSession {
    pub session_id: u64,
    pub terminal_id: u64,
    pub account_id: u64,
    pub clerk: String,
    pub ledger_account: AccountId,
    pub resume_key: MacKey,
}

/// Who holds a terminal's session now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Holder {
    pub terminal_id: u64,
    pub front: u64,
    pub epoch: u64,
}

/// Seals resume keys for the `sessions` table (pure).
#[derive(Clone)]
pub struct ResumeSeal {
    key: [u8; 32],
}

impl ResumeSeal {
    /// The seal key of the vendor whose signing key `signer` holds (the same on every front):
    /// derived from the key's signature of [`crate::link::keys::RESUME_SEAL_TAG`], which only
    /// the key's holder can make — the key itself may be in a token nobody reads. Ed25519
    /// signatures are deterministic (RFC 8032), so every front gets the same seal; a device
    /// whose two signatures differ is refused. Blocks (a token): call it off async threads.
    pub fn new(signer: &dyn crate::indicium::signer::Signer) -> anyhow::Result<ResumeSeal> {
        let tag = crate::link::keys::RESUME_SEAL_TAG;
        let first = signer.sign(tag)?;
        if signer.sign(tag)? != first {
            anyhow::bail!(
                "the signing device's Ed25519 signatures are not deterministic (RFC 8032); fronts could not share resume keys"
            );
        }
        let hk = hkdf::Hkdf::<Sha256>::new(Some(b"frank resume seal"), &first);
        let mut key = [0u8; 32];
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit.
        hk.expand(b"v1", &mut key)
            .unwrap_or_else(|_| unreachable!("32 bytes of HKDF-SHA256 output"));
        Ok(ResumeSeal { key })
    }

    fn pad(&self, session_id: u64) -> [u8; 32] {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(&session_id.to_be_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Sealing and opening are the same XOR with the session's pad.
    pub fn apply(&self, session_id: u64, key: &[u8; 32]) -> [u8; 32] {
        let pad = self.pad(session_id);
        std::array::from_fn(|i| key[i] ^ pad[i])
    }
}

/// One terminal's view as a front publishes it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublishedView {
    #[serde(rename = "t")]
    pub terminal_id: u64,
    #[serde(rename = "a")]
    pub account_id: u64,
    #[serde(rename = "e")]
    pub epoch: u64,
    #[serde(rename = "c")]
    pub clerk: String,
    /// `LinkState::as_str`.
    #[serde(rename = "s")]
    pub link: String,
    #[serde(rename = "r")]
    pub rtt_ms: Option<u64>,
    #[serde(rename = "g")]
    pub keepalive_age_ms: Option<u64>,
    #[serde(rename = "l")]
    pub loss_bp: u32,
    /// `PrinterState::as_str`.
    #[serde(rename = "p")]
    pub printer: String,
    #[serde(rename = "d")]
    pub printer_detail: Option<String>,
}

impl PublishedView {
    /// Without the fields that drift every keepalive.
    fn significant(&self) -> PublishedView {
        PublishedView {
            rtt_ms: None,
            keepalive_age_ms: None,
            loss_bp: 0,
            ..self.clone()
        }
    }

    fn bounded(mut self) -> PublishedView {
        self.printer_detail = self
            .printer_detail
            .map(|d| d.chars().take(VIEW_DETAIL_CHARS_MAX).collect());
        self
    }
}

/// One `frank_views` message.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ViewsMessage {
    #[serde(rename = "f")]
    pub front: u64,
    /// Views that changed (or all of them, on a resend).
    #[serde(rename = "v", default)]
    pub views: Vec<PublishedView>,
    /// Terminals no longer live on this front.
    #[serde(rename = "x", default)]
    pub gone: Vec<u64>,
    /// The sender asks every front to publish all its views again.
    #[serde(rename = "q", default)]
    pub resend: bool,
}

/// A view received from another front, and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteView {
    pub front: u64,
    pub view: PublishedView,
    pub received: Instant,
}

/// The other fronts' views (sans-I/O core): what the monitor shows of terminals live elsewhere.
#[derive(Debug, Default)]
pub struct RemoteViews {
    /// Per front: when last heard, and its terminals' views.
    fronts: HashMap<u64, (Instant, HashMap<u64, PublishedView>)>,
    len: usize,
}

impl RemoteViews {
    /// Applies a message from another front; `true` if a view changed.
    pub fn apply(&mut self, msg: &ViewsMessage, now: Instant) -> bool {
        let (heard, views) = self
            .fronts
            .entry(msg.front)
            .or_insert_with(|| (now, HashMap::new()));
        *heard = now;
        let mut changed = false;
        for t in &msg.gone {
            if views.remove(t).is_some() {
                self.len -= 1;
                changed = true;
            }
        }
        for v in &msg.views {
            match views.get_mut(&v.terminal_id) {
                Some(old) => {
                    changed |= *old != *v;
                    *old = v.clone();
                }
                None if self.len < REMOTE_VIEWS_MAX => {
                    views.insert(v.terminal_id, v.clone());
                    self.len += 1;
                    changed = true;
                }
                None => {}
            }
        }
        changed
    }

    /// Drops the views of fronts silent for [`VIEW_FRONT_SILENT_MS`]; `true` if any went.
    pub fn expire(&mut self, now: Instant) -> bool {
        let silent = Duration::from_millis(VIEW_FRONT_SILENT_MS);
        let before = self.fronts.len();
        let mut dropped = 0;
        self.fronts.retain(|_, (heard, views)| {
            let keep = now.saturating_duration_since(*heard) < silent;
            if !keep {
                dropped += views.len();
            }
            keep
        });
        self.len -= dropped;
        self.fronts.len() != before
    }

    /// The newest view of `terminal_id` on any other front (the highest session epoch).
    pub fn get(&self, terminal_id: u64) -> Option<RemoteView> {
        self.fronts
            .iter()
            .filter_map(|(front, (heard, views))| {
                views.get(&terminal_id).map(|v| RemoteView {
                    front: *front,
                    view: v.clone(),
                    received: *heard,
                })
            })
            .max_by_key(|r| r.view.epoch)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Decides what a front publishes (sans-I/O): significant changes at once, everything with the
/// heartbeat or when asked.
#[derive(Debug, Default)]
pub struct ViewPublisher {
    published: HashMap<u64, PublishedView>,
}

impl ViewPublisher {
    /// The messages for the front's current `views`: `all` publishes every view (heartbeat
    /// drift, or a resend request), otherwise only significant changes and terminals gone.
    /// Always at least one message when `all` (the heartbeat).
    pub fn next(&mut self, front: u64, views: Vec<PublishedView>, all: bool) -> Vec<ViewsMessage> {
        let views: Vec<PublishedView> = views.into_iter().map(PublishedView::bounded).collect();
        let current: std::collections::HashSet<u64> = views.iter().map(|v| v.terminal_id).collect();
        let gone: Vec<u64> = self
            .published
            .keys()
            .filter(|t| !current.contains(t))
            .copied()
            .collect();
        for t in &gone {
            self.published.remove(t);
        }
        let changed: Vec<PublishedView> = views
            .into_iter()
            .filter(|v| {
                all || self
                    .published
                    .get(&v.terminal_id)
                    .is_none_or(|old| old.significant() != v.significant())
            })
            .collect();
        for v in &changed {
            self.published.insert(v.terminal_id, v.clone());
        }
        if changed.is_empty() && gone.is_empty() && !all {
            return Vec::new();
        }
        chunk(front, changed, gone)
    }
}

/// Splits views into messages under the NOTIFY payload limit.
fn chunk(front: u64, views: Vec<PublishedView>, gone: Vec<u64>) -> Vec<ViewsMessage> {
    let mut out = vec![ViewsMessage {
        front,
        gone,
        ..Default::default()
    }];
    let mut bytes = 64 + out[0].gone.len() * 21;
    for v in views {
        let size = serde_json::to_vec(&v).map_or(NOTIFY_PAYLOAD_BYTES_MAX, |b| b.len() + 1);
        if bytes + size > NOTIFY_PAYLOAD_BYTES_MAX {
            out.push(ViewsMessage {
                front,
                ..Default::default()
            });
            bytes = 64;
        }
        bytes += size;
        if let Some(last) = out.last_mut() {
            last.views.push(v);
        }
    }
    out
}

/// Other fronts' recent binds (sans-I/O core): a bind that arrives while this front's own bind
/// of the same terminal is still on its way to the connection must not be missed, so it is
/// remembered for [`RECENT_BIND_MS`] and checked once the local bind is done.
#[derive(Debug, Default)]
pub struct RecentBinds {
    binds: HashMap<u64, (u64, Instant)>,
}

/// How long another front's bind is remembered.
pub const RECENT_BIND_MS: u64 = 10_000;
/// Most binds remembered; beyond, the oldest are forgotten (the reconcile still finds them).
pub const RECENT_BINDS_MAX: usize = 65_536;

impl RecentBinds {
    pub fn note(&mut self, h: Holder, now: Instant) {
        let keep = Duration::from_millis(RECENT_BIND_MS);
        if self.binds.len() >= RECENT_BINDS_MAX {
            self.binds
                .retain(|_, (_, at)| now.saturating_duration_since(*at) < keep);
        }
        if self.binds.len() < RECENT_BINDS_MAX {
            let e = self.binds.entry(h.terminal_id).or_insert((h.epoch, now));
            if h.epoch >= e.0 {
                *e = (h.epoch, now);
            }
        }
    }

    /// Whether another front bound `terminal_id` with a higher epoch than `epoch` lately.
    pub fn newer(&self, terminal_id: u64, epoch: u64, now: Instant) -> bool {
        self.binds.get(&terminal_id).is_some_and(|(e, at)| {
            *e > epoch && now.saturating_duration_since(*at) < Duration::from_millis(RECENT_BIND_MS)
        })
    }
}

/// Reads a `frank_sessions` payload: `terminal epoch front`.
pub fn parse_holder(payload: &str) -> Option<Holder> {
    let mut it = payload.split(' ').map(str::parse::<u64>);
    let h = Holder {
        terminal_id: it.next()?.ok()?,
        epoch: it.next()?.ok()?,
        front: it.next()?.ok()?,
    };
    it.next().is_none().then_some(h)
}

/// What the listening task hands the front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrontEvent {
    /// Another front bound a terminal's session.
    Bound(Holder),
    /// Another front's views.
    Views(ViewsMessage),
    /// The listening connection is (again) up: notifications may have been missed.
    Listening,
}

/// Database ids are BIGINT: a u64 id is stored as its two's-complement i64 (bijective).
fn db_id(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}

fn id_of(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

type Call = Box<dyn for<'a> FnOnce(&'a mut Client) -> BoxFut<'a> + Send>;
type BoxFut<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// The front's way to the shared sessions and views.
#[derive(Clone)]
pub struct Fronts {
    front: u64,
    seal: ResumeSeal,
    tx: mpsc::Sender<Call>,
    recent: std::sync::Arc<std::sync::Mutex<RecentBinds>>,
}

/// A session as the ledger's connections get it (bounded connect, `synchronous_commit` at
/// least `on`, the primary among several hosts).
async fn connect(url: &str) -> anyhow::Result<Client> {
    crate::ledger::pg_conn::Target::open_url(url)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to the sessions database: {e}"))
}

impl Fronts {
    /// Starts the fronts task and the listening task on `url`. Events from other fronts go to
    /// `events` (bounded: when the front does not keep up, view messages are dropped — the
    /// heartbeat brings them again — and session binds are made good by the reconcile).
    pub async fn start(
        url: &str,
        seal: ResumeSeal,
        events: mpsc::Sender<FrontEvent>,
    ) -> anyhow::Result<Fronts> {
        let front = loop {
            let f = rand::random::<u64>() >> 1;
            if f != 0 {
                break f;
            }
        };
        // Fail at start, not at the first login, when the database is not there.
        let mut client = connect(url)
            .await
            .context("connecting the fronts task to the database")?;
        let (tx, mut rx) = mpsc::channel::<Call>(FRONTS_REQUESTS_MAX);
        let task_url = url.to_string();
        tokio::spawn(async move {
            let mut pause_ms = RECONNECT_PAUSE_MS_MIN;
            while let Some(call) = rx.recv().await {
                if client.is_closed() {
                    match connect(&task_url).await {
                        Ok(c) => {
                            client = c;
                            pause_ms = RECONNECT_PAUSE_MS_MIN;
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "fronts: reconnecting failed");
                            // The call is dropped: its caller sees the task's answer lost.
                            drop(call);
                            tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                            pause_ms = (pause_ms * 2).min(RECONNECT_PAUSE_MS_MAX);
                            continue;
                        }
                    }
                }
                call(&mut client).await;
            }
        });
        tokio::spawn(listen(url.to_string(), front, events));
        Ok(Fronts {
            front,
            seal,
            tx,
            recent: Default::default(),
        })
    }

    /// Remembers another front's bind (see [`RecentBinds`]).
    pub fn note_bind(&self, h: Holder) {
        self.recent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .note(h, Instant::now());
    }

    /// Whether another front bound `terminal_id` after this front's bind at `epoch`.
    pub fn bound_elsewhere_since(&self, terminal_id: u64, epoch: u64) -> bool {
        self.recent.lock().unwrap_or_else(|p| p.into_inner()).newer(
            terminal_id,
            epoch,
            Instant::now(),
        )
    }

    /// This front's id (random per process).
    pub fn id(&self) -> u64 {
        self.front
    }

    /// Runs `f` on the fronts task's connection.
    async fn call<T: Send + 'static>(
        &self,
        f: impl for<'a> FnOnce(
            &'a mut Client,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = anyhow::Result<T>> + Send + 'a>,
        > + Send
        + 'static,
    ) -> anyhow::Result<T> {
        let (reply_tx, reply_rx) = oneshot::channel();
        let call: Call = Box::new(move |c| {
            Box::pin(async move {
                let out = tokio::time::timeout(Duration::from_millis(CALL_TIMEOUT_MS), f(c))
                    .await
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("database call timed out")));
                let _ = reply_tx.send(out);
            })
        });
        self.tx.try_send(call).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                anyhow::anyhow!("fronts task busy ({FRONTS_REQUESTS_MAX} requests queued)")
            }
            mpsc::error::TrySendError::Closed(_) => anyhow::anyhow!("fronts task stopped"),
        })?;
        reply_rx
            .await
            .map_err(|_| anyhow::anyhow!("the database is unreachable"))?
    }

    /// Binds `s` to this front (a login, or a resume here): the terminal's other sessions are
    /// dropped, the epoch grows, and the front holding the older epoch is told. Returns the
    /// new epoch.
    pub async fn bind(&self, s: &SharedSession) -> anyhow::Result<u64> {
        let sealed = self.seal.apply(s.session_id, &s.resume_key.0).to_vec();
        let (s, front) = (s.clone(), db_id(self.front));
        self.call(move |c| {
            Box::pin(async move {
                let mut attempt = 0;
                loop {
                    attempt += 1;
                    match bind_once(c, &s, &sealed, front).await {
                        Err(e) if attempt < 3 && is_unique_violation(&e) => continue,
                        other => return other,
                    }
                }
            })
        })
        .await
    }

    /// The session `session_id` of `terminal_id`, live on any front or detached for less than
    /// `resume_window`.
    pub async fn get(
        &self,
        session_id: u64,
        terminal_id: u64,
        now_ms: u64,
        resume_window: Duration,
    ) -> anyhow::Result<Option<SharedSession>> {
        let oldest = i64_of(
            now_ms.saturating_sub(u64::try_from(resume_window.as_millis()).unwrap_or(u64::MAX)),
        );
        let row = self
            .call(move |c| {
                Box::pin(async move {
                    Ok(c.query_opt(
                        "SELECT account_id, clerk, ledger_account, resume_sealed FROM sessions
                         WHERE session_id = $1 AND terminal_id = $2
                           AND (detached_at_ms IS NULL OR detached_at_ms > $3)",
                        &[&db_id(session_id), &i64_of(terminal_id), &oldest],
                    )
                    .await?)
                })
            })
            .await?;
        let Some(row) = row else { return Ok(None) };
        let sealed: Vec<u8> = row.get(3);
        let sealed = <[u8; 32]>::try_from(sealed.as_slice())
            .map_err(|_| anyhow::anyhow!("a sealed resume key is not 32 bytes"))?;
        Ok(Some(SharedSession {
            session_id,
            terminal_id,
            account_id: id_of(row.get(0)),
            clerk: row.get(1),
            ledger_account: AccountId(id_of(row.get(2))),
            resume_key: MacKey(self.seal.apply(session_id, &sealed)),
        }))
    }

    /// This front's connection of the session ended: it stays resumable (on any front) for the
    /// resume window. A bind since (a higher epoch) is left alone. Does not wait.
    pub fn detach(&self, session_id: u64, epoch: u64, now_ms: u64) {
        let this = self.clone();
        tokio::spawn(async move { this.detach_now(session_id, epoch, now_ms).await });
    }

    async fn detach_now(&self, session_id: u64, epoch: u64, now_ms: u64) {
        let f = self.call(move |c| {
            Box::pin(async move {
                c.execute(
                    "UPDATE sessions SET detached_at_ms = $3
                     WHERE session_id = $1 AND epoch = $2 AND detached_at_ms IS NULL",
                    &[&db_id(session_id), &i64_of(epoch), &i64_of(now_ms)],
                )
                .await?;
                Ok(())
            })
        });
        if let Err(e) = f.await {
            tracing::warn!(error = %e, "fronts: a session detach was not recorded");
        }
    }

    /// Forgets the sessions of revoked terminals and disabled clerks, and the ones detached
    /// before `oldest_ms` (past the resume window).
    pub async fn forget(
        &self,
        terminals: Vec<u64>,
        clerks: Vec<String>,
        oldest_ms: u64,
    ) -> anyhow::Result<u64> {
        let terminals: Vec<i64> = terminals.into_iter().map(i64_of).collect();
        self.call(move |c| {
            Box::pin(async move {
                Ok(c.execute(
                    "DELETE FROM sessions WHERE terminal_id = ANY($1) OR clerk = ANY($2)
                        OR detached_at_ms < $3",
                    &[&terminals, &clerks, &i64_of(oldest_ms)],
                )
                .await?)
            })
        })
        .await
    }

    /// Who holds each of `terminals` now.
    pub async fn holders(&self, terminals: Vec<u64>) -> anyhow::Result<Vec<Holder>> {
        let terminals: Vec<i64> = terminals.into_iter().map(i64_of).collect();
        self.call(move |c| {
            Box::pin(async move {
                Ok(c.query(
                    "SELECT terminal_id, front, epoch FROM sessions
                     WHERE terminal_id = ANY($1) AND detached_at_ms IS NULL",
                    &[&terminals],
                )
                .await?
                .iter()
                .map(|r| Holder {
                    terminal_id: id_of(r.get(0)),
                    front: id_of(r.get(1)),
                    epoch: id_of(r.get(2)),
                })
                .collect())
            })
        })
        .await
    }

    /// Publishes view messages (each one NOTIFY).
    pub async fn publish(&self, messages: Vec<ViewsMessage>) -> anyhow::Result<()> {
        let payloads: Vec<String> = messages
            .iter()
            .map(serde_json::to_string)
            .collect::<Result<_, _>>()?;
        self.call(move |c| {
            Box::pin(async move {
                for p in payloads {
                    c.execute("SELECT pg_notify($1, $2)", &[&VIEWS_CHANNEL, &p])
                        .await?;
                }
                Ok(())
            })
        })
        .await
    }
}

fn is_unique_violation(e: &anyhow::Error) -> bool {
    e.downcast_ref::<tokio_postgres::Error>()
        .and_then(tokio_postgres::Error::code)
        .is_some_and(|c| *c == tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
}

async fn bind_once(
    c: &mut Client,
    s: &SharedSession,
    sealed: &[u8],
    front: i64,
) -> anyhow::Result<u64> {
    let tx = c.transaction().await?;
    tx.execute(
        "DELETE FROM sessions WHERE terminal_id = $1 AND session_id <> $2",
        &[&i64_of(s.terminal_id), &db_id(s.session_id)],
    )
    .await?;
    let epoch: i64 = tx
        .query_one(
            "INSERT INTO sessions (session_id, terminal_id, account_id, clerk, ledger_account,
                 resume_sealed, front, epoch, detached_at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, nextval('session_epoch_seq'), NULL)
             ON CONFLICT (session_id) DO UPDATE SET front = EXCLUDED.front,
                 epoch = EXCLUDED.epoch, detached_at_ms = NULL
             RETURNING epoch",
            &[
                &db_id(s.session_id),
                &i64_of(s.terminal_id),
                &i64_of(s.account_id),
                &s.clerk,
                &i64_of(s.ledger_account.0),
                &sealed,
                &front,
            ],
        )
        .await?
        .get(0);
    let epoch = id_of(epoch);
    let payload = format!("{} {} {}", s.terminal_id, epoch, id_of(front));
    tx.execute("SELECT pg_notify($1, $2)", &[&SESSIONS_CHANNEL, &payload])
        .await?;
    tx.commit().await?;
    Ok(epoch)
}

/// The listening task: `LISTEN` on both channels, events to the front, reconnecting with a
/// bounded pause. Ends when the front stops taking events.
async fn listen(url: String, me: u64, events: mpsc::Sender<FrontEvent>) {
    let mut pause_ms = RECONNECT_PAUSE_MS_MIN;
    loop {
        match listen_once(&url, me, &events).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, "fronts: listening connection ended; reconnecting");
                tokio::time::sleep(Duration::from_millis(pause_ms)).await;
                pause_ms = (pause_ms * 2).min(RECONNECT_PAUSE_MS_MAX);
            }
        }
        if events.is_closed() {
            return;
        }
    }
}

/// `Ok` when the front is gone; `Err` when the connection broke.
async fn listen_once(url: &str, me: u64, events: &mpsc::Sender<FrontEvent>) -> anyhow::Result<()> {
    let target = crate::ledger::pg_conn::Target::parse(url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let (client, mut connection) = tokio::time::timeout(
        Duration::from_millis(CALL_TIMEOUT_MS),
        target.config().connect(NoTls),
    )
    .await
    .map_err(|_| anyhow::anyhow!("connecting timed out"))??;
    let (msg_tx, mut msg_rx) = mpsc::channel::<AsyncMessage>(FRONTS_REQUESTS_MAX);
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(m) = futures_util::StreamExt::next(&mut messages).await {
            let Ok(m) = m else { return };
            // Full: this notification is dropped (heartbeats and the reconcile make it good).
            let _ = msg_tx.try_send(m);
        }
    });
    client
        .batch_execute(&format!(
            "LISTEN {SESSIONS_CHANNEL}; LISTEN {VIEWS_CHANNEL}"
        ))
        .await?;
    if events.send(FrontEvent::Listening).await.is_err() {
        driver.abort();
        return Ok(());
    }
    while let Some(m) = msg_rx.recv().await {
        let AsyncMessage::Notification(n) = m else {
            continue;
        };
        let event = if n.channel() == SESSIONS_CHANNEL {
            parse_holder(n.payload())
                .filter(|h| h.front != me)
                .map(FrontEvent::Bound)
        } else {
            serde_json::from_str::<ViewsMessage>(n.payload())
                .ok()
                .filter(|m| m.front != me)
                .map(FrontEvent::Views)
        };
        let Some(event) = event else { continue };
        match events.try_send(event) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
            Err(mpsc::error::TrySendError::Closed(_)) => {
                driver.abort();
                return Ok(());
            }
        }
    }
    drop(client);
    anyhow::bail!("the listening connection closed")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(t: u64, link: &str, rtt: u64) -> PublishedView {
        PublishedView {
            terminal_id: t,
            account_id: 1,
            epoch: 1,
            clerk: "alice".into(),
            link: link.into(),
            rtt_ms: Some(rtt),
            keepalive_age_ms: Some(10),
            loss_bp: 0,
            printer: "ready".into(),
            printer_detail: None,
        }
    }

    #[test]
    fn the_seal_opens_with_the_same_vendor_key_only() {
        use crate::indicium::signer::KeySigner;
        let seal = |seed| ResumeSeal::new(&KeySigner::from_seed(&[seed; 32])).unwrap();
        let secret = [42u8; 32];
        let sealed = seal(7).apply(99, &secret);
        assert_ne!(sealed, secret);
        assert_eq!(seal(7).apply(99, &sealed), secret);
        assert_ne!(seal(8).apply(99, &sealed), secret);
        assert_ne!(seal(7).apply(98, &sealed), secret);
    }

    #[test]
    fn a_recent_bind_elsewhere_is_remembered_for_a_while() {
        let t0 = Instant::now();
        let mut r = RecentBinds::default();
        let h = |epoch| Holder {
            terminal_id: 5,
            epoch,
            front: 2,
        };
        r.note(h(10), t0);
        assert!(r.newer(5, 9, t0));
        assert!(!r.newer(5, 10, t0), "not newer than our own epoch");
        assert!(!r.newer(6, 1, t0), "another terminal");
        r.note(h(7), t0);
        assert!(r.newer(5, 9, t0), "an older bind does not hide a newer one");
        assert!(!r.newer(5, 9, t0 + Duration::from_millis(RECENT_BIND_MS)));
    }

    #[test]
    fn holders_parse_strictly() {
        assert_eq!(
            parse_holder("5 12 77"),
            Some(Holder {
                terminal_id: 5,
                epoch: 12,
                front: 77
            })
        );
        for bad in ["", "5 12", "5 12 77 1", "a 1 2", "5 -1 2"] {
            assert_eq!(parse_holder(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_publisher_sends_significant_changes_at_once_and_drift_with_the_heartbeat() {
        let mut p = ViewPublisher::default();
        let first = p.next(9, vec![view(1, "up", 5), view(2, "up", 5)], false);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].views.len(), 2);
        // Drift only: nothing until the heartbeat.
        assert!(
            p.next(9, vec![view(1, "up", 6), view(2, "up", 7)], false)
                .is_empty()
        );
        let hb = p.next(9, vec![view(1, "up", 6), view(2, "up", 7)], true);
        assert_eq!(hb[0].views.len(), 2);
        // A state change goes at once; a terminal gone is said.
        let m = p.next(9, vec![view(1, "lapsed", 6)], false);
        assert_eq!(m[0].views, vec![view(1, "lapsed", 6)]);
        assert_eq!(m[0].gone, vec![2]);
        // An empty heartbeat still says the front is alive.
        assert_eq!(p.next(9, vec![], true).len(), 1);
    }

    #[test]
    fn many_views_split_under_the_notify_limit() {
        let mut p = ViewPublisher::default();
        let views: Vec<PublishedView> = (0..500).map(|t| view(t, "up", 1)).collect();
        let msgs = p.next(9, views, true);
        assert!(msgs.len() > 1);
        assert_eq!(msgs.iter().map(|m| m.views.len()).sum::<usize>(), 500);
        for m in &msgs {
            assert!(serde_json::to_vec(m).unwrap().len() < 8000);
        }
    }

    #[test]
    fn remote_views_follow_their_front_and_expire_with_it() {
        let t0 = Instant::now();
        let mut r = RemoteViews::default();
        let msg = ViewsMessage {
            front: 3,
            views: vec![view(1, "up", 5)],
            ..Default::default()
        };
        assert!(r.apply(&msg, t0));
        assert!(!r.apply(&msg, t0), "the same view again changes nothing");
        assert_eq!(r.get(1).unwrap().view.link, "up");
        // A newer epoch on another front wins.
        let mut moved = view(1, "up", 5);
        moved.epoch = 2;
        r.apply(
            &ViewsMessage {
                front: 4,
                views: vec![moved],
                ..Default::default()
            },
            t0,
        );
        assert_eq!(r.get(1).unwrap().front, 4);
        r.apply(
            &ViewsMessage {
                front: 4,
                gone: vec![1],
                ..Default::default()
            },
            t0,
        );
        assert_eq!(r.get(1).unwrap().front, 3);
        assert!(!r.expire(t0 + Duration::from_millis(VIEW_FRONT_SILENT_MS - 1)));
        assert!(r.expire(t0 + Duration::from_millis(VIEW_FRONT_SILENT_MS)));
        assert!(r.get(1).is_none());
        assert!(r.is_empty());
    }
}
