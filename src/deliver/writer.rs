//! The outbox's single writer: a thread that owns the write connection and commits whatever
//! arrived meanwhile in one transaction (group commit), so a burst of events costs one fsync.
//! New rows are fsynced before `enqueue` returns; outcome marks are committed without an
//! fsync of their own (they survive a crash of deskhook, and a lost mark only means one
//! duplicate send after a power loss).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, TransactionBehavior};
use tokio::sync::{mpsc::UnboundedSender, oneshot};

use super::metrics;
use super::outbox::{count_rows, insert_request, now_ms, Limits, Outbox, OutboxCounts, PendingRow};
use super::policy::Verdict;
use super::request::Request;
use super::DeliverError;

/// Commands are taken in batches of at most this many per transaction.
const MAX_BATCH: usize = 1024;
/// How often delivered rows older than `keep_delivered` are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);
/// Rows deleted per pruning transaction, so pruning never holds the write lock for long.
const PRUNE_CHUNK: i64 = 5000;

pub(crate) enum WriterCommand {
    /// Commit these requests durably; the reply says whether they are stored.
    Enqueue { requests: Vec<Request>, reply: oneshot::Sender<Result<(), DeliverError>> },
    /// Record how a try of row `id` ended.
    Finish { id: i64, tries: u32, verdict: Verdict, reply: oneshot::Sender<Result<(), DeliverError>> },
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

/// Row counts by state, kept by the writer for `/metrics` and the size cap.
#[derive(Debug, Default)]
pub(crate) struct SharedCounts {
    pending: AtomicU64,
    dead: AtomicU64,
    delivered: AtomicU64,
}

impl SharedCounts {
    pub fn snapshot(&self) -> OutboxCounts {
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
        metrics::publish_counts(counts);
    }
}

pub(crate) struct Writer {
    conn: Connection,
    path: String,
    limits: Limits,
    counts: Arc<SharedCounts>,
    current: OutboxCounts,
    added: UnboundedSender<Vec<PendingRow>>,
    fsync_commits: bool,
    next_prune: Instant,
}

/// Starts the writer thread on the outbox's connection.
pub(crate) fn spawn(
    outbox: Outbox,
    counts: Arc<SharedCounts>,
    added: UnboundedSender<Vec<PendingRow>>,
) -> Result<Sender<WriterCommand>, DeliverError> {
    let current = count_rows(&outbox.conn).map_err(|source| outbox.db_error(source))?;
    counts.store(current);
    let path = outbox.path.display().to_string();
    let mut writer = Writer {
        conn: outbox.conn,
        path,
        limits: outbox.limits,
        counts,
        current,
        added,
        fsync_commits: true,
        next_prune: Instant::now(),
    };
    let (commands, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("deskhook-outbox".into())
        .spawn(move || writer.run(receiver))
        .map_err(|source| DeliverError::Thread { source })?;
    Ok(commands)
}

/// What one batch changed, applied to the counts only once it is committed.
#[derive(Default)]
struct BatchEffects {
    results: Vec<Result<(), DeliverError>>,
    added: Vec<PendingRow>,
    counts: OutboxCounts,
    refused: u64,
    evicted: u64,
    dead_lettered: u64,
}

impl Writer {
    fn run(&mut self, commands: Receiver<WriterCommand>) {
        loop {
            if Instant::now() >= self.next_prune {
                self.prune();
                self.next_prune = Instant::now() + PRUNE_EVERY;
            }
            let first = match commands.recv_timeout(self.next_prune.saturating_duration_since(Instant::now())) {
                Ok(command) => command,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => return,
            };
            let mut batch = vec![first];
            let mut stop = None;
            while batch.len() < MAX_BATCH {
                match batch.last() {
                    Some(WriterCommand::Stop(_)) => break,
                    _ => match commands.try_recv() {
                        Ok(command) => batch.push(command),
                        Err(_) => break,
                    },
                }
            }
            if let Some(WriterCommand::Stop(_)) = batch.last() {
                if let Some(WriterCommand::Stop(reply)) = batch.pop() {
                    stop = Some(reply);
                }
            }
            if !batch.is_empty() {
                self.apply(batch);
            }
            if let Some(reply) = stop {
                let _ = reply.send(());
                return;
            }
        }
    }

    fn apply(&mut self, batch: Vec<WriterCommand>) {
        // Every batch is one transaction, so a group only needs to stay inside its batch.
        let batch: Vec<WriterCommand> = batch
            .into_iter()
            .flat_map(|command| match command {
                WriterCommand::Together(commands) => commands,
                command => vec![command],
            })
            .collect();
        let durable = batch.iter().any(|command| matches!(command, WriterCommand::Enqueue { .. }));
        if durable != self.fsync_commits {
            let mode = if durable { "FULL" } else { "NORMAL" };
            if let Err(error) = self.conn.pragma_update(None, "synchronous", mode) {
                tracing::warn!(path = %self.path, %error, "cannot set the outbox's synchronous mode");
            } else {
                self.fsync_commits = durable;
            }
        }
        let recount = batch.iter().any(|command| matches!(command, WriterCommand::Recount));
        let outcome = apply_batch(&mut self.conn, &self.limits, self.current, &batch, &self.path);
        let replies = batch.into_iter().filter_map(|command| match command {
            WriterCommand::Enqueue { reply, .. } | WriterCommand::Finish { reply, .. } => Some(reply),
            WriterCommand::Recount
            | WriterCommand::Stop(_)
            | WriterCommand::OpenCall { .. }
            | WriterCommand::Alive { .. }
            | WriterCommand::Together(_) => None,
        });
        match outcome {
            Ok(effects) => {
                if effects.refused > 0 {
                    metrics::refused().add(effects.refused);
                }
                metrics::evicted().add(effects.evicted);
                metrics::dead_lettered().add(effects.dead_lettered);
                self.current = effects.counts;
                // Counts first: whoever is woken by a reply must see them.
                self.counts.store(self.current);
                if !effects.added.is_empty() {
                    // The sender may be gone (shutdown); the rows stay pending for the next start.
                    let _ = self.added.send(effects.added);
                }
                for (reply, result) in replies.zip(effects.results) {
                    let _ = reply.send(result);
                }
            }
            Err(error) => {
                tracing::error!(
                    path = %self.path,
                    %error,
                    "cannot commit to the outbox; requests are NOT stored (is the disk full or the file read-only?)"
                );
                metrics::write_errors().inc();
                for reply in replies {
                    let _ =
                        reply.send(Err(DeliverError::Commit { path: self.path.clone(), message: error.to_string() }));
                }
            }
        }
        if recount {
            match count_rows(&self.conn) {
                Ok(counts) => {
                    self.current = counts;
                    self.counts.store(self.current);
                }
                Err(error) => tracing::warn!(path = %self.path, %error, "cannot count the outbox's rows"),
            }
        }
    }

    /// Deletes delivered rows older than `keep_delivered`, a chunk per transaction.
    fn prune(&mut self) {
        let keep = i64::try_from(self.limits.keep_delivered.as_millis()).unwrap_or(i64::MAX);
        let cutoff = now_ms().saturating_sub(keep);
        let mut removed = 0u64;
        loop {
            let deleted = self.conn.execute(
                "DELETE FROM outbox WHERE id IN
                 (SELECT id FROM outbox WHERE state = 'delivered' AND finished_at < ?1 LIMIT ?2)",
                params![cutoff, PRUNE_CHUNK],
            );
            match deleted {
                Ok(count) => {
                    removed += count as u64;
                    if (count as i64) < PRUNE_CHUNK {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(path = %self.path, %error, "cannot prune delivered rows from the outbox");
                    break;
                }
            }
        }
        if removed > 0 {
            tracing::debug!(removed, "pruned delivered rows older than helpdesk.keep_delivered");
            self.current.delivered = self.current.delivered.saturating_sub(removed);
            self.counts.store(self.current);
        }
    }
}

fn apply_batch(
    conn: &mut Connection,
    limits: &Limits,
    counts: OutboxCounts,
    batch: &[WriterCommand],
    path: &str,
) -> rusqlite::Result<BatchEffects> {
    let now = now_ms();
    let mut effects = BatchEffects { counts, ..BatchEffects::default() };
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for command in batch {
        match command {
            WriterCommand::Enqueue { requests, .. } => {
                let result = enqueue(&mut tx, limits, requests, now, &mut effects, path)?;
                effects.results.push(result);
            }
            WriterCommand::Finish { id, tries, verdict, .. } => {
                finish(&tx, *id, *tries, verdict, now, &mut effects)?;
                effects.results.push(Ok(()));
            }
            WriterCommand::OpenCall { unique_id, checkpoint: Some(checkpoint) } => {
                tx.prepare_cached(
                    "INSERT INTO open_calls (unique_id, checkpoint, saved_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (unique_id) DO UPDATE SET checkpoint = excluded.checkpoint, saved_at = excluded.saved_at",
                )?
                .execute(params![unique_id, checkpoint, now])?;
            }
            WriterCommand::OpenCall { unique_id, checkpoint: None } => {
                tx.prepare_cached("DELETE FROM open_calls WHERE unique_id = ?1")?.execute([unique_id])?;
            }
            WriterCommand::Alive { at_ms } => {
                tx.prepare_cached("INSERT OR REPLACE INTO outbox_meta (key, value) VALUES ('last_alive_ms', ?1)")?
                    .execute([at_ms])?;
            }
            WriterCommand::Recount | WriterCommand::Stop(_) | WriterCommand::Together(_) => {}
        }
    }
    tx.commit()?;
    Ok(effects)
}

/// Stores one enqueue call's requests, all or none: `Err` inside `Ok` is a refusal (outbox full).
fn enqueue(
    tx: &mut rusqlite::Transaction<'_>,
    limits: &Limits,
    requests: &[Request],
    now: i64,
    effects: &mut BatchEffects,
    path: &str,
) -> rusqlite::Result<Result<(), DeliverError>> {
    let savepoint = tx.savepoint()?;
    let mut inserted = Vec::with_capacity(requests.len());
    for request in requests {
        if let Some(id) = insert_request(&savepoint, request, now)? {
            inserted.push(PendingRow { id, unique_id: request.unique_id.clone(), due_ms: now });
        }
    }
    let rows_after = effects.counts.rows() + inserted.len() as u64;
    let mut evicted = 0u64;
    if rows_after > limits.max_rows {
        let excess = i64::try_from(rows_after - limits.max_rows).unwrap_or(i64::MAX);
        evicted = savepoint.execute(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE state = 'delivered' ORDER BY id LIMIT ?1)",
            [excess],
        )? as u64;
        if rows_after - evicted > limits.max_rows {
            // Dropping the savepoint rolls back the inserts and the evictions alike.
            drop(savepoint);
            let refused = requests.len() as u64;
            effects.refused += refused;
            let calls: std::collections::BTreeSet<&str> = requests.iter().map(|r| r.unique_id.as_str()).collect();
            tracing::error!(
                path,
                refused,
                calls = ?calls,
                rows = effects.counts.rows(),
                max_rows = limits.max_rows,
                "OUTBOX FULL: helpdesk requests refused and NOT stored; the helpdesk has not accepted requests for \
                 a long time or dead rows pile up: see `deskhook outbox list`, fix the helpdesk, then \
                 `deskhook outbox retry` or `purge`, or raise helpdesk.outbox_max_rows"
            );
            return Ok(Err(DeliverError::Full { rows: effects.counts.rows(), max_rows: limits.max_rows, refused }));
        }
    }
    savepoint.commit()?;
    effects.counts.delivered = effects.counts.delivered.saturating_sub(evicted);
    effects.counts.pending += inserted.len() as u64;
    effects.evicted += evicted;
    effects.added.extend(inserted);
    Ok(Ok(()))
}

fn finish(
    tx: &rusqlite::Transaction<'_>,
    id: i64,
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
        match verdict {
            Verdict::Delivered => {
                effects.counts.pending = effects.counts.pending.saturating_sub(1);
                effects.counts.delivered += 1;
            }
            Verdict::Dead { .. } => {
                effects.counts.pending = effects.counts.pending.saturating_sub(1);
                effects.counts.dead += 1;
                effects.dead_lettered += 1;
            }
            Verdict::RetryAt { .. } => {}
        }
    }
    Ok(())
}
