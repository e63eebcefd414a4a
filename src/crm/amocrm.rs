//! The `amocrm` sink's sender (amoCRM and Kommo, API v4, a long-lived token as Bearer): each
//! call is `POST /api/v4/calls`, which amoCRM files on the card of the contact or company
//! with that number. A number with no card is refused by amoCRM; with `unsorted = true` the
//! call then becomes an incoming lead in Unsorted (`POST /api/v4/leads/unsorted/sip`), else it
//! is logged and counted. A confirmed call is journaled, so a try repeated after a crash does
//! not add it twice; a call sent without an answer (a kill in between) is looked for among the
//! cards' call notes (`params.uniq`) before it is sent again.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use super::http::{exchange, Answer};
use super::journal::CrmJournal;
use super::limiter::RateLimiter;
use crate::config::{redacted_url, AmocrmSink};
use crate::deliver::{Protocol, Request, TryFuture, TryResult};
use crate::secret::Secret;
use crate::sinks::amocrm::SOURCE;

/// How long the account is left alone after 429 when amoCRM does not say.
const DEFAULT_REST: Duration = Duration::from_secs(2);

/// The sink's sender side.
pub(crate) struct AmocrmDelivery {
    sink: String,
    base: String,
    host: String,
    token: Secret,
    unsorted: bool,
    pipeline_id: Option<u64>,
    http: reqwest::Client,
    limiter: Arc<RateLimiter>,
    journal: CrmJournal,
    calls_without_card: &'static crate::metrics::Counter,
}

impl AmocrmDelivery {
    pub(crate) fn new(sink: &str, config: &AmocrmSink, http: reqwest::Client, journal: CrmJournal) -> Arc<Self> {
        let host = redacted_url(&config.base_url);
        let (_, burst) = crate::config::AMOCRM_RATE;
        Arc::new(AmocrmDelivery {
            sink: sink.to_string(),
            base: config.base_url.trim().trim_end_matches('/').to_string(),
            limiter: super::limiter::shared(&host, config.rate_per_sec, burst),
            host,
            token: config.token.clone(),
            unsorted: config.unsorted,
            pipeline_id: config.pipeline_id,
            http,
            journal,
            calls_without_card: crate::metrics::SinkMeters::extra_counter(
                sink,
                "deskhook_crm_calls_without_card_total",
                "Calls a CRM kept no record of because no card has the number.",
            ),
        })
    }

    async fn try_send(&self, request: &Request) -> TryResult {
        let Some(body) = request.form_body().and_then(|body| serde_json::from_str::<Value>(body).ok()) else {
            return TryResult::Unsendable { error: "not a request the amocrm sink makes".into() };
        };
        let Some(call) = body["body"].as_array().and_then(|calls| calls.first()).cloned() else {
            return TryResult::Unsendable { error: "a stored amoCRM request has no call".into() };
        };
        let unique_id = request.unique_id();
        let journal_error =
            |error: super::journal::JournalError| TryResult::Transient { error: error.to_string(), retry_after: None };
        match self.journal.is_done(&self.sink, unique_id, "call").await {
            Ok(true) => return TryResult::Accepted,
            Ok(false) => {}
            Err(error) => return journal_error(error),
        }
        // Sent before without an answer (a kill, a timeout): amoCRM may have it already, and
        // adds a call again if asked again.
        match self.journal.done_at(&self.sink, unique_id, "call:sent").await {
            Ok(Some(sent_at)) => match self.has_call(unique_id, sent_at).await {
                Ok(true) => {
                    tracing::info!(sink = %self.sink, unique_id, "amoCRM has the call already (sent before a restart)");
                    return match self.journal.mark_done(&self.sink, unique_id, "call").await {
                        Ok(()) => TryResult::Accepted,
                        Err(error) => journal_error(error),
                    };
                }
                Ok(false) => {}
                Err(result) => return result,
            },
            Ok(None) => {
                if let Err(error) = self.journal.mark_done(&self.sink, unique_id, "call:sent").await {
                    return journal_error(error);
                }
            }
            Err(error) => return journal_error(error),
        }
        let answer = match self.post("/api/v4/calls", &json!([call])).await {
            Ok(answer) => answer,
            Err(result) => return result,
        };
        // An answer that says the call was not added ends the doubt; a gateway's 502/504 does not.
        if !(200..300).contains(&answer.status) && !matches!(answer.status, 500 | 502 | 504) {
            if let Err(error) = self.journal.clear(&self.sink, unique_id, "call:sent").await {
                return journal_error(error);
            }
        }
        let outcome = match answer.status {
            200..=299 if has_calls(&answer.json) => Ok(()),
            // amoCRM files a call on a card only: a number with none is refused.
            200..=299 | 400 | 404 if no_card(&answer) => self.without_card(unique_id, &call).await,
            _ => Err(self.refusal("POST /api/v4/calls", &answer)),
        };
        match outcome {
            Ok(()) => match self.journal.mark_done(&self.sink, unique_id, "call").await {
                Ok(()) => TryResult::Accepted,
                Err(error) => TryResult::Transient { error: error.to_string(), retry_after: None },
            },
            Err(result) => result,
        }
    }

