//! Item faces (sans-I/O): what is printed on each kind of item, and the canonical text form of
//! the fields its kind digest covers (docs/INDICIUM.md §Printed faces).
//!
//! A non-postage indicium carries the SHA-256 of its item's canonical fields. The face prints
//! exactly those fields as `LABEL: value` lines ([`canonical_fields`]), so a person can read
//! them off the paper and `frank verify --fields FILE` ([`parse_fields`]) rebuilds the item,
//! recomputes the digest and compares it with the indicium's. Everything else on the face (the
//! title, the amount in words, the issue date, the meter and serial, "redeem at") is printed
//! without a colon label and is covered by the indicium's signature, not by the digest.
//!
//! Lines longer than the printer's columns wrap ([`wrap_field`]): continuation lines start with
//! two spaces; a line that ends in `\` continues the same word on the next line, otherwise the
//! next line continues after one space. [`parse_fields`] joins them back exactly.

use super::FieldError;
use super::kinds::{
    Check, CheckNumber, Coupon, Day, GiftCertificate, Item, ItemKind, Text, Ticket,
};
use super::layout::{Indicium, Subject};
use super::render::{module_dots, native_payload};
use crate::money::Cents;
use crate::printer::compiler::{Element, Indicium as Symbol, Label, TextLine, block_columns};
use crate::printer::profile::Profile;

/// Most lines a fields file may hold (a face has at most a few dozen).
pub const FIELDS_LINES_MAX: usize = 200;
/// Columns assumed when a profile names no font 0.
const COLUMNS_DEFAULT: usize = 32;
/// Indent that marks a continuation line.
const CONTINUATION: &str = "  ";

/// The labels of a kind's canonical fields, in printed order. Postage has none: its
/// indicium carries no kind digest (class and destination are in the indicium itself).
pub fn field_labels(kind: ItemKind) -> &'static [&'static str] {
    match kind {
        ItemKind::Postage => &[],
        ItemKind::Ticket => &["EVENT", "VENUE", "DATE", "SEAT", "PRICE"],
        ItemKind::Check => &["PAYEE", "AMOUNT", "NUMBER", "MEMO"],
        ItemKind::Coupon => &["OFFER", "VALUE", "EXPIRES"],
        ItemKind::GiftCertificate => &["RECIPIENT", "VALUE", "EXPIRES"],
        #[allow(unreachable_patterns)]
        _ => &[],
    }
}

/// The canonical text form: one `(LABEL, value)` per field the kind digest covers, in
/// [`field_labels`] order (an absent check memo is left out). Amounts are `$D.CC`, dates
/// `YYYY-MM-DD`, the check number in decimal, text as typed (trimmed).
pub fn canonical_fields(item: &Item) -> Vec<(&'static str, String)> {
    match item {
        Item::Postage(_) => Vec::new(),
        Item::Ticket(t) => vec![
            ("EVENT", t.event.to_string()),
            ("VENUE", t.venue.to_string()),
            ("DATE", t.event_day.to_string()),
            ("SEAT", t.seat.to_string()),
            ("PRICE", t.price.to_string()),
        ],
        Item::Check(c) => {
            let mut v = vec![
                ("PAYEE", c.payee.to_string()),
                ("AMOUNT", c.amount.to_string()),
                ("NUMBER", c.number.get().to_string()),
            ];
            if let Some(m) = &c.memo {
                v.push(("MEMO", m.to_string()));
            }
            v
        }
        Item::Coupon(c) => vec![
            ("OFFER", c.offer.to_string()),
            ("VALUE", c.value.to_string()),
            ("EXPIRES", c.expiry.to_string()),
        ],
        Item::GiftCertificate(g) => vec![
            ("RECIPIENT", g.recipient.to_string()),
            ("VALUE", g.value.to_string()),
            ("EXPIRES", g.expiry.to_string()),
        ],
        #[allow(unreachable_patterns)]
        _ => Vec::new(),
    }
}

/// The canonical text form as a file would hold it: `LABEL: value` lines.
pub fn canonical_text(item: &Item) -> String {
    canonical_fields(item)
        .into_iter()
        .map(|(l, v)| format!("{l}: {v}\n"))
        .collect()
}

