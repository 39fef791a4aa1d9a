//! Keeps the matching corpus in step with the durable log: loads every stored entry at
//! start-up (building the PDQ index once), then follows the log as it grows: each step's new
//! PDQ hashes become a new segment, searchable at once, and a second task merges segments in
//! the background ([`crate::matching::SegmentedPdq`]) while the old ones keep answering. It stops once
//! nobody reads the corpus (the `Hub` service is gone: at shutdown, after the calls in flight).
//! A step that fails (an entry that cannot be read or decoded) marks the indexer down in the
//! hub's health and is retried with a growing pause ([`RETRY_MIN`] to [`RETRY_MAX`]); it is up
//! again once a step succeeds.

use super::health::{Component, HealthState};
use super::shutdown::Listener;
use crate::matching::{Corpus, snapshot};
use crate::statement::{Body, ParsedEnvelope, Recipients};
use crate::store::Store;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::{Notify, watch};

/// Most entries indexed per step (one write-lock hold each).
const STEP: u64 = 1024;
/// Most payload bytes decoded per step, so a log of large sets is indexed in bounded memory.
const STEP_BYTES: usize = 8 * 1024 * 1024;
/// The first pause before a failed step is retried; it doubles up to [`RETRY_MAX`].
pub const RETRY_MIN: std::time::Duration = std::time::Duration::from_secs(1);
/// No step for this long: the log is quiet and the remaining segments are merged.
const MERGE_QUIET: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a finished merge tries to take the write lock without queueing for it.
const INSTALL_PATIENCE: std::time::Duration = std::time::Duration::from_secs(1);
/// The longest pause between retries of a failed step.
pub const RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(30);

/// The corpus shared by the Match handler, and how far into the log it reaches.
#[derive(Clone)]
pub struct Matching {
    /// The corpus (many readers, the indexer writes).
    pub corpus: Arc<RwLock<Corpus>>,
    /// The number of log entries indexed so far.
    pub indexed: watch::Receiver<u64>,
}

/// Starts indexing `store` in the background. The task holds `tracked` until it ends, so that
/// the shutdown waits for it.
///
/// `snapshot`: the file the corpus is saved to when the log is quiet and loaded from at start
/// (see [`crate::matching::snapshot`]); `None`: always index the whole log at start.
pub fn start(
    store: Store,
    health: HealthState,
    tracked: Listener,
    snapshot: Option<PathBuf>,
) -> Matching {
    let corpus = Arc::new(RwLock::new(Corpus::new()));
    let (tx, rx) = watch::channel(0);
    let task_corpus = corpus.clone();
    let merges = Arc::new(Notify::new());
    let merger = tokio::spawn(merge_loop(corpus.clone(), merges.clone()));
    tokio::spawn(async move {
        let mut saved = Saved::default();
        run(
            store,
            task_corpus,
            tx,
            health,
            &merges,
            snapshot,
            &mut saved,
        )
        .await;
        merger.abort();
        let _ = merger.await;
        // A snapshot write under way finishes before the store is let go.
        if let Some(writing) = saved.writing.take() {
            let _ = writing.task.await;
        }
        drop(tracked);
    });
    Matching {
        corpus,
        indexed: rx,
    }
}

