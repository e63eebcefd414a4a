//! The neutral call record: what happened on a call, said in the call's own terms (who, when,
//! how it ended), not in any destination's. The engine emits it; each sink
//! maps it to its own requests, so a new destination never changes the engine.

use serde::{Deserialize, Serialize};

use crate::ari::events::EpochMillis;

/// Which way a call goes, seen from the PBX's operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallDirection {
    /// A client called in through a trunk.
    Incoming,
    /// An operator called a client out through a trunk.
    Outgoing,
}

/// Who a call is between, as known when it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parties {
    pub direction: CallDirection,
    /// The client's number: incoming, the caller's; outgoing, the number dialed.
    pub client: String,
    /// Incoming: the number the client dialed (DID). Outgoing: empty.
    pub did: String,
    /// Outgoing: the extension that called. Incoming: empty.
    pub caller_extension: String,
}

impl Parties {
    /// A client (`client`) who called the PBX's number `did`.
    pub fn incoming(client: impl Into<String>, did: impl Into<String>) -> Parties {
        Parties {
            direction: CallDirection::Incoming,
            client: client.into(),
            did: did.into(),
            caller_extension: String::new(),
        }
    }

    /// Extension `extension` called the client's number `dialed`.
    #[cfg(test)]
    pub(crate) fn outgoing(extension: impl Into<String>, dialed: impl Into<String>) -> Parties {
        Parties {
            direction: CallDirection::Outgoing,
            client: dialed.into(),
            did: String::new(),
            caller_extension: extension.into(),
        }
    }
}

