//! Durable delivery to the helpdesk: every request is committed to a SQLite outbox under
//! `storage.dir` before it is tried, then sent to `helpdesk.webhook_url` in order per call,
//! calls in parallel, retried with backoff until accepted or dead-lettered.
//!
//! - `request`: what is stored (an event form or a recording upload);
//! - `omnidesk`: the wire formats (SPEC §3);
//! - `outbox`: the SQLite file, its reads and the admin commands (`deskhook outbox`);
//! - `writer`: the single writer task with group commit (its fsyncs: [`crate::sqlite::Syncer`]);
//! - `scheduler` + `sender`: which row goes next, and the HTTP tries;
//! - `protocol`: the sinks that speak an API (the CRMs, `crate::crm`) and send each row themselves;
//! - `policy`: retry, backoff, `Retry-After`, retention, and error texts without secrets.
//!
//! It never touches ARI or the call engine: the daemon turns engine output into [`Request`]s
//! and calls [`DeliveryHandle::enqueue`]. A request may carry a tag ([`Request::tagged`]);
//! whoever registered with [`DeliveryHandle::on_delivered`] hears when the helpdesk accepted
//! it (ARI recording mode then deletes the recording from Asterisk).

mod file_body;
mod http1;
mod metrics;
mod omnidesk;
mod outbox;
mod policy;
mod protocol;
mod request;
mod scheduler;
mod sender;
pub mod signature;
mod writer;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock};

use rusqlite::Connection;

pub(crate) use file_body::FileBody;
pub(crate) use omnidesk::form_body;
pub use outbox::{ListedRow, Listing, OpenCalls, Outbox, OutboxCounts, RowState, OUTBOX_FILE};
pub(crate) use policy::{humanize, TryResult};
pub(crate) use protocol::{Protocol, TryFuture};
pub use request::{PickupPromise, Request, UploadRoute, HELPDESK_SINK, UPLOAD_STATUS};

use crate::config::{redacted_url, Destination, HelpdeskConfig, SinkConfig};
use policy::RetryPolicy;
use sender::{Control, Dispatcher, SenderContext, Sink, Wire};
use writer::{SharedCounts, SinkBook, WriterCommand};

/// Why the outbox or the delivery cannot do what was asked; phrased for the admin.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("cannot create storage.dir {dir}: {source}; create it and make it writable by the deskhook user")]
    StorageDir { dir: String, source: std::io::Error },
    #[error("cannot open the outbox {path}: {source}; check that storage.dir is writable by the deskhook user")]
    Open { path: String, source: rusqlite::Error },
    #[error(
        "the outbox {path} was written by a newer deskhook (schema {version}); run that version or move the file away"
    )]
    NewerSchema { path: String, version: i64 },
    #[error("outbox {path}: {source}")]
    Database { path: String, source: rusqlite::Error },
    #[error(
        "the outbox is full ({rows} rows, helpdesk.outbox_max_rows = {max_rows}): {refused} request(s) refused; \
         see `deskhook outbox list`"
    )]
    Full { rows: u64, max_rows: u64, refused: u64 },
    #[error("delivery to the helpdesk has stopped; the requests were not stored")]
    Stopped,
    #[error("sink {name}: {message}")]
    Sink { name: String, message: String },
    #[error("helpdesk.webhook_url {shown} is not usable: {reason}")]
    WebhookUrl { shown: String, reason: String },
    #[error("cannot set up the HTTPS client: {message}")]
    HttpClient { message: String },
    #[error("delivery must be started inside a tokio runtime")]
    NoRuntime,
    #[error("cannot start the outbox's syncer: {error}")]
    Syncer { error: String },
}

/// Starts delivery; see [`Delivery::start`].
pub struct Delivery;

impl Delivery {
    /// Delivery to `[helpdesk] webhook_url` alone (the sink `helpdesk`); see [`Delivery::start_targets`].
    pub fn start(outbox: Outbox, webhook_url: &str, cfg: &HelpdeskConfig) -> Result<DeliveryHandle, DeliverError> {
        Self::start_targets(outbox, vec![Target::helpdesk(webhook_url, cfg)])
    }

