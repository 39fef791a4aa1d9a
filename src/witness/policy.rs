//! The coalition's witness policy: which witnesses cosign the hub's checkpoints and how many of
//! them make a checkpoint witnessed. Pure, no I/O.
//!
//! The text format follows the witness and quorum lines of the Sigsum / C2SP policy files, with
//! each witness named by its C2SP verifier key (what `coalition witness key` prints) and the
//! URL the hub sends checkpoints to:
//!
//! ```text
//! # comments and blank lines are ignored
//! witness <name>+<8 hex key id>+<base64(0x04 ‖ public key)> http://<host>:<port>
//! group <group name> <k | all | any> <witness or group name>...
//! quorum <witness or group name | none>
//! ```
//!
//! A group holds when at least `k` of its members hold (`all`: every one, `any`: one); a
//! witness holds when its cosignature on the checkpoint verifies. Names are defined before
//! they are used, once each; exactly one `quorum` line, last. Bounded: [`MAX_POLICY_BYTES`],
//! [`MAX_WITNESSES`], [`MAX_GROUPS`].

use std::collections::{BTreeMap, BTreeSet};

use thiserror::Error;

use crate::log::cosignature::{CosignerKey, claimed_name};

/// Largest policy text.
pub const MAX_POLICY_BYTES: usize = 16 * 1024;
/// Most witnesses one policy names.
pub const MAX_WITNESSES: usize = 32;
/// Most groups one policy defines.
pub const MAX_GROUPS: usize = 32;
/// Longest witness URL.
pub const MAX_URL_CHARS: usize = 256;
/// Most cosignature lines of one checkpoint looked at ([`WitnessPolicy::check`]) or accepted
/// from an audit bundle: four per witness a policy may name (a hub keeps one per witness).
pub const MAX_COSIGNATURE_LINES: usize = 4 * MAX_WITNESSES;

/// A witness the policy names.
#[derive(Clone, PartialEq, Eq)]
pub struct PolicyWitness {
    /// Its cosignature key (its name is the key's name).
    pub key: CosignerKey,
    /// Where the hub sends checkpoints: `http://host:port`.
    pub url: String,
}

impl std::fmt::Debug for PolicyWitness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.key.name(), self.url)
    }
}

/// What a group needs of its members.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Threshold {
    AtLeast(usize),
    All,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Group {
    threshold: Threshold,
    members: Vec<String>,
}

/// A parsed, checked witness policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WitnessPolicy {
    text: String,
    witnesses: BTreeMap<String, PolicyWitness>,
    groups: BTreeMap<String, Group>,
    /// `None`: `quorum none` (witnesses are asked, nothing is required).
    quorum: Option<String>,
}

