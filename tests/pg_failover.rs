//! Issue 14 item 5: failover of the ledger's database under load. A PostgreSQL primary with
//! one synchronous standby (tests/support/postgres.rs `cluster`), two child `frank vendor
//! serve --database postgresql://P1,P2/…?target_session_attrs=read-write` fronts, and the load
//! generator over both with an acknowledgement log. Mid-load the primary is stopped at once
//! (`pg_ctl stop -m immediate`) and the standby promoted (`pg_ctl promote`); nobody restarts
//! or reconfigures the fronts. Then, on the promoted database: every acknowledged operation is
//! present, none applied twice, the audit verifies (`frank::ledger::acks::check`, the same check
//! `frank vendor check-acks` runs for scripts/cluster.sh), and both fronts acknowledged
//! requests sent after the primary was gone.

#[path = "support/ledger.rs"]
mod ledger_support;
#[path = "support/postgres.rs"]
mod pg;
mod support;

use frank::counter::loadgen::{self, LoadgenConfig};
use frank::ledger::acks::{self, Ack, AckAnswer, AckOp, FailoverTimes};
use frank::ledger::postgres::{PostgresConfig, PostgresStore};
use frank::ledger::{LedgerLimits, LedgerStore, Op, Request, RequestId};
use frank::vendor_server::DataDir;
use frank::vendor_server::directory::Directory;
use std::sync::Arc;
use std::time::Duration;

/// Load before the primary stops, and the whole run (the load generator goes on through the
/// failover and after it).
const LOAD_BEFORE_STOP_MS: u64 = 2_500;
const LOAD_S: u64 = 7;
const TERMINALS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_failover_under_load_loses_nothing_and_repeats_nothing() {
    let cluster = pg::cluster().await;
    let url = cluster.create_database("failover").await;

    let dir = tempfile::tempdir().unwrap();
    let data = DataDir::new(dir.path().join("front0"));
    // The directory is in the database with the ledger; its calls block, so off the runtime.
    let (init_data, init_url) = (data.clone(), url.clone());
    let code = tokio::task::spawn_blocking(move || {
        init_data.init_with(Some(&init_url)).unwrap();
        let mut d = Directory::open_postgres(&init_url).unwrap();
        let (acct, _) = d.add_account("Failover PO", 1).unwrap();
        let code = support::fleet_code(&mut d, acct.id);
        d.add_clerk(acct.id, support::CLERK, support::PASSWORD, false, 1)
            .unwrap();
        code
    })
    .await
    .unwrap();
    let key = data.load().unwrap().public_key;
    let second = dir.path().join("front1");
    support::copy_data_dir(&data.path, &second);
    let addrs = [support::free_udp_port(), support::free_udp_port()];
    let args = ["--database", url.as_str()];
    let _fronts = [
        support::spawn_vendor_serve(&data.path, addrs[0], &args).await,
        support::spawn_vendor_serve(&second, addrs[1], &args).await,
    ];

    let acks_path = dir.path().join("acks.jsonl");
    let load = tokio::spawn(loadgen::run(LoadgenConfig {
        vendors: addrs.to_vec(),
        pinned: key,
        code,
        clerk: support::CLERK.into(),
        password: support::PASSWORD.into(),
        terminals: TERMINALS,
        duration_s: LOAD_S,
        void_every: 5,
        acks: Some(acks_path.clone()),
    }));
    // Stop the primary once load is flowing: the log has acknowledgements through both fronts.
    let mut waited_ms = 0;
    while waited_ms < LOAD_BEFORE_STOP_MS
        || !acks::read(&acks_path)
            .map(|l| l.iter().any(|a| a.front == 1 && a.answer.acknowledged()))
            .unwrap_or(false)
    {
        assert!(!load.is_finished(), "the load generator ended early");
        tokio::time::sleep(Duration::from_millis(100)).await;
        waited_ms += 100;
    }
    let stop_ms = frank::clock::unix_ms();
    cluster.stop_primary().unwrap();
    let stopped_ms = frank::clock::unix_ms();
    cluster.promote_standby().unwrap();

    let report = load.await.unwrap().unwrap();
    assert!(report.pairs > 0, "{report:?}");
    assert_eq!(report.unanswered, 0, "{report:?}");

    let log = acks::read(&acks_path).unwrap();
    // The multi-host URL now reaches the promoted standby, the only server that accepts
    // writes.
    let store = PostgresStore::connect(
        &url,
        PostgresConfig {
            connections_max: 2,
            batch_writers: 0,
            ..PostgresConfig::default()
        },
        Arc::new(frank::ledger::cli::NoSigning),
        LedgerLimits::default(),
    )
    .await
    .unwrap();
    let r = acks::check(
        &store as &dyn LedgerStore,
        &log,
        Some(FailoverTimes {
            stop_ms,
            stopped_ms,
        }),
    )
    .await
    .unwrap();
    println!("{r}");
    assert!(r.problems.is_empty(), "{:#?}", r.problems);
    assert_eq!((r.lost, r.duplicated), (0, 0), "{r}");
    assert!(r.audit_ok, "{r}");
    assert!(r.acknowledged > 0, "{r}");
    assert!(
        r.failover_s.is_some(),
        "nothing acknowledged after the failover: {r}"
    );
    // Both fronts came back by themselves: each acknowledged requests sent after the primary
    // was gone.
    for front in 0..2 {
        assert!(
            log.iter().any(|a| a.front == front
                && a.answer == AckAnswer::Committed
                && a.sent_ms >= stopped_ms),
            "front {front} committed nothing after the failover"
        );
    }
}

