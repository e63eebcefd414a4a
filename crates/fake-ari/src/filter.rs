//! An application's event type filter, as `PUT /applications/{name}/eventFilter` sets it
//! (Asterisk 13.26 / 16.3 and later; `shared/ari-api/applications.json`): the rules of
//! `stasis_app_event_allowed`, and the body checked as strictly as the resource documents it.

use serde_json::{json, Map, Value};

/// The allowed and disallowed event types of one application (empty lists: no filtering).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EventTypeFilter {
    pub allowed: Vec<String>,
    pub disallowed: Vec<String>,
}

impl EventTypeFilter {
    /// Disallowed wins; an empty allowed list allows everything.
    pub(crate) fn allows(&self, kind: &str) -> bool {
        if self.disallowed.iter().any(|disallowed| disallowed == kind) {
            return false;
        }
        self.allowed.is_empty() || self.allowed.iter().any(|allowed| allowed == kind)
    }

    /// Applies a request body: empty sets both lists empty; otherwise each list given
    /// replaces its own and the other stays. Anything but `{"allowed": [{"type": "…"}, …],
    /// "disallowed": […]}` is a 400 with the reason.
    pub(crate) fn update(&mut self, body: &[u8]) -> Result<(), String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            *self = Self::default();
            return Ok(());
        }
        let parsed: Value = serde_json::from_slice(body).map_err(|error| format!("invalid JSON body: {error}"))?;
        let Value::Object(fields) = parsed else { return Err("the filter must be a JSON object".into()) };
        if let Some(unknown) = fields.keys().find(|key| *key != "allowed" && *key != "disallowed") {
            return Err(format!("unknown filter key {unknown:?} (only \"allowed\" and \"disallowed\")"));
        }
        let allowed = fields.get("allowed").map(types_of).transpose()?;
        let disallowed = fields.get("disallowed").map(types_of).transpose()?;
        if let Some(allowed) = allowed {
            self.allowed = allowed;
        }
        if let Some(disallowed) = disallowed {
            self.disallowed = disallowed;
        }
        Ok(())
    }

    /// The `events_allowed` and `events_disallowed` fields of the `Application` model.
    pub(crate) fn to_json(&self, fields: &mut Map<String, Value>) {
        let list = |types: &[String]| Value::Array(types.iter().map(|kind| json!({ "type": kind })).collect());
        fields.insert("events_allowed".into(), list(&self.allowed));
        fields.insert("events_disallowed".into(), list(&self.disallowed));
    }
}

fn types_of(list: &Value) -> Result<Vec<String>, String> {
    let Value::Array(items) = list else { return Err("a filter list must be a JSON array".into()) };
    items
        .iter()
        .map(|item| match item {
            Value::Object(entry) if entry.len() == 1 => match entry.get("type") {
                Some(Value::String(kind)) if !kind.is_empty() => Ok(kind.clone()),
                _ => Err(format!("a filter entry needs a non-empty string \"type\", got {item}")),
            },
            _ => Err(format!("a filter entry must be {{\"type\": \"<event type>\"}}, got {item}")),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disallowed_wins_and_an_empty_allowed_list_allows_everything() {
        let mut filter = EventTypeFilter::default();
        assert!(filter.allows("ChannelVarset"));
        filter.update(br#"{"allowed":[{"type":"Dial"},{"type":"ChannelVarset"}]}"#).expect("valid");
        assert!(filter.allows("Dial"));
        assert!(!filter.allows("ChannelDialplan"));
        filter.update(br#"{"disallowed":[{"type":"ChannelVarset"}]}"#).expect("valid");
        assert_eq!(filter.allowed, vec!["Dial", "ChannelVarset"], "a list not given stays");
        assert!(!filter.allows("ChannelVarset"));
        filter.update(b"").expect("an empty body clears");
        assert_eq!(filter, EventTypeFilter::default());
    }

    #[test]
    fn malformed_filters_are_refused_and_change_nothing() {
        let mut filter = EventTypeFilter::default();
        filter.update(br#"{"allowed":[{"type":"Dial"}]}"#).expect("valid");
        for bad in [
            &br#"{"allow":[{"type":"Dial"}]}"#[..],
            br#"{"allowed":{"type":"Dial"}}"#,
            br#"{"allowed":["Dial"]}"#,
            br#"{"allowed":[{"name":"Dial"}]}"#,
            br#"{"allowed":[{"type":"Dial","extra":1}]}"#,
            br#"{"allowed":[{"type":""}]}"#,
            br#"[{"type":"Dial"}]"#,
            b"{",
        ] {
            assert!(filter.update(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        assert_eq!(filter.allowed, vec!["Dial"]);
    }
}
