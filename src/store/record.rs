//! The stored form of a log entry: the envelope verbatim (header, signatures and body), and the
//! bytes its Merkle leaf commits to.

use super::StoreError;
use crate::membership::{MemberId, Registry};
use crate::pb;
use crate::replica;
use crate::statement::{Header, StatementId, Verified};

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
    /// For a relayed statement (docs/PROTOCOL.md §3.10): its provenance and evidence, as
    /// the replica accepted them.
    #[prost(message, optional, tag = "5")]
    pub relay: Option<pb::Relay>,
}

impl StoredEntry {
    /// The record for a newly accepted statement.
    pub fn new(seq: u64, received_at_ms: i64, verified: &Verified) -> Self {
        StoredEntry {
            seq,
            received_at_ms,
            statement_id: verified.id.0.to_vec(),
            envelope: Some(verified.envelope.clone()),
            relay: None,
        }
    }

    /// The bytes its Merkle leaf commits to: 40 for a statement logged here, 88 for a relayed
    /// one.
    pub fn leaf_data(&self) -> Result<Vec<u8>, StoreError> {
        let id = self.id()?;
        Ok(match &self.relay {
            None => leaf_data(&id, self.received_at_ms).to_vec(),
            Some(relay) => replica::Relay::from_wire(relay.clone())
                .map_err(|reason| StoreError::Corrupt {
                    key: format!("entry {}", self.seq),
                    reason,
                })?
                .leaf_data(&id, self.received_at_ms)
                .to_vec(),
        })
    }

    /// The signed header, decoded from the stored payload (what sync filters read).
    pub fn header(&self) -> Option<Header> {
        Header::decode(&self.envelope.as_ref()?.payload).ok()
    }

