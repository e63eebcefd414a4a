//! The per-call state machine: channels grouped into calls, and the rules that turn what
//! Asterisk did into helpdesk events.
//!
//! Every rule is keyed by channel id, never by "the current call", so overlapping calls
//! cannot bleed into each other; every rule is idempotent, so a repeated ARI event changes
//! nothing. The rules, as observed on real calls (`tests/fixtures/traces/*.md`):
//! - an inbound trunk channel (created in state `Ring`) roots an incoming call; an
//!   extension's own channel (also `Ring`) roots a call that becomes outgoing when it dials a
//!   trunk and internal (silent) when it dials an extension;
//! - channels join a call when the call dials them (`Dial` caller → peer), when they are the
//!   other half of a Local pair that joined, or when they enter a bridge with the call's client
//!   (transfers, pickups); a channel's exported `CHANNEL(linkedid)` names its call directly;
//! - a dial that rings an extension directly is "incoming call to personal number", unless it
//!   descends from a queue (member legs, also through Local channels);
//! - an incoming call ends when the client's channel is destroyed; an outgoing one when its
//!   answered trunk leg is gone, or its caller is gone with no trunk leg left.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::ari::events::{AriEvent, EpochMillis, TimedEvent};
use crate::ari::model::{Bridge, Channel};
use crate::config::{Config, RecordingMode};

use super::checkpoint::{CallCheckpoint, CheckpointDirection, LegCheckpoint, PendingQueueCheckpoint};
use super::classify::{extension_of_interface, ChannelClass, Classifier, LocalHalf};
use super::event::{CallEvent, Effect, Output, RecordingRef, RecordingSource, Status};
use super::since_connect::SinceConnect;

/// How long the shell may take to name a queue's members before the ring round is used instead.
const SHELL_ANSWER_TIMEOUT_MS: EpochMillis = 5_000;
/// Destroyed channel ids are remembered this long (event time) so late or repeated events are ignored.
const TOMBSTONE_TTL_MS: EpochMillis = 3_600_000;

/// How the engine is set up; built from the config.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub classifier: Classifier,
    /// `[pbx.queues]`: members by queue name, used before anything else.
    pub static_queues: BTreeMap<String, Vec<String>>,
    /// The live daemon can read `QUEUE_MEMBER_LIST` through ARI: emit [`Effect::QueueMembers`].
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
    pub calls_adopted: u64,
    pub calls_ended_by_resync: u64,
    /// Open calls taken back from a previous run's checkpoints.
    pub calls_restored: u64,
}

/// One channel the engine follows.
#[derive(Debug, Clone)]
struct Leg {
    name: String,
    class: ChannelClass,
    /// The call (unique_id) this channel belongs to.
    call: Option<String>,
    /// True when a call dialed this channel (it is a callee leg).
    dialed: bool,
    /// Descends from a queue's member dial: never a "personal number" ring.
    via_queue: bool,
    /// The queue this channel is running `Queue()` for, if any.
    in_queue: Option<String>,
    ringing: bool,
    answered: bool,
    caller_number: String,
    exten_at_creation: String,
}

impl Leg {
    fn checkpoint(&self, id: &str) -> LegCheckpoint {
        LegCheckpoint {
            id: id.to_string(),
            name: self.name.clone(),
            dialed: self.dialed,
            via_queue: self.via_queue,
            in_queue: self.in_queue.clone(),
            ringing: self.ringing,
            answered: self.answered,
            caller_number: self.caller_number.clone(),
            exten_at_creation: self.exten_at_creation.clone(),
        }
    }

