//! The log's entries (prost-encoded [`StoredEntry`] records) in two append-only files beside
//! sled, so a statement costs no sled key for its bytes:
//!
//! - `entries.dat`: the records back to back, in sequence order;
//! - `entries.idx`: 8 bytes per entry (big-endian), the end offset of record `seq` in
//!   `entries.dat` (its start is the end of record `seq - 1`, or 0): O(1) positional reads
//!   (`FileExt::read_at`) from any thread, no lock.
//!
//! sled stays the store of record: the durable log size (key `S` in the `log` tree) is
//! committed with the group's sled batch, AFTER the group's records and offsets were written
//! and fdatasync'ed here. So on open everything up to sled's size is on disk, anything beyond
//! it is a torn or unacknowledged tail of a crashed group and is truncated away, and a file
//! shorter than sled's size is corruption ([`StoreError::Corrupt`] naming the file). Readers
//! never read past the size the writer has published.
//!
//! A zero-length record marks a position with no stored entry (only synthetic benchmark trees,
//! [`super::write_synthetic_tree`], have those): reading it is a `Corrupt` error.
//!
//! The one-time upgrade from the earlier layout (records as sled keys `E` + seq) is
//! [`upgrade`].

use super::{StoreError, StoredEntry};
use crate::statement::MAX_PAYLOAD_BYTES;
use prost::Message;
use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The records file, in the data directory.
pub const DATA_FILE: &str = "entries.dat";
/// The offsets file (8 bytes per entry), in the data directory.
pub const OFFSETS_FILE: &str = "entries.idx";
/// Key of the durable log size (8 bytes, big-endian) in the `log` tree.
pub(super) const LOG_SIZE: &[u8] = b"S";
/// Key prefix of the earlier layout's records in the `log` tree: `E`, seq (8 bytes,
/// big-endian) → record. Only read and removed by [`upgrade`].
const LEGACY_ENTRY: u8 = b'E';
/// Largest record read: above any envelope the hub accepts (its gRPC messages are at most
/// four payloads), so a damaged offsets file cannot make a reader allocate without bound.
const MAX_RECORD: u64 = 4 * MAX_PAYLOAD_BYTES as u64 + 64 * 1024;
/// Records decoded per sequential read, and the bytes one such read buffers at most (a
/// larger single record is read alone).
const READ_AHEAD_RECORDS: u64 = 1024;
const READ_AHEAD_BYTES: u64 = 1024 * 1024;
/// Staging buffer kept between groups at most; a larger one (a group of big sets) is freed.
const KEEP_BUFFER: usize = 1024 * 1024;
/// Legacy records converted (or removed) per sled batch by the upgrade: bounds its memory.
const UPGRADE_BATCH: usize = 1024;

/// The two files, shared by the writer and every reader.
pub(super) struct EntryFiles {
    data: File,
    offsets: File,
    dir: PathBuf,
}

/// The writer's side: where the next record goes, and the records of the group being built.
pub(super) struct Appender {
    files: Arc<EntryFiles>,
    /// Entries on disk (fdatasync'ed).
    count: u64,
    /// Bytes of `entries.dat` on disk.
    end: u64,
    /// Staged, not yet written.
    data: Vec<u8>,
    offsets: Vec<u8>,
}

fn io(file: &Path, source: std::io::Error) -> StoreError {
    StoreError::File {
        file: file.display().to_string(),
        source,
    }
}

