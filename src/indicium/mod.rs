//! Indicia and value-bearing items: layout, signing, rendering, rates, addresses. (issue 4)
//!
//! Codemap:
//! - `kinds`: item kinds (postage, ticket, check, coupon, gift certificate) with typed fields,
//!   canonical encoding and SHA-256 digest.
//! - `address`: ZIP / state newtypes, address format validation, the `AddressValidator` seam.
//! - `layout`: indicium layout v1 (docs/INDICIUM.md): encoder and strict decoder.
//! - `signer`: the `Signer` seam, `FileSigner`, `PieceFacts` and `build_and_sign`.
//! - `render`: payload -> Data Matrix -> 1-bit `MonoImage` (+ PNG), human-readable block.
//! - `face`: the printed face of each kind (its digest's fields in a canonical text form read
//!   back by `frank verify --fields`), the postage label's indicium block.
//! - `rates`: rate table, zones, `quote`, `enforce_quote`.
//! - `verify`: `verify_payload`, vendor keys, PNG scanning with rxing.
//! - `cli`: `frank verify`.
//!
//! Invariants: the cores do no I/O; the shells are `FileSigner` (key file), `rates_file` and the
//! CLI; an indicium's signature covers every byte before it; the decoder accepts only exact
//! layout-v1 lengths and valid field values.

pub mod address;
pub mod cli;
pub mod face;
pub mod kinds;
pub mod layout;
pub mod rates;
pub mod rates_file;
pub mod render;
pub mod signer;
pub mod verify;

/// A field that failed validation: which field and why, in words the user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct FieldError {
    pub field: &'static str,
    pub reason: String,
}

impl FieldError {
    pub fn new(field: &'static str, reason: impl Into<String>) -> Self {
        FieldError {
            field,
            reason: reason.into(),
        }
    }
}

pub use address::{Address, AddressInput, AddressValidator, FormatValidator};
pub use kinds::{Item, ItemKind, MailClass};
pub use layout::{Indicium, IndiciumBody, KeyId};
pub use render::MonoImage;
pub use signer::{FileSigner, PieceFacts, Signer, build_and_sign};
pub use verify::{VendorKeys, VerifiedIndicium, VerifyError, verify_payload};
