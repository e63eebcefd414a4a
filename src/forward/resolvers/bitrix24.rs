//! The `bitrix24` resolver, through the portal's inbound webhook
//! (`https://portal.bitrix24.ru/rest/<user>/<token>/`).
//!
//! `telephony.externalCall.searchCrmEntities` (scope `telephony`) answers in one request with
//! the CRM entities of a number, best first, and each one's responsible user including their
//! internal number. Portals whose webhook lacks that scope are asked the long way (scope
//! `crm` + `user`): `crm.duplicate.findbycomm` → `crm.contact.get` / `crm.company.get` /
//! `crm.lead.get` → `user.get` for `UF_PHONE_INNER`. With `lookup = "auto"` the first
//! refusal of the telephony method switches to the long way for good. Users' internal
//! numbers are remembered for [`USER_TTL`] (they change rarely, and Bitrix24 allows only
//! about 2 requests a second), and read from the portal's directory when its `bitrix24` sink
//! has one (`crate::crm::bitrix24::users`): no `user.get` of the resolver's own then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::client::Reply;
use super::{json_id, json_text, CrmClient, Query, ResolveError};
use crate::config::Bitrix24Lookup;
use crate::forward::answer::{is_valid_extension, Answer};
use crate::numbers::PhoneNormalizer;
use crate::secret::Secret;

/// How long a user's internal number is trusted before `user.get` is asked again.
pub(crate) const USER_TTL: Duration = Duration::from_secs(600);

/// Errors that mean "this webhook may not call that method" rather than "try later".
const REFUSALS: &[&str] = &["insufficient_scope", "ERROR_METHOD_NOT_FOUND", "METHOD_NOT_FOUND", "ACCESS_DENIED"];

#[derive(Debug, Clone)]
struct User {
    inner_phone: String,
    fetched: Instant,
}

#[derive(Debug)]
pub(crate) struct Bitrix24Resolver {
    /// The webhook URL (its path is the token).
    base: Secret,
    lookup: Bitrix24Lookup,
    /// Set once the portal refused the telephony method (auto mode).
    telephony_refused: AtomicBool,
    client: CrmClient,
    phones: PhoneNormalizer,
    users: Mutex<HashMap<String, User>>,
}

/// A CRM entity and who is responsible for it.
struct Candidate {
    name: String,
    user_id: Option<String>,
    inner_phone: String,
}

