//! The LinkGuard: a sans-I/O state machine that says whether the link to the peer is alive.
//!
//! Fed only with *fresh, verified* keepalives (see [`super::keepalive`]) and the current time;
//! it never reads a clock itself. The tokio shell publishes its state through a
//! `tokio::sync::watch` so the printer streamer and the UI can subscribe.
//!
//! Rules (docs/PROTOCOL.md §Liveness):
//! - `Down` until the session is logged in and keepalives begin.
//! - `Down`/`Lapsed` → `Up` after `up_after_keepalives` consecutive fresh keepalives, each
//!   arriving within the detection window of the previous one.
//! - `Up` → `Lapsed` when no fresh keepalive arrived for `detect_multiplier × keepalive_interval_ms`.
//! - any → `Closed` when the connection ends; a closed guard never goes Up again (a new
//!   connection needs a new login and a new guard).

use std::time::{Duration, Instant};

/// What subscribers see. Printing is allowed only in [`LinkState::Up`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LinkState {
    /// No session yet: connecting, enrolling or logging in.
    Down,
    /// Fresh authenticated keepalives arrive within the detection window.
    Up,
    /// No fresh authenticated keepalive for the detection window.
    Lapsed,
    /// The connection is gone. Terminal for this guard.
    Closed,
}

impl LinkState {
    /// Whether value may be printed in this state.
    pub fn allows_printing(self) -> bool {
        self == LinkState::Up
    }

    pub const ALL: [LinkState; 4] = [
        LinkState::Down,
        LinkState::Up,
        LinkState::Lapsed,
        LinkState::Closed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Down => "down",
            LinkState::Up => "up",
            LinkState::Lapsed => "lapsed",
            LinkState::Closed => "closed",
        }
    }

    /// The state [`Self::as_str`] names.
    pub fn parse(text: &str) -> Option<LinkState> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl std::fmt::Display for LinkState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Timers of the liveness check. Units are in the names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardConfig {
    /// How often each side sends a keepalive datagram.
    pub keepalive_interval_ms: u32,
    /// Missed intervals before the link counts as lapsed (BFD's detect multiplier).
    pub detect_multiplier: u32,
    /// Consecutive fresh keepalives needed to go (back) Up.
    pub up_after_keepalives: u32,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            keepalive_interval_ms: 50,
            detect_multiplier: 3,
            up_after_keepalives: 2,
        }
    }
}

/// Bounds that keep a configuration sane.
pub const KEEPALIVE_INTERVAL_MS_MIN: u32 = 10;
pub const KEEPALIVE_INTERVAL_MS_MAX: u32 = 10_000;
pub const DETECT_MULTIPLIER_MAX: u32 = 20;
pub const UP_AFTER_KEEPALIVES_MAX: u32 = 20;

impl GuardConfig {
    /// Rejects values outside the documented bounds, naming the field.
    pub fn validate(&self) -> Result<(), String> {
        if !(KEEPALIVE_INTERVAL_MS_MIN..=KEEPALIVE_INTERVAL_MS_MAX)
            .contains(&self.keepalive_interval_ms)
        {
            return Err(format!(
                "keepalive_interval_ms must be {KEEPALIVE_INTERVAL_MS_MIN}..={KEEPALIVE_INTERVAL_MS_MAX}, got {}",
                self.keepalive_interval_ms
            ));
        }
        if !(2..=DETECT_MULTIPLIER_MAX).contains(&self.detect_multiplier) {
            return Err(format!(
                "detect_multiplier must be 2..={DETECT_MULTIPLIER_MAX}, got {}",
                self.detect_multiplier
            ));
        }
        if !(1..=UP_AFTER_KEEPALIVES_MAX).contains(&self.up_after_keepalives) {
            return Err(format!(
                "up_after_keepalives must be 1..={UP_AFTER_KEEPALIVES_MAX}, got {}",
                self.up_after_keepalives
            ));
        }
        Ok(())
    }

    pub fn keepalive_interval(&self) -> Duration {
        Duration::from_millis(u64::from(self.keepalive_interval_ms))
    }

    /// `detect_multiplier × keepalive_interval_ms`.
    pub fn detect_window(&self) -> Duration {
        Duration::from_millis(
            u64::from(self.keepalive_interval_ms) * u64::from(self.detect_multiplier),
        )
    }
}

