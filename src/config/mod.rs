//! The TOML configuration: its schema, defaults, and validation into errors an admin can act on.
//!
//! Every error names the file, the `[section]`, the key, what is wrong and what is expected
//! (`config.toml: [pbx] timezone: unknown time zone "Moscow", expected an IANA name such as "Europe/Moscow"`).
//! Nothing here opens sockets; it only reads the file.

use std::collections::BTreeMap;
use std::fmt;

pub(crate) use crate::secret::Secret;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

pub mod allow;
mod sinks;

pub(crate) use sinks::{
    AmocrmSink, Bitrix24Auth, Bitrix24Sink, Destination, JsonRecordings, SinkConfig, AMOCRM_RATE, BITRIX24_RATE,
};

/// Where `--config` falls back to when neither the flag nor `$DESKHOOK_CONFIG` is given.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/deskhook/config.toml";
/// The smallest `[ari] max_backlog`: below it every burst would cost a reconnect.
pub(crate) const MIN_ARI_BACKLOG: usize = 10;

/// A configuration problem, already phrased for the admin.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.shown())]
pub struct ConfigError {
    pub file: String,
    pub section: String,
    pub key: String,
    pub message: String,
}

impl ConfigError {
    /// `file: [section] key: message`, leaving out what is not known (`-`).
    fn shown(&self) -> String {
        match (self.section.as_str(), self.key.as_str()) {
            ("-", "-") => format!("{}: {}", self.file, self.message),
            ("-", key) => format!("{}: {key}: {}", self.file, self.message),
            (section, "-") => format!("{}: [{section}]: {}", self.file, self.message),
            (section, key) => format!("{}: [{section}] {key}: {}", self.file, self.message),
        }
    }

    pub(crate) fn new(file: &str, section: &str, key: &str, message: impl Into<String>) -> Self {
        Self { file: file.to_string(), section: section.to_string(), key: key.to_string(), message: message.into() }
    }
}

#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub ari: AriConfig,
    pub pbx: PbxConfig,
    pub helpdesk: HelpdeskConfig,
    pub recordings: RecordingsConfig,
    pub forward: ForwardConfig,
    pub storage: StorageConfig,
    /// Omnidesk's read-only ARI (its operators' list) without opening ARI itself.
    pub omnidesk_endpoints: OmnideskEndpointsConfig,
    /// `[[sinks]]` as written; [`Config::sinks`] holds them checked.
    #[serde(rename = "sinks")]
    raw_sinks: Vec<toml::Table>,
    /// The destinations configured under `[[sinks]]`, checked (see [`Config::destinations`]).
    #[serde(skip)]
    pub sinks: Vec<SinkConfig>,
}

impl fmt::Debug for Config {
    // The sinks as written hold their secrets in the clear: only the checked ones are shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("ari", &self.ari)
            .field("pbx", &self.pbx)
            .field("helpdesk", &self.helpdesk)
            .field("recordings", &self.recordings)
            .field("forward", &self.forward)
            .field("storage", &self.storage)
            .field("omnidesk_endpoints", &self.omnidesk_endpoints)
            .field("sinks", &self.sinks)
            .finish()
    }
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AriConfig {
    /// `http://host:port` or `https://…`; the websocket URL is derived (ws/wss).
    pub url: String,
    pub username: String,
    pub password: Secret,
    /// The ARI application name of deskhook's websocket.
    pub app: String,
    /// PEM file of the CA (or the self-signed certificate) Asterisk's TLS certificate is checked
    /// against, instead of the system's; empty: the system's trust store.
    pub ca_file: String,
    /// How often deskhook pings the websocket.
    pub ping_interval: DurationSpec,
    /// A connection silent for this long is treated as dead.
    pub idle_timeout: DurationSpec,
    /// The longest wait between reconnect attempts.
    pub reconnect_max: DurationSpec,
    /// Timeout of each REST request to ARI.
    pub request_timeout: DurationSpec,
    /// ARI messages read but not yet handled that deskhook holds at most; past this it closes
    /// the websocket (never making Asterisk wait) and resyncs once it has caught up.
    pub max_backlog: usize,
}

impl Default for AriConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8088".into(),
            username: "deskhook".into(),
            password: Secret::default(),
            app: "deskhook".into(),
            ca_file: String::new(),
            ping_interval: DurationSpec::secs(10),
            idle_timeout: DurationSpec::secs(30),
            reconnect_max: DurationSpec::secs(30),
            request_timeout: DurationSpec::secs(5),
            max_backlog: 20_000,
        }
    }
}

impl fmt::Debug for AriConfig {
    // The password must never reach a log line, even through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AriConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("app", &self.app)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PbxConfig {
    /// This PBX's name in the shared call history; empty = the machine's host name.
    pub name: String,
    /// IANA zone for the helpdesk's `datetime`; empty = the system's zone.
    pub timezone: String,
    /// Endpoint resources matching this are operators' extensions.
    pub extension_pattern: String,
    /// Endpoint resources that are trunks; empty = every endpoint that is not an extension.
    pub trunks: Vec<String>,
    /// Static queue members by queue name (extensions), overriding what ARI would say.
    pub queues: BTreeMap<String, Vec<String>>,
    /// How long after the first member leg a queue's ring round is considered complete.
    pub queue_ring_round_ms: u64,
}

impl Default for PbxConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            timezone: String::new(),
            extension_pattern: r"^\d{2,6}$".into(),
            trunks: Vec::new(),
            queues: BTreeMap::new(),
            queue_ring_round_ms: 1000,
        }
    }
}

#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HelpdeskConfig {
    /// Where every event is POSTed; empty = events are only logged.
    pub webhook_url: String,
    /// How long an undelivered request is retried before it is dead-lettered.
    pub retention: DurationSpec,
    pub connect_timeout: DurationSpec,
    pub request_timeout: DurationSpec,
    /// The longest wait between two tries of one request.
    pub max_backoff: DurationSpec,
    /// The wait before the first retry; each further retry waits about twice as long.
    pub min_backoff: DurationSpec,
    /// How many calls are delivered in parallel.
    pub max_parallel: usize,
    /// The outbox's size cap in rows.
    pub outbox_max_rows: u64,
    /// Tries before a request answered with a non-retryable 4xx is dead-lettered.
    pub client_error_tries: u32,
    /// How long delivered requests stay in the outbox (inspection, start/ended deduplication).
    pub keep_delivered: DurationSpec,
}

