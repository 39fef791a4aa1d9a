//! `coalition quickstart`: the whole flow on loopback in one command, through the real parts:
//! development PKI, a genesis founding the hub, a hub on an ephemeral port with sled in a
//! temporary directory, members admitted by signed membership statements over mutual TLS,
//! signed submissions, a verified sync, the checks that refuse a forged statement, matching.

use crate::client::{Client, sign_new};
use crate::governance::admission;
use crate::membership::{Action, KeyId, MemberId, Role};
use crate::pb;
use crate::pki::CertDir;
use crate::statement::{
    Body, Category, HashEntry, HashSet, HashType, Indicator, Label, RiskSignal, Severity,
    SignalCategory,
};
use crate::store::{Store, StoreConfig, now_ms};
use crate::sync::{FilterSpec, SyncOptions, Syncer};
use anyhow::{Context, Result};
use std::path::Path;

/// Runs the demonstration, printing what happens.
pub async fn run(certs: &Path) -> Result<()> {
    let admin = MemberId::parse("admin")?;
    let acme = MemberId::parse("acme")?;
    let globex = MemberId::parse("globex")?;
    let dir = CertDir::new(certs);
    let created = dir.init(&[admin.clone(), acme.clone(), globex.clone()])?;
    println!(
        "1. PKI: {} ({} new files; private keys stay out of git)",
        certs.display(),
        created.files.len()
    );

    let data = tempfile::tempdir().context("creating a temporary data directory")?;
    let store = Store::open(data.path(), &StoreConfig::default())?;
    // Genesis, as `coalition init`: the hub's name and key, its first admin, quorum 1.
    let genesis = crate::governance::found_from_certs(
        &store,
        &dir,
        "quickstart.coalition.local",
        &[(admin.clone(), "Coalition secretariat".to_string())],
        1,
    )
    .await?;
    println!(
        "2. Genesis (as `coalition init`): hub 'quickstart.coalition.local', admin '{admin}', quorum 1; entry {} is statement {}",
        genesis.receipt.seq, genesis.receipt.statement_id
    );
    let options = crate::server::ServeOptions::for_store(&store, dir.hub_signing_key()?)?;
    let checkpoint_key = options
        .checkpoint_signer
        .as_ref()
        .map(|s| s.verifier_key().clone())
        .context("a founded hub signs its checkpoints")?;
    let hub = crate::server::spawn("127.0.0.1:0", store, dir.hub_tls()?, options).await?;
    let addr = hub.addr.to_string();
    println!(
        "3. Hub: serving on {addr} over mutual TLS, sled in {}",
        data.path().display()
    );

    let admin_key = dir.signing_key(&admin)?;
    let mut as_admin = Client::connect(&addr, &dir.member_tls(&admin)?).await?;
    for (id, name) in [(&acme, "Acme Social"), (&globex, "Globex Video")] {
        let key = dir.signing_key(id)?;
        let admit = admission(id, name, &[Role::Member], &[key.verifying_key()]);
        let receipt = as_admin
            .submit(crate::governance::change(
                &admin,
                &admin_key,
                Action::Admit(admit),
                "quickstart",
            ))
            .await?
            .receipt
            .unwrap_or_default();
        println!(
            "4. admin signed a membership statement admitting '{id}' ({name}), signing key {}: entry {}",
            KeyId::of(&key.verifying_key()),
            receipt.seq
        );
    }

    let acme_key = dir.signing_key(&acme)?;
    let mut as_acme = Client::connect(&addr, &dir.member_tls(&acme)?).await?;
    let set = sample_hash_set();
    let set_len = set.entries.len();
    let envelope = sign_new(&acme, &acme_key, Body::HashSet(set));
    let first = as_acme.submit(envelope.clone()).await?;
    let receipt = first.receipt.unwrap_or_default();
    println!(
        "5. acme submitted a signed hash set of {set_len} hashes (md5, sha1, sha256, pdq, photodna): seq {}, statement {}",
        receipt.seq,
        hex::encode(&receipt.statement_id)
    );
    let again = as_acme.submit(envelope).await?;
    println!(
        "   resubmitting the same envelope is idempotent: already_present={}, same seq {}",
        again.already_present,
        again.receipt.unwrap_or_default().seq
    );
    let signal = as_acme
        .submit(sign_new(
            &acme,
            &acme_key,
            Body::RiskSignal(sample_signal()),
        ))
        .await?;
    println!(
        "6. acme submitted a sextortion risk signal: seq {}",
        signal.receipt.unwrap_or_default().seq
    );

    let globex_key = dir.signing_key(&globex)?;
    let mut as_globex = Client::connect(&addr, &dir.member_tls(&globex)?).await?;
    let forged = sign_new(&acme, &globex_key, Body::HashSet(sample_hash_set()));
    match as_globex.submit(forged).await {
        Err(e) => println!("7. globex tried to submit a statement in acme's name: refused ({e})"),
        Ok(_) => anyhow::bail!("the hub accepted a statement in another member's name"),
    }

    let state = tempfile::tempdir().context("creating a temporary sync state directory")?;
    let (mut syncer, _) = Syncer::open(
        as_globex,
        SyncOptions {
            filter: FilterSpec::default(),
            follow: false,
            genesis: Some(genesis.receipt.statement_id),
            cursor: state.path().join("cursor"),
            ids: state.path().join("ids"),
            require_witnessed: false,
        },
    )
    .await?;
    let (mut statements, mut hashes, mut signals, mut membership) = (0, 0, 0, 0);
    let mut proven_in = 0;
    while let Some(proven) = syncer.next().await? {
        for entry in &proven.entries {
            statements += 1;
            match entry.statement().map(|s| &s.body) {
                Some(Body::HashSet(s)) => hashes += s.entries.len(),
                Some(Body::RiskSignal(_)) => signals += 1,
                Some(Body::Genesis(_) | Body::Membership(_) | Body::Settings(_)) => membership += 1,
                Some(Body::Retraction(_) | Body::Opinion(_)) | None => {}
            }
        }
        syncer.commit(&[], 0)?;
        proven_in = proven.checkpoint_size;
    }
    println!(
        "8. globex synced {statements} statements ({membership} membership, {hashes} hashes, {signals} risk signal): it replayed membership from the pinned genesis, verified every signature and entitlement itself, and proved all {} entries in the hub's signed checkpoint of {proven_in}",
        syncer.replica().size()
    );
    // Matching: a near-duplicate of acme's first PDQ hash (5 bits flipped) and an unrelated one.
    let mut as_globex = Client::connect(&addr, &dir.member_tls(&globex)?).await?;
    let shared_pdq = sample_hash_set()
        .entries
        .into_iter()
        .find(|e| e.hash_type == HashType::Pdq)
        .map(|e| e.value)
        .context("the sample set has a PDQ hash")?;
    let mut near = shared_pdq.clone();
    for bit in [3, 40, 77, 150, 201] {
        near[bit / 8] ^= 1 << (bit % 8);
    }
    let unrelated: Vec<u8> = near.iter().map(|b| !b).collect();
    let answer = as_globex
        .hub
        .r#match(pb::MatchRequest {
            queries: [near, unrelated]
                .into_iter()
                .map(|value| pb::MatchQuery {
                    r#type: pb::HashType::Pdq as i32,
                    value,
                    quality: None,
                })
                .collect(),
            pdq_threshold: None,
            min_quality: None,
            states: Vec::new(),
            ..Default::default()
        })
        .await
        .map_err(crate::client::ClientError::from)?
        .into_inner();
    for (result, what) in answer.results.iter().zip(["near-duplicate", "unrelated"]) {
        match result.matches.first() {
            Some(m) => println!(
                "9. match ({what} PDQ query): hit, distance {} (threshold 31), shared by '{}' at seq {}, labels {}",
                m.distance,
                m.issuer,
                m.seq,
                m.labels.join(",")
            ),
            None => println!("9. match ({what} PDQ query): no match within distance 31"),
        }
    }
    // Auditing: acme's first receipt is in a checkpoint signed by the hub's key.
    let checkpoint = as_globex.verify_receipt(&checkpoint_key, &receipt).await?;
    println!(
        "10. audit: acme's receipt seq {} is in the hub's signed checkpoint of {} entries (key {checkpoint_key}); inclusion proof verified",
        receipt.seq,
        checkpoint.size()
    );
    // The offline auditor: export everything, replay it from the genesis.
    let audit_dir = tempfile::tempdir().context("creating a temporary directory")?;
    let bundle = audit_dir.path().join("quickstart.bundle");
    let (entries, checkpoints) = as_globex.export_bundle(&bundle).await?;
    let path = bundle.clone();
    let summary = tokio::task::spawn_blocking(move || crate::audit::verify_bundle(&path, &[]))
        .await
        .context("the verifier stopped")??;
    println!(
        "11. audit export + offline verify (as `coalition audit export` / `audit verify`): {entries} entries and {checkpoints} signed checkpoint(s) written; replayed from genesis {}: every signature entitled at its position, {} membership changes, {} checkpoint(s) match the recomputed root {}",
        summary.genesis_id,
        summary.membership_entries,
        summary.checkpoints,
        summary.root.to_hex()
    );
    hub.stop().await?;
    println!("Done. Next: README.md walks through the same steps with the `coalition` CLI.");
    Ok(())
}

