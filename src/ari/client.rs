//! The ARI REST client: `/asterisk/info`, `/endpoints`, `/channels`, `/bridges`, channel
//! variables, and the snoop/record/stored-recording calls of ARI recording mode, with errors
//! that name the admin's fix (http.conf, ari.conf, TLS, credentials).
//!
//! Credentials travel only in the `Authorization` header, never in a URL, so no URL this
//! module logs or returns in an error can carry the password.

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde::de::DeserializeOwned;
use tokio::io::AsyncWriteExt;

use crate::config::{redacted_url, AriConfig};

use super::model::{AsteriskInfo, Bridge, Channel, Endpoint, LiveRecording, StoredRecording};

/// A stored recording's download may take long (hundreds of MB from a remote PBX): it has no
/// overall limit short of this, only a limit on silence between chunks (`[ari] request_timeout`).
const DOWNLOAD_LIMIT: Duration = Duration::from_secs(6 * 3600);

/// What went wrong talking to ARI, phrased so that [`AriError::fix`] can say what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AriError {
    #[error("[ari] url {0:?} is not usable: {1}")]
    BadUrl(String, String),
    #[error("nothing listens at {address} (connection refused)")]
    Refused { address: String },
    #[error("{address} did not answer in time")]
    Timeout { address: String },
    #[error("TLS with {address} failed: {detail}")]
    Tls { address: String, detail: String },
    #[error("the TLS certificate of {address} is not trusted: {detail}")]
    Certificate { address: String, detail: String },
    #[error("{address} speaks plain HTTP, but [ari] url says https://")]
    TlsToPlainPort { address: String },
    #[error("{address} speaks TLS, but [ari] url says http://")]
    PlainToTlsPort { address: String },
    #[error("Asterisk rejected the login of ARI user {username:?} (HTTP 401)")]
    Unauthorized { username: String },
    #[error("Asterisk's HTTP server at {address} has no ARI at {path} (HTTP 404)")]
    NoAri { address: String, path: String },
    #[error("{what} not found")]
    NotFound { what: String },
    #[error("ARI answered {path} with HTTP {status}: {message}")]
    Status { path: String, status: u16, message: String },
    #[error("talking to {address} failed: {detail}")]
    Network { address: String, detail: String },
    #[error("cannot resolve {host}: the name is unknown to this host's DNS")]
    Unresolvable { host: String },
    #[error("ARI's answer to {path} is not what ARI sends: {detail}")]
    Decode { path: String, detail: String },
}

impl AriError {
    /// The admin's fix, one or two sentences naming the file and key to change.
    pub(crate) fn fix(&self) -> String {
        match self {
            AriError::BadUrl(..) => "set [ari] url to Asterisk's HTTP server, e.g. \"http://127.0.0.1:8088\"".into(),
            AriError::Unresolvable { host } => format!(
                "check the spelling of {host} in [ari] url and this host's DNS (/etc/resolv.conf); on the PBX host \
                 itself use http://127.0.0.1:8088"
            ),
            AriError::Refused { address } => format!(
                "enable Asterisk's HTTP server in /etc/asterisk/http.conf ([general] enabled = yes, \
                 bindaddr = 127.0.0.1, bindport = 8088), run `asterisk -rx \"module reload http\"`, and make \
                 [ari] url use that port (now {address})"
            ),
            AriError::Timeout { address } => format!(
                "check that Asterisk runs and that no firewall drops traffic to {address}; \
                 [ari] request_timeout sets how long deskhook waits"
            ),
            AriError::Tls { address, .. } => format!(
                "check http.conf's tlsenable/tlsbindaddr/tlscertfile for {address}, or use http:// on \
                 127.0.0.1 when deskhook runs on the PBX host"
            ),
            AriError::Certificate { address, .. } => format!(
                "give [ari] ca_file the PEM file of {address}'s certificate (self-signed, as Asterisk's usually is) \
                 or of its CA, or use http://127.0.0.1:8088 when deskhook runs on the PBX host"
            ),
            AriError::TlsToPlainPort { address } => format!(
                "{address} is http.conf's plain port: write http:// in [ari] url, or enable TLS in http.conf \
                 (tlsenable = yes, tlsbindaddr = 0.0.0.0:8089, tlscertfile, tlsprivatekey) and point url at \
                 tlsbindaddr's port"
            ),
            AriError::PlainToTlsPort { address } => {
                format!("{address} is http.conf's TLS port (tlsbindaddr): write https:// in [ari] url")
            }
            AriError::Unauthorized { username } => format!(
                "set [ari] username and password to a user of /etc/asterisk/ari.conf ([{username}] \
                 type = user, password = …, read_only = no), then `asterisk -rx \"module reload res_ari.so\"`"
            ),
            AriError::NoAri { .. } => "enable ARI: /etc/asterisk/ari.conf [general] enabled = yes, load res_ari.so \
                 and the res_ari_* modules (`asterisk -rx \"module load res_ari.so\"`); if http.conf sets a \
                 prefix, add it to [ari] url"
                .into(),
            AriError::NotFound { .. } => "nothing to fix: the object is gone".into(),
            AriError::Status { status: 403, .. } => {
                "give the ARI user write access in ari.conf (read_only = no)".into()
            }
            AriError::Status { status: 503, .. } => {
                "none needed if Asterisk is starting or restarting; otherwise check that it is fully booted \
                 (`asterisk -rx \"core show uptime\"`)"
                    .into()
            }
            AriError::Status { .. } | AriError::Network { .. } | AriError::Decode { .. } => {
                "check Asterisk's log (/var/log/asterisk/messages) for the ARI request".into()
            }
        }
    }

