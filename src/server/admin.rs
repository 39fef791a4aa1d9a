//! The `Admin` service: membership queries for admins and auditors. Membership changes are
//! signed statements and go through `Hub.Submit` like everything else.

use super::auth;
use crate::membership::{MemberId, Registry};
use crate::pb;
use crate::store::{MAX_ACCESS_PAGE, Store};
use tonic::{Request, Response, Status};

/// Access records per `ListAccess` page when the request does not say.
const DEFAULT_ACCESS_PAGE: usize = 100;

/// The `coalition.v1.Admin` implementation.
#[derive(Clone)]
pub struct AdminService {
    store: Store,
    peers: super::pulling::PeerStatuses,
    peer_genesis: std::collections::BTreeMap<String, crate::statement::StatementId>,
}

impl AdminService {
    /// A service over `store`, reporting the relays of `peers` (their statuses kept in
    /// `statuses`).
    pub fn new(
        store: Store,
        peers: &[crate::federation::Peer],
        statuses: super::pulling::PeerStatuses,
    ) -> Self {
        AdminService {
            store,
            peers: statuses,
            peer_genesis: peers.iter().map(|p| (p.addr.clone(), p.genesis)).collect(),
        }
    }
}

fn member_id(raw: &str) -> Result<MemberId, Status> {
    MemberId::parse(raw).map_err(|e| Status::invalid_argument(format!("member_id: {e}")))
}

fn not_found(id: &MemberId) -> Status {
    Status::not_found(format!(
        "member '{id}' is not registered with this hub; `coalition admin member list` shows who is"
    ))
}

/// The wire form of the coalition's governance.
pub fn coalition_to_wire(registry: &Registry, log_size: u64) -> Option<pb::Coalition> {
    let c = registry.coalition()?;
    Some(pb::Coalition {
        hub_name: c.hub_name.clone(),
        hub_public_key: c.hub_key.to_bytes().to_vec(),
        genesis_statement_id: c.genesis_id.0.to_vec(),
        quorum: c.quorum,
        admins: registry
            .signing_admins()
            .into_iter()
            .map(ToString::to_string)
            .collect(),
        log_size,
        settings: Some(c.settings.to_wire()),
    })
}

#[tonic::async_trait]
impl pb::admin_server::Admin for AdminService {
    async fn get_federation_status(
        &self,
        request: Request<pb::GetFederationStatusRequest>,
    ) -> Result<Response<pb::FederationStatus>, Status> {
        auth::caller(&request)?;
        let statuses = self.peers.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let peers = self
            .peer_genesis
            .iter()
            .map(|(addr, genesis)| {
                let (s, refused) = statuses.get(addr).cloned().unwrap_or_default();
                pb::PeerRelayStatus {
                    addr: addr.clone(),
                    genesis_id: genesis.0.to_vec(),
                    relayed_to: s.relayed_to,
                    peer_size: s.peer_size,
                    seen_at_ms: s.seen_at_ms,
                    statements: s.statements,
                    refusals: s.refusals,
                    refused: refused.unwrap_or_default(),
                }
            })
            .collect();
        let replica = self.store.replica().await.map_err(super::status::store)?;
        let origins = replica
            .origins()
            .map(|(genesis, hub_name, r)| pb::OriginStatus {
                genesis_id: genesis.0.to_vec(),
                hub_name: hub_name.to_owned(),
                entries: r.size(),
                proven: replica.proven_of(genesis).unwrap_or_default(),
                last_received_at_ms: r.last_received_ms(),
                checkpoint: r
                    .checkpoint()
                    .map(|(_, n)| n.to_owned())
                    .unwrap_or_default(),
            })
            .collect();
        let store = self.store.clone();
        let witnesses = tokio::task::spawn_blocking(move || witness_statuses(&store))
            .await
            .map_err(|e| Status::internal(format!("witness status task failed: {e}")))?
            .map_err(super::status::store)?;
        Ok(Response::new(pb::FederationStatus {
            peers,
            origins,
            witnesses,
        }))
    }

    async fn get_coalition(
        &self,
        request: Request<pb::GetCoalitionRequest>,
    ) -> Result<Response<pb::Coalition>, Status> {
        auth::caller(&request)?;
        coalition_to_wire(&self.store.registry(), self.store.log_size())
            .map(Response::new)
            .ok_or_else(|| Status::failed_precondition("this hub has no genesis yet"))
    }

    async fn get_member(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        auth::caller(&request)?;
        let id = member_id(&request.into_inner().member_id)?;
        let member = self.store.member(&id).ok_or_else(|| not_found(&id))?;
        Ok(Response::new(member.to_wire()))
    }

