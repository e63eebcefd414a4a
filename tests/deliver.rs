//! Durable delivery end to end: a real loopback webhook receiver that is down, failing, slow or
//! rejecting; real SQLite outbox files; the real `deskhook outbox` binary.

mod deliver_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use deliver_support::receiver::{reserve_addr, Receiver, Reply, Seen, TOKEN};
use deliver_support::{call_and_seq, capture_logs, event, fast_config, multipart_parts, wait_until};
use deskhook::calls::{CallEvent, CallSummary, Happened, Parties};
use deskhook::deliver::{DeliverError, Delivery, DeliveryHandle, Outbox, Request, RowState};
use deskhook::sinks::omnidesk;

const LONG: Duration = Duration::from_secs(30);

fn utc() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::UTC
}

/// Enqueues `per_call` events of each call, interleaved across calls, one enqueue per event.
async fn enqueue_interleaved(handle: &DeliveryHandle, calls: &[String], per_call: usize) {
    let mut pending = Vec::new();
    for seq in 0..per_call {
        for call in calls {
            pending.push(handle.enqueue(vec![event(call, seq, per_call).request(&utc())]));
        }
    }
    for stored in pending {
        stored.await.expect("enqueue is durable");
    }
}

fn calls(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|index| format!("{prefix}.{index}")).collect()
}

/// Accepted events per call, in the order the receiver accepted them.
fn accepted_by_call(seen: &[Seen]) -> BTreeMap<String, Vec<usize>> {
    let mut by_call: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for request in seen {
        let (call, seq) = call_and_seq(&request.body).expect("an event body");
        by_call.entry(call).or_default().push(seq);
    }
    by_call
}

fn assert_each_call_exactly_in_order(receiver: &Receiver, calls: &[String], per_call: usize) {
    let by_call = accepted_by_call(&receiver.accepted());
    let expected: Vec<usize> = (0..per_call).collect();
    for call in calls {
        assert_eq!(by_call.get(call), Some(&expected), "events of call {call} in order, each once");
    }
    assert_eq!(by_call.len(), calls.len());
}

