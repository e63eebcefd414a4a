//! The Omnidesk/Deskie "Asterisk" webhook (SPEC §3): eight status strings, each a form POST
//! with `from_user`/`to_user` as the helpdesk reads them, and `replay`'s JSON lines (SPEC §5).

use serde::Serialize;

use crate::ari::events::EpochMillis;
use crate::calls::{CallDirection, CallEvent, Happened, RecordingRef};
use crate::deliver::{form_body, Request};

/// One helpdesk event as the webhook takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OmnideskEvent {
    pub unique_id: String,
    /// One of SPEC §3's statuses, exactly as written there.
    pub status: String,
    pub from_user: String,
    pub to_user: String,
    pub at: EpochMillis,
    /// Whole seconds of talk, on the ended event of an answered call only.
    pub call_duration: Option<u64>,
    /// A start or an end: sent once per call, whatever restarts do.
    pub once_per_call: bool,
}

/// The helpdesk event for `event`; `None` for what the webhook has no status for (transfers,
/// which it learns from the new operator's ring and answer).
pub fn map(event: &CallEvent) -> Option<OmnideskEvent> {
    let parties = &event.parties;
    let incoming = parties.direction == CallDirection::Incoming;
    let from_user = if incoming { &parties.client } else { &parties.caller_extension };
    let (status, to_user, call_duration) = match (&event.what, incoming) {
        (Happened::Started, true) => ("start of an incoming call".to_string(), parties.did.clone(), None),
        (Happened::Started, false) => ("outgoing call start".to_string(), parties.client.clone(), None),
        (Happened::Ringing { extensions, queue: Some(queue) }, true) => {
            (format!("call to queue {queue}"), extensions.join(","), None)
        }
        (Happened::Ringing { extensions, queue: None }, true) => {
            ("incoming call to personal number".to_string(), extensions.join(","), None)
        }
        (Happened::Answered { operator }, true) => ("incoming call answered".to_string(), operator.clone(), None),
        (Happened::Answered { .. }, false) => ("answering an outgoing call".to_string(), parties.client.clone(), None),
        (Happened::Ended(summary), true) => {
            let to_user = summary.operator.clone().unwrap_or_else(|| summary.last_rang.join(","));
            let duration = summary.answered().then(|| summary.talk_seconds());
            ("incoming call is ended".to_string(), to_user, duration)
        }
        (Happened::Ended(summary), false) => {
            let duration = summary.answered().then(|| summary.talk_seconds());
            ("outgoing call ended".to_string(), parties.client.clone(), duration)
        }
        (Happened::Ringing { .. } | Happened::Transferred { .. }, _) => return None,
    };
    Some(OmnideskEvent {
        unique_id: event.unique_id.clone(),
        status,
        from_user: from_user.clone(),
        to_user,
        at: event.at,
        call_duration,
        once_per_call: event.is_once_per_call(),
    })
}

/// The helpdesk's `datetime`: `dd.mm.YYYY-HH:MM:SS` in the PBX's zone.
pub fn format_datetime(at: EpochMillis, zone: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(at) {
        Ok(ts) => ts.to_zoned(zone.clone()).strftime("%d.%m.%Y-%H:%M:%S").to_string(),
        Err(_) => String::from("01.01.1970-00:00:00"),
    }
}

impl OmnideskEvent {
    /// The form fields of the helpdesk POST, in SPEC order.
    pub(crate) fn form_fields(&self, zone: &jiff::tz::TimeZone) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("datetime", format_datetime(self.at, zone)),
            ("from_user", self.from_user.clone()),
            ("to_user", self.to_user.clone()),
            ("unique_id", self.unique_id.clone()),
            ("status", self.status.clone()),
        ];
        if let Some(seconds) = self.call_duration {
            fields.push(("call_duration", seconds.to_string()));
        }
        fields
    }

    /// The `replay` line (SPEC §5).
    pub fn replay_line(&self, zone: &jiff::tz::TimeZone) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            status: &'a str,
            from_user: &'a str,
            to_user: &'a str,
            unique_id: &'a str,
            datetime: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            call_duration: Option<u64>,
        }
        let line = Line {
            status: &self.status,
            from_user: &self.from_user,
            to_user: &self.to_user,
            unique_id: &self.unique_id,
            datetime: format_datetime(self.at, zone),
            call_duration: self.call_duration,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }

    /// The webhook POST; `zone` is `pbx.timezone` (the `datetime` field).
    pub fn request(&self, zone: &jiff::tz::TimeZone) -> Request {
        Request::form(&self.unique_id, &self.status, self.once_per_call, form_body(&self.form_fields(zone)))
    }
}

