//! The `bitrix24` sink's mapping: the call record as Bitrix24's telephony REST methods
//! (`docs/sinks/bitrix24-api.md` records their fields from Bitrix24's documentation).
//!
//! A call is `telephony.externalcall.register`ed once (outgoing: when it starts; incoming: when
//! the first extension rings, so that the call is the ringing operator's; a call that never
//! rang, when it ends), its card is shown to each ringing extension's user and hidden when
//! someone else answers or the ringing moves on, it is `finish`ed when it ends, and the
//! call's first recording is attached after that (Bitrix24 keeps one per call; MixMonitor's
//! file on the client's channel, the first, covers the whole call). Requests after `register`
//! carry [`CALL_ID`], the placeholder the sender fills with the `CALL_ID` Bitrix24 returned.
//!
//! Users: an extension in the sink's `users` map is sent as its `USER_ID`; others as
//! `USER_PHONE_INNER`, which Bitrix24 resolves itself for `register` and `finish`, and the
//! sender resolves through `user.get` for `show` and `hide` (which take user ids only).

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use crate::ari::events::EpochMillis;
use crate::calls::{CallDirection, CallEvent, CallSummary, Effect, Happened, HungUpBy, Outcome, Output};
use crate::config::Bitrix24Sink;

/// Stands for the `CALL_ID` `register` returned, until the sender fills it in.
pub(crate) const CALL_ID: &str = "<CALL_ID>";

pub(crate) const REGISTER: &str = "telephony.externalcall.register";
pub(crate) const SHOW: &str = "telephony.externalcall.show";
pub(crate) const HIDE: &str = "telephony.externalcall.hide";
pub(crate) const FINISH: &str = "telephony.externalcall.finish";
pub(crate) const ATTACH_RECORD: &str = "telephony.externalCall.attachRecord";

/// One request to the portal: a REST method and its parameters (what `replay --sink` prints).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Bitrix24Request {
    pub unique_id: String,
    pub method: &'static str,
    pub params: Value,
    /// For `attachRecord`: the recording file, uploaded with it.
    pub file: Option<String>,
}

impl Bitrix24Request {
    /// `{"method", "params"}` as SPEC §7 shows it (with `"file"` for a recording).
    pub(crate) fn shown(&self) -> Value {
        let mut shown = json!({"method": self.method, "params": self.params});
        if let Some(file) = &self.file {
            shown["file"] = Value::from(file.as_str());
        }
        shown
    }

    /// What `deskhook outbox list` shows as the request's status: the method's last word.
    pub(crate) fn status(&self) -> &'static str {
        self.method.rsplit('.').next().unwrap_or(self.method)
    }

    /// `register` and `finish` happen once per call.
    pub(crate) fn once_per_call(&self) -> bool {
        matches!(self.method, REGISTER | FINISH)
    }
}

/// What the mapping remembers of a call between its events.
#[derive(Debug, Default)]
struct CallCard {
    started_at: Option<EpochMillis>,
    registered: bool,
    /// Extensions whose users see the card now.
    shown: Vec<String>,
    /// A recording is attached already.
    recorded: bool,
}

/// Maps engine outputs to a `bitrix24` sink's requests.
pub(crate) struct Bitrix24Mapper {
    zone: jiff::tz::TimeZone,
    users: BTreeMap<String, String>,
    default_user: Option<String>,
    crm_create: bool,
    add_to_chat: bool,
    show_cards: bool,
    calls: HashMap<String, CallCard>,
}

impl Bitrix24Mapper {
    pub(crate) fn new(sink: &Bitrix24Sink, zone: jiff::tz::TimeZone) -> Self {
        Self {
            zone,
            users: sink.users.clone(),
            default_user: sink.default_user.clone().or_else(|| sink.auth.webhook_user()),
            crm_create: sink.crm_create,
            add_to_chat: sink.add_to_chat,
            show_cards: sink.show_cards,
            calls: HashMap::new(),
        }
    }

