//! The `bitrix24` sink's requests, sent as Bitrix24 means them: `register` returns the call's
//! `CALL_ID`, kept in the CRM journal and put into every later request of the call in place of
//! the mapping's placeholder; extensions are turned into user ids for the card; a recording
//! goes inline (base64) when small, else through the `uploadUrl` `attachRecord` returns,
//! streamed from disk.
//!
//! Every step is safe to repeat after a crash: a call with a `CALL_ID` is not registered
//! again (Bitrix24 would also return the same `CALL_ID` for the same `EXTERNAL_CALL_ID`), and
//! a confirmed `finish` or attached recording is journaled and skipped.

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;

use super::users::Directory;
use super::{CallError, Portal};
use crate::crm::journal::CrmJournal;
use crate::deliver::{Protocol, Request, TryFuture, TryResult};
use crate::sinks::bitrix24::{ATTACH_RECORD, CALL_ID, FINISH, HIDE, REGISTER, SHOW};

/// Recordings up to this size go inline as base64; larger ones are streamed to `uploadUrl`.
pub(crate) const INLINE_MAX_BYTES: u64 = 2 << 20;
/// The form field of the file in the upload to `uploadUrl`, unless the answer names another
/// (`fieldName`).
pub(crate) const UPLOAD_FIELD: &str = "file";
/// The formats Bitrix24 plays and keeps.
const FORMATS: [&str; 2] = ["wav", "mp3"];

/// The sink's sender side.
pub(crate) struct Bitrix24Delivery {
    sink: String,
    portal: Portal,
    users: Arc<Directory>,
    journal: CrmJournal,
    /// Who a call is registered to when its extension is no Bitrix24 user.
    default_user: Option<String>,
}

impl Bitrix24Delivery {
    pub(crate) fn new(sink: &str, portal: Portal, journal: CrmJournal, default_user: Option<String>) -> Arc<Self> {
        // Shared with the portal's /forward resolver, which reads users' numbers from it.
        let users = super::users::shared(portal.host());
        Arc::new(Bitrix24Delivery { sink: sink.to_string(), portal, users, journal, default_user })
    }

    async fn try_send(&self, request: &Request) -> TryResult {
        match (request.form_body(), request.upload_path(), request.upload_summary()) {
            (Some(body), _, _) => match serde_json::from_str::<Value>(body) {
                Ok(body) => {
                    let method = body["method"].as_str().unwrap_or_default().to_string();
                    let params = body.get("params").cloned().unwrap_or(Value::Null);
                    self.method(request.unique_id(), &method, params).await
                }
                Err(error) => {
                    TryResult::Unsendable { error: format!("a stored Bitrix24 request is not JSON: {error}") }
                }
            },
            (None, Some(path), Some(attach)) => {
                let params =
                    serde_json::from_str::<Value>(attach).ok().and_then(|attach| attach.get("params").cloned());
                match params {
                    Some(params) => self.attach(request.unique_id(), path, params).await,
                    None => TryResult::Unsendable { error: "a stored Bitrix24 attachRecord has no params".into() },
                }
            }
            _ => TryResult::Unsendable { error: "not a request the bitrix24 sink makes".into() },
        }
    }

