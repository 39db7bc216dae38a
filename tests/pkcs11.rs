//! Issue 20: the vendor key in a PKCS#11 token (SoftHSM2, a throwaway token per test).

#[path = "support/softhsm.rs"]
mod softhsm;

use frank::indicium::signer::Signer;
use frank::pkcs11::Pkcs11Signer;

#[test]
fn generated_key_signs_and_verifies() {
    let t = softhsm::token();
    let public = t.token_key().generate().unwrap();
    let signer = Pkcs11Signer::open(&t.config(&public)).unwrap();
    let sig = signer.sign(b"hello").unwrap();
    let k = ed25519_dalek::VerifyingKey::from_bytes(&public).unwrap();
    k.verify_strict(b"hello", &ed25519_dalek::Signature::from_bytes(&sig))
        .unwrap();
    let t2 = softhsm::token();
    let key = ed25519_dalek::SigningKey::from_bytes(&[7; 32]);
    let p2 = t2.token_key().import(&key).unwrap();
    let s2 = Pkcs11Signer::open(&t2.config(&p2)).unwrap();
    assert_eq!(
        s2.sign(b"x").unwrap(),
        ed25519_dalek::Signer::sign(&key, b"x").to_bytes()
    );
    eprintln!("{s2:?}");
}
