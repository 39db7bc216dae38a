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
            (Some(d), _) => Ok(d.clone()),
            (None, Some(dir)) => Ok(dir
                .join(crate::vendor::LEDGER_FILE)
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
    /// An account's statement for a period.
    Statement {
        account: u64,
        /// Start of the period, ms since the epoch (inclusive).
        #[arg(long, default_value_t = 0)]
        from_ms: u64,
        /// End of the period, ms since the epoch (exclusive).
        #[arg(long, default_value_t = u64::MAX)]
        to_ms: u64,
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

#[derive(Debug, Subcommand)]
pub enum RefundCommand {
    /// Show a piece and its refund state. PIECE is ACCOUNT-SERIAL, e.g. 7-42.
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

/// Parses `ACCOUNT-SERIAL`.
pub fn parse_piece(text: &str) -> anyhow::Result<PieceId> {
    let (a, s) = text
        .split_once('-')
        .with_context(|| format!("piece {text:?}: use ACCOUNT-SERIAL, e.g. 7-42"))?;
    Ok(PieceId {
        account: AccountId(a.parse().with_context(|| format!("account in {text:?}"))?),
        serial: PieceSerial(s.parse().with_context(|| format!("serial in {text:?}"))?),
    })
}

async fn open(db: &DatabaseArg) -> anyhow::Result<Arc<dyn LedgerStore>> {
    let database = db.resolve()?;
    if database.starts_with("postgres") || std::path::Path::new(&database).exists() {
        super::open_store(&database, Arc::new(NoSigning), LedgerLimits::default())
            .await
            .with_context(|| format!("opening the ledger database {database}"))
    } else {
        bail!("no ledger database at {database}; run `frank vendor init` or pass --database")
    }
}

fn now_ms() -> u64 {
    use super::service::Clock;
    super::service::SystemClock.now_ms()
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
                RefundCommand::Show { piece, db } => (piece, db, None),
                RefundCommand::Approve { piece, db } => (piece, db, Some(true)),
                RefundCommand::Reject { piece, db } => (piece, db, Some(false)),
            };
            let id = parse_piece(&piece)?;
            let store = open(&db).await?;
            if let Some(approve) = decision {
                let request = super::ops::Request::new(
                    RequestId::random(),
                    Op::DecideRefund { piece: id, approve },
                );
                match store.execute(request, now_ms()).await? {
                    Ok(o) => println!("{o:?}"),
                    Err(e) => bail!("{e}"),
                }
            }
            match store.piece(id).await? {
                Some(p) => println!(
                    "piece {}: {} amount {} item state {:?}",
                    p.id,
                    p.state.as_str(),
                    p.amount,
                    p.item_state()
                ),
                None => bail!("no such piece {id}"),
            }
            Ok(())
        }
        LedgerCommand::Statement {
            account,
            from_ms,
            to_ms,
            db,
        } => {
            let store = open(&db).await?;
            match store::statement(&*store, AccountId(account), from_ms, to_ms).await? {
                Ok(s) => {
                    println!(
                        "account {}  beginning {}  credits {}  printed {}  voided {}  refunded {}  ending {}",
                        account, s.beginning, s.credits, s.printed, s.voided, s.refunded, s.ending
                    );
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
                RequestId::random(),
                Op::Unlock {
                    account: AccountId(account),
                    supervisor: name.to_string(),
                },
            );
            match store.execute(request, now_ms()).await? {
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
            for line in open_intents_report(&intents, now_ms()) {
                println!("{line}");
            }
            Ok(())
        }
        LedgerCommand::Account { account, db } => {
            let store = open(&db).await?;
            match store.account(AccountId(account)).await? {
                Some(a) => {
                    let r = a.registers;
                    println!(
                        "account {} meter {} license {:?} {}  descending {} pending {} ascending {} control {}",
                        a.id.0,
                        a.meter,
                        a.license.map(|l| l.0),
                        a.status.as_str(),
                        r.descending,
                        r.pending,
                        r.ascending,
                        r.control
                    );
                    Ok(())
                }
                None => bail!("no such account {account}"),
            }
        }
    }
}
