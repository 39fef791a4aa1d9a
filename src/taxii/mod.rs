//! TAXII 2.1 views of the log (docs/PROTOCOL.md §8): the collections, the deterministic STIX
//! ids, the request parameters (paging cursor, `added_after`, `match[...]`), content
//! negotiation and the TAXII error object. Pure, no I/O: the STIX objects are built in
//! [`stix`], the log is walked in [`feed`] and served over HTTPS by `server::taxii`.

pub mod feed;
pub mod stix;

use std::time::{Duration, UNIX_EPOCH};

use serde_json::{Value, json};
use thiserror::Error;
use uuid::Uuid;

use crate::statement::StatementId;

/// The TAXII media type, for requests' `Accept` and every answer's `Content-Type`.
pub const TAXII_MEDIA_TYPE: &str = "application/taxii+json;version=2.1";
/// The STIX media type the collections hold.
pub const STIX_MEDIA_TYPE: &str = "application/stix+json;version=2.1";
/// The one API root's path segment (`/coalition/`).
pub const API_ROOT: &str = "coalition";
/// Objects in a page when the request gives no `limit`.
pub const DEFAULT_PAGE_OBJECTS: usize = 1000;
/// Most objects in a page (a larger `limit` is lowered to it, as TAXII allows).
pub const MAX_PAGE_OBJECTS: usize = 5000;
/// Most bytes of STIX objects in one page (serialised): a page closes early, with `more` and
/// `next`, rather than grow past it (a vPDQ indicator alone can be over 1 MiB of hex). One
/// object is always sent, however large.
pub const MAX_PAGE_BYTES: usize = 16 * 1024 * 1024;
/// Most log entries one request reads: a page may hold fewer objects than asked (with
/// `more: true`) when the entries read so far yield no more.
pub const MAX_SCAN_ENTRIES: u64 = 20_000;
/// Most ids one `match[id]` may list, and most values in any other `match[...]`.
pub const MAX_MATCH_VALUES: usize = 100;

/// The namespace of every STIX id the hub derives (UUIDv5, RFC 4122): the UUIDv5 of
/// `urn:coalition:stix` in the URL namespace.
pub fn namespace() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:coalition:stix")
}

/// A collection of one hub: its objects are the indicators of one statement kind, the
/// opinions on them, and the identities and extension definition they refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Collection {
    /// Hash sets: one indicator per hash.
    HashSets,
    /// Risk signals: one indicator per signal indicator.
    RiskSignals,
}

impl Collection {
    /// Both collections, in the order they are listed.
    pub const ALL: [Collection; 2] = [Collection::HashSets, Collection::RiskSignals];

    /// The name its id is derived from.
    pub fn name(self) -> &'static str {
        match self {
            Collection::HashSets => "hash-sets",
            Collection::RiskSignals => "risk-signals",
        }
    }

    /// Its title.
    pub fn title(self) -> &'static str {
        match self {
            Collection::HashSets => "Hash sets",
            Collection::RiskSignals => "Risk signals",
        }
    }

    /// Its id on the hub whose genesis statement is `genesis`: the UUIDv5 of
    /// `collection:<name>` in the hub's namespace ([`hub_namespace`]).
    pub fn id(self, genesis: &StatementId) -> Uuid {
        Uuid::new_v5(
            &hub_namespace(genesis),
            format!("collection:{}", self.name()).as_bytes(),
        )
    }

    /// The collection `id` names on the hub of `genesis`.
    pub fn by_id(genesis: &StatementId, id: &str) -> Option<Collection> {
        Self::ALL
            .into_iter()
            .find(|c| c.id(genesis).to_string() == id)
    }

    /// The TAXII collection resource.
    pub fn resource(self, genesis: &StatementId) -> Value {
        let description = match self {
            Collection::HashSets => {
                "One STIX indicator per hash of every hash set the caller may read, with the opinions on them."
            }
            Collection::RiskSignals => {
                "One STIX indicator per indicator of every risk signal the caller may read, with the opinions on them."
            }
        };
        json!({
            "id": self.id(genesis).to_string(),
            "title": self.title(),
            "description": description,
            "can_read": true,
            "can_write": false,
            "media_types": [STIX_MEDIA_TYPE],
        })
    }
}

