//! Published checkpoints, durable in the sled tree `checkpoints`: key = tree size (8 bytes,
//! big-endian, so the tree iterates in size order), value = root hash (32 bytes) followed by
//! the signed-note text (UTF-8). Witness cosignatures of a checkpoint live in the tree
//! `cosignatures`: key = tree size (8 bytes, big-endian) then the witness name, value = its
//! signature line; the first line stored per witness and size is kept.
//!
//! A checkpoint is stored only if its root is the store's own Merkle root at its size, sizes
//! only grow, and the first checkpoint stored for a size is kept forever: the hub can never
//! publish two different checkpoints for one size. Readers see a checkpoint only once it is
//! flushed to disk.

use super::{Store, StoreError};
use crate::log::{Hash, SignedCheckpoint};
use std::sync::Mutex;
use tokio::sync::watch;

/// The checkpoint tree and the size of the latest durable checkpoint.
pub(super) struct Checkpoints {
    tree: sled::Tree,
    cosignatures: sled::Tree,
    /// Size of the latest flushed checkpoint; readers never look past it.
    durable: watch::Sender<Option<u64>>,
    /// Serializes writers (check, insert, flush, publish).
    write: Mutex<()>,
}

/// A checkpoint the hub has published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishedCheckpoint {
    /// The tree size it commits to.
    pub size: u64,
    /// The Merkle root at that size.
    pub root: Hash,
    /// The C2SP signed note (checkpoint body, blank line, signature lines).
    pub note: String,
    /// Witness cosignature lines collected for it (each ends with a newline), by witness name.
    pub cosignatures: Vec<String>,
}

impl Checkpoints {
    /// Opens the `checkpoints` tree; the latest checkpoint must not exceed the log size.
    pub(super) fn open(db: &sled::Db, log_size: u64) -> Result<Checkpoints, StoreError> {
        let tree = db.open_tree("checkpoints")?;
        let latest = match tree.last()? {
            Some((key, _)) => Some(decode_size(&key)?),
            None => None,
        };
        if let Some(size) = latest
            && size > log_size
        {
            return Err(StoreError::Corrupt {
                key: format!("checkpoint {size}"),
                reason: format!(
                    "a checkpoint was published for {size} entries but the log holds only {log_size}"
                ),
            });
        }
        let (durable, _) = watch::channel(latest);
        Ok(Checkpoints {
            tree,
            cosignatures: db.open_tree("cosignatures")?,
            durable,
            write: Mutex::new(()),
        })
    }

    fn latest_size(&self) -> Option<u64> {
        *self.durable.borrow()
    }
}

impl Store {
    /// Stores a signed checkpoint durably (flushed before it becomes visible to readers) and
    /// returns what is published for its size.
    ///
    /// Idempotent: if a checkpoint for this size exists, it is kept and returned. Refused
    /// (`CheckpointRejected`) if the size is beyond the log, below the latest checkpoint, or
    /// the root is not this store's root at that size.
    pub fn put_checkpoint(
        &self,
        signed: &SignedCheckpoint,
    ) -> Result<PublishedCheckpoint, StoreError> {
        let cps = &self.checkpoints;
        let _guard = cps
            .write
            .lock()
            .map_err(|_| StoreError::Unavailable("a checkpoint writer panicked".into()))?;
        let size = signed.size().0;
        let reject = |reason: String| StoreError::CheckpointRejected { size, reason };
        if let Some(latest) = cps.latest_size() {
            if size == latest {
                return self.checkpoint(size)?.ok_or_else(|| StoreError::Corrupt {
                    key: format!("checkpoint {size}"),
                    reason: "published but missing".into(),
                });
            }
            if size < latest {
                return Err(reject(format!(
                    "a checkpoint for {latest} entries is already published; checkpoints only grow"
                )));
            }
        }
        let log_size = self.log_size();
        if size > log_size {
            return Err(reject(format!(
                "the durable log holds only {log_size} entries"
            )));
        }
        let root = self.root(size)?;
        if root != signed.root() {
            return Err(reject(format!(
                "its root {} is not the log's root {root} at that size",
                signed.root()
            )));
        }
        let mut value = Vec::with_capacity(Hash::LEN + signed.note().len());
        value.extend_from_slice(root.as_bytes());
        value.extend_from_slice(signed.note().as_bytes());
        cps.tree.insert(size.to_be_bytes(), value)?;
        self.db.flush()?;
        cps.durable.send_replace(Some(size));
        Ok(PublishedCheckpoint {
            size,
            root,
            note: signed.note().to_owned(),
            cosignatures: Vec::new(),
        })
    }

