//! The ARI recorder below the daemon, against the fake ARI, the real outbox and a loopback
//! helpdesk: a call that ended while deskhook was away is finished from the journal, a
//! recording that cannot be started is reported, not retried, and the outbox's delivered hook
//! and tag states that the recorder relies on.

#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod live_support;

use std::path::Path;
use std::time::Duration;

use deliver_support::receiver::Receiver;
use deliver_support::{fast_config, multipart_parts, wait_until};
use deskhook::ari::AriClient;
use deskhook::calls::{Effect, Output};
use deskhook::config::AriConfig;
use deskhook::daemon::Sink;
use deskhook::deliver::{Delivery, DeliveryHandle, Outbox};
use deskhook::recordings::{AriRecorder, AriRecorderSettings};
use fake_ari::{FakeAri, FakeAriOptions, Pace, LAB_SNOOP_RECORDING};
use live_support::{trace, PASSWORD, PATIENCE};

const CALL_ID: &str = "1795237096.10";

/// A fake that applies replayed events even with nobody connected (deskhook is "away").
async fn unattended_fake() -> FakeAri {
    let options = FakeAriOptions { hold_events_while_disconnected: false, ..FakeAriOptions::lab("deskhook", PASSWORD) };
    FakeAri::start(options).await.expect("fake ARI starts")
}

fn client(fake: &FakeAri) -> AriClient {
    let config = AriConfig { url: fake.url(), password: PASSWORD.into(), ..AriConfig::default() };
    AriClient::new(&config).expect("client")
}

fn settings(storage: &Path) -> AriRecorderSettings {
    AriRecorderSettings {
        app: "deskhook".into(),
        format: "wav".into(),
        storage_dir: storage.to_path_buf(),
        stored_wait: Duration::from_secs(5),
        give_up_after: Duration::from_secs(30),
        orphan_grace: Duration::from_millis(300),
        first_retry: Duration::from_millis(50),
    }
}

fn delivery(storage: &Path, receiver: &Receiver) -> DeliveryHandle {
    let outbox = Outbox::open(storage, &fast_config()).expect("outbox");
    Delivery::start(outbox, &receiver.url(), &fast_config()).expect("delivery")
}