impl Default for HelpdeskConfig {
    fn default() -> Self {
        Self {
            webhook_url: String::new(),
            retention: DurationSpec::secs(7 * 86_400),
            connect_timeout: DurationSpec::secs(5),
            request_timeout: DurationSpec::secs(30),
            max_backoff: DurationSpec::secs(300),
            min_backoff: DurationSpec::secs(1),
            max_parallel: 8,
            outbox_max_rows: 1_000_000,
            client_error_tries: 3,
            keep_delivered: DurationSpec::secs(86_400),
        }
    }
}

impl HelpdeskConfig {
    /// Checks the delivery settings (everything but the URL) of `[section]`.
    pub(crate) fn validate_delivery(&self, file: &str, section: &str) -> Result<(), ConfigError> {
        let err = |key: &str, message: String| Err(ConfigError::new(file, section, key, message));
        if self.max_parallel == 0 {
            return err("max_parallel", "is 0, expected at least 1".into());
        }
        if self.min_backoff.get().is_zero() || self.min_backoff.get() > self.max_backoff.get() {
            return err(
                "min_backoff",
                format!(
                    "is {:?}, expected more than 0 and at most max_backoff ({:?})",
                    self.min_backoff.get(),
                    self.max_backoff.get()
                ),
            );
        }
        if self.client_error_tries == 0 {
            return err("client_error_tries", "is 0, expected at least 1".into());
        }
        if self.outbox_max_rows < 100 {
            return err("outbox_max_rows", format!("is {}, expected at least 100", self.outbox_max_rows));
        }
        Ok(())
    }
}

impl fmt::Debug for HelpdeskConfig {
    // The webhook URL's path carries the helpdesk's token: only the host may be shown.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelpdeskConfig")
            .field("webhook_host", &redacted_url(&self.webhook_url))
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RecordingMode {
    #[default]
    Off,
    Ari,
    Mixmonitor,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingsConfig {
    pub mode: RecordingMode,
    /// Only files inside these directories are ever read (mixmonitor mode).
    pub dirs: Vec<PathBuf>,
    /// Delete a MixMonitor file once the helpdesk has it.
    pub delete_after_upload: bool,
    /// How long a file must stay unchanged to count as complete when no close event is seen.
    pub settle: DurationSpec,
    /// Give up on a file that is not complete this long after the call ended (ari mode: on a
    /// recording whose stop, download or upload queueing keeps failing).
    pub wait_timeout: DurationSpec,
    /// ARI stored-recording format (ari mode).
    pub format: String,
    /// Where recording links are served (`/recordings/<token>` only); empty: no links.
    pub public_listen: String,
    /// The address CRMs reach that listener at (a reverse proxy with TLS in front, usually).
    pub public_base_url: String,
    /// How long a link works after its call ended.
    pub link_ttl: DurationSpec,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        Self {
            mode: RecordingMode::Off,
            dirs: vec![PathBuf::from("/var/spool/asterisk/monitor")],
            delete_after_upload: false,
            settle: DurationSpec::secs(2),
            wait_timeout: DurationSpec::secs(600),
            format: "wav".into(),
            public_listen: String::new(),
            public_base_url: String::new(),
            link_ttl: DurationSpec::secs(180 * 86_400),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ForwardConfig {
    /// Address of the `/forward`, `/healthz`, `/metrics` server; empty disables it.
    pub listen: String,
    /// `/forward` always answers within this many milliseconds.
    pub budget_ms: u64,
    /// Skip an extension whose endpoint ARI reports offline/unavailable.
    pub skip_unavailable: bool,
    /// Country code assumed for national numbers (`8916…` → `7916…`).
    pub default_country: String,
    /// How long a found answer is cached.
    pub cache_ttl: DurationSpec,
    /// How long a "not found" is cached.
    pub miss_cache_ttl: DurationSpec,
    /// Client addresses or networks that may ask (besides this host); empty: anyone who
    /// reaches `listen`.
    pub allow: Vec<String>,
    pub resolvers: Vec<ResolverConfig>,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8077".into(),
            budget_ms: 1500,
            skip_unavailable: true,
            default_country: "7".into(),
            cache_ttl: DurationSpec::secs(300),
            miss_cache_ttl: DurationSpec::secs(60),
            allow: Vec::new(),
            resolvers: Vec::new(),
        }
    }
}

/// `[omnidesk_endpoints]`: a read-only face of ARI for Omnidesk (see
/// `crate::daemon::endpoints_facade`).
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OmnideskEndpointsConfig {
    /// Where to serve it; empty: off.
    pub listen: String,
    /// What Omnidesk's integration is given as the ARI user and password (not ari.conf's).
    pub username: String,
    pub password: Secret,
    /// PEM certificate chain and key (the admin's, e.g. Let's Encrypt's); required beyond loopback.
    pub tls_cert: String,
    pub tls_key: String,
}

impl fmt::Debug for OmnideskEndpointsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OmnideskEndpointsConfig")
            .field("listen", &self.listen)
            .field("username", &self.username)
            .field("tls_cert", &self.tls_cert)
            .finish_non_exhaustive()
    }
}

/// One `[[forward.resolvers]]` entry; `kind` selects the variant.
#[derive(Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum ResolverConfig {
    Table {
        path: PathBuf,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    History {
        #[serde(default = "default_history_age")]
        max_age_days: u32,
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    Bitrix24 {
        webhook_url: String,
        #[serde(default)]
        timeout_ms: Option<u64>,
        #[serde(default)]
        rate_per_sec: Option<f64>,
        /// Which REST methods find the client (see [`Bitrix24Lookup`]).
        #[serde(default)]
        lookup: Bitrix24Lookup,
    },
    Amocrm {
        base_url: String,
        token: Secret,
        #[serde(default)]
        users: BTreeMap<String, String>,
        #[serde(default)]
        timeout_ms: Option<u64>,
        #[serde(default)]
        rate_per_sec: Option<f64>,
    },
    Http {
        url: String,
        #[serde(default = "default_number_field")]
        number_field: String,
        #[serde(default = "default_name_field")]
        name_field: String,
        #[serde(default)]
        timeout_ms: Option<u64>,
        #[serde(default)]
        rate_per_sec: Option<f64>,
    },
}

/// How the `bitrix24` resolver finds a client by phone.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bitrix24Lookup {
    /// `telephony`, switching to `duplicates` when the webhook lacks the telephony scope.
    #[default]
    Auto,
    /// `telephony.externalCall.searchCrmEntities` (one request; scope `telephony`).
    Telephony,
    /// `crm.duplicate.findbycomm` + `crm.*.get` + `user.get` (scopes `crm`, `user`).
    Duplicates,
}

