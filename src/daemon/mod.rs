//! The live daemon: ARI in, call engine in the middle, a [`Sink`] out.
//!
//! Three parts, each with one job:
//! - the **reader** (`ari::websocket`, its own thread) drains the event websocket into a
//!   queue bounded by `[ari] max_backlog` (past it: close, catch up, reconnect, resync),
//!   reconnecting with backoff;
//! - the **engine task** (`engine_task`) parses what is queued, feeds [`crate::calls::Engine`],
//!   resyncs after each connect from REST (`/channels`, `/bridges`; events arriving until that
//!   snapshot is complete are held back, merged with it by what each knows, and handled after
//!   it, so a snapshot never undoes newer events nor replaces a channel's own story), keeps
//!   [`crate::presence::Presence`] current, asks ARI for queue members, and sleeps until the
//!   engine's next deadline (a queue's ring round) or a heartbeat is due, never on a fixed tick;
//! - the **sink task** ([`sink`]) hands every output, in order, to the configured sink; when
//!   `max_backlog` outputs wait for it, the engine stops taking ARI input until it catches up.
//!
//! `deskhook run`, `deskhook demo`, the tests and the `ws_ingest` bench all start it with
//! [`Daemon::start`].

mod clock;
pub(crate) mod delivery_sink;
pub(crate) mod endpoints_facade;
mod engine_task;
mod event_filter;
pub(crate) mod logging;
mod queue_members;
pub(crate) mod resync;
pub(crate) mod signals;
pub(crate) mod sink;
pub(crate) mod state_lock;
pub(crate) mod systemd;

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ari::websocket::{spawn_event_stream, EventStreamSettings, ReaderStats, SocketEvent};
use crate::ari::{AriClient, AriError, EventParser};
use crate::calls::{Engine, EngineSettings};
use crate::config::Config;
use crate::health::Health;
use crate::presence::Presence;

pub(crate) use clock::EventClock;
pub use sink::{spawn_sink, JsonLinesSink, LogSink, MappedLinesSink, Sink, SinkFuture, SinkQueue, Tee};
pub(crate) use systemd::Systemd;

/// The engine's settings from a validated config; `live` says whether a shell (the daemon) can
/// answer its questions about queue members.
pub fn engine_settings(config: &Config, live: bool) -> Result<EngineSettings, regex::Error> {
    Ok(EngineSettings {
        classifier: crate::calls::Classifier::new(&config.pbx.extension_pattern, &config.pbx.trunks)?,
        static_queues: config.pbx.queues.clone(),
        ask_shell_for_queue_members: live,
        queue_ring_round_ms: i64::try_from(config.pbx.queue_ring_round_ms).unwrap_or(i64::MAX),
        report_mixmonitor_files: config.recordings.mode == crate::config::RecordingMode::Mixmonitor,
    })
}

/// What the engine task takes in, in order.
#[derive(Debug)]
pub(crate) enum Inbound {
    Socket(SocketEvent),
    /// REST state read after connection `generation` came up.
    Resynced {
        generation: u64,
        snapshot: Box<resync::Snapshot>,
        /// The resync marker was posted: events are held until it comes back.
        marker_posted: bool,
    },
    /// The MixMonitor files found on an adopted call's channels.
    RecordingNames {
        unique_id: String,
        names: Vec<String>,
    },
    /// The answer to a queue-member lookup.
    QueueMembers {
        unique_id: String,
        queue: String,
        members: Option<Vec<String>>,
    },
}

/// Counters the daemon keeps while it runs (for the demo, tests and benches).
#[derive(Debug, Default)]
pub struct LiveStats {
    /// The reader's own measurements (connections, messages, longest busy/gap).
    pub reader: Arc<ReaderStats>,
    /// ARI messages the engine task has handled.
    pub processed: AtomicU64,
    pub malformed: AtomicU64,
    /// Helpdesk events produced.
    pub events: AtomicU64,
    pub open_calls: AtomicU64,
    /// Resync snapshots applied (one per successful connect).
    pub resyncs: AtomicU64,
}

