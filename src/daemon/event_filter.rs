//! Which ARI event types deskhook asks Asterisk for: on every connect it sets its
//! application's event filter to the types the engine and the daemon act on, so Asterisk
//! neither serializes nor writes the rest to the websocket (with MixMonitor pickup off, two
//! thirds of its messages: every `Set()` of the dialplan is a `ChannelVarset`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::ari::{AriClient, AriError};
use crate::calls::EngineSettings;

/// What the daemon itself reads besides the engine: endpoint states for `/forward`'s
/// presence, its own resync marker, and being replaced by another client of the application.
const DAEMON_EVENT_TYPES: &[&str] = &["EndpointStateChange", "ChannelUserevent", "ApplicationReplaced"];

/// The event types to ask for, and whether Asterisk's refusal was already reported.
#[derive(Debug, Clone)]
pub(crate) struct EventFilter {
    allowed: Arc<[&'static str]>,
    refusal_reported: Arc<AtomicBool>,
}

impl EventFilter {
    pub(crate) fn for_engine(settings: &EngineSettings) -> Self {
        let mut allowed = settings.event_types_read();
        allowed.extend_from_slice(DAEMON_EVENT_TYPES);
        Self { allowed: allowed.into(), refusal_reported: Arc::new(AtomicBool::new(false)) }
    }

    /// Sets the filter on `app` (its websocket must be connected). Asterisk before 13.26 /
    /// 16.3 has no filter: it then sends everything, which costs CPU and changes nothing else,
    /// so a refusal is reported once per run (every connect asks again).
    pub(crate) async fn apply(&self, client: &AriClient, app: &str) {
        match client.filter_events(app, &self.allowed).await {
            Ok(()) => tracing::debug!(
                "Asterisk sends application {app} only the {} event types deskhook reads",
                self.allowed.len()
            ),
            Err(error) => {
                if !self.refusal_reported.swap(true, Ordering::Relaxed) {
                    let why = match &error {
                        AriError::NotFound { .. } => {
                            "this Asterisk has no event filter (it came in 13.26 and 16.3)".to_string()
                        }
                        other => other.to_string(),
                    };
                    tracing::info!(
                        "Asterisk sends every event type, not only the ones deskhook reads ({why}); deskhook \
                         works the same, at some more CPU per call, Asterisk's and its own"
                    );
                }
            }
        }
    }
}
