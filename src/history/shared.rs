//! The shared call history on PostgreSQL (`[storage] history = "postgres://…"`): every
//! PBX's deskhook copies its answered calls into one `deskhook_calls` table and every
//! `/forward` reads it. Lookups go through a small pool with a statement timeout and stop
//! asking for a few seconds after a failure, so a slow or dead database costs a caller at most
//! one `history_timeout`, once. The schema comes from `migrations/postgres`, applied in order
//! under an advisory lock (several deskhooks may start at once).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;
use tokio_postgres::Client;

use super::{HistoryRow, LastOperator};
use crate::ari::events::EpochMillis;
use crate::postgres::PgTarget;

/// The schema, in order; deskhook_schema records which are applied.
const MIGRATIONS: &[(i32, &str)] = &[(1, include_str!("../../migrations/postgres/0001_calls.sql"))];
/// The schema version this deskhook writes and reads.
pub(crate) const SCHEMA_VERSION: i32 = 1;
/// Taken while migrating, so two deskhooks starting together apply each step once.
const MIGRATION_LOCK: i64 = 0x6465_736b_686f_6f6b; // "deskhook"
/// After a failed lookup, lookups skip the database this long (the local copy answers).
const PAUSE_AFTER_FAILURE: Duration = Duration::from_secs(5);
/// Pooled lookup connections; lookups are one indexed read each.
const READERS: usize = 4;
/// A batch copy may take this long before the server cancels it.
const WRITE_STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Why the shared history could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error("{}", crate::failure::error_chain(.0))]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no answer within {} ms", .0.as_millis())]
    TimedOut(Duration),
    #[error("{0}")]
    Pool(String),
    /// The local history (the copy queue) failed, not the database.
    #[error("{0}")]
    Local(String),
    #[error("the database's schema is version {found}, newer than this deskhook knows ({SCHEMA_VERSION}); upgrade deskhook on this PBX")]
    SchemaNewer { found: i32 },
}

/// The shared history: where it is, which PBX this is, and the lookup pool.
pub struct SharedStore {
    target: PgTarget,
    pbx: String,
    timeout: Duration,
    readers: deadpool_postgres::Pool,
    skip_until: Mutex<Option<Instant>>,
    /// Whether the last lookup or copy failed (transitions are logged once).
    down: AtomicBool,
}

impl std::fmt::Debug for SharedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedStore").field("target", &self.target).field("pbx", &self.pbx).finish_non_exhaustive()
    }
}

impl SharedStore {
    /// The shared history at `url`, written as PBX `pbx`; lookups wait at most `timeout`.
    /// Nothing connects yet.
    pub fn new(url: &str, pbx: &str, timeout: Duration) -> Result<SharedStore, String> {
        let target = PgTarget::parse(url)?;
        let mut config = target.config.clone();
        with_statement_timeout(&mut config, timeout);
        let manager = deadpool_postgres::Manager::from_config(
            config,
            target.tls.clone(),
            deadpool_postgres::ManagerConfig { recycling_method: deadpool_postgres::RecyclingMethod::Fast },
        );
        let readers = deadpool_postgres::Pool::builder(manager)
            .max_size(READERS)
            .build()
            .map_err(|error| format!("cannot set up the connection pool ({error})"))?;
        Ok(SharedStore {
            target,
            pbx: pbx.to_string(),
            timeout,
            readers,
            skip_until: Mutex::new(None),
            down: AtomicBool::new(false),
        })
    }

    pub(crate) fn target(&self) -> &PgTarget {
        &self.target
    }

    pub(crate) fn pbx(&self) -> &str {
        &self.pbx
    }

    /// The newest call with `client` that ended at or after `since`, from every PBX; `None`
    /// when the database is skipped after a recent failure.
    pub async fn last_operator(
        &self,
        client: &str,
        since: EpochMillis,
    ) -> Option<Result<Option<LastOperator>, SharedError>> {
        if self
            .skip_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .is_some_and(|until| Instant::now() < until)
        {
            return None;
        }
        let found = match tokio::time::timeout(self.timeout, self.query_last(client, since)).await {
            Ok(found) => found,
            Err(_) => Err(SharedError::TimedOut(self.timeout)),
        };
        match &found {
            Ok(_) => self.mark_up(),
            Err(error) => {
                // A slow or unreachable server would cost every caller the timeout: pause. An
                // error the server answered at once (no table yet) costs nothing: ask again next time.
                let answered = matches!(error, SharedError::Postgres(error)
                    if error.as_db_error().is_some_and(|db| *db.code() != tokio_postgres::error::SqlState::QUERY_CANCELED));
                if !answered {
                    *self.skip_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
                        Some(Instant::now() + PAUSE_AFTER_FAILURE);
                }
                crate::metrics::counter!(
                    "deskhook_history_shared_failures_total",
                    "Shared-history lookups that failed or timed out (the local copy answered).",
                )
                .inc();
                self.mark_down(&format!("lookup failed ({error}); /forward answers from the local history"));
            }
        }
        Some(found)
    }

    async fn query_last(&self, client: &str, since: EpochMillis) -> Result<Option<LastOperator>, SharedError> {
        let connection = self.readers.get().await.map_err(|error| pool_error(error, &self.target))?;
        let select = connection
            .prepare_cached(
                "SELECT operator, ended_at, unique_id, pbx FROM deskhook_calls
                 WHERE client = $1 AND ended_at >= $2 ORDER BY ended_at DESC LIMIT 1",
            )
            .await?;
        let row = connection.query_opt(&select, &[&client, &to_time(since)]).await?;
        Ok(match row {
            None => None,
            Some(row) => Some(LastOperator {
                extension: row.try_get(0)?,
                ended_at: to_millis(row.try_get(1)?),
                unique_id: row.try_get(2)?,
                pbx: Some(row.try_get(3)?),
            }),
        })
    }

