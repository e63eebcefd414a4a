//! `deskhook run`: the daemon systemd starts. Logs to stderr (journald), tells systemd when it
//! is ready, pings the watchdog, and exits 0 within 5 s of SIGTERM or SIGINT.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::{redacted_url, Config, RecordingMode};
use crate::daemon::delivery_sink::DeliveryPipeline;
use crate::daemon::{logging, signals, Daemon, DaemonLinks, JsonLinesSink, LogSink, Sink, Systemd, Tee};
use crate::deliver::HELPDESK_SINK;
use crate::forward::{self, ForwardService};
use crate::health::Health;
use crate::presence::Presence;
use crate::recordings::AriRecorder;

/// How long shutdown may take before the process exits anyway (systemd waits longer).
const SHUTDOWN_GRACE: Duration = Duration::from_millis(4_500);
/// Of that, how long the ARI side (reader, engine, sinks) may take.
const DAEMON_GRACE: Duration = Duration::from_millis(2_500);

/// Runs until SIGTERM/SIGINT; returns the exit code. `print_events` also writes every
/// helpdesk event as a SPEC §5 JSON line on stdout.
pub fn run(config: &Config, print_events: bool) -> i32 {
    logging::init("info");
    // One runtime thread: deskhook's tasks are small and mostly wait, and a second worker only
    // added wake-ups taken from Asterisk. The outbox's writer is one of those tasks (a commit
    // only writes the WAL); the ARI reader keeps a thread of its own so Asterisk never waits on
    // deskhook, fsyncs have the syncer's thread, and other SQLite and file work goes to the
    // blocking pool.
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().thread_name("deskhook").build() {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return 1;
        }
    };
    let code = runtime.block_on(serve(config, print_events));
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}

async fn serve(config: &Config, print_events: bool) -> i32 {
    let destinations = config.destinations();
    if config.recordings.mode == RecordingMode::Ari && !destinations.iter().any(|sink| sink.name == HELPDESK_SINK) {
        // Refused, not ignored: recordings must never silently miss the destination configured.
        tracing::error!(
            "config.toml: [recordings] mode: \"ari\" uploads to the [helpdesk] webhook only, and there is none; \
             fix: set [helpdesk] webhook_url, or use mode = \"mixmonitor\" (every sink that takes recordings gets them)"
        );
        return 2;
    }
    let others: Vec<&str> =
        destinations.iter().filter(|sink| sink.name != HELPDESK_SINK).map(|sink| sink.name.as_str()).collect();
    if config.recordings.mode == RecordingMode::Ari && !others.is_empty() {
        tracing::warn!(
            "recordings made through ARI go to the [helpdesk] webhook only, not to sinks {}; use [recordings] \
             mode = \"mixmonitor\" to give them to every sink that takes recordings",
            others.join(", ")
        );
    }
    let _state_lock = match crate::daemon::state_lock::lock(&config.storage.dir) {
        Ok(lock) => lock,
        Err(error) => {
            tracing::error!("{error}");
            return 1;
        }
    };
    let started = tokio::time::Instant::now();
    let zone = config.time_zone();
    let presence = Presence::new();
    let health = Health::new();
    let pipeline = match DeliveryPipeline::open(config) {
        Ok(pipeline) => {
            health.watch_sinks(pipeline.delivery.sink_health());
            health.watch_outbox(pipeline.delivery.commits_failing());
            if let Some(history) = &pipeline.history {
                history.start_copying();
            }
            pipeline
        }
        Err(error) => {
            tracing::error!("cannot start delivery: {error}");
            return 1;
        }
    };
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(LogSink::new(zone.clone())), Box::new(pipeline.sink(&zone))];
    if config.recordings.mode == RecordingMode::Ari {
        match AriRecorder::start(config, pipeline.delivery.clone()) {
            Ok(recorder) => sinks.push(Box::new(recorder)),
            Err(error) => tracing::error!("calls will not be recorded through ARI: {error}"),
        }
    }
    if print_events {
        sinks.push(Box::new(JsonLinesSink::stdout(zone)));
    }
    let forward_shutdown = CancellationToken::new();
    let forward_server = match start_forward(config, &presence, &pipeline, &health, forward_shutdown.clone()).await {
        Ok(server) => server,
        Err(message) => {
            tracing::error!("{message}");
            return 1;
        }
    };
    let facade = match crate::daemon::endpoints_facade::start(config, forward_shutdown.clone()).await {
        Ok(server) => server,
        Err(message) => {
            tracing::error!("{message}");
            return 1;
        }
    };
    let links_server = match start_links(config, &pipeline, forward_shutdown.clone()).await {
        Ok(server) => server,
        Err(message) => {
            tracing::error!("{message}");
            return 1;
        }
    };
    let systemd = Systemd::from_env();
    let watchdog = systemd.watchdog_interval();
    let notifier = systemd.clone();
    let links = DaemonLinks { presence, health, systemd, resume: pipeline.open_calls.clone() };
    let daemon = match Daemon::start(config, Box::new(Tee::new(sinks)), links) {
        Ok(daemon) => daemon,
        Err(error) => {
            tracing::error!("cannot start: {error}");
            return 1;
        }
    };
    tracing::info!(
        "deskhook {} running: ARI at {} (application {:?}), sinks: {}{}",
        env!("CARGO_PKG_VERSION"),
        redacted_url(&config.ari.url),
        config.ari.app,
        destinations
            .iter()
            .map(|sink| match sink.url() {
                "" => format!("{} (not set: events are only logged)", sink.name),
                _ => format!("{} ({} at {})", sink.name, sink.kind(), sink.host()),
            })
            .collect::<Vec<_>>()
            .join(", "),
        watchdog
            .map(|every| format!(", systemd watchdog pinged every {:.1} s", every.as_secs_f64()))
            .unwrap_or_default()
    );
    notifier.ready("started, connecting to ARI");
    let failed = tokio::select! {
        signal = signals::terminated() => {
            tracing::info!("{signal} received, shutting down");
            false
        }
        () = daemon.failed() => true,
    };
    let stopping = tokio::time::Instant::now();
    notifier.stopping();
    forward_shutdown.cancel();
    if !daemon.stop(DAEMON_GRACE).await {
        tracing::warn!("the ARI side took longer than {} s to stop", DAEMON_GRACE.as_secs());
    }
    // Whatever is still in flight stays in the outbox and is sent after the next start.
    let left = SHUTDOWN_GRACE.saturating_sub(stopping.elapsed());
    if tokio::time::timeout(left, pipeline.delivery.shutdown()).await.is_err() {
        tracing::info!("requests still in flight at shutdown stay queued in the outbox");
    }
    for server in forward_server.into_iter().chain(links_server).chain(facade) {
        let _ = tokio::time::timeout(Duration::from_millis(200), server).await;
    }
    // The calls the last events ended are committed before the process goes; copying them to
    // the shared history resumes after the next start.
    if let Some(history) = pipeline.history.clone() {
        let flushed =
            tokio::time::timeout(Duration::from_secs(2), tokio::task::spawn_blocking(move || history.flush()));
        if flushed.await.is_err() {
            tracing::warn!("the call history did not commit its last calls within 2 s; they are not remembered");
        }
    }
    tracing::info!("stopped after {:.1} s of service", started.elapsed().as_secs_f64());
    i32::from(failed)
}

