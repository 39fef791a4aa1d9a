//! Sync filters: which statements a sync selects, decided from the signed header alone, so a
//! member can check every header it receives against its own filter.

use super::{HashType, Header, Kind, Label};
use crate::membership::MemberId;

/// A validated sync filter. Within one dimension any value matches (OR); across dimensions all
/// must match (AND); an empty dimension matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncFilter {
    /// Statement kinds.
    pub kinds: Vec<Kind>,
    /// Hash types.
    pub hash_types: Vec<HashType>,
    /// Labels.
    pub labels: Vec<Label>,
    /// Issuers.
    pub issuers: Vec<MemberId>,
}

impl SyncFilter {
    /// Builds a filter from parsed values.
    pub fn new(
        kinds: Vec<Kind>,
        hash_types: Vec<HashType>,
        labels: Vec<Label>,
        issuers: Vec<MemberId>,
    ) -> Self {
        SyncFilter {
            kinds,
            hash_types,
            labels,
            issuers,
        }
    }

    /// True if the filter names kinds and every one is governance (genesis, membership,
    /// settings): such a sync sends no other body.
    pub fn only_governance(&self) -> bool {
        !self.kinds.is_empty() && self.kinds.iter().all(|k| k.is_governance())
    }

    /// True if the filter selects everything.
    pub fn is_everything(&self) -> bool {
        self.kinds.is_empty()
            && self.hash_types.is_empty()
            && self.labels.is_empty()
            && self.issuers.is_empty()
    }

    /// Whether the statement with this header is selected. Governance statements (genesis,
    /// membership, settings) are always selected: every reader needs them whole to replay
    /// membership and settings. A restricted header lists no hash types and no labels
    /// (docs/PROTOCOL.md §2.7), so those two dimensions do not apply to it: kinds and issuers
    /// decide, and whether the body comes is then up to the read rule
    /// ([`Header::readable_by`]).
    pub fn selects(&self, header: &Header) -> bool {
        if header.kind.is_governance() {
            return true;
        }
        let restricted = header.is_restricted();
        (self.kinds.is_empty() || self.kinds.contains(&header.kind))
            && (self.hash_types.is_empty()
                || restricted
                || header
                    .hash_types
                    .iter()
                    .any(|t| self.hash_types.contains(t)))
            && (self.labels.is_empty()
                || restricted
                || header.labels.iter().any(|l| self.labels.contains(l)))
            && (self.issuers.is_empty() || self.issuers.contains(&header.issuer))
    }
}