/// Why a policy text is refused: the line and what is wrong with it.
#[derive(Debug, Error, PartialEq, Eq)]
#[error("witness policy line {line}: {reason}")]
pub struct PolicyError {
    /// 1-based line number (0: the whole text).
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

impl WitnessPolicy {
    /// Parses and checks a policy text.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let whole = |reason: String| PolicyError { line: 0, reason };
        if text.len() > MAX_POLICY_BYTES {
            return Err(whole(format!(
                "{} bytes, at most {MAX_POLICY_BYTES}",
                text.len()
            )));
        }
        let mut policy = WitnessPolicy {
            text: text.to_owned(),
            witnesses: BTreeMap::new(),
            groups: BTreeMap::new(),
            quorum: None,
        };
        let mut quorum_line = None;
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let err = |reason: String| PolicyError { line, reason };
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            if quorum_line.is_some() {
                return Err(err("nothing may follow the quorum line".into()));
            }
            let words: Vec<&str> = content.split_ascii_whitespace().collect();
            match words.as_slice() {
                ["witness", key, url] => {
                    let key = CosignerKey::parse(key).map_err(|e| err(e.to_string()))?;
                    let url = check_url(url).map_err(err)?;
                    policy.define(key.name())?.map_err(err)?;
                    if policy.witnesses.len() == MAX_WITNESSES {
                        return Err(err(format!("at most {MAX_WITNESSES} witnesses")));
                    }
                    let name = key.name().to_owned();
                    policy.witnesses.insert(name, PolicyWitness { key, url });
                }
                ["witness", ..] => {
                    return Err(err(
                        "expected `witness <verifier key> http://<host>:<port>`".into(),
                    ));
                }
                ["group", name, threshold, members @ ..] if !members.is_empty() => {
                    policy.define(name)?.map_err(err)?;
                    if policy.groups.len() == MAX_GROUPS {
                        return Err(err(format!("at most {MAX_GROUPS} groups")));
                    }
                    let mut seen = BTreeSet::new();
                    for m in members {
                        if !policy.defines(m) {
                            return Err(err(format!(
                                "'{}' is not a witness or group defined above",
                                crate::text::escape_control(m)
                            )));
                        }
                        if !seen.insert(*m) {
                            return Err(err(format!("'{m}' is listed twice")));
                        }
                    }
                    let threshold = match *threshold {
                        "all" => Threshold::All,
                        "any" => Threshold::AtLeast(1),
                        k => match k.parse::<usize>() {
                            Ok(k) if (1..=members.len()).contains(&k) => Threshold::AtLeast(k),
                            _ => {
                                return Err(err(format!(
                                    "threshold '{}' must be all, any, or 1..={}",
                                    crate::text::escape_control(k),
                                    members.len()
                                )));
                            }
                        },
                    };
                    let members = members.iter().map(|m| (*m).to_owned()).collect();
                    policy
                        .groups
                        .insert((*name).to_owned(), Group { threshold, members });
                }
                ["group", ..] => {
                    return Err(err(
                        "expected `group <name> <k|all|any> <member> [<member>...]`".into(),
                    ));
                }
                ["quorum", "none"] => quorum_line = Some(None),
                ["quorum", name] if policy.defines(name) => {
                    quorum_line = Some(Some((*name).to_owned()));
                }
                ["quorum", name] => {
                    return Err(err(format!(
                        "quorum '{}' is not a witness or group defined above",
                        crate::text::escape_control(name)
                    )));
                }
                _ => {
                    return Err(err(format!(
                        "'{}' is not a witness, group or quorum line",
                        crate::text::escape_control(&content.chars().take(60).collect::<String>())
                    )));
                }
            }
        }
        let Some(quorum) = quorum_line else {
            return Err(whole(
                "no quorum line: end with `quorum <witness or group>` (or `quorum none`)".into(),
            ));
        };
        policy.quorum = quorum;
        Ok(policy)
    }

    /// Checks that `name` is new; the outer error is never used (keeps `?` chains short).
    fn define(&self, name: &str) -> Result<Result<(), String>, PolicyError> {
        Ok(if self.defines(name) || name == "none" {
            Err(format!(
                "'{name}' is defined twice (or is the reserved name none)"
            ))
        } else {
            Ok(())
        })
    }

    fn defines(&self, name: &str) -> bool {
        self.witnesses.contains_key(name) || self.groups.contains_key(name)
    }

    /// The policy text as the settings carry it.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The witnesses, by name.
    pub fn witnesses(&self) -> impl Iterator<Item = &PolicyWitness> {
        self.witnesses.values()
    }

    /// Whether the policy requires anything (`quorum none` does not).
    pub fn requires(&self) -> bool {
        self.quorum.is_some()
    }

    /// Whether the witnesses named in `cosigned` (each verified) satisfy the quorum.
    pub fn satisfied_by(&self, cosigned: &BTreeSet<String>) -> bool {
        self.quorum
            .as_deref()
            .is_none_or(|q| self.holds(q, cosigned, 0))
    }

    fn holds(&self, name: &str, cosigned: &BTreeSet<String>, depth: usize) -> bool {
        if self.witnesses.contains_key(name) {
            return cosigned.contains(name);
        }
        // Groups only name what was defined before them: depth is bounded by MAX_GROUPS.
        let Some(group) = self.groups.get(name).filter(|_| depth <= MAX_GROUPS) else {
            return false;
        };
        let held = group
            .members
            .iter()
            .filter(|m| self.holds(m, cosigned, depth + 1))
            .count();
        match group.threshold {
            Threshold::All => held == group.members.len(),
            Threshold::AtLeast(k) => held >= k,
        }
    }

    /// One line for people: the quorum and the witnesses.
    pub fn describe(&self) -> String {
        let names: Vec<&str> = self.witnesses.keys().map(String::as_str).collect();
        format!(
            "quorum {} over witnesses {}",
            self.quorum.as_deref().unwrap_or("none"),
            names.join(", ")
        )
    }
}