    /// Spawns the writer thread and one sender per target on the current tokio runtime,
    /// resuming rows a previous run left pending. Each target is an independent queue in the
    /// one outbox: its own order per call, retries, dead letters, parallelism and size cap. An
    /// empty URL means "log only": every request is still stored (so start/ended stay
    /// deduplicated), then written to the log at info level (target `deskhook::helpdesk`) and
    /// counted as delivered; recordings are never deleted.
    pub fn start_targets(outbox: Outbox, targets: Vec<Target>) -> Result<DeliveryHandle, DeliverError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| DeliverError::NoRuntime)?;
        let reader = Arc::new(Mutex::new(outbox::connect(outbox.path(), false)?));
        let path = outbox.path().to_path_buf();
        let hooks: Hooks = Arc::default();
        let mut books = BTreeMap::new();
        let mut parts = Vec::with_capacity(targets.len());
        for target in &targets {
            let sink = match &target.protocol {
                Some(protocol) => Sink::Api(protocol.clone()),
                None => build_sink(&target.url, &target.cfg, target.wire())?,
            };
            let counts = Arc::new(SharedCounts::default());
            let meters = crate::metrics::SinkMeters::of(&target.name);
            // Bounded by the sink's `outbox_max_rows`: only stored rows are announced.
            let (added_tx, added_rx) = tokio::sync::mpsc::unbounded_channel();
            books.insert(
                target.name.clone(),
                SinkBook {
                    max_rows: target.cfg.outbox_max_rows.max(1),
                    counts: counts.clone(),
                    added: added_tx,
                    meters,
                },
            );
            match &sink {
                Sink::Http { host, .. } => {
                    tracing::info!(sink = %target.name, %host, outbox = %path.display(), "delivering to sink {:?}", target.name)
                }
                Sink::Api(protocol) => {
                    tracing::info!(sink = %target.name, host = %protocol.host(), outbox = %path.display(), "delivering to sink {:?}", target.name)
                }
                Sink::Log => tracing::warn!(
                    sink = %target.name,
                    outbox = %path.display(),
                    "sink {:?} has no URL: its requests are only logged, nothing is sent",
                    target.name
                ),
            }
            parts.push((target, sink, counts, added_rx, meters));
        }
        let commits_failing = Arc::new(AtomicBool::new(false));
        let writer = writer::spawn(outbox, books, commits_failing.clone(), &runtime)?;
        let mut sinks = BTreeMap::new();
        let mut controls = Vec::with_capacity(parts.len());
        for (target, sink, counts, added, meters) in parts {
            // At most `max_parallel` reports in flight; control carries one shutdown.
            let (done_tx, done_rx) = tokio::sync::mpsc::unbounded_channel();
            let (control_tx, control_rx) = tokio::sync::mpsc::unbounded_channel();
            let ctx = Arc::new(SenderContext {
                name: target.name.clone(),
                meters,
                sink,
                policy: RetryPolicy::from_config(&target.cfg),
                writer: writer.clone(),
                reader: reader.clone(),
                done: done_tx,
                healthy: Arc::new(AtomicBool::new(true)),
                hooks: hooks.clone(),
                upload_guard: target.upload_guard.clone(),
            });
            let dispatcher = Dispatcher {
                ctx: ctx.clone(),
                max_parallel: target.cfg.max_parallel.max(1),
                added,
                done: done_rx,
                control: control_rx,
            };
            runtime.spawn(dispatcher.run());
            controls.push(control_tx);
            sinks.insert(target.name.clone(), SinkState { counts, ctx });
        }
        Ok(DeliveryHandle { inner: Arc::new(Inner { writer, controls, sinks, reader, hooks, commits_failing }) })
    }
}

/// One destination delivery sends to: a sink's name, address and queue settings.
#[derive(Clone)]
pub struct Target {
    pub name: String,
    /// Where requests are POSTed; empty: only logged.
    pub url: String,
    /// The `json` sink's HMAC key: every body is signed with it.
    pub signing_secret: Option<crate::secret::Secret>,
    /// Zammad's CTI API (its answers are read as Zammad means them).
    pub zammad: bool,
    /// An API destination that makes its own requests (a CRM); `url` is then only shown.
    pub protocol: Option<Arc<dyn Protocol>>,
    /// Says whether a file may still be uploaded (and deleted) when its turn comes: it may
    /// have been swapped for a symlink since it was queued.
    pub upload_guard: Option<UploadGuard>,
    /// Timeouts, retries, parallelism and size cap of its queue.
    pub cfg: HelpdeskConfig,
}

