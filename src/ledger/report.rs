//! **Core** (no I/O): a customer's tender and the end-of-day report (issue 15).
//!
//! - [`Tender`]: how the customer paid for one basket of pieces, and [`decide_tender`], the one
//!   place that decides whether a tender may be recorded (the stores load the rows it needs,
//!   call it, and write what it allows in the same transaction).
//! - [`DayReport`]: one day's close-out for an office, a clerk or a terminal, folded by
//!   [`DayReport::build`] from the day's pieces and tenders. The vendor's `day_report` answer,
//!   `frank vendor report --json` and the counter's close-out screen are this one struct.
//!
//! docs/LEDGER.md §Tenders and §End-of-day report define every figure.

use super::model::{AccountId, ItemState, Piece, PieceSerial, RequestId, TerminalId};
use crate::indicium::kinds::{Day, ItemKind, MailClass};
use crate::indicium::layout::PieceNumber;
use crate::money::Cents;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Most pieces one basket's tender may name (40 serials of at most 20 digits keep the
/// request MAC's destination under its 1024 bytes, docs/PROTOCOL.md §7).
pub const BASKET_PIECES_MAX: usize = 40;
/// Most pieces one day report reads; a day with more is reported on its first this many
/// (`DayReport::truncated`).
pub const REPORT_PIECES_MAX: u32 = 20_000;
/// Most tenders one day report reads (`DayReport::truncated` beyond).
pub const REPORT_TENDERS_MAX: u32 = 20_000;
/// Most unsettled items a report lists one by one (all are counted).
pub const REPORT_ITEMS_LISTED_MAX: usize = 200;
/// A day in milliseconds.
pub const DAY_MS: u64 = 86_400_000;

/// How a customer paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TenderKind {
    Cash,
    Card,
    Check,
    Other,
}

impl TenderKind {
    pub const ALL: [TenderKind; 4] = [
        TenderKind::Cash,
        TenderKind::Card,
        TenderKind::Check,
        TenderKind::Other,
    ];
    /// The stored and wire name: `cash`, `card`, `check`, `other`.
    pub fn as_str(self) -> &'static str {
        match self {
            TenderKind::Cash => "cash",
            TenderKind::Card => "card",
            TenderKind::Check => "check",
            TenderKind::Other => "other",
        }
    }
    pub fn parse(text: &str) -> Option<TenderKind> {
        TenderKind::ALL.into_iter().find(|k| k.as_str() == text)
    }
    /// As people say it: `Cash`, `Card`, `Check`, `Other`.
    pub fn title(self) -> &'static str {
        match self {
            TenderKind::Cash => "Cash",
            TenderKind::Card => "Card",
            TenderKind::Check => "Check",
            TenderKind::Other => "Other",
        }
    }
}

/// One basket's tender as the ledger stores it (table `tenders` and `tender_pieces`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tender {
    /// The basket: the `tender` request's id. A retry with the same id and body answers the
    /// stored tender; another body under it is refused.
    pub basket: RequestId,
    pub account: AccountId,
    /// The signed-in clerk who recorded it.
    pub clerk: String,
    pub terminal: TerminalId,
    pub kind: TenderKind,
    /// What the customer handed over.
    pub tendered: Cents,
    /// Given back (cash only).
    pub change: Cents,
    /// The basket's pieces, in the order the counter gave them; each in at most one basket.
    pub pieces: Vec<PieceSerial>,
    /// Sum of the pieces' amounts when it was recorded (= tendered − change).
    pub total: Cents,
    pub recorded_at_ms: u64,
}

impl Tender {
    /// The meter serial of the tender's account (its pieces' numbers are `meter #serial`).
    pub fn meter(&self) -> String {
        super::model::MeterSerial::for_account(self.account).to_string()
    }

    /// What stayed in the drawer or was charged: tendered − change.
    pub fn received(&self) -> Cents {
        self.tendered
            .checked_sub(self.change)
            .unwrap_or(Cents::ZERO)
    }

    /// Whether `other` asks for the same thing (a retry): account, kind, amounts and pieces.
    /// The clerk, terminal and time are not compared (a retry may come after a new sign-in).
    fn same_body(&self, other: &Tender) -> bool {
        self.account == other.account
            && self.kind == other.kind
            && self.tendered == other.tendered
            && self.change == other.change
            && self.pieces == other.pieces
    }
}

