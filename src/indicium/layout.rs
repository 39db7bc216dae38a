//! Indicium layout v1: the compact binary the Data Matrix carries. Documented byte by byte in
//! docs/INDICIUM.md; keep the two in step.
//!
//! [`IndiciumBody::to_bytes`] writes the signed part; [`Indicium::to_bytes`] appends the
//! 64-byte Ed25519 signature. [`Indicium::decode`] is strict: exact length, every field range
//! checked, every error naming the field. It does not check the signature (see `verify`).

use super::FieldError;
use super::address::{DeliveryPoint, Zip4, Zip5};
use super::kinds::{Day, Destination, Item, ItemKind, MailClass};
use crate::money::Cents;
use std::fmt;

/// The only layout version this build writes and reads.
pub const VERSION: u8 = 1;
/// Algorithm id 1 = Ed25519 (RFC 8032, pure, over the body bytes).
pub const ALGORITHM_ED25519: u8 = 1;
/// Bytes of the signed body for postage (no kind digest).
pub const BODY_BYTES_POSTAGE: usize = 78;
/// Bytes of the signed body for non-postage items (with the 32-byte kind digest).
pub const BODY_BYTES_ITEM: usize = BODY_BYTES_POSTAGE + 32;
pub const SIGNATURE_BYTES: usize = 64;
/// Longest payload of layout v1, in bytes.
pub const PAYLOAD_BYTES_MAX: usize = BODY_BYTES_ITEM + SIGNATURE_BYTES;

// Field offsets (see docs/INDICIUM.md).
const OFF_KEY_ID: usize = 2;
const OFF_METER: usize = 6;
const OFF_LICENSE: usize = 18;
const OFF_SERIAL: usize = 22;
const OFF_ASC: usize = 30;
const OFF_DESC: usize = 38;
const OFF_AMOUNT: usize = 46;
const OFF_DATE: usize = 54;
const OFF_ORIGIN: usize = 56;
const OFF_DEST: usize = 61;
const OFF_CLASS: usize = 72;
const OFF_SOFTWARE: usize = 73;
const OFF_KIND: usize = 77;
const OFF_DIGEST: usize = 78;

/// First 4 bytes of SHA-256(vendor Ed25519 public key).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; 4]);

impl KeyId {
    pub fn of_public_key(public_key: &[u8; 32]) -> KeyId {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(public_key);
        KeyId([h[0], h[1], h[2], h[3]])
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Longest meter (PSD) serial, in ASCII characters.
pub const METER_SERIAL_CHARS_MAX: usize = 12;

/// Meter (postal security device) serial: 1..=12 characters of `A-Z 0-9`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MeterSerial {
    bytes: [u8; METER_SERIAL_CHARS_MAX],
    len: u8,
}

impl MeterSerial {
    pub fn new(text: &str) -> Result<MeterSerial, FieldError> {
        let b = text.as_bytes();
        if b.is_empty() || b.len() > METER_SERIAL_CHARS_MAX {
            return Err(FieldError::new(
                "meter_serial",
                format!(
                    "must be 1..={METER_SERIAL_CHARS_MAX} characters, got {}",
                    b.len()
                ),
            ));
        }
        if !b
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            return Err(FieldError::new(
                "meter_serial",
                format!("{text:?} may hold only A-Z and 0-9"),
            ));
        }
        let mut bytes = [0u8; METER_SERIAL_CHARS_MAX];
        bytes[..b.len()].copy_from_slice(b);
        // b.len() <= 12, fits u8.
        Ok(MeterSerial {
            bytes,
            len: b.len() as u8,
        })
    }

    fn from_field(raw: &[u8]) -> Result<MeterSerial, FieldError> {
        let len = raw.iter().position(|&c| c == 0).unwrap_or(raw.len());
        if raw[len..].iter().any(|&c| c != 0) {
            return Err(FieldError::new(
                "meter_serial",
                "padding after the serial must be all 0x00",
            ));
        }
        let text = std::str::from_utf8(&raw[..len])
            .map_err(|_| FieldError::new("meter_serial", "not ASCII"))?;
        MeterSerial::new(text)
    }

