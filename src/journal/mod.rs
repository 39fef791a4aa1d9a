//! The submit journal: every envelope one `coalition submit` signed and every receipt the hub
//! gave for them, on disk, so that a rerun resends the same envelopes and nothing is logged
//! twice.
//!
//! A submission is identified by a [`SubmissionDigest`] of its inputs (the input file's bytes,
//! what it is — a hash list split into sets of a given size with a description, or a risk
//! signal — the member and the signing key id). The hub answers an envelope it already holds
//! with the original receipt (`already_present`), so resending a journaled envelope whose
//! acknowledgement was lost is harmless; statements already acknowledged are not resent.
//!
//! # Format: JSON Lines, one record a line, `"record"` naming it
//! ```text
//! {"record":"journal","format":1,"digest":HEX,"member":ID,"key_id":HEX,"input":PATH,"created_at_ms":MS}
//! {"record":"statement","index":0,"id":HEX,"envelope":BASE64}   one per statement, in order
//! {"record":"signed","statements":N}
//! {"record":"ack","index":I,"seq":SEQ,"id":HEX,"received_at_ms":MS,"already_present":BOOL}
//! {"record":"complete","at_ms":MS}                                once every statement is acked
//! ```
//! `envelope` is the protobuf `Envelope` exactly as submitted; `id` its statement id.
//!
//! # Durability
//! - [`Journal::create`] writes the header, every envelope and the `signed` record to a
//!   temporary file beside the journal, fsyncs it, renames it over the journal and fsyncs the
//!   folder: a journal holds every envelope of its submission or does not exist. Envelopes are
//!   written as they are produced; none is held after its line is written.
//! - [`Journal::acknowledge`] appends one `ack` line and fsyncs it before returning.
//!   [`Journal::complete`] does the same for the `complete` record.
//! - A crash during an append leaves a last line without its newline; [`Journal::open`] ignores
//!   that fragment (its acknowledgement is asked for again: the hub answers `already_present`)
//!   and the next append overwrites it. Anything else that does not parse is
//!   [`JournalError::Corrupt`].
//! - One process at a time per journal: two concurrent runs of the same submission are not
//!   detected.
//!
//! The hub's address is not an input: a submission completed at one address is not resent to
//! another (the same hub may move), so sending the same inputs to another coalition's hub
//! takes `--new-submission` or another `--journal`. The journal holds the hashes themselves, in
//! a file only its owner may read (mode 0600, from the temporary file).

use crate::log::LeafIndex;
use crate::membership::{KeyId, MemberId};
use crate::pb;
use crate::statement::StatementId;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use prost::Message;
use sha2::{Digest, Sha256};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;

mod record;

use record::{MAX_LINE_BYTES, Parser, Record, Stage, read_line};

/// The journal format this code writes and reads.
pub const JOURNAL_FORMAT: u32 = 1;

/// SHA-256 of a submission's inputs: which submission a journal belongs to.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubmissionDigest(pub [u8; 32]);

/// What is submitted from the input file.
#[derive(Clone, Copy, Debug)]
pub enum InputKind<'a> {
    /// A hash list split into sets of `set_size` hashes, each carrying `description`.
    HashList {
        /// Hashes per set.
        set_size: u64,
        /// The sets' description.
        description: &'a str,
        /// The sets' expiry (ms since the Unix epoch), if any.
        expires_at_ms: Option<i64>,
    },
    /// One risk signal.
    RiskSignal,
}

/// The inputs of one submission, and their digest.
#[derive(Clone, Debug)]
pub struct Submission {
    /// The input file, as given.
    pub input: PathBuf,
    /// Who submits.
    pub member: MemberId,
    /// The key that signs.
    pub key_id: KeyId,
    /// The digest of all of the above, the input file's bytes and the [`InputKind`].
    pub digest: SubmissionDigest,
}

/// The hub's acknowledgement of one journaled statement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// The statement's position in the hub's log.
    pub seq: LeafIndex,
    /// The statement id the hub acknowledged (the journaled one's; checked).
    pub id: StatementId,
    /// When the hub received it.
    pub received_at_ms: i64,
    /// Whether the hub already held it (an acknowledgement lost earlier, or another copy).
    pub already_present: bool,
}