/// The state machine. Cheap to copy; no I/O, no clock.
#[derive(Debug, Clone)]
pub struct LinkGuard {
    config: GuardConfig,
    state: LinkState,
    last_fresh: Option<Instant>,
    fresh_streak: u32,
    lapses: u64,
}

impl LinkGuard {
    pub fn new(config: GuardConfig) -> Self {
        LinkGuard {
            config,
            state: LinkState::Down,
            last_fresh: None,
            fresh_streak: 0,
            lapses: 0,
        }
    }

    pub fn state(&self) -> LinkState {
        self.state
    }

    pub fn config(&self) -> GuardConfig {
        self.config
    }

    /// How many times the guard went from Up to Lapsed.
    pub fn lapses(&self) -> u64 {
        self.lapses
    }

    /// When the last fresh keepalive arrived.
    pub fn last_fresh(&self) -> Option<Instant> {
        self.last_fresh
    }

    /// A fresh, verified keepalive arrived at `now`. Returns the new state if it changed.
    ///
    /// Every transition is reported: a keepalive that arrives after the detection window ran
    /// out reports `Lapsed` (and counts as the first of a new streak), never a silent
    /// Lapsed → Up, whatever `up_after_keepalives` is.
    pub fn on_fresh_keepalive(&mut self, now: Instant) -> Option<LinkState> {
        if self.state == LinkState::Closed {
            return None;
        }
        // Apply any lapse that is already due, so a late keepalive cannot hide it.
        let lapsed = self.poll(now);
        let within_window = self
            .last_fresh
            .is_some_and(|t| now.saturating_duration_since(t) < self.config.detect_window());
        self.fresh_streak = if within_window {
            self.fresh_streak.saturating_add(1)
        } else {
            1
        };
        self.last_fresh = Some(now);
        if lapsed.is_some() {
            // This keepalive revealed a lapse: report it. It starts the next streak but cannot
            // raise the link in the same step, or subscribers would never see the lapse.
            return lapsed;
        }
        if self.state != LinkState::Up && self.fresh_streak >= self.config.up_after_keepalives {
            self.state = LinkState::Up;
            return Some(LinkState::Up);
        }
        lapsed
    }

    /// Advances time. Returns `Some(Lapsed)` when the detection window just ran out.
    pub fn poll(&mut self, now: Instant) -> Option<LinkState> {
        let deadline = self.deadline()?;
        if now < deadline {
            return None;
        }
        self.fresh_streak = 0;
        if self.state == LinkState::Up {
            self.state = LinkState::Lapsed;
            self.lapses += 1;
            return Some(LinkState::Lapsed);
        }
        None
    }

