//! The committer thread of the SQLite group-commit pipeline: one `BEGIN IMMEDIATE` transaction per
//! sealed batch, each changed row written once in its final state, multi-row inserts of at most
//! `ROWS_PER_STATEMENT_MAX` rows, and only after the commit the batch's replies.

use super::*;

/// The committer: owns the writing connection; writes each sealed batch in one
/// `BEGIN IMMEDIATE` transaction, commits, then answers its requests.
pub(super) struct Committer {
    pub(super) conn: Connection,
    pub(super) shared: Arc<Shared>,
    /// For deciding a batch again when another process wrote meanwhile.
    pub(super) signer: Arc<dyn ItemSigner>,
    pub(super) limits: LedgerLimits,
    /// `PRAGMA data_version` after our last transaction: it changes only when another
    /// connection (another process) commits, and then the decider's view may be stale.
    pub(super) data_version: i64,
    /// The epoch found stale: its remaining batches are decided again here.
    pub(super) stale_epoch: Option<u64>,
    /// The ids of the rows appended next, after our last commit (`None`: read them again).
    pub(super) cursor: Option<WriteCursor>,
    /// Every idempotency record at or below this id is permanent (see [`Self::prune`]).
    pub(super) prune_from: i64,
    /// The WAL is fully checkpointed: the next transaction should start it over.
    pub(super) restart_next: bool,
}

impl Committer {
    pub(super) fn run(mut self, rx: Receiver<ToCommit>) {
        let mut bad_epoch = None;
        while let Ok(item) = rx.recv() {
            match item {
                ToCommit::Batch(b) => {
                    let t0 = Instant::now();
                    let n = b.jobs.len();
                    let r = if bad_epoch == Some(b.epoch) {
                        Err(StoreError::Database(
                            "an earlier batch this one depends on failed; retry".into(),
                        ))
                    } else {
                        self.commit(b.seq, b.epoch, &b.rows, &b.jobs)
                    };
                    tracing::trace!(
                        requests = n,
                        took_us = t0.elapsed().as_micros() as u64,
                        "ledger group committed"
                    );
                    let done =
                        |shared: &Shared| shared.finished_seq.store(b.seq, Ordering::Release);
                    match r {
                        Ok(redone) => {
                            // Committed: readers (the decider among them) see it now.
                            self.shared.committed_seq.store(b.seq, Ordering::Release);
                            self.shared.batches_committed.fetch_add(1, Ordering::AcqRel);
                            self.shared
                                .requests_committed
                                .fetch_add(n as u64, Ordering::AcqRel);
                            done(&self.shared);
                            // The client may have gone away; its effect is durable either way.
                            let replies = redone.unwrap_or(b.replies);
                            for (job, reply) in b.jobs.into_iter().zip(replies) {
                                let _ = job.reply.send(Ok(reply));
                            }
                            self.restart_wal_if_wanted();
                        }
                        Err(e) => {
                            bad_epoch = Some(b.epoch);
                            self.shared.failed_epoch.store(b.epoch, Ordering::Release);
                            done(&self.shared);
                            for job in b.jobs {
                                let _ = job.reply.send(Err(e.clone()));
                            }
                        }
                    }
                }
                ToCommit::Side(Side::Prune {
                    before_ms,
                    max,
                    reply,
                }) => {
                    let _ = reply.send(self.prune(before_ms, max));
                }
                ToCommit::Side(Side::Intent(write, reply)) => {
                    let _ = reply.send(self.write_intent(&write));
                }
                ToCommit::Side(Side::Tender(tender, reply)) => {
                    let _ = reply.send(self.write_tender(&tender));
                }
            }
        }
    }

    /// If the checkpoint thread found the WAL long, copies what it has not yet copied (the
    /// batches committed since its last pass) so that every frame is in the database file;
    /// the next transaction then writes the WAL from its start. Runs after the batch's
    /// answers; the next batch waits for it, but it comes once per `wal_frames_max` frames
    /// and copies only a short tail.
    pub(super) fn restart_wal_if_wanted(&mut self) {
        if !self.shared.wal_restart_wanted.swap(false, Ordering::AcqRel) {
            return;
        }
        match checkpoint(&self.conn) {
            Ok(Some(_)) => self.restart_next = true,
            // The checkpoint thread's pass was running, or this one failed: try again after
            // the next batch.
            other => {
                if let Err(e) = other {
                    tracing::warn!(error = %e, "ledger WAL checkpoint failed; will retry");
                }
                self.shared
                    .wal_restart_wanted
                    .store(true, Ordering::Release);
            }
        }
    }

