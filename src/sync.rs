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
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// First sequence number not yet processed.
    pub next_seq: u64,
    /// Output file length matching `next_seq`.
    pub output_bytes: u64,
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

/// The first field of a `Statement`, decoded without the body (unknown fields are skipped).
#[derive(Clone, PartialEq, prost::Message)]
struct StatementHeader {
    #[prost(string, tag = "1")]
    issuer: String,
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
                // A statement by a member admitted after the directory was fetched: refresh
                // the directory once before verifying.
                if let Some(env) = &entry.envelope
                    && !self.keyring_knows_signers(env)
                {
                    self.keyring = self.client.keyring().await?;
                }
                let received = verify_entry(entry, &self.keyring)?;
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

    /// Whether every signature of the envelope names a key the keyring holds for the issuer.
    /// (Cheap: decodes only the statement header fields needed; a malformed payload answers
    /// `true` so that verification reports the real error.)
    fn keyring_knows_signers(&self, envelope: &pb::Envelope) -> bool {
        let Ok(header) = <StatementHeader as prost::Message>::decode(envelope.payload.as_ref())
        else {
            return true;
        };
        let Ok(issuer) = crate::membership::MemberId::parse(&header.issuer) else {
            return true;
        };
        envelope.signatures.iter().all(|sig| {
            crate::membership::KeyId::parse(&sig.key_id)
                .is_ok_and(|k| self.keyring.key(&issuer, &k).is_some())
        })
    }

    /// The cursor: first sequence number not yet processed.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}
