//! A member's snapshot (`coalition sync --snapshot FILE`): the rows of its sync output whose
//! entries are in the states asked for (by default [`EntryState::MATCHING`]: those that should
//! match now). The sync output is the history of everything shared (append-only, resumable by
//! its length); the snapshot is derived from it and the lifecycle state the member's replica
//! replayed, so it can be rebuilt at any time: whole after a batch that changes an entry's
//! state, extended by the new rows otherwise.
//!
//! Each row's entry state is the replica's ([`crate::lifecycle::StatementStates::state`]) with
//! two facts the row itself carries added: its statement is expired at the pass's clock, or it
//! is compromised (its `compromised_keys` column says so, known when it was written, or its
//! signing key, from the member's ids file, [`Rules::signing_key`], was declared compromised
//! later from a time at or before the hub received it). A hash row is found by its `entry`
//! index (rows written before that column existed carry none: only whole-statement
//! retractions move them); a risk signal row keeps the indicators in a wanted state and goes
//! when none is left. Erased rows are never kept. When other states than the default are
//! asked for, every kept row names its state: a `state` field (JSON Lines hash rows), an
//! `indicator_states` array beside `indicators` (risk signal rows), a `state` column after the
//! last one (CSV), so an offline `coalition match` skips the rows that should not match.

use super::Format;
use crate::lifecycle::expiry::expired;
use crate::lifecycle::{EntryState, StatementStates, Target};
use crate::membership::{KeyId, MemberId, Registry};
use crate::statement::{Kind, StatementId};
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Rows read and written by one pass.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// Rows read from the output.
    pub read: u64,
    /// Rows written to the snapshot.
    pub kept: u64,
    /// The earliest expiry among the rows kept (`None`: none expires): once the clock reaches
    /// it, the snapshot is due a rewrite.
    pub next_expiry: Option<i64>,
}

impl Pass {
    /// Counts a kept row; an expiry still to come is when the snapshot is next due.
    fn kept_until(&mut self, expires_at_ms: Option<i64>, now_ms: i64) {
        self.kept += 1;
        if let Some(at) = expires_at_ms.filter(|at| *at > now_ms) {
            self.next_expiry = Some(self.next_expiry.map_or(at, |t| t.min(at)));
        }
    }
}

/// What decides, besides a row itself, whether it is kept.
pub struct Rules<'a> {
    /// The member's replica's membership and lifecycle.
    pub registry: &'a Registry,
    /// The clock for expiry (ms since the Unix epoch).
    pub now_ms: i64,
    /// The signing key of the entry at a log position, as the member recorded it.
    pub signing_key: &'a dyn Fn(u64) -> Option<KeyId>,
    /// The entry states kept (erased is never kept: its body is gone).
    pub states: &'a [EntryState],
}

impl Rules<'_> {
    /// Whether rows name their state: other states than the default are asked for.
    fn annotated(&self) -> bool {
        let wanted = |s: &EntryState| self.states.contains(s);
        self.states.len() != EntryState::MATCHING.len() || !EntryState::MATCHING.iter().all(wanted)
    }

    /// Whether an entry in `state` is kept.
    fn keeps(&self, state: EntryState) -> bool {
        state != EntryState::Erased && self.states.contains(&state)
    }
}

/// Rewrites `snapshot` whole from the sync output `output`: a temporary file, fsynced, renamed
/// over the old one, so a reader sees the old snapshot or the new one, whole.
pub fn rewrite(
    output: &Path,
    format: Format,
    rules: &Rules<'_>,
    snapshot: &Path,
) -> std::io::Result<Pass> {
    let tmp = temporary(snapshot);
    let mut out = WriteBehind::new(File::create(&tmp)?)?;
    let input = BufReader::with_capacity(1 << 20, File::open(output)?);
    let pass = filter(input, format, rules, &mut out)?;
    out.finish()?;
    std::fs::rename(&tmp, snapshot)?;
    if let Some(dir) = snapshot.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)?.sync_all()?;
    }
    Ok(pass)
}

