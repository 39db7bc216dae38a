//! Issue 13 (logs and files), from outside: a child `frank vendor serve` and the `frank`
//! binary. A hostile client's values never reach the vendor log and cannot forge its lines;
//! the data directory is private and locked; the vendor key is standard PKCS#8; `frank verify`
//! refuses an oversized image before decoding it.

mod support;

use ciborium::Value;
use frank::counter::client;
use frank::vendor_server::directory::Directory;
use frank::vendor_server::{DB_FILE, DataDir, KEY_FILE};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The value a hostile client sends where a password, card number or CVC belongs.
const SECRET: u64 = 4_111_111_111_111_111;
/// A clerk or terminal name that would forge a log line, and clear the real one's line.
const FORGED: &str = "x\nFAKE INFO clerk logged in clerk=root\u{1b}[2K";
/// Longest wait for a child process's verdict, in ms.
const CHILD_MS_MAX: u64 = 20_000;

fn frank() -> Command {
    Command::new(env!("CARGO_BIN_EXE_frank"))
}

fn free_addr() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// A data directory made by `frank vendor init`, with one account and one clerk.
fn init_vendor(dir: &Path) -> (DataDir, String) {
    let out = frank()
        .args(["vendor", "init", "--data"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let data = DataDir::new(dir);
    let mut d = Directory::open(&data.file(DB_FILE)).unwrap();
    let (acct, code) = d
        .add_account("Test Post Office", frank::clock::unix_ms())
        .unwrap();
    d.add_clerk(acct.id, support::CLERK, support::PASSWORD, false, 1)
        .unwrap();
    (data, code)
}

fn envelope(kind: &str, body: Value) -> Vec<u8> {
    let mut out = Vec::new();
    ciborium::into_writer(
        &Value::Map(vec![
            (Value::Text("v".into()), Value::Integer(1.into())),
            (Value::Text("type".into()), Value::Text(kind.into())),
            (Value::Text("body".into()), body),
        ]),
        &mut out,
    )
    .unwrap();
    out
}

fn map(entries: Vec<(&str, Value)>) -> Value {
    Value::Map(
        entries
            .into_iter()
            .map(|(k, v)| (Value::Text(k.into()), v))
            .collect(),
    )
}

/// The refusal a raw request gets.
async fn refusal(conn: &client::VendorConn, bytes: &[u8]) -> frank::wire::ErrorBody {
    let reply = conn.request_raw(bytes).await.unwrap();
    match frank::wire::decode_response::<Value>(&reply) {
        Err(frank::wire::ResponseError::Refused(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Issue 13 item 7: a password, card number or CVC sent as a CBOR integer is not in the
/// vendor log, and a name with a newline or an escape code is refused and never logged raw.
#[tokio::test]
async fn hostile_values_and_forged_lines_never_reach_the_vendor_log() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, code) = init_vendor(&tmp.path().join("vendor"));
    let log = tmp.path().join("vendor.log");
    let addr = free_addr();
    let mut vendor = support::spawn_vendor_serve_logging(&data.path, addr, &[], &log).await;
    let key = data.load().unwrap().public_key;
    let endpoint = support::endpoint();
    let conn = client::connect(&endpoint, addr, key).await.unwrap();

    let secret = Value::Integer(SECRET.into());
    let login = map(vec![
        ("terminal_id", Value::Integer(1.into())),
        ("clerk", Value::Text(support::CLERK.into())),
        ("password", secret.clone()),
        ("proof", Value::Bytes(vec![0; 64])),
    ]);
    let fund = map(vec![
        ("request_id", Value::Bytes(vec![0; 16])),
        ("client_time_ms", Value::Integer(1.into())),
        ("amount_cents", Value::Integer(500.into())),
        (
            "method",
            map(vec![(
                "card",
                map(vec![
                    ("number", secret.clone()),
                    ("exp_month", Value::Integer(12.into())),
                    ("exp_year", Value::Integer(2040.into())),
                    ("cvc", secret.clone()),
                ]),
            )]),
        ),
        ("mac", Value::Bytes(vec![0; 32])),
    ]);
    let e = refusal(&conn, &envelope("login", login)).await;
    assert!(e.message.contains("login.password"), "{}", e.message);
    let e = refusal(&conn, &envelope("fund", fund)).await;
    assert!(e.message.contains("fund.method"), "{}", e.message);
    let e = refusal(&conn, &envelope(&SECRET.to_string(), map(vec![]))).await;
    assert_eq!(e.code, frank::wire::ErrorCode::UnknownType);

    let forged_enroll = frank::wire::Request::Enroll(frank::wire::Enroll {
        code: code.clone(),
        name: FORGED.into(),
        device_key: ed25519_dalek::SigningKey::from_bytes(&[7; 32])
            .verifying_key()
            .to_bytes()
            .to_vec(),
        challenge: vec![1; 8],
    });
    let e = refusal(&conn, &frank::wire::encode_request(&forged_enroll)).await;
    assert!(
        e.message
            .contains("enroll.name must not contain control characters"),
        "{}",
        e.message
    );
    let device = ed25519_dalek::SigningKey::from_bytes(&[8; 32]);
    let enrolled = conn
        .enroll(&code, "counter-1", &device, &key)
        .await
        .unwrap();
    let err = conn
        .login(enrolled.terminal_id, &device, FORGED, "wrong password")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("login.clerk"), "{err}");
    conn.login(
        enrolled.terminal_id,
        &device,
        support::CLERK,
        support::PASSWORD,
    )
    .await
    .unwrap();

    // Let the log reach the file, then stop the vendor.
    tokio::time::sleep(Duration::from_millis(300)).await;
    vendor.kill().await.unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("bad request"), "the log is captured: {text}");
    assert!(text.contains("clerk logged in"), "{text}");
    assert!(!text.contains(&SECRET.to_string()), "{text}");
    assert!(!text.contains("411111111"), "{text}");
    for line in text.lines() {
        assert!(!line.starts_with("FAKE"), "a forged line: {text}");
    }
    assert!(
        !text.contains("\u{1b}[2K"),
        "an escape code reached the log"
    );
}

/// Issue 13 item 8: the data directory is 0700 and its files 0600 (also SQLite's -wal and
/// -shm once serving); a second vendor on it refuses and names the first one's pid.
#[tokio::test]
async fn data_directory_is_private_and_serves_one_vendor() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, _) = init_vendor(&tmp.path().join("vendor"));
    let first = support::spawn_vendor_serve_logging(
        &data.path,
        free_addr(),
        &[],
        &tmp.path().join("first.log"),
    )
    .await;
    assert_eq!(mode(&data.path), 0o700);
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&data.path).unwrap() {
        let p = entry.unwrap().path();
        assert_eq!(mode(&p), 0o600, "{}", p.display());
        names.push(p.file_name().unwrap().to_string_lossy().into_owned());
    }
    for expected in ["vendor.db", "ledger.db", "ledger.db-wal", KEY_FILE, "lock"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }

    let pid = first.id().unwrap();
    let started = Instant::now();
    let second = frank()
        .args(["vendor", "serve", "--data"])
        .arg(&data.path)
        .args(["--listen", &free_addr().to_string()])
        .output()
        .unwrap();
    assert!(!second.status.success());
    assert!(started.elapsed() < Duration::from_millis(CHILD_MS_MAX));
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains(&format!("in use by process {pid}")),
        "{stderr}"
    );
    drop(first);
}