    pub fn as_str(&self) -> &str {
        // A-Z0-9 only, by construction.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or("")
    }
}

impl fmt::Display for MeterSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for MeterSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MeterSerial({})", self.as_str())
    }
}

/// The vendor's license id for the account (u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LicenseId(pub u32);

impl fmt::Display for LicenseId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Piece serial: unique and increasing per meter, starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PieceSerial(u64);

impl PieceSerial {
    pub fn new(n: u64) -> Result<PieceSerial, FieldError> {
        if n == 0 {
            return Err(FieldError::new("piece_serial", "must be 1 or more"));
        }
        Ok(PieceSerial(n))
    }

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for PieceSerial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The one number of an issued item, as its label prints it under the indicium: the meter
/// serial, a space, `#` and the piece serial — `FRK10000001 #9` (docs/INDICIUM.md §Symbol and
/// rendering). Every screen, receipt, report, history search and supervisor command shows and
/// takes this form; [`fmt::Display`] is the one place that writes it and [`PieceNumber::parse`]
/// the one place that reads it.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct PieceNumber {
    /// The meter (PSD) serial, `A-Z0-9`, e.g. `FRK10000001`.
    pub meter: String,
    /// The piece serial, 1 or more.
    pub serial: u64,
}

impl PieceNumber {
    pub fn new(meter: impl Into<String>, serial: u64) -> PieceNumber {
        PieceNumber {
            meter: meter.into(),
            serial,
        }
    }

    /// Reads a number as printed (`FRK10000001 #9`); also without the space or the `#`
    /// (`FRK10000001#9`, `FRK10000001 9`), in any letter case, as a clerk may type it.
    /// `None` for anything else.
    pub fn parse(text: &str) -> Option<PieceNumber> {
        let text = text.trim();
        let split = text.find([' ', '#'])?;
        let (meter, rest) = text.split_at(split);
        let serial = rest.trim_start_matches([' ', '#']);
        let meter = meter.to_ascii_uppercase();
        MeterSerial::new(&meter).ok()?;
        if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let serial: u64 = serial.parse().ok()?;
        PieceSerial::new(serial).ok()?;
        Some(PieceNumber { meter, serial })
    }

    /// Whether a search text a clerk typed finds this number: a part of its printed form
    /// (any letter case), or its piece serial alone.
    pub fn matches(&self, query: &str) -> bool {
        let q = query.trim();
        if q.is_empty() {
            return true;
        }
        if let Some(n) = PieceNumber::parse(q) {
            return n == *self;
        }
        let q = q.trim_start_matches('#');
        self.to_string()
            .to_ascii_uppercase()
            .contains(&q.to_ascii_uppercase())
    }
}

impl IndiciumBody {
    /// The piece's one number, as every label, screen, receipt and report shows it.
    pub fn number(&self) -> PieceNumber {
        PieceNumber::new(self.meter_serial.as_str(), self.piece_serial.get())
    }
}

impl fmt::Display for PieceNumber {
    /// `FRK10000001 #9`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} #{}", self.meter, self.serial)
    }
}

/// Software id: 4 characters of `A-Z 0-9`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SoftwareId([u8; 4]);

impl SoftwareId {
    /// This software, layout version 1.
    pub const FRANK: SoftwareId = SoftwareId(*b"FRK1");

