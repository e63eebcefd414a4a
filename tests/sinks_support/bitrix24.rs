//! A strict fake of a Bitrix24 portal's telephony REST API, as `docs/sinks/bitrix24-api.md`
//! records it: the inbound webhook (`/rest/USER/TOKEN/METHOD.json`) and a local
//! application's OAuth (`/oauth/token/`, `/rest/METHOD.json?auth=TOKEN`), the portal's leaky
//! bucket (2 requests a second, bursts of 50, then `503 QUERY_LIMIT_EXCEEDED`), and the
//! methods `register`, `show`, `hide`, `finish`, `attachRecord` (+ its `uploadUrl`),
//! `user.get` and `scope`. Stricter than Bitrix24 where deskhook must be exact: an unknown
//! parameter, a date without an offset, a record before `finish` are refused.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::deliver_support::multipart_parts;
use crate::deliver_support::receiver::{Receiver, Reply, Seen};

pub const WEBHOOK_USER: u64 = 1;
pub const WEBHOOK_TOKEN: &str = "b24-webhook-secret";
pub const CLIENT_ID: &str = "local.deskhook.test";
pub const CLIENT_SECRET: &str = "b24-client-secret";
pub const FIRST_REFRESH: &str = "b24-refresh-0";

/// As `docs/sinks/` records them.
pub const REGISTER_KEYS: [&str; 14] = [
    "USER_ID",
    "USER_PHONE_INNER",
    "PHONE_NUMBER",
    "TYPE",
    "CALL_START_DATE",
    "CRM_CREATE",
    "CRM_SOURCE",
    "CRM_ENTITY_TYPE",
    "CRM_ENTITY_ID",
    "SHOW",
    "ADD_TO_CHAT",
    "CALL_LIST_ID",
    "LINE_NUMBER",
    "EXTERNAL_CALL_ID",
];
/// As `docs/sinks/` records them.
pub const FINISH_KEYS: [&str; 11] = [
    "CALL_ID",
    "USER_ID",
    "USER_PHONE_INNER",
    "DURATION",
    "COST",
    "COST_CURRENCY",
    "STATUS_CODE",
    "FAILED_REASON",
    "RECORD_URL",
    "VOTE",
    "ADD_TO_CHAT",
];
/// As `docs/sinks/` records them.
pub const STATUS_CODES: [&str; 13] =
    ["200", "304", "603", "603-S", "403", "404", "486", "484", "503", "480", "402", "423", "OTHER"];

/// One call as the portal keeps it.
#[derive(Debug, Clone, Default)]
pub struct FakeCall {
    pub call_id: String,
    pub external_call_id: String,
    pub user_id: u64,
    pub phone: String,
    pub call_type: u64,
    pub line: String,
    /// The methods called for it, in order (`register`, `show`, …, `finish`, `attachRecord`).
    pub methods: Vec<String>,
    /// Users whose card is open now.
    pub shown: Vec<u64>,
    pub finished: Option<Value>,
    /// Attached recordings: file name -> bytes.
    pub records: BTreeMap<String, Vec<u8>>,
}

#[derive(Default)]
struct Portal {
    /// Extension (`UF_PHONE_INNER`) -> user id.
    users: BTreeMap<String, u64>,
    calls: BTreeMap<String, FakeCall>,
    next_call: usize,
    /// EXTERNAL_CALL_ID -> how many distinct CALL_IDs it got (more than one: a duplicate).
    registrations: BTreeMap<String, usize>,
    uploads: BTreeMap<String, (String, String)>,
    /// Leaky bucket: requests "in the bucket" and when it was last drained.
    bucket: f64,
    drained: Option<Instant>,
    /// OAuth: the refresh token that works now, and access tokens with their end.
    refresh_token: String,
    refreshes: usize,
    access: BTreeMap<String, Instant>,
    token_life: Duration,
    /// register/finish only from an application (the newer documentation's rule).
    app_only: bool,
    down: bool,
    rate: f64,
    burst: f64,
    limited: usize,
    refusals: Vec<String>,
}

/// The fake portal.
#[derive(Clone)]
pub struct Bitrix24Fake {
    pub receiver: Receiver,
    portal: Arc<Mutex<Portal>>,
}

