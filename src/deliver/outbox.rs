//! The SQLite outbox file under `storage.dir`: schema, opening (WAL), and the reads and admin
//! changes (`deskhook outbox list|retry|purge`). Routine writes go through `writer`, the
//! single writer task of a running delivery.

use std::collections::BTreeMap;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::request::{PickupPromise, Request, RequestKind};
use super::DeliverError;
use crate::config::HelpdeskConfig;

/// The outbox's file name inside `storage.dir`.
pub const OUTBOX_FILE: &str = "outbox.sqlite3";

// The `tag`, `sink` and `body_type` columns came later without a version bump: older
// deskhooks ignore them (and deliver every row to the helpdesk).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS outbox (
    id              INTEGER PRIMARY KEY AUTOINCREMENT, -- never reused: ids order a call's requests
    unique_id       TEXT    NOT NULL,
    kind            TEXT    NOT NULL CHECK (kind IN ('form', 'upload')),
    status          TEXT    NOT NULL,
    once_key        TEXT    UNIQUE,
    body            TEXT,
    path            BLOB,
    delete_after    INTEGER NOT NULL DEFAULT 0,
    state           TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'dead')),
    tries           INTEGER NOT NULL DEFAULT 0,
    enqueued_at     INTEGER NOT NULL,
    next_attempt_at INTEGER NOT NULL,
    finished_at     INTEGER,
    last_error      TEXT,
    requeue_gen     INTEGER NOT NULL DEFAULT 0,
    tag             TEXT -- see Request::tagged
);
CREATE TABLE IF NOT EXISTS outbox_meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO outbox_meta (key, value) VALUES ('requeue_gen', 0);
-- Recordings of ended calls promised for upload, until the upload is stored (see
-- recordings::pickup); `uploads` is the JSON list of routes. No index: it holds the few calls
-- whose files are being closed, and one would cost every promise and its end a page more.
CREATE TABLE IF NOT EXISTS pickups (
    id        INTEGER PRIMARY KEY,
    unique_id TEXT    NOT NULL,
    file      TEXT    NOT NULL,
    uploads   TEXT    NOT NULL
);
-- Calls announced and not yet closed, for a restart after a crash (see calls::checkpoint).
CREATE TABLE IF NOT EXISTS open_calls (
    unique_id  TEXT    PRIMARY KEY,
    checkpoint TEXT    NOT NULL, -- JSON
    saved_at   INTEGER NOT NULL
);
";

/// The outbox's limits from `[helpdesk]`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_rows: u64,
    pub keep_delivered: Duration,
}

/// The durable store of helpdesk requests. Open it, then hand it to [`super::Delivery::start`],
/// or use it directly for the admin commands.
pub struct Outbox {
    pub(crate) path: PathBuf,
    pub(crate) conn: Connection,
    pub(crate) limits: Limits,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox").field("path", &self.path).finish_non_exhaustive()
    }
}

/// Where a row is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowState {
    Pending,
    Delivered,
    Dead,
}

impl RowState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RowState::Pending => "pending",
            RowState::Delivered => "delivered",
            RowState::Dead => "dead",
        }
    }

    fn parse(text: &str) -> RowState {
        match text {
            "delivered" => RowState::Delivered,
            "dead" => RowState::Dead,
            _ => RowState::Pending,
        }
    }
}

/// How many rows are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    pub pending: u64,
    pub dead: u64,
    pub delivered: u64,
}

impl OutboxCounts {
    pub(crate) fn rows(&self) -> u64 {
        self.pending + self.dead + self.delivered
    }

    /// Both counts together.
    pub(crate) fn plus(self, other: &OutboxCounts) -> OutboxCounts {
        OutboxCounts {
            pending: self.pending + other.pending,
            dead: self.dead + other.dead,
            delivered: self.delivered + other.delivered,
        }
    }
}

/// The calls a previous run left open ([`Outbox::open_calls`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenCalls {
    pub calls: Vec<crate::calls::CallCheckpoint>,
    /// Event time (Unix ms) the previous run was last watching Asterisk.
    pub last_alive_ms: Option<i64>,
}

/// One undelivered row as `deskhook outbox list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedRow {
    pub id: i64,
    /// The sink that sends it.
    pub sink: String,
    pub unique_id: String,
    pub status: String,
    pub state: RowState,
    pub tries: u32,
    /// Unix milliseconds of the next try (pending rows only).
    pub next_attempt_ms: Option<i64>,
    pub enqueued_ms: i64,
    pub last_error: Option<String>,
}

