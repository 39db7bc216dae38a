//! The ledger: accounts, meter registers, payments, two-phase authorizations. (issue 3)
//!
//! - [`model`]: plain data — ids, registers, accounts, pieces, outcomes, errors.
//! - [`ops`]: the request body ([`ops::Op`]) and the pure transition function [`ops::decide`].
//! - [`audit`]: the per-account hash-chained audit log and its verifier.
//! - [`payment`], [`licensing`]: the outside parties, with deterministic embedded defaults.
//! - [`store`]: the [`store::LedgerStore`] interface; [`sqlite`] and `postgres` (cargo feature
//!   `postgres`, on by default) implement it.
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
#[cfg(feature = "postgres")]
mod pg_batch;
#[cfg(feature = "postgres")]
pub mod pg_conn;
#[cfg(feature = "postgres")]
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

/// What `--database postgres://…` gets from a frank built without the `postgres` feature.
pub const NO_POSTGRES: &str = "this frank was built without PostgreSQL support (cargo feature \
`postgres`); give --database a SQLite file path, or use a frank built with default features";

/// Checks a `--database` value against this build: a PostgreSQL URL is refused with
/// [`NO_POSTGRES`] when the build lacks PostgreSQL. The value is not repeated (it may hold a
/// password). The command line checks `--database` with it before anything else.
pub fn database_arg(database: &str) -> Result<String, String> {
    if is_postgres(database) && !cfg!(feature = "postgres") {
        return Err(NO_POSTGRES.to_string());
    }
    Ok(database.to_string())
}

/// Opens the store named by `--database`: `postgres://…` / `postgresql://…` selects
/// PostgreSQL (tuned by `config.postgres`), anything else is a SQLite file path (created if
/// missing).
pub async fn open_store(
    database: &str,
    signer: std::sync::Arc<dyn ItemSigner>,
    config: &LedgerConfig,
) -> Result<std::sync::Arc<dyn LedgerStore>, StoreError> {
    if is_postgres(database) {
        #[cfg(feature = "postgres")]
        {
            let store = postgres::PostgresStore::connect(
                database,
                config.postgres.clone(),
                signer,
                config.limits.clone(),
            )
            .await?;
            Ok(std::sync::Arc::new(store))
        }
        #[cfg(not(feature = "postgres"))]
        Err(StoreError::Database(NO_POSTGRES.to_string()))
    } else {
        let store = sqlite::SqliteStore::open(
            std::path::Path::new(database),
            sqlite::SqliteConfig::default(),
            signer,
            config.limits.clone(),
        )?;
        Ok(std::sync::Arc::new(store))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_postgres_database_needs_a_build_with_postgres() {
        assert_eq!(
            super::database_arg("/var/lib/frank/ledger.db"),
            Ok("/var/lib/frank/ledger.db".to_string())
        );
        for url in [
            "postgres://frank:secret@db/frank",
            "postgresql://frank:secret@a,b/frank",
        ] {
            let checked = super::database_arg(url);
            if cfg!(feature = "postgres") {
                assert_eq!(checked, Ok(url.to_string()));
            } else {
                let e = checked.unwrap_err();
                assert!(e.contains("without PostgreSQL support"), "{e}");
                assert!(!e.contains("secret"), "the URL is not repeated: {e}");
            }
        }
    }
}
