//! Bitrix24's REST API as the `bitrix24` sink uses it: one [`Portal`] per sink that signs in
//! (an inbound webhook, or a local application's OAuth in [`oauth`]), waits for the portal's
//! rate limit (shared with the `/forward` resolver), and reads Bitrix24's answers: `result`,
//! or `error` + `error_description`, which become a retry or a refusal that names the fix.
//!
//! - [`users`]: which Bitrix24 user an extension is (`user.get`, `UF_PHONE_INNER`);
//! - [`delivery`]: the sink's requests sent as Bitrix24 means them (CALL_IDs, cards, records).

pub(crate) mod delivery;
pub(crate) mod oauth;
pub(crate) mod users;

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use super::http::{exchange, Answer};
use super::limiter::RateLimiter;
use crate::config::{redacted_url, Bitrix24Auth, Bitrix24Sink};
use crate::deliver::TryResult;
use crate::secret::Secret;

/// How long the portal is left alone after "too many requests" when it does not say.
const DEFAULT_REST: Duration = Duration::from_secs(2);

/// What a Bitrix24 call came to when it did not give a `result`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallError {
    /// Worth trying again later: the network, the portal's 5xx, its rate limit.
    Transient { error: String, retry_after: Option<Duration> },
    /// The portal refused the request: `code` is Bitrix24's `error`, `error` says it all with
    /// the fix.
    Refused { code: String, error: String },
}

impl From<CallError> for TryResult {
    fn from(error: CallError) -> TryResult {
        match error {
            CallError::Transient { error, retry_after } => TryResult::Transient { error, retry_after },
            CallError::Refused { error, .. } => TryResult::Rejected { error },
        }
    }
}

impl CallError {
    pub(crate) fn code(&self) -> &str {
        match self {
            CallError::Refused { code, .. } => code,
            CallError::Transient { .. } => "",
        }
    }
}

fn transient(result: TryResult) -> CallError {
    match result {
        TryResult::Transient { error, retry_after } => CallError::Transient { error, retry_after },
        TryResult::Rejected { error } | TryResult::Unsendable { error } => {
            CallError::Transient { error, retry_after: None }
        }
        TryResult::Accepted => CallError::Transient { error: "no answer".into(), retry_after: None },
    }
}

enum SignIn {
    /// `https://portal/rest/<user>/<token>/`, ending in a slash.
    Webhook {
        base: Secret,
    },
    App(Box<oauth::AppSession>),
}

/// One Bitrix24 portal, signed in.
pub(crate) struct Portal {
    http: reqwest::Client,
    host: String,
    sign_in: SignIn,
    limiter: Arc<RateLimiter>,
}

impl Portal {
    /// The portal of sink `sink` (its name keys its stored OAuth tokens).
    pub(crate) fn new(
        sink: &str,
        config: &Bitrix24Sink,
        http: reqwest::Client,
        journal: super::journal::CrmJournal,
    ) -> Portal {
        let (host, sign_in) = match &config.auth {
            Bitrix24Auth::Webhook { url } => {
                let mut base = url.trim().to_string();
                if !base.ends_with('/') {
                    base.push('/');
                }
                (redacted_url(url), SignIn::Webhook { base: Secret::new(base) })
            }
            Bitrix24Auth::App { portal_url, client_id, client_secret, refresh_token } => (
                redacted_url(portal_url),
                SignIn::App(Box::new(oauth::AppSession::new(
                    sink,
                    oauth::AppKeys {
                        portal_url: portal_url.clone(),
                        token_url: config.oauth_url.clone(),
                        client_id: client_id.clone(),
                        client_secret: client_secret.clone(),
                        refresh_token: refresh_token.clone(),
                    },
                    journal,
                ))),
            ),
        };
        let limiter = super::limiter::shared(&host, config.rate_per_sec, config.burst);
        Portal { http, host, sign_in, limiter }
    }

    /// `scheme://host[:port]`: what logs may show of the portal.
    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Waits for the portal's rate limit (a delivery waits as long as it takes).
    pub(crate) async fn wait_turn(&self) {
        self.limiter.acquire_patiently().await;
    }