    pub(crate) fn map(&mut self, output: &Output) -> Vec<Bitrix24Request> {
        match output {
            Output::Event(event) => self.event(event),
            Output::Recording(recording) => {
                // Bitrix24 keeps one record per call (a second attachRecord replaces the first):
                // the first recording, MixMonitor's on the client's channel, covers the whole call.
                let card = self.calls.entry(recording.unique_id.clone()).or_default();
                if std::mem::replace(&mut card.recorded, true) {
                    return Vec::new();
                }
                let path = recording.source.as_str();
                let file_name = path.rsplit('/').next().unwrap_or(path).to_string();
                vec![Bitrix24Request {
                    unique_id: recording.unique_id.clone(),
                    method: ATTACH_RECORD,
                    params: json!({"CALL_ID": CALL_ID, "FILENAME": file_name}),
                    file: Some(path.to_string()),
                }]
            }
            Output::Effect(Effect::CallClosed { unique_id, .. }) => {
                self.calls.remove(unique_id);
                Vec::new()
            }
            Output::Effect(_) => Vec::new(),
        }
    }

    fn event(&mut self, event: &CallEvent) -> Vec<Bitrix24Request> {
        let incoming = event.parties.direction == CallDirection::Incoming;
        let mut card = self.calls.remove(&event.unique_id).unwrap_or_default();
        let mut requests = Vec::new();
        match &event.what {
            Happened::Started => {
                card.started_at = Some(event.at);
                if !incoming {
                    requests.push(self.register(event, &card, &event.parties.caller_extension));
                    card.registered = true;
                }
            }
            Happened::Ringing { extensions, .. } => {
                if let (true, false, Some(first)) = (incoming, card.registered, extensions.first()) {
                    requests.push(self.register(event, &card, first));
                    card.registered = true;
                }
                if incoming && self.show_cards {
                    let stopped: Vec<String> =
                        card.shown.iter().filter(|shown| !extensions.contains(shown)).cloned().collect();
                    requests.extend(self.cards(event, HIDE, &stopped));
                    let started: Vec<String> =
                        extensions.iter().filter(|extension| !card.shown.contains(extension)).cloned().collect();
                    requests.extend(self.cards(event, SHOW, &started));
                    card.shown = extensions.clone();
                }
            }
            Happened::Answered { operator } => {
                if !card.registered {
                    let user = if incoming { operator } else { &event.parties.caller_extension };
                    requests.push(self.register(event, &card, user));
                    card.registered = true;
                }
                let others: Vec<String> = card.shown.iter().filter(|shown| *shown != operator).cloned().collect();
                requests.extend(self.cards(event, HIDE, &others));
                card.shown.retain(|shown| shown == operator);
            }
            Happened::Transferred { .. } => {}
            Happened::Ended(summary) => {
                let user = finishing_extension(event, summary);
                if !card.registered {
                    let first = match incoming {
                        true => summary.rang.first().map(|rang| rang.extension.clone()).or(user.clone()),
                        false => user.clone(),
                    };
                    requests.push(self.register(event, &card, first.as_deref().unwrap_or_default()));
                    card.registered = true;
                }
                // `finish` closes the card of the user it names; anyone else still shown is told.
                let others: Vec<String> =
                    card.shown.iter().filter(|shown| Some(*shown) != user.as_ref()).cloned().collect();
                requests.extend(self.cards(event, HIDE, &others));
                card.shown.clear();
                let mut params = Map::new();
                params.insert("CALL_ID".into(), CALL_ID.into());
                self.put_user(&mut params, user.as_deref().unwrap_or_default());
                params.insert("DURATION".into(), summary.talk_seconds().into());
                params.insert("STATUS_CODE".into(), status_code(summary, incoming).into());
                if let Some(reason) = failed_reason(summary, incoming) {
                    params.insert("FAILED_REASON".into(), reason.into());
                }
                params.insert("ADD_TO_CHAT".into(), u8::from(self.add_to_chat).into());
                requests.push(Bitrix24Request {
                    unique_id: event.unique_id.clone(),
                    method: FINISH,
                    params: Value::Object(params),
                    file: None,
                });
            }
        }
        self.calls.insert(event.unique_id.clone(), card);
        requests
    }

