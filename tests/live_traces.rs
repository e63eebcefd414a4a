//! Every real trace through the real `deskhook run` binary, with the fake ARI replaying it over
//! the websocket ten times faster than it happened: the printed helpdesk events must be
//! exactly the trace's `.expected.jsonl` (the same as `replay`, but through the live path:
//! websocket, resync, ARI queue-member lookups, event clock).

mod common;
mod live_support;

use fake_ari::Pace;
use live_support::*;

const SPEEDUP: f64 = 10.0;

async fn run_trace(name: &str) {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &fake.url(), PASSWORD, "");
    let metrics = listen_for_metrics(&config);
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8"), "--print-events"]);
    if fake.wait_for(PATIENCE, |status| status.ready).await.is_err() {
        panic!("deskhook never connected and resynced\n{}", deskhook.stderr_text());
    }
    let trace = trace(name);
    let report = fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup: SPEEDUP }).await;
    assert_eq!(report.sent, trace.len(), "every message reached the daemon");
    let expected = common::expected_values(name);
    deskhook.wait_stdout_lines(expected.len()).await;
    // The tail of the trace handled too (a stop drains what the engine produced): nothing
    // more may be printed.
    wait_messages_handled(metrics, report.written()).await;
    deskhook.stop().await;
    let got = deskhook.events();
    assert_eq!(got, expected, "{name} through `deskhook run`:\n{}", common::diff(&got, &expected));
    assert_eq!(deskhook.stderr_count("connected to ARI at"), 1, "{}", deskhook.stderr_text());
    assert!(!deskhook.stderr_text().contains(PASSWORD), "the ARI password leaked into the log");
    let queue_lookups: u64 = fake
        .status()
        .requests
        .iter()
        .filter(|(key, _)| key.starts_with("GET /ari/channels/") && key.ends_with("/variable"))
        .map(|(_, count)| count)
        .sum();
    let has_queue = trace.messages.iter().any(|message| message.text.contains(r#""dialplan_app":"Queue""#));
    assert_eq!(queue_lookups > 0, has_queue, "queue members are read through ARI exactly when a queue is used");
    if !expected.is_empty() {
        assert!(fake.status().requests_of("GET /ari/events") >= 1);
        assert!(fake.status().last_events_query.contains("subscribeAll=true"));
    }
}

macro_rules! live_trace_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                run_trace($name).await;
            }
        )*

        #[test]
        fn every_scenario_with_expected_events_has_a_live_test() {
            let covered = [$($name),*];
            assert_eq!(common::scenarios(), covered, "add new fixtures to live_trace_tests!");
        }
    };
}

live_trace_tests! {
    in_direct_answered => "01-in-direct-answered",
    in_direct_noanswer_callercancel => "02-in-direct-noanswer-callercancel",
    in_queue_answered_by_102 => "04-in-queue-answered-by-102",
    in_queue_noanswer_callerhangup => "05-in-queue-noanswer-callerhangup",
    in_ivr_callerhangup => "06-in-ivr-callerhangup",
    out_answered => "07-out-answered",
    out_noanswer_callercancel => "08-out-noanswer-callercancel",
    internal_101_to_102_answered => "09-internal-101-to-102-answered",
    in_blind_transfer_101_to_102 => "10-in-blind-transfer-101-to-102",
    in_attended_transfer_101_to_102 => "12-in-attended-transfer-101-to-102-refer-replaces",
    in_queue_answered_by_102_with_channelvars => "13-in-queue-answered-by-102-with-channelvars",
    in_queue_localmembers_answered_by_102 => "14-in-queue-localmembers-answered-by-102",
}

/// The 70 overlapping calls of the busy stretch through `deskhook run`, with the queue's
/// members read live through ARI (no `[pbx.queues]`): busy-stretch.md's rules hold call by call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_busy_stretch_through_the_live_daemon_obeys_its_rules() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &fake.url(), PASSWORD, "");
    let metrics = listen_for_metrics(&config);
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8"), "--print-events"]);
    if fake.wait_for(PATIENCE, |status| status.ready).await.is_err() {
        panic!("deskhook never connected and resynced\n{}", deskhook.stderr_text());
    }
    let trace = trace("busy-stretch");
    let report = fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup: SPEEDUP }).await;
    assert_eq!(report.sent, trace.len());
    let ended = |d: &Deskhook| d.stdout_lines().iter().filter(|line| line.contains(" ended\"")).count();
    deskhook.wait_until("70 ended events", |d| ended(d) >= 70).await;
    wait_messages_handled(metrics, report.written()).await;
    deskhook.stop().await;
    common::check_busy_stretch_rules(&common::trace_lines("busy-stretch"), &deskhook.events());
}
