//! Durable storage: the append-only log of accepted statements, its Merkle tiles and the
//! statement-id index, driven by the hub's [`Replica`]. The entries' records live in two
//! append-only files beside sled (`entry_files.rs`), the id index in sorted runs beside them
//! (`id_index.rs`, derived from the records); sled holds everything else and the durable log
//! size.
//!
//! One writer thread owns every append. It takes whatever appends are waiting (group commit),
//! hands each statement to the replica at its position ([`Replica::append_verified`]: every
//! replica rule but the signatures, which the handler checked), assigns gap-free sequence
//! numbers, writes the group's records to the entry files and fdatasyncs them, then writes
//! membership marks, the Merkle tiles they change and the new log size in ONE atomic sled
//! batch, flushes (fsync), tells the id index the group's ids, and only then publishes the new
//! log size and registry and answers the callers. Readers never look past the published size, so they only ever see
//! durable entries. At start-up the entry files are cut back to sled's log size (a crashed
//! group's tail) and the replica is restored from the store's own durable entries (membership
//! replayed without re-verifying signatures the hub checked itself, the frontier from stored
//! tiles). Published checkpoints live in their own tree (`checkpoints.rs`); the Merkle tree is
//! stored as C2SP tlog-tiles (`tiles.rs`), which proofs read (`proofs.rs`).

mod access;
mod checkpoints;
mod entry_files;
mod erasure;
mod id_index;
mod proofs;
mod record;
mod tiles;

pub use access::{
    AccessCall, AccessLog, AccessPage, AccessRecord, AccessRetention, MAX_ACCESS_PAGE, PRUNE_EVERY,
};
pub use checkpoints::PublishedCheckpoint;
pub use entry_files::{DATA_FILE as ENTRIES_DATA_FILE, OFFSETS_FILE as ENTRIES_OFFSETS_FILE};
pub use id_index::{DIR as ID_RUNS_DIR, MEMTABLE_IDS as ID_MEMTABLE};
pub use proofs::ProofRequestError;
#[doc(hidden)]
pub use proofs::write_synthetic_tree;
pub use record::{LEAF_LEN, RELAYED_LEAF_LEN, StoredEntry, leaf_data, relayed_leaf_data};

use crate::log::{self, Frontier, Hash, NodeSource, TileEdge, TreeSize};
use crate::membership::{Member, MemberId, Position, Registry};
use crate::replica::{Replica, ReplicaError, SeenIds};
use crate::statement::{StatementId, Verified};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use thiserror::Error;
use tokio::sync::{mpsc, oneshot, watch};

/// Most appends committed in one group (one batch, one fsync).
const MAX_GROUP: usize = 512;
/// Most payload bytes committed in one group, so a burst of large sets cannot balloon a batch.
const MAX_GROUP_BYTES: usize = 64 * 1024 * 1024;
/// Statements waiting for the writer at most; further submitters wait (asynchronously) for
/// room. Verified statements are held in memory, so this bounds that memory too.
const WRITER_QUEUE: usize = 4 * MAX_GROUP;

/// Key prefix of the earlier layout's id index in the `log` tree: `I`, statement id → seq.
/// Only removed at open: the ids are in `id_index.rs`'s runs.
const BY_ID: u8 = b'I';
/// Marks the entries that change membership (genesis and changes), replayed at start-up.
const MEMBERSHIP: u8 = b'M';
/// The replicas of the origins this log relays from (JSON of `replica::OriginSnapshot`s),
/// written in the batch of every group that relays: what start-up restores them from.
const ORIGINS: &[u8] = b"O";

/// How to open a store.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// sled's page-cache budget in bytes; bounds the store's memory whatever the log size.
    pub cache_bytes: u64,
    /// Statement ids the id index keeps in memory before writing them as a sorted run
    /// ([`ID_MEMTABLE`] by default; bounds that memory, ~80 B per id).
    pub id_memtable: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            cache_bytes: 128 * 1024 * 1024,
            id_memtable: ID_MEMTABLE,
        }
    }
}

/// The hub's acknowledgement of a durable statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The statement id.
    pub statement_id: StatementId,
    /// Its position in the log (also its Merkle leaf index).
    pub seq: u64,
    /// When the hub accepted it, milliseconds since the Unix epoch.
    pub received_at_ms: i64,
}

/// The outcome of an append.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The (original) receipt.
    pub receipt: Receipt,
    /// True when the statement was stored already and nothing was written.
    pub already_present: bool,
}

