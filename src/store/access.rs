//! The access log: who synced or matched how much and when, in the sled tree `access`, for
//! admins and auditors. A record holds the member, the call, its start and end, and counts
//! (entries and bytes streamed, queries and hits), never what was asked: no query hash and no
//! filter value is written, since which member holds which hashes is itself sensitive.
//!
//! Key = start time (8 bytes, big-endian milliseconds) then a sequence number from sled's
//! `generate_id` (8 bytes, unique across restarts), so records iterate in time order. Values
//! are JSON. Records are written without their own flush: sled's background flush makes them
//! durable within 500 ms (a crash may lose the last half second of records, never an entry).
//!
//! Retention is bounded twice ([`AccessRetention`]): records older than `max_age` and the
//! oldest beyond `max_records` are removed, at start-up and after every
//! [`PRUNE_EVERY`] records.

use super::StoreError;
use crate::membership::MemberId;
use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Records written between two pruning passes.
pub const PRUNE_EVERY: u64 = 256;
/// Most records one [`AccessLog::list`] call returns.
pub const MAX_ACCESS_PAGE: usize = 1000;

/// How long access records are kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccessRetention {
    /// Records older than this are removed (default 90 days).
    pub max_age: Duration,
    /// At most this many records are kept, the oldest removed first (default 1,000,000,
    /// about 200 MB).
    pub max_records: u64,
}

impl Default for AccessRetention {
    fn default() -> Self {
        AccessRetention {
            max_age: Duration::from_secs(90 * 24 * 3600),
            max_records: 1_000_000,
        }
    }
}

/// The calls the access log records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessCall {
    /// `Hub.Sync`: `entries` and `bytes` streamed.
    Sync,
    /// `Hub.Match`: `queries` asked and `hits` answered.
    Match,
    /// A TAXII 2.1 request for a collection's objects, manifest or versions (docs/PROTOCOL.md
    /// §8): `entries` objects answered in `bytes` of JSON.
    Taxii,
}

impl AccessCall {
    /// The RPC's name.
    pub fn name(self) -> &'static str {
        match self {
            AccessCall::Sync => "Sync",
            AccessCall::Match => "Match",
            AccessCall::Taxii => "Taxii",
        }
    }

    fn parse(name: &str) -> Option<AccessCall> {
        [AccessCall::Sync, AccessCall::Match, AccessCall::Taxii]
            .into_iter()
            .find(|c| c.name() == name)
    }
}

/// One call by one member: counts only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessRecord {
    /// When the call began, ms since the Unix epoch.
    pub started_at_ms: i64,
    /// When it ended (the last message sent, or the stream closed).
    pub ended_at_ms: i64,
    /// Who called.
    pub member: MemberId,
    /// Which call.
    pub call: AccessCall,
    /// Log entries streamed (Sync), objects answered (Taxii).
    pub entries: u64,
    /// Bytes of messages streamed (Sync) or answered (Match, Taxii).
    pub bytes: u64,
    /// Queries asked (Match).
    pub queries: u64,
    /// Matches answered (Match).
    pub hits: u64,
}

/// The stored (JSON) form of an [`AccessRecord`].
#[derive(Serialize, Deserialize)]
struct Stored {
    started_at_ms: i64,
    ended_at_ms: i64,
    member: String,
    call: String,
    entries: u64,
    bytes: u64,
    queries: u64,
    hits: u64,
}

impl Stored {
    fn of(r: &AccessRecord) -> Stored {
        Stored {
            started_at_ms: r.started_at_ms,
            ended_at_ms: r.ended_at_ms,
            member: r.member.to_string(),
            call: r.call.name().to_owned(),
            entries: r.entries,
            bytes: r.bytes,
            queries: r.queries,
            hits: r.hits,
        }
    }

    fn decode(key: &[u8], value: &[u8]) -> Result<AccessRecord, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: format!("access record {}", hex::encode(key)),
            reason,
        };
        let s: Stored = serde_json::from_slice(value).map_err(|e| corrupt(e.to_string()))?;
        Ok(AccessRecord {
            started_at_ms: s.started_at_ms,
            ended_at_ms: s.ended_at_ms,
            member: MemberId::parse(&s.member).map_err(|e| corrupt(e.to_string()))?,
            call: AccessCall::parse(&s.call)
                .ok_or_else(|| corrupt(format!("unknown call {:?}", s.call)))?,
            entries: s.entries,
            bytes: s.bytes,
            queries: s.queries,
            hits: s.hits,
        })
    }
}

/// A page of records and where the next one starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessPage {
    /// Oldest first.
    pub records: Vec<AccessRecord>,
    /// Pass as `after` for the next page; `None` when this was the last.
    pub next: Option<Vec<u8>>,
}

/// The access log tree and its retention.
pub struct AccessLog {
    db: sled::Db,
    tree: sled::Tree,
    retention: Mutex<AccessRetention>,
    /// Records in the tree (kept alongside: sled counts by scanning).
    len: AtomicU64,
    written: AtomicU64,
}

impl AccessLog {
    pub(super) fn open(db: &sled::Db) -> Result<AccessLog, StoreError> {
        let tree = db.open_tree("access")?;
        let len = tree.len() as u64;
        let log = AccessLog {
            db: db.clone(),
            tree,
            retention: Mutex::new(AccessRetention::default()),
            len: AtomicU64::new(len),
            written: AtomicU64::new(0),
        };
        log.prune(super::now_ms())?;
        Ok(log)
    }

    /// Sets how long records are kept, and prunes at once.
    pub fn set_retention(&self, retention: AccessRetention) -> Result<(), StoreError> {
        if let Ok(mut r) = self.retention.lock() {
            *r = retention;
        }
        self.prune(super::now_ms())
    }

