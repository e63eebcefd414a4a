//! The ARI event websocket: connect with Basic auth, read without ever blocking, ping, treat a
//! silent socket as dead, and reconnect with exponential backoff + jitter.
//!
//! Asterisk drops a websocket whose writes stall for `websocket_write_timeout` (100 ms), so the
//! reading loop does nothing but hand the text frames to a callback that queues them — what one
//! read of the socket brought in one piece, so the receiver wakes once for them: parsing and
//! everything else happens on the receiving side. The loop runs on its own OS thread with its
//! own single-threaded runtime, so no other task can delay it. Outages are logged once when they
//! start (and again only if the kind of failure changes) and once on recovery.
//!
//! What it queues is bounded (`[ari] max_backlog` messages not yet handled): when the engine
//! falls that far behind, the reader neither blocks nor grows without end. It counts an
//! overflow, closes the socket itself, waits until the backlog is down to half, and
//! reconnects at once; the new connection's resync reconciles what was missed.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures_util::{FutureExt, SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use crate::config::AriConfig;

use super::client::{classify_transport, AriClient, AriEndpoint, AriError};
use super::low_water::LowWater;

/// The text of one ARI message, as received (cheap to move: reference-counted bytes).
pub(crate) type MessageText = tungstenite::Utf8Bytes;

/// A connected event websocket.
pub(crate) type EventSocket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The longest the reader pauses after draining the socket while messages flow (see
/// `read_until_closed`): a message waits at most this long more, and at 10 calls a second
/// (about 400 messages with the event filter) one wake-up of the reader and of the engine
/// carries some fifty messages, stored in one outbox commit, instead of one or two. Whatever
/// waits in event time allows for it (the engine task acts on a deadline only this much after
/// it, so an event sent before the deadline but still in the socket is never overtaken).
pub(crate) const READ_PAUSE: Duration = Duration::from_millis(150);
/// A pause ends early once this many bytes wait in the socket (its receive low-water mark, for
/// which the kernel sizes the socket's buffer), so a burst wakes the reader long before the
/// buffers fill, and Asterisk's writes never wait on a pause.
const PAUSE_BYTES: usize = 32 * 1024;
/// The pause where the socket cannot wake the reader early (no low-water mark): short enough
/// for its buffers to take what a busy PBX sends meanwhile.
const PAUSE_WITHOUT_MARK: Duration = Duration::from_millis(40);
/// Fewer frames than this between two pauses is a trickle; more (a flood that kept the reader
/// busy well past `PAUSE_BYTES`), and the reader reads on without pausing.
const TRICKLE: usize = 128;
/// During a flood the reader hands messages over in pieces of this many, so the engine starts
/// on them while the reader reads on.
const HANDOVER: usize = 128;
/// The shortest wait before a reconnect attempt.
const MIN_RECONNECT_DELAY: Duration = Duration::from_millis(500);
/// A connection that lived this long counts as healthy: the next outage starts a fresh backoff.
const STABLE_CONNECTION: Duration = Duration::from_secs(10);

/// What the reader hands over, in socket order.
#[derive(Debug)]
pub(crate) enum SocketEvent {
    /// A websocket is up. `outage` is how long ARI was unreachable before (None on the first connect).
    Connected { generation: u64, outage: Option<Duration> },
    /// ARI messages in socket order: what one read of the socket brought (at most [`HANDOVER`]),
    /// so the engine is woken once for them, not once each.
    Messages(Vec<MessageText>),
    /// The websocket of `generation` is gone; `last_alive` is the last moment it was known to
    /// work (its last frame when it fell silent, else when it closed).
    Disconnected { generation: u64, last_alive: Instant },
}

/// What the reading loop measured; shared with whoever wants to look (benches, metrics).
#[derive(Debug, Default)]
pub struct ReaderStats {
    pub connected: AtomicBool,
    pub connections: AtomicU64,
    pub messages: AtomicU64,
    /// Longest time, in microseconds, the loop spent on one frame before reading the next.
    pub longest_busy_us: AtomicU64,
    /// Longest time, in microseconds, between two consecutive frames (meaningful during a burst).
    pub longest_gap_us: AtomicU64,
    /// Frames the loop spent a millisecond or more on (the thread was preempted, or worse).
    pub slow_frames: AtomicU64,
    /// Messages queued and not yet handled: the receiver calls [`ReaderStats::handled`] for each.
    pub backlog: AtomicUsize,
    /// The largest `backlog` seen.
    pub peak_backlog: AtomicUsize,
    /// Times the backlog reached its limit and the socket was closed for a resync.
    pub overflows: AtomicU64,
}

impl ReaderStats {
    /// Forgets the longest-busy and longest-gap marks (e.g. right before a measured burst).
    pub fn reset_marks(&self) {
        self.longest_busy_us.store(0, Ordering::Relaxed);
        self.longest_gap_us.store(0, Ordering::Relaxed);
        self.slow_frames.store(0, Ordering::Relaxed);
    }

    /// The receiver has taken one queued message off the backlog.
    pub(crate) fn handled(&self) {
        let _ = self.backlog.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| queued.checked_sub(1));
    }

    /// Counts one more queued message, unless `limit` are already waiting.
    fn admit(&self, limit: usize) -> bool {
        let admitted = self
            .backlog
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |queued| (queued < limit).then_some(queued + 1));
        match admitted {
            Ok(before) => {
                self.peak_backlog.fetch_max(before + 1, Ordering::Relaxed);
                true
            }
            Err(_) => false,
        }
    }
}

