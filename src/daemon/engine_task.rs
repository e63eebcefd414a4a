//! The task that owns the call engine: it parses queued ARI messages, feeds the engine, lets
//! event time pass every 200 ms, applies resync snapshots, routes queue-member questions to
//! their lookups and everything else to the sink. It is also where the systemd watchdog is
//! pinged, so a wedged engine gets the daemon restarted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::ari::client::subscribe_all_supported;
use crate::ari::websocket::{MessageText, SocketEvent};
use crate::ari::{AriClient, AriEvent, EventParser};
use crate::calls::{Effect, Engine, Output};
use crate::health::Health;
use crate::metrics::{self, Counter, Gauge};
use crate::presence::Presence;

use super::clock::EventClock;
use super::queue_members::QueueMemberLookup;
use super::resync::{spawn_resync, EndpointClasses, Snapshot};
use super::systemd::Systemd;
use super::{Inbound, LiveStats};

/// How often event time is advanced without events.
const TICK: Duration = Duration::from_millis(200);
/// Inbound items taken per wake-up.
const BATCH: usize = 512;
/// On shutdown, how long the engine may keep working through what was already read.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// How long events are held back waiting for the snapshot after a connect.
const SNAPSHOT_PATIENCE: Duration = Duration::from_secs(30);
/// How many events are held back at most waiting for the snapshot.
const HELD_LIMIT: usize = 200_000;

/// Events that arrived on a new connection before ARI's channel list did. The snapshot was
/// taken after they started flowing, so it is applied first and they are handled after it:
/// applying an older snapshot after newer events would end calls that just started.
pub(crate) struct HeldEvents {
    generation: u64,
    since: Instant,
    messages: Vec<MessageText>,
}

pub(crate) struct EngineTask {
    pub engine: Engine,
    pub parser: EventParser,
    pub clock: EventClock,
    pub client: AriClient,
    pub presence: Presence,
    pub health: Health,
    pub sink: mpsc::UnboundedSender<Output>,
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
}