    /// The fix when ARI worked before and stopped answering: a refused or unavailable server
    /// then means Asterisk is restarting or stopped, not that http.conf is wrong.
    pub(crate) fn fix_after_outage(&self) -> String {
        match self {
            AriError::Refused { .. } | AriError::Timeout { .. } | AriError::Status { status: 503, .. } => {
                "none if Asterisk is restarting; otherwise start it (`systemctl status asterisk`); deskhook \
                 reconnects by itself"
                    .into()
            }
            _ => self.fix(),
        }
    }

    /// A short stable name of the kind of failure, so a reconnect loop can log a change once.
    pub(crate) fn class(&self) -> &'static str {
        match self {
            AriError::BadUrl(..) => "bad-url",
            AriError::Refused { .. } => "refused",
            AriError::Timeout { .. } => "timeout",
            AriError::Tls { .. } => "tls",
            AriError::Certificate { .. } => "certificate",
            AriError::TlsToPlainPort { .. } => "tls-to-plain",
            AriError::PlainToTlsPort { .. } => "plain-to-tls",
            AriError::Unauthorized { .. } => "unauthorized",
            AriError::NoAri { .. } => "no-ari",
            AriError::NotFound { .. } => "not-found",
            AriError::Status { .. } => "status",
            AriError::Network { .. } => "network",
            AriError::Unresolvable { .. } => "dns",
            AriError::Decode { .. } => "decode",
        }
    }
}

/// Why a stored recording could not be downloaded: ARI failed, or the local file could not be written.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    #[error(transparent)]
    Ari(#[from] AriError),
    #[error("cannot write {path}: {source}; check that storage.dir is writable by deskhook and the disk is not full")]
    File { path: String, source: std::io::Error },
}

/// Where ARI lives, derived once from `[ari] url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AriEndpoint {
    /// `http(s)://host:port[/prefix]` without a trailing slash.
    base: String,
    /// `host:port`, safe to log.
    address: String,
    tls: bool,
}

