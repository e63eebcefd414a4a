//! The daemon in-process against the fake ARI: what it shares with the rest of deskhook
//! (endpoint presence for `/forward`, health flags for `/healthz`) and the queue-member cache.

mod live_support;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use deskhook::ari::fake::{FakeTrace, Pace};
use deskhook::calls::Output;
use deskhook::config::Config;
use deskhook::daemon::{Daemon, DaemonLinks, Sink, SinkFuture};
use live_support::*;

/// Keeps every output, for assertions.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<Output>>>);

impl Sink for Collect {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        self.0.lock().expect("not poisoned").push(output.clone());
        Box::pin(async {})
    }
}

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
            .filter(|o| matches!(o, Output::Event(e) if e.status.text() == "call to queue support"))
            .map(|o| match o {
                Output::Event(e) => e.to_user.clone(),
                _ => String::new(),
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
