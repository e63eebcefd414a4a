//! The ARI recorder's journal (`storage.dir/recordings-ari.sqlite`): every part it started,
//! how far each got (recording, stopped, downloaded, queued for upload), and which calls have
//! closed, so a restart anywhere between the answer and the helpdesk's acceptance resumes
//! instead of losing the recording or leaving it on Asterisk.
//!
//! A part's name is allocated (and committed) before its snoop exists, so a name is never
//! reused for a second recording of the same call. Finished parts are deleted.

use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// The journal's file name under `storage.dir`.
pub const JOURNAL_FILE: &str = "recordings-ari.sqlite";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS ari_calls (
    unique_id TEXT PRIMARY KEY,
    next_part INTEGER NOT NULL DEFAULT 1,
    closed    INTEGER NOT NULL DEFAULT 0,
    answered  INTEGER NOT NULL DEFAULT 0,
    closed_at INTEGER -- unix ms, when the recorder learned the call was over
);
CREATE TABLE IF NOT EXISTS ari_parts (
    name      TEXT PRIMARY KEY,          -- the stored recording's name on Asterisk
    unique_id TEXT NOT NULL,
    part      INTEGER NOT NULL,
    snoop_id  TEXT NOT NULL,
    state     TEXT NOT NULL CHECK (state IN ('starting', 'recording', 'stopped', 'downloaded', 'queued')),
    file      BLOB,                      -- the local copy, once downloaded
    UNIQUE (unique_id, part)
);
";

/// How far a part got. Parts that are over (deleted on Asterisk, failed, missing) leave the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PartState {
    /// Its name is taken; the snoop or the recording may not exist yet.
    Starting,
    /// Asterisk is (or was, until the snoop ended) recording it.
    Recording,
    /// Stopped; the stored recording is awaited and downloaded.
    Stopped,
    /// The local copy is complete; the upload is to be queued.
    Downloaded,
    /// The upload is in the outbox; the stored recording is deleted once the helpdesk has it.
    Queued,
}

impl PartState {
    fn as_str(self) -> &'static str {
        match self {
            PartState::Starting => "starting",
            PartState::Recording => "recording",
            PartState::Stopped => "stopped",
            PartState::Downloaded => "downloaded",
            PartState::Queued => "queued",
        }
    }

    fn parse(text: &str) -> PartState {
        match text {
            "recording" => PartState::Recording,
            "stopped" => PartState::Stopped,
            "downloaded" => PartState::Downloaded,
            "queued" => PartState::Queued,
            _ => PartState::Starting,
        }
    }
}

/// One part of a call's recording.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Part {
    pub unique_id: String,
    pub number: u32,
    pub name: String,
    pub snoop_id: String,
    pub state: PartState,
    pub file: Option<PathBuf>,
}

/// How a call ended, as journaled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Closed {
    pub answered: bool,
    /// Unix milliseconds.
    pub at_ms: i64,
}

/// A call with unfinished parts, as a previous run left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct UnfinishedCall {
    pub unique_id: String,
    pub closed: Option<Closed>,
    /// In part order.
    pub parts: Vec<Part>,
}

/// Keeps ARI names to what Asterisk accepts as a file name in its spool.
fn safe(text: &str) -> String {
    text.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') { c } else { '_' }).collect()
}

/// The stored recording's name of part `number` of call `unique_id`.
pub fn part_name(unique_id: &str, number: u32) -> String {
    format!("deskhook-{}-{number}", safe(unique_id))
}

/// The id deskhook gives the snoop channel of that part.
pub fn snoop_id(unique_id: &str, number: u32) -> String {
    format!("deskhook-snoop-{}-{number}", safe(unique_id))
}

pub(super) struct Journal {
    conn: Mutex<Connection>,
    path: PathBuf,
}