/// How to reach the event websocket, derived from `[ari]`.
#[derive(Clone)]
pub(crate) struct EventStreamSettings {
    pub endpoint: AriEndpoint,
    pub app: String,
    pub username: String,
    authorization: String,
    pub ping_interval: Duration,
    pub idle_timeout: Duration,
    pub reconnect_max: Duration,
    pub connect_timeout: Duration,
    /// Messages queued and not yet handled at most (`[ari] max_backlog`).
    pub max_backlog: usize,
    config: AriConfig,
}

impl std::fmt::Debug for EventStreamSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStreamSettings")
            .field("endpoint", &self.endpoint)
            .field("app", &self.app)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

impl EventStreamSettings {
    pub(crate) fn from_config(config: &AriConfig) -> Result<Self, AriError> {
        let credentials = format!("{}:{}", config.username, config.password.expose());
        Ok(Self {
            endpoint: AriEndpoint::from_url(&config.url)?,
            app: config.app.clone(),
            username: config.username.clone(),
            authorization: format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(credentials)),
            ping_interval: config.ping_interval.get().max(Duration::from_millis(50)),
            idle_timeout: config.idle_timeout.get().max(Duration::from_millis(200)),
            reconnect_max: config.reconnect_max.get().max(MIN_RECONNECT_DELAY),
            connect_timeout: config.request_timeout.get().max(Duration::from_millis(100)),
            max_backlog: config.max_backlog.max(1),
            config: config.clone(),
        })
    }

    /// The pause before reconnect attempt number `retry` (1 for the first after a failure).
    fn reconnect_delay(&self, retry: u32) -> Duration {
        crate::backoff::pause(MIN_RECONNECT_DELAY, self.reconnect_max, retry)
    }
}

/// Opens the event websocket for `app` (usually `settings.app`) once.
pub(crate) async fn connect_events(settings: &EventStreamSettings, app: &str) -> Result<EventSocket, AriError> {
    let url = settings.endpoint.events_url(app);
    let mut request =
        url.as_str().into_client_request().map_err(|err| AriError::BadUrl(url.clone(), err.to_string()))?;
    let header = HeaderValue::from_str(&settings.authorization)
        .map_err(|_| AriError::BadUrl(settings.endpoint.address().into(), "username/password unusable".into()))?;
    request.headers_mut().insert("Authorization", header);
    let config = WebSocketConfig::default();
    let connector = match settings.config.ca_file.as_str() {
        "" => None,
        ca_file => Some(super::tls::websocket_connector(ca_file).map_err(|problem| {
            AriError::BadUrl(settings.endpoint.address().into(), format!("[ari] ca_file: {problem}"))
        })?),
    };
    let connecting = tokio_tungstenite::connect_async_tls_with_config(request, Some(config), true, connector);
    match tokio::time::timeout(settings.connect_timeout, connecting).await {
        Err(_) => Err(AriError::Timeout { address: settings.endpoint.address().into() }),
        Ok(Err(error)) => Err(classify_websocket(error, settings)),
        Ok(Ok((socket, _response))) => Ok(socket),
    }
}

