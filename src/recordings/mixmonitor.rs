//! When is a MixMonitor file complete? Asterisk closes it when the call's audio ends: deskhook
//! waits for that close (inotify via `notify`), falls back to "size and mtime unchanged for
//! `settle`" (a close that happened before the watch began leaves no event), and gives up after
//! `timeout`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::safety::{AllowedDirs, PickupError};

/// A complete recording, confined to the allowed directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileReady {
    pub path: PathBuf,
    pub size: u64,
}

/// How often the size-stable fallback looks at the file.
const POLL: Duration = Duration::from_millis(200);

/// Waits until the recording `raw` (as Asterisk named it) is complete and returns its real path.
pub async fn wait_until_complete(
    allowed: &AllowedDirs,
    raw: &str,
    settle: Duration,
    timeout: Duration,
) -> Result<FileReady, PickupError> {
    let deadline = Instant::now() + timeout;
    let (closed_tx, mut closed_rx) = mpsc::unbounded_channel::<PathBuf>();
    // Keep the watcher alive for the whole wait; without one (no inotify), polling still works.
    let _watcher = watch_parent(Path::new(raw), closed_tx);
    let mut last_seen: Option<(u64, Option<SystemTime>)> = None;
    let mut stable_since = Instant::now();
    let mut closed = false;
    loop {
        match allowed.confine(raw) {
            Ok(path) => {
                let meta = std::fs::metadata(&path)
                    .map_err(|error| PickupError::Io { path: raw.to_string(), message: error.to_string() })?;
                let seen = (meta.len(), meta.modified().ok());
                if last_seen != Some(seen) {
                    last_seen = Some(seen);
                    stable_since = Instant::now();
                }
                if closed || stable_since.elapsed() >= settle {
                    if seen.0 == 0 {
                        return Err(PickupError::Empty(raw.to_string()));
                    }
                    return Ok(FileReady { path, size: seen.0 });
                }
            }
            Err(PickupError::Missing(_)) => {}
            Err(refused) => return Err(refused),
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(match last_seen {
                Some(_) => PickupError::Incomplete { path: raw.to_string(), waited_secs: timeout.as_secs() },
                None => PickupError::Missing(raw.to_string()),
            });
        }
        let wake = (now + POLL).min(deadline);
        tokio::select! {
            Some(path) = closed_rx.recv() => {
                if path == Path::new(raw) || std::fs::canonicalize(&path).ok() == std::fs::canonicalize(raw).ok() {
                    closed = true;
                }
            }
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

/// Watches the file's directory for close-after-write events.
fn watch_parent(path: &Path, closed: mpsc::UnboundedSender<PathBuf>) -> Option<notify::RecommendedWatcher> {
    let parent = path.parent()?;
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            if matches!(event.kind, EventKind::Access(AccessKind::Close(AccessMode::Write))) {
                for path in event.paths {
                    let _ = closed.send(path);
                }
            }
        }
    })
    .ok()?;
    watcher.watch(parent, RecursiveMode::NonRecursive).ok()?;
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[tokio::test]
    async fn a_file_written_slowly_is_ready_when_closed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = AllowedDirs::new(&[dir.path().to_path_buf()]);
        let path = dir.path().join("in-101.wav");
        let raw = path.to_str().expect("utf-8").to_string();
        let writer_path = path.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut file = std::fs::File::create(&writer_path).expect("create");
            for _ in 0..5 {
                file.write_all(&[7u8; 1000]).expect("write");
                file.flush().expect("flush");
                std::thread::sleep(Duration::from_millis(150));
            }
            // dropped here: the close that marks the file complete
        });
        // A long settle: only the close event can finish the wait early.
        let ready = wait_until_complete(&allowed, &raw, Duration::from_secs(30), Duration::from_secs(20)).await;
        writer.await.expect("writer");
        let ready = ready.expect("complete");
        assert_eq!(ready.size, 5000);
    }

    #[tokio::test]
    async fn an_already_closed_file_is_ready_after_settling() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = AllowedDirs::new(&[dir.path().to_path_buf()]);
        let path = dir.path().join("done.wav");
        std::fs::write(&path, vec![1u8; 44]).expect("write");
        let started = std::time::Instant::now();
        let ready = wait_until_complete(
            &allowed,
            path.to_str().expect("utf-8"),
            Duration::from_millis(300),
            Duration::from_secs(10),
        )
        .await
        .expect("complete");
        assert_eq!(ready.size, 44);
        assert!(started.elapsed() >= Duration::from_millis(300));
    }

    #[tokio::test]
    async fn missing_empty_and_refused_files_give_up_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = AllowedDirs::new(&[dir.path().to_path_buf()]);
        let missing = format!("{}/never.wav", dir.path().display());
        let result =
            wait_until_complete(&allowed, &missing, Duration::from_millis(100), Duration::from_millis(500)).await;
        assert_eq!(result, Err(PickupError::Missing(missing)));

        let empty = dir.path().join("empty.wav");
        std::fs::write(&empty, b"").expect("write");
        let result = wait_until_complete(
            &allowed,
            empty.to_str().expect("utf-8"),
            Duration::from_millis(100),
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(result, Err(PickupError::Empty(_))), "{result:?}");

        let result =
            wait_until_complete(&allowed, "/etc/passwd", Duration::from_millis(100), Duration::from_secs(5)).await;
        assert!(matches!(result, Err(PickupError::OutsideDirs { .. })), "{result:?}");
    }
}
