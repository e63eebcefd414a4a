//! The HTTP side every CRM resolver shares: its rate limiter, deadlines, a size cap on
//! answers, and the rule that 429/503 means "not found now, and rest a while".

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::ResolveError;
use crate::config::redacted_url;
use crate::crm::limiter::RateLimiter;

/// Answers larger than this are not a lookup result.
const MAX_BODY_BYTES: usize = 1 << 20;
/// How long to leave a CRM alone after 429/503 when it does not say (`Retry-After`).
const DEFAULT_REST: Duration = Duration::from_secs(5);
/// The longest rest honoured from `Retry-After`.
const MAX_REST: Duration = Duration::from_secs(60);

/// A CRM's answer that got past the rate limits.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: Bytes,
}

impl Reply {
    pub(crate) fn json(&self, host: &str) -> Result<serde_json::Value, ResolveError> {
        serde_json::from_slice(&self.body)
            .map_err(|error| ResolveError::Format { host: host.to_string(), reason: format!("not JSON ({error})") })
    }
}

#[derive(Debug)]
pub(crate) struct CrmClient {
    http: reqwest::Client,
    limiter: Arc<RateLimiter>,
    /// `scheme://host[:port]`: the only part of the CRM's address that may be logged.
    host: String,
    failing: AtomicBool,
}

impl CrmClient {
    /// A client of the service at `url` with a limiter of its own (a burst of one second's worth).
    pub(crate) fn new(http: reqwest::Client, url: &str, rate_per_sec: f64) -> Self {
        let burst = rate_per_sec.ceil().clamp(1.0, 100.0) as u32;
        Self::sharing(http, url, Arc::new(RateLimiter::new(rate_per_sec, burst)))
    }

    /// A client of the CRM account at `url` drawing from `limiter` (shared with its sink).
    pub(crate) fn sharing(http: reqwest::Client, url: &str, limiter: Arc<RateLimiter>) -> Self {
        Self { http, limiter, host: redacted_url(url), failing: AtomicBool::new(false) }
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Sends `request` once a rate-limit slot is free, within `deadline`.
    /// 429 and 503 become [`ResolveError::Status`] and make the client rest; other statuses are the caller's to read.
    pub(crate) async fn send(
        &self,
        request: reqwest::RequestBuilder,
        deadline: Instant,
    ) -> Result<Reply, ResolveError> {
        self.limiter.acquire(deadline).await?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        crate::metrics::counter!("deskhook_forward_crm_requests_total", "Requests sent to CRMs and lookup services.")
            .inc();
        let result = self.exchange(request.timeout(remaining.max(Duration::from_millis(1)))).await;
        self.note_outcome(&result);
        result
    }

    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Reply, ResolveError> {
        let transport = |error: reqwest::Error| ResolveError::Transport {
            host: self.host.clone(),
            // reqwest's message may carry the full URL (with the CRM's token): keep only its kind.
            reason: crate::failure::Failure::of(&error).words().into(),
        };
        let mut response = request.send().await.map_err(transport)?;
        let status = response.status().as_u16();
        if status == 429 || status == 503 {
            let rest = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| crate::wallclock::parse_retry_after(value, crate::wallclock::now_ms()))
                .unwrap_or(DEFAULT_REST)
                .min(MAX_REST);
            self.limiter.cool_down(rest);
            crate::metrics::counter!(
                "deskhook_forward_crm_rate_limited_total",
                "CRM answers 429/503 (too many requests).",
            )
            .inc();
            return Err(ResolveError::Status {
                status,
                host: self.host.clone(),
                detail: Some("too many requests".into()),
            });
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > MAX_BODY_BYTES {
                return Err(ResolveError::Format {
                    host: self.host.clone(),
                    reason: "answer larger than 1 MiB".into(),
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply { status, body: Bytes::from(body) })
    }

    /// Logs the first failure and the recovery, not every failed call.
    fn note_outcome(&self, result: &Result<Reply, ResolveError>) {
        let failed = match result {
            Ok(reply) => reply.status >= 500,
            Err(_) => true,
        };
        let was_failing = self.failing.swap(failed, Ordering::Relaxed);
        match (was_failing, failed, result) {
            (false, true, Err(error)) => {
                tracing::warn!(crm = %self.host, %error, "CRM lookups failing; calls go their normal route meanwhile")
            }
            (false, true, Ok(reply)) => {
                tracing::warn!(crm = %self.host, status = reply.status, "CRM lookups failing; calls go their normal route meanwhile")
            }
            (true, false, _) => tracing::info!(crm = %self.host, "CRM lookups work again"),
            _ => {}
        }
    }
}
