//! A state file's syncer: a thread that takes the disk's time off the file's writer. The writer
//! commits to the WAL without waiting for the disk (a commit survives a crash or `kill -9` of
//! deskhook as soon as it returns); the syncer fsyncs the WAL right after a commit when the
//! disk has been quiet, and at most every [`SYNC_EVERY`] under load, so many commits share one
//! fsync and a power cut loses at most the last half second. It also copies the WAL into the
//! database file (a checkpoint) on a connection of its own, so the writer never does that
//! inline either: after the first fsync that follows a quiet spell, then at most every
//! [`CHECKPOINT_EVERY`] under load (a busy outbox rewrites the same few pages with every
//! commit, and each checkpoint copies and fsyncs them again), and once the commits stop.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::metrics::Counter;

/// The longest a commit waits for its fsync under load (and so what a power cut can lose).
pub(crate) const SYNC_EVERY: Duration = Duration::from_millis(500);
/// Under load, the WAL is copied into the database file at most this often; a checkpoint still
/// owed when the commits stop is done this long after the last one.
pub(crate) const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// A checkpoint that finds the database busy waits this long for its turn.
const CHECKPOINT_BUSY_TIMEOUT: Duration = Duration::from_millis(200);
/// While fsyncs keep failing, the error is logged again this often.
const FAILURE_REMINDER: Duration = Duration::from_secs(60);

/// The writer's handle on its syncer thread.
pub(crate) struct Syncer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A syncer that could not start.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SyncerError {
    #[error("{path}: {source}")]
    Open { path: String, source: rusqlite::Error },
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// fsyncs of the WAL done (read by the tests).
    syncs: AtomicU64,
    /// Checkpoints done (read by the tests).
    checkpoints: AtomicU64,
    /// Times a commit woke the syncer (read by the tests).
    wakes: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Commits reached the WAL since the last fsync began.
    dirty: bool,
    /// The syncer waits for a commit (rather than for its next sync to be due).
    idle: bool,
    stop: bool,
}

impl Syncer {
    /// Starts the syncer (thread `name`) of the SQLite file at `db_path`, whose writer commits
    /// with [`super::relax_for_syncer`]; a failed fsync is counted in `failures`.
    pub(crate) fn spawn(name: &str, db_path: &Path, failures: &'static Counter) -> Result<Syncer, SyncerError> {
        let conn = super::open_reader(db_path, CHECKPOINT_BUSY_TIMEOUT)
            .map_err(|source| SyncerError::Open { path: db_path.display().to_string(), source })?;
        let mut wal = db_path.as_os_str().to_owned();
        wal.push("-wal");
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            wake: Condvar::new(),
            syncs: AtomicU64::new(0),
            checkpoints: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
        });
        let mut work = Work {
            shared: shared.clone(),
            conn,
            wal: PathBuf::from(wal),
            path: db_path.display().to_string(),
            failures,
            failing: false,
            reminded: Instant::now(),
            last_checkpoint: None,
            checkpoint_owed: false,
        };
        let thread =
            std::thread::Builder::new().name(name.into()).spawn(move || work.run()).map_err(SyncerError::Thread)?;
        Ok(Syncer { shared, thread: Some(thread) })
    }

    /// A commit reached the WAL: have it fsynced. Costs an uncontended lock, and a wake-up of
    /// the syncer only when it is idle (under load it wakes by itself when the next sync is due).
    pub(crate) fn committed(&self) {
        let mut state = self.shared.lock();
        if !state.dirty {
            state.dirty = true;
            if state.idle {
                self.shared.wakes.fetch_add(1, Ordering::Relaxed);
                self.shared.wake.notify_one();
            }
        }
    }

    /// How many times the WAL has been fsynced.
    #[cfg(test)]
    pub(crate) fn syncs(&self) -> u64 {
        self.shared.syncs.load(Ordering::Relaxed)
    }

    /// Fsyncs and checkpoints what is committed, at once, and ends the thread.
    pub(crate) fn finish(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("a syncer thread panicked; the last commits may not be on disk yet");
            }
        }
    }
}

impl Drop for Syncer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The syncer thread's side.
struct Work {
    shared: Arc<Shared>,
    /// Its own connection, for checkpoints.
    conn: Connection,
    wal: PathBuf,
    path: String,
    failures: &'static Counter,
    /// The last fsync failed.
    failing: bool,
    reminded: Instant,
    /// When the WAL was last copied into the database file (None: not yet).
    last_checkpoint: Option<Instant>,
    /// Fsynced commits wait for that copy.
    checkpoint_owed: bool,
}