impl Target {
    /// `[helpdesk] webhook_url` as the sink `helpdesk`.
    pub fn helpdesk(webhook_url: &str, cfg: &HelpdeskConfig) -> Target {
        Target {
            name: HELPDESK_SINK.into(),
            url: webhook_url.to_string(),
            signing_secret: None,
            zammad: false,
            protocol: None,
            upload_guard: None,
            cfg: cfg.clone(),
        }
    }

    /// A sink that delivers through `protocol`.
    pub(crate) fn with_protocol(sink: &SinkConfig, protocol: Arc<dyn Protocol>) -> Target {
        Target { protocol: Some(protocol), ..Target::of(sink) }
    }

    /// A configured sink.
    pub(crate) fn of(sink: &SinkConfig) -> Target {
        let signing_secret = match &sink.destination {
            Destination::Json { secret, .. } if !secret.is_empty() => Some(secret.clone()),
            _ => None,
        };
        Target {
            name: sink.name.clone(),
            url: sink.url().to_string(),
            signing_secret,
            zammad: matches!(sink.destination, Destination::Zammad { .. }),
            protocol: None,
            upload_guard: None,
            cfg: sink.delivery.clone(),
        }
    }

    fn wire(&self) -> Wire {
        match (&self.signing_secret, self.zammad) {
            (_, true) => Wire::Zammad,
            (Some(secret), false) => Wire::Signed { secret: secret.clone() },
            (None, false) => Wire::Plain,
        }
    }
}

impl std::fmt::Debug for Target {
    // The URL's path and the secret never show.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("name", &self.name)
            .field("host", &redacted_url(&self.url))
            .finish_non_exhaustive()
    }
}

fn describe(conn: &Connection) -> String {
    conn.path().unwrap_or("outbox").to_string()
}

fn build_sink(webhook_url: &str, cfg: &HelpdeskConfig, wire: Wire) -> Result<Sink, DeliverError> {
    if webhook_url.trim().is_empty() {
        return Ok(Sink::Log);
    }
    let shown = redacted_url(webhook_url);
    let url = reqwest::Url::parse(webhook_url)
        .map_err(|error| DeliverError::WebhookUrl { shown: shown.clone(), reason: error.to_string() })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(DeliverError::WebhookUrl {
            shown,
            reason: "expected an http:// or https:// address with a host".into(),
        });
    }
    let client = reqwest::Client::builder()
        .connect_timeout(cfg.connect_timeout.get())
        .timeout(cfg.request_timeout.get())
        // A redirected POST turns into a GET without the body: report it instead of following.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("deskhook/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|error| DeliverError::HttpClient { message: error.to_string() })?;
    // Small POSTs take the lean path unless a proxy is configured (only reqwest follows one).
    let lean = if http1::proxy_configured() {
        None
    } else {
        http1::Http1Client::new(&url, cfg.connect_timeout.get(), cfg.request_timeout.get(), http1::Roots::System)
            .map(Box::new)
    };
    Ok(Sink::Http {
        client,
        lean,
        url,
        raw: webhook_url.to_string(),
        host: shown,
        request_timeout: cfg.request_timeout.get(),
        wire,
    })
}

/// The daemon's side of a running delivery. Cheap to clone.
#[derive(Clone)]
pub struct DeliveryHandle {
    inner: Arc<Inner>,
}

struct Inner {
    writer: tokio::sync::mpsc::UnboundedSender<WriterCommand>,
    controls: Vec<tokio::sync::mpsc::UnboundedSender<Control>>,
    sinks: BTreeMap<String, SinkState>,
    reader: Arc<Mutex<Connection>>,
    hooks: Hooks,
    /// Set by the writer while the outbox's commits fail.
    commits_failing: Arc<AtomicBool>,
}

/// What the handle can see of one sink's sender.
struct SinkState {
    counts: Arc<SharedCounts>,
    ctx: Arc<SenderContext>,
}

/// A tagged request the helpdesk accepted (its outcome is committed to the outbox).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub unique_id: String,
    pub tag: String,
}

/// Checks a file to upload or delete; `Err` says why it may not be touched.
pub(crate) type UploadGuard = Arc<dyn Fn(&std::path::Path) -> Result<(), String> + Send + Sync>;

/// Called once per accepted tagged request, on a delivery worker: must return quickly
/// (hand the work to a task). Not called when `helpdesk.webhook_url` is empty (nothing was sent).
pub(crate) type DeliveredHook = Arc<dyn Fn(&Delivered) + Send + Sync>;

