//! Hostile bytes at every decoder that reads what crosses the network or a printed label:
//! request and response envelopes, keepalive datagrams, indicium payloads. Each must answer
//! with a typed error (or a valid value) — never panic, hang or allocate what the input only
//! claims to hold.

use ciborium::Value;
use frank::indicium::layout::Indicium;
use frank::link::keepalive::{KEEPALIVE_BYTES, KEEPALIVE_KIND, KEEPALIVE_VERSION, Keepalive};
use frank::wire::{self, ErrorCode, ledger};
use proptest::prelude::*;

/// Field names the request bodies use (and a few they do not), so that generated maps reach
/// the body decoders and their validation rather than failing at the first key.
const FIELDS: &[&str] = &[
    "request_id",
    "client_time_ms",
    "mac",
    "amount_cents",
    "piece_serial",
    "reached_printer",
    "kind",
    "item",
    "method",
    "code",
    "name",
    "device_key",
    "clerk",
    "password",
    "session_id",
    "resume_mac",
    "limit",
    "before_serial",
    "from_ms",
    "to_ms",
    "payload",
    "weight_oz",
    "class",
    "zip",
    "origin_zip",
    "card",
    "number",
    "expiry",
    "cvc",
    "routing",
    "account",
    "unknown",
    "version",
    "file",
    "manifests",
    "manifest",
    "signature",
    "files",
    "sha256",
    "bytes",
];

