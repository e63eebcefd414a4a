//! The durable road from the call engine to the helpdesk: every event goes into the SQLite
//! outbox in engine order, ended calls into the call history (for `/forward`), and finished
//! calls' MixMonitor files to the recordings pickup.

use tokio::task::JoinSet;

use crate::calls::{Effect, Output, RecordingRef};
use crate::deliver::{DeliveryHandle, Request};
use crate::history::History;
use crate::metrics;
use crate::recordings::Pickup;

use super::sink::{Sink, SinkFuture};

/// Hands engine outputs to the outbox, the history and the pickup.
pub struct HelpdeskSink {
    delivery: DeliveryHandle,
    zone: jiff::tz::TimeZone,
    history: Option<History>,
    pickup: Option<Pickup>,
    /// Outbox commits still being awaited; their order was fixed when they were enqueued.
    storing: JoinSet<()>,
    /// A call's recordings, collected until the engine's next output so that the pickup gets
    /// them as one batch and uploads them in the order they were started.
    recordings: Vec<RecordingRef>,
}

impl HelpdeskSink {
    pub fn new(
        delivery: DeliveryHandle,
        zone: jiff::tz::TimeZone,
        history: Option<History>,
        pickup: Option<Pickup>,
    ) -> Self {
        Self { delivery, zone, history, pickup, storing: JoinSet::new(), recordings: Vec::new() }
    }
}

impl Sink for HelpdeskSink {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        Box::pin(async move {
            // The engine emits a call's recordings back to back (then CallClosed).
            let same_call = matches!(output, Output::Recording(r) if self.recordings.first().is_none_or(|first| first.unique_id == r.unique_id));
            if !same_call {
                self.flush_recordings().await;
            }
            match output {
                Output::Event(event) => {
                    // The outbox fixes the order at this call; the commit (group fsync) is
                    // awaited off the sink's path so one slow fsync does not hold every event.
                    let stored = self.delivery.enqueue(vec![Request::event(event, &self.zone)]);
                    let (unique_id, status) = (event.unique_id.clone(), event.status.text().into_owned());
                    self.storing.spawn(async move {
                        if let Err(error) = stored.await {
                            metrics::counter(
                                "deskhook_events_not_stored_total",
                                "Helpdesk events the outbox refused (full, disk error, stopped).",
                            )
                            .inc();
                            tracing::error!(unique_id, status, "helpdesk event NOT stored: {error}");
                        }
                    });
                    while self.storing.try_join_next().is_some() {}
                    if let (Some(history), true) = (&self.history, event.status.is_ended()) {
                        let (history, event) = (history.clone(), event.clone());
                        tokio::task::spawn_blocking(move || {
                            if let Err(error) = history.record(&event) {
                                tracing::warn!(unique_id = event.unique_id, "call not added to the history: {error}");
                            }
                        });
                    }
                }
                Output::Recording(recording) => self.recordings.push(recording.clone()),
                // After the call's events (and, at its close, its recordings' journaling above).
                Output::Effect(Effect::CallCheckpoint { unique_id, checkpoint }) => self
                    .delivery
                    .save_open_call(unique_id.clone(), checkpoint.as_ref().map(|checkpoint| checkpoint.to_json())),
                Output::Effect(Effect::Alive { at }) => self.delivery.mark_alive(*at),
                Output::Effect(_) => {}
            }
        })
    }

    fn close(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            self.flush_recordings().await;
            while self.storing.join_next().await.is_some() {}
        })
    }
}

impl HelpdeskSink {
    async fn flush_recordings(&mut self) {
        if self.recordings.is_empty() {
            return;
        }
        let batch = std::mem::take(&mut self.recordings);
        match &self.pickup {
            Some(pickup) => pickup.submit(batch).await,
            None => tracing::debug!(count = batch.len(), "recordings ignored: no pickup configured"),
        }
    }
}

/// Everything behind [`HelpdeskSink`], opened from the config: the outbox and its sender, the
/// call history and (in mixmonitor mode) the recordings pickup.
pub struct HelpdeskPipeline {
    pub delivery: DeliveryHandle,
    pub history: Option<History>,
    pub pickup: Option<Pickup>,
    /// The calls the previous run left open, for [`super::DaemonLinks::resume`].
    pub open_calls: crate::deliver::OpenCalls,
}

impl HelpdeskPipeline {
    /// Opens the stores under `storage.dir` and starts delivery on the current runtime. The
    /// outbox is required (an error names the fix); the history and pickup are best effort.
    pub fn open(config: &crate::config::Config) -> Result<HelpdeskPipeline, crate::deliver::DeliverError> {
        let outbox = crate::deliver::Outbox::open(&config.storage.dir, &config.helpdesk)?;
        let open_calls = outbox.open_calls()?;
        let delivery = crate::deliver::Delivery::start(outbox, &config.helpdesk.webhook_url, &config.helpdesk)?;
        let phones = crate::forward::PhoneNormalizer::new(&config.forward.default_country);
        let history = match History::open(&config.storage.dir, phones) {
            Ok(history) => Some(history),
            Err(error) => {
                tracing::error!("call history unavailable (the /forward history resolver answers nothing): {error}");
                None
            }
        };
        let pickup = if config.recordings.mode == crate::config::RecordingMode::Mixmonitor {
            match Pickup::start(&config.recordings, &config.storage.dir, delivery.clone()) {
                Ok(pickup) => Some(pickup),
                Err(error) => {
                    tracing::error!("MixMonitor recordings will not be uploaded: {error}");
                    None
                }
            }
        } else {
            None
        };
        Ok(HelpdeskPipeline { delivery, history, pickup, open_calls })
    }

    /// The sink that feeds this pipeline.
    pub fn sink(&self, zone: jiff::tz::TimeZone) -> HelpdeskSink {
        HelpdeskSink::new(self.delivery.clone(), zone, self.history.clone(), self.pickup.clone())
    }
}