impl Bitrix24Resolver {
    pub(crate) fn new(webhook_url: &str, lookup: Bitrix24Lookup, client: CrmClient, phones: PhoneNormalizer) -> Self {
        let mut base = webhook_url.trim().to_string();
        if !base.ends_with('/') {
            base.push('/');
        }
        Self {
            base: Secret::new(base),
            lookup,
            telephony_refused: AtomicBool::new(false),
            client,
            phones,
            users: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) async fn resolve(&self, query: &Query<'_>) -> Result<Option<Answer>, ResolveError> {
        let use_telephony = match self.lookup {
            Bitrix24Lookup::Telephony => true,
            Bitrix24Lookup::Duplicates => false,
            Bitrix24Lookup::Auto => !self.telephony_refused.load(Ordering::Relaxed),
        };
        let candidates = if use_telephony {
            match self.search_crm_entities(query).await {
                Err(Refusal::Refused(code)) if self.lookup == Bitrix24Lookup::Auto => {
                    tracing::info!(
                        crm = %self.client.host(),
                        "Bitrix24 refused telephony.externalCall.searchCrmEntities ({code}); using crm.duplicate.findbycomm from now on"
                    );
                    self.telephony_refused.store(true, Ordering::Relaxed);
                    self.find_by_comm(query).await?
                }
                Err(Refusal::Refused(code)) => {
                    return Err(self.status_error(403, format!("{code}: give the webhook the telephony scope")))
                }
                Err(Refusal::Failed(error)) => return Err(error),
                Ok(candidates) => candidates,
            }
        } else {
            self.find_by_comm(query).await?
        };
        for candidate in candidates {
            let mut extension = candidate.inner_phone;
            if !is_valid_extension(&extension) {
                extension = match &candidate.user_id {
                    Some(user_id) => self.user_inner_phone(user_id, query.deadline).await?,
                    None => String::new(),
                };
            }
            if let Some(answer) = Answer::new(&extension, &candidate.name, "bitrix24") {
                return Ok(Some(answer));
            }
        }
        Ok(None)
    }

    async fn call(&self, method: &str, params: Value, deadline: Instant) -> Result<Reply, ResolveError> {
        let request = self.client.http().post(format!("{}{method}.json", self.base.expose())).json(&params);
        self.client.send(request, deadline).await
    }

    /// The `result` of a successful call; a Bitrix24 error (`{"error": …}`) otherwise.
    fn result(&self, reply: &Reply) -> Result<Value, Refusal> {
        let json = if reply.body.is_empty() { Value::Null } else { reply.json(self.client.host())? };
        if let Some(code) = json.get("error").map(|code| json_text(Some(code))).filter(|code| !code.is_empty()) {
            if REFUSALS.iter().any(|refusal| refusal.eq_ignore_ascii_case(&code)) {
                return Err(Refusal::Refused(code));
            }
            let detail = json_text(json.get("error_description"));
            let detail = if detail.is_empty() { code } else { format!("{code}: {detail}") };
            return Err(Refusal::Failed(self.status_error(reply.status, detail)));
        }
        if !(200..300).contains(&reply.status) {
            return Err(Refusal::Failed(ResolveError::Status {
                status: reply.status,
                host: self.client.host().to_string(),
                detail: None,
            }));
        }
        Ok(json.get("result").cloned().unwrap_or(Value::Null))
    }

    /// A refusal met on the long way: no fallback is left, so the admin must grant the scopes.
    fn scope_error(&self, refusal: Refusal) -> ResolveError {
        match refusal {
            Refusal::Refused(code) => {
                self.status_error(403, format!("{code}: give the webhook the crm and user scopes"))
            }
            Refusal::Failed(error) => error,
        }
    }

    fn status_error(&self, status: u16, detail: String) -> ResolveError {
        ResolveError::Status { status, host: self.client.host().to_string(), detail: Some(detail) }
    }

    async fn search_crm_entities(&self, query: &Query<'_>) -> Result<Vec<Candidate>, Refusal> {
        let reply = self
            .call("telephony.externalCall.searchCrmEntities", json!({ "PHONE_NUMBER": query.phone }), query.deadline)
            .await?;
        let result = self.result(&reply)?;
        let entities = result.as_array().map(Vec::as_slice).unwrap_or_default();
        Ok(entities
            .iter()
            .map(|entity| {
                let assigned = entity.get("ASSIGNED_BY");
                Candidate {
                    name: json_text(entity.get("NAME")),
                    user_id: entity
                        .get("ASSIGNED_BY_ID")
                        .and_then(json_id)
                        .or_else(|| assigned.and_then(|user| user.get("ID")).and_then(json_id)),
                    inner_phone: json_text(assigned.and_then(|user| user.get("USER_PHONE_INNER"))),
                }
            })
            .collect())
    }

    async fn find_by_comm(&self, query: &Query<'_>) -> Result<Vec<Candidate>, ResolveError> {
        let mut spellings = vec![format!("+{}", query.phone), query.phone.to_string()];
        spellings.extend(self.phones.national_form(query.phone));
        let reply = self
            .call("crm.duplicate.findbycomm", json!({ "type": "PHONE", "values": spellings }), query.deadline)
            .await?;
        // Nothing found is `"result": []`; found is `{"CONTACT": [ids], "COMPANY": [...], "LEAD": [...]}`.
        let result = self.result(&reply).map_err(|refusal| self.scope_error(refusal))?;
        let first_of =
            |kind: &str| result.get(kind).and_then(Value::as_array).and_then(|ids| ids.first()).and_then(json_id);
        let (method, id) = match (first_of("CONTACT"), first_of("COMPANY"), first_of("LEAD")) {
            (Some(id), _, _) => ("crm.contact.get", id),
            (None, Some(id), _) => ("crm.company.get", id),
            (None, None, Some(id)) => ("crm.lead.get", id),
            (None, None, None) => return Ok(Vec::new()),
        };
        let reply = self.call(method, json!({ "id": id }), query.deadline).await?;
        let entity = self.result(&reply).map_err(|refusal| self.scope_error(refusal))?;
        let person = [json_text(entity.get("NAME")), json_text(entity.get("LAST_NAME"))]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        let name = if method == "crm.contact.get" || json_text(entity.get("TITLE")).is_empty() {
            person
        } else {
            json_text(entity.get("TITLE"))
        };
        Ok(vec![Candidate {
            name,
            user_id: entity.get("ASSIGNED_BY_ID").and_then(json_id),
            inner_phone: String::new(),
        }])
    }

    /// `UF_PHONE_INNER` of a user, remembered for [`USER_TTL`]; a stale value beats none when the portal is busy.
    async fn user_inner_phone(&self, user_id: &str, deadline: Instant) -> Result<String, ResolveError> {
        let remembered = self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(user_id).cloned();
        if let Some(user) = &remembered {
            if user.fetched.elapsed() < USER_TTL {
                return Ok(user.inner_phone.clone());
            }
        }
        // The portal's bitrix24 sink may have read every user's number a moment ago.
        if let Some(inner_phone) = crate::crm::bitrix24::users::shared(self.client.host()).inner_phone_of(user_id) {
            return Ok(inner_phone);
        }
        let fetched = async {
            let reply = self.call("user.get", json!({ "ID": user_id }), deadline).await?;
            let result = self.result(&reply).map_err(|refusal| self.scope_error(refusal))?;
            let user = result.as_array().and_then(|users| users.first()).cloned().unwrap_or(Value::Null);
            Ok::<_, ResolveError>(json_text(user.get("UF_PHONE_INNER")))
        }
        .await;
        match (fetched, remembered) {
            (Ok(inner_phone), _) => {
                let user = User { inner_phone: inner_phone.clone(), fetched: Instant::now() };
                self.users.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).insert(user_id.to_string(), user);
                Ok(inner_phone)
            }
            (Err(_), Some(stale)) => Ok(stale.inner_phone),
            (Err(error), None) => Err(error),
        }
    }
}

/// A Bitrix24 call that did not give a result.
enum Refusal {
    /// The webhook may not call this method (scope or method missing).
    Refused(String),
    Failed(ResolveError),
}

impl From<ResolveError> for Refusal {
    fn from(error: ResolveError) -> Self {
        Refusal::Failed(error)
    }
}
