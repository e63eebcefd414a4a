//! `deskhook run` delivering to a helpdesk for real: the binary, the fake ARI replaying real
//! calls, and a loopback webhook that is down, slow, or whose deskhook is killed with SIGKILL.

mod common;
#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod live_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use deliver_support::receiver::{reserve_addr, Receiver, Reply, Seen, TOKEN};
use deliver_support::{form_fields, wait_until};
use fake_ari::Pace;
use live_support::*;

const CALLS: [&str; 4] =
    ["01-in-direct-answered", "04-in-queue-answered-by-102", "07-out-answered", "10-in-blind-transfer-101-to-102"];

/// The lab config with delivery to `webhook`, fast retries and no recordings (their files
/// live on the lab PBX).
fn delivering_config(dir: &Path, ari_url: &str, webhook: &str, extra: &str) -> PathBuf {
    let path = write_config(dir, ari_url, PASSWORD, "");
    let text = std::fs::read_to_string(&path).expect("config").replace("mode = \"mixmonitor\"", "mode = \"off\"");
    let text = format!(
        "{text}\n[helpdesk]\nwebhook_url = \"{webhook}\"\nmin_backoff = \"50ms\"\nmax_backoff = \"300ms\"\n\
         max_parallel = 2\nrequest_timeout = \"5s\"\n{extra}"
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// [`delivering_config`] with MixMonitor recordings picked up from `spool`.
fn mixmonitor_config(dir: &Path, ari_url: &str, webhook: &str, spool: &Path) -> PathBuf {
    let config = delivering_config(dir, ari_url, webhook, "");
    let text =
        std::fs::read_to_string(&config).expect("config").replace("mode = \"off\"", "mode = \"mixmonitor\"").replace(
            "dirs = [\"/var/spool/asterisk/monitor\"]",
            &format!("dirs = [\"{}\"]\nsettle = \"30s\"", spool.display()),
        );
    std::fs::write(&config, text).expect("config");
    config
}

/// The helpdesk events the calls must produce, per call, in order (as form field maps).
fn expected_by_call() -> BTreeMap<String, Vec<(String, String)>> {
    let mut calls: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for name in CALLS {
        for value in common::expected_values(name) {
            if value["status"] == "record" {
                continue;
            }
            let id = value["unique_id"].as_str().expect("id").to_string();
            let entry = (
                value["status"].as_str().expect("status").to_string(),
                value["to_user"].as_str().unwrap_or("").to_string(),
            );
            calls.entry(id).or_default().push(entry);
        }
    }
    calls
}

/// What the receiver accepted, per call, in order, with repeats of the same request collapsed.
fn accepted_by_call(accepted: &[Seen]) -> (BTreeMap<String, Vec<(String, String)>>, usize) {
    let mut calls: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut bodies: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
    let mut repeats = 0;
    for seen in accepted {
        let fields = form_fields(&seen.body);
        let id = fields.get("unique_id").cloned().unwrap_or_default();
        let previous = bodies.entry(id.clone()).or_default();
        if previous.iter().any(|body| *body == seen.body.to_vec()) {
            repeats += 1;
            continue;
        }
        previous.push(seen.body.to_vec());
        let entry =
            (fields.get("status").cloned().unwrap_or_default(), fields.get("to_user").cloned().unwrap_or_default());
        calls.entry(id).or_default().push(entry);
    }
    (calls, repeats)
}

async fn play_all(fake: &fake_ari::FakeAri) {
    for name in CALLS {
        let trace = trace(name);
        let report = fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup: 20.0 }).await;
        assert_eq!(report.sent, trace.len());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_helpdesk_down_at_first_gets_every_event_in_order_once_it_is_up() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = reserve_addr();
    let webhook = format!("http://{addr}/webhooks/asterisk/{TOKEN}");
    let config = delivering_config(dir.path(), &fake.url(), &webhook, "");
    let metrics = listen_for_metrics(&config);
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8")]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    play_all(&fake).await;
    let expected = expected_by_call();
    let total: usize = expected.values().map(Vec::len).sum();
    // Nothing listens yet: every event waits in the outbox, tried and failed.
    wait_for("every event waiting in the outbox", || async {
        metric(metrics, "deskhook_sink_pending{sink=\"helpdesk\"}").await == total as u64
            && metric(metrics, "deskhook_sink_failed_tries_total{sink=\"helpdesk\"}").await > 0
    })
    .await;
    let receiver = Receiver::start_on(addr, Arc::new(|_: &Seen| Reply::ok())).await;
    wait_until("every event delivered", Duration::from_secs(30), || receiver.accepted_count() >= total).await;
    let (got, repeats) = accepted_by_call(&receiver.accepted());
    assert_eq!(got, expected);
    assert_eq!(repeats, 0, "nothing was in flight when it came up");
    deskhook.stop().await;
    let log = deskhook.stderr_text();
    assert!(!log.contains(TOKEN), "the webhook's token leaked into the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_delivery_loses_nothing_and_repeats_at_most_what_was_in_flight() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A slow helpdesk: every request takes 400 ms, so the backlog is still draining at the kill.
    let receiver = Receiver::start_with(Arc::new(|_: &Seen| Reply::ok().delayed(Duration::from_millis(400)))).await;
    let config = delivering_config(dir.path(), &fake.url(), &receiver.url(), "");
    let metrics = listen_for_metrics(&config);
    let config = config.to_str().expect("utf8").to_string();
    let mut first = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    play_all(&fake).await;
    let expected = expected_by_call();
    let total: usize = expected.values().map(Vec::len).sum();
    wait_until("some events delivered", Duration::from_secs(30), || receiver.accepted_count() >= 3).await;
    // Every event is committed (pending or delivered) before the slow helpdesk has them all.
    wait_for("every event committed", || async {
        let pending = metric(metrics, "deskhook_sink_pending{sink=\"helpdesk\"}").await;
        pending + metric(metrics, "deskhook_sink_delivered_total{sink=\"helpdesk\"}").await >= total as u64
    })
    .await;
    assert!(receiver.accepted_count() < total, "the kill must happen mid-delivery");
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).await.expect("killed");
    let before_restart = receiver.attempts().len();

    let mut second = Deskhook::spawn(&["run", "--config", &config]);
    wait_until("every event delivered after the restart", Duration::from_secs(60), || {
        accepted_by_call(&receiver.accepted()).0.values().map(Vec::len).sum::<usize>() >= total
    })
    .await;
    let (got, repeats) = accepted_by_call(&receiver.accepted());
    assert_eq!(got, expected, "every call's events, in order");
    // At most one request per parallel slot was in flight at the kill (max_parallel = 2).
    assert!(repeats <= 2, "{repeats} requests sent twice; {before_restart} attempts before the restart");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forward_answers_from_the_history_of_calls_deskhook_saw() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let forward = reserve_addr();
    let config = delivering_config(dir.path(), &fake.url(), "", "");
    // /forward on a free port with the history resolver; "nobody" is remembered only briefly.
    let text = std::fs::read_to_string(&config).expect("config").replace(
        "[forward]\nlisten = \"\"",
        &format!(
            // The fixture calls are from November 2026: a long max_age keeps them found.
            "[forward]\nlisten = \"{forward}\"\nmiss_cache_ttl = \"100ms\"\n[[forward.resolvers]]\nkind = \"history\"\n\
             max_age_days = 3650"
        ),
    );
    std::fs::write(&config, text).expect("config");
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8")]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    let client = reqwest::Client::new();
    let ask = |phone: &'static str| {
        let url = format!("http://{forward}/forward?phone={phone}&trunk=74951234567&callid=1");
        let client = client.clone();
        async move {
            match client.get(url).send().await {
                Ok(response) => response.text().await.unwrap_or_default(),
                Err(_) => "(not listening)".to_string(),
            }
        }
    };
    wait_for("/forward listening", || async { ask("89161234567").await != "(not listening)" }).await;
    assert_eq!(ask("89161234567").await, "", "nobody has talked to this client yet");
    // Trace 01: +79161234567 talks to 101; afterwards any spelling of the number routes to 101.
    let trace = trace("01-in-direct-answered");
    fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup: 20.0 }).await;
    wait_for("the caller routed to 101", || async { ask("89161234567").await == "name=&number=101" }).await;
    assert_eq!(ask("%2B7%20916%20123-45-67").await, "name=&number=101");
    let metrics =
        client.get(format!("http://{forward}/metrics")).send().await.expect("metrics").text().await.expect("text");
    assert!(metrics.contains("deskhook_"), "{metrics}");
    deskhook.stop().await;
}

