//! Postal address newtypes and format validation.
//!
//! [`Zip5`], [`Zip4`], [`DeliveryPoint`] and [`StateCode`] can only hold valid values. The
//! [`AddressValidator`] trait is the seam where a real address service (CASS/USPS API) can be
//! plugged in later; the default [`FormatValidator`] checks format only (it does not know
//! whether the street exists).

pub use super::FieldError;
use std::fmt;

fn digits<const N: usize>(field: &'static str, text: &str) -> Result<[u8; N], FieldError> {
    let bytes = text.as_bytes();
    if bytes.len() != N || !bytes.iter().all(u8::is_ascii_digit) {
        return Err(FieldError::new(
            field,
            format!("must be exactly {N} digits"),
        ));
    }
    let mut out = [0u8; N];
    out.copy_from_slice(bytes);
    Ok(out)
}

macro_rules! digit_newtype {
    ($(#[$doc:meta])* $name:ident, $n:expr, $field:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; $n]);

        impl $name {
            /// Parses exactly the right number of ASCII digits.
            pub fn parse(text: &str) -> Result<Self, FieldError> {
                digits::<$n>($field, text).map($name)
            }

            /// The ASCII digits.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }

            /// Builds from ASCII digit bytes (as stored in an indicium).
            pub fn from_ascii(bytes: [u8; $n]) -> Result<Self, FieldError> {
                if bytes.iter().all(u8::is_ascii_digit) {
                    Ok($name(bytes))
                } else {
                    Err(FieldError::new($field, format!("must be {} ASCII digits", $n)))
                }
            }

            pub fn as_str(&self) -> &str {
                // The bytes are ASCII digits by construction, hence valid UTF-8.
                std::str::from_utf8(&self.0).unwrap_or("")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = FieldError;
            fn from_str(s: &str) -> Result<Self, FieldError> {
                Self::parse(s)
            }
        }
    };
}

digit_newtype!(
    /// A five-digit ZIP code, e.g. `94105`.
    Zip5, 5, "zip"
);
digit_newtype!(
    /// The four-digit ZIP+4 add-on, e.g. `1234`.
    Zip4, 4, "zip4"
);
digit_newtype!(
    /// The two-digit delivery point (usually the last two digits of the street number).
    DeliveryPoint, 2, "delivery_point"
);

impl Zip5 {
    /// The ZIP as a number 0..=99999.
    pub fn value(&self) -> u32 {
        self.0
            .iter()
            .fold(0, |acc, d| acc * 10 + u32::from(d - b'0'))
    }
}

/// Parses `12345` or `12345-6789` (also `123456789`).
pub fn parse_zip(field: &'static str, text: &str) -> Result<(Zip5, Option<Zip4>), FieldError> {
    let t = text.trim();
    let bad = || {
        FieldError::new(
            field,
            "must be a ZIP (12345) or ZIP+4 (12345-6789)".to_string(),
        )
    };
    let (five, four) = match (t.len(), t.split_once('-')) {
        (5, None) => (t, None),
        (9, None) => (&t[..5], Some(&t[5..])),
        (10, Some((a, b))) => (a, Some(b)),
        _ => return Err(bad()),
    };
    let zip5 = Zip5::parse(five).map_err(|_| bad())?;
    let zip4 = match four {
        Some(f) => Some(Zip4::parse(f).map_err(|_| bad())?),
        None => None,
    };
    Ok((zip5, zip4))
}

/// USPS two-letter state, territory and military codes.
const STATE_CODES: [&str; 62] = [
    "AL", "AK", "AZ", "AR", "CA", "CO", "CT", "DE", "FL", "GA", "HI", "ID", "IL", "IN", "IA", "KS",
    "KY", "LA", "ME", "MD", "MA", "MI", "MN", "MS", "MO", "MT", "NE", "NV", "NH", "NJ", "NM", "NY",
    "NC", "ND", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VT", "VA", "WA", "WV",
    "WI", "WY", "DC", "AS", "GU", "MP", "PR", "VI", "FM", "MH", "PW", "AA", "AE", "AP",
];

/// A USPS state code (50 states, DC, territories, freely associated states, military).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StateCode([u8; 2]);

impl StateCode {
    /// Accepts upper or lower case; stores upper case.
    pub fn parse(text: &str) -> Result<Self, FieldError> {
        let up = text.trim().to_ascii_uppercase();
        if STATE_CODES.contains(&up.as_str()) {
            let b = up.as_bytes();
            Ok(StateCode([b[0], b[1]]))
        } else {
            Err(FieldError::new(
                "state",
                format!("{text:?} is not a USPS state code (use two letters, e.g. CA)"),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        // Two ASCII letters by construction.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for StateCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for StateCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StateCode({})", self.as_str())
    }
}

/// Longest name / street line accepted, in characters (USPS label lines).
pub const LINE_CHARS_MAX: usize = 40;
/// Longest city name accepted, in characters.
pub const CITY_CHARS_MAX: usize = 28;

/// An address as typed at the counter, not yet validated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressInput {
    pub name: String,
    pub line1: String,
    pub line2: String,
    pub city: String,
    pub state: String,
    pub zip: String,
}

/// A format-valid address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    pub name: String,
    pub line1: String,
    /// Empty when absent.
    pub line2: String,
    pub city: String,
    pub state: StateCode,
    pub zip5: Zip5,
    pub zip4: Option<Zip4>,
}

/// All the fields that failed, one error per field, in form order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("address is not valid: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct AddressErrors(pub Vec<FieldError>);

impl AddressErrors {
    /// The error for `field`, if that field failed.
    pub fn field(&self, field: &str) -> Option<&FieldError> {
        self.0.iter().find(|e| e.field == field)
    }
}

/// Seam for address validation. The default checks format only; a real address service can
/// implement this later.
pub trait AddressValidator: Send + Sync {
    fn validate(&self, input: &AddressInput) -> Result<Address, AddressErrors>;
}

/// Checks the format of each field: required lines present, lengths, printable characters,
/// state code, ZIP / ZIP+4.
#[derive(Debug, Clone, Copy, Default)]
pub struct FormatValidator;

fn text_field(
    field: &'static str,
    value: &str,
    required: bool,
    chars_max: usize,
) -> Result<String, FieldError> {
    let v = value.trim();
    if v.is_empty() {
        return if required {
            Err(FieldError::new(field, "is required"))
        } else {
            Ok(String::new())
        };
    }
    let chars = v.chars().count();
    if chars > chars_max {
        return Err(FieldError::new(
            field,
            format!("is {chars} characters; at most {chars_max} fit on a label line"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(FieldError::new(field, "contains a control character"));
    }
    Ok(v.to_string())
}

impl AddressValidator for FormatValidator {
    fn validate(&self, input: &AddressInput) -> Result<Address, AddressErrors> {
        let mut errors = Vec::new();
        let mut take =
            |r: Result<String, FieldError>| r.map_err(|e| errors.push(e)).unwrap_or_default();
        let name = take(text_field("name", &input.name, true, LINE_CHARS_MAX));
        let line1 = take(text_field("line1", &input.line1, true, LINE_CHARS_MAX));
        let line2 = take(text_field("line2", &input.line2, false, LINE_CHARS_MAX));
        let city = take(text_field("city", &input.city, true, CITY_CHARS_MAX));
        let state = if input.state.trim().is_empty() {
            Err(FieldError::new("state", "is required"))
        } else {
            StateCode::parse(&input.state)
        };
        let zip = if input.zip.trim().is_empty() {
            Err(FieldError::new("zip", "is required"))
        } else {
            parse_zip("zip", &input.zip)
        };
        match (state, zip) {
            (Ok(state), Ok((zip5, zip4))) if errors.is_empty() => Ok(Address {
                name,
                line1,
                line2,
                city,
                state,
                zip5,
                zip4,
            }),
            (state, zip) => {
                errors.extend(state.err());
                errors.extend(zip.err());
                Err(AddressErrors(errors))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zips_parse_strictly() {
        for (text, ok) in [
            ("94105", true),
            ("94105-1234", true),
            ("941051234", true),
            ("9410", false),
            ("94105-123", false),
            ("9410a", false),
            ("94105 1234", false),
            ("", false),
        ] {
            assert_eq!(parse_zip("zip", text).is_ok(), ok, "{text:?}");
        }
        assert_eq!(Zip5::parse("00501").unwrap().value(), 501);
    }

    #[test]
    fn state_codes() {
        assert_eq!(StateCode::parse("ca").unwrap().as_str(), "CA");
        assert!(StateCode::parse("PR").is_ok());
        assert!(StateCode::parse("XX").is_err());
        assert!(StateCode::parse("CAL").is_err());
    }
}
