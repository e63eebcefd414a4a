//! The outbox's single writer: a task that owns the write connection and commits whatever
//! arrived meanwhile in one transaction (group commit). Commits reach the WAL without waiting
//! for the disk, so they survive a crash or `kill -9` of deskhook as soon as `enqueue` returns;
//! the [`Syncer`] fsyncs them moments later, many commits to one fsync.
//!
//! It runs on the runtime of the engine and the dispatchers, not on a thread of its own: a
//! commit only writes the WAL (a fraction of a millisecond), and a thread would cost two
//! wake-ups per commit — about half of all the context switches of the daemon. What may take
//! long stays off the runtime: the fsync (the syncer's thread) and the ARI socket (the reader's
//! thread, so Asterisk never waits on a commit).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection};
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::sync::oneshot;

use super::metrics;
use super::outbox::{
    count_rows_by_sink, forget_pickup, insert_request, now_ms, promise_pickup, prune_boundary, prune_chunk, Limits,
    Outbox, OutboxCounts, PendingRow,
};
use super::policy::Verdict;
use super::request::{PickupPromise, Request};
use super::DeliverError;
use crate::metrics::SinkMeters;
use crate::sqlite::Syncer;

/// Commands are taken in batches of at most this many per transaction.
const MAX_BATCH: usize = 1024;
/// How often delivered rows older than `keep_delivered` are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// How long a checkpoint or heartbeat waits for a commit to share (see `Writer::run`).
const LAZY_WINDOW: Duration = Duration::from_millis(50);
/// Rows deleted per pruning transaction, so pruning never holds the write lock for long.
const PRUNE_CHUNK: i64 = 5000;

pub(crate) enum WriterCommand {
    /// Commit these requests durably; the reply says whether they are stored. With `kept`
    /// (call, file), that pickup promise is forgotten in the same transaction, and only if the
    /// requests (its uploads) are stored.
    Enqueue { requests: Vec<Request>, kept: Option<(String, String)>, reply: oneshot::Sender<Result<(), DeliverError>> },
    /// Recording pickups promised; with a reply once they are stored, else they ride on the
    /// commit they are grouped with (an engine step's, see `Together`).
    Promise { promises: Vec<PickupPromise>, reply: Option<oneshot::Sender<Result<(), DeliverError>>> },
    /// A pickup promise given up (the file never completed): nobody waits for it.
    ForgetPickup { unique_id: String, file: String },
    /// Record how a try of row `id` (of sink `sink`) ended.
    Finish { id: i64, sink: String, tries: u32, verdict: Verdict, reply: oneshot::Sender<Result<(), DeliverError>> },
    /// Another process changed the file (`deskhook outbox retry|purge`): count the rows again.
    Recount,
    /// An open call's checkpoint (JSON), or `None` to forget it. Committed with (never before)
    /// the events enqueued ahead of it.
    OpenCall { unique_id: String, checkpoint: Option<String> },
    /// The daemon was watching Asterisk at this event time.
    Alive { at_ms: i64 },
    /// These commands in one transaction, whatever else shares the batch: an engine step's
    /// events and the checkpoints that follow them are stored together or not at all.
    Together(Vec<WriterCommand>),
    /// Commit what is queued before this, then stop.
    Stop(oneshot::Sender<()>),
}

impl WriterCommand {
    /// Whether nobody waits for this command's commit.
    fn is_lazy(&self) -> bool {
        match self {
            WriterCommand::OpenCall { .. } | WriterCommand::Alive { .. } | WriterCommand::ForgetPickup { .. } => true,
            WriterCommand::Promise { reply, .. } => reply.is_none(),
            WriterCommand::Together(commands) => commands.iter().all(WriterCommand::is_lazy),
            WriterCommand::Enqueue { .. }
            | WriterCommand::Finish { .. }
            | WriterCommand::Recount
            | WriterCommand::Stop(_) => false,
        }
    }
}

