//! The receiving side of sync: verifying every entry the hub sends (without trusting the hub)
//! and the saved cursor that makes a resumed sync exact.

use crate::membership::{KeyId, Keyring};
use crate::pb;
use crate::statement::{
    Body, ParsedEnvelope, SignatureError, Statement, StatementError, StatementId,
};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::Path;
use thiserror::Error;

/// A verified entry: the statement, where the hub placed it, and when it received it.
#[derive(Clone, Debug)]
pub struct ReceivedEntry {
    /// Position in the hub's log.
    pub seq: u64,
    /// When the hub accepted it.
    pub received_at_ms: i64,
    /// Its statement id, recomputed locally.
    pub id: StatementId,
    /// The statement.
    pub statement: Statement,
    /// Signer keys declared compromised by the time the hub received it (as the hub flagged
    /// them, and as the member directory says).
    pub compromised_keys: Vec<String>,
}

/// Why a received entry was rejected. Any of these means the hub (or the path to it) sent
/// something that is not a faithfully stored, properly signed statement.
#[derive(Debug, Error)]
pub enum EntryError {
    /// No envelope.
    #[error("entry {seq}: no envelope")]
    MissingEnvelope {
        /// The entry.
        seq: u64,
    },
    /// The claimed statement id is not the hash of the envelope.
    #[error("entry {seq}: the hub says statement {claimed} but the envelope hashes to {actual}")]
    IdMismatch {
        /// The entry.
        seq: u64,
        /// What the hub said.
        claimed: String,
        /// What the bytes hash to.
        actual: StatementId,
    },
    /// The payload is not a valid statement.
    #[error("entry {seq}: {source}")]
    Statement {
        /// The entry.
        seq: u64,
        /// Why.
        source: StatementError,
    },
    /// A signature does not verify against the issuer's keys.
    #[error("entry {seq}: {source}")]
    Signature {
        /// The entry.
        seq: u64,
        /// Why.
        source: SignatureError,
    },
    /// Entries arrived out of order or with a gap below the cursor.
    #[error(
        "entry {got} arrived where entry >= {expected} was expected: the stream is not in log order"
    )]
    OutOfOrder {
        /// The lowest acceptable seq.
        expected: u64,
        /// What came.
        got: u64,
    },
}

/// Verifies one synced entry against the keyring: the id is recomputed from the bytes, the
/// payload parsed, and every signature checked with the issuer's keys.
pub fn verify_entry(entry: pb::SyncEntry, keyring: &Keyring) -> Result<ReceivedEntry, EntryError> {
    let seq = entry.seq;
    let envelope = entry.envelope.ok_or(EntryError::MissingEnvelope { seq })?;
    let parsed =
        ParsedEnvelope::parse(envelope).map_err(|source| EntryError::Statement { seq, source })?;
    if parsed.id.0.as_slice() != entry.statement_id.as_slice() {
        return Err(EntryError::IdMismatch {
            seq,
            claimed: hex::encode(&entry.statement_id),
            actual: parsed.id,
        });
    }
    let issuer = parsed.statement.issuer.clone();
    let verified = match &parsed.statement.body {
        // Membership changes are co-signed by several admins; the genesis by its own keys.
        Body::Membership(_) => parsed.verify(|key_id| keyring.any_key(key_id)),
        Body::Genesis(g) => {
            let mut keys = vec![g.hub_key];
            keys.extend(g.admins.iter().flat_map(|a| a.keys.iter().copied()));
            parsed.verify(|key_id| keys.iter().copied().find(|k| &KeyId::of(k) == key_id))
        }
        _ => parsed.verify(|key_id| keyring.key(&issuer, key_id)),
    }
    .map_err(|source| EntryError::Signature { seq, source })?;
    let mut compromised_keys = entry.compromised_key_ids;
    for key_id in &verified.key_ids {
        let owner = keyring.owner(key_id).unwrap_or(&issuer);
        if keyring.compromised_at(owner, key_id, entry.received_at_ms)
            && !compromised_keys.contains(&key_id.to_string())
        {
            compromised_keys.push(key_id.to_string());
        }
    }
    Ok(ReceivedEntry {
        seq,
        received_at_ms: entry.received_at_ms,
        id: verified.id,
        statement: verified.statement,
        compromised_keys,
    })
}

/// Where a sync stands: the next sequence number to ask for, and how long the output file was
/// when everything before it had been written. Saved after the output is flushed, so a resumed
/// sync truncates any partial tail and continues with no gap and no duplicate.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// First sequence number not yet processed.
    pub next_seq: u64,
    /// Output file length matching `next_seq`.
    pub output_bytes: u64,
    /// The member's view of the hub's log (pinned genesis, last verified checkpoint).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<LogView>,
}