    pub(super) fn data_version(conn: &Connection) -> Result<i64, StoreError> {
        conn.query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(db)
    }

    /// One transaction: every row of the batch, then commit (one fsync of the WAL).
    ///
    /// If another process committed since our last transaction, the decider may have decided
    /// on rows that changed: the batch is decided again here, under the write lock, from the
    /// database alone (signing inline), and `Some(replies)` replaces the decider's. Later
    /// batches of the same epoch come here too until the decider has dropped its pending rows.
    pub(super) fn commit(
        &mut self,
        seq: u64,
        epoch: u64,
        rows: &Rows,
        jobs: &[Job],
    ) -> Result<Option<Vec<Reply>>, StoreError> {
        // Starting the WAL over: no decider snapshot may be open meanwhile (the decider waits
        // at most this one transaction).
        let shared = self.shared.clone();
        let _gate = std::mem::take(&mut self.restart_next)
            .then(|| shared.read_gate.lock().unwrap_or_else(|p| p.into_inner()));
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let version = Self::data_version(&tx)?;
        let moved = version != self.data_version;
        let stale = moved || self.stale_epoch == Some(epoch);
        self.data_version = version;
        // Kept only across transactions that commit; another process's writes move it too.
        let mut cursor = match self.cursor.take() {
            Some(c) if !moved => c,
            _ => WriteCursor::load(&tx)?,
        };
        if !stale {
            write_rows(&tx, &mut cursor, rows)?;
            self.shared.syncing_seq.store(seq, Ordering::Release);
            tx.commit().map_err(db)?;
            self.cursor = Some(cursor);
            return Ok(None);
        }
        self.stale_epoch = Some(epoch);
        self.shared.failed_epoch.store(epoch, Ordering::Release);
        let (overlay, replies) =
            decide_batch(&tx, &Pending::default(), jobs, &self.limits, &*self.signer)?;
        check_invariant(&overlay)?;
        write_rows(&tx, &mut cursor, &build_rows(&overlay, jobs, &replies)?)?;
        tx.commit().map_err(db)?;
        self.cursor = Some(cursor);
        Ok(Some(replies))
    }

