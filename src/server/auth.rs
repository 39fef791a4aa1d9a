//! Who is calling: the member named by the mutual-TLS client certificate, checked against the
//! registry (status, roles, certificate pins) on every call.

use super::status;
use crate::membership::{MEMBER_URI_PREFIX, Member, MemberId, MembershipError, Role};
use crate::store::Store;
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

/// The registered, active member behind a request, holding one of `roles` (needed to `action`).
pub fn authorize<T>(
    store: &Store,
    request: &Request<T>,
    roles: &[Role],
    action: &'static str,
) -> Result<Member, Status> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| Status::unauthenticated("no client certificate on this connection"))?;
    let leaf = certs
        .first()
        .ok_or_else(|| Status::unauthenticated("empty client certificate chain"))?;
    let id = member_id_of_cert(leaf.as_ref()).map_err(Status::unauthenticated)?;
    let member = member_allowed(store, &id, roles, action)?;
    member
        .ensure_certificate(leaf.as_ref())
        .map_err(status::membership)?;
    Ok(member)
}

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
