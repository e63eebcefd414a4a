//! The resolvers `/forward` asks in turn: a CSV table, deskhook's call history, Bitrix24,
//! amoCRM and any JSON service. Each answers "this extension, under this name", "nobody",
//! or an error; none of them decides about budgets, caching or availability (see `chain`).

pub(crate) mod amocrm;
pub(crate) mod bitrix24;
mod client;
pub(crate) mod history;
pub(crate) mod http;
pub(crate) mod table;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::answer::Answer;
use super::cache::AnswerCache;
use super::ForwardError;
use crate::config::{ResolverConfig, AMOCRM_RATE, BITRIX24_RATE};
use crate::crm::limiter::Throttled;
use crate::history::History;
use crate::numbers::PhoneNormalizer;

pub(crate) use client::CrmClient;

/// One lookup as the resolvers see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query<'a> {
    /// Normalised digits (see `phone`).
    pub phone: &'a str,
    /// The DID or trunk the call came in on, as the dialplan sent it; may be empty.
    pub trunk: &'a str,
    /// The call's linkedid, for services that log it; may be empty.
    pub callid: &'a str,
    /// When this resolver's time is up; rate limiters never wait past it.
    pub deadline: Instant,
}

/// Why a resolver could not answer. Every variant means "not found now" to the chain.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    #[error("{0}")]
    Throttled(#[from] Throttled),
    #[error("HTTP {status} from {host}{}", detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Status { status: u16, host: String, detail: Option<String> },
    #[error("request to {host} failed: {reason}")]
    Transport { host: String, reason: String },
    #[error("unexpected answer from {host}: {reason}")]
    Format { host: String, reason: String },
    #[error("{0}")]
    Local(String),
}

/// What every resolver is built with.
pub(crate) struct Context<'a> {
    pub phones: &'a PhoneNormalizer,
    pub history: Option<&'a History>,
    pub http: &'a reqwest::Client,
    /// Cleared when the table changes, so edits take effect on the next call.
    pub cache: &'a Arc<AnswerCache>,
}

/// A configured resolver.
#[derive(Debug)]
pub(crate) enum Resolver {
    Table(table::TableResolver),
    History(history::HistoryResolver),
    Bitrix24(bitrix24::Bitrix24Resolver),
    Amocrm(amocrm::AmocrmResolver),
    Http(http::HttpResolver),
}

impl Resolver {
    pub(crate) fn build(config: &ResolverConfig, context: &Context<'_>) -> Result<Resolver, ForwardError> {
        Ok(match config {
            ResolverConfig::Table { path, .. } => {
                Resolver::Table(table::TableResolver::open(path, context.phones.clone(), Arc::clone(context.cache)))
            }
            ResolverConfig::History { max_age_days, .. } => Resolver::History(history::HistoryResolver::new(
                context.history.cloned(),
                Duration::from_secs(u64::from(*max_age_days) * 86_400),
            )),
            ResolverConfig::Bitrix24 { webhook_url, rate_per_sec, lookup, .. } => {
                Resolver::Bitrix24(bitrix24::Bitrix24Resolver::new(
                    webhook_url,
                    *lookup,
                    CrmClient::sharing(
                        context.http.clone(),
                        webhook_url,
                        crate::crm::limiter::shared(
                            &crate::config::redacted_url(webhook_url),
                            rate_per_sec.unwrap_or(BITRIX24_RATE.0),
                            BITRIX24_RATE.1,
                        ),
                    ),
                    context.phones.clone(),
                ))
            }
            ResolverConfig::Amocrm { base_url, token, users, rate_per_sec, .. } => {
                Resolver::Amocrm(amocrm::AmocrmResolver::new(
                    base_url,
                    token.expose(),
                    users.clone(),
                    CrmClient::sharing(
                        context.http.clone(),
                        base_url,
                        crate::crm::limiter::shared(
                            &crate::config::redacted_url(base_url),
                            rate_per_sec.unwrap_or(AMOCRM_RATE.0),
                            AMOCRM_RATE.1,
                        ),
                    ),
                    context.phones.clone(),
                ))
            }
            ResolverConfig::Http { url, number_field, name_field, rate_per_sec, .. } => {
                Resolver::Http(http::HttpResolver::new(
                    url,
                    number_field,
                    name_field,
                    CrmClient::new(context.http.clone(), url, rate_per_sec.unwrap_or(50.0)),
                ))
            }
        })
    }

    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Resolver::Table(_) => "table",
            Resolver::History(_) => "history",
            Resolver::Bitrix24(_) => "bitrix24",
            Resolver::Amocrm(_) => "amocrm",
            Resolver::Http(_) => "http",
        }
    }

    /// Whether answers depend on the trunk (then the cache keys on it too).
    /// Answers from deskhook's own data at once (no network): asked before the CRMs, in order.
    pub(crate) fn is_local(&self) -> bool {
        matches!(self, Resolver::Table(_) | Resolver::History(_))
    }

    pub(crate) fn uses_trunk(&self) -> bool {
        matches!(self, Resolver::Http(http) if http.uses_trunk())
    }

    pub(crate) async fn resolve(&self, query: &Query<'_>) -> Result<Option<Answer>, ResolveError> {
        match self {
            Resolver::Table(table) => Ok(table.lookup(query.phone)),
            Resolver::History(history) => history.resolve(query.phone).await,
            Resolver::Bitrix24(bitrix) => bitrix.resolve(query).await,
            Resolver::Amocrm(amo) => amo.resolve(query).await,
            Resolver::Http(http) => http.resolve(query).await,
        }
    }
}

/// Reads an id that a CRM may send as a number or as a string.
pub(crate) fn json_id(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(text) if !text.trim().is_empty() => Some(text.trim().to_string()),
        serde_json::Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// Reads a text field that may be absent, null, a string or a number.
pub(crate) fn json_text(value: Option<&serde_json::Value>) -> String {
    match value {
        Some(serde_json::Value::String(text)) => text.trim().to_string(),
        Some(serde_json::Value::Number(number)) => number.to_string(),
        _ => String::new(),
    }
}