fn default_history_age() -> u32 {
    30
}
fn default_number_field() -> String {
    "extension".into()
}
fn default_name_field() -> String {
    "name".into()
}

impl ResolverConfig {
    /// The resolver's own `timeout_ms`, if set.
    pub(crate) fn timeout(&self) -> Option<Duration> {
        let millis = match self {
            ResolverConfig::Table { timeout_ms, .. }
            | ResolverConfig::History { timeout_ms, .. }
            | ResolverConfig::Bitrix24 { timeout_ms, .. }
            | ResolverConfig::Amocrm { timeout_ms, .. }
            | ResolverConfig::Http { timeout_ms, .. } => *timeout_ms,
        };
        millis.map(Duration::from_millis)
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            ResolverConfig::Table { .. } => "table",
            ResolverConfig::History { .. } => "history",
            ResolverConfig::Bitrix24 { .. } => "bitrix24",
            ResolverConfig::Amocrm { .. } => "amocrm",
            ResolverConfig::Http { .. } => "http",
        }
    }
}

impl fmt::Debug for ResolverConfig {
    // CRM tokens and webhook paths are secrets: show the kind only.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ResolverConfig({})", self.kind())
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageConfig {
    /// The outbox and the call history live here.
    pub dir: PathBuf,
    /// The shared call history, `postgres://user:password@host/database?sslmode=…`; empty (or
    /// `"sqlite"`): the local history only.
    pub history: Secret,
    /// How long a `/forward` lookup waits for the shared history before the local copy answers.
    pub history_timeout: DurationSpec,
}

impl StorageConfig {
    /// The shared history's URL, when one is configured.
    pub(crate) fn shared_history(&self) -> Option<&str> {
        let url = self.history.expose().trim();
        (!url.is_empty() && url != "sqlite").then_some(url)
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("/var/lib/deskhook"),
            history: Secret::default(),
            history_timeout: DurationSpec(Duration::from_millis(250)),
        }
    }
}

/// A duration written as `"30s"`, `"5m"`, `"12h"`, `"7d"`, `"250ms"` or a number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

impl DurationSpec {
    pub const fn secs(seconds: u64) -> Self {
        Self(Duration::from_secs(seconds))
    }
    pub(crate) fn get(self) -> Duration {
        self.0
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Seconds(u64),
            Text(String),
        }
        let capped = |duration: Duration, shown: String| {
            if duration > MAX_DURATION {
                Err(serde::de::Error::custom(format!(
                    "{shown} is longer than deskhook keeps time for, expected at most \"{}d\" (ten years)",
                    MAX_DURATION.as_secs() / 86_400
                )))
            } else {
                Ok(DurationSpec(duration))
            }
        };
        match Raw::deserialize(deserializer) {
            Ok(Raw::Seconds(seconds)) => capped(Duration::from_secs(seconds), format!("{seconds} seconds")),
            Ok(Raw::Text(text)) => match parse_duration(&text) {
                Some(duration) => capped(duration, format!("{text:?}")),
                None => Err(serde::de::Error::custom(format!(
                    "{text:?} is not a duration, expected a number with a unit such as \"30s\", \"5m\", \"12h\", \"7d\""
                ))),
            },
            Err(_) => Err(serde::de::Error::custom(
                "expected a duration such as \"30s\", \"5m\", \"12h\", \"7d\" or a number of seconds",
            )),
        }
    }
}

/// The longest duration a config may give: ten years. Longer ones would overflow the clock
/// arithmetic (an `Instant` plus `u64::MAX` seconds panics) and mean nothing for a PBX.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Parses `"250ms"`, `"30s"`, `"5m"`, `"12h"`, `"7d"` (whitespace between number and unit allowed).
pub(crate) fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().ok()?;
    let millis_per_unit: u64 = match unit.trim() {
        "ms" => 1,
        "s" | "sec" | "secs" => 1000,
        "m" | "min" | "mins" => 60_000,
        "h" | "hour" | "hours" => 3_600_000,
        "d" | "day" | "days" => 86_400_000,
        _ => return None,
    };
    Some(Duration::from_millis(value.checked_mul(millis_per_unit)?))
}

/// `https://company.omnidesk.ru/webhooks/asterisk/cc75…` → `https://company.omnidesk.ru`: safe to log.
pub(crate) fn redacted_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(parsed) => match parsed.host_str() {
            Some(host) => match parsed.port() {
                Some(port) => format!("{}://{host}:{port}", parsed.scheme()),
                None => format!("{}://{host}", parsed.scheme()),
            },
            None => "<url without host>".into(),
        },
        Err(_) => "<unparsable url>".into(),
    }
}