/// Pending and dead rows (oldest first, at most the limit asked for) and the counts of all rows.
#[derive(Debug, Clone)]
pub struct Listing {
    pub path: PathBuf,
    pub rows: Vec<ListedRow>,
    pub counts: OutboxCounts,
}

/// A pending row as the scheduler knows it: no payload, only what ordering needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingRow {
    pub id: i64,
    pub unique_id: String,
    pub due_ms: i64,
    /// The request of a row just stored, so its first try needs no read back.
    pub fresh: Option<Box<Request>>,
}

/// A row loaded to be sent.
#[derive(Debug, Clone)]
pub(crate) struct StoredRow {
    pub request: Request,
    pub state: RowState,
    pub tries: u32,
    pub enqueued_ms: i64,
}

impl Outbox {
    /// Opens (creating if needed) `dir/outbox.sqlite3`; `dir` is `storage.dir`.
    pub fn open(dir: &Path, cfg: &HelpdeskConfig) -> Result<Outbox, DeliverError> {
        std::fs::create_dir_all(dir)
            .map_err(|source| DeliverError::StorageDir { dir: dir.display().to_string(), source })?;
        let path = dir.join(OUTBOX_FILE);
        let conn = connect(&path, true)?;
        let limits = Limits { max_rows: cfg.outbox_max_rows.max(1), keep_delivered: cfg.keep_delivered.get() };
        Ok(Outbox { path, conn, limits })
    }

    /// Like [`Outbox::open`], but `None` when no outbox file exists yet (nothing was ever enqueued).
    pub(crate) fn open_existing(dir: &Path, cfg: &HelpdeskConfig) -> Result<Option<Outbox>, DeliverError> {
        if !dir.join(OUTBOX_FILE).exists() {
            return Ok(None);
        }
        Outbox::open(dir, cfg).map(Some)
    }