/// Storage failures.
#[derive(Debug, Error)]
pub enum StoreError {
    /// sled failed.
    #[error("storage error: {0}")]
    Sled(#[from] sled::Error),
    /// Reading or writing one of the entry files failed.
    #[error("storage error in {file}: {source}")]
    File {
        /// The file's path.
        file: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// A stored record does not decode: the data directory is damaged.
    #[error("stored record {key} is corrupt: {reason}")]
    Corrupt {
        /// Which record.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// The writer thread is gone (the store is shutting down or a write failed earlier).
    #[error("the store is not accepting writes: {0}")]
    Unavailable(String),
    /// The statement may not be logged at this point (a replica rule: entitlement,
    /// membership, dates).
    #[error("{}", .0.fault)]
    Rejected(ReplicaError),
    /// A checkpoint that does not describe this log (a bug in the caller, never stored).
    #[error("checkpoint for {size} entries refused: {reason}")]
    CheckpointRejected {
        /// Its tree size.
        size: u64,
        /// Why it was refused.
        reason: String,
    },
}

/// The hub's durable state. Cheap to clone; all clones share one database and one writer.
#[derive(Clone)]
pub struct Store {
    db: sled::Db,
    log: sled::Tree,
    entries: Arc<entry_files::EntryFiles>,
    ids: Arc<id_index::IdIndex>,
    writer: Arc<WriterHandle>,
    size: watch::Receiver<u64>,
    registry: watch::Receiver<Arc<Registry>>,
    checkpoints: Arc<checkpoints::Checkpoints>,
    writer_fault: watch::Receiver<Option<String>>,
    access: Arc<AccessLog>,
}

/// The writer thread's inbox and handle. When the last `Store` clone goes, the inbox closes,
/// the thread finishes its batch and exits, and dropping waits for it, so the database lock is
/// released by the time the drop returns (a restart in the same process can reopen it).
struct WriterHandle {
    inbox: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for WriterHandle {
    fn drop(&mut self) {
        drop(self.inbox.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What the writer thread is asked to do. Appends are the hot path and travel unboxed (no
/// allocation per statement); the rare variants are small.
#[allow(clippy::large_enum_variant)]
enum Job {
    /// Log a statement the hub verified (a Submit).
    Append(AppendJob),
    /// Write a batch of another hub's log that a replica proved (a mirror, a recovery).
    Replicate(Box<Replicated>, oneshot::Sender<Result<u64, StoreError>>),
    /// A copy of the writer's replica (the state a follower continues from).
    Replica(oneshot::Sender<Replica>),
    /// Log statements relayed from other hubs at the next positions.
    Relay(
        Vec<crate::pb::SyncEntry>,
        oneshot::Sender<Result<std::ops::Range<u64>, StoreError>>,
    ),
}

struct AppendJob {
    verified: Verified,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// Entries of a hub's log, in order from this store's size, that a [`Replica`] accepted and
/// proved in that hub's signed checkpoint (`federation::Follower`), with the replica's state
/// after them. The writer stores the entries verbatim at their positions, with their receipt
/// times (so the Merkle tree is the source's, byte for byte), and continues from that state:
/// it checks the positions, not the signatures, exactly as [`Replica::append_verified`] trusts
/// the handler that verified a statement.
pub struct Replicated {
    entries: Vec<(crate::replica::Entry, crate::replica::Accepted)>,
    replica: Replica,
}

impl Replicated {
    /// `entries` and what `replica` said of each (the same order, the same length), and the
    /// replica that accepted them. Refused (by [`Store::replicate`]) unless the entries start
    /// at the store's size and end at the replica's.
    pub fn new(
        entries: Vec<crate::replica::Entry>,
        accepted: Vec<crate::replica::Accepted>,
        replica: Replica,
    ) -> Result<Self, StoreError> {
        if entries.len() != accepted.len()
            || entries.iter().zip(&accepted).any(|(e, a)| e.seq != a.seq)
        {
            return Err(StoreError::Unavailable(
                "a replicated batch's entries and verdicts do not match (a bug)".into(),
            ));
        }
        Ok(Replicated {
            entries: entries.into_iter().zip(accepted).collect(),
            replica,
        })
    }

    /// The number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Store {
    /// Opens (or creates) the store in `dir`. Fails if another process has it open.
    pub fn open(dir: &Path, config: &StoreConfig) -> Result<Store, StoreError> {
        let db = open_db(dir, config)?;
        let log = db.open_tree("log")?;
        tiles::upgrade(&db, &log, entry_files::size_before_open(&log)?)?;
        let (entries, appender, size) = entry_files::open(dir, &db, &log)?;
        let (ids, id_writer) =
            id_index::IdIndex::open(dir, &entries, size, config.id_memtable.max(1))?;
        // The ids are in the runs now: an earlier version must refuse this directory (it would
        // miss duplicates), and the earlier layout's id keys can go.
        tiles::mark_current_format_durably(&db, &log)?;
        let removed = remove_prefix(&db, &log, BY_ID, 4096)?;
        if removed > 0 {
            tracing::info!("store: removed {removed} sled id-index keys of the earlier layout");
        }
        if size > 0 {
            // The Merkle leaf of the last entry is stored (same batch as the entry).
            tiles::nodes(&log, size).node(0, size - 1)?;
        }
        let edge = TileEdge::from_tiles(&tiles::Tiles(&log), TreeSize(size))?;
        let checkpoints = Arc::new(checkpoints::Checkpoints::open(&db, size)?);
        let access = Arc::new(AccessLog::open(&db)?);
        let replica = restore_replica(&log, &entries, size)?;
        let registry = replica.registry().clone();
        // An erasure logged before a crash that came before its scrub: overwrite the body now,
        // before any reader or the writer starts.
        erasure::scrub_erased(&entries, &registry, |id| {
            ids.find(id, size, |seq| entries.read(seq))
        })?;
        let (size_tx, size_rx) = watch::channel(size);
        let (registry_tx, registry_rx) = watch::channel(registry);
        let (fault_tx, fault_rx) = watch::channel(None);
        // Bounded: a flood of submitters waits here instead of queueing without limit. The
        // queue is async: a waiting submitter parks a task, never a blocking-pool thread
        // (those serve signature checks, reads and CRL reloads).
        let (tx, rx) = mpsc::channel(WRITER_QUEUE);
        let writer = Writer {
            db: db.clone(),
            log: log.clone(),
            entries: appender,
            ids: id_writer,
            replica,
            tiles: edge,
            published: size_tx,
            registry: registry_tx,
        };
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || {
                // Says why the thread ended unless it ended because the store closed.
                let mut fault = FaultOnExit {
                    fault: fault_tx,
                    reason: Some("the writer thread panicked; restart the hub".into()),
                };
                fault.reason = writer.run(rx);
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start writer thread: {e}")))?;
        Ok(Store {
            db: db.clone(),
            log,
            entries,
            ids,
            writer: Arc::new(WriterHandle {
                inbox: Some(tx),
                thread: Some(thread),
            }),
            size: size_rx,
            registry: registry_rx,
            checkpoints,
            writer_fault: fault_rx,
            access,
        })
    }

    /// Appends a verified statement durably, or returns the original receipt if its id is
    /// already stored. Returns only after the data is flushed to disk.
    pub async fn append(&self, verified: Verified) -> Result<Appended, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Append(AppendJob { verified, reply }))
            .await?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?
    }

    /// Appends many verified statements, each exactly as [`Store::append`] would (durable
    /// before it is answered; refused, or found already stored, on its own): they reach the
    /// writer back to back, so one group commit usually takes them all. The outcomes keep the
    /// input's order.
    pub async fn append_all(&self, verified: Vec<Verified>) -> Vec<Result<Appended, StoreError>> {
        let stopped = || StoreError::Unavailable("writer thread stopped".into());
        let Some(writer) = self.writer.inbox.clone() else {
            return verified
                .iter()
                .map(|_| Err(StoreError::Unavailable("the store is closing".into())))
                .collect();
        };
        let mut answers = Vec::with_capacity(verified.len());
        for verified in verified {
            let (reply, answer) = oneshot::channel();
            let sent = writer
                .send(Job::Append(AppendJob { verified, reply }))
                .await;
            answers.push(sent.ok().map(|()| answer));
        }
        let mut outcomes = Vec::with_capacity(answers.len());
        for answer in answers {
            outcomes.push(match answer {
                Some(answer) => answer.await.unwrap_or_else(|_| Err(stopped())),
                None => Err(stopped()),
            });
        }
        outcomes
    }

    /// Writes a proven batch of another hub's log (see [`Replicated`]) durably, and returns
    /// the new log size. Nothing is written if the batch does not start at this store's size;
    /// a storage failure stops the writer as for [`Store::append`].
    pub async fn replicate(&self, batch: Replicated) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Replicate(Box::new(batch), reply)).await?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?
    }

    /// Logs statements relayed from other hubs (docs/PROTOCOL.md §3.10), as
    /// `federation::Relayer` shaped them, at the next positions with this hub's receipt time,
    /// as one group: the writer's replica must accept every one — a trusted origin, the
    /// origin's membership at its origin position, and no origin left without the origin
    /// checkpoint that proves it — and no statement may be logged here already; otherwise
    /// nothing is written ([`StoreError::Rejected`]). Returns the positions given.
    pub async fn relay(
        &self,
        entries: Vec<crate::pb::SyncEntry>,
    ) -> Result<std::ops::Range<u64>, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Relay(entries, reply)).await?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))?
    }

    /// A copy of the writer's replica: membership replayed, frontier and last receipt time
    /// at the durable size (what a follower of another hub's log continues from).
    pub async fn replica(&self) -> Result<Replica, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.send(Job::Replica(reply)).await?;
        answer
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))
    }

    async fn send(&self, job: Job) -> Result<(), StoreError> {
        let writer = self
            .writer
            .inbox
            .clone()
            .ok_or_else(|| StoreError::Unavailable("the store is closing".into()))?;
        writer
            .send(job)
            .await
            .map_err(|_| StoreError::Unavailable("writer thread stopped".into()))
    }

    /// Why the writer thread stopped accepting writes (`None` while it works): after a failed
    /// write it refuses every later one until the hub restarts. Changes once, for health.
    pub fn writer_fault(&self) -> watch::Receiver<Option<String>> {
        self.writer_fault.clone()
    }

    /// The access log: who synced or matched how much and when (`access.rs`).
    pub fn access(&self) -> &AccessLog {
        &self.access
    }

    /// Number of durable entries; sequence numbers `0..log_size()` exist.
    pub fn log_size(&self) -> u64 {
        *self.size.borrow()
    }

    /// A receiver that changes whenever the durable log grows.
    pub fn watch_size(&self) -> watch::Receiver<u64> {
        self.size.clone()
    }

    /// The durable entries with `from <= seq < to` (clamped to the durable size), in order.
    pub fn entries(
        &self,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<StoredEntry, StoreError>> + use<> {
        let to = to.min(self.log_size());
        self.entries.clone().range(from, to.max(from))
    }

    /// The entry at `seq`, if durable.
    pub fn entry(&self, seq: u64) -> Result<Option<StoredEntry>, StoreError> {
        if seq >= self.log_size() {
            return Ok(None);
        }
        self.entries.read(seq).map(Some)
    }

    /// The entry holding a statement id, if durable.
    pub fn entry_by_id(&self, id: &StatementId) -> Result<Option<StoredEntry>, StoreError> {
        self.ids
            .find(id, self.log_size(), |seq| self.entries.read(seq))
    }

    /// The Merkle root of the first `size` entries (RFC 6962), `size <= log_size()`.
    pub fn root(&self, size: u64) -> Result<Hash, StoreError> {
        let size = size.min(self.log_size());
        log::root(&tiles::nodes(&self.log, size), TreeSize(size))
    }

    /// Membership as of the durable log.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.borrow().clone()
    }

    /// A member by id (any status).
    pub fn member(&self, id: &MemberId) -> Option<Member> {
        self.registry.borrow().member(id).cloned()
    }

    /// Every member ever admitted, ordered by id.
    pub fn members(&self) -> Vec<Member> {
        self.registry.borrow().members().cloned().collect()
    }
}

