//! The fake ARI's HTTP side: Basic auth, the REST resources deskhook reads, and the event
//! websocket upgrade. Shapes and status codes follow `shared/ari-api/*.json` and what the lab
//! Asterisk answered (`probes.md`). New ARI resources are added to [`router`].

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::recording::Answer;
use super::{lock, mark_listing, request_key, session, SessionSlot, Shared};

/// Chunk size of a stored recording's file download.
const FILE_CHUNK: usize = 64 * 1024;

/// Every route the fake serves.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/ari/asterisk/info", get(asterisk_info))
        .route("/ari/endpoints", get(endpoints))
        .route("/ari/channels", get(channels))
        .route("/ari/channels/{id}", get(channel).delete(hang_up))
        .route("/ari/channels/{id}/variable", get(channel_variable))
        .route("/ari/channels/{id}/snoop", post(snoop))
        .route("/ari/channels/{id}/record", post(record))
        .route("/ari/bridges", get(bridges))
        .route("/ari/recordings/live/{name}", get(live_recording))
        .route("/ari/recordings/live/{name}/stop", post(stop_recording))
        .route("/ari/recordings/stored", get(stored_recordings))
        .route("/ari/recordings/stored/{name}", get(stored_recording).delete(delete_stored))
        .route("/ari/recordings/stored/{name}/file", get(stored_file))
        .route("/ari/events", get(events))
        .route("/ari/events/user/{name}", post(user_event))
        .route("/ari/applications/{name}/eventFilter", put(event_filter))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(shared.clone(), gate))
        .with_state(shared)
}

fn ari_error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "message": message }))).into_response()
}

/// Counts the request, answers 503 while "restarting" and 401 without the right credentials.
async fn gate(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    shared.count_request(request_key(request.method().as_str(), request.uri().path()));
    if !shared.up.load(Ordering::SeqCst) {
        return ari_error(StatusCode::SERVICE_UNAVAILABLE, "Asterisk is restarting");
    }
    if !authorized(&shared, request.headers(), request.uri().query()) {
        shared.status.send_modify(|status| status.auth_failures += 1);
        let mut response = ari_error(StatusCode::UNAUTHORIZED, "Authentication required");
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Asterisk REST Interface\""),
        );
        return response;
    }
    next.run(request).await
}

fn authorized(shared: &Shared, headers: &HeaderMap, query: Option<&str>) -> bool {
    let expected = format!("{}:{}", shared.options.username, shared.options.password);
    let from_header = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok())
        .is_some_and(|decoded| decoded == expected.as_bytes());
    // ARI also accepts `?api_key=user:password`.
    let from_query = query.is_some_and(|query| {
        form_urlencoded::parse(query.as_bytes()).any(|(key, value)| key == "api_key" && value == expected)
    });
    from_header || from_query
}

async fn asterisk_info(State(shared): State<Arc<Shared>>) -> Response {
    Json(lock(&shared.info).clone()).into_response()
}

async fn endpoints(State(shared): State<Arc<Shared>>) -> Response {
    Json(lock(&shared.pbx).endpoints(&shared.options.endpoints)).into_response()
}

async fn channels(State(shared): State<Arc<Shared>>) -> Response {
    wait_for_open_listings(&shared).await;
    let listing = lock(&shared.pbx).channels();
    mark_listing(&shared, true);
    answer_listing(&shared, listing).await
}

async fn bridges(State(shared): State<Arc<Shared>>) -> Response {
    wait_for_open_listings(&shared).await;
    let listing = lock(&shared.pbx).bridges();
    mark_listing(&shared, false);
    answer_listing(&shared, listing).await
}

/// While a test holds the listings, `GET /channels` and `/bridges` wait (and then answer with
/// what is live when they are released).
async fn wait_for_open_listings(shared: &Shared) {
    let mut open = shared.listings_open.subscribe();
    let _ = open.wait_for(|open| *open).await;
}

async fn answer_listing(shared: &Shared, listing: Vec<Value>) -> Response {
    let delay = shared.listing_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    Json(Value::Array(listing)).into_response()
}

async fn channel(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    match lock(&shared.pbx).channel(&id) {
        Some(channel) => Json(channel).into_response(),
        None => ari_error(StatusCode::NOT_FOUND, "Channel not found"),
    }
}