/// The journal of one submission: its statement ids and the receipts recorded so far. The
/// envelopes stay on disk; [`Journal::pending`] streams the ones not yet acknowledged.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    digest: SubmissionDigest,
    ids: Vec<StatementId>,
    receipts: Vec<Option<Receipt>>,
    completed_at_ms: Option<i64>,
    /// Bytes of the file that hold whole records: where the next record goes.
    len: u64,
    /// Open for appending once the first record is appended.
    file: Option<File>,
}

/// The statements of a journal not yet acknowledged, read from disk one at a time, in order.
pub struct Pending {
    path: PathBuf,
    reader: BufReader<File>,
    ids: Vec<StatementId>,
    acknowledged: Vec<bool>,
    next: usize,
    line: usize,
}

/// Why a journal cannot be used.
#[derive(Debug, Error)]
pub enum JournalError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The journal does not parse, or contradicts itself.
    #[error(
        "{path}:{line}: damaged submit journal ({reason}); to start this submission over, delete the file or rerun with --new-submission (statements it signed anew are logged again)"
    )]
    Corrupt {
        /// The journal.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The hub acknowledged a statement other than the one sent.
    #[error(
        "the hub acknowledged statement {index} of {path} as {got}, but that statement is {expected}"
    )]
    WrongReceipt {
        /// The journal.
        path: String,
        /// The statement's index in the submission.
        index: usize,
        /// Its id.
        expected: StatementId,
        /// The id in the hub's receipt.
        got: StatementId,
    },
    /// A statement index the journal does not have, or completion asked for too early.
    #[error("{path}: {reason}")]
    Misuse {
        /// The journal.
        path: String,
        /// What was asked.
        reason: String,
    },
}

impl Submission {
    /// Reads `input` (streamed) and computes the submission's digest.
    pub fn new(
        input: &Path,
        kind: InputKind<'_>,
        member: &MemberId,
        key_id: &KeyId,
    ) -> Result<Submission, JournalError> {
        let mut file = File::open(input).map_err(|e| io(input, e))?;
        let mut content = Sha256::new();
        std::io::copy(&mut file, &mut content).map_err(|e| io(input, e))?;
        let mut h = Sha256::new();
        h.update(b"coalition-submit-journal-v1\0");
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        field(&content.finalize());
        match kind {
            InputKind::HashList {
                set_size,
                description,
                expires_at_ms,
            } => {
                field(b"hash_list");
                field(&set_size.to_be_bytes());
                field(description.as_bytes());
                // Only when set, so journals made before expiry existed keep their digest.
                if let Some(at) = expires_at_ms {
                    field(b"expires_at_ms");
                    field(&at.to_be_bytes());
                }
            }
            InputKind::RiskSignal => field(b"risk_signal"),
        }
        field(member.as_str().as_bytes());
        field(key_id.as_str().as_bytes());
        Ok(Submission {
            input: input.to_owned(),
            member: member.clone(),
            key_id: key_id.clone(),
            digest: SubmissionDigest(h.finalize().into()),
        })
    }
}

impl Submission {
    /// The same submission restricted to `recipients` (docs/PROTOCOL.md §2.7): the digest
    /// then also covers them, so rerunning with other recipients is another submission. An
    /// unrestricted submission keeps its digest.
    pub fn restricted_to(mut self, recipients: &crate::statement::Recipients) -> Submission {
        if recipients.is_everyone() {
            return self;
        }
        let mut h = Sha256::new();
        h.update(b"coalition-submit-journal-recipients-v1\0");
        h.update(self.digest.0);
        for r in recipients.members() {
            h.update((r.as_str().len() as u64).to_be_bytes());
            h.update(r.as_str().as_bytes());
        }
        self.digest = SubmissionDigest(h.finalize().into());
        self
    }
}

impl Journal {
    /// The default journal of an input file: `<input>.journal`.
    pub fn path_for(input: &Path) -> PathBuf {
        let mut name = input.as_os_str().to_owned();
        name.push(".journal");
        PathBuf::from(name)
    }

