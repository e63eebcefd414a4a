//! The sender: a dispatcher task that picks due rows (per call in order, calls in parallel up
//! to `helpdesk.max_parallel`) and one worker task per try, which loads the row, sends it,
//! applies the retry policy and waits until the outcome is committed before the call's next
//! row may go. So after a crash at most one request per call is sent twice.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, RETRY_AFTER};
use rusqlite::Connection;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;
use tokio::task::JoinSet;

use super::metrics;
use super::omnidesk::{summary_upload_form, upload_form, FORM_CONTENT_TYPE, JSON_CONTENT_TYPE};
use super::outbox::{
    load_row, now_ms, pending_rows, requeue_generation, PendingRow, PendingSnapshot, RowState, StoredRow,
};
use super::policy::{
    classify_status, humanize, parse_retry_after, scrub, RetryPolicy, StatusClass, TryResult, Verdict,
};
use super::request::{Request, RequestKind};
use super::scheduler::Scheduler;
use super::writer::WriterCommand;

/// How often the outbox is checked for rows re-queued by `deskhook outbox retry`.
const REQUEUE_POLL: Duration = Duration::from_secs(2);
/// At most this many just-stored rows are kept in memory for their first try (past it, and
/// for every retry, a row is read from the outbox).
const FRESH_ROWS_KEPT: usize = 1024;
/// How long shutdown waits for requests in flight before abandoning them (they stay pending).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);
/// A try whose bookkeeping failed (the outbox could not be read) is retried after this.
const INTERNAL_RETRY: Duration = Duration::from_secs(1);
/// How much of the helpdesk's answer is read (to reuse the connection) and quoted in errors.
const RESPONSE_READ_LIMIT: usize = 64 * 1024;
const RESPONSE_QUOTE_CHARS: usize = 200;

/// Where requests go.
pub(super) enum Sink {
    Http {
        client: reqwest::Client,
        /// The path of the small POSTs (events, summaries); `None` sends them through `client`.
        lean: Option<Box<super::http1::Http1Client>>,
        url: reqwest::Url,
        raw: String,
        host: String,
        request_timeout: Duration,
        wire: Wire,
    },
    /// An API destination (a CRM) that makes its own requests.
    Api(Arc<dyn super::Protocol>),
    /// No webhook configured: each request is written to the log and counts as delivered.
    Log,
}

/// How a sink's requests are dressed beyond their body, and its answers read.
pub(crate) enum Wire {
    /// Omnidesk forms and unsigned JSON: nothing more.
    Plain,
    /// The `json` sink: `X-Deskhook-Signature` over each body (or an upload's summary part).
    Signed { secret: crate::secret::Secret },
    /// Zammad's CTI API, which answers a `newCall` it already has with HTTP 500 "This object
    /// already exists.": after a retry that means it was accepted before.
    Zammad,
}

impl Wire {
    /// An error answer that means the request was taken before (Zammad's "already exists"
    /// for a `newCall` repeated after a kill).
    fn accepted_anyway(&self, status: u16, quoted: &str) -> bool {
        matches!(self, Wire::Zammad) && status == 500 && quoted.contains("already exists")
    }

    fn sign(&self, builder: reqwest::RequestBuilder, body: &str) -> reqwest::RequestBuilder {
        match self.signature(body) {
            Some(signature) => builder.header(super::signature::SIGNATURE_HEADER, signature),
            None => builder,
        }
    }

    /// The `X-Deskhook-Signature` value for `body`, when this wire signs.
    fn signature(&self, body: &str) -> Option<String> {
        match self {
            Wire::Plain | Wire::Zammad => None,
            Wire::Signed { secret } => {
                let now = jiff::Timestamp::now().as_second();
                Some(super::signature::signature(secret.expose(), now, body.as_bytes()))
            }
        }
    }
}

