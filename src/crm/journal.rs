//! What deskhook remembers of its conversations with CRMs, in `storage.dir/crm.sqlite`: the
//! id a CRM gave each call (Bitrix24's `CALL_ID`), the steps a CRM confirmed (so that a try
//! repeated after a crash or a lost answer does not make a second call card), and a local
//! application's OAuth tokens, which Bitrix24 renews on every refresh.
//!
//! Every write is committed before the step counts as done; the outbox commits the request's
//! outcome after that, so a kill in between repeats the try and the journal skips the step.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension};

/// The journal's file under `storage.dir`.
pub(crate) const JOURNAL_FILE: &str = "crm.sqlite";
/// Calls are forgotten this long after their last step (the outbox gives up on requests sooner).
const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS crm_calls (
    sink       TEXT    NOT NULL,
    unique_id  TEXT    NOT NULL,
    call_id    TEXT    NOT NULL, -- the CRM's id of the call
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (sink, unique_id)
);
CREATE TABLE IF NOT EXISTS crm_steps (
    sink       TEXT    NOT NULL,
    unique_id  TEXT    NOT NULL,
    step       TEXT    NOT NULL, -- e.g. 'finish', 'attach'
    done_at    INTEGER NOT NULL,
    PRIMARY KEY (sink, unique_id, step)
);
CREATE TABLE IF NOT EXISTS crm_tokens (
    sink            TEXT    PRIMARY KEY,
    configured      TEXT    NOT NULL, -- the refresh token in the config when these were got
    refresh_token   TEXT    NOT NULL,
    access_token    TEXT    NOT NULL,
    expires_at      INTEGER NOT NULL, -- unix milliseconds
    client_endpoint TEXT    NOT NULL
);
";

/// Why the journal cannot be used; phrased for the admin.
#[derive(Debug, thiserror::Error)]
#[error("the CRM journal {path}: {source}; check that storage.dir is writable by the deskhook user")]
pub(crate) struct JournalError {
    path: String,
    source: rusqlite::Error,
}

/// A local application's tokens.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct StoredTokens {
    pub configured: String,
    pub refresh_token: String,
    pub access_token: String,
    pub expires_at_ms: i64,
    pub client_endpoint: String,
}

impl std::fmt::Debug for StoredTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTokens").field("expires_at_ms", &self.expires_at_ms).finish_non_exhaustive()
    }
}

/// The journal; cheap to clone, its calls run on tokio's blocking pool.
#[derive(Clone)]
pub(crate) struct CrmJournal {
    conn: Arc<Mutex<Connection>>,
    path: PathBuf,
}