/// Why a tender was refused. Nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TenderError {
    #[error("a basket's tender must name at least one item")]
    Empty,
    #[error("a basket may hold at most {max} items; this one names {count}")]
    TooManyPieces { count: usize, max: usize },
    #[error("item {0} is named twice in this basket")]
    DuplicatePiece(PieceNumber),
    #[error("item {0} is not an item of this office")]
    UnknownPiece(PieceNumber),
    #[error("item {0} was voided, so the customer does not pay for it; leave it out")]
    Voided(PieceNumber),
    #[error("item {0} was already paid for in another basket")]
    InOtherBasket(PieceNumber),
    #[error("only cash gives change; a {kind} payment must have no change")]
    ChangeWithoutCash { kind: &'static str },
    #[error("the change ({change}) is more than what was handed over ({tendered})")]
    ChangeAboveTendered { tendered: Cents, change: Cents },
    #[error(
        "the payment received ({received}) does not match the basket's items ({total}); pay exactly the total"
    )]
    AmountMismatch { received: Cents, total: Cents },
    #[error("this basket was already recorded with other items or amounts; start a new basket")]
    IdempotencyConflict,
}

/// What a store does with a tender [`decide_tender`] allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TenderDecision {
    /// Write it (with its `total`).
    Insert(Tender),
    /// The same basket was recorded before: answer the stored one, write nothing.
    Replay(Tender),
}

/// One piece a tender names, as the store found it: the piece (`None`: no such piece of the
/// tender's account) and the basket it is already in.
#[derive(Debug, Clone)]
pub struct TenderPiece {
    pub serial: PieceSerial,
    pub piece: Option<Piece>,
    pub basket: Option<RequestId>,
}

/// Decides a tender: the store gives the tender asked for (its `total` ignored), the tender
/// stored under the same basket id if any, and each named piece as it found it, in order.
pub fn decide_tender(
    asked: &Tender,
    existing: Option<&Tender>,
    found: &[TenderPiece],
) -> Result<TenderDecision, TenderError> {
    if let Some(e) = existing {
        return if e.same_body(asked) {
            Ok(TenderDecision::Replay(e.clone()))
        } else {
            Err(TenderError::IdempotencyConflict)
        };
    }
    check_shape(asked)?;
    let number = |serial: u64| PieceNumber::new(asked.meter(), serial);
    let mut total = Cents::ZERO;
    for f in found {
        let serial = number(f.serial.0);
        let Some(p) = f.piece.as_ref().filter(|p| p.id.account == asked.account) else {
            return Err(TenderError::UnknownPiece(serial));
        };
        if p.id.serial != f.serial {
            return Err(TenderError::UnknownPiece(serial));
        }
        if p.item_state() == ItemState::Voided {
            return Err(TenderError::Voided(serial));
        }
        if f.basket.is_some_and(|b| b != asked.basket) {
            return Err(TenderError::InOtherBasket(serial));
        }
        total = total
            .checked_add(p.amount)
            .map_err(|_| TenderError::AmountMismatch {
                received: asked.received(),
                total,
            })?;
    }
    if found.len() != asked.pieces.len() {
        return Err(TenderError::UnknownPiece(number(
            asked.pieces.get(found.len()).map_or(0, |s| s.0),
        )));
    }
    if asked.received() != total {
        return Err(TenderError::AmountMismatch {
            received: asked.received(),
            total,
        });
    }
    Ok(TenderDecision::Insert(Tender {
        total,
        ..asked.clone()
    }))
}

/// The checks that need no stored row (also run by the front before the ledger).
pub fn check_shape(t: &Tender) -> Result<(), TenderError> {
    if t.pieces.is_empty() {
        return Err(TenderError::Empty);
    }
    if t.pieces.len() > BASKET_PIECES_MAX {
        return Err(TenderError::TooManyPieces {
            count: t.pieces.len(),
            max: BASKET_PIECES_MAX,
        });
    }
    let mut seen = std::collections::HashSet::new();
    for s in &t.pieces {
        if !seen.insert(s.0) {
            return Err(TenderError::DuplicatePiece(PieceNumber::new(
                t.meter(),
                s.0,
            )));
        }
    }
    if t.change > t.tendered {
        return Err(TenderError::ChangeAboveTendered {
            tendered: t.tendered,
            change: t.change,
        });
    }
    if t.kind != TenderKind::Cash && !t.change.is_zero() {
        return Err(TenderError::ChangeWithoutCash {
            kind: t.kind.as_str(),
        });
    }
    Ok(())
}

