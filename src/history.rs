//! deskhook's own call history: which operator last talked with which client number, kept in
//! SQLite (`history.sqlite3` in `storage.dir`) as answered calls end. The `history` resolver
//! of `/forward` reads it. One small insert per ended call; rows older than a year are pruned.
//!
//! Only the ended events of answered calls are stored (they name the operator who talked):
//! incoming: client = `from_user`, operator = `to_user`; outgoing: the reverse. The client
//! number is stored normalised, so every spelling of it finds the same rows.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::ari::events::EpochMillis;
use crate::calls::{CallDirection, CallEvent};
use crate::numbers::is_valid_extension;
use crate::numbers::PhoneNormalizer;
use crate::sqlite::Commits;
use crate::wallclock::now_ms as now_millis;

/// How long a history connection waits for the other's lock: well inside /forward's budget.
const BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// The history file inside `storage.dir`.
pub const HISTORY_FILE: &str = "history.sqlite3";
/// Rows older than this are deleted: no `history.max_age_days` reaches that far back usefully.
pub const RETENTION: Duration = Duration::from_secs(366 * 86_400);
/// Old rows are pruned once per this many inserts (and at open).
const PRUNE_EVERY: u64 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("call history {}: cannot open it ({source}); check that storage.dir exists and deskhook may write there", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("call history {}: cannot create storage.dir ({source}); create it or fix its permissions", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("call history {}: {source}", path.display())]
    Sqlite { path: PathBuf, source: rusqlite::Error },
}

/// The operator who most recently talked with a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastOperator {
    pub extension: String,
    /// When that call ended (Asterisk's clock, epoch milliseconds).
    pub ended_at: EpochMillis,
    pub unique_id: String,
}

/// A handle on the history database; clones share it.
#[derive(Debug, Clone)]
pub struct History {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    // WAL lets the reader answer `/forward` while the writer records a call.
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    phones: PhoneNormalizer,
    inserts: AtomicU64,
}