impl EntryFiles {
    /// Opens (creating if absent) the files in `dir` for a log of `size` durable entries:
    /// truncates what lies beyond it, refuses files shorter than it. Returns the shared files
    /// and the writer's appender positioned after entry `size - 1`.
    pub(super) fn open(dir: &Path, size: u64) -> Result<(Arc<EntryFiles>, Appender), StoreError> {
        let data_path = dir.join(DATA_FILE);
        let offsets_path = dir.join(OFFSETS_FILE);
        let created = !data_path.exists() || !offsets_path.exists();
        let open = |path: &Path| {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(|e| io(path, e))
        };
        let files = EntryFiles {
            data: open(&data_path)?,
            offsets: open(&offsets_path)?,
            dir: dir.to_owned(),
        };
        if created {
            // The new directory entries must survive a crash too.
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| io(dir, e))?;
        }
        let offsets_len = files.len(&files.offsets, OFFSETS_FILE)?;
        if offsets_len < size * 8 {
            return Err(StoreError::Corrupt {
                key: offsets_path.display().to_string(),
                reason: format!(
                    "holds {} entries but the log size recorded in sled is {size}: the file was \
                     truncated or replaced; restore the data directory from a backup",
                    offsets_len / 8
                ),
            });
        }
        let end = match size {
            0 => 0,
            n => files.end_of(n - 1)?,
        };
        let data_len = files.len(&files.data, DATA_FILE)?;
        if data_len < end {
            return Err(StoreError::Corrupt {
                key: data_path.display().to_string(),
                reason: format!(
                    "is {data_len} bytes but its {size} entries end at byte {end}: the file was \
                     truncated or replaced; restore the data directory from a backup"
                ),
            });
        }
        if offsets_len > size * 8 || data_len > end {
            // The tail of a group that crashed before sled committed it: never acknowledged.
            tracing::info!(
                "store: dropping an unacknowledged tail of {} bytes and {} entries",
                data_len - end,
                offsets_len.saturating_sub(size * 8) / 8
            );
            files.truncate(&files.offsets, OFFSETS_FILE, size * 8)?;
            files.truncate(&files.data, DATA_FILE, end)?;
        }
        let files = Arc::new(files);
        let appender = Appender {
            files: files.clone(),
            count: size,
            end,
            data: Vec::new(),
            offsets: Vec::new(),
        };
        Ok((files, appender))
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn len(&self, file: &File, name: &str) -> Result<u64, StoreError> {
        Ok(file.metadata().map_err(|e| io(&self.path(name), e))?.len())
    }

    fn truncate(&self, file: &File, name: &str, len: u64) -> Result<(), StoreError> {
        file.set_len(len)
            .and_then(|()| file.sync_all())
            .map_err(|e| io(&self.path(name), e))
    }

    fn corrupt(&self, name: &str, reason: String) -> StoreError {
        StoreError::Corrupt {
            key: self.path(name).display().to_string(),
            reason,
        }
    }

    /// The end offsets of records `first..first + count`, preceded by the start of record
    /// `first`.
    fn bounds(&self, first: u64, count: u64) -> Result<Vec<u64>, StoreError> {
        let (from, extra) = if first == 0 { (0, 0) } else { (first - 1, 1) };
        let mut raw = vec![0u8; ((count + extra) * 8) as usize];
        self.offsets
            .read_exact_at(&mut raw, from * 8)
            .map_err(|e| io(&self.path(OFFSETS_FILE), e))?;
        let mut bounds = Vec::with_capacity(raw.len() / 8 + 1);
        if first == 0 {
            bounds.push(0);
        }
        bounds.extend(
            raw.chunks_exact(8)
                .map(|c| u64::from_be_bytes(c.try_into().unwrap_or_default())),
        );
        Ok(bounds)
    }

    fn end_of(&self, seq: u64) -> Result<u64, StoreError> {
        Ok(self.bounds(seq, 1)?[1])
    }

    /// Checks one record's bounds.
    fn span(&self, seq: u64, start: u64, end: u64) -> Result<(), StoreError> {
        if end < start || end - start > MAX_RECORD {
            return Err(self.corrupt(
                OFFSETS_FILE,
                format!("entry {seq} spans bytes {start}..{end} of {DATA_FILE}"),
            ));
        }
        if end == start {
            return Err(StoreError::Corrupt {
                key: format!("entry {seq}"),
                reason: "no record is stored at this position".into(),
            });
        }
        Ok(())
    }