/// The check itself, on a ledger whose history is known: a log that matches it is clean; an
/// acknowledgement the ledger never saw counts as lost, and a piece no request of the log
/// accounts for as duplicated.
#[tokio::test]
async fn the_check_counts_what_is_lost_and_what_is_duplicated() {
    use ledger_support::*;
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_at(&dir.path().join("ledger.db"));
    let store: &dyn LedgerStore = &sqlite;
    let now = frank::clock::unix_ms();
    let account = open_active(store, 1, now).await;
    let funding = fund_request(account, 10_000, "pay-1");
    let fund_id = funding.id;
    store.execute(funding, now).await.unwrap().unwrap();
    let auth_id = rid();
    let authorize_op = Op::Authorize {
        account,
        kind: 1,
        amount: c(100),
        item: vec![0xAB; 100],
        terminal: None,
    };
    let a = authorization(
        store
            .execute(Request::new(auth_id, authorize_op), now)
            .await
            .unwrap(),
    );
    let commit_id = rid();
    let committed = store
        .execute(
            Request::new(
                commit_id,
                Op::Commit {
                    authorization: a.id,
                },
            ),
            now,
        )
        .await
        .unwrap();
    assert!(committed.is_ok(), "{committed:?}");
    let serial = Some(a.id.serial.0);
    let line = |op, answer, id: RequestId, serial| Ack {
        op,
        answer,
        request: hex::encode(id.to_bytes()),
        account: account.0,
        serial,
        front: 0,
        terminal: 1,
        sent_ms: now,
        at_ms: now,
    };
    let mut log = vec![
        line(AckOp::Fund, AckAnswer::Funded, fund_id, None),
        line(AckOp::Authorize, AckAnswer::Authorized, auth_id, serial),
        line(AckOp::Commit, AckAnswer::Committed, commit_id, serial),
        line(AckOp::Commit, AckAnswer::Unanswered, rid(), serial),
    ];
    let r = acks::check(store, &log, None).await.unwrap();
    assert!(r.ok() && r.problems.is_empty(), "{r} {:?}", r.problems);
    assert_eq!(
        r.acknowledged, 3,
        "an unanswered request is not acknowledged"
    );
    assert_eq!(r.failover_s, None);

    log.push(line(AckOp::Commit, AckAnswer::Committed, rid(), serial));
    authorization(authorize(store, account, 100, now).await);
    let r = acks::check(store, &log, None).await.unwrap();
    assert_eq!((r.lost, r.duplicated), (1, 1), "{r} {:?}", r.problems);
    assert!(r.audit_ok, "the ledger itself is sound: {r}");
    assert!(!r.ok());
}
