//! Decode errors that name the field, never the value (**core**).
//!
//! serde's messages quote what was sent (`invalid type: integer `4111111111111111`, expected a
//! string`): a password, card number or CVC sent with the wrong CBOR type would be echoed back
//! and land in the vendor's log. These functions rebuild every message from serde's fixed
//! wording and Frank's own field names only: which field, what it must be, and the *kind* of
//! value that came (`an integer`), never the value, an unknown key or an unknown variant.

use ciborium::Value;
use serde::de::DeserializeOwned;

/// Most map entries examined to find the field a decode error is about (the entries before
/// a struct's first error are its own fields, so a few suffice).
const FIELDS_EXAMINED_MAX: usize = 32;

/// Decodes `value` as `T`; the error says which field of `what` is wrong and how.
pub(crate) fn value_as<T: DeserializeOwned>(value: &Value, what: &str) -> Result<T, String> {
    value.deserialized().map_err(|e| {
        let message = serde_text(&e);
        let field = culprit::<T>(value, message);
        let at = match field {
            Some(f) => format!("{what}.{f}"),
            None => what.to_string(),
        };
        describe(what, &at, message)
    })
}

/// A CBOR parse failure in plain words (no Rust debug text, no bytes echoed).
pub(crate) fn cbor_error(e: &ciborium::de::Error<std::io::Error>) -> String {
    use ciborium::de::Error;
    match e {
        Error::Io(_) => "ends before its CBOR item does".into(),
        Error::Syntax(at) => format!("is not valid CBOR (at byte {at})"),
        Error::Semantic(Some(at), _) => format!("is not valid CBOR (at byte {at})"),
        Error::Semantic(None, _) => "is not valid CBOR".into(),
        Error::RecursionLimitExceeded => "nests deeper than the decoder allows".into(),
    }
}

fn serde_text(e: &ciborium::value::Error) -> &str {
    match e {
        ciborium::value::Error::Custom(text) => text,
    }
}

/// The field of `value` (a map) whose entry makes decoding fail: decodes growing prefixes of
/// the map until one fails for another reason than a field still missing. Named only when it
/// is a field `T` defines (an unknown key is client text).
fn culprit<T: DeserializeOwned>(value: &Value, message: &str) -> Option<String> {
    let Value::Map(entries) = value else {
        return None;
    };
    if message.starts_with("unknown field") {
        return None;
    }
    let mut prefix = Value::Map(Vec::new());
    for (key, v) in entries.iter().take(FIELDS_EXAMINED_MAX) {
        if let Value::Map(p) = &mut prefix {
            p.push((key.clone(), v.clone()));
        }
        match prefix.deserialized::<T>() {
            Err(e) if !serde_text(&e).starts_with("missing field") => {
                if serde_text(&e).starts_with("unknown field") {
                    return None;
                }
                return match key {
                    Value::Text(k) if is_field_name(k) => Some(k.clone()),
                    _ => None,
                };
            }
            _ => {}
        }
    }
    None
}

/// Field names Frank defines: short snake_case identifiers.
fn is_field_name(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 32
        && k.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The name between the first pair of backticks, when it is a field name.
fn quoted_name(text: &str) -> Option<&str> {
    let rest = text.split_once('`')?.1;
    let name = rest.split_once('`')?.0;
    is_field_name(name).then_some(name)
}

/// serde's own list after the *last* ", expected " (what follows it is Frank's; what comes
/// before may be client text).
fn expected_tail(text: &str) -> Option<&str> {
    text.rsplit_once(", expected ").map(|(_, tail)| tail)
}

/// The kind of a serde `Unexpected` (its fixed first words), never its value.
fn kind_of(unexpected: &str) -> &'static str {
    const KINDS: &[(&str, &str)] = &[
        ("boolean", "a boolean"),
        ("integer", "an integer"),
        ("floating point", "a floating-point number"),
        ("character", "a character"),
        ("string", "a text string"),
        ("byte array", "a byte string"),
        ("unit variant", "an enum variant"),
        ("unit value", "a unit value"),
        ("Option value", "null"),
        ("newtype struct", "a newtype struct"),
        ("newtype variant", "an enum variant"),
        ("tuple variant", "an enum variant"),
        ("struct variant", "an enum variant"),
        ("sequence", "an array"),
        ("map", "a map"),
        ("enum", "an enum"),
        ("null", "null"),
        ("tag", "a tagged value"),
    ];
    KINDS
        .iter()
        .find(|(prefix, _)| unexpected.starts_with(prefix))
        .map(|(_, kind)| *kind)
        .unwrap_or("another kind of value")
}

/// What serde expected, in plain words where it speaks Rust.
fn plain_expected(expected: &str) -> String {
    match expected {
        e if e.starts_with("struct ") => "a map".into(),
        "u8" | "u16" | "u32" | "u64" => "an unsigned integer".into(),
        "i8" | "i16" | "i32" | "i64" | "(big)int" => "an integer".into(),
        "bytes" | "byte array" | "a byte array" => "a byte string".into(),
        "str" | "string" | "a string" => "a text string".into(),
        "bool" | "a boolean" => "a boolean".into(),
        "float" | "f32" | "f64" => "a floating-point number".into(),
        "array" => "an array".into(),
        "map" => "a map".into(),
        e => e.to_string(),
    }
}

