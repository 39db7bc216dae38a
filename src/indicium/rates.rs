//! Rate table (mail class x weight in ounces x zone) and quotes.
//!
//! The vendor loads `rates.toml` from its data dir ([`super::rates_file::load_dir`]); Frank ships
//! `rates/sample-rates.toml`, invented SAMPLE rates with an effective date, used when the data
//! dir has none ([`super::rates_file::load_or_sample`]). A postage authorization must equal the
//! vendor's own quote ([`enforce_quote`]).

use super::address::Zip5;
use super::kinds::{Day, MailClass, WeightOz};
use crate::money::Cents;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// The shipped SAMPLE rate table.
pub const SAMPLE_RATES_TOML: &str = include_str!("../../rates/sample-rates.toml");
/// File name of the rate table in the vendor's data dir.
pub const RATES_FILE_NAME: &str = "rates.toml";
/// Number of zones (1..=9).
pub const ZONES: usize = 9;
/// Most weight rows per class accepted in a rate file.
pub const ROWS_PER_CLASS_MAX: usize = 256;
/// Largest rate file accepted, in bytes.
pub const RATE_FILE_BYTES_MAX: u64 = 1 << 20;

/// A postal zone 1..=9, derived from ZIP prefixes by [`zone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Zone(u8);

impl Zone {
    pub fn get(self) -> u8 {
        self.0
    }
}

