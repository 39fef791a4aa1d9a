//! A transparency-log witness (C2SP tlog-witness, c2sp.org/tlog-witness): it cosigns a log's
//! checkpoint only if it is consistent with the latest one it cosigned for that log, so two
//! members shown two different histories by one hub cannot both get the witness's cosignature.
//!
//! This module is the witness's decision, free of transport and storage: the `add-checkpoint`
//! request body ([`AddCheckpoint`]), the logs it serves ([`TrustedLogs`]), what it last
//! cosigned per log ([`Latest`]) and the verdict ([`decide`]) with the spec's HTTP status for
//! each refusal ([`Refusal::status`]). [`store`] persists [`Latest`] in sled (durable before the
//! answer), [`cosigning`] puts key, logs and state together, [`http`] serves the spec's HTTP API and [`client`] calls it.
//! [`policy`] is the coalition's witness policy (which witnesses, what quorum) that the hub
//! follows and members check.

pub mod client;
pub mod cosigning;
pub mod http;
pub mod policy;
pub mod store;

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::log::{
    Checkpoint, CheckpointError, Hash, TreeSize, VerifierKey, VerifyError, empty_root,
    verify_consistency, verify_note,
};

/// Most consistency-proof lines in a request (the spec: a client MUST NOT send more than 63).
pub const MAX_PROOF_LINES: usize = 63;

/// Largest `add-checkpoint` request body accepted, in bytes: an old-size line, 63 proof lines
/// (45 bytes each) and a checkpoint note with up to 100 signature lines fit well within it.
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;

/// The content type of a 409 answer's body (the latest cosigned size).
pub const SIZE_CONTENT_TYPE: &str = "text/x.tlog.size";

/// A parsed `add-checkpoint` request body: `old <size>\n`, proof lines, a blank line, the
/// signed checkpoint note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddCheckpoint {
    /// The size of the checkpoint the proof starts from.
    pub old_size: u64,
    /// The consistency proof from `old_size` to the checkpoint's size.
    pub proof: Vec<Hash>,
    /// The signed checkpoint note, signature lines included.
    pub checkpoint: String,
}

/// Why a witness does not cosign, with the status the spec gives it.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum Refusal {
    /// 400: the request body is malformed, or the old size is above the checkpoint's.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 403: no signature by a key this witness trusts for the origin verifies.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: this witness serves no log with that origin.
    #[error("unknown log origin {0:?}: this witness is not configured for it")]
    UnknownOrigin(String),
    /// 409: the old size is not the size this witness last cosigned (the body says which).
    #[error(
        "conflict: the request's old size is {old}, but the latest checkpoint this witness cosigned for this log has size {latest}"
    )]
    Conflict {
        /// The old size of the request.
        old: u64,
        /// The latest cosigned size.
        latest: u64,
    },
    /// 422: the checkpoint is not consistent with what this witness cosigned before.
    #[error("unprocessable: {0}")]
    Inconsistent(String),
}

impl Refusal {
    /// The HTTP status code c2sp.org/tlog-witness gives this refusal.
    pub fn status(&self) -> u16 {
        match self {
            Refusal::BadRequest(_) => 400,
            Refusal::Forbidden(_) => 403,
            Refusal::UnknownOrigin(_) => 404,
            Refusal::Conflict { .. } => 409,
            Refusal::Inconsistent(_) => 422,
        }
    }
}

/// What a witness last cosigned for one log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Latest {
    /// The checkpoint's size.
    pub size: u64,
    /// Its root hash.
    pub root: Hash,
    /// The checkpoint note as served to monitors: its text, the log's signature lines the
    /// witness verified and the witness's cosignature.
    pub note: String,
}

/// The logs a witness serves: for each origin, the log's note verifier keys (more than one
/// while the log rotates its key).
#[derive(Clone, Debug, Default)]
pub struct TrustedLogs {
    by_origin: BTreeMap<String, Vec<VerifierKey>>,
}

/// A checkpoint that passed every check, ready to be cosigned and recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// The origin, size and root.
    pub checkpoint: Checkpoint,
    /// The note text (what the cosignature covers).
    pub text: String,
    /// The text with the log's verified signature lines (without other lines).
    pub signed_by_log: String,
}

