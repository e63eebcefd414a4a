//! What the simulated Asterisk has live right now (channels, bridges, channel variables),
//! derived from the events replayed so far, and traces prepared for replay.
//!
//! A trace is parsed once into [`FakeTrace`]: each message with its timestamp and the state
//! changes it implies, so replaying at full speed costs a few map operations per message.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::{EpochMillis, MessageText};

/// How one message changes the live state.
#[derive(Debug, Clone)]
enum Change {
    ChannelCreated(String, Arc<Value>),
    ChannelSnapshot(String, Arc<Value>),
    ChannelDestroyed(String),
    BridgeCreated(String, Arc<Value>),
    BridgeSnapshot(String, Arc<Value>),
    BridgeDestroyed(String),
    Variable { channel: String, name: String, value: String },
}

/// One message of a prepared trace.
#[derive(Debug, Clone)]
pub struct FakeMessage {
    pub text: MessageText,
    pub at: Option<EpochMillis>,
    /// The message's ARI `type`.
    pub kind: String,
    changes: Vec<Change>,
}

impl FakeMessage {
    /// The channel this message destroys, for a `ChannelDestroyed`.
    pub fn destroyed_channel(&self) -> Option<&str> {
        self.changes.iter().find_map(|change| match change {
            Change::ChannelDestroyed(id) => Some(id.as_str()),
            _ => None,
        })
    }
}

/// A trace ready to be replayed by the fake ARI.
#[derive(Debug, Clone, Default)]
pub struct FakeTrace {
    pub messages: Vec<FakeMessage>,
}

impl FakeTrace {
    /// Parses a `.jsonl` trace (SPEC §6); blank lines are skipped, a malformed line is an error.
    pub fn parse(text: &str) -> Result<FakeTrace, String> {
        let mut messages = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let value: Value = serde_json::from_str(line).map_err(|err| format!("line {}: {err}", index + 1))?;
            let at = value.get("timestamp").and_then(Value::as_str).and_then(timestamp_ms);
            let kind = value.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
            let changes = changes_of(&value);
            messages.push(FakeMessage { text: MessageText::from(line.to_string()), at, kind, changes });
        }
        Ok(FakeTrace { messages })
    }

    /// Reads and parses a trace file.
    pub fn read(path: &std::path::Path) -> Result<FakeTrace, String> {
        let text = std::fs::read_to_string(path).map_err(|err| format!("{}: {err}", path.display()))?;
        Self::parse(&text).map_err(|err| format!("{}: {err}", path.display()))
    }

    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Index of the first message whose text contains every needle, searching from `from`.
    pub fn position(&self, from: usize, needles: &[&str]) -> Option<usize> {
        (from..self.messages.len())
            .find(|&index| needles.iter().all(|needle| self.messages[index].text.contains(needle)))
    }
}

fn is_channel(value: &Value) -> bool {
    value.get("id").is_some() && value.get("name").is_some() && value.get("state").is_some()
}

fn is_bridge(value: &Value) -> bool {
    value.get("id").is_some() && value.get("bridge_type").is_some()
}

fn id_of(value: &Value) -> String {
    value.get("id").and_then(Value::as_str).unwrap_or_default().to_string()
}

fn changes_of(message: &Value) -> Vec<Change> {
    let kind = message.get("type").and_then(Value::as_str).unwrap_or_default();
    let Some(fields) = message.as_object() else {
        return Vec::new();
    };
    let mut changes = Vec::new();
    for (key, field) in fields {
        if is_channel(field) {
            let id = id_of(field);
            let snapshot = Arc::new(field.clone());
            changes.push(match (kind, key.as_str()) {
                ("ChannelCreated", "channel") => Change::ChannelCreated(id, snapshot),
                _ => Change::ChannelSnapshot(id, snapshot),
            });
        } else if is_bridge(field) {
            let id = id_of(field);
            let snapshot = Arc::new(field.clone());
            changes.push(match (kind, key.as_str()) {
                ("BridgeCreated", "bridge") => Change::BridgeCreated(id, snapshot),
                _ => Change::BridgeSnapshot(id, snapshot),
            });
        }
    }
    // Removals come last so that a destroyed object's final snapshot does not resurrect it.
    match kind {
        "ChannelDestroyed" => {
            if let Some(channel) = message.get("channel") {
                changes.push(Change::ChannelDestroyed(id_of(channel)));
            }
        }
        "BridgeDestroyed" => {
            if let Some(bridge) = message.get("bridge") {
                changes.push(Change::BridgeDestroyed(id_of(bridge)));
            }
        }
        "ChannelVarset" => {
            if let (Some(channel), Some(name)) =
                (message.get("channel"), message.get("variable").and_then(Value::as_str))
            {
                let value = message.get("value").and_then(Value::as_str).unwrap_or_default();
                changes.push(Change::Variable { channel: id_of(channel), name: name.into(), value: value.into() });
            }
        }
        _ => {}
    }
    changes
}

