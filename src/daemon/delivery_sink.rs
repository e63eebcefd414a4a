//! The durable road from the call engine to every destination: each sink's mapping of each
//! output goes into the one SQLite outbox in engine order (an engine step, all sinks together,
//! in one transaction), ended calls into the call history (for `/forward`), and finished
//! calls' MixMonitor files to the recordings pickup with the sinks that take them.

use tokio::task::JoinSet;

use crate::calls::{Effect, Output, RecordingRef};
use crate::config::{Config, SinkConfig};
use crate::deliver::{DeliveryHandle, Request, Target, UploadRoute};
use crate::history::History;
use crate::metrics;
use crate::recordings::{Pickup, RecordingLinks};
use crate::sinks::Mapper;

use super::sink::{Sink, SinkFuture};

/// Hands engine outputs to the outbox (through every sink's mapping), the history and the pickup.
pub(crate) struct DeliverySink {
    delivery: DeliveryHandle,
    /// Each configured sink's name and mapping, in configuration order.
    mappers: Vec<(String, Mapper)>,
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
    /// Each sink's requests for one output, with what names them if they are not stored.
    events: Vec<(Vec<Request>, Named)>,
    /// Open-call checkpoints (JSON; `None` forgets the call).
    open_calls: Vec<(String, Option<String>)>,
    /// Recordings of calls that closed, uploaded in the order they were started, with the
    /// sinks that take them.
    recordings: Vec<(RecordingRef, Vec<UploadRoute>)>,
}

/// A sink's requests for one output, as a log line names them.
struct Named {
    sink: String,
    unique_id: String,
    status: String,
}

impl Step {
    fn is_empty(&self) -> bool {
        self.events.is_empty() && self.open_calls.is_empty() && self.recordings.is_empty()
    }
}

impl DeliverySink {
    /// `sinks` are the destinations to map for (as [`Config::destinations`] lists them).
    pub(crate) fn new(
        delivery: DeliveryHandle,
        sinks: &[SinkConfig],
        zone: &jiff::tz::TimeZone,
        history: Option<History>,
        pickup: Option<Pickup>,
        links: Option<&RecordingLinks>,
    ) -> Self {
        let mappers = sinks.iter().map(|sink| (sink.name.clone(), Mapper::new(sink, zone, links))).collect();
        Self { delivery, mappers, history, pickup, storing: JoinSet::new(), step: Step::default() }
    }

    /// Every sink's requests for `output`, and for a recording the sinks that take it.
    fn map(&mut self, output: &Output) {
        let mut routes = Vec::new();
        for (name, mapper) in &mut self.mappers {
            let (requests, route) = mapper.deliverables(name, output);
            if let Some(first) = requests.first() {
                let (unique_id, status) = (first.unique_id().to_string(), first.status().to_string());
                self.step.events.push((requests, Named { sink: name.clone(), unique_id, status }));
            }
            routes.extend(route);
        }
        if let Output::Recording(recording) = output {
            self.step.recordings.push((recording.clone(), routes));
        }
    }
}

