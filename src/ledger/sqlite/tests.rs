//! Unit tests of the SQLite ledger store: the pipeline, migrations.

#[cfg(test)]
mod pipeline {
    use super::super::*;

    struct NoSigner;
    impl ItemSigner for NoSigner {
        fn sign(&self, _: &PieceFacts, _: &[u8]) -> Result<Vec<u8>, String> {
            Ok(vec![1])
        }
    }

    /// A task the queue cannot take is answered with the reason on its own channel, whatever
    /// its kind (a full queue must read `Busy` to the caller, not a vanished store).
    #[test]
    fn a_task_not_queued_is_answered_with_the_reason() {
        let busy = StoreError::Busy {
            queue_requests_max: 3,
        };
        let (tx, mut rx) = oneshot::channel();
        Task::request(Request::new(RequestId(1), ops::Op::OpenAccount), 0, tx).fail(busy.clone());
        assert_eq!(rx.try_recv().unwrap(), Err(busy.clone()));
        let (tx, mut rx) = oneshot::channel();
        Task::Side(Side::Prune {
            before_ms: 0,
            max: 1,
            reply: tx,
        })
        .fail(StoreError::Closed);
        assert_eq!(rx.try_recv().unwrap(), Err(StoreError::Closed));
        let (tx, mut rx) = oneshot::channel();
        let write = IntentWrite::Resolve {
            request: RequestId(2),
            resolution: IntentResolution::NotCharged,
            at_ms: 0,
        };
        Task::Side(Side::Intent(write, tx)).fail(busy.clone());
        assert_eq!(rx.try_recv().unwrap(), Err(busy));
    }

    /// A retry decided onto the open batch after its original's chunk was signed replays the
    /// remembered reply: that reply carries the signed item too.
    #[test]
    fn remembered_authorizations_get_their_signature() {
        let piece = PieceId {
            account: AccountId(1),
            serial: PieceSerial(1),
        };
        let auth = Authorization {
            id: piece,
            meter: MeterSerial::for_account(AccountId(1)),
            amount: crate::money::Cents::new(5).unwrap(),
            kind: 1,
            expires_at_ms: 10,
            registers: Registers::default(),
            signed: Vec::new(),
        };
        let mut overlay = Overlay::default();
        overlay.seen.insert(
            RequestId(7),
            (Arc::new([0; 32]), Ok(Outcome::Authorized(auth.clone()))),
        );
        let mut replies = vec![Ok(Outcome::Authorized(auth))];
        let signed = HashMap::from([(piece, vec![1, 2, 3])]);
        patch_signatures(&mut overlay, &mut replies, &signed);
        for reply in replies.iter().chain(overlay.seen.values().map(|(_, r)| r)) {
            let Ok(Outcome::Authorized(a)) = reply else {
                panic!("{reply:?}")
            };
            assert_eq!(a.signed, vec![1, 2, 3]);
        }
    }

    /// A ledger written by schema version 1 opens under the current one: its pieces read
    /// with an empty item description and list newest first.
    #[tokio::test]
    async fn a_version_1_database_migrates_and_keeps_its_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER NOT NULL);
                 INSERT INTO schema_version (version) VALUES (1);",
            )
            .unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO accounts VALUES (1, 5, 'active', 900, 0, 100, 1000, 2, 0, zeroblob(32));
                 INSERT INTO pieces VALUES (1, 1, 2, 60, 'printed', 10, 20, 15, NULL, NULL, 0, x'aa');
                 INSERT INTO pieces VALUES (1, 2, 2, 40, 'printed', 11, 21, 16, NULL, NULL, 0, x'bb');",
            )
            .unwrap();
        }
        let store = SqliteStore::open(
            &path,
            SqliteConfig::default(),
            Arc::new(NoSigner),
            LedgerLimits::default(),
        )
        .unwrap();
        let list = store.pieces(AccountId(1), None, 10).await.unwrap();
        let serials: Vec<u64> = list.iter().map(|p| p.id.serial.0).collect();
        assert_eq!(serials, vec![2, 1]);
        assert!(list.iter().all(|p| p.item.is_empty()));
        assert_eq!(list[1].signed, vec![0xaa]);
    }

    /// Migration 3 marks the account openings of an existing database permanent (they map
    /// directory accounts to ledger accounts) and leaves every other record prunable.
    #[test]
    fn migration_3_keeps_existing_account_openings() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("ledger.db")).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (1);",
        )
        .unwrap();
        let opened: Reply = Ok(Outcome::Opened {
            account: AccountId(1),
            meter: MeterSerial::for_account(AccountId(1)),
            status: AccountStatus::Active,
        });
        let refused: Reply = Err(LedgerError::ZeroAmount);
        for (id, reply) in [(1u8, &opened), (2, &refused)] {
            conn.execute(
                "INSERT INTO idempotency (request_id, fingerprint, reply, at_ms) \
                 VALUES (?1, ?2, ?3, 0)",
                params![vec![id; 16], vec![0u8; 32], ops::encode_reply(reply)],
            )
            .unwrap();
        }
        migrate(&mut conn).unwrap();
        let flags: Vec<(Vec<u8>, i64)> = conn
            .prepare("SELECT request_id, permanent FROM idempotency ORDER BY request_id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(flags, vec![(vec![1u8; 16], 1), (vec![2u8; 16], 0)]);
    }
}

#[cfg(test)]
mod migration_4_tests {
    use super::super::*;

    /// Migration 4 links each existing audit record to its account's previous one and each
    /// account to its last record, keeping row ids.
    #[test]
    fn migration_4_chains_existing_audit_records() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("ledger.db")).unwrap();
        conn.execute_batch(MIGRATIONS[0]).unwrap();
        conn.execute_batch(MIGRATIONS[1]).unwrap();
        conn.execute_batch(
            "CREATE TABLE schema_version (version INTEGER NOT NULL);
             INSERT INTO schema_version (version) VALUES (2);
             INSERT INTO accounts VALUES (1, NULL, 'pending', 0, 0, 0, 0, 0, 2, x'00');
             INSERT INTO accounts VALUES (2, NULL, 'pending', 0, 0, 0, 0, 0, 1, x'00');
             INSERT INTO audit (account, seq, at_ms, body, hash) VALUES (1, 1, 0, 'a', x'00');
             INSERT INTO audit (account, seq, at_ms, body, hash) VALUES (2, 1, 0, 'b', x'00');
             INSERT INTO audit (account, seq, at_ms, body, hash) VALUES (1, 2, 0, 'c', x'00');",
        )
        .unwrap();
        migrate(&mut conn).unwrap();
        let rows: Vec<(i64, Option<i64>)> = conn
            .prepare("SELECT id, prev FROM audit ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows, vec![(1, None), (2, None), (3, Some(1))]);
        let last: Vec<Option<i64>> = conn
            .prepare("SELECT audit_last FROM accounts ORDER BY id")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(last, vec![Some(3), Some(2)]);
        let chain: Vec<String> = conn
            .prepare(ACCOUNT_AUDIT_SQL)
            .unwrap()
            .query_map([1], |r| r.get(4))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(chain, vec!["a", "c"]);
    }
}