    /// The retention in force.
    pub fn retention(&self) -> AccessRetention {
        self.retention.lock().map(|r| *r).unwrap_or_default()
    }

    /// Records one call (durable within sled's flush interval).
    pub fn record(&self, record: &AccessRecord) -> Result<(), StoreError> {
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&(record.started_at_ms.max(0) as u64).to_be_bytes());
        key[8..].copy_from_slice(&self.db.generate_id()?.to_be_bytes());
        let value = serde_json::to_vec(&Stored::of(record)).map_err(|e| StoreError::Corrupt {
            key: "access record".into(),
            reason: e.to_string(),
        })?;
        self.tree.insert(key, value)?;
        self.len.fetch_add(1, Ordering::Relaxed);
        if self.written.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune(super::now_ms())?;
        }
        Ok(())
    }

    /// Records that began in `from_ms..to_ms`, oldest first, at most `limit`
    /// (≤ [`MAX_ACCESS_PAGE`]), of `member` only if given, continuing after the key `after`
    /// from a previous page.
    pub fn list(
        &self,
        from_ms: i64,
        to_ms: i64,
        member: Option<&MemberId>,
        limit: usize,
        after: Option<&[u8]>,
    ) -> Result<AccessPage, StoreError> {
        let limit = limit.clamp(1, MAX_ACCESS_PAGE);
        let start = time_key(from_ms);
        let end = time_key(to_ms);
        let mut range = match after {
            Some(after) if after >= &start[..] => {
                let mut next = after.to_vec();
                next.push(0);
                self.tree.range(next..end.to_vec())
            }
            _ => self.tree.range(start.to_vec()..end.to_vec()),
        };
        let mut records = Vec::new();
        let mut last = None;
        for kv in range.by_ref() {
            let (key, value) = kv?;
            let record = Stored::decode(&key, &value)?;
            last = Some(key.to_vec());
            if member.is_some_and(|m| *m != record.member) {
                continue;
            }
            records.push(record);
            if records.len() == limit {
                break;
            }
        }
        let more = records.len() == limit && range.next().is_some();
        Ok(AccessPage {
            records,
            next: if more { last } else { None },
        })
    }

    /// Number of records kept.
    pub fn len(&self) -> u64 {
        self.len.load(Ordering::Relaxed)
    }

    /// Whether no record is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes what the retention no longer keeps.
    fn prune(&self, now_ms: i64) -> Result<(), StoreError> {
        let retention = self.retention();
        let cutoff = now_ms.saturating_sub(retention.max_age.as_millis() as i64);
        let mut excess = self.len().saturating_sub(retention.max_records);
        for key in self.tree.range(..time_key(cutoff).to_vec()).keys() {
            self.remove(&key?)?;
            excess = excess.saturating_sub(1);
        }
        while excess > 0 {
            let Some((key, _)) = self.tree.first()? else {
                break;
            };
            self.remove(&key)?;
            excess -= 1;
        }
        Ok(())
    }

    fn remove(&self, key: &[u8]) -> Result<(), StoreError> {
        if self.tree.remove(key)?.is_some() {
            self.len.fetch_sub(1, Ordering::Relaxed);
        }
        Ok(())
    }
}

fn time_key(ms: i64) -> [u8; 8] {
    (ms.max(0) as u64).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(member: &str, at: i64) -> AccessRecord {
        AccessRecord {
            started_at_ms: at,
            ended_at_ms: at + 5,
            member: MemberId::parse(member).expect("id"),
            call: AccessCall::Match,
            entries: 0,
            bytes: 10,
            queries: 3,
            hits: 1,
        }
    }

    fn open() -> (tempfile::TempDir, AccessLog) {
        let dir = tempfile::tempdir().expect("tmp");
        let db = sled::Config::new()
            .path(dir.path())
            .temporary(true)
            .open()
            .expect("db");
        let log = AccessLog::open(&db).expect("open");
        (dir, log)
    }

    #[test]
    fn pages_through_a_time_range_and_filters_by_member() {
        let (_dir, log) = open();
        let now = super::super::now_ms();
        for i in 0..5 {
            log.record(&record("acme", now + i)).expect("record");
            log.record(&record("globex", now + i)).expect("record");
        }
        let first = log.list(now + 1, now + 4, None, 4, None).expect("list");
        assert_eq!(first.records.len(), 4);
        assert_eq!(first.records[0].started_at_ms, now + 1);
        let second = log
            .list(now + 1, now + 4, None, 4, first.next.as_deref())
            .expect("list");
        assert_eq!(second.records.len(), 2);
        assert_eq!(second.records[1].started_at_ms, now + 3);
        assert_eq!(second.next, None);
        let acme = MemberId::parse("acme").expect("id");
        let only = log.list(0, i64::MAX, Some(&acme), 100, None).expect("list");
        assert_eq!(only.records.len(), 5);
        assert!(only.records.iter().all(|r| r.member == acme));
    }

    #[test]
    fn retention_removes_old_and_excess_records() {
        let (_dir, log) = open();
        let now = super::super::now_ms();
        let day = 24 * 3600 * 1000;
        log.record(&record("acme", now - 100 * day))
            .expect("record");
        for i in 0..10 {
            log.record(&record("acme", now + i)).expect("record");
        }
        log.set_retention(AccessRetention {
            max_age: Duration::from_secs(90 * 24 * 3600),
            max_records: 4,
        })
        .expect("retention");
        assert_eq!(log.len(), 4);
        let kept = log.list(0, i64::MAX, None, 100, None).expect("list");
        let times: Vec<i64> = kept.records.iter().map(|r| r.started_at_ms - now).collect();
        assert_eq!(times, vec![6, 7, 8, 9]);
    }
}