/// One sink's row counts by state, kept by the writer for `/metrics`, `/healthz` and the size cap.
#[derive(Debug, Default)]
pub(crate) struct SharedCounts {
    pending: AtomicU64,
    dead: AtomicU64,
    delivered: AtomicU64,
}

/// What the writer knows of one configured sink.
pub(crate) struct SinkBook {
    /// `outbox_max_rows` of the sink: its rows never exceed this.
    pub max_rows: u64,
    pub counts: Arc<SharedCounts>,
    /// Where the sink's newly stored rows are announced (its dispatcher).
    pub added: UnboundedSender<Vec<PendingRow>>,
    pub meters: SinkMeters,
}

impl SharedCounts {
    pub(super) fn snapshot(&self) -> OutboxCounts {
        OutboxCounts {
            pending: self.pending.load(Ordering::Relaxed),
            dead: self.dead.load(Ordering::Relaxed),
            delivered: self.delivered.load(Ordering::Relaxed),
        }
    }

    fn store(&self, counts: OutboxCounts) {
        self.pending.store(counts.pending, Ordering::Relaxed);
        self.dead.store(counts.dead, Ordering::Relaxed);
        self.delivered.store(counts.delivered, Ordering::Relaxed);
    }
}

pub(crate) struct Writer {
    conn: Connection,
    path: String,
    limits: Limits,
    sinks: BTreeMap<String, SinkBook>,
    current: BTreeMap<String, OutboxCounts>,
    /// The series of sinks that have rows but are no longer configured.
    unconfigured: BTreeMap<String, SinkMeters>,
    /// Takes the commits to the disk; `None` once finished.
    syncer: Option<Syncer>,
    next_prune: Instant,
    /// Set while commits fail (the disk is full or read-only): `/healthz` turns red.
    failing: Arc<AtomicBool>,
}

/// The first wait before a failed commit is tried again, and the longest.
const COMMIT_RETRY_FIRST: Duration = Duration::from_millis(100);
const COMMIT_RETRY_LONGEST: Duration = Duration::from_secs(5);
/// How often a commit is tried again while another process holds the outbox's write lock.
const BUSY_POLL: Duration = Duration::from_millis(5);
/// While commits keep failing, the error is logged again this often.
const COMMIT_FAILURE_REMINDER: Duration = Duration::from_secs(60);

/// Starts the writer task on `runtime`, on the outbox's connection, for the sinks in `sinks`.
pub(crate) fn spawn(
    outbox: Outbox,
    sinks: BTreeMap<String, SinkBook>,
    failing: Arc<AtomicBool>,
    runtime: &tokio::runtime::Handle,
) -> Result<UnboundedSender<WriterCommand>, DeliverError> {
    let current = count_rows_by_sink(&outbox.conn).map_err(|source| outbox.db_error(source))?;
    // The writer runs on the runtime: it must never sleep in SQLite's busy handler (see
    // `commit_until_stored`).
    outbox.conn.busy_timeout(Duration::ZERO).map_err(|source| outbox.db_error(source))?;
    // The syncer fsyncs and checkpoints; commits only write the WAL.
    crate::sqlite::relax_for_syncer(&outbox.conn).map_err(|source| outbox.db_error(source))?;
    // The writer stores only the kinds and states its code names, and SQLite would otherwise
    // build a table of the `state IN (...)` list for every insert and outcome (without it the
    // `deliver` bench delivers about 5 % more). Every other connection (the admin commands', a
    // `sqlite3` shell) still has its writes checked.
    outbox.conn.pragma_update(None, "ignore_check_constraints", true).map_err(|source| outbox.db_error(source))?;
    let syncer = Syncer::spawn("deskhook-sync", &outbox.path, metrics::write_errors())
        .map_err(|error| DeliverError::Syncer { error: error.to_string() })?;
    let path = outbox.path.display().to_string();
    let mut writer = Writer {
        conn: outbox.conn,
        path,
        limits: outbox.limits,
        sinks,
        current,
        unconfigured: BTreeMap::new(),
        syncer: Some(syncer),
        next_prune: Instant::now(),
        failing,
    };
    writer.publish();
    // Bounded upstream: enqueues by the engine's sink queue, finishes by each sink's
    // `max_parallel`, checkpoints and heartbeats by engine steps.
    let (commands, receiver) = tokio::sync::mpsc::unbounded_channel();
    runtime.spawn(async move { writer.run(receiver).await });
    Ok(commands)
}

