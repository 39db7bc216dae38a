//! The test vectors in docs/INDICIUM.md: parsed out of the doc and checked against the encoder,
//! the signer and the verifier. Run with `FRANK_PRINT_VECTORS=1` to print fresh vectors.

use frank::indicium::address::{DeliveryPoint, Zip4, Zip5};
use frank::indicium::kinds::{
    Check, CheckNumber, Day, Destination, Item, MailClass, Postage, Text, WeightOz,
};
use frank::indicium::layout::{LicenseId, MeterSerial, PieceSerial, SoftwareId};
use frank::indicium::signer::{KeySigner, PieceFacts, Signer, build_and_sign};
use frank::indicium::verify::{VendorKeys, verify_payload};
use frank::money::Cents;
use std::collections::BTreeMap;

/// The vector key seed: bytes 0x00, 0x01, ..., 0x1f.
fn seed() -> [u8; 32] {
    std::array::from_fn(|i| i as u8)
}

fn c(n: u64) -> Cents {
    Cents::new(n).unwrap()
}

fn vector_facts(name: &str) -> PieceFacts {
    let item = match name {
        "postage" => Item::Postage(Postage {
            class: MailClass::Priority,
            weight: WeightOz::new(12).unwrap(),
            destination: Destination::new(
                Zip5::parse("94105").unwrap(),
                Some(Zip4::parse("1234").unwrap()),
                Some(DeliveryPoint::parse("56").unwrap()),
            )
            .unwrap(),
        }),
        "check" => Item::Check(Check {
            payee: Text::new("payee", "Ada Lovelace").unwrap(),
            amount: c(12_345),
            number: CheckNumber::new(1001).unwrap(),
            memo: Some(Text::new("memo", "rent").unwrap()),
        }),
        other => panic!("no vector named {other}"),
    };
    let amount = item.face_value().unwrap_or(c(1345));
    PieceFacts {
        meter_serial: MeterSerial::new("062S0001").unwrap(),
        license_id: LicenseId(424_242),
        piece_serial: PieceSerial::new(42).unwrap(),
        ascending_after: c(100_000),
        descending_after: c(50_000),
        amount,
        date: Day::parse("date", "2026-11-23").unwrap(),
        origin: Zip5::parse("10001").unwrap(),
        software_id: SoftwareId::FRANK,
        item,
    }
}

/// Parses ```` ```vector ```` blocks of `key: value` lines; a value may continue on following
/// lines that start with whitespace (hex wrapped for reading).
fn doc_vectors() -> Vec<BTreeMap<String, String>> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/INDICIUM.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```vector" {
            continue;
        }
        let mut map = BTreeMap::new();
        let mut last: Option<String> = None;
        for l in lines.by_ref() {
            if l.trim() == "```" {
                break;
            }
            if l.starts_with(char::is_whitespace) {
                let k = last.clone().expect("continuation line without a key");
                map.entry(k)
                    .and_modify(|v: &mut String| v.push_str(l.trim()));
            } else if let Some((k, v)) = l.split_once(':') {
                map.insert(k.trim().to_string(), v.trim().to_string());
                last = Some(k.trim().to_string());
            }
        }
        out.push(map);
    }
    out
}

#[test]
fn doc_vectors_match_the_code() {
    let signer = KeySigner::from_seed(&seed());
    let mut keys = VendorKeys::new();
    keys.add(&signer.public_key()).unwrap();
    let print = std::env::var_os("FRANK_PRINT_VECTORS").is_some();
    let vectors = if print { Vec::new() } else { doc_vectors() };
    if !print {
        assert_eq!(vectors.len(), 2, "docs/INDICIUM.md should hold 2 vectors");
    }
    for name in ["postage", "check"] {
        let facts = vector_facts(name);
        let ind = build_and_sign(&facts, &signer).unwrap();
        let payload = ind.to_bytes();
        let body_len = ind.body.len_bytes();
        if print {
            println!("name: {name}");
            println!("seed: {}", hex::encode(seed()));
            println!("public_key: {}", hex::encode(signer.public_key()));
            println!("key_id: {}", signer.key_id());
            if let Item::Postage(_) = facts.item {
            } else {
                println!(
                    "item_canonical: {}",
                    hex::encode(facts.item.canonical_bytes())
                );
                println!("item_digest: {}", hex::encode(facts.item.digest()));
            }
            println!("body: {}", hex::encode(&payload[..body_len]));
            println!("signature: {}", hex::encode(&payload[body_len..]));
            continue;
        }
        let v = vectors
            .iter()
            .find(|v| v.get("name").map(String::as_str) == Some(name))
            .unwrap_or_else(|| panic!("vector {name} missing from docs/INDICIUM.md"));
        assert_eq!(v["seed"], hex::encode(seed()), "{name}");
        assert_eq!(v["public_key"], hex::encode(signer.public_key()), "{name}");
        assert_eq!(v["key_id"], signer.key_id().to_string(), "{name}");
        if let Some(digest) = v.get("item_digest") {
            assert_eq!(*digest, hex::encode(facts.item.digest()), "{name}");
            assert_eq!(
                v["item_canonical"],
                hex::encode(facts.item.canonical_bytes()),
                "{name}"
            );
        }
        assert_eq!(v["body"], hex::encode(&payload[..body_len]), "{name}");
        assert_eq!(v["signature"], hex::encode(&payload[body_len..]), "{name}");
        // And the doc's bytes verify on their own.
        let doc_payload = hex::decode(format!("{}{}", v["body"], v["signature"])).unwrap();
        verify_payload(&doc_payload, &keys).unwrap();
    }
}
