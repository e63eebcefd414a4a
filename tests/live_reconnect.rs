//! The live daemon when ARI misbehaves: the websocket drops mid-call (Asterisk still has the
//! call, or restarted without it), a wrong password, a silent socket, another client taking
//! the application over, and shutting down on SIGTERM/SIGINT.

mod common;
mod live_support;

use std::time::{Duration, Instant};

use fake_ari::{FakeAri, FakeTrace, Pace};
use live_support::*;
use serde_json::Value;

const SPEEDUP: f64 = 10.0;

/// Index just after both legs of the call are bridged (the call is answered and talking).
fn after_answer(trace: &FakeTrace) -> usize {
    let first = trace.position(0, &[r#""type":"ChannelEnteredBridge""#]).expect("a bridge");
    trace.position(first + 1, &[r#""type":"ChannelEnteredBridge""#]).expect("a second leg in the bridge") + 1
}

async fn connected_daemon(fake: &FakeAri, dir: &std::path::Path, ari_extra: &str) -> Deskhook {
    connected_daemon_with_metrics(fake, dir, ari_extra).await.0
}

/// [`connected_daemon`], with the address of its `/metrics`.
async fn connected_daemon_with_metrics(
    fake: &FakeAri,
    dir: &std::path::Path,
    ari_extra: &str,
) -> (Deskhook, std::net::SocketAddr) {
    let config = write_config(dir, &fake.url(), PASSWORD, ari_extra);
    let metrics = listen_for_metrics(&config);
    let deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8"), "--print-events"]);
    if fake.wait_for(PATIENCE, |status| status.ready).await.is_err() {
        panic!("deskhook never connected\n{}", deskhook.stderr_text());
    }
    (deskhook, metrics)
}

async fn drop_mid_call_with_channels_kept(name: &str) {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut deskhook, metrics) = connected_daemon_with_metrics(&fake, dir.path(), "").await;
    let trace = trace(name);
    let cut = after_answer(&trace);
    fake.play(&trace, 0..cut, Pace::Recorded { speedup: SPEEDUP }).await;
    fake.drop_connections();
    // The fake holds the rest of the call until the daemon is back and has resynced.
    let report = fake.play(&trace, cut..trace.len(), Pace::Recorded { speedup: SPEEDUP }).await;
    assert_eq!(report.lost, 0);
    assert!(fake.status().connections >= 2, "the daemon reconnected");
    let expected = common::expected_values(name);
    deskhook.wait_stdout_lines(expected.len()).await;
    // Everything Asterisk wrote, on either connection (and the reconnect's resync marker), is
    // handled: nothing more can be printed.
    wait_everything_handled(&fake, metrics, trace.len() + 1).await;
    deskhook.stop().await;
    let got = deskhook.events();
    assert_eq!(got, expected, "{name} across a reconnect:\n{}", common::diff(&got, &expected));
    assert_eq!(
        deskhook.stderr_count("ARI connection to"),
        2,
        "one line for the outage, one for the recovery:\n{}",
        deskhook.stderr_text()
    );
    assert_eq!(
        deskhook.stderr_count("lost (the socket closed without a close frame)"),
        1,
        "{}",
        deskhook.stderr_text()
    );
    assert_eq!(deskhook.stderr_count("restored after"), 1, "{}", deskhook.stderr_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_while_asterisk_keeps_the_call_loses_and_duplicates_nothing() {
    drop_mid_call_with_channels_kept("01-in-direct-answered").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drop_during_a_queue_call_loses_and_duplicates_nothing() {
    drop_mid_call_with_channels_kept("04-in-queue-answered-by-102").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_that_took_the_call_away_still_ends_it_once_and_later_calls_work() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut deskhook, metrics) = connected_daemon_with_metrics(&fake, dir.path(), "").await;
    let name = "01-in-direct-answered";
    let trace = trace(name);
    let cut = after_answer(&trace);
    fake.play(&trace, 0..cut, Pace::Recorded { speedup: SPEEDUP }).await;
    let expected = common::expected_values(name);
    // start, personal number, answered: everything before the hangup.
    deskhook.wait_stdout_lines(3).await;
    fake.restart(Duration::from_millis(700)).await;
    deskhook
        .wait_until("the ended event", |d| d.stdout_lines().iter().any(|l| l.contains("incoming call is ended")))
        .await;

    // A call placed after the restart goes through normally.
    let next = "02-in-direct-noanswer-callercancel";
    let next_trace = live_support::trace(next);
    let before_next = deskhook.stdout_lines().len();
    let handled_before = metric(metrics, "deskhook_ari_messages_total").await as usize;
    let sent = fake.play(&next_trace, 0..next_trace.len(), Pace::Recorded { speedup: SPEEDUP }).await.written();
    let next_expected = common::expected_values(next);
    deskhook.wait_stdout_lines(before_next + next_expected.len()).await;
    // The second call's tail handled too: nothing more may be printed.
    wait_messages_handled(metrics, handled_before + sent).await;
    deskhook.stop().await;

    let got = deskhook.events();
    let (first_call, second_call): (Vec<Value>, Vec<Value>) =
        got.iter().cloned().partition(|event| event["unique_id"] == expected[0]["unique_id"]);
    assert_eq!(first_call[..3], expected[..3], "{}", common::diff(&first_call, &expected));
    let ended: Vec<&Value> = first_call.iter().filter(|e| e["status"] == "incoming call is ended").collect();
    assert_eq!(ended.len(), 1, "ended exactly once: {first_call:#?}");
    assert_eq!(ended[0]["to_user"], "101");
    assert_eq!(ended[0]["from_user"], "+79161234567");
    assert!(ended[0]["call_duration"].as_u64().is_some(), "an answered call has a duration: {}", ended[0]);
    // Dated at the resync, after the answer (event time, not the wall clock of the test run).
    assert!(ended[0]["datetime"].as_str().is_some_and(|d| d.starts_with("21.11.2026-07:58:")), "{}", ended[0]);
    assert_eq!(second_call, next_expected, "{}", common::diff(&second_call, &next_expected));
    let log = deskhook.stderr_text();
    assert_eq!(deskhook.stderr_count("Asterisk restarted"), 1, "{log}");
    assert_eq!(deskhook.stderr_count("had no live channels left"), 1, "{log}");
}

/// `21.11.2026-07:58:16` → seconds (the same zone on both sides of a comparison).
fn datetime_seconds(datetime: &str) -> i64 {
    let time = datetime.rsplit('-').next().expect("a time");
    let parts: Vec<i64> = time.split(':').map(|part| part.parse().expect("a number")).collect();
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_asterisk_crash_ends_its_calls_when_deskhook_lost_sight_of_it() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut deskhook = connected_daemon(&fake, dir.path(), "").await;
    let name = "01-in-direct-answered";
    let trace = trace(name);
    fake.play(&trace, 0..after_answer(&trace), Pace::MaxSpeed).await;
    deskhook.wait_stdout_lines(3).await;
    // The call talks for a moment, then Asterisk dies and refuses connections for 5 s.
    tokio::time::sleep(Duration::from_millis(500)).await;
    fake.restart(Duration::from_secs(5)).await;
    deskhook
        .wait_until("the ended event", |d| d.stdout_lines().iter().any(|l| l.contains("incoming call is ended")))
        .await;
    deskhook.stop().await;

    let events = deskhook.events();
    let answered = events.iter().find(|e| e["status"] == "incoming call answered").expect("answered");
    let ended = events.iter().find(|e| e["status"] == "incoming call is ended").expect("ended");
    let answered_s = datetime_seconds(answered["datetime"].as_str().expect("datetime"));
    let ended_s = datetime_seconds(ended["datetime"].as_str().expect("datetime"));
    let talk = ended["call_duration"].as_u64().expect("an answered call has a duration");
    // Asterisk died about 0.5 s after the answer; the resync came more than 5 s later.
    assert!(ended_s - answered_s <= 2, "ended when deskhook lost sight of Asterisk, not at the resync: {ended}");
    assert!(talk <= 2, "the talk time stops at the crash: {ended}");
    let log = deskhook.stderr_text();
    assert_eq!(deskhook.stderr_count("when deskhook lost sight of Asterisk"), 1, "{log}");
    assert_eq!(deskhook.stderr_count("had no live channels left"), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_that_arrive_before_a_slow_snapshot_are_not_undone_by_it() {
    let fake = lab_fake().await;
    // The channel list answers late, with the empty state of when it was asked, while the call's
    // events already flow: the daemon must apply the snapshot before those events, not after.
    // (The daemon lists channels, then bridges; the replay starts once both were asked for, so
    // the bridges answer lands about 300 ms into the call, which lasts about 1.1 s at this pace.)
    fake.delay_listings(Duration::from_millis(300));
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut deskhook, metrics) = connected_daemon_with_metrics(&fake, dir.path(), "").await;
    let name = "01-in-direct-answered";
    let trace = trace(name);
    let sent = fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup: SPEEDUP / 2.0 }).await.written();
    let expected = common::expected_values(name);
    deskhook.wait_stdout_lines(expected.len()).await;
    wait_messages_handled(metrics, sent).await;
    deskhook.stop().await;
    let got = deskhook.events();
    assert_eq!(got, expected, "{}", common::diff(&got, &expected));
    assert_eq!(deskhook.stderr_count("had no live channels left"), 0, "{}", deskhook.stderr_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_reported_once_with_its_fix_and_retried_with_backoff() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), &fake.url(), "not-the-password", "");
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8")]);
    let started = Instant::now();
    let status = fake.wait_for(PATIENCE, |status| status.auth_failures >= 3).await;
    assert!(status.is_ok(), "deskhook kept retrying: {status:?}\n{}", deskhook.stderr_text());
    // Backoff: three attempts need at least the first two delays (0.5 s + 1 s, before jitter).
    assert!(started.elapsed() >= Duration::from_millis(1400), "retries are spaced out: {:?}", started.elapsed());
    assert!(deskhook.is_running(), "a wrong password must not stop the daemon");
    let log = deskhook.stderr_text();
    assert_eq!(deskhook.stderr_count("HTTP 401"), 1, "logged once per outage, not per attempt:\n{log}");
    assert!(log.contains("ari.conf") && log.contains("[ari] username and password"), "{log}");
    assert!(!log.contains("not-the-password"), "the password leaked into the log");
    // SIGINT (Ctrl-C) stops it too, even in the middle of a backoff wait.
    deskhook.signal("INT");
    let exit = deskhook.wait_exit(Duration::from_secs(5)).await;
    assert!(exit.is_some_and(|s| s.success()), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_daemon_in_the_middle_of_a_call_within_5_seconds() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut deskhook = connected_daemon(&fake, dir.path(), "").await;
    let trace = trace("01-in-direct-answered");
    fake.play(&trace, 0..after_answer(&trace), Pace::MaxSpeed).await;
    deskhook.wait_stdout_lines(3).await;
    let asked = Instant::now();
    deskhook.signal("TERM");
    let exit = deskhook.wait_exit(Duration::from_secs(5)).await;
    assert!(exit.is_some_and(|s| s.success()), "exit 0 within 5 s, got {exit:?} after {:?}", asked.elapsed());
    assert!(deskhook.stderr_text().contains("SIGTERM received"), "{}", deskhook.stderr_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_websocket_is_declared_dead_and_replaced() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut deskhook = connected_daemon(&fake, dir.path(), "ping_interval = \"200ms\"\nidle_timeout = \"1s\"\n").await;
    fake.freeze_connections();
    let status = fake.wait_for(PATIENCE, |status| status.connections >= 2 && status.ready).await;
    assert!(status.is_ok(), "{status:?}\n{}", deskhook.stderr_text());
    assert_eq!(deskhook.stderr_count("no frame for 1.0 s"), 1, "{}", deskhook.stderr_text());
    deskhook.wait_stderr("restored after").await;
    deskhook.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_replaced_is_logged_with_its_fix_and_deskhook_retries() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut deskhook = connected_daemon(&fake, dir.path(), "").await;
    fake.replace_application();
    let status = fake.wait_for(PATIENCE, |status| status.connections >= 2 && status.ready).await;
    assert!(status.is_ok(), "{status:?}\n{}", deskhook.stderr_text());
    let log = deskhook.stderr_text();
    assert_eq!(deskhook.stderr_count("ApplicationReplaced"), 1, "{log}");
    assert!(log.contains("[ari] app"), "the fix names the config key: {log}");
    deskhook.stop().await;
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn systemd_hears_ready_watchdog_and_stopping() {
    use std::os::unix::net::UnixDatagram;

    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let config = write_config(dir.path(), &fake.url(), PASSWORD, "");
    let mut deskhook = Deskhook::spawn_with_env(
        &["run", "--config", config.to_str().expect("utf8")],
        &[("NOTIFY_SOCKET", socket_path.to_str().expect("utf8")), ("WATCHDOG_USEC", "400000")],
    );
    let received = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let listener = {
        let received = received.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            let deadline = Instant::now() + PATIENCE;
            while Instant::now() < deadline {
                if let Ok(size) = socket.recv(&mut buffer) {
                    let text = String::from_utf8_lossy(&buffer[..size]).into_owned();
                    let done = text.contains("STOPPING=1");
                    received.lock().expect("not poisoned").push(text);
                    if done {
                        return;
                    }
                }
            }
        })
    };
    let has = |needle: &str| received.lock().expect("not poisoned").iter().any(|m| m.contains(needle));
    let deadline = Instant::now() + PATIENCE;
    while !(has("READY=1") && has("WATCHDOG=1")) {
        assert!(Instant::now() < deadline, "got {:?}\n{}", received.lock().expect("ok"), deskhook.stderr_text());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    deskhook.stop().await;
    tokio::task::spawn_blocking(move || listener.join()).await.expect("join").expect("listener");
    assert!(has("STOPPING=1"), "{:?}", received.lock().expect("ok"));
}
