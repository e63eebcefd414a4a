//! A strict fake of an amoCRM (Kommo) account's API v4 as `docs/sinks/amocrm-api.md` records
//! it: a long-lived token as Bearer, 7 requests a second (then 429), `POST /api/v4/calls`
//! matching the number by its last 10 digits against the contacts and refusing a call whose
//! number is on no card (400 "Entity not found"), `POST /api/v4/leads/unsorted/sip`, and
//! `GET /api/v4/account`. An unknown field, a `null`, a status outside 1..7 are refused.
#![allow(dead_code)]

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::deliver_support::receiver::{Receiver, Reply, Seen};

pub const TOKEN: &str = "amo-long-lived-token";

/// As `docs/sinks/` records them.
pub const CALL_FIELDS: [&str; 14] = [
    "direction",
    "uniq",
    "duration",
    "source",
    "link",
    "phone",
    "call_result",
    "call_status",
    "call_responsible",
    "responsible_user_id",
    "created_by",
    "updated_by",
    "created_at",
    "updated_at",
];
const METADATA_FIELDS: [&str; 9] = [
    "uniq",
    "duration",
    "service_code",
    "link",
    "phone",
    "called_at",
    "from",
    "is_call_event_needed",
    "call_responsible",
];

#[derive(Default)]
struct Account {
    /// Contact id -> its phone numbers.
    contacts: BTreeMap<u64, Vec<String>>,
    users: Vec<u64>,
    /// Calls added: (contact id, the call as sent).
    calls: Vec<(u64, Value)>,
    unsorted: Vec<Value>,
    recent: VecDeque<Instant>,
    down: bool,
    refusals: Vec<String>,
    no_card: usize,
    /// When each call was added (unix seconds), by position in `calls`.
    added_at: Vec<i64>,
    /// The next this many added calls are answered only after `slow_by` (the answer is lost
    /// to a client that gives up sooner; the call is added all the same).
    slow_answers: usize,
    slow_by: Duration,
    note_lookups: usize,
}

#[derive(Clone)]
pub struct AmocrmFake {
    pub receiver: Receiver,
    account: Arc<Mutex<Account>>,
}

fn last_ten(phone: &str) -> String {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    digits[digits.len().saturating_sub(10)..].to_string()
}

impl AmocrmFake {
    /// An account with `contacts` (id, phone) and amoCRM users `users`.
    pub async fn start(contacts: &[(u64, &str)], users: &[u64]) -> AmocrmFake {
        let mut account = Account { users: users.to_vec(), ..Account::default() };
        for (id, phone) in contacts {
            account.contacts.entry(*id).or_default().push(phone.to_string());
        }
        let account = Arc::new(Mutex::new(account));
        let script = {
            let account = account.clone();
            Arc::new(move |seen: &Seen| {
                let mut account = account.lock().expect("account");
                let reply = answer(&mut account, seen);
                if reply.status >= 400
                    && reply.status != 503
                    && reply.status != 429
                    && !reply.body.contains("Entity not found")
                {
                    account.refusals.push(format!("{} {} {}", seen.path, reply.status, reply.body));
                }
                reply
            })
        };
        AmocrmFake { receiver: Receiver::start_with(script).await, account }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.receiver.addr)
    }

    pub fn set_down(&self, down: bool) {
        self.account.lock().expect("account").down = down;
    }

    /// Calls added to cards, as sent (each with `"contact_id"` of the card it went to).
    pub fn calls(&self) -> Vec<Value> {
        let account = self.account.lock().expect("account");
        account
            .calls
            .iter()
            .map(|(contact, call)| {
                let mut call = call.clone();
                call["contact_id"] = json!(contact);
                call
            })
            .collect()
    }

    pub fn unsorted(&self) -> Vec<Value> {
        self.account.lock().expect("account").unsorted.clone()
    }

    /// Calls refused because no card has their number.
    pub fn no_card(&self) -> usize {
        self.account.lock().expect("account").no_card
    }

    pub fn refusals(&self) -> Vec<String> {
        self.account.lock().expect("account").refusals.clone()
    }

    /// The next `count` calls are added but answered only after `delay`.
    pub fn answer_slowly(&self, count: usize, delay: Duration) {
        let mut account = self.account.lock().expect("account");
        account.slow_answers = count;
        account.slow_by = delay;
    }

    /// `GET …/notes` requests answered.
    pub fn note_lookups(&self) -> usize {
        self.account.lock().expect("account").note_lookups
    }
}

