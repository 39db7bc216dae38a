//! `frank verify`: checks a printed indicium independently, offline; with `--vendor`, also
//! asks the vendor (pinned to the key that signed it) for the piece's state (`scan`).

use super::layout::{Indicium, Subject};
use super::verify::{VendorKeys, payload_from_png, verify_payload};
use crate::counter::client;
use crate::wire::Scanned;
use anyhow::Context;
use base64::Engine;
use clap::Args;
use std::path::Path;

/// Largest input file read, in bytes (a label PNG is far smaller).
pub const INPUT_FILE_BYTES_MAX: u64 = 32 << 20;

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A PNG of the label (path), or the payload as hex or base64.
    pub input: String,
    /// Vendor key: the 64-hex fingerprint (raw Ed25519 public key), or a file holding it or a
    /// PEM public key. Repeat for several keys.
    #[arg(
        long = "vendor-key",
        value_name = "FINGERPRINT_OR_FILE",
        required = true
    )]
    pub vendor_key: Vec<String>,
    /// Also ask this vendor (HOST:PORT; its key pinned to the one that signed the indicium)
    /// for the piece's state, recording the scan: exits non-zero on fraud (a voided or
    /// refunded piece) or a piece the vendor does not know.
    #[arg(long, value_name = "ADDR")]
    pub vendor: Option<String>,
    /// A text file of the item's fields as read off the paper (`LABEL: value` lines, as the
    /// face prints them; docs/INDICIUM.md §Printed faces): their digest is recomputed and
    /// compared with the indicium's kind digest. Exits non-zero when they differ.
    #[arg(long, value_name = "FILE")]
    pub fields: Option<std::path::PathBuf>,
}

/// The `--fields` lines for an indicium: the digest of the fields read off the paper and
/// whether it is the indicium's (`Err`: the fields do not make an item of its kind).
pub fn check_fields(ind: &Indicium, text: &str) -> anyhow::Result<(Vec<String>, bool)> {
    let Subject::Item(d) = &ind.body.subject else {
        anyhow::bail!("--fields: {}", super::face::FieldsError::Postage);
    };
    let item = super::face::parse_fields(d.kind(), text).context("--fields")?;
    let digest = item.digest();
    let matches = &digest == d.digest();
    let mut lines: Vec<String> = super::face::canonical_fields(&item)
        .into_iter()
        .map(|(l, v)| format!("field {l}: {v}"))
        .collect();
    lines.push(format!("fields_digest: {}", hex::encode(digest)));
    lines.push(format!(
        "fields: {}",
        if matches {
            "MATCH (the printed fields are the ones signed)"
        } else {
            "MISMATCH (the printed fields are not the ones signed)"
        }
    ));
    Ok((lines, matches))
}

fn read_capped(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .len();
    if len > INPUT_FILE_BYTES_MAX {
        anyhow::bail!(
            "{} is {len} bytes; the limit is {INPUT_FILE_BYTES_MAX} bytes",
            path.display()
        );
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Reads `--vendor-key` values: a fingerprint, or a file with a fingerprint or PEM key.
pub fn load_vendor_keys(values: &[String]) -> anyhow::Result<VendorKeys> {
    let mut keys = VendorKeys::new();
    for v in values {
        let path = Path::new(v);
        let text = if path.is_file() {
            String::from_utf8(read_capped(path)?)
                .with_context(|| format!("{}: not a text key file", path.display()))?
        } else {
            v.clone()
        };
        keys.add_text(&text)
            .with_context(|| format!("--vendor-key {v}"))?;
    }
    Ok(keys)
}

/// Turns the input into payload bytes: a PNG file, or hex, or base64.
pub fn payload_from_input(input: &str) -> anyhow::Result<Vec<u8>> {
    let path = Path::new(input);
    if path.is_file() {
        let bytes = read_capped(path)?;
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            return Ok(payload_from_png(&bytes)?);
        }
        let text = String::from_utf8(bytes)
            .with_context(|| format!("{input}: neither a PNG nor a hex/base64 text file"))?;
        return payload_from_text(&text);
    }
    if input.to_ascii_lowercase().ends_with(".png") {
        anyhow::bail!("{input}: no such file");
    }
    payload_from_text(input)
}

fn payload_from_text(text: &str) -> anyhow::Result<Vec<u8>> {
    let t: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if t.len().is_multiple_of(2) && t.chars().all(|c| c.is_ascii_hexdigit()) {
        return Ok(hex::decode(&t)?);
    }
    base64::engine::general_purpose::STANDARD
        .decode(&t)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&t))
        .context("input is not a PNG file, hex or base64")
}

