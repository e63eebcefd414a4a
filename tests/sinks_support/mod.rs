//! Strict fakes of the sinks' destinations, as scripts of the loopback receiver: the CRMs
//! ([`bitrix24`], [`amocrm`]), Zammad's
//! generic CTI endpoint answering as Zammad's own source does (`docs/sinks/zammad-api.md`), and
//! a JSON receiver that verifies `X-Deskhook-Signature` and de-duplicates on `event_id`. Both
//! refuse what their real counterparts would, and a field name or value deskhook should never
//! send.
#![allow(dead_code)]

pub mod amocrm;
pub mod bitrix24;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use crate::deliver_support::multipart_parts;
use crate::deliver_support::receiver::{Receiver, Reply, Seen};

pub const ZAMMAD_CAUSES: [&str; 7] =
    ["normalClearing", "busy", "cancel", "noAnswer", "congestion", "notFound", "forwarded"];
const ZAMMAD_FIELDS: [&str; 9] =
    ["event", "from", "to", "direction", "callId", "user", "queue", "cause", "answeringNumber"];

/// Zammad's generic CTI endpoint at `/api/v1/cti/TOKEN`.
#[derive(Clone)]
pub struct ZammadFake {
    pub receiver: Receiver,
    pub token: String,
    /// callId → the events Zammad recorded for it, in order.
    calls: Arc<Mutex<BTreeMap<String, Vec<Value>>>>,
    /// Requests refused as Zammad (or the fake's strictness) would, with why.
    refusals: Arc<Mutex<Vec<String>>>,
}

impl ZammadFake {
    pub async fn start(token: &str) -> ZammadFake {
        let calls: Arc<Mutex<BTreeMap<String, Vec<Value>>>> = Arc::default();
        let refusals: Arc<Mutex<Vec<String>>> = Arc::default();
        let script = {
            let (token, calls, refusals) = (token.to_string(), calls.clone(), refusals.clone());
            Arc::new(move |seen: &Seen| {
                let reply = zammad_reply(&token, &mut calls.lock().expect("calls"), seen);
                if reply.status >= 400 {
                    refusals.lock().expect("refusals").push(format!("{} {}", reply.status, reply.body));
                }
                reply
            })
        };
        ZammadFake { receiver: Receiver::start_with(script).await, token: token.to_string(), calls, refusals }
    }

    pub fn url(&self) -> String {
        format!("http://{}/api/v1/cti/{}", self.receiver.addr, self.token)
    }

    pub fn calls(&self) -> BTreeMap<String, Vec<Value>> {
        self.calls.lock().expect("calls").clone()
    }

    /// The events of each call, by name.
    pub fn events(&self) -> BTreeMap<String, Vec<String>> {
        self.calls()
            .into_iter()
            .map(|(id, events)| (id, events.iter().map(|e| e["event"].as_str().unwrap_or("").to_string()).collect()))
            .collect()
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().expect("refusals").clone()
    }
}

fn zammad_error(status: u16, message: &str) -> Reply {
    Reply::status(status).with_body(&serde_json::json!({ "error": message }).to_string())
}

/// What Zammad answers (`app/controllers/integration/cti_controller.rb`, `app/models/cti/log.rb`).
fn zammad_reply(token: &str, calls: &mut BTreeMap<String, Vec<Value>>, seen: &Seen) -> Reply {
    let Some(given) = seen.path.strip_prefix("/api/v1/cti/") else {
        return Reply::status(404).with_body("No route matches");
    };
    if given != token {
        return zammad_error(401, "Invalid token, please contact your admin!");
    }
    if !seen.content_type.starts_with("application/json") {
        return zammad_error(422, "the fake takes JSON only (deskhook sends JSON)");
    }
    let Ok(Value::Object(body)) = serde_json::from_slice::<Value>(&seen.body) else {
        return zammad_error(400, "unparsable JSON");
    };
    if let Some(unknown) = body.keys().find(|key| !ZAMMAD_FIELDS.contains(&key.as_str())) {
        return zammad_error(422, &format!("unknown field {unknown:?}"));
    }
    if let Some((key, _)) = body.iter().find(|(_, value)| !value.is_string()) {
        return zammad_error(422, &format!("{key} is not a string"));
    }
    let field = |key: &str| body.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let event = field("event");
    if !["newCall", "answer", "hangup"].contains(&event.as_str()) {
        return zammad_error(422, "Error ID fake: Please contact your administrator.");
    }
    if !["in", "out"].contains(&field("direction").as_str()) {
        return zammad_error(422, "Invalid 'direction'!");
    }
    let call_id = field("callId");
    if call_id.is_empty() {
        return zammad_error(422, "Error ID fake: callId can't be blank");
    }
    match event.as_str() {
        "newCall" => {
            if calls.contains_key(&call_id) {
                return zammad_error(500, "This object already exists.");
            }
            if field("from").is_empty() || field("to").is_empty() {
                return zammad_error(422, "Error ID fake: from and to can't be blank");
            }
            calls.insert(call_id, vec![Value::Object(body)]);
        }
        _ => {
            let Some(events) = calls.get_mut(&call_id) else {
                return zammad_error(500, "Couldn't find Cti::Log");
            };
            if event == "hangup" && !ZAMMAD_CAUSES.contains(&field("cause").as_str()) {
                return zammad_error(422, &format!("unknown cause {:?}", field("cause")));
            }
            events.push(Value::Object(body));
        }
    }
    Reply::ok().with_body("{}")
}

