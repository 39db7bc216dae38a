//! Payments: validated card and ACH details, the [`PaymentProcessor`] interface and a
//! deterministic simulator.
//!
//! Full card numbers, CVCs and bank account numbers live only in these types, are wiped on
//! drop, never appear in `Debug`, and never reach the ledger (which keeps a
//! [`MethodSummary`] with the last 4 digits).
//!
//! Simulator test numbers (any expiry in the future, any well-formed CVC):
//!
//! | card number         | result               |
//! |---------------------|----------------------|
//! | 4242424242424242    | approved             |
//! | 4000000000000002    | declined             |
//! | 4000000000009995    | insufficient funds   |
//! | 4000000000000119    | timeout              |
//! | any other valid one | approved             |
//!
//! ACH: routing number 110000000 (or any valid ABA number) and account
//!
//! | account number | result                                              |
//! |----------------|-----------------------------------------------------|
//! | 000123456789   | approved                                            |
//! | 000222222227   | declined                                            |
//! | 000111111116   | insufficient funds                                  |
//! | 000333333335   | timeout                                             |
//! | 000111111113   | approved, then returned (reported by `returns()`)  |
//! | any other      | approved                                            |

/// The simulator's always-approved test card (see the table above).
pub const SIMULATOR_CARD_APPROVED: &str = "4242424242424242";

use super::model::{
    AccountId, FieldError, MethodSummary, PaymentError, PaymentField, PaymentId, PaymentReceipt,
    RequestId,
};
use crate::money::Cents;
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use zeroize::Zeroize;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

fn digits(text: &str) -> String {
    text.chars().filter(|c| !matches!(c, ' ' | '-')).collect()
}

fn field(field: PaymentField, problem: impl Into<String>) -> FieldError {
    FieldError {
        field,
        problem: problem.into(),
    }
}

/// Luhn checksum over ASCII digits.
pub fn luhn_valid(number: &str) -> bool {
    let mut sum = 0u32;
    for (i, c) in number.bytes().rev().enumerate() {
        let mut d = u32::from(c.wrapping_sub(b'0'));
        if d > 9 {
            return false;
        }
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    !number.is_empty() && sum.is_multiple_of(10)
}

/// ABA routing number checksum: 3(d1+d4+d7) + 7(d2+d5+d8) + (d3+d6+d9) ≡ 0 (mod 10).
pub fn aba_valid(routing: &str) -> bool {
    let d: Vec<u32> = routing
        .bytes()
        .map(|c| u32::from(c.wrapping_sub(b'0')))
        .collect();
    if d.len() != 9 || d.iter().any(|x| *x > 9) {
        return false;
    }
    let sum = 3 * (d[0] + d[3] + d[6]) + 7 * (d[1] + d[4] + d[7]) + (d[2] + d[5] + d[8]);
    sum.is_multiple_of(10)
}

/// A card number that passed the Luhn check. Debug shows only the last 4 digits.
pub struct CardNumber(String);

impl CardNumber {
    pub fn parse(text: &str) -> Result<CardNumber, FieldError> {
        let mut n = digits(text);
        let result = if n.is_empty() || !n.bytes().all(|c| c.is_ascii_digit()) {
            Err(field(PaymentField::CardNumber, "use digits only"))
        } else if !(12..=19).contains(&n.len()) {
            Err(field(
                PaymentField::CardNumber,
                format!("has {} digits; cards have 12 to 19", n.len()),
            ))
        } else if !luhn_valid(&n) {
            Err(field(
                PaymentField::CardNumber,
                "check digit is wrong; re-enter the number",
            ))
        } else {
            return Ok(CardNumber(n));
        };
        n.zeroize();
        result
    }
    pub fn last4(&self) -> String {
        self.0[self.0.len().saturating_sub(4)..].to_string()
    }
    fn expose(&self) -> &str {
        &self.0
    }
}

impl Drop for CardNumber {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CardNumber(****{})", self.last4())
    }
}

/// A card verification code (3 digits, 4 for American Express). Debug shows nothing.
pub struct Cvc(String);

