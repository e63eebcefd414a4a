//! The local call history: `history.sqlite3` in `storage.dir`, written on every deskhook
//! whatever `[storage] history` says. It answers `/forward` alone when there is no shared
//! database (or it is down), and it is the queue of rows not yet copied to the shared one
//! (`shared_pending`), so a restart or `kill -9` loses no row it had committed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{HistoryError, HistoryRow, LastOperator};
use crate::ari::events::EpochMillis;
use crate::sqlite::Commits;

/// How long a history connection waits for the other's lock: well inside /forward's budget.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// The history file inside `storage.dir`.
pub(crate) const HISTORY_FILE: &str = "history.sqlite3";

#[derive(Debug)]
pub(super) struct LocalStore {
    path: PathBuf,
    // WAL lets the reader answer `/forward` while the writer records calls.
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

impl LocalStore {
    /// Opens (creating when absent) `dir/history.sqlite3`.
    pub(super) fn open(dir: &Path) -> Result<LocalStore, HistoryError> {
        let path = dir.join(HISTORY_FILE);
        std::fs::create_dir_all(dir).map_err(|source| HistoryError::CreateDir { path: path.clone(), source })?;
        let open_error = |source| HistoryError::Open { path: path.clone(), source };
        // A cache (losing the newest rows to a power loss costs little), read within /forward's
        // budget; a crash of deskhook loses no committed row.
        let (writer, _mode) = crate::sqlite::open(&path, Commits::Relaxed, BUSY_TIMEOUT).map_err(open_error)?;
        writer
            .execute_batch(
                "CREATE TABLE IF NOT EXISTS calls (
                     unique_id TEXT PRIMARY KEY,
                     client    TEXT NOT NULL,
                     operator  TEXT NOT NULL,
                     direction TEXT NOT NULL,
                     ended_at  INTEGER NOT NULL,
                     duration  INTEGER NOT NULL
                 );
                 CREATE INDEX IF NOT EXISTS calls_by_client ON calls (client, ended_at);
                 CREATE INDEX IF NOT EXISTS calls_by_age ON calls (ended_at);
                 -- Calls not yet copied to the shared history, in the order they were recorded.
                 CREATE TABLE IF NOT EXISTS shared_pending (
                     seq       INTEGER PRIMARY KEY AUTOINCREMENT,
                     unique_id TEXT NOT NULL
                 );",
            )
            .map_err(open_error)?;
        let reader = crate::sqlite::open_reader(&path, BUSY_TIMEOUT).map_err(open_error)?;
        Ok(LocalStore { path, writer: Mutex::new(writer), reader: Mutex::new(reader) })
    }