    /// Reads the journal at `path`; `None` when there is none.
    pub fn open(path: &Path) -> Result<Option<Journal>, JournalError> {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path, e)),
        };
        let mut reader = BufReader::new(file);
        let mut parser = Parser::default();
        let mut buf = Vec::new();
        let mut len = 0u64;
        let mut line = 0;
        loop {
            let n = read_line(&mut reader, &mut buf).map_err(|e| io(path, e))?;
            if n == 0 {
                break;
            }
            line += 1;
            let bad = |reason: String| corrupt(path, line, reason);
            if buf.last() != Some(&b'\n') {
                if n > MAX_LINE_BYTES {
                    return Err(bad(format!("longer than {MAX_LINE_BYTES} bytes")));
                }
                if parser.stage == Stage::Acks {
                    // An append cut short by a crash: not a record (see Durability).
                    break;
                }
                return Err(bad("the file ends in the middle of a line".into()));
            }
            let record: Record = serde_json::from_slice(&buf)
                .map_err(|e| bad(format!("not a journal record: {e}")))?;
            parser.apply(record).map_err(bad)?;
            len += n as u64;
        }
        let line = line + 1;
        let Some(digest) = parser.digest else {
            return Err(corrupt(path, line, "empty file".into()));
        };
        if parser.stage == Stage::Statements {
            return Err(corrupt(
                path,
                line,
                "no \"signed\" record after the statements".into(),
            ));
        }
        Ok(Some(Journal {
            path: path.to_owned(),
            digest,
            ids: parser.ids,
            receipts: parser.receipts,
            completed_at_ms: parser.completed_at_ms,
            len,
            file: None,
        }))
    }

    /// Writes a new journal at `path` (replacing any) for `submission`, holding `envelopes` in
    /// order. Each envelope is written as it comes and dropped; the journal appears at `path`
    /// only once all are on disk.
    pub fn create<I>(
        path: &Path,
        submission: &Submission,
        envelopes: I,
    ) -> Result<Journal, JournalError>
    where
        I: IntoIterator<Item = pb::Envelope>,
    {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let tmp = tempfile::NamedTempFile::new_in(dir).map_err(|e| io(dir, e))?;
        let mut out = BufWriter::new(tmp);
        let mut len = 0u64;
        let mut write = |out: &mut BufWriter<_>, record: &Record| -> Result<(), JournalError> {
            let mut line = serde_json::to_vec(record).map_err(|e| io(path, e.into()))?;
            line.push(b'\n');
            out.write_all(&line).map_err(|e| io(path, e))?;
            len += line.len() as u64;
            Ok(())
        };
        write(
            &mut out,
            &Record::Journal {
                format: JOURNAL_FORMAT,
                digest: submission.digest.to_string(),
                member: submission.member.to_string(),
                key_id: submission.key_id.to_string(),
                input: submission.input.display().to_string(),
                created_at_ms: crate::store::now_ms(),
            },
        )?;
        let mut ids = Vec::new();
        for envelope in envelopes {
            let id = StatementId::of(&envelope.payload_type, &envelope.payload);
            write(
                &mut out,
                &Record::Statement {
                    index: ids.len(),
                    id: id.to_string(),
                    envelope: BASE64.encode(envelope.encode_to_vec()),
                },
            )?;
            ids.push(id);
        }
        write(
            &mut out,
            &Record::Signed {
                statements: ids.len(),
            },
        )?;
        let tmp = out.into_inner().map_err(|e| io(path, e.into_error()))?;
        tmp.as_file().sync_all().map_err(|e| io(path, e))?;
        tmp.persist(path).map_err(|e| io(path, e.error))?;
        sync_dir(dir);
        Ok(Journal {
            path: path.to_owned(),
            digest: submission.digest,
            receipts: vec![None; ids.len()],
            ids,
            completed_at_ms: None,
            len,
            file: None,
        })
    }

    /// Where the journal is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The submission it belongs to.
    pub fn digest(&self) -> SubmissionDigest {
        self.digest
    }

    /// How many statements the submission has.
    pub fn statements(&self) -> usize {
        self.ids.len()
    }

    /// How many of them the hub has acknowledged.
    pub fn acknowledged(&self) -> usize {
        self.receipts.iter().flatten().count()
    }

    /// Whether the submission is recorded as completed.
    pub fn is_complete(&self) -> bool {
        self.completed_at_ms.is_some()
    }

    /// The receipts recorded, with each statement's index, in statement order.
    pub fn receipts(&self) -> impl Iterator<Item = (usize, &Receipt)> {
        self.receipts
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.as_ref().map(|r| (i, r)))
    }

    /// The envelopes not acknowledged yet, with their index, read from disk in order. Each is
    /// checked against its journaled statement id as it is read.
    pub fn pending(&self) -> Result<Pending, JournalError> {
        let file = File::open(&self.path).map_err(|e| io(&self.path, e))?;
        let mut reader = BufReader::new(file);
        let mut header = Vec::new();
        read_line(&mut reader, &mut header).map_err(|e| io(&self.path, e))?;
        Ok(Pending {
            path: self.path.clone(),
            reader,
            ids: self.ids.clone(),
            acknowledged: self.receipts.iter().map(Option::is_some).collect(),
            next: 0,
            line: 1,
        })
    }

    /// Records the hub's receipt for statement `index` (appended and fsynced before this
    /// returns). The receipt must name that statement. Recording the same receipt twice is a
    /// no-op.
    pub fn acknowledge(&mut self, index: usize, receipt: Receipt) -> Result<(), JournalError> {
        let Some(&expected) = self.ids.get(index) else {
            return Err(self.misuse(format!(
                "no statement {index} (the journal has {})",
                self.ids.len()
            )));
        };
        if receipt.id != expected {
            return Err(JournalError::WrongReceipt {
                path: self.path.display().to_string(),
                index,
                expected,
                got: receipt.id,
            });
        }
        if self.receipts[index].is_some() {
            return Ok(());
        }
        self.append(&Record::Ack {
            index,
            seq: receipt.seq.0,
            id: receipt.id.to_string(),
            received_at_ms: receipt.received_at_ms,
            already_present: receipt.already_present,
        })?;
        self.receipts[index] = Some(receipt);
        Ok(())
    }

    /// Records that every statement is acknowledged: a rerun then submits nothing.
    pub fn complete(&mut self) -> Result<(), JournalError> {
        if self.is_complete() {
            return Ok(());
        }
        if let Some(index) = self.receipts.iter().position(Option::is_none) {
            return Err(self.misuse(format!(
                "statement {index} is not acknowledged; a submission completes when all are"
            )));
        }
        let at_ms = crate::store::now_ms();
        self.append(&Record::Complete { at_ms })?;
        self.completed_at_ms = Some(at_ms);
        Ok(())
    }

    /// Moves the journal aside to `<path>.<first 16 hex digits of its digest>` (replacing a
    /// file of that name) and returns where it went: kept for finishing with `--journal`.
    pub fn set_aside(self) -> Result<PathBuf, JournalError> {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{}", &self.digest.to_string()[..16]));
        let kept = PathBuf::from(name);
        drop(self.file);
        std::fs::rename(&self.path, &kept).map_err(|e| io(&self.path, e))?;
        if let Some(dir) = kept.parent().filter(|d| !d.as_os_str().is_empty()) {
            sync_dir(dir);
        }
        Ok(kept)
    }

    fn append(&mut self, record: &Record) -> Result<(), JournalError> {
        let path = &self.path;
        let file = match self.file.take() {
            Some(file) => file,
            None => {
                let file = OpenOptions::new()
                    .append(true)
                    .open(path)
                    .map_err(|e| io(path, e))?;
                // Drop a fragment left by an append a crash cut short.
                if file.metadata().map_err(|e| io(path, e))?.len() != self.len {
                    file.set_len(self.len).map_err(|e| io(path, e))?;
                }
                file
            }
        };
        let file = self.file.insert(file);
        let mut line = serde_json::to_vec(record).map_err(|e| io(path, e.into()))?;
        line.push(b'\n');
        file.write_all(&line).map_err(|e| io(path, e))?;
        file.sync_data().map_err(|e| io(path, e))?;
        self.len += line.len() as u64;
        Ok(())
    }

    fn misuse(&self, reason: String) -> JournalError {
        JournalError::Misuse {
            path: self.path.display().to_string(),
            reason,
        }
    }
}

