//! The decider thread of the SQLite group-commit pipeline: gathers requests into the open batch,
//! decides them in order on an in-memory overlay of the rows they touch, signs new
//! authorizations on the signing pool and hands each batch, sealed, to the committer.

use super::*;

/// The decider: gathers a batch, decides it on top of the committed database plus the rows of
/// batches still being committed, signs it, and hands the sealed write set to the committer.
pub(super) struct Decider {
    /// A read connection (the committer holds the writing one).
    pub(super) conn: Connection,
    pub(super) config: SqliteConfig,
    pub(super) signer: Arc<dyn ItemSigner>,
    pub(super) limits: LedgerLimits,
    pub(super) pool: SignPool,
    pub(super) shared: Arc<Shared>,
    pub(super) pending: Pending,
    /// Sequence number of the next batch (1, 2, ...).
    pub(super) next_seq: u64,
    /// Batches decided since the last commit failure; see [`Shared::failed_epoch`].
    pub(super) epoch: u64,
    pub(super) to_commit: SyncSender<ToCommit>,
    /// To tell a committer that is gone (nothing commits then) from a slow one.
    pub(super) committer: std::thread::JoinHandle<()>,
}

/// State the committer publishes to the decider.
pub(super) struct Shared {
    /// Sequence number of the last batch committed (0: none yet).
    pub(super) committed_seq: AtomicU64,
    /// Sequence number of the last batch the committer is done with, committed or failed.
    pub(super) finished_seq: AtomicU64,
    /// Sequence number of the last batch whose rows are written and whose commit (the WAL
    /// fsync) has begun: the committer will be free once that fsync returns.
    pub(super) syncing_seq: AtomicU64,
    /// Epoch of the last batch that failed to commit (`u64::MAX`: none). Later batches of that
    /// epoch were decided on top of it, so the committer fails them too; the decider then
    /// forgets its pending rows and starts a new epoch.
    pub(super) failed_epoch: AtomicU64,
    /// Set by the checkpoint thread when the WAL holds `wal_frames_max` frames or more: the
    /// committer checkpoints the rest itself after its next commit, so the WAL starts over.
    pub(super) wal_restart_wanted: AtomicBool,
    /// Held by the decider while its read snapshot is open, and by the committer through the
    /// one transaction that should start the WAL over: SQLite starts it over only if no
    /// reader holds a snapshot older than the checkpoint, and the decider, reading almost
    /// all the time under load, usually did (the WAL then grew on until a later try).
    pub(super) read_gate: Mutex<()>,
    /// Counted after each batch's commit, for [`SqliteStore::commit_counts`].
    pub(super) batches_committed: AtomicU64,
    pub(super) requests_committed: AtomicU64,
}

/// Rows written by batches handed to the committer, each with the sequence number of the last
/// batch that wrote it. The decider reads them before the database. Until their batch commits
/// they exist only here; after that they equal the database's rows (the committer is the only
/// writer; another process's commit makes the committer decide again and the decider start
/// over with nothing pending), so the decider keeps accounts and pieces as a cache of hot rows
/// — every commit by another connection empties its SQLite page cache — until a map grows past
/// its bound, when the committed ones are dropped. Idempotency replies are dropped once
/// committed (pruning forgets them in the database).
#[derive(Default)]
pub(super) struct Pending {
    pub(super) accounts: HashMap<AccountId, (u64, Account)>,
    pub(super) pieces: HashMap<PieceId, (u64, Piece)>,
    pub(super) seen: HashMap<RequestId, (u64, [u8; 32], Reply)>,
}

impl Pending {
    pub(super) fn forget_committed(&mut self, committed_seq: u64) {
        if self.accounts.len() > PENDING_ACCOUNTS_MAX {
            self.accounts.retain(|_, (seq, _)| *seq > committed_seq);
        }
        if self.pieces.len() > PENDING_PIECES_MAX {
            self.pieces.retain(|_, (seq, _)| *seq > committed_seq);
        }
        // Replies are not kept once committed: pruning must be able to forget them.
        self.seen.retain(|_, (seq, _, _)| *seq > committed_seq);
    }
}

