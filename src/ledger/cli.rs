//! `frank vendor` ledger subcommands: audit verification, supervisor refund decisions and
//! unlocks, statements, account lookups and open payment intents, run directly against the
//! ledger database.

use super::model::*;
use super::ops::Op;
use super::store::{self, LedgerStore};
use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use std::sync::Arc;

#[derive(Debug, Args)]
pub struct DatabaseArg {
    /// The ledger database: a SQLite file path, or postgres://user@host:port/db
    /// (default: `ledger.db` in the vendor data directory given by --data).
    #[arg(long, env = "FRANK_DATABASE")]
    pub database: Option<String>,
    /// The vendor data directory whose `ledger.db` to use when --database is not given.
    #[arg(long, value_name = "DIR")]
    pub data: Option<std::path::PathBuf>,
}

impl DatabaseArg {
    /// `--database`, else `<--data>/ledger.db`.
    pub fn resolve(&self) -> anyhow::Result<String> {
        match (&self.database, &self.data) {
            (Some(d), _) => super::database_arg(d).map_err(anyhow::Error::msg),
            (None, Some(dir)) => Ok(dir
                .join(crate::vendor_server::LEDGER_FILE)
                .to_string_lossy()
                .into_owned()),
            (None, None) => bail!(
                "name the ledger: --data DIR (the vendor data directory) or --database URL/PATH"
            ),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// The hash-chained audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Refund requests (supervisor decisions).
    #[command(subcommand)]
    Refunds(RefundCommand),
    /// An account's statement for a period (all of its history unless a period is given).
    Statement {
        account: u64,
        /// First day of the period, YYYY-MM-DD (UTC, from its start).
        #[arg(long, value_name = "YYYY-MM-DD", conflicts_with = "from_ms")]
        from: Option<String>,
        /// Last day of the period, YYYY-MM-DD (UTC, through its end).
        #[arg(long, value_name = "YYYY-MM-DD", conflicts_with = "to_ms")]
        to: Option<String>,
        /// Start of the period, ms since the epoch (inclusive), instead of --from.
        #[arg(long)]
        from_ms: Option<u64>,
        /// End of the period, ms since the epoch (exclusive), instead of --to.
        #[arg(long)]
        to_ms: Option<u64>,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Unlock a locked ledger account (e.g. after a returned ACH payment was settled). The
    /// supervisor's name is recorded in the account's audit chain.
    Unlock {
        /// The ledger account id (as `registers` shows it).
        account: u64,
        /// Who decided (recorded in the audit log).
        #[arg(long)]
        supervisor: String,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Top-up payments the processor may have charged that are not settled yet (credited,
    /// reversed or found uncharged); the reaper settles each after its grace period.
    #[command(subcommand)]
    Payments(PaymentsCommand),
    /// Check a load generator's acknowledgement log (`frank loadgen --acks FILE`) against the
    /// ledger: every acknowledged top-up, authorization, commit and void present once, nothing
    /// applied twice, the audit log verifying. Prints `acknowledged=N lost=0 duplicated=0
    /// audit_ok=true failover_s=X`; exits non-zero when anything is lost or duplicated or the
    /// audit fails.
    CheckAcks {
        /// The acknowledgement log.
        #[arg(long, value_name = "FILE")]
        acks: std::path::PathBuf,
        /// When the database's primary was told to stop, ms since the epoch (for failover_s).
        #[arg(long, requires = "stopped_ms")]
        stop_ms: Option<u64>,
        /// When that stop had completed, ms since the epoch.
        #[arg(long, requires = "stop_ms")]
        stopped_ms: Option<u64>,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// The end-of-day report of one UTC day: items by kind and class, voids, refunds,
    /// unsettled items, payments by kind and the cash expected in the drawer
    /// (docs/LEDGER.md §End-of-day report). The same report a counter's close-out screen shows.
    Report {
        /// The day, YYYY-MM-DD (a UTC day: 00:00 to 24:00 UTC).
        #[arg(long, value_name = "YYYY-MM-DD")]
        day: String,
        /// Only the items this clerk issued and the payments they recorded.
        #[arg(long, value_name = "NAME", conflicts_with = "terminal")]
        clerk: Option<String>,
        /// Only the items this terminal issued and the payments recorded on it.
        #[arg(long, value_name = "ID")]
        terminal: Option<u64>,
        /// The ledger account (as `registers` shows it); default: every account.
        #[arg(long)]
        account: Option<u64>,
        /// Print the report as one line of JSON (the `day_report` answer's fields).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// An account's status and registers.
    #[command(name = "registers")]
    Account {
        account: u64,
        #[command(flatten)]
        db: DatabaseArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Recompute the hash chains and registers; report the first break.
    Verify {
        #[command(flatten)]
        db: DatabaseArg,
    },
}

#[derive(Debug, Subcommand)]
pub enum PaymentsCommand {
    /// List the open payment intents, oldest first.
    Open {
        /// Most intents to list.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        db: DatabaseArg,
    },
}

/// One line per open payment intent, for an operator: its request id (the processor's
/// idempotency key), account, amount, redacted method and age.
pub fn open_intents_report(intents: &[PaymentIntent], now_ms: u64) -> Vec<String> {
    if intents.is_empty() {
        return vec!["no open payment intents".into()];
    }
    intents
        .iter()
        .map(|i| {
            let method = match &i.method {
                MethodSummary::Card { last4, .. } => format!("card ending {last4}"),
                MethodSummary::Ach { last4, .. } => format!("ACH account ending {last4}"),
            };
            let age_s = now_ms.saturating_sub(i.started_at_ms) / 1000;
            format!(
                "request {}  account {}  {}  {}  open for {} s",
                i.request, i.account.0, i.amount, method, age_s
            )
        })
        .collect()
}

const DAY_MS: u64 = 86_400_000;

/// Milliseconds since the epoch at the start (UTC) of a `YYYY-MM-DD` day.
fn day_start_ms(flag: &'static str, text: &str) -> anyhow::Result<u64> {
    let day = crate::indicium::kinds::Day::parse(flag, text)
        .map_err(|e| anyhow::anyhow!("{flag}: {}", e.reason))?;
    Ok(u64::from(day.days()) * DAY_MS)
}

/// The statement's period `[from, to)` in ms from `--from`/`--to` (whole UTC days, `--to`
/// through its end) or `--from-ms`/`--to-ms`; open ends cover all history.
pub fn statement_period(
    from: Option<&str>,
    to: Option<&str>,
    from_ms: Option<u64>,
    to_ms: Option<u64>,
) -> anyhow::Result<(u64, u64)> {
    let start = match (from, from_ms) {
        (Some(d), _) => day_start_ms("--from", d)?,
        (None, Some(ms)) => ms,
        (None, None) => 0,
    };
    let end = match (to, to_ms) {
        (Some(d), _) => day_start_ms("--to", d)?.saturating_add(DAY_MS),
        (None, Some(ms)) => ms,
        (None, None) => u64::MAX,
    };
    if start >= end {
        bail!("the period is empty: it must start before it ends");
    }
    Ok((start, end))
}

/// One instant as a supervisor reads it: `YYYY-MM-DD HH:MM UTC`.
fn instant(ms: u64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC");
    i64::try_from(ms / 1000)
        .ok()
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .and_then(|t| t.format(format).ok())
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// An account's statement as a supervisor reads it.
pub fn statement_report(s: &Statement) -> Vec<String> {
    let period = match (s.from_ms, s.to_ms) {
        (0, u64::MAX) => "all history".to_string(),
        (0, to) => format!("until {}", instant(to)),
        (from, u64::MAX) => format!("from {}", instant(from)),
        (from, to) => format!("{} to {}", instant(from), instant(to)),
    };
    let items = if s.printed_count == 1 {
        "item"
    } else {
        "items"
    };
    let mut lines = vec![
        format!("account {} statement, {period}", s.account.0),
        format!("  beginning balance  {:>14}", s.beginning.to_string()),
        format!("  credits          + {:>14}", s.credits.to_string()),
        format!(
            "  printed          − {:>14}  ({} {items})",
            s.printed.to_string(),
            s.printed_count
        ),
        format!("  refunded         + {:>14}", s.refunded.to_string()),
        format!("  ending balance     {:>14}", s.ending.to_string()),
        format!(
            "  voided             {:>14}  (reserved, then released: not in the balance)",
            s.voided.to_string()
        ),
    ];
    if !s.unsettled.is_zero() {
        lines.push(format!(
            "  of printed: unsettled {:>7}  (committed at expiry; no settlement came)",
            s.unsettled.to_string()
        ));
    }
    if !s.late_voided.is_zero() {
        lines.push(format!(
            "  of refunded: late voids {:>5}  (unsettled pieces their terminal showed unprinted)",
            s.late_voided.to_string()
        ));
    }
    lines
}

/// A piece as a supervisor reads it: amount, item state and when each step happened.
pub fn piece_report(p: &Piece) -> String {
    let printed = match p.printed_at_ms {
        Some(at) => format!("printed {}", instant(at)),
        None => "printed".to_string(),
    };
    let asked = match p.refund_submitted_at_ms {
        Some(at) => format!("refund requested {}", instant(at)),
        None => "refund requested".to_string(),
    };
    let state = match p.item_state() {
        ItemState::Reserved => format!(
            "reserved (not printed yet), authorized {}, expires {}",
            instant(p.authorized_at_ms),
            instant(p.expires_at_ms)
        ),
        ItemState::Printed => printed,
        ItemState::Unsettled => format!(
            "unsettled: charged as {printed} by the reaper at its expiry (its terminal never settled it; refundable)"
        ),
        ItemState::Voided => format!(
            "voided (the amount went back to the account), authorized {}",
            instant(p.authorized_at_ms)
        ),
        ItemState::RefundRequested => format!("{printed}, {asked} (awaiting a decision)"),
        ItemState::Refunded => format!("{printed}, {asked}, approved: refunded"),
        ItemState::RefundRejected => format!("{printed}, {asked}, rejected"),
    };
    format!("piece {}: {}, {state}", p.id, p.amount)
}

/// The refund requests awaiting a decision, one line each (the piece id is what `approve`
/// and `reject` take), and a last line when `limit` cut the list.
pub fn refunds_awaiting_report(pieces: &[Piece], limit: u32) -> Vec<String> {
    if pieces.is_empty() {
        return vec!["no refund requests awaiting a decision".into()];
    }
    let mut lines: Vec<String> = pieces.iter().map(piece_report).collect();
    if pieces.len() >= limit as usize {
        lines.push(format!(
            "(the {limit} oldest shown; decide them or pass a larger --limit for more)"
        ));
    }
    lines
}

/// Most unsettled pieces `registers` reads to count them.
pub const UNSETTLED_REPORT_MAX: u32 = 10_000;

/// The unsettled pieces of an account in one line: how many and their value (charged: in the
/// ascending register), or that there are none.
pub fn unsettled_report(pieces: &[Piece]) -> String {
    if pieces.is_empty() {
        return "unsettled: none".into();
    }
    let total = pieces.iter().fold(crate::money::Cents::ZERO, |t, p| {
        t.checked_add(p.amount).unwrap_or(t)
    });
    let more = if pieces.len() >= UNSETTLED_REPORT_MAX as usize {
        " or more"
    } else {
        ""
    };
    format!(
        "unsettled: {}{more} pieces, {total} charged (committed as printed at their expiry; their terminal never settled them)",
        pieces.len()
    )
}

/// An account's status and registers as a supervisor reads them.
pub fn registers_report(a: &Account) -> String {
    let r = &a.registers;
    let license = match a.license {
        Some(l) => format!("license {}", l.0),
        None => "no license yet".to_string(),
    };
    format!(
        "account {} meter {} {license} {}  descending {} pending {} ascending {} control {}",
        a.id.0,
        a.meter,
        a.status.as_str(),
        r.descending,
        r.pending,
        r.ascending,
        r.control
    )
}

#[derive(Debug, Subcommand)]
pub enum RefundCommand {
    /// List the refund requests awaiting a decision, oldest first.
    Pending {
        /// Most requests to list.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Show a piece and its refund state. PIECE is the number printed on its label, e.g.
    /// "FRK10000007 #42" (or ACCOUNT-SERIAL, 7-42).
    Show {
        piece: String,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Approve a submitted refund (credits the account).
    Approve {
        piece: String,
        #[command(flatten)]
        db: DatabaseArg,
    },
    /// Reject a submitted refund.
    Reject {
        piece: String,
        #[command(flatten)]
        db: DatabaseArg,
    },
}

/// A signer for tools that never authorize items: it refuses.
pub struct NoSigning;

impl ItemSigner for NoSigning {
    fn sign(&self, _: &PieceFacts, _: &[u8]) -> Result<Vec<u8>, String> {
        Err("this process does not sign items (supervisor tool)".into())
    }
}

/// Parses a piece as its label prints it (`FRK10000007 #42`), or the older `ACCOUNT-SERIAL`
/// (`7-42`).
pub fn parse_piece(text: &str) -> anyhow::Result<PieceId> {
    if let Some(n) = crate::indicium::layout::PieceNumber::parse(text) {
        return PieceId::from_number(&n)
            .with_context(|| format!("{n}: {} is not a meter of this vendor", n.meter));
    }
    let (a, s) = text.split_once('-').with_context(|| {
        format!("piece {text:?}: use the number printed on the label, e.g. \"FRK10000007 #42\"")
    })?;
    Ok(PieceId {
        account: AccountId(a.parse().with_context(|| format!("account in {text:?}"))?),
        serial: PieceSerial(s.parse().with_context(|| format!("serial in {text:?}"))?),
    })
}

async fn open(db: &DatabaseArg) -> anyhow::Result<Arc<dyn LedgerStore>> {
    let database = db.resolve()?;
    if database.starts_with("postgres") || std::path::Path::new(&database).exists() {
        super::open_store(
            &database,
            Arc::new(NoSigning),
            &super::LedgerConfig::default(),
        )
        .await
        .with_context(|| format!("opening the ledger database {database}"))
    } else {
        bail!("no ledger database at {database}; run `frank vendor init` or pass --database")
    }
}

pub fn run(cmd: LedgerCommand) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(cmd))
}

async fn run_async(cmd: LedgerCommand) -> anyhow::Result<()> {
    match cmd {
        LedgerCommand::Audit(AuditCommand::Verify { db }) => {
            let store = open(&db).await?;
            match store::verify_audit(&*store).await {
                Ok(r) => {
                    println!(
                        "audit ok: {} records, {} accounts, control total {}",
                        r.records, r.accounts, r.control_total
                    );
                    Ok(())
                }
                Err(b) => bail!("{b}"),
            }
        }
        LedgerCommand::Refunds(cmd) => {
            let (piece, db, decision) = match cmd {
                RefundCommand::Pending { limit, db } => {
                    let store = open(&db).await?;
                    let awaiting = store.refunds_awaiting(None, limit).await?;
                    for line in refunds_awaiting_report(&awaiting, limit) {
                        println!("{line}");
                    }
                    return Ok(());
                }
                RefundCommand::Show { piece, db } => (piece, db, None),
                RefundCommand::Approve { piece, db } => (piece, db, Some(true)),
                RefundCommand::Reject { piece, db } => (piece, db, Some(false)),
            };
            let id = parse_piece(&piece)?;
            let store = open(&db).await?;
            if let Some(approve) = decision {
                let request = super::ops::Request::new(
                    crate::clock::random_request_id(),
                    Op::DecideRefund { piece: id, approve },
                );
                match store.execute(request, crate::clock::unix_ms()).await? {
                    Ok(Outcome::RefundDecided {
                        id,
                        approved,
                        registers,
                    }) => println!(
                        "refund for piece {id} {}; account {} available {}",
                        if approved { "approved" } else { "rejected" },
                        id.account.0,
                        registers.descending
                    ),
                    Ok(other) => bail!("unexpected answer to a refund decision: {other:?}"),
                    Err(e) => bail!("{e}"),
                }
            }
            match store.piece(id).await? {
                Some(p) => println!("{}", piece_report(&p)),
                None => bail!("no such piece {id}"),
            }
            Ok(())
        }
        LedgerCommand::Report {
            day,
            clerk,
            terminal,
            account,
            json,
            db,
        } => {
            use super::report::{ReportScope, day_bounds};
            let day = crate::indicium::kinds::Day::parse("--day", &day)
                .map_err(|e| anyhow::anyhow!("{}: {}", e.field, e.reason))?;
            let scope = match (clerk, terminal) {
                (Some(c), _) => ReportScope::Clerk(c),
                (None, Some(t)) => ReportScope::Terminal(t),
                (None, None) => ReportScope::Office,
            };
            let store = open(&db).await?;
            let account = account.map(AccountId);
            if let Some(a) = account
                && store.account(a).await?.is_none()
            {
                bail!("no such account: {}", a.0);
            }
            let (from, to) = day_bounds(day);
            let rows = store.day_rows(account, from, to).await?;
            let report = crate::vendor_server::money::build_day_report(day, account, &scope, &rows);
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                for line in report.text_lines() {
                    println!("{line}");
                }
            }
            Ok(())
        }
        LedgerCommand::Statement {
            account,
            from,
            to,
            from_ms,
            to_ms,
            db,
        } => {
            let (from_ms, to_ms) =
                statement_period(from.as_deref(), to.as_deref(), from_ms, to_ms)?;
            let store = open(&db).await?;
            match store::statement(&*store, AccountId(account), from_ms, to_ms).await? {
                Ok(s) => {
                    for line in statement_report(&s) {
                        println!("{line}");
                    }
                    Ok(())
                }
                Err(e) => bail!("{e}"),
            }
        }
        LedgerCommand::Unlock {
            account,
            supervisor,
            db,
        } => {
            let name = supervisor.trim();
            if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
                bail!("--supervisor must be a name of 1 to 64 printable characters");
            }
            let store = open(&db).await?;
            let request = super::ops::Request::new(
                crate::clock::random_request_id(),
                Op::Unlock {
                    account: AccountId(account),
                    supervisor: name.to_string(),
                },
            );
            match store.execute(request, crate::clock::unix_ms()).await? {
                Ok(_) => {
                    println!("account {account} unlocked by {name}");
                    Ok(())
                }
                Err(e) => bail!("{e}"),
            }
        }
        LedgerCommand::Payments(PaymentsCommand::Open { limit, db }) => {
            let store = open(&db).await?;
            let intents = store.open_intents(u64::MAX, limit).await?;
            for line in open_intents_report(&intents, crate::clock::unix_ms()) {
                println!("{line}");
            }
            Ok(())
        }
        LedgerCommand::CheckAcks {
            acks,
            stop_ms,
            stopped_ms,
            db,
        } => {
            let log = super::acks::read(&acks)?;
            let store = open(&db).await?;
            let failover = match (stop_ms, stopped_ms) {
                (Some(stop_ms), Some(stopped_ms)) => Some(super::acks::FailoverTimes {
                    stop_ms,
                    stopped_ms,
                }),
                _ => None,
            };
            let report = super::acks::check(&*store, &log, failover).await?;
            for p in &report.problems {
                eprintln!("{p}");
            }
            println!("{report}");
            if !report.ok() {
                bail!("the ledger does not match the acknowledgement log");
            }
            Ok(())
        }
        LedgerCommand::Account { account, db } => {
            let store = open(&db).await?;
            match store.account(AccountId(account)).await? {
                Some(a) => {
                    println!("{}", registers_report(&a));
                    let unsettled = store.unsettled(a.id, UNSETTLED_REPORT_MAX).await?;
                    println!("{}", unsettled_report(&unsettled));
                    Ok(())
                }
                None => bail!("no such account {account}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Cents;

    const NOV_1_MS: u64 = 1_793_491_200_000; // 2026-11-01T00:00:00Z

    #[test]
    fn statement_period_from_whole_days_or_ms() {
        assert_eq!(
            statement_period(None, None, None, None).unwrap(),
            (0, u64::MAX)
        );
        assert_eq!(
            statement_period(Some("2026-11-01"), Some("2026-11-30"), None, None).unwrap(),
            (NOV_1_MS, NOV_1_MS + 30 * DAY_MS),
            "--to runs through the end of its day"
        );
        assert_eq!(
            statement_period(Some("2026-11-01"), Some("2026-11-01"), None, None).unwrap(),
            (NOV_1_MS, NOV_1_MS + DAY_MS)
        );
        assert_eq!(
            statement_period(None, None, Some(5), Some(9)).unwrap(),
            (5, 9)
        );
        for (from, to, want) in [
            (Some("2026-11-31"), None, "--from: not a date"),
            (None, Some("11/30/2026"), "--to: expected YYYY-MM-DD"),
            (
                Some("2026-12-01"),
                Some("2026-11-30"),
                "the period is empty",
            ),
        ] {
            let e = statement_period(from, to, None, None)
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{e}");
        }
        assert!(statement_period(None, None, Some(9), Some(9)).is_err());
    }

    #[test]
    fn statement_report_reads_as_a_statement() {
        let c = |n| Cents::new(n).unwrap();
        let s = Statement {
            account: AccountId(7),
            from_ms: NOV_1_MS,
            to_ms: NOV_1_MS + 30 * DAY_MS,
            beginning: c(1_000),
            credits: c(5_000),
            printed: c(129),
            voided: c(258),
            refunded: c(0),
            ending: c(5_871),
            printed_count: 1,
            unsettled: c(0),
            late_voided: c(0),
        };
        let lines = statement_report(&s);
        assert_eq!(
            lines[0],
            "account 7 statement, 2026-11-01 00:00 UTC to 2026-12-01 00:00 UTC"
        );
        let text = lines.join("\n");
        for want in [
            "beginning balance          $10.00",
            "printed          −          $1.29  (1 item)",
            "ending balance             $58.71",
            "voided                      $2.58  (reserved, then released",
        ] {
            assert!(text.contains(want), "{want:?} not in\n{text}");
        }
        let all = Statement {
            from_ms: 0,
            to_ms: u64::MAX,
            printed_count: 2,
            ..s
        };
        let lines = statement_report(&all);
        assert_eq!(lines[0], "account 7 statement, all history");
        assert!(lines[3].ends_with("(2 items)"), "{}", lines[3]);
        assert_eq!(lines.len(), 7, "no unsettled lines when there are none");
        let late = Statement {
            unsettled: c(129),
            late_voided: c(129),
            refunded: c(129),
            ..all
        };
        let text = statement_report(&late).join("\n");
        assert!(text.contains("of printed: unsettled   $1.29"), "{text}");
        assert!(text.contains("of refunded: late voids $1.29"), "{text}");
    }

    #[test]
    fn piece_report_tells_each_state_with_its_times() {
        let base = Piece {
            id: PieceId {
                account: AccountId(1),
                serial: PieceSerial(5),
            },
            kind: 0,
            amount: Cents::new(129).unwrap(),
            state: PieceState::Printed,
            authorized_at_ms: NOV_1_MS,
            expires_at_ms: NOV_1_MS + 120_000,
            printed_at_ms: Some(NOV_1_MS + 60_000),
            refund: None,
            refund_submitted_at_ms: None,
            scanned: false,
            scan_count: 0,
            scan_recorded_at_ms: None,
            signed: Vec::new(),
            item: Vec::new(),
            terminal: None,
        };
        let asked = Piece {
            refund: Some(RefundState::Submitted),
            refund_submitted_at_ms: Some(NOV_1_MS + DAY_MS),
            ..base.clone()
        };
        for (piece, want) in [
            (
                base.clone(),
                "piece FRK10000001 #5: $1.29, printed 2026-11-01 00:01 UTC",
            ),
            (
                asked.clone(),
                "piece FRK10000001 #5: $1.29, printed 2026-11-01 00:01 UTC, refund requested \
                 2026-11-02 00:00 UTC (awaiting a decision)",
            ),
            (
                Piece {
                    refund: Some(RefundState::Approved),
                    ..asked.clone()
                },
                "piece FRK10000001 #5: $1.29, printed 2026-11-01 00:01 UTC, refund requested \
                 2026-11-02 00:00 UTC, approved: refunded",
            ),
            (
                Piece {
                    state: PieceState::Reserved,
                    printed_at_ms: None,
                    ..base.clone()
                },
                "piece FRK10000001 #5: $1.29, reserved (not printed yet), authorized 2026-11-01 00:00 UTC, \
                 expires 2026-11-01 00:02 UTC",
            ),
            (
                Piece {
                    state: PieceState::Voided,
                    printed_at_ms: None,
                    ..base.clone()
                },
                "piece FRK10000001 #5: $1.29, voided (the amount went back to the account), authorized \
                 2026-11-01 00:00 UTC",
            ),
            (
                Piece {
                    state: PieceState::Unsettled,
                    printed_at_ms: Some(NOV_1_MS + 120_000),
                    ..base.clone()
                },
                "piece FRK10000001 #5: $1.29, unsettled: charged as printed 2026-11-01 00:02 UTC by the \
                 reaper at its expiry (its terminal never settled it; refundable)",
            ),
        ] {
            assert_eq!(piece_report(&piece), want);
        }
    }

    #[test]
    fn registers_report_names_the_license_plainly() {
        let mut a = Account::new(AccountId(3));
        assert!(registers_report(&a).contains(" no license yet pending "));
        a.license = Some(LicenseId(42));
        let line = registers_report(&a);
        assert!(line.contains(" license 42 "), "{line}");
        assert!(!line.contains("Some("), "{line}");
    }
}
