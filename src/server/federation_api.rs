//! The `coalition.v1.Federation` service (docs/PROTOCOL.md §3.10): a peer hub — a member
//! holding the `peer` role, which may call nothing else (`auth::policy`) — pulls this hub's
//! log to relay it: checkpoints, consistency proofs and entries, the same reads as `Audit`,
//! except that a restricted statement comes without its body (bodies stay at their origin).

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
        super::auth::caller(&request)?;
        self.0.entries(request.into_inner(), Reader::Relay)
    }
}
