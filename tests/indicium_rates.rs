//! Rate tables from a data dir, the SAMPLE fallback, and quote enforcement.

use frank::indicium::address::Zip5;
use frank::indicium::kinds::{MailClass, WeightOz};
use frank::indicium::rates::{RateError, RateTable, enforce_quote};
use frank::money::Cents;

fn zip(s: &str) -> Zip5 {
    Zip5::parse(s).unwrap()
}

const OWN_TABLE: &str = r#"
label = "Test rates"
sample = false
effective = "2026-07-12"

[classes.first-class]
rows = [
  { weight_oz_max = 3, zones_cents = [50, 51, 52, 53, 54, 55, 56, 57, 58] },
]
"#;

#[test]
fn loads_the_data_dir_table_and_falls_back_to_the_sample() {
    let dir = tempfile::tempdir().unwrap();
    // No file: load_dir says which file is missing, load_or_sample uses the SAMPLE table.
    let err = frank::indicium::rates_file::load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("rates.toml"), "{err}");
    let sample = frank::indicium::rates_file::load_or_sample(dir.path()).unwrap();
    assert!(sample.is_sample());

    std::fs::write(dir.path().join("rates.toml"), OWN_TABLE).unwrap();
    let own = frank::indicium::rates_file::load_or_sample(dir.path()).unwrap();
    assert!(!own.is_sample());
    assert_eq!(own.label(), "Test rates");
    assert_eq!(own.effective().to_string(), "2026-07-12");
    let q = own
        .quote(
            MailClass::FirstClass,
            WeightOz::new(2).unwrap(),
            zip("10001"),
            zip("10002"),
        )
        .unwrap();
    assert_eq!(q.get(), 50);
    assert!(matches!(
        own.quote(
            MailClass::Priority,
            WeightOz::new(2).unwrap(),
            zip("10001"),
            zip("10002")
        ),
        Err(RateError::UnknownClass(MailClass::Priority))
    ));
    let heavy = own
        .quote(
            MailClass::FirstClass,
            WeightOz::new(4).unwrap(),
            zip("10001"),
            zip("10002"),
        )
        .unwrap_err();
    // In words a clerk acts on: the class by name, its limit, what to do.
    let words = heavy.to_string();
    assert!(
        words.contains("First-Class Mail takes pieces up to 3 oz")
            && words.contains("choose another class")
            && !words.contains("first-class"),
        "{words}"
    );

    // A broken table in the data dir is an error, not a silent fallback.
    std::fs::write(dir.path().join("rates.toml"), "label = 1").unwrap();
    assert!(frank::indicium::rates_file::load_or_sample(dir.path()).is_err());
}

#[test]
fn an_authorization_must_equal_the_vendor_quote() {
    let table = RateTable::sample();
    let quoted = table
        .quote(
            MailClass::Priority,
            WeightOz::new(12).unwrap(),
            zip("10001"),
            zip("94105"),
        )
        .unwrap();
    assert!(enforce_quote(quoted, quoted).is_ok());
    for requested in [quoted.get() - 1, quoted.get() + 1, 0] {
        let requested = Cents::new(requested).unwrap();
        let err = enforce_quote(requested, quoted).unwrap_err();
        assert_eq!((err.requested, err.quoted), (requested, quoted));
        assert!(err.to_string().contains(&quoted.to_string()), "{err}");
    }
}