    /// The database file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// What the previous run left open: the checkpoints of calls it announced and never
    /// closed (unreadable ones are skipped with a warning), and the last event time it was
    /// watching Asterisk.
    pub(crate) fn open_calls(&self) -> Result<OpenCalls, DeliverError> {
        let read = || -> rusqlite::Result<OpenCalls> {
            let mut statement =
                self.conn.prepare("SELECT unique_id, checkpoint FROM open_calls ORDER BY saved_at, unique_id")?;
            let rows = statement.query_map([], |row| Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?)))?;
            let mut calls = Vec::new();
            for row in rows {
                let (unique_id, text) = row?;
                match crate::calls::CallCheckpoint::from_json(&text) {
                    Ok(checkpoint) => calls.push(checkpoint),
                    Err(error) => tracing::warn!(
                        unique_id,
                        "skipped an unreadable open-call checkpoint in {}: {error}",
                        self.path.display()
                    ),
                }
            }
            let last_alive_ms = self
                .conn
                .query_row("SELECT value FROM outbox_meta WHERE key = 'last_alive_ms'", [], |row| row.get(0))
                .optional()?;
            Ok(OpenCalls { calls, last_alive_ms })
        };
        read().map_err(|source| self.db_error(source))
    }

    /// Pending and dead rows (of sink `sink`, or of all), oldest first, at most `limit` of
    /// them; what `deskhook outbox list` prints.
    pub fn listing(&self, limit: usize, sink: Option<&str>) -> Result<Listing, DeliverError> {
        let read = || -> rusqlite::Result<Listing> {
            let mut statement = self.conn.prepare(
                "SELECT id, unique_id, status, state, tries, next_attempt_at, enqueued_at, last_error, sink
                 FROM outbox WHERE state IN ('pending', 'dead') AND (?2 IS NULL OR sink = ?2) ORDER BY id LIMIT ?1",
            )?;
            let rows = statement
                .query_map(params![i64::try_from(limit).unwrap_or(i64::MAX), sink], |row| {
                    let state = RowState::parse(&row.get::<_, String>(3)?);
                    Ok(ListedRow {
                        id: row.get(0)?,
                        sink: row.get(8)?,
                        unique_id: row.get(1)?,
                        status: row.get(2)?,
                        state,
                        tries: row.get(4)?,
                        next_attempt_ms: (state == RowState::Pending).then(|| row.get(5)).transpose()?,
                        enqueued_ms: row.get(6)?,
                        last_error: row.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            let counts = match sink {
                None => count_rows(&self.conn)?,
                Some(sink) => count_rows_by_sink(&self.conn)?.get(sink).copied().unwrap_or_default(),
            };
            Ok(Listing { path: self.path.clone(), rows, counts })
        };
        read().map_err(|source| self.db_error(source))
    }

    /// The sinks that have rows in the outbox.
    pub fn sinks(&self) -> Result<Vec<String>, DeliverError> {
        count_rows_by_sink(&self.conn)
            .map(|by_sink| by_sink.into_keys().collect())
            .map_err(|source| self.db_error(source))
    }

    /// Puts every dead row (of sink `sink`, or of all) back in the queue (tries reset,
    /// retention restarts now); a running deskhook picks them up within a few seconds.
    /// Returns how many.
    pub fn retry_dead(&mut self, sink: Option<&str>) -> Result<usize, DeliverError> {
        let now = now_ms();
        let change = |conn: &mut Connection| -> rusqlite::Result<usize> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let generation = bump_requeue_generation(&tx)?;
            let count = tx.execute(
                "UPDATE outbox SET state = 'pending', tries = 0, enqueued_at = ?1, next_attempt_at = ?1,
                 finished_at = NULL, requeue_gen = ?2 WHERE state = 'dead' AND (?3 IS NULL OR sink = ?3)",
                params![now, generation, sink],
            )?;
            tx.commit()?;
            Ok(count)
        };
        let path = self.path.clone();
        change(&mut self.conn).map_err(|source| DeliverError::Database { path: path.display().to_string(), source })
    }

    /// Deletes every dead row (of sink `sink`, or of all). Returns how many.
    pub fn purge_dead(&mut self, sink: Option<&str>) -> Result<usize, DeliverError> {
        let change = |conn: &mut Connection| -> rusqlite::Result<usize> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            bump_requeue_generation(&tx)?;
            let count = tx.execute("DELETE FROM outbox WHERE state = 'dead' AND (?1 IS NULL OR sink = ?1)", [sink])?;
            tx.commit()?;
            Ok(count)
        };
        let path = self.path.clone();
        change(&mut self.conn).map_err(|source| DeliverError::Database { path: path.display().to_string(), source })
    }

    pub(crate) fn db_error(&self, source: rusqlite::Error) -> DeliverError {
        DeliverError::Database { path: self.path.display().to_string(), source }
    }
}

/// Opens the file in WAL mode; `create` puts the schema in place (the writer's and admin's
/// connections), a reader only checks that the file is not from a newer deskhook.
pub(crate) fn connect(path: &Path, create: bool) -> Result<Connection, DeliverError> {
    let shown = path.display().to_string();
    let open_error = |source| DeliverError::Open { path: shown.clone(), source };
    let (conn, mode) = crate::sqlite::open_durable(path).map_err(open_error)?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(path = %shown, mode, "the outbox could not switch to WAL mode; delivery will be slower");
    }
    let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0)).map_err(open_error)?;
    if version > SCHEMA_VERSION {
        return Err(DeliverError::NewerSchema { path: shown, version });
    }
    if !create {
        return Ok(conn);
    }
    conn.execute_batch(SCHEMA).map_err(open_error)?;
    add_later_columns(&conn).map_err(open_error)?;
    if version < SCHEMA_VERSION {
        conn.pragma_update(None, "user_version", SCHEMA_VERSION).map_err(open_error)?;
    }
    Ok(conn)
}

/// Files written before tags or sinks existed get the columns (and everyone the indexes).
fn add_later_columns(conn: &Connection) -> rusqlite::Result<()> {
    for (column, definition) in [
        ("tag", "TEXT"),
        // Which sink sends the row; rows from before sinks were the helpdesk's.
        ("sink", "TEXT NOT NULL DEFAULT 'helpdesk'"),
        // NULL: an urlencoded form (or, for an upload, the Omnidesk form); 'json': a JSON body.
        ("body_type", "TEXT"),
    ] {
        let present: bool =
            conn.query_row("SELECT COUNT(*) FROM pragma_table_info('outbox') WHERE name = ?1", [column], |row| {
                row.get(0)
            })?;
        if !present {
            conn.execute_batch(&format!("ALTER TABLE outbox ADD COLUMN {column} {definition}"))?;
        }
    }
    // outbox_by_state (state, id) is gone: every hot query names the sink and uses
    // outbox_by_sink, and keeping a second index cost each event two more pages per commit. The
    // queries without a sink (pruning every ten minutes, the `outbox` commands) read the table.
    conn.execute_batch(
        "CREATE INDEX IF NOT EXISTS outbox_by_tag ON outbox (tag) WHERE tag IS NOT NULL;
         CREATE INDEX IF NOT EXISTS outbox_by_sink ON outbox (sink, state, id);
         DROP INDEX IF EXISTS outbox_by_state;",
    )
}

