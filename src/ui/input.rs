//! What people type, read the way they write it: card numbers with spaces or dashes, weights
//! with decimals or pounds, dates in the common forms; and mail classes in words. Pure
//! functions; every error is a short phrase that says what to type.

use crate::indicium::MailClass;
use crate::indicium::kinds::{Day, WEIGHT_OZ_MAX};

/// The digits of a card number typed with or without spaces and dashes (`4242 4242 4242
/// 4242`, `4242-4242-4242-4242`); an error for anything else.
pub fn card_digits(text: &str) -> Result<String, String> {
    let digits: String = text.chars().filter(|c| !matches!(c, ' ' | '-')).collect();
    if digits.chars().all(|c| c.is_ascii_digit()) {
        Ok(digits)
    } else {
        Err("use the digits on the card (spaces and dashes are fine)".into())
    }
}

/// Most decimal places read in a weight (more are refused, not silently dropped).
const WEIGHT_DECIMALS_MAX: usize = 6;
/// One ounce in the units [`weight_oz`] adds in (millionths of an ounce).
const MICRO_PER_OZ: u64 = 1_000_000;

/// `"3.5"` → 3_500_000 (millionths); `None` if it is not a plain decimal number.
fn micro_units(number: &str) -> Option<u64> {
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    if !whole
        .chars()
        .chain(frac.chars())
        .all(|c| c.is_ascii_digit())
        || frac.len() > WEIGHT_DECIMALS_MAX
        || whole.len() > 6
    {
        return None;
    }
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let frac_micro: u64 = if frac.is_empty() {
        0
    } else {
        // Pad to six places: "5" → 500000.
        format!("{frac:0<6}").parse().ok()?
    };
    whole.checked_mul(MICRO_PER_OZ)?.checked_add(frac_micro)
}

/// A weight as typed: ounces (`3`, `3.5`, `3.5 oz`), pounds (`1 lb`, `1.25 lb`) or both
/// (`1 lb 4 oz`). Returns the whole ounces the quote uses — rounded **up**, as postage is
/// charged by the started ounce — and whether it was rounded.
pub fn weight_oz(text: &str) -> Result<(u16, bool), String> {
    let t = text.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err("is required".into());
    }
    let bad = || {
        format!(
            "{:?} is not a weight; type ounces (3.5) or pounds and ounces (1 lb 4 oz)",
            text.trim()
        )
    };
    // Split "1lb4oz" into "1 lb 4 oz".
    let mut spaced = String::with_capacity(t.len() * 2);
    let mut prev_digit: Option<bool> = None;
    for c in t.chars() {
        let digit = c.is_ascii_digit() || c == '.';
        if c.is_whitespace() {
            prev_digit = None;
            spaced.push(' ');
            continue;
        }
        if prev_digit.is_some_and(|p| p != digit) {
            spaced.push(' ');
        }
        prev_digit = Some(digit);
        spaced.push(c);
    }
    let words: Vec<&str> = spaced.split_whitespace().collect();
    let mut total: u64 = 0;
    let mut i = 0;
    let mut parts = 0;
    // Bounded: each pass consumes at least one word.
    while i < words.len() {
        let amount = micro_units(words[i]).ok_or_else(bad)?;
        i += 1;
        let per_unit = match words.get(i).copied() {
            Some("oz" | "ounce" | "ounces") => {
                i += 1;
                1
            }
            Some("lb" | "lbs" | "pound" | "pounds") => {
                i += 1;
                16
            }
            // A bare number counts as ounces, only alone or last ("1 lb 4").
            None => 1,
            Some(_) => return Err(bad()),
        };
        total = amount
            .checked_mul(per_unit)
            .and_then(|a| total.checked_add(a))
            .ok_or_else(bad)?;
        parts += 1;
    }
    if parts == 0 || parts > 2 {
        return Err(bad());
    }
    let oz = total.div_ceil(MICRO_PER_OZ);
    if oz == 0 {
        return Err("must be more than 0 oz".into());
    }
    match u16::try_from(oz) {
        Ok(oz) if oz <= WEIGHT_OZ_MAX => Ok((oz, !total.is_multiple_of(MICRO_PER_OZ))),
        _ => Err(format!(
            "is over {WEIGHT_OZ_MAX} oz ({} lb), the most one label carries",
            WEIGHT_OZ_MAX / 16
        )),
    }
}

