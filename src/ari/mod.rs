//! Everything that talks to Asterisk or reads what Asterisk said: ARI models and typed events,
//! the REST client and the event websocket (the simulated ARI is the `fake-ari` crate).
//!
//! Nothing outside this module parses ARI JSON.

pub(crate) mod client;
pub mod events;
pub(crate) mod low_water;
pub mod model;
pub(crate) mod tls;
pub(crate) mod websocket;

pub use client::{AriClient, AriEndpoint, AriError, DownloadError};
pub use events::{AriEvent, EpochMillis, EventParser, ParseError, ParseStats, TimedEvent};
pub use model::{Bridge, Channel, Endpoint, LiveRecording, StoredRecording};
