//! Offline verification: payload bytes (or a PNG of a label) + known vendor keys -> the decoded,
//! signature-checked indicium, or the failing check by name.

use super::layout::{Indicium, KeyId, LayoutError};
use ed25519_dalek::{Signature, VerifyingKey};
use std::collections::HashMap;
use std::fmt;

/// Vendor public keys this verifier trusts, found by key id.
#[derive(Clone, Default)]
pub struct VendorKeys {
    by_id: HashMap<KeyId, VerifyingKey>,
}

impl fmt::Debug for VendorKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.by_id.keys()).finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VendorKeyError {
    #[error(
        "vendor key: expected 64 hex characters (the raw Ed25519 public key), got {0} characters"
    )]
    Length(usize),
    #[error("vendor key: not hexadecimal")]
    NotHex,
    #[error("vendor key: not a valid Ed25519 public key")]
    NotAPoint,
    #[error("vendor key: not a PEM Ed25519 public key")]
    NotPem,
}

impl VendorKeys {
    pub fn new() -> VendorKeys {
        VendorKeys::default()
    }

    /// Adds a raw 32-byte Ed25519 public key; returns its key id.
    pub fn add(&mut self, public_key: &[u8; 32]) -> Result<KeyId, VendorKeyError> {
        let key = VerifyingKey::from_bytes(public_key).map_err(|_| VendorKeyError::NotAPoint)?;
        let id = KeyId::of_public_key(public_key);
        self.by_id.insert(id, key);
        Ok(id)
    }

    /// Adds a key given as a fingerprint (64 hex chars) or a PEM `PUBLIC KEY` block.
    pub fn add_text(&mut self, text: &str) -> Result<KeyId, VendorKeyError> {
        let t = text.trim();
        if t.starts_with("-----BEGIN") {
            use ed25519_dalek::pkcs8::DecodePublicKey;
            let key = VerifyingKey::from_public_key_pem(t).map_err(|_| VendorKeyError::NotPem)?;
            return self.add(&key.to_bytes());
        }
        if t.len() != 64 {
            return Err(VendorKeyError::Length(t.len()));
        }
        let mut raw = [0u8; 32];
        hex::decode_to_slice(t, &mut raw).map_err(|_| VendorKeyError::NotHex)?;
        self.add(&raw)
    }

    pub fn get(&self, id: &KeyId) -> Option<&VerifyingKey> {
        self.by_id.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
}

/// The check that failed. The Display names it first: `malformed layout`, `unknown version`,
/// `unknown algorithm`, `unknown key`, `bad signature`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("{0}")]
    Layout(#[from] LayoutError),
    #[error("unknown key: key id {0} is not among the vendor keys given")]
    UnknownKey(KeyId),
    #[error("bad signature: the signature does not match the data under vendor key {0}")]
    BadSignature(KeyId),
}

impl VerifyError {
    /// Short name of the failing check.
    pub fn check(&self) -> &'static str {
        match self {
            VerifyError::Layout(LayoutError::UnknownVersion(_)) => "unknown version",
            VerifyError::Layout(LayoutError::UnknownAlgorithm(_)) => "unknown algorithm",
            VerifyError::Layout(_) => "malformed layout",
            VerifyError::UnknownKey(_) => "unknown key",
            VerifyError::BadSignature(_) => "bad signature",
        }
    }
}

/// An indicium whose layout and signature checked out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedIndicium {
    pub indicium: Indicium,
    /// The vendor key that signed it.
    pub public_key: [u8; 32],
}

/// Decodes `payload` strictly and checks its signature against `keys`.
pub fn verify_payload(payload: &[u8], keys: &VendorKeys) -> Result<VerifiedIndicium, VerifyError> {
    let indicium = Indicium::decode(payload)?;
    let key_id = indicium.body.key_id;
    let key = keys.get(&key_id).ok_or(VerifyError::UnknownKey(key_id))?;
    let body_len = indicium.body.len_bytes();
    let signature = Signature::from_bytes(&indicium.signature);
    key.verify_strict(&payload[..body_len], &signature)
        .map_err(|_| VerifyError::BadSignature(key_id))?;
    Ok(VerifiedIndicium {
        indicium,
        public_key: key.to_bytes(),
    })
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    #[error("not a readable PNG image: {0}")]
    Image(String),
    #[error("no Data Matrix found in the image: {0}")]
    NoSymbol(String),
    #[error("the Data Matrix holds text outside Latin-1, not an indicium payload")]
    NotBinary,
}

/// Finds and decodes the Data Matrix in a PNG; returns its raw payload bytes.
pub fn payload_from_png(png: &[u8]) -> Result<Vec<u8>, ScanError> {
    let img = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .map_err(|e| ScanError::Image(e.to_string()))?
        .to_luma8();
    let (width, height) = img.dimensions();
    payload_from_luma(img.into_raw(), width, height)
}

/// Finds and decodes the Data Matrix in an 8-bit grayscale image (row-major, `width` per row).
pub fn payload_from_luma(luma: Vec<u8>, width: u32, height: u32) -> Result<Vec<u8>, ScanError> {
    use rxing::{BarcodeFormat, DecodeHints};
    let mut hints = DecodeHints::default();
    let result = rxing::helpers::detect_in_luma_with_hints(
        luma,
        width,
        height,
        Some(BarcodeFormat::DATA_MATRIX),
        &mut hints,
    )
    .map_err(|e| ScanError::NoSymbol(e.to_string()))?;
    payload_of(&result)
}

/// Every Data Matrix payload on a PNG holding several items (a strip of labels, a sheet).
pub fn payloads_from_png(png: &[u8]) -> Result<Vec<Vec<u8>>, ScanError> {
    use rxing::{BarcodeFormat, DecodeHints};
    let img = image::load_from_memory_with_format(png, image::ImageFormat::Png)
        .map_err(|e| ScanError::Image(e.to_string()))?
        .to_luma8();
    let (width, height) = img.dimensions();
    let mut hints = DecodeHints::default();
    let results = rxing::helpers::detect_multiple_in_luma_with_hints(
        img.into_raw(),
        width,
        height,
        &mut hints,
    )
    .map_err(|e| ScanError::NoSymbol(e.to_string()))?;
    results
        .iter()
        .filter(|r| *r.getBarcodeFormat() == BarcodeFormat::DATA_MATRIX)
        .map(payload_of)
        .collect()
}

/// The payload bytes of one decoded symbol.
fn payload_of(result: &rxing::RXingResult) -> Result<Vec<u8>, ScanError> {
    use rxing::{RXingResultMetadataType, RXingResultMetadataValue};
    // Frank encodes the whole payload as one Base 256 segment; rxing reports it verbatim.
    if let Some(RXingResultMetadataValue::ByteSegments(segments)) = result
        .getRXingResultMetadata()
        .get(&RXingResultMetadataType::BYTE_SEGMENTS)
        && let [only] = segments.as_slice()
    {
        return Ok(only.clone());
    }
    // Otherwise the text is the Latin-1 reading of the bytes.
    result
        .getText()
        .chars()
        .map(|c| u8::try_from(u32::from(c)).map_err(|_| ScanError::NotBinary))
        .collect()
}
