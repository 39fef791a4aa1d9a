//! The one place where domain errors become gRPC statuses (codes per docs/PROTOCOL.md), and
//! where refusals are counted by reason (`coalition_refusals_total{reason}`).

use super::checkpointer::PublishError;
use crate::membership::{AcceptError, EntryError, MembershipError};
use crate::replica::{Fault, ReplicaError};
use crate::statement::{SignatureError, StatementError};
use crate::store::{ProofRequestError, StoreError};
use tonic::Status;

/// Counts a refusal in `coalition_refusals_total` under `reason` (a fixed snake_case word)
/// and returns its status.
pub fn refused(reason: &'static str, status: Status) -> Status {
    count_refusal(reason);
    status
}

/// Counts a refusal that has no status of its own (a connection closed by the TLS acceptor)
/// in `coalition_refusals_total` under `reason`: the one place that counter is written.
pub fn count_refusal(reason: &'static str) {
    metrics::counter!("coalition_refusals_total", "reason" => reason).increment(1);
}

/// A statement that is malformed or too large.
pub fn statement(e: StatementError) -> Status {
    match e {
        StatementError::TooLarge { .. } => {
            refused("too_large", Status::resource_exhausted(e.to_string()))
        }
        StatementError::Invalid { .. } => {
            refused("malformed", Status::invalid_argument(e.to_string()))
        }
    }
}

/// Signatures that do not verify.
pub fn signature(e: SignatureError) -> Status {
    refused("bad_signature", Status::invalid_argument(e.to_string()))
}

/// A statement this connection may not submit.
pub fn accept(e: AcceptError) -> Status {
    match e {
        AcceptError::NotIssuer { .. } | AcceptError::NotASigner { .. } => {
            refused("not_issuer", Status::permission_denied(e.to_string()))
        }
        AcceptError::FromTheFuture { .. } => {
            refused("from_the_future", Status::invalid_argument(e.to_string()))
        }
    }
}

/// A retraction or opinion refused at the front door (docs/PROTOCOL.md §2.6, §2.7).
pub fn retraction(e: crate::lifecycle::TargetError) -> Status {
    use crate::lifecycle::TargetError as E;
    match e {
        E::UnknownTarget { .. } | E::UnknownEntries { .. } => {
            refused("retraction_not_found", Status::not_found(e.to_string()))
        }
        E::OwnEntry { .. } => refused(
            "opinion_own_entry",
            Status::failed_precondition(e.to_string()),
        ),
        E::SeenNotToIssuer { .. } => refused(
            "opinion_seen_not_to_issuer",
            Status::invalid_argument(e.to_string()),
        ),
        E::HashOfRestricted { .. } => refused(
            "opinion_hash_of_restricted",
            Status::invalid_argument(e.to_string()),
        ),
        E::HashMismatch { .. } => refused(
            "opinion_hash_mismatch",
            Status::invalid_argument(e.to_string()),
        ),
        E::NotRetractable { .. } => refused(
            "retraction_not_retractable",
            Status::invalid_argument(e.to_string()),
        ),
        E::NotTheIssuer { .. } => refused(
            "retraction_not_issuer",
            Status::permission_denied(e.to_string()),
        ),
        E::Erased { .. } => refused(
            "lifecycle_target_erased",
            Status::failed_precondition(e.to_string()),
        ),
    }
}

/// A statement that may not be logged at this point of the log.
pub fn entry(e: EntryError) -> Status {
    use EntryError as E;
    match e {
        E::Signature(s) => signature(s),
        E::UnknownKey { .. }
        | E::MissingSignerKey(_)
        | E::HubMustSign(_)
        | E::NewHubKeyMustSign(_) => {
            refused("unknown_key", Status::invalid_argument(e.to_string()))
        }
        E::UnknownIssuer(_)
        | E::IssuerNotActive { .. }
        | E::NotEntitled { .. }
        | E::RevokedKey { .. } => refused("not_entitled", Status::permission_denied(e.to_string())),
        E::NotFound(_) => refused("membership_precondition", Status::not_found(e.to_string())),
        E::AlreadyExists(_) => refused(
            "membership_precondition",
            Status::already_exists(e.to_string()),
        ),
        E::NoGenesis | E::SecondGenesis(_) | E::QuorumNotMet { .. } | E::Precondition(_) => {
            refused(
                "membership_precondition",
                Status::failed_precondition(e.to_string()),
            )
        }
    }
}

/// A statement the hub's replica refuses at its position.
pub fn replica(e: ReplicaError) -> Status {
    match e.fault {
        Fault::NotEntitled(e) | Fault::Refused(e) | Fault::SettingsRefused(e) => entry(e),
        Fault::Signature(s) => signature(s),
        Fault::Invalid(s) => statement(s),
        Fault::FromTheFuture { .. } | Fault::VersionNotAnnounced { .. } => refused(
            "from_the_future",
            Status::invalid_argument(e.fault.to_string()),
        ),
        Fault::Duplicate { .. } => {
            refused("duplicate", Status::already_exists(e.fault.to_string()))
        }
        other => {
            tracing::error!("the hub's replica refused its own entry: {other}");
            Status::internal("the hub refused its own log entry; operators: see the hub log")
        }
    }
}

/// Membership rules.
pub fn membership(e: MembershipError) -> Status {
    use MembershipError as E;
    match e {
        E::UnknownMember(_) => refused("unknown_member", Status::permission_denied(e.to_string())),
        E::NotActive { .. } => refused(
            "member_not_active",
            Status::permission_denied(e.to_string()),
        ),
        E::MissingRole { .. } => refused("missing_role", Status::permission_denied(e.to_string())),
        E::CertificateNotPinned { .. } => refused(
            "certificate_not_pinned",
            Status::unauthenticated(e.to_string()),
        ),
        E::BadMemberId(_) | E::BadKeyId(_) | E::BadPublicKey { .. } | E::Invalid { .. } => {
            refused("malformed", Status::invalid_argument(e.to_string()))
        }
    }
}

/// Storage failures. Details go to the log; the caller learns what to do.
pub fn store(e: StoreError) -> Status {
    match e {
        StoreError::Rejected(e) => replica(e),
        StoreError::Unavailable(reason) => {
            tracing::error!("store unavailable: {reason}");
            Status::unavailable(
                "the hub cannot write right now; retry later (operators: see the hub log)",
            )
        }
        other => {
            tracing::error!("store error: {other}");
            Status::internal("the hub hit a storage error; operators: see the hub log")
        }
    }
}

/// Proof requests the log cannot answer (messages name the request field).
pub fn proof_request(e: ProofRequestError) -> Status {
    match e {
        ProofRequestError::Store(e) => store(e),
        other => Status::invalid_argument(other.to_string()),
    }
}

/// A checkpoint that could not be published on demand.
pub fn publish(e: PublishError) -> Status {
    match e {
        PublishError::Store(e) => store(e),
        PublishError::Sign(e) => {
            tracing::error!("checkpoint signing failed: {e}");
            Status::internal("the hub could not sign a checkpoint; operators: see the hub log")
        }
        PublishError::KeyNotHeld { .. } => {
            tracing::error!("{e}");
            Status::unavailable(e.to_string())
        }
        PublishError::Stopped => {
            Status::unavailable("the hub is not publishing checkpoints right now; retry later")
        }
    }
}