/// The raw public key `openssl` derives from a private key file.
fn openssl_public_key(key: &Path) -> Option<Vec<u8>> {
    let out = Command::new("openssl")
        .args(["pkey", "-in"])
        .arg(key)
        .args(["-pubout", "-outform", "DER"])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "openssl refused {}: {out:?}",
        key.display()
    );
    // SubjectPublicKeyInfo of Ed25519: 12 bytes of header, then the 32-byte key.
    Some(out.stdout[out.stdout.len() - 32..].to_vec())
}

/// An independent check of the PEM when `openssl` is not installed: the DER is exactly
/// RFC 8410's v1 OneAsymmetricKey for Ed25519.
fn check_v1_by_hand(pem: &str) {
    use base64::Engine;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"), "{pem}");
    let der = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let prefix = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04,
        0x20,
    ];
    assert_eq!(der.len(), 48);
    assert_eq!(der[..16], prefix);
}

/// Issue 13 item 8: `openssl pkey` reads the vendor key, and a key written before (PKCS#8 v2,
/// which OpenSSL 3 refuses) is still read and rewritten so that it does.
#[test]
fn the_vendor_key_is_standard_pkcs8_and_old_keys_are_upgraded() {
    use ed25519_dalek::pkcs8::EncodePrivateKey;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vendor");
    let (data, _) = init_vendor(&dir);
    let key_path = data.file(KEY_FILE);
    let fingerprint = |d: &Path| {
        let out = frank()
            .args(["vendor", "fingerprint", "--data"])
            .arg(d)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let fp = fingerprint(&dir);
    let check = |pem_path: &Path| match openssl_public_key(pem_path) {
        Some(public) => assert_eq!(hex::encode(public), fp),
        None => check_v1_by_hand(&std::fs::read_to_string(pem_path).unwrap()),
    };
    check(&key_path);

    // Yesterday's file: the same key as PKCS#8 v2 (with the public key).
    let key = frank::identity::load_key_file(&key_path).unwrap();
    let v2 = key.to_pkcs8_pem(Default::default()).unwrap();
    std::fs::write(&key_path, v2.as_bytes()).unwrap();
    assert_eq!(fingerprint(&dir), fp, "the old form still loads");
    let now = std::fs::read_to_string(&key_path).unwrap();
    assert_ne!(now.trim(), v2.trim(), "and is rewritten");
    assert_eq!(mode(&key_path), 0o600);
    check(&key_path);
}

/// Issue 13 item 10: `frank verify` refuses an image above its pixel limit from the PNG
/// header, before decoding (a 6000 × 6000 PNG compresses to a few KB and would decode to
/// 144 MB of RGBA).
#[test]
fn verify_refuses_an_oversized_png_fast() {
    let tmp = tempfile::tempdir().unwrap();
    let png_path = tmp.path().join("big.png");
    let side = 6000u32;
    let img = image::GrayImage::from_pixel(side, side, image::Luma([255u8]));
    img.save_with_format(&png_path, image::ImageFormat::Png)
        .unwrap();
    assert!(std::fs::metadata(&png_path).unwrap().len() < 1024 * 1024);
    let vendor_key = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
    let started = Instant::now();
    let out = frank()
        .arg("verify")
        .arg(&png_path)
        .args(["--vendor-key", &hex::encode(vendor_key.as_bytes())])
        .output()
        .unwrap();
    let elapsed = started.elapsed();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("6000 × 6000 pixels"), "{stderr}");
    assert!(
        stderr.contains(&frank::indicium::verify::PNG_PIXELS_MAX.to_string()),
        "{stderr}"
    );
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");
}

/// Issue 13 item 10: `frank kiosk-pin` prints a salted argon2id line that the counter reads
/// and that accepts the PIN; a PIN the kiosk prompt cannot type is refused.
#[test]
fn kiosk_pin_prints_a_salted_argon2id_line() {
    let line = |pin: &str| {
        frank()
            .arg("kiosk-pin")
            .env("FRANK_PASSWORD", pin)
            .output()
            .unwrap()
    };
    let out = line("2468");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let phc = text
        .trim()
        .strip_prefix("supervisor_pin_argon2id = \"")
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{text}"));
    let hash = frank::ui::app::PinHash::parse(phc).unwrap();
    assert!(hash.verify("2468") && !hash.verify("2469"));
    let again = String::from_utf8(line("2468").stdout).unwrap();
    assert_ne!(again, text, "salted: a new hash each time");
    let refused = line("12ab");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("digits only"));
}
