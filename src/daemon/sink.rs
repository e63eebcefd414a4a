//! Where the call engine's outputs go: the [`Sink`] trait and the sinks `run` and `demo` use.
//!
//! The engine task pushes each [`Output`] into a [`SinkQueue`], and one sink task takes them
//! out in order and awaits [`Sink::accept`], so a sink's pauses (a commit, an fsync) do not
//! stall the engine. The queue is bounded: once `limit` outputs wait, the engine stops taking
//! ARI input until the sink catches up, and the ARI reader's own bound (`[ari] max_backlog`)
//! takes over from there. The durable outbox and the recordings pickup plug in as `Sink`s
//! (combine several with [`Tee`]).

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use crate::calls::{CallEvent, Effect, Output, RecordingRef};
use crate::sinks::omnidesk;

pub use crate::calls::port::{Sink, SinkFuture};

/// The engine's end of a sink task's queue: sending never waits, but the engine asks
/// [`SinkQueue::is_full`] before it takes more input and waits in [`SinkQueue::room`].
#[derive(Clone)]
pub struct SinkQueue {
    tx: mpsc::UnboundedSender<Output>,
    waiting: Arc<AtomicUsize>,
    room: Arc<Notify>,
    limit: usize,
}

impl SinkQueue {
    /// Queues `output`; false once the sink task is gone.
    pub(crate) fn send(&self, output: Output) -> bool {
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.send(output).is_ok();
        if !sent {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        sent
    }

    /// At least `limit` outputs wait for the sink.
    pub(crate) fn is_full(&self) -> bool {
        self.waiting.load(Ordering::Relaxed) >= self.limit
    }

    /// Returns once fewer than `limit` outputs wait.
    pub(crate) async fn room(&self) {
        // Re-checked now and then as well: a sink task that died notifies nobody.
        while self.is_full() && !self.tx.is_closed() {
            let _ = tokio::time::timeout(std::time::Duration::from_millis(100), self.room.notified()).await;
        }
    }
}

/// Starts the task that feeds `sink`; the engine sends into the returned queue, which counts as
/// full at `limit` waiting outputs. The task ends (after [`Sink::close`]) once every sender is
/// dropped.
pub fn spawn_sink(mut sink: Box<dyn Sink>, limit: usize) -> (SinkQueue, JoinHandle<()>) {
    // Bounded by counting: the engine stops taking input once `limit` outputs wait.
    let (tx, mut rx) = mpsc::unbounded_channel::<Output>();
    let waiting = Arc::new(AtomicUsize::new(0));
    let room = Arc::new(Notify::new());
    let queue = SinkQueue { tx, waiting: waiting.clone(), room: room.clone(), limit: limit.max(1) };
    let task = tokio::spawn(async move {
        while let Some(output) = rx.recv().await {
            sink.accept(&output).await;
            if waiting.fetch_sub(1, Ordering::Relaxed) <= limit {
                room.notify_one();
            }
        }
        // Whoever still waits for room must not wait for a sink that is gone.
        room.notify_one();
        sink.close().await;
    });
    (queue, task)
}

/// Logs every helpdesk event and recording (journald-friendly, one line each).
pub struct LogSink {
    zone: jiff::tz::TimeZone,
}

impl LogSink {
    pub(crate) fn new(zone: jiff::tz::TimeZone) -> Self {
        Self { zone }
    }
}

impl Sink for LogSink {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        match output {
            Output::Event(event) => log_event(event, &self.zone),
            Output::Recording(recording) => log_recording(recording),
            Output::Effect(Effect::CallClosed { unique_id, answered }) => {
                tracing::debug!("call {unique_id} closed (answered: {answered})")
            }
            Output::Effect(Effect::CallCheckpoint { .. } | Effect::Alive { .. } | Effect::StepDone) => {}
            Output::Effect(effect) => tracing::debug!("engine effect: {effect:?}"),
        }
        Box::pin(async {})
    }
}

/// One line per event, in the helpdesk's words where it has them (admins compare the two).
fn log_event(event: &CallEvent, zone: &jiff::tz::TimeZone) {
    match omnidesk::map(event) {
        Some(mapped) => {
            let duration = mapped.call_duration.map(|seconds| format!(" call_duration={seconds}")).unwrap_or_default();
            tracing::info!(
                "call event {:?} unique_id={} from={} to={} datetime={}{duration}",
                mapped.status,
                mapped.unique_id,
                mapped.from_user,
                mapped.to_user,
                omnidesk::format_datetime(event.at, zone),
            );
        }
        None => tracing::info!(
            "call event {:?} unique_id={} datetime={}",
            event.name(),
            event.unique_id,
            omnidesk::format_datetime(event.at, zone)
        ),
    }
}

