//! A simulated Asterisk ARI on loopback: HTTP REST + the event websocket, speaking ARI's real
//! protocol and replaying recorded traces. deskhook's `demo` command runs it; deskhook's tests
//! and benches drive it through the controls on [`FakeAri`] (drop the socket without a close frame,
//! restart with every channel gone, freeze, take the application over, replay at full speed).
//!
//! Live channels and bridges are derived from the events replayed so far, so `GET /channels`
//! after a reconnect shows what a real Asterisk would. Snoop channels, live and stored
//! recordings are simulated in `recording.rs` (what ARI recording mode uses). Routes live in
//! `server.rs`; add new ARI resources there.

#![warn(unreachable_pub)]

pub mod bundled;
mod filter;
mod recording;
mod server;
mod session;
pub mod state;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

/// The text of one ARI message (cheap to clone: reference-counted bytes).
pub type MessageText = tokio_tungstenite::tungstenite::Utf8Bytes;
/// Milliseconds since the Unix epoch, as ARI's timestamps are read.
pub type EpochMillis = i64;

pub use recording::{generated_audio, RecordingAudio, LAB_SNOOP_RECORDING};
pub use state::{FakeMessage, FakeTrace, PbxState};

/// The lab PBX the bundled traces were recorded on: `GET /asterisk/info` at idle.
pub const LAB_ASTERISK_INFO: &str = include_str!("../../../tests/fixtures/traces/asterisk-info.json");
/// The lab PBX's `GET /endpoints` at idle.
pub const LAB_ENDPOINTS: &str = include_str!("../../../tests/fixtures/traces/endpoints.json");

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeAriOptions {
    pub username: String,
    pub password: String,
    /// `GET /asterisk/info` (its `status.startup_time` changes on [`FakeAri::restart`]).
    pub asterisk_info: Value,
    /// `GET /endpoints` (live `channel_ids` are filled in).
    pub endpoints: Value,
    /// `QUEUE_MEMBER_LIST(<queue>)` answers by queue name, e.g. `"PJSIP/101,PJSIP/102"`.
    pub queue_members: BTreeMap<String, String>,
    /// Replay waits for a connected client, instead of losing events while nobody listens
    /// (which is what a real Asterisk does).
    pub hold_events_while_disconnected: bool,
    /// Events go to a websocket from the moment it connects, before its client has listed
    /// channels and bridges — as in Asterisk, where the connect and the REST answers race.
    /// When false, a session gets events only once it has listed both (and replay waits for that).
    pub deliver_before_listing: bool,
    /// `PUT /applications/{name}/eventFilter` exists (Asterisk 13.26 / 16.3 and later); when
    /// false it answers 404 "Resource not found", as an older Asterisk does.
    pub event_filter: bool,
}

impl FakeAriOptions {
    /// The lab PBX: endpoints provider/101/102/103, Asterisk 22.10.1, queues `support` and `support-local`.
    pub fn lab(username: &str, password: &str) -> Self {
        let queue_members = BTreeMap::from([
            ("support".to_string(), "PJSIP/101,PJSIP/102,PJSIP/103".to_string()),
            (
                "support-local".to_string(),
                "Local/101@from-queue/n,Local/102@from-queue/n,Local/103@from-queue/n".to_string(),
            ),
        ]);
        Self {
            username: username.into(),
            password: password.into(),
            asterisk_info: serde_json::from_str(LAB_ASTERISK_INFO).unwrap_or(Value::Null),
            endpoints: serde_json::from_str(LAB_ENDPOINTS).unwrap_or(Value::Array(Vec::new())),
            queue_members,
            hold_events_while_disconnected: true,
            deliver_before_listing: true,
            event_filter: true,
        }
    }
}

/// What the fake has seen, for tests to wait on.
#[derive(Debug, Clone, Default)]
pub struct FakeStatus {
    /// Websocket sessions accepted so far.
    pub connections: u64,
    /// Sessions connected now (and not taken over).
    pub live_sessions: usize,
    /// A connected session has listed `/channels` and `/bridges` since it connected.
    pub ready: bool,
    /// Requests answered 401.
    pub auth_failures: u64,
    /// `METHOD /path` → count (websocket upgrades included).
    pub requests: BTreeMap<String, u64>,
    /// The query string of the last websocket upgrade.
    pub last_events_query: String,
    /// Messages written to websockets.
    pub messages_sent: u64,
    /// Messages an application's event filter kept from its websocket.
    pub messages_filtered: u64,
    /// The event types each application asked for (`allowed` of its event filter; empty: all).
    pub events_allowed: BTreeMap<String, Vec<String>>,
    /// Longest single write batch to a websocket, in microseconds (a stalled reader shows here).
    pub longest_write_us: u64,
}