fn describe(what: &str, at: &str, message: &str) -> String {
    if let Some(rest) = message.strip_prefix("missing field ") {
        return match quoted_name(rest) {
            Some(name) => format!("{what}.{name} is missing"),
            None => format!("{what} lacks a field it needs"),
        };
    }
    if let Some(rest) = message.strip_prefix("duplicate field ") {
        return match quoted_name(rest) {
            Some(name) => format!("{what}.{name} appears twice"),
            None => format!("{what} has a field twice"),
        };
    }
    if message.starts_with("unknown field ") {
        return match expected_tail(message) {
            Some(fields) => format!("{at} has a field it does not define; the fields are {fields}"),
            None => format!("{at} has a field it does not define; it takes no fields"),
        };
    }
    if message.starts_with("unknown variant ") {
        return match expected_tail(message) {
            Some(variants) => format!("{at} is not one of {variants}"),
            None => format!("{at} names a variant that does not exist"),
        };
    }
    for (prefix, verb) in [
        ("invalid type: ", "must be"),
        ("invalid value: ", "is not an allowed value; it must be"),
    ] {
        if let Some(rest) = message.strip_prefix(prefix) {
            return match rest.rsplit_once(", expected ") {
                Some((unexpected, expected)) => {
                    let (want, got) = (plain_expected(expected), kind_of(unexpected));
                    if got == "an integer" && want.ends_with("integer") {
                        // An integer that does not fit (u8, u16, u64, or negative).
                        format!("{at} is out of range for {expected}")
                    } else {
                        format!("{at} {verb} {want}, got {got}")
                    }
                }
                None => format!("{at} has the wrong type"),
            };
        }
    }
    if message.starts_with("invalid length ") {
        return match expected_tail(message) {
            Some(expected) => format!("{at} has the wrong length; expected {expected}"),
            None => format!("{at} has the wrong length"),
        };
    }
    format!("{at} is not valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Secretive {
        clerk: String,
        password: String,
        n: u64,
        #[serde(default)]
        method: Option<Method>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case", deny_unknown_fields)]
    #[allow(dead_code)]
    enum Method {
        Card { number: String, cvc: String },
    }

    fn map(entries: Vec<(&str, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Text(k.into()), v))
                .collect(),
        )
    }

    fn text(s: &str) -> Value {
        Value::Text(s.into())
    }

    const SECRET: u64 = 4_111_111_111_111_111;

    /// Each case: the body, what the message must contain; no case may echo a value.
    #[test]
    fn errors_name_the_field_not_the_value() {
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "integer password",
                map(vec![
                    ("clerk", text("alice")),
                    ("password", Value::Integer(SECRET.into())),
                    ("n", Value::Integer(1.into())),
                ]),
                "login.password must be a text string, got an integer",
            ),
            (
                "text number",
                map(vec![
                    ("clerk", text("alice")),
                    ("password", text("pw")),
                    ("n", text("hunter2-secret")),
                ]),
                "login.n must be an integer, got a text string",
            ),
            (
                "card number as integer, nested",
                map(vec![
                    ("clerk", text("alice")),
                    ("password", text("pw")),
                    ("n", Value::Integer(1.into())),
                    (
                        "method",
                        map(vec![(
                            "card",
                            map(vec![
                                ("number", Value::Integer(SECRET.into())),
                                ("cvc", text("123")),
                            ]),
                        )]),
                    ),
                ]),
                "login.method must be a text string, got an integer",
            ),
            (
                "unknown variant",
                map(vec![
                    ("clerk", text("alice")),
                    ("password", text("pw")),
                    ("n", Value::Integer(1.into())),
                    ("method", map(vec![("hunter2-secret", text("x"))])),
                ]),
                "login.method is not one of `card`",
            ),
            (
                "unknown field",
                map(vec![
                    ("clerk", text("alice")),
                    ("hunter2-secret`, expected `x", Value::Integer(1.into())),
                ]),
                "login has a field it does not define; the fields are",
            ),
            (
                "missing field",
                map(vec![("clerk", text("alice"))]),
                "login.password is missing",
            ),
            (
                "not a map",
                Value::Integer(SECRET.into()),
                "login must be a map, got an integer",
            ),
            (
                "negative",
                map(vec![
                    ("clerk", text("alice")),
                    ("password", text("pw")),
                    ("n", Value::Integer((-4_111_111_111_111_111i64).into())),
                ]),
                "login.n is out of range for u64",
            ),
        ];
        for (name, body, want) in cases {
            let err = value_as::<Secretive>(&body, "login").unwrap_err();
            assert!(err.contains(want), "{name}: {err}");
            for secret in ["4111111111111111", "hunter2", "secret"] {
                assert!(!err.contains(secret), "{name} echoes a value: {err}");
            }
        }
    }

    #[test]
    fn cbor_errors_are_plain_words() {
        let e = ciborium::from_reader::<Value, _>(&[0xa1u8][..]).unwrap_err();
        assert_eq!(cbor_error(&e), "ends before its CBOR item does");
        let e = ciborium::from_reader::<Value, _>(&[0xffu8, 0][..]).unwrap_err();
        assert!(
            cbor_error(&e).starts_with("is not valid CBOR"),
            "{}",
            cbor_error(&e)
        );
    }

    #[test]
    fn kinds_and_names() {
        assert_eq!(kind_of("string \"hunter2\""), "a text string");
        assert_eq!(kind_of("integer `5`"), "an integer");
        assert_eq!(kind_of("whatever"), "another kind of value");
        assert_eq!(quoted_name("`password`"), Some("password"));
        assert_eq!(quoted_name("`hunter 2`"), None);
    }
}
