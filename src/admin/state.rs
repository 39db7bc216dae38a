//! The monitor's state (sans-I/O): the rows the vendor pushed, the subscription's phase, the
//! sort order and the scroll position. Frames and keys go in; [`super::view::draw`] reads it.

use crate::wire::{MonitorFrame, TerminalRow};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use std::collections::BTreeMap;

/// Where the subscription is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Signing in and subscribing.
    Connecting,
    /// Frames arrive.
    Live,
    /// The subscription ended; the shell is reconnecting. The rows shown are the last known.
    Lost { reason: String },
    /// The vendor refused for good (not a supervisor, sign-in needed): nothing will change.
    Refused { reason: String },
}

/// Columns the table can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    Id,
    Name,
    Link,
    Rtt,
    Age,
    Loss,
    Printer,
}

impl SortKey {
    pub const ALL: [SortKey; 7] = [
        SortKey::Id,
        SortKey::Name,
        SortKey::Link,
        SortKey::Rtt,
        SortKey::Age,
        SortKey::Loss,
        SortKey::Printer,
    ];

    pub fn label(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Name => "name",
            SortKey::Link => "link",
            SortKey::Rtt => "rtt",
            SortKey::Age => "age",
            SortKey::Loss => "loss",
            SortKey::Printer => "printer",
        }
    }

    fn next(self) -> SortKey {
        let i = SortKey::ALL.iter().position(|k| *k == self).unwrap_or(0);
        SortKey::ALL[(i + 1) % SortKey::ALL.len()]
    }
}

/// Link states worst first, so sorting by link puts trouble on top.
fn link_rank(link: &str) -> u8 {
    match link {
        "lapsed" => 0,
        "closed" => 1,
        "down" => 2,
        "up" => 3,
        _ => 4,
    }
}

/// Printer states worst first.
fn printer_rank(printer: &str) -> u8 {
    match printer {
        "vanished" => 0,
        "offline" => 1,
        "paper_out" => 2,
        "cover_open" => 3,
        "unknown" => 4,
        "none" => 5,
        "ready" => 6,
        _ => 7,
    }
}

/// The monitor's whole state.
#[derive(Debug, Clone)]
pub struct Monitor {
    /// Shown in the title: the vendor address.
    pub vendor: String,
    pub clerk: String,
    pub phase: Phase,
    pub account_id: Option<u64>,
    pub rows: BTreeMap<u64, TerminalRow>,
    pub sort: SortKey,
    pub descending: bool,
    /// First row shown (scrolling).
    pub offset: usize,
    pub frames: u64,
    pub last_seq: Option<u64>,
    pub coalesced_frames: u64,
    pub truncated: bool,
    /// Vendor time of the last frame.
    pub vendor_time_ms: Option<u64>,
    /// The fleet's lapses as this monitor saw them: rows that went from `up` to `lapsed`
    /// between frames (a lapse that recovered within one coalesced frame is not seen, so this is
    /// a lower bound), and the terminal-milliseconds of link up time they happened in (rows up
    /// at a frame × vendor time to the next frame).
    pub lapses_seen: u64,
    pub up_terminal_ms: u64,
    pub quit: bool,
}

impl Monitor {
    pub fn new(vendor: impl Into<String>, clerk: impl Into<String>) -> Monitor {
        Monitor {
            vendor: vendor.into(),
            clerk: clerk.into(),
            phase: Phase::Connecting,
            account_id: None,
            rows: BTreeMap::new(),
            sort: SortKey::Id,
            descending: false,
            offset: 0,
            frames: 0,
            last_seq: None,
            coalesced_frames: 0,
            truncated: false,
            vendor_time_ms: None,
            lapses_seen: 0,
            up_terminal_ms: 0,
            quit: false,
        }
    }

    /// Lapses per terminal-hour of link up time seen so far (`None` before a minute of it).
    pub fn lapse_rate_per_terminal_hour(&self) -> Option<f64> {
        const MIN_TERMINAL_MS: u64 = 60_000;
        (self.up_terminal_ms >= MIN_TERMINAL_MS)
            .then(|| self.lapses_seen as f64 * 3_600_000.0 / self.up_terminal_ms as f64)
    }