/// `GET /channels/{id}/variable?variable=…`: functions are evaluated through the channel
/// (only `QUEUE_MEMBER_LIST` is simulated; others fail as a failing function does),
/// plain variables come from the ChannelVarset events replayed so far.
async fn channel_variable(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let Some(variable) = params.get("variable").filter(|name| !name.is_empty()) else {
        return ari_error(StatusCode::BAD_REQUEST, "Variable name is required");
    };
    let delay = shared.variable_delay_ms.load(Ordering::Relaxed);
    if delay > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
    }
    let pbx = lock(&shared.pbx);
    if pbx.channel(&id).is_none() {
        return ari_error(StatusCode::NOT_FOUND, "Channel not found");
    }
    if let Some((function, arguments)) = variable.strip_suffix(')').and_then(|call| call.split_once('(')) {
        let queue_members = lock(&shared.queue_members);
        return match (function, queue_members.get(arguments)) {
            ("QUEUE_MEMBER_LIST", Some(members)) => Json(json!({ "value": members })).into_response(),
            _ => ari_error(StatusCode::INTERNAL_SERVER_ERROR, "Unable to read provided function"),
        };
    }
    match pbx.variable(&id, variable) {
        Some(value) => Json(json!({ "value": value })).into_response(),
        None => ari_error(StatusCode::NOT_FOUND, "Provided variable was not found"),
    }
}

fn respond((status, body): Answer) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match body {
        Some(body) => (status, Json(body)).into_response(),
        None => status.into_response(),
    }
}

/// `POST /channels/{id}/snoop`: a Snoop channel on a live channel, into the given application.
async fn snoop(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let at = shared.now_ms();
    let mut recordings = lock(&shared.recordings);
    let spied = lock(&shared.pbx).channel(&id);
    let outcome = recordings.snoop(spied.as_ref(), &params, at);
    shared.apply_recording_outcome(&outcome);
    respond(outcome.answer)
}

/// `POST /channels/{id}/record`: only channels in Stasis (here: the fake's snoops) record.
async fn record(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    let at = shared.now_ms();
    let mut recordings = lock(&shared.recordings);
    let exists = lock(&shared.pbx).channel(&id).is_some();
    let outcome = recordings.record(&id, exists, &params, at);
    shared.apply_recording_outcome(&outcome);
    let location = format!("/recordings/live/{}", params.get("name").map(String::as_str).unwrap_or_default());
    let mut response = respond(outcome.answer);
    if response.status() == StatusCode::CREATED {
        if let Ok(value) = header::HeaderValue::from_str(&location) {
            response.headers_mut().insert(header::LOCATION, value);
        }
    }
    response
}

/// `DELETE /channels/{id}`. Snoops leave Stasis (and stop recording) at once; replayed
/// channels end when their trace says so, so hanging one up is accepted and changes nothing.
async fn hang_up(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let at = shared.now_ms();
    let mut recordings = lock(&shared.recordings);
    if recordings.is_snoop(&id) {
        let outcome = recordings.hang_up_snoop(&id, at);
        shared.apply_recording_outcome(&outcome);
        return respond(outcome.answer);
    }
    match lock(&shared.pbx).channel(&id) {
        Some(_) => StatusCode::NO_CONTENT.into_response(),
        None => ari_error(StatusCode::NOT_FOUND, "Channel not found"),
    }
}

async fn live_recording(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    respond(lock(&shared.recordings).live(&name))
}

async fn stop_recording(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let at = shared.now_ms();
    let mut recordings = lock(&shared.recordings);
    let outcome = recordings.stop(&name, at);
    shared.apply_recording_outcome(&outcome);
    respond(outcome.answer)
}

async fn stored_recordings(State(shared): State<Arc<Shared>>) -> Response {
    Json(lock(&shared.recordings).stored_list()).into_response()
}

async fn stored_recording(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    respond(lock(&shared.recordings).stored(&name))
}

async fn delete_stored(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    respond(lock(&shared.recordings).delete_stored(&name))
}

