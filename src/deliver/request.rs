//! What the outbox stores and the sender sends: one request to one sink, either a body POST
//! (an urlencoded form or JSON) or a recording upload. Built by the sinks' mappings; knows
//! nothing of SQLite or HTTP.

use std::path::{Path, PathBuf};

/// One request to the helpdesk webhook, as committed to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub(crate) unique_id: String,
    pub(crate) kind: RequestKind,
    /// Stored with the row; once the helpdesk accepted the request, the delivery's
    /// [`super::DeliveredHook`]s are called with it (e.g. to delete the source of an upload).
    pub(crate) tag: Option<String>,
    /// The sink (its configured name) that sends it.
    pub(crate) sink: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// An event POST, its body already encoded: `application/x-www-form-urlencoded`, or JSON.
    Form { status: String, once_per_call: bool, body: String, json: bool },
    /// A recording upload (`multipart/form-data`), read from `path` when it is sent; with a
    /// `summary`, the `json` sink's form (part `summary`, part `record`), else the Omnidesk one.
    Upload { path: PathBuf, delete_after: bool, summary: Option<String> },
}

/// The sink `[helpdesk] webhook_url` is, and that requests go to unless told otherwise.
pub const HELPDESK_SINK: &str = "helpdesk";

/// How one sink takes a call's recordings: the Omnidesk upload form, or (with `summary`) the
/// `json` sink's summary + record. Kept with a promised pickup until the file is complete.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UploadRoute {
    pub sink: String,
    pub summary: Option<String>,
}

/// A recording of an ended call promised for upload: kept in the outbox from the step that
/// ended the call until its upload is stored (or the file is given up), so a restart in between
/// picks it up again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PickupPromise {
    pub unique_id: String,
    pub file: String,
    /// The sinks it goes to, in configuration order.
    pub routes: Vec<UploadRoute>,
}

impl PickupPromise {
    /// A promise as stored: `uploads` is the JSON list of routes. Absent (a journal from before
    /// sinks) or unreadable (a hand-edited file) routes send the recording to the helpdesk
    /// alone, the latter with a warning.
    pub(crate) fn from_stored(unique_id: String, file: String, uploads: Option<&str>) -> PickupPromise {
        let routes = match uploads.map(serde_json::from_str::<Vec<UploadRoute>>) {
            Some(Ok(routes)) => routes,
            Some(Err(error)) => {
                tracing::warn!(unique_id, file, %error, "unreadable upload routes of a promised recording; sending it to the helpdesk only");
                vec![UploadRoute::helpdesk()]
            }
            None => vec![UploadRoute::helpdesk()],
        };
        PickupPromise { unique_id, file, routes }
    }

    /// The routes as stored (see [`PickupPromise::from_stored`]).
    pub(crate) fn stored_routes(&self) -> String {
        serde_json::to_string(&self.routes).unwrap_or_else(|_| "[]".into())
    }
}

impl UploadRoute {
    /// The helpdesk's Omnidesk upload form.
    pub(crate) fn helpdesk() -> UploadRoute {
        UploadRoute { sink: HELPDESK_SINK.into(), summary: None }
    }

    /// The upload of `path`, a recording of call `unique_id`, to this route's sink.
    pub(crate) fn request(&self, unique_id: &str, path: PathBuf, delete_after: bool) -> Request {
        let request = match &self.summary {
            Some(summary) => Request::upload_with_summary(unique_id, path, summary.clone()),
            None => Request::upload(unique_id, path, delete_after),
        };
        request.to_sink(self.sink.clone())
    }
}

/// The `status` an upload carries (SPEC §3), also shown by `deskhook outbox list`.
pub const UPLOAD_STATUS: &str = "record";

impl Request {
    /// A form POST of call `unique_id` (its `status`, for listings and logs), its body
    /// already encoded; `once_per_call` requests (a start, an end) are stored once per call.
    pub(crate) fn form(
        unique_id: impl Into<String>,
        status: impl Into<String>,
        once_per_call: bool,
        body: String,
    ) -> Request {
        Request {
            unique_id: unique_id.into(),
            kind: RequestKind::Form { status: status.into(), once_per_call, body, json: false },
            tag: None,
            sink: HELPDESK_SINK.into(),
        }
    }

    /// Like [`Request::form`], with a JSON body.
    pub(crate) fn json(
        unique_id: impl Into<String>,
        status: impl Into<String>,
        once_per_call: bool,
        body: String,
    ) -> Request {
        Request {
            unique_id: unique_id.into(),
            kind: RequestKind::Form { status: status.into(), once_per_call, body, json: true },
            tag: None,
            sink: HELPDESK_SINK.into(),
        }
    }