/// A hub's namespace: the UUIDv5 of its genesis statement id in [`namespace`].
pub fn hub_namespace(genesis: &StatementId) -> Uuid {
    Uuid::new_v5(&namespace(), &genesis.0)
}

/// A position in a collection's object stream: the log entry (`seq`) and the object's slot
/// among those that entry yields. Sent as `next` (`<seq>-<slot>`), opaque to clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    /// The log entry.
    pub seq: u64,
    /// The slot within it (an entry index, or a fixed slot; see [`feed`]).
    pub slot: u32,
}

impl Cursor {
    /// The start of the log.
    pub const START: Cursor = Cursor { seq: 0, slot: 0 };

    /// Parses `next` as this hub wrote it.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (seq, slot) = text.split_once('-')?;
        let digits =
            |s: &str| !s.is_empty() && s.len() <= 20 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(seq) || !digits(slot) {
            return None;
        }
        Some(Cursor {
            seq: seq.parse().ok()?,
            slot: slot.parse().ok()?,
        })
    }
}

impl std::fmt::Display for Cursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.seq, self.slot)
    }
}

/// Which versions of an object a request wants (`match[version]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Versions {
    /// The latest (the default).
    Last,
    /// The first.
    First,
    /// Every version.
    All,
    /// The versions whose `modified` is one of these (milliseconds since the Unix epoch).
    At(Vec<i64>),
}

/// The parameters of an objects, manifest or versions request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Query {
    /// Objects added after this time only (milliseconds since the Unix epoch, exclusive).
    pub added_after: Option<i64>,
    /// Most objects in the page.
    pub limit: usize,
    /// Where the page starts (the previous page's `next`).
    pub next: Option<Cursor>,
    /// Only these STIX types (empty: all).
    pub types: Vec<String>,
    /// Only these STIX ids (empty: all).
    pub ids: Vec<String>,
    /// Which versions.
    pub versions: Versions,
}

impl Default for Query {
    fn default() -> Self {
        Query {
            added_after: None,
            limit: DEFAULT_PAGE_OBJECTS,
            next: None,
            types: Vec::new(),
            ids: Vec::new(),
            versions: Versions::Last,
        }
    }
}

/// A refused TAXII request: its HTTP status and the TAXII error object's title and
/// description.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
#[error("{title}: {description}")]
pub struct TaxiiError {
    /// The HTTP status code.
    pub status: u16,
    /// A short title.
    pub title: String,
    /// What is wrong and what to do.
    pub description: String,
    /// Seconds after which the request may succeed (429: sent as `Retry-After`).
    pub retry_after_s: Option<u64>,
}

impl TaxiiError {
    /// A refusal with `status`.
    pub fn new(status: u16, title: &str, description: impl Into<String>) -> Self {
        TaxiiError {
            status,
            title: title.to_owned(),
            description: description.into(),
            retry_after_s: None,
        }
    }

    /// 429: the caller's quota is used up; it may try again after `retry_after_s` seconds.
    pub fn too_many_requests(description: impl Into<String>, retry_after_s: Option<u64>) -> Self {
        TaxiiError {
            retry_after_s,
            ..Self::new(429, "Too many requests", description)
        }
    }

    /// 400: a bad request parameter.
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::new(400, "Bad request", description)
    }

    /// 404: nothing at this path for the caller.
    pub fn not_found(description: impl Into<String>) -> Self {
        Self::new(404, "Not found", description)
    }

    /// The TAXII error resource (TAXII 2.1 §3.6.1).
    pub fn to_json(&self) -> Value {
        json!({
            "title": self.title,
            "description": self.description,
            "http_status": self.status.to_string(),
        })
    }
}