pub(crate) type Hooks = Arc<RwLock<Vec<DeliveredHook>>>;

impl DeliveryHandle {
    /// Stores `requests` durably and has them sent: once `Ok`, they survive a crash or `kill -9`
    /// of deskhook; the syncer fsyncs them within half a second (at once when the disk was
    /// quiet), against a power cut. Their order, and so the order
    /// per call, is fixed when `enqueue` is called, not when the future is awaited: callers
    /// may keep several enqueues outstanding. A start/ended event already stored for its call
    /// is skipped. `Err` means nothing of this call was stored (outbox full, disk error, stopped).
    pub fn enqueue(
        &self,
        requests: Vec<Request>,
    ) -> impl std::future::Future<Output = Result<(), DeliverError>> + Send + 'static {
        let requests = (!requests.is_empty()).then_some(requests);
        self.commit(requests.map(|requests| move |reply| WriterCommand::Enqueue { requests, kept: None, reply }))
    }

    /// Sends the writer the command `command` builds around its reply (none: nothing to
    /// store), and waits for that reply.
    fn commit(
        &self,
        command: Option<impl FnOnce(tokio::sync::oneshot::Sender<Result<(), DeliverError>>) -> WriterCommand>,
    ) -> impl std::future::Future<Output = Result<(), DeliverError>> + Send + 'static {
        let (reply, stored) = tokio::sync::oneshot::channel();
        let sent = match command {
            Some(command) => self.inner.writer.send(command(reply)).map_err(|_| DeliverError::Stopped),
            None => {
                let _ = reply.send(Ok(()));
                Ok(())
            }
        };
        async move {
            sent?;
            stored.await.map_err(|_| DeliverError::Stopped)?
        }
    }

    /// Enqueues the uploads of a promised recording, file `file` of call `unique_id`, and
    /// forgets its promise in the same transaction: a crash leaves either the promise or the
    /// uploads, never both or neither. Nothing is forgotten when the uploads are refused.
    pub(crate) fn enqueue_pickup(
        &self,
        uploads: Vec<Request>,
        unique_id: &str,
        file: &str,
    ) -> impl std::future::Future<Output = Result<(), DeliverError>> + Send + 'static {
        let kept = Some((unique_id.to_string(), file.to_string()));
        self.commit(Some(move |reply| WriterCommand::Enqueue { requests: uploads, kept, reply }))
    }

    /// Stores pickup promises on their own (not with an engine step).
    pub(crate) fn promise_pickups(
        &self,
        promises: Vec<PickupPromise>,
    ) -> impl std::future::Future<Output = Result<(), DeliverError>> + Send + 'static {
        self.commit(Some(move |reply| WriterCommand::Promise { promises, reply: Some(reply) }))
    }

    /// Gives up a promised pickup (its file never completed). It rides on the next commit: a
    /// crash before it only has the file looked for once more.
    pub(crate) fn forget_pickup(&self, unique_id: &str, file: &str) {
        let _ = self
            .inner
            .writer
            .send(WriterCommand::ForgetPickup { unique_id: unique_id.to_string(), file: file.to_string() });
    }

    /// The pickups promised and not yet kept (a previous run's), in the order promised. Read
    /// at start, before the pickup promises anything new.
    pub(crate) fn pending_pickups(&self) -> Result<Vec<PickupPromise>, DeliverError> {
        let conn = self.inner.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        outbox::pending_pickups(&conn).map_err(|source| DeliverError::Database { path: describe(&conn), source })
    }

    /// Stores one engine step as a unit, in one transaction: each entry of `events` as
    /// [`DeliveryHandle::enqueue`] stores it (with its own outcome, returned in order), the
    /// checkpoints of the calls they changed (`None` forgets a call), and the recordings of
    /// the calls that ended, promised for upload. A kill therefore never keeps an event without
    /// the checkpoint that says it was sent, nor forgets a call without its recordings' promise.
    pub fn store_step(
        &self,
        events: Vec<Vec<Request>>,
        open_calls: Vec<(String, Option<String>)>,
        pickups: Vec<PickupPromise>,
    ) -> Vec<impl std::future::Future<Output = Result<(), DeliverError>> + Send + 'static> {
        let mut commands = Vec::with_capacity(events.len() + open_calls.len() + 1);
        if !pickups.is_empty() {
            commands.push(WriterCommand::Promise { promises: pickups, reply: None });
        }
        let mut outcomes = Vec::with_capacity(events.len());
        for requests in events {
            let (reply, stored) = tokio::sync::oneshot::channel();
            if requests.is_empty() {
                let _ = reply.send(Ok(()));
            } else {
                commands.push(WriterCommand::Enqueue { requests, kept: None, reply });
            }
            outcomes.push(stored);
        }
        commands.extend(
            open_calls.into_iter().map(|(unique_id, checkpoint)| WriterCommand::OpenCall { unique_id, checkpoint }),
        );
        // A refused send drops the replies: every outcome then reads `Stopped`.
        if !commands.is_empty() {
            let _ = self.inner.writer.send(WriterCommand::Together(commands));
        }
        outcomes.into_iter().map(|stored| async move { stored.await.map_err(|_| DeliverError::Stopped)? }).collect()
    }

    /// Notes that the daemon was watching Asterisk at event time `at_ms`.
    pub(crate) fn mark_alive(&self, at_ms: i64) {
        let _ = self.inner.writer.send(WriterCommand::Alive { at_ms });
    }

    /// Registers `hook` for every tagged request accepted from now on. Requests accepted before
    /// (e.g. while the process was down) are not announced: ask [`DeliveryHandle::tag_states`].
    pub fn on_delivered(&self, hook: DeliveredHook) {
        self.inner.hooks.write().unwrap_or_else(|poisoned| poisoned.into_inner()).push(hook);
    }

    /// The state of the newest row carrying each tag; `None` when there is none (never stored,
    /// or pruned after `helpdesk.keep_delivered`, or purged as dead).
    pub async fn tag_states(&self, tags: Vec<String>) -> Result<Vec<(String, Option<RowState>)>, DeliverError> {
        let reader = self.inner.reader.clone();
        tokio::task::spawn_blocking(move || {
            let conn = reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            tags.into_iter()
                .map(|tag| {
                    let state = outbox::tag_state(&conn, &tag)
                        .map_err(|source| DeliverError::Database { path: describe(&conn), source })?;
                    Ok((tag, state))
                })
                .collect()
        })
        .await
        .map_err(|_| DeliverError::Stopped)?
    }

    /// Rows by state of every sink together, as of the last commit (for `/metrics` and health).
    pub fn counts(&self) -> OutboxCounts {
        self.inner.sinks.values().fold(OutboxCounts::default(), |total, sink| total.plus(&sink.counts.snapshot()))
    }

    /// Rows by state of sink `name` (`None`: no such sink).
    pub fn counts_of(&self, name: &str) -> Option<OutboxCounts> {
        self.inner.sinks.get(name).map(|sink| sink.counts.snapshot())
    }

    /// Each sink's "its destination accepts requests" flag (for `/healthz`).
    pub(crate) fn sink_health(&self) -> Vec<(String, Arc<AtomicBool>)> {
        self.inner.sinks.iter().map(|(name, sink)| (name.clone(), sink.ctx.healthy.clone())).collect()
    }

    /// The flag the writer raises while the outbox's commits fail (for `/healthz`).
    pub fn commits_failing(&self) -> Arc<AtomicBool> {
        self.inner.commits_failing.clone()
    }

    /// The sinks whose last try failed (their destination is down or refusing).
    pub fn failing_sinks(&self) -> Vec<String> {
        self.inner
            .sinks
            .iter()
            .filter(|(_, sink)| !sink.ctx.healthy.load(std::sync::atomic::Ordering::Relaxed))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Stops sending: requests in flight get a few seconds to finish (the rest stay pending
    /// and are sent again on the next start), everything enqueued before is committed.
    /// Later `enqueue` calls fail with [`DeliverError::Stopped`].
    pub async fn shutdown(&self) {
        let mut stopping = Vec::with_capacity(self.inner.controls.len());
        for control in &self.inner.controls {
            let (reply, stopped) = tokio::sync::oneshot::channel();
            if control.send(Control::Shutdown(reply)).is_ok() {
                stopping.push(stopped);
            }
        }
        for stopped in stopping {
            let _ = stopped.await;
        }
        let (stopped, writer_done) = tokio::sync::oneshot::channel();
        if self.inner.writer.send(WriterCommand::Stop(stopped)).is_ok() {
            let _ = writer_done.await;
        }
    }
}