    fn restored(saved: &LegCheckpoint, class: ChannelClass, unique_id: &str) -> Leg {
        Leg {
            name: saved.name.clone(),
            class,
            call: Some(unique_id.to_string()),
            dialed: saved.dialed,
            via_queue: saved.via_queue,
            in_queue: saved.in_queue.clone(),
            ringing: saved.ringing,
            answered: saved.answered,
            caller_number: saved.caller_number.clone(),
            exten_at_creation: saved.exten_at_creation.clone(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    /// Rooted at an extension that has not dialed anything decisive yet.
    Undecided,
    Incoming,
    Outgoing,
    /// Extension to extension: produces nothing.
    Internal,
}

/// A queue visit whose `call to queue` event waits for its member list.
#[derive(Debug, Clone)]
struct PendingQueue {
    name: String,
    entered_at: EpochMillis,
    queue_channel: String,
    ring_round: Vec<String>,
    first_member_dial_at: Option<EpochMillis>,
    round_complete: bool,
    /// When the shell was asked; `None` once it answered "unknown" or was never asked.
    shell_asked_at: Option<EpochMillis>,
}

#[derive(Debug, Clone)]
struct Call {
    unique_id: String,
    direction: Direction,
    root: String,
    root_gone: bool,
    /// Incoming: the client's number. Outgoing: the operator's extension.
    from_user: String,
    /// Incoming: the DID. Outgoing: the dialed number.
    to_user: String,
    /// Trunk channels on the client's side (incoming: the root; outgoing: the dialed trunk legs).
    client_legs: Vec<String>,
    first_answer_at: Option<EpochMillis>,
    last_operator: Option<String>,
    /// Operator legs already announced as answered.
    answered_legs: HashSet<String>,
    /// Legs announced as "personal number" rings.
    rung_legs: HashSet<String>,
    /// Extensions of the most recent ring batch (for the ended event of an unanswered call).
    last_rang: Vec<String>,
    recordings: Vec<String>,
    pending_queue: Option<PendingQueue>,
    /// Outputs waiting behind a pending queue event, in order.
    held: Vec<Output>,
    /// Adopted on a resync: started before deskhook saw it.
    adopted: bool,
    /// Its ended event is out (held behind a queue event still awaited).
    ended: bool,
    /// Adopted while MixMonitor may already be recording it: `MIXMONITOR_FILENAME` of its
    /// channels was asked for and not answered yet.
    awaiting_recording_names: bool,
    /// Its ended event is out, but its recordings and close wait for the recording names
    /// (`Some(answered)`).
    closing: Option<bool>,
}

impl Call {
    fn new(unique_id: String, root: String, direction: Direction) -> Self {
        Self {
            unique_id,
            direction,
            root,
            root_gone: false,
            from_user: String::new(),
            to_user: String::new(),
            client_legs: Vec::new(),
            first_answer_at: None,
            last_operator: None,
            answered_legs: HashSet::new(),
            rung_legs: HashSet::new(),
            last_rang: Vec::new(),
            recordings: Vec::new(),
            pending_queue: None,
            held: Vec::new(),
            adopted: false,
            ended: false,
            awaiting_recording_names: false,
            closing: None,
        }
    }

    fn event(&self, status: Status, to_user: String, at: EpochMillis) -> CallEvent {
        CallEvent {
            unique_id: self.unique_id.clone(),
            status,
            from_user: self.from_user.clone(),
            to_user,
            at,
            call_duration: None,
        }
    }

    /// Emits in call order: behind a pending queue event, outputs wait.
    fn emit(&mut self, output: Output, out: &mut Vec<Output>) {
        if self.pending_queue.is_some() {
            self.held.push(output);
        } else {
            out.push(output);
        }
    }
}

/// The call engine. See the module docs.
#[derive(Debug)]
pub struct Engine {
    settings: EngineSettings,
    legs: HashMap<String, Leg>,
    calls: HashMap<String, Call>,
    /// Bridge id → channel ids in it.
    bridges: HashMap<String, Vec<String>>,
    /// Bridge id → when Asterisk created it (dates conversations found on a resync).
    bridge_created: HashMap<String, EpochMillis>,
    /// Local pair name base (`Local/101@from-queue-00000000`) → (`;1` id, `;2` id).
    local_pairs: HashMap<String, (Option<String>, Option<String>)>,
    /// Destroyed channel id → when; events for them are ignored.
    tombstones: HashMap<String, EpochMillis>,
    /// Calls with a pending queue event (checked as time passes).
    waiting_calls: Vec<String>,
    last_prune_at: EpochMillis,
    stats: EngineStats,
    /// Calls changed since the last [`Engine::take_checkpoints`].
    changed_calls: HashSet<String>,
    /// The newest event time seen (events and time passing).
    latest_at: EpochMillis,
    /// Until the first resync after [`Engine::restore`]: the newest time the previous run had
    /// seen. Channels created by then were known to it even when no call held them yet.
    restored_until: Option<EpochMillis>,
}

impl Engine {
    pub fn new(settings: EngineSettings) -> Self {
        Self {
            settings,
            legs: HashMap::new(),
            calls: HashMap::new(),
            bridges: HashMap::new(),
            bridge_created: HashMap::new(),
            local_pairs: HashMap::new(),
            tombstones: HashMap::new(),
            waiting_calls: Vec::new(),
            last_prune_at: EpochMillis::MIN,
            stats: EngineStats::default(),
            changed_calls: HashSet::new(),
            latest_at: EpochMillis::MIN,
            restored_until: None,
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Calls currently open.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    pub fn stats(&self) -> &EngineStats {
        &self.stats
    }

    /// Feeds one ARI event; appends what follows from it to `out`.
    pub fn handle(&mut self, timed: &TimedEvent, out: &mut Vec<Output>) {
        self.stats.events += 1;
        self.latest_at = self.latest_at.max(timed.at);
        let mentioned = mentioned_channels(&timed.event);
        self.note_changed_calls(&mentioned);
        self.handle_event(timed, out);
        self.note_changed_calls(&mentioned);
    }

    /// Remembers the calls of these channels as changed (for the next checkpoints).
    fn note_changed_calls(&mut self, channel_ids: &[&str]) {
        for id in channel_ids {
            if let Some(unique_id) = self.legs.get(*id).and_then(|leg| leg.call.as_ref()) {
                if !self.changed_calls.contains(unique_id) {
                    self.changed_calls.insert(unique_id.clone());
                }
            }
        }
    }

    fn handle_event(&mut self, timed: &TimedEvent, out: &mut Vec<Output>) {
        let at = timed.at;
        if !self.waiting_calls.is_empty() {
            self.advance_to(at, out);
        }
        match &timed.event {
            AriEvent::ChannelCreated { channel } => self.on_created(channel, at, out),
            AriEvent::ChannelDestroyed { channel, .. } => self.on_destroyed(&channel.id, at, out),
            AriEvent::ChannelDialplan { channel, app, app_data } => self.on_dialplan(channel, app, app_data, at, out),
            AriEvent::ChannelVarset { channel: Some(channel), variable, value } => {
                self.on_varset(channel, variable, value)
            }
            AriEvent::ChannelCallerId { channel } | AriEvent::ChannelConnectedLine { channel } => {
                if let Some(leg) = self.legs.get_mut(&channel.id) {
                    leg.caller_number.clone_from(&channel.caller.number);
                }
            }
            AriEvent::Dial { caller: Some(caller), peer, dialstring, dialstatus, .. } => {
                self.on_dial(caller, peer, dialstring, dialstatus, at, out)
            }
            AriEvent::ChannelEnteredBridge { bridge, channel } => {
                self.bridges.insert(bridge.id.clone(), bridge.channels.clone());
                self.on_entered_bridge(&bridge.id, &channel.id, at, out);
            }
            AriEvent::ChannelLeftBridge { bridge, .. } => {
                self.bridges.insert(bridge.id.clone(), bridge.channels.clone());
            }
            AriEvent::BridgeDestroyed { bridge } => {
                self.bridges.remove(&bridge.id);
                self.bridge_created.remove(&bridge.id);
            }
            _ => {}
        }
        if at.saturating_sub(self.last_prune_at) > TOMBSTONE_TTL_MS / 4 {
            self.last_prune_at = at;
            self.tombstones.retain(|_, destroyed_at| at.saturating_sub(*destroyed_at) < TOMBSTONE_TTL_MS);
        }
    }

    /// Lets time pass without an event (the live daemon calls this a few times a second), so
    /// that waits measured in event time, like a queue's ring round, can complete.
    pub fn advance_to(&mut self, now: EpochMillis, out: &mut Vec<Output>) {
        self.latest_at = self.latest_at.max(now);
        let waiting = std::mem::take(&mut self.waiting_calls);
        for unique_id in waiting {
            let Some(call) = self.calls.get_mut(&unique_id) else { continue };
            let Some(pending) = call.pending_queue.as_mut() else { continue };
            if let Some(asked_at) = pending.shell_asked_at {
                if now.saturating_sub(asked_at) >= SHELL_ANSWER_TIMEOUT_MS {
                    pending.shell_asked_at = None;
                }
            }
            if let Some(first) = pending.first_member_dial_at {
                if now.saturating_sub(first) >= self.settings.queue_ring_round_ms {
                    pending.round_complete = true;
                }
            }
            if pending.shell_asked_at.is_none() && pending.round_complete {
                let members = std::mem::take(&mut pending.ring_round);
                resolve_queue(call, members, out);
                self.changed_calls.insert(unique_id.clone());
                if call.ended {
                    self.calls.remove(&unique_id);
                }
            } else if !self.waiting_calls.contains(&unique_id) {
                self.waiting_calls.push(unique_id);
            }
        }
    }

    /// The answer to an [`Effect::QueueMembers`] request: member interfaces or extensions
    /// (`PJSIP/101`, `Local/102@from-queue/n`, `103`), or `None` when ARI could not say.
    pub fn provide_queue_members(
        &mut self,
        unique_id: &str,
        queue: &str,
        members: Option<Vec<String>>,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        let Some(pending) = call.pending_queue.as_mut() else { return };
        if pending.name != queue || pending.shell_asked_at.is_none() {
            return;
        }
        self.changed_calls.insert(unique_id.to_string());
        match members.map(|list| extensions_of(&list)).filter(|list| !list.is_empty()) {
            Some(extensions) => resolve_queue(call, extensions, out),
            None => {
                pending.shell_asked_at = None;
                if pending.round_complete {
                    let members = std::mem::take(&mut pending.ring_round);
                    resolve_queue(call, members, out);
                }
            }
        }
        if call.ended && call.pending_queue.is_none() {
            self.calls.remove(unique_id);
        }
        self.advance_to(at, out);
    }

    /// Appends a [`Effect::CallCheckpoint`] for every call changed since the last time: its
    /// state while it is open, `None` once it is closed or was never a call worth restoring.
    pub fn take_checkpoints(&mut self, out: &mut Vec<Output>) {
        if self.changed_calls.is_empty() {
            return;
        }
        let mut changed: Vec<String> = self.changed_calls.drain().collect();
        changed.sort();
        for unique_id in changed {
            let checkpoint = self.calls.get(&unique_id).and_then(|call| self.checkpoint_of(call)).map(Box::new);
            out.push(Output::Effect(Effect::CallCheckpoint { unique_id, checkpoint }));
        }
    }

    fn checkpoint_of(&self, call: &Call) -> Option<CallCheckpoint> {
        let direction = match call.direction {
            _ if call.ended => return None,
            Direction::Internal => return None,
            Direction::Undecided => CheckpointDirection::Undecided,
            Direction::Incoming => CheckpointDirection::Incoming,
            Direction::Outgoing => CheckpointDirection::Outgoing,
        };
        let mut legs: Vec<LegCheckpoint> = self
            .legs
            .iter()
            .filter(|(_, leg)| leg.call.as_deref() == Some(call.unique_id.as_str()))
            .map(|(id, leg)| leg.checkpoint(id))
            .collect();
        legs.sort_by(|a, b| a.id.cmp(&b.id));
        let sorted = |set: &HashSet<String>| {
            let mut list: Vec<String> = set.iter().cloned().collect();
            list.sort();
            list
        };
        Some(CallCheckpoint {
            unique_id: call.unique_id.clone(),
            direction,
            root: call.root.clone(),
            root_gone: call.root_gone,
            from_user: call.from_user.clone(),
            to_user: call.to_user.clone(),
            client_legs: call.client_legs.clone(),
            first_answer_at: call.first_answer_at,
            last_operator: call.last_operator.clone(),
            answered_legs: sorted(&call.answered_legs),
            rung_legs: sorted(&call.rung_legs),
            last_rang: call.last_rang.clone(),
            recordings: call.recordings.clone(),
            adopted: call.adopted,
            legs,
            taken_at: self.latest_at,
            pending_queue: call.pending_queue.as_ref().map(|pending| PendingQueueCheckpoint {
                name: pending.name.clone(),
                entered_at: pending.entered_at,
                queue_channel: pending.queue_channel.clone(),
                ring_round: pending.ring_round.clone(),
                first_member_dial_at: pending.first_member_dial_at,
                round_complete: pending.round_complete,
                held: call.held.clone(),
            }),
        })
    }

    /// Calls adopted just now (not among `known_calls`) may have MixMonitor running since before
    /// deskhook saw them: their files are asked for over ARI.
    fn ask_for_recording_names(&mut self, known_calls: &HashSet<String>, out: &mut Vec<Output>) {
        let mut adopted: Vec<String> = self
            .calls
            .iter()
            .filter(|(unique_id, call)| call.adopted && !call.ended && !known_calls.contains(*unique_id))
            .map(|(unique_id, _)| unique_id.clone())
            .collect();
        adopted.sort();
        for unique_id in adopted {
            let mut channel_ids: Vec<String> = self
                .legs
                .iter()
                .filter(|(_, leg)| leg.call.as_deref() == Some(unique_id.as_str()))
                .map(|(id, _)| id.clone())
                .collect();
            if channel_ids.is_empty() {
                continue;
            }
            channel_ids.sort();
            if let Some(call) = self.calls.get_mut(&unique_id) {
                call.awaiting_recording_names = true;
            }
            out.push(Output::Effect(Effect::RecordingNames { unique_id, channel_ids }));
        }
    }

    /// Takes back the open calls a previous run left behind (from their checkpoints). The
    /// next [`Engine::resync`] ends those whose channels are gone and follows the others on;
    /// nothing is announced again that the previous run already announced. `last_seen` is the
    /// newest event time the previous run is known to have handled.
    pub fn restore(&mut self, checkpoints: Vec<CallCheckpoint>, last_seen: Option<EpochMillis>) {
        self.restored_until = self.restored_until.max(last_seen);
        for checkpoint in checkpoints {
            if self.calls.contains_key(&checkpoint.unique_id) {
                continue;
            }
            let direction = match checkpoint.direction {
                CheckpointDirection::Undecided => Direction::Undecided,
                CheckpointDirection::Incoming => Direction::Incoming,
                CheckpointDirection::Outgoing => Direction::Outgoing,
            };
            for leg in &checkpoint.legs {
                if self.legs.contains_key(&leg.id) {
                    continue;
                }
                let class = self.settings.classifier.channel(&leg.name);
                self.remember_local_pair(&leg.id, &leg.name, &class);
                self.legs.insert(leg.id.clone(), Leg::restored(leg, class, &checkpoint.unique_id));
            }
            let mut call = Call::new(checkpoint.unique_id.clone(), checkpoint.root, direction);
            call.root_gone = checkpoint.root_gone;
            call.from_user = checkpoint.from_user;
            call.to_user = checkpoint.to_user;
            call.client_legs = checkpoint.client_legs;
            call.first_answer_at = checkpoint.first_answer_at;
            call.last_operator = checkpoint.last_operator;
            call.answered_legs = checkpoint.answered_legs.into_iter().collect();
            call.rung_legs = checkpoint.rung_legs.into_iter().collect();
            call.last_rang = checkpoint.last_rang;
            call.recordings = checkpoint.recordings;
            call.adopted = checkpoint.adopted;
            if let Some(pending) = checkpoint.pending_queue {
                // The previous run's question about the members died with it: the ring round decides.
                call.pending_queue = Some(PendingQueue {
                    name: pending.name,
                    entered_at: pending.entered_at,
                    queue_channel: pending.queue_channel,
                    ring_round: pending.ring_round,
                    first_member_dial_at: pending.first_member_dial_at,
                    round_complete: pending.round_complete,
                    shell_asked_at: None,
                });
                call.held = pending.held;
                self.waiting_calls.push(checkpoint.unique_id.clone());
            }
            self.restored_until = self.restored_until.max(Some(checkpoint.taken_at));
            self.calls.insert(checkpoint.unique_id, call);
            self.stats.calls_restored += 1;
        }
    }

    /// The answer to an [`Effect::RecordingNames`] request: the MixMonitor files found on the
    /// call's channels (none when ARI could not say). A call that ended meanwhile gets its
    /// recordings and close now.
    pub fn provide_recording_names(&mut self, unique_id: &str, names: Vec<String>, out: &mut Vec<Output>) {
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        if !call.awaiting_recording_names {
            return;
        }
        call.awaiting_recording_names = false;
        for name in names {
            if !name.is_empty() && !call.recordings.contains(&name) {
                call.recordings.push(name);
            }
        }
        self.changed_calls.insert(unique_id.to_string());
        if let Some(answered) = call.closing.take() {
            let Some(mut call) = self.calls.remove(unique_id) else { return };
            self.close_call(&mut call, answered, out);
            if call.pending_queue.is_some() {
                call.ended = true;
                self.calls.insert(unique_id.to_string(), call);
            }
        }
    }

    /// After a (re)connect: `channels` and `bridges` are what ARI lists now. Calls whose
    /// channels are gone end (dated `at`); live channels the engine does not know are adopted.
    pub fn resync(&mut self, channels: &[Channel], bridges: &[Bridge], at: EpochMillis, out: &mut Vec<Output>) {
        self.resync_merged(channels, bridges, &SinceConnect::default(), at, out);
    }

    /// [`Engine::resync`] with a snapshot taken while events were already arriving: what
    /// `since_connect` says about a channel comes from those events (handled right after this),
    /// so the snapshot does not adopt channels created there, end channels destroyed there, or
    /// place in bridges channels whose bridge moves are there.
    pub fn resync_merged(
        &mut self,
        channels: &[Channel],
        bridges: &[Bridge],
        since_connect: &SinceConnect,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let merged_channels: Vec<Channel>;
        let merged_bridges: Vec<Bridge>;
        let (channels, bridges) = if since_connect.is_empty() {
            (channels, bridges)
        } else {
            merged_channels =
                channels.iter().filter(|channel| !since_connect.created.contains(&channel.id)).cloned().collect();
            merged_bridges = bridges
                .iter()
                .map(|bridge| {
                    let mut bridge = bridge.clone();
                    bridge
                        .channels
                        .retain(|id| !since_connect.created.contains(id) && !since_connect.entered_bridge.contains(id));
                    bridge
                })
                .collect();
            (merged_channels.as_slice(), merged_bridges.as_slice())
        };
        let live: HashSet<&str> = channels
            .iter()
            .map(|channel| channel.id.as_str())
            .chain(since_connect.destroyed.iter().map(String::as_str))
            .collect();
        // Channels that vanished while deskhook was not listening: destroy the callee legs
        // first, so an ended event still names who rang or answered.
        let mut gone: Vec<(bool, String)> = self
            .legs
            .iter()
            .filter(|(id, _)| !live.contains(id.as_str()))
            .map(|(id, leg)| (!leg.dialed, id.clone()))
            .collect();
        gone.sort();
        let ended_before = self.stats.calls_ended;
        for (_, id) in gone {
            self.on_destroyed(&id, at, out);
        }
        self.stats.calls_ended_by_resync += self.stats.calls_ended - ended_before;

        self.bridges = bridges.iter().map(|bridge| (bridge.id.clone(), bridge.channels.clone())).collect();
        self.bridge_created = bridges
            .iter()
            .filter_map(|bridge| {
                let created = crate::ari::events::parse_ari_timestamp(&bridge.creationtime)?;
                Some((bridge.id.clone(), created))
            })
            .collect();
        // Callers (channels that run dialplan) first: they root the calls the dialed legs join.
        let mut unknown: Vec<&Channel> = channels
            .iter()
            .filter(|channel| !self.legs.contains_key(&channel.id) && !self.tombstones.contains_key(&channel.id))
            .collect();
        unknown.sort_by_key(|channel| (is_dialed_leg(channel), channel.creationtime.clone()));
        let by_id: HashMap<&str, &Channel> = channels.iter().map(|channel| (channel.id.as_str(), channel)).collect();
        let known_calls: HashSet<String> = self.calls.keys().cloned().collect();
        let restored_until = self.restored_until.take();
        let bridged: HashSet<&str> =
            bridges.iter().flat_map(|bridge| bridge.channels.iter().map(String::as_str)).collect();
        for channel in unknown {
            if self.legs.contains_key(&channel.id) {
                continue;
            }
            let created = crate::ari::events::parse_ari_timestamp(&channel.creationtime);
            let seen_by_previous_run = restored_until.zip(created).is_some_and(|(until, created)| created <= until);
            if seen_by_previous_run && !bridged.contains(channel.id.as_str()) {
                // Not yet part of a call when the previous run stopped: followed as it was then.
                self.on_created(channel, created.unwrap_or(at), out);
            } else {
                self.adopt(channel, &by_id, at, out);
            }
        }
        if self.settings.recordings == RecordingMode::Mixmonitor {
            self.ask_for_recording_names(&known_calls, out);
        }
        // A conversation that began while disconnected: operators bridged with a client.
        let bridge_ids: Vec<String> = self.bridges.keys().cloned().collect();
        for bridge_id in bridge_ids {
            let members = self.bridges.get(&bridge_id).cloned().unwrap_or_default();
            for member in members {
                self.on_entered_bridge(&bridge_id, &member, at, out);
            }
        }
        self.changed_calls.extend(self.calls.keys().cloned());
        // Recorders lose their snoop channels with the connection: every conversation still
        // going on is announced again so recording resumes as a new part.
        let mut talking: Vec<(&String, &Call)> = self
            .calls
            .iter()
            .filter(|(_, call)| !call.ended && call.first_answer_at.is_some() && !call.client_legs.is_empty())
            .collect();
        talking.sort_by_key(|(unique_id, _)| *unique_id);
        for (unique_id, call) in talking {
            let client = call.client_legs.iter().find(|id| self.legs.contains_key(*id));
            if let Some(client) = client {
                out.push(Output::Effect(Effect::ConversationStarted {
                    unique_id: unique_id.clone(),
                    client_channel_id: client.clone(),
                }));
            }
        }
    }

    fn on_created(&mut self, channel: &Channel, at: EpochMillis, out: &mut Vec<Output>) {
        if self.legs.contains_key(&channel.id) || self.tombstones.contains_key(&channel.id) {
            return;
        }
        let class = self.settings.classifier.channel(&channel.name);
        if class == ChannelClass::Snoop {
            return;
        }
        self.track(channel, class.clone());
        if let Some(linkedid) = channel.exported_linkedid().filter(|id| *id != channel.id) {
            if self.calls.contains_key(linkedid) {
                let linkedid = linkedid.to_string();
                self.join(&channel.id, &linkedid);
                return;
            }
        }
        let inbound = matches!(channel.state.as_str(), "Ring" | "Pre-ring");
        match class {
            ChannelClass::Trunk(_) if inbound => {
                self.start_incoming(channel, &channel.dialplan.exten, at, out);
            }
            ChannelClass::Extension(_) if inbound => {
                let unique_id = channel.exported_linkedid().unwrap_or(&channel.id).to_string();
                let call = Call::new(unique_id.clone(), channel.id.clone(), Direction::Undecided);
                self.calls.insert(unique_id.clone(), call);
                self.join(&channel.id, &unique_id);
            }
            ChannelClass::Local { .. } => self.attach_local_partner(&channel.id),
            _ => {}
        }
    }

    fn track(&mut self, channel: &Channel, class: ChannelClass) {
        let leg = Leg {
            name: channel.name.clone(),
            class: class.clone(),
            call: None,
            dialed: false,
            via_queue: false,
            in_queue: None,
            ringing: false,
            answered: channel.state == "Up",
            caller_number: channel.caller.number.clone(),
            exten_at_creation: channel.dialplan.exten.clone(),
        };
        self.legs.insert(channel.id.clone(), leg);
        self.remember_local_pair(&channel.id, &channel.name, &class);
    }

    fn remember_local_pair(&mut self, id: &str, name: &str, class: &ChannelClass) {
        if let ChannelClass::Local { half, .. } = class {
            if let Some((base, _)) = name.rsplit_once(';') {
                let pair = self.local_pairs.entry(base.to_string()).or_default();
                match half {
                    LocalHalf::One => pair.0 = Some(id.to_string()),
                    LocalHalf::Two => pair.1 = Some(id.to_string()),
                }
            }
        }
    }

    fn start_incoming(&mut self, channel: &Channel, did: &str, at: EpochMillis, out: &mut Vec<Output>) -> bool {
        let unique_id = channel.exported_linkedid().unwrap_or(&channel.id).to_string();
        if self.calls.contains_key(&unique_id) {
            self.join(&channel.id, &unique_id);
            return false;
        }
        let mut call = Call::new(unique_id.clone(), channel.id.clone(), Direction::Incoming);
        call.from_user.clone_from(&channel.caller.number);
        call.to_user = did.to_string();
        call.client_legs.push(channel.id.clone());
        let start = call.event(Status::IncomingStart, call.to_user.clone(), at);
        call.emit(Output::Event(start), out);
        self.calls.insert(unique_id.clone(), call);
        self.join(&channel.id, &unique_id);
        self.stats.calls_started += 1;
        true
    }

    fn join(&mut self, channel_id: &str, unique_id: &str) {
        if let Some(leg) = self.legs.get_mut(channel_id) {
            leg.call = Some(unique_id.to_string());
        }
    }

    /// The other half of a Local pair follows its partner into the call.
    fn attach_local_partner(&mut self, channel_id: &str) {
        let Some(partner) = self.local_partner(channel_id) else { return };
        let (call, via_queue) = match (self.legs.get(channel_id), self.legs.get(&partner)) {
            (Some(me), Some(other)) if me.call.is_some() && other.call.is_none() => (me.call.clone(), me.via_queue),
            (Some(me), Some(other)) if me.call.is_none() && other.call.is_some() => {
                let (call, via_queue) = (other.call.clone(), other.via_queue);
                if let Some(me) = self.legs.get_mut(channel_id) {
                    me.call = call;
                    me.via_queue = via_queue;
                }
                return;
            }
            _ => return,
        };
        if let Some(other) = self.legs.get_mut(&partner) {
            other.call = call;
            other.via_queue = via_queue;
        }
    }

    fn on_varset(&mut self, channel: &Channel, variable: &str, value: &str) {
        if variable != "MIXMONITOR_FILENAME" || value.is_empty() {
            return;
        }
        let Some(unique_id) = self.legs.get(&channel.id).and_then(|leg| leg.call.clone()) else { return };
        if let Some(call) = self.calls.get_mut(&unique_id) {
            if !call.recordings.iter().any(|known| known == value) {
                call.recordings.push(value.to_string());
            }
        }
    }

    fn on_dialplan(&mut self, channel: &Channel, app: &str, app_data: &str, at: EpochMillis, out: &mut Vec<Output>) {
        let Some(leg) = self.legs.get_mut(&channel.id) else { return };
        if app.eq_ignore_ascii_case("Queue") {
            let name = app_data.split(',').next().unwrap_or_default().trim().to_string();
            if name.is_empty() || leg.in_queue.as_deref() == Some(name.as_str()) {
                return;
            }
            leg.in_queue = Some(name.clone());
            let Some(unique_id) = leg.call.clone() else { return };
            self.enter_queue(&unique_id, &channel.id, name, at, out);
        } else if leg.in_queue.take().is_some() {
            // Any other application means the channel left Queue(): its ring round is over.
            if let Some(unique_id) = leg.call.clone() {
                self.complete_ring_round(&unique_id, &channel.id, out);
            }
        }
    }

    fn enter_queue(
        &mut self,
        unique_id: &str,
        queue_channel: &str,
        name: String,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        if call.direction != Direction::Incoming {
            return;
        }
        if let Some(previous) = call.pending_queue.as_mut() {
            // A second queue before the first was resolved: report the first with what is known.
            let members = std::mem::take(&mut previous.ring_round);
            resolve_queue(call, members, out);
        }
        if let Some(members) = self.settings.static_queues.get(&name) {
            let event = call.event(Status::IncomingToQueue(name), members.join(","), at);
            call.emit(Output::Event(event), out);
            return;
        }
        let ask_shell = self.settings.ask_shell_for_queue_members;
        call.pending_queue = Some(PendingQueue {
            name: name.clone(),
            entered_at: at,
            queue_channel: queue_channel.to_string(),
            ring_round: Vec::new(),
            first_member_dial_at: None,
            round_complete: false,
            shell_asked_at: ask_shell.then_some(at),
        });
        if ask_shell {
            out.push(Output::Effect(Effect::QueueMembers {
                unique_id: unique_id.to_string(),
                channel_id: queue_channel.to_string(),
                queue: name,
            }));
        }
        if !self.waiting_calls.iter().any(|waiting| waiting == unique_id) {
            self.waiting_calls.push(unique_id.to_string());
        }
    }

    /// The queue channel's first ring round is over (or the caller left the queue).
    fn complete_ring_round(&mut self, unique_id: &str, queue_channel: &str, out: &mut Vec<Output>) {
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        let Some(pending) = call.pending_queue.as_mut() else { return };
        if pending.queue_channel != queue_channel {
            return;
        }
        pending.round_complete = true;
        if pending.shell_asked_at.is_none() {
            let members = std::mem::take(&mut pending.ring_round);
            resolve_queue(call, members, out);
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_dial(
        &mut self,
        caller: &Channel,
        peer: &Channel,
        dialstring: &str,
        dialstatus: &str,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        if self.tombstones.contains_key(&peer.id) || self.tombstones.contains_key(&caller.id) {
            return;
        }
        // Legs whose creation was missed are picked up here.
        for channel in [caller, peer] {
            if !self.legs.contains_key(&channel.id) {
                let class = self.settings.classifier.channel(&channel.name);
                if class == ChannelClass::Snoop {
                    return;
                }
                self.track(channel, class);
            }
        }
        let Some(unique_id) = self.legs.get(&caller.id).and_then(|leg| leg.call.clone()) else { return };
        // The caller's snapshot says it runs Queue() even when its ChannelDialplan event was
        // filtered out or missed during a reconnect.
        if caller.dialplan.app_name.eq_ignore_ascii_case("Queue") && dialstatus.is_empty() {
            self.on_dialplan(caller, &caller.dialplan.app_name, &caller.dialplan.app_data, at, out);
        }
        let peer_is_queue_member = peer.dialplan.app_name == "AppQueue";
        let (caller_in_queue, caller_via_queue) = match self.legs.get(&caller.id) {
            Some(leg) => (leg.in_queue.is_some(), leg.via_queue),
            None => return,
        };
        if let Some(peer_leg) = self.legs.get_mut(&peer.id) {
            if peer_leg.call.is_none() {
                peer_leg.call = Some(unique_id.clone());
            }
            if peer_leg.call.as_deref() != Some(unique_id.as_str()) {
                return;
            }
            // A leg may already belong to the call through its exported linkedid; the first
            // dial still says who dialed it.
            if !peer_leg.dialed {
                peer_leg.dialed = true;
                peer_leg.via_queue = caller_in_queue || caller_via_queue || peer_is_queue_member;
            }
        }
        self.attach_local_partner(&peer.id);
        match dialstatus {
            "" => self.on_ring(&unique_id, &caller.id, &peer.id, dialstring, caller_in_queue, at, out),
            "ANSWER" => {
                if caller_in_queue {
                    self.complete_ring_round(&unique_id, &caller.id, out);
                }
                self.on_answer(&unique_id, &peer.id, at, out);
            }
            "RINGING" | "PROGRESS" | "PROCEEDING" => {
                if caller_in_queue {
                    self.complete_ring_round(&unique_id, &caller.id, out);
                }
            }
            _ => {
                if let Some(leg) = self.legs.get_mut(&peer.id) {
                    leg.ringing = false;
                }
                if caller_in_queue {
                    self.complete_ring_round(&unique_id, &caller.id, out);
                }
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_ring(
        &mut self,
        unique_id: &str,
        caller_id: &str,
        peer_id: &str,
        dialstring: &str,
        caller_in_queue: bool,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let Some(peer) = self.legs.get(peer_id).cloned() else { return };
        let ringing_extensions = self.ringing_extensions(unique_id);
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        if let Some(leg) = self.legs.get_mut(peer_id) {
            if leg.ringing {
                return;
            }
            leg.ringing = true;
        }
        match call.direction {
            // Whichever leg of an operator's own call dials first decides its direction
            // (the operator's channel itself, or a Local channel it dialed).
            Direction::Undecided => match &peer.class {
                ChannelClass::Trunk(_) => {
                    call.direction = Direction::Outgoing;
                    call.from_user = match self.legs.get(&call.root).map(|leg| &leg.class) {
                        Some(ChannelClass::Extension(extension)) => extension.clone(),
                        _ => String::new(),
                    };
                    call.to_user = dialed_number(dialstring, &peer.caller_number)
                        .or_else(|| self.legs.get(&call.root).map(|leg| leg.exten_at_creation.clone()))
                        .unwrap_or_default();
                    call.client_legs.push(peer_id.to_string());
                    let start = call.event(Status::OutgoingStart, call.to_user.clone(), at);
                    call.emit(Output::Event(start), out);
                    self.stats.calls_started += 1;
                }
                ChannelClass::Extension(_) => call.direction = Direction::Internal,
                _ => {}
            },
            Direction::Outgoing
                if matches!(peer.class, ChannelClass::Trunk(_)) && !call.client_legs.iter().any(|id| id == peer_id) =>
            {
                call.client_legs.push(peer_id.to_string());
            }
            Direction::Incoming => {
                if caller_in_queue {
                    if let Some(pending) = call.pending_queue.as_mut() {
                        if pending.queue_channel == caller_id && !pending.round_complete {
                            let member = match &peer.class {
                                ChannelClass::Extension(extension) => Some(extension.clone()),
                                ChannelClass::Local { exten, .. } => Some(exten.clone()),
                                _ => extension_of_interface(dialstring),
                            };
                            if let Some(member) = member {
                                if !pending.ring_round.contains(&member) {
                                    pending.ring_round.push(member);
                                }
                            }
                            pending.first_member_dial_at.get_or_insert(at);
                        }
                    }
                }
                if let ChannelClass::Extension(extension) = &peer.class {
                    if ringing_extensions.is_empty() {
                        call.last_rang.clear();
                    }
                    if !call.last_rang.contains(extension) {
                        call.last_rang.push(extension.clone());
                    }
                    if !peer.via_queue && call.rung_legs.insert(peer_id.to_string()) {
                        let ring = call.event(Status::IncomingToPersonal, extension.clone(), at);
                        call.emit(Output::Event(ring), out);
                    }
                }
            }
            _ => {}
        }
    }

    /// Extension legs of a call that are ringing right now.
    fn ringing_extensions(&self, unique_id: &str) -> Vec<String> {
        self.legs
            .values()
            .filter(|leg| leg.ringing && leg.call.as_deref() == Some(unique_id))
            .filter_map(|leg| match &leg.class {
                ChannelClass::Extension(extension) => Some(extension.clone()),
                _ => None,
            })
            .collect()
    }

    fn on_answer(&mut self, unique_id: &str, peer_id: &str, at: EpochMillis, out: &mut Vec<Output>) {
        let Some(leg) = self.legs.get_mut(peer_id) else { return };
        leg.ringing = false;
        leg.answered = true;
        let class = leg.class.clone();
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        match (call.direction, &class) {
            (Direction::Incoming, ChannelClass::Extension(extension)) => {
                announce_answer(call, peer_id, extension, at, out);
            }
            (Direction::Outgoing, ChannelClass::Trunk(_)) if call.first_answer_at.is_none() => {
                call.first_answer_at = Some(at);
                let answered = call.event(Status::OutgoingAnswered, call.to_user.clone(), at);
                call.emit(Output::Event(answered), out);
                let started = Effect::ConversationStarted {
                    unique_id: call.unique_id.clone(),
                    client_channel_id: peer_id.to_string(),
                };
                call.emit(Output::Effect(started), out);
            }
            _ => {}
        }
    }

    /// An operator who enters a bridge with an incoming call's client talks to that client:
    /// after an attended transfer or a pickup this is the only sign of it.
    fn on_entered_bridge(&mut self, bridge_id: &str, channel_id: &str, at: EpochMillis, out: &mut Vec<Output>) {
        let Some(members) = self.bridges.get(bridge_id) else { return };
        let client_call = members.iter().find_map(|member| {
            let unique_id = self.legs.get(member)?.call.as_ref()?;
            let call = self.calls.get(unique_id)?;
            (call.direction == Direction::Incoming && call.client_legs.iter().any(|id| id == member))
                .then(|| unique_id.clone())
        });
        let Some(unique_id) = client_call else { return };
        // Whoever entered last, everyone in a bridge with the client talks to the client.
        let members: Vec<String> = members.iter().filter(|member| *member != channel_id).cloned().collect();
        self.joins_client(&unique_id, channel_id, at, out);
        for member in members {
            self.joins_client(&unique_id, &member, at, out);
        }
    }

    /// Channel `channel_id` shares a bridge with the client of incoming call `unique_id`.
    fn joins_client(&mut self, unique_id: &str, channel_id: &str, at: EpochMillis, out: &mut Vec<Output>) {
        let unique_id = unique_id.to_string();
        let Some(leg) = self.legs.get(channel_id) else { return };
        match leg.class.clone() {
            ChannelClass::Extension(extension) => self.operator_joins(&unique_id, channel_id, &extension, at, out),
            ChannelClass::Local { .. } if leg.call.as_deref() != Some(unique_id.as_str()) => {
                // A Local half arriving from another call: an attended transfer to a ring group
                // or a FreePBX queue (Local members). The pair joins the client's call and the
                // phone talking behind it is the new operator.
                let Some(partner) = self.local_partner(channel_id) else {
                    self.join(channel_id, &unique_id);
                    return;
                };
                for half in [channel_id.to_string(), partner.clone()] {
                    if let Some(leg) = self.legs.get_mut(&half) {
                        leg.call = Some(unique_id.clone());
                        leg.dialed = true;
                    }
                }
                let phones: Vec<(String, String)> = self
                    .bridged_with(&partner)
                    .into_iter()
                    .filter_map(|id| match self.legs.get(&id).map(|leg| &leg.class) {
                        Some(ChannelClass::Extension(extension)) => Some((id, extension.clone())),
                        _ => None,
                    })
                    .collect();
                for (phone, extension) in phones {
                    self.operator_joins(&unique_id, &phone, &extension, at, out);
                }
            }
            _ => {}
        }
    }

    /// `extension` (leg `channel_id`) now talks to the client of incoming call `unique_id`.
    /// A phone that came from elsewhere (a transfer, a pickup) was not rung by this call: it
    /// gets its "personal number" event first.
    fn operator_joins(
        &mut self,
        unique_id: &str,
        channel_id: &str,
        extension: &str,
        at: EpochMillis,
        out: &mut Vec<Output>,
    ) {
        let Some(leg) = self.legs.get(channel_id) else { return };
        let from_elsewhere = leg.call.as_deref() != Some(unique_id) || !leg.dialed;
        let Some(call) = self.calls.get_mut(unique_id) else { return };
        if call.answered_legs.contains(channel_id) || call.root == channel_id {
            return;
        }
        if from_elsewhere && call.rung_legs.insert(channel_id.to_string()) {
            let ring = call.event(Status::IncomingToPersonal, extension.to_string(), at);
            call.emit(Output::Event(ring), out);
        }
        announce_answer(call, channel_id, extension, at, out);
        let previous = self.legs.get_mut(channel_id).and_then(|leg| {
            leg.dialed = true;
            leg.answered = true;
            leg.call.replace(unique_id.to_string())
        });
        // A phone that picked the call up leaves its own (silent) call behind.
        if let Some(previous) = previous {
            let abandoned = self.calls.get(&previous).is_some_and(|call| {
                call.root == channel_id && matches!(call.direction, Direction::Undecided | Direction::Internal)
            });
            if abandoned {
                self.calls.remove(&previous);
                self.changed_calls.insert(previous);
            }
        }
    }

    /// The other half of a Local pair, if it is known.
    fn local_partner(&self, channel_id: &str) -> Option<String> {
        let leg = self.legs.get(channel_id)?;
        let (base, _) = leg.name.rsplit_once(';')?;
        let (one, two) = self.local_pairs.get(base)?;
        let partner = if one.as_deref() == Some(channel_id) { two.clone() } else { one.clone() };
        partner.filter(|id| self.legs.contains_key(id))
    }

    fn on_destroyed(&mut self, channel_id: &str, at: EpochMillis, out: &mut Vec<Output>) {
        let Some(leg) = self.legs.remove(channel_id) else { return };
        self.tombstones.insert(channel_id.to_string(), at);
        if let ChannelClass::Local { .. } = leg.class {
            if let Some((base, _)) = leg.name.rsplit_once(';') {
                if let Some(pair) = self.local_pairs.get_mut(base) {
                    if pair.0.as_deref() == Some(channel_id) {
                        pair.0 = None;
                    }
                    if pair.1.as_deref() == Some(channel_id) {
                        pair.1 = None;
                    }
                    if pair.0.is_none() && pair.1.is_none() {
                        self.local_pairs.remove(base);
                    }
                }
            }
        }
        let Some(unique_id) = leg.call else { return };
        if leg.in_queue.is_some() {
            self.complete_ring_round(&unique_id, channel_id, out);
        }
        let Some(call) = self.calls.get_mut(&unique_id) else { return };
        let is_root = call.root == channel_id;
        if is_root {
            call.root_gone = true;
        }
        let ends = match call.direction {
            Direction::Incoming => call.client_legs.iter().any(|id| id == channel_id),
            Direction::Outgoing => {
                let was_client = call.client_legs.iter().any(|id| id == channel_id);
                call.client_legs.retain(|id| id != channel_id);
                let live_clients = call.client_legs.iter().any(|id| self.legs.contains_key(id));
                (was_client && leg.answered && !live_clients) || (call.root_gone && !live_clients)
            }
            Direction::Undecided | Direction::Internal => {
                if is_root {
                    self.calls.remove(&unique_id);
                }
                false
            }
        };
        if ends {
            self.end_call(&unique_id, at, out);
        }
    }

    fn end_call(&mut self, unique_id: &str, at: EpochMillis, out: &mut Vec<Output>) {
        let Some(mut call) = self.calls.remove(unique_id) else { return };
        self.changed_calls.insert(unique_id.to_string());
        if let Some(pending) = call.pending_queue.as_mut() {
            if pending.shell_asked_at.is_none() {
                let members = std::mem::take(&mut pending.ring_round);
                resolve_queue(&mut call, members, out);
            }
        }
        let (status, to_user) = match call.direction {
            Direction::Incoming => {
                let to_user = match &call.last_operator {
                    Some(operator) => operator.clone(),
                    None => call.last_rang.join(","),
                };
                (Status::IncomingEnded, to_user)
            }
            _ => (Status::OutgoingEnded, call.to_user.clone()),
        };
        let mut ended = call.event(status, to_user, at);
        ended.call_duration =
            call.first_answer_at.map(|answered_at| (at.saturating_sub(answered_at).max(0) / 1000) as u64);
        let answered = ended.call_duration.is_some();
        call.emit(Output::Event(ended), out);
        self.stats.calls_ended += 1;
        if call.awaiting_recording_names {
            // Its MixMonitor files are still being asked for: they (and the close) follow the answer.
            call.closing = Some(answered);
            self.calls.insert(unique_id.to_string(), call);
        } else {
            self.close_call(&mut call, answered, out);
            if call.pending_queue.is_some() {
                // The shell's answer is still awaited: keep the call (and its held outputs) until then.
                call.ended = true;
                self.calls.insert(unique_id.to_string(), call);
            }
        }
        for leg in self.legs.values_mut() {
            if leg.call.as_deref() == Some(unique_id) {
                leg.call = None;
            }
        }
    }

    /// The ended call's recordings to upload (if it was answered), then its close.
    fn close_call(&self, call: &mut Call, answered: bool, out: &mut Vec<Output>) {
        if answered && self.settings.recordings == RecordingMode::Mixmonitor {
            for path in std::mem::take(&mut call.recordings) {
                let recording = RecordingRef { unique_id: call.unique_id.clone(), source: RecordingSource::File(path) };
                call.emit(Output::Recording(recording), out);
            }
        }
        let closed = Effect::CallClosed { unique_id: call.unique_id.clone(), answered };
        call.emit(Output::Effect(closed), out);
    }

    /// A live channel deskhook did not see being created (deskhook started mid-call, or it
    /// appeared during a disconnect).
    fn adopt(&mut self, channel: &Channel, live: &HashMap<&str, &Channel>, at: EpochMillis, out: &mut Vec<Output>) {
        let class = self.settings.classifier.channel(&channel.name);
        if class == ChannelClass::Snoop {
            return;
        }
        self.track(channel, class.clone());
        let dialed = is_dialed_leg(channel);
        if let Some(linkedid) = channel.exported_linkedid().filter(|id| *id != channel.id) {
            if self.calls.contains_key(linkedid) {
                let linkedid = linkedid.to_string();
                self.join(&channel.id, &linkedid);
                if let Some(leg) = self.legs.get_mut(&channel.id) {
                    leg.dialed = dialed;
                }
                return;
            }
        }
        let started_at = crate::ari::events::parse_ari_timestamp(&channel.creationtime).unwrap_or(at);
        match class {
            ChannelClass::Trunk(_) if !dialed => {
                // The DID is only known at creation; FROM_DID (FreePBX) keeps it when exported.
                let did = channel
                    .channelvars
                    .as_ref()
                    .and_then(|vars| vars.get("FROM_DID"))
                    .filter(|did| !did.is_empty())
                    .cloned()
                    .unwrap_or_else(|| channel.dialplan.exten.clone());
                if self.start_incoming(channel, &did, started_at, out) {
                    self.stats.calls_adopted += 1;
                    if let Some(call) = self.calls.get_mut(channel.exported_linkedid().unwrap_or(&channel.id)) {
                        call.adopted = true;
                    }
                }
            }
            ChannelClass::Extension(_) if !dialed => {
                // An operator's own call: outgoing if it is bridged with a dialed trunk leg.
                let peer = self.bridged_with(&channel.id).into_iter().find(|id| {
                    live.get(id.as_str()).is_some_and(|peer| {
                        is_dialed_leg(peer)
                            && matches!(self.settings.classifier.channel(&peer.name), ChannelClass::Trunk(_))
                    })
                });
                if let Some(peer) = peer.as_deref().and_then(|id| live.get(id)) {
                    if !self.legs.contains_key(&peer.id) {
                        let class = self.settings.classifier.channel(&peer.name);
                        self.track(peer, class);
                    }
                }
                let unique_id = channel.exported_linkedid().unwrap_or(&channel.id).to_string();
                let mut call = Call::new(unique_id.clone(), channel.id.clone(), Direction::Undecided);
                call.adopted = true;
                if let ChannelClass::Extension(extension) = &class {
                    call.from_user.clone_from(extension);
                }
                if let Some(peer) = peer {
                    call.direction = Direction::Outgoing;
                    let peer_leg = self.legs.get(&peer);
                    call.to_user = peer_leg.map(|leg| leg.caller_number.clone()).unwrap_or_default();
                    call.client_legs.push(peer.clone());
                    call.first_answer_at = Some(self.talking_since(&channel.id).unwrap_or(started_at));
                    let start = call.event(Status::OutgoingStart, call.to_user.clone(), started_at);
                    call.emit(Output::Event(start), out);
                    self.stats.calls_started += 1;
                    self.stats.calls_adopted += 1;
                    if let Some(leg) = self.legs.get_mut(&peer) {
                        leg.call = Some(unique_id.clone());
                        leg.dialed = true;
                        leg.answered = true;
                    }
                }
                self.calls.insert(unique_id.clone(), call);
                self.join(&channel.id, &unique_id);
            }
            _ => {
                // A dialed leg (or a Local half): it belongs to the call of whoever it is
                // bridged with, or of its Local partner.
                let owner = self
                    .bridged_with(&channel.id)
                    .into_iter()
                    .find_map(|id| self.legs.get(&id).and_then(|leg| leg.call.clone()));
                if let Some(unique_id) = owner {
                    self.join(&channel.id, &unique_id);
                    self.attach_local_partner(&channel.id);
                    if let Some(leg) = self.legs.get_mut(&channel.id) {
                        leg.dialed = true;
                    }
                    // Its conversation began before deskhook saw it: count it as answered
                    // (since the bridge it talks in was created) without announcing again what
                    // the helpdesk may already have.
                    let talking_since = self.talking_since(&channel.id).unwrap_or(started_at);
                    if let (Some(call), ChannelClass::Extension(extension)) = (self.calls.get_mut(&unique_id), &class) {
                        if call.adopted && channel.state == "Up" && call.answered_legs.insert(channel.id.clone()) {
                            call.first_answer_at.get_or_insert(talking_since);
                            call.last_operator = Some(extension.clone());
                        }
                    }
                }
            }
        }
    }

    /// When the oldest bridge `channel_id` is in was created: the start of a conversation
    /// found on a resync.
    fn talking_since(&self, channel_id: &str) -> Option<EpochMillis> {
        self.bridges
            .iter()
            .filter(|(_, members)| members.iter().any(|id| id == channel_id))
            .filter_map(|(bridge_id, _)| self.bridge_created.get(bridge_id).copied())
            .min()
    }

    fn bridged_with(&self, channel_id: &str) -> Vec<String> {
        self.bridges
            .values()
            .filter(|members| members.iter().any(|id| id == channel_id))
            .flat_map(|members| members.iter().filter(|id| *id != channel_id).cloned())
            .collect()
    }
}

/// The channels an event is about (whose calls it may change).
fn mentioned_channels<'a>(event: &'a AriEvent) -> Vec<&'a str> {
    let mut ids: Vec<&'a str> = Vec::new();
    let mut add = |channel: Option<&'a Channel>| {
        if let Some(channel) = channel {
            ids.push(channel.id.as_str());
        }
    };
    match event {
        AriEvent::ChannelCreated { channel }
        | AriEvent::ChannelDestroyed { channel, .. }
        | AriEvent::ChannelStateChange { channel }
        | AriEvent::ChannelDialplan { channel, .. }
        | AriEvent::ChannelHangupRequest { channel, .. }
        | AriEvent::ChannelCallerId { channel }
        | AriEvent::ChannelConnectedLine { channel }
        | AriEvent::StasisStart { channel, .. }
        | AriEvent::StasisEnd { channel } => add(Some(channel)),
        AriEvent::ChannelVarset { channel, .. } => add(channel.as_ref()),
        AriEvent::Dial { caller, peer, .. } => {
            add(caller.as_ref());
            add(Some(peer));
        }
        AriEvent::ChannelEnteredBridge { bridge, channel } | AriEvent::ChannelLeftBridge { bridge, channel } => {
            add(Some(channel));
            ids.extend(bridge.channels.iter().map(String::as_str));
        }
        AriEvent::BridgeBlindTransfer { channel, transferee, replace_channel, .. } => {
            add(Some(channel));
            add(transferee.as_ref());
            add(replace_channel.as_ref());
        }
        AriEvent::BridgeAttendedTransfer(transfer) => {
            add(Some(&transfer.transferer_first_leg));
            add(Some(&transfer.transferer_second_leg));
            add(transfer.replace_channel.as_ref());
            add(transfer.transferee.as_ref());
            add(transfer.transfer_target.as_ref());
            add(transfer.destination_link_first_leg.as_ref());
            add(transfer.destination_link_second_leg.as_ref());
            add(transfer.destination_threeway_channel.as_ref());
        }
        _ => {}
    }
    ids
}

/// Announces that `extension` (leg `leg_id`) answered an incoming call, once per leg.
fn announce_answer(call: &mut Call, leg_id: &str, extension: &str, at: EpochMillis, out: &mut Vec<Output>) {
    if !call.answered_legs.insert(leg_id.to_string()) {
        return;
    }
    let first = call.first_answer_at.is_none();
    call.first_answer_at.get_or_insert(at);
    call.last_operator = Some(extension.to_string());
    let answered = call.event(Status::IncomingAnswered, extension.to_string(), at);
    call.emit(Output::Event(answered), out);
    if first {
        if let Some(client) = call.client_legs.first().cloned() {
            let started = Effect::ConversationStarted { unique_id: call.unique_id.clone(), client_channel_id: client };
            call.emit(Output::Effect(started), out);
        }
    }
}

/// Emits the pending `call to queue` event with `members`, then everything held behind it.
fn resolve_queue(call: &mut Call, mut members: Vec<String>, out: &mut Vec<Output>) {
    let Some(pending) = call.pending_queue.take() else { return };
    sort_extensions(&mut members);
    let event = call.event(Status::IncomingToQueue(pending.name), members.join(","), pending.entered_at);
    out.push(Output::Event(event));
    out.append(&mut call.held);
}

/// Extensions named by member interfaces, in a stable natural order, without duplicates.
fn extensions_of(interfaces: &[String]) -> Vec<String> {
    let mut extensions: Vec<String> =
        interfaces.iter().flat_map(|item| item.split(',')).filter_map(extension_of_interface).collect();
    sort_extensions(&mut extensions);
    extensions
}

fn sort_extensions(extensions: &mut Vec<String>) {
    extensions.sort_by(|a, b| (a.len(), a).cmp(&(b.len(), b)));
    extensions.dedup();
}

/// The number an outgoing dial sends to the trunk: `89161234567@provider` → `89161234567`.
fn dialed_number(dialstring: &str, peer_caller_number: &str) -> Option<String> {
    let target = dialstring.rsplit('/').next().unwrap_or(dialstring);
    let number = target.split('@').next().unwrap_or(target).trim();
    let looks_like_number =
        !number.is_empty() && number.chars().all(|c| c.is_ascii_digit() || matches!(c, '+' | '*' | '#'));
    if looks_like_number {
        return Some(number.to_string());
    }
    (!peer_caller_number.is_empty()).then(|| peer_caller_number.to_string())
}

/// A channel created by Dial/Queue rather than by a phone or carrier calling in.
fn is_dialed_leg(channel: &Channel) -> bool {
    matches!(channel.dialplan.app_name.as_str(), "AppDial" | "AppQueue")
        || channel.dialplan.app_data == "(Outgoing Line)"
}