impl Config {
    /// Which file to read: the flag, then `$DESKHOOK_CONFIG`, then `/etc/deskhook/config.toml`.
    pub fn resolve_path(flag: Option<&Path>) -> PathBuf {
        if let Some(path) = flag {
            return path.to_path_buf();
        }
        match std::env::var_os("DESKHOOK_CONFIG") {
            Some(path) if !path.is_empty() => PathBuf::from(path),
            _ => PathBuf::from(DEFAULT_CONFIG_PATH),
        }
    }

    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|err| ConfigError::new(&name, "-", "-", format!("cannot read the file: {err}")))?;
        Self::from_toml(&text, &name)
    }

    /// Every problem of the config file at `path` (empty: it loads), for `deskhook check`:
    /// one from TOML itself if it does not parse, else one per check that fails.
    pub fn problems_of(path: &Path) -> Vec<ConfigError> {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) => return vec![ConfigError::new(&name, "-", "-", format!("cannot read the file: {err}"))],
        };
        let config: Config = match toml::from_str(&text) {
            Ok(config) => config,
            Err(err) => return vec![resolver_error(&text, &name).unwrap_or_else(|| toml_error(&text, &name, &err))],
        };
        let mut problems = config.problems(&name);
        if let Err(problem) = sinks::parse(&config.raw_sinks, &config.helpdesk, &name) {
            problems.push(problem);
        }
        problems
    }

    /// Parses and validates TOML text; `file` names it in errors.
    pub fn from_toml(text: &str, file: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text)
            .map_err(|err| resolver_error(text, file).unwrap_or_else(|| toml_error(text, file, &err)))?;
        config.validate(file)?;
        config.sinks = sinks::parse(&config.raw_sinks, &config.helpdesk, file)?;
        config.register_secrets();
        Ok(config)
    }

    /// Tells the log writer every secret in the config (`crate::secret::scrub` blanks them out
    /// of any log line, whichever library wrote it).
    fn register_secrets(&self) {
        use crate::secret::{register, register_basic_auth, register_url};
        register_basic_auth(&self.ari.username, self.ari.password.expose());
        if !self.omnidesk_endpoints.listen.is_empty() {
            register_basic_auth(&self.omnidesk_endpoints.username, self.omnidesk_endpoints.password.expose());
        }
        register_url(&self.helpdesk.webhook_url);
        if let Some(url) = self.storage.shared_history().and_then(|url| url::Url::parse(url).ok()) {
            // Only the password: the rest (user, host, database "deskhook") is no secret.
            if let Some(password) = url.password() {
                register(password);
                register(&percent_encoding::percent_decode_str(password).decode_utf8_lossy());
            }
            for (key, value) in url.query_pairs().filter(|(key, _)| key == "password") {
                register(&format!("{key}={value}"));
                register(&value);
            }
        }
        for resolver in &self.forward.resolvers {
            match resolver {
                ResolverConfig::Bitrix24 { webhook_url, .. } => register_url(webhook_url),
                ResolverConfig::Amocrm { token, .. } => register(token.expose()),
                ResolverConfig::Http { url, .. } => register_url(url),
                ResolverConfig::Table { .. } | ResolverConfig::History { .. } => {}
            }
        }
        for sink in &self.sinks {
            register_url(sink.url());
            match &sink.destination {
                Destination::Json { secret, .. } => register(secret.expose()),
                Destination::Bitrix24(Bitrix24Sink {
                    auth: Bitrix24Auth::App { client_secret, refresh_token, .. },
                    ..
                }) => {
                    register(client_secret.expose());
                    register(refresh_token.expose());
                }
                Destination::Amocrm(amocrm) => register(amocrm.token.expose()),
                Destination::Omnidesk | Destination::Zammad { .. } | Destination::Bitrix24(_) => {}
            }
        }
    }

    /// Every destination calls go to: the `[[sinks]]`, and first `[helpdesk] webhook_url` as the
    /// `omnidesk` sink named `helpdesk` (SPEC §7). With no sink at all, the `helpdesk` sink
    /// stays, without a URL: events are stored and only logged.
    pub fn destinations(&self) -> Vec<SinkConfig> {
        let mut all = Vec::with_capacity(self.sinks.len() + 1);
        if !self.helpdesk.webhook_url.is_empty() || self.sinks.is_empty() {
            all.push(SinkConfig::helpdesk(&self.helpdesk));
        }
        all.extend(self.sinks.iter().cloned());
        all
    }

    /// Checks what serde cannot: patterns, zones, URLs, ranges.
    pub(crate) fn validate(&self, file: &str) -> Result<(), ConfigError> {
        self.problems(file).into_iter().next().map_or(Ok(()), Err)
    }

    /// Every problem `validate` finds, one per check (a check stops at its first).
    pub(crate) fn problems(&self, file: &str) -> Vec<ConfigError> {
        let err = |section: &str, key: &str, message: String| Err(ConfigError::new(file, section, key, message));
        let checks: Vec<Box<dyn Fn() -> Result<(), ConfigError> + '_>> = vec![
            Box::new(|| {
                if let Err(problem) = check_http_url(&self.ari.url) {
                    return err(
                        "ari",
                        "url",
                        format!("{problem}, expected http://host:port or https://host:port of Asterisk's HTTP server"),
                    );
                }
                Ok(())
            }),
            Box::new(|| {
                if !self.ari.ca_file.is_empty() {
                    if !self.ari.url.starts_with("https://") {
                        return err(
                        "ari",
                        "ca_file",
                        "is set but [ari] url is not https://, expected https:// (Asterisk's tlsbindaddr port) or no ca_file"
                            .into(),
                    );
                    }
                    if let Err(problem) = crate::tls::ca_certificates(&self.ari.ca_file) {
                        return err(
                            "ari",
                            "ca_file",
                            format!("{problem}, expected the PEM file of Asterisk's certificate or CA"),
                        );
                    }
                }
                Ok(())
            }),
            Box::new(|| {
                if self.ari.app.trim().is_empty() {
                    return err("ari", "app", "is empty, expected the ARI application name (e.g. \"deskhook\")".into());
                }
                Ok(())
            }),
            Box::new(|| {
                if self.ari.idle_timeout.get() <= self.ari.ping_interval.get() {
                    return err(
                    "ari",
                    "idle_timeout",
                    format!(
                        "is {:?}, not longer than ping_interval ({:?}): a healthy connection would be dropped; expected \
                         at least twice ping_interval (e.g. \"30s\" with \"10s\")",
                        self.ari.idle_timeout.get(),
                        self.ari.ping_interval.get()
                    ),
                );
                }
                Ok(())
            }),
            Box::new(|| {
                match (self.recordings.public_listen.is_empty(), self.recordings.public_base_url.is_empty()) {
                    (true, true) => {}
                    (false, true) => return err(
                        "recordings",
                        "public_base_url",
                        "is empty while public_listen is set, expected the https:// address CRMs reach the recording \
                         links at (e.g. \"https://pbx.example.com:8443\")"
                            .into(),
                    ),
                    (true, false) => {
                        return err(
                            "recordings",
                            "public_listen",
                            "is empty while public_base_url is set, expected the address to serve recording links on \
                         (e.g. \"127.0.0.1:8078\" behind a TLS proxy)"
                                .into(),
                        )
                    }
                    (false, false) => {
                        if let Err(problem) = check_http_url(&self.recordings.public_base_url) {
                            return err(
                                "recordings",
                                "public_base_url",
                                format!("{problem}, expected https://HOST[:PORT]"),
                            );
                        }
                        if self.recordings.public_listen.parse::<std::net::SocketAddr>().is_err() {
                            return err(
                                "recordings",
                                "public_listen",
                                format!(
                                    "{:?} is not an address, expected IP:PORT such as \"127.0.0.1:8078\"",
                                    self.recordings.public_listen
                                ),
                            );
                        }
                        if self.recordings.mode != RecordingMode::Mixmonitor {
                            return err(
                            "recordings",
                            "public_listen",
                            "links are made for MixMonitor files, expected mode = \"mixmonitor\" (or no public_listen)"
                                .into(),
                        );
                        }
                    }
                }
                Ok(())
            }),
            Box::new(|| {
                if self.ari.max_backlog < MIN_ARI_BACKLOG {
                    return err(
                        "ari",
                        "max_backlog",
                        format!(
                        "is {}, expected at least {MIN_ARI_BACKLOG} messages (the default, 20000, is about two minutes \
                         of a busy PBX)",
                        self.ari.max_backlog
                    ),
                    );
                }
                Ok(())
            }),
            Box::new(|| {
                if let Err(problem) = regex::Regex::new(&self.pbx.extension_pattern) {
                    return err(
                        "pbx",
                        "extension_pattern",
                        format!("is not a valid regular expression ({problem}), expected e.g. '^\\d{{2,6}}$'"),
                    );
                }
                Ok(())
            }),
            Box::new(|| {
                if !self.pbx.timezone.is_empty() && jiff::tz::TimeZone::get(&self.pbx.timezone).is_err() {
                    return err(
                        "pbx",
                        "timezone",
                        format!(
                            "unknown time zone {:?}, expected an IANA name such as \"Europe/Moscow\"",
                            self.pbx.timezone
                        ),
                    );
                }
                Ok(())
            }),
            Box::new(|| {
                for (queue, members) in &self.pbx.queues {
                    if members.iter().any(|m| m.trim().is_empty()) {
                        return err(
                            "pbx.queues",
                            queue,
                            "has an empty member, expected extensions such as [\"101\", \"102\"]".into(),
                        );
                    }
                }
                Ok(())
            }),
            Box::new(|| {
                if !self.helpdesk.webhook_url.is_empty() {
                    if let Err(problem) = check_http_url(&self.helpdesk.webhook_url) {
                        return err(
                            "helpdesk",
                            "webhook_url",
                            format!("{problem}, expected the helpdesk's https:// webhook address"),
                        );
                    }
                }
                Ok(())
            }),
            Box::new(|| {
                self.helpdesk.validate_delivery(file, "helpdesk")?;
                Ok(())
            }),
            Box::new(|| {
                if self.recordings.mode == RecordingMode::Mixmonitor && self.recordings.dirs.is_empty() {
                    return err(
                        "recordings",
                        "dirs",
                        "is empty while mode = \"mixmonitor\", expected the directories MixMonitor writes into".into(),
                    );
                }
                Ok(())
            }),
            Box::new(|| {
                let format = &self.recordings.format;
                if format.is_empty() || !format.chars().all(|c| c.is_ascii_alphanumeric()) {
                    return err(
                    "recordings",
                    "format",
                    format!("{format:?} is not a recording format, expected a file format Asterisk records, e.g. \"wav\""),
                );
                }
                Ok(())
            }),
            Box::new(|| {
                if !self.forward.listen.is_empty() && self.forward.listen.parse::<std::net::SocketAddr>().is_err() {
                    return err(
                        "forward",
                        "listen",
                        format!(
                            "{:?} is not an address, expected ip:port such as \"127.0.0.1:8077\"",
                            self.forward.listen
                        ),
                    );
                }
                Ok(())
            }),
            Box::new(|| {
                let facade = &self.omnidesk_endpoints;
                if !facade.listen.is_empty() {
                    let err =
                        |key: &str, message: String| Err(ConfigError::new(file, "omnidesk_endpoints", key, message));
                    let Ok(listen) = facade.listen.parse::<std::net::SocketAddr>() else {
                        return err(
                            "listen",
                            format!("{:?} is not an address, expected ip:port such as \"0.0.0.0:8089\"", facade.listen),
                        );
                    };
                    if facade.username.trim().is_empty() {
                        return err("username", "is empty, expected the user Omnidesk's integration logs in as".into());
                    }
                    if facade.password.expose().len() < 12 {
                        return err(
                            "password",
                            "is shorter than 12 characters, expected a long random password (it faces the internet)"
                                .into(),
                        );
                    }
                    if facade.password == self.ari.password {
                        return err("password", "is ari.conf's password, expected a password of its own".into());
                    }
                    if facade.tls_cert.is_empty() != facade.tls_key.is_empty() {
                        return err(
                            "tls_key",
                            "tls_cert and tls_key go together, expected both PEM files or neither".into(),
                        );
                    }
                    if facade.tls_cert.is_empty() && !listen.ip().is_loopback() {
                        return err(
                            "tls_cert",
                            "is missing while listen is reachable beyond this host, expected the PEM certificate (and \
                         tls_key) the password travels under"
                                .into(),
                        );
                    }
                }
                Ok(())
            }),
            Box::new(|| {
                if let Err(problem) = allow::AllowList::parse(&self.forward.allow) {
                    return err("forward", "allow", problem);
                }
                Ok(())
            }),
            Box::new(|| {
                if !(50..=60_000).contains(&self.forward.budget_ms) {
                    return err(
                        "forward",
                        "budget_ms",
                        format!("is {}, expected 50..60000 milliseconds", self.forward.budget_ms),
                    );
                }
                Ok(())
            }),
            Box::new(|| {
                if self.forward.default_country.is_empty()
                    || !self.forward.default_country.bytes().all(|b| b.is_ascii_digit())
                {
                    return err(
                        "forward",
                        "default_country",
                        format!(
                            "{:?} is not a country calling code, expected digits such as \"7\"",
                            self.forward.default_country
                        ),
                    );
                }
                Ok(())
            }),
            Box::new(|| {
                for (index, resolver) in self.forward.resolvers.iter().enumerate() {
                    let section = format!("forward.resolvers #{}", index + 1);
                    let url_key = match resolver {
                        ResolverConfig::Bitrix24 { webhook_url, .. } => Some(("webhook_url", webhook_url)),
                        ResolverConfig::Amocrm { base_url, .. } => Some(("base_url", base_url)),
                        ResolverConfig::Http { url, .. } => Some(("url", url)),
                        _ => None,
                    };
                    if let Some((key, value)) = url_key {
                        if let Err(problem) = check_http_url(&value.replace("{phone}", "0")) {
                            return err(&section, key, format!("{problem}, expected an http(s):// address"));
                        }
                    }
                    if resolver.timeout().is_some_and(|timeout| timeout.is_zero()) {
                        return err(&section, "timeout_ms", "is 0, expected milliseconds such as 800".into());
                    }
                    let rate = match resolver {
                        ResolverConfig::Bitrix24 { rate_per_sec, .. }
                        | ResolverConfig::Amocrm { rate_per_sec, .. }
                        | ResolverConfig::Http { rate_per_sec, .. } => *rate_per_sec,
                        _ => None,
                    };
                    if let Some(rate) = rate {
                        if !(rate.is_finite() && rate > 0.0 && rate <= 1000.0) {
                            return err(
                                &section,
                                "rate_per_sec",
                                format!("is {rate}, expected requests per second such as 2"),
                            );
                        }
                    }
                    if let ResolverConfig::Table { path, .. } = resolver {
                        if path.as_os_str().is_empty() {
                            return err(
                                &section,
                                "path",
                                "is empty, expected the CSV file phone,extension[,name]".into(),
                            );
                        }
                    }
                }
                Ok(())
            }),
            Box::new(|| {
                if self.storage.dir.as_os_str().is_empty() {
                    return err(
                        "storage",
                        "dir",
                        "is empty, expected a writable directory such as \"/var/lib/deskhook\"".into(),
                    );
                }
                Ok(())
            }),
            Box::new(|| {
                let Some(url) = self.storage.shared_history() else {
                    return Ok(());
                };
                if let Err(problem) = crate::postgres::PgTarget::parse(url) {
                    return err(
                        "storage",
                        "history",
                        format!(
                            "{problem}; expected \"postgres://user:password@host/database?sslmode=verify-full\" or \"sqlite\""
                        ),
                    );
                }
                if self.storage.history_timeout.get().is_zero() {
                    return err("storage", "history_timeout", "is 0, expected a short wait such as \"250ms\"".into());
                }
                Ok(())
            }),
            Box::new(|| {
                let name = &self.pbx.name;
                if name.len() > 64 || name.chars().any(|c| c.is_control() || c.is_whitespace()) {
                    return err(
                        "pbx",
                        "name",
                        format!("{name:?} is not a short name, expected up to 64 characters without spaces (e.g. \"msk-1\")"),
                    );
                }
                Ok(())
            }),
        ];
        checks.iter().filter_map(|check| check().err()).collect()
    }

    /// This PBX's name in the shared call history: `[pbx] name`, or the machine's host name.
    pub(crate) fn pbx_name(&self) -> String {
        if !self.pbx.name.is_empty() {
            return self.pbx.name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| "pbx".to_string())
    }

    /// The time zone of the helpdesk's `datetime` field.
    pub fn time_zone(&self) -> jiff::tz::TimeZone {
        if self.pbx.timezone.is_empty() {
            jiff::tz::TimeZone::system()
        } else {
            jiff::tz::TimeZone::get(&self.pbx.timezone).unwrap_or_else(|_| jiff::tz::TimeZone::system())
        }
    }
}