fn problem(status: u16, title: &str, detail: &str) -> Reply {
    Reply::status(status).with_body(
        &json!({"title": title, "type": format!("https://httpstatus.es/{status}"), "status": status, "detail": detail})
            .to_string(),
    )
}

fn invalid(path: &str, detail: &str) -> Reply {
    Reply::status(400).with_body(
        &json!({"validation-errors": [{"request_id": "0", "errors": [{"code": "NotSupportedChoice", "path": path, "detail": detail}]}],
                "title": "Bad Request", "type": "https://httpstatus.es/400", "status": 400, "detail": "Request validation failed"})
        .to_string(),
    )
}

fn answer(account: &mut Account, seen: &Seen) -> Reply {
    if account.down {
        return Reply::status(503).with_body("<html>down for a test</html>");
    }
    let now = Instant::now();
    while account.recent.front().is_some_and(|at| now.duration_since(*at) >= Duration::from_secs(1)) {
        account.recent.pop_front();
    }
    if account.recent.len() >= 7 {
        return Reply::status(429).with_body("Too Many Requests");
    }
    account.recent.push_back(now);
    if seen.authorization.as_deref() != Some(&format!("Bearer {TOKEN}")) {
        return problem(401, "Unauthorized", "Authorization required");
    }
    if let Some(entity) = seen.path.strip_prefix("/api/v4/").and_then(|rest| rest.strip_suffix("/notes")) {
        return notes(account, entity, seen);
    }
    match seen.path.as_str() {
        "/api/v4/account" => Reply::ok().with_body(&json!({"id": 1, "name": "fake", "subdomain": "fake"}).to_string()),
        "/api/v4/calls" | "/api/v4/leads/unsorted/sip" => {
            if !seen.content_type.starts_with("application/json") {
                return problem(415, "Unsupported Media Type", "JSON only");
            }
            let Ok(Value::Array(items)) = serde_json::from_slice::<Value>(&seen.body) else {
                return problem(400, "Bad Request", "the body is a JSON array");
            };
            if items.is_empty() || items.len() > 50 {
                return problem(400, "Bad Request", "1 to 50 items");
            }
            if seen.path == "/api/v4/calls" {
                add_calls(account, items)
            } else {
                add_unsorted(account, items)
            }
        }
        _ => problem(404, "Not Found", "no such route"),
    }
}

fn check_object(object: &Map<String, Value>, allowed: &[&str], at: &str) -> Result<(), Reply> {
    for (key, value) in object {
        if !allowed.contains(&key.as_str()) {
            return Err(invalid(&format!("{at}{key}"), "This field was not expected."));
        }
        if value.is_null() {
            return Err(invalid(&format!("{at}{key}"), "This value should not be null."));
        }
    }
    Ok(())
}

fn add_calls(account: &mut Account, items: Vec<Value>) -> Reply {
    let mut added = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        let Value::Object(call) = &item else { return invalid(&format!("{index}"), "not an object") };
        if let Err(reply) = check_object(call, &CALL_FIELDS, "") {
            return reply;
        }
        if !matches!(call.get("direction").and_then(Value::as_str), Some("inbound" | "outbound")) {
            return invalid("direction", "inbound or outbound");
        }
        for key in ["duration"] {
            if call.get(key).is_none_or(|value| value.as_u64().is_none()) {
                return invalid(key, "an integer is required");
            }
        }
        for key in ["source", "phone"] {
            if call.get(key).and_then(Value::as_str).is_none_or(|text| text.is_empty()) {
                return invalid(key, "a string is required");
            }
        }
        if call
            .get("call_status")
            .is_some_and(|status| !status.as_u64().is_some_and(|status| (1..=7).contains(&status)))
        {
            return invalid("call_status", "1 to 7");
        }
        for key in ["responsible_user_id", "created_by"] {
            if let Some(user) = call.get(key) {
                if !user.as_u64().is_some_and(|user| account.users.contains(&user)) {
                    return invalid(key, "no such user");
                }
            }
        }
        let phone = last_ten(call["phone"].as_str().unwrap_or_default());
        let contact = account.contacts.iter().find(|(_, phones)| phones.iter().any(|known| last_ten(known) == phone));
        match contact {
            Some((id, _)) => added.push((*id, item.clone())),
            None => {
                account.no_card += 1;
                return Reply::status(400).with_body(
                    &json!({"_total_items": 0, "errors": [{"title": "Entity not found", "request_id": index.to_string()}]})
                        .to_string(),
                );
            }
        }
    }
    let embedded: Vec<Value> = added
        .iter()
        .enumerate()
        .map(|(index, (contact, _))| {
            json!({"id": account.calls.len() + index + 1, "entity_id": contact, "entity_type": "contact", "request_id": index.to_string()})
        })
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    account.added_at.extend(added.iter().map(|_| now));
    account.calls.extend(added);
    let reply =
        Reply::ok().with_body(&json!({"_total_items": embedded.len(), "_embedded": {"calls": embedded}}).to_string());
    if account.slow_answers > 0 {
        account.slow_answers -= 1;
        return reply.delayed(account.slow_by);
    }
    reply
}

