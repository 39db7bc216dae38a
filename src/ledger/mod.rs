//! The ledger: accounts, meter registers, payments, two-phase authorizations. (issue 3)
//!
//! - [`model`]: plain data — ids, registers, accounts, pieces, outcomes, errors.
//! - [`ops`]: the request body ([`ops::Op`]) and the pure transition function [`ops::decide`].
//! - [`audit`]: the per-account hash-chained audit log and its verifier.
//! - [`payment`], [`licensing`]: the outside parties, with deterministic embedded defaults.
//! - [`store`]: the [`store::LedgerStore`] interface; [`sqlite`] and [`postgres`] implement it.
//! - [`service`]: the bounded-channel front ([`service::LedgerHandle`]) owning the store.
//!
//! Invariant: after every operation and every committed batch, for every account,
//! `ascending + pending + descending == control`, and no register is negative.

pub mod acks;
pub mod audit;
pub mod cli;
pub mod licensing;
pub mod model;
pub mod ops;
pub mod payment;
mod pg_batch;
pub mod pg_conn;
pub mod postgres;
pub mod report;
pub mod service;
pub mod sqlite;
pub mod store;

pub use model::*;
pub use ops::{External, Op, Request};
pub use service::{CallError, LedgerConfig, LedgerHandle};
pub use store::{LedgerStore, StoreError, verify_audit};

/// Whether `--database` names a PostgreSQL server (`postgres://…` / `postgresql://…`).
pub fn is_postgres(database: &str) -> bool {
    database.starts_with("postgres://") || database.starts_with("postgresql://")
}

/// Opens the store named by `--database`: `postgres://…` / `postgresql://…` selects
/// PostgreSQL, anything else is a SQLite file path (created if missing); `postgres_config` tunes the former.
pub async fn open_store(
    database: &str,
    signer: std::sync::Arc<dyn ItemSigner>,
    limits: LedgerLimits,
    postgres_config: postgres::PostgresConfig,
) -> Result<std::sync::Arc<dyn LedgerStore>, StoreError> {
    if is_postgres(database) {
        let store =
            postgres::PostgresStore::connect(database, postgres_config, signer, limits).await?;
        Ok(std::sync::Arc::new(store))
    } else {
        let store = sqlite::SqliteStore::open(
            std::path::Path::new(database),
            sqlite::SqliteConfig::default(),
            signer,
            limits,
        )?;
        Ok(std::sync::Arc::new(store))
    }
}