impl Work {
    fn run(&mut self) {
        // A first commit is synced at once: the disk has been quiet.
        let mut next_sync = Instant::now();
        loop {
            let mut state = self.shared.lock();
            // Under load, commits gather until the next sync is due; they do not wake the
            // thread meanwhile (only an idle syncer is woken).
            while !state.stop {
                let now = Instant::now();
                if now >= next_sync {
                    break;
                }
                state = match self.shared.wake.wait_timeout(state, next_sync - now) {
                    Ok((state, _)) => state,
                    Err(poisoned) => poisoned.into_inner().0,
                };
            }
            if !state.dirty && !state.stop {
                state.idle = true;
                while !state.dirty && !state.stop {
                    if !self.checkpoint_owed {
                        state = self.shared.wake.wait(state).unwrap_or_else(|poisoned| poisoned.into_inner());
                        continue;
                    }
                    // The commits stopped: what the WAL holds goes into the database file once
                    // the disk has been quiet for a while.
                    let timed_out;
                    (state, timed_out) = match self.shared.wake.wait_timeout(state, CHECKPOINT_EVERY) {
                        Ok((state, result)) => (state, result.timed_out()),
                        Err(poisoned) => {
                            let (state, result) = poisoned.into_inner();
                            (state, result.timed_out())
                        }
                    };
                    if timed_out && !state.dirty && !state.stop {
                        drop(state);
                        self.checkpoint();
                        state = self.shared.lock();
                    }
                }
                state.idle = false;
                // A commit soon after the last sync waits for the next one to be due.
                continue;
            }
            let stopping = state.stop;
            let dirty = std::mem::take(&mut state.dirty);
            drop(state);
            if dirty {
                if self.sync() {
                    self.checkpoint_owed = true;
                } else {
                    // Tried again at the next round; the commits stay in the WAL meanwhile.
                    self.shared.lock().dirty = true;
                }
            }
            let checkpoint_due = self.last_checkpoint.is_none_or(|at| at.elapsed() >= CHECKPOINT_EVERY);
            if self.checkpoint_owed && (checkpoint_due || stopping) {
                self.checkpoint();
            }
            next_sync = Instant::now() + SYNC_EVERY;
            if stopping {
                return;
            }
        }
    }

