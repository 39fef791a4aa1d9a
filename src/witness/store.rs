//! What a witness last cosigned for each log, in sled (`<data>/state`): one key per origin,
//! written and flushed to disk before the witness answers, so a restarted witness never
//! cosigns a checkpoint inconsistent with one it already cosigned (c2sp.org/tlog-witness: "The
//! witness MUST persist the new checkpoint before responding").
//!
//! Record: tree size (8 bytes, big-endian) ‖ root hash (32 bytes) ‖ the cosigned note (UTF-8).

use std::path::Path;

use thiserror::Error;

use super::Latest;
use crate::log::Hash;

/// The witness's state.
pub struct WitnessStore {
    latest: sled::Tree,
    db: sled::Db,
}

/// A storage failure.
#[derive(Debug, Error)]
pub enum WitnessStoreError {
    /// sled failed.
    #[error("witness state: {0}")]
    Sled(#[from] sled::Error),
    /// A stored record cannot be read.
    #[error(
        "witness state: the record of log {origin:?} is damaged ({reason}); restore the state directory from a backup or retire this witness key"
    )]
    Corrupt {
        /// The log.
        origin: String,
        /// What is wrong.
        reason: &'static str,
    },
}

impl WitnessStore {
    /// Opens (or creates) the state under `dir`.
    pub fn open(dir: &Path) -> Result<WitnessStore, WitnessStoreError> {
        let db = sled::Config::new()
            .path(dir.join("state"))
            .cache_capacity(16 * 1024 * 1024)
            .open()?;
        let latest = db.open_tree("latest")?;
        Ok(WitnessStore { latest, db })
    }

    /// What was last cosigned for `origin`.
    pub fn latest(&self, origin: &str) -> Result<Option<Latest>, WitnessStoreError> {
        let Some(raw) = self.latest.get(origin.as_bytes())? else {
            return Ok(None);
        };
        let corrupt = |reason| WitnessStoreError::Corrupt {
            origin: origin.to_owned(),
            reason,
        };
        if raw.len() < 40 {
            return Err(corrupt("shorter than a size and a root"));
        }
        let mut size = [0u8; 8];
        size.copy_from_slice(&raw[..8]);
        let root = Hash::from_slice(&raw[8..40]).ok_or_else(|| corrupt("bad root"))?;
        let note = String::from_utf8(raw[40..].to_vec()).map_err(|_| corrupt("note not UTF-8"))?;
        Ok(Some(Latest {
            size: u64::from_be_bytes(size),
            root,
            note,
        }))
    }

    /// Records what was cosigned for `origin` and flushes it to disk.
    pub fn record(&self, origin: &str, latest: &Latest) -> Result<(), WitnessStoreError> {
        let mut raw = Vec::with_capacity(40 + latest.note.len());
        raw.extend_from_slice(&latest.size.to_be_bytes());
        raw.extend_from_slice(latest.root.as_bytes());
        raw.extend_from_slice(latest.note.as_bytes());
        self.latest.insert(origin.as_bytes(), raw)?;
        self.db.flush()?;
        Ok(())
    }
}