struct Live {
    order: u64,
    object: Arc<Value>,
}

/// The live objects of the simulated Asterisk.
#[derive(Default)]
pub struct PbxState {
    channels: HashMap<String, Live>,
    bridges: HashMap<String, Live>,
    variables: HashMap<String, HashMap<String, String>>,
    next_order: u64,
}

impl PbxState {
    /// Applies what one replayed message changes.
    pub fn apply(&mut self, message: &FakeMessage) {
        for change in &message.changes {
            match change {
                Change::ChannelCreated(id, object) => {
                    self.next_order += 1;
                    self.channels.insert(id.clone(), Live { order: self.next_order, object: object.clone() });
                }
                Change::ChannelSnapshot(id, object) => {
                    if let Some(live) = self.channels.get_mut(id) {
                        live.object = object.clone();
                    }
                }
                Change::ChannelDestroyed(id) => {
                    self.channels.remove(id);
                    self.variables.remove(id);
                }
                Change::BridgeCreated(id, object) => {
                    self.next_order += 1;
                    self.bridges.insert(id.clone(), Live { order: self.next_order, object: object.clone() });
                }
                Change::BridgeSnapshot(id, object) => {
                    if let Some(live) = self.bridges.get_mut(id) {
                        live.object = object.clone();
                    }
                }
                Change::BridgeDestroyed(id) => {
                    self.bridges.remove(id);
                }
                Change::Variable { channel, name, value } => {
                    if self.channels.contains_key(channel) {
                        self.variables.entry(channel.clone()).or_default().insert(name.clone(), value.clone());
                    }
                }
            }
        }
    }

    /// Adds a channel that no trace created (a snoop channel the fake made on request).
    pub fn add_channel(&mut self, id: &str, object: Value) {
        self.next_order += 1;
        self.channels.insert(id.to_string(), Live { order: self.next_order, object: Arc::new(object) });
    }

    /// Removes a channel without a trace event (a snoop channel that ended).
    pub fn remove_channel(&mut self, id: &str) {
        self.channels.remove(id);
        self.variables.remove(id);
    }

    /// Forgets everything (an Asterisk restart).
    pub fn clear(&mut self) {
        *self = PbxState::default();
    }

    /// `GET /channels`: live channels, oldest first.
    pub fn channels(&self) -> Vec<Value> {
        listing(&self.channels)
    }

    /// `GET /bridges`: live bridges, oldest first.
    pub fn bridges(&self) -> Vec<Value> {
        listing(&self.bridges)
    }

    pub fn channel(&self, id: &str) -> Option<Value> {
        self.channels.get(id).map(|live| (*live.object).clone())
    }

    pub fn variable(&self, channel: &str, name: &str) -> Option<String> {
        self.variables.get(channel).and_then(|vars| vars.get(name)).cloned()
    }

