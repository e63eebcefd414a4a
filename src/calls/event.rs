//! What the call engine emits: the call record's events (`super::record`), recordings to
//! upload, and requests to its shell. No wire format lives here: sinks build those.

use serde::{Deserialize, Serialize};

use crate::ari::events::EpochMillis;

/// A recording of a finished call that should reach the helpdesk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingRef {
    pub unique_id: String,
    pub source: RecordingSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordingSource {
    /// A MixMonitor file, as named by `MIXMONITOR_FILENAME`. (Recordings made through ARI
    /// never pass through the engine: the recorder uploads them itself.)
    File(String),
}

impl RecordingSource {
    pub(crate) fn as_str(&self) -> &str {
        match self {
            RecordingSource::File(path) => path,
        }
    }
}

/// Something the engine needs from the outside world; the shell answers or acts on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Who is in queue `queue`? Ask through a live channel of the call; answer with
    /// [`super::Engine::provide_queue_members`]. The queue event waits for the answer.
    QueueMembers { unique_id: String, channel_id: String, queue: String },
    /// A client is talking to someone: the ARI recorder may start on the client's channel.
    /// Sent at the first answer, and again after every resync for calls still talking (a
    /// reconnect ends deskhook's snoop channels, so recording resumes as a new part).
    ConversationStarted { unique_id: String, client_channel_id: String },
    /// The call is over (its ended event has been emitted); recorders may finish.
    CallClosed { unique_id: String, answered: bool },
    /// A call changed: what a restart needs to end it or follow it on (`None` once there is
    /// nothing to take back: it closed, or it is internal). Emitted by
    /// [`super::Engine::take_checkpoints`] after the outputs of the change.
    CallCheckpoint { unique_id: String, checkpoint: Option<Box<super::CallCheckpoint>> },
    /// A call adopted on a resync may be recorded by MixMonitor since before deskhook saw it:
    /// read `MIXMONITOR_FILENAME` of these channels and answer with
    /// [`super::Engine::provide_recording_names`]. The call's recordings wait for the answer.
    RecordingNames { unique_id: String, channel_ids: Vec<String> },
    /// The daemon is watching Asterisk at this event time (emitted by the daemon, not the
    /// engine, while calls are open): a restart after a crash ends vanished calls then.
    Alive { at: EpochMillis },
    /// Everything one step of the engine emitted (its events, then its checkpoints) is out;
    /// emitted by the daemon. A sink that stores them commits the step as one unit, so a kill
    /// never leaves an event stored without the checkpoint that follows it.
    StepDone,
}

/// Everything the engine emits, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    Event(super::record::CallEvent),
    Recording(RecordingRef),
    Effect(Effect),
}
