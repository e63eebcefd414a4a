//! The durable road from the call engine to the helpdesk: every event goes into the SQLite
//! outbox in engine order, ended calls into the call history (for `/forward`), and finished
//! calls' MixMonitor files to the recordings pickup.

use tokio::task::JoinSet;

use crate::calls::{Effect, Output, RecordingRef};
use crate::deliver::{DeliveryHandle, Request};
use crate::history::History;
use crate::metrics;
use crate::recordings::Pickup;
use crate::sinks::omnidesk;

use super::sink::{Sink, SinkFuture};

/// Hands engine outputs to the outbox, the history and the pickup.
pub struct HelpdeskSink {
    delivery: DeliveryHandle,
    zone: jiff::tz::TimeZone,
    history: Option<History>,
    pickup: Option<Pickup>,
    /// Outbox commits still being awaited; their order was fixed when they were enqueued.
    storing: JoinSet<()>,
    /// The current engine step, stored as one unit at its [`Effect::StepDone`].
    step: Step,
}

/// What one engine step gave the outbox and the pickup, until the step is done.
#[derive(Default)]
struct Step {
    /// Helpdesk events, with (unique_id, status) to name them if they are not stored.
    events: Vec<(Request, String, String)>,
    /// Open-call checkpoints (JSON; `None` forgets the call).
    open_calls: Vec<(String, Option<String>)>,
    /// Recordings of calls that closed, uploaded in the order they were started.
    recordings: Vec<RecordingRef>,
}

impl Step {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.open_calls.is_empty() && self.recordings.is_empty()
    }
}

impl HelpdeskSink {
    pub fn new(
        delivery: DeliveryHandle,
        zone: jiff::tz::TimeZone,
        history: Option<History>,
        pickup: Option<Pickup>,
    ) -> Self {
        Self { delivery, zone, history, pickup, storing: JoinSet::new(), step: Step::default() }
    }
}

impl Sink for HelpdeskSink {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        Box::pin(async move {
            match output {
                Output::Event(event) => {
                    if let Some(mapped) = omnidesk::map(event) {
                        let request = mapped.request(&self.zone);
                        self.step.events.push((request, mapped.unique_id, mapped.status));
                    }
                    if let (Some(history), true) = (&self.history, event.is_ended()) {
                        let (history, event) = (history.clone(), event.clone());
                        tokio::task::spawn_blocking(move || {
                            if let Err(error) = history.record(&event) {
                                tracing::warn!(unique_id = event.unique_id, "call not added to the history: {error}");
                            }
                        });
                    }
                }
                Output::Recording(recording) => self.step.recordings.push(recording.clone()),
                Output::Effect(Effect::CallCheckpoint { unique_id, checkpoint }) => self
                    .step
                    .open_calls
                    .push((unique_id.clone(), checkpoint.as_ref().map(|checkpoint| checkpoint.to_json()))),
                Output::Effect(Effect::StepDone) => self.store_step().await,
                Output::Effect(Effect::Alive { at }) => {
                    self.store_step().await;
                    self.delivery.mark_alive(*at);
                }
                Output::Effect(_) => {}
            }
        })
    }

    fn close(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            self.store_step().await;
            while self.storing.join_next().await.is_some() {}
        })
    }
}

impl HelpdeskSink {
    /// Stores the step: its recordings are journaled first (a call forgotten by its
    /// checkpoint must not take a promised upload with it), then its events and checkpoints in
    /// one transaction, then the pickups start (queued behind the call's ended event).
    async fn store_step(&mut self) {
        if self.step.is_empty() {
            return;
        }
        let step = std::mem::take(&mut self.step);
        let promised = match (&self.pickup, step.recordings.is_empty()) {
            (Some(pickup), false) => Some(pickup.promise(step.recordings).await),
            (None, false) => {
                tracing::debug!(count = step.recordings.len(), "recordings ignored: no pickup configured");
                None
            }
            (_, true) => None,
        };
        let (requests, names): (Vec<Vec<Request>>, Vec<(String, String)>) =
            step.events.into_iter().map(|(request, unique_id, status)| (vec![request], (unique_id, status))).unzip();
        let outcomes = self.delivery.store_step(requests, step.open_calls);
        // The order is fixed now; the commit (group fsync) is awaited off the sink's path so
        // one slow fsync does not hold every event.
        for (stored, (unique_id, status)) in outcomes.into_iter().zip(names) {
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
        }
        while self.storing.try_join_next().is_some() {}
        if let (Some(pickup), Some(promised)) = (&self.pickup, promised) {
            pickup.release(promised);
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