    /// Decides and records a tender in a transaction of its own (committed before the answer).
    pub(super) fn write_tender(
        &mut self,
        asked: &report::Tender,
    ) -> Result<store::TenderAnswer, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let basket = asked.basket.to_bytes();
        let existing = read_tender(&tx, &basket)?;
        let mut found = Vec::with_capacity(asked.pieces.len());
        if existing.is_none() && report::check_shape(asked).is_ok() {
            for serial in &asked.pieces {
                let id = PieceId {
                    account: asked.account,
                    serial: *serial,
                };
                let holder: Option<Vec<u8>> = tx
                    .prepare_cached(TENDER_PIECE_SQL)
                    .map_err(db)?
                    .query_row(params![int(id.account.0)?, int(serial.0)?], |r| r.get(0))
                    .optional()
                    .map_err(db)?;
                found.push(report::TenderPiece {
                    serial: *serial,
                    piece: get_piece(&tx, id)?,
                    basket: holder
                        .map(|b| {
                            <[u8; 16]>::try_from(b.as_slice())
                                .map(RequestId::from_bytes)
                                .map_err(|_| corrupt("tender piece basket id"))
                        })
                        .transpose()?,
                });
            }
        }
        let stored = match report::decide_tender(asked, existing.as_ref(), &found) {
            Err(e) => return Ok(Err(e)),
            Ok(report::TenderDecision::Replay(t)) => return Ok(Ok(t)),
            Ok(report::TenderDecision::Insert(t)) => t,
        };
        tx.prepare_cached(TENDER_INSERT_SQL)
            .map_err(db)?
            .execute(params![
                basket.as_slice(),
                int(stored.account.0)?,
                stored.clerk,
                int(stored.terminal.0)?,
                stored.kind.as_str(),
                int(stored.tendered.get())?,
                int(stored.change.get())?,
                int(stored.total.get())?,
                int(stored.recorded_at_ms)?,
            ])
            .map_err(db)?;
        for (position, serial) in stored.pieces.iter().enumerate() {
            tx.prepare_cached(TENDER_PIECE_INSERT_SQL)
                .map_err(db)?
                .execute(params![
                    int(stored.account.0)?,
                    int(serial.0)?,
                    basket.as_slice(),
                    position as i64,
                ])
                .map_err(db)?;
        }
        tx.commit().map_err(db)?;
        Ok(Ok(stored))
    }

    /// Records or resolves a payment intent in a transaction of its own (committed, so durable,
    /// before the answer).
    pub(super) fn write_intent(&mut self, write: &IntentWrite) -> Result<(), StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        match write {
            IntentWrite::Record(i) => {
                tx.prepare_cached(INTENT_INSERT_SQL)
                    .map_err(db)?
                    .execute(params![
                        i.request.to_bytes().as_slice(),
                        int(i.account.0)?,
                        int(i.amount.get())?,
                        store::encode_method(&i.method),
                        int(i.started_at_ms)?,
                    ])
                    .map_err(db)?;
            }
            IntentWrite::Resolve {
                request,
                resolution,
                at_ms,
            } => {
                tx.prepare_cached(INTENT_RESOLVE_SQL)
                    .map_err(db)?
                    .execute(params![
                        request.to_bytes().as_slice(),
                        int(*at_ms)?,
                        resolution.as_str(),
                    ])
                    .map_err(db)?;
            }
        }
        tx.commit().map_err(db)
    }

    /// Deletes up to `max` records older than `before_ms`, walking the log from its oldest
    /// end (commit order) and stopping at the first younger record; account openings
    /// (`permanent`) and the records of top-ups whose payment intent is open stay. Records
    /// left below `prune_from` are all permanent.
    pub(super) fn prune(&mut self, before_ms: u64, max: u32) -> Result<u64, StoreError> {
        /// Records read per step of the walk.
        const PRUNE_SCAN_ROWS: i64 = 256;
        let before = int(before_ms)?;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(db)?;
        let mut deleted = 0u64;
        // The walk's position, and how far every record left is permanent (the next walk's
        // start): a record kept for an open intent holds that point back.
        let mut walked = self.prune_from;
        let mut last = self.prune_from;
        let mut held = false;
        'walk: loop {
            let rows: Vec<(i64, i64, bool, bool)> = tx
                .prepare_cached(IDEMPOTENCY_OLDEST_SQL)
                .map_err(db)?
                .query_map(params![walked, PRUNE_SCAN_ROWS], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .map_err(db)?
                .collect::<Result<_, _>>()
                .map_err(db)?;
            if rows.is_empty() {
                break;
            }
            for (id, at_ms, permanent, intent_open) in rows {
                if deleted >= u64::from(max) || at_ms >= before {
                    break 'walk;
                }
                walked = id;
                if intent_open {
                    held = true;
                    continue;
                }
                if !held {
                    last = id;
                }
                if !permanent {
                    tx.prepare_cached(IDEMPOTENCY_DELETE_SQL)
                        .map_err(db)?
                        .execute([id])
                        .map_err(db)?;
                    deleted += 1;
                }
            }
        }
        tx.commit().map_err(db)?;
        self.prune_from = last;
        Ok(deleted)
    }
}

/// The ids the committer gives the rows it appends — audit records, piece data, idempotency
/// records — and each account's last audit record. Only the committer writes, so it keeps
/// this in memory between batches; it is dropped (and read again) after a failed transaction
/// or when another process wrote.
pub(super) struct WriteCursor {
    pub(super) next_audit_id: i64,
    /// Each account's last audit record (id and UTC day), as committed (or written by the
    /// batch being written); at most [`AUDIT_LAST_CACHED_MAX`] between batches, read again
    /// from `accounts.audit_last` when missing.
    pub(super) last: HashMap<AccountId, Option<(i64, i64)>>,
    /// The id the next piece_data row gets.
    pub(super) next_data_id: i64,
    /// The id the next idempotency record gets.
    pub(super) next_reply_id: i64,
}

/// Most accounts whose last audit record the committer keeps between batches.
pub(super) const AUDIT_LAST_CACHED_MAX: usize = 65_536;

/// Takes the id `next` holds and moves it on.
pub(super) fn take_id(next: &mut i64, what: &str) -> Result<i64, StoreError> {
    let id = *next;
    *next = id
        .checked_add(1)
        .ok_or_else(|| corrupt(format!("{what} ids exhausted")))?;
    Ok(id)
}

