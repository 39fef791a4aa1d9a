//! A member's sync: its own [`Replica`] of the hub's log, fed from the hub's `Sync` stream and
//! proven batch by batch in a signed checkpoint before anything is written, then saved with the
//! output so that a resumed run continues exactly.
//!
//! Nothing the hub *says* is believed: membership and keys come from the genesis and the
//! membership statements replayed here (never from `ListMembers`), compromise flags are
//! computed here, every sequence number is accounted for (entries outside the member's filter
//! arrive as signed headers, which the replica checks against the filter), and a batch reaches
//! the caller only once a signed checkpoint that extends the last one accepted proves it.
//!
//! Local state, beside the output: the cursor file (JSON: output length, events length,
//! filter, replica [`Snapshot`]) and the ids file (one 49-byte record per log entry: statement
//! id, receipt time, signing key id, whether a row was written), saved after the output is
//! flushed.
//!
//! Lifecycle: the replica's registry holds every retraction and opinion replayed; each proven
//! batch says which entries this member holds changed state ([`StateChange`]), computed from
//! the ids file (no per-entry memory beyond the ids the replica already needs). Opinion-based
//! states (disputed, quarantined) are compared before and after the batch for the statements
//! its opinions name (all statements opinions name, when the batch changes settings or
//! membership: who counts and the threshold).

use crate::client::{Client, ClientError};
use crate::lifecycle::{EntryState, Lifecycle, OpinionRecord, Record, Target};
use crate::log::Hash;
use crate::membership::{KeyId, MemberId};
use crate::pb;
use crate::replica::{
    Accepted, CheckpointClaim, Content, Entry, Notice, Replica, ReplicaError, SeenIds, SeenMap,
    Snapshot,
};
use crate::statement::{Body, HashType, Kind, Label, Statement, StatementId, SyncFilter};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

/// Most entries fed to the replica and proven at once.
pub const MAX_BATCH_ENTRIES: usize = 4096;
/// Most envelope bytes held in one unproven batch.
pub const MAX_BATCH_BYTES: usize = 64 * 1024 * 1024;
/// While following, a batch is proven once no entry arrived for this long.
const FOLLOW_IDLE: Duration = Duration::from_millis(200);
/// How often a checkpoint that does not yet cover the batch is asked for again.
const CHECKPOINT_RETRIES: u32 = 10;
const CHECKPOINT_RETRY_DELAY: Duration = Duration::from_millis(200);
/// Messages buffered between the stream reader and the replica.
const STREAM_BUFFER: usize = 8;
/// Size of one ids-file record.
const RECORD: usize = 49;
/// The cursor file format written by this version.
const CURSOR_FORMAT: u32 = 2;

/// A verified entry as the output writers see it.
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
    /// The signing key, when the membership replayed here says it was compromised by the
    /// time the hub received the statement.
    pub compromised_keys: Vec<String>,
}

/// The filter a cursor was made with, as written on the command line.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilterSpec {
    /// `--kind` values.
    #[serde(default)]
    pub kinds: Vec<String>,
    /// `--hash-type` values.
    #[serde(default)]
    pub hash_types: Vec<String>,
    /// `--label` values.
    #[serde(default)]
    pub labels: Vec<String>,
    /// `--issuer` values.
    #[serde(default)]
    pub issuers: Vec<String>,
}

impl FilterSpec {
    /// Parses the filter; errors name the bad value.
    pub fn parse(&self) -> Result<SyncFilter, String> {
        let kinds = self
            .kinds
            .iter()
            .map(|k| match Kind::parse(k) {
                Some(kind @ (Kind::HashSet | Kind::RiskSignal)) => Ok(kind),
                _ => Err(format!("unknown --kind '{k}' (hash_set, risk_signal)")),
            })
            .collect::<Result<_, _>>()?;
        let hash_types = self
            .hash_types
            .iter()
            .map(|t| t.parse::<HashType>())
            .collect::<Result<_, _>>()?;
        let labels = self
            .labels
            .iter()
            .map(|l| Label::parse(l))
            .collect::<Result<_, _>>()?;
        let issuers = self
            .issuers
            .iter()
            .map(|i| MemberId::parse(i).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?;
        Ok(SyncFilter::new(kinds, hash_types, labels, issuers))
    }

    /// The wire request from `from_seq`.
    pub fn request(&self, filter: &SyncFilter, from_seq: u64, follow: bool) -> pb::SyncRequest {
        pb::SyncRequest {
            from_seq,
            kinds: filter.kinds.iter().map(|k| k.to_wire() as i32).collect(),
            hash_types: filter
                .hash_types
                .iter()
                .map(|t| t.to_wire() as i32)
                .collect(),
            labels: filter.labels.iter().map(ToString::to_string).collect(),
            issuers: filter.issuers.iter().map(ToString::to_string).collect(),
            follow,
        }
    }
}

/// The cursor file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cursor {
    /// The cursor format (2 for this version).
    pub format: u32,
    /// Output file length when the state was saved.
    pub output_bytes: u64,
    /// Records in the ids file (one per entry replayed).
    pub ids_records: u64,
    /// The filter the output was made with.
    pub filter: FilterSpec,
    /// Events file length when the state was saved (0 in cursors written before events).
    #[serde(default)]
    pub events_bytes: u64,
    /// The latest checkpoint this member found witnessed under the coalition's policy
    /// (absent: none yet, or no policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub witnessed: Option<WitnessedAt>,
    /// The replica.
    pub replica: Snapshot,
}

