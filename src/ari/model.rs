//! ARI's resource models (channel, bridge, endpoint, recording) as deskhook reads them.
//!
//! Only the fields deskhook uses are typed; everything else Asterisk sends is ignored
//! (and counted by the event parser). Shapes follow `shared/ari-api/*.json`.

use std::borrow::Cow;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::ari::events::EpochMillis;

/// A caller id or connected line: `{"name": "...", "number": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct CallerId {
    pub name: String,
    pub number: String,
}

/// Where a channel is in the dialplan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DialplanCep {
    pub context: String,
    pub exten: String,
    pub priority: i64,
    /// The application it runs (`app_name` with what the engine needs of `app_data`).
    pub app: DialplanApp,
}

/// `DialplanCep` as ARI writes it. What is only looked at (the application) is borrowed from
/// the message, not copied: almost every message carries a channel and so one of these.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawDialplanCep<'a> {
    context: String,
    exten: String,
    priority: i64,
    #[serde(borrow)]
    app_name: Cow<'a, str>,
    #[serde(borrow)]
    app_data: Cow<'a, str>,
}

impl<'de> Deserialize<'de> for DialplanCep {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        RawDialplanCep::deserialize(deserializer).map(DialplanCep::from)
    }
}

impl From<RawDialplanCep<'_>> for DialplanCep {
    fn from(raw: RawDialplanCep<'_>) -> Self {
        DialplanCep {
            context: raw.context,
            exten: raw.exten,
            priority: raw.priority,
            app: DialplanApp::of(&raw.app_name, &raw.app_data),
        }
    }
}

/// The dialplan application a channel runs, as far as telling calls apart needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum DialplanApp {
    /// None yet (a channel just created), or not said.
    #[default]
    Nothing,
    /// `Queue(name,…)`: the channel waits in queue `name` (empty when the data names none).
    Queue { name: String },
    /// A leg `Dial()` created (`AppDial`), or one originated onto an "(Outgoing Line)".
    DialedLeg,
    /// A queue member's leg, created by `Queue()` (`AppQueue`).
    QueueMemberLeg,
    /// Any other application, by name.
    Other(String),
}

impl DialplanApp {
    /// `app_name` and `app_data` as ARI gives them (names in any case).
    pub fn of(app_name: &str, app_data: &str) -> DialplanApp {
        if app_name.eq_ignore_ascii_case("Queue") {
            let name = app_data.split(',').next().unwrap_or_default().trim().to_string();
            DialplanApp::Queue { name }
        } else if app_name.eq_ignore_ascii_case("AppQueue") {
            DialplanApp::QueueMemberLeg
        } else if app_name.eq_ignore_ascii_case("AppDial") || app_data == "(Outgoing Line)" {
            DialplanApp::DialedLeg
        } else if app_name.is_empty() {
            DialplanApp::Nothing
        } else {
            DialplanApp::Other(app_name.to_string())
        }
    }

    /// A channel created by Dial/Queue rather than by a phone or carrier calling in.
    pub(crate) fn is_dialed_leg(&self) -> bool {
        matches!(self, DialplanApp::DialedLeg | DialplanApp::QueueMemberLeg)
    }
}

/// ARI's channel states (`Channel.state`); a state this version does not know is kept by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ChannelState {
    #[default]
    Down,
    Rsrvd,
    OffHook,
    Dialing,
    /// An inbound channel ringing deskhook's side (a call coming in).
    Ring,
    /// The far end is ringing (an outbound leg).
    Ringing,
    Up,
    Busy,
    DialingOffhook,
    PreRing,
    Unknown,
    Other(String),
}

/// A string read from a message, borrowed from it when it has no escapes: for what is only
/// looked at and then dropped (a state's name, a time), so it costs no allocation.
#[derive(Deserialize)]
struct BorrowedText<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'de> Deserialize<'de> for ChannelState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BorrowedText::deserialize(deserializer).map(|name| ChannelState::named(&name.0))
    }
}

impl From<String> for ChannelState {
    fn from(name: String) -> Self {
        ChannelState::named(&name)
    }
}

