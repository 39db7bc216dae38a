//! RFC 6479-style anti-replay window over 64-bit sequence numbers.
//!
//! Use in three steps, as RFC 6479 and WireGuard do: [`ReplayWindow::check`] (cheap, before the
//! MAC), verify the MAC, then [`ReplayWindow::mark`]. A forged datagram therefore never moves
//! the window. The window's right edge only moves forward.

/// Sequence numbers the window remembers behind the highest one seen.
pub const REPLAY_WINDOW_SEQS: u64 = 1024;
const WORD_BITS: u64 = 64;
const WORDS: usize = (REPLAY_WINDOW_SEQS / WORD_BITS) as usize + 1;
const RING_BITS: u64 = WORDS as u64 * WORD_BITS;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayCheck {
    /// Never seen and inside (or ahead of) the window.
    Fresh,
    /// Already seen.
    Replayed,
    /// Too far behind the highest sequence seen to tell; treated as a replay.
    TooOld,
}

#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// Highest sequence number marked; 0 means none (sequence numbers start at 1).
    highest: u64,
    bitmap: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    pub fn new() -> Self {
        ReplayWindow {
            highest: 0,
            bitmap: [0; WORDS],
        }
    }

    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// Classifies `seq` without changing anything. Sequence 0 is never valid.
    pub fn check(&self, seq: u64) -> ReplayCheck {
        if seq == 0 {
            return ReplayCheck::TooOld;
        }
        if seq > self.highest {
            return ReplayCheck::Fresh;
        }
        if self.highest - seq >= REPLAY_WINDOW_SEQS {
            return ReplayCheck::TooOld;
        }
        let (word, bit) = Self::position(seq);
        if self.bitmap[word] & (1 << bit) != 0 {
            ReplayCheck::Replayed
        } else {
            ReplayCheck::Fresh
        }
    }

    /// Marks `seq` as seen. Call only after the MAC verified. Returns whether it was the new
    /// highest (the right edge moved).
    pub fn mark(&mut self, seq: u64) -> bool {
        debug_assert_eq!(self.check(seq), ReplayCheck::Fresh);
        let advanced = seq > self.highest;
        if advanced {
            // Clear the words the edge skips over (at most the whole ring).
            let current_word = self.highest / WORD_BITS;
            let new_word = seq / WORD_BITS;
            let steps = (new_word - current_word).min(WORDS as u64);
            for i in 1..=steps {
                let w = ((current_word + i) % WORDS as u64) as usize;
                self.bitmap[w] = 0;
            }
            self.highest = seq;
        }
        let (word, bit) = Self::position(seq);
        self.bitmap[word] |= 1 << bit;
        advanced
    }

    fn position(seq: u64) -> (usize, u64) {
        let index = seq % RING_BITS;
        ((index / WORD_BITS) as usize, index % WORD_BITS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, seq: u64) -> bool {
        if w.check(seq) == ReplayCheck::Fresh {
            w.mark(seq);
            true
        } else {
            false
        }
    }

    #[test]
    fn in_order_duplicate_and_zero() {
        let mut w = ReplayWindow::new();
        assert!(!accept(&mut w, 0));
        for s in 1..=3000 {
            assert!(accept(&mut w, s), "{s}");
            assert_eq!(w.check(s), ReplayCheck::Replayed);
        }
        assert_eq!(w.highest(), 3000);
    }

    #[test]
    fn reordered_inside_window_accepted_once() {
        let mut w = ReplayWindow::new();
        assert!(accept(&mut w, 10));
        assert!(accept(&mut w, 7));
        assert!(!accept(&mut w, 7));
        assert!(accept(&mut w, 9));
        assert!(accept(&mut w, 8));
        assert_eq!(w.highest(), 10);
    }

    #[test]
    fn window_edge_is_exact() {
        let mut w = ReplayWindow::new();
        assert!(accept(&mut w, 5000));
        assert_eq!(w.check(5000 - REPLAY_WINDOW_SEQS + 1), ReplayCheck::Fresh);
        assert_eq!(w.check(5000 - REPLAY_WINDOW_SEQS), ReplayCheck::TooOld);
    }

    #[test]
    fn big_jump_clears_stale_bits() {
        let mut w = ReplayWindow::new();
        for s in 1..=100 {
            assert!(accept(&mut w, s));
        }
        // Jump by exactly the ring size: the old bits for the same positions must not linger.
        let jump = 100 + RING_BITS;
        assert!(accept(&mut w, jump));
        for s in (jump - REPLAY_WINDOW_SEQS + 1)..jump {
            assert_eq!(w.check(s), ReplayCheck::Fresh, "{s}");
        }
    }

    #[test]
    fn matches_a_reference_set() {
        use std::collections::BTreeSet;
        let mut w = ReplayWindow::new();
        let mut seen = BTreeSet::new();
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..20_000 {
            // xorshift: deterministic pseudo-random sequence numbers around a moving edge
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let base = w.highest();
            let seq = (base + (x % 64)).saturating_sub((x >> 8) % 1500).max(1);
            let expected = if seq + REPLAY_WINDOW_SEQS <= base {
                ReplayCheck::TooOld
            } else if seen.contains(&seq) {
                ReplayCheck::Replayed
            } else {
                ReplayCheck::Fresh
            };
            assert_eq!(w.check(seq), expected, "seq {seq} highest {base}");
            if expected == ReplayCheck::Fresh {
                w.mark(seq);
                seen.insert(seq);
            }
        }
    }
}
