//! deskhook: a sidecar daemon beside Asterisk that turns ARI events into helpdesk webhooks.
//!
//! The flow runs one way. `ari` reads Asterisk's websocket (subscribeAll) and REST API and
//! turns JSON into typed events. `calls::Engine`, a pure state machine with no I/O and no
//! clock, groups channels into calls and derives the neutral call record (started, ringing,
//! answered, transferred, ended with its summary). `sinks` maps that record to each
//! destination's requests (the Omnidesk form, the signed JSON summary, Zammad's CTI events,
//! Bitrix24's and amoCRM's call methods). `deliver` persists every event in a SQLite outbox
//! before it is sent, then posts it to each sink in order per call, retrying with backoff;
//! `crm` speaks the CRMs' APIs for their sinks (and shares each account's rate limit with
//! `forward`). `recordings` picks up MixMonitor
//! files (or records through ARI snoop channels) and uploads them after the call's ended
//! event. `history` remembers who talked to whom (in SQLite, and shared by every
//! PBX's deskhook in PostgreSQL when configured), and `forward` answers the dialplan's
//! `/forward` question (who is this caller's manager) from a table, that history or a CRM,
//! always within a time budget. `daemon` is the live shell around the engine: the ARI reader
//! thread, the engine task, resyncs after reconnects, and the sinks that hand the engine's
//! output to `deliver`, `history` and `recordings`; `presence` (endpoint states) and `health`
//! are what it shares with `/forward`. `commands` holds one function per CLI subcommand. The
//! simulated Asterisk that `demo`, the tests and the benches run against is a crate of its
//! own (`crates/fake-ari`), which knows nothing of deskhook.
//!
//! ```text
//! Asterisk ──websocket──▶ ari ──typed events──▶ calls::Engine ──▶ daemon ─sinks─┬─▶ deliver ──▶ helpdesk
//!          ◀──REST──────── ari (channels, queue members, snoop/record)          ├─▶ recordings ─┘
//!                                                                                └─▶ history ──▶ forward ◀── dialplan
//! ```

#![warn(unreachable_pub)]

pub mod ari;
pub(crate) mod backoff;
pub mod calls;
pub mod cli;
pub mod commands;
pub mod config;
pub(crate) mod crm;
pub mod daemon;
pub mod deliver;
pub(crate) mod failure;
pub mod forward;
pub mod health;
pub mod history;
pub mod metrics;
pub mod numbers;
pub(crate) mod postgres;
pub mod presence;
pub mod recordings;
pub(crate) mod secret;
pub mod sinks;
pub(crate) mod sqlite;
pub(crate) mod tls;
pub mod trace;
pub(crate) mod wallclock;