/// Cursor file failures.
#[derive(Debug, Error)]
pub enum CursorError {
    /// Reading or writing failed.
    #[error("cursor file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a cursor.
    #[error(
        "cursor file {path} is not valid JSON of the form {{\"next_seq\":N,\"output_bytes\":N}}: {reason}"
    )]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
}

impl Cursor {
    /// Loads a cursor; `None` if the file does not exist.
    pub fn load(path: &Path) -> Result<Option<Cursor>, CursorError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                serde_json::from_slice(&bytes)
                    .map(Some)
                    .map_err(|e| CursorError::Invalid {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CursorError::Io {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Saves atomically: write a temporary file, fsync, rename over the old one.
    pub fn save(&self, path: &Path) -> Result<(), CursorError> {
        let io = |source| CursorError::Io {
            path: path.display().to_string(),
            source,
        };
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io)?;
        let json = serde_json::to_vec(self).map_err(|e| io(std::io::Error::other(e)))?;
        file.write_all(&json).map_err(io)?;
        file.sync_all().map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)?;
        Ok(())
    }
}

/// What a sync session yields.
#[derive(Debug)]
pub enum Event {
    /// A verified entry.
    Entry(Box<ReceivedEntry>),
    /// Every entry below `next_seq` has been examined; resuming from it is exact.
    Progress {
        /// The cursor to save.
        next_seq: u64,
        /// The hub's log size when it said so.
        log_size: u64,
    },
}

/// Sync session failures.
#[derive(Debug, Error)]
pub enum SyncError {
    /// The hub or the connection failed.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// An entry failed local verification.
    #[error("verification failed: {0}")]
    Entry(#[from] EntryError),
}

/// A running sync: receives on a background task (so decoding overlaps verification) and
/// verifies each entry locally, refreshing the member directory once when an entry names a key
/// it has not seen (a member admitted after the session started).
pub struct Session {
    client: crate::client::Client,
    keyring: Keyring,
    rx: tokio::sync::mpsc::Receiver<Result<pb::SyncResponse, tonic::Status>>,
    next_seq: u64,
}

impl Session {
    /// Starts syncing with `request` (its `from_seq` is the cursor).
    pub async fn start(
        mut client: crate::client::Client,
        request: pb::SyncRequest,
    ) -> Result<Session, SyncError> {
        let keyring = client.keyring().await?;
        let next_seq = request.from_seq;
        let mut stream = client
            .hub
            .sync(request)
            .await
            .map_err(crate::client::ClientError::from)?
            .into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        tokio::spawn(async move {
            loop {
                let item = stream.message().await;
                let done = !matches!(item, Ok(Some(_)));
                let forwarded = match item {
                    Ok(Some(msg)) => tx.send(Ok(msg)).await,
                    Ok(None) => break,
                    Err(status) => tx.send(Err(status)).await,
                };
                if done || forwarded.is_err() {
                    break;
                }
            }
        });
        Ok(Session {
            client,
            keyring,
            rx,
            next_seq,
        })
    }

    /// The next event; `None` when the hub ends the stream.
    pub async fn next(&mut self) -> Result<Option<Event>, SyncError> {
        let Some(item) = self.rx.recv().await else {
            return Ok(None);
        };
        let msg = item.map_err(crate::client::ClientError::from)?;
        match msg.item {
            Some(pb::sync_response::Item::Entry(entry)) => {
                if entry.seq < self.next_seq {
                    return Err(EntryError::OutOfOrder {
                        expected: self.next_seq,
                        got: entry.seq,
                    }
                    .into());
                }
                // A key (or member) admitted after the directory was fetched: refresh the
                // directory once and verify again.
                let received = match verify_entry(entry.clone(), &self.keyring) {
                    Err(EntryError::Signature {
                        source: SignatureError::UnknownKey { .. },
                        ..
                    }) => {
                        self.keyring = self.client.keyring().await?;
                        verify_entry(entry, &self.keyring)?
                    }
                    other => other?,
                };
                self.next_seq = received.seq + 1;
                Ok(Some(Event::Entry(Box::new(received))))
            }
            Some(pb::sync_response::Item::Progress(p)) => {
                self.next_seq = self.next_seq.max(p.next_seq);
                Ok(Some(Event::Progress {
                    next_seq: self.next_seq,
                    log_size: p.log_size,
                }))
            }
            None => Ok(Some(Event::Progress {
                next_seq: self.next_seq,
                log_size: self.next_seq,
            })),
        }
    }

