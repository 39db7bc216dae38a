//! Checks the test vectors printed in docs/PROTOCOL.md against the implementation, so the
//! document cannot drift from the code. Each ```vectors block holds `name = hex-or-text` lines.

use ed25519_dalek::{Signer, SigningKey};
use frank::link::keepalive::Keepalive;
use frank::link::keys::{self, Exporter, MacKey};
use frank::wire::reqmac::MacInput;
use std::collections::HashMap;

fn vectors() -> HashMap<String, String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/PROTOCOL.md")).unwrap();
    let mut out = HashMap::new();
    let mut inside = false;
    for line in doc.lines() {
        if line.trim_start().starts_with("```vectors") {
            inside = true;
            continue;
        }
        if inside && line.trim_start().starts_with("```") {
            inside = false;
            continue;
        }
        if let Some((k, v)) = line.split_once('=').filter(|_| inside) {
            let prev = out.insert(k.trim().to_string(), v.trim().to_string());
            assert!(prev.is_none(), "vector {} appears twice", k.trim());
        }
    }
    assert!(
        !out.is_empty(),
        "no ```vectors blocks found in docs/PROTOCOL.md"
    );
    out
}

fn check(v: &HashMap<String, String>, name: &str, computed: &[u8]) {
    let expected = v.get(name).unwrap_or_else(|| {
        panic!(
            "docs/PROTOCOL.md lacks vector {name}; computed {}",
            hex::encode(computed)
        )
    });
    assert_eq!(
        expected,
        &hex::encode(computed),
        "vector {name} differs from the implementation"
    );
}

fn arr<const N: usize>(v: &HashMap<String, String>, name: &str) -> [u8; N] {
    let mut a = [0u8; N];
    hex::decode_to_slice(&v[name], &mut a).unwrap_or_else(|e| panic!("{name}: {e}"));
    a
}