/// Parses a request's query string (already split at `?`) into a [`Query`]. Unknown
/// parameters are refused, as are repeated ones, so that a typo is not silently ignored.
pub fn parse_query(raw: Option<&str>) -> Result<Query, TaxiiError> {
    let mut q = Query::default();
    let mut seen: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded_pairs(raw.unwrap_or(""))? {
        if seen.contains(&key) {
            return Err(TaxiiError::bad_request(format!(
                "parameter {key} is given twice; give it once (a match filter takes a comma-separated list)"
            )));
        }
        seen.push(key.clone());
        match key.as_str() {
            "added_after" => q.added_after = Some(parse_timestamp(&value, "added_after")?),
            "limit" => {
                let n: usize = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                    TaxiiError::bad_request(format!(
                        "limit: expected a positive integer, got {:?}",
                        crate::text::escape_control(&value)
                    ))
                })?;
                q.limit = n.min(MAX_PAGE_OBJECTS);
            }
            "next" => {
                q.next = Some(Cursor::parse(&value).ok_or_else(|| {
                    TaxiiError::bad_request(format!(
                        "next: {:?} is not a value this server sent; start again without next",
                        crate::text::escape_control(&value)
                    ))
                })?)
            }
            "match[type]" => q.types = list(&value, "match[type]")?,
            "match[id]" => q.ids = list(&value, "match[id]")?,
            "match[version]" => q.versions = parse_versions(&value)?,
            "match[spec_version]" => {
                if list(&value, "match[spec_version]")?
                    .iter()
                    .any(|v| v != "2.1")
                {
                    return Err(TaxiiError::bad_request(
                        "match[spec_version]: this server holds STIX 2.1 objects only",
                    ));
                }
            }
            other => {
                return Err(TaxiiError::bad_request(format!(
                    "unknown parameter {:?} (expected added_after, limit, next, match[type], match[id], match[version], match[spec_version])",
                    crate::text::escape_control(other)
                )));
            }
        }
    }
    Ok(q)
}

fn list(value: &str, what: &str) -> Result<Vec<String>, TaxiiError> {
    let items: Vec<String> = value.split(',').map(str::to_owned).collect();
    if items.iter().any(String::is_empty) {
        return Err(TaxiiError::bad_request(format!(
            "{what}: an empty value in {:?}",
            crate::text::escape_control(value)
        )));
    }
    if items.len() > MAX_MATCH_VALUES {
        return Err(TaxiiError::bad_request(format!(
            "{what}: at most {MAX_MATCH_VALUES} values, got {}",
            items.len()
        )));
    }
    Ok(items)
}

fn parse_versions(value: &str) -> Result<Versions, TaxiiError> {
    let items = list(value, "match[version]")?;
    let mut at = Vec::new();
    let mut keyword = None;
    for item in &items {
        match item.as_str() {
            "last" => keyword = Some(Versions::Last),
            "first" => keyword = Some(Versions::First),
            "all" => keyword = Some(Versions::All),
            other => at.push(parse_timestamp(other, "match[version]")?),
        }
    }
    match (keyword, at.is_empty(), items.len()) {
        (Some(k), true, 1) => Ok(k),
        (None, false, _) => Ok(Versions::At(at)),
        _ => Err(TaxiiError::bad_request(
            "match[version]: give one of last, first, all, or a list of timestamps",
        )),
    }
}

/// The `key=value` pairs of a query string, percent-decoded (`+` is a space).
fn form_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>, TaxiiError> {
    let mut out = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((percent_decode(k)?, percent_decode(v)?));
    }
    Ok(out)
}

fn percent_decode(s: &str) -> Result<String, TaxiiError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        TaxiiError::bad_request("the query string has a malformed %-escape")
                    })?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| TaxiiError::bad_request("the query string is not UTF-8"))
}

/// Parses a TAXII/STIX timestamp (RFC 3339, UTC, `Z`) into milliseconds since the Unix epoch
/// (sub-millisecond digits are truncated).
pub fn parse_timestamp(value: &str, what: &str) -> Result<i64, TaxiiError> {
    let time = humantime::parse_rfc3339(value).map_err(|e| {
        TaxiiError::bad_request(format!(
            "{what}: {:?} is not a timestamp like 2026-01-31T12:00:00.000Z ({e})",
            crate::text::escape_control(value)
        ))
    })?;
    let ms = time
        .duration_since(UNIX_EPOCH)
        .map_err(|_| TaxiiError::bad_request(format!("{what}: before 1970")))?
        .as_millis();
    i64::try_from(ms).map_err(|_| TaxiiError::bad_request(format!("{what}: out of range")))
}

