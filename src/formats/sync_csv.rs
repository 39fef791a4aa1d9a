//! Sync's CSV output: its columns, the writer and the reader that takes it back. Both go
//! through the `csv` crate, so a field holding a comma, a quote or a line break is quoted
//! (RFC 4180) and can neither add a column nor start a row.

use super::{FormatError, HashLine, Row, parse_quality, split_labels};
use crate::statement::HashEntry;
use crate::sync::ReceivedEntry;
use std::io::{Read, Write};

/// The columns of sync's CSV output, in order.
pub const CSV_COLUMNS: [&str; 11] = [
    "seq",
    "statement_id",
    "issuer",
    "received_at_ms",
    "type",
    "hash",
    "quality",
    "labels",
    "compromised_keys",
    "entry",
    "expires_at_ms",
];

/// The CSV header sync writes: [`CSV_COLUMNS`] joined.
pub const CSV_HEADER: &str = "seq,statement_id,issuer,received_at_ms,type,hash,quality,labels,compromised_keys,entry,expires_at_ms\n";

/// The column a snapshot asked for other entry states than those that match adds after the
/// last of [`CSV_COLUMNS`]: each row's entry state.
pub const STATE_COLUMN: &str = "state";

/// Columns of sync CSV output written before the `entry` column, then before the
/// `expires_at_ms` column, was added (both still read).
const OLD_COLUMNS: [usize; 2] = [9, 10];

/// Separates the items of the `labels` and `compromised_keys` columns.
const LIST_SEPARATOR: &str = ";";

/// Writes the header row.
pub(super) fn write_header(out: impl Write) -> std::io::Result<()> {
    let mut csv = writer(out);
    csv.write_record(CSV_COLUMNS)?;
    csv.flush()?;
    Ok(())
}

/// Writes one row per hash of `entry` and returns how many. Every byte reaches `out` before
/// this returns: sync saves its cursor at the output's length.
pub(super) fn write_rows<'a>(
    out: impl Write,
    entry: &ReceivedEntry,
    hashes: impl Iterator<Item = (usize, &'a HashEntry)>,
) -> std::io::Result<u64> {
    let seq = entry.seq.to_string();
    let id = entry.id.to_string();
    let issuer = entry.statement.issuer.to_string();
    let received_at_ms = entry.received_at_ms.to_string();
    let compromised_keys = entry.compromised_keys.join(LIST_SEPARATOR);
    let expires_at_ms = entry
        .statement
        .body
        .expires_at_ms()
        .map(|t| t.to_string())
        .unwrap_or_default();
    let mut csv = writer(out);
    let mut rows = 0;
    for (index, h) in hashes {
        let labels: Vec<String> = h.labels.iter().map(ToString::to_string).collect();
        csv.write_record([
            seq.as_str(),
            &id,
            &issuer,
            &received_at_ms,
            h.hash_type.name(),
            &hex::encode(&h.value),
            &h.quality.map(|q| q.to_string()).unwrap_or_default(),
            &labels.join(LIST_SEPARATOR),
            &compromised_keys,
            &index.to_string(),
            &expires_at_ms,
        ])?;
        rows += 1;
    }
    csv.flush()?;
    Ok(rows)
}

/// A CSV writer with the crate's defaults: fields quoted only when they must be, `\n` ends a
/// record, no header of its own.
fn writer<W: Write>(out: W) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out)
}

/// Whether a (trimmed) line is the header of sync CSV output.
pub(super) fn is_header(text: &str) -> bool {
    text.split(',')
        .next()
        .is_some_and(|first| first.trim().eq_ignore_ascii_case(CSV_COLUMNS[0]))
}

/// Reads the records that follow the header (on line `header_line`) to the end of `input`.
pub(super) fn read(
    input: impl Read,
    path: &str,
    header_line: usize,
    out: &mut Vec<Row>,
) -> Result<(), FormatError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .comment(Some(b'#'))
        .from_reader(input);
    let mut record = csv::StringRecord::new();
    // The CSV reader counts lines from 1 at the line after the header.
    let line_of = |p: Option<&csv::Position>| header_line + p.map_or(1, |p| p.line() as usize);
    loop {
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                let line = line_of(e.position());
                let reason = match e.into_kind() {
                    csv::ErrorKind::Io(source) => {
                        return Err(FormatError::Io {
                            path: path.to_owned(),
                            source,
                        });
                    }
                    csv::ErrorKind::Utf8 { err, .. } => format!("not UTF-8: {err}"),
                    other => format!("not CSV: {other:?}"),
                };
                return Err(FormatError::Line {
                    path: path.to_owned(),
                    line,
                    reason,
                });
            }
        }
        let line = line_of(record.position());
        let err = |reason: String| FormatError::Line {
            path: path.to_owned(),
            line,
            reason,
        };
        let Some(row) = hash_line(&record).map_err(err)? else {
            continue;
        };
        out.push(Row {
            line,
            entry: row.to_entry().map_err(err)?,
            source: row,
        });
    }
}

/// One record; `None` for a blank line or a repeated header (outputs appended to each other).
/// Text columns are kept exactly as written; list columns are split on `;`.
fn hash_line(record: &csv::StringRecord) -> Result<Option<HashLine>, String> {
    let first = record.get(0).unwrap_or_default().trim();
    if (record.len() == 1 && first.is_empty()) || first.eq_ignore_ascii_case(CSV_COLUMNS[0]) {
        return Ok(None);
    }
    let annotated = CSV_COLUMNS.len() + 1;
    if record.len() != CSV_COLUMNS.len()
        && record.len() != annotated
        && !OLD_COLUMNS.contains(&record.len())
    {
        return Err(format!(
            "expected the {} columns of sync CSV output (or {annotated} with a snapshot's state), got {}",
            CSV_COLUMNS.len(),
            record.len()
        ));
    }
    Ok(Some(HashLine {
        kind: Some("hash".into()),
        seq: record[0].trim().parse().ok(),
        statement_id: Some(record[1].to_owned()),
        issuer: Some(record[2].to_owned()),
        received_at_ms: record[3].trim().parse().ok(),
        hash_type: record[4].trim().to_owned(),
        hash: record[5].to_owned(),
        quality: parse_quality(&record[6])?,
        labels: split_labels(&record[7]),
        compromised_keys: record[8]
            .split(LIST_SEPARATOR)
            .filter(|k| !k.is_empty())
            .map(str::to_owned)
            .collect(),
        entry: record.get(9).and_then(|e| e.trim().parse().ok()),
        expires_at_ms: record.get(10).and_then(|e| e.trim().parse().ok()),
        state: record.get(11).map(|s| s.trim().to_owned()),
    }))
}
