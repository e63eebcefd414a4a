//! ARI's resource models (channel, bridge, endpoint, recording) as deskhook reads them.
//!
//! Only the fields deskhook uses are typed; everything else Asterisk sends is ignored
//! (and counted by the event parser). Shapes follow `shared/ari-api/*.json`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

/// A caller id or connected line: `{"name": "...", "number": "..."}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct CallerId {
    pub name: String,
    pub number: String,
}

/// Where a channel is in the dialplan.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct DialplanCep {
    pub context: String,
    pub exten: String,
    pub priority: i64,
    pub app_name: String,
    pub app_data: String,
}

/// ARI `Channel`. Its `id` is Asterisk's uniqueid.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Channel {
    pub id: String,
    pub name: String,
    pub state: String,
    pub caller: CallerId,
    pub connected: CallerId,
    pub dialplan: DialplanCep,
    pub creationtime: String,
    /// Present only when ari.conf `channelvars` is set; `CHANNEL(linkedid)` is the useful one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channelvars: Option<HashMap<String, String>>,
}

impl Channel {
    /// The linkedid exported through ari.conf `channelvars = CHANNEL(linkedid)`, when present and set.
    pub fn exported_linkedid(&self) -> Option<&str> {
        self.channelvars
            .as_ref()
            .and_then(|vars| vars.get("CHANNEL(linkedid)"))
            .map(String::as_str)
            .filter(|value| !value.is_empty())
    }
}

/// ARI `Bridge`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Bridge {
    pub id: String,
    pub technology: String,
    pub bridge_type: String,
    pub bridge_class: String,
    pub channels: Vec<String>,
    pub creationtime: String,
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
pub struct AsteriskInfo {
    pub system: AsteriskSystem,
    pub status: AsteriskStatus,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct AsteriskSystem {
    pub version: String,
    pub entity_id: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct AsteriskStatus {
    pub startup_time: String,
    pub last_reload_time: String,
}

/// The parts of a channel name: `PJSIP/101-0000000b` → (`PJSIP`, `101`).
pub fn split_channel_name(name: &str) -> Option<(&str, &str)> {
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
