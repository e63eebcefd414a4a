//! deskhook: a sidecar daemon beside Asterisk that turns ARI events into helpdesk webhooks.
//!
//! The flow runs one way. `ari` reads Asterisk's websocket (subscribeAll) and REST API and
//! turns JSON into typed events. `calls::Engine`, a pure state machine with no I/O and no
//! clock, groups channels into calls and derives the helpdesk events (incoming start, call
//! to a personal number or a queue, answered, ended; outgoing start, answered, ended).
//! `deliver` persists every event in a SQLite outbox before it is sent, then posts it to the
//! helpdesk webhook in order per call, retrying with backoff. `recordings` picks up MixMonitor
//! files (or records through ARI snoop channels) and uploads them after the call's ended
//! event. `history` remembers who talked to whom, and `forward` answers the dialplan's
//! `/forward` question (who is this caller's manager) from a table, that history or a CRM,
//! always within a time budget. `commands` holds one function per CLI subcommand.

pub mod ari;
pub mod calls;
pub mod commands;
pub mod config;
pub mod daemon;
pub mod deliver;
pub mod forward;
pub mod health;
pub mod history;
pub mod metrics;
pub mod presence;
pub mod recordings;
pub mod trace;
