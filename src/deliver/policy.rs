//! When to try a request again and when to give up: response classification, exponential
//! backoff with jitter (backon), `Retry-After`, retention, and keeping the webhook's secret
//! path out of every error text. Pure functions; the sender applies them.

use std::time::Duration;

use crate::config::HelpdeskConfig;

/// How one try ended, before the retry policy is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TryResult {
    /// The helpdesk answered 2xx.
    Accepted,
    /// Network error, timeout, 408, 429 or 5xx: worth trying again later.
    Transient { error: String, retry_after: Option<Duration> },
    /// Another 4xx (or a redirect): the request itself is probably wrong.
    Rejected { error: String },
    /// The request cannot be built at all (e.g. the recording file is gone).
    Unsendable { error: String },
}

/// What becomes of the row after a try.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    Delivered,
    RetryAt { at_ms: i64, error: String },
    Dead { error: String },
}

/// The retry settings of `[helpdesk]`.
#[derive(Debug, Clone, Copy)]
pub(super) struct RetryPolicy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub retention: Duration,
    pub client_error_tries: u32,
}

impl RetryPolicy {
    pub(super) fn from_config(cfg: &HelpdeskConfig) -> Self {
        Self {
            min_backoff: cfg.min_backoff.get(),
            max_backoff: cfg.max_backoff.get().max(cfg.min_backoff.get()),
            retention: cfg.retention.get(),
            client_error_tries: cfg.client_error_tries.max(1),
        }
    }

    /// The wait after the `tries`-th failed try (1 = the first): exponential from `min_backoff`,
    /// jittered up to +100%, never above `max_backoff`.
    pub(super) fn backoff(&self, tries: u32) -> Duration {
        crate::backoff::pause(self.min_backoff, self.max_backoff, tries)
    }

    /// Applies the policy to a try of a row enqueued at `enqueued_ms` that has now been tried `tries` times.
    pub(super) fn verdict(&self, result: TryResult, tries: u32, enqueued_ms: i64, now_ms: i64) -> Verdict {
        match result {
            TryResult::Accepted => Verdict::Delivered,
            TryResult::Unsendable { error } => Verdict::Dead { error },
            TryResult::Rejected { error } => {
                if tries >= self.client_error_tries {
                    Verdict::Dead { error: format!("{error} (gave up after {tries} tries)") }
                } else {
                    Verdict::RetryAt { at_ms: now_ms.saturating_add(millis(self.backoff(tries))), error }
                }
            }
            TryResult::Transient { error, retry_after } => {
                let deadline = enqueued_ms.saturating_add(millis(self.retention));
                if now_ms >= deadline {
                    let kept = humanize(self.retention);
                    return Verdict::Dead {
                        error: format!("{error} (gave up: undelivered for helpdesk.retention = {kept})"),
                    };
                }
                let wait = retry_after.unwrap_or_else(|| self.backoff(tries));
                Verdict::RetryAt { at_ms: now_ms.saturating_add(millis(wait)).min(deadline), error }
            }
        }
    }
}

/// Sorts an HTTP status into the retry classes.
pub(super) fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Accepted,
        408 | 429 | 500..=599 => StatusClass::Transient,
        _ => StatusClass::Rejected,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StatusClass {
    Accepted,
    Transient,
    Rejected,
}

pub(super) use crate::wallclock::parse_retry_after;

/// Replaces the webhook URL (whose path is a secret token) by its host wherever it appears.
pub(super) fn scrub(text: &str, webhook_url: &str) -> String {
    if webhook_url.is_empty() {
        return text.to_string();
    }
    let host = crate::config::redacted_url(webhook_url);
    let mut cleaned = text.replace(webhook_url, &host);
    if let Ok(parsed) = url::Url::parse(webhook_url) {
        let path = parsed.path();
        if path.len() > 1 {
            cleaned = cleaned.replace(path, "/<redacted>");
        }
        if let Some(query) = parsed.query() {
            if !query.is_empty() {
                cleaned = cleaned.replace(query, "<redacted>");
            }
        }
    }
    cleaned
}

