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
            (rules.signing_key)(seq).is_some_and(|key| registry.is_compromised(&key, received))
        })
    }

    /// The lifecycle states of the statement's entries (`None`: all active).
    fn lifecycle(
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

/// What one row says about its statement, besides its entries.
struct RowFacts<'r> {
    seq: Option<u64>,
    id: Option<&'r str>,
    issuer: Option<&'r str>,
    received_at_ms: Option<i64>,
    compromised_column: bool,
    expires_at_ms: Option<i64>,
}

/// The state of each entry of one row's statement.
struct RowStates<'s> {
    lifecycle: Option<&'s StatementStates>,
    compromised: bool,
    expired: bool,
}

impl RowStates<'_> {
    fn of<'s>(states: &'s mut States<'_>, row: &RowFacts<'_>, kind: Kind) -> RowStates<'s> {
        let compromised = states.compromised(
            row.seq,
            row.issuer,
            row.received_at_ms,
            row.compromised_column,
        );
        let expired = expired(row.expires_at_ms, states.rules.now_ms);
        RowStates {
            lifecycle: states.lifecycle(row.id, row.seq, row.issuer, kind),
            compromised,
            expired,
        }
    }

    /// The state of entry `index`; a row without its entry index (written before that column
    /// existed) is retracted or erased only with its whole statement.
    fn state(&self, index: Option<u32>) -> EntryState {
        let base = match (self.lifecycle, index) {
            (None, _) => EntryState::Active,
            (Some(r), Some(index)) => r.state(index),
            (Some(r), None) if r.retracted.erased_by.is_some() => EntryState::Erased,
            (Some(r), None) if r.retracted.all => EntryState::Retracted,
            (Some(_), None) => EntryState::Active,
        };
        base.with(self.compromised, self.expired)
    }
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
        let text = |k: &str| row.get(k).and_then(|v| v.as_str()).map(str::to_owned);
        let (id, issuer, kind) = (text("statement_id"), text("issuer"), text("kind"));
        let facts = RowFacts {
            seq: row.get("seq").and_then(serde_json::Value::as_u64),
            id: id.as_deref(),
            issuer: issuer.as_deref(),
            received_at_ms: row
                .get("received_at_ms")
                .and_then(serde_json::Value::as_i64),
            compromised_column: row
                .get("compromised_keys")
                .and_then(serde_json::Value::as_array)
                .is_some_and(|keys| !keys.is_empty()),
            expires_at_ms: row.get("expires_at_ms").and_then(serde_json::Value::as_i64),
        };
        let expires_at_ms = facts.expires_at_ms;
        if kind.as_deref() == Some("risk_signal") {
            let entries = RowStates::of(states, &facts, Kind::RiskSignal);
            let Some(indicators) = row.get_mut("indicators").and_then(|v| v.as_array_mut()) else {
                // A row without its indicators (not written by sync): whole statements only.
                if rules.keeps(entries.state(None)) {
                    write_line(&mut out, &line)?;
                    pass.kept_until(expires_at_ms, rules.now_ms);
                }
                continue;
            };
            let all = indicators.len();
            let mut kept_states = Vec::with_capacity(all);
            let mut index = 0u32;
            indicators.retain(|_| {
                let state = entries.state(Some(index));
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
                write_line(&mut out, &line)?;
                pass.kept_until(expires_at_ms, rules.now_ms);
                continue;
            }
        } else {
            let entry = row
                .get("entry")
                .and_then(serde_json::Value::as_u64)
                .and_then(|e| u32::try_from(e).ok());
            let state = RowStates::of(states, &facts, Kind::HashSet).state(entry);
            if !rules.keeps(state) {
                continue;
            }
            if !annotated {
                write_line(&mut out, &line)?;
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

/// Writes one line as it was read, with one `\n`.
fn write_line(mut out: impl Write, line: &str) -> std::io::Result<()> {
    out.write_all(line.trim_end_matches(['\r', '\n']).as_bytes())?;
    out.write_all(b"\n")
}

fn filter_csv(
    input: impl BufRead,
    states: &mut States<'_>,
    out: impl Write,
) -> std::io::Result<Pass> {
    let (rules, annotated) = (states.rules, states.rules.annotated());
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
            if annotated {
                record.push_field(super::STATE_COLUMN);
            }
            writer.write_record(&record)?;
            continue;
        }
        pass.read += 1;
        let facts = RowFacts {
            seq: first.parse().ok(),
            id: record.get(1),
            issuer: record.get(2),
            received_at_ms: record.get(3).and_then(|r| r.trim().parse().ok()),
            compromised_column: record.get(8).is_some_and(|k| !k.trim().is_empty()),
            expires_at_ms: record.get(10).and_then(|e| e.trim().parse().ok()),
        };
        let entry = record.get(9).and_then(|e| e.trim().parse().ok());
        let state = RowStates::of(states, &facts, Kind::HashSet).state(entry);
        if !rules.keeps(state) {
            continue;
        }
        let expires_at_ms = facts.expires_at_ms;
        if annotated {
            let mut named = record.clone();
            named.push_field(state.name());
            writer.write_record(&named)?;
        } else {
            writer.write_record(&record)?;
        }
        pass.kept_until(expires_at_ms, rules.now_ms);
    }
    writer.flush()?;
    Ok(pass)
}
