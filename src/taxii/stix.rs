//! The STIX 2.1 objects of the log (docs/PROTOCOL.md §8.4): an `indicator` per hash of a hash
//! set and per indicator of a risk signal, an `opinion` per opinion, an `identity` per member,
//! and the `extension-definition` of the property extension that ties each indicator and
//! opinion to its signed statement. Pure, no I/O: built from domain types and the lifecycle
//! state the caller decided.

use serde_json::{Map, Value, json};
use uuid::Uuid;

use super::{hub_namespace, namespace, timestamp};
use crate::lifecycle::{EntryState, Verdict};
use crate::membership::MemberId;
use crate::statement::{HashEntry, HashType, Indicator, RiskSignal, StatementId};

/// When the extension definition and the project identity were made (fixed: they never change).
const DEFINED_AT: &str = "2026-12-01T00:00:00.000Z";

/// The STIX id of the extension definition (`extension-definition--<UUIDv5 of
/// "extension:coalition-log-entry">`), the same on every hub.
pub fn extension_id() -> String {
    format!(
        "extension-definition--{}",
        Uuid::new_v5(&namespace(), b"extension:coalition-log-entry")
    )
}

/// The STIX id of the identity of the Coalition Hub software, which defines the extension.
pub fn project_identity_id() -> String {
    format!(
        "identity--{}",
        Uuid::new_v5(&namespace(), b"identity:coalition-hub")
    )
}

/// The STIX id of `member`'s identity on the hub of `genesis`.
pub fn identity_id(genesis: &StatementId, member: &MemberId) -> String {
    format!(
        "identity--{}",
        Uuid::new_v5(
            &hub_namespace(genesis),
            format!("member:{member}").as_bytes()
        )
    )
}

/// The STIX id of entry `entry` of statement `statement` (the same on every hub that holds it).
pub fn indicator_id(statement: &StatementId, entry: u32) -> String {
    let mut name = Vec::with_capacity(36);
    name.extend_from_slice(&statement.0);
    name.extend_from_slice(&entry.to_be_bytes());
    format!("indicator--{}", Uuid::new_v5(&namespace(), &name))
}

/// The STIX id of the opinion statement `statement`.
pub fn opinion_id(statement: &StatementId) -> String {
    let mut name = b"opinion:".to_vec();
    name.extend_from_slice(&statement.0);
    format!("opinion--{}", Uuid::new_v5(&namespace(), &name))
}

/// The identity of the Coalition Hub software (`created_by_ref` of the extension definition).
pub fn project_identity() -> Value {
    json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": project_identity_id(),
        "created": DEFINED_AT,
        "modified": DEFINED_AT,
        "name": "Coalition Hub",
        "identity_class": "system",
    })
}

/// The extension definition: a property extension on indicators and opinions naming the
/// signed statement they come from.
pub fn extension_definition() -> Value {
    json!({
        "type": "extension-definition",
        "spec_version": "2.1",
        "id": extension_id(),
        "created_by_ref": project_identity_id(),
        "created": DEFINED_AT,
        "modified": DEFINED_AT,
        "name": "Coalition Hub log entry",
        "description": "The signed statement an object comes from: statement_id (hex SHA-256 of its signed bytes), entry_index (the hash or indicator within it), log_seq (its position in the hub's Merkle log, to fetch and verify it: coalition sync, GetStatement), issuer (member id), and on the latest version the entry's lifecycle state.",
        "schema": "https://github.com/coalition-hub/coalition-hub/blob/main/docs/PROTOCOL.md#8-taxii-21-read-api",
        "version": "1.0.0",
        "extension_types": ["property-extension"],
    })
}

/// The identity of a member (`display_name` as its name), first seen at `created_ms`.
pub fn member_identity(
    genesis: &StatementId,
    member: &MemberId,
    display_name: &str,
    created_ms: i64,
) -> Value {
    let name = if display_name.is_empty() {
        member.to_string()
    } else {
        display_name.to_owned()
    };
    json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": identity_id(genesis, member),
        "created": timestamp(created_ms),
        "modified": timestamp(created_ms),
        "name": name,
        "identity_class": "organization",
        "extensions": {
            extension_id(): {
                "extension_type": "property-extension",
                "member_id": member.to_string(),
            }
        },
    })
}

