//! `[[sinks]]`: the destinations every call is delivered to (SPEC §7), checked key by key so
//! that every mistake reads `config.toml: [sinks.NAME] key: what is wrong, what is expected`.
//!
//! A sink is a `name`, a `kind` with the keys of that kind, and optionally the delivery keys of
//! `[helpdesk]` (retention, backoff, parallelism, size cap) for its own queue.

use std::collections::BTreeMap;
use std::fmt;

use super::{check_http_url, redacted_url, ConfigError, HelpdeskConfig, Secret};

/// The kinds this version delivers to.
pub(crate) const SINK_KINDS: [&str; 5] = ["omnidesk", "json", "zammad", "bitrix24", "amocrm"];
/// Kinds SPEC §7 names that this version cannot deliver to yet.
const LATER_KINDS: [&str; 1] = ["okdesk"];
/// Bitrix24's documented limit per portal: 2 requests a second, bursts of 50.
pub(crate) const BITRIX24_RATE: (f64, u32) = (2.0, 50);
/// amoCRM's documented limit per account: 7 requests a second.
pub(crate) const AMOCRM_RATE: (f64, u32) = (7.0, 7);
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
#[derive(Clone, PartialEq)]
pub enum Destination {
    /// The Omnidesk/Deskie "Asterisk" webhook (SPEC §3); the URL is in `delivery.webhook_url`.
    Omnidesk,
    /// The JSON call events and summary (SPEC §7), signed with `secret` when it is set.
    Json { url: String, secret: Secret, summary: bool, lifecycle: bool, recordings: JsonRecordings },
    /// Zammad's generic CTI API; the token is the last part of `url`.
    Zammad { url: String, users: BTreeMap<String, String> },
    /// Bitrix24's telephony REST API: the call card, the call in the CRM, its recording.
    Bitrix24(Bitrix24Sink),
    /// amoCRM (Kommo) API v4: each call added to the client's card when it ends.
    Amocrm(AmocrmSink),
}

/// A `bitrix24` sink's keys.
#[derive(Clone, PartialEq)]
pub struct Bitrix24Sink {
    pub auth: Bitrix24Auth,
    /// Extension -> Bitrix24 user id; overrides what `user.get` says.
    pub users: BTreeMap<String, String>,
    /// The Bitrix24 user id a call is registered to when no extension rang (default: the
    /// webhook's own user).
    pub default_user: Option<String>,
    /// `CRM_CREATE`: a call from an unknown number creates a lead.
    pub crm_create: bool,
    /// `ADD_TO_CHAT`: the finished call is announced in the user's chat.
    pub add_to_chat: bool,
    /// Show the call card to each extension's user while it rings.
    pub show_cards: bool,
    /// Requests a second and burst, shared with the `/forward` resolver of the same portal.
    pub rate_per_sec: f64,
    pub burst: u32,
    /// Where a local application renews its token (an on-premise portal has its own).
    pub oauth_url: String,
}

/// How deskhook signs in to Bitrix24.
#[derive(Clone, PartialEq)]
pub enum Bitrix24Auth {
    /// An inbound webhook: `https://portal/rest/<user>/<token>/` (the token is the secret).
    Webhook { url: String },
    /// A local application's OAuth: the portal, the app's id and secret, and the refresh token
    /// it was installed with (renewed by deskhook, kept under `storage.dir`).
    App { portal_url: String, client_id: String, client_secret: Secret, refresh_token: Secret },
}

impl Bitrix24Auth {
    /// The webhook's own user id (`/rest/<user>/<token>/`), if it is a webhook.
    pub(crate) fn webhook_user(&self) -> Option<String> {
        match self {
            Bitrix24Auth::Webhook { url } => {
                let parsed = url::Url::parse(url).ok()?;
                let mut parts = parsed.path_segments()?.filter(|part| !part.is_empty());
                match (parts.next(), parts.next()) {
                    (Some("rest"), Some(user)) if user.bytes().all(|b| b.is_ascii_digit()) => Some(user.to_string()),
                    _ => None,
                }
            }
            Bitrix24Auth::App { .. } => None,
        }
    }
}

