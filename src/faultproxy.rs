//! A loopback UDP relay that drops, delays, duplicates, reorders, corrupts and cuts datagrams
//! on command. Test and demo support: counter → proxy → vendor, with faults applied in both
//! directions. Each client address gets its own upstream socket.

use anyhow::Context;
use rand::RngExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::UdpSocket;

pub const CLIENTS_MAX: usize = 64;
/// Delayed or reordered datagrams held at once; more are dropped (and counted).
pub const IN_FLIGHT_DATAGRAMS_MAX: usize = 4096;
pub const DATAGRAM_BYTES_MAX: usize = 65_535;

/// The faults in force. Rates are probabilities in `[0, 1]`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Drop everything, both ways.
    pub cut: bool,
    pub drop_rate: f64,
    pub delay_ms: u64,
    pub duplicate_rate: f64,
    /// Share of datagrams held back by up to `reorder_ms_max` so later ones overtake them.
    pub reorder_rate: f64,
    pub reorder_ms_max: u64,
    /// Share of datagrams with one random bit flipped.
    pub corrupt_rate: f64,
}

#[derive(Debug, Default)]
pub struct ProxyCounters {
    pub forwarded: AtomicU64,
    pub dropped: AtomicU64,
    pub duplicated: AtomicU64,
    pub corrupted: AtomicU64,
    pub delayed: AtomicU64,
    pub overflowed: AtomicU64,
}

/// Changes the faults of a running proxy.
#[derive(Debug, Clone)]
pub struct FaultHandle {
    faults: Arc<Mutex<Faults>>,
    pub counters: Arc<ProxyCounters>,
}

impl FaultHandle {
    pub fn set(&self, faults: Faults) {
        *self.lock() = faults;
    }

    pub fn update(&self, f: impl FnOnce(&mut Faults)) {
        f(&mut self.lock());
    }

    pub fn cut(&self) {
        self.update(|f| f.cut = true);
    }

    pub fn heal(&self) {
        self.set(Faults::default());
    }

    pub fn faults(&self) -> Faults {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies a text command: `cut`, `heal`, `drop RATE`, `delay MS`, `duplicate RATE`,
    /// `reorder RATE MS`, `corrupt RATE`. Returns what is now in force.
    pub fn command(&self, line: &str) -> anyhow::Result<Faults> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let rate = |i: usize| -> anyhow::Result<f64> {
            let v: f64 = words
                .get(i)
                .context("missing rate")?
                .parse()
                .context("rate must be a number")?;
            anyhow::ensure!(
                (0.0..=1.0).contains(&v),
                "rate must be within 0..=1, got {v}"
            );
            Ok(v)
        };
        let ms = |i: usize| -> anyhow::Result<u64> {
            words
                .get(i)
                .context("missing milliseconds")?
                .parse()
                .context("milliseconds must be a whole number")
        };
        match words.first().copied() {
            Some("cut") => self.cut(),
            Some("heal") => self.heal(),
            Some("drop") => {
                let r = rate(1)?;
                self.update(|f| f.drop_rate = r)
            }
            Some("delay") => {
                let d = ms(1)?;
                self.update(|f| f.delay_ms = d)
            }
            Some("duplicate") => {
                let r = rate(1)?;
                self.update(|f| f.duplicate_rate = r)
            }
            Some("reorder") => {
                let (r, d) = (rate(1)?, ms(2)?);
                self.update(|f| {
                    f.reorder_rate = r;
                    f.reorder_ms_max = d;
                })
            }
            Some("corrupt") => {
                let r = rate(1)?;
                self.update(|f| f.corrupt_rate = r)
            }
            other => anyhow::bail!(
                "unknown command {other:?}; use cut, heal, drop RATE, delay MS, duplicate RATE, reorder RATE MS, corrupt RATE"
            ),
        }
        Ok(self.faults())
    }
}

