//! URL-MD5: the MD5 of a URL normalised as ThreatExchange does, so that members exchange URL
//! signals as hashes (`url_md5`) and match them exactly.
//!
//! The normalisation is python-threatexchange's (facebook/ThreatExchange,
//! `python-threatexchange/threatexchange/signal_type/url_md5.py`, `UrlMD5Signal.hash_from_str`,
//! and `threatexchange/common.py`, `normalize_url`):
//!
//! ```python
//! url = url.lower()
//! parsed = urlparse(url)
//! scheme = "%s://" % parsed.scheme
//! url = parsed.geturl().replace(scheme, "", 1)
//! return hashlib.md5(url.encode("utf-8")).hexdigest()
//! ```
//!
//! `urlparse` and `geturl` are CPython's `urllib.parse` (3.11: `urlsplit`, `_splitparams`,
//! `urlunsplit`), reproduced here step by step, quirks included: the first `scheme://` is
//! removed wherever it is (with no scheme, the first `://`), empty `?`, `#` and `;` delimiters
//! are dropped, leading spaces and C0 controls are stripped and tabs and line breaks removed.
//! Where Python raises (unbalanced brackets in the host, a bracketed host that is not IPv6 nor
//! `v<hex>.<...>`), this refuses the URL too. One check is not reproduced: Python also refuses
//! a non-ASCII host whose NFKC form holds `/ ? # @ :`; such a URL is hashed here.

use md5::{Digest, Md5};
use thiserror::Error;

/// Longest URL accepted, in bytes (URLs above a few kilobytes are not addresses people share).
pub const MAX_URL_BYTES: usize = 16 * 1024;

/// Why a URL has no URL-MD5.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum UrlError {
    /// Python's `urlsplit` raises on it.
    #[error("not a URL Python's urlparse accepts: {0}")]
    Invalid(&'static str),
    /// Longer than [`MAX_URL_BYTES`].
    #[error("URL is longer than {MAX_URL_BYTES} bytes")]
    TooLong,
}

/// Schemes whose URLs have a network location (`urllib.parse.uses_netloc`, CPython 3.11).
const USES_NETLOC: [&str; 26] = [
    "", "ftp", "http", "gopher", "nntp", "telnet", "imap", "wais", "file", "mms", "https", "shttp",
    "snews", "prospero", "rtsp", "rtsps", "rtspu", "rsync", "svn", "svn+ssh", "sftp", "nfs", "git",
    "git+ssh", "ws", "wss",
];

/// Schemes whose last path segment may carry `;params` (`urllib.parse.uses_params`).
const USES_PARAMS: [&str; 16] = [
    "", "ftp", "hdl", "prospero", "http", "imap", "https", "shttp", "rtsp", "rtsps", "rtspu",
    "sip", "sips", "mms", "sftp", "tel",
];

/// The URL-MD5 of `url`: MD5 of [`normalize`]'s UTF-8 bytes.
pub fn url_md5(url: &str) -> Result<[u8; 16], UrlError> {
    Ok(Md5::digest(normalize(url)?.as_bytes()).into())
}

/// ThreatExchange's URL normalisation (see the module documentation).
pub fn normalize(url: &str) -> Result<String, UrlError> {
    if url.len() > MAX_URL_BYTES {
        return Err(UrlError::TooLong);
    }
    let url = url.to_lowercase();
    let parts = urlparse(&url)?;
    let joined = parts.geturl();
    Ok(joined.replacen(&format!("{}://", parts.scheme), "", 1))
}

/// `urllib.parse.ParseResult`.
#[derive(Debug, Default, PartialEq, Eq)]
struct Parsed {
    scheme: String,
    netloc: String,
    path: String,
    params: String,
    query: String,
    fragment: String,
}

