//! Every sink's requests for every real trace (`replay --sink`), against golden files in
//! `tests/fixtures/sinks/`. The golden files were checked by hand against each trace's `.md`
//! (who answered, who hung up, the transfer's kind, the queue, the talk time); the omnidesk
//! sink is checked against the shared `.expected.jsonl` files themselves. Over the 70-call busy
//! stretch, the call summary obeys its invariants call by call, and the CRM sinks' requests
//! keep to what their APIs document (`docs/sinks/bitrix24-api.md`, `docs/sinks/amocrm-api.md`).

mod common;
#[path = "deliver_support/mod.rs"]
mod deliver_support;
mod sinks_support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use common::*;
use deskhook::commands::replay::replay;
use deskhook::config::Config;
use serde_json::Value;
// The documented parameters and codes are the strict fakes' own lists.
use sinks_support::amocrm::CALL_FIELDS as AMOCRM_CALL_FIELDS;
use sinks_support::bitrix24::{
    FINISH_KEYS as BITRIX24_FINISH_KEYS, REGISTER_KEYS as BITRIX24_REGISTER_KEYS, STATUS_CODES as BITRIX24_STATUS_CODES,
};

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
        for sink in ["json", "zammad", "bitrix24", "amocrm"] {
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
    assert!(err.contains("no sink named \"crm\"") && err.contains("helpdesk, json, zammad, bitrix24, amocrm"), "{err}");
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

/// `users` of the bitrix24 and amocrm sinks of `lab-sinks.toml` (103 is in neither).
const BITRIX24_USERS: [(&str, u64); 2] = [("101", 11), ("102", 12)];
const AMOCRM_USERS: [(&str, u64); 2] = [("101", 5101), ("102", 5102)];

/// `busy-stretch.toml` with a json sink (for the summaries) and the CRM sinks of `lab-sinks.toml`.
fn busy_stretch_config() -> Config {
    let base = std::fs::read_to_string(fixtures().join("busy-stretch.toml")).expect("config");
    let lab = std::fs::read_to_string(sinks_dir().join("lab-sinks.toml")).expect("lab-sinks.toml");
    let crm = &lab[lab.find("[[sinks]]\nname = \"bitrix24\"").expect("the bitrix24 sink of lab-sinks.toml")..];
    Config::from_toml(
        &format!("{base}\n[[sinks]]\nname = \"json\"\nkind = \"json\"\nurl = \"https://x.example/c\"\n\n{crm}"),
        "c",
    )
    .expect("busy-stretch.toml with a json sink and the CRM sinks")
}

/// Each call's `request`s to `sink`, by unique_id, in send order.
fn by_call(lines: Vec<Value>) -> BTreeMap<String, Vec<Value>> {
    let mut calls: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for line in lines {
        let id = line["unique_id"].as_str().unwrap_or_else(|| panic!("unique_id: {line}")).to_string();
        calls.entry(id).or_default().push(line["request"].clone());
    }
    calls
}

/// `YYYY-MM-DDTHH:MM:SS+03:00`: ISO 8601 with the numeric offset of `pbx.timezone` (Moscow).
fn is_moscow_date(date: &str) -> bool {
    let bytes = date.as_bytes();
    let digits = |range: std::ops::Range<usize>| range.into_iter().all(|index| bytes[index].is_ascii_digit());
    bytes.len() == 25
        && digits(0..4)
        && digits(5..7)
        && digits(8..10)
        && digits(11..13)
        && digits(14..16)
        && digits(17..19)
        && [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')].iter().all(|(at, byte)| bytes[*at] == *byte)
        && &date[19..] == "+03:00"
        && date.parse::<jiff::Timestamp>().is_ok()
}

/// The names of `params`' users (`USER_ID`s through `users`, `USER_PHONE_INNER`s as they are).
fn bitrix24_users(params: &Value) -> Vec<String> {
    let ids: Vec<Value> = match &params["USER_ID"] {
        Value::Array(ids) => ids.clone(),
        Value::Null => Vec::new(),
        one => vec![one.clone()],
    };
    let mut users: Vec<String> = ids
        .iter()
        .map(|id| {
            let id = id.as_u64().unwrap_or_else(|| panic!("USER_ID {id} is not a number: {params}"));
            BITRIX24_USERS
                .iter()
                .find(|(_, known)| *known == id)
                .map_or(format!("user {id}"), |(ext, _)| ext.to_string())
        })
        .collect();
    match &params["USER_PHONE_INNER"] {
        Value::Array(inner) => users.extend(inner.iter().map(|ext| ext.as_str().expect("an extension").to_string())),
        Value::String(ext) => users.push(ext.clone()),
        Value::Null => {}
        other => panic!("USER_PHONE_INNER {other} is neither a string nor a list: {params}"),
    }
    users
}

/// One call's Bitrix24 requests against the rules of `docs/sinks/bitrix24-api.md` and against
/// the call's summary (from the json sink).
fn check_bitrix24_call(id: &str, requests: &[Value], summary: &Value) {
    let methods: Vec<&str> = requests.iter().map(|request| request["method"].as_str().expect("method")).collect();
    let at = |method: &str| -> Vec<usize> {
        methods.iter().enumerate().filter(|(_, name)| **name == method).map(|(index, _)| index).collect()
    };
    let (registers, finishes) = (at("telephony.externalcall.register"), at("telephony.externalcall.finish"));
    let cards: Vec<usize> = [at("telephony.externalcall.show"), at("telephony.externalcall.hide")].concat();
    let records = at("telephony.externalCall.attachRecord");
    assert_eq!(registers, [0], "{id}: exactly one register, first: {methods:?}");
    assert_eq!(finishes.len(), 1, "{id}: exactly one finish: {methods:?}");
    let finish = finishes[0];
    assert!(cards.iter().all(|card| *card < finish), "{id}: every show/hide before finish: {methods:?}");
    assert!(records.iter().all(|record| *record > finish), "{id}: attachRecord only after finish: {methods:?}");
    assert_eq!(
        registers.len() + finishes.len() + cards.len() + records.len(),
        methods.len(),
        "{id}: only the five telephony methods: {methods:?}"
    );
    let incoming = summary["direction"] == "incoming";
    let answered = summary["outcome"] == "answered";
    for (index, request) in requests.iter().enumerate() {
        let params = request["params"].as_object().unwrap_or_else(|| panic!("{id}: params: {request}"));
        let keys: Vec<&str> = params.keys().map(String::as_str).collect();
        if index > 0 {
            assert_eq!(params["CALL_ID"], "<CALL_ID>", "{id}: every request after register names the call: {request}");
        }
        match methods[index] {
            "telephony.externalcall.register" => {
                assert!(keys.iter().all(|key| BITRIX24_REGISTER_KEYS.contains(key)), "{id}: register: {request}");
                assert_eq!(bitrix24_users(&request["params"]).len(), 1, "{id}: one owner: {request}");
                assert_eq!(params["EXTERNAL_CALL_ID"], id, "{id}: the call's own id: {request}");
                assert_eq!(params["TYPE"], if incoming { 2 } else { 1 }, "{id}: TYPE: {request}");
                assert!(!params["PHONE_NUMBER"].as_str().unwrap_or_default().is_empty(), "{id}: {request}");
                assert_eq!(params["PHONE_NUMBER"], summary["client"], "{id}: the client's number: {request}");
                let date = params["CALL_START_DATE"].as_str().unwrap_or_default();
                assert!(is_moscow_date(date), "{id}: CALL_START_DATE {date:?} has no +03:00 offset");
                for flag in ["CRM_CREATE", "SHOW", "ADD_TO_CHAT"] {
                    assert!(params.get(flag).is_none_or(|value| value == 0 || value == 1), "{id}: {flag}: {request}");
                }
            }
            "telephony.externalcall.show" | "telephony.externalcall.hide" => {
                let allowed = ["CALL_ID", "USER_ID", "USER_PHONE_INNER"];
                assert!(keys.iter().all(|key| allowed.contains(key)), "{id}: show/hide: {request}");
                assert!(params["USER_ID"].is_array(), "{id}: USER_ID is a list of ids: {request}");
                assert!(!bitrix24_users(&request["params"]).is_empty(), "{id}: a card for nobody: {request}");
            }
            "telephony.externalcall.finish" => {
                assert!(keys.iter().all(|key| BITRIX24_FINISH_KEYS.contains(key)), "{id}: finish: {request}");
                assert_eq!(bitrix24_users(&request["params"]).len(), 1, "{id}: one user: {request}");
                let code = params["STATUS_CODE"].as_str().unwrap_or_default();
                assert!(BITRIX24_STATUS_CODES.contains(&code), "{id}: STATUS_CODE {code:?} is not documented");
                assert_eq!(code == "200", answered, "{id}: 200 exactly for an answered call: {request}");
                if incoming && !answered {
                    assert_eq!(code, "304", "{id}: every missed incoming call is 304: {request}");
                }
                assert_eq!(params["DURATION"], summary["talk_seconds"], "{id}: DURATION = talk seconds: {request}");
                assert_eq!(params.contains_key("FAILED_REASON"), !answered, "{id}: {request}");
            }
            _ => {
                assert_eq!(keys, ["CALL_ID", "FILENAME"], "{id}: attachRecord: {request}");
                let name = params["FILENAME"].as_str().expect("FILENAME");
                assert!(name.ends_with(".wav") || name.ends_with(".mp3"), "{id}: wav or mp3 only: {request}");
                let file = request["file"].as_str().unwrap_or_else(|| panic!("{id}: no file: {request}"));
                assert!(file.ends_with(&format!("/{name}")), "{id}: FILENAME is the file's name: {request}");
            }
        }
    }
    // Bitrix24 keeps one record per call (another would replace it): the call's first recording.
    let attached: Vec<&Value> = records.iter().map(|index| &requests[*index]["params"]["FILENAME"]).collect();
    let first: Vec<&Value> = summary["recordings"].as_array().expect("recordings").iter().take(1).collect();
    assert_eq!(attached, first, "{id}");
}

/// One call's amoCRM requests: at most one call, with documented fields and no nulls.
fn check_amocrm_call(id: &str, requests: &[Value], summary: &Value) {
    assert_eq!(requests.len(), 1, "{id}: one amoCRM call per call: {requests:?}");
    let request = &requests[0];
    assert_eq!(request["method"], "POST /api/v4/calls", "{id}");
    let body = request["body"].as_array().unwrap_or_else(|| panic!("{id}: body is a list: {request}"));
    assert_eq!(body.len(), 1, "{id}: one call in the body: {request}");
    let call = body[0].as_object().unwrap_or_else(|| panic!("{id}: {request}"));
    for (key, value) in call {
        assert!(AMOCRM_CALL_FIELDS.contains(&key.as_str()), "{id}: {key} is not a field of a call: {request}");
        assert!(!value.is_null(), "{id}: {key} is null: {request}");
    }
    let status = call["call_status"].as_u64().unwrap_or_else(|| panic!("{id}: call_status: {request}"));
    assert!((1..=7).contains(&status), "{id}: call_status {status}");
    let (incoming, answered) = (summary["direction"] == "incoming", summary["outcome"] == "answered");
    assert_eq!(call["direction"], if incoming { "inbound" } else { "outbound" }, "{id}: {request}");
    assert_eq!(call["uniq"], id, "{id}: {request}");
    assert_eq!(call["phone"], summary["client"], "{id}: {request}");
    assert_eq!(call["duration"], summary["talk_seconds"], "{id}: duration = talk seconds: {request}");
    assert_eq!(status == 4, answered, "{id}: 4 exactly for an answered call: {request}");
    if incoming && !answered {
        assert_eq!(status, 3, "{id}: a missed incoming call is 3: {request}");
    }
    let mapped = summary["operator"].as_str().and_then(|ext| AMOCRM_USERS.iter().find(|(known, _)| *known == ext));
    assert_eq!(call.get("responsible_user_id"), mapped.map(|(_, user)| Value::from(*user)).as_ref(), "{id}: {request}");
}

/// Bitrix24 and amoCRM requests keep to their APIs' rules call by call, over every fixture trace
/// and the 70-call busy stretch, and agree with the call's summary.
#[test]
fn crm_requests_follow_their_apis_rules_call_by_call() {
    let traces: Vec<PathBuf> = scenarios().iter().map(|name| fixtures().join(format!("{name}.jsonl"))).collect();
    let busy = [fixtures().join("busy-stretch.jsonl")];
    for (config, traces, calls) in [(sinks_config(), &traces[..], None), (busy_stretch_config(), &busy[..], Some(70))] {
        let summaries: BTreeMap<String, Value> = replayed(&config, "json", traces)
            .into_iter()
            .map(|line| line["request"].clone())
            .filter(|request| request["event"] == "call_summary")
            .map(|summary| (summary["unique_id"].as_str().expect("id").to_string(), summary))
            .collect();
        let bitrix24 = by_call(replayed(&config, "bitrix24", traces));
        let amocrm = by_call(replayed(&config, "amocrm", traces));
        if let Some(calls) = calls {
            assert_eq!(summaries.len(), calls, "{traces:?}");
        }
        let ids = |calls: &BTreeMap<String, Vec<Value>>| calls.keys().cloned().collect::<Vec<_>>();
        assert_eq!(ids(&bitrix24), summaries.keys().cloned().collect::<Vec<_>>(), "every summarised call, no other");
        assert_eq!(ids(&amocrm), ids(&bitrix24), "every summarised call, no other");
        for (id, summary) in &summaries {
            check_bitrix24_call(id, &bitrix24[id], summary);
            check_amocrm_call(id, &amocrm[id], summary);
        }
    }
}
