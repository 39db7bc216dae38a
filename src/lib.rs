//! Frank: printing value-bearing items only while an authenticated link to the vendor holds.
//!
//! See ARCHITECTURE.md for the map of modules and the invariants they keep.

pub mod indicium;
pub mod ledger;
pub mod link;
pub mod money;
pub mod printer;