    pub fn new(bytes: [u8; 4]) -> Result<SoftwareId, FieldError> {
        if bytes
            .iter()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        {
            Ok(SoftwareId(bytes))
        } else {
            Err(FieldError::new(
                "software_id",
                "must be 4 characters of A-Z and 0-9",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        // A-Z0-9 by construction.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for SoftwareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for SoftwareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SoftwareId({})", self.as_str())
    }
}

/// Kind and kind-fields digest of a non-postage item. Never postage, by construction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ItemDigest {
    kind: ItemKind,
    digest: [u8; 32],
}

impl ItemDigest {
    pub fn kind(&self) -> ItemKind {
        self.kind
    }

    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

/// What the indicium pays for: a mail piece (class + destination) or another item (digest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject {
    Postage {
        class: MailClass,
        destination: Destination,
    },
    Item(ItemDigest),
}

impl Subject {
    pub fn of(item: &Item) -> Subject {
        match item {
            Item::Postage(p) => Subject::Postage {
                class: p.class,
                destination: p.destination,
            },
            other => Subject::Item(ItemDigest {
                kind: other.kind(),
                digest: other.digest(),
            }),
        }
    }

    pub fn kind(&self) -> ItemKind {
        match self {
            Subject::Postage { .. } => ItemKind::Postage,
            Subject::Item(d) => d.kind,
        }
    }
}

/// Everything the signature covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndiciumBody {
    pub key_id: KeyId,
    pub meter_serial: MeterSerial,
    pub license_id: LicenseId,
    pub piece_serial: PieceSerial,
    /// Ascending register after this piece: all value ever issued by this meter.
    pub ascending: Cents,
    /// Descending register after this piece: funds left.
    pub descending: Cents,
    pub amount: Cents,
    pub date: Day,
    pub origin: Zip5,
    pub software_id: SoftwareId,
    pub subject: Subject,
}

/// A signed indicium.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Indicium {
    pub body: IndiciumBody,
    pub signature: [u8; 64],
}

impl fmt::Debug for Indicium {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Indicium")
            .field("body", &self.body)
            .field("signature", &hex::encode(self.signature))
            .finish()
    }
}

/// Why bytes are not a layout-v1 indicium.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LayoutError {
    #[error("unknown version {0} (this build reads version {VERSION})")]
    UnknownVersion(u8),
    #[error("unknown algorithm id {0} (this build knows {ALGORITHM_ED25519} = Ed25519)")]
    UnknownAlgorithm(u8),
    #[error("malformed layout: payload is {found} bytes; {what} is {expected} bytes")]
    Length {
        what: &'static str,
        expected: usize,
        found: usize,
    },
    #[error("malformed layout: field {0}")]
    Field(#[from] FieldError),
}

/// The 11-byte destination field: ZIP5, ZIP4, delivery point as ASCII digits, 0x00 where
/// absent; all 0x00 when there is no destination.
pub fn destination_bytes(dest: Option<&Destination>) -> [u8; 11] {
    let mut out = [0u8; 11];
    if let Some(d) = dest {
        out[..5].copy_from_slice(d.zip5().as_bytes());
        if let Some(z4) = d.zip4() {
            out[5..9].copy_from_slice(z4.as_bytes());
        }
        if let Some(dp) = d.delivery_point() {
            out[9..11].copy_from_slice(dp.as_bytes());
        }
    }
    out
}

impl IndiciumBody {
    /// Length of the signed body.
    pub fn len_bytes(&self) -> usize {
        match self.subject {
            Subject::Postage { .. } => BODY_BYTES_POSTAGE,
            Subject::Item(_) => BODY_BYTES_ITEM,
        }
    }

    /// Writes the signed body into `out` (appending).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        out.push(ALGORITHM_ED25519);
        out.extend_from_slice(&self.key_id.0);
        out.extend_from_slice(&self.meter_serial.bytes);
        out.extend_from_slice(&self.license_id.0.to_be_bytes());
        out.extend_from_slice(&self.piece_serial.0.to_be_bytes());
        out.extend_from_slice(&self.ascending.get().to_be_bytes());
        out.extend_from_slice(&self.descending.get().to_be_bytes());
        out.extend_from_slice(&self.amount.get().to_be_bytes());
        out.extend_from_slice(&self.date.days().to_be_bytes());
        out.extend_from_slice(self.origin.as_bytes());
        match &self.subject {
            Subject::Postage { class, destination } => {
                out.extend_from_slice(&destination_bytes(Some(destination)));
                out.push(class.code());
                out.extend_from_slice(&self.software_id.0);
                out.push(ItemKind::Postage.code());
            }
            Subject::Item(d) => {
                out.extend_from_slice(&destination_bytes(None));
                out.push(0);
                out.extend_from_slice(&self.software_id.0);
                out.push(d.kind.code());
                out.extend_from_slice(&d.digest);
            }
        }
    }

    /// The signed body bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PAYLOAD_BYTES_MAX);
        self.write(&mut out);
        out
    }
}

