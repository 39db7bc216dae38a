//! [`Pkcs11Signer`]: signing with the token's key on a bounded set of sessions (as many as the
//! token allows, at most `sessions_max`), each checked with a probe signature at open.

use super::*;

/// The vendor key in a PKCS#11 token. Signs through a fixed pool of sessions.
pub struct Pkcs11Signer {
    token: TokenKey,
    key: ObjectHandle,
    public: [u8; 32],
    key_id: KeyId,
    sessions: Mutex<Vec<Session>>,
    sessions_count: usize,
    freed: Condvar,
}

impl fmt::Debug for Pkcs11Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11Signer")
            .field("module", &self.token.module)
            .field("token", &self.token.token)
            .field("key", &self.token.key)
            .field("key_id", &self.key_id)
            .field("sessions", &self.sessions_count)
            .finish_non_exhaustive()
    }
}

impl Pkcs11Signer {
    /// Opens the key `config` names and checks it (see the module documentation).
    pub fn open(config: &Pkcs11Config) -> Result<Pkcs11Signer, TokenError> {
        config.validate()?;
        let pinned = identity::parse_fingerprint(&config.fingerprint)
            .map_err(|e| TokenError::Config(format!("[pkcs11] fingerprint: {e}")))?;
        let token = TokenKey::of(config)?;
        let (m, slot, first) = token.open(false)?;
        let key = find_one(&first, ObjectClass::PRIVATE_KEY, &token.token, &token.key)?
            .ok_or_else(|| {
                token.key_err(
                    "the token holds no Ed25519 private key with this label (create it with `frank vendor init --pkcs11` or `frank vendor key import`)".into(),
                )
            })?;
        let public_h = find_one(&first, ObjectClass::PUBLIC_KEY, &token.token, &token.key)?
            .ok_or_else(|| {
                token.key_err(
                    "the token holds no Ed25519 public key with this label beside its private key"
                        .into(),
                )
            })?;
        let public = read_public(&first, public_h, &token.token, &token.key)?;
        let probe = sign_with(&first, key, PROBE_MESSAGE)
            .map_err(|detail| token.key_err(format!("signing with it: {detail}")))?;
        let belongs = VerifyingKey::from_bytes(&public).ok().is_some_and(|k| {
            k.verify(PROBE_MESSAGE, &Signature::from_bytes(&probe))
                .is_ok()
        });
        if !belongs {
            return Err(token.key_err(
                "its private key's signature does not verify with its public key; the two objects with this label do not belong together".into(),
            ));
        }
        if public != pinned.to_bytes() {
            return Err(TokenError::Mismatch {
                token: token.token.clone(),
                key: token.key.clone(),
                found: hex::encode(public),
                pinned: identity::fingerprint(&pinned),
            });
        }
        let key = session_copy(&first, key, &token.key, &probe).unwrap_or(key);
        let info = m.get_token_info(slot).map_err(|e| TokenError::Device {
            token: token.token.clone(),
            detail: format!("reading its limits: {}", rv_text(&e)),
        })?;
        let wanted = config.sessions_max.unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        });
        let count = sessions_for(wanted, info.max_session_count(), info.session_count());
        let mut sessions = vec![first];
        while sessions.len() < count {
            match token.session(&m, slot, false) {
                Ok(s) => sessions.push(s),
                // A token that allows fewer sessions than it said: sign with what opened.
                Err(e) => {
                    tracing::warn!(error = %e, opened = sessions.len(), "PKCS#11: fewer signing sessions than wanted");
                    break;
                }
            }
        }
        let sessions_count = sessions.len();
        tracing::info!(
            token = %token.token,
            key = %token.key,
            sessions = sessions_count,
            "vendor key in a PKCS#11 token"
        );
        Ok(Pkcs11Signer {
            key,
            public,
            key_id: KeyId::of_public_key(&public),
            sessions: Mutex::new(sessions),
            sessions_count,
            freed: Condvar::new(),
            token,
        })
    }

    /// Sessions this signer signs on (signatures in flight at once).
    pub fn sessions(&self) -> usize {
        self.sessions_count
    }

    pub fn fingerprint(&self) -> String {
        hex::encode(self.public)
    }
}

/// How many sessions to open: what was wanted, within [`SESSIONS_MAX_LIMIT`] and what the
/// token has left (it counts sessions of every application on it).
pub(super) fn sessions_for(wanted: usize, max: Limit, open_now: Option<u64>) -> usize {
    let wanted = wanted.clamp(1, SESSIONS_MAX_LIMIT);
    match max {
        Limit::Max(max) => {
            let left = max.saturating_sub(open_now.unwrap_or(0));
            wanted
                .min(usize::try_from(left).unwrap_or(usize::MAX))
                .max(1)
        }
        Limit::Unavailable | Limit::Infinite => wanted,
    }
}

/// A session copy of the token key (`C_CopyObject` with `CKA_TOKEN` false) inside the token,
/// if the token makes one that signs like the original (`probe` is the original's signature
/// of [`PROBE_MESSAGE`]; Ed25519 is deterministic). SoftHSM2 checks a token object's file on
/// every use; signing with a session object in its memory measured 3,851 → 4,570 signatures a
/// second on one session here (the rest of its ~220 µs is OpenSSL 3 setting up the key for
/// each signature). The copy keeps `CKA_SENSITIVE` and not `CKA_EXTRACTABLE` (a copy may only
/// tighten them), never leaves the token, and is gone when the signer's sessions close. A
/// token that refuses the copy (`CKA_COPYABLE` false, say) signs with the original.
fn session_copy(
    session: &Session,
    key: ObjectHandle,
    label: &str,
    probe: &[u8; 64],
) -> Option<ObjectHandle> {
    // Labelled apart, so that no search for the key's label finds a copy.
    let label = format!("{label} (session copy)");
    let copy = match session.copy_object(
        key,
        &[
            Attribute::Token(false),
            Attribute::Label(label.into_bytes()),
        ],
    ) {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(error = %rv_text(&e), "PKCS#11: signing with the token object itself");
            return None;
        }
    };
    if sign_with(session, copy, PROBE_MESSAGE).is_ok_and(|s| s == *probe) {
        Some(copy)
    } else {
        let _ = session.destroy_object(copy);
        None
    }
}

fn sign_with(session: &Session, key: ObjectHandle, msg: &[u8]) -> Result<[u8; 64], String> {
    let mechanism = Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure));
    let sig = session
        .sign(&mechanism, key, msg)
        .map_err(|e| rv_text(&e))?;
    <[u8; 64]>::try_from(sig.as_slice())
        .map_err(|_| format!("the token returned a {}-byte signature, not 64", sig.len()))
}

impl Signer for Pkcs11Signer {
    fn key_id(&self) -> KeyId {
        self.key_id
    }

    fn public_key(&self) -> [u8; 32] {
        self.public
    }

    fn sign(&self, msg: &[u8]) -> Result<[u8; 64], SignerError> {
        let session = {
            let mut free = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(s) = free.pop() {
                    break s;
                }
                // Every session comes back after its one signature (below), so this wait
                // ends; callers are the ledger's signing threads and blocking tasks.
                free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
            }
        };
        let result = sign_with(&session, self.key, msg);
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(session);
        self.freed.notify_one();
        result.map_err(|detail| {
            SignerError::Device(format!(
                "PKCS#11 token {:?}, key {:?}: {detail}",
                self.token.token, self.token.key
            ))
        })
    }

    fn parallel_signatures_max(&self) -> Option<usize> {
        Some(self.sessions_count)
    }
}
