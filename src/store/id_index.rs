//! The statement-id → sequence-number index, in append-only sorted runs beside the entry files
//! instead of one sled key per statement (a random 33-byte key cost ~460 B of sled's disk per
//! statement; the runs cost 16 B: docs/PERFORMANCE.md, "The id index out of sled").
//!
//! The index is derived data: every id is in its entry's record in `entries.dat`, which is
//! durable before a statement is acknowledged. So the index never has to be durable before an
//! acknowledgement; it only has to be complete once it is used, which [`IdIndex::open`]
//! guarantees by re-reading the entries its runs do not cover.
//!
//! - **Memtable**: the ids of the newest entries (at most [`MEMTABLE_IDS`]), full 32-byte ids in
//!   a hash map. When full, the writer thread sorts it into a run file.
//! - **Runs**: files `ids/run-<from>-<to>` (16 hex digits each) holding the ids of entries
//!   `from..to` as 16-byte records sorted by (id prefix, seq): the first 8 bytes of the id and
//!   the seq, both big-endian. A run is written to `<name>.tmp`, fdatasync'ed, renamed and the
//!   directory synced, so a run file that exists under its name is complete. The runs in use
//!   cover `0..n` back to back; a lookup reads, per run, one block of [`SPARSE_EVERY`] records
//!   found through an in-memory sparse index (every [`SPARSE_EVERY`]th prefix: 8 B per 128
//!   statements), and confirms a matching prefix by reading the entry (an 8-byte prefix can
//!   collide; every candidate is checked against the full id).
//! - **Merges**: a background thread merges the newest runs when the older of two neighbours is
//!   at most [`MERGE_RATIO`] times the newer one (size-tiered), so there are O(log n) runs. The
//!   merged run is made durable under its own name before its inputs are deleted; a crash in
//!   between leaves both, and the next open keeps the merged one and deletes the inputs.
//!
//! At open, `*.tmp` files (a crash during a write) are deleted, the widest runs covering
//! `0..n` back to back are chosen and any other run deleted (merge inputs, or runs beyond the
//! log after a restore), each chosen run is read once to check it is sorted and build its
//! sparse index, and the entries `n..size` are read into the memtable (flushing runs as it
//! fills). A store of the earlier layout (ids as sled keys) has no runs: the whole index is
//! built from the entry files, and its sled keys are removed afterwards (`Store::open`).

use super::entry_files::EntryFiles;
use super::{StoreError, StoredEntry};
use crate::statement::StatementId;
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};

/// The runs' directory, in the data directory.
pub const DIR: &str = "ids";
/// Ids held in the memtable before it is written as a run, by default (~5 MiB of memory).
pub const MEMTABLE_IDS: usize = 65_536;
/// Bytes per run record: id prefix (8) and seq (8).
const RECORD: u64 = 16;
/// One sparse-index sample per this many records: a lookup reads at most this many records
/// (2 KiB) per run.
pub const SPARSE_EVERY: u64 = 128;
/// A run is merged with the runs newer than it when it holds at most this many times their
/// records together: with 1, run sizes follow a binary counter (at most log2(n / memtable) + 1
/// runs, each record rewritten about as many times).
const MERGE_RATIO: u64 = 1;
/// Buffer of each run read or written sequentially.
const IO_BUFFER: usize = 256 * 1024;

/// What to do about a damaged run (the index is rebuilt from the entry files).
const REBUILD: &str = "; stop the hub and delete the `ids` directory: the next start rebuilds \
                       it from entries.dat";

fn io(file: &Path, source: std::io::Error) -> StoreError {
    StoreError::File {
        file: file.display().to_string(),
        source,
    }
}

fn prefix(id: &StatementId) -> u64 {
    let mut p = [0u8; 8];
    p.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(p)
}

/// One sorted run file.
struct Run {
    /// Entries `from..to` are indexed here.
    from: u64,
    to: u64,
    path: PathBuf,
    file: File,
    /// Records in the file.
    count: u64,
    /// The prefix of records 0, [`SPARSE_EVERY`], 2 × [`SPARSE_EVERY`], ...
    sparse: Vec<u64>,
}

impl Run {
    fn name(from: u64, to: u64) -> String {
        format!("run-{from:016x}-{to:016x}")
    }

