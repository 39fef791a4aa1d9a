//! A file holding a whole [`Corpus`](super::Corpus) (PDQ segments with their tables, exact
//! maps, slots, provenance, label sets), so that a hub starts matching in about the time it
//! takes to read it instead of re-reading and re-indexing the log.
//!
//! Layout: the magic `CHMATCH5` (version 3 added each statement's recipients and the
//! expiries, version 4 a risk signal's entry index of each hash, version 5 the exact map of
//! `url_md5` hashes and the vPDQ videos; an older file is refused as
//! "wrong magic" and the log indexed instead), the log
//! size and Merkle root the corpus covers
//! ([`Covers`]), the corpus, then the CRC-32 (IEEE, little endian) of every byte before it.
//! Integers are little endian; arrays of fixed-size elements are written whole; every length is
//! checked against the bytes left before anything is allocated, so a damaged file costs at most
//! its own size. A reader trusts nothing until the checksum matched and the structure is
//! consistent; the hub then also checks the covered root against its log ([`crate::server`]'s
//! indexer) and otherwise rebuilds from the log.
//!
//! The checksum catches accidental damage (a torn or bit-flipped file), not tampering: whoever
//! can write the data directory can write the log too. CRC-32 runs at memory speed, where the
//! SHA-256 of version 1 took about a quarter of a 10M-hash start-up; a version-1 file is
//! refused as "wrong magic" and the log is indexed instead (once; the next snapshot is the
//! current version).

use crc32fast::Hasher as Crc32;
use std::io::{self, Read, Write};
use thiserror::Error;

const MAGIC: &[u8; 8] = b"CHMATCH5";
/// Bytes of the trailing checksum.
const CHECKSUM: u64 = 4;

/// The log prefix a snapshot covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Covers {
    /// Entries `0..log_size` are indexed.
    pub log_size: u64,
    /// The Merkle root of the log at `log_size`.
    pub root: [u8; 32],
}

/// Why a snapshot file was not used.
#[derive(Debug, Error)]
pub enum SnapshotError {
    /// Reading failed.
    #[error("reading the matching snapshot failed: {0}")]
    Io(#[from] io::Error),
    /// The file is damaged, truncated or not a snapshot.
    #[error("the matching snapshot is damaged: {0}")]
    Damaged(String),
}

fn damaged(what: impl Into<String>) -> SnapshotError {
    SnapshotError::Damaged(what.into())
}

/// Writes `corpus` covering `covers` to `out` (buffer it), checksum last.
pub fn write(corpus: &super::Corpus, covers: &Covers, out: impl Write) -> io::Result<()> {
    let mut enc = Enc {
        out,
        hash: Crc32::new(),
    };
    enc.raw(MAGIC)?;
    enc.u64(covers.log_size)?;
    enc.raw(&covers.root)?;
    corpus.encode(&mut enc)?;
    let digest = enc.hash.finalize();
    enc.out.write_all(&digest.to_le_bytes())?;
    enc.out.flush()
}

/// Reads a snapshot of `len` bytes written by [`write`].
pub fn read(input: impl Read, len: u64) -> Result<(super::Corpus, Covers), SnapshotError> {
    let mut dec = Dec {
        input,
        hash: Crc32::new(),
        left: len
            .checked_sub(CHECKSUM)
            .ok_or_else(|| damaged("shorter than its checksum"))?,
    };
    if &dec.array::<8>()? != MAGIC {
        return Err(damaged("not a matching snapshot (wrong magic)"));
    }
    let covers = Covers {
        log_size: dec.u64()?,
        root: dec.array()?,
    };
    let corpus = super::Corpus::decode(&mut dec)?;
    if dec.left != 0 {
        return Err(damaged(format!(
            "{} unread bytes before the checksum",
            dec.left
        )));
    }
    let mut digest = [0u8; CHECKSUM as usize];
    dec.input.read_exact(&mut digest)?;
    if u32::from_le_bytes(digest) != dec.hash.finalize() {
        return Err(damaged("checksum mismatch"));
    }
    if corpus.next_seq() != covers.log_size {
        return Err(damaged(
            "the corpus does not end at the size it claims to cover",
        ));
    }
    Ok((corpus, covers))
}

/// The encoder the corpus's parts write themselves with.
pub(crate) struct Enc<W: Write> {
    out: W,
    hash: Crc32,
}

/// Elements converted per write when encoding arrays.
const CHUNK: usize = 16 * 1024;

impl<W: Write> Enc<W> {
    fn raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.hash.update(bytes);
        self.out.write_all(bytes)
    }

    pub(crate) fn u8(&mut self, v: u8) -> io::Result<()> {
        self.raw(&[v])
    }

    pub(crate) fn u32(&mut self, v: u32) -> io::Result<()> {
        self.raw(&v.to_le_bytes())
    }

    pub(crate) fn u64(&mut self, v: u64) -> io::Result<()> {
        self.raw(&v.to_le_bytes())
    }

