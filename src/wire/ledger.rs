//! Ledger messages on the wire (sans-I/O): balance, quote, fund, authorize, commit, void,
//! statement, refund_request, piece, pieces. docs/PROTOCOL.md §Ledger requests is the specification.
//!
//! Money-moving requests (`fund`, `authorize`, `commit`, `void`, `refund_request`) carry a
//! 16-byte `request_id`, the client's `client_time_ms` and the per-request MAC
//! ([`super::reqmac`]) over `(operation = request type, request_id, amount_cents,
//! client_time_ms, clerk, destination)`; [`MoneyRequest::mac_fields`] gives the amount and the
//! destination of each type.

use crate::indicium::address::parse_zip;
use crate::indicium::kinds::{self, Day, Item, MailClass, Text, WeightOz};
use crate::indicium::layout::PieceNumber;
use crate::indicium::{self, FieldError};
use crate::money::Cents;
use serde::{Deserialize, Serialize};

/// Largest card/account/routing text accepted (validation happens in the ledger's payment
/// code; this only bounds what the codec holds).
pub const PAYMENT_FIELD_BYTES_MAX: usize = 32;

/// The MAC'd fields every money-moving request shares.
pub trait MoneyRequest {
    /// The request's type: the `operation` its MAC covers.
    const OPERATION: super::Operation;
    fn request_id(&self) -> &[u8];
    fn client_time_ms(&self) -> u64;
    fn mac(&self) -> &[u8];
}

