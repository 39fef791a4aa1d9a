//! C2SP tlog-cosignature v1 with Ed25519 (c2sp.org/tlog-cosignature): a witness's timestamped
//! statement that, as of a time, a checkpoint is the largest consistent tree head it has seen
//! for its log. Pure functions, no I/O.
//!
//! A cosignature is a signed-note signature line `— <witness name> base64(key id ‖ timestamp ‖
//! signature)` over the message `cosignature/v1\ntime <timestamp>\n` followed by the
//! checkpoint's note text. The key ID is `SHA-256(name ‖ 0x0A ‖ 0x04 ‖ public key)[:4]` and a
//! witness's verifier key is written `<name>+<8 hex key id>+<base64(0x04 ‖ public key)>`.
//!
//! The spec recommends ML-DSA-44 cosignatures for new deployments; this crate signs with
//! Ed25519 (the type the deployed witness network speaks and the one the project's key
//! material already is), and the two types do not share keys or key IDs, so one can be added
//! later beside it.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use thiserror::Error;

use super::checkpoint::{
    CheckpointError, KeyId, SIGNATURE_PREFIX, VerifierKeyError, checked_key_id, open_note,
    parse_key_text,
};

/// Signature type byte of an Ed25519 cosignature/v1 key (C2SP tlog-cosignature "Format").
pub const ALG_COSIGNATURE_V1: u8 = 0x04;

/// Largest timestamp a cosignature may carry (the spec: at most 2^63 − 1).
pub const MAX_TIMESTAMP: u64 = i64::MAX as u64;

/// The public half of a witness: its name and Ed25519 cosignature key.
#[derive(Clone, PartialEq, Eq)]
pub struct CosignerKey {
    name: String,
    id: KeyId,
    key: VerifyingKey,
}

/// A witness's signing side.
pub struct Cosigner {
    public: CosignerKey,
    key: SigningKey,
}

/// Why a cosignature does not count.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum CosignatureError {
    /// The note is not a signed note.
    #[error(transparent)]
    Note(#[from] CheckpointError),
    /// No line by this witness (name and key ID) is on the note.
    #[error("no cosignature by witness {name}+{id} on this checkpoint")]
    Missing {
        /// The witness's name.
        name: String,
        /// Its key ID.
        id: KeyId,
    },
    /// A line by this witness does not hold a timestamp and a 64-byte signature.
    #[error(
        "the cosignature by witness {name} is {len} bytes after its key id; a cosignature/v1 holds an 8-byte timestamp and a 64-byte signature"
    )]
    WrongLength {
        /// The witness's name.
        name: String,
        /// Bytes after the key ID.
        len: usize,
    },
    /// The timestamp is zero or above 2^63 − 1.
    #[error(
        "the cosignature by witness {name} has timestamp {timestamp}, outside 1..=2^63-1: it is not a cosignature/v1"
    )]
    BadTimestamp {
        /// The witness's name.
        name: String,
        /// The timestamp found.
        timestamp: u64,
    },
    /// A line by this witness does not verify.
    #[error(
        "the cosignature by witness {name}+{id} does not verify over this checkpoint: the checkpoint or the cosignature was altered"
    )]
    BadSignature {
        /// The witness's name.
        name: String,
        /// Its key ID.
        id: KeyId,
    },
}

/// The message a cosignature/v1 signs: the header and timestamp lines, then the note text.
fn message(text: &str, timestamp: u64) -> Vec<u8> {
    let mut m = format!("cosignature/v1\ntime {timestamp}\n").into_bytes();
    m.extend_from_slice(text.as_bytes());
    m
}

impl CosignerKey {
    /// The cosignature key of `name` and an Ed25519 public key.
    pub fn new(name: &str, key: VerifyingKey) -> Result<Self, VerifierKeyError> {
        let id = checked_key_id(name, ALG_COSIGNATURE_V1, &key)?;
        Ok(CosignerKey {
            name: name.to_owned(),
            id,
            key,
        })
    }

    /// Parses `<name>+<8 hex key id>+<base64(0x04 ‖ public key)>`, checking the key ID.
    pub fn parse(text: &str) -> Result<Self, VerifierKeyError> {
        let (name, id, key) = parse_key_text(text, ALG_COSIGNATURE_V1)?;
        Ok(CosignerKey { name, id, key })
    }

    /// The witness's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key ID.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Checks this witness's cosignature on a signed note (a checkpoint with its log's
    /// signature and any number of cosignatures); returns its timestamp (POSIX seconds).
    /// Lines by other keys are ignored; a line by this one that fails is an error.
    pub fn verify(&self, note: &str) -> Result<u64, CosignatureError> {
        let (text, lines) = open_note(note)?;
        let mut found = None;
        for line in lines {
            if line.name != self.name || line.id != self.id {
                continue;
            }
            let sig = &line.signature;
            if sig.len() != 8 + Signature::BYTE_SIZE {
                return Err(CosignatureError::WrongLength {
                    name: self.name.clone(),
                    len: sig.len(),
                });
            }
            let mut ts = [0u8; 8];
            ts.copy_from_slice(&sig[..8]);
            let timestamp = u64::from_be_bytes(ts);
            if timestamp == 0 || timestamp > MAX_TIMESTAMP {
                return Err(CosignatureError::BadTimestamp {
                    name: self.name.clone(),
                    timestamp,
                });
            }
            let ok = Signature::from_slice(&sig[8..])
                .map(|s| {
                    self.key
                        .verify_strict(&message(text, timestamp), &s)
                        .is_ok()
                })
                .unwrap_or(false);
            if !ok {
                return Err(CosignatureError::BadSignature {
                    name: self.name.clone(),
                    id: self.id,
                });
            }
            found = Some(found.map_or(timestamp, |t: u64| t.max(timestamp)));
        }
        found.ok_or_else(|| CosignatureError::Missing {
            name: self.name.clone(),
            id: self.id,
        })
    }
}

