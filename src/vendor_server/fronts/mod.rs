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
//! The front reaches the database only through [`pg`]'s task (a bounded queue of
//! [`FRONTS_REQUESTS_MAX`]) and its listening task; this file is the sans-I/O part (the
//! shared rows and messages, the seal, the views' and binds' bookkeeping).

use crate::ledger::AccountId;
use crate::link::keys::MacKey;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::HashMap;
use std::time::{Duration, Instant};

#[cfg(not(feature = "postgres"))]
mod none;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(not(feature = "postgres"))]
pub use none::Fronts;
#[cfg(feature = "postgres")]
pub use pg::Fronts;

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