impl TrustedLogs {
    /// Adds a log's verifier key; the key's name is the log's origin.
    pub fn add(&mut self, key: VerifierKey) {
        let keys = self.by_origin.entry(key.name().to_owned()).or_default();
        if !keys.contains(&key) {
            keys.push(key);
        }
    }

    /// The origins served, in order.
    pub fn origins(&self) -> impl Iterator<Item = &str> {
        self.by_origin.keys().map(String::as_str)
    }

    /// Whether no log is configured.
    pub fn is_empty(&self) -> bool {
        self.by_origin.is_empty()
    }

    /// The origin whose SHA-256 (lowercase hex) is `hash`: the monitoring path's log name.
    pub fn origin_by_hash(&self, hash: &str) -> Option<&str> {
        self.origins().find(|o| origin_hash(o) == hash)
    }
}

/// The monitoring path's name for a log: lowercase hex SHA-256 of its origin.
pub fn origin_hash(origin: &str) -> String {
    hex::encode(Sha256::digest(origin.as_bytes()))
}

impl AddCheckpoint {
    /// Parses a request body (c2sp.org/tlog-witness "add-checkpoint"). Only the framing is
    /// checked here; [`decide`] checks the checkpoint.
    pub fn parse(body: &[u8]) -> Result<AddCheckpoint, Refusal> {
        let bad = |m: String| Refusal::BadRequest(m);
        if body.len() > MAX_REQUEST_BYTES {
            return Err(bad(format!(
                "the request body is {} bytes, above the limit of {MAX_REQUEST_BYTES}",
                body.len()
            )));
        }
        let text = std::str::from_utf8(body)
            .map_err(|_| bad("the request body is not UTF-8".to_owned()))?;
        let Some((head, checkpoint)) = text.split_once("\n\n") else {
            return Err(bad(
                "no blank line between the old size and proof lines and the checkpoint".to_owned(),
            ));
        };
        let mut lines = head.split('\n');
        let old = lines.next().unwrap_or_default();
        let Some(old) = old.strip_prefix("old ") else {
            return Err(bad(format!(
                "the first line must be 'old <size>', not {:?}",
                crate::text::escape_control(old)
            )));
        };
        let old_size = parse_decimal(old).ok_or_else(|| {
            bad(format!(
                "old size {old:?}: a decimal number without leading zeroes"
            ))
        })?;
        let mut proof = Vec::new();
        for (i, line) in lines.enumerate() {
            if proof.len() == MAX_PROOF_LINES {
                return Err(bad(format!(
                    "more than {MAX_PROOF_LINES} consistency proof lines"
                )));
            }
            let hash = B64
                .decode(line)
                .ok()
                .and_then(|b| Hash::from_slice(&b))
                .ok_or_else(|| {
                    bad(format!(
                        "proof line {}: not the base64 of a 32-byte hash",
                        i + 1
                    ))
                })?;
            proof.push(hash);
        }
        Ok(AddCheckpoint {
            old_size,
            proof,
            checkpoint: checkpoint.to_owned(),
        })
    }

    /// The request body.
    pub fn encode(&self) -> String {
        let mut body = format!("old {}\n", self.old_size);
        for h in &self.proof {
            body.push_str(&B64.encode(h.as_bytes()));
            body.push('\n');
        }
        body.push('\n');
        body.push_str(&self.checkpoint);
        body
    }
}