/// Opens the sled database in `dir`. sled releases its file lock from background threads
/// shortly after the last handle is dropped, so a reopen right after a close (a restart in
/// the same process) may briefly find it taken: wait up to 2 s before giving up.
pub(crate) fn open_db(dir: &Path, config: &StoreConfig) -> Result<sled::Db, StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        let opened = sled::Config::new()
            .path(dir)
            .cache_capacity(config.cache_bytes)
            .mode(sled::Mode::HighThroughput)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.kind() == std::io::ErrorKind::Other
                    && e.to_string().contains("could not acquire lock")
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return Ok(other?),
        }
    }
}

/// Restores the hub's replica from its own durable entries: membership replayed from the `M`
/// markers (the hub verified those signatures before it fsynced them), the Merkle frontier
/// from the stored tiles, and the last receipt time.
fn restore_replica(
    log: &sled::Tree,
    entries: &entry_files::EntryFiles,
    size: u64,
) -> Result<Replica, StoreError> {
    let mut replica = Replica::new();
    for key in log.scan_prefix([MEMBERSHIP]).keys() {
        let seq = seq_of_key(&key?)?;
        let corrupt = |reason: String| StoreError::Corrupt {
            key: format!("entry {seq}"),
            reason: format!("membership entry does not replay: {reason}"),
        };
        if seq >= size {
            return Err(corrupt(format!("beyond the log size {size}")));
        }
        let entry = entries.read(seq)?;
        replica
            .restore_membership(entry.to_replica_entry(), false)
            .map_err(|e| corrupt(e.fault.to_string()))?;
    }
    if let Some(saved) = log.get(ORIGINS)? {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: "origins".into(),
            reason: format!("the relayed origins' replicas do not restore: {reason}"),
        };
        let origins: Vec<crate::replica::OriginSnapshot> =
            serde_json::from_slice(&saved).map_err(|e| corrupt(e.to_string()))?;
        replica
            .restore_origins(&origins, Default::default())
            .map_err(|e| corrupt(e.to_string()))?;
    }
    let frontier = Frontier::from_nodes(&tiles::nodes(log, size), TreeSize(size))?;
    let last_received = match size {
        0 => 0,
        n => entries.read(n - 1)?.received_at_ms,
    };
    replica.resume_at(frontier, last_received);
    Ok(replica)
}