impl PlayReport {
    /// Messages written to the websocket: sent and not filtered out.
    pub fn written(&self) -> usize {
        self.sent - self.filtered
    }
}

impl FakeStatus {
    pub fn requests_of(&self, key: &str) -> u64 {
        self.requests.get(key).copied().unwrap_or(0)
    }
}

/// How fast a trace is replayed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pace {
    /// The recorded gaps divided by `speedup`.
    Recorded { speedup: f64 },
    /// No waiting between messages.
    MaxSpeed,
}

/// What one replayed message became.
enum Broadcast {
    /// Queued for a connected client's websocket.
    Written,
    /// Every connected client's application filters its type out (Asterisk's part is done).
    Filtered,
    /// No client was there to get it.
    Nobody,
}

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PlayReport {
    /// Messages Asterisk emitted while a client was connected (written, or filtered out).
    pub sent: usize,
    /// Of `sent`, those the application's event filter kept back: never written.
    pub filtered: usize,
    /// Messages nobody received (no client connected and not holding).
    pub lost: usize,
    /// The replay was cut short by a restart.
    pub aborted: bool,
}

/// A command to a websocket session task.
#[derive(Debug)]
pub(crate) enum SessionCommand {
    /// A message and when it was queued (the session may hold it back by the websocket lag).
    Send(MessageText, Instant),
    /// Close the TCP connection without a close frame.
    Drop,
    /// Stop reading and writing but keep the socket open.
    Freeze,
}

pub(crate) struct SessionSlot {
    pub id: u64,
    pub app: String,
    pub tx: mpsc::UnboundedSender<SessionCommand>,
    pub listed_channels: bool,
    pub listed_bridges: bool,
}

impl SessionCommand {
    pub(crate) fn send(text: MessageText) -> Self {
        SessionCommand::Send(text, Instant::now())
    }
}

impl SessionSlot {
    fn ready(&self) -> bool {
        self.listed_channels && self.listed_bridges
    }

    fn receives_events(&self, options: &FakeAriOptions) -> bool {
        options.deliver_before_listing || self.ready()
    }
}

/// State shared by the server, the sessions and the controls.
pub(crate) struct Shared {
    pub options: FakeAriOptions,
    pub info: Mutex<Value>,
    pub queue_members: Mutex<BTreeMap<String, String>>,
    pub pbx: Mutex<PbxState>,
    /// Snoops, live and stored recordings. Lock order: `recordings` before `pbx`.
    pub recordings: Mutex<recording::Recordings>,
    /// The newest replayed timestamp and when it was replayed: the fake's "now" in trace time.
    pub clock: Mutex<Option<(EpochMillis, Instant)>>,
    pub sessions: Mutex<Vec<SessionSlot>>,
    /// Event filters by application; they outlive the application's websockets, as in Asterisk.
    pub filters: Mutex<BTreeMap<String, filter::EventTypeFilter>>,
    /// False while "restarting": every request gets 503.
    pub up: AtomicBool,
    /// Bumped by every restart; a replay started in an older epoch stops.
    pub epoch: AtomicU64,
    pub next_session: AtomicU64,
    pub messages_sent: AtomicU64,
    pub messages_filtered: AtomicU64,
    pub longest_write_us: AtomicU64,
    /// `GET /channels` and `/bridges` answer this many milliseconds late (with what was live when asked).
    pub listing_delay_ms: AtomicU64,
    pub variable_delay_ms: AtomicU64,
    /// Websocket messages are written this many milliseconds after they happened.
    pub event_lag_ms: AtomicU64,
    /// False while a test holds `GET /channels` and `/bridges` back.
    pub listings_open: watch::Sender<bool>,
    pub status: watch::Sender<FakeStatus>,
    /// Cancelled when the fake shuts down (ends frozen sessions too).
    pub stop: CancellationToken,
}

pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// Recomputes the session-derived parts of the status and wakes waiters.
    pub(crate) fn refresh_sessions(&self) {
        let (live, ready) = {
            let sessions = lock(&self.sessions);
            (sessions.len(), sessions.iter().any(SessionSlot::ready))
        };
        self.status.send_modify(|status| {
            status.live_sessions = live;
            status.ready = ready;
        });
    }

    pub(crate) fn count_request(&self, key: String) {
        self.status.send_modify(|status| *status.requests.entry(key).or_insert(0) += 1);
    }

    /// Sends one replayed message to every ready session; false when none was ready.
    fn broadcast(&self, message: &FakeMessage) -> Broadcast {
        let sessions = lock(&self.sessions);
        let (mut written, mut filtered) = (false, false);
        for session in sessions.iter().filter(|session| session.receives_events(&self.options)) {
            if !self.allows(&session.app, &message.kind) {
                filtered = true;
            } else if session.tx.send(SessionCommand::send(message.text.clone())).is_ok() {
                written = true;
            }
        }
        match (written, filtered) {
            (true, _) => Broadcast::Written,
            (false, true) => Broadcast::Filtered,
            (false, false) => Broadcast::Nobody,
        }
    }

    /// Tells a session that another client took its application over (unless its filter says no).
    pub(crate) fn tell_replaced(&self, session: &SessionSlot) {
        if self.allows(&session.app, "ApplicationReplaced") {
            let _ = session.tx.send(SessionCommand::send(replaced_message(&session.app)));
        }
    }

    /// Whether `app`'s event filter lets a message of type `kind` through (counting the ones it stops).
    /// Lock order: `sessions` before `filters`.
    pub(crate) fn allows(&self, app: &str, kind: &str) -> bool {
        let allowed = lock(&self.filters).get(app).is_none_or(|filter| filter.allows(kind));
        if !allowed {
            self.messages_filtered.fetch_add(1, Ordering::Relaxed);
        }
        allowed
    }

    /// Sends generated events to every ready session.
    fn broadcast_events(&self, events: &[Value]) {
        if events.is_empty() {
            return;
        }
        let sessions = lock(&self.sessions);
        for event in events {
            let text = recording::message(event);
            let kind = event.get("type").and_then(Value::as_str).unwrap_or_default();
            for session in sessions.iter().filter(|session| session.receives_events(&self.options)) {
                if self.allows(&session.app, kind) {
                    let _ = session.tx.send(SessionCommand::send(text.clone()));
                }
            }
        }
    }

    /// Event time now: the newest replayed timestamp plus the wall time since (the wall clock
    /// before anything was replayed), so generated events fit into the replayed timeline.
    pub(crate) fn now_ms(&self) -> EpochMillis {
        match *lock(&self.clock) {
            Some((at, seen)) => at + seen.elapsed().as_millis() as EpochMillis,
            None => jiff::Timestamp::now().as_millisecond(),
        }
    }

    /// Applies a recording-side change: the live channel list, then its events.
    pub(crate) fn apply_recording_outcome(&self, outcome: &recording::Outcome) {
        if !outcome.channels.is_empty() {
            let mut pbx = lock(&self.pbx);
            for (id, channel) in &outcome.channels {
                match channel {
                    Some(channel) => pbx.add_channel(id, channel.clone()),
                    None => pbx.remove_channel(id),
                }
            }
        }
        self.broadcast_events(&outcome.events);
    }

    /// A websocket of `app` went away: with no other connected for it, its snoops end.
    pub(crate) fn application_left(&self, app: &str) {
        if lock(&self.sessions).iter().any(|session| session.app == app) {
            return;
        }
        let at = self.now_ms();
        let mut recordings = lock(&self.recordings);
        let outcome = recordings.application_gone(app, at);
        self.apply_recording_outcome(&outcome);
    }

    fn any_receiving(&self) -> bool {
        lock(&self.sessions).iter().any(|session| session.receives_events(&self.options))
    }

    /// Queues a user event for `app`'s websocket (behind everything already queued there);
    /// false when no websocket of `app` is connected.
    pub(crate) fn user_event(&self, app: &str, name: &str, variables: serde_json::Map<String, Value>) -> bool {
        let now = jiff::Timestamp::from_millisecond(self.now_ms())
            .unwrap_or_else(|_| jiff::Timestamp::now())
            .strftime("%Y-%m-%dT%H:%M:%S%.3f+0000")
            .to_string();
        let message = serde_json::json!({
            "type": "ChannelUserevent",
            "timestamp": now,
            "eventname": name,
            "userevent": variables,
            "application": app,
            "asterisk_id": "fa:ke:00:00:00:01",
        });
        let text = MessageText::from(message.to_string());
        let sessions = lock(&self.sessions);
        let mut sent = false;
        for session in sessions.iter().filter(|session| session.app == app) {
            // Posted to a connected application: accepted even when its filter then drops it.
            let delivered = if self.allows(app, "ChannelUserevent") {
                session.tx.send(SessionCommand::send(text.clone())).is_ok()
            } else {
                true
            };
            sent |= delivered;
        }
        sent
    }

    fn drop_sessions(&self) {
        let mut apps = Vec::new();
        for session in lock(&self.sessions).drain(..) {
            let _ = session.tx.send(SessionCommand::Drop);
            apps.push(session.app);
        }
        self.refresh_sessions();
        // Asterisk sees the cut at once: the applications' snoops end before anyone can reconnect.
        apps.dedup();
        for app in apps {
            self.application_left(&app);
        }
    }

    fn freeze_sessions(&self) {
        for session in lock(&self.sessions).drain(..) {
            let _ = session.tx.send(SessionCommand::Freeze);
        }
        self.refresh_sessions();
    }
}