/// A receiver of the `json` sink: every request signed with `secret`, de-duplicated on `event_id`.
#[derive(Clone)]
pub struct JsonFake {
    pub receiver: Receiver,
    secret: String,
    /// Bodies accepted once each (by `event_id`), in arrival order; uploads as their summary
    /// with `"record"` set to the uploaded file's name.
    accepted: Arc<Mutex<Vec<Value>>>,
    refusals: Arc<Mutex<Vec<String>>>,
    /// Requests that repeated an `event_id` (acknowledged, not kept again).
    pub repeats: Arc<Mutex<usize>>,
    /// While set, every request is answered 503 (the destination is down).
    down: Arc<std::sync::atomic::AtomicBool>,
}

impl JsonFake {
    pub async fn start(secret: &str) -> JsonFake {
        let accepted: Arc<Mutex<Vec<Value>>> = Arc::default();
        let refusals: Arc<Mutex<Vec<String>>> = Arc::default();
        let repeats: Arc<Mutex<usize>> = Arc::default();
        let ids: Arc<Mutex<BTreeSet<String>>> = Arc::default();
        let down: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let script = {
            let (secret, accepted, refusals, repeats, down) =
                (secret.to_string(), accepted.clone(), refusals.clone(), repeats.clone(), down.clone());
            Arc::new(move |seen: &Seen| match json_receive(&secret, seen) {
                _ if down.load(std::sync::atomic::Ordering::SeqCst) => Reply::status(503).with_body("down for a test"),
                Ok(value) => {
                    let id = value["event_id"].as_str().unwrap_or_default().to_string();
                    let key = format!("{id}/{}", value["record"].as_str().unwrap_or(""));
                    if ids.lock().expect("ids").insert(key) {
                        accepted.lock().expect("accepted").push(value);
                    } else {
                        *repeats.lock().expect("repeats") += 1;
                    }
                    Reply::ok()
                }
                Err(reply) => {
                    refusals.lock().expect("refusals").push(format!("{} {}", reply.status, reply.body));
                    reply
                }
            })
        };
        JsonFake {
            receiver: Receiver::start_with(script).await,
            secret: secret.to_string(),
            accepted,
            refusals,
            repeats,
            down,
        }
    }

    /// Takes the destination down (503 to everything) or brings it back.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn url(&self) -> String {
        format!("http://{}/hooks/calls", self.receiver.addr)
    }

    pub fn accepted(&self) -> Vec<Value> {
        self.accepted.lock().expect("accepted").clone()
    }

    pub fn refusals(&self) -> Vec<String> {
        self.refusals.lock().expect("refusals").clone()
    }
}

/// Checks one request as a careful receiver would; the body (or an upload's summary) on success.
fn json_receive(secret: &str, seen: &Seen) -> Result<Value, Reply> {
    let refuse = |status: u16, why: &str| Reply::status(status).with_body(why);
    let (signed, mut value) = if seen.content_type.starts_with("multipart/form-data") {
        let parts = multipart_parts(&seen.content_type, &seen.body);
        let summary = parts.iter().find(|p| p.name == "summary").ok_or_else(|| refuse(400, "no summary part"))?;
        let record = parts.iter().find(|p| p.name == "record").ok_or_else(|| refuse(400, "no record part"))?;
        let file = record.filename.clone().ok_or_else(|| refuse(400, "the record part has no file name"))?;
        if record.data.is_empty() {
            return Err(refuse(400, "empty recording"));
        }
        let mut value: Value = serde_json::from_slice(&summary.data).map_err(|_| refuse(400, "summary not JSON"))?;
        if value["event"] != "call_summary" {
            return Err(refuse(400, "the summary part is not a call summary"));
        }
        value["record"] = Value::String(file);
        (summary.data.clone(), value)
    } else if seen.content_type.starts_with("application/json") {
        let value: Value = serde_json::from_slice(&seen.body).map_err(|_| refuse(400, "not JSON"))?;
        (seen.body.to_vec(), value)
    } else {
        return Err(refuse(415, "expected JSON or multipart"));
    };
    let header = seen.signature.as_deref().ok_or_else(|| refuse(401, "no X-Deskhook-Signature"))?;
    let (t, v1) = header
        .split_once(',')
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1.strip_prefix("v1=")?)))
        .ok_or_else(|| refuse(401, "malformed signature"))?;
    let sent: i64 = t.parse().map_err(|_| refuse(401, "bad timestamp"))?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    if (now - sent).abs() > 300 {
        return Err(refuse(401, "signature too old"));
    }
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(t.as_bytes());
    mac.update(b".");
    mac.update(&signed);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    if expected != v1 {
        return Err(refuse(401, "bad signature"));
    }
    for key in ["event_id", "event", "unique_id"] {
        if !value[key].is_string() {
            return Err(refuse(400, &format!("{key} missing")));
        }
    }
    if value["event"] != "recording" && !value["at"].is_string() {
        return Err(refuse(400, "at missing"));
    }
    if value.get("record").is_none() && seen.content_type.starts_with("multipart/") {
        value["record"] = Value::Null;
    }
    Ok(value)
}
