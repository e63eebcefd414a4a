//! The CRM sinks through the real `deskhook run` against the fake ARI and strict fakes of a
//! Bitrix24 portal and an amoCRM account:
//! - both CRMs down for a while (`DESKHOOK_CRM_OUTAGE_SECS`, 60 by default; the issue's ten
//!   minutes with 600), then back, and deskhook killed -9 in the middle of the backlog: every
//!   call arrives once, in order, with its recordings; nothing twice;
//! - a burst of 100 calls against the portal's 2 requests a second: every call registered,
//!   finished and its record attached, nothing dropped (the time it took is printed);
//! - a local application's OAuth: tokens renewed before they run out and the renewed refresh
//!   token kept across a restart; a webhook refused `register` gets an error naming the fix;
//!   no token or webhook path in the logs at deskhook's trace level.

mod common;
#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod live_support;
mod sinks_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use deliver_support::wait_until;
use fake_ari::{FakeAri, FakeAriOptions, FakeTrace, Pace};
use live_support::*;
use serde_json::Value;
use sinks_support::amocrm::{self, AmocrmFake};
use sinks_support::bitrix24::{self, Bitrix24Fake};

const SPOOL: &str = "/var/spool/asterisk/monitor";
const CALLS: [&str; 4] =
    ["01-in-direct-answered", "04-in-queue-answered-by-102", "07-out-answered", "10-in-blind-transfer-101-to-102"];
/// The portal's users: extension -> user id.
const B24_USERS: [(&str, u64); 3] = [("101", 11), ("102", 12), ("103", 13)];
/// The one client amoCRM has a card for (the calls from +79161234568 have none).
const AMO_CONTACT: (u64, &str) = (7001, "+7 (916) 123-45-67");
const FAST: &str = "min_backoff = \"50ms\"\nmax_backoff = \"3s\"\nrequest_timeout = \"5s\"\n";

fn outage() -> Duration {
    let seconds = std::env::var("DESKHOOK_CRM_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    Duration::from_secs(seconds)
}

/// The lab config with MixMonitor files in `spool` and `sinks` appended.
fn config(dir: &Path, ari: &str, spool: &Path, sinks: &str) -> String {
    let path = write_config(dir, ari, PASSWORD, "");
    let text = std::fs::read_to_string(&path)
        .expect("config")
        .replace(&format!("dirs = [\"{SPOOL}\"]"), &format!("dirs = [\"{}\"]\nsettle = \"300ms\"", spool.display()));
    std::fs::write(&path, format!("{text}\n{sinks}")).expect("config");
    path.to_str().expect("utf8").to_string()
}

fn bitrix24_webhook_sink(fake: &Bitrix24Fake) -> String {
    format!("[[sinks]]\nname = \"b24\"\nkind = \"bitrix24\"\nwebhook_url = \"{}\"\n{FAST}", fake.webhook_url())
}

fn amocrm_sink(fake: &AmocrmFake) -> String {
    format!(
        "[[sinks]]\nname = \"amo\"\nkind = \"amocrm\"\nbase_url = \"{}\"\ntoken = \"{}\"\n\
         users = {{ \"5101\" = \"101\", \"5102\" = \"102\" }}\nunsorted = true\n{FAST}",
        fake.base_url(),
        amocrm::TOKEN
    )
}

/// Writes the MixMonitor files a trace names (complete) into `spool`; the trace with its paths there.
fn with_recordings(raw: &str, spool: &Path) -> FakeTrace {
    let raw = raw.replace(SPOOL, &spool.display().to_string());
    for line in raw.lines().filter(|line| line.contains("\"MIXMONITOR_FILENAME\"")) {
        let event: Value = serde_json::from_str(line).expect("json");
        let file = Path::new(event["value"].as_str().expect("a file"));
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        std::fs::write(file, format!("RIFF audio of {}", file.display())).expect("recording");
    }
    FakeTrace::parse(&raw).expect("trace")
}

fn raw_trace(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(format!("{name}.jsonl"))).expect("trace")
}