impl Drop for Cvc {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl fmt::Debug for Cvc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Cvc(***)")
    }
}

/// Validated card details.
#[derive(Debug)]
pub struct Card {
    number: CardNumber,
    exp_month: u8,
    exp_year: u16,
    #[allow(dead_code)] // passed to a real processor; the simulator ignores it
    cvc: Cvc,
}

impl Card {
    /// Validates every field and reports every bad one. `exp_year` may be 2 or 4 digits;
    /// the card is valid through the end of its expiry month (UTC) at `now_ms`.
    pub fn parse(
        number: &str,
        exp_month: u8,
        exp_year: u16,
        cvc: &str,
        now_ms: u64,
    ) -> Result<Card, PaymentError> {
        let mut errors = Vec::new();
        let number = CardNumber::parse(number).map_err(|e| errors.push(e)).ok();
        let exp_year = if exp_year < 100 {
            exp_year + 2000
        } else {
            exp_year
        };
        if !(1..=12).contains(&exp_month) {
            errors.push(field(PaymentField::Expiry, "month must be 1 to 12"));
        } else {
            let (year, month) = year_month(now_ms);
            if (exp_year, exp_month) < (year, month) {
                errors.push(field(
                    PaymentField::Expiry,
                    format!("card expired at the end of {exp_month:02}/{exp_year}"),
                ));
            } else if exp_year > year + 20 {
                errors.push(field(PaymentField::Expiry, "year is too far ahead"));
            }
        }
        let amex = number
            .as_ref()
            .is_some_and(|n| n.0.starts_with("34") || n.0.starts_with("37"));
        let want = if amex { 4 } else { 3 };
        let mut cvc = cvc.trim().to_string();
        if cvc.len() != want || !cvc.bytes().all(|c| c.is_ascii_digit()) {
            errors.push(field(PaymentField::Cvc, format!("must be {want} digits")));
            cvc.zeroize();
        }
        match number {
            Some(number) if errors.is_empty() => Ok(Card {
                number,
                exp_month,
                exp_year,
                cvc: Cvc(cvc),
            }),
            _ => Err(PaymentError::Invalid(errors)),
        }
    }
}

fn year_month(now_ms: u64) -> (u16, u8) {
    let secs = i64::try_from(now_ms / 1000).unwrap_or(i64::MAX);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => (u16::try_from(t.year()).unwrap_or(u16::MAX), t.month() as u8),
        Err(_) => (u16::MAX, 12),
    }
}

/// Validated US bank account details for ACH/EFT. Debug shows routing and last 4 only.
pub struct BankAccount {
    routing: String,
    account: String,
}

impl Drop for BankAccount {
    fn drop(&mut self) {
        self.account.zeroize();
    }
}

impl fmt::Debug for BankAccount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "BankAccount {{ routing: {}, account: ****{} }}",
            self.routing,
            self.last4()
        )
    }
}

impl BankAccount {
    pub fn parse(routing: &str, account: &str) -> Result<BankAccount, PaymentError> {
        let mut errors = Vec::new();
        let routing = digits(routing);
        let mut account = digits(account);
        if routing.len() != 9 || !routing.bytes().all(|c| c.is_ascii_digit()) {
            errors.push(field(PaymentField::RoutingNumber, "must be 9 digits"));
        } else if !aba_valid(&routing) {
            errors.push(field(
                PaymentField::RoutingNumber,
                "checksum is wrong; re-enter the routing number",
            ));
        }
        if !(4..=17).contains(&account.len()) || !account.bytes().all(|c| c.is_ascii_digit()) {
            errors.push(field(PaymentField::AccountNumber, "must be 4 to 17 digits"));
        }
        if errors.is_empty() {
            Ok(BankAccount { routing, account })
        } else {
            account.zeroize();
            Err(PaymentError::Invalid(errors))
        }
    }
    pub fn last4(&self) -> String {
        self.account[self.account.len().saturating_sub(4)..].to_string()
    }
}

