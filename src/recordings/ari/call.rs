//! One call's recording task. Each conversation start records a new part (snoop on the client's
//! channel, record the snoop); when the call closes, each part in order is stopped, awaited
//! among the stored recordings, downloaded and handed to the outbox. Every step is journaled
//! before the next one begins, so a restart resumes a part where it stood.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::ari::{AriError, DownloadError};
use crate::deliver::{DeliverError, Request};
use crate::wallclock::now_ms;

use super::journal::{Closed, Journal, Part, PartState};
use super::{AriRecorderSettings, Command, Context, DELIVERY_TAG_PREFIX};

/// A fresh snoop may not be in Stasis yet when `record` arrives (Asterisk answers 409): how
/// often and how fast that is retried.
const RECORD_TRIES: u32 = 20;
const RECORD_RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How often a stopped recording is looked for among the stored ones.
const STORED_POLL: Duration = Duration::from_millis(200);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(30);

/// What the task knows of its call when it starts.
pub(super) enum Resumed {
    /// A conversation just started.
    Fresh,
    /// A previous run left the call open: it may still be talking (the engine will say so
    /// after its resync) or have ended while deskhook was away.
    Open,
    /// A previous run saw the call close and had not finished its parts.
    Closed(Closed),
}

/// The pause before retry number `attempt` (0-based): doubling from `first_retry` with jitter, capped.
pub(super) fn retry_pause(settings: &AriRecorderSettings, attempt: u32) -> Duration {
    crate::backoff::pause(settings.first_retry, MAX_RETRY_PAUSE, attempt.saturating_add(1))
}