/// Appends to `snapshot` the kept rows of `output` from byte `from` (a row boundary: where an
/// earlier batch ended), then fsyncs it.
pub fn extend(
    output: &Path,
    from: u64,
    format: Format,
    rules: &Rules<'_>,
    snapshot: &Path,
) -> std::io::Result<Pass> {
    let mut input = File::open(output)?;
    input.seek(SeekFrom::Start(from))?;
    let file = std::fs::OpenOptions::new().append(true).open(snapshot)?;
    let mut out = std::io::BufWriter::new(file);
    let pass = filter(
        BufReader::with_capacity(1 << 20, input),
        format,
        rules,
        &mut out,
    )?;
    out.into_inner().map_err(|e| e.into_error())?.sync_data()?;
    Ok(pass)
}

/// Bytes written to a new snapshot between two requests to the kernel to start writing them
/// to disk. Without them a machine with much memory holds gigabytes back until the final
/// fsync, which then waits for all of it after the filtering instead of alongside it.
const WRITE_BEHIND: u64 = 32 << 20;
/// Bytes handed to the snapshot's writer thread at a time.
const CHUNK: usize = 1 << 20;
/// Chunks waiting for the writer thread at most (so at most 8 MiB in memory besides the one
/// being filled); the filter waits for room.
const CHUNKS_QUEUED: usize = 8;

