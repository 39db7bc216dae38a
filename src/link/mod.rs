//! The link between counter and vendor: liveness (LinkGuard), keepalive datagrams, keys.

pub mod guard;

pub use guard::{GuardConfig, LinkGuard, LinkState};
