use super::*;

fn key(seed: u8) -> SigningKey {
    SigningKey::from_bytes(&[seed; 32])
}

const RATES: &str = include_str!("../../rates/sample-rates.toml");

fn rates_manifest(version: &str) -> Manifest {
    Manifest {
        name: "rates".into(),
        kind: "rates".into(),
        version: version.into(),
        min_counter_version: "0.1".into(),
        target: None,
        created_ms: 1_700_000_000_000,
        files: vec![entry_for(RATES_FILE, RATES.as_bytes())],
    }
}

#[test]
fn versions_compare_part_by_part() {
    let v = |t: &str| Version::parse(t).unwrap();
    assert!(v("1.2") < v("1.10"));
    assert_eq!(v("1.2"), v("1.2.0"));
    assert!(v("2") > v("1.99.99"));
    assert_eq!(v("0.1.0").to_string(), "0.1.0");
    for bad in ["", "1.", ".1", "1.2.3.4.5", "a", "1.-2", "+1", "1234567890"] {
        assert!(Version::parse(bad).is_none(), "{bad:?}");
    }
}

#[test]
fn a_signed_manifest_verifies_with_its_key_only() {
    let k = key(7);
    let v = sign(&rates_manifest("2"), &k).unwrap();
    let again = verify(&v.signed, &k.verifying_key()).unwrap();
    assert_eq!(again.kind, Kind::Rates);
    assert_eq!(again.version, Version::parse("2").unwrap());
    assert_eq!(
        verify(&v.signed, &key(8).verifying_key()),
        Err(BundleError::BadSignature)
    );
}

#[test]
fn one_flipped_byte_anywhere_in_the_signed_manifest_is_refused() {
    let k = key(7);
    let v = sign(&rates_manifest("2"), &k).unwrap();
    for i in 0..v.signed.manifest.len() {
        let mut t = v.signed.clone();
        t.manifest[i] ^= 0x01;
        assert_eq!(
            verify(&t, &k.verifying_key()),
            Err(BundleError::BadSignature),
            "byte {i}"
        );
    }
    for i in 0..64 {
        let mut t = v.signed.clone();
        t.signature[i] ^= 0x80;
        assert_eq!(
            verify(&t, &k.verifying_key()),
            Err(BundleError::BadSignature),
            "sig byte {i}"
        );
    }
}

#[test]
fn a_flipped_file_byte_is_refused_naming_the_file() {
    let entry = entry_for(RATES_FILE, RATES.as_bytes());
    let mut bytes = RATES.as_bytes().to_vec();
    assert_eq!(check_file(&entry, &bytes), Ok(()));
    bytes[10] ^= 0x01;
    let e = check_file(&entry, &bytes).unwrap_err();
    assert_eq!(e.code(), "wrong_hash");
    assert!(e.to_string().contains("rates.toml"), "{e}");
    bytes.push(0);
    assert_eq!(
        check_file(&entry, &bytes).unwrap_err().code(),
        "wrong_length"
    );
}

