//! Issue 20: the vendor key in a PKCS#11 token — SoftHSM2, a throwaway token per test in this
//! process's own token directory (`support/softhsm.rs`). The vendor runs as a child `frank vendor
//! serve` over real QUIC; `frank vendor init --pkcs11`, `key import` and `fingerprint` run as the
//! real CLI.

#[path = "support/softhsm.rs"]
mod softhsm;
mod support;

use cryptoki::object::{Attribute, AttributeInfo, AttributeType, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use frank::counter::client;
use frank::indicium::signer::Signer;
use frank::indicium::{VendorKeys, verify_payload};
use frank::pkcs11::{KEY_LABEL_DEFAULT, Pkcs11Signer};
use frank::vendor_server::directory::Directory;
use frank::vendor_server::{CONFIG_FILE, DB_FILE, DataDir, KEY_FILE};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Longest a vendor that must refuse to start may take to exit.
const REFUSAL_MS_MAX: u64 = 20_000;

/// Runs the `frank` binary to its end (the token's SOFTHSM2_CONF is in the environment).
fn frank(args: &[&str]) -> Output {
    softhsm::conf();
    Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .expect("run frank")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

/// `frank vendor init --data DATA --pkcs11 … --token … --pin-file …` on `t`.
fn init_in(data: &Path, t: &softhsm::Token) -> Output {
    frank(&[
        "vendor",
        "init",
        "--data",
        path(data),
        "--pkcs11",
        path(&softhsm::module()),
        "--token",
        &t.label,
        "--pin-file",
        path(&t.pin_file),
    ])
}

/// `frank vendor init --pkcs11` on `t` into a fresh data directory; its fingerprint.
fn init_on_token(t: &softhsm::Token) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("vendor");
    let out = init_in(&data, t);
    assert!(out.status.success(), "init: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let fp = stdout
        .lines()
        .find_map(|l| l.strip_prefix("fingerprint (pin this on every counter): "))
        .unwrap_or_else(|| panic!("no fingerprint in {stdout}"))
        .to_string();
    (dir, data, fp)
}

fn rid() -> [u8; 16] {
    rand::random()
}

#[tokio::test]
async fn a_vendor_on_a_token_enrolls_logs_in_and_issues_indicia_over_quic() {
    let t = softhsm::token();
    let (_dir, data, fp) = init_on_token(&t);
    // No key file; the config names the token and the PIN's source, never the PIN.
    assert!(!data.join(KEY_FILE).exists());
    let config = std::fs::read_to_string(data.join(CONFIG_FILE)).unwrap();
    assert!(
        config.contains("[pkcs11]") && config.contains(&t.label),
        "{config}"
    );
    assert!(!config.contains(softhsm::PIN));
    // `frank vendor fingerprint` reads the key from the token.
    let out = frank(&["vendor", "fingerprint", "--data", path(&data)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), fp);

    let code = {
        let mut d = Directory::open(&DataDir::new(&data).file(DB_FILE)).unwrap();
        let (acct, _) = d.add_account("Token Post Office", 1).unwrap();
        let code = support::fleet_code(&mut d, acct.id);
        d.add_clerk(acct.id, support::CLERK, support::PASSWORD, false, 1)
            .unwrap();
        code
    };
    let addr = support::free_udp_port();
    let _vendor = support::spawn_vendor_serve(&data, addr, &[]).await;

    // The handshake is signed in the token and pinned to the fingerprint init printed; the
    // enrollment's challenge signature (made in the token) verifies with the pin.
    let key = frank::identity::parse_fingerprint(&fp).unwrap();
    let (endpoint, s, _link) = support::funded_terminal(
        (addr, key, &code),
        "counter-1",
        5_000,
        Duration::from_millis(support::LINK_UP_MS_MAX),
    )
    .await;
    let item = frank::wire::WireItem::Coupon(frank::wire::ValueItem {
        text: "token".into(),
        value_cents: 250,
        expiry: "2040-01-31".into(),
    });
    let mut keys = VendorKeys::new();
    keys.add(key.as_bytes()).unwrap();
    for serial in 1..=3 {
        let a = s
            .authorize(rid(), 250, item.clone(), "10001")
            .await
            .unwrap();
        assert_eq!(a.piece_serial, serial);
        let verified = verify_payload(&a.indicium, &keys).unwrap();
        assert_eq!(verified.indicium.body.piece_serial.get(), serial);
        assert_eq!(verified.indicium.body.amount.get(), 250);
        assert_eq!(
            s.commit(rid(), a.piece_serial).await.unwrap().result,
            "printed"
        );
    }
    // A counter pinning another key refuses this vendor before sending a request.
    let other = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    assert!(client::connect(&endpoint, addr, other).await.is_err());
}

/// The token's private key object of label [`KEY_LABEL_DEFAULT`], and a logged-in session.
fn private_key_of(
    t: &softhsm::Token,
) -> (cryptoki::session::Session, cryptoki::object::ObjectHandle) {
    let m = frank::pkcs11::module(&softhsm::module()).unwrap();
    let slot = m
        .get_slots_with_initialized_token()
        .unwrap()
        .into_iter()
        .find(|s| m.get_token_info(*s).unwrap().label().trim_end() == t.label)
        .unwrap();
    let session = m.open_ro_session(slot).unwrap();
    match session.login(
        UserType::User,
        Some(&AuthPin::from(softhsm::PIN.to_string())),
    ) {
        Ok(())
        | Err(cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)) => {
        }
        Err(e) => panic!("login: {e}"),
    }
    let found = session
        .find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::Label(KEY_LABEL_DEFAULT.as_bytes().to_vec()),
        ])
        .unwrap();
    assert_eq!(found.len(), 1);
    (session, found[0])
}

