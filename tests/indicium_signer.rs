//! FileSigner: PKCS#8 PEM key file with mode 0600, refuses open files, never shows the key.

mod indicium_support;

use frank::indicium::signer::{FileSigner, KeyFileError, KeySigner, Signer, build_and_sign};
use frank::indicium::verify::{VendorKeys, verify_payload};
use indicium_support::*;
use std::os::unix::fs::PermissionsExt;

#[test]
fn creates_a_0600_key_and_loads_it_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vendor.key");
    let created = FileSigner::create(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let pem = std::fs::read_to_string(&path).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");

    let loaded = FileSigner::load(&path).unwrap();
    assert_eq!(loaded.public_key(), created.public_key());
    assert_eq!(loaded.key_id(), created.key_id());
    assert_eq!(loaded.fingerprint(), hex::encode(created.public_key()));

    // Never overwrites; load_or_create loads.
    assert!(matches!(
        FileSigner::create(&path),
        Err(KeyFileError::Io { .. })
    ));
    assert_eq!(
        FileSigner::load_or_create(&path).unwrap().public_key(),
        created.public_key()
    );

    // Signs indicia that verify under its fingerprint.
    let (item, amount) = every_kind().remove(0);
    let ind = build_and_sign(&facts(item, amount, 1), &loaded).unwrap();
    let mut keys = VendorKeys::new();
    keys.add_text(&loaded.fingerprint()).unwrap();
    verify_payload(&ind.to_bytes(), &keys).unwrap();
}

#[test]
fn refuses_a_key_file_group_or_other_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vendor.key");
    FileSigner::create(&path).unwrap();
    for mode in [0o640, 0o604, 0o660, 0o644] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let err = FileSigner::load(&path).unwrap_err();
        assert!(
            matches!(err, KeyFileError::TooOpen { .. }),
            "{mode:o}: {err}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("group/other") && msg.contains("chmod 600"),
            "{msg}"
        );
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
    FileSigner::load(&path).unwrap();
}

#[test]
fn rejects_a_file_that_is_not_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.key");
    std::fs::write(&path, "hello").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(
        FileSigner::load(&path),
        Err(KeyFileError::NotAKey { .. })
    ));
}

#[test]
fn debug_never_shows_key_material() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vendor.key");
    let signer = FileSigner::create(&path).unwrap();
    let pem = std::fs::read_to_string(&path).unwrap();
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let debug = format!("{signer:?} {:?}", KeySigner::from_seed(&TEST_SEED));
    assert!(!debug.contains(&body), "{debug}");
    assert!(!debug.contains(&hex::encode(TEST_SEED)), "{debug}");
    assert!(!debug.contains("[7, 7, 7"), "{debug}");
    assert!(debug.contains(&signer.key_id().to_string()), "{debug}");
}