#[test]
fn a_file_checked_chunk_by_chunk_is_judged_as_the_whole() {
    let whole: Vec<u8> = (0..200_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
    let entry = entry_for("frank", &whole);
    let in_chunks = |bytes: &[u8], chunk: usize| {
        let mut c = FileCheck::new(&entry);
        for part in bytes.chunks(chunk) {
            c.update(part);
        }
        c.finish()
    };
    for chunk in [1, 1000, 65_536, whole.len()] {
        assert_eq!(in_chunks(&whole, chunk), Ok(()), "chunks of {chunk}");
    }
    let mut flipped = whole.clone();
    flipped[150_000] ^= 0x80;
    assert_eq!(
        in_chunks(&flipped, 65_536).unwrap_err().code(),
        "wrong_hash"
    );
    assert_eq!(
        in_chunks(&whole[..whole.len() - 1], 65_536)
            .unwrap_err()
            .code(),
        "wrong_length"
    );
    let mut longer = whole.clone();
    longer.push(0);
    assert_eq!(
        in_chunks(&longer, 65_536).unwrap_err().code(),
        "wrong_length"
    );
}

#[test]
fn an_older_or_equal_manifest_is_not_taken() {
    let k = key(7);
    let counter = Version::parse("0.1.0").unwrap();
    let v2 = sign(&rates_manifest("2"), &k).unwrap();
    let have3 = Version::parse("3").unwrap();
    let have2 = Version::parse("2").unwrap();
    let have1 = Version::parse("1").unwrap();
    match decide(&v2, Some(&have3), &counter, "x86_64-linux") {
        Offer::Refuse(e) => {
            assert_eq!(e.code(), "not_newer");
            assert!(e.to_string().contains("replayed"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(decide(&v2, Some(&have2), &counter, "t"), Offer::Have);
    assert_eq!(decide(&v2, Some(&have1), &counter, "t"), Offer::Take);
    assert_eq!(decide(&v2, None, &counter, "t"), Offer::Take);
}

#[test]
fn a_bundle_for_a_newer_counter_or_another_target_is_not_taken() {
    let k = key(7);
    let mut m = rates_manifest("2");
    m.min_counter_version = "9.0".into();
    let v = sign(&m, &k).unwrap();
    let counter = Version::parse("0.1.0").unwrap();
    assert!(matches!(
        decide(&v, None, &counter, "t"),
        Offer::Refuse(BundleError::NeedsNewerCounter { .. })
    ));
    let release = Manifest {
        name: "frank".into(),
        kind: "release".into(),
        version: "0.2.0".into(),
        min_counter_version: "0.1".into(),
        target: Some("aarch64-linux".into()),
        created_ms: 0,
        files: vec![entry_for(RELEASE_FILE, b"#!/bin/sh\n")],
    };
    let r = sign(&release, &k).unwrap();
    assert_eq!(
        decide(&r, None, &counter, "x86_64-linux"),
        Offer::OtherTarget
    );
    assert_eq!(decide(&r, None, &counter, "aarch64-linux"), Offer::Take);
}

#[test]
fn malformed_manifests_are_refused_before_signing() {
    let k = key(7);
    type Change = Box<dyn Fn(&mut Manifest)>;
    let cases: Vec<(Change, &str)> = vec![
        (Box::new(|m| m.name = "../x".into()), "name"),
        (Box::new(|m| m.name = "Rates".into()), "name"),
        (Box::new(|m| m.kind = "binary".into()), "kind"),
        (Box::new(|m| m.version = "1.x".into()), "version"),
        (Box::new(|m| m.files.clear()), "files"),
        (Box::new(|m| m.files[0].name = "other.toml".into()), "rates"),
        (Box::new(|m| m.files[0].sha256.truncate(31)), "sha256"),
        (
            Box::new(|m| m.target = Some("x86_64-linux".into())),
            "target",
        ),
        (
            Box::new(|m| m.files[0].bytes = BUNDLE_BYTES_MAX + 1),
            "limit",
        ),
    ];
    for (change, word) in cases {
        let mut m = rates_manifest("2");
        change(&mut m);
        let e = sign(&m, &k).unwrap_err();
        assert_eq!(e.code(), "malformed", "{word}: {e}");
        assert!(e.to_string().contains(word), "{word}: {e}");
    }
}

#[test]
fn contents_are_checked_by_kind() {
    assert_eq!(
        check_content(Kind::Rates, &[(RATES_FILE, RATES.as_bytes())]),
        Ok(())
    );
    let e = check_content(Kind::Rates, &[(RATES_FILE, b"label = 3")]).unwrap_err();
    assert_eq!(e.code(), "bad_content");
    assert_eq!(
        check_content(
            Kind::Theme,
            &[(THEME_FILE, b"title = \"bold white on blue\"\n")]
        ),
        Ok(())
    );
    assert!(check_content(Kind::Theme, &[(THEME_FILE, b"nonsense = \"bold\"\n")]).is_err());
    let profile = b"inherits = \"generic-80mm\"\nname = \"Shop printer\"\n";
    assert_eq!(
        check_content(Kind::Profiles, &[("shop-80.toml", profile)]),
        Ok(())
    );
    assert!(
        check_content(
            Kind::Profiles,
            &[("shop-80.toml", b"inherits = \"nope\"\n")]
        )
        .is_err()
    );
    assert!(check_content(Kind::Profiles, &[("a.b.toml", profile)]).is_err());
}
