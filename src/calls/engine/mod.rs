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
//!
//! This file holds the state (legs, calls) and the channel lifecycle (created, destroyed, a
//! call's end); the other rules live by topic: `dial` (rings and answers), `queue` (queue
//! visits), `bridges` (transfers, pickups, Local pairs), `resync` (snapshots, adoption,
//! checkpoints and restarts).

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::ari::events::{AriEvent, EpochMillis, TimedEvent};
use crate::ari::model::{Bridge, Channel, ChannelState, DialplanApp};

use super::checkpoint::{CallCheckpoint, CallFacts, CheckpointDirection, LegCheckpoint, PendingQueueCheckpoint};
use super::classify::{extension_of_interface, ChannelClass, Classifier, LocalHalf};
use super::event::{Effect, Output, RecordingRef, RecordingSource};
use super::record::{
    CallDirection, CallEvent, CallSummary, Happened, HungUpBy, Outcome, Parties, Rang, RingOutcome, Transfer,
    TransferKind,
};
use super::since_connect::SinceConnect;

mod bridges;
mod dial;
mod queue;
mod resync;

use dial::*;
use queue::*;

/// The one channel variable the engine reads: where MixMonitor writes the call's recording.
const RECORDING_VARIABLE: &str = "MIXMONITOR_FILENAME";
/// The channel variables whose `ChannelVarset` the engine acts on (it ignores every other).
pub(crate) const VARIABLES_READ: &[&str] = &[RECORDING_VARIABLE];
/// How long the shell may take to name a queue's members before the ring round is used instead.
const SHELL_ANSWER_TIMEOUT_MS: EpochMillis = 5_000;
/// Q.850 "User busy": the phone refused the call.
const CAUSE_USER_BUSY: i64 = 17;
/// Destroyed channel ids are remembered this long (event time) so late or repeated events are ignored.
const TOMBSTONE_TTL_MS: EpochMillis = 3_600_000;

/// How the engine is set up; the shell builds it (`crate::daemon::engine_settings` from the config).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub classifier: Classifier,
    /// `[pbx.queues]`: members by queue name, used before anything else.
    pub static_queues: BTreeMap<String, Vec<String>>,
    /// The live daemon can read `QUEUE_MEMBER_LIST` through ARI: emit [`Effect::QueueMembers`].
    pub ask_shell_for_queue_members: bool,
    /// How long after the first member leg the ring round counts as complete.
    pub queue_ring_round_ms: i64,
    /// MixMonitor's files are picked up: an answered call reports them when it ends.
    pub report_mixmonitor_files: bool,
}

/// The ARI event types the engine acts on whatever the settings (see
/// [`EngineSettings::event_types_read`]).
const EVENT_TYPES_READ: &[&str] = &[
    "ChannelCreated",
    "ChannelDestroyed",
    "ChannelStateChange",
    "ChannelDialplan",
    "ChannelHangupRequest",
    "ChannelCallerId",
    "ChannelConnectedLine",
    "Dial",
    "ChannelEnteredBridge",
    "ChannelLeftBridge",
    "BridgeDestroyed",
    "BridgeBlindTransfer",
    "BridgeAttendedTransfer",
    "StasisStart",
    "StasisEnd",
];

