//! A member's snapshot (`coalition sync --snapshot FILE`): the rows of its sync output whose
//! entries should match now. The sync output is the history of everything shared (append-only,
//! resumable by its length); the snapshot is derived from it and the lifecycle state the
//! member's replica replayed, so it can be rebuilt at any time: whole after a batch that
//! changes an entry's state, extended by the new rows otherwise.
//!
//! A row is left out when its entry's state does not match
//! ([`crate::lifecycle::EntryState::matches`]: retracted, quarantined): a hash row by its `entry`
//! index (rows written before that column existed carry none: only whole-statement retractions
//! remove them), a risk signal row loses the indicators retracted and goes when none is left.
//! A row also goes when its statement is expired at the pass's clock, or compromised: its
//! `compromised_keys` column says so (known when it was written), or its signing key (from the
//! member's ids file, [`Rules::signing_key`]) was declared compromised later from a time at or
//! before the hub received it.

use super::Format;
use crate::lifecycle::expiry::expired;
use crate::lifecycle::{StatementStates, Target};
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
    fn kept_until(&mut self, expires_at_ms: Option<i64>) {
        self.kept += 1;
        if let Some(at) = expires_at_ms {
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
    let mut out = std::io::BufWriter::new(File::create(&tmp)?);
    let input = BufReader::with_capacity(1 << 20, File::open(output)?);
    let pass = filter(input, format, rules, &mut out)?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
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

fn temporary(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// Copies the rows of `input` whose entries are active to `out`.
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
        compromised_since: rules
            .registry
            .members()
            .filter_map(|m| {
                let since = rules.registry.compromised_since(&m.id)?;
                Some((m.id.as_str().to_owned(), since))
            })
            .collect(),
        compromised: HashMap::new(),
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
}

impl States<'_> {
    /// Whether a row of the statement at `seq` goes whatever its entry: expired, or
    /// compromised (by its own column, or by a compromise declared after it was written).
    fn withdrawn(
        &mut self,
        seq: Option<u64>,
        issuer: Option<&str>,
        received_at_ms: Option<i64>,
        compromised_column: bool,
        expires_at_ms: Option<i64>,
    ) -> bool {
        if compromised_column || expired(expires_at_ms, self.rules.now_ms) {
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
            (rules.signing_key)(seq).is_some_and(|key| registry.is_compromised(&key, received))
        })
    }

    fn retracted(
        &mut self,
        id: Option<&str>,
        seq: Option<u64>,
        issuer: Option<&str>,
        kind: Kind,
    ) -> Option<&StatementStates> {
        let id = StatementId::from_hex(id?)?;
        if !self.registry.lifecycle().names(&id) {
            return None;
        }
        let registry = self.registry;
        self.cache
            .entry(id)
            .or_insert_with(|| {
                let issuer = MemberId::parse(issuer?).ok()?;
                let target = Target {
                    id,
                    seq: seq?,
                    issuer: &issuer,
                    kind,
                };
                Some(registry.states(&target)).filter(|r| !r.is_plain())
            })
            .as_ref()
    }
}

fn keeps_hash(states: Option<&StatementStates>, entry: Option<u32>) -> bool {
    match (states, entry) {
        (None, _) => true,
        (Some(r), _) if r.retracted.all => false,
        (Some(r), Some(index)) => r.state(index).matches(),
        // A row without its entry index: only a whole retraction removes it.
        (Some(_), None) => true,
    }
}

fn filter_jsonl(
    mut input: impl BufRead,
    states: &mut States<'_>,
    mut out: impl Write,
) -> std::io::Result<Pass> {
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
        let text = |k: &str| row.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let seq = row.get("seq").and_then(serde_json::Value::as_u64);
        let (id, issuer) = (text("statement_id"), text("issuer"));
        let expires_at_ms = row.get("expires_at_ms").and_then(serde_json::Value::as_i64);
        let compromised_column = row
            .get("compromised_keys")
            .and_then(serde_json::Value::as_array)
            .is_some_and(|keys| !keys.is_empty());
        if states.withdrawn(
            seq,
            issuer.as_deref(),
            row.get("received_at_ms")
                .and_then(serde_json::Value::as_i64),
            compromised_column,
            expires_at_ms,
        ) {
            continue;
        }
        let keep = match text("kind").as_deref() {
            Some("risk_signal") => {
                match states.retracted(id.as_deref(), seq, issuer.as_deref(), Kind::RiskSignal) {
                    None => true,
                    Some(r) if r.retracted.all => false,
                    Some(r) => {
                        let r = r.clone();
                        match row.get_mut("indicators").and_then(|v| v.as_array_mut()) {
                            Some(indicators) => {
                                let mut index = 0u32;
                                indicators.retain(|_| {
                                    index += 1;
                                    r.state(index - 1).matches()
                                });
                                if indicators.is_empty() {
                                    false
                                } else {
                                    serde_json::to_writer(&mut out, &row)?;
                                    out.write_all(b"\n")?;
                                    pass.kept_until(expires_at_ms);
                                    continue;
                                }
                            }
                            None => true,
                        }
                    }
                }
            }
            _ => {
                let entry = row
                    .get("entry")
                    .and_then(serde_json::Value::as_u64)
                    .and_then(|e| u32::try_from(e).ok());
                keeps_hash(
                    states.retracted(id.as_deref(), seq, issuer.as_deref(), Kind::HashSet),
                    entry,
                )
            }
        };
        if keep {
            out.write_all(line.trim_end_matches(['\r', '\n']).as_bytes())?;
            out.write_all(b"\n")?;
            pass.kept_until(expires_at_ms);
        }
    }
}

fn filter_csv(
    input: impl BufRead,
    states: &mut States<'_>,
    out: impl Write,
) -> std::io::Result<Pass> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let mut writer = csv::WriterBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_writer(out);
    let mut pass = Pass::default();
    let mut record = csv::StringRecord::new();
    while reader
        .read_record(&mut record)
        .map_err(|e| std::io::Error::other(e.to_string()))?
    {
        let first = record.get(0).unwrap_or_default().trim();
        if first.eq_ignore_ascii_case(super::CSV_COLUMNS[0]) {
            writer.write_record(&record)?;
            continue;
        }
        pass.read += 1;
        let seq = first.parse().ok();
        let entry = record.get(9).and_then(|e| e.trim().parse().ok());
        let expires_at_ms = record.get(10).and_then(|e| e.trim().parse().ok());
        let compromised_column = record.get(8).is_some_and(|k| !k.trim().is_empty());
        let received_at_ms = record.get(3).and_then(|r| r.trim().parse().ok());
        if states.withdrawn(
            seq,
            record.get(2),
            received_at_ms,
            compromised_column,
            expires_at_ms,
        ) {
            continue;
        }
        let retracted = states.retracted(record.get(1), seq, record.get(2), Kind::HashSet);
        if keeps_hash(retracted, entry) {
            writer.write_record(&record)?;
            pass.kept_until(expires_at_ms);
        }
    }
    writer.flush()?;
    Ok(()).map(|()| pass)
}
