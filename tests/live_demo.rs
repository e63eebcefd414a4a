//! `deskhook demo --webhook URL`: the bundled real calls replayed through the built-in fake ARI
//! and the daemon print exactly the calls' expected events, and each helpdesk event reaches
//! a loopback webhook as the helpdesk's form, in order.

mod common;
mod live_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use fake_ari::bundled::BUNDLED_CALLS;
use live_support::*;
use serde_json::Value;

type Received = Arc<Mutex<Vec<Vec<(String, String)>>>>;

async fn receive(State(received): State<Received>, body: String) -> &'static str {
    let form = form_urlencoded::parse(body.as_bytes()).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    received.lock().expect("not poisoned").push(form);
    "ok"
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_prints_and_posts_every_bundled_calls_events() {
    let received: Received = Arc::default();
    let app = Router::new().route("/webhooks/asterisk/{token}", post(receive)).with_state(received.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/webhooks/asterisk/t0ken", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });

    let (code, stdout, stderr) = run_command(&["demo", "--speedup", "40", "--webhook", &url]).await;
    assert_eq!(code, 0, "{stderr}");
    let got: Vec<Value> = stdout.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect();
    let expected: Vec<Value> = BUNDLED_CALLS.iter().flat_map(|call| common::expected_values(call.name)).collect();
    assert_eq!(got, expected, "{}", common::diff(&got, &expected));
    assert!(stderr.contains("# call 11/11"), "{stderr}");
    assert!(!stderr.contains("t0ken"), "the webhook's secret path leaked: {stderr}");

    let forms = received.lock().expect("not poisoned").clone();
    let events: Vec<&Value> = expected.iter().filter(|event| event["status"] != "record").collect();
    assert_eq!(forms.len(), events.len(), "one POST per helpdesk event");
    // Delivery keeps each call's order; different calls' events may interleave.
    let mut forms_by_call: BTreeMap<String, Vec<&Vec<(String, String)>>> = BTreeMap::new();
    for form in &forms {
        let id = form.iter().find(|(key, _)| key == "unique_id").map(|(_, value)| value.clone()).unwrap_or_default();
        forms_by_call.entry(id).or_default().push(form);
    }
    let mut events_by_call: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for event in events {
        events_by_call.entry(event["unique_id"].as_str().unwrap_or_default().to_string()).or_default().push(event);
    }
    assert_eq!(forms_by_call.keys().collect::<Vec<_>>(), events_by_call.keys().collect::<Vec<_>>());
    for (id, call_events) in &events_by_call {
        let call_forms = &forms_by_call[id];
        assert_eq!(call_forms.len(), call_events.len(), "POSTs of call {id}");
        for (form, event) in call_forms.iter().zip(call_events) {
            let field = |name: &str| form.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
            for name in ["status", "from_user", "to_user", "unique_id", "datetime"] {
                assert_eq!(field(name), event[name].as_str(), "{name} of {event}");
            }
            assert_eq!(field("call_duration").map(str::to_string), event.get("call_duration").map(ToString::to_string));
        }
    }
    assert!(stderr.contains("nothing is uploaded"), "the record lines are not said to be sent: {stderr}");

    // A webhook that takes nothing: the demo says so and exits non-zero.
    let refusing = Router::new().fallback(|| async { axum::http::StatusCode::NOT_FOUND });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/webhooks/asterisk/wr0ng", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, refusing).await });
    let (code, _, stderr) = run_command(&["demo", "--speedup", "40", "--webhook", &url]).await;
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("the webhook did not take every event"), "{stderr}");
}

/// `demo --sink json`: one signed-JSON call summary per bundled call that the helpdesk hears of,
/// its talk time the helpdesk's `call_duration`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_each_bundled_calls_json_summary() {
    let (code, stdout, stderr) = run_command(&["demo", "--speedup", "40", "--sink", "json"]).await;
    assert_eq!(code, 0, "{stderr}");
    let summaries: Vec<Value> = stdout.lines().map(|line| serde_json::from_str(line).expect("JSON line")).collect();
    let expected: Vec<Value> = BUNDLED_CALLS.iter().flat_map(|call| common::expected_values(call.name)).collect();
    let ended: Vec<&Value> =
        expected.iter().filter(|event| event["status"].as_str().is_some_and(|s| s.ends_with("ended"))).collect();
    assert_eq!(summaries.len(), ended.len(), "one summary per call: {stdout}");
    for (line, end) in summaries.iter().zip(ended) {
        assert_eq!(line["sink"], "json");
        let summary = &line["request"];
        assert_eq!(summary["event"], "call_summary");
        assert_eq!(summary["unique_id"], end["unique_id"]);
        assert_eq!(summary["talk_seconds"].as_u64(), Some(end["call_duration"].as_u64().unwrap_or(0)), "{summary}");
    }
    assert!(stderr.contains("a request a json sink would make"), "{stderr}");
    let (code, _, stderr) = run_command(&["demo", "--sink", "fax"]).await;
    assert_eq!(code, 2);
    assert!(stderr.contains("expected json, zammad, omnidesk, bitrix24 or amocrm"), "{stderr}");
}

/// What a new Bitrix24 admin sees first: each bundled call registered once, first, and
/// finished once, its cards and recording in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_shows_each_bundled_call_as_bitrix24_requests() {
    let (code, stdout, stderr) = run_command(&["demo", "--sink", "bitrix24"]).await;
    assert_eq!(code, 0, "{stderr}");
    let mut by_call: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in stdout.lines() {
        let line: serde_json::Value = serde_json::from_str(line).expect("each line is JSON");
        assert_eq!(line["sink"], "bitrix24");
        let method = line["request"]["method"].as_str().expect("method");
        by_call.entry(line["unique_id"].as_str().expect("id").to_string()).or_default().push(method.to_string());
    }
    assert!(by_call.len() >= 10, "{by_call:#?}");
    for (id, methods) in &by_call {
        assert_eq!(methods.first().map(String::as_str), Some("telephony.externalcall.register"), "{id}: {methods:?}");
        assert_eq!(methods.iter().filter(|m| m.ends_with("finish")).count(), 1, "{id}: {methods:?}");
        assert_eq!(methods.iter().filter(|m| m.ends_with("register")).count(), 1, "{id}: {methods:?}");
    }
}
