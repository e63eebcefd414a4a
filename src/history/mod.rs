//! deskhook's own call history: which operator last talked with which client number, for
//! `/forward`'s `history` resolver. Every deskhook keeps it locally in SQLite
//! (`history.sqlite3` in `storage.dir`, [`local`]); with `[storage] history = "postgres://…"`
//! the calls are also copied ([`copier`]) to one PostgreSQL database shared by every PBX
//! ([`shared`]), and lookups ask both, so a caller is routed to the operator who talked with
//! them on any PBX, and to this PBX's own memory when the database is slow or down.
//!
//! Only the ended events of answered calls are stored (they name the operator who talked):
//! incoming: client = `from_user`, operator = `to_user`; outgoing: the reverse. The client
//! number is stored normalised, so every spelling of it finds the same rows. Writing never
//! waits on a disk or a network: calls queue for the [`writer`] thread.

pub(crate) mod advice;
mod copier;
mod local;
pub(crate) mod shared;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::ari::events::EpochMillis;
use crate::calls::{CallDirection, CallEvent};
use crate::config::Config;
use crate::numbers::is_valid_extension;
use crate::numbers::PhoneNormalizer;
use crate::wallclock::now_ms as now_millis;

use local::LocalStore;
pub use shared::{SharedError, SharedStore};

/// Rows older than this are deleted: no `history.max_age_days` reaches that far back usefully.
pub(crate) const RETENTION: Duration = Duration::from_secs(366 * 86_400);

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("call history {}: cannot open it ({source}); check that storage.dir exists and deskhook may write there", path.display())]
    Open { path: PathBuf, source: rusqlite::Error },
    #[error("call history {}: cannot create storage.dir ({source}); create it or fix its permissions", path.display())]
    CreateDir { path: PathBuf, source: std::io::Error },
    #[error("call history {}: {source}", path.display())]
    Sqlite { path: PathBuf, source: rusqlite::Error },
    #[error("call history: cannot start its writer thread ({0})")]
    Thread(std::io::Error),
}

/// Which way an answered call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Incoming,
    Outgoing,
}

impl Direction {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Direction::Incoming => "in",
            Direction::Outgoing => "out",
        }
    }

    fn parse(stored: &str) -> Direction {
        if stored == "out" {
            Direction::Outgoing
        } else {
            Direction::Incoming
        }
    }
}

/// One answered call as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HistoryRow {
    pub unique_id: String,
    /// The client's number, normalised.
    pub client: String,
    /// The extension that talked with the client.
    pub operator: String,
    pub direction: Direction,
    pub ended_at: EpochMillis,
    pub talk_seconds: i64,
}

impl HistoryRow {
    /// The row of an ended, answered call with a usable client number and one operator.
    pub(crate) fn of(event: &CallEvent, phones: &PhoneNormalizer) -> Option<HistoryRow> {
        let summary = event.summary().filter(|summary| summary.answered())?;
        let operator = summary.operator.as_deref().unwrap_or_default().trim();
        if !is_valid_extension(operator) {
            return None;
        }
        let client = phones.normalise(&event.parties.client).ok()?;
        Some(HistoryRow {
            unique_id: event.unique_id.clone(),
            client,
            operator: operator.to_string(),
            direction: match event.parties.direction {
                CallDirection::Incoming => Direction::Incoming,
                CallDirection::Outgoing => Direction::Outgoing,
            },
            ended_at: event.at,
            talk_seconds: i64::try_from(summary.talk_seconds()).unwrap_or(i64::MAX),
        })
    }
}

/// The operator who most recently talked with a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastOperator {
    pub extension: String,
    /// When that call ended (Asterisk's clock, epoch milliseconds).
    pub ended_at: EpochMillis,
    pub unique_id: String,
    /// The PBX that saw the call, when it came from the shared history.
    pub pbx: Option<String>,
}

/// A handle on the call history; clones share it.
#[derive(Debug, Clone)]
pub struct History {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    local: Arc<LocalStore>,
    shared: Option<Arc<SharedStore>>,
    queue: writer::Queue,
    /// Woken when calls were queued for the shared history.
    copier: Arc<Notify>,
    phones: PhoneNormalizer,
}

impl History {
    /// Opens (creating when absent) `dir/history.sqlite3` and starts its writer; with
    /// `shared`, calls are queued for the shared history too ([`History::start_copying`]
    /// copies them). Client numbers are normalised with `phones`.
    pub fn open(dir: &Path, phones: PhoneNormalizer, shared: Option<SharedStore>) -> Result<History, HistoryError> {
        let local = Arc::new(LocalStore::open(dir)?);
        let copier = Arc::new(Notify::new());
        let queue = writer::Queue::start(local.clone(), shared.is_some(), copier.clone(), retention_cutoff)
            .map_err(HistoryError::Thread)?;
        Ok(History { inner: Arc::new(Inner { local, shared: shared.map(Arc::new), queue, copier, phones }) })
    }