/// A small hash set covering every hash type (values are illustrative, not real material).
pub fn sample_hash_set() -> HashSet {
    let entry =
        |hash_type: HashType, seed: u8, quality: Option<u8>, labels: Vec<Label>| HashEntry {
            hash_type,
            value: (0..hash_type.value_len())
                .map(|i| seed.wrapping_mul(31).wrapping_add(i as u8))
                .collect(),
            quality,
            labels,
        };
    HashSet {
        expires_at_ms: None,
        description: "quickstart sample".into(),
        entries: vec![
            entry(HashType::Md5, 1, None, vec![Label::Category(Category::A1)]),
            entry(HashType::Sha1, 2, None, vec![Label::Category(Category::A2)]),
            entry(
                HashType::Sha256,
                3,
                None,
                vec![
                    Label::Category(Category::B1),
                    Label::Tag("quickstart".into()),
                ],
            ),
            entry(
                HashType::Pdq,
                4,
                Some(90),
                vec![Label::Category(Category::A1)],
            ),
            entry(
                HashType::Pdq,
                5,
                Some(80),
                vec![Label::Category(Category::B2)],
            ),
            entry(
                HashType::PhotoDna,
                6,
                None,
                vec![Label::Category(Category::A1)],
            ),
        ],
    }
}

/// A sample sextortion signal.
pub fn sample_signal() -> RiskSignal {
    let now = now_ms();
    RiskSignal {
        category: SignalCategory::Sextortion,
        severity: Severity::High,
        title: "Payment-demand script targeting teens".into(),
        description: "Opening lines seen across several platforms this week.".into(),
        indicators: vec![
            Indicator::Keyword("i have your pics, pay or i send them".into()),
            Indicator::Domain("pay-now.example".into()),
            Indicator::AccountHandle {
                platform: "example-chat".into(),
                handle: "@quick_cash_4u".into(),
            },
        ],
        first_seen_ms: now - 86_400_000,
        last_seen_ms: now,
        expires_at_ms: None,
    }
}
