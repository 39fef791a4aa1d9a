//! Independent auditing: replaying a hub's whole log from its genesis, without trusting the hub.
//!
//! [`Verifier`] checks, entry by entry and in order, that each statement is intact (its id is
//! the hash of its bytes), that it was entitled to be logged where it is (the same
//! `membership::Registry` rules the hub's writer applies, with the membership state of the
//! entries before it, quorum included), that its signatures verify (in parallel batches), and
//! that the Merkle root it recomputes matches every checkpoint the hub signed — so a rewritten,
//! reordered, truncated or forked history fails, naming the entry or checkpoint. [`bundle`] is
//! the file format an export is written in.

pub mod bundle;
mod verifier;

pub use verifier::{AuditError, Location, Summary, Verifier};
