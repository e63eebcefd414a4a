//! The copier: moves the calls queued in the local history (`shared_pending`) to the shared
//! PostgreSQL history in batches, oldest first, taking them off the queue only once the
//! database has committed them. While the database is down the queue grows and the copier
//! retries with backoff; a restart resumes from the queue, so no committed call is lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::local::LocalStore;
use super::shared::{self, SharedError, SharedStore};
use crate::ari::events::EpochMillis;

/// Calls per copy statement.
const BATCH: usize = 1000;
/// The shared history is pruned of calls past the retention this often.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// Copies for as long as the runtime runs.
pub(super) async fn run(
    local: Arc<LocalStore>,
    shared: Arc<SharedStore>,
    wake: Arc<Notify>,
    cutoff: fn() -> EpochMillis,
) {
    let mut failures = 0u32;
    loop {
        let error = match connected(&local, &shared, &wake, cutoff, &mut failures).await {
            Ok(()) => continue,
            Err(error) => error,
        };
        failures = failures.saturating_add(1);
        if let SharedError::Local(_) = error {
            tracing::error!("call history: the calls to copy cannot be read ({error}); retrying");
        } else {
            let advice =
                super::advice::advice(&error, shared.target()).map(|advice| format!("; {advice}")).unwrap_or_default();
            shared.mark_down(&format!("calls are not copied ({error}){advice}; retrying"));
        }
        tokio::time::sleep(crate::backoff::pause(FIRST_RETRY, LONGEST_RETRY, failures)).await;
    }
}

/// One connection's life: migrate, then copy whatever is queued, waiting for more.
async fn connected(
    local: &Arc<LocalStore>,
    shared: &SharedStore,
    wake: &Notify,
    cutoff: fn() -> EpochMillis,
    failures: &mut u32,
) -> Result<(), SharedError> {
    let mut client = shared.connect().await?;
    shared::migrate(&mut client).await?;
    shared.mark_up();
    *failures = 0;
    let mut next_prune = Instant::now();
    loop {
        if Instant::now() >= next_prune {
            let pruned = shared::prune(&client, cutoff()).await?;
            tracing::debug!(pruned, "shared call history pruned");
            next_prune = Instant::now() + PRUNE_EVERY;
        }
        let store = local.clone();
        let (rows, up_to) = tokio::task::spawn_blocking(move || store.pending(BATCH))
            .await
            .map_err(|error| SharedError::Local(format!("the local history stopped: {error}")))?
            .map_err(|error| SharedError::Local(error.to_string()))?;
        let Some(up_to) = up_to else {
            pending().set(0);
            tokio::select! {
                () = wake.notified() => {}
                () = tokio::time::sleep_until(next_prune) => {}
            }
            continue;
        };
        if !rows.is_empty() {
            shared::upsert(&client, shared.pbx(), &rows).await?;
        }
        let store = local.clone();
        tokio::task::spawn_blocking(move || {
            store.forget_pending(up_to)?;
            store.pending_count()
        })
        .await
        .map_err(|error| SharedError::Local(format!("the local history stopped: {error}")))?
        .map(|left| pending().set(i64::try_from(left).unwrap_or(i64::MAX)))
        .map_err(|error| SharedError::Local(error.to_string()))?;
        crate::metrics::counter!("deskhook_history_shared_copied_total", "Calls copied to the shared call history.")
            .add(rows.len() as u64);
    }
}

fn pending() -> &'static crate::metrics::Gauge {
    crate::metrics::gauge!(
        "deskhook_history_shared_pending",
        "Calls in the local history waiting to be copied to the shared one.",
    )
}
