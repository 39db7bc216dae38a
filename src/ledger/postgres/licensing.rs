//! Meter licensing on PostgreSQL: licenses from a sequence with `UNIQUE`, so accounts opened on
//! two fronts at once get distinct ones.

use super::*;

/// Tries of one license issue that met another front inserting the same meter.
pub(super) const LICENSE_TRIES_MAX: usize = 3;

/// Meter licensing on the database (`LicensingAuthority`): every vendor front on one
/// PostgreSQL issues from one sequence, so no two meters get the same license, and a meter
/// asked for again gets the license it already has (its row in `meter_licenses`). Migration
/// 9; the embedded authority's numbering continues where the ledger's largest license left.
pub struct PostgresLicensing {
    pub(super) url: String,
    pub(super) conn: Mutex<Option<Client>>,
    pub(super) reconnect: Reconnect,
    pub(super) licenses_max: u64,
}

impl PostgresLicensing {
    /// For the database at `url` (migrated by [`PostgresStore::connect`]); licenses above
    /// `licenses_max` are refused.
    pub fn new(url: &str, licenses_max: u64) -> PostgresLicensing {
        PostgresLicensing {
            url: url.to_string(),
            conn: Mutex::new(None),
            reconnect: Reconnect::default(),
            licenses_max,
        }
    }

    /// Issues on the connection kept for licensing (opened again, through the reconnect gate,
    /// when it is gone); a connection on which the issue failed and that no longer serves
    /// writes (its server went away or became a standby) is dropped.
    pub(super) async fn issue_now(&self, meter: MeterSerial) -> Result<u64, String> {
        let mut guard = self.conn.lock().await;
        if guard.as_ref().is_none_or(|c| c.is_closed()) {
            *guard = None;
            let target = Target::parse(&self.url).map_err(|e| e.to_string())?;
            let client = self
                .reconnect
                .attempt(target.open())
                .await
                .map_err(|e| format!("licensing database unreachable: {e}"))?;
            *guard = Some(client);
        }
        let Some(client) = guard.as_ref() else {
            return Err("licensing database unreachable".into());
        };
        let r = Self::issue_on(client, meter, self.licenses_max).await;
        if r.is_err() && !pg_conn::usable(client).await {
            *guard = None;
        }
        r
    }

    pub(super) async fn issue_on(
        client: &Client,
        meter: MeterSerial,
        licenses_max: u64,
    ) -> Result<u64, String> {
        let meter =
            i64::try_from(meter.number()).map_err(|_| "meter number out of range".to_string())?;
        // A front that inserted the meter's row at the same moment wins; its row is not in
        // this statement's snapshot, so the next try reads it.
        let mut license: Option<i64> = None;
        for _ in 0..LICENSE_TRIES_MAX {
            let row = client
                .query_opt(
                    "WITH new AS (INSERT INTO meter_licenses (meter, license) \
                     SELECT $1, nextval('meter_license_seq') \
                     WHERE NOT EXISTS (SELECT 1 FROM meter_licenses WHERE meter = $1) \
                     ON CONFLICT (meter) DO NOTHING RETURNING license) \
                     SELECT license FROM new UNION ALL \
                     SELECT license FROM meter_licenses WHERE meter = $1 LIMIT 1",
                    &[&meter],
                )
                .await
                .map_err(|e| format!("licensing database: {e}"))?;
            if let Some(row) = row {
                license = Some(row.get(0));
                break;
            }
        }
        let license = license
            .ok_or_else(|| "licensing database: the meter's row did not settle".to_string())?;
        let license = u64::try_from(license).map_err(|_| "negative license".to_string())?;
        if license > licenses_max {
            return Err(format!(
                "all {licenses_max} licenses of this authority are issued"
            ));
        }
        Ok(license)
    }
}

impl crate::ledger::licensing::LicensingAuthority for PostgresLicensing {
    fn issue(&self, meter: MeterSerial) -> BoxFuture<'_, Result<LicenseId, String>> {
        Box::pin(async move { self.issue_now(meter).await.map(LicenseId) })
    }
}