/// What one batch changed, applied to the counts only once it is committed.
#[derive(Default)]
struct BatchEffects {
    results: Vec<Result<(), DeliverError>>,
    /// New rows by sink.
    added: BTreeMap<String, Vec<PendingRow>>,
    counts: BTreeMap<String, OutboxCounts>,
    refused: u64,
    evicted: u64,
    dead_lettered: u64,
}

impl Writer {
    async fn run(&mut self, mut commands: UnboundedReceiver<WriterCommand>) {
        loop {
            if Instant::now() >= self.next_prune {
                self.prune().await;
                self.next_prune = Instant::now() + PRUNE_EVERY;
            }
            let first =
                match tokio::time::timeout(self.next_prune.saturating_duration_since(Instant::now()), commands.recv())
                    .await
                {
                    Ok(Some(command)) => command,
                    Err(_) => continue,
                    Ok(None) => {
                        self.finish_syncer();
                        return;
                    }
                };
            let mut all_lazy = first.is_lazy();
            if !all_lazy {
                // Whatever else is ready on the runtime (other dispatchers' outcomes, the rest
                // of an engine step) runs first and joins this commit.
                tokio::task::yield_now().await;
            }
            let mut batch = vec![first];
            let mut stop = None;
            // Checkpoints and heartbeats wait on nothing: they ride on the next commit anyone
            // waits for (a call's next event or outcome), at most LAZY_WINDOW later, so a busy PBX
            // pays one transaction where it would pay several. A kill meanwhile only leaves an
            // older checkpoint, as a kill a moment earlier would.
            let lazy_until = Instant::now() + LAZY_WINDOW;
            while batch.len() < MAX_BATCH {
                if let Some(WriterCommand::Stop(_)) = batch.last() {
                    break;
                }
                // On a timeout or a disconnect, what is here is committed (the outer loop then
                // sees the disconnect).
                let next = if all_lazy {
                    tokio::time::timeout(lazy_until.saturating_duration_since(Instant::now()), commands.recv())
                        .await
                        .ok()
                        .flatten()
                } else {
                    commands.try_recv().ok()
                };
                match next {
                    Some(command) => {
                        all_lazy &= command.is_lazy();
                        batch.push(command);
                    }
                    None => break,
                }
            }
            if let Some(WriterCommand::Stop(_)) = batch.last() {
                if let Some(WriterCommand::Stop(reply)) = batch.pop() {
                    stop = Some(reply);
                }
            }
            if !batch.is_empty() {
                self.apply(batch).await;
            }
            if let Some(reply) = stop {
                self.finish_syncer();
                let _ = reply.send(());
                return;
            }
        }
    }

    async fn apply(&mut self, batch: Vec<WriterCommand>) {
        // Every batch is one transaction, so a group only needs to stay inside its batch.
        let batch: Vec<WriterCommand> = batch
            .into_iter()
            .flat_map(|command| match command {
                WriterCommand::Together(commands) => commands,
                command => vec![command],
            })
            .collect();
        let recount = batch.iter().any(|command| matches!(command, WriterCommand::Recount));
        let effects = self.commit_until_stored(&batch).await;
        if !batch.iter().all(|command| matches!(command, WriterCommand::Recount)) {
            self.committed();
        }
        let replies = batch.into_iter().filter_map(|command| match command {
            WriterCommand::Enqueue { reply, .. } | WriterCommand::Finish { reply, .. } => Some(reply),
            WriterCommand::Promise { reply, .. } => reply,
            WriterCommand::Recount
            | WriterCommand::Stop(_)
            | WriterCommand::OpenCall { .. }
            | WriterCommand::Alive { .. }
            | WriterCommand::ForgetPickup { .. }
            | WriterCommand::Together(_) => None,
        });
        if effects.refused > 0 {
            metrics::refused().add(effects.refused);
        }
        metrics::evicted().add(effects.evicted);
        metrics::dead_lettered().add(effects.dead_lettered);
        self.current = effects.counts;
        // Counts first: whoever is woken by a reply must see them.
        self.publish();
        for (sink, rows) in effects.added {
            // A sender may be gone (shutdown), or the sink no longer configured: the
            // rows stay pending for the next start.
            if let Some(book) = self.sinks.get(&sink) {
                let _ = book.added.send(rows);
            }
        }
        for (reply, result) in replies.zip(effects.results) {
            let _ = reply.send(result);
        }
        if recount {
            self.recount();
        }
    }

