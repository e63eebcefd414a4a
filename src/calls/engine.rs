//! The per-call state machine (work in progress: the API is fixed, the rules are being written).

use std::collections::BTreeMap;

use crate::ari::events::{EpochMillis, TimedEvent};
use crate::ari::model::{Bridge, Channel};
use crate::config::{Config, RecordingMode};

use super::classify::Classifier;
use super::event::Output;

/// How the engine is set up; built from the config.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub classifier: Classifier,
    /// `[pbx.queues]`: members by queue name, used before anything else.
    pub static_queues: BTreeMap<String, Vec<String>>,
    /// The live daemon can read `QUEUE_MEMBER_LIST` through ARI: emit [`super::Effect::QueueMembers`].
    pub ask_shell_for_queue_members: bool,
    /// How long after the first member leg the ring round counts as complete.
    pub queue_ring_round_ms: i64,
    /// Which recordings the engine reports after a call ends.
    pub recordings: RecordingMode,
}

impl EngineSettings {
    /// Settings from a validated config. `live` says whether a shell can answer queue questions.
    pub fn from_config(config: &Config, live: bool) -> Result<Self, regex::Error> {
        Ok(Self {
            classifier: Classifier::new(&config.pbx.extension_pattern, &config.pbx.trunks)?,
            static_queues: config.pbx.queues.clone(),
            ask_shell_for_queue_members: live,
            queue_ring_round_ms: config.pbx.queue_ring_round_ms as i64,
            recordings: config.recordings.mode,
        })
    }
}

/// Counters about what the engine saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineStats {
    pub events: u64,
    pub calls_started: u64,
    pub calls_ended: u64,
}

/// The call engine. See the module docs of [`crate::calls`].
#[derive(Debug)]
pub struct Engine {
    settings: EngineSettings,
    stats: EngineStats,
}

impl Engine {
    pub fn new(settings: EngineSettings) -> Self {
        Self { settings, stats: EngineStats::default() }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Feeds one ARI event; appends what follows from it to `out`.
    pub fn handle(&mut self, event: &TimedEvent, out: &mut Vec<Output>) {
        let _ = (event, out);
        self.stats.events += 1;
    }

    /// The answer to an [`super::Effect::QueueMembers`] request: member interfaces or
    /// extensions (`PJSIP/101`, `Local/102@from-queue/n`, `103`), or `None` when ARI could not say.
    pub fn provide_queue_members(
        &mut self,
        unique_id: &str,
        queue: &str,
        members: Option<Vec<String>>,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let _ = (unique_id, queue, members, at, out);
    }

    /// Lets time pass without an event (the live daemon calls this about once a second), so
    /// that waits measured in event time, like a queue's ring round, can complete.
    pub fn advance_to(&mut self, now: EpochMillis, out: &mut Vec<Output>) {
        let _ = (now, out);
    }

    /// After a (re)connect: `channels` and `bridges` are what ARI lists now. Calls whose
    /// channels are all gone end (dated `at`); live channels the engine does not know are adopted.
    pub fn resync(&mut self, channels: &[Channel], bridges: &[Bridge], at: EpochMillis, out: &mut Vec<Output>) {
        let _ = (channels, bridges, at, out);
    }

    /// Calls currently open.
    pub fn open_calls(&self) -> usize {
        0
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }
}