/// Frank's simple zone rule (not the USPS zone chart):
/// same 3-digit prefix -> zone 1; same first digit -> zone 2; otherwise
/// `2 + |first digit difference|`, at most 9.
pub fn zone(origin: Zip5, dest: Zip5) -> Zone {
    let (o, d) = (origin.as_bytes(), dest.as_bytes());
    if o[..3] == d[..3] {
        return Zone(1);
    }
    if o[0] == d[0] {
        return Zone(2);
    }
    Zone((2 + o[0].abs_diff(d[0])).min(9))
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RateError {
    #[error("rate file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("rate file {path} is {bytes} bytes; the limit is {RATE_FILE_BYTES_MAX} bytes")]
    TooBig { path: PathBuf, bytes: u64 },
    #[error("rate table is not valid TOML of the expected shape: {0}")]
    Parse(String),
    #[error("rate table: {place}: {reason}")]
    Table { place: String, reason: String },
    #[error("the rate table has no rates for mail class {0}")]
    UnknownClass(MailClass),
    #[error(
        "{} takes pieces up to {max_oz} oz and this one weighs {weight_oz} oz; choose another class or split it",
        class.title()
    )]
    TooHeavy {
        class: MailClass,
        weight_oz: u16,
        max_oz: u16,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateFile {
    label: String,
    sample: bool,
    effective: String,
    classes: BTreeMap<String, ClassFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassFile {
    rows: Vec<RowFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RowFile {
    weight_oz_max: u16,
    zones_cents: Vec<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    weight_oz_max: u16,
    zones: [Cents; ZONES],
}

/// A validated rate table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTable {
    label: String,
    sample: bool,
    effective: Day,
    classes: HashMap<MailClass, Vec<Row>>,
}

fn table_err(place: impl Into<String>, reason: impl Into<String>) -> RateError {
    RateError::Table {
        place: place.into(),
        reason: reason.into(),
    }
}

impl RateTable {
    /// Parses and validates a rate table.
    pub fn from_toml_str(text: &str) -> Result<RateTable, RateError> {
        let file: RateFile = toml::from_str(text).map_err(|e| RateError::Parse(e.to_string()))?;
        let effective = Day::parse("effective", &file.effective)
            .map_err(|e| table_err("effective", e.reason))?;
        let mut classes = HashMap::new();
        for (name, class_file) in &file.classes {
            let class = MailClass::parse(name)
                .map_err(|e| table_err(format!("[classes.{name}]"), e.reason))?;
            classes.insert(class, validate_rows(name, &class_file.rows)?);
        }
        if classes.is_empty() {
            return Err(table_err("classes", "no mail classes"));
        }
        Ok(RateTable {
            label: file.label,
            sample: file.sample,
            effective,
            classes,
        })
    }

    /// The shipped SAMPLE table.
    pub fn sample() -> RateTable {
        match RateTable::from_toml_str(SAMPLE_RATES_TOML) {
            Ok(t) => t,
            // The shipped file is checked by the unit test `sample_table_loads`.
            Err(e) => panic!("shipped sample rate table is invalid: {e}"),
        }
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn is_sample(&self) -> bool {
        self.sample
    }

    pub fn effective(&self) -> Day {
        self.effective
    }

    /// Price of one piece.
    pub fn quote(
        &self,
        class: MailClass,
        weight: WeightOz,
        origin: Zip5,
        dest: Zip5,
    ) -> Result<Cents, RateError> {
        let rows = self
            .classes
            .get(&class)
            .ok_or(RateError::UnknownClass(class))?;
        let oz = weight.get();
        let row =
            rows.iter()
                .find(|r| oz <= r.weight_oz_max)
                .ok_or_else(|| RateError::TooHeavy {
                    class,
                    weight_oz: oz,
                    max_oz: rows.last().map_or(0, |r| r.weight_oz_max),
                })?;
        let z = usize::from(zone(origin, dest).get());
        Ok(row.zones[z - 1])
    }
}

fn validate_rows(class: &str, rows: &[RowFile]) -> Result<Vec<Row>, RateError> {
    if rows.is_empty() || rows.len() > ROWS_PER_CLASS_MAX {
        return Err(table_err(
            format!("[classes.{class}]"),
            format!("needs 1..={ROWS_PER_CLASS_MAX} rows, has {}", rows.len()),
        ));
    }
    let mut out: Vec<Row> = Vec::with_capacity(rows.len());
    for (i, r) in rows.iter().enumerate() {
        let place = format!(
            "[classes.{class}] row {} (weight_oz_max = {})",
            i + 1,
            r.weight_oz_max
        );
        if out
            .last()
            .is_some_and(|prev| r.weight_oz_max <= prev.weight_oz_max)
        {
            return Err(table_err(
                place,
                "weight_oz_max must increase from row to row",
            ));
        }
        if r.weight_oz_max == 0 {
            return Err(table_err(place, "weight_oz_max must be 1 or more"));
        }
        if r.zones_cents.len() != ZONES {
            return Err(table_err(
                place,
                format!(
                    "zones_cents needs {ZONES} prices (zones 1..=9), has {}",
                    r.zones_cents.len()
                ),
            ));
        }
        let mut zones = [Cents::ZERO; ZONES];
        for (z, &c) in r.zones_cents.iter().enumerate() {
            if c == 0 {
                return Err(table_err(place, format!("zone {} price is 0", z + 1)));
            }
            zones[z] = Cents::new(c).map_err(|e| table_err(place.clone(), e.to_string()))?;
        }
        out.push(Row {
            weight_oz_max: r.weight_oz_max,
            zones,
        });
    }
    Ok(out)
}

/// An authorization whose amount is not the vendor's quote.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "requested amount {requested} differs from the vendor's quote {quoted} for this piece; re-quote and authorize {quoted}"
)]
pub struct QuoteMismatch {
    pub requested: Cents,
    pub quoted: Cents,
}

/// Refuses a postage authorization whose amount differs from the vendor's own quote.
pub fn enforce_quote(requested: Cents, quoted: Cents) -> Result<(), QuoteMismatch> {
    if requested == quoted {
        Ok(())
    } else {
        Err(QuoteMismatch { requested, quoted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn z(s: &str) -> Zip5 {
        Zip5::parse(s).unwrap()
    }

    #[test]
    fn sample_table_loads() {
        let t = RateTable::sample();
        assert!(t.is_sample());
        assert!(t.label().contains("SAMPLE"));
        assert_eq!(t.effective().to_string(), "2026-01-01");
        for class in MailClass::ALL {
            assert!(t.classes.contains_key(&class), "{class}");
        }
    }

    #[test]
    fn zone_rule() {
        for (o, d, want) in [
            ("10001", "10099", 1),
            ("10001", "14201", 2),
            ("10001", "20001", 3),
            ("10001", "94105", 9),
            ("94105", "00501", 9),
            ("50001", "60001", 3),
        ] {
            assert_eq!(zone(z(o), z(d)).get(), want, "{o} -> {d}");
        }
    }

    #[test]
    fn quotes_pick_row_and_zone() {
        let t = RateTable::sample();
        let q = |class, oz, o, d| t.quote(class, WeightOz::new(oz).unwrap(), z(o), z(d));
        assert_eq!(
            q(MailClass::FirstClass, 1, "10001", "94105").unwrap().get(),
            73
        );
        assert_eq!(
            q(MailClass::FirstClass, 2, "10001", "94105").unwrap().get(),
            101
        );
        let near = q(MailClass::Priority, 10, "10001", "10002").unwrap();
        let far = q(MailClass::Priority, 10, "10001", "94105").unwrap();
        assert!(far > near);
        assert!(matches!(
            q(MailClass::FirstClass, 14, "10001", "94105"),
            Err(RateError::TooHeavy { max_oz: 13, .. })
        ));
    }

    #[test]
    fn bad_tables_name_the_place() {
        let base = |rows: &str| {
            format!(
                "label = \"t\"\nsample = false\neffective = \"2026-01-01\"\n[classes.priority]\nrows = [{rows}]\n"
            )
        };
        let nine = "[1,2,3,4,5,6,7,8,9]";
        for (rows, needle) in [
            (
                "{ weight_oz_max = 1, zones_cents = [1,2] }".to_string(),
                "zones_cents needs 9",
            ),
            (
                format!(
                    "{{ weight_oz_max = 4, zones_cents = {nine} }}, {{ weight_oz_max = 2, zones_cents = {nine} }}"
                ),
                "row 2",
            ),
            (
                "{ weight_oz_max = 1, zones_cents = [0,2,3,4,5,6,7,8,9] }".to_string(),
                "zone 1 price is 0",
            ),
        ] {
            let err = RateTable::from_toml_str(&base(&rows))
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err}");
        }
        let err = RateTable::from_toml_str("label = \"t\"\nsample = false\neffective = \"2026-01-01\"\n[classes.pigeon]\nrows = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("pigeon"), "{err}");
    }

    #[test]
    fn quote_mismatch_is_refused() {
        let c = |n| Cents::new(n).unwrap();
        assert!(enforce_quote(c(73), c(73)).is_ok());
        let e = enforce_quote(c(50), c(73)).unwrap_err();
        assert!(e.to_string().contains("$0.50") && e.to_string().contains("$0.73"));
    }
}