/// One thing that happened on a call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    /// The call's linkedid: the same for every event of the call.
    pub unique_id: String,
    /// When it happened in Asterisk (the ARI event's timestamp).
    pub at: EpochMillis,
    pub parties: Parties,
    pub what: Happened,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Happened {
    /// The call began: a client's call entered Asterisk, or an operator dialed out.
    Started,
    /// Phones started ringing: one extension rung directly (`queue` is `None`), or the members
    /// of queue `queue` (possibly none known).
    Ringing { extensions: Vec<String>, queue: Option<String> },
    /// An operator answered an incoming call; for an outgoing call, the called party answered
    /// (`operator` is then the extension that called).
    Answered { operator: String },
    /// The client went from one operator to another.
    Transferred { from: String, to: String, kind: TransferKind },
    /// The call is over; everything known about it.
    Ended(Box<CallSummary>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TransferKind {
    /// The call rang the new operator itself (the old one sent it on).
    Blind,
    /// The new operator was already on the line with the old one (or picked the call up).
    Attended,
}

/// A finished call, as SPEC §7's call summary describes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallSummary {
    pub started_at: EpochMillis,
    /// The first answer by an operator (outgoing: by the called party).
    pub answered_at: Option<EpochMillis>,
    pub ended_at: EpochMillis,
    /// Incoming: the last operator who answered. Outgoing: the extension that called.
    pub operator: Option<String>,
    /// The queue the call entered last.
    pub queue: Option<String>,
    pub outcome: Outcome,
    /// What Asterisk said when the client's channel went (Q.850 cause and its text).
    pub hangup_cause: Option<i64>,
    pub hangup_cause_text: Option<String>,
    pub hung_up_by: HungUpBy,
    /// Every extension that rang, in order.
    pub rang: Vec<Rang>,
    pub transfers: Vec<Transfer>,
    /// Recording files (as MixMonitor named them), in the order they started.
    pub recordings: Vec<String>,
    /// The extensions of the last ring batch (an unanswered call's ended event names them).
    pub last_rang: Vec<String>,
}

impl CallSummary {
    /// A call from `started_at` to `ended_at` that nobody answered and nothing more is known
    /// of (the start for building one).
    pub fn unanswered(started_at: EpochMillis, ended_at: EpochMillis) -> CallSummary {
        CallSummary {
            started_at,
            answered_at: None,
            ended_at,
            operator: None,
            queue: None,
            outcome: Outcome::Failed,
            hangup_cause: None,
            hangup_cause_text: None,
            hung_up_by: HungUpBy::System,
            rang: Vec::new(),
            transfers: Vec::new(),
            recordings: Vec::new(),
            last_rang: Vec::new(),
        }
    }

    /// The same call, answered by `operator` `talk_seconds` before it ended.
    pub fn answered_by(mut self, operator: impl Into<String>, talk_seconds: u64) -> CallSummary {
        let talk_millis = EpochMillis::try_from(talk_seconds.saturating_mul(1000)).unwrap_or(EpochMillis::MAX);
        self.answered_at = Some(self.ended_at.saturating_sub(talk_millis).max(self.started_at));
        self.operator = Some(operator.into());
        self.outcome = Outcome::Answered;
        self
    }

    /// Whole seconds from the first answer to the end (Asterisk's `ANSWEREDTIME`); 0 if unanswered.
    pub(crate) fn talk_seconds(&self) -> u64 {
        self.answered_at.map_or(0, |answered| whole_seconds(self.ended_at - answered))
    }

    /// Whole seconds from the start to the first answer (to the end if never answered).
    pub(crate) fn wait_seconds(&self) -> u64 {
        whole_seconds(self.answered_at.unwrap_or(self.ended_at) - self.started_at)
    }

    pub(crate) fn total_seconds(&self) -> u64 {
        whole_seconds(self.ended_at - self.started_at)
    }

    pub(crate) fn answered(&self) -> bool {
        self.answered_at.is_some()
    }
}

fn whole_seconds(millis: EpochMillis) -> u64 {
    (millis.max(0) / 1000) as u64
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Answered,
    /// Something rang, nobody answered.
    NoAnswer,
    /// Every phone that was tried was busy.
    Busy,
    /// No phone was reached at all.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HungUpBy {
    Client,
    Operator,
    /// Asterisk ended it (a timeout, the dialplan, a restart, a crash).
    System,
}

/// One extension that rang.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rang {
    pub extension: String,
    pub queue: Option<String>,
    pub outcome: RingOutcome,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RingOutcome {
    Answered,
    NoAnswer,
    Busy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transfer {
    pub from: String,
    pub to: String,
    pub kind: TransferKind,
    pub at: EpochMillis,
}

impl CallEvent {
    /// A call's start and end happen once, whatever restarts and reconnects do.
    pub(crate) fn is_once_per_call(&self) -> bool {
        matches!(self.what, Happened::Started | Happened::Ended(_))
    }

    pub fn is_ended(&self) -> bool {
        matches!(self.what, Happened::Ended(_))
    }

    pub(crate) fn summary(&self) -> Option<&CallSummary> {
        match &self.what {
            Happened::Ended(summary) => Some(summary),
            _ => None,
        }
    }

    /// A short name of what happened, for logs.
    pub(crate) fn name(&self) -> &'static str {
        match self.what {
            Happened::Started => "started",
            Happened::Ringing { .. } => "ringing",
            Happened::Answered { .. } => "answered",
            Happened::Transferred { .. } => "transferred",
            Happened::Ended(_) => "ended",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(started_at: EpochMillis, answered_at: Option<EpochMillis>, ended_at: EpochMillis) -> CallSummary {
        CallSummary { answered_at, ..CallSummary::unanswered(started_at, ended_at) }
    }

    #[test]
    fn seconds_are_whole_and_truncated_like_asterisk_counts_them() {
        let answered = summary(1_000, Some(3_900), 7_899);
        assert_eq!((answered.wait_seconds(), answered.talk_seconds(), answered.total_seconds()), (2, 3, 6));
        let unanswered = summary(1_000, None, 5_500);
        assert_eq!((unanswered.wait_seconds(), unanswered.talk_seconds(), unanswered.total_seconds()), (4, 0, 4));
        let built = CallSummary::unanswered(1_000, 60_000).answered_by("101", 42);
        assert_eq!((built.talk_seconds(), built.operator.as_deref()), (42, Some("101")));
    }
}
