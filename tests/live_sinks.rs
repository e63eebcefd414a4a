//! Three sinks at once through the real `deskhook run` against the fake ARI: the helpdesk
//! (Omnidesk form), a signed JSON receiver and Zammad's CTI endpoint (both strict fakes). The
//! JSON receiver is down for 60 s while the other two keep delivering each call within a
//! second of its end; then deskhook is killed -9 in the middle of the JSON backlog. In the end
//! every sink has exactly its requests for every call (the golden files' for json and zammad,
//! the shared expected files' for the helpdesk), in order per call, recordings included.

mod common;
#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod live_support;
mod sinks_support;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use deliver_support::receiver::{Receiver, Seen};
use deliver_support::{form_fields, multipart_parts, wait_until};
use fake_ari::{FakeAri, FakeAriOptions, FakeTrace, Pace};
use live_support::*;
use serde_json::Value;
use sinks_support::{JsonFake, ZammadFake};

const SPOOL: &str = "/var/spool/asterisk/monitor";
const CALLS: [&str; 4] =
    ["01-in-direct-answered", "04-in-queue-answered-by-102", "07-out-answered", "10-in-blind-transfer-101-to-102"];
const OUTAGE: Duration = Duration::from_secs(60);

fn config(dir: &Path, ari: &str, helpdesk: &str, json: &str, zammad: &str, spool: &Path) -> String {
    let path = write_config(dir, ari, PASSWORD, "");
    let text = std::fs::read_to_string(&path)
        .expect("config")
        .replace(&format!("dirs = [\"{SPOOL}\"]"), &format!("dirs = [\"{}\"]\nsettle = \"300ms\"", spool.display()));
    let fast = "min_backoff = \"50ms\"\nmax_backoff = \"300ms\"\nrequest_timeout = \"5s\"\n";
    let text = format!(
        "{text}\n[helpdesk]\nwebhook_url = \"{helpdesk}\"\n{fast}\n\
         [[sinks]]\nname = \"json\"\nkind = \"json\"\nurl = \"{json}\"\nsecret = \"golden-secret\"\n\
         events = [\"lifecycle\", \"summary\"]\nrecordings = \"upload\"\n{fast}\n\
         [[sinks]]\nname = \"zammad\"\nkind = \"zammad\"\nurl = \"{zammad}\"\n\
         users = {{ \"101\" = \"Alice Smith\", \"102\" = \"Bob Smith\" }}\n{fast}"
    );
    std::fs::write(&path, text).expect("config");
    path.to_str().expect("utf8").to_string()
}

/// A call's trace with its MixMonitor files in `spool`, written there (complete) already.
fn recorded_trace(name: &str, spool: &Path) -> FakeTrace {
    let raw = std::fs::read_to_string(fixtures().join(format!("{name}.jsonl"))).expect("trace");
    let raw = raw.replace(SPOOL, &spool.display().to_string());
    for line in raw.lines().filter(|line| line.contains("\"MIXMONITOR_FILENAME\"")) {
        let event: Value = serde_json::from_str(line).expect("json");
        let file = Path::new(event["value"].as_str().expect("a file"));
        std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
        std::fs::write(file, format!("audio of {}", file.display())).expect("recording");
    }
    FakeTrace::parse(&raw).expect("trace")
}

/// The golden requests of `sink` for the calls, by call, in order.
fn golden(sink: &str) -> BTreeMap<String, Vec<Value>> {
    let mut by_call: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for name in CALLS {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/sinks/{name}.{sink}.jsonl"));
        for line in std::fs::read_to_string(path).expect("golden").lines() {
            let line: Value = serde_json::from_str(line).expect("json");
            let id = line["unique_id"].as_str().expect("id").to_string();
            by_call.entry(id).or_default().push(line["request"].clone());
        }
    }
    by_call
}

