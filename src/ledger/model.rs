//! The ledger's data: accounts, meter registers, pieces (authorizations / items), ids, limits,
//! outcomes and errors. Plain values only; no I/O.

use crate::money::Cents;
use serde::{Deserialize, Serialize};
use std::fmt;

/// An account number. One account holds exactly one meter (PSD).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct AccountId(pub u64);

impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "account {}", self.0)
    }
}

/// The first meter serial; account `n` holds meter `METER_SERIAL_BASE + n`.
pub const METER_SERIAL_BASE: u64 = 10_000_000;

/// A meter (PSD) serial number. Derived one-to-one from the account id, so an indicium's meter
/// serial names its account without a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeterSerial(u64);

impl MeterSerial {
    pub fn for_account(account: AccountId) -> MeterSerial {
        MeterSerial(METER_SERIAL_BASE.saturating_add(account.0))
    }
    /// The account holding this meter, or `None` for a number that is not a meter serial.
    pub fn from_number(number: u64) -> Option<MeterSerial> {
        (number > METER_SERIAL_BASE).then_some(MeterSerial(number))
    }
    pub fn account(self) -> AccountId {
        AccountId(self.0 - METER_SERIAL_BASE)
    }
    /// Parses the printed form `FRK` + 8 or more digits (the [`fmt::Display`] form).
    pub fn parse(text: &str) -> Option<MeterSerial> {
        let digits = text.strip_prefix("FRK")?;
        if digits.len() < 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        MeterSerial::from_number(digits.parse().ok()?)
    }
    pub fn number(self) -> u64 {
        self.0
    }
}

impl fmt::Display for MeterSerial {
    /// `FRK10000001`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FRK{:08}", self.0)
    }
}

/// A meter license issued by a [`crate::ledger::licensing::LicensingAuthority`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LicenseId(pub u64);

/// The piece counter of one meter: 1, 2, 3, ... with no gaps and no reuse.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(transparent)]
pub struct PieceSerial(pub u64);

/// One piece (one value-bearing item): the meter's account plus its piece serial. It is also the
/// authorization id and the refund id — each piece has at most one of each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PieceId {
    pub account: AccountId,
    pub serial: PieceSerial,
}

impl PieceId {
    /// The piece's one number, as its label prints it: `FRK10000007 #42` (account 7's meter,
    /// piece 42).
    pub fn number(&self) -> crate::indicium::layout::PieceNumber {
        crate::indicium::layout::PieceNumber::new(
            MeterSerial::for_account(self.account).to_string(),
            self.serial.0,
        )
    }

    /// The piece a printed number names (`None`: not a meter serial of this vendor).
    pub fn from_number(n: &crate::indicium::layout::PieceNumber) -> Option<PieceId> {
        Some(PieceId {
            account: MeterSerial::parse(&n.meter)?.account(),
            serial: PieceSerial(n.serial),
        })
    }
}

impl fmt::Display for PieceId {
    /// As the label prints it: `FRK10000007 #42` (account 7, piece 42).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.number().fmt(f)
    }
}

/// The id of an authorization is the id of its piece.
pub type AuthorizationId = PieceId;

/// A vendor terminal (the directory's terminal id). The ledger records which terminal
/// authorized a piece, so that only that terminal can void it once it is unsettled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TerminalId(pub u64);

impl fmt::Display for TerminalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "terminal {}", self.0)
    }
}

/// A client-chosen 128-bit request id; retrying with the same id never repeats an effect.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RequestId(pub u128);

