//! The Merkle tree stored as C2SP tlog-tiles: a real store (sled in a temporary directory)
//! fed real signed statements answers roots and proofs like an in-memory tree at every size,
//! serves its tiles, and a data directory written by the earlier layout (one sled key per
//! Merkle node) is converted once at open, also after a crash part-way through.

use crate::common;

use coalition_hub::client::sign_new;
use coalition_hub::governance;
use coalition_hub::log::{self, Hash, LeafIndex, MemoryTree, NodeSource, TileId, TreeSize};
use coalition_hub::pki::CertDir;
use coalition_hub::statement::{Body, StatementId};
use coalition_hub::store::{Store, StoreConfig, leaf_data};
use common::{id, sha256_set};
use std::path::Path;
use tokio::task::JoinSet;

/// A founded store in `dir/data` holding the genesis and `statements` more entries, appended
/// in concurrent waves so that group commits of many sizes happen.
async fn founded_store(dir: &Path, statements: u64) -> Store {
    let store = Store::open(&dir.join("data"), &StoreConfig::default()).expect("store");
    let key = common::founded::found(&store, &CertDir::new(dir.join("certs")), "tiles.test").await;
    append(&store, &key, 1_000, statements).await;
    store
}

/// Appends `count` single-hash statements (seeds from `seed`), up to 37 at a time.
async fn append(store: &Store, key: &ed25519_dalek::SigningKey, seed: u64, count: u64) {
    let mut next = 0;
    while next < count {
        let wave = (count - next).min(1 + next % 37);
        let mut tasks = JoinSet::new();
        for i in next..next + wave {
            let store = store.clone();
            let env = sign_new(&id("acme"), key, Body::HashSet(sha256_set(seed + i, 1)));
            tasks.spawn(async move { governance::append_offline(&store, env).await });
        }
        while let Some(done) = tasks.join_next().await {
            done.expect("task").expect("append");
        }
        next += wave;
    }
}

/// The in-memory tree of the store's leaves, rebuilt from its entries.
fn memory_tree(store: &Store) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for entry in store.entries(0, store.log_size()) {
        let entry = entry.expect("entry");
        let id = StatementId::from_slice(&entry.statement_id).expect("id");
        tree.append(&leaf_data(&id, entry.received_at_ms));
    }
    tree
}

