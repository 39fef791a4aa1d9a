//! File formats at the edge: hash lists (CSV `type,hash,labels[,quality]` or JSON Lines) and
//! risk-signal JSON that members submit, and the JSON Lines / CSV rows that sync writes.
//!
//! Input rows are converted to wire entries and validated by `statement`, so a file and a
//! gRPC request obey exactly the same rules; errors name the line.

use crate::lifecycle::EntryState;
use crate::pb;
use crate::statement::{Body, HashEntry, HashType, Indicator, RiskSignal, StatementError};
use crate::sync::ReceivedEntry;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::Path;
use thiserror::Error;

mod sync_csv;
pub mod sync_events;
pub mod sync_snapshot;

pub use sync_csv::{CSV_COLUMNS, CSV_HEADER, STATE_COLUMN};

/// PDQ quality assumed when a hash list gives none (lists exported without quality).
pub const DEFAULT_PDQ_QUALITY: u32 = 100;

/// A hash-list or output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

impl Format {
    /// Guesses from a file name: `.csv` is CSV, anything else JSON Lines.
    pub fn from_path(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()) {
            Some(ext) if ext.eq_ignore_ascii_case("csv") => Format::Csv,
            _ => Format::Jsonl,
        }
    }
}

/// A problem in an input file.
#[derive(Debug, Error)]
pub enum FormatError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A line is wrong.
    #[error("{path}:{line}: {reason}")]
    Line {
        /// The file.
        path: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

/// One hash as a JSON line. On input only `type`, `hash`, `labels` and `quality` are read; sync
/// output adds where the hash came from.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HashLine {
    /// `hash` for hash rows in sync output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Log position of the statement carrying it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The statement id, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement_id: Option<String>,
    /// Sync output: the hash's entry index in its hash set (what a retraction names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<u32>,
    /// Who shared it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// When the hub received it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub received_at_ms: Option<i64>,
    /// md5, sha1, sha256, pdq, photodna, url_md5 or vpdq (whose `hash` is the hex of its
    /// frames, docs/PROTOCOL.md §2.3).
    #[serde(rename = "type")]
    pub hash_type: String,
    /// The hash, hex.
    pub hash: String,
    /// PDQ quality.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quality: Option<u32>,
    /// Labels.
    #[serde(default)]
    pub labels: Vec<String>,
    /// Sync output: signer keys declared compromised by the time the hub received the
    /// statement; do not act on the hash without checking.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compromised_keys: Vec<String>,
    /// Sync output: when the statement's entries stop matching (ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
    /// A snapshot asked for other states than those that match (`coalition sync --states`):
    /// the entry's state when the snapshot was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

impl HashLine {
    /// Validates the row into a hash entry.
    pub fn to_entry(&self) -> Result<HashEntry, String> {
        let hash_type: HashType = self.hash_type.parse()?;
        let value = hex::decode(self.hash.trim())
            .map_err(|e| format!("hash '{}' is not hex: {e}", self.hash))?;
        let quality = match (hash_type, self.quality) {
            (HashType::Pdq, None) => Some(DEFAULT_PDQ_QUALITY),
            (_, q) => q,
        };
        let wire = pb::HashEntry {
            r#type: hash_type.to_wire() as i32,
            value,
            quality,
            labels: self.labels.clone(),
        };
        HashEntry::from_wire(wire, "entry").map_err(|e| match e {
            StatementError::Invalid { field, reason } => {
                format!("{}: {reason}", field.trim_start_matches("entry."))
            }
            other => other.to_string(),
        })
    }

    fn of(entry: &ReceivedEntry, index: usize, hash: &HashEntry) -> HashLine {
        HashLine {
            kind: Some("hash".into()),
            seq: Some(entry.seq),
            statement_id: Some(entry.id.to_string()),
            entry: Some(index as u32),
            issuer: Some(entry.statement.issuer.to_string()),
            received_at_ms: Some(entry.received_at_ms),
            hash_type: hash.hash_type.name().into(),
            hash: hex::encode(&hash.value),
            quality: hash.quality.map(u32::from),
            labels: hash.labels.iter().map(ToString::to_string).collect(),
            compromised_keys: entry.compromised_keys.clone(),
            expires_at_ms: entry.statement.body.expires_at_ms(),
            state: None,
        }
    }

    /// Whether a row of sync output should no longer be acted on at `now_ms`: its statement
    /// expired, its signing key was declared compromised by the time the hub received it, or
    /// the snapshot that holds it names a state that does not match.
    pub fn withdrawn_at(&self, now_ms: i64) -> bool {
        let state_withdraws = self
            .state
            .as_deref()
            .is_some_and(|s| !EntryState::parse(s).is_some_and(EntryState::matches));
        !self.compromised_keys.is_empty()
            || state_withdraws
            || crate::lifecycle::expiry::expired(self.expires_at_ms, now_ms)
    }
}

/// One hash read from a file, with its 1-based line number.
#[derive(Clone, Debug)]
pub struct Row {
    /// Where it is in the file.
    pub line: usize,
    /// The validated hash.
    pub entry: HashEntry,
    /// Provenance columns, when the file is sync output.
    pub source: HashLine,
}

/// Reads hashes from a file in any of the formats the CLI writes or accepts, detected line by
/// line: JSON Lines objects (`{"type","hash","labels","quality"}`, including sync output, whose
/// non-hash rows are skipped); hash-list CSV rows `type,hash[,labels[,quality]]` (optional
/// header `type,hash,...`; labels separated by `;` or spaces); or a bare 64-hex PDQ hash with
/// an optional `,quality` (ThreatExchange style). Sync's CSV (header `seq,statement_id,...`):
/// everything after its header is read by a CSV parser, so quoted fields (holding commas,
/// quotes or line breaks) read back exactly as [`EntryWriter`] wrote them. Blank lines and `#`
/// comments are skipped. PDQ quality defaults to 100.
pub fn read_rows(path: &Path) -> Result<Vec<Row>, FormatError> {
    let shown = path.display().to_string();
    let io = |source| FormatError::Io {
        path: shown.clone(),
        source,
    };
    let mut reader = std::io::BufReader::new(std::fs::File::open(path).map_err(io)?);
    let mut out = Vec::new();
    let mut line = String::new();
    let mut line_no = 0;
    loop {
        line.clear();
        if reader.read_line(&mut line).map_err(io)? == 0 {
            return Ok(out);
        }
        line_no += 1;
        let text = line.trim();
        if sync_csv::is_header(text) {
            sync_csv::read(reader, &shown, line_no, &mut out)?;
            return Ok(out);
        }
        let err = |reason: String| FormatError::Line {
            path: shown.clone(),
            line: line_no,
            reason,
        };
        let Some(row) = parse_line(text).map_err(err)? else {
            continue;
        };
        out.push(Row {
            line: line_no,
            entry: row.to_entry().map_err(err)?,
            source: row,
        });
    }
}

/// Largest vPDQ file read: 16 384 frames of about 80 characters, with room to spare.
pub const MAX_VPDQ_FILE_BYTES: u64 = 4 * 1024 * 1024;

/// Reads a vPDQ file in the reference tools' text format (one frame a line,
/// `frame_number,quality,pdq_hex,timestamp_seconds`; docs/PROTOCOL.md §2.3.2) as one hash
/// entry with `labels`; a malformed line is named with the reason.
pub fn read_vpdq(path: &Path, labels: &[String]) -> Result<HashEntry, FormatError> {
    let shown = path.display().to_string();
    let io = |source| FormatError::Io {
        path: shown.clone(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut text = String::new();
    std::io::Read::read_to_string(
        &mut std::io::Read::take(file, MAX_VPDQ_FILE_BYTES + 1),
        &mut text,
    )
    .map_err(io)?;
    if text.len() as u64 > MAX_VPDQ_FILE_BYTES {
        return Err(FormatError::Line {
            path: shown,
            line: 0,
            reason: format!("larger than {MAX_VPDQ_FILE_BYTES} bytes; not a vpdq file?"),
        });
    }
    let video = crate::matching::VpdqHash::parse_reference(&text).map_err(|e| match e {
        crate::matching::vpdq::VpdqError::Line { line, reason } => FormatError::Line {
            path: shown.clone(),
            line,
            reason,
        },
        other => FormatError::Line {
            path: shown.clone(),
            line: 0,
            reason: other.to_string(),
        },
    })?;
    vpdq_entry(&video, labels).map_err(|reason| FormatError::Line {
        path: shown,
        line: 0,
        reason,
    })
}

/// A vPDQ hash as the one hash entry (`vpdq` row) it is written as, with `labels`: the same
/// row whether it was read from a vPDQ file or computed from a video.
pub fn vpdq_entry(
    video: &crate::matching::VpdqHash,
    labels: &[String],
) -> Result<HashEntry, String> {
    let line = HashLine {
        hash_type: HashType::Vpdq.name().into(),
        hash: hex::encode(video.to_bytes()),
        labels: labels.to_vec(),
        ..Default::default()
    };
    line.to_entry()
}

/// Reads a hash list for submission (see [`read_rows`]).
pub fn read_hashes(path: &Path) -> Result<Vec<HashEntry>, FormatError> {
    Ok(read_rows(path)?.into_iter().map(|r| r.entry).collect())
}

/// An optional PDQ quality column.
fn parse_quality(q: &str) -> Result<Option<u32>, String> {
    let q = q.trim();
    if q.is_empty() {
        return Ok(None);
    }
    q.parse()
        .map(Some)
        .map_err(|_| format!("quality '{q}' is not a whole number 0..=100"))
}

/// A labels column: labels separated by `;` or spaces.
fn split_labels(labels: &str) -> Vec<String> {
    labels
        .split([';', ' '])
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_line(text: &str) -> Result<Option<HashLine>, String> {
    if text.is_empty() || text.starts_with('#') {
        return Ok(None);
    }
    if text.starts_with('{') {
        let value: serde_json::Value =
            serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
        // Sync output interleaves other rows (risk signals): only hash rows are read.
        if value.get("kind").is_some_and(|k| k != "hash") {
            return Ok(None);
        }
        let row: HashLine =
            serde_json::from_value(value).map_err(|e| format!("not a hash object: {e}"))?;
        return Ok(Some(row));
    }
    let cols: Vec<&str> = text.split(',').map(str::trim).collect();
    let first = cols.first().copied().unwrap_or_default();
    if first.eq_ignore_ascii_case("type") {
        return Ok(None);
    }
    let quality = |q: Option<&&str>| parse_quality(q.copied().unwrap_or_default());
    let labels = |l: Option<&&str>| split_labels(l.copied().unwrap_or_default());
    if first.parse::<HashType>().is_ok() {
        if cols.len() < 2 || cols.len() > 4 {
            return Err(format!(
                "expected 2 to 4 columns type,hash[,labels[,quality]], got {}",
                cols.len()
            ));
        }
        return Ok(Some(HashLine {
            hash_type: first.to_owned(),
            hash: cols[1].to_owned(),
            labels: labels(cols.get(2)),
            quality: quality(cols.get(3))?,
            ..Default::default()
        }));
    }
    if first.len() == 64 && cols.len() <= 2 {
        return Ok(Some(HashLine {
            hash_type: "pdq".into(),
            hash: first.to_owned(),
            quality: quality(cols.get(1))?,
            ..Default::default()
        }));
    }
    Err(format!(
        "'{}' is not a hash row: expected type,hash[,labels[,quality]], a 64-hex PDQ hash, or a JSON object",
        text.chars().take(80).collect::<String>()
    ))
}

/// A risk signal as a JSON file (see docs/PROTOCOL.md for the fields).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignalFile {
    /// sextortion, grooming, csam_distribution, trafficking or other.
    pub category: String,
    /// low, medium, high or critical.
    pub severity: String,
    /// One-line title.
    pub title: String,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Observables.
    pub indicators: Vec<IndicatorLine>,
    /// Milliseconds since the Unix epoch.
    pub first_seen_ms: i64,
    /// Milliseconds since the Unix epoch.
    pub last_seen_ms: i64,
    /// Optional expiry, milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at_ms: Option<i64>,
}

/// One indicator in a signal file or in sync output.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IndicatorLine {
    /// keyword, url, domain, account_handle or hash.
    #[serde(rename = "type")]
    pub indicator_type: String,
    /// The keyword, URL, domain or handle.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    /// For account handles.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub platform: String,
    /// For hash indicators.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<HashLine>,
}

impl SignalFile {
    /// Reads and validates a signal file.
    pub fn read(path: &Path) -> Result<RiskSignal, FormatError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| FormatError::Io {
            path: shown.clone(),
            source,
        })?;
        let err = |reason: String| FormatError::Line {
            path: shown.clone(),
            line: 1,
            reason,
        };
        let file: SignalFile =
            serde_json::from_str(&text).map_err(|e| err(format!("not a signal: {e}")))?;
        file.to_signal().map_err(err)
    }

    /// Validates into a risk signal.
    pub fn to_signal(&self) -> Result<RiskSignal, String> {
        use pb::IndicatorType as T;
        let category = crate::statement::SignalCategory::parse(&self.category)
            .ok_or_else(|| format!("category '{}' is not one of sextortion, grooming, csam_distribution, trafficking, other", self.category))?;
        let severity = crate::statement::Severity::parse(&self.severity).ok_or_else(|| {
            format!(
                "severity '{}' is not one of low, medium, high, critical",
                self.severity
            )
        })?;
        let mut indicators = Vec::with_capacity(self.indicators.len());
        for (i, ind) in self.indicators.iter().enumerate() {
            let t = match ind.indicator_type.as_str() {
                "keyword" => T::Keyword,
                "url" => T::Url,
                "domain" => T::Domain,
                "account_handle" => T::AccountHandle,
                "hash" => T::Hash,
                other => return Err(format!("indicators[{i}].type: unknown type '{other}'")),
            };
            let hash = match &ind.hash {
                Some(h) => Some(
                    h.to_entry()
                        .map_err(|e| format!("indicators[{i}].hash: {e}"))?
                        .to_wire(),
                ),
                None => None,
            };
            indicators.push(pb::Indicator {
                r#type: t as i32,
                value: ind.value.clone(),
                platform: ind.platform.clone(),
                hash,
            });
        }
        let wire = pb::RiskSignal {
            category: category.to_wire() as i32,
            severity: severity.to_wire() as i32,
            title: self.title.clone(),
            description: self.description.clone(),
            indicators,
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            expires_at_ms: self.expires_at_ms,
        };
        RiskSignal::from_wire(wire).map_err(|e| e.to_string())
    }

    fn of(signal: &RiskSignal) -> SignalFile {
        SignalFile {
            category: signal.category.name().into(),
            severity: signal.severity.name().into(),
            title: signal.title.clone(),
            description: signal.description.clone(),
            indicators: signal
                .indicators
                .iter()
                .map(|ind| IndicatorLine {
                    indicator_type: ind.type_name().into(),
                    value: match ind {
                        Indicator::Keyword(v) | Indicator::Url(v) | Indicator::Domain(v) => {
                            v.clone()
                        }
                        Indicator::AccountHandle { handle, .. } => handle.clone(),
                        Indicator::Hash(_) => String::new(),
                    },
                    platform: match ind {
                        Indicator::AccountHandle { platform, .. } => platform.clone(),
                        _ => String::new(),
                    },
                    hash: match ind {
                        Indicator::Hash(h) => Some(HashLine {
                            hash_type: h.hash_type.name().into(),
                            hash: hex::encode(&h.value),
                            quality: h.quality.map(u32::from),
                            labels: h.labels.iter().map(ToString::to_string).collect(),
                            ..Default::default()
                        }),
                        _ => None,
                    },
                })
                .collect(),
            first_seen_ms: signal.first_seen_ms,
            last_seen_ms: signal.last_seen_ms,
            expires_at_ms: signal.expires_at_ms,
        }
    }
}

