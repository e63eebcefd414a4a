//! The history's writer thread: ended calls queue here without waiting (the event path never
//! blocks on the history), and are committed to the local store in batches: after a commit,
//! the next waits up to [`GATHER`] for a batch to fill (without the thread being woken by each
//! call meanwhile); when the shared history is on, the same transaction queues them for the
//! copier, which is then woken.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use super::local::LocalStore;
use super::HistoryRow;
use crate::ari::events::EpochMillis;

/// Calls waiting for the writer; past this (a disk that stopped answering) new ones are
/// dropped and counted rather than holding the events of every call.
const QUEUE: usize = 10_000;
/// The most calls committed in one transaction.
const BATCH: usize = 512;
/// After a commit, calls gather this long before the next one (or until a batch is full): a
/// busy PBX pays one transaction and one wake-up of this thread for many calls. `/forward` sees
/// a call at most this much later, long before its client could call again.
const GATHER: Duration = Duration::from_millis(500);
/// Old rows are pruned once per this many committed calls (and when the writer starts).
const PRUNE_EVERY: u64 = 1000;

pub(super) enum Message {
    Row(HistoryRow),
    /// Answered once every call queued before it is committed.
    Flush(SyncSender<()>),
}

/// The sending side; clones share the one writer.
#[derive(Debug, Clone)]
pub(super) struct Queue {
    sender: SyncSender<Message>,
    gathering: Arc<Gathering>,
    /// The writer thread, woken when a batch is full or a flush waits.
    writer: std::thread::Thread,
}

/// What the writer's pause between commits looks at.
#[derive(Debug, Default)]
struct Gathering {
    /// Calls queued and not yet taken by the writer.
    queued: AtomicUsize,
    /// A flush waits: the pause ends.
    flush: AtomicBool,
    /// Transactions committed (read by the tests).
    #[cfg_attr(not(test), allow(dead_code))]
    commits: AtomicU64,
}

impl Queue {
    /// Starts the writer over `local`; `share` queues every call for the shared history and
    /// wakes `copier` after each commit. `cutoff` says, when called, before when calls are pruned.
    pub(super) fn start(
        local: Arc<LocalStore>,
        share: bool,
        copier: Arc<Notify>,
        cutoff: fn() -> EpochMillis,
    ) -> std::io::Result<Queue> {
        let (sender, receiver) = mpsc::sync_channel(QUEUE);
        let gathering = Arc::new(Gathering::default());
        let shared = gathering.clone();
        let writer = std::thread::Builder::new()
            .name("deskhook-history".into())
            .spawn(move || write(&local, share, &copier, cutoff, &receiver, &shared))?;
        Ok(Queue { sender, gathering, writer: writer.thread().clone() })
    }

    /// How many transactions the writer has committed.
    #[cfg(test)]
    pub(super) fn commits(&self) -> u64 {
        self.gathering.commits.load(Ordering::Relaxed)
    }

    /// Queues `row`; false when it could not be (queue full, writer gone).
    pub(super) fn push(&self, row: HistoryRow) -> bool {
        // Counted before it is sent, so the writer never takes a row it has not counted.
        let queued = self.gathering.queued.fetch_add(1, Ordering::Relaxed) + 1;
        let sent = self.sender.try_send(Message::Row(row));
        if sent.is_err() {
            self.gathering.queued.fetch_sub(1, Ordering::Relaxed);
        } else if queued >= BATCH {
            self.writer.unpark();
        }
        match sent {
            Ok(()) => true,
            Err(TrySendError::Full(Message::Row(row))) => {
                dropped().inc();
                tracing::error!(
                    unique_id = row.unique_id,
                    "call history: {QUEUE} calls wait for the disk; this one is not remembered"
                );
                false
            }
            Err(_) => {
                dropped().inc();
                tracing::error!("call history: the writer has stopped; calls are not remembered");
                false
            }
        }
    }

    /// Waits until every call queued so far is committed (or the writer is gone).
    pub(super) fn flush(&self) {
        let (done, wait) = mpsc::sync_channel(1);
        // Raised before the flush is sent: the writer lowers it only once it has the flush.
        self.gathering.flush.store(true, Ordering::Relaxed);
        if self.sender.send(Message::Flush(done)).is_ok() {
            self.writer.unpark();
            let _ = wait.recv();
        }
    }
}

fn write(
    local: &LocalStore,
    share: bool,
    copier: &Notify,
    cutoff: fn() -> EpochMillis,
    queue: &Receiver<Message>,
    gathering: &Gathering,
) {
    prune(local, cutoff);
    let mut since_prune = 0u64;
    let (mut rows, mut flushes) = (Vec::with_capacity(BATCH), Vec::new());
    let mut last_commit: Option<Instant> = None;
    while let Ok(first) = queue.recv() {
        if let (Message::Row(_), Some(at)) = (&first, last_commit) {
            gathering.pause_until(at + GATHER);
        }
        let mut next = Some(first);
        while let Some(message) = next {
            match message {
                Message::Row(row) => {
                    gathering.queued.fetch_sub(1, Ordering::Relaxed);
                    rows.push(row);
                }
                Message::Flush(done) => flushes.push(done),
            }
            next = if rows.len() < BATCH { queue.try_recv().ok() } else { None };
        }
        if !rows.is_empty() {
            match local.insert(&rows, share) {
                Ok(()) => {
                    gathering.commits.fetch_add(1, Ordering::Relaxed);
                    let count = rows.len() as u64;
                    crate::metrics::counter!(
                        "deskhook_history_records_total",
                        "Answered calls committed to the call history.",
                    )
                    .add(count);
                    if share {
                        copier.notify_one();
                    }
                    since_prune += count;
                }
                Err(error) => {
                    dropped().add(rows.len() as u64);
                    tracing::error!(calls = rows.len(), "calls not added to the history: {error}");
                }
            }
            // A full batch means calls are waiting already: no pause before the next.
            last_commit = (rows.len() < BATCH).then(Instant::now);
            rows.clear();
        }
        if !flushes.is_empty() {
            gathering.flush.store(false, Ordering::Relaxed);
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        if since_prune >= PRUNE_EVERY {
            since_prune = 0;
            prune(local, cutoff);
        }
    }
}

impl Gathering {
    /// Sleeps until `until`, a full batch or a flush, whichever comes first. Calls queued
    /// meanwhile do not wake the thread (only the one that fills a batch does).
    fn pause_until(&self, until: Instant) {
        loop {
            if self.queued.load(Ordering::Relaxed) >= BATCH || self.flush.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if now >= until {
                return;
            }
            std::thread::park_timeout(until - now);
        }
    }
}

fn prune(local: &LocalStore, cutoff: fn() -> EpochMillis) {
    if let Err(error) = local.prune(cutoff()) {
        tracing::warn!("call history: old calls not pruned: {error}");
    }
}

fn dropped() -> &'static crate::metrics::Counter {
    crate::metrics::counter!("deskhook_history_dropped_total", "Answered calls the call history could not keep.")
}
