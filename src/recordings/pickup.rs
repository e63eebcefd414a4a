//! MixMonitor pickup: after a call's ended event, wait for each of its recording files to be
//! complete and hand it to the outbox as an upload to every sink that takes recordings, in the
//! order the recordings were started.
//!
//! Promised pickups are kept in the outbox (its `pickups` table), stored in the same
//! transaction as the engine step that ended the call and forgotten in the one that stores
//! the uploads, so a restart while a file is still being closed neither loses the upload nor
//! sends it twice, and no commit is spent on them alone. A `recordings.sqlite` journal left by
//! an older deskhook is taken over at start and removed.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::{FuturesOrdered, StreamExt};
use rusqlite::OpenFlags;
use tokio::sync::mpsc;

use crate::calls::{RecordingRef, RecordingSource};
use crate::config::RecordingsConfig;
use crate::deliver::{DeliveryHandle, PickupPromise, UploadRoute};
use crate::metrics;

use super::closes::CloseWatch;
use super::mixmonitor::wait_until_complete;
use super::safety::{AllowedDirs, PickupError};

/// The journal file older deskhooks kept promised pickups in, under `storage.dir`.
pub(crate) const LEGACY_JOURNAL_FILE: &str = "recordings.sqlite";

#[derive(Debug, thiserror::Error)]
pub enum PickupStartError {
    #[error("cannot read the promised recording pickups: {0}")]
    Outbox(crate::deliver::DeliverError),
}

/// Promises grouped by call (each group one call's), files in the order they were promised.
fn by_call(promises: Vec<PickupPromise>) -> Vec<Vec<PickupPromise>> {
    let mut calls: Vec<Vec<PickupPromise>> = Vec::new();
    for promise in promises {
        match calls.iter_mut().find(|files| files[0].unique_id == promise.unique_id) {
            Some(files) => files.push(promise),
            None => calls.push(vec![promise]),
        }
    }
    calls
}

/// The promises in an older deskhook's journal, oldest first (`None`: there is no journal).
fn read_legacy_journal(path: &Path) -> Result<Option<Vec<PickupPromise>>, rusqlite::Error> {
    if !path.exists() {
        return Ok(None);
    }
    let conn = rusqlite::Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_WRITE)?;
    let has_uploads: bool =
        conn.query_row("SELECT COUNT(*) FROM pragma_table_info('pending') WHERE name = 'uploads'", [], |row| {
            row.get(0)
        })?;
    let sql = if has_uploads {
        "SELECT unique_id, file, uploads FROM pending ORDER BY id"
    } else {
        "SELECT unique_id, file, NULL FROM pending ORDER BY id"
    };
    let mut statement = conn.prepare(sql)?;
    let rows = statement.query_map([], |row| {
        Ok(PickupPromise::from_stored(row.get(0)?, row.get(1)?, row.get::<_, Option<String>>(2)?.as_deref()))
    })?;
    Ok(Some(rows.collect::<rusqlite::Result<Vec<_>>>()?))
}

/// Removes an older deskhook's journal and its WAL files.
fn remove_legacy_journal(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        if let Err(error) = std::fs::remove_file(&name) {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(path = %Path::new(&name).display(), %error, "cannot remove the old recordings journal");
            }
        }
    }
}

/// Hands finished calls' MixMonitor files to the outbox.
#[derive(Clone)]
pub struct Pickup {
    tx: mpsc::UnboundedSender<Vec<PickupPromise>>,
    delivery: DeliveryHandle,
}

struct Worker {
    closes: CloseWatch,
    allowed: AllowedDirs,
    settle: Duration,
    wait_timeout: Duration,
    delete_after: bool,
    delivery: DeliveryHandle,
}

