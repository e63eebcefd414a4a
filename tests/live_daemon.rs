//! The daemon in-process against the fake ARI: what it shares with the rest of deskhook
//! (endpoint presence for `/forward`, health flags for `/healthz`) and the queue-member cache.

mod live_support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deskhook::calls::{CallEvent, Happened, Output};
use deskhook::config::Config;
use deskhook::daemon::{Daemon, DaemonLinks, Sink, SinkFuture};
use fake_ari::{FakeTrace, Pace};
use live_support::*;

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn endpoint_state_change(resource: &str, state: &str) -> FakeTrace {
    let line = serde_json::json!({
        "type": "EndpointStateChange",
        "timestamp": "2026-11-21T05:00:00.000+0000",
        "endpoint": {"technology": "PJSIP", "resource": resource, "state": state, "channel_ids": []},
        "application": "deskhook-test",
    });
    FakeTrace::parse(&line.to_string()).expect("valid")
}

fn config_for(fake_url: &str, dir: &std::path::Path) -> Config {
    Config::load(&write_config(dir, fake_url, PASSWORD, "")).expect("config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_and_health_follow_ari() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let links = DaemonLinks::default();
    let (presence, health) = (links.presence.clone(), links.health.clone());
    let daemon =
        Daemon::start(&config_for(&fake.url(), dir.path()), Box::new(Collect::default()), links).expect("starts");
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connects");
    eventually("endpoints listed into presence", || presence.state("101").as_deref() == Some("online")).await;
    eventually("storage probed", || health.storage_writable()).await;
    assert!(health.ari_connected());

    fake.play(&endpoint_state_change("102", "offline"), 0..1, Pace::MaxSpeed).await;
    eventually("102 reported offline", || presence.is_unavailable("102")).await;
    assert!(!presence.is_unavailable("101"));

    fake.restart(Duration::from_secs(1)).await;
    eventually("the daemon reconnected after the restart", || {
        daemon.stats().reader.connections.load(Ordering::Relaxed) >= 2
    })
    .await;
    // After the restart the endpoint list is read again: 102 is online once more.
    eventually("presence refreshed from /endpoints", || presence.state("102").as_deref() == Some("online")).await;
    assert!(health.ari_connected());
    assert!(daemon.stop(Duration::from_secs(4)).await, "stopped in time");
    assert!(!health.ari_connected(), "a stopped daemon is not connected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_members_are_read_once_and_cached() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let sink = Collect::default();
    let outputs = sink.0.clone();
    let daemon =
        Daemon::start(&config_for(&fake.url(), dir.path()), Box::new(sink), DaemonLinks::default()).expect("starts");
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connects");
    // Two calls to queue `support`, with different channels.
    for name in ["04-in-queue-answered-by-102", "05-in-queue-noanswer-callerhangup"] {
        let trace = trace(name);
        fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup: 20.0 }).await;
    }
    let queue_events = || {
        outputs
            .lock()
            .expect("not poisoned")
            .iter()
            .filter_map(|o| match o {
                Output::Event(CallEvent { what: Happened::Ringing { extensions, queue: Some(queue) }, .. })
                    if queue == "support" =>
                {
                    Some(extensions.join(","))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    eventually("both queue events", || queue_events().len() == 2).await;
    assert_eq!(queue_events(), ["101,102,103", "101,102,103"]);
    let lookups: u64 =
        fake.status().requests.iter().filter(|(key, _)| key.ends_with("/variable")).map(|(_, count)| count).sum();
    assert_eq!(lookups, 1, "the second call used the cached member list: {:?}", fake.status().requests);
    daemon.stop(Duration::from_secs(4)).await;
}

/// A sink that takes nothing until it is opened, then keeps every output.
#[derive(Clone)]
struct Gate {
    open: tokio::sync::watch::Receiver<bool>,
    kept: Arc<Mutex<Vec<Output>>>,
}

impl Sink for Gate {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        Box::pin(async move {
            while !*self.open.borrow_and_update() {
                if self.open.changed().await.is_err() {
                    return;
                }
            }
            self.kept.lock().expect("not poisoned").push(output.clone());
        })
    }
}

/// `[ari] max_backlog`: a sink that stops taking outputs holds the engine back, the reader's
/// queue fills to its limit and no further; the reader closes the socket itself (never making
/// Asterisk wait), and once the sink moves again it reconnects and resyncs, so every call that
/// was announced still ends exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_sink_overflows_the_bounded_intake_into_a_resync_and_loses_no_end() {
    let mut options = fake_ari::FakeAriOptions::lab("deskhook", PASSWORD);
    options.hold_events_while_disconnected = false;
    let fake = fake_ari::FakeAri::start(options).await.expect("fake");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config::load(&write_config(dir.path(), &fake.url(), PASSWORD, "max_backlog = 50\n")).expect("config");
    let (open, gate) = tokio::sync::watch::channel(false);
    let kept = Arc::new(Mutex::new(Vec::new()));
    let daemon = Daemon::start(&config, Box::new(Gate { open: gate, kept: kept.clone() }), DaemonLinks::default())
        .expect("starts");
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connects");
    let stats = daemon.stats();

    let trace = trace("busy-stretch");
    let cut = trace.len() / 2;
    fake.play(&trace, 0..cut, Pace::MaxSpeed).await;
    eventually("the intake to overflow", || stats.reader.overflows.load(Ordering::Relaxed) >= 1).await;
    let peak = stats.reader.peak_backlog.load(Ordering::Relaxed);
    assert!(peak <= 50, "the reader queued {peak} messages, over [ari] max_backlog = 50");
    assert!(
        fake.status().longest_write_us < 1_000_000,
        "Asterisk's writes stalled for {} µs: the reader stopped reading",
        fake.status().longest_write_us
    );

    open.send(true).expect("gate");
    eventually("a reconnect and its resync after the overflow", || {
        stats.reader.connections.load(Ordering::Relaxed) >= 2 && stats.resyncs.load(Ordering::Relaxed) >= 2
    })
    .await;
    fake.play(&trace, cut..trace.len(), Pace::MaxSpeed).await;
    eventually("no call left open", || stats.open_calls.load(Ordering::Relaxed) == 0).await;
    assert!(daemon.stop(Duration::from_secs(4)).await, "stopped in time");

    let mut by_call: std::collections::BTreeMap<String, (usize, usize)> = Default::default();
    for output in kept.lock().expect("not poisoned").iter() {
        if let Output::Event(event) = output {
            let counts = by_call.entry(event.unique_id.clone()).or_default();
            counts.0 += usize::from(event.what == Happened::Started);
            counts.1 += usize::from(event.is_ended());
        }
    }
    assert!(by_call.len() >= 5, "calls seen: {by_call:?}");
    for (call, counts) in &by_call {
        assert_eq!(*counts, (1, 1), "call {call}: (starts, ends)");
    }
}

/// Two daemons on one storage.dir would send everything twice: the second refuses to start
/// and says who holds it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_state_refuses_to_start() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &fake.url(), PASSWORD, "");
    let config = config.to_str().expect("utf8");
    let mut first = Deskhook::spawn(&["run", "--config", config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("the first runs");
    let (code, _, stderr) = run_command(&["run", "--config", config]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains(&format!("another deskhook (pid {}) is running on storage.dir", first.pid())), "{stderr}");
    assert!(first.is_running(), "the first one is untouched");
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).await.expect("killed");
    // A kill -9 leaves the file but not the lock.
    let mut second = Deskhook::spawn(&["run", "--config", config]);
    second.wait_stderr("running: ARI at").await;
    second.stop().await;
}

/// A sink that breaks on the first call event, as a bug in a destination's mapping would.
struct Breaks;

impl Sink for Breaks {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        if matches!(output, Output::Event(_)) {
            panic!("a sink bug");
        }
        Box::pin(async {})
    }
}

/// A sink task that dies is not a silent hole where events fall: the daemon says it failed,
/// so `deskhook run` stops (exit 1) and systemd restarts it from the stored checkpoints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_sink_task_fails_the_daemon_instead_of_dropping_events() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let daemon =
        Daemon::start(&config_for(&fake.url(), dir.path()), Box::new(Breaks), DaemonLinks::default()).expect("starts");
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connects");
    assert!(!daemon.has_failed(), "a connected daemon with a working sink has not failed");
    let trace = trace("01-in-direct-answered");
    fake.play(&trace, 0..trace.len(), Pace::MaxSpeed).await;
    tokio::time::timeout(PATIENCE, daemon.failed()).await.expect("the daemon reports the dead sink task");
    assert!(daemon.stop(Duration::from_secs(4)).await, "stops in time");
}
