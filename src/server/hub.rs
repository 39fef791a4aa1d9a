//! The `Hub` service: submit, sync, statement lookup and the member directory. Thin: each
//! handler takes the caller the request gate authorized (`auth::caller`), converts wire to
//! domain, calls `statement`/`store`, converts back.

use super::indexer::Matching;
use super::match_states::{self, MatchStates};
use super::shutdown::{self, Listener};
use super::verification::Verifier;
use super::{access, auth, limits, status};
use crate::lifecycle::HashKey;
use crate::matching::{MAX_QUERIES, MatchOptions, Query, VpdqRule};
use crate::membership::{MemberId, Registry, check_cosigner, check_submitter};
use crate::pb;
use crate::replica::PROTOCOL_VERSION;
use crate::statement::{
    Body, HashType, Kind, Label, ParsedEnvelope, Reader, StatementError, StatementId, SyncFilter,
    Verified, payload_version,
};
use crate::store::{Store, now_ms};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Entries buffered per sync stream before the server waits for the client (backpressure).
const SYNC_BUFFER: usize = 16;
/// Bytes buffered per sync stream (or one larger entry) before the server waits for the
/// client; the chunk being read adds at most `SYNC_CHUNK_BYTES` plus one entry.
pub const SYNC_BUFFER_BYTES: usize = 4 * 1024 * 1024;
/// Most bytes read from the store per sync chunk.
const SYNC_CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Most entries read from the store per sync chunk.
const SYNC_CHUNK_ENTRIES: u64 = 256;

/// How often an idle following stream re-checks that its member may still read.
const MEMBERSHIP_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// Below this many queries per thread a batch is answered on one thread.
const PARALLEL_MATCH_MIN: usize = 64;
/// Most matches returned for one query (more: `MatchResult.truncated`). A set may list one
/// hash any number of times; the first (oldest, or nearest for PDQ) are kept.
pub const MAX_MATCHES_PER_QUERY: usize = 100;
/// Most matches in one Match response, over all its queries (more: `truncated`). With
/// `MAX_QUERIES` queries this also bounds the response to a few MiB.
pub const MAX_MATCHES_PER_RESPONSE: usize = 10_000;
/// Most envelopes in one `SubmitBatch` (more: INVALID_ARGUMENT); its request body is bounded
/// by `auth::MAX_BATCH_REQUEST_BYTES`.
pub const MAX_BATCH_ENVELOPES: usize = 1_000;
/// How long a Match call waits for the corpus to reach the log size it saw on arrival.
const MATCH_INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// The `coalition.v1.Hub` implementation.
#[derive(Clone)]
pub struct HubService {
    store: Store,
    matching: Matching,
    /// Lifecycle states Match calls decided, shared while the registry is unchanged.
    states: Arc<super::match_states::SharedStates>,
    shutdown: Listener,
    quota: super::quota::Quota,
    verifier: Verifier,
    /// The hub this one mirrors: then every write is refused.
    mirror_of: Option<String>,
}

impl HubService {
    /// A service over `store`, matching against `matching`; its sync streams end when
    /// `shutdown` begins. `mirror_of`: the upstream of a read-only mirror. `quota`: the
    /// member quotas, one ledger shared with the TAXII API.
    /// Submitted statements are checked on `verifier`'s threads.
    pub fn new(
        store: Store,
        matching: Matching,
        verifier: Verifier,
        shutdown: Listener,
        mirror_of: Option<String>,
        quota: super::quota::Quota,
    ) -> Self {
        HubService {
            mirror_of,
            quota,
            store,
            matching,
            states: Arc::default(),
            shutdown,
            verifier,
        }
    }
}

