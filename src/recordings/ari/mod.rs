//! ARI recording mode (`recordings.mode = "ari"`): deskhook records every answered call itself,
//! with no dialplan change. When the engine says a conversation started, it snoops on the
//! client's channel into its own ARI application and records the snoop channel; when the call
//! closes it stops, waits for the stored recording, downloads it to `storage.dir/recordings/`
//! (streamed), queues the upload in the outbox, and deletes the stored recording on Asterisk
//! once the helpdesk accepted it.
//!
//! A snoop lives only while deskhook's websocket is connected, so after each reconnect the
//! engine announces the conversation again and recording resumes as a new part; the parts are
//! uploaded in order. Every step is journaled (`journal`), so a restart resumes where it stopped.
//! Each call has its own task (`call`): a slow download of one call never delays another's snoop.

mod call;
mod journal;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::ari::{AriClient, AriError};
use crate::calls::port::{Sink, SinkFuture};
use crate::calls::{Effect, Output};
use crate::config::Config;
use crate::deliver::{DeliveryHandle, RowState};
use crate::metrics::{self, Counter};

pub use journal::{part_name, snoop_id, JOURNAL_FILE};

/// Tags of the recorder's uploads in the outbox: the prefix, then the stored recording's name.
pub(crate) const DELIVERY_TAG_PREFIX: &str = "ari-recording:";

/// Where the downloaded recordings wait for their upload, under `storage.dir`.
pub(crate) const DOWNLOAD_DIR: &str = "recordings";

/// How the recorder works; [`AriRecorderSettings::from_config`] gives the daemon's.
#[derive(Debug, Clone)]
pub struct AriRecorderSettings {
    /// deskhook's ARI application (`[ari] app`): its snoop channels enter it.
    pub app: String,
    /// `recordings.format`: what Asterisk records in (`wav` unless its modules say otherwise).
    pub format: String,
    /// `storage.dir`: the journal and the downloaded recordings.
    pub storage_dir: PathBuf,
    /// How long a stopped recording may take to appear among the stored ones.
    pub stored_wait: Duration,
    /// `recordings.wait_timeout`: ARI or outbox failures after a call ended are retried this
    /// long, then the part is given up (and stays on Asterisk).
    pub give_up_after: Duration,
    /// A call a previous run left open that the engine does not mention for this long is
    /// taken as ended while deskhook was away, and its parts are uploaded.
    pub orphan_grace: Duration,
    /// The first pause between retries; it doubles up to 30 s.
    pub first_retry: Duration,
}

impl AriRecorderSettings {
    pub(crate) fn from_config(config: &Config) -> Self {
        Self {
            app: config.ari.app.clone(),
            format: config.recordings.format.clone(),
            storage_dir: config.storage.dir.clone(),
            stored_wait: Duration::from_secs(30),
            give_up_after: config.recordings.wait_timeout.get(),
            orphan_grace: Duration::from_secs(120),
            first_retry: Duration::from_secs(1),
        }
    }
}

/// Why the recorder cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AriRecorderError {
    #[error("cannot create {path}: {source}; make storage.dir writable by the deskhook user")]
    Dir { path: String, source: std::io::Error },
    #[error("cannot open the ARI recordings journal {path}: {source}; check that storage.dir is writable")]
    Journal { path: String, source: rusqlite::Error },
    #[error("the ARI recorder must be started inside a tokio runtime")]
    NoRuntime,
    #[error("{0}; fix: {fix}", fix = .0.fix())]
    Ari(#[from] AriError),
}

/// What a call's task is told, in engine order.
#[derive(Debug)]
enum Command {
    /// A conversation (re)started: record a new part from the client's channel.
    Start { client_channel_id: String },
    /// The call's ended event is out.
    Close { answered: bool },
}

/// The recorder's counters.
struct Meters {
    started: &'static Counter,
    failed: &'static Counter,
    queued: &'static Counter,
    missing: &'static Counter,
    deleted: &'static Counter,
}