/// A new snapshot file written by a thread of its own, which sends what it wrote on to the
/// disk every [`WRITE_BEHIND`] bytes, without waiting: the filtering keeps one core busy while
/// the copying into the page cache and the disk work alongside.
struct WriteBehind {
    chunk: Vec<u8>,
    chunks: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    writer: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl WriteBehind {
    fn new(mut file: File) -> std::io::Result<WriteBehind> {
        let (chunks, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHUNKS_QUEUED);
        let writer = std::thread::Builder::new()
            .name("snapshot-writer".into())
            .spawn(move || {
                let (mut written, mut started) = (0u64, 0u64);
                for chunk in rx {
                    file.write_all(&chunk)?;
                    written += chunk.len() as u64;
                    if written - started >= WRITE_BEHIND {
                        start_writeback(&file, started, written - started);
                        started = written;
                    }
                }
                file.sync_all()
            })?;
        Ok(WriteBehind {
            chunk: Vec::with_capacity(CHUNK),
            chunks: Some(chunks),
            writer: Some(writer),
        })
    }

    /// Hands the chunk being filled to the writer thread.
    fn send(&mut self) -> std::io::Result<()> {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
        let sent = self.chunks.as_ref().is_some_and(|c| c.send(chunk).is_ok());
        if sent {
            return Ok(());
        }
        // The thread stopped: its error says why.
        self.chunks = None;
        self.join()
    }

    /// Waits for the writer thread: everything written and fsynced, or why not.
    fn join(&mut self) -> std::io::Result<()> {
        let writer = self
            .writer
            .take()
            .ok_or_else(|| std::io::Error::other("the snapshot writer has already stopped"))?;
        writer
            .join()
            .map_err(|_| std::io::Error::other("the snapshot writer panicked"))?
    }

    /// Writes the rest and returns once the file is fsynced.
    fn finish(mut self) -> std::io::Result<()> {
        self.send()?;
        self.chunks = None;
        self.join()
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.chunk.extend_from_slice(buf);
        if self.chunk.len() >= CHUNK {
            self.send()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Asks the kernel to start writing `len` bytes of `file` from `offset` to disk, without
/// waiting for them: a hint, whose failure the final fsync reports if it matters.
#[cfg(target_os = "linux")]
fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range reads its integer arguments only; the descriptor is open for
    // as long as `file` is borrowed.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &File, _offset: u64, _len: u64) {}

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Copies the rows of `input` whose entries are in a state [`Rules::states`] asks for to `out`.
pub fn filter(
    input: impl BufRead,
    format: Format,
    rules: &Rules<'_>,
    out: impl Write,
) -> std::io::Result<Pass> {
    let mut states = States {
        registry: rules.registry,
        rules,
        cache: HashMap::new(),
        // This hub's members, and those of the hubs relayed from (`acme@x.example`).
        compromised_since: rules
            .registry
            .members()
            .map(|m| m.id.clone())
            .chain(
                rules
                    .registry
                    .origins()
                    .flat_map(|(hub, origin)| origin.members().map(move |m| m.id.qualified(hub))),
            )
            .filter_map(|id| {
                let since = rules.registry.compromised_since(&id)?;
                Some((id.as_str().to_owned(), since))
            })
            .collect(),
        compromised: HashMap::new(),
        last: None,
    };
    match format {
        Format::Csv => filter_csv(input, &mut states, out),
        Format::Jsonl => filter_jsonl(input, &mut states, out),
    }
}

/// The states of the entries of the statements met so far (`None`: all active), and which
/// statements at risk of a later compromise are compromised (by seq).
struct States<'a> {
    registry: &'a Registry,
    rules: &'a Rules<'a>,
    cache: HashMap<StatementId, Option<StatementStates>>,
    /// Members with a compromised key, and the earliest compromise time of their keys
    /// (computed once per pass: rows are looked up by their issuer column, unparsed).
    compromised_since: HashMap<String, i64>,
    compromised: HashMap<u64, bool>,
    /// The standing of the last statement met, by its seq: a statement's rows are consecutive,
    /// so its facts are read and looked up once, not once per row.
    last: Option<(u64, Standing)>,
}

impl States<'_> {
    /// Whether the statement at `seq` is compromised: by its own column, or by a compromise
    /// declared after the row was written.
    fn compromised(
        &mut self,
        seq: Option<u64>,
        issuer: Option<&str>,
        received_at_ms: Option<i64>,
        compromised_column: bool,
    ) -> bool {
        if compromised_column {
            return true;
        }
        let (Some(seq), Some(issuer), Some(received)) = (seq, issuer, received_at_ms) else {
            return false;
        };
        if self
            .compromised_since
            .get(issuer)
            .is_none_or(|since| received < *since)
        {
            return false;
        }
        let (registry, rules) = (self.registry, self.rules);
        *self.compromised.entry(seq).or_insert_with(|| {
            let issuer = crate::membership::MemberId::parse_qualified(issuer);
            (rules.signing_key)(seq).is_some_and(|key| {
                issuer.is_ok_and(|issuer| registry.is_compromised_for(&issuer, &key, received))
            })
        })
    }

    /// The statement, if some lifecycle statement changed the states of its entries.
    fn lifecycle(
        &mut self,
        id: Option<&str>,
        seq: Option<u64>,
        issuer: Option<&str>,
        kind: Kind,
    ) -> Option<StatementId> {
        let id = StatementId::from_hex(id?)?;
        if !self.registry.lifecycle().names(&id) {
            return None;
        }
        let registry = self.registry;
        self.cache
            .entry(id)
            .or_insert_with(|| {
                let issuer = MemberId::parse_qualified(issuer?).ok()?;
                let target = Target {
                    id,
                    seq: seq?,
                    issuer: &issuer,
                    kind,
                };
                Some(registry.states(&target)).filter(|r| !r.is_plain())
            })
            .as_ref()
            .map(|_| id)
    }

    /// The standing of the statement of the row at `seq`: the last one's again when the row
    /// is of the same statement, else found from the row's facts (`facts`, read only then).
    fn standing<'r>(
        &mut self,
        seq: Option<u64>,
        kind: Kind,
        facts: impl FnOnce() -> RowFacts<'r>,
    ) -> Standing {
        if let (Some(seq), Some((last, standing))) = (seq, self.last)
            && seq == last
        {
            return standing;
        }
        let row = facts();
        let standing = Standing {
            lifecycle: self.lifecycle(row.id, row.seq, row.issuer, kind),
            compromised: self.compromised(
                row.seq,
                row.issuer,
                row.received_at_ms,
                row.compromised_column,
            ),
            expired: expired(row.expires_at_ms, self.rules.now_ms),
            expires_at_ms: row.expires_at_ms,
        };
        self.last = seq.map(|seq| (seq, standing));
        standing
    }

    /// The state of entry `index` of a statement; a row without its entry index (written
    /// before that column existed) is retracted or erased only with its whole statement.
    fn state(&self, standing: &Standing, index: Option<u32>) -> EntryState {
        let lifecycle = standing
            .lifecycle
            .and_then(|id| self.cache.get(&id))
            .and_then(Option::as_ref);
        let base = match (lifecycle, index) {
            (None, _) => EntryState::Active,
            (Some(r), Some(index)) => r.state(index),
            (Some(r), None) if r.retracted.erased_by.is_some() => EntryState::Erased,
            (Some(r), None) if r.retracted.all => EntryState::Retracted,
            (Some(_), None) => EntryState::Active,
        };
        base.with(standing.compromised, standing.expired)
    }
}

/// What one row says about its statement, besides its entries.
struct RowFacts<'r> {
    seq: Option<u64>,
    id: Option<&'r str>,
    issuer: Option<&'r str>,
    received_at_ms: Option<i64>,
    compromised_column: bool,
    expires_at_ms: Option<i64>,
}

