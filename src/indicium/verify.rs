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

/// Largest image `frank verify` decodes, in pixels (width × height): 16 Mi pixels, e.g.
/// 576 × 29,127 (a 3.6 m strip of 80 mm labels at 203 dpi) or 4096 × 4096. Checked from the PNG
/// header before any pixel is decoded; decoding one takes at most 64 MiB (RGBA) plus 16 MiB
/// (gray).
pub const PNG_PIXELS_MAX: u64 = 16 * 1024 * 1024;
/// Longest side `frank verify` decodes, in pixels.
pub const PNG_SIDE_PIXELS_MAX: u32 = 65_536;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScanError {
    #[error("not a readable PNG image: {0}")]
    Image(String),
    #[error(
        "the image is {width} × {height} pixels; frank verify reads images of at most {PNG_PIXELS_MAX} pixels and {PNG_SIDE_PIXELS_MAX} per side: crop it to the label"
    )]
    TooLarge { width: u32, height: u32 },
    #[error("no Data Matrix found in the image: {0}")]
    NoSymbol(String),
    #[error("the Data Matrix holds text outside Latin-1, not an indicium payload")]
    NotBinary,
}

/// The width and height a PNG's header (its IHDR chunk) declares, read without decoding.
pub fn png_dimensions(png: &[u8]) -> Result<(u32, u32), ScanError> {
    const SIGNATURE: &[u8] = b"\x89PNG\r\n\x1a\n";
    // Signature (8), IHDR length (4) = 13, "IHDR" (4), width (4), height (4).
    let header = png
        .get(..24)
        .ok_or_else(|| ScanError::Image("shorter than a PNG header".into()))?;
    if &header[..8] != SIGNATURE || header[8..12] != [0, 0, 0, 13] || &header[12..16] != b"IHDR" {
        return Err(ScanError::Image("no PNG header (IHDR) at its start".into()));
    }
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    Ok((be(&header[16..20]), be(&header[20..24])))
}

/// Decodes a PNG to 8-bit gray, refusing before decoding one larger than [`PNG_PIXELS_MAX`].
fn png_luma(png: &[u8]) -> Result<image::GrayImage, ScanError> {
    let (width, height) = png_dimensions(png)?;
    if u64::from(width) * u64::from(height) > PNG_PIXELS_MAX
        || width > PNG_SIDE_PIXELS_MAX
        || height > PNG_SIDE_PIXELS_MAX
    {
        return Err(ScanError::TooLarge { width, height });
    }
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(PNG_SIDE_PIXELS_MAX);
    limits.max_image_height = Some(PNG_SIDE_PIXELS_MAX);
    // RGBA at 16 bits per channel is the largest decoded form: 8 bytes per pixel.
    limits.max_alloc = Some(PNG_PIXELS_MAX * 8);
    let mut reader =
        image::ImageReader::with_format(std::io::Cursor::new(png), image::ImageFormat::Png);
    reader.limits(limits);
    Ok(reader
        .decode()
        .map_err(|e| ScanError::Image(e.to_string()))?
        .to_luma8())
}

/// Finds and decodes the Data Matrix in a PNG; returns its raw payload bytes.
pub fn payload_from_png(png: &[u8]) -> Result<Vec<u8>, ScanError> {
    let img = png_luma(png)?;
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
    let img = png_luma(png)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(width: u32, height: u32) -> Vec<u8> {
        let mut png = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        png.extend_from_slice(&width.to_be_bytes());
        png.extend_from_slice(&height.to_be_bytes());
        png.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0, 0, 0]);
        png
    }

    /// Issue 13: an image above the pixel limit is refused from its header, before decoding.
    #[test]
    fn oversized_images_are_refused_before_decoding() {
        assert_eq!(png_dimensions(&header(576, 800)), Ok((576, 800)));
        for (w, h) in [
            (100_000, 100_000),
            (4097, 4097),
            (PNG_SIDE_PIXELS_MAX + 1, 1),
        ] {
            assert_eq!(
                payload_from_png(&header(w, h)),
                Err(ScanError::TooLarge {
                    width: w,
                    height: h
                }),
                "{w}x{h}"
            );
            assert!(payloads_from_png(&header(w, h)).is_err());
        }
        for bad in [&b"\x89PNG"[..], &b"GIF89a.................."[..]] {
            assert!(matches!(png_dimensions(bad), Err(ScanError::Image(_))));
        }
        let msg = ScanError::TooLarge {
            width: 9,
            height: 9,
        }
        .to_string();
        assert!(msg.contains(&PNG_PIXELS_MAX.to_string()), "{msg}");
    }
}
