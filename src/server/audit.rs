//! The `Audit` service: signed checkpoints, inclusion and consistency proofs, and raw entries.
//! Thin, like `hub.rs`: authorize, convert, call the store or the checkpointer, convert back.

use super::checkpointer::Checkpointer;
use super::shutdown::{self, Listener};
use super::{auth, status};
use crate::pb;
use crate::statement::StatementId;
use crate::store::{PublishedCheckpoint, Store};
use std::pin::Pin;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Most entries one `GetEntries` call returns (docs/PROTOCOL.md).
pub const MAX_ENTRIES_PER_CALL: u64 = 10_000;
/// Most envelope payload bytes one `GetEntries` call returns (at least one entry is sent).
pub const MAX_ENTRY_BYTES_PER_CALL: usize = 64 * 1024 * 1024;
/// Entries read from the store per step of a `GetEntries` stream.
const ENTRIES_CHUNK: u64 = 256;
/// Messages buffered per `GetEntries` stream before the server waits for the client.
const ENTRIES_BUFFER: usize = 16;
/// Bytes buffered per `GetEntries` stream (or one larger entry) before the server waits.
const ENTRIES_BUFFER_BYTES: usize = 4 * 1024 * 1024;

/// `ListCheckpoints` page size when the request says 0.
const DEFAULT_CHECKPOINT_PAGE: usize = 100;
/// Largest `ListCheckpoints` page.
const MAX_CHECKPOINT_PAGE: usize = 1000;

/// The `coalition.v1.Audit` implementation.
#[derive(Clone)]
pub struct AuditService {
    store: Store,
    checkpointer: Checkpointer,
    shutdown: Listener,
}

impl AuditService {
    /// Membership and settings as of the durable log.
    pub(super) fn registry(&self) -> std::sync::Arc<crate::membership::Registry> {
        self.store.registry()
    }

    /// A service over `store`, publishing on demand through `checkpointer`; its entry streams
    /// end when `shutdown` begins.
    pub fn new(store: Store, checkpointer: Checkpointer, shutdown: Listener) -> Self {
        AuditService {
            store,
            checkpointer,
            shutdown,
        }
    }

    /// Runs a store read on the blocking pool (proofs may read up to ~200 nodes from disk).
    async fn blocking<T, F>(&self, f: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, Status> + Send + 'static,
    {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| Status::internal(format!("audit task failed: {e}")))?
    }

    /// The latest checkpoint, publishing one if none exists yet.
    async fn latest(&self) -> Result<PublishedCheckpoint, Status> {
        let latest = self
            .blocking(|s| s.latest_checkpoint().map_err(status::store))
            .await?;
        match latest {
            Some(cp) => Ok(cp),
            None => self.checkpointer.refresh().await.map_err(status::publish),
        }
    }
}