    /// A call whose number is on no card: an Unsorted lead when the sink says so.
    async fn without_card(&self, unique_id: &str, call: &Value) -> Result<(), TryResult> {
        let phone = call["phone"].as_str().unwrap_or_default();
        if !self.unsorted {
            tracing::info!(
                sink = %self.sink,
                unique_id,
                "amoCRM has no contact or company with the caller's number, so it keeps no record of the call; \
                 set unsorted = true on the sink to make such calls new leads in Unsorted"
            );
            self.calls_without_card.inc();
            return Ok(());
        }
        let journal_error =
            |error: super::journal::JournalError| TryResult::Transient { error: error.to_string(), retry_after: None };
        let in_doubt = match self.journal.done_at(&self.sink, unique_id, "unsorted:sent").await {
            Ok(sent) => sent.is_some(),
            Err(error) => return Err(journal_error(error)),
        };
        if self.journal.is_done(&self.sink, unique_id, "unsorted").await.map_err(journal_error)? {
            return Ok(());
        }
        self.journal.mark_done(&self.sink, unique_id, "unsorted:sent").await.map_err(journal_error)?;
        let body = unsorted_body(call, unique_id, self.pipeline_id);
        let answer = self.post("/api/v4/leads/unsorted/sip", &body).await?;
        match answer.status {
            200..=299 => {
                tracing::info!(sink = %self.sink, unique_id, phone, "a call from a number on no card went to Unsorted");
            }
            // amoCRM refuses a second lead with the same uniq: the first one got there.
            400 if in_doubt => {
                tracing::info!(sink = %self.sink, unique_id, "amoCRM has the Unsorted lead already (sent before a restart)");
            }
            _ => return Err(self.refusal("POST /api/v4/leads/unsorted/sip", &answer)),
        }
        self.journal.mark_done(&self.sink, unique_id, "unsorted").await.map_err(journal_error)
    }

