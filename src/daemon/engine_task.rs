//! The task that owns the call engine: it parses queued ARI messages, feeds the engine, sleeps
//! until the engine's next deadline is due, applies resync snapshots, routes queue-member questions to
//! their lookups and everything else to the sink. It is also where the systemd watchdog is
//! pinged, so a wedged engine gets the daemon restarted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ari::client::subscribe_all_supported;
use crate::ari::websocket::{MessageText, SocketEvent, READ_PAUSE};
use crate::ari::{AriClient, AriEvent, EpochMillis, EventParser, TimedEvent};
use crate::calls::{Effect, Engine, Output, SinceConnect};
use crate::health::Health;
use crate::metrics::{self, Counter, Gauge};
use crate::presence::Presence;

use super::clock::EventClock;
use super::event_filter::EventFilter;
use super::queue_members::QueueMemberLookup;
use super::resync::{is_any_resync_marker, is_resync_marker, spawn_resync, EndpointClasses, Snapshot};
use super::sink::SinkQueue;
use super::systemd::Systemd;
use super::{Inbound, LiveStats};

/// Inbound items taken per wake-up: the reader's items carry up to `HANDOVER` messages each,
/// so this is up to about a thousand messages before the sink's room is looked at again.
const BATCH: usize = 8;
/// On shutdown, how long the engine may keep working through what was already read.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How long events are held back waiting for the snapshot after a connect.
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(30);
/// How many events are held back at most waiting for the snapshot.
const HELD_LIMIT: usize = 200_000;
/// How long the resync marker may take to come back over the websocket after the snapshot.
const MARKER_PATIENCE: Duration = Duration::from_secs(3);

/// Events that arrived on a new connection before its snapshot was complete: before ARI's
/// channel list, and after it until the resync marker came back (the websocket runs behind
/// REST, so a listed channel's `ChannelCreated` may still be on the way). The snapshot is
/// applied first, merged with what these events say ([`SinceConnect`]), then they are handled:
/// a snapshot applied after newer events would end calls that just started, and a channel
/// adopted from a snapshot instead of its own events would lose where it was first dialed.
pub(crate) struct HeldEvents {
    generation: u64,
    since: Instant,
    events: Vec<TimedEvent>,
    since_connect: SinceConnect,
    /// The snapshot, once read, while the marker is still on its way.
    snapshot: Option<Snapshot>,
    marker_deadline: Option<Instant>,
    /// The marker came back (possibly before the answer to its POST did).
    marker_seen: bool,
}

/// The last moment deskhook saw Asterisk, for calls whose channels vanish while it did not:
/// they end then, not at the resync that notices (SPEC §7).
#[derive(Debug, Clone, Copy)]
pub(crate) enum LostSight {
    /// The websocket was last alive at this event time.
    Connection(EpochMillis),
    /// The previous run of deskhook was last watching Asterisk at this event time (it was
    /// killed, crashed or stopped with calls open).
    PreviousRun(EpochMillis),
}

impl LostSight {
    fn at(self) -> EpochMillis {
        match self {
            LostSight::Connection(at) | LostSight::PreviousRun(at) => at,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            LostSight::Connection(_) => "when deskhook lost sight of Asterisk",
            LostSight::PreviousRun(_) => "when deskhook's previous run was last watching Asterisk",
        }
    }
}