impl Bitrix24Fake {
    /// A portal whose users have the internal numbers `users` (extension, user id).
    pub async fn start(users: &[(&str, u64)]) -> Bitrix24Fake {
        let portal = Arc::new(Mutex::new(Portal {
            users: users.iter().map(|(extension, id)| (extension.to_string(), *id)).collect(),
            refresh_token: FIRST_REFRESH.into(),
            token_life: Duration::from_secs(3600),
            rate: 2.0,
            burst: 50.0,
            ..Portal::default()
        }));
        let receiver = Receiver::start_with(Arc::new(|_: &Seen| Reply::status(503))).await;
        let addr = receiver.addr;
        let script = {
            let portal = portal.clone();
            Arc::new(move |seen: &Seen| {
                let mut portal = portal.lock().expect("portal");
                let reply = answer(&mut portal, &format!("http://{addr}"), seen);
                if reply.status >= 400 && reply.status != 503 {
                    portal.refusals.push(format!("{} {} {}", seen.path, reply.status, reply.body));
                }
                reply
            })
        };
        receiver.set_script(script);
        Bitrix24Fake { receiver, portal }
    }

    pub fn webhook_url(&self) -> String {
        format!("http://{}/rest/{WEBHOOK_USER}/{WEBHOOK_TOKEN}/", self.receiver.addr)
    }

    pub fn portal_url(&self) -> String {
        format!("http://{}", self.receiver.addr)
    }

    pub fn oauth_url(&self) -> String {
        format!("http://{}/oauth/token/", self.receiver.addr)
    }

    pub fn set_down(&self, down: bool) {
        self.portal.lock().expect("portal").down = down;
    }

    pub fn set_app_only(&self, app_only: bool) {
        self.portal.lock().expect("portal").app_only = app_only;
    }

    pub fn set_token_life(&self, life: Duration) {
        self.portal.lock().expect("portal").token_life = life;
    }

    /// Calls by EXTERNAL_CALL_ID (each registered once, else [`Bitrix24Fake::duplicates`] says so).
    pub fn calls(&self) -> BTreeMap<String, FakeCall> {
        let portal = self.portal.lock().expect("portal");
        portal.calls.values().map(|call| (call.external_call_id.clone(), call.clone())).collect()
    }

    /// EXTERNAL_CALL_IDs that got more than one CALL_ID: calls the CRM shows twice.
    pub fn duplicates(&self) -> Vec<String> {
        let portal = self.portal.lock().expect("portal");
        portal.registrations.iter().filter(|(_, count)| **count > 1).map(|(id, _)| id.clone()).collect()
    }

    /// Requests refused for what they said (not for the rate limit or an outage).
    pub fn refusals(&self) -> Vec<String> {
        self.portal.lock().expect("portal").refusals.clone()
    }

    /// Requests answered 503 QUERY_LIMIT_EXCEEDED.
    pub fn limited(&self) -> usize {
        self.portal.lock().expect("portal").limited
    }

    pub fn refreshes(&self) -> usize {
        self.portal.lock().expect("portal").refreshes
    }
}

fn error(status: u16, code: &str, description: &str) -> Reply {
    Reply::status(status).with_body(&json!({"error": code, "error_description": description}).to_string())
}

fn core(description: &str) -> Reply {
    error(400, "ERROR_CORE", description)
}

fn result(value: Value) -> Reply {
    Reply::ok().with_body(&json!({"result": value, "time": {"start": 0.0, "finish": 0.0}}).to_string())
}

fn query(seen: &Seen) -> BTreeMap<String, String> {
    form_urlencoded::parse(seen.query.as_bytes()).into_owned().collect()
}

