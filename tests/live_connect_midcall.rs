//! `deskhook run` connecting while calls start: the websocket delivers events from the moment
//! it connects, and the REST snapshot (`/channels`, `/bridges`) is read meanwhile. A channel
//! whose `ChannelCreated` deskhook received must be known from its events — never adopted
//! from the snapshot, whose `dialplan.exten` is where the call is *now* (the queue's 500),
//! not the DID it was dialed on. Both orders: the events before the snapshot, and the snapshot
//! answered before the (lagging) websocket delivered the events it already reflects.

mod common;
mod live_support;

use std::time::Duration;

use fake_ari::{FakeAri, FakeTrace, Pace};
use live_support::*;

/// Traces where the caller's channel moves on to another extension (a queue) early in the call.
const TRACES: [&str; 3] =
    ["04-in-queue-answered-by-102", "05-in-queue-noanswer-callerhangup", "14-in-queue-localmembers-answered-by-102"];

/// The first message after the caller entered the queue: the snapshot is taken there.
fn cut_after_queue(trace: &FakeTrace) -> usize {
    trace
        .messages
        .iter()
        .position(|message| message.text.contains(r#""dialplan_app":"Queue""#))
        .map(|index| index + 1)
        .expect("the trace has a Queue step")
}

#[derive(Clone, Copy, Debug)]
enum Order {
    /// Events since the connect arrive before the channel list is answered.
    EventsFirst,
    /// The channel list (reflecting the call already) is answered before the websocket,
    /// running 1.5 s behind, delivers the call's first events.
    SnapshotFirst,
}

async fn connect_mid_call(name: &str, order: Order) {
    let fake = lab_fake().await;
    fake.hold_listings();
    if matches!(order, Order::SnapshotFirst) {
        fake.lag_events(Duration::from_millis(1500));
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &fake.url(), PASSWORD, "");
    let metrics = listen_for_metrics(&config);
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8"), "--print-events"]);
    wait_for_listing_request(&fake, &deskhook).await;

    let trace = trace(name);
    let cut = cut_after_queue(&trace);
    let report = fake.play(&trace, 0..cut, Pace::MaxSpeed).await;
    assert_eq!(report.sent, cut, "the call's start reached the open websocket");
    if matches!(order, Order::EventsFirst) {
        fake.wait_for(PATIENCE, |status| status.messages_sent + status.messages_filtered >= cut as u64)
            .await
            .expect("events written (or kept back by deskhook's event filter)");
    }
    fake.release_listings();
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("deskhook listed channels and bridges");
    let report = fake.play(&trace, cut..trace.len(), Pace::Recorded { speedup: 10.0 }).await;
    assert_eq!(report.sent, trace.len() - cut);

    let expected = common::expected_values(name);
    deskhook.wait_stdout_lines(expected.len()).await;
    // The whole call and the resync marker are handled: nothing more can be printed.
    wait_everything_handled(&fake, metrics, trace.len() + 1).await;
    deskhook.stop().await;
    let got = deskhook.events();
    assert_eq!(got, expected, "{name}, {order:?}:\n{}\n{}", common::diff(&got, &expected), deskhook.stderr_text());
    assert!(fake.status().requests_of("POST /ari/events/user/deskhook-resync") >= 1, "the resync marker was posted");
}

async fn wait_for_listing_request(fake: &FakeAri, deskhook: &Deskhook) {
    let waited = fake.wait_for(PATIENCE, |_| fake.listings_waiting() > 0).await;
    assert!(waited.is_ok(), "deskhook never asked for the channel list\n{}", deskhook.stderr_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_before_the_snapshot_keep_the_did_the_call_was_dialed_on() {
    for name in TRACES {
        connect_mid_call(name, Order::EventsFirst).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_ahead_of_the_websocket_waits_for_its_events() {
    for name in TRACES {
        connect_mid_call(name, Order::SnapshotFirst).await;
    }
}
