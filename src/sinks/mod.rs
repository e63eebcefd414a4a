//! Destinations: each module maps the neutral call record (`crate::calls::record`) to the
//! requests one kind of destination takes, as pure functions (what `replay --sink` prints and
//! golden tests check). Storing, sending and retrying them is `crate::deliver`'s job.
//!
//! - [`omnidesk`]: the Omnidesk/Deskie "Asterisk" webhook (SPEC §3), also `replay`'s lines (§5);
//! - [`json`]: lifecycle events and the call summary as signed JSON (SPEC §7);
//! - [`zammad`]: Zammad's generic CTI API.

pub mod json;
pub mod omnidesk;
pub mod zammad;

use serde::Serialize;
use serde_json::Value;

use crate::calls::Output;
use crate::config::{Destination, SinkConfig};

/// One configured sink's mapping, whatever its kind.
pub enum Mapper {
    Omnidesk { zone: jiff::tz::TimeZone },
    Json(json::JsonMapper),
    Zammad { users: std::collections::BTreeMap<String, String> },
}

impl Mapper {
    /// The mapping of `sink`; `zone` is `pbx.timezone`.
    pub fn new(sink: &SinkConfig, zone: &jiff::tz::TimeZone) -> Mapper {
        match &sink.destination {
            Destination::Omnidesk => Mapper::Omnidesk { zone: zone.clone() },
            Destination::Json { summary, lifecycle, recordings, .. } => {
                Mapper::Json(json::JsonMapper::new(zone.clone(), *summary, *lifecycle, *recordings))
            }
            Destination::Zammad { users, .. } => Mapper::Zammad { users: users.clone() },
        }
    }

    /// The requests the sink makes for `output`, as `replay --sink` shows them (SPEC §7):
    /// `(unique_id, request)`.
    pub fn shown(&mut self, output: &Output) -> Vec<(String, Value)> {
        match self {
            Mapper::Omnidesk { zone } => {
                let line = match output {
                    Output::Event(event) => omnidesk::map(event).map(|mapped| mapped.replay_line(zone)),
                    Output::Recording(recording) => Some(omnidesk::record_line(recording)),
                    Output::Effect(_) => None,
                };
                line.and_then(|line| serde_json::from_str::<Value>(&line).ok())
                    .map(|value| (value["unique_id"].as_str().unwrap_or_default().to_string(), value))
                    .into_iter()
                    .collect()
            }
            Mapper::Json(mapper) => {
                mapper.map(output).iter().map(|request| (request.unique_id().to_string(), request.shown())).collect()
            }
            Mapper::Zammad { users } => match output {
                Output::Event(event) => {
                    zammad::map(event, users).map(|body| (event.unique_id.clone(), body)).into_iter().collect()
                }
                _ => Vec::new(),
            },
        }
    }
}

/// One line of `replay --sink NAME` (SPEC §7).
#[derive(Serialize)]
pub struct ReplayLine<'a> {
    pub sink: &'a str,
    pub unique_id: &'a str,
    pub request: &'a Value,
}
