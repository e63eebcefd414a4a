//! On every connect the daemon sets its application's ARI event filter to the types it reads,
//! so Asterisk neither builds nor sends the rest; with an Asterisk that has no filter (before
//! 13.26 / 16.3) it reads everything. Either way a call comes out the same.

mod live_support;

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use deskhook::calls::Output;
use deskhook::config::{Config, RecordingMode};
use deskhook::daemon::{Daemon, DaemonLinks};
use fake_ari::{FakeAri, FakeAriOptions, Pace};
use live_support::*;

const APP: &str = "deskhook-test";

/// The call events collected so far, as text (effects such as heartbeats depend on timing).
fn events(sink: &Collect) -> Vec<String> {
    let outputs = sink.0.lock().expect("not poisoned");
    outputs
        .iter()
        .filter_map(|output| match output {
            Output::Event(event) => Some(format!("{event:?}")),
            _ => None,
        })
        .collect()
}

fn ended(sink: &Collect) -> usize {
    let outputs = sink.0.lock().expect("not poisoned");
    outputs.iter().filter(|output| matches!(output, Output::Event(event) if event.is_ended())).count()
}

async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Plays one recorded call to a daemon (recordings `mode`) connected to an Asterisk with or
/// without an event filter; gives back its call events and the fake.
async fn one_call(mode: RecordingMode, asterisk_filters: bool) -> (Vec<String>, FakeAri) {
    let options = FakeAriOptions { event_filter: asterisk_filters, ..FakeAriOptions::lab("deskhook", PASSWORD) };
    let fake = FakeAri::start(options).await.expect("fake ARI starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::load(&write_config(dir.path(), &fake.url(), PASSWORD, "")).expect("config");
    config.recordings.mode = mode;
    let sink = Collect::default();
    let daemon = Daemon::start(&config, Box::new(sink.clone()), DaemonLinks::default()).expect("starts");
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connects");
    // The filter is set before the channels are read, so before the resync's marker comes back.
    eventually("the first resync", || daemon.stats().resyncs.load(Ordering::Relaxed) >= 1).await;
    let trace = trace("01-in-direct-answered");
    fake.play(&trace, 0..trace.len(), Pace::MaxSpeed).await;
    eventually("the call's end", || ended(&sink) == 1).await;
    assert!(daemon.stop(Duration::from_secs(4)).await, "stopped in time");
    (events(&sink), fake)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn asterisk_sends_only_what_deskhook_reads_and_the_call_comes_out_the_same() {
    let (filtered, fake) = one_call(RecordingMode::Off, true).await;
    let status = fake.status();
    let allowed: BTreeSet<&str> =
        status.events_allowed.get(APP).expect("the filter was set").iter().map(String::as_str).collect();
    for needed in ["ChannelCreated", "ChannelDialplan", "Dial", "EndpointStateChange", "ChannelUserevent"] {
        assert!(allowed.contains(needed), "{needed} is asked for: {allowed:?}");
    }
    assert!(!allowed.contains("ChannelVarset"), "no channel variables without MixMonitor pickup: {allowed:?}");
    assert!(!allowed.contains("DeviceStateChanged"), "{allowed:?}");
    assert!(status.messages_filtered > 0, "Asterisk kept the rest to itself");

    let (whole, old) = one_call(RecordingMode::Off, false).await;
    assert_eq!(old.status().requests_of(&format!("PUT /ari/applications/{APP}/eventFilter")), 1);
    assert!(old.status().events_allowed.is_empty() && old.status().messages_filtered == 0);
    assert!(!whole.is_empty());
    assert_eq!(filtered, whole, "the same call, with and without Asterisk's filter");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_variables_come_while_mixmonitor_files_are_picked_up_and_the_filter_is_set_on_every_connect() {
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake ARI starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::load(&write_config(dir.path(), &fake.url(), PASSWORD, "")).expect("config");
    config.recordings.mode = RecordingMode::Mixmonitor;
    let daemon = Daemon::start(&config, Box::new(Collect::default()), DaemonLinks::default()).expect("starts");
    let put = format!("PUT /ari/applications/{APP}/eventFilter");
    fake.wait_for(PATIENCE, |status| status.events_allowed.contains_key(APP)).await.expect("the filter is set");
    assert_eq!(fake.status().requests_of(&put), 1);
    let allowed = fake.status().events_allowed.get(APP).cloned().unwrap_or_default();
    assert!(allowed.iter().any(|kind| kind == "ChannelVarset"), "{allowed:?}");

    // A restarted Asterisk has forgotten the filter: the reconnect sets it again.
    fake.restart(Duration::from_millis(300)).await;
    fake.wait_for(PATIENCE, |status| status.requests_of(&put) == 2 && status.events_allowed.contains_key(APP))
        .await
        .expect("set again after the reconnect");
    assert!(daemon.stop(Duration::from_secs(4)).await, "stopped in time");
}
