//! **Core**: the vendor's session table (sans-I/O; time is passed in).
//!
//! Invariants, held by every method:
//! - a terminal holds at most one session (a new login or resume of a terminal drops its
//!   others), so the table holds at most one record per enrolled terminal;
//! - a connection holds at most one session: binding a session to a connection drops the one
//!   it held;
//! - a session is *live* while bound to a connection and *detached* once that connection
//!   ended (only the connection it is bound to can detach it); only live sessions count
//!   against `live_max` (`sessions_max`), so the limit can be reached only by that many
//!   distinct live connections; a detached session is dropped `resume_window` after its
//!   connection ended.

use crate::ledger::AccountId;
use crate::link::keys::MacKey;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What the vendor keeps of a session between connections.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub terminal_id: u64,
    pub account_id: u64,
    pub clerk: String,
    pub ledger_account: AccountId,
    pub resume_key: MacKey,
    pub binding: Binding,
}

/// Where a session is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    /// Bound to the live connection with this id (quinn's `stable_id`).
    Live { connection: usize },
    /// Its connection ended at `at`; resumable until then + the resume window.
    Detached { at: Instant },
}

impl SessionRecord {
    fn is_live(&self) -> bool {
        matches!(self.binding, Binding::Live { .. })
    }

    fn is_on(&self, connection: usize) -> bool {
        self.binding == Binding::Live { connection }
    }
}

/// Why a session could not be bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindError {
    /// `live_max` sessions are live on other connections.
    Full { live_max: usize },
    /// No resumable session with that id for that terminal.
    Unknown,
}

#[derive(Debug)]
pub struct SessionTable {
    live_max: usize,
    resume_window: Duration,
    records: HashMap<u64, SessionRecord>,
}

impl SessionTable {
    pub fn new(live_max: usize, resume_window: Duration) -> Self {
        SessionTable {
            live_max,
            resume_window,
            records: HashMap::new(),
        }
    }

    /// Sessions bound to a live connection.
    pub fn live(&self) -> usize {
        self.records.values().filter(|r| r.is_live()).count()
    }