    /// The upload of a recording file of call `unique_id`; with `delete_after` the file is
    /// removed once the helpdesk accepted it.
    pub fn upload(unique_id: impl Into<String>, path: impl Into<PathBuf>, delete_after: bool) -> Request {
        Request {
            unique_id: unique_id.into(),
            kind: RequestKind::Upload { path: path.into(), delete_after, summary: None },
            tag: None,
            sink: HELPDESK_SINK.into(),
        }
    }

    /// The `json` sink's upload of a recording file: the call `summary` (JSON) as a part of its own.
    pub(crate) fn upload_with_summary(
        unique_id: impl Into<String>,
        path: impl Into<PathBuf>,
        summary: String,
    ) -> Request {
        Request {
            unique_id: unique_id.into(),
            kind: RequestKind::Upload { path: path.into(), delete_after: false, summary: Some(summary) },
            tag: None,
            sink: HELPDESK_SINK.into(),
        }
    }

    /// The same request, sent by sink `sink` (its configured name).
    pub fn to_sink(mut self, sink: impl Into<String>) -> Request {
        self.sink = sink.into();
        self
    }

    pub(crate) fn sink(&self) -> &str {
        &self.sink
    }

    /// The same request carrying `tag`: after the helpdesk accepted it, every hook registered
    /// with [`super::DeliveryHandle::on_delivered`] is called with the tag. The tag is stored
    /// with the row, so it survives restarts.
    pub fn tagged(mut self, tag: impl Into<String>) -> Request {
        self.tag = Some(tag.into());
        self
    }

    /// The tag given with [`Request::tagged`].
    #[cfg(test)]
    pub(crate) fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The call's linkedid: requests of one call are delivered in the order they were enqueued.
    pub(crate) fn unique_id(&self) -> &str {
        &self.unique_id
    }

    /// The helpdesk `status` (`record` for uploads).
    pub(crate) fn status(&self) -> &str {
        match &self.kind {
            RequestKind::Form { status, .. } => status,
            RequestKind::Upload { .. } => UPLOAD_STATUS,
        }
    }

    /// The encoded form body, for event requests.
    pub(crate) fn form_body(&self) -> Option<&str> {
        match &self.kind {
            RequestKind::Form { body, .. } => Some(body),
            RequestKind::Upload { .. } => None,
        }
    }

    /// The file to upload, for recording requests.
    pub(crate) fn upload_path(&self) -> Option<&Path> {
        match &self.kind {
            RequestKind::Form { .. } => None,
            RequestKind::Upload { path, .. } => Some(path),
        }
    }

    /// What goes with an upload: the `json` sink's call summary, or the API request (a CRM's)
    /// the file is attached with.
    pub(crate) fn upload_summary(&self) -> Option<&str> {
        match &self.kind {
            RequestKind::Upload { summary, .. } => summary.as_deref(),
            RequestKind::Form { .. } => None,
        }
    }

    /// Start and ended events are stored at most once per call and sink: this key makes a
    /// second one a no-op. The helpdesk sink's keys are as they were before sinks existed.
    pub(crate) fn once_key(&self) -> Option<String> {
        match &self.kind {
            RequestKind::Form { status, once_per_call: true, .. } if self.sink == HELPDESK_SINK => {
                Some(format!("{}\n{status}", self.unique_id))
            }
            RequestKind::Form { status, once_per_call: true, .. } => {
                Some(format!("{}\n{}\n{status}", self.sink, self.unique_id))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(status: &str, once_per_call: bool) -> Request {
        Request::form("1700000000.1", status, once_per_call, format!("status={status}"))
    }

    #[test]
    fn only_start_and_ended_events_carry_a_deduplication_key() {
        let start = event("start of an incoming call", true);
        assert_eq!(start.once_key().as_deref(), Some("1700000000.1\nstart of an incoming call"));
        assert!(event("incoming call is ended", true).once_key().is_some());
        assert_eq!(event("incoming call answered", false).once_key(), None);
        assert_eq!(Request::upload("1700000000.1", "/tmp/a.wav", false).once_key(), None);
        assert_eq!(start.status(), "start of an incoming call");
        assert_eq!(Request::upload("1", "/x", true).status(), "record");
        assert_eq!(Request::upload("1", "/x", true).tagged("ari:r1").tag(), Some("ari:r1"));
        assert_eq!(start.tag(), None);
        let elsewhere = event("call_started", true).to_sink("warehouse");
        assert_eq!(elsewhere.once_key().as_deref(), Some("warehouse\n1700000000.1\ncall_started"));
        assert_eq!(start.sink(), HELPDESK_SINK);
    }
}