impl Iterator for Pending {
    type Item = Result<(usize, pb::Envelope), JournalError>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut buf = Vec::new();
        while self.next < self.ids.len() {
            let index = self.next;
            self.next += 1;
            self.line += 1;
            let read = read_line(&mut self.reader, &mut buf).map_err(|e| io(&self.path, e));
            if self.acknowledged[index] {
                if let Err(e) = read {
                    return Some(Err(e));
                }
                continue;
            }
            return Some(read.and_then(|_| self.envelope(index, &buf)));
        }
        None
    }
}

impl Pending {
    /// Statement `index` from its line, checked against its journaled id.
    fn envelope(&self, index: usize, line: &[u8]) -> Result<(usize, pb::Envelope), JournalError> {
        let bad = |reason: String| corrupt(&self.path, self.line, reason);
        let Ok(Record::Statement {
            index: i, envelope, ..
        }) = serde_json::from_slice(line)
        else {
            return Err(bad(format!("expected statement {index}")));
        };
        if i != index {
            return Err(bad(format!("expected statement {index}, found {i}")));
        }
        let bytes = BASE64
            .decode(envelope)
            .map_err(|e| bad(format!("envelope is not base64: {e}")))?;
        let envelope = pb::Envelope::decode(bytes.as_slice())
            .map_err(|e| bad(format!("envelope does not decode: {e}")))?;
        if StatementId::of(&envelope.payload_type, &envelope.payload) != self.ids[index] {
            return Err(bad(format!(
                "envelope {index} is not statement {}",
                self.ids[index]
            )));
        }
        Ok((index, envelope))
    }
}