fn classify_websocket(error: tungstenite::Error, settings: &EventStreamSettings) -> AriError {
    let address = settings.endpoint.address().to_string();
    match error {
        tungstenite::Error::Http(response) => {
            let status = response.status().as_u16();
            let body = response.body().as_ref().map(|b| String::from_utf8_lossy(b).into_owned()).unwrap_or_default();
            match status {
                401 => AriError::Unauthorized { username: settings.username.clone() },
                404 => AriError::NoAri { address, path: "/ari/events".into() },
                _ => AriError::Status {
                    path: "/ari/events".into(),
                    status,
                    message: body.trim().chars().take(200).collect(),
                },
            }
        }
        tungstenite::Error::Io(io) => classify_transport(
            &io.to_string(),
            io.kind() == std::io::ErrorKind::ConnectionRefused,
            address,
            settings.endpoint.is_tls(),
        ),
        other => classify_transport(&other.to_string(), false, address, settings.endpoint.is_tls()),
    }
}

/// Why a connection ended.
enum End {
    Shutdown,
    ReceiverGone,
    Replaced,
    Lost(String),
    /// The backlog reached its limit: the socket was closed so Asterisk never waits on it.
    Overflow,
}

/// Starts the reader on its own thread. `deliver` queues one [`SocketEvent`] and returns
/// false once nobody listens any more. The thread ends on `shutdown` or when `deliver` fails.
pub(crate) fn spawn_event_stream(
    settings: EventStreamSettings,
    deliver: impl FnMut(SocketEvent) -> bool + Send + 'static,
    shutdown: CancellationToken,
    stats: Arc<ReaderStats>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name("ari-reader".into()).spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(runtime) => runtime,
            Err(error) => {
                tracing::error!("cannot start the ARI reader: {error}");
                return;
            }
        };
        runtime.block_on(supervise(settings, deliver, shutdown, stats));
    })
}