    /// The next instant at which [`LinkGuard::poll`] may change the state.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            LinkState::Up => self.last_fresh.map(|t| t + self.config.detect_window()),
            _ => None,
        }
    }

    /// The connection ended. Returns `Some(Closed)` the first time.
    pub fn on_closed(&mut self) -> Option<LinkState> {
        if self.state == LinkState::Closed {
            return None;
        }
        self.state = LinkState::Closed;
        Some(LinkState::Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn up_guard(t0: Instant) -> LinkGuard {
        let mut g = LinkGuard::new(GuardConfig::default());
        assert_eq!(g.on_fresh_keepalive(t0), None);
        assert_eq!(g.on_fresh_keepalive(t0 + ms(50)), Some(LinkState::Up));
        g
    }

    #[test]
    fn starts_down_and_needs_a_streak_to_go_up() {
        let t0 = Instant::now();
        let mut g = LinkGuard::new(GuardConfig::default());
        assert_eq!(g.state(), LinkState::Down);
        assert_eq!(g.deadline(), None);
        assert_eq!(g.on_fresh_keepalive(t0), None);
        assert_eq!(g.state(), LinkState::Down);
        assert_eq!(g.on_fresh_keepalive(t0 + ms(50)), Some(LinkState::Up));
        assert!(g.state().allows_printing());
    }

    #[test]
    fn lapses_exactly_at_the_detection_window() {
        let t0 = Instant::now();
        let mut g = up_guard(t0);
        let last = t0 + ms(50);
        assert_eq!(g.deadline(), Some(last + ms(150)));
        assert_eq!(g.poll(last + ms(149)), None);
        assert_eq!(g.poll(last + ms(150)), Some(LinkState::Lapsed));
        assert_eq!(g.poll(last + ms(500)), None, "lapse is reported once");
        assert_eq!(g.lapses(), 1);
        assert!(!g.state().allows_printing());
    }

    #[test]
    fn keepalives_inside_the_window_keep_it_up() {
        let t0 = Instant::now();
        let mut g = up_guard(t0);
        let mut t = t0 + ms(50);
        for _ in 0..100 {
            t += ms(140);
            assert_eq!(g.poll(t), None);
            assert_eq!(g.on_fresh_keepalive(t), None);
        }
        assert_eq!(g.state(), LinkState::Up);
    }

    #[test]
    fn a_late_keepalive_does_not_hide_a_due_lapse() {
        let t0 = Instant::now();
        let mut g = up_guard(t0);
        // No poll in between: the keepalive itself arrives after the window.
        assert_eq!(
            g.on_fresh_keepalive(t0 + ms(50) + ms(400)),
            Some(LinkState::Lapsed)
        );
        assert_eq!(g.state(), LinkState::Lapsed);
    }

    #[test]
    fn a_late_keepalive_reports_the_lapse_even_with_a_streak_of_one() {
        let t0 = Instant::now();
        let cfg = GuardConfig {
            up_after_keepalives: 1,
            ..GuardConfig::default()
        };
        assert!(cfg.validate().is_ok());
        let mut g = LinkGuard::new(cfg);
        assert_eq!(g.on_fresh_keepalive(t0), Some(LinkState::Up));
        // The next keepalive comes after the 150 ms window with no poll in between.
        let late = t0 + ms(400);
        assert_eq!(g.on_fresh_keepalive(late), Some(LinkState::Lapsed));
        assert_eq!(g.state(), LinkState::Lapsed);
        assert_eq!(g.lapses(), 1);
        // It started a streak: the next timely keepalive raises the link, and says so.
        assert_eq!(g.on_fresh_keepalive(late + ms(50)), Some(LinkState::Up));
        assert_eq!(g.lapses(), 1);
    }

    #[test]
    fn recovers_only_after_a_fresh_streak() {
        let t0 = Instant::now();
        let mut g = up_guard(t0);
        let t = t0 + ms(1000);
        assert_eq!(g.poll(t), Some(LinkState::Lapsed));
        assert_eq!(g.on_fresh_keepalive(t + ms(10)), None);
        assert_eq!(g.state(), LinkState::Lapsed);
        assert_eq!(g.on_fresh_keepalive(t + ms(60)), Some(LinkState::Up));
    }

    #[test]
    fn a_streak_broken_by_a_gap_starts_over() {
        let t0 = Instant::now();
        let cfg = GuardConfig {
            up_after_keepalives: 3,
            ..GuardConfig::default()
        };
        let mut g = LinkGuard::new(cfg);
        assert_eq!(g.on_fresh_keepalive(t0), None);
        assert_eq!(g.on_fresh_keepalive(t0 + ms(50)), None);
        // gap longer than the window: streak restarts at 1
        assert_eq!(g.on_fresh_keepalive(t0 + ms(400)), None);
        assert_eq!(g.on_fresh_keepalive(t0 + ms(450)), None);
        assert_eq!(g.on_fresh_keepalive(t0 + ms(500)), Some(LinkState::Up));
    }

    #[test]
    fn closed_is_terminal() {
        let t0 = Instant::now();
        let mut g = up_guard(t0);
        assert_eq!(g.on_closed(), Some(LinkState::Closed));
        assert_eq!(g.on_closed(), None);
        assert_eq!(g.on_fresh_keepalive(t0 + ms(60)), None);
        assert_eq!(g.state(), LinkState::Closed);
        assert_eq!(g.deadline(), None);
    }

    #[test]
    fn config_bounds_are_named() {
        let bad = GuardConfig {
            keepalive_interval_ms: 1,
            ..GuardConfig::default()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .contains("keepalive_interval_ms")
        );
        let bad = GuardConfig {
            detect_multiplier: 1,
            ..GuardConfig::default()
        };
        assert!(bad.validate().unwrap_err().contains("detect_multiplier"));
        assert!(GuardConfig::default().validate().is_ok());
        assert_eq!(GuardConfig::default().detect_window(), ms(150));
    }
}