impl RequestId {
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }
    pub fn from_bytes(bytes: [u8; 16]) -> RequestId {
        RequestId(u128::from_be_bytes(bytes))
    }
    /// A client request's id from the Unix time in milliseconds and 128 random bits (the shell's
    /// [`crate::clock::fresh_request_id`] gives both): the first 48 bits are the time, the other
    /// 80 random. Ids made close in time sort close together, so the vendor's idempotency index
    /// takes new ids near its end instead of on a random page each (with purely random ids the
    /// SQLite ledger measured 8–13k pairs/s instead of 22k). Uniqueness rests on the 80 random
    /// bits; the vendor accepts any 128-bit id.
    pub fn from_time_and_random(unix_ms: u64, random: u128) -> RequestId {
        RequestId(((u128::from(unix_ms) & 0xFFFF_FFFF_FFFF) << 80) | (random >> 48))
    }
    /// A stable id derived from another one (e.g. the licensing step of an account opening).
    pub fn derive(self, purpose: &str) -> RequestId {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(purpose.as_bytes());
        h.update(self.to_bytes());
        let d: [u8; 32] = h.finalize().into();
        let (b, _) = d.split_first_chunk::<16>().unwrap_or((&[0; 16], &[]));
        RequestId::from_bytes(*b)
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({:032x})", self.0)
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum AccountStatus {
    /// Opened, no meter license yet: cannot fund or print.
    Pending,
    Active,
    /// Locked (e.g. a returned ACH payment): nothing moves until an operator unlocks it.
    Locked,
}

impl AccountStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AccountStatus::Pending => "pending",
            AccountStatus::Active => "active",
            AccountStatus::Locked => "locked",
        }
    }
    pub fn parse(text: &str) -> Option<AccountStatus> {
        match text {
            "pending" => Some(AccountStatus::Pending),
            "active" => Some(AccountStatus::Active),
            "locked" => Some(AccountStatus::Locked),
            _ => None,
        }
    }
}

/// Which register an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Register {
    Descending,
    Pending,
    Ascending,
    Control,
}

/// A meter's registers. Invariant: `ascending + pending + descending == control`.
///
/// - descending: funds available to print;
/// - pending: reserved by open authorizations;
/// - ascending: value ever printed (never decreases);
/// - control: value ever loaded (refills plus approved refunds; never decreases).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Registers {
    pub descending: Cents,
    pub pending: Cents,
    pub ascending: Cents,
    pub control: Cents,
}

impl Registers {
    /// Checks the control sum.
    pub fn check(&self) -> Result<(), LedgerError> {
        let sum = self
            .ascending
            .get()
            .checked_add(self.pending.get())
            .and_then(|s| s.checked_add(self.descending.get()));
        if sum == Some(self.control.get()) {
            Ok(())
        } else {
            Err(LedgerError::InvariantBroken { registers: *self })
        }
    }

    /// Spendable-or-reserved balance used by statements: control − ascending.
    pub fn balance(&self) -> Cents {
        Cents::new(self.descending.get().saturating_add(self.pending.get())).unwrap_or(Cents::ZERO)
    }
}

/// An account with its meter and registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub meter: MeterSerial,
    pub license: Option<LicenseId>,
    pub status: AccountStatus,
    pub registers: Registers,
    /// The last piece serial issued (0 before the first piece).
    pub last_piece: PieceSerial,
    /// Number of audit records in this account's chain.
    pub audit_seq: u64,
    /// Hash of the last audit record of this account's chain (zeros before the first).
    pub audit_head: [u8; 32],
}

impl Account {
    pub fn new(id: AccountId) -> Account {
        Account {
            id,
            meter: MeterSerial::for_account(id),
            license: None,
            status: AccountStatus::Pending,
            registers: Registers::default(),
            last_piece: PieceSerial(0),
            audit_seq: 0,
            audit_head: [0; 32],
        }
    }
}

/// Where a piece's reservation stands. Once its signed item was issued, its value is spent
/// until the terminal shows it unprinted: a reservation ends printed, voided by its terminal,
/// or — when nobody settles it by its expiry — unsettled (committed as printed by the reaper).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PieceState {
    /// Reserved (pending register), not yet committed.
    Reserved,
    /// Committed: the item printed (its value is in the ascending register).
    Printed,
    /// Voided by the client (never reached the printer); its value went back to descending.
    Voided,
    /// Released by the reaper at its expiry. Only pieces expired before issue 12 are in this
    /// state: expiry no longer returns issued value (see [`PieceState::Unsettled`]).
    Expired,
    /// Nobody settled it by its expiry, so the reaper committed it as printed (its value is in
    /// the ascending register, charged). The terminal's commit makes it `Printed`; its late
    /// void within `LedgerLimits::late_void_window_ms` makes it `Voided` (a credit).
    Unsettled,
}