/// What the helpdesk got, by call: each request as its SPEC §5 line (uploads as the file's name).
fn helpdesk_by_call(accepted: &[Seen]) -> BTreeMap<String, Vec<Value>> {
    let mut by_call: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for seen in accepted {
        let value = if seen.content_type.starts_with("multipart/") {
            let parts = multipart_parts(&seen.content_type, &seen.body);
            let text = |name: &str| {
                parts.iter().find(|p| p.name == name).map(|p| String::from_utf8_lossy(&p.data).into_owned())
            };
            let file = parts.iter().find(|p| p.name == "record").and_then(|p| p.filename.clone());
            serde_json::json!({"status": text("status"), "unique_id": text("unique_id"), "record": file})
        } else {
            serde_json::to_value(form_fields(&seen.body)).expect("fields")
        };
        let id = value["unique_id"].as_str().unwrap_or_default().to_string();
        let events = by_call.entry(id).or_default();
        // A request in flight at a kill is sent again: the same request, counted once.
        if events.last() != Some(&value) {
            events.push(value);
        }
    }
    by_call
}

/// The shared expected lines of the calls, as the helpdesk receives them (uploads by file name).
fn helpdesk_expected() -> BTreeMap<String, Vec<Value>> {
    let mut by_call: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for name in CALLS {
        for mut line in common::expected_values(name) {
            if let Some(record) = line["record"].as_str() {
                let file = Path::new(record).file_name().expect("name").to_string_lossy().into_owned();
                line["record"] = Value::String(file);
            } else if let Some(duration) = line["call_duration"].as_i64() {
                line["call_duration"] = Value::String(duration.to_string());
            }
            let id = line["unique_id"].as_str().expect("id").to_string();
            by_call.entry(id).or_default().push(line);
        }
    }
    by_call
}

/// The golden json requests as the fake keeps them: uploads as their summary plus the file name.
fn json_expected() -> BTreeMap<String, Vec<Value>> {
    golden("json")
        .into_iter()
        .map(|(id, requests)| {
            let requests = requests
                .into_iter()
                .map(|request| match request.get("multipart") {
                    Some(multipart) => {
                        let mut summary = multipart["summary"].clone();
                        let file = Path::new(multipart["record"].as_str().expect("path"))
                            .file_name()
                            .expect("name")
                            .to_string_lossy()
                            .into_owned();
                        summary["record"] = Value::String(file);
                        summary
                    }
                    None => request,
                })
                .collect();
            (id, requests)
        })
        .collect()
}

fn json_by_call(accepted: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut by_call: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for value in accepted {
        by_call.entry(value["unique_id"].as_str().unwrap_or_default().to_string()).or_default().push(value.clone());
    }
    by_call
}

