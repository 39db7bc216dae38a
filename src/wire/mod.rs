//! The request/response codec (sans-I/O). One request per QUIC bidirectional stream: the client
//! writes one CBOR envelope and finishes its side; the vendor answers with one CBOR envelope —
//! except `subscribe_terminals`, answered with a stream of frames ([`monitor`]).
//! docs/PROTOCOL.md §Requests is the specification; this module is its implementation.

pub mod bundle;
mod explain;
pub mod ledger;
pub mod monitor;
mod operation;
pub mod price;
pub mod reqmac;

pub use bundle::{BundleFileHeader, BundleFileRequest, BundleList, BundlesRequest};
pub use ledger::*;
pub use monitor::{
    MonitorFrame, PrinterRecorded, PrinterReport, PrinterState, SubscribeTerminals, TerminalRow,
};
pub use operation::Operation;

use ciborium::Value;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The protocol version every envelope carries.
pub const PROTOCOL_VERSION: u16 = 1;
/// ALPN identifier of the QUIC connection.
pub const ALPN: &[u8] = b"frank/1";
/// Largest request envelope the vendor reads; larger ones get `oversized`.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Largest response envelope a client reads.
pub const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

pub const NAME_BYTES_MAX: usize = 64;
pub const PASSWORD_BYTES_MAX: usize = 256;
pub const ENROLLMENT_CODE_BYTES_MAX: usize = 64;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestEnvelope {
    v: u16,
    #[serde(rename = "type")]
    kind: String,
    body: Value,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseEnvelope {
    v: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    ok: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<ErrorBody>,
}

/// Every request the vendor understands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    Enroll(Enroll),
    Login(Login),
    Resume(Resume),
    Ping(Ping),
    ClockCheck(ClockCheck),
    Balance(BalanceRequest),
    Quote(QuoteRequest),
    Fund(Fund),
    Authorize(Authorize),
    Commit(Commit),
    Void(Void),
    Statement(StatementRequest),
    RefundRequest(RefundRequest),
    Piece(PieceRequest),
    Pieces(PiecesRequest),
    PrinterStatus(PrinterReport),
    SubscribeTerminals(SubscribeTerminals),
    Scan(ScanRequest),
    Tender(TenderRequest),
    DayReport(DayReportRequest),
    RefundsAwaiting(RefundsAwaitingRequest),
    RefundDecide(RefundDecide),
    Bundles(BundlesRequest),
    BundleFile(BundleFileRequest),
}

impl Request {
    /// The request's type (its envelope's `type`).
    pub fn operation(&self) -> Operation {
        match self {
            Request::Enroll(_) => Operation::Enroll,
            Request::Login(_) => Operation::Login,
            Request::Resume(_) => Operation::Resume,
            Request::Ping(_) => Operation::Ping,
            Request::ClockCheck(_) => Operation::ClockCheck,
            Request::Balance(_) => Operation::Balance,
            Request::Quote(_) => Operation::Quote,
            Request::Fund(_) => Operation::Fund,
            Request::Authorize(_) => Operation::Authorize,
            Request::Commit(_) => Operation::Commit,
            Request::Void(_) => Operation::Void,
            Request::Statement(_) => Operation::Statement,
            Request::RefundRequest(_) => Operation::RefundRequest,
            Request::Piece(_) => Operation::Piece,
            Request::Pieces(_) => Operation::Pieces,
            Request::PrinterStatus(_) => Operation::PrinterStatus,
            Request::SubscribeTerminals(_) => Operation::SubscribeTerminals,
            Request::Scan(_) => Operation::Scan,
            Request::Tender(_) => Operation::Tender,
            Request::DayReport(_) => Operation::DayReport,
            Request::RefundsAwaiting(_) => Operation::RefundsAwaiting,
            Request::RefundDecide(_) => Operation::RefundDecide,
            Request::Bundles(_) => Operation::Bundles,
            Request::BundleFile(_) => Operation::BundleFile,
        }
    }
}