impl Pickup {
    /// Resumes what a previous run promised (taking over an older deskhook's journal under
    /// `storage_dir`), and starts the pickup on the current tokio runtime.
    pub fn start(
        cfg: &RecordingsConfig,
        storage_dir: &Path,
        delivery: DeliveryHandle,
    ) -> Result<Pickup, PickupStartError> {
        let mut resumed = delivery.pending_pickups().map_err(PickupStartError::Outbox)?;
        let legacy_path = storage_dir.join(LEGACY_JOURNAL_FILE);
        let legacy = read_legacy_journal(&legacy_path).unwrap_or_else(|error| {
            // Recordings from now on are not held up by it; the file stays for the admin.
            tracing::error!(
                path = %legacy_path.display(),
                %error,
                "cannot read the recordings journal an older deskhook left: the uploads it promised are not \
                 resumed; check the file, then move it away (it is read again at every start until then)"
            );
            None
        });
        if let Some(legacy) = legacy {
            // A start that stored them and stopped before removing the journal: not twice.
            let taken_over: Vec<PickupPromise> = legacy
                .into_iter()
                .filter(|old| !resumed.iter().any(|kept| kept.unique_id == old.unique_id && kept.file == old.file))
                .collect();
            let stored = delivery.promise_pickups(taken_over.clone());
            resumed.extend(taken_over);
            tokio::spawn(async move {
                match stored.await {
                    Ok(()) => {
                        remove_legacy_journal(&legacy_path);
                        tracing::info!(path = %legacy_path.display(), "the recordings journal is now kept in the outbox; removed the old file");
                    }
                    Err(error) => tracing::warn!(
                        path = %legacy_path.display(),
                        %error,
                        "cannot take the old recordings journal over; it is read again at the next start"
                    ),
                }
            });
        }
        let resumed = by_call(resumed);
        // One item per call that ended with recordings; taken at once (each call is its own task).
        let (tx, mut rx) = mpsc::unbounded_channel::<Vec<PickupPromise>>();
        let worker = Arc::new(Worker {
            closes: CloseWatch::start(),
            allowed: AllowedDirs::new(&cfg.dirs),
            settle: cfg.settle.get(),
            wait_timeout: cfg.wait_timeout.get(),
            delete_after: cfg.delete_after_upload,
            delivery: delivery.clone(),
        });
        if !resumed.is_empty() {
            tracing::info!(calls = resumed.len(), "resuming recording pickups left by the previous run");
        }
        for call in resumed {
            let _ = tx.send(call);
        }
        tokio::spawn(async move {
            while let Some(files) = rx.recv().await {
                // Calls in parallel; one call's files strictly in order.
                let worker = worker.clone();
                tokio::spawn(async move { worker.pick_up(files).await });
            }
        });
        Ok(Pickup { tx, delivery })
    }

    /// The promises of finished calls' recordings, each to the sinks of its routes, for the
    /// engine step that ended the calls to store ([`DeliveryHandle::store_step`]); the pickups
    /// start with [`Pickup::release`] once the step is queued (behind the calls' ended events).
    pub(crate) fn promise(&self, recordings: Vec<(RecordingRef, Vec<UploadRoute>)>) -> (Vec<PickupPromise>, Promised) {
        let promises: Vec<PickupPromise> = recordings
            .into_iter()
            .filter(|(_, routes)| !routes.is_empty())
            .map(|(recording, routes)| {
                let RecordingSource::File(file) = recording.source;
                PickupPromise { unique_id: recording.unique_id, file, routes }
            })
            .collect();
        let promised = Promised(by_call(promises.clone()));
        (promises, promised)
    }

    /// Starts the pickups promised.
    pub(crate) fn release(&self, promised: Promised) {
        for call in promised.0 {
            let _ = self.tx.send(call);
        }
    }

    /// Promises recordings to the helpdesk alone (stored before this returns), then
    /// [`Pickup::release`]s them.
    pub async fn submit(&self, recordings: Vec<RecordingRef>) {
        let routed = recordings.into_iter().map(|recording| (recording, vec![UploadRoute::helpdesk()])).collect();
        let (promises, promised) = self.promise(routed);
        if let Err(error) = self.delivery.promise_pickups(promises).await {
            tracing::error!(%error, "cannot store recording pickups; they are still attempted but would not survive a restart");
        }
        self.release(promised);
    }
}

/// Pickups promised and not yet started, per call in the order their recordings were started.
#[must_use = "a promised pickup starts only when released"]
pub(crate) struct Promised(Vec<Vec<PickupPromise>>);

impl Worker {
    /// Picks up one call's files.
    async fn pick_up(&self, files: Vec<PickupPromise>) {
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
        while let Some((PickupPromise { unique_id, file, routes }, outcome)) = waits.next().await {
            let unique_id = unique_id.as_str();
            waiting.add(-1);
            match outcome {
                Ok(ready) => {
                    // A file several sinks read is kept: none of them can tell when all are done.
                    let delete_after = self.delete_after && routes.len() == 1;
                    let uploads = routes
                        .iter()
                        .map(|route| route.request(unique_id, PathBuf::from(&ready.path), delete_after))
                        .collect();
                    match self.delivery.enqueue_pickup(uploads, unique_id, &file).await {
                        Ok(()) => {
                            metrics::counter!("deskhook_recordings_queued_total", "Recordings handed to the outbox.")
                                .inc();
                            tracing::info!(unique_id, file = %ready.path.display(), bytes = ready.size, "recording queued for upload");
                        }
                        // The promise stays: the next start tries again.
                        Err(error) => tracing::error!(unique_id, %error, "cannot queue a recording upload"),
                    }
                }
                Err(problem) => {
                    report(unique_id, &problem);
                    self.delivery.forget_pickup(unique_id, &file);
                }
            }
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
