//! The integration tests, one binary: each module is one capability's tests over the real
//! server, certificates made at test time, sled in temporary directories and real clients over
//! mutual TLS. One binary links once and compiles the shared harness once.

mod common;
#[path = "common/serve.rs"]
mod serve;

mod audit;
mod auditor;
mod bad_input;
mod cli;
mod crash_loop;
mod crl;
mod durability;
mod erasure;
mod expiry;
mod federation_mesh;
mod fuzz_corpus;
mod hostile_hub;
mod hub;
mod id_index;
mod key_files;
mod limits;
mod matching;
mod matching_follow;
mod media;
mod member_keys;
mod membership;
mod mirror;
mod opinions;
mod ops;
mod peering;
mod protocol_version;
mod recipients;
mod relay;
mod replica_agreement;
mod retraction;
mod seen;
mod settings;
mod settings_cli;
mod shutdown;
mod signatures;
mod small_statements;
mod submit_journal;
mod sync;
mod sync_csv;
mod taxii;
mod tiles;
mod untrusted_text;
mod vectors;
mod vpdq;
mod witness;
