//! ARI websocket messages turned into typed events, once, at the edge.
//!
//! A message is parsed in one pass into a flat record of every field deskhook knows, then
//! into [`AriEvent`]. Unknown event types become [`AriEvent::Other`]; unknown fields are
//! ignored and counted in [`ParseStats`]. A malformed message is a [`ParseError`], never a panic.

use std::borrow::Cow;

use serde::Deserialize;

use super::model::{Bridge, Channel, DeviceState, DialplanApp, Endpoint, LiveRecording};

/// Milliseconds since the Unix epoch, taken from the event's own `timestamp`.
pub type EpochMillis = i64;

/// One ARI event with the time Asterisk stamped on it.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedEvent {
    pub at: EpochMillis,
    pub event: AriEvent,
}

/// The ARI events the call engine and the daemon act on.
// Variants differ in size (a Dial carries two channels); events are short-lived and moved
// once, so boxing the large ones would only add an allocation per event.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum AriEvent {
    ChannelCreated {
        channel: Channel,
    },
    ChannelDestroyed {
        channel: Channel,
        cause: i64,
        cause_txt: String,
    },
    ChannelStateChange {
        channel: Channel,
    },
    ChannelDialplan {
        channel: Channel,
        app: DialplanApp,
    },
    ChannelVarset {
        channel: Option<Channel>,
        variable: String,
        value: String,
    },
    ChannelHangupRequest {
        channel: Channel,
        cause: Option<i64>,
        soft: bool,
    },
    ChannelCallerId {
        channel: Channel,
    },
    ChannelConnectedLine {
        channel: Channel,
    },
    Dial {
        caller: Option<Channel>,
        peer: Channel,
        dialstring: String,
        dialstatus: String,
        forward: String,
    },
    BridgeCreated {
        bridge: Bridge,
    },
    BridgeDestroyed {
        bridge: Bridge,
    },
    ChannelEnteredBridge {
        bridge: Bridge,
        channel: Channel,
    },
    ChannelLeftBridge {
        bridge: Bridge,
        channel: Channel,
    },
    BridgeBlindTransfer {
        channel: Channel,
        transferee: Option<Channel>,
        replace_channel: Option<Channel>,
        bridge: Option<Bridge>,
        exten: String,
        context: String,
        result: String,
    },
    BridgeAttendedTransfer(Box<AttendedTransfer>),
    StasisStart {
        channel: Channel,
        args: Vec<String>,
        replace_channel: Option<Channel>,
    },
    StasisEnd {
        channel: Channel,
    },
    DeviceStateChanged {
        device_state: DeviceState,
    },
    EndpointStateChange {
        endpoint: Endpoint,
    },
    RecordingStarted {
        recording: LiveRecording,
    },
    RecordingFinished {
        recording: LiveRecording,
    },
    RecordingFailed {
        recording: LiveRecording,
    },
    ApplicationReplaced {
        application: String,
    },
    /// `ChannelUserevent`: a user event, e.g. the marker deskhook posts to itself after a resync.
    ChannelUserevent {
        eventname: String,
        userevent: serde_json::Map<String, serde_json::Value>,
    },
    /// An event type deskhook does not act on (kept by name for counting).
    Other {
        kind: String,
    },
}

/// `BridgeAttendedTransfer`: boxed because it is large and rare.
#[derive(Debug, Clone, PartialEq)]
pub struct AttendedTransfer {
    pub transferer_first_leg: Channel,
    pub transferer_second_leg: Channel,
    pub replace_channel: Option<Channel>,
    pub transferee: Option<Channel>,
    pub transfer_target: Option<Channel>,
    pub result: String,
    pub destination_type: String,
    pub destination_bridge: String,
    pub destination_link_first_leg: Option<Channel>,
    pub destination_link_second_leg: Option<Channel>,
    pub destination_threeway_channel: Option<Channel>,
}

/// Why a message could not be turned into an event.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ParseError {
    #[error("not valid ARI JSON: {0}")]
    Json(String),
    #[error("the message has no `type`")]
    MissingType,
    #[error("{kind} has no `timestamp`")]
    MissingTimestamp { kind: String },
    #[error("{kind} has an unreadable timestamp {value:?}")]
    BadTimestamp { kind: String, value: String },
    #[error("{kind} lacks its required field `{field}`")]
    MissingField { kind: String, field: &'static str },
}

