//! Address format validation: one error per failing field, naming the field.

use frank::indicium::address::{AddressInput, AddressValidator, FormatValidator};

fn good() -> AddressInput {
    AddressInput {
        name: "Ada Lovelace".into(),
        line1: "1 Market St".into(),
        line2: "".into(),
        city: "San Francisco".into(),
        state: "ca".into(),
        zip: "94105-1234".into(),
    }
}

/// Applies `edit` to a good address and checks exactly `fields` fail, in form order.
fn check(edit: impl FnOnce(&mut AddressInput), fields: &[&str]) {
    let mut input = good();
    edit(&mut input);
    match FormatValidator.validate(&input) {
        Ok(a) => assert!(fields.is_empty(), "expected {fields:?} to fail, got {a:?}"),
        Err(errors) => {
            let got: Vec<_> = errors.0.iter().map(|e| e.field).collect();
            assert_eq!(got, fields, "{errors}");
            for e in &errors.0 {
                assert!(!e.reason.is_empty());
            }
        }
    }
}

#[test]
fn a_good_address_validates() {
    let a = FormatValidator.validate(&good()).unwrap();
    assert_eq!(a.state.as_str(), "CA");
    assert_eq!(a.zip5.as_str(), "94105");
    assert_eq!(a.zip4.unwrap().as_str(), "1234");
}

#[test]
fn each_field_fails_on_its_own() {
    check(|a| a.name = " ".into(), &["name"]);
    check(|a| a.line1 = "".into(), &["line1"]);
    check(|a| a.line1 = "x".repeat(41), &["line1"]);
    check(|a| a.line2 = "x".repeat(41), &["line2"]);
    check(|a| a.line2 = "Apt 4".into(), &[]);
    check(|a| a.city = "".into(), &["city"]);
    check(|a| a.city = "x".repeat(29), &["city"]);
    check(|a| a.city = "San\tFrancisco".into(), &["city"]);
    check(|a| a.state = "".into(), &["state"]);
    check(|a| a.state = "ZZ".into(), &["state"]);
    check(|a| a.zip = "".into(), &["zip"]);
    check(|a| a.zip = "9410".into(), &["zip"]);
    check(|a| a.zip = "94105-12".into(), &["zip"]);
    check(|a| a.zip = "94105".into(), &[]);
}

#[test]
fn all_failing_fields_are_reported_together() {
    check(
        |a| *a = AddressInput::default(),
        &["name", "line1", "city", "state", "zip"],
    );
    let err = FormatValidator
        .validate(&AddressInput {
            state: "Q".into(),
            ..good()
        })
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("state") && msg.contains("\"Q\""), "{msg}");
    assert!(err.field("state").is_some() && err.field("zip").is_none());
}

#[test]
fn the_validator_is_a_seam() {
    let validator: Box<dyn AddressValidator> = Box::new(FormatValidator);
    assert!(validator.validate(&good()).is_ok());
}