/// A checkpoint found witnessed: its size and its earliest cosignature's time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessedAt {
    /// The checkpoint's tree size.
    pub size: u64,
    /// The earliest timestamp among the cosignatures that met the policy (POSIX seconds).
    pub at_s: u64,
}

/// What a witness check of the replica's latest checkpoint found.
#[derive(Clone, Debug)]
pub struct WitnessReport {
    /// The checkpoint checked.
    pub size: u64,
    /// The policy, described.
    pub policy: String,
    /// What its cosignatures establish.
    pub witnessed: crate::witness::policy::Witnessed,
    /// The latest checkpoint found witnessed before or now.
    pub last: Option<WitnessedAt>,
}

impl WitnessReport {
    /// One line for people.
    pub fn line(&self) -> String {
        let forged = if self.witnessed.forged.is_empty() {
            String::new()
        } else {
            format!(
                "; the hub serves cosignature lines naming {} that do not verify with their keys in the policy (forged)",
                self.witnessed
                    .forged
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        // A hub that freezes the view it shows this member shows it old cosignatures.
        let newest = match self.witnessed.newest() {
            Some(at_s) => format!("; newest cosignature {}", format_s(at_s)),
            None => String::new(),
        };
        if self.witnessed.met {
            return format!(
                "witnessed: checkpoint {} cosigned by {} ({}){newest}{forged}",
                self.size,
                self.witnessed.names(),
                self.policy
            );
        }
        let since = match self.last {
            Some(w) => format!(
                "not witnessed since {} (checkpoint {})",
                format_s(w.at_s),
                w.size
            ),
            None => "not witnessed (no checkpoint this sync state proved ever was)".into(),
        };
        format!(
            "{since}: checkpoint {} is cosigned by {}, and the coalition's policy needs {}{newest}{forged}",
            self.size,
            self.witnessed.names(),
            self.policy
        )
    }
}

/// A cosignature timestamp (POSIX seconds, up to 2^63 − 1) as RFC 3339.
fn format_s(at_s: u64) -> String {
    crate::membership::format_ms(i64::try_from(at_s).unwrap_or(i64::MAX).saturating_mul(1000))
}

/// Why a sync stopped.
#[derive(Debug, Error)]
pub enum SyncError {
    /// The hub or the connection failed.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// The replica refused an entry or a checkpoint: the hub's log is not a valid,
    /// consistent log of this coalition. Nothing of the refused batch was written.
    #[error("verification FAILED at {0}")]
    Refused(ReplicaError),
    /// The server has fewer entries than this member already verified (a lagging mirror, a
    /// hub restored from a backup): not a fork by itself. Retry later or use another server.
    #[error("{0}; nothing was written: retry later or sync from another server")]
    Behind(String),
    /// `--require-witnessed`: the checkpoint proving a batch is not witnessed under the
    /// coalition's policy; nothing of the batch was written.
    #[error("{0}; nothing of this batch was written (--require-witnessed)")]
    NotWitnessed(String),
    /// The hub answered `UNAVAILABLE`: it is shutting down (it ends every open stream so), or
    /// cannot serve now. Every batch proven before is saved with its cursor; nothing unproven
    /// was written. Run the same sync again, here later or at another server.
    #[error(
        "{reason}; the {saved} entries proven so far are saved with the cursor: run the same command again to resume (here once the hub is back, or at another server)"
    )]
    Unavailable {
        /// What happened, in a person's words ("the hub is shutting down", or the hub's own
        /// message).
        reason: String,
        /// Entries the saved cursor holds.
        saved: u64,
    },
    /// The local state cannot be used.
    #[error("{0}")]
    State(String),
}

impl From<ReplicaError> for SyncError {
    fn from(e: ReplicaError) -> Self {
        if e.is_behind() {
            SyncError::Behind(e.fault.to_string())
        } else {
            SyncError::Refused(e)
        }
    }
}

/// A batch the hub proved: every entry is in a signed checkpoint extending the last one
/// accepted.
#[derive(Debug)]
pub struct Proven {
    /// The entries, in log order.
    pub entries: Vec<Accepted>,
    /// The checkpoint that proves them.
    pub checkpoint_size: u64,
    /// Entries written in earlier batches that a compromise revocation in this batch makes
    /// suspect: (key, since, seqs).
    pub suspects: Vec<Suspect>,
    /// Entries this member holds whose state the lifecycle statements of this batch changed
    /// (a retraction that applies; a compromise revocation voiding one), in log order.
    pub changes: Vec<StateChange>,
    /// Retractions in this batch with no effect on anything this member holds (a target it
    /// never had, outside its filter, or not entitled).
    pub ignored_retractions: u64,
}

/// An entry (or a whole statement) this member holds changed state.
#[derive(Clone, Debug, PartialEq)]
pub struct StateChange {
    /// The statement's log position.
    pub seq: u64,
    /// The statement.
    pub statement_id: StatementId,
    /// Who shared it.
    pub issuer: MemberId,
    /// The entries concerned; `None`: every entry of the statement.
    pub entries: Option<Vec<u32>>,
    /// Its state before.
    pub from: EntryState,
    /// Its state now.
    pub to: EntryState,
    /// Rows of it were written to the output.
    pub written: bool,
    /// The lifecycle statement that decided it.
    pub cause: Cause,
}

/// The lifecycle statement behind a state change.
#[derive(Clone, Debug, PartialEq)]
pub enum Cause {
    /// A retraction (or the compromise revocation that voided it).
    Retraction(Arc<Record>),
    /// An opinion, an admin-quorum quarantine or release (or what voided one).
    Opinion(Arc<OpinionRecord>),
    /// A settings or membership change (threshold, who counts) in the batch.
    Governance {
        /// The change's statement id.
        id: StatementId,
        /// Where it was logged.
        seq: u64,
        /// Its issuer.
        issuer: MemberId,
    },
}

