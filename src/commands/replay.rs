//! `deskhook replay`: feeds trace files through the call engine and prints SPEC §5 lines.

use std::io::Write;
use std::path::PathBuf;

use crate::ari::events::EventParser;
use crate::calls::{Engine, EngineSettings, Output};
use crate::config::Config;
use crate::trace::read_trace;

/// Replays `traces` in order through one engine; returns the process exit code.
pub fn replay(config: &Config, traces: &[PathBuf], stdout: &mut impl Write, stderr: &mut impl Write) -> i32 {
    let settings = match EngineSettings::from_config(config, false) {
        Ok(settings) => settings,
        Err(error) => {
            let _ = writeln!(stderr, "deskhook: [pbx] extension_pattern: {error}");
            return 2;
        }
    };
    let zone = config.time_zone();
    let mut engine = Engine::new(settings);
    let mut parser = EventParser::new();
    let mut exit = 0;
    let mut outputs = Vec::new();
    for path in traces {
        let trace = match read_trace(path, &mut parser) {
            Ok(trace) => trace,
            Err(error) => {
                let _ = writeln!(stderr, "deskhook: cannot read trace {}: {error}", path.display());
                exit = 1;
                continue;
            }
        };
        for bad in &trace.bad_lines {
            let _ = writeln!(stderr, "deskhook: skipped {bad}");
            exit = 1;
        }
        for event in &trace.events {
            engine.handle(event, &mut outputs);
            for output in outputs.drain(..) {
                let line = match output {
                    Output::Event(event) => event.replay_line(&zone),
                    Output::Recording(recording) => recording.replay_line(),
                    Output::Effect(_) => continue,
                };
                if writeln!(stdout, "{line}").is_err() {
                    return 1;
                }
            }
        }
    }
    exit
}