fn log_recording(recording: &RecordingRef) {
    tracing::info!("recording of call {}: {}", recording.unique_id, recording.source.as_str());
}

/// Writes each helpdesk event and recording as its SPEC §5 JSON line (what `replay` prints).
pub struct JsonLinesSink<W: Write + Send + 'static> {
    out: W,
    zone: jiff::tz::TimeZone,
}

impl JsonLinesSink<std::io::Stdout> {
    pub(crate) fn stdout(zone: jiff::tz::TimeZone) -> Self {
        Self { out: std::io::stdout(), zone }
    }
}

impl<W: Write + Send + 'static> JsonLinesSink<W> {
    #[cfg(test)]
    pub(crate) fn new(out: W, zone: jiff::tz::TimeZone) -> Self {
        Self { out, zone }
    }
}

impl<W: Write + Send + 'static> Sink for JsonLinesSink<W> {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        let line = match output {
            Output::Event(event) => omnidesk::map(event).map(|mapped| mapped.replay_line(&self.zone)),
            Output::Recording(recording) => Some(omnidesk::record_line(recording)),
            Output::Effect(_) => None,
        };
        if let Some(line) = line {
            // A closed stdout (e.g. `| head`) must not stop the daemon.
            let _ = writeln!(self.out, "{line}").and_then(|()| self.out.flush());
        }
        Box::pin(async {})
    }
}

/// Writes the requests one configured sink would make, as `replay --sink` lines (SPEC §7).
pub struct MappedLinesSink<W: Write + Send + 'static> {
    out: W,
    name: String,
    mapper: crate::sinks::Mapper,
}

impl<W: Write + Send + 'static> MappedLinesSink<W> {
    pub(crate) fn new(out: W, sink: &crate::config::SinkConfig, zone: &jiff::tz::TimeZone) -> Self {
        Self { out, name: sink.name.clone(), mapper: crate::sinks::Mapper::new(sink, zone, None) }
    }
}

impl<W: Write + Send + 'static> Sink for MappedLinesSink<W> {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        // A closed stdout (e.g. `| head`) must not stop the daemon.
        let _ = self.mapper.write_shown(&self.name, output, &mut self.out).and_then(|()| self.out.flush());
        Box::pin(async {})
    }
}

/// Hands every output to several sinks, in the order given.
pub struct Tee {
    sinks: Vec<Box<dyn Sink>>,
}

impl Tee {
    pub(crate) fn new(sinks: Vec<Box<dyn Sink>>) -> Self {
        Self { sinks }
    }
}

impl Sink for Tee {
    fn accept<'a>(&'a mut self, output: &'a Output) -> SinkFuture<'a> {
        Box::pin(async move {
            for sink in &mut self.sinks {
                sink.accept(output).await;
            }
        })
    }

    fn close(&mut self) -> SinkFuture<'_> {
        Box::pin(async move {
            for sink in &mut self.sinks {
                sink.close().await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::calls::{Happened, Parties, RecordingSource};

    #[derive(Clone, Default)]
    struct SharedBuffer(Arc<Mutex<Vec<u8>>>);

    impl Write for SharedBuffer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn json_lines_are_written_in_order_and_effects_are_skipped() {
        let buffer = SharedBuffer::default();
        let zone = jiff::tz::TimeZone::UTC;
        let sink =
            Tee::new(vec![Box::new(JsonLinesSink::new(buffer.clone(), zone.clone())), Box::new(LogSink::new(zone))]);
        let (tx, task) = spawn_sink(Box::new(sink), 100);
        let event = CallEvent {
            unique_id: "1.1".into(),
            at: 0,
            parties: Parties::incoming("79161234567", "74951234567"),
            what: Happened::Started,
        };
        let sent = [
            Output::Event(event),
            Output::Effect(Effect::CallClosed { unique_id: "1.1".into(), answered: false }),
            Output::Recording(RecordingRef { unique_id: "1.1".into(), source: RecordingSource::File("/r.wav".into()) }),
        ];
        for output in sent {
            assert!(tx.send(output), "sink task alive");
        }
        drop(tx);
        task.await.expect("sink task ends when the queue closes");
        let text = String::from_utf8(buffer.0.lock().expect("not poisoned").clone()).expect("utf8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[0].contains("\"start of an incoming call\""), "{text}");
        let record: serde_json::Value = serde_json::from_str(lines[1]).expect("json");
        assert_eq!(record, serde_json::json!({"status": "record", "unique_id": "1.1", "record": "/r.wav"}));
    }
}