impl PieceState {
    pub fn as_str(self) -> &'static str {
        match self {
            PieceState::Reserved => "reserved",
            PieceState::Printed => "printed",
            PieceState::Voided => "voided",
            PieceState::Expired => "expired",
            PieceState::Unsettled => "unsettled",
        }
    }
    pub fn parse(text: &str) -> Option<PieceState> {
        match text {
            "reserved" => Some(PieceState::Reserved),
            "printed" => Some(PieceState::Printed),
            "voided" => Some(PieceState::Voided),
            "expired" => Some(PieceState::Expired),
            "unsettled" => Some(PieceState::Unsettled),
            _ => None,
        }
    }
}

/// A refund request's state (only printed pieces have one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RefundState {
    Submitted,
    Approved,
    Rejected,
}

impl RefundState {
    pub fn as_str(self) -> &'static str {
        match self {
            RefundState::Submitted => "submitted",
            RefundState::Approved => "approved",
            RefundState::Rejected => "rejected",
        }
    }
    pub fn parse(text: &str) -> Option<RefundState> {
        match text {
            "submitted" => Some(RefundState::Submitted),
            "approved" => Some(RefundState::Approved),
            "rejected" => Some(RefundState::Rejected),
            _ => None,
        }
    }
}

/// What an issued item is, as staff and customers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ItemState {
    Reserved,
    Printed,
    /// Committed as printed by the reaper at its expiry, not (yet) settled by its terminal:
    /// charged, refundable.
    Unsettled,
    Voided,
    RefundRequested,
    Refunded,
    RefundRejected,
}

/// One issued piece: its authorization, its item record and its refund request in one row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Piece {
    pub id: PieceId,
    pub kind: u8,
    pub amount: Cents,
    pub state: PieceState,
    pub authorized_at_ms: u64,
    pub expires_at_ms: u64,
    pub printed_at_ms: Option<u64>,
    pub refund: Option<RefundState>,
    pub refund_submitted_at_ms: Option<u64>,
    pub scanned: bool,
    /// Scans of the piece the ledger was asked to record, recorded or only counted (see
    /// `LedgerLimits::scan_record_window_ms`).
    #[serde(default)]
    pub scan_count: u64,
    /// When the last scan with an audit record was recorded.
    #[serde(default)]
    pub scan_recorded_at_ms: Option<u64>,
    /// The signed item bytes the [`crate::ledger::ItemSigner`] returned at authorization.
    #[serde(with = "hex_bytes")]
    pub signed: Vec<u8>,
    /// The item description the authorization carried (opaque to the ledger; the vendor's
    /// `SignItem`), kept for listings. Empty for pieces stored before it was recorded.
    #[serde(with = "hex_bytes", default)]
    pub item: Vec<u8>,
    /// The terminal that authorized it, when the caller named one (the vendor front always
    /// does; pieces stored before it was recorded have none).
    #[serde(default)]
    pub terminal: Option<TerminalId>,
}

impl Piece {
    pub fn item_state(&self) -> ItemState {
        match (self.state, self.refund) {
            (PieceState::Reserved, _) => ItemState::Reserved,
            (PieceState::Voided | PieceState::Expired, _) => ItemState::Voided,
            (PieceState::Printed, None) => ItemState::Printed,
            (PieceState::Unsettled, None) => ItemState::Unsettled,
            (PieceState::Printed | PieceState::Unsettled, Some(RefundState::Submitted)) => {
                ItemState::RefundRequested
            }
            (PieceState::Printed | PieceState::Unsettled, Some(RefundState::Approved)) => {
                ItemState::Refunded
            }
            (PieceState::Printed | PieceState::Unsettled, Some(RefundState::Rejected)) => {
                ItemState::RefundRejected
            }
        }
    }