impl Cause {
    /// Where the deciding statement was logged.
    pub fn seq(&self) -> u64 {
        match self {
            Cause::Retraction(r) => r.position.seq,
            Cause::Opinion(o) => o.position.seq,
            Cause::Governance { seq, .. } => *seq,
        }
    }
}

/// A statement this member's log holds, as the ids file (or the batch) knows it.
struct Held {
    seq: u64,
    issuer: MemberId,
    kind: Kind,
    written: bool,
}

/// Rows already written whose signing key is now known to have been compromised then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspect {
    /// The member whose key leaked.
    pub member: MemberId,
    /// The key.
    pub key_id: KeyId,
    /// Compromised since (ms since the Unix epoch).
    pub since_ms: i64,
    /// Sequence numbers of the entries already written that it signed from then on.
    pub seqs: Vec<u64>,
}

/// The signing key recorded for log entry `seq` in a member's ids file (`None`: no such
/// record, or unreadable).
pub fn recorded_signing_key(ids: &File, seq: u64) -> Option<KeyId> {
    use std::os::unix::fs::FileExt;
    let mut record = [0u8; RECORD];
    ids.read_exact_at(&mut record, seq.checked_mul(RECORD as u64)?)
        .ok()?;
    KeyId::parse(&hex::encode(&record[40..48])).ok()
}

/// A running sync.
pub struct Syncer {
    client: Client,
    replica: Replica,
    seen: SeenMap,
    filter: SyncFilter,
    spec: FilterSpec,
    cursor_path: PathBuf,
    ids: File,
    ids_records: u64,
    stream: tokio::sync::mpsc::Receiver<Result<pb::SyncResponse, tonic::Status>>,
    ended: bool,
    /// The hub said it had sent every entry so far (a `SyncProgress` matching what came).
    caught_up: bool,
    follow: bool,
    /// No genesis was given: the first one received is trusted on first use.
    trust_on_first_use: bool,
    pinned_now: Option<StatementId>,
    /// Entries of the last proven batch, waiting for [`Syncer::commit`].
    uncommitted: Vec<(StatementId, i64, Option<KeyId>)>,
    /// The events file length saved with the cursor.
    events_bytes: u64,
    /// The latest checkpoint found witnessed.
    witnessed: Option<WitnessedAt>,
    require_witnessed: bool,
    /// The output length the cursor last saved covers.
    output_bytes: u64,
}

/// How to start a sync.
#[derive(Clone, Debug)]
pub struct SyncOptions {
    /// The filter, as given.
    pub filter: FilterSpec,
    /// Keep the stream open.
    pub follow: bool,
    /// The genesis to trust (otherwise trust on first use).
    pub genesis: Option<StatementId>,
    /// The cursor file.
    pub cursor: PathBuf,
    /// The ids file.
    pub ids: PathBuf,
    /// Refuse any batch whose proving checkpoint is not witnessed under the coalition's
    /// witness policy (waiting up to [`WITNESS_WAIT`] for its cosignatures).
    pub require_witnessed: bool,
}

/// How long a witness check waits for the hub to collect a checkpoint's cosignatures.
pub const WITNESS_WAIT: Duration = Duration::from_secs(5);

fn state_err(path: &Path, e: impl std::fmt::Display) -> SyncError {
    SyncError::State(format!("{}: {e}", path.display()))
}