/// Declares a money-moving request, the one shape they share: `request_id` (16 bytes) and
/// `client_time_ms` first, the type's own fields, the `mac` (32 bytes) last — the wire order
/// of docs/PROTOCOL.md — and its [`MoneyRequest`] with the operation its MAC covers.
macro_rules! money_request {
    (
        $(#[$meta:meta])*
        $name:ident => $op:ident {
            $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            #[serde(with = "serde_bytes")]
            pub request_id: Vec<u8>,
            pub client_time_ms: u64,
            $($(#[$field_meta])* pub $field: $ty,)*
            #[serde(with = "serde_bytes")]
            pub mac: Vec<u8>,
        }

        impl MoneyRequest for $name {
            const OPERATION: super::Operation = super::Operation::$op;
            fn request_id(&self) -> &[u8] {
                &self.request_id
            }
            fn client_time_ms(&self) -> u64 {
                self.client_time_ms
            }
            fn mac(&self) -> &[u8] {
                &self.mac
            }
        }
    };
}

/// A postage piece: class, weight, destination ZIP (ZIP or ZIP+4) and the counter's ZIP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostageItem {
    /// `first-class`, `priority`, `priority-express`, `ground-advantage`, `media`.
    pub class: String,
    pub weight_oz: u16,
    /// `12345` or `12345-6789`.
    pub zip: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TicketItem {
    pub event: String,
    pub venue: String,
    pub seat: String,
    /// `YYYY-MM-DD`.
    pub event_day: String,
    pub price_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckItem {
    pub payee: String,
    pub amount_cents: u64,
    pub number: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memo: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueItem {
    /// Coupon: the offer; gift certificate: the recipient.
    pub text: String,
    pub value_cents: u64,
    /// `YYYY-MM-DD`.
    pub expiry: String,
}

/// The item an authorization is for: a one-key map naming the kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum WireItem {
    Postage(PostageItem),
    Ticket(TicketItem),
    Check(CheckItem),
    Coupon(ValueItem),
    GiftCertificate(ValueItem),
}

fn cents(field: &'static str, v: u64) -> Result<Cents, FieldError> {
    Cents::new(v).map_err(|e| FieldError::new(field, e.to_string()))
}

impl WireItem {
    /// The wire form of a typed item (the inverse of [`Self::to_item`]).
    pub fn from_item(item: &Item) -> WireItem {
        match item {
            Item::Postage(p) => WireItem::Postage(PostageItem {
                class: p.class.name().to_string(),
                weight_oz: p.weight.get(),
                zip: match p.destination.zip4() {
                    Some(z4) => format!("{}-{}", p.destination.zip5(), z4),
                    None => p.destination.zip5().to_string(),
                },
            }),
            Item::Ticket(t) => WireItem::Ticket(TicketItem {
                event: t.event.as_str().to_string(),
                venue: t.venue.as_str().to_string(),
                seat: t.seat.as_str().to_string(),
                event_day: t.event_day.to_string(),
                price_cents: t.price.get(),
            }),
            Item::Check(c) => WireItem::Check(CheckItem {
                payee: c.payee.as_str().to_string(),
                amount_cents: c.amount.get(),
                number: c.number.get(),
                memo: c.memo.as_ref().map(|m| m.as_str().to_string()),
            }),
            Item::Coupon(c) => WireItem::Coupon(ValueItem {
                text: c.offer.as_str().to_string(),
                value_cents: c.value.get(),
                expiry: c.expiry.to_string(),
            }),
            Item::GiftCertificate(g) => WireItem::GiftCertificate(ValueItem {
                text: g.recipient.as_str().to_string(),
                value_cents: g.value.get(),
                expiry: g.expiry.to_string(),
            }),
        }
    }

    /// The typed item (every field validated; errors name the field).
    pub fn to_item(&self) -> Result<Item, FieldError> {
        Ok(match self {
            WireItem::Postage(p) => {
                let (zip5, zip4) = parse_zip("zip", &p.zip)?;
                Item::Postage(kinds::Postage {
                    class: MailClass::parse(&p.class)?,
                    weight: WeightOz::new(p.weight_oz)?,
                    destination: kinds::Destination::new(zip5, zip4, None)?,
                })
            }
            WireItem::Ticket(t) => Item::Ticket(kinds::Ticket {
                event: Text::new("event", &t.event)?,
                venue: Text::new("venue", &t.venue)?,
                seat: Text::new("seat", &t.seat)?,
                event_day: Day::parse("event_day", &t.event_day)?,
                price: cents("price_cents", t.price_cents)?,
            }),
            WireItem::Check(c) => Item::Check(kinds::Check {
                payee: Text::new("payee", &c.payee)?,
                amount: cents("amount_cents", c.amount_cents)?,
                number: kinds::CheckNumber::new(c.number)?,
                memo: c
                    .memo
                    .as_deref()
                    .map(|m| Text::new("memo", m))
                    .transpose()?,
            }),
            WireItem::Coupon(v) => Item::Coupon(kinds::Coupon {
                offer: Text::new("text", &v.text)?,
                value: cents("value_cents", v.value_cents)?,
                expiry: Day::parse("expiry", &v.expiry)?,
            }),
            WireItem::GiftCertificate(v) => Item::GiftCertificate(kinds::GiftCertificate {
                recipient: Text::new("text", &v.text)?,
                value: cents("value_cents", v.value_cents)?,
                expiry: Day::parse("expiry", &v.expiry)?,
            }),
        })
    }
}

fn class_title(class: MailClass) -> &'static str {
    match class {
        MailClass::FirstClass => "First-Class",
        MailClass::Priority => "Priority",
        MailClass::PriorityExpress => "Priority Express",
        MailClass::GroundAdvantage => "Ground Advantage",
        MailClass::Media => "Media Mail",
    }
}

impl WireItem {
    /// A short human text of the item for lists and receipts: `First-Class 3 oz → 20500`,
    /// `Ticket: Opera, seat 12A`, `Check #9 to Acme`, `Coupon: 10% off`,
    /// `Gift certificate: Jane Doe`. Fields are shown as given (an unknown mail class as its
    /// wire name).
    pub fn summary(&self) -> String {
        match self {
            WireItem::Postage(p) => {
                let class = MailClass::parse(&p.class)
                    .map(class_title)
                    .unwrap_or(p.class.as_str());
                format!("{class} {} oz → {}", p.weight_oz, p.zip)
            }
            WireItem::Ticket(t) => format!("Ticket: {}, seat {}", t.event, t.seat),
            WireItem::Check(c) => format!("Check #{} to {}", c.number, c.payee),
            WireItem::Coupon(v) => format!("Coupon: {}", v.text),
            WireItem::GiftCertificate(v) => format!("Gift certificate: {}", v.text),
        }
    }
}

/// Registers in cents (see docs/LEDGER.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct WireRegisters {
    pub descending_cents: u64,
    pub pending_cents: u64,
    pub ascending_cents: u64,
    pub control_cents: u64,
}

/// `balance`: the session's account and registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct BalanceRequest {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Balance {
    pub ledger_account: u64,
    pub meter: String,
    /// `pending`, `active` or `locked`.
    pub status: String,
    pub registers: WireRegisters,
}

/// `quote`: the vendor's price for a postage piece.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuoteRequest {
    pub item: PostageItem,
    pub origin_zip: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quoted {
    pub amount_cents: u64,
    pub zone: u8,
    pub rate_table: String,
    /// The vendor runs on the SAMPLE rate table (not real prices).
    pub sample: bool,
}

/// How a top-up is paid. Debug never shows the card number, CVC or bank account number.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FundMethod {
    Card {
        number: String,
        exp_month: u8,
        exp_year: u16,
        cvc: String,
    },
    Ach {
        routing: String,
        account: String,
    },
}