/// Whose day a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportScope {
    /// Every clerk and terminal of the account (or of every account, on the vendor's CLI
    /// without `--account`).
    Office,
    /// The items this clerk issued and the tenders they recorded.
    Clerk(String),
    /// The items this terminal issued and the tenders recorded on it.
    Terminal(u64),
}

impl std::fmt::Display for ReportScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportScope::Office => f.write_str("the whole office"),
            ReportScope::Clerk(c) => write!(f, "clerk {c}"),
            ReportScope::Terminal(t) => write!(f, "terminal {t}"),
        }
    }
}

/// A count of items and their value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Totals {
    pub count: u64,
    pub amount_cents: u64,
}

impl Totals {
    fn add(&mut self, amount: Cents) {
        self.count += 1;
        self.amount_cents = self.amount_cents.saturating_add(amount.get());
    }
}

/// Issued items of one kind (and mail class, for postage).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportLine {
    /// `postage`, `ticket`, `check`, `coupon`, `gift-certificate`.
    pub kind: String,
    /// Postage only: `first-class`, `priority`, ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// As people say it: `Priority Mail`, `Ticket`, `Gift certificate`.
    pub title: String,
    pub count: u64,
    pub amount_cents: u64,
}

/// One item named in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportItem {
    /// As printed on its label: `FRK10000001 #9`.
    pub number: PieceNumber,
    pub summary: String,
    pub amount_cents: u64,
}

/// The tenders of one kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenderLine {
    pub kind: TenderKind,
    /// Baskets paid this way.
    pub count: u64,
    pub tendered_cents: u64,
    pub change_cents: u64,
    /// tendered − change.
    pub received_cents: u64,
}

/// One day's close-out (docs/LEDGER.md §End-of-day report defines each figure).
///
/// The day is a UTC day: `[from_ms, to_ms)` = `[day 00:00 UTC, next day 00:00 UTC)`. Items
/// count on the day they were authorized, in the state they are in when the report is made;
/// tenders on the day they were recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DayReport {
    /// `YYYY-MM-DD`.
    pub day: String,
    /// Always `UTC` in this version.
    pub timezone: String,
    pub from_ms: u64,
    pub to_ms: u64,
    /// The ledger account (`None`: every account, the vendor's CLI without `--account`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<u64>,
    pub scope: ReportScope,
    /// Issued items (charged: printed, unsettled or with a refund request) by kind and class,
    /// in kind order then class order.
    pub lines: Vec<ReportLine>,
    /// Every issued item: the sum of `lines`.
    pub issued: Totals,
    /// Authorized, not settled yet (printing, or its settlement on its way).
    pub in_progress: Totals,
    /// Voided: not on paper, not charged.
    pub voided: Totals,
    /// Of `issued`: committed by the vendor at their reservation's expiry because their
    /// terminal never settled them (charged; the terminal or a refund may still settle them).
    pub unsettled: Totals,
    /// The unsettled items one by one (at most [`REPORT_ITEMS_LISTED_MAX`]).
    pub unsettled_items: Vec<ReportItem>,
    /// Of `issued`: refund requested, awaiting a supervisor.
    pub refunds_awaiting: Totals,
    /// Of `issued`: refund approved (credited back to the account).
    pub refunds_approved: Totals,
    /// Of `issued`: refund rejected.
    pub refunds_rejected: Totals,
    /// `issued − refunds_approved`: what the day's items cost the account.
    pub net_charged_cents: u64,
    /// Tenders by kind (every kind listed, zero or not).
    pub tenders: Vec<TenderLine>,
    /// Sum of the tenders' received amounts.
    pub received_cents: u64,
    /// Cash expected in the drawer from the day's baskets: cash tendered − cash change.
    pub cash_expected_cents: u64,
    /// Of `issued`: items in a basket whose tender is in this report.
    pub tendered_items: Totals,
    /// Of `issued`: items in no tender of this report (issued outside a basket, or tendered
    /// on another day or by another clerk or terminal).
    pub untendered_items: Totals,
    /// The day held more than [`REPORT_PIECES_MAX`] items or [`REPORT_TENDERS_MAX`] tenders;
    /// the figures cover the first ones only.
    pub truncated: bool,
}

/// What a report needs of a piece beyond its ledger row: who issued it and what it is (the
/// vendor reads these from the piece's stored item description).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Described {
    pub clerk: Option<String>,
    pub class: Option<MailClass>,
    pub summary: String,
}

