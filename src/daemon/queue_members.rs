//! Answers the engine's "who is in queue X?" by reading `QUEUE_MEMBER_LIST(X)` through a live
//! channel of the call (the only way ARI evaluates dialplan functions), cached briefly.
//! Each lookup runs on its own task; the answer goes back through the engine's input queue.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::ari::{AriClient, AriError};

use super::Inbound;

/// How long a queue's member list is reused.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Memory {
    cache: HashMap<String, (Instant, Vec<String>)>,
    warned: HashSet<String>,
}

#[derive(Clone)]
pub(crate) struct QueueMemberLookup {
    client: AriClient,
    answers: mpsc::UnboundedSender<Inbound>,
    memory: Arc<Mutex<Memory>>,
}

impl QueueMemberLookup {
    pub(super) fn new(client: AriClient, answers: mpsc::UnboundedSender<Inbound>) -> Self {
        Self { client, answers, memory: Arc::default() }
    }

    /// Starts a lookup; the answer arrives later as [`Inbound::QueueMembers`].
    pub(super) fn request(&self, unique_id: String, channel_id: String, queue: String) {
        if let Some(members) = self.cached(&queue) {
            let _ = self.answers.send(Inbound::QueueMembers { unique_id, queue, members: Some(members) });
            return;
        }
        let lookup = self.clone();
        tokio::spawn(async move {
            let variable = format!("QUEUE_MEMBER_LIST({queue})");
            let members = match lookup.client.channel_variable(&channel_id, &variable).await {
                Ok(value) => {
                    let members = parse_member_list(&value);
                    lookup.remember(&queue, &members);
                    Some(members)
                }
                Err(error) => {
                    lookup.warn_once(&queue, &error);
                    None
                }
            };
            let _ = lookup.answers.send(Inbound::QueueMembers { unique_id, queue, members });
        });
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn cached(&self, queue: &str) -> Option<Vec<String>> {
        let memory = self.memory();
        memory.cache.get(queue).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, members)| members.clone())
    }

    fn remember(&self, queue: &str, members: &[String]) {
        self.memory().cache.insert(queue.to_string(), (Instant::now(), members.to_vec()));
    }

    fn warn_once(&self, queue: &str, error: &AriError) {
        if self.memory().warned.insert(queue.to_string()) {
            tracing::warn!(
                "cannot read the members of queue {queue:?} through ARI ({error}); the queue event names the \
                 extensions that were rung instead; to fix, list them in config.toml [pbx.queues] {queue} = [...]"
            );
        } else {
            tracing::debug!("queue {queue:?} member lookup failed: {error}");
        }
    }
}

/// `PJSIP/101,PJSIP/102` → `["PJSIP/101", "PJSIP/102"]`.
pub(crate) fn parse_member_list(value: &str) -> Vec<String> {
    value.split(',').map(str::trim).filter(|member| !member.is_empty()).map(str::to_string).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_lists_split_on_commas() {
        assert_eq!(parse_member_list("PJSIP/103,PJSIP/102, PJSIP/101"), ["PJSIP/103", "PJSIP/102", "PJSIP/101"]);
        assert_eq!(parse_member_list("Local/101@from-queue/n"), ["Local/101@from-queue/n"]);
        assert!(parse_member_list("").is_empty());
    }
}