/// What decides the states of one statement's entries, besides the entry itself.
#[derive(Clone, Copy)]
struct Standing {
    /// The statement, when some lifecycle statement changed its entries' states (its
    /// [`StatementStates`] are in [`States::cache`]).
    lifecycle: Option<StatementId>,
    compromised: bool,
    expired: bool,
    expires_at_ms: Option<i64>,
}

fn filter_jsonl(
    mut input: impl BufRead,
    states: &mut States<'_>,
    mut out: impl Write,
) -> std::io::Result<Pass> {
    let (rules, annotated) = (states.rules, states.rules.annotated());
    let mut pass = Pass::default();
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line)? == 0 {
            return Ok(pass);
        }
        let Ok(mut row) = serde_json::from_str::<serde_json::Value>(line.trim()) else {
            continue;
        };
        pass.read += 1;
        let seq = row.get("seq").and_then(serde_json::Value::as_u64);
        let text = |k: &str| row.get(k).and_then(|v| v.as_str());
        let signal = text("kind") == Some("risk_signal");
        let kind = if signal {
            Kind::RiskSignal
        } else {
            Kind::HashSet
        };
        let standing = states.standing(seq, kind, || RowFacts {
            seq,
            id: text("statement_id"),
            issuer: text("issuer"),
            received_at_ms: row
                .get("received_at_ms")
                .and_then(serde_json::Value::as_i64),
            compromised_column: row
                .get("compromised_keys")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|keys| !keys.is_empty()),
            expires_at_ms: row.get("expires_at_ms").and_then(serde_json::Value::as_i64),
        });
        let expires_at_ms = standing.expires_at_ms;
        if signal {
            let Some(indicators) = row.get_mut("indicators").and_then(|v| v.as_array_mut()) else {
                // A row without its indicators (not written by sync): whole statements only.
                if rules.keeps(states.state(&standing, None)) {
                    write_line(&mut out, line.as_bytes())?;
                    pass.kept_until(expires_at_ms, rules.now_ms);
                }
                continue;
            };
            let all = indicators.len();
            let mut kept_states = Vec::with_capacity(all);
            let mut index = 0u32;
            indicators.retain(|_| {
                let state = states.state(&standing, Some(index));
                index += 1;
                let keep = rules.keeps(state);
                if keep {
                    kept_states.push(serde_json::Value::from(state.name()));
                }
                keep
            });
            if indicators.is_empty() {
                continue;
            }
            if annotated {
                row["indicator_states"] = serde_json::Value::Array(kept_states);
            } else if indicators.len() == all {
                // Unchanged: the row as written.
                write_line(&mut out, line.as_bytes())?;
                pass.kept_until(expires_at_ms, rules.now_ms);
                continue;
            }
        } else {
            let entry = row
                .get("entry")
                .and_then(serde_json::Value::as_u64)
                .and_then(|e| u32::try_from(e).ok());
            let state = states.state(&standing, entry);
            if !rules.keeps(state) {
                continue;
            }
            if !annotated {
                write_line(&mut out, line.as_bytes())?;
                pass.kept_until(expires_at_ms, rules.now_ms);
                continue;
            }
            row["state"] = serde_json::Value::from(state.name());
        }
        serde_json::to_writer(&mut out, &row)?;
        out.write_all(b"\n")?;
        pass.kept_until(expires_at_ms, rules.now_ms);
    }
}

/// Writes one line or record as it was read, with one `\n`.
fn write_line(mut out: impl Write, line: &[u8]) -> std::io::Result<()> {
    out.write_all(without_line_end(line))?;
    out.write_all(b"\n")
}

/// `line` without the line break(s) it ends with.
fn without_line_end(line: &[u8]) -> &[u8] {
    let end = line
        .iter()
        .rposition(|b| !matches!(b, b'\r' | b'\n'))
        .map_or(0, |i| i + 1);
    &line[..end]
}