    pub(crate) fn len(&mut self, n: usize) -> io::Result<()> {
        self.u64(n as u64)
    }

    pub(crate) fn bytes(&mut self, v: &[u8]) -> io::Result<()> {
        self.len(v.len())?;
        self.raw(v)
    }

    pub(crate) fn str(&mut self, v: &str) -> io::Result<()> {
        self.bytes(v.as_bytes())
    }

    /// A length-prefixed array of fixed-size little-endian elements.
    pub(crate) fn array<T: Copy, const N: usize>(
        &mut self,
        items: &[T],
        to_le: impl Fn(T) -> [u8; N],
    ) -> io::Result<()> {
        self.len(items.len())?;
        let mut buf = Vec::with_capacity(CHUNK * N);
        for chunk in items.chunks(CHUNK) {
            buf.clear();
            for &item in chunk {
                buf.extend_from_slice(&to_le(item));
            }
            self.raw(&buf)?;
        }
        Ok(())
    }
}

/// The decoder; every length is checked against the bytes left.
pub(crate) struct Dec<R: Read> {
    input: R,
    hash: Crc32,
    left: u64,
}

impl<R: Read> Dec<R> {
    fn fill(&mut self, buf: &mut [u8]) -> Result<(), SnapshotError> {
        let n = buf.len() as u64;
        if n > self.left {
            return Err(damaged("truncated"));
        }
        self.input.read_exact(buf)?;
        self.hash.update(&*buf);
        self.left -= n;
        Ok(())
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], SnapshotError> {
        let mut out = [0u8; N];
        self.fill(&mut out)?;
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, SnapshotError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u32(&mut self) -> Result<u32, SnapshotError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, SnapshotError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A count of elements of at least `min_size` bytes each, checked against what is left.
    pub(crate) fn len(&mut self, min_size: usize) -> Result<usize, SnapshotError> {
        let n = self.u64()?;
        if n.saturating_mul(min_size.max(1) as u64) > self.left {
            return Err(damaged(format!("a count of {n} exceeds the file")));
        }
        usize::try_from(n).map_err(|_| damaged("count too large"))
    }

    pub(crate) fn bytes(&mut self) -> Result<Vec<u8>, SnapshotError> {
        let n = self.len(1)?;
        let mut out = vec![0u8; n];
        self.fill(&mut out)?;
        Ok(out)
    }

    /// A length-prefixed byte string of at most `buf.len()` bytes, read into `buf` (no
    /// allocation per item).
    pub(crate) fn bytes_into<'b>(&mut self, buf: &'b mut [u8]) -> Result<&'b [u8], SnapshotError> {
        let n = self.len(1)?;
        let part = buf
            .get_mut(..n)
            .ok_or_else(|| damaged(format!("a field of {n} bytes is longer than it can be")))?;
        self.fill(part)?;
        Ok(part)
    }

    pub(crate) fn string(&mut self) -> Result<String, SnapshotError> {
        String::from_utf8(self.bytes()?).map_err(|_| damaged("a string is not UTF-8"))
    }

    /// An array written by [`Enc::array`].
    pub(crate) fn vec<T, const N: usize>(
        &mut self,
        from_le: impl Fn([u8; N]) -> T,
    ) -> Result<Vec<T>, SnapshotError> {
        let n = self.len(N)?;
        let mut out = Vec::with_capacity(n);
        let mut buf = vec![0u8; CHUNK.min(n.max(1)) * N];
        let mut done = 0;
        while done < n {
            let take = (n - done).min(CHUNK);
            let part = &mut buf[..take * N];
            self.fill(part)?;
            out.extend(part.chunks_exact(N).map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                from_le(a)
            }));
            done += take;
        }
        Ok(out)
    }

    /// A check on decoded data; false is a damaged file.
    pub(crate) fn ensure(&self, ok: bool, what: &str) -> Result<(), SnapshotError> {
        if ok { Ok(()) } else { Err(damaged(what)) }
    }
}

/// Little-endian helpers for [`Enc::array`] / [`Dec::vec`].
pub(crate) mod le {
    /// A `u16`.
    pub fn u16_to(v: u16) -> [u8; 2] {
        v.to_le_bytes()
    }
    /// A `u32`.
    pub fn u32_to(v: u32) -> [u8; 4] {
        v.to_le_bytes()
    }
    /// A `u64`.
    pub fn u64_to(v: u64) -> [u8; 8] {
        v.to_le_bytes()
    }
    /// Four `u64` words.
    pub fn words_to(v: [u64; 4]) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, w) in v.iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }
    /// Four `u64` words.
    pub fn words_from(b: [u8; 32]) -> [u64; 4] {
        let mut out = [0u64; 4];
        for (i, w) in out.iter_mut().enumerate() {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i * 8..i * 8 + 8]);
            *w = u64::from_le_bytes(a);
        }
        out
    }
}
