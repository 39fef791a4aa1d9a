//! Expiry: a hash set or risk signal may say when its entries stop matching
//! (`expires_at_ms`). A clock rule, not a log event: every holder (the hub's Match, a member's
//! snapshot, an offline `coalition match`) applies it with its own clock at the moment it
//! answers, so nothing has to be logged or synced for an entry to expire.

use crate::statement::{Body, StatementError};

/// Whether an entry expiring at `expires_at_ms` is expired at `now_ms`: from that instant on
/// (docs/PROTOCOL.md §4.3).
pub fn expired(expires_at_ms: Option<i64>, now_ms: i64) -> bool {
    expires_at_ms.is_some_and(|at| now_ms >= at)
}

/// The front-door rule: a statement submitted with an expiry already past at `now_ms` (the
/// hub's clock) is refused, since it would never match.
pub fn check_not_expired(body: &Body, now_ms: i64) -> Result<(), StatementError> {
    let field = match body {
        Body::HashSet(_) => "hash_set.expires_at_ms",
        Body::RiskSignal(_) => "risk_signal.expires_at_ms",
        _ => return Ok(()),
    };
    match body.expires_at_ms() {
        Some(at) if expired(Some(at), now_ms) => Err(StatementError::invalid(
            field,
            format!(
                "{} is already past (the hub's clock says {}); an expiry must be in the future",
                crate::membership::format_ms(at),
                crate::membership::format_ms(now_ms)
            ),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundary() {
        assert!(!expired(None, i64::MAX));
        assert!(!expired(Some(1000), 999));
        assert!(expired(Some(1000), 1000));
        assert!(expired(Some(1000), 1001));
    }
}
