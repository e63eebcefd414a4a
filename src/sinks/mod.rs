//! Destinations: each module maps the neutral call record (`crate::calls::record`) to the
//! requests one kind of destination takes, as pure functions (what `replay --sink` prints and
//! golden tests check). Storing, sending and retrying them is `crate::deliver`'s job.
//!
//! - [`omnidesk`]: the Omnidesk/Deskie "Asterisk" webhook (SPEC §3), also `replay`'s lines (§5);
//! - [`json`]: lifecycle events and the call summary as signed JSON (SPEC §7);
//! - [`zammad`]: Zammad's generic CTI API;
//! - [`bitrix24`]: Bitrix24's telephony methods (register, card, finish, record);
//! - [`amocrm`]: amoCRM's (Kommo's) calls API.

pub(crate) mod amocrm;
pub(crate) mod bitrix24;
pub mod json;
pub mod omnidesk;
pub mod zammad;

use serde::Serialize;
use serde_json::{json, Value};

use crate::calls::Output;
use crate::config::{Destination, SinkConfig};
use crate::deliver::{Request, UploadRoute};
use crate::recordings::RecordingLinks;

/// One configured sink's mapping, whatever its kind.
pub(crate) enum Mapper {
    Omnidesk { zone: jiff::tz::TimeZone },
    Json(json::JsonMapper),
    Zammad { users: std::collections::BTreeMap<String, String> },
    Bitrix24(bitrix24::Bitrix24Mapper),
    Amocrm(amocrm::AmocrmMapper),
}

impl Mapper {
    /// The mapping of `sink`; `zone` is `pbx.timezone`; `links` make recording links (for the
    /// CRMs that take a URL).
    pub(crate) fn new(sink: &SinkConfig, zone: &jiff::tz::TimeZone, links: Option<&RecordingLinks>) -> Mapper {
        match &sink.destination {
            Destination::Omnidesk => Mapper::Omnidesk { zone: zone.clone() },
            Destination::Json { summary, lifecycle, recordings, .. } => {
                Mapper::Json(json::JsonMapper::new(zone.clone(), *summary, *lifecycle, *recordings))
            }
            Destination::Zammad { users, .. } => Mapper::Zammad { users: users.clone() },
            Destination::Bitrix24(bitrix24) => Mapper::Bitrix24(bitrix24::Bitrix24Mapper::new(bitrix24, zone.clone())),
            Destination::Amocrm(amocrm) => Mapper::Amocrm(amocrm::AmocrmMapper::new(amocrm, links.cloned())),
        }
    }

    /// The requests the sink makes for `output`, as `replay --sink` shows them (SPEC §7):
    /// `(unique_id, request)`.
    pub(crate) fn shown(&mut self, output: &Output) -> Vec<(String, Value)> {
        match self {
            Mapper::Omnidesk { zone } => {
                let line = match output {
                    Output::Event(event) => omnidesk::map(event).map(|mapped| mapped.replay_line(zone)),
                    Output::Recording(recording) => Some(omnidesk::record_line(recording)),
                    Output::Effect(_) => None,
                };
                line.and_then(|line| serde_json::from_str::<Value>(&line).ok())
                    .map(|value| (value["unique_id"].as_str().unwrap_or_default().to_string(), value))
                    .into_iter()
                    .collect()
            }
            Mapper::Json(mapper) => {
                mapper.map(output).iter().map(|request| (request.unique_id().to_string(), request.shown())).collect()
            }
            Mapper::Zammad { users } => match output {
                Output::Event(event) => {
                    zammad::map(event, users).map(|body| (event.unique_id.clone(), body)).into_iter().collect()
                }
                _ => Vec::new(),
            },
            Mapper::Bitrix24(mapper) => {
                mapper.map(output).iter().map(|request| (request.unique_id.clone(), request.shown())).collect()
            }
            Mapper::Amocrm(mapper) => match output {
                Output::Event(event) => mapper
                    .map(event)
                    .map(|body| (event.unique_id.clone(), json!({"method": amocrm::ADD_CALLS, "body": body})))
                    .into_iter()
                    .collect(),
                _ => Vec::new(),
            },
        }
    }
}