/// How a top-up is paid.
#[derive(Debug)]
#[non_exhaustive]
pub enum PaymentMethod {
    Card(Card),
    Ach(BankAccount),
}

impl PaymentMethod {
    /// The redacted form kept by the ledger.
    pub fn summary(&self) -> MethodSummary {
        match self {
            PaymentMethod::Card(c) => MethodSummary::Card {
                last4: c.number.last4(),
                exp_month: c.exp_month,
                exp_year: c.exp_year,
            },
            PaymentMethod::Ach(b) => MethodSummary::Ach {
                routing: b.routing.clone(),
                last4: b.last4(),
            },
        }
    }
}

/// A payment the processor later reported as returned (ACH).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentReturn {
    pub account: AccountId,
    pub payment: PaymentId,
}

/// A payment processor. `charge` must be idempotent by `key`: the same key returns the first
/// answer and never charges twice.
pub trait PaymentProcessor: Send + Sync {
    fn charge<'a>(
        &'a self,
        key: RequestId,
        account: AccountId,
        method: &'a PaymentMethod,
        amount: Cents,
    ) -> BoxFuture<'a, Result<PaymentReceipt, PaymentError>>;

    /// Payments returned since the last call (ACH returns arrive days later).
    fn returns(&self) -> BoxFuture<'_, Vec<PaymentReturn>>;

    /// Reverses (refunds in full) an approved charge the ledger did not credit. Idempotent by
    /// `payment`: reversing it again answers `Ok` and moves no money.
    fn reverse<'a>(
        &'a self,
        payment: &'a PaymentId,
        amount: Cents,
    ) -> BoxFuture<'a, Result<(), PaymentError>>;

    /// What became of the charge asked for under `key` (for reconciling a payment intent):
    /// `Ok(Some(receipt))` approved (reversed since or not), `Ok(None)` no charge under that key
    /// (never asked, declined, or timed out without charging), `Err` the processor cannot tell
    /// now (ask again later).
    fn charged(
        &self,
        key: RequestId,
    ) -> BoxFuture<'_, Result<Option<PaymentReceipt>, PaymentError>>;
}

/// Deterministic simulator with the test numbers in the module docs.
pub struct SimulatedProcessor {
    state: Mutex<SimState>,
}

struct SimState {
    answers: HashMap<RequestId, Result<PaymentReceipt, PaymentError>>,
    order: VecDeque<RequestId>,
    returns: Vec<PaymentReturn>,
    /// Approved charges by payment id, and whether each was reversed.
    charged: HashMap<PaymentId, (Cents, bool)>,
    next: u64,
}

impl SimulatedProcessor {
    /// How many charges the simulator remembers for idempotency (oldest forgotten first).
    pub const ANSWERS_REMEMBERED_MAX: usize = 1_000_000;
    /// Most returned payments held before `returns()` is called (extra ones are dropped).
    pub const RETURNS_HELD_MAX: usize = 10_000;

    pub fn new() -> SimulatedProcessor {
        SimulatedProcessor {
            state: Mutex::new(SimState {
                answers: HashMap::new(),
                order: VecDeque::new(),
                returns: Vec::new(),
                charged: HashMap::new(),
                next: 1,
            }),
        }
    }

    fn answer(method: &PaymentMethod) -> (Option<PaymentError>, bool) {
        match method {
            PaymentMethod::Card(c) => match c.number.expose() {
                "4000000000000002" => (Some(PaymentError::Declined), false),
                "4000000000009995" => (Some(PaymentError::InsufficientFunds), false),
                "4000000000000119" => (Some(PaymentError::Timeout), false),
                _ => (None, false),
            },
            PaymentMethod::Ach(b) => match b.account.as_str() {
                "000222222227" => (Some(PaymentError::Declined), false),
                "000111111116" => (Some(PaymentError::InsufficientFunds), false),
                "000333333335" => (Some(PaymentError::Timeout), false),
                "000111111113" => (None, true),
                _ => (None, false),
            },
        }
    }