/// An `amocrm` sink's keys.
#[derive(Clone, PartialEq)]
pub struct AmocrmSink {
    pub base_url: String,
    /// The long-lived token.
    pub token: Secret,
    /// amoCRM user id -> extension, as for the `/forward` resolver.
    pub users: BTreeMap<String, String>,
    /// A call whose number matches no contact goes to Unsorted (a new incoming lead).
    pub unsorted: bool,
    /// The pipeline Unsorted leads land in (default: the account's main pipeline).
    pub pipeline_id: Option<u64>,
    pub rate_per_sec: f64,
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
    pub(crate) fn helpdesk(helpdesk: &HelpdeskConfig) -> SinkConfig {
        SinkConfig { name: "helpdesk".into(), destination: Destination::Omnidesk, delivery: helpdesk.clone() }
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self.destination {
            Destination::Omnidesk => "omnidesk",
            Destination::Json { .. } => "json",
            Destination::Zammad { .. } => "zammad",
            Destination::Bitrix24(_) => "bitrix24",
            Destination::Amocrm(_) => "amocrm",
        }
    }

    /// The address requests go to (secrets included: never log it, use [`SinkConfig::host`]).
    pub(crate) fn url(&self) -> &str {
        match &self.destination {
            Destination::Omnidesk => &self.delivery.webhook_url,
            Destination::Json { url, .. } | Destination::Zammad { url, .. } => url,
            Destination::Bitrix24(Bitrix24Sink { auth: Bitrix24Auth::Webhook { url }, .. }) => url,
            Destination::Bitrix24(Bitrix24Sink { auth: Bitrix24Auth::App { portal_url, .. }, .. }) => portal_url,
            Destination::Amocrm(amocrm) => &amocrm.base_url,
        }
    }

    /// Scheme, host and port of [`SinkConfig::url`]: what logs and errors may show.
    pub(crate) fn host(&self) -> String {
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
    let expected_kinds = "expected \"omnidesk\", \"json\", \"zammad\", \"bitrix24\" or \"amocrm\"";
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
        "bitrix24" => &[
            "webhook_url",
            "portal_url",
            "client_id",
            "client_secret",
            "refresh_token",
            "users",
            "default_user",
            "crm_create",
            "add_to_chat",
            "show_cards",
            "rate_per_sec",
            "burst",
            "oauth_url",
        ],
        "amocrm" => &["base_url", "token", "users", "unsorted", "pipeline_id", "rate_per_sec"],
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
                secret: Secret::new(secret),
                summary: events.iter().any(|event| event == "summary"),
                lifecycle: events.iter().any(|event| event == "lifecycle"),
                recordings,
            }
        }
        "bitrix24" => Destination::Bitrix24(bitrix24(table, &err, &url)?),
        "amocrm" => Destination::Amocrm(amocrm(table, &err, &url)?),
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
            let users = string_map(table.get("users"), "{ \"101\" = \"Alice Smith\" }", "user name", false)
                .map_err(|problem| err("users", problem))?;
            Destination::Zammad { url, users }
        }
    };
    Ok(SinkConfig { name, destination, delivery })
}

type KeyError<'a> = &'a dyn Fn(&str, String) -> ConfigError;
type UrlKey<'a> = &'a dyn Fn(&str, &str) -> Result<String, ConfigError>;