/// What one indicator is made of.
#[derive(Clone, Copy, Debug)]
pub enum Entry<'a> {
    /// A hash of a hash set, with the set's description and expiry.
    Hash {
        /// The set's description.
        description: &'a str,
        /// The hash.
        hash: &'a HashEntry,
        /// The set's expiry.
        expires_at_ms: Option<i64>,
    },
    /// An indicator of a risk signal.
    Signal {
        /// The signal.
        signal: &'a RiskSignal,
        /// The indicator.
        indicator: &'a Indicator,
    },
}

/// Where an object comes from: its statement, the entry within it, its log position and
/// issuer, for the extension.
#[derive(Clone, Copy, Debug)]
pub struct Source<'a> {
    /// The hub's genesis statement id (for identity ids).
    pub genesis: &'a StatementId,
    /// The statement.
    pub statement: &'a StatementId,
    /// Its log position.
    pub seq: u64,
    /// Its issuer as the hub shows it.
    pub issuer: &'a MemberId,
    /// When the issuer made it (the object's `created`).
    pub issued_at_ms: i64,
}

/// One version of an indicator: when it was modified, whether a retraction revoked it, and
/// (on the latest) the entry's lifecycle state.
#[derive(Clone, Copy, Debug)]
pub struct Version {
    /// Its `modified` (milliseconds since the Unix epoch).
    pub modified_ms: i64,
    /// Revoked (the entry is retracted).
    pub revoked: bool,
    /// The entry's state, on the latest version only.
    pub state: Option<EntryState>,
}

/// The indicator of entry `index` of `source` in `version`.
pub fn indicator(source: &Source<'_>, index: u32, entry: &Entry<'_>, version: &Version) -> Value {
    let (pattern, pattern_type) = pattern(entry);
    let mut o = Map::new();
    o.insert("type".into(), "indicator".into());
    o.insert("spec_version".into(), "2.1".into());
    o.insert("id".into(), indicator_id(source.statement, index).into());
    o.insert(
        "created_by_ref".into(),
        identity_id(source.genesis, source.issuer).into(),
    );
    o.insert("created".into(), timestamp(source.issued_at_ms).into());
    o.insert("modified".into(), timestamp(version.modified_ms).into());
    let (name, description, labels, valid_from, valid_until) = match entry {
        Entry::Hash {
            description,
            hash,
            expires_at_ms,
        } => (
            format!("{} hash", hash_key(hash.hash_type)),
            if description.is_empty() {
                format!(
                    "A {} hash of known material shared by {}.",
                    hash_key(hash.hash_type),
                    source.issuer
                )
            } else {
                description.to_string()
            },
            hash.labels.iter().map(ToString::to_string).collect(),
            source.issued_at_ms,
            *expires_at_ms,
        ),
        Entry::Signal { signal, indicator } => {
            let mut labels = vec![
                signal.category.name().to_owned(),
                format!("severity-{}", signal.severity.name()),
            ];
            if let Indicator::Hash(h) = indicator {
                labels.extend(h.labels.iter().map(ToString::to_string));
            }
            (
                signal.title.clone(),
                signal.description.clone(),
                labels,
                signal.first_seen_ms,
                signal.expires_at_ms,
            )
        }
    };
    o.insert("name".into(), name.into());
    if !description.is_empty() {
        o.insert("description".into(), description.into());
    }
    o.insert("indicator_types".into(), json!(["malicious-activity"]));
    o.insert("pattern".into(), pattern.into());
    o.insert("pattern_type".into(), pattern_type.into());
    o.insert("valid_from".into(), timestamp(valid_from).into());
    // STIX requires valid_until to be later than valid_from.
    if let Some(until) = valid_until.filter(|u| *u > valid_from) {
        o.insert("valid_until".into(), timestamp(until).into());
    }
    if !labels.is_empty() {
        o.insert("labels".into(), json!(labels));
    }
    if version.revoked {
        o.insert("revoked".into(), true.into());
    }
    let mut ext = Map::new();
    ext.insert("extension_type".into(), "property-extension".into());
    ext.insert("statement_id".into(), source.statement.to_string().into());
    ext.insert("entry_index".into(), index.into());
    ext.insert("log_seq".into(), source.seq.into());
    ext.insert("issuer".into(), source.issuer.to_string().into());
    let quality = match entry {
        Entry::Hash { hash, .. } => hash.quality,
        Entry::Signal {
            indicator: Indicator::Hash(h),
            ..
        } => h.quality,
        Entry::Signal { .. } => None,
    };
    if let Some(q) = quality {
        ext.insert("pdq_quality".into(), q.into());
    }
    if let Some(state) = version.state {
        ext.insert("state".into(), state.name().into());
    }
    o.insert("extensions".into(), json!({ extension_id(): ext }));
    Value::Object(o)
}

