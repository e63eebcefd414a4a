//! The `json` sink (SPEC §7): lifecycle events and/or one call summary per call as JSON
//! bodies, each with an `event_id` receivers de-duplicate on, and recordings as
//! `multipart/form-data` with the summary as a part. Signing (`X-Deskhook-Signature`) is
//! [`signature`]; sending is `crate::deliver`'s.

use std::collections::HashMap;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::ari::events::EpochMillis;
use crate::calls::{CallDirection, CallEvent, CallSummary, Effect, Happened, Output};
use crate::config::JsonRecordings;

pub use crate::deliver::signature::{signature, SIGNATURE_HEADER};

/// What the sink sends for one engine output.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum JsonRequest {
    /// A JSON body (`event` names it: `call_started`, …, `call_summary`).
    Body { unique_id: String, event: &'static str, body: Value },
    /// A recording: part `summary` (the call summary's JSON), part `record` (the file at `path`).
    Upload { unique_id: String, summary: Value, path: String },
}

impl JsonRequest {
    pub(crate) fn unique_id(&self) -> &str {
        match self {
            JsonRequest::Body { unique_id, .. } | JsonRequest::Upload { unique_id, .. } => unique_id,
        }
    }

    /// What `replay --sink` prints as the request.
    pub(crate) fn shown(&self) -> Value {
        match self {
            JsonRequest::Body { body, .. } => body.clone(),
            JsonRequest::Upload { summary, path, .. } => json!({"multipart": {"summary": summary, "record": path}}),
        }
    }
}

/// Maps engine outputs to a `json` sink's requests. Keeps each call's summary from its end
/// until it closes, for the recording uploads that follow the end.
pub(crate) struct JsonMapper {
    zone: jiff::tz::TimeZone,
    summary: bool,
    lifecycle: bool,
    recordings: JsonRecordings,
    summaries: HashMap<String, Value>,
}

impl JsonMapper {
    pub(crate) fn new(zone: jiff::tz::TimeZone, summary: bool, lifecycle: bool, recordings: JsonRecordings) -> Self {
        Self { zone, summary, lifecycle, recordings, summaries: HashMap::new() }
    }

    pub(crate) fn map(&mut self, output: &Output) -> Vec<JsonRequest> {
        match output {
            Output::Event(event) => self.event(event),
            Output::Recording(recording) => {
                let path = recording.source.as_str();
                let mut requests = Vec::new();
                if self.lifecycle {
                    let file = base_name(path);
                    let at = self.summaries.get(&recording.unique_id).and_then(|s| s["ended_at"].as_str());
                    let body = json!({
                        "event_id": event_id(&recording.unique_id, "recording", 0, &file),
                        "event": "recording",
                        "unique_id": recording.unique_id,
                        "at": at,
                        "file": file,
                    });
                    requests.push(JsonRequest::Body {
                        unique_id: recording.unique_id.clone(),
                        event: "recording",
                        body,
                    });
                }
                if self.recordings == JsonRecordings::Upload {
                    let summary = self.summaries.get(&recording.unique_id).cloned().unwrap_or(Value::Null);
                    requests.push(JsonRequest::Upload {
                        unique_id: recording.unique_id.clone(),
                        summary,
                        path: path.to_string(),
                    });
                }
                requests
            }
            Output::Effect(Effect::CallClosed { unique_id, .. }) => {
                self.summaries.remove(unique_id);
                Vec::new()
            }
            Output::Effect(_) => Vec::new(),
        }
    }

    fn event(&mut self, event: &CallEvent) -> Vec<JsonRequest> {
        let mut requests = Vec::new();
        let parties = &event.parties;
        let incoming = parties.direction == CallDirection::Incoming;
        if self.lifecycle {
            let (name, fields, key) = match &event.what {
                Happened::Started if incoming => (
                    "call_started",
                    json!({"direction": "incoming", "client": parties.client, "did": parties.did}),
                    String::new(),
                ),
                Happened::Started => (
                    "call_started",
                    json!({
                        "direction": "outgoing",
                        "client": parties.client,
                        "dialed": parties.client,
                        "operator": parties.caller_extension,
                    }),
                    String::new(),
                ),
                Happened::Ringing { extensions, queue } => {
                    ("ringing", json!({"extensions": extensions, "queue": queue}), extensions.join(","))
                }
                Happened::Answered { operator } => ("answered", json!({"operator": operator}), operator.clone()),
                Happened::Transferred { from, to, kind } => {
                    ("transferred", json!({"from": from, "to": to, "kind": kind}), format!("{from}>{to}"))
                }
                Happened::Ended(summary) => (
                    "call_ended",
                    json!({
                        "direction": parties.direction,
                        "client": parties.client,
                        "outcome": summary.outcome,
                        "talk_seconds": summary.talk_seconds(),
                    }),
                    String::new(),
                ),
            };
            let mut body = json!({
                "event_id": event_id(&event.unique_id, name, event.at, &key),
                "event": name,
                "unique_id": event.unique_id,
                "at": rfc3339(event.at, &self.zone),
            });
            merge(&mut body, fields);
            requests.push(JsonRequest::Body { unique_id: event.unique_id.clone(), event: name, body });
        }
        if let Happened::Ended(summary) = &event.what {
            let body = self.summary_body(event, summary);
            if self.summary {
                requests.push(JsonRequest::Body {
                    unique_id: event.unique_id.clone(),
                    event: "call_summary",
                    body: body.clone(),
                });
            }
            self.summaries.insert(event.unique_id.clone(), body);
        }
        requests
    }