/// Why a fields text does not make an item.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FieldsError {
    #[error("postage has no item fields to check: its indicium carries class and destination")]
    Postage,
    #[error("{0} is missing (expected lines: {1})")]
    Missing(&'static str, String),
    #[error("{0} appears twice")]
    Twice(&'static str),
    #[error("more than {FIELDS_LINES_MAX} lines")]
    TooLong,
    #[error("line {0} continues a line that is not a field")]
    StrayContinuation(usize),
    #[error(transparent)]
    Field(#[from] FieldError),
}

/// Reads a fields text (what a person read off the paper) for an item of `kind`: `LABEL: value`
/// lines (labels in any case), continuation lines joined as [`wrap_field`] printed them. Lines
/// whose label is not one of the kind's fields are skipped (the face's other lines); every
/// field must appear exactly once (a check's memo may be absent).
pub fn parse_fields(kind: ItemKind, text: &str) -> Result<Item, FieldsError> {
    let labels = field_labels(kind);
    if labels.is_empty() {
        return Err(FieldsError::Postage);
    }
    let mut found: Vec<(&'static str, String)> = Vec::new();
    // Whether the last line read was a field (so a continuation line belongs to it).
    let mut in_field = false;
    for (i, line) in text.lines().enumerate() {
        if i >= FIELDS_LINES_MAX {
            return Err(FieldsError::TooLong);
        }
        let line = line.trim_end_matches('\r');
        if let Some(cont) = line
            .strip_prefix(CONTINUATION)
            .filter(|c| !c.trim().is_empty())
        {
            if !in_field {
                // A wrapped line of something that is not a field (the amount in words).
                continue;
            }
            let Some((_, value)) = found.last_mut() else {
                return Err(FieldsError::StrayContinuation(i + 1));
            };
            match value.strip_suffix('\\') {
                Some(word) => *value = format!("{word}{cont}"),
                None => {
                    value.push(' ');
                    value.push_str(cont);
                }
            }
            continue;
        }
        in_field = false;
        let Some((label, value)) = line.split_once(':') else {
            continue;
        };
        let label = label.trim().to_ascii_uppercase();
        let Some(&l) = labels.iter().find(|l| **l == label) else {
            continue;
        };
        if found.iter().any(|(f, _)| *f == l) {
            return Err(FieldsError::Twice(l));
        }
        found.push((l, value.trim().to_string()));
        in_field = true;
    }
    let get = |l: &'static str| -> Result<String, FieldsError> {
        found
            .iter()
            .find(|(f, _)| *f == l)
            .map(|(_, v)| v.clone())
            .ok_or_else(|| FieldsError::Missing(l, labels.join(", ")))
    };
    let money = |l: &'static str| -> Result<Cents, FieldsError> {
        let v = get(l)?;
        Cents::parse_dollars(&v)
            .map_err(|_| FieldError::new(l, format!("{v:?} is not an amount like $12.50")).into())
    };
    let day = |l: &'static str| -> Result<Day, FieldsError> { Ok(Day::parse(l, &get(l)?)?) };
    let text = |l: &'static str| -> Result<Text, FieldsError> { Ok(Text::new(l, &get(l)?)?) };
    Ok(match kind {
        ItemKind::Ticket => Item::Ticket(Ticket {
            event: text("EVENT")?,
            venue: text("VENUE")?,
            seat: text("SEAT")?,
            event_day: day("DATE")?,
            price: money("PRICE")?,
        }),
        ItemKind::Check => {
            let n = get("NUMBER")?;
            let number = n
                .parse::<u32>()
                .map_err(|_| FieldError::new("NUMBER", format!("{n:?} is not a check number")))
                .and_then(CheckNumber::new)?;
            let memo = match found.iter().find(|(f, _)| *f == "MEMO") {
                Some((_, m)) => Some(Text::new("MEMO", m)?),
                None => None,
            };
            Item::Check(Check {
                payee: text("PAYEE")?,
                amount: money("AMOUNT")?,
                number,
                memo,
            })
        }
        ItemKind::Coupon => Item::Coupon(Coupon {
            offer: text("OFFER")?,
            value: money("VALUE")?,
            expiry: day("EXPIRES")?,
        }),
        ItemKind::GiftCertificate => Item::GiftCertificate(GiftCertificate {
            recipient: text("RECIPIENT")?,
            value: money("VALUE")?,
            expiry: day("EXPIRES")?,
        }),
        _ => return Err(FieldsError::Postage),
    })
}

/// `LABEL: value` in lines of at most `columns` characters: continuation lines start with two
/// spaces; a break at a single space drops that space (joined back with one), any other break
/// ends its line with `\` (joined back with nothing).
pub fn wrap_field(label: &str, value: &str, columns: usize) -> Vec<String> {
    wrap(&format!("{label}: {value}"), columns)
}

/// [`wrap_field`] for any text (continuation lines indented by two spaces).
pub fn wrap(text: &str, columns: usize) -> Vec<String> {
    let columns = columns.max(CONTINUATION.len() + 2);
    let mut out = Vec::new();
    let mut rest: Vec<char> = text.chars().collect();
    let mut first = true;
    loop {
        let prefix = if first { "" } else { CONTINUATION };
        let room = columns - prefix.chars().count();
        if rest.len() <= room {
            out.push(format!("{prefix}{}", rest.iter().collect::<String>()));
            return out;
        }
        // The last single space within the line that is not after a backslash.
        let at = (1..room.min(rest.len() - 1)).rev().find(|&i| {
            rest[i] == ' ' && rest[i - 1] != ' ' && rest[i - 1] != '\\' && rest[i + 1] != ' '
        });
        let (line, next): (String, Vec<char>) = match at {
            Some(i) => (rest[..i].iter().collect(), rest[i + 1..].to_vec()),
            None => (
                rest[..room - 1].iter().chain(['\\'].iter()).collect(),
                rest[room - 1..].to_vec(),
            ),
        };
        out.push(format!("{prefix}{line}"));
        rest = next;
        first = false;
    }
}

const ONES: [&str; 20] = [
    "ZERO",
    "ONE",
    "TWO",
    "THREE",
    "FOUR",
    "FIVE",
    "SIX",
    "SEVEN",
    "EIGHT",
    "NINE",
    "TEN",
    "ELEVEN",
    "TWELVE",
    "THIRTEEN",
    "FOURTEEN",
    "FIFTEEN",
    "SIXTEEN",
    "SEVENTEEN",
    "EIGHTEEN",
    "NINETEEN",
];
const TENS: [&str; 10] = [
    "", "", "TWENTY", "THIRTY", "FORTY", "FIFTY", "SIXTY", "SEVENTY", "EIGHTY", "NINETY",
];

fn below_thousand(n: u64) -> String {
    let mut parts = Vec::new();
    let (h, r) = (n / 100, n % 100);
    if h > 0 {
        parts.push(format!("{} HUNDRED", ONES[h as usize]));
    }
    if r >= 20 {
        let t = TENS[(r / 10) as usize];
        parts.push(match r % 10 {
            0 => t.to_string(),
            o => format!("{t}-{}", ONES[o as usize]),
        });
    } else if r > 0 || parts.is_empty() {
        parts.push(ONES[r as usize].to_string());
    }
    parts.join(" ")
}

/// The amount in words as on a check: `ONE HUNDRED TWENTY-THREE AND 45/100 DOLLARS`.
pub fn amount_words(amount: Cents) -> String {
    let c = amount.get();
    let (mut dollars, cents) = (c / 100, c % 100);
    if dollars == 0 {
        return format!("ZERO AND {cents:02}/100 DOLLARS");
    }
    let scales = [
        "",
        " THOUSAND",
        " MILLION",
        " BILLION",
        " TRILLION",
        " QUADRILLION",
    ];
    let mut groups = Vec::new();
    let mut i = 0;
    while dollars > 0 {
        let g = dollars % 1000;
        if g > 0 {
            groups.push(format!(
                "{}{}",
                below_thousand(g),
                scales[i.min(scales.len() - 1)]
            ));
        }
        dollars /= 1000;
        i += 1;
    }
    groups.reverse();
    format!("{} AND {cents:02}/100 DOLLARS", groups.join(" "))
}

/// The sender and recipient blocks of a postage face, one printed line each (wrapped to the
/// printer's columns when longer).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Addresses<'a> {
    pub from: &'a [String],
    pub to: &'a [String],
}

