//! Unit tests of [`super`] (moved out of its file unchanged).

use super::*;

/// Fresh request ids carry the time in their first 48 bits, so later ids sort after
/// earlier ones, and differ even when made in the same millisecond.
#[test]
fn request_ids_from_time_sort_by_time_and_keep_80_random_bits() {
    let ms = 1_764_900_000_000u64;
    let first = RequestId::from_time_and_random(ms, u128::MAX);
    assert_eq!(first.0 >> 80, u128::from(ms));
    assert_eq!(first.0 & ((1u128 << 80) - 1), (1u128 << 80) - 1);
    let later = RequestId::from_time_and_random(ms + 1, 0);
    assert!(later.to_bytes() > first.to_bytes());
    let a = RequestId::from_time_and_random(ms, 1u128 << 48);
    let b = RequestId::from_time_and_random(ms, 2u128 << 48);
    assert_ne!(a, b);
}

#[test]
fn meter_serials_print_and_parse_back() {
    let m = MeterSerial::for_account(AccountId(7));
    assert_eq!(m.to_string(), "FRK10000007");
    assert_eq!(MeterSerial::parse("FRK10000007"), Some(m));
    assert_eq!(
        MeterSerial::parse("FRK10000007").unwrap().account(),
        AccountId(7)
    );
    for bad in [
        "",
        "FRK",
        "FRK1000000",
        "XYZ10000007",
        "FRK1000000A",
        "FRK10000000",
    ] {
        assert_eq!(MeterSerial::parse(bad), None, "{bad}");
    }
}