    async fn get_member_history(
        &self,
        request: Request<pb::GetMemberRequest>,
    ) -> Result<Response<pb::MemberHistory>, Status> {
        auth::caller(&request)?;
        let id = member_id(&request.into_inner().member_id)?;
        let registry = self.store.registry();
        if registry.member(&id).is_none() {
            return Err(not_found(&id));
        }
        let events = registry
            .history(&id)
            .iter()
            .map(|e| pb::MemberEvent {
                seq: e.position.seq,
                received_at_ms: e.position.received_at_ms,
                statement_id: e.statement_id.0.to_vec(),
                signed_by: e.signed_by.iter().map(ToString::to_string).collect(),
                change: e.change.clone(),
                reason: e.reason.clone(),
            })
            .collect();
        Ok(Response::new(pb::MemberHistory {
            member_id: id.to_string(),
            events,
        }))
    }
    async fn list_access(
        &self,
        request: Request<pb::ListAccessRequest>,
    ) -> Result<Response<pb::ListAccessResponse>, Status> {
        auth::caller(&request)?;
        let req = request.into_inner();
        let member = match req.member_id.as_str() {
            "" => None,
            raw => Some(member_id(raw)?),
        };
        let limit = match req.limit {
            0 => DEFAULT_ACCESS_PAGE,
            n if n as usize > MAX_ACCESS_PAGE => {
                return Err(Status::invalid_argument(format!(
                    "limit: at most {MAX_ACCESS_PAGE} records per page, got {n}"
                )));
            }
            n => n as usize,
        };
        if !req.page_token.is_empty() && req.page_token.len() != 16 {
            return Err(Status::invalid_argument(format!(
                "page_token: must be the 16 bytes of a previous next_page_token, got {}",
                req.page_token.len()
            )));
        }
        let to_ms = if req.to_ms == 0 { i64::MAX } else { req.to_ms };
        let store = self.store.clone();
        let after = (!req.page_token.is_empty()).then_some(req.page_token);
        let page = tokio::task::spawn_blocking(move || {
            store
                .access()
                .list(req.from_ms, to_ms, member.as_ref(), limit, after.as_deref())
        })
        .await
        .map_err(|e| Status::internal(format!("access log reader failed: {e}")))?
        .map_err(super::status::store)?;
        Ok(Response::new(pb::ListAccessResponse {
            records: page
                .records
                .into_iter()
                .map(|r| pb::AccessRecord {
                    started_at_ms: r.started_at_ms,
                    ended_at_ms: r.ended_at_ms,
                    member_id: r.member.to_string(),
                    rpc: r.call.name().to_owned(),
                    entries: r.entries,
                    bytes: r.bytes,
                    queries: r.queries,
                    hits: r.hits,
                })
                .collect(),
            next_page_token: page.next.unwrap_or_default(),
        }))
    }
}

/// Checkpoints read back at most, looking for each witness's latest cosignature.
const WITNESS_STATUS_CHECKPOINTS: usize = 1_000;

/// Each witness of the policy in force: the largest of the latest
/// [`WITNESS_STATUS_CHECKPOINTS`] checkpoints it cosigned (verified under the policy), and
/// the cosignature's timestamp.
fn witness_statuses(store: &Store) -> Result<Vec<pb::WitnessStatus>, crate::store::StoreError> {
    let registry = store.registry();
    let Some(policy) = registry
        .coalition()
        .and_then(|c| c.settings.witnesses.as_ref())
    else {
        return Ok(Vec::new());
    };
    let mut found: std::collections::BTreeMap<String, (u64, u64)> = policy
        .witnesses()
        .map(|w| (w.key.name().to_owned(), (0, 0)))
        .collect();
    let Some(latest) = store.latest_checkpoint()? else {
        return Ok(Vec::new());
    };
    for cp in store.checkpoints_down_from(latest.size, WITNESS_STATUS_CHECKPOINTS)? {
        if found.values().all(|(size, _)| *size > 0) {
            break;
        }
        for (name, at) in policy.check(&cp.note, &cp.cosignatures).cosigned {
            if let Some(entry) = found.get_mut(&name)
                && entry.0 == 0
            {
                *entry = (cp.size, at);
            }
        }
    }
    Ok(found
        .into_iter()
        .map(|(name, (size, at))| pb::WitnessStatus {
            name,
            cosigned_size: size,
            cosigned_at_s: at,
        })
        .collect())
}