async fn wait_settled(handle: &DeliveryHandle, delivered: u64) {
    wait_until("the outbox records every delivery", LONG, || {
        let counts = handle.counts();
        counts.delivered == delivered && counts.pending == 0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_once_a_down_receiver_comes_up() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let addr = reserve_addr();
    let url = format!("http://{addr}/webhooks/asterisk/{TOKEN}");
    let mut cfg = fast_config();
    // Backoffs far longer than the test: only waking the waiting calls on recovery delivers them in time.
    cfg.min_backoff.0 = Duration::from_secs(60);
    cfg.max_backoff.0 = Duration::from_secs(120);
    let handle = Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &url, &cfg).expect("start");
    let calls = calls("1700000001", 5);
    enqueue_interleaved(&handle, &calls, 6).await;
    wait_until("every call's first event failed once", LONG, || last_errors(storage.path()).len() == 5).await;
    assert!(last_errors(storage.path())[0].starts_with(&format!("cannot connect to http://{addr}")));
    assert_eq!(handle.counts().pending, 30, "nothing can be delivered while the receiver is down");

    let receiver = Receiver::start_on(addr, Arc::new(|_: &Seen| Reply::ok())).await;
    // A new call's first try goes at once; its success shows the helpdesk is back.
    enqueue_interleaved(&handle, &["1700000001.new".to_string()], 1).await;
    wait_settled(&handle, 31).await;
    let by_call = accepted_by_call(&receiver.accepted());
    for call in &calls {
        assert_eq!(by_call.get(call), Some(&(0..6).collect()), "events of call {call} in order, each once");
    }
    assert_eq!(by_call.get("1700000001.new"), Some(&vec![0]));
    assert_eq!(receiver.accepted_count(), 31);
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_order_is_kept() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let failures = 12;
    let receiver = Receiver::start_with(Arc::new(move |seen: &Seen| {
        if seen.number <= failures {
            Reply::status(if seen.number.is_multiple_of(2) { 500 } else { 503 }).with_body("maintenance")
        } else {
            Reply::ok()
        }
    }))
    .await;
    let cfg = fast_config();
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    let calls = calls("1700000002", 4);
    enqueue_interleaved(&handle, &calls, 5).await;

    wait_settled(&handle, 20).await;
    assert_each_call_exactly_in_order(&receiver, &calls, 5);
    assert_eq!(receiver.attempts().len(), 20 + failures, "each failure was tried again, nothing more");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_slower_than_the_timeout_is_retried_until_fast_again() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    // The slow answers would be errors anyway: only a client that gave up early can deliver.
    let receiver = Receiver::start_with(Arc::new(|seen: &Seen| {
        if seen.number <= 3 {
            Reply::status(503).delayed(Duration::from_secs(3))
        } else {
            Reply::ok()
        }
    }))
    .await;
    let mut cfg = fast_config();
    cfg.request_timeout.0 = Duration::from_millis(300);
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    let calls = calls("1700000003", 3);
    enqueue_interleaved(&handle, &calls, 3).await;

    wait_settled(&handle, 9).await;
    assert_each_call_exactly_in_order(&receiver, &calls, 3);
    let timeouts = last_errors(storage.path())
        .iter()
        .filter(|error| error.contains("within helpdesk.request_timeout = 300ms"))
        .count();
    assert_eq!(timeouts, 3, "the first three tries timed out on the client side");
    handle.shutdown().await;
}

/// `last_error` of every row, read straight from the file.
fn last_errors(storage: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(storage.join(deskhook::deliver::OUTBOX_FILE)).expect("open db");
    let mut statement = conn.prepare("SELECT last_error FROM outbox WHERE last_error IS NOT NULL").expect("prepare");
    let errors = statement.query_map([], |row| row.get(0)).expect("query").collect::<Result<Vec<String>, _>>();
    errors.expect("rows")
}

#[test]
fn killing_the_runtime_mid_delivery_loses_nothing() {
    capture_logs();
    let receiver_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build();
    let receiver_runtime = receiver_runtime.expect("receiver runtime");
    // Slow enough that requests are in flight when the sender is killed.
    let receiver = receiver_runtime
        .block_on(Receiver::start_with(Arc::new(|_: &Seen| Reply::ok().delayed(Duration::from_millis(15)))));
    let storage = tempfile::tempdir().expect("tempdir");
    let cfg = fast_config();
    let calls = calls("1700000004", 12);
    let per_call = 15;
    let total = calls.len() * per_call;

    // First life: its own runtime, shut down abruptly once part of the backlog is delivered.
    let sender_runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build();
    let sender_runtime = sender_runtime.expect("sender runtime");
    sender_runtime.block_on(async {
        let handle =
            Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
        enqueue_interleaved(&handle, &calls, per_call).await;
        wait_until("part of the backlog delivered", LONG, || receiver.accepted_count() >= total / 3).await;
    });
    sender_runtime.shutdown_background();
    let at_kill = receiver.accepted_count();
    assert!(at_kill < total, "the kill must happen mid-delivery ({at_kill} of {total} already accepted)");

    // Second life: same file, fresh delivery.
    receiver_runtime.block_on(async {
        let handle = Delivery::start(Outbox::open(storage.path(), &cfg).expect("reopen"), &receiver.url(), &cfg)
            .expect("restart");
        wait_until("every event accepted at least once", LONG, || {
            let by_call = accepted_by_call(&receiver.accepted());
            calls.iter().all(|call| by_call.get(call).is_some_and(|seqs| (0..per_call).all(|seq| seqs.contains(&seq))))
        })
        .await;
        wait_until("the outbox drained", LONG, || handle.counts().pending == 0).await;
        handle.shutdown().await;
    });

    let accepted = receiver.accepted();
    let duplicates = accepted.len() - total;
    eprintln!("killed after {at_kill} of {total} accepted; {duplicates} sent twice");
    assert!(
        duplicates <= cfg.max_parallel,
        "at most the {} requests in flight at the kill may be sent twice, got {duplicates} duplicates",
        cfg.max_parallel
    );
    for (call, seqs) in accepted_by_call(&accepted) {
        // New events of a call arrive strictly in order; a repeat is only ever of the latest one.
        let mut highest: Option<usize> = None;
        for seq in seqs {
            match highest {
                Some(top) if seq <= top => assert_eq!(seq, top, "call {call}: only the last sent event may repeat"),
                _ => {
                    assert_eq!(seq, highest.map_or(0, |top| top + 1), "call {call}: nothing skipped");
                    highest = Some(seq);
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_errors_are_dead_lettered_listed_and_retried_through_the_binary() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let rejecting = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let reject = rejecting.clone();
    let script = move |seen: &Seen| {
        let is_bad = call_and_seq(&seen.body).is_some_and(|(call, seq)| call == "1700000005.1" && seq == 1);
        if is_bad && reject.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::status(400).with_body("unknown operator")
        } else {
            Reply::ok()
        }
    };
    let receiver = Receiver::start_with(Arc::new(script)).await;
    let cfg = fast_config();
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    enqueue_interleaved(&handle, &["1700000005.1".to_string(), "1700000005.2".to_string()], 3).await;

    wait_until("one dead, five delivered", LONG, || {
        let counts = handle.counts();
        counts.dead == 1 && counts.delivered == 5 && counts.pending == 0
    })
    .await;
    let bad_tries =
        receiver.attempts().iter().filter(|seen| call_and_seq(&seen.body) == Some(("1700000005.1".into(), 1))).count();
    assert_eq!(bad_tries, cfg.client_error_tries as usize, "a 4xx is tried client_error_tries times");
    let later = accepted_by_call(&receiver.accepted());
    assert_eq!(later.get("1700000005.1"), Some(&vec![0, 2]), "the call's later event is not held up by a dead one");

    // The listing the `outbox list` command prints.
    let listing = Outbox::open(storage.path(), &cfg).expect("admin open").listing(100, None).expect("listing");
    assert_eq!(listing.rows.len(), 1);
    let dead = &listing.rows[0];
    assert_eq!(
        (dead.state, dead.unique_id.as_str(), dead.status.as_str()),
        (RowState::Dead, "1700000005.1", "incoming call answered")
    );
    assert_eq!(dead.tries, 2);
    let error = dead.last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with(&format!("HTTP 400 Bad Request from http://{}: unknown operator", receiver.addr)),
        "{error}"
    );
    assert!(!error.contains(TOKEN), "{error}");

    let config_dir = tempfile::tempdir().expect("tempdir");
    let config = deliver_support::write_config(config_dir.path(), storage.path(), &receiver.url());
    let list = run_outbox(&config, "list");
    assert!(list.contains("dead") && list.contains("1700000005.1") && list.contains("HTTP 400"), "{list}");
    assert!(list.contains("0 pending, 1 dead, 5 delivered"), "{list}");
    assert!(!list.contains(TOKEN), "{list}");

    rejecting.store(false, std::sync::atomic::Ordering::SeqCst);
    let retried = run_outbox(&config, "retry");
    assert!(retried.starts_with("re-queued 1 dead request(s)"), "{retried}");
    wait_until("the re-queued request delivered by the running delivery", LONG, || {
        handle.counts().delivered == 6 && handle.counts().dead == 0
    })
    .await;
    let later = accepted_by_call(&receiver.accepted());
    assert_eq!(later.get("1700000005.1"), Some(&vec![0, 2, 1]));
    assert!(run_outbox(&config, "list").contains("0 pending, 0 dead, 6 delivered"));

    // A recording that vanished is dead at once, with a reason; `purge` drops it.
    let gone = storage.path().join("vanished.wav");
    handle.enqueue(vec![Request::upload("1700000005.1", &gone, false)]).await.expect("enqueue");
    wait_until("the upload dead-lettered", LONG, || handle.counts().dead == 1).await;
    let list = run_outbox(&config, "list");
    assert!(list.contains("record") && list.contains("vanished.wav is missing"), "{list}");
    assert!(run_outbox(&config, "purge").starts_with("dropped 1 dead request(s)"));
    assert!(run_outbox(&config, "list").contains("0 pending, 0 dead, 6 delivered"));
    wait_until("the running delivery notices the purge", LONG, || handle.counts().dead == 0).await;
    handle.shutdown().await;

    let logs = deliver_support::captured_logs();
    assert!(logs.contains("dead-lettered"), "dead letters are logged");
    assert!(!logs.contains(TOKEN), "the webhook path never reaches the log");
}

/// Runs `deskhook outbox ACTION --config CONFIG`, expects exit 0, returns stdout.
fn run_outbox(config: &std::path::Path, action: &str) -> String {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_deskhook"))
        .args(["outbox", action, "--config"])
        .arg(config)
        .output()
        .expect("run deskhook");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "outbox {action}: {:?}\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_form_post_is_byte_exact() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let cfg = fast_config();
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    let moscow = jiff::tz::TimeZone::get("Europe/Moscow").expect("tzdb");
    // Built as the engine would emit them, mapped as the helpdesk sink maps them.
    let at = "2024-05-01T09:00:00Z".parse::<jiff::Timestamp>().expect("ts").as_millisecond();
    let parties = Parties::incoming("+79161234567", "74951234567");
    let queued = CallEvent {
        unique_id: "1700000000.26".into(),
        at,
        parties: parties.clone(),
        what: Happened::Ringing {
            extensions: vec!["101".into(), "102".into()], queue: Some("поддержка".into())
        },
    };
    let summary = CallSummary::unanswered(at, at + 65_000).answered_by("102", 42);
    let ended = CallEvent { at: at + 65_000, what: Happened::Ended(Box::new(summary)), ..queued.clone() };
    let [queued, ended] = [&queued, &ended].map(|event| omnidesk::map(event).expect("a helpdesk event"));
    handle.enqueue(vec![queued.request(&moscow), ended.request(&moscow)]).await.expect("enqueue");
    wait_until("both accepted", LONG, || receiver.accepted_count() == 2).await;

    let accepted = receiver.accepted();
    assert_eq!(accepted[0].path, format!("/webhooks/asterisk/{TOKEN}"));
    assert_eq!(accepted[0].content_type, "application/x-www-form-urlencoded");
    assert_eq!(
        std::str::from_utf8(&accepted[0].body).expect("ascii"),
        "datetime=01.05.2024-12%3A00%3A00&from_user=%2B79161234567&to_user=101%2C102&unique_id=1700000000.26\
         &status=call+to+queue+%D0%BF%D0%BE%D0%B4%D0%B4%D0%B5%D1%80%D0%B6%D0%BA%D0%B0"
    );
    assert_eq!(
        std::str::from_utf8(&accepted[1].body).expect("ascii"),
        "datetime=01.05.2024-12%3A01%3A05&from_user=%2B79161234567&to_user=102&unique_id=1700000000.26\
         &status=incoming+call+is+ended&call_duration=42"
    );
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_upload_streams_the_exact_file_in_the_spec_parts() {
    use sha2::{Digest, Sha256};
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let recordings = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let cfg = fast_config();
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");

    // 3 MB of non-repeating bytes, larger than any single read or send buffer.
    let mut content = Vec::with_capacity(3 << 20);
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    while content.len() < 3 << 20 {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        content.extend_from_slice(&state.to_le_bytes());
    }
    let deleted = recordings.path().join("in-101-1700000000.26.wav");
    let kept = recordings.path().join("in-102-1700000000.26.mp3");
    std::fs::write(&deleted, &content).expect("write recording");
    std::fs::write(&kept, b"second recording").expect("write recording");
    let empty = recordings.path().join("empty.wav");
    std::fs::write(&empty, b"").expect("write empty");

    handle
        .enqueue(vec![
            Request::upload("1700000000.26", &deleted, true),
            Request::upload("1700000000.26", &kept, false),
            Request::upload("1700000000.26", &empty, true),
        ])
        .await
        .expect("enqueue");
    wait_until("two uploads accepted, the empty one dead", LONG, || {
        let counts = handle.counts();
        counts.delivered == 2 && counts.dead == 1
    })
    .await;

    let accepted = receiver.accepted();
    assert_eq!(accepted.len(), 2);
    let first = &accepted[0];
    assert!(first.content_type.starts_with("multipart/form-data; boundary="), "{}", first.content_type);
    assert_eq!(first.content_length, Some(first.body.len() as u64), "the length is announced up front");
    let parts = multipart_parts(&first.content_type, &first.body);
    let names: Vec<&str> = parts.iter().map(|part| part.name.as_str()).collect();
    assert_eq!(names, ["status", "unique_id", "record"]);
    assert_eq!((parts[0].data.as_slice(), parts[0].filename.as_deref()), (&b"record"[..], None));
    assert_eq!(parts[1].data, b"1700000000.26");
    assert_eq!(parts[2].filename.as_deref(), Some("in-101-1700000000.26.wav"));
    assert_eq!(parts[2].content_type.as_deref(), Some("audio/wav"));
    assert_eq!(Sha256::digest(&parts[2].data), Sha256::digest(&content), "the file arrives byte for byte");

    let second = multipart_parts(&accepted[1].content_type, &accepted[1].body);
    assert_eq!(second[2].filename.as_deref(), Some("in-102-1700000000.26.mp3"));
    assert_eq!(second[2].data, b"second recording");

    wait_until("the uploaded file with delete_after is removed", LONG, || !deleted.exists()).await;
    assert!(kept.exists(), "a file without delete_after stays");
    assert!(empty.exists(), "a file that was not uploaded is never deleted");
    let listing = Outbox::open(storage.path(), &cfg).expect("admin open").listing(10, None).expect("listing");
    let error = listing.rows[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("empty.wav is empty"), "{error}");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_ended_are_stored_once_per_call_even_across_restarts() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let cfg = fast_config();
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    let call = "1700000006.1";
    let start = event(call, 0, 3).request(&utc());
    let answered = event(call, 1, 3).request(&utc());
    let ended = event(call, 2, 3).request(&utc());
    handle.enqueue(vec![start.clone(), start.clone(), answered.clone()]).await.expect("enqueue");
    handle.enqueue(vec![answered.clone(), start.clone(), ended.clone(), ended.clone()]).await.expect("enqueue");
    wait_settled(&handle, 4).await;
    handle.shutdown().await;
    assert!(matches!(handle.enqueue(vec![start.clone()]).await, Err(DeliverError::Stopped)));

    // A restarted daemon that re-adopts the call emits start and ended again: no-ops.
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("reopen"), &receiver.url(), &cfg).expect("restart");
    handle.enqueue(vec![start, ended, answered]).await.expect("enqueue");
    wait_settled(&handle, 5).await;
    let seqs = accepted_by_call(&receiver.accepted()).remove(call).unwrap_or_default();
    assert_eq!(seqs, vec![0, 1, 1, 2, 1], "start and ended once; answered every time");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_cap_drops_delivered_rows_first_then_refuses_loudly() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let fail = failing.clone();
    let receiver = Receiver::start_with(Arc::new(move |_: &Seen| {
        if fail.load(std::sync::atomic::Ordering::SeqCst) {
            Reply::status(503)
        } else {
            Reply::ok()
        }
    }))
    .await;
    let mut cfg = fast_config();
    cfg.outbox_max_rows = 100;
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    let batch = |prefix: &str, count: usize| -> Vec<Request> {
        (0..count).map(|index| event(&format!("{prefix}.{index}"), 1, 3).request(&utc())).collect()
    };
    handle.enqueue(batch("1700000007", 80)).await.expect("80 fit");
    wait_settled(&handle, 80).await;

    failing.store(true, std::sync::atomic::Ordering::SeqCst);
    handle.enqueue(batch("1700000008", 50)).await.expect("the 30 oldest delivered rows make room");
    let counts = handle.counts();
    assert_eq!((counts.pending, counts.delivered), (50, 50));
    let remaining: Vec<String> = delivered_calls(storage.path());
    let expected: Vec<String> = (30..80).map(|index| format!("1700000007.{index}")).collect();
    assert_eq!(remaining, expected, "the oldest delivered rows went first");

    let refused_before = refused_total();
    handle.enqueue(batch("1700000009", 60)).await.expect_err("would need more room than delivered rows give");
    assert_eq!(handle.counts().delivered, 50, "a refused enqueue drops nothing");
    handle.enqueue(batch("1700000010", 50)).await.expect("every delivered row makes room");
    assert_eq!((handle.counts().pending, handle.counts().delivered), (100, 0));
    let error = handle.enqueue(batch("1700000011", 1)).await.expect_err("full of undelivered rows");
    assert!(matches!(error, DeliverError::Full { rows: 100, max_rows: 100, refused: 1 }), "{error}");
    assert!(refused_total() >= refused_before + 61, "refusals are counted in /metrics");
    assert!(deliver_support::captured_logs().contains("OUTBOX FULL"), "refusals are logged loudly");
    handle.shutdown().await;
}

/// Delivered rows older than `keep_delivered` are pruned when delivery starts (and every ten
/// minutes): of every sink with rows, configured or not; pending, dead and recent delivered rows
/// stay, and the counts follow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivered_rows_older_than_keep_delivered_are_pruned_and_the_rest_kept() {
    let storage = tempfile::tempdir().expect("tempdir");
    let cfg = fast_config();
    drop(Outbox::open(storage.path(), &cfg).expect("create the outbox"));
    let now = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("after 1970").as_millis(),
    )
    .expect("fits");
    let two_hours_ago = now - 2 * 3_600_000;
    {
        let conn = rusqlite::Connection::open(storage.path().join(deskhook::deliver::OUTBOX_FILE)).expect("open db");
        let mut insert = conn
            .prepare(
                "INSERT INTO outbox (unique_id, kind, status, body, state, enqueued_at, next_attempt_at, finished_at, sink)
                 VALUES (?1, 'form', 'incoming call answered', 'x=1', ?2, ?3, ?3, ?4, ?5)",
            )
            .expect("sql");
        for (unique_id, state, finished_at, sink) in [
            ("1700000001.1", "delivered", Some(two_hours_ago), "helpdesk"),
            ("1700000001.2", "delivered", Some(two_hours_ago), "helpdesk"),
            ("1700000001.3", "dead", Some(two_hours_ago), "helpdesk"),
            ("1700000001.4", "delivered", Some(two_hours_ago), "warehouse"),
            ("1700000001.5", "delivered", Some(now), "helpdesk"),
            ("1700000001.6", "pending", None, "helpdesk"),
        ] {
            insert.execute(rusqlite::params![unique_id, state, two_hours_ago, finished_at, sink]).expect("row");
        }
    }
    let receiver = Receiver::start().await;
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    wait_until("the old delivered rows pruned and the pending one delivered", LONG, || {
        let counts = handle.counts();
        (counts.pending, counts.dead, counts.delivered) == (0, 1, 2)
    })
    .await;
    assert_eq!(delivered_calls(storage.path()), vec!["1700000001.5", "1700000001.6"]);
    let conn = rusqlite::Connection::open(storage.path().join(deskhook::deliver::OUTBOX_FILE)).expect("open db");
    let left: i64 = conn.query_row("SELECT COUNT(*) FROM outbox", [], |row| row.get(0)).expect("count");
    assert_eq!(left, 3, "the dead row stays until purged; the other sink's old row went too");
    handle.shutdown().await;
}

/// A commit that fails (here: another process holds the outbox's write lock longer than the
/// busy timeout, as an admin's `sqlite3` with an open transaction would) is tried again until
/// it works: the requests are held, `/healthz` says the outbox is not writable meanwhile, and
/// in the end every request is stored and delivered — none is reported "not stored".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_is_retried_until_it_works_and_loses_nothing() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let cfg = fast_config();
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    let health = deskhook::health::Health::new();
    health.watch_outbox(handle.commits_failing());
    handle.enqueue(vec![event("1700000020.1", 0, 1).request(&utc())]).await.expect("stored");
    wait_settled(&handle, 1).await;
    assert!(health.report().outbox_writable);

    let blocker = rusqlite::Connection::open(storage.path().join(deskhook::deliver::OUTBOX_FILE)).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("write lock taken");
    let requests: Vec<Request> =
        (0..3).map(|index| event(&format!("1700000021.{index}"), 0, 1).request(&utc())).collect();
    let enqueuing = handle.clone();
    let stored = tokio::spawn(async move { enqueuing.enqueue(requests).await });
    wait_until("the commit failed once", LONG, || !health.report().outbox_writable).await;
    assert!(deliver_support::captured_logs().contains("the commit is tried again until it works"));
    assert!(!stored.is_finished(), "the requests are held, not refused");

    blocker.execute_batch("ROLLBACK").expect("write lock released");
    stored.await.expect("enqueue task").expect("stored once the lock is gone");
    wait_settled(&handle, 4).await;
    assert!(health.report().outbox_writable, "healthy again");
    assert!(deliver_support::captured_logs().contains("nothing was lost"));
    assert_eq!(receiver.accepted_count(), 4);
    handle.shutdown().await;
}

