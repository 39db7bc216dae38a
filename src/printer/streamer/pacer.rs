//! **Core**: the pacer — how many bytes are in flight to the printer and when the next chunk
//! may go. Time is passed in.

use super::*;

/// Models how many bytes are in flight to the printer and when the next chunk may go.
/// Pure: time is passed in.
#[derive(Debug, Clone)]
pub struct Pacer {
    drain_bytes_per_s: f64,
    lead_bytes_max: usize,
    backlog: f64,
    at: Instant,
}

impl Pacer {
    pub fn new(drain_bytes_per_s: u32, lead_bytes_max: usize, now: Instant) -> Self {
        Pacer {
            drain_bytes_per_s: f64::from(drain_bytes_per_s.max(1)),
            lead_bytes_max: lead_bytes_max.max(1),
            backlog: 0.0,
            at: now,
        }
    }

    fn drain(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.backlog = (self.backlog - dt * self.drain_bytes_per_s).max(0.0);
        self.at = self.at.max(now);
    }

    /// Bytes written but not yet consumed, estimated.
    pub fn backlog_bytes(&mut self, now: Instant) -> usize {
        self.drain(now);
        self.backlog.ceil() as usize
    }

    /// When `len` more bytes can be written without exceeding the lead.
    pub fn ready_at(&mut self, now: Instant, len: usize) -> Instant {
        self.drain(now);
        let excess = self.backlog + len as f64 - self.lead_bytes_max as f64;
        if excess <= 0.0 {
            now
        } else {
            now + Duration::from_secs_f64(excess / self.drain_bytes_per_s)
        }
    }

    /// Time for everything in flight to be consumed.
    pub fn drain_time(&mut self, now: Instant) -> Duration {
        self.drain(now);
        Duration::from_secs_f64(self.backlog / self.drain_bytes_per_s)
    }

    pub fn on_sent(&mut self, now: Instant, len: usize) {
        self.drain(now);
        self.backlog += len as f64;
    }
}