    fn decode(seq: u64, bytes: &[u8]) -> Result<StoredEntry, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: format!("entry {seq}"),
            reason,
        };
        let mut entry = StoredEntry::decode(bytes).map_err(|e| corrupt(e.to_string()))?;
        super::erasure::clear_scrubbed(&mut entry);
        if entry.seq != seq {
            return Err(corrupt(format!(
                "the record says it is entry {}",
                entry.seq
            )));
        }
        Ok(entry)
    }

    /// Entry `seq`, which the caller knows is durable (below the published size). One read
    /// of the offsets file, one of the records file.
    pub(super) fn read(&self, seq: u64) -> Result<StoredEntry, StoreError> {
        let (_, bytes) = self.read_raw(seq)?;
        Self::decode(seq, &bytes)
    }

    /// Record `seq`'s start offset in `entries.dat` and its bytes.
    pub(super) fn read_raw(&self, seq: u64) -> Result<(u64, Vec<u8>), StoreError> {
        let bounds = self.bounds(seq, 1)?;
        let (start, end) = (bounds[0], bounds[1]);
        self.span(seq, start, end)?;
        let mut bytes = vec![0u8; (end - start) as usize];
        self.data
            .read_exact_at(&mut bytes, start)
            .map_err(|e| io(&self.path(DATA_FILE), e))?;
        Ok((start, bytes))
    }

    /// Overwrites bytes of a durable record in place (erasure only, `erasure.rs`).
    pub(super) fn write_at(&self, name: &str, bytes: &[u8], at: u64) -> Result<(), StoreError> {
        let file = if name == DATA_FILE {
            &self.data
        } else {
            &self.offsets
        };
        file.write_all_at(bytes, at)
            .map_err(|e| io(&self.path(name), e))
    }

    /// fdatasyncs one of the two files.
    pub(super) fn sync_data(&self, name: &str) -> Result<(), StoreError> {
        let file = if name == DATA_FILE {
            &self.data
        } else {
            &self.offsets
        };
        file.sync_data().map_err(|e| io(&self.path(name), e))
    }

    /// Entries `from..to` (durable, the caller's bound), read sequentially: up to
    /// [`READ_AHEAD_RECORDS`] offsets and [`READ_AHEAD_BYTES`] of records per read.
    pub(super) fn range(
        self: Arc<Self>,
        from: u64,
        to: u64,
    ) -> impl Iterator<Item = Result<StoredEntry, StoreError>> + use<> {
        let mut next = from;
        let mut ready: VecDeque<Result<StoredEntry, StoreError>> = VecDeque::new();
        std::iter::from_fn(move || {
            if ready.is_empty() && next < to {
                match self.read_ahead(next, to) {
                    Ok(entries) => {
                        next += entries.len() as u64;
                        ready.extend(entries.into_iter().map(Ok));
                    }
                    Err(e) => {
                        next = to; // stop after reporting it
                        ready.push_back(Err(e));
                    }
                }
            }
            ready.pop_front()
        })
    }

    /// At least one entry from `first` (below `to`), as many as one read-ahead holds.
    fn read_ahead(&self, first: u64, to: u64) -> Result<Vec<StoredEntry>, StoreError> {
        let bounds = self.bounds(first, (to - first).min(READ_AHEAD_RECORDS))?;
        let start = bounds[0];
        let mut count = 0;
        for (i, pair) in bounds.windows(2).enumerate() {
            self.span(first + i as u64, pair[0], pair[1])?;
            if count > 0 && pair[1] - start > READ_AHEAD_BYTES {
                break;
            }
            count += 1;
        }
        let mut bytes = vec![0u8; (bounds[count] - start) as usize];
        self.data
            .read_exact_at(&mut bytes, start)
            .map_err(|e| io(&self.path(DATA_FILE), e))?;
        (0..count)
            .map(|i| {
                let (a, b) = (bounds[i] - start, bounds[i + 1] - start);
                Self::decode(first + i as u64, &bytes[a as usize..b as usize])
            })
            .collect()
    }
}

impl Appender {
    /// Entries on disk (the writer's durable size, ahead of sled's only inside a commit).
    pub(super) fn durable(&self) -> u64 {
        self.count
    }

    /// Entry `seq` (below [`Appender::durable`]).
    pub(super) fn read(&self, seq: u64) -> Result<StoredEntry, StoreError> {
        self.files.read(seq)
    }

    /// The shared files (the writer's erasure scrub writes through them).
    pub(super) fn files(&self) -> &EntryFiles {
        &self.files
    }

