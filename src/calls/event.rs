//! What the call engine says happened: helpdesk events, recordings to upload, and requests
//! to its shell. Also their two wire shapes: the helpdesk form fields and the `replay` JSON line.

use serde::{Deserialize, Serialize};

use crate::ari::events::EpochMillis;

/// The helpdesk's `status` values (SPEC §3), exactly as written there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Hash)]
pub enum Status {
    IncomingStart,
    IncomingToPersonal,
    IncomingToQueue(String),
    IncomingAnswered,
    IncomingEnded,
    OutgoingStart,
    OutgoingAnswered,
    OutgoingEnded,
}

impl Status {
    /// The status text the helpdesk expects.
    pub fn text(&self) -> std::borrow::Cow<'static, str> {
        use std::borrow::Cow::Borrowed;
        match self {
            Status::IncomingStart => Borrowed("start of an incoming call"),
            Status::IncomingToPersonal => Borrowed("incoming call to personal number"),
            Status::IncomingToQueue(name) => std::borrow::Cow::Owned(format!("call to queue {name}")),
            Status::IncomingAnswered => Borrowed("incoming call answered"),
            Status::IncomingEnded => Borrowed("incoming call is ended"),
            Status::OutgoingStart => Borrowed("outgoing call start"),
            Status::OutgoingAnswered => Borrowed("answering an outgoing call"),
            Status::OutgoingEnded => Borrowed("outgoing call ended"),
        }
    }

    /// Start and end happen once per call, whatever restarts and reconnects do.
    pub fn is_once_per_call(&self) -> bool {
        matches!(self, Status::IncomingStart | Status::IncomingEnded | Status::OutgoingStart | Status::OutgoingEnded)
    }

    pub fn is_ended(&self) -> bool {
        matches!(self, Status::IncomingEnded | Status::OutgoingEnded)
    }
}

/// One helpdesk event of one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    /// The call's linkedid.
    pub unique_id: String,
    pub status: Status,
    pub from_user: String,
    pub to_user: String,
    /// When it happened in Asterisk (the ARI event's timestamp).
    pub at: EpochMillis,
    /// Whole seconds of conversation, on the ended event of an answered call only.
    pub call_duration: Option<u64>,
}

/// A recording of a finished call that should reach the helpdesk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordingRef {
    pub unique_id: String,
    pub source: RecordingSource,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RecordingSource {
    /// A MixMonitor file, as named by `MIXMONITOR_FILENAME`.
    File(String),
    /// An ARI stored recording, by name.
    Stored(String),
}

impl RecordingSource {
    pub fn as_str(&self) -> &str {
        match self {
            RecordingSource::File(path) | RecordingSource::Stored(path) => path,
        }
    }
}

/// Something the engine needs from the outside world; the shell answers or acts on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Effect {
    /// Who is in queue `queue`? Ask through a live channel of the call; answer with
    /// [`super::Engine::provide_queue_members`]. The queue event waits for the answer.
    QueueMembers { unique_id: String, channel_id: String, queue: String },
    /// A client is talking to someone: the ARI recorder may start on the client's channel.
    /// Sent at the first answer, and again after every resync for calls still talking (a
    /// reconnect ends deskhook's snoop channels, so recording resumes as a new part).
    ConversationStarted { unique_id: String, client_channel_id: String },
    /// The call is over (its ended event has been emitted); recorders may finish.
    CallClosed { unique_id: String, answered: bool },
    /// A call changed: what a restart needs to end it or follow it on (`None` once there is
    /// nothing to take back: it closed, or it is internal). Emitted by
    /// [`super::Engine::take_checkpoints`] after the outputs of the change.
    CallCheckpoint { unique_id: String, checkpoint: Option<Box<super::CallCheckpoint>> },
    /// A call adopted on a resync may be recorded by MixMonitor since before deskhook saw it:
    /// read `MIXMONITOR_FILENAME` of these channels and answer with
    /// [`super::Engine::provide_recording_names`]. The call's recordings wait for the answer.
    RecordingNames { unique_id: String, channel_ids: Vec<String> },
    /// The daemon is watching Asterisk at this event time (emitted by the daemon, not the
    /// engine, while calls are open): a restart after a crash ends vanished calls then.
    Alive { at: EpochMillis },
    /// Everything one step of the engine emitted (its events, then its checkpoints) is out;
    /// emitted by the daemon. A sink that stores them commits the step as one unit, so a kill
    /// never leaves an event stored without the checkpoint that follows it.
    StepDone,
}

/// Everything the engine emits, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Output {
    Event(CallEvent),
    Recording(RecordingRef),
    Effect(Effect),
}

/// The helpdesk's `datetime`: `dd.mm.YYYY-HH:MM:SS` in the PBX's zone.
pub fn format_datetime(at: EpochMillis, zone: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_millisecond(at) {
        Ok(ts) => ts.to_zoned(zone.clone()).strftime("%d.%m.%Y-%H:%M:%S").to_string(),
        Err(_) => String::from("01.01.1970-00:00:00"),
    }
}

impl CallEvent {
    /// The form fields of the helpdesk POST, in SPEC order.
    pub fn form_fields(&self, zone: &jiff::tz::TimeZone) -> Vec<(&'static str, String)> {
        let mut fields = vec![
            ("datetime", format_datetime(self.at, zone)),
            ("from_user", self.from_user.clone()),
            ("to_user", self.to_user.clone()),
            ("unique_id", self.unique_id.clone()),
            ("status", self.status.text().into_owned()),
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
        let status = self.status.text();
        let line = Line {
            status: &status,
            from_user: &self.from_user,
            to_user: &self.to_user,
            unique_id: &self.unique_id,
            datetime: format_datetime(self.at, zone),
            call_duration: self.call_duration,
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

impl RecordingRef {
    /// The `replay` line of a recording (SPEC §5).
    pub fn replay_line(&self) -> String {
        #[derive(Serialize)]
        struct Line<'a> {
            status: &'a str,
            unique_id: &'a str,
            record: &'a str,
        }
        let line = Line { status: "record", unique_id: &self.unique_id, record: self.source.as_str() };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn replay_line_has_spec_field_order() {
        let event = CallEvent {
            unique_id: "1700000000.1".into(),
            status: Status::IncomingEnded,
            from_user: "79161234567".into(),
            to_user: "101".into(),
            at: millis("2024-05-01T09:00:09Z"),
            call_duration: Some(3),
        };
        let utc = jiff::tz::TimeZone::UTC;
        assert_eq!(
            event.replay_line(&utc),
            r#"{"status":"incoming call is ended","from_user":"79161234567","to_user":"101","unique_id":"1700000000.1","datetime":"01.05.2024-09:00:09","call_duration":3}"#
        );
        let fields = event.form_fields(&utc);
        assert_eq!(fields.last(), Some(&("call_duration", "3".to_string())));
    }
}
