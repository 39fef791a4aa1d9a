//! The `Admin` service: membership administration, for callers with the `admin` role.

use super::{auth, status};
use crate::membership::{Member, Role};
use crate::pb;
use crate::store::{Store, now_ms};
use tonic::{Request, Response, Status};

/// The `coalition.v1.Admin` implementation.
#[derive(Clone)]
pub struct AdminService {
    store: Store,
}

impl AdminService {
    /// A service over `store`.
    pub fn new(store: Store) -> Self {
        AdminService { store }
    }
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn add_member(
        &self,
        request: Request<pb::AddMemberRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        auth::authorize(&self.store, &request, &[Role::Admin], "add members")?;
        let member = Member::admit(request.into_inner(), now_ms()).map_err(status::membership)?;
        let store = self.store.clone();
        let stored = member.clone();
        tokio::task::spawn_blocking(move || store.add_member(&stored))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status::store)?;
        tracing::info!(member = %member.id, "member added");
        Ok(Response::new(member.to_wire()))
    }
}