impl HubService {
    /// A mirror accepts no writes: FAILED_PRECONDITION, naming the hub to submit to.
    fn writable(&self) -> Result<(), Status> {
        match &self.mirror_of {
            None => Ok(()),
            Some(upstream) => Err(status::refused(
                "read_only_mirror",
                Status::failed_precondition(format!(
                    "this hub is a read-only mirror of {upstream}: submit to that hub"
                )),
            )),
        }
    }
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<pb::SyncResponse, Status>> + Send>>;

#[tonic::async_trait]
impl pb::hub_server::Hub for HubService {
    async fn submit(
        &self,
        request: Request<pb::SubmitRequest>,
    ) -> Result<Response<pb::SubmitResponse>, Status> {
        self.writable()?;
        let member = auth::caller(&request)?.id;
        let envelope = request
            .into_inner()
            .envelope
            .ok_or_else(|| Status::invalid_argument("envelope: missing"))?;
        let registry = self.store.registry();
        let store = self.store.clone();
        // Decoding and verifying a large set takes milliseconds of CPU: off the async
        // workers (a small statement alone is checked in place: `verification.rs`). The
        // store's writer re-checks entitlement at the entry's position.
        let verified = self
            .verifier
            .check_each(vec![envelope], move |envelope| {
                check_submission(envelope, &member, &registry, &store)
            })
            .await?
            .pop()
            .ok_or_else(|| Status::internal("verification returned nothing"))??;
        self.quota.submission(&verified.header)?;
        let appended = self.store.append(verified).await.map_err(status::store)?;
        Ok(Response::new(submit_response(&appended)))
    }

    async fn submit_batch(
        &self,
        request: Request<pb::SubmitBatchRequest>,
    ) -> Result<Response<pb::SubmitBatchResponse>, Status> {
        self.writable()?;
        let member = auth::caller(&request)?.id;
        let envelopes = request.into_inner().envelopes;
        if envelopes.is_empty() {
            return Err(Status::invalid_argument(
                "envelopes: empty; send at least one envelope",
            ));
        }
        if envelopes.len() > MAX_BATCH_ENVELOPES {
            return Err(status::refused(
                "batch_too_large",
                Status::invalid_argument(format!(
                    "envelopes: at most {MAX_BATCH_ENVELOPES} per SubmitBatch, got {}; split the batch",
                    envelopes.len()
                )),
            ));
        }
        let registry = self.store.registry();
        let store = self.store.clone();
        // Every envelope checked in parallel over the verification threads, then charged to
        // the quota in request order, then handed to the writer together (one group commit).
        let checked = self
            .verifier
            .check_each(envelopes, move |envelope| {
                check_submission(envelope, &member, &registry, &store)
            })
            .await?;
        let checked: Vec<Result<_, Status>> = checked
            .into_iter()
            .map(|c| c.and_then(|v| self.quota.submission(&v.header).map(|()| v)))
            .collect();
        let mut outcomes: Vec<Option<pb::SubmitOutcome>> = Vec::with_capacity(checked.len());
        let mut accepted = Vec::new();
        for c in checked {
            match c {
                Ok(verified) => {
                    accepted.push(verified);
                    outcomes.push(None);
                }
                Err(refused) => outcomes.push(Some(refusal_outcome(&refused))),
            }
        }
        let mut appended = self.store.append_all(accepted).await.into_iter();
        let outcomes = outcomes
            .into_iter()
            .map(|o| match o {
                Some(refused) => refused,
                None => match appended.next() {
                    Some(Ok(a)) => pb::SubmitOutcome {
                        code: tonic::Code::Ok as i32,
                        message: String::new(),
                        response: Some(submit_response(&a)),
                        retry_after_s: 0,
                    },
                    Some(Err(e)) => refusal_outcome(&status::store(e)),
                    None => refusal_outcome(&Status::internal("the store returned no outcome")),
                },
            })
            .collect();
        Ok(Response::new(pb::SubmitBatchResponse { outcomes }))
    }

    type SyncStream = SyncStream;

    async fn sync(
        &self,
        request: Request<pb::SyncRequest>,
    ) -> Result<Response<Self::SyncStream>, Status> {
        if self.shutdown.is_shutting_down() {
            return Err(shutdown::shutting_down());
        }
        let caller = auth::caller(&request)?;
        let (reader, reads) = (caller.id.clone(), Reader::of(&caller));
        let peer = auth::PeerCert::of(&request)?;
        let req = request.into_inner();
        let filter = parse_filter(&req)?;
        self.quota.sync_start(&reader, &filter)?;
        let log_size = self.store.log_size();
        if req.from_seq > log_size {
            return Err(Status::out_of_range(format!(
                "from_seq {} is beyond this server's log size {log_size}: the server is behind (retry later or use another server); a signed checkpoint inconsistent with yours is a fork",
                req.from_seq
            )));
        }
        let (tx, rx) = limits::byte_bounded(SYNC_BUFFER, SYNC_BUFFER_BYTES);
        tokio::spawn(stream_entries(
            self.store.clone(),
            reader.clone(),
            peer,
            Feed {
                from_seq: req.from_seq,
                filter,
                reads,
                follow: req.follow,
                quota: self.quota.clone(),
            },
            tx,
            self.shutdown.clone(),
        ));
        let stream = access::sync_stream(&self.store, reader, self.shutdown.clone().end_stream(rx));
        Ok(Response::new(Box::pin(stream)))
    }

