//! Indicia and value-bearing items: layout, signing, rendering, rates, addresses. (issue 4)

pub mod cli;
