//! Hubs copying and relaying hubs: another hub's log pulled into this store, trusting the
//! source for nothing.
//!
//! [`Follower`] pulls one hub's log through the `Audit` API (entries, signed checkpoints and
//! consistency proofs) with an identity holding the `auditor` role there (it reads every
//! body), feeds each batch to a [`crate::replica::Replica`] pinned to that hub's genesis, and
//! writes it to the local store only once the batch is proven in that hub's signed
//! checkpoint ([`crate::store::Replicated`]): the local log is then the source's, byte for byte
//! (same envelopes, positions and receipt times, so the same Merkle tree and checkpoints).
//! Two drivers:
//! - a **mirror** (`coalition serve --mirror-of ADDR --genesis ID`): a read-only hub that
//!   follows forever and serves Sync, Match and the audit RPCs from its copy;
//! - **disaster recovery** (`coalition serve --catch-up-from ADDR`): a hub restored from an
//!   old backup copies what it is missing from a mirror of its own log before it serves.
//!
//! The follower's cursor is the local store's durable size: nothing else is persisted.
//!
//! Peering (docs/PROTOCOL.md §3.10): [`Puller`] pulls one peer's log through its
//! `Federation` API (with the `peer` role there); [`Relayer`] shapes the peer's own statements
//! into relayed entries with their provenance and evidence, and [`Onward`] passes on what the
//! peer relayed from other origins; the store's writer logs a batch only if its replica — which
//! judges every relayed statement by the origin's own membership and signed checkpoints —
//! accepts it whole. Both pullers read through one `Source`.

mod follower;
mod peer;
mod relayer;
mod source;

pub use follower::{FollowError, Follower, FollowerStatus, Round};
pub use peer::{Peer, PeerStatus, Puller};
pub use relayer::{Onward, OriginView, Relayer, RelayerError};
pub use source::{MAX_BATCH_BYTES, MAX_BATCH_ENTRIES};

use crate::statement::StatementId;

/// Where a follower pulls from and as whom.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// The hub's address (`host:port`).
    pub addr: String,
    /// TLS material of the identity to call it with (a member with the `auditor` role there).
    pub tls: crate::pki::TlsConfig,
    /// The genesis the hub's log must start with (a mirror of an empty store; checked against
    /// the store's own genesis otherwise).
    pub genesis: Option<StatementId>,
}
