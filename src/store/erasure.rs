//! Erasure on disk (docs/PROTOCOL.md §2.8): an erased statement's body is overwritten with
//! zeros in place in `entries.dat`, once the erasure is durable.
//!
//! A record is the prost-encoded [`StoredEntry`], whose last field is the envelope (then, for
//! a relayed statement, its relay), whose last field is the body: the body ends the record, or
//! the envelope just before the relay. Overwriting it with as many zero bytes
//! keeps every offset in `entries.idx`, and the record still decodes (a bytes field may hold
//! anything); a body of zeros cannot be a statement's (its first byte would be field number
//! 0, which no protobuf message has), so [`clear_scrubbed`] reads such a body as absent.
//!
//! Crash safety: the writer scrubs a group's erased targets after the group is durable and
//! before it publishes the new size or acknowledges anything, and `Store::open` scrubs every
//! erased target again before the writer starts ([`scrub_erased`]): a crash between logging
//! an erasure and its scrub (or half way through the overwrite) leaves a body that the next
//! start overwrites, before any reader runs. Scrubbing is idempotent.
//!
//! Nothing else in the data directory holds a body: sled holds tiles, sizes, markers and
//! checkpoints, the id runs hold ids. The hub's match snapshot holds hashes; the indexer deals
//! with it (`server/indexer.rs`).

use super::entry_files::{DATA_FILE, EntryFiles};
use super::{StoreError, StoredEntry};
use crate::lifecycle::Target;
use crate::membership::Registry;
use crate::statement::{Body, StatementId};
use prost::Message;

/// Reads a scrubbed body (all zeros) as no body.
pub(super) fn clear_scrubbed(entry: &mut StoredEntry) {
    if let Some(envelope) = &mut entry.envelope
        && !envelope.body.is_empty()
        && envelope.body.iter().all(|b| *b == 0)
    {
        envelope.body = Default::default();
    }
}

impl EntryFiles {
    /// Overwrites the body of record `seq` with zeros (same length), without syncing (the
    /// caller calls [`EntryFiles::sync_data`] once for all). Returns false if there was
    /// nothing left to overwrite.
    pub(super) fn scrub_body(&self, seq: u64) -> Result<bool, StoreError> {
        let (start, bytes) = self.read_raw(seq)?;
        let entry = StoredEntry::decode(bytes.as_slice()).map_err(|e| StoreError::Corrupt {
            key: format!("entry {seq}"),
            reason: e.to_string(),
        })?;
        let body = entry
            .envelope
            .as_ref()
            .map(|e| e.body.clone())
            .unwrap_or_default();
        if body.iter().all(|b| *b == 0) {
            return Ok(false);
        }
        // A relayed record ends with its relay (field 5, after the envelope); the body ends
        // the envelope just before it.
        let tail = entry
            .relay
            .as_ref()
            .map_or(0, |r| prost::encoding::message::encoded_len(5, r));
        let Some(end) = bytes.len().checked_sub(tail) else {
            return Err(StoreError::Corrupt {
                key: format!("entry {seq}"),
                reason: "the record is shorter than its relay".into(),
            });
        };
        if !bytes[..end].ends_with(&body) {
            return Err(StoreError::Corrupt {
                key: format!("entry {seq}"),
                reason: "the record's envelope does not end with its body, so it cannot be erased in place"
                    .into(),
            });
        }
        let at = start + (end - body.len()) as u64;
        self.write_at(DATA_FILE, &vec![0u8; body.len()], at)?;
        Ok(true)
    }
}

/// Whether `registry` erases the statement of `entry` (decided from its signed header).
fn erased(registry: &Registry, entry: &StoredEntry, id: StatementId) -> bool {
    let Some(header) = entry.header() else {
        return false;
    };
    let target = Target {
        id,
        seq: entry.seq,
        issuer: &entry.issuer_here(&header.issuer, registry),
        kind: header.kind,
    };
    registry.erased_by(&target).is_some()
}

/// Overwrites the bodies of `targets` that `registry` says are erased, then fdatasyncs once;
/// `find` looks a statement up among the durable entries. Returns how many bodies were
/// overwritten (already scrubbed ones are not counted).
pub(super) fn scrub<'a>(
    files: &EntryFiles,
    registry: &Registry,
    targets: impl IntoIterator<Item = &'a StatementId>,
    find: impl Fn(&StatementId) -> Result<Option<StoredEntry>, StoreError>,
) -> Result<u64, StoreError> {
    let mut scrubbed = 0;
    for id in targets {
        let Some(entry) = find(id)? else {
            continue; // never logged here: the erasure has no effect
        };
        if erased(registry, &entry, *id) && files.scrub_body(entry.seq)? {
            scrubbed += 1;
        }
    }
    if scrubbed > 0 {
        files.sync_data(DATA_FILE)?;
        metrics::counter!("coalition_erased_bodies_total").increment(scrubbed);
    }
    Ok(scrubbed)
}

/// At open, before the writer starts: overwrites every erased body still on disk (a crash
/// between an erasure's commit and its scrub).
pub(super) fn scrub_erased(
    files: &EntryFiles,
    registry: &Registry,
    find: impl Fn(&StatementId) -> Result<Option<StoredEntry>, StoreError>,
) -> Result<u64, StoreError> {
    let targets: Vec<StatementId> = registry
        .lifecycle()
        .erasure_targets()
        .map(|(id, _)| *id)
        .collect();
    let scrubbed = scrub(files, registry, &targets, find)?;
    if scrubbed > 0 {
        tracing::info!(
            "store: overwrote {scrubbed} erased bodies that a crash left on disk (an erasure logged before its scrub)"
        );
    }
    Ok(scrubbed)
}

/// The statements a group's newly logged erasures name.
pub(super) fn erasure_targets(body: &Body) -> Option<StatementId> {
    match body {
        Body::Retraction(r) if r.erase => Some(r.target),
        _ => None,
    }
}
