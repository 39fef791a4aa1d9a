//! Who is calling: the member named by the mutual-TLS client certificate, checked against the
//! registry (status, roles, certificate pins) on every call.

use super::status;
use super::tls::{HubTls, serial_hex};
use crate::membership::{MEMBER_URI_PREFIX, Member, MemberId, MembershipError, Role};
use crate::store::Store;
use rustls::pki_types::CertificateDer;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tonic::{Request, Status};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The member id a DER client certificate names, from its `urn:coalition:member:<id>` SAN URI.
pub fn member_id_of_cert(der: &[u8]) -> Result<MemberId, String> {
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| format!("client certificate does not parse: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("client certificate SAN extension is invalid: {e}"))?;
    let uris = san.iter().flat_map(|ext| ext.value.general_names.iter());
    for name in uris {
        if let GeneralName::URI(uri) = name
            && let Some(id) = uri.strip_prefix(MEMBER_URI_PREFIX)
        {
            return MemberId::parse(id).map_err(|e| e.to_string());
        }
    }
    Err(format!(
        "client certificate names no member: expected a SAN URI {MEMBER_URI_PREFIX}<member id>"
    ))
}

/// What a method requires of its caller, and how large its request may be.
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Roles that may call it (one suffices).
    pub roles: &'static [Role],
    /// What the caller is doing, for refusals ("submit statements").
    pub action: &'static str,
    /// Most request body bytes (gRPC framing included) one call may send.
    pub max_request_bytes: usize,
}

/// Every request but a Submit fits in this many bytes: the largest, a `Match` batch of
/// `matching::MAX_QUERIES` queries, is about 0.5 MiB.
pub const MAX_SMALL_REQUEST_BYTES: usize = 1024 * 1024;
/// A Submit carries a whole envelope, up to the transport's message limit (plus framing).
pub const MAX_SUBMIT_REQUEST_BYTES: usize = super::MAX_MESSAGE_BYTES + 5;
/// A SubmitBatch carries up to `hub::MAX_BATCH_ENVELOPES` small statements: 16 MiB (framing
/// included). A larger statement goes through Submit.
pub const MAX_BATCH_REQUEST_BYTES: usize = 16 * 1024 * 1024;

const ALL: &[Role] = &[Role::Member, Role::Auditor, Role::Admin, Role::Peer];
const SUBMITTERS: &[Role] = &[Role::Member, Role::Admin];
/// Roles that may read the log (sync, statements, checkpoints, proofs, entries).
pub const READERS: &[Role] = &[Role::Member, Role::Auditor, Role::Admin];
const MATCHERS: &[Role] = &[Role::Member, Role::Auditor];
const GOVERNANCE_READERS: &[Role] = &[Role::Admin, Role::Auditor];
/// Other hubs, pulling this hub's log to relay it (docs/PROTOCOL.md §3.10).
const PEERS: &[Role] = &[Role::Peer];

/// The policy of the method at gRPC `path` (`/package.Service/Method`). Methods not listed
/// (health, reflection, unknown ones) need an active member of any role.
pub fn policy(path: &str) -> Policy {
    let (roles, action, max_request_bytes) = match path {
        "/coalition.v1.Hub/Submit" => (SUBMITTERS, "submit statements", MAX_SUBMIT_REQUEST_BYTES),
        "/coalition.v1.Hub/SubmitBatch" => {
            (SUBMITTERS, "submit statements", MAX_BATCH_REQUEST_BYTES)
        }
        "/coalition.v1.Hub/Sync" => (READERS, "sync", MAX_SMALL_REQUEST_BYTES),
        "/coalition.v1.Hub/GetStatement" => (READERS, "read statements", MAX_SMALL_REQUEST_BYTES),
        "/coalition.v1.Hub/ListMembers" => (READERS, "list members", MAX_SMALL_REQUEST_BYTES),
        "/coalition.v1.Hub/Match" => (MATCHERS, "match", MAX_SMALL_REQUEST_BYTES),
        "/coalition.v1.Admin/GetCoalition" => (
            GOVERNANCE_READERS,
            "read the coalition's governance",
            MAX_SMALL_REQUEST_BYTES,
        ),
        "/coalition.v1.Admin/GetMember" => (
            GOVERNANCE_READERS,
            "read member details",
            MAX_SMALL_REQUEST_BYTES,
        ),
        "/coalition.v1.Admin/GetMemberHistory" => (
            GOVERNANCE_READERS,
            "read member histories",
            MAX_SMALL_REQUEST_BYTES,
        ),
        "/coalition.v1.Admin/GetFederationStatus" => (
            GOVERNANCE_READERS,
            "read the federation status",
            MAX_SMALL_REQUEST_BYTES,
        ),
        "/coalition.v1.Admin/ListAccess" => (
            GOVERNANCE_READERS,
            "read the access log",
            MAX_SMALL_REQUEST_BYTES,
        ),
        "/coalition.v1.Audit/GetCheckpoint" | "/coalition.v1.Audit/ListCheckpoints" => {
            (READERS, "read checkpoints", MAX_SMALL_REQUEST_BYTES)
        }
        "/coalition.v1.Audit/GetInclusionProof" | "/coalition.v1.Audit/GetConsistencyProof" => {
            (READERS, "read proofs", MAX_SMALL_REQUEST_BYTES)
        }
        "/coalition.v1.Audit/GetEntries" => (READERS, "read entries", MAX_SMALL_REQUEST_BYTES),
        "/coalition.v1.Federation/GetCheckpoint"
        | "/coalition.v1.Federation/ListCheckpoints"
        | "/coalition.v1.Federation/GetConsistencyProof"
        | "/coalition.v1.Federation/GetEntries" => {
            (PEERS, "relay this hub's log", MAX_SMALL_REQUEST_BYTES)
        }
        _ => (ALL, "connect", MAX_SMALL_REQUEST_BYTES),
    };
    Policy {
        roles,
        action,
        max_request_bytes,
    }
}