/// A running fake ARI. Dropping it stops the server.
pub struct FakeAri {
    shared: Arc<Shared>,
    address: SocketAddr,
    stop: CancellationToken,
}

impl FakeAri {
    /// Starts the server on `127.0.0.1:0`.
    pub async fn start(options: FakeAriOptions) -> std::io::Result<FakeAri> {
        Self::start_on("127.0.0.1:0".parse().map_err(std::io::Error::other)?, options).await
    }

    /// Starts the server on a given address (e.g. `127.0.0.1:8088` to stand in for Asterisk by hand).
    pub async fn start_on(address: SocketAddr, options: FakeAriOptions) -> std::io::Result<FakeAri> {
        let listener = tokio::net::TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let (status, _) = watch::channel(FakeStatus::default());
        let stop = CancellationToken::new();
        let shared = Arc::new(Shared {
            info: Mutex::new(options.asterisk_info.clone()),
            queue_members: Mutex::new(options.queue_members.clone()),
            options,
            pbx: Mutex::new(PbxState::default()),
            recordings: Mutex::new(recording::Recordings::default()),
            clock: Mutex::new(None),
            sessions: Mutex::new(Vec::new()),
            filters: Mutex::new(BTreeMap::new()),
            up: AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            next_session: AtomicU64::new(1),
            messages_sent: AtomicU64::new(0),
            messages_filtered: AtomicU64::new(0),
            longest_write_us: AtomicU64::new(0),
            listing_delay_ms: AtomicU64::new(0),
            variable_delay_ms: AtomicU64::new(0),
            event_lag_ms: AtomicU64::new(0),
            listings_open: watch::channel(true).0,
            status,
            stop: stop.clone(),
        });
        let router = server::router(shared.clone());
        let shutdown = stop.clone();
        tokio::spawn(async move {
            let serve = axum::serve(listener, router).with_graceful_shutdown(async move { shutdown.cancelled().await });
            if let Err(error) = serve.await {
                tracing::warn!("fake ARI server stopped: {error}");
            }
        });
        Ok(FakeAri { shared, address, stop })
    }