/// The statement ids already logged, for the replica's "no statement twice" rule (which asks
/// only about the statement being appended): the ones in the group being staged. The store's
/// id index was read for that statement by `Writer::stage` just before, which answers a stored
/// id itself (the original receipt) and stops the group on a read error, so the replica only
/// ever sees statements the index does not hold. One index read per statement, and nothing
/// kept in memory per statement beyond the group.
struct LoggedIds<'a> {
    in_batch: &'a mut HashMap<StatementId, Receipt>,
}

impl SeenIds for LoggedIds<'_> {
    fn first_seq(&self, id: &StatementId) -> Option<u64> {
        self.in_batch.get(id).map(|r| r.seq)
    }
    fn insert(&mut self, _id: StatementId, _seq: u64) {
        // The writer records the id in the batch and the index itself.
    }
}

/// The statement ids already logged, for a relayed batch (whose statements the writer did
/// not look up one by one): the durable log's, through the id index, and the batch's. A read
/// error is kept and fails the job.
struct HeldIds<'a> {
    find: &'a dyn Fn(&StatementId) -> Result<Option<u64>, StoreError>,
    batch: HashMap<StatementId, u64>,
    error: std::cell::RefCell<Option<StoreError>>,
}

impl SeenIds for HeldIds<'_> {
    fn first_seq(&self, id: &StatementId) -> Option<u64> {
        if let Some(seq) = self.batch.get(id) {
            return Some(*seq);
        }
        match (self.find)(id) {
            Ok(found) => found,
            Err(e) => {
                self.error.borrow_mut().get_or_insert(e);
                None
            }
        }
    }
    fn insert(&mut self, id: StatementId, seq: u64) {
        self.batch.insert(id, seq);
    }
}

