//! `[[sinks]]`: the destinations every call is delivered to (SPEC §7), checked key by key so
//! that every mistake reads `config.toml: [sinks.NAME] key: what is wrong, what is expected`.
//!
//! A sink is a `name`, a `kind` with the keys of that kind, and optionally the delivery keys of
//! `[helpdesk]` (retention, backoff, parallelism, size cap) for its own queue.

use std::collections::BTreeMap;
use std::fmt;

use super::{check_http_url, redacted_url, ConfigError, HelpdeskConfig};

/// The kinds this version delivers to.
pub const SINK_KINDS: [&str; 3] = ["omnidesk", "json", "zammad"];
/// Kinds SPEC §7 names that this version cannot deliver to yet.
const LATER_KINDS: [&str; 3] = ["bitrix24", "amocrm", "okdesk"];
/// Delivery keys a sink may set for its own queue (as in `[helpdesk]`).
const DELIVERY_KEYS: [&str; 9] = [
    "retention",
    "connect_timeout",
    "request_timeout",
    "max_backoff",
    "min_backoff",
    "max_parallel",
    "outbox_max_rows",
    "client_error_tries",
    "keep_delivered",
];

/// One checked destination.
#[derive(Clone)]
pub struct SinkConfig {
    /// Unique; names the sink in logs, metrics and `deskhook outbox --sink`.
    pub name: String,
    pub destination: Destination,
    /// The sink's own queue: retention, backoff, parallelism, size cap (its `webhook_url` is
    /// the omnidesk URL, empty for other kinds).
    pub delivery: HelpdeskConfig,
}

/// Where a sink sends and in which form.
#[derive(Clone, PartialEq, Eq)]
pub enum Destination {
    /// The Omnidesk/Deskie "Asterisk" webhook (SPEC §3); the URL is in `delivery.webhook_url`.
    Omnidesk,
    /// The JSON call events and summary (SPEC §7), signed with `secret` when it is set.
    Json { url: String, secret: String, summary: bool, lifecycle: bool, recordings: JsonRecordings },
    /// Zammad's generic CTI API; the token is the last part of `url`.
    Zammad { url: String, users: BTreeMap<String, String> },
}

/// What a `json` sink does with a call's recordings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonRecordings {
    /// One `multipart/form-data` POST per file: part `summary` (the JSON), part `record`.
    Upload,
    None,
}

impl SinkConfig {
    /// `[helpdesk]` as the `omnidesk` sink named `helpdesk`.
    pub fn helpdesk(helpdesk: &HelpdeskConfig) -> SinkConfig {
        SinkConfig { name: "helpdesk".into(), destination: Destination::Omnidesk, delivery: helpdesk.clone() }
    }

    pub fn kind(&self) -> &'static str {
        match self.destination {
            Destination::Omnidesk => "omnidesk",
            Destination::Json { .. } => "json",
            Destination::Zammad { .. } => "zammad",
        }
    }

    /// The address requests go to (secrets included: never log it, use [`SinkConfig::host`]).
    pub fn url(&self) -> &str {
        match &self.destination {
            Destination::Omnidesk => &self.delivery.webhook_url,
            Destination::Json { url, .. } | Destination::Zammad { url, .. } => url,
        }
    }

    /// Scheme, host and port of [`SinkConfig::url`]: what logs and errors may show.
    pub fn host(&self) -> String {
        redacted_url(self.url())
    }
}

impl fmt::Debug for SinkConfig {
    // URL paths, tokens and HMAC keys are secrets: only the host may be shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SinkConfig")
            .field("name", &self.name)
            .field("kind", &self.kind())
            .field("host", &self.host())
            .finish_non_exhaustive()
    }
}

/// Checks every `[[sinks]]` table; `helpdesk` is `[helpdesk]` (its sink takes the name `helpdesk`).
pub(super) fn parse(
    tables: &[toml::Table],
    helpdesk: &HelpdeskConfig,
    file: &str,
) -> Result<Vec<SinkConfig>, ConfigError> {
    let mut sinks: Vec<SinkConfig> = Vec::with_capacity(tables.len());
    for (index, table) in tables.iter().enumerate() {
        let sink = parse_one(table, index, file)?;
        let taken = sinks.iter().any(|other| other.name == sink.name)
            || (sink.name == "helpdesk" && !helpdesk.webhook_url.is_empty());
        if taken {
            return Err(ConfigError::new(
                file,
                &format!("sinks.{}", sink.name),
                "name",
                format!(
                    "{:?} is used by two sinks ([helpdesk] webhook_url is the sink \"helpdesk\"), expected a unique name",
                    sink.name
                ),
            ));
        }
        sinks.push(sink);
    }
    Ok(sinks)
}

