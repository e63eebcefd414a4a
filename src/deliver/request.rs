//! What the outbox stores and the sender sends: one helpdesk request, either an event form or a
//! recording upload. Built from the call engine's output; knows nothing of SQLite or HTTP.

use std::path::{Path, PathBuf};

/// One request to the helpdesk webhook, as committed to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub(crate) unique_id: String,
    pub(crate) kind: RequestKind,
    /// Stored with the row; once the helpdesk accepted the request, the delivery's
    /// [`super::DeliveredHook`]s are called with it (e.g. to delete the source of an upload).
    pub(crate) tag: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestKind {
    /// An event POST: the `application/x-www-form-urlencoded` body, already encoded.
    Form { status: String, once_per_call: bool, body: String },
    /// A recording upload (`multipart/form-data`), read from `path` when it is sent.
    Upload { path: PathBuf, delete_after: bool },
}

/// The `status` an upload carries (SPEC §3), also shown by `deskhook outbox list`.
pub const UPLOAD_STATUS: &str = "record";

impl Request {
    /// A form POST of call `unique_id` (its `status`, for listings and logs), its body
    /// already encoded; `once_per_call` requests (a start, an end) are stored once per call.
    pub fn form(unique_id: impl Into<String>, status: impl Into<String>, once_per_call: bool, body: String) -> Request {
        Request {
            unique_id: unique_id.into(),
            kind: RequestKind::Form { status: status.into(), once_per_call, body },
            tag: None,
        }
    }

    /// The upload of a recording file of call `unique_id`; with `delete_after` the file is
    /// removed once the helpdesk accepted it.
    pub fn upload(unique_id: impl Into<String>, path: impl Into<PathBuf>, delete_after: bool) -> Request {
        Request {
            unique_id: unique_id.into(),
            kind: RequestKind::Upload { path: path.into(), delete_after },
            tag: None,
        }
    }

    /// The same request carrying `tag`: after the helpdesk accepted it, every hook registered
    /// with [`super::DeliveryHandle::on_delivered`] is called with the tag. The tag is stored
    /// with the row, so it survives restarts.
    pub fn tagged(mut self, tag: impl Into<String>) -> Request {
        self.tag = Some(tag.into());
        self
    }

    /// The tag given with [`Request::tagged`].
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The call's linkedid: requests of one call are delivered in the order they were enqueued.
    pub fn unique_id(&self) -> &str {
        &self.unique_id
    }

    /// The helpdesk `status` (`record` for uploads).
    pub fn status(&self) -> &str {
        match &self.kind {
            RequestKind::Form { status, .. } => status,
            RequestKind::Upload { .. } => UPLOAD_STATUS,
        }
    }

    /// The encoded form body, for event requests.
    pub fn form_body(&self) -> Option<&str> {
        match &self.kind {
            RequestKind::Form { body, .. } => Some(body),
            RequestKind::Upload { .. } => None,
        }
    }

    /// The file to upload, for recording requests.
    pub fn upload_path(&self) -> Option<&Path> {
        match &self.kind {
            RequestKind::Form { .. } => None,
            RequestKind::Upload { path, .. } => Some(path),
        }
    }

    /// Start and ended events are stored at most once per call: this key makes a second one a no-op.
    pub(crate) fn once_key(&self) -> Option<String> {
        match &self.kind {
            RequestKind::Form { status, once_per_call: true, .. } => Some(format!("{}\n{status}", self.unique_id)),
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
    }
}
