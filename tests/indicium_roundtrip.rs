//! End to end for every item kind: build -> sign -> render -> PNG -> rxing decode -> verify.
//! Tampering and wrong keys fail with the check named.

mod indicium_support;

use frank::indicium::layout::{Indicium, LayoutError, Subject};
use frank::indicium::render::{native_payload, render_label};
use frank::indicium::signer::{BuildError, KeySigner, Signer, build_and_sign};
use frank::indicium::verify::{VendorKeys, VerifyError, payload_from_png, verify_payload};
use indicium_support::*;

fn keys_for(signer: &KeySigner) -> VendorKeys {
    let mut keys = VendorKeys::new();
    keys.add(&signer.public_key()).unwrap();
    keys
}

#[test]
fn every_kind_round_trips_through_a_png() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let keys = keys_for(&signer);
    for (i, (item, amount)) in every_kind().into_iter().enumerate() {
        let kind = item.kind();
        let facts = facts(item.clone(), amount, 40 + i as u64);
        let indicium = build_and_sign(&facts, &signer).unwrap();
        let png = render_label(&indicium, 203).unwrap().to_png().unwrap();
        let payload = payload_from_png(&png).unwrap();
        assert_eq!(payload, native_payload(&indicium), "{kind}");
        let verified = verify_payload(&payload, &keys).unwrap();
        let body = verified.indicium.body;
        assert_eq!(verified.indicium, indicium, "{kind}");
        assert_eq!(body.amount, amount);
        assert_eq!(body.piece_serial.get(), 40 + i as u64);
        assert_eq!(body.subject.kind(), kind);
        match body.subject {
            Subject::Postage { .. } => {}
            Subject::Item(d) => assert_eq!(*d.digest(), item.digest(), "{kind}"),
        }
    }
}

#[test]
fn higher_dpi_still_scans() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let (item, amount) = every_kind().remove(2);
    let indicium = build_and_sign(&facts(item, amount, 9), &signer).unwrap();
    let png = render_label(&indicium, 300).unwrap().to_png().unwrap();
    let payload = payload_from_png(&png).unwrap();
    verify_payload(&payload, &keys_for(&signer)).unwrap();
}

#[test]
fn every_flipped_bit_fails_with_a_named_check() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let keys = keys_for(&signer);
    for (item, amount) in every_kind() {
        let payload = build_and_sign(&facts(item, amount, 1), &signer)
            .unwrap()
            .to_bytes();
        for bit in 0..payload.len() * 8 {
            let mut bad = payload.clone();
            bad[bit / 8] ^= 0x80 >> (bit % 8);
            let err = verify_payload(&bad, &keys).unwrap_err();
            let check = err.check();
            assert!(
                [
                    "malformed layout",
                    "unknown version",
                    "unknown algorithm",
                    "unknown key",
                    "bad signature"
                ]
                .contains(&check),
                "bit {bit}: {err}"
            );
            assert!(err.to_string().starts_with(check), "{err}");
            // Which check fires is fixed by where the bit is.
            let want = match bit / 8 {
                0 => "unknown version",
                1 => "unknown algorithm",
                2..=5 => "unknown key",
                _ => "",
            };
            if !want.is_empty() {
                assert_eq!(check, want, "bit {bit}");
            }
        }
    }
}

#[test]
fn named_checks_for_specific_tampering() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let keys = keys_for(&signer);
    let (item, amount) = every_kind().remove(0);
    let payload = build_and_sign(&facts(item, amount, 5), &signer)
        .unwrap()
        .to_bytes();

    // Amount low bit (byte 53): still well formed, so the signature catches it.
    let mut bad = payload.clone();
    bad[53] ^= 1;
    assert!(matches!(
        verify_payload(&bad, &keys),
        Err(VerifyError::BadSignature(_))
    ));

    // Signature byte.
    let mut bad = payload.clone();
    bad[100] ^= 1;
    assert_eq!(
        verify_payload(&bad, &keys).unwrap_err().check(),
        "bad signature"
    );

    // Origin ZIP digit turned into a letter: malformed layout naming the field.
    let mut bad = payload.clone();
    bad[56] = b'A';
    let err = verify_payload(&bad, &keys).unwrap_err();
    assert_eq!(err.check(), "malformed layout");
    assert!(err.to_string().contains("origin_zip"), "{err}");

    // Truncated and extended.
    for bad in [
        &payload[..payload.len() - 1],
        &[payload.as_slice(), &[0]].concat()[..],
    ] {
        let err = verify_payload(bad, &keys).unwrap_err();
        assert!(
            matches!(err, VerifyError::Layout(LayoutError::Length { .. })),
            "{err}"
        );
    }
}

#[test]
fn a_wrong_key_fails() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let other = KeySigner::from_seed(&[9u8; 32]);
    let (item, amount) = every_kind().remove(1);
    let payload = build_and_sign(&facts(item, amount, 5), &signer)
        .unwrap()
        .to_bytes();
    // Only another vendor's key known: unknown key.
    let err = verify_payload(&payload, &keys_for(&other)).unwrap_err();
    assert_eq!(err.check(), "unknown key");
    assert!(err.to_string().contains(&signer.key_id().to_string()));
    // The other key signing but claiming our key id: bad signature.
    let mut forged = payload.clone();
    let body_len = payload.len() - 64;
    forged[body_len..].copy_from_slice(&other.sign(&payload[..body_len]).unwrap());
    assert_eq!(
        verify_payload(&forged, &keys_for(&signer))
            .unwrap_err()
            .check(),
        "bad signature"
    );
}

#[test]
fn facts_that_disagree_are_not_signed() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let (item, _) = every_kind().remove(1);
    let err = build_and_sign(&facts(item, cents(1), 5), &signer).unwrap_err();
    assert!(
        matches!(&err, BuildError::Facts(f) if f.field == "amount"),
        "{err}"
    );
    let (item, amount) = every_kind().remove(0);
    let mut f = facts(item, amount, 5);
    f.ascending_after = cents(10);
    let err = build_and_sign(&f, &signer).unwrap_err();
    assert!(
        matches!(&err, BuildError::Facts(f) if f.field == "ascending_after"),
        "{err}"
    );
}

#[test]
fn decode_is_the_inverse_of_encode() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    for (item, amount) in every_kind() {
        let ind = build_and_sign(&facts(item, amount, u64::MAX), &signer).unwrap();
        assert_eq!(Indicium::decode(&ind.to_bytes()).unwrap(), ind);
    }
}
