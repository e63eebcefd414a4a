//! deskhook asks Asterisk for only the event types the engine reads
//! ([`EngineSettings::event_types_read`]); every recorded trace, with every other type taken
//! out as Asterisk's event filter would, must give exactly the same outputs (events, recordings,
//! summaries and effects) as the whole trace, with MixMonitor pickup on and off.

mod common;

use deskhook::calls::{Engine, EngineSettings};

fn outputs(settings: &EngineSettings, lines: &[String]) -> String {
    let mut engine = Engine::new(settings.clone());
    let mut out = Vec::new();
    for event in common::parse_all(lines) {
        engine.handle(&event, &mut out);
    }
    format!("{out:#?}")
}

fn kind_of(line: &str) -> String {
    let message: serde_json::Value = serde_json::from_str(line).expect("trace lines are JSON");
    message.get("type").and_then(|kind| kind.as_str()).unwrap_or_default().to_string()
}

#[test]
fn only_the_event_types_the_engine_reads_give_the_same_outputs_as_every_event() {
    let mut dropped_total = 0;
    for (name, config) in common::traces_with_configs() {
        let lines = common::trace_lines(&name);
        for mixmonitor in [true, false] {
            let mut settings = deskhook::daemon::engine_settings(&config, true).expect("valid settings");
            settings.report_mixmonitor_files = mixmonitor;
            let allowed = settings.event_types_read();
            let filtered: Vec<String> =
                lines.iter().filter(|line| allowed.contains(&kind_of(line).as_str())).cloned().collect();
            dropped_total += lines.len() - filtered.len();
            assert_eq!(
                outputs(&settings, &filtered),
                outputs(&settings, &lines),
                "{name}, MixMonitor pickup {mixmonitor}: the filtered trace tells a different story"
            );
        }
    }
    assert!(dropped_total > 0, "the filter takes something out of the recorded traces");
}

#[test]
fn channel_variables_are_asked_for_only_while_mixmonitor_files_are_picked_up() {
    let config = common::config("lab.toml");
    let mut settings = deskhook::daemon::engine_settings(&config, true).expect("valid settings");
    settings.report_mixmonitor_files = true;
    assert!(settings.event_types_read().contains(&"ChannelVarset"));
    settings.report_mixmonitor_files = false;
    assert!(!settings.event_types_read().contains(&"ChannelVarset"));
    assert!(settings.event_types_read().contains(&"ChannelDialplan"));
}
