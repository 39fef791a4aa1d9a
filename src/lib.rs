//! Coalition Hub: member companies of a child-safety coalition share signed hash sets and
//! emerging-risk signals through a hub they do not have to trust.
//!
//! # Layout
//! - [`statement`]: what members say: the envelope, the signed header and the body, strict
//!   canonical decoding, the DSSE signature under one rule, the statement id, sync filters.
//!   Pure; no I/O.
//! - [`membership`]: members, roles, status and signing keys; the rules for who may do what.
//! - [`lifecycle`]: retractions and the state of each entry they decide (active, retracted),
//!   fed in log order by the registry; memory grows with lifecycle statements only. Pure.
//! - [`log`]: RFC 6962 Merkle tree math and C2SP signed checkpoints. Pure.
//! - [`audit`]: the auditor: the replica driven from a bundle file, and the bundle format.
//! - [`governance`]: authoring membership and settings statements (genesis, changes,
//!   co-signatures).
//! - [`settings`]: coalition settings (quotas, the hub checkpoint key): the admin-quorum
//!   statement that sets them and the settings in force. Pure.
//! - [`matching`]: exact and PDQ near-duplicate matching (PDQ multi-index hashing), online
//!   and offline.
//! - [`media`]: hashing what a member holds: PDQ (the reference algorithm, bit for bit) and
//!   MD5/SHA-1/SHA-256 of image files, bounded against decompression bombs; URL-MD5 of URLs.
//! - [`replica`]: what a log means, decided in one place: the state machine the hub's writer,
//!   every member's sync and the auditor feed entries and checkpoints to. Pure.
//! - [`store`]: sled storage: the append-only log, its Merkle nodes and indexes, written by the
//!   hub's replica; group commit, nothing acknowledged before it is flushed.
//! - [`server`]: the gRPC services over mutual TLS; thin translation to the domain; graceful
//!   shutdown (`server::shutdown`).
//! - [`client`]: the gRPC client over mutual TLS.
//! - [`sync`]: a member's sync: its own replica fed from the hub, every batch proven before it
//!   is handed out, and the state saved beside the output.
//! - [`journal`]: the submit journal: what `coalition submit` signed and the hub acknowledged,
//!   so a rerun resends the same envelopes and nothing is logged twice.
//! - [`formats`]: hash lists, signal files and sync output (CSV, JSON Lines).
//! - [`fuzzing`]: one entry point per parser of untrusted bytes, shared by the `cargo fuzz`
//!   targets (`fuzz/`) and the corpus replay test.
//! - [`pki`]: the development CA, certificates and signing-key files.
//! - [`taxii`]: the TAXII 2.1 read API's pure part: collections, STIX ids and objects, paging
//!   parameters, and the walk of the log a page is read from (served by `server::taxii`).
//! - [`text`]: untrusted text made safe to print (control characters escaped).
//! - [`quickstart`]: the end-to-end demonstration behind `coalition quickstart`.
//! - [`cli`]: the `coalition` command line (thin; `src/main.rs` only calls it).
//! - [`pb`]: the generated wire types of `proto/coalition/v1`.

pub mod audit;
pub mod cli;
pub mod client;
pub mod federation;
pub mod formats;
pub mod fuzzing;
pub mod governance;
pub mod journal;
pub mod lifecycle;
pub mod log;
pub mod matching;
pub mod media;
pub mod membership;
pub mod pki;
pub mod quickstart;
pub mod replica;
pub mod server;
pub mod settings;
pub mod statement;
pub mod store;
pub mod sync;
pub mod taxii;
pub mod text;
pub mod witness;

/// Wire types and gRPC stubs generated from `proto/coalition/v1` at build time.
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("coalition.v1");
    /// The encoded descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/coalition_descriptor.bin"));
}
