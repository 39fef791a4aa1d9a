//! The journal's lines: the serializable records and the order they must come in.

use super::{JOURNAL_FORMAT, Receipt, SubmissionDigest};
use crate::log::LeafIndex;
use crate::statement::{MAX_PAYLOAD_BYTES, StatementId};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Read};

/// Longest line read: an envelope of twice the largest body, base64-encoded, and the record's
/// other fields.
pub(super) const MAX_LINE_BYTES: usize = 2 * MAX_PAYLOAD_BYTES / 3 * 4 + 4096;

/// The serializable counterpart of the journal: one line each.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "snake_case")]
pub(super) enum Record {
    Journal {
        format: u32,
        digest: String,
        member: String,
        key_id: String,
        input: String,
        created_at_ms: i64,
    },
    Statement {
        index: usize,
        id: String,
        envelope: String,
    },
    Signed {
        statements: usize,
    },
    Ack {
        index: usize,
        seq: u64,
        id: String,
        received_at_ms: i64,
        already_present: bool,
    },
    Complete {
        at_ms: i64,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) enum Stage {
    #[default]
    Header,
    Statements,
    Acks,
    Complete,
}

/// The records of a journal, checked in order.
#[derive(Default)]
pub(super) struct Parser {
    pub(super) stage: Stage,
    pub(super) digest: Option<SubmissionDigest>,
    pub(super) ids: Vec<StatementId>,
    pub(super) receipts: Vec<Option<Receipt>>,
    pub(super) completed_at_ms: Option<i64>,
}

impl Parser {
    pub(super) fn apply(&mut self, record: Record) -> Result<(), String> {
        match (self.stage, record) {
            (Stage::Header, Record::Journal { format, digest, .. }) => {
                if format != JOURNAL_FORMAT {
                    return Err(format!(
                        "journal format {format}, this coalition reads {JOURNAL_FORMAT}"
                    ));
                }
                let mut d = [0u8; 32];
                hex::decode_to_slice(&digest, &mut d)
                    .map_err(|_| format!("digest '{digest}' is not 64 hex digits"))?;
                self.digest = Some(SubmissionDigest(d));
                self.stage = Stage::Statements;
            }
            (Stage::Header, _) => return Err("expected the \"journal\" record first".into()),
            (Stage::Statements, Record::Statement { index, id, .. }) => {
                if index != self.ids.len() {
                    return Err(format!(
                        "statement {index} where statement {} was due",
                        self.ids.len()
                    ));
                }
                self.ids.push(statement_id(&id)?);
            }
            (Stage::Statements, Record::Signed { statements }) => {
                if statements != self.ids.len() {
                    return Err(format!(
                        "\"signed\" counts {statements} statements, the journal holds {}",
                        self.ids.len()
                    ));
                }
                self.receipts = vec![None; statements];
                self.stage = Stage::Acks;
            }
            (
                Stage::Acks,
                Record::Ack {
                    index,
                    seq,
                    id,
                    received_at_ms,
                    already_present,
                },
            ) => {
                let Some(&expected) = self.ids.get(index) else {
                    return Err(format!(
                        "ack of statement {index}, the journal holds {}",
                        self.ids.len()
                    ));
                };
                let receipt = Receipt {
                    seq: LeafIndex(seq),
                    id: statement_id(&id)?,
                    received_at_ms,
                    already_present,
                };
                if receipt.id != expected {
                    return Err(format!("ack of statement {index} names {}", receipt.id));
                }
                match &self.receipts[index] {
                    None => self.receipts[index] = Some(receipt),
                    Some(r) if r.seq == receipt.seq => {}
                    Some(r) => {
                        return Err(format!(
                            "statement {index} acknowledged at seq {} and at seq {}",
                            r.seq, receipt.seq
                        ));
                    }
                }
            }
            (Stage::Acks, Record::Complete { at_ms }) => {
                if let Some(index) = self.receipts.iter().position(Option::is_none) {
                    return Err(format!(
                        "\"complete\" while statement {index} is not acknowledged"
                    ));
                }
                self.completed_at_ms = Some(at_ms);
                self.stage = Stage::Complete;
            }
            (Stage::Complete, _) => return Err("a record after \"complete\"".into()),
            (stage, record) => {
                return Err(format!(
                    "unexpected \"{}\" record {}",
                    record.name(),
                    stage.where_()
                ));
            }
        }
        Ok(())
    }
}

impl Record {
    fn name(&self) -> &'static str {
        match self {
            Record::Journal { .. } => "journal",
            Record::Statement { .. } => "statement",
            Record::Signed { .. } => "signed",
            Record::Ack { .. } => "ack",
            Record::Complete { .. } => "complete",
        }
    }
}

impl Stage {
    fn where_(self) -> &'static str {
        match self {
            Stage::Header => "at the start",
            Stage::Statements => "among the statements",
            Stage::Acks => "among the acks",
            Stage::Complete => "after completion",
        }
    }
}

fn statement_id(hex: &str) -> Result<StatementId, String> {
    StatementId::from_hex(hex).ok_or_else(|| format!("statement id '{hex}' is not 64 hex digits"))
}

/// Reads one line (with its newline, if any) into `buf`, at most `MAX_LINE_BYTES + 1` bytes.
pub(super) fn read_line(reader: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.clear();
    reader
        .by_ref()
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', buf)
}