/// The state of the newest row carrying `tag` (`None`: no such row, e.g. pruned or purged).
pub(crate) fn tag_state(conn: &Connection, tag: &str) -> rusqlite::Result<Option<RowState>> {
    conn.prepare_cached("SELECT state FROM outbox WHERE tag = ?1 ORDER BY id DESC LIMIT 1")?
        .query_row([tag], |row| Ok(RowState::parse(&row.get::<_, String>(0)?)))
        .optional()
}

pub(crate) fn count_rows(conn: &Connection) -> rusqlite::Result<OutboxCounts> {
    Ok(count_rows_by_sink(conn)?.values().fold(OutboxCounts::default(), |total, counts| total.plus(counts)))
}

/// Row counts of each sink that has rows.
pub(crate) fn count_rows_by_sink(conn: &Connection) -> rusqlite::Result<BTreeMap<String, OutboxCounts>> {
    let mut by_sink: BTreeMap<String, OutboxCounts> = BTreeMap::new();
    let mut statement = conn.prepare_cached("SELECT sink, state, COUNT(*) FROM outbox GROUP BY sink, state")?;
    let mut rows = statement.query([])?;
    while let Some(row) = rows.next()? {
        let counts = by_sink.entry(row.get(0)?).or_default();
        let count = u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0);
        match RowState::parse(&row.get::<_, String>(1)?) {
            RowState::Pending => counts.pending = count,
            RowState::Delivered => counts.delivered = count,
            RowState::Dead => counts.dead = count,
        }
    }
    Ok(by_sink)
}

fn bump_requeue_generation(conn: &Connection) -> rusqlite::Result<i64> {
    conn.execute("UPDATE outbox_meta SET value = value + 1 WHERE key = 'requeue_gen'", [])?;
    conn.query_row("SELECT value FROM outbox_meta WHERE key = 'requeue_gen'", [], |row| row.get(0))
}

/// The requeue generation: bumped by every admin change a running delivery must notice.
pub(crate) fn requeue_generation(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT value FROM outbox_meta WHERE key = 'requeue_gen'", [], |row| row.get(0))
}

/// A consistent read of pending rows.
pub(crate) struct PendingSnapshot {
    pub rows: Vec<PendingRow>,
    /// The requeue generation the snapshot saw.
    pub generation: i64,
    /// The highest id ever assigned when the snapshot was taken: any row inserted later has a higher one.
    pub max_id: i64,
}

