//! MixMonitor pickup: after a call's ended event, wait for each of its recording files to be
//! complete and hand it to the outbox as an upload to every sink that takes recordings, in the
//! order the recordings were started.
//!
//! Promised pickups are journaled in SQLite (`storage.dir/recordings.sqlite`) before they are
//! worked on, so a restart while a file is still being closed does not lose the upload.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use rusqlite::{params, Connection};
use tokio::sync::mpsc;

use crate::calls::{RecordingRef, RecordingSource};
use crate::config::RecordingsConfig;
use crate::deliver::{DeliveryHandle, UploadRoute, HELPDESK_SINK};
use crate::metrics;

use super::closes::CloseWatch;
use super::mixmonitor::wait_until_complete;
use super::safety::{AllowedDirs, PickupError};

/// The journal's file name under `storage.dir`.
pub(crate) const JOURNAL_FILE: &str = "recordings.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum PickupStartError {
    #[error("cannot open the recordings journal {path}: {source}; check that storage.dir is writable")]
    Journal { path: String, source: rusqlite::Error },
    #[error("cannot start the recordings journal's syncer: {0}")]
    Syncer(String),
}

struct Journal {
    conn: Mutex<Connection>,
    /// Takes the journal's commits to the disk.
    syncer: crate::sqlite::Syncer,
}

impl Journal {
    fn open(path: &Path) -> Result<Journal, PickupStartError> {
        let failed = |source| PickupStartError::Journal { path: path.display().to_string(), source };
        let conn = Self::open_table(path).map_err(failed)?;
        crate::sqlite::relax_for_syncer(&conn).map_err(failed)?;
        let syncer = crate::sqlite::Syncer::spawn("sync-recordings", path, sync_failures())
            .map_err(|error| PickupStartError::Syncer(error.to_string()))?;
        Ok(Journal { conn: Mutex::new(conn), syncer })
    }

    fn open_table(path: &Path) -> Result<Connection, rusqlite::Error> {
        let (conn, _mode) = crate::sqlite::open_durable(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS pending (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                unique_id TEXT NOT NULL,
                file TEXT NOT NULL,
                UNIQUE (unique_id, file)
            );",
        )?;
        // Where each file goes (JSON list of routes); rows from before sinks go to the helpdesk.
        let has_uploads: bool =
            conn.query_row("SELECT COUNT(*) FROM pragma_table_info('pending') WHERE name = 'uploads'", [], |row| {
                row.get(0)
            })?;
        if !has_uploads {
            conn.execute_batch("ALTER TABLE pending ADD COLUMN uploads TEXT")?;
        }
        Ok(conn)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A promise to upload, committed before the call's pickup counts as taken: a crash of
    /// deskhook keeps it at once, the syncer fsyncs it within half a second.
    fn add(&self, calls: &[(String, Vec<PendingFile>)]) -> Result<(), rusqlite::Error> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for (unique_id, files) in calls {
            for pending in files {
                let uploads = serde_json::to_string(&pending.routes).unwrap_or_default();
                tx.prepare_cached("INSERT OR IGNORE INTO pending (unique_id, file, uploads) VALUES (?1, ?2, ?3)")?
                    .execute(params![unique_id, pending.file, uploads])?;
            }
        }
        tx.commit()?;
        self.syncer.committed();
        Ok(())
    }

    /// A kept promise (after a power cut that lost it, the file is only looked for once more).
    fn done(&self, unique_id: &str, file: &str) {
        let conn = self.lock();
        let result = conn
            .prepare_cached("DELETE FROM pending WHERE unique_id = ?1 AND file = ?2")
            .and_then(|mut statement| statement.execute(params![unique_id, file]));
        match result {
            Ok(_) => self.syncer.committed(),
            Err(error) => tracing::warn!(%error, unique_id, "cannot clear a finished recording from the journal"),
        }
    }