pub(super) type EntryStream = Pin<Box<dyn Stream<Item = Result<pb::SyncEntry, Status>> + Send>>;

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        auth::caller(&request)?;
        let req = request.into_inner();
        let cp = match (req.tree_size, req.refresh) {
            (Some(_), true) => {
                return Err(Status::invalid_argument(
                    "refresh: applies to the latest checkpoint only; leave tree_size unset to refresh",
                ));
            }
            (Some(size), false) => self
                .blocking(move |s| s.checkpoint(size).map_err(status::store))
                .await?
                .ok_or_else(|| {
                    Status::not_found(format!(
                        "tree_size: the hub published no checkpoint for {size} entries; ListCheckpoints lists the published sizes"
                    ))
                })?,
            (None, true) => {
                let mut cp = self
                    .checkpointer
                    .refresh()
                    .await
                    .map_err(status::publish)?;
                // The publisher's copy predates the witnesses' answers: read them now.
                let size = cp.size;
                cp.cosignatures = self
                    .blocking(move |s| s.cosignatures_of(size).map_err(status::store))
                    .await?;
                cp
            }
            (None, false) => self.latest().await?,
        };
        Ok(Response::new(checkpoint_to_wire(cp)))
    }

    async fn list_checkpoints(
        &self,
        request: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        auth::caller(&request)?;
        let req = request.into_inner();
        let limit = match req.limit as usize {
            0 => DEFAULT_CHECKPOINT_PAGE,
            n => n.min(MAX_CHECKPOINT_PAGE),
        };
        let from = req.from_size;
        let page = self
            .blocking(move |s| s.checkpoints_from(from, limit).map_err(status::store))
            .await?;
        let next_from_size = match page.last() {
            Some(last) if page.len() == limit => last.size.checked_add(1),
            _ => None,
        };
        Ok(Response::new(pb::ListCheckpointsResponse {
            checkpoints: page.into_iter().map(checkpoint_to_wire).collect(),
            next_from_size,
        }))
    }

    async fn get_inclusion_proof(
        &self,
        request: Request<pb::GetInclusionProofRequest>,
    ) -> Result<Response<pb::InclusionProof>, Status> {
        use pb::get_inclusion_proof_request::Leaf;
        auth::caller(&request)?;
        let req = request.into_inner();
        let index = match req.leaf {
            Some(Leaf::LeafIndex(index)) => index,
            Some(Leaf::StatementId(raw)) => {
                let id = StatementId::from_slice(&raw).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "statement_id: must be 32 bytes, got {}",
                        raw.len()
                    ))
                })?;
                self.blocking(move |s| s.entry_by_id(&id).map_err(status::store))
                    .await?
                    .ok_or_else(|| {
                        Status::not_found(format!(
                            "statement_id: no statement {id} in this hub's log"
                        ))
                    })?
                    .seq
            }
            None => {
                return Err(Status::invalid_argument(
                    "leaf: set leaf_index or statement_id",
                ));
            }
        };
        // tree_size 0: the latest checkpoint, refreshed if it does not hold the entry yet.
        let checkpoint = match req.tree_size {
            0 => {
                let latest = self.latest().await?;
                if latest.size <= index && index < self.store.log_size() {
                    Some(self.checkpointer.refresh().await.map_err(status::publish)?)
                } else {
                    Some(latest)
                }
            }
            size => {
                self.blocking(move |s| s.checkpoint(size).map_err(status::store))
                    .await?
            }
        };
        let tree_size = checkpoint.as_ref().map_or(req.tree_size, |c| c.size);
        let (path, entry) = self
            .blocking(move |s| {
                let path = s
                    .inclusion_proof(index, tree_size)
                    .map_err(status::proof_request)?;
                let entry = s.entry(index).map_err(status::store)?.ok_or_else(|| {
                    Status::internal(format!(
                        "entry {index} is missing from the store; operators: see the hub log"
                    ))
                })?;
                Ok((path, entry))
            })
            .await?;
        let id = entry.id().map_err(status::store)?;
        let data = entry.leaf_data().map_err(status::store)?;
        Ok(Response::new(pb::InclusionProof {
            leaf_index: index,
            tree_size,
            statement_id: id.0.to_vec(),
            received_at_ms: entry.received_at_ms,
            leaf_data: data.clone(),
            leaf_hash: crate::log::leaf_hash(&data).0.to_vec(),
            audit_path: path.iter().map(|h| h.0.to_vec()).collect(),
            checkpoint: checkpoint.map(checkpoint_to_wire),
        }))
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        auth::caller(&request)?;
        let pb::GetConsistencyProofRequest { old_size, new_size } = request.into_inner();
        let (proof, old_checkpoint, new_checkpoint) = self
            .blocking(move |s| {
                let proof = s
                    .consistency_proof(old_size, new_size)
                    .map_err(status::proof_request)?;
                let old = s.checkpoint(old_size).map_err(status::store)?;
                let new = s.checkpoint(new_size).map_err(status::store)?;
                Ok((proof, old, new))
            })
            .await?;
        Ok(Response::new(pb::ConsistencyProof {
            old_size,
            new_size,
            proof: proof.iter().map(|h| h.0.to_vec()).collect(),
            old_checkpoint: old_checkpoint.map(checkpoint_to_wire),
            new_checkpoint: new_checkpoint.map(checkpoint_to_wire),
        }))
    }

    type GetEntriesStream = EntryStream;

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<Self::GetEntriesStream>, Status> {
        let reads = crate::statement::Reader::of(&auth::caller(&request)?);
        self.entries(request.into_inner(), reads)
    }
}