impl Meters {
    fn register() -> Self {
        Self {
            started: metrics::counter!(
                "deskhook_ari_recordings_started_total",
                "Recording parts started through ARI snoop channels.",
            ),
            failed: metrics::counter!(
                "deskhook_ari_recordings_failed_total",
                "Recording parts that could not be started (snoop or record refused).",
            ),
            queued: metrics::counter!("deskhook_recordings_queued_total", "Recordings handed to the outbox."),
            missing: metrics::counter!(
                "deskhook_recordings_missing_total",
                "Recordings missing, empty or never completed.",
            ),
            deleted: metrics::counter!(
                "deskhook_ari_recordings_deleted_total",
                "Stored recordings deleted on Asterisk after the helpdesk accepted them.",
            ),
        }
    }
}

/// What every call task shares.
struct Context {
    client: AriClient,
    delivery: DeliveryHandle,
    journal: Arc<journal::Journal>,
    settings: AriRecorderSettings,
    download_dir: PathBuf,
    meters: Meters,
}

/// The ARI recorder: a [`Sink`] that acts on the engine's `ConversationStarted` and
/// `CallClosed` effects and ignores everything else. Put it after the sink that queues the
/// helpdesk events, so a call's ended event is in the outbox before its recording.
pub struct AriRecorder {
    ctx: Arc<Context>,
    calls: HashMap<String, mpsc::UnboundedSender<Command>>,
}

impl AriRecorder {
    /// The daemon's recorder, talking to `[ari]` with [`AriRecorderSettings::from_config`];
    /// see [`AriRecorder::start_with`].
    pub(crate) fn start(config: &Config, delivery: DeliveryHandle) -> Result<AriRecorder, AriRecorderError> {
        Self::start_with(AriRecorderSettings::from_config(config), AriClient::new(&config.ari)?, delivery)
    }

    /// Opens the journal, resumes what a previous run left (finishing closed calls, deleting
    /// stored recordings the helpdesk already has), and listens for accepted uploads. Call
    /// inside a tokio runtime.
    pub fn start_with(
        settings: AriRecorderSettings,
        client: AriClient,
        delivery: DeliveryHandle,
    ) -> Result<AriRecorder, AriRecorderError> {
        tokio::runtime::Handle::try_current().map_err(|_| AriRecorderError::NoRuntime)?;
        let download_dir = settings.storage_dir.join(DOWNLOAD_DIR);
        std::fs::create_dir_all(&download_dir)
            .map_err(|source| AriRecorderError::Dir { path: download_dir.display().to_string(), source })?;
        let path = settings.storage_dir.join(JOURNAL_FILE);
        let journal_error = |source| AriRecorderError::Journal { path: path.display().to_string(), source };
        let journal = Arc::new(journal::Journal::open(&path).map_err(journal_error)?);
        let unfinished = journal.unfinished().map_err(journal_error)?;
        let ctx = Arc::new(Context { client, delivery, journal, settings, download_dir, meters: Meters::register() });

        // At most one name per recording part the helpdesk accepted.
        let (deletions_tx, deletions_rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(delete_accepted(ctx.clone(), deletions_rx));
        let hook_tx = deletions_tx.clone();
        ctx.delivery.on_delivered(Arc::new(move |delivered| {
            if let Some(name) = delivered.tag.strip_prefix(DELIVERY_TAG_PREFIX) {
                let _ = hook_tx.send(name.to_string());
            }
        }));

        let mut recorder = AriRecorder { ctx: ctx.clone(), calls: HashMap::new() };
        let mut queued = Vec::new();
        if !unfinished.is_empty() {
            tracing::info!(calls = unfinished.len(), "resuming ARI recordings left by the previous run");
        }
        for call in unfinished {
            queued.extend(
                call.parts.iter().filter(|part| part.state == journal::PartState::Queued).map(|p| p.name.clone()),
            );
            // A call's commands: a handful per conversation, ended with the call.
            let (tx, rx) = mpsc::unbounded_channel();
            let resumed = match call.closed {
                Some(closed) => call::Resumed::Closed(closed),
                None => {
                    recorder.calls.insert(call.unique_id.clone(), tx);
                    call::Resumed::Open
                }
            };
            tokio::spawn(call::run(ctx.clone(), call.unique_id, call.parts, rx, resumed));
        }
        if !queued.is_empty() {
            tokio::spawn(reconcile_queued(ctx, queued, deletions_tx));
        }
        Ok(recorder)
    }

    fn command(&mut self, unique_id: &str, command: Command) {
        let command = match self.calls.get(unique_id) {
            Some(tx) => match tx.send(command) {
                Ok(()) => return,
                // That call's task has finished (it closed a call left by the previous run).
                Err(mpsc::error::SendError(command)) => command,
            },
            None => command,
        };
        self.calls.retain(|_, tx| !tx.is_closed());
        // A call's commands: a handful per conversation, ended with the call.
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(command);
        tokio::spawn(call::run(self.ctx.clone(), unique_id.to_string(), Vec::new(), rx, call::Resumed::Fresh));
        self.calls.insert(unique_id.to_string(), tx);
    }
}

impl Sink for AriRecorder {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        match output {
            Output::Effect(Effect::ConversationStarted { unique_id, client_channel_id }) => {
                self.command(unique_id, Command::Start { client_channel_id: client_channel_id.clone() });
            }
            Output::Effect(Effect::CallClosed { unique_id, answered }) => {
                // Calls that never talked have no task: nothing was recorded.
                if let Some(tx) = self.calls.remove(unique_id) {
                    let _ = tx.send(Command::Close { answered: *answered });
                }
            }
            _ => {}
        }
        Box::pin(async {})
    }