#[test]
fn the_key_never_leaves_the_token_generated_or_imported() {
    for imported in [false, true] {
        let t = softhsm::token();
        let file_key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let public = if imported {
            t.token_key().import(&file_key).unwrap()
        } else {
            t.token_key().generate().unwrap()
        };
        let (session, key) = private_key_of(&t);
        // C_GetAttributeValue of CKA_VALUE answers CKR_ATTRIBUTE_SENSITIVE.
        let info = session
            .get_attribute_info(key, &[AttributeType::Value])
            .unwrap();
        assert!(
            matches!(info.as_slice(), [AttributeInfo::Sensitive]),
            "{info:?}"
        );
        assert!(
            session
                .get_attributes(key, &[AttributeType::Value])
                .unwrap()
                .is_empty(),
            "no key bytes come out"
        );
        let attrs = session
            .get_attributes(key, &[AttributeType::Sensitive, AttributeType::Extractable])
            .unwrap();
        assert!(attrs.contains(&Attribute::Sensitive(true)), "{attrs:?}");
        assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
        // It still signs, and its signatures verify with the public key it reports.
        let signer = Pkcs11Signer::open(&t.config(&public)).unwrap();
        let sig = signer.sign(b"frank").unwrap();
        ed25519_dalek::VerifyingKey::from_bytes(&public)
            .unwrap()
            .verify_strict(b"frank", &ed25519_dalek::Signature::from_bytes(&sig))
            .unwrap();
        if imported {
            assert_eq!(public, file_key.verifying_key().to_bytes());
        }
        // The signer's in-token session copy is as sensitive as the original.
        let copies = session
            .find_objects(&[Attribute::Label(
                format!("{KEY_LABEL_DEFAULT} (session copy)").into_bytes(),
            )])
            .unwrap();
        assert!(!copies.is_empty(), "SoftHSM2 copies the key");
        for copy in copies {
            let info = session
                .get_attribute_info(copy, &[AttributeType::Value])
                .unwrap();
            assert!(
                matches!(info.as_slice(), [AttributeInfo::Sensitive]),
                "{info:?}"
            );
            let attrs = session
                .get_attributes(copy, &[AttributeType::Extractable, AttributeType::Token])
                .unwrap();
            assert!(attrs.contains(&Attribute::Extractable(false)), "{attrs:?}");
            assert!(attrs.contains(&Attribute::Token(false)), "{attrs:?}");
        }
    }
}