fn answer(portal: &mut Portal, base: &str, seen: &Seen) -> Reply {
    if portal.down {
        return Reply::status(503).with_body("<html>down for a test</html>");
    }
    // The leaky bucket: every request fills it by one, it drains at `rate` a second.
    let now = Instant::now();
    let drained = portal.drained.map_or(0.0, |at| now.duration_since(at).as_secs_f64() * portal.rate);
    portal.bucket = (portal.bucket - drained).max(0.0);
    portal.drained = Some(now);
    if portal.bucket + 1.0 > portal.burst {
        portal.limited += 1;
        return error(503, "QUERY_LIMIT_EXCEEDED", "Too many requests");
    }
    portal.bucket += 1.0;
    if seen.path == "/oauth/token/" {
        return token(portal, base, seen);
    }
    if let Some(upload) = seen.path.strip_prefix("/upload/") {
        return upload_file(portal, upload, seen);
    }
    let (method, from_app) = match seen.path.strip_prefix("/rest/") {
        Some(rest) => match rest.split('/').collect::<Vec<_>>().as_slice() {
            [user, token, method] => {
                if *user != WEBHOOK_USER.to_string() || *token != WEBHOOK_TOKEN {
                    return error(401, "NO_AUTH_FOUND", "Wrong authorization data");
                }
                (method.to_string(), false)
            }
            [method] => {
                let auth = query(seen).get("auth").cloned().unwrap_or_default();
                match portal.access.get(&auth) {
                    Some(until) if *until > now => (method.to_string(), true),
                    Some(_) => return error(401, "expired_token", "The access token provided has expired."),
                    None => return error(401, "NO_AUTH_FOUND", "Wrong authorization data"),
                }
            }
            _ => return error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!"),
        },
        None => return Reply::status(404).with_body("not a Bitrix24 address"),
    };
    let Some(method) = method.strip_suffix(".json") else {
        return error(400, "fake", "deskhook calls METHOD.json");
    };
    if !seen.content_type.starts_with("application/json") {
        return error(400, "fake", "deskhook sends JSON bodies");
    }
    let Ok(Value::Object(params)) = serde_json::from_slice::<Value>(&seen.body) else {
        return error(400, "fake", "the body is not a JSON object");
    };
    let method = method.to_ascii_lowercase();
    if portal.app_only
        && !from_app
        && ["telephony.externalcall.register", "telephony.externalcall.finish"].contains(&method.as_str())
    {
        return error(403, "WRONG_AUTH_TYPE", "Current authorization type is denied for this method");
    }
    match method.as_str() {
        "telephony.externalcall.register" => register(portal, &params),
        "telephony.externalcall.show" | "telephony.externalcall.hide" => card(portal, &method, &params),
        "telephony.externalcall.finish" => finish(portal, &params),
        "telephony.externalcall.attachrecord" => attach(portal, base, &params),
        "user.get" => users(portal, &params),
        "scope" => result(json!(["telephony", "user", "crm"])),
        _ => error(404, "ERROR_METHOD_NOT_FOUND", "Method not found!"),
    }
}

fn token(portal: &mut Portal, base: &str, seen: &Seen) -> Reply {
    let query = query(seen);
    let field = |key: &str| query.get(key).cloned().unwrap_or_default();
    if field("grant_type") != "refresh_token"
        || field("client_id") != CLIENT_ID
        || field("client_secret") != CLIENT_SECRET
    {
        return Reply::status(401).with_body(&json!({"error": "invalid_client"}).to_string());
    }
    if field("refresh_token") != portal.refresh_token {
        return Reply::status(400)
            .with_body(&json!({"error": "invalid_grant", "error_description": "Invalid refresh token"}).to_string());
    }
    portal.refreshes += 1;
    let access = format!("b24-access-{}", portal.refreshes);
    portal.refresh_token = format!("b24-refresh-{}", portal.refreshes);
    portal.access.insert(access.clone(), Instant::now() + portal.token_life);
    Reply::ok().with_body(
        &json!({
            "access_token": access,
            "expires_in": portal.token_life.as_secs().max(1),
            "refresh_token": portal.refresh_token,
            "client_endpoint": format!("{base}/rest/"),
            "scope": "telephony,user,crm",
        })
        .to_string(),
    )
}

fn unknown_key(params: &serde_json::Map<String, Value>, allowed: &[&str]) -> Option<Reply> {
    params
        .keys()
        .find(|key| !allowed.contains(&key.as_str()))
        .map(|key| error(400, "fake", &format!("{key} is not a parameter of this method")))
}

fn int(value: Option<&Value>) -> Option<u64> {
    match value {
        Some(Value::Number(number)) => number.as_u64(),
        Some(Value::String(text)) => text.parse().ok(),
        _ => None,
    }
}

fn flag_ok(params: &serde_json::Map<String, Value>, key: &str) -> bool {
    params.get(key).is_none_or(|value| matches!(int(Some(value)), Some(0 | 1)))
}

/// USER_ID, else USER_PHONE_INNER resolved among active users.
fn user_of(portal: &Portal, params: &serde_json::Map<String, Value>) -> Result<u64, Reply> {
    if let Some(id) = int(params.get("USER_ID")).filter(|id| *id > 0) {
        return if portal.users.values().any(|known| *known == id) || id == WEBHOOK_USER {
            Ok(id)
        } else {
            Err(core("User is not found or is not active"))
        };
    }
    match params.get("USER_PHONE_INNER").and_then(Value::as_str) {
        Some(inner) => portal.users.get(inner).copied().ok_or_else(|| core("User is not found or is not active")),
        None => Err(core("USER_ID or USER_PHONE_INNER should be set")),
    }
}

