//! The signing pool of the SQLite ledger: new authorizations signed at once on
//! `sign_threads_max` threads (as many as a token has sessions).

use super::*;

/// One authorization's signature, computed after the batch decided and before it is written.
pub(super) struct SignTask {
    pub(super) piece: PieceId,
    pub(super) facts: PieceFacts,
    pub(super) item: Vec<u8>,
}

/// Records what to sign instead of signing: [`ops::decide`] runs for the whole batch first (it
/// fixes every serial and register the signatures cover), then the batch is signed at once.
#[derive(Default)]
pub(super) struct DeferredSigner(pub(super) Mutex<Vec<SignTask>>);

impl ItemSigner for DeferredSigner {
    fn sign(&self, facts: &PieceFacts, item: &[u8]) -> Result<Vec<u8>, String> {
        let task = SignTask {
            piece: PieceId {
                account: facts.account,
                serial: facts.piece,
            },
            facts: facts.clone(),
            item: item.to_vec(),
        };
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(task);
        // A placeholder; the batch patches the real signature in before anything is written.
        Ok(Vec::new())
    }
}

pub(super) type SignResults = Vec<(PieceId, Result<Vec<u8>, String>)>;
pub(super) type SignChunk = (Vec<SignTask>, SyncSender<SignResults>);

/// A small fixed pool of signing threads (`sign_threads_max − 1` helpers; the writer signs a
/// share itself). Each helper takes one chunk at a time from its own bounded channel.
pub(super) struct SignPool {
    pub(super) helpers: Vec<SyncSender<SignChunk>>,
}

impl SignPool {
    pub(super) fn start(
        threads_max: usize,
        signer: &Arc<dyn ItemSigner>,
    ) -> Result<SignPool, StoreError> {
        let mut helpers = Vec::new();
        for i in 1..threads_max.max(1) {
            let (tx, rx) = std::sync::mpsc::sync_channel::<SignChunk>(1);
            let signer = signer.clone();
            std::thread::Builder::new()
                .name(format!("ledger-sign-{i}"))
                .spawn(move || {
                    // Ends when the writer (the only sender) is gone.
                    while let Ok((tasks, back)) = rx.recv() {
                        let _ = back.send(sign_all(&*signer, tasks));
                    }
                })
                .map_err(|e| StoreError::Database(format!("cannot start a signing thread: {e}")))?;
            helpers.push(tx);
        }
        Ok(SignPool { helpers })
    }

    /// Signs every task, spread over the helpers and the calling thread.
    pub(super) fn sign(&self, signer: &dyn ItemSigner, mut tasks: Vec<SignTask>) -> SignResults {
        // Below this many signatures a hand-off costs more than it saves.
        const CHUNK_MIN: usize = 8;
        let shares = (tasks.len() / CHUNK_MIN).clamp(1, self.helpers.len() + 1);
        if shares == 1 {
            return sign_all(signer, tasks);
        }
        let per = tasks.len().div_ceil(shares);
        let (back, results) = std::sync::mpsc::sync_channel(shares);
        let mut sent = 0;
        for helper in &self.helpers[..shares - 1] {
            let at = tasks.len().saturating_sub(per);
            let chunk = tasks.split_off(at);
            match helper.send((chunk, back.clone())) {
                Ok(()) => sent += 1,
                // A helper that died: sign its share here.
                Err(std::sync::mpsc::SendError((chunk, _))) => tasks.extend(chunk),
            }
        }
        drop(back);
        let mut out = sign_all(signer, tasks);
        for _ in 0..sent {
            match results.recv() {
                Ok(r) => out.extend(r),
                Err(_) => break,
            }
        }
        out
    }
}

pub(super) fn sign_all(signer: &dyn ItemSigner, tasks: Vec<SignTask>) -> SignResults {
    tasks
        .into_iter()
        .map(|t| (t.piece, signer.sign(&t.facts, &t.item)))
        .collect()
}
