//! The link between counter and vendor: liveness (LinkGuard), keepalive datagrams, keys.

pub mod driver;
pub mod guard;
pub mod keepalive;
pub mod keys;
pub mod replay;

pub use guard::{GuardConfig, LinkGuard, LinkState};
