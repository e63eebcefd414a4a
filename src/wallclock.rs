//! The wall clock, for what is measured against the real time rather than Asterisk's event
//! time: retry schedules, ages of stored rows, `Retry-After` dates. One helper, so every part
//! of deskhook reads it the same way.

use std::time::Duration;

/// Unix milliseconds now.
pub(crate) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// `Retry-After` as seconds or an HTTP date (relative to `now_ms`); a date in the past means now.
pub(crate) fn parse_retry_after(value: &str, now_ms: i64) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp().as_millisecond();
    Some(Duration::from_millis(at.saturating_sub(now_ms).max(0) as u64))
}