    /// Entries on disk plus those staged.
    pub(super) fn next_seq(&self) -> u64 {
        self.count + (self.offsets.len() / 8) as u64
    }

    /// Stages the record of the next entry (`entry.seq` must be [`Appender::next_seq`]).
    pub(super) fn stage(&mut self, entry: &StoredEntry) {
        debug_assert_eq!(entry.seq, self.next_seq());
        // Cannot fail: a Vec grows as needed.
        let _ = entry.encode(&mut self.data);
        let end = self.end + self.data.len() as u64;
        self.offsets.extend_from_slice(&end.to_be_bytes());
    }

    /// Writes `count` positions without a record at once (synthetic benchmark trees only;
    /// nothing may be staged): sparse when the records file is empty, otherwise in chunks.
    pub(super) fn write_gap(&mut self, count: u64) -> Result<(), StoreError> {
        debug_assert!(self.offsets.is_empty());
        let path = self.files.path(OFFSETS_FILE);
        let offsets = &self.files.offsets;
        if self.end == 0 {
            // An end offset of 0 is 8 zero bytes: a hole in the file.
            offsets
                .set_len((self.count + count) * 8)
                .map_err(|e| io(&path, e))?;
        } else {
            const CHUNK: u64 = 64 * 1024;
            let chunk: Vec<u8> = (0..CHUNK).flat_map(|_| self.end.to_be_bytes()).collect();
            let mut left = count;
            while left > 0 {
                let n = left.min(CHUNK);
                offsets
                    .write_all_at(&chunk[..(n * 8) as usize], (self.count + count - left) * 8)
                    .map_err(|e| io(&path, e))?;
                left -= n;
            }
        }
        offsets.sync_data().map_err(|e| io(&path, e))?;
        self.count += count;
        Ok(())
    }

    /// Writes the staged records and offsets and fdatasyncs both files; returns the number of
    /// entries now on disk. Only after this may sled record the new size.
    pub(super) fn sync(&mut self) -> Result<u64, StoreError> {
        if self.offsets.is_empty() {
            return Ok(self.count);
        }
        let files = &self.files;
        let data_path = files.path(DATA_FILE);
        let offsets_path = files.path(OFFSETS_FILE);
        files
            .data
            .write_all_at(&self.data, self.end)
            .and_then(|()| files.data.sync_data())
            .map_err(|e| io(&data_path, e))?;
        files
            .offsets
            .write_all_at(&self.offsets, self.count * 8)
            .and_then(|()| files.offsets.sync_data())
            .map_err(|e| io(&offsets_path, e))?;
        self.count += (self.offsets.len() / 8) as u64;
        self.end += self.data.len() as u64;
        self.discard();
        Ok(self.count)
    }

    /// Drops what is staged (written, or of a group that failed).
    pub(super) fn discard(&mut self) {
        for buffer in [&mut self.data, &mut self.offsets] {
            buffer.clear();
            if buffer.capacity() > KEEP_BUFFER {
                *buffer = Vec::new();
            }
        }
    }
}

/// Puts the durable log size into a sled batch (committed after [`Appender::sync`]).
pub(super) fn stage_log_size(batch: &mut sled::Batch, size: u64) {
    batch.insert(LOG_SIZE, &size.to_be_bytes()[..]);
}

/// The durable log size sled records, `None` in a directory of the earlier layout (or a new
/// one).
fn log_size(log: &sled::Tree) -> Result<Option<u64>, StoreError> {
    log.get(LOG_SIZE)?
        .map(|v| super::decode_seq(&v))
        .transpose()
}

/// The log size before [`open`]: sled's record of it, or in a directory of the earlier layout
/// one past its last legacy record (what the tile upgrade needs, which runs first).
pub(super) fn size_before_open(log: &sled::Tree) -> Result<u64, StoreError> {
    if let Some(size) = log_size(log)? {
        return Ok(size);
    }
    match log.scan_prefix([LEGACY_ENTRY]).keys().next_back() {
        Some(key) => Ok(super::seq_of_key(&key?)? + 1),
        None => Ok(0),
    }
}

