//! Per-member quotas from the signed coalition settings: submissions, sync bytes and match
//! calls per minute and per day, refused with RESOURCE_EXHAUSTED and a `retry-after` (seconds).
//!
//! Each limit is a token bucket holding up to the limit, refilled continuously over its period
//! (a limit of 60 per minute refills one every second), so a member may burst up to the limit
//! and then goes at the average rate. A minute and a day bucket are charged together: a charge
//! either fits both or changes neither. Governance statements (genesis, membership, settings)
//! are never counted, whether submitted or synced, and a sync whose filter selects only
//! governance kinds is never refused, so admins can always change membership and settings and
//! every member can always receive them.
//!
//! State is one set of buckets per member that passed authorization (so at most one per
//! registered member), reset when that member's limits change; at most [`MAX_TRACKED`] are
//! held (idle ones are dropped first). Why not the `governor` crate: its quotas are `u32`
//! cells with one quota per limiter, and a day of sync bytes exceeds `u32`.
//!
//! Metric: `coalition_quota_refusals_total{quota="submissions"|"sync_bytes"|"match_queries"}`.

use crate::membership::MemberId;
use crate::settings::QuotaLimits;
use crate::statement::{Header, SyncFilter};
use crate::store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::Status;

/// Most members whose buckets are held at once.
pub const MAX_TRACKED: usize = 65_536;

const MINUTE: Duration = Duration::from_secs(60);
const DAY: Duration = Duration::from_secs(24 * 60 * 60);

/// What a quota counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Counter {
    /// Non-governance statements submitted.
    Submissions,
    /// Bytes of non-governance entries sent by Sync with their body.
    SyncBytes,
    /// Match calls.
    MatchQueries,
}

impl Counter {
    fn index(self) -> usize {
        match self {
            Counter::Submissions => 0,
            Counter::SyncBytes => 1,
            Counter::MatchQueries => 2,
        }
    }

    /// The metric label.
    fn name(self) -> &'static str {
        match self {
            Counter::Submissions => "submissions",
            Counter::SyncBytes => "sync_bytes",
            Counter::MatchQueries => "match_queries",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Counter::Submissions => "statements submitted",
            Counter::SyncBytes => "bytes of entries synced",
            Counter::MatchQueries => "match calls",
        }
    }

    fn limits(self, l: &QuotaLimits) -> [Option<u64>; 2] {
        match self {
            Counter::Submissions => [l.submissions_per_minute, l.submissions_per_day],
            Counter::SyncBytes => [l.sync_bytes_per_minute, l.sync_bytes_per_day],
            Counter::MatchQueries => [l.match_queries_per_minute, l.match_queries_per_day],
        }
    }
}

/// A refused charge: which limit, and when to retry.
#[derive(Clone, Debug, PartialEq)]
pub struct Exceeded {
    /// What was counted.
    pub counter: Counter,
    /// The limit.
    pub limit: u64,
    /// Per minute or per day.
    pub per: &'static str,
    /// When the charge would fit.
    pub retry_after: Duration,
}

impl Exceeded {
    /// RESOURCE_EXHAUSTED naming the limit, with `retry-after` metadata in whole seconds.
    pub fn to_status(&self, member: &MemberId) -> Status {
        let secs = self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0);
        let mut status = Status::resource_exhausted(format!(
            "quota: member '{member}' may have {} {} per {} (coalition settings); retry after {secs} s",
            self.limit,
            self.counter.what(),
            self.per
        ));
        if let Ok(value) = secs.to_string().parse() {
            status.metadata_mut().insert("retry-after", value);
        }
        status
    }
}

/// A token bucket: up to `capacity` tokens, refilled at `capacity` per `period`.
#[derive(Clone, Debug)]
struct Bucket {
    capacity: u64,
    period: Duration,
    tokens: f64,
    updated: Instant,
}

impl Bucket {
    fn new(capacity: u64, period: Duration, now: Instant) -> Self {
        Bucket {
            capacity,
            period,
            tokens: capacity as f64,
            updated: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        let rate = self.capacity as f64 / self.period.as_secs_f64();
        self.tokens = (self.tokens + elapsed * rate).min(self.capacity as f64);
        self.updated = now;
    }

    /// How long until `n` tokens are there (at least one: a charge of 0 asks whether anything
    /// is left; at most the capacity: a charge larger than the bucket waits for a full bucket
    /// and leaves it in debt); zero if they are.
    fn wait(&self, n: u64) -> Duration {
        let need = n.clamp(1, self.capacity) as f64;
        if self.tokens >= need {
            return Duration::ZERO;
        }
        let rate = self.capacity as f64 / self.period.as_secs_f64();
        Duration::from_secs_f64((need - self.tokens) / rate)
    }

    fn is_full(&self) -> bool {
        self.tokens >= self.capacity as f64
    }
}

/// One member's buckets: per counter, minute then day.
#[derive(Clone, Debug)]
struct Buckets {
    limits: QuotaLimits,
    buckets: [[Option<Bucket>; 2]; 3],
}

impl Buckets {
    fn new(limits: QuotaLimits, now: Instant) -> Self {
        let make = |c: Counter| {
            let [m, d] = c.limits(&limits);
            [
                m.map(|n| Bucket::new(n, MINUTE, now)),
                d.map(|n| Bucket::new(n, DAY, now)),
            ]
        };
        Buckets {
            limits,
            buckets: [
                make(Counter::Submissions),
                make(Counter::SyncBytes),
                make(Counter::MatchQueries),
            ],
        }
    }