pub(crate) struct EngineTask {
    pub engine: Engine,
    pub parser: EventParser,
    pub clock: EventClock,
    pub client: AriClient,
    /// deskhook's ARI application (where the resync marker is posted).
    pub app: String,
    /// The event types Asterisk is asked to send, set again on every connect.
    pub event_filter: EventFilter,
    pub presence: Presence,
    pub health: Health,
    pub sink: SinkQueue,
    pub inbound_tx: mpsc::UnboundedSender<Inbound>,
    pub queue_members: QueueMemberLookup,
    pub current_generation: Arc<AtomicU64>,
    pub stats: Arc<LiveStats>,
    pub systemd: Systemd,
    pub last_startup_time: Option<String>,
    pub last_endpoint_summary: Option<String>,
    pub warned_old_asterisk: bool,
    pub outputs: Vec<Output>,
    pub meters: Meters,
    pub awaiting_snapshot: Option<HeldEvents>,
    pub lost_sight: Option<LostSight>,
    /// When the last [`Effect::Alive`] went to the sink.
    pub last_alive_sent: Option<Instant>,
    /// A step went to the sink since the last heartbeat.
    pub stored_since_alive: bool,
    /// The sink task is gone: nothing more can be stored.
    pub sink_gone: bool,
    /// `[recordings] dirs` in mixmonitor mode (empty otherwise): where a call's files are
    /// looked for by name when its channels are gone before they could be asked.
    pub recording_dirs: Arc<Vec<std::path::PathBuf>>,
}

/// How often, while calls are open and ARI is connected, the sink hears that deskhook is watching.
const ALIVE_EVERY: Duration = Duration::from_secs(1);

/// Gives `engine` back the calls a previous run left open; says since when they are unseen.
pub(crate) fn resume(engine: &mut Engine, resume: crate::deliver::OpenCalls) -> Option<LostSight> {
    if resume.calls.is_empty() {
        return None;
    }
    let count = resume.calls.len();
    // The last heartbeat may predate a call that changed just before the end: never earlier than that.
    let newest_change = resume.calls.iter().map(|call| call.taken_at).max();
    let last_seen = resume.last_alive_ms.max(newest_change);
    engine.restore(resume.calls, last_seen);
    tracing::info!(
        "took back {count} calls that were open when deskhook last stopped; the first resync ends those whose \
         channels are gone"
    );
    last_seen.map(LostSight::PreviousRun)
}

/// When to wake for an engine deadline `ahead_ms` of event time from now: a millisecond late
/// rather than early (event time is counted in whole ms), and late by the reader's pause, so
/// that an event Asterisk sent before the deadline but the reader has not taken yet still
/// counts (a member rung just inside a queue's ring round). Under a steady flow the deadline
/// passes earlier anyway, with the first event stamped after it.
fn wake_for_deadline(now: Instant, ahead_ms: EpochMillis) -> Instant {
    let ahead = u64::try_from(ahead_ms).unwrap_or(0);
    now + Duration::from_millis(ahead.saturating_add(1)) + READ_PAUSE
}