/// The `replay` line of a recording (SPEC §5).
pub fn record_line(recording: &RecordingRef) -> String {
    #[derive(Serialize)]
    struct Line<'a> {
        status: &'a str,
        unique_id: &'a str,
        record: &'a str,
    }
    let line = Line { status: "record", unique_id: &recording.unique_id, record: recording.source.as_str() };
    serde_json::to_string(&line).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calls::{CallSummary, HungUpBy, Outcome, Parties};

    fn millis(text: &str) -> EpochMillis {
        text.parse::<jiff::Timestamp>().expect("valid").as_millisecond()
    }

    #[test]
    fn datetime_is_local_to_the_pbx_zone() {
        let moscow = jiff::tz::TimeZone::get("Europe/Moscow").expect("tzdb");
        assert_eq!(format_datetime(millis("2026-11-21T04:58:16.310Z"), &moscow), "21.11.2026-07:58:16");
    }

    #[test]
    fn datetime_follows_dst_transitions() {
        let berlin = jiff::tz::TimeZone::get("Europe/Berlin").expect("tzdb");
        // Spring: local time jumps from 02:00 CET straight to 03:00 CEST.
        assert_eq!(format_datetime(millis("2024-03-31T00:59:59Z"), &berlin), "31.03.2024-01:59:59");
        assert_eq!(format_datetime(millis("2024-03-31T01:00:00Z"), &berlin), "31.03.2024-03:00:00");
        // Autumn: 02:30 local happens twice; the UTC instant decides which.
        assert_eq!(format_datetime(millis("2024-10-27T00:30:00Z"), &berlin), "27.10.2024-02:30:00");
        assert_eq!(format_datetime(millis("2024-10-27T01:30:00Z"), &berlin), "27.10.2024-02:30:00");
        assert_eq!(format_datetime(millis("2024-10-27T02:30:00Z"), &berlin), "27.10.2024-03:30:00");
    }

    #[test]
    fn an_answered_end_has_spec_field_order_and_the_talk_time() {
        let ended_at = millis("2024-05-01T09:00:09Z");
        let summary = CallSummary {
            started_at: ended_at - 9_000,
            answered_at: Some(ended_at - 3_500),
            ended_at,
            operator: Some("101".into()),
            queue: None,
            outcome: Outcome::Answered,
            hangup_cause: Some(16),
            hangup_cause_text: Some("Normal Clearing".into()),
            hung_up_by: HungUpBy::Client,
            rang: Vec::new(),
            transfers: Vec::new(),
            recordings: Vec::new(),
            last_rang: vec!["101".into()],
        };
        let event = CallEvent {
            unique_id: "1700000000.1".into(),
            at: ended_at,
            parties: Parties {
                direction: CallDirection::Incoming,
                client: "79161234567".into(),
                did: "74951234567".into(),
                caller_extension: String::new(),
            },
            what: Happened::Ended(Box::new(summary)),
        };
        let utc = jiff::tz::TimeZone::UTC;
        let mapped = map(&event).expect("an ended event");
        assert_eq!(
            mapped.replay_line(&utc),
            r#"{"status":"incoming call is ended","from_user":"79161234567","to_user":"101","unique_id":"1700000000.1","datetime":"01.05.2024-09:00:09","call_duration":3}"#
        );
        assert_eq!(mapped.form_fields(&utc).last(), Some(&("call_duration", "3".to_string())));
        assert!(mapped.once_per_call);
    }
}