impl EngineSettings {
    /// The ARI event types that can change what the engine makes of a call with these settings;
    /// every other type it takes and ignores. `ChannelVarset` (most of what Asterisk sends) only
    /// counts while MixMonitor's files are picked up: their names are its only use.
    pub fn event_types_read(&self) -> Vec<&'static str> {
        let mut types = EVENT_TYPES_READ.to_vec();
        if self.report_mixmonitor_files {
            types.push("ChannelVarset");
        }
        types
    }
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
    /// What its summary will say.
    facts: CallFacts,
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
            facts: CallFacts::default(),
        }
    }

    fn parties(&self) -> Parties {
        match self.direction {
            Direction::Outgoing => Parties {
                direction: CallDirection::Outgoing,
                client: self.to_user.clone(),
                did: String::new(),
                caller_extension: self.from_user.clone(),
            },
            _ => Parties {
                direction: CallDirection::Incoming,
                client: self.from_user.clone(),
                did: self.to_user.clone(),
                caller_extension: String::new(),
            },
        }
    }

    fn event(&self, what: Happened, at: EpochMillis) -> CallEvent {
        CallEvent { unique_id: self.unique_id.clone(), at, parties: self.parties(), what }
    }

    /// Marks the ring of leg `leg_id` with `outcome` (answered stays answered).
    fn ring_outcome(&mut self, leg_id: &str, outcome: RingOutcome) {
        if let Some((_, rang)) = self.facts.rang.iter_mut().find(|(leg, _)| leg == leg_id) {
            if rang.outcome != RingOutcome::Answered {
                rang.outcome = outcome;
            }
        }
    }

    /// Everything known about the call, now that it ended at `ended_at`.
    fn summary(&self, ended_at: EpochMillis, recordings_uploaded: bool) -> CallSummary {
        let facts = &self.facts;
        let answered_at = self.first_answer_at;
        let started_at = facts.started_at.unwrap_or(ended_at).min(answered_at.unwrap_or(ended_at)).min(ended_at);
        let rang: Vec<Rang> = facts.rang.iter().map(|(_, rang)| rang.clone()).collect();
        let outcome = match (self.direction, answered_at) {
            (_, Some(_)) => Outcome::Answered,
            (Direction::Outgoing, None) => match facts.client_dial_status.as_deref() {
                Some("BUSY") => Outcome::Busy,
                Some("CHANUNAVAIL" | "CONGESTION" | "INVALIDARGS") => Outcome::Failed,
                _ => Outcome::NoAnswer,
            },
            (_, None) if rang.is_empty() => Outcome::Failed,
            (_, None) if rang.iter().all(|rang| rang.outcome == RingOutcome::Busy) => Outcome::Busy,
            (_, None) => Outcome::NoAnswer,
        };
        let operator = match self.direction {
            Direction::Outgoing => Some(self.from_user.clone()).filter(|extension| !extension.is_empty()),
            _ => self.last_operator.clone(),
        };
        CallSummary {
            started_at,
            answered_at,
            ended_at,
            operator,
            queue: facts.last_queue.clone(),
            outcome,
            hangup_cause: facts.hangup.as_ref().map(|(cause, _)| *cause),
            hangup_cause_text: facts.hangup.as_ref().map(|(_, text)| text.clone()),
            hung_up_by: facts.hung_up_by.unwrap_or(HungUpBy::System),
            rang,
            transfers: facts.transfers.clone(),
            // What deskhook uploads: MixMonitor's files of an answered call.
            recordings: if answered_at.is_some() && recordings_uploaded { self.recordings.clone() } else { Vec::new() },
            last_rang: self.last_rang.clone(),
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
    /// Calls changed since the last [`Engine::take_checkpoints`].
    changed_calls: HashSet<String>,
    /// The checkpoint last handed out per call (what the daemon has stored).
    stored_checkpoints: HashMap<String, CallCheckpoint>,
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
            changed_calls: HashSet::new(),
            stored_checkpoints: HashMap::new(),
            latest_at: EpochMillis::MIN,
            restored_until: None,
        }
    }

    pub(crate) fn settings(&self) -> &EngineSettings {
        &self.settings
    }

    /// Calls currently open.
    pub fn open_calls(&self) -> usize {
        self.calls.len()
    }

    /// Feeds one ARI event; appends what follows from it to `out`.
    pub fn handle(&mut self, timed: &TimedEvent, out: &mut Vec<Output>) {
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
            AriEvent::ChannelDestroyed { channel, cause, cause_txt } => {
                self.note_cause(&channel.id, *cause, cause_txt);
                self.on_destroyed(&channel.id, at, out)
            }
            AriEvent::ChannelHangupRequest { channel, soft, .. } => self.on_hangup_request(&channel.id, *soft),
            AriEvent::ChannelDialplan { channel, app } => self.on_dialplan(channel, app, at, out),
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
        let inbound = channel.state.is_inbound_ringing();
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
            answered: channel.state == ChannelState::Up,
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

    fn join(&mut self, channel_id: &str, unique_id: &str) {
        if let Some(leg) = self.legs.get_mut(channel_id) {
            leg.call = Some(unique_id.to_string());
        }
    }

    fn on_varset(&mut self, channel: &Channel, variable: &str, value: &str) {
        if variable != RECORDING_VARIABLE || value.is_empty() {
            return;
        }
        let Some(unique_id) = self.legs.get(&channel.id).and_then(|leg| leg.call.clone()) else { return };
        if let Some(call) = self.calls.get_mut(&unique_id) {
            if !call.recordings.iter().any(|known| known == value) {
                call.recordings.push(value.to_string());
            }
        }
    }

    /// Keeps what Asterisk said when a call's channel went: the client's cause for the summary,
    /// and a busy extension's ring.
    fn note_cause(&mut self, channel_id: &str, cause: i64, cause_txt: &str) {
        let Some(leg) = self.legs.get(channel_id) else { return };
        let Some(call) = leg.call.as_deref().and_then(|unique_id| self.calls.get_mut(unique_id)) else { return };
        if call.client_legs.iter().any(|id| id == channel_id) {
            call.facts.hangup = Some((cause, cause_txt.to_string()));
        } else if cause == CAUSE_USER_BUSY && !leg.answered {
            call.ring_outcome(channel_id, RingOutcome::Busy);
        }
    }

    /// The first hangup asked for decides who hung up: a phone's own (not `soft`) request on the
    /// client's side or on an operator who talks (or who placed the call), or Asterisk's
    /// (`soft`: the dialplan, a timeout, a shutdown) on the client's side.
    fn on_hangup_request(&mut self, channel_id: &str, soft: bool) {
        let Some(leg) = self.legs.get(channel_id) else { return };
        let Some(call) = leg.call.as_deref().and_then(|unique_id| self.calls.get_mut(unique_id)) else { return };
        if call.facts.hung_up_by.is_some() {
            return;
        }
        let is_client = call.client_legs.iter().any(|id| id == channel_id);
        let is_operator = matches!(leg.class, ChannelClass::Extension(_)) && (leg.answered || call.root == channel_id);
        call.facts.hung_up_by = match (is_client, is_operator, soft) {
            (true, _, false) => Some(HungUpBy::Client),
            (true, _, true) => Some(HungUpBy::System),
            (false, true, false) => Some(HungUpBy::Operator),
            _ => None,
        };
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
        let summary = call.summary(at, self.settings.report_mixmonitor_files);
        let answered = summary.answered();
        let ended = call.event(Happened::Ended(Box::new(summary)), at);
        call.emit(Output::Event(ended), out);
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
        if answered && self.settings.report_mixmonitor_files {
            for path in std::mem::take(&mut call.recordings) {
                let recording = RecordingRef { unique_id: call.unique_id.clone(), source: RecordingSource::File(path) };
                call.emit(Output::Recording(recording), out);
            }
        }
        let closed = Effect::CallClosed { unique_id: call.unique_id.clone(), answered };
        call.emit(Output::Effect(closed), out);
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
        // Most of ARI's messages set a variable the engine never reads: they change no call, so
        // they cost no new checkpoint (and no outbox commit).
        AriEvent::ChannelVarset { channel, variable, .. } if VARIABLES_READ.contains(&variable.as_str()) => {
            add(channel.as_ref())
        }
        AriEvent::ChannelVarset { .. } => {}
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