    /// Stores witness cosignature lines `(witness name, line)` for the published checkpoint of
    /// `size` durably (flushed before it returns); a witness's first line per size is kept.
    /// The caller verified each against the witness's key.
    pub fn put_cosignatures(
        &self,
        size: u64,
        lines: &[(String, String)],
    ) -> Result<(), StoreError> {
        if lines.is_empty() {
            return Ok(());
        }
        for (name, line) in lines {
            let mut key = size.to_be_bytes().to_vec();
            key.extend_from_slice(name.as_bytes());
            let _ = self.checkpoints.cosignatures.compare_and_swap(
                key,
                None as Option<&[u8]>,
                Some(line.as_bytes()),
            )?;
        }
        self.db.flush()?;
        Ok(())
    }

    /// The cosignature lines stored for the checkpoint of `size`, by witness name.
    pub fn cosignatures_of(&self, size: u64) -> Result<Vec<String>, StoreError> {
        self.checkpoints
            .cosignatures
            .scan_prefix(size.to_be_bytes())
            .values()
            .map(|v| {
                let v = v?;
                String::from_utf8(v.to_vec()).map_err(|_| StoreError::Corrupt {
                    key: format!("cosignature of checkpoint {size}"),
                    reason: "not UTF-8".into(),
                })
            })
            .collect()
    }

    /// The latest published checkpoint, if any.
    pub fn latest_checkpoint(&self) -> Result<Option<PublishedCheckpoint>, StoreError> {
        match self.checkpoints.latest_size() {
            Some(size) => self.checkpoint(size),
            None => Ok(None),
        }
    }

    /// The checkpoint published for exactly `size` entries, if any.
    pub fn checkpoint(&self, size: u64) -> Result<Option<PublishedCheckpoint>, StoreError> {
        if self
            .checkpoints
            .latest_size()
            .is_none_or(|latest| size > latest)
        {
            return Ok(None);
        }
        let Some(value) = self.checkpoints.tree.get(size.to_be_bytes())? else {
            return Ok(None);
        };
        let mut cp = decode_checkpoint(size, &value)?;
        cp.cosignatures = self.cosignatures_of(size)?;
        Ok(Some(cp))
    }

    /// Published checkpoints with `size >= from_size`, in size order, at most `limit`.
    pub fn checkpoints_from(
        &self,
        from_size: u64,
        limit: usize,
    ) -> Result<Vec<PublishedCheckpoint>, StoreError> {
        let Some(latest) = self.checkpoints.latest_size() else {
            return Ok(Vec::new());
        };
        if from_size > latest {
            return Ok(Vec::new());
        }
        self.checkpoints
            .tree
            .range(from_size.to_be_bytes()..=latest.to_be_bytes())
            .take(limit)
            .map(|kv| self.published(kv?))
            .collect()
    }

    /// Published checkpoints with `size <= to_size`, largest first, at most `limit`.
    pub fn checkpoints_down_from(
        &self,
        to_size: u64,
        limit: usize,
    ) -> Result<Vec<PublishedCheckpoint>, StoreError> {
        self.checkpoints
            .tree
            .range(..=to_size.to_be_bytes())
            .rev()
            .take(limit)
            .map(|kv| self.published(kv?))
            .collect()
    }

    /// A stored checkpoint record (size key, note value) with its cosignatures.
    fn published(
        &self,
        (key, value): (sled::IVec, sled::IVec),
    ) -> Result<PublishedCheckpoint, StoreError> {
        let size = decode_size(&key)?;
        let mut cp = decode_checkpoint(size, &value)?;
        cp.cosignatures = self.cosignatures_of(size)?;
        Ok(cp)
    }

