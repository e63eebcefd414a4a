//! Client-side rate limits for CRM APIs: one token bucket per CRM account in the process,
//! shared by the `/forward` resolver and the sink of that account, plus a cool-down after the
//! CRM itself said "too many requests".
//!
//! Bitrix24 allows about 2 requests a second per portal (bursts of 50) and amoCRM 7; going
//! over gets the portal's 503/429 and, repeated, a ban. A lookup that would have to queue
//! beyond its budget is told so at once and counts as "not found now" (the call goes to the
//! queue). Deliveries wait as long as it takes, and leave a reserve of the burst to lookups,
//! which a caller is waiting on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
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
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

impl RateLimiter {
    pub(crate) fn new(rate_per_sec: f64, burst: u32) -> Self {
        let rate = if rate_per_sec.is_finite() && rate_per_sec > 0.0 { rate_per_sec } else { 1.0 };
        let burst = f64::from(burst.max(1));
        Self { rate, burst, bucket: Mutex::new(Bucket { tokens: burst, updated: Instant::now(), cooling_until: None }) }
    }

    /// Waits for a slot when one frees up before `deadline`; otherwise fails at once.
    pub(crate) async fn acquire(&self, deadline: Instant) -> Result<(), Throttled> {
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

    /// Waits for a slot however long it takes, leaving a tenth of the burst to lookups with a
    /// deadline (a sink's backlog never starves the dialplan's `/forward`).
    pub(crate) async fn acquire_patiently(&self) {
        let reserve = (self.burst / 10.0).floor();
        loop {
            let wait = {
                let now = Instant::now();
                let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                match bucket.cooling_until {
                    Some(until) if now < until => until - now,
                    _ => {
                        bucket.cooling_until = None;
                        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
                        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
                        bucket.updated = now;
                        let needed = 1.0 + reserve.min(self.burst - 1.0);
                        if bucket.tokens >= needed {
                            bucket.tokens -= 1.0;
                            return;
                        }
                        Duration::from_secs_f64((needed - bucket.tokens) / self.rate)
                    }
                }
            };
            tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
        }
    }

    /// The CRM answered 429/503: send nothing for `rest` (keeps the longest rest asked for).
    pub(crate) fn cool_down(&self, rest: Duration) {
        let until = Instant::now() + rest;
        let mut bucket = self.bucket.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        bucket.cooling_until = Some(bucket.cooling_until.map_or(until, |current| current.max(until)));
    }
}

/// The limiter of the CRM account at `host` (`scheme://host[:port]`): the first caller's rate
/// and burst make it, every later caller shares it.
pub(crate) fn shared(host: &str, rate_per_sec: f64, burst: u32) -> Arc<RateLimiter> {
    static LIMITERS: OnceLock<Mutex<HashMap<String, Arc<RateLimiter>>>> = OnceLock::new();
    let mut limiters = LIMITERS.get_or_init(Mutex::default).lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    limiters.entry(host.to_ascii_lowercase()).or_insert_with(|| Arc::new(RateLimiter::new(rate_per_sec, burst))).clone()
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

    #[tokio::test(start_paused = true)]
    async fn patient_callers_leave_a_reserve_for_lookups() {
        let limiter = RateLimiter::new(2.0, 20);
        let start = Instant::now();
        for _ in 0..18 {
            limiter.acquire_patiently().await;
        }
        assert_eq!(Instant::now(), start, "the burst minus the reserve goes at once");
        let far = start + Duration::from_secs(60);
        assert_eq!(limiter.reserve(Instant::now(), far), Ok(Duration::ZERO), "a lookup finds the reserve");
        limiter.acquire_patiently().await;
        assert!(Instant::now() >= start + Duration::from_millis(1_000), "then deliveries wait for the rate");
    }

    #[test]
    fn one_account_one_limiter() {
        let first = shared("https://portal.example", 2.0, 50);
        let again = shared("HTTPS://portal.example", 7.0, 7);
        assert!(Arc::ptr_eq(&first, &again));
        assert!(!Arc::ptr_eq(&first, &shared("https://other.example", 2.0, 50)));
    }

    #[tokio::test]
    async fn a_cool_down_refuses_until_it_is_over() {
        let limiter = RateLimiter::new(100.0, 10);
        limiter.cool_down(Duration::from_secs(60));
        let result = limiter.acquire(Instant::now() + Duration::from_secs(120)).await;
        assert!(matches!(result, Err(Throttled::CoolingDown { .. })), "{result:?}");
    }
}