impl FundMethod {
    /// The payment simulator's always-approved test card, expiring in 2040. For load
    /// generation and tests against the embedded simulator; a real processor declines it.
    pub fn simulator_test_card() -> FundMethod {
        FundMethod::Card {
            number: crate::ledger::payment::SIMULATOR_CARD_APPROVED.into(),
            exp_month: 12,
            exp_year: 2040,
            cvc: "123".into(),
        }
    }
}

fn last4(s: &str) -> String {
    let digits: Vec<char> = s.chars().filter(|c| c.is_ascii_digit()).collect();
    digits[digits.len().saturating_sub(4)..].iter().collect()
}

impl FundMethod {
    /// The MAC destination of a `fund`: `card:LAST4` or `ach:ROUTING:LAST4`.
    pub fn destination(&self) -> String {
        match self {
            FundMethod::Card { number, .. } => format!("card:{}", last4(number)),
            FundMethod::Ach { routing, account } => format!("ach:{routing}:{}", last4(account)),
        }
    }
}

impl Drop for FundMethod {
    /// Wipes card numbers, CVCs and bank account numbers from memory.
    fn drop(&mut self) {
        use zeroize::Zeroize;
        match self {
            FundMethod::Card { number, cvc, .. } => {
                number.zeroize();
                cvc.zeroize();
            }
            FundMethod::Ach { account, .. } => account.zeroize(),
        }
    }
}

impl std::fmt::Debug for FundMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FundMethod::Card {
                number,
                exp_month,
                exp_year,
                ..
            } => f
                .debug_struct("Card")
                .field("last4", &last4(number))
                .field("exp_month", exp_month)
                .field("exp_year", exp_year)
                .field("cvc", &"<redacted>")
                .finish(),
            FundMethod::Ach { routing, account } => f
                .debug_struct("Ach")
                .field("routing", routing)
                .field("last4", &last4(account))
                .finish(),
        }
    }
}