/// Roots at every size and proofs at a few positions per size equal the in-memory tree's.
fn check_against_memory(store: &Store, memory: &MemoryTree) {
    let n = store.log_size();
    assert_eq!(memory.size(), TreeSize(n));
    for size in 1..=n {
        assert_eq!(
            store.root(size).expect("root"),
            log::root(memory, TreeSize(size)).expect("root"),
            "root at {size}"
        );
        for index in [0, size / 2, size - 1] {
            assert_eq!(
                store.inclusion_proof(index, size).expect("proof"),
                log::inclusion_proof(memory, LeafIndex(index), TreeSize(size)).expect("proof"),
                "leaf {index} of {size}"
            );
        }
        for old in [1, size / 3, size - 1] {
            assert_eq!(
                store.consistency_proof(old, size).expect("proof"),
                log::consistency_proof(memory, TreeSize(old), TreeSize(size)).expect("proof"),
                "{old} -> {size}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_log_answers_from_tiles_at_every_size() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = founded_store(dir.path(), 599).await;
    assert_eq!(store.log_size(), 600);
    let memory = memory_tree(&store);
    check_against_memory(&store, &memory);

    // Tiles as a tile endpoint serves them: the full ones, every partial width up to the
    // current one (prefixes of the stored tile), nothing beyond the log.
    let leaves = |from: u64, to: u64| -> Vec<u8> {
        (from..to)
            .flat_map(|i| memory.node(0, i).expect("leaf").0)
            .collect()
    };
    assert_eq!(store.tile(0, 1, 256).expect("read"), Some(leaves(256, 512)));
    assert_eq!(store.tile(0, 2, 88).expect("read"), Some(leaves(512, 600)));
    assert_eq!(store.tile(0, 2, 5).expect("read"), Some(leaves(512, 517)));
    let level1: Vec<u8> = (0..2)
        .flat_map(|i| memory.node(8, i).expect("node").0)
        .collect();
    assert_eq!(store.tile(1, 0, 2).expect("read"), Some(level1));
    for (level, index, width) in [(0, 2, 89), (0, 2, 256), (0, 3, 1), (1, 0, 3), (2, 0, 1)] {
        assert_eq!(store.tile(level, index, width).expect("read"), None);
    }
    for (level, index, width) in [(0, 0, 0), (0, 0, 257), (8, 0, 1)] {
        assert_eq!(store.tile(level, index, width).expect("read"), None);
    }
    let path = TileId::new(0, 2, 88).expect("tile").path();
    assert_eq!(path, "tile/0/002.p/88");

    // Reopened: the writer continues from the stored partial tiles.
    let key = CertDir::new(dir.path().join("certs"))
        .signing_key(&id("acme"))
        .expect("key");
    drop(store);
    // Stored: full tiles whole, the rightmost partial tiles as chunks of 16 hashes (88 hashes
    // of tile/0/002: 6 chunks; 2 of tile/1/000: 1); the chunks of filled tiles are gone.
    {
        let db = open_sled(dir.path().join("data")).expect("open");
        let log_tree = db.open_tree("log").expect("log");
        assert_eq!(log_tree.scan_prefix(b"T").count(), 2);
        assert_eq!(log_tree.scan_prefix(b"P").count(), 7);
    }
    let store = Store::open(&dir.path().join("data"), &StoreConfig::default()).expect("reopen");
    check_against_memory(&store, &memory);
    append(&store, &key, 50_000, 100).await;
    assert_eq!(store.log_size(), 700);
    let grown = memory_tree(&store);
    assert_eq!(
        store.root(700).expect("root"),
        log::root(&grown, TreeSize(700)).expect("root")
    );
    assert_eq!(
        store.consistency_proof(600, 700).expect("proof"),
        log::consistency_proof(&grown, TreeSize(600), TreeSize(700)).expect("proof")
    );
}

/// Copies `from` into a fresh data directory `to` in the earliest layout: the same trees, the
/// entries' records as `log` keys (`E`, seq big-endian → record) instead of the entry files,
/// and the Merkle tree as one `log` key per node (`N`, level, index big-endian → hash) instead
/// of tiles, with no layout marker and no log size. Opening it converts both at once.
fn write_legacy_copy(from: &Path, to: &Path, memory: &MemoryTree) {
    let old = open_sled(from).expect("open");
    let new = open_sled(to).expect("open");
    for name in old.tree_names() {
        let (src, dst) = (
            old.open_tree(&name).expect("tree"),
            new.open_tree(&name).expect("tree"),
        );
        for kv in src.iter() {
            let (k, v) = kv.expect("read");
            // In `log`, the earliest layout had the id index (I) and membership markers (M) as
            // today, and no tiles (T), layout marker (F) or log size (S).
            if name.as_ref() == b"log" && !matches!(k.first(), Some(b'I' | b'M')) {
                continue;
            }
            dst.insert(k, v).expect("write");
        }
    }
    let log_tree = new.open_tree("log").expect("log");
    let records = std::fs::read(from.join(coalition_hub::store::ENTRIES_DATA_FILE)).expect("read");
    for seq in 0..memory.size().0 {
        let range = common::stored_record_range(from, seq);
        let key = [&[b'E'][..], &seq.to_be_bytes()].concat();
        let record = &records[range.start as usize..range.end as usize];
        log_tree.insert(key, record).expect("write");
    }
    insert_legacy_nodes(&log_tree, memory);
    new.flush().expect("flush");
}

fn insert_legacy_nodes(log_tree: &sled::Tree, memory: &MemoryTree) {
    let n = memory.size().0;
    for level in 0..64u8 {
        for index in 0..n >> level {
            let mut key = [b'N'; 10];
            key[1] = level;
            key[2..].copy_from_slice(&index.to_be_bytes());
            let hash: Hash = memory.node(level, index).expect("node");
            log_tree.insert(key, &hash.0[..]).expect("write");
        }
    }
}

/// Opens a closed data directory's sled database: sled releases its lock from background
/// threads shortly after the last handle goes, so wait for it up to 2 s.
fn open_sled(dir: impl AsRef<Path>) -> sled::Result<sled::Db> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match sled::open(dir.as_ref()) {
            Err(sled::Error::Io(e)) if std::time::Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            other => return other,
        }
    }
}

fn legacy_nodes_left(dir: &Path) -> usize {
    let db = open_sled(dir).expect("open");
    db.open_tree("log").expect("log").scan_prefix(b"N").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_earlier_layout_is_converted_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = founded_store(dir.path(), 299).await;
    let memory = memory_tree(&store);
    let entries: Vec<_> = store.entries(0, 300).map(|e| e.expect("entry")).collect();
    drop(store);
    let legacy = dir.path().join("legacy");
    write_legacy_copy(&dir.path().join("data"), &legacy, &memory);
    assert_eq!(
        legacy_nodes_left(&legacy),
        2 * 300 - 300u64.count_ones() as usize
    );

    let store = Store::open(&legacy, &StoreConfig::default()).expect("open converts");
    assert_eq!(store.log_size(), 300);
    check_against_memory(&store, &memory);
    // The records moved to the entry files, every one as it was.
    let converted: Vec<_> = store.entries(0, 300).map(|e| e.expect("entry")).collect();
    assert_eq!(converted, entries);
    let stored_id = entries[150].id().expect("id");
    assert_eq!(
        store.entry_by_id(&stored_id).expect("read"),
        Some(entries[150].clone())
    );
    // It keeps working: more statements, a reopen.
    let key = CertDir::new(dir.path().join("certs"))
        .signing_key(&id("acme"))
        .expect("key");
    append(&store, &key, 90_000, 20).await;
    drop(store);
    assert_eq!(
        legacy_nodes_left(&legacy),
        0,
        "the per-node keys are removed"
    );
    {
        let db = open_sled(&legacy).expect("open");
        let log_tree = db.open_tree("log").expect("log");
        assert_eq!(
            log_tree.scan_prefix(b"E").count(),
            0,
            "the record keys are removed"
        );
    }
    let store = Store::open(&legacy, &StoreConfig::default()).expect("reopen");
    check_against_memory(&store, &memory_tree(&store));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conversion_interrupted_by_a_crash_completes_at_the_next_open() {
    let dir = tempfile::tempdir().expect("tmp");
    let store = founded_store(dir.path(), 299).await;
    let memory = memory_tree(&store);
    drop(store);

    // Crash while writing the tiles (before the layout marker): some tiles already written,
    // one of them torn. The next open converts from the node keys again.
    let torn = dir.path().join("torn");
    write_legacy_copy(&dir.path().join("data"), &torn, &memory);
    {
        let db = open_sled(&torn).expect("open");
        let log_tree = db.open_tree("log").expect("log");
        let mut key = [b'T'; 10];
        key[1] = 0;
        key[2..].copy_from_slice(&0u64.to_be_bytes());
        log_tree
            .insert(key, vec![0xee; 100 * 32])
            .expect("torn tile");
        db.flush().expect("flush");
    }
    let store = Store::open(&torn, &StoreConfig::default()).expect("open converts");
    check_against_memory(&store, &memory);
    drop(store);
    assert_eq!(legacy_nodes_left(&torn), 0);

    // Crash while removing the node keys (tiles and marker written, some node keys left):
    // the next open finishes the removal and answers from the tiles.
    {
        let db = open_sled(&torn).expect("open");
        insert_legacy_nodes(&db.open_tree("log").expect("log"), &memory);
        db.flush().expect("flush");
    }
    assert!(legacy_nodes_left(&torn) > 0);
    let store = Store::open(&torn, &StoreConfig::default()).expect("open");
    check_against_memory(&store, &memory);
    drop(store);
    assert_eq!(legacy_nodes_left(&torn), 0);

    // A node key missing from an earlier-layout directory is reported, not papered over.
    let broken = dir.path().join("broken");
    write_legacy_copy(&dir.path().join("data"), &broken, &memory);
    {
        let db = open_sled(&broken).expect("open");
        let mut key = [b'N'; 10];
        key[1] = 0;
        key[2..].copy_from_slice(&17u64.to_be_bytes());
        db.open_tree("log")
            .expect("log")
            .remove(key)
            .expect("remove");
        db.flush().expect("flush");
    }
    let err = Store::open(&broken, &StoreConfig::default())
        .err()
        .expect("a missing node is corruption");
    assert!(err.to_string().contains("node 0/17"), "{err}");
}

#[test]
fn a_store_of_an_unknown_layout_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let db = open_sled(dir.path()).expect("open");
        db.open_tree("log")
            .expect("log")
            .insert(b"F", &b"tiles-9"[..])
            .expect("marker");
        db.flush().expect("flush");
    }
    let err = Store::open(dir.path(), &StoreConfig::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("newer version"), "{err}");
}