impl History {
    /// Opens (creating when absent) `dir/history.sqlite3`; client numbers are normalised with `phones`.
    pub fn open(dir: &Path, phones: PhoneNormalizer) -> Result<History, HistoryError> {
        let path = dir.join(HISTORY_FILE);
        std::fs::create_dir_all(dir).map_err(|source| HistoryError::CreateDir { path: path.clone(), source })?;
        let open_error = |source| HistoryError::Open { path: path.clone(), source };
        // A cache (losing the newest rows to a power loss costs little), read within /forward's budget.
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
                 CREATE INDEX IF NOT EXISTS calls_by_age ON calls (ended_at);",
            )
            .map_err(open_error)?;
        let reader = crate::sqlite::open_reader(&path, BUSY_TIMEOUT).map_err(open_error)?;
        let history = History {
            inner: Arc::new(Inner {
                path: path.clone(),
                writer: Mutex::new(writer),
                reader: Mutex::new(reader),
                phones,
                inserts: AtomicU64::new(0),
            }),
        };
        history.prune(RETENTION)?;
        Ok(history)
    }

    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Stores the ended event of an answered call; returns whether it was stored
    /// (other events, unanswered calls and unusable numbers are ignored).
    pub fn record(&self, event: &CallEvent) -> Result<bool, HistoryError> {
        let Some(summary) = event.summary().filter(|summary| summary.answered()) else {
            return Ok(false);
        };
        let client = &event.parties.client;
        let direction = match event.parties.direction {
            CallDirection::Incoming => "in",
            CallDirection::Outgoing => "out",
        };
        let operator = summary.operator.as_deref().unwrap_or_default().trim();
        let Ok(client) = self.inner.phones.normalise(client) else {
            return Ok(false);
        };
        if !is_valid_extension(operator) {
            return Ok(false);
        }
        let duration = i64::try_from(summary.talk_seconds()).unwrap_or(i64::MAX);
        {
            let writer = self.inner.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            writer
                .prepare_cached(
                    "INSERT OR REPLACE INTO calls (unique_id, client, operator, direction, ended_at, duration)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .and_then(|mut insert| {
                    insert.execute(params![event.unique_id, client, operator, direction, event.at, duration])
                })
                .map_err(|source| self.sqlite_error(source))?;
        }
        crate::metrics::counter("deskhook_history_records_total", "Answered calls stored in the call history.").inc();
        if self.inner.inserts.fetch_add(1, Ordering::Relaxed) % PRUNE_EVERY == PRUNE_EVERY - 1 {
            self.prune(RETENTION)?;
        }
        Ok(true)
    }

    /// The operator of the most recent answered call with `phone` (any spelling) that ended
    /// within `max_age` of now.
    pub fn last_operator(&self, phone: &str, max_age: Duration) -> Result<Option<LastOperator>, HistoryError> {
        let Ok(client) = self.inner.phones.normalise(phone) else {
            return Ok(None);
        };
        let since = now_millis().saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        let reader = self.inner.reader.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        reader
            .prepare_cached(
                "SELECT operator, ended_at, unique_id FROM calls
                 WHERE client = ?1 AND ended_at >= ?2 ORDER BY ended_at DESC LIMIT 1",
            )
            .and_then(|mut select| {
                select
                    .query_row(params![client, since], |row| {
                        Ok(LastOperator { extension: row.get(0)?, ended_at: row.get(1)?, unique_id: row.get(2)? })
                    })
                    .optional()
            })
            .map_err(|source| self.sqlite_error(source))
    }

    /// Deletes calls that ended more than `older_than` ago; returns how many.
    pub fn prune(&self, older_than: Duration) -> Result<usize, HistoryError> {
        let before = now_millis().saturating_sub(i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX));
        let writer = self.inner.writer.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        writer
            .execute("DELETE FROM calls WHERE ended_at < ?1", params![before])
            .map_err(|source| self.sqlite_error(source))
    }

    fn sqlite_error(&self, source: rusqlite::Error) -> HistoryError {
        HistoryError::Sqlite { path: self.inner.path.clone(), source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::calls::{CallSummary, Happened, Parties};

    /// The end of an incoming call from `client` (or, `outgoing`, of a call to it), answered by
    /// `operator` for `talk` seconds (`None`: not answered), `ago` before now.
    fn ended(outgoing: bool, client: &str, operator: &str, id: &str, ago: Duration, talk: Option<u64>) -> CallEvent {
        let at = now_millis() - i64::try_from(ago.as_millis()).expect("small");
        let parties =
            if outgoing { Parties::outgoing(operator, client) } else { Parties::incoming(client, "74951234567") };
        let mut summary = CallSummary::unanswered(at - 60_000, at);
        if let Some(talk) = talk {
            summary = summary.answered_by(operator, talk);
        }
        CallEvent { unique_id: id.into(), at, parties, what: Happened::Ended(Box::new(summary)) }
    }

    fn open() -> (tempfile::TempDir, History) {
        let dir = tempfile::tempdir().expect("tempdir");
        let history = History::open(dir.path(), PhoneNormalizer::new("7")).expect("open history");
        (dir, history)
    }

    #[test]
    fn the_last_operator_of_answered_calls_is_found_by_any_spelling() {
        let (_dir, history) = open();
        let hour = Duration::from_secs(3600);
        let older = ended(false, "+7 916 123-45-67", "101", "1.1", hour * 2, Some(30));
        let newer = ended(true, "89161234567", "102", "1.2", hour, Some(5));
        assert!(history.record(&older).expect("record"));
        assert!(history.record(&newer).expect("record"));
        for spelling in ["79161234567", "89161234567", "+7 (916) 123-45-67"] {
            let last = history.last_operator(spelling, Duration::from_secs(86_400)).expect("query");
            assert_eq!(last.map(|l| (l.extension, l.unique_id)), Some(("102".to_string(), "1.2".to_string())));
        }
        let within_half_hour = history.last_operator("79161234567", hour / 2).expect("query");
        assert_eq!(within_half_hour, None, "calls older than max_age do not count");
    }

    #[test]
    fn unanswered_calls_and_other_events_are_ignored() {
        let (dir, history) = open();
        let minute = Duration::from_secs(60);
        let unanswered = ended(false, "79161234567", "101", "2.1", minute, None);
        let mut answered_event = ended(false, "79161234567", "101", "2.2", minute, Some(3));
        answered_event.what = Happened::Answered { operator: "101".into() };
        let anonymous = ended(false, "anonymous", "101", "2.3", minute, Some(3));
        let ringing_many = ended(false, "79161234567", "101,102", "2.4", minute, Some(3));
        for event in [&unanswered, &answered_event, &anonymous, &ringing_many] {
            assert!(!history.record(event).expect("record"), "{event:?}");
        }
        assert_eq!(history.last_operator("79161234567", Duration::from_secs(3600)).expect("query"), None);

        // Rows survive a reopen: the file is real.
        let kept = ended(false, "79161234567", "103", "2.5", minute, Some(3));
        assert!(history.record(&kept).expect("record"));
        drop(history);
        let reopened = History::open(dir.path(), PhoneNormalizer::new("7")).expect("reopen");
        let last = reopened.last_operator("89161234567", Duration::from_secs(3600)).expect("query");
        assert_eq!(last.map(|l| l.extension), Some("103".to_string()));
    }

    #[test]
    fn pruning_drops_old_rows_only() {
        let (_dir, history) = open();
        let day = Duration::from_secs(86_400);
        assert!(history.record(&ended(false, "79161234567", "101", "3.1", day * 3, Some(1))).unwrap());
        assert!(history.record(&ended(false, "79161234568", "102", "3.2", day / 2, Some(1))).unwrap());
        assert_eq!(history.prune(day).expect("prune"), 1);
        assert!(history.last_operator("79161234568", day).expect("query").is_some());
    }

    #[test]
    fn an_unwritable_directory_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let error = History::open(&file, PhoneNormalizer::default()).expect_err("a file is not a directory");
        assert!(error.to_string().contains("not-a-dir"), "{error}");
    }
}