    /// Charges `n` to both of `counter`'s buckets, or neither.
    fn charge(&mut self, counter: Counter, n: u64, now: Instant) -> Result<(), Exceeded> {
        let pair = &mut self.buckets[counter.index()];
        for (bucket, per) in pair.iter_mut().zip(["minute", "day"]) {
            if let Some(b) = bucket {
                b.refill(now);
                let wait = b.wait(n);
                if !wait.is_zero() {
                    return Err(Exceeded {
                        counter,
                        limit: b.capacity,
                        per,
                        retry_after: wait,
                    });
                }
            }
        }
        for b in pair.iter_mut().flatten() {
            b.tokens -= n as f64;
        }
        Ok(())
    }

    fn is_idle(&self) -> bool {
        self.buckets.iter().flatten().flatten().all(Bucket::is_full)
    }
}

/// The quota state of every member, in memory (limits read from the store's settings).
#[derive(Default)]
pub struct Ledger {
    members: HashMap<MemberId, Buckets>,
}

impl Ledger {
    /// Charges `n` of `counter` to `member` under `limits` at `now`.
    pub fn charge(
        &mut self,
        member: &MemberId,
        limits: QuotaLimits,
        counter: Counter,
        n: u64,
        now: Instant,
    ) -> Result<(), Exceeded> {
        if counter.limits(&limits) == [None, None] {
            return Ok(());
        }
        if !self.members.contains_key(member) && self.members.len() >= MAX_TRACKED {
            for b in self.members.values_mut() {
                b.buckets
                    .iter_mut()
                    .flatten()
                    .flatten()
                    .for_each(|b| b.refill(now));
            }
            self.members.retain(|_, b| !b.is_idle());
            if self.members.len() >= MAX_TRACKED {
                // Every tracked member is mid-burst: the oldest state goes.
                if let Some(k) = self.members.keys().next().cloned() {
                    self.members.remove(&k);
                }
            }
        }
        let buckets = self
            .members
            .entry(member.clone())
            .or_insert_with(|| Buckets::new(limits, now));
        if buckets.limits != limits {
            *buckets = Buckets::new(limits, now);
        }
        buckets.charge(counter, n, now)
    }
}

/// The hub's quota enforcement: cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Quota {
    store: Store,
    ledger: Arc<Mutex<Ledger>>,
}

impl Quota {
    /// Quotas of `store`'s coalition settings.
    pub fn new(store: Store) -> Self {
        Quota {
            store,
            ledger: Arc::new(Mutex::new(Ledger::default())),
        }
    }

    fn charge(&self, member: &MemberId, counter: Counter, n: u64) -> Result<(), Status> {
        let limits = self
            .store
            .registry()
            .coalition()
            .map(|c| c.settings.quotas.limits(member))
            .unwrap_or_default();
        let mut ledger = self
            .ledger
            .lock()
            .map_err(|_| Status::internal("the quota ledger is unavailable"))?;
        ledger
            .charge(member, limits, counter, n, Instant::now())
            .map_err(|e| {
                metrics::counter!("coalition_quota_refusals_total", "quota" => counter.name())
                    .increment(1);
                e.to_status(member)
            })
    }

    /// A verified statement about to be logged: counted to its issuer (the submitter, which
    /// `check_submitter` made sure of) unless it is governance; retractions are counted
    /// (any member makes them).
    pub fn submission(&self, header: &Header) -> Result<(), Status> {
        if header.kind.is_governance() && !header.kind.is_lifecycle() {
            return Ok(());
        }
        self.charge(&header.issuer, Counter::Submissions, 1)
    }

    /// One Match call.
    pub fn match_query(&self, member: &MemberId) -> Result<(), Status> {
        self.charge(member, Counter::MatchQueries, 1)
    }

    /// Whether a sync with `filter` may start: refused only if the member's sync bytes are
    /// used up and the filter selects more than governance kinds.
    pub fn sync_start(&self, member: &MemberId, filter: &SyncFilter) -> Result<(), Status> {
        if filter.only_governance() {
            return Ok(());
        }
        self.charge(member, Counter::SyncBytes, 0)
    }

