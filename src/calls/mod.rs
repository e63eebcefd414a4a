//! The call engine: ARI events in, the neutral call record out (`record`).
//!
//! A pure state machine (no I/O, no async, no clock: time is each event's `timestamp`).
//! [`Engine::handle`] takes one [`TimedEvent`] and appends [`Output`]s: helpdesk events,
//! recordings to upload, and [`Effect`]s the shell must act on (e.g. "who is in queue X?").
//! The live daemon, `replay`, the tests and the benches all drive this same type.

pub mod checkpoint;
pub mod classify;
pub mod engine;
pub mod event;
pub mod port;
pub mod record;
pub mod since_connect;

pub use checkpoint::CallCheckpoint;
pub use classify::{ChannelClass, Classifier};
pub use engine::{Engine, EngineSettings, EngineStats};
pub use event::{Effect, Output, RecordingRef, RecordingSource};
pub use record::{
    CallDirection, CallEvent, CallSummary, Happened, HungUpBy, Outcome, Parties, Rang, RingOutcome, Transfer,
    TransferKind,
};
pub use since_connect::SinceConnect;

pub use crate::ari::events::TimedEvent;
