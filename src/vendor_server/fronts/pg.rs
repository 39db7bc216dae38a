//! Shell: the front's connections to the shared PostgreSQL database ([`super`] has the
//! rules): one task owning a client that runs the front's calls in order (a bounded queue of
//! [`FRONTS_REQUESTS_MAX`]), and one listening connection turning `NOTIFY` into
//! [`FrontEvent`]s.

use super::*;
use crate::vendor_server::directory::i64_of;
use anyhow::Context;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// The pause before reconnecting a broken connection doubles up to this.
const RECONNECT_PAUSE_MS_MAX: u64 = 5_000;
const RECONNECT_PAUSE_MS_MIN: u64 = 100;
/// How long one database call may take before the caller is answered with an error.
const CALL_TIMEOUT_MS: u64 = 10_000;
const SESSIONS_CHANNEL: &str = "frank_sessions";
const VIEWS_CHANNEL: &str = "frank_views";

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