fn parse_one(table: &toml::Table, index: usize, file: &str) -> Result<SinkConfig, ConfigError> {
    let unnamed = format!("sinks #{}", index + 1);
    let name = match table.get("name") {
        None => {
            return Err(ConfigError::new(file, &unnamed, "name", "is missing, expected a unique name such as \"crm\""))
        }
        Some(toml::Value::String(name)) if is_sink_name(name) => name.clone(),
        Some(other) => {
            return Err(ConfigError::new(
                file,
                &unnamed,
                "name",
                format!("{other} is not a sink name, expected letters, digits, '-' or '_' such as \"crm\""),
            ))
        }
    };
    let section = format!("sinks.{name}");
    let err = |key: &str, message: String| ConfigError::new(file, &section, key, message);
    let expected_kinds = "expected \"omnidesk\", \"json\" or \"zammad\"";
    let kind = match table.get("kind") {
        None => return Err(err("kind", format!("is missing, {expected_kinds}"))),
        Some(toml::Value::String(kind)) if SINK_KINDS.contains(&kind.as_str()) => kind.clone(),
        Some(toml::Value::String(kind)) if LATER_KINDS.contains(&kind.as_str()) => {
            return Err(err("kind", format!("{kind:?} is not supported by this version of deskhook, {expected_kinds}")))
        }
        Some(other) => return Err(err("kind", format!("{other} is not a kind of sink, {expected_kinds}"))),
    };
    let own_keys: &[&str] = match kind.as_str() {
        "omnidesk" => &["webhook_url"],
        "json" => &["url", "secret", "events", "recordings"],
        _ => &["url", "users"],
    };
    if let Some(unknown) = table
        .keys()
        .find(|key| !["name", "kind"].contains(&key.as_str()) && !own_keys.contains(&key.as_str()))
        .filter(|key| !DELIVERY_KEYS.contains(&key.as_str()))
    {
        let mut expected: Vec<&str> = own_keys.to_vec();
        expected.extend(DELIVERY_KEYS);
        return Err(err(unknown, format!("is not a key of a {kind} sink, expected one of {}", expected.join(", "))));
    }
    let mut delivery_table = toml::Table::new();
    for key in DELIVERY_KEYS.iter().chain(if kind == "omnidesk" { &["webhook_url"][..] } else { &[][..] }) {
        if let Some(value) = table.get(*key) {
            delivery_table.insert((*key).to_string(), value.clone());
        }
    }
    // Each key alone first, so that a bad value is reported under its own key.
    for (key, value) in &delivery_table {
        let single = toml::Table::from_iter([(key.clone(), value.clone())]);
        if let Err(error) = toml::Value::Table(single).try_into::<HelpdeskConfig>() {
            return Err(err(key, error.message().trim().replace('\n', " ")));
        }
    }
    let delivery: HelpdeskConfig = toml::Value::Table(delivery_table)
        .try_into()
        .map_err(|error: toml::de::Error| err("-", error.message().trim().replace('\n', " ")))?;
    delivery.validate_delivery(file, &section)?;
    let url = |key: &str, what: &str| -> Result<String, ConfigError> {
        match table.get(key) {
            None => Err(err(key, format!("is missing, expected {what}"))),
            Some(toml::Value::String(url)) => match check_http_url(url) {
                Ok(_) => Ok(url.clone()),
                Err(problem) => Err(err(key, format!("{problem}, expected {what}"))),
            },
            Some(other) => Err(err(key, format!("{} is not a URL, expected {what}", other.type_str()))),
        }
    };
    let destination = match kind.as_str() {
        "omnidesk" => {
            url("webhook_url", "the helpdesk's https:// webhook address")?;
            Destination::Omnidesk
        }
        "json" => {
            let url = url("url", "the http(s):// address that receives the calls")?;
            let secret = match table.get("secret") {
                None => String::new(),
                Some(toml::Value::String(secret)) if !secret.is_empty() => secret.clone(),
                Some(_) => {
                    return Err(err(
                        "secret",
                        "is not a usable key, expected a non-empty string (the HMAC-SHA256 key)".into(),
                    ))
                }
            };
            let events = strings(table.get("events"), &["summary"]).map_err(|problem| {
                err("events", format!("{problem}, expected a list of \"summary\" and/or \"lifecycle\""))
            })?;
            if events.is_empty() {
                return Err(err("events", "is empty, expected a list of \"summary\" and/or \"lifecycle\"".into()));
            }
            if let Some(unknown) = events.iter().find(|event| !["summary", "lifecycle"].contains(&event.as_str())) {
                return Err(err(
                    "events",
                    format!("{unknown:?} is not a kind of event, expected \"summary\" and/or \"lifecycle\""),
                ));
            }
            let recordings = match table.get("recordings") {
                None => JsonRecordings::Upload,
                Some(toml::Value::String(mode)) if mode == "upload" => JsonRecordings::Upload,
                Some(toml::Value::String(mode)) if mode == "none" => JsonRecordings::None,
                Some(other) => {
                    return Err(err("recordings", format!("{other} is not a mode, expected \"upload\" or \"none\"")))
                }
            };
            Destination::Json {
                url,
                secret,
                summary: events.iter().any(|event| event == "summary"),
                lifecycle: events.iter().any(|event| event == "lifecycle"),
                recordings,
            }
        }
        _ => {
            let url = url("url", "Zammad's https://HOST/api/v1/cti/TOKEN address (Admin → Integrations → CTI)")?;
            if url.trim_end_matches('/').rsplit('/').nth(1).is_none_or(|part| part != "cti") {
                return Err(err(
                    "url",
                    format!(
                        "{} does not end in /api/v1/cti/TOKEN, expected the endpoint Zammad shows under Admin → \
                         Integrations → CTI",
                        redacted_url(&url)
                    ),
                ));
            }
            let users = match table.get("users") {
                None => BTreeMap::new(),
                Some(toml::Value::Table(users)) => {
                    let mut map = BTreeMap::new();
                    for (extension, user) in users {
                        match user {
                            toml::Value::String(user) if !user.trim().is_empty() => {
                                map.insert(extension.clone(), user.clone());
                            }
                            _ => {
                                return Err(err(
                                    "users",
                                    format!("{extension:?} has no user name, expected {{ \"101\" = \"Alice Smith\" }}"),
                                ))
                            }
                        }
                    }
                    map
                }
                Some(other) => {
                    return Err(err(
                        "users",
                        format!("{} is not a table, expected {{ \"101\" = \"Alice Smith\" }}", other.type_str()),
                    ))
                }
            };
            Destination::Zammad { url, users }
        }
    };
    Ok(SinkConfig { name, destination, delivery })
}

