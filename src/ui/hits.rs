//! Where the last frame drew what a mouse click can act on: buttons (the key hints, a screen's
//! confirm line), list rows and form fields. Drawing records the areas ([`super::draw_with_hits`]);
//! the runner hands them to the app ([`super::App::set_hits`]), which turns a left click into
//! the same handler the key would run ([`super::App::handle`] with `Event::Mouse`).

use super::keys::Action;
use ratatui::layout::Rect;

/// Most clickable areas one frame records; more are not clickable (a screen has far fewer).
pub const HITS_MAX: usize = 256;

/// What a click lands on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A button: does what its key does (from the screen's key table).
    Key(Action),
    /// Row `n` of the screen's list (home menu, history, settings, basket, refunds).
    Row(usize),
    /// Field `n` of the screen's form (an index into its fields).
    Field(usize),
}

/// The clickable areas of one frame, in drawing order (a later one, drawn over, wins).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hits {
    areas: Vec<(Rect, Target)>,
}

impl Hits {
    pub fn add(&mut self, rect: Rect, target: Target) {
        if self.areas.len() < HITS_MAX && rect.width > 0 && rect.height > 0 {
            self.areas.push((rect, target));
        }
    }

    /// Forgets everything drawn so far (an overlay covers it).
    pub fn clear(&mut self) {
        self.areas.clear();
    }

    /// What is under column `x`, row `y` (the last drawn wins).
    pub fn at(&self, x: u16, y: u16) -> Option<Target> {
        self.areas
            .iter()
            .rev()
            .find(|(r, _)| x >= r.x && x < r.x + r.width && y >= r.y && y < r.y + r.height)
            .map(|(_, t)| *t)
    }

    pub fn is_empty(&self) -> bool {
        self.areas.is_empty()
    }

    /// Where `target` was drawn, for tests and the pty driver (the first such area).
    pub fn find(&self, target: Target) -> Option<Rect> {
        self.areas
            .iter()
            .find(|(_, t)| *t == target)
            .map(|(r, _)| *r)
    }
}