    fn parse_name(name: &str) -> Option<(u64, u64)> {
        let rest = name.strip_prefix("run-")?;
        let (from, to) = rest.split_once('-')?;
        if from.len() != 16 || to.len() != 16 {
            return None;
        }
        let from = u64::from_str_radix(from, 16).ok()?;
        let to = u64::from_str_radix(to, 16).ok()?;
        (from < to).then_some((from, to))
    }

    /// Writes the sorted `records` as the run of entries `from..to`, durably.
    fn write(
        dir: &Path,
        from: u64,
        to: u64,
        records: impl Iterator<Item = Result<(u64, u64), StoreError>>,
    ) -> Result<Run, StoreError> {
        let path = dir.join(Run::name(from, to));
        let tmp = dir.join(format!("{}.tmp", Run::name(from, to)));
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io(&tmp, e))?;
        let mut out = BufWriter::with_capacity(IO_BUFFER, &file);
        let mut sparse = Vec::new();
        let mut count = 0u64;
        for record in records {
            let (p, seq) = record?;
            if count.is_multiple_of(SPARSE_EVERY) {
                sparse.push(p);
            }
            out.write_all(&p.to_be_bytes())
                .and_then(|()| out.write_all(&seq.to_be_bytes()))
                .map_err(|e| io(&tmp, e))?;
            count += 1;
        }
        out.flush().map_err(|e| io(&tmp, e))?;
        drop(out);
        file.sync_data().map_err(|e| io(&tmp, e))?;
        drop(file);
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))?;
        sync_dir(dir)?;
        let file = File::open(&path).map_err(|e| io(&path, e))?;
        Ok(Run {
            from,
            to,
            path,
            file,
            count,
            sparse,
        })
    }

    /// Opens the run file `path` of entries `from..to`, checking that it is whole records
    /// sorted by (prefix, seq) with every seq in `from..to`.
    fn load(path: PathBuf, from: u64, to: u64) -> Result<Run, StoreError> {
        let file = File::open(&path).map_err(|e| io(&path, e))?;
        let corrupt = |reason: String| StoreError::Corrupt {
            key: path.display().to_string(),
            reason,
        };
        let len = file.metadata().map_err(|e| io(&path, e))?.len();
        if len % RECORD != 0 {
            return Err(corrupt(format!(
                "{len} bytes is not whole {RECORD}-byte records{REBUILD}"
            )));
        }
        let count = len / RECORD;
        let mut sparse = Vec::with_capacity(count.div_ceil(SPARSE_EVERY) as usize);
        let mut previous = None;
        for (i, record) in Records::new(&file, &path).enumerate() {
            let (p, seq) = record?;
            if !(from..to).contains(&seq) {
                return Err(corrupt(format!(
                    "holds entry {seq}, outside {from}..{to}{REBUILD}"
                )));
            }
            if previous.is_some_and(|prev| prev >= (p, seq)) {
                return Err(corrupt(format!("record {i} is out of order{REBUILD}")));
            }
            previous = Some((p, seq));
            if (i as u64).is_multiple_of(SPARSE_EVERY) {
                sparse.push(p);
            }
        }
        Ok(Run {
            from,
            to,
            path,
            file,
            count,
            sparse,
        })
    }

    /// The seqs of the records whose id prefix is `p`.
    fn candidates(&self, p: u64) -> Result<Vec<u64>, StoreError> {
        if self.count == 0 {
            return Ok(Vec::new());
        }
        // The last block whose first prefix is below `p` may hold `p` at its end; equal
        // prefixes may run on over following blocks.
        let first_block = self.sparse.partition_point(|&s| s < p).saturating_sub(1);
        let mut found = Vec::new();
        for block in first_block..self.sparse.len() {
            if block > first_block && self.sparse[block] > p {
                break;
            }
            let start = block as u64 * SPARSE_EVERY;
            let n = SPARSE_EVERY.min(self.count - start);
            let mut bytes = vec![0u8; (n * RECORD) as usize];
            self.file
                .read_exact_at(&mut bytes, start * RECORD)
                .map_err(|e| io(&self.path, e))?;
            let mut past = false;
            for record in bytes.chunks_exact(RECORD as usize) {
                let (rp, seq) = decode(record);
                if rp == p {
                    found.push(seq);
                } else if rp > p {
                    past = true;
                    break;
                }
            }
            if past {
                break;
            }
        }
        Ok(found)
    }
}