pub(crate) struct SenderContext {
    /// The sink's configured name (logs, metrics, its rows in the outbox).
    pub name: String,
    pub meters: crate::metrics::SinkMeters,
    pub sink: Sink,
    pub policy: RetryPolicy,
    pub writer: UnboundedSender<WriterCommand>,
    pub reader: Arc<Mutex<Connection>>,
    pub done: UnboundedSender<Done>,
    /// False while the destination fails, so an outage is logged once, not once per request
    /// (shared with `/healthz`).
    pub healthy: Arc<AtomicBool>,
    /// Told about every accepted tagged request.
    pub hooks: super::Hooks,
    /// Re-checks an upload's file before it is read or deleted.
    pub upload_guard: Option<super::UploadGuard>,
}

pub(crate) enum Control {
    Shutdown(oneshot::Sender<()>),
}

/// A worker's report: what became of its row in memory.
pub(crate) struct Done {
    unique_id: String,
    id: i64,
    next: Next,
    /// This try was the first success after failures: the helpdesk is back.
    recovered: bool,
}

#[derive(Clone, Copy)]
enum Next {
    Finished,
    RetryAt(i64),
}

pub(crate) struct Dispatcher {
    pub ctx: Arc<SenderContext>,
    pub max_parallel: usize,
    pub added: UnboundedReceiver<Vec<PendingRow>>,
    pub done: UnboundedReceiver<Done>,
    pub control: UnboundedReceiver<Control>,
}