    /// A frame from the vendor. A snapshot replaces every row; an update replaces its rows.
    pub fn apply(&mut self, frame: MonitorFrame) {
        let replaced = if frame.is_snapshot() {
            self.truncated = frame.truncated;
            std::mem::take(&mut self.rows)
        } else {
            BTreeMap::new()
        };
        self.account_id = Some(frame.account_id);
        self.frames += 1;
        self.last_seq = Some(frame.seq);
        self.coalesced_frames = frame.coalesced_frames;
        if let Some(before) = self.vendor_time_ms {
            let up = self
                .rows
                .values()
                .chain(replaced.values())
                .filter(|r| r.link == "up")
                .count() as u64;
            let elapsed = frame.vendor_time_ms.saturating_sub(before);
            self.up_terminal_ms = self
                .up_terminal_ms
                .saturating_add(up.saturating_mul(elapsed));
        }
        self.vendor_time_ms = Some(frame.vendor_time_ms);
        for r in frame.rows {
            let was_up = self
                .rows
                .get(&r.terminal_id)
                .or_else(|| replaced.get(&r.terminal_id))
                .is_some_and(|old| old.link == "up");
            if was_up && r.link == "lapsed" {
                self.lapses_seen += 1;
            }
            self.rows.insert(r.terminal_id, r);
        }
        self.phase = Phase::Live;
    }

    pub fn lost(&mut self, reason: impl Into<String>) {
        if !matches!(self.phase, Phase::Refused { .. }) {
            self.phase = Phase::Lost {
                reason: reason.into(),
            };
        }
    }

    pub fn refused(&mut self, reason: impl Into<String>) {
        self.phase = Phase::Refused {
            reason: reason.into(),
        };
    }

    /// The rows in display order.
    pub fn sorted(&self) -> Vec<&TerminalRow> {
        let mut v: Vec<&TerminalRow> = self.rows.values().collect();
        let none_last = |x: Option<u64>| x.unwrap_or(u64::MAX);
        v.sort_by(|a, b| {
            let primary = match self.sort {
                SortKey::Id => a.terminal_id.cmp(&b.terminal_id),
                SortKey::Name => a.name.cmp(&b.name),
                SortKey::Link => link_rank(&a.link).cmp(&link_rank(&b.link)),
                SortKey::Rtt => none_last(a.rtt_ms).cmp(&none_last(b.rtt_ms)),
                SortKey::Age => none_last(a.keepalive_age_ms).cmp(&none_last(b.keepalive_age_ms)),
                SortKey::Loss => a.keepalive_loss_bp.cmp(&b.keepalive_loss_bp),
                SortKey::Printer => printer_rank(&a.printer).cmp(&printer_rank(&b.printer)),
            };
            let primary = if self.descending {
                primary.reverse()
            } else {
                primary
            };
            primary.then(a.terminal_id.cmp(&b.terminal_id))
        });
        v
    }

