//! Audit bundle files: a magic line, then length-delimited `BundleRecord`s (checkpoints with
//! their witness cosignature lines first, then entries in log order). See
//! `proto/coalition/v1/bundle.proto`.

use crate::pb;
pub use crate::witness::policy::MAX_COSIGNATURE_LINES;
use prost::Message;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;
use thiserror::Error;

/// The first bytes of every bundle file.
pub const MAGIC: &[u8] = b"coalition-audit-bundle v1\n";

/// Largest record accepted (a statement is at most 16 MiB; its entry a little more).
const MAX_RECORD: usize = 20 * 1024 * 1024;

/// Why a bundle cannot be read or written.
#[derive(Debug, Error)]
pub enum BundleError {
    /// An I/O failure.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a bundle or is damaged.
    #[error("{path}: {reason}")]
    Malformed {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// One record of a bundle.
// Nearly every record is an entry: boxing it would cost an allocation per entry to shrink
// the rare checkpoint record.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Record {
    /// A signed checkpoint note and the witness cosignature lines served with it (at most
    /// [`MAX_COSIGNATURE_LINES`] when read).
    Checkpoint {
        /// The signed note.
        note: String,
        /// Its cosignature lines (none in bundles written before they were exported).
        cosignatures: Vec<String>,
    },
    /// A log entry.
    Entry(pb::SyncEntry),
}

impl Record {
    /// A checkpoint record without cosignatures.
    pub fn checkpoint(note: impl Into<String>) -> Self {
        Record::Checkpoint {
            note: note.into(),
            cosignatures: Vec::new(),
        }
    }
}

/// Writes a bundle.
pub struct BundleWriter {
    out: BufWriter<std::fs::File>,
    path: String,
}

impl BundleWriter {
    /// Creates (truncates) `path` and writes the magic line.
    pub fn create(path: &Path) -> Result<Self, BundleError> {
        let name = path.display().to_string();
        let io = |source| BundleError::Io {
            path: name.clone(),
            source,
        };
        let file = std::fs::File::create(path).map_err(io)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        out.write_all(MAGIC).map_err(io)?;
        Ok(BundleWriter { out, path: name })
    }

