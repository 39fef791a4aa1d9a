//! The access-log hooks (one line each in `hub.rs` and `taxii.rs`): a Sync stream counted as it
//! is sent and recorded when it ends; a Match recorded with its answer; a TAXII page recorded
//! with its size. Counts only, never a query hash or a filter value (see `store::AccessLog`).
//! Also the matching metrics.

use crate::membership::MemberId;
use crate::pb;
use crate::store::{AccessCall, AccessRecord, Store, now_ms};
use prost::Message;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio_stream::Stream;
use tonic::Status;

fn write(store: &Store, record: AccessRecord) {
    if let Err(e) = store.access().record(&record) {
        tracing::warn!(member = %record.member, call = record.call.name(), "access record not written: {e}");
    }
}

/// A sync stream that counts what it sends to `member` and records it when it ends (also when
/// the client goes away or the hub shuts down). Counted in `coalition_sync_streams_open`
/// meanwhile.
pub fn sync_stream<S>(store: &Store, member: MemberId, inner: S) -> SyncAccess
where
    S: Stream<Item = Result<pb::SyncResponse, Status>> + Send + 'static,
{
    metrics::gauge!("coalition_sync_streams_open").increment(1.0);
    SyncAccess {
        inner: Box::pin(inner),
        store: store.clone(),
        record: AccessRecord {
            started_at_ms: now_ms(),
            ended_at_ms: 0,
            member,
            call: AccessCall::Sync,
            entries: 0,
            bytes: 0,
            queries: 0,
            hits: 0,
        },
    }
}

type BoxedSync = Pin<Box<dyn Stream<Item = Result<pb::SyncResponse, Status>> + Send>>;

/// See [`sync_stream`].
pub struct SyncAccess {
    inner: BoxedSync,
    store: Store,
    record: AccessRecord,
}

impl Stream for SyncAccess {
    type Item = Result<pb::SyncResponse, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.as_mut().poll_next(cx);
        if let Poll::Ready(Some(Ok(msg))) = &polled {
            let bytes = msg.encoded_len() as u64;
            self.record.bytes += bytes;
            metrics::counter!("coalition_sync_bytes_total").increment(bytes);
            if matches!(msg.item, Some(pb::sync_response::Item::Entry(_))) {
                self.record.entries += 1;
                metrics::counter!("coalition_sync_entries_total").increment(1);
            }
        }
        polled
    }
}

impl Drop for SyncAccess {
    fn drop(&mut self) {
        metrics::gauge!("coalition_sync_streams_open").decrement(1.0);
        self.record.ended_at_ms = now_ms();
        write(&self.store, self.record.clone());
    }
}

/// A Match call by an authorized member, recorded with its answer.
pub struct MatchAccess {
    member: MemberId,
    started_at_ms: i64,
}

impl MatchAccess {
    /// The call of `member` (authorized) begins.
    pub fn begin(member: crate::membership::Member) -> MatchAccess {
        MatchAccess {
            member: member.id,
            started_at_ms: now_ms(),
        }
    }

    /// Records the answer's counts (queries, hits, bytes) and returns it.
    pub fn answered(self, store: &Store, response: pb::MatchResponse) -> pb::MatchResponse {
        let queries = response.results.len() as u64;
        let hits: u64 = response
            .results
            .iter()
            .map(|r| r.matches.len() as u64)
            .sum();
        metrics::counter!("coalition_match_queries_total").increment(queries);
        metrics::counter!("coalition_match_hits_total").increment(hits);
        write(
            store,
            AccessRecord {
                started_at_ms: self.started_at_ms,
                ended_at_ms: now_ms(),
                member: self.member,
                call: AccessCall::Match,
                entries: 0,
                bytes: response.encoded_len() as u64,
                queries,
                hits,
            },
        );
        response
    }
}

/// Records a TAXII answer to `member` begun at `started_at_ms`: `objects` objects in `bytes`.
pub fn taxii_answered(
    store: &Store,
    member: MemberId,
    started_at_ms: i64,
    objects: u64,
    bytes: u64,
) {
    write(
        store,
        AccessRecord {
            started_at_ms,
            ended_at_ms: now_ms(),
            member,
            call: AccessCall::Taxii,
            entries: objects,
            bytes,
            queries: 0,
            hits: 0,
        },
    );
}