    /// The history `config` asks for: the local one in `storage.dir`, plus the shared one
    /// when `storage.history` names a database (nothing connects yet).
    pub(crate) fn configured(config: &Config) -> Result<History, String> {
        let shared = match config.storage.shared_history() {
            Some(url) => Some(
                SharedStore::new(url, &config.pbx_name(), config.storage.history_timeout.get())
                    .map_err(|problem| format!("storage.history {problem}"))?,
            ),
            None => None,
        };
        let phones = PhoneNormalizer::new(&config.forward.default_country);
        History::open(&config.storage.dir, phones, shared).map_err(|error| error.to_string())
    }

    /// The shared history, when configured.
    pub fn shared(&self) -> Option<&SharedStore> {
        self.inner.shared.as_deref()
    }

    /// Starts copying queued calls to the shared history on the current runtime (nothing
    /// when there is none); the copy resumes wherever a previous run left it.
    pub fn start_copying(&self) {
        if let Some(shared) = &self.inner.shared {
            tokio::spawn(copier::run(
                self.inner.local.clone(),
                shared.clone(),
                self.inner.copier.clone(),
                retention_cutoff,
            ));
        }
    }

    /// Queues the ended event of an answered call; returns whether it was queued (other
    /// events, unanswered calls and unusable numbers are ignored). Never waits.
    pub fn record(&self, event: &CallEvent) -> bool {
        match HistoryRow::of(event, &self.inner.phones) {
            Some(row) => self.inner.queue.push(row),
            None => false,
        }
    }

    /// Waits until every call queued so far is committed locally (blocking).
    pub fn flush(&self) {
        self.inner.queue.flush();
    }

    /// The operator of the most recent answered call with `phone` (any spelling) that ended
    /// within `max_age` of now: the newer of the local and the shared history's answers (the
    /// local copy alone when the shared one fails, is slow or is paused after a failure).
    pub async fn last_operator(&self, phone: &str, max_age: Duration) -> Result<Option<LastOperator>, HistoryError> {
        let Ok(client) = self.inner.phones.normalise(phone) else {
            return Ok(None);
        };
        let since = now_millis().saturating_sub(i64::try_from(max_age.as_millis()).unwrap_or(i64::MAX));
        let local = {
            let (store, client) = (self.inner.local.clone(), client.clone());
            async move {
                tokio::task::spawn_blocking(move || store.last_operator(&client, since))
                    .await
                    .unwrap_or_else(|error| Err(HistoryError::Thread(std::io::Error::other(error.to_string()))))
            }
        };
        let shared = async {
            match &self.inner.shared {
                Some(shared) => shared.last_operator(&client, since).await,
                None => None,
            }
        };
        let (local, shared) = tokio::join!(local, shared);
        let shared = match shared {
            Some(Ok(found)) => found,
            Some(Err(_)) | None => None,
        };
        let local = local?;
        Ok(match (local, shared) {
            (Some(local), Some(shared)) => Some(if shared.ended_at > local.ended_at { shared } else { local }),
            (local, shared) => local.or(shared),
        })
    }
}

