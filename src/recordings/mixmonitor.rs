//! When is a MixMonitor file complete? Asterisk closes it when the call's audio ends: a close
//! seen by the shared [`CloseWatch`] after the file's last write completes it at once; without
//! one (a close before its directory was watched, or no inotify), a file unchanged for
//! `settle` is complete. The path is confined to `recordings.dirs` once, when the file is first
//! found; after that only `stat` runs, once per check, and checks are spaced by `settle`.
//! A file still incomplete after `timeout` is given up.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::closes::CloseWatch;
use super::safety::{AllowedDirs, PickupError};

/// A complete recording, confined to the allowed directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileReady {
    pub path: PathBuf,
    pub size: u64,
}

/// How often a file that does not exist yet is looked for.
const LOOK_FOR_MISSING: Duration = Duration::from_secs(1);

/// Waits until the recording `raw` (as Asterisk named it) is complete and returns its real path.
pub(crate) async fn wait_until_complete(
    closes: &CloseWatch,
    allowed: &AllowedDirs,
    raw: &str,
    settle: Duration,
    timeout: Duration,
) -> Result<FileReady, PickupError> {
    let outcome = wait(closes, allowed, raw, settle, timeout).await;
    closes.done_with(Path::new(raw));
    outcome
}

async fn wait(
    closes: &CloseWatch,
    allowed: &AllowedDirs,
    raw: &str,
    settle: Duration,
    timeout: Duration,
) -> Result<FileReady, PickupError> {
    let deadline = Instant::now() + timeout;
    let raw_path = Path::new(raw);
    // The real path once the file exists; a refused path ends the wait.
    let find = || match allowed.confine(raw) {
        Ok(path) => Ok(Some(path)),
        Err(PickupError::Missing(_)) => Ok(None),
        Err(refused) => Err(refused),
    };
    // Refused paths are refused before anything is watched for them.
    let mut real = find()?;
    let mut just_looked = true;
    if let Some(parent) = raw_path.parent() {
        closes.watch_dir(parent);
    }
    let mut last_seen: Option<(u64, Option<SystemTime>)> = None;
    let mut stable_since = Instant::now();
    loop {
        // Registered before looking, so a close in between is not missed.
        let next_close = closes.next_close(raw_path);
        if real.is_none() && !std::mem::take(&mut just_looked) {
            real = find()?;
        }
        let mut next_check = Instant::now() + LOOK_FOR_MISSING;
        if let Some(path) = &real {
            let meta = std::fs::symlink_metadata(path)
                .map_err(|error| PickupError::Io { path: raw.to_string(), message: error.to_string() })?;
            if !meta.is_file() {
                return Err(PickupError::Io { path: raw.to_string(), message: "no longer a regular file".into() });
            }
            let modified = meta.modified().ok();
            let seen = (meta.len(), modified);
            if last_seen != Some(seen) {
                last_seen = Some(seen);
                stable_since = Instant::now();
            }
            let closed_after_last_write = match (closes.closed_at(raw_path), modified) {
                (Some(closed), Some(modified)) => closed >= modified,
                (Some(_), None) => true,
                (None, _) => false,
            };
            // A file last written long ago (a pickup resumed after a restart) needs no wait.
            let quiet_for =
                modified.and_then(|modified| SystemTime::now().duration_since(modified).ok()).unwrap_or_default();
            let unchanged_for = stable_since.elapsed().max(quiet_for);
            if closed_after_last_write || unchanged_for >= settle {
                if seen.0 == 0 {
                    return Err(PickupError::Empty(raw.to_string()));
                }
                return Ok(FileReady { path: path.clone(), size: seen.0 });
            }
            next_check = Instant::now() + (settle - unchanged_for);
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(match last_seen {
                Some(_) => PickupError::Incomplete { path: raw.to_string(), waited_secs: timeout.as_secs() },
                None => PickupError::Missing(raw.to_string()),
            });
        }
        tokio::select! {
            _ = next_close => {}
            _ = tokio::time::sleep_until(next_check.min(deadline)) => {}
        }
    }
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
        let closes = CloseWatch::start();
        let ready =
            wait_until_complete(&closes, &allowed, &raw, Duration::from_secs(30), Duration::from_secs(20)).await;
        writer.await.expect("writer");
        let ready = ready.expect("complete");
        assert_eq!(ready.size, 5000);
    }

    #[tokio::test]
    async fn a_close_seen_before_the_pickup_makes_the_file_ready_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = AllowedDirs::new(&[dir.path().to_path_buf()]);
        let closes = CloseWatch::start();
        // The first pickup in the directory starts watching it.
        let first = dir.path().join("first.wav");
        std::fs::write(&first, [1u8; 10]).expect("write");
        let first = first.to_str().expect("utf-8").to_string();
        let ready = wait_until_complete(&closes, &allowed, &first, Duration::from_millis(50), Duration::from_secs(10));
        assert_eq!(ready.await.expect("complete").size, 10);
        // A later call's file is written and closed before its pickup starts.
        let later = dir.path().join("later.wav");
        std::fs::write(&later, [2u8; 20]).expect("write");
        let later = later.to_str().expect("utf-8").to_string();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while closes.closed_at(Path::new(&later)).is_none() {
            assert!(std::time::Instant::now() < deadline, "the close was never seen");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // A settle of an hour: only the close can make it ready now.
        let ready = tokio::time::timeout(
            Duration::from_secs(5),
            wait_until_complete(&closes, &allowed, &later, Duration::from_secs(3600), Duration::from_secs(7200)),
        )
        .await
        .expect("ready without settling");
        assert_eq!(ready.expect("complete").size, 20);
        // Written to again after the close: the old close no longer counts.
        let reopened = dir.path().join("reopened.wav");
        std::fs::write(&reopened, [3u8; 5]).expect("write");
        let reopened_raw = reopened.to_str().expect("utf-8").to_string();
        while closes.closed_at(&reopened).is_none() {
            assert!(std::time::Instant::now() < deadline, "the close was never seen");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let mut file = std::fs::OpenOptions::new().append(true).open(&reopened).expect("open");
        std::thread::sleep(Duration::from_millis(20));
        file.write_all(&[4u8; 5]).expect("append");
        let waiting =
            wait_until_complete(&closes, &allowed, &reopened_raw, Duration::from_secs(3600), Duration::from_secs(7200));
        let still_open = tokio::time::timeout(Duration::from_millis(300), waiting).await;
        assert!(still_open.is_err(), "a file written after its close is not complete: {still_open:?}");
        drop(file);
    }

    #[tokio::test]
    async fn an_already_closed_file_is_ready_after_settling() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = AllowedDirs::new(&[dir.path().to_path_buf()]);
        let path = dir.path().join("done.wav");
        // Unchanged for `settle` since its last write, which is no earlier than this.
        let started = std::time::Instant::now();
        std::fs::write(&path, vec![1u8; 44]).expect("write");
        let ready = wait_until_complete(
            &CloseWatch::start(),
            &allowed,
            path.to_str().expect("utf-8"),
            Duration::from_millis(300),
            Duration::from_secs(10),
        )
        .await
        .expect("complete");
        assert_eq!(ready.size, 44);
        // File times are coarse (a kernel tick, a few ms): allow for that, not for more.
        assert!(started.elapsed() >= Duration::from_millis(280), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn missing_empty_and_refused_files_give_up_with_a_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = AllowedDirs::new(&[dir.path().to_path_buf()]);
        let closes = CloseWatch::start();
        let missing = format!("{}/never.wav", dir.path().display());
        let result =
            wait_until_complete(&closes, &allowed, &missing, Duration::from_millis(100), Duration::from_millis(500))
                .await;
        assert_eq!(result, Err(PickupError::Missing(missing)));

        let empty = dir.path().join("empty.wav");
        std::fs::write(&empty, b"").expect("write");
        let result = wait_until_complete(
            &closes,
            &allowed,
            empty.to_str().expect("utf-8"),
            Duration::from_millis(100),
            Duration::from_secs(5),
        )
        .await;
        assert!(matches!(result, Err(PickupError::Empty(_))), "{result:?}");

        let result =
            wait_until_complete(&closes, &allowed, "/etc/passwd", Duration::from_millis(100), Duration::from_secs(5))
                .await;
        assert!(matches!(result, Err(PickupError::OutsideDirs { .. })), "{result:?}");
    }
}
