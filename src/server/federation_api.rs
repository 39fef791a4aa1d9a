//! The `coalition.v1.Federation` service (docs/PROTOCOL.md §3.10): a peer hub — a member
//! holding the `peer` role, which may call nothing else (`auth::policy`) — pulls this hub's
//! log to relay it: checkpoints, consistency proofs and entries, the same reads as `Audit`,
//! except that a restricted statement comes without its body — unless it names a member of
//! the hub the caller pulls for (the federation settings' `peer`) and was logged here (a
//! restricted body reaches a hub only directly from its origin).

use super::audit::{AuditService, EntryStream};
use crate::pb;
use crate::pb::audit_server::Audit;
use crate::statement::Reader;
use tonic::{Request, Response, Status};

/// The `coalition.v1.Federation` implementation, over the hub's audit reads.
pub struct FederationService(pub AuditService);

#[tonic::async_trait]
impl pb::federation_server::Federation for FederationService {
    async fn get_checkpoint(
        &self,
        request: Request<pb::GetCheckpointRequest>,
    ) -> Result<Response<pb::SignedCheckpoint>, Status> {
        self.0.get_checkpoint(request).await
    }

    async fn list_checkpoints(
        &self,
        request: Request<pb::ListCheckpointsRequest>,
    ) -> Result<Response<pb::ListCheckpointsResponse>, Status> {
        self.0.list_checkpoints(request).await
    }

    async fn get_consistency_proof(
        &self,
        request: Request<pb::GetConsistencyProofRequest>,
    ) -> Result<Response<pb::ConsistencyProof>, Status> {
        self.0.get_consistency_proof(request).await
    }

    type GetEntriesStream = EntryStream;

    async fn get_entries(
        &self,
        request: Request<pb::GetEntriesRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        let caller = super::auth::caller(&request)?;
        // The hub this peer pulls for reads the restricted statements naming its members.
        let reads = self
            .0
            .registry()
            .coalition()
            .and_then(|c| {
                c.settings
                    .federation
                    .hub_of_peer(&caller.id)
                    .map(str::to_owned)
            })
            .map_or(Reader::Relay, Reader::Hub);
        self.0.entries(request.into_inner(), reads)
    }
}