/// `enroll`: a new terminal presents its device key and a 64-bit challenge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enroll {
    /// The account's enrollment code (from `frank vendor account add`).
    pub code: String,
    /// A name for the terminal, shown to supervisors.
    pub name: String,
    /// Ed25519 public key of the terminal (32 bytes).
    #[serde(with = "serde_bytes")]
    pub device_key: Vec<u8>,
    /// 64-bit random challenge (8 bytes).
    #[serde(with = "serde_bytes")]
    pub challenge: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Enrolled {
    pub terminal_id: u64,
    pub account_id: u64,
    pub vendor_time_ms: u64,
    /// Ed25519 signature by the vendor key over `enroll_transcript` (64 bytes).
    #[serde(with = "serde_bytes")]
    pub signature: Vec<u8>,
}

/// `login`: a clerk signs in on an enrolled terminal.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    pub terminal_id: u64,
    pub clerk: String,
    pub password: String,
    /// Ed25519 signature by the device key over `login_transcript` (64 bytes).
    #[serde(with = "serde_bytes")]
    pub proof: Vec<u8>,
}

impl std::fmt::Debug for Login {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Login")
            .field("terminal_id", &self.terminal_id)
            .field("clerk", &self.clerk)
            .field("password", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// `resume`: continue a logged-in session on a new connection (after a lapse or loss)
/// without the clerk's password: a fresh device proof over the new exporter plus a MAC with
/// the session's resume key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resume {
    pub session_id: u64,
    pub terminal_id: u64,
    /// Ed25519 signature by the device key over `login_transcript` on the new connection.
    #[serde(with = "serde_bytes")]
    pub proof: Vec<u8>,
    /// `resume_mac(resume key, new exporter)` (32 bytes).
    #[serde(with = "serde_bytes")]
    pub resume_mac: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoggedIn {
    pub session_id: u64,
    pub account_id: u64,
    pub clerk: String,
    /// The account's name as the vendor knows it (the office's name on receipts and
    /// close-outs); empty when the vendor has none.
    pub office: String,
    pub keepalive_interval_ms: u32,
    pub detect_multiplier: u32,
    pub up_after_keepalives: u32,
    pub request_clock_skew_ms_max: u64,
    pub vendor_time_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Ping {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pong {
    pub vendor_time_ms: u64,
}

/// `clock_check`: proves the request-MAC key and the clock agree before money moves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockCheck {
    #[serde(with = "serde_bytes")]
    pub request_id: Vec<u8>,
    pub client_time_ms: u64,
    #[serde(with = "serde_bytes")]
    pub mac: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockChecked {
    pub vendor_time_ms: u64,
    pub skew_ms: i64,
}

/// Typed error codes. Unknown codes from a newer peer decode as `Unknown`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    Malformed,
    Oversized,
    UnsupportedVersion,
    UnknownType,
    NotLoggedIn,
    /// No longer sent (issue 13): a second login/resume on a connection replaces its session.
    /// Kept so clients and older vendors still understand each other.
    AlreadyLoggedIn,
    BadEnrollmentCode,
    UnknownTerminal,
    UnknownSession,
    BadDeviceSignature,
    BadCredentials,
    LockedOut,
    BadMac,
    ClockSkew,
    LinkLapsed,
    // Ledger (docs/PROTOCOL.md §Ledger errors)
    IdempotencyConflict,
    InsufficientFunds,
    QuoteMismatch,
    InvalidItem,
    AmountOutOfRange,
    TopUpOutOfRange,
    PaymentInvalid,
    PaymentDeclined,
    PaymentTimeout,
    AccountLocked,
    AccountPending,
    UnknownPiece,
    AlreadyCommitted,
    AlreadyVoided,
    AuthorizationExpired,
    /// `void` (not reached) of an unsettled piece after its late-void window: nothing changed,
    /// the piece stays charged; request a refund instead.
    VoidWindowClosed,
    /// `void` (not reached) of an unsettled piece from a terminal other than the one that
    /// authorized it: nothing changed.
    WrongTerminal,
    NotPrinted,
    RefundAlreadyRequested,
    RefundWindowClosed,
    PieceScanned,
    SignerFailed,
    /// `tender` refused: no items, an amount that does not match the items, change on a
    /// payment that is not cash, a voided item. The message says which; nothing was stored.
    InvalidTender,
    /// `tender` names a piece already paid for in another basket; nothing was stored.
    AlreadyTendered,
    // Admin monitor (docs/PROTOCOL.md §4.8); also `refunds_awaiting` and `refund_decide`
    // from a clerk who is not a supervisor of the account.
    Forbidden,
    /// `scan` of a payload that is not an indicium signed by this vendor's key; the message
    /// names the failing check first (`malformed layout`, `unknown key`, `bad signature`, ...).
    InvalidIndicium,
    /// `scan` beyond the connection's `scans_per_connection_max`; `limit`.
    ScanLimit,
    /// `bundle_file` of a bundle, version or file the vendor does not offer (now).
    UnknownBundle,
    Busy,
    Internal,
    #[serde(other)]
    Unknown,
}

/// The error half of a response.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct ErrorBody {
    pub code: ErrorCode,
    /// Human-readable, says what to do next; never contains secrets.
    pub message: String,
    /// For `locked_out` and `busy`: when to try again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// For `oversized`, `clock_skew`, `unsupported_version`: the limit or supported value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// For `insufficient_funds`: the available balance; for `quote_mismatch`: the vendor's
    /// quote.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_cents: Option<u64>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            retry_after_ms: None,
            limit: None,
            amount_cents: None,
        }
    }

