//! The counter: connection to the vendor, enrollment, login, the supervised link.
//! (The ratatui app arrives with issue 6; until then `frank counter` runs headless.)

pub mod backoff;
pub mod client;
pub mod headless;
pub mod loadgen;
pub mod supervisor;
pub mod terminal;