/// Calls that ended before this are pruned.
fn retention_cutoff() -> EpochMillis {
    now_millis().saturating_sub(i64::try_from(RETENTION.as_millis()).unwrap_or(i64::MAX))
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
        let history = History::open(dir.path(), PhoneNormalizer::new("7"), None).expect("open history");
        (dir, history)
    }

    #[tokio::test]
    async fn the_last_operator_of_answered_calls_is_found_by_any_spelling() {
        let (_dir, history) = open();
        let hour = Duration::from_secs(3600);
        let older = ended(false, "+7 916 123-45-67", "101", "1.1", hour * 2, Some(30));
        let newer = ended(true, "89161234567", "102", "1.2", hour, Some(5));
        assert!(history.record(&older));
        assert!(history.record(&newer));
        history.flush();
        for spelling in ["79161234567", "89161234567", "+7 (916) 123-45-67"] {
            let last = history.last_operator(spelling, Duration::from_secs(86_400)).await.expect("query");
            assert_eq!(last.map(|l| (l.extension, l.unique_id)), Some(("102".to_string(), "1.2".to_string())));
        }
        let within_half_hour = history.last_operator("79161234567", hour / 2).await.expect("query");
        assert_eq!(within_half_hour, None, "calls older than max_age do not count");
    }

    #[tokio::test]
    async fn unanswered_calls_and_other_events_are_ignored() {
        let (dir, history) = open();
        let minute = Duration::from_secs(60);
        let unanswered = ended(false, "79161234567", "101", "2.1", minute, None);
        let mut answered_event = ended(false, "79161234567", "101", "2.2", minute, Some(3));
        answered_event.what = Happened::Answered { operator: "101".into() };
        let anonymous = ended(false, "anonymous", "101", "2.3", minute, Some(3));
        let ringing_many = ended(false, "79161234567", "101,102", "2.4", minute, Some(3));
        for event in [&unanswered, &answered_event, &anonymous, &ringing_many] {
            assert!(!history.record(event), "{event:?}");
        }
        history.flush();
        assert_eq!(history.last_operator("79161234567", Duration::from_secs(3600)).await.expect("query"), None);

        // Rows survive a reopen: the file is real.
        let kept = ended(false, "79161234567", "103", "2.5", minute, Some(3));
        assert!(history.record(&kept));
        history.flush();
        drop(history);
        let reopened = History::open(dir.path(), PhoneNormalizer::new("7"), None).expect("reopen");
        let last = reopened.last_operator("89161234567", Duration::from_secs(3600)).await.expect("query");
        assert_eq!(last.map(|l| l.extension), Some("103".to_string()));
    }

    #[tokio::test]
    async fn a_call_recorded_again_keeps_its_first_record() {
        let (_dir, history) = open();
        let minute = Duration::from_secs(60);
        assert!(history.record(&ended(false, "79161234567", "101", "4.1", minute * 2, Some(30))));
        history.flush();
        // The same call ended again after a restart, by someone who knows less of it.
        history.record(&ended(false, "79161234567", "102", "4.1", minute, Some(0)));
        history.flush();
        let last = history.last_operator("79161234567", Duration::from_secs(3600)).await.expect("query");
        assert_eq!(last.map(|l| (l.extension, l.unique_id)), Some(("101".to_string(), "4.1".to_string())));
    }

    #[tokio::test]
    async fn pruning_drops_old_rows_only() {
        let (_dir, history) = open();
        let day = Duration::from_secs(86_400);
        assert!(history.record(&ended(false, "79161234567", "101", "3.1", day * 3, Some(1))));
        assert!(history.record(&ended(false, "79161234568", "102", "3.2", day / 2, Some(1))));
        history.flush();
        let local = &history.inner.local;
        assert_eq!(local.prune(now_millis() - 86_400_000).expect("prune"), 1);
        assert!(history.last_operator("79161234568", day).await.expect("query").is_some());
        assert_eq!(history.last_operator("79161234567", day * 4).await.expect("query"), None, "pruned");
    }

    #[tokio::test]
    async fn calls_ending_close_together_share_one_commit() {
        let (_dir, history) = open();
        let minute = Duration::from_secs(60);
        assert!(history.record(&ended(false, "79161230000", "101", "5.0", minute, Some(1))));
        history.flush();
        let before = history.inner.queue.commits();
        // Ten calls ending a few milliseconds apart, soon after that commit.
        for n in 1..=10 {
            assert!(history.record(&ended(
                false,
                &format!("791612300{n:02}"),
                "102",
                &format!("5.{n}"),
                minute,
                Some(1)
            )));
            std::thread::sleep(Duration::from_millis(3));
        }
        history.flush();
        assert_eq!(history.inner.queue.commits() - before, 1, "one transaction for the ten calls");
        for n in 1..=10 {
            let last = history.last_operator(&format!("791612300{n:02}"), minute * 2).await.expect("query");
            assert_eq!(last.map(|l| l.unique_id), Some(format!("5.{n}")));
        }
    }

    #[tokio::test]
    async fn a_stream_of_calls_faster_than_the_pause_is_never_dropped() {
        let (dir, history) = open();
        let minute = Duration::from_secs(60);
        assert!(history.record(&ended(false, "79161230000", "101", "6.0", minute, Some(1))));
        history.flush();
        // Right after a commit, about 35,000 calls a second: the queue would fill long before a
        // whole pause ended; a full batch ends it.
        let calls = 12_000;
        for n in 0..calls {
            let event = ended(false, &format!("7916{n:07}"), "102", &format!("6.{}", n + 1), minute, Some(1));
            assert!(history.record(&event), "call {n} queued");
            if n % 40 == 39 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        history.flush();
        let file = rusqlite::Connection::open(dir.path().join(local::HISTORY_FILE)).expect("open");
        let stored: i64 = file.query_row("SELECT count(*) FROM calls", [], |row| row.get(0)).expect("count");
        assert_eq!(stored, calls as i64 + 1);
    }

    #[test]
    fn an_unwritable_directory_is_reported_with_its_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").expect("write");
        let error = History::open(&file, PhoneNormalizer::default(), None).expect_err("a file is not a directory");
        assert!(error.to_string().contains("not-a-dir"), "{error}");
    }
}
