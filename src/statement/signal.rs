//! Emerging-risk signals: category, severity, text and the typed indicators a member shares.

use super::{HashEntry, StatementError, check_text};
use crate::pb;

/// Most indicators in one signal.
pub const MAX_INDICATORS: usize = 1000;

/// What kind of harm a signal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalCategory {
    /// Sextortion scripts, accounts, payment handles.
    Sextortion,
    /// Grooming language and tactics.
    Grooming,
    /// Distribution of abuse material.
    CsamDistribution,
    /// Trafficking.
    Trafficking,
    /// Anything else.
    Other,
}

/// How urgent a signal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// One observable of a signal.
#[derive(Clone, Debug, PartialEq)]
pub enum Indicator {
    /// A word or phrase.
    Keyword(String),
    /// An http(s) URL.
    Url(String),
    /// A DNS name, lowercase.
    Domain(String),
    /// An account on a platform.
    AccountHandle {
        /// The platform, e.g. "instagram".
        platform: String,
        /// The handle on it.
        handle: String,
    },
    /// A hash of known material.
    Hash(HashEntry),
}

/// A validated emerging-risk signal.
#[derive(Clone, Debug, PartialEq)]
pub struct RiskSignal {
    /// What kind of harm.
    pub category: SignalCategory,
    /// How urgent.
    pub severity: Severity,
    /// A one-line title.
    pub title: String,
    /// Free text.
    pub description: String,
    /// The observables, at least one.
    pub indicators: Vec<Indicator>,
    /// First seen, milliseconds since the Unix epoch.
    pub first_seen_ms: i64,
    /// Last seen, milliseconds since the Unix epoch.
    pub last_seen_ms: i64,
    /// When receivers should stop acting on it.
    pub expires_at_ms: Option<i64>,
}

impl SignalCategory {
    /// The lowercase name used in files.
    pub fn name(self) -> &'static str {
        match self {
            SignalCategory::Sextortion => "sextortion",
            SignalCategory::Grooming => "grooming",
            SignalCategory::CsamDistribution => "csam_distribution",
            SignalCategory::Trafficking => "trafficking",
            SignalCategory::Other => "other",
        }
    }
    fn from_wire(v: i32) -> Option<Self> {
        use pb::SignalCategory as W;
        Some(match W::try_from(v).ok()? {
            W::Sextortion => SignalCategory::Sextortion,
            W::Grooming => SignalCategory::Grooming,
            W::CsamDistribution => SignalCategory::CsamDistribution,
            W::Trafficking => SignalCategory::Trafficking,
            W::Other => SignalCategory::Other,
            W::Unspecified => return None,
        })
    }
    /// The wire enum value.
    pub fn to_wire(self) -> pb::SignalCategory {
        use pb::SignalCategory as W;
        match self {
            SignalCategory::Sextortion => W::Sextortion,
            SignalCategory::Grooming => W::Grooming,
            SignalCategory::CsamDistribution => W::CsamDistribution,
            SignalCategory::Trafficking => W::Trafficking,
            SignalCategory::Other => W::Other,
        }
    }
    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            SignalCategory::Sextortion,
            SignalCategory::Grooming,
            SignalCategory::CsamDistribution,
            SignalCategory::Trafficking,
            SignalCategory::Other,
        ]
        .into_iter()
        .find(|c| c.name() == s)
    }
}

impl Severity {
    /// The lowercase name used in files.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
    fn from_wire(v: i32) -> Option<Self> {
        use pb::Severity as W;
        Some(match W::try_from(v).ok()? {
            W::Low => Severity::Low,
            W::Medium => Severity::Medium,
            W::High => Severity::High,
            W::Critical => Severity::Critical,
            W::Unspecified => return None,
        })
    }
    /// The wire enum value.
    pub fn to_wire(self) -> pb::Severity {
        use pb::Severity as W;
        match self {
            Severity::Low => W::Low,
            Severity::Medium => W::Medium,
            Severity::High => W::High,
            Severity::Critical => W::Critical,
        }
    }
    /// Parses the lowercase name.
    pub fn parse(s: &str) -> Option<Self> {
        [
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .into_iter()
        .find(|c| c.name() == s)
    }
}

impl Indicator {
    /// The lowercase type name used in files.
    pub fn type_name(&self) -> &'static str {
        match self {
            Indicator::Keyword(_) => "keyword",
            Indicator::Url(_) => "url",
            Indicator::Domain(_) => "domain",
            Indicator::AccountHandle { .. } => "account_handle",
            Indicator::Hash(_) => "hash",
        }
    }