impl ChannelState {
    fn named(name: &str) -> Self {
        match name {
            "Down" => ChannelState::Down,
            "Rsrvd" => ChannelState::Rsrvd,
            "OffHook" => ChannelState::OffHook,
            "Dialing" => ChannelState::Dialing,
            "Ring" => ChannelState::Ring,
            "Ringing" => ChannelState::Ringing,
            "Up" => ChannelState::Up,
            "Busy" => ChannelState::Busy,
            "Dialing Offhook" => ChannelState::DialingOffhook,
            "Pre-ring" => ChannelState::PreRing,
            "Unknown" => ChannelState::Unknown,
            _ => ChannelState::Other(name.to_string()),
        }
    }

    /// A call coming in on this channel, not yet answered (`Ring`, `Pre-ring`).
    pub(crate) fn is_inbound_ringing(&self) -> bool {
        matches!(self, ChannelState::Ring | ChannelState::PreRing)
    }
}

/// ARI's `creationtime` read once into epoch milliseconds (`None`: absent or unreadable).
fn creation_time<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Option<EpochMillis>, D::Error> {
    let text: Option<BorrowedText> = Option::deserialize(deserializer)?;
    Ok(text.and_then(|text| crate::ari::events::parse_ari_timestamp(&text.0)))
}

/// ARI `Channel`. Its `id` is Asterisk's uniqueid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub state: ChannelState,
    pub caller: CallerId,
    pub connected: CallerId,
    pub dialplan: DialplanCep,
    #[serde(deserialize_with = "creation_time")]
    pub creationtime: Option<EpochMillis>,
    /// Present only when ari.conf `channelvars` is set; `CHANNEL(linkedid)` is the useful one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channelvars: Option<HashMap<String, String>>,
}

impl Channel {
    /// The linkedid exported through ari.conf `channelvars = CHANNEL(linkedid)`, when present and set.
    pub(crate) fn exported_linkedid(&self) -> Option<&str> {
        self.channelvars
            .as_ref()
            .and_then(|vars| vars.get("CHANNEL(linkedid)"))
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

/// ARI `Bridge`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Bridge {
    pub id: String,
    pub technology: String,
    pub bridge_type: String,
    pub bridge_class: String,
    pub channels: Vec<String>,
    #[serde(deserialize_with = "creation_time")]
    pub creationtime: Option<EpochMillis>,
}

/// ARI `Endpoint`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Endpoint {
    pub technology: String,
    pub resource: String,
    pub state: String,
    pub channel_ids: Vec<String>,
}

/// ARI `DeviceState`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct DeviceState {
    pub name: String,
    pub state: String,
}

/// ARI `LiveRecording`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct LiveRecording {
    pub name: String,
    pub format: String,
    pub state: String,
    pub target_uri: String,
    pub cause: String,
    pub duration: Option<i64>,
}

/// ARI `StoredRecording`: a finished recording in Asterisk's spool (`<name>.<format>`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct StoredRecording {
    pub name: String,
    pub format: String,
}

/// ARI `AsteriskInfo` (the parts `check` and the resync read).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub(crate) struct AsteriskInfo {
    pub system: AsteriskSystem,
    pub status: AsteriskStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub(crate) struct AsteriskSystem {
    pub version: String,
    pub entity_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub(crate) struct AsteriskStatus {
    pub startup_time: String,
    pub last_reload_time: String,
}

/// The parts of a channel name: `PJSIP/101-0000000b` → (`PJSIP`, `101`).
pub(crate) fn split_channel_name(name: &str) -> Option<(&str, &str)> {
    let (technology, rest) = name.split_once('/')?;
    if technology.eq_ignore_ascii_case("Local") {
        return Some((technology, rest));
    }
    // The unique suffix Asterisk appends is `-` + hex digits (PJSIP, SIP, IAX2, DAHDI use it).
    let resource = match rest.rfind('-') {
        Some(dash) if dash > 0 && rest[dash + 1..].bytes().all(|b| b.is_ascii_hexdigit()) && dash + 1 < rest.len() => {
            &rest[..dash]
        }
        _ => rest,
    };
    Some((technology, resource))
}