/// `90s` → "1m30s", for messages.
pub(crate) fn humanize(duration: Duration) -> String {
    let total = duration.as_secs();
    if total == 0 {
        return format!("{}ms", duration.as_millis());
    }
    let (days, hours, minutes, seconds) = (total / 86_400, total / 3600 % 24, total / 60 % 60, total % 60);
    let mut text = String::new();
    for (value, unit) in [(days, "d"), (hours, "h"), (minutes, "m"), (seconds, "s")] {
        if value > 0 {
            text.push_str(&format!("{value}{unit}"));
        }
    }
    text
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            min_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            retention: Duration::from_secs(7 * 86_400),
            client_error_tries: 3,
        }
    }

    #[test]
    fn backoff_grows_with_jitter_and_stays_under_the_cap() {
        let policy = policy();
        for _ in 0..50 {
            let first = policy.backoff(1);
            assert!((Duration::from_secs(1)..=Duration::from_secs(2)).contains(&first), "{first:?}");
            let third = policy.backoff(3);
            assert!((Duration::from_secs(4)..=Duration::from_secs(8)).contains(&third), "{third:?}");
            let late = policy.backoff(40);
            assert!((Duration::from_secs(150)..=Duration::from_secs(300)).contains(&late), "{late:?}");
        }
    }

    #[test]
    fn transient_failures_retry_until_retention_then_die_with_the_last_error() {
        let policy = policy();
        let enqueued = 1_000_000;
        let error = || TryResult::Transient { error: "HTTP 503".into(), retry_after: None };
        match policy.verdict(error(), 1, enqueued, enqueued + 10) {
            Verdict::RetryAt { at_ms, error } => {
                assert!((enqueued + 1010..=enqueued + 2010).contains(&at_ms), "{at_ms}");
                assert_eq!(error, "HTTP 503");
            }
            other => panic!("{other:?}"),
        }
        // Close to the deadline the next try is at the deadline, not beyond it.
        let deadline = enqueued + 7 * 86_400_000;
        assert_eq!(
            policy.verdict(error(), 30, enqueued, deadline - 5),
            Verdict::RetryAt { at_ms: deadline, error: "HTTP 503".into() }
        );
        match policy.verdict(error(), 31, enqueued, deadline) {
            Verdict::Dead { error } => assert!(error.starts_with("HTTP 503 (gave up: undelivered for"), "{error}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn retry_after_wins_over_backoff() {
        let policy = policy();
        let result = TryResult::Transient { error: "HTTP 429".into(), retry_after: Some(Duration::from_secs(42)) };
        assert_eq!(policy.verdict(result, 1, 0, 1000), Verdict::RetryAt { at_ms: 43_000, error: "HTTP 429".into() });
    }

    #[test]
    fn client_errors_die_after_the_configured_tries() {
        let policy = policy();
        let rejected = || TryResult::Rejected { error: "HTTP 400".into() };
        assert!(matches!(policy.verdict(rejected(), 2, 0, 0), Verdict::RetryAt { .. }));
        assert_eq!(
            policy.verdict(rejected(), 3, 0, 0),
            Verdict::Dead { error: "HTTP 400 (gave up after 3 tries)".into() }
        );
        let gone = TryResult::Unsendable { error: "file missing".into() };
        assert_eq!(policy.verdict(gone, 1, 0, 0), Verdict::Dead { error: "file missing".into() });
    }

    #[test]
    fn statuses_are_classified_as_the_helpdesk_contract_needs() {
        assert_eq!(classify_status(200), StatusClass::Accepted);
        assert_eq!(classify_status(204), StatusClass::Accepted);
        for transient in [408, 429, 500, 502, 503, 504] {
            assert_eq!(classify_status(transient), StatusClass::Transient, "{transient}");
        }
        for rejected in [301, 400, 401, 403, 404, 413] {
            assert_eq!(classify_status(rejected), StatusClass::Rejected, "{rejected}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        assert_eq!(parse_retry_after(" 120 ", 0), Some(Duration::from_secs(120)));
        let now = "2024-05-01T12:00:00Z".parse::<jiff::Timestamp>().expect("ts").as_millisecond();
        assert_eq!(parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Wed, 01 May 2024 11:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn scrub_leaves_only_the_host() {
        let url = "https://desk.example/webhooks/asterisk/cc75532f";
        let text = format!("error sending request for url ({url}): timed out; path /webhooks/asterisk/cc75532f");
        let cleaned = scrub(&text, url);
        assert!(!cleaned.contains("cc75532f"), "{cleaned}");
        assert!(cleaned.contains("https://desk.example"), "{cleaned}");
        assert_eq!(humanize(Duration::from_secs(7 * 86_400)), "7d");
        assert_eq!(humanize(Duration::from_secs(90)), "1m30s");
    }
}