/// Most accounts and pieces the decider keeps in [`Pending`] (committed ones are dropped
/// beyond these; rows not committed yet always stay).
pub(super) const PENDING_ACCOUNTS_MAX: usize = 65_536;
pub(super) const PENDING_PIECES_MAX: usize = 16_384;

/// One idempotency record to insert.
pub(super) struct IdempotencyRow {
    pub(super) key: [u8; 16],
    pub(super) fingerprint: [u8; 32],
    pub(super) reply: String,
    pub(super) at_ms: i64,
    pub(super) permanent: bool,
}

/// Everything one batch's transaction writes.
pub(super) struct Rows {
    pub(super) accounts: Vec<AccountRow>,
    /// Pieces to insert (with their piece_data row).
    pub(super) new_pieces: Vec<PieceRow>,
    /// Pieces whose state changed.
    pub(super) changed_pieces: Vec<PieceRow>,
    pub(super) audit: Vec<AuditRecord>,
    pub(super) idempotency: Vec<IdempotencyRow>,
}

/// A decided, signed batch: its rows, its requests and the replies to send after the commit.
pub(super) struct Sealed {
    pub(super) seq: u64,
    pub(super) epoch: u64,
    pub(super) rows: Rows,
    pub(super) jobs: Vec<Job>,
    pub(super) replies: Vec<Reply>,
}

pub(super) enum ToCommit {
    Batch(Sealed),
    Side(Side),
}

/// A batch's view of the database: rows read so far, with the batch's own changes applied on
/// top. Nothing is written until the whole batch has decided and been signed; then every
/// changed row is written once.
#[derive(Default)]
pub(super) struct Overlay {
    pub(super) accounts: HashMap<AccountId, Account>,
    pub(super) pieces: HashMap<PieceId, Piece>,
    /// Idempotency records read from the database or made by this batch.
    pub(super) seen: HashMap<RequestId, (Arc<[u8; 32]>, Reply)>,
    pub(super) dirty_accounts: Vec<AccountId>,
    pub(super) dirty_pieces: Vec<PieceId>,
    /// Pieces this batch created (not in the database nor in a batch being committed).
    pub(super) fresh_pieces: std::collections::HashSet<PieceId>,
    pub(super) audit: Vec<AuditRecord>,
    /// Replies to remember: (request, index of the job in the batch).
    pub(super) remember: Vec<(RequestId, usize)>,
}

impl Overlay {
    pub(super) fn apply(&mut self, changes: ops::Changes) {
        for a in changes.accounts {
            if !self.dirty_accounts.contains(&a.id) {
                self.dirty_accounts.push(a.id);
            }
            self.accounts.insert(a.id, a);
        }
        for p in changes.pieces {
            if !self.dirty_pieces.contains(&p.id) {
                self.dirty_pieces.push(p.id);
            }
            // A piece the batch did not load (pieces are loaded before they change) is new.
            if !self.pieces.contains_key(&p.id) {
                self.fresh_pieces.insert(p.id);
            }
            self.pieces.insert(p.id, p);
        }
        self.audit.extend(changes.audit);
    }
}

/// The batch the decider is building: requests decided (and signed) on its overlay, not yet
/// handed to the committer.
#[derive(Default)]
pub(super) struct Open {
    pub(super) jobs: Vec<Job>,
    pub(super) overlay: Overlay,
    pub(super) replies: Vec<Reply>,
    /// Bytes of the requests' item descriptions, bounded by [`OPEN_ITEM_BYTES_MAX`].
    pub(super) item_bytes: usize,
}

/// Most bytes of item descriptions one batch carries (besides `group_requests_max`): the
/// batch's signed items are written and kept in memory until it commits.
pub(super) const OPEN_ITEM_BYTES_MAX: usize = 4 << 20;

/// Most requests the decider adds to an open batch between two looks at the committer
/// (deciding and signing 32 takes ~0.3 ms; a whole wave of replies at once took long enough
/// that the committer sat idle waiting for the hand-over).
pub(super) const EXTEND_REQUESTS_MAX: usize = 32;