/// What the parser has seen so far besides well-formed known events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParseStats {
    pub events: u64,
    pub unknown_types: u64,
    pub unknown_fields: u64,
    pub malformed: u64,
}

/// Every field of every event deskhook reads, flattened; absent ones stay `None`. What is only
/// looked at (the type, the time, the application) is borrowed from the message, not copied.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMessage<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    channel: Option<Box<Channel>>,
    caller: Option<Box<Channel>>,
    peer: Option<Box<Channel>>,
    bridge: Option<Bridge>,
    variable: Option<String>,
    value: Option<String>,
    #[serde(borrow)]
    dialplan_app: Option<Cow<'a, str>>,
    #[serde(borrow)]
    dialplan_app_data: Option<Cow<'a, str>>,
    dialstring: Option<String>,
    dialstatus: Option<String>,
    forward: Option<String>,
    cause: Option<i64>,
    cause_txt: Option<String>,
    soft: Option<bool>,
    transferee: Option<Box<Channel>>,
    replace_channel: Option<Box<Channel>>,
    exten: Option<String>,
    context: Option<String>,
    result: Option<String>,
    transferer_first_leg: Option<Box<Channel>>,
    transferer_second_leg: Option<Box<Channel>>,
    transfer_target: Option<Box<Channel>>,
    destination_type: Option<String>,
    destination_bridge: Option<String>,
    destination_link_first_leg: Option<Box<Channel>>,
    destination_link_second_leg: Option<Box<Channel>>,
    destination_threeway_channel: Option<Box<Channel>>,
    args: Option<Vec<String>>,
    device_state: Option<DeviceState>,
    endpoint: Option<Endpoint>,
    recording: Option<LiveRecording>,
    application: Option<String>,
    eventname: Option<String>,
    userevent: Option<serde_json::Map<String, serde_json::Value>>,
    // Known and deliberately unused: listed so they are not counted as unknown.
    asterisk_id: serde::de::IgnoredAny,
    tech_cause: serde::de::IgnoredAny,
    is_external: serde::de::IgnoredAny,
    transferer_first_leg_bridge: serde::de::IgnoredAny,
    transferer_second_leg_bridge: serde::de::IgnoredAny,
    destination_application: serde::de::IgnoredAny,
    destination_threeway_bridge: serde::de::IgnoredAny,
    forwarded: serde::de::IgnoredAny,
}

/// The head of a `ChannelVarset`: enough to tell whether its channel is worth reading.
#[derive(Deserialize, Default)]
#[serde(default)]
struct VarsetHead<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    variable: Option<Cow<'a, str>>,
    #[serde(borrow)]
    value: Option<Cow<'a, str>>,
}

/// Parses ARI messages and keeps the counts of what it had to tolerate.
#[derive(Debug)]
pub struct EventParser {
    pub stats: ParseStats,
    /// Counting unknown fields walks every value twice: replays and tests want the count,
    /// the live daemon does not.
    count_unknown_fields: bool,
    /// The live daemon's channel variables whose `ChannelVarset` needs its channel; the
    /// channel of any other is skipped, not parsed (`None`: every channel is parsed).
    variables_read: Option<&'static [&'static str]>,
}

impl Default for EventParser {
    fn default() -> Self {
        Self::new()
    }
}

impl EventParser {
    /// A parser that counts everything it tolerated, unknown fields included.
    pub fn new() -> Self {
        Self { stats: ParseStats::default(), count_unknown_fields: true, variables_read: None }
    }

