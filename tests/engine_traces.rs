//! Every real trace, replayed through the call engine, gives exactly its expected helpdesk
//! events; the busy stretch obeys its rules; damaged and mixed input changes nothing it should not.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use deskhook::ari::events::{EventParser, TimedEvent};
use deskhook::calls::{Effect, Engine, Output};
use deskhook::sinks::omnidesk;
use proptest::prelude::*;
use serde_json::Value;

#[test]
fn every_scenario_replays_to_its_expected_events() {
    let config = config("lab.toml");
    let scenarios = scenarios();
    assert!(scenarios.len() >= 12, "fixtures missing: {scenarios:?}");
    let mut failures = Vec::new();
    for name in &scenarios {
        let got = replay_values(&config, &parse_all(&trace_lines(name)));
        let want = expected_values(name);
        if got != want {
            failures.push(format!("== {name}\n{}", diff(&got, &want)));
        }
    }
    assert!(failures.is_empty(), "scenarios differ:\n{}", failures.join("\n"));
}

#[test]
fn repeated_events_change_nothing() {
    let config = config("lab.toml");
    for name in scenarios() {
        let events = parse_all(&trace_lines(&name));
        let doubled: Vec<TimedEvent> = events.iter().flat_map(|event| [event.clone(), event.clone()]).collect();
        let got = replay_values(&config, &doubled);
        let want = expected_values(&name);
        assert_eq!(got, want, "{name} with every event twice:\n{}", diff(&got, &want));
    }
}

#[test]
fn unknown_event_types_and_fields_are_tolerated() {
    let config = config("lab.toml");
    for name in scenarios() {
        let mut parser = EventParser::new();
        let mut events = Vec::new();
        for (index, line) in trace_lines(&name).iter().enumerate() {
            let stamp = serde_json::from_str::<Value>(line).expect("json")["timestamp"].clone();
            let novel = serde_json::json!({"type": "ChannelTalkingStarted", "timestamp": stamp, "channel": {"id": "x"}, "future_field": [1, 2]});
            if index % 3 == 0 {
                events.push(parser.parse(&novel.to_string()).expect("unknown types parse"));
            }
            let mut value: Value = serde_json::from_str(line).expect("json");
            value["added_in_asterisk_99"] = serde_json::json!({"nested": true});
            events.push(parser.parse(&value.to_string()).expect("extra fields parse"));
        }
        assert!(parser.stats.unknown_types > 0 && parser.stats.unknown_fields > 0, "{:?}", parser.stats);
        let got = replay_values(&config, &events);
        assert_eq!(got, expected_values(&name), "{name} with unknown input mixed in");
    }
}

#[test]
fn a_truncated_line_is_reported_and_the_rest_still_replays() {
    let lines = trace_lines("01-in-direct-answered");
    // Cut a ChannelVarset (harmless to the outcome) in the middle of its JSON.
    let victim = lines.iter().position(|line| line.contains("\"ChannelVarset\"")).expect("a varset line");
    let mut text = String::new();
    for (index, line) in lines.iter().enumerate() {
        if index == victim {
            text.push_str(&line[..line.len() / 2]);
        } else {
            text.push_str(line);
        }
        text.push('\n');
    }
    let mut parser = EventParser::new();
    let trace = deskhook::trace::read_trace_from(text.as_bytes(), "cut.jsonl", &mut parser).expect("readable");
    assert_eq!(trace.bad_lines.len(), 1);
    assert_eq!(trace.bad_lines[0].line, victim + 1);
    assert!(trace.bad_lines[0].to_string().starts_with(&format!("cut.jsonl:{}: ", victim + 1)));
    let got = replay_values(&config("lab.toml"), &trace.events);
    assert_eq!(got, expected_values("01-in-direct-answered"));
}

#[test]
fn a_trace_cut_off_mid_call_ends_nothing_and_does_not_panic() {
    let config = config("lab.toml");
    for name in scenarios() {
        let events = parse_all(&trace_lines(&name));
        for cut in [events.len() / 4, events.len() / 2, events.len() * 3 / 4] {
            let got = replay_values(&config, &events[..cut]);
            let want = expected_values(&name);
            // Whatever was emitted is a prefix of the full result and holds no ended event
            // unless the call really ended before the cut.
            assert!(
                got.len() <= want.len() && got[..] == want[..got.len()],
                "{name} cut at {cut}:\n{}",
                diff(&got, &want)
            );
        }
    }
}