/// The statements the erasures among `accepted` name: this hub's and, relayed, their
/// origins' (whether each erases here is the registry's to say, `erasure.rs`).
fn erasures_in<'a>(
    accepted: impl IntoIterator<Item = &'a crate::replica::Accepted>,
) -> Vec<StatementId> {
    accepted
        .into_iter()
        .filter_map(crate::replica::Accepted::statement)
        .filter_map(|s| erasure::erasure_targets(&s.body))
        .collect()
}

/// The [`ORIGINS`] record of a replica.
fn origins_record(replica: &Replica) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(&replica.origin_snapshots()).map_err(|e| StoreError::Corrupt {
        key: "origins".into(),
        reason: e.to_string(),
    })
}

fn membership_key(seq: u64) -> [u8; 9] {
    let mut k = [MEMBERSHIP; 9];
    k[1..].copy_from_slice(&seq.to_be_bytes());
    k
}

fn seq_of_key(key: &[u8]) -> Result<u64, StoreError> {
    decode_seq(key.get(1..).unwrap_or_default())
}

fn decode_seq(bytes: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        key: hex::encode(bytes),
        reason: "a sequence number is 8 bytes".into(),
    })?;
    Ok(u64::from_be_bytes(arr))
}

/// The single writer: group commit, one atomic batch and one flush per group.
struct Writer {
    db: sled::Db,
    log: sled::Tree,
    /// Where the group's records go, written and fdatasync'ed before the sled batch commits.
    entries: entry_files::Appender,
    /// The id index: looked up for duplicates, told the ids of each committed group.
    ids: id_index::IdWriter,
    replica: Replica,
    /// The rightmost Merkle tiles: appended leaves go here, changed tiles into the batch.
    tiles: TileEdge,
    published: watch::Sender<u64>,
    registry: watch::Sender<Arc<Registry>>,
}

/// Publishes why the writer thread ended when it ends (also by a panic).
struct FaultOnExit {
    fault: watch::Sender<Option<String>>,
    reason: Option<String>,
}

impl Drop for FaultOnExit {
    fn drop(&mut self) {
        if let Some(reason) = self.reason.take() {
            self.fault.send_replace(Some(reason));
        }
    }
}

