//! One daemon per `storage.dir`: two deskhooks on the same outbox would send every request
//! twice and fight over the calls they resume. `run` holds an exclusive lock on
//! `storage.dir/deskhook.lock` (with its pid inside, for the message) for as long as it runs;
//! the kernel drops it when the process ends, even on `kill -9`.

use std::io::{Read as _, Seek as _, Write as _};
use std::path::{Path, PathBuf};

/// The lock file under `storage.dir`.
pub(crate) const LOCK_FILE: &str = "deskhook.lock";

/// Held while the daemon runs.
#[derive(Debug)]
pub(crate) struct StateLock {
    _file: std::fs::File,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum LockError {
    #[error(
        "another deskhook{holder} is running on storage.dir {dir}; stop it first (systemctl stop deskhook) or give \
         this one its own [storage] dir"
    )]
    Taken { dir: String, holder: String },
    #[error("cannot lock {path}: {source}; check that storage.dir is writable by the deskhook user")]
    Io { path: PathBuf, source: std::io::Error },
}

/// Takes the lock of `dir` (creating both when absent), or says who holds it.
pub(crate) fn lock(dir: &Path) -> Result<StateLock, LockError> {
    let path = dir.join(LOCK_FILE);
    let io = |source| LockError::Io { path: path.clone(), source };
    std::fs::create_dir_all(dir).map_err(io)?;
    crate::sqlite::private_file(&path).map_err(io)?;
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            let pid = pid.trim();
            let holder = if pid.is_empty() { String::new() } else { format!(" (pid {pid})") };
            return Err(LockError::Taken { dir: dir.display().to_string(), holder });
        }
        Err(std::fs::TryLockError::Error(source)) => return Err(io(source)),
    }
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    write!(file, "{}", std::process::id()).map_err(io)?;
    Ok(StateLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_ones_pid_until_it_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = dir.path().join("state");
        let first = lock(&state).expect("the first takes it");
        let refused = lock(&state).expect_err("the second is refused").to_string();
        assert!(refused.contains(&format!("pid {}", std::process::id())), "{refused}");
        assert!(refused.contains("another deskhook") && refused.contains("systemctl stop deskhook"), "{refused}");
        drop(first);
        lock(&state).expect("free again");
    }
}