    async fn get_statement(
        &self,
        request: Request<pb::GetStatementRequest>,
    ) -> Result<Response<pb::SyncEntry>, Status> {
        let reads = Reader::of(&auth::caller(&request)?);
        let raw = request.into_inner().statement_id;
        let id = StatementId::from_slice(&raw).ok_or_else(|| {
            Status::invalid_argument(format!("statement_id: must be 32 bytes, got {}", raw.len()))
        })?;
        let entry = self
            .store
            .entry_by_id(&id)
            .map_err(status::store)?
            .ok_or_else(|| Status::not_found(format!("no statement {id} in this hub's log")))?;
        // A restricted statement's body goes only to its readers (§2.7); others get the
        // header, as a sync would send it.
        let registry = self.store.registry();
        let readable = entry
            .header()
            .is_none_or(|h| entry.readable_by(&h, &reads, &registry));
        Ok(Response::new(entry.into_sync_entry(&registry, readable)))
    }

    async fn list_members(
        &self,
        request: Request<pb::ListMembersRequest>,
    ) -> Result<Response<pb::ListMembersResponse>, Status> {
        auth::caller(&request)?;
        let members = self.store.members();
        Ok(Response::new(pb::ListMembersResponse {
            members: members.iter().map(|m| m.to_wire()).collect(),
        }))
    }

