//! The vendor's password-hashing pool: a fixed set of threads
//! (`password_hashes_in_flight_max`) that run argon2 verifications, fed by a queue of at most
//! `password_hash_queue_max` waiting checks. A check that finds the pool and the queue full is
//! refused at once ([`PoolBusy`]), so the vendor's argon2 memory is bounded by the thread
//! count × the argon2 memory cost ([`ARGON2_MEMORY_BYTES`]) whatever the login rate.

use super::directory;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

/// Memory one argon2 verification holds (the crate's default m = 19 MiB, see
/// [`directory::hash_password`]).
pub const ARGON2_MEMORY_BYTES: usize = 19 * 1024 * 1024;
/// Upper bounds `vendor.toml` may set.
pub const PASSWORD_HASHES_IN_FLIGHT_MAX_LIMIT: usize = 64;
pub const PASSWORD_HASH_QUEUE_MAX_LIMIT: usize = 4096;

/// What the pool did so far (for tests and operators).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PasswordPoolStats {
    /// Verifications running now.
    pub in_flight: usize,
    /// The most verifications that ever ran at once.
    pub in_flight_peak: usize,
    /// Verifications run since the start.
    pub verified_total: u64,
    /// Checks refused because the pool and its queue were full.
    pub refused_total: u64,
}

/// The pool and its queue are full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the vendor is checking {in_flight_max} passwords with {queue_max} waiting")]
pub struct PoolBusy {
    pub in_flight_max: usize,
    pub queue_max: usize,
}

type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct Counters {
    in_flight: AtomicUsize,
    in_flight_peak: AtomicUsize,
    verified_total: AtomicU64,
    refused_total: AtomicU64,
}

/// Handle on the pool; cheap to clone. The threads end when the last handle is dropped.
#[derive(Clone)]
pub struct PasswordPool {
    jobs: mpsc::Sender<Job>,
    /// One permit per running or queued check: `in_flight_max + queue_max`.
    admission: Arc<Semaphore>,
    counters: Arc<Counters>,
    in_flight_max: usize,
    queue_max: usize,
}

/// A place in the pool (running or queued), held from admission until the check ends.
pub struct PoolSlot {
    pool: PasswordPool,
    permit: OwnedSemaphorePermit,
}

impl PasswordPool {
    /// Starts `in_flight_max` hashing threads with room for `queue_max` waiting checks.
    pub fn spawn(in_flight_max: usize, queue_max: usize) -> anyhow::Result<PasswordPool> {
        let in_flight_max = in_flight_max.max(1);
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        for i in 0..in_flight_max {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("frank-password-{i}"))
                .spawn(move || {
                    loop {
                        // A panic in another worker while it held the receiver leaves it usable.
                        let job = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => break,
                        }
                    }
                })
                .map_err(|e| anyhow::anyhow!("starting password thread {i}: {e}"))?;
        }
        Ok(PasswordPool {
            jobs,
            admission: Arc::new(Semaphore::new(in_flight_max.saturating_add(queue_max))),
            counters: Arc::new(Counters::default()),
            in_flight_max,
            queue_max,
        })
    }

    /// Takes a place for one check, or refuses at once when every place is taken.
    pub fn admit(&self) -> Result<PoolSlot, PoolBusy> {
        match self.admission.clone().try_acquire_owned() {
            Ok(permit) => Ok(PoolSlot {
                pool: self.clone(),
                permit,
            }),
            Err(_) => {
                self.counters.refused_total.fetch_add(1, Ordering::Relaxed);
                Err(PoolBusy {
                    in_flight_max: self.in_flight_max,
                    queue_max: self.queue_max,
                })
            }
        }
    }

    pub fn stats(&self) -> PasswordPoolStats {
        let c = &self.counters;
        PasswordPoolStats {
            in_flight: c.in_flight.load(Ordering::Relaxed),
            in_flight_peak: c.in_flight_peak.load(Ordering::Relaxed),
            verified_total: c.verified_total.load(Ordering::Relaxed),
            refused_total: c.refused_total.load(Ordering::Relaxed),
        }
    }

    /// The bound on argon2 memory: threads × [`ARGON2_MEMORY_BYTES`].
    pub fn memory_bytes_max(&self) -> usize {
        self.in_flight_max.saturating_mul(ARGON2_MEMORY_BYTES)
    }
}

impl PoolSlot {
    /// Verifies `password` against `hash` on a pool thread. The place is freed when the check
    /// ends on its thread, even if the caller stopped waiting, so the queue never holds more
    /// than its bound. `None`: the pool stopped.
    pub async fn verify(self, password: String, hash: String) -> Option<bool> {
        let PoolSlot { pool, permit } = self;
        let counters = pool.counters.clone();
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _permit = permit;
            let now = counters.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
            counters.in_flight_peak.fetch_max(now, Ordering::Relaxed);
            let ok = directory::verify_password(&password, &hash);
            counters.in_flight.fetch_sub(1, Ordering::Relaxed);
            counters.verified_total.fetch_add(1, Ordering::Relaxed);
            let _ = tx.send(ok);
        });
        pool.jobs.send(job).ok()?;
        rx.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn verifies_and_refuses_beyond_its_places() {
        let hash = directory::hash_password("correct horse").unwrap();
        let pool = PasswordPool::spawn(1, 1).unwrap();
        assert_eq!(pool.memory_bytes_max(), ARGON2_MEMORY_BYTES);
        let a = pool.admit().unwrap();
        let b = pool.admit().unwrap();
        assert_eq!(
            pool.admit().err(),
            Some(PoolBusy {
                in_flight_max: 1,
                queue_max: 1
            })
        );
        let (ra, rb) = tokio::join!(
            a.verify("correct horse".into(), hash.clone()),
            b.verify("wrong horse".into(), hash.clone())
        );
        assert_eq!((ra, rb), (Some(true), Some(false)));
        let s = pool.stats();
        assert_eq!(
            (
                s.in_flight,
                s.in_flight_peak,
                s.verified_total,
                s.refused_total
            ),
            (0, 1, 2, 1)
        );
        // Places come back once the checks ended.
        assert!(pool.admit().is_ok());
    }
}