    fn close(&mut self) -> SinkFuture<'_> {
        // Call tasks finish what they are doing; the journal has the rest for the next start.
        self.calls.clear();
        Box::pin(async {})
    }
}

/// Deletes the stored recordings the helpdesk accepted, then forgets their parts.
async fn delete_accepted(ctx: Arc<Context>, mut names: mpsc::UnboundedReceiver<String>) {
    while let Some(name) = names.recv().await {
        let mut attempt = 0u32;
        let deleted = loop {
            match ctx.client.delete_stored_recording(&name).await {
                Ok(()) | Err(AriError::NotFound { .. }) => {
                    ctx.meters.deleted.inc();
                    tracing::debug!(recording = %name, "stored recording deleted on Asterisk after its upload");
                    break true;
                }
                Err(error) if attempt < 4 => {
                    tracing::debug!(recording = %name, %error, "deleting a stored recording failed; trying again");
                    tokio::time::sleep(call::retry_pause(&ctx.settings, attempt)).await;
                    attempt += 1;
                }
                Err(error) => {
                    tracing::warn!(
                        recording = %name,
                        %error,
                        fix = %error.fix(),
                        "cannot delete an uploaded recording on Asterisk; it stays in the spool's recording/ \
                         directory (deskhook tries again on its next start)"
                    );
                    break false;
                }
            }
        };
        if !deleted {
            continue;
        }
        let journal = ctx.journal.clone();
        let done = tokio::task::spawn_blocking(move || journal.finish_part(&name)).await;
        if !matches!(done, Ok(Ok(()))) {
            tracing::warn!(path = %ctx.journal.path().display(), "cannot update the ARI recordings journal");
        }
    }
}

/// Parts a previous run queued: the stored recordings of those the helpdesk has meanwhile
/// accepted (or whose rows are gone) are deleted now; the others wait for their delivery.
async fn reconcile_queued(ctx: Arc<Context>, names: Vec<String>, deletions: mpsc::UnboundedSender<String>) {
    let tags = names.iter().map(|name| format!("{DELIVERY_TAG_PREFIX}{name}")).collect();
    match ctx.delivery.tag_states(tags).await {
        Ok(states) => {
            for (tag, state) in states {
                if matches!(state, None | Some(RowState::Delivered)) {
                    if let Some(name) = tag.strip_prefix(DELIVERY_TAG_PREFIX) {
                        let _ = deletions.send(name.to_string());
                    }
                }
            }
        }
        Err(error) => tracing::warn!(%error, "cannot check which recordings the helpdesk already has"),
    }
}
