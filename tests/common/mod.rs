//! Helpers shared by the integration tests: fixture paths, replaying traces through the engine.
#![allow(dead_code)]

use std::path::PathBuf;

use deskhook::ari::events::{EventParser, TimedEvent};
use deskhook::calls::{Engine, EngineSettings, Output};
use deskhook::config::Config;

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
    let mut engine = Engine::new(EngineSettings::from_config(config, false).expect("valid settings"));
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
            Output::Event(event) => Some(event.replay_line(&zone)),
            Output::Recording(recording) => Some(recording.replay_line()),
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