    async fn r#match(
        &self,
        request: Request<pb::MatchRequest>,
    ) -> Result<Response<pb::MatchResponse>, Status> {
        let member = auth::caller(&request)?;
        self.quota.match_query(&member.id)?;
        let reads = Reader::of(&member);
        let access = access::MatchAccess::begin(member);
        let req = request.into_inner();
        if req.queries.len() > MAX_QUERIES {
            return Err(Status::invalid_argument(format!(
                "queries: at most {MAX_QUERIES} per request, got {}; split the batch",
                req.queries.len()
            )));
        }
        let options = MatchOptions::new(req.pdq_threshold, req.min_quality)
            .and_then(|o| {
                VpdqRule::new(req.vpdq_query_percent, req.vpdq_compared_percent)
                    .map(|v| o.with_vpdq(v))
            })
            .map_err(Status::invalid_argument)?;
        let states_wanted = match_states::wanted(&req.states)?;
        let queries = req
            .queries
            .into_iter()
            .enumerate()
            .map(|(i, q)| {
                let hash_type = HashType::from_wire(q.r#type).ok_or_else(|| {
                    Status::invalid_argument(format!(
                        "queries[{i}].type: unknown or unspecified hash type {} (expected md5, sha1, sha256, pdq, photodna or url_md5)",
                        q.r#type
                    ))
                })?;
                Query::new(hash_type, q.value, q.quality)
                    .map_err(|e| Status::invalid_argument(format!("queries[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        // Read-your-writes: answer from a corpus that holds everything durable on arrival.
        let wanted = self.store.log_size();
        let mut indexed = self.matching.indexed.clone();
        tokio::time::timeout(MATCH_INDEX_WAIT, indexed.wait_for(|n| *n >= wanted))
            .await
            .map_err(|_| {
                Status::unavailable("the matching index is still loading; retry in a moment")
            })?
            .map_err(|_| {
                Status::internal("the matching index stopped; operators: see the hub log")
            })?;
        let corpus = self.matching.corpus.clone();
        // Lifecycle statements acknowledged before this call are in the registry (published
        // before the acknowledgement): entries in states not wanted are left out.
        let registry = self.store.registry();
        let store = self.store.clone();
        let shared = self.states.clone();
        // Expired entries are left out as of the call's arrival (one instant for the whole
        // batch of queries).
        let now = now_ms();
        let response = tokio::task::spawn_blocking(move || {
            let corpus = corpus
                .read()
                .map_err(|_| Status::internal("the matching index is unavailable"))?;
            // Large batches are split across the cores; each part reads the same corpus. Each
            // query's hits (slot numbers) are capped, then the response's cap is shared out in
            // query order, and only then are the matches built.
            let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
            let per_thread = queries.len().div_ceil(threads).max(PARALLEL_MATCH_MIN);
            let hits: Vec<(Vec<crate::matching::Hit>, bool)> = std::thread::scope(|scope| {
                let parts: Vec<_> = queries
                    .chunks(per_thread)
                    .map(|chunk| {
                        let (corpus, options, wanted) = (&corpus, &options, &states_wanted);
                        let (registry, store, reads) = (&registry, &store, &reads);
                        let shared = &shared;
                        scope.spawn(move || {
                            let mut states = MatchStates::new(registry, store, now, shared);
                            chunk
                                .iter()
                                .map(|q| {
                                    corpus.hits_where(
                                        q,
                                        options,
                                        MAX_MATCHES_PER_QUERY,
                                        |source, index, expires_at| {
                                            // The read rule (§2.7): a restricted statement's
                                            // hashes match only for its readers.
                                            if !source.recipients.admit(&source.issuer, reads) {
                                                metrics::counter!(
                                                    "coalition_match_restricted_hits_total"
                                                )
                                                .increment(1);
                                                return false;
                                            }
                                            states.keeps(source, index, expires_at, wanted)
                                        },
                                    )
                                })
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                parts
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            if hits.len() != queries.len() {
                return Err(Status::internal("a match worker failed"));
            }
            let mut left = MAX_MATCHES_PER_RESPONSE;
            let mut truncated = false;
            let mut states = MatchStates::new(&registry, &store, now, &shared);
            let results: Vec<pb::MatchResult> = queries
                .iter()
                .zip(hits)
                .enumerate()
                .map(|(i, (q, (mut hits, mut cut)))| {
                    if hits.len() > left {
                        hits.truncate(left);
                        cut = true;
                    }
                    left -= hits.len();
                    truncated |= cut;
                    pb::MatchResult {
                        query_index: i as u32,
                        truncated: cut,
                        matches: hits
                            .into_iter()
                            .filter_map(|hit| {
                                let expires_at = corpus.expires_at(hit.slot);
                                Some((
                                    corpus.found(q, hit)?,
                                    corpus.source(hit.slot)?.1,
                                    expires_at,
                                ))
                            })
                            .map(|(f, hash_index, expires_at)| {
                                let hit = states.of(f.source, hash_index, expires_at);
                                let hash = HashKey {
                                    hash_type: f.hash_type,
                                    value: f.value.clone(),
                                };
                                let hash_tally = states.hash_tally(f.source, hash.clone());
                                // `seen` counts: only those the caller may read (§2.7).
                                let seen = states.seen(f.source, hash_index, &hash, &reads);
                                let mut m = pb::HashMatch {
                                    statement_id: f.source.statement_id.0.to_vec(),
                                    issuer: f.source.issuer.to_string(),
                                    r#type: f.hash_type.to_wire() as i32,
                                    value: f.value,
                                    distance: f.distance,
                                    labels: f.labels.iter().map(ToString::to_string).collect(),
                                    received_at_ms: f.source.received_at_ms,
                                    seq: f.source.seq,
                                    quality: f.quality.map(u32::from),
                                    hash_index,
                                    vpdq: f.vpdq.map(|v| pb::VpdqScore {
                                        query_basis_points: v.query_bp.into(),
                                        compared_basis_points: v.compared_bp.into(),
                                    }),
                                    ..Default::default()
                                };
                                match_states::annotate(&mut m, hit, hash_tally, seen);
                                m
                            })
                            .collect(),
                    }
                })
                .collect();
            if truncated {
                metrics::counter!("coalition_match_truncated_total").increment(1);
            }
            Ok::<_, Status>(pb::MatchResponse {
                results,
                indexed_log_size: corpus.next_seq(),
                truncated,
            })
        })
        .await
        .map_err(|e| Status::internal(format!("match task failed: {e}")))??;
        Ok(Response::new(access.answered(&self.store, response)))
    }

    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::Member>, Status> {
        let member = auth::caller(&request)?;
        Ok(Response::new(member.to_wire()))
    }
}

/// The wire form of a receipt.
/// Everything the hub checks of a submitted envelope before the store's writer sees it (§2.2):
/// protocol version, decoding, the caller as issuer, signatures under `registry`, and the
/// admin co-signature of governance statements. CPU-bound: runs on a verification thread.
fn check_submission(
    envelope: pb::Envelope,
    member: &MemberId,
    registry: &Registry,
    store: &Store,
) -> Result<Verified, Status> {
    if let Some(version) = payload_version(&envelope.payload_type)
        && version > PROTOCOL_VERSION
    {
        return Err(Status::invalid_argument(format!(
            "envelope.payload_type: protocol version {version} is newer than this hub's ({PROTOCOL_VERSION}); upgrade the hub first"
        )));
    }
    let parsed = ParsedEnvelope::parse(envelope).map_err(status::statement)?;
    parsed.require_body().map_err(status::statement)?;
    parsed
        .header
        .recipients
        .check_active(|id| match id.hub() {
            None => registry
                .member(id)
                .is_some_and(|m| m.status == crate::membership::MemberStatus::Active),
            // A member of a hub this coalition federates with (docs/PROTOCOL.md §3.10).
            Some(hub) => registry
                .coalition()
                .is_some_and(|c| c.hub_name != hub && c.settings.federation.trusts_hub(hub)),
        })
        .map_err(status::statement)?;
    let lifecycle = match parsed.statement.as_ref().map(|s| &s.body) {
        Some(body @ (Body::Retraction(_) | Body::Opinion(_))) => Some(body.clone()),
        _ => None,
    };
    let quorum = matches!(parsed.header.kind, Kind::Membership | Kind::Settings)
        || match &lifecycle {
            Some(Body::Retraction(r)) => r.admin_quorum,
            Some(Body::Opinion(o)) => o.admin_quorum,
            _ => false,
        };
    let now = now_ms();
    check_submitter(&parsed.header, member, now, quorum).map_err(status::accept)?;
    if let Some(statement) = &parsed.statement {
        crate::lifecycle::expiry::check_not_expired(&statement.body, now)
            .map_err(status::statement)?;
    }
    if let Some(crate::statement::Body::Membership(change)) =
        parsed.statement.as_ref().map(|s| &s.body)
        && let crate::membership::Action::SetProtocolVersion(v) = change.action
        && v > PROTOCOL_VERSION
    {
        return Err(status::statement(StatementError::invalid(
            "membership.set_protocol_version.version",
            format!(
                "this hub reads protocol version {PROTOCOL_VERSION}; upgrade it before announcing {v}"
            ),
        )));
    }
    let (verified, signers) = registry.verify(parsed).map_err(status::entry)?;
    if quorum {
        check_cosigner(&signers, member).map_err(status::accept)?;
    }
    if let Some(body) = &lifecycle {
        check_target(store, body, &verified.header)?;
    }
    Ok(verified)
}

/// A lifecycle statement's target as this hub holds it (docs/PROTOCOL.md §2.6, §2.7): it must
/// be logged and have entries; a retraction's must be the issuer's own (unless an admin quorum
/// retracts it) and hold the entries named; an opinion's entry must exist, not be the
/// issuer's own (unless an admin quorum judges it), and carry the hash the opinion copies (no
/// hash for a restricted target); a restricted (`seen`) opinion's recipients must name the
/// entry's issuer.
fn check_target(
    store: &Store,
    body: &Body,
    header: &crate::statement::Header,
) -> Result<(), Status> {
    let issuer = &header.issuer;
    let id = match body {
        Body::Retraction(r) => r.target,
        Body::Opinion(o) => o.target,
        _ => return Ok(()),
    };
    let stored = store.entry_by_id(&id).map_err(status::store)?;
    // An erased target has no body left (§2.8): decided from its signed header.
    if let Some(entry) = &stored
        && let Some(by) = entry.erased_by(&store.registry())
        && let Some(header) = entry.header()
    {
        return crate::lifecycle::check_erased_target(body, issuer, &header.issuer, id, by)
            .map_err(status::retraction);
    }
    let registry = store.registry();
    if let (Body::Retraction(r), Some(entry)) = (body, &stored)
        && r.erase
        && entry.relay.is_some()
    {
        return Err(Status::failed_precondition(format!(
            "statement {id} was relayed from another hub: only its origin can erase it (its erasure there erases it here too); this hub's admin quorum may retract it instead"
        )));
    }
    let target = stored
        .map(|entry| {
            if entry.relay.is_some() && entry.envelope.as_ref().is_some_and(|e| e.body.is_empty()) {
                return Err(Status::failed_precondition(format!(
                    "statement {id} was relayed from another hub without its body (restricted or erased there): it cannot be the target of a statement here"
                )));
            }
            entry
                .envelope
                .clone()
                .ok_or_else(|| "no envelope".to_owned())
                .and_then(|e| ParsedEnvelope::parse(e).map_err(|e| e.to_string()))
                .and_then(|p| {
                    let recipients = p.header.recipients;
                    p.statement
                        .map(|mut s| {
                            // A relayed statement's issuer is another hub's member.
                            s.issuer = entry.issuer_here(&s.issuer, &registry);
                            (s, recipients)
                        })
                        .ok_or_else(|| "no body".to_owned())
                })
                .map_err(|e| {
                    Status::internal(format!(
                        "the stored entry {} does not decode: {e}",
                        entry.seq
                    ))
                })
        })
        .transpose()?;
    let everyone = crate::statement::Recipients::everyone();
    let target_recipients = target.as_ref().map_or(&everyone, |(_, r)| r);
    let target = target.as_ref().map(|(s, _)| (&s.issuer, &s.body));
    match body {
        Body::Retraction(r) => crate::lifecycle::check_retraction(r, issuer, target),
        Body::Opinion(o) => crate::lifecycle::check_opinion(
            o,
            issuer,
            &header.recipients,
            target,
            target_recipients,
        ),
        _ => Ok(()),
    }
    .map_err(status::retraction)
}

fn submit_response(appended: &crate::store::Appended) -> pb::SubmitResponse {
    pb::SubmitResponse {
        receipt: Some(receipt_to_wire(&appended.receipt)),
        already_present: appended.already_present,
    }
}

/// One refused envelope of a batch: the status `Submit` would have returned for it alone.
fn refusal_outcome(refused: &Status) -> pb::SubmitOutcome {
    let retry_after_s = refused
        .metadata()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pb::SubmitOutcome {
        code: refused.code() as i32,
        message: refused.message().to_owned(),
        response: None,
        retry_after_s,
    }
}

fn receipt_to_wire(r: &crate::store::Receipt) -> pb::Receipt {
    pb::Receipt {
        statement_id: r.statement_id.0.to_vec(),
        seq: r.seq,
        received_at_ms: r.received_at_ms,
    }
}

fn parse_filter(req: &pb::SyncRequest) -> Result<SyncFilter, Status> {
    let kinds = req
        .kinds
        .iter()
        .enumerate()
        .map(|(i, k)| {
            Kind::from_wire(*k).ok_or_else(|| {
                Status::invalid_argument(format!("kinds[{i}]: unknown statement kind {k}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let hash_types = req
        .hash_types
        .iter()
        .enumerate()
        .map(|(i, t)| {
            HashType::from_wire(*t).ok_or_else(|| {
                Status::invalid_argument(format!("hash_types[{i}]: unknown hash type {t}"))
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let labels = req
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Label::parse(l).map_err(|e| Status::invalid_argument(format!("labels[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let issuers = req
        .issuers
        .iter()
        .enumerate()
        .map(|(i, m)| {
            MemberId::parse(m).map_err(|e| Status::invalid_argument(format!("issuers[{i}]: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SyncFilter::new(kinds, hash_types, labels, issuers))
}

/// What one sync stream sends: from where, which bodies, and whether it follows the log.
struct Feed {
    from_seq: u64,
    filter: SyncFilter,
    /// Whose bodies the stream may carry (the read rule, §2.7).
    reads: Reader,
    follow: bool,
    quota: super::quota::Quota,
}

/// Feeds one sync stream: reads durable entries in chunks off the async workers, sends the
/// selected ones, reports progress, and (with `follow`) waits for the log to grow. The bounded
/// channel makes a slow client slow this task down instead of growing a buffer. Stops when
/// the hub shuts down (the response stream itself ends with `UNAVAILABLE` then: see
/// `shutdown::Listener::end_stream`), even while waiting for a slow client.
async fn stream_entries(
    store: Store,
    reader: MemberId,
    peer: auth::PeerCert,
    feed: Feed,
    tx: limits::ByteSender<Result<pb::SyncResponse, Status>>,
    mut shutdown: Listener,
) {
    let Feed {
        from_seq: mut cursor,
        filter,
        reads,
        follow,
        quota,
    } = feed;
    let filter = std::sync::Arc::new(filter);
    let mut size_rx = store.watch_size();
    let mut reported = None;
    loop {
        let size = *size_rx.borrow_and_update();
        while cursor < size {
            if shutdown.is_shutting_down() {
                return;
            }
            // A member suspended or removed, or a certificate revoked, while streaming is cut
            // off at the next chunk.
            if let Err(status) = still_allowed(&store, &reader, &peer) {
                send(&tx, Err(status), &mut shutdown).await;
                return;
            }
            let to = size.min(cursor + SYNC_CHUNK_ENTRIES);
            let chunk = match super::read_entries(&store, cursor, to, SYNC_CHUNK_BYTES).await {
                Ok(chunk) => chunk,
                Err(status) => {
                    send(&tx, Err(status), &mut shutdown).await;
                    return;
                }
            };
            // Selecting decodes every header (label filters parse statements): CPU work, off
            // the async workers.
            let registry: std::sync::Arc<Registry> = store.registry();
            let (select, quota, member) = (filter.clone(), quota.clone(), reader.clone());
            let reads = reads.clone();
            let messages = tokio::task::spawn_blocking(move || {
                let mut out = Vec::with_capacity(chunk.len());
                for entry in chunk {
                    // Every entry is sent; one the filter does not select, or whose body the
                    // reader may not read (§2.7), without its body.
                    let selected = match entry.header() {
                        Some(h) => {
                            (select.is_everything() || select.selects(&h))
                                && entry.readable_by(&h, &reads, &registry)
                        }
                        // A newer protocol version: only an unfiltered sync gets its body.
                        None => select.is_everything(),
                    };
                    if let Err(status) = quota.sync_entry(&member, &entry, selected) {
                        out.push((entry.seq, Err(status)));
                        break;
                    }
                    let seq = entry.seq;
                    let item =
                        pb::sync_response::Item::Entry(entry.into_sync_entry(&registry, selected));
                    out.push((seq, Ok(pb::SyncResponse { item: Some(item) })));
                }
                out
            })
            .await;
            let messages = match messages {
                Ok(messages) => messages,
                Err(e) => {
                    let failed = Status::internal(format!("sync reader failed: {e}"));
                    send(&tx, Err(failed), &mut shutdown).await;
                    return;
                }
            };
            for (seq, msg) in messages {
                let msg = match msg {
                    Ok(msg) => msg,
                    Err(refused) => {
                        send(&tx, Err(refused), &mut shutdown).await;
                        return;
                    }
                };
                cursor = seq + 1;
                if !send(&tx, Ok(msg), &mut shutdown).await {
                    return; // the client went away, or the hub is shutting down
                }
            }
        }
        if reported != Some(cursor) {
            reported = Some(cursor);
            let caught_up = pb::SyncResponse {
                item: Some(progress(cursor, size)),
            };
            if !send(&tx, Ok(caught_up), &mut shutdown).await {
                return;
            }
        }
        if !follow {
            return;
        }
        tokio::select! {
            changed = size_rx.changed() => if changed.is_err() { return },
            () = tx.closed() => return,
            () = shutdown.begun() => return,
            () = tokio::time::sleep(MEMBERSHIP_RECHECK) => {
                if let Err(status) = still_allowed(&store, &reader, &peer) {
                    send(&tx, Err(status), &mut shutdown).await;
                    return;
                }
            }
        }
    }
}

/// Queues one message for the client, waiting while its buffer is full. False when the client
/// went away or the hub began shutting down meanwhile.
async fn send(
    tx: &limits::ByteSender<Result<pb::SyncResponse, Status>>,
    msg: Result<pb::SyncResponse, Status>,
    shutdown: &mut Listener,
) -> bool {
    let len = msg.as_ref().map_or(0, prost::Message::encoded_len);
    tokio::select! {
        biased;
        () = shutdown.begun() => false,
        sent = tx.send(msg, len) => sent,
    }
}

/// The re-check of a long-lived stream: certificate not revoked, member still allowed.
fn still_allowed(store: &Store, reader: &MemberId, peer: &auth::PeerCert) -> Result<(), Status> {
    peer.ensure_not_revoked()?;
    auth::member_allowed(store, reader, auth::READERS, "sync").map(|_| ())
}

fn progress(next_seq: u64, log_size: u64) -> pb::sync_response::Item {
    pb::sync_response::Item::Progress(pb::SyncProgress { next_seq, log_size })
}
