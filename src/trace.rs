//! Reading ARI trace files (SPEC §6): one websocket message per line.
//!
//! A malformed line is reported with its file and line number and skipped; the rest of the
//! trace is still read, so nothing after a damaged line is lost.

use std::io::BufRead;
use std::path::Path;

use crate::ari::events::{EventParser, ParseError, TimedEvent};

/// A line of a trace that could not be read as an ARI event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {error}")]
pub struct TraceLineError {
    pub file: String,
    pub line: usize,
    pub error: ParseError,
}

/// The events of a trace, with the lines that had to be skipped.
#[derive(Debug, Default)]
pub struct Trace {
    pub events: Vec<TimedEvent>,
    pub bad_lines: Vec<TraceLineError>,
}

/// Reads a whole trace file.
pub(crate) fn read_trace(path: &Path, parser: &mut EventParser) -> std::io::Result<Trace> {
    let file = std::fs::File::open(path)?;
    read_trace_from(std::io::BufReader::new(file), &path.display().to_string(), parser)
}

/// Reads a trace from any reader; `name` labels errors.
pub fn read_trace_from(reader: impl BufRead, name: &str, parser: &mut EventParser) -> std::io::Result<Trace> {
    let mut trace = Trace::default();
    for (index, line) in reader.split(b'\n').enumerate() {
        let bytes = line?;
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        match parser.parse(text) {
            Ok(event) => trace.events.push(event),
            Err(error) => trace.bad_lines.push(TraceLineError { file: name.to_string(), line: index + 1, error }),
        }
    }
    Ok(trace)
}
