//! Sync's CSV output goes through a CSV writer: a value holding a comma, a quote or a line
//! break is quoted, stays in its column and its row, and reads back exactly, with the csv crate
//! and with `formats::read_rows` (which `coalition match --index FILE.csv` uses).

use coalition_hub::formats::{CSV_COLUMNS, CSV_HEADER, EntryWriter, Format, RowFilter, read_rows};
use coalition_hub::membership::{KeyId, MemberId};
use coalition_hub::statement::{
    Body, Category, HashEntry, HashSet, HashType, Label, Statement, StatementId,
};
use coalition_hub::sync::ReceivedEntry;
use ed25519_dalek::SigningKey;

/// Compromised key ids as a hostile hub could send them: the reader must not take them apart.
const HOSTILE_KEYS: [&str; 2] = ["k1,\"x\"\nseq,forged,row", "k2\r\n,,,"];

/// A hash set of `acme` at log position `seq`: a sha256 hash labelled `labels`, and a PDQ hash.
fn entry(seq: u8, labels: Vec<Label>, compromised_keys: &[&str]) -> ReceivedEntry {
    let key = SigningKey::from_bytes(&[seq; 32]);
    ReceivedEntry {
        seq: u64::from(seq),
        received_at_ms: 1_700_000_000_000 + i64::from(seq),
        id: StatementId([seq; 32]),
        statement: Statement {
            issuer: MemberId::parse("acme").expect("id"),
            key_id: KeyId::of(&key.verifying_key()),
            issued_at_ms: 1_700_000_000_000,
            nonce: Default::default(),
            body: Body::HashSet(HashSet {
                expires_at_ms: None,
                description: String::new(),
                entries: vec![
                    HashEntry {
                        hash_type: HashType::Sha256,
                        value: vec![seq; 32],
                        quality: None,
                        labels,
                    },
                    HashEntry {
                        hash_type: HashType::Pdq,
                        value: vec![0xa0 | seq; 32],
                        quality: Some(90),
                        labels: vec![Label::Category(Category::A1)],
                    },
                ],
            }),
        },
        compromised_keys: compromised_keys.iter().map(|k| k.to_string()).collect(),
    }
}

/// What the CSV writer writes for `entries`: a fresh file (header), then an append (none).
fn write_csv(entries: &[ReceivedEntry]) -> Vec<u8> {
    let (first, rest) = entries.split_first().expect("an entry");
    let mut w = EntryWriter::new(Vec::new(), Format::Csv, true, RowFilter::default()).expect("new");
    w.write(first).expect("write");
    let mut out = w.into_inner().expect("inner");
    let mut w = EntryWriter::new(&mut out, Format::Csv, false, RowFilter::default()).expect("new");
    for e in rest {
        w.write(e).expect("write");
    }
    assert_eq!(w.rows, 2 * rest.len() as u64);
    out
}

fn records(csv: &[u8]) -> Vec<csv::StringRecord> {
    let mut reader = csv::ReaderBuilder::new().from_reader(csv);
    let header = reader.headers().expect("header").clone();
    assert_eq!(header.iter().collect::<Vec<_>>(), CSV_COLUMNS);
    reader.records().map(|r| r.expect("record")).collect()
}

#[test]
fn header_is_the_columns() {
    assert_eq!(CSV_HEADER, format!("{}\n", CSV_COLUMNS.join(",")));
    let out = EntryWriter::new(Vec::new(), Format::Csv, true, RowFilter::default())
        .expect("new")
        .into_inner()
        .expect("inner");
    assert_eq!(String::from_utf8(out).expect("utf-8"), CSV_HEADER);
}

#[test]
fn a_label_with_a_comma_and_a_newline_stays_one_record() {
    // Label::Tag is not validated here; a CSV writer must cope with any text.
    let label = Label::Tag("tag,with\n\"quotes\",\r\nand a line".into());
    let csv = write_csv(&[entry(
        1,
        vec![label.clone(), Label::Category(Category::B2)],
        &[],
    )]);
    let records = records(&csv);
    assert_eq!(records.len(), 2, "{}", String::from_utf8_lossy(&csv));
    assert_eq!(&records[0][7], format!("{label};B2"));
    assert_eq!(&records[1][7], "A1");
    for r in &records {
        assert_eq!(r.len(), CSV_COLUMNS.len());
        assert_eq!(&r[2], "acme");
    }
}

#[test]
fn compromised_key_ids_with_commas_and_newlines_stay_one_record_each() {
    let entries = [
        entry(1, vec![], &[]),
        entry(2, vec![Label::Tag("t".into())], &HOSTILE_KEYS),
        entry(3, vec![], &["plain"]),
    ];
    let csv = write_csv(&entries);
    let records = records(&csv);
    assert_eq!(records.len(), 6, "{}", String::from_utf8_lossy(&csv));
    let seqs: Vec<&str> = records.iter().map(|r| &r[0]).collect();
    assert_eq!(seqs, ["1", "1", "2", "2", "3", "3"]);
    assert_eq!(&records[2][8], HOSTILE_KEYS.join(";"));
    assert_eq!(&records[4][8], "plain");
}

#[test]
fn read_rows_reads_back_exactly_what_was_written() {
    let entries = [
        entry(1, vec![Label::Category(Category::A2)], &[]),
        entry(2, vec![Label::Tag("t".into())], &HOSTILE_KEYS),
        entry(3, vec![], &["plain"]),
    ];
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("sync.csv");
    std::fs::write(&path, write_csv(&entries)).expect("write");
    let rows = read_rows(&path).expect("read");
    assert_eq!(rows.len(), 6);
    for (row, (e, i)) in rows
        .iter()
        .zip(entries.iter().flat_map(|e| [(e, 0), (e, 1)]))
    {
        let Body::HashSet(set) = &e.statement.body else {
            unreachable!("hash sets only")
        };
        assert_eq!(row.entry, set.entries[i]);
        assert_eq!(row.source.seq, Some(e.seq));
        assert_eq!(row.source.statement_id, Some(e.id.to_string()));
        assert_eq!(row.source.issuer.as_deref(), Some("acme"));
        assert_eq!(row.source.received_at_ms, Some(e.received_at_ms));
        assert_eq!(row.source.compromised_keys, e.compromised_keys);
    }
    // Line numbers are where each record starts: the hostile key ids add two line breaks.
    let lines: Vec<usize> = rows.iter().map(|r| r.line).collect();
    assert_eq!(lines, [2, 3, 4, 7, 10, 11]);
}