impl AriEndpoint {
    pub(crate) fn from_url(raw: &str) -> Result<Self, AriError> {
        let parsed = url::Url::parse(raw).map_err(|err| AriError::BadUrl(redacted_url(raw), err.to_string()))?;
        let tls = match parsed.scheme() {
            "http" => false,
            "https" => true,
            other => return Err(AriError::BadUrl(redacted_url(raw), format!("scheme {other:?} is not http/https"))),
        };
        let host = parsed.host_str().ok_or_else(|| AriError::BadUrl(redacted_url(raw), "no host".into()))?;
        let port = parsed.port_or_known_default().unwrap_or(if tls { 443 } else { 80 });
        let host_part = if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.into() };
        let address = format!("{host_part}:{port}");
        let prefix = parsed.path().trim_end_matches('/');
        let base = format!("{}://{address}{prefix}", parsed.scheme());
        Ok(Self { base, address, tls })
    }

    /// `host:port`.
    pub(crate) fn address(&self) -> &str {
        &self.address
    }

    pub(crate) fn is_tls(&self) -> bool {
        self.tls
    }

    /// The REST URL of an ARI path such as `/channels`.
    pub(crate) fn rest_url(&self, path: &str) -> String {
        format!("{}/ari{path}", self.base)
    }

    /// The same server with the other scheme (to tell a TLS/plain mismatch).
    pub(crate) fn with_other_scheme(&self) -> Self {
        let (from, to) = if self.tls { ("https://", "http://") } else { ("http://", "https://") };
        Self { base: self.base.replacen(from, to, 1), address: self.address.clone(), tls: !self.tls }
    }

    /// The event websocket URL: `ws(s)://host:port[/prefix]/ari/events?app=…&subscribeAll=true`.
    pub(crate) fn events_url(&self, app: &str) -> String {
        let scheme_swapped = if self.tls {
            self.base.replacen("https://", "wss://", 1)
        } else {
            self.base.replacen("http://", "ws://", 1)
        };
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("app", app)
            .append_pair("subscribeAll", "true")
            .finish();
        format!("{scheme_swapped}/ari/events?{query}")
    }
}

/// ARI's REST API with the configured user.
#[derive(Clone)]
pub struct AriClient {
    http: reqwest::Client,
    endpoint: AriEndpoint,
    username: String,
    password: String,
    /// The longest silence between two chunks of a download.
    chunk_timeout: Duration,
}

impl std::fmt::Debug for AriClient {
    // The password must never reach a log line, even through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AriClient").field("endpoint", &self.endpoint).field("username", &self.username).finish()
    }
}

/// `{"message": "..."}`, ARI's error body.
#[derive(serde::Deserialize)]
struct ErrorBody {
    message: String,
}

/// `{"value": "..."}`, ARI's variable body.
#[derive(serde::Deserialize)]
struct VariableBody {
    value: String,
}

impl AriClient {
    pub fn new(config: &AriConfig) -> Result<Self, AriError> {
        Self::with_endpoint(AriEndpoint::from_url(&config.url)?, config, false)
    }

