//! The call engine: ARI events in, the neutral call record out (`record`).
//!
//! A pure state machine (no I/O, no async, no clock: time is each event's `timestamp`).
//! [`Engine::handle`] takes one [`TimedEvent`] and appends [`Output`]s: helpdesk events,
//! recordings to upload, and [`Effect`]s the shell must act on (e.g. "who is in queue X?").
//! The live daemon, `replay`, the tests and the benches all drive this same type.

pub(crate) mod checkpoint;
pub(crate) mod classify;
pub(crate) mod engine;
pub(crate) mod event;
pub(crate) mod port;
pub(crate) mod record;
pub(crate) mod since_connect;

pub use checkpoint::CallCheckpoint;
pub(crate) use classify::{ChannelClass, Classifier};
pub(crate) use engine::VARIABLES_READ;
pub use engine::{Engine, EngineSettings};
pub use event::{Effect, Output, RecordingRef, RecordingSource};
pub use record::{
    CallDirection, CallEvent, CallSummary, Happened, HungUpBy, Outcome, Parties, Rang, RingOutcome, Transfer,
    TransferKind,
};
pub(crate) use since_connect::SinceConnect;