    /// Whether its value is in the ascending register (printed, or unsettled).
    pub fn committed(&self) -> bool {
        matches!(self.state, PieceState::Printed | PieceState::Unsettled)
    }
}

/// Facts about a piece handed to the [`crate::ledger::ItemSigner`] inside the reserving
/// transaction (registers as they will be after the reservation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PieceFacts {
    pub account: AccountId,
    pub meter: MeterSerial,
    pub license: LicenseId,
    pub piece: PieceSerial,
    pub amount: Cents,
    pub kind: u8,
    pub ascending_after: Cents,
    pub descending_after: Cents,
}

/// Signs an item inside the transaction that reserves its value, so signature, piece serial and
/// registers are one atomic step. Must be fast and must not block on I/O.
pub trait ItemSigner: Send + Sync {
    fn sign(&self, facts: &PieceFacts, item: &[u8]) -> Result<Vec<u8>, String>;
    /// Signatures the signer makes at once when it is a device with such a limit (a PKCS#11
    /// token's sessions); the SQLite store's signing pool then has that many threads.
    fn parallel_signatures_max(&self) -> Option<usize> {
        None
    }
}

/// Policy limits of the ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerLimits {
    /// How long an authorization holds its reservation (120 s). A reservation nobody settled
    /// by then is committed as printed and marked unsettled by the reaper.
    pub authorization_expiry_ms: u64,
    /// How long after its expiry an unsettled piece may still be voided by the terminal that
    /// authorized it (24 h): a late void, audited, credited like an approved refund.
    pub late_void_window_ms: u64,
    /// How long after printing a refund may be requested (28 days).
    pub refund_window_ms: u64,
    /// Largest item description accepted by `authorize`.
    pub item_bytes_max: usize,
    /// Smallest and largest single top-up.
    pub top_up_min: Cents,
    pub top_up_max: Cents,
    /// Largest single item value.
    pub authorize_max: Cents,
    /// Most reservations one reaper pass expires.
    pub expire_batch_max: u32,
    /// After a recorded scan of a piece (an audit record), further scans of it for this long
    /// only count on the piece (`Piece::scan_count`): no audit record, no idempotency record
    /// (1 h; 0 records every scan).
    #[serde(default = "default_scan_record_window_ms")]
    pub scan_record_window_ms: u64,
}

fn yes() -> bool {
    true
}

fn default_scan_record_window_ms() -> u64 {
    3600 * 1000
}

impl Default for LedgerLimits {
    fn default() -> Self {
        LedgerLimits {
            authorization_expiry_ms: 120_000,
            late_void_window_ms: 24 * 3600 * 1000,
            refund_window_ms: 28 * 24 * 3600 * 1000,
            item_bytes_max: 4096,
            top_up_min: Cents::new(500).unwrap_or(Cents::ZERO),
            top_up_max: Cents::new(1_000_000).unwrap_or(Cents::ZERO),
            authorize_max: Cents::new(100_000).unwrap_or(Cents::ZERO),
            expire_batch_max: 256,
            scan_record_window_ms: default_scan_record_window_ms(),
        }
    }
}

/// A redacted description of how a top-up was paid (never a full card or account number).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum MethodSummary {
    Card {
        last4: String,
        exp_month: u8,
        exp_year: u16,
    },
    Ach {
        routing: String,
        last4: String,
    },
}

/// The processor's id for a settled payment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PaymentId(pub String);

/// A payment the processor approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentReceipt {
    pub id: PaymentId,
    pub amount: Cents,
}

/// A top-up whose charge may reach the payment processor, recorded durably before the
/// processor is asked. Until it is resolved the reaper reconciles it with the processor, so a
/// charge is never left uncredited and unreversed (a vendor that stopped between the charge
/// and the credit, a reversal the processor refused).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentIntent {
    /// The top-up's request id: also the processor's idempotency key for the charge.
    pub request: RequestId,
    pub account: AccountId,
    pub amount: Cents,
    pub method: MethodSummary,
    pub started_at_ms: u64,
}