    /// Commits `batch`, trying again with backoff for as long as the commit fails (a full
    /// disk, a read-only file): the requests stay in memory meanwhile, `/healthz` is red and
    /// the error is logged at once and then once a minute. Nothing is reported "not stored"
    /// for a failure that may pass.
    async fn commit_until_stored(&mut self, batch: &[WriterCommand]) -> BatchEffects {
        let max_rows: BTreeMap<&str, u64> =
            self.sinks.iter().map(|(name, book)| (name.as_str(), book.max_rows)).collect();
        let mut failures = 0u32;
        let mut reminded = Instant::now();
        let mut busy_since: Option<Instant> = None;
        loop {
            let outcome =
                apply_batch(&mut self.conn, &max_rows, self.limits.max_rows, self.current.clone(), batch, &self.path);
            match outcome {
                // Another process (an admin's `deskhook outbox retry`, a `sqlite3` shell) holds
                // the write lock: waited for here, as its busy timeout would, but without
                // holding up the runtime's other tasks.
                Err(error)
                    if is_busy(&error)
                        && busy_since.get_or_insert_with(Instant::now).elapsed() < crate::sqlite::BUSY_TIMEOUT =>
                {
                    tokio::time::sleep(BUSY_POLL).await;
                }
                Ok(effects) => {
                    if failures > 0 {
                        self.failing.store(false, Ordering::Relaxed);
                        tracing::warn!(
                            path = %self.path,
                            "the outbox commits again after {failures} failed tries; nothing was lost"
                        );
                    }
                    return effects;
                }
                Err(error) => {
                    failures += 1;
                    metrics::write_errors().inc();
                    if failures == 1 || reminded.elapsed() >= COMMIT_FAILURE_REMINDER {
                        reminded = Instant::now();
                        self.failing.store(true, Ordering::Relaxed);
                        tracing::error!(
                            path = %self.path,
                            %error,
                            failures,
                            "cannot commit to the outbox (is the disk full or the file read-only?); the requests \
                             are held in memory and the commit is tried again until it works"
                        );
                    }
                    tokio::time::sleep(crate::backoff::pause(COMMIT_RETRY_FIRST, COMMIT_RETRY_LONGEST, failures)).await;
                }
            }
        }
    }

    /// Has the syncer take the last commit to the disk.
    fn committed(&self) {
        if let Some(syncer) = &self.syncer {
            syncer.committed();
        }
    }

    /// Fsyncs and checkpoints everything committed, before the writer stops.
    fn finish_syncer(&mut self) {
        if let Some(syncer) = self.syncer.take() {
            syncer.finish();
        }
    }

    fn recount(&mut self) {
        match count_rows_by_sink(&self.conn) {
            Ok(counts) => {
                self.current = counts;
                self.publish();
            }
            Err(error) => tracing::warn!(path = %self.path, %error, "cannot count the outbox's rows"),
        }
    }

