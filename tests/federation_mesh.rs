//! Three hubs as separate `coalition serve` processes (docs/PROTOCOL.md §3.10), each with its
//! own member submitting. In a full mesh each relays the other two; in a ring each pulls from
//! the next and relays onward what that one relayed. Both converge to the same statements,
//! each once; one hub killed with SIGKILL while relaying and restarted converges with nothing
//! lost or duplicated; `coalition federation status` reports every peer; a member of A
//! verifies the whole of A's log — statements made on C included — with `coalition audit
//! verify`.

use crate::common::founded::Founded;
use crate::common::{id, runtime, sync_all};
use crate::serve::{ServeProcess, ok};
use coalition_hub::client::Client;
use coalition_hub::governance::{self, admission};
use coalition_hub::membership::{Action, Role};
use coalition_hub::pb;
use coalition_hub::pki::CertDir;
use coalition_hub::settings::{Federation, Section, TrustedOrigin};
use coalition_hub::statement::StatementId;
use coalition_hub::store::{Store, StoreConfig};
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

const HUBS: [&str; 3] = ["a", "b", "c"];

/// A free loopback port, for a hub whose address its peers must know before it starts.
fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

struct Hub {
    founded: Founded,
    name: String,
    genesis: StatementId,
    addr: String,
}

impl Hub {
    fn serve(&self, peers: &[&Hub]) -> ServeProcess {
        let mut args: Vec<String> = vec![
            "--data".into(),
            self.founded.data.display().to_string(),
            "--certs".into(),
            self.founded.certs.display().to_string(),
            "--checkpoint-ms".into(),
            "50".into(),
        ];
        for p in peers {
            args.push("--peer".into());
            args.push(format!(
                "{},{},{},hub-{}",
                p.addr,
                p.genesis,
                p.founded.certs.display(),
                self.name
            ));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (process, addr) = ServeProcess::start_on(self.founded.dir.path(), &self.addr, &args);
        assert_eq!(addr, self.addr);
        process
    }

    async fn client(&self) -> Client {
        Client::connect(&self.addr, &self.founded.tls())
            .await
            .expect("connect")
    }

    /// Every statement id in this hub's log, and whether each is relayed.
    async fn log(&self) -> Vec<(Vec<u8>, bool)> {
        let mut client = self.client().await;
        let (entries, _) = sync_all(&mut client, pb::SyncRequest::default()).await;
        entries
            .into_iter()
            .map(|e| (e.statement_id, e.relay.is_some()))
            .collect()
    }
}

/// Founds the three hubs, each admitting the other two as peers and trusting them. With
/// `onward`, each origin may also be relayed to hub `i` by the hubs `i` pulls from
/// (`pulls[i]`).
async fn federate(pulls: &[Vec<usize>], onward: bool) -> Vec<Hub> {
    let mut hubs = Vec::new();
    for name in HUBS {
        let founded = Founded::new(&format!("{name}.example")).await;
        let others: Vec<_> = HUBS
            .iter()
            .filter(|o| **o != name)
            .map(|o| id(&format!("hub-{o}")))
            .collect();
        CertDir::new(&founded.certs)
            .init(&others)
            .expect("peer certificates");
        let store = Store::open(&founded.data, &StoreConfig::default()).expect("store");
        let genesis =
            StatementId::from_slice(&store.entry(0).expect("read").expect("genesis").statement_id)
                .expect("id");
        drop(store);
        hubs.push(Hub {
            founded,
            name: name.to_owned(),
            genesis,
            addr: free_addr(),
        });
    }
    for (i, hub) in hubs.iter().enumerate() {
        let certs = CertDir::new(&hub.founded.certs);
        let acme = certs.signing_key(&id("acme")).expect("key");
        let store = Store::open(&hub.founded.data, &StoreConfig::default()).expect("store");
        let mut origins = std::collections::BTreeMap::new();
        for other in hubs.iter().filter(|o| o.name != hub.name) {
            let peer = id(&format!("hub-{}", other.name));
            let key = certs.signing_key(&peer).expect("peer key");
            let admit = governance::change(
                &id("acme"),
                &acme,
                Action::Admit(admission(
                    &peer,
                    "peer hub",
                    &[Role::Peer],
                    &[key.verifying_key()],
                )),
                "peering",
            );
            governance::append_offline(&store, admit)
                .await
                .expect("admit peer");
            let relayed_by = match onward {
                false => Default::default(),
                true => pulls[i]
                    .iter()
                    .map(|p| hubs[*p].genesis)
                    .filter(|g| *g != other.genesis)
                    .collect(),
            };
            origins.insert(
                other.genesis,
                TrustedOrigin {
                    hub_name: format!("{}.example", other.name),
                    relayed_by,
                },
            );
        }
        let settings = governance::settings(
            &id("acme"),
            &acme,
            Section::Federation(Federation { origins }),
            "federate",
        );
        governance::append_offline(&store, settings)
            .await
            .expect("trust");
    }
    hubs
}

/// Waits until every hub holds every hub's own statements, each once; returns that set.
async fn converged(hubs: &[Hub]) -> BTreeSet<Vec<u8>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut own = BTreeSet::new();
        let mut logs = Vec::new();
        for hub in hubs {
            let log = hub.log().await;
            own.extend(log.iter().filter(|(_, r)| !r).map(|(id, _)| id.clone()));
            logs.push(log);
        }
        let done = logs.iter().all(|log| {
            let ids: BTreeSet<_> = log.iter().map(|(id, _)| id.clone()).collect();
            ids == own
        });
        if done {
            for log in &logs {
                let unique: HashSet<_> = log.iter().map(|(id, _)| id).collect();
                assert_eq!(unique.len(), log.len(), "a statement twice");
            }
            return own;
        }
        assert!(
            Instant::now() < deadline,
            "no convergence within 60 s: sizes {:?} of {} statements",
            logs.iter().map(Vec::len).collect::<Vec<_>>(),
            own.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn three_hubs_in_a_full_mesh_converge_and_survive_sigkill() {
    converge_and_survive_sigkill(&[vec![1, 2], vec![0, 2], vec![0, 1]], false);
}

#[test]
fn three_hubs_in_a_ring_relay_onward_converge_and_survive_sigkill() {
    // A pulls from B, B from C, C from A: C's statements reach A through B.
    converge_and_survive_sigkill(&[vec![1], vec![2], vec![0]], true);
}

fn converge_and_survive_sigkill(pulls: &[Vec<usize>], onward: bool) {
    let rt = runtime();
    let hubs = rt.block_on(federate(pulls, onward));
    let peers_of = |i: usize| -> Vec<&Hub> { pulls[i].iter().map(|j| &hubs[*j]).collect() };
    let mut processes: Vec<Option<ServeProcess>> =
        (0..3).map(|i| Some(hubs[i].serve(&peers_of(i)))).collect();
    rt.block_on(async {
        for (i, hub) in hubs.iter().enumerate() {
            let mut client = hub.client().await;
            for seed in 0..3 {
                let set = hub.founded.hash_set(100 * i as u64 + seed, 50);
                client.submit(set).await.expect("submit");
            }
        }
    });
    let first = rt.block_on(converged(&hubs));
    // Each hub's genesis, two peer admissions, settings, three hash sets.
    assert_eq!(first.len(), 3 * 7);

    // B is killed while A and C go on submitting, and restarted.
    rt.block_on(async {
        let mut a = hubs[0].client().await;
        let mut c = hubs[2].client().await;
        for seed in 0..20 {
            a.submit(hubs[0].founded.hash_set(1_000 + seed, 200))
                .await
                .expect("submit");
            c.submit(hubs[2].founded.hash_set(2_000 + seed, 200))
                .await
                .expect("submit");
            if seed == 10 {
                processes[1].take().expect("b").kill();
            }
        }
    });
    processes[1] = Some(hubs[1].serve(&peers_of(1)));
    let second = rt.block_on(converged(&hubs));
    assert_eq!(second.len(), first.len() + 40, "nothing lost");

    // Operations: A reports both peers, caught up, none refused.
    let dir = hubs[0].founded.dir.path();
    let status = ok(
        dir,
        &[
            "federation",
            "status",
            "--hub",
            &hubs[0].addr,
            "--as",
            "acme",
            "--certs",
            &hubs[0].founded.certs.display().to_string(),
        ],
    );
    for other in &hubs[1..] {
        if pulls[0].iter().any(|p| hubs[*p].addr == other.addr) {
            assert!(status.contains(&format!("peer {}", other.addr)), "{status}");
        }
        assert!(
            status.contains(&format!("origin '{}.example'", other.name)),
            "{status}"
        );
    }
    assert!(!status.contains("STOPPED"), "{status}");
    assert!(status.contains("0 refusals"), "{status}");

    // A member of A verifies A's whole log, C's statements included, back to C's genesis.
    let verified = ok(
        dir,
        &[
            "audit",
            "verify",
            "--hub",
            &hubs[0].addr,
            "--as",
            "acme",
            "--certs",
            &hubs[0].founded.certs.display().to_string(),
            "--genesis",
            &hubs[0].genesis.to_string(),
        ],
    );
    assert!(verified.starts_with("audit OK"), "{verified}");
    for other in &hubs[1..] {
        assert!(
            verified.contains(&format!(
                "relayed from '{}.example' (genesis {})",
                other.name, other.genesis
            )),
            "{verified}"
        );
    }
    drop(processes);
}