impl Sink for DeliverySink {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        Box::pin(async move {
            match output {
                Output::Event(event) => {
                    self.map(output);
                    if let (Some(history), true) = (&self.history, event.is_ended()) {
                        history.record(event);
                    }
                }
                Output::Recording(_) | Output::Effect(Effect::CallClosed { .. }) => self.map(output),
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

impl DeliverySink {
    /// Stores the step: its events, checkpoints and recordings promised for upload in one
    /// transaction (a call forgotten by its checkpoint never takes a promised upload with it),
    /// then the pickups start (queued behind the call's ended event).
    async fn store_step(&mut self) {
        if self.step.is_empty() {
            return;
        }
        let step = std::mem::take(&mut self.step);
        let (pickups, promised) = match (&self.pickup, step.recordings.is_empty()) {
            (Some(pickup), false) => {
                let (pickups, promised) = pickup.promise(step.recordings);
                (pickups, Some(promised))
            }
            (None, false) => {
                tracing::debug!(count = step.recordings.len(), "recordings ignored: no pickup configured");
                (Vec::new(), None)
            }
            (_, true) => (Vec::new(), None),
        };
        let (requests, names): (Vec<Vec<Request>>, Vec<Named>) = step.events.into_iter().unzip();
        let outcomes = self.delivery.store_step(requests, step.open_calls, pickups);
        // The order is fixed now; the commit (group fsync) is awaited off the sink's path so
        // one slow fsync does not hold every event.
        for (stored, Named { sink, unique_id, status }) in outcomes.into_iter().zip(names) {
            self.storing.spawn(async move {
                if let Err(error) = stored.await {
                    metrics::SinkMeters::of(&sink).not_stored.inc();
                    tracing::error!(sink, unique_id, status, "call event NOT stored for sink {sink:?}: {error}");
                }
            });
        }
        while self.storing.try_join_next().is_some() {}
        if let (Some(pickup), Some(promised)) = (&self.pickup, promised) {
            pickup.release(promised);
        }
    }
}

/// Everything behind [`DeliverySink`], opened from the config: the outbox and a sender per
/// sink, the call history and (in mixmonitor mode) the recordings pickup.
pub(crate) struct DeliveryPipeline {
    pub delivery: DeliveryHandle,
    pub history: Option<History>,
    pub pickup: Option<Pickup>,
    /// The calls the previous run left open, for [`super::DaemonLinks::resume`].
    pub open_calls: crate::deliver::OpenCalls,
    /// The destinations, as configured.
    pub sinks: Vec<SinkConfig>,
    /// Recording links, when `[recordings] public_base_url` is set.
    pub links: Option<RecordingLinks>,
}

impl DeliveryPipeline {
    /// Opens the stores under `storage.dir` and starts delivery on the current runtime. The
    /// outbox is required (an error names the fix); the history and pickup are best effort.
    pub(crate) fn open(config: &Config) -> Result<DeliveryPipeline, crate::deliver::DeliverError> {
        let outbox = crate::deliver::Outbox::open(&config.storage.dir, &config.helpdesk)?;
        let open_calls = outbox.open_calls()?;
        let sinks = config.destinations();
        // A file queued for upload is confined to the recording directories again when its
        // turn comes (and before it is deleted): it may have been swapped for a symlink since.
        let mut allowed = config.recordings.dirs.clone();
        allowed.push(config.storage.dir.join(crate::recordings::ari::DOWNLOAD_DIR));
        let allowed = crate::recordings::AllowedDirs::new(&allowed);
        let guard: crate::deliver::UploadGuard = std::sync::Arc::new(move |path: &std::path::Path| {
            allowed.confine(&path.to_string_lossy()).map(drop).map_err(|error| error.to_string())
        });
        let mut targets = Vec::with_capacity(sinks.len());
        for sink in &sinks {
            let protocol = crate::crm::protocol(sink, &config.storage.dir)
                .map_err(|message| crate::deliver::DeliverError::Sink { name: sink.name.clone(), message })?;
            let mut target = match protocol {
                Some(protocol) => Target::with_protocol(sink, protocol),
                None => Target::of(sink),
            };
            target.upload_guard = Some(guard.clone());
            targets.push(target);
        }
        let delivery = crate::deliver::Delivery::start_targets(outbox, targets)?;
        let history = match History::configured(config) {
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
        let links = RecordingLinks::from_config(config, true)
            .map_err(|message| crate::deliver::DeliverError::Sink { name: "recording links".into(), message })?;
        Ok(DeliveryPipeline { delivery, history, pickup, open_calls, sinks, links })
    }

    /// The sink that feeds this pipeline.
    pub(crate) fn sink(&self, zone: &jiff::tz::TimeZone) -> DeliverySink {
        DeliverySink::new(
            self.delivery.clone(),
            &self.sinks,
            zone,
            self.history.clone(),
            self.pickup.clone(),
            self.links.as_ref(),
        )
    }
}
