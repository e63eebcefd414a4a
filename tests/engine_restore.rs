//! deskhook killed at any moment of a call and started again: the engine's checkpoints (as
//! the daemon stores them) taken back by a new engine, then a resync with what Asterisk lists
//! at that moment, then the rest of the call. Every trace, every cut: the events and
//! recordings together are exactly the trace's expected ones — nothing lost, nothing twice.

mod common;

use std::collections::BTreeMap;

use common::*;
use deskhook::ari::{Bridge, Channel};
use deskhook::calls::{CallCheckpoint, Effect, Engine, Output};
use fake_ari::{FakeTrace, PbxState};

/// What the outbox's `open_calls` table would hold after these outputs.
fn apply_checkpoints(stored: &mut BTreeMap<String, CallCheckpoint>, out: &[Output]) {
    for output in out {
        if let Output::Effect(Effect::CallCheckpoint { unique_id, checkpoint }) = output {
            match checkpoint {
                Some(checkpoint) => {
                    let json = checkpoint.to_json();
                    stored.insert(unique_id.clone(), CallCheckpoint::from_json(&json).expect("round trip"));
                }
                None => {
                    stored.remove(unique_id);
                }
            }
        }
    }
}

#[test]
fn a_restart_at_any_point_of_any_call_loses_and_repeats_nothing() {
    let config = config("lab.toml");
    for name in scenarios() {
        let trace = FakeTrace::read(&fixtures().join(format!("{name}.jsonl"))).expect("trace");
        let events = parse_all(&trace_lines(&name));
        let expected = expected_values(&name);
        for cut in 1..events.len() {
            let settings = deskhook::daemon::engine_settings(&config, false).expect("settings");
            let mut first = Engine::new(settings.clone());
            let mut out = Vec::new();
            let mut stored = BTreeMap::new();
            let mut pbx = PbxState::default();
            for (event, message) in events[..cut].iter().zip(&trace.messages) {
                first.handle(event, &mut out);
                pbx.apply(message);
                first.take_checkpoints(&mut out);
            }
            apply_checkpoints(&mut stored, &out);
            let channels: Vec<Channel> =
                serde_json::from_value(serde_json::Value::Array(pbx.channels())).expect("channels");
            let bridges: Vec<Bridge> =
                serde_json::from_value(serde_json::Value::Array(pbx.bridges())).expect("bridges");
            let mut second = Engine::new(settings);
            // The daemon's heartbeat rides with every batch: the previous run was seen up to its last event.
            second.restore(stored.into_values().collect(), Some(events[cut - 1].at));
            second.resync(&channels, &bridges, events[cut - 1].at, &mut out);
            for event in &events[cut..] {
                second.handle(event, &mut out);
            }
            let got = render(&config, out);
            assert_eq!(got, expected, "{name}, killed after event {cut}:\n{}", diff(&got, &expected));
        }
    }
}
