//! Shared fixtures for the indicium tests and benchmark: one valid item of every kind and the
//! ledger facts around it.
#![allow(dead_code)]

use frank::indicium::address::{DeliveryPoint, Zip4, Zip5};
use frank::indicium::kinds::{
    Check, CheckNumber, Coupon, Day, Destination, GiftCertificate, Item, MailClass, Postage, Text,
    Ticket, WeightOz,
};
use frank::indicium::layout::{LicenseId, MeterSerial, PieceSerial, SoftwareId};
use frank::indicium::signer::PieceFacts;
use frank::money::Cents;

pub const TEST_SEED: [u8; 32] = [7u8; 32];

pub fn cents(n: u64) -> Cents {
    Cents::new(n).unwrap()
}

pub fn day(s: &str) -> Day {
    Day::parse("date", s).unwrap()
}

pub fn text(s: &str) -> Text {
    Text::new("text", s).unwrap()
}

pub fn postage() -> Item {
    Item::Postage(Postage {
        class: MailClass::FirstClass,
        weight: WeightOz::new(1).unwrap(),
        destination: Destination::new(
            Zip5::parse("94105").unwrap(),
            Some(Zip4::parse("1234").unwrap()),
            Some(DeliveryPoint::parse("56").unwrap()),
        )
        .unwrap(),
    })
}

/// One item of every kind with the amount it is authorized for.
pub fn every_kind() -> Vec<(Item, Cents)> {
    vec![
        (postage(), cents(73)),
        (
            Item::Ticket(Ticket {
                event: text("Spring Concert"),
                venue: text("Town Hall"),
                seat: text("B-12"),
                event_day: day("2026-12-05"),
                price: cents(2500),
            }),
            cents(2500),
        ),
        (
            Item::Check(Check {
                payee: text("Ada Lovelace"),
                amount: cents(12_345),
                number: CheckNumber::new(1001).unwrap(),
                memo: Some(text("November rent")),
            }),
            cents(12_345),
        ),
        (
            Item::Coupon(Coupon {
                offer: text("10% off stamps"),
                value: cents(100),
                expiry: day("2027-01-31"),
            }),
            cents(100),
        ),
        (
            Item::GiftCertificate(GiftCertificate {
                recipient: text("Grace Hopper"),
                value: cents(5000),
                expiry: day("2027-11-23"),
            }),
            cents(5000),
        ),
    ]
}

pub fn facts(item: Item, amount: Cents, serial: u64) -> PieceFacts {
    PieceFacts {
        meter_serial: MeterSerial::new("062S0001").unwrap(),
        license_id: LicenseId(424_242),
        piece_serial: PieceSerial::new(serial).unwrap(),
        ascending_after: cents(100_000 + amount.get()),
        descending_after: cents(900_000),
        amount,
        date: day("2026-11-23"),
        origin: Zip5::parse("10001").unwrap(),
        software_id: SoftwareId::FRANK,
        item,
    }
}