impl CrmJournal {
    /// Opens (creating) `dir/crm.sqlite` and forgets calls older than a month.
    pub(crate) fn open(dir: &Path) -> Result<CrmJournal, JournalError> {
        let path = dir.join(JOURNAL_FILE);
        let error = |source| JournalError { path: path.display().to_string(), source };
        let (conn, _) = crate::sqlite::open_durable(&path).map_err(error)?;
        conn.execute_batch(SCHEMA).map_err(error)?;
        let horizon = crate::wallclock::now_ms() - KEEP.as_millis() as i64;
        conn.execute("DELETE FROM crm_calls WHERE updated_at < ?1", [horizon]).map_err(error)?;
        conn.execute("DELETE FROM crm_steps WHERE done_at < ?1", [horizon]).map_err(error)?;
        Ok(CrmJournal { conn: Arc::new(Mutex::new(conn)), path })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, JournalError> {
        let conn = self.conn.clone();
        let path = self.path.display().to_string();
        tokio::task::spawn_blocking(move || {
            let conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            work(&conn)
        })
        .await
        .unwrap_or(Err(rusqlite::Error::InvalidQuery))
        .map_err(|source| JournalError { path, source })
    }

    /// The CRM's id of call `unique_id` at sink `sink`, once known.
    pub(crate) async fn call_id(&self, sink: &str, unique_id: &str) -> Result<Option<String>, JournalError> {
        let (sink, unique_id) = (sink.to_string(), unique_id.to_string());
        self.run(move |conn| {
            conn.prepare_cached("SELECT call_id FROM crm_calls WHERE sink = ?1 AND unique_id = ?2")?
                .query_row([&sink, &unique_id], |row| row.get(0))
                .optional()
        })
        .await
    }

    pub(crate) async fn set_call_id(&self, sink: &str, unique_id: &str, call_id: &str) -> Result<(), JournalError> {
        let (sink, unique_id, call_id) = (sink.to_string(), unique_id.to_string(), call_id.to_string());
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO crm_calls (sink, unique_id, call_id, updated_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (sink, unique_id) DO UPDATE SET call_id = excluded.call_id, updated_at = excluded.updated_at",
            )?
            .execute(rusqlite::params![sink, unique_id, call_id, crate::wallclock::now_ms()])
            .map(drop)
        })
        .await
    }

    /// Whether `step` of call `unique_id` was confirmed by the CRM.
    pub(crate) async fn is_done(&self, sink: &str, unique_id: &str, step: &str) -> Result<bool, JournalError> {
        let (sink, unique_id, step) = (sink.to_string(), unique_id.to_string(), step.to_string());
        self.run(move |conn| {
            conn.prepare_cached("SELECT 1 FROM crm_steps WHERE sink = ?1 AND unique_id = ?2 AND step = ?3")?
                .query_row([&sink, &unique_id, &step], |_| Ok(()))
                .optional()
                .map(|found| found.is_some())
        })
        .await
    }

    /// When `step` of call `unique_id` was marked (unix milliseconds), if it was.
    pub(crate) async fn done_at(&self, sink: &str, unique_id: &str, step: &str) -> Result<Option<i64>, JournalError> {
        let (sink, unique_id, step) = (sink.to_string(), unique_id.to_string(), step.to_string());
        self.run(move |conn| {
            conn.prepare_cached("SELECT done_at FROM crm_steps WHERE sink = ?1 AND unique_id = ?2 AND step = ?3")?
                .query_row([&sink, &unique_id, &step], |row| row.get(0))
                .optional()
        })
        .await
    }

    pub(crate) async fn mark_done(&self, sink: &str, unique_id: &str, step: &str) -> Result<(), JournalError> {
        let (sink, unique_id, step) = (sink.to_string(), unique_id.to_string(), step.to_string());
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT OR IGNORE INTO crm_steps (sink, unique_id, step, done_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(rusqlite::params![sink, unique_id, step, crate::wallclock::now_ms()])
            .map(drop)
        })
        .await
    }

    /// Forgets `step` of call `unique_id` (a request known not to have been taken).
    pub(crate) async fn clear(&self, sink: &str, unique_id: &str, step: &str) -> Result<(), JournalError> {
        let (sink, unique_id, step) = (sink.to_string(), unique_id.to_string(), step.to_string());
        self.run(move |conn| {
            conn.prepare_cached("DELETE FROM crm_steps WHERE sink = ?1 AND unique_id = ?2 AND step = ?3")?
                .execute([&sink, &unique_id, &step])
                .map(drop)
        })
        .await
    }

    pub(crate) async fn tokens(&self, sink: &str) -> Result<Option<StoredTokens>, JournalError> {
        let sink = sink.to_string();
        self.run(move |conn| {
            conn.prepare_cached(
                "SELECT configured, refresh_token, access_token, expires_at, client_endpoint FROM crm_tokens WHERE sink = ?1",
            )?
            .query_row([&sink], |row| {
                Ok(StoredTokens {
                    configured: row.get(0)?,
                    refresh_token: row.get(1)?,
                    access_token: row.get(2)?,
                    expires_at_ms: row.get(3)?,
                    client_endpoint: row.get(4)?,
                })
            })
            .optional()
        })
        .await
    }

    pub(crate) async fn save_tokens(&self, sink: &str, tokens: StoredTokens) -> Result<(), JournalError> {
        let sink = sink.to_string();
        self.run(move |conn| {
            conn.prepare_cached(
                "INSERT INTO crm_tokens (sink, configured, refresh_token, access_token, expires_at, client_endpoint)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (sink) DO UPDATE SET configured = excluded.configured,
                    refresh_token = excluded.refresh_token, access_token = excluded.access_token,
                    expires_at = excluded.expires_at, client_endpoint = excluded.client_endpoint",
            )?
            .execute(rusqlite::params![
                sink,
                tokens.configured,
                tokens.refresh_token,
                tokens.access_token,
                tokens.expires_at_ms,
                tokens.client_endpoint
            ])
            .map(drop)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn call_ids_steps_and_tokens_survive_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = CrmJournal::open(dir.path()).expect("open");
        assert_eq!(journal.call_id("b24", "1.1").await.expect("read"), None);
        journal.set_call_id("b24", "1.1", "externalCall.abc").await.expect("write");
        journal.mark_done("b24", "1.1", "finish").await.expect("write");
        journal.mark_done("b24", "1.1", "finish").await.expect("a repeat is fine");
        let tokens = StoredTokens {
            configured: "r0".into(),
            refresh_token: "r1".into(),
            access_token: "a1".into(),
            expires_at_ms: 42,
            client_endpoint: "https://portal.example/rest/".into(),
        };
        journal.save_tokens("b24", tokens.clone()).await.expect("write");
        assert!(!format!("{tokens:?}").contains("r1"), "no token in Debug");
        drop(journal);
        let journal = CrmJournal::open(dir.path()).expect("reopen");
        assert_eq!(journal.call_id("b24", "1.1").await.expect("read").as_deref(), Some("externalCall.abc"));
        assert_eq!(journal.call_id("other", "1.1").await.expect("read"), None);
        assert!(journal.is_done("b24", "1.1", "finish").await.expect("read"));
        assert!(!journal.is_done("b24", "1.1", "attach").await.expect("read"));
        assert!(journal.done_at("b24", "1.1", "finish").await.expect("read").is_some());
        assert_eq!(journal.done_at("b24", "1.1", "attach").await.expect("read"), None);
        journal.clear("b24", "1.1", "finish").await.expect("write");
        assert!(!journal.is_done("b24", "1.1", "finish").await.expect("read"));
        assert_eq!(journal.tokens("b24").await.expect("read"), Some(tokens));
    }
}