fn register(portal: &mut Portal, params: &serde_json::Map<String, Value>) -> Reply {
    if let Some(refused) = unknown_key(params, &REGISTER_KEYS) {
        return refused;
    }
    let user = match user_of(portal, params) {
        Ok(user) => user,
        Err(reply) => return reply,
    };
    let phone: String = params
        .get("PHONE_NUMBER")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    if phone.is_empty() {
        return core("Unsupported phone number format");
    }
    let call_type = int(params.get("TYPE")).unwrap_or(0);
    if !(1..=5).contains(&call_type) {
        return core("Unknown TYPE");
    }
    if let Some(date) = params.get("CALL_START_DATE") {
        let parsed = date.as_str().and_then(|date| date.parse::<jiff::Timestamp>().ok());
        if parsed.is_none() {
            return core("CALL_START_DATE should be in the ISO-8601 format");
        }
    }
    if !flag_ok(params, "CRM_CREATE") || !flag_ok(params, "SHOW") {
        return error(400, "fake", "CRM_CREATE and SHOW are 0 or 1");
    }
    let external = params.get("EXTERNAL_CALL_ID").and_then(Value::as_str).unwrap_or_default().to_string();
    let line = params.get("LINE_NUMBER").and_then(Value::as_str).unwrap_or_default().to_string();
    // Re-registration before finish returns the open call (same user, phone, type, line, id).
    if let Some(open) = portal.calls.values_mut().find(|call| {
        call.finished.is_none()
            && !external.is_empty()
            && call.external_call_id == external
            && call.user_id == user
            && call.phone == phone
            && call.call_type == call_type
            && call.line == line
    }) {
        open.methods.push("register".into());
        return result(json!({"CALL_ID": open.call_id, "CRM_ENTITY_TYPE": "", "CRM_ENTITY_ID": null}));
    }
    portal.next_call += 1;
    let call_id = format!("externalCall.{:032x}.{}", portal.next_call, 1_795_237_133 + portal.next_call);
    *portal.registrations.entry(external.clone()).or_default() += 1;
    portal.calls.insert(
        call_id.clone(),
        FakeCall {
            call_id: call_id.clone(),
            external_call_id: external,
            user_id: user,
            phone,
            call_type,
            line,
            methods: vec!["register".into()],
            ..FakeCall::default()
        },
    );
    result(
        json!({"CALL_ID": call_id, "CRM_CREATED_LEAD": null, "CRM_CREATED_ENTITIES": [], "CRM_ENTITY_TYPE": "", "CRM_ENTITY_ID": null}),
    )
}

fn card(portal: &mut Portal, method: &str, params: &serde_json::Map<String, Value>) -> Reply {
    if let Some(refused) = unknown_key(params, &["CALL_ID", "USER_ID"]) {
        return refused;
    }
    let ids: Vec<u64> = match params.get("USER_ID") {
        Some(Value::Array(ids)) => ids.iter().filter_map(|id| int(Some(id))).collect(),
        Some(one) => int(Some(one)).into_iter().collect(),
        None => Vec::new(),
    };
    if ids.is_empty() {
        return error(400, "fake", "USER_ID is missing or not a user id");
    }
    if let Some(unknown) = ids.iter().find(|id| !portal.users.values().any(|known| known == *id)) {
        return error(400, "fake", &format!("user {unknown} does not exist"));
    }
    let call_id = params.get("CALL_ID").and_then(Value::as_str).unwrap_or_default();
    let Some(call) = portal.calls.get_mut(call_id) else { return result(json!(false)) };
    if call.finished.is_some() {
        return result(json!(false));
    }
    let show = method.ends_with("show");
    call.methods.push(if show { "show" } else { "hide" }.into());
    for id in ids {
        if show && !call.shown.contains(&id) {
            call.shown.push(id);
        } else if !show {
            call.shown.retain(|shown| *shown != id);
        }
    }
    result(json!(true))
}