/// Opens the entry files of the data directory `dir` and returns them with the durable log
/// size, converting a directory of the earlier layout (records as sled keys `E` + seq) first.
///
/// The conversion is crash-safe at every step and needs memory for one batch
/// ([`UPGRADE_BATCH`] records): (1) without a log size in sled, the files are emptied, every
/// legacy record is appended (checked: decodes, gap-free from 0), the files fdatasync'ed, and
/// only then the log size committed and flushed; a crash before that redoes it at the next
/// start. (2) With the size present, leftover legacy keys are removed in batches and flushed;
/// a crash here resumes the removal. The legacy keys are never read once the size exists. The
/// layout marker ([`super::tiles::mark_current_format`]) is committed with the size, so the
/// tile upgrade must have run before.
pub(super) fn open(
    dir: &Path,
    db: &sled::Db,
    log: &sled::Tree,
) -> Result<(Arc<EntryFiles>, Appender, u64), StoreError> {
    let size = match log_size(log)? {
        Some(size) => size,
        None => {
            let (_, mut appender) = EntryFiles::open(dir, 0)?;
            let mut count = 0u64;
            let mut staged = 0;
            for kv in log.scan_prefix([LEGACY_ENTRY]) {
                let (key, value) = kv?;
                let seq = super::seq_of_key(&key)?;
                if seq != count {
                    return Err(StoreError::Corrupt {
                        key: format!("entry {count}"),
                        reason: format!(
                            "missing while converting the log's records to {DATA_FILE} (the \
                             next stored is entry {seq})"
                        ),
                    });
                }
                appender.stage(&EntryFiles::decode(seq, &value)?);
                count += 1;
                staged += 1;
                if staged == UPGRADE_BATCH {
                    appender.sync()?;
                    staged = 0;
                }
            }
            appender.sync()?;
            if count > 0 {
                tracing::info!("store: moved the records of {count} entries to {DATA_FILE}");
            }
            let mut batch = sled::Batch::default();
            stage_log_size(&mut batch, count);
            super::tiles::mark_current_format(&mut batch);
            log.apply_batch(batch)?;
            db.flush()?;
            count
        }
    };
    let removed = super::remove_prefix(db, log, LEGACY_ENTRY, UPGRADE_BATCH)?;
    if removed > 0 {
        tracing::info!("store: removed {removed} sled record keys of the earlier layout");
    }
    let (files, appender) = EntryFiles::open(dir, size)?;
    Ok((files, appender, size))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb;

    /// Entry `seq` with a body of `body` bytes (a recognisable pattern).
    fn entry(seq: u64, body: usize) -> StoredEntry {
        StoredEntry {
            seq,
            received_at_ms: 1_700_000_000_000 + seq as i64,
            statement_id: vec![seq as u8; 32],
            envelope: Some(pb::Envelope {
                payload: vec![7; 10].into(),
                body: (0..body)
                    .map(|i| (i as u64 ^ seq) as u8)
                    .collect::<Vec<_>>()
                    .into(),
                ..Default::default()
            }),
            relay: None,
        }
    }

    struct Dir {
        tmp: tempfile::TempDir,
        db: sled::Db,
        log: sled::Tree,
    }

    fn dir() -> Dir {
        let tmp = tempfile::tempdir().expect("tmp");
        let db = sled::Config::new().path(tmp.path()).open().expect("db");
        let log = db.open_tree("log").expect("log");
        Dir { tmp, db, log }
    }

    impl Dir {
        fn open(&self) -> Result<(Arc<EntryFiles>, Appender, u64), StoreError> {
            open(self.tmp.path(), &self.db, &self.log)
        }
        /// Appends entries `from..to` and commits the size to sled, as the writer does.
        fn append(&self, appender: &mut Appender, from: u64, to: u64, body: usize) {
            for seq in from..to {
                appender.stage(&entry(seq, body + seq as usize % 5));
            }
            let size = appender.sync().expect("sync");
            let mut batch = sled::Batch::default();
            stage_log_size(&mut batch, size);
            self.log.apply_batch(batch).expect("batch");
            self.db.flush().expect("flush");
        }
        fn file_len(&self, name: &str) -> u64 {
            std::fs::metadata(self.tmp.path().join(name))
                .expect("metadata")
                .len()
        }
        fn set_len(&self, name: &str, len: u64) {
            let file = OpenOptions::new()
                .write(true)
                .open(self.tmp.path().join(name))
                .expect("open");
            file.set_len(len).expect("set_len");
        }
    }

    fn check(files: &Arc<EntryFiles>, size: u64, body: usize) {
        for seq in [0, size / 2, size - 1] {
            assert_eq!(
                files.read(seq).expect("read"),
                entry(seq, body + seq as usize % 5)
            );
        }
        let all: Vec<StoredEntry> = files
            .clone()
            .range(0, size)
            .collect::<Result<_, _>>()
            .expect("range");
        assert_eq!(all.len() as u64, size);
        for (seq, got) in all.into_iter().enumerate() {
            assert_eq!(got, entry(seq as u64, body + seq % 5));
        }
        let some: Vec<u64> = files
            .clone()
            .range(size / 3, size / 3 + 3)
            .map(|e| e.expect("read").seq)
            .collect();
        assert_eq!(some, vec![size / 3, size / 3 + 1, size / 3 + 2]);
    }

    #[test]
    fn appends_read_back_across_read_aheads_and_after_reopen() {
        let d = dir();
        let (files, mut appender, size) = d.open().expect("open");
        assert_eq!(size, 0);
        assert_eq!(files.clone().range(0, 0).count(), 0);
        // 2,500 small records: three offset read-aheads.
        d.append(&mut appender, 0, 1000, 40);
        d.append(&mut appender, 1000, 2500, 40);
        check(&files, 2500, 40);
        drop((files, appender));
        let (files, mut appender, size) = d.open().expect("reopen");
        assert_eq!(size, 2500);
        check(&files, 2500, 40);
        assert_eq!(d.file_len(OFFSETS_FILE), 2500 * 8);
        d.append(&mut appender, 2500, 2600, 40);
        check(&files, 2600, 40);

        // Records larger than a read-ahead's byte budget are read one at a time.
        let d = dir();
        let (files, mut appender, _) = d.open().expect("open");
        d.append(&mut appender, 0, 7, 600 * 1024);
        check(&files, 7, 600 * 1024);
    }

    #[test]
    fn an_unacknowledged_tail_is_truncated_at_open() {
        let d = dir();
        let (_, mut appender, _) = d.open().expect("open");
        d.append(&mut appender, 0, 50, 30);
        let (data_len, offsets_len) = (d.file_len(DATA_FILE), d.file_len(OFFSETS_FILE));
        // A group written and synced whose sled commit never happened (the crash came first),
        // then half a record more (torn).
        for seq in 50..60 {
            appender.stage(&entry(seq, 30));
        }
        appender.sync().expect("sync");
        drop(appender);
        let torn = OpenOptions::new()
            .append(true)
            .open(d.tmp.path().join(DATA_FILE))
            .expect("open");
        std::io::Write::write_all(&mut &torn, &[0xab; 17]).expect("torn");
        d.set_len(OFFSETS_FILE, d.file_len(OFFSETS_FILE) + 3);
        let (files, mut appender, size) = d.open().expect("reopen");
        assert_eq!(size, 50);
        assert_eq!(d.file_len(DATA_FILE), data_len);
        assert_eq!(d.file_len(OFFSETS_FILE), offsets_len);
        check(&files, 50, 30);
        // Appends continue right after the last acknowledged record.
        d.append(&mut appender, 50, 80, 30);
        check(&files, 80, 30);
    }

    #[test]
    fn files_shorter_than_the_log_are_corrupt_and_named() {
        let d = dir();
        let (_, mut appender, _) = d.open().expect("open");
        d.append(&mut appender, 0, 20, 30);
        drop(appender);
        let len = d.file_len(DATA_FILE);
        d.set_len(DATA_FILE, len - 1);
        let err = d.open().err().expect("short records file");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(err.to_string().contains(DATA_FILE), "{err}");
        assert!(err.to_string().contains("restore"), "{err}");
        d.set_len(DATA_FILE, len);
        d.set_len(OFFSETS_FILE, 19 * 8 + 5);
        let err = d.open().err().expect("short offsets file");
        assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
        assert!(
            err.to_string().contains(OFFSETS_FILE) && err.to_string().contains("holds 19"),
            "{err}"
        );
        // Nothing was truncated by the refused opens.
        assert_eq!(d.file_len(DATA_FILE), len);
    }

    #[test]
    fn damaged_offsets_and_holes_are_reported_not_followed() {
        let d = dir();
        let (files, mut appender, _) = d.open().expect("open");
        d.append(&mut appender, 0, 3, 30);
        appender.write_gap(2).expect("gap");
        d.append(&mut appender, 5, 6, 30);
        let hole = files.read(3).expect_err("no record");
        assert!(hole.to_string().contains("entry 3"), "{hole}");
        assert_eq!(files.read(5).expect("read").seq, 5);
        // An offset pointing far beyond any record a hub accepts.
        files
            .offsets
            .write_all_at(&u64::MAX.to_be_bytes(), 8)
            .expect("damage");
        let err = files.read(1).expect_err("damaged offset");
        assert!(err.to_string().contains(OFFSETS_FILE), "{err}");
        let errors: Vec<_> = files.clone().range(0, 6).collect();
        assert_eq!(errors.len(), 1, "a range stops at the damage");
        assert!(errors[0].is_err());
    }

    fn legacy_key(seq: u64) -> [u8; 9] {
        let mut k = [LEGACY_ENTRY; 9];
        k[1..].copy_from_slice(&seq.to_be_bytes());
        k
    }

    /// A directory of the earlier layout: records as sled keys, no log size, no files.
    fn legacy(n: u64) -> Dir {
        let d = dir();
        for seq in 0..n {
            d.log
                .insert(
                    legacy_key(seq),
                    entry(seq, 30 + seq as usize % 5).encode_to_vec(),
                )
                .expect("insert");
        }
        d.db.flush().expect("flush");
        d
    }

    #[test]
    fn a_store_of_the_earlier_layout_is_converted_once() {
        let d = legacy(3000);
        assert_eq!(size_before_open(&d.log).expect("size"), 3000);
        let (files, _, size) = d.open().expect("converts");
        assert_eq!(size, 3000);
        check(&files, 3000, 30);
        assert_eq!(d.log.scan_prefix([LEGACY_ENTRY]).count(), 0);
        assert_eq!(size_before_open(&d.log).expect("size"), 3000);
        drop(files);
        let (files, _, size) = d.open().expect("reopen");
        assert_eq!(size, 3000);
        check(&files, 3000, 30);
    }

    #[test]
    fn a_conversion_interrupted_by_a_crash_completes_at_the_next_open() {
        // Crash while appending (no size in sled yet): half-written files are rewritten.
        let d = legacy(500);
        std::fs::write(d.tmp.path().join(DATA_FILE), vec![0xee; 4000]).expect("write");
        std::fs::write(d.tmp.path().join(OFFSETS_FILE), vec![0x11; 801]).expect("write");
        let (files, _, size) = d.open().expect("converts");
        assert_eq!(size, 500);
        check(&files, 500, 30);
        drop(files);

        // Crash while removing the legacy keys (size committed, keys left): the removal
        // finishes and the files answer, not the keys.
        for seq in 0..10 {
            d.log
                .insert(legacy_key(seq), &b"stale"[..])
                .expect("insert");
        }
        let (files, _, size) = d.open().expect("finishes");
        assert_eq!(size, 500);
        check(&files, 500, 30);
        assert_eq!(d.log.scan_prefix([LEGACY_ENTRY]).count(), 0);

        // A gap or an undecodable record in the legacy keys is reported, nothing committed.
        let d = legacy(20);
        d.log.remove(legacy_key(7)).expect("remove");
        let err = d.open().err().expect("gap");
        assert!(err.to_string().contains("entry 7"), "{err}");
        assert_eq!(log_size(&d.log).expect("size"), None);
        let d = legacy(20);
        d.log
            .insert(legacy_key(4), &b"\xff\xff not a record"[..])
            .expect("insert");
        let err = d.open().err().expect("undecodable");
        assert!(err.to_string().contains("entry 4"), "{err}");
        assert_eq!(log_size(&d.log).expect("size"), None);
    }
}
