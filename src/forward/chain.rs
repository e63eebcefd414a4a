//! The resolver chain: asks the configured resolvers in order, each within its own timeout
//! and never past the lookup's deadline, skips extensions ARI reports unavailable, and
//! stops at the first that names an extension.

use std::time::Duration;

use tokio::time::Instant;

use super::answer::Answer;
use super::resolvers::{Query, ResolveError, Resolver};
use crate::presence::Presence;

/// A resolver and its own `timeout_ms`.
#[derive(Debug)]
pub struct Slot {
    pub resolver: Resolver,
    pub timeout: Option<Duration>,
}

/// What one resolver said.
#[derive(Debug, Clone)]
pub enum Outcome {
    Found(Answer),
    /// Found an extension, but ARI reports its endpoint offline/unavailable.
    Unavailable(Answer),
    Nobody,
    Failed(ResolveError),
    TimedOut,
}

/// One resolver's turn, for `deskhook lookup`.
#[derive(Debug, Clone)]
pub struct Step {
    pub kind: &'static str,
    pub outcome: Outcome,
    pub elapsed: Duration,
    /// Whether it finished within the lookup's budget (a later answer would not reach the dialplan).
    pub within_budget: bool,
}

#[derive(Debug)]
pub struct Chain {
    slots: Vec<Slot>,
    presence: Presence,
    skip_unavailable: bool,
}

/// The caller's identity as the resolvers see it.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub phone: &'a str,
    pub trunk: &'a str,
    pub callid: &'a str,
}

impl Chain {
    pub fn new(slots: Vec<Slot>, presence: Presence, skip_unavailable: bool) -> Self {
        Self { slots, presence, skip_unavailable }
    }

    pub fn kinds(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.slots.iter().map(|slot| slot.resolver.kind())
    }

    pub fn uses_trunk(&self) -> bool {
        self.slots.iter().any(|slot| slot.resolver.uses_trunk())
    }

    /// Whether `/forward` may send a call to `extension` right now.
    pub fn is_available(&self, extension: &str) -> bool {
        !(self.skip_unavailable && self.presence.is_unavailable(extension))
    }

    /// The first available extension any resolver names before `deadline`.
    pub async fn run(&self, caller: Caller<'_>, deadline: Instant) -> Option<Answer> {
        for slot in &self.slots {
            if Instant::now() >= deadline {
                budget_exhausted().inc();
                return None;
            }
            match self.ask(slot, caller, deadline).await {
                Outcome::Found(answer) => return Some(answer),
                Outcome::Unavailable(answer) => {
                    tracing::debug!(extension = %answer.number, resolver = slot.resolver.kind(), "skipping an unavailable extension")
                }
                Outcome::Failed(error) => {
                    tracing::debug!(resolver = slot.resolver.kind(), %error, "resolver failed; trying the next")
                }
                Outcome::TimedOut => {
                    tracing::debug!(resolver = slot.resolver.kind(), "resolver timed out; trying the next")
                }
                Outcome::Nobody => {}
            }
        }
        None
    }

    /// Asks every resolver (the ones after the budget too, each within its own timeout or the
    /// budget) and reports what each said; the answer is what `/forward` would have given.
    pub async fn run_all(&self, caller: Caller<'_>, budget: Duration) -> (Vec<Step>, Option<Answer>) {
        let started = Instant::now();
        let deadline = started + budget;
        let mut steps = Vec::with_capacity(self.slots.len());
        let mut answer = None;
        for slot in &self.slots {
            let step_started = Instant::now();
            let own_deadline = if step_started < deadline { deadline } else { step_started + budget };
            let outcome = self.ask(slot, caller, own_deadline).await;
            let finished = Instant::now();
            let within_budget = finished <= deadline;
            if let (Outcome::Found(found), true, None) = (&outcome, within_budget, &answer) {
                answer = Some(found.clone());
            }
            steps.push(Step { kind: slot.resolver.kind(), outcome, elapsed: finished - step_started, within_budget });
        }
        (steps, answer)
    }

    async fn ask(&self, slot: &Slot, caller: Caller<'_>, deadline: Instant) -> Outcome {
        let now = Instant::now();
        let deadline = slot.timeout.map_or(deadline, |timeout| deadline.min(now + timeout));
        let query = Query { phone: caller.phone, trunk: caller.trunk, callid: caller.callid, deadline };
        match tokio::time::timeout_at(deadline, slot.resolver.resolve(&query)).await {
            Ok(Ok(Some(answer))) if self.is_available(&answer.number) => Outcome::Found(answer),
            Ok(Ok(Some(answer))) => {
                crate::metrics::counter(
                    "deskhook_forward_unavailable_skipped_total",
                    "Extensions found but skipped because ARI reports their endpoint offline.",
                )
                .inc();
                Outcome::Unavailable(answer)
            }
            Ok(Ok(None)) => Outcome::Nobody,
            Ok(Err(error)) => {
                crate::metrics::counter("deskhook_forward_resolver_errors_total", "Resolver lookups that failed.")
                    .inc();
                Outcome::Failed(error)
            }
            Err(_) => {
                crate::metrics::counter("deskhook_forward_resolver_timeouts_total", "Resolver lookups that timed out.")
                    .inc();
                Outcome::TimedOut
            }
        }
    }
}

fn budget_exhausted() -> &'static crate::metrics::Counter {
    crate::metrics::counter(
        "deskhook_forward_budget_exhausted_total",
        "Lookups whose budget ran out before a resolver named an extension.",
    )
}
