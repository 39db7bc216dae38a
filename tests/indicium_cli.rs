//! `frank verify` as a user runs it: PNG, hex and base64 input; fingerprint and PEM keys; exit
//! status and the failing check named.

mod indicium_support;

use base64::Engine;
use ed25519_dalek::pkcs8::EncodePublicKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use frank::indicium::render::render_label;
use frank::indicium::signer::{KeySigner, Signer, build_and_sign};
use indicium_support::*;
use std::process::{Command, Output};

fn frank(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_frank"))
        .args(args)
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn verifies_a_png_label_and_prints_every_field() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let (item, amount) = every_kind().remove(0);
    let ind = build_and_sign(&facts(item, amount, 77), &signer).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("label.png");
    std::fs::write(&png, render_label(&ind, 203).unwrap().to_png().unwrap()).unwrap();
    let fp = hex::encode(signer.public_key());
    let out = frank(&["verify", png.to_str().unwrap(), "--vendor-key", &fp]);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    for needle in [
        "meter_serial: 062S0001",
        "license_id: 424242",
        "piece_serial: 77",
        "amount: $0.73",
        "date: 2026-11-23",
        "origin_zip: 10001",
        "destination: 94105-1234 dp 56",
        "mail_class: first-class",
        "software_id: FRK1",
        "item_kind: postage",
        "ascending_register:",
        "descending_register:",
        "signature:",
        "result: VALID",
    ] {
        assert!(t.contains(needle), "missing {needle:?} in\n{t}");
    }
}

#[test]
fn hex_and_base64_payloads_with_fingerprint_and_pem_key_files() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let (item, amount) = every_kind().remove(3);
    let payload = build_and_sign(&facts(item, amount, 5), &signer)
        .unwrap()
        .to_bytes();
    let dir = tempfile::tempdir().unwrap();
    let fp_file = dir.path().join("vendor.fp");
    std::fs::write(&fp_file, format!("{}\n", hex::encode(signer.public_key()))).unwrap();
    let pem_file = dir.path().join("vendor.pub.pem");
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&signer.public_key()).unwrap();
    std::fs::write(&pem_file, vk.to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&payload);
    for input in [hex::encode(&payload), b64] {
        for key in [&fp_file, &pem_file] {
            let out = frank(&["verify", &input, "--vendor-key", key.to_str().unwrap()]);
            let t = text(&out);
            assert!(out.status.success(), "{t}");
            assert!(
                t.contains("item_kind: coupon") && t.contains("kind_digest:"),
                "{t}"
            );
        }
    }
}

#[test]
fn failures_exit_non_zero_naming_the_check() {
    let signer = KeySigner::from_seed(&TEST_SEED);
    let other = KeySigner::from_seed(&[1u8; 32]);
    let (item, amount) = every_kind().remove(1);
    let payload = build_and_sign(&facts(item, amount, 5), &signer)
        .unwrap()
        .to_bytes();
    let fp = hex::encode(signer.public_key());
    let mut flipped = payload.clone();
    flipped[53] ^= 0x10;
    let cases = [
        (hex::encode(&flipped), fp.clone(), "bad signature"),
        (
            hex::encode(&payload),
            hex::encode(other.public_key()),
            "unknown key",
        ),
        (hex::encode(&payload[..100]), fp.clone(), "malformed layout"),
        (
            format!("07{}", hex::encode(&payload[1..])),
            fp.clone(),
            "unknown version",
        ),
    ];
    for (input, key, check) in cases {
        let out = frank(&["verify", &input, "--vendor-key", &key]);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains(check), "{check} missing in\n{t}");
    }
    let out = frank(&[
        "verify",
        &hex::encode(&payload),
        "--vendor-key",
        &fp,
        "--vendor",
        "127.0.0.1:1",
    ]);
    let t = text(&out);
    // The offline check passes; the online one names the vendor it could not reach.
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("cannot reach the vendor at 127.0.0.1:1"), "{t}");
    assert!(!t.contains("result: VALID"), "{t}");
}

#[test]
fn unreadable_inputs_say_what_is_wrong() {
    let fp = hex::encode(KeySigner::from_seed(&TEST_SEED).public_key());
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.png");
    let white = frank::indicium::render::MonoImage::new(120, 120);
    std::fs::write(&blank, white.to_png().unwrap()).unwrap();
    for (input, needle) in [
        (blank.to_str().unwrap().to_string(), "no Data Matrix found"),
        (
            dir.path().join("missing.png").to_str().unwrap().to_string(),
            "no such file",
        ),
        (
            "not*hex*or*base64".to_string(),
            "not a PNG file, hex or base64",
        ),
    ] {
        let out = frank(&["verify", &input, "--vendor-key", &fp]);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(t.contains(needle), "{needle} missing in\n{t}");
    }
    let out = frank(&["verify", "00", "--vendor-key", "abcd"]);
    assert!(
        text(&out).contains("expected 64 hex characters"),
        "{}",
        text(&out)
    );
}