impl Journal {
    pub(super) fn open(path: &Path) -> Result<Journal, rusqlite::Error> {
        let (conn, _mode) = crate::sqlite::open_durable(path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Journal { conn: Mutex::new(conn), path: path.to_path_buf() })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the call's next part number and commits the part as starting; the call counts
    /// as open again if it had closed.
    pub(super) fn new_part(&self, unique_id: &str) -> Result<Part, rusqlite::Error> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO ari_calls (unique_id) VALUES (?1)
             ON CONFLICT (unique_id) DO UPDATE SET closed = 0, closed_at = NULL",
            [unique_id],
        )?;
        let number: u32 =
            tx.query_row("SELECT next_part FROM ari_calls WHERE unique_id = ?1", [unique_id], |row| row.get(0))?;
        tx.execute("UPDATE ari_calls SET next_part = next_part + 1 WHERE unique_id = ?1", [unique_id])?;
        let part = Part {
            unique_id: unique_id.to_string(),
            number,
            name: part_name(unique_id, number),
            snoop_id: snoop_id(unique_id, number),
            state: PartState::Starting,
            file: None,
        };
        tx.execute(
            "INSERT OR REPLACE INTO ari_parts (name, unique_id, part, snoop_id, state) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![part.name, unique_id, number, part.snoop_id, PartState::Starting.as_str()],
        )?;
        tx.commit()?;
        Ok(part)
    }

    pub(super) fn set_state(&self, name: &str, state: PartState, file: Option<&Path>) -> Result<(), rusqlite::Error> {
        let file = file.map(|file| file.as_os_str().as_bytes().to_vec());
        self.lock().execute(
            "UPDATE ari_parts SET state = ?2, file = COALESCE(?3, file) WHERE name = ?1",
            params![name, state.as_str(), file],
        )?;
        Ok(())
    }

    /// The part is over (uploaded and deleted on Asterisk, or given up): forget it, and its
    /// call once that has closed and has no parts left.
    pub(super) fn finish_part(&self, name: &str) -> Result<(), rusqlite::Error> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let unique_id: Option<String> =
            tx.query_row("SELECT unique_id FROM ari_parts WHERE name = ?1", [name], |row| row.get(0)).optional()?;
        tx.execute("DELETE FROM ari_parts WHERE name = ?1", [name])?;
        if let Some(unique_id) = unique_id {
            forget_call_if_done(&tx, &unique_id)?;
        }
        tx.commit()
    }

    pub(super) fn close_call(&self, unique_id: &str, answered: bool, at_ms: i64) -> Result<(), rusqlite::Error> {
        let mut conn = self.lock();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "UPDATE ari_calls SET closed = 1, answered = ?2, closed_at = COALESCE(closed_at, ?3) WHERE unique_id = ?1",
            params![unique_id, answered, at_ms],
        )?;
        forget_call_if_done(&tx, unique_id)?;
        tx.commit()
    }

    /// Every call with parts or not yet closed, with its parts in order.
    pub(super) fn unfinished(&self) -> Result<Vec<UnfinishedCall>, rusqlite::Error> {
        let conn = self.lock();
        let mut calls_statement =
            conn.prepare("SELECT unique_id, closed, answered, closed_at FROM ari_calls ORDER BY rowid")?;
        let calls = calls_statement
            .query_map([], |row| {
                let closed: bool = row.get(1)?;
                let closed = if closed {
                    Some(Closed { answered: row.get(2)?, at_ms: row.get::<_, Option<i64>>(3)?.unwrap_or(0) })
                } else {
                    None
                };
                Ok(UnfinishedCall { unique_id: row.get(0)?, closed, parts: Vec::new() })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let mut parts_statement = conn.prepare(
            "SELECT unique_id, part, name, snoop_id, state, file FROM ari_parts WHERE unique_id = ?1 ORDER BY part",
        )?;
        let mut unfinished = Vec::with_capacity(calls.len());
        for mut call in calls {
            call.parts = parts_statement.query_map([&call.unique_id], part_from_row)?.collect::<Result<Vec<_>, _>>()?;
            unfinished.push(call);
        }
        Ok(unfinished)
    }
}

fn forget_call_if_done(tx: &rusqlite::Transaction<'_>, unique_id: &str) -> Result<(), rusqlite::Error> {
    tx.execute(
        "DELETE FROM ari_calls WHERE unique_id = ?1 AND closed = 1
         AND NOT EXISTS (SELECT 1 FROM ari_parts WHERE unique_id = ?1)",
        [unique_id],
    )?;
    Ok(())
}

fn part_from_row(row: &rusqlite::Row<'_>) -> Result<Part, rusqlite::Error> {
    let file: Option<Vec<u8>> = row.get(5)?;
    Ok(Part {
        unique_id: row.get(0)?,
        number: row.get(1)?,
        name: row.get(2)?,
        snoop_id: row.get(3)?,
        state: PartState::parse(&row.get::<_, String>(4)?),
        file: file.map(|bytes| PathBuf::from(std::ffi::OsString::from_vec(bytes))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_numbered_per_call_and_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(JOURNAL_FILE);
        let journal = Journal::open(&path).expect("open");
        let first = journal.new_part("1795237329.45").expect("part");
        assert_eq!(first.name, "deskhook-1795237329.45-1");
        assert_eq!(first.snoop_id, "deskhook-snoop-1795237329.45-1");
        journal.set_state(&first.name, PartState::Recording, None).expect("state");
        let second = journal.new_part("1795237329.45").expect("part");
        assert_eq!(second.number, 2);
        journal.set_state(&second.name, PartState::Downloaded, Some(Path::new("/x/y.wav"))).expect("state");
        journal.close_call("1795237329.45", true, 42).expect("close");
        drop(journal);

        let journal = Journal::open(&path).expect("reopen");
        let calls = journal.unfinished().expect("read");
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].closed, Some(Closed { answered: true, at_ms: 42 }));
        let states: Vec<(u32, PartState)> = calls[0].parts.iter().map(|p| (p.number, p.state)).collect();
        assert_eq!(states, vec![(1, PartState::Recording), (2, PartState::Downloaded)]);
        assert_eq!(calls[0].parts[1].file.as_deref(), Some(Path::new("/x/y.wav")));

        journal.finish_part(&first.name).expect("finish");
        journal.finish_part(&second.name).expect("finish");
        assert!(journal.unfinished().expect("read").is_empty(), "a closed call without parts is forgotten");
        // Only once nothing of the call is left on Asterisk may its names be used again.
        assert_eq!(journal.new_part("1795237329.45").expect("part").number, 1);
    }

    #[test]
    fn names_keep_to_safe_characters() {
        assert_eq!(part_name("1.2/../x y", 3), "deskhook-1.2_.._x_y-3");
    }
}