impl EngineTask {
    pub(super) async fn run(mut self, mut inbound: mpsc::UnboundedReceiver<Inbound>, shutdown: CancellationToken) {
        let mut batch = Vec::with_capacity(BATCH);
        while !self.sink_gone {
            // A sink that fell behind holds ARI input back here; the reader's bound does the rest.
            let sink_full = self.sink.is_full();
            // No wake-ups while nothing is due: the next deadline of whatever waits for time.
            let wake = self.next_wake();
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                _ = self.sink.room(), if sink_full => {}
                received = inbound.recv_many(&mut batch, BATCH), if !sink_full => {
                    if received == 0 {
                        break;
                    }
                    self.meters.batches.inc();
                    for item in batch.drain(..) {
                        self.on_inbound(item);
                    }
                    self.dispatch();
                    // Rides on the same outbox commit as the batch's events.
                    self.say_alive(true);
                }
                _ = sleep_until_some(wake) => {
                    self.on_tick();
                }
            }
        }
        self.drain(&mut inbound);
    }

    /// Works through what the reader already queued, so nothing read before shutdown is dropped.
    fn drain(&mut self, inbound: &mut mpsc::UnboundedReceiver<Inbound>) {
        let started = Instant::now();
        while started.elapsed() < DRAIN_LIMIT {
            match inbound.try_recv() {
                Ok(item) => self.on_inbound(item),
                Err(_) => break,
            }
        }
        self.release_held();
        self.dispatch();
        self.say_alive(true);
        // The reader is closing the socket: whatever it still queues, ARI is no longer watched.
        self.health.set_ari_connected(false);
        self.meters.connected.set(0);
    }

    /// The earliest of: the held snapshot's patience, the engine's next deadline (event time,
    /// mapped onto the wall clock), the next heartbeat while calls are open, the watchdog.
    fn next_wake(&self) -> Option<Instant> {
        let now = Instant::now();
        let held = self.awaiting_snapshot.as_ref().and_then(|held| {
            let snapshot_late = held.snapshot.is_none().then(|| held.since + SNAPSHOT_PATIENCE);
            held.marker_deadline.into_iter().chain(snapshot_late).min()
        });
        let engine = match (self.clock.is_running(), self.engine.next_deadline()) {
            (true, Some(deadline)) => Some(wake_for_deadline(now, deadline.saturating_sub(self.clock.now()))),
            _ => None,
        };
        let connected = self.current_generation.load(Ordering::SeqCst) != 0 && self.awaiting_snapshot.is_none();
        let alive = (connected && self.engine.open_calls() > 0)
            .then(|| self.last_alive_sent.map_or(now, |sent| sent + ALIVE_EVERY));
        [held, engine, alive, self.systemd.next_watchdog_ping()].into_iter().flatten().min()
    }

    fn on_tick(&mut self) {
        let now = Instant::now();
        if let Some(held) = &self.awaiting_snapshot {
            if held.marker_deadline.is_some_and(|deadline| now >= deadline) {
                tracing::debug!(
                    "the resync marker did not come back within {} s; merging the snapshot with the events \
                     received so far",
                    MARKER_PATIENCE.as_secs()
                );
                self.release_held();
            } else if held.snapshot.is_none() && now.duration_since(held.since) >= SNAPSHOT_PATIENCE {
                tracing::warn!(
                    "ARI's channel list did not arrive within {} s of connecting; handling the events received \
                     meanwhile without it",
                    SNAPSHOT_PATIENCE.as_secs()
                );
                self.release_held();
            }
        }
        if self.clock.is_running() {
            self.engine.advance_to(self.clock.now(), &mut self.outputs);
            self.dispatch();
        }
        self.say_alive(false);
        self.systemd.watchdog_tick();
    }

    fn on_inbound(&mut self, item: Inbound) {
        match item {
            Inbound::Socket(SocketEvent::Messages(texts)) => {
                for text in texts {
                    self.stats.reader.handled();
                    if let Some(event) = self.parse(&text) {
                        self.on_received(event);
                    }
                }
            }
            Inbound::Socket(SocketEvent::Connected { generation, outage }) => {
                self.release_held();
                self.awaiting_snapshot = Some(HeldEvents {
                    generation,
                    since: Instant::now(),
                    events: Vec::new(),
                    since_connect: SinceConnect::default(),
                    snapshot: None,
                    marker_deadline: None,
                    marker_seen: false,
                });
                self.current_generation.store(generation, Ordering::SeqCst);
                self.meters.connected.set(1);
                self.health.set_ari_connected(true);
                if outage.is_some() {
                    self.meters.reconnects.inc();
                }
                self.systemd.status("connected to ARI");
                spawn_resync(
                    self.client.clone(),
                    self.app.clone(),
                    self.event_filter.clone(),
                    generation,
                    self.current_generation.clone(),
                    self.inbound_tx.clone(),
                );
            }
            Inbound::Socket(SocketEvent::Disconnected { generation, last_alive }) => {
                self.release_held();
                // Calls left by a previous run end when that run lost sight, not this connection.
                if !matches!(self.lost_sight, Some(LostSight::PreviousRun(_))) {
                    self.lost_sight = Some(LostSight::Connection(self.clock.now_at(last_alive)));
                }
                let _ = self.current_generation.compare_exchange(generation, 0, Ordering::SeqCst, Ordering::SeqCst);
                self.meters.connected.set(0);
                self.health.set_ari_connected(false);
                self.systemd.status("ARI unreachable, reconnecting");
            }
            Inbound::Resynced { generation, snapshot, marker_posted } => {
                if self.current_generation.load(Ordering::SeqCst) != generation {
                    return;
                }
                let Some(held) = self.awaiting_snapshot.as_mut().filter(|held| held.generation == generation) else {
                    return;
                };
                held.snapshot = Some(*snapshot);
                if marker_posted && !held.marker_seen {
                    held.marker_deadline = Some(Instant::now() + MARKER_PATIENCE);
                } else {
                    self.release_held();
                }
            }
            Inbound::RecordingNames { unique_id, names } => {
                self.engine.provide_recording_names(&unique_id, names, &mut self.outputs);
            }
            Inbound::QueueMembers { unique_id, queue, members } => {
                let at = self.clock.now();
                self.engine.provide_queue_members(&unique_id, &queue, members, at, &mut self.outputs);
            }
        }
    }

    /// A parsed event off the websocket: held while a snapshot is being completed, else handled.
    fn on_received(&mut self, event: TimedEvent) {
        let Some(held) = &mut self.awaiting_snapshot else {
            self.on_event(event);
            return;
        };
        if is_resync_marker(&event.event, held.generation) {
            held.marker_seen = true;
            if held.snapshot.is_some() {
                self.release_held();
            }
            return;
        }
        if held.events.len() >= HELD_LIMIT {
            tracing::warn!("too many events while waiting for ARI's channel list; handling them without it");
            self.release_held();
            self.on_event(event);
            return;
        }
        held.since_connect.observe(&event.event);
        held.events.push(event);
    }

    /// Applies the snapshot being completed (if it was read), then handles the events held back.
    fn release_held(&mut self) {
        if let Some(held) = self.awaiting_snapshot.take() {
            if let Some(snapshot) = held.snapshot {
                self.apply_snapshot(snapshot, &held.since_connect);
            }
            for event in held.events {
                self.on_event(event);
            }
        }
    }

    fn parse(&mut self, text: &MessageText) -> Option<TimedEvent> {
        self.stats.processed.fetch_add(1, Ordering::Relaxed);
        self.meters.messages.inc();
        match self.parser.parse(text) {
            Ok(event) => Some(event),
            Err(error) => {
                let malformed = self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                self.meters.malformed.inc();
                if malformed < 10 {
                    tracing::warn!("skipped an ARI message deskhook cannot read: {error}");
                } else {
                    tracing::debug!("skipped an unreadable ARI message: {error}");
                }
                None
            }
        }
    }

    fn on_event(&mut self, event: TimedEvent) {
        match &event.event {
            AriEvent::EndpointStateChange { endpoint } => self.presence.set(&endpoint.resource, &endpoint.state),
            // Handled by the reader (it reconnects); carries no useful time.
            AriEvent::ApplicationReplaced { .. } => return,
            // A marker that came back after its resync gave up waiting: nothing to do.
            event if is_any_resync_marker(event) => return,
            _ => {}
        }
        self.clock.observe(event.at);
        self.engine.handle(&event, &mut self.outputs);
    }

    fn apply_snapshot(&mut self, snapshot: Snapshot, since_connect: &SinceConnect) {
        let Snapshot { info, endpoints, channels, bridges } = snapshot;
        let startup = info.status.startup_time.clone();
        if let Some(previous) = &self.last_startup_time {
            if !startup.is_empty() && previous != &startup {
                tracing::warn!(
                    "Asterisk restarted (up since {startup}, before since {previous}); calls that were open \
                     before the restart are closed now unless their channels still exist"
                );
            }
        }
        if !startup.is_empty() {
            self.last_startup_time = Some(startup);
        }
        if subscribe_all_supported(&info.system.version) == Some(false) && !self.warned_old_asterisk {
            self.warned_old_asterisk = true;
            tracing::error!(
                "Asterisk {} is older than 13.6 and ignores subscribeAll: deskhook sees no ordinary calls; \
                 fix: upgrade Asterisk",
                info.system.version
            );
        }
        self.presence.replace_all(endpoints.iter().map(|e| (e.resource.as_str(), e.state.as_str())));
        let classes = EndpointClasses::of(&self.engine.settings().classifier, &endpoints);
        let summary = format!("Asterisk {}, endpoints: {}", info.system.version, classes.summary());
        if self.last_endpoint_summary.as_deref() != Some(summary.as_str()) {
            tracing::info!("{summary}");
            if classes.trunks.is_empty() {
                tracing::warn!(
                    "no ARI endpoint is a trunk, so no call counts as incoming or outgoing; fix: list the \
                     carrier endpoints in config.toml [pbx] trunks"
                );
            }
            self.last_endpoint_summary = Some(summary);
        }
        let open_before = self.engine.open_calls();
        let now = self.clock.now();
        let lost_sight = self.lost_sight.take();
        let at = lost_sight.map_or(now, |lost| lost.at().min(now));
        let earlier = self.outputs.len();
        self.engine.resync_merged(&channels, &bridges, since_connect, at, &mut self.outputs);
        self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        let ended = self.outputs[earlier..].iter().filter(|o| matches!(o, Output::Event(e) if e.is_ended())).count();
        if ended > 0 {
            match lost_sight {
                Some(lost) => tracing::info!(
                    "resync: {ended} of {open_before} open calls had no live channels left and were ended as of {}, \
                     {} ({:.1} s before this resync)",
                    jiff::Timestamp::from_millisecond(at).map_or_else(|_| at.to_string(), |t| t.to_string()),
                    lost.describe(),
                    (now - at) as f64 / 1000.0
                ),
                None => tracing::info!(
                    "resync: {ended} of {open_before} open calls had no live channels left and were ended as of now"
                ),
            }
        } else {
            tracing::debug!(
                "resync: {} live channels, {} bridges, {open_before} open calls",
                channels.len(),
                bridges.len()
            );
        }
        self.dispatch();
    }

    /// While calls are open and Asterisk is in sight, tells the sink (about once a second, or
    /// now when `force`d) that deskhook is watching: a restart after a crash dates vanished
    /// calls by the last of these.
    fn say_alive(&mut self, force: bool) {
        // Forced only onto a step that is being stored anyway: the same commit carries it.
        let force = force && std::mem::take(&mut self.stored_since_alive);
        let due = self.last_alive_sent.is_none_or(|sent| sent.elapsed() >= ALIVE_EVERY);
        let connected = self.current_generation.load(Ordering::SeqCst) != 0 && self.awaiting_snapshot.is_none();
        if (due || force) && connected && self.engine.open_calls() > 0 {
            self.last_alive_sent = Some(Instant::now());
            self.emit(Output::Effect(Effect::Alive { at: self.clock.now() }));
        }
    }

    /// Hands `output` to the sink task. When that task is gone (it failed: the daemon's
    /// supervisor stops deskhook so systemd restarts it from the stored checkpoints), the
    /// loss is said, once, rather than dropped in silence.
    fn emit(&mut self, output: Output) {
        if !self.sink.send(output) && !std::mem::replace(&mut self.sink_gone, true) {
            tracing::error!("the sink task has stopped: call events are no longer stored; deskhook stops");
        }
    }

    /// Sends what the engine produced: queue questions to their lookups, the rest to the sink.
    fn dispatch(&mut self) {
        self.engine.take_checkpoints(&mut self.outputs);
        if self.outputs.is_empty() {
            return self.note_open_calls();
        }
        // Taken out for the loop (and put back, keeping its capacity): `emit` needs `self`.
        let mut outputs = std::mem::take(&mut self.outputs);
        for output in outputs.drain(..) {
            match output {
                Output::Effect(Effect::QueueMembers { unique_id, channel_id, queue }) => {
                    self.queue_members.request(unique_id, channel_id, queue)
                }
                Output::Effect(Effect::RecordingNames { unique_id, channel_ids }) => spawn_recording_names(
                    self.client.clone(),
                    unique_id,
                    channel_ids,
                    self.recording_dirs.clone(),
                    self.inbound_tx.clone(),
                ),
                output => {
                    if matches!(output, Output::Event(_)) {
                        self.stats.events.fetch_add(1, Ordering::Relaxed);
                        self.meters.events.inc();
                    }
                    self.emit(output);
                }
            }
        }
        self.outputs = outputs;
        self.emit(Output::Effect(Effect::StepDone));
        self.stored_since_alive = true;
        self.note_open_calls();
    }

    fn note_open_calls(&mut self) {
        let open = self.engine.open_calls();
        self.stats.open_calls.store(open as u64, Ordering::Relaxed);
        self.meters.open_calls.set(open as i64);
    }
}

