//! `deskhook run`: the daemon systemd starts. Logs to stderr (journald), tells systemd when it
//! is ready, pings the watchdog, and exits 0 within 5 s of SIGTERM or SIGINT.

use std::time::Duration;

use crate::config::{redacted_url, Config};
use crate::daemon::{logging, signals, Daemon, DaemonLinks, JsonLinesSink, LogSink, Sink, Systemd, Tee};
use crate::health::Health;
use crate::presence::Presence;

/// How long shutdown may take before the process exits anyway (systemd waits longer).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(4);

/// Runs until SIGTERM/SIGINT; returns the exit code. `print_events` also writes every
/// helpdesk event as a SPEC §5 JSON line on stdout.
pub fn run(config: &Config, print_events: bool) -> i32 {
    logging::init("info");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("deskhook").build() {
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
    let zone = config.time_zone();
    let mut sinks: Vec<Box<dyn Sink>> = vec![Box::new(LogSink::new(zone.clone()))];
    if print_events {
        sinks.push(Box::new(JsonLinesSink::stdout(zone)));
    }
    let systemd = Systemd::from_env();
    let watchdog = systemd.watchdog_interval();
    let notifier = systemd.clone();
    let links = DaemonLinks { presence: Presence::new(), health: Health::new(), systemd };
    let daemon = match Daemon::start(config, Box::new(Tee::new(sinks)), links) {
        Ok(daemon) => daemon,
        Err(error) => {
            tracing::error!("cannot start: {error}");
            return 1;
        }
    };
    tracing::info!(
        "deskhook {} running: ARI at {} (application {:?}){}",
        env!("CARGO_PKG_VERSION"),
        redacted_url(&config.ari.url),
        config.ari.app,
        watchdog
            .map(|every| format!(", systemd watchdog pinged every {:.1} s", every.as_secs_f64()))
            .unwrap_or_default()
    );
    notifier.ready("started, connecting to ARI");
    let signal = signals::terminated().await;
    tracing::info!("{signal} received, shutting down");
    notifier.stopping();
    if !daemon.stop(SHUTDOWN_GRACE).await {
        tracing::warn!("shutdown took longer than {} s; exiting anyway", SHUTDOWN_GRACE.as_secs());
    }
    tracing::info!("stopped");
    0
}
