//! The `zammad` sink: Zammad's generic CTI API (`POST /api/v1/cti/TOKEN`), as
//! `docs/sinks/zammad-api.md` records it from Zammad's own source and documentation. Three
//! events per call: `newCall` at the start, `answer` for each operator who answers, `hangup`
//! at the end. Every value is a string; `user` is one name (the `[sinks] users` map turns an
//! extension into a Zammad user name).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::calls::{CallDirection, CallEvent, CallSummary, Happened, HungUpBy, Outcome};

/// Zammad's hangup causes, as its documentation lists them.
pub const CAUSES: [&str; 7] = ["normalClearing", "busy", "cancel", "noAnswer", "congestion", "notFound", "forwarded"];

/// The JSON body Zammad is sent for `event`; `None` for what it has no event for (rings,
/// transfers: the new operator's `answer` tells it who talks now).
pub(crate) fn map(event: &CallEvent, users: &BTreeMap<String, String>) -> Option<Value> {
    let parties = &event.parties;
    let incoming = parties.direction == CallDirection::Incoming;
    let (from, to) = if incoming {
        (parties.client.as_str(), parties.did.as_str())
    } else {
        (parties.caller_extension.as_str(), parties.client.as_str())
    };
    // Unmapped extensions send no `user`: Zammad then finds the agent by `answeringNumber`
    // instead of showing a bare extension as the agent's name.
    let user_of = |extension: &str| users.get(extension).cloned();
    let mut body = Map::new();
    let mut put = |key: &str, value: String| {
        body.insert(key.to_string(), Value::String(value));
    };
    match &event.what {
        Happened::Started => {
            put("event", "newCall".into());
            if let (false, Some(user)) = (incoming, user_of(&parties.caller_extension)) {
                put("user", user);
            }
        }
        Happened::Answered { operator } => {
            put("event", "answer".into());
            if let Some(user) = user_of(if incoming { operator } else { &parties.caller_extension }) {
                put("user", user);
            }
            if incoming {
                put("answeringNumber", operator.clone());
            }
        }
        Happened::Ended(summary) => {
            put("event", "hangup".into());
            put("cause", cause(summary, incoming).into());
            if let (true, Some(operator)) = (incoming, &summary.operator) {
                put("answeringNumber", operator.clone());
            }
        }
        Happened::Ringing { .. } | Happened::Transferred { .. } => return None,
    }
    put("from", from.to_string());
    put("to", to.to_string());
    put("direction", if incoming { "in" } else { "out" }.into());
    put("callId", event.unique_id.clone());
    Some(Value::Object(body))
}

/// The hangup cause Zammad knows for how the call ended (`cancel`: the caller gave up, which
/// for an outgoing call is the operator).
fn cause(summary: &CallSummary, incoming: bool) -> &'static str {
    let caller = if incoming { HungUpBy::Client } else { HungUpBy::Operator };
    match summary.outcome {
        Outcome::Answered => "normalClearing",
        Outcome::Busy => "busy",
        // Q.850 1 unallocated number, 3 no route, 28 invalid number format.
        Outcome::Failed if matches!(summary.hangup_cause, Some(1 | 3 | 28)) => "notFound",
        Outcome::Failed => "congestion",
        Outcome::NoAnswer if summary.hung_up_by == caller => "cancel",
        Outcome::NoAnswer => "noAnswer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::Parties;

    fn event(parties: Parties, what: Happened) -> CallEvent {
        CallEvent { unique_id: "1795237133.16".into(), at: 0, parties, what }
    }

    #[test]
    fn an_incoming_call_is_new_answered_and_hung_up_with_string_values() {
        let users = BTreeMap::from([("102".to_string(), "Bob Smith".to_string())]);
        let parties = Parties::incoming("+79161234568", "74951234568");
        let start = map(&event(parties.clone(), Happened::Started), &users).expect("newCall");
        assert_eq!(
            start,
            serde_json::json!({"event": "newCall", "from": "+79161234568", "to": "74951234568", "direction": "in",
                               "callId": "1795237133.16"})
        );
        let answer =
            map(&event(parties.clone(), Happened::Answered { operator: "102".into() }), &users).expect("answer");
        assert_eq!(answer["user"], "Bob Smith");
        assert_eq!(answer["answeringNumber"], "102");
        let unmapped =
            map(&event(parties.clone(), Happened::Answered { operator: "101".into() }), &users).expect("answer");
        assert_eq!((unmapped.get("user"), &unmapped["answeringNumber"]), (None, &Value::from("101")));
        let summary = CallSummary::unanswered(0, 5_000).answered_by("102", 3);
        let hangup = map(&event(parties.clone(), Happened::Ended(Box::new(summary))), &users).expect("hangup");
        assert_eq!(hangup["cause"], "normalClearing");
        let ring = Happened::Ringing { extensions: vec!["101".into()], queue: None };
        assert_eq!(map(&event(parties, ring), &users), None);
    }

    #[test]
    fn unanswered_calls_end_with_the_cause_zammad_knows() {
        let mut summary = CallSummary::unanswered(0, 5_000);
        summary.outcome = Outcome::NoAnswer;
        summary.hung_up_by = HungUpBy::Client;
        assert_eq!(cause(&summary, true), "cancel");
        assert_eq!(cause(&summary, false), "noAnswer", "the client did not answer an outgoing call");
        summary.hung_up_by = HungUpBy::Operator;
        assert_eq!(cause(&summary, false), "cancel", "the operator gave up calling out");
        summary.hung_up_by = HungUpBy::System;
        assert_eq!(cause(&summary, true), "noAnswer");
        summary.outcome = Outcome::Busy;
        assert_eq!(cause(&summary, true), "busy");
        summary.outcome = Outcome::Failed;
        assert_eq!(cause(&summary, true), "congestion");
        summary.hangup_cause = Some(1);
        assert_eq!(cause(&summary, false), "notFound");
        assert!(CAUSES.contains(&cause(&summary, true)));
    }
}
