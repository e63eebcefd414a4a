//! What survives a crash of deskhook about a call in progress: enough of the engine's view of
//! an open call (its legs, who answered and when, its MixMonitor files) to end it correctly
//! or follow it on after a restart. Stored as JSON by the daemon with the call's events.

use serde::{Deserialize, Serialize};

use crate::ari::events::EpochMillis;

use super::record::{HungUpBy, Rang, Transfer};

/// An open call as the engine knew it at its last change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallCheckpoint {
    pub unique_id: String,
    pub direction: CheckpointDirection,
    /// The channel the call is rooted at.
    pub root: String,
    pub root_gone: bool,
    pub from_user: String,
    pub to_user: String,
    pub client_legs: Vec<String>,
    pub first_answer_at: Option<EpochMillis>,
    pub last_operator: Option<String>,
    pub answered_legs: Vec<String>,
    pub rung_legs: Vec<String>,
    pub last_rang: Vec<String>,
    /// MixMonitor files, in the order they were started.
    pub recordings: Vec<String>,
    pub adopted: bool,
    pub legs: Vec<LegCheckpoint>,
    /// Event time of the newest event the engine had handled when this was taken.
    pub taken_at: EpochMillis,
    /// A `call to queue` event still waiting for the queue's members, with the outputs
    /// waiting behind it.
    #[serde(default)]
    pub pending_queue: Option<PendingQueueCheckpoint>,
    /// What the call's summary will say (absent in checkpoints of older versions).
    #[serde(default)]
    pub facts: CallFacts,
}

/// What a call's summary needs beyond who answered when, gathered as the call goes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallFacts {
    pub started_at: Option<EpochMillis>,
    /// The queue the call entered last.
    pub last_queue: Option<String>,
    /// Every extension that rang, with the leg (channel id) that rang it, in order.
    pub rang: Vec<(String, Rang)>,
    pub transfers: Vec<Transfer>,
    /// The cause Asterisk gave when the client's channel went.
    pub hangup: Option<(i64, String)>,
    pub hung_up_by: Option<HungUpBy>,
    /// Outgoing: how the dial to the trunk ended (`BUSY`, `CHANUNAVAIL`, …).
    pub client_dial_status: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingQueueCheckpoint {
    pub name: String,
    pub entered_at: EpochMillis,
    pub queue_channel: String,
    pub ring_round: Vec<String>,
    pub first_member_dial_at: Option<EpochMillis>,
    pub round_complete: bool,
    pub held: Vec<super::Output>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointDirection {
    Undecided,
    Incoming,
    Outgoing,
}

/// One channel of the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegCheckpoint {
    pub id: String,
    pub name: String,
    pub dialed: bool,
    pub via_queue: bool,
    pub in_queue: Option<String>,
    pub ringing: bool,
    pub answered: bool,
    pub caller_number: String,
    pub exten_at_creation: String,
}

impl CallCheckpoint {
    pub fn to_json(&self) -> String {
        // Plain strings, numbers and lists: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<CallCheckpoint, serde_json::Error> {
        serde_json::from_str(text)
    }
}
