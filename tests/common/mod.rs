//! Helpers shared by the integration tests: fixture paths, replaying traces through the engine.
#![allow(dead_code)]

use std::path::PathBuf;

use deskhook::ari::events::{EventParser, TimedEvent};
use deskhook::calls::{Engine, Output};
use deskhook::config::Config;
use deskhook::sinks::omnidesk;

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces")
}

pub fn config(name: &str) -> Config {
    Config::load(&fixtures().join(name)).expect("fixture config is valid")
}

/// The scenario traces that come with an expected file.
pub fn scenarios() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(fixtures())
        .expect("fixtures dir")
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .filter_map(|name| name.strip_suffix(".expected.jsonl").map(str::to_string))
        .collect();
    names.sort();
    names
}

/// Every scenario trace and the busy stretch, each with the config it was captured under.
pub fn traces_with_configs() -> Vec<(String, Config)> {
    let mut names = scenarios();
    names.push("busy-stretch".into());
    names
        .into_iter()
        .map(|name| {
            let config = if name == "busy-stretch" { config("busy-stretch.toml") } else { config("lab.toml") };
            (name, config)
        })
        .collect()
}

pub fn trace_lines(name: &str) -> Vec<String> {
    std::fs::read_to_string(fixtures().join(format!("{name}.jsonl")))
        .expect("trace readable")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(str::to_string)
        .collect()
}

pub fn parse_all(lines: &[String]) -> Vec<TimedEvent> {
    let mut parser = EventParser::new();
    lines.iter().map(|line| parser.parse(line).expect("fixture lines parse")).collect()
}

/// Replays events through a fresh engine and renders the outputs as SPEC §5 JSON values.
pub fn replay_values(config: &Config, events: &[TimedEvent]) -> Vec<serde_json::Value> {
    let mut engine = Engine::new(deskhook::daemon::engine_settings(config, false).expect("valid settings"));
    let mut out = Vec::new();
    for event in events {
        engine.handle(event, &mut out);
    }
    render(config, out)
}

/// Engine outputs as SPEC §5 JSON values (effects are not printed).
pub fn render(config: &Config, out: Vec<Output>) -> Vec<serde_json::Value> {
    let zone = config.time_zone();
    out.into_iter()
        .filter_map(|output| match output {
            Output::Event(event) => omnidesk::map(&event).map(|mapped| mapped.replay_line(&zone)),
            Output::Recording(recording) => Some(omnidesk::record_line(&recording)),
            Output::Effect(_) => None,
        })
        .map(|line| serde_json::from_str(&line).expect("replay lines are JSON"))
        .collect()
}

pub fn expected_values(name: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(fixtures().join(format!("{name}.expected.jsonl")))
        .expect("expected file readable")
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| serde_json::from_str(line).expect("expected lines are JSON"))
        .collect()
}

/// A readable diff of two event lists, for assertion messages.
pub fn diff(got: &[serde_json::Value], want: &[serde_json::Value]) -> String {
    let mut text = String::new();
    for index in 0..got.len().max(want.len()) {
        let (g, w) = (got.get(index), want.get(index));
        let mark = if g == w { "  " } else { "!!" };
        text.push_str(&format!("{mark} #{index}\n   got:  {}\n   want: {}\n", show(g), show(w)));
    }
    text
}

fn show(value: Option<&serde_json::Value>) -> String {
    value.map_or_else(|| "(nothing)".to_string(), ToString::to_string)
}

