//! Which recordings Asterisk has closed: one inotify instance for every MixMonitor directory
//! (`IN_CLOSE_WRITE`, or a file moved into place), read on the tokio runtime, with no thread
//! or watcher per file. A directory is watched from the first pickup in it on, so the files of
//! later calls are usually seen closed before their pickup starts and need one `stat` then.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures_util::StreamExt;
use inotify::{EventMask, EventStream, Inotify, WatchDescriptor, WatchMask, Watches};
use tokio::sync::oneshot;

/// A directory with no pickup for this long is no longer watched.
const DIR_IDLE: Duration = Duration::from_secs(3600);
/// Closes are remembered this long (a call's pickup starts within seconds of its hangup).
const REMEMBER_CLOSES: Duration = Duration::from_secs(600);
/// Past this many remembered closes, the old ones are forgotten at once.
const MAX_CLOSES: usize = 50_000;

/// The shared close watcher; cheap to clone.
#[derive(Clone)]
pub(crate) struct CloseWatch {
    registry: Arc<Mutex<Registry>>,
}

struct Registry {
    /// `None` when inotify is unavailable: completeness is then judged by quiet time alone.
    watches: Option<Watches>,
    /// Watched directory (as MixMonitor names it) → its watch and when a pickup last used it.
    /// Symlinks give one inode several names: they share a watch descriptor.
    dirs: HashMap<PathBuf, (WatchDescriptor, Instant)>,
    /// Files seen closed after writing, and when.
    closed: HashMap<PathBuf, SystemTime>,
    /// Pickups waiting for a file's close.
    waiters: HashMap<PathBuf, Vec<oneshot::Sender<()>>>,
}

impl CloseWatch {
    /// Starts the watcher on the current tokio runtime. Without inotify (its limits reached, or
    /// not Linux) it still works, and files count as complete once quiet for `settle`.
    pub(crate) fn start() -> CloseWatch {
        let mut registry =
            Registry { watches: None, dirs: HashMap::new(), closed: HashMap::new(), waiters: HashMap::new() };
        let inotify = Inotify::init().and_then(|inotify| {
            let watches = inotify.watches();
            inotify.into_event_stream(vec![0u8; 16 * 1024]).map(|stream| (stream, watches))
        });
        let reader = match inotify {
            Ok((stream, watches)) => {
                registry.watches = Some(watches);
                Some(stream)
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    "cannot watch recording directories (inotify); recordings count as complete once unchanged for \
                     recordings.settle"
                );
                None
            }
        };
        let watch = CloseWatch { registry: Arc::new(Mutex::new(registry)) };
        if let Some(stream) = reader {
            tokio::spawn(read_closes(stream, watch.clone()));
        }
        watch
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Watches `dir` for closes (again marked in use if it already is).
    pub(crate) fn watch_dir(&self, dir: &Path) {
        let mut registry = self.lock();
        let now = Instant::now();
        if let Some((_, used)) = registry.dirs.get_mut(dir) {
            *used = now;
            return;
        }
        registry.forget_idle_dirs(now);
        let Some(mut watches) = registry.watches.clone() else { return };
        match watches.add(dir, WatchMask::CLOSE_WRITE | WatchMask::MOVED_TO | WatchMask::ONLYDIR) {
            Ok(wd) => {
                registry.dirs.insert(dir.to_path_buf(), (wd, now));
            }
            Err(error) => {
                tracing::debug!(dir = %dir.display(), %error, "recording directory not watched; judging files by quiet time")
            }
        }
    }

    /// When `path` was last seen closed after writing.
    pub(crate) fn closed_at(&self, path: &Path) -> Option<SystemTime> {
        self.lock().closed.get(path).copied()
    }

    /// Resolves when `path` is next seen closed (never, if its directory is not watched).
    pub(crate) fn next_close(&self, path: &Path) -> oneshot::Receiver<()> {
        let (tx, rx) = oneshot::channel();
        let mut registry = self.lock();
        let waiting = registry.waiters.entry(path.to_path_buf()).or_default();
        waiting.retain(|waiter| !waiter.is_closed());
        waiting.push(tx);
        rx
    }

    /// The pickup of `path` is over: it needs neither its close nor waiters any more.
    pub(crate) fn done_with(&self, path: &Path) {
        let mut registry = self.lock();
        registry.closed.remove(path);
        registry.waiters.remove(path);
    }

    fn on_events(&self, events: Vec<(WatchDescriptor, EventMask, Option<OsString>)>) {
        let mut registry = self.lock();
        let now = SystemTime::now();
        for (wd, mask, name) in events {
            if mask.contains(EventMask::IGNORED) {
                // The directory was removed (or unwatched): forget its watch.
                registry.dirs.retain(|_, (watched, _)| *watched != wd);
                continue;
            }
            if !mask.intersects(EventMask::CLOSE_WRITE | EventMask::MOVED_TO) {
                continue;
            }
            let Some(name) = name else { continue };
            let dirs: Vec<PathBuf> =
                registry.dirs.iter().filter(|(_, (watched, _))| *watched == wd).map(|(dir, _)| dir.clone()).collect();
            for dir in dirs {
                let path = dir.join(&name);
                for waiter in registry.waiters.remove(&path).unwrap_or_default() {
                    let _ = waiter.send(());
                }
                registry.closed.insert(path, now);
            }
        }
        if registry.closed.len() > MAX_CLOSES {
            registry.closed.retain(|_, at| now.duration_since(*at).unwrap_or_default() < REMEMBER_CLOSES);
            if registry.closed.len() > MAX_CLOSES {
                registry.closed.clear();
            }
        }
    }
}

impl Registry {
    fn forget_idle_dirs(&mut self, now: Instant) {
        let idle: Vec<PathBuf> = self
            .dirs
            .iter()
            .filter(|(_, (_, used))| now.duration_since(*used) >= DIR_IDLE)
            .map(|(dir, _)| dir.clone())
            .collect();
        for dir in idle {
            let Some((wd, _)) = self.dirs.remove(&dir) else { continue };
            // The inode may still be watched under another name.
            if !self.dirs.values().any(|(watched, _)| *watched == wd) {
                if let Some(mut watches) = self.watches.clone() {
                    let _ = watches.remove(wd);
                }
            }
        }
    }
}

/// Reads inotify events as they come, for as long as the runtime runs; each wake-up takes
/// every event already queued.
async fn read_closes(mut stream: EventStream<Vec<u8>>, watch: CloseWatch) {
    while let Some(first) = stream.next().await {
        let mut events = Vec::new();
        let mut next = Some(first);
        while let Some(event) = next.take() {
            match event {
                Ok(event) => events.push((event.wd, event.mask, event.name)),
                Err(error) => {
                    tracing::warn!(%error, "cannot read recording directory events; judging files by quiet time");
                    watch.on_events(events);
                    return;
                }
            }
            next = futures_util::FutureExt::now_or_never(stream.next()).flatten();
        }
        watch.on_events(events);
    }
}