    fn charge_now(
        &self,
        key: RequestId,
        account: AccountId,
        method: &PaymentMethod,
        amount: Cents,
    ) -> Result<PaymentReceipt, PaymentError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(a) = s.answers.get(&key) {
            return a.clone();
        }
        let (error, returned) = Self::answer(method);
        if error == Some(PaymentError::Timeout) {
            // A timeout is not an answer: the same key may be tried again.
            return Err(PaymentError::Timeout);
        }
        let answer = match error {
            Some(e) => Err(e),
            None => {
                let id = PaymentId(format!("sim-{}", s.next));
                s.next += 1;
                if returned && s.returns.len() < Self::RETURNS_HELD_MAX {
                    s.returns.push(PaymentReturn {
                        account,
                        payment: id.clone(),
                    });
                }
                s.charged.insert(id.clone(), (amount, false));
                Ok(PaymentReceipt { id, amount })
            }
        };
        if s.order.len() >= Self::ANSWERS_REMEMBERED_MAX
            && let Some(old) = s.order.pop_front()
            && let Some(Ok(receipt)) = s.answers.remove(&old)
        {
            s.charged.remove(&receipt.id);
        }
        s.order.push_back(key);
        s.answers.insert(key, answer.clone());
        answer
    }
}

impl SimulatedProcessor {
    /// The payments reversed so far (for tests and the demo).
    pub fn reversed(&self) -> Vec<PaymentId> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<PaymentId> = s
            .charged
            .iter()
            .filter(|(_, (_, reversed))| *reversed)
            .map(|(id, _)| id.clone())
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    fn charged_now(&self, key: RequestId) -> Option<PaymentReceipt> {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.answers.get(&key) {
            Some(Ok(receipt)) => Some(receipt.clone()),
            _ => None,
        }
    }

    fn reverse_now(&self, payment: &PaymentId, amount: Cents) -> Result<(), PaymentError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        match s.charged.get_mut(payment) {
            // Only a charge it approved, in full.
            Some((charged, reversed)) if *charged == amount => {
                *reversed = true;
                Ok(())
            }
            _ => Err(PaymentError::Declined),
        }
    }
}

impl Default for SimulatedProcessor {
    fn default() -> Self {
        Self::new()
    }
}