    /// A receiver of the latest durable checkpoint's size (`None` before the first).
    pub fn watch_checkpoint(&self) -> watch::Receiver<Option<u64>> {
        self.checkpoints.durable.subscribe()
    }
}

fn decode_size(key: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = key.try_into().map_err(|_| StoreError::Corrupt {
        key: format!("checkpoint key {}", hex::encode(key)),
        reason: "a checkpoint key is an 8-byte tree size".into(),
    })?;
    Ok(u64::from_be_bytes(arr))
}

fn decode_checkpoint(size: u64, value: &[u8]) -> Result<PublishedCheckpoint, StoreError> {
    let corrupt = |reason: &str| StoreError::Corrupt {
        key: format!("checkpoint {size}"),
        reason: reason.into(),
    };
    let (root, note) = value
        .split_at_checked(Hash::LEN)
        .ok_or_else(|| corrupt("shorter than a root hash"))?;
    let root = Hash::from_slice(root).ok_or_else(|| corrupt("bad root hash"))?;
    let note = std::str::from_utf8(note).map_err(|_| corrupt("the note is not UTF-8"))?;
    Ok(PublishedCheckpoint {
        size,
        root,
        note: note.to_owned(),
        cosignatures: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{CheckpointSigner, TreeSize};
    use crate::store::{StoreConfig, write_synthetic_tree};
    use ed25519_dalek::SigningKey;

    fn signer(seed: u8) -> CheckpointSigner {
        CheckpointSigner::new("coalition.example/hub", SigningKey::from_bytes(&[seed; 32]))
            .expect("signer")
    }

    #[test]
    fn checkpoints_are_checked_kept_and_survive_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        write_synthetic_tree(dir.path(), 20, &StoreConfig::default()).expect("tree");
        let store = Store::open(dir.path(), &StoreConfig::default()).expect("open");
        let s = signer(1);
        let sign = |signer: &CheckpointSigner, n: u64| {
            signer
                .sign(TreeSize(n), store.root(n).expect("root"))
                .expect("sign")
        };
        assert_eq!(store.latest_checkpoint().expect("read"), None);
        let ten = store.put_checkpoint(&sign(&s, 10)).expect("put");
        assert_eq!((ten.size, ten.root), (10, store.root(10).expect("root")));
        // The first checkpoint of a size is kept, even if signed again by another key.
        assert_eq!(
            store.put_checkpoint(&sign(&signer(2), 10)).expect("put"),
            ten
        );
        // Refused: a root that is not the log's, a size beyond the log, a smaller size.
        let forged = s.sign(TreeSize(15), Hash([1; 32])).expect("sign");
        let refused = |r: Result<PublishedCheckpoint, StoreError>| {
            matches!(r, Err(StoreError::CheckpointRejected { .. }))
        };
        assert!(refused(store.put_checkpoint(&forged)));
        let beyond = s.sign(TreeSize(21), Hash([1; 32])).expect("sign");
        assert!(refused(store.put_checkpoint(&beyond)));
        assert!(refused(store.put_checkpoint(&sign(&s, 5))));
        let twenty = store.put_checkpoint(&sign(&s, 20)).expect("put");
        assert_eq!(
            store.latest_checkpoint().expect("read"),
            Some(twenty.clone())
        );
        assert_eq!(store.checkpoint(15).expect("read"), None);
        assert_eq!(
            store.checkpoints_from(0, 10).expect("list"),
            vec![ten.clone(), twenty.clone()]
        );
        assert_eq!(
            store.checkpoints_from(11, 10).expect("list"),
            vec![twenty.clone()]
        );
        assert_eq!(
            store.checkpoints_from(0, 1).expect("list"),
            vec![ten.clone()]
        );
        assert!(store.checkpoints_from(21, 10).expect("list").is_empty());
        drop(store);
        let store = Store::open(dir.path(), &StoreConfig::default()).expect("reopen");
        assert_eq!(store.latest_checkpoint().expect("read"), Some(twenty));
        assert_eq!(store.checkpoint(10).expect("read"), Some(ten));
        assert_eq!(*store.watch_checkpoint().borrow(), Some(20));
    }
}