impl fmt::Display for SubmissionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for SubmissionDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubmissionDigest({self})")
    }
}

fn sync_dir(dir: &Path) {
    // Best effort: not every platform can open a folder for fsync.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

fn io(path: &Path, source: std::io::Error) -> JournalError {
    JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn corrupt(path: &Path, line: usize, reason: String) -> JournalError {
    JournalError::Corrupt {
        path: path.display().to_string(),
        line,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn envelope(n: u8) -> pb::Envelope {
        pb::Envelope {
            payload_type: crate::statement::PAYLOAD_TYPE.into(),
            payload: vec![n; 8].into(),
            signatures: vec![],
            body: vec![n].into(),
        }
    }

    fn submission(dir: &Path, content: &str) -> Submission {
        let input = dir.join("list.csv");
        std::fs::write(&input, content).expect("write input");
        let kind = InputKind::HashList {
            set_size: 2,
            description: "",
            expires_at_ms: None,
        };
        let member = MemberId::parse("acme").expect("member id");
        let key_id = KeyId::parse("0011223344556677").expect("key id");
        Submission::new(&input, kind, &member, &key_id).expect("digest")
    }

    fn receipt(journal: &Journal, index: usize, seq: u64) -> Receipt {
        Receipt {
            seq: LeafIndex(seq),
            id: journal.ids[index],
            received_at_ms: 1,
            already_present: false,
        }
    }

    fn pending(journal: &Journal) -> Vec<usize> {
        journal
            .pending()
            .expect("pending")
            .map(|r| r.expect("envelope").0)
            .collect()
    }

    #[test]
    fn digest_covers_every_input() {
        let dir = tempfile::tempdir().expect("tmp");
        let a = submission(dir.path(), "md5,00\n").digest;
        assert_eq!(a, submission(dir.path(), "md5,00\n").digest, "stable");
        assert_ne!(a, submission(dir.path(), "md5,01\n").digest, "file bytes");
        let s = submission(dir.path(), "md5,00\n");
        let digest = |kind, member: &str, key: &str| {
            let member = MemberId::parse(member).expect("member");
            let key = KeyId::parse(key).expect("key");
            Submission::new(&s.input, kind, &member, &key)
                .expect("digest")
                .digest
        };
        let list = |set_size, description| InputKind::HashList {
            set_size,
            description,
            expires_at_ms: None,
        };
        let k = "0011223344556677";
        assert_eq!(digest(list(2, ""), "acme", k), a);
        for other in [
            digest(list(3, ""), "acme", k),
            digest(list(2, "x"), "acme", k),
            digest(InputKind::RiskSignal, "acme", k),
            digest(list(2, ""), "globex", k),
            digest(list(2, ""), "acme", "0011223344556678"),
        ] {
            assert_ne!(other, a);
        }
    }

    #[test]
    fn acknowledgements_and_completion_survive_reopening() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = submission(dir.path(), "x");
        let path = Journal::path_for(&s.input);
        assert!(path.ends_with("list.csv.journal"), "{path:?}");
        assert!(Journal::open(&path).expect("open").is_none());
        let mut j = Journal::create(&path, &s, (0..3).map(envelope)).expect("create");
        assert_eq!(pending(&j), [0, 1, 2]);
        j.acknowledge(1, receipt(&j, 1, 7)).expect("ack");
        j.acknowledge(1, receipt(&j, 1, 7))
            .expect("the same ack again");
        assert!(j.complete().is_err(), "not all acknowledged");

        let mut j = Journal::open(&path).expect("open").expect("exists");
        assert_eq!(j.digest(), s.digest);
        assert_eq!((j.statements(), j.acknowledged()), (3, 1));
        assert_eq!(pending(&j), [0, 2]);
        let first = j.pending().expect("pending").next().expect("one");
        assert_eq!(first.expect("envelope").1, envelope(0), "the same bytes");
        let wrong = receipt(&j, 2, 9);
        assert!(matches!(
            j.acknowledge(0, wrong),
            Err(JournalError::WrongReceipt { index: 0, .. })
        ));
        for i in [0, 2] {
            j.acknowledge(i, receipt(&j, i, 10 + i as u64))
                .expect("ack");
        }
        j.complete().expect("complete");

        let j = Journal::open(&path).expect("open").expect("exists");
        assert!(j.is_complete());
        assert_eq!(pending(&j), [] as [usize; 0]);
        let seqs: Vec<u64> = j.receipts().map(|(_, r)| r.seq.0).collect();
        assert_eq!(seqs, [10, 7, 12]);
    }

    #[test]
    fn an_append_cut_short_is_dropped_and_overwritten() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = submission(dir.path(), "x");
        let path = Journal::path_for(&s.input);
        let mut j = Journal::create(&path, &s, (0..2).map(envelope)).expect("create");
        j.acknowledge(0, receipt(&j, 0, 3)).expect("ack");
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(b"{\"record\":\"ack\",\"ind").expect("torn");
        drop(file);

        let mut j = Journal::open(&path)
            .expect("a torn tail is tolerated")
            .expect("j");
        assert_eq!(j.acknowledged(), 1);
        j.acknowledge(1, receipt(&j, 1, 4)).expect("ack");
        j.complete().expect("complete");
        let j = Journal::open(&path).expect("reopen").expect("j");
        assert!(j.is_complete(), "the fragment was overwritten");
    }

    #[test]
    fn set_aside_keeps_the_journal_under_its_digest() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = submission(dir.path(), "x");
        let path = Journal::path_for(&s.input);
        let j = Journal::create(&path, &s, (0..1).map(envelope)).expect("create");
        let kept = j.set_aside().expect("set aside");
        assert!(!path.exists());
        let name = kept.file_name().and_then(|n| n.to_str()).expect("name");
        assert_eq!(
            name,
            format!("list.csv.journal.{}", &s.digest.to_string()[..16])
        );
        let j = Journal::open(&kept).expect("open").expect("exists");
        assert_eq!(j.digest(), s.digest);
    }

    /// Writes a journal of two statements, replaces line `line` (1-based) with `text` or
    /// appends it (line 0), and checks the error names that line and says `reason`.
    fn check_corrupt(line: usize, text: &str, reason: &str) {
        let dir = tempfile::tempdir().expect("tmp");
        let s = submission(dir.path(), "x");
        let path = Journal::path_for(&s.input);
        let mut j = Journal::create(&path, &s, (0..2).map(envelope)).expect("create");
        j.acknowledge(0, receipt(&j, 0, 3)).expect("ack");
        let content = std::fs::read_to_string(&path).expect("read");
        let mut lines: Vec<String> = content.lines().map(str::to_owned).collect();
        let at = if line == 0 {
            lines.push(text.into());
            lines.len()
        } else {
            lines[line - 1] = text.into();
            line
        };
        std::fs::write(&path, lines.join("\n") + "\n").expect("write");
        let err = match Journal::open(&path) {
            Ok(Some(j)) => j
                .pending()
                .expect("pending")
                .find_map(Result::err)
                .unwrap_or_else(|| panic!("line {line} {text:?} accepted")),
            Ok(None) => panic!("the journal vanished"),
            Err(e) => e,
        };
        let msg = err.to_string();
        assert!(
            matches!(err, JournalError::Corrupt { line: l, .. } if l == at),
            "line {at}: {msg}"
        );
        assert!(msg.contains(reason), "{reason:?} not in {msg}");
        assert!(msg.contains("--new-submission"), "{msg}");
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    }

    #[test]
    fn a_damaged_journal_is_refused_naming_the_line() {
        let id = |n: u8| StatementId::of(crate::statement::PAYLOAD_TYPE, &[n; 8]);
        let ack = |index: usize, seq: u64, n: u8| {
            format!(
                r#"{{"record":"ack","index":{index},"seq":{seq},"id":"{}","received_at_ms":1,"already_present":false}}"#,
                id(n)
            )
        };
        let statement = |index: usize, n: u8, envelope: &str| {
            format!(
                r#"{{"record":"statement","index":{index},"id":"{}","envelope":"{envelope}"}}"#,
                id(n)
            )
        };
        let other_envelope = BASE64.encode(envelope(2).encode_to_vec());
        // Lines: 1 journal, 2-3 statements 0 and 1, 4 signed, 5 ack of 0 (seq 3); 0 = appended.
        for (line, text, reason) in [
            (1, "not json".to_string(), "not a journal record"),
            (1, r#"{"record":"signed","statements":0}"#.into(), "\"journal\" record first"),
            (1, r#"{"record":"journal","format":2,"digest":"00","member":"a","key_id":"b","input":"c","created_at_ms":1}"#.into(), "journal format 2"),
            (1, r#"{"record":"journal","format":1,"digest":"00","member":"a","key_id":"b","input":"c","created_at_ms":1}"#.into(), "digest '00' is not 64 hex digits"),
            (2, statement(1, 1, ""), "statement 1 where statement 0 was due"),
            (2, statement(0, 0, "").replace(&id(0).to_string(), "xyz"), "statement id 'xyz'"),
            (3, ack(0, 3, 0), "unexpected \"ack\" record among the statements"),
            (4, r#"{"record":"signed","statements":3}"#.into(), "counts 3 statements"),
            (5, ack(1, 3, 0), "ack of statement 1 names"),
            (5, ack(2, 3, 0), "ack of statement 2, the journal holds 2"),
            (0, ack(0, 5, 0), "acknowledged at seq 3 and at seq 5"),
            (0, r#"{"record":"complete","at_ms":1}"#.into(), "\"complete\" while statement 1 is not acknowledged"),
            (0, statement(2, 2, ""), "unexpected \"statement\" record among the acks"),
            // Found when the pending envelope is read for resubmission.
            (3, statement(1, 1, "%%"), "envelope is not base64"),
            (3, statement(1, 1, "AAEC"), "envelope does not decode"),
            (3, statement(1, 1, &other_envelope), "envelope 1 is not statement"),
        ] {
            check_corrupt(line, &text, reason);
        }
    }

    #[test]
    fn a_file_cut_inside_the_statements_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let s = submission(dir.path(), "x");
        let path = Journal::path_for(&s.input);
        Journal::create(&path, &s, (0..2).map(envelope)).expect("create");
        let content = std::fs::read_to_string(&path).expect("read");
        let cut: Vec<&str> = content.lines().take(2).collect();
        std::fs::write(&path, cut.join("\n") + "\n").expect("write");
        let err = Journal::open(&path).expect_err("refused").to_string();
        assert!(
            err.contains(":3: damaged submit journal (no \"signed\" record"),
            "{err}"
        );
        std::fs::write(&path, &content[..content.len() / 2]).expect("write");
        let err = Journal::open(&path).expect_err("refused").to_string();
        assert!(err.contains("ends in the middle of a line"), "{err}");
        std::fs::write(&path, "").expect("write");
        let err = Journal::open(&path).expect_err("refused").to_string();
        assert!(err.contains("empty file"), "{err}");
    }
}