/// How long the decider sleeps between looks at the committer while it holds an open batch
/// and no request arrives.
pub(super) const COMMITTER_POLL_US: u64 = 50;

pub(super) fn item_bytes(job: &Job) -> usize {
    match &job.request.op {
        ops::Op::Authorize { item, .. } => item.len(),
        _ => 0,
    }
}

impl Decider {
    pub(super) fn run(mut self, rx: Receiver<Task>) {
        let group_max = self.config.group_requests_max.max(1);
        let wait = Duration::from_micros(self.config.group_wait_us_max);
        let poll = Duration::from_micros(COMMITTER_POLL_US);
        let mut open = Open::default();
        let mut arrived: Vec<Job> = Vec::with_capacity(group_max);
        // A prune or intent write, sent to the committer after the open batch.
        let mut side: Option<Side> = None;
        let mut connected = true;
        loop {
            if open.jobs.is_empty() && arrived.is_empty() && side.is_none() {
                if !connected {
                    break;
                }
                // A new batch: wait for its first request, then gather more for at most
                // `group_wait_us_max` (as long as nothing else is open, the committer is idle).
                match rx.recv() {
                    Ok(Task::Request(job)) => arrived.push(job),
                    Ok(Task::Side(write)) => side = Some(write),
                    Err(_) => break,
                }
                let deadline = Instant::now() + wait;
                while side.is_none() && arrived.len() < group_max {
                    let left = deadline.saturating_duration_since(Instant::now());
                    let next = match rx.try_recv() {
                        Ok(task) => task,
                        Err(_) if left.is_zero() => break,
                        Err(_) => match rx.recv_timeout(left) {
                            Ok(task) => task,
                            Err(RecvTimeoutError::Timeout) => break,
                            Err(RecvTimeoutError::Disconnected) => {
                                connected = false;
                                break;
                            }
                        },
                    };
                    match next {
                        Task::Request(job) => arrived.push(job),
                        Task::Side(write) => side = Some(write),
                    }
                }
            }
            // Take whatever else is queued, up to the batch's bound — and while a batch is
            // open, at most EXTEND_REQUESTS_MAX at a time, so the decider looks at the
            // committer between chunks and hands the batch over as soon as it may.
            while connected
                && side.is_none()
                && !self.full(&open, &arrived, group_max)
                && (open.jobs.is_empty() || arrived.len() < EXTEND_REQUESTS_MAX)
            {
                match rx.try_recv() {
                    Ok(Task::Request(job)) => arrived.push(job),
                    Ok(Task::Side(write)) => side = Some(write),
                    Err(std::sync::mpsc::TryRecvError::Empty) => break,
                    Err(std::sync::mpsc::TryRecvError::Disconnected) => connected = false,
                }
            }
            if !arrived.is_empty() {
                self.extend(&mut open, &mut arrived);
            }
            // Hand the batch over once the committer is free to take it (or it is full, or a
            // prune, an intent write or shutdown must go after it); until then it stays open
            // for more.
            if !open.jobs.is_empty()
                && (side.is_some()
                    || !connected
                    || self.full(&open, &arrived, group_max)
                    || self.committer_free())
            {
                self.hand_over(&mut open);
            }
            if open.jobs.is_empty()
                && let Some(write) = side.take()
            {
                let _ = self.to_commit.send(ToCommit::Side(write));
            }
            if !open.jobs.is_empty() && connected {
                // The committer is busy: wait for a request to add, or look at it again soon.
                match rx.recv_timeout(poll) {
                    Ok(Task::Request(job)) => arrived.push(job),
                    Ok(Task::Side(write)) => side = Some(write),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => connected = false,
                }
            }
        }
    }

    pub(super) fn full(&self, open: &Open, arrived: &[Job], group_max: usize) -> bool {
        open.jobs.len() + arrived.len() >= group_max
            || open.item_bytes + arrived.iter().map(item_bytes).sum::<usize>()
                >= OPEN_ITEM_BYTES_MAX
    }