    /// SPEC §7's call summary.
    fn summary_body(&self, event: &CallEvent, summary: &CallSummary) -> Value {
        let parties = &event.parties;
        let incoming = parties.direction == CallDirection::Incoming;
        let at = |millis: EpochMillis| rfc3339(millis, &self.zone);
        let rang: Vec<Value> = summary
            .rang
            .iter()
            .map(|rang| json!({"extension": rang.extension, "queue": rang.queue, "outcome": rang.outcome}))
            .collect();
        let transfers: Vec<Value> = summary
            .transfers
            .iter()
            .map(|t| json!({"from": t.from, "to": t.to, "kind": t.kind, "at": at(t.at)}))
            .collect();
        let recordings: Vec<String> = summary.recordings.iter().map(|path| base_name(path)).collect();
        json!({
            "event_id": event_id(&event.unique_id, "call_summary", 0, ""),
            "event": "call_summary",
            "unique_id": event.unique_id,
            "at": at(event.at),
            "direction": parties.direction,
            "client": parties.client,
            "did": if incoming { Some(&parties.did) } else { None },
            "operator": summary.operator,
            "queue": summary.queue,
            "started_at": at(summary.started_at),
            "answered_at": summary.answered_at.map(at),
            "ended_at": at(summary.ended_at),
            "wait_seconds": summary.wait_seconds(),
            "talk_seconds": summary.talk_seconds(),
            "total_seconds": summary.total_seconds(),
            "outcome": summary.outcome,
            "lost": incoming && !summary.answered(),
            "hangup_cause": summary.hangup_cause,
            "hangup_cause_text": summary.hangup_cause_text,
            "hung_up_by": summary.hung_up_by,
            "rang": rang,
            "transfers": transfers,
            "recordings": recordings,
        })
    }
}

/// Stable across retries and restarts: the same event of the same call always gets the same id.
fn event_id(unique_id: &str, event: &str, at: EpochMillis, key: &str) -> String {
    let digest = Sha256::new()
        .chain_update(unique_id.as_bytes())
        .chain_update(b"\n")
        .chain_update(event.as_bytes())
        .chain_update(b"\n")
        .chain_update(at.to_string().as_bytes())
        .chain_update(b"\n")
        .chain_update(key.as_bytes())
        .finalize();
    hex(&digest[..16])
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// RFC 3339 with milliseconds, in the PBX's zone (`2026-11-21T07:58:53.310+03:00`).
pub(crate) fn rfc3339(at: EpochMillis, zone: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(at) {
        Ok(ts) => ts.to_zoned(zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%.3f%:z").to_string(),
        Err(_) => "1970-01-01T00:00:00.000+00:00".into(),
    }
}

fn base_name(path: &str) -> String {
    std::path::Path::new(path).file_name().map_or_else(|| path.to_string(), |name| name.to_string_lossy().into_owned())
}

fn merge(body: &mut Value, fields: Value) {
    if let (Value::Object(body), Value::Object(fields)) = (body, fields) {
        body.extend(fields);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{CallSummary, Parties, RecordingRef};
    use hmac::{Hmac, Mac};

    #[test]
    fn the_signature_is_hmac_sha256_of_time_dot_body() {
        // RFC 4231 test case 2 reshaped: key "Jefe", data "<t>.<body>".
        let signed = signature("Jefe", 0, b"what do ya want for nothing?");
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").expect("key");
        mac.update(b"0.what do ya want for nothing?");
        let expected = hex(&mac.finalize().into_bytes());
        assert_eq!(signed, format!("t=0,v1={expected}"));
        assert_ne!(signature("other", 0, b"x"), signature("Jefe", 0, b"x"));
    }

    #[test]
    fn times_carry_the_pbx_zone_offset() {
        let moscow = jiff::tz::TimeZone::get("Europe/Moscow").expect("tzdb");
        let at = "2026-11-21T04:58:53.310Z".parse::<jiff::Timestamp>().expect("ts").as_millisecond();
        assert_eq!(rfc3339(at, &moscow), "2026-11-21T07:58:53.310+03:00");
    }

    #[test]
    fn a_call_gives_its_summary_once_and_uploads_its_recording_with_it() {
        let zone = jiff::tz::TimeZone::UTC;
        let mut mapper = JsonMapper::new(zone, true, false, JsonRecordings::Upload);
        let summary = CallSummary::unanswered(1_000, 9_000).answered_by("101", 4);
        let ended = CallEvent {
            unique_id: "1.1".into(),
            at: 9_000,
            parties: Parties::incoming("79161234567", "74951234567"),
            what: Happened::Ended(Box::new(summary)),
        };
        let requests = mapper.map(&Output::Event(ended.clone()));
        let [JsonRequest::Body { event: "call_summary", body, .. }] = requests.as_slice() else {
            panic!("{requests:?}")
        };
        assert_eq!(body["talk_seconds"], 4);
        assert_eq!(body["lost"], false);
        assert_eq!(body["did"], "74951234567");
        // The same event derived again (a restart) has the same id.
        let again = JsonMapper::new(jiff::tz::TimeZone::UTC, true, false, JsonRecordings::Upload)
            .map(&Output::Event(ended))
            .remove(0);
        assert_eq!(again.shown()["event_id"], body["event_id"]);
        let recording =
            RecordingRef { unique_id: "1.1".into(), source: crate::calls::RecordingSource::File("/s/a.wav".into()) };
        let uploads = mapper.map(&Output::Recording(recording));
        assert!(
            matches!(&uploads[..], [JsonRequest::Upload { summary, path, .. }] if summary == body && path == "/s/a.wav")
        );
        assert!(mapper.map(&Output::Effect(Effect::CallClosed { unique_id: "1.1".into(), answered: true })).is_empty());
        assert!(mapper.summaries.is_empty());
    }
}