fn be_u64(b: &[u8], off: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[off..off + 8]);
    u64::from_be_bytes(a)
}

fn cents(b: &[u8], off: usize, field: &'static str) -> Result<Cents, FieldError> {
    let v = be_u64(b, off);
    Cents::new(v).map_err(|e| FieldError::new(field, e.to_string()))
}

fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&b[off..off + N]);
    a
}

fn decode_destination(raw: [u8; 11]) -> Result<Option<Destination>, FieldError> {
    let bad = |why: &str| FieldError::new("destination", why.to_string());
    if raw.iter().all(|&c| c == 0) {
        return Ok(None);
    }
    let zip5 = Zip5::from_ascii(arr(&raw, 0)).map_err(|_| bad("ZIP must be 5 digits"))?;
    let z4: [u8; 4] = arr(&raw, 5);
    let dp: [u8; 2] = arr(&raw, 9);
    let zip4 = if z4 == [0; 4] {
        None
    } else {
        Some(Zip4::from_ascii(z4).map_err(|_| bad("ZIP+4 must be 4 digits or all 0x00"))?)
    };
    let dp = if dp == [0; 2] {
        None
    } else {
        Some(
            DeliveryPoint::from_ascii(dp)
                .map_err(|_| bad("delivery point must be 2 digits or 0x00 0x00"))?,
        )
    };
    Destination::new(zip5, zip4, dp)
        .map(Some)
        .map_err(|e| bad(&e.reason))
}