impl Writer {
    /// Commits groups until the inbox closes (`None`) or a write fails (the reason).
    fn run(mut self, mut rx: mpsc::Receiver<Job>) -> Option<String> {
        // A job taken while gathering a group of appends, done next.
        let mut held = None;
        while let Some(job) = held.take().or_else(|| rx.blocking_recv()) {
            let done = match job {
                Job::Replica(reply) => {
                    let _ = reply.send(self.replica.clone());
                    Ok(())
                }
                Job::Replicate(batch, reply) => self.replicate(*batch, reply),
                Job::Relay(entries, reply) => self.relay(entries, reply),
                Job::Append(first) => {
                    let mut bytes =
                        first.verified.envelope.payload.len() + first.verified.envelope.body.len();
                    let mut jobs = vec![first];
                    while jobs.len() < MAX_GROUP && bytes < MAX_GROUP_BYTES {
                        match rx.try_recv() {
                            Ok(Job::Append(job)) => {
                                bytes += job.verified.envelope.payload.len()
                                    + job.verified.envelope.body.len();
                                jobs.push(job);
                            }
                            Ok(other) => {
                                held = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.commit(jobs)
                }
            };
            if let Err(e) = done {
                // A failed batch leaves the on-disk state uncertain: refuse further writes so
                // nothing is acknowledged that might not be durable. A restart recovers.
                tracing::error!("store write failed, refusing further writes: {e}");
                return Some(format!(
                    "a store write failed, so the hub refuses every write until it restarts: {e}"
                ));
            }
        }
        None
    }

    /// Writes a proven batch of another hub's log (`Replicated`) as one group: the records
    /// verbatim, membership marks, tiles and size in one sled batch, then the erasures it
    /// logs scrubbed, then the replica that accepted it becomes the writer's.
    fn replicate(
        &mut self,
        batch: Replicated,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    ) -> Result<(), StoreError> {
        let here = self.replica.size();
        let first = batch.entries.first().map_or(here, |(e, _)| e.seq);
        let end = first + batch.entries.len() as u64;
        if first != here || batch.replica.size() != end {
            let _ = reply.send(Err(StoreError::Unavailable(format!(
                "a replicated batch for entries {first}..{end} (replica at {}) does not continue this log of {here} entries",
                batch.replica.size()
            ))));
            return Ok(());
        }
        let mut group = Group::default();
        let mut relayed = false;
        for (entry, accepted) in &batch.entries {
            // A relayed membership change is the origin's, never this log's.
            if accepted.origin.is_none()
                && accepted
                    .header
                    .as_ref()
                    .is_some_and(|h| h.kind.is_governance())
            {
                group.registry_changed = true;
                group.batch.insert(&membership_key(entry.seq)[..], &[][..]);
            }
            relayed |= accepted.origin.is_some();
            let record = StoredEntry {
                seq: entry.seq,
                received_at_ms: entry.received_at_ms,
                statement_id: accepted.id.0.to_vec(),
                envelope: entry.envelope.clone(),
                relay: entry.relay.clone(),
            };
            self.stage_record(&mut group, &record, accepted.id)?;
        }
        if relayed {
            group.batch.insert(ORIGINS, origins_record(&batch.replica)?);
        }
        let erased = erasures_in(batch.entries.iter().map(|(_, a)| a));
        let result = self
            .write_group(group)
            .and_then(|()| self.adopt(batch.replica, &erased));
        match result {
            Ok(()) => {
                let _ = reply.send(Ok(end));
                Ok(())
            }
            Err(e) => {
                let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                Err(e)
            }
        }
    }

    /// Logs a relayed batch ([`Store::relay`]) on a copy of the replica, which becomes the
    /// writer's once the group is durable.
    fn relay(
        &mut self,
        entries: Vec<crate::pb::SyncEntry>,
        reply: oneshot::Sender<Result<std::ops::Range<u64>, StoreError>>,
    ) -> Result<(), StoreError> {
        let here = self.replica.size();
        let received_at_ms = now_ms().max(self.replica.last_received_ms());
        let refuse = |reply: oneshot::Sender<_>, e: ReplicaError| {
            let _ = reply.send(Err(StoreError::Rejected(e)));
            Ok(())
        };
        let mut positioned = Vec::with_capacity(entries.len());
        for (i, mut entry) in entries.into_iter().enumerate() {
            entry.seq = here + i as u64;
            entry.received_at_ms = received_at_ms;
            positioned.push(entry);
        }
        let mut candidate = self.replica.clone();
        let wire = positioned
            .iter()
            .cloned()
            .map(crate::replica::Entry::from_wire);
        // Rule 9 (a statement held already) and rule 24 (a 40-byte gap leaf names one) ask
        // the id index.
        let (ids, files) = (&self.ids, &self.entries);
        let find = |id: &StatementId| {
            ids.find(id, files.durable(), |seq| files.read(seq))
                .map(|found| found.map(|e| e.seq))
        };
        let mut held = HeldIds {
            find: &find,
            batch: HashMap::new(),
            error: std::cell::RefCell::new(None),
        };
        let accepted = candidate
            .append(wire.collect(), &mut held)
            .and_then(|a| candidate.unproven_relay().map_or(Ok(a), Err));
        if let Some(e) = held.error.into_inner() {
            let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
            return Err(e);
        }
        let accepted = match accepted {
            Ok(accepted) => accepted,
            Err(e) => return refuse(reply, e),
        };
        if let Some(local) = accepted.iter().find(|a| a.origin.is_none()) {
            let _ = reply.send(Err(StoreError::Unavailable(format!(
                "entry {} of a relayed batch is not relayed (a bug)",
                local.seq
            ))));
            return Ok(());
        }
        let mut group = Group::default();
        for (entry, accepted) in positioned.into_iter().zip(&accepted) {
            let record = StoredEntry {
                seq: entry.seq,
                received_at_ms,
                statement_id: entry.statement_id,
                envelope: entry.envelope,
                relay: entry.relay,
            };
            self.stage_record(&mut group, &record, accepted.id)?;
        }
        group.batch.insert(ORIGINS, origins_record(&candidate)?);
        let end = candidate.size();
        let erased = erasures_in(&accepted);
        let result = self
            .write_group(group)
            .and_then(|()| self.adopt(candidate, &erased));
        match result {
            Ok(()) => {
                let _ = reply.send(Ok(here..end));
                Ok(())
            }
            Err(e) => {
                let _ = reply.send(Err(StoreError::Unavailable(e.to_string())));
                Err(e)
            }
        }
    }

    /// Stages one record of a batch of another hub's entries (replicated or relayed): its
    /// leaf joins the tiles, the record the entry files, its id the group.
    fn stage_record(
        &mut self,
        group: &mut Group,
        record: &StoredEntry,
        id: StatementId,
    ) -> Result<(), StoreError> {
        self.tiles.append(log::leaf_hash(&record.leaf_data()?));
        self.entries.stage(record);
        group.in_batch.insert(
            id,
            Receipt {
                statement_id: id,
                seq: record.seq,
                received_at_ms: record.received_at_ms,
            },
        );
        Ok(())
    }

    /// After a durable group of another hub's entries: `replica`, which accepted them,
    /// becomes the writer's; its registry (when the group changed it) and size are
    /// published, then the bodies the group's erasures name are overwritten — before
    /// anything is acknowledged, as for appends.
    fn adopt(&mut self, replica: Replica, erased: &[StatementId]) -> Result<(), StoreError> {
        let registry_changed = !Arc::ptr_eq(self.replica.registry(), replica.registry());
        self.replica = replica;
        if registry_changed {
            self.registry.send_replace(self.replica.registry().clone());
        }
        let end = self.replica.size();
        self.published.send_replace(end);
        self.scrub(erased, end)
    }

    /// Makes a staged group durable: the entry files synced, then the size, tiles and marks
    /// in one sled batch, flushed; then the id index learns the group's ids.
    fn write_group(&mut self, group: Group) -> Result<(), StoreError> {
        let result = self.entries.sync().and_then(|size| {
            // The records are durable; sled's batch makes them part of the log.
            let mut batch = group.batch;
            entry_files::stage_log_size(&mut batch, size);
            tiles::stage(&mut self.tiles, &mut batch);
            self.log
                .apply_batch(batch)
                .and_then(|()| self.db.flush().map(|_| ()))
                .map_err(StoreError::from)?;
            // Durable; the index learns the ids before the size is published.
            self.ids
                .add(group.in_batch.iter().map(|(id, r)| (*id, r.seq)), size)
        });
        if result.is_err() {
            self.entries.discard();
        }
        result
    }

    fn commit(&mut self, jobs: Vec<AppendJob>) -> Result<(), StoreError> {
        let mut group = Group::default();
        let mut outcomes = Vec::with_capacity(jobs.len());
        let mut failure = None;
        for job in &jobs {
            match self.stage(job, &mut group) {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let registry_changed = group.registry_changed;
        let result = match failure {
            Some(e) => {
                self.entries.discard();
                Err(e)
            }
            None => self.write_group(group),
        };
        match result {
            Ok(()) => {
                if registry_changed {
                    self.registry.send_replace(self.replica.registry().clone());
                }
                self.published.send_replace(self.replica.size());
                // Erasures are durable and published, so a reader that takes the registry after
                // reading an entry (`StoredEntry::into_sync_entry`) knows why a body is gone: the
                // bodies now leave the disk, before any acknowledgement. A crash before this is
                // redone at the next start.
                if let Err(e) = self.scrub_erasures(&jobs, &outcomes, self.replica.size()) {
                    let msg = e.to_string();
                    for job in jobs {
                        let _ = job.reply.send(Err(StoreError::Unavailable(msg.clone())));
                    }
                    return Err(e);
                }
                count_ingest(&jobs, &outcomes);
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome.map_err(StoreError::Rejected));
                }
                Ok(())
            }
            Err(e) => {
                // The replica has moved past entries that are not on disk: the writer stops
                // (see `run`) and a restart restores it from what is.
                let msg = e.to_string();
                for job in jobs {
                    let _ = job.reply.send(Err(StoreError::Unavailable(msg.clone())));
                }
                Err(e)
            }
        }
    }

    /// Overwrites the bodies the group's newly logged erasures erase (`erasure.rs`).
    fn scrub_erasures(
        &self,
        jobs: &[AppendJob],
        outcomes: &[Result<Appended, ReplicaError>],
        size: u64,
    ) -> Result<(), StoreError> {
        let targets: Vec<StatementId> = jobs
            .iter()
            .zip(outcomes)
            .filter(|(_, o)| matches!(o, Ok(a) if !a.already_present))
            .filter_map(|(job, _)| erasure::erasure_targets(&job.verified.statement.body))
            .collect();
        self.scrub(&targets, size)
    }

    /// Overwrites the bodies of the statements `targets` names in a log of `size` entries, as
    /// the registry's erasures decide (`erasure.rs`).
    fn scrub(&self, targets: &[StatementId], size: u64) -> Result<(), StoreError> {
        if targets.is_empty() {
            return Ok(());
        }
        let entries = &self.entries;
        erasure::scrub(entries.files(), self.replica.registry(), targets, |id| {
            self.ids.find(id, size, |seq| entries.read(seq))
        })
        .map(|_| ())
    }

    /// Stages one append into the group. The outer error is a storage failure (fatal for the
    /// group); the inner one refuses this statement alone and changes nothing.
    fn stage(
        &mut self,
        job: &AppendJob,
        group: &mut Group,
    ) -> Result<Result<Appended, ReplicaError>, StoreError> {
        let id = job.verified.id;
        if let Some(receipt) = group.in_batch.get(&id) {
            return Ok(Ok(Appended {
                receipt: *receipt,
                already_present: true,
            }));
        }
        let entries = &self.entries;
        if let Some(entry) = self
            .ids
            .find(&id, entries.durable(), |seq| entries.read(seq))?
        {
            return Ok(Ok(Appended {
                receipt: entry.receipt()?,
                already_present: true,
            }));
        }
        let seq = self.replica.size();
        // Receipt times never go backwards, even if the wall clock does.
        let position = Position {
            seq,
            received_at_ms: now_ms().max(self.replica.last_received_ms()),
        };
        // Every replica rule at this position: a key revoked or a member suspended since the
        // handler verified the statement is refused here, so every logged entry replays.
        let mut seen = LoggedIds {
            in_batch: &mut group.in_batch,
        };
        if let Err(e) = self
            .replica
            .append_verified(&job.verified, position, &mut seen)
        {
            return Ok(Err(e));
        }
        let received_at_ms = position.received_at_ms;
        if job.verified.header.kind.is_governance() {
            group.registry_changed = true;
            group.batch.insert(&membership_key(seq)[..], &[][..]);
        }
        self.entries
            .stage(&StoredEntry::new(seq, received_at_ms, &job.verified));
        // The changed tiles join the batch when the group commits (`tiles::stage`).
        self.tiles
            .append(log::leaf_hash(&record::leaf_data(&id, received_at_ms)));
        let receipt = Receipt {
            statement_id: id,
            seq,
            received_at_ms,
        };
        group.in_batch.insert(id, receipt);
        Ok(Ok(Appended {
            receipt,
            already_present: false,
        }))
    }
}

/// The ingest counters (through the `metrics` facade): statements newly logged, and the hashes
/// their hash sets carry.
fn count_ingest(jobs: &[AppendJob], outcomes: &[Result<Appended, ReplicaError>]) {
    let (mut statements, mut hashes) = (0u64, 0u64);
    for (job, outcome) in jobs.iter().zip(outcomes) {
        if matches!(outcome, Ok(a) if !a.already_present) {
            statements += 1;
            if let crate::statement::Body::HashSet(set) = &job.verified.statement.body {
                hashes += set.entries.len() as u64;
            }
        }
    }
    metrics::counter!("coalition_ingested_statements_total").increment(statements);
    metrics::counter!("coalition_ingested_hashes_total").increment(hashes);
}

/// What one group commit accumulates.
#[derive(Default)]
struct Group {
    batch: sled::Batch,
    in_batch: HashMap<StatementId, Receipt>,
    registry_changed: bool,
}

/// Removes every key of `log` that starts with `prefix`, `per_batch` keys a batch (so an
/// upgrade's memory stays bounded), and flushes if it removed any; returns how many. The last
/// step of a layout upgrade, once the new form is durable: a crash part way leaves keys that
/// the next open removes.
fn remove_prefix(
    db: &sled::Db,
    log: &sled::Tree,
    prefix: u8,
    per_batch: usize,
) -> Result<u64, StoreError> {
    let mut removed = 0u64;
    loop {
        let mut batch = sled::Batch::default();
        let mut in_batch = 0;
        for key in log.scan_prefix([prefix]).keys().take(per_batch) {
            batch.remove(key?);
            in_batch += 1;
        }
        if in_batch == 0 {
            break;
        }
        log.apply_batch(batch)?;
        removed += in_batch as u64;
    }
    if removed > 0 {
        db.flush()?;
    }
    Ok(removed)
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}