impl WriteCursor {
    pub(super) fn load(conn: &Connection) -> Result<WriteCursor, StoreError> {
        Ok(WriteCursor {
            next_audit_id: conn
                .query_row(AUDIT_NEXT_SQL, [], |r| r.get(0))
                .map_err(db)?,
            last: HashMap::new(),
            next_data_id: conn
                .query_row(PIECE_DATA_NEXT_SQL, [], |r| r.get(0))
                .map_err(db)?,
            next_reply_id: conn
                .query_row(IDEMPOTENCY_NEXT_SQL, [], |r| r.get(0))
                .map_err(db)?,
        })
    }

    /// The id for the account's next record (made at `at_ms`), the id of its previous one,
    /// and whether it is the account's first record of a later UTC day than the previous one
    /// (or its first at all): then `audit_days` marks the day.
    pub(super) fn take(
        &mut self,
        conn: &Connection,
        account: AccountId,
        at_ms: i64,
    ) -> Result<(i64, Option<i64>, bool), StoreError> {
        let prev = match self.last.get(&account) {
            Some(prev) => *prev,
            None => conn
                .prepare_cached(AUDIT_LAST_DAY_SQL)
                .map_err(db)?
                .query_row([int(account.0)?], |r| {
                    Ok(
                        match (r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?) {
                            (Some(id), Some(at)) => Some((id, at / DAY_MS)),
                            _ => None,
                        },
                    )
                })
                .optional()
                .map_err(db)?
                .flatten(),
        };
        let id = take_id(&mut self.next_audit_id, "audit record")?;
        let day = at_ms / DAY_MS;
        let new_day = prev.is_none_or(|(_, d)| d < day);
        self.last.insert(account, Some((id, day)));
        Ok((id, prev.map(|(p, _)| p), new_day))
    }
}

/// Rows per multi-row INSERT (the last statements of a batch take the powers of two below it,
/// so each table has at most 7 statement shapes in the statement cache).
pub(super) const ROWS_PER_STATEMENT_MAX: usize = 64;

/// Inserts `rows` with as few statements as it can: `head` + `(?, …), (?, …)` + `tail`, each
/// row binding `width` values through `bind`.
pub(super) fn insert_many<T>(
    conn: &Connection,
    head: &str,
    tail: &str,
    width: usize,
    rows: &[T],
    bind: impl for<'r> Fn(&'r T, &mut Vec<&'r dyn rusqlite::ToSql>),
) -> Result<(), StoreError> {
    let mut rest = rows;
    let mut values: Vec<&dyn rusqlite::ToSql> = Vec::new();
    while !rest.is_empty() {
        // The largest power of two not above what is left (and the bound).
        let n = 1usize << rest.len().min(ROWS_PER_STATEMENT_MAX).ilog2();
        let (now, later) = rest.split_at(n);
        let mut sql = String::with_capacity(head.len() + tail.len() + n * (width * 2 + 3));
        sql.push_str(head);
        for i in 0..n {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for j in 0..width {
                sql.push_str(if j == 0 { "?" } else { ",?" });
            }
            sql.push(')');
        }
        sql.push_str(tail);
        values.clear();
        for row in now {
            bind(row, &mut values);
        }
        conn.prepare_cached(&sql)
            .map_err(db)?
            .execute(rusqlite::params_from_iter(values.iter()))
            .map_err(db)?;
        rest = later;
    }
    Ok(())
}

/// One audit record as the committer inserts it: its id and its account's previous record
/// assigned.
pub(super) struct AuditInsert<'a> {
    pub(super) id: i64,
    pub(super) account: i64,
    pub(super) seq: i64,
    pub(super) at_ms: i64,
    pub(super) body: &'a str,
    pub(super) hash: &'a [u8],
    pub(super) prev: Option<i64>,
}