#[test]
fn interleaved_calls_do_not_bleed_into_each_other() {
    let config = config("lab.toml");
    let mut all: Vec<TimedEvent> = Vec::new();
    let mut want: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    // Shift every trace onto the same moment so that their calls overlap, keeping its own order.
    let base = parse_all(&trace_lines("01-in-direct-answered"))[0].at;
    for name in scenarios() {
        let events = parse_all(&trace_lines(&name));
        let shift = base - events[0].at;
        for mut event in events {
            event.at += shift;
            all.push(event);
        }
        let shifted = replay_values(&config, &shifted_events(&name, shift));
        for value in shifted {
            let id = value["unique_id"].as_str().expect("unique_id").to_string();
            want.entry(id).or_default().push(value);
        }
    }
    all.sort_by_key(|event| event.at);
    let mut got: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for value in replay_values(&config, &all) {
        let id = value["unique_id"].as_str().expect("unique_id").to_string();
        got.entry(id).or_default().push(value);
    }
    assert_eq!(got.len(), want.len(), "calls: got {:?} want {:?}", got.keys(), want.keys());
    for (id, events) in &want {
        let mine = got.get(id).cloned().unwrap_or_default();
        assert_eq!(&mine, events, "call {id} interleaved:\n{}", diff(&mine, events));
    }
}

fn shifted_events(name: &str, shift: i64) -> Vec<TimedEvent> {
    parse_all(&trace_lines(name))
        .into_iter()
        .map(|mut event| {
            event.at += shift;
            event
        })
        .collect()
}

/// busy-stretch.md: the rules its replay must obey, call by call.
#[test]
fn busy_stretch_obeys_its_rules() {
    let config = config("busy-stretch.toml");
    let lines = trace_lines("busy-stretch");
    let events = parse_all(&lines);
    check_busy_stretch_rules(&lines, &replay_values(&config, &events));
}

/// Without `[pbx.queues]` the live daemon asks its shell; the queue event waits for the answer
/// and everything after it waits too.
#[test]
fn queue_members_from_the_shell_are_used_and_order_is_kept() {
    let mut config = config("lab.toml");
    config.recordings.mode = deskhook::config::RecordingMode::Off;
    let events = parse_all(&trace_lines("04-in-queue-answered-by-102"));
    let answer = events
        .iter()
        .position(|e| matches!(&e.event, deskhook::ari::AriEvent::Dial { dialstatus, .. } if dialstatus == "ANSWER"))
        .expect("an answer");
    let mut engine = Engine::new(deskhook::daemon::engine_settings(&config, true).expect("settings"));
    let mut out = Vec::new();
    for event in &events[..=answer] {
        engine.handle(event, &mut out);
    }
    let asked = out.iter().find_map(|o| match o {
        Output::Effect(Effect::QueueMembers { unique_id, channel_id, queue }) => {
            Some((unique_id.clone(), channel_id.clone(), queue.clone()))
        }
        _ => None,
    });
    let (unique_id, channel_id, queue) = asked.expect("the engine asked for queue members");
    assert_eq!(
        (unique_id.as_str(), channel_id.as_str(), queue.as_str()),
        ("1795237133.16", "1795237133.16", "support")
    );
    // The operator answered before the shell did: the answer waits behind the queue event.
    assert_eq!(events_of(&out), ["start of an incoming call"]);
    let members = vec!["PJSIP/103,PJSIP/102,PJSIP/101,Local/104@from-queue/n".to_string()];
    engine.provide_queue_members(&unique_id, &queue, Some(members), events[answer].at + 50, &mut out);
    assert_eq!(events_of(&out), ["start of an incoming call", "call to queue support", "incoming call answered"]);
    for event in &events[answer + 1..] {
        engine.handle(event, &mut out);
    }
    assert_eq!(
        events_of(&out),
        ["start of an incoming call", "call to queue support", "incoming call answered", "incoming call is ended"]
    );
    let queue_event = out.iter().find_map(|o| match o {
        Output::Event(e) => omnidesk::map(e).filter(|mapped| mapped.status.starts_with("call to queue")),
        _ => None,
    });
    let queue_event = queue_event.expect("queue event");
    assert_eq!(queue_event.to_user, "101,102,103,104");
    // Dated when the caller entered the queue, not when the shell answered.
    assert_eq!(omnidesk::format_datetime(queue_event.at, &config.time_zone()), "21.11.2026-07:58:53");
    assert_eq!(engine.open_calls(), 0);
}

