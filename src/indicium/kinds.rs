//! Item kinds: postage and the other value-bearing items, with typed, validated fields.
//!
//! Every item has a canonical byte encoding ([`Item::canonical_bytes`]) and a SHA-256 digest of
//! it ([`Item::digest`]). Non-postage indicia carry the digest, so a verifier holding the item's
//! printed fields can check they were not altered. The encoding is documented in
//! docs/INDICIUM.md ("Kind fields").

use super::FieldError;
use super::address::{DeliveryPoint, Zip4, Zip5};
use crate::money::Cents;
use sha2::{Digest, Sha256};
use std::fmt;
use time::{Date, Month};

/// A calendar day from 1970-01-01 to 2149-06-06, stored as days since 1970-01-01 (u16).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Day(u16);

const EPOCH: Date = time::macros::date!(1970 - 01 - 01);

impl Day {
    pub fn from_days(days: u16) -> Day {
        Day(days)
    }

    pub fn days(self) -> u16 {
        self.0
    }

    pub fn from_date(field: &'static str, date: Date) -> Result<Day, FieldError> {
        let days = (date - EPOCH).whole_days();
        u16::try_from(days).map(Day).map_err(|_| {
            FieldError::new(field, format!("{date} is outside 1970-01-01..=2149-06-06"))
        })
    }

    pub fn from_ymd(field: &'static str, y: i32, m: u8, d: u8) -> Result<Day, FieldError> {
        let month = Month::try_from(m)
            .map_err(|_| FieldError::new(field, format!("month {m} is not 1..=12")))?;
        let date = Date::from_calendar_date(y, month, d)
            .map_err(|e| FieldError::new(field, format!("not a date: {e}")))?;
        Day::from_date(field, date)
    }

    /// Parses `YYYY-MM-DD`.
    pub fn parse(field: &'static str, text: &str) -> Result<Day, FieldError> {
        let bad = || FieldError::new(field, "expected YYYY-MM-DD");
        let mut parts = text.trim().splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if y.len() != 4 || m.len() != 2 || d.len() != 2 {
            return Err(bad());
        }
        let y: i32 = y.parse().map_err(|_| bad())?;
        let m: u8 = m.parse().map_err(|_| bad())?;
        let d: u8 = d.parse().map_err(|_| bad())?;
        Day::from_ymd(field, y, m, d)
    }

    pub fn date(self) -> Date {
        EPOCH + time::Duration::days(i64::from(self.0))
    }
}

impl fmt::Display for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.date();
        write!(
            f,
            "{:04}-{:02}-{:02}",
            d.year(),
            u8::from(d.month()),
            d.day()
        )
    }
}

impl fmt::Debug for Day {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Day({self})")
    }
}

/// Longest free-text item field, in bytes of UTF-8.
pub const TEXT_BYTES_MAX: usize = 64;

/// A free-text item field (event, venue, seat, payee, memo, offer, recipient): non-empty after
/// trimming, at most [`TEXT_BYTES_MAX`] bytes, no control characters.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Text(String);

