//! The stored form of a log entry: the envelope verbatim plus a summary that sync filters read
//! without decoding the payload, and the bytes its Merkle leaf commits to.

use super::StoreError;
use crate::membership::Registry;
use crate::pb;
use crate::statement::{Kind, Label, StatementId, Verified};
use std::collections::BTreeSet;

/// Most distinct labels kept in a summary; beyond it the filter decodes the payload.
const MAX_SUMMARY_LABELS: usize = 256;

/// One log entry as stored (a private storage format, prost-encoded).
#[derive(Clone, PartialEq, prost::Message)]
pub struct StoredEntry {
    /// Position in the log.
    #[prost(uint64, tag = "1")]
    pub seq: u64,
    /// When the hub accepted it.
    #[prost(int64, tag = "2")]
    pub received_at_ms: i64,
    /// SHA-256 of the PAE.
    #[prost(bytes = "vec", tag = "3")]
    pub statement_id: Vec<u8>,
    /// The envelope exactly as received.
    #[prost(message, optional, tag = "4")]
    pub envelope: Option<pb::Envelope>,
    /// What filters need.
    #[prost(message, optional, tag = "5")]
    pub summary: Option<Summary>,
}

/// What sync filters look at, extracted once at append time.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The issuer's member id.
    #[prost(string, tag = "1")]
    pub issuer: String,
    /// The statement kind (`pb::StatementKind`).
    #[prost(int32, tag = "2")]
    pub kind: i32,
    /// OR of `HashType::bit()` over every hash carried.
    #[prost(uint32, tag = "3")]
    pub hash_types: u32,
    /// Distinct labels over every hash carried (empty if `labels_overflow`).
    #[prost(string, repeated, tag = "4")]
    pub labels: Vec<String>,
    /// More distinct labels than a summary keeps: a label filter must decode the payload.
    #[prost(bool, tag = "5")]
    pub labels_overflow: bool,
    /// Number of hashes carried.
    #[prost(uint64, tag = "6")]
    pub hash_count: u64,
}

impl StoredEntry {
    /// The record for a newly accepted statement.
    pub fn new(seq: u64, received_at_ms: i64, verified: &Verified) -> Self {
        let statement = &verified.statement;
        let mut hash_types = 0;
        let mut hash_count = 0;
        let mut labels = BTreeSet::new();
        for h in statement.hashes() {
            hash_types |= h.hash_type.bit();
            hash_count += 1;
            if labels.len() <= MAX_SUMMARY_LABELS {
                labels.extend(h.labels.iter().map(Label::to_string));
            }
        }
        let labels_overflow = labels.len() > MAX_SUMMARY_LABELS;
        StoredEntry {
            seq,
            received_at_ms,
            statement_id: verified.id.0.to_vec(),
            envelope: Some(verified.envelope.clone()),
            summary: Some(Summary {
                issuer: statement.issuer.to_string(),
                kind: statement.kind().to_wire() as i32,
                hash_types,
                labels: if labels_overflow {
                    Vec::new()
                } else {
                    labels.into_iter().collect()
                },
                labels_overflow,
                hash_count,
            }),
        }
    }

    /// The statement id.
    pub fn id(&self) -> Result<StatementId, StoreError> {
        StatementId::from_slice(&self.statement_id).ok_or_else(|| StoreError::Corrupt {
            key: format!("entry {}", self.seq),
            reason: "statement id is not 32 bytes".into(),
        })
    }

    /// The receipt the hub gave for it.
    pub fn receipt(&self) -> Result<super::Receipt, StoreError> {
        Ok(super::Receipt {
            statement_id: self.id()?,
            seq: self.seq,
            received_at_ms: self.received_at_ms,
        })
    }

    /// The wire form sync sends, flagging the signers `registry` knows as compromised by the
    /// time the hub received it.
    pub fn into_sync_entry(self, registry: &Registry) -> pb::SyncEntry {
        let compromised_key_ids = match &self.envelope {
            Some(envelope) => registry.compromised(
                envelope.signatures.iter().map(|s| s.key_id.as_str()),
                self.received_at_ms,
            ),
            None => Vec::new(),
        };
        pb::SyncEntry {
            seq: self.seq,
            received_at_ms: self.received_at_ms,
            statement_id: self.statement_id,
            envelope: self.envelope,
            compromised_key_ids,
        }
    }

    /// The statement kind, if known to this version.
    pub fn kind(&self) -> Option<Kind> {
        Kind::from_wire(self.summary.as_ref()?.kind)
    }
}

/// The bytes a log entry's Merkle leaf commits to: the 32-byte statement id followed by the
/// receipt time as a big-endian signed 64-bit integer (docs/PROTOCOL.md, "Merkle leaves").
pub fn leaf_data(id: &StatementId, received_at_ms: i64) -> [u8; 40] {
    let mut out = [0u8; 40];
    out[..32].copy_from_slice(&id.0);
    out[32..].copy_from_slice(&received_at_ms.to_be_bytes());
    out
}