async fn run(
    store: Store,
    corpus: Arc<RwLock<Corpus>>,
    indexed: watch::Sender<u64>,
    health: HealthState,
    merges: &Notify,
    snapshot: Option<PathBuf>,
    saved: &mut Saved,
) {
    if let Some(path) = &snapshot {
        let (store, path) = (store.clone(), path.clone());
        if let Ok(Some((loaded, size))) =
            tokio::task::spawn_blocking(move || load_snapshot(&store, &path)).await
        {
            saved.entries = size;
            if let Ok(mut c) = corpus.write() {
                *c = loaded;
            }
            merges.notify_one();
        }
    }
    let mut sizes = store.watch_size();
    let mut retry = RETRY_MIN;
    // Marks the indexer down, then waits before the step is tried again; false: stop.
    let failed = async |reason: String, retry: &mut std::time::Duration| {
        health.set_down(
            Component::Indexer,
            format!("the matching index stopped: {reason}"),
        );
        let pause = *retry;
        *retry = (*retry * 2).min(RETRY_MAX);
        tokio::select! {
            () = tokio::time::sleep(pause) => true,
            () = indexed.closed() => false,
        }
    };
    // At start-up PDQ hashes are only staged until the whole log is read, so the PDQ index
    // is built once instead of grown one insert at a time.
    let mut loading = true;
    loop {
        let target = *sizes.borrow_and_update();
        // The log grew: a snapshot being encoded gives the read lock up before the first step
        // asks for the write lock.
        saved.abandon_writing();
        loop {
            // Nobody reads the corpus any more: stop, even in the middle of a long start-up load.
            if indexed.is_closed() {
                return;
            }
            let (s, c) = (store.clone(), corpus.clone());
            let commit_each = !loading;
            let erasing = Erasing {
                erased: saved.erased.clone(),
                snapshot: snapshot.clone(),
            };
            let step = tokio::task::spawn_blocking(move || {
                index_step(&s, &c, target, commit_each, &erasing)
            })
            .await;
            match step {
                Ok(Ok(next)) if next >= target => {
                    if loading {
                        let corpus = corpus.clone();
                        let committed = tokio::task::spawn_blocking(move || {
                            corpus.write().map(|mut c| c.commit()).is_ok()
                        })
                        .await;
                        if !matches!(committed, Ok(true)) {
                            if failed("the index could not be built".into(), &mut retry).await {
                                continue;
                            }
                            return;
                        }
                        loading = false;
                    }
                    health.set_up(Component::Indexer);
                    retry = RETRY_MIN;
                    indexed.send_replace(next);
                    merges.notify_one();
                    break;
                }
                Ok(Ok(next)) => {
                    health.set_up(Component::Indexer);
                    retry = RETRY_MIN;
                    if !loading {
                        indexed.send_replace(next);
                        merges.notify_one();
                    }
                }
                Ok(Err(e)) => {
                    if !failed(e, &mut retry).await {
                        return;
                    }
                }
                Err(e) => {
                    if !failed(format!("its task failed: {e}"), &mut retry).await {
                        return;
                    }
                }
            }
        }
        // Stop with the server: once every `Matching` handle is gone nobody reads the corpus,
        // and the task must not keep the store (and its file lock) alive. While the log is
        // quiet, the snapshot is brought up to date; a write under way gives way when the log
        // grows again.
        loop {
            tokio::select! {
                changed = sizes.changed() => if changed.is_err() { return } else { break },
                () = indexed.closed() => return,
                () = tokio::time::sleep(SNAPSHOT_IDLE), if snapshot.is_some() => {
                    if let Some(path) = &snapshot {
                        save_if_due(&store, &corpus, path, saved).await;
                    }
                }
            }
        }
    }
}

/// Merges PDQ segments in the background, one merge at a time, until the indexer stops (it
/// aborts this task).
/// A merge is built under no lock (its parts are shared, immutable segments) and swapped in
/// under a short write lock; queries go on meanwhile. Woken by the indexer after each step.
async fn merge_loop(corpus: Arc<RwLock<Corpus>>, wake: Arc<Notify>) {
    let mut quiet = false;
    loop {
        let plan = match corpus.read() {
            Ok(guard) => {
                let (segments, bytes) = guard.pdq_shape();
                metrics::gauge!("coalition_match_index_segments").set(segments as f64);
                metrics::gauge!("coalition_match_index_pdq_bytes").set(bytes as f64);
                let plan = guard.merge_plan();
                if quiet {
                    plan.or_else(|| guard.idle_merge_plan())
                } else {
                    plan
                }
            }
            Err(_) => return,
        };
        let Some(plan) = plan else {
            // Nothing due: wait for the next step; if none comes for a while the log is
            // quiet, and what is left is merged into as few segments as the bound allows.
            if quiet {
                wake.notified().await;
                quiet = false;
            } else {
                quiet = tokio::time::timeout(MERGE_QUIET, wake.notified())
                    .await
                    .is_err();
            }
            continue;
        };
        let corpus = corpus.clone();
        let done = tokio::task::spawn_blocking(move || {
            let started = std::time::Instant::now();
            let merged = plan.build();
            // Queue for the write lock only after trying for a while: a queued writer holds
            // up new readers (e.g. while a snapshot is written under a read lock), but a
            // merge must not starve under a steady stream of queries either.
            let patient = std::time::Instant::now() + INSTALL_PATIENCE;
            let installed = loop {
                match corpus.try_write() {
                    Ok(mut c) => break c.install_merge(&plan, merged),
                    Err(std::sync::TryLockError::WouldBlock)
                        if std::time::Instant::now() < patient =>
                    {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                    }
                    Err(std::sync::TryLockError::WouldBlock) => {
                        break corpus
                            .write()
                            .map(|mut c| c.install_merge(&plan, merged))
                            .unwrap_or(false);
                    }
                    Err(std::sync::TryLockError::Poisoned(_)) => break false,
                }
            };
            metrics::histogram!("coalition_match_index_merge_seconds")
                .record(started.elapsed().as_secs_f64());
            // The merged-away segments are freed once neither the plan nor a search holds
            // them; give their memory back (see `allocator`). A search still holding one
            // frees it later, and the next merge or snapshot returns it.
            drop(plan);
            super::allocator::release_free_memory();
            installed
        })
        .await;
        match done {
            Ok(true) => metrics::counter!("coalition_match_index_merges_total").increment(1),
            Ok(false) => {}
            Err(e) => {
                tracing::error!(
                    "merging PDQ segments failed: {e}; matching continues on the segments as they are"
                );
                return;
            }
        }
    }
}