    fn register(&self, event: &CallEvent, card: &CallCard, extension: &str) -> Bitrix24Request {
        let parties = &event.parties;
        let incoming = parties.direction == CallDirection::Incoming;
        let mut params = Map::new();
        self.put_user(&mut params, extension);
        params.insert("PHONE_NUMBER".into(), parties.client.clone().into());
        params.insert("TYPE".into(), if incoming { 2 } else { 1 }.into());
        params.insert("CALL_START_DATE".into(), self.date(card.started_at.unwrap_or(event.at)).into());
        if incoming && !parties.did.is_empty() {
            params.insert("LINE_NUMBER".into(), parties.did.clone().into());
        }
        params.insert("CRM_CREATE".into(), u8::from(self.crm_create).into());
        params.insert("SHOW".into(), 0.into());
        params.insert("EXTERNAL_CALL_ID".into(), event.unique_id.clone().into());
        Bitrix24Request {
            unique_id: event.unique_id.clone(),
            method: REGISTER,
            params: Value::Object(params),
            file: None,
        }
    }

    /// `show` or `hide` of the card for `extensions`' users (nothing when there are none).
    fn cards(&self, event: &CallEvent, method: &'static str, extensions: &[String]) -> Option<Bitrix24Request> {
        if extensions.is_empty() || !self.show_cards {
            return None;
        }
        let ids: Vec<Value> =
            extensions.iter().filter_map(|extension| self.users.get(extension)).map(|id| user_id(id)).collect();
        let inner: Vec<&String> = extensions.iter().filter(|extension| !self.users.contains_key(*extension)).collect();
        let mut params = Map::new();
        params.insert("CALL_ID".into(), CALL_ID.into());
        params.insert("USER_ID".into(), ids.into());
        if !inner.is_empty() {
            params.insert("USER_PHONE_INNER".into(), json!(inner));
        }
        Some(Bitrix24Request { unique_id: event.unique_id.clone(), method, params: Value::Object(params), file: None })
    }

    /// `USER_ID` for a mapped extension, else `USER_PHONE_INNER`; the default user when there
    /// is no extension at all.
    fn put_user(&self, params: &mut Map<String, Value>, extension: &str) {
        match (self.users.get(extension), extension.is_empty(), &self.default_user) {
            (Some(id), _, _) => params.insert("USER_ID".into(), user_id(id)),
            (None, false, _) => params.insert("USER_PHONE_INNER".into(), extension.into()),
            (None, true, Some(default)) => params.insert("USER_ID".into(), user_id(default)),
            (None, true, None) => None,
        };
    }

    /// ISO 8601 with the `pbx.timezone` offset, to the second.
    fn date(&self, at: EpochMillis) -> String {
        jiff::Timestamp::from_millisecond(at)
            .map(|timestamp| timestamp.to_zoned(self.zone.clone()).strftime("%Y-%m-%dT%H:%M:%S%:z").to_string())
            .unwrap_or_default()
    }
}

fn user_id(id: &str) -> Value {
    id.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(id))
}

/// Whose call it is in the CRM when it ends: the operator who answered last (outgoing: the
/// extension that called), else the last one rung.
fn finishing_extension(event: &CallEvent, summary: &CallSummary) -> Option<String> {
    if event.parties.direction == CallDirection::Outgoing {
        return Some(event.parties.caller_extension.clone());
    }
    summary
        .operator
        .clone()
        .or_else(|| summary.last_rang.last().cloned())
        .or_else(|| summary.rang.last().map(|rang| rang.extension.clone()))
}

/// Bitrix24's `STATUS_CODE` for how the call ended (SIP-like codes, as its documentation
/// lists them). Every unanswered incoming call is 304, the one code that makes Bitrix24 file a
/// missed call and start its missed-call trigger; `FAILED_REASON` says why.
pub(crate) fn status_code(summary: &CallSummary, incoming: bool) -> &'static str {
    if summary.outcome == Outcome::Answered {
        return "200";
    }
    if incoming {
        return "304";
    }
    match (summary.outcome, summary.hangup_cause) {
        (Outcome::Busy, _) | (_, Some(17)) => "486",
        // The operator gave up calling out.
        _ if summary.hung_up_by == HungUpBy::Operator => "603-S",
        // Q.850 21 call rejected; 18/19 no answer; 1 unallocated; 3/28 no route, bad format;
        // 34/38/41/42 no circuit, network out of order, temporary failure, congestion.
        (_, Some(21)) => "603",
        (_, Some(18 | 19)) => "480",
        (_, Some(1)) => "404",
        (_, Some(3 | 28)) => "484",
        (_, Some(34 | 38 | 41 | 42)) => "503",
        _ => "304",
    }
}