    fn with_endpoint(
        endpoint: AriEndpoint,
        config: &AriConfig,
        accept_any_certificate: bool,
    ) -> Result<Self, AriError> {
        let timeout = config.request_timeout.get().max(Duration::from_millis(100));
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .danger_accept_invalid_certs(accept_any_certificate)
            .pool_idle_timeout(Duration::from_secs(30))
            // Asterisk is reached directly, like the event websocket (which cannot take a
            // proxy): an HTTP_PROXY set for the helpdesk must not carry ARI's REST calls.
            .no_proxy();
        if !config.ca_file.is_empty() {
            // Asterisk's certificate is checked against the admin's CA only.
            let certificates = super::tls::ca_certificates(&config.ca_file)
                .map_err(|problem| AriError::BadUrl(endpoint.address.clone(), format!("[ari] ca_file: {problem}")))?;
            builder = builder.tls_built_in_root_certs(false);
            for certificate in certificates {
                let certificate = reqwest::Certificate::from_der(&certificate)
                    .map_err(|err| AriError::BadUrl(endpoint.address.clone(), format!("[ari] ca_file: {err}")))?;
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|err| AriError::BadUrl(endpoint.address.clone(), err.to_string()))?;
        Ok(Self {
            http,
            endpoint,
            username: config.username.clone(),
            password: config.password.expose().to_string(),
            chunk_timeout: timeout,
        })
    }

    pub(crate) async fn asterisk_info(&self) -> Result<AsteriskInfo, AriError> {
        self.get_json("/asterisk/info").await
    }

    pub async fn endpoints(&self) -> Result<Vec<Endpoint>, AriError> {
        self.get_json("/endpoints").await
    }

    /// `GET /endpoints` as Asterisk wrote it (every field, for a facade that passes it on).
    pub(crate) async fn endpoints_json(&self) -> Result<serde_json::Value, AriError> {
        self.get_json("/endpoints").await
    }

    /// `GET /asterisk/info` as Asterisk wrote it.
    pub(crate) async fn asterisk_info_json(&self) -> Result<serde_json::Value, AriError> {
        self.get_json("/asterisk/info").await
    }

    pub(crate) async fn channels(&self) -> Result<Vec<Channel>, AriError> {
        self.get_json("/channels").await
    }

    pub(crate) async fn bridges(&self) -> Result<Vec<Bridge>, AriError> {
        self.get_json("/bridges").await
    }

    /// A channel variable or dialplan function read through a live channel, e.g.
    /// `QUEUE_MEMBER_LIST(support)`. `NotFound` when the channel or plain variable does not exist.
    pub async fn channel_variable(&self, channel_id: &str, variable: &str) -> Result<String, AriError> {
        let path = format!("/channels/{}/variable", encode_segment(channel_id));
        let response = self.send(&path, &[("variable", variable)]).await?;
        let body: VariableBody = decode(&path, response).await?;
        Ok(body.value)
    }

    /// `POST /channels/{id}/snoop?spy=both&whisper=none`: a Snoop channel that hears both
    /// directions of `channel_id` and enters Stasis application `app`. Works on channels that
    /// are not in Stasis themselves (`probes.md` b).
    pub(crate) async fn snoop(&self, channel_id: &str, app: &str, snoop_id: &str) -> Result<Channel, AriError> {
        let path = format!("/channels/{}/snoop", encode_segment(channel_id));
        let query = [("spy", "both"), ("whisper", "none"), ("app", app), ("snoopId", snoop_id)];
        let response = self.send_method(Method::POST, &path, &query).await?;
        decode(&path, response).await
    }

    /// `POST /channels/{id}/record`: records the channel (which must be in Stasis, e.g. a
    /// snoop channel) into stored recording `name`, overwriting one of that name, no beep,
    /// no DTMF termination, no length limit. A channel not in Stasis answers HTTP 409.
    pub(crate) async fn record(&self, channel_id: &str, name: &str, format: &str) -> Result<LiveRecording, AriError> {
        let path = format!("/channels/{}/record", encode_segment(channel_id));
        let query =
            [("name", name), ("format", format), ("ifExists", "overwrite"), ("beep", "false"), ("terminateOn", "none")];
        let response = self.send_method(Method::POST, &path, &query).await?;
        decode(&path, response).await
    }

    /// `POST /recordings/live/{name}/stop`: ends a live recording; it becomes a stored one.
    /// `NotFound` when it already ended (its channel hung up, or deskhook's app disconnected).
    pub(crate) async fn stop_live_recording(&self, name: &str) -> Result<(), AriError> {
        let path = format!("/recordings/live/{}/stop", encode_segment(name));
        self.send_method(Method::POST, &path, &[]).await.map(drop)
    }

    /// `GET /recordings/live/{name}`; `NotFound` once it has ended.
    pub(crate) async fn live_recording(&self, name: &str) -> Result<LiveRecording, AriError> {
        self.get_json(&format!("/recordings/live/{}", encode_segment(name))).await
    }

    /// `POST /events/user/{name}?application=…` with `{"variables": …}`: a `ChannelUserevent`
    /// that Asterisk queues on `application`'s event websocket behind every event already queued
    /// there, so its arrival marks "everything before this request has been received".
    pub(crate) async fn user_event(
        &self,
        name: &str,
        application: &str,
        variables: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<(), AriError> {
        let path = format!("/events/user/{}", encode_segment(name));
        let body = serde_json::json!({ "variables": variables });
        self.send_full(Method::POST, &path, &[("application", application)], None, Some(&body)).await.map(drop)
    }

    /// `PUT /applications/{name}/eventFilter` (Asterisk 13.26 / 16.3 and later): from now on
    /// Asterisk sends `application` only events of the `allowed` types. The application must be
    /// registered, i.e. its event websocket connected. Both lists are given, so whatever filter
    /// an earlier run left is replaced, not merged.
    pub(crate) async fn filter_events(&self, application: &str, allowed: &[&str]) -> Result<(), AriError> {
        let path = format!("/applications/{}/eventFilter", encode_segment(application));
        let allowed: Vec<serde_json::Value> = allowed.iter().map(|kind| serde_json::json!({ "type": kind })).collect();
        let body = serde_json::json!({ "allowed": allowed, "disallowed": [] });
        self.send_full(Method::PUT, &path, &[], None, Some(&body)).await.map(drop)
    }

    /// `DELETE /channels/{id}`: hangs a channel up (deskhook only hangs up its own snoops).
    pub(crate) async fn hangup(&self, channel_id: &str) -> Result<(), AriError> {
        let path = format!("/channels/{}", encode_segment(channel_id));
        self.send_method(Method::DELETE, &path, &[]).await.map(drop)
    }

    /// `GET /recordings/stored`.
    pub(crate) async fn stored_recordings(&self) -> Result<Vec<StoredRecording>, AriError> {
        self.get_json("/recordings/stored").await
    }

    /// `GET /recordings/stored/{name}`; `NotFound` while the recording is still live or gone.
    pub(crate) async fn stored_recording(&self, name: &str) -> Result<StoredRecording, AriError> {
        self.get_json(&format!("/recordings/stored/{}", encode_segment(name))).await
    }

    /// `GET /recordings/stored/{name}/file`, streamed into `destination` (created or truncated)
    /// chunk by chunk, never held in memory whole, and synced to disk. Returns the byte count.
    /// Each chunk must arrive within `[ari] request_timeout`.
    pub(crate) async fn download_stored_recording(&self, name: &str, destination: &Path) -> Result<u64, DownloadError> {
        let path = format!("/recordings/stored/{}/file", encode_segment(name));
        let mut response = self.send_with(Method::GET, &path, &[], Some(DOWNLOAD_LIMIT)).await?;
        let shown = destination.display().to_string();
        let file_error = |source: std::io::Error| DownloadError::File { path: shown.clone(), source };
        // A recording of a client's call: readable by deskhook's user and group only.
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o640)
            .open(destination)
            .await
            .map_err(file_error)?;
        let mut written = 0u64;
        loop {
            let chunk = match tokio::time::timeout(self.chunk_timeout, response.chunk()).await {
                Err(_) => return Err(AriError::Timeout { address: self.endpoint.address.clone() }.into()),
                Ok(Err(error)) => return Err(classify_reqwest(&error, &self.endpoint).into()),
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            file.write_all(&chunk).await.map_err(file_error)?;
            written += chunk.len() as u64;
        }
        file.flush().await.map_err(file_error)?;
        file.sync_all().await.map_err(file_error)?;
        Ok(written)
    }

    /// `DELETE /recordings/stored/{name}`: removes the file from Asterisk's spool.
    pub(crate) async fn delete_stored_recording(&self, name: &str) -> Result<(), AriError> {
        let path = format!("/recordings/stored/{}", encode_segment(name));
        self.send_method(Method::DELETE, &path, &[]).await.map(drop)
    }

    /// Tells a TLS/plain mismatch apart from other failures by asking the same port in the
    /// other scheme; returns the more precise error when the other scheme answers HTTP.
    pub(crate) async fn diagnose(&self, error: AriError, config: &AriConfig) -> AriError {
        let suspicious = match &error {
            AriError::Tls { .. } => self.endpoint.tls,
            AriError::Network { .. } | AriError::Timeout { .. } => true,
            _ => false,
        };
        if !suspicious {
            return error;
        }
        let Ok(other) = Self::with_endpoint(self.endpoint.with_other_scheme(), config, true) else {
            return error;
        };
        let url = other.endpoint.rest_url("/asterisk/info");
        match other.http.get(&url).timeout(Duration::from_secs(3)).send().await {
            Ok(_) if self.endpoint.tls => AriError::TlsToPlainPort { address: self.endpoint.address.clone() },
            Ok(_) => AriError::PlainToTlsPort { address: self.endpoint.address.clone() },
            Err(_) => error,
        }
    }

    async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, AriError> {
        let response = self.send(path, &[]).await?;
        decode(path, response).await
    }

    async fn send(&self, path: &str, query: &[(&str, &str)]) -> Result<reqwest::Response, AriError> {
        self.send_with(Method::GET, path, query, None).await
    }

    async fn send_method(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<reqwest::Response, AriError> {
        self.send_with(method, path, query, None).await
    }

    /// One request; `timeout` replaces `[ari] request_timeout` for the whole exchange.
    async fn send_with(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        timeout: Option<Duration>,
    ) -> Result<reqwest::Response, AriError> {
        self.send_full(method, path, query, timeout, None).await
    }

    /// One request with an optional JSON body.
    async fn send_full(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, &str)],
        timeout: Option<Duration>,
        body: Option<&serde_json::Value>,
    ) -> Result<reqwest::Response, AriError> {
        let url = self.endpoint.rest_url(path);
        let mut request = self.http.request(method, &url).basic_auth(&self.username, Some(&self.password));
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Some(timeout) = timeout {
            request = request.timeout(timeout);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(|err| classify_reqwest(&err, &self.endpoint))?;
        let status = response.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(response);
        }
        // ARI itself answers errors with a JSON `message`; Asterisk's HTTP server without ARI answers HTML.
        let (message, from_ari) = match response.text().await {
            Ok(text) => match serde_json::from_str::<ErrorBody>(&text) {
                Ok(body) => (body.message, true),
                Err(_) => (text.chars().take(200).collect::<String>().trim().to_string(), false),
            },
            Err(_) => (String::new(), false),
        };
        Err(match status {
            401 => AriError::Unauthorized { username: self.username.clone() },
            404 if !from_ari => AriError::NoAri { address: self.endpoint.address.clone(), path: format!("/ari{path}") },
            404 => AriError::NotFound { what: format!("{path} ({message})") },
            _ => AriError::Status { path: format!("/ari{path}"), status, message },
        })
    }
}

async fn decode<T: DeserializeOwned>(path: &str, response: reqwest::Response) -> Result<T, AriError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|err| AriError::Decode { path: format!("/ari{path}"), detail: err.to_string() })?;
    serde_json::from_slice(&bytes)
        .map_err(|err| AriError::Decode { path: format!("/ari{path}"), detail: err.to_string() })
}