/// The outbox's writer runs on the daemon's runtime (a single thread): while another process
/// holds the write lock, the commit waits without holding up the runtime's other tasks (the
/// engine, `/forward`, `/healthz`), and the requests are stored once the lock is gone.
#[tokio::test(flavor = "current_thread")]
async fn a_held_write_lock_holds_up_the_commit_not_the_runtime() {
    let storage = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start().await;
    let cfg = fast_config();
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    handle.enqueue(vec![event("1700000030.1", 0, 1).request(&utc())]).await.expect("stored");
    wait_settled(&handle, 1).await;

    let blocker = rusqlite::Connection::open(storage.path().join(deskhook::deliver::OUTBOX_FILE)).expect("open");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("write lock taken");
    let requests: Vec<Request> =
        (0..3).map(|index| event(&format!("1700000031.{index}"), 0, 1).request(&utc())).collect();
    let stored = tokio::spawn(handle.enqueue(requests));
    // Twenty turns of a timer on the same thread: a writer asleep in SQLite's busy handler
    // would hold the first one up for the whole busy timeout (10 s).
    let started = std::time::Instant::now();
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(started.elapsed() < Duration::from_secs(3), "the runtime was held up for {:?}", started.elapsed());
    assert!(!stored.is_finished(), "the requests wait for the lock");

    blocker.execute_batch("ROLLBACK").expect("write lock released");
    stored.await.expect("enqueue task").expect("stored once the lock is gone");
    wait_settled(&handle, 4).await;
    assert_eq!(receiver.accepted_count(), 4);
    handle.shutdown().await;
}