fn decode(record: &[u8]) -> (u64, u64) {
    let mut p = [0u8; 8];
    let mut s = [0u8; 8];
    p.copy_from_slice(&record[..8]);
    s.copy_from_slice(&record[8..16]);
    (u64::from_be_bytes(p), u64::from_be_bytes(s))
}

/// A run file's records, read sequentially from its start with positional reads of
/// [`IO_BUFFER`] bytes (never the file's shared cursor, so a run can be read again).
struct Records<'a> {
    file: &'a File,
    path: &'a Path,
    buffer: Vec<u8>,
    /// Next record in `buffer`, and the file offset after `buffer`.
    at: usize,
    offset: u64,
    done: bool,
}

impl<'a> Records<'a> {
    fn new(file: &'a File, path: &'a Path) -> Self {
        Records {
            file,
            path,
            buffer: Vec::new(),
            at: 0,
            offset: 0,
            done: false,
        }
    }

    /// Reads the next buffer of whole records; false at the end of the file.
    fn refill(&mut self) -> Result<bool, StoreError> {
        let mut buffer = std::mem::take(&mut self.buffer);
        buffer.resize(IO_BUFFER, 0);
        let mut filled = 0;
        while filled < buffer.len() {
            match self
                .file
                .read_at(&mut buffer[filled..], self.offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io(self.path, e)),
            }
        }
        // A torn last record is ignored here; `Run::load` checks the length.
        let whole = filled - filled % RECORD as usize;
        buffer.truncate(whole);
        self.offset += whole as u64;
        self.buffer = buffer;
        self.at = 0;
        Ok(whole > 0)
    }
}