/// `0`, or digits without a leading zero, within u64.
fn parse_decimal(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// The witness's verdict on a request, given what it last cosigned for the request's log
/// (`None`: nothing yet). The checks and their order are c2sp.org/tlog-witness
/// "add-checkpoint": the origin is known (404), a trusted key's signature verifies and none
/// fails (403), the old size is at most the checkpoint's (400) and is the latest cosigned
/// size (409), and the proof shows the checkpoint consistent with the latest one (422).
pub fn decide(
    logs: &TrustedLogs,
    request: &AddCheckpoint,
    latest: impl FnOnce(&str) -> Option<Latest>,
) -> Result<Accepted, Refusal> {
    let origin = request.checkpoint.split('\n').next().unwrap_or_default();
    let Some(keys) = logs.by_origin.get(origin) else {
        return Err(Refusal::UnknownOrigin(
            crate::text::escape_control(origin).into_owned(),
        ));
    };
    let text = verify_by_any(&request.checkpoint, keys)?;
    let checkpoint = Checkpoint::parse_body(text)
        .map_err(|e| Refusal::BadRequest(format!("the checkpoint: {e}")))?;
    let size = checkpoint.size.0;
    if request.old_size > size {
        return Err(Refusal::BadRequest(format!(
            "old size {} is above the checkpoint's size {size}",
            request.old_size
        )));
    }
    let latest = latest(origin);
    let latest_size = latest.as_ref().map_or(0, |l| l.size);
    if request.old_size != latest_size {
        return Err(Refusal::Conflict {
            old: request.old_size,
            latest: latest_size,
        });
    }
    if size == 0 && checkpoint.root != empty_root() {
        return Err(Refusal::Inconsistent(
            "a checkpoint of size 0 must have the empty tree's root".to_owned(),
        ));
    }
    let old_root = latest.as_ref().map_or_else(empty_root, |l| l.root);
    if request.old_size == 0 && !request.proof.is_empty() {
        return Err(Refusal::Inconsistent(
            "the old size is 0, so the consistency proof must be empty".to_owned(),
        ));
    }
    if request.old_size > 0 {
        verify_consistency(
            TreeSize(request.old_size),
            checkpoint.size,
            &old_root,
            &checkpoint.root,
            &request.proof,
        )
        .map_err(|e: VerifyError| {
            Refusal::Inconsistent(format!(
                "the checkpoint of size {size} is not consistent with the one of size {} this witness cosigned: {e}",
                request.old_size
            ))
        })?;
    }
    let signed_by_log = log_lines_only(&request.checkpoint, text, keys);
    Ok(Accepted {
        checkpoint,
        text: text.to_owned(),
        signed_by_log,
    })
}

/// Verifies the note with whichever of the log's keys signed it: at least one must verify and
/// none of them may fail.
fn verify_by_any<'a>(note: &'a str, keys: &[VerifierKey]) -> Result<&'a str, Refusal> {
    let mut text = None;
    let mut reasons = Vec::new();
    for key in keys {
        match verify_note(note, key) {
            Ok(t) => text = Some(t),
            Err(
                e @ (CheckpointError::NoSignatureFromKey { .. }
                | CheckpointError::WrongKeyId { .. }),
            ) => reasons.push(e.to_string()),
            Err(e) => return Err(Refusal::Forbidden(e.to_string())),
        }
    }
    text.ok_or_else(|| Refusal::Forbidden(reasons.join("; ")))
}