/// Why the daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("config.toml: [pbx] extension_pattern: {0}")]
    ExtensionPattern(#[from] regex::Error),
    #[error(transparent)]
    Ari(#[from] AriError),
    #[error("cannot start the ARI reader thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// What the daemon shares with the rest of deskhook: endpoint states and health flags (both
/// read by the `/forward` server), and the systemd notifier it pings the watchdog through.
#[derive(Debug, Clone)]
pub struct DaemonLinks {
    pub presence: Presence,
    pub health: Health,
    pub systemd: Systemd,
    /// Calls a previous run announced and never closed: taken back at start, ended at the
    /// first resync if their channels are gone.
    pub resume: crate::deliver::OpenCalls,
}

impl Default for DaemonLinks {
    fn default() -> Self {
        Self {
            presence: Presence::new(),
            health: Health::new(),
            systemd: Systemd::disabled(),
            resume: crate::deliver::OpenCalls::default(),
        }
    }
}

/// How often the storage directory is probed for `/healthz`.
const STORAGE_PROBE_EVERY: Duration = Duration::from_secs(30);

/// A running daemon.
pub struct Daemon {
    stats: Arc<LiveStats>,
    shutdown: CancellationToken,
    /// Cancelled when the engine or the sink task ended before a shutdown asked them to.
    failed: CancellationToken,
    reader: Option<std::thread::JoinHandle<()>>,
    engine: JoinHandle<()>,
    sink: JoinHandle<()>,
}

impl Daemon {
    /// Starts the reader, the engine task, the sink task and the storage health probe. Call
    /// inside a multi-threaded tokio runtime.
    pub fn start(config: &Config, sink: Box<dyn Sink>, links: DaemonLinks) -> Result<Daemon, DaemonError> {
        let DaemonLinks { presence, health, systemd, resume } = links;
        let settings = engine_settings(config, true)?;
        let event_filter = event_filter::EventFilter::for_engine(&settings);
        let mut engine = Engine::new(settings);
        let lost_sight = engine_task::resume(&mut engine, resume);
        let client = AriClient::new(&config.ari)?;
        let stream_settings = EventStreamSettings::from_config(&config.ari)?;
        let stats = Arc::new(LiveStats::default());
        let shutdown = CancellationToken::new();
        // Bounded by the reader's `[ari] max_backlog` (past it: close, catch up, resync); the
        // rest are one answer per question the engine task itself asked.
        let (inbound_tx, inbound_rx) = mpsc::unbounded_channel::<Inbound>();
        let (sink_tx, sink_task) = spawn_sink(sink, config.ari.max_backlog);
        let task = engine_task::EngineTask {
            engine,
            parser: EventParser::live(crate::calls::VARIABLES_READ),
            clock: EventClock::new(),
            queue_members: queue_members::QueueMemberLookup::new(client.clone(), inbound_tx.clone()),
            client,
            app: config.ari.app.clone(),
            event_filter,
            presence,
            health: health.clone(),
            sink: sink_tx,
            inbound_tx: inbound_tx.clone(),
            current_generation: Arc::new(AtomicU64::new(0)),
            stats: stats.clone(),
            systemd,
            last_startup_time: None,
            last_endpoint_summary: None,
            warned_old_asterisk: false,
            outputs: Vec::new(),
            meters: engine_task::Meters::register(),
            awaiting_snapshot: None,
            lost_sight,
            last_alive_sent: None,
            stored_since_alive: false,
            sink_gone: false,
            recording_dirs: Arc::new(match config.recordings.mode {
                crate::config::RecordingMode::Mixmonitor => config.recordings.dirs.clone(),
                _ => Vec::new(),
            }),
        };
        let failed = CancellationToken::new();
        let engine =
            supervise("the engine task", tokio::spawn(task.run(inbound_rx, shutdown.clone())), &shutdown, &failed);
        let sink_task = supervise("the sink task", sink_task, &shutdown, &failed);
        tokio::spawn(probe_storage_periodically(config.storage.dir.clone(), health, shutdown.clone()));
        let reader_tx = inbound_tx;
        let reader = spawn_event_stream(
            stream_settings,
            move |event| reader_tx.send(Inbound::Socket(event)).is_ok(),
            shutdown.clone(),
            stats.reader.clone(),
        )?;
        Ok(Daemon { stats, shutdown, failed, reader: Some(reader), engine, sink: sink_task })
    }

    /// Resolves when a part of the daemon stopped by itself (a panic, a sink gone): events can
    /// no longer be stored, so the caller should stop and exit non-zero — systemd restarts
    /// deskhook, which resumes from the outbox's checkpoints as after any crash.
    pub async fn failed(&self) {
        self.failed.cancelled().await;
    }

    /// Whether [`Daemon::failed`] has resolved.
    pub fn has_failed(&self) -> bool {
        self.failed.is_cancelled()
    }

    pub fn stats(&self) -> Arc<LiveStats> {
        self.stats.clone()
    }

    /// Stops: closes the websocket, lets the engine finish what was already read, drains the
    /// sink. Returns false when something was still running after `grace`.
    pub async fn stop(mut self, grace: Duration) -> bool {
        self.shutdown.cancel();
        let deadline = Instant::now() + grace;
        let mut clean = true;
        if let Some(reader) = self.reader.take() {
            while !reader.is_finished() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            clean &= reader.is_finished();
        }
        let left = deadline.saturating_duration_since(Instant::now());
        clean &= tokio::time::timeout(left, &mut self.engine).await.is_ok();
        let left = deadline.saturating_duration_since(Instant::now());
        clean &= tokio::time::timeout(left, &mut self.sink).await.is_ok();
        clean
    }
}

/// Watches `task`: when it ends before `shutdown` (it panicked, or its input or output is
/// gone), says so and cancels `failed`.
fn supervise(
    name: &'static str,
    task: JoinHandle<()>,
    shutdown: &CancellationToken,
    failed: &CancellationToken,
) -> JoinHandle<()> {
    let (shutdown, failed) = (shutdown.clone(), failed.clone());
    tokio::spawn(async move {
        let ended = task.await;
        if shutdown.is_cancelled() && ended.is_ok() {
            return;
        }
        match ended {
            Err(error) if error.is_panic() => {
                let panic = error.into_panic();
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|text| text.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(
                    "{name} failed ({message}); deskhook stops so that it is restarted from its checkpoints"
                )
            }
            _ => tracing::error!(
                "{name} stopped unexpectedly; deskhook stops so that it is restarted from its checkpoints"
            ),
        }
        failed.cancel();
    })
}

/// Keeps the health flag "storage writable" current, off the async workers.
async fn probe_storage_periodically(dir: std::path::PathBuf, health: Health, shutdown: CancellationToken) {
    let mut warned = false;
    loop {
        let probed = dir.clone();
        let result = tokio::task::spawn_blocking(move || crate::health::probe_storage(&probed)).await;
        let writable = matches!(result, Ok(Ok(())));
        if !writable && !warned {
            let reason = match result {
                Ok(Err(error)) => error.to_string(),
                _ => "the probe did not finish".into(),
            };
            tracing::warn!(
                "storage directory {} is not writable ({reason}); fix: make it owned by deskhook's user \
                 (systemd's StateDirectory=deskhook does)",
                dir.display()
            );
        }
        warned = !writable;
        health.set_storage_writable(writable);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(STORAGE_PROBE_EVERY) => {}
        }
    }
}