/// recordings.mode = "mixmonitor" through the real binary: the blind-transfer call names two
/// MixMonitor files; the test writes them slowly and closes them only after the call ended.
/// The helpdesk gets the events, then one upload per file in the order they were started,
/// with the exact bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mixmonitor_files_are_uploaded_after_the_ended_event_with_their_exact_bytes() {
    use sha2::{Digest, Sha256};
    use std::io::Write;

    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let config = mixmonitor_config(dir.path(), &fake.url(), &receiver.url(), spool.path());
    let name = "10-in-blind-transfer-101-to-102";
    let raw = std::fs::read_to_string(fixtures().join(format!("{name}.jsonl"))).expect("trace");
    let trace =
        fake_ari::FakeTrace::parse(&raw.replace("/var/spool/asterisk/monitor", &spool.path().display().to_string()))
            .expect("trace");
    let files: Vec<PathBuf> = common::expected_values(name)
        .iter()
        .filter(|v| v["status"] == "record")
        .map(|v| {
            let original = v["record"].as_str().expect("path");
            PathBuf::from(original.replace("/var/spool/asterisk/monitor", &spool.path().display().to_string()))
        })
        .collect();
    assert_eq!(files.len(), 2);
    // MixMonitor has both files open while the call runs.
    let mut writers = Vec::new();
    let mut hashes = Vec::new();
    for (index, path) in files.iter().enumerate() {
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        let mut file = std::fs::File::create(path).expect("create");
        let data = vec![index as u8 + 1; 64 * 1024 + index];
        file.write_all(&data).expect("write");
        hashes.push(Sha256::digest(&data).to_vec());
        writers.push(file);
    }

    let metrics = listen_for_metrics(&config);
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8")]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup: 20.0 }).await;
    let events = common::expected_values(name).iter().filter(|v| v["status"] != "record").count();
    wait_until("the call's events", Duration::from_secs(30), || receiver.accepted_count() >= events).await;
    wait_for("both recordings waiting for MixMonitor", || async {
        metric(metrics, "deskhook_recordings_waiting").await == 2
    })
    .await;
    assert_eq!(receiver.accepted_count(), events, "nothing is uploaded while the files are still open");
    drop(writers);
    wait_until("both uploads", Duration::from_secs(30), || receiver.accepted_count() >= events + 2).await;

    let accepted = receiver.accepted();
    let last_event = form_fields(&accepted[events - 1].body);
    assert_eq!(last_event.get("status").map(String::as_str), Some("incoming call is ended"));
    for (index, seen) in accepted[events..].iter().enumerate() {
        let parts = deliver_support::multipart_parts(&seen.content_type, &seen.body);
        let part = |name: &str| parts.iter().find(|p| p.name == name).map(|p| p.data.clone()).unwrap_or_default();
        assert_eq!(part("status"), b"record");
        assert_eq!(part("unique_id"), b"1795237245.33");
        let record = parts.iter().find(|p| p.name == "record").expect("record part");
        assert_eq!(record.filename.as_deref(), files[index].file_name().and_then(|n| n.to_str()));
        assert_eq!(Sha256::digest(&record.data).to_vec(), hashes[index], "upload {index} has the exact bytes");
    }
    deskhook.stop().await;
}