    /// The cursor: first sequence number not yet processed.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

/// What a member remembers about the hub's log between syncs, saved with its cursor, so that
/// it notices on its own if the hub rewrites history: the genesis and checkpoint key it pinned
/// at its first sync, the last signed checkpoint it verified, and (for unfiltered syncs) the
/// Merkle frontier of every entry received so far.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogView {
    /// The genesis statement id (hex), pinned at the first sync.
    pub genesis: String,
    /// The hub's checkpoint key (`name+id+base64`), from the genesis.
    pub checkpoint_key: String,
    /// The last verified signed checkpoint note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<String>,
    /// The Merkle frontier after every entry below `frontier_size` (hex hashes), when every
    /// entry was received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier_size: Option<u64>,
    /// The frontier's edge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frontier: Vec<String>,
}

/// The hub showed this member a history that does not extend what it saw before, or proofs
/// that do not verify.
#[derive(Debug, Error)]
pub enum LogCheckError {
    /// Talking to the hub failed.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// A check failed: the hub's log is not what it showed before.
    #[error("log check FAILED: {0}")]
    Failed(String),
}

/// What a log check established.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogCheckReport {
    /// The size of the signed checkpoint everything was checked against.
    pub checkpoint_size: u64,
    /// Entries whose inclusion was proven.
    pub entries_proven: u64,
    /// The size of the previous checkpoint it is consistent with, if there was one.
    pub consistent_with: Option<u64>,
}

/// Accumulates what a sync receives and then proves it against the hub's signed checkpoint:
/// inclusion of every received entry (one consistency proof for an unfiltered sync, using the
/// saved frontier; one inclusion proof per entry for a filtered one) and consistency with the
/// checkpoint saved last time.
pub struct LogCheck {
    view: Option<LogView>,
    frontier: Option<crate::log::Frontier>,
    received: Vec<(u64, [u8; 40])>,
    proven: u64,
}

fn hex_hash(text: &str) -> Option<crate::log::Hash> {
    crate::log::Hash::from_hex(text).ok()
}

impl LogCheck {
    /// Starts from the saved view; `contiguous`: the sync receives every entry from `start`
    /// (no filter), so the frontier can be carried on.
    pub fn new(view: Option<LogView>, start: u64, contiguous: bool) -> Self {
        let saved = |v: &LogView| {
            let size = v.frontier_size.filter(|size| *size == start)?;
            let edge = v
                .frontier
                .iter()
                .map(|h| hex_hash(h))
                .collect::<Option<Vec<_>>>()?;
            crate::log::Frontier::from_edge(crate::log::TreeSize(size), edge)
        };
        let frontier = match &view {
            _ if !contiguous => None,
            _ if start == 0 => Some(crate::log::Frontier::new()),
            Some(v) => saved(v),
            None => None,
        };
        LogCheck {
            view,
            frontier,
            received: Vec::new(),
            proven: 0,
        }
    }

    /// Records a verified entry.
    pub fn received(&mut self, entry: &ReceivedEntry) {
        let data = crate::store::leaf_data(&entry.id, entry.received_at_ms);
        match &mut self.frontier {
            Some(f) if f.size().0 == entry.seq => f.append(crate::log::leaf_hash(&data)),
            Some(_) => {
                // Not contiguous after all: fall back to per-entry proofs.
                self.frontier = None;
                self.received.push((entry.seq, data));
            }
            None => self.received.push((entry.seq, data)),
        }
    }

    /// The view to save with the cursor.
    pub fn view(&self) -> Option<&LogView> {
        self.view.as_ref()
    }

