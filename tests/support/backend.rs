//! The counter's backend in-process, against a [`super::ChildVendor`]: its config, a signed-in
//! backend, and waiting for one of its events.

use super::{CLERK, ChildVendor, PASSWORD};
use frank::counter::backend::{self, BackendConfig};
use frank::indicium::Item;
use frank::indicium::kinds::{Coupon, Day, Text};
use frank::link::guard::LinkState;
use frank::money::Cents;
use frank::ui::event::{self, Backend, Command, JobId};
use std::time::Duration;
use tokio::sync::mpsc::{Receiver, Sender};
use tokio::task::JoinHandle;

/// Longest wait for one backend event.
pub const EVENT_WAIT: Duration = Duration::from_secs(15);

/// Waits (up to `within`) for the backend event `pick` accepts; the others are dropped.
pub async fn next_event_within(
    rx: &mut Receiver<Backend>,
    within: Duration,
    what: &str,
    mut pick: impl FnMut(&Backend) -> bool,
) -> Backend {
    tokio::time::timeout(within, async {
        loop {
            let e = rx.recv().await.expect("backend ended");
            if pick(&e) {
                return e;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {what} within {within:?}"))
}

/// [`next_event_within`] [`EVENT_WAIT`].
pub async fn next_event(
    rx: &mut Receiver<Backend>,
    what: &str,
    pick: impl FnMut(&Backend) -> bool,
) -> Backend {
    next_event_within(rx, EVENT_WAIT, what, pick).await
}

/// A backend config for vendor `v`, its terminal's data in `dir`, enrolled with `v`'s code;
/// money requests give up after 5 s (the tests' vendor is on loopback).
pub fn backend_config(v: &ChildVendor, dir: &std::path::Path, origin_zip: &str) -> BackendConfig {
    let mut cfg = BackendConfig::new(vec![v.addr], v.key, dir.to_path_buf());
    cfg.enroll_code = Some(v.code.clone());
    cfg.terminal_name = "backend-test".into();
    cfg.origin_zip = origin_zip.into();
    cfg.authorize_retry_ms_max = 5_000;
    cfg.money_retry_ms_max = 5_000;
    cfg
}

/// A backend on `cfg`, [`CLERK`] signed in and its link up.
pub async fn signed_in_backend(
    cfg: BackendConfig,
) -> (Sender<Command>, Receiver<Backend>, JoinHandle<()>) {
    let (ctx, crx) = tokio::sync::mpsc::channel(event::COMMANDS_QUEUE_MAX);
    let (etx, mut erx) = tokio::sync::mpsc::channel(event::EVENTS_QUEUE_MAX);
    let task = backend::spawn(cfg, crx, etx);
    ctx.send(Command::SignIn {
        clerk: CLERK.into(),
        password: event::Secret::new(PASSWORD),
    })
    .await
    .unwrap();
    next_event(&mut erx, "SignedIn", |e| {
        matches!(e, Backend::SignedIn { .. })
    })
    .await;
    next_event(
        &mut erx,
        "link up",
        |e| matches!(e, Backend::LinkChanged(s) if s.state == LinkState::Up),
    )
    .await;
    (ctx, erx, task)
}

/// Asks the backend to authorize `job`: a coupon "Free stamp" worth `cents`.
pub async fn authorize_coupon(ctx: &Sender<Command>, job: JobId, cents: u64) {
    let value = Cents::new(cents).expect("a valid amount");
    let item = Item::Coupon(Coupon {
        offer: Text::new("offer", "Free stamp").expect("a valid offer"),
        value,
        expiry: Day::parse("expiry", "2040-01-31").expect("a valid day"),
    });
    ctx.send(Command::Authorize {
        job,
        item: Box::new(item),
        amount: value,
        label: Box::default(),
    })
    .await
    .expect("the backend takes commands");
}