impl AuditService {
    /// `GetEntries` for a caller reading as `reads`.
    pub(super) fn entries(
        &self,
        request: pb::GetEntriesRequest,
        reads: crate::statement::Reader,
    ) -> Result<Response<EntryStream>, Status> {
        if self.shutdown.is_shutting_down() {
            return Err(shutdown::shutting_down());
        }
        let pb::GetEntriesRequest { start, end } = request;
        if start > end {
            return Err(Status::invalid_argument(format!(
                "start {start} is after end {end}: entries are returned for start <= seq < end"
            )));
        }
        let log_size = self.store.log_size();
        if end > log_size {
            return Err(Status::out_of_range(format!(
                "end {end} is beyond the log size {log_size}: this server is behind; ask for at most {log_size}, retry later or use another server"
            )));
        }
        let end = end.min(start.saturating_add(MAX_ENTRIES_PER_CALL));
        let (tx, rx) = super::limits::byte_bounded(ENTRIES_BUFFER, ENTRIES_BUFFER_BYTES);
        tokio::spawn(stream_range(
            self.store.clone(),
            start..end,
            reads,
            tx,
            self.shutdown.clone(),
        ));
        let stream = self.shutdown.clone().end_stream(rx);
        Ok(Response::new(Box::pin(stream)))
    }
}

/// Sends the entries of `range` in order, read in chunks off the async workers, stopping
/// after `MAX_ENTRY_BYTES_PER_CALL` of payload, or when the hub shuts down.
async fn stream_range(
    store: Store,
    range: std::ops::Range<u64>,
    reads: crate::statement::Reader,
    tx: super::limits::ByteSender<Result<pb::SyncEntry, Status>>,
    mut shutdown: Listener,
) {
    let (mut cursor, end) = (range.start, range.end);
    let mut bytes = 0usize;
    // Queues one message, false when the client went away or the hub is shutting down.
    let send = async |msg: Result<pb::SyncEntry, Status>, shutdown: &mut Listener| {
        let len = msg.as_ref().map_or(0, prost::Message::encoded_len);
        tokio::select! {
            biased;
            () = shutdown.begun() => false,
            sent = tx.send(msg, len) => sent,
        }
    };
    while cursor < end && bytes < MAX_ENTRY_BYTES_PER_CALL {
        if shutdown.is_shutting_down() {
            return;
        }
        let to = end.min(cursor + ENTRIES_CHUNK);
        // Read no more than the call's remaining byte budget (plus the entry that crosses it).
        let budget = MAX_ENTRY_BYTES_PER_CALL - bytes;
        let chunk = match super::read_entries(&store, cursor, to, budget).await {
            Ok(chunk) => chunk,
            Err(status) => {
                send(Err(status), &mut shutdown).await;
                return;
            }
        };
        let registry = store.registry();
        for entry in chunk {
            if entry.seq != cursor {
                // A gap below the durable size: a store inconsistency, not a client problem.
                let missing = Status::internal(format!(
                    "entry {cursor} is missing from the store; operators: see the hub log"
                ));
                send(Err(missing), &mut shutdown).await;
                return;
            }
            cursor += 1;
            bytes += entry
                .envelope
                .as_ref()
                .map_or(0, |e| e.payload.len() + e.body.len());
            // An auditor reads every body; a member gets a restricted statement's body only
            // where the read rule admits it (§2.7), as in a sync.
            let readable = matches!(reads, crate::statement::Reader::Everything)
                || entry
                    .header()
                    .is_none_or(|h| entry.readable_by(&h, &reads, &registry));
            if !send(
                Ok(entry.into_sync_entry(&registry, readable)),
                &mut shutdown,
            )
            .await
            {
                return; // the client went away, or the hub is shutting down
            }
            if bytes >= MAX_ENTRY_BYTES_PER_CALL {
                return;
            }
        }
    }
}

fn checkpoint_to_wire(cp: PublishedCheckpoint) -> pb::SignedCheckpoint {
    pb::SignedCheckpoint {
        tree_size: cp.size,
        root_hash: cp.root.0.to_vec(),
        note: cp.note,
        cosignatures: cp.cosignatures,
    }
}