    fn from_wire(i: pb::Indicator, field: &str) -> Result<Self, StatementError> {
        use pb::IndicatorType as T;
        let kind = T::try_from(i.r#type).unwrap_or(T::Unspecified);
        if kind != T::Hash && i.hash.is_some() {
            return Err(StatementError::invalid(
                format!("{field}.hash"),
                "only a hash indicator carries a hash",
            ));
        }
        if !matches!(kind, T::AccountHandle) && !i.platform.is_empty() {
            return Err(StatementError::invalid(
                format!("{field}.platform"),
                "only an account_handle indicator carries a platform",
            ));
        }
        let value_field = format!("{field}.value");
        Ok(match kind {
            T::Keyword => Indicator::Keyword(check_text(&value_field, i.value, 1, 200)?),
            T::Url => {
                let url = check_text(&value_field, i.value, 1, 2048)?;
                let lower = url.to_ascii_lowercase();
                let rest = lower
                    .strip_prefix("https://")
                    .or_else(|| lower.strip_prefix("http://"));
                if rest.is_none_or(str::is_empty) || url.chars().any(char::is_whitespace) {
                    return Err(StatementError::invalid(
                        value_field,
                        "must be an http:// or https:// URL without spaces",
                    ));
                }
                Indicator::Url(url)
            }
            T::Domain => {
                let d = check_text(&value_field, i.value, 1, 253)?;
                if !is_domain(&d) {
                    return Err(StatementError::invalid(
                        value_field,
                        format!("'{d}' is not a lowercase DNS name like example.com"),
                    ));
                }
                Indicator::Domain(d)
            }
            T::AccountHandle => Indicator::AccountHandle {
                platform: check_text(&format!("{field}.platform"), i.platform, 1, 100)?,
                handle: check_text(&value_field, i.value, 1, 200)?,
            },
            T::Hash => {
                if !i.value.is_empty() {
                    return Err(StatementError::invalid(
                        value_field,
                        "a hash indicator carries its hash in `hash`, not `value`",
                    ));
                }
                let hash = i.hash.ok_or_else(|| {
                    StatementError::invalid(
                        format!("{field}.hash"),
                        "required for a hash indicator",
                    )
                })?;
                Indicator::Hash(HashEntry::from_wire(hash, &format!("{field}.hash"))?)
            }
            T::Unspecified => {
                return Err(StatementError::invalid(
                    format!("{field}.type"),
                    format!(
                        "unknown or unspecified indicator type {} (expected keyword, url, domain, account_handle or hash)",
                        i.r#type
                    ),
                ));
            }
        })
    }

    fn to_wire(&self) -> pb::Indicator {
        use pb::IndicatorType as T;
        let simple = |t: T, v: &str| pb::Indicator {
            r#type: t as i32,
            value: v.to_owned(),
            ..Default::default()
        };
        match self {
            Indicator::Keyword(v) => simple(T::Keyword, v),
            Indicator::Url(v) => simple(T::Url, v),
            Indicator::Domain(v) => simple(T::Domain, v),
            Indicator::AccountHandle { platform, handle } => pb::Indicator {
                r#type: T::AccountHandle as i32,
                value: handle.clone(),
                platform: platform.clone(),
                hash: None,
            },
            Indicator::Hash(h) => pb::Indicator {
                r#type: T::Hash as i32,
                hash: Some(h.to_wire()),
                ..Default::default()
            },
        }
    }
}

fn is_domain(d: &str) -> bool {
    d.contains('.')
        && d.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

impl RiskSignal {
    /// Validates a wire signal.
    pub fn from_wire(s: pb::RiskSignal) -> Result<Self, StatementError> {
        let category = SignalCategory::from_wire(s.category).ok_or_else(|| {
            StatementError::invalid(
                "risk_signal.category",
                "unknown or unspecified (expected sextortion, grooming, csam_distribution, trafficking or other)",
            )
        })?;
        let severity = Severity::from_wire(s.severity).ok_or_else(|| {
            StatementError::invalid(
                "risk_signal.severity",
                "unknown or unspecified (expected low, medium, high or critical)",
            )
        })?;
        let title = check_text("risk_signal.title", s.title, 1, 200)?;
        let description = check_text("risk_signal.description", s.description, 0, 10_000)?;
        if s.indicators.is_empty() || s.indicators.len() > MAX_INDICATORS {
            return Err(StatementError::invalid(
                "risk_signal.indicators",
                format!(
                    "a signal needs 1..={MAX_INDICATORS} indicators, got {}",
                    s.indicators.len()
                ),
            ));
        }
        if s.first_seen_ms <= 0 || s.last_seen_ms < s.first_seen_ms {
            return Err(StatementError::invalid(
                "risk_signal.last_seen_ms",
                "first_seen_ms must be a positive Unix time in ms and last_seen_ms >= first_seen_ms",
            ));
        }
        if let Some(exp) = s.expires_at_ms
            && exp <= s.last_seen_ms
        {
            return Err(StatementError::invalid(
                "risk_signal.expires_at_ms",
                "must be after last_seen_ms",
            ));
        }
        let indicators = s
            .indicators
            .into_iter()
            .enumerate()
            .map(|(i, ind)| Indicator::from_wire(ind, &format!("risk_signal.indicators[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(RiskSignal {
            category,
            severity,
            title,
            description,
            indicators,
            first_seen_ms: s.first_seen_ms,
            last_seen_ms: s.last_seen_ms,
            expires_at_ms: s.expires_at_ms,
        })
    }

    /// The wire form.
    pub fn to_wire(&self) -> pb::RiskSignal {
        pb::RiskSignal {
            category: self.category.to_wire() as i32,
            severity: self.severity.to_wire() as i32,
            title: self.title.clone(),
            description: self.description.clone(),
            indicators: self.indicators.iter().map(Indicator::to_wire).collect(),
            first_seen_ms: self.first_seen_ms,
            last_seen_ms: self.last_seen_ms,
            expires_at_ms: self.expires_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal(indicators: Vec<pb::Indicator>) -> pb::RiskSignal {
        pb::RiskSignal {
            category: pb::SignalCategory::Sextortion as i32,
            severity: pb::Severity::High as i32,
            title: "New payment-demand script".into(),
            description: String::new(),
            indicators,
            first_seen_ms: 1_700_000_000_000,
            last_seen_ms: 1_700_000_000_000,
            expires_at_ms: None,
        }
    }

    fn ind(t: pb::IndicatorType, value: &str, platform: &str) -> pb::Indicator {
        pb::Indicator {
            r#type: t as i32,
            value: value.into(),
            platform: platform.into(),
            hash: None,
        }
    }

    fn check(i: pb::Indicator, expected: Result<(), &str>) {
        let got = RiskSignal::from_wire(signal(vec![i]))
            .map(|_| ())
            .map_err(|e| e.to_string());
        match expected {
            Ok(()) => assert!(got.is_ok(), "{got:?}"),
            Err(want) => {
                let msg = got.expect_err("expected an error");
                assert!(msg.contains(want), "{msg:?} should contain {want:?}");
            }
        }
    }

    #[test]
    fn indicator_table() {
        use pb::IndicatorType as T;
        check(ind(T::Keyword, "send me a pic", ""), Ok(()));
        check(ind(T::Url, "https://bad.example/x", ""), Ok(()));
        check(ind(T::Domain, "bad.example", ""), Ok(()));
        check(ind(T::AccountHandle, "@someone", "instagram"), Ok(()));
        check(
            ind(T::Keyword, "", ""),
            Err("risk_signal.indicators[0].value: must be 1..=200"),
        );
        check(
            ind(T::Url, "ftp://x", ""),
            Err("must be an http:// or https:// URL"),
        );
        check(
            ind(T::Url, "https://", ""),
            Err("must be an http:// or https:// URL"),
        );
        check(
            ind(T::Domain, "Bad.Example", ""),
            Err("not a lowercase DNS name"),
        );
        check(
            ind(T::AccountHandle, "@someone", ""),
            Err("indicators[0].platform: must be 1..=100"),
        );
        check(
            ind(T::Keyword, "x", "instagram"),
            Err("only an account_handle indicator carries a platform"),
        );
        check(ind(T::Hash, "", ""), Err("indicators[0].hash: required"));
        check(ind(T::Unspecified, "x", ""), Err("indicators[0].type"));
    }

    #[test]
    fn signal_level_checks() {
        let mut s = signal(vec![ind(pb::IndicatorType::Keyword, "x", "")]);
        s.expires_at_ms = Some(s.last_seen_ms);
        assert!(RiskSignal::from_wire(s).is_err());
        let s = signal(vec![]);
        let err = RiskSignal::from_wire(s).expect_err("no indicators");
        assert!(err.to_string().contains("1..=1000 indicators, got 0"));
    }
}