    /// Every batch handed over is done (or the committer is gone: the hand-over then fails
    /// the batch's requests with `Closed`).
    pub(super) fn committer_free(&self) -> bool {
        self.shared.syncing_seq.load(Ordering::Acquire) + 1 >= self.next_seq
            || self.shared.finished_seq.load(Ordering::Acquire) + 1 >= self.next_seq
            || self.committer.is_finished()
    }

    /// If a batch this view was built on did not commit as decided (a database error, or
    /// another process wrote meanwhile), lets the committer finish every batch already sent —
    /// it fails or re-decides them — then starts over from the database alone. Returns whether
    /// it started over.
    pub(super) fn start_over_if_failed(&mut self) -> bool {
        if self.shared.failed_epoch.load(Ordering::Acquire) != self.epoch {
            return false;
        }
        let sent = self.next_seq - 1;
        while self.shared.finished_seq.load(Ordering::Acquire) < sent
            && !self.committer.is_finished()
        {
            std::thread::sleep(Duration::from_micros(200));
        }
        self.pending = Pending::default();
        self.epoch += 1;
        true
    }

    /// Decides the `arrived` requests in order onto the open batch's overlay (each seeing the
    /// effects of the batch's earlier requests and of the batches still being committed) and
    /// signs their new authorizations at once. If the open batch's view went stale, or a
    /// signature was refused, the whole open batch is decided again (nothing of it was written
    /// or answered). A database error fails every request of the open batch.
    pub(super) fn extend(&mut self, open: &mut Open, arrived: &mut Vec<Job>) {
        let redo_all = self.start_over_if_failed();
        // Read the committed sequence number before the database snapshot is taken, so every
        // batch forgotten here is in that snapshot.
        self.pending
            .forget_committed(self.shared.committed_seq.load(Ordering::Acquire));
        open.item_bytes += arrived.iter().map(item_bytes).sum::<usize>();
        let mut start = open.jobs.len();
        open.jobs.append(arrived);
        // Our read snapshot lives only while we hold the gate (see `Shared::read_gate`).
        let shared = self.shared.clone();
        let _gate = shared.read_gate.lock().unwrap_or_else(|p| p.into_inner());
        let r = (|| -> Result<(), StoreError> {
            let tx = self.conn.transaction().map_err(db)?;
            if redo_all {
                open.overlay = Overlay::default();
                open.replies.clear();
                start = 0;
            }
            let deferred = DeferredSigner::default();
            let mut refused = false;
            for i in start..open.jobs.len() {
                let reply = decide_one(
                    &tx,
                    &self.pending,
                    &mut open.overlay,
                    &open.jobs[i],
                    i,
                    &self.limits,
                    &deferred,
                )?;
                open.replies.push(reply);
            }
            let tasks = std::mem::take(&mut *deferred.0.lock().unwrap_or_else(|p| p.into_inner()));
            if !tasks.is_empty() {
                let signed = self.pool.sign(&*self.signer, tasks);
                if signed.iter().any(|(_, r)| r.is_err()) {
                    refused = true;
                } else {
                    let signed: HashMap<PieceId, Vec<u8>> = signed
                        .into_iter()
                        .filter_map(|(id, r)| r.ok().map(|s| (id, s)))
                        .collect();
                    patch_signatures(&mut open.overlay, &mut open.replies[start..], &signed);
                }
            }
            if refused {
                // A refused signature must leave its request without effect, and later
                // requests may have decided on top of it: decide the open batch again,
                // signing each authorization as it is decided (nothing was written).
                let (o, r) =
                    decide_batch(&tx, &self.pending, &open.jobs, &self.limits, &*self.signer)?;
                open.overlay = o;
                open.replies = r;
            }
            // The read transaction only pinned a snapshot.
            drop(tx);
            Ok(())
        })();
        if let Err(e) = r {
            for job in std::mem::take(open).jobs {
                let _ = job.reply.send(Err(e.clone()));
            }
        }
    }

