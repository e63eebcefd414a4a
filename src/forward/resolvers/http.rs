//! The `http` resolver: any JSON lookup service. `url` is a template where `{phone}`,
//! `{trunk}` and `{callid}` are replaced (percent-encoded); the answer is a JSON object
//! (or an array whose first object counts) with the extension under `number_field` and the
//! caller's name under `name_field`; dotted names (`data.manager.ext`) reach nested fields.
//! 404, 204 or an empty/absent extension mean "nobody".

use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use serde_json::Value;

use super::{json_text, CrmClient, Query, ResolveError};
use crate::forward::answer::Answer;
use crate::secret::Secret;

#[derive(Debug)]
pub(crate) struct HttpResolver {
    /// The URL template (it may carry a token).
    template: Secret,
    number_field: String,
    name_field: String,
    client: CrmClient,
}

impl HttpResolver {
    pub(crate) fn new(template: &str, number_field: &str, name_field: &str, client: CrmClient) -> Self {
        Self {
            template: Secret::new(template),
            number_field: number_field.to_string(),
            name_field: name_field.to_string(),
            client,
        }
    }

    pub(crate) fn uses_trunk(&self) -> bool {
        self.template.expose().contains("{trunk}")
    }

    fn url(&self, query: &Query<'_>) -> String {
        let encode = |value: &str| utf8_percent_encode(value, NON_ALPHANUMERIC).to_string();
        self.template
            .expose()
            .replace("{phone}", &encode(query.phone))
            .replace("{trunk}", &encode(query.trunk))
            .replace("{callid}", &encode(query.callid))
    }

    pub(crate) async fn resolve(&self, query: &Query<'_>) -> Result<Option<Answer>, ResolveError> {
        let request = self.client.http().get(self.url(query)).header(reqwest::header::ACCEPT, "application/json");
        let reply = self.client.send(request, query.deadline).await?;
        let host = self.client.host();
        match reply.status {
            200..=299 if reply.body.iter().all(u8::is_ascii_whitespace) => return Ok(None),
            200..=299 => {}
            404 => return Ok(None),
            status => return Err(ResolveError::Status { status, host: host.to_string(), detail: None }),
        }
        let json = reply.json(host)?;
        let record = match &json {
            Value::Array(items) => match items.first() {
                Some(first) => first,
                None => return Ok(None),
            },
            other => other,
        };
        if !record.is_object() {
            return Err(ResolveError::Format { host: host.to_string(), reason: "expected a JSON object".into() });
        }
        let number = json_text(field(record, &self.number_field));
        if number.is_empty() {
            return Ok(None);
        }
        let name = json_text(field(record, &self.name_field));
        match Answer::new(&number, &name, "http") {
            Some(answer) => Ok(Some(answer)),
            None => Err(ResolveError::Format {
                host: host.to_string(),
                reason: format!(
                    "{:?} in {} is not an extension",
                    number.chars().take(40).collect::<String>(),
                    self.number_field
                ),
            }),
        }
    }
}

/// `a.b.c` walks nested objects.
fn field<'a>(record: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(record, |value, key| value.get(key))
}