fn num(v: &HashMap<String, String>, name: &str) -> u64 {
    v[name].parse().unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn key_derivation_vectors() {
    let v = vectors();
    let exporter = Exporter(arr(&v, "kdf.exporter"));
    let k = keys::derive_session_keys(
        &exporter,
        num(&v, "kdf.session_id"),
        num(&v, "kdf.terminal_id"),
        &v["kdf.clerk"],
    );
    check(
        &v,
        "kdf.salt",
        &keys::login_salt(
            num(&v, "kdf.session_id"),
            num(&v, "kdf.terminal_id"),
            &v["kdf.clerk"],
        ),
    );
    check(
        &v,
        "kdf.keepalive_counter_to_vendor",
        &k.keepalive_counter_to_vendor.0,
    );
    check(
        &v,
        "kdf.keepalive_vendor_to_counter",
        &k.keepalive_vendor_to_counter.0,
    );
    check(&v, "kdf.request_mac", &k.request_mac.0);
    check(&v, "kdf.resume", &k.resume.0);
    let new_exporter = Exporter(arr(&v, "resume.new_exporter"));
    check(
        &v,
        "resume.mac",
        &keys::resume_mac(&k.resume, &new_exporter),
    );
}

#[test]
fn keepalive_vectors() {
    let v = vectors();
    let key = MacKey(arr(&v, "keepalive.key"));
    let k = Keepalive {
        session_id: num(&v, "keepalive.session_id"),
        seq: num(&v, "keepalive.seq"),
        sender_time_us: num(&v, "keepalive.sender_time_us"),
        echo_seq: num(&v, "keepalive.echo_seq"),
        echo_delay_us: num(&v, "keepalive.echo_delay_us") as u32,
    };
    let sealed = k.seal(&key);
    check(&v, "keepalive.datagram", &sealed);
    assert_eq!(Keepalive::parse(&sealed).unwrap(), k);
}

#[test]
fn request_mac_vectors() {
    let v = vectors();
    let input = MacInput {
        operation: frank::wire::Operation::parse(&v["reqmac.operation"])
            .expect("the vector names a protocol operation"),
        request_id: arr(&v, "reqmac.request_id"),
        amount_cents: num(&v, "reqmac.amount_cents"),
        client_time_ms: num(&v, "reqmac.client_time_ms"),
        clerk: &v["reqmac.clerk"],
        destination: &v["reqmac.destination"],
    };
    check(&v, "reqmac.canonical", &input.canonical().unwrap());
    check(
        &v,
        "reqmac.mac",
        &input.sign(&MacKey(arr(&v, "reqmac.key"))).unwrap(),
    );
}

#[test]
fn enrollment_and_login_signature_vectors() {
    let v = vectors();
    let vendor = SigningKey::from_bytes(&arr(&v, "enroll.vendor_seed"));
    check(
        &v,
        "enroll.vendor_public_key",
        vendor.verifying_key().as_bytes(),
    );
    let exporter = Exporter(arr(&v, "enroll.exporter"));
    let t = keys::enroll_transcript(
        &arr(&v, "enroll.challenge"),
        &exporter,
        num(&v, "enroll.vendor_time_ms"),
    );
    check(&v, "enroll.transcript", &t);
    check(&v, "enroll.signature", &vendor.sign(&t).to_bytes());

    let device = SigningKey::from_bytes(&arr(&v, "login.device_seed"));
    check(
        &v,
        "login.device_public_key",
        device.verifying_key().as_bytes(),
    );
    let t = keys::login_transcript(&exporter, num(&v, "login.terminal_id"), &v["login.clerk"]);
    check(&v, "login.transcript", &t);
    check(&v, "login.proof", &device.sign(&t).to_bytes());
}

#[test]
fn cbor_envelope_vectors() {
    let v = vectors();
    check(
        &v,
        "cbor.ping",
        &frank::wire::encode_request(&frank::wire::Request::Ping(frank::wire::Ping {})),
    );
    let err = frank::wire::ErrorBody::new(frank::wire::ErrorCode::LockedOut, "wait")
        .with_retry_after_ms(30000);
    check(
        &v,
        "cbor.error_locked_out",
        &frank::wire::encode_error(&err),
    );
}

/// RFC 8446 §7.1 HKDF-Expand-Label.
fn expand_label<H>(secret: &[u8], label: &[u8], context: &[u8], len: usize) -> Vec<u8>
where
    H: sha2::digest::Digest + sha2::digest::core_api::BlockSizeUser + Clone,
    hmac::SimpleHmac<H>: hmac::digest::KeyInit + hmac::digest::Update + hmac::digest::FixedOutput,
{
    let mut info = Vec::new();
    info.extend_from_slice(&(len as u16).to_be_bytes());
    info.push((6 + label.len()) as u8);
    info.extend_from_slice(b"tls13 ");
    info.extend_from_slice(label);
    info.push(context.len() as u8);
    info.extend_from_slice(context);
    let hk = hkdf::SimpleHkdf::<H>::from_prk(secret).unwrap();
    let mut out = vec![0u8; len];
    hk.expand(&info, &mut out).unwrap();
    out
}

/// RFC 8446 §7.5 TLS-Exporter over an exporter master secret.
fn tls_exporter<H>(secret: &[u8], label: &[u8], context: &[u8], len: usize) -> Vec<u8>
where
    H: sha2::digest::Digest + sha2::digest::core_api::BlockSizeUser + Clone,
    hmac::SimpleHmac<H>: hmac::digest::KeyInit + hmac::digest::Update + hmac::digest::FixedOutput,
{
    let empty = H::digest(b"");
    let derived = expand_label::<H>(
        secret,
        label,
        &empty,
        <H as sha2::digest::Digest>::output_size(),
    );
    expand_label::<H>(&derived, b"exporter", &H::digest(context), len)
}

#[test]
fn exporter_vectors() {
    let v = vectors();
    let s256 = hex::decode(&v["exporter.secret_sha256"]).unwrap();
    let s384 = hex::decode(&v["exporter.secret_sha384"]).unwrap();
    check(
        &v,
        "exporter.out_sha256",
        &tls_exporter::<sha2::Sha256>(
            &s256,
            keys::EXPORTER_LABEL,
            keys::EXPORTER_CONTEXT,
            keys::EXPORTER_BYTES,
        ),
    );
    check(
        &v,
        "exporter.out_sha384",
        &tls_exporter::<sha2::Sha384>(
            &s384,
            keys::EXPORTER_LABEL,
            keys::EXPORTER_CONTEXT,
            keys::EXPORTER_BYTES,
        ),
    );
}

#[test]
fn monitor_vectors() {
    use frank::wire::{self, MonitorFrame, PrinterReport, PrinterState, Request, TerminalRow};
    let v = vectors();
    check(
        &v,
        "cbor.printer_status",
        &wire::encode_request(&Request::PrinterStatus(PrinterReport::new(
            PrinterState::PaperOut,
            Some("roll empty".into()),
        ))),
    );
    check(
        &v,
        "cbor.subscribe_terminals",
        &wire::encode_request(&Request::SubscribeTerminals(wire::SubscribeTerminals {})),
    );
    let frame = MonitorFrame {
        kind: "update".into(),
        seq: 3,
        vendor_time_ms: 1_700_000_000_000,
        account_id: 1,
        coalesced_frames: 0,
        truncated: false,
        rows: vec![TerminalRow {
            terminal_id: 2,
            name: "kiosk".into(),
            link: "lapsed".into(),
            connected: true,
            clerk: Some("alice".into()),
            rtt_ms: Some(1),
            keepalive_age_ms: Some(160),
            keepalive_loss_bp: 250,
            printer: "paper_out".into(),
            printer_detail: None,
            items_today: 4,
            unsettled: 0,
            balance_cents: 9750,
        }],
    };
    let bytes = wire::monitor::encode_monitor_frame(&frame);
    check(&v, "monitor.frame", &bytes);
    let mut r = wire::monitor::FrameReader::new();
    r.push(&bytes).unwrap();
    assert_eq!(r.next_frame().unwrap(), Some(frame));
    let forbidden = wire::ErrorBody::new(wire::ErrorCode::Forbidden, "supervisors only");
    check(
        &v,
        "monitor.frame_forbidden",
        &wire::monitor::encode_frame(&wire::encode_error(&forbidden)),
    );
}

/// §4.9: a rates manifest signed by a known release key, its wire form, a `bundle_file`
/// request and its header frame.
#[test]
fn bundle_vectors() {
    use frank::bundle::{self, Manifest};
    let v = vectors();
    let key = SigningKey::from_bytes(&arr::<32>(&v, "bundle.release_seed"));
    check(
        &v,
        "bundle.release_public_key",
        key.verifying_key().as_bytes(),
    );
    let file = v["bundle.file_text"].replace("\\n", "\n");
    check(&v, "bundle.file_sha256", &bundle::sha256(file.as_bytes()));
    let manifest = Manifest {
        name: v["bundle.name"].clone(),
        kind: v["bundle.kind"].clone(),
        version: v["bundle.version"].clone(),
        min_counter_version: v["bundle.min_counter_version"].clone(),
        target: None,
        created_ms: num(&v, "bundle.created_ms"),
        files: vec![bundle::entry_for(&v["bundle.file_name"], file.as_bytes())],
    };
    let mut bytes = Vec::new();
    ciborium::into_writer(&manifest, &mut bytes).unwrap();
    check(&v, "bundle.manifest", &bytes);
    let mut input = bundle::MANIFEST_SIGNING_TAG.to_vec();
    input.extend_from_slice(&bytes);
    check(&v, "bundle.signing_input", &input);
    let signed = bundle::sign(&manifest, &key).unwrap();
    check(&v, "bundle.signature", &signed.signed.signature);
    check(&v, "bundle.signed_manifest", &signed.signed.to_cbor());
    // What a counter decodes from those bytes verifies with the public key.
    let wire_bytes = hex::decode(&v["bundle.signed_manifest"]).unwrap();
    let back = bundle::SignedManifest::from_cbor(&wire_bytes).unwrap();
    bundle::verify(&back, &key.verifying_key()).unwrap();
    let request = frank::wire::encode_request(&frank::wire::Request::BundleFile(
        frank::wire::BundleFileRequest {
            name: manifest.name.clone(),
            version: manifest.version.clone(),
            file: v["bundle.file_name"].clone(),
        },
    ));
    check(&v, "cbor.bundle_file", &request);
    let header = frank::wire::encode_ok(&frank::wire::BundleFileHeader {
        bytes: file.len() as u64,
    });
    check(
        &v,
        "bundle.header_frame",
        &frank::wire::monitor::encode_frame(&header),
    );
}