fn bitrix24(table: &toml::Table, err: KeyError<'_>, url: UrlKey<'_>) -> Result<Bitrix24Sink, ConfigError> {
    const APP_KEYS: [&str; 4] = ["portal_url", "client_id", "client_secret", "refresh_token"];
    let auth = match (table.contains_key("webhook_url"), APP_KEYS.iter().find(|key| table.contains_key(**key))) {
        (true, Some(app_key)) => {
            return Err(err(
                app_key,
                "is set together with webhook_url, expected either webhook_url (an inbound webhook) or \
                 portal_url + client_id + client_secret + refresh_token (a local application)"
                    .into(),
            ))
        }
        (true, None) => {
            let url = url("webhook_url", "the inbound webhook https://PORTAL/rest/USER/TOKEN/")?;
            let auth = Bitrix24Auth::Webhook { url };
            if auth.webhook_user().is_none() {
                return Err(err(
                    "webhook_url",
                    format!(
                        "{} is not an inbound webhook address, expected https://PORTAL/rest/USER/TOKEN/ as Bitrix24 \
                         shows it under Developer resources → Inbound webhook",
                        redacted_url(auth_url(&auth))
                    ),
                ));
            }
            auth
        }
        (false, Some(_)) => {
            let portal_url = url("portal_url", "the portal's address such as https://company.bitrix24.ru")?;
            let secret = |key: &str, what: &str| match table.get(key) {
                Some(toml::Value::String(value)) if !value.trim().is_empty() => Ok(value.trim().to_string()),
                Some(_) => Err(err(key, format!("is empty or not a string, expected {what}"))),
                None => Err(err(key, format!("is missing, expected {what} (a local application needs all four keys)"))),
            };
            Bitrix24Auth::App {
                portal_url,
                client_id: secret("client_id", "the application's client_id (local.…)")?,
                client_secret: Secret::new(secret("client_secret", "the application's client_secret")?),
                refresh_token: Secret::new(secret(
                    "refresh_token",
                    "the refresh token the application was installed with",
                )?),
            }
        }
        (false, None) => {
            return Err(err(
                "webhook_url",
                "is missing, expected the inbound webhook https://PORTAL/rest/USER/TOKEN/ (scopes telephony, user, \
                 crm) or a local application's portal_url, client_id, client_secret and refresh_token"
                    .into(),
            ))
        }
    };
    let users = string_map(table.get("users"), "{ \"101\" = \"11\" }", "Bitrix24 user id", true)
        .map_err(|problem| err("users", problem))?;
    if let Some((extension, _)) = users.iter().find(|(_, id)| !is_number(id)) {
        return Err(err("users", format!("{extension:?} is not mapped to a user id, expected {{ \"101\" = \"11\" }}")));
    }
    let default_user = match table.get("default_user") {
        None => None,
        Some(toml::Value::String(id)) if is_number(id) => Some(id.clone()),
        Some(toml::Value::Integer(id)) if *id > 0 => Some(id.to_string()),
        Some(other) => {
            return Err(err("default_user", format!("{other} is not a user id, expected a number such as \"1\"")))
        }
    };
    if default_user.is_none() && matches!(auth, Bitrix24Auth::App { .. }) {
        return Err(err(
            "default_user",
            "is missing, expected the Bitrix24 user id calls nobody answered are registered to (a local application \
             has no user of its own)"
                .into(),
        ));
    }
    let (rate_per_sec, burst) = rate(table, err, BITRIX24_RATE)?;
    Ok(Bitrix24Sink {
        auth,
        users,
        default_user,
        crm_create: flag(table, err, "crm_create", true)?,
        add_to_chat: flag(table, err, "add_to_chat", true)?,
        show_cards: flag(table, err, "show_cards", true)?,
        rate_per_sec,
        burst,
        oauth_url: match table.get("oauth_url") {
            None => "https://oauth.bitrix.info/oauth/token/".into(),
            Some(_) => url("oauth_url", "the OAuth server's token address, such as https://PORTAL/oauth/token/")?,
        },
    })
}

fn auth_url(auth: &Bitrix24Auth) -> &str {
    match auth {
        Bitrix24Auth::Webhook { url } => url,
        Bitrix24Auth::App { portal_url, .. } => portal_url,
    }
}