/// The one authorization check, made by the request gate (`limits::Gate`) on the request
/// head before any body is read: the connection's client certificate (`certs`, leaf first)
/// names a registered, active member holding one of `policy.roles`, pinned certificates
/// match, and the CRL in force does not revoke it.
/// The member id comes from `ids` (parsed once per connection).
pub fn authorize(
    store: &Store,
    tls: &HubTls,
    ids: &CertIds,
    certs: Option<&Chain>,
    policy: &Policy,
) -> Result<Member, Status> {
    let chain =
        certs.ok_or_else(|| Status::unauthenticated("no client certificate on this connection"))?;
    let leaf = chain
        .first()
        .ok_or_else(|| Status::unauthenticated("empty client certificate chain"))?;
    revoked(Some(tls), leaf.as_ref())?;
    let id = ids.member_id(chain).map_err(Status::unauthenticated)?;
    let member = member_allowed(store, &id, policy.roles, policy.action)?;
    member
        .ensure_certificate(leaf.as_ref())
        .map_err(status::membership)?;
    Ok(member)
}

/// The member ids that open connections' client certificates name, each parsed once per
/// connection instead of on every call (an X.509 parse is ~2 µs of every small `Submit`).
/// Keyed by the connection's certificate chain, which the transport shares (one `Arc`) among
/// all calls of a connection; an entry holds that `Arc`, so its address cannot be reused by
/// another chain while the entry exists. Revocation, status, roles and pins are still checked
/// on every call. Bounded: at most `max` entries (the hub's connection limit); when full, the
/// entries of closed connections (held by nothing but this cache) are dropped, and if none
/// was closed, all of them.
pub struct CertIds {
    max: usize,
    known: Mutex<KnownIds>,
}

/// A client's certificate chain as the transport shares it among a connection's calls.
type Chain = Arc<Vec<CertificateDer<'static>>>;
/// [`CertIds`]'s entries: by the chain's address, the chain and the member id it names.
type KnownIds = HashMap<usize, (Chain, MemberId)>;

impl CertIds {
    /// A cache of at most `max` (at least one) connections' member ids.
    pub fn new(max: usize) -> CertIds {
        CertIds {
            max: max.max(1),
            known: Mutex::default(),
        }
    }

    /// The member id the leaf of `chain` names ([`member_id_of_cert`]); an error (no leaf,
    /// or a certificate that names no member) is not kept.
    pub fn member_id(&self, chain: &Chain) -> Result<MemberId, String> {
        let key = Arc::as_ptr(chain) as usize;
        if let Some((held, id)) = self.lock().get(&key)
            && Arc::ptr_eq(held, chain)
        {
            return Ok(id.clone());
        }
        let leaf = chain
            .first()
            .ok_or_else(|| "empty client certificate chain".to_owned())?;
        let id = member_id_of_cert(leaf.as_ref())?;
        let mut known = self.lock();
        if known.len() >= self.max {
            known.retain(|_, (held, _)| Arc::strong_count(held) > 1);
            if known.len() >= self.max {
                known.clear();
            }
        }
        known.insert(key, (chain.clone(), id.clone()));
        Ok(id)
    }

    /// Connections whose member id is kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, KnownIds> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The member the gate authorized for this call (put in the request by `limits::Gate`).
#[derive(Clone, Debug)]
pub struct Caller(pub Member);

/// The caller [`authorize`] found for `request` when the gate admitted it.
pub fn caller<T>(request: &Request<T>) -> Result<Member, Status> {
    request
        .extensions()
        .get::<Caller>()
        .map(|c| c.0.clone())
        .ok_or_else(|| {
            Status::internal("the request gate did not authorize this call; operators: a bug")
        })
}

/// The client certificate of a request's connection, together with the hub's revocation
/// state, so that it can be checked again later: a long-lived stream keeps it and calls
/// [`PeerCert::ensure_not_revoked`] to cut off a connection whose certificate is revoked
/// meanwhile.
#[derive(Clone)]
pub struct PeerCert {
    chain: Arc<Vec<CertificateDer<'static>>>,
    tls: Option<HubTls>,
}

impl PeerCert {
    /// The certificate `request` came with (UNAUTHENTICATED without one).
    pub fn of<T>(request: &Request<T>) -> Result<PeerCert, Status> {
        let chain = request
            .peer_certs()
            .ok_or_else(|| Status::unauthenticated("no client certificate on this connection"))?;
        if chain.is_empty() {
            return Err(Status::unauthenticated("empty client certificate chain"));
        }
        Ok(PeerCert {
            chain,
            // Put there for every call by the server (`server::serve`).
            tls: request.extensions().get::<HubTls>().cloned(),
        })
    }

