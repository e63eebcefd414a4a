//! `ForwardService`: one lookup as `/forward` serves it — cache first, then one shared run of
//! the resolver chain per phone (concurrent calls from the same number wait for the same CRM
//! request), and an answer by the reply deadline whatever the resolvers are doing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::answer::Answer;
use super::cache::{AnswerCache, Resolved, DEFAULT_MAX_ENTRIES};
use super::chain::{Caller, Chain, Slot, Step};
use super::resolvers::{Context, Resolver};
use super::ForwardError;
use crate::config::Config;
use crate::health::Health;
use crate::history::History;
use crate::metrics::{self, Counter};
use crate::numbers::{PhoneError, PhoneNormalizer};
use crate::presence::Presence;

/// Time kept back from the budget to write the response and cross loopback.
const MAX_REPLY_RESERVE: Duration = Duration::from_millis(50);
/// Connection set-up to a CRM; the rest of each request's time comes from the budget.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The `/forward` lookups; cheap to clone (one `Arc`).
#[derive(Debug, Clone)]
pub struct ForwardService {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    chain: Chain,
    cache: Arc<AnswerCache>,
    inflight: Mutex<HashMap<String, watch::Receiver<Option<Resolved>>>>,
    phones: PhoneNormalizer,
    budget: Duration,
    /// The budget less the reply reserve: when the handler stops waiting for the chain.
    reply_within: Duration,
    /// When the chain must have decided: a little before `reply_within`, so the answer it
    /// found at its deadline still reaches the waiting handler.
    decide_within: Duration,
    key_uses_trunk: bool,
    health: Health,
}

/// What `deskhook lookup` prints.
#[derive(Debug, Clone)]
pub struct Diagnosis {
    pub phone: String,
    pub steps: Vec<Step>,
    pub answer: Option<Answer>,
    pub budget: Duration,
}

struct Stats {
    requests: &'static Counter,
    cache_hits: &'static Counter,
    found: &'static Counter,
    late: &'static Counter,
}

fn stats() -> &'static Stats {
    static STATS: OnceLock<Stats> = OnceLock::new();
    STATS.get_or_init(|| Stats {
        requests: metrics::counter!("deskhook_forward_lookups_total", "Valid /forward lookups."),
        cache_hits: metrics::counter!("deskhook_forward_cache_hits_total", "/forward lookups answered from the cache."),
        found: metrics::counter!("deskhook_forward_found_total", "/forward lookups that named an extension."),
        late: metrics::counter!(
            "deskhook_forward_answered_empty_at_deadline_total",
            "/forward lookups answered empty because the resolvers were still busy at the budget's end.",
        ),
    })
}