    /// `http://127.0.0.1:<port>`, for `[ari] url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn status(&self) -> FakeStatus {
        let mut status = self.shared.status.borrow().clone();
        status.messages_sent = self.shared.messages_sent.load(Ordering::Relaxed);
        status.messages_filtered = self.shared.messages_filtered.load(Ordering::Relaxed);
        status.events_allowed =
            lock(&self.shared.filters).iter().map(|(app, filter)| (app.clone(), filter.allowed.clone())).collect();
        status.longest_write_us = self.shared.longest_write_us.load(Ordering::Relaxed);
        status
    }

    /// Forgets the longest write seen so far (e.g. right before a measured burst).
    pub fn reset_write_marks(&self) {
        self.shared.longest_write_us.store(0, Ordering::Relaxed);
    }

    /// Waits until `condition` holds; the last status either way.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        condition: impl Fn(&FakeStatus) -> bool,
    ) -> Result<FakeStatus, FakeStatus> {
        let mut changes = self.shared.status.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let status = self.status();
            if condition(&status) {
                return Ok(status);
            }
            // Sent-message counts are not signalled; poll them too.
            let wake = tokio::time::sleep(Duration::from_millis(20));
            tokio::select! {
                _ = changes.changed() => {}
                _ = wake => {}
                _ = tokio::time::sleep_until(deadline) => return Err(self.status()),
            }
        }
    }

    /// The fake's "now" in trace time (the newest replayed timestamp plus the wall time since).
    pub fn now_ms(&self) -> EpochMillis {
        self.shared.now_ms()
    }

    /// Live channels now (what `GET /channels` answers).
    pub fn live_channels(&self) -> Vec<Value> {
        lock(&self.shared.pbx).channels()
    }

    /// Live bridges now (what `GET /bridges` answers).
    pub fn live_bridges(&self) -> Vec<Value> {
        lock(&self.shared.pbx).bridges()
    }

    /// Makes `GET /channels` and `GET /bridges` answer `delay` late, with what was live when
    /// they were asked, while events keep flowing: the snapshot a client gets is older than
    /// events it has already received (as on a busy PBX).
    pub fn delay_listings(&self, delay: Duration) {
        self.shared.listing_delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Answers `GET /channels/{id}/variable` only after `delay`, with the state of then (a
    /// channel that hung up meanwhile is not found), as a loaded Asterisk would.
    pub fn delay_variables(&self, delay: Duration) {
        self.shared.variable_delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Holds `GET /channels` and `GET /bridges` until [`FakeAri::release_listings`]: a client
    /// that connects now gets events while its snapshot is pending.
    pub fn hold_listings(&self) {
        self.shared.listings_open.send_replace(false);
    }

    /// Lets held listings answer, with what is live now.
    pub fn release_listings(&self) {
        self.shared.listings_open.send_replace(true);
    }

    /// Listing requests waiting on [`FakeAri::hold_listings`] (counted when they arrive).
    pub fn listings_waiting(&self) -> usize {
        self.shared.listings_open.receiver_count()
    }

    /// Makes every websocket message arrive `lag` after it happened, while REST answers at once
    /// with the state after it: a client's snapshot can list channels whose `ChannelCreated`
    /// is still on its way (as on a loaded PBX, where the websocket runs behind REST).
    pub fn lag_events(&self, lag: Duration) {
        self.shared.event_lag_ms.store(lag.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn set_queue_members(&self, queue: &str, members: &str) {
        lock(&self.shared.queue_members).insert(queue.into(), members.into());
    }

    /// Replays `trace.messages[range]` at `pace`.
    pub async fn play(&self, trace: &FakeTrace, range: Range<usize>, pace: Pace) -> PlayReport {
        let epoch = self.shared.epoch.load(Ordering::SeqCst);
        let range = range.start.min(trace.len())..range.end.min(trace.len());
        let mut report = PlayReport::default();
        let started = tokio::time::Instant::now();
        let first_at = trace.messages[range.clone()].iter().find_map(|message| message.at);
        for (count, message) in trace.messages[range].iter().enumerate() {
            if let (Pace::Recorded { speedup }, Some(first), Some(at)) = (pace, first_at, message.at) {
                let offset_ms = ((at - first).max(0) as f64 / speedup.max(0.001)) as u64;
                tokio::time::sleep_until(started + Duration::from_millis(offset_ms)).await;
            } else if count % 256 == 255 {
                tokio::task::yield_now().await;
            }
            let mut applied = false;
            loop {
                if self.shared.epoch.load(Ordering::SeqCst) != epoch {
                    report.aborted = true;
                    return report;
                }
                let hold = self.shared.options.hold_events_while_disconnected;
                if hold && !self.shared.any_receiving() {
                    let before_listing = self.shared.options.deliver_before_listing;
                    let _ = self
                        .wait_for(Duration::from_millis(200), |status| {
                            if before_listing {
                                status.live_sessions > 0
                            } else {
                                status.ready
                            }
                        })
                        .await;
                    continue;
                }
                if !applied {
                    lock(&self.shared.pbx).apply(message);
                    if let Some(at) = message.at {
                        *lock(&self.shared.clock) = Some((at, Instant::now()));
                    }
                    applied = true;
                }
                match self.shared.broadcast(message) {
                    Broadcast::Written => {
                        report.sent += 1;
                        break;
                    }
                    Broadcast::Filtered => {
                        report.sent += 1;
                        report.filtered += 1;
                        break;
                    }
                    Broadcast::Nobody => {}
                }
                if !hold {
                    report.lost += 1;
                    break;
                }
            }
            if let Some(gone) = message.destroyed_channel() {
                let at = self.shared.now_ms();
                let mut recordings = lock(&self.shared.recordings);
                let outcome = recordings.spied_channel_gone(gone, at);
                self.shared.apply_recording_outcome(&outcome);
            }
        }
        report
    }

    /// What the stored recordings made from now on contain (default: the lab's snoop recording).
    pub fn set_recording_audio(&self, audio: RecordingAudio) {
        lock(&self.shared.recordings).set_audio(audio);
    }

    /// Names of the stored recordings (`GET /recordings/stored`), sorted.
    pub fn stored_recordings(&self) -> Vec<String> {
        lock(&self.shared.recordings).stored_names()
    }

    /// The audio stored recording `name` serves.
    pub fn stored_audio(&self, name: &str) -> Option<RecordingAudio> {
        lock(&self.shared.recordings).stored_file(name).map(|(_, audio)| audio)
    }

    /// Names of the recordings in progress, sorted.
    pub fn live_recordings(&self) -> Vec<String> {
        lock(&self.shared.recordings).live_names()
    }

    /// Ids of the snoop channels that exist now, sorted.
    pub fn snoop_channels(&self) -> Vec<String> {
        lock(&self.shared.recordings).snoop_ids()
    }

    /// Closes every event websocket without a close frame (a network cut or a crash).
    pub fn drop_connections(&self) {
        self.shared.drop_sessions();
    }

    /// Keeps every websocket open but silent: no events, no pongs.
    pub fn freeze_connections(&self) {
        self.shared.freeze_sessions();
    }

    /// Tells every connected client that another one took its application over, as Asterisk does.
    pub fn replace_application(&self) {
        let mut sessions = lock(&self.shared.sessions);
        for session in sessions.drain(..) {
            self.shared.tell_replaced(&session);
        }
        drop(sessions);
        self.shared.refresh_sessions();
    }

    /// Simulates `core restart now` where the hangup events never arrive: sockets drop without a
    /// close frame, every request gets 503 for `down_for`, then Asterisk is back with no channels,
    /// no bridges and a new `startup_time`. A replay in progress stops.
    pub async fn restart(&self, down_for: Duration) {
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        self.shared.up.store(false, Ordering::SeqCst);
        self.drop_connections();
        let at = self.shared.now_ms();
        lock(&self.shared.recordings).restart(at);
        lock(&self.shared.pbx).clear();
        // A restarted Asterisk has no applications, so no filters either.
        lock(&self.shared.filters).clear();
        tokio::time::sleep(down_for).await;
        let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
        if let Some(status) = lock(&self.shared.info).get_mut("status").and_then(Value::as_object_mut) {
            status.insert("startup_time".into(), Value::String(now.clone()));
            status.insert("last_reload_time".into(), Value::String(now));
        }
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// Stops the server and every session.
    pub fn shutdown(&self) {
        self.stop.cancel();
        self.drop_connections();
    }
}

impl Drop for FakeAri {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn replaced_message(app: &str) -> MessageText {
    let now = jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3f+0000").to_string();
    let message = serde_json::json!({"type": "ApplicationReplaced", "timestamp": now, "application": app});
    MessageText::from(message.to_string())
}

/// The request-count key of a method and path.
pub(crate) fn request_key(method: &str, path: &str) -> String {
    format!("{method} {path}")
}

/// How long ago an instant was, in whole microseconds.
pub(crate) fn micros_since(start: Instant) -> u64 {
    start.elapsed().as_micros() as u64
}

/// Per-session flags updated by REST handlers (listing channels/bridges marks a resync).
pub(crate) fn mark_listing(shared: &Shared, channels: bool) {
    let mut sessions = lock(&shared.sessions);
    for session in sessions.iter_mut() {
        if channels {
            session.listed_channels = true;
        } else {
            session.listed_bridges = true;
        }
    }
    drop(sessions);
    shared.refresh_sessions();
}