    /// Checks the control sum of every account the open batch touched, seals its write set
    /// and hands it to the committer (blocking while one sealed batch already waits).
    pub(super) fn hand_over(&mut self, open: &mut Open) {
        if self.start_over_if_failed() {
            // Decide the whole open batch again on the fresh view.
            let mut jobs = std::mem::take(&mut open.jobs);
            *open = Open::default();
            self.extend(open, &mut jobs);
            if open.jobs.is_empty() {
                return;
            }
        }
        let Open {
            jobs,
            overlay,
            replies,
            ..
        } = std::mem::take(open);
        let rows = check_invariant(&overlay).and_then(|()| build_rows(&overlay, &jobs, &replies));
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                for job in jobs {
                    let _ = job.reply.send(Err(e.clone()));
                }
                return;
            }
        };
        let seq = self.next_seq;
        for (id, index) in &overlay.remember {
            if let (Some(job), Some(reply)) = (jobs.get(*index), replies.get(*index)) {
                self.pending
                    .seen
                    .insert(*id, (seq, job.fingerprint, reply.clone()));
            }
        }
        // Later batches see this one's rows until it is committed.
        let mut overlay = overlay;
        for id in std::mem::take(&mut overlay.dirty_accounts) {
            if let Some(a) = overlay.accounts.remove(&id) {
                self.pending.accounts.insert(id, (seq, a));
            }
        }
        for id in std::mem::take(&mut overlay.dirty_pieces) {
            if let Some(p) = overlay.pieces.remove(&id) {
                self.pending.pieces.insert(id, (seq, p));
            }
        }
        self.next_seq += 1;
        let sealed = Sealed {
            seq,
            epoch: self.epoch,
            rows,
            jobs,
            replies,
        };
        // Blocks while a full batch already waits for the committer (bounded pipeline).
        if let Err(std::sync::mpsc::SendError(ToCommit::Batch(sealed))) =
            self.to_commit.send(ToCommit::Batch(sealed))
        {
            for job in sealed.jobs {
                let _ = job.reply.send(Err(StoreError::Closed));
            }
        }
    }
}

/// The control sum of every account the batch touched, before anything is written.
pub(super) fn check_invariant(overlay: &Overlay) -> Result<(), StoreError> {
    for id in &overlay.dirty_accounts {
        if let Some(a) = overlay.accounts.get(id)
            && a.registers.check().is_err()
        {
            return Err(StoreError::InvariantBroken(format!(
                "{id}: {:?}",
                a.registers
            )));
        }
    }
    Ok(())
}

/// The rows a decided batch writes: each changed row once in its final state, the audit
/// records in order, the idempotency records.
pub(super) fn build_rows(
    overlay: &Overlay,
    batch: &[Job],
    replies: &[Reply],
) -> Result<Rows, StoreError> {
    let mut rows = Rows {
        accounts: Vec::with_capacity(overlay.dirty_accounts.len()),
        new_pieces: Vec::with_capacity(overlay.fresh_pieces.len()),
        changed_pieces: Vec::with_capacity(overlay.dirty_pieces.len()),
        audit: overlay.audit.clone(),
        idempotency: Vec::with_capacity(overlay.remember.len()),
    };
    for id in &overlay.dirty_accounts {
        if let Some(a) = overlay.accounts.get(id) {
            rows.accounts.push(AccountRow::from_account(a)?);
        }
    }
    for id in &overlay.dirty_pieces {
        if let Some(p) = overlay.pieces.get(id) {
            let row = PieceRow::from_piece(p)?;
            if overlay.fresh_pieces.contains(id) {
                rows.new_pieces.push(row);
            } else {
                rows.changed_pieces.push(row);
            }
        }
    }
    for (id, index) in &overlay.remember {
        let (Some(job), Some(reply)) = (batch.get(*index), replies.get(*index)) else {
            continue;
        };
        rows.idempotency.push(IdempotencyRow {
            key: id.to_bytes(),
            fingerprint: job.fingerprint,
            reply: store::encode_stored_reply(reply),
            at_ms: int(job.now_ms)?,
            permanent: store::permanent(&job.request.op),
        });
    }
    Ok(rows)
}