pub(crate) fn check_http_url(raw: &str) -> Result<url::Url, String> {
    let parsed = url::Url::parse(raw).map_err(|err| match redacted_url(raw) {
        shown if shown.starts_with('<') => format!("is not a URL ({err})"),
        shown => format!("{shown:?} is not a URL ({err})"),
    })?;
    match parsed.scheme() {
        "http" | "https" => {}
        other => return Err(format!("scheme {other:?} is not supported")),
    }
    if parsed.host_str().is_none() {
        return Err("the URL has no host".into());
    }
    Ok(parsed)
}

/// Turns toml's error into `file: [section] key: message`, finding the section and key from the span.
fn toml_error(text: &str, file: &str, error: &toml::de::Error) -> ConfigError {
    let message = error.message().trim().replace('\n', " ");
    let Some(span) = error.span() else {
        return ConfigError::new(file, "-", "-", plain_words(&message));
    };
    let before = &text[..span.start.min(text.len())];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[line_start..].find('\n').map_or(text.len(), |i| line_start + i);
    let line = text[line_start..line_end].trim();
    let line_number = before.matches('\n').count() + 1;
    // The table the span is in: the last header before it (or the header it points at).
    let mut header: Option<(usize, &str)> = None;
    for (offset, candidate) in line_offsets(text) {
        if offset > line_start {
            break;
        }
        if candidate.trim().starts_with('[') {
            header = Some((offset, candidate.trim()));
        }
    }
    let Some((header_at, header)) = header else {
        if line.contains('=') || line.is_empty() {
            let key = line.split_once('=').map_or("-", |(key, _)| key.trim().trim_matches('"'));
            return ConfigError::new(file, "-", key, plain_words(&message));
        }
        return ConfigError::new(file, "-", "-", format!("line {line_number} is not valid TOML ({message}): {line:?}"));
    };
    let name = header.trim_matches(|c| c == '[' || c == ']').trim();
    // `[[forward.resolvers]]` is a list: name which one.
    let section = if header.starts_with("[[") {
        let index = line_offsets(text).filter(|(offset, l)| *offset <= header_at && l.trim() == header).count();
        format!("{name} #{index}")
    } else {
        name.to_string()
    };
    let table_end = line_offsets(text)
        .find(|(offset, l)| *offset > header_at && l.trim().starts_with('['))
        .map_or(text.len(), |(offset, _)| offset);
    let table = &text[header_at..table_end];
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next());
    let unknown = message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next());
    let key = match (line.split_once('='), missing, unknown) {
        (_, Some(field), _) => return ConfigError::new(file, &section, field, "is missing".to_string()),
        (_, _, Some(field)) => field.to_string(),
        (Some((key, _)), _, _) if !line.starts_with('[') => key.trim().trim_matches('"').to_string(),
        // A tagged table (e.g. a resolver) points at its header: find the line with the value.
        _ => offending_key(table, &message).unwrap_or_else(|| "-".to_string()),
    };
    if line.starts_with('[') && key == "-" && !message.contains("expected") {
        return ConfigError::new(file, &section, "-", format!("line {line_number}: {}", plain_words(&message)));
    }
    ConfigError::new(file, &section, &key, plain_words(&message))
}