    async fn method(&self, unique_id: &str, method: &str, mut params: Value) -> TryResult {
        let journaled = |error: crate::crm::journal::JournalError| TryResult::Transient {
            error: error.to_string(),
            retry_after: None,
        };
        let call_id = match self.journal.call_id(&self.sink, unique_id).await {
            Ok(call_id) => call_id,
            Err(error) => return journaled(error),
        };
        match method {
            REGISTER => {
                if call_id.is_some() {
                    return TryResult::Accepted;
                }
                if let Err(error) = self.own_user(&mut params).await {
                    return error.into();
                }
                let result = match self.portal.call(REGISTER, &params).await {
                    Ok(result) => result,
                    Err(error) => return error.into(),
                };
                match result.get("CALL_ID").and_then(Value::as_str).filter(|id| !id.is_empty()) {
                    Some(call_id) => match self.journal.set_call_id(&self.sink, unique_id, call_id).await {
                        Ok(()) => TryResult::Accepted,
                        Err(error) => journaled(error),
                    },
                    None => TryResult::Transient {
                        error: format!("{REGISTER}: no CALL_ID in the answer of {}", self.portal.host()),
                        retry_after: None,
                    },
                }
            }
            SHOW | HIDE => {
                // A card of a call Bitrix24 does not have cannot be shown; nothing is lost.
                let Some(call_id) = call_id else { return TryResult::Accepted };
                match self.card_users(&mut params).await {
                    Ok(true) => {}
                    Ok(false) => return TryResult::Accepted,
                    Err(error) => return error.into(),
                }
                fill_call_id(&mut params, &call_id);
                match self.portal.call(method, &params).await {
                    Ok(_) => TryResult::Accepted,
                    // The card of a finished call is gone already.
                    Err(error) if method == HIDE && is_unknown_call(&error) => TryResult::Accepted,
                    Err(error) => error.into(),
                }
            }
            FINISH => {
                let Some(call_id) = call_id else { return unregistered(FINISH) };
                match self.journal.is_done(&self.sink, unique_id, "finish").await {
                    Ok(true) => return TryResult::Accepted,
                    Ok(false) => {}
                    Err(error) => return journaled(error),
                }
                if let Err(error) = self.own_user(&mut params).await {
                    return error.into();
                }
                fill_call_id(&mut params, &call_id);
                match self.portal.call(FINISH, &params).await {
                    Ok(_) => {}
                    // The first finish ends the live call: this is a repeat of one whose answer was lost.
                    Err(CallError::Refused { error, .. }) if error.contains("Call is not found") => {
                        tracing::info!(sink = %self.sink, unique_id, "Bitrix24 has the call finished already");
                    }
                    Err(error) => return error.into(),
                }
                match self.journal.mark_done(&self.sink, unique_id, "finish").await {
                    Ok(()) => TryResult::Accepted,
                    Err(error) => journaled(error),
                }
            }
            other => TryResult::Unsendable { error: format!("{other:?} is not a method the bitrix24 sink sends") },
        }
    }

    /// Attaches the recording at `path` to the call (after its `finish`).
    async fn attach(&self, unique_id: &str, path: &Path, mut params: Value) -> TryResult {
        let file_name = params["FILENAME"].as_str().unwrap_or_default().to_string();
        let extension = Path::new(&file_name).extension().and_then(|ext| ext.to_str()).unwrap_or_default();
        if !FORMATS.iter().any(|format| format.eq_ignore_ascii_case(extension)) {
            return TryResult::Unsendable {
                error: format!(
                    "{file_name}: Bitrix24 takes .wav and .mp3 recordings only; have MixMonitor write wav (or mp3)"
                ),
            };
        }
        // One record per call: another attach would replace the first (after a restart the
        // mapping no longer knows one went).
        let step = "attach";
        let call_id = match self.journal.call_id(&self.sink, unique_id).await {
            Ok(Some(call_id)) => call_id,
            Ok(None) => return unregistered(ATTACH_RECORD),
            Err(error) => return TryResult::Transient { error: error.to_string(), retry_after: None },
        };
        match self.journal.is_done(&self.sink, unique_id, step).await {
            Ok(true) => {
                tracing::info!(sink = %self.sink, unique_id, file = %file_name, "the call has its recording in Bitrix24 already (one per call)");
                return TryResult::Accepted;
            }
            Ok(false) => {}
            Err(error) => return TryResult::Transient { error: error.to_string(), retry_after: None },
        }
        fill_call_id(&mut params, &call_id);
        let size = match tokio::fs::metadata(path).await {
            Ok(metadata) => metadata.len(),
            Err(error) => {
                return TryResult::Unsendable {
                    error: format!("cannot read the recording {}: {error}", path.display()),
                }
            }
        };
        let outcome = if size <= INLINE_MAX_BYTES {
            match tokio::fs::read(path).await {
                Ok(bytes) => {
                    use base64::Engine as _;
                    params["FILE_CONTENT"] = Value::from(base64::engine::general_purpose::STANDARD.encode(bytes));
                    self.portal.call(ATTACH_RECORD, &params).await.map(drop)
                }
                Err(error) => {
                    return TryResult::Unsendable {
                        error: format!("cannot read the recording {}: {error}", path.display()),
                    }
                }
            }
        } else {
            match self.portal.call(ATTACH_RECORD, &params).await {
                Ok(result) => match result.get("uploadUrl").and_then(Value::as_str) {
                    Some(upload_url) => {
                        let field = result.get("fieldName").and_then(Value::as_str).unwrap_or(UPLOAD_FIELD);
                        self.upload(upload_url, field, path, &file_name).await
                    }
                    None => Err(CallError::Transient {
                        error: format!("{ATTACH_RECORD}: no uploadUrl in the answer of {}", self.portal.host()),
                        retry_after: None,
                    }),
                },
                Err(error) => Err(error),
            }
        };
        match outcome {
            Ok(()) => match self.journal.mark_done(&self.sink, unique_id, step).await {
                Ok(()) => TryResult::Accepted,
                Err(error) => TryResult::Transient { error: error.to_string(), retry_after: None },
            },
            Err(error) => error.into(),
        }
    }