    pub fn with_amount_cents(mut self, cents: u64) -> Self {
        self.amount_cents = Some(cents);
        self
    }

    pub fn with_limit(mut self, limit: u64) -> Self {
        self.limit = Some(limit);
        self
    }

    pub fn with_retry_after_ms(mut self, ms: u64) -> Self {
        self.retry_after_ms = Some(ms);
        self
    }

    pub fn malformed(message: impl Into<String>) -> Self {
        ErrorBody::new(ErrorCode::Malformed, message)
    }
}

fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing CBOR into a Vec cannot fail for our plain structs (no maps with non-string keys,
    // no I/O errors from a Vec).
    ciborium::into_writer(value, &mut out).expect("CBOR encoding into a Vec");
    out
}

fn to_value<T: Serialize>(value: &T) -> Value {
    // Same reasoning as `to_cbor`: our types always serialize.
    Value::serialized(value).expect("CBOR value of a plain struct")
}

pub fn encode_request(request: &Request) -> Vec<u8> {
    let body = match request {
        Request::Enroll(b) => to_value(b),
        Request::Login(b) => to_value(b),
        Request::Resume(b) => to_value(b),
        Request::Ping(b) => to_value(b),
        Request::ClockCheck(b) => to_value(b),
        Request::Balance(b) => to_value(b),
        Request::Quote(b) => to_value(b),
        Request::Fund(b) => to_value(b),
        Request::Authorize(b) => to_value(b),
        Request::Commit(b) => to_value(b),
        Request::Void(b) => to_value(b),
        Request::Statement(b) => to_value(b),
        Request::RefundRequest(b) => to_value(b),
        Request::Piece(b) => to_value(b),
        Request::Pieces(b) => to_value(b),
        Request::PrinterStatus(b) => to_value(b),
        Request::SubscribeTerminals(b) => to_value(b),
        Request::Scan(b) => to_value(b),
        Request::Tender(b) => to_value(b),
        Request::DayReport(b) => to_value(b),
        Request::RefundsAwaiting(b) => to_value(b),
        Request::RefundDecide(b) => to_value(b),
        Request::Bundles(b) => to_value(b),
        Request::BundleFile(b) => to_value(b),
    };
    to_cbor(&RequestEnvelope {
        v: PROTOCOL_VERSION,
        kind: request.operation().as_str().to_string(),
        body,
    })
}