/// The first `[[forward.resolvers]]` entry serde refuses, named by its place in the list and
/// its key (serde's own error points at the list, not at the entry).
fn resolver_error(text: &str, file: &str) -> Option<ConfigError> {
    let table: toml::Table = toml::from_str(text).ok()?;
    let resolvers = table.get("forward")?.get("resolvers")?.as_array()?;
    resolvers.iter().enumerate().find_map(|(index, entry)| {
        let error = entry.clone().try_into::<ResolverConfig>().err()?;
        let message = error.message().trim().replace('\n', " ");
        let section = format!("forward.resolvers #{}", index + 1);
        let field =
            |prefix: &str| message.strip_prefix(prefix).and_then(|rest| rest.split('`').next()).map(str::to_string);
        if let Some(missing) = field("missing field `") {
            return Some(ConfigError::new(file, &section, &missing, "is missing"));
        }
        if let Some(unknown) = field("unknown field `") {
            return Some(ConfigError::new(file, &section, &unknown, plain_words(&message)));
        }
        if message.starts_with("unknown variant") || message.starts_with("missing field `kind`") {
            return Some(ConfigError::new(file, &section, "kind", plain_words(&message)));
        }
        let entry_text = entry.as_table().map(|table| table.to_string()).unwrap_or_default();
        let key = offending_key(&entry_text, &message).unwrap_or_else(|| "-".to_string());
        Some(ConfigError::new(file, &section, &key, plain_words(&message)))
    })
}

