//! Audit bundle files: a magic line, then length-delimited `BundleRecord`s (checkpoints first,
//! then entries in log order). See `proto/coalition/v1/bundle.proto`.

use crate::pb;
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
#[derive(Debug)]
pub enum Record {
    /// A signed checkpoint note.
    Checkpoint(String),
    /// A log entry.
    Entry(pb::SyncEntry),
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
        let record = pb::BundleRecord {
            record: Some(match record {
                Record::Checkpoint(note) => pb::bundle_record::Record::Checkpoint(note),
                Record::Entry(entry) => pb::bundle_record::Record::Entry(entry),
            }),
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
            Some(pb::bundle_record::Record::Checkpoint(note)) => Ok(Some(Record::Checkpoint(note))),
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