    /// The replica's view of the entry.
    pub fn to_replica_entry(&self) -> replica::Entry {
        replica::Entry {
            seq: self.seq,
            received_at_ms: self.received_at_ms,
            statement_id: self.statement_id.clone(),
            envelope: self.envelope.clone(),
            erased_by: None,
            relay: self.relay.clone(),
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

    /// The wire form sync sends, flagging (for information) the signers `registry` knows as
    /// compromised by the time the hub received it. `with_body` false withholds the body. An
    /// erased statement (docs/PROTOCOL.md §2.8) never has its body sent, to anyone, and names
    /// the entry that erased it. Take `registry` after reading the entry: the writer publishes
    /// an erasure before it overwrites the body, so a body found overwritten is then explained.
    pub fn into_sync_entry(mut self, registry: &Registry, with_body: bool) -> pb::SyncEntry {
        let mut erased_by = self.erased_by(registry);
        if (!with_body || erased_by.is_some())
            && let Some(envelope) = &mut self.envelope
        {
            envelope.body = Default::default();
        }
        // A relayed statement its origin erased: the claim names the erasure's origin
        // position, in the relay (docs/PROTOCOL.md §3.10).
        if let (Some(relay), Some(here)) = (&mut self.relay, erased_by) {
            if relay.erased_by.is_none() {
                relay.erased_by = registry.origin_position(here);
            }
            erased_by = None;
        }
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
            erased_by,
            relay: self.relay,
        }
    }

    /// Who made the statement, as this hub shows it: `issuer` (from its signed header) for a
    /// statement logged here; qualified by its origin's hub name (`acme@x.example`) for a
    /// relayed one (docs/PROTOCOL.md §3.10), the name the settings trust the origin under
    /// (its genesis id's first 16 hex digits if they no longer name it).
    pub fn issuer_here(&self, issuer: &MemberId, registry: &Registry) -> MemberId {
        match self.origin_hub(registry) {
            Some(hub) => issuer.qualified(&hub),
            None => issuer.clone(),
        }
    }

    /// For a relayed statement, the name its origin's members are qualified with here.
    fn origin_hub(&self, registry: &Registry) -> Option<String> {
        let origin = self
            .relay
            .as_ref()
            .and_then(|r| StatementId::from_slice(&r.origin_genesis))?;
        let trusted = registry
            .coalition()
            .and_then(|c| c.settings.federation.origins.get(&origin))
            .map(|o| o.hub_name.clone());
        Some(trusted.unwrap_or_else(|| origin.to_string()[..16].to_owned()))
    }

    /// The recipients of this entry's statement (`header`'s) as this hub reads them: a
    /// relayed statement's as [`crate::statement::Recipients::relayed_from`] maps them.
    pub fn recipients_here(
        &self,
        header: &Header,
        registry: &Registry,
    ) -> crate::statement::Recipients {
        match (self.origin_hub(registry), registry.coalition()) {
            (Some(origin), Some(c)) => header.recipients.relayed_from(&origin, &c.hub_name),
            _ => header.recipients.clone(),
        }
    }

    /// The read rule here (docs/PROTOCOL.md §2.7, §3.10): whether `reader` may read the body
    /// of this entry's statement (`header`'s). A relayed restricted statement is read by the
    /// members of this hub it names (its recipients as [`StoredEntry::recipients_here`] maps
    /// them) and by readers of everything, and never goes on to another hub: a restricted
    /// body reaches a hub only directly from its origin.
    pub fn readable_by(
        &self,
        header: &Header,
        reader: &crate::statement::Reader,
        registry: &Registry,
    ) -> bool {
        use crate::statement::Reader;
        if self.relay.is_none() || header.recipients.is_everyone() {
            return header.readable_by(reader);
        }
        match reader {
            Reader::Everything => true,
            Reader::Member(_) => self
                .recipients_here(header, registry)
                .admit(&self.issuer_here(&header.issuer, registry), reader),
            Reader::Relay | Reader::Hub(_) => false,
        }
    }

    /// The log position of the erasure that erased this entry's statement, if one applies
    /// (decided from the signed header: position, issuer, kind).
    pub fn erased_by(&self, registry: &Registry) -> Option<u64> {
        let id = StatementId::from_slice(&self.statement_id)?;
        if !registry.lifecycle().erases(&id) {
            return None;
        }
        let header = self.header()?;
        registry.erased_by(&crate::lifecycle::Target {
            id,
            seq: self.seq,
            issuer: &self.issuer_here(&header.issuer, registry),
            kind: header.kind,
        })
    }
}

/// The bytes a log entry's Merkle leaf commits to: the 32-byte statement id followed by the
/// receipt time as a big-endian signed 64-bit integer (docs/PROTOCOL.md, "Merkle leaves").
pub fn leaf_data(id: &StatementId, received_at_ms: i64) -> [u8; LEAF_LEN] {
    let mut out = [0u8; LEAF_LEN];
    out[..32].copy_from_slice(&id.0);
    out[32..].copy_from_slice(&received_at_ms.to_be_bytes());
    out
}

/// Length of a relayed entry's leaf data ([`relayed_leaf_data`]).
pub const RELAYED_LEAF_LEN: usize = 88;

/// The length of a statement's leaf data in the log that logged it (`leaf_data`).
pub const LEAF_LEN: usize = 40;

/// The bytes a relayed entry's Merkle leaf commits to (docs/PROTOCOL.md §3.10): the 40 bytes
/// of [`leaf_data`], then the origin's genesis id (32 bytes), the statement's position in the
/// origin's log and the origin's receipt time (8 bytes each, big-endian). 88 bytes, so a
/// relayed leaf is never read as a local one.
pub fn relayed_leaf_data(
    id: &StatementId,
    received_at_ms: i64,
    origin: &StatementId,
    origin_seq: u64,
    origin_received_at_ms: i64,
) -> [u8; RELAYED_LEAF_LEN] {
    let mut out = [0u8; RELAYED_LEAF_LEN];
    out[..40].copy_from_slice(&leaf_data(id, received_at_ms));
    out[40..72].copy_from_slice(&origin.0);
    out[72..80].copy_from_slice(&origin_seq.to_be_bytes());
    out[80..].copy_from_slice(&origin_received_at_ms.to_be_bytes());
    out
}