/// Sleeps until `wake`, or forever without one.
async fn sleep_until_some(wake: Option<Instant>) {
    match wake {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

/// Reads `MIXMONITOR_FILENAME` of an adopted call's channels and queues what was found.
fn spawn_recording_names(
    client: AriClient,
    unique_id: String,
    channel_ids: Vec<String>,
    recording_dirs: Arc<Vec<std::path::PathBuf>>,
    answers: mpsc::UnboundedSender<Inbound>,
) {
    tokio::spawn(async move {
        let mut names = Vec::new();
        let mut gone = 0;
        for channel_id in &channel_ids {
            match client.channel_variable(channel_id, "MIXMONITOR_FILENAME").await {
                Ok(name) if !name.is_empty() => {
                    tracing::info!(unique_id, "found MixMonitor recording {name} of a call in progress");
                    names.push(name);
                }
                Ok(_) => {}
                Err(crate::ari::AriError::NotFound { .. }) => gone += 1,
                Err(error) => tracing::warn!(
                    unique_id,
                    "cannot read MIXMONITOR_FILENAME of a call in progress ({error}); a recording started before \
                     deskhook saw the call may not be uploaded"
                ),
            }
        }
        if names.is_empty() && gone == channel_ids.len() && !recording_dirs.is_empty() {
            // Hung up before Asterisk could be asked: the files may still carry the ids.
            let mut ids = channel_ids;
            ids.push(unique_id.clone());
            let found =
                tokio::task::spawn_blocking(move || crate::recordings::by_id::files_naming(&recording_dirs, &ids))
                    .await
                    .unwrap_or_default();
            for name in &found {
                tracing::info!(
                    unique_id,
                    "found MixMonitor recording {name} of a call that ended meanwhile, by its name"
                );
            }
            names = found;
        }
        let _ = answers.send(Inbound::RecordingNames { unique_id, names });
    });
}

/// The engine task's Prometheus metrics.
pub(crate) struct Meters {
    messages: &'static Counter,
    batches: &'static Counter,
    malformed: &'static Counter,
    events: &'static Counter,
    reconnects: &'static Counter,
    connected: &'static Gauge,
    open_calls: &'static Gauge,
}

impl Meters {
    pub(super) fn register() -> Self {
        Self {
            messages: metrics::counter!("deskhook_ari_messages_total", "ARI websocket messages handled by the engine."),
            batches: metrics::counter!("deskhook_engine_batches_total", "Wake-ups of the engine task with ARI input."),
            malformed: metrics::counter!("deskhook_ari_malformed_total", "ARI messages that could not be read."),
            events: metrics::counter!("deskhook_call_events_total", "Helpdesk call events produced."),
            reconnects: metrics::counter!("deskhook_ari_reconnects_total", "ARI websocket reconnects after an outage."),
            connected: metrics::gauge!("deskhook_ari_connected", "1 while the ARI event websocket is connected."),
            open_calls: metrics::gauge!("deskhook_open_calls", "Calls the engine holds open."),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_wakes_the_engine_only_after_the_readers_pause_has_passed_it() {
        let now = Instant::now();
        assert_eq!(wake_for_deadline(now, 250), now + Duration::from_millis(251) + READ_PAUSE);
        // A deadline already passed (the clock ran on meanwhile) is acted on after the pause too,
        // never before it: a message still held in the socket may belong before the deadline.
        assert_eq!(wake_for_deadline(now, -30), now + Duration::from_millis(1) + READ_PAUSE);
    }
}