/// Runs `frank vendor serve` on `data`, which must refuse to start; its stderr.
fn refused_start(data: &Path, env: &[(&str, &str)]) -> String {
    softhsm::conf();
    let mut child = Command::new(env!("CARGO_BIN_EXE_frank"))
        .args([
            "vendor",
            "serve",
            "--data",
            path(data),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("RUST_LOG", "error")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_millis(REFUSAL_MS_MAX);
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the vendor did not refuse to start within {REFUSAL_MS_MAX} ms");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        !out.status.success(),
        "the vendor started: {}",
        text(&out.stdout)
    );
    assert!(!text(&out.stdout).contains("vendor listening"));
    text(&out.stderr)
}

#[test]
fn a_wrong_token_setup_is_refused_at_start_with_its_reason() {
    let t = softhsm::token();
    let (dir, data, _fp) = init_on_token(&t);
    // Another token whose key carries the same label: not the pinned key.
    let other = softhsm::token();
    other.token_key().generate().unwrap();
    let config_path = data.join(CONFIG_FILE);
    let original = std::fs::read_to_string(&config_path).unwrap();
    let wrong_pin = dir.path().join("wrong.pin");
    std::fs::write(&wrong_pin, "not-the-pin\n").unwrap();
    std::fs::set_permissions(&wrong_pin, std::fs::Permissions::from_mode(0o600)).unwrap();
    let open_pin = dir.path().join("open.pin");
    std::fs::write(&open_pin, format!("{}\n", softhsm::PIN)).unwrap();
    std::fs::set_permissions(&open_pin, std::fs::Permissions::from_mode(0o644)).unwrap();
    type Edit = Box<dyn Fn(&mut toml::Table)>;
    let set = |k: &'static str, v: String| -> Edit {
        Box::new(move |p: &mut toml::Table| {
            p.insert(k.into(), toml::Value::String(v.clone()));
        })
    };
    let cases: Vec<(&str, Edit, &str)> = vec![
        (
            "wrong PIN",
            set("pin_file", path(&wrong_pin).into()),
            "refused the PIN (wrong PIN)",
        ),
        (
            "PIN file others can read",
            set("pin_file", path(&open_pin).into()),
            "chmod 600",
        ),
        (
            "PIN variable not set",
            Box::new(|p: &mut toml::Table| {
                p.remove("pin_file");
                p.insert("pin_env".into(), "FRANK_TEST_UNSET_PIN".into());
            }),
            "environment variable FRANK_TEST_UNSET_PIN is not set",
        ),
        (
            "missing token",
            set("token", "no-such-token".into()),
            "no token with this label",
        ),
        (
            "missing key",
            set("key", "no-such-key".into()),
            "holds no Ed25519 private key",
        ),
        (
            "a key that is not the pinned one",
            set("token", other.label.clone()),
            "not the pinned vendor key",
        ),
        (
            "missing module",
            set("module", "/nonexistent/libnothing-pkcs11.so".into()),
            "no such file",
        ),
    ];
    for (what, edit, reason) in cases {
        let mut config: toml::Table = toml::from_str(&original).unwrap();
        let Some(toml::Value::Table(p)) = config.get_mut("pkcs11") else {
            panic!("no [pkcs11] in {original}");
        };
        edit(p);
        std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
        let stderr = refused_start(&data, &[]);
        assert!(stderr.contains(reason), "{what}: {stderr}");
        assert!(
            !stderr.contains(softhsm::PIN),
            "{what}: the PIN in a message"
        );
    }
    // The PIN from an environment variable works.
    let mut config: toml::Table = toml::from_str(&original).unwrap();
    if let Some(toml::Value::Table(p)) = config.get_mut("pkcs11") {
        p.remove("pin_file");
        p.insert("pin_env".into(), "FRANK_TEST_TOKEN_PIN".into());
        p.insert("key".into(), "no-such-key".into());
    }
    std::fs::write(&config_path, toml::to_string(&config).unwrap()).unwrap();
    // Past the PIN (it logged in): what stops it now is the key label.
    let stderr = refused_start(&data, &[("FRANK_TEST_TOKEN_PIN", softhsm::PIN)]);
    assert!(stderr.contains("holds no Ed25519 private key"), "{stderr}");
}

#[test]
fn key_import_moves_the_file_key_into_the_token_once() {
    let t = softhsm::token();
    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("vendor"));
    let fp = data.init().unwrap();
    let module = softhsm::module();
    let import = |extra: &[&str]| {
        let mut args = vec![
            "vendor",
            "key",
            "import",
            "--data",
            path(&data.path),
            "--pkcs11",
            path(&module),
            "--token",
            &t.label,
            "--pin-file",
            path(&t.pin_file),
        ];
        args.extend_from_slice(extra);
        frank(&args)
    };
    let out = import(&["--shred"]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&fp), "{}", text(&out.stdout));
    assert!(!data.file(KEY_FILE).exists(), "shredded");
    let config = std::fs::read_to_string(data.file(CONFIG_FILE)).unwrap();
    assert!(
        config.starts_with("# Frank vendor configuration"),
        "the rest of vendor.toml stays: {config}"
    );
    assert!(config.contains("[pkcs11]"));
    // The same fingerprint, now read from the token; the key signs there.
    let out = frank(&["vendor", "fingerprint", "--data", path(&data.path)]);
    assert_eq!(text(&out.stdout).trim(), fp, "{}", text(&out.stderr));
    let files = data.load().unwrap();
    let signer = data.open_signer(&files).unwrap();
    assert_eq!(hex::encode(signer.public_key()), fp);
    assert_eq!(
        signer.parallel_signatures_max(),
        Some(
            Pkcs11Signer::open(files.config.pkcs11.as_ref().unwrap())
                .unwrap()
                .sessions()
        )
    );
    // Once: a second import is refused, and so is a new key under the taken label.
    let out = import(&[]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("imported once"),
        "{}",
        text(&out.stderr)
    );
    let out = init_in(&dir.path().join("second"), &t);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("already holds a key with this label"),
        "{}",
        text(&out.stderr)
    );
}

/// An init that fails after generating its key (here: no database at the URL) takes the key
/// out of the token again, so it can be run again under the same label.
#[test]
fn a_failed_init_leaves_the_token_as_it_was() {
    let t = softhsm::token();
    let dir = tempfile::tempdir().unwrap();
    let port = support::free_udp_port().port();
    let failed = DataDir::new(dir.path().join("failed")).init_in_token(
        Some(&format!("postgres://frank@127.0.0.1:{port}/nothing")),
        &t.token_key(),
        None,
    );
    assert!(failed.is_err());
    let err = t.token_key().public_key().unwrap_err().to_string();
    assert!(err.contains("holds no Ed25519 public key"), "{err}");
    let data = DataDir::new(dir.path().join("vendor"));
    let fp = data.init_in_token(None, &t.token_key(), Some(1)).unwrap();
    assert_eq!(data.fingerprint().unwrap(), fp);
    let files = data.load().unwrap();
    assert_eq!(
        data.open_signer(&files).unwrap().parallel_signatures_max(),
        Some(1),
        "sessions_max = 1"
    );
}
