//! The benchmarks' coalition, founded offline into a fresh store as `coalition init` and
//! `coalition admin member admit` would: `admin` founds it (quorum 1) and admits each of
//! `members` with its development-PKI signing key. Included by the benches with `#[path]`.
#![allow(dead_code)]

use anyhow::Result;
use coalition_hub::governance;
use coalition_hub::membership::{Action, MemberId, Role};
use coalition_hub::pki::CertDir;
use coalition_hub::store::Store;
use ed25519_dalek::SigningKey;

/// Founds `hub_name` into `store` and admits `members`; returns the admin's signing key (for
/// later changes such as a removal).
pub async fn found(
    store: &Store,
    certs: &CertDir,
    hub_name: &str,
    admin: &MemberId,
    members: &[&MemberId],
) -> Result<SigningKey> {
    let founder = (admin.clone(), "bench admin".to_string());
    governance::found_from_certs(store, certs, hub_name, &[founder], 1).await?;
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
        governance::append_offline(store, change).await?;
    }
    Ok(admin_key)
}