fn columns(profile: &Profile) -> usize {
    profile
        .fonts
        .get(&0)
        .map_or(COLUMNS_DEFAULT, |f| f.columns as usize)
}

fn plain_lines(out: &mut Vec<Element>, lines: &[String]) {
    out.extend(lines.iter().map(|l| Element::Text(TextLine::plain(l))));
}

fn weight_words(oz: u16) -> String {
    match (oz / 16, oz % 16) {
        (0, o) => format!("{o} OZ"),
        (lb, 0) => format!("{lb} LB"),
        (lb, o) => format!("{lb} LB {o} OZ"),
    }
}

/// The printed face of an issued item, top of the label first (the counter prints it rotated
/// 180°, so the top prints last).
///
/// - **Postage**: the top band ([`Element::IndiciumBlock`]): the indicium in the top right with
///   its quiet zone and, beside it, the block — the "US POSTAGE" legend, amount, date, origin
///   ZIP, class, weight, the piece's number (meter and serial) — each line wrapped to
///   [`block_columns`]; then the FROM and TO blocks.
/// - **Other kinds**: the kind's title, the indicium at the right, the canonical field lines
///   (the check's amount also in words), and the issue line, meter and serial; a gift
///   certificate says where to redeem it.
///
/// `item` is the item the indicium was signed for (postage: its weight is printed from it).
pub fn face(
    indicium: &Indicium,
    item: Option<&Item>,
    addresses: &Addresses<'_>,
    profile: &Profile,
) -> Label {
    let b = &indicium.body;
    let cols = columns(profile);
    let symbol = Symbol::DataMatrix {
        data: native_payload(indicium),
        module_px: module_dots(profile.dpi).clamp(1, 16) as u8,
    };
    let mut e = Vec::new();
    match &b.subject {
        Subject::Postage { class, .. } => {
            let block_cols = block_columns(profile, &symbol);
            let mut texts = vec![
                b.amount.to_string(),
                b.date.to_string(),
                format!("FROM ZIP {}", b.origin),
                class.title().to_ascii_uppercase(),
            ];
            if let Some(Item::Postage(p)) = item {
                texts.push(weight_words(p.weight.get()));
            }
            texts.push(b.number().to_string());
            let mut lines = vec![TextLine {
                bold: true,
                ..TextLine::plain("US POSTAGE")
            }];
            lines.extend(
                texts
                    .iter()
                    .flat_map(|t| wrap(t, block_cols))
                    .map(|l| TextLine::plain(&l)),
            );
            e.push(Element::IndiciumBlock { symbol, lines });
            for (heading, lines) in [("FROM:", addresses.from), ("TO:", addresses.to)] {
                if lines.is_empty() {
                    continue;
                }
                e.push(Element::Feed(1));
                e.push(Element::Address {
                    heading: Some(heading.into()),
                    lines: lines.iter().flat_map(|l| wrap(l, cols)).collect(),
                });
            }
        }
        Subject::Item(d) => {
            let title = match d.kind() {
                ItemKind::Ticket => "TICKET",
                ItemKind::Check => "CHECK",
                ItemKind::Coupon => "COUPON",
                ItemKind::GiftCertificate => "GIFT CERTIFICATE",
                _ => "ITEM",
            };
            e.push(Element::Text(TextLine {
                bold: true,
                ..TextLine::plain(title)
            }));
            e.push(Element::Indicium(symbol));
            if let Some(item) = item.filter(|i| i.kind() == d.kind()) {
                for (label, value) in canonical_fields(item) {
                    plain_lines(&mut e, &wrap_field(label, &value, cols));
                    if let (Item::Check(c), "AMOUNT") = (item, label) {
                        plain_lines(&mut e, &wrap(&amount_words(c.amount), cols));
                    }
                }
            }
            if d.kind() == ItemKind::GiftCertificate {
                plain_lines(
                    &mut e,
                    &wrap(
                        &format!("REDEEM AT THE ISSUING OFFICE, ZIP {}", b.origin),
                        cols,
                    ),
                );
            }
            plain_lines(
                &mut e,
                &wrap(&format!("ISSUED {} AT ZIP {}", b.date, b.origin), cols),
            );
            e.push(Element::Text(TextLine::plain(&b.number().to_string())));
        }
    }
    Label {
        elements: e,
        cut: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Text {
        Text::new("x", s).unwrap()
    }

    #[test]
    fn words() {
        let w = |c| amount_words(Cents::new(c).unwrap());
        assert_eq!(w(12345), "ONE HUNDRED TWENTY-THREE AND 45/100 DOLLARS");
        assert_eq!(w(5), "ZERO AND 05/100 DOLLARS");
        assert_eq!(w(100_000_000), "ONE MILLION AND 00/100 DOLLARS");
        assert_eq!(
            w(1_011_900),
            "TEN THOUSAND ONE HUNDRED NINETEEN AND 00/100 DOLLARS"
        );
        assert_eq!(
            w(crate::money::CENTS_MAX),
            "TEN TRILLION AND 00/100 DOLLARS"
        );
    }

    #[test]
    fn wrapped_fields_read_back_exactly() {
        let values = [
            "Spring Gala at the Old Town Hall with the City Orchestra",
            "Abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz0123456789",
            "ends in a backslash\\ and then   three spaces x",
            "José Müller",
        ];
        for v in values {
            for cols in [12, 20, 32, 48] {
                let lines = wrap_field("EVENT", v, cols);
                assert!(lines.iter().all(|l| l.chars().count() <= cols), "{lines:?}");
                let text = format!(
                    "TICKET\n{}\nVENUE: Hall\nDATE: 2027-03-01\nSEAT: A1\nPRICE: $1.00\n",
                    lines.join("\n")
                );
                let Item::Ticket(ticket) = parse_fields(ItemKind::Ticket, &text).unwrap() else {
                    panic!()
                };
                assert_eq!(ticket.event.as_str(), v, "{cols}: {lines:?}");
            }
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_text_form() {
        let day = Day::parse("d", "2027-03-01").unwrap();
        let c = |n| Cents::new(n).unwrap();
        let items = [
            Item::Ticket(Ticket {
                event: t("Gala"),
                venue: t("Hall"),
                seat: t("A 12"),
                event_day: day,
                price: c(1250),
            }),
            Item::Check(Check {
                payee: t("Ada Lovelace"),
                amount: c(12345),
                number: CheckNumber::new(1001).unwrap(),
                memo: Some(t("rent")),
            }),
            Item::Check(Check {
                payee: t("Ada"),
                amount: c(1),
                number: CheckNumber::new(7).unwrap(),
                memo: None,
            }),
            Item::Coupon(Coupon {
                offer: t("2 for 1"),
                value: c(500),
                expiry: day,
            }),
            Item::GiftCertificate(GiftCertificate {
                recipient: t("Zoë Ñandú"),
                value: c(2500),
                expiry: day,
            }),
        ];
        for item in items {
            let back = parse_fields(item.kind(), &canonical_text(&item)).unwrap();
            assert_eq!(back.digest(), item.digest(), "{item:?}");
            // Labels in any case, other lines skipped.
            let loose = format!("SERIAL 4\n{}", canonical_text(&item).to_lowercase());
            if let Ok(b) = parse_fields(item.kind(), &loose) {
                assert_eq!(b.kind(), item.kind());
            }
        }
        assert!(matches!(
            parse_fields(ItemKind::Coupon, "OFFER: x\nVALUE: $1.00\n"),
            Err(FieldsError::Missing("EXPIRES", _))
        ));
        assert!(matches!(
            parse_fields(ItemKind::Coupon, "OFFER: x\nOFFER: y\n"),
            Err(FieldsError::Twice("OFFER"))
        ));
        assert!(matches!(
            parse_fields(ItemKind::Postage, ""),
            Err(FieldsError::Postage)
        ));
    }
}
