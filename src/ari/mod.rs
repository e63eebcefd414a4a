//! Everything that talks to Asterisk or reads what Asterisk said: ARI models and typed events.
//!
//! Nothing outside this module parses ARI JSON.

pub mod events;
pub mod model;

pub use events::{AriEvent, EpochMillis, EventParser, ParseError, ParseStats, TimedEvent};
pub use model::{Bridge, Channel, Endpoint};
