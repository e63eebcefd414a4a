//! How deskhook opens the SQLite files that hold its promises (the outbox, the recordings
//! journals): WAL so readers never block the writer, `synchronous = FULL` so a commit survives
//! a power loss, and a busy timeout so `deskhook outbox` beside the daemon waits instead of failing.

use std::path::Path;
use std::time::Duration;

use rusqlite::Connection;

/// How long a connection waits for another one's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens (creating if needed) a durable store; returns it with the journal mode SQLite
/// actually chose (`wal` unless the file system cannot do it).
pub fn open_durable(path: &Path) -> rusqlite::Result<(Connection, String)> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok((conn, mode))
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
}