/// Decodes a request envelope. Every failure is a typed error the vendor sends back as is.
pub fn decode_request(bytes: &[u8]) -> Result<Request, ErrorBody> {
    if bytes.len() > REQUEST_BYTES_MAX {
        return Err(oversized(bytes.len()));
    }
    let env: RequestEnvelope = ciborium::from_reader(bytes)
        .map_err(|_| ErrorBody::malformed(envelope_error::<RequestEnvelope>(bytes, "request")))?;
    if env.v != PROTOCOL_VERSION {
        return Err(ErrorBody::new(
            ErrorCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this vendor speaks {PROTOCOL_VERSION}",
                env.v
            ),
        )
        .with_limit(u64::from(PROTOCOL_VERSION)));
    }
    let body = env.body;
    let Some(operation) = Operation::parse(&env.kind) else {
        // The unknown name is not repeated: it is client text and this message is logged.
        return Err(ErrorBody::new(
            ErrorCode::UnknownType,
            "unknown request type; see docs/PROTOCOL.md for the types this vendor speaks",
        ));
    };
    let name = operation.as_str();
    let request = match operation {
        Operation::Enroll => Request::Enroll(body_as(body, name)?),
        Operation::Login => Request::Login(body_as(body, name)?),
        Operation::Resume => Request::Resume(body_as(body, name)?),
        Operation::Ping => Request::Ping(body_as(body, name)?),
        Operation::ClockCheck => Request::ClockCheck(body_as(body, name)?),
        Operation::Balance => Request::Balance(body_as(body, name)?),
        Operation::Quote => Request::Quote(body_as(body, name)?),
        Operation::Fund => Request::Fund(body_as(body, name)?),
        Operation::Authorize => Request::Authorize(body_as(body, name)?),
        Operation::Commit => Request::Commit(body_as(body, name)?),
        Operation::Void => Request::Void(body_as(body, name)?),
        Operation::Statement => Request::Statement(body_as(body, name)?),
        Operation::RefundRequest => Request::RefundRequest(body_as(body, name)?),
        Operation::Piece => Request::Piece(body_as(body, name)?),
        Operation::Pieces => Request::Pieces(body_as(body, name)?),
        Operation::PrinterStatus => Request::PrinterStatus(body_as(body, name)?),
        Operation::SubscribeTerminals => Request::SubscribeTerminals(body_as(body, name)?),
        Operation::Scan => Request::Scan(body_as(body, name)?),
        Operation::Tender => Request::Tender(body_as(body, name)?),
        Operation::DayReport => Request::DayReport(body_as(body, name)?),
        Operation::RefundsAwaiting => Request::RefundsAwaiting(body_as(body, name)?),
        Operation::RefundDecide => Request::RefundDecide(body_as(body, name)?),
        Operation::Bundles => Request::Bundles(body_as(body, name)?),
        Operation::BundleFile => Request::BundleFile(body_as(body, name)?),
    };
    validate(&request)?;
    Ok(request)
}

pub fn oversized(len: usize) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Oversized,
        format!("request is {len} bytes or more; the limit is {REQUEST_BYTES_MAX} bytes"),
    )
    .with_limit(REQUEST_BYTES_MAX as u64)
}

/// Why an envelope did not decode, naming the field, never a value (this text is logged).
fn envelope_error<T: DeserializeOwned>(bytes: &[u8], what: &str) -> String {
    match ciborium::from_reader::<Value, _>(bytes) {
        Err(e) => format!("{what} {}", explain::cbor_error(&e)),
        Ok(value) => match explain::value_as::<T>(&value, what) {
            Err(message) => message,
            Ok(_) => format!("{what} envelope is not valid"),
        },
    }
}

fn body_as<T: DeserializeOwned>(body: Value, kind: &str) -> Result<T, ErrorBody> {
    explain::value_as(&body, kind).map_err(ErrorBody::malformed)
}

fn field_len(field: &str, got: usize, want: usize) -> Result<(), ErrorBody> {
    if got != want {
        return Err(ErrorBody::malformed(format!(
            "{field} must be {want} bytes, got {got}"
        )));
    }
    Ok(())
}

fn text_len(field: &str, text: &str, max: usize) -> Result<(), ErrorBody> {
    if text.is_empty() || text.len() > max {
        return Err(ErrorBody::malformed(format!(
            "{field} must be 1..={max} bytes, got {}",
            text.len()
        )));
    }
    Ok(())
}

/// A name people read in lists and logs: [`text_len`] and no control characters (a newline
/// in a name could forge a log line, an escape code could repaint a terminal).
fn name_text(field: &str, text: &str, max: usize) -> Result<(), ErrorBody> {
    text_len(field, text, max)?;
    if crate::logtext::has_control(text) {
        return Err(ErrorBody::malformed(format!(
            "{field} must not contain control characters (newline, tab, escape codes)"
        )));
    }
    Ok(())
}