    /// Calls `method` with `params`; its `result` on success.
    pub(crate) async fn call(&self, method: &str, params: &Value) -> Result<Value, CallError> {
        let mut answer = self.call_answer(method, params).await?;
        Ok(answer.get_mut("result").map(Value::take).unwrap_or(Value::Null))
    }

    /// Calls a listing method: its `result` and the `start` of the next page, if any.
    pub(crate) async fn call_paged(&self, method: &str, params: &Value) -> Result<(Value, Option<u64>), CallError> {
        let mut answer = self.call_answer(method, params).await?;
        let next = answer.get("next").and_then(Value::as_u64);
        Ok((answer.get_mut("result").map(Value::take).unwrap_or(Value::Null), next))
    }

    /// Calls `method`; Bitrix24's whole answer (`result`, `next`, `total`, `time`).
    async fn call_answer(&self, method: &str, params: &Value) -> Result<Value, CallError> {
        let mut refreshed = false;
        loop {
            self.wait_turn().await;
            let request = match &self.sign_in {
                SignIn::Webhook { base } => self.http.post(format!("{}{method}.json", base.expose())).json(params),
                SignIn::App(session) => {
                    let (endpoint, token) = session.access(&self.http, refreshed).await?;
                    self.http.post(format!("{endpoint}{method}.json")).query(&[("auth", token.as_str())]).json(params)
                }
            };
            let answer = exchange(request, &self.host).await.map_err(transient)?;
            match self.read(method, answer) {
                Err(CallError::Refused { code, .. })
                    if !refreshed && matches!(self.sign_in, SignIn::App(_)) && code == "expired_token" =>
                {
                    refreshed = true;
                }
                outcome => return outcome,
            }
        }
    }

    /// Bitrix24's answer as `result` or a [`CallError`] that says what to do.
    fn read(&self, method: &str, answer: Answer) -> Result<Value, CallError> {
        let code = answer.json.get("error").and_then(Value::as_str).unwrap_or_default().to_string();
        let description = answer.json.get("error_description").and_then(Value::as_str).unwrap_or_default();
        let host = &self.host;
        let said = if code.is_empty() {
            format!("HTTP {} from {host}: {}", answer.status, answer.quote())
        } else if description.is_empty() {
            format!("{method}: {code} (HTTP {} from {host})", answer.status)
        } else {
            format!("{method}: {code}: {description} (HTTP {} from {host})", answer.status)
        };
        if code.eq_ignore_ascii_case("QUERY_LIMIT_EXCEEDED") || answer.status == 429 || answer.status == 503 {
            let rest = answer.retry_after.unwrap_or(DEFAULT_REST);
            self.limiter.cool_down(rest);
            return Err(CallError::Transient { error: said, retry_after: Some(rest) });
        }
        if code.is_empty() && (200..300).contains(&answer.status) {
            return match answer.json.get("result") {
                Some(_) => Ok(answer.json),
                None => Err(CallError::Transient {
                    error: format!("{method}: an answer without a result from {host}: {}", answer.quote()),
                    retry_after: None,
                }),
            };
        }
        if answer.status >= 500 && !matches!(code.as_str(), "WRONG_AUTH_TYPE" | "ERROR_CORE") {
            return Err(CallError::Transient { error: said, retry_after: answer.retry_after });
        }
        let fix = match code.as_str() {
            "WRONG_AUTH_TYPE" => {
                "; Bitrix24 takes this method only from an application: set up a local application and give the \
                 sink portal_url, client_id, client_secret and refresh_token instead of webhook_url (docs/crm.md)"
            }
            "insufficient_scope" | "ACCESS_DENIED" => {
                "; give the webhook (or application) the scopes telephony, user and crm (docs/crm.md)"
            }
            "NO_AUTH_FOUND" | "INVALID_CREDENTIALS" | "invalid_token" | "expired_token" => {
                "; the webhook or token is wrong, expired or was deleted: make a new one (docs/crm.md)"
            }
            "ERROR_METHOD_NOT_FOUND" | "METHOD_NOT_FOUND" => "; the portal's plan or version lacks this method",
            _ => "",
        };
        Err(CallError::Refused { code, error: format!("{said}{fix}") })
    }
}
