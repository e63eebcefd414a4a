//! The daemon wakes the engine only at [`Engine::next_deadline`], not on a fixed tick: driving
//! the engine that way must give exactly what a 100 ms tick between events gives, on every
//! recorded trace, and the engine must have no deadline once its calls are settled. The engine
//! runs as the daemon's does (asking for queue members) and never gets an answer, so the
//! question's time limit is a deadline between events.

mod common;

use deskhook::calls::{Engine, Output};
use deskhook::config::Config;

const TICK_MS: i64 = 100;

fn settings(config: &Config) -> deskhook::calls::EngineSettings {
    deskhook::daemon::engine_settings(config, true).expect("valid settings")
}

/// Replays `events`, letting time pass between them by `advance` (which gets the engine, the
/// time of the previous event and of the next one).
fn replay(
    config: &Config,
    events: &[deskhook::ari::events::TimedEvent],
    advance: impl Fn(&mut Engine, i64, i64, &mut Vec<Output>),
) -> (Vec<serde_json::Value>, Engine) {
    let mut engine = Engine::new(settings(config));
    let mut out = Vec::new();
    let mut previous: Option<i64> = None;
    for event in events {
        if let Some(before) = previous {
            advance(&mut engine, before, event.at, &mut out);
        }
        engine.handle(event, &mut out);
        previous = Some(event.at);
    }
    (common::render(config, out), engine)
}

#[test]
fn waking_at_the_engines_deadlines_gives_what_a_fixed_tick_gives() {
    let mut woken = 0;
    for (name, config) in common::traces_with_configs() {
        let events = common::parse_all(&common::trace_lines(&name));
        let (ticked, _) = replay(&config, &events, |engine, from, to, out| {
            let mut at = from + TICK_MS;
            while at < to {
                engine.advance_to(at, out);
                at += TICK_MS;
            }
        });
        let woken_here = std::cell::Cell::new(0);
        let (on_deadline, engine) = replay(&config, &events, |engine, _, to, out| {
            while let Some(deadline) = engine.next_deadline().filter(|deadline| *deadline < to) {
                woken_here.set(woken_here.get() + 1);
                engine.advance_to(deadline, out);
                assert_ne!(engine.next_deadline(), Some(deadline), "{name}: a deadline that does not pass");
            }
        });
        assert_eq!(on_deadline, ticked, "{name}");
        woken += woken_here.get();
        // Settled: nothing waits for time any more.
        let last = events.last().map_or(0, |event| event.at);
        let mut engine = engine;
        engine.advance_to(last + 3_600_000, &mut Vec::new());
        assert_eq!(engine.next_deadline(), None, "{name}");
    }
    assert!(woken > 0, "some trace has a queue ring round to wait out");
}