/// The note's text with only the signature lines of the log's trusted keys (which verified):
/// what the witness serves to monitors, before adding its own cosignature.
fn log_lines_only(note: &str, text: &str, keys: &[VerifierKey]) -> String {
    let mut out = format!("{text}\n");
    let lines = &note[text.len() + 1..];
    for line in lines.split_inclusive('\n') {
        let trusted = keys.iter().any(|k| {
            line.strip_prefix(crate::log::checkpoint::SIGNATURE_PREFIX)
                .and_then(|rest| rest.split_once(' '))
                .is_some_and(|(name, b64)| {
                    name == k.name()
                        && B64
                            .decode(b64.trim_end())
                            .is_ok_and(|raw| raw.get(..4) == Some(&k.key_id().0[..]))
                })
        });
        if trusted {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{MemoryTree, consistency_proof};
    use ed25519_dalek::SigningKey;

    const ORIGIN: &str = "hub.example/log";

    fn log_key() -> SigningKey {
        SigningKey::from_bytes(&[5; 32])
    }

    fn logs() -> TrustedLogs {
        let mut logs = TrustedLogs::default();
        logs.add(VerifierKey::from_signing_key(ORIGIN, &log_key()).unwrap());
        logs
    }

    fn tree(n: u64) -> MemoryTree {
        let mut t = MemoryTree::new();
        for i in 0..n {
            t.append(&i.to_be_bytes());
        }
        t
    }

    fn note(t: &MemoryTree) -> String {
        Checkpoint::new(ORIGIN, t.size(), t.root())
            .sign(ORIGIN, &log_key())
            .unwrap()
    }

    fn request(old: u64, t: &MemoryTree) -> AddCheckpoint {
        let proof = if old == 0 {
            Vec::new()
        } else {
            consistency_proof(t, TreeSize(old), t.size()).unwrap()
        };
        AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: note(t),
        }
    }

    fn latest_of(t: &MemoryTree) -> Latest {
        Latest {
            size: t.size().0,
            root: t.root(),
            note: note(t),
        }
    }

    #[test]
    fn the_body_round_trips() {
        let r = request(3, &tree(10));
        assert_eq!(AddCheckpoint::parse(r.encode().as_bytes()), Ok(r));
    }

    #[test]
    fn a_first_checkpoint_and_a_consistent_successor_are_accepted() {
        let t5 = tree(5);
        let first = decide(&logs(), &request(0, &t5), |_| None).unwrap();
        assert_eq!(first.checkpoint.size, TreeSize(5));
        assert_eq!(first.signed_by_log, note(&t5));
        let t9 = tree(9);
        decide(&logs(), &request(5, &t9), |_| Some(latest_of(&t5))).unwrap();
        // The same size again with the same root is consistent.
        decide(&logs(), &request(5, &t5), |_| Some(latest_of(&t5))).unwrap();
    }

    #[test]
    fn each_refusal_has_the_specs_status() {
        let t5 = tree(5);
        let t9 = tree(9);
        let mut stale = request(5, &t9);
        stale.old_size = 4;
        let e = decide(&logs(), &stale, |_| Some(latest_of(&t5))).unwrap_err();
        assert_eq!(
            (e.status(), &e),
            (409, &Refusal::Conflict { old: 4, latest: 5 })
        );

        let mut fork = tree(5);
        fork.append(b"forked");
        let forked_latest = latest_of(&fork); // size 6, another history
        let e = decide(&logs(), &request(6, &t9), |_| Some(forked_latest)).unwrap_err();
        assert_eq!(e.status(), 422, "{e}");

        let mut above = request(5, &t5);
        above.old_size = 6;
        assert_eq!(decide(&logs(), &above, |_| None).unwrap_err().status(), 400);

        let other = SigningKey::from_bytes(&[6; 32]);
        let mut forged = request(0, &t5);
        forged.checkpoint = Checkpoint::new(ORIGIN, t5.size(), t5.root())
            .sign(ORIGIN, &other)
            .unwrap();
        assert_eq!(
            decide(&logs(), &forged, |_| None).unwrap_err().status(),
            403
        );

        let mut unknown = request(0, &t5);
        unknown.checkpoint = unknown.checkpoint.replace(ORIGIN, "other.example/log");
        assert_eq!(
            decide(&logs(), &unknown, |_| None).unwrap_err().status(),
            404
        );

        let mut proof_from_zero = request(0, &t5);
        proof_from_zero.proof = vec![Hash([1; 32])];
        assert_eq!(
            decide(&logs(), &proof_from_zero, |_| None)
                .unwrap_err()
                .status(),
            422
        );
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for body in [
            &b"old 01\n\nx"[..],
            b"old -1\n\nx",
            b"olde 1\n\nx",
            b"old 1\nnot base64!\n\nx",
            b"old 1\nx",
            b"\xff\xfe",
        ] {
            assert_eq!(AddCheckpoint::parse(body).unwrap_err().status(), 400);
        }
        let many = format!(
            "old 1\n{}\nx",
            "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n".repeat(64)
        );
        assert_eq!(
            AddCheckpoint::parse(many.as_bytes()).unwrap_err().status(),
            400
        );
    }

    #[test]
    fn only_the_logs_own_signature_lines_are_kept() {
        let t5 = tree(5);
        let mut r = request(0, &t5);
        r.checkpoint.push_str("\u{2014} someone.else/w AAAAAAAA\n");
        let accepted = decide(&logs(), &r, |_| None).unwrap();
        assert_eq!(accepted.signed_by_log, note(&t5));
    }
}