    /// Appends a record.
    pub fn write(&mut self, record: Record) -> Result<(), BundleError> {
        let record = match record {
            Record::Checkpoint { note, cosignatures } => pb::BundleRecord {
                record: Some(pb::bundle_record::Record::Checkpoint(note)),
                cosignatures,
            },
            Record::Entry(entry) => pb::BundleRecord {
                record: Some(pb::bundle_record::Record::Entry(entry)),
                cosignatures: Vec::new(),
            },
        };
        let bytes = record.encode_length_delimited_to_vec();
        self.out
            .write_all(&bytes)
            .map_err(|source| BundleError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Flushes and syncs the file.
    pub fn finish(self) -> Result<(), BundleError> {
        let path = self.path;
        let file = self.out.into_inner().map_err(|e| BundleError::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        file.sync_all()
            .map_err(|source| BundleError::Io { path, source })
    }
}

/// Reads a bundle record by record.
pub struct BundleReader {
    input: BufReader<std::fs::File>,
    path: String,
    index: u64,
}

impl BundleReader {
    /// Opens `path` and checks the magic line.
    pub fn open(path: &Path) -> Result<Self, BundleError> {
        let name = path.display().to_string();
        let file = std::fs::File::open(path).map_err(|source| BundleError::Io {
            path: name.clone(),
            source,
        })?;
        let mut input = BufReader::with_capacity(1 << 20, file);
        let mut magic = vec![0u8; MAGIC.len()];
        if input.read_exact(&mut magic).is_err() || magic != MAGIC {
            return Err(BundleError::Malformed {
                path: name,
                reason:
                    "not an audit bundle (expected it to start with \"coalition-audit-bundle v1\")"
                        .into(),
            });
        }
        Ok(BundleReader {
            input,
            path: name,
            index: 0,
        })
    }

    /// The next record, or `None` at the end of the file.
    pub fn next_record(&mut self) -> Result<Option<Record>, BundleError> {
        let (path, index) = (self.path.clone(), self.index);
        let malformed = |reason: String| BundleError::Malformed {
            path: path.clone(),
            reason: format!("record {index}: {reason}"),
        };
        let at_end = self
            .input
            .fill_buf()
            .map_err(|source| BundleError::Io {
                path: self.path.clone(),
                source,
            })?
            .is_empty();
        if at_end {
            return Ok(None);
        }
        let len = read_varint(&mut self.input).map_err(malformed)?;
        let len = usize::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_RECORD)
            .ok_or_else(|| malformed(format!("length {len} is over {MAX_RECORD} bytes")))?;
        let mut buf = vec![0u8; len];
        self.input
            .read_exact(&mut buf)
            .map_err(|_| malformed("truncated".into()))?;
        let record = pb::BundleRecord::decode(buf.as_slice())
            .map_err(|e| malformed(format!("not a BundleRecord: {e}")))?;
        self.index += 1;
        match record.record {
            Some(pb::bundle_record::Record::Checkpoint(note)) => {
                if record.cosignatures.len() > MAX_COSIGNATURE_LINES {
                    return Err(malformed(format!(
                        "{} cosignature lines, at most {MAX_COSIGNATURE_LINES} per checkpoint",
                        record.cosignatures.len()
                    )));
                }
                Ok(Some(Record::Checkpoint {
                    note,
                    cosignatures: record.cosignatures,
                }))
            }
            Some(pb::bundle_record::Record::Entry(_)) if !record.cosignatures.is_empty() => Err(
                malformed("cosignature lines on an entry (they belong to a checkpoint)".into()),
            ),
            Some(pb::bundle_record::Record::Entry(entry)) => Ok(Some(Record::Entry(entry))),
            None => Err(malformed("empty record".into())),
        }
    }
}

/// Reads a protobuf base-128 varint (at most 10 bytes).
fn read_varint(input: &mut impl Read) -> Result<u64, String> {
    let mut value = 0u64;
    for i in 0..10 {
        let mut b = [0u8; 1];
        input
            .read_exact(&mut b)
            .map_err(|_| "truncated length".to_string())?;
        value |= u64::from(b[0] & 0x7f) << (7 * i);
        if b[0] & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("length varint longer than 10 bytes".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_all(path: &Path) -> Result<Vec<Record>, BundleError> {
        let mut reader = BundleReader::open(path)?;
        std::iter::from_fn(|| reader.next_record().transpose()).collect()
    }

    #[test]
    fn cosignatures_ride_with_their_checkpoint_and_older_bundles_still_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("b");
        let mut w = BundleWriter::create(&path).expect("create");
        w.write(Record::checkpoint("plain")).expect("write");
        w.write(Record::Checkpoint {
            note: "cosigned".into(),
            cosignatures: vec!["\u{2014} w AAAA\n".into()],
        })
        .expect("write");
        w.finish().expect("finish");
        let bytes = std::fs::read(&path).expect("read");
        // A checkpoint without cosignatures is the record of before: field 2 alone.
        assert_eq!(&bytes[MAGIC.len()..MAGIC.len() + 8], b"\x07\x12\x05plain");
        let records = read_all(&path).expect("reads");
        assert!(matches!(&records[..], [
            Record::Checkpoint { note: a, cosignatures: none },
            Record::Checkpoint { note: b, cosignatures: one },
        ] if a == "plain" && none.is_empty() && b == "cosigned" && one.len() == 1));
    }

    #[test]
    fn cosignature_lines_are_bounded_and_belong_to_checkpoints() {
        let dir = tempfile::tempdir().expect("tmp");
        for (name, record, says) in [
            (
                "flood",
                pb::BundleRecord {
                    record: Some(pb::bundle_record::Record::Checkpoint("n".into())),
                    cosignatures: vec!["l".into(); MAX_COSIGNATURE_LINES + 1],
                },
                "at most 128 per checkpoint",
            ),
            (
                "on an entry",
                pb::BundleRecord {
                    record: Some(pb::bundle_record::Record::Entry(pb::SyncEntry::default())),
                    cosignatures: vec!["l".into()],
                },
                "cosignature lines on an entry",
            ),
        ] {
            let path = dir.path().join(name);
            let mut bytes = MAGIC.to_vec();
            bytes.extend(record.encode_length_delimited_to_vec());
            std::fs::write(&path, bytes).expect("write");
            let e = read_all(&path).expect_err(name);
            assert!(e.to_string().contains(says), "{name}: {e}");
        }
    }
}