/// The STIX opinion value of a verdict, for the verdicts that judge an entry (docs/PROTOCOL.md
/// §8.4): confirmed is `strongly-agree`, false-positive `strongly-disagree`, disputed
/// `disagree`. The others (withdraw, quarantine, release, seen) are no STIX opinion.
pub fn opinion_value(verdict: Verdict) -> Option<&'static str> {
    match verdict {
        Verdict::Confirmed => Some("strongly-agree"),
        Verdict::FalsePositive => Some("strongly-disagree"),
        Verdict::Disputed => Some("disagree"),
        Verdict::Withdrawn | Verdict::Quarantine | Verdict::Release | Verdict::Seen => None,
    }
}

/// An opinion made by `source` (the opinion statement) on entry `entry` of `target`, with its
/// `note`; `None` for a verdict that is no STIX opinion ([`opinion_value`]).
pub fn opinion(
    source: &Source<'_>,
    verdict: Verdict,
    note: &str,
    target: &StatementId,
    entry: u32,
) -> Option<Value> {
    let value = opinion_value(verdict)?;
    let mut o = json!({
        "type": "opinion",
        "spec_version": "2.1",
        "id": opinion_id(source.statement),
        "created_by_ref": identity_id(source.genesis, source.issuer),
        "created": timestamp(source.issued_at_ms),
        "modified": timestamp(source.issued_at_ms),
        "opinion": value,
        "object_refs": [indicator_id(target, entry)],
        "extensions": {
            extension_id(): {
                "extension_type": "property-extension",
                "statement_id": source.statement.to_string(),
                "log_seq": source.seq,
                "issuer": source.issuer.to_string(),
                "verdict": verdict.name(),
            }
        },
    });
    if !note.is_empty()
        && let Some(map) = o.as_object_mut()
    {
        map.insert("explanation".into(), note.into());
    }
    Some(o)
}

/// The key of a hash type in a STIX `hashes` dictionary: the hashing-algorithm-ov names for
/// MD5, SHA-1 and SHA-256, custom `x_` keys for PDQ, PhotoDNA, vPDQ (the hex of its
/// canonical frames, docs/PROTOCOL.md §2.3.2) and URL-MD5 (used in a `url` pattern).
pub fn hash_key(hash_type: HashType) -> &'static str {
    match hash_type {
        HashType::Md5 => "MD5",
        HashType::Sha1 => "SHA-1",
        HashType::Sha256 => "SHA-256",
        HashType::Pdq => "x_pdq",
        HashType::PhotoDna => "x_photodna",
        HashType::Vpdq => "x_vpdq",
        HashType::UrlMd5 => "x_url_md5",
    }
}

/// The pattern and pattern type of an entry: STIX patterns for hashes, URLs, domains and
/// accounts; a PCRE matching the literal text for keywords (STIX has no keyword object).
fn pattern(entry: &Entry<'_>) -> (String, &'static str) {
    let hash_pattern = |h: &HashEntry| {
        if h.hash_type == HashType::UrlMd5 {
            // The MD5 of a normalised URL (§2.3.1) describes a URL, not a file.
            return format!("[url:x_url_md5 = '{}']", hex::encode(&h.value));
        }
        let key = match h.hash_type {
            HashType::Pdq | HashType::PhotoDna | HashType::Vpdq | HashType::UrlMd5 => {
                hash_key(h.hash_type).to_owned()
            }
            other => format!("'{}'", hash_key(other)),
        };
        format!("[file:hashes.{key} = '{}']", hex::encode(&h.value))
    };
    match entry {
        Entry::Hash { hash, .. } => (hash_pattern(hash), "stix"),
        Entry::Signal { indicator, .. } => match indicator {
            Indicator::Hash(h) => (hash_pattern(h), "stix"),
            Indicator::Url(u) => (format!("[url:value = '{}']", quote(u)), "stix"),
            Indicator::Domain(d) => (format!("[domain-name:value = '{}']", quote(d)), "stix"),
            Indicator::AccountHandle { platform, handle } => (
                format!(
                    "[user-account:account_login = '{}' AND user-account:account_type = '{}']",
                    quote(handle),
                    quote(platform)
                ),
                "stix",
            ),
            Indicator::Keyword(k) => (pcre_literal(k), "pcre"),
        },
    }
}