/// A risk signal row in sync's JSON Lines output.
#[derive(Serialize)]
struct SignalLine<'a> {
    kind: &'static str,
    seq: u64,
    statement_id: String,
    issuer: &'a str,
    received_at_ms: i64,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    compromised_keys: &'a [String],
    #[serde(flatten)]
    signal: SignalFile,
}

/// Which hash rows to write: the hub selects whole statements, this narrows them to the hashes
/// asked for (empty = all).
#[derive(Clone, Debug, Default)]
pub struct RowFilter {
    /// Only these hash types.
    pub hash_types: Vec<HashType>,
    /// Only hashes with one of these labels.
    pub labels: Vec<crate::statement::Label>,
}

impl RowFilter {
    fn keeps(&self, h: &HashEntry) -> bool {
        (self.hash_types.is_empty() || self.hash_types.contains(&h.hash_type))
            && (self.labels.is_empty() || h.labels.iter().any(|l| self.labels.contains(l)))
    }
}

/// Writes verified sync entries: JSON Lines (one row per hash, one per risk signal) or CSV
/// (one row per hash; risk signals are counted and skipped).
pub struct EntryWriter<W: Write> {
    out: W,
    format: Format,
    filter: RowFilter,
    /// Rows written.
    pub rows: u64,
    /// Risk signals skipped (CSV only).
    pub skipped_signals: u64,
}

