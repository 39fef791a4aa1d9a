//! The benchmarks' coalition, founded offline into a new data directory as `coalition init` and
//! `coalition admin member admit` would: `admin` founds it (quorum 1) and admits each of
//! `members` with its development-PKI signing key. Included by the benches with `#[path]`.
#![allow(dead_code)]

use anyhow::Result;
use coalition_hub::governance;
use coalition_hub::membership::{Action, MemberId, Role};
use coalition_hub::pki::CertDir;
use coalition_hub::statement::{Body, HashEntry, HashSet, HashType, Label};
use coalition_hub::store::{Store, StoreConfig};
use ed25519_dalek::SigningKey;
use prost::Message;
use std::path::Path;

/// Set `set` of `n` distinct sha256 hashes (bytes 0..8 the set, 8..16 the index, big-endian),
/// tagged `bench`.
pub fn sha256_set(set: usize, n: usize, description: String) -> Body {
    Body::HashSet(HashSet {
        expires_at_ms: None,
        description,
        entries: (0..n)
            .map(|i| {
                let mut value = vec![0u8; 32];
                value[..8].copy_from_slice(&(set as u64).to_be_bytes());
                value[8..16].copy_from_slice(&(i as u64).to_be_bytes());
                HashEntry {
                    hash_type: HashType::Sha256,
                    value,
                    quality: None,
                    labels: vec![Label::Tag("bench".into())],
                }
            })
            .collect(),
    })
}

/// Opens a store in `data`, founds `hub_name` into it and admits `members`; returns the store
/// and the admin's signing key (for later changes such as a removal).
pub async fn found(
    data: &Path,
    certs: &CertDir,
    hub_name: &str,
    admin: &MemberId,
    members: &[&MemberId],
) -> Result<(Store, SigningKey)> {
    let store = Store::open(data, &StoreConfig::default())?;
    let founder = (admin.clone(), "bench admin".to_string());
    governance::found_from_certs(&store, certs, hub_name, &[founder], 1).await?;
    let admin_key = certs.signing_key(admin)?;
    for id in members {
        let key = certs.signing_key(id)?;
        let admit = governance::admission(
            id,
            &format!("bench {id}"),
            &[Role::Member],
            &[key.verifying_key()],
        );
        let change = governance::change(admin, &admin_key, Action::Admit(admit), "bench");
        governance::append_offline(&store, change).await?;
    }
    Ok((store, admin_key))
}

/// Turns a freshly founded directory (the genesis and the admissions) into the layout before
/// the id runs, for a before/after run against a hub built before them (`HUB_BENCH_HUB_BINARY`
/// with the benches' `*_EARLIER_LAYOUT=1`): the earlier layout marker, the genesis id as a sled
/// key (the admissions' ids are left out: only a duplicate of those would go unnoticed), no
/// `ids/` directory.
pub fn earlier_layout(data: &Path) -> Result<()> {
    let records = std::fs::read(data.join(coalition_hub::store::ENTRIES_DATA_FILE))?;
    let offsets = std::fs::read(data.join(coalition_hub::store::ENTRIES_OFFSETS_FILE))?;
    let end = u64::from_be_bytes(offsets[..8].try_into()?) as usize;
    let genesis = coalition_hub::store::StoredEntry::decode(&records[..end])?;
    std::fs::remove_dir_all(data.join(coalition_hub::store::ID_RUNS_DIR))?;
    let db = sled::open(data)?;
    let log = db.open_tree("log")?;
    let mut key = vec![b'I'];
    key.extend_from_slice(&genesis.statement_id);
    log.insert(key, &0u64.to_be_bytes()[..])?;
    log.insert(b"F", &b"tiles-1+entry-files-1"[..])?;
    db.flush()?;
    Ok(())
}