pub(super) async fn run(
    ctx: Arc<Context>,
    unique_id: String,
    mut parts: Vec<Part>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    resumed: Resumed,
) {
    let mut orphan_deadline = None;
    match resumed {
        Resumed::Fresh => {}
        Resumed::Open => orphan_deadline = Some(Instant::now() + ctx.settings.orphan_grace),
        Resumed::Closed(closed) => {
            finish(&ctx, &unique_id, std::mem::take(&mut parts), closed).await;
            return;
        }
    }
    loop {
        let command = tokio::select! {
            command = commands.recv() => command,
            _ = sleep_until(orphan_deadline) => {
                tracing::info!(
                    %unique_id,
                    "call left open by the previous run was not mentioned since; taking it as ended while deskhook \
                     was away and uploading what was recorded"
                );
                orphan_deadline = None;
                // Later news of this call goes to a new task.
                commands.close();
                Some(Command::Close { answered: true })
            }
        };
        match command {
            None => return,
            Some(Command::Start { client_channel_id }) => {
                orphan_deadline = None;
                start_part(&ctx, &unique_id, &client_channel_id, &mut parts).await;
            }
            Some(Command::Close { answered }) => {
                let closed = Closed { answered, at_ms: now_ms() };
                let id = unique_id.clone();
                journal(&ctx, move |journal| journal.close_call(&id, answered, closed.at_ms)).await;
                finish(&ctx, &unique_id, std::mem::take(&mut parts), closed).await;
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Runs a journal change off the async workers; `None` (logged) when it failed.
async fn journal<T: Send + 'static>(
    ctx: &Context,
    change: impl FnOnce(&Journal) -> Result<T, rusqlite::Error> + Send + 'static,
) -> Option<T> {
    let journal = ctx.journal.clone();
    match tokio::task::spawn_blocking(move || change(&journal)).await {
        Ok(Ok(value)) => Some(value),
        Ok(Err(error)) => {
            tracing::error!(
                path = %ctx.journal.path().display(),
                %error,
                "cannot write the ARI recordings journal; a restart now could lose a recording \
                 (is storage.dir writable and the disk not full?)"
            );
            None
        }
        Err(_) => None,
    }
}

async fn set_state(ctx: &Context, part: &mut Part, state: PartState, file: Option<PathBuf>) {
    part.state = state;
    if file.is_some() {
        part.file.clone_from(&file);
    }
    let name = part.name.clone();
    journal(ctx, move |journal| journal.set_state(&name, state, file.as_deref())).await;
}

async fn forget(ctx: &Context, part: &Part) {
    let name = part.name.clone();
    journal(ctx, move |journal| journal.finish_part(&name)).await;
}

/// Records a new part of the call from `client`'s channel, unless the last part's recording
/// is still running (its snoop survived, e.g. the websocket was only replaced).
async fn start_part(ctx: &Context, unique_id: &str, client: &str, parts: &mut Vec<Part>) {
    if let Some(last) = parts.last().filter(|part| part.state == PartState::Recording) {
        if ctx.client.live_recording(&last.name).await.is_ok() {
            tracing::debug!(%unique_id, recording = %last.name, "still recording; no new part needed");
            return;
        }
    }
    let id = unique_id.to_string();
    let Some(mut part) = journal(ctx, move |journal| journal.new_part(&id)).await else {
        ctx.meters.failed.inc();
        return;
    };
    let settings = &ctx.settings;
    if let Err(error) = ctx.client.snoop(client, &settings.app, &part.snoop_id).await {
        match &error {
            AriError::NotFound { .. } => {
                tracing::info!(%unique_id, channel = client, "the client's channel ended before recording could start")
            }
            _ => {
                ctx.meters.failed.inc();
                tracing::warn!(
                    %unique_id,
                    channel = client,
                    %error,
                    fix = %error.fix(),
                    "cannot record the call: snooping on the client's channel failed"
                );
            }
        }
        forget(ctx, &part).await;
        return;
    }
    let mut tries = 1;
    let recorded = loop {
        match ctx.client.record(&part.snoop_id, &part.name, &settings.format).await {
            Ok(_) => break Ok(()),
            Err(AriError::Status { status: 409, .. }) if tries < RECORD_TRIES => {
                tries += 1;
                tokio::time::sleep(RECORD_RETRY_PAUSE).await;
            }
            Err(error) => break Err(error),
        }
    };
    if let Err(error) = recorded {
        ctx.meters.failed.inc();
        let fix = match &error {
            AriError::Status { status: 422, .. } => format!(
                "recordings.format = {:?} is not a format this Asterisk records; use \"wav\" or one listed by \
                 `asterisk -rx \"core show file formats\"`",
                settings.format
            ),
            AriError::Status { status: 409, .. } => format!(
                "the snoop channel never entered ARI application {:?}: check that no other program uses that \
                 application name ([ari] app) and that deskhook's websocket is connected",
                settings.app
            ),
            _ => error.fix(),
        };
        tracing::warn!(%unique_id, recording = %part.name, %error, %fix, "cannot record the call's snoop channel");
        let _ = ctx.client.hangup(&part.snoop_id).await;
        forget(ctx, &part).await;
        return;
    }
    set_state(ctx, &mut part, PartState::Recording, None).await;
    ctx.meters.started.inc();
    tracing::info!(%unique_id, part = part.number, recording = %part.name, "recording the call through ARI");
    parts.push(part);
}

/// Why a part will not be uploaded (already logged and counted), or why its task stops early.
enum Failure {
    /// Nothing to upload: the stored recording never appeared, vanished, or is empty.
    Missing(String),
    /// ARI, the disk or the outbox kept failing until the part's deadline.
    GaveUp(String),
    /// Delivery has stopped (deskhook is shutting down): the journal keeps the part for the next start.
    Shutdown,
}

/// Takes every part of a closed call, in order, as far as it goes: to the outbox (answered
/// calls) or away (calls that were never answered upload nothing).
async fn finish(ctx: &Context, unique_id: &str, parts: Vec<Part>, closed: Closed) {
    let remaining_ms = closed.at_ms.saturating_add(ctx.settings.give_up_after.as_millis() as i64) - now_ms();
    let deadline = Instant::now() + Duration::from_millis(u64::try_from(remaining_ms).unwrap_or(0));
    for mut part in parts {
        if !closed.answered {
            discard(ctx, &part).await;
            continue;
        }
        match advance(ctx, unique_id, &mut part, deadline).await {
            Ok(()) => {}
            Err(Failure::Shutdown) => return,
            Err(Failure::Missing(reason)) => {
                ctx.meters.missing.inc();
                tracing::warn!(%unique_id, recording = %part.name, "recording part not uploaded: {reason}");
                forget(ctx, &part).await;
            }
            Err(Failure::GaveUp(reason)) => {
                ctx.meters.missing.inc();
                tracing::error!(
                    %unique_id,
                    recording = %part.name,
                    "recording part not uploaded after retrying for recordings.wait_timeout: {reason}; it stays on \
                     Asterisk as stored recording {:?} (the spool's recording/ directory)",
                    part.name
                );
                forget(ctx, &part).await;
            }
        }
    }
}

/// Stop → stored → downloaded → queued, from wherever the part stands.
async fn advance(ctx: &Context, unique_id: &str, part: &mut Part, deadline: Instant) -> Result<(), Failure> {
    loop {
        match part.state {
            PartState::Starting | PartState::Recording => {
                stop(ctx, part, deadline).await?;
                set_state(ctx, part, PartState::Stopped, None).await;
            }
            PartState::Stopped => {
                let format = wait_stored(ctx, part, deadline).await?;
                let file = download(ctx, unique_id, part, &format, deadline).await?;
                set_state(ctx, part, PartState::Downloaded, Some(file)).await;
            }
            PartState::Downloaded => {
                enqueue(ctx, unique_id, part, deadline).await?;
                set_state(ctx, part, PartState::Queued, None).await;
                ctx.meters.queued.inc();
            }
            // The stored recording is deleted once the helpdesk has the upload.
            PartState::Queued => return Ok(()),
        }
    }
}

/// Logs the first of a run of failures as a warning, the rest at debug level.
fn report_retry(unique_id: &str, part: &Part, attempt: u32, what: &str, error: &dyn std::fmt::Display, fix: &str) {
    if attempt == 0 {
        tracing::warn!(%unique_id, recording = %part.name, %error, fix, "{what} failed; retrying");
    } else {
        tracing::debug!(%unique_id, recording = %part.name, %error, "{what} failed again");
    }
}

async fn stop(ctx: &Context, part: &Part, deadline: Instant) -> Result<(), Failure> {
    let mut attempt = 0;
    loop {
        match ctx.client.stop_live_recording(&part.name).await {
            // Gone already: the snoop ended with the client's channel or with deskhook's websocket.
            Ok(()) | Err(AriError::NotFound { .. }) => break,
            Err(error) if Instant::now() < deadline => {
                report_retry(&part.unique_id, part, attempt, "stopping the recording", &error, &error.fix());
                tokio::time::sleep(retry_pause(&ctx.settings, attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(Failure::GaveUp(format!("stopping it failed: {error}"))),
        }
    }
    // The snoop normally ends with the channel it spies on; this makes sure.
    if let Err(error) = ctx.client.hangup(&part.snoop_id).await {
        if !matches!(error, AriError::NotFound { .. }) {
            tracing::debug!(snoop = %part.snoop_id, %error, "hanging up the snoop channel failed");
        }
    }
    Ok(())
}

/// Waits until the stopped recording is among the stored ones; returns its format.
async fn wait_stored(ctx: &Context, part: &Part, deadline: Instant) -> Result<String, Failure> {
    let appear_by = Instant::now() + ctx.settings.stored_wait;
    let mut attempt = 0;
    loop {
        match ctx.client.stored_recording(&part.name).await {
            Ok(stored) if stored.format.is_empty() => return Ok(ctx.settings.format.clone()),
            Ok(stored) => return Ok(stored.format),
            Err(AriError::NotFound { .. }) if Instant::now() < appear_by => tokio::time::sleep(STORED_POLL).await,
            Err(AriError::NotFound { .. }) => {
                return Err(Failure::Missing(format!(
                    "Asterisk has no stored recording of that name {} s after it was stopped",
                    ctx.settings.stored_wait.as_secs()
                )))
            }
            Err(error) if Instant::now() < deadline => {
                report_retry(&part.unique_id, part, attempt, "looking up the stored recording", &error, &error.fix());
                tokio::time::sleep(retry_pause(&ctx.settings, attempt)).await;
                attempt += 1;
            }
            Err(error) => return Err(Failure::GaveUp(format!("looking it up failed: {error}"))),
        }
    }
}

/// Downloads the stored recording to `storage.dir/recordings/<name>.<format>` (through a
/// `.part` file, so a complete name means a complete file).
async fn download(
    ctx: &Context,
    unique_id: &str,
    part: &Part,
    format: &str,
    deadline: Instant,
) -> Result<PathBuf, Failure> {
    let extension: String = format.chars().filter(|c| c.is_ascii_alphanumeric()).collect();
    let file = ctx.download_dir.join(format!("{}.{extension}", part.name));
    let partial = ctx.download_dir.join(format!("{}.{extension}.part", part.name));
    let mut attempt = 0;
    loop {
        let error = match ctx.client.download_stored_recording(&part.name, &partial).await {
            Ok(0) => {
                let _ = tokio::fs::remove_file(&partial).await;
                let _ = ctx.client.delete_stored_recording(&part.name).await;
                return Err(Failure::Missing("the stored recording is empty".into()));
            }
            Ok(bytes) => match tokio::fs::rename(&partial, &file).await {
                Ok(()) => {
                    tracing::info!(%unique_id, recording = %part.name, bytes, file = %file.display(), "recording downloaded");
                    return Ok(file);
                }
                Err(source) => DownloadError::File { path: file.display().to_string(), source },
            },
            Err(DownloadError::Ari(AriError::NotFound { .. })) => {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(Failure::Missing("the stored recording vanished before it was downloaded".into()));
            }
            Err(error) => error,
        };
        if Instant::now() >= deadline {
            let _ = tokio::fs::remove_file(&partial).await;
            return Err(Failure::GaveUp(format!("downloading it failed: {error}")));
        }
        let fix = match &error {
            DownloadError::Ari(AriError::Status { status: 403, .. }) => {
                "Asterisk cannot open the file: check the owner and permissions of its spool's recording/ directory"
                    .into()
            }
            DownloadError::Ari(ari) => ari.fix(),
            DownloadError::File { .. } => "free disk space in storage.dir".into(),
        };
        report_retry(unique_id, part, attempt, "downloading the recording", &error, &fix);
        tokio::time::sleep(retry_pause(&ctx.settings, attempt)).await;
        attempt += 1;
    }
}

/// Hands the downloaded part to the outbox (uploaded, then the local copy deleted).
async fn enqueue(ctx: &Context, unique_id: &str, part: &Part, deadline: Instant) -> Result<(), Failure> {
    let Some(file) = part.file.clone() else {
        return Err(Failure::Missing("the journal lost the downloaded file's name".into()));
    };
    let tag = format!("{DELIVERY_TAG_PREFIX}{}", part.name);
    // A restart between the outbox's commit and the journal's would otherwise upload it twice.
    if let Ok(states) = ctx.delivery.tag_states(vec![tag.clone()]).await {
        if states.iter().any(|(_, state)| state.is_some()) {
            return Ok(());
        }
    }
    let request = Request::upload(unique_id, &file, true).tagged(tag);
    let mut attempt = 0;
    loop {
        match ctx.delivery.enqueue(vec![request.clone()]).await {
            Ok(()) => {
                tracing::info!(%unique_id, recording = %part.name, "recording queued for upload");
                return Ok(());
            }
            Err(DeliverError::Stopped) => return Err(Failure::Shutdown),
            Err(error) if Instant::now() < deadline => {
                report_retry(unique_id, part, attempt, "queueing the upload", &error, "see `deskhook outbox list`");
                tokio::time::sleep(retry_pause(&ctx.settings, attempt)).await;
                attempt += 1;
            }
            Err(error) => {
                return Err(Failure::GaveUp(format!(
                    "the outbox refused it ({error}); the downloaded file stays at {}",
                    file.display()
                )))
            }
        }
    }
}

/// A part of a call that was never answered: nothing is uploaded, nothing is kept.
async fn discard(ctx: &Context, part: &Part) {
    let _ = ctx.client.stop_live_recording(&part.name).await;
    let _ = ctx.client.hangup(&part.snoop_id).await;
    let _ = ctx.client.delete_stored_recording(&part.name).await;
    if let Some(file) = &part.file {
        let _ = tokio::fs::remove_file(file).await;
    }
    forget(ctx, part).await;
}
