//! How deskhook opens every SQLite file: WAL so readers never block the writer; for the files
//! that hold its promises (the outbox, the journals) `synchronous = FULL` so a commit survives a
//! power loss — except where a [`Syncer`] fsyncs for the writer (the outbox and the recordings
//! journal, written on every call: at most half a second of commits is exposed to a power cut);
//! for caches (the call history) commits fsynced at checkpoints; and a busy timeout so
//! `deskhook outbox` beside the daemon waits instead of failing.
//! Every state file is private ([`private_file`]): clients' numbers and tokens are in there.

mod syncer;

pub(crate) use syncer::Syncer;

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// How long a connection waits for another one's write lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens (creating if needed) a durable store; returns it with the journal mode SQLite
/// actually chose (`wal` unless the file system cannot do it).
pub(crate) fn open_durable(path: &Path) -> rusqlite::Result<(Connection, String)> {
    open(path, Commits::Durable, BUSY_TIMEOUT)
}

/// How far a commit must have reached when it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Commits {
    /// On disk (fsynced) when the commit returns: the journals written rarely, and the admin
    /// commands' changes. (The outbox and the recordings journal commit `Relaxed` and leave
    /// the fsyncs to a [`Syncer`].)
    Durable,
    /// In the WAL, fsynced at checkpoints: survives a crash of deskhook, maybe not a power
    /// loss; for caches such as the call history, where losing the newest rows costs little.
    Relaxed,
}

/// Opens (creating if needed, private) a state file in WAL mode with `commits` and
/// `busy_timeout`; returns it with the journal mode SQLite actually chose.
pub(crate) fn open(path: &Path, commits: Commits, busy_timeout: Duration) -> rusqlite::Result<(Connection, String)> {
    private_file(path)
        .map_err(|error| rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(14), Some(error.to_string())))?;
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    set_commits(&conn, commits)?;
    Ok((conn, mode))
}

/// Makes the connection's next commits `commits` (`synchronous = FULL` or `NORMAL`).
fn set_commits(conn: &Connection, commits: Commits) -> rusqlite::Result<()> {
    let pragma = match commits {
        Commits::Durable => "PRAGMA synchronous = FULL",
        Commits::Relaxed => "PRAGMA synchronous = NORMAL",
    };
    conn.prepare_cached(pragma)?.execute([]).map(|_| ())
}

/// Makes `conn`, a file's only writer, commit to the WAL without waiting for the disk and
/// never checkpoint inline: its [`Syncer`] does both.
pub(crate) fn relax_for_syncer(conn: &Connection) -> rusqlite::Result<()> {
    set_commits(conn, Commits::Relaxed)?;
    conn.execute_batch("PRAGMA wal_autocheckpoint = 0")
}

/// A second connection to a file already opened with [`open`], for reads beside its writer.
pub(crate) fn open_reader(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(busy_timeout)?;
    Ok(conn)
}

/// Makes `path` (a state file) readable by its owner and group only, whatever the umask:
/// created 0640 when absent, others' access taken away when present (files of older
/// versions). SQLite gives its `-wal` and `-shm` files the database's mode.
pub(crate) fn private_file(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o640).open(path) {
        Ok(_) => Ok(()),
        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
            let mode = std::fs::metadata(path)?.permissions().mode();
            if mode & 0o007 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o7770 & !0o007))?;
            }
            Ok(())
        }
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_durable_store_is_wal_and_fully_synchronous() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (conn, mode) = open_durable(&dir.path().join("store.sqlite")).expect("opens");
        assert_eq!(mode.to_ascii_lowercase(), "wal");
        let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |row| row.get(0)).expect("pragma");
        assert_eq!(synchronous, 2, "FULL");
    }

    #[test]
    fn state_files_are_private_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let made = dir.path().join("made.sqlite");
        let (conn, _) = open_durable(&made).expect("opens");
        conn.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);").expect("write");
        let mode = |path: &Path| std::fs::metadata(path).expect("file").permissions().mode() & 0o777;
        assert_eq!(mode(&made), 0o640);
        let wal = dir.path().join("made.sqlite-wal");
        assert!(!wal.exists() || mode(&wal) & 0o007 == 0, "{:o}", mode(&wal));
        let old = dir.path().join("old.sqlite");
        std::fs::write(&old, b"").expect("write");
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o666)).expect("chmod");
        open_durable(&old).expect("opens");
        assert_eq!(mode(&old), 0o660, "others lose access, the group keeps it");
    }
}