/// A STIX/TAXII timestamp (`2026-01-31T12:00:00.000Z`, millisecond precision) of `ms`
/// milliseconds since the Unix epoch (negative ones as the epoch).
pub fn timestamp(ms: i64) -> String {
    let ms = u64::try_from(ms).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// Whether a request's `Accept` header (absent: yes) admits the TAXII 2.1 media type.
pub fn accepts_taxii(accept: Option<&str>) -> bool {
    let Some(accept) = accept else { return true };
    accept.split(',').any(|range| {
        let mut parts = range.split(';').map(str::trim);
        let media = parts.next().unwrap_or("").to_ascii_lowercase();
        let params: Vec<String> = parts
            .map(|p| p.replace(' ', "").to_ascii_lowercase())
            .filter(|p| !p.starts_with("q="))
            .collect();
        match media.as_str() {
            "*/*" | "application/*" => true,
            "application/taxii+json" => params.iter().all(|p| p == "version=2.1"),
            _ => false,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_parse_or_are_refused_with_the_reason() {
        let q = parse_query(Some(
            "added_after=2026-01-01T00:00:00.500Z&limit=7&match%5Btype%5D=indicator,opinion&next=12-3",
        ))
        .expect("valid");
        assert_eq!(q.added_after, Some(1_767_225_600_500));
        assert_eq!(q.limit, 7);
        assert_eq!(q.types, ["indicator", "opinion"]);
        assert_eq!(q.next, Some(Cursor { seq: 12, slot: 3 }));
        assert_eq!(
            parse_query(Some("limit=999999")).expect("capped").limit,
            MAX_PAGE_OBJECTS
        );
        for (raw, reason) in [
            ("added_after=yesterday", "added_after"),
            ("limit=0", "limit"),
            ("limit=-1", "limit"),
            ("next=abc", "next"),
            ("next=1-", "next"),
            ("match[type]=", "empty"),
            ("match[version]=last,all", "match[version]"),
            ("match[spec_version]=2.0", "2.1"),
            ("limit=1&limit=2", "twice"),
            ("colour=red", "unknown parameter"),
            ("limit=%zz", "escape"),
        ] {
            let e = parse_query(Some(raw)).expect_err(raw);
            assert_eq!(e.status, 400, "{raw}");
            assert!(e.description.contains(reason), "{raw}: {}", e.description);
        }
    }

    #[test]
    fn timestamps_round_trip_at_millisecond_precision() {
        assert_eq!(timestamp(1_767_225_600_500), "2026-01-01T00:00:00.500Z");
        assert_eq!(
            parse_timestamp("2026-01-01T00:00:00.500999Z", "t"),
            Ok(1_767_225_600_500)
        );
        assert_eq!(timestamp(-5), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn accept_headers_are_negotiated() {
        for ok in [
            None,
            Some("application/taxii+json;version=2.1"),
            Some("application/taxii+json; version=2.1"),
            Some("application/taxii+json"),
            Some("text/html, */*;q=0.1"),
        ] {
            assert!(accepts_taxii(ok), "{ok:?}");
        }
        for refused in [
            "application/taxii+json;version=2.0",
            "text/html",
            "application/json",
        ] {
            assert!(!accepts_taxii(Some(refused)), "{refused}");
        }
    }

    #[test]
    fn ids_are_deterministic_and_distinct_per_hub() {
        let a = StatementId([1; 32]);
        let b = StatementId([2; 32]);
        assert_eq!(Collection::HashSets.id(&a), Collection::HashSets.id(&a));
        assert_ne!(Collection::HashSets.id(&a), Collection::RiskSignals.id(&a));
        assert_ne!(Collection::HashSets.id(&a), Collection::HashSets.id(&b));
        let id = Collection::RiskSignals.id(&a).to_string();
        assert_eq!(Collection::by_id(&a, &id), Some(Collection::RiskSignals));
        assert_eq!(Collection::by_id(&b, &id), None);
        assert_eq!(
            Cursor::parse(&Cursor { seq: 9, slot: 2 }.to_string()),
            Some(Cursor { seq: 9, slot: 2 })
        );
    }
}