/// When the shell cannot say (ARI error), the ring round is used.
#[test]
fn an_unknown_answer_from_the_shell_falls_back_to_the_ring_round() {
    let config = config("lab.toml");
    let events = parse_all(&trace_lines("05-in-queue-noanswer-callerhangup"));
    let mut engine = Engine::new(deskhook::daemon::engine_settings(&config, true).expect("settings"));
    let mut out = Vec::new();
    let start = events[0].at;
    let mut answered = false;
    for event in &events {
        if !answered && event.at > start + 2_000 {
            assert_eq!(events_of(&out), ["start of an incoming call"]);
            engine.provide_queue_members("1795237142.20", "support", None, event.at, &mut out);
            assert_eq!(events_of(&out), ["start of an incoming call", "call to queue support"]);
            answered = true;
        }
        engine.handle(event, &mut out);
    }
    assert!(answered);
    let queue = out.iter().find_map(|o| match o {
        Output::Event(e) => omnidesk::map(e).filter(|m| m.status == "call to queue support").map(|m| m.to_user),
        _ => None,
    });
    assert_eq!(queue.as_deref(), Some("101,102,103"));
    assert_eq!(events_of(&out), ["start of an incoming call", "call to queue support", "incoming call is ended"]);
}

/// If the shell never answers, the engine stops waiting after a few seconds of event time.
#[test]
fn a_silent_shell_does_not_hold_events_forever() {
    let config = config("lab.toml");
    let events = parse_all(&trace_lines("04-in-queue-answered-by-102"));
    let mut engine = Engine::new(deskhook::daemon::engine_settings(&config, true).expect("settings"));
    let mut out = Vec::new();
    let start = events[0].at;
    for event in &events {
        engine.handle(event, &mut out);
        if event.at < start + 4_000 {
            assert_eq!(events_of(&out), ["start of an incoming call"], "released too early");
        }
    }
    assert_eq!(
        events_of(&out),
        ["start of an incoming call", "call to queue support", "incoming call answered", "incoming call is ended"]
    );
    assert_eq!(engine.open_calls(), 0);
}

fn events_of(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Event(e) => omnidesk::map(e).map(|mapped| mapped.status),
            _ => None,
        })
        .collect()
}

#[test]
fn replay_without_queue_config_waits_for_the_ring_round_time_window() {
    // No [pbx.queues], no shell: a member leg that is dialed and nothing else happens for a
    // while still produces the queue event once the ring round window passes in event time.
    let config = config("lab.toml");
    let events = parse_all(&trace_lines("04-in-queue-answered-by-102"));
    let first_member_dial = events
        .iter()
        .position(|e| matches!(&e.event, deskhook::ari::AriEvent::Dial { dialstatus, .. } if dialstatus.is_empty()))
        .expect("a member dial");
    let mut engine = Engine::new(deskhook::daemon::engine_settings(&config, false).expect("settings"));
    let mut out = Vec::new();
    for event in &events[..=first_member_dial] {
        engine.handle(event, &mut out);
    }
    assert_eq!(events_of(&out), ["start of an incoming call"]);
    engine.advance_to(events[first_member_dial].at + 5_000, &mut out);
    assert_eq!(events_of(&out), ["start of an incoming call", "call to queue support"]);
}

/// probe-e was captured with an ARI event filter that hides ChannelDialplan: the queue is still
/// recognised from the channel snapshots in the Dial events.
#[test]
fn a_queue_is_recognised_without_channel_dialplan_events() {
    let got = replay_values(&config("lab.toml"), &parse_all(&trace_lines("probe-e-eventfilter-queue-answered")));
    let statuses: Vec<&str> = got.iter().filter_map(|v| v["status"].as_str()).collect();
    assert_eq!(
        statuses,
        [
            "start of an incoming call",
            "call to queue support",
            "incoming call answered",
            "incoming call is ended",
            "record"
        ]
    );
    assert_eq!(got[1]["to_user"], "101,102,103");
    assert_eq!(got[2]["to_user"], "102");
}

/// probe-d: `core restart now` mid-call. Asterisk still delivers the hangups before the socket
/// drops, and the call ends once with the talk it had.
#[test]
fn an_asterisk_restart_mid_call_ends_the_call_once() {
    let got = replay_values(&config("lab.toml"), &parse_all(&trace_lines("probe-d-restart-midcall")));
    let statuses: Vec<&str> = got.iter().filter_map(|v| v["status"].as_str()).collect();
    assert_eq!(
        statuses,
        [
            "start of an incoming call",
            "incoming call to personal number",
            "incoming call answered",
            "incoming call is ended",
            "record"
        ]
    );
    assert_eq!(got[3]["to_user"], "101");
    assert!(got[3]["call_duration"].as_i64().is_some_and(|s| (1..=4).contains(&s)), "{}", got[3]);
}