    /// A parser for the live event stream: the same events, without the unknown-field count,
    /// and without the channel of a `ChannelVarset` setting a variable not in `variables_read`
    /// (most of ARI's messages: the dialplan's every `Set` is one).
    pub(crate) fn live(variables_read: &'static [&'static str]) -> Self {
        Self { stats: ParseStats::default(), count_unknown_fields: false, variables_read: Some(variables_read) }
    }

    /// Parses one websocket message (one trace line).
    pub fn parse(&mut self, text: &str) -> Result<TimedEvent, ParseError> {
        let result = self.parse_inner(text);
        match &result {
            Ok(timed) => {
                self.stats.events += 1;
                if matches!(timed.event, AriEvent::Other { .. }) {
                    self.stats.unknown_types += 1;
                }
            }
            Err(_) => self.stats.malformed += 1,
        }
        result
    }

    fn parse_inner(&mut self, text: &str) -> Result<TimedEvent, ParseError> {
        if let Some(event) = self.unread_varset(text) {
            return Ok(event);
        }
        let mut deserializer = serde_json::Deserializer::from_str(text);
        let raw: RawMessage = if self.count_unknown_fields {
            let mut unknown = 0u64;
            let raw = serde_ignored::deserialize(&mut deserializer, |_path| unknown += 1)
                .map_err(|err| ParseError::Json(err.to_string()))?;
            self.stats.unknown_fields += unknown;
            raw
        } else {
            serde::Deserialize::deserialize(&mut deserializer).map_err(|err| ParseError::Json(err.to_string()))?
        };
        deserializer.end().map_err(|err| ParseError::Json(err.to_string()))?;
        raw.into_event()
    }

    /// A `ChannelVarset` of a variable nobody reads, taken without its channel. Asterisk writes
    /// `variable` first, so other messages are told apart by their first bytes and cost
    /// nothing here; anything unusual (another order, a bad timestamp) goes the full way.
    fn unread_varset(&self, text: &str) -> Option<TimedEvent> {
        let variables_read = self.variables_read?;
        if !text.starts_with(r#"{"variable":"#) {
            return None;
        }
        let head: VarsetHead = serde_json::from_str(text).ok()?;
        if head.kind.as_deref() != Some("ChannelVarset") {
            return None;
        }
        let variable = head.variable?;
        if variables_read.contains(&variable.as_ref()) {
            return None;
        }
        let at = parse_ari_timestamp(head.timestamp.as_deref()?)?;
        let value = head.value.map(Cow::into_owned).unwrap_or_default();
        Some(TimedEvent {
            at,
            event: AriEvent::ChannelVarset { channel: None, variable: variable.into_owned(), value },
        })
    }
}