fn validate(request: &Request) -> Result<(), ErrorBody> {
    match request {
        Request::Enroll(e) => {
            text_len("enroll.code", &e.code, ENROLLMENT_CODE_BYTES_MAX)?;
            name_text("enroll.name", &e.name, NAME_BYTES_MAX)?;
            field_len("enroll.device_key", e.device_key.len(), 32)?;
            field_len("enroll.challenge", e.challenge.len(), 8)
        }
        Request::Login(l) => {
            name_text("login.clerk", &l.clerk, NAME_BYTES_MAX)?;
            text_len("login.password", &l.password, PASSWORD_BYTES_MAX)?;
            field_len("login.proof", l.proof.len(), 64)
        }
        Request::Resume(r) => {
            field_len("resume.proof", r.proof.len(), 64)?;
            field_len("resume.resume_mac", r.resume_mac.len(), 32)
        }
        Request::Ping(_) => Ok(()),
        Request::ClockCheck(c) => {
            field_len("clock_check.request_id", c.request_id.len(), 16)?;
            field_len("clock_check.mac", c.mac.len(), reqmac::REQUEST_MAC_BYTES)
        }
        Request::Balance(_) | Request::Statement(_) | Request::Piece(_) => Ok(()),
        Request::Pieces(p) => {
            if p.limit == 0 || p.limit > PIECES_LIST_MAX {
                return Err(ErrorBody::malformed(format!(
                    "pieces.limit must be 1..={PIECES_LIST_MAX}"
                ))
                .with_limit(u64::from(PIECES_LIST_MAX)));
            }
            Ok(())
        }
        Request::Quote(q) => {
            validate_item_field("quote.item", &WireItem::Postage(q.item.clone()))?;
            origin_zip(&q.origin_zip)
                .map(|_| ())
                .map_err(|e| ErrorBody::malformed(format!("quote.{}: {}", e.field, e.reason)))
        }
        Request::Scan(s) => {
            if s.payload.is_empty() || s.payload.len() > SCAN_PAYLOAD_BYTES_MAX {
                return Err(ErrorBody::malformed(format!(
                    "scan.payload must be 1..={SCAN_PAYLOAD_BYTES_MAX} bytes, got {}",
                    s.payload.len()
                ))
                .with_limit(SCAN_PAYLOAD_BYTES_MAX as u64));
            }
            Ok(())
        }
        Request::Fund(f) => {
            money_fields(f)?;
            positive("fund.amount_cents", f.amount_cents)?;
            let (a, b) = match &f.method {
                FundMethod::Card { number, cvc, .. } => (number, cvc),
                FundMethod::Ach { routing, account } => (routing, account),
            };
            for (name, v) in [("fund.method", a), ("fund.method", b)] {
                if v.len() > PAYMENT_FIELD_BYTES_MAX {
                    return Err(ErrorBody::malformed(format!(
                        "{name} field is {} bytes; the limit is {PAYMENT_FIELD_BYTES_MAX}",
                        v.len()
                    )));
                }
            }
            Ok(())
        }
        Request::Authorize(a) => {
            money_fields(a)?;
            positive("authorize.amount_cents", a.amount_cents)?;
            validate_item_field("authorize.item", &a.item)?;
            origin_zip(&a.origin_zip)
                .map(|_| ())
                .map_err(|e| ErrorBody::malformed(format!("authorize.{}: {}", e.field, e.reason)))
        }
        Request::Commit(c) => money_fields(c),
        Request::Void(v) => money_fields(v),
        Request::RefundRequest(r) => money_fields(r),
        Request::Tender(t) => {
            money_fields(t)?;
            let max = crate::ledger::report::BASKET_PIECES_MAX;
            if t.pieces.is_empty() || t.pieces.len() > max {
                return Err(ErrorBody::malformed(format!(
                    "tender.pieces must name 1..={max} pieces, got {}",
                    t.pieces.len()
                ))
                .with_limit(max as u64));
            }
            if crate::ledger::report::TenderKind::parse(&t.kind).is_none() {
                return Err(ErrorBody::malformed(
                    "tender.kind must be cash, card, check or other",
                ));
            }
            meter_text("tender.meter", &t.meter)?;
            positive("tender.amount_tendered_cents", t.amount_tendered_cents)?;
            if t.change_cents > crate::money::CENTS_MAX {
                return Err(ErrorBody::malformed(format!(
                    "tender.change_cents must be 0..={}",
                    crate::money::CENTS_MAX
                )));
            }
            Ok(())
        }
        Request::DayReport(d) => {
            crate::indicium::kinds::Day::parse("day_report.day", &d.day).map_err(|_| {
                // The value is not repeated (this message is logged).
                ErrorBody::malformed("day_report.day must be a date YYYY-MM-DD from 1970-01-01 on")
            })?;
            if !["clerk", "terminal", "office"].contains(&d.scope.as_str()) {
                return Err(ErrorBody::malformed(
                    "day_report.scope must be clerk, terminal or office",
                ));
            }
            Ok(())
        }
        Request::RefundsAwaiting(r) => {
            if r.limit == 0 || r.limit > REFUNDS_AWAITING_MAX {
                return Err(ErrorBody::malformed(format!(
                    "refunds_awaiting.limit must be 1..={REFUNDS_AWAITING_MAX}"
                ))
                .with_limit(u64::from(REFUNDS_AWAITING_MAX)));
            }
            Ok(())
        }
        Request::RefundDecide(r) => {
            money_fields(r)?;
            meter_text("refund_decide.meter", &r.meter)
        }
        Request::PrinterStatus(p) => p.validate().map(|_| ()),
        Request::SubscribeTerminals(_) => Ok(()),
        Request::Bundles(_) => Ok(()),
        Request::BundleFile(b) => b.validate(),
    }
}

