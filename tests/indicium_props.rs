//! Properties of the layout codec: decoding never panics on any bytes, and decoding inverts
//! encoding for any valid facts.

mod indicium_support;

use frank::indicium::layout::{Indicium, LicenseId, PieceSerial};
use frank::indicium::signer::{KeySigner, build_and_sign};
use frank::indicium::verify::{VendorKeys, verify_payload};
use frank::money::Cents;
use indicium_support::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = Indicium::decode(&bytes);
    }

    #[test]
    fn any_changed_byte_fails_verification(
        kind in 0usize..5,
        pos in 0usize..174,
        xor in 1u8..=255,
    ) {
        let signer = KeySigner::from_seed(&TEST_SEED);
        let mut keys = VendorKeys::new();
        keys.add(&frank::indicium::signer::Signer::public_key(&signer)).unwrap();
        let (item, amount) = every_kind().remove(kind);
        let mut payload = build_and_sign(&facts(item, amount, 3), &signer).unwrap().to_bytes();
        let pos = pos % payload.len();
        payload[pos] ^= xor;
        prop_assert!(verify_payload(&payload, &keys).is_err());
    }

    #[test]
    fn decode_inverts_encode(
        kind in 0usize..5,
        serial in 1u64..,
        license in any::<u32>(),
        asc_extra in 0u64..1_000_000_000,
        desc in 0u64..1_000_000_000_000,
    ) {
        let signer = KeySigner::from_seed(&TEST_SEED);
        let (item, amount) = every_kind().remove(kind);
        let mut f = facts(item, amount, 1);
        f.piece_serial = PieceSerial::new(serial).unwrap();
        f.license_id = LicenseId(license);
        f.ascending_after = Cents::new(amount.get() + asc_extra).unwrap();
        f.descending_after = Cents::new(desc).unwrap();
        let ind = build_and_sign(&f, &signer).unwrap();
        prop_assert_eq!(Indicium::decode(&ind.to_bytes()).unwrap(), ind);
    }
}