impl RawMessage<'_> {
    fn into_event(mut self) -> Result<TimedEvent, ParseError> {
        let kind = self.kind.take().ok_or(ParseError::MissingType)?;
        let Some(stamp) = self.timestamp.as_deref() else {
            // Application lifecycle messages carry no timestamp in some versions; they need none.
            if kind == "ApplicationReplaced" {
                return Ok(TimedEvent {
                    at: 0,
                    event: AriEvent::ApplicationReplaced { application: self.application.unwrap_or_default() },
                });
            }
            return Err(ParseError::MissingTimestamp { kind: kind.into_owned() });
        };
        let at = parse_ari_timestamp(stamp)
            .ok_or_else(|| ParseError::BadTimestamp { kind: kind.to_string(), value: stamp.to_string() })?;
        let event = self.typed(&kind)?;
        Ok(TimedEvent { at, event })
    }

    fn typed(self, kind: &str) -> Result<AriEvent, ParseError> {
        let missing = |field: &'static str| ParseError::MissingField { kind: kind.to_string(), field };
        let event = match kind {
            "ChannelCreated" => {
                AriEvent::ChannelCreated { channel: unbox(self.channel).ok_or_else(|| missing("channel"))? }
            }
            "ChannelDestroyed" => AriEvent::ChannelDestroyed {
                channel: unbox(self.channel).ok_or_else(|| missing("channel"))?,
                cause: self.cause.unwrap_or(0),
                cause_txt: self.cause_txt.unwrap_or_default(),
            },
            "ChannelStateChange" => {
                AriEvent::ChannelStateChange { channel: unbox(self.channel).ok_or_else(|| missing("channel"))? }
            }
            "ChannelDialplan" => AriEvent::ChannelDialplan {
                channel: unbox(self.channel).ok_or_else(|| missing("channel"))?,
                app: DialplanApp::of(
                    self.dialplan_app.as_deref().unwrap_or_default(),
                    self.dialplan_app_data.as_deref().unwrap_or_default(),
                ),
            },
            "ChannelVarset" => AriEvent::ChannelVarset {
                channel: unbox(self.channel),
                variable: self.variable.ok_or_else(|| missing("variable"))?,
                value: self.value.unwrap_or_default(),
            },
            "ChannelHangupRequest" => AriEvent::ChannelHangupRequest {
                channel: unbox(self.channel).ok_or_else(|| missing("channel"))?,
                cause: self.cause,
                soft: self.soft.unwrap_or(false),
            },
            "ChannelCallerId" => {
                AriEvent::ChannelCallerId { channel: unbox(self.channel).ok_or_else(|| missing("channel"))? }
            }
            "ChannelConnectedLine" => {
                AriEvent::ChannelConnectedLine { channel: unbox(self.channel).ok_or_else(|| missing("channel"))? }
            }
            "Dial" => AriEvent::Dial {
                caller: unbox(self.caller),
                peer: unbox(self.peer).ok_or_else(|| missing("peer"))?,
                dialstring: self.dialstring.unwrap_or_default(),
                dialstatus: self.dialstatus.unwrap_or_default(),
                forward: self.forward.unwrap_or_default(),
            },
            "BridgeCreated" => AriEvent::BridgeCreated { bridge: self.bridge.ok_or_else(|| missing("bridge"))? },
            "BridgeDestroyed" => AriEvent::BridgeDestroyed { bridge: self.bridge.ok_or_else(|| missing("bridge"))? },
            "ChannelEnteredBridge" => AriEvent::ChannelEnteredBridge {
                bridge: self.bridge.ok_or_else(|| missing("bridge"))?,
                channel: unbox(self.channel).ok_or_else(|| missing("channel"))?,
            },
            "ChannelLeftBridge" => AriEvent::ChannelLeftBridge {
                bridge: self.bridge.ok_or_else(|| missing("bridge"))?,
                channel: unbox(self.channel).ok_or_else(|| missing("channel"))?,
            },
            "BridgeBlindTransfer" => AriEvent::BridgeBlindTransfer {
                channel: unbox(self.channel).ok_or_else(|| missing("channel"))?,
                transferee: unbox(self.transferee),
                replace_channel: unbox(self.replace_channel),
                bridge: self.bridge,
                exten: self.exten.unwrap_or_default(),
                context: self.context.unwrap_or_default(),
                result: self.result.unwrap_or_default(),
            },
            "BridgeAttendedTransfer" => AriEvent::BridgeAttendedTransfer(Box::new(AttendedTransfer {
                transferer_first_leg: unbox(self.transferer_first_leg)
                    .ok_or_else(|| missing("transferer_first_leg"))?,
                transferer_second_leg: unbox(self.transferer_second_leg)
                    .ok_or_else(|| missing("transferer_second_leg"))?,
                replace_channel: unbox(self.replace_channel),
                transferee: unbox(self.transferee),
                transfer_target: unbox(self.transfer_target),
                result: self.result.unwrap_or_default(),
                destination_type: self.destination_type.unwrap_or_default(),
                destination_bridge: self.destination_bridge.unwrap_or_default(),
                destination_link_first_leg: unbox(self.destination_link_first_leg),
                destination_link_second_leg: unbox(self.destination_link_second_leg),
                destination_threeway_channel: unbox(self.destination_threeway_channel),
            })),
            "StasisStart" => AriEvent::StasisStart {
                channel: unbox(self.channel).ok_or_else(|| missing("channel"))?,
                args: self.args.unwrap_or_default(),
                replace_channel: unbox(self.replace_channel),
            },
            "StasisEnd" => AriEvent::StasisEnd { channel: unbox(self.channel).ok_or_else(|| missing("channel"))? },
            "DeviceStateChanged" => {
                AriEvent::DeviceStateChanged { device_state: self.device_state.ok_or_else(|| missing("device_state"))? }
            }
            "EndpointStateChange" => {
                AriEvent::EndpointStateChange { endpoint: self.endpoint.ok_or_else(|| missing("endpoint"))? }
            }
            "RecordingStarted" => {
                AriEvent::RecordingStarted { recording: self.recording.ok_or_else(|| missing("recording"))? }
            }
            "RecordingFinished" => {
                AriEvent::RecordingFinished { recording: self.recording.ok_or_else(|| missing("recording"))? }
            }
            "RecordingFailed" => {
                AriEvent::RecordingFailed { recording: self.recording.ok_or_else(|| missing("recording"))? }
            }
            "ApplicationReplaced" => {
                AriEvent::ApplicationReplaced { application: self.application.unwrap_or_default() }
            }
            "ChannelUserevent" => AriEvent::ChannelUserevent {
                eventname: self.eventname.ok_or_else(|| missing("eventname"))?,
                userevent: self.userevent.unwrap_or_default(),
            },
            _ => AriEvent::Other { kind: kind.to_string() },
        };
        Ok(event)
    }
}

