//! The ledger: accounts, meter registers, payments, two-phase authorizations. (issue 3)