    /// A connection for copying and maintenance (its own, with a long statement timeout).
    pub(crate) async fn connect(&self) -> Result<Client, SharedError> {
        let mut config = self.target.config.clone();
        with_statement_timeout(&mut config, WRITE_STATEMENT_TIMEOUT);
        let (client, connection) = config.connect(self.target.tls.clone()).await?;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!("shared history connection closed: {}", crate::failure::error_chain(&error));
            }
        });
        Ok(client)
    }

    /// The database is reachable again: lookups use it at once.
    pub(crate) fn mark_up(&self) {
        *self.skip_until.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        if self.down.swap(false, Ordering::Relaxed) {
            tracing::info!(database = self.target.describe(), "shared call history reachable again");
        }
        shared_up().set(1);
    }

    /// The database failed: said once until it works again.
    pub(crate) fn mark_down(&self, what: &str) {
        shared_up().set(0);
        if !self.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(database = self.target.describe(), "shared call history: {what}");
        } else {
            tracing::debug!(database = self.target.describe(), "shared call history: {what}");
        }
    }
}

/// Brings the schema up to [`SCHEMA_VERSION`]; returns the version found before.
pub(crate) async fn migrate(client: &mut Client) -> Result<i32, SharedError> {
    let transaction = client.transaction().await?;
    transaction.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await?;
    transaction
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS deskhook_schema (
                 version    integer PRIMARY KEY,
                 applied_at timestamptz NOT NULL DEFAULT now()
             )",
        )
        .await?;
    let found: i32 =
        transaction.query_one("SELECT COALESCE(MAX(version), 0) FROM deskhook_schema", &[]).await?.try_get(0)?;
    if found > SCHEMA_VERSION {
        return Err(SharedError::SchemaNewer { found });
    }
    for (version, sql) in MIGRATIONS.iter().filter(|(version, _)| *version > found) {
        transaction.batch_execute(sql).await?;
        transaction.execute("INSERT INTO deskhook_schema (version) VALUES ($1)", &[version]).await?;
        tracing::info!(version, "shared call history: schema migration applied");
    }
    transaction.commit().await?;
    Ok(found)
}

/// The schema version in the database; `None` when deskhook has not created it yet.
pub(crate) async fn schema_version(client: &Client) -> Result<Option<i32>, SharedError> {
    let exists: bool = client.query_one("SELECT to_regclass('deskhook_schema') IS NOT NULL", &[]).await?.try_get(0)?;
    if !exists {
        return Ok(None);
    }
    Ok(Some(client.query_one("SELECT COALESCE(MAX(version), 0) FROM deskhook_schema", &[]).await?.try_get(0)?))
}

/// Copies `rows` of PBX `pbx` in one statement (a call copied again is overwritten).
pub(crate) async fn upsert(client: &Client, pbx: &str, rows: &[HistoryRow]) -> Result<(), SharedError> {
    let insert = client
        .prepare(
            "INSERT INTO deskhook_calls (pbx, unique_id, client, operator, direction, ended_at, talk_seconds)
             SELECT $1, * FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], $7::integer[])
             ON CONFLICT (pbx, unique_id) DO UPDATE SET
                 client = EXCLUDED.client, operator = EXCLUDED.operator, direction = EXCLUDED.direction,
                 ended_at = EXCLUDED.ended_at, talk_seconds = EXCLUDED.talk_seconds",
        )
        .await?;
    let ids: Vec<&str> = rows.iter().map(|row| row.unique_id.as_str()).collect();
    let clients: Vec<&str> = rows.iter().map(|row| row.client.as_str()).collect();
    let operators: Vec<&str> = rows.iter().map(|row| row.operator.as_str()).collect();
    let directions: Vec<&str> = rows.iter().map(|row| row.direction.as_str()).collect();
    let ended: Vec<SystemTime> = rows.iter().map(|row| to_time(row.ended_at)).collect();
    let talk: Vec<i32> = rows.iter().map(|row| i32::try_from(row.talk_seconds).unwrap_or(i32::MAX)).collect();
    client.execute(&insert, &[&pbx, &ids, &clients, &operators, &directions, &ended, &talk]).await?;
    Ok(())
}

/// Deletes calls (of every PBX) that ended before `before`; returns how many.
pub(crate) async fn prune(client: &Client, before: EpochMillis) -> Result<u64, SharedError> {
    Ok(client.execute("DELETE FROM deskhook_calls WHERE ended_at < $1", &[&to_time(before)]).await?)
}

fn shared_up() -> &'static crate::metrics::Gauge {
    crate::metrics::gauge!("deskhook_history_shared_up", "1 while the shared call history answers, else 0.")
}

fn with_statement_timeout(config: &mut tokio_postgres::Config, timeout: Duration) {
    let option = format!("-c statement_timeout={}", timeout.as_millis().max(1));
    let options = match config.get_options() {
        Some(existing) if !existing.is_empty() => format!("{existing} {option}"),
        _ => option,
    };
    config.options(&options);
}

fn pool_error(error: deadpool_postgres::PoolError, target: &PgTarget) -> SharedError {
    match error {
        deadpool_postgres::PoolError::Backend(error) => SharedError::Postgres(error),
        other => SharedError::Pool(format!("{}: {other}", target.host_port())),
    }
}

fn to_time(millis: EpochMillis) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(millis).unwrap_or_default())
}

fn to_millis(time: SystemTime) -> EpochMillis {
    time.duration_since(UNIX_EPOCH)
        .map(|since| EpochMillis::try_from(since.as_millis()).unwrap_or(EpochMillis::MAX))
        .unwrap_or_default()
}