/// Copy `copy` of a trace: its ids moved so that they are its own, its times `copy` minutes on.
fn copy_of(raw: &str, copy: u64) -> String {
    let ids: BTreeSet<String> = regex::Regex::new(r#""(\d{10})\.\d+""#)
        .expect("regex")
        .captures_iter(raw)
        .map(|capture| capture[1].to_string())
        .collect();
    let mut text = raw.to_string();
    for id in ids {
        let moved = id.parse::<u64>().expect("digits") + 1_000_000 * (copy + 1);
        text = text.replace(&format!("{id}."), &format!("{moved}."));
    }
    text.lines()
        .map(|line| {
            let mut event: Value = serde_json::from_str(line).expect("json");
            shift_times(&mut event, copy * 60);
            event.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn shift_times(value: &mut Value, seconds: u64) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value.as_str()) {
                    ("timestamp" | "creationtime", Some(text)) => {
                        let at = jiff::Timestamp::strptime("%Y-%m-%dT%H:%M:%S%.f%z", text).expect("ARI time");
                        let moved = at + jiff::SignedDuration::from_secs(seconds as i64);
                        *value = Value::String(moved.strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string());
                    }
                    _ => shift_times(value, seconds),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| shift_times(item, seconds)),
        _ => {}
    }
}

/// What `replay --sink NAME` says the sink sends for `traces`, by call: (method, params).
fn replayed(config: &str, sink: &str, traces: &[&str]) -> BTreeMap<String, Vec<Value>> {
    let config = deskhook::config::Config::load(Path::new(config)).expect("config");
    let paths: Vec<_> = traces.iter().map(|name| fixtures().join(format!("{name}.jsonl"))).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(deskhook::commands::replay::replay(&config, &paths, Some(sink), &mut out, &mut err), 0);
    let mut by_call: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in String::from_utf8(out).expect("utf8").lines() {
        let line: Value = serde_json::from_str(line).expect("json");
        by_call.entry(line["unique_id"].as_str().expect("id").to_string()).or_default().push(line["request"].clone());
    }
    by_call
}

/// The portal's methods of a call as the fake recorded them, a repeat in a row counted once:
/// a request in flight at a kill is sent again (a card shown twice, the record replaced by
/// itself, a `finish` refused as "not found" since the first closed the call).
fn methods_once(call: &bitrix24::FakeCall) -> Vec<String> {
    let mut methods: Vec<String> = Vec::new();
    for method in &call.methods {
        if methods.last() != Some(method) {
            methods.push(method.clone());
        }
    }
    methods
}

/// Refusals other than a repeated `finish` (which deskhook takes as done).
fn real_refusals(fake: &Bitrix24Fake) -> Vec<String> {
    fake.refusals()
        .into_iter()
        .filter(|refusal| !refusal.contains("Call is not found (call should be registered"))
        .collect()
}

fn short(method: &str) -> String {
    method.rsplit('.').next().unwrap_or(method).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_crms_down_then_back_and_a_kill_mid_backlog_lose_nothing_and_repeat_nothing() {
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake");
    let (dir, spool) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("spool"));
    let b24 = Bitrix24Fake::start(&B24_USERS).await;
    let amo = AmocrmFake::start(&[AMO_CONTACT], &[5101, 5102]).await;
    let sinks = format!("{}\n{}", bitrix24_webhook_sink(&b24), amocrm_sink(&amo));
    let config = config(dir.path(), &fake.url(), spool.path(), &sinks);
    let metrics = listen_for_metrics(Path::new(&config));
    let expected_b24 = replayed(&config, "b24", &CALLS);
    let expected_amo = replayed(&config, "amo", &CALLS);

    let mut deskhook = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    b24.set_down(true);
    amo.set_down(true);
    let down_since = Instant::now();
    for name in CALLS {
        let trace = with_recordings(&raw_trace(name), spool.path());
        fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup: 4.0 }).await;
    }
    tokio::time::sleep(outage().saturating_sub(down_since.elapsed())).await;
    assert!(b24.calls().is_empty() && amo.calls().is_empty(), "both CRMs were down");

    b24.set_down(false);
    amo.set_down(false);
    wait_until("some of the backlog delivered", PATIENCE, || !b24.calls().is_empty()).await;
    deskhook.signal("KILL");
    deskhook.wait_exit(Duration::from_secs(5)).await.expect("killed");
    let mut deskhook = Deskhook::spawn(&["run", "--config", &config]);
    let all_there = || {
        let calls = b24.calls();
        expected_b24.iter().all(|(id, requests)| {
            calls.get(id).is_some_and(|call| {
                let records = requests.iter().filter(|r| r["method"] == "telephony.externalCall.attachRecord").count();
                call.finished.is_some() && call.records.len() == records
            })
        }) && amo.calls().len() + amo.unsorted().len() == expected_amo.len()
    };
    wait_until("every call in both CRMs", Duration::from_secs(120), all_there).await;
    // Nothing pending: a repeat would have been sent by now.
    wait_outbox_drained(metrics).await;
    deskhook.stop().await;

    assert!(real_refusals(&b24).is_empty(), "Bitrix24 refused: {:#?}", b24.refusals());
    assert!(amo.refusals().is_empty(), "amoCRM refused: {:#?}", amo.refusals());
    assert!(b24.duplicates().is_empty(), "calls registered twice: {:?}", b24.duplicates());
    let calls = b24.calls();
    for (id, requests) in &expected_b24 {
        let call = &calls[id];
        // Cards of unmapped extensions are resolved through user.get; every step is there once.
        let want: Vec<String> = requests.iter().map(|r| short(r["method"].as_str().expect("method"))).collect();
        assert_eq!(methods_once(call), want, "call {id}");
        let finish = requests.iter().find(|r| r["method"] == "telephony.externalcall.finish").expect("finish");
        let sent = &call.finished.as_ref().expect("finished")["params"];
        for key in ["DURATION", "STATUS_CODE", "ADD_TO_CHAT"] {
            assert_eq!(sent[key], finish["params"][key], "call {id}: {key}");
        }
        let files: BTreeSet<String> =
            requests.iter().filter_map(|r| r["params"]["FILENAME"].as_str().map(str::to_string)).collect();
        assert_eq!(call.records.keys().cloned().collect::<BTreeSet<_>>(), files, "call {id}: recordings");
        assert!(call.shown.is_empty(), "call {id}: cards left open for users {:?}", call.shown);
    }
    // amoCRM: one call each, on the card where there is one, in Unsorted where there is none.
    let mut uniqs: Vec<String> =
        amo.calls().iter().map(|call| call["uniq"].as_str().expect("uniq").to_string()).collect();
    uniqs.extend(amo.unsorted().iter().map(|lead| lead["metadata"]["uniq"].as_str().expect("uniq").to_string()));
    uniqs.sort();
    let expected: Vec<String> = expected_amo.keys().cloned().collect();
    assert_eq!(uniqs, expected, "each call once in amoCRM");
    for call in amo.calls() {
        let id = call["uniq"].as_str().expect("uniq");
        let mut want = expected_amo[id][0]["body"][0].clone();
        want["contact_id"] = Value::from(AMO_CONTACT.0);
        assert_eq!(call, want, "call {id} as amoCRM has it");
    }
    assert_eq!(amo.unsorted().len(), 1, "the call from the number on no card became an Unsorted lead");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_100_calls_at_two_requests_a_second_drops_nothing() {
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake");
    let (dir, spool) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("spool"));
    let b24 = Bitrix24Fake::start(&B24_USERS).await;
    let config = config(dir.path(), &fake.url(), spool.path(), &bitrix24_webhook_sink(&b24));
    let mut deskhook = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");

    let shapes = [raw_trace("01-in-direct-answered"), raw_trace("04-in-queue-answered-by-102")];
    let started = Instant::now();
    for copy in 0..100u64 {
        let trace = with_recordings(&copy_of(&shapes[(copy % 2) as usize], copy), spool.path());
        fake.play(&trace, 0..trace.len(), Pace::MaxSpeed).await;
    }
    let played = started.elapsed();
    let done = || {
        let calls = b24.calls();
        calls.len() == 100 && calls.values().all(|call| call.finished.is_some() && call.records.len() == 1)
    };
    wait_until("all 100 calls registered, finished and recorded", Duration::from_secs(900), done).await;
    let took = started.elapsed();
    deskhook.stop().await;
    let requests = b24.receiver.attempts().len();
    eprintln!(
        "burst: 100 calls played in {played:.1?}; all in Bitrix24 after {took:.1?}: {requests} requests, {} answered \
         503 QUERY_LIMIT_EXCEEDED",
        b24.limited()
    );
    assert!(b24.refusals().is_empty(), "Bitrix24 refused: {:#?}", b24.refusals());
    assert!(b24.duplicates().is_empty(), "calls registered twice: {:?}", b24.duplicates());
    for call in b24.calls().values() {
        assert_eq!(methods_once(call).first().map(String::as_str), Some("register"));
        assert_eq!(methods_once(call).last().map(String::as_str), Some("attachRecord"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_application_renews_its_tokens_across_a_restart_and_a_refused_webhook_names_the_fix() {
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake");
    let (dir, spool) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("spool"));
    let app_portal = Bitrix24Fake::start(&B24_USERS).await;
    app_portal.set_token_life(Duration::from_secs(2));
    let webhook_portal = Bitrix24Fake::start(&B24_USERS).await;
    webhook_portal.set_app_only(true);
    let sinks = format!(
        "[[sinks]]\nname = \"app\"\nkind = \"bitrix24\"\nportal_url = \"{}\"\noauth_url = \"{}\"\n\
         client_id = \"{}\"\nclient_secret = \"{}\"\nrefresh_token = \"{}\"\ndefault_user = \"11\"\n{FAST}\n\
         [[sinks]]\nname = \"hook\"\nkind = \"bitrix24\"\nwebhook_url = \"{}\"\nclient_error_tries = 1\n{FAST}",
        app_portal.portal_url(),
        app_portal.oauth_url(),
        bitrix24::CLIENT_ID,
        bitrix24::CLIENT_SECRET,
        bitrix24::FIRST_REFRESH,
        webhook_portal.webhook_url(),
    );
    let config = config(dir.path(), &fake.url(), spool.path(), &sinks);
    let env = [("RUST_LOG", "deskhook=trace,info")];
    let mut deskhook = Deskhook::spawn_with_env(&["run", "--config", &config], &env);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    let first = with_recordings(&raw_trace("01-in-direct-answered"), spool.path());
    fake.play(&first, 0..first.len(), Pace::MaxSpeed).await;
    wait_until("the first call through the application", PATIENCE, || {
        app_portal.calls().values().any(|call| !call.records.is_empty())
    })
    .await;
    deskhook
        .wait_until("the webhook's refusal named", |d| d.stderr_text().contains("set up a local application"))
        .await;
    // The access token runs out; the next call renews it. Then a restart must use the renewed
    // refresh token (the one in the config is used up).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let second = with_recordings(&copy_of(&raw_trace("01-in-direct-answered"), 1), spool.path());
    fake.play(&second, 0..second.len(), Pace::MaxSpeed).await;
    wait_until("the second call", PATIENCE, || app_portal.calls().len() == 2).await;
    deskhook.stop().await;
    let first_run_logs = deskhook.stderr_text();
    let mut deskhook = Deskhook::spawn_with_env(&["run", "--config", &config], &env);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected again");
    let third = with_recordings(&copy_of(&raw_trace("04-in-queue-answered-by-102"), 2), spool.path());
    fake.play(&third, 0..third.len(), Pace::MaxSpeed).await;
    wait_until("the third call, after the restart", PATIENCE, || {
        app_portal.calls().values().filter(|call| !call.records.is_empty()).count() == 3
    })
    .await;
    deskhook.stop().await;
    assert!(app_portal.refreshes() >= 2, "the token was renewed when it ran out ({})", app_portal.refreshes());
    assert!(
        app_portal.refusals().iter().all(|refusal| !refusal.contains("invalid_grant")),
        "{:#?}",
        app_portal.refusals()
    );
    assert!(webhook_portal.calls().is_empty());
    let (code, listing, _) = run_command(&["outbox", "list", "--sink", "hook", "--config", &config]).await;
    assert_eq!(code, 0);
    assert!(listing.contains("WRONG_AUTH_TYPE") && listing.contains("local application"), "{listing}");

    let logs = format!("{first_run_logs}\n{}\n{listing}", deskhook.stderr_text());
    for secret in [bitrix24::WEBHOOK_TOKEN, bitrix24::CLIENT_SECRET, "b24-refresh-", "b24-access-"] {
        assert!(!logs.contains(secret), "{secret} in the logs or the outbox listing");
    }
    assert!(logs.contains("TRACE") || logs.contains("DEBUG"), "the logs were at trace level");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn amocrm_gets_a_signed_link_that_plays_and_seeks_the_recording_and_nothing_else() {
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake");
    let (dir, spool) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("spool"));
    let amo = AmocrmFake::start(&[AMO_CONTACT], &[5101, 5102]).await;
    let listen = deliver_support::receiver::reserve_addr();
    let config = config(dir.path(), &fake.url(), spool.path(), &amocrm_sink(&amo));
    let text = std::fs::read_to_string(&config).expect("config").replace(
        "settle = \"300ms\"",
        &format!("settle = \"300ms\"\npublic_listen = \"{listen}\"\npublic_base_url = \"https://pbx.example:8443\""),
    );
    std::fs::write(&config, text).expect("config");
    let mut deskhook = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    let trace = with_recordings(&raw_trace("01-in-direct-answered"), spool.path());
    fake.play(&trace, 0..trace.len(), Pace::MaxSpeed).await;
    wait_until("the call in amoCRM", PATIENCE, || amo.calls().len() == 1).await;
    let link = amo.calls()[0]["link"].as_str().expect("a link").to_string();
    let path = link.strip_prefix("https://pbx.example:8443").expect("under public_base_url");
    let local = format!("http://{listen}{path}");
    let http = reqwest::Client::new();
    let file =
        std::fs::read_dir(spool.path().join("2026/11/21")).expect("spool").next().expect("a file").expect("entry");
    let audio = std::fs::read(file.path()).expect("audio");

    let whole = http.get(&local).send().await.expect("GET");
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["accept-ranges"], "bytes");
    assert_eq!(whole.headers()["content-type"], "audio/wav");
    assert_eq!(whole.bytes().await.expect("body").to_vec(), audio);
    let part = http.get(&local).header("Range", "bytes=5-9").send().await.expect("GET range");
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"], format!("bytes 5-9/{}", audio.len()).as_str());
    assert_eq!(part.bytes().await.expect("body").to_vec(), audio[5..10].to_vec());
    let beyond = http.get(&local).header("Range", format!("bytes={}-", audio.len() + 10)).send().await.expect("GET");
    assert_eq!(beyond.status(), 416);
    let head = http.head(&local).send().await.expect("HEAD");
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-length"], audio.len().to_string().as_str());
    // A token changed by one character, another path, another method: nothing.
    let mut forged = local.clone();
    let last = forged.pop().expect("a char");
    forged.push(if last == '0' { '1' } else { '0' });
    for url in [
        forged,
        format!("http://{listen}/recordings/"),
        format!("http://{listen}/metrics"),
        format!("http://{listen}/"),
    ] {
        assert_eq!(http.get(&url).send().await.expect("GET").status(), 404, "{url}");
    }
    assert_eq!(http.post(&local).send().await.expect("POST").status(), 405);
    // The file swapped for a symlink out of the recording dirs is not served.
    let secret = dir.path().join("secret.txt");
    std::fs::write(&secret, "not a recording").expect("secret");
    std::fs::remove_file(file.path()).expect("rm");
    std::os::unix::fs::symlink(&secret, file.path()).expect("symlink");
    assert_eq!(http.get(&local).send().await.expect("GET").status(), 404);
    deskhook.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amocrm_call_whose_answer_was_lost_is_found_on_the_card_not_added_twice() {
    let fake = FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake");
    let (dir, spool) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("spool"));
    let amo = AmocrmFake::start(&[AMO_CONTACT], &[5101, 5102]).await;
    // amoCRM adds the call but answers after deskhook gave up waiting.
    amo.answer_slowly(1, Duration::from_secs(3));
    let sink = amocrm_sink(&amo).replace("request_timeout = \"5s\"", "request_timeout = \"1s\"");
    let config = config(dir.path(), &fake.url(), spool.path(), &sink);
    let mut deskhook = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    let trace = with_recordings(&raw_trace("01-in-direct-answered"), spool.path());
    fake.play(&trace, 0..trace.len(), Pace::MaxSpeed).await;
    wait_until("the lost answer's call looked for on the cards", PATIENCE, || amo.note_lookups() > 0).await;
    deskhook.wait_until("the call found", |d| d.stderr_text().contains("amoCRM has the call already")).await;
    deskhook.stop().await;
    let (code, listing, _) = run_command(&["outbox", "list", "--sink", "amo", "--config", &config]).await;
    assert_eq!(code, 0, "{listing}");
    assert_eq!(amo.calls().len(), 1, "added once: {:#?}", amo.calls());
    assert!(amo.refusals().is_empty(), "{:#?}", amo.refusals());
}