    /// Hands the counts to the sinks' shared counters and to `/metrics`.
    fn publish(&mut self) {
        let mut total = OutboxCounts::default();
        for (name, counts) in &self.current {
            total = total.plus(counts);
            match self.sinks.get(name) {
                Some(book) => {
                    book.counts.store(*counts);
                    metrics::publish_sink_counts(&book.meters, *counts);
                }
                // Rows of a sink no longer configured still show, under its name.
                None => {
                    let meters = self.unconfigured.entry(name.clone()).or_insert_with(|| SinkMeters::of(name));
                    metrics::publish_sink_counts(meters, *counts);
                }
            }
        }
        for (name, book) in &self.sinks {
            if !self.current.contains_key(name) {
                book.counts.store(OutboxCounts::default());
                metrics::publish_sink_counts(&book.meters, OutboxCounts::default());
            }
        }
        metrics::publish_counts(total);
    }

    /// Deletes delivered rows older than `keep_delivered`, a chunk per transaction, letting the
    /// runtime's other tasks run between chunks. Each sink's rows are walked in id order up to
    /// the first one still kept (see [`prune_boundary`]): the cost is what is deleted, however
    /// many rows the outbox holds.
    async fn prune(&mut self) {
        let keep = i64::try_from(self.limits.keep_delivered.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(keep);
        let sinks: Vec<String> =
            self.current.iter().filter(|(_, counts)| counts.delivered > 0).map(|(sink, _)| sink.clone()).collect();
        let mut removed_total = 0u64;
        for sink in sinks {
            let removed = self.prune_sink(&sink, cutoff).await;
            if removed > 0 {
                // Only this writer turns rows delivered, so nothing else changed the count.
                let counts = self.current.entry(sink).or_default();
                counts.delivered = counts.delivered.saturating_sub(removed);
                removed_total += removed;
            }
        }
        if removed_total > 0 {
            self.committed();
            tracing::debug!(removed = removed_total, "pruned delivered rows older than keep_delivered");
            self.publish();
        }
    }

    /// Prunes sink `sink`'s old delivered rows; returns how many went.
    async fn prune_sink(&mut self, sink: &str, cutoff: i64) -> u64 {
        let complain = |path: &str, error: &rusqlite::Error| {
            if is_busy(error) {
                tracing::debug!(path, "another process holds the outbox's write lock; pruning later");
            } else {
                tracing::warn!(path, %error, "cannot prune delivered rows from the outbox");
            }
        };
        // Taken once: the rows before it stay delivered and old while this writer prunes, as
        // no one else marks rows delivered.
        let below = match prune_boundary(&self.conn, sink, cutoff) {
            Ok(below) => below,
            Err(error) => {
                complain(&self.path, &error);
                return 0;
            }
        };
        let mut removed = 0u64;
        loop {
            match prune_chunk(&self.conn, sink, cutoff, below, PRUNE_CHUNK) {
                Ok(count) => {
                    removed += count as u64;
                    if (count as i64) < PRUNE_CHUNK {
                        return removed;
                    }
                    tokio::task::yield_now().await;
                }
                Err(error) => {
                    complain(&self.path, &error);
                    return removed;
                }
            }
        }
    }
}

/// Whether `error` says another connection holds the lock this one needs.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(error.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

fn apply_batch(
    conn: &mut Connection,
    max_rows: &BTreeMap<&str, u64>,
    default_max_rows: u64,
    counts: BTreeMap<String, OutboxCounts>,
    batch: &[WriterCommand],
    path: &str,
) -> rusqlite::Result<BatchEffects> {
    let now = now_ms();
    let mut effects = BatchEffects { counts, ..BatchEffects::default() };
    let tx = Scope::transaction(conn)?;
    for command in batch {
        match command {
            WriterCommand::Enqueue { requests, kept, .. } => {
                let result = enqueue(tx.conn, max_rows, default_max_rows, requests, now, &mut effects, path)?;
                if let (Ok(()), Some((unique_id, file))) = (&result, kept) {
                    forget_pickup(tx.conn, unique_id, file)?;
                }
                effects.results.push(result);
            }
            WriterCommand::Promise { promises, reply } => {
                for promise in promises {
                    promise_pickup(tx.conn, promise)?;
                }
                if reply.is_some() {
                    effects.results.push(Ok(()));
                }
            }
            WriterCommand::ForgetPickup { unique_id, file } => forget_pickup(tx.conn, unique_id, file)?,
            WriterCommand::Finish { id, sink, tries, verdict, .. } => {
                finish(tx.conn, *id, sink, *tries, verdict, now, &mut effects)?;
                effects.results.push(Ok(()));
            }
            WriterCommand::OpenCall { unique_id, checkpoint: Some(checkpoint) } => {
                tx.conn
                    .prepare_cached(
                    "INSERT INTO open_calls (unique_id, checkpoint, saved_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (unique_id) DO UPDATE SET checkpoint = excluded.checkpoint, saved_at = excluded.saved_at",
                )?
                .execute(params![unique_id, checkpoint, now])?;
            }
            WriterCommand::OpenCall { unique_id, checkpoint: None } => {
                tx.conn.prepare_cached("DELETE FROM open_calls WHERE unique_id = ?1")?.execute([unique_id])?;
            }
            WriterCommand::Alive { at_ms } => {
                tx.conn
                    // An update in place, not REPLACE (a delete and an insert): one page less per commit.
                    .prepare_cached(
                        "INSERT INTO outbox_meta (key, value) VALUES ('last_alive_ms', ?1)
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    )?
                    .execute([at_ms])?;
            }
            WriterCommand::Recount | WriterCommand::Stop(_) | WriterCommand::Together(_) => {}
        }
    }
    tx.commit()?;
    Ok(effects)
}

/// A transaction or savepoint begun and ended through cached statements: the writer runs
/// hundreds a second, and parsing `BEGIN`, `SAVEPOINT` and `COMMIT` each time showed in
/// profiles. Dropped without [`Scope::commit`], it rolls back.
struct Scope<'c> {
    conn: &'c Connection,
    kind: ScopeKind,
    open: bool,
}