/// Decides every request of the batch in order, each seeing the effects of those before it.
pub(super) fn decide_batch(
    conn: &Connection,
    pending: &Pending,
    batch: &[Job],
    limits: &LedgerLimits,
    signer: &dyn ItemSigner,
) -> Result<(Overlay, Vec<Reply>), StoreError> {
    let mut overlay = Overlay::default();
    let mut replies = Vec::with_capacity(batch.len());
    for (i, job) in batch.iter().enumerate() {
        let reply = decide_one(conn, pending, &mut overlay, job, i, limits, signer)?;
        replies.push(reply);
    }
    Ok((overlay, replies))
}

#[allow(clippy::too_many_arguments)]
pub(super) fn decide_one(
    conn: &Connection,
    pending: &Pending,
    overlay: &mut Overlay,
    job: &Job,
    index: usize,
    limits: &LedgerLimits,
    signer: &dyn ItemSigner,
) -> Result<Reply, StoreError> {
    let request = &job.request;
    let existing = match overlay.seen.get(&request.id) {
        Some((fp, reply)) => Some(IdempotencyRecord {
            fingerprint: **fp,
            reply: reply.clone(),
        }),
        None => match pending.seen.get(&request.id) {
            Some((_, fp, reply)) => Some(IdempotencyRecord {
                fingerprint: *fp,
                reply: reply.clone(),
            }),
            None => match read_idempotency(conn, request.id)? {
                Some(mut record) => {
                    restore_signature(conn, pending, overlay, &mut record.reply)?;
                    Some(record)
                }
                None => None,
            },
        },
    };
    if let Some(reply) = ops::replay_with(existing, request, &job.fingerprint) {
        return Ok(reply);
    }
    let snap = load(conn, pending, overlay, &request.op, job.now_ms)?;
    let reply = match ops::decide(&snap, request, job.now_ms, limits, signer) {
        Ok((outcome, changes)) => {
            overlay.apply(changes);
            Ok(outcome)
        }
        Err(e) => Err(e),
    };
    if store::remember(&reply) {
        overlay
            .seen
            .insert(request.id, (Arc::new(job.fingerprint), reply.clone()));
        overlay.remember.push((request.id, index));
    }
    Ok(reply)
}

/// Puts an authorization's signed item back into a stored reply from its piece.
pub(super) fn restore_signature(
    conn: &Connection,
    pending: &Pending,
    overlay: &mut Overlay,
    reply: &mut Reply,
) -> Result<(), StoreError> {
    if let Ok(Outcome::Authorized(a)) = reply
        && a.signed.is_empty()
    {
        match overlay_piece(conn, pending, overlay, a.id)? {
            Some(p) => a.signed = p.signed.clone(),
            None => {
                return Err(corrupt(format!(
                    "stored authorization {} has no piece",
                    a.id
                )));
            }
        }
    }
    Ok(())
}

pub(super) fn read_idempotency(
    conn: &Connection,
    id: RequestId,
) -> Result<Option<IdempotencyRecord>, StoreError> {
    let key = id.to_bytes();
    let existing = conn
        .prepare_cached("SELECT fingerprint, reply FROM idempotency WHERE request_id = ?1")
        .map_err(db)?
        .query_row([&key[..]], |r| {
            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
        })
        .optional()
        .map_err(db)?;
    match existing {
        Some((fp, reply)) => Ok(Some(IdempotencyRecord {
            fingerprint: store::hash32(&fp)?,
            reply: ops::decode_reply(&reply).map_err(corrupt)?,
        })),
        None => Ok(None),
    }
}

/// Puts the signatures into the batch's new pieces and into the replies that carry them.
pub(super) fn patch_signatures(
    overlay: &mut Overlay,
    replies: &mut [Reply],
    signed: &HashMap<PieceId, Vec<u8>>,
) {
    for (id, sig) in signed {
        if let Some(p) = overlay.pieces.get_mut(id) {
            p.signed = sig.clone();
        }
    }
    // The remembered replies too: a retry decided onto the same open batch in a later chunk
    // replays the remembered reply, which must carry the signed item.
    let remembered = overlay.seen.values_mut().map(|(_, reply)| reply);
    for reply in replies.iter_mut().chain(remembered) {
        if let Ok(Outcome::Authorized(a)) = reply
            && let Some(sig) = signed.get(&a.id)
        {
            a.signed = sig.clone();
        }
    }
}