    /// Fsyncs the WAL. Returns whether it worked.
    fn sync(&mut self) -> bool {
        let synced = match std::fs::File::open(&self.wal) {
            Ok(file) => file.sync_data(),
            // No WAL: every commit is in the database file already.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error),
        };
        if let Err(error) = synced {
            self.failures.inc();
            let first = !std::mem::replace(&mut self.failing, true);
            if first || self.reminded.elapsed() >= FAILURE_REMINDER {
                self.reminded = Instant::now();
                tracing::error!(
                    path = %self.path,
                    %error,
                    "cannot fsync a state file's WAL (is the disk failing?); its commits are safe from a crash of \
                     deskhook but not yet from a power cut, and the fsync is tried again"
                );
            }
            return false;
        }
        if std::mem::take(&mut self.failing) {
            tracing::warn!(path = %self.path, "the state file's WAL is fsynced again");
        }
        self.shared.syncs.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Copies the WAL into the database file (and fsyncs that).
    fn checkpoint(&mut self) {
        // The checkpoint syncs the WAL too, but only when it can copy frames (a reader holding an
        // old snapshot stops it), hence `sync`'s own fsync. PASSIVE never waits for readers or the
        // writer: what they hold is copied next time.
        let checkpoint = self.conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| row.get::<_, i64>(0));
        if let Err(error) = checkpoint {
            tracing::debug!(path = %self.path, %error, "checkpoint skipped");
        }
        self.shared.checkpoints.fetch_add(1, Ordering::Relaxed);
        self.last_checkpoint = Some(Instant::now());
        self.checkpoint_owed = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store as the writer keeps it: WAL, commits not fsynced, no checkpoints of its own.
    fn store(dir: &Path) -> (PathBuf, Connection) {
        let path = dir.join("store.sqlite");
        let (conn, _) = super::super::open_durable(&path).expect("opens");
        super::super::relax_for_syncer(&conn).expect("relaxed");
        conn.execute_batch("CREATE TABLE t (x INTEGER);").expect("schema");
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())).expect("schema in the database file");
        (path, conn)
    }

    /// The rows of the database file alone, as a power cut that lost the WAL would leave it.
    fn rows_in_database_file(path: &Path) -> i64 {
        let copy = tempfile::tempdir().expect("tempdir");
        let alone = copy.path().join("alone.sqlite");
        std::fs::copy(path, &alone).expect("copy");
        let conn = Connection::open(&alone).expect("opens");
        conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0)).unwrap_or(-1)
    }

    fn test_failures() -> &'static Counter {
        crate::metrics::counter!("deskhook_test_sync_failures_total", "fsyncs failed in the syncer's tests")
    }

    fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn a_commit_after_a_quiet_spell_is_fsynced_and_checkpointed_without_a_wait() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, conn) = store(dir.path());
        let syncer = Syncer::spawn("test-sync", &path, test_failures()).expect("spawns");
        conn.execute("INSERT INTO t VALUES (1)", []).expect("insert");
        assert_eq!(rows_in_database_file(&path), 0, "a commit stays in the WAL until the syncer runs");
        syncer.committed();
        wait_for("the first sync", || syncer.syncs() == 1);
        wait_for("the checkpoint", || rows_in_database_file(&path) == 1);
        syncer.finish();
    }

    #[test]
    fn a_burst_of_commits_shares_a_few_fsyncs_and_finish_leaves_all_on_disk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, conn) = store(dir.path());
        let syncer = Syncer::spawn("test-sync", &path, test_failures()).expect("spawns");
        let commits = 300;
        for x in 0..commits {
            conn.execute("INSERT INTO t VALUES (?1)", [x]).expect("insert");
            syncer.committed();
        }
        let syncs = syncer.syncs();
        assert!(syncs < commits / 10, "{syncs} fsyncs for {commits} commits");
        // Nothing is waiting: finishing syncs and checkpoints at once, not after SYNC_EVERY.
        syncer.finish();
        assert_eq!(rows_in_database_file(&path), commits as i64);
    }

    #[test]
    fn commits_while_a_sync_is_due_do_not_wake_the_syncer() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, conn) = store(dir.path());
        let syncer = Syncer::spawn("test-sync", &path, test_failures()).expect("spawns");
        let wakes = || syncer.shared.wakes.load(Ordering::Relaxed);
        conn.execute("INSERT INTO t VALUES (0)", []).expect("insert");
        syncer.committed();
        wait_for("the first sync", || syncer.syncs() == 1);
        assert_eq!(wakes(), 1, "the idle syncer was woken by the first commit");
        // Right after a sync the next is not due for SYNC_EVERY: commits meanwhile only mark it.
        for x in 1..=50 {
            conn.execute("INSERT INTO t VALUES (?1)", [x]).expect("insert");
            syncer.committed();
        }
        wait_for("the second sync, when due", || syncer.syncs() == 2);
        assert_eq!(wakes(), 1, "the syncer woke by itself for the second sync");
        syncer.finish();
        assert_eq!(rows_in_database_file(&path), 51);
    }

    #[test]
    fn under_load_checkpoints_are_spaced_and_one_owed_is_done_once_the_commits_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, conn) = store(dir.path());
        let syncer = Syncer::spawn("test-sync", &path, test_failures()).expect("spawns");
        let checkpoints = || syncer.shared.checkpoints.load(Ordering::Relaxed);
        conn.execute("INSERT INTO t VALUES (1)", []).expect("insert");
        syncer.committed();
        wait_for("the first checkpoint", || checkpoints() == 1);
        // The next commits are fsynced as before, but stay in the WAL: a checkpoint was just done.
        for round in 2..=3 {
            let syncs = syncer.syncs();
            conn.execute("INSERT INTO t VALUES (?1)", [round]).expect("insert");
            syncer.committed();
            wait_for("the commit's fsync", || syncer.syncs() > syncs);
        }
        let since_first = Instant::now();
        assert_eq!(checkpoints(), 1, "no checkpoint within CHECKPOINT_EVERY of the last one");
        assert_eq!(rows_in_database_file(&path), 1);
        // With no more commits, the owed checkpoint follows by itself.
        wait_for("the owed checkpoint", || checkpoints() == 2);
        assert!(since_first.elapsed() < CHECKPOINT_EVERY * 2);
        assert_eq!(rows_in_database_file(&path), 3);
        syncer.finish();
    }

    #[test]
    fn without_commits_the_syncer_never_fsyncs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (path, _conn) = store(dir.path());
        let syncer = Syncer::spawn("test-sync", &path, test_failures()).expect("spawns");
        let shared = syncer.shared.clone();
        syncer.finish();
        assert_eq!(shared.syncs.load(Ordering::Relaxed), 0);
    }
}