/// How a payment intent ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentResolution {
    /// The charge was approved and credited to the account.
    Credited,
    /// The charge was approved, the ledger refused the credit, and the charge was reversed.
    Reversed,
    /// No money moved: the processor declined, or holds no charge under the request id.
    NotCharged,
}

impl IntentResolution {
    pub fn as_str(self) -> &'static str {
        match self {
            IntentResolution::Credited => "credited",
            IntentResolution::Reversed => "reversed",
            IntentResolution::NotCharged => "not_charged",
        }
    }
}

/// A payment field that failed validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum PaymentField {
    CardNumber,
    Expiry,
    Cvc,
    RoutingNumber,
    AccountNumber,
}

impl fmt::Display for PaymentField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PaymentField::CardNumber => "card number",
            PaymentField::Expiry => "expiry",
            PaymentField::Cvc => "CVC",
            PaymentField::RoutingNumber => "routing number",
            PaymentField::AccountNumber => "account number",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct FieldError {
    pub field: PaymentField,
    pub problem: String,
}

/// Why a payment did not go through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum PaymentError {
    #[error("payment details invalid: {}", list_fields(.0))]
    Invalid(Vec<FieldError>),
    #[error("payment declined by the issuer; use another card or account")]
    Declined,
    #[error("payment declined: insufficient funds at the bank")]
    InsufficientFunds,
    #[error("the payment processor did not answer in time; retry with the same request id")]
    Timeout,
}

fn list_fields(errors: &[FieldError]) -> String {
    errors
        .iter()
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Every way a ledger operation can be refused. A refused operation changes nothing (except
/// that its result is remembered under its request id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum LedgerError {
    #[error("request id {request} was already used with a different body; use a new request id")]
    IdempotencyConflict { request: RequestId },
    #[error("no such account: {0}")]
    UnknownAccount(AccountId),
    #[error("there is no item {0} in this account")]
    UnknownPiece(PieceId),
    #[error("{account} is locked; contact the vendor")]
    AccountLocked { account: AccountId },
    #[error("{account} has no meter license yet (status pending)")]
    AccountPending { account: AccountId },
    #[error("{account} is not locked")]
    NotLocked { account: AccountId },
    #[error("{account} already holds license {license:?}")]
    AlreadyLicensed {
        account: AccountId,
        license: LicenseId,
    },
    #[error("the amount must be more than zero")]
    ZeroAmount,
    #[error("amount {amount} is above the limit of {max}")]
    AmountTooLarge { amount: Cents, max: Cents },
    #[error("top-up {amount} is below the minimum of {min}")]
    TopUpBelowMinimum { amount: Cents, min: Cents },
    #[error("top-up {amount} is above the maximum of {max}")]
    TopUpAboveMaximum { amount: Cents, max: Cents },
    #[error("the {register:?} register would overflow")]
    RegisterOverflow { register: Register },
    #[error("insufficient funds: {requested} requested, {available} available")]
    InsufficientFunds { available: Cents, requested: Cents },
    #[error("item description is {bytes} bytes; the limit is {max} bytes")]
    ItemTooLarge { bytes: usize, max: usize },
    #[error("authorization {0} was already committed")]
    AlreadyCommitted(PieceId),
    #[error("authorization {0} was already voided")]
    AlreadyVoided(PieceId),
    #[error("item {id}'s reservation was released when it expired; there is nothing to settle")]
    AuthorizationExpired { id: PieceId, expired_at_ms: u64 },
    #[error(
        "item {id} was charged when its reservation expired, and the time for voiding it has passed; it stays charged — request a refund instead"
    )]
    VoidWindowClosed { id: PieceId, deadline_ms: u64 },
    #[error(
        "piece {id} was authorized by another terminal; only that terminal can void it now that it is unsettled"
    )]
    WrongTerminal { id: PieceId },
    #[error("piece {0} was never printed, so it cannot be refunded")]
    NotPrinted(PieceId),
    #[error("refunds for item {id} are closed: they may be asked within 28 days of printing")]
    RefundWindowClosed { id: PieceId, deadline_ms: u64 },
    #[error("a refund for piece {0} was already requested")]
    RefundAlreadyRequested(PieceId),
    #[error("piece {0} has no refund request awaiting a decision")]
    NoRefundPending(PieceId),
    #[error("piece {0} was scanned in the mail stream, so it cannot be refunded")]
    PieceScanned(PieceId),
    #[error("payment failed: {0}")]
    Payment(PaymentError),
    #[error("the licensing authority refused a meter license: {reason}")]
    LicenseRefused { reason: String },
    #[error("signing the item failed: {reason}")]
    SignerFailed { reason: String },
    #[error("ledger invariant broken: registers {registers:?} (nothing was written)")]
    InvariantBroken { registers: Registers },
}