    /// `GET /endpoints`: the configured endpoints with the ids of their live channels.
    pub fn endpoints(&self, configured: &Value) -> Value {
        let Some(list) = configured.as_array() else {
            return configured.clone();
        };
        let mut live: Vec<(&u64, &str, &str)> = self
            .channels
            .iter()
            .filter_map(|(id, live)| {
                let name = live.object.get("name").and_then(Value::as_str)?;
                Some((&live.order, id.as_str(), name))
            })
            .collect();
        live.sort();
        let endpoints = list
            .iter()
            .map(|endpoint| {
                let mut endpoint = endpoint.clone();
                let technology = endpoint.get("technology").and_then(Value::as_str).unwrap_or_default().to_string();
                let resource = endpoint.get("resource").and_then(Value::as_str).unwrap_or_default().to_string();
                let ids: Vec<Value> = live
                    .iter()
                    .filter(|(_, _, name)| {
                        endpoint_of(name)
                            .is_some_and(|(tech, res)| tech.eq_ignore_ascii_case(&technology) && res == resource)
                    })
                    .map(|(_, id, _)| Value::String((*id).to_string()))
                    .collect();
                if let Some(object) = endpoint.as_object_mut() {
                    object.insert("channel_ids".into(), Value::Array(ids));
                }
                endpoint
            })
            .collect();
        Value::Array(endpoints)
    }
}

fn listing(objects: &HashMap<String, Live>) -> Vec<Value> {
    let mut live: Vec<&Live> = objects.values().collect();
    live.sort_by_key(|live| live.order);
    live.into_iter().map(|live| (*live.object).clone()).collect()
}

/// An ARI timestamp (`2026-11-21T04:58:16.310+0000`) as epoch milliseconds.
fn timestamp_ms(text: &str) -> Option<EpochMillis> {
    jiff::fmt::strtime::parse("%Y-%m-%dT%H:%M:%S%.f%z", text)
        .and_then(|parsed| parsed.to_timestamp())
        .or_else(|_| text.parse::<jiff::Timestamp>())
        .ok()
        .map(|at| at.as_millisecond())
}

/// The endpoint (technology, resource) a channel name belongs to: `PJSIP/101-0000001a` is
/// PJSIP/101; a Local channel keeps its whole name.
fn endpoint_of(channel_name: &str) -> Option<(&str, &str)> {
    let (technology, rest) = channel_name.split_once('/')?;
    if technology.eq_ignore_ascii_case("Local") {
        return Some((technology, rest));
    }
    let resource = rest
        .rsplit_once('-')
        .filter(|(base, suffix)| {
            !base.is_empty() && !suffix.is_empty() && suffix.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map_or(rest, |(base, _)| base);
    Some((technology, resource))
}

#[cfg(test)]
mod tests {
    use super::*;

    const CREATED: &str = r#"{"type":"ChannelCreated","timestamp":"2026-11-21T04:58:16.310+0000","channel":{"id":"1.1","name":"PJSIP/101-00000001","state":"Ring","caller":{"name":"","number":"101"}}}"#;
    const VARSET: &str = r#"{"type":"ChannelVarset","timestamp":"2026-11-21T04:58:16.311+0000","variable":"X","value":"y","channel":{"id":"1.1","name":"PJSIP/101-00000001","state":"Up","caller":{"name":"","number":"101"}}}"#;
    const DESTROYED: &str = r#"{"type":"ChannelDestroyed","timestamp":"2026-11-21T04:58:17.000+0000","cause":16,"channel":{"id":"1.1","name":"PJSIP/101-00000001","state":"Up","caller":{"name":"","number":"101"}}}"#;

    #[test]
    fn channels_live_from_created_to_destroyed_with_their_latest_snapshot() {
        let trace = FakeTrace::parse(&format!("{CREATED}\n\n{VARSET}\n{DESTROYED}\n")).expect("valid");
        assert_eq!(trace.len(), 3);
        let mut state = PbxState::default();
        state.apply(&trace.messages[0]);
        state.apply(&trace.messages[1]);
        assert_eq!(state.channels()[0]["state"], "Up");
        assert_eq!(state.variable("1.1", "X").as_deref(), Some("y"));
        let endpoints = state.endpoints(&serde_json::json!([{"technology":"PJSIP","resource":"101","state":"online"}]));
        assert_eq!(endpoints[0]["channel_ids"], serde_json::json!(["1.1"]));
        state.apply(&trace.messages[2]);
        assert!(state.channels().is_empty());
        assert_eq!(state.variable("1.1", "X"), None);
        assert_eq!(trace.messages[2].kind, "ChannelDestroyed");
    }

    #[test]
    fn malformed_traces_are_reported_with_their_line() {
        let error = FakeTrace::parse(&format!("{CREATED}\n{{not json\n")).expect_err("broken line");
        assert!(error.starts_with("line 2:"), "{error}");
    }
}