    /// Whether a call note with `uniq` = `unique_id` exists on any card, changed since shortly
    /// before `sent_at_ms` (amoCRM files a call on a lead, customer, contact or company).
    async fn has_call(&self, unique_id: &str, sent_at_ms: i64) -> Result<bool, TryResult> {
        let since = (sent_at_ms / 1000 - 600).to_string();
        for entity in ["leads", "contacts", "companies", "customers"] {
            let mut page = 1u32;
            loop {
                self.limiter.acquire_patiently().await;
                let url = format!("{}/api/v4/{entity}/notes", self.base);
                let page_text = page.to_string();
                let query = [
                    ("filter[note_type][]", "call_in"),
                    ("filter[note_type][]", "call_out"),
                    ("filter[updated_at][from]", since.as_str()),
                    ("limit", "250"),
                    ("page", page_text.as_str()),
                ];
                let answer =
                    exchange(self.http.get(url).bearer_auth(self.token.expose()).query(&query), &self.host).await?;
                match answer.status {
                    // 204: none; 402/403/404: the account has no such cards (customers off).
                    204 | 402 | 403 | 404 => break,
                    200..=299 => {
                        let notes = answer.json.pointer("/_embedded/notes").and_then(Value::as_array);
                        let notes = notes.map(Vec::as_slice).unwrap_or_default();
                        if notes
                            .iter()
                            .any(|note| note.pointer("/params/uniq").and_then(Value::as_str) == Some(unique_id))
                        {
                            return Ok(true);
                        }
                        if answer.json.pointer("/_links/next").is_none() || notes.is_empty() || page >= 20 {
                            break;
                        }
                        page += 1;
                    }
                    _ => return Err(self.refusal(&format!("GET /api/v4/{entity}/notes"), &answer)),
                }
            }
        }
        Ok(false)
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Answer, TryResult> {
        self.limiter.acquire_patiently().await;
        let request = self.http.post(format!("{}{path}", self.base)).bearer_auth(self.token.expose()).json(body);
        let answer = exchange(request, &self.host).await?;
        if answer.status == 429 {
            self.limiter.cool_down(answer.retry_after.unwrap_or(DEFAULT_REST));
        }
        Ok(answer)
    }

    /// An answer that is not a success, as a retry or a refusal with its fix.
    fn refusal(&self, what: &str, answer: &Answer) -> TryResult {
        let said = format!("{what}: HTTP {} from {}: {}", answer.status, self.host, answer.quote());
        match answer.status {
            429 => TryResult::Transient { error: said, retry_after: Some(answer.retry_after.unwrap_or(DEFAULT_REST)) },
            500..=599 => TryResult::Transient { error: said, retry_after: answer.retry_after },
            401 => TryResult::Rejected {
                error: format!("{said}; the token is wrong or expired: make a new long-lived token (docs/crm.md)"),
            },
            402 => TryResult::Rejected { error: format!("{said}; the amoCRM account is not paid for") },
            403 => TryResult::Rejected {
                error: format!("{said}; the token's user may not add calls, or the account is blocked"),
            },
            _ => TryResult::Rejected { error: said },
        }
    }
}

impl Protocol for AmocrmDelivery {
    fn host(&self) -> &str {
        &self.host
    }

    fn send<'a>(&'a self, request: &'a Request) -> TryFuture<'a> {
        Box::pin(self.try_send(request))
    }
}

fn has_calls(json: &Value) -> bool {
    json.pointer("/_embedded/calls").and_then(Value::as_array).is_some_and(|calls| !calls.is_empty())
}

/// amoCRM's "no entity has this number" for an added call.
fn no_card(answer: &Answer) -> bool {
    let text = answer.text.to_ascii_lowercase();
    !has_calls(&answer.json) && text.contains("entity not found")
}

/// An incoming call as an Unsorted lead of category `sip`.
pub(crate) fn unsorted_body(call: &Value, unique_id: &str, pipeline_id: Option<u64>) -> Value {
    let phone = call["phone"].as_str().unwrap_or_default();
    let called_at = call["created_at"].as_i64().unwrap_or_else(|| crate::wallclock::now_ms() / 1000);
    let mut unsorted = json!({
        "source_uid": unique_id,
        "source_name": SOURCE,
        "created_at": called_at,
        "metadata": {
            "is_call_event_needed": true,
            "uniq": unique_id,
            "duration": call["duration"],
            "service_code": SOURCE,
            // amoCRM shows `from` and `phone` swapped once the lead is accepted: the caller goes in both.
            "phone": phone,
            "called_at": called_at,
            "from": phone,
        },
        "_embedded": {
            "contacts": [{"name": phone, "custom_fields_values": [
                {"field_code": "PHONE", "values": [{"value": phone, "enum_code": "WORK"}]}
            ]}]
        },
    });
    if let Some(link) = call.get("link") {
        unsorted["metadata"]["link"] = link.clone();
    }
    if let Some(pipeline_id) = pipeline_id {
        unsorted["pipeline_id"] = pipeline_id.into();
    }
    json!([unsorted])
}