impl Dispatcher {
    pub(super) async fn run(mut self) {
        let mut scheduler = Scheduler::default();
        let mut workers = JoinSet::new();
        // Rows up to this id were in the first load; their `added` notices may still be queued
        // and must not bring back a row that has been delivered since.
        let mut loaded_up_to = i64::MIN;
        let mut generation = match self.load(None).await {
            Ok(snapshot) => {
                if !snapshot.rows.is_empty() {
                    let pending = snapshot.rows.len();
                    tracing::info!(sink = %self.ctx.name, pending, "resuming requests left pending by the previous run");
                }
                snapshot.rows.into_iter().for_each(|row| scheduler.add(row));
                loaded_up_to = snapshot.max_id;
                Some(snapshot.generation)
            }
            Err(error) => {
                tracing::error!(%error, "cannot read pending requests from the outbox; will try again");
                None
            }
        };
        // Rows just stored, until their first try.
        let mut fresh: std::collections::HashMap<i64, StoredRow> = std::collections::HashMap::new();
        let mut requeue_poll = tokio::time::interval(REQUEUE_POLL);
        requeue_poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let now = now_ms();
            while scheduler.in_flight() < self.max_parallel {
                let Some((unique_id, id)) = scheduler.next_ready(now) else { break };
                let fresh = fresh.remove(&id);
                workers.spawn(deliver_one(self.ctx.clone(), unique_id, id, fresh));
            }
            self.ctx.meters.in_flight.set(scheduler.in_flight() as i64);
            let wake_at = if scheduler.in_flight() < self.max_parallel { scheduler.next_due() } else { None };
            let wake = async move {
                match wake_at {
                    Some(at) => {
                        let wait = u64::try_from(at.saturating_sub(now_ms())).unwrap_or(0);
                        tokio::time::sleep(Duration::from_millis(wait)).await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                control = self.control.recv() => {
                    // Every handle dropped counts as a shutdown request nobody waits for.
                    let reply = control.map(|Control::Shutdown(reply)| reply);
                    self.stop(workers).await;
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                    return;
                }
                Some(done) = self.done.recv() => {
                    match done.next {
                        Next::Finished => scheduler.finished(&done.unique_id, done.id),
                        Next::RetryAt(at) => scheduler.retry_later(&done.unique_id, done.id, at),
                    }
                    if done.recovered {
                        // Other calls wait out backoffs of up to max_backoff: the outage is over, go now.
                        scheduler.expedite(now_ms());
                    }
                }
                Some(rows) = self.added.recv() => {
                    for mut row in rows.into_iter().filter(|row| row.id > loaded_up_to) {
                        if let Some(request) = row.fresh.take().filter(|_| fresh.len() < FRESH_ROWS_KEPT) {
                            fresh.insert(row.id, StoredRow {
                                request: *request,
                                state: RowState::Pending,
                                tries: 0,
                                enqueued_ms: row.due_ms,
                            });
                        }
                        scheduler.add(row);
                    }
                }
                Some(joined) = workers.join_next() => {
                    if let Err(error) = joined {
                        if error.is_panic() {
                            // Its DoneGuard already put the row back for a later try.
                            tracing::error!(%error, "a helpdesk delivery worker panicked; its request will be tried again");
                        }
                    }
                }
                _ = wake => {}
                _ = requeue_poll.tick() => {
                    let full_load = generation.is_none();
                    if let Some(rows) = self.requeued(&mut generation).await {
                        // An admin changed rows (`outbox retry|purge`): what is kept may be stale.
                        fresh.clear();
                        if full_load {
                            rows.into_iter().for_each(|row| scheduler.add(row));
                        } else {
                            if !rows.is_empty() {
                                tracing::info!(requeued = rows.len(), "picked up requests re-queued by `deskhook outbox retry`");
                            }
                            rows.into_iter().for_each(|row| scheduler.add_requeued(row));
                        }
                    }
                }
            }
        }
    }

    /// Lets requests in flight finish for a moment, abandons the rest (they stay pending),
    /// then has the writer commit everything queued and stop.
    async fn stop(&mut self, mut workers: JoinSet<()>) {
        let in_flight = workers.len();
        let drained =
            tokio::time::timeout(SHUTDOWN_GRACE, async { while workers.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                sink = %self.ctx.name,
                in_flight,
                "requests still in flight at shutdown stay pending and are sent again on the next start"
            );
            workers.shutdown().await;
        }
        self.ctx.meters.in_flight.set(0);
    }

    async fn load(&self, after: Option<i64>) -> Result<PendingSnapshot, String> {
        let reader = self.ctx.reader.clone();
        let name = self.ctx.name.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            pending_rows(&mut conn, &name, after).map_err(|error| error.to_string())
        })
        .await
        .map_err(|error| error.to_string())?
    }

    /// Rows re-queued by an admin since `generation` (all pending rows if the first load failed).
    async fn requeued(&self, generation: &mut Option<i64>) -> Option<Vec<PendingRow>> {
        if let Some(known) = *generation {
            let reader = self.ctx.reader.clone();
            let current = tokio::task::spawn_blocking(move || {
                let conn = reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                requeue_generation(&conn).ok()
            })
            .await
            .ok()
            .flatten()?;
            if current == known {
                return None;
            }
        }
        match self.load(*generation).await {
            Ok(PendingSnapshot { rows, generation: current, .. }) => {
                *generation = Some(current);
                // `retry` and `purge` change the counts behind the writer's back.
                let _ = self.ctx.writer.send(WriterCommand::Recount);
                Some(rows)
            }
            Err(error) => {
                tracing::warn!(%error, "cannot read re-queued requests from the outbox");
                None
            }
        }
    }
}

/// Reports the row's fate to the dispatcher when the worker ends, even if it is aborted.
struct DoneGuard {
    ctx: Arc<SenderContext>,
    unique_id: String,
    id: i64,
    next: Next,
    recovered: bool,
}

impl Drop for DoneGuard {
    fn drop(&mut self) {
        let _ = self.ctx.done.send(Done {
            unique_id: std::mem::take(&mut self.unique_id),
            id: self.id,
            next: self.next,
            recovered: self.recovered,
        });
    }
}

