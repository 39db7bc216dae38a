//! The acknowledgement log and its check against a ledger (issue 14, database failover).
//!
//! `frank loadgen --acks FILE` appends one JSON line per request it finished ([`Ack`]): what
//! it asked (`op`), what the vendor acknowledged (`answer`: funded, authorized, committed,
//! voided — or `unanswered` when it gave up, `refused` for a typed refusal), the request id,
//! the piece, and when the answering attempt was sent and answered. Each line is one `write`
//! on a file opened for appending, made before the load generator goes on, so a line that was
//! acknowledged is in the file even if the process is killed right after.
//!
//! [`check`] then reads the ledger (after a failover: the promoted database) and counts:
//! - **lost**: an acknowledged request whose idempotency record is missing or answers
//!   something else, an acknowledged commit whose piece is not printed, a void whose piece is
//!   not voided, a top-up whose payment has no `funded` audit event;
//! - **duplicated**: two acknowledged authorizations of one piece, a piece (authorized since
//!   the log began) that no request of the log accounts for, a payment credited twice or
//!   credited for no request of the log, a piece committed or voided twice in the audit log;
//! - **audit_ok**: the audit log verifies (hash chains, registers replayed) and every account
//!   of the log holds ascending + pending + descending = control.
//!
//! The log must hold every money request made on its accounts since its first line (one load
//! generator per account); the check looks only at pieces and audit events from then on.

use super::audit::{AuditBody, AuditEvent};
use super::model::*;
use super::store::{LedgerStore, StoreError, verify_audit};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;

/// What a line's request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckOp {
    Fund,
    Authorize,
    Commit,
    Void,
}

/// What the vendor answered in the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckAnswer {
    Funded,
    Authorized,
    Committed,
    Voided,
    /// A typed refusal (nothing changed).
    Refused,
    /// No answer after every retry (or the connection to the front was lost): the request may
    /// or may not have been applied; its id is the only one it could have been applied under.
    Unanswered,
}

impl AckAnswer {
    /// An acknowledged effect (funded, authorized, committed, voided).
    pub fn acknowledged(self) -> bool {
        !matches!(self, AckAnswer::Refused | AckAnswer::Unanswered)
    }
}

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ack {
    pub op: AckOp,
    pub answer: AckAnswer,
    /// The request id, 32 hex digits.
    pub request: String,
    /// The ledger account the terminal acts on.
    pub account: u64,
    /// The piece (authorize, commit, void).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial: Option<u64>,
    /// Which front (index in `--vendor`) the terminal talks to.
    pub front: usize,
    pub terminal: u64,
    /// When the attempt that got this answer was sent, ms since the epoch.
    pub sent_ms: u64,
    /// When the answer came.
    pub at_ms: u64,
}

/// Appends [`Ack`] lines to a file, each with one `write` as it happens.
#[derive(Debug)]
pub struct AckLog {
    file: std::sync::Mutex<std::fs::File>,
}

impl AckLog {
    /// Opens `path` for appending (created if missing).
    pub fn open(path: &Path) -> std::io::Result<AckLog> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        Ok(AckLog {
            file: std::sync::Mutex::new(file),
        })
    }

    /// Appends one line: one `write` of the whole line (no user-space buffer), so it reaches
    /// the kernel before this returns and outlives a kill of the process.
    pub fn append(&self, ack: &Ack) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(ack).map_err(std::io::Error::other)?;
        line.push(b'\n');
        // A writer that panicked mid-line left at most a torn last line, which `read` skips.
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(&line)
    }
}

/// Reads a log. A last line without its newline (a writer killed mid-line) is skipped; any
/// other line that does not parse is an error naming it.
pub fn read(path: &Path) -> anyhow::Result<Vec<Ack>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
    parse(&text)
}

/// [`read`] on the log's text.
pub fn parse(text: &str) -> anyhow::Result<Vec<Ack>> {
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    complete
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| anyhow::anyhow!("acks line {}: {e}", i + 1))
        })
        .collect()
}

/// When the database's primary was stopped, for `failover_s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailoverTimes {
    /// The stop was asked for (ms since the epoch).
    pub stop_ms: u64,
    /// The stop had completed: the primary was gone.
    pub stopped_ms: u64,
}

/// What [`check`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub acknowledged: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub audit_ok: bool,
    /// From the stop of the primary to the first acknowledgement of an attempt sent after it
    /// had gone (so served by the promoted server); `None` without [`FailoverTimes`] or
    /// without such an acknowledgement.
    pub failover_s: Option<f64>,
    /// The first problems found, one sentence each (at most `PROBLEMS_MAX`).
    pub problems: Vec<String>,
}

/// Most problems a report keeps word for word.
pub const PROBLEMS_MAX: usize = 20;
/// Pieces read per page when listing an account's pieces.
const PIECES_PAGE_MAX: u32 = 1_000;

impl CheckReport {
    /// Nothing lost, nothing duplicated, the audit verifies.
    pub fn ok(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.audit_ok
    }
}

