//! Independent auditing: replaying a hub's whole log from its genesis, without trusting the hub.
//!
//! [`Verifier`] feeds a bundle's checkpoints and entries to the same [`crate::replica::Replica`]
//! the hub's writer and every member's sync run: every replica rule (ids, canonical bytes,
//! entitlement at each position, every signature under the one rule, no statement twice,
//! receipt times, the Merkle root against every signed checkpoint, the last one of the log's own
//! size) — so a rewritten, reordered, replayed, truncated or forked history fails, naming the
//! entry or checkpoint. Each checkpoint's witness cosignatures are checked against the witness
//! policy the replayed settings hold at its size (a forged one fails, naming the witness).
//! [`bundle`] is the file format an export is written in.

pub mod bundle;
mod verifier;

pub use verifier::{AuditError, Location, Summary, Verifier, Witnessing};

use bundle::{BundleError, BundleReader, Record};
use std::path::Path;

/// Why a bundle could not be verified: unreadable, or a failed check.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The file cannot be read or is not a bundle.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// A check failed.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// Verifies a bundle file from its genesis, with optional checkpoints saved earlier that the
/// log must be consistent with.
pub fn verify_bundle(path: &Path, previous: &[String]) -> Result<Summary, VerifyError> {
    verify_bundle_as(path, previous, crate::statement::Reader::Everything)
}

/// [`verify_bundle`] of a bundle exported by `reader`: a body of a restricted statement the
/// read rule does not give `reader` may be absent (docs/PROTOCOL.md §2.7); every other body
/// must be there. [`crate::statement::Reader::Everything`] requires every body.
pub fn verify_bundle_as(
    path: &Path,
    previous: &[String],
    reader: crate::statement::Reader,
) -> Result<Summary, VerifyError> {
    let mut verifier = Verifier::new().reading_as(reader);
    for note in previous {
        verifier.previous(note.clone())?;
    }
    let mut reader = BundleReader::open(path)?;
    while let Some(record) = reader.next_record()? {
        match record {
            Record::Checkpoint { note, cosignatures } => {
                verifier.cosigned_checkpoint(note, cosignatures)?;
            }
            Record::Entry(entry) => verifier.entry(entry)?,
        }
    }
    Ok(verifier.finish()?)
}