/// Why an unanswered call was not answered, in words for the CRM (`FAILED_REASON`).
fn failed_reason(summary: &CallSummary, incoming: bool) -> Option<&'static str> {
    let caller = if incoming { HungUpBy::Client } else { HungUpBy::Operator };
    Some(match summary.outcome {
        Outcome::Answered => return None,
        Outcome::Busy => "every phone was busy",
        Outcome::NoAnswer if summary.hung_up_by == caller => "the caller hung up while it rang",
        Outcome::NoAnswer => "nobody answered",
        Outcome::Failed if incoming && summary.hung_up_by == caller => "the caller hung up before any phone rang",
        Outcome::Failed => "no phone was reached",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{Parties, RecordingRef, RecordingSource};
    use crate::config::Bitrix24Auth;

    fn sink(users: &[(&str, &str)]) -> Bitrix24Sink {
        Bitrix24Sink {
            auth: Bitrix24Auth::Webhook { url: "https://portal.example/rest/7/tok/".into() },
            users: users.iter().map(|(extension, id)| (extension.to_string(), id.to_string())).collect(),
            default_user: None,
            crm_create: true,
            add_to_chat: false,
            show_cards: true,
            rate_per_sec: 2.0,
            burst: 50,
            oauth_url: String::new(),
        }
    }

    fn at(what: Happened, ms: EpochMillis, parties: &Parties) -> Output {
        Output::Event(CallEvent { unique_id: "1795237133.16".into(), at: ms, parties: parties.clone(), what })
    }

    fn methods(requests: &[Bitrix24Request]) -> Vec<&str> {
        requests.iter().map(|request| request.status()).collect()
    }

    #[test]
    fn an_incoming_queue_call_registers_at_the_first_ring_shows_cards_and_finishes_with_the_answerer() {
        let zone = jiff::tz::TimeZone::get("Europe/Moscow").expect("zone");
        let mut mapper = Bitrix24Mapper::new(&sink(&[("102", "12")]), zone);
        let parties = Parties::incoming("+79161234568", "74951234568");
        let start = 1_795_237_133_022;
        assert!(mapper.map(&at(Happened::Started, start, &parties)).is_empty());
        let ring = Happened::Ringing { extensions: vec!["101".into(), "102".into()], queue: Some("support".into()) };
        let rang = mapper.map(&at(ring, start + 3, &parties));
        assert_eq!(methods(&rang), ["register", "show"]);
        assert_eq!(
            rang[0].params,
            json!({"USER_PHONE_INNER": "101", "PHONE_NUMBER": "+79161234568", "TYPE": 2,
                   "CALL_START_DATE": "2026-11-21T07:58:53+03:00", "LINE_NUMBER": "74951234568",
                   "CRM_CREATE": 1, "SHOW": 0, "EXTERNAL_CALL_ID": "1795237133.16"})
        );
        assert_eq!(rang[1].params, json!({"CALL_ID": CALL_ID, "USER_ID": [12], "USER_PHONE_INNER": ["101"]}));
        let answered = mapper.map(&at(Happened::Answered { operator: "102".into() }, start + 3_000, &parties));
        assert_eq!(methods(&answered), ["hide"]);
        assert_eq!(answered[0].params, json!({"CALL_ID": CALL_ID, "USER_ID": [], "USER_PHONE_INNER": ["101"]}));
        let summary = CallSummary::unanswered(start, start + 9_000).answered_by("102", 6);
        let ended = mapper.map(&at(Happened::Ended(Box::new(summary)), start + 9_000, &parties));
        assert_eq!(methods(&ended), ["finish"]);
        assert_eq!(
            ended[0].params,
            json!({"CALL_ID": CALL_ID, "USER_ID": 12, "DURATION": 6, "STATUS_CODE": "200", "ADD_TO_CHAT": 0})
        );
        let recording = Output::Recording(RecordingRef {
            unique_id: "1795237133.16".into(),
            source: RecordingSource::File("/var/spool/asterisk/monitor/q.wav".into()),
        });
        let attach = mapper.map(&recording);
        assert_eq!(attach[0].shown()["params"], json!({"CALL_ID": CALL_ID, "FILENAME": "q.wav"}));
        assert_eq!(attach[0].file.as_deref(), Some("/var/spool/asterisk/monitor/q.wav"));
        let second = Output::Recording(RecordingRef {
            unique_id: "1795237133.16".into(),
            source: RecordingSource::File("/var/spool/asterisk/monitor/internal-102.wav".into()),
        });
        assert!(mapper.map(&second).is_empty(), "Bitrix24 keeps one record per call: the first");
    }

    #[test]
    fn a_call_that_never_rang_is_registered_to_the_default_user_when_it_ends() {
        let mut mapper = Bitrix24Mapper::new(&sink(&[]), jiff::tz::TimeZone::UTC);
        let parties = Parties::incoming("+79161234568", "74951234568");
        mapper.map(&at(Happened::Started, 0, &parties));
        let mut summary = CallSummary::unanswered(0, 20_000);
        summary.hung_up_by = HungUpBy::Client;
        let ended = mapper.map(&at(Happened::Ended(Box::new(summary)), 20_000, &parties));
        assert_eq!(methods(&ended), ["register", "finish"]);
        assert_eq!(ended[0].params["USER_ID"], 7, "the webhook's own user");
        assert_eq!(ended[0].params["CALL_START_DATE"], "1970-01-01T00:00:00+00:00");
        assert_eq!(ended[1].params["STATUS_CODE"], "304", "a missed call, whoever hung up");
        assert_eq!(ended[1].params["FAILED_REASON"], "the caller hung up before any phone rang");
    }

    #[test]
    fn ringing_that_moves_on_hides_the_cards_it_leaves() {
        let mut mapper = Bitrix24Mapper::new(&sink(&[("101", "11"), ("102", "12")]), jiff::tz::TimeZone::UTC);
        let parties = Parties::incoming("+79161234568", "74951234568");
        mapper.map(&at(Happened::Started, 0, &parties));
        let first = Happened::Ringing { extensions: vec!["101".into()], queue: None };
        assert_eq!(methods(&mapper.map(&at(first, 1, &parties))), ["register", "show"]);
        let next = Happened::Ringing { extensions: vec!["102".into()], queue: None };
        let moved = mapper.map(&at(next, 2, &parties));
        assert_eq!(methods(&moved), ["hide", "show"]);
        assert_eq!(moved[0].params["USER_ID"], json!([11]));
        let mut summary = CallSummary::unanswered(0, 5_000);
        summary.outcome = Outcome::NoAnswer;
        summary.last_rang = vec!["102".into()];
        let ended = mapper.map(&at(Happened::Ended(Box::new(summary)), 5_000, &parties));
        assert_eq!(methods(&ended), ["finish"], "finish closes the card of the user it names");
        assert_eq!(
            (ended[0].params["USER_ID"].clone(), ended[0].params["STATUS_CODE"].clone()),
            (json!(12), json!("304"))
        );
    }

    #[test]
    fn an_outgoing_call_is_registered_when_it_starts_to_the_extension_that_called() {
        let mut mapper = Bitrix24Mapper::new(&sink(&[]), jiff::tz::TimeZone::UTC);
        let parties = Parties::outgoing("101", "+79161234567");
        let started = mapper.map(&at(Happened::Started, 0, &parties));
        assert_eq!(methods(&started), ["register"]);
        assert_eq!(
            (started[0].params["TYPE"].clone(), started[0].params["USER_PHONE_INNER"].clone()),
            (json!(1), json!("101"))
        );
        assert!(started[0].params.get("LINE_NUMBER").is_none());
        let mut summary = CallSummary::unanswered(0, 5_000);
        summary.outcome = Outcome::NoAnswer;
        summary.hung_up_by = HungUpBy::Operator;
        assert_eq!(status_code(&summary, false), "603-S", "the operator gave up calling out");
        summary.hung_up_by = HungUpBy::Client;
        assert_eq!(status_code(&summary, false), "304");
        summary.hangup_cause = Some(21);
        assert_eq!(status_code(&summary, false), "603", "the client declined");
        summary.outcome = Outcome::Busy;
        assert_eq!(status_code(&summary, false), "486");
        assert_eq!(status_code(&summary, true), "304", "a busy incoming call is still missed");
        summary.outcome = Outcome::Failed;
        summary.hangup_cause = Some(1);
        assert_eq!(status_code(&summary, false), "404");
    }
}