/// The log must have been quiet this long before the snapshot is written.
const SNAPSHOT_IDLE: std::time::Duration = std::time::Duration::from_secs(1);
/// The snapshot is rewritten at most once per this many times its last write took, so that
/// writing it costs at most 1/20 of the indexer's time.
const SNAPSHOT_SPACING: u32 = 20;

/// The log entries a snapshot leaves for a restart to index (those logged since it was
/// written) may grow to this share of the entries it covers (1/100) before it is rewritten:
/// rewriting a large corpus (about 1 GB at 10M PDQ hashes) for one more small statement costs
/// more disk than the restart it would save.
const SNAPSHOT_TAIL_SHARE: u64 = 100;
/// A smaller tail is written into the snapshot once the last write is this old.
const SNAPSHOT_STALE: std::time::Duration = std::time::Duration::from_secs(600);

/// Whether a snapshot covering `covered` entries (written at `at` by this process, if it was)
/// is worth rewriting now that the corpus covers `next` entries.
fn worth_rewriting(covered: u64, next: u64, at: Option<std::time::Instant>) -> bool {
    let tail = next.saturating_sub(covered);
    tail > 0
        && (tail >= covered / SNAPSHOT_TAIL_SHARE
            || at.is_none_or(|at| at.elapsed() >= SNAPSHOT_STALE))
}

/// What the last snapshot covers, when the last attempt started and how long it took, and
/// the write under way.
#[derive(Default)]
struct Saved {
    entries: u64,
    at: Option<std::time::Instant>,
    took: std::time::Duration,
    writing: Option<Writing>,
    /// Set once an erasure removed hashes from the corpus (docs/PROTOCOL.md §2.8): the
    /// removed hashes would still be in a snapshot written from it, so none is written (and
    /// the file is deleted) until the hub restarts and indexes the log, whose erased bodies
    /// are gone.
    erased: Arc<AtomicBool>,
}

/// A snapshot write under way: its task, and the flag that makes it give up.
struct Writing {
    task: tokio::task::JoinHandle<Attempt>,
    abandon: Arc<AtomicBool>,
}

/// How a snapshot write ended.
enum Attempt {
    /// Written, covering this many entries.
    Written {
        entries: u64,
        took: std::time::Duration,
    },
    /// Given up because the log grew (the indexer needed the lock) or it failed.
    NotWritten { took: std::time::Duration },
}

impl Saved {
    /// Tells the write under way, if any, to give the corpus's read lock up at its next
    /// buffer (at most [`SNAPSHOT_BUFFER`] of encoding later): the indexer is about to take
    /// the write lock, and a writer queued behind a long read would hold up every search.
    fn abandon_writing(&self) {
        if let Some(writing) = &self.writing {
            writing.abandon.store(true, Ordering::SeqCst);
        }
    }

    /// Takes the outcome of a write that has ended; false while one is still under way.
    async fn settle_writing(&mut self) -> bool {
        if self.writing.as_ref().is_some_and(|w| !w.task.is_finished()) {
            return false;
        }
        if let Some(writing) = self.writing.take() {
            match writing.task.await {
                Ok(Attempt::Written { entries, took }) => {
                    self.entries = entries;
                    self.took = took;
                }
                Ok(Attempt::NotWritten { took }) => self.took = took,
                Err(_) => {}
            }
        }
        true
    }
}

