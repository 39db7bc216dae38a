//! The counter: connection to the vendor, enrollment, login, the supervised link.
//! `tui` is the ratatui app (`frank counter`); `backend` carries its commands to the vendor
//! and the printer; `headless` is the screenless variant.

pub mod backend;
pub mod backoff;
pub mod bundles;
pub mod client;
pub mod headless;
pub mod jobbook;
pub mod journal;
pub mod loadgen;
pub mod printouts;
pub mod supervisor;
pub mod terminal;
pub mod tui;
