//! Writes the starting corpus of every fuzz target into `fuzz/corpus/<target>/seed-*`: real
//! inputs made with the library itself (signed with the fixed keys of `coalition_hub::fuzzing`),
//! so the fuzzer starts past the signature and format checks. Run from the repository root:
//! `cargo run --example fuzz_seeds`. Deterministic except the random nonces `sign_new` draws.

use coalition_hub::audit::bundle::{BundleWriter, Record};
use coalition_hub::client::sign_new;
use coalition_hub::formats::{EntryWriter, Format, RowFilter};
use coalition_hub::fuzzing::{FUZZ_ORIGIN, crl_ca, signing_key};
use coalition_hub::journal::{InputKind, Journal, Receipt, Submission};
use coalition_hub::log::{CheckpointSigner, LeafIndex, MemoryTree, TreeSize};
use coalition_hub::membership::{Action, Admission, KeyId, MemberId, Role};
use coalition_hub::pb;
use coalition_hub::replica::{Entry, Replica, SeenMap};
use coalition_hub::statement::{
    Body, HashEntry, HashSet, HashType, Indicator, Label, ParsedEnvelope, RiskSignal, Severity,
    SignalCategory, StatementId,
};
use coalition_hub::store::leaf_data;
use coalition_hub::sync::{Cursor, FilterSpec, ReceivedEntry};
use ed25519_dalek::SigningKey;
use prost::Message;
use std::path::{Path, PathBuf};

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from("fuzz/corpus");
    let hub_key = signing_key();
    let admin_key = SigningKey::from_bytes(&[0x11; 32]);
    let member_key = SigningKey::from_bytes(&[0x22; 32]);
    let admin = MemberId::parse("admin")?;
    let acme = MemberId::parse("acme")?;

    let genesis = coalition_hub::governance::genesis(
        FUZZ_ORIGIN,
        &hub_key,
        vec![Admission {
            id: admin.clone(),
            display_name: "Fuzz secretariat".into(),
            roles: vec![Role::Admin],
            keys: vec![admin_key.verifying_key()],
            cert_pins: vec![],
        }],
        1,
        &admin_key,
    )?;
    let admit = coalition_hub::governance::change(
        &admin,
        &admin_key,
        Action::Admit(Admission {
            id: acme.clone(),
            display_name: "Acme".into(),
            roles: vec![Role::Member],
            keys: vec![member_key.verifying_key()],
            cert_pins: vec![],
        }),
        "fuzz seed",
    );
    let label = Label::parse("csam").map_err(anyhow::Error::msg)?;
    let hashes = Body::HashSet(HashSet {
        description: "seed".into(),
        expires_at_ms: None,
        entries: vec![
            HashEntry {
                hash_type: HashType::Sha256,
                value: vec![0xab; 32],
                quality: None,
                labels: vec![label.clone()],
            },
            HashEntry {
                hash_type: HashType::Pdq,
                value: vec![0x5c; 32],
                quality: Some(90),
                labels: vec![],
            },
            HashEntry {
                hash_type: HashType::Md5,
                value: vec![1; 16],
                quality: None,
                labels: vec![],
            },
        ],
    });
    let signal = Body::RiskSignal(RiskSignal {
        category: SignalCategory::Grooming,
        severity: Severity::Medium,
        title: "lure".into(),
        description: "a phrase".into(),
        indicators: vec![Indicator::Keyword("secret game".into())],
        first_seen_ms: 1_700_000_000_000,
        last_seen_ms: 1_700_000_000_000,
        expires_at_ms: None,
    });
    let set = sign_new(&acme, &member_key, hashes);
    let risk = sign_new(&acme, &member_key, signal);
    // Signed with the fuzz key itself, so the envelope target's signature check passes.
    let fuzz_signed = sign_new(&admin, &hub_key, body_of(&set)?);
    let envelopes = [genesis, admit, set, risk, fuzz_signed];

    // envelope, statement
    for (n, e) in envelopes.iter().enumerate() {
        seed(&root, "envelope", n, &e.encode_to_vec())?;
        let mut both = (e.payload.len() as u16).to_be_bytes().to_vec();
        both.extend_from_slice(&e.payload);
        both.extend_from_slice(&e.body);
        seed(&root, "statement", n, &both)?;
    }

    // The log: the first four envelopes, a checkpoint of them.
    let entries: Vec<pb::SyncEntry> = envelopes[..4]
        .iter()
        .enumerate()
        .map(|(seq, e)| pb::SyncEntry {
            seq: seq as u64,
            received_at_ms: coalition_hub::store::now_ms() + seq as i64,
            statement_id: StatementId::of(&e.payload_type, &e.payload).0.to_vec(),
            envelope: Some(e.clone()),
            compromised_key_ids: vec![],
            erased_by: None,
            relay: None,
        })
        .collect();
    let mut tree = MemoryTree::new();
    for e in &entries {
        let id = StatementId::from_slice(&e.statement_id).expect("32 bytes");
        tree.append(&leaf_data(&id, e.received_at_ms));
    }
    let signer = CheckpointSigner::new(FUZZ_ORIGIN, hub_key.clone())?;
    let small = signer.sign(TreeSize(2), coalition_hub::log::root(&tree, TreeSize(2))?)?;
    let full = signer.sign(tree.size(), tree.root())?;

    // checkpoint
    seed(&root, "checkpoint", 0, full.note().as_bytes())?;
    seed(&root, "checkpoint", 1, small.note().as_bytes())?;
    seed(&root, "checkpoint", 2, full.checkpoint().body().as_bytes())?;
    seed(
        &root,
        "checkpoint",
        3,
        signer.verifier_key().to_string().as_bytes(),
    )?;

    // proofs: tree size, old size, index, mode, then changes.
    for (n, bytes) in [
        vec![6, 3, 2, 0],
        vec![6, 3, 2, 1],
        vec![63, 17, 40, 0, 6, 1, 3, 2, 0, 0],
        vec![63, 17, 40, 1, 6, 1, 3, 2, 0, 0],
        [vec![9, 4, 7, 0], vec![0xff; 24], vec![7; 64]].concat(),
    ]
    .iter()
    .enumerate()
    {
        seed(&root, "proofs", n, bytes)?;
    }

    // bundle: the whole log, then checkpoints.
    let tmp = tempfile::tempdir()?;
    let path = tmp.path().join("seed.bundle");
    let mut writer = BundleWriter::create(&path)?;
    writer.write(Record::checkpoint(small.note()))?;
    writer.write(Record::checkpoint(full.note()))?;
    for e in &entries {
        writer.write(Record::Entry(e.clone()))?;
    }
    writer.finish()?;
    let summary = coalition_hub::audit::verify_bundle(&path, &[])?;
    eprintln!("bundle seed verifies: {summary:?}");
    seed(&root, "bundle", 0, &std::fs::read(&path)?)?;

    // sync_cursor: a replica of that log.
    let mut replica = Replica::new().keeping_membership();
    let mut seen = SeenMap::default();
    let accepted = replica.append(
        entries.iter().cloned().map(Entry::from_wire).collect(),
        &mut seen,
    )?;
    let cursor = Cursor {
        format: 2,
        output_bytes: 300,
        ids_records: replica.size(),
        events_bytes: 0,
        filter: FilterSpec::default(),
        replica: replica.snapshot(),
        witnessed: None,
    };
    seed(&root, "sync_cursor", 0, &serde_json::to_vec(&cursor)?)?;

    // hash_list: sync output (CSV and JSON Lines) and hand-written lists.
    for (n, format) in [Format::Csv, Format::Jsonl].into_iter().enumerate() {
        let mut out = EntryWriter::new(Vec::new(), format, true, RowFilter::default())?;
        for a in accepted.iter().cloned() {
            if let Some(statement) = a.statement().cloned() {
                out.write(&ReceivedEntry {
                    seq: a.seq,
                    received_at_ms: a.received_at_ms,
                    id: a.id,
                    statement,
                    compromised_keys: vec![],
                })?;
            }
        }
        seed(&root, "hash_list", n, &out.into_inner()?)?;
    }
    let pdq = "5c".repeat(32);
    let sha = "ab".repeat(32);
    seed(
        &root,
        "hash_list",
        2,
        format!("type,hash,labels,quality\nsha256,{sha},csam;tag,\npdq,{pdq},,80\n# comment\n\nmd5,{}\n", "01".repeat(16)).as_bytes(),
    )?;
    seed(
        &root,
        "hash_list",
        3,
        format!("{pdq},100\n{pdq}\n").as_bytes(),
    )?;
    seed(
        &root,
        "hash_list",
        4,
        format!("{{\"type\":\"pdq\",\"hash\":\"{pdq}\",\"labels\":[\"csam\"],\"quality\":70}}\n{{\"kind\":\"signal\"}}\n").as_bytes(),
    )?;

    // signal
    seed(
        &root,
        "signal",
        0,
        br#"{"category":"grooming","severity":"medium","title":"New lure phrase","indicators":[{"type":"keyword","value":"secret game"}],"first_seen_ms":1700000000000,"last_seen_ms":1700000000000}"#,
    )?;
    seed(
        &root,
        "signal",
        1,
        format!(r#"{{"category":"sextortion","severity":"critical","title":"t","description":"d","indicators":[{{"type":"account_handle","value":"@x","platform":"example"}},{{"type":"url","value":"https://example.org/a"}},{{"type":"domain","value":"example.org"}},{{"type":"hash","hash":{{"type":"pdq","hash":"{pdq}","quality":90}}}}],"first_seen_ms":1,"last_seen_ms":2,"expires_at_ms":3}}"#).as_bytes(),
    )?;

    // crl: signed by the fixed CA, empty and with revoked serials.
    let (_, ca) = crl_ca();
    for (n, serials) in [vec![], vec![vec![0x41u8; 16], vec![0x01]]]
        .iter()
        .enumerate()
    {
        let now = rcgen::date_time_ymd(2026, 1, 1);
        let params = rcgen::CertificateRevocationListParams {
            this_update: now,
            next_update: rcgen::date_time_ymd(2026, 2, 1),
            crl_number: rcgen::SerialNumber::from(n as u64 + 1),
            issuing_distribution_point: None,
            revoked_certs: serials
                .iter()
                .map(|s| rcgen::RevokedCertParams {
                    serial_number: rcgen::SerialNumber::from_slice(s),
                    revocation_time: now,
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let pem = params.signed_by(&ca)?.pem()?;
        coalition_hub::fuzzing::crl(pem.as_bytes());
        seed(&root, "crl", n, pem.as_bytes())?;
    }

    // journal: one made by the library, acknowledged in part, and one complete.
    for n in 0..2 {
        let input = tmp.path().join(format!("list{n}.csv"));
        std::fs::write(&input, format!("sha256,{sha}\n"))?;
        let submission = Submission::new(
            &input,
            InputKind::HashList {
                set_size: 1,
                description: "",
                expires_at_ms: None,
            },
            &acme,
            &KeyId::of(&member_key.verifying_key()),
        )?;
        let path = Journal::path_for(&input);
        let mut journal = Journal::create(&path, &submission, envelopes[2..4].to_vec())?;
        journal.acknowledge(
            0,
            Receipt {
                seq: LeafIndex(2),
                id: StatementId::of(&envelopes[2].payload_type, &envelopes[2].payload),
                received_at_ms: 5,
                already_present: false,
            },
        )?;
        if n == 1 {
            journal.acknowledge(
                1,
                Receipt {
                    seq: LeafIndex(3),
                    id: StatementId::of(&envelopes[3].payload_type, &envelopes[3].payload),
                    received_at_ms: 6,
                    already_present: true,
                },
            )?;
            journal.complete()?;
        }
        drop(journal);
        seed(&root, "journal", n, &std::fs::read(&path)?)?;
    }

    for (name, target) in coalition_hub::fuzzing::TARGETS {
        for file in std::fs::read_dir(root.join(name))? {
            target(&std::fs::read(file?.path())?);
        }
    }
    Ok(())
}

fn body_of(envelope: &pb::Envelope) -> anyhow::Result<Body> {
    let parsed = ParsedEnvelope::parse(envelope.clone())?;
    Ok(parsed.require_body()?.body.clone())
}

fn seed(root: &Path, target: &str, n: usize, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = root.join(target);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(format!("seed-{n}")), bytes)?;
    Ok(())
}
