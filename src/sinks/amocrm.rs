//! The `amocrm` sink's mapping (amoCRM and Kommo, API v4): one `POST /api/v4/calls` when a
//! call ends, which amoCRM files on the card of the contact (or company) with that number.
//! `docs/sinks/amocrm-api.md` records the fields from amoCRM's documentation; the sender adds
//! the call to Unsorted when amoCRM finds no card and the sink's `unsorted` says so. With
//! recording links on (`[recordings] public_base_url`), the call's `link` plays its recording.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use crate::calls::{CallDirection, CallEvent, CallSummary, Happened, HungUpBy, Outcome};
use crate::config::AmocrmSink;
use crate::recordings::RecordingLinks;

pub(crate) const ADD_CALLS: &str = "POST /api/v4/calls";
/// The `source` every call carries: where amoCRM shows the call came from.
pub(crate) const SOURCE: &str = "deskhook";

/// Maps call events to an `amocrm` sink's requests.
pub(crate) struct AmocrmMapper {
    /// Extension -> amoCRM user id (the config's map turned around).
    users: BTreeMap<String, u64>,
    /// Recording links (`[recordings] public_base_url`): the call's `link`.
    links: Option<RecordingLinks>,
}

impl AmocrmMapper {
    pub(crate) fn new(sink: &AmocrmSink, links: Option<RecordingLinks>) -> Self {
        let users = sink
            .users
            .iter()
            .filter_map(|(id, extension)| Some((extension.clone(), id.parse::<u64>().ok()?)))
            .collect();
        Self { users, links }
    }

    /// The body of `POST /api/v4/calls` for `event` (only a call's end has one).
    pub(crate) fn map(&self, event: &CallEvent) -> Option<Value> {
        let Happened::Ended(summary) = &event.what else { return None };
        let parties = &event.parties;
        let incoming = parties.direction == CallDirection::Incoming;
        let mut call = Map::new();
        call.insert("direction".into(), if incoming { "inbound" } else { "outbound" }.into());
        call.insert("uniq".into(), event.unique_id.clone().into());
        call.insert("duration".into(), summary.talk_seconds().into());
        call.insert("source".into(), SOURCE.into());
        // The first recording (MixMonitor's on the client's channel) covers the whole call.
        if let (Some(links), Some(file)) = (&self.links, summary.recordings.first()) {
            call.insert("link".into(), links.link(file, summary.ended_at).into());
        }
        call.insert("phone".into(), parties.client.clone().into());
        call.insert("call_status".into(), call_status(summary, incoming).into());
        call.insert("call_result".into(), call_result(summary, incoming).into());
        let operator = if incoming { summary.operator.as_deref() } else { Some(parties.caller_extension.as_str()) };
        if let Some(user) = operator.and_then(|extension| self.users.get(extension)) {
            call.insert("responsible_user_id".into(), (*user).into());
            call.insert("created_by".into(), (*user).into());
        }
        call.insert("created_at".into(), (summary.started_at.div_euclid(1000)).into());
        Some(json!([call]))
    }
}

/// amoCRM's `call_status`: 3 not available, 4 conversation, 5 wrong number, 6 not reached, 7 busy.
pub(crate) fn call_status(summary: &CallSummary, incoming: bool) -> u8 {
    match summary.outcome {
        Outcome::Answered => 4,
        Outcome::Busy => 7,
        // Q.850 1 unallocated number, 3 no route, 28 invalid number format.
        Outcome::Failed if !incoming && matches!(summary.hangup_cause, Some(1 | 3 | 28)) => 5,
        Outcome::NoAnswer | Outcome::Failed if incoming => 3,
        Outcome::NoAnswer | Outcome::Failed => 6,
    }
}

/// The call's result in words, shown on the card.
fn call_result(summary: &CallSummary, incoming: bool) -> String {
    match (summary.outcome, incoming) {
        (Outcome::Answered, true) => {
            format!("answered by {}", summary.operator.as_deref().unwrap_or("an operator"))
        }
        (Outcome::Answered, false) => "the client answered".into(),
        (Outcome::Busy, _) => "busy".into(),
        (_, true) if summary.hung_up_by == HungUpBy::Client && summary.rang.is_empty() => {
            "missed: the caller hung up before any phone rang".into()
        }
        (_, true) if summary.hung_up_by == HungUpBy::Client => "missed: the caller hung up while ringing".into(),
        (_, true) => "missed: nobody answered".into(),
        (Outcome::Failed, false) => "not reached".into(),
        (_, false) => "the client did not answer".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::Parties;

    fn mapper() -> AmocrmMapper {
        AmocrmMapper::new(
            &AmocrmSink {
                base_url: "https://company.amocrm.ru".into(),
                token: "t".into(),
                users: BTreeMap::from([("123456".to_string(), "102".to_string())]),
                unsorted: false,
                pipeline_id: None,
                rate_per_sec: 7.0,
            },
            None,
        )
    }

    fn ended(parties: Parties, summary: CallSummary) -> CallEvent {
        CallEvent {
            unique_id: "1795237133.16".into(),
            at: summary.ended_at,
            parties,
            what: Happened::Ended(Box::new(summary)),
        }
    }

    #[test]
    fn an_answered_incoming_call_is_one_call_for_the_operators_user() {
        let summary = CallSummary::unanswered(1_795_237_133_022, 1_795_237_142_022).answered_by("102", 6);
        let body = mapper().map(&ended(Parties::incoming("+79161234568", "74951234568"), summary)).expect("a call");
        assert_eq!(
            body,
            json!([{"direction": "inbound", "uniq": "1795237133.16", "duration": 6, "source": "deskhook",
                    "phone": "+79161234568", "call_status": 4, "call_result": "answered by 102",
                    "responsible_user_id": 123456, "created_by": 123456, "created_at": 1_795_237_133}])
        );
        let start =
            CallEvent { what: Happened::Started, ..ended(Parties::incoming("1", "2"), CallSummary::unanswered(0, 0)) };
        assert_eq!(mapper().map(&start), None);
    }

    #[test]
    fn statuses_follow_the_outcome() {
        let mut summary = CallSummary::unanswered(0, 5_000);
        summary.outcome = Outcome::NoAnswer;
        assert_eq!(call_status(&summary, true), 3);
        assert_eq!(call_status(&summary, false), 6);
        summary.outcome = Outcome::Busy;
        assert_eq!(call_status(&summary, false), 7);
        summary.outcome = Outcome::Failed;
        summary.hangup_cause = Some(1);
        assert_eq!(call_status(&summary, false), 5);
        let body = mapper().map(&ended(Parties::outgoing("101", "+79161234567"), summary)).expect("a call");
        assert_eq!(body[0]["direction"], "outbound");
        assert!(body[0].get("responsible_user_id").is_none(), "101 has no amoCRM user");
    }
}