impl<W: Write> EntryWriter<W> {
    /// A writer; `header` writes the CSV header first (for a new file).
    pub fn new(
        mut out: W,
        format: Format,
        header: bool,
        filter: RowFilter,
    ) -> std::io::Result<Self> {
        if header && format == Format::Csv {
            sync_csv::write_header(&mut out)?;
        }
        Ok(EntryWriter {
            out,
            format,
            filter,
            rows: 0,
            skipped_signals: 0,
        })
    }

    /// Writes one entry's rows.
    pub fn write(&mut self, entry: &ReceivedEntry) -> std::io::Result<()> {
        match (&entry.statement.body, self.format) {
            (Body::HashSet(set), Format::Jsonl) => {
                for (i, h) in set.entries.iter().enumerate() {
                    if !self.filter.keeps(h) {
                        continue;
                    }
                    serde_json::to_writer(&mut self.out, &HashLine::of(entry, i, h))?;
                    self.out.write_all(b"\n")?;
                    self.rows += 1;
                }
            }
            (Body::HashSet(set), Format::Csv) => {
                let hashes = set
                    .entries
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| self.filter.keeps(h));
                self.rows += sync_csv::write_rows(&mut self.out, entry, hashes)?;
            }
            (Body::RiskSignal(signal), Format::Jsonl) => {
                let line = SignalLine {
                    kind: "risk_signal",
                    seq: entry.seq,
                    statement_id: entry.id.to_string(),
                    issuer: entry.statement.issuer.as_str(),
                    received_at_ms: entry.received_at_ms,
                    compromised_keys: &entry.compromised_keys,
                    signal: SignalFile::of(signal),
                };
                serde_json::to_writer(&mut self.out, &line)?;
                self.out.write_all(b"\n")?;
                self.rows += 1;
            }
            (Body::RiskSignal(_), Format::Csv) => self.skipped_signals += 1,
            // Membership is for auditors and admins, not for a moderation pipeline.
            (
                Body::Genesis(_)
                | Body::Membership(_)
                | Body::Settings(_)
                | Body::Retraction(_)
                | Body::Opinion(_),
                _,
            ) => {}
        }
        Ok(())
    }

    /// Flushes and returns the inner writer.
    pub fn into_inner(mut self) -> std::io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }

    /// The inner writer.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }
}
