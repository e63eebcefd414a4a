//! Remembered `/forward` answers, found and not found, each with its own time to live.
//!
//! A found manager rarely changes within minutes, and a caller nobody owns calls again soon:
//! remembering both keeps CRM traffic (and rate limits) proportional to distinct callers, not
//! to calls. Entries hold the ready hashcompat body, so a hit costs one map lookup.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::answer::Answer;

/// At most this many phones are remembered; past it expired entries go first, then all.
pub(crate) const DEFAULT_MAX_ENTRIES: usize = 100_000;

/// What the chain concluded for one phone.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub answer: Option<Arc<Answer>>,
    /// The response body: the hashcompat pair, or empty when nobody was found.
    pub body: Bytes,
}

impl Resolved {
    pub(crate) fn found(answer: Answer) -> Self {
        let body = answer.body();
        Self { answer: Some(Arc::new(answer)), body }
    }

    pub(crate) fn nobody() -> Self {
        Self { answer: None, body: Bytes::new() }
    }
}

#[derive(Debug)]
struct Entry {
    resolved: Resolved,
    expires: Instant,
}

#[derive(Debug)]
pub(crate) struct AnswerCache {
    entries: RwLock<HashMap<Box<str>, Entry>>,
    hit_ttl: Duration,
    miss_ttl: Duration,
    max_entries: usize,
}

impl AnswerCache {
    pub(crate) fn new(hit_ttl: Duration, miss_ttl: Duration, max_entries: usize) -> Self {
        Self { entries: RwLock::new(HashMap::new()), hit_ttl, miss_ttl, max_entries: max_entries.max(1) }
    }

    /// The remembered answer for `key`, when it has not expired.
    pub(crate) fn get(&self, key: &str, now: Instant) -> Option<Resolved> {
        let entries = self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = entries.get(key)?;
        (entry.expires > now).then(|| entry.resolved.clone())
    }

    pub(crate) fn put(&self, key: &str, resolved: Resolved, now: Instant) {
        let ttl = if resolved.answer.is_some() { self.hit_ttl } else { self.miss_ttl };
        if ttl.is_zero() {
            return;
        }
        let mut entries = self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        if entries.len() >= self.max_entries && !entries.contains_key(key) {
            entries.retain(|_, entry| entry.expires > now);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(key.into(), Entry { resolved, expires: now + ttl });
    }

    /// Forgets everything (a source such as the table changed).
    pub(crate) fn clear(&self) {
        self.entries.write().unwrap_or_else(|poisoned| poisoned.into_inner()).clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.read().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(number: &str) -> Resolved {
        Resolved::found(Answer::new(number, "", "table").expect("valid extension"))
    }

    #[test]
    fn hits_and_misses_expire_on_their_own_ttl() {
        let cache = AnswerCache::new(Duration::from_secs(300), Duration::from_secs(60), 10);
        let now = Instant::now();
        cache.put("79161234567", found("101"), now);
        cache.put("79990000000", Resolved::nobody(), now);
        let later = now + Duration::from_secs(61);
        assert_eq!(
            cache.get("79161234567", later).and_then(|r| r.answer).map(|a| a.number.clone()),
            Some("101".into())
        );
        assert!(cache.get("79990000000", now).is_some_and(|r| r.answer.is_none() && r.body.is_empty()));
        assert!(cache.get("79990000000", later).is_none());
        assert!(cache.get("79161234567", now + Duration::from_secs(301)).is_none());
    }

    #[test]
    fn stays_within_its_size_cap() {
        let cache = AnswerCache::new(Duration::from_secs(300), Duration::from_secs(60), 3);
        let now = Instant::now();
        for phone in ["71", "72", "73", "74", "75"] {
            cache.put(phone, found("101"), now);
        }
        assert!(cache.len() <= 3);
        assert!(cache.get("75", now).is_some());
    }

    #[test]
    fn a_zero_ttl_disables_that_side() {
        let cache = AnswerCache::new(Duration::from_secs(300), Duration::ZERO, 10);
        let now = Instant::now();
        cache.put("71", Resolved::nobody(), now);
        assert!(cache.is_empty());
    }
}