fn delivered_calls(storage: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(storage.join(deskhook::deliver::OUTBOX_FILE)).expect("open db");
    let mut statement =
        conn.prepare("SELECT unique_id FROM outbox WHERE state = 'delivered' ORDER BY id").expect("sql");
    let calls = statement.query_map([], |row| row.get(0)).expect("query").collect::<Result<Vec<String>, _>>();
    calls.expect("rows")
}

fn refused_total() -> i64 {
    let text = deskhook::metrics::render();
    text.lines()
        .find_map(|line| line.strip_prefix("deskhook_outbox_refused_total "))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_honoured() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let receiver = Receiver::start_with(Arc::new(|seen: &Seen| {
        if seen.number == 1 {
            Reply::status(429).with_retry_after("1")
        } else {
            Reply::ok()
        }
    }))
    .await;
    let cfg = fast_config();
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    handle.enqueue(vec![event("1700000012.1", 1, 3).request(&utc())]).await.expect("enqueue");
    wait_settled(&handle, 1).await;
    let attempts = receiver.attempts();
    assert_eq!(attempts.len(), 2);
    let gap = attempts[1].at - attempts[0].at;
    assert!(gap >= Duration::from_millis(950), "waited {gap:?}, the helpdesk asked for 1s (min_backoff is 50ms)");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_webhook_url_logs_events_instead_of_sending() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let cfg = fast_config();
    let handle = Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), "", &cfg).expect("start");
    let recording = storage.path().join("kept.wav");
    std::fs::write(&recording, b"RIFF").expect("write");
    handle
        .enqueue(vec![event("1700000013.1", 0, 2).request(&utc()), Request::upload("1700000013.1", &recording, true)])
        .await
        .expect("enqueue");
    wait_settled(&handle, 2).await;
    let logs = deliver_support::captured_logs();
    assert!(logs.contains("unique_id=1700000013.1 status=start of an incoming call"), "{logs}");
    assert!(recording.exists(), "log-only mode never deletes a recording");
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_prompt_and_keeps_requests_in_flight_for_the_next_start() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let hanging = Receiver::start_with(Arc::new(|_: &Seen| Reply::ok().delayed(Duration::from_secs(60)))).await;
    let cfg = fast_config();
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &hanging.url(), &cfg).expect("start");
    handle.enqueue(vec![event("1700000014.1", 0, 2).request(&utc())]).await.expect("enqueue");
    wait_until("the request is in flight", LONG, || hanging.attempts().len() == 1).await;

    let asked = std::time::Instant::now();
    handle.shutdown().await;
    let took = asked.elapsed();
    assert!(took < Duration::from_secs(10), "shutdown took {took:?} with a request hanging");
    let late = event("1700000014.1", 1, 2).request(&utc());
    assert!(matches!(handle.enqueue(vec![late]).await, Err(DeliverError::Stopped)));

    let receiver = Receiver::start().await;
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("reopen"), &receiver.url(), &cfg).expect("restart");
    wait_settled(&handle, 1).await;
    assert_eq!(accepted_by_call(&receiver.accepted()).get("1700000014.1"), Some(&vec![0]));
    handle.shutdown().await;
}

