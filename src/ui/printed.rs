//! **Core**: the jobs the counter ever sent Print for, so none is printed twice — bounded.
//!
//! Job ids only grow ([`crate::ui::app::App`] numbers them), and a job is printed right after its
//! review, so a job older than the last [`PRINTED_JOBS_KEPT_MAX`] printed ones is stale: it is
//! remembered by a watermark instead (every id at or below it counts as printed, so a stale job
//! can never print).

use std::collections::BTreeSet;

use super::event::JobId;

/// Printed job ids kept one by one; older ones fold into the watermark.
pub const PRINTED_JOBS_KEPT_MAX: usize = 256;

#[derive(Debug, Clone, Default)]
pub struct PrintedJobs {
    recent: BTreeSet<JobId>,
    /// Every id at or below this counts as printed.
    through: Option<JobId>,
}

impl PrintedJobs {
    /// Records that Print was sent for `job`; `false` (and nothing recorded) if it already was.
    pub fn insert(&mut self, job: JobId) -> bool {
        if self.contains(job) {
            return false;
        }
        self.recent.insert(job);
        if self.recent.len() > PRINTED_JOBS_KEPT_MAX
            && let Some(oldest) = self.recent.pop_first()
        {
            self.through = Some(self.through.map_or(oldest, |t| t.max(oldest)));
        }
        true
    }

    pub fn contains(&self, job: JobId) -> bool {
        self.through.is_some_and(|t| job <= t) || self.recent.contains(&job)
    }

    /// Ids held one by one (at most [`PRINTED_JOBS_KEPT_MAX`]).
    pub fn kept(&self) -> usize {
        self.recent.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_prints_once_and_memory_stays_bounded() {
        let mut p = PrintedJobs::default();
        assert!(p.insert(JobId(1)));
        assert!(!p.insert(JobId(1)));
        for i in 2..10_000 {
            assert!(p.insert(JobId(i)));
        }
        assert_eq!(p.kept(), PRINTED_JOBS_KEPT_MAX);
        assert!(p.contains(JobId(1)), "folded into the watermark");
        assert!(p.contains(JobId(9_999)));
        assert!(!p.contains(JobId(10_000)));
        assert!(!p.insert(JobId(5)), "a stale job never prints");
    }
}