/// The signer name a signature line claims (`— <name> <base64>`, with or without its newline),
/// or `None` if it is not shaped like one. The claim is not checked: verify the line with the
/// key of that name.
pub fn claimed_name(line: &str) -> Option<&str> {
    let rest = line.strip_suffix('\n').unwrap_or(line);
    let (name, _) = rest.strip_prefix(SIGNATURE_PREFIX)?.split_once(' ')?;
    (!name.is_empty()).then_some(name)
}

impl fmt::Display for CosignerKey {
    /// The verifier-key text form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut raw = Vec::with_capacity(33);
        raw.push(ALG_COSIGNATURE_V1);
        raw.extend_from_slice(self.key.as_bytes());
        write!(f, "{}+{}+{}", self.name, self.id, B64.encode(raw))
    }
}

impl fmt::Debug for CosignerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CosignerKey({self})")
    }
}

impl Cosigner {
    /// A witness named `name` (a schema-less URL, e.g. `witness.example/w1`) with `key`.
    pub fn new(name: &str, key: SigningKey) -> Result<Self, VerifierKeyError> {
        Ok(Cosigner {
            public: CosignerKey::new(name, key.verifying_key())?,
            key,
        })
    }

    /// The public half.
    pub fn public(&self) -> &CosignerKey {
        &self.public
    }

    /// The cosignature line (ending with its newline) on a note's text (`text` ends with its
    /// newline and holds no signature line) at `timestamp` (POSIX seconds, 1..=2^63 − 1).
    pub fn cosign(&self, text: &str, timestamp: u64) -> String {
        let timestamp = timestamp.clamp(1, MAX_TIMESTAMP);
        let sig = self.key.sign(&message(text, timestamp));
        let mut raw = Vec::with_capacity(4 + 8 + Signature::BYTE_SIZE);
        raw.extend_from_slice(&self.public.id.0);
        raw.extend_from_slice(&timestamp.to_be_bytes());
        raw.extend_from_slice(&sig.to_bytes());
        format!(
            "{SIGNATURE_PREFIX}{} {}\n",
            self.public.name,
            B64.encode(raw)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Checkpoint, Hash, TreeSize};

    fn checkpoint_note() -> (String, String) {
        let log = SigningKey::from_bytes(&[7; 32]);
        let cp = Checkpoint::new("example.com/log", TreeSize(5), Hash([3; 32]));
        let note = cp.sign("example.com/log", &log).expect("signs");
        (cp.body(), note)
    }

    #[test]
    fn a_lines_claimed_name() {
        let w = Cosigner::new("witness.example/w1", SigningKey::from_bytes(&[9; 32])).unwrap();
        let line = w.cosign("example.com/log\n5\nAAAA\n", 1);
        assert_eq!(claimed_name(&line), Some("witness.example/w1"));
        assert_eq!(claimed_name(line.trim_end()), Some("witness.example/w1"));
        for bad in ["", "\u{2014} ", "\u{2014}  AAAA", "- w AAAA", "\u{2014} w"] {
            assert_eq!(claimed_name(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_cosignature_verifies_and_carries_its_timestamp() {
        let (text, note) = checkpoint_note();
        let w = Cosigner::new("witness.example/w1", SigningKey::from_bytes(&[9; 32])).unwrap();
        let cosigned = format!("{note}{}", w.cosign(&text, 1_679_315_147));
        assert_eq!(w.public().verify(&cosigned), Ok(1_679_315_147));
        let parsed = CosignerKey::parse(&w.public().to_string()).unwrap();
        assert_eq!(&parsed, w.public());
    }

    #[test]
    fn the_key_id_uses_type_0x04_not_the_note_type() {
        let key = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let c = CosignerKey::new("w", key).unwrap();
        assert_ne!(c.key_id(), crate::log::key_id("w", &key));
        assert!(c.to_string().contains("+B"), "0x04 in base64 starts with B");
    }

    #[test]
    fn altered_checkpoint_or_missing_witness_is_refused() {
        let (text, note) = checkpoint_note();
        let w = Cosigner::new("witness.example/w1", SigningKey::from_bytes(&[9; 32])).unwrap();
        let line = w.cosign(&text, 42);
        let altered = format!("{}{line}", note.replace("\n5\n", "\n6\n"));
        assert!(matches!(
            w.public().verify(&altered),
            Err(CosignatureError::BadSignature { .. })
        ));
        let other = Cosigner::new("witness.example/w2", SigningKey::from_bytes(&[8; 32])).unwrap();
        assert!(matches!(
            other.public().verify(&format!("{note}{line}")),
            Err(CosignatureError::Missing { .. })
        ));
        // A note signature key is not a cosignature key.
        assert!(matches!(
            CosignerKey::parse(
                &crate::log::VerifierKey::from_signing_key("w", &SigningKey::from_bytes(&[9; 32]))
                    .unwrap()
                    .to_string()
            ),
            Err(VerifierKeyError::UnsupportedAlgorithm { found: 1, .. })
        ));
    }
}
