//! Shell: the printer's serial port — opened exclusively with the profile's line settings,
//! written with a progress deadline, read for replies; process IDs heard between jobs kept for
//! the next resync.

use super::*;

/// An open printer port.
pub struct PrinterPort {
    pub(super) port: TTYPort,
    pub(super) profile: Profile,
    pub(super) path: String,
    /// Process IDs that arrived outside a job's own reading: held in the port's input while no
    /// counter had it open (a counter killed mid-job), or late after a job ended. Kept for the
    /// next [`resync`], at most [`PROCESS_IDS_KEPT_MAX`] (the newest win).
    pub(super) heard_ids: Vec<ProcessId>,
}

impl std::fmt::Debug for PrinterPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrinterPort({}, {})", self.path, self.profile.id)
    }
}

impl PrinterPort {
    /// Open `path` exclusively with the profile's line settings.
    pub fn open(
        path: &Path,
        profile: &Profile,
        baud_override: Option<u32>,
    ) -> Result<Self, OpenError> {
        let p = path.display().to_string();
        let flow = match profile.serial.flow_control {
            FlowControl::XonXoff => serialport::FlowControl::Software,
            FlowControl::RtsCts => serialport::FlowControl::Hardware,
            // DTR/DSR is done by hand below.
            _ => serialport::FlowControl::None,
        };
        let builder = serialport::new(&p, baud_override.unwrap_or(profile.serial.baud))
            .data_bits(if profile.serial.data_bits == 7 {
                serialport::DataBits::Seven
            } else {
                serialport::DataBits::Eight
            })
            .parity(match profile.serial.parity {
                Parity::Odd => serialport::Parity::Odd,
                Parity::Even => serialport::Parity::Even,
                _ => serialport::Parity::None,
            })
            .stop_bits(if profile.serial.stop_bits == 2 {
                serialport::StopBits::Two
            } else {
                serialport::StopBits::One
            })
            .flow_control(flow)
            .timeout(Duration::from_millis(50));
        let mut port = TTYPort::open(&builder).map_err(|e| {
            let busy = matches!(e.kind(), serialport::ErrorKind::NoDevice)
                || e.description.contains("EWOULDBLOCK")
                || e.description.contains("EBUSY")
                || e.description.contains("EAGAIN")
                || e.description.to_lowercase().contains("busy")
                || e.description.to_lowercase().contains("would block");
            if busy {
                OpenError::Busy { path: p.clone() }
            } else {
                OpenError::Open {
                    path: p.clone(),
                    message: e.to_string(),
                }
            }
        })?;
        if profile.serial.flow_control == FlowControl::DtrDsr {
            port.write_data_terminal_ready(true)
                .and_then(|_| port.read_data_set_ready())
                .map_err(|e| OpenError::NoModemLines {
                    path: p.clone(),
                    profile: profile.id.clone(),
                    message: e.to_string(),
                })?;
        }
        let mut port = PrinterPort {
            port,
            profile: profile.clone(),
            path: p,
            heard_ids: Vec::new(),
        };
        // What waited in the input is not thrown away: a process ID among it may be the only
        // word that a dead counter's indicium printed (docs/PRINTING.md §Resync).
        let _ = port.keep_stray_replies();
        Ok(port)
    }

    pub fn profile(&self) -> &Profile {
        &self.profile
    }

    pub fn raw_fd(&self) -> i32 {
        self.port.as_raw_fd()
    }

    /// Asks an idle printer how it is (`DLE EOT 1`, then `2` and `4`). `Ok(true)`: ready;
    /// `Ok(false)`: the profile has no real-time status, so nothing is known; `Err`: the fault.
    /// Call only between jobs: replies are read straight off the port.
    pub fn status_now(&mut self, reply_timeout: Duration) -> Result<bool, PrinterFault> {
        if self.profile.language == Language::Zpl {
            let (_, fault) = self.write_counted(zpl::HOST_STATUS, reply_timeout);
            if let Some(f) = fault {
                return Err(f);
            }
            return match self.read_host_status(Instant::now() + reply_timeout)? {
                Some(h) => h.fault().map_or(Ok(true), Err),
                None => Err(PrinterFault::StatusTimeout),
            };
        }
        if !self.profile.status.dle_eot {
            return Ok(false);
        }
        self.keep_stray_replies()?;
        // Ask all three, then report the most specific cause: cover/paper before "offline".
        let mut faults = Vec::with_capacity(3);
        for n in [2u8, 4, 1] {
            let (_, fault) = self.write_counted(&status_query(n), reply_timeout);
            if let Some(f) = fault {
                return Err(f);
            }
            let Some(reply) = self.read_status_reply(Instant::now() + reply_timeout)? else {
                return Err(PrinterFault::StatusTimeout);
            };
            match decode_status(n, reply) {
                Some(None) => {}
                Some(Some(f)) => faults.push(f),
                None => return Err(PrinterFault::StatusTimeout),
            }
        }
        match faults.first() {
            Some(f) => Err(*f),
            None => Ok(true),
        }
    }

