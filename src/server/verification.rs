//! Where `Submit` and `SubmitBatch` check statements: a fixed pool of verification threads
//! (one per core), off the async workers and the blocking pool. Statements are decoded and
//! their signatures verified in parallel (a batch is shared out over every thread) while the
//! store's writer commits earlier ones, so verification and group commit overlap.
//!
//! Bounded: the pool runs one job per call and the request gate caps the calls being handled
//! (`Limits::max_calls_in_flight`, their bytes by `max_request_bytes_in_flight`), so at most
//! that many jobs wait; a job holds only its call's own request. A fixed pool instead of
//! `spawn_blocking` keeps a flood of small statements from starting hundreds of threads that
//! compete for the same cores.
//!
//! One small item alone (a single `Submit` of at most [`INLINE_MAX_BYTES`], e.g. a single-hash
//! statement) is checked on the calling async worker instead: one `verify_strict` (~36 µs) is
//! less than the two thread hops to the pool and back cost a unary call on two cores (measured
//! in docs/PERFORMANCE.md, "Single `Submit` calls without the hops"). Same check, same panic
//! handling; still bounded by the request gate, and no worker is held longer than one small
//! statement's check.
//!
//! Metric: `coalition_verification_queue_seconds` (histogram): how long a job waited for a
//! verification thread (inline checks do not wait and are not recorded).

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;
use tonic::Status;

/// An item alone whose size (as the caller measures it: an envelope's encoded bytes) is at
/// most this is checked on the calling thread (see the module documentation). A single-hash
/// statement is ~300 bytes; a statement this size decodes in a few µs beside its signature
/// check.
pub const INLINE_MAX_BYTES: usize = 4096;

/// The verification threads. Cheap to clone; clones share the threads.
#[derive(Clone)]
pub struct Verifier {
    pool: Arc<rayon::ThreadPool>,
}

impl Verifier {
    /// A pool of `threads` verification threads (at least one).
    pub fn new(threads: usize) -> Result<Verifier, std::io::Error> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("verify-{i}"))
            .build()
            .map_err(std::io::Error::other)?;
        Ok(Verifier {
            pool: Arc::new(pool),
        })
    }

    /// One thread per core the process may use.
    pub fn per_core() -> Result<Verifier, std::io::Error> {
        Verifier::new(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Runs `check` on every item, in parallel over the pool's threads; the results keep the
    /// items' order. One item alone of at most [`INLINE_MAX_BYTES`] (by `size`) is checked
    /// on the calling thread instead, the same way.
    pub async fn check_each<I, T, F>(
        &self,
        items: Vec<I>,
        size: fn(&I) -> usize,
        check: F,
    ) -> Result<Vec<T>, Status>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(I) -> T + Send + Sync + 'static,
    {
        use rayon::prelude::*;
        if let [item] = items.as_slice()
            && size(item) <= INLINE_MAX_BYTES
        {
            return caught(std::panic::catch_unwind(AssertUnwindSafe(move || {
                items.into_iter().map(check).collect()
            })));
        }
        self.run(move || {
            if items.len() == 1 {
                items.into_iter().map(check).collect()
            } else {
                items.into_par_iter().map(check).collect()
            }
        })
        .await
    }

    /// Runs `job` on a verification thread and waits (asynchronously) for its result.
    async fn run<T, F>(&self, job: F) -> Result<T, Status>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let queued = Instant::now();
        self.pool.spawn(move || {
            metrics::histogram!("coalition_verification_queue_seconds")
                .record(queued.elapsed().as_secs_f64());
            // A panic must not reach rayon's handler (which aborts the process): the call
            // fails alone.
            let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(job)));
        });
        match rx.await {
            Ok(outcome) => caught(outcome),
            Err(_) => Err(Status::internal("verification task failed: it was dropped")),
        }
    }
}

/// A check's result, or INTERNAL if it panicked (the call fails alone).
fn caught<T>(outcome: std::thread::Result<T>) -> Result<T, Status> {
    outcome.map_err(|_| Status::internal("verification task failed: it panicked"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every test item weighs what it says.
    fn weight(i: &u64) -> usize {
        *i as usize
    }

    /// The name of the thread a check ran on.
    fn thread_name(_: u64) -> Option<String> {
        std::thread::current().name().map(str::to_owned)
    }

    #[tokio::test]
    async fn results_keep_the_order_of_the_items() {
        let verifier = Verifier::new(2).expect("pool");
        let items: Vec<u64> = (0..1000).collect();
        let out = verifier
            .check_each(items, weight, |i| i * 2)
            .await
            .expect("ran");
        assert_eq!(out, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_panicking_check_fails_its_call_and_the_pool_goes_on() {
        let verifier = Verifier::new(1).expect("pool");
        let failed = verifier
            .check_each(vec![1, 2], weight, |i| {
                if i == 2 {
                    panic!("boom");
                }
                i
            })
            .await
            .expect_err("a panic is an error");
        assert_eq!(failed.code(), tonic::Code::Internal);
        let ok = verifier
            .check_each(vec![3], weight, |i| i + 1)
            .await
            .expect("ran");
        assert_eq!(ok, vec![4]);
    }

    #[tokio::test]
    async fn one_small_item_is_checked_on_the_calling_thread_a_larger_one_on_the_pool() {
        let verifier = Verifier::new(1).expect("pool");
        let caller = std::thread::current().name().map(str::to_owned);
        let small = INLINE_MAX_BYTES as u64;
        let inline = verifier
            .check_each(vec![small], weight, thread_name)
            .await
            .expect("ran");
        assert_eq!(inline, vec![caller]);
        let pooled = verifier
            .check_each(vec![small + 1], weight, thread_name)
            .await
            .expect("ran");
        assert_eq!(pooled, vec![Some("verify-0".to_owned())]);
        // Two small items are shared out over the pool.
        let batch = verifier
            .check_each(vec![1, 2], weight, thread_name)
            .await
            .expect("ran");
        assert_eq!(batch, vec![Some("verify-0".to_owned()); 2]);
    }

    #[tokio::test]
    async fn a_panicking_inline_check_fails_its_call_alone() {
        let verifier = Verifier::new(1).expect("pool");
        let failed = verifier
            .check_each(vec![1], weight, |_| -> u64 { panic!("boom") })
            .await
            .expect_err("a panic is an error");
        assert_eq!(failed.code(), tonic::Code::Internal);
        assert_eq!(
            verifier
                .check_each(vec![1], weight, |i| i + 1)
                .await
                .expect("ran"),
            vec![2]
        );
    }
}