/// A meter serial: 1..=12 characters `A-Z0-9` (docs/INDICIUM.md); the value is not repeated.
fn meter_text(field: &str, text: &str) -> Result<(), ErrorBody> {
    crate::indicium::layout::MeterSerial::new(text)
        .map(|_| ())
        .map_err(|_| {
            ErrorBody::malformed(format!(
                "{field} must be 1..={} characters A-Z and 0-9",
                crate::indicium::layout::METER_SERIAL_CHARS_MAX
            ))
        })
}

fn validate_item_field(field: &str, item: &WireItem) -> Result<(), ErrorBody> {
    ledger::validate_item(field, item)
        .map(|_| ())
        .map_err(ErrorBody::malformed)
}

/// The value sent is not repeated (this message is logged, and a client may put anything in
/// an integer field).
fn positive(field: &str, v: u64) -> Result<(), ErrorBody> {
    if v == 0 || v > crate::money::CENTS_MAX {
        return Err(ErrorBody::malformed(format!(
            "{field} must be 1..={}",
            crate::money::CENTS_MAX
        )));
    }
    Ok(())
}

fn money_fields<R: MoneyRequest>(r: &R) -> Result<(), ErrorBody> {
    let kind = R::OPERATION;
    field_len(&format!("{kind}.request_id"), r.request_id().len(), 16)?;
    field_len(
        &format!("{kind}.mac"),
        r.mac().len(),
        reqmac::REQUEST_MAC_BYTES,
    )
}

pub fn encode_ok<T: Serialize>(body: &T) -> Vec<u8> {
    to_cbor(&ResponseEnvelope {
        v: PROTOCOL_VERSION,
        ok: Some(to_value(body)),
        error: None,
    })
}

pub fn encode_error(error: &ErrorBody) -> Vec<u8> {
    to_cbor(&ResponseEnvelope {
        v: PROTOCOL_VERSION,
        ok: None,
        error: Some(error.clone()),
    })
}

/// Why a response could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    #[error("vendor refused: {0}")]
    Refused(ErrorBody),
    #[error("vendor response is not valid: {0}")]
    Malformed(String),
}

/// Decodes a response into the expected body type.
pub fn decode_response<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ResponseError> {
    if bytes.len() > RESPONSE_BYTES_MAX {
        return Err(ResponseError::Malformed(format!(
            "response of {} bytes exceeds {RESPONSE_BYTES_MAX}",
            bytes.len()
        )));
    }
    let env: ResponseEnvelope = ciborium::from_reader(bytes).map_err(|_| {
        ResponseError::Malformed(envelope_error::<ResponseEnvelope>(bytes, "response"))
    })?;
    if env.v != PROTOCOL_VERSION {
        return Err(ResponseError::Malformed(format!(
            "response version {} (expected {PROTOCOL_VERSION})",
            env.v
        )));
    }
    match (env.ok, env.error) {
        (Some(ok), None) => explain::value_as(&ok, "response").map_err(ResponseError::Malformed),
        (None, Some(err)) => Err(ResponseError::Refused(err)),
        _ => Err(ResponseError::Malformed(
            "response must carry exactly one of ok, error".into(),
        )),
    }
}

#[cfg(test)]
mod tests;