/// Sink `sink`'s pending rows requeued after generation `after` (all its pending rows when
/// `after` is `None`), read in one snapshot with the current generation.
pub(crate) fn pending_rows(conn: &mut Connection, sink: &str, after: Option<i64>) -> rusqlite::Result<PendingSnapshot> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Deferred)?;
    let generation = requeue_generation(&tx)?;
    let max_id: i64 =
        tx.query_row("SELECT COALESCE(MAX(seq), 0) FROM sqlite_sequence WHERE name = 'outbox'", [], |row| row.get(0))?;
    let rows = {
        let mut statement = tx.prepare_cached(
            "SELECT id, unique_id, next_attempt_at FROM outbox
             WHERE sink = ?2 AND state = 'pending' AND requeue_gen > ?1 ORDER BY id",
        )?;
        let rows = statement
            .query_map(params![after.unwrap_or(i64::MIN), sink], |row| {
                Ok(PendingRow { id: row.get(0)?, unique_id: row.get(1)?, due_ms: row.get(2)?, fresh: None })
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows
    };
    tx.commit()?;
    Ok(PendingSnapshot { rows, generation, max_id })
}

/// One row with its payload, or `None` when it no longer exists.
pub(crate) fn load_row(conn: &Connection, id: i64) -> rusqlite::Result<Option<StoredRow>> {
    let mut statement = conn.prepare_cached(
        "SELECT unique_id, kind, status, once_key, body, path, delete_after, state, tries, enqueued_at, tag, sink,
                body_type
         FROM outbox WHERE id = ?1",
    )?;
    statement
        .query_row([id], |row| {
            let kind: String = row.get(1)?;
            let kind = if kind == "upload" {
                let path: Vec<u8> = row.get(5)?;
                RequestKind::Upload {
                    path: PathBuf::from(std::ffi::OsString::from_vec(path)),
                    delete_after: row.get(6)?,
                    summary: row.get(4)?,
                }
            } else {
                RequestKind::Form {
                    status: row.get(2)?,
                    once_per_call: row.get::<_, Option<String>>(3)?.is_some(),
                    body: row.get::<_, Option<String>>(4)?.unwrap_or_default(),
                    json: row.get::<_, Option<String>>(12)?.as_deref() == Some("json"),
                }
            };
            Ok(StoredRow {
                request: Request { unique_id: row.get(0)?, kind, tag: row.get(10)?, sink: row.get(11)? },
                state: RowState::parse(&row.get::<_, String>(7)?),
                tries: row.get(8)?,
                enqueued_ms: row.get(9)?,
            })
        })
        .optional()
}

/// Inserts one request unless it is a start/ended event already stored; returns its id if inserted.
pub(crate) fn insert_request(conn: &Connection, request: &Request, now: i64) -> rusqlite::Result<Option<i64>> {
    let mut statement = conn.prepare_cached(
        "INSERT OR IGNORE INTO outbox
         (unique_id, kind, status, once_key, body, path, delete_after, enqueued_at, next_attempt_at, tag, sink,
          body_type)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9, ?10, ?11)",
    )?;
    let (kind, body, path, delete_after, body_type) = match &request.kind {
        RequestKind::Form { body, json, .. } => ("form", Some(body.as_str()), None, false, json.then_some("json")),
        RequestKind::Upload { path, delete_after, summary } => {
            ("upload", summary.as_deref(), Some(path.as_os_str().as_bytes()), *delete_after, None)
        }
    };
    let inserted = statement.execute(params![
        request.unique_id,
        kind,
        request.status(),
        request.once_key(),
        body,
        path,
        delete_after,
        now,
        request.tag,
        request.sink,
        body_type
    ])?;
    Ok((inserted == 1).then(|| conn.last_insert_rowid()))
}

const PRUNE_BOUNDARY: &str = "SELECT id FROM outbox INDEXED BY outbox_by_sink
     WHERE sink = ?1 AND state = 'delivered' AND finished_at >= ?2 ORDER BY id LIMIT 1";
const PRUNE_CHUNK: &str = "DELETE FROM outbox WHERE id IN
     (SELECT id FROM outbox INDEXED BY outbox_by_sink
      WHERE sink = ?1 AND state = 'delivered' AND id < ?2 AND finished_at < ?3 ORDER BY id LIMIT ?4)";

/// Where pruning of sink `sink`'s delivered rows stops: the id of its first delivered row, in
/// id order, finished at or after `cutoff` (`None`: every delivered row is older).
///
/// Pruning walks a sink's delivered rows in id order through `outbox_by_sink` and stops at the
/// first one still kept, so it reads what it deletes and not the whole table: an outbox at its
/// million-row cap was read end to end every ten minutes, holding up the runtime (and with it
/// `/forward`) for half a second. Rows are delivered nearly in the order they were stored; one
/// delivered late (after hours of retries) holds the rows behind it until it is old enough
/// itself, so they are kept a little longer, never shorter.
pub(crate) fn prune_boundary(conn: &Connection, sink: &str, cutoff: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached(PRUNE_BOUNDARY)?.query_row(params![sink, cutoff], |row| row.get(0)).optional()
}

/// Deletes up to `chunk` of sink `sink`'s delivered rows finished before `cutoff` with ids below
/// `below` (see [`prune_boundary`]), oldest first; returns how many.
pub(crate) fn prune_chunk(
    conn: &Connection,
    sink: &str,
    cutoff: i64,
    below: Option<i64>,
    chunk: i64,
) -> rusqlite::Result<usize> {
    conn.prepare_cached(PRUNE_CHUNK)?.execute(params![sink, below.unwrap_or(i64::MAX), cutoff, chunk])
}

/// Stores a pickup promise (a second promise of the same file of the same call is a no-op).
pub(crate) fn promise_pickup(conn: &Connection, promise: &PickupPromise) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO pickups (unique_id, file, uploads) SELECT ?1, ?2, ?3
         WHERE NOT EXISTS (SELECT 1 FROM pickups WHERE unique_id = ?1 AND file = ?2)",
    )?
    .execute(params![promise.unique_id, promise.file, promise.stored_routes()])?;
    Ok(())
}