/// Writes every row the batch changed (each once, in its final state), the audit records in
/// order, and the idempotency records, a few multi-row statements per table.
pub(super) fn write_rows(
    conn: &Connection,
    cursor: &mut WriteCursor,
    b: &Rows,
) -> Result<(), StoreError> {
    // Audit records first: each points to its account's previous record, and the account
    // row below records the last one. (What the cursor forgets here is committed in
    // `accounts.audit_last`.)
    if cursor.last.len() > AUDIT_LAST_CACHED_MAX {
        cursor.last.clear();
    }
    let mut audit = Vec::with_capacity(b.audit.len());
    let mut days = Vec::new();
    for rec in &b.audit {
        let at_ms = int(rec.at_ms)?;
        let (id, prev, new_day) = cursor.take(conn, rec.account, at_ms)?;
        if new_day {
            days.push((int(rec.account.0)?, at_ms / DAY_MS, prev));
        }
        audit.push(AuditInsert {
            id,
            account: int(rec.account.0)?,
            seq: int(rec.seq)?,
            at_ms: int(rec.at_ms)?,
            body: &rec.body,
            hash: &rec.hash[..],
            prev,
        });
    }
    insert_many(conn, AUDIT_INSERT_HEAD, "", 7, &audit, |r, v| {
        v.extend([
            &r.id as &dyn rusqlite::ToSql,
            &r.account,
            &r.seq,
            &r.at_ms,
            &r.body,
            &r.hash,
            &r.prev,
        ])
    })?;
    if !days.is_empty() {
        let mut mark = conn.prepare_cached(AUDIT_DAY_INSERT_SQL).map_err(db)?;
        for (account, day, before) in &days {
            mark.execute(rusqlite::params![account, day, before])
                .map_err(db)?;
        }
    }
    // (Inserting explicit ids keeps sqlite_sequence at the largest, as AUTOINCREMENT does.)
    let mut accounts = Vec::with_capacity(b.accounts.len());
    for r in &b.accounts {
        let id = AccountId(store::uint(r.id)?);
        accounts.push((
            r,
            cursor
                .last
                .get(&id)
                .copied()
                .flatten()
                .map(|(last, _)| last),
        ));
    }
    insert_many(
        conn,
        ACCOUNT_UPSERT_HEAD,
        ACCOUNT_UPSERT_TAIL,
        11,
        &accounts,
        |(r, last), v| {
            v.extend([
                &r.id as &dyn rusqlite::ToSql,
                &r.license,
                &r.status,
                &r.descending,
                &r.pending,
                &r.ascending,
                &r.control,
                &r.last_piece,
                &r.audit_seq,
                &r.audit_head,
                last,
            ])
        },
    )?;
    let mut new_pieces: Vec<(&PieceRow, i64)> = Vec::with_capacity(b.new_pieces.len());
    for r in &b.new_pieces {
        new_pieces.push((r, take_id(&mut cursor.next_data_id, "piece data")?));
    }
    insert_many(
        conn,
        PIECE_DATA_INSERT_HEAD,
        "",
        3,
        &new_pieces,
        |(r, id), v| v.extend([id as &dyn rusqlite::ToSql, &r.signed, &r.item]),
    )?;
    insert_many(
        conn,
        PIECE_INSERT_HEAD,
        "",
        15,
        &new_pieces,
        |(r, id), v| {
            v.extend([
                &r.account as &dyn rusqlite::ToSql,
                &r.serial,
                &r.kind,
                &r.amount,
                &r.state,
                &r.authorized_at_ms,
                &r.expires_at_ms,
                &r.printed_at_ms,
                &r.refund,
                &r.refund_submitted_at_ms,
                &r.scanned,
                id,
                &r.terminal,
                &r.scan_count,
                &r.scan_recorded_at_ms,
            ])
        },
    )?;
    {
        let mut stmt = conn.prepare_cached(PIECE_UPDATE_SQL).map_err(db)?;
        for r in &b.changed_pieces {
            let n = stmt
                .execute(params![
                    r.account,
                    r.serial,
                    r.state,
                    r.printed_at_ms,
                    r.refund,
                    r.refund_submitted_at_ms,
                    r.scanned,
                    r.scan_count,
                    r.scan_recorded_at_ms
                ])
                .map_err(db)?;
            if n != 1 {
                return Err(corrupt(format!(
                    "piece {}/{} to update is missing",
                    r.account, r.serial
                )));
            }
        }
    }
    let mut replies: Vec<(&IdempotencyRow, i64)> = Vec::with_capacity(b.idempotency.len());
    for r in &b.idempotency {
        replies.push((r, take_id(&mut cursor.next_reply_id, "idempotency")?));
    }
    insert_many(
        conn,
        IDEMPOTENCY_INSERT_HEAD,
        "",
        6,
        &replies,
        |(r, id), v| {
            v.extend([
                id as &dyn rusqlite::ToSql,
                &r.key,
                &r.fingerprint,
                &r.reply,
                &r.at_ms,
                &r.permanent,
            ])
        },
    )?;
    Ok(())
}
