//! What the engine does when the live daemon reconnects to ARI (or starts mid-call) and
//! resyncs from `GET /channels` + `GET /bridges`: the real mid-call snapshots of each trace.

mod common;

use std::collections::BTreeSet;

use common::*;
use deskhook::ari::events::TimedEvent;
use deskhook::ari::{AriEvent, Bridge, Channel};
use deskhook::calls::{Engine, Output};

fn snapshot(name: &str) -> (Vec<Channel>, Vec<Bridge>) {
    let read = |suffix: &str| {
        std::fs::read_to_string(fixtures().join(format!("{name}.midcall-{suffix}.json"))).expect("snapshot")
    };
    (
        serde_json::from_str(&read("channels")).expect("channels json"),
        serde_json::from_str(&read("bridges")).expect("bridges json"),
    )
}

/// Where in the trace the snapshot fits: the middle of the stretch during which exactly the
/// snapshot's channels were alive.
fn cut_point(events: &[TimedEvent], snapshot: &[Channel]) -> usize {
    let wanted: BTreeSet<&str> = snapshot.iter().map(|c| c.id.as_str()).collect();
    let mut alive: BTreeSet<String> = BTreeSet::new();
    let mut fits = Vec::new();
    for (index, event) in events.iter().enumerate() {
        match &event.event {
            AriEvent::ChannelCreated { channel } => {
                alive.insert(channel.id.clone());
            }
            AriEvent::ChannelDestroyed { channel, .. } => {
                alive.remove(&channel.id);
            }
            _ => {}
        }
        if alive.iter().map(String::as_str).collect::<BTreeSet<_>>() == wanted {
            fits.push(index + 1);
        }
    }
    assert!(!fits.is_empty(), "the snapshot fits nowhere");
    fits[fits.len() / 2]
}

const ANSWERED: [&str; 6] = [
    "01-in-direct-answered",
    "04-in-queue-answered-by-102",
    "07-out-answered",
    "10-in-blind-transfer-101-to-102",
    "13-in-queue-answered-by-102-with-channelvars",
    "14-in-queue-localmembers-answered-by-102",
];

#[test]
fn a_reconnect_that_finds_the_call_still_there_changes_nothing() {
    let config = config("lab.toml");
    for name in ANSWERED {
        let events = parse_all(&trace_lines(name));
        let (channels, bridges) = snapshot(name);
        let cut = cut_point(&events, &channels);
        let mut engine = Engine::new(deskhook::daemon::engine_settings(&config, false).expect("settings"));
        let mut out = Vec::new();
        for event in &events[..cut] {
            engine.handle(event, &mut out);
        }
        engine.resync(&channels, &bridges, events[cut].at, &mut out);
        for event in &events[cut..] {
            engine.handle(event, &mut out);
        }
        let got = render(&config, out);
        assert_eq!(got, expected_values(name), "{name}:\n{}", diff(&got, &expected_values(name)));
    }
}

#[test]
fn a_reconnect_that_finds_the_channels_gone_ends_the_call_at_the_resync() {
    let config = config("lab.toml");
    for name in ANSWERED {
        let events = parse_all(&trace_lines(name));
        let cut = cut_point(&events, &snapshot(name).0);
        let mut engine = Engine::new(deskhook::daemon::engine_settings(&config, false).expect("settings"));
        let mut out = Vec::new();
        for event in &events[..cut] {
            engine.handle(event, &mut out);
        }
        let resync_at = events[cut].at + 30_000;
        engine.resync(&[], &[], resync_at, &mut out);
        assert_eq!(engine.open_calls(), 0, "{name}");
        let got = render(&config, out);
        let want = expected_values(name);
        let ended =
            got.iter().rev().find(|v| v["status"].as_str().is_some_and(|s| s.contains("ended"))).expect("ended");
        let want_ended =
            want.iter().rev().find(|v| v["status"].as_str().is_some_and(|s| s.contains("ended"))).expect("ended");
        assert_eq!(ended["to_user"], want_ended["to_user"], "{name}");
        assert_eq!(ended["unique_id"], want_ended["unique_id"], "{name}");
        // Dated at the resync; the conversation counts until then.
        let dated = deskhook::sinks::omnidesk::format_datetime(resync_at, &config.time_zone());
        assert_eq!(ended["datetime"], dated.as_str(), "{name}");
        assert!(ended["call_duration"].as_i64().expect("answered") >= 30, "{name}: {ended}");
        // Exactly one start and one ended.
        let starts = got.iter().filter(|v| v["status"].as_str().is_some_and(|s| s.contains("start"))).count();
        assert_eq!(starts, 1, "{name}");
    }
}

