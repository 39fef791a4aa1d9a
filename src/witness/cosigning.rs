//! The witness itself: its key, the logs it serves and its state, answering one
//! `add-checkpoint` at a time so that checking the old size and recording the new checkpoint
//! are one atomic step (c2sp.org/tlog-witness: otherwise two concurrent requests could roll the
//! recorded size back).

use std::sync::Mutex;

use thiserror::Error;

use super::store::{WitnessStore, WitnessStoreError};
use super::{AddCheckpoint, Latest, Refusal, TrustedLogs, decide};
use crate::log::cosignature::{Cosigner, CosignerKey};

/// A witness ready to answer requests.
pub struct Witness {
    logs: TrustedLogs,
    cosigner: Cosigner,
    store: WitnessStore,
    /// Held from reading the latest size to recording the new one.
    one_at_a_time: Mutex<()>,
}

/// Why a request got no cosignature.
#[derive(Debug, Error)]
pub enum WitnessError {
    /// The spec's refusals (4xx).
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The witness could not read or record its state (500; nothing was cosigned).
    #[error(transparent)]
    Store(#[from] WitnessStoreError),
}

impl Witness {
    /// A witness with `cosigner`'s key serving `logs`, its state in `store`.
    pub fn new(cosigner: Cosigner, logs: TrustedLogs, store: WitnessStore) -> Witness {
        Witness {
            logs,
            cosigner,
            store,
            one_at_a_time: Mutex::new(()),
        }
    }

    /// The witness's public key.
    pub fn key(&self) -> &CosignerKey {
        self.cosigner.public()
    }

    /// The logs served.
    pub fn logs(&self) -> &TrustedLogs {
        &self.logs
    }

    /// Checks a request body and, if the checkpoint is consistent with the latest one
    /// cosigned for its log, records it durably and returns the cosignature line. `now` is
    /// the cosignature's timestamp (POSIX seconds). Blocking (a disk flush): call it off the
    /// async workers.
    pub fn add_checkpoint(&self, body: &[u8], now: u64) -> Result<String, WitnessError> {
        let request = AddCheckpoint::parse(body)?;
        let _one = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut stored = Ok(());
        let accepted = decide(&self.logs, &request, |origin| {
            self.store.latest(origin).unwrap_or_else(|e| {
                stored = Err(e);
                None
            })
        });
        stored?;
        let accepted = accepted?;
        let line = self.cosigner.cosign(&accepted.text, now);
        let latest = Latest {
            size: accepted.checkpoint.size.0,
            root: accepted.checkpoint.root,
            note: format!("{}{line}", accepted.signed_by_log),
        };
        self.store.record(&accepted.checkpoint.origin, &latest)?;
        Ok(line)
    }

    /// The latest cosigned checkpoint (with the log's and this witness's signatures) of the
    /// log whose origin hashes to `origin_hash`, if any.
    pub fn latest_note(&self, origin_hash: &str) -> Result<Option<String>, WitnessStoreError> {
        let Some(origin) = self.logs.origin_by_hash(origin_hash) else {
            return Ok(None);
        };
        Ok(self.store.latest(origin)?.map(|l| l.note))
    }
}
