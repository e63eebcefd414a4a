//! A Bitrix24 local application's sign-in: an access token that lives an hour, renewed with
//! the refresh token before it runs out. Bitrix24 hands out a new refresh token with every
//! renewal and the old one stops working, so the newest is kept in the CRM journal; the one in
//! the config is used again only when the admin puts a different one there.

use serde_json::Value;

use super::CallError;
use crate::crm::http::exchange;
use crate::crm::journal::{CrmJournal, StoredTokens};
use crate::secret::Secret;

/// A token this close to its end is renewed before use.
const RENEW_BEFORE_MS: i64 = 60_000;

/// What the config says about the application.
#[derive(Clone)]
pub(crate) struct AppKeys {
    pub portal_url: String,
    pub token_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub refresh_token: Secret,
}

/// The application's tokens of one sink.
pub(crate) struct AppSession {
    sink: String,
    keys: AppKeys,
    journal: CrmJournal,
    tokens: tokio::sync::Mutex<Option<StoredTokens>>,
}

impl AppSession {
    pub(crate) fn new(sink: &str, keys: AppKeys, journal: CrmJournal) -> AppSession {
        AppSession { sink: sink.to_string(), keys, journal, tokens: tokio::sync::Mutex::new(None) }
    }

    /// The REST endpoint and a live access token; renewed first when it is about to run out,
    /// or when `renew` (the portal said it expired).
    pub(crate) async fn access(&self, http: &reqwest::Client, renew: bool) -> Result<(String, String), CallError> {
        let mut tokens = self.tokens.lock().await;
        if tokens.is_none() {
            let stored = self
                .journal
                .tokens(&self.sink)
                .await
                .map_err(|error| CallError::Transient { error: error.to_string(), retry_after: None })?;
            // A different refresh token in the config means the admin re-installed the application.
            *tokens = stored.filter(|stored| stored.configured == self.keys.refresh_token.expose());
            if let Some(stored) = tokens.as_ref() {
                crate::secret::register(&stored.access_token);
                crate::secret::register(&stored.refresh_token);
            }
        }
        let now = crate::wallclock::now_ms();
        let fresh = tokens.as_ref().filter(|current| !renew && current.expires_at_ms - RENEW_BEFORE_MS > now);
        if let Some(current) = fresh {
            return Ok((current.client_endpoint.clone(), current.access_token.clone()));
        }
        let refresh_token = tokens
            .as_ref()
            .map_or(self.keys.refresh_token.expose().to_string(), |current| current.refresh_token.clone());
        let renewed = self.renew(http, &refresh_token).await?;
        self.journal.save_tokens(&self.sink, renewed.clone()).await.map_err(|error| CallError::Transient {
            error: format!("{error} (the renewed Bitrix24 token could not be kept)"),
            retry_after: None,
        })?;
        let access = (renewed.client_endpoint.clone(), renewed.access_token.clone());
        *tokens = Some(renewed);
        Ok(access)
    }

    async fn renew(&self, http: &reqwest::Client, refresh_token: &str) -> Result<StoredTokens, CallError> {
        let host = crate::config::redacted_url(&self.keys.token_url);
        let request = http.get(&self.keys.token_url).query(&[
            ("grant_type", "refresh_token"),
            ("client_id", self.keys.client_id.as_str()),
            ("client_secret", self.keys.client_secret.expose()),
            ("refresh_token", refresh_token),
        ]);
        let answer = exchange(request, &host).await.map_err(super::transient)?;
        let text = |key: &str| answer.json.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
        if answer.status >= 500 || answer.status == 429 {
            return Err(CallError::Transient {
                error: format!("renewing the Bitrix24 token: HTTP {} from {host}", answer.status),
                retry_after: answer.retry_after,
            });
        }
        let (access_token, new_refresh) = (text("access_token"), text("refresh_token"));
        crate::secret::register(&access_token);
        crate::secret::register(&new_refresh);
        if access_token.is_empty() || new_refresh.is_empty() {
            let code = text("error");
            return Err(CallError::Refused {
                error: format!(
                    "renewing the Bitrix24 token: {} (HTTP {} from {host}); the refresh token is used up or \
                     expired (30 days unused) or client_id/client_secret are wrong: reinstall the local application \
                     and put its new refresh_token in the config (docs/crm.md)",
                    if code.is_empty() { "no token in the answer".to_string() } else { code.clone() },
                    answer.status
                ),
                code,
            });
        }
        let expires_in = answer.json.get("expires_in").and_then(Value::as_i64).unwrap_or(3600).clamp(60, 86_400);
        let endpoint = match text("client_endpoint") {
            endpoint if endpoint.starts_with("http://") || endpoint.starts_with("https://") => endpoint,
            _ => format!("{}/rest/", self.keys.portal_url.trim_end_matches('/')),
        };
        Ok(StoredTokens {
            configured: self.keys.refresh_token.expose().to_string(),
            refresh_token: new_refresh,
            access_token,
            expires_at_ms: crate::wallclock::now_ms() + expires_in * 1000,
            client_endpoint: if endpoint.ends_with('/') { endpoint } else { format!("{endpoint}/") },
        })
    }
}