/// Copies the kept CSV records, unchanged ones as their bytes were read (parsing and writing
/// each again would double the work of a rewrite). A record is split on commas, or by the
/// `csv` crate when it holds a quote; one holding a line break spans lines (RFC 4180).
fn filter_csv(
    mut input: impl BufRead,
    states: &mut States<'_>,
    mut out: impl Write,
) -> std::io::Result<Pass> {
    let (rules, annotated) = (states.rules, states.rules.annotated());
    let mut pass = Pass::default();
    let mut raw = RawRecord {
        bytes: Vec::with_capacity(256),
        quoted: false,
    };
    let mut parsed = csv::ByteRecord::new();
    while raw.read(&mut input)? {
        if raw.bytes.trim_ascii().is_empty() {
            continue;
        }
        let fields = csv_fields(&raw, &mut parsed)?;
        let field = |i: usize| fields[i].and_then(|f| std::str::from_utf8(f).ok());
        let first = field(0).unwrap_or_default().trim();
        if first.eq_ignore_ascii_case(super::CSV_COLUMNS[0]) {
            write_record(
                &mut out,
                &raw.bytes,
                annotated.then_some(super::STATE_COLUMN),
            )?;
            continue;
        }
        pass.read += 1;
        let seq = first.parse().ok();
        let standing = states.standing(seq, Kind::HashSet, || RowFacts {
            seq,
            id: field(1),
            issuer: field(2),
            received_at_ms: field(3).and_then(|r| r.trim().parse().ok()),
            compromised_column: field(8).is_some_and(|k| !k.trim().is_empty()),
            expires_at_ms: field(10).and_then(|e| e.trim().parse().ok()),
        });
        let entry = field(9).and_then(|e| e.trim().parse().ok());
        let state = states.state(&standing, entry);
        if !rules.keeps(state) {
            continue;
        }
        write_record(&mut out, &raw.bytes, annotated.then(|| state.name()))?;
        pass.kept_until(standing.expires_at_ms, rules.now_ms);
    }
    out.flush()?;
    Ok(pass)
}

/// The columns of a CSV record the filter reads: the first [`CSV_COLUMNS`](super::CSV_COLUMNS)
/// (a missing one is `None`). A record without a quote is split at its commas in place; one
/// with a quote is parsed by the `csv` crate into `parsed`.
fn csv_fields<'a>(
    raw: &'a RawRecord,
    parsed: &'a mut csv::ByteRecord,
) -> std::io::Result<[Option<&'a [u8]>; super::CSV_COLUMNS.len()]> {
    let mut fields = [None; super::CSV_COLUMNS.len()];
    let line = without_line_end(&raw.bytes);
    if !raw.quoted {
        let mut start = 0;
        let ends = memchr::memchr_iter(b',', line).chain([line.len()]);
        for (field, end) in fields.iter_mut().zip(ends) {
            *field = line.get(start..end);
            start = end + 1;
        }
        return Ok(fields);
    }
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(line);
    reader
        .read_byte_record(parsed)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    for (i, field) in fields.iter_mut().enumerate() {
        *field = parsed.get(i);
    }
    Ok(fields)
}

/// The longest CSV record read (a statement is at most 16 MiB, and one row holds one of its
/// hashes): a quote left open in a damaged output stops the pass here instead of reading the
/// rest of the file into memory.
const MAX_CSV_RECORD: usize = 16 * 1024 * 1024;

/// A CSV record's bytes as read: its line(s), line break included.
struct RawRecord {
    bytes: Vec<u8>,
    /// It holds a quote: only the `csv` crate splits it.
    quoted: bool,
}

impl RawRecord {
    /// Reads the next record (a line, and the lines after it while a quoted field is still
    /// open); `false` at the end of the input.
    fn read(&mut self, input: &mut impl BufRead) -> std::io::Result<bool> {
        self.bytes.clear();
        self.quoted = false;
        loop {
            let from = self.bytes.len();
            if input.read_until(b'\n', &mut self.bytes)? == 0 {
                return Ok(!self.bytes.is_empty());
            }
            if self.bytes.len() > MAX_CSV_RECORD {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "a CSV record of the sync output is longer than 16 MiB (a quote left open?)",
                ));
            }
            self.quoted |= memchr::memchr(b'"', &self.bytes[from..]).is_some();
            // Quotes come in pairs outside a quoted field, `""` inside one: an odd count means
            // the record goes on past this line break.
            if !self.quoted
                || memchr::memchr_iter(b'"', &self.bytes)
                    .count()
                    .is_multiple_of(2)
            {
                return Ok(true);
            }
        }
    }
}

