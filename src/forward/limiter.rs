//! Client-side rate limits for CRM APIs: a token bucket that never makes a caller wait past
//! its deadline, plus a cool-down after the CRM itself said "too many requests".
//!
//! Bitrix24 allows about 2 requests a second per portal and amoCRM 7; going over gets the
//! portal's 503/429 and, repeated, a ban. A lookup that would have to queue beyond its
//! budget is told so at once and counts as "not found now" (the call goes to the queue).

use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Why a request was not let through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Throttled {
    #[error("the CRM asked to slow down; resting for {}ms more", remaining.as_millis())]
    CoolingDown { remaining: Duration },
    #[error("the CRM's rate limit would delay this lookup past its deadline")]
    PastDeadline,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
    cooling_until: Option<Instant>,
}

/// A token bucket: `rate` requests a second on average, bursts of `burst`.
#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    pub fn new(rate_per_sec: f64, burst: u32) -> Self {
        let rate = if rate_per_sec.is_finite() && rate_per_sec > 0.0 { rate_per_sec } else { 1.0 };
        let burst = f64::from(burst.max(1));
        Self { rate, burst, bucket: Mutex::new(Bucket { tokens: burst, updated: Instant::now(), cooling_until: None }) }
    }

    /// Waits for a slot when one frees up before `deadline`; otherwise fails at once.
    pub async fn acquire(&self, deadline: Instant) -> Result<(), Throttled> {
        let wait = self.reserve(Instant::now(), deadline)?;
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// Takes a token (possibly one that frees up later) and says how long to wait for it.
    fn reserve(&self, now: Instant, deadline: Instant) -> Result<Duration, Throttled> {
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(until) = bucket.cooling_until {
            if now < until {
                return Err(Throttled::CoolingDown { remaining: until - now });
            }
            bucket.cooling_until = None;
        }
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.updated = now;
        let wait = if bucket.tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate)
        };
        if now + wait > deadline {
            return Err(Throttled::PastDeadline);
        }
        bucket.tokens -= 1.0;
        Ok(wait)
    }

    /// The CRM answered 429/503: send nothing for `rest` (keeps the longest rest asked for).
    pub fn cool_down(&self, rest: Duration) {
        let until = Instant::now() + rest;
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.cooling_until = Some(bucket.cooling_until.map_or(until, |current| current.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_spaces_requests_at_the_rate() {
        let limiter = RateLimiter::new(2.0, 2);
        let start = Instant::now();
        let far = start + Duration::from_secs(10);
        assert_eq!(limiter.reserve(start, far), Ok(Duration::ZERO));
        assert_eq!(limiter.reserve(start, far), Ok(Duration::ZERO));
        assert_eq!(limiter.reserve(start, far), Ok(Duration::from_millis(500)));
        assert_eq!(limiter.reserve(start, far), Ok(Duration::from_millis(1000)));
        // After a quiet second the queue has drained by two tokens.
        let later = start + Duration::from_secs(1);
        assert_eq!(limiter.reserve(later, far), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn never_waits_past_the_deadline() {
        let limiter = RateLimiter::new(1.0, 1);
        let start = Instant::now();
        assert_eq!(limiter.reserve(start, start + Duration::from_millis(10)), Ok(Duration::ZERO));
        assert_eq!(limiter.reserve(start, start + Duration::from_millis(300)), Err(Throttled::PastDeadline));
        // The refused request took no token: a patient caller still gets the next slot.
        assert_eq!(limiter.reserve(start, start + Duration::from_secs(5)), Ok(Duration::from_secs(1)));
    }

    #[tokio::test]
    async fn a_cool_down_refuses_until_it_is_over() {
        let limiter = RateLimiter::new(100.0, 10);
        limiter.cool_down(Duration::from_secs(60));
        let result = limiter.acquire(Instant::now() + Duration::from_secs(120)).await;
        assert!(matches!(result, Err(Throttled::CoolingDown { .. })), "{result:?}");
    }
}