fn conversation_started() -> Output {
    Output::Effect(Effect::ConversationStarted { unique_id: CALL_ID.into(), client_channel_id: CALL_ID.into() })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_that_ended_while_deskhook_was_away_is_uploaded_from_the_journal() {
    let fake = unattended_fake().await;
    let trace = trace("01-in-direct-answered");
    let answered = trace.position(0, &[r#""type":"ChannelEnteredBridge""#]).expect("bridged") + 1;
    fake.play(&trace, 0..answered, Pace::MaxSpeed).await;
    let storage = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;

    let first_delivery = delivery(storage.path(), &receiver);
    let mut recorder =
        AriRecorder::start_with(settings(storage.path()), client(&fake), first_delivery.clone()).expect("recorder");
    recorder.accept(&conversation_started()).await;
    let part = format!("deskhook-{CALL_ID}-1");
    wait_until("recording", PATIENCE, || fake.live_recordings() == vec![part.clone()]).await;
    // deskhook goes away without a word; the call ends meanwhile.
    drop(recorder);
    first_delivery.shutdown().await;
    fake.play(&trace, answered..trace.len(), Pace::MaxSpeed).await;
    assert_eq!(fake.stored_recordings(), vec![part.clone()], "the snoop ended with the client's channel");
    assert_eq!(receiver.accepted_count(), 0);

    let second_delivery = delivery(storage.path(), &receiver);
    let _recorder =
        AriRecorder::start_with(settings(storage.path()), client(&fake), second_delivery.clone()).expect("recorder");
    wait_until("the upload", PATIENCE, || receiver.accepted_count() == 1).await;
    wait_until("the stored recording deleted", PATIENCE, || fake.stored_recordings().is_empty()).await;
    let seen = &receiver.accepted()[0];
    let parts = multipart_parts(&seen.content_type, &seen.body);
    let field = |name: &str| parts.iter().find(|p| p.name == name).map(|p| p.data.clone()).unwrap_or_default();
    assert_eq!(field("status"), b"record");
    assert_eq!(field("unique_id"), CALL_ID.as_bytes());
    assert_eq!(field("record"), LAB_SNOOP_RECORDING);
    second_delivery.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_format_asterisk_cannot_record_is_reported_and_nothing_is_left_behind() {
    let fake = unattended_fake().await;
    let trace = trace("01-in-direct-answered");
    let answered = trace.position(0, &[r#""type":"ChannelEnteredBridge""#]).expect("bridged") + 1;
    fake.play(&trace, 0..answered, Pace::MaxSpeed).await;
    let storage = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let delivery = delivery(storage.path(), &receiver);
    let settings = AriRecorderSettings { format: "mp4".into(), ..settings(storage.path()) };
    let mut recorder = AriRecorder::start_with(settings, client(&fake), delivery.clone()).expect("recorder");
    recorder.accept(&conversation_started()).await;
    let record = format!("POST /ari/channels/deskhook-snoop-{CALL_ID}-1/record");
    fake.wait_for(PATIENCE, |status| status.requests_of(&record) == 1).await.expect("record was asked");
    // The refused snoop is hung up: it leaves Stasis at once.
    let hangup = format!("DELETE /ari/channels/deskhook-snoop-{CALL_ID}-1");
    fake.wait_for(PATIENCE, |status| status.requests_of(&hangup) == 1).await.expect("snoop hung up");
    recorder.accept(&Output::Effect(Effect::CallClosed { unique_id: CALL_ID.into(), answered: true })).await;
    fake.play(&trace, answered..trace.len(), Pace::MaxSpeed).await;
    // The recorder is done with a call once its journal forgets it: it never asks again after that.
    let journal = storage.path().join(deskhook::recordings::ari::JOURNAL_FILE);
    wait_until("the call forgotten by the journal", PATIENCE, || journal_calls(&journal) == 0).await;
    assert_eq!(fake.status().requests_of(&record), 1, "a 422 is not retried");
    assert!(fake.live_recordings().is_empty() && fake.stored_recordings().is_empty());
    assert_eq!(receiver.accepted_count(), 0);
    delivery.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_announces_accepted_tagged_uploads_and_remembers_their_tags_across_restarts() {
    use deliver_support::receiver::{Reply, Seen};
    use deskhook::deliver::{Delivered, Request, RowState};
    use std::sync::{Arc, Mutex};

    let storage = tempfile::tempdir().expect("tempdir");
    let file = storage.path().join("part.wav");
    std::fs::write(&file, LAB_SNOOP_RECORDING).expect("write");
    let receiver = Receiver::start_with(Arc::new(|_: &Seen| Reply::status(503))).await;
    let delivery = delivery(storage.path(), &receiver);
    let heard = Arc::new(Mutex::new(Vec::<Delivered>::new()));
    let sink = heard.clone();
    delivery.on_delivered(Arc::new(move |delivered| sink.lock().expect("not poisoned").push(delivered.clone())));
    let other = storage.path().join("other.wav");
    std::fs::write(&other, b"RIFF").expect("write");
    let untagged = Request::upload(CALL_ID, &other, false);
    delivery.enqueue(vec![Request::upload(CALL_ID, &file, true).tagged("t:1"), untagged]).await.expect("stored");
    wait_until("a failed try", PATIENCE, || !receiver.attempts().is_empty()).await;
    let states = delivery.tag_states(vec!["t:1".into(), "t:2".into()]).await.expect("states");
    assert_eq!(states, vec![("t:1".to_string(), Some(RowState::Pending)), ("t:2".to_string(), None)]);
    assert!(heard.lock().expect("not poisoned").is_empty(), "not accepted yet");

    receiver.set_script(Arc::new(|_: &Seen| Reply::ok()));
    wait_until("both uploads accepted", PATIENCE, || receiver.accepted_count() == 2).await;
    // Only the tagged upload is announced.
    assert_eq!(*heard.lock().expect("not poisoned"), vec![Delivered { unique_id: CALL_ID.into(), tag: "t:1".into() }]);
    assert!(!file.exists(), "the uploaded file is deleted");
    delivery.shutdown().await;

    let reopened = self::delivery(storage.path(), &receiver);
    let states = reopened.tag_states(vec!["t:1".into()]).await.expect("states");
    assert_eq!(states, vec![("t:1".to_string(), Some(RowState::Delivered))]);
    reopened.shutdown().await;
}

/// Calls the recorder's journal still holds (read beside the recorder, as `deskhook` tools do).
fn journal_calls(path: &Path) -> i64 {
    let Ok(conn) = rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY) else {
        return -1;
    };
    conn.query_row("SELECT COUNT(*) FROM ari_calls", [], |row| row.get(0)).unwrap_or(-1)
}