/// `text` as the inside of a STIX pattern string literal (`\` and `'` escaped).
fn quote(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\'', "\\'")
}

/// A PCRE that matches `text` literally.
fn pcre_literal(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if "\\^$.|?*+()[]{}/".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::{Label, Severity, SignalCategory};

    fn source<'a>(id: &'a StatementId, issuer: &'a MemberId) -> Source<'a> {
        Source {
            genesis: id,
            statement: id,
            seq: 7,
            issuer,
            issued_at_ms: 1_767_225_600_000,
        }
    }

    #[test]
    fn hash_indicators_carry_their_pattern_statement_and_state() {
        let (id, acme) = (StatementId([3; 32]), MemberId::parse("acme").expect("id"));
        let hash = HashEntry {
            hash_type: HashType::Sha256,
            value: vec![0xab; 32],
            quality: None,
            labels: vec![Label::Tag("tag-1".into())],
        };
        let entry = Entry::Hash {
            description: "set",
            hash: &hash,
            expires_at_ms: Some(1_767_225_700_000),
        };
        let v = Version {
            modified_ms: 1_767_225_650_000,
            revoked: true,
            state: Some(EntryState::Retracted),
        };
        let o = indicator(&source(&id, &acme), 2, &entry, &v);
        assert_eq!(o["id"], indicator_id(&id, 2));
        assert_eq!(
            o["pattern"],
            format!("[file:hashes.'SHA-256' = '{}']", "ab".repeat(32))
        );
        assert_eq!(o["valid_until"], "2026-01-01T00:01:40.000Z");
        assert_eq!(o["revoked"], true);
        let ext = &o["extensions"][extension_id()];
        assert_eq!(ext["entry_index"], 2);
        assert_eq!(ext["log_seq"], 7);
        assert_eq!(ext["state"], "retracted");
        assert_eq!(ext["statement_id"], id.to_string());
        assert_ne!(indicator_id(&id, 2), indicator_id(&id, 3));
    }

    #[test]
    fn signal_indicators_quote_their_values() {
        let (id, acme) = (StatementId([4; 32]), MemberId::parse("acme").expect("id"));
        let signal = RiskSignal {
            category: SignalCategory::Sextortion,
            severity: Severity::High,
            title: "t".into(),
            description: String::new(),
            indicators: vec![],
            first_seen_ms: 0,
            last_seen_ms: 0,
            expires_at_ms: None,
        };
        let v = Version {
            modified_ms: 1,
            revoked: false,
            state: None,
        };
        for (indicator_, want, kind) in [
            (
                Indicator::Url("https://x.example/a'b".into()),
                "[url:value = 'https://x.example/a\\'b']",
                "stix",
            ),
            (
                Indicator::Domain("x.example".into()),
                "[domain-name:value = 'x.example']",
                "stix",
            ),
            (
                Indicator::Keyword("pay (now)".into()),
                "pay \\(now\\)",
                "pcre",
            ),
        ] {
            let entry = Entry::Signal {
                signal: &signal,
                indicator: &indicator_,
            };
            let o = indicator(&source(&id, &acme), 0, &entry, &v);
            assert_eq!(o["pattern"], want);
            assert_eq!(o["pattern_type"], kind);
            assert!(o.get("revoked").is_none());
            assert!(o["extensions"][extension_id()].get("state").is_none());
        }
    }

    #[test]
    fn verdicts_map_to_stix_opinions() {
        assert_eq!(opinion_value(Verdict::Confirmed), Some("strongly-agree"));
        assert_eq!(
            opinion_value(Verdict::FalsePositive),
            Some("strongly-disagree")
        );
        assert_eq!(opinion_value(Verdict::Disputed), Some("disagree"));
        assert_eq!(opinion_value(Verdict::Seen), None);
    }
}