/// The traces the damaged-stream properties draw from, parsed once.
fn damage_material() -> &'static Vec<(String, Vec<TimedEvent>)> {
    static TRACES: std::sync::OnceLock<Vec<(String, Vec<TimedEvent>)>> = std::sync::OnceLock::new();
    TRACES.get_or_init(|| {
        let mut names = scenarios();
        names.push("probe-d-restart-midcall".into());
        names.into_iter().map(|name| (name.clone(), parse_all(&trace_lines(&name)))).collect()
    })
}

/// What a broken network or a busy Asterisk can do to one event on its way.
#[derive(Debug, Clone, Copy)]
enum Damage {
    Kept,
    Lost,
    Repeated,
    SwappedWithPrevious,
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        17 => Just(Damage::Kept),
        1 => Just(Damage::Lost),
        1 => Just(Damage::Repeated),
        1 => Just(Damage::SwappedWithPrevious),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Whatever Asterisk (or a broken network) does to the event order — events lost, repeated,
    /// swapped — the engine never panics and never sends a call's start or end twice.
    #[test]
    fn shuffled_and_lossy_streams_never_break_the_invariants(
        which in any::<prop::sample::Index>(),
        damages in prop::collection::vec(damage(), 4000),
    ) {
        let config = config("busy-stretch.toml");
        let (name, events) = which.get(damage_material());
        let mut damaged: Vec<TimedEvent> = Vec::new();
        for (event, damage) in events.iter().zip(damages.iter().cycle()) {
            match damage {
                Damage::Lost => {}
                Damage::Repeated => damaged.extend([event.clone(), event.clone()]),
                Damage::SwappedWithPrevious if !damaged.is_empty() => {
                    let last = damaged.len() - 1;
                    damaged.insert(last, event.clone());
                }
                _ => damaged.push(event.clone()),
            }
        }
        let got = replay_values(&config, &damaged);
        let mut counts: HashMap<(String, String), usize> = HashMap::new();
        for value in &got {
            let status = value["status"].as_str().unwrap_or("").to_string();
            if status.contains("start") || status.contains("ended") {
                *counts.entry((value["unique_id"].as_str().unwrap_or("").to_string(), status)).or_default() += 1;
            }
        }
        prop_assert!(counts.values().all(|&n| n == 1), "{}: {:?}", name, counts);
    }

    /// Mangled input from the network never panics the parser or the engine: a line of a real
    /// trace cut short, with bytes overwritten, or with a byte that is not UTF-8 put in.
    #[test]
    fn mangled_messages_are_errors_or_events_never_panics(
        line in any::<prop::sample::Index>(),
        cut in any::<prop::sample::Index>(),
        overwrites in prop::collection::vec((any::<prop::sample::Index>(), prop::sample::select(b"{}[]\",:0aZ\\".to_vec())), 0..4),
        inserted in prop::option::of(any::<prop::sample::Index>()),
    ) {
        static LINES: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let lines = LINES.get_or_init(|| {
            ["04-in-queue-answered-by-102", "12-in-attended-transfer-101-to-102-refer-replaces"]
                .iter()
                .flat_map(|name| trace_lines(name))
                .collect()
        });
        let mut bytes = line.get(lines).clone().into_bytes();
        bytes.truncate(cut.index(bytes.len() + 1));
        for (at, byte) in &overwrites {
            if !bytes.is_empty() {
                let at = at.index(bytes.len());
                bytes[at] = *byte;
            }
        }
        if let Some(at) = inserted {
            let at = at.index(bytes.len() + 1);
            bytes.insert(at, 0xff);
        }
        let config = config("lab.toml");
        let mut engine = Engine::new(deskhook::daemon::engine_settings(&config, false).expect("settings"));
        let mut parser = EventParser::new();
        let mut out = Vec::new();
        let text = String::from_utf8_lossy(&bytes);
        match parser.parse(&text) {
            Ok(event) => engine.handle(&event, &mut out),
            Err(_) => prop_assert_eq!(parser.stats.malformed, 1),
        }
    }
}