/// Writes a record as it was read, with `state` as a last field when given.
fn write_record(mut out: impl Write, raw: &[u8], state: Option<&str>) -> std::io::Result<()> {
    let Some(state) = state else {
        return write_line(out, raw);
    };
    out.write_all(without_line_end(raw))?;
    out.write_all(b",")?;
    out.write_all(state.as_bytes())?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "seq,statement_id,issuer,received_at_ms,type,hash,quality,labels,compromised_keys,entry,expires_at_ms\n";
    const ID: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    fn row(seq: u64, labels: &str, entry: u32, expires: &str) -> String {
        format!("{seq},{ID},acme,1000,md5,00ff,,{labels},,{entry},{expires}\n")
    }

    fn filtered(input: &str, states: &[EntryState], now_ms: i64) -> (String, Pass) {
        let registry = Registry::new();
        let no_key = |_| None;
        let rules = Rules {
            registry: &registry,
            now_ms,
            signing_key: &no_key,
            states,
        };
        let mut out = Vec::new();
        let pass = filter(input.as_bytes(), Format::Csv, &rules, &mut out).expect("filter");
        (String::from_utf8(out).expect("utf-8"), pass)
    }

    /// Rows kept unchanged are their bytes as read, quoted fields (a comma, a doubled quote, a
    /// line break) included; blank lines go, and a CRLF row ends in LF like the rest.
    #[test]
    fn kept_csv_rows_are_copied_as_read() {
        let quoted = row(2, "\"a,b \"\"c\"\"\nd\"", 0, "");
        let crlf = row(3, "x", 0, "").replace('\n', "\r\n");
        let input = format!("{HEADER}{}{quoted}\n{crlf}", row(1, "x", 0, ""));
        let (out, pass) = filtered(&input, &EntryState::MATCHING, 0);
        let expected = format!(
            "{HEADER}{}{quoted}{}",
            row(1, "x", 0, ""),
            row(3, "x", 0, "")
        );
        assert_eq!(out, expected);
        assert_eq!(
            pass,
            Pass {
                read: 3,
                kept: 3,
                next_expiry: None
            }
        );
    }

    /// Expiry is a statement's: its rows (consecutive, one seq) go together once it passes,
    /// and the earliest expiry still to come is when the snapshot is next due.
    #[test]
    fn an_expired_statements_rows_go_and_the_next_expiry_is_kept() {
        let input = format!(
            "{HEADER}{}{}{}{}",
            row(1, "x", 0, "500"),
            row(1, "x", 1, "500"),
            row(2, "x", 0, "2000"),
            row(3, "x", 0, "3000"),
        );
        let (out, pass) = filtered(&input, &EntryState::MATCHING, 1000);
        assert_eq!(
            out,
            format!(
                "{HEADER}{}{}",
                row(2, "x", 0, "2000"),
                row(3, "x", 0, "3000")
            )
        );
        assert_eq!(
            pass,
            Pass {
                read: 4,
                kept: 2,
                next_expiry: Some(2000)
            }
        );
    }

    /// Asked for other states, every row names its own in a last column, and a quoted record
    /// spanning lines still reads back as the same fields plus the state.
    #[test]
    fn annotated_csv_rows_gain_a_state_column() {
        let quoted = row(2, "\"a,\nb\"", 0, "");
        let input = format!("{HEADER}{}{quoted}", row(1, "x", 0, "500"));
        let (out, pass) = filtered(&input, &[EntryState::Active, EntryState::Expired], 1000);
        assert_eq!(pass.kept, 2);
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(out.as_bytes());
        let records: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("csv")).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(records[0].get(11), Some(super::super::STATE_COLUMN));
        assert_eq!(records[1].get(11), Some("expired"));
        assert_eq!(records[2].get(7), Some("a,\nb"));
        assert_eq!(records[2].get(11), Some("active"));
        assert_eq!(records[2].len(), 12);
    }
}