/// A date as typed: `2026-04-03` (ISO), `4/3/2026` or `04/03/2026` (US: month first, as on
/// US forms), or `3.4.2026` / `03.04.2026` (dots: day first, as where dots are written). The
/// screen shows the date it read in words ([`day_words`]), so a misread order is seen.
pub fn date(field: &'static str, text: &str) -> Result<Day, String> {
    let t = text.trim();
    let bad = || "use YYYY-MM-DD, MM/DD/YYYY or DD.MM.YYYY".to_string();
    let (y, m, d) = if t.contains('-') {
        let mut p = t.splitn(3, '-');
        let (Some(y), Some(m), Some(d)) = (p.next(), p.next(), p.next()) else {
            return Err(bad());
        };
        (y, m, d)
    } else if t.contains('/') {
        let mut p = t.splitn(3, '/');
        let (Some(m), Some(d), Some(y)) = (p.next(), p.next(), p.next()) else {
            return Err(bad());
        };
        (y, m, d)
    } else if t.contains('.') {
        let mut p = t.splitn(3, '.');
        let (Some(d), Some(m), Some(y)) = (p.next(), p.next(), p.next()) else {
            return Err(bad());
        };
        (y, m, d)
    } else {
        return Err(bad());
    };
    let num = |s: &str, max_len: usize| -> Option<u32> {
        (!s.is_empty() && s.len() <= max_len && s.chars().all(|c| c.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let (Some(y), Some(m), Some(d)) = (num(y, 4), num(m, 2), num(d, 2)) else {
        return Err(bad());
    };
    if y < 1000 {
        return Err("write the year in full, e.g. 2026".into());
    }
    let (Ok(m), Ok(d)) = (u8::try_from(m), u8::try_from(d)) else {
        return Err(bad());
    };
    Day::from_ymd(field, y as i32, m, d).map_err(|_| format!("{t} is not a date on the calendar"))
}

/// A day in words, with no order to misread: "Fri 3 Apr 2026".
pub fn day_words(day: Day) -> String {
    let d = day.date();
    let weekday = match d.weekday() {
        time::Weekday::Monday => "Mon",
        time::Weekday::Tuesday => "Tue",
        time::Weekday::Wednesday => "Wed",
        time::Weekday::Thursday => "Thu",
        time::Weekday::Friday => "Fri",
        time::Weekday::Saturday => "Sat",
        time::Weekday::Sunday => "Sun",
    };
    let month = match u8::from(d.month()) {
        1 => "Jan",
        2 => "Feb",
        3 => "Mar",
        4 => "Apr",
        5 => "May",
        6 => "Jun",
        7 => "Jul",
        8 => "Aug",
        9 => "Sep",
        10 => "Oct",
        11 => "Nov",
        _ => "Dec",
    };
    format!("{weekday} {} {month} {}", d.day(), d.year())
}

/// A mail class as the counter says it ("Priority Mail Express", not `priority-express`).
pub fn class_words(class: MailClass) -> &'static str {
    class.title()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_numbers_may_be_grouped_with_spaces_or_dashes() {
        assert_eq!(
            card_digits("4242 4242 4242 4242").unwrap(),
            "4242424242424242"
        );
        assert_eq!(
            card_digits("4242-4242-4242-4242").unwrap(),
            "4242424242424242"
        );
        assert!(card_digits("4242 4242 4242 424x").is_err());
    }

    #[test]
    fn weights_take_decimals_and_pounds_and_round_up() {
        assert_eq!(weight_oz("3"), Ok((3, false)));
        assert_eq!(weight_oz("3.5"), Ok((4, true)));
        assert_eq!(weight_oz("3.01 oz"), Ok((4, true)));
        assert_eq!(weight_oz(".5"), Ok((1, true)));
        assert_eq!(weight_oz("1 lb 4 oz"), Ok((20, false)));
        assert_eq!(weight_oz("1lb4oz"), Ok((20, false)));
        assert_eq!(weight_oz("1 lb 4"), Ok((20, false)));
        assert_eq!(weight_oz("1.5 lb"), Ok((24, false)));
        assert_eq!(weight_oz("2 pounds"), Ok((32, false)));
        for bad in [
            "",
            "abc",
            "3 kg",
            "1 lb 2 oz 3",
            "3..5",
            "4 oz 1 lb 2",
            "0",
            "0.0",
        ] {
            assert!(weight_oz(bad).is_err(), "{bad:?} accepted");
        }
        assert!(weight_oz("71 lb").unwrap_err().contains("over"));
    }

    #[test]
    fn dates_in_common_forms_read_the_same_day() {
        let iso = date("d", "2026-04-03").unwrap();
        assert_eq!(date("d", "04/03/2026").unwrap(), iso, "US: month first");
        assert_eq!(date("d", "4/3/2026").unwrap(), iso);
        assert_eq!(date("d", "03.04.2026").unwrap(), iso, "dots: day first");
        assert_eq!(date("d", " 3.4.2026 ").unwrap(), iso);
        assert_eq!(day_words(iso), "Fri 3 Apr 2026");
        assert!(date("d", "2026-02-30").is_err());
        assert!(date("d", "13/01/2026").is_err(), "no month 13");
        assert!(date("d", "4/3/26").unwrap_err().contains("year in full"));
        assert!(date("d", "tomorrow").is_err());
    }

    #[test]
    fn classes_read_as_words() {
        assert_eq!(
            class_words(MailClass::PriorityExpress),
            "Priority Mail Express"
        );
        for c in MailClass::ALL {
            assert!(!class_words(c).contains('-') || c == MailClass::FirstClass);
        }
    }
}