impl Indicium {
    /// Payload bytes: body then signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(PAYLOAD_BYTES_MAX);
        self.body.write(&mut out);
        out.extend_from_slice(&self.signature);
        out
    }

    /// Strictly decodes a layout-v1 payload. Does not verify the signature.
    pub fn decode(b: &[u8]) -> Result<Indicium, LayoutError> {
        let Some(&version) = b.first() else {
            return Err(LayoutError::Length {
                what: "the shortest version-1 indicium",
                expected: BODY_BYTES_POSTAGE + SIGNATURE_BYTES,
                found: 0,
            });
        };
        if version != VERSION {
            return Err(LayoutError::UnknownVersion(version));
        }
        if b.len() < 2 {
            return Err(LayoutError::Length {
                what: "the shortest version-1 indicium",
                expected: BODY_BYTES_POSTAGE + SIGNATURE_BYTES,
                found: b.len(),
            });
        }
        if b[1] != ALGORITHM_ED25519 {
            return Err(LayoutError::UnknownAlgorithm(b[1]));
        }
        if b.len() < BODY_BYTES_POSTAGE + SIGNATURE_BYTES {
            return Err(LayoutError::Length {
                what: "the shortest version-1 indicium",
                expected: BODY_BYTES_POSTAGE + SIGNATURE_BYTES,
                found: b.len(),
            });
        }
        let kind = ItemKind::from_code(b[OFF_KIND]).ok_or_else(|| {
            FieldError::new("item_kind", format!("unknown kind code {}", b[OFF_KIND]))
        })?;
        let (body_len, what) = match kind {
            ItemKind::Postage => (BODY_BYTES_POSTAGE, "a version-1 postage indicium"),
            _ => (BODY_BYTES_ITEM, "a version-1 non-postage indicium"),
        };
        if b.len() != body_len + SIGNATURE_BYTES {
            return Err(LayoutError::Length {
                what,
                expected: body_len + SIGNATURE_BYTES,
                found: b.len(),
            });
        }
        let meter_serial = MeterSerial::from_field(&b[OFF_METER..OFF_LICENSE])?;
        let license_id = LicenseId(u32::from_be_bytes(arr(b, OFF_LICENSE)));
        let piece_serial = PieceSerial::new(be_u64(b, OFF_SERIAL))?;
        let ascending = cents(b, OFF_ASC, "ascending_register")?;
        let descending = cents(b, OFF_DESC, "descending_register")?;
        let amount = cents(b, OFF_AMOUNT, "amount")?;
        if ascending < amount {
            return Err(FieldError::new(
                "ascending_register",
                format!("{ascending} is less than this piece's amount {amount}"),
            )
            .into());
        }
        let date = Day::from_days(u16::from_be_bytes(arr(b, OFF_DATE)));
        let origin = Zip5::from_ascii(arr(b, OFF_ORIGIN))
            .map_err(|_| FieldError::new("origin_zip", "must be 5 ASCII digits"))?;
        let destination = decode_destination(arr(b, OFF_DEST))?;
        let class_code = b[OFF_CLASS];
        let software_id = SoftwareId::new(arr(b, OFF_SOFTWARE))?;
        let subject = match (kind, destination) {
            (ItemKind::Postage, Some(destination)) => {
                let class = MailClass::from_code(class_code).ok_or_else(|| {
                    FieldError::new("mail_class", format!("unknown class code {class_code}"))
                })?;
                Subject::Postage { class, destination }
            }
            (ItemKind::Postage, None) => {
                return Err(
                    FieldError::new("destination", "postage needs a destination ZIP").into(),
                );
            }
            (_, Some(_)) => {
                return Err(FieldError::new(
                    "destination",
                    "must be all 0x00 for a non-postage item",
                )
                .into());
            }
            (kind, None) => {
                if class_code != 0 {
                    return Err(
                        FieldError::new("mail_class", "must be 0 for a non-postage item").into(),
                    );
                }
                Subject::Item(ItemDigest {
                    kind,
                    digest: arr(b, OFF_DIGEST),
                })
            }
        };
        Ok(Indicium {
            body: IndiciumBody {
                key_id: KeyId(arr(b, OFF_KEY_ID)),
                meter_serial,
                license_id,
                piece_serial,
                ascending,
                descending,
                amount,
                date,
                origin,
                software_id,
                subject,
            },
            signature: arr(b, body_len),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn piece_numbers_print_as_the_label_and_parse_back() {
        let n = PieceNumber::new("FRK10000001", 9);
        assert_eq!(n.to_string(), "FRK10000001 #9");
        for typed in [
            "FRK10000001 #9",
            "frk10000001#9",
            " FRK10000001 9 ",
            "FRK10000001  # 9",
        ] {
            assert_eq!(PieceNumber::parse(typed), Some(n.clone()), "{typed}");
        }
        for bad in [
            "",
            "FRK10000001",
            "#9",
            "FRK10000001 #0",
            "FRK10000001 #x",
            "FRK-1 #2",
            "1-1",
        ] {
            assert_eq!(PieceNumber::parse(bad), None, "{bad}");
        }
        assert!(n.matches("FRK10000001 #9") && n.matches("#9") && n.matches("10000001"));
        assert!(!n.matches("FRK10000001 #8"));
    }

    #[test]
    fn meter_serial_rules() {
        assert_eq!(MeterSerial::new("062S0001").unwrap().as_str(), "062S0001");
        assert!(MeterSerial::new("").is_err());
        assert!(MeterSerial::new("abc").is_err());
        assert!(MeterSerial::new("ABCDEFGHIJKLM").is_err());
        assert!(MeterSerial::from_field(b"AB\0C\0\0\0\0\0\0\0\0").is_err());
    }

    #[test]
    fn short_and_foreign_payloads_name_the_check() {
        assert!(matches!(
            Indicium::decode(&[]),
            Err(LayoutError::Length { found: 0, .. })
        ));
        assert_eq!(
            Indicium::decode(&[2, 1]),
            Err(LayoutError::UnknownVersion(2))
        );
        assert_eq!(
            Indicium::decode(&[1, 9]),
            Err(LayoutError::UnknownAlgorithm(9))
        );
        assert!(matches!(
            Indicium::decode(&[1, 1, 0]),
            Err(LayoutError::Length { found: 3, .. })
        ));
    }
}