    /// Every record held, live or resumable.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    pub fn get(&self, session_id: u64) -> Option<&SessionRecord> {
        self.records.get(&session_id)
    }

    /// Binds a new session (a login) to `connection` (`record.binding` is set here).
    pub fn insert(
        &mut self,
        session_id: u64,
        record: SessionRecord,
        connection: usize,
        now: Instant,
    ) -> Result<(), BindError> {
        self.prune(now);
        self.make_room(record.terminal_id, session_id, connection)?;
        self.records.insert(
            session_id,
            SessionRecord {
                binding: Binding::Live { connection },
                ..record
            },
        );
        Ok(())
    }

    /// Binds the session `session_id` of `terminal_id` (live elsewhere or resumable) to
    /// `connection`; returns its record.
    pub fn resume(
        &mut self,
        session_id: u64,
        terminal_id: u64,
        connection: usize,
        now: Instant,
    ) -> Result<SessionRecord, BindError> {
        self.prune(now);
        if self
            .records
            .get(&session_id)
            .is_none_or(|r| r.terminal_id != terminal_id)
        {
            return Err(BindError::Unknown);
        }
        self.make_room(terminal_id, session_id, connection)?;
        let rec = self
            .records
            .get_mut(&session_id)
            .ok_or(BindError::Unknown)?;
        rec.binding = Binding::Live { connection };
        Ok(rec.clone())
    }

    /// `connection` ended: its session stays resumable for the resume window. A session
    /// since bound to another connection is left alone.
    pub fn detach(&mut self, connection: usize, now: Instant) {
        for rec in self.records.values_mut() {
            if rec.is_on(connection) {
                rec.binding = Binding::Detached { at: now };
            }
        }
        self.prune(now);
    }

    /// Forgets every session `gone` names, live or resumable (a revoked terminal's, a disabled
    /// clerk's); returns how many.
    pub fn forget(&mut self, mut gone: impl FnMut(&SessionRecord) -> bool) -> usize {
        let before = self.records.len();
        self.records.retain(|_, r| !gone(r));
        before - self.records.len()
    }

    /// Takes in a session another front bound (`fronts`), detached as of `now`, unless this
    /// table already holds it; a resume then binds it here as usual.
    pub fn adopt(&mut self, session_id: u64, record: SessionRecord, now: Instant) {
        self.prune(now);
        self.records.entry(session_id).or_insert(SessionRecord {
            binding: Binding::Detached { at: now },
            ..record
        });
    }

    /// Forgets one session.
    pub fn remove(&mut self, session_id: u64) {
        self.records.remove(&session_id);
    }

    /// Drops sessions detached for longer than the resume window.
    pub fn prune(&mut self, now: Instant) {
        let window = self.resume_window;
        self.records.retain(|_, r| match r.binding {
            Binding::Live { .. } => true,
            Binding::Detached { at } => now.saturating_duration_since(at) < window,
        });
    }

    /// Checks the live limit as it will be once the connection's session and the terminal's
    /// other sessions are gone, then drops them. `keep` is the session being bound.
    fn make_room(
        &mut self,
        terminal_id: u64,
        keep: u64,
        connection: usize,
    ) -> Result<(), BindError> {
        let goes = |id: u64, r: &SessionRecord| {
            id != keep && (r.is_on(connection) || r.terminal_id == terminal_id)
        };
        let live_after = self
            .records
            .iter()
            .filter(|(id, r)| r.is_live() && !goes(**id, r) && **id != keep)
            .count();
        if live_after >= self.live_max {
            return Err(BindError::Full {
                live_max: self.live_max,
            });
        }
        self.records.retain(|id, r| !goes(*id, r));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(terminal_id: u64) -> SessionRecord {
        SessionRecord {
            terminal_id,
            account_id: 1,
            clerk: "alice".into(),
            ledger_account: AccountId(1),
            resume_key: MacKey([0; 32]),
            binding: Binding::Detached { at: Instant::now() },
        }
    }

    const WINDOW: Duration = Duration::from_secs(600);

    #[test]
    fn only_live_connections_reach_the_limit() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(2, WINDOW);
        t.insert(1, rec(10), 100, t0).unwrap();
        t.insert(2, rec(20), 200, t0).unwrap();
        assert_eq!(
            t.insert(3, rec(30), 300, t0),
            Err(BindError::Full { live_max: 2 })
        );
        // A connection ending frees its live place; the session stays resumable.
        t.detach(100, t0);
        assert_eq!((t.live(), t.len()), (1, 2));
        t.insert(3, rec(30), 300, t0).unwrap();
        assert_eq!((t.live(), t.len()), (2, 3));
        // Resuming needs a live place too.
        assert_eq!(
            t.resume(1, 10, 400, t0).err(),
            Some(BindError::Full { live_max: 2 })
        );
    }

    #[test]
    fn one_session_per_connection_and_per_terminal() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(2, WINDOW);
        t.insert(1, rec(10), 100, t0).unwrap();
        // A second login on the same connection replaces the first, even at the limit.
        t.insert(2, rec(20), 200, t0).unwrap();
        t.insert(3, rec(30), 200, t0).unwrap();
        assert!(t.get(2).is_none());
        assert_eq!((t.live(), t.len()), (2, 2));
        // Many logins on one connection leave one session.
        for id in 10..26 {
            t.insert(id, rec(30), 200, t0).unwrap();
        }
        assert_eq!((t.live(), t.len()), (2, 2));
        t.detach(200, t0);
        assert_eq!((t.live(), t.len()), (1, 2));
        // A terminal's new session drops its old one, live or detached.
        t.insert(4, rec(10), 400, t0).unwrap();
        assert!(t.get(1).is_none());
        t.detach(400, t0);
        t.insert(5, rec(10), 500, t0).unwrap();
        assert!(t.get(4).is_none());
        assert_eq!(t.live(), 1);
    }

    #[test]
    fn resume_within_the_window_for_the_same_terminal_only() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(10, WINDOW);
        t.insert(1, rec(10), 100, t0).unwrap();
        t.detach(100, t0);
        assert_eq!(t.resume(1, 11, 200, t0).err(), Some(BindError::Unknown));
        assert_eq!(t.resume(9, 10, 200, t0).err(), Some(BindError::Unknown));
        let r = t.resume(1, 10, 200, t0 + Duration::from_secs(1)).unwrap();
        assert_eq!(
            (r.terminal_id, r.binding),
            (10, Binding::Live { connection: 200 })
        );
        assert_eq!(t.live(), 1);
        // Detached past the window: gone.
        t.detach(200, t0 + Duration::from_secs(2));
        assert_eq!(
            t.resume(1, 10, 300, t0 + Duration::from_secs(2) + WINDOW)
                .err(),
            Some(BindError::Unknown)
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_resume_moves_a_live_session_and_its_old_connection_cannot_detach_it() {
        let t0 = Instant::now();
        let mut t = SessionTable::new(1, WINDOW);
        t.insert(1, rec(10), 100, t0).unwrap();
        // The counter resumes on a new connection before the vendor saw the old one end;
        // at the limit, because the session moves rather than adds.
        t.resume(1, 10, 200, t0).unwrap();
        t.detach(100, t0);
        assert_eq!(t.live(), 1);
        t.detach(200, t0);
        assert_eq!(t.live(), 0);
        // A later detach does not move the time its connection ended.
        t.detach(200, t0 + WINDOW / 2);
        t.prune(t0 + WINDOW);
        assert!(t.is_empty());
    }
}