impl std::fmt::Display for CheckReport {
    /// `acknowledged=N lost=0 duplicated=0 audit_ok=true failover_s=X`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "acknowledged={} lost={} duplicated={} audit_ok={}",
            self.acknowledged, self.lost, self.duplicated, self.audit_ok
        )?;
        match self.failover_s {
            Some(s) => write!(f, " failover_s={s:.2}"),
            None => write!(f, " failover_s=none"),
        }
    }
}

#[derive(Default)]
struct Tally {
    lost: u64,
    duplicated: u64,
    problems: Vec<String>,
}

impl Tally {
    fn lost(&mut self, what: String) {
        self.lost += 1;
        self.note(what);
    }
    fn duplicated(&mut self, what: String) {
        self.duplicated += 1;
        self.note(what);
    }
    fn note(&mut self, what: String) {
        if self.problems.len() < PROBLEMS_MAX {
            self.problems.push(what);
        }
    }
}

fn request_id(hex_id: &str) -> Option<RequestId> {
    let bytes: [u8; 16] = hex::decode(hex_id).ok()?.try_into().ok()?;
    Some(RequestId::from_bytes(bytes))
}

/// Checks the log against the ledger in `store` (see the module's text).
pub async fn check(
    store: &dyn LedgerStore,
    acks: &[Ack],
    failover: Option<FailoverTimes>,
) -> Result<CheckReport, StoreError> {
    let mut t = Tally::default();
    let since_ms = acks.iter().map(|a| a.sent_ms).min().unwrap_or(0);
    let accounts: BTreeSet<AccountId> = acks.iter().map(|a| AccountId(a.account)).collect();
    // Pieces and payments some request of the log accounts for (acknowledged or not).
    let mut issued: BTreeMap<PieceId, String> = BTreeMap::new();
    let mut payments: HashMap<PaymentId, String> = HashMap::new();
    let mut acked_payments: Vec<(PaymentId, String)> = Vec::new();
    let mut acknowledged = 0u64;
    for ack in acks {
        let Some(id) = request_id(&ack.request) else {
            t.lost(format!("request id {:?} is not 32 hex digits", ack.request));
            continue;
        };
        let piece = ack.serial.map(|s| PieceId {
            account: AccountId(ack.account),
            serial: PieceSerial(s),
        });
        let record = store.idempotency_record(id).await?;
        let reply = record.map(|r| r.reply);
        if !ack.answer.acknowledged() {
            // Not acknowledged: whatever it did (if anything) is accounted for by its id.
            match reply {
                Some(Ok(Outcome::Authorized(a))) => {
                    issued.insert(a.id, ack.request.clone());
                }
                Some(Ok(Outcome::Funded { payment, .. })) => {
                    payments.insert(payment, ack.request.clone());
                }
                _ => {}
            }
            continue;
        }
        acknowledged += 1;
        let what = format!("{:?} {} ({:?})", ack.answer, ack.request, ack.serial);
        match (ack.answer, reply) {
            (_, None) => t.lost(format!("acknowledged {what} has no record in the ledger")),
            (
                AckAnswer::Funded,
                Some(Ok(Outcome::Funded {
                    account, payment, ..
                })),
            ) if account.0 == ack.account => {
                payments.insert(payment.clone(), ack.request.clone());
                acked_payments.push((payment, ack.request.clone()));
            }
            (AckAnswer::Authorized, Some(Ok(Outcome::Authorized(a)))) if Some(a.id) == piece => {
                if let Some(other) = issued.insert(a.id, ack.request.clone())
                    && other != ack.request
                {
                    t.duplicated(format!(
                        "piece {} acknowledged to two authorizations ({other}, {})",
                        a.id, ack.request
                    ));
                }
                if store.piece(a.id).await?.is_none() {
                    t.lost(format!("acknowledged {what}: piece {} is missing", a.id));
                }
            }
            (AckAnswer::Committed, Some(Ok(Outcome::Committed { id, .. })))
                if Some(id) == piece =>
            {
                let state = store.piece(id).await?.map(|p| p.state);
                if state != Some(PieceState::Printed) {
                    t.lost(format!("acknowledged {what}: piece {id} is {state:?}"));
                }
            }
            (AckAnswer::Voided, Some(Ok(Outcome::Voided { id, .. }))) if Some(id) == piece => {
                let state = store.piece(id).await?.map(|p| p.state);
                if state != Some(PieceState::Voided) {
                    t.lost(format!("acknowledged {what}: piece {id} is {state:?}"));
                }
            }
            (_, Some(other)) => t.lost(format!(
                "acknowledged {what}, but the ledger's record answers {other:?}"
            )),
        }
    }

    let mut audit_ok = true;
    for &account in &accounts {
        let Some(a) = store.account(account).await? else {
            t.lost(format!("account {} is missing", account.0));
            continue;
        };
        audit_ok &= a.registers.check().is_ok();
        // Every piece issued since the log began belongs to a request of the log.
        let mut before = None;
        loop {
            let page = store.pieces(account, before, PIECES_PAGE_MAX).await?;
            let Some(last) = page.last() else { break };
            before = Some(last.id.serial);
            for p in &page {
                if p.authorized_at_ms >= since_ms && !issued.contains_key(&p.id) {
                    t.duplicated(format!(
                        "piece {} was issued for no request of the log",
                        p.id
                    ));
                }
            }
        }
        // Every payment credited once, for a request of the log; every piece settled once.
        let mut credited: HashMap<PaymentId, u32> = HashMap::new();
        let mut settled: BTreeMap<(PieceSerial, &'static str), u32> = BTreeMap::new();
        for r in store.account_audit(account).await? {
            if r.at_ms < since_ms {
                continue;
            }
            let body: AuditBody = serde_json::from_str(&r.body)
                .map_err(|e| StoreError::Corrupt(format!("audit record body: {e}")))?;
            let key = match body.event {
                AuditEvent::Funded { payment, .. } => {
                    if !payments.contains_key(&payment) {
                        t.duplicated(format!(
                            "account {} credited payment {} for no request of the log",
                            account.0, payment.0
                        ));
                    }
                    *credited.entry(payment).or_default() += 1;
                    None
                }
                AuditEvent::Committed { piece, .. }
                | AuditEvent::CommittedUnsettled { piece, .. } => Some((piece, "committed")),
                AuditEvent::Voided { piece, .. } => Some((piece, "voided")),
                _ => None,
            };
            if let Some(k) = key {
                *settled.entry(k).or_default() += 1;
            }
        }
        for (payment, n) in &credited {
            if *n > 1 {
                t.duplicated(format!("payment {} credited {n} times", payment.0));
            }
        }
        for ((piece, how), n) in &settled {
            if *n > 1 {
                t.duplicated(format!("piece {}-{} {how} {n} times", account.0, piece.0));
            }
        }
        for (payment, request) in &acked_payments {
            if !credited.contains_key(payment) {
                t.lost(format!(
                    "acknowledged top-up {request}: payment {} has no funded audit event",
                    payment.0
                ));
            }
        }
    }
    audit_ok &= verify_audit(store).await.is_ok();

    let failover_s = failover.and_then(|f| {
        acks.iter()
            .filter(|a| a.answer.acknowledged() && a.sent_ms >= f.stopped_ms)
            .map(|a| a.at_ms)
            .min()
            .map(|first| first.saturating_sub(f.stop_ms) as f64 / 1000.0)
    });
    Ok(CheckReport {
        acknowledged,
        lost: t.lost,
        duplicated: t.duplicated,
        audit_ok,
        failover_s,
        problems: t.problems,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(answer: AckAnswer, sent_ms: u64, at_ms: u64) -> Ack {
        Ack {
            op: AckOp::Commit,
            answer,
            request: "00".repeat(16),
            account: 1,
            serial: Some(7),
            front: 0,
            terminal: 3,
            sent_ms,
            at_ms,
        }
    }

    #[test]
    fn lines_round_trip_and_a_torn_last_line_is_skipped() {
        let a = ack(AckAnswer::Committed, 10, 12);
        let line = serde_json::to_string(&a).unwrap();
        assert_eq!(
            line,
            format!(
                r#"{{"op":"commit","answer":"committed","request":"{}","account":1,"serial":7,"front":0,"terminal":3,"sent_ms":10,"at_ms":12}}"#,
                "00".repeat(16)
            )
        );
        let text = format!("{line}\n{line}\n{}", &line[..20]);
        assert_eq!(parse(&text).unwrap(), vec![a.clone(), a.clone()]);
        let bad = format!("{line}\nnot json\n{line}\n");
        let e = parse(&bad).unwrap_err().to_string();
        assert!(e.contains("acks line 2"), "{e}");
    }

    #[test]
    fn the_log_survives_as_written_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acks.jsonl");
        let log = AckLog::open(&path).unwrap();
        log.append(&ack(AckAnswer::Committed, 1, 2)).unwrap();
        log.append(&ack(AckAnswer::Unanswered, 3, 4)).unwrap();
        drop(log);
        // Reopening appends.
        AckLog::open(&path)
            .unwrap()
            .append(&ack(AckAnswer::Voided, 5, 6))
            .unwrap();
        let answers: Vec<AckAnswer> = read(&path).unwrap().iter().map(|a| a.answer).collect();
        assert_eq!(
            answers,
            [
                AckAnswer::Committed,
                AckAnswer::Unanswered,
                AckAnswer::Voided
            ]
        );
    }

    #[test]
    fn the_report_line_reads_as_issue_14_asks() {
        let r = CheckReport {
            acknowledged: 1234,
            lost: 0,
            duplicated: 0,
            audit_ok: true,
            failover_s: Some(1.234),
            problems: vec![],
        };
        assert_eq!(
            r.to_string(),
            "acknowledged=1234 lost=0 duplicated=0 audit_ok=true failover_s=1.23"
        );
        assert!(r.ok());
        let none = CheckReport {
            failover_s: None,
            lost: 1,
            ..r
        };
        assert!(
            none.to_string()
                .ends_with("lost=1 duplicated=0 audit_ok=true failover_s=none")
        );
        assert!(!none.ok());
    }
}