/// Forgets a kept (or given up) pickup promise.
pub(crate) fn forget_pickup(conn: &Connection, unique_id: &str, file: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM pickups WHERE unique_id = ?1 AND file = ?2")?.execute(params![unique_id, file])?;
    Ok(())
}

/// The pickups promised and not yet kept, in the order they were promised.
pub(crate) fn pending_pickups(conn: &Connection) -> rusqlite::Result<Vec<PickupPromise>> {
    let mut statement = conn.prepare("SELECT unique_id, file, uploads FROM pickups ORDER BY id")?;
    let rows = statement.query_map([], |row| {
        Ok(PickupPromise::from_stored(row.get(0)?, row.get(1)?, row.get::<_, Option<String>>(2)?.as_deref()))
    })?;
    rows.collect()
}

pub(crate) use crate::wallclock::now_ms;

#[cfg(test)]
mod tests {
    use super::super::request::{UploadRoute, HELPDESK_SINK};
    use super::*;

    #[test]
    fn a_file_from_before_tags_gets_the_column_and_keeps_its_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(OUTBOX_FILE);
        {
            let old = Connection::open(&path).expect("create");
            let without_tag = SCHEMA.replace(",\n    tag             TEXT -- see Request::tagged", "");
            assert!(!without_tag.contains("tag "), "the old schema has no tag column");
            old.execute_batch(&without_tag).expect("old schema");
            old.pragma_update(None, "user_version", 1).expect("version");
            old.execute(
                "INSERT INTO outbox (unique_id, kind, status, path, enqueued_at, next_attempt_at)
                 VALUES ('1.1', 'upload', 'record', X'2F612E776176', 5, 5)",
                [],
            )
            .expect("old row");
        }
        let conn = connect(&path, true).expect("reopened");
        let row = load_row(&conn, 1).expect("read").expect("the old row");
        assert_eq!(row.request.tag(), None);
        assert_eq!(row.request.upload_path(), Some(Path::new("/a.wav")));
        let tagged = Request::upload("1.2", "/b.wav", true).tagged("ari-recording:b");
        let id = insert_request(&conn, &tagged, 6).expect("insert").expect("inserted");
        assert_eq!(load_row(&conn, id).expect("read").expect("row").request.tag(), Some("ari-recording:b"));
        assert_eq!(tag_state(&conn, "ari-recording:b").expect("state"), Some(RowState::Pending));
        assert_eq!(tag_state(&conn, "ari-recording:none").expect("state"), None);
    }

    fn delivered_row(conn: &Connection, sink: &str, state: RowState, finished_at: Option<i64>) -> i64 {
        conn.execute(
            "INSERT INTO outbox (unique_id, kind, status, body, state, enqueued_at, next_attempt_at, finished_at, sink)
             VALUES ('1.1', 'form', 'incoming call answered', 'x=1', ?1, 1, 1, ?2, ?3)",
            params![state.as_str(), finished_at, sink],
        )
        .expect("row");
        conn.last_insert_rowid()
    }

    fn ids(conn: &Connection) -> Vec<i64> {
        let mut statement = conn.prepare("SELECT id FROM outbox ORDER BY id").expect("sql");
        let ids = statement.query_map([], |row| row.get(0)).expect("query").collect::<rusqlite::Result<Vec<i64>>>();
        ids.expect("ids")
    }

    #[test]
    fn pruning_stops_at_a_sinks_first_delivered_row_still_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = connect(&dir.path().join(OUTBOX_FILE), true).expect("outbox");
        let (old, cutoff, fresh) = (100, 200, 300);
        let old_1 = delivered_row(&conn, "helpdesk", RowState::Delivered, Some(old));
        let dead = delivered_row(&conn, "helpdesk", RowState::Dead, Some(old));
        let pending = delivered_row(&conn, "helpdesk", RowState::Pending, None);
        let elsewhere = delivered_row(&conn, "warehouse", RowState::Delivered, Some(old));
        let old_2 = delivered_row(&conn, "helpdesk", RowState::Delivered, Some(old));
        // Delivered late (after retries): it holds the older-finished row behind it.
        let late = delivered_row(&conn, "helpdesk", RowState::Delivered, Some(fresh));
        let held = delivered_row(&conn, "helpdesk", RowState::Delivered, Some(old));

        let below = prune_boundary(&conn, "helpdesk", cutoff).expect("boundary");
        assert_eq!(below, Some(late));
        assert_eq!(prune_chunk(&conn, "helpdesk", cutoff, below, 1).expect("chunk"), 1, "a chunk at most");
        assert_eq!(prune_chunk(&conn, "helpdesk", cutoff, below, 10).expect("chunk"), 1);
        assert!(!ids(&conn).contains(&old_1) && !ids(&conn).contains(&old_2));
        assert_eq!(ids(&conn), vec![dead, pending, elsewhere, late, held], "other states and sinks untouched");

        assert_eq!(prune_boundary(&conn, "warehouse", cutoff).expect("boundary"), None, "all its rows are old");
        assert_eq!(prune_chunk(&conn, "warehouse", cutoff, None, 10).expect("chunk"), 1);
        // Once the late row is old too, the one it held goes with it.
        let later = fresh + 1;
        let below = prune_boundary(&conn, "helpdesk", later).expect("boundary");
        assert_eq!(below, None);
        assert_eq!(prune_chunk(&conn, "helpdesk", later, below, 10).expect("chunk"), 2);
        assert_eq!(ids(&conn), vec![dead, pending]);
    }

    /// What pruning reads does not grow with the rows it keeps: ten thousand recent delivered
    /// rows cost a pass that finds nothing to delete a handful of steps (a read of the whole
    /// table took one per row).
    #[test]
    fn pruning_reads_what_it_deletes_not_the_whole_outbox() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut conn = connect(&dir.path().join(OUTBOX_FILE), true).expect("outbox");
        let (cutoff, kept) = (1_000, 10_000);
        let tx = conn.transaction().expect("tx");
        for _ in 0..kept {
            delivered_row(&tx, "helpdesk", RowState::Delivered, Some(cutoff + 1));
        }
        tx.commit().expect("commit");
        let steps = |sql: &str, params: &[&dyn rusqlite::ToSql]| -> i32 {
            let mut statement = conn.prepare(sql).expect("sql");
            let mut rows = statement.query(params).expect("query");
            while rows.next().expect("step").is_some() {}
            drop(rows);
            statement.get_status(rusqlite::StatementStatus::VmStep)
        };
        let boundary = steps(PRUNE_BOUNDARY, &[&"helpdesk", &cutoff]);
        let chunk = steps(PRUNE_CHUNK, &[&"helpdesk", &1_i64, &cutoff, &5_000_i64]);
        assert!(boundary < 100 && chunk < 100, "steps: boundary {boundary}, chunk {chunk}");
        let whole_table =
            steps("SELECT id FROM outbox WHERE state = 'delivered' AND finished_at < ?1 LIMIT 5000", &[&cutoff]);
        assert!(whole_table > kept, "the measure sees a scan: {whole_table} steps");
        assert_eq!(ids(&conn).len(), kept as usize, "nothing was old enough");
    }

    #[test]
    fn pickup_promises_are_kept_once_in_order_until_forgotten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conn = connect(&dir.path().join(OUTBOX_FILE), true).expect("outbox");
        let promise = |unique_id: &str, file: &str, sink: &str| PickupPromise {
            unique_id: unique_id.into(),
            file: file.into(),
            routes: vec![UploadRoute { sink: sink.into(), summary: Some("{}".into()) }],
        };
        let first = promise("1.1", "/rec/a.wav", "warehouse");
        let second = promise("1.1", "/rec/b.wav", "helpdesk");
        let other = promise("1.2", "/rec/c.wav", "helpdesk");
        for stored in [&first, &second, &first, &other] {
            promise_pickup(&conn, stored).expect("promise");
        }
        assert_eq!(pending_pickups(&conn).expect("read"), vec![first.clone(), second.clone(), other.clone()]);
        forget_pickup(&conn, "1.1", "/rec/a.wav").expect("forget");
        assert_eq!(pending_pickups(&conn).expect("read"), vec![second, other.clone()]);
        conn.execute("UPDATE pickups SET uploads = 'not json' WHERE file = '/rec/b.wav'", []).expect("spoil");
        let read = pending_pickups(&conn).expect("read");
        assert_eq!(
            read[0].routes,
            vec![UploadRoute { sink: HELPDESK_SINK.into(), summary: None }],
            "the helpdesk alone"
        );
        assert_eq!(read[1], other);
    }
}
