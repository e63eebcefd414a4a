//! Which operators' phones are reachable right now, as ARI reports endpoint states.
//!
//! The live ARI connection writes it (endpoint list at connect, `EndpointStateChange`);
//! `/forward` reads it to skip phones nobody can answer. Cloning shares the same table.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Endpoint resource → ARI state (`online`, `offline`, `unknown`, `unavailable`).
#[derive(Debug, Clone, Default)]
pub struct Presence {
    states: Arc<RwLock<HashMap<String, String>>>,
}

impl Presence {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn set(&self, resource: &str, state: &str) {
        let mut states = self.states.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        states.insert(resource.to_string(), state.to_ascii_lowercase());
    }

    /// Replaces the whole table (after listing `/endpoints`).
    pub fn replace_all<'a>(&self, endpoints: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let fresh: HashMap<String, String> =
            endpoints.into_iter().map(|(resource, state)| (resource.to_string(), state.to_ascii_lowercase())).collect();
        *self.states.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = fresh;
    }

    pub fn state(&self, resource: &str) -> Option<String> {
        self.states.read().unwrap_or_else(|poisoned| poisoned.into_inner()).get(resource).cloned()
    }

    /// True only when ARI positively said the endpoint cannot take a call; unknown endpoints count as reachable.
    pub fn is_unavailable(&self, resource: &str) -> bool {
        matches!(self.state(resource).as_deref(), Some("offline") | Some("unavailable"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reported_offline_endpoints_are_unavailable() {
        let presence = Presence::new();
        presence.replace_all([("101", "online"), ("102", "OFFLINE")]);
        assert!(!presence.is_unavailable("101"));
        assert!(presence.is_unavailable("102"));
        assert!(!presence.is_unavailable("103"));
        let shared = presence.clone();
        shared.set("101", "unavailable");
        assert!(presence.is_unavailable("101"));
    }
}