/// `GET /recordings/stored/{name}/file`: the file, produced chunk by chunk while it is sent.
async fn stored_file(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> Response {
    let Some((format, audio)) = lock(&shared.recordings).stored_file(&name) else {
        return ari_error(StatusCode::NOT_FOUND, "Recording not found");
    };
    let size = audio.len();
    let chunks = futures_util::stream::unfold((audio, 0u64), move |(audio, offset)| async move {
        if offset >= size {
            return None;
        }
        let take = (size - offset).min(FILE_CHUNK as u64) as usize;
        let mut chunk = vec![0u8; take];
        audio.read_at(offset, &mut chunk);
        Some((Ok::<_, std::io::Error>(bytes::Bytes::from(chunk)), (audio, offset + take as u64)))
    });
    let content_type = if format.starts_with("wav") { "audio/x-wav" } else { "application/octet-stream" };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CONTENT_LENGTH, size)
        .body(Body::from_stream(chunks))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `POST /events/user/{eventName}?application=…` with an optional `{"variables": {…}}` body:
/// a `ChannelUserevent` on the application's websocket, queued behind what is already there.
async fn user_event(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    Query(params): Query<HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let Some(application) = params.get("application").filter(|app| !app.is_empty()) else {
        return ari_error(StatusCode::BAD_REQUEST, "Missing parameter application");
    };
    if params.keys().any(|key| key != "application" && key != "source") {
        return ari_error(StatusCode::BAD_REQUEST, "Unknown query parameter");
    }
    if params.contains_key("source") {
        // deskhook posts source-less markers only; a source would have to be resolved.
        return ari_error(StatusCode::UNPROCESSABLE_ENTITY, "Event source not found");
    }
    let variables = if body.is_empty() {
        serde_json::Map::new()
    } else {
        let parsed: Value = match serde_json::from_slice(&body) {
            Ok(parsed) => parsed,
            Err(_) => return ari_error(StatusCode::BAD_REQUEST, "Invalid JSON body"),
        };
        match parsed.get("variables") {
            None => serde_json::Map::new(),
            Some(Value::Object(variables)) if variables.values().all(Value::is_string) => variables.clone(),
            Some(_) => return ari_error(StatusCode::BAD_REQUEST, "Invalid userevent data"),
        }
    };
    if shared.user_event(application, &name, variables) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        ari_error(StatusCode::NOT_FOUND, "Application not found")
    }
}

/// `PUT /applications/{name}/eventFilter`: sets the application's event filter and answers the
/// `Application` model. The application must be registered (a websocket of it connected);
/// without `event_filter` in the options, the resource does not exist.
async fn event_filter(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    if !shared.options.event_filter {
        return not_found().await;
    }
    if !lock(&shared.sessions).iter().any(|session| session.app == name) {
        return ari_error(StatusCode::NOT_FOUND, "Application not found");
    }
    let filter = {
        let mut filters = lock(&shared.filters);
        let mut filter = filters.get(&name).cloned().unwrap_or_default();
        if let Err(problem) = filter.update(&body) {
            return ari_error(StatusCode::BAD_REQUEST, &problem);
        }
        filters.insert(name.clone(), filter.clone());
        filter
    };
    // Wakes whoever waits on the status (which reads the filters).
    shared.status.send_modify(|_| {});
    let mut application = serde_json::Map::new();
    application.insert("name".into(), Value::String(name));
    for list in ["channel_ids", "bridge_ids", "endpoint_ids", "device_names"] {
        application.insert(list.into(), Value::Array(Vec::new()));
    }
    filter.to_json(&mut application);
    Json(Value::Object(application)).into_response()
}

async fn not_found() -> Response {
    ari_error(StatusCode::NOT_FOUND, "Resource not found")
}

/// The event websocket: `GET /ari/events?app=…[&subscribeAll=true]` with an upgrade.
async fn events(State(shared): State<Arc<Shared>>, mut request: Request) -> Response {
    let query = request.uri().query().unwrap_or_default().to_string();
    let app = form_urlencoded::parse(query.as_bytes())
        .find(|(key, _)| key == "app")
        .map(|(_, value)| value.into_owned())
        .unwrap_or_default();
    if app.is_empty() {
        return ari_error(StatusCode::BAD_REQUEST, "Missing parameter app");
    }
    let headers = request.headers();
    let wants_websocket = headers
        .get(header::UPGRADE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.eq_ignore_ascii_case("websocket"));
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).map(|key| key.as_bytes().to_vec()) else {
        return ari_error(StatusCode::BAD_REQUEST, "websocket upgrade required");
    };
    if !wants_websocket {
        return ari_error(StatusCode::BAD_REQUEST, "websocket upgrade required");
    }
    let upgrade = hyper::upgrade::on(&mut request);
    let id = shared.next_session.fetch_add(1, Ordering::Relaxed);
    // The simulator's outgoing messages for one websocket; a test's trace at most.
    let (tx, rx) = mpsc::unbounded_channel();
    {
        let mut sessions = lock(&shared.sessions);
        // A newer websocket for the same application takes it over, as in Asterisk.
        sessions.retain(|session| {
            if session.app == app {
                shared.tell_replaced(session);
                false
            } else {
                true
            }
        });
        sessions.push(SessionSlot { id, app: app.clone(), tx, listed_channels: false, listed_bridges: false });
    }
    shared.status.send_modify(|status| {
        status.connections += 1;
        status.last_events_query = query;
    });
    shared.refresh_sessions();
    tokio::spawn(session::run(shared.clone(), id, app, upgrade, rx));
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::UPGRADE, "websocket")
        .header(header::CONNECTION, "Upgrade")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}