/// What the cosignatures of one checkpoint establish under a policy.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Witnessed {
    /// The witnesses of the policy whose cosignature verifies, with its timestamp (POSIX
    /// seconds).
    pub cosigned: BTreeMap<String, u64>,
    /// Whether they satisfy the quorum.
    pub met: bool,
    /// The witnesses of the policy named by a line that does not verify with their key in the
    /// policy: forged (or damaged) cosignatures. An honest hub serves none.
    pub forged: BTreeSet<String>,
}

impl Witnessed {
    /// The earliest timestamp among the cosignatures (when the checkpoint was first
    /// witnessed, at the latest), if any.
    pub fn earliest(&self) -> Option<u64> {
        self.cosigned.values().min().copied()
    }

    /// The latest timestamp among the cosignatures: the last time a witness of the policy
    /// cosigned this checkpoint. Old on a hub's newest checkpoint, it shows a hub that froze
    /// the view it shows this member.
    pub fn newest(&self) -> Option<u64> {
        self.cosigned.values().max().copied()
    }

    /// The witnesses that cosigned, comma-separated ("none").
    pub fn names(&self) -> String {
        if self.cosigned.is_empty() {
            return "none".into();
        }
        self.cosigned.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

impl WitnessPolicy {
    /// Checks `lines` (cosignature lines, as the hub serves them) against the checkpoint
    /// `note` the caller verified: a line counts only if it verifies with the key the policy
    /// gives its witness; lines of unknown witnesses are ignored (C2SP). A line that names a
    /// witness of the policy but does not verify with its key (a bad signature, another key, a
    /// line over another note) counts for nothing and is reported in [`Witnessed::forged`].
    /// At most one line per witness counts; at most [`MAX_COSIGNATURE_LINES`] lines are read.
    pub fn check(&self, note: &str, lines: &[String]) -> Witnessed {
        let mut cosigned = BTreeMap::new();
        let mut forged = BTreeSet::new();
        for line in lines.iter().take(MAX_COSIGNATURE_LINES) {
            let line = if line.ends_with('\n') {
                line.clone()
            } else {
                format!("{line}\n")
            };
            let claimed = claimed_name(&line).filter(|n| self.witnesses.contains_key(*n));
            // One line: a second line break would smuggle in a second signature.
            let verified = line.matches('\n').count() == 1
                && claimed.is_some_and(|name| {
                    let w = &self.witnesses[name];
                    match w.key.verify(&format!("{note}{line}")) {
                        Ok(at) => {
                            cosigned.entry(name.to_owned()).or_insert(at);
                            true
                        }
                        Err(_) => false,
                    }
                });
            if let Some(name) = claimed.filter(|_| !verified) {
                forged.insert(name.to_owned());
            }
        }
        let names = cosigned.keys().cloned().collect();
        Witnessed {
            met: self.satisfied_by(&names),
            cosigned,
            forged,
        }
    }
}

/// A witness URL: `http://host:port` (no path, user or query), at most [`MAX_URL_CHARS`].
fn check_url(url: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "witness URL '{}' must be http://<host>:<port> (at most {MAX_URL_CHARS} characters)",
            crate::text::escape_control(url)
        )
    };
    if url.len() > MAX_URL_CHARS {
        return Err(bad());
    }
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = rest.rsplit_once(':').ok_or_else(bad)?;
    if host.is_empty()
        || port.parse::<u16>().is_err()
        || rest.contains(['/', '@', '?', '#'])
        || !rest.is_ascii()
    {
        return Err(bad());
    }
    Ok(rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key(name: &str, seed: u8) -> String {
        let k = SigningKey::from_bytes(&[seed; 32]);
        crate::log::cosignature::Cosigner::new(name, k)
            .expect("cosigner")
            .public()
            .to_string()
    }

    fn names(n: &[&str]) -> BTreeSet<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn two_of_three_and_nested_groups() {
        let text = format!(
            "# three witnesses\nwitness {} http://127.0.0.1:1\nwitness {} http://127.0.0.1:2\nwitness {} http://127.0.0.1:3/\ngroup two 2 w1 w2 w3\ngroup both all two w3\nquorum two\n",
            key("w1", 1),
            key("w2", 2),
            key("w3", 3)
        );
        let p = WitnessPolicy::parse(&text).expect("policy");
        assert!(p.requires());
        assert!(!p.satisfied_by(&names(&["w1"])));
        assert!(p.satisfied_by(&names(&["w1", "w3"])));
        assert!(!p.satisfied_by(&names(&["w1", "stranger"])));
        assert_eq!(p.witnesses().count(), 3);
        assert_eq!(
            p.witnesses().map(|w| w.url.as_str()).collect::<Vec<_>>(),
            ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"]
        );
        let none = WitnessPolicy::parse(&format!(
            "witness {} http://127.0.0.1:1\nquorum none",
            key("w1", 1)
        ))
        .expect("policy");
        assert!(!none.requires() && none.satisfied_by(&names(&[])));
    }

    #[test]
    fn only_cosignatures_that_verify_with_the_policys_keys_count() {
        use crate::log::cosignature::Cosigner;
        let signer = |name: &str, seed: u8| {
            Cosigner::new(name, SigningKey::from_bytes(&[seed; 32])).expect("cosigner")
        };
        let (w1, w2) = (signer("w1", 1), signer("w2", 2));
        let impostor = signer("w2", 9);
        let text = "example.org/log\n5\nRUiIRkqwvc7ki9NFHWJwTs2+r4DfLLHkZ4sNCy9bQxM=\n";
        let note = format!("{text}\n— example.org/log AAAAAAAAAAAAAAAA\n");
        let policy = WitnessPolicy::parse(&format!(
            "witness {} http://h:1\nwitness {} http://h:2\ngroup both all w1 w2\nquorum both\n",
            w1.public(),
            w2.public()
        ))
        .expect("policy");
        let good1 = w1.cosign(text, 100);
        let good2 = w2.cosign(text, 200);
        let forged = impostor.cosign(text, 300);
        let other_note = w2.cosign(
            "example.org/log\n6\nRUiIRkqwvc7ki9NFHWJwTs2+r4DfLLHkZ4sNCy9bQxM=\n",
            300,
        );
        let smuggled = format!("{}{good2}", good1);
        let stranger = signer("w9", 5).cosign(text, 300);
        let found = policy.check(
            &note,
            &[
                good1.clone(),
                forged,
                other_note,
                smuggled,
                stranger.clone(),
            ],
        );
        assert_eq!(found.names(), "w1");
        assert!(!found.met, "w2's only valid line was smuggled behind w1's");
        assert_eq!(
            found.forged,
            names(&["w1", "w2"]),
            "the impostor's, the other note's and the smuggled lines name w1 and w2; w9 is unknown"
        );
        let found = policy.check(&note, &[good2.trim_end().to_owned(), good1, stranger]);
        assert!(found.met);
        assert!(found.forged.is_empty(), "{:?}", found.forged);
        assert_eq!(found.earliest(), Some(100));
        assert_eq!(found.newest(), Some(200));
        assert_eq!(found.names(), "w1, w2");
        assert!(!policy.check(&note, &[]).met);
    }

    #[test]
    fn bad_policies_name_the_line() {
        let w1 = key("w1", 1);
        for (text, line, says) in [
            (format!("witness {w1} http://h:1\n"), 0, "no quorum line"),
            (
                format!("witness {w1} ftp://h:1\nquorum w1"),
                1,
                "must be http",
            ),
            (
                format!("witness {w1} http://h:1\nwitness {w1} http://h:2\nquorum w1"),
                2,
                "defined twice",
            ),
            (
                format!("witness {w1} http://h:1\ngroup g 2 w1\nquorum g"),
                2,
                "1..=1",
            ),
            (
                format!("witness {w1} http://h:1\ngroup g 1 w9\nquorum g"),
                2,
                "not a witness or group",
            ),
            (
                format!("witness {w1} http://h:1\nquorum w1\nquorum w1"),
                3,
                "follow the quorum",
            ),
            (
                "witness w1+00000000+AAAA http://h:1\nquorum w1".to_owned(),
                1,
                "",
            ),
            (
                "frobnicate\nquorum none".to_owned(),
                1,
                "not a witness, group or quorum",
            ),
        ] {
            let e = WitnessPolicy::parse(&text).expect_err(&text);
            assert_eq!(e.line, line, "{text}: {e}");
            assert!(e.reason.contains(says), "{text}: {e}");
        }
        let long = "#".repeat(MAX_POLICY_BYTES + 1);
        assert_eq!(WitnessPolicy::parse(&long).expect_err("long").line, 0);
    }
}