/// The day's rows as a store read them.
#[derive(Debug, Clone, Default)]
pub struct DayRows {
    /// Pieces authorized in `[from_ms, to_ms)`, at most [`REPORT_PIECES_MAX`] + 1.
    pub pieces: Vec<Piece>,
    /// Tenders recorded in `[from_ms, to_ms)`, at most [`REPORT_TENDERS_MAX`] + 1.
    pub tenders: Vec<Tender>,
}

/// `[from_ms, to_ms)` of a UTC day.
pub fn day_bounds(day: Day) -> (u64, u64) {
    let from = u64::from(day.days()) * DAY_MS;
    (from, from + DAY_MS)
}

impl DayReport {
    /// Folds the day's rows into the report for `scope`. `describe` tells who issued a piece
    /// and what it is; `meter` names an account's meter (for item numbers).
    pub fn build(
        day: Day,
        account: Option<AccountId>,
        scope: &ReportScope,
        rows: &DayRows,
        describe: impl Fn(&Piece) -> Described,
        meter: impl Fn(AccountId) -> String,
    ) -> DayReport {
        let (from_ms, to_ms) = day_bounds(day);
        let truncated = rows.pieces.len() > REPORT_PIECES_MAX as usize
            || rows.tenders.len() > REPORT_TENDERS_MAX as usize;
        let tenders: Vec<&Tender> = rows
            .tenders
            .iter()
            .take(REPORT_TENDERS_MAX as usize)
            .filter(|t| account.is_none_or(|a| t.account == a))
            .filter(|t| match scope {
                ReportScope::Office => true,
                ReportScope::Clerk(c) => t.clerk == *c,
                ReportScope::Terminal(id) => t.terminal.0 == *id,
            })
            .collect();
        let tendered: std::collections::HashSet<(AccountId, PieceSerial)> = tenders
            .iter()
            .flat_map(|t| t.pieces.iter().map(|s| (t.account, *s)))
            .collect();
        let mut r = DayReport {
            day: day.to_string(),
            timezone: "UTC".into(),
            from_ms,
            to_ms,
            account: account.map(|a| a.0),
            scope: scope.clone(),
            lines: Vec::new(),
            issued: Totals::default(),
            in_progress: Totals::default(),
            voided: Totals::default(),
            unsettled: Totals::default(),
            unsettled_items: Vec::new(),
            refunds_awaiting: Totals::default(),
            refunds_approved: Totals::default(),
            refunds_rejected: Totals::default(),
            net_charged_cents: 0,
            tenders: Vec::new(),
            received_cents: 0,
            cash_expected_cents: 0,
            tendered_items: Totals::default(),
            untendered_items: Totals::default(),
            truncated,
        };
        let mut lines: BTreeMap<(u8, Option<u8>), ReportLine> = BTreeMap::new();
        for p in rows.pieces.iter().take(REPORT_PIECES_MAX as usize) {
            if account.is_some_and(|a| p.id.account != a)
                || p.authorized_at_ms < from_ms
                || p.authorized_at_ms >= to_ms
            {
                continue;
            }
            let d = describe(p);
            let mine = match scope {
                ReportScope::Office => true,
                ReportScope::Clerk(c) => d.clerk.as_deref() == Some(c.as_str()),
                ReportScope::Terminal(id) => p.terminal.map(|t| t.0) == Some(*id),
            };
            if !mine {
                continue;
            }
            let state = p.item_state();
            match state {
                ItemState::Reserved => {
                    r.in_progress.add(p.amount);
                    continue;
                }
                ItemState::Voided => {
                    r.voided.add(p.amount);
                    continue;
                }
                _ => {}
            }
            r.issued.add(p.amount);
            let kind = ItemKind::from_code(p.kind);
            let class = d.class.filter(|_| kind == Some(ItemKind::Postage));
            let line = lines
                .entry((p.kind, class.map(|c| c.code())))
                .or_insert_with(|| ReportLine {
                    kind: kind.map_or("unknown", |k| k.name()).to_string(),
                    class: class.map(|c| c.name().to_string()),
                    title: match (kind, class) {
                        (_, Some(c)) => c.title().to_string(),
                        (Some(k), None) => k.title().to_string(),
                        (None, None) => "Other item".to_string(),
                    },
                    count: 0,
                    amount_cents: 0,
                });
            line.count += 1;
            line.amount_cents = line.amount_cents.saturating_add(p.amount.get());
            if p.state == super::model::PieceState::Unsettled {
                r.unsettled.add(p.amount);
                if r.unsettled_items.len() < REPORT_ITEMS_LISTED_MAX {
                    r.unsettled_items.push(ReportItem {
                        number: PieceNumber::new(meter(p.id.account), p.id.serial.0),
                        summary: d.summary.clone(),
                        amount_cents: p.amount.get(),
                    });
                }
            }
            match state {
                ItemState::RefundRequested => r.refunds_awaiting.add(p.amount),
                ItemState::Refunded => r.refunds_approved.add(p.amount),
                ItemState::RefundRejected => r.refunds_rejected.add(p.amount),
                _ => {}
            }
            if tendered.contains(&(p.id.account, p.id.serial)) {
                r.tendered_items.add(p.amount);
            } else {
                r.untendered_items.add(p.amount);
            }
        }
        r.lines = lines.into_values().collect();
        r.net_charged_cents = r
            .issued
            .amount_cents
            .saturating_sub(r.refunds_approved.amount_cents);
        for kind in TenderKind::ALL {
            let mut line = TenderLine {
                kind,
                count: 0,
                tendered_cents: 0,
                change_cents: 0,
                received_cents: 0,
            };
            for t in tenders.iter().filter(|t| t.kind == kind) {
                line.count += 1;
                line.tendered_cents = line.tendered_cents.saturating_add(t.tendered.get());
                line.change_cents = line.change_cents.saturating_add(t.change.get());
                line.received_cents = line.received_cents.saturating_add(t.received().get());
            }
            r.received_cents = r.received_cents.saturating_add(line.received_cents);
            if kind == TenderKind::Cash {
                r.cash_expected_cents = line.received_cents;
            }
            r.tenders.push(line);
        }
        r
    }

