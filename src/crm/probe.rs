//! What `deskhook check` asks a CRM sink's account, creating nothing there: Bitrix24's `scope`
//! (the webhook works and may call the telephony methods), amoCRM's `GET /api/v4/account`
//! (the token works); and whether the recordings are in a format the CRM takes.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::http::exchange;
use crate::config::{redacted_url, AmocrmSink, Bitrix24Auth, Bitrix24Sink, RecordingMode, RecordingsConfig};

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    Ok(String),
    Warning { text: String, fix: String },
    Problem { text: String, fix: String },
}

fn warning(text: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding::Warning { text: text.into(), fix: fix.into() }
}

fn problem(text: impl Into<String>, fix: impl Into<String>) -> Finding {
    Finding::Problem { text: text.into(), fix: fix.into() }
}

fn client() -> Result<reqwest::Client, Finding> {
    super::http::client(Duration::from_secs(5), Duration::from_secs(10)).map_err(|error| problem(error, "-"))
}

/// Checks a `bitrix24` sink.
pub(crate) async fn bitrix24(name: &str, config: &Bitrix24Sink, recordings: &RecordingsConfig) -> Vec<Finding> {
    let mut findings = recording_formats(recordings, "Bitrix24");
    let http = match client() {
        Ok(http) => http,
        Err(finding) => return vec![finding],
    };
    match &config.auth {
        Bitrix24Auth::App { portal_url, .. } => findings.push(Finding::Ok(format!(
            "bitrix24 sink: local application on {}; its token is renewed by `deskhook run` (not here: a renewal \
             uses up the refresh token)",
            redacted_url(portal_url)
        ))),
        Bitrix24Auth::Webhook { url } => {
            let host = redacted_url(url);
            let base = if url.ends_with('/') { url.clone() } else { format!("{url}/") };
            let request = http.post(format!("{base}scope.json")).json(&serde_json::json!({}));
            match exchange(request, &host).await {
                Err(result) => findings.push(problem(
                    format!("{host} is not reachable: {}", describe(result)),
                    "check DNS, the firewall and any proxy; the calls wait in the outbox meanwhile",
                )),
                Ok(answer) => {
                    let code = answer.json.get("error").and_then(Value::as_str).unwrap_or_default().to_string();
                    let scopes: Vec<String> = answer
                        .json
                        .get("result")
                        .and_then(Value::as_array)
                        .map(|scopes| scopes.iter().filter_map(Value::as_str).map(str::to_string).collect())
                        .unwrap_or_default();
                    if !code.is_empty() || !(200..300).contains(&answer.status) {
                        findings.push(problem(
                            format!(
                                "Bitrix24 at {host} refuses the webhook of [sinks.{name}] (HTTP {}{})",
                                answer.status,
                                if code.is_empty() { String::new() } else { format!(", {code}") }
                            ),
                            "make an inbound webhook with the scopes telephony, user and crm and put its address \
                             into webhook_url (docs/crm.md)",
                        ));
                    } else if !scopes.iter().any(|scope| scope == "telephony") {
                        findings.push(problem(
                            format!("the webhook of [sinks.{name}] lacks the telephony scope"),
                            "edit the inbound webhook in Bitrix24 and tick telephony (and user, crm)",
                        ));
                    } else {
                        findings.push(Finding::Ok(format!(
                            "bitrix24 sink: {host} accepts the webhook (scopes {})",
                            scopes.join(", ")
                        )));
                        if !scopes.iter().any(|scope| scope == "user") && config.users.is_empty() {
                            findings.push(warning(
                                format!("the webhook of [sinks.{name}] lacks the user scope and the sink has no users map"),
                                "tick the user scope (deskhook reads internal numbers with user.get) or set users = { \"101\" = \"11\" }",
                            ));
                        }
                    }
                }
            }
        }
    }
    findings
}

/// Checks an `amocrm` sink.
pub(crate) async fn amocrm(name: &str, config: &AmocrmSink) -> Vec<Finding> {
    let http = match client() {
        Ok(http) => http,
        Err(finding) => return vec![finding],
    };
    let host = redacted_url(&config.base_url);
    let url = format!("{}/api/v4/account", config.base_url.trim_end_matches('/'));
    match exchange(http.get(url).bearer_auth(config.token.expose()), &host).await {
        Err(result) => vec![problem(
            format!("{host} is not reachable: {}", describe(result)),
            "check DNS, the firewall and any proxy; the calls wait in the outbox meanwhile",
        )],
        Ok(answer) if (200..300).contains(&answer.status) => {
            let mut findings = vec![Finding::Ok(format!("amocrm sink: {host} accepts the token"))];
            if config.users.is_empty() {
                findings.push(warning(
                    format!("[sinks.{name}] has no users map: calls get no responsible user"),
                    "set users = { \"AMOCRM_USER_ID\" = \"EXTENSION\" } (the ids are in Settings → Users)",
                ));
            }
            findings
        }
        Ok(answer) if answer.status == 401 => vec![problem(
            format!("amoCRM at {host} refuses the token of [sinks.{name}] (HTTP 401)"),
            "make a new long-lived token (Settings → Integrations → your private integration → Keys and scopes)",
        )],
        Ok(answer) => vec![problem(
            format!("{host} answered HTTP {} where amoCRM's API would answer 200", answer.status),
            "check that base_url is the account's address, such as https://company.amocrm.ru",
        )],
    }
}

/// Warns when MixMonitor writes files the CRM will not take (it plays .wav and .mp3 only).
fn recording_formats(recordings: &RecordingsConfig, crm: &str) -> Vec<Finding> {
    match recordings.mode {
        RecordingMode::Ari => vec![warning(
            format!("recordings made through ARI go to the helpdesk sink only, not to {crm}"),
            "record with MixMonitor (recordings.mode = \"mixmonitor\") to attach recordings in the CRM",
        )],
        RecordingMode::Mixmonitor => {
            let mut others: Vec<String> = Vec::new();
            for dir in &recordings.dirs {
                collect_extensions(dir, 3, &mut others);
            }
            others.retain(|extension| !["wav", "mp3"].contains(&extension.to_ascii_lowercase().as_str()));
            others.sort();
            others.dedup();
            if others.is_empty() {
                Vec::new()
            } else {
                vec![warning(
                    format!(
                        "recordings in {} are .{}: {crm} takes .wav and .mp3 only",
                        recordings.dirs.iter().map(|dir| dir.display().to_string()).collect::<Vec<_>>().join(", "),
                        others.join(", .")
                    ),
                    "have MixMonitor write .wav (e.g. MixMonitor(${UNIQUEID}.wav)); other files are not attached",
                )]
            }
        }
        RecordingMode::Off => Vec::new(),
    }
}

/// The extensions of the files under `dir`, `depth` levels down (MixMonitor dirs are dated).
fn collect_extensions(dir: &Path, depth: usize, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten().take(500) {
        let path = entry.path();
        if path.is_dir() && depth > 0 {
            collect_extensions(&path, depth - 1, found);
        } else if let Some(extension) = path.extension().and_then(|ext| ext.to_str()) {
            if !found.iter().any(|known| known == extension) {
                found.push(extension.to_string());
            }
        }
    }
}

fn describe(result: crate::deliver::TryResult) -> String {
    match result {
        crate::deliver::TryResult::Transient { error, .. }
        | crate::deliver::TryResult::Rejected { error }
        | crate::deliver::TryResult::Unsendable { error } => error,
        crate::deliver::TryResult::Accepted => "no answer".into(),
    }
}