/// CBOR values shaped like request bodies: maps of known field names to nested values, with
/// integers at the edges of their ranges, byte strings of the lengths MACs and ids use, and
/// text of any length.
fn value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        any::<u64>().prop_map(|n| Value::Integer(n.into())),
        any::<i64>().prop_map(|n| Value::Integer(n.into())),
        prop::sample::select(vec![0u64, 1, 255, 65_535, u32::MAX as u64, u64::MAX])
            .prop_map(|n| Value::Integer(n.into())),
        prop::collection::vec(any::<u8>(), 0..70).prop_map(Value::Bytes),
        ".{0,80}".prop_map(Value::Text),
        prop::sample::select(FIELDS).prop_map(|s| Value::Text(s.to_string())),
        any::<bool>().prop_map(Value::Bool),
        any::<f64>().prop_map(Value::Float),
        Just(Value::Null),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(FIELDS), inner), 0..10).prop_map(|kv| {
                Value::Map(
                    kv.into_iter()
                        .map(|(k, v)| (Value::Text(k.to_string()), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn cbor(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(v, &mut out).unwrap();
    out
}

/// A CBOR head (major type, argument) with the argument encoded in its longest form.
fn head(major: u8, arg: u64) -> Vec<u8> {
    let mut v = vec![(major << 5) | 27];
    v.extend_from_slice(&arg.to_be_bytes());
    v
}

/// CBOR text string.
fn text(s: &str) -> Vec<u8> {
    let mut v = vec![(3 << 5) | 24, s.len() as u8];
    v.extend_from_slice(s.as_bytes());
    v
}

/// A request envelope `{v: 1, type: kind, body: <body>}` with `body` as raw CBOR.
fn envelope(kind: &str, body: &[u8]) -> Vec<u8> {
    envelope_v(1, kind, body)
}

/// The same with any version number (in CBOR's 8-byte integer form).
fn envelope_v(version: u64, kind: &str, body: &[u8]) -> Vec<u8> {
    let mut v = vec![0xA3];
    v.extend(text("v"));
    v.extend(head(0, version));
    v.extend(text("type"));
    v.extend(text(kind));
    v.extend(text("body"));
    v.extend_from_slice(body);
    v
}

#[test]
fn lengths_that_claim_more_than_the_input_holds_are_malformed() {
    for major in [2u8, 3, 4, 5] {
        for claimed in [u64::MAX, 1 << 40, 1 << 32, 70_000] {
            let bytes = envelope("authorize", &head(major, claimed));
            let e = wire::decode_request(&bytes).expect_err("must not decode");
            assert_eq!(e.code, ErrorCode::Malformed, "{major} {claimed}: {e:?}");
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_a_stack_overflow() {
    for open in [0x81u8, 0xA1, 0x9F] {
        let mut body = Vec::new();
        for _ in 0..50_000 {
            body.push(open);
            if open == 0xA1 {
                body.extend(text("k"));
            }
        }
        let bytes = envelope("authorize", &body);
        let bytes = &bytes[..bytes.len().min(wire::REQUEST_BYTES_MAX)];
        let e = wire::decode_request(bytes).expect_err("must not decode");
        assert_eq!(e.code, ErrorCode::Malformed, "{e:?}");
    }
}

/// Request kinds the vendor knows, for mutations that reach each body decoder.
const KINDS: &[&str] = &[
    "enroll",
    "login",
    "resume",
    "ping",
    "clock_check",
    "balance",
    "quote",
    "fund",
    "authorize",
    "commit",
    "void",
    "statement",
    "refund_request",
    "piece",
    "pieces",
    "printer_status",
    "subscribe_terminals",
    "scan",
    "tender",
    "day_report",
    "refunds_awaiting",
    "refund_decide",
    "bundles",
    "bundle_file",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn any_bytes_decode_or_fail_typed(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        match wire::decode_request(&bytes) {
            Ok(r) => {
                // Whatever decodes encodes back to something that decodes the same.
                let again = wire::decode_request(&wire::encode_request(&r));
                prop_assert_eq!(again.map(|a| a.operation()), Ok(r.operation()));
            }
            Err(e) => prop_assert!(!e.message.is_empty()),
        }
        let _ = wire::decode_response::<wire::Pong>(&bytes);
        let _ = Keepalive::parse(&bytes);
        let _ = Indicium::decode(&bytes);
    }

    #[test]
    fn any_body_for_every_kind_decodes_or_fails_typed(
        kind in prop::sample::select(KINDS),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Err(e) = wire::decode_request(&envelope(kind, &body)) {
            prop_assert!(!e.message.is_empty());
        }
    }

    #[test]
    fn any_structured_body_for_every_kind_decodes_or_fails_typed(
        kind in prop::sample::select(KINDS),
        body in value(),
        version in prop::sample::select(vec![0u64, 1, 2, u16::MAX as u64, u64::MAX]),
    ) {
        let bytes = envelope_v(version, kind, &cbor(&body));
        match wire::decode_request(&bytes) {
            Ok(r) => {
                prop_assert_eq!(version, 1);
                let again = wire::decode_request(&wire::encode_request(&r));
                prop_assert_eq!(again.map(|a| a.operation()), Ok(r.operation()));
            }
            Err(e) => {
                prop_assert!(!e.message.is_empty());
                if version != 1 && version <= u16::MAX as u64 {
                    prop_assert_eq!(e.code, ErrorCode::UnsupportedVersion, "{:?}", e);
                }
            }
        }
        // The counter's side: a response envelope around the same value, for the bodies
        // that carry money and indicia.
        let mut response = vec![0xA2];
        response.extend(text("v"));
        response.push(0x01);
        response.extend(text("ok"));
        response.extend(cbor(&body));
        let _ = wire::decode_response::<wire::Pong>(&response);
        let _ = wire::decode_response::<ledger::Authorized>(&response);
        let _ = wire::decode_response::<ledger::PieceDone>(&response);
        let _ = wire::decode_response::<ledger::Balance>(&response);
        let _ = wire::decode_response::<ledger::StatementBody>(&response);
        let _ = wire::decode_response::<ledger::PieceList>(&response);
        let _ = wire::decode_response::<ledger::TenderDone>(&response);
        let _ = wire::decode_response::<ledger::RefundDecided>(&response);
        let _ = wire::decode_response::<frank::ledger::report::DayReport>(&response);
        let _ = wire::decode_response::<wire::BundleList>(&response);
        let _ = wire::decode_response::<wire::BundleFileHeader>(&response);
        // A signed manifest from a hostile vendor: refused before or at its signature.
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        if let Ok(signed) = frank::bundle::SignedManifest::from_cbor(&cbor(&body)) {
            prop_assert!(frank::bundle::verify(&signed, &key).is_err());
        }
    }

    #[test]
    fn any_bytes_as_a_signed_manifest_fail_typed(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]).verifying_key();
        if let Ok(signed) = frank::bundle::SignedManifest::from_cbor(&bytes) {
            prop_assert!(frank::bundle::verify(&signed, &key).is_err());
        }
    }

    #[test]
    fn any_keepalive_sized_datagram_parses_or_fails_typed(
        version in prop::sample::select(vec![KEEPALIVE_VERSION, 0, 2, 0xFF]),
        kind in prop::sample::select(vec![KEEPALIVE_KIND, 0, 0x4C]),
        flags in prop::sample::select(vec![[0u8, 0], [0, 1], [0x80, 0]]),
        rest in prop::collection::vec(any::<u8>(), KEEPALIVE_BYTES - 4..=KEEPALIVE_BYTES - 4),
    ) {
        let mut bytes = vec![version, kind, flags[0], flags[1]];
        bytes.extend(rest);
        let well_formed = version == KEEPALIVE_VERSION && kind == KEEPALIVE_KIND && flags == [0, 0];
        match Keepalive::parse(&bytes) {
            Ok(k) => {
                prop_assert!(well_formed);
                let u64_at = |o: usize| u64::from_be_bytes(bytes[o..o + 8].try_into().unwrap());
                prop_assert_eq!(k.session_id, u64_at(4));
                prop_assert_eq!(k.seq, u64_at(12));
                prop_assert_eq!(k.echo_seq, u64_at(28));
            }
            Err(_) => prop_assert!(!well_formed),
        }
    }
}