fn amocrm(table: &toml::Table, err: KeyError<'_>, url: UrlKey<'_>) -> Result<AmocrmSink, ConfigError> {
    let base_url =
        url("base_url", "the account's address such as https://company.amocrm.ru or https://company.kommo.com")?;
    let token = match table.get("token") {
        Some(toml::Value::String(token)) if !token.trim().is_empty() => token.trim().to_string(),
        Some(_) => return Err(err("token", "is empty or not a string, expected the long-lived token".into())),
        None => {
            return Err(err(
                "token",
                "is missing, expected a long-lived token (amoCRM: Settings → Integrations → your private \
                 integration → Keys and scopes)"
                    .into(),
            ))
        }
    };
    let users = string_map(table.get("users"), "{ \"123456\" = \"101\" }", "extension", true)
        .map_err(|problem| err("users", problem))?;
    if let Some((id, _)) = users.iter().find(|(id, _)| !is_number(id)) {
        return Err(err("users", format!("{id:?} is not an amoCRM user id, expected {{ \"123456\" = \"101\" }}")));
    }
    let pipeline_id = match table.get("pipeline_id") {
        None => None,
        Some(toml::Value::Integer(id)) if *id > 0 => Some(*id as u64),
        Some(other) => {
            return Err(err("pipeline_id", format!("{other} is not a pipeline id, expected a positive number")))
        }
    };
    let (rate_per_sec, _) = rate(table, err, AMOCRM_RATE)?;
    Ok(AmocrmSink {
        base_url,
        token: Secret::new(token),
        users,
        unsorted: flag(table, err, "unsorted", false)?,
        pipeline_id,
        rate_per_sec,
    })
}

fn is_number(text: &str) -> bool {
    !text.is_empty() && text.len() <= 18 && text.bytes().all(|b| b.is_ascii_digit())
}

fn flag(table: &toml::Table, err: KeyError<'_>, key: &str, default: bool) -> Result<bool, ConfigError> {
    match table.get(key) {
        None => Ok(default),
        Some(toml::Value::Boolean(value)) => Ok(*value),
        Some(other) => Err(err(key, format!("{other} is not true or false, expected true or false"))),
    }
}

/// `rate_per_sec` and `burst`: never above what the CRM documents (`limit`).
fn rate(table: &toml::Table, err: KeyError<'_>, limit: (f64, u32)) -> Result<(f64, u32), ConfigError> {
    let rate_per_sec = match table.get("rate_per_sec") {
        None => limit.0,
        Some(toml::Value::Float(rate)) if *rate > 0.0 && *rate <= limit.0 => *rate,
        Some(toml::Value::Integer(rate)) if *rate > 0 && (*rate as f64) <= limit.0 => *rate as f64,
        Some(other) => {
            return Err(err(
                "rate_per_sec",
                format!("{other} is out of range, expected more than 0 and at most {} (the CRM's own limit)", limit.0),
            ))
        }
    };
    let burst = match table.get("burst") {
        None => limit.1,
        Some(toml::Value::Integer(burst)) if *burst >= 1 && *burst <= i64::from(limit.1) => *burst as u32,
        Some(other) => {
            return Err(err(
                "burst",
                format!("{other} is out of range, expected 1 to {} (the CRM's own limit)", limit.1),
            ))
        }
    };
    Ok((rate_per_sec, burst))
}

