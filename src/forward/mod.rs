//! `/forward`: the dialplan asks "who is this caller's manager?" before the IVR and sends the
//! call to the returned extension, or down its normal route on an empty answer (SPEC §4).
//!
//! - numbers are normalised by `crate::numbers`; `answer` shapes the hashcompat body and
//!   cleans names;
//! - `resolvers` are the sources (table, history, bitrix24, amocrm, http), sharing each
//!   CRM account's rate limit with its sink (`crate::crm::limiter`); `chain` asks them in order within timeouts, skipping offline phones;
//! - `cache` remembers answers; `service` adds single-flight and the budget; `server` is
//!   the axum app (`/forward`, `/healthz`, `/metrics`), open to `forward.allow`'s addresses
//!   only (`crate::config::allow`).
//!
//! This module never touches ARI: endpoint states come through `crate::presence::Presence`,
//! liveness through `crate::health::Health`, the call history through `crate::history`.

pub(crate) mod answer;
pub(crate) mod cache;
pub(crate) mod chain;
pub(crate) mod resolvers;
pub mod server;
pub(crate) mod service;

pub use crate::numbers::{PhoneError, PhoneNormalizer};
pub use server::{router, serve};
pub use service::{Diagnosis, ForwardService};

/// Why the `/forward` service could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ForwardError {
    #[error("forward: cannot set up the HTTP client for CRM lookups ({0})")]
    HttpClient(String),
}