fn finish(portal: &mut Portal, params: &serde_json::Map<String, Value>) -> Reply {
    if let Some(refused) = unknown_key(params, &FINISH_KEYS) {
        return refused;
    }
    let user = match user_of(portal, params) {
        Ok(user) => user,
        Err(reply) => return reply,
    };
    if let Some(code) = params.get("STATUS_CODE") {
        if !code.as_str().is_some_and(|code| STATUS_CODES.contains(&code)) {
            return error(400, "fake", &format!("STATUS_CODE {code} is not one Bitrix24 lists"));
        }
    }
    if params.get("DURATION").is_some_and(|duration| duration.as_u64().is_none()) {
        return error(400, "fake", "DURATION is whole seconds");
    }
    if !flag_ok(params, "ADD_TO_CHAT") {
        return error(400, "fake", "ADD_TO_CHAT is 0 or 1");
    }
    let Some(call_id) = params.get("CALL_ID").and_then(Value::as_str) else {
        return error(400, "INVALID_ARGUMENT", "CALL_ID must be a string");
    };
    let Some(call) = portal.calls.get_mut(call_id).filter(|call| call.finished.is_none()) else {
        return core("Call is not found (call should be registered prior to finishing");
    };
    call.methods.push("finish".into());
    call.shown.retain(|shown| *shown != user);
    let record = json!({"CALL_ID": call_id, "EXTERNAL_CALL_ID": call.external_call_id, "PORTAL_USER_ID": user,
                        "CALL_DURATION": params.get("DURATION"), "CALL_FAILED_CODE": params.get("STATUS_CODE"),
                        "ADD_TO_CHAT": params.get("ADD_TO_CHAT")});
    call.finished = Some(json!({"params": Value::Object(params.clone()), "user": user}));
    result(record)
}

fn attach(portal: &mut Portal, base: &str, params: &serde_json::Map<String, Value>) -> Reply {
    if let Some(refused) = unknown_key(params, &["CALL_ID", "FILENAME", "FILE_CONTENT", "RECORD_URL"]) {
        return refused;
    }
    let call_id = params.get("CALL_ID").and_then(Value::as_str).unwrap_or_default().to_string();
    if portal.calls.get(&call_id).is_none_or(|call| call.finished.is_none()) {
        return core("Call is not found in the statistic table. Finish the call using telephony.externalCall.finish and try again");
    }
    let file_name = params.get("FILENAME").and_then(Value::as_str).unwrap_or_default().to_string();
    let extension = file_name.rsplit('.').next().unwrap_or_default().to_ascii_lowercase();
    if !["wav", "mp3"].contains(&extension.as_str()) || !file_name.contains('.') {
        return core("Wrong file extension: only wav and mp3 are allowed");
    }
    match params.get("FILE_CONTENT").and_then(Value::as_str) {
        Some(content) => {
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(content) else {
                return error(400, "fake", "FILE_CONTENT is not base64");
            };
            let call = portal.calls.get_mut(&call_id).expect("checked");
            call.methods.push("attachRecord".into());
            call.records.insert(file_name, bytes);
            result(json!({"FILE_ID": 100 + call.records.len()}))
        }
        None => {
            let key = format!("{}", portal.uploads.len() + 1);
            portal.uploads.insert(key.clone(), (call_id.clone(), file_name));
            portal.calls.get_mut(&call_id).expect("checked").methods.push("attachRecord".into());
            result(json!({"uploadUrl": format!("{base}/upload/{key}?token=one-time"), "fieldName": "file"}))
        }
    }
}

fn upload_file(portal: &mut Portal, key: &str, seen: &Seen) -> Reply {
    let Some((call_id, file_name)) = portal.uploads.get(key).cloned() else {
        return error(404, "fake", "no such upload");
    };
    if !seen.content_type.starts_with("multipart/form-data") {
        return error(400, "fake", "the upload is multipart/form-data");
    }
    let parts = multipart_parts(&seen.content_type, &seen.body);
    let Some(part) = parts.iter().find(|part| part.name == "file") else {
        return error(400, "fake", "no part named file");
    };
    if part.data.is_empty() {
        return error(400, "fake", "an empty file");
    }
    let call = portal.calls.get_mut(&call_id).expect("uploads are of known calls");
    call.records.insert(file_name, part.data.to_vec());
    result(json!({"FILE_ID": 200 + call.records.len()}))
}

fn users(portal: &Portal, params: &serde_json::Map<String, Value>) -> Reply {
    let start = int(params.get("start")).unwrap_or(0) as usize;
    let all: Vec<Value> = portal
        .users
        .iter()
        .map(|(inner, id)| json!({"ID": id.to_string(), "ACTIVE": true, "UF_PHONE_INNER": inner}))
        .collect();
    let page: Vec<Value> = all.iter().skip(start).take(50).cloned().collect();
    let mut answer = json!({"result": page, "total": all.len(), "time": {}});
    if start + 50 < all.len() {
        answer["next"] = json!(start + 50);
    }
    Reply::ok().with_body(&answer.to_string())
}
