//! The `amocrm` resolver: API v4 search of contacts (then companies) by phone →
//! `responsible_user_id` → the configured `users` map (amoCRM user id → extension).
//!
//! amoCRM's `query` matches substrings of any field, so the number is searched without its
//! country code where the plan has a fixed length (matching `+7 916…`, `8916…` and `7916…`
//! as stored), and a found entity counts only when one of its phones normalises to the
//! caller's. 204 No Content is amoCRM's "nothing found".

use std::collections::BTreeMap;

use serde_json::Value;

use super::{json_id, json_text, CrmClient, Query, ResolveError};
use crate::forward::answer::Answer;
use crate::numbers::PhoneNormalizer;
use crate::secret::Secret;

#[derive(Debug)]
pub(crate) struct AmocrmResolver {
    base: String,
    token: Secret,
    users: BTreeMap<String, String>,
    client: CrmClient,
    phones: PhoneNormalizer,
}

impl AmocrmResolver {
    pub(crate) fn new(
        base_url: &str,
        token: &str,
        users: BTreeMap<String, String>,
        client: CrmClient,
        phones: PhoneNormalizer,
    ) -> Self {
        if users.is_empty() {
            tracing::warn!(
                crm = %client.host(),
                "forward: the amocrm resolver has no users map (amoCRM user id = extension); it will find nobody"
            );
        }
        Self {
            base: base_url.trim().trim_end_matches('/').to_string(),
            token: Secret::new(token),
            users,
            client,
            phones,
        }
    }

    pub(crate) async fn resolve(&self, query: &Query<'_>) -> Result<Option<Answer>, ResolveError> {
        for entity in ["contacts", "companies"] {
            if let Some(answer) = self.search(entity, query).await? {
                return Ok(Some(answer));
            }
        }
        Ok(None)
    }

    async fn search(&self, entity: &str, query: &Query<'_>) -> Result<Option<Answer>, ResolveError> {
        let needle = self.phones.national_significant(query.phone).unwrap_or(query.phone);
        let request = self
            .client
            .http()
            .get(format!("{}/api/v4/{entity}", self.base))
            .query(&[("query", needle), ("limit", "50")])
            .bearer_auth(self.token.expose())
            .header(reqwest::header::ACCEPT, "application/hal+json");
        let reply = self.client.send(request, query.deadline).await?;
        let host = self.client.host();
        match reply.status {
            204 | 404 => return Ok(None),
            200..=299 if reply.body.is_empty() => return Ok(None),
            200..=299 => {}
            401 | 403 => {
                return Err(ResolveError::Status {
                    status: reply.status,
                    host: host.to_string(),
                    detail: Some("the token was refused: issue a new long-lived token".into()),
                })
            }
            status => return Err(ResolveError::Status { status, host: host.to_string(), detail: None }),
        }
        let json = reply.json(host)?;
        let found = json.pointer(&format!("/_embedded/{entity}")).and_then(Value::as_array).map(Vec::as_slice);
        for record in found.unwrap_or_default() {
            if !self.has_phone(record, query.phone) {
                continue;
            }
            let Some(user_id) = record.get("responsible_user_id").and_then(json_id) else { continue };
            let Some(extension) = self.users.get(&user_id) else {
                tracing::debug!(user_id, "amoCRM user has no extension in the users map");
                continue;
            };
            if let Some(answer) = Answer::new(extension, &json_text(record.get("name")), "amocrm") {
                return Ok(Some(answer));
            }
        }
        Ok(None)
    }

    /// True when a phone field of `record` is the caller's number, or when the record lists no fields at all.
    fn has_phone(&self, record: &Value, phone: &str) -> bool {
        let Some(fields) = record.get("custom_fields_values").and_then(Value::as_array) else {
            return true;
        };
        fields
            .iter()
            .filter(|field| field.get("field_code").and_then(Value::as_str) == Some("PHONE"))
            .flat_map(|field| field.get("values").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default())
            .any(|value| {
                value
                    .get("value")
                    .and_then(Value::as_str)
                    .is_some_and(|stored| self.phones.normalise(stored).as_deref() == Ok(phone))
            })
    }
}