money_request! {
    /// `fund`: top up the account.
    Fund => Fund {
        pub amount_cents: u64,
        pub method: FundMethod,
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Funded {
    pub payment_id: String,
    pub registers: WireRegisters,
}

money_request! {
    /// `authorize`: reserve the item's value and get its signed indicium.
    Authorize => Authorize {
        pub amount_cents: u64,
        pub item: WireItem,
        /// The counter's ZIP (origin of a mail piece; printed in every indicium).
        pub origin_zip: String,
    }
}

impl Authorize {
    /// The MAC destination of an `authorize`: lowercase hex of the item's digest
    /// (SHA-256 of its canonical bytes, docs/INDICIUM.md), then `@` and the origin ZIP.
    pub fn destination(item: &Item, origin_zip: &str) -> String {
        format!("{}@{origin_zip}", hex::encode(item.digest()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Authorized {
    pub piece_serial: u64,
    pub meter: String,
    pub amount_cents: u64,
    pub expires_at_ms: u64,
    pub registers: WireRegisters,
    /// The signed indicium (layout v1, docs/INDICIUM.md).
    #[serde(with = "serde_bytes")]
    pub indicium: Vec<u8>,
}

money_request! {
    /// `commit`: the item printed.
    Commit => Commit {
        pub piece_serial: u64,
    }
}

money_request! {
    /// `void`: the print was aborted. `reached_printer`: did every byte of the item reach the
    /// printer (indicium complete)? If not, the reservation is released; if so the piece counts
    /// as printed and a refund request is filed.
    Void => Void {
        pub piece_serial: u64,
        pub reached_printer: bool,
    }
}

money_request! {
    /// `refund_request`: ask for a refund of a printed piece.
    RefundRequest => RefundRequest {
        pub piece_serial: u64,
    }
}

/// The answer to `commit`, `void` and `refund_request`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PieceDone {
    pub piece_serial: u64,
    /// `printed`, `voided` or `refund_requested`. A `commit` of an unsettled piece answers
    /// `printed` (settled); a late `void` of one answers `voided` (credited back).
    pub result: String,
    pub registers: WireRegisters,
}

/// `statement` for `[from_ms, to_ms)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementRequest {
    pub from_ms: u64,
    pub to_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatementBody {
    pub from_ms: u64,
    pub to_ms: u64,
    pub beginning_cents: u64,
    pub credits_cents: u64,
    pub printed_cents: u64,
    pub voided_cents: u64,
    pub refunded_cents: u64,
    pub ending_cents: u64,
}

/// `piece`: one piece of the session's account (also the refund status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PieceRequest {
    pub piece_serial: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PieceInfo {
    /// The meter serial of the piece's account; with `piece_serial` the number printed on the
    /// label (`FRK10000001 #9`, [`PieceInfo::number`]).
    pub meter: String,
    pub piece_serial: u64,
    pub kind: u8,
    pub amount_cents: u64,
    /// `reserved`, `printed`, `unsettled`, `voided`, `refund_requested`, `refunded`,
    /// `refund_rejected`. `unsettled`: no commit or void came by the reservation's expiry, so
    /// the vendor committed it as printed (charged); the terminal's `commit` makes it
    /// `printed`, its `void` (not reached) within the late-void window `voided`. A decoder
    /// must accept state names it does not know.
    pub item_state: String,
    pub authorized_at_ms: u64,
    pub expires_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub printed_at_ms: Option<u64>,
    /// The refund request's state, when one was filed: `requested` (awaiting a supervisor),
    /// `rejected`, `refunded` (approved and credited to the account). `approved` is reserved
    /// for a vendor whose approval and credit are separate steps; treat it like `refunded`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_state: Option<String>,
    /// A short human text of the item, e.g. `First-Class 3 oz → 20500` or
    /// `Ticket: Opera, seat 12A` (see [`WireItem::summary`]).
    pub summary: String,
    /// The clerk who authorized it, when the vendor recorded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clerk: Option<String>,
    /// The terminal that authorized it, when the vendor recorded one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terminal_id: Option<u64>,
}

impl PieceInfo {
    /// The piece's one number, as its label prints it.
    pub fn number(&self) -> PieceNumber {
        PieceNumber::new(self.meter.clone(), self.piece_serial)
    }
}

/// Most pieces one `pieces` request may ask for.
pub const PIECES_LIST_MAX: u32 = 200;

/// `pieces`: the session account's pieces, newest first, for the history screen. Page with
/// `before_serial` = the last (lowest) serial of the previous page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PiecesRequest {
    /// 1..=[`PIECES_LIST_MAX`].
    pub limit: u32,
    /// Only pieces with a serial below this one; `None`: from the newest.
    #[serde(default)]
    pub before_serial: Option<u64>,
}

/// The answer to `pieces`: newest (highest serial) first; fewer than `limit` when the
/// account has no more.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PieceList {
    pub pieces: Vec<PieceInfo>,
}

money_request! {
    /// `tender`: how the customer paid for one basket of the session account's pieces (money-
    /// adjacent: MAC'd, idempotent by `request_id`, which is the basket's id at the vendor).
    /// The vendor stores it with the pieces (docs/LEDGER.md §Tenders).
    TenderRequest => Tender {
        /// The session account's meter serial (the pieces' numbers are `meter #serial`).
        pub meter: String,
        /// 1..=[`crate::ledger::report::BASKET_PIECES_MAX`] distinct piece serials.
        pub pieces: Vec<u64>,
        /// `cash`, `card`, `check` or `other`.
        pub kind: String,
        pub amount_tendered_cents: u64,
        /// Cash only; 0 for other kinds.
        pub change_cents: u64,
    }
}

impl TenderRequest {
    /// The MAC destination of a `tender`: `KIND:CHANGE_CENTS:METER:S1,S2,...` (serials in
    /// the request's order); the MAC's amount is `amount_tendered_cents`.
    pub fn destination(kind: &str, change_cents: u64, meter: &str, pieces: &[u64]) -> String {
        let serials: Vec<String> = pieces.iter().map(|s| s.to_string()).collect();
        format!("{kind}:{change_cents}:{meter}:{}", serials.join(","))
    }
}

/// The answer to `tender`: the tender as stored (a retry answers the first one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenderDone {
    pub meter: String,
    pub pieces: Vec<u64>,
    pub kind: String,
    pub amount_tendered_cents: u64,
    pub change_cents: u64,
    /// Sum of the pieces' amounts (= tendered − change).
    pub total_cents: u64,
    pub recorded_at_ms: u64,
}

/// `day_report`: the end-of-day report of the session's account for one UTC day, for the
/// signed-in clerk or this terminal. The answer is a [`crate::ledger::report::DayReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayReportRequest {
    /// `YYYY-MM-DD` (UTC).
    pub day: String,
    /// `clerk` (the session's clerk), `terminal` (the session's terminal) or `office` (every
    /// clerk and terminal of the account: supervisors only).
    pub scope: String,
}

/// Most refund requests one `refunds_awaiting` answer lists.
pub const REFUNDS_AWAITING_MAX: u32 = 200;

/// `refunds_awaiting` (supervisors only): the session account's refund requests awaiting a
/// decision, oldest first. Answered with a [`PieceList`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundsAwaitingRequest {
    /// 1..=[`REFUNDS_AWAITING_MAX`].
    pub limit: u32,
}