/// Loads the snapshot at `path` if it is intact and covers a prefix of this log (same root);
/// otherwise says why in the log and returns `None` (the log is then indexed from the start).
fn load_snapshot(store: &Store, path: &Path) -> Option<(Corpus, u64)> {
    let _ = std::fs::remove_file(temporary(path));
    let started = std::time::Instant::now();
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "matching snapshot ignored: {e}");
            return None;
        }
    };
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let (loaded, covers) = match snapshot::read(std::io::BufReader::new(file), len) {
        Ok(read) => read,
        Err(e) => {
            tracing::warn!(path = %path.display(), "matching snapshot ignored, the log is indexed instead: {e}");
            return None;
        }
    };
    let ours = (covers.log_size <= store.log_size())
        .then(|| store.root(covers.log_size).ok())
        .flatten();
    if ours.is_none_or(|root| root.0 != covers.root) {
        tracing::warn!(
            path = %path.display(),
            size = covers.log_size,
            "matching snapshot ignored: it does not cover a prefix of this log (different root or longer); the log is indexed instead"
        );
        return None;
    }
    // Written before an erasure it does not know of (a crash between the erasure and the
    // snapshot's deletion): it holds erased hashes.
    let registry = store.registry();
    let erased = registry.lifecycle().erasure_targets().any(|(id, _)| {
        loaded
            .provenance_of(id)
            .is_some_and(|p| erases(&registry, p))
    });
    if erased {
        remove_snapshot(path);
        tracing::warn!(
            path = %path.display(),
            "matching snapshot deleted: it holds the hashes of an erased statement; the log is indexed instead"
        );
        return None;
    }
    tracing::info!(
        path = %path.display(),
        size = covers.log_size,
        seconds = started.elapsed().as_secs_f64(),
        "matching snapshot loaded"
    );
    Some((loaded, covers.log_size))
}

/// Whether the registry erases the indexed statement `p` (only hash sets and risk signals are
/// indexed, and both are erased alike).
fn erases(registry: &crate::membership::Registry, p: &crate::matching::Provenance) -> bool {
    registry
        .erased_by(&crate::lifecycle::Target {
            id: p.statement_id,
            seq: p.seq,
            issuer: &p.issuer,
            kind: crate::statement::Kind::HashSet,
        })
        .is_some()
}

/// Deletes the snapshot file (and its temporary), durably.
fn remove_snapshot(path: &Path) {
    let _ = std::fs::remove_file(temporary(path));
    match std::fs::remove_file(path) {
        Ok(()) => {
            if let Some(dir) = path.parent() {
                let _ = std::fs::File::open(dir).and_then(|d| d.sync_all());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), "deleting the matching snapshot failed: {e}")
        }
    }
}

/// What the indexer does when a step logs an erasure.
struct Erasing {
    erased: Arc<AtomicBool>,
    snapshot: Option<PathBuf>,
}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Starts writing the snapshot if the corpus grew enough since the last one
/// ([`worth_rewriting`]), no merge is pending, no write is under way and the spacing rule
/// allows it.
///
/// The corpus is encoded under a read lock, not copied: searches go on, and a copy would
/// double the memory of a large corpus for the length of the write (at 10M single-hash
/// statements ~1.3 GiB of exact maps, slots and provenance). Merges cannot change it (none is
/// pending) and the indexer, its only other writer, first abandons the write when the log
/// grows ([`Saved::abandon_writing`]), so a new entry waits for at most one buffer of
/// encoding; the write is tried again at the next quiet moment. The lock is released before
/// the file is synced and renamed over the old one, so a crash at any point leaves the old
/// snapshot or the new one, whole.
async fn save_if_due(store: &Store, corpus: &Arc<RwLock<Corpus>>, path: &Path, saved: &mut Saved) {
    if !saved.settle_writing().await || saved.erased.load(Ordering::SeqCst) {
        return;
    }
    // Abandoned and failed attempts count too: at most 1/20 of the time goes to writing.
    if saved
        .at
        .is_some_and(|at| at.elapsed() < saved.took * SNAPSHOT_SPACING)
    {
        return;
    }
    let due = corpus.read().is_ok_and(|c| {
        worth_rewriting(saved.entries, c.next_seq(), saved.at)
            && c.merge_plan().is_none()
            && c.idle_merge_plan().is_none()
    });
    if !due {
        return;
    }
    let (store, corpus, target) = (store.clone(), corpus.clone(), path.to_owned());
    let started = std::time::Instant::now();
    saved.at = Some(started);
    let abandon = Arc::new(AtomicBool::new(false));
    let erased = saved.erased.clone();
    let stop = abandon.clone();
    let task = tokio::task::spawn_blocking(move || {
        let written = write_snapshot(&store, &corpus, &target, &stop);
        // An erasure during the write: the indexer deleted the old file, this one goes too.
        if erased.load(Ordering::SeqCst) {
            remove_snapshot(&target);
        }
        let took = started.elapsed();
        match written {
            Ok(entries) => {
                metrics::histogram!("coalition_match_snapshot_write_seconds")
                    .record(took.as_secs_f64());
                tracing::info!(
                    size = entries,
                    seconds = took.as_secs_f64(),
                    "matching snapshot written"
                );
                Attempt::Written { entries, took }
            }
            Err(_) if stop.load(Ordering::SeqCst) => {
                tracing::debug!("matching snapshot abandoned: the log grew while it was written");
                Attempt::NotWritten { took }
            }
            Err(e) => {
                tracing::warn!(path = %target.display(), "writing the matching snapshot failed: {e}");
                Attempt::NotWritten { took }
            }
        }
    });
    saved.writing = Some(Writing { task, abandon });
}

