//! Replies owed and received during a job: the real-time replies the sent bytes ask for
//! (`Owed`), and everything the printer said sorted by the one reply reader (`Inbox`).

use super::*;

/// Status replies kept until a query takes them; beyond this the oldest are dropped.
pub const STATUS_REPLIES_KEPT_MAX: usize = 64;

/// Process IDs remembered per job or resync (ours and strays), in arrival order.
pub const PROCESS_IDS_KEPT_MAX: usize = 64;

/// Most bytes read from the port in one pump.
pub(super) const READ_BYTES_MAX: usize = 256;

/// Most bytes read when looking through what waited in the port's input between jobs.
pub(super) const STRAY_READ_BYTES_MAX: usize = 4096;

/// How long a wait sleeps when nothing has arrived; also the link-check period while waiting.
pub(super) const IDLE_POLL_MS: u64 = 2;

/// Replies the printer owes for what was sent: job data can contain `DLE EOT n` or the clear
/// pattern by accident, and the printer answers those too (they are real-time).
#[derive(Debug, Default)]
pub(super) struct Owed {
    pub(super) matcher: RealtimeMatcher,
    pub(super) status: usize,
    pub(super) clears: usize,
}

impl Owed {
    pub(super) fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            match self.matcher.push(b) {
                Some(Realtime::Status(_)) => self.status += 1,
                Some(Realtime::ClearBuffers) => self.clears += 1,
                None => {}
            }
        }
    }
}

/// Everything the printer said, sorted by the one [`ReplyReader`].
#[derive(Debug, Default)]
pub(super) struct Inbox {
    pub(super) reader: ReplyReader,
    pub(super) statuses: std::collections::VecDeque<u8>,
    pub(super) clears: usize,
    pub(super) ids: Vec<ProcessId>,
    pub(super) asb_last: Option<[u8; 4]>,
    /// The first fault an automatic status back block reported (paper end, cover open), noticed
    /// without a query; the run stops at its next pump.
    pub(super) asb_fault: Option<PrinterFault>,
    pub(super) garbled_bytes: u64,
    /// ZPL: `~HS` answers (oldest first, at most [`STATUS_REPLIES_KEPT_MAX`]).
    pub(super) host_reader: HostStatusReader,
    pub(super) host_statuses: std::collections::VecDeque<HostStatus>,
}

impl Inbox {
    /// Read what has arrived; returns the process IDs among it, in order.
    pub(super) fn pump(&mut self, port: &mut PrinterPort) -> Result<Vec<ProcessId>, PrinterFault> {
        let mut buf = [0u8; READ_BYTES_MAX];
        let n = port.read_available(&mut buf)?;
        if port.profile.language == Language::Zpl {
            // A ZPL printer answers only `~HS`; nothing it sends is a process ID.
            let mut got = Vec::new();
            self.host_reader.push_all(&buf[..n], &mut got);
            for h in got {
                if self.host_statuses.len() >= STATUS_REPLIES_KEPT_MAX {
                    self.host_statuses.pop_front();
                }
                self.host_statuses.push_back(h);
            }
            return Ok(Vec::new());
        }
        let mut replies = Vec::new();
        self.reader.push_all(&buf[..n], &mut replies);
        let mut ids = Vec::new();
        for r in replies {
            match r {
                Reply::Status(b) => {
                    if self.statuses.len() >= STATUS_REPLIES_KEPT_MAX {
                        self.statuses.pop_front();
                    }
                    self.statuses.push_back(b);
                }
                Reply::ClearConfirmed => self.clears += 1,
                Reply::ProcessId(id) => {
                    if self.ids.len() < PROCESS_IDS_KEPT_MAX {
                        self.ids.push(id);
                    }
                    ids.push(id);
                }
                Reply::Asb(a) => {
                    self.asb_last = Some(a);
                    if self.asb_fault.is_none() {
                        self.asb_fault = decode_asb(a);
                    }
                }
                Reply::Garbled(_) => self.garbled_bytes += 1,
                #[allow(unreachable_patterns)]
                _ => self.garbled_bytes += 1,
            }
        }
        Ok(ids)
    }
}
