//! Unit tests of [`super`] (moved out of its file unchanged).

use super::*;

#[test]
fn ec_points_in_both_forms() {
    let k = [7u8; 32];
    assert_eq!(ec_point_key(&ec_point_of(&k)), Some(k));
    assert_eq!(ec_point_key(&k), Some(k));
    assert_eq!(ec_point_key(&[4, 32, 1]), None);
}

#[test]
fn sessions_fit_the_token() {
    assert_eq!(sessions_for(4, Limit::Max(2), Some(0)), 2);
    assert_eq!(sessions_for(4, Limit::Max(10), Some(9)), 1);
    assert_eq!(sessions_for(0, Limit::Infinite, None), 1);
    assert_eq!(
        sessions_for(1000, Limit::Unavailable, None),
        SESSIONS_MAX_LIMIT
    );
}

#[test]
fn pin_sources_are_checked() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("pin");
    std::fs::write(&p, "1234\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = PinSource::File(p.clone()).read().unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(PinSource::File(p).read_text().unwrap().as_str(), "1234");
    let err = PinSource::Env("FRANK_TEST_NO_SUCH_PIN_VAR".into())
        .read()
        .unwrap_err()
        .to_string();
    assert!(err.contains("FRANK_TEST_NO_SUCH_PIN_VAR"), "{err}");
    let err = PinSource::Credential("../x".into())
        .read()
        .unwrap_err()
        .to_string();
    assert!(err.contains("plain name"), "{err}");
    let mut c = Pkcs11Config {
        module: "/m.so".into(),
        token: "t".into(),
        key: "k".into(),
        fingerprint: "ab".repeat(32),
        pin_file: Some("/p".into()),
        pin_env: Some("X".into()),
        pin_credential: None,
        sessions_max: None,
    };
    assert!(
        c.pin_source()
            .unwrap_err()
            .to_string()
            .contains("more than one")
    );
    c.set_pin_source(PinSource::Credential("frank-pin".into()));
    assert_eq!(
        c.pin_source().unwrap(),
        PinSource::Credential("frank-pin".into())
    );
}