/// Binds `[recordings] public_listen` and serves the recording links until `shutdown`.
async fn start_links(
    config: &Config,
    pipeline: &DeliveryPipeline,
    shutdown: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    let (Some(links), false) = (pipeline.links.clone(), config.recordings.public_listen.is_empty()) else {
        return Ok(None);
    };
    let listen = &config.recordings.public_listen;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|error| {
        format!(
            "config.toml: [recordings] public_listen: cannot listen on {listen}: {error}; pick a free address or \
             remove public_listen and public_base_url to turn recording links off"
        )
    })?;
    if let Some(warning) = crate::recordings::links::exposure_warning(&config.recordings) {
        tracing::warn!("{warning}");
    }
    tracing::info!(
        "recording links on http://{listen} (/recordings/<token> only), handed out as {}/recordings/…",
        config.recordings.public_base_url.trim_end_matches('/')
    );
    let dirs = crate::recordings::AllowedDirs::new(&config.recordings.dirs);
    Ok(Some(tokio::spawn(async move {
        if let Err(error) =
            crate::recordings::links::serve(listener, links, dirs, async move { shutdown.cancelled().await }).await
        {
            tracing::error!("the recording links server stopped: {error}");
        }
    })))
}

/// Binds `forward.listen` and serves `/forward`, `/healthz` and `/metrics` until `shutdown`.
async fn start_forward(
    config: &Config,
    presence: &Presence,
    pipeline: &DeliveryPipeline,
    health: &Health,
    shutdown: CancellationToken,
) -> Result<Option<tokio::task::JoinHandle<()>>, String> {
    if config.forward.listen.is_empty() {
        return Ok(None);
    }
    let service = ForwardService::new(config, presence.clone(), pipeline.history.clone(), health.clone())
        .map_err(|error| format!("cannot start /forward: {error}"))?;
    let listener = tokio::net::TcpListener::bind(&config.forward.listen).await.map_err(|error| {
        format!(
            "config.toml: [forward] listen: cannot listen on {}: {error}; pick a free address or set listen = \"\" to turn /forward off",
            config.forward.listen
        )
    })?;
    // Checked by the config's validation already.
    let allow = crate::config::allow::AllowList::parse(&config.forward.allow).unwrap_or_default();
    if let Some(warning) = crate::config::allow::exposure_warning(&config.forward.listen, &allow) {
        tracing::warn!("{warning}");
    }
    tracing::info!("/forward, /healthz and /metrics on http://{}", config.forward.listen);
    Ok(Some(tokio::spawn(async move {
        if let Err(error) = forward::serve(listener, service, allow, async move { shutdown.cancelled().await }).await {
            tracing::error!("/forward server stopped: {error}");
        }
    })))
}