/// Everything but RFC 3986's unreserved characters, so ids such as `1795237329.45` and
/// recording names such as `deskhook-1795237329.45-1` go as they are.
const PATH_SEGMENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

fn encode_segment(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, PATH_SEGMENT).to_string()
}

/// Turns reqwest's error into an [`AriError`] by what its source chain says.
fn classify_reqwest(error: &reqwest::Error, endpoint: &AriEndpoint) -> AriError {
    let address = endpoint.address.clone();
    let detail = error_chain(error);
    if error.is_timeout() {
        return AriError::Timeout { address };
    }
    classify_transport(&detail, has_refused_io(error), address, endpoint.tls)
}

/// Shared by REST and websocket: what a transport failure's text and kind mean.
pub(crate) fn classify_transport(detail: &str, refused: bool, address: String, tls: bool) -> AriError {
    let lower = detail.to_ascii_lowercase();
    if refused || lower.contains("connection refused") {
        return AriError::Refused { address };
    }
    if lower.contains("certificate") || lower.contains("unknownissuer") || lower.contains("notvalidforname") {
        return AriError::Certificate { address, detail: detail.to_string() };
    }
    if tls && (lower.contains("corrupt message") || lower.contains("invalidcontenttype") || lower.contains("tls")) {
        return AriError::Tls { address, detail: detail.to_string() };
    }
    if lower.contains("timed out") || lower.contains("deadline") {
        return AriError::Timeout { address };
    }
    if lower.contains("dns error") || lower.contains("failed to lookup address") {
        let host = address.rsplit_once(':').map_or(address.as_str(), |(host, _)| host).to_string();
        return AriError::Unresolvable { host };
    }
    AriError::Network { address, detail: detail.to_string() }
}