/// An authorization as returned to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    pub id: AuthorizationId,
    pub meter: MeterSerial,
    pub amount: Cents,
    pub kind: u8,
    pub expires_at_ms: u64,
    pub registers: Registers,
    /// The item signed inside the reserving transaction.
    #[serde(with = "hex_bytes")]
    pub signed: Vec<u8>,
}

/// The result of a successful operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Outcome {
    Opened {
        account: AccountId,
        meter: MeterSerial,
        status: AccountStatus,
    },
    Licensed {
        account: AccountId,
        license: LicenseId,
    },
    Funded {
        account: AccountId,
        payment: PaymentId,
        registers: Registers,
    },
    Locked {
        account: AccountId,
    },
    Authorized(Authorization),
    Committed {
        id: PieceId,
        registers: Registers,
    },
    Voided {
        id: PieceId,
        registers: Registers,
    },
    /// A void for an item that reached the printer: it is committed and a refund is requested.
    RefundRequested {
        id: PieceId,
        registers: Registers,
    },
    Expired {
        ids: Vec<PieceId>,
    },
    RefundDecided {
        id: PieceId,
        approved: bool,
        registers: Registers,
    },
    ScanRecorded {
        id: PieceId,
        refund_rejected: bool,
        /// False: a repeat within `scan_record_window_ms` of a recorded scan, only counted on
        /// the piece (no audit record; the reply is not remembered under its request id).
        #[serde(default = "yes")]
        recorded: bool,
    },
    /// A supervisor unlocked the account.
    Unlocked {
        account: AccountId,
    },
    /// A charge the ledger did not credit was reversed at the processor (recorded).
    PaymentReversed {
        account: AccountId,
        payment: PaymentId,
    },
}

/// What every operation answers: the outcome or the typed refusal.
pub type Reply = Result<Outcome, LedgerError>;

/// A statement of one account for a period `[from_ms, to_ms)`. Balances are
/// `control − ascending` (available plus reserved), so
/// `ending = beginning + credits + refunded − printed`. `voided` is the value of reservations
/// released back (it does not change the balance). `unsettled` is the part of `printed` the
/// reaper committed at expiry; `late_voided` the part of `refunded` that late voids of
/// unsettled pieces gave back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Statement {
    pub account: AccountId,
    pub from_ms: u64,
    pub to_ms: u64,
    pub beginning: Cents,
    pub credits: Cents,
    pub printed: Cents,
    pub voided: Cents,
    pub refunded: Cents,
    pub ending: Cents,
    /// Of `printed`: committed unsettled by the reaper in the period.
    #[serde(default)]
    pub unsettled: Cents,
    /// Of `refunded`: credited back by late voids of unsettled pieces in the period.
    #[serde(default)]
    pub late_voided: Cents,
    /// How many authorizations were committed (items printed) in the period.
    #[serde(default)]
    pub printed_count: u64,
}

/// Byte strings as lowercase hex in JSON (compact and fast, unlike an array of numbers).
mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests;
