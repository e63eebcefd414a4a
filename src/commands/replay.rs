//! `deskhook replay`: feeds trace files through the call engine and prints SPEC §5 lines, or
//! with `--sink NAME` the requests that sink would make (SPEC §7).

use std::io::Write;
use std::path::PathBuf;

use crate::ari::events::EventParser;
use crate::calls::{Engine, Output};
use crate::config::Config;
use crate::sinks::{omnidesk, Mapper};
use crate::trace::read_trace;

/// Replays `traces` in order through one engine; returns the process exit code.
pub fn replay(
    config: &Config,
    traces: &[PathBuf],
    sink: Option<&str>,
    stdout: &mut impl Write,
    stderr: &mut impl Write,
) -> i32 {
    let mut mapper = match sink {
        None => None,
        Some(name) => {
            let destinations = config.destinations();
            match destinations.iter().find(|sink| sink.name == name) {
                Some(sink) => {
                    let links = crate::recordings::RecordingLinks::from_config(config, false).ok().flatten();
                    Some((sink.name.clone(), Mapper::new(sink, &config.time_zone(), links.as_ref())))
                }
                None => {
                    let names: Vec<&str> = destinations.iter().map(|sink| sink.name.as_str()).collect();
                    let _ = writeln!(
                        stderr,
                        "deskhook: no sink named {name:?} in the config; its sinks are: {}",
                        names.join(", ")
                    );
                    return 2;
                }
            }
        }
    };
    let settings = match crate::daemon::engine_settings(config, false) {
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
                if let Some((name, mapper)) = &mut mapper {
                    if mapper.write_shown(name, &output, stdout).is_err() {
                        return 1;
                    }
                    continue;
                }
                let line = match output {
                    Output::Event(event) => match omnidesk::map(&event) {
                        Some(mapped) => mapped.replay_line(&zone),
                        None => continue,
                    },
                    Output::Recording(recording) => omnidesk::record_line(&recording),
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