    fn leaf(&self) -> &[u8] {
        self.chain.first().map_or(&[], |c| c.as_ref())
    }

    /// UNAUTHENTICATED if the CRL now in force revokes the certificate.
    pub fn ensure_not_revoked(&self) -> Result<(), Status> {
        revoked(self.tls.as_ref(), self.leaf())
    }
}

/// UNAUTHENTICATED if `tls`'s CRL revokes `leaf`, or if that CRL is outdated past its grace
/// period (the hub fails closed then).
fn revoked(tls: Option<&HubTls>, leaf: &[u8]) -> Result<(), Status> {
    let Some(tls) = tls else { return Ok(()) };
    tls.ensure_crl_usable()?;
    if tls.is_revoked(leaf) {
        return Err(Status::unauthenticated(format!(
            "{REVOKED_PREFIX} (serial {}) by the coalition CRL",
            serial_hex(leaf).unwrap_or_default()
        )));
    }
    Ok(())
}

/// How every refusal of a revoked certificate begins (the client recognises it:
/// `client::is_certificate_revoked`).
const REVOKED_PREFIX: &str = "your client certificate is revoked";

/// The registered, active member `id`, holding one of `roles`; re-checked by long-lived
/// streams so a member suspended or removed meanwhile is cut off.
pub fn member_allowed(
    store: &Store,
    id: &MemberId,
    roles: &[Role],
    action: &'static str,
) -> Result<Member, Status> {
    let member = store
        .member(id)
        .ok_or_else(|| status::membership(MembershipError::UnknownMember(id.clone())))?;
    member.ensure_active().map_err(status::membership)?;
    if !roles.iter().any(|r| member.has_role(*r)) {
        let role = roles.first().map_or("?", |r| r.name());
        return Err(status::membership(MembershipError::MissingRole {
            id: member.id.clone(),
            role,
            action,
        }));
    }
    Ok(member)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate naming `member` (or nothing, with `None`) in its SAN.
    fn cert(member: Option<&str>) -> Chain {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        if let Some(id) = member {
            params.subject_alt_names = vec![rcgen::SanType::URI(
                format!("{MEMBER_URI_PREFIX}{id}").try_into().expect("uri"),
            )];
        }
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = params.self_signed(&key).expect("cert");
        Arc::new(vec![cert.der().clone()])
    }

    #[test]
    fn a_connection_s_member_id_is_parsed_once_and_kept_with_its_chain() {
        let ids = CertIds::new(4);
        let acme = cert(Some("acme"));
        let first = ids.member_id(&acme).expect("names a member");
        assert_eq!(first.to_string(), "acme");
        assert_eq!(ids.len(), 1);
        // The same connection (the same shared chain) again: from the cache.
        assert_eq!(ids.member_id(&acme.clone()).expect("cached"), first);
        assert_eq!(ids.len(), 1);
        // Another connection with a certificate of the same bytes is its own entry.
        let again = Arc::new(acme.as_ref().clone());
        assert_eq!(ids.member_id(&again).expect("names a member"), first);
        assert_eq!(ids.len(), 2);
    }

    #[test]
    fn a_certificate_naming_no_member_is_refused_and_not_kept() {
        let ids = CertIds::new(4);
        let anonymous = cert(None);
        for _ in 0..2 {
            let refused = ids.member_id(&anonymous).expect_err("names no member");
            assert!(refused.contains(MEMBER_URI_PREFIX), "{refused}");
        }
        let garbage = Arc::new(vec![CertificateDer::from(vec![0x30, 0x03, 1, 2, 3])]);
        assert!(ids.member_id(&garbage).is_err());
        assert!(ids.member_id(&Arc::new(Vec::new())).is_err());
        assert_eq!(ids.len(), 0);
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_closed_connections_first() {
        let ids = CertIds::new(2);
        let open = cert(Some("open"));
        ids.member_id(&open).expect("kept");
        {
            let closed = cert(Some("closed"));
            ids.member_id(&closed).expect("kept");
        } // the connection is gone: only the cache holds its chain
        assert_eq!(ids.len(), 2);
        let third = cert(Some("third"));
        ids.member_id(&third).expect("kept");
        assert_eq!(ids.len(), 2, "the closed connection's entry made room");
        assert_eq!(
            ids.member_id(&open).expect("still cached").to_string(),
            "open"
        );
        // Every entry's connection open and the cache full: it starts over, still bounded.
        let fourth = cert(Some("fourth"));
        assert_eq!(
            ids.member_id(&fourth).expect("parsed").to_string(),
            "fourth"
        );
        assert!(ids.len() <= 2);
    }
}