impl Cursor {
    /// Loads a cursor; `None` if the file does not exist.
    pub fn load(path: &Path) -> Result<Option<Cursor>, SyncError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let cursor: Cursor = serde_json::from_slice(&bytes).map_err(|e| {
                    state_err(
                        path,
                        format!(
                            "not a cursor of this version ({e}); delete it and the output to sync from the start"
                        ),
                    )
                })?;
                if cursor.format != CURSOR_FORMAT {
                    return Err(state_err(
                        path,
                        format!(
                            "cursor format {} is not {CURSOR_FORMAT}; delete it and the output to sync from the start",
                            cursor.format
                        ),
                    ));
                }
                Ok(Some(cursor))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(state_err(path, e)),
        }
    }

    /// Saves atomically: a temporary file, fsync, rename over the old one, fsync the folder.
    pub fn save(&self, path: &Path) -> Result<(), SyncError> {
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec(self).map_err(|e| state_err(path, e))?;
        let mut file = File::create(&tmp).map_err(|e| state_err(&tmp, e))?;
        file.write_all(&json).map_err(|e| state_err(&tmp, e))?;
        file.sync_all().map_err(|e| state_err(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| state_err(path, e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
            && let Ok(dir) = File::open(dir)
        {
            let _ = dir.sync_all();
        }
        Ok(())
    }
}

impl Syncer {
    /// Restores the saved state (or starts fresh), truncates the ids file to what the cursor
    /// covers, and opens the hub's stream from the next entry. Returns the syncer and the
    /// output length the cursor covers (truncate the output to it).
    pub async fn open(
        mut client: Client,
        options: SyncOptions,
    ) -> Result<(Syncer, u64), SyncError> {
        let filter = options.filter.parse().map_err(SyncError::State)?;
        let saved = Cursor::load(&options.cursor)?;
        let events_bytes = saved.as_ref().map_or(0, |c| c.events_bytes);
        let witnessed = saved.as_ref().and_then(|c| c.witnessed);
        let (replica, output_bytes, ids_records) = match &saved {
            Some(c) => {
                if c.filter != options.filter {
                    return Err(state_err(
                        &options.cursor,
                        "the output was made with another filter; use another output file, or delete the output and its cursor",
                    ));
                }
                if let Some(g) = options.genesis
                    && g.to_string() != c.replica.genesis
                {
                    return Err(state_err(
                        &options.cursor,
                        format!(
                            "synced from the coalition of genesis {}, not the --genesis {g} given",
                            c.replica.genesis
                        ),
                    ));
                }
                let replica = Replica::restore(&c.replica, filter.clone())
                    .map_err(|e| state_err(&options.cursor, e))?;
                if replica.size() != c.ids_records {
                    return Err(state_err(
                        &options.cursor,
                        "its replica and ids file disagree on the number of entries",
                    ));
                }
                (replica, c.output_bytes, c.ids_records)
            }
            None => {
                let mut replica = Replica::new()
                    .with_filter(filter.clone())
                    .keeping_membership();
                if let Some(g) = options.genesis {
                    replica = replica.pin_genesis(g);
                }
                (replica, 0, 0)
            }
        };
        // Restricted statements (§2.7): the bodies this member must receive are decided by the
        // member its own certificate names, never by what the hub says.
        let replica = replica.reading_as(
            client
                .member
                .clone()
                .map_or(crate::statement::Reader::Everything, |id| {
                    crate::statement::Reader::Member(id)
                }),
        );
        let (ids, seen) = open_ids(&options.ids, ids_records)?;
        let from = replica.size();
        let stream = match client
            .hub
            .sync(options.filter.request(&filter, from, options.follow))
            .await
        {
            Ok(response) => response.into_inner(),
            Err(status) if status.code() == tonic::Code::OutOfRange => {
                return Err(behind_or_fork(&mut client, &replica, status).await);
            }
            Err(status) => return Err(stopped(status, ids_records)),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        tokio::spawn(forward(stream, tx));
        Ok((
            Syncer {
                client,
                replica,
                seen,
                filter,
                spec: options.filter,
                cursor_path: options.cursor,
                ids,
                ids_records,
                stream: rx,
                ended: false,
                caught_up: false,
                follow: options.follow,
                trust_on_first_use: options.genesis.is_none(),
                pinned_now: None,
                uncommitted: Vec::new(),
                events_bytes,
                witnessed,
                require_witnessed: options.require_witnessed,
                output_bytes,
            },
            output_bytes,
        ))
    }

    /// The replica (membership, size, checkpoint).
    pub fn replica(&self) -> &Replica {
        &self.replica
    }

    /// The filter.
    pub fn filter(&self) -> &SyncFilter {
        &self.filter
    }

    /// The genesis this run pinned on first use, if it did.
    pub fn pinned_now(&self) -> Option<StatementId> {
        self.pinned_now
    }

    /// The next proven batch; `None` when the hub ended the stream and everything was proven.
    pub async fn next(&mut self) -> Result<Option<Proven>, SyncError> {
        let expected = self.replica.size();
        let mut batch: Vec<Entry> = Vec::new();
        let mut bytes = 0usize;
        // A progress message claiming entries that did not come: reported once the replica
        // has seen the batch, so that a missing entry is named as such.
        let mut claimed = None;
        while !self.ended && batch.len() < MAX_BATCH_ENTRIES && bytes < MAX_BATCH_BYTES {
            let item = if self.follow && !batch.is_empty() {
                match tokio::time::timeout(FOLLOW_IDLE, self.stream.recv()).await {
                    Ok(item) => item,
                    Err(_) => break,
                }
            } else {
                self.stream.recv().await
            };
            let Some(item) = item else {
                self.ended = true;
                break;
            };
            let msg = item.map_err(|status| stopped(status, self.ids_records))?;
            match msg.item {
                Some(pb::sync_response::Item::Entry(entry)) => {
                    self.caught_up = false;
                    bytes += entry
                        .envelope
                        .as_ref()
                        .map_or(0, |e| e.payload.len() + e.body.len());
                    batch.push(Entry::from_wire(entry));
                }
                Some(pb::sync_response::Item::Progress(p)) => {
                    if p.next_seq != expected + batch.len() as u64 {
                        claimed = Some(p.next_seq);
                        break;
                    }
                    self.caught_up = true;
                    if !batch.is_empty() {
                        break;
                    }
                }
                None => {}
            }
        }
        let sent = expected + batch.len() as u64;
        let progress_lie = |claimed: u64| {
            SyncError::Refused(ReplicaError::new(
                crate::replica::Location::Entry(sent),
                crate::replica::Fault::Usage(format!(
                    "the hub says it sent every entry below {claimed}, but it sent the entries below {sent}"
                )),
            ))
        };
        if batch.is_empty() {
            return match claimed {
                Some(claimed) => Err(progress_lie(claimed)),
                // A stream that ends without the hub saying it sent everything is cut short:
                // what came is proven and kept, but the run does not claim to be complete.
                None if !self.caught_up => Err(SyncError::Refused(ReplicaError::new(
                    crate::replica::Location::Entry(sent),
                    crate::replica::Fault::Usage(
                        "the hub ended the stream without saying it had sent every entry; the entries before this one were proven and kept: sync again".into(),
                    ),
                ))),
                None => match self.replica.unsettled() {
                    Some(e) => Err(e.into()),
                    None => Ok(None),
                },
            };
        }
        let first_genesis = self.replica.genesis().is_none();
        let before = self.replica.registry().clone();
        let mut replica = std::mem::take(&mut self.replica);
        let mut seen = std::mem::take(&mut self.seen);
        let (replica, seen, result) = tokio::task::spawn_blocking(move || {
            let result = replica.append(batch, &mut seen);
            (replica, seen, result)
        })
        .await
        .map_err(|e| SyncError::State(format!("the verifier stopped: {e}")))?;
        self.replica = replica;
        self.seen = seen;
        let entries = result?;
        if let Some(claimed) = claimed {
            return Err(progress_lie(claimed));
        }
        // Every entry the hub has was sent: an erasure claim naming a later one is false, and
        // every relayed statement is proven in its origin's checkpoints.
        if self.caught_up
            && let Some(e) = self.replica.unsettled()
        {
            return Err(e.into());
        }
        if first_genesis && self.trust_on_first_use {
            self.pinned_now = self.replica.genesis();
        }
        let checkpoint_size = self.prove().await?;
        if self.require_witnessed
            && let Some(report) = self.witnessing(WITNESS_WAIT).await?
            && !report.witnessed.met
        {
            return Err(SyncError::NotWitnessed(report.line()));
        }
        let suspects = self.suspects(&entries)?;
        let (changes, ignored_retractions) = self.state_changes(&before, &entries)?;
        self.uncommitted = entries
            .iter()
            .map(|e| {
                let key = e.header.as_ref().map(|h| h.key_id.clone());
                (e.id, e.received_at_ms, key)
            })
            .collect();
        Ok(Some(Proven {
            entries,
            checkpoint_size,
            suspects,
            changes,
            ignored_retractions,
        }))
    }

    /// Fetches a fresh signed checkpoint and the consistency proofs the replica asks for.
    async fn prove(&mut self) -> Result<u64, SyncError> {
        let mut tries = 0;
        let saved = self.ids_records;
        let claim = loop {
            let note = self
                .client
                .audit
                .get_checkpoint(pb::GetCheckpointRequest {
                    tree_size: None,
                    refresh: true,
                })
                .await
                .map_err(|status| stopped(status, saved))?
                .into_inner()
                .note;
            match self.replica.check_checkpoint(&note) {
                Err(e) if matches!(e.fault, crate::replica::Fault::UnknownHubKey { .. }) => {
                    break self.before_rotation(e).await?;
                }
                Err(e) if e.is_behind() && tries < CHECKPOINT_RETRIES => {
                    tries += 1;
                    tokio::time::sleep(CHECKPOINT_RETRY_DELAY).await;
                }
                other => break other?,
            }
        };
        let proofs = match consistency_proofs(&mut self.client, &claim).await {
            Err(SyncError::Client(ClientError::Status(status))) => Err(stopped(status, saved)),
            other => other,
        }?;
        let size = claim.size();
        self.replica.accept_checkpoint(claim, &proofs)?;
        Ok(size)
    }

    /// The latest checkpoint is signed by a hub key this replica does not know yet (a
    /// rotation logged after the entries replayed): the first checkpoint the hub published
    /// at or after the entries replayed instead. The hub publishes one of each rotation's
    /// position under the key it retired, so that one is signed by a key the replica knows;
    /// if there is none, the original refusal stands.
    async fn before_rotation(
        &mut self,
        unknown: ReplicaError,
    ) -> Result<crate::replica::CheckpointClaim, SyncError> {
        let saved = self.ids_records;
        let page = self
            .client
            .audit
            .list_checkpoints(pb::ListCheckpointsRequest {
                from_size: self.replica.size(),
                limit: 1,
            })
            .await
            .map_err(|status| stopped(status, saved))?
            .into_inner();
        match page.checkpoints.into_iter().next() {
            Some(first) => Ok(self.replica.check_checkpoint(&first.note)?),
            None => Err(unknown.into()),
        }
    }

    /// Entries written in earlier runs or batches that a compromise revocation among
    /// `entries` makes suspect.
    fn suspects(&mut self, entries: &[Accepted]) -> Result<Vec<Suspect>, SyncError> {
        let mut out = Vec::new();
        for notice in entries.iter().flat_map(|e| &e.notices) {
            let Notice::KeyCompromised {
                member,
                key_id,
                since_ms,
            } = notice
            else {
                continue;
            };
            let mut raw = [0u8; 8];
            if hex::decode_to_slice(key_id.as_str(), &mut raw).is_err() {
                continue;
            }
            let mut seqs = Vec::new();
            self.ids
                .seek(SeekFrom::Start(0))
                .map_err(|e| SyncError::State(format!("ids file: {e}")))?;
            let mut reader = std::io::BufReader::new(&self.ids);
            let mut record = [0u8; RECORD];
            for seq in 0..self.ids_records {
                reader
                    .read_exact(&mut record)
                    .map_err(|e| SyncError::State(format!("ids file: {e}")))?;
                let received = i64::from_be_bytes(record[32..40].try_into().unwrap_or_default());
                if record[40..48] == raw && received >= *since_ms && record[48] & 1 == 1 {
                    seqs.push(seq);
                }
            }
            self.ids
                .seek(SeekFrom::End(0))
                .map_err(|e| SyncError::State(format!("ids file: {e}")))?;
            out.push(Suspect {
                member: member.clone(),
                key_id: key_id.clone(),
                since_ms: *since_ms,
                seqs,
            });
        }
        Ok(out)
    }

    /// The state changes the lifecycle statements of `entries` (a proven batch) make to what
    /// this member holds, and how many retractions changed nothing it holds.
    fn state_changes(
        &mut self,
        before: &crate::membership::Registry,
        entries: &[Accepted],
    ) -> Result<(Vec<StateChange>, u64), SyncError> {
        let registry = self.replica.registry().clone();
        let mut changes = Vec::new();
        let mut ignored = 0;
        for entry in entries {
            if let Some(Body::Retraction(r)) = entry.statement().map(|s| &s.body) {
                let record = registry
                    .lifecycle()
                    .retractions_of(&r.target)
                    .iter()
                    .find(|x| x.id == entry.id)
                    .cloned();
                let held = self.held(&r.target, entries)?;
                let change = record.zip(held).and_then(|(record, held)| {
                    let target = Target {
                        id: r.target,
                        seq: held.seq,
                        issuer: &held.issuer,
                        kind: held.kind,
                    };
                    let compromised =
                        |m: &MemberId, k: &KeyId, at| registry.is_compromised_for(m, k, at);
                    Lifecycle::verdict(&record, &target, &compromised).ok()?;
                    // A relayed erasure withdraws without erasing (docs/PROTOCOL.md §3.10).
                    let erased = record.retraction.erase;
                    Some(StateChange {
                        seq: held.seq,
                        statement_id: r.target,
                        issuer: held.issuer.clone(),
                        entries: (!r.entries.is_empty()).then(|| r.entries.clone()),
                        from: EntryState::Active,
                        to: if erased {
                            EntryState::Erased
                        } else {
                            EntryState::Retracted
                        },
                        written: held.written,
                        cause: Cause::Retraction(record),
                    })
                });
                match change {
                    Some(c) => changes.push(c),
                    None => ignored += 1,
                }
            }
            for notice in &entry.notices {
                let Notice::KeyCompromised {
                    key_id, since_ms, ..
                } = notice
                else {
                    continue;
                };
                // Retractions it signed from then on no longer apply.
                let voided: Vec<Arc<Record>> = registry
                    .lifecycle()
                    .targets()
                    .flat_map(|(_, records)| records.iter())
                    .filter(|r| {
                        // An erasure is final (§2.8): never voided.
                        !r.retraction.erase
                            && r.key_ids.contains(key_id)
                            && r.position.received_at_ms >= *since_ms
                    })
                    .cloned()
                    .collect();
                for record in voided {
                    let Some(held) = self.held(&record.retraction.target, entries)? else {
                        continue;
                    };
                    let target = Target {
                        id: record.retraction.target,
                        seq: held.seq,
                        issuer: &held.issuer,
                        kind: held.kind,
                    };
                    let before = |m: &MemberId, k: &KeyId, at| {
                        k != key_id && registry.is_compromised_for(m, k, at)
                    };
                    if Lifecycle::verdict(&record, &target, &before).is_err() {
                        continue;
                    }
                    let entries = (!record.retraction.entries.is_empty())
                        .then(|| record.retraction.entries.clone());
                    changes.push(StateChange {
                        seq: held.seq,
                        statement_id: record.retraction.target,
                        issuer: held.issuer.clone(),
                        entries,
                        from: EntryState::Retracted,
                        to: EntryState::Active,
                        written: held.written,
                        cause: Cause::Retraction(record),
                    });
                }
            }
        }
        self.opinion_changes(before, entries, &mut changes)?;
        Ok((changes, ignored))
    }

    /// The opinion-based state changes of a batch: for every statement this member holds
    /// whose opinions the batch may change, each entry an opinion names, its state before
    /// the batch (`before`) and after.
    fn opinion_changes(
        &mut self,
        before: &crate::membership::Registry,
        entries: &[Accepted],
        changes: &mut Vec<StateChange>,
    ) -> Result<(), SyncError> {
        let registry = self.replica.registry().clone();
        let life = registry.lifecycle();
        // What may have changed, and the statement that changed it.
        let mut touched: Vec<(StatementId, Cause)> = Vec::new();
        for entry in entries {
            let Some(statement) = entry.statement() else {
                continue;
            };
            match &statement.body {
                Body::Opinion(o) => {
                    if let Some(r) = life
                        .opinions_of(&o.target)
                        .iter()
                        .find(|r| r.id == entry.id)
                        // A `seen` never changes a state (PROTOCOL §2.7 "Seen").
                        .filter(|r| !r.is_seen_track())
                    {
                        touched.push((o.target, Cause::Opinion(r.clone())));
                    }
                }
                Body::Settings(_) | Body::Membership(_) => {
                    let cause = Cause::Governance {
                        id: entry.id,
                        seq: entry.seq,
                        issuer: statement.issuer.clone(),
                    };
                    touched.extend(life.opinion_targets().map(|t| (*t, cause.clone())));
                }
                _ => {}
            }
        }
        let mut done = std::collections::HashSet::new();
        for (id, cause) in touched.into_iter().rev() {
            // The last cause in the batch is reported once per statement.
            if !done.insert(id) {
                continue;
            }
            let Some(held) = self.held(&id, entries)? else {
                continue;
            };
            let target = Target {
                id,
                seq: held.seq,
                issuer: &held.issuer,
                kind: held.kind,
            };
            let (old, new) = (before.states(&target), registry.states(&target));
            let named: std::collections::BTreeSet<u32> = old
                .opinions
                .keys()
                .chain(new.opinions.keys())
                .copied()
                .collect();
            for index in named {
                let (from, to) = (old.state(index), new.state(index));
                let withdrawn = |s| matches!(s, EntryState::Retracted | EntryState::Erased);
                if from == to || withdrawn(from) || withdrawn(to) {
                    // Unchanged, or a retraction's change (reported by its own rule).
                    continue;
                }
                changes.push(StateChange {
                    seq: held.seq,
                    statement_id: id,
                    issuer: held.issuer.clone(),
                    entries: Some(vec![index]),
                    from,
                    to,
                    written: held.written,
                    cause: cause.clone(),
                });
            }
        }
        Ok(())
    }

    /// What this member holds of statement `id`: from the batch being proven, or from the
    /// ids file (its issuer from the signing key; statements whose rows were not written are
    /// not held: their kind is not recorded).
    fn held(&mut self, id: &StatementId, batch: &[Accepted]) -> Result<Option<Held>, SyncError> {
        if let Some(e) = batch.iter().find(|e| &e.id == id) {
            let Some(header) = &e.header else {
                return Ok(None);
            };
            let written = matches!(header.kind, Kind::HashSet | Kind::RiskSignal)
                && self.filter.selects(header)
                && e.statement().is_some();
            // A relayed statement's issuer is its origin's member (`acme@x.example`).
            let issuer = match &e.origin {
                Some(origin) => header.issuer.qualified(&origin.hub_name),
                None => header.issuer.clone(),
            };
            return Ok(Some(Held {
                seq: e.seq,
                issuer,
                kind: header.kind,
                written,
            }));
        }
        let Some(seq) = self.seen.first_seq(id).filter(|s| *s < self.ids_records) else {
            return Ok(None);
        };
        let io = |e: std::io::Error| SyncError::State(format!("ids file: {e}"));
        let mut record = [0u8; RECORD];
        self.ids
            .seek(SeekFrom::Start(seq * RECORD as u64))
            .map_err(io)?;
        self.ids.read_exact(&mut record).map_err(io)?;
        self.ids.seek(SeekFrom::End(0)).map_err(io)?;
        if record[48] & 1 == 0 {
            return Ok(None);
        }
        let issuer = KeyId::parse(&hex::encode(&record[40..48]))
            .ok()
            .and_then(|k| self.replica.registry().key_owner_here(&k));
        // A written row is a hash set or a risk signal; both are retracted alike.
        Ok(issuer.map(|issuer| Held {
            seq,
            issuer,
            kind: Kind::HashSet,
            written: true,
        }))
    }

    /// The events file length the saved cursor covers (truncate the events file to it).
    pub fn saved_events_bytes(&self) -> u64 {
        self.events_bytes
    }

    /// Records the events file's length, saved with the cursor by the next
    /// [`Syncer::commit`].
    pub fn set_events_bytes(&mut self, bytes: u64) {
        self.events_bytes = bytes;
    }

    /// Records the last proven batch after the caller flushed and fsynced its output:
    /// `written[i]` says whether a row was written for its entry i, `output_bytes` is the
    /// output's length now. Appends the ids records, fsyncs them, then saves the cursor.
    pub fn commit(&mut self, written: &[bool], output_bytes: u64) -> Result<(), SyncError> {
        let mut buf = Vec::with_capacity(self.uncommitted.len() * RECORD);
        for (i, (id, received, key)) in self.uncommitted.drain(..).enumerate() {
            buf.extend_from_slice(&id.0);
            buf.extend_from_slice(&received.to_be_bytes());
            let mut raw = [0u8; 8];
            if let Some(key) = key {
                let _ = hex::decode_to_slice(key.as_str(), &mut raw);
            }
            buf.extend_from_slice(&raw);
            buf.push(u8::from(written.get(i).copied().unwrap_or(false)));
        }
        let io = |e: std::io::Error| SyncError::State(format!("ids file: {e}"));
        self.ids.write_all(&buf).map_err(io)?;
        self.ids.sync_data().map_err(io)?;
        self.ids_records = self.replica.size();
        self.output_bytes = output_bytes;
        self.save_cursor()
    }

    fn save_cursor(&self) -> Result<(), SyncError> {
        Cursor {
            format: CURSOR_FORMAT,
            output_bytes: self.output_bytes,
            ids_records: self.ids_records,
            events_bytes: self.events_bytes,
            filter: self.spec.clone(),
            replica: self.replica.snapshot(),
            witnessed: self.witnessed,
        }
        .save(&self.cursor_path)
    }

    /// Checks the cosignatures the hub serves for the replica's latest accepted checkpoint
    /// against the coalition's witness policy as this replica replayed it (`None`: no policy,
    /// or no checkpoint yet), asking again every 200 ms for up to `wait` while the policy is
    /// not met (the hub collects cosignatures after it publishes). A checkpoint found
    /// witnessed is remembered in the cursor (saved at once when nothing waits to be
    /// committed).
    pub async fn witnessing(&mut self, wait: Duration) -> Result<Option<WitnessReport>, SyncError> {
        let Some(policy) = self
            .replica
            .registry()
            .coalition()
            .and_then(|c| c.settings.witnesses.clone())
        else {
            return Ok(None);
        };
        let Some((size, note)) = self.replica.checkpoint().map(|(s, n)| (s, n.to_owned())) else {
            return Ok(None);
        };
        let deadline = tokio::time::Instant::now() + wait;
        let saved = self.ids_records;
        let witnessed = loop {
            let served = self
                .client
                .audit
                .get_checkpoint(pb::GetCheckpointRequest {
                    tree_size: Some(size),
                    refresh: false,
                })
                .await
                .map_err(|status| stopped(status, saved))?
                .into_inner();
            let found = policy.check(&note, &served.cosignatures);
            if found.met || tokio::time::Instant::now() >= deadline {
                break found;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        if witnessed.met
            && let Some(at_s) = witnessed.earliest()
            && self.witnessed.is_none_or(|w| w.size < size)
        {
            self.witnessed = Some(WitnessedAt { size, at_s });
            if self.uncommitted.is_empty() && self.ids_records == self.replica.size() {
                self.save_cursor()?;
            }
        }
        Ok(Some(WitnessReport {
            size,
            policy: policy.describe(),
            witnessed,
            last: self.witnessed,
        }))
    }

    /// The row a writer writes for an accepted entry, if the member's filter selects it and
    /// this code reads it; compromise computed from the membership replayed here.
    pub fn row(&self, entry: Accepted) -> Option<ReceivedEntry> {
        let header = entry.header.as_ref()?;
        if !matches!(header.kind, Kind::HashSet | Kind::RiskSignal) || !self.filter.selects(header)
        {
            return None;
        }
        let Content::Statement(mut statement) = entry.content else {
            return None;
        };
        // A relayed statement: its issuer is the origin's member, and its key is judged by
        // the origin's membership at the origin's receipt time (docs/PROTOCOL.md §3.10).
        let (governing, received_at_ms) = match &entry.origin {
            Some(origin) => {
                statement.issuer = statement.issuer.qualified(&origin.hub_name);
                let replica = self
                    .replica
                    .origins()
                    .find(|(g, _, _)| **g == origin.origin)
                    .map(|(_, _, r)| r)?;
                (replica, origin.received_at_ms)
            }
            None => (&self.replica, entry.received_at_ms),
        };
        let compromised_keys = if governing.is_compromised(&header.key_id, received_at_ms) {
            vec![header.key_id.to_string()]
        } else {
            Vec::new()
        };
        Some(ReceivedEntry {
            seq: entry.seq,
            received_at_ms: entry.received_at_ms,
            id: entry.id,
            statement: *statement,
            compromised_keys,
        })
    }
}

/// Opens (or creates) the ids file, truncated to `records`, and loads the ids it holds.
fn open_ids(path: &Path, records: u64) -> Result<(File, SeenMap), SyncError> {
    let io = |e: std::io::Error| state_err(path, e);
    let mut file = OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
        .map_err(io)?;
    let want = records * RECORD as u64;
    let len = file.metadata().map_err(io)?.len();
    if len < want {
        return Err(state_err(
            path,
            format!(
                "holds {len} bytes, less than the {want} its cursor covers; it was changed by something else: delete the output, its cursor and this file to sync from the start"
            ),
        ));
    }
    file.set_len(want).map_err(io)?;
    file.seek(SeekFrom::Start(0)).map_err(io)?;
    let mut seen = SeenMap::default();
    let mut reader = std::io::BufReader::with_capacity(1 << 20, &file);
    let mut record = [0u8; RECORD];
    for seq in 0..records {
        reader.read_exact(&mut record).map_err(io)?;
        let mut id = [0u8; 32];
        id.copy_from_slice(&record[..32]);
        seen.insert(StatementId(id), seq);
    }
    drop(reader);
    file.seek(SeekFrom::End(0)).map_err(io)?;
    Ok((file, seen))
}

/// The consistency proofs a checkpoint claim needs, from the server.
async fn consistency_proofs(
    client: &mut Client,
    claim: &CheckpointClaim,
) -> Result<Vec<Vec<Hash>>, SyncError> {
    let mut proofs = Vec::new();
    for need in claim.needs() {
        let proof = client
            .audit
            .get_consistency_proof(pb::GetConsistencyProofRequest {
                old_size: need.old_size,
                new_size: need.new_size,
            })
            .await
            .map_err(ClientError::from)?
            .into_inner();
        proofs.push(crate::client::hashes(&proof.proof)?);
    }
    Ok(proofs)
}

/// The stream said OUT_OF_RANGE: the server has fewer entries than this member verified. A
/// fork if its signed checkpoint contradicts what the replica knows (checked with the
/// consistency proofs when it claims more entries than it serves), otherwise behind.
async fn behind_or_fork(
    client: &mut Client,
    replica: &Replica,
    status: tonic::Status,
) -> SyncError {
    let checkpoint = client
        .audit
        .get_checkpoint(pb::GetCheckpointRequest {
            tree_size: None,
            refresh: false,
        })
        .await;
    let fork = match checkpoint.map(|cp| replica.check_checkpoint(&cp.into_inner().note)) {
        Ok(Err(e)) => Some(e),
        Ok(Ok(claim)) => match consistency_proofs(client, &claim).await {
            Ok(proofs) => replica.clone().accept_checkpoint(claim, &proofs).err(),
            Err(_) => None,
        },
        Err(_) => None,
    };
    if let Some(e) = fork.filter(|e| !e.is_behind()) {
        return SyncError::Refused(e);
    }
    SyncError::Behind(format!(
        "the server is behind: it answered \"{}\" (this member has verified {} entries)",
        status.message(),
        replica.size()
    ))
}

/// A call or the stream failed with `status`. `UNAVAILABLE` (the hub shutting down, or gone
/// away) is [`SyncError::Unavailable`], which says the state is saved and to run again;
/// `saved` is the number of entries the cursor holds.
fn stopped(status: tonic::Status, saved: u64) -> SyncError {
    if status.code() != tonic::Code::Unavailable {
        return ClientError::from(status).into();
    }
    let reason = if status.message() == crate::server::shutdown::SHUTTING_DOWN {
        "the hub is shutting down".to_owned()
    } else {
        format!("the hub is unavailable ({})", status.message())
    };
    SyncError::Unavailable { reason, saved }
}

/// Moves the stream's messages into a bounded channel, so receiving overlaps verifying.
async fn forward(
    mut stream: tonic::Streaming<pb::SyncResponse>,
    tx: tokio::sync::mpsc::Sender<Result<pb::SyncResponse, tonic::Status>>,
) {
    loop {
        let item = stream.message().await;
        let forwarded = match item {
            Ok(Some(msg)) => tx.send(Ok(msg)).await,
            Ok(None) => break,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                break;
            }
        };
        if forwarded.is_err() {
            break;
        }
    }
}
