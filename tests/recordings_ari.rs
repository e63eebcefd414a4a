//! ARI recording mode through the real `deskhook run`: the fake ARI replays real calls and
//! plays Asterisk's part (snoop channels, live and stored recordings), a loopback helpdesk
//! takes the uploads. One upload per answered call, after its ended event, with exactly the
//! bytes Asterisk stored, which is then deleted on Asterisk; nothing for unanswered calls; a
//! reconnect mid-call gives a second part, uploaded after the first.

mod common;
#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod live_support;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use deliver_support::receiver::{Receiver, Reply, Seen};
use deliver_support::{form_fields, multipart_parts, wait_until};
use fake_ari::{FakeAri, FakeTrace, Pace, LAB_SNOOP_RECORDING};
use live_support::*;
use sha2::{Digest, Sha256};

const ANSWERED: &str = "01-in-direct-answered";
const ANSWERED_ID: &str = "1795237096.10";
const UNANSWERED: &str = "02-in-direct-noanswer-callercancel";
const SPEEDUP: f64 = 10.0;

/// The lab config in ari mode, delivering to `webhook` with fast retries.
fn ari_config(dir: &Path, ari_url: &str, webhook: &str) -> PathBuf {
    let path = write_config(dir, ari_url, PASSWORD, "");
    let text = std::fs::read_to_string(&path).expect("config").replace("mode = \"mixmonitor\"", "mode = \"ari\"");
    let text = format!(
        "{text}\n[helpdesk]\nwebhook_url = \"{webhook}\"\nmin_backoff = \"50ms\"\nmax_backoff = \"300ms\"\n\
         request_timeout = \"20s\"\n"
    );
    std::fs::write(&path, text).expect("config");
    path
}