/// `GET /api/v4/{entity}/notes`: the call notes (`call_in`/`call_out`) of the cards, filtered
/// by type and `updated_at`; 204 when there are none.
fn notes(account: &mut Account, entity: &str, seen: &Seen) -> Reply {
    if !["leads", "contacts", "companies", "customers"].contains(&entity) {
        return problem(404, "Not Found", "no such entity type");
    }
    account.note_lookups += 1;
    let query: Vec<(String, String)> = form_urlencoded::parse(seen.query.as_bytes()).into_owned().collect();
    let types: Vec<&str> = query
        .iter()
        .filter(|(key, _)| key == "filter[note_type][]" || key == "filter[note_type]")
        .map(|(_, v)| v.as_str())
        .collect();
    let since: i64 = query
        .iter()
        .find(|(key, _)| key == "filter[updated_at][from]")
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0);
    if let Some((key, _)) = query.iter().find(|(key, _)| {
        ![
            "filter[note_type][]",
            "filter[note_type]",
            "filter[updated_at][from]",
            "filter[updated_at][to]",
            "limit",
            "page",
        ]
        .contains(&key.as_str())
    }) {
        return invalid(key, "unknown filter");
    }
    if entity != "contacts" {
        return Reply::status(204);
    }
    let notes: Vec<Value> = account
        .calls
        .iter()
        .zip(&account.added_at)
        .filter(|(_, at)| **at >= since)
        .filter_map(|((contact, call), at)| {
            let note_type = if call["direction"] == "inbound" { "call_in" } else { "call_out" };
            (types.is_empty() || types.contains(&note_type)).then(|| {
                json!({"entity_id": contact, "note_type": note_type, "updated_at": at,
                       "params": {"uniq": call["uniq"], "duration": call["duration"], "source": call["source"], "phone": call["phone"]}})
            })
        })
        .collect();
    if notes.is_empty() {
        return Reply::status(204);
    }
    Reply::ok().with_body(&json!({"_page": 1, "_embedded": {"notes": notes}}).to_string())
}

fn add_unsorted(account: &mut Account, items: Vec<Value>) -> Reply {
    for item in &items {
        let Value::Object(lead) = item else { return invalid("0", "not an object") };
        if let Err(reply) = check_object(
            lead,
            &["source_uid", "source_name", "pipeline_id", "created_at", "metadata", "_embedded", "request_id"],
            "",
        ) {
            return reply;
        }
        for key in ["source_uid", "source_name"] {
            if lead.get(key).and_then(Value::as_str).is_none_or(|text| text.is_empty()) {
                return invalid(key, "a string is required");
            }
        }
        let Some(Value::Object(metadata)) = lead.get("metadata") else {
            return invalid("metadata", "required for sip");
        };
        if let Err(reply) = check_object(metadata, &METADATA_FIELDS, "metadata.") {
            return reply;
        }
        for key in ["uniq", "service_code", "phone", "from"] {
            if !metadata.get(key).is_some_and(Value::is_string) {
                return invalid(&format!("metadata.{key}"), "a string is required");
            }
        }
        for key in ["duration", "called_at"] {
            if metadata.get(key).is_none_or(|value| value.as_u64().is_none()) {
                return invalid(&format!("metadata.{key}"), "an integer is required");
            }
        }
        if !metadata.get("is_call_event_needed").is_none_or(Value::is_boolean) {
            return invalid("metadata.is_call_event_needed", "a boolean");
        }
        if account.unsorted.iter().any(|known| known["metadata"]["uniq"] == metadata["uniq"]) {
            return problem(400, "Bad Request", "Duplicate uniq");
        }
    }
    let count = items.len();
    account.unsorted.extend(items);
    Reply::ok().with_body(&json!({"_total_items": count, "_embedded": {"unsorted": []}}).to_string())
}
