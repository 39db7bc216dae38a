//! Meter licensing (claims 61–62): a new account's meter needs a license before it can print.

use super::model::{LicenseId, MeterSerial};
use super::payment::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Issues meter licenses. `issue` must be idempotent per meter: asking again for the same
/// meter returns the license already issued.
pub trait LicensingAuthority: Send + Sync {
    /// The license for `meter`, or the reason it was refused.
    fn issue(&self, meter: MeterSerial) -> BoxFuture<'_, Result<LicenseId, String>>;
}

/// One license the embedded authority issued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenseRecord {
    pub license: LicenseId,
    pub meter: MeterSerial,
}

/// The embedded default: issues sequential license numbers and records them. It refuses meters
/// it was told to refuse and any license beyond `licenses_max`.
pub struct EmbeddedLicensing {
    state: Mutex<LicensingState>,
}

struct LicensingState {
    next: u64,
    licenses_max: u64,
    issued: BTreeMap<MeterSerial, LicenseId>,
    refused: BTreeSet<MeterSerial>,
}

impl EmbeddedLicensing {
    /// Starts numbering after `last_issued` (0 for a fresh vendor; on restart, the largest
    /// license the ledger holds).
    pub fn new(last_issued: u64, licenses_max: u64) -> EmbeddedLicensing {
        EmbeddedLicensing {
            state: Mutex::new(LicensingState {
                next: last_issued.saturating_add(1),
                licenses_max,
                issued: BTreeMap::new(),
                refused: BTreeSet::new(),
            }),
        }
    }

    /// Refuse licenses for this meter from now on (an authority's decision).
    pub fn refuse(&self, meter: MeterSerial) {
        self.lock().refused.insert(meter);
    }

    /// Allow this meter again.
    pub fn allow(&self, meter: MeterSerial) {
        self.lock().refused.remove(&meter);
    }

    /// Every license issued, in meter order.
    pub fn issued(&self) -> Vec<LicenseRecord> {
        self.lock()
            .issued
            .iter()
            .map(|(m, l)| LicenseRecord {
                license: *l,
                meter: *m,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LicensingState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn issue_now(&self, meter: MeterSerial) -> Result<LicenseId, String> {
        let mut s = self.lock();
        if let Some(l) = s.issued.get(&meter) {
            return Ok(*l);
        }
        if s.refused.contains(&meter) {
            return Err(format!("meter {meter} is not approved for a license"));
        }
        if s.next > s.licenses_max {
            return Err(format!(
                "all {} licenses of this authority are issued",
                s.licenses_max
            ));
        }
        let license = LicenseId(s.next);
        s.next += 1;
        s.issued.insert(meter, license);
        Ok(license)
    }
}

impl LicensingAuthority for EmbeddedLicensing {
    fn issue(&self, meter: MeterSerial) -> BoxFuture<'_, Result<LicenseId, String>> {
        let answer = self.issue_now(meter);
        Box::pin(async move { answer })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ledger::model::AccountId;

    #[tokio::test]
    async fn sequential_recorded_and_refusable() {
        let auth = EmbeddedLicensing::new(0, 2);
        let m = |n| MeterSerial::for_account(AccountId(n));
        assert_eq!(auth.issue(m(1)).await, Ok(LicenseId(1)));
        assert_eq!(auth.issue(m(1)).await, Ok(LicenseId(1)));
        auth.refuse(m(2));
        assert!(auth.issue(m(2)).await.is_err());
        auth.allow(m(2));
        assert_eq!(auth.issue(m(2)).await, Ok(LicenseId(2)));
        assert!(auth.issue(m(3)).await.is_err());
        assert_eq!(auth.issued().len(), 2);
    }
}
