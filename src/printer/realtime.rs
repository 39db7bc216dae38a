//! Real-time ESC/POS commands (`DLE EOT n`, `DLE DC4 fn 8`), which a printer acts on the moment
//! it receives them, even inside another command's data. The emulator answers them; the streamer
//! uses the same matcher over what it sent to know how many replies to expect.

use crate::printer::compiler::CLEAR_BUFFERS;

const DLE: u8 = 0x10;

/// Spots real-time commands anywhere in the byte stream.
#[derive(Debug, Default)]
pub struct RealtimeMatcher {
    /// The last few bytes seen (enough for the longest real-time command).
    window: Vec<u8>,
}

/// A real-time command seen at receive time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Realtime {
    Status(u8),
    ClearBuffers,
}

impl RealtimeMatcher {
    pub fn push(&mut self, b: u8) -> Option<Realtime> {
        if self.window.len() == CLEAR_BUFFERS.len() {
            self.window.remove(0);
        }
        self.window.push(b);
        let w = &self.window;
        if w.ends_with(&CLEAR_BUFFERS) {
            self.window.clear();
            return Some(Realtime::ClearBuffers);
        }
        if w.len() >= 3 && w[w.len() - 3] == DLE && w[w.len() - 2] == 0x04 && (1..=4).contains(&b) {
            self.window.clear();
            return Some(Realtime::Status(b));
        }
        None
    }
}