impl Text {
    pub fn new(field: &'static str, value: &str) -> Result<Text, FieldError> {
        let v = value.trim();
        if v.is_empty() {
            return Err(FieldError::new(field, "is required"));
        }
        if v.len() > TEXT_BYTES_MAX {
            return Err(FieldError::new(
                field,
                format!("is {} bytes; at most {TEXT_BYTES_MAX}", v.len()),
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(FieldError::new(field, "contains a control character"));
        }
        Ok(Text(v.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// Mail class / rate category. The discriminant is the byte stored in the indicium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum MailClass {
    FirstClass = 1,
    Priority = 2,
    PriorityExpress = 3,
    GroundAdvantage = 4,
    Media = 5,
}

impl MailClass {
    pub const ALL: [MailClass; 5] = [
        MailClass::FirstClass,
        MailClass::Priority,
        MailClass::PriorityExpress,
        MailClass::GroundAdvantage,
        MailClass::Media,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<MailClass> {
        MailClass::ALL.into_iter().find(|c| c.code() == code)
    }

    /// The name used in rate tables and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MailClass::FirstClass => "first-class",
            MailClass::Priority => "priority",
            MailClass::PriorityExpress => "priority-express",
            MailClass::GroundAdvantage => "ground-advantage",
            MailClass::Media => "media",
        }
    }

    /// The class as people say it ("Priority Mail Express", not `priority-express`): what
    /// screens and messages show.
    pub fn title(self) -> &'static str {
        match self {
            MailClass::FirstClass => "First-Class Mail",
            MailClass::Priority => "Priority Mail",
            MailClass::PriorityExpress => "Priority Mail Express",
            MailClass::GroundAdvantage => "USPS Ground Advantage",
            MailClass::Media => "Media Mail",
        }
    }

    pub fn parse(text: &str) -> Result<MailClass, FieldError> {
        let t = text.trim().to_ascii_lowercase();
        MailClass::ALL
            .into_iter()
            .find(|c| c.name() == t)
            .ok_or_else(|| {
                let names: Vec<_> = MailClass::ALL.iter().map(|c| c.name()).collect();
                FieldError::new(
                    "class",
                    format!("is not a mail class; use one of {}", names.join(", ")),
                )
            })
    }
}

impl fmt::Display for MailClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Heaviest piece accepted, in whole ounces (70 lb).
pub const WEIGHT_OZ_MAX: u16 = 1120;

/// Weight of a mail piece in whole ounces (round up before constructing), 1..=[`WEIGHT_OZ_MAX`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WeightOz(u16);

impl WeightOz {
    pub fn new(oz: u16) -> Result<WeightOz, FieldError> {
        if oz == 0 || oz > WEIGHT_OZ_MAX {
            return Err(FieldError::new(
                "weight_oz",
                format!(
                    "a piece weighs 1 to {WEIGHT_OZ_MAX} oz ({} lb); this one is {oz} oz",
                    WEIGHT_OZ_MAX / 16
                ),
            ));
        }
        Ok(WeightOz(oz))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// Destination of a mail piece: ZIP, optional ZIP+4 and, only with ZIP+4, a delivery point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Destination {
    zip5: Zip5,
    plus4: Option<(Zip4, Option<DeliveryPoint>)>,
}

impl Destination {
    pub fn new(
        zip5: Zip5,
        zip4: Option<Zip4>,
        delivery_point: Option<DeliveryPoint>,
    ) -> Result<Destination, FieldError> {
        let plus4 = match (zip4, delivery_point) {
            (Some(z4), dp) => Some((z4, dp)),
            (None, None) => None,
            (None, Some(_)) => {
                return Err(FieldError::new(
                    "delivery_point",
                    "needs a ZIP+4; a delivery point without ZIP+4 is meaningless",
                ));
            }
        };
        Ok(Destination { zip5, plus4 })
    }

    pub fn zip5(&self) -> Zip5 {
        self.zip5
    }

    pub fn zip4(&self) -> Option<Zip4> {
        self.plus4.map(|(z, _)| z)
    }

    pub fn delivery_point(&self) -> Option<DeliveryPoint> {
        self.plus4.and_then(|(_, dp)| dp)
    }
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.zip5)?;
        if let Some(z4) = self.zip4() {
            write!(f, "-{z4}")?;
        }
        if let Some(dp) = self.delivery_point() {
            write!(f, " dp {dp}")?;
        }
        Ok(())
    }
}

/// Postage for one mail piece. Its price is the indicium amount (the vendor's quote).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postage {
    pub class: MailClass,
    pub weight: WeightOz,
    pub destination: Destination,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    pub event: Text,
    pub venue: Text,
    pub seat: Text,
    pub event_day: Day,
    pub price: Cents,
}

/// A check number (1..=u32::MAX).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CheckNumber(u32);

impl CheckNumber {
    pub fn new(n: u32) -> Result<CheckNumber, FieldError> {
        if n == 0 {
            return Err(FieldError::new("check_number", "must be 1 or more"));
        }
        Ok(CheckNumber(n))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub payee: Text,
    pub amount: Cents,
    pub number: CheckNumber,
    pub memo: Option<Text>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coupon {
    pub offer: Text,
    pub value: Cents,
    pub expiry: Day,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GiftCertificate {
    pub recipient: Text,
    pub value: Cents,
    pub expiry: Day,
}

/// The kind of an item; the discriminant is the byte stored in the indicium.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ItemKind {
    Postage = 0,
    Ticket = 1,
    Check = 2,
    Coupon = 3,
    GiftCertificate = 4,
}

impl ItemKind {
    pub const ALL: [ItemKind; 5] = [
        ItemKind::Postage,
        ItemKind::Ticket,
        ItemKind::Check,
        ItemKind::Coupon,
        ItemKind::GiftCertificate,
    ];

    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn from_code(code: u8) -> Option<ItemKind> {
        ItemKind::ALL.into_iter().find(|k| k.code() == code)
    }

    pub fn name(self) -> &'static str {
        match self {
            ItemKind::Postage => "postage",
            ItemKind::Ticket => "ticket",
            ItemKind::Check => "check",
            ItemKind::Coupon => "coupon",
            ItemKind::GiftCertificate => "gift-certificate",
        }
    }

    /// The kind as people say it (`Gift certificate`, not `gift-certificate`): what reports,
    /// receipts and screens show.
    pub fn title(self) -> &'static str {
        match self {
            ItemKind::Postage => "Postage",
            ItemKind::Ticket => "Ticket",
            ItemKind::Check => "Check",
            ItemKind::Coupon => "Coupon",
            ItemKind::GiftCertificate => "Gift certificate",
        }
    }
}

impl fmt::Display for ItemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One value-bearing item with its kind-specific fields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Item {
    Postage(Postage),
    Ticket(Ticket),
    Check(Check),
    Coupon(Coupon),
    GiftCertificate(GiftCertificate),
}

/// Domain-separation prefix of the canonical item encoding.
pub const ITEM_DOMAIN: &[u8; 11] = b"FRANK-ITEM1";

fn put_text(out: &mut Vec<u8>, t: &Text) {
    // TEXT_BYTES_MAX (64) < 256, so the length fits one byte.
    out.push(t.0.len() as u8);
    out.extend_from_slice(t.0.as_bytes());
}

impl Item {
    pub fn kind(&self) -> ItemKind {
        match self {
            Item::Postage(_) => ItemKind::Postage,
            Item::Ticket(_) => ItemKind::Ticket,
            Item::Check(_) => ItemKind::Check,
            Item::Coupon(_) => ItemKind::Coupon,
            Item::GiftCertificate(_) => ItemKind::GiftCertificate,
        }
    }

