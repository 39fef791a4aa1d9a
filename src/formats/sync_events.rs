//! Sync's events file (`<out>.events`, JSON Lines): what changed in the member's copy, one
//! event per line, appended as batches are proven and saved with the cursor.
//!
//! - `added`: a statement's rows were written to the output;
//! - `state_changed`: entries of a statement this member holds changed state (`from`, `to`),
//!   with the lifecycle statement that decided it (`by`);
//! - `removed`: those entries left what should match (the `--snapshot` file); `restored`: they
//!   came back (a compromise revocation voided the retraction, a quarantine was lifted).

use crate::sync::{ReceivedEntry, StateChange};
use serde::Serialize;
use std::io::Write;

/// The lifecycle statement behind a state change.
#[derive(Serialize)]
struct Cause<'a> {
    kind: &'static str,
    statement_id: String,
    seq: u64,
    issuer: &'a str,
    admin_quorum: bool,
    /// A retraction's reason, an opinion's note.
    reason: &'a str,
    /// An opinion's verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    verdict: Option<&'static str>,
}

impl<'a> Cause<'a> {
    fn of(cause: &'a crate::sync::Cause) -> Self {
        use crate::sync::Cause as C;
        match cause {
            C::Retraction(r) => Cause {
                kind: if r.retraction.erase {
                    "erasure"
                } else {
                    "retraction"
                },
                statement_id: r.id.to_string(),
                seq: r.position.seq,
                issuer: r.issuer.as_str(),
                admin_quorum: r.retraction.admin_quorum,
                reason: &r.retraction.reason,
                verdict: None,
            },
            C::Opinion(o) => Cause {
                kind: "opinion",
                statement_id: o.id.to_string(),
                seq: o.position.seq,
                issuer: o.issuer.as_str(),
                admin_quorum: o.opinion.admin_quorum,
                reason: &o.opinion.note,
                verdict: Some(o.opinion.verdict.name()),
            },
            C::Governance { id, seq, issuer } => Cause {
                kind: "governance",
                statement_id: id.to_string(),
                seq: *seq,
                issuer: issuer.as_str(),
                admin_quorum: true,
                reason: "",
                verdict: None,
            },
        }
    }
}

#[derive(Serialize)]
struct Event<'a> {
    event: &'static str,
    seq: u64,
    statement_id: String,
    issuer: &'a str,
    /// Entry indexes; absent: every entry of the statement.
    #[serde(skip_serializing_if = "Option::is_none")]
    entries: Option<&'a [u32]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rows: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    to: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    by: Option<Cause<'a>>,
}

/// Writes an `added` event: `rows` rows of `entry` written to the output.
pub fn added(mut out: impl Write, entry: &ReceivedEntry, rows: u64) -> std::io::Result<()> {
    let event = Event {
        event: "added",
        seq: entry.seq,
        statement_id: entry.id.to_string(),
        issuer: entry.statement.issuer.as_str(),
        entries: None,
        kind: Some(entry.statement.kind().name()),
        rows: Some(rows),
        from: None,
        to: None,
        by: None,
    };
    serde_json::to_writer(&mut out, &event)?;
    out.write_all(b"\n")
}

/// Writes a `state_changed` event, then `removed` or `restored` if the statement's rows are
/// in the output and they left or rejoined what should match.
pub fn changed(mut out: impl Write, change: &StateChange) -> std::io::Result<()> {
    let mut event = Event {
        event: "state_changed",
        seq: change.seq,
        statement_id: change.statement_id.to_string(),
        issuer: change.issuer.as_str(),
        entries: change.entries.as_deref(),
        kind: None,
        rows: None,
        from: Some(change.from.name()),
        to: Some(change.to.name()),
        by: Some(Cause::of(&change.cause)),
    };
    serde_json::to_writer(&mut out, &event)?;
    out.write_all(b"\n")?;
    if change.written && change.from.matches() != change.to.matches() {
        event.event = if change.to.matches() {
            "restored"
        } else {
            "removed"
        };
        event.from = None;
        event.to = None;
        event.by = None;
        serde_json::to_writer(&mut out, &event)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}