/// A table of strings such as `users = { "101" = "Alice Smith" }`.
fn string_map(
    value: Option<&toml::Value>,
    example: &str,
    what: &str,
    numbers: bool,
) -> Result<BTreeMap<String, String>, String> {
    match value {
        None => Ok(BTreeMap::new()),
        Some(toml::Value::Table(entries)) => {
            let mut map = BTreeMap::new();
            for (key, value) in entries {
                match value {
                    toml::Value::String(text) if !text.trim().is_empty() => {
                        map.insert(key.trim().to_string(), text.trim().to_string());
                    }
                    toml::Value::Integer(number) if numbers => {
                        map.insert(key.trim().to_string(), number.to_string());
                    }
                    _ => return Err(format!("{key:?} has no {what}, expected {example}")),
                }
            }
            Ok(map)
        }
        Some(other) => Err(format!("{} is not a table, expected {example}", other.type_str())),
    }
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
            ("[[sinks]]\nname = \"x\"\nkind = \"okdesk\"\n", "not supported by this version"),
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
    fn crm_sinks_show_no_secret_in_debug_and_check_their_keys() {
        let config = Config::from_toml(
            "[[sinks]]\nname = \"b24\"\nkind = \"bitrix24\"\nwebhook_url = \"https://p.example/rest/7/HOOK-SECRET/\"\n\
             users = { \"101\" = 11 }\n\
             [[sinks]]\nname = \"app\"\nkind = \"bitrix24\"\nportal_url = \"https://p.example\"\nclient_id = \"local.1\"\n\
             client_secret = \"APP-SECRET\"\nrefresh_token = \"REFRESH-SECRET\"\ndefault_user = 1\n\
             [[sinks]]\nname = \"amo\"\nkind = \"amocrm\"\nbase_url = \"https://c.amocrm.ru\"\ntoken = \"AMO-SECRET\"\n",
            "config.toml",
        )
        .expect("valid");
        let shown = format!("{:?}", config.destinations());
        for secret in ["HOOK-SECRET", "APP-SECRET", "REFRESH-SECRET", "AMO-SECRET"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        let super::Destination::Bitrix24(b24) = &config.sinks[0].destination else { panic!("bitrix24") };
        assert_eq!((b24.auth.webhook_user().as_deref(), b24.users["101"].as_str()), (Some("7"), "11"));
        assert_eq!((b24.rate_per_sec, b24.burst), (2.0, 50));
        let cases = [
            ("[[sinks]]\nname = \"b\"\nkind = \"bitrix24\"\n", "[sinks.b] webhook_url: is missing"),
            ("[[sinks]]\nname = \"b\"\nkind = \"bitrix24\"\nwebhook_url = \"https://p/x/\"\n", "is not an inbound webhook"),
            (
                "[[sinks]]\nname = \"b\"\nkind = \"bitrix24\"\nwebhook_url = \"https://p/rest/1/t/\"\nclient_id = \"x\"\n",
                "[sinks.b] client_id: is set together with webhook_url",
            ),
            (
                "[[sinks]]\nname = \"b\"\nkind = \"bitrix24\"\nportal_url = \"https://p\"\nclient_id = \"x\"\n",
                "[sinks.b] client_secret: is missing",
            ),
            (
                "[[sinks]]\nname = \"b\"\nkind = \"bitrix24\"\nportal_url = \"https://p\"\nclient_id = \"x\"\n\
                 client_secret = \"y\"\nrefresh_token = \"z\"\n",
                "[sinks.b] default_user: is missing",
            ),
            (
                "[[sinks]]\nname = \"b\"\nkind = \"bitrix24\"\nwebhook_url = \"https://p/rest/1/t/\"\nrate_per_sec = 5\n",
                "[sinks.b] rate_per_sec: 5 is out of range",
            ),
            (
                "[[sinks]]\nname = \"b\"\nkind = \"bitrix24\"\nwebhook_url = \"https://p/rest/1/t/\"\nusers = { \"101\" = \"Al\" }\n",
                "[sinks.b] users: \"101\" is not mapped to a user id",
            ),
            ("[[sinks]]\nname = \"a\"\nkind = \"amocrm\"\nbase_url = \"https://c\"\n", "[sinks.a] token: is missing"),
            (
                "[[sinks]]\nname = \"a\"\nkind = \"amocrm\"\nbase_url = \"https://c\"\ntoken = \"t\"\nusers = { \"x\" = \"101\" }\n",
                "[sinks.a] users: \"x\" is not an amoCRM user id",
            ),
            (
                "[[sinks]]\nname = \"a\"\nkind = \"amocrm\"\nbase_url = \"https://c\"\ntoken = \"t\"\nunsorted = \"yes\"\n",
                "[sinks.a] unsorted: ",
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
