//! Every sink's requests for every real trace (`replay --sink`), against golden files in
//! `tests/fixtures/sinks/`. The golden files were checked by hand against each trace's `.md`
//! (who answered, who hung up, the transfer's kind, the queue, the talk time); the omnidesk
//! sink is checked against the shared `.expected.jsonl` files themselves. Over the 70-call busy
//! stretch, the call summary obeys its invariants call by call.

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use deskhook::commands::replay::replay;
use deskhook::config::Config;
use serde_json::Value;

fn sinks_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/sinks")
}

fn sinks_config() -> Config {
    Config::load(&sinks_dir().join("lab-sinks.toml")).expect("lab-sinks.toml")
}

/// `replay --sink NAME` of `traces`, as JSON values.
fn replayed(config: &Config, sink: &str, traces: &[PathBuf]) -> Vec<Value> {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = replay(config, traces, Some(sink), &mut out, &mut err);
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&err));
    String::from_utf8(out)
        .expect("utf8")
        .lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

fn golden(name: &str, sink: &str) -> Vec<Value> {
    let path = sinks_dir().join(format!("{name}.{sink}.jsonl"));
    std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .lines()
        .map(|line| serde_json::from_str(line).expect("golden line is JSON"))
        .collect()
}

#[test]
fn every_trace_gives_each_sink_exactly_its_golden_requests() {
    let config = sinks_config();
    for name in scenarios() {
        let trace = fixtures().join(format!("{name}.jsonl"));
        for sink in ["json", "zammad"] {
            let got = replayed(&config, sink, std::slice::from_ref(&trace));
            let want = golden(&name, sink);
            assert_eq!(got.len(), want.len(), "{name} {sink}: {got:#?}");
            for (index, (got, want)) in got.iter().zip(&want).enumerate() {
                assert_eq!(got, want, "{name} {sink}, request {index}");
            }
        }
        let helpdesk = replayed(&config, "helpdesk", &[trace]);
        let expected = expected_values(&name);
        let requests: Vec<&Value> = helpdesk.iter().map(|line| &line["request"]).collect();
        assert_eq!(requests, expected.iter().collect::<Vec<_>>(), "{name}: the helpdesk sink is SPEC §5");
        assert!(helpdesk.iter().all(|line| line["sink"] == "helpdesk"));
    }
}

#[test]
fn an_unknown_sink_is_named_with_the_ones_there_are() {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let trace = fixtures().join("01-in-direct-answered.jsonl");
    assert_eq!(replay(&sinks_config(), &[trace], Some("crm"), &mut out, &mut err), 2);
    let err = String::from_utf8_lossy(&err);
    assert!(err.contains("no sink named \"crm\"") && err.contains("helpdesk, json, zammad"), "{err}");
}

/// Zammad's generic CTI takes three events, string values, `in`/`out`, and its own causes.
#[test]
fn zammad_requests_use_only_what_zammad_accepts() {
    let config = sinks_config();
    let traces: Vec<PathBuf> = scenarios().iter().map(|name| fixtures().join(format!("{name}.jsonl"))).collect();
    for line in replayed(&config, "zammad", &traces) {
        let request = line["request"].as_object().expect("an object");
        assert!(["newCall", "answer", "hangup"].contains(&request["event"].as_str().expect("event")), "{line}");
        assert!(["in", "out"].contains(&request["direction"].as_str().expect("direction")), "{line}");
        assert!(request.values().all(Value::is_string), "every value a string: {line}");
        assert!(!request["callId"].as_str().expect("callId").is_empty());
        for key in request.keys() {
            let known = ["event", "from", "to", "direction", "callId", "user", "queue", "cause", "answeringNumber"];
            assert!(known.contains(&key.as_str()), "{key} is not a field of Zammad's CTI API");
        }
        if let Some(cause) = request.get("cause") {
            assert!(deskhook::sinks::zammad::CAUSES.contains(&cause.as_str().expect("string")), "{line}");
        }
    }
}

/// The summary over 70 overlapping real calls, call by call (SPEC §7).
#[test]
fn busy_stretch_summaries_obey_their_invariants() {
    let base = std::fs::read_to_string(fixtures().join("busy-stretch.toml")).expect("config");
    let config = Config::from_toml(
        &format!("{base}\n[[sinks]]\nname = \"json\"\nkind = \"json\"\nurl = \"https://x.example/c\"\n"),
        "c",
    )
    .expect("busy-stretch.toml with a json sink");
    let trace = [fixtures().join("busy-stretch.jsonl")];
    let summaries: Vec<Value> = replayed(&config, "json", &trace)
        .into_iter()
        .map(|line| line["request"].clone())
        .filter(|request| request["event"] == "call_summary")
        .collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    assert_eq!(replay(&config, &trace, None, &mut out, &mut err), 0, "{}", String::from_utf8_lossy(&err));
    let mut durations: BTreeMap<String, Option<u64>> = BTreeMap::new();
    let mut helpdesk_calls = 0;
    for line in String::from_utf8(out).expect("utf8").lines() {
        let request: Value = serde_json::from_str(line).expect("json");
        if request["status"].as_str().is_some_and(|status| status.ends_with("ended")) {
            helpdesk_calls += 1;
            let id = request["unique_id"].as_str().expect("id").to_string();
            durations.insert(id, request["call_duration"].as_u64());
        }
    }
    assert_eq!(helpdesk_calls, 70, "the busy stretch has 70 calls");
    let mut seen = BTreeMap::new();
    for summary in &summaries {
        let id = summary["unique_id"].as_str().expect("id");
        *seen.entry(id.to_string()).or_insert(0) += 1;
        let seconds = |key: &str| summary[key].as_u64().unwrap_or_else(|| panic!("{key}: {summary}"));
        let (wait, talk, total) = (seconds("wait_seconds"), seconds("talk_seconds"), seconds("total_seconds"));
        assert_eq!(Some(talk), durations[id].or(Some(0)), "talk = the helpdesk's call_duration: {summary}");
        assert!(wait <= total && talk <= total, "{summary}");
        let answered = !summary["answered_at"].is_null();
        assert_eq!(summary["outcome"] == "answered", answered, "{summary}");
        let incoming = summary["direction"] == "incoming";
        assert_eq!(summary["lost"], incoming && !answered, "lost ⇔ incoming and never answered: {summary}");
        if incoming && answered {
            let operator = &summary["operator"];
            let rang = summary["rang"].as_array().expect("rang");
            assert!(
                rang.iter().any(|r| &r["extension"] == operator && r["outcome"] == "answered"),
                "the answering operator rang: {summary}"
            );
        }
    }
    assert_eq!(seen.len(), 70, "one summary per call");
    assert!(seen.values().all(|count| *count == 1), "exactly one summary per call: {seen:?}");
}