/// The message keeps its channels boxed, so the message itself stays small while serde fills
/// and moves it: most messages carry one channel of the eleven it may hold.
fn unbox(channel: Option<Box<Channel>>) -> Option<Channel> {
    channel.map(|channel| *channel)
}

/// Reads Asterisk's `2026-11-21T04:58:16.310+0000` (and RFC 3339 variants) as epoch milliseconds.
pub(crate) fn parse_ari_timestamp(text: &str) -> Option<EpochMillis> {
    parse_fixed_timestamp(text).or_else(|| text.parse::<jiff::Timestamp>().ok().map(|ts| ts.as_millisecond()))
}

/// The fast path for the exact shape Asterisk writes: `YYYY-MM-DDTHH:MM:SS.mmm+HHMM`.
fn parse_fixed_timestamp(text: &str) -> Option<EpochMillis> {
    let b = text.as_bytes();
    if b.len() != 28 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'.'
    {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let mut value = 0i64;
        for &digit in &b[range] {
            if !digit.is_ascii_digit() {
                return None;
            }
            value = value * 10 + i64::from(digit - b'0');
        }
        Some(value)
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second, milli) = (num(11..13)?, num(14..16)?, num(17..19)?, num(20..23)?);
    let sign = match b[23] {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (offset_hours, offset_minutes) = (num(24..26)?, num(26..28)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    if offset_hours > 23 || offset_minutes > 59 {
        return None;
    }
    let days = days_from_civil(year, month, day);
    let local_seconds = days * 86_400 + hour * 3600 + minute * 60 + second;
    let offset_seconds = sign * (offset_hours * 3600 + offset_minutes * 60);
    Some((local_seconds - offset_seconds) * 1000 + milli)
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_index = (month + 9) % 12;
    let day_of_year = (153 * month_index + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asterisk_timestamp_matches_jiff() {
        let ours = parse_ari_timestamp("2026-11-21T04:58:16.310+0000");
        let reference: jiff::Timestamp = "2026-11-21T04:58:16.310Z".parse().expect("valid");
        assert_eq!(ours, Some(reference.as_millisecond()));
        let offset = parse_ari_timestamp("2026-11-21T07:58:16.310+0300");
        assert_eq!(offset, Some(reference.as_millisecond()));
        assert_eq!(parse_ari_timestamp("2024-02-29T00:00:00.000+0000"), Some(1_709_164_800_000));
    }

    #[test]
    fn rfc3339_timestamps_are_accepted_and_garbage_is_not() {
        assert_eq!(parse_ari_timestamp("1970-01-01T00:00:01Z"), Some(1000));
        assert_eq!(parse_ari_timestamp("yesterday"), None);
        assert_eq!(parse_ari_timestamp("2026-13-21T04:58:16.310+0000"), None);
        // Days a month does not have, and offsets no clock has.
        assert_eq!(parse_ari_timestamp("2024-02-31T00:00:00.000+0000"), None);
        assert_eq!(parse_ari_timestamp("2023-02-29T00:00:00.000+0000"), None);
        assert_eq!(parse_ari_timestamp("2026-04-31T00:00:00.000+0000"), None);
        assert_eq!(parse_ari_timestamp("2026-11-21T04:58:16.310+2460"), None);
        assert!(parse_ari_timestamp("2000-02-29T00:00:00.000+0000").is_some());
        // Every day of a leap and a common year agrees with jiff.
        for (year, days) in [(2024, 366), (2026, 365)] {
            let first = jiff::civil::date(year, 1, 1);
            for offset in 0..days {
                let date = first.checked_add(jiff::Span::new().days(offset)).expect("in range");
                let text = format!("{date}T12:34:56.789+0000");
                let reference = date.at(12, 34, 56, 789_000_000).to_zoned(jiff::tz::TimeZone::UTC).expect("utc");
                assert_eq!(parse_ari_timestamp(&text), Some(reference.timestamp().as_millisecond()), "{text}");
            }
        }
    }

    #[test]
    fn unknown_types_and_fields_are_counted_not_fatal() {
        let mut parser = EventParser::new();
        let event = parser
            .parse(r#"{"type":"ChannelTalkingStarted","timestamp":"2026-11-21T04:58:16.310+0000","novel":1}"#)
            .expect("tolerated");
        assert_eq!(event.event, AriEvent::Other { kind: "ChannelTalkingStarted".into() });
        assert_eq!(parser.stats.unknown_types, 1);
        assert_eq!(parser.stats.unknown_fields, 1);
    }

    #[test]
    fn the_live_parser_reads_every_recorded_message_as_the_counting_one_does() {
        let traces = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/traces");
        const READ: &[&str] = &["MIXMONITOR_FILENAME"];
        let (mut counting, mut live) = (EventParser::new(), EventParser::live(READ));
        let (mut compared, mut without_channel) = (0, 0);
        for entry in std::fs::read_dir(&traces).expect("fixtures") {
            let path = entry.expect("entry").path();
            let name = path.file_name().and_then(|name| name.to_str()).unwrap_or_default().to_string();
            if !name.ends_with(".jsonl") || name.ends_with(".expected.jsonl") {
                continue;
            }
            for line in std::fs::read_to_string(&path).expect("trace").lines().filter(|line| !line.is_empty()) {
                let mut expected = counting.parse(line);
                // The live parser skips the channel of a variable nobody reads.
                if let Ok(TimedEvent { event: AriEvent::ChannelVarset { channel, variable, .. }, .. }) = &mut expected {
                    if !READ.contains(&variable.as_str()) && channel.take().is_some() {
                        without_channel += 1;
                    }
                }
                assert_eq!(live.parse(line), expected, "{name}: {line}");
                compared += 1;
            }
        }
        assert!(compared > 7_000, "{compared}");
        assert!(without_channel > compared / 3, "{without_channel} of {compared}");
        assert_eq!(live.stats.unknown_fields, 0);
        assert!(counting.stats.unknown_fields > 0);
    }

    #[test]
    fn the_live_parser_skips_only_the_channels_nobody_reads() {
        let mut live = EventParser::live(&["MIXMONITOR_FILENAME"]);
        let channel = r#"{"id":"1.1","name":"PJSIP/101-00000001","state":"Up","caller":{"name":"","number":"101"}}"#;
        let stamp = "2026-11-21T04:58:16.310+0000";
        let set = |variable: &str| {
            format!(
                r#"{{"variable":"{variable}","value":"v","type":"ChannelVarset","timestamp":"{stamp}","channel":{channel}}}"#
            )
        };
        let channel_of = |parsed: Result<TimedEvent, ParseError>| match parsed {
            Ok(TimedEvent { event: AriEvent::ChannelVarset { channel, .. }, .. }) => channel.map(|c| c.id),
            other => panic!("a ChannelVarset, not {other:?}"),
        };
        assert_eq!(channel_of(live.parse(&set("MIXMONITOR_FILENAME"))), Some("1.1".to_string()));
        assert_eq!(channel_of(live.parse(&set("__FROM_DID"))), None);
        // Another order of fields is read the full way, channel and all.
        let reordered = format!(
            r#"{{"type":"ChannelVarset","variable":"X","value":"v","timestamp":"{stamp}","channel":{channel}}}"#
        );
        assert_eq!(channel_of(live.parse(&reordered)), Some("1.1".to_string()));
        // What the short way cannot vouch for gets the full way's verdict.
        let bad_time = r#"{"variable":"X","value":"v","type":"ChannelVarset","timestamp":"soon"}"#;
        assert_eq!(live.parse(bad_time), EventParser::new().parse(bad_time));
        assert!(matches!(live.parse(bad_time), Err(ParseError::BadTimestamp { .. })));
        let truncated =
            r#"{"variable":"X","value":"v","type":"ChannelVarset","timestamp":"2026-11-21T04:58:16.310+0000","chan"#;
        assert!(matches!(live.parse(truncated), Err(ParseError::Json(_))));
        let not_a_varset =
            format!(r#"{{"variable":"X","type":"ChannelStateChange","timestamp":"{stamp}","channel":{channel}}}"#);
        assert!(matches!(live.parse(&not_a_varset), Ok(TimedEvent { event: AriEvent::ChannelStateChange { .. }, .. })));
        assert_eq!(live.stats.malformed, 3);
        assert_eq!(live.stats.events, 4);
    }

    #[test]
    fn a_user_event_keeps_its_name_and_variables() {
        let mut parser = EventParser::new();
        let text = r#"{"type":"ChannelUserevent","timestamp":"2026-11-21T04:58:16.310+0000","eventname":"deskhook-resync","userevent":{"generation":"3"},"application":"deskhook"}"#;
        let event = parser.parse(text).expect("parses");
        let AriEvent::ChannelUserevent { eventname, userevent } = event.event else { panic!("a user event") };
        assert_eq!(eventname, "deskhook-resync");
        assert_eq!(userevent.get("generation").and_then(|v| v.as_str()), Some("3"));
        assert_eq!(parser.stats.unknown_fields, 0);
        let nameless = r#"{"type":"ChannelUserevent","timestamp":"2026-11-21T04:58:16.310+0000","userevent":{}}"#;
        assert!(matches!(parser.parse(nameless), Err(ParseError::MissingField { field: "eventname", .. })));
    }

    #[test]
    fn escaped_strings_read_the_same_as_plain_ones() {
        // What the parser borrows from the message must still be read when JSON escapes force a copy.
        let plain = r#"{"type":"ChannelDialplan","timestamp":"2026-11-21T04:58:16.310+0000","dialplan_app":"Queue","dialplan_app_data":"support,t","channel":{"id":"1.1","name":"PJSIP/trunk-00000001","state":"Ring","caller":{"name":"","number":"79161234567"},"creationtime":"2026-11-21T04:58:15.000+0000","dialplan":{"context":"from-pstn","exten":"100","priority":3,"app_name":"Queue","app_data":"support,t"}}}"#;
        let escaped = r#"{"type":"Channel\u0044ialplan","timestamp":"2026-11-21T04:58:16.310\u002b0000","dialplan_app":"Qu\u0065ue","dialplan_app_data":"support\u002ct","channel":{"id":"1.1","name":"PJSIP/trunk-00000001","state":"R\u0069ng","caller":{"name":"","number":"79161234567"},"creationtime":"2026-11-21T04:58:15.000\u002b0000","dialplan":{"context":"from-pstn","exten":"100","priority":3,"app_name":"Q\u0075eue","app_data":"support\u002ct"}}}"#;
        for parser in [EventParser::new(), EventParser::live(&["MIXMONITOR_FILENAME"])].iter_mut() {
            let expected = parser.parse(plain).expect("plain message parses");
            assert_eq!(parser.parse(escaped).expect("escaped message parses"), expected);
            let AriEvent::ChannelDialplan { channel, app } = expected.event else { panic!("a dialplan event") };
            assert_eq!(app, DialplanApp::Queue { name: "support".into() });
            assert_eq!(channel.dialplan.app, DialplanApp::Queue { name: "support".into() });
            assert_eq!(channel.state, crate::ari::model::ChannelState::Ring);
            assert_eq!(channel.creationtime, Some(expected.at - 1310));
        }
    }

    #[test]
    fn malformed_messages_are_errors() {
        let mut parser = EventParser::new();
        assert!(matches!(parser.parse(r#"{"type":"Dial","timest"#), Err(ParseError::Json(_))));
        assert_eq!(parser.parse(r#"{"timestamp":"2026-11-21T04:58:16.310+0000"}"#), Err(ParseError::MissingType));
        assert!(matches!(
            parser.parse(r#"{"type":"ChannelCreated","timestamp":"2026-11-21T04:58:16.310+0000"}"#),
            Err(ParseError::MissingField { field: "channel", .. })
        ));
        assert_eq!(parser.stats.malformed, 3);
    }
}