/// One try of row `id`: load, send, decide, commit the outcome.
async fn deliver_one(ctx: Arc<SenderContext>, unique_id: String, id: i64, fresh: Option<StoredRow>) {
    let fallback = Next::RetryAt(now_ms().saturating_add(INTERNAL_RETRY.as_millis() as i64));
    let mut guard = DoneGuard { ctx: ctx.clone(), unique_id, id, next: fallback, recovered: false };
    let stored = match fresh {
        Some(row) => Ok(Some(row)),
        None => read_row(&ctx, id).await,
    };
    let row = match stored {
        Ok(Some(row)) if row.state == RowState::Pending => row,
        Ok(_) => {
            // Purged or already settled by an admin: nothing to send.
            guard.next = Next::Finished;
            return;
        }
        Err(error) => {
            tracing::warn!(id, %error, "cannot read a helpdesk request from the outbox; will try again");
            return;
        }
    };
    let tries = row.tries.saturating_add(1);
    let refused = match (&ctx.upload_guard, row.request.upload_path()) {
        (Some(guard), Some(path)) => guard(path).err(),
        _ => None,
    };
    let result = match refused {
        Some(error) => TryResult::Unsendable { error },
        None => ctx.sink.try_send(&row.request).await,
    };
    let verdict = ctx.policy.verdict(result, tries, row.enqueued_ms, now_ms());
    guard.recovered = ctx.report(&row, tries, &verdict);
    let (reply, stored) = oneshot::channel();
    let command = WriterCommand::Finish { id, sink: ctx.name.clone(), tries, verdict: verdict.clone(), reply };
    let recorded = match ctx.writer.send(command) {
        Ok(()) => matches!(stored.await, Ok(Ok(()))),
        Err(_) => false,
    };
    if !recorded {
        tracing::warn!(id, "cannot record a helpdesk request's outcome in the outbox; it may be sent again");
    }
    if let (Verdict::Delivered, RequestKind::Upload { path, delete_after: true, .. }, Sink::Http { .. }) =
        (&verdict, &row.request.kind, &ctx.sink)
    {
        let allowed = ctx.upload_guard.as_ref().map_or(Ok(()), |guard| guard(path));
        if let Err(why) = allowed {
            tracing::warn!(path = %path.display(), "uploaded recording not deleted: {why}");
        } else if let Err(error) = tokio::fs::remove_file(path).await {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), %error, "uploaded recording could not be deleted");
            }
        }
    }
    if let (Verdict::Delivered, Some(tag), Sink::Http { .. }, true) = (&verdict, &row.request.tag, &ctx.sink, recorded)
    {
        let delivered = super::Delivered { unique_id: row.request.unique_id.clone(), tag: tag.clone() };
        let hooks = ctx.hooks.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        for hook in hooks {
            hook(&delivered);
        }
    }
    guard.next = match verdict {
        Verdict::Delivered | Verdict::Dead { .. } => Next::Finished,
        Verdict::RetryAt { at_ms, .. } => Next::RetryAt(at_ms),
    };
}

async fn read_row(ctx: &SenderContext, id: i64) -> Result<Option<StoredRow>, String> {
    let reader = ctx.reader.clone();
    tokio::task::spawn_blocking(move || {
        let conn = reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        load_row(&conn, id).map_err(|error| error.to_string())
    })
    .await
    .map_err(|error| error.to_string())?
}

impl SenderContext {
    /// Logs a try's outcome: outages once (and their end), dead letters always. True when
    /// this success ends an outage.
    fn report(&self, row: &StoredRow, tries: u32, verdict: &Verdict) -> bool {
        let request = &row.request;
        let host = self.sink.host();
        let sink = self.name.as_str();
        match verdict {
            Verdict::Delivered => {
                metrics::delivered().inc();
                self.meters.delivered.inc();
                tracing::debug!(sink, unique_id = request.unique_id(), status = request.status(), tries, "delivered");
                if !self.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(sink, host, "sink {sink:?} accepts requests again; sending the backlog");
                    return true;
                }
            }
            Verdict::RetryAt { at_ms, error } => {
                metrics::failed_tries().inc();
                self.meters.failed_tries.inc();
                let wait = humanize(Duration::from_millis(u64::try_from(at_ms - now_ms()).unwrap_or(0)));
                if self.healthy.swap(false, Ordering::Relaxed) {
                    tracing::warn!(
                        sink,
                        host,
                        %error,
                        "sink {sink:?} is failing; its requests stay in the outbox and are retried with backoff \
                         (other sinks are not held up)"
                    );
                }
                tracing::debug!(sink, unique_id = request.unique_id(), status = request.status(), tries, %error, retry_in = %wait, "try failed");
            }
            Verdict::Dead { error } => {
                metrics::failed_tries().inc();
                self.meters.failed_tries.inc();
                self.meters.dead_lettered.inc();
                tracing::error!(
                    sink,
                    host,
                    unique_id = request.unique_id(),
                    status = request.status(),
                    tries,
                    %error,
                    "request dead-lettered; see `deskhook outbox list --sink {sink}`, re-send with `deskhook outbox retry --sink {sink}`"
                );
            }
        }
        false
    }
}