/// busy-stretch.md's rules, call by call, for the helpdesk events `got` (record lines ignored)
/// produced from the trace `lines`.
pub fn check_busy_stretch_rules(lines: &[String], got: &[serde_json::Value]) {
    use serde_json::Value;
    use std::collections::HashMap;
    let got: Vec<Value> = got.iter().filter(|v| v["status"] != "record").cloned().collect();
    // Facts straight from the trace.
    let mut incoming: HashMap<String, (String, String)> = HashMap::new(); // id -> (caller, did)
    let mut outgoing: Vec<String> = Vec::new();
    let mut answered_by: HashMap<String, String> = HashMap::new();
    let mut answered_time: HashMap<String, i64> = HashMap::new();
    for line in lines {
        let event: Value = serde_json::from_str(line).expect("json");
        match event["type"].as_str() {
            Some("ChannelCreated") => {
                let channel = &event["channel"];
                let (name, state, id) = (
                    channel["name"].as_str().unwrap_or(""),
                    channel["state"].as_str(),
                    channel["id"].as_str().unwrap_or(""),
                );
                if name.starts_with("PJSIP/provider") && state == Some("Ring") {
                    let caller = channel["caller"]["number"].as_str().unwrap_or("").to_string();
                    let did = channel["dialplan"]["exten"].as_str().unwrap_or("").to_string();
                    incoming.insert(id.to_string(), (caller, did));
                }
                if name.starts_with("PJSIP/103") && state == Some("Ring") {
                    outgoing.push(id.to_string());
                }
            }
            Some("Dial") if event["dialstatus"] == "ANSWER" => {
                let caller = event["caller"]["id"].as_str().unwrap_or("").to_string();
                let peer = event["peer"]["name"].as_str().unwrap_or("");
                let extension = peer.trim_start_matches("PJSIP/").split('-').next().unwrap_or("").to_string();
                answered_by.insert(caller, extension);
            }
            Some("ChannelVarset") if event["variable"] == "ANSWEREDTIME" => {
                if let Ok(seconds) = event["value"].as_str().unwrap_or("").parse() {
                    answered_time.insert(event["channel"]["id"].as_str().unwrap_or("").to_string(), seconds);
                }
            }
            _ => {}
        }
    }
    assert_eq!(incoming.len(), 58);
    assert_eq!(outgoing.len(), 12);

    let mut by_call: HashMap<String, Vec<&Value>> = HashMap::new();
    for value in &got {
        by_call.entry(value["unique_id"].as_str().unwrap_or("").to_string()).or_default().push(value);
    }
    assert_eq!(by_call.len(), 70, "events for something other than the 70 calls");
    let statuses = |id: &str| -> Vec<String> {
        by_call
            .get(id)
            .map(|evs| evs.iter().map(|e| e["status"].as_str().unwrap_or("").to_string()).collect())
            .unwrap_or_default()
    };
    let mut queued = 0;
    for (id, (caller, did)) in &incoming {
        let events = &by_call[id];
        let st = statuses(id);
        assert_eq!(st.iter().filter(|s| *s == "start of an incoming call").count(), 1, "{id}: {st:?}");
        assert_eq!(st.iter().filter(|s| *s == "incoming call is ended").count(), 1, "{id}: {st:?}");
        assert_eq!(st.last().map(String::as_str), Some("incoming call is ended"), "{id}: {st:?}");
        assert_eq!(events[0]["from_user"], caller.as_str());
        if did == "74951234568" {
            queued += 1;
            let queue: Vec<_> = events.iter().filter(|e| e["status"] == "call to queue support").collect();
            assert_eq!(queue.len(), 1, "{id}: {st:?}");
            assert_eq!(queue[0]["to_user"], "101,102,103");
        }
        let answers: Vec<_> = events.iter().filter(|e| e["status"] == "incoming call answered").collect();
        let ended = events.last().expect("ended");
        match answered_by.get(id) {
            Some(extension) => {
                assert_eq!(answers.last().map(|e| e["to_user"].clone()), Some(Value::from(extension.as_str())), "{id}");
                let duration = ended["call_duration"].as_i64().expect("answered calls have a duration");
                assert!(
                    (duration - answered_time[id]).abs() <= 1,
                    "{id}: {duration} vs ANSWEREDTIME {}",
                    answered_time[id]
                );
            }
            None => {
                assert!(answers.is_empty(), "{id}: {st:?}");
                assert!(ended.get("call_duration").is_none(), "{id}");
            }
        }
    }
    assert_eq!(queued, 24);
    for id in &outgoing {
        let events = &by_call[id];
        let st = statuses(id);
        assert_eq!(st.iter().filter(|s| *s == "outgoing call start").count(), 1, "{id}: {st:?}");
        assert_eq!(st.iter().filter(|s| *s == "outgoing call ended").count(), 1, "{id}: {st:?}");
        assert_eq!(events[0]["from_user"], "103");
        assert!(events[0]["to_user"].as_str().is_some_and(|n| n.starts_with("8495")), "{:?}", events[0]);
        if let Some(seconds) = answered_time.get(id) {
            assert!(st.contains(&"answering an outgoing call".to_string()), "{id}: {st:?}");
            let duration = events.last().and_then(|e| e["call_duration"].as_i64()).expect("duration");
            assert!((duration - seconds).abs() <= 1, "{id}");
        }
    }
}