    /// A TAXII answer (a collection's objects, manifest or versions, docs/PROTOCOL.md §8.1)
    /// of `bytes` about to be sent: counted as sync bytes, as the statements it shows would be
    /// by a Sync (0 asks whether any are left).
    pub fn taxii_answer(&self, member: &MemberId, bytes: u64) -> Result<(), Status> {
        self.charge(member, Counter::SyncBytes, bytes)
    }

    /// An entry sync is about to send: its payload and body bytes are counted if the body
    /// is sent (`with_body`) and it is not governance.
    pub fn sync_entry(
        &self,
        member: &MemberId,
        entry: &crate::store::StoredEntry,
        with_body: bool,
    ) -> Result<(), Status> {
        let governance = entry.header().is_none_or(|h| h.kind.is_governance());
        match (&entry.envelope, with_body && !governance) {
            (Some(e), true) => {
                let bytes = (e.payload.len() + e.body.len()) as u64;
                self.charge(member, Counter::SyncBytes, bytes)
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(per_minute: u64, per_day: u64) -> QuotaLimits {
        QuotaLimits {
            submissions_per_minute: (per_minute > 0).then_some(per_minute),
            submissions_per_day: (per_day > 0).then_some(per_day),
            ..Default::default()
        }
    }

    #[test]
    fn buckets_refuse_then_refill() {
        let mut ledger = Ledger::default();
        let acme = MemberId::parse("acme").expect("id");
        let t0 = Instant::now();
        let l = limits(2, 0);
        let sub = Counter::Submissions;
        assert!(ledger.charge(&acme, l, sub, 1, t0).is_ok());
        assert!(ledger.charge(&acme, l, sub, 1, t0).is_ok());
        let refused = ledger.charge(&acme, l, sub, 1, t0).expect_err("third");
        assert_eq!((refused.limit, refused.per), (2, "minute"));
        assert_eq!(refused.retry_after, Duration::from_secs(30));
        // Half a minute later one token is back.
        let t1 = t0 + Duration::from_secs(30);
        assert!(ledger.charge(&acme, l, sub, 1, t1).is_ok());
        assert!(ledger.charge(&acme, l, sub, 1, t1).is_err());
        // Other counters and other members are not affected.
        assert!(
            ledger
                .charge(&acme, l, Counter::MatchQueries, 1, t1)
                .is_ok()
        );
        let beta = MemberId::parse("beta").expect("id");
        assert!(ledger.charge(&beta, l, sub, 1, t1).is_ok());
    }

    #[test]
    fn a_charge_fits_both_buckets_or_neither() {
        let mut ledger = Ledger::default();
        let acme = MemberId::parse("acme").expect("id");
        let t0 = Instant::now();
        let l = limits(10, 3);
        for _ in 0..3 {
            assert!(ledger.charge(&acme, l, Counter::Submissions, 1, t0).is_ok());
        }
        let refused = ledger
            .charge(&acme, l, Counter::Submissions, 1, t0)
            .expect_err("day");
        assert_eq!((refused.limit, refused.per), (3, "day"));
        assert_eq!(refused.retry_after, Duration::from_secs(8 * 60 * 60));
        // New limits start fresh buckets.
        assert!(
            ledger
                .charge(&acme, limits(10, 4), Counter::Submissions, 1, t0)
                .is_ok()
        );
    }

    #[test]
    fn a_charge_larger_than_the_bucket_waits_for_a_full_one() {
        let mut ledger = Ledger::default();
        let acme = MemberId::parse("acme").expect("id");
        let t0 = Instant::now();
        let l = QuotaLimits {
            sync_bytes_per_minute: Some(100),
            ..Default::default()
        };
        assert!(
            ledger
                .charge(&acme, l, Counter::SyncBytes, 1000, t0)
                .is_ok()
        );
        let refused = ledger
            .charge(&acme, l, Counter::SyncBytes, 1, t0)
            .expect_err("in debt");
        assert!(refused.retry_after > Duration::from_secs(60 * 9));
    }

    #[test]
    fn statuses_say_when_to_retry() {
        let status = Exceeded {
            counter: Counter::MatchQueries,
            limit: 5,
            per: "minute",
            retry_after: Duration::from_millis(11_200),
        }
        .to_status(&MemberId::parse("acme").expect("id"));
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert_eq!(
            status
                .metadata()
                .get("retry-after")
                .map(|v| v.to_str().ok()),
            Some(Some("12"))
        );
        assert!(status.message().contains("5 match calls per minute"));
        assert!(status.message().contains("retry after 12 s"));
    }
}
