//! `deskhook demo [--webhook URL]`: the whole pipeline on a fresh machine, no Asterisk needed.
//! Starts the built-in fake ARI on loopback, runs the daemon against it with the lab PBX's
//! settings, replays the bundled real calls faster than they happened, and prints each helpdesk
//! event (SPEC §5 JSON lines on stdout; narration on stderr). With `--sink KIND` it prints
//! instead what a sink of that kind would send (the signed JSON call summaries, Zammad's CTI
//! events). With `--webhook` the events are also delivered to that URL through the durable
//! outbox, exactly as `run` delivers them.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config::{redacted_url, Config, RecordingMode};
use crate::daemon::delivery_sink::DeliveryPipeline;
use crate::daemon::{logging, Daemon, DaemonLinks, JsonLinesSink, LiveStats, MappedLinesSink, Sink, Tee};
use fake_ari::bundled::{BUNDLED_CALLS, LAB_CONFIG};
use fake_ari::{FakeAri, FakeAriOptions, FakeTrace, Pace};

/// How much faster than recorded the calls are replayed (75 s of calls in about 15 s).
pub(crate) const DEMO_SPEEDUP: f64 = 5.0;

/// The sink `--sink KIND` shows: the json kind as call summaries, Zammad with no user names,
/// the CRMs with 101 and 102 mapped to users (103 left to `user.get`).
fn demo_sink(kind: &str) -> Result<crate::config::SinkConfig, String> {
    let keys = match kind {
        "json" => "url = \"https://example.org/hooks/calls\"\nevents = [\"summary\"]\nrecordings = \"none\"",
        "zammad" => "url = \"https://zammad.example.org/api/v1/cti/TOKEN\"",
        "omnidesk" => "webhook_url = \"https://company.omnidesk.ru/webhooks/asterisk/TOKEN\"",
        "bitrix24" => "webhook_url = \"https://portal.bitrix24.ru/rest/1/TOKEN/\"\nusers = { \"101\" = \"11\", \"102\" = \"12\" }",
        "amocrm" => "base_url = \"https://company.amocrm.ru\"\ntoken = \"TOKEN\"\nusers = { \"5101\" = \"101\", \"5102\" = \"102\" }",
        other => {
            return Err(format!(
                "--sink {other:?} is not a kind of sink, expected json, zammad, omnidesk, bitrix24 or amocrm"
            ))
        }
    };
    let text = format!("[[sinks]]\nname = \"{kind}\"\nkind = \"{kind}\"\n{keys}\n");
    let config = Config::from_toml(&text, "demo").map_err(|error| error.to_string())?;
    config.sinks.into_iter().next().ok_or_else(|| "no sink".to_string())
}

/// Runs the demo; returns the exit code.
pub fn demo(webhook: Option<&str>, sink: Option<&str>, speedup: f64) -> i32 {
    logging::init(if webhook.is_some() { "warn,deskhook::daemon::sink=info" } else { "warn" });
    if let Some(url) = webhook {
        if !(url.starts_with("https://") || url.starts_with("http://")) || url::Url::parse(url).is_err() {
            eprintln!("deskhook demo: --webhook {:?} is not an http(s):// URL", redacted_url(url));
            return 2;
        }
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("deskhook demo: cannot start the async runtime: {error}");
            return 1;
        }
    };
    let shown = match sink.map(demo_sink).transpose() {
        Ok(shown) => shown,
        Err(error) => {
            eprintln!("deskhook demo: {error}");
            return 2;
        }
    };
    let speedup = if speedup.is_finite() && speedup > 0.0 { speedup } else { DEMO_SPEEDUP };
    let code = runtime.block_on(run_demo(webhook, shown, speedup));
    runtime.shutdown_timeout(Duration::from_millis(500));
    code
}