pub struct FaultProxy {
    local_addr: SocketAddr,
    pub handle: FaultHandle,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Listens on `listen` (loopback) and relays to `upstream`.
    pub async fn start(listen: SocketAddr, upstream: SocketAddr) -> anyhow::Result<FaultProxy> {
        let socket = Arc::new(
            UdpSocket::bind(listen)
                .await
                .with_context(|| format!("binding {listen}"))?,
        );
        let local_addr = socket.local_addr()?;
        let handle = FaultHandle {
            faults: Arc::new(Mutex::new(Faults::default())),
            counters: Arc::new(ProxyCounters::default()),
        };
        let relay = Relay {
            handle: handle.clone(),
            in_flight: Arc::new(AtomicUsize::new(0)),
        };
        let task = tokio::spawn(relay.run(socket, upstream));
        Ok(FaultProxy {
            local_addr,
            handle,
            task,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

#[derive(Clone)]
struct Relay {
    handle: FaultHandle,
    in_flight: Arc<AtomicUsize>,
}

/// Where a datagram goes: out of a socket, to an address.
#[derive(Clone)]
struct Route {
    socket: Arc<UdpSocket>,
    to: SocketAddr,
}

impl Relay {
    async fn run(self, front: Arc<UdpSocket>, upstream: SocketAddr) {
        let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
        loop {
            let Ok((n, from)) = front.recv_from(&mut buf).await else {
                return;
            };
            let back = match clients.get(&from) {
                Some(s) => s.clone(),
                None => {
                    if clients.len() >= CLIENTS_MAX {
                        self.handle
                            .counters
                            .overflowed
                            .fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                    let Ok(s) = UdpSocket::bind("127.0.0.1:0").await else {
                        continue;
                    };
                    let s = Arc::new(s);
                    clients.insert(from, s.clone());
                    // upstream → client
                    let relay = self.clone();
                    let (s2, front2) = (s.clone(), front.clone());
                    tokio::spawn(async move {
                        let mut buf = vec![0u8; DATAGRAM_BYTES_MAX];
                        while let Ok((n, _)) = s2.recv_from(&mut buf).await {
                            relay
                                .forward(
                                    buf[..n].to_vec(),
                                    Route {
                                        socket: front2.clone(),
                                        to: from,
                                    },
                                )
                                .await;
                        }
                    });
                    s
                }
            };
            self.forward(
                buf[..n].to_vec(),
                Route {
                    socket: back,
                    to: upstream,
                },
            )
            .await;
        }
    }

    async fn forward(&self, mut data: Vec<u8>, route: Route) {
        let f = self.handle.faults();
        let c = &self.handle.counters;
        let (drop, flip, copies, delay_ms) = {
            let mut rng = rand::rng();
            let drop = f.cut || rng.random_bool(f.drop_rate.clamp(0.0, 1.0));
            let flip =
                (!data.is_empty() && rng.random_bool(f.corrupt_rate.clamp(0.0, 1.0))).then(|| {
                    (
                        rng.random_range(0..data.len()),
                        1u8 << rng.random_range(0..8),
                    )
                });
            let copies = if rng.random_bool(f.duplicate_rate.clamp(0.0, 1.0)) {
                2
            } else {
                1
            };
            let mut delay_ms = f.delay_ms;
            if f.reorder_ms_max > 0 && rng.random_bool(f.reorder_rate.clamp(0.0, 1.0)) {
                delay_ms += rng.random_range(1..=f.reorder_ms_max);
            }
            (drop, flip, copies, delay_ms)
        };
        if drop {
            c.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some((i, bit)) = flip {
            data[i] ^= bit;
            c.corrupted.fetch_add(1, Ordering::Relaxed);
        }
        if copies > 1 {
            c.duplicated.fetch_add(1, Ordering::Relaxed);
        }
        for _ in 0..copies {
            if delay_ms == 0 {
                c.forwarded.fetch_add(1, Ordering::Relaxed);
                let _ = route.socket.send_to(&data, route.to).await;
                continue;
            }
            if self.in_flight.fetch_add(1, Ordering::Relaxed) >= IN_FLIGHT_DATAGRAMS_MAX {
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
                c.overflowed.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            c.delayed.fetch_add(1, Ordering::Relaxed);
            let (data, route, relay) = (data.clone(), route.clone(), self.clone());
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                // A cut that began while the datagram was in flight drops it too.
                if !relay.handle.faults().cut {
                    relay
                        .handle
                        .counters
                        .forwarded
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = route.socket.send_to(&data, route.to).await;
                }
                relay.in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn relays_cuts_and_heals() {
        let upstream = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let proxy = FaultProxy::start(
            "127.0.0.1:0".parse().unwrap(),
            upstream.local_addr().unwrap(),
        )
        .await
        .unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut buf = [0u8; 64];
        client.send_to(b"one", proxy.local_addr()).await.unwrap();
        let (n, via) = upstream.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"one");
        upstream.send_to(b"back", via).await.unwrap();
        let (n, _) = client.recv_from(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"back");

        proxy.handle.command("cut").unwrap();
        client.send_to(b"lost", proxy.local_addr()).await.unwrap();
        while proxy.handle.counters.dropped.load(Ordering::Relaxed) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        proxy.handle.command("heal").unwrap();
        client.send_to(b"two", proxy.local_addr()).await.unwrap();
        let (n, _) = upstream.recv_from(&mut buf).await.unwrap();
        assert_eq!(
            &buf[..n],
            b"two",
            "the datagram sent during the cut never arrives"
        );
        assert_eq!(proxy.handle.counters.dropped.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn commands_are_checked() {
        let h = FaultHandle {
            faults: Arc::default(),
            counters: Arc::default(),
        };
        assert_eq!(h.command("drop 0.25").unwrap().drop_rate, 0.25);
        assert_eq!(h.command("reorder 0.5 30").unwrap().reorder_ms_max, 30);
        assert!(
            h.command("drop 2")
                .unwrap_err()
                .to_string()
                .contains("0..=1")
        );
        assert!(
            h.command("explode")
                .unwrap_err()
                .to_string()
                .contains("unknown command")
        );
    }
}