impl Iterator for Records<'_> {
    type Item = Result<(u64, u64), StoreError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        if self.at >= self.buffer.len() {
            match self.refill() {
                Ok(true) => {}
                Ok(false) => {
                    self.done = true;
                    return None;
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
        let record = decode(&self.buffer[self.at..self.at + RECORD as usize]);
        self.at += RECORD as usize;
        Some(Ok(record))
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io(dir, e))
}

/// What readers and the writer share.
struct Shared {
    /// Ids of entries `runs.last().to..` (up to the writer's durable size).
    memtable: HashMap<StatementId, u64>,
    /// Back to back from entry 0, oldest first.
    runs: Vec<Arc<Run>>,
}

impl Shared {
    fn covered(&self) -> u64 {
        self.runs.last().map_or(0, |r| r.to)
    }
}

/// The id index, shared by the writer and every reader.
pub(super) struct IdIndex {
    dir: PathBuf,
    /// Ids in the memtable before it is written as a run.
    memtable_ids: usize,
    shared: Mutex<Shared>,
}

/// The writer's side: adds ids, writes runs, and owns the merge thread (joined when dropped).
pub(super) struct IdWriter {
    index: Arc<IdIndex>,
    merges: Option<mpsc::SyncSender<()>>,
    merger: Option<std::thread::JoinHandle<()>>,
}

impl IdIndex {
    /// Opens the index of a log of `size` entries in `data_dir` (see the module doc), reading
    /// the entries its runs do not cover from `entries`.
    pub(super) fn open(
        data_dir: &Path,
        entries: &Arc<EntryFiles>,
        size: u64,
        memtable_ids: usize,
    ) -> Result<(Arc<IdIndex>, IdWriter), StoreError> {
        let dir = data_dir.join(DIR);
        if !dir.exists() {
            std::fs::create_dir(&dir).map_err(|e| io(&dir, e))?;
            sync_dir(data_dir)?;
        }
        let runs = choose_runs(&dir, size)?;
        let index = Arc::new(IdIndex {
            dir,
            memtable_ids,
            shared: Mutex::new(Shared {
                memtable: HashMap::new(),
                runs,
            }),
        });
        let covered = index.lock()?.covered();
        // Up to a memtable's worth is re-read at every start (debug); more is an upgrade or a
        // lost run, worth telling the operator about.
        if size - covered > memtable_ids as u64 {
            tracing::info!(
                "store: indexing the ids of entries {covered}..{size} from {}",
                super::ENTRIES_DATA_FILE
            );
        } else if covered < size {
            tracing::debug!(
                "store: indexing the ids of entries {covered}..{size} from {}",
                super::ENTRIES_DATA_FILE
            );
        }
        // A record that does not decode is left out (its id cannot be known), so that the hub
        // still opens and says what is damaged: the matching indexer reports the same record
        // and the hub's health goes to "not serving" for the Hub service, while audits go on.
        let mut next = covered;
        while next < size {
            for entry in entries.clone().range(next, size) {
                let indexed = entry.and_then(|e| Ok((e.id()?, e.seq)));
                let (id, seq) = match indexed {
                    Ok(found) => found,
                    // The read-ahead failed somewhere from `next`: entry by entry from there.
                    Err(StoreError::Corrupt { .. }) => {
                        match entries.read(next).and_then(|e| Ok((e.id()?, e.seq))) {
                            Ok(found) => found,
                            Err(StoreError::Corrupt { key, reason }) => {
                                tracing::error!(
                                    "store: stored record {key} is corrupt ({reason}): its statement id is not indexed"
                                );
                                next += 1;
                                break;
                            }
                            Err(e) => return Err(e),
                        }
                    }
                    Err(e) => return Err(e),
                };
                index.lock()?.memtable.insert(id, seq);
                next = seq + 1;
                if index.memtable_full()? {
                    index.flush(seq + 1)?;
                    while index.merge_once()? {}
                }
            }
        }
        let (tx, rx) = mpsc::sync_channel(1);
        let for_merger = index.clone();
        let merger = std::thread::Builder::new()
            .name("store-id-merge".into())
            .spawn(move || {
                while rx.recv().is_ok() {
                    loop {
                        match for_merger.merge_once() {
                            Ok(true) => {}
                            Ok(false) => break,
                            Err(e) => {
                                // Lookups stay correct with more runs; the next open retries.
                                tracing::error!("store: merging id runs failed: {e}");
                                break;
                            }
                        }
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start id merge thread: {e}")))?;
        let writer = IdWriter {
            index: index.clone(),
            merges: Some(tx),
            merger: Some(merger),
        };
        Ok((index, writer))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, Shared>, StoreError> {
        self.shared
            .lock()
            .map_err(|_| StoreError::Unavailable("the id index lock is poisoned".into()))
    }

    fn memtable_full(&self) -> Result<bool, StoreError> {
        Ok(self.lock()?.memtable.len() >= self.memtable_ids)
    }

    /// Writes the memtable (ids of entries up to `to`) as a run and empties it.
    fn flush(&self, to: u64) -> Result<(), StoreError> {
        let (from, mut records) = {
            let shared = self.lock()?;
            let records: Vec<(u64, u64)> = shared
                .memtable
                .iter()
                .map(|(id, &seq)| (prefix(id), seq))
                .collect();
            (shared.covered(), records)
        };
        if from >= to {
            return Ok(());
        }
        records.sort_unstable();
        let run = Run::write(&self.dir, from, to, records.into_iter().map(Ok))?;
        let mut shared = self.lock()?;
        shared.runs.push(Arc::new(run));
        shared.memtable.retain(|_, seq| *seq >= to);
        Ok(())
    }

    /// Merges the newest runs if the policy asks for it; true if it merged.
    fn merge_once(&self) -> Result<bool, StoreError> {
        let inputs: Vec<Arc<Run>> = {
            let shared = self.lock()?;
            let runs = &shared.runs;
            // The longest suffix in which each run is at most MERGE_RATIO times the size of
            // everything newer than it.
            let mut start = runs.len();
            let mut newer = 0u64;
            while start > 0 {
                let candidate = runs[start - 1].count.max(1);
                if start < runs.len() && candidate > MERGE_RATIO * newer.max(1) {
                    break;
                }
                newer += runs[start - 1].count.max(1);
                start -= 1;
            }
            if runs.len() - start < 2 {
                return Ok(false);
            }
            runs[start..].to_vec()
        };
        let (from, to) = (inputs[0].from, inputs[inputs.len() - 1].to);
        let mut heads: Vec<_> = inputs
            .iter()
            .map(|run| Records::new(&run.file, &run.path).peekable())
            .collect();
        let merged = std::iter::from_fn(|| {
            let mut best: Option<(usize, (u64, u64))> = None;
            for (i, head) in heads.iter_mut().enumerate() {
                match head.peek() {
                    Some(Ok(record)) if best.is_none_or(|(_, b)| *record < b) => {
                        best = Some((i, *record));
                    }
                    Some(Err(_)) => return head.next(),
                    _ => {}
                }
            }
            let (i, _) = best?;
            heads[i].next()
        });
        let run = Arc::new(Run::write(&self.dir, from, to, merged)?);
        {
            let mut shared = self.lock()?;
            let at = shared
                .runs
                .iter()
                .position(|r| Arc::ptr_eq(r, &inputs[0]))
                .ok_or_else(|| StoreError::Unavailable("id runs changed during a merge".into()))?;
            shared.runs.splice(at..at + inputs.len(), [run]);
        }
        for input in &inputs {
            std::fs::remove_file(&input.path).map_err(|e| io(&input.path, e))?;
        }
        sync_dir(&self.dir)?;
        metrics::counter!("coalition_id_run_merges_total").increment(1);
        Ok(true)
    }

    /// The entry holding `id`, among entries `..limit`, read through `read`.
    pub(super) fn find(
        &self,
        id: &StatementId,
        limit: u64,
        read: impl Fn(u64) -> Result<StoredEntry, StoreError>,
    ) -> Result<Option<StoredEntry>, StoreError> {
        let runs = {
            let shared = self.lock()?;
            if let Some(&seq) = shared.memtable.get(id) {
                return if seq < limit {
                    read(seq).map(Some)
                } else {
                    Ok(None)
                };
            }
            shared.runs.clone()
        };
        let p = prefix(id);
        // Newest first: a lookup for a recent duplicate stops early.
        for run in runs.iter().rev() {
            for seq in run.candidates(p)? {
                if seq >= limit {
                    continue;
                }
                let entry = read(seq)?;
                if entry.statement_id[..] == id.0[..] {
                    return Ok(Some(entry));
                }
            }
        }
        Ok(None)
    }

    /// Runs and the records in them (for tests and the disk figures).
    #[cfg(test)]
    fn shape(&self) -> (usize, u64, usize) {
        let shared = self.shared.lock().expect("lock");
        (
            shared.runs.len(),
            shared.runs.iter().map(|r| r.count).sum(),
            shared.memtable.len(),
        )
    }
}

impl IdWriter {
    /// [`IdIndex::find`], for the writer's duplicate check.
    pub(super) fn find(
        &self,
        id: &StatementId,
        limit: u64,
        read: impl Fn(u64) -> Result<StoredEntry, StoreError>,
    ) -> Result<Option<StoredEntry>, StoreError> {
        self.index.find(id, limit, read)
    }

    /// Records the ids of a committed group (entries up to `size`, all durable); writes a run
    /// when the memtable is full and wakes the merge thread.
    pub(super) fn add(
        &mut self,
        ids: impl Iterator<Item = (StatementId, u64)>,
        size: u64,
    ) -> Result<(), StoreError> {
        let full = {
            let mut shared = self.index.lock()?;
            shared.memtable.extend(ids);
            shared.memtable.len() >= self.index.memtable_ids
        };
        if full {
            self.index.flush(size)?;
            if let Some(merges) = &self.merges {
                // Full means a wake-up is pending already.
                let _ = merges.try_send(());
            }
        }
        Ok(())
    }
}

impl Drop for IdWriter {
    fn drop(&mut self) {
        drop(self.merges.take());
        if let Some(merger) = self.merger.take() {
            let _ = merger.join();
        }
    }
}

/// The runs of `dir` to use for a log of `size` entries: `*.tmp` files deleted, then from entry
/// 0 on, the run starting where the previous ended that reaches furthest (not beyond `size`);
/// every other run file is deleted.
fn choose_runs(dir: &Path, size: u64) -> Result<Vec<Arc<Run>>, StoreError> {
    let mut found = Vec::new();
    let mut removed = false;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        match Run::parse_name(&name) {
            Some((from, to)) if to <= size => found.push((from, to, entry.path())),
            _ if name.ends_with(".tmp") || name.starts_with("run-") => {
                // A write a crash interrupted, or a run beyond the log (a restored backup).
                std::fs::remove_file(entry.path()).map_err(|e| io(&entry.path(), e))?;
                removed = true;
            }
            _ => {}
        }
    }
    // By start, widest first.
    found.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
    let mut chosen = Vec::new();
    let mut at = 0u64;
    for (from, to, path) in found {
        if from == at {
            chosen.push(Arc::new(Run::load(path, from, to)?));
            at = to;
        } else {
            // Covered by a wider run (inputs of a finished merge) or after a gap.
            std::fs::remove_file(&path).map_err(|e| io(&path, e))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(chosen)
}

/// Writes an empty run covering entries `0..to` (synthetic benchmark trees, whose positions
/// hold no records).
pub(super) fn write_empty_run(data_dir: &Path, to: u64) -> Result<(), StoreError> {
    let dir = data_dir.join(DIR);
    if !dir.exists() {
        std::fs::create_dir(&dir).map_err(|e| io(&dir, e))?;
        sync_dir(data_dir)?;
    }
    if to > 0 {
        Run::write(&dir, 0, to, std::iter::empty())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::entry_files::{Appender, EntryFiles};

    fn id_of(i: u64) -> StatementId {
        use sha2::{Digest, Sha256};
        StatementId(Sha256::digest(i.to_be_bytes()).into())
    }

    /// A data directory whose entry files hold entries `0..n` with the ids `ids(seq)`.
    struct Data {
        tmp: tempfile::TempDir,
        files: Arc<EntryFiles>,
        appender: Appender,
    }

    impl Data {
        fn new() -> Data {
            let tmp = tempfile::tempdir().expect("tmp");
            let (files, appender) = EntryFiles::open(tmp.path(), 0).expect("open");
            Data {
                tmp,
                files,
                appender,
            }
        }
        fn append(&mut self, ids: &[StatementId]) -> u64 {
            for id in ids {
                let seq = self.appender.next_seq();
                self.appender.stage(&StoredEntry {
                    seq,
                    received_at_ms: seq as i64,
                    statement_id: id.0.to_vec(),
                    envelope: None,
                    relay: None,
                });
            }
            self.appender.sync().expect("sync")
        }
        fn open(&self, size: u64, memtable: usize) -> (Arc<IdIndex>, IdWriter) {
            IdIndex::open(self.tmp.path(), &self.files, size, memtable).expect("open index")
        }
        fn find(&self, index: &IdIndex, id: &StatementId, limit: u64) -> Option<u64> {
            index
                .find(id, limit, |seq| self.files.read(seq))
                .expect("find")
                .map(|e| e.seq)
        }
        fn run_files(&self) -> Vec<String> {
            let mut names: Vec<String> = std::fs::read_dir(self.tmp.path().join(DIR))
                .expect("dir")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        }
    }

    /// Appends `ids` as the writer does: entries durable, then the index told.
    fn commit(data: &mut Data, writer: &mut IdWriter, ids: &[StatementId]) {
        let first = data.appender.durable();
        let size = data.append(ids);
        writer
            .add(
                ids.iter()
                    .enumerate()
                    .map(|(i, id)| (*id, first + i as u64)),
                size,
            )
            .expect("add");
    }

    #[test]
    fn every_id_is_found_through_memtable_runs_and_merges_and_after_reopen() {
        let mut data = Data::new();
        let (index, mut writer) = data.open(0, 64);
        let ids: Vec<StatementId> = (0..3000).map(id_of).collect();
        for group in ids.chunks(37) {
            commit(&mut data, &mut writer, group);
        }
        for (seq, id) in ids.iter().enumerate() {
            assert_eq!(data.find(&index, id, 3000), Some(seq as u64), "id {seq}");
        }
        assert_eq!(data.find(&index, &id_of(5000), 3000), None);
        // Nothing at or beyond the limit (a size not yet published) is answered.
        assert_eq!(data.find(&index, &ids[2999], 2999), None);
        assert_eq!(data.find(&index, &ids[10], 10), None);
        drop(writer); // waits for the merge thread
        let (runs, records, memtable) = index.shape();
        assert_eq!(records + memtable as u64, 3000);
        // Sizes follow a binary counter: at most log2(3000 / 64) + 1 runs once merged.
        assert!(runs <= 7, "{runs} runs");
        assert_eq!(data.run_files().len(), runs);
        drop(index);

        // Reopened: the runs are used, the entries after them re-read into the memtable.
        let (index, mut writer) = data.open(3000, 64);
        let (_, records_again, memtable_again) = index.shape();
        assert_eq!(records_again, records);
        assert_eq!(memtable_again, memtable);
        for (seq, id) in ids.iter().enumerate().step_by(7) {
            assert_eq!(data.find(&index, id, 3000), Some(seq as u64), "id {seq}");
        }
        // Enough more that the runs read at open are merged with new ones (a run must read
        // the same whether it was written or loaded).
        let more: Vec<StatementId> = (3000..6000).map(id_of).collect();
        for group in more.chunks(41) {
            commit(&mut data, &mut writer, group);
        }
        drop(writer);
        let (runs, _, _) = index.shape();
        assert!(runs <= 8, "{runs} runs");
        for (seq, id) in ids.iter().chain(&more).enumerate() {
            assert_eq!(data.find(&index, id, 6000), Some(seq as u64), "id {seq}");
        }
    }

    #[test]
    fn ids_sharing_a_prefix_are_told_apart_by_the_full_id() {
        // A hostile submitter can grind statement ids with a common 8-byte prefix.
        let colliding = |i: u8| {
            let mut id = [0xab; 32];
            id[31] = i;
            StatementId(id)
        };
        let mut data = Data::new();
        let (index, mut writer) = data.open(0, 4);
        // Spread over several runs and blocks, with other ids between them.
        for i in 0..250u8 {
            commit(&mut data, &mut writer, &[colliding(i), id_of(u64::from(i))]);
        }
        drop(writer);
        for i in 0..250u8 {
            assert_eq!(
                data.find(&index, &colliding(i), 500),
                Some(2 * u64::from(i))
            );
        }
        let mut absent = [0xab; 32];
        absent[0..8].copy_from_slice(&[0xab; 8]);
        absent[30] = 1;
        assert_eq!(data.find(&index, &StatementId(absent), 500), None);
    }

    #[test]
    fn leftovers_of_a_crash_are_cleaned_up_at_open() {
        let mut data = Data::new();
        let (index, mut writer) = data.open(0, 10);
        let ids: Vec<StatementId> = (0..200).map(id_of).collect();
        for group in ids.chunks(10) {
            commit(&mut data, &mut writer, group);
        }
        drop(writer);
        drop(index);
        let dir = data.tmp.path().join(DIR);
        let before = data.run_files();
        // A merge that crashed after its output was durable but before the inputs were
        // deleted: a run over 0..200 beside them; a run write cut short (`.tmp`); a run beyond
        // the log (a data directory restored from an older backup).
        let all = {
            let mut records: Vec<(u64, u64)> = ids
                .iter()
                .enumerate()
                .map(|(s, id)| (prefix(id), s as u64))
                .collect();
            records.sort_unstable();
            records
        };
        Run::write(&dir, 0, 200, all.into_iter().map(Ok)).expect("merged");
        std::fs::write(dir.join(format!("{}.tmp", Run::name(0, 200))), [1, 2, 3]).expect("tmp");
        std::fs::write(dir.join(Run::name(200, 250)), [0u8; 16]).expect("beyond");
        let (index, writer) = data.open(200, 10);
        assert_eq!(data.run_files(), vec![Run::name(0, 200)], "was {before:?}");
        assert_eq!(index.shape(), (1, 200, 0));
        for (seq, id) in ids.iter().enumerate() {
            assert_eq!(data.find(&index, id, 200), Some(seq as u64));
        }
        drop((index, writer));

        // The runs lost altogether: rebuilt from the entry files.
        std::fs::remove_dir_all(&dir).expect("rm");
        let (index, writer) = data.open(200, 64);
        for (seq, id) in ids.iter().enumerate() {
            assert_eq!(data.find(&index, id, 200), Some(seq as u64));
        }
        drop((index, writer));

        // A damaged run is reported, naming the file and the way out.
        let name = data.run_files().into_iter().next().expect("a run");
        let path = dir.join(&name);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes.swap(0, 16);
        bytes.swap(1, 17);
        bytes[0] = 0xff;
        std::fs::write(&path, &bytes).expect("write");
        let err = IdIndex::open(data.tmp.path(), &data.files, 200, 64)
            .err()
            .expect("damaged");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(&name), "{err}");
        assert!(
            err.to_string().contains("delete the `ids` directory"),
            "{err}"
        );
        std::fs::write(&path, &bytes[..bytes.len() - 3]).expect("write");
        let err = IdIndex::open(data.tmp.path(), &data.files, 200, 64)
            .err()
            .expect("torn");
        assert!(err.to_string().contains("whole 16-byte records"), "{err}");
    }
}
