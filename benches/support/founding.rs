//! The benchmarks' coalition, founded offline into a new data directory as `coalition init` and
//! `coalition admin member admit` would: `admin` founds it (quorum 1) and admits each of
//! `members` with its development-PKI signing key. Included by the benches with `#[path]`.
#![allow(dead_code)]

use anyhow::Result;
use coalition_hub::governance;
use coalition_hub::membership::{Action, MemberId, Role};
use coalition_hub::pki::CertDir;
use coalition_hub::store::{Store, StoreConfig};
use ed25519_dalek::SigningKey;
use std::path::Path;

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