/// The most bytes of snapshot encoding between two looks at the abandon flag.
const SNAPSHOT_BUFFER: usize = 1 << 20;

/// The snapshot file as the encoder writes it: each write is at most [`SNAPSHOT_BUFFER`]
/// bytes and fails once `abandon` is set.
struct Abandonable<'a> {
    file: std::fs::File,
    abandon: &'a AtomicBool,
}

impl std::io::Write for Abandonable<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.abandon.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("abandoned: the log grew"));
        }
        self.file.write(&buf[..buf.len().min(SNAPSHOT_BUFFER)])
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// Encodes the corpus under its read lock into a temporary file, then (lock released)
/// syncs it and renames it over `path`; returns the entries it covers. Fails, leaving the old
/// file, once `abandon` is set during the encoding.
fn write_snapshot(
    store: &Store,
    corpus: &RwLock<Corpus>,
    path: &Path,
    abandon: &AtomicBool,
) -> Result<u64, String> {
    let tmp = temporary(path);
    let file = std::fs::File::create(&tmp).map_err(|e| e.to_string())?;
    let out = Abandonable { file, abandon };
    let mut out = std::io::BufWriter::with_capacity(SNAPSHOT_BUFFER, out);
    let encoded = corpus.read().map_err(|e| e.to_string()).and_then(|corpus| {
        let covers = snapshot::Covers {
            log_size: corpus.next_seq(),
            root: store.root(corpus.next_seq()).map_err(|e| e.to_string())?.0,
        };
        tracing::info!(size = covers.log_size, "writing the matching snapshot");
        snapshot::write(&corpus, &covers, &mut out).map_err(|e| e.to_string())?;
        Ok(covers.log_size)
    });
    let flushed = encoded.and_then(|size| {
        let out = out.into_inner().map_err(|e| e.error().to_string())?;
        Ok((size, out.file))
    });
    let (size, file) = match flushed {
        Ok(flushed) => flushed,
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    file.sync_all().map_err(|e| e.to_string())?;
    std::fs::rename(&tmp, path).map_err(|e| e.to_string())?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| e.to_string())?;
    }
    super::allocator::release_free_memory();
    Ok(size)
}