/// Every decoded field, one `name: value` line each.
pub fn describe(ind: &Indicium) -> Vec<String> {
    let b = &ind.body;
    let mut out = vec![
        format!("version: {}", super::layout::VERSION),
        "algorithm: 1 (Ed25519)".to_string(),
        format!("vendor_key_id: {}", b.key_id),
        format!("meter_serial: {}", b.meter_serial),
        format!("license_id: {}", b.license_id),
        format!("piece_serial: {}", b.piece_serial),
        format!("ascending_register: {}", b.ascending),
        format!("descending_register: {}", b.descending),
        format!("amount: {}", b.amount),
        format!("date: {}", b.date),
        format!("origin_zip: {}", b.origin),
    ];
    match &b.subject {
        Subject::Postage { class, destination } => {
            out.push(format!("destination: {destination}"));
            out.push(format!("mail_class: {class}"));
            out.push(format!("software_id: {}", b.software_id));
            out.push("item_kind: postage".to_string());
        }
        Subject::Item(d) => {
            out.push("destination: none".to_string());
            out.push("mail_class: none".to_string());
            out.push(format!("software_id: {}", b.software_id));
            out.push(format!("item_kind: {}", d.kind()));
            out.push(format!("kind_digest: {}", hex::encode(d.digest())));
        }
    }
    out.push(format!("signature: {}", hex::encode(ind.signature)));
    out
}

/// Longest the online check may take (connect + one request), in milliseconds.
pub const ONLINE_CHECK_MS_MAX: u64 = 15_000;

/// Asks the vendor at `addr`, pinned to `pinned`, for the piece's state (`scan`).
pub fn scan_online(addr: &str, pinned: &[u8; 32], payload: &[u8]) -> anyhow::Result<Scanned> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(pinned)
        .map_err(|_| anyhow::anyhow!("the vendor key is not a valid Ed25519 public key"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let sock = tokio::net::lookup_host(addr)
            .await
            .with_context(|| format!("--vendor {addr}: not a reachable HOST:PORT"))?
            .next()
            .ok_or_else(|| anyhow::anyhow!("--vendor {addr}: the name has no address"))?;
        let endpoint = client::endpoint_for(sock)?;
        let work = async {
            let conn = client::connect(&endpoint, sock, key).await?;
            let r = conn.scan(payload).await;
            conn.conn.close(quinn::VarInt::from_u32(0), b"verified");
            r
        };
        let r = tokio::time::timeout(std::time::Duration::from_millis(ONLINE_CHECK_MS_MAX), work)
            .await
            .map_err(|_| {
                anyhow::anyhow!("--vendor {addr}: no answer within {ONLINE_CHECK_MS_MAX} ms")
            })?;
        endpoint.close(quinn::VarInt::from_u32(0), b"done");
        r.with_context(|| format!("--vendor {addr}"))
    })
}

/// The online lines, and the failure when the piece must not be accepted: fraud (voided,
/// refunded, not as issued) or a piece the vendor does not know.
pub fn describe_scan(s: &Scanned) -> (Vec<String>, Option<String>) {
    let yes = |b: bool| if b { "yes" } else { "no" };
    let mut out = vec![
        format!("vendor_state: {}", s.state),
        format!("scanned_before: {}", yes(s.scanned_before)),
    ];
    if s.refund_rejected {
        out.push("refund_request: rejected by this scan".to_string());
    }
    out.push(format!("fraud: {}", yes(s.fraud)));
    let n = s.piece_serial;
    let failure = if s.fraud {
        let what = match s.state.as_str() {
            "voided" => "was voided".to_string(),
            "refunded" => "was refunded".to_string(),
            "not_as_issued" => "is not what the vendor issued under that serial".to_string(),
            other => format!("is {other}"),
        };
        Some(format!("fraud: piece {n} {what}"))
    } else if s.state == "unknown" {
        Some(format!(
            "unknown piece: the vendor holds no piece {n} of meter {}",
            s.meter
        ))
    } else {
        None
    };
    (out, failure)
}

pub fn run(args: VerifyArgs) -> anyhow::Result<()> {
    let keys = load_vendor_keys(&args.vendor_key)?;
    let payload = payload_from_input(&args.input)?;
    match verify_payload(&payload, &keys) {
        Ok(v) => {
            for line in describe(&v.indicium) {
                println!("{line}");
            }
            println!("vendor_key: {}", hex::encode(v.public_key));
            if let Some(path) = &args.fields {
                let text = String::from_utf8(read_capped(path)?)
                    .with_context(|| format!("{}: not a text file", path.display()))?;
                let (lines, matches) = check_fields(&v.indicium, &text)?;
                for line in lines {
                    println!("{line}");
                }
                if !matches {
                    println!("result: INVALID (fields mismatch)");
                    anyhow::bail!("the printed fields do not match the indicium's digest");
                }
            }
            if let Some(addr) = &args.vendor {
                // Pin the key that signed the indicium: only its vendor can answer for it.
                let scanned = scan_online(addr, &v.public_key, &payload)?;
                let (lines, failure) = describe_scan(&scanned);
                for line in lines {
                    println!("{line}");
                }
                if let Some(f) = failure {
                    println!("result: INVALID ({f})");
                    anyhow::bail!("{f}");
                }
            }
            println!("result: VALID");
            Ok(())
        }
        Err(e) => {
            // Print what could be decoded, so the verifier sees what was claimed. A payload
            // that fails offline is never sent to a vendor.
            if let Ok(ind) = Indicium::decode(&payload) {
                for line in describe(&ind) {
                    println!("{line}");
                }
            }
            println!("result: INVALID ({})", e.check());
            Err(anyhow::anyhow!("verification failed: {e}"))
        }
    }
}