#[test]
fn outbox_list_without_an_outbox_file_says_so() {
    let storage = tempfile::tempdir().expect("tempdir");
    let config_dir = tempfile::tempdir().expect("tempdir");
    let missing = storage.path().join("not-yet");
    let config = deliver_support::write_config(config_dir.path(), &missing, "");
    let list = run_outbox(&config, "list");
    assert!(list.starts_with("no outbox in"), "{list}");
    assert!(!missing.exists(), "listing never creates storage.dir");
}

/// Two sinks on one outbox: one refuses everything and dead-letters, the other delivers all;
/// `outbox list|retry|purge --sink` touch only the sink named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_sink_has_its_own_queue_and_admin_commands_pick_one_sink() {
    capture_logs();
    let storage = tempfile::tempdir().expect("tempdir");
    let refusing = Receiver::start_with(Arc::new(|_: &Seen| Reply::status(400).with_body("no"))).await;
    let accepting = Receiver::start().await;
    let cfg = fast_config();
    let mut broken = deskhook::deliver::Target::helpdesk(&refusing.url(), &cfg);
    broken.name = "broken".into();
    let mut fine = deskhook::deliver::Target::helpdesk(&accepting.url(), &cfg);
    fine.name = "fine".into();
    let handle =
        Delivery::start_targets(Outbox::open(storage.path(), &cfg).expect("open"), vec![broken, fine]).expect("start");
    let utc = utc();
    for seq in 0..3 {
        let requests = ["broken", "fine"]
            .iter()
            .map(|sink| vec![event("1700000020.1", seq, 3).request(&utc).to_sink(*sink)])
            .collect();
        for stored in handle.store_step(requests, Vec::new(), Vec::new()) {
            stored.await.expect("stored");
        }
    }
    wait_until("the broken sink's rows dead, the fine sink's delivered", LONG, || {
        handle.counts_of("broken").is_some_and(|c| c.dead == 3)
            && handle.counts_of("fine").is_some_and(|c| c.delivered == 3)
    })
    .await;
    assert_eq!(accepting.accepted_count(), 3, "the fine sink is not held up by the broken one");
    assert_eq!(handle.failing_sinks(), ["broken"]);
    handle.shutdown().await;

    let mut outbox = Outbox::open(storage.path(), &cfg).expect("admin open");
    let listing = outbox.listing(100, Some("fine")).expect("listing");
    assert!(listing.rows.is_empty(), "nothing undelivered for the fine sink");
    let listing = outbox.listing(100, Some("broken")).expect("listing");
    assert_eq!(listing.rows.len(), 3);
    assert!(listing.rows.iter().all(|row| row.sink == "broken" && row.state == RowState::Dead));
    assert_eq!(outbox.retry_dead(Some("fine")).expect("retry"), 0);
    assert_eq!(outbox.retry_dead(Some("broken")).expect("retry"), 3);
    assert_eq!(outbox.purge_dead(Some("broken")).expect("purge"), 0, "retried rows are pending, not dead");
    assert_eq!(outbox.sinks().expect("sinks"), ["broken", "fine"]);
}