fn has_refused_io(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(io) = current.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = current.source();
    }
    false
}

pub(crate) use crate::failure::error_chain;

/// Whether an Asterisk version has `subscribeAll` on the event websocket (13.6 and newer).
/// `None` when the version string does not say (development builds such as `GIT-master-…`).
pub(crate) fn subscribe_all_supported(version: &str) -> Option<bool> {
    let version = version.trim();
    let version = version.strip_prefix("certified/").or_else(|| version.strip_prefix("certified-")).unwrap_or(version);
    let mut numbers = version.split(['.', '-']).map(|part| part.parse::<u32>().ok());
    let major = numbers.next().flatten()?;
    let minor = numbers.next().flatten().unwrap_or(0);
    Some(major > 13 || (major == 13 && minor >= 6))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_derived_from_the_configured_base() {
        let endpoint = AriEndpoint::from_url("http://127.0.0.1:8088").expect("valid");
        assert_eq!(endpoint.rest_url("/channels"), "http://127.0.0.1:8088/ari/channels");
        assert_eq!(endpoint.events_url("desk hook"), "ws://127.0.0.1:8088/ari/events?app=desk+hook&subscribeAll=true");
        assert_eq!(endpoint.address(), "127.0.0.1:8088");

        let prefixed = AriEndpoint::from_url("https://pbx.example/asterisk/").expect("valid");
        assert_eq!(prefixed.rest_url("/endpoints"), "https://pbx.example:443/asterisk/ari/endpoints");
        assert_eq!(
            prefixed.events_url("deskhook"),
            "wss://pbx.example:443/asterisk/ari/events?app=deskhook&subscribeAll=true"
        );
        assert_eq!(prefixed.with_other_scheme().rest_url("/x"), "http://pbx.example:443/asterisk/ari/x");

        assert!(matches!(AriEndpoint::from_url("ftp://x"), Err(AriError::BadUrl(..))));
    }

    #[test]
    fn path_segments_keep_unreserved_characters() {
        assert_eq!(encode_segment("deskhook-1795237329.45-1"), "deskhook-1795237329.45-1");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }

    #[test]
    fn the_client_never_shows_its_password() {
        let config = AriConfig { password: "hunter2".into(), ..AriConfig::default() };
        let client = AriClient::new(&config).expect("valid");
        assert!(!format!("{client:?}").contains("hunter2"));
    }

    #[test]
    fn subscribe_all_needs_asterisk_13_6() {
        assert_eq!(subscribe_all_supported("22.10.1"), Some(true));
        assert_eq!(subscribe_all_supported("13.6.0"), Some(true));
        assert_eq!(subscribe_all_supported("13.5.2"), Some(false));
        assert_eq!(subscribe_all_supported("12.8.2"), Some(false));
        assert_eq!(subscribe_all_supported("certified/13.8-cert3"), Some(true));
        assert_eq!(subscribe_all_supported("GIT-master-abc123"), None);
    }

    #[test]
    fn transport_failures_name_their_cause() {
        let refused =
            classify_transport("tcp connect error: Connection refused (os error 111)", false, "a:1".into(), false);
        assert_eq!(refused, AriError::Refused { address: "a:1".into() });
        let dns = classify_transport(
            "client error (Connect): dns error: failed to lookup address information: Name or service not known",
            false,
            "pbx.example:8088".into(),
            false,
        );
        assert_eq!(dns, AriError::Unresolvable { host: "pbx.example".into() });
        assert!(dns.to_string().starts_with("cannot resolve pbx.example") && dns.fix().contains("[ari] url"));
        let corrupt =
            classify_transport("received corrupt message of type InvalidContentType", false, "a:1".into(), true);
        assert!(matches!(corrupt, AriError::Tls { .. }));
        let cert = classify_transport("invalid peer certificate: UnknownIssuer", false, "a:1".into(), true);
        assert!(matches!(cert, AriError::Certificate { .. }));
        let closed = classify_transport("connection closed before message completed", false, "a:1".into(), false);
        assert!(matches!(closed, AriError::Network { .. }));
        assert!(AriError::Unauthorized { username: "deskhook".into() }.fix().contains("ari.conf"));
        assert!(AriError::Refused { address: "a:1".into() }.fix().contains("http.conf"));
    }
}