    /// The report as a person reads it (the vendor's CLI and the counter's printout).
    pub fn text_lines(&self) -> Vec<String> {
        let money = |c: u64| Cents::new(c).unwrap_or(Cents::ZERO).to_string();
        let t = |label: &str, x: &Totals| {
            format!("  {label:<28}{:>6}  {:>12}", x.count, money(x.amount_cents))
        };
        let mut out = vec![format!(
            "End of day {} ({}), {}",
            self.day, self.timezone, self.scope
        )];
        if let Some(a) = self.account {
            out[0].push_str(&format!(", account {a}"));
        }
        out.push(format!(
            "  {:<28}{:>6}  {:>12}",
            "Items issued", "count", "amount"
        ));
        for l in &self.lines {
            out.push(format!(
                "    {:<26}{:>6}  {:>12}",
                l.title,
                l.count,
                money(l.amount_cents)
            ));
        }
        out.push(t("Total issued", &self.issued));
        out.push(t("Voided (not charged)", &self.voided));
        out.push(t("Still printing or settling", &self.in_progress));
        out.push(t("Unsettled (charged)", &self.unsettled));
        for i in &self.unsettled_items {
            out.push(format!(
                "    {}  {}  {}",
                i.number,
                i.summary,
                money(i.amount_cents)
            ));
        }
        out.push(t("Refunds awaiting decision", &self.refunds_awaiting));
        out.push(t("Refunds approved", &self.refunds_approved));
        out.push(t("Refunds rejected", &self.refunds_rejected));
        out.push(format!(
            "  {:<36}{:>12}",
            "Net charged",
            money(self.net_charged_cents)
        ));
        out.push(format!(
            "  {:<28}{:>6}  {:>12}  {:>10}  {:>12}",
            "Payments", "count", "tendered", "change", "received"
        ));
        for l in &self.tenders {
            out.push(format!(
                "    {:<26}{:>6}  {:>12}  {:>10}  {:>12}",
                l.kind.title(),
                l.count,
                money(l.tendered_cents),
                money(l.change_cents),
                money(l.received_cents)
            ));
        }
        out.push(format!(
            "  {:<36}{:>12}",
            "Total received",
            money(self.received_cents)
        ));
        out.push(format!(
            "  {:<36}{:>12}",
            "Cash expected in drawer",
            money(self.cash_expected_cents)
        ));
        out.push(t("Items paid in a basket", &self.tendered_items));
        out.push(t("Items without a payment", &self.untendered_items));
        if self.truncated {
            out.push(format!(
                "  NOTE: the day has more than {REPORT_PIECES_MAX} items or {REPORT_TENDERS_MAX} payments; only the first are counted"
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests;