#[derive(Clone, Copy)]
enum ScopeKind {
    Transaction,
    /// The savepoint of one enqueue call, inside the batch's transaction.
    Enqueue,
}

impl<'c> Scope<'c> {
    fn transaction(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("BEGIN IMMEDIATE")?.execute([])?;
        Ok(Scope { conn, kind: ScopeKind::Transaction, open: true })
    }

    fn enqueue(conn: &'c Connection) -> rusqlite::Result<Self> {
        conn.prepare_cached("SAVEPOINT enqueue")?.execute([])?;
        Ok(Scope { conn, kind: ScopeKind::Enqueue, open: true })
    }

    fn commit(mut self) -> rusqlite::Result<()> {
        let statement = match self.kind {
            ScopeKind::Transaction => "COMMIT",
            ScopeKind::Enqueue => "RELEASE enqueue",
        };
        self.conn.prepare_cached(statement)?.execute([])?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        if !self.open {
            return;
        }
        let rollback = match self.kind {
            // A failed COMMIT may have ended the transaction already.
            ScopeKind::Transaction if self.conn.is_autocommit() => return,
            ScopeKind::Transaction => "ROLLBACK",
            ScopeKind::Enqueue => "ROLLBACK TO enqueue; RELEASE enqueue",
        };
        if let Err(error) = self.conn.execute_batch(rollback) {
            tracing::warn!(%error, "cannot roll back an outbox write");
        }
    }
}