/// Index just after both legs of the call are bridged: the call is answered and talking.
fn after_answer(trace: &FakeTrace) -> usize {
    let first = trace.position(0, &[r#""type":"ChannelEnteredBridge""#]).expect("a bridge");
    trace.position(first + 1, &[r#""type":"ChannelEnteredBridge""#]).expect("a second leg in the bridge") + 1
}

fn is_upload(seen: &Seen) -> bool {
    seen.content_type.starts_with("multipart/form-data")
}

/// (status, unique_id) of an accepted request, whatever its format.
fn status_and_call(seen: &Seen) -> (String, String) {
    if is_upload(seen) {
        let parts = multipart_parts(&seen.content_type, &seen.body);
        let field =
            |name: &str| parts.iter().find(|p| p.name == name).map(|p| String::from_utf8_lossy(&p.data).into_owned());
        (field("status").unwrap_or_default(), field("unique_id").unwrap_or_default())
    } else {
        let fields = form_fields(&seen.body);
        (fields.get("status").cloned().unwrap_or_default(), fields.get("unique_id").cloned().unwrap_or_default())
    }
}

/// (file name, SHA-256 of the bytes) of an upload's `record` part.
fn recording_of(seen: &Seen) -> (String, Vec<u8>) {
    let parts = multipart_parts(&seen.content_type, &seen.body);
    let record = parts.iter().find(|p| p.name == "record").expect("a record part");
    (record.filename.clone().unwrap_or_default(), Sha256::digest(&record.data).to_vec())
}

/// The expected helpdesk events of a trace without MixMonitor's `record` lines.
fn expected_events(name: &str) -> Vec<serde_json::Value> {
    common::expected_values(name).into_iter().filter(|value| value["status"] != "record").collect()
}

/// A helpdesk that notes whether a recording's stored copy still existed when its upload came.
fn watching_receiver(
    fake: &Arc<FakeAri>,
    deleted_too_early: &Arc<AtomicBool>,
) -> Arc<dyn Fn(&Seen) -> Reply + Send + Sync> {
    let (fake, flag) = (fake.clone(), deleted_too_early.clone());
    Arc::new(move |seen: &Seen| {
        if is_upload(seen) {
            let (name, _) = recording_of(seen);
            let stored = name.trim_end_matches(".wav");
            if !fake.stored_recordings().iter().any(|known| known == stored) {
                flag.store(true, Ordering::SeqCst);
            }
        }
        Reply::ok()
    })
}

async fn wait_live_recording(fake: &FakeAri, name: &str, deskhook: &Deskhook) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while !fake.live_recordings().iter().any(|live| live == name) {
        assert!(
            std::time::Instant::now() < deadline,
            "recording {name} never started; live: {:?}\n{}",
            fake.live_recordings(),
            deskhook.stderr_text()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answered_call_uploads_what_asterisk_recorded_after_its_end_and_an_unanswered_one_nothing() {
    let fake = Arc::new(lab_fake().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let deleted_too_early = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start_with(watching_receiver(&fake, &deleted_too_early)).await;
    let config = ari_config(dir.path(), &fake.url(), &receiver.url());
    let metrics = listen_for_metrics(&config);
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8"), "--print-events"]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");

    let answered = trace(ANSWERED);
    let cut = after_answer(&answered);
    let mut sent = fake.play(&answered, 0..cut, Pace::Recorded { speedup: SPEEDUP }).await.written();
    let name = format!("deskhook-{ANSWERED_ID}-1");
    wait_live_recording(&fake, &name, &deskhook).await;
    assert_eq!(fake.snoop_channels(), vec![format!("deskhook-snoop-{ANSWERED_ID}-1")]);
    sent += fake.play(&answered, cut..answered.len(), Pace::Recorded { speedup: SPEEDUP }).await.written();
    let unanswered = trace(UNANSWERED);
    sent += fake.play(&unanswered, 0..unanswered.len(), Pace::Recorded { speedup: SPEEDUP }).await.written();

    let requests = expected_events(ANSWERED).len() + expected_events(UNANSWERED).len() + 1;
    wait_until("the events and one upload", PATIENCE, || receiver.accepted_count() >= requests).await;
    wait_until("the stored recording deleted on Asterisk", PATIENCE, || fake.stored_recordings().is_empty()).await;
    // Every message handled and nothing pending: a stray second upload or snoop would show.
    wait_messages_handled(metrics, sent).await;
    wait_outbox_drained(metrics).await;
    deskhook.stop().await;

    let accepted = receiver.accepted();
    let uploads: Vec<&Seen> = accepted.iter().filter(|seen| is_upload(seen)).collect();
    assert_eq!(uploads.len(), 1, "one upload, for the answered call only");
    assert_eq!(status_and_call(uploads[0]), ("record".to_string(), ANSWERED_ID.to_string()));
    let (file_name, digest) = recording_of(uploads[0]);
    assert_eq!(file_name, format!("{name}.wav"));
    assert_eq!(digest, Sha256::digest(LAB_SNOOP_RECORDING).to_vec(), "exactly the bytes Asterisk stored");
    let ended_at = accepted
        .iter()
        .position(|seen| status_and_call(seen) == ("incoming call is ended".to_string(), ANSWERED_ID.to_string()))
        .expect("the ended event was delivered");
    let upload_at = accepted.iter().position(is_upload).expect("upload");
    assert!(upload_at > ended_at, "the recording came before the call's ended event");
    assert!(!deleted_too_early.load(Ordering::SeqCst), "the stored recording was deleted before the helpdesk had it");

    let status = fake.status();
    assert_eq!(status.requests_of(&format!("DELETE /ari/recordings/stored/{name}")), 1);
    let snoops: u64 = status.requests.iter().filter(|(key, _)| key.ends_with("/snoop")).map(|(_, count)| *count).sum();
    assert_eq!(snoops, 1, "no snoop for the unanswered call: {:?}", status.requests);
    assert!(fake.snoop_channels().is_empty() && fake.live_recordings().is_empty());
    // The snoop's own events (ChannelCreated, StasisStart, ...) never became helpdesk events.
    let mut expected = expected_events(ANSWERED);
    expected.extend(expected_events(UNANSWERED));
    assert_eq!(deskhook.events(), expected, "{}", deskhook.stderr_text());
    assert_eq!(deskhook.stderr_count(" WARN "), 0, "{}", deskhook.stderr_text());
    let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("recordings")).expect("download dir").collect();
    assert!(leftovers.is_empty(), "the uploaded copy is deleted: {leftovers:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnect_mid_call_records_a_second_part_and_both_are_uploaded_in_order() {
    let fake = Arc::new(lab_fake().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let deleted_too_early = Arc::new(AtomicBool::new(false));
    let receiver = Receiver::start_with(watching_receiver(&fake, &deleted_too_early)).await;
    let config = ari_config(dir.path(), &fake.url(), &receiver.url());
    let mut deskhook = Deskhook::spawn(&["run", "--config", config.to_str().expect("utf8"), "--print-events"]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");

    let answered = trace(ANSWERED);
    let cut = after_answer(&answered);
    fake.play(&answered, 0..cut, Pace::Recorded { speedup: SPEEDUP }).await;
    let first = format!("deskhook-{ANSWERED_ID}-1");
    let second = format!("deskhook-{ANSWERED_ID}-2");
    wait_live_recording(&fake, &first, &deskhook).await;
    fake.drop_connections();
    fake.wait_for(PATIENCE, |status| status.connections >= 2 && status.ready).await.expect("reconnected");
    wait_live_recording(&fake, &second, &deskhook).await;
    fake.play(&answered, cut..answered.len(), Pace::Recorded { speedup: SPEEDUP }).await;

    let events = expected_events(ANSWERED).len();
    wait_until("the events and two uploads", PATIENCE, || receiver.accepted_count() >= events + 2).await;
    wait_until("both stored recordings deleted", PATIENCE, || fake.stored_recordings().is_empty()).await;
    deskhook.stop().await;

    let accepted = receiver.accepted();
    let ended_at = accepted
        .iter()
        .position(|seen| status_and_call(seen).0 == "incoming call is ended")
        .expect("the ended event was delivered");
    let uploads: Vec<(usize, &Seen)> = accepted.iter().enumerate().filter(|(_, seen)| is_upload(seen)).collect();
    assert_eq!(uploads.len(), 2);
    assert!(uploads.iter().all(|(at, _)| *at > ended_at), "recordings come after the ended event");
    let names: Vec<String> = uploads.iter().map(|(_, seen)| recording_of(seen).0).collect();
    assert_eq!(names, vec![format!("{first}.wav"), format!("{second}.wav")], "parts in the order they were recorded");
    for (_, seen) in &uploads {
        assert_eq!(status_and_call(seen), ("record".to_string(), ANSWERED_ID.to_string()));
        assert_eq!(recording_of(seen).1, Sha256::digest(LAB_SNOOP_RECORDING).to_vec());
    }
    assert!(!deleted_too_early.load(Ordering::SeqCst));
    assert_eq!(deskhook.events(), expected_events(ANSWERED), "{}", deskhook.stderr_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_while_the_helpdesk_is_down_still_uploads_and_then_deletes_asterisks_copy() {
    let fake = Arc::new(lab_fake().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let addr = deliver_support::receiver::reserve_addr();
    let webhook = format!("http://{addr}/webhooks/asterisk/{}", deliver_support::receiver::TOKEN);
    let config = ari_config(dir.path(), &fake.url(), &webhook);
    let config = config.to_str().expect("utf8").to_string();
    let mut first = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    let answered = trace(ANSWERED);
    let cut = after_answer(&answered);
    fake.play(&answered, 0..cut, Pace::Recorded { speedup: SPEEDUP }).await;
    let name = format!("deskhook-{ANSWERED_ID}-1");
    wait_live_recording(&fake, &name, &first).await;
    fake.play(&answered, cut..answered.len(), Pace::Recorded { speedup: SPEEDUP }).await;
    // Nobody listens at the webhook: the download waits in storage.dir for its upload.
    let local = dir.path().join("recordings").join(format!("{name}.wav"));
    wait_until("the recording downloaded and queued", PATIENCE, || first.stderr_count("recording queued") == 1).await;
    assert_eq!(std::fs::read(&local).expect("local copy"), LAB_SNOOP_RECORDING);
    first.stop().await;
    assert_eq!(fake.stored_recordings(), vec![name.clone()], "kept on Asterisk until the helpdesk has it");

    let mut second = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.connections >= 2 && status.ready).await.expect("reconnected");
    let receiver = Receiver::start_on(addr, Arc::new(|_: &Seen| Reply::ok())).await;
    let requests = expected_events(ANSWERED).len() + 1;
    wait_until("the events and the upload", PATIENCE, || receiver.accepted_count() >= requests).await;
    wait_until("the stored recording deleted", PATIENCE, || fake.stored_recordings().is_empty()).await;
    second.stop().await;
    let uploads: Vec<Seen> = receiver.accepted().into_iter().filter(is_upload).collect();
    assert_eq!(uploads.len(), 1);
    assert_eq!(recording_of(&uploads[0]), (format!("{name}.wav"), Sha256::digest(LAB_SNOOP_RECORDING).to_vec()));
    assert!(!local.exists(), "the uploaded copy is deleted");
    assert_eq!(fake.status().requests_of(&format!("GET /ari/recordings/stored/{name}/file")), 1, "downloaded once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_killed_mid_call_continues_with_the_next_part_after_its_restart() {
    let fake = Arc::new(lab_fake().await);
    let dir = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let config = ari_config(dir.path(), &fake.url(), &receiver.url());
    let config = config.to_str().expect("utf8").to_string();
    let mut first = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    let answered = trace(ANSWERED);
    let cut = after_answer(&answered);
    fake.play(&answered, 0..cut, Pace::Recorded { speedup: SPEEDUP }).await;
    let (part1, part2) = (format!("deskhook-{ANSWERED_ID}-1"), format!("deskhook-{ANSWERED_ID}-2"));
    wait_live_recording(&fake, &part1, &first).await;
    first.signal("KILL");
    assert!(first.wait_exit(Duration::from_secs(5)).await.is_some(), "killed");
    // Its websocket is gone, so Asterisk ended the snoop: part 1 is stored.
    wait_until("part 1 stored", PATIENCE, || fake.stored_recordings() == vec![part1.clone()]).await;

    let mut second = Deskhook::spawn(&["run", "--config", &config]);
    wait_live_recording(&fake, &part2, &second).await;
    fake.play(&answered, cut..answered.len(), Pace::Recorded { speedup: SPEEDUP }).await;
    let uploads = || receiver.accepted().into_iter().filter(is_upload).count();
    wait_until("both parts uploaded", PATIENCE, || uploads() >= 2).await;
    wait_until("both stored recordings deleted", PATIENCE, || fake.stored_recordings().is_empty()).await;
    second.stop().await;
    let names: Vec<String> =
        receiver.accepted().iter().filter(|seen| is_upload(seen)).map(|seen| recording_of(seen).0).collect();
    assert_eq!(names, vec![format!("{part1}.wav"), format!("{part2}.wav")]);
}