/// A call's next request goes only once the outcome of the one before it is committed, so a
/// kill of deskhook sends at most one request of each call again: whether the next request was
/// stored before the try (queued behind it) or while the try was on the wire.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_calls_next_request_goes_only_once_the_previous_outcome_is_stored() {
    let storage = tempfile::tempdir().expect("tempdir");
    let early = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let script: deliver_support::receiver::Script = {
        let early = early.clone();
        let storage = storage.path().to_path_buf();
        Arc::new(move |seen: &Seen| {
            if let Some((call, seq)) = call_and_seq(&seen.body) {
                let delivered = delivered_calls(&storage).iter().filter(|delivered| **delivered == call).count();
                if delivered < seq {
                    early.lock().unwrap_or_else(|p| p.into_inner()).push(format!("{call} #{seq}: {delivered} stored"));
                }
            }
            // Slow enough that later events are stored while a try is on the wire.
            Reply::ok().delayed(Duration::from_millis(15))
        })
    };
    let receiver = Receiver::start_with(script).await;
    let cfg = fast_config();
    let handle =
        Delivery::start(Outbox::open(storage.path(), &cfg).expect("open"), &receiver.url(), &cfg).expect("start");
    let calls = calls("1700000040", 6);
    let per_call = 4;
    // Half of each call's events are stored at once (queued behind the first try), the rest
    // one by one while earlier ones are on the wire.
    let mut first_half = Vec::new();
    for seq in 0..per_call / 2 {
        for call in &calls {
            first_half.push(event(call, seq, per_call).request(&utc()));
        }
    }
    handle.enqueue(first_half).await.expect("stored");
    for seq in per_call / 2..per_call {
        for call in &calls {
            tokio::time::sleep(Duration::from_millis(5)).await;
            handle.enqueue(vec![event(call, seq, per_call).request(&utc())]).await.expect("stored");
        }
    }
    wait_settled(&handle, (calls.len() * per_call) as u64).await;
    assert_each_call_exactly_in_order(&receiver, &calls, per_call);
    let early = early.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(early.is_empty(), "requests sent before their predecessor's outcome was stored: {early:?}");
    handle.shutdown().await;
}