    /// Read what waits in the input (bounded: [`STRAY_READ_BYTES_MAX`]) and keep the process
    /// IDs among it; status bytes and anything else there are stale and dropped.
    pub(super) fn keep_stray_replies(&mut self) -> Result<(), PrinterFault> {
        let mut reader = ReplyReader::new();
        let mut buf = [0u8; READ_BYTES_MAX];
        let mut read = 0usize;
        while read < STRAY_READ_BYTES_MAX {
            let n = self.read_available(&mut buf)?;
            if n == 0 {
                break;
            }
            read += n;
            let mut replies = Vec::new();
            reader.push_all(&buf[..n], &mut replies);
            for r in replies {
                if let Reply::ProcessId(id) = r {
                    self.hear_id(id);
                }
            }
        }
        Ok(())
    }

    pub(super) fn hear_id(&mut self, id: ProcessId) {
        if self.heard_ids.len() >= PROCESS_IDS_KEPT_MAX {
            self.heard_ids.remove(0);
        }
        self.heard_ids.push(id);
    }

    /// The next `DLE EOT` reply byte, keeping process IDs that arrive before it; `None` at
    /// the deadline.
    pub(super) fn read_status_reply(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<u8>, PrinterFault> {
        let mut reader = ReplyReader::new();
        loop {
            let got = self.read_until(1, deadline)?;
            let Some(&b) = got.first() else {
                return Ok(None);
            };
            let mut replies = Vec::new();
            reader.push(b, &mut replies);
            for r in replies {
                match r {
                    Reply::Status(s) => return Ok(Some(s)),
                    Reply::ProcessId(id) => self.hear_id(id),
                    _ => {}
                }
            }
        }
    }

    /// ZPL: the next whole `~HS` answer; `None` at the deadline.
    pub(super) fn read_host_status(
        &mut self,
        deadline: Instant,
    ) -> Result<Option<HostStatus>, PrinterFault> {
        let mut reader = HostStatusReader::new();
        let mut got = Vec::new();
        loop {
            let bytes = self.read_until(1, deadline)?;
            if bytes.is_empty() {
                return Ok(None);
            }
            reader.push_all(&bytes, &mut got);
            if let Some(h) = got.pop() {
                return Ok(Some(h));
            }
        }
    }

    /// Process IDs heard outside a job since the last call (oldest first).
    pub fn take_heard_ids(&mut self) -> Vec<ProcessId> {
        std::mem::take(&mut self.heard_ids)
    }

    /// Write everything or fail; returns bytes written before a failure too.
    pub(crate) fn write_counted(
        &mut self,
        bytes: &[u8],
        timeout: Duration,
    ) -> (usize, Option<PrinterFault>) {
        let mut done = 0;
        let mut last_progress = Instant::now();
        while done < bytes.len() {
            match self.port.write(&bytes[done..]) {
                Ok(0) => return (done, Some(PrinterFault::PortVanished)),
                Ok(n) => {
                    done += n;
                    last_progress = Instant::now();
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted =>
                {
                    if last_progress.elapsed() >= timeout {
                        return (done, Some(PrinterFault::WriteTimeout));
                    }
                }
                Err(_) => return (done, Some(PrinterFault::PortVanished)),
            }
        }
        (done, None)
    }

    /// Read until `want` bytes arrived or the deadline passed.
    pub(crate) fn read_until(
        &mut self,
        want: usize,
        deadline: Instant,
    ) -> Result<Vec<u8>, PrinterFault> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while out.len() < want && Instant::now() < deadline {
            match self.port.read(&mut buf[..(want - out.len()).min(64)]) {
                Ok(0) => return Err(PrinterFault::PortVanished),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e)
                    if e.kind() == std::io::ErrorKind::TimedOut
                        || e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return Err(PrinterFault::PortVanished),
            }
        }
        Ok(out)
    }

    /// Read what has already arrived, without waiting (at most `buf.len()` bytes).
    pub(crate) fn read_available(&mut self, buf: &mut [u8]) -> Result<usize, PrinterFault> {
        let ready = match self.port.bytes_to_read() {
            Ok(n) => n as usize,
            Err(_) => return Err(PrinterFault::PortVanished),
        };
        if ready == 0 {
            return Ok(0);
        }
        let want = ready.min(buf.len());
        match self.port.read(&mut buf[..want]) {
            Ok(0) => Err(PrinterFault::PortVanished),
            Ok(n) => Ok(n),
            Err(e)
                if e.kind() == std::io::ErrorKind::TimedOut
                    || e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted =>
            {
                Ok(0)
            }
            Err(_) => Err(PrinterFault::PortVanished),
        }
    }

    /// Read until `pattern` appears (other bytes are stray status replies) or the deadline.
    pub(crate) fn read_pattern(
        &mut self,
        pattern: &[u8],
        deadline: Instant,
    ) -> Result<bool, PrinterFault> {
        let mut seen: Vec<u8> = Vec::new();
        loop {
            let got = self.read_until(1, deadline)?;
            if got.is_empty() {
                return Ok(false);
            }
            seen.extend_from_slice(&got);
            if seen.ends_with(pattern) {
                return Ok(true);
            }
            if seen.len() > 64 {
                seen.drain(..seen.len() - pattern.len());
            }
        }
    }
}
