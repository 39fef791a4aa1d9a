//! Who is calling: the member named by the mutual-TLS client certificate, checked against the
//! registry (status, roles, certificate pins) on every call.

use super::status;
use super::tls::{HubTls, serial_hex};
use crate::membership::{MEMBER_URI_PREFIX, Member, MemberId, MembershipError, Role};
use crate::store::Store;
use rustls::pki_types::CertificateDer;
use std::sync::Arc;
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
/// Its client certificate must not be revoked by the CRL in force now (see [`PeerCert`]).
pub fn authorize<T>(
    store: &Store,
    request: &Request<T>,
    roles: &[Role],
    action: &'static str,
) -> Result<Member, Status> {
    let cert = PeerCert::of(request)?;
    cert.ensure_not_revoked()?;
    let member = member_allowed(store, &cert.member_id()?, roles, action)?;
    member
        .ensure_certificate(cert.leaf())
        .map_err(status::membership)?;
    Ok(member)
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

    /// The member the certificate names.
    pub fn member_id(&self) -> Result<MemberId, Status> {
        member_id_of_cert(self.leaf()).map_err(Status::unauthenticated)
    }

    /// UNAUTHENTICATED if the CRL now in force revokes the certificate.
    pub fn ensure_not_revoked(&self) -> Result<(), Status> {
        match &self.tls {
            Some(tls) if tls.is_revoked(self.leaf()) => Err(Status::unauthenticated(format!(
                "client certificate serial {} is revoked by the coalition CRL",
                serial_hex(self.leaf()).unwrap_or_default()
            ))),
            _ => Ok(()),
        }
    }
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
