//! The resolver chain: the first resolver in configured order that names an available
//! extension wins, each within its own timeout and never past the lookup's deadline.
//!
//! Local resolvers (table, history) answer at once and are asked in order first. From the
//! first network resolver on, the rest are asked at the same time, so a CRM that hangs cannot
//! keep a later resolver from answering within the budget: when the deadline comes, the
//! earliest resolver (in configured order) that has found someone wins.

use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::time::Instant;

use super::answer::Answer;
use super::resolvers::{Query, ResolveError, Resolver};
use crate::presence::Presence;

/// A resolver and its own `timeout_ms`.
#[derive(Debug)]
pub(crate) struct Slot {
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
pub(crate) struct Chain {
    slots: Vec<Slot>,
    presence: Presence,
    skip_unavailable: bool,
}

/// The caller's identity as the resolvers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub phone: &'a str,
    pub trunk: &'a str,
    pub callid: &'a str,
}

impl Chain {
    pub(crate) fn new(slots: Vec<Slot>, presence: Presence, skip_unavailable: bool) -> Self {
        Self { slots, presence, skip_unavailable }
    }

    pub(crate) fn uses_trunk(&self) -> bool {
        self.slots.iter().any(|slot| slot.resolver.uses_trunk())
    }

    /// Whether `/forward` may send a call to `extension` right now.
    pub(crate) fn is_available(&self, extension: &str) -> bool {
        !(self.skip_unavailable && self.presence.is_unavailable(extension))
    }

    /// The first available extension, in resolver order, known before `deadline`.
    pub(crate) async fn run(&self, caller: Caller<'_>, deadline: Instant) -> Option<Answer> {
        let first_remote = self.slots.iter().position(|slot| !slot.resolver.is_local()).unwrap_or(self.slots.len());
        for slot in &self.slots[..first_remote] {
            if let Some(answer) = self.note(slot, self.ask(slot, caller, deadline).await) {
                return Some(answer);
            }
        }
        let remote = &self.slots[first_remote..];
        let mut outcomes: Vec<Option<Outcome>> = vec![None; remote.len()];
        let mut asks: FuturesUnordered<_> = remote
            .iter()
            .enumerate()
            .map(|(index, slot)| async move { (index, self.ask(slot, caller, deadline).await) })
            .collect();
        loop {
            // Decided once every resolver before the first finder has finished without one.
            for outcome in &outcomes {
                match outcome {
                    None => break,
                    Some(Outcome::Found(answer)) => return Some(answer.clone()),
                    Some(_) => {}
                }
            }
            match tokio::time::timeout_at(deadline, asks.next()).await {
                Ok(Some((index, outcome))) => {
                    let _ = self.note(&remote[index], outcome.clone());
                    outcomes[index] = Some(outcome);
                }
                Ok(None) => return None,
                Err(_) => {
                    budget_exhausted().inc();
                    return outcomes.into_iter().flatten().find_map(|outcome| match outcome {
                        Outcome::Found(answer) => Some(answer),
                        _ => None,
                    });
                }
            }
        }
    }

    /// Logs what a resolver said; the answer when it found an available extension.
    fn note(&self, slot: &Slot, outcome: Outcome) -> Option<Answer> {
        match outcome {
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
        None
    }

    /// Asks every resolver at once (each within its own timeout, or the budget — also past it,
    /// to show what a slow one would have said) and reports what each said; the answer is the
    /// one `/forward` would have given: the first in order found within the budget.
    pub(crate) async fn run_all(&self, caller: Caller<'_>, budget: Duration) -> (Vec<Step>, Option<Answer>) {
        let started = Instant::now();
        let deadline = started + budget;
        let steps: Vec<Step> = futures_util::future::join_all(self.slots.iter().map(|slot| async move {
            let outcome = self.ask(slot, caller, started + budget.max(slot.timeout.unwrap_or_default())).await;
            let finished = Instant::now();
            Step {
                kind: slot.resolver.kind(),
                outcome,
                elapsed: finished - started,
                within_budget: finished <= deadline,
            }
        }))
        .await;
        let answer = steps.iter().find_map(|step| match (&step.outcome, step.within_budget) {
            (Outcome::Found(found), true) => Some(found.clone()),
            _ => None,
        });
        (steps, answer)
    }

    async fn ask(&self, slot: &Slot, caller: Caller<'_>, deadline: Instant) -> Outcome {
        let now = Instant::now();
        let deadline = slot.timeout.map_or(deadline, |timeout| deadline.min(now + timeout));
        let query = Query { phone: caller.phone, trunk: caller.trunk, callid: caller.callid, deadline };
        match tokio::time::timeout_at(deadline, slot.resolver.resolve(&query)).await {
            Ok(Ok(Some(answer))) if self.is_available(&answer.number) => Outcome::Found(answer),
            Ok(Ok(Some(answer))) => {
                crate::metrics::counter!(
                    "deskhook_forward_unavailable_skipped_total",
                    "Extensions found but skipped because ARI reports their endpoint offline.",
                )
                .inc();
                Outcome::Unavailable(answer)
            }
            Ok(Ok(None)) => Outcome::Nobody,
            Ok(Err(error)) => {
                crate::metrics::counter!("deskhook_forward_resolver_errors_total", "Resolver lookups that failed.")
                    .inc();
                Outcome::Failed(error)
            }
            Err(_) => {
                crate::metrics::counter!(
                    "deskhook_forward_resolver_timeouts_total",
                    "Resolver lookups that timed out."
                )
                .inc();
                Outcome::TimedOut
            }
        }
    }
}

fn budget_exhausted() -> &'static crate::metrics::Counter {
    crate::metrics::counter!(
        "deskhook_forward_budget_exhausted_total",
        "Lookups whose budget ran out before a resolver named an extension.",
    )
}