    /// Stores `rows` in one transaction; `share` also queues them for the shared history. A call
    /// already stored keeps its first record: a second one only comes from a call ended again
    /// after a restart (deskhook was killed between the call's end and the commit that closed
    /// its checkpoint), and that one knows less than the call seen live.
    pub(super) fn insert(&self, rows: &[HistoryRow], share: bool) -> Result<(), HistoryError> {
        let mut writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let transaction = writer.transaction().map_err(|source| self.error(source))?;
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT OR IGNORE INTO calls (unique_id, client, operator, direction, ended_at, duration)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(|source| self.error(source))?;
            let mut queue = transaction
                .prepare_cached("INSERT INTO shared_pending (unique_id) VALUES (?1)")
                .map_err(|source| self.error(source))?;
            for row in rows {
                let inserted = insert
                    .execute(params![
                        row.unique_id,
                        row.client,
                        row.operator,
                        row.direction.as_str(),
                        row.ended_at,
                        row.talk_seconds
                    ])
                    .map_err(|source| self.error(source))?;
                if share && inserted > 0 {
                    queue.execute(params![row.unique_id]).map_err(|source| self.error(source))?;
                }
            }
        }
        transaction.commit().map_err(|source| self.error(source))
    }

    /// The most recent call with `client` (normalised) that ended at or after `since`.
    pub(super) fn last_operator(&self, client: &str, since: EpochMillis) -> Result<Option<LastOperator>, HistoryError> {
        let reader = self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        reader
            .prepare_cached(
                "SELECT operator, ended_at, unique_id FROM calls
                 WHERE client = ?1 AND ended_at >= ?2 ORDER BY ended_at DESC LIMIT 1",
            )
            .and_then(|mut select| {
                select
                    .query_row(params![client, since], |row| {
                        Ok(LastOperator {
                            extension: row.get(0)?,
                            ended_at: row.get(1)?,
                            unique_id: row.get(2)?,
                            pbx: None,
                        })
                    })
                    .optional()
            })
            .map_err(|source| self.error(source))
    }

    /// Deletes calls that ended before `before` (and their places in the shared queue);
    /// returns how many calls.
    pub(super) fn prune(&self, before: EpochMillis) -> Result<usize, HistoryError> {
        let writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let deleted = writer
            .execute("DELETE FROM calls WHERE ended_at < ?1", params![before])
            .map_err(|source| self.error(source))?;
        if deleted > 0 {
            writer
                .execute("DELETE FROM shared_pending WHERE unique_id NOT IN (SELECT unique_id FROM calls)", [])
                .map_err(|source| self.error(source))?;
        }
        Ok(deleted)
    }

    /// Up to `limit` calls waiting for the shared history, oldest first, each once, with the
    /// queue position up to which they cover it (`None`: the queue is empty).
    pub(super) fn pending(&self, limit: usize) -> Result<(Vec<HistoryRow>, Option<i64>), HistoryError> {
        let writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut select = writer
            .prepare_cached(
                "SELECT p.seq, c.unique_id, c.client, c.operator, c.direction, c.ended_at, c.duration
                 FROM shared_pending p LEFT JOIN calls c ON c.unique_id = p.unique_id
                 ORDER BY p.seq LIMIT ?1",
            )
            .map_err(|source| self.error(source))?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut rows = select.query(params![limit]).map_err(|source| self.error(source))?;
        let (mut found, mut last, mut seen) = (Vec::new(), None, std::collections::HashSet::new());
        while let Some(row) = rows.next().map_err(|source| self.error(source))? {
            last = Some(row.get::<_, i64>(0).map_err(|source| self.error(source))?);
            // A call pruned since it was queued has nothing left to copy.
            let Some(unique_id) = row.get::<_, Option<String>>(1).map_err(|source| self.error(source))? else {
                continue;
            };
            // A call recorded twice (re-derived after a restart) is copied once, as it is now.
            if !seen.insert(unique_id.clone()) {
                continue;
            }
            let direction: String = row.get(4).map_err(|source| self.error(source))?;
            found.push(HistoryRow {
                unique_id,
                client: row.get(2).map_err(|source| self.error(source))?,
                operator: row.get(3).map_err(|source| self.error(source))?,
                direction: super::Direction::parse(&direction),
                ended_at: row.get(5).map_err(|source| self.error(source))?,
                talk_seconds: row.get(6).map_err(|source| self.error(source))?,
            });
        }
        Ok((found, last))
    }

    /// Takes the queue up to and including position `up_to` off: it reached the shared history.
    pub(super) fn forget_pending(&self, up_to: i64) -> Result<(), HistoryError> {
        let writer = self.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writer
            .execute("DELETE FROM shared_pending WHERE seq <= ?1", params![up_to])
            .map(drop)
            .map_err(|source| self.error(source))
    }

    /// How many calls wait for the shared history.
    pub(super) fn pending_count(&self) -> Result<u64, HistoryError> {
        let reader = self.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        reader
            .query_row("SELECT COUNT(*) FROM shared_pending", [], |row| row.get::<_, i64>(0))
            .map(|count| u64::try_from(count).unwrap_or_default())
            .map_err(|source| self.error(source))
    }

    fn error(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Sqlite { path: self.path.clone(), source }
    }
}
