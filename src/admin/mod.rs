//! `frank admin`: the supervisor's live monitor of the account's terminals (issue 6, claim 67).
//!
//! The vendor pushes terminal rows over the link by subscription (`subscribe_terminals`,
//! docs/PROTOCOL.md §4.8); nothing here polls. [`state`] is the sans-I/O state machine
//! (frames and keys in), [`view`] draws it (pure), [`run`] is the shell: sign-in, the session
//! supervisor, the subscription, the terminal screen or JSON lines.

pub mod run;
pub mod state;
pub mod view;

pub use run::{AdminOptions, Feed};
pub use state::{Monitor, Phase, SortKey};