/// Each line of `text` with the byte offset it starts at.
fn line_offsets(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut offset = 0;
    text.split_inclusive('\n').map(move |line| {
        let start = offset;
        offset += line.len();
        (start, line.trim_end_matches('\n'))
    })
}

/// The key of the line in `table` whose value serde's `message` quotes (`string "fast"`,
/// `integer `-5``).
fn offending_key(table: &str, message: &str) -> Option<String> {
    let value = message
        .split_once("string \"")
        .and_then(|(_, rest)| rest.split('"').next().map(|value| format!("\"{value}\"")))
        .or_else(|| message.split('`').nth(1).map(str::to_string))?;
    table.lines().find_map(|line| {
        let (key, found) = line.split_once('=')?;
        (found.trim() == value).then(|| key.trim().trim_matches('"').to_string())
    })
}

/// serde's words for a wrong value, in an admin's: `invalid type: string "x", expected usize`
/// becomes `"x" is text, expected a whole number`.
fn plain_words(message: &str) -> String {
    let expected = |what: &str| match what.trim() {
        "u8" | "u16" | "u32" | "u64" | "usize" => "a whole number (0 or more)".to_string(),
        "i8" | "i16" | "i32" | "i64" | "isize" => "a whole number".to_string(),
        "f32" | "f64" => "a number".to_string(),
        "a boolean" => "true or false".to_string(),
        "a string" => "a string in quotes".to_string(),
        "a sequence" => "a list such as [\"a\", \"b\"]".to_string(),
        other => other.to_string(),
    };
    let described = |found: &str| -> String {
        let found = found.trim();
        if let Some(text) = found.strip_prefix("string ") {
            format!("{text} is text")
        } else if let Some(number) = found.strip_prefix("integer ").or_else(|| found.strip_prefix("floating point ")) {
            format!("{} is a number", number.trim_matches('`'))
        } else if let Some(flag) = found.strip_prefix("boolean ") {
            format!("{} is true/false", flag.trim_matches('`'))
        } else {
            format!("{found} is given")
        }
    };
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some((found, wanted)) = rest.rsplit_once(", expected ") {
                let found = described(found);
                let found =
                    if prefix == "invalid value: " { found.replace(" is a number", " is out of range") } else { found };
                return format!("{found}, expected {}", expected(wanted));
            }
        }
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_config_is_valid_with_defaults() {
        let config = Config::from_toml("", "config.toml").expect("defaults");
        assert_eq!(config.forward.budget_ms, 1500);
        assert_eq!(config.forward.listen, "127.0.0.1:8077");
        assert_eq!(config.helpdesk.retention.get(), Duration::from_secs(7 * 86_400));
        assert_eq!(config.recordings.mode, RecordingMode::Off);
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../config.example.toml");
        let config = Config::from_toml(text, "config.example.toml").expect("the documented example must be valid");
        assert_eq!(config.pbx.trunks, vec!["provider".to_string()]);
        assert!(!config.forward.resolvers.is_empty());
        assert!(config.sinks.is_empty(), "the example's sinks are commented out");
        // The commented [[sinks]] examples are valid too once uncommented.
        let mut in_sinks = false;
        let uncommented: String = text
            .lines()
            .map(|line| {
                in_sinks = (in_sinks || line == "# [[sinks]]") && !line.is_empty();
                match line.strip_prefix("# ").or_else(|| (line == "#").then_some("")) {
                    Some(rest) if in_sinks => format!("{rest}\n"),
                    _ => format!("{line}\n"),
                }
            })
            .collect();
        let config = Config::from_toml(&uncommented, "config.example.toml").expect("the sink examples must be valid");
        let names: Vec<&str> = config.sinks.iter().map(|sink| sink.name.as_str()).collect();
        assert_eq!(names, ["warehouse", "desk", "deskie", "b24", "amo"]);
    }

    #[test]
    fn errors_say_what_is_wrong_in_plain_words_and_which_resolver() {
        let shown = |toml: &str| Config::from_toml(toml, "/etc/deskhook/config.toml").expect_err("refused").to_string();
        assert_eq!(
            shown("[forward]\nbudget_ms = -5\n"),
            "/etc/deskhook/config.toml: [forward] budget_ms: -5 is out of range, expected a whole number (0 or more)"
        );
        assert_eq!(
            shown("[helpdesk]\nmax_parallel = \"many\"\n"),
            "/etc/deskhook/config.toml: [helpdesk] max_parallel: \"many\" is text, expected a whole number (0 or more)"
        );
        assert_eq!(
            shown("[recordings]\ndelete_after_upload = \"yes\"\n"),
            "/etc/deskhook/config.toml: [recordings] delete_after_upload: \"yes\" is text, expected true or false"
        );
        assert_eq!(
            shown("[[forward.resolvers]]\nkind = \"table\"\npath = \"/a\"\n[[forward.resolvers]]\nkind = \"amocrm\"\nbase_url = \"https://x\"\n"),
            "/etc/deskhook/config.toml: [forward.resolvers #2] token: is missing"
        );
        let timeout = shown("[[forward.resolvers]]\nkind = \"table\"\npath = \"/x\"\ntimeout_ms = \"fast\"\n");
        assert!(timeout.contains("[forward.resolvers #1] timeout_ms: \"fast\" is text"), "{timeout}");
        assert!(
            shown("[[forward.resolvers]]\nkind = \"tabel\"\n").contains("[forward.resolvers #1] kind: unknown variant")
        );
        assert_eq!(
            shown("garbage"),
            "/etc/deskhook/config.toml: line 1 is not valid TOML (expected `.`, `=`): \"garbage\""
        );
        let url = shown("[helpdesk]\nwebhook_url = \"::nonsense\"\n");
        assert!(url.contains("webhook_url: is not a URL") && !url.contains("<unparsable"), "{url}");
        for wording in ["expected usize", "expected u64", "[-]", "<unparsable url>"] {
            assert!(!timeout.contains(wording) && !url.contains(wording), "{wording}");
        }
    }

    #[test]
    fn omnidesks_read_only_ari_needs_its_own_long_password_and_tls_beyond_loopback() {
        let key_of = |toml: &str| {
            let error = Config::from_toml(toml, "config.toml").expect_err("refused");
            assert_eq!(error.section, "omnidesk_endpoints", "{error}");
            error.key
        };
        let base = "[ari]\npassword = \"ari-password-12345\"\n[omnidesk_endpoints]\nusername = \"omnidesk\"\n";
        assert_eq!(key_of(&format!("{base}listen = \"0.0.0.0:8089\"\npassword = \"short\"\n")), "password");
        assert_eq!(
            key_of(&format!("{base}listen = \"0.0.0.0:8089\"\npassword = \"ari-password-12345\"\n")),
            "password"
        );
        assert_eq!(
            key_of(&format!("{base}listen = \"0.0.0.0:8089\"\npassword = \"long-enough-password\"\n")),
            "tls_cert"
        );
        assert_eq!(key_of(&format!("{base}listen = \"8089\"\npassword = \"long-enough-password\"\n")), "listen");
        let config = Config::from_toml(
            &format!("{base}listen = \"127.0.0.1:8089\"\npassword = \"long-enough-password\"\n"),
            "config.toml",
        )
        .expect("loopback behind a TLS proxy");
        assert!(!format!("{config:?}").contains("long-enough-password"));
    }

    #[test]
    fn durations_longer_than_ten_years_are_refused_by_key() {
        for toml in
            ["[recordings]\nwait_timeout = 9223372036854775807\n", "[recordings]\nwait_timeout = \"99999999d\"\n"]
        {
            let error = Config::from_toml(toml, "config.toml").expect_err("too long");
            assert_eq!((error.section.as_str(), error.key.as_str()), ("recordings", "wait_timeout"), "{error}");
            assert!(error.message.contains("at most \"3650d\""), "{error}");
        }
        let error = Config::from_toml(
            "[[sinks]]\nname = \"j\"\nkind = \"json\"\nurl = \"https://x/y\"\nretention = \"100000d\"\n",
            "config.toml",
        )
        .expect_err("too long");
        assert!(error.to_string().contains("[sinks.j] retention: "), "{error}");
        Config::from_toml("[recordings]\nwait_timeout = \"3650d\"\n", "config.toml").expect("ten years is fine");
    }

    #[test]
    fn errors_name_section_key_and_expectation() {
        let error = Config::from_toml("[pbx]\ntimezone = \"Moscow\"\n", "config.toml").expect_err("bad zone");
        assert_eq!(error.section, "pbx");
        assert_eq!(error.key, "timezone");
        assert!(error.to_string().starts_with("config.toml: [pbx] timezone: unknown time zone"), "{error}");

        let error = Config::from_toml("[forward]\nbudget_ms = \"fast\"\n", "config.toml").expect_err("bad type");
        assert_eq!((error.section.as_str(), error.key.as_str()), ("forward", "budget_ms"), "{error}");

        let error = Config::from_toml("[ari]\nurll = \"http://x\"\n", "config.toml").expect_err("typo");
        assert_eq!((error.section.as_str(), error.key.as_str()), ("ari", "urll"), "{error}");
        assert!(error.message.contains("unknown field"), "{error}");

        let error = Config::from_toml("[pbx]\nextension_pattern = '^(\\d+$'\n", "c.toml").expect_err("bad regex");
        assert_eq!(error.key, "extension_pattern");

        let error = Config::from_toml("[helpdesk]\nretention = \"7 weeks\"\n", "c.toml").expect_err("bad duration");
        assert_eq!((error.section.as_str(), error.key.as_str()), ("helpdesk", "retention"), "{error}");
    }

    #[test]
    fn the_idle_timeout_must_outlast_the_ping_interval() {
        let error =
            Config::from_toml("[ari]\nping_interval = \"10s\"\nidle_timeout = \"5s\"\n", "c").expect_err("too short");
        assert_eq!((error.section.as_str(), error.key.as_str()), ("ari", "idle_timeout"), "{error}");
    }

    #[test]
    fn the_recording_format_is_a_plain_extension() {
        let error = Config::from_toml("[recordings]\nformat = \"../wav\"\n", "c").expect_err("not a format");
        assert_eq!((error.section.as_str(), error.key.as_str()), ("recordings", "format"), "{error}");
        assert!(Config::from_toml("[recordings]\nmode = \"ari\"\nformat = \"gsm\"\n", "c").is_ok());
    }

    #[test]
    fn durations_accept_units_and_plain_seconds() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("7d"), Some(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("5 m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("m"), None);
        assert_eq!(parse_duration("5 fortnights"), None);
        let config = Config::from_toml("[helpdesk]\nretention = 60\n", "c").expect("seconds");
        assert_eq!(config.helpdesk.retention.get(), Duration::from_secs(60));
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let config = Config::from_toml(
            "[ari]\npassword = \"hunter2\"\n[helpdesk]\nwebhook_url = \"https://desk.example/webhooks/asterisk/tok3n\"\n\
             [[forward.resolvers]]\nkind = \"amocrm\"\nbase_url = \"https://x.amocrm.ru\"\ntoken = \"sekret\"\n",
            "c",
        )
        .expect("valid");
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("tok3n") && !shown.contains("sekret"), "{shown}");
        assert!(shown.contains("https://desk.example"));
    }

    #[test]
    fn resolvers_are_tagged_by_kind() {
        let config = Config::from_toml(
            "[[forward.resolvers]]\nkind = \"table\"\npath = \"/tmp/m.csv\"\n[[forward.resolvers]]\nkind = \"history\"\n",
            "c",
        )
        .expect("valid");
        let kinds: Vec<_> = config.forward.resolvers.iter().map(ResolverConfig::kind).collect();
        assert_eq!(kinds, ["table", "history"]);
        let error = Config::from_toml("[[forward.resolvers]]\nkind = \"oracle\"\n", "c").expect_err("unknown kind");
        assert!(error.message.contains("oracle"), "{error}");
    }
}
