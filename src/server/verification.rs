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
//! Metric: `coalition_verification_queue_seconds` (histogram): how long a job waited for a
//! verification thread.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;
use tonic::Status;

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
    /// items' order.
    pub async fn check_each<I, T, F>(&self, items: Vec<I>, check: F) -> Result<Vec<T>, Status>
    where
        I: Send + 'static,
        T: Send + 'static,
        F: Fn(I) -> T + Send + Sync + 'static,
    {
        use rayon::prelude::*;
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
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(Status::internal("verification task failed: it panicked")),
            Err(_) => Err(Status::internal("verification task failed: it was dropped")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn results_keep_the_order_of_the_items() {
        let verifier = Verifier::new(2).expect("pool");
        let items: Vec<u64> = (0..1000).collect();
        let out = verifier.check_each(items, |i| i * 2).await.expect("ran");
        assert_eq!(out, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn a_panicking_check_fails_its_call_and_the_pool_goes_on() {
        let verifier = Verifier::new(1).expect("pool");
        let failed = verifier
            .check_each(vec![1u8, 2], |i| {
                if i == 2 {
                    panic!("boom");
                }
                i
            })
            .await
            .expect_err("a panic is an error");
        assert_eq!(failed.code(), tonic::Code::Internal);
        let ok = verifier
            .check_each(vec![3u8], |i| i + 1)
            .await
            .expect("ran");
        assert_eq!(ok, vec![4]);
    }
}