async fn run_demo(webhook: Option<&str>, shown: Option<crate::config::SinkConfig>, speedup: f64) -> i32 {
    let password = match random_password() {
        Ok(password) => password,
        Err(error) => {
            eprintln!("deskhook demo: cannot read /dev/urandom for the simulated Asterisk's password: {error}");
            return 1;
        }
    };
    let fake = match FakeAri::start(FakeAriOptions::lab("deskhook", &password)).await {
        Ok(fake) => fake,
        Err(error) => {
            eprintln!("deskhook demo: cannot start the simulated Asterisk on 127.0.0.1: {error}");
            return 1;
        }
    };
    let mut config = match Config::from_toml(LAB_CONFIG, "lab.toml") {
        Ok(config) => config,
        Err(error) => {
            eprintln!("deskhook demo: {error}");
            return 1;
        }
    };
    config.ari.url = fake.url();
    config.ari.username = "deskhook".into();
    config.ari.password = crate::secret::Secret::new(password);
    config.ari.app = "deskhook-demo".into();
    // Nothing the demo keeps outlives it.
    let scratch = std::env::temp_dir().join(format!("deskhook-demo-{}", std::process::id()));
    if let Err(error) = std::fs::create_dir_all(&scratch) {
        eprintln!("deskhook demo: cannot create {}: {error}", scratch.display());
        return 1;
    }
    let _cleanup = RemoveOnDrop(scratch.clone());
    config.storage.dir = scratch;
    let zone = config.time_zone();
    let printed: Box<dyn Sink> = match &shown {
        Some(sink) => Box::new(MappedLinesSink::new(std::io::stdout(), sink, &zone)),
        None => Box::new(JsonLinesSink::stdout(zone.clone())),
    };
    let mut sinks: Vec<Box<dyn Sink>> = vec![printed];
    // With --webhook the events take the real road: the durable outbox and its sender.
    let pipeline = match webhook {
        Some(url) => {
            let mut delivering = config.clone();
            delivering.helpdesk.webhook_url = url.to_string();
            // The bundled calls' recordings live on the lab PBX, not here.
            delivering.recordings.mode = RecordingMode::Off;
            match DeliveryPipeline::open(&delivering) {
                Ok(pipeline) => {
                    sinks.push(Box::new(pipeline.sink(&zone)));
                    Some(pipeline)
                }
                Err(error) => {
                    eprintln!("deskhook demo: {error}");
                    return 1;
                }
            }
        }
        None => None,
    };
    let daemon = match Daemon::start(&config, Box::new(Tee::new(sinks)), DaemonLinks::default()) {
        Ok(daemon) => daemon,
        Err(error) => {
            eprintln!("deskhook demo: {error}");
            return 1;
        }
    };
    if fake.wait_for(Duration::from_secs(10), |status| status.ready).await.is_err() {
        eprintln!("deskhook demo: the daemon did not connect to the simulated Asterisk");
        daemon.stop(Duration::from_secs(2)).await;
        return 1;
    }
    let stats = daemon.stats();
    let destination = webhook
        .map(|url| {
            format!(
                " and sent to {} (but the \"record\" lines: those recordings are on the lab PBX, not here, so \
                 nothing is uploaded)",
                redacted_url(url)
            )
        })
        .unwrap_or_default();
    eprintln!(
        "deskhook demo: replaying {} real calls recorded on a lab Asterisk 22 ({}x faster than they happened).\n\
         Each JSON line is {}{destination}.",
        BUNDLED_CALLS.len(),
        speedup,
        match &shown {
            Some(sink) => format!("a request a {} sink would make", sink.kind()),
            None => "a helpdesk event deskhook would send".to_string(),
        }
    );
    let mut sent = 0u64;
    for (number, call) in BUNDLED_CALLS.iter().enumerate() {
        let trace = match FakeTrace::parse(call.trace) {
            Ok(trace) => trace,
            Err(error) => {
                eprintln!("deskhook demo: bundled call {} is damaged: {error}", call.name);
                continue;
            }
        };
        eprintln!("\n# call {}/{}: {}", number + 1, BUNDLED_CALLS.len(), call.summary);
        let report = fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup }).await;
        sent += report.sent as u64;
        settle(&stats, sent, Duration::from_secs(5)).await;
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while stats.open_calls.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.stop(Duration::from_secs(4)).await;
    fake.shutdown();
    if let Some(pipeline) = pipeline {
        let deadline = Instant::now() + Duration::from_secs(15);
        while pipeline.delivery.counts().pending > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let counts = pipeline.delivery.counts();
        eprintln!(
            "deskhook demo: the webhook accepted {} requests{}",
            counts.delivered,
            if counts.pending + counts.dead > 0 {
                format!("; {} still pending and {} refused (see the warnings above)", counts.pending, counts.dead)
            } else {
                String::new()
            }
        );
        pipeline.delivery.shutdown().await;
        if counts.delivered == 0 || counts.pending + counts.dead > 0 {
            eprintln!(
                "deskhook demo: the webhook did not take every event; `deskhook check` with it as [helpdesk] \
                 webhook_url says why"
            );
            return 1;
        }
    }
    eprintln!(
        "\ndeskhook demo: done: {} helpdesk events from {} calls. Next: `deskhook check` against your PBX.",
        stats.events.load(Ordering::Relaxed),
        BUNDLED_CALLS.len()
    );
    0
}

/// Waits until the engine has handled every message sent so far and its outputs had a moment to print.
async fn settle(stats: &LiveStats, sent: u64, limit: Duration) {
    let deadline = Instant::now() + limit;
    while stats.processed.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
}

/// A fresh password for the simulated Asterisk (it listens on loopback for the demo's lifetime).
fn random_password() -> std::io::Result<String> {
    use base64::Engine as _;
    use std::io::Read as _;
    let mut bytes = [0u8; 18];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

/// Removes the demo's scratch directory however the demo ends.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
