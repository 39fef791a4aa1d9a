//! Sync filters: which stored entries a sync request selects, decided from entry summaries.

use super::StoredEntry;
use crate::membership::MemberId;
use crate::statement::{HashType, Kind, Label, ParsedEnvelope};
use std::collections::HashSet;

/// A validated sync filter. Within one dimension any value matches (OR); across dimensions all
/// must match (AND); an empty dimension matches everything.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SyncFilter {
    /// Statement kinds.
    pub kinds: Vec<Kind>,
    /// Hash types (OR of `HashType::bit()`; 0 = any).
    pub hash_types: u32,
    /// Labels.
    pub labels: HashSet<String>,
    /// Issuers.
    pub issuers: HashSet<String>,
}

impl SyncFilter {
    /// Builds a filter from parsed values.
    pub fn new(
        kinds: Vec<Kind>,
        hash_types: &[HashType],
        labels: &[Label],
        issuers: &[MemberId],
    ) -> Self {
        SyncFilter {
            kinds,
            hash_types: hash_types.iter().fold(0, |acc, t| acc | t.bit()),
            labels: labels.iter().map(Label::to_string).collect(),
            issuers: issuers.iter().map(ToString::to_string).collect(),
        }
    }

    /// Whether the entry is selected.
    pub fn matches(&self, entry: &StoredEntry) -> bool {
        let Some(summary) = entry.summary.as_ref() else {
            return false;
        };
        if !self.kinds.is_empty() && !entry.kind().is_some_and(|k| self.kinds.contains(&k)) {
            return false;
        }
        if self.hash_types != 0 && summary.hash_types & self.hash_types == 0 {
            return false;
        }
        if !self.issuers.is_empty() && !self.issuers.contains(&summary.issuer) {
            return false;
        }
        if self.labels.is_empty() {
            return true;
        }
        if !summary.labels_overflow {
            return summary.labels.iter().any(|l| self.labels.contains(l));
        }
        // Rare: too many distinct labels to summarize; look at the statement itself.
        entry
            .envelope
            .clone()
            .and_then(|env| ParsedEnvelope::parse(env).ok())
            .is_some_and(|p| {
                p.statement.hashes().any(|h| {
                    h.labels
                        .iter()
                        .any(|l| self.labels.contains(&l.to_string()))
                })
            })
    }
}