    /// Streams the file to the `uploadUrl` Bitrix24 gave (its address carries its own
    /// one-time authorisation).
    async fn upload(&self, upload_url: &str, field: &str, path: &Path, file_name: &str) -> Result<(), CallError> {
        // UploadError names the file and why it cannot be sent.
        let body = crate::deliver::FileBody::open(path)
            .await
            .map_err(|error| CallError::Refused { code: String::new(), error: error.to_string() })?;
        let length = body.length;
        let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(body.into_stream()), length)
            .file_name(file_name.to_string());
        let form = reqwest::multipart::Form::new().part(field.to_string(), part);
        self.portal.wait_turn().await;
        let host = crate::config::redacted_url(upload_url);
        let answer = crate::crm::http::exchange(self.portal.http().post(upload_url).multipart(form), &host)
            .await
            .map_err(super::transient)?;
        if (200..300).contains(&answer.status) && answer.json.get("error").is_none() {
            return Ok(());
        }
        let error = format!("uploading the recording: HTTP {} from {host}: {}", answer.status, answer.quote());
        if answer.status >= 500 || answer.status == 429 {
            Err(CallError::Transient { error, retry_after: answer.retry_after })
        } else {
            Err(CallError::Refused { code: String::new(), error })
        }
    }

    /// `register`/`finish` name one user: an extension Bitrix24 has no user for goes to the
    /// default user instead of being refused.
    async fn own_user(&self, params: &mut Value) -> Result<(), CallError> {
        let Some(extension) = params.get("USER_PHONE_INNER").and_then(Value::as_str).map(str::to_string) else {
            return Ok(());
        };
        let Some(object) = params.as_object_mut() else { return Ok(()) };
        match self.users.user_of(&self.portal, &extension).await? {
            Some(id) => {
                object.remove("USER_PHONE_INNER");
                object.insert("USER_ID".into(), id.into());
            }
            None => {
                if let Some(default) = &self.default_user {
                    object.remove("USER_PHONE_INNER");
                    object.insert("USER_ID".into(), user_value(default));
                }
            }
        }
        Ok(())
    }

    /// `show`/`hide` take user ids only: extensions become ids. False when nobody is left.
    async fn card_users(&self, params: &mut Value) -> Result<bool, CallError> {
        let Some(object) = params.as_object_mut() else { return Ok(false) };
        let mut ids: Vec<Value> = match object.remove("USER_ID") {
            Some(Value::Array(ids)) => ids,
            Some(Value::Null) | None => Vec::new(),
            Some(one) => vec![one],
        };
        if let Some(Value::Array(extensions)) = object.remove("USER_PHONE_INNER") {
            for extension in extensions.iter().filter_map(Value::as_str) {
                if let Some(id) = self.users.user_of(&self.portal, extension).await? {
                    ids.push(id.into());
                }
            }
        }
        if ids.is_empty() {
            return Ok(false);
        }
        object.insert("USER_ID".into(), Value::Array(ids));
        Ok(true)
    }
}

impl Protocol for Bitrix24Delivery {
    fn host(&self) -> &str {
        self.portal.host()
    }

    fn send<'a>(&'a self, request: &'a Request) -> TryFuture<'a> {
        Box::pin(self.try_send(request))
    }
}

fn fill_call_id(params: &mut Value, call_id: &str) {
    if let Some(object) = params.as_object_mut() {
        if object.get("CALL_ID").and_then(Value::as_str) == Some(CALL_ID) || !object.contains_key("CALL_ID") {
            object.insert("CALL_ID".into(), call_id.into());
        }
    }
}

fn user_value(id: &str) -> Value {
    id.parse::<u64>().map(Value::from).unwrap_or_else(|_| Value::from(id))
}

/// Bitrix24's words for "no such call" (a finished call's card is gone).
fn is_unknown_call(error: &CallError) -> bool {
    let code = error.code().to_ascii_uppercase();
    code.contains("NOT_FOUND") || code.contains("CALL_ID")
}

fn unregistered(method: &str) -> TryResult {
    TryResult::Rejected {
        error: format!(
            "{method}: the call was never registered in Bitrix24 (its register request failed; see `deskhook outbox \
             list`)"
        ),
    }
}