    /// Pickups a previous run promised, grouped by call in their original order.
    fn unfinished(&self) -> Result<Vec<(String, Vec<PendingFile>)>, rusqlite::Error> {
        let conn = self.lock();
        let mut statement = conn.prepare("SELECT unique_id, file, uploads FROM pending ORDER BY id")?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get::<_, Option<String>>(2)?))
        })?;
        let mut calls: Vec<(String, Vec<PendingFile>)> = Vec::new();
        for row in rows {
            let (unique_id, file, uploads) = row?;
            let routes = match uploads.as_deref().map(serde_json::from_str::<Vec<UploadRoute>>) {
                Some(Ok(routes)) => routes,
                Some(Err(error)) => {
                    tracing::warn!(unique_id, file, %error, "unreadable upload routes in the recordings journal; sending to the helpdesk only");
                    helpdesk_only()
                }
                None => helpdesk_only(),
            };
            let pending = PendingFile { file, routes };
            match calls.iter_mut().find(|(id, _)| *id == unique_id) {
                Some((_, files)) => files.push(pending),
                None => calls.push((unique_id, vec![pending])),
            }
        }
        Ok(calls)
    }
}

fn sync_failures() -> &'static metrics::Counter {
    metrics::counter!(
        "deskhook_recordings_journal_sync_errors_total",
        "Failed fsyncs of the recordings journal (its commits wait in the WAL and are fsynced again)."
    )
}

/// A promised file and the sinks it goes to.
#[derive(Debug, Clone)]
struct PendingFile {
    file: String,
    routes: Vec<UploadRoute>,
}

fn helpdesk_only() -> Vec<UploadRoute> {
    vec![UploadRoute { sink: HELPDESK_SINK.into(), summary: None }]
}

/// Hands finished calls' MixMonitor files to the outbox.
#[derive(Clone)]
pub struct Pickup {
    tx: mpsc::UnboundedSender<(String, Vec<PendingFile>)>,
    journal: Arc<Journal>,
}

struct Worker {
    closes: CloseWatch,
    allowed: AllowedDirs,
    settle: Duration,
    wait_timeout: Duration,
    delete_after: bool,
    delivery: DeliveryHandle,
    journal: Arc<Journal>,
}

impl Pickup {
    /// Opens the journal, resumes what a previous run left, and starts the pickup on the
    /// current tokio runtime.
    pub fn start(
        cfg: &RecordingsConfig,
        storage_dir: &Path,
        delivery: DeliveryHandle,
    ) -> Result<Pickup, PickupStartError> {
        let path = storage_dir.join(JOURNAL_FILE);
        let journal = Journal::open(&path)?;
        let journal = Arc::new(journal);
        let resumed = journal
            .unfinished()
            .map_err(|source| PickupStartError::Journal { path: path.display().to_string(), source })?;
        // One item per call that ended with recordings; taken at once (each call is its own task).
        let (tx, mut rx) = mpsc::unbounded_channel::<(String, Vec<PendingFile>)>();
        let worker = Arc::new(Worker {
            closes: CloseWatch::start(),
            allowed: AllowedDirs::new(&cfg.dirs),
            settle: cfg.settle.get(),
            wait_timeout: cfg.wait_timeout.get(),
            delete_after: cfg.delete_after_upload,
            delivery,
            journal: journal.clone(),
        });
        if !resumed.is_empty() {
            tracing::info!(calls = resumed.len(), "resuming recording pickups left by the previous run");
        }
        for call in resumed {
            let _ = tx.send(call);
        }
        tokio::spawn(async move {
            while let Some((unique_id, files)) = rx.recv().await {
                // Calls in parallel; one call's files strictly in order.
                let worker = worker.clone();
                tokio::spawn(async move { worker.pick_up(&unique_id, files).await });
            }
        });
        Ok(Pickup { tx, journal })
    }