    /// Checks everything received so far against a fresh signed checkpoint (published on
    /// demand) and the previous one; on success the view moves on to it.
    pub async fn verify(
        &mut self,
        client: &mut crate::client::Client,
    ) -> Result<LogCheckReport, LogCheckError> {
        use crate::log::{SignedCheckpoint, VerifierKey};
        let fail = |m: String| LogCheckError::Failed(m);
        let mut view = match self.view.clone() {
            Some(v) => v,
            None => pin_genesis(client).await?,
        };
        let key = VerifierKey::parse(&view.checkpoint_key)
            .map_err(|e| fail(format!("saved checkpoint key: {e}")))?;
        let latest = client.checkpoint(&key, true).await?;
        let mut consistent_with = None;
        if let Some(note) = &view.checkpoint {
            let old = SignedCheckpoint::verify(note, &key)
                .map_err(|e| fail(format!("saved checkpoint: {e}")))?;
            if latest.size() < old.size() {
                return Err(fail(format!(
                    "the hub's latest checkpoint has {} entries, fewer than the {} of the checkpoint it signed before: history was rewritten",
                    latest.size(),
                    old.size()
                )));
            }
            client
                .verify_consistency(&key, &old, &latest)
                .await
                .map_err(|e| {
                    fail(format!(
                        "the checkpoint of {} entries does not extend the one of {} seen before: {e}",
                        latest.size(),
                        old.size()
                    ))
                })?;
            consistent_with = Some(old.size().0);
        }
        let n = latest.size();
        // Contiguous entries: the frontier's root must be a prefix of the signed tree.
        if let Some(f) = &self.frontier {
            let size = f.size();
            if size > n {
                return Err(fail(format!(
                    "received {size} entries but the hub's signed checkpoint covers only {n}"
                )));
            }
            if size.0 > 0 {
                let proof = client
                    .audit
                    .get_consistency_proof(crate::pb::GetConsistencyProofRequest {
                        old_size: size.0,
                        new_size: n.0,
                    })
                    .await
                    .map_err(crate::client::ClientError::from)?
                    .into_inner();
                let path = crate::client::hashes(&proof.proof)?;
                crate::log::verify_consistency(size, n, &f.root(), &latest.root(), &path)
                    .map_err(|e| {
                        fail(format!(
                            "the {size} entries received are not the first {size} entries of the signed checkpoint of {n}: {e}"
                        ))
                    })?;
            }
            self.proven = size.0;
            view.frontier_size = Some(size.0);
            view.frontier = f.edge().iter().map(|h| h.to_hex()).collect();
        } else {
            view.frontier_size = None;
            view.frontier.clear();
        }
        // Entries of a filtered sync: one inclusion proof each.
        for (seq, data) in std::mem::take(&mut self.received) {
            let proof = client
                .audit
                .get_inclusion_proof(crate::pb::GetInclusionProofRequest {
                    leaf: Some(crate::pb::get_inclusion_proof_request::Leaf::LeafIndex(seq)),
                    tree_size: n.0,
                })
                .await
                .map_err(crate::client::ClientError::from)?
                .into_inner();
            let path = crate::client::hashes(&proof.audit_path)?;
            crate::log::verify_inclusion(
                &crate::log::leaf_hash(&data),
                crate::log::LeafIndex(seq),
                n,
                &path,
                &latest.root(),
            )
            .map_err(|e| {
                fail(format!(
                    "entry {seq} is not in the signed checkpoint of {n}: {e}"
                ))
            })?;
            self.proven += 1;
        }
        view.checkpoint = Some(latest.note().to_owned());
        self.view = Some(view);
        Ok(LogCheckReport {
            checkpoint_size: n.0,
            entries_proven: self.proven,
            consistent_with,
        })
    }
}

/// Reads and verifies the genesis (entry 0): the hub's name and checkpoint key come from it.
async fn pin_genesis(client: &mut crate::client::Client) -> Result<LogView, LogCheckError> {
    let fail = |m: String| LogCheckError::Failed(m);
    let mut stream = client
        .hub
        .sync(pb::SyncRequest {
            from_seq: 0,
            kinds: vec![pb::StatementKind::Genesis as i32],
            ..Default::default()
        })
        .await
        .map_err(crate::client::ClientError::from)?
        .into_inner();
    let entry = loop {
        match stream
            .message()
            .await
            .map_err(crate::client::ClientError::from)?
        {
            Some(pb::SyncResponse {
                item: Some(pb::sync_response::Item::Entry(e)),
            }) => break e,
            Some(_) => continue,
            None => return Err(fail("the hub's log has no genesis".into())),
        }
    };
    if entry.seq != 0 {
        return Err(fail(format!(
            "the genesis is entry {}, not entry 0",
            entry.seq
        )));
    }
    let received =
        verify_entry(entry, &Keyring::default()).map_err(|e| fail(format!("genesis: {e}")))?;
    let Body::Genesis(g) = &received.statement.body else {
        return Err(fail("entry 0 is not a genesis".into()));
    };
    let key = crate::log::VerifierKey::new(&g.hub_name, g.hub_key)
        .map_err(|e| fail(format!("genesis hub name: {e}")))?;
    Ok(LogView {
        genesis: received.id.to_string(),
        checkpoint_key: key.to_string(),
        ..Default::default()
    })
}