impl Sink {
    fn host(&self) -> &str {
        match self {
            Sink::Http { host, .. } => host,
            Sink::Api(protocol) => protocol.host(),
            Sink::Log => "<log only>",
        }
    }

    async fn try_send(&self, request: &Request) -> TryResult {
        let (client, url, raw, host, request_timeout, wire) = match self {
            Sink::Http { client, lean, url, raw, host, request_timeout, wire } => {
                if let (Some(lean), RequestKind::Form { body, json, .. }) = (lean, &request.kind) {
                    return post_lean(lean, wire, body, *json, raw, host, *request_timeout).await;
                }
                (client, url, raw, host, request_timeout, wire)
            }
            Sink::Api(protocol) => return protocol.send(request).await,
            Sink::Log => {
                log_only(request);
                return TryResult::Accepted;
            }
        };
        let post = client.post(url.clone());
        let builder = match &request.kind {
            RequestKind::Form { body, json: false, .. } => {
                post.header(CONTENT_TYPE, FORM_CONTENT_TYPE).body(body.clone())
            }
            RequestKind::Form { body, json: true, .. } => {
                let post = post.header(CONTENT_TYPE, JSON_CONTENT_TYPE).header(ACCEPT, JSON_CONTENT_TYPE);
                wire.sign(post, body).body(body.clone())
            }
            RequestKind::Upload { path, summary: None, .. } => match upload_form(&request.unique_id, path).await {
                Ok(form) => post.multipart(form),
                Err(error) => return TryResult::Unsendable { error: scrub(&error.to_string(), raw) },
            },
            RequestKind::Upload { path, summary: Some(summary), .. } => {
                match summary_upload_form(summary, path).await {
                    Ok(form) => wire.sign(post.header(ACCEPT, JSON_CONTENT_TYPE), summary).multipart(form),
                    Err(error) => return TryResult::Unsendable { error: scrub(&error.to_string(), raw) },
                }
            }
        };
        let response = match builder.send().await {
            Ok(response) => response,
            Err(error) => {
                let error = describe_transport_error(&error, host, *request_timeout);
                return TryResult::Transient { error: scrub(&error, raw), retry_after: None };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| parse_retry_after(value, now_ms()));
        let quoted = read_quote(response).await;
        judge_answer(wire, status, retry_after, &quoted, host, raw)
    }
}

/// A small POST on the lean path: the same request and the same reading of the answer as
/// through `reqwest`.
async fn post_lean(
    lean: &super::http1::Http1Client,
    wire: &Wire,
    body: &str,
    json: bool,
    raw: &str,
    host: &str,
    request_timeout: Duration,
) -> TryResult {
    let signature = if json { wire.signature(body) } else { None };
    let mut headers: Vec<(&str, &str)> = Vec::with_capacity(3);
    if json {
        headers.push((CONTENT_TYPE.as_str(), JSON_CONTENT_TYPE));
        headers.push((ACCEPT.as_str(), JSON_CONTENT_TYPE));
    } else {
        headers.push((CONTENT_TYPE.as_str(), FORM_CONTENT_TYPE));
        headers.push((ACCEPT.as_str(), "*/*"));
    }
    if let Some(signature) = &signature {
        headers.push((super::signature::SIGNATURE_HEADER, signature));
    }
    match lean.post(&headers, body.as_bytes()).await {
        Ok(answer) => {
            let retry_after = answer.retry_after.as_deref().and_then(|value| parse_retry_after(value, now_ms()));
            judge_answer(wire, answer.status, retry_after, &quote_of(&answer.body), host, raw)
        }
        Err(error) => {
            use super::http1::Http1Error;
            use crate::failure::Failure;
            let (failure, detail) = match error {
                Http1Error::Connect(detail) => (Failure::Connect, vec![detail]),
                Http1Error::Timeout => (Failure::Timeout, Vec::new()),
                Http1Error::Exchange(detail) => (Failure::Other, vec![detail]),
            };
            let error = transport_error_text(failure, &detail, host, request_timeout);
            TryResult::Transient { error: scrub(&error, raw), retry_after: None }
        }
    }
}

/// What an answer means for the request: taken, to be tried again, or refused.
fn judge_answer(
    wire: &Wire,
    status: u16,
    retry_after: Option<Duration>,
    quoted: &str,
    host: &str,
    raw: &str,
) -> TryResult {
    let error = || {
        // "404 Not Found", as the status is shown everywhere; a code outside 100–999 as is.
        let mut text = match reqwest::StatusCode::from_u16(status) {
            Ok(known) => format!("HTTP {known} from {host}"),
            Err(_) => format!("HTTP {status} from {host}"),
        };
        if !quoted.is_empty() {
            text.push_str(": ");
            text.push_str(quoted);
        }
        scrub(&text, raw)
    };
    if wire.accepted_anyway(status, quoted) {
        return TryResult::Accepted;
    }
    match classify_status(status) {
        StatusClass::Accepted => TryResult::Accepted,
        StatusClass::Transient => TryResult::Transient { error: error(), retry_after },
        StatusClass::Rejected if (300..400).contains(&status) => TryResult::Rejected {
            error: format!("{}; set helpdesk.webhook_url to the address it redirects to", error()),
        },
        StatusClass::Rejected => TryResult::Rejected { error: error() },
    }
}

fn log_only(request: &Request) {
    match &request.kind {
        RequestKind::Form { body, json: false, .. } => {
            let fields: Vec<String> =
                form_urlencoded::parse(body.as_bytes()).map(|(name, value)| format!("{name}={value}")).collect();
            tracing::info!(target: "deskhook::helpdesk", unique_id = request.unique_id(), "event (helpdesk.webhook_url is empty, not sent): {}", fields.join(" "));
        }
        RequestKind::Form { body, json: true, .. } => {
            tracing::info!(target: "deskhook::helpdesk", unique_id = request.unique_id(), sink = request.sink(), "event (no URL, not sent): {body}");
        }
        RequestKind::Upload { path, .. } => {
            tracing::info!(target: "deskhook::helpdesk", unique_id = request.unique_id(), path = %path.display(), "recording (helpdesk.webhook_url is empty, not uploaded)");
        }
    }
}

/// Reads (a bounded part of) the answer so the connection can be reused; returns its start.
async fn read_quote(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < RESPONSE_READ_LIMIT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    quote_of(&body)
}

/// The start of an answer's body, on one line, to quote in an error.
fn quote_of(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let quote: String = text.trim().chars().take(RESPONSE_QUOTE_CHARS).collect();
    quote.replace(['\r', '\n'], " ")
}

/// A network error in words an admin can act on, without the URL's path.
fn describe_transport_error(error: &reqwest::Error, host: &str, request_timeout: Duration) -> String {
    transport_error_text(crate::failure::Failure::of(error), &crate::failure::causes(error), host, request_timeout)
}

/// The words of a failed request, whichever client made it: the kind, the host, the causes.
fn transport_error_text(
    failure: crate::failure::Failure,
    causes: &[String],
    host: &str,
    request_timeout: Duration,
) -> String {
    let detail = if causes.is_empty() { String::new() } else { format!(" ({})", causes.join(": ")) };
    match failure {
        crate::failure::Failure::Connect => format!("cannot connect to {host}{detail}"),
        crate::failure::Failure::Timeout => format!(
            "no complete answer from {host} within helpdesk.request_timeout = {}{detail}",
            humanize(request_timeout)
        ),
        _ => format!("request to {host} failed{detail}"),
    }
}