#[test]
fn a_daemon_started_mid_call_adopts_it_and_ends_it_once() {
    let config = config("lab.toml");
    for name in ANSWERED {
        let events = parse_all(&trace_lines(name));
        let (channels, bridges) = snapshot(name);
        let cut = cut_point(&events, &channels);
        let mut engine = Engine::new(deskhook::daemon::engine_settings(&config, false).expect("settings"));
        let mut out = Vec::new();
        engine.resync(&channels, &bridges, events[cut].at, &mut out);
        assert_eq!(engine.open_calls(), 1, "{name}: the call is adopted");
        for event in &events[cut..] {
            engine.handle(event, &mut out);
        }
        let got = render(&config, out);
        let want = expected_values(name);
        let statuses: Vec<&str> = got.iter().filter_map(|v| v["status"].as_str()).collect();
        // The start (deduplicated by the outbox if it was sent before) and the end, once each.
        assert_eq!(statuses.first().copied(), want[0]["status"].as_str(), "{name}: {statuses:?}");
        assert_eq!(got[0]["datetime"], want[0]["datetime"], "{name}: dated when the call began");
        assert_eq!(got[0]["unique_id"], want[0]["unique_id"], "{name}");
        let ended = got.iter().find(|v| v["status"].as_str().is_some_and(|s| s.contains("ended"))).expect("ended");
        let want_ended =
            want.iter().find(|v| v["status"].as_str().is_some_and(|s| s.contains("ended"))).expect("ended");
        for field in ["status", "from_user", "to_user", "unique_id", "datetime"] {
            assert_eq!(ended[field], want_ended[field], "{name}: {field}");
        }
        // Talk before the transfer happened while deskhook was not running: it counts from
        // the conversation it found, never more than the truth.
        let answers = want
            .iter()
            .filter(|v| v["status"].as_str().is_some_and(|s| s.starts_with("answer") || s.ends_with("answered")))
            .count();
        let (got_seconds, want_seconds) = (ended["call_duration"].as_i64(), want_ended["call_duration"].as_i64());
        if answers == 1 {
            assert_eq!(got_seconds, want_seconds, "{name}");
        } else {
            assert!(got_seconds.is_some_and(|got| Some(got) <= want_seconds), "{name}: {got_seconds:?}");
        }
    }
}

/// After a reconnect every conversation still going on is announced again, so that an ARI
/// recorder, whose snoop channel died with the connection, starts a new part.
#[test]
fn a_resync_announces_ongoing_conversations_again() {
    let config = config("lab.toml");
    let name = "01-in-direct-answered";
    let events = parse_all(&trace_lines(name));
    let (channels, bridges) = snapshot(name);
    let cut = cut_point(&events, &channels);
    let mut engine = Engine::new(deskhook::daemon::engine_settings(&config, false).expect("settings"));
    let mut out = Vec::new();
    for event in &events[..cut] {
        engine.handle(event, &mut out);
    }
    let conversations = |out: &[Output]| {
        out.iter()
            .filter_map(|o| match o {
                Output::Effect(deskhook::calls::Effect::ConversationStarted { unique_id, client_channel_id }) => {
                    Some((unique_id.clone(), client_channel_id.clone()))
                }
                _ => None,
            })
            .collect::<Vec<_>>()
    };
    let first = ("1795237096.10".to_string(), "1795237096.10".to_string());
    assert_eq!(conversations(&out), std::slice::from_ref(&first));
    engine.resync(&channels, &bridges, events[cut].at, &mut out);
    assert_eq!(conversations(&out), [first.clone(), first.clone()]);
    for event in &events[cut..] {
        engine.handle(event, &mut out);
    }
    assert_eq!(conversations(&out).len(), 2, "nothing more once the call is over");
    engine.resync(&[], &[], events.last().expect("events").at + 1000, &mut out);
    assert_eq!(conversations(&out).len(), 2);
}