impl ForwardService {
    /// Builds the chain from `config.forward` (loads the tables, starts their file watchers).
    /// Starts no async task: it may be built outside a runtime; lookups need a Tokio runtime.
    pub fn new(
        config: &Config,
        presence: Presence,
        history: Option<History>,
        health: Health,
    ) -> Result<ForwardService, ForwardError> {
        let forward = &config.forward;
        let phones = PhoneNormalizer::new(&forward.default_country);
        let cache =
            Arc::new(AnswerCache::new(forward.cache_ttl.get(), forward.miss_cache_ttl.get(), DEFAULT_MAX_ENTRIES));
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .user_agent(concat!("deskhook/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(3))
            .build()
            .map_err(|error| ForwardError::HttpClient(error.to_string()))?;
        let context = Context { phones: &phones, history: history.as_ref(), http: &http, cache: &cache };
        let slots = forward
            .resolvers
            .iter()
            .map(|resolver| Ok(Slot { resolver: Resolver::build(resolver, &context)?, timeout: resolver.timeout() }))
            .collect::<Result<Vec<_>, ForwardError>>()?;
        let chain = Chain::new(slots, presence, forward.skip_unavailable);
        let budget = Duration::from_millis(forward.budget_ms);
        let reserve = (budget / 10).min(MAX_REPLY_RESERVE);
        let _ = stats();
        Ok(ForwardService {
            inner: Arc::new(Inner {
                key_uses_trunk: chain.uses_trunk(),
                chain,
                cache,
                inflight: Mutex::new(HashMap::new()),
                phones,
                budget,
                reply_within: budget - reserve,
                decide_within: budget - reserve - reserve / 2,
                health,
            }),
        })
    }

    pub fn normalise(&self, raw_phone: &str) -> Result<String, PhoneError> {
        self.inner.phones.normalise(raw_phone)
    }

    pub(crate) fn health(&self) -> &Health {
        &self.inner.health
    }

    pub fn budget(&self) -> Duration {
        self.inner.budget
    }

    /// The answer for a normalised `phone`, always before the budget is spent.
    pub async fn answer(&self, phone: &str, trunk: &str, callid: &str) -> Resolved {
        let started = Instant::now();
        let stats = stats();
        stats.requests.inc();
        let key = self.cache_key(phone, trunk);
        if let Some(hit) = self.inner.cache.get(&key, started) {
            stats.cache_hits.inc();
            return self.deliverable(hit);
        }
        let reply_by = started + self.inner.reply_within;
        let mut pending = {
            let mut inflight = self.inner.inflight.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            // The run for this phone may have finished between the cache check and the lock.
            if let Some(hit) = self.inner.cache.get(&key, Instant::now()) {
                stats.cache_hits.inc();
                return self.deliverable(hit);
            }
            match inflight.get(&key) {
                Some(pending) => pending.clone(),
                None => {
                    let (done, pending) = watch::channel(None);
                    inflight.insert(key.clone(), pending.clone());
                    let caller = OwnedCaller { phone: phone.into(), trunk: trunk.into(), callid: callid.into() };
                    let decide_by = started + self.inner.decide_within;
                    tokio::spawn(run_shared(Arc::clone(&self.inner), key, caller, decide_by, done));
                    pending
                }
            }
        };
        let resolved = match tokio::time::timeout_at(reply_by, pending.wait_for(Option::is_some)).await {
            Ok(Ok(resolved)) => resolved.clone().unwrap_or_else(Resolved::nobody),
            // The run ended without a result (it panicked): nobody, and the next call tries again.
            Ok(Err(_)) => Resolved::nobody(),
            Err(_) => {
                stats.late.inc();
                Resolved::nobody()
            }
        };
        self.deliverable(resolved)
    }

    /// Runs every resolver once without the cache and reports each one's answer and time.
    pub(crate) async fn diagnose(&self, raw_phone: &str, trunk: &str) -> Result<Diagnosis, PhoneError> {
        let phone = self.normalise(raw_phone)?;
        let caller = Caller { phone: &phone, trunk, callid: "" };
        let (steps, answer) = self.inner.chain.run_all(caller, self.inner.budget).await;
        Ok(Diagnosis { phone: phone.clone(), steps, answer, budget: self.inner.budget })
    }

    fn cache_key(&self, phone: &str, trunk: &str) -> String {
        if self.inner.key_uses_trunk {
            format!("{phone}|{trunk}")
        } else {
            phone.to_string()
        }
    }

    /// A remembered extension may have gone offline since: then the call takes its normal route.
    fn deliverable(&self, resolved: Resolved) -> Resolved {
        match &resolved.answer {
            Some(answer) if !self.inner.chain.is_available(&answer.number) => Resolved::nobody(),
            Some(_) => {
                stats().found.inc();
                resolved
            }
            None => resolved,
        }
    }
}

struct OwnedCaller {
    phone: String,
    trunk: String,
    callid: String,
}

/// Removes the in-flight entry however the run ends, so a failed run never blocks the phone.
struct InflightGuard<'a> {
    inner: &'a Inner,
    key: &'a str,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.inner.inflight.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(self.key);
    }
}

/// One chain run shared by every lookup of the same phone that arrives while it is going.
async fn run_shared(
    inner: Arc<Inner>,
    key: String,
    caller: OwnedCaller,
    deadline: Instant,
    done: watch::Sender<Option<Resolved>>,
) {
    let _guard = InflightGuard { inner: &inner, key: &key };
    let found =
        inner.chain.run(Caller { phone: &caller.phone, trunk: &caller.trunk, callid: &caller.callid }, deadline).await;
    let resolved = found.map_or_else(Resolved::nobody, Resolved::found);
    // Cache before leaving the in-flight map, so no lookup in between starts a second run.
    inner.cache.put(&key, resolved.clone(), Instant::now());
    let _ = done.send(Some(resolved));
}