/// Indexes up to `STEP` entries from the corpus's position towards `target` and returns the
/// new position. Decoding happens outside the lock; only the index update holds it.
fn index_step(
    store: &Store,
    corpus: &RwLock<Corpus>,
    target: u64,
    commit: bool,
    erasing: &Erasing,
) -> Result<u64, String> {
    let from = corpus.read().map_err(|e| e.to_string())?.next_seq();
    let to = target.min(from.saturating_add(STEP));
    let mut read = Vec::new();
    let mut bytes = 0;
    for entry in store.entries(from, to) {
        if bytes >= STEP_BYTES {
            break;
        }
        let entry = entry.map_err(|e| e.to_string())?;
        bytes += entry
            .envelope
            .as_ref()
            .map_or(0, |e| e.payload.len() + e.body.len());
        read.push(entry);
    }
    // Taken after the entries were read: the writer publishes an erasure before it overwrites
    // the body, so an overwritten body read above is explained by it.
    let registry = store.registry();
    let mut decoded = Vec::new();
    for entry in read {
        let id = entry.id().map_err(|e| e.to_string())?;
        // An erased statement's body is gone (§2.8), a relayed restricted one's stayed at its
        // origin (§3.10): nothing to index.
        if entry.envelope.as_ref().is_some_and(|e| e.body.is_empty())
            && (entry.relay.is_some() || entry.erased_by(&registry).is_some())
        {
            decoded.push((entry, None, id, Recipients::everyone()));
            continue;
        }
        // Only verified statements were stored; a decode failure means a damaged store.
        let statement = entry
            .envelope
            .clone()
            .ok_or_else(|| "no envelope".to_owned())
            .and_then(|e| ParsedEnvelope::parse(e).map_err(|e| e.to_string()))
            .and_then(|p| p.statement.ok_or_else(|| "no body".to_owned()))
            .map_err(|e| format!("entry {} does not decode: {e}", entry.seq))?;
        // A relayed statement is shown as its origin's member's (`acme@x.example`).
        let mut statement = statement;
        statement.issuer = entry.issuer_here(&statement.issuer, &registry);
        // Its recipients as this hub reads them (a relayed one's, docs/PROTOCOL.md §3.10).
        let recipients = entry
            .header()
            .map(|h| entry.recipients_here(&h, &registry))
            .unwrap_or_default();
        decoded.push((entry, Some(statement), id, recipients));
    }
    let mut guard = corpus.write().map_err(|e| e.to_string())?;
    let mut removed = 0;
    for (entry, statement, id, recipients) in &decoded {
        let Some(statement) = statement else {
            guard.pass(entry.seq);
            continue;
        };
        guard
            .stage(entry, statement, *id, recipients.clone())
            .map_err(|e| format!("entry {}: {e}", entry.seq))?;
        // An erasure: its target's hashes leave matching at once.
        if let Body::Retraction(r) = &statement.body
            && r.erase
            && guard
                .provenance_of(&r.target)
                .is_some_and(|p| erases(&registry, p))
        {
            removed += guard.remove_statement(&r.target);
            erasing.erased.store(true, Ordering::SeqCst);
            if let Some(path) = &erasing.snapshot {
                remove_snapshot(path);
            }
        }
    }
    if removed > 0 {
        metrics::counter!("coalition_match_erased_hashes_total").increment(removed as u64);
    }
    if commit {
        guard.commit();
    }
    Ok(guard.next_seq())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A snapshot write told to give way fails, leaves the old file as it was and removes its
    /// temporary; one not told to writes a snapshot that loads. Each write to the file is at
    /// most one buffer, so the flag is looked at within one buffer of encoding.
    #[test]
    fn an_abandoned_snapshot_write_leaves_the_old_file_whole() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("data"), &Default::default()).expect("store");
        let corpus = RwLock::new(Corpus::new());
        let path = dir.path().join("matching-index.bin");
        assert_eq!(
            write_snapshot(&store, &corpus, &path, &AtomicBool::new(false)),
            Ok(0)
        );
        let written = std::fs::read(&path).expect("snapshot written");
        let (_, covers) =
            snapshot::read(&written[..], written.len() as u64).expect("snapshot reads");
        assert_eq!(covers.log_size, 0);

        std::fs::write(&path, b"the old snapshot").expect("old file");
        let refused = write_snapshot(&store, &corpus, &path, &AtomicBool::new(true));
        assert!(refused.is_err_and(|e| e.contains("abandoned")));
        assert_eq!(
            std::fs::read(&path).ok(),
            Some(b"the old snapshot".to_vec())
        );
        assert!(!temporary(&path).exists());

        let flag = AtomicBool::new(false);
        let file = std::fs::File::create(dir.path().join("capped")).expect("file");
        let mut out = Abandonable {
            file,
            abandon: &flag,
        };
        let big = vec![7u8; 3 * SNAPSHOT_BUFFER];
        assert_eq!(
            std::io::Write::write(&mut out, &big).ok(),
            Some(SNAPSHOT_BUFFER)
        );
        flag.store(true, Ordering::SeqCst);
        assert!(std::io::Write::write(&mut out, &big).is_err());
    }

    /// A first snapshot is written for any entry; a recent one is rewritten once the tail
    /// reaches 1% of what it covers, an old one (or one this process did not write) for any.
    #[test]
    fn a_snapshot_is_rewritten_for_a_tail_of_one_percent_or_when_stale() {
        let recent = Some(Instant::now());
        assert!(worth_rewriting(0, 1, recent));
        assert!(!worth_rewriting(10, 10, None));
        assert!(worth_rewriting(50, 51, recent));
        assert!(!worth_rewriting(1_000, 1_009, recent));
        assert!(worth_rewriting(1_000, 1_010, recent));
        assert!(worth_rewriting(1_000, 1_001, None));
        if let Some(old) = Instant::now().checked_sub(SNAPSHOT_STALE + Duration::from_secs(1)) {
            assert!(worth_rewriting(1_000, 1_001, Some(old)));
        }
    }
}