/// The reconnect loop.
async fn supervise(
    settings: EventStreamSettings,
    mut deliver: impl FnMut(SocketEvent) -> bool,
    shutdown: CancellationToken,
    stats: Arc<ReaderStats>,
) {
    let mut retries = 0u32;
    let mut generation = 0u64;
    // When the current outage began and which kind of failure was last logged.
    let mut outage: Option<(Instant, &'static str)> = None;
    let mut ever_connected = false;
    loop {
        let attempt = tokio::select! {
            _ = shutdown.cancelled() => return,
            attempt = connect_events(&settings, &settings.app) => attempt,
        };
        match attempt {
            Ok(socket) => {
                generation += 1;
                stats.connections.fetch_add(1, Ordering::Relaxed);
                stats.connected.store(true, Ordering::Relaxed);
                let outage_lasted = outage.take().map(|(started, _)| started.elapsed());
                match outage_lasted {
                    Some(lasted) => tracing::info!(
                        "ARI connection to {} restored after {:.1} s",
                        settings.endpoint.address(),
                        lasted.as_secs_f64()
                    ),
                    None if !ever_connected => tracing::info!(
                        "connected to ARI at {} as application {:?}",
                        settings.endpoint.address(),
                        settings.app
                    ),
                    None => {}
                }
                ever_connected = true;
                if !deliver(SocketEvent::Connected { generation, outage: outage_lasted }) {
                    return;
                }
                let connected_at = Instant::now();
                let (end, last_alive) = read_until_closed(socket, &settings, &mut deliver, &shutdown, &stats).await;
                stats.connected.store(false, Ordering::Relaxed);
                if !deliver(SocketEvent::Disconnected { generation, last_alive }) {
                    return;
                }
                let healthy = connected_at.elapsed() >= STABLE_CONNECTION;
                match end {
                    End::Shutdown | End::ReceiverGone => return,
                    End::Overflow => {
                        if !wait_for_catch_up(&settings, &stats, &shutdown).await {
                            return;
                        }
                        // Asterisk is fine: no backoff, the sooner the resync the smaller the gap.
                        continue;
                    }
                    End::Replaced => {
                        tracing::error!(
                            "another ARI client took over application {:?} (ApplicationReplaced), so deskhook \
                             receives no events; fix: give every ARI client its own name ([ari] app in deskhook's \
                             config) or stop the other client; deskhook keeps reconnecting with backoff",
                            settings.app
                        );
                        outage = Some((Instant::now(), "replaced"));
                    }
                    End::Lost(reason) => {
                        if healthy {
                            retries = 0;
                        }
                        tracing::warn!(
                            "ARI connection to {} lost ({reason}); reconnecting with backoff (at most {} s apart)",
                            settings.endpoint.address(),
                            settings.reconnect_max.as_secs_f64()
                        );
                        outage = Some((Instant::now(), "lost"));
                    }
                }
            }
            Err(error) => {
                let class = error.class();
                let log_it = match outage {
                    None => {
                        outage = Some((Instant::now(), class));
                        true
                    }
                    Some((started, logged)) => {
                        outage = Some((started, class));
                        logged != class
                    }
                };
                if log_it {
                    let error = diagnose(error, &settings).await;
                    let (attempt_kind, fix) = if ever_connected {
                        ("reconnecting to", error.fix_after_outage())
                    } else {
                        ("connecting to", error.fix())
                    };
                    match error {
                        AriError::Unauthorized { .. } | AriError::NoAri { .. } | AriError::BadUrl(..) => {
                            tracing::error!("{attempt_kind} ARI failed: {error}; fix: {fix}; retrying with backoff")
                        }
                        _ => tracing::warn!("{attempt_kind} ARI failed: {error}; fix: {fix}; retrying with backoff"),
                    }
                } else {
                    tracing::debug!("ARI connect attempt failed: {error}");
                }
            }
        }
        retries = retries.saturating_add(1);
        let delay = settings.reconnect_delay(retries);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

/// Turns a vague transport failure into a TLS/plain mismatch when the other scheme answers.
async fn diagnose(error: AriError, settings: &EventStreamSettings) -> AriError {
    match AriClient::new(&settings.config) {
        Ok(client) => client.diagnose(error, &settings.config).await,
        Err(_) => error,
    }
}

/// Reads one connection until it ends, and says when it was last alive. Nothing here waits on
/// anything but the socket.
async fn read_until_closed(
    socket: EventSocket,
    settings: &EventStreamSettings,
    deliver: &mut impl FnMut(SocketEvent) -> bool,
    shutdown: &CancellationToken,
    stats: &ReaderStats,
) -> (End, Instant) {
    let mut low_water = LowWater::of(socket.get_ref());
    let (mut write, mut read) = socket.split();
    let close_now = CancellationToken::new();
    let pinger = {
        let close_now = close_now.clone();
        let ping_interval = settings.ping_interval;
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + ping_interval, ping_interval);
            loop {
                tokio::select! {
                    _ = close_now.cancelled() => {
                        let _ = tokio::time::timeout(Duration::from_millis(500), write.send(Message::Close(None))).await;
                        return;
                    }
                    _ = ticks.tick() => {
                        if write.send(Message::Ping(Default::default())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
    };
    let idle_timeout = settings.idle_timeout;
    let mut idle_checks = tokio::time::interval((idle_timeout / 4).max(Duration::from_millis(25)));
    idle_checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let cancelled = shutdown.cancelled();
    tokio::pin!(cancelled);
    let mut last_frame = Instant::now();
    let mut fell_silent = false;
    // Starts as if the socket was just drained: the first wait is on the socket.
    let mut drained = true;
    // Frames taken since the socket was last drained.
    let mut frames_since_drain = 0usize;
    // Where the current gap between frames started (a deliberate pause is not a gap).
    let mut gap_from = last_frame;
    // Messages read and not yet handed over: they go together when the socket runs dry.
    let mut taken: Vec<MessageText> = Vec::new();
    let end = loop {
        // A frame already read off the socket is taken at once. When the socket runs dry after a
        // trickle of frames (a PBX's ordinary pace, not a flood), the reader pauses a moment
        // before waiting on it again, so one wake-up (of this thread and of the engine) carries
        // several messages, not one each. A flood is read without pauses.
        let buffered = if drained { None } else { read.next().now_or_never() };
        let frame = match buffered {
            Some(frame) => frame,
            None if !drained => {
                drained = true;
                if !hand_over(&mut taken, deliver, stats) {
                    break End::ReceiverGone;
                }
                if std::mem::take(&mut frames_since_drain) >= TRICKLE {
                    continue;
                }
                let marked = low_water.set(PAUSE_BYTES);
                let pause = if marked { READ_PAUSE } else { PAUSE_WITHOUT_MARK };
                tokio::select! {
                    biased;
                    _ = &mut cancelled => break End::Shutdown,
                    // Only with the mark set: otherwise every byte would end the pause.
                    frame = read.next(), if marked => {
                        gap_from = Instant::now();
                        frame
                    }
                    _ = tokio::time::sleep(pause) => {
                        gap_from = gap_from.max(Instant::now());
                        continue;
                    }
                }
            }
            None => {
                // Waiting for the next message after a pause or a quiet spell: the first byte
                // wakes the reader (and, with the mark lowered, what came during the pause).
                low_water.set(1);
                tokio::select! {
                biased;
                _ = &mut cancelled => break End::Shutdown,
                frame = read.next() => frame,
                _ = idle_checks.tick() => {
                    if last_frame.elapsed() >= idle_timeout {
                        fell_silent = true;
                        break End::Lost(format!("no frame for {:.1} s, not even a pong", idle_timeout.as_secs_f64()));
                    }
                    continue;
                }
                }
            }
        };
        drained = false;
        frames_since_drain += 1;
        let received = Instant::now();
        let gap = received.duration_since(gap_from);
        stats.longest_gap_us.fetch_max(gap.as_micros() as u64, Ordering::Relaxed);
        last_frame = received;
        gap_from = received;
        match frame {
            None => break End::Lost("the socket closed without a close frame".into()),
            Some(Err(error)) => break End::Lost(describe_read_error(&error)),
            Some(Ok(Message::Text(text))) => {
                if !stats.admit(settings.max_backlog) {
                    break End::Overflow;
                }
                let replaced = text.contains("ApplicationReplaced") && is_application_replaced(&text);
                taken.push(text);
                if replaced {
                    break End::Replaced;
                }
                if taken.len() >= HANDOVER && !hand_over(&mut taken, deliver, stats) {
                    break End::ReceiverGone;
                }
                let busy_us = received.elapsed().as_micros() as u64;
                stats.longest_busy_us.fetch_max(busy_us, Ordering::Relaxed);
                if busy_us >= 1000 {
                    stats.slow_frames.fetch_add(1, Ordering::Relaxed);
                }
            }
            Some(Ok(Message::Close(_))) => break End::Lost("Asterisk closed the websocket".into()),
            Some(Ok(_)) => {}
        }
    };
    // Whatever way the socket ended, what was read (and counted in the backlog) is handed over.
    hand_over(&mut taken, deliver, stats);
    match end {
        End::Shutdown | End::Replaced | End::Overflow => {
            close_now.cancel();
            let _ = tokio::time::timeout(Duration::from_secs(1), pinger).await;
        }
        _ => pinger.abort(),
    }
    let last_alive = if fell_silent { last_frame } else { Instant::now() };
    (end, last_alive)
}

/// Hands the messages read so far to the receiver in one piece; false once it is gone.
fn hand_over(taken: &mut Vec<MessageText>, deliver: &mut impl FnMut(SocketEvent) -> bool, stats: &ReaderStats) -> bool {
    if taken.is_empty() {
        return true;
    }
    let count = taken.len() as u64;
    let handed = deliver(SocketEvent::Messages(std::mem::take(taken)));
    if handed {
        stats.messages.fetch_add(count, Ordering::Relaxed);
    }
    handed
}

/// After an overflow: counts it, says so once, and waits until the receiver has worked the
/// backlog down to half the limit. False on shutdown.
async fn wait_for_catch_up(settings: &EventStreamSettings, stats: &ReaderStats, shutdown: &CancellationToken) -> bool {
    stats.overflows.fetch_add(1, Ordering::Relaxed);
    crate::metrics::counter!(
        "deskhook_ari_intake_overflows_total",
        "Times deskhook fell [ari] max_backlog messages behind ARI and closed the websocket to resync.",
    )
    .inc();
    tracing::warn!(
        "deskhook fell {} ARI messages behind ([ari] max_backlog): closed the event websocket so Asterisk never \
         waits on it; reconnecting and resyncing once the backlog is worked off (calls are reconciled as after any \
         reconnect); if this repeats, look for a stalled disk or an overloaded machine",
        settings.max_backlog
    );
    let started = Instant::now();
    let low_water = settings.max_backlog / 2;
    while stats.backlog.load(Ordering::Relaxed) > low_water {
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    tracing::info!("worked the ARI backlog down in {:.1} s; reconnecting", started.elapsed().as_secs_f64());
    true
}

fn is_application_replaced(text: &str) -> bool {
    #[derive(serde::Deserialize)]
    struct Kind<'a> {
        #[serde(rename = "type", borrow)]
        kind: std::borrow::Cow<'a, str>,
    }
    serde_json::from_str::<Kind>(text).map(|k| k.kind == "ApplicationReplaced").unwrap_or(false)
}

fn describe_read_error(error: &tungstenite::Error) -> String {
    match error {
        tungstenite::Error::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            "the socket closed without a close frame".into()
        }
        tungstenite::Error::Io(io) => format!("read failed: {io}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn application_replaced_is_recognised_by_type_only() {
        assert!(is_application_replaced(r#"{"type":"ApplicationReplaced","application":"deskhook"}"#));
        assert!(is_application_replaced(r#"{"application":"x", "type": "ApplicationReplaced"}"#));
        assert!(!is_application_replaced(r#"{"type":"ChannelVarset","variable":"X","value":"ApplicationReplaced"}"#));
    }

    #[test]
    fn reconnect_delays_grow_and_stay_capped() {
        let config = AriConfig { reconnect_max: crate::config::DurationSpec::secs(4), ..AriConfig::default() };
        let settings = EventStreamSettings::from_config(&config).expect("valid");
        let delays: Vec<Duration> = (1..=12).map(|retry| settings.reconnect_delay(retry)).collect();
        assert!(delays[0] >= MIN_RECONNECT_DELAY && delays[0] < MIN_RECONNECT_DELAY * 2, "{delays:?}");
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(4)), "{delays:?}");
        assert!(delays[11] >= Duration::from_secs(2), "{delays:?}");
    }

    #[test]
    fn the_password_never_shows_in_debug_output() {
        let config = AriConfig { password: "hunter2".into(), ..AriConfig::default() };
        let settings = EventStreamSettings::from_config(&config).expect("valid");
        let shown = format!("{settings:?}");
        let encoded = base64::engine::general_purpose::STANDARD.encode("deskhook:hunter2");
        assert!(!shown.contains("hunter2") && !shown.contains(&encoded), "{shown}");
    }
}