/// Stores one enqueue call's requests, all or none: `Err` inside `Ok` is a refusal (a sink's
/// share of the outbox is full).
fn enqueue(
    tx: &Connection,
    max_rows: &BTreeMap<&str, u64>,
    default_max_rows: u64,
    requests: &[Request],
    now: i64,
    effects: &mut BatchEffects,
    path: &str,
) -> rusqlite::Result<Result<(), DeliverError>> {
    let savepoint = Scope::enqueue(tx)?;
    let mut inserted: BTreeMap<String, Vec<PendingRow>> = BTreeMap::new();
    for request in requests {
        if let Some(id) = insert_request(savepoint.conn, request, now)? {
            let fresh = Some(Box::new(request.clone()));
            let row = PendingRow { id, unique_id: request.unique_id.clone(), due_ms: now, fresh };
            inserted.entry(request.sink.clone()).or_default().push(row);
        }
    }
    let mut evicted: BTreeMap<String, u64> = BTreeMap::new();
    for (sink, rows) in &inserted {
        let cap = max_rows.get(sink.as_str()).copied().unwrap_or(default_max_rows);
        let rows_now = effects.counts.get(sink).map_or(0, OutboxCounts::rows);
        let rows_after = rows_now + rows.len() as u64;
        if rows_after <= cap {
            continue;
        }
        let excess = i64::try_from(rows_after - cap).unwrap_or(i64::MAX);
        let dropped = savepoint.conn.execute(
            "DELETE FROM outbox WHERE id IN
             (SELECT id FROM outbox WHERE sink = ?1 AND state = 'delivered' ORDER BY id LIMIT ?2)",
            params![sink, excess],
        )? as u64;
        if rows_after - dropped > cap {
            // Dropping the savepoint rolls back the inserts and the evictions alike.
            drop(savepoint);
            let refused = requests.len() as u64;
            effects.refused += refused;
            let calls: std::collections::BTreeSet<&str> = requests.iter().map(|r| r.unique_id.as_str()).collect();
            tracing::error!(
                path,
                sink = %sink,
                refused,
                calls = ?calls,
                rows = rows_now,
                max_rows = cap,
                "OUTBOX FULL: requests to sink {sink:?} refused and NOT stored; it has not accepted requests for \
                 a long time or dead rows pile up: see `deskhook outbox list --sink {sink}`, fix the destination, \
                 then `deskhook outbox retry` or `purge`, or raise its outbox_max_rows"
            );
            return Ok(Err(DeliverError::Full { rows: rows_now, max_rows: cap, refused }));
        }
        evicted.insert(sink.clone(), dropped);
    }
    savepoint.commit()?;
    for (sink, rows) in inserted {
        let counts = effects.counts.entry(sink.clone()).or_default();
        let dropped = evicted.get(&sink).copied().unwrap_or(0);
        counts.delivered = counts.delivered.saturating_sub(dropped);
        counts.pending += rows.len() as u64;
        effects.evicted += dropped;
        effects.added.entry(sink).or_default().extend(rows);
    }
    Ok(Ok(()))
}

fn finish(
    tx: &Connection,
    id: i64,
    sink: &str,
    tries: u32,
    verdict: &Verdict,
    now: i64,
    effects: &mut BatchEffects,
) -> rusqlite::Result<()> {
    let changed = match verdict {
        Verdict::Delivered => tx
            .prepare_cached(
                "UPDATE outbox SET state = 'delivered', tries = ?2, finished_at = ?3
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, tries, now])?,
        Verdict::RetryAt { at_ms, error } => tx
            .prepare_cached(
                "UPDATE outbox SET tries = ?2, next_attempt_at = ?3, last_error = ?4 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, tries, at_ms, error])?,
        Verdict::Dead { error } => tx
            .prepare_cached(
                "UPDATE outbox SET state = 'dead', tries = ?2, finished_at = ?3, last_error = ?4
                 WHERE id = ?1 AND state = 'pending'",
            )?
            .execute(params![id, tries, now, error])?,
    };
    if changed == 1 {
        let counts = effects.counts.entry(sink.to_string()).or_default();
        match verdict {
            Verdict::Delivered => {
                counts.pending = counts.pending.saturating_sub(1);
                counts.delivered += 1;
            }
            Verdict::Dead { .. } => {
                counts.pending = counts.pending.saturating_sub(1);
                counts.dead += 1;
                effects.dead_lettered += 1;
            }
            Verdict::RetryAt { .. } => {}
        }
    }
    Ok(())
}