    /// The face value fixed by the item itself (ticket price, check amount, coupon or gift
    /// value). Postage has none: its amount is the vendor's quote.
    pub fn face_value(&self) -> Option<Cents> {
        match self {
            Item::Postage(_) => None,
            Item::Ticket(t) => Some(t.price),
            Item::Check(c) => Some(c.amount),
            Item::Coupon(c) => Some(c.value),
            Item::GiftCertificate(g) => Some(g.value),
        }
    }

    /// Canonical encoding: `ITEM_DOMAIN`, kind byte, then the fields in declaration order.
    /// Text = u8 length + UTF-8; Cents = u64 BE; Day = u16 BE; numbers BE; absent optional
    /// text = length 0. See docs/INDICIUM.md.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128);
        out.extend_from_slice(ITEM_DOMAIN);
        out.push(self.kind().code());
        match self {
            Item::Postage(p) => {
                out.push(p.class.code());
                out.extend_from_slice(&p.weight.0.to_be_bytes());
                out.extend_from_slice(&super::layout::destination_bytes(Some(&p.destination)));
            }
            Item::Ticket(t) => {
                put_text(&mut out, &t.event);
                put_text(&mut out, &t.venue);
                put_text(&mut out, &t.seat);
                out.extend_from_slice(&t.event_day.0.to_be_bytes());
                out.extend_from_slice(&t.price.get().to_be_bytes());
            }
            Item::Check(c) => {
                put_text(&mut out, &c.payee);
                out.extend_from_slice(&c.amount.get().to_be_bytes());
                out.extend_from_slice(&c.number.0.to_be_bytes());
                match &c.memo {
                    Some(m) => put_text(&mut out, m),
                    None => out.push(0),
                }
            }
            Item::Coupon(c) => {
                put_text(&mut out, &c.offer);
                out.extend_from_slice(&c.value.get().to_be_bytes());
                out.extend_from_slice(&c.expiry.0.to_be_bytes());
            }
            Item::GiftCertificate(g) => {
                put_text(&mut out, &g.recipient);
                out.extend_from_slice(&g.value.get().to_be_bytes());
                out.extend_from_slice(&g.expiry.0.to_be_bytes());
            }
        }
        out
    }

    /// SHA-256 of [`Item::canonical_bytes`].
    pub fn digest(&self) -> [u8; 32] {
        Sha256::digest(self.canonical_bytes()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_round_trips() {
        let d = Day::parse("due", "2026-11-23").unwrap();
        assert_eq!(d.to_string(), "2026-11-23");
        assert_eq!(Day::from_days(d.days()), d);
        assert!(Day::parse("due", "2150-01-01").is_err());
        assert!(Day::parse("due", "2026-02-30").is_err());
        assert!(Day::parse("due", "26-1-1").is_err());
    }

    #[test]
    fn text_limits_name_the_field() {
        assert_eq!(Text::new("payee", "  ").unwrap_err().field, "payee");
        assert!(Text::new("memo", &"x".repeat(65)).is_err());
        assert!(Text::new("memo", "a\nb").is_err());
        assert_eq!(Text::new("memo", " rent ").unwrap().as_str(), "rent");
    }

    #[test]
    fn digest_changes_with_any_field() {
        let c = |memo: Option<&str>, amount: u64| {
            Item::Check(Check {
                payee: Text::new("payee", "Ada").unwrap(),
                amount: Cents::new(amount).unwrap(),
                number: CheckNumber::new(7).unwrap(),
                memo: memo.map(|m| Text::new("memo", m).unwrap()),
            })
        };
        let base = c(None, 100).digest();
        assert_ne!(base, c(Some("x"), 100).digest());
        assert_ne!(base, c(None, 101).digest());
        assert_eq!(base, c(None, 100).digest());
    }

    #[test]
    fn mail_class_names_round_trip() {
        for c in MailClass::ALL {
            assert_eq!(MailClass::parse(c.name()).unwrap(), c);
            assert_eq!(MailClass::from_code(c.code()), Some(c));
        }
        assert_eq!(
            MailClass::parse("carrier pigeon").unwrap_err().field,
            "class"
        );
    }
}
