//! The vendor's [`ItemSigner`]: turns the ledger's piece facts plus the authorized item into a
//! signed indicium (layout v1) with the vendor key, inside the reserving transaction.
//!
//! The ledger's item bytes are the canonical CBOR of [`SignItem`]: the wire item, the
//! counter's origin ZIP and the indicium day (the vendor's UTC day at authorization). The
//! front builds them after validating the item and the quote; they are part of the ledger's
//! idempotency fingerprint, so a retry with the same request id on another day is an
//! `idempotency_conflict` (use a new request id). They also name the clerk who asked (not
//! signed: the day report per clerk reads it).

use crate::indicium::kinds::Day;
use crate::indicium::layout::{LicenseId, MeterSerial, PieceSerial, SoftwareId};
use crate::indicium::signer::Signer;
use crate::indicium::{self, build_and_sign};
use crate::ledger::{ItemSigner, PieceFacts};
use crate::wire::WireItem;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What the ledger stores as an authorization's item description.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignItem {
    pub item: WireItem,
    pub origin_zip: String,
    /// Days since 1970-01-01 (UTC).
    pub day: u16,
    /// The signed-in clerk who authorized it (for the day report per clerk; not in the
    /// indicium). Absent in pieces authorized before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clerk: Option<String>,
}

impl SignItem {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        // CBOR of a plain struct into a Vec cannot fail.
        let _ = ciborium::into_writer(self, &mut out);
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SignItem, String> {
        ciborium::from_reader(bytes).map_err(|e| format!("item description does not decode: {e}"))
    }
}

/// Signs indicia with the vendor key (in memory or in a token).
pub struct VendorItemSigner {
    signer: Arc<dyn Signer>,
}

impl VendorItemSigner {
    pub fn new(signer: Arc<dyn Signer>) -> VendorItemSigner {
        VendorItemSigner { signer }
    }
}

impl ItemSigner for VendorItemSigner {
    fn parallel_signatures_max(&self) -> Option<usize> {
        self.signer.parallel_signatures_max()
    }

    fn sign(&self, facts: &PieceFacts, item: &[u8]) -> Result<Vec<u8>, String> {
        let s = SignItem::from_bytes(item)?;
        let item = s.item.to_item().map_err(|e| e.to_string())?;
        if item.kind().code() != facts.kind {
            return Err(format!(
                "item kind {} does not match the authorized kind {}",
                item.kind().code(),
                facts.kind
            ));
        }
        let origin = crate::wire::origin_zip(&s.origin_zip).map_err(|e| e.to_string())?;
        let license = u32::try_from(facts.license.0)
            .map_err(|_| format!("license {} does not fit the indicium", facts.license.0))?;
        // The indicium's ascending register includes this piece (a meter's ascending register
        // counts the piece it prints); the ledger's moves only at commit, so add the amount.
        let issued = facts
            .ascending_after
            .checked_add(facts.amount)
            .map_err(|e| e.to_string())?;
        let f = indicium::PieceFacts {
            meter_serial: MeterSerial::new(&facts.meter.to_string()).map_err(|e| e.to_string())?,
            license_id: LicenseId(license),
            piece_serial: PieceSerial::new(facts.piece.0).map_err(|e| e.to_string())?,
            ascending_after: issued,
            descending_after: facts.descending_after,
            amount: facts.amount,
            date: Day::from_days(s.day),
            origin,
            software_id: SoftwareId::FRANK,
            item,
        };
        build_and_sign(&f, &*self.signer)
            .map(|i| i.to_bytes())
            .map_err(|e| e.to_string())
    }
}