fn is_sink_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A list of strings (or `default` when absent).
fn strings(value: Option<&toml::Value>, default: &[&str]) -> Result<Vec<String>, String> {
    match value {
        None => Ok(default.iter().map(|s| s.to_string()).collect()),
        Some(toml::Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                toml::Value::String(text) => Ok(text.clone()),
                other => Err(format!("{other} is not a string")),
            })
            .collect(),
        Some(other) => Err(format!("{} is not a list", other.type_str())),
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn error_of(toml: &str) -> String {
        Config::from_toml(toml, "config.toml").expect_err("refused").to_string()
    }

    #[test]
    fn the_helpdesk_webhook_is_the_omnidesk_sink_named_helpdesk_before_the_others() {
        let config = Config::from_toml(
            "[helpdesk]\nwebhook_url = \"https://desk.example/webhooks/asterisk/cc75\"\n\
             [[sinks]]\nname = \"warehouse\"\nkind = \"json\"\nurl = \"https://dw.example/calls\"\nsecret = \"k\"\n\
             events = [\"summary\", \"lifecycle\"]\nmax_parallel = 2\n\
             [[sinks]]\nname = \"desk\"\nkind = \"zammad\"\nurl = \"https://z.example/api/v1/cti/TOKEN\"\n\
             users = { \"101\" = \"Alice Smith\" }\n",
            "config.toml",
        )
        .expect("valid");
        let all = config.destinations();
        let names: Vec<(&str, &str)> = all.iter().map(|sink| (sink.name.as_str(), sink.kind())).collect();
        assert_eq!(names, [("helpdesk", "omnidesk"), ("warehouse", "json"), ("desk", "zammad")]);
        assert_eq!(all[0].url(), "https://desk.example/webhooks/asterisk/cc75");
        assert_eq!(all[1].delivery.max_parallel, 2);
        assert!(matches!(
            &all[1].destination,
            super::Destination::Json { summary: true, lifecycle: true, recordings: super::JsonRecordings::Upload, .. }
        ));
        let shown = format!("{all:?}");
        assert!(!shown.contains("cc75") && !shown.contains("TOKEN") && !shown.contains("/calls"), "{shown}");
    }

    #[test]
    fn without_any_sink_the_helpdesk_sink_only_logs() {
        let config = Config::from_toml("", "config.toml").expect("valid");
        let all = config.destinations();
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].name.as_str(), all[0].url()), ("helpdesk", ""));
        let only_json =
            Config::from_toml("[[sinks]]\nname = \"j\"\nkind = \"json\"\nurl = \"http://127.0.0.1:9/x\"\n", "c")
                .expect("valid");
        assert_eq!(only_json.destinations().iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["j"]);
    }

    #[test]
    fn mistakes_name_the_sink_and_the_key() {
        let cases = [
            ("[[sinks]]\nname = \"x\"\nkind = \"fax\"\n", "config.toml: [sinks.x] kind: "),
            ("[[sinks]]\nname = \"x\"\n", "config.toml: [sinks.x] kind: is missing"),
            ("[[sinks]]\nname = \"x\"\nkind = \"bitrix24\"\n", "not supported by this version"),
            ("[[sinks]]\nkind = \"json\"\n", "config.toml: [sinks #1] name: is missing"),
            ("[[sinks]]\nname = \"a b\"\nkind = \"json\"\n", "config.toml: [sinks #1] name: "),
            ("[[sinks]]\nname = \"w\"\nkind = \"json\"\n", "config.toml: [sinks.w] url: is missing"),
            ("[[sinks]]\nname = \"w\"\nkind = \"json\"\nurl = \"ftp://x/y\"\n", "config.toml: [sinks.w] url: "),
            (
                "[[sinks]]\nname = \"w\"\nkind = \"json\"\nurl = \"https://x/y\"\nevents = [\"all\"]\n",
                "config.toml: [sinks.w] events: \"all\"",
            ),
            (
                "[[sinks]]\nname = \"w\"\nkind = \"json\"\nurl = \"https://x/y\"\nrecordings = \"yes\"\n",
                "config.toml: [sinks.w] recordings: ",
            ),
            (
                "[[sinks]]\nname = \"w\"\nkind = \"json\"\nurl = \"https://x/y\"\nwebhook_url = \"https://x\"\n",
                "config.toml: [sinks.w] webhook_url: is not a key of a json sink",
            ),
            (
                "[[sinks]]\nname = \"w\"\nkind = \"json\"\nurl = \"https://x/y\"\nmax_parallel = 0\n",
                "config.toml: [sinks.w] max_parallel: is 0",
            ),
            (
                "[[sinks]]\nname = \"w\"\nkind = \"json\"\nurl = \"https://x/y\"\nretention = \"soon\"\n",
                "config.toml: [sinks.w] retention: ",
            ),
            ("[[sinks]]\nname = \"z\"\nkind = \"zammad\"\nurl = \"https://z/api\"\n", "[sinks.z] url: "),
            (
                "[[sinks]]\nname = \"z\"\nkind = \"zammad\"\nurl = \"https://z/api/v1/cti/T\"\nusers = { \"101\" = 5 }\n",
                "config.toml: [sinks.z] users: \"101\"",
            ),
            (
                "[[sinks]]\nname = \"a\"\nkind = \"json\"\nurl = \"https://x/y\"\n\
                 [[sinks]]\nname = \"a\"\nkind = \"zammad\"\nurl = \"https://z/api/v1/cti/T\"\n",
                "config.toml: [sinks.a] name: \"a\" is used by two sinks",
            ),
            (
                "[helpdesk]\nwebhook_url = \"https://d/w\"\n[[sinks]]\nname = \"helpdesk\"\nkind = \"json\"\n\
                 url = \"https://x/y\"\n",
                "config.toml: [sinks.helpdesk] name: \"helpdesk\" is used by two sinks",
            ),
        ];
        for (toml, expected) in cases {
            let error = error_of(toml);
            assert!(error.contains(expected), "{toml}\n→ {error}\nexpected {expected:?}");
        }
    }

    #[test]
    fn errors_never_show_a_secret() {
        let error =
            error_of("[[sinks]]\nname = \"z\"\nkind = \"zammad\"\nurl = \"https://z.example/hooks/SECRET-TOKEN\"\n");
        assert!(!error.contains("SECRET-TOKEN"), "{error}");
    }
}