/// `urllib.parse.urlparse(url)` (with `allow_fragments=True`, no default scheme).
fn urlparse(url: &str) -> Result<Parsed, UrlError> {
    // urlsplit: strip leading C0 controls and spaces; remove tabs and line breaks.
    let url: String = url
        .trim_start_matches(|c: char| c <= ' ')
        .chars()
        .filter(|c| !matches!(c, '\t' | '\r' | '\n'))
        .collect();
    let mut rest = url.as_str();
    let mut p = Parsed::default();
    if let Some(i) = rest.find(':') {
        let candidate = &rest[..i];
        let first_alpha = candidate
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic());
        if i > 0
            && first_alpha
            && candidate
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        {
            p.scheme = candidate.to_ascii_lowercase();
            rest = &rest[i + 1..];
        }
    }
    if let Some(after) = rest.strip_prefix("//") {
        let end = after.find(['/', '?', '#']).unwrap_or(after.len());
        let netloc = &after[..end];
        let (open, close) = (netloc.contains('['), netloc.contains(']'));
        if open != close {
            return Err(UrlError::Invalid("Invalid IPv6 URL"));
        }
        if open {
            let host = netloc.split_once('[').map_or("", |(_, r)| r);
            let host = host.split_once(']').map_or(host, |(h, _)| h);
            check_bracketed_host(host)?;
        }
        p.netloc = netloc.to_owned();
        rest = &after[end..];
    }
    if let Some((before, fragment)) = rest.split_once('#') {
        p.fragment = fragment.to_owned();
        rest = before;
    }
    if let Some((before, query)) = rest.split_once('?') {
        p.query = query.to_owned();
        rest = before;
    }
    p.path = rest.to_owned();
    if USES_PARAMS.contains(&p.scheme.as_str()) && p.path.contains(';') {
        // _splitparams: the ';' after the last '/', or the first ';' when there is no '/'.
        let split_at = match p.path.rfind('/') {
            Some(slash) => p.path[slash..].find(';').map(|i| slash + i),
            None => p.path.find(';'),
        };
        if let Some(i) = split_at {
            p.params = p.path[i + 1..].to_owned();
            p.path.truncate(i);
        }
    }
    Ok(p)
}

/// `urllib.parse._check_bracketed_host`: an IPv6 address, or an IPvFuture `v<hex>.<...>`.
fn check_bracketed_host(host: &str) -> Result<(), UrlError> {
    if let Some(future) = host.strip_prefix('v') {
        let ok = future.split_once('.').is_some_and(|(hex, tail)| {
            !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()) && !tail.is_empty()
        });
        return if ok {
            Ok(())
        } else {
            Err(UrlError::Invalid("IPvFuture address is invalid"))
        };
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V6(_)) => Ok(()),
        Ok(std::net::IpAddr::V4(_)) => {
            Err(UrlError::Invalid("An IPv4 address cannot be in brackets"))
        }
        Err(_) => Err(UrlError::Invalid("not a valid IPv6 address in brackets")),
    }
}

impl Parsed {
    /// `ParseResult.geturl()`: `urlunparse`, then `urlunsplit` (CPython 3.11).
    fn geturl(&self) -> String {
        let mut url = self.path.clone();
        if !self.params.is_empty() {
            url = format!("{url};{}", self.params);
        }
        let has_netloc_scheme = !self.scheme.is_empty()
            && USES_NETLOC.contains(&self.scheme.as_str())
            && !url.starts_with("//");
        if !self.netloc.is_empty() || has_netloc_scheme {
            if !url.is_empty() && !url.starts_with('/') {
                url.insert(0, '/');
            }
            url = format!("//{}{url}", self.netloc);
        }
        if !self.scheme.is_empty() {
            url = format!("{}:{url}", self.scheme);
        }
        if !self.query.is_empty() {
            url = format!("{url}?{}", self.query);
        }
        if !self.fragment.is_empty() {
            url = format!("{url}#{}", self.fragment);
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (URL, normalised form, URL-MD5) with the last two computed by python-threatexchange
    /// 1.2.17 on CPython 3.11.7 (`common.normalize_url`, `UrlMD5Signal.hash_from_str`).
    const CASES: &[(&str, &str, &str)] = include!("url_cases.in");

    #[test]
    fn agrees_with_python_threatexchange() {
        for &(url, normalised, md5) in CASES {
            assert_eq!(normalize(url).as_deref(), Ok(normalised), "{url:?}");
            assert_eq!(url_md5(url).map(hex::encode).as_deref(), Ok(md5), "{url:?}");
        }
    }

    #[test]
    fn refuses_what_python_refuses() {
        for url in [
            "http://[::1/x",
            "http://::1]/x",
            "http://[1.2.3.4]/",
            "http://[nothost]/",
            "http://[vz.1]/",
        ] {
            assert!(matches!(normalize(url), Err(UrlError::Invalid(_))), "{url}");
        }
        assert_eq!(
            normalize(&"a".repeat(MAX_URL_BYTES + 1)),
            Err(UrlError::TooLong)
        );
    }
}