money_request! {
    /// `refund_decide` (supervisors only): approve or reject a refund request of the session
    /// account's piece (money-moving: MAC'd, idempotent by `request_id`).
    RefundDecide => RefundDecide {
        pub meter: String,
        pub piece_serial: u64,
        pub approve: bool,
    }
}

impl RefundDecide {
    /// The MAC destination: `METER:SERIAL:approve` or `METER:SERIAL:reject`; amount 0.
    pub fn destination(meter: &str, piece_serial: u64, approve: bool) -> String {
        let d = if approve { "approve" } else { "reject" };
        format!("{meter}:{piece_serial}:{d}")
    }
}

/// The answer to `refund_decide`: the piece after the decision and the account's registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefundDecided {
    pub piece: PieceInfo,
    pub approved: bool,
    pub registers: WireRegisters,
}

/// Largest `scan.payload`: the longest indicium (layout v1, docs/INDICIUM.md).
pub const SCAN_PAYLOAD_BYTES_MAX: usize = crate::indicium::layout::PAYLOAD_BYTES_MAX;

/// `scan` (no session needed): a verifier presents a printed indicium. The vendor checks the
/// signature with its own key before looking anything up, records the scan in the ledger (a
/// pending refund request for the piece is then rejected) and answers the piece's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScanRequest {
    /// The whole indicium payload, 1..=[`SCAN_PAYLOAD_BYTES_MAX`] bytes.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
}

/// The answer to `scan`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scanned {
    /// The indicium's meter serial and piece serial.
    pub meter: String,
    pub piece_serial: u64,
    /// The piece's state when scanned: an `item_state` of [`PieceInfo`] (`reserved`,
    /// `printed`, `unsettled`, `voided`, `refund_requested`, `refunded`, `refund_rejected`),
    /// or `unknown`
    /// (the vendor holds no such piece), or `not_as_issued` (signed with the vendor's key but
    /// not the bytes the vendor issued for that serial).
    pub state: String,
    /// The piece must not be in the mail stream: it was voided, refunded, or is not as issued.
    /// An `unsettled` piece is not fraud: it is charged.
    pub fraud: bool,
    /// This scan rejected the piece's pending refund request.
    pub refund_rejected: bool,
    /// The piece had been scanned before (a second sighting of one indicium).
    pub scanned_before: bool,
}

/// The MAC destination of `commit` and `refund_request`: the piece serial in decimal.
pub fn piece_destination(piece_serial: u64) -> String {
    piece_serial.to_string()
}

/// The MAC destination of `void`: `SERIAL:reached` or `SERIAL:not_reached`.
pub fn void_destination(piece_serial: u64, reached_printer: bool) -> String {
    let r = if reached_printer {
        "reached"
    } else {
        "not_reached"
    };
    format!("{piece_serial}:{r}")
}

/// Checks the item's fields and kind (used by `decode_request`'s validation).
pub(crate) fn validate_item(field: &str, item: &WireItem) -> Result<Item, String> {
    item.to_item()
        .map_err(|e| format!("{field}.{}: {}", e.field, e.reason))
}

/// Day number of `ms` since the epoch (UTC) for an indicium date.
pub fn day_of_ms(ms: u64) -> Result<Day, FieldError> {
    let days = ms / 86_400_000;
    u16::try_from(days)
        .map(Day::from_days)
        .map_err(|_| FieldError::new("date", "beyond the indicium date range"))
}

/// Parses the origin ZIP (5 digits or ZIP+4; the indicium holds the 5-digit ZIP).
pub fn origin_zip(text: &str) -> Result<indicium::address::Zip5, FieldError> {
    parse_zip("origin_zip", text).map(|(z, _)| z)
}

#[cfg(test)]
mod tests;