impl Mapper {
    /// What sink `name` stores for `output`: its requests, and how it takes the recording if
    /// `output` is one (uploaded once the file is complete).
    pub(crate) fn deliverables(&mut self, name: &str, output: &Output) -> (Vec<Request>, Option<UploadRoute>) {
        // A request made for a call's start or end is stored once per call and sink.
        let once = matches!(output, Output::Event(event) if event.is_once_per_call());
        match self {
            Mapper::Omnidesk { zone } => match output {
                Output::Event(event) => {
                    let requests = omnidesk::map(event).map(|mapped| mapped.request(zone).to_sink(name));
                    (requests.into_iter().collect(), None)
                }
                Output::Recording(_) => (Vec::new(), Some(UploadRoute { sink: name.to_string(), summary: None })),
                Output::Effect(_) => (Vec::new(), None),
            },
            Mapper::Json(mapper) => {
                let mut requests = Vec::new();
                let mut route = None;
                for request in mapper.map(output) {
                    match request {
                        json::JsonRequest::Body { unique_id, event, body } => {
                            let text = serde_json::to_string(&body).unwrap_or_default();
                            requests.push(Request::json(unique_id, event, once, text).to_sink(name));
                        }
                        json::JsonRequest::Upload { summary, .. } => {
                            let summary = serde_json::to_string(&summary).unwrap_or_default();
                            route = Some(UploadRoute { sink: name.to_string(), summary: Some(summary) });
                        }
                    }
                }
                (requests, route)
            }
            Mapper::Zammad { users } => match output {
                Output::Event(event) => {
                    let request = zammad::map(event, users).map(|body| {
                        let status = body["event"].as_str().unwrap_or_default().to_string();
                        Request::json(&event.unique_id, status, once, body.to_string()).to_sink(name)
                    });
                    (request.into_iter().collect(), None)
                }
                _ => (Vec::new(), None),
            },
            Mapper::Bitrix24(mapper) => {
                let mut requests = Vec::new();
                let mut route = None;
                for request in mapper.map(output) {
                    let body = request.shown();
                    if request.file.is_some() {
                        // The file is uploaded with it once complete; the path comes with the upload.
                        let attach = json!({"method": request.method, "params": request.params});
                        route = Some(UploadRoute { sink: name.to_string(), summary: Some(attach.to_string()) });
                    } else {
                        requests.push(
                            Request::json(
                                &request.unique_id,
                                request.status(),
                                request.once_per_call(),
                                body.to_string(),
                            )
                            .to_sink(name),
                        );
                    }
                }
                (requests, route)
            }
            Mapper::Amocrm(mapper) => match output {
                Output::Event(event) => {
                    let request = mapper.map(event).map(|body| {
                        let body = json!({"method": amocrm::ADD_CALLS, "body": body});
                        Request::json(&event.unique_id, "call", true, body.to_string()).to_sink(name)
                    });
                    (request.into_iter().collect(), None)
                }
                _ => (Vec::new(), None),
            },
        }
    }
}

impl Mapper {
    /// Writes the sink's requests for `output` as `replay --sink` lines (SPEC §7), one
    /// `{"sink", "unique_id", "request"}` object per line; `name` is the sink's.
    pub(crate) fn write_shown(
        &mut self,
        name: &str,
        output: &Output,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        for (unique_id, request) in self.shown(output) {
            serde_json::to_writer(&mut *out, &ReplayLine { sink: name, unique_id: &unique_id, request: &request })?;
            writeln!(out)?;
        }
        Ok(())
    }
}

/// One line of `replay --sink NAME` (SPEC §7).
#[derive(Serialize)]
struct ReplayLine<'a> {
    sink: &'a str,
    unique_id: &'a str,
    request: &'a Value,
}