    /// A key press. `q`, Esc and Ctrl-C quit; `s` cycles the sort column, `r` reverses it;
    /// arrows, PgUp/PgDn, Home/End scroll.
    pub fn key(&mut self, k: KeyEvent) {
        if k.kind == KeyEventKind::Release {
            return;
        }
        let last = self.rows.len().saturating_sub(1);
        match k.code {
            KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => self.quit = true,
            KeyCode::Char('q') | KeyCode::Esc => self.quit = true,
            KeyCode::Char('s') => {
                self.sort = self.sort.next();
                self.offset = 0;
            }
            KeyCode::Char('r') => self.descending = !self.descending,
            KeyCode::Down | KeyCode::Char('j') => self.offset = (self.offset + 1).min(last),
            KeyCode::Up | KeyCode::Char('k') => self.offset = self.offset.saturating_sub(1),
            KeyCode::PageDown => self.offset = (self.offset + 10).min(last),
            KeyCode::PageUp => self.offset = self.offset.saturating_sub(10),
            KeyCode::Home => self.offset = 0,
            KeyCode::End => self.offset = last,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: u64, link: &str, rtt: Option<u64>, printer: &str) -> TerminalRow {
        TerminalRow {
            terminal_id: id,
            name: format!("n{}", 10 - id),
            link: link.into(),
            connected: link != "down",
            clerk: None,
            rtt_ms: rtt,
            keepalive_age_ms: None,
            keepalive_loss_bp: 0,
            printer: printer.into(),
            printer_detail: None,
            items_today: 0,
            balance_cents: 0,
            unsettled: 0,
        }
    }

    #[test]
    fn lapses_are_counted_per_terminal_hour_of_up_time() {
        let mut m = Monitor::new("v", "s");
        let at = |kind: &str, t: u64, rows| {
            let mut f = frame(kind, rows);
            f.vendor_time_ms = t;
            f
        };
        m.apply(at(
            "snapshot",
            0,
            vec![row(1, "up", None, "ready"), row(2, "up", None, "ready")],
        ));
        assert_eq!(m.lapse_rate_per_terminal_hour(), None);
        // Two terminals up for 30 minutes, then one lapses.
        m.apply(at(
            "update",
            1_800_000,
            vec![row(1, "lapsed", None, "ready")],
        ));
        assert_eq!(m.lapses_seen, 1);
        assert_eq!(m.up_terminal_ms, 3_600_000);
        assert_eq!(m.lapse_rate_per_terminal_hour(), Some(1.0));
        // Up again, and a snapshot showing it lapsed once more counts too.
        m.apply(at("update", 1_800_000, vec![row(1, "up", None, "ready")]));
        m.apply(at(
            "snapshot",
            3_600_000,
            vec![row(1, "lapsed", None, "ready"), row(2, "up", None, "ready")],
        ));
        assert_eq!(m.lapses_seen, 2);
        assert_eq!(m.up_terminal_ms, 7_200_000);
        assert_eq!(m.lapse_rate_per_terminal_hour(), Some(1.0));
    }

    fn frame(kind: &str, rows: Vec<TerminalRow>) -> MonitorFrame {
        MonitorFrame {
            kind: kind.into(),
            seq: 0,
            vendor_time_ms: 1,
            account_id: 1,
            coalesced_frames: 0,
            truncated: false,
            rows,
        }
    }

    fn press(m: &mut Monitor, c: KeyCode) {
        m.key(KeyEvent::new(c, KeyModifiers::NONE));
    }

    #[test]
    fn snapshot_replaces_updates_merge_and_sorting_cycles() {
        let mut m = Monitor::new("v", "boss");
        m.apply(frame(
            "snapshot",
            vec![
                row(1, "up", Some(3), "ready"),
                row(2, "lapsed", Some(1), "paper_out"),
                row(3, "down", None, "unknown"),
            ],
        ));
        assert_eq!(m.phase, Phase::Live);
        let ids = |m: &Monitor| m.sorted().iter().map(|r| r.terminal_id).collect::<Vec<_>>();
        assert_eq!(ids(&m), [1, 2, 3]);
        press(&mut m, KeyCode::Char('s'));
        assert_eq!(m.sort, SortKey::Name);
        assert_eq!(ids(&m), [3, 2, 1]);
        press(&mut m, KeyCode::Char('s'));
        assert_eq!(ids(&m), [2, 3, 1], "link: worst first");
        press(&mut m, KeyCode::Char('s'));
        assert_eq!(ids(&m), [2, 1, 3], "rtt: unknown last");
        press(&mut m, KeyCode::Char('r'));
        assert_eq!(ids(&m), [3, 1, 2]);
        m.apply(frame("update", vec![row(1, "lapsed", None, "offline")]));
        assert_eq!(m.rows[&1].link, "lapsed");
        assert_eq!(m.rows.len(), 3);
        m.apply(frame("snapshot", vec![row(4, "up", Some(1), "ready")]));
        assert_eq!(m.rows.len(), 1);
    }

    #[test]
    fn lost_and_refused_phases_and_quitting() {
        let mut m = Monitor::new("v", "boss");
        m.lost("connection lost");
        assert!(matches!(m.phase, Phase::Lost { .. }));
        m.refused("forbidden");
        m.lost("again");
        assert!(matches!(m.phase, Phase::Refused { .. }), "refusal is final");
        press(&mut m, KeyCode::Char('q'));
        assert!(m.quit);
        let mut m = Monitor::new("v", "boss");
        m.key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
        assert!(m.quit);
    }
}