    /// Promises the upload of finished calls' recordings, each to the sinks of its routes:
    /// journaled before this returns, and started by [`Pickup::release`] (so the call's ended
    /// event can be queued ahead of them).
    pub(crate) async fn promise(&self, recordings: Vec<(RecordingRef, Vec<UploadRoute>)>) -> Promised {
        let mut by_call: Vec<(String, Vec<PendingFile>)> = Vec::new();
        for (recording, routes) in recordings {
            let RecordingSource::File(file) = recording.source;
            if routes.is_empty() {
                continue;
            }
            let pending = PendingFile { file, routes };
            match by_call.iter_mut().find(|(id, _)| *id == recording.unique_id) {
                Some((_, files)) => files.push(pending),
                None => by_call.push((recording.unique_id, vec![pending])),
            }
        }
        if by_call.is_empty() {
            return Promised(by_call);
        }
        // On the runtime, like the outbox's commits: a commit only writes the WAL (the syncer
        // fsyncs), and nothing else writes this file, so it never waits for a lock.
        if self.journal.add(&by_call).is_err() {
            tracing::error!(
                "cannot journal recording pickups; they are still attempted but would not survive a restart"
            );
        }
        Promised(by_call)
    }

    /// Starts the pickups promised.
    pub(crate) fn release(&self, promised: Promised) {
        for call in promised.0 {
            let _ = self.tx.send(call);
        }
    }

    /// [`Pickup::promise`] to the helpdesk alone, then [`Pickup::release`].
    pub async fn submit(&self, recordings: Vec<RecordingRef>) {
        let routed = recordings.into_iter().map(|recording| (recording, helpdesk_only())).collect();
        let promised = self.promise(routed).await;
        self.release(promised);
    }
}

/// Journaled pickups not yet started, per call in the order their recordings were started.
#[must_use = "a promised pickup starts only when released"]
pub(crate) struct Promised(Vec<(String, Vec<PendingFile>)>);

impl Worker {
    async fn pick_up(&self, unique_id: &str, files: Vec<PendingFile>) {
        // Watch every file of the call at once (a close is only seen by a watcher that is
        // already there), but hand them over in the order the recordings were started.
        let waiting = metrics::gauge!(
            "deskhook_recordings_waiting",
            "Recordings of ended calls waiting for their recorder to finish the file."
        );
        waiting.add(files.len() as i64);
        let mut waits: FuturesOrdered<_> = files
            .iter()
            .map(|pending| async move {
                let outcome =
                    wait_until_complete(&self.closes, &self.allowed, &pending.file, self.settle, self.wait_timeout)
                        .await;
                (pending.clone(), outcome)
            })
            .collect();
        while let Some((PendingFile { file, routes }, outcome)) = waits.next().await {
            waiting.add(-1);
            match outcome {
                Ok(ready) => {
                    // A file several sinks read is kept: none of them can tell when all are done.
                    let delete_after = self.delete_after && routes.len() == 1;
                    let uploads = routes
                        .iter()
                        .map(|route| route.request(unique_id, PathBuf::from(&ready.path), delete_after))
                        .collect();
                    match self.delivery.enqueue(uploads).await {
                        Ok(()) => {
                            metrics::counter!("deskhook_recordings_queued_total", "Recordings handed to the outbox.")
                                .inc();
                            tracing::info!(unique_id, file = %ready.path.display(), bytes = ready.size, "recording queued for upload");
                        }
                        Err(error) => {
                            // Keep the journal row: the next start tries again.
                            tracing::error!(unique_id, %error, "cannot queue a recording upload");
                            continue;
                        }
                    }
                }
                Err(problem) => report(unique_id, &problem),
            }
            self.journal.done(unique_id, &file);
        }
    }
}

fn report(unique_id: &str, problem: &PickupError) {
    match problem {
        PickupError::NotAbsolute(_) | PickupError::OutsideDirs { .. } => {
            metrics::counter!(
                "deskhook_recordings_refused_total",
                "Recording paths refused (outside recordings.dirs)."
            )
            .inc();
            tracing::error!(unique_id, %problem, "recording not uploaded; add its directory to recordings.dirs if it is genuine");
        }
        _ => {
            metrics::counter!("deskhook_recordings_missing_total", "Recordings missing, empty or never completed.")
                .inc();
            tracing::warn!(unique_id, %problem, "recording not uploaded");
        }
    }
}