impl EngineTask {
    pub async fn run(mut self, mut inbound: mpsc::UnboundedReceiver<Inbound>, shutdown: CancellationToken) {
        let mut ticks = tokio::time::interval(TICK);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut batch = Vec::with_capacity(BATCH);
        loop {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                received = inbound.recv_many(&mut batch, BATCH) => {
                    if received == 0 {
                        break;
                    }
                    self.meters.batches.inc();
                    for item in batch.drain(..) {
                        self.on_inbound(item);
                    }
                    self.dispatch();
                }
                _ = ticks.tick() => {
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
        // The reader is closing the socket: whatever it still queues, ARI is no longer watched.
        self.health.set_ari_connected(false);
        self.meters.connected.set(0);
    }

    fn on_tick(&mut self) {
        if self.awaiting_snapshot.as_ref().is_some_and(|held| held.since.elapsed() >= SNAPSHOT_PATIENCE) {
            tracing::warn!(
                "ARI's channel list did not arrive within {} s of connecting; handling the events received \
                 meanwhile without it",
                SNAPSHOT_PATIENCE.as_secs()
            );
            self.release_held();
        }
        if self.clock.is_running() {
            self.engine.advance_to(self.clock.now(), &mut self.outputs);
            self.dispatch();
        }
        self.systemd.watchdog_tick();
    }

    fn on_inbound(&mut self, item: Inbound) {
        match item {
            Inbound::Socket(SocketEvent::Message(text)) => match &mut self.awaiting_snapshot {
                Some(held) if held.messages.len() < HELD_LIMIT => held.messages.push(text),
                Some(_) => {
                    tracing::warn!("too many events while waiting for ARI's channel list; handling them without it");
                    self.release_held();
                    self.on_message(&text);
                }
                None => self.on_message(&text),
            },
            Inbound::Socket(SocketEvent::Connected { generation, outage }) => {
                self.release_held();
                self.awaiting_snapshot = Some(HeldEvents { generation, since: Instant::now(), messages: Vec::new() });
                self.current_generation.store(generation, Ordering::SeqCst);
                self.meters.connected.set(1);
                self.health.set_ari_connected(true);
                if outage.is_some() {
                    self.meters.reconnects.inc();
                }
                self.systemd.status("connected to ARI");
                spawn_resync(self.client.clone(), generation, self.current_generation.clone(), self.inbound_tx.clone());
            }
            Inbound::Socket(SocketEvent::Disconnected { generation }) => {
                self.release_held();
                let _ = self.current_generation.compare_exchange(generation, 0, Ordering::SeqCst, Ordering::SeqCst);
                self.meters.connected.set(0);
                self.health.set_ari_connected(false);
                self.systemd.status("ARI unreachable, reconnecting");
            }
            Inbound::Resynced { generation, snapshot } => {
                let awaited = self.awaiting_snapshot.as_ref().is_some_and(|held| held.generation == generation);
                if awaited && self.current_generation.load(Ordering::SeqCst) == generation {
                    self.apply_snapshot(*snapshot);
                    self.release_held();
                }
            }
            Inbound::QueueMembers { unique_id, queue, members } => {
                let at = self.clock.now();
                self.engine.provide_queue_members(&unique_id, &queue, members, at, &mut self.outputs);
            }
        }
    }

    /// Handles the events held back while waiting for the snapshot, after it (or without it).
    fn release_held(&mut self) {
        if let Some(held) = self.awaiting_snapshot.take() {
            for text in &held.messages {
                self.on_message(text);
            }
        }
    }

    fn on_message(&mut self, text: &MessageText) {
        self.stats.processed.fetch_add(1, Ordering::Relaxed);
        self.meters.messages.inc();
        match self.parser.parse(text) {
            Ok(event) => {
                match &event.event {
                    AriEvent::EndpointStateChange { endpoint } => {
                        self.presence.set(&endpoint.resource, &endpoint.state)
                    }
                    // Handled by the reader (it reconnects); carries no useful time.
                    AriEvent::ApplicationReplaced { .. } => return,
                    _ => {}
                }
                self.clock.observe(event.at);
                self.engine.handle(&event, &mut self.outputs);
            }
            Err(error) => {
                let malformed = self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                self.meters.malformed.inc();
                if malformed < 10 {
                    tracing::warn!("skipped an ARI message deskhook cannot read: {error}");
                } else {
                    tracing::debug!("skipped an unreadable ARI message: {error}");
                }
            }
        }
    }

    fn apply_snapshot(&mut self, snapshot: Snapshot) {
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
        let at = self.clock.now();
        let earlier = self.outputs.len();
        self.engine.resync(&channels, &bridges, at, &mut self.outputs);
        self.stats.resyncs.fetch_add(1, Ordering::Relaxed);
        let ended =
            self.outputs[earlier..].iter().filter(|o| matches!(o, Output::Event(e) if e.status.is_ended())).count();
        if ended > 0 {
            tracing::info!(
                "resync: {ended} of {open_before} open calls had no live channels left and were ended as of now"
            );
        } else {
            tracing::debug!(
                "resync: {} live channels, {} bridges, {open_before} open calls",
                channels.len(),
                bridges.len()
            );
        }
        self.dispatch();
    }

    /// Sends what the engine produced: queue questions to their lookups, the rest to the sink.
    fn dispatch(&mut self) {
        for output in self.outputs.drain(..) {
            match output {
                Output::Effect(Effect::QueueMembers { unique_id, channel_id, queue }) => {
                    self.queue_members.request(unique_id, channel_id, queue)
                }
                output => {
                    if matches!(output, Output::Event(_)) {
                        self.stats.events.fetch_add(1, Ordering::Relaxed);
                        self.meters.events.inc();
                    }
                    let _ = self.sink.send(output);
                }
            }
        }
        let open = self.engine.open_calls();
        self.stats.open_calls.store(open as u64, Ordering::Relaxed);
        self.meters.open_calls.set(open as i64);
    }
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
    pub fn register() -> Self {
        Self {
            messages: metrics::counter("deskhook_ari_messages_total", "ARI websocket messages handled by the engine."),
            batches: metrics::counter("deskhook_engine_batches_total", "Wake-ups of the engine task with ARI input."),
            malformed: metrics::counter("deskhook_ari_malformed_total", "ARI messages that could not be read."),
            events: metrics::counter("deskhook_call_events_total", "Helpdesk call events produced."),
            reconnects: metrics::counter("deskhook_ari_reconnects_total", "ARI websocket reconnects after an outage."),
            connected: metrics::gauge("deskhook_ari_connected", "1 while the ARI event websocket is connected."),
            open_calls: metrics::gauge("deskhook_open_calls", "Calls the engine holds open."),
        }
    }
}