fn zammad_by_call(fake: &ZammadFake) -> BTreeMap<String, Vec<Value>> {
    fake.calls()
        .into_iter()
        .map(|(id, events)| {
            let mut kept: Vec<Value> = Vec::new();
            for event in events {
                // A request in flight at a kill is sent again: the same request, counted once.
                if kept.last() != Some(&event) {
                    kept.push(event);
                }
            }
            (id, kept)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_sinks_one_down_for_a_minute_then_killed_mid_backlog_lose_nothing() {
    let fake = std::sync::Arc::new(FakeAri::start(FakeAriOptions::lab("deskhook", PASSWORD)).await.expect("fake"));
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = tempfile::tempdir().expect("spool");
    let helpdesk = Receiver::start().await;
    let json = JsonFake::start("golden-secret").await;
    let zammad = ZammadFake::start("golden-token").await;
    let config = config(dir.path(), &fake.url(), &helpdesk.url(), &json.url(), &zammad.url(), spool.path());
    let metrics = listen_for_metrics(Path::new(&config));

    let mut deskhook = Deskhook::spawn(&["run", "--config", &config]);
    fake.wait_for(PATIENCE, |status| status.ready).await.expect("connected");
    json.set_down(true);
    let outage_started = Instant::now();
    let expected_helpdesk = helpdesk_expected();
    let expected_zammad = golden("zammad");
    for name in CALLS {
        let trace = recorded_trace(name, spool.path());
        fake.play(&trace, 0..trace.len(), Pace::Recorded { speedup: 4.0 }).await;
        // The call is over in Asterisk: the two healthy sinks have all of it within a second,
        // whatever the third one does (the recordings wait for their files to settle).
        let ended = Instant::now();
        let id = trace_call_id(&expected_helpdesk, name);
        let events_only = |lines: &Vec<Value>| lines.iter().filter(|line| line["status"] != "record").count();
        wait_until("the helpdesk's events of the call", PATIENCE, || {
            helpdesk_by_call(&helpdesk.accepted()).get(&id).map_or(0, events_only)
                == events_only(&expected_helpdesk[&id])
        })
        .await;
        wait_until("Zammad's events of the call", PATIENCE, || {
            zammad_by_call(&zammad).get(&id).map_or(0, Vec::len) == expected_zammad.get(&id).map_or(0, Vec::len)
        })
        .await;
        let late = ended.elapsed();
        assert!(late < Duration::from_secs(1), "{name}: the healthy sinks had the call {late:?} after its end");
    }
    wait_until("every recording uploaded to the helpdesk", PATIENCE, || {
        helpdesk_by_call(&helpdesk.accepted()) == expected_helpdesk
    })
    .await;
    assert!(json.accepted().is_empty(), "the json receiver was down");
    assert!(json.receiver.attempts().len() >= 4, "deskhook kept trying the json receiver");
    let left = OUTAGE.saturating_sub(outage_started.elapsed());
    tokio::time::sleep(left).await;

    // Back up, then deskhook dies in the middle of the backlog.
    let expected_json = json_expected();
    let total: usize = expected_json.values().map(Vec::len).sum();
    json.set_down(false);
    wait_until("some of the backlog delivered", PATIENCE, || !json.accepted().is_empty()).await;
    deskhook.signal("KILL");
    deskhook.wait_exit(Duration::from_secs(5)).await.expect("killed");
    let delivered_before_kill = json.accepted().len();
    let mut deskhook = Deskhook::spawn(&["run", "--config", &config]);
    wait_until("the whole json backlog", PATIENCE, || json.accepted().len() >= total).await;
    // Nothing pending: a repeat or a stray would have been sent by now.
    wait_outbox_drained(metrics).await;
    deskhook.stop().await;

    assert!(json.refusals().iter().all(|why| why.starts_with("503")), "json refusals: {:?}", json.refusals());
    assert!(zammad.refusals().is_empty(), "Zammad refused: {:?}", zammad.refusals());
    // An upload goes when its file is complete, so a call's lifecycle bodies and its uploads
    // are each in order, the uploads after the summary.
    let got_json = json_by_call(&json.accepted());
    assert_eq!(got_json.keys().collect::<Vec<_>>(), expected_json.keys().collect::<Vec<_>>(), "json calls");
    for (id, expected) in &expected_json {
        let got = &got_json[id];
        let split = |values: &[Value]| -> (Vec<Value>, Vec<Value>) {
            values.iter().cloned().partition(|value| value.get("record").is_none())
        };
        let ((got_bodies, got_uploads), (want_bodies, want_uploads)) = (split(got), split(expected));
        assert_eq!(
            got_bodies, want_bodies,
            "json bodies of call {id} ({delivered_before_kill} delivered before the kill)"
        );
        assert_eq!(got_uploads, want_uploads, "json uploads of call {id}");
        let summary_at = got.iter().position(|value| value["event"] == "call_summary" && value.get("record").is_none());
        let first_upload = got.iter().position(|value| value.get("record").is_some());
        assert!(first_upload.is_none() || first_upload > summary_at, "call {id}: an upload before its summary");
    }
    assert_eq!(zammad_by_call(&zammad), expected_zammad);
    assert_eq!(helpdesk_by_call(&helpdesk.accepted()), expected_helpdesk);
}

fn trace_call_id(expected: &BTreeMap<String, Vec<Value>>, name: &str) -> String {
    let first = &common::expected_values(name)[0];
    let id = first["unique_id"].as_str().expect("id").to_string();
    assert!(expected.contains_key(&id));
    id
}