/// deskhook killed mid-call and started again: the new process adopts the call from ARI's
/// channel list, and the helpdesk still gets the call's start and end exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_mid_call_sends_start_and_end_once() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let config = delivering_config(dir.path(), &fake.url(), &receiver.url(), "");
    let config = config.to_str().expect("utf8").to_string();
    let name = "01-in-direct-answered";
    let trace = trace(name);
    let first_bridge = trace.position(0, &[r#""type":"ChannelEnteredBridge""#]).expect("a bridge");
    let talking = trace.position(first_bridge + 1, &[r#""type":"ChannelEnteredBridge""#]).expect("second leg") + 1;

    let mut first = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    fake.play(&trace, 0..talking, Pace::MaxSpeed).await;
    wait_until("start, ring and answer delivered", Duration::from_secs(20), || receiver.accepted_count() >= 3).await;
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).await.expect("killed");

    let metrics = listen_for_metrics(Path::new(&config));
    let mut second = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready && status.connections >= 2).await.expect("reconnected");
    fake.play(&trace, talking..trace.len(), Pace::MaxSpeed).await;
    wait_until("the ended event", Duration::from_secs(20), || {
        receiver
            .accepted()
            .iter()
            .any(|seen| form_fields(&seen.body).get("status").is_some_and(|s| s.ends_with("ended")))
    })
    .await;
    settled(metrics).await;
    let statuses: Vec<String> = receiver
        .accepted()
        .iter()
        .map(|seen| form_fields(&seen.body).get("status").cloned().unwrap_or_default())
        .collect();
    assert_eq!(
        statuses,
        [
            "start of an incoming call",
            "incoming call to personal number",
            "incoming call answered",
            "incoming call is ended"
        ],
        "{}",
        second.stderr_text()
    );
    // The talk counts from when the operator's bridge was created (ARI's /bridges says so).
    let ended = form_fields(&receiver.accepted()[3].body);
    assert_eq!(ended.get("call_duration").map(String::as_str), Some("3"), "{ended:?}");
    second.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_ends_while_deskhook_is_killed_ends_once_with_its_recording_after_the_restart() {
    use std::io::Write;

    // Events nobody receives are lost, as with a real Asterisk.
    let options = fake_ari::FakeAriOptions {
        hold_events_while_disconnected: false,
        ..fake_ari::FakeAriOptions::lab("deskhook", PASSWORD)
    };
    let fake = fake_ari::FakeAri::start(options).await.expect("fake ARI");
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let config = mixmonitor_config(dir.path(), &fake.url(), &receiver.url(), spool.path());
    let config = config.to_str().expect("utf8").to_string();
    let name = "01-in-direct-answered";
    let raw = std::fs::read_to_string(fixtures().join(format!("{name}.jsonl"))).expect("trace");
    let spool_dir = spool.path().display().to_string();
    let trace = fake_ari::FakeTrace::parse(&raw.replace("/var/spool/asterisk/monitor", &spool_dir)).expect("trace");
    let expected = common::expected_values(name);
    let record = expected.iter().find(|v| v["status"] == "record").expect("a recording");
    let file =
        PathBuf::from(record["record"].as_str().expect("path").replace("/var/spool/asterisk/monitor", &spool_dir));
    std::fs::create_dir_all(file.parent().expect("parent")).expect("mkdir");
    let mut writer = std::fs::File::create(&file).expect("create");
    writer.write_all(&[7u8; 32 * 1024]).expect("write");
    let first_bridge = trace.position(0, &[r#""type":"ChannelEnteredBridge""#]).expect("a bridge");
    let talking = trace.position(first_bridge + 1, &[r#""type":"ChannelEnteredBridge""#]).expect("second leg") + 1;

    let mut first = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    fake.play(&trace, 0..talking, Pace::MaxSpeed).await;
    wait_until("start, ring and answer delivered", Duration::from_secs(20), || receiver.accepted_count() >= 3).await;
    first.signal("KILL");
    first.wait_exit(Duration::from_secs(5)).await.expect("killed");
    // The call ends while no deskhook runs: its hangup events reach nobody.
    let report = fake.play(&trace, talking..trace.len(), Pace::MaxSpeed).await;
    assert_eq!(report.lost, trace.len() - talking, "the hangup happened while deskhook was down");

    let metrics = listen_for_metrics(Path::new(&config));
    let mut second = Deskhook::spawn(&["run", "--config", &config]);
    wait_until("the ended event", Duration::from_secs(30), || receiver.accepted_count() >= 4).await;
    drop(writer);
    wait_until("the recording", Duration::from_secs(30), || receiver.accepted_count() >= 5).await;
    settled(metrics).await;
    let accepted = receiver.accepted();
    let statuses: Vec<String> = accepted
        .iter()
        .map(|seen| {
            form_fields(&seen.body).get("status").cloned().unwrap_or_else(|| {
                let parts = deliver_support::multipart_parts(&seen.content_type, &seen.body);
                parts
                    .iter()
                    .find(|p| p.name == "status")
                    .map(|p| String::from_utf8_lossy(&p.data).into_owned())
                    .unwrap_or_default()
            })
        })
        .collect();
    assert_eq!(
        statuses,
        [
            "start of an incoming call",
            "incoming call to personal number",
            "incoming call answered",
            "incoming call is ended",
            "record"
        ],
        "{}",
        second.stderr_text()
    );
    let ended = form_fields(&accepted[3].body);
    assert_eq!(ended.get("to_user").map(String::as_str), Some("101"), "{ended:?}");
    // Talk time up to when the killed run was last watching (it died right after the answer).
    let talk: u64 = ended.get("call_duration").and_then(|d| d.parse().ok()).expect("a duration");
    assert!(talk <= 2, "{ended:?}");
    assert_eq!(second.stderr_count("took back 1 calls"), 1, "{}", second.stderr_text());
    assert_eq!(second.stderr_count("previous run was last watching Asterisk"), 1, "{}", second.stderr_text());
    second.stop().await;
}

/// A recording queued for upload and swapped for a symlink out of the recording directories
/// before its turn is not read, not uploaded and not deleted: it is confined again when sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_recording_swapped_for_a_symlink_is_neither_uploaded_nor_deleted() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("tempdir");
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let down = down.clone();
        Receiver::start_with(Arc::new(move |_: &Seen| {
            if down.load(std::sync::atomic::Ordering::SeqCst) {
                Reply::status(503)
            } else {
                Reply::ok()
            }
        }))
        .await
    };
    let config = mixmonitor_config(dir.path(), &fake.url(), &receiver.url(), spool.path());
    let text = std::fs::read_to_string(&config)
        .expect("config")
        .replace("settle = \"30s\"", "settle = \"300ms\"\ndelete_after_upload = true");
    std::fs::write(&config, text).expect("config");
    let name = "01-in-direct-answered";
    let raw = std::fs::read_to_string(fixtures().join(format!("{name}.jsonl")))
        .expect("trace")
        .replace("/var/spool/asterisk/monitor", &spool.path().display().to_string());
    let trace = fake_ari::FakeTrace::parse(&raw).expect("trace");
    let recording = common::expected_values(name)
        .iter()
        .find(|v| v["status"] == "record")
        .map(|v| {
            PathBuf::from(
                v["record"]
                    .as_str()
                    .expect("path")
                    .replace("/var/spool/asterisk/monitor", &spool.path().display().to_string()),
            )
        })
        .expect("a recording");
    std::fs::create_dir_all(recording.parent().expect("parent")).expect("mkdir");
    std::fs::write(&recording, b"RIFF audio").expect("recording");
    let secret = dir.path().join("not-a-recording.txt");
    std::fs::write(&secret, b"private").expect("secret");

    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8")]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    down.store(true, std::sync::atomic::Ordering::SeqCst);
    fake.play(&trace, 0..trace.len(), Pace::MaxSpeed).await;
    deskhook.wait_until("the upload queued", |d| d.stderr_text().contains("recording queued for upload")).await;
    std::fs::remove_file(&recording).expect("rm");
    std::os::unix::fs::symlink(&secret, &recording).expect("symlink");
    down.store(false, std::sync::atomic::Ordering::SeqCst);
    deskhook.wait_until("the upload refused", |d| d.stderr_text().contains("outside recordings.dirs")).await;
    deskhook.stop().await;
    let uploads = receiver.accepted().iter().filter(|seen| seen.content_type.starts_with("multipart/")).count();
    assert_eq!(uploads, 0, "nothing was uploaded");
    assert_eq!(std::fs::read(&secret).expect("still there"), b"private");
    assert!(recording.is_symlink(), "the symlink was not deleted either");
}

/// A call deskhook takes over at its start (it began while deskhook was down) that hangs up
/// before Asterisk could be asked for its channels' MIXMONITOR_FILENAME: its file, whose name
/// carries the call's uniqueid as FreePBX names them, is still found and uploaded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_hangs_up_before_its_recording_could_be_asked_for_is_found_by_name() {
    use fake_ari::{FakeAri, FakeAriOptions, FakeTrace};

    let options = FakeAriOptions { hold_events_while_disconnected: false, ..FakeAriOptions::lab("deskhook", PASSWORD) };
    let fake = FakeAri::start(options).await.expect("fake ARI");
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let name = "01-in-direct-answered";
    let raw = std::fs::read_to_string(fixtures().join(format!("{name}.jsonl"))).expect("trace");
    let trace = FakeTrace::parse(&raw.replace("/var/spool/asterisk/monitor", &spool.path().display().to_string()))
        .expect("trace");
    let file = common::expected_values(name)
        .iter()
        .find(|v| v["status"] == "record")
        .and_then(|v| v["record"].as_str().map(str::to_string))
        .expect("a recording")
        .replace("/var/spool/asterisk/monitor", &spool.path().display().to_string());
    std::fs::create_dir_all(Path::new(&file).parent().expect("dir")).expect("mkdir");
    std::fs::write(&file, b"the whole call").expect("recording");
    // Finished long ago (MixMonitor closed it while deskhook was down): complete past `settle`.
    let aged = std::process::Command::new("touch").args(["-d", "1 hour ago", &file]).status().expect("touch");
    assert!(aged.success());

    // The call rings and is answered while no deskhook is connected.
    let first_bridge = trace.position(0, &[r#""type":"ChannelEnteredBridge""#]).expect("a bridge");
    let answered = trace.position(first_bridge + 1, &[r#""type":"ChannelEnteredBridge""#]).expect("answered") + 1;
    fake.play(&trace, 0..answered, Pace::MaxSpeed).await;
    // deskhook starts and takes the call over from its snapshot; its question for the channels'
    // MIXMONITOR_FILENAME is answered late — by then the call has hung up, its channels gone.
    fake.delay_variables(Duration::from_millis(1500));
    let config = mixmonitor_config(dir.path(), &fake.url(), &receiver.url(), spool.path());
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8")]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected and resynced");
    fake.play(&trace, answered..trace.len(), Pace::MaxSpeed).await;

    let is_upload = |seen: &Seen| seen.content_type.starts_with("multipart/");
    deskhook.wait_until("the recording uploaded", |_| receiver.accepted().iter().any(is_upload)).await;
    deskhook.stop().await;
    let accepted = receiver.accepted();
    let upload = accepted.iter().find(|seen| is_upload(seen)).expect("upload");
    let parts = deliver_support::multipart_parts(&upload.content_type, &upload.body);
    let record = parts.iter().find(|part| part.name == "record").expect("record part");
    assert_eq!(&record.data[..], b"the whole call");
    let ended =
        accepted.iter().position(|seen| form_fields(&seen.body).get("status").is_some_and(|s| s.ends_with("ended")));
    let uploaded = accepted.iter().position(is_upload);
    assert!(ended.is_some() && ended < uploaded, "the upload follows the call's end");
    assert!(deskhook.stderr_text().contains("by its name"), "{}", deskhook.stderr_text());
}

/// Waits until the daemon holds no call open and has nothing pending: no call of it can
/// produce another request, and nothing stored is still to be sent.
async fn settled(metrics: std::net::SocketAddr) {
    wait_for("no call left open", || async { metric(metrics, "deskhook_open_calls").await == 0 }).await;
    wait_outbox_drained(metrics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_proxy_in_the_environment_events_go_through_it_and_ari_does_not() {
    let fake = lab_fake().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The proxy: a plain HTTP proxy gets the webhook's requests in absolute form.
    let proxy = Receiver::start_with(Arc::new(|_: &Seen| Reply::ok())).await;
    let proxy_url = format!("http://{}", proxy.url().trim_start_matches("http://").split('/').next().expect("host"));
    // `.invalid` never resolves: only the proxy can deliver these.
    let webhook = format!("http://helpdesk.invalid/webhooks/asterisk/{TOKEN}");
    let config = delivering_config(dir.path(), &fake.url(), &webhook, "");
    let mut deskhook = Deskhook::spawn_with_env(
        &["run", "--config", config.to_str().expect("utf8")],
        &[("HTTP_PROXY", proxy_url.as_str()), ("NO_PROXY", "")],
    );
    // Connecting takes ARI's REST calls (the resync's channel list): they must not go to the proxy.
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    play_all(&fake).await;
    let expected = expected_by_call();
    let total: usize = expected.values().map(Vec::len).sum();
    wait_until("every event delivered through the proxy", Duration::from_secs(30), || proxy.accepted_count() >= total)
        .await;
    let (got, repeats) = accepted_by_call(&proxy.accepted());
    assert_eq!(got, expected);
    assert_eq!(repeats, 0);
    assert!(
        proxy.attempts().iter().all(|seen| seen.path == format!("/webhooks/asterisk/{TOKEN}")),
        "only the webhook's requests reached the proxy"
    );
    deskhook.stop().await;
    assert!(!deskhook.stderr_text().contains(TOKEN), "the webhook's token leaked into the log");
}