impl PaymentProcessor for SimulatedProcessor {
    fn charge<'a>(
        &'a self,
        key: RequestId,
        account: AccountId,
        method: &'a PaymentMethod,
        amount: Cents,
    ) -> BoxFuture<'a, Result<PaymentReceipt, PaymentError>> {
        let answer = self.charge_now(key, account, method, amount);
        Box::pin(async move { answer })
    }

    fn returns(&self) -> BoxFuture<'_, Vec<PaymentReturn>> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let r = std::mem::take(&mut s.returns);
        Box::pin(async move { r })
    }

    fn reverse<'a>(
        &'a self,
        payment: &'a PaymentId,
        amount: Cents,
    ) -> BoxFuture<'a, Result<(), PaymentError>> {
        let answer = self.reverse_now(payment, amount);
        Box::pin(async move { answer })
    }

    fn charged(
        &self,
        key: RequestId,
    ) -> BoxFuture<'_, Result<Option<PaymentReceipt>, PaymentError>> {
        let answer = self.charged_now(key);
        Box::pin(async move { Ok(answer) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW_MS: u64 = 1_780_000_000_000; // 2026-05-28

    #[test]
    fn simulator_reverses_only_its_own_approved_charges_once() {
        let sim = SimulatedProcessor::new();
        let card =
            PaymentMethod::Card(Card::parse("4242424242424242", 12, 2030, "123", NOW_MS).unwrap());
        let amount = Cents::new(1000).unwrap();
        let receipt = sim
            .charge_now(RequestId(1), AccountId(1), &card, amount)
            .unwrap();
        assert_eq!(
            sim.reverse_now(&receipt.id, Cents::new(999).unwrap()),
            Err(PaymentError::Declined),
            "only in full"
        );
        assert_eq!(
            sim.reverse_now(&PaymentId("sim-404".into()), amount),
            Err(PaymentError::Declined),
            "unknown payment"
        );
        assert_eq!(sim.reverse_now(&receipt.id, amount), Ok(()));
        assert_eq!(sim.reverse_now(&receipt.id, amount), Ok(()), "idempotent");
        assert_eq!(sim.reversed(), vec![receipt.id]);
    }

    #[test]
    fn test_numbers_pass_their_checksums() {
        for n in [
            "4242424242424242",
            "4000000000000002",
            "4000000000009995",
            "4000000000000119",
        ] {
            assert!(luhn_valid(n), "{n}");
        }
        assert!(!luhn_valid("4242424242424241"));
        assert!(aba_valid("110000000"));
        assert!(aba_valid("021000021"));
        assert!(!aba_valid("021000022"));
    }

    #[test]
    fn card_fields_report_each_error() {
        let Err(PaymentError::Invalid(errs)) =
            Card::parse("4242424242424241", 13, 2020, "12", NOW_MS)
        else {
            panic!("expected invalid")
        };
        let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec![
                PaymentField::CardNumber,
                PaymentField::Expiry,
                PaymentField::Cvc
            ]
        );
        let Err(PaymentError::Invalid(errs)) =
            Card::parse("4242424242424242", 4, 26, "123", NOW_MS)
        else {
            panic!("expected expired")
        };
        assert_eq!(errs[0].field, PaymentField::Expiry);
        assert!(Card::parse("4242 4242 4242 4242", 5, 26, "123", NOW_MS).is_ok());
        assert!(Card::parse("378282246310005", 5, 2030, "123", NOW_MS).is_err());
        assert!(Card::parse("378282246310005", 5, 2030, "1234", NOW_MS).is_ok());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let card = Card::parse("4242424242424242", 12, 2030, "987", NOW_MS).unwrap();
        let text = format!("{:?}", PaymentMethod::Card(card));
        assert!(!text.contains("424242424242"), "{text}");
        assert!(!text.contains("987"), "{text}");
        assert!(text.contains("4242"));
        let bank = BankAccount::parse("110000000", "000123456789").unwrap();
        let text = format!("{bank:?}");
        assert!(!text.contains("00012345"), "{text}");
    }

    #[test]
    fn ach_fields() {
        let Err(PaymentError::Invalid(errs)) = BankAccount::parse("110000001", "12") else {
            panic!()
        };
        let fields: Vec<_> = errs.iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            vec![PaymentField::RoutingNumber, PaymentField::AccountNumber]
        );
    }

    #[tokio::test]
    async fn simulator_is_deterministic_and_idempotent() {
        let sim = SimulatedProcessor::new();
        let amount = Cents::new(1000).unwrap();
        let acct = AccountId(1);
        let card = |n: &str| PaymentMethod::Card(Card::parse(n, 12, 2030, "123", NOW_MS).unwrap());
        let ok = sim
            .charge(RequestId(1), acct, &card("4242424242424242"), amount)
            .await;
        let again = sim
            .charge(RequestId(1), acct, &card("4242424242424242"), amount)
            .await;
        assert_eq!(ok, again);
        assert!(ok.is_ok());
        let cases = [
            ("4000000000000002", PaymentError::Declined),
            ("4000000000009995", PaymentError::InsufficientFunds),
            ("4000000000000119", PaymentError::Timeout),
        ];
        for (i, (n, e)) in cases.into_iter().enumerate() {
            let got = sim
                .charge(RequestId(10 + i as u128), acct, &card(n), amount)
                .await;
            assert_eq!(got, Err(e), "{n}");
        }
        let ach = PaymentMethod::Ach(BankAccount::parse("110000000", "000111111113").unwrap());
        let r = sim.charge(RequestId(20), acct, &ach, amount).await.unwrap();
        let returned = sim.returns().await;
        assert_eq!(
            returned,
            vec![PaymentReturn {
                account: acct,
                payment: r.id
            }]
        );
        assert!(sim.returns().await.is_empty());
    }
}
