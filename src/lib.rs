//! Frank: printing value-bearing items only while an authenticated link to the vendor holds.
//!
//! See ARCHITECTURE.md for the map of modules and the invariants they keep.

pub mod admin;
pub mod clock;
pub mod counter;
pub mod datafiles;
pub mod demo;
pub mod faultproxy;
pub mod identity;
pub mod indicium;
pub mod ledger;
pub mod link;
pub mod logtext;
pub mod money;
pub mod pkcs11;
pub mod printer;
pub mod secret;
pub mod tls;
pub mod ui;
pub mod vendor_server;
pub mod wire;
